//! Comma-separated header tokens (`Connection`, `TE`, `Upgrade`-style lists), read one way
//! everywhere: a header may come as several lines, each a list, and a proxy that splits them
//! differently in two places ends up forwarding what it meant to strip.

use http::header::{GetAll, HeaderValue};

/// The non-empty, trimmed tokens of every line of a header, in order. A line that is not text
/// (obs-text bytes) names nothing: its tokens could not be compared with ASCII names anyway.
pub fn tokens<'a>(lines: GetAll<'a, HeaderValue>) -> impl Iterator<Item = &'a str> + 'a {
    lines.iter().flat_map(value_tokens)
}

/// The tokens of one header line; see [`tokens`].
pub fn value_tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The comma-separated parts of one header line as bytes, trimmed, empty ones kept: for the
/// framing headers (Content-Length, Transfer-Encoding), where a stray comma or a byte that is not
/// text must be seen and judged rather than skipped.
pub fn raw_parts(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
}

/// Whether any line of a header lists `token` (ASCII case folded, as for every token of these
/// headers).
pub fn has_token(lines: GetAll<'_, HeaderValue>, token: &str) -> bool {
    tokens(lines).any(|t| t.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderMap, CONNECTION};

    fn map(lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(CONNECTION, HeaderValue::from_bytes(l).unwrap());
        }
        h
    }

    #[test]
    fn raw_parts_keep_every_byte_and_empty_parts() {
        let v = HeaderValue::from_bytes(b" 5 ,, 6\xff").unwrap();
        let parts: Vec<&[u8]> = raw_parts(&v).collect();
        assert_eq!(parts, [&b"5"[..], b"", b"6\xff"]);
    }

    #[test]
    fn tokens_are_split_trimmed_and_empty_ones_skipped() {
        let cases: &[(&[&[u8]], &[&str])] = &[
            (&[], &[]),
            (&[b"close"], &["close"]),
            (&[b" Upgrade ,  x-a,"], &["Upgrade", "x-a"]),
            (&[b",, ,"], &[]),
            (&[b"keep-alive", b" , x-b"], &["keep-alive", "x-b"]),
            (&[b"a,\tb"], &["a", "b"]),
            // A line with obs-text is skipped whole; the next one still counts.
            (&[b"x-\xff, upgrade", b"te"], &["te"]),
        ];
        for (lines, want) in cases {
            let h = map(lines);
            let got: Vec<&str> = tokens(h.get_all(CONNECTION)).collect();
            assert_eq!(&got, want, "{lines:?}");
        }
    }

    #[test]
    fn has_token_folds_case_and_matches_whole_tokens() {
        let h = map(&[b"keep-alive, UPGRADE"]);
        assert!(has_token(h.get_all(CONNECTION), "upgrade"));
        assert!(!has_token(h.get_all(CONNECTION), "upgrad"));
        assert!(!has_token(h.get_all(CONNECTION), "close"));
        let h = map(&[b"upgrade-insecure"]);
        assert!(!has_token(h.get_all(CONNECTION), "upgrade"));
    }
}
