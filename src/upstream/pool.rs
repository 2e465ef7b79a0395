//! One target's connections, kept for reuse: every forwarded request goes through here.
//!
//! The pool belongs to its [`Target`](crate::targets::Target), so finding it costs nothing (no
//! key to hash), and its connections end with the target: when the target's draining ends, its
//! idle connections are closed at once rather than lingering until they time out.
//!
//! Each data-plane worker has a shard of the pool of its own, and uses only the connections it
//! made: a connection's socket is watched by the reactor of the worker that made it, so a request
//! on another worker's connection would wait on that worker's thread to be told of each
//! readiness; and a worker taking and returning connections in its own shard writes no cache line
//! that another core writes too (in a CPU profile of two workers sharing one list, finding a
//! connection took four times the share it takes one worker).
//!
//! - HTTP/1: a stack of idle connections, the most recently used on top (the one most likely to
//!   be open and warm; those at the bottom age out). A connection is lent to one exchange, which
//!   runs in the request's own task ([`h1`](super::h1)), and comes back through its [`Lease`]
//!   when the response body has ended.
//! - HTTP/2 (and gRPC): one connection per target and worker, shared by the worker's requests.
//!   One connect at a time: requests that find it being made wait for it.
//!
//! A reaper task per shard, running only while the shard holds something, closes connections
//! idle for [`POOL_IDLE_TIMEOUT`] and empties the shard when the target closes.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Duration;

use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::connect::{self, Alpn, ConnectError};
use super::h1;
use super::response::{Lease, TargetBody};
use super::retry::{Decision, Failure, Retry};
use super::{Added, BodyProgress, UpstreamBody};
use crate::metrics::TargetErrors;
use crate::worker;

/// How long an unused pooled connection to a target is kept. Shorter than the usual 60 s keep-alive
/// of target servers, so that seawall closes first and never sends a request on a socket the
/// target is closing.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// The most idle HTTP/1 connections kept per target and worker. Enough for the steady concurrency
/// one load balancer sends one target, so steady traffic never reconnects; past it, a burst's
/// surplus is closed as it goes idle (oldest first) instead of holding sockets, and file
/// descriptors, that only the next burst of the same size would use.
pub const MAX_IDLE_PER_TARGET: usize = 256;

/// The largest response head taken from a target, as ALB's (32 KiB for the whole head): a larger
/// one is a 502 (see `proxy::forward`, which measures each head; HTTP/2 targets are told it as
/// their `SETTINGS_MAX_HEADER_LIST_SIZE`).
pub const MAX_RESPONSE_HEAD: usize = 32 * 1024;

/// What a group's connections are made as. Connections are only reused for a group with the same
/// shape: a reload that changes the protocol version or the scheme empties the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// HTTP/2 (http2 and grpc groups) rather than HTTP/1.1.
    pub http2: bool,
    /// HTTPS: TLS to the target.
    pub tls: bool,
}

/// How a target group reaches its targets.
#[derive(Debug, Clone)]
pub struct Settings {
    pub shape: Shape,
    /// Read at each connect, so a changed timeout needs no new connections: not part of
    /// [`Shape`].
    pub connect_timeout: Duration,
    /// Where the group counts connections to its targets that failed.
    pub errors: TargetErrors,
}

/// Why a request could not be exchanged with a target.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No connection was made: the target never saw the request.
    #[error("connect: {0}")]
    Connect(Arc<ConnectError>),
    /// Connected, but the HTTP/2 handshake (the connection preface) failed.
    #[error("HTTP handshake: {0}")]
    Handshake(Arc<hyper::Error>),
    /// The exchange on an open connection failed (reset, closed early, not HTTP, ...).
    #[error("{0}")]
    Exchange(Arc<ExchangeError>),
    /// An idle HTTP/1 connection taken from the pool was closed or reset by the target before
    /// any answer: the keep-alive race, lost after the request was written. The target most
    /// likely closed the connection without reading it, though it cannot be known.
    #[error("reused connection: {0}")]
    Stale(Arc<ExchangeError>),
    /// The client's request body broke off while it was being sent (see [`BodyProgress`]): the
    /// target is not at fault, and its connection, left mid-request, is closed.
    #[error("the client's request body: {0}")]
    ClientBody(Arc<ExchangeError>),
}

