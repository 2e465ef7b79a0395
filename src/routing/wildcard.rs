//! ALB-style wildcard patterns: `*` matches any run of characters (including none), `?` exactly one.
//!
//! Patterns are classified once at load time so that the common shapes (exact, prefix, suffix) are a
//! plain comparison on the hot path; only patterns with several wildcards run the general matcher.
//!
//! ALB documents `\*` and `\?` (the literal characters) for query-string conditions only; its host
//! and path character sets have no backslash, and a header value may hold one as itself. So escapes
//! are read only where [`Syntax::escapes`] says so ([`Wildcard::query`]); elsewhere a backslash is
//! an ordinary character. Where escapes are read, `\\` is a literal backslash too, so that a
//! backslash right before a wildcard can be written; any other backslash stands for itself.

use std::fmt;
use std::str::FromStr;

/// How a pattern's text is read and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syntax {
    /// Compare with ASCII case folding (hosts, header values, query keys and values).
    pub fold_case: bool,
    /// `\*`, `\?` and `\\` stand for the literal characters.
    pub escapes: bool,
    /// A space may appear (header values and decoded query strings have them; hosts and paths
    /// cannot).
    pub spaces: bool,
}

impl Syntax {
    pub const HOST: Syntax = Syntax {
        fold_case: true,
        escapes: false,
        spaces: false,
    };
    pub const PATH: Syntax = Syntax {
        fold_case: false,
        escapes: false,
        spaces: false,
    };
    pub const HEADER_VALUE: Syntax = Syntax {
        fold_case: true,
        escapes: false,
        spaces: true,
    };
    pub const QUERY: Syntax = Syntax {
        fold_case: true,
        escapes: true,
        spaces: true,
    };
}

/// The longest pattern ALB accepts in a condition value.
pub const MAX_PATTERN_LEN: usize = 128;

/// A compiled wildcard pattern. Case folding is decided at compile time: a folding pattern is
/// stored lower-case and compared with ASCII case folding, the others compare bytes exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wildcard {
    shape: Shape,
    case_insensitive: bool,
    /// Unescaped `*` and `?`: what ALB's per-rule wildcard quota counts.
    wildcards: u8,
    /// As written, for messages.
    source: Box<str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Shape {
    /// No wildcard at all (escaped ones are literals by now).
    Exact(Box<[u8]>),
    /// `abc*`: one trailing star.
    Prefix(Box<[u8]>),
    /// `*abc`: one leading star.
    Suffix(Box<[u8]>),
    /// `*`: anything.
    Any,
    /// Anything else: matched with the iterative glob algorithm.
    Glob(Box<[Token]>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Byte(u8),
    Star,
    One,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("pattern is empty")]
    Empty,
    #[error("pattern is longer than 128 characters")]
    TooLong,
    #[error("pattern contains a control character or a space")]
    BadCharacter,
    #[error("pattern contains a control character")]
    ControlCharacter,
}

impl Wildcard {
    /// A case-insensitive pattern, for host names.
    pub fn case_insensitive(pattern: &str) -> Result<Self, PatternError> {
        Self::new(pattern, Syntax::HOST)
    }

    /// A case-sensitive pattern, for paths.
    pub fn case_sensitive(pattern: &str) -> Result<Self, PatternError> {
        Self::new(pattern, Syntax::PATH)
    }

    /// A header value: case-insensitive, spaces allowed, a backslash is itself.
    pub fn header_value(pattern: &str) -> Result<Self, PatternError> {
        Self::new(pattern, Syntax::HEADER_VALUE)
    }

    /// A query-string key or value: case-insensitive, spaces allowed (it is matched after
    /// URL-decoding), `\*` and `\?` for the literal characters.
    pub fn query(pattern: &str) -> Result<Self, PatternError> {
        Self::new(pattern, Syntax::QUERY)
    }

