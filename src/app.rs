//! The running process: loads the configuration, binds every socket before serving, then runs the
//! data plane (a multi-thread tokio runtime) and the control thread (its own current-thread runtime,
//! serving the admin API) until told to drain.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::compile::{compile, Snapshot};
use crate::config::validate::Protocol;
use crate::config::{self, ConfigErrors, Source};
use crate::metrics::Metrics;
use crate::server::ListenerContext;
use crate::targets::Registry;
use crate::{control, listener};

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
    #[error("cannot bind {what} to {addr}: {source}")]
    Bind {
        what: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start a thread or runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// A loaded configuration with its sockets bound, not yet serving.
pub struct App {
    shared: Arc<Shared>,
    listeners: Vec<(Arc<str>, Protocol, std::net::TcpListener)>,
    admin: Option<std::net::TcpListener>,
    workers: usize,
    drain_timeout: Duration,
    max_connections: usize,
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
        let mut listeners = Vec::new();
        for l in &snapshot.listeners {
            let socket = listener::bind(l.bind).map_err(|source| StartError::Bind {
                what: format!("listener {:?}", &*l.name),
                addr: l.bind,
                source,
            })?;
            listeners.push((l.name.clone(), l.protocol, socket));
        }
        let admin = match &cfg.admin {
            Some(a) => Some(listener::bind(a.bind).map_err(|source| StartError::Bind {
                what: "the admin server".into(),
                addr: a.bind,
                source,
            })?),
            None => None,
        };
        let metrics = Metrics::new();
        metrics.config_generation.set(1);
        let rt = &cfg.runtime;
        Ok(App {
            shared: Arc::new(Shared {
                snapshot: ArcSwap::from_pointee(snapshot),
                registry,
                metrics,
                shutdown: CancellationToken::new(),
                ready: AtomicBool::new(false),
            }),
            listeners,
            admin,
            workers: rt.workers,
            drain_timeout: rt.drain_timeout,
            max_connections: rt.max_connections,
        })
    }

    /// Starts serving on two threads of its own and returns at once.
    pub fn start(self) -> Result<Running, StartError> {
        let workers = match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("seawall-worker")
            .enable_all()
            .build()?;
        let mut listener_addrs = Vec::new();
        let mut contexts = Vec::new();
        for (name, protocol, socket) in self.listeners {
            let addr = socket.local_addr()?;
            info!(listener = %name, %addr, protocol = protocol.as_str(), "listening");
            listener_addrs.push((name.clone(), addr));
            contexts.push((
                Arc::new(ListenerContext {
                    name,
                    protocol,
                    port: addr.port(),
                    port_header: HeaderValue::from(addr.port()),
                    shared: self.shared.clone(),
                }),
                socket,
            ));
        }
        let admin_addr = self.admin.as_ref().map(|a| a.local_addr()).transpose()?;
        if let Some(addr) = admin_addr {
            info!(%addr, "admin listening");
        }

        let shared = self.shared.clone();
        let (drain_timeout, max_connections) = (self.drain_timeout, self.max_connections);
        let data = std::thread::Builder::new()
            .name("seawall-data".into())
            .spawn(move || {
                let tracker = TaskTracker::new();
                runtime.block_on(async {
                    // from_std must run inside the runtime that will poll the socket.
                    for (ctx, socket) in contexts {
                        match tokio::net::TcpListener::from_std(socket) {
                            Ok(l) => {
                                tokio::spawn(listener::accept_loop(
                                    l,
                                    ctx,
                                    tracker.clone(),
                                    max_connections,
                                ));
                            }
                            Err(e) => {
                                warn!(listener = %ctx.name, error = %e, "cannot register listener")
                            }
                        }
                    }
                    shared.ready.store(true, Ordering::Release);
                    shared.shutdown.cancelled().await;
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
        let control = control::spawn(self.shared.clone(), self.admin, stopped.clone())?;
        Ok(Running {
            shared: self.shared,
            data: Some(data),
            control: Some(control),
            stopped,
            listener_addrs,
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
    listener_addrs: Vec<(Arc<str>, SocketAddr)>,
    admin_addr: Option<SocketAddr>,
}

impl Running {
    /// The address a listener is bound to (useful when its config said port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listener_addrs
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, a)| *a)
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
