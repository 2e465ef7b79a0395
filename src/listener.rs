//! Listening sockets: bound as std sockets by the control side (so that a bind failure can fail a
//! start or a reload as a whole before anything changes), then registered with every data-plane
//! worker: each worker runs an accept loop of its own on every listener, on a duplicate of the
//! same socket, so the workers take connections from one kernel queue. Each serves what it
//! accepted on its own thread, unless that would leave it well ahead of another worker
//! ([`crate::spread`]), which is then handed the connection.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::descriptors::{is_out_of_descriptors, Descriptors};
use crate::metrics::{Counted, ListenerCounters, Rejection, RequestMetrics};
use crate::protocol::Protocol;
use crate::server::{self, ListenerContext};
use crate::snapshot::{Listener, Plane};
use crate::spread::Workers;

/// The kernel's accept queue length for every listener.
const BACKLOG: i32 = 4096;

/// Binds a listening socket the way a server needs it: address reuse so a restart does not wait for
/// TIME_WAIT, a deep accept queue, non-blocking for tokio.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// How many connections one listener serves at once (`runtime.max_connections`). A reload can
/// move it either way while connections are open.
struct ConnectionLimit {
    permits: Arc<Semaphore>,
    state: Mutex<LimitState>,
}

struct LimitState {
    max: usize,
    /// Permits held by open connections that a lowered limit no longer has room for: each is
    /// forgotten instead of reused once its connection ends.
    debt: usize,
}

impl ConnectionLimit {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(ConnectionLimit {
            permits: Arc::new(Semaphore::new(max)),
            state: Mutex::new(LimitState { max, debt: 0 }),
        })
    }

    fn set(&self, max: usize) {
        let mut s = self.state.lock().expect("not poisoned");
        if max >= s.max {
            let more = max - s.max;
            let repaid = more.min(s.debt);
            s.debt -= repaid;
            self.permits.add_permits(more - repaid);
        } else {
            let fewer = s.max - max;
            s.debt += fewer - self.permits.forget_permits(fewer);
        }
        s.max = max;
    }

    /// Waits for room for one more connection.
    async fn acquire(&self) -> OwnedSemaphorePermit {
        loop {
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let mut s = self.state.lock().expect("not poisoned");
            if s.debt == 0 {
                return permit;
            }
            s.debt -= 1;
            permit.forget();
        }
    }
}

