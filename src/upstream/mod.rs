//! The way to the targets. The hot path is [`pool`]: each target's kept-alive connections, which
//! every forwarded request goes through; [`h1`] is the HTTP/1 client that runs an exchange in the
//! request's own task, and [`response`] the body a target answers with; [`connect`] opens new
//! connections (and the health checker's).
//! Here: what a forwarded request carries (its body type, the header rewriting a proxy owes both
//! sides: hop-by-hop removal, `X-Forwarded-*`, the ALB trace id) and the TLS setup towards targets.

pub mod connect;
pub mod forwarded;
pub mod h1;
pub mod pool;
pub mod response;
pub mod retry;
pub mod stall;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

pub use self::forwarded::{Added, ForwardedFor, TraceId, TRACE_ID_LEN, X_AMZN_TRACE_ID};
use self::stall::StallClock;
use crate::http_tokens;

/// A forwarded request's body: the client's, streamed through as hyper received it, or none. A
/// request without a body can be sent again (a retry on another target), so it never carries the
/// client's `Incoming`.
#[derive(Debug)]
pub enum UpstreamBody {
    /// Boxed: a request is moved down several levels on its way to the target, and most have
    /// no body.
    Stream(Box<ClientBody>),
    Empty,
}

/// The client's body on its way to a target (the exchange polls it: for HTTP/1, in the request's
/// task; for HTTP/2, the shared connection's task).
pub struct ClientBody {
    /// `None` only as the body is dropped.
    body: Option<Incoming>,
    /// How far reading it has come: the request's record and the pool read that.
    progress: Arc<BodyProgress>,
    /// The HTTP/1 connection the body comes on (see [`ClientConn`]); `None` over HTTP/2, whose
    /// streams are framed apart and reset on their own when left unread.
    client: Option<Arc<dyn ClientConn>>,
    /// The client asked for `100 Continue` before it sends the body, which hyper's server sends
    /// on the body's first read: a body never read was never asked for, so none is coming.
    expects_continue: bool,
    polled: bool,
    ended: bool,
    /// How long the client may send nothing while the body is waited on (the listener's
    /// `idle_timeout`, as ALB's): then the body fails as [`BodyError::Stalled`].
    clock: StallClock,
}

/// The client's HTTP/1 connection, as the body it sends to a target sees it. A target may
/// answer before it has read the whole body (or fail, or the body pass the listener's limit),
/// and the response end before the body does:
/// - the body is still the connection's business until it ends, not the next request's head
///   (`reading` when the body is made, `done` when it is dropped);
/// - what the exchange leaves unread is read on and thrown away (`unread`, before `done`), so
///   that the connection does not close on bytes it has not read, which would reset it and
///   lose the answer.
pub trait ClientConn: Send + Sync {
    fn reading(&self);
    fn unread(self: Arc<Self>, body: Incoming);
    fn done(&self);
}

impl ClientBody {
    /// The client's `body`, counted in `progress`, from `client` (see [`ClientConn`]);
    /// `expects_continue`: the client sent `Expect: 100-continue`; `idle`: how long the client
    /// may send nothing of it while it is waited on.
    pub fn new(
        body: Incoming,
        progress: Arc<BodyProgress>,
        client: Option<Arc<dyn ClientConn>>,
        expects_continue: bool,
        idle: Duration,
    ) -> Self {
        if let Some(c) = &client {
            c.reading();
        }
        ClientBody {
            body: Some(body),
            progress,
            client,
            expects_continue,
            polled: false,
            ended: false,
            clock: StallClock::new(idle),
        }
    }
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBody")
            .field("progress", &self.progress)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        let Some(client) = &self.client else {
            return;
        };
        // A body never read that waits for a `100 Continue` was never sent.
        let unread = !self.ended && (self.polled || !self.expects_continue);
        if let Some(body) = self.body.take().filter(|b| unread && !b.is_end_stream()) {
            client.clone().unread(body);
        }
        client.done();
    }
}

