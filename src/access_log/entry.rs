//! What one log line says, as owned values the writer formats later. Filled by the data plane
//! with what it already holds (`Arc` clones, header values that share the request's buffer), so
//! that filling one copies no text.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Version};

/// ALB's `conn_trace_id`: one per client connection, shared by the connection's line in the
/// connection log and its requests' lines in the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTraceId(pub u128);

impl ConnTraceId {
    pub fn random() -> Self {
        ConnTraceId(fastrand::u128(..))
    }
}

impl ConnTraceId {
    /// `TID_` and 32 hex digits, as ALB writes it.
    pub fn write_to(self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(b"TID_");
        out.extend(
            (0..32)
                .rev()
                .map(|i| HEX[((self.0 >> (i * 4)) & 15) as usize]),
        );
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

/// The request as the client sent it: ALB's `"request"` and `"user_agent"`, and its trace id.
///
/// The text is copied, not shared with the request: header values and the URI that hyper parsed
/// are slices of the connection's read buffer, and a slice kept alive until the writer gets to
/// it would stop hyper from reusing that buffer for the next request.
#[derive(Debug, Clone)]
pub struct RequestLine {
    pub method: Method,
    pub version: Version,
    /// The request target, the host, the user agent and the trace id, one after the other, in
    /// one allocation.
    text: Vec<u8>,
    /// Where each of the four ends in `text`; an absent one is empty.
    ends: [u32; 4],
    /// Which of the host, the user agent and the trace id are present (bits 0, 1, 2).
    present: u8,
}

/// Room kept for the trace id, which is known only once the request is routed (seawall's own
/// are 40 bytes).
const TRACE_ID_ROOM: usize = 48;

impl RequestLine {
    pub fn new(
        method: Method,
        version: Version,
        target: &[u8],
        host: Option<&[u8]>,
        user_agent: Option<&[u8]>,
    ) -> Self {
        let (h, ua) = (host.unwrap_or_default(), user_agent.unwrap_or_default());
        let mut text = Vec::with_capacity(target.len() + h.len() + ua.len() + TRACE_ID_ROOM);
        text.extend_from_slice(target);
        let target_end = text.len() as u32;
        text.extend_from_slice(h);
        let host_end = text.len() as u32;
        text.extend_from_slice(ua);
        let ua_end = text.len() as u32;
        RequestLine {
            method,
            version,
            text,
            ends: [target_end, host_end, ua_end, ua_end],
            present: u8::from(host.is_some()) | u8::from(user_agent.is_some()) << 1,
        }
    }

    /// Adds the trace id the target was sent (or the client's, for an answer seawall made).
    pub fn set_trace_id(&mut self, id: &[u8]) {
        self.text.truncate(self.ends[2] as usize);
        self.text.extend_from_slice(id);
        self.ends[3] = self.text.len() as u32;
        self.present |= 4;
    }

    fn part(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// The request target as sent (origin form: path and query).
    pub fn target(&self) -> &[u8] {
        self.part(0)
    }

    pub fn host(&self) -> Option<&[u8]> {
        (self.present & 1 != 0).then(|| self.part(1))
    }

    pub fn user_agent(&self) -> Option<&[u8]> {
        (self.present & 2 != 0).then(|| self.part(2))
    }

    pub fn trace_id(&self) -> Option<&[u8]> {
        (self.present & 4 != 0).then(|| self.part(3))
    }
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
    /// Request head (as HTTP/1 frames it) and body bytes.
    pub received_bytes: u64,
    /// Response head and body bytes.
    pub sent_bytes: u64,
    pub request: RequestLine,
    /// `https` or `http`: the request line's scheme.
    pub scheme: &'static str,
    pub tls: Option<TlsLine>,
    pub target_group: Option<Arc<str>>,
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
