//! Health-check success codes, as ALB writes them: `"200"`, `"200,204"`, `"200-399"`, or a mix
//! (`"200-299,418"`). HTTP checks match status codes; gRPC checks match `grpc-status` codes.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    ranges: Box<[(u16, u16)]>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MatcherError {
    #[error("matcher is empty")]
    Empty,
    #[error("{0:?} is not a code or a range of codes like \"200-299\"")]
    Syntax(String),
    #[error("{code} is outside {low}..={high}")]
    OutOfRange { code: u16, low: u16, high: u16 },
    #[error("range {0:?} runs backwards")]
    Backwards(String),
}

impl Matcher {
    /// Parses a matcher whose codes must lie in `low..=high` (200..=499 for HTTP, as ALB allows;
    /// 0..=99 for gRPC).
    pub fn parse(text: &str, low: u16, high: u16) -> Result<Self, MatcherError> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(MatcherError::Empty);
            }
            let code = |s: &str| -> Result<u16, MatcherError> {
                let c: u16 = s
                    .trim()
                    .parse()
                    .map_err(|_| MatcherError::Syntax(part.to_string()))?;
                if !(low..=high).contains(&c) {
                    return Err(MatcherError::OutOfRange { code: c, low, high });
                }
                Ok(c)
            };
            let range = match part.split_once('-') {
                Some((a, b)) => (code(a)?, code(b)?),
                None => {
                    let c = code(part)?;
                    (c, c)
                }
            };
            if range.0 > range.1 {
                return Err(MatcherError::Backwards(part.to_string()));
            }
            ranges.push(range);
        }
        Ok(Matcher {
            ranges: ranges.into(),
        })
    }

    pub fn matches(&self, code: u16) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&code))
    }
}

impl FromStr for Matcher {
    type Err = MatcherError;
    /// An HTTP status matcher.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Matcher::parse(s, 200, 499)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        let m: Matcher = "200-399, 418".parse().unwrap();
        assert!(m.matches(200) && m.matches(302) && m.matches(399) && m.matches(418));
        assert!(!m.matches(400) && !m.matches(500) && !m.matches(199));
        assert_eq!(m.to_string(), "200-399,418");
        let grpc = Matcher::parse("0,12", 0, 99).unwrap();
        assert!(grpc.matches(12) && grpc.matches(0) && !grpc.matches(2));
    }

    #[test]
    fn bad_matchers() {
        assert_eq!("".parse::<Matcher>(), Err(MatcherError::Empty));
        assert_eq!("200,".parse::<Matcher>(), Err(MatcherError::Empty));
        assert!(matches!(
            "abc".parse::<Matcher>(),
            Err(MatcherError::Syntax(_))
        ));
        assert!(matches!(
            "600".parse::<Matcher>(),
            Err(MatcherError::OutOfRange { .. })
        ));
        assert!(matches!(
            "399-200".parse::<Matcher>(),
            Err(MatcherError::Backwards(_))
        ));
    }
}
