//! What one log line says: what a request leaves behind when it arrives ([`Entry`]), what its
//! connection says ([`Connection`]), and the finished request ([`Request`]), which borrows the
//! rest from the record that ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Version};

use super::format::copy_short;

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
        // Not `SystemTime::now().duration_since(UNIX_EPOCH)`: its checked subtraction and
        // normalisation cost a hundred instructions per request (callgrind), a fifth of what
        // formatting the whole line costs.
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        WallTime {
            secs: u64::try_from(t.tv_sec).unwrap_or(0),
            micros: (t.tv_nsec / 1000) as u32,
        }
    }

    /// The time `d` before this one: a request's arrival, from its end and how long it took,
    /// which spares a second read of the wall clock per request.
    pub fn before(self, d: Duration) -> Self {
        let micros = (self.secs * 1_000_000 + u64::from(self.micros))
            .saturating_sub(d.as_secs() * 1_000_000 + u64::from(d.subsec_micros()));
        WallTime {
            secs: micros / 1_000_000,
            micros: (micros % 1_000_000) as u32,
        }
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
/// are slices of the connection's read buffer, and a slice kept alive until the line is written
/// would stop hyper from reusing that buffer for the next request.
#[derive(Debug, Clone)]
pub struct RequestLine {
    pub method: Method,
    pub version: Version,
    /// The request target, the host and the user agent, one after the other.
    text: Text,
    /// Where each of the three ends in `text`; an absent one is empty.
    ends: [u32; 3],
    /// Which of the host and the user agent are present (bits 0 and 1).
    present: u8,
}

/// Up to this many bytes of request text are kept inline: a short URL, a host and a terse user
/// agent fit, and an allocation and its free per request cost a tenth of the whole line.
const INLINE_TEXT: usize = 96;

#[derive(Debug, Clone)]
enum Text {
    Inline([u8; INLINE_TEXT]),
    Heap(Box<[u8]>),
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
        let ends = [
            target.len(),
            target.len() + h.len(),
            target.len() + h.len() + ua.len(),
        ];
        let fill = |text: &mut [u8]| {
            copy_short(&mut text[..ends[0]], target);
            copy_short(&mut text[ends[0]..ends[1]], h);
            copy_short(&mut text[ends[1]..ends[2]], ua);
        };
        let text = if ends[2] <= INLINE_TEXT {
            let mut inline = [0; INLINE_TEXT];
            fill(&mut inline);
            Text::Inline(inline)
        } else {
            let mut heap = vec![0; ends[2]].into_boxed_slice();
            fill(&mut heap);
            Text::Heap(heap)
        };
        RequestLine {
            method,
            version,
            // A request head is far below 4 GiB (hyper's limit is kilobytes).
            ends: ends.map(|e| e as u32),
            text,
            present: u8::from(host.is_some()) | u8::from(user_agent.is_some()) << 1,
        }
    }

    fn part(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let text = match &self.text {
            Text::Inline(t) => &t[..],
            Text::Heap(t) => t,
        };
        &text[start..self.ends[i] as usize]
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
        self.ends[2] as usize
    }
}

/// What the log keeps of a request from its arrival: what is gone from the request by the time
/// its record ends. Filled in place as the request goes, and formatted (on the worker that
/// served the request) when the record ends.
#[derive(Debug, Clone)]
pub struct Entry {
    /// ALB's `type`: `http`, `https`, `h2`, `grpcs`, `ws`, `wss`.
    pub kind: &'static str,
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
    /// When the request arrived (`request_creation_time`).
    pub created: WallTime,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_the_system_clock() {
        let std = WallTime::from(SystemTime::now());
        let ours = WallTime::now();
        let micros = |t: WallTime| t.secs * 1_000_000 + u64::from(t.micros);
        assert!(micros(ours) >= micros(std));
        assert!(
            micros(ours) - micros(std) < 5_000_000,
            "{ours:?} vs {std:?}"
        );
    }

    #[test]
    fn before_borrows_from_the_seconds() {
        let end = WallTime {
            secs: 10,
            micros: 100,
        };
        let start = end.before(Duration::from_micros(250));
        assert_eq!((start.secs, start.micros), (9, 999_850));
        let never = end.before(Duration::from_secs(11));
        assert_eq!((never.secs, never.micros), (0, 0));
    }

    #[test]
    fn request_text_reads_back_inline_and_on_the_heap() {
        for len in [0, 10, INLINE_TEXT - 20, INLINE_TEXT, 500] {
            let target = vec![b'/'; len];
            let line = RequestLine::new(
                Method::GET,
                Version::HTTP_11,
                &target,
                Some(b"example.com"),
                None,
            );
            assert_eq!(line.target(), &target[..]);
            assert_eq!(line.host(), Some(&b"example.com"[..]));
            assert_eq!(line.user_agent(), None);
            assert_eq!(line.text_len(), len + 11);
        }
    }
}
