//! What one log line says: what a request leaves behind when it arrives ([`Entry`]), what its
//! connection says ([`Connection`]), and the finished request ([`Request`]), which borrows the
//! rest from the record that ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// A wall-clock time as the log writes it: seconds and microseconds since the Unix epoch, taken
/// apart once, when the time is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallTime {
    pub secs: u64,
    pub micros: u32,
}

impl WallTime {
    pub fn now() -> Self {
        // Not rustix's clock_gettime: its own vDSO lookup crashes under valgrind, which the
        // benchmarks run seawall in.
        SystemTime::now().into()
    }
}

impl From<SystemTime> for WallTime {
    fn from(t: SystemTime) -> Self {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        WallTime {
            secs: since.as_secs(),
            micros: since.subsec_micros(),
        }
    }
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
///
/// The text is copied, not shared with the request: header values and the URI that hyper parsed
/// are slices of the connection's read buffer, and a slice kept alive until the writer gets to
/// it would stop hyper from reusing that buffer for the next request.
#[derive(Debug, Clone)]
pub struct RequestLine {
    pub method: Method,
    pub version: Version,
    /// The request target, the host and the user agent, one after the other, in one
    /// allocation.
    text: Vec<u8>,
    /// Where each of the three ends in `text`; an absent one is empty.
    ends: [u32; 3],
    /// Which of the host and the user agent are present (bits 0 and 1).
    present: u8,
}

impl RequestLine {
    pub fn new(
        method: Method,
        version: Version,
        target: &[u8],
        host: Option<&[u8]>,
        user_agent: Option<&[u8]>,
    ) -> Self {
        let (h, ua) = (host.unwrap_or_default(), user_agent.unwrap_or_default());
        let mut text = Vec::with_capacity(target.len() + h.len() + ua.len());
        text.extend_from_slice(target);
        let target_end = text.len() as u32;
        text.extend_from_slice(h);
        let host_end = text.len() as u32;
        text.extend_from_slice(ua);
        RequestLine {
            method,
            version,
            ends: [target_end, host_end, text.len() as u32],
            text,
            present: u8::from(host.is_some()) | u8::from(user_agent.is_some()) << 1,
        }
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

    /// How many bytes the text takes: quoted fields take up to four times as many escaped.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }
}

/// What the log keeps of a request from its arrival: what is gone from the request by the time
/// its record ends. Filled in place as the request goes, and formatted (on the worker that
/// served the request) when the record ends.
#[derive(Debug, Clone)]
pub struct Entry {
    /// ALB's `type`: `http`, `https`, `h2`, `grpcs`, `ws`, `wss`.
    pub kind: &'static str,
    /// When the request arrived (`request_creation_time`).
    pub created: WallTime,
    pub request: RequestLine,
    /// The request head's size as HTTP/1 frames it.
    pub received_head: u64,
    /// The response head's size as HTTP/1 frames it, once one is handed to the client.
    pub sent_head: u64,
    pub redirect_url: Option<HeaderValue>,
}

/// What the log needs of a connection, and the parts of a request line that only the connection
/// decides, formatted once on its first request (see [`ConnText`]).
#[derive(Debug)]
pub struct Connection<'a> {
    /// The listener, for ALB's `elb` (`app/seawall/<listener>`).
    pub listener: &'a str,
    /// The listener's port, for the request line's URL.
    pub port: u16,
    pub client: SocketAddr,
    pub tls: Option<TlsLine>,
    /// The SNI the client asked for (`domain_name`).
    pub domain: Option<&'a str>,
    /// The certificate served (`chosen_cert_arn`).
    pub certificate: Option<&'a Certificate>,
    pub trace_id: ConnTraceId,
    pub text: &'a ConnText,
}

/// A connection's parts of its requests' lines in ALB's text format, formatted on its first
/// logged request and reused by the rest: the client's address, the listener, the TLS names
/// and the connection's trace id are the same on every line of a connection.
#[derive(Debug, Default)]
pub struct ConnText(pub(super) std::sync::OnceLock<Box<super::format::ConnParts>>);

/// One finished request, as the log writes it: the [`Entry`] begun on arrival, its connection,
/// and what the record learnt on the way.
#[derive(Debug)]
pub struct Request<'a> {
    pub entry: &'a Entry,
    pub conn: Connection<'a>,
    /// ALB's `type`, unless the request became a WebSocket (`ws`, `wss`).
    pub kind: &'static str,
    /// When the response ended (`time`).
    pub ended: WallTime,
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
    pub target_group: Option<&'a str>,
    /// The trace id the target was sent (or the client's, for an answer seawall made).
    pub trace_id: Option<TraceText<'a>>,
    pub rule: RulePriority,
    /// ALB's `actions_executed`: `forward`, `fixed-response`, `redirect`.
    pub action: Option<&'static str>,
    /// Why seawall answered itself, as a code (`error_reason`).
    pub error_reason: Option<&'static str>,
    /// ALB's desync `classification` and `classification_reason`, for a request that is not
    /// plainly compliant.
    pub classification: Option<(&'static str, &'static str)>,
}

/// A request's trace id, as the log writes it.
#[derive(Debug, Clone, Copy)]
pub enum TraceText<'a> {
    /// The client's: escaped like any client text.
    Client(&'a [u8]),
    /// One seawall made (`Root=1-` and hex digits): written as it is.
    Own(&'a [u8]),
}

impl<'a> TraceText<'a> {
    pub fn as_bytes(self) -> &'a [u8] {
        match self {
            TraceText::Client(t) | TraceText::Own(t) => t,
        }
    }
}

impl Request<'_> {
    /// `https` or `http`: the request line's scheme.
    pub fn scheme(&self) -> &'static str {
        if self.conn.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
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
    pub time: WallTime,
    pub client: SocketAddr,
    pub listener_port: u16,
    /// `None` when the handshake failed before it settled them.
    pub tls: Option<TlsLine>,
    /// From accept to the end of the handshake.
    pub handshake: Duration,
    /// The client's certificate, on a listener with `client_auth` (ALB's
    /// `leaf_client_cert_subject`, `_validity` and `_serial_number`).
    pub client_cert: Option<Arc<crate::tls::ClientCert>>,
    pub verify: Verify,
    pub conn_trace_id: ConnTraceId,
}
