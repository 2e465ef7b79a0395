//! One record per request (rpxy's `HttpMessageLog` is the model): made when the request arrives,
//! filled by TLS, routing and the forward as the request goes, and finished once, when the
//! response body ends or is dropped. The metrics are observed from it, and with the access log on
//! it keeps the log's [`Entry`], begun on arrival ([`begin_entry`]) with what only the log needs
//! (the request line), and writes the line when it ends.
//!
//! Nothing here allocates per request (but the request line's text, when the log is on): names
//! are `Arc<str>` clones held by the metric handles,
//! times are [`Moment`]s, statuses `StatusCode`s, header values share the request's buffer; what
//! the connection knows (TLS) is computed once per connection and shared.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Request, Response, StatusCode, Version};

use super::ConnContext;
pub use crate::access_log::Certificate;
use crate::access_log::{self, Entry, RequestLine, RulePriority};
use crate::error::RequestError;
use crate::metrics::RequestMetrics;
use crate::routing::Priority;
use crate::server::activity::RequestGuard;
use crate::upstream::{BodyProgress, TraceId};

/// What a TLS connection's handshake settled, once per connection.
#[derive(Debug, Clone)]
pub struct TlsFacts {
    /// ALB's `ssl_protocol`.
    pub version: rustls::ProtocolVersion,
    /// ALB's `ssl_cipher`.
    pub cipher: rustls::CipherSuite,
    /// The server name the client asked for (SNI), if any.
    pub sni: Option<Arc<str>>,
    /// ALB's `chosen_cert_arn`: which certificate was served.
    pub certificate: Certificate,
    /// What the client's certificate says, on a listener with `client_auth` when the client
    /// presented one: its `X-Amzn-Mtls-*` headers are rendered once here.
    pub client_cert: Option<Arc<crate::tls::ClientCert>>,
}

/// ALB's `actions_executed`: what seawall did with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Forward,
    FixedResponse,
    Redirect,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Forward => "forward",
            ActionKind::FixedResponse => "fixed-response",
            ActionKind::Redirect => "redirect",
        }
    }
}

/// A reading of the monotonic clock (`Instant`'s), in nanoseconds. A request's record takes up to
/// four differences of these, and `Instant`'s subtraction checks and normalises seconds and
/// nanoseconds apart, a call of some forty instructions each (callgrind); here it is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(u64);

impl Moment {
    pub fn now() -> Self {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        // Monotonic time is since boot: never negative, and far from 584 years.
        Moment(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
    }

    /// The time from `earlier` to this moment; zero if `earlier` is later.
    pub fn since(self, earlier: Moment) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// The time since this moment.
    pub fn elapsed(self) -> Duration {
        Moment::now().since(self)
    }
}

/// For tests, which make moments apart by known times.
#[cfg(test)]
impl std::ops::Add<Duration> for Moment {
    type Output = Moment;

    fn add(self, d: Duration) -> Moment {
        Moment(self.0 + d.as_nanos() as u64)
    }
}

/// When the request passed each point of its way: ALB's three processing times.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The request head was handed to seawall's service.
    pub arrived: Moment,
    /// The request was first sent towards a target (a retry keeps the first send).
    pub sent: Option<Moment>,
    /// The target's response head arrived.
    pub head: Option<Moment>,
    /// The response was handed to the client connection to write.
    pub responded: Option<Moment>,
}

impl Timing {
    pub fn new(arrived: Moment) -> Self {
        Timing {
            arrived,
            sent: None,
            head: None,
            responded: None,
        }
    }

    /// ALB's `request_processing_time`: arrival to sent to the target; `None` (ALB's -1) when
    /// it never was.
    pub fn request_processing(&self) -> Option<Duration> {
        Some(self.sent?.since(self.arrived))
    }

    /// ALB's `target_processing_time`: sent to the target's response head.
    pub fn target_processing(&self) -> Option<Duration> {
        Some(self.head?.since(self.sent?))
    }

    /// ALB's `response_processing_time`: the target's response head to the response being
    /// handed to the client connection (ALB measures to its first byte out; this is as close as
    /// the hot path gets without a clock read per body frame).
    pub fn response_processing(&self) -> Option<Duration> {
        Some(self.responded?.since(self.head?))
    }
}