    pub fn new(pattern: &str, syntax: Syntax) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        if pattern.chars().count() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong);
        }
        if pattern.bytes().any(|b| b.is_ascii_control()) {
            return Err(if syntax.spaces {
                PatternError::ControlCharacter
            } else {
                PatternError::BadCharacter
            });
        }
        if !syntax.spaces && pattern.contains(' ') {
            return Err(PatternError::BadCharacter);
        }
        let tokens = tokens(pattern.as_bytes(), syntax.escapes, syntax.fold_case);
        let wildcards = tokens
            .iter()
            .filter(|t| !matches!(t, Token::Byte(_)))
            .count();
        let literal = |ts: &[Token]| -> Box<[u8]> {
            ts.iter()
                .map(|t| match t {
                    Token::Byte(b) => *b,
                    _ => unreachable!("only called on literal runs"),
                })
                .collect()
        };
        let n = tokens.len();
        let shape = match wildcards {
            0 => Shape::Exact(literal(&tokens)),
            1 if n == 1 && tokens[0] == Token::Star => Shape::Any,
            1 if tokens[n - 1] == Token::Star => Shape::Prefix(literal(&tokens[..n - 1])),
            1 if tokens[0] == Token::Star => Shape::Suffix(literal(&tokens[1..])),
            _ => Shape::Glob(tokens.into()),
        };
        Ok(Wildcard {
            shape,
            case_insensitive: syntax.fold_case,
            wildcards: u8::try_from(wildcards).unwrap_or(u8::MAX),
            source: pattern.into(),
        })
    }

    /// Unescaped `*` and `?` in the pattern.
    pub fn wildcards(&self) -> usize {
        self.wildcards.into()
    }

    /// The pattern matches exactly one string (no wildcard): that string, folded to lower case
    /// when the pattern folds case.
    pub fn exact(&self) -> Option<&[u8]> {
        match &self.shape {
            Shape::Exact(p) => Some(p),
            _ => None,
        }
    }

    /// The literal bytes every match ends with, as written (not folded), when the pattern has
    /// no backslash; empty otherwise, or when it ends with a wildcard.
    pub fn literal_suffix(&self) -> &[u8] {
        let s = self.source.as_bytes();
        if s.contains(&b'\\') {
            return &[];
        }
        match s.iter().rposition(|&b| matches!(b, b'*' | b'?')) {
            Some(i) => &s[i + 1..],
            None => s,
        }
    }

    /// The literal bytes every match starts with (folded to lower case when the pattern folds
    /// case), and whether they are the whole pattern.
    pub fn literal_prefix(&self) -> (&[u8], bool) {
        match &self.shape {
            Shape::Exact(p) => (p, true),
            Shape::Prefix(p) => (p, false),
            // The source is as written: a folding pattern's would need folding, so it has none.
            Shape::Suffix(_) | Shape::Any => (&[], false),
            Shape::Glob(_) if self.case_insensitive => (&[], false),
            Shape::Glob(_) => {
                let end = self
                    .source
                    .bytes()
                    .position(|b| matches!(b, b'*' | b'?' | b'\\'))
                    .unwrap_or(0);
                (&self.source.as_bytes()[..end], false)
            }
        }
    }

    pub fn matches(&self, input: &str) -> bool {
        self.matches_bytes(input.as_bytes())
    }

    pub fn matches_bytes(&self, input: &[u8]) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if self.case_insensitive {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        // Literals are compared from their last byte first: paths and hosts of one listener
        // mostly share their beginnings ("/", ".example.com" read backwards aside), so a
        // mismatch usually shows at once, without a call to memcmp.
        let last_differs = |p: &[u8], s: &[u8]| match (p.last(), s.last()) {
            (Some(a), Some(b)) => !a.eq_ignore_ascii_case(b),
            _ => false,
        };
        match &self.shape {
            Shape::Exact(p) => p.len() == input.len() && !last_differs(p, input) && eq(p, input),
            Shape::Any => true,
            Shape::Prefix(p) => {
                input.len() >= p.len()
                    && !last_differs(p, &input[..p.len()])
                    && eq(p, &input[..p.len()])
            }
            Shape::Suffix(p) => {
                input.len() >= p.len()
                    && p.first()
                        .zip(input.get(input.len() - p.len()))
                        .is_none_or(|(a, b)| a.eq_ignore_ascii_case(b))
                    && eq(p, &input[input.len() - p.len()..])
            }
            Shape::Glob(p) => glob(p, input, self.case_insensitive),
        }
    }
}

