//! One client connection: TLS handshake (with its deadline), the HTTP/1.1 or HTTP/2 server chosen by
//! ALPN, and the idle and drain policy around hyper's connection future.

pub mod activity;
pub mod framing;
pub mod h2_limits;
mod metered;
pub mod proxy_protocol;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::access_log::{ConnTraceId, ConnectionEntry, TlsLine, Verify};
use crate::descriptors::ClientSlot;
use crate::metrics::{
    Counted, HandshakeFailure, HandshakeKind, Http2ConnError, ListenerCounters, RequestMetrics,
};
use crate::protocol::Protocol;
use crate::proxy::record::Certificate;
use crate::proxy::{self, ConnContext, TlsFacts};
use crate::snapshot::Plane;
use crate::tls::{ClientAuthMode, ClientCert, ListenerTls};
use activity::{Activity, HeadGuard, HeadLimits};
use h2_limits::ResetBudget;
use metered::Metered;

/// What every connection of one listener shares.
pub struct ListenerContext {
    pub name: Arc<str>,
    pub protocol: Protocol,
    /// The bound port, also pre-rendered for `X-Forwarded-Port`.
    pub port: u16,
    pub port_header: HeaderValue,
    /// The configuration in force and the metrics: all the data plane sees of the process.
    pub plane: Arc<Plane>,
    /// `requests_total` for answers no target group gave (fixed responses, redirects, requests
    /// refused before routing): its labels do not change with the configuration, so it lives
    /// as long as the listener, across snapshots.
    pub direct: Arc<RequestMetrics>,
    /// The listener's own counters (bytes, rule evaluations, redirects, fixed responses,
    /// requests by version): like `direct`, they live as long as the listener.
    pub counters: ListenerCounters,
    /// Cancelled when the listener is removed by a reload or the process drains: its connections
    /// finish their requests and close.
    pub stop: tokio_util::sync::CancellationToken,
}

/// What one client connection may take: `[runtime]`'s deadlines and sizes, read from the
/// snapshot in force when the connection starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A connection with no request in flight is closed after this (keep-alive gaps included).
    pub idle_timeout: Duration,
    /// From a request head's first byte to its end; then 408.
    pub header_timeout: Duration,
    /// From accept to the end of the TLS handshake (the PROXY protocol header, when the listener
    /// expects one, included).
    pub handshake_timeout: Duration,
    /// The largest request head; then 431. Over HTTP/2, the largest decoded header list.
    pub max_header_bytes: usize,
    /// Streams an HTTP/2 connection may have open at once; more are refused (REFUSED_STREAM).
    pub http2_max_concurrent_streams: u32,
    /// How fast an HTTP/2 client may cancel streams before their answers begin, beyond a burst
    /// of `http2_max_concurrent_streams` (see [`h2_limits::ResetBudget`]).
    pub http2_max_resets_per_second: u32,
}

/// What one HTTP/2 stream may hold of its response beyond what the client has taken (hyper's
/// default is 400 KiB): a client that opens every stream it may and reads none of them pins this
/// times `http2_max_concurrent_streams` until `idle_timeout` closes it. The kernel's socket
/// buffer, not this, keeps a fast client's link full.
const H2_SEND_BUFFER: usize = 64 * 1024;