/// What one request met, filled as it goes. Fields stay `None` for what did not happen.
#[derive(Debug)]
pub struct Facts {
    pub timing: Timing,
    /// The request's HTTP version, as the client sent it.
    pub version: Version,
    /// ALB's `matched_rule_priority`; `None` when the request was refused before routing.
    pub rule: Option<Priority>,
    /// ALB's `actions_executed`.
    pub action: Option<ActionKind>,
    /// The listener and target group pair the request counts under (its metric handles, and
    /// the group's name); `None` when no group answered, and the listener's own counters
    /// (`ListenerContext::direct`) count it.
    pub metrics: Option<Arc<RequestMetrics>>,
    /// The target the request was (last) sent to.
    pub target: Option<SocketAddr>,
    /// seawall's answer (ALB's `elb_status_code`); `None` until there is one, so that a request
    /// whose client left before it is not counted.
    pub status: Option<StatusCode>,
    /// The target's answer (ALB's `target_status_code`), when one came.
    pub target_status: Option<StatusCode>,
    /// How far the request body has been read from the client: counted by the forwarded body as
    /// it streams, only for requests that have one.
    pub received: Option<Arc<BodyProgress>>,
    /// Response body bytes handed to the client connection.
    pub sent_bytes: u64,
    /// The response head's size as the client gets it over HTTP/1, when the target's head is
    /// passed on unchanged: measured for the head limit, it spares the access log a second
    /// count.
    pub response_head: Option<usize>,
    /// The `X-Amzn-Trace-Id` the target was sent (the client's, or one seawall made).
    pub trace_id: Option<TraceId>,
    /// Why seawall answered itself (ALB's `error_reason`), if it did.
    pub error: Option<RequestError>,
    /// ALB's desync classification, for a request that is not plainly compliant.
    pub classification: Option<(&'static str, &'static str)>,
}

impl Facts {
    pub fn new(arrived: Moment) -> Self {
        Facts {
            timing: Timing::new(arrived),
            version: Version::HTTP_11,
            rule: None,
            action: None,
            metrics: None,
            target: None,
            status: None,
            target_status: None,
            received: None,
            sent_bytes: 0,
            response_head: None,
            trace_id: None,
            error: None,
            classification: None,
        }
    }

    /// Request body bytes read from the client so far.
    pub fn received_bytes(&self) -> u64 {
        self.received.as_ref().map_or(0, |r| r.read())
    }
}

/// A request's record. Dropping it finishes it: the metrics are counted then, once.
pub struct Record {
    /// The connection the request came on: listener, client address and port, TLS facts.
    pub conn: Arc<ConnContext>,
    /// What the request met, filled by `respond` and the forward, read when the record ends.
    pub facts: Facts,
    /// The access log's entry, begun when the request arrives while the log is on; its line
    /// is written when the record ends.
    pub line: Option<Entry>,
    /// Keeps the request counted as in flight on its connection (the idle timer) while the
    /// record lives; dropped after the metrics are counted.
    _in_flight: RequestGuard,
}

impl Record {
    /// Begins the record of a request that has just arrived on `conn`, with its access-log
    /// entry when the log is on ([`begin_entry`]).
    pub fn new(conn: Arc<ConnContext>, line: Option<Entry>) -> Self {
        let in_flight = conn.activity.begin_request();
        Record {
            conn,
            facts: Facts::new(Moment::now()),
            line,
            _in_flight: in_flight,
        }
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("listener", &self.conn.listener.name)
            .field("peer", &self.conn.peer)
            .field("facts", &self.facts)
            .finish()
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let f = &self.facts;
        // One clock read and each processing time once, for the metrics and the log alike.
        let took = f.timing.arrived.elapsed();
        let target_processing = f.timing.target_processing();
        let Some(status) = f.status else {
            // The client left before an answer: not counted, but logged as ALB logs it.
            self.write_log(CLIENT_CLOSED, took, target_processing);
            return;
        };
        // A group's pair when a group answered; else the listener's own counters.
        let listener = &*self.conn.listener;
        let counted = f.metrics.as_deref().unwrap_or(&listener.direct);
        counted.count(status);
        counted.observe_duration(took.as_secs_f64());
        listener.counters.request_version(f.version);
        if counted.group().is_none() || f.error.is_some() {
            listener.plane.metrics.elb_response(status);
        }
        if f.error.is_none() {
            match f.action {
                Some(ActionKind::Redirect) => listener.counters.redirects.inc(),
                Some(ActionKind::FixedResponse) => listener.counters.fixed_responses.inc(),
                Some(ActionKind::Forward) | None => {}
            }
        }
        if let (Some(m), Some(t)) = (&f.metrics, target_processing) {
            m.observe_target_response(t.as_secs_f64());
        }
        self.write_log(status, took, target_processing);
    }
}

/// ALB's status for a request whose client closed the connection before an answer was sent: in
/// the access log only (ALB counts it in no metric either).
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(460) {
    Ok(s) => s,
    Err(_) => panic!("460 is in the valid range"),
};

/// The access log's entry for `req`, begun as it arrives on `conn` (only while the log is on):
/// what the request says now, the rest is filled in when the record ends.
pub fn begin_entry<B>(req: &Request<B>, conn: &ConnContext, grpc: bool) -> Entry {
    let uri = req.uri();
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    // One pass over the headers finds the two the log needs and sizes the head: two lookups
    // by name would hash each name again.
    let (mut host, mut user_agent, mut headers_len) = (None, None, 0);
    for (n, v) in req.headers() {
        // `name: value\r\n`
        headers_len += n.as_str().len() + 2 + v.len() + 2;
        if *n == header::HOST {
            host = host.or(Some(v.as_bytes()));
        } else if *n == header::USER_AGENT {
            user_agent = user_agent.or(Some(v.as_bytes()));
        }
    }
    // `GET /path HTTP/1.1\r\n`, the headers, the blank line.
    let head = req.method().as_str().len() + 1 + target.len() + 11 + headers_len + 2;
    // An absolute-form target (always, in HTTP/2) names its own authority.
    if let Some(a) = uri.authority() {
        host = Some(a.as_str().as_bytes());
    }
    Entry {
        kind: match (conn.tls.is_some(), req.version()) {
            (true, Version::HTTP_2) if grpc => "grpcs",
            (_, Version::HTTP_2) => "h2",
            (true, _) => "https",
            (false, _) => "http",
        },
        request: RequestLine::new(
            req.method().clone(),
            req.version(),
            target.as_bytes(),
            host,
            user_agent,
        ),
        received_head: head as u64,
        sent_head: 0,
        redirect_url: None,
    }
}