/// A failed [`Pool::send`]: the error, and the request's headers when the pool can hand them
/// back because the request may go again (the target never saw it, or a reused connection lost
/// the keep-alive race). A caller that would resend the request therefore sends it whole, not a
/// copy made beforehand in case.
#[derive(Debug)]
pub struct SendError {
    pub error: Error,
    pub headers: Option<HeaderMap>,
}

impl From<Error> for SendError {
    fn from(error: Error) -> Self {
        SendError {
            error,
            headers: None,
        }
    }
}

/// A request that never reached the target: its headers go back with the error.
fn unsent(error: Error, mut req: Request<UpstreamBody>) -> SendError {
    SendError {
        error,
        headers: Some(std::mem::take(req.headers_mut())),
    }
}

/// What broke an exchange: seawall's HTTP/1 client, or hyper's HTTP/2 one.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Http1(#[from] h1::Error),
    #[error(transparent)]
    Http2(#[from] hyper::Error),
}

impl ExchangeError {
    /// Whether the connection was closed or reset under the exchange, rather than the target
    /// answering something wrong.
    fn closed_under(&self) -> bool {
        match self {
            ExchangeError::Http1(e) => e.closed_under(),
            ExchangeError::Http2(e) => closed_under(e),
        }
    }
}

impl Error {
    /// Whether the failure was [`Error::Stale`]: an idempotent request may go again on a new
    /// connection ([`Reuse::NewConnection`]), as HTTP allows (RFC 9110, 9.2.2).
    pub fn is_stale(&self) -> bool {
        matches!(self, Error::Stale(_))
    }
}

/// Which HTTP/1 connection a request may take. HTTP/2 requests share their target's connection
/// either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// An idle one from the pool, else a new one.
    Pooled,
    /// A new one: for sending again a request that failed on a pooled connection.
    NewConnection,
}

/// Counts a failure to connect to a target, or an open connection the target reset or closed
/// before answering: a TLS handshake that failed as a TLS error, anything else as a connection
/// error. A reused HTTP/1 connection closed under a request ([`Error::Stale`]) is the keep-alive
/// race, not a failure of the target: the request goes again on a new connection, which counts
/// if it fails. Neither is seawall running out of descriptors.
fn count(errors: &TargetErrors, e: &Error) {
    match e {
        Error::Connect(c) if c.is_local_exhaustion() => {}
        Error::Connect(c) if matches!(**c, ConnectError::Tls(_)) => errors.tls.inc(),
        Error::Connect(_) | Error::Handshake(_) => errors.connection.inc(),
        Error::Exchange(e) if e.closed_under() => errors.connection.inc(),
        Error::Exchange(_) | Error::Stale(_) | Error::ClientBody(_) => {}
    }
}

impl From<ConnectError> for Error {
    fn from(e: ConnectError) -> Self {
        Error::Connect(Arc::new(e))
    }
}

/// The thread running now, which a connection made on it is kept for. `thread::current()` hands
/// out a counted handle per call; the id is read once per thread instead, since the pool asks
/// twice per request.
fn this_thread() -> ThreadId {
    thread_local! {
        static WORKER: ThreadId = std::thread::current().id();
    }
    WORKER.with(|id| *id)
}

/// A target's connections.
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    /// The target's: cancelled when its draining ends.
    closed: CancellationToken,
    /// One per data-plane worker ([`worker::index`]).
    shards: Box<[Shard]>,
}

impl Shared {
    /// Shard `shard`'s state, locked: held for a few list operations, never across an await.
    fn state(&self, shard: usize) -> MutexGuard<'_, State> {
        self.shards[shard].state.lock().expect("not poisoned")
    }
}

/// A worker's part of the pool, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The shape of the connections held; `None` before the first request.
    shape: Option<Shape>,
    /// Idle HTTP/1 connections, the most recently returned last.
    idle: VecDeque<Idle>,
    h2: Option<H2>,
    /// Whether a reaper task is running for this shard. It runs while the shard holds anything.
    reaper: bool,
}

#[derive(Debug)]
struct Idle {
    conn: Box<h1::Conn>,
    since: Instant,
    /// The thread whose runtime's reactor watches the connection's socket: the one that made
    /// it, which is also the only one that uses it, and so the one that gives it back. Its shard
    /// tells it already, except where two threads share one: before the worker count was set, or
    /// off the data plane (tests).
    home: ThreadId,
}