/// How long a connection that was asked to close gracefully (idle timeout) may take to do so.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// While draining, how long an idle HTTP/1 connection is kept open for one last request.
///
/// Closing an idle keep-alive connection races with a client that is sending a request on it at
/// that moment: the request is lost and the client sees a reset, which it may not retry. So a
/// draining HTTP/1 connection answers its next request with `Connection: close` (as HAProxy did
/// before 2.4) and is only closed outright once it has sat idle this long since the drain began.
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// Serves one accepted connection to its end.
///
/// Every connection's task is as large as this future's largest state, for as long as the
/// connection lives, so its states are kept small: the handshake's and hyper's states live in
/// their own futures or boxes, and no value that has moved on to the next stage (the TCP stream
/// into the handshake, the TLS stream into `serve_http`) is borrowed here, which would make the
/// compiler keep its room.
///
/// `slot` is the connection's place under the process's cap on client connections; an upgraded
/// connection's tunnel keeps it after this returns.
pub async fn serve(
    mut tcp: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerContext>,
    slot: Arc<ClientSlot>,
) {
    let snapshot = listener.plane.snapshot.load_full();
    // The listener may have gone in a reload between accept and now.
    let Some(compiled) = snapshot.listener(&listener.name) else {
        return;
    };
    let rt = &snapshot.limits;
    // One deadline for the PROXY protocol header and the TLS handshake after it: the setting
    // counts from accept, so a balancer's slow header leaves the handshake less time.
    let handshake_by = Instant::now() + rt.handshake_timeout;
    let _ = tcp.set_nodelay(true);
    let mut conn = Conn {
        peer,
        trace_id: ConnTraceId::random(),
    };
    if compiled.proxy_protocol {
        match proxied_client(&mut tcp, peer, &listener, handshake_by).await {
            Some(client) => conn.peer = client,
            None => return,
        }
    }
    let counters = &listener.counters;
    match &compiled.tls {
        Some(tls) => {
            let activity = Activity::new();
            let tcp = Metered::new(tcp, &counters.bytes_in, &counters.bytes_out, &activity);
            let Some((stream, h2, facts)) =
                handshake(tcp, tls, conn, &listener, handshake_by).await
            else {
                return;
            };
            serve_http(stream, activity, h2, conn, Some(facts), slot, &listener, rt).await;
        }
        None => {
            // As for a handshake: a client that connected before a drain may still be sending
            // its first request, which is then answered (with `Connection: close`).
            let h2 = tokio::select! {
                r = timeout(rt.header_timeout, is_h2c_preface(&tcp)) => match r {
                    Ok(Ok(h2)) => h2,
                    _ => return,
                },
                _ = drained(&listener.stop) => return,
            };
            // Counted from here: the peek above consumed nothing.
            let activity = Activity::new();
            let tcp = Metered::new(tcp, &counters.bytes_in, &counters.bytes_out, &activity);
            serve_http(tcp, activity, h2, conn, None, slot, &listener, rt).await;
        }
    }
}

