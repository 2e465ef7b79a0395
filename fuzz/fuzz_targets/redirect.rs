//! Redirect templates: any fields compiled, and what compiles rendered for any request.
//!
//! Holds: nothing panics; a location is an absolute http(s) URL that can be sent as a header
//! whenever the template and the request hold no control character; a template said to loop on
//! a listener sends each request back to its own URL.
//!
//! Input: one byte saying which template fields are given (ALB's defaults otherwise) and the
//! request's protocol, one byte for the status, two for the request's port, then NUL-separated:
//! the template's protocol, host, port, path and query, and the request's host, path and query.

#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use seawall::routing::{RedirectRequest, RedirectTemplate};

fuzz_target!(|data: &[u8]| {
    let [flags, status, port_hi, port_lo, rest @ ..] = data else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let mut fields = rest.split('\0');
    let mut field = || fields.next().unwrap_or("");
    let template: [&str; 5] = std::array::from_fn(|_| field());
    let given = |i: usize| (flags & (1 << i) != 0).then_some(template[i]);
    let status = match status {
        0..=84 => None,
        85..=169 => Some(301),
        170..=254 => Some(302),
        255 => Some(200),
    };
    let compiled =
        RedirectTemplate::compile(given(0), given(1), given(2), given(3), given(4), status);
    let Ok(t) = compiled else {
        return;
    };
    let req = RedirectRequest {
        protocol: if flags & 0x20 != 0 { "https" } else { "http" },
        host: field(),
        port: u16::from_be_bytes([*port_hi, *port_lo]),
        path: field(),
        query: field(),
    };
    let location = t.location(&req);
    assert!(
        location.starts_with("http://") || location.starts_with("https://"),
        "{location:?}"
    );
    let control = |s: &str| s.bytes().any(|b| b.is_ascii_control() && b != b'\t');
    let clean = template
        .iter()
        .chain([&req.host, &req.path, &req.query])
        .all(|s| !control(s));
    if clean {
        assert!(
            HeaderValue::from_str(&location).is_ok(),
            "{location:?} is not a header value"
        );
    }
    if t.loops_on(Some(req.protocol), Some(req.port)) && req.path.starts_with('/') {
        let default_port = if req.protocol == "https" { 443 } else { 80 };
        let port = if req.port == default_port {
            String::new()
        } else {
            format!(":{}", req.port)
        };
        let query = if req.query.is_empty() {
            String::new()
        } else {
            format!("?{}", req.query)
        };
        let own = format!("{}://{}{port}{}{query}", req.protocol, req.host, req.path);
        assert_eq!(
            location, own,
            "a looping redirect goes back where it came from"
        );
    }
});