/// A worker's HTTP/2 connection, made once by whichever request needed it first; the others wait
/// on the same cell. Should that request give up (its client left), the next waiter connects.
type H2Cell = Arc<OnceCell<Result<http2::SendRequest<UpstreamBody>, Error>>>;

#[derive(Debug)]
struct H2 {
    cell: H2Cell,
    /// When a request last took it (or began making it).
    used: Instant,
}

impl State {
    /// Drops every connection held. An idle HTTP/1 connection closes as its sender goes; the
    /// HTTP/2 one once the requests still streaming on it are done.
    fn flush(&mut self) {
        self.idle.clear();
        self.h2 = None;
    }

    fn is_empty(&self) -> bool {
        self.idle.is_empty() && self.h2.is_none()
    }

    /// Empties the pool when `shape` differs from what it holds, so a reload that changed the
    /// group's protocol never gets an old-shaped connection.
    fn adopt(&mut self, shape: Shape) {
        if self.shape != Some(shape) {
            self.flush();
            self.shape = Some(shape);
        }
    }
}

impl Pool {
    /// The pool of the target at `addr`, whose connections close when `closed` is cancelled.
    pub fn new(addr: SocketAddr, closed: CancellationToken) -> Self {
        Self::with_shards(addr, closed, worker::count())
    }

    fn with_shards(addr: SocketAddr, closed: CancellationToken, shards: usize) -> Self {
        Pool {
            shared: Arc::new(Shared {
                addr,
                closed,
                shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
            }),
        }
    }

