//! What one log line says, as owned values the writer formats later. Filled by the data plane
//! with what it already holds (`Arc` clones, header values that share the request's buffer), so
//! that filling one copies no text.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri, Version};

/// ALB's `conn_trace_id`: one per client connection, shared by the connection's line in the
/// connection log and its requests' lines in the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTraceId(pub u128);

impl ConnTraceId {
    pub fn random() -> Self {
        ConnTraceId(fastrand::u128(..))
    }
}

impl std::fmt::Display for ConnTraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TID_{:032x}", self.0)
    }
}

/// What the handshake settled, as the log writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsLine {
    pub protocol: rustls::ProtocolVersion,
    pub cipher: rustls::CipherSuite,
}

/// The certificate a connection was served, as ALB logs it (`chosen_cert_arn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificate {
    /// The certificate's name in the configuration.
    Named(Arc<str>),
    /// A resumed session: no certificate was sent (ALB writes `session-reused`).
    SessionReused,
}

impl Certificate {
    pub fn as_str(&self) -> &str {
        match self {
            Certificate::Named(n) => n,
            Certificate::SessionReused => "session-reused",
        }
    }
}

/// ALB's `matched_rule_priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RulePriority {
    /// The request was answered before routing (written `-`).
    #[default]
    NotRouted,
    /// The listener's default action (written `0`, as ALB does).
    Default,
    Rule(u32),
}

/// The request as the client sent it: ALB's `"request"` and `"user_agent"`.
#[derive(Debug, Clone)]
pub struct RequestLine {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    /// The Host header (or `:authority`), for the request line's `host`.
    pub host: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    /// The head's size as HTTP/1 frames it (ALB counts headers in `received_bytes`).
    pub head_bytes: u64,
}

/// One request's line.
#[derive(Debug, Clone)]
pub struct Entry {
    /// ALB's `type`: `http`, `https`, `h2`, `grpcs`, `ws`, `wss`.
    pub kind: &'static str,
    /// When the request arrived (`request_creation_time`).
    pub created: SystemTime,
    /// When the response ended (`time`).
    pub ended: SystemTime,
    /// The listener, for ALB's `elb` (`app/seawall/<listener>`).
    pub listener: Arc<str>,
    /// The listener's port, for the request line's URL.
    pub port: u16,
    pub client: SocketAddr,
    /// The target the request was (last) sent to.
    pub target: Option<SocketAddr>,
    pub request_processing: Option<Duration>,
    pub target_processing: Option<Duration>,
    pub response_processing: Option<Duration>,
    pub elb_status: u16,
    pub target_status: Option<u16>,
    /// Request head and body bytes.
    pub received_bytes: u64,
    /// Response head and body bytes.
    pub sent_bytes: u64,
    pub request: RequestLine,
    /// `https` or `http`: the request line's scheme.
    pub scheme: &'static str,
    pub tls: Option<TlsLine>,
    pub target_group: Option<Arc<str>>,
    pub trace_id: Option<HeaderValue>,
    /// The SNI the client asked for (`domain_name`).
    pub domain: Option<Arc<str>>,
    /// The certificate served (`chosen_cert_arn`).
    pub certificate: Option<Certificate>,
    pub rule: RulePriority,
    /// ALB's `actions_executed`: `forward`, `fixed-response`, `redirect`.
    pub action: Option<&'static str>,
    pub redirect_url: Option<HeaderValue>,
    /// Why seawall answered itself, as a code (`error_reason`).
    pub error_reason: Option<&'static str>,
    /// ALB's desync `classification` and `classification_reason`, for a request that is not
    /// plainly compliant.
    pub classification: Option<(&'static str, &'static str)>,
    pub conn_trace_id: ConnTraceId,
}

/// Whether a TLS connection's handshake succeeded: ALB's `tls_verify_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    Success,
    /// `Failed:<reason>`.
    Failed(&'static str),
}

/// One TLS connection's line in the connection log.
#[derive(Debug, Clone)]
pub struct ConnectionEntry {
    /// When the handshake ended (or failed).
    pub time: SystemTime,
    pub client: SocketAddr,
    pub listener_port: u16,
    /// `None` when the handshake failed before it settled them.
    pub tls: Option<TlsLine>,
    /// From accept to the end of the handshake.
    pub handshake: Duration,
    pub verify: Verify,
    pub conn_trace_id: ConnTraceId,
}
