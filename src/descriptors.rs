//! File descriptors, which every client connection, target connection, health check and admin
//! connection costs one of. At start the process raises its soft `RLIMIT_NOFILE` to the hard
//! limit, then caps client connections well below it ([`Budget`]), so that a flood of clients
//! leaves descriptors for the admin server, health checks and target connections: past the cap a
//! listener accepts and closes at once ([`ClientSlots`]). Should the process run out all the same
//! (`EMFILE`, or the system's table full, `ENFILE`), descriptors held back ([`Reserve`]) let
//! a listener accept and close what waits in its queue instead of spinning on the error while
//! clients hang in the kernel's backlog.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustix::net::SocketFlags;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept from client connections whatever the limit: the admin server's 64
/// connections (`admin::MAX_CONNECTIONS`), and 64 for what the process holds anyway (listening
/// sockets, the runtimes' epoll and wake-up descriptors, log files, the configuration watcher, the
/// upgrade socket, the [`Reserve`]), health-check probes and discovery's HTTPS connections.
const RESERVE_MIN: u64 = 128;

/// How the descriptor limit is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The soft `RLIMIT_NOFILE` in force.
    pub limit: u64,
    /// Descriptors kept from client connections.
    pub reserve: u64,
    /// Client connections the whole process serves at once, over all listeners.
    pub clients: usize,
}

impl Budget {
    /// The share-out of `limit` descriptors.
    pub fn of(limit: u64) -> Budget {
        // At large limits a sixteenth rather than the fixed part: health checks probe every target
        // at once, and the target pools keep up to 256 idle connections per target and worker,
        // both of which grow with the deployment rather than with the client load. Never more
        // than half, so that a tiny limit still serves some clients.
        let reserve = RESERVE_MIN.max(limit / 16).min(limit / 2);
        // Halved as HAProxy derives its maxconn from the limit: each client connection may hold a
        // target connection (an HTTP/1 client has one request in flight at a time). An HTTP/2
        // client with many streams in flight can hold more; the reserve and the `EMFILE` path are
        // there for that.
        let clients = usize::try_from((limit - reserve) / 2)
            .unwrap_or(usize::MAX)
            .max(1);
        Budget {
            limit,
            reserve,
            clients,
        }
    }
}

/// Why the soft limit could not be raised.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("cannot raise the soft RLIMIT_NOFILE from {from} to the hard limit {to}: {source}")]
    Raise {
        from: u64,
        to: u64,
        source: io::Error,
    },
}

/// The soft limit before and after [`raise_limit`].
#[derive(Debug, Clone, Copy)]
pub struct Raised {
    pub before: u64,
    pub after: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. The soft limit is often 1024 for the sake
/// of programs that still use `select(2)`, which seawall does not; the hard limit is what the
/// administrator (systemd's `LimitNOFILE`, a container's `ulimit`) meant the process to have.
pub fn raise_limit() -> Result<Raised, LimitError> {
    let now = getrlimit(Resource::Nofile);
    // Linux refuses a NOFILE above fs.nr_open, whatever the hard limit says (an unlimited hard
    // limit included).
    let ceiling = nr_open();
    let before = now.current.unwrap_or(ceiling).min(ceiling);
    let after = now.maximum.unwrap_or(ceiling).min(ceiling);
    if after > before {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(after),
                maximum: now.maximum,
            },
        )
        .map_err(|e| LimitError::Raise {
            from: before,
            to: after,
            source: e.into(),
        })?;
        return Ok(Raised { before, after });
    }
    Ok(Raised {
        before,
        after: before,
    })
}

/// The soft `RLIMIT_NOFILE` in force, for when it cannot be raised.
pub fn current_limit() -> u64 {
    let ceiling = nr_open();
    getrlimit(Resource::Nofile)
        .current
        .unwrap_or(ceiling)
        .min(ceiling)
}

/// The kernel's ceiling on a process's descriptors (its default when it cannot be read).
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// Whether an accept failed for want of a descriptor: the process's (`EMFILE`) or the system's
/// (`ENFILE`).
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(rustix::io::Errno::MFILE.raw_os_error())
        || code == Some(rustix::io::Errno::NFILE.raw_os_error())
}

/// The client connections open over all listeners, against [`Budget::clients`].
#[derive(Debug)]
pub struct ClientSlots {
    max: usize,
    open: AtomicUsize,
}

/// One client connection's place under the cap, given back when dropped.
#[derive(Debug)]
pub struct ClientSlot(Arc<ClientSlots>);

impl ClientSlots {
    pub fn new(max: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots {
            max,
            open: AtomicUsize::new(0),
        })
    }

    /// A place for one more client connection, if the cap leaves one.
    pub fn try_take(self: &Arc<Self>) -> Option<ClientSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(ClientSlot(self.clone()))
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A few descriptors (`/dev/null`) held so that, when accept fails with `EMFILE`, closing one
/// makes room to accept a waiting connection and close it again: the client is told at once
/// instead of waiting in the backlog for a descriptor that may not come.
///
/// More than one because the room a closed descriptor leaves is the whole process's: another
/// thread (a target connection being opened) may take it before the accept does, and then holds
/// it for as long as its connection lives. Each round gives up one and takes back what it can.
#[derive(Debug)]
pub struct Reserve(Mutex<Vec<File>>);

/// Descriptors the reserve holds when it can; counted in [`RESERVE_MIN`].
const RESERVE_FILES: usize = 8;

/// Waiting connections a listener closes per `EMFILE`, so that one listener's queue does not hold
/// the worker (and the reserve) for long; the rest wait for the next round.
const SHED_BATCH: usize = 64;

