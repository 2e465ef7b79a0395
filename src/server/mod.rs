//! One client connection: TLS handshake (with its deadline), the HTTP/1.1 or HTTP/2 server chosen by
//! ALPN, and the idle and drain policy around hyper's connection future.

pub mod activity;

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
use tokio::time::{sleep_until, timeout, Instant};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::app::Shared;
use crate::config::validate::{Protocol, RuntimeConfig};
use crate::proxy::{self, ConnContext};
use activity::{Activity, HeadGuard, HeadLimits};

/// What every connection of one listener shares.
pub struct ListenerContext {
    pub name: Arc<str>,
    pub protocol: Protocol,
    /// The bound port, also pre-rendered for `X-Forwarded-Port`.
    pub port: u16,
    pub port_header: HeaderValue,
    pub shared: Arc<Shared>,
    /// Cancelled when the listener is removed by a reload or the process drains: its connections
    /// finish their requests and close.
    pub stop: tokio_util::sync::CancellationToken,
}

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
pub async fn serve(tcp: TcpStream, peer: SocketAddr, listener: Arc<ListenerContext>) {
    let shared = &listener.shared;
    let snapshot = shared.snapshot.load_full();
    // The listener may have gone in a reload between accept and now.
    let Some(compiled) = snapshot.listener(&listener.name) else {
        return;
    };
    let rt = &snapshot.runtime;
    let _ = tcp.set_nodelay(true);
    match &compiled.tls {
        Some(tls) => {
            let acceptor = TlsAcceptor::from(tls.clone());
            let metrics = &shared.metrics;
            // A drain (listener removed, process stopping) does not cut a handshake short: the
            // client connected before it and is owed an answer. It only bounds the wait.
            let handshake = tokio::select! {
                r = timeout(rt.handshake_timeout, acceptor.accept(tcp)) => r,
                _ = drained(&listener.stop) => return,
            };
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let reason = if e.kind() == std::io::ErrorKind::InvalidData {
                        "alert"
                    } else {
                        "io"
                    };
                    metrics
                        .tls_handshake_errors_total
                        .with_label_values(&[reason])
                        .inc();
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics
                        .tls_handshake_errors_total
                        .with_label_values(&["timeout"])
                        .inc();
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = stream.get_ref().1;
            let kind = match conn.handshake_kind() {
                Some(rustls::HandshakeKind::Resumed) => "resumed",
                _ => "full",
            };
            metrics
                .tls_handshakes_total
                .with_label_values(&[kind])
                .inc();
            let h2 = conn.alpn_protocol() == Some(b"h2");
            serve_http(stream, h2, peer, &listener, rt).await;
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
            serve_http(tcp, h2, peer, &listener, rt).await;
        }
    }
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

async fn serve_http<S>(
    io: S,
    h2: bool,
    peer: SocketAddr,
    listener: &Arc<ListenerContext>,
    rt: &RuntimeConfig,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let limits = (!h2).then_some(HeadLimits {
        timeout: rt.header_timeout,
        max_bytes: rt.max_header_bytes,
    });
    let io = TokioIo::new(HeadGuard::new(io, activity.clone(), limits));
    let ctx = Arc::new(ConnContext {
        listener: listener.clone(),
        peer,
        peer_ip: HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value"),
        activity: activity.clone(),
    });
    // The request's future is boxed: hyper keeps a slot the size of the service's future for
    // the whole life of the connection, and a forwarded request's state is kilobytes that an idle
    // keep-alive connection should not hold.
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        Box::pin(async move { Ok::<_, std::convert::Infallible>(proxy::handle(req, &ctx).await) })
    });
    let shutdown = &listener.stop;
    if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(rt.max_header_bytes as u32);
        let conn = builder.serve_connection(io, service);
        // Boxed: an HTTP/2 connection's state is several times an HTTP/1 one's, and inline it
        // would size every connection's task, idle HTTP/1 keep-alives included.
        Box::pin(drive(
            conn,
            |c| c.graceful_shutdown(),
            Drain::GoAway,
            &activity,
            rt.idle_timeout,
            shutdown,
        ))
        .await;
    } else {
        let mut builder = http1::Builder::new();
        builder
            .keep_alive(true)
            .header_read_timeout(None)
            .max_buf_size(rt.max_header_bytes);
        let conn = builder.serve_connection(io, service).with_upgrades();
        drive(
            conn,
            |c| c.graceful_shutdown(),
            Drain::LastRequest,
            &activity,
            rt.idle_timeout,
            shutdown,
        )
        .await;
    }
}

/// How a connection is told that the process (or its listener) is draining.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// HTTP/2: a GOAWAY tells the client which streams were taken, so it can retry the others
    /// elsewhere; no race with requests in flight.
    GoAway,
    /// HTTP/1: see [`DRAIN_IDLE_GRACE`].
    LastRequest,
}

/// Runs a hyper connection until it ends, closing it gracefully when it has been idle for
/// `idle_timeout` or, once the process starts draining, as `drain` says.
async fn drive<C, E>(
    conn: C,
    graceful: impl Fn(Pin<&mut C>),
    drain: Drain,
    activity: &Activity,
    idle_timeout: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let mut drain_started: Option<Instant> = None;
    // When an idle connection is to be closed; `None` while a request is in flight.
    let close_at = |drain_started: Option<Instant>| {
        let since = activity.idle_since()?;
        let idle = since + idle_timeout;
        Some(match drain_started {
            Some(start) => idle.min(since.max(start) + DRAIN_IDLE_GRACE),
            None => idle,
        })
    };
    loop {
        // While busy, look again after a full idle period (the deadline can only be later), or
        // sooner when draining, so that a connection whose last response went out with
        // keep-alive (it started before the drain) is closed soon after it ends.
        let busy_recheck = match drain_started {
            Some(_) => DRAIN_IDLE_GRACE,
            None => idle_timeout,
        };
        let wake = close_at(drain_started).unwrap_or_else(|| Instant::now() + busy_recheck);
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = sleep_until(wake) => {
                if close_at(drain_started).is_some_and(|d| d <= Instant::now()) {
                    graceful(conn.as_mut());
                    break;
                }
            }
            _ = shutdown.cancelled(), if drain_started.is_none() => {
                drain_started = Some(Instant::now());
                match drain {
                    Drain::GoAway => graceful(conn.as_mut()),
                    Drain::LastRequest => activity.ask_to_close(),
                }
            }
        }
    }
    // An HTTP/2 peer gets its GOAWAY; do not wait on it for long.
    let _ = timeout(CLOSE_GRACE, conn).await;
}