/// Notes in `entry` what seawall hands the client: the response head's size as HTTP/1 frames
/// it (`known` when it was measured already, see [`Facts::response_head`]), and a redirect's
/// `Location`.
pub fn responded<B>(entry: &mut Entry, resp: &Response<B>, known: Option<usize>) {
    let head =
        known.unwrap_or_else(|| super::headers::head_bytes(resp.status(), resp.headers()).sent());
    entry.sent_head = head as u64;
    if resp.status().is_redirection() {
        entry.redirect_url = resp.headers().get(header::LOCATION).cloned();
    }
}

impl Record {
    /// Writes the request's access-log line, if the log was on when the request arrived and
    /// still is (a reload may have turned it off since). `took` is from the request's arrival
    /// to now.
    fn write_log(
        &mut self,
        status: StatusCode,
        took: Duration,
        target_processing: Option<Duration>,
    ) {
        let Some(e) = &self.line else {
            return;
        };
        let conn = &*self.conn;
        let log = &conn.listener.plane.access_log;
        if !log.requests_on() {
            return;
        }
        let f = &self.facts;
        let tls = conn.tls.as_ref();
        let ended = access_log::WallTime::now();
        log.request(&access_log::Request {
            entry: e,
            conn: access_log::Connection {
                listener: &conn.listener.name,
                port: conn.listener.port,
                client: conn.peer,
                tls: tls.map(|t| access_log::TlsLine {
                    protocol: t.version,
                    cipher: t.cipher,
                }),
                domain: tls.and_then(|t| t.sni.as_deref()),
                certificate: tls.map(|t| &t.certificate),
                trace_id: conn.trace_id,
                text: &conn.log_text,
            },
            kind: match status {
                StatusCode::SWITCHING_PROTOCOLS if tls.is_some() => "wss",
                StatusCode::SWITCHING_PROTOCOLS => "ws",
                _ => e.kind,
            },
            created: ended.before(took),
            ended,
            target: f.target,
            request_processing: f.timing.request_processing(),
            target_processing,
            response_processing: f.timing.response_processing(),
            elb_status: status.as_u16(),
            target_status: f.target_status.map(|s| s.as_u16()),
            received_bytes: e.received_head + f.received_bytes(),
            sent_bytes: e.sent_head + f.sent_bytes,
            target_group: f.metrics.as_ref().and_then(|m| m.group()).map(|g| &**g),
            trace_id: f.trace_id.as_ref().map(|t| match t {
                TraceId::Made(id) => access_log::TraceText::Own(id),
                TraceId::Client(v) => access_log::TraceText::Client(v.as_bytes()),
            }),
            rule: match f.rule {
                None => RulePriority::NotRouted,
                Some(Priority::Default) => RulePriority::Default,
                Some(Priority::Rule(p)) => RulePriority::Rule(p),
            },
            action: f.action.map(ActionKind::as_str),
            error_reason: f.error.as_ref().map(RequestError::log_code),
            classification: f.classification,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processing_times_are_albs_three_and_absent_when_not_reached() {
        let t0 = Moment::now();
        let ms = Duration::from_millis;
        let mut t = Timing::new(t0);
        assert_eq!(t.request_processing(), None);
        assert_eq!(t.target_processing(), None);
        assert_eq!(t.response_processing(), None);
        t.responded = Some(t0 + ms(1));
        assert_eq!(t.response_processing(), None, "never forwarded");
        t.sent = Some(t0 + ms(2));
        t.head = Some(t0 + ms(7));
        t.responded = Some(t0 + ms(8));
        assert_eq!(t.request_processing(), Some(ms(2)));
        assert_eq!(t.target_processing(), Some(ms(5)));
        assert_eq!(t.response_processing(), Some(ms(1)));
    }

    #[test]
    fn received_bytes_read_the_shared_count() {
        let mut f = Facts::new(Moment::now());
        assert_eq!(f.received_bytes(), 0);
        let progress = Arc::new(BodyProgress::default());
        f.received = Some(progress.clone());
        progress.add_read(42);
        assert_eq!(f.received_bytes(), 42);
    }

    #[test]
    fn labels_are_albs() {
        assert_eq!(ActionKind::FixedResponse.as_str(), "fixed-response");
        assert_eq!(Certificate::SessionReused.as_str(), "session-reused");
        assert_eq!(Certificate::Named("web".into()).as_str(), "web");
    }
}