impl Reserve {
    pub fn new() -> Reserve {
        let reserve = Reserve(Mutex::new(Vec::with_capacity(RESERVE_FILES)));
        top_up(&mut reserve.0.lock().expect("not poisoned"));
        reserve
    }

    /// How many descriptors are held (fewer than [`RESERVE_FILES`] when others took their room).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    /// Accepts and closes up to [`SHED_BATCH`] connections waiting on `listener` (a non-blocking
    /// socket) in the room one reserve descriptor leaves, then takes back what it can. Returns
    /// how many were closed: none when no descriptor is held, or when another thread took the
    /// room first. Listeners that run out together take turns at it.
    pub fn shed(&self, listener: impl AsFd) -> usize {
        let mut held = self.0.lock().expect("not poisoned");
        // Descriptors lost in earlier rounds come back as soon as there is room for them.
        top_up(&mut held);
        let Some(file) = held.pop() else {
            return 0;
        };
        drop(file);
        let mut closed = 0;
        while closed < SHED_BATCH {
            // Closed as soon as accepted: the descriptor is the one the reserve just gave up.
            match rustix::net::accept_with(
                listener.as_fd(),
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            ) {
                Ok(socket) => {
                    drop(socket);
                    closed += 1;
                }
                Err(rustix::io::Errno::INTR) => {}
                // The queue is empty (EAGAIN), something else took the free descriptor (EMFILE),
                // or the connection went before it was accepted: the next round sees to the rest.
                Err(_) => break,
            }
        }
        top_up(&mut held);
        closed
    }
}

/// Opens reserve descriptors up to [`RESERVE_FILES`], as many as the limit leaves room for.
fn top_up(held: &mut Vec<File>) {
    while held.len() < RESERVE_FILES {
        match File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(_) => break,
        }
    }
}

impl Default for Reserve {
    fn default() -> Self {
        Reserve::new()
    }
}

/// What the listeners share: the cap on client connections and the reserve descriptors.
#[derive(Debug)]
pub struct Descriptors {
    pub slots: Arc<ClientSlots>,
    pub reserve: Reserve,
}

impl Descriptors {
    pub fn new(budget: Budget) -> Arc<Descriptors> {
        Arc::new(Descriptors {
            slots: ClientSlots::new(budget.clients),
            reserve: Reserve::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn the_budget_keeps_a_reserve_and_a_target_connection_per_client() {
        assert_eq!(
            Budget::of(256),
            Budget {
                limit: 256,
                reserve: 128,
                clients: 64
            }
        );
        assert_eq!(Budget::of(1024).clients, (1024 - 128) / 2);
        // A sixteenth at large limits.
        let big = Budget::of(1 << 20);
        assert_eq!(
            (big.reserve, big.clients),
            (1 << 16, ((1 << 20) - (1 << 16)) / 2)
        );
        // A tiny limit keeps half and still serves someone.
        assert_eq!(Budget::of(64).reserve, 32);
        assert_eq!(Budget::of(64).clients, 16);
        assert_eq!(Budget::of(1).clients, 1);
        assert_eq!(Budget::of(0).clients, 1);
    }

    #[test]
    fn slots_are_shared_up_to_the_cap_and_come_back_when_dropped() {
        let slots = ClientSlots::new(2);
        let a = slots.try_take().expect("first");
        let b = slots.try_take().expect("second");
        assert!(slots.try_take().is_none(), "a third under a cap of 2");
        drop(a);
        let _c = slots.try_take().expect("room once one ended");
        assert!(slots.try_take().is_none());
        drop(b);
        assert!(slots.try_take().is_some());
    }

    #[test]
    fn the_limit_is_raised_to_the_hard_limit() {
        let raised = raise_limit().expect("raising the soft limit to the hard one is allowed");
        assert!(raised.after >= raised.before);
        assert_eq!(current_limit(), raised.after);
        let hard = getrlimit(Resource::Nofile).maximum;
        assert_eq!(Some(raised.after), hard.map(|h| h.min(nr_open())));
    }

    #[test]
    fn out_of_descriptors_is_emfile_or_enfile() {
        for (code, out) in [(24, true), (23, true), (104, false), (12, false)] {
            assert_eq!(
                is_out_of_descriptors(&io::Error::from_raw_os_error(code)),
                out,
                "{code}"
            );
        }
    }

    /// The mechanics of the `EMFILE` path, without running out (which would starve the other
    /// tests of this process): waiting connections are accepted and closed, the descriptors are
    /// held again afterwards.
    #[test]
    fn shedding_closes_waiting_connections_and_keeps_the_reserve() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients: Vec<TcpStream> =
            (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let reserve = Reserve::new();
        assert_eq!(reserve.held(), RESERVE_FILES);
        assert_eq!(reserve.shed(&listener), 3);
        assert_eq!(reserve.held(), RESERVE_FILES, "the reserve is taken back");
        for c in &mut clients {
            c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut buf = [0u8; 1];
            match c.read(&mut buf) {
                Ok(0) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                other => panic!("a shed connection is closed, not {other:?}"),
            }
        }
        assert_eq!(reserve.shed(&listener), 0, "nothing waits");

        // Descriptors lost to other threads are reopened when there is room.
        let short = Reserve(Mutex::new(Vec::new()));
        TcpStream::connect(addr).unwrap();
        assert_eq!(short.shed(&listener), 1);
        assert_eq!(short.held(), RESERVE_FILES);
    }
}