/// How far a client's request body has been read on its way to the target, and where the
/// exchange stands (the body waiting on its client, the answer under way), shared between the
/// body (polled by the exchange) and those who must judge the exchange after.
#[derive(Debug)]
pub struct BodyProgress {
    read: AtomicU64,
    /// Reading the client's body failed (bad chunk framing, the client gone before the length
    /// was read, or more than `limit`). The exchange then fails with an error that, by itself,
    /// may look like the target's (for HTTP/2, a reset stream): this says whose fault it was.
    failed: AtomicBool,
    /// The most body bytes the listener lets through (`max_body_bytes`); `u64::MAX` for none.
    limit: u64,
    /// The body last waited on its client (as opposed to the target not taking it, or its end).
    waiting: AtomicBool,
    /// It failed because the client sent nothing of it for the idle timeout.
    stalled: AtomicBool,
    /// The target's answer: `ANSWER_*`.
    answer: AtomicU8,
}

const ANSWER_AWAITED: u8 = 0;
const ANSWER_STREAMING: u8 = 1;
const ANSWER_ENDED: u8 = 2;

impl Default for BodyProgress {
    fn default() -> Self {
        BodyProgress::with_limit(None)
    }
}

/// Why the body sent to a target broke off: the client's framing, or the listener's size limit.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Client(#[from] hyper::Error),
    #[error("the request body is larger than the listener's limit of {0} bytes")]
    TooLarge(u64),
    #[error("the client sent nothing of the request body for {0:?}")]
    Stalled(Duration),
}

impl BodyProgress {
    /// A body that may carry at most `limit` bytes.
    pub fn with_limit(limit: Option<u64>) -> Self {
        BodyProgress {
            read: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            limit: limit.unwrap_or(u64::MAX),
            waiting: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            answer: AtomicU8::new(ANSWER_AWAITED),
        }
    }

    /// The target's answer has begun to go to the client.
    pub fn answer_began(&self) {
        self.answer.store(ANSWER_STREAMING, Ordering::Relaxed);
    }

    /// The target's answer has gone to the client, or been abandoned.
    pub fn answer_ended(&self) {
        self.answer.store(ANSWER_ENDED, Ordering::Relaxed);
    }

    fn answering(&self) -> bool {
        self.answer.load(Ordering::Relaxed) == ANSWER_STREAMING
    }