    /// Sends `req` on a pooled connection, or a new one. The request must already be in the form
    /// its protocol writes: origin-form with a Host header for HTTP/1, absolute for HTTP/2.
    ///
    /// A request that a pooled connection could not send, because the target had closed it (the
    /// keep-alive race), is sent again on a new connection: the target never saw it. The lease
    /// is `Some` for HTTP/1, whose connection is the exchange's until the response body ends.
    ///
    /// `added`: header fields an HTTP/1 request's head is written with, after its own (see
    /// `forwarded`); an HTTP/2 request carries them in its headers.
    #[allow(clippy::manual_async_fn)] // see `proxy::handle`: the request is not kept twice
    pub fn send<'a>(
        &'a self,
        req: Request<UpstreamBody>,
        added: Option<&'a Added<'a>>,
        settings: &'a Settings,
        reuse: Reuse,
    ) -> impl Future<Output = Result<Response<TargetBody>, SendError>> + 'a {
        async move {
            if settings.shape.http2 {
                Ok(self.send_h2(req, settings).await?.map(TargetBody::Http2))
            } else {
                Ok(self
                    .send_h1(req, added, settings, reuse)
                    .await?
                    .map(TargetBody::Http1))
            }
        }
    }

    /// This worker's shard.
    fn shard(&self) -> usize {
        worker::index() % self.shared.shards.len()
    }

    /// Returns an HTTP/1 connection whose exchange has ended, for the next request.
    pub fn give_back(&self, lease: Lease) {
        let conn = lease.0;
        let shard = self.shard();
        let mut state = self.shared.state(shard);
        // A connection from before a reload that changed the group's shape, or to a target that
        // has ended, is not kept.
        if state.shape != Some(conn.shape) || self.shared.closed.is_cancelled() {
            return;
        }
        if state.idle.len() >= MAX_IDLE_PER_TARGET {
            state.idle.pop_front();
        }
        state.idle.push_back(Idle {
            conn,
            since: Instant::now(),
            home: this_thread(),
        });
        self.ensure_reaper(&mut state, shard);
    }

    /// Idle HTTP/1 connections held, by all workers (for tests and the curious).
    pub fn idle(&self) -> usize {
        (0..self.shared.shards.len())
            .map(|i| self.shared.state(i).idle.len())
            .sum()
    }

    #[allow(clippy::manual_async_fn)] // as `send`
    fn send_h1<'a>(
        &'a self,
        req: Request<UpstreamBody>,
        added: Option<&'a Added<'a>>,
        settings: &'a Settings,
        reuse: Reuse,
    ) -> impl Future<Output = Result<Response<h1::Body>, SendError>> + 'a {
        async move {
            let progress = req.body().progress().cloned();
            let pooled = match reuse {
                Reuse::Pooled => self.checkout_h1(settings.shape),
                Reuse::NewConnection => {
                    self.shared.state(self.shard()).adopt(settings.shape);
                    None
                }
            };
            let (conn, reused) = match pooled {
                Some(conn) => (conn, true),
                // Boxed: connecting (TCP, TLS) is kilobytes of state that every request's future
                // would otherwise carry, and copy, for a rare event.
                None => match Box::pin(self.connect_h1(settings)).await {
                    Ok(conn) => (conn, false),
                    Err(error) => return Err(unsent(error, req)),
                },
            };
            match h1::exchange(conn, req, added, reused).await {
                Ok(resp) => Ok(resp),
                Err(f) => {
                    let client = matches!(f.error, h1::Error::ClientBody(_))
                        || client_body_failed(progress.as_deref());
                    let cause = Arc::new(ExchangeError::Http1(f.error));
                    if client {
                        return Err(Error::ClientBody(cause).into());
                    }
                    // The proxy's to decide (see `retry`).
                    if f.stale {
                        return Err(SendError {
                            error: Error::Stale(cause),
                            headers: f.headers,
                        });
                    }
                    let e = Error::Exchange(cause);
                    count(&settings.errors, &e);
                    Err(e.into())
                }
            }
        }
    }

    /// The most recently used idle connection made by this data-plane worker that can take a
    /// request now. A worker connects when it has none idle rather than borrow another's (see
    /// the module's comment).
    fn checkout_h1(&self, shape: Shape) -> Option<Box<h1::Conn>> {
        let mut state = self.shared.state(self.shard());
        state.adopt(shape);
        if state.idle.is_empty() {
            return None;
        }
        let now = Instant::now();
        let here = this_thread();
        let mut i = state.idle.len();
        while i > 0 {
            i -= 1;
            let c = &mut state.idle[i];
            if c.home != here {
                continue;
            }
            // Closed by the target while idle, or sent something unasked: of no use.
            let fit =
                now.saturating_duration_since(c.since) < POOL_IDLE_TIMEOUT && c.conn.is_reusable();
            let c = state.idle.remove(i).expect("in range");
            if fit {
                return Some(c.conn);
            }
        }
        None
    }

    async fn connect_h1(&self, settings: &Settings) -> Result<Box<h1::Conn>, Error> {
        let tls = settings
            .shape
            .tls
            .then(|| connect::tls_connector(Alpn::Http1));
        match connect::open(self.shared.addr, tls, settings.connect_timeout).await {
            Ok(io) => Ok(h1::Conn::new(io, settings.shape)),
            Err(e) => {
                let e = Error::from(e);
                count(&settings.errors, &e);
                Err(e)
            }
        }
    }

    #[allow(clippy::manual_async_fn)] // as `send`
    fn send_h2<'a>(
        &'a self,
        mut req: Request<UpstreamBody>,
        settings: &'a Settings,
    ) -> impl Future<Output = Result<Response<Incoming>, SendError>> + 'a {
        async move {
            let mut retry = Retry::for_attempt(Reuse::Pooled);
            let progress = req.body().progress().cloned();
            // Whether the request came with a Host, which goes as `:authority` alone (see
            // `host_to_authority`).
            let mut had_host = false;
            loop {
                let (mut send, cell, reused) = match self.checkout_h2(settings).await {
                    Ok(checked_out) => checked_out,
                    Err(error) => {
                        if had_host {
                            host_from_authority(&mut req);
                        }
                        return Err(unsent(error, req));
                    }
                };
                had_host |= host_to_authority(&mut req);
                match send.try_send_request(req).await {
                    Ok(resp) => return Ok(resp),
                    Err(mut e) => match e.take_message() {
                        // The shared connection went away (GOAWAY, closed) under the request: sent
                        // once more, on the connection made (or being made) next.
                        Some(unsent)
                            if retry.after(Failure::Unsent { reused })
                                == Decision::NewConnection =>
                        {
                            debug!(target = %self.shared.addr, error = %e.error(), "HTTP/2 connection closed before the request went out; reconnecting");
                            self.forget_h2(&cell);
                            req = unsent;
                        }
                        // The stream was reset for the client's sake; the shared connection is fine.
                        _ if client_body_failed(progress.as_deref()) => {
                            return Err(Error::ClientBody(Arc::new(e.into_error().into())).into())
                        }
                        _ => {
                            let e = Error::Exchange(Arc::new(e.into_error().into()));
                            count(&settings.errors, &e);
                            return Err(e.into());
                        }
                    },
                }
            }
        }
    }

    /// This worker's HTTP/2 connection, made (or waited for) if needed; with whether it was
    /// already made before this request came.
    async fn checkout_h2(
        &self,
        settings: &Settings,
    ) -> Result<(http2::SendRequest<UpstreamBody>, H2Cell, bool), Error> {
        let cell = {
            let shard = self.shard();
            let mut state = self.shared.state(shard);
            state.adopt(settings.shape);
            let now = Instant::now();
            if let Some(h2) = &mut state.h2 {
                match h2.cell.get() {
                    Some(Ok(send)) if !send.is_closed() => {
                        h2.used = now;
                        return Ok((send.clone(), h2.cell.clone(), true));
                    }
                    // Being made: this request waits for it.
                    None => h2.used = now,
                    // Closed, or failed for the requests that waited on it: made anew.
                    Some(_) => state.h2 = None,
                }
            }
            match &state.h2 {
                Some(h2) => h2.cell.clone(),
                None => {
                    let cell = H2Cell::default();
                    // A target that has ended keeps nothing: this request's connection closes
                    // when it is done.
                    if !self.shared.closed.is_cancelled() {
                        state.h2 = Some(H2 {
                            cell: cell.clone(),
                            used: now,
                        });
                        self.ensure_reaper(&mut state, shard);
                    }
                    cell
                }
            }
        };
        // Boxed for the same reason as in `send_h1`.
        match cell
            .get_or_init(|| Box::pin(self.connect_h2(settings)))
            .await
        {
            Ok(send) => Ok((send.clone(), cell, false)),
            Err(e) => {
                let e = e.clone();
                self.forget_h2(&cell);
                Err(e)
            }
        }
    }

    /// Forgets this worker's HTTP/2 connection `cell` holds, unless another has replaced it
    /// already.
    fn forget_h2(&self, cell: &H2Cell) {
        let mut state = self.shared.state(self.shard());
        if state
            .h2
            .as_ref()
            .is_some_and(|h2| Arc::ptr_eq(&h2.cell, cell))
        {
            state.h2 = None;
        }
    }

    /// Made once for all the requests waiting on it, and counted once if it fails.
    async fn connect_h2(
        &self,
        settings: &Settings,
    ) -> Result<http2::SendRequest<UpstreamBody>, Error> {
        let made = self.try_connect_h2(settings).await;
        if let Err(e) = &made {
            count(&settings.errors, e);
        }
        made
    }

    async fn try_connect_h2(
        &self,
        settings: &Settings,
    ) -> Result<http2::SendRequest<UpstreamBody>, Error> {
        let tls = settings
            .shape
            .tls
            .then(|| connect::tls_connector(Alpn::Http2));
        let io = connect::open(self.shared.addr, tls, settings.connect_timeout).await?;
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_RESPONSE_HEAD as u32)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| Error::Handshake(Arc::new(e)))?;
        let addr = self.shared.addr;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(target = %addr, error = %crate::error::error_chain(&e), "target connection failed");
            }
        });
        Ok(send)
    }

    /// Starts shard `shard`'s reaper, on this worker, unless it runs: called with the shard
    /// about to hold something.
    fn ensure_reaper(&self, state: &mut State, shard: usize) {
        if !state.reaper {
            state.reaper = true;
            tokio::spawn(reap(self.shared.clone(), shard));
        }
    }
}