/// Reads the PROXY protocol header a connection to a `proxy_protocol` listener begins with, by
/// `deadline`: the client it names (the TCP peer when it names none), or `None` when the
/// connection is to be closed, which a missing or bad header is counted and logged for.
async fn proxied_client(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    listener: &ListenerContext,
    deadline: Instant,
) -> Option<SocketAddr> {
    let read = tokio::select! {
        r = timeout_at(deadline, proxy_protocol::read_header(tcp)) => r,
        // As for a handshake: the balancer connected before the drain, but is owed no more
        // than a bounded wait.
        _ = drained(&listener.stop) => return None,
    };
    let refused = match read {
        Ok(Ok(header)) => {
            // Counted as processed like the rest of the connection's bytes.
            listener.counters.bytes_in.inc_by(header.len as u64);
            return Some(header.client.unwrap_or(peer));
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "none within handshake_timeout".to_string(),
    };
    listener.counters.proxy_protocol_errors.inc();
    debug!(listener = %listener.name, %peer, error = %refused, "PROXY protocol header refused; connection closed");
    None
}

/// The TLS handshake, by `deadline` (`handshake_timeout` after accept), counted in the metrics:
/// the stream, whether ALPN chose HTTP/2 and what the handshake settled for the connection's
/// requests' records, or `None` when it failed (or a drain cut the wait short).
async fn handshake(
    tcp: Metered<TcpStream>,
    tls: &ListenerTls,
    client: Conn,
    listener: &ListenerContext,
    deadline: Instant,
) -> Option<(
    tokio_rustls::server::TlsStream<Metered<TcpStream>>,
    bool,
    TlsFacts,
)> {
    let peer = client.peer;
    let metrics = &listener.plane.metrics;
    let log = &listener.plane.access_log;
    let started = log.connections_on().then(std::time::Instant::now);
    // ALB's connection log: one line per handshake, successful or not.
    let log_line = |tls: Option<TlsLine>, client_cert: Option<&Arc<ClientCert>>, verify| {
        if let Some(started) = started {
            log.connection(&ConnectionEntry {
                time: crate::access_log::WallTime::now(),
                client: peer,
                listener_port: listener.port,
                tls,
                handshake: started.elapsed(),
                client_cert: client_cert.cloned(),
                verify,
                conn_trace_id: client.trace_id,
            });
        }
    };
    let acceptor = TlsAcceptor::from(tls.config.clone());
    // A drain (listener removed, process stopping) does not cut a handshake short: the client
    // connected before it and is owed an answer. It only bounds the wait.
    let handshake = tokio::select! {
        r = timeout_at(deadline, acceptor.accept(tcp)) => r,
        _ = drained(&listener.stop) => return None,
    };
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let (failure, verify) = if e.kind() == std::io::ErrorKind::InvalidData {
                let refused = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
                let why = refused.and_then(crate::tls::verify_failure);
                (
                    HandshakeFailure::Alert,
                    why.unwrap_or("ClientHandshakeError"),
                )
            } else {
                (HandshakeFailure::Io, "ConnectionError")
            };
            metrics.tls_handshake_error(failure);
            log_line(None, None, Verify::Failed(verify));
            debug!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            metrics.tls_handshake_error(HandshakeFailure::Timeout);
            log_line(None, None, Verify::Failed("HandshakeTimeout"));
            debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    let conn = stream.get_ref().1;
    let kind = match conn.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => HandshakeKind::Resumed,
        _ => HandshakeKind::Full,
    };
    let client_cert = match tls.client_auth {
        Some(mode) => match client_identity(mode, conn, kind) {
            Ok(c) => c,
            Err(why) => {
                metrics.tls_handshake_error(HandshakeFailure::Alert);
                log_line(None, None, Verify::Failed(why));
                debug!(%peer, reason = why, "client certificate refused after resumption");
                return None;
            }
        },
        None => None,
    };
    metrics.tls_handshake(kind);
    let h2 = conn.alpn_protocol() == Some(b"h2");
    let sni = conn.server_name();
    let version = conn
        .protocol_version()
        .expect("known once the handshake is done");
    let cipher = conn
        .negotiated_cipher_suite()
        .expect("known once the handshake is done")
        .suite();
    metrics.tls_negotiation(version, cipher);
    let facts = TlsFacts {
        version,
        cipher,
        certificate: match kind {
            HandshakeKind::Resumed => Certificate::SessionReused,
            HandshakeKind::Full => Certificate::Named(tls.chosen_certificate(sni)),
        },
        sni: sni.map(Arc::from),
        client_cert,
    };
    log_line(
        Some(TlsLine {
            protocol: facts.version,
            cipher: facts.cipher,
        }),
        facts.client_cert.as_ref(),
        Verify::Success,
    );
    Some((stream, h2, facts))
}

/// What the client's certificate says, on a listener with `client_auth`, or why the connection
/// is refused. rustls judged the certificate in a full handshake; a resumed one brings back the
/// chain judged then, so verify mode checks here that its leaf has not expired since (the trust
/// store cannot have changed: tickets are bound to it).
fn client_identity(
    mode: ClientAuthMode,
    conn: &rustls::ServerConnection,
    kind: HandshakeKind,
) -> Result<Option<Arc<ClientCert>>, &'static str> {
    let cert = conn
        .peer_certificates()
        .and_then(|chain| ClientCert::read(mode, chain));
    if mode == ClientAuthMode::Verify {
        let Some(cert) = &cert else {
            return Err("ClientCertMissing");
        };
        let now = crate::access_log::WallTime::now().secs as i64;
        if kind == HandshakeKind::Resumed && cert.expired_at(now) {
            return Err("ClientCertExpired");
        }
    }
    Ok(cert.map(Arc::new))
}

/// Who a connection is, from accept on.
#[derive(Clone, Copy)]
struct Conn {
    peer: SocketAddr,
    /// ALB's `conn_trace_id` (see [`ConnTraceId`]).
    trace_id: ConnTraceId,
}

