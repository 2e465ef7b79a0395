//! Cookies as the stickiness cookies need them: finding one in a request (which may carry several
//! `Cookie` lines: HTTP/2 sends one per cookie), seeing whether a target's response sets one, and
//! writing `Set-Cookie` values. Reading borrows from the headers; nothing is allocated.

use std::time::SystemTime;

use http::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};

/// The value of the first cookie called `name` in the request's `Cookie` lines (quotes around a
/// value taken off, as RFC 6265 allows them).
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let (n, v) = split_pair(pair)?;
            (n == name.as_bytes()).then_some(v)
        })
}

/// Whether the request carries a cookie called `name`, whatever its value.
pub fn has(headers: &HeaderMap, name: &str) -> bool {
    find(headers, name).is_some()
}

/// Whether one of the response's `Set-Cookie` lines sets a cookie called `name`.
pub fn sets(headers: &HeaderMap, name: &str) -> bool {
    headers.get_all(SET_COOKIE).iter().any(|line| {
        let first = line.as_bytes().split(|&b| b == b';').next().unwrap_or(b"");
        split_pair(first).is_some_and(|(n, _)| n == name.as_bytes())
    })
}

fn split_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = pair.iter().position(|&b| b == b'=')?;
    let name = pair[..eq].trim_ascii();
    let mut value = pair[eq + 1..].trim_ascii();
    if let [b'"', inner @ .., b'"'] = value {
        value = inner;
    }
    Some((name, value))
}

/// A `Set-Cookie` value: `name=value; Expires=<HTTP-date>; Path=/`, and with `cors`, ALB's
/// `SameSite=None; Secure` for the twin that cross-origin requests carry. `value` is one of the
/// sealer's (base64url) and `name` a token, so the header is always valid.
pub fn set_cookie(name: &str, value: &str, expires: SystemTime, cors: bool) -> HeaderValue {
    let date = httpdate::fmt_http_date(expires);
    let attrs = if cors { "; SameSite=None; Secure" } else { "" };
    HeaderValue::try_from(format!("{name}={value}; Expires={date}; Path=/{attrs}"))
        .expect("a token, base64url and an HTTP-date make a valid header value")
}

/// Whether `name` is a cookie name: an RFC 7230 token (RFC 6265's cookie-name), non-empty.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: http::header::HeaderName, lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(name.clone(), HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_found_across_lines() {
        let h = headers(COOKIE, &["a=1; AWSALB=xyz ;b=\"q\"", "SESSION=s1", "c"]);
        assert_eq!(find(&h, "AWSALB"), Some(&b"xyz"[..]));
        assert_eq!(find(&h, "b"), Some(&b"q"[..]));
        assert_eq!(find(&h, "SESSION"), Some(&b"s1"[..]));
        assert_eq!(find(&h, "AWSAL"), None);
        assert_eq!(find(&h, "c"), None, "no `=`: not a cookie");
        assert!(has(&h, "a"));
        assert!(!has(&HeaderMap::new(), "a"));
    }

    #[test]
    fn a_response_sets_a_cookie_only_by_its_name() {
        let h = headers(
            SET_COOKIE,
            &["other=1; Path=/", "SESSION=abc; HttpOnly; Path=/"],
        );
        assert!(sets(&h, "SESSION"));
        assert!(sets(&h, "other"));
        assert!(!sets(&h, "Path"));
        assert!(!sets(&h, "HttpOnly"));
    }

    #[test]
    fn set_cookie_has_albs_attributes() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(
            set_cookie("AWSALB", "v", at, false),
            "AWSALB=v; Expires=Tue, 14 Nov 2023 22:13:20 GMT; Path=/"
        );
        assert_eq!(
            set_cookie("AWSALBCORS", "v", at, true),
            "AWSALBCORS=v; Expires=Tue, 14 Nov 2023 22:13:20 GMT; Path=/; SameSite=None; Secure"
        );
    }

    #[test]
    fn cookie_names_are_tokens() {
        assert!(is_token("SESSION"));
        assert!(is_token("my-app_id.v2"));
        assert!(!is_token(""));
        assert!(!is_token("a b"));
        assert!(!is_token("a=b"));
        assert!(!is_token("a;b"));
        assert!(!is_token("é"));
    }
}