    /// Whether the body, unfinished, was last waiting for its client to send more: a target
    /// that has not answered by then has not had the whole request.
    pub fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Whether the body broke off because its client sent nothing of it for the idle timeout.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }

    /// Whether the body broke off for being larger than the limit.
    pub fn too_large(&self) -> bool {
        self.failed() && self.read() > self.limit
    }

    /// Body bytes read from the client so far.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Counts `n` more bytes read from the client.
    pub fn add_read(&self, n: u64) {
        self.read.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether the client's body broke off (see the field).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

impl UpstreamBody {
    /// The client's body's progress, for a body that streams one.
    pub fn progress(&self) -> Option<&Arc<BodyProgress>> {
        match self {
            UpstreamBody::Stream(c) => Some(&c.progress),
            UpstreamBody::Empty => None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Stream(c) => {
                let Some(b) = &mut c.body else {
                    return Poll::Ready(None);
                };
                c.polled = true;
                let progress = &c.progress;
                let polled = Pin::new(b).poll_frame(cx);
                let waiting = polled.is_pending();
                if waiting != progress.waiting() {
                    progress.waiting.store(waiting, Ordering::Relaxed);
                    if waiting {
                        c.clock.wait_began();
                    }
                }
                match polled {
                    Poll::Ready(Some(Ok(f))) => {
                        if let Some(data) = f.data_ref() {
                            progress.add_read(data.len() as u64);
                            if progress.read() > progress.limit {
                                // Failing the body abandons the exchange mid-body: the target
                                // never sees a request that looks whole.
                                progress.failed.store(true, Ordering::Release);
                                return Poll::Ready(Some(Err(BodyError::TooLarge(progress.limit))));
                            }
                        }
                        Poll::Ready(Some(Ok(f)))
                    }
                    // Set before the exchange sees the error, so it is set by the time the
                    // exchange fails with it. A body whose framing broke has nothing more to read.
                    Poll::Ready(Some(Err(e))) => {
                        progress.failed.store(true, Ordering::Release);
                        c.ended = true;
                        Poll::Ready(Some(Err(e.into())))
                    }
                    Poll::Ready(None) => {
                        c.ended = true;
                        Poll::Ready(None)
                    }
                    Poll::Pending if c.clock.stalled(cx, progress.answering()) => {
                        progress.stalled.store(true, Ordering::Release);
                        progress.failed.store(true, Ordering::Release);
                        // Given up on: not read on for the client's sake (see `Drop`), so that
                        // its connection closes, as ALB closes one idle that long.
                        c.body = None;
                        c.ended = true;
                        Poll::Ready(Some(Err(BodyError::Stalled(c.clock.idle()))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            UpstreamBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Stream(c) => c.body.as_ref().is_none_or(Body::is_end_stream),
            UpstreamBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Stream(c) => c
                .body
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), Body::size_hint),
            UpstreamBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// The TLS client side towards targets, shared by forwarded requests and health checks. Like ALB,
/// seawall does not verify target certificates (targets are addressed by IP and usually carry
/// self-signed certificates), but it does check the handshake signature, so the target holds the
/// key of the certificate it shows. No ALPN is set; [`connect::tls_connector`] adds it.
pub fn target_tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(crate::tls::provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyTargetCertificate(provider)))
        .with_no_client_auth()
}

/// Accepts any certificate but still checks handshake signatures: used for targets (as ALB does)
/// and by `seawall bench --insecure`.
#[derive(Debug)]
pub struct AnyTargetCertificate(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AnyTargetCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The Host an HTTP/1 request gets when the client sent none (HTTP/1.0): the target's address,
/// without the port when it is the scheme's default, as hyper-util's client wrote it.
pub fn host_header(authority: &Authority, scheme: &Scheme) -> HeaderValue {
    let default = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let host = if authority.port_u16() == Some(default) {
        authority.host()
    } else {
        authority.as_str()
    };
    HeaderValue::from_str(host).expect("an authority is a valid header value")
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1), besides those the
/// `Connection` header names; then `Upgrade`, which is hop-by-hop unless the exchange is an upgrade.
/// `Trailer` is not one of them (RFC 9110 §6.6.2): it announces the message's trailer fields end
/// to end, and hyper's HTTP/1.1 server sends a response's trailers only when it names them.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `name`'s bit in a mask of [`HOP_BY_HOP`] (0 for any other name). A match on the name's text
/// (a table lookup for a standard name) rather than eight comparisons of header names: it runs
/// once for every field of every message, both ways.
fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    match name.as_str() {
        "connection" => CONNECTION_BIT,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "proxy-authenticate" => 1 << 3,
        "proxy-authorization" => 1 << 4,
        "te" => 1 << 5,
        "transfer-encoding" => 1 << 6,
        "upgrade" => UPGRADE_BIT,
        _ => 0,
    }
}

const CONNECTION_BIT: u16 = 1;
const UPGRADE_BIT: u16 = 1 << 7;

/// What [`strip_hop_by_hop`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stripped {
    Nothing,
    /// Only headers of fixed names, which take this many bytes as HTTP/1 frames them
    /// (`name: value\r\n` each): a head measured before shrank by exactly that.
    Fields(usize),
    /// Headers that `Connection` named too, whose size was not counted.
    Listed,
}

/// Removes hop-by-hop headers. `Upgrade` is removed too unless the exchange is an upgrade, in which
/// case the caller puts `Connection: upgrade` back. Says what it removed.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) -> Stripped {
    // One pass over the headers finds which are present, so that only those cost a hash lookup
    // to remove: most messages carry none, or a lone `Connection: keep-alive`, whose value names
    // no other header to look up.
    let strip = if keep_upgrade { !UPGRADE_BIT } else { !0 };
    let mut present = 0u16;
    let mut lists_others = false;
    // `remove` takes every value of a name, so the fields counted here are the ones removed.
    let mut bytes = 0;
    for (name, value) in headers.iter() {
        let bit = hop_by_hop_bit(name) & strip;
        if bit != 0 {
            present |= bit;
            bytes += name.as_str().len() + value.len() + 4;
            if bit == CONNECTION_BIT {
                lists_others |= connection_options(value).next().is_some();
            }
        }
    }
    if present == 0 {
        return Stripped::Nothing;
    }
    if lists_others {
        // Names listed in Connection are hop-by-hop for this message only.
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(connection_options)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.into_iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if lists_others {
        Stripped::Listed
    } else {
        Stripped::Fields(bytes)
    }
}

/// The options of a `Connection` value that name other headers: all but `close` and those
/// handled as hop-by-hop anyway (`keep-alive`, `upgrade`).
fn connection_options(value: &HeaderValue) -> impl Iterator<Item = &str> {
    http_tokens::value_tokens(value).filter(|t| {
        !["keep-alive", "close", "upgrade"]
            .iter()
            .any(|k| t.eq_ignore_ascii_case(k))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hop_by_hop_name_has_its_bit_and_is_removed() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_bit(name), 1 << i, "{name}");
            let mut h = HeaderMap::new();
            // `close`, which as a Connection value names no other header to remove.
            h.insert(name.clone(), "close".parse().unwrap());
            h.insert("x-kept", "1".parse().unwrap());
            let fields = name.as_str().len() + "close".len() + 4;
            assert_eq!(strip_hop_by_hop(&mut h, false), Stripped::Fields(fields));
            assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"], "{name}");
        }
        assert_eq!(hop_by_hop_bit(&header::HOST), 0);
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        // End to end: it names the trailer fields that follow the body.
        h.insert(header::TRAILER, "x-checksum".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("x-kept"));
        assert_eq!(h[header::TRAILER], "x-checksum");

        // An upgrade keeps Upgrade (even when Connection lists it) and loses the rest.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade, X-Secret".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, true);
        let mut names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        names.sort();
        assert_eq!(names, ["upgrade", "x-kept"]);

        // Nothing hop-by-hop: nothing changes.
        let mut h = HeaderMap::new();
        h.insert("x-kept", "1".parse().unwrap());
        h.insert(header::HOST, "a".parse().unwrap());
        assert_eq!(strip_hop_by_hop(&mut h, false), Stripped::Nothing);
        assert_eq!(h.len(), 2);

        // A lone `Connection: keep-alive` goes; so does a name listed on a second Connection
        // line, behind one that lists nothing.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Keep-Alive".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        // What went, as HTTP/1 frames it: `connection: Keep-Alive\r\n`.
        assert_eq!(strip_hop_by_hop(&mut h, false), Stripped::Fields(24));
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "close".parse().unwrap());
        h.append(header::CONNECTION, " , x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        assert_eq!(strip_hop_by_hop(&mut h, false), Stripped::Listed);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn host_for_clients_without_one_is_the_target_without_a_default_port() {
        let a: Authority = "10.0.0.1:80".parse().unwrap();
        assert_eq!(host_header(&a, &Scheme::HTTP), "10.0.0.1");
        assert_eq!(host_header(&a, &Scheme::HTTPS), "10.0.0.1:80");
        let a: Authority = "[::1]:443".parse().unwrap();
        assert_eq!(host_header(&a, &Scheme::HTTPS), "[::1]");
        let a: Authority = "10.0.0.1:8080".parse().unwrap();
        assert_eq!(host_header(&a, &Scheme::HTTP), "10.0.0.1:8080");
    }
}