/// The pattern as tokens: escapes resolved, literals lower-cased when case folds.
fn tokens(pattern: &[u8], escapes: bool, fold: bool) -> Vec<Token> {
    let lit = |b: u8| Token::Byte(if fold { b.to_ascii_lowercase() } else { b });
    let mut out = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while i < pattern.len() {
        let b = pattern[i];
        match b {
            b'\\' if escapes && matches!(pattern.get(i + 1), Some(b'*' | b'?' | b'\\')) => {
                out.push(Token::Byte(pattern[i + 1]));
                i += 2;
                continue;
            }
            b'*' => out.push(Token::Star),
            b'?' => out.push(Token::One),
            _ => out.push(lit(b)),
        }
        i += 1;
    }
    out
}

/// Iterative glob match with single-star backtracking: linear in practice, never exponential.
fn glob(pattern: &[Token], input: &[u8], fold: bool) -> bool {
    let same = |t: Token, b: u8| match t {
        Token::One => true,
        Token::Byte(a) if fold => a.eq_ignore_ascii_case(&b),
        Token::Byte(a) => a == b,
        Token::Star => false,
    };
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < input.len() {
        if p < pattern.len() && same(pattern[p], input[i]) {
            p += 1;
            i += 1;
        } else if p < pattern.len() && pattern[p] == Token::Star {
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
    pattern[p..].iter().all(|&t| t == Token::Star)
}

impl FromStr for Wildcard {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::case_sensitive(s)
    }
}

impl fmt::Display for Wildcard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host(p: &str) -> Wildcard {
        Wildcard::case_insensitive(p).unwrap()
    }
    fn path(p: &str) -> Wildcard {
        Wildcard::case_sensitive(p).unwrap()
    }
    fn query(p: &str) -> Wildcard {
        Wildcard::query(p).unwrap()
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
    fn escapes_are_literals_in_query_patterns_only() {
        // `\*` is a literal star: no wildcard, so the exact shape.
        let q = query(r"a\*b");
        assert_eq!(q.wildcards(), 0);
        assert_eq!(q.exact(), Some(&b"a*b"[..]));
        assert!(q.matches("A*B"));
        assert!(!q.matches("axxb"));
        assert!(query(r"v\?").matches("v?"));
        assert!(!query(r"v\?").matches("v1"));
        // An escaped and an unescaped star together.
        let q = query(r"\**");
        assert_eq!(q.wildcards(), 1);
        assert!(q.matches("*anything"));
        assert!(!q.matches("anything"));
        // `\\` is one backslash, so the star after it is a wildcard again.
        let q = query(r"a\\*");
        assert_eq!(q.wildcards(), 1);
        assert!(q.matches(r"a\xyz"));
        // Any other backslash stands for itself.
        assert!(query(r"a\b").matches(r"a\b"));
        // Elsewhere a backslash is an ordinary character and `*` stays a wildcard.
        let h = Wildcard::header_value(r"a\*").unwrap();
        assert_eq!(h.wildcards(), 1);
        assert!(h.matches(r"a\xyz"));
        assert!(!h.matches("a*"));
        // Shown as written.
        assert_eq!(query(r"V\*").to_string(), r"V\*");
    }

    #[test]
    fn wildcards_are_counted_without_escapes() {
        assert_eq!(path("/a/*/b?/*").wildcards(), 3);
        assert_eq!(query(r"\*\?*?").wildcards(), 2);
        assert_eq!(host("a.test").wildcards(), 0);
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
        // 128 characters of two bytes each are within the limit.
        assert!(Wildcard::header_value(&"é".repeat(128)).is_ok());
        assert!(Wildcard::header_value("a b").is_ok());
        assert_eq!(Wildcard::query("a\tb"), Err(PatternError::ControlCharacter));
    }

    #[test]
    fn pathological_pattern_is_linear_enough() {
        let p = path(&"*a".repeat(20));
        let input = "a".repeat(19) + &"b".repeat(10_000);
        assert!(!p.matches(&input));
    }

    /// The reference: the pattern read escape by escape, matched by plain recursion (exponential,
    /// so only for short inputs), with no shapes and no backtracking tricks.
    fn reference(pattern: &str, input: &str, syntax: Syntax) -> bool {
        #[derive(Clone, Copy)]
        enum T {
            C(char),
            Star,
            One,
        }
        let mut ts = Vec::new();
        let mut cs = pattern.chars().peekable();
        while let Some(c) = cs.next() {
            match c {
                '\\' if syntax.escapes && matches!(cs.peek(), Some('*' | '?' | '\\')) => {
                    ts.push(T::C(cs.next().unwrap()))
                }
                '*' => ts.push(T::Star),
                '?' => ts.push(T::One),
                c => ts.push(T::C(c)),
            }
        }
        fn go(p: &[T], s: &[u8], fold: bool) -> bool {
            match p.first() {
                None => s.is_empty(),
                Some(T::Star) => (0..=s.len()).any(|k| go(&p[1..], &s[k..], fold)),
                Some(T::One) => !s.is_empty() && go(&p[1..], &s[1..], fold),
                Some(T::C(c)) => {
                    let mut buf = [0; 4];
                    let c = c.encode_utf8(&mut buf).as_bytes();
                    let same = s.len() >= c.len()
                        && if fold {
                            s[..c.len()].eq_ignore_ascii_case(c)
                        } else {
                            &s[..c.len()] == c
                        };
                    same && go(&p[1..], &s[c.len()..], fold)
                }
            }
        }
        go(&ts, input.as_bytes(), syntax.fold_case)
    }

    const ALL: [Syntax; 4] = [
        Syntax::HOST,
        Syntax::PATH,
        Syntax::HEADER_VALUE,
        Syntax::QUERY,
    ];

    #[test]
    fn table_agrees_with_the_reference() {
        let cases = [
            ("abc", "abc"),
            ("abc", "ABC"),
            ("a*", "a"),
            ("a*", "xa"),
            ("*a", "ba"),
            ("*a", "Ab"),
            ("a?c", "abc"),
            ("a?c", "ac"),
            ("*", ""),
            ("**", "x"),
            ("*?", ""),
            ("?*?", "ab"),
            ("a*b*c", "aXbYc"),
            ("a*b*c", "aXcYb"),
            (r"a\*", "a*"),
            (r"a\*", "ab"),
            (r"a\?c", "a?c"),
            (r"a\?c", "abc"),
            (r"\\*", r"\x"),
            (r"a\b", r"a\b"),
            (r"*\**", "x*y"),
            (r"*\**", "xy"),
            ("A*b", "aXB"),
        ];
        for (pattern, input) in cases {
            for syntax in ALL {
                let w = Wildcard::new(pattern, syntax).unwrap();
                assert_eq!(
                    w.matches(input),
                    reference(pattern, input, syntax),
                    "{pattern:?} against {input:?} with {syntax:?}"
                );
            }
        }
    }

    /// Small alphabets, so that random patterns and inputs often meet: letters of both cases, the
    /// wildcards and their escapes.
    fn pattern() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("a"),
                Just("A"),
                Just("b"),
                Just("*"),
                Just("?"),
                Just(r"\*"),
                Just(r"\?"),
                Just(r"\"),
                Just("*"),
            ],
            1..8,
        )
        .prop_map(|parts| parts.concat())
    }

    fn input() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('a'),
                Just('A'),
                Just('b'),
                Just('*'),
                Just('?'),
                Just('\\')
            ],
            0..10,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        #[test]
        fn random_patterns_agree_with_the_reference(p in pattern(), s in input()) {
            for syntax in ALL {
                let w = Wildcard::new(&p, syntax).unwrap();
                prop_assert_eq!(
                    w.matches(&s),
                    reference(&p, &s, syntax),
                    "{:?} against {:?} with {:?}", p, s, syntax
                );
            }
        }
    }
}
