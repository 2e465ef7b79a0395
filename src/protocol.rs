//! The protocol vocabulary both planes speak, parsed once from the configuration's words.
//!
//! A leaf module: it imports nothing from the crate, so the data plane (listeners, the proxy, the
//! upstream pool) and the control side (validation, upgrades) can both name these types without
//! one reaching into the other.

use std::fmt;
use std::str::FromStr;

/// A configuration word that names none of the values its key takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected {expected}")]
pub struct UnknownValue {
    /// What the key names, as a user reads it ("protocol", "algorithm").
    pub what: &'static str,
    pub value: String,
    /// The values allowed, quoted, as the error shows them.
    pub expected: &'static str,
}

impl UnknownValue {
    pub fn new(what: &'static str, value: &str, expected: &'static str) -> Self {
        UnknownValue {
            what,
            value: value.to_string(),
            expected,
        }
    }
}

/// A listener's or a target group's protocol: plain HTTP or HTTP over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Https,
}

impl Protocol {
    /// The configuration's word, which is also what `X-Forwarded-Proto` and redirects write.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http" => Ok(Protocol::Http),
            "https" => Ok(Protocol::Https),
            other => Err(UnknownValue::new(
                "protocol",
                other,
                "\"http\" or \"https\"",
            )),
        }
    }
}

/// How seawall speaks to a group's targets, as ALB's target group protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    Http1,
    /// HTTP/2: ALPN h2 over TLS, prior knowledge (h2c) in plain text.
    Http2,
    /// HTTP/2 carrying gRPC; health checks read `grpc-status`.
    Grpc,
}

impl ProtocolVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::Http1 => "http1",
            ProtocolVersion::Http2 => "http2",
            ProtocolVersion::Grpc => "grpc",
        }
    }

    /// Whether the targets are spoken to in HTTP/2 (plain gRPC is HTTP/2 too).
    pub fn is_http2(self) -> bool {
        self != ProtocolVersion::Http1
    }
}

impl FromStr for ProtocolVersion {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http1" => Ok(ProtocolVersion::Http1),
            "http2" => Ok(ProtocolVersion::Http2),
            "grpc" => Ok(ProtocolVersion::Grpc),
            other => Err(UnknownValue::new(
                "protocol version",
                other,
                "\"http1\", \"http2\" or \"grpc\"",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_ones_name_the_choices() {
        for p in [Protocol::Http, Protocol::Https] {
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
        }
        for v in [
            ProtocolVersion::Http1,
            ProtocolVersion::Http2,
            ProtocolVersion::Grpc,
        ] {
            assert_eq!(v.as_str().parse::<ProtocolVersion>(), Ok(v));
        }
        let e = "ftp".parse::<Protocol>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown protocol \"ftp\"; expected \"http\" or \"https\""
        );
        assert!("HTTP".parse::<Protocol>().is_err(), "words are lower case");
    }
}