/// Resolves [`DRAIN_IDLE_GRACE`] after a drain begins: how long a connection accepted before it
/// may take to start its first request.
async fn drained(stop: &tokio_util::sync::CancellationToken) {
    stop.cancelled().await;
    tokio::time::sleep(DRAIN_IDLE_GRACE).await;
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// On plain listeners, tells HTTP/2 with prior knowledge (h2c) from HTTP/1 by peeking at the first
/// bytes without consuming them. TLS listeners use ALPN instead.
async fn is_h2c_preface(tcp: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 24];
    loop {
        tcp.readable().await?;
        let n = tcp.peek(&mut buf).await?;
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A partial preface: the rest is on its way; peeking again at once would spin.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Serves HTTP on an established connection (after TLS, if any) until it closes.
///
/// Not an `async fn`: an `async fn` moves its arguments into locals of its body, which keeps two
/// copies of the stream in the future (about 1.3 KiB each with TLS). The `async move` block here
/// uses what it captures in place, and the stream is only there once, inside the `HeadGuard`.
// The connection's parts, each moved in once from its one caller: a struct to carry them would
// only be unpacked here.
#[allow(clippy::too_many_arguments)]
fn serve_http<'a, S>(
    io: S,
    activity: Arc<Activity>,
    h2: bool,
    conn: Conn,
    tls: Option<TlsFacts>,
    slot: Arc<ClientSlot>,
    listener: &'a Arc<ListenerContext>,
    rt: &'a Limits,
) -> impl Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = (!h2).then_some(HeadLimits {
        timeout: rt.header_timeout,
        max_bytes: rt.max_header_bytes,
    });
    let mut io = HeadGuard::new(io, activity.clone(), limits);
    if h2 {
        io.watch_h2_headers(rt.header_timeout);
    }
    let ctx = Arc::new(ConnContext {
        listener: listener.clone(),
        peer: conn.peer,
        peer_ip: HeaderValue::from_str(&conn.peer.ip().to_string())
            .expect("an IP address is a valid header value"),
        activity: activity.clone(),
        tls,
        trace_id: conn.trace_id,
        log_text: Default::default(),
        slot,
    });
    let peer = conn.peer;
    let resets = h2.then(|| {
        ResetBudget::new(
            rt.http2_max_concurrent_streams,
            rt.http2_max_resets_per_second,
        )
    });
    async move {
        let watched = resets.clone();
        // The request's future is boxed: hyper keeps a slot the size of the service's future
        // for the whole life of the connection, and a forwarded request's state is kilobytes
        // that an idle keep-alive connection should not hold.
        //
        // Its size matters: 3,536 bytes in a release build of issue 15's second round, in
        // jemalloc's 3,584-byte class. Past that, the 4,096-byte class holds one region per
        // slab, and a slab was made and unmade for nearly every request: about 1,000 more
        // instructions each (`benches/callgrind.sh h2`, in `tcache_alloc_small_hard`). Rare
        // state in it is boxed (`proxy::forward`'s stickiness, `h1`'s upload) for that reason.
        let service = service_fn(move |req| {
            let ctx = ctx.clone();
            let watch = watched.as_ref().map(ResetBudget::watch);
            Box::pin(async move {
                let response = proxy::handle(req, ctx).await;
                if let Some(watch) = watch {
                    watch.answered();
                }
                Ok::<_, std::convert::Infallible>(response)
            })
        });
        let mut life = Lifecycle {
            activity: &activity,
            idle_timeout: rt.idle_timeout,
            shutdown: &listener.stop,
            drain_started: None,
            parked_for: None,
        };
        if let Some(resets) = resets {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_header_list_size(rt.max_header_bytes as u32)
                .max_concurrent_streams(rt.http2_max_concurrent_streams)
                .max_send_buf_size(H2_SEND_BUFFER);
            // Boxed: an HTTP/2 connection's state is several times an HTTP/1 one's, and inline it
            // would size every connection's task, idle HTTP/1 keep-alives included. (Boxed in the
            // same expression: a named unboxed value would keep its room in the task regardless.)
            let mut conn = Box::pin(builder.serve_connection(TokioIo::new(io), service));
            let counters = &listener.counters;
            let too_many_resets = tokio::select! {
                // `biased`: a connection that ends by itself is never counted as cut short.
                biased;
                (_, err) = life.drive(
                    conn.as_mut(),
                    |c| c.graceful_shutdown(),
                    Drain::GoAway,
                    None,
                ) => {
                    if let Some(reason) = err.as_ref().and_then(|e| h2_limits::closed_with(e)) {
                        counters.http2_connection_error(reason);
                    }
                    false
                }
                _ = resets.spent() => true,
            };
            if too_many_resets {
                // Dropped rather than closed gracefully: for as long as a GOAWAY's grace
                // lasted, the client could go on opening and cancelling streams. Dropping the
                // connection closes the socket, and hyper's stream tasks see it end.
                counters.http2_connection_error(Http2ConnError::RapidReset);
                debug!(listener = %listener.name, %peer, "HTTP/2 client cancelled streams too fast; connection closed");
            }
            return;
        }
        let mut builder = http1::Builder::new();
        builder
            .keep_alive(true)
            .header_read_timeout(None)
            .max_buf_size(rt.max_header_bytes);
        loop {
            // Boxed, so that a parked connection's task does not keep room for it.
            let mut conn = Box::pin(
                builder
                    .serve_connection(TokioIo::new(io), service.clone())
                    .with_upgrades(),
            );
            let (ended, _) = life
                .drive(
                    conn.as_mut(),
                    |c| c.graceful_shutdown(),
                    Drain::LastRequest,
                    Some(PARK_AFTER),
                )
                .await;
            if ended != Ended::Parked {
                return;
            }
            {
                // In a block of its own, so that `parts` (moved out of piecemeal) is gone before
                // the wait below and takes no room in the parked connection's task.
                let Some(parts) = Pin::into_inner(conn).into_parts() else {
                    return;
                };
                io = parts.io.into_inner();
                io.unread(parts.read_buf);
            }
            activity.unpark();
            let resumed = {
                let _parked = Counted::new(&listener.plane.metrics.parked_connections);
                life.park(&mut io).await
            };
            if !resumed {
                return;
            }
        }
    }
}