/// Drops an HTTP/2 request's Host, whose value its `:authority` already carries (the proxy sets
/// one from the other), and tells whether there was one. HTTP/2 names the host in `:authority`,
/// and browsers and other proxies send no Host beside it; some servers refuse a request that has
/// both, nginx 1.22 (Debian 12's) among them: 400, "client sent duplicate host header".
fn host_to_authority(req: &mut Request<UpstreamBody>) -> bool {
    req.headers_mut().remove(http::header::HOST).is_some()
}

/// Puts back the Host [`host_to_authority`] took from a request handed back unsent, so that the
/// attempt that follows, to this target or another, finds the client's host where it was.
fn host_from_authority(req: &mut Request<UpstreamBody>) {
    let host = req
        .uri()
        .authority()
        .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok());
    if let Some(host) = host {
        req.headers_mut().insert(http::header::HOST, host);
    }
}

/// Whether an exchange failed because the client's request body broke off: then the error the
/// exchange gives (for HTTP/2, a reset stream) says nothing about the target.
fn client_body_failed(progress: Option<&BodyProgress>) -> bool {
    progress.is_some_and(BodyProgress::failed)
}

/// Whether an HTTP/2 exchange failed because the connection was closed or reset under it, rather than
/// because of what the target answered.
fn closed_under(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            );
        }
        source = s.source();
    }
    false
}