/// Accepts until the process starts draining, on worker `me` of `workers`: every worker runs
/// such a loop on the listener, all sharing `limit` and `descriptors`, and serves what it accepts
/// unless [`Workers::place`] hands it to another. At most `limit` connections are served at
/// once; past that, new connections wait in the kernel's queue rather than being refused. Past
/// the process's cap on client connections (shared by every listener, `descriptors`), or out of
/// descriptors, a connection is accepted and closed at once instead: waiting there would hold
/// clients in the backlog for descriptors that may not come back soon, while every one of them
/// still costs the kernel a socket.
async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ListenerContext>,
    tracker: TaskTracker,
    limit: Arc<ConnectionLimit>,
    descriptors: Arc<Descriptors>,
    (workers, me): (Arc<Workers>, usize),
) {
    let shutdown = ctx.stop.clone();
    let mut refusals = Refusals::default();
    loop {
        let permit = tokio::select! {
            p = limit.acquire() => p,
            _ = shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let Some(slot) = descriptors.slots.try_take() else {
                    // Counted before the close, which the client (or a test) may otherwise see,
                    // and look for the count, before this thread gets to it.
                    refusals.count(&ctx, Rejection::FdLimit, 1, || {
                        format!(
                            "the process serves {} client connections at most (see the \
                             file-descriptor limit logged at start)",
                            descriptors.slots.max()
                        )
                    });
                    drop(tcp);
                    continue;
                };
                let ctx = ctx.clone();
                let to = workers.place(me);
                let serving = workers.serving(to);
                let serve = move |tcp| async move {
                    let metrics = &ctx.plane.metrics;
                    metrics.new_connections_total.inc();
                    // A guard, which keeps its own handle on the gauge: a task dropped
                    // mid-connection (the runtime shutting down) is counted out too, and the
                    // context goes to the connection whole.
                    let active = Counted::new(&metrics.active_connections);
                    server::serve(tcp, peer, ctx, Arc::new(slot)).await;
                    drop((active, permit, serving));
                };
                if to == me {
                    tracker.spawn(serve(tcp));
                    continue;
                }
                // Out of this worker's reactor, into the other's (from_std there).
                match tcp.into_std() {
                    Ok(std) => {
                        tracker.spawn_on(
                            async move {
                                match TcpStream::from_std(std) {
                                    Ok(tcp) => serve(tcp).await,
                                    Err(e) => debug!(error = %e, "accept: cannot register a handed-over connection"),
                                }
                            },
                            &workers.handles()[to],
                        );
                    }
                    Err(e) => debug!(error = %e, "accept: connection gone while handed over"),
                }
            }
            Err(e) if is_per_connection(&e) => debug!(error = %e, "accept: connection gone"),
            Err(e) if is_out_of_descriptors(&e) => {
                let closed = descriptors.reserve.shed(&listener);
                refusals.count(&ctx, Rejection::FdExhausted, closed as u64, || {
                    format!("out of file descriptors ({e}); closing waiting connections at once")
                });
                // Whatever holds the descriptors (target connections, another listener's
                // clients) frees them on its own time: retrying at once would spin.
                tokio::time::sleep(EXHAUSTED_PAUSE).await;
            }
            Err(e) => {
                // Out of memory or buffers: back off instead of spinning on the error.
                ctx.counters.rejected(Rejection::AcceptError, 1);
                warn!(listener = %ctx.name, error = %e, "accept failed; pausing 100ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The pause after shedding a queue out of descriptors: short, since the connections that
/// arrive meanwhile wait in the backlog, long enough that a process stuck at its limit does not
/// spend a worker on failing accepts.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(10);

/// How often a listener says it is refusing connections: a flood refuses thousands a second, and
/// a line for each would flood the log too.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// One accept loop's refused connections, by reason, since it last said so (each worker's loop
/// keeps its own: a listener may log a line per worker every [`REFUSAL_LOG_EVERY`]).
#[derive(Default)]
struct Refusals {
    last_logged: [Option<Instant>; Rejection::ALL.len()],
    unlogged: [u64; Rejection::ALL.len()],
}

impl Refusals {
    /// Counts `n` connections refused for `why` (none, when running out of descriptors left
    /// nothing to accept them with), and logs a warning with `reason`'s text unless one for
    /// `why` was logged lately.
    fn count(
        &mut self,
        ctx: &ListenerContext,
        why: Rejection,
        n: u64,
        reason: impl FnOnce() -> String,
    ) {
        ctx.counters.rejected(why, n);
        let i = why as usize;
        self.unlogged[i] += n;
        if self.last_logged[i].is_some_and(|t| t.elapsed() < REFUSAL_LOG_EVERY) {
            return;
        }
        warn!(
            listener = %ctx.name,
            reason = why.as_str(),
            refused = self.unlogged[i],
            "refusing client connections: {}",
            reason()
        );
        self.last_logged[i] = Some(Instant::now());
        self.unlogged[i] = 0;
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

#[derive(Debug, thiserror::Error)]
#[error("cannot bind listener {name:?} to {addr}: {source}")]
pub struct BindError {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub source: io::Error,
}

/// What makes a listener the same one across reloads. Anything else about it (certificates, TLS
/// policy, rules) is read from the snapshot per connection or per request, so it changes without
/// touching the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    name: Arc<str>,
    bind: SocketAddr,
    protocol: Protocol,
}

impl Identity {
    fn all(listeners: &[Listener]) -> impl Iterator<Item = Identity> + '_ {
        listeners.iter().map(|l| Identity {
            name: l.name.clone(),
            bind: l.bind,
            protocol: l.protocol,
        })
    }
}

/// Why a listener stops accepting, as its `listener stopped` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A reload's configuration has no such listener any more (or binds it elsewhere).
    Removed,
    /// The process drains and exits (SIGTERM, SIGINT).
    Shutdown,
    /// A binary upgrade handed the socket to the new process, which accepts on it now.
    HandedOver,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Removed => "removed by reload",
            StopReason::Shutdown => "shutdown",
            StopReason::HandedOver => "handed over to the new process",
        }
    }
}

impl Serving {
    fn log_stop(&self, why: StopReason) {
        info!(
            listener = %self.id.name,
            addr = %self.local,
            protocol = self.id.protocol.as_str(),
            why = why.as_str(),
            "listener stopped; its connections drain"
        );
    }
}

/// A listening socket handed from one process to the next in a binary upgrade, with what
/// identifies its listener.
pub struct HandedOver {
    pub name: Arc<str>,
    pub bind: SocketAddr,
    pub protocol: Protocol,
    pub socket: std::net::TcpListener,
}

struct Serving {
    id: Identity,
    local: SocketAddr,
    /// The socket itself, kept to hand over in a binary upgrade; the accept loops have
    /// duplicates of it.
    socket: std::net::TcpListener,
    /// Cancelling it stops every worker's accept loop and drains the listener's connections.
    stop: tokio_util::sync::CancellationToken,
    limit: Arc<ConnectionLimit>,
}

/// Sockets bound for a configuration but not serving yet.
pub struct Bound(Vec<(Identity, std::net::TcpListener)>);

/// The listeners being served, changed as a whole by each configuration.
pub struct ListenerSet {
    plane: Arc<Plane>,
    /// Cancelled when the process drains; each listener's stop token is a child of it.
    shutdown: tokio_util::sync::CancellationToken,
    /// The data-plane workers, a current-thread runtime each: every listener is registered with
    /// each of them and accepted on by all.
    workers: Arc<Workers>,
    /// Every connection task, so that shutdown can wait for them.
    tracker: TaskTracker,
    /// The cap on client connections over every listener, and the reserve descriptors.
    descriptors: Arc<Descriptors>,
    serving: Mutex<Vec<Serving>>,
    /// Sockets taken over from the previous process in a binary upgrade, used in place of new
    /// binds for the same listeners.
    inherited: Mutex<Vec<(Identity, std::net::TcpListener)>>,
}

impl ListenerSet {
    pub fn new(
        plane: Arc<Plane>,
        shutdown: tokio_util::sync::CancellationToken,
        workers: Arc<Workers>,
        tracker: TaskTracker,
        descriptors: Arc<Descriptors>,
    ) -> Self {
        ListenerSet {
            plane,
            shutdown,
            workers,
            tracker,
            descriptors,
            serving: Mutex::new(Vec::new()),
            inherited: Mutex::new(Vec::new()),
        }
    }

    /// The first data-plane worker's runtime, for what needs a runtime that runs from start to
    /// the end of the drain (signal handlers).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.workers.handles()[0]
    }

    /// Keeps sockets received from the previous process, for the listeners that still exist.
    pub fn adopt(&self, inherited: Vec<HandedOver>) {
        let mut spare = self.inherited.lock().expect("not poisoned");
        for l in inherited {
            let id = Identity {
                name: l.name,
                bind: l.bind,
                protocol: l.protocol,
            };
            spare.push((id, l.socket));
        }
    }

    /// Forgets every listener, logging `why` for each. The accept loops stop by themselves on
    /// shutdown; this closes the sockets kept for upgrades, without which the kernel would go
    /// on queueing connections that nobody accepts instead of refusing them.
    pub fn close_all(&self, why: StopReason) {
        for s in self.serving.lock().expect("not poisoned").drain(..) {
            s.log_stop(why);
        }
    }

    /// Duplicates of every served socket, with what identifies it, for a binary upgrade.
    pub fn handover(&self) -> Vec<HandedOver> {
        self.serving
            .lock()
            .expect("not poisoned")
            .iter()
            .filter_map(|s| {
                Some(HandedOver {
                    name: s.id.name.clone(),
                    bind: s.id.bind,
                    protocol: s.id.protocol,
                    socket: s.socket.try_clone().ok()?,
                })
            })
            .collect()
    }

    /// Binds every one of `listeners` that is not served already. On any failure the sockets
    /// bound so far are closed and nothing changes.
    pub fn bind_new(&self, listeners: &[Listener]) -> Result<Bound, BindError> {
        let serving = self.serving.lock().expect("not poisoned");
        let mut inherited = self.inherited.lock().expect("not poisoned");
        let mut bound = Vec::new();
        for id in Identity::all(listeners) {
            if serving.iter().any(|s| s.id == id) {
                continue;
            }
            if let Some(i) = inherited.iter().position(|(i, _)| *i == id) {
                bound.push(inherited.swap_remove(i));
                continue;
            }
            let socket = bind(id.bind).map_err(|source| BindError {
                name: id.name.clone(),
                addr: id.bind,
                source,
            })?;
            bound.push((id, socket));
        }
        Ok(Bound(bound))
    }

    /// Starts serving the new sockets and stops the listeners no longer in `listeners`; their
    /// connections drain (requests in flight finish, then the connections close). Listeners kept
    /// take the new `max_connections`.
    pub fn commit(&self, bound: Bound, listeners: &[Listener], max_connections: usize) {
        // Inherited sockets this configuration has no listener for are closed now.
        self.inherited.lock().expect("not poisoned").clear();
        let mut serving = self.serving.lock().expect("not poisoned");
        let wanted: Vec<Identity> = Identity::all(listeners).collect();
        serving.retain(|s| {
            let keep = wanted.contains(&s.id);
            if keep {
                s.limit.set(max_connections);
            } else {
                s.log_stop(StopReason::Removed);
                s.stop.cancel();
            }
            keep
        });
        for (id, socket) in bound.0 {
            let local = match socket.local_addr() {
                Ok(a) => a,
                Err(e) => {
                    warn!(listener = %id.name, error = %e, "listener socket unusable");
                    continue;
                }
            };
            // The one line a listener's start logs (tests and scripts read its `addr` when the
            // file said port 0).
            info!(listener = %id.name, addr = %local, protocol = id.protocol.as_str(), "listening");
            let ctx = Arc::new(ListenerContext {
                name: id.name.clone(),
                protocol: id.protocol,
                port: local.port(),
                port_header: HeaderValue::from(local.port()),
                direct: Arc::new(RequestMetrics::new(
                    &self.plane.metrics,
                    id.name.clone(),
                    None,
                )),
                counters: ListenerCounters::new(&self.plane.metrics, &id.name),
                plane: self.plane.clone(),
                stop: self.shutdown.child_token(),
            });
            let limit = ConnectionLimit::new(max_connections);
            for (me, worker) in self.workers.handles().iter().enumerate() {
                // A duplicate per worker rather than one socket per worker (SO_REUSEPORT): one
                // kernel queue, taken from by whichever worker is free, and one socket to hand
                // over in an upgrade.
                let dup = match socket.try_clone() {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(listener = %id.name, error = %e, "cannot duplicate the listener socket");
                        continue;
                    }
                };
                let ctx = ctx.clone();
                let limit = limit.clone();
                let tracker = self.tracker.clone();
                let descriptors = self.descriptors.clone();
                let workers = (self.workers.clone(), me);
                worker.spawn(async move {
                    // from_std must run inside the runtime that will poll the socket.
                    match TcpListener::from_std(dup) {
                        Ok(l) => accept_loop(l, ctx, tracker, limit, descriptors, workers).await,
                        Err(e) => {
                            warn!(listener = %ctx.name, error = %e, "cannot register listener")
                        }
                    }
                });
            }
            serving.push(Serving {
                id,
                local,
                socket,
                stop: ctx.stop.clone(),
                limit,
            });
        }
    }

    /// The address each served listener is bound to (useful when its config said port 0).
    pub fn addrs(&self) -> Vec<(Arc<str>, SocketAddr)> {
        self.serving
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|s| (s.id.name.clone(), s.local))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_lowered_limit_takes_room_back_as_connections_end() {
        let limit = ConnectionLimit::new(2);
        let a = limit.acquire().await;
        let b = limit.acquire().await;
        limit.set(1);
        drop(a);
        assert!(
            limit.acquire().now_or_never().is_none(),
            "a second connection under a limit of 1"
        );
        drop(b);
        let _c = limit
            .acquire()
            .now_or_never()
            .expect("room once both ended");
        assert!(limit.acquire().now_or_never().is_none());

        limit.set(3);
        let _d = limit.acquire().now_or_never().expect("a raised limit");
        let _e = limit.acquire().now_or_never().expect("a raised limit");
        assert!(limit.acquire().now_or_never().is_none());
    }

    #[tokio::test]
    async fn raising_a_lowered_limit_first_cancels_what_it_still_owed() {
        let limit = ConnectionLimit::new(2);
        let a = limit.acquire().await;
        let _b = limit.acquire().await;
        limit.set(1);
        limit.set(2);
        assert!(limit.acquire().now_or_never().is_none(), "2 are open");
        drop(a);
        let _c = limit
            .acquire()
            .now_or_never()
            .expect("room for a second again");
        assert!(limit.acquire().now_or_never().is_none());
    }
}