/// How long an HTTP/1 keep-alive connection waits idle before it is parked: its hyper connection
/// (and the buffers it holds) is dropped until the client sends again (see [`HeadGuard`]). Long
/// enough that a client sending request after request never pays for a new one.
const PARK_AFTER: Duration = Duration::from_millis(500);

/// How many times per `idle_timeout` a busy connection's driver looks whether its client has
/// stopped taking its responses: often enough to see a halt before its deadline, for a wake-up
/// per busy connection every few seconds at the default 60 s.
const STALL_CHECKS: u32 = 8;

/// How a connection is told that the process (or its listener) is draining.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// HTTP/2: a GOAWAY tells the client which streams were taken, so it can retry the others
    /// elsewhere; no race with requests in flight.
    GoAway,
    /// HTTP/1: see [`DRAIN_IDLE_GRACE`].
    LastRequest,
}

/// Why [`Lifecycle::drive`] returned.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The connection is over.
    Closed,
    /// hyper's connection was parked; the socket is open and idle.
    Parked,
}

/// The idle and drain policy of one client connection, kept across the hyper connections that a
/// parked HTTP/1 connection goes through.
struct Lifecycle<'a> {
    activity: &'a Activity,
    idle_timeout: Duration,
    shutdown: &'a tokio_util::sync::CancellationToken,
    drain_started: Option<Instant>,
    /// The idle period (known by when it began, as [`Activity::idle_since`] gives it) for which
    /// a park was last asked: a park is asked once per idle period, so that one that did not
    /// happen (the client was sending at that moment) is not asked again and again. Kept across
    /// hyper connections: a connection woken from its park is still in the idle period it was
    /// parked in until its request ends, and is not asked to park again meanwhile.
    parked_for: Option<Instant>,
}