/// Closes shard `shard`'s connections idle for [`POOL_IDLE_TIMEOUT`], even with no traffic to
/// notice them, and all of them at once when the target closes. Ends when the shard is empty;
/// the next connection kept starts another.
async fn reap(shared: Arc<Shared>, shard: usize) {
    loop {
        let due = {
            let mut state = shared.state(shard);
            if shared.closed.is_cancelled() {
                state.flush();
            }
            let now = Instant::now();
            state
                .idle
                .retain(|c| now.saturating_duration_since(c.since) < POOL_IDLE_TIMEOUT);
            if state
                .h2
                .as_ref()
                .is_some_and(|h2| now.saturating_duration_since(h2.used) >= POOL_IDLE_TIMEOUT)
            {
                state.h2 = None;
            }
            if state.is_empty() {
                state.reaper = false;
                return;
            }
            let oldest = state
                .idle
                .iter()
                .map(|c| c.since)
                .chain(state.h2.as_ref().map(|h2| h2.used))
                .min()
                .expect("not empty");
            oldest + POOL_IDLE_TIMEOUT
        };
        tokio::select! {
            biased;
            _ = shared.closed.cancelled() => {}
            _ = tokio::time::sleep_until(due) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    fn h1() -> Settings {
        Settings {
            shape: Shape {
                http2: false,
                tls: false,
            },
            connect_timeout: Duration::from_secs(5),
            errors: TargetErrors::detached(),
        }
    }

    fn h2c() -> Settings {
        Settings {
            shape: Shape {
                http2: true,
                tls: false,
            },
            ..h1()
        }
    }

    /// An HTTP/1 server answering each request with the number of its connection; gives how many
    /// connections it has seen end.
    async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ended = Arc::new(AtomicUsize::new(0));
        let ended2 = ended.clone();
        tokio::spawn(async move {
            for n in 0usize.. {
                let (tcp, _) = listener.accept().await.unwrap();
                let ended = ended2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| async move {
                        Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from(
                            n.to_string(),
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (addr, ended)
    }

    fn get() -> Request<UpstreamBody> {
        Request::get("/")
            .header(http::header::HOST, "t")
            .body(UpstreamBody::Empty)
            .unwrap()
    }

    /// One exchange, its body read to the end; gives the server's connection number and the
    /// lease.
    async fn exchange(pool: &Pool) -> (String, Lease) {
        let resp = pool.send(get(), None, &h1(), Reuse::Pooled).await.unwrap();
        let (body, lease) = whole(resp.into_body()).await;
        (
            body,
            lease.expect("a kept-alive exchange leaves its connection"),
        )
    }

    /// A body read to its end, and the connection it leaves.
    async fn whole(mut body: TargetBody) -> (String, Option<Lease>) {
        let mut data = Vec::new();
        while let Some(f) = body.frame().await {
            if let Ok(d) = f.unwrap().into_data() {
                data.extend_from_slice(&d);
            }
        }
        (String::from_utf8(data).unwrap(), body.take_lease())
    }

    #[tokio::test]
    async fn the_most_recently_returned_connection_is_reused_first() {
        let (addr, _) = server().await;
        let pool = Pool::new(addr, CancellationToken::new());
        // Both leased at once: two connections.
        let (a, lease_a) = exchange(&pool).await;
        let (b, lease_b) = exchange(&pool).await;
        assert_ne!(a, b);
        pool.give_back(lease_a);
        pool.give_back(lease_b);
        assert_eq!(pool.idle(), 2);
        let (again, lease) = exchange(&pool).await;
        assert_eq!(again, b, "last in, first out");
        assert_eq!(pool.idle(), 1);
        // A lease dropped rather than given back (a body cut short) is not reused.
        drop(lease);
        let (next, _) = exchange(&pool).await;
        assert_eq!(next, a);
        assert_eq!(pool.idle(), 0);
    }

    /// Each data-plane worker (a thread with a runtime of its own) takes only the idle
    /// connections it made, however recently another worker gave one back.
    #[test]
    fn a_worker_takes_only_the_connections_it_made() {
        let target = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (addr, _) = target.block_on(server());
        let pool = Pool::new(addr, CancellationToken::new());
        let worker = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        // Each exchange gives its connection back and waits until it can be taken again.
        let round = |rt: &tokio::runtime::Runtime| {
            rt.block_on(async {
                let (n, lease) = exchange(&pool).await;
                pool.give_back(lease);
                n
            })
        };
        let first = worker();
        let mine = round(&first);
        std::thread::scope(|s| {
            s.spawn(|| {
                let other = round(&worker());
                assert_ne!(
                    other, mine,
                    "the other worker's idle connection is left to it"
                );
            });
        });
        assert_eq!(pool.idle(), 2);
        assert_eq!(
            round(&first),
            mine,
            "its own, though the other worker's came back later"
        );
    }

    /// Each worker keeps its idle connections in a shard of its own and makes an HTTP/2
    /// connection of its own, so that no worker's requests wait on another worker's thread.
    #[test]
    fn each_worker_keeps_its_own_connections_and_its_own_http2_connection() {
        let target = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (h1_addr, _) = target.block_on(server());
        let (h2_addr, h2_accepted) = target.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accepted = Arc::new(AtomicUsize::new(0));
            let counted = accepted.clone();
            tokio::spawn(async move {
                loop {
                    let (tcp, _) = listener.accept().await.unwrap();
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let svc = service_fn(|_req| async {
                            Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("h2"))))
                        });
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tcp), svc)
                            .await;
                    });
                }
            });
            (addr, accepted)
        });
        let h1_pool = Pool::with_shards(h1_addr, CancellationToken::new(), 2);
        let h2_pool = Pool::with_shards(h2_addr, CancellationToken::new(), 2);
        let h2 = h2c();
        let uri = format!("http://{h2_addr}/");
        std::thread::scope(|s| {
            for me in 0..2 {
                let (h1_pool, h2_pool, h2, uri) = (&h1_pool, &h2_pool, &h2, &uri);
                s.spawn(move || {
                    worker::enter(me);
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let (_, lease) = exchange(h1_pool).await;
                        h1_pool.give_back(lease);
                        for _ in 0..3 {
                            let req = Request::get(uri).body(UpstreamBody::Empty).unwrap();
                            let resp = h2_pool.send(req, None, h2, Reuse::Pooled).await.unwrap();
                            assert_eq!(whole(resp.into_body()).await.0, "h2");
                        }
                    });
                });
            }
        });
        for shard in h1_pool.shared.shards.iter() {
            let state = shard.state.lock().unwrap();
            assert_eq!(state.idle.len(), 1, "each worker's connection in its shard");
        }
        assert_eq!(
            h2_accepted.load(Ordering::SeqCst),
            2,
            "an HTTP/2 connection per worker, each reused for its three requests"
        );
    }

    /// An HTTP/2 request goes without its Host, and gets the same Host back if it is handed
    /// back unsent after that (its connection closed before the request went out, and no new
    /// one could be made).
    #[test]
    fn an_http2_request_handed_back_gets_its_host_again() {
        let mut req = Request::get("http://app.example:8080/x")
            .header(http::header::HOST, "app.example:8080")
            .body(UpstreamBody::Empty)
            .unwrap();
        assert!(host_to_authority(&mut req));
        assert!(!req.headers().contains_key(http::header::HOST));
        host_from_authority(&mut req);
        assert_eq!(req.headers()[http::header::HOST], "app.example:8080");
    }

    #[tokio::test]
    async fn a_changed_shape_empties_the_pool() {
        let (addr, ended) = server().await;
        let pool = Pool::new(addr, CancellationToken::new());
        let (_, lease) = exchange(&pool).await;
        pool.give_back(lease);
        let tls = Shape {
            http2: false,
            tls: true,
        };
        assert!(pool.checkout_h1(tls).is_none());
        assert_eq!(
            pool.idle(),
            0,
            "an HTTP connection is no use to an HTTPS group"
        );
        while ended.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // An exchange begun before the change does not bring its connection back either.
        let resp = pool.send(get(), None, &h1(), Reuse::Pooled).await.unwrap();
        let (_, lease) = whole(resp.into_body()).await;
        pool.checkout_h1(tls);
        pool.give_back(lease.unwrap());
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout_without_traffic() {
        let (addr, ended) = server().await;
        let pool = Pool::new(addr, CancellationToken::new());
        let (_, lease) = exchange(&pool).await;
        pool.give_back(lease);
        tokio::time::pause();
        tokio::time::advance(POOL_IDLE_TIMEOUT - Duration::from_secs(1)).await;
        assert_eq!(pool.idle(), 1, "kept until the timeout");
        tokio::time::advance(Duration::from_secs(2)).await;
        while ended.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.idle(), 0);
        assert!(
            !pool.shared.shards[0].state.lock().unwrap().reaper,
            "the reaper ends with the pool empty"
        );
    }

    #[tokio::test]
    async fn a_closed_target_closes_its_http2_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let svc = service_fn(|_req| async {
                Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("h2"))))
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
            let _ = ended_tx.send(());
        });
        let closed = CancellationToken::new();
        let pool = Pool::new(addr, closed.clone());
        let h2 = h2c();
        let uri = format!("http://{addr}/");
        for _ in 0..3 {
            let req = Request::get(&uri).body(UpstreamBody::Empty).unwrap();
            let resp = pool.send(req, None, &h2, Reuse::Pooled).await.unwrap();
            let (body, lease) = whole(resp.into_body()).await;
            assert!(lease.is_none(), "an HTTP/2 connection is shared, not lent");
            assert_eq!(body, "h2");
        }
        closed.cancel();
        tokio::time::timeout(Duration::from_secs(5), ended_rx)
            .await
            .expect("the shared connection closes with its target")
            .unwrap();
    }

    #[tokio::test]
    async fn a_closed_target_keeps_no_connection() {
        let (addr, ended) = server().await;
        let closed = CancellationToken::new();
        let pool = Pool::new(addr, closed.clone());
        let (_, idle) = exchange(&pool).await;
        let (_, busy) = exchange(&pool).await;
        pool.give_back(idle);
        closed.cancel();
        while ended.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.idle(), 0, "the idle connection was closed at once");
        pool.give_back(busy);
        assert_eq!(pool.idle(), 0, "one in use is not kept when it comes back");
    }

    /// Target errors count once per failed connect, by kind; a request that was answered does
    /// not count.
    #[tokio::test]
    async fn failed_connects_count_as_connection_or_tls_errors() {
        let (live, _) = server().await;
        // Refused: a port bound, then released.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // Accepts and closes at once: a TLS handshake fails under it.
        let closer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closing = closer.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = closer.accept().await {
                drop(tcp);
            }
        });
        let settings = h1();
        let tls = Settings {
            shape: Shape {
                http2: false,
                tls: true,
            },
            ..settings.clone()
        };
        let get = || Request::get("/").body(UpstreamBody::Empty).unwrap();
        let send = |addr, s: &Settings| {
            let s = s.clone();
            async move {
                Pool::new(addr, CancellationToken::new())
                    .send(get(), None, &s, Reuse::Pooled)
                    .await
                    .map(|_| ())
            }
        };
        assert!(send(live, &settings).await.is_ok());
        assert_eq!(settings.errors.connection.get(), 0);
        assert!(send(dead, &settings).await.is_err());
        assert!(send(dead, &settings).await.is_err());
        assert_eq!(settings.errors.connection.get(), 2);
        assert!(send(closing, &tls).await.is_err());
        assert_eq!(settings.errors.tls.get(), 1, "shared with `settings`");
        assert_eq!(settings.errors.connection.get(), 2);
    }
}
