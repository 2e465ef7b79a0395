//! The framing verdict (`server::framing::judge`) on any raw-head counts, method, version and
//! Content-Length / Transfer-Encoding lines.
//!
//! Holds: what could frame a body two ways is refused (both headers, in the raw head or the
//! parsed one; Content-Length values that differ); a single Content-Length to forward in place of
//! repeated ones is one of them, and they all agree; a verdict's tier is its reason's.
//!
//! Input: a byte for the method, version, target form and whether the head was scanned, two for
//! the raw head's counts (raised to the parsed lines' where below them), then header lines, each a byte that names it and its value up to a NUL.

#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Uri, Version};
use libfuzzer_sys::fuzz_target;
use seawall::fuzz::{judge, Action, Mitigation, RawHead, Reason, Verdict};

fuzz_target!(|data: &[u8]| {
    let [shape, cl, te, lines @ ..] = data else {
        return;
    };
    let method = match shape & 7 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::POST,
        3 => Method::PUT,
        4 => Method::OPTIONS,
        5 => Method::DELETE,
        6 => Method::CONNECT,
        _ => Method::from_bytes(b"PURGE").expect("a token"),
    };
    let version = match (shape >> 3) & 3 {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        2 => Version::HTTP_2,
        _ => Version::HTTP_09,
    };
    let uri = if shape & 0x40 == 0 {
        Uri::from_static("/")
    } else {
        Uri::from_static("http://example.test/")
    };
    let mut headers = HeaderMap::new();
    for line in lines.split(|&b| b == 0) {
        let Some((&name, value)) = line.split_first() else {
            continue;
        };
        let name = match name % 4 {
            0 | 1 => CONTENT_LENGTH,
            2 => TRANSFER_ENCODING,
            _ => HeaderName::from_static("x-other"),
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }

    // The scan sees every line hyper parses (and may see more, which hyper merged or dropped):
    // its counts are at least the parsed ones, as they always are in seawall.
    let lines_of = |name| u8::try_from(headers.get_all(name).iter().count()).unwrap_or(u8::MAX);
    let raw = (shape & 0x20 == 0).then_some(RawHead {
        content_length: (*cl).max(lines_of(CONTENT_LENGTH)),
        transfer_encoding: (*te).max(lines_of(TRANSFER_ENCODING)),
        ..RawHead::default()
    });
    let judgment = judge(raw, &method, version, &uri, &headers);
    let verdict = judgment.verdict;
    // Refused even by the mode that lets everything else through.
    let always_refused = |v: Verdict| Mitigation::Monitor.action(v) == Action::Refuse;
    if let Some(reason) = verdict.cause() {
        assert_eq!(
            reason.verdict(),
            verdict,
            "a verdict's tier is its reason's"
        );
    }
    let parts: Vec<&[u8]> = headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    let both_raw = raw.is_some_and(|r| r.content_length > 0 && r.transfer_encoding > 0);
    let both_parsed = !parts.is_empty() && headers.contains_key(TRANSFER_ENCODING);
    if both_raw || both_parsed {
        assert!(
            always_refused(verdict),
            "both framings forwarded: {verdict:?}"
        );
    }
    if parts.windows(2).any(|w| w[0] != w[1]) {
        assert!(
            always_refused(verdict),
            "differing lengths forwarded: {verdict:?}"
        );
    }
    if let Some(one) = &judgment.content_length {
        assert!(
            !always_refused(verdict),
            "a length to forward for a refused request"
        );
        assert!(parts.len() > 1, "a single length replaces repeated ones");
        assert!(
            parts.iter().all(|p| *p == one.as_bytes()),
            "{one:?} stands for {parts:?}"
        );
    }
    if verdict.cause() == Some(Reason::BadContentLength) {
        assert_eq!(Mitigation::Defensive.action(verdict), Action::Refuse);
    }
});
