//! The running process: loads the configuration, binds every socket before serving, then runs the
//! data plane (a multi-thread tokio runtime) and the control thread (its own current-thread runtime,
//! serving the admin API) until told to drain.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::compile::{compile, Snapshot};
use crate::config::{self, ConfigErrors, Source};
use crate::metrics::Metrics;
use crate::targets::Registry;
use crate::listener::{self, Bound, ListenerSet};
use crate::control;

/// State shared by the data plane and the control thread.
pub struct Shared {
    /// The configuration in force; the data plane only ever `load()`s it.
    pub snapshot: ArcSwap<Snapshot>,
    /// Target groups' run-time state (membership, health), kept across snapshots.
    pub registry: Registry,
    pub metrics: Metrics,
    /// Cancelled when the process starts draining: stop accepting, finish in-flight requests.
    pub shutdown: CancellationToken,
    /// True once every listener accepts.
    pub ready: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Bind(#[from] listener::BindError),
    #[error("cannot bind the admin server to {addr}: {source}")]
    AdminBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start a thread or runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// A loaded configuration with its sockets bound, not yet serving.
pub struct App {
    shared: Arc<Shared>,
    /// The data plane's runtime; its workers start idle and pick up the accept loops on start.
    runtime: tokio::runtime::Runtime,
    listeners: Arc<ListenerSet>,
    bound: Bound,
    admin: Option<std::net::TcpListener>,
    tracker: TaskTracker,
    drain_timeout: Duration,
}

impl App {
    /// Loads, validates and compiles `source`, then binds its listeners and admin socket. Nothing
    /// is bound when the configuration has an error.
    pub fn build(source: &Source) -> Result<App, StartError> {
        let cfg = config::load(source)?;
        let registry = Registry::default();
        let snapshot = compile(source, &cfg, &registry)?;
        snapshot.apply_membership();
        info!(
            file = %source.file.display(),
            listeners = snapshot.listeners.len(),
            target_groups = snapshot.target_groups.len(),
            "config loaded"
        );
        let rt = cfg.runtime.clone();
        let metrics = Metrics::new();
        metrics.config_generation.set(1);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            registry,
            metrics,
            shutdown: CancellationToken::new(),
            ready: AtomicBool::new(false),
        });
        let workers = match rt.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("seawall-worker")
            .enable_all()
            .build()?;
        let tracker = TaskTracker::new();
        let listeners = Arc::new(ListenerSet::new(
            shared.clone(),
            runtime.handle().clone(),
            tracker.clone(),
        ));
        let bound = listeners.bind_new(&shared.snapshot.load())?;
        let admin = match &cfg.admin {
            Some(a) => Some(
                listener::bind(a.bind)
                    .map_err(|source| StartError::AdminBind { addr: a.bind, source })?,
            ),
            None => None,
        };
        Ok(App {
            shared,
            runtime,
            listeners,
            bound,
            admin,
            tracker,
            drain_timeout: rt.drain_timeout,
        })
    }

    /// Starts serving on threads of its own and returns at once.
    pub fn start(self) -> Result<Running, StartError> {
        let App {
            shared,
            runtime,
            listeners,
            bound,
            admin,
            tracker,
            drain_timeout,
        } = self;
        listeners.commit(bound, &shared.snapshot.load());
        let admin_addr = admin.as_ref().map(|a| a.local_addr()).transpose()?;
        if let Some(addr) = admin_addr {
            info!(%addr, "admin listening");
        }
        shared.ready.store(true, Ordering::Release);

        let drain = shared.clone();
        let data = std::thread::Builder::new()
            .name("seawall-data".into())
            .spawn(move || {
                runtime.block_on(async {
                    drain.shutdown.cancelled().await;
                    tracker.close();
                    info!(connections = tracker.len(), "draining");
                    if tokio::time::timeout(drain_timeout, tracker.wait())
                        .await
                        .is_err()
                    {
                        warn!(
                            connections = tracker.len(),
                            "drain_timeout passed; closing the remaining connections"
                        );
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;

        let stopped = CancellationToken::new();
        let control = control::spawn(shared.clone(), admin, stopped.clone())?;
        Ok(Running {
            shared,
            data: Some(data),
            control: Some(control),
            stopped,
            listeners,
            admin_addr,
        })
    }
}

/// A serving seawall. Dropping it drains and stops it.
pub struct Running {
    shared: Arc<Shared>,
    data: Option<JoinHandle<()>>,
    control: Option<JoinHandle<()>>,
    stopped: CancellationToken,
    listeners: Arc<ListenerSet>,
    admin_addr: Option<SocketAddr>,
}

impl Running {
    /// The address a listener is bound to (useful when its config said port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .addrs()
            .into_iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, a)| a)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts draining: listeners stop accepting, connections close once their requests finish.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Drains (see [`Running::shutdown`]) and waits, at most the drain timeout, until done.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.shutdown();
        if let Some(d) = self.data.take() {
            let _ = d.join();
        }
        self.stopped.cancel();
        if let Some(c) = self.control.take() {
            let _ = c.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_now();
    }
}
