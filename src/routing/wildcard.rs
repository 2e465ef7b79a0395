//! ALB-style wildcard patterns: `*` matches any run of characters (including none), `?` exactly one.
//!
//! Patterns are classified once at load time so that the common shapes (exact, prefix, suffix) are a
//! plain comparison on the hot path; only patterns with several wildcards run the general matcher.

use std::fmt;
use std::str::FromStr;

/// A compiled wildcard pattern. Case folding is decided at compile time: host patterns are stored
/// lower-case and compared with ASCII case folding, path patterns compare bytes exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wildcard {
    shape: Shape,
    case_insensitive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Shape {
    /// No wildcard at all.
    Exact(Box<[u8]>),
    /// `abc*`: one trailing star.
    Prefix(Box<[u8]>),
    /// `*abc`: one leading star.
    Suffix(Box<[u8]>),
    /// `*`: anything.
    Any,
    /// Anything else: matched with the iterative glob algorithm.
    Glob(Box<[u8]>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("pattern is empty")]
    Empty,
    #[error("pattern is longer than 128 characters")]
    TooLong,
    #[error("pattern contains a control character or a space")]
    BadCharacter,
}

impl Wildcard {
    /// A case-insensitive pattern, for host names and header values.
    pub fn case_insensitive(pattern: &str) -> Result<Self, PatternError> {
        Self::compile(&pattern.to_ascii_lowercase(), true)
    }

    /// A case-sensitive pattern, for paths.
    pub fn case_sensitive(pattern: &str) -> Result<Self, PatternError> {
        Self::compile(pattern, false)
    }

    fn compile(pattern: &str, case_insensitive: bool) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        if pattern.len() > 128 {
            return Err(PatternError::TooLong);
        }
        if pattern.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(PatternError::BadCharacter);
        }
        let bytes = pattern.as_bytes();
        let stars = bytes.iter().filter(|&&b| b == b'*').count();
        let has_question = bytes.contains(&b'?');
        let shape = match (stars, has_question) {
            (0, false) => Shape::Exact(bytes.into()),
            (1, false) if bytes == b"*" => Shape::Any,
            (1, false) if bytes[bytes.len() - 1] == b'*' => {
                Shape::Prefix(bytes[..bytes.len() - 1].into())
            }
            (1, false) if bytes[0] == b'*' => Shape::Suffix(bytes[1..].into()),
            _ => Shape::Glob(bytes.into()),
        };
        Ok(Wildcard {
            shape,
            case_insensitive,
        })
    }

    pub fn matches(&self, input: &str) -> bool {
        let input = input.as_bytes();
        let eq = |a: &[u8], b: &[u8]| {
            if self.case_insensitive {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match &self.shape {
            Shape::Exact(p) => eq(p, input),
            Shape::Any => true,
            Shape::Prefix(p) => input.len() >= p.len() && eq(p, &input[..p.len()]),
            Shape::Suffix(p) => input.len() >= p.len() && eq(p, &input[input.len() - p.len()..]),
            Shape::Glob(p) => glob(p, input, self.case_insensitive),
        }
    }
}

/// Iterative glob match with single-star backtracking: linear in practice, never exponential.
fn glob(pattern: &[u8], input: &[u8], fold: bool) -> bool {
    let same = |a: u8, b: u8| {
        if fold {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < input.len() {
        if p < pattern.len() && (pattern[p] == b'?' || same(pattern[p], input[i])) {
            p += 1;
            i += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

impl FromStr for Wildcard {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::case_sensitive(s)
    }
}

impl fmt::Display for Wildcard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match &self.shape {
            Shape::Exact(p) | Shape::Glob(p) => f.write_str(&text(p)),
            Shape::Prefix(p) => write!(f, "{}*", text(p)),
            Shape::Suffix(p) => write!(f, "*{}", text(p)),
            Shape::Any => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(p: &str) -> Wildcard {
        Wildcard::case_insensitive(p).unwrap()
    }
    fn path(p: &str) -> Wildcard {
        Wildcard::case_sensitive(p).unwrap()
    }

    #[test]
    fn shapes_match_as_alb_describes() {
        assert!(host("api.example.test").matches("API.Example.TEST"));
        assert!(!host("api.example.test").matches("api.example.test.evil"));
        assert!(host("*.example.test").matches("a.b.example.test"));
        assert!(!host("*.example.test").matches("example.test"));
        assert!(path("/static/*").matches("/static/"));
        assert!(path("/static/*").matches("/static/css/a.css"));
        assert!(!path("/static/*").matches("/Static/a"));
        assert!(path("*").matches(""));
        assert!(path("/a?c").matches("/abc"));
        assert!(!path("/a?c").matches("/ac"));
        assert!(path("/*/x/*.png").matches("/u/x/y/z.png"));
        assert!(!path("/*/x/*.png").matches("/u/y/z.png"));
        assert!(path("*a*b*").matches("xxaxxbxx"));
        assert!(host("www.*.test").matches("WWW.shop.test"));
    }

    #[test]
    fn bad_patterns_are_rejected() {
        assert_eq!(Wildcard::case_sensitive(""), Err(PatternError::Empty));
        assert_eq!(
            Wildcard::case_sensitive("/a b"),
            Err(PatternError::BadCharacter)
        );
        assert_eq!(
            Wildcard::case_sensitive(&"a".repeat(129)),
            Err(PatternError::TooLong)
        );
    }

    #[test]
    fn pathological_pattern_is_linear_enough() {
        let p = path(&"*a".repeat(20));
        let input = "a".repeat(19) + &"b".repeat(10_000);
        assert!(!p.matches(&input));
    }
}