impl Lifecycle<'_> {
    /// When an idle connection is to be closed; `None` while a request is in flight.
    fn close_at(&self) -> Option<Instant> {
        let since = self.activity.idle_since()?;
        let idle = since + self.idle_timeout;
        Some(match self.drain_started {
            Some(start) => idle.min(since.max(start) + DRAIN_IDLE_GRACE),
            None => idle,
        })
    }

    /// When a connection whose client has stopped taking its responses is to be closed (see
    /// [`Activity::stalled_since`]): `idle_timeout` without progress, as ALB does.
    fn stall_at(&self) -> Option<Instant> {
        Some(self.activity.stalled_since()? + self.idle_timeout)
    }

    /// Notes the start of a drain, once.
    fn start_drain(&mut self) {
        if self.drain_started.is_none() {
            self.drain_started = Some(Instant::now());
        }
    }

    /// Runs a hyper connection until it ends, closing it gracefully when it has been idle for
    /// `idle_timeout` or, once the process starts draining, as `drain` says. With `park_after`,
    /// a connection idle that long is parked instead of kept whole. Returns, beside how it
    /// ended, the error hyper's connection ended with, if any.
    async fn drive<C, E>(
        &mut self,
        mut conn: Pin<&mut C>,
        graceful: impl Fn(Pin<&mut C>),
        drain: Drain,
        park_after: Option<Duration>,
    ) -> (Ended, Option<E>)
    where
        C: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        loop {
            // While busy, look again after a full idle period (the deadline can only be later),
            // or sooner when draining, so that a connection whose last response went out with
            // keep-alive (it started before the drain) is closed soon after it ends. With
            // parking, look every `park_after`: requests come and go without waking this loop,
            // and the next park is due `park_after` after the latest one ends.
            let mut recheck = match self.drain_started {
                Some(_) => DRAIN_IDLE_GRACE,
                None => self.idle_timeout,
            };
            let mut wake = self.close_at();
            if wake.is_none() {
                // Busy: a response can come to a halt without waking this loop; looking again
                // within a fraction of the timeout sees the halt before its deadline.
                recheck = recheck.min(self.idle_timeout / STALL_CHECKS);
            }
            let stall_at = self.stall_at();
            wake = wake.into_iter().chain(stall_at).min();
            if let Some(after) = park_after {
                recheck = recheck.min(after);
                let park_at = self
                    .activity
                    .idle_since()
                    .filter(|since| self.parked_for != Some(*since))
                    .map(|since| since + after);
                wake = wake.into_iter().chain(park_at).min();
            }
            let wake = match wake {
                Some(at) => at.min(Instant::now() + recheck),
                None => Instant::now() + recheck,
            };
            tokio::select! {
                res = conn.as_mut() => {
                    let err = res.err();
                    if let Some(e) = &err {
                        debug!(error = %e, "connection ended with an error");
                    }
                    let ended = if self.activity.parked() { Ended::Parked } else { Ended::Closed };
                    return (ended, err);
                }
                _ = sleep_until(wake) => {
                    let now = Instant::now();
                    if self.stall_at().is_some_and(|d| d <= now) {
                        // Not gracefully: the client takes nothing, a GOAWAY or the rest of a
                        // response included. Dropping hyper's connection closes the socket and
                        // drops the responses' bodies, and with them their targets' connections.
                        debug!("client took nothing of its response for idle_timeout; connection closed");
                        return (Ended::Closed, None);
                    }
                    if self.close_at().is_some_and(|d| d <= now) {
                        graceful(conn.as_mut());
                        break;
                    }
                    if let (Some(after), Some(since)) = (park_after, self.activity.idle_since()) {
                        if since + after <= now && self.parked_for != Some(since) {
                            // Takes effect when hyper next reads, which the next poll makes it do.
                            self.activity.ask_to_park();
                            self.parked_for = Some(since);
                        }
                    }
                }
                _ = self.shutdown.cancelled(), if self.drain_started.is_none() => {
                    self.start_drain();
                    match drain {
                        Drain::GoAway => graceful(conn.as_mut()),
                        Drain::LastRequest => self.activity.ask_to_close(),
                    }
                }
            }
        }
        // An HTTP/2 peer gets its GOAWAY; do not wait on it for long.
        let err = timeout(CLOSE_GRACE, conn).await.ok().and_then(Result::err);
        (Ended::Closed, err)
    }

    /// Waits on a parked connection: `true` when its client sends again (the bytes are kept in
    /// `io` for the next hyper connection), `false` once it has been closed (by the client, the
    /// idle timeout or a drain).
    async fn park<S>(&mut self, io: &mut HeadGuard<S>) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            // A parked connection has no request in flight, so it always has an idle deadline;
            // the fallback only keeps a broken invariant from becoming a panic.
            let close_at = self
                .close_at()
                .unwrap_or_else(|| Instant::now() + self.idle_timeout);
            tokio::select! {
                sent = io.wait_for_request() => return matches!(sent, Ok(true)),
                _ = sleep_until(close_at) => break,
                _ = self.shutdown.cancelled(), if self.drain_started.is_none() => {
                    // Like an idle HTTP/1 connection that is not parked: closed after
                    // DRAIN_IDLE_GRACE, or its next request is answered with `Connection: close`.
                    self.start_drain();
                    self.activity.ask_to_close();
                }
            }
        }
        // What hyper does when it closes an idle connection: close_notify, then FIN.
        let _ = timeout(CLOSE_GRACE, tokio::io::AsyncWriteExt::shutdown(io)).await;
        false
    }
}
