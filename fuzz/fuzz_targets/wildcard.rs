//! The wildcard matcher against a plain reference (dynamic programming over the pattern read
//! escape by escape), on any pattern, input and syntax; and the facts the router's indexes take
//! from a pattern (its exact string, literal prefix and suffix) against what it matches.
//!
//! Input: one byte of syntax flags, then the pattern, a NUL, and the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use seawall::routing::{Syntax, Wildcard};

#[derive(Clone, Copy, PartialEq)]
enum T {
    Byte(u8),
    Star,
    One,
}

fn tokens(pattern: &[u8], escapes: bool) -> Vec<T> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if escapes && matches!(pattern.get(i + 1), Some(b'*' | b'?' | b'\\')) => {
                out.push(T::Byte(pattern[i + 1]));
                i += 1;
            }
            b'*' => out.push(T::Star),
            b'?' => out.push(T::One),
            b => out.push(T::Byte(b)),
        }
        i += 1;
    }
    out
}

/// Row by row over the tokens: `row[j]` says the tokens so far match the first `j` input bytes.
fn reference(ts: &[T], input: &[u8], fold: bool) -> bool {
    let mut row = vec![false; input.len() + 1];
    row[0] = true;
    for &t in ts {
        let mut next = vec![false; input.len() + 1];
        for j in 0..=input.len() {
            next[j] = match t {
                T::Star => row[j] || (j > 0 && next[j - 1]),
                T::One => j > 0 && row[j - 1],
                T::Byte(b) => {
                    j > 0
                        && row[j - 1]
                        && if fold {
                            b.eq_ignore_ascii_case(&input[j - 1])
                        } else {
                            b == input[j - 1]
                        }
                }
            };
        }
        row = next;
    }
    row[input.len()]
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let syntax = Syntax {
        fold_case: flags & 1 != 0,
        escapes: flags & 2 != 0,
        spaces: flags & 4 != 0,
    };
    let (pattern, input) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(pattern) = std::str::from_utf8(pattern) else {
        return;
    };
    let Ok(w) = Wildcard::new(pattern, syntax) else {
        return;
    };
    assert_eq!(w.to_string(), pattern);
    let ts = tokens(pattern.as_bytes(), syntax.escapes);
    let wildcards = ts.iter().filter(|t| !matches!(t, T::Byte(_))).count();
    assert_eq!(w.wildcards(), wildcards, "{pattern:?}");

    let same = |a: &[u8], b: &[u8]| {
        if syntax.fold_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let matched = w.matches_bytes(input);
    assert_eq!(
        matched,
        reference(&ts, input, syntax.fold_case),
        "{pattern:?} against {:?} with {syntax:?}",
        String::from_utf8_lossy(input)
    );
    if let Ok(s) = std::str::from_utf8(input) {
        assert_eq!(w.matches(s), matched);
    }

    if let Some(exact) = w.exact() {
        assert!(
            w.matches_bytes(exact),
            "{pattern:?} matches its exact string"
        );
        assert_eq!(matched, same(exact, input), "{pattern:?}");
    }
    let (prefix, whole) = w.literal_prefix();
    if whole {
        assert_eq!(
            matched,
            same(prefix, input),
            "{pattern:?}: the prefix is all of it"
        );
    }
    if matched {
        if syntax.fold_case {
            assert!(
                !prefix.iter().any(u8::is_ascii_uppercase),
                "{pattern:?}: a folding pattern's prefix is lower case"
            );
        }
        assert!(
            input.len() >= prefix.len() && same(prefix, &input[..prefix.len()]),
            "{pattern:?}: a match starts with the literal prefix {prefix:?}"
        );
        let suffix = w.literal_suffix();
        assert!(
            input.len() >= suffix.len() && same(suffix, &input[input.len() - suffix.len()..]),
            "{pattern:?}: a match ends with the literal suffix {suffix:?}"
        );
    }
});
