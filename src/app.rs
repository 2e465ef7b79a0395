//! The running process: loads the configuration, binds every socket before serving, then runs the
//! data plane (`workers` threads, each its own current-thread tokio runtime) and the control thread
//! (its own current-thread runtime, serving the admin API) until told to drain.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::access_log::{self, AccessLog};
use crate::config::compile::load_and_compile;
use crate::config::{self, ConfigErrors, Source};
use crate::control::{self, Control};
use crate::descriptors::{self, Budget, Descriptors};
use crate::listener::{self, Bound, ListenerSet, StopReason};
use crate::metrics::Metrics;
use crate::reload::{self, ConfigInfo, ReloadRequest, ReloadResult, Reloader};
use crate::secrets::Secrets;
use crate::snapshot::Plane;
use crate::spread::Workers;
use crate::systemd;
use crate::targets::Registry;
use crate::upgrade::{self, Inherited, UpgradeRequest, Upgrader};
use crate::worker;

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
    #[error("cannot take over the previous process's sockets: {0}")]
    Upgrade(#[from] upgrade::UpgradeError),
}

/// A loaded configuration with its sockets bound, not yet serving.
pub struct App {
    control: Arc<Control>,
    /// The data plane's workers, a runtime each; they start idle and pick up their accept loops
    /// on start.
    workers: Vec<tokio::runtime::Runtime>,
    listeners: Arc<ListenerSet>,
    bound: Bound,
    admin: Option<std::net::TcpListener>,
    tracker: TaskTracker,
    reloader: Reloader,
    reloads: mpsc::UnboundedReceiver<ReloadRequest>,
    upgrades: mpsc::UnboundedReceiver<UpgradeRequest>,
    /// The line back to the process this one replaces, in a binary upgrade.
    predecessor: Option<Inherited>,
    config_path: Option<std::path::PathBuf>,
}

impl App {
    /// Loads, validates and compiles `source`, then binds its listeners and admin socket. Nothing
    /// is bound when the configuration has an error.
    pub fn build(source: &Source) -> Result<App, StartError> {
        Self::build_loaded(source, config::load(source)?)
    }

    /// As [`App::build`], for a configuration already loaded from `source` (`seawall run` reads
    /// it first, for the log format).
    pub fn build_loaded(source: &Source, cfg: config::validate::Config) -> Result<App, StartError> {
        // Before the compile: the first snapshot's listeners must already seal tickets with the
        // keys a previous process hands over.
        let mut predecessor = upgrade::inherit()?;
        // Before the targets are made: each target's pool keeps a shard per worker.
        worker::set_count(cfg.runtime.worker_threads());
        let secrets = match &predecessor {
            Some(p) => p.secrets.clone(),
            None => Arc::new(Secrets::generate()),
        };
        let compiled = load_and_compile(source, &cfg, &secrets)?;
        let logs = AccessLog::open(cfg.access_log.as_ref())
            .map_err(|e| ConfigErrors(vec![source.error(e.key, e.to_string())]))?;
        let registry = Registry::default();
        let metrics = Arc::new(Metrics::new());
        let access_log = AccessLog::new(
            cfg.access_log
                .as_ref()
                .map_or(access_log::DEFAULT_BUFFER_LINES, |a| a.buffer_lines),
            metrics.access_log_dropped_total.clone(),
        );
        access_log.apply(logs);
        let snapshot = compiled.attach(&registry, &metrics, &secrets);
        snapshot.apply_membership();
        let rt = cfg.runtime.clone();
        let info = ConfigInfo::new(1, source, &cfg);
        info.log_loaded("start");
        metrics.config_generation.set(1);
        metrics
            .config_last_reload_success_timestamp_seconds
            .set(reload::unix_seconds(info.loaded_at));
        let (reload_tx, reloads) = mpsc::unbounded_channel();
        let (upgrade_tx, upgrades) = mpsc::unbounded_channel();
        let control = Arc::new(Control {
            plane: Arc::new(Plane {
                snapshot: ArcSwap::from_pointee(snapshot),
                metrics,
                access_log,
            }),
            registry,
            config: ArcSwap::from_pointee(info),
            settings: ArcSwap::from_pointee(control::Settings::of(&cfg)),
            reload: reload_tx,
            upgrade: upgrade_tx,
            shutdown: CancellationToken::new(),
            ready: AtomicBool::new(false),
            handed_over: AtomicBool::new(false),
            discovery: Arc::default(),
            secrets,
        });
        control.follow_discovery(&cfg);
        // A current-thread runtime per worker rather than one multi-thread runtime: a connection
        // stays on the worker that accepted it, which spares the hot path the multi-threaded
        // scheduler's cross-thread costs (work stealing, remote wake-ups, the shared queue).
        let workers = (0..rt.worker_threads())
            .map(|_| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tracker = TaskTracker::new();
        let listeners = Arc::new(ListenerSet::new(
            control.plane.clone(),
            control.shutdown.clone(),
            Workers::new(
                workers.iter().map(|w| w.handle().clone()).collect(),
                &control.plane.metrics,
            ),
            tracker.clone(),
            Descriptors::new(descriptor_budget()),
        ));
        let inherited_admin = predecessor.as_mut().and_then(|p| {
            listeners.adopt(std::mem::take(&mut p.listeners));
            p.admin.take()
        });
        let bound = listeners.bind_new(&control.plane.snapshot.load().listeners)?;
        let admin = match (&cfg.admin, inherited_admin) {
            (Some(_), Some(socket)) => Some(socket),
            (Some(a), None) => {
                Some(
                    listener::bind(a.bind).map_err(|source| StartError::AdminBind {
                        addr: a.bind,
                        source,
                    })?,
                )
            }
            (None, _) => None,
        };
        let reloader = Reloader::new(control.clone(), listeners.clone(), source, &cfg);
        Ok(App {
            control,
            workers,
            listeners,
            bound,
            admin,
            tracker,
            reloader,
            reloads,
            upgrades,
            predecessor,
            config_path: (!source.embedded).then(|| source.file.clone()),
        })
    }

    /// Starts serving on threads of its own and returns at once.
    pub fn start(self) -> Result<Running, StartError> {
        let App {
            control,
            workers,
            listeners,
            bound,
            admin,
            tracker,
            reloader,
            reloads,
            upgrades,
            predecessor,
            config_path,
        } = self;
        {
            let snapshot = control.plane.snapshot.load();
            listeners.commit(bound, &snapshot.listeners, snapshot.max_connections);
        }
        let admin_addr = admin.as_ref().map(|a| a.local_addr()).transpose()?;
        if let Some(addr) = admin_addr {
            info!(%addr, "admin listening");
        }
        control.ready.store(true, Ordering::Release);

        // Every worker runs until the drain is over, since its connections are part of it; then
        // each drops what the drain_timeout left of its own.
        let drained = CancellationToken::new();
        workers[0].spawn(drain_on_shutdown(
            control.clone(),
            listeners.clone(),
            tracker,
            drained.clone(),
        ));
        let mut data = Vec::with_capacity(workers.len());
        for (i, runtime) in workers.into_iter().enumerate() {
            let done = drained.clone();
            // Short enough for the kernel's 15 bytes of thread name (top, ps) up to 100 workers.
            let spawned = std::thread::Builder::new()
                .name(format!("seawall-data-{i}"))
                .spawn(move || {
                    worker::enter(i);
                    runtime.block_on(done.cancelled());
                    runtime.shutdown_timeout(Duration::from_millis(100));
                });
            match spawned {
                Ok(thread) => data.push(thread),
                Err(e) => {
                    drained.cancel();
                    for thread in data {
                        let _ = thread.join();
                    }
                    return Err(e.into());
                }
            }
        }

        let stopped = CancellationToken::new();
        let upgrader = Upgrader::new(
            control.clone(),
            listeners.clone(),
            admin.as_ref().map(|a| a.try_clone()).transpose()?,
            config_path,
        );
        let control_thread = control::spawn(
            control.clone(),
            admin,
            reloader,
            reloads,
            (upgrader, upgrades),
            stopped.clone(),
        )?;
        match predecessor {
            Some(p) => {
                // systemd hears of the new main process before the previous one may exit, so
                // that its exit is not taken for the service's.
                systemd::took_over();
                // Every socket is accepted on now: the previous process may stop.
                if let Err(e) = p.ready() {
                    warn!(error = %e, "could not tell the previous process that this one is ready");
                }
            }
            None => systemd::ready(),
        }
        Ok(Running {
            control,
            data,
            control_thread: Some(control_thread),
            stopped,
            listeners,
            admin_addr,
        })
    }
}

/// Waits for the process to start draining, then stops the listeners and waits for their
/// connections, at most the drain_timeout, before cancelling `drained`.
async fn drain_on_shutdown(
    control: Arc<Control>,
    listeners: Arc<ListenerSet>,
    tracker: TaskTracker,
    drained: CancellationToken,
) {
    // Cancelled however this ends (a panic too), or the workers would wait forever.
    let _drained = drained.drop_guard();
    control.shutdown.cancelled().await;
    let handed_over = control.handed_over.load(Ordering::Acquire);
    // After a hand-over the new process is the service: not a word from this one.
    if !handed_over {
        systemd::stopping();
    }
    // The drain_timeout in force now: a reload may have changed it since start.
    let drain_timeout = control.settings.load().drain_timeout;
    listeners.close_all(if handed_over {
        StopReason::HandedOver
    } else {
        StopReason::Shutdown
    });
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
}

/// Raises the descriptor limit to the hard limit and shares it out (see [`descriptors`]); the
/// line it logs is how an operator learns how many clients the process takes at once.
fn descriptor_budget() -> Budget {
    let (before, limit) = match descriptors::raise_limit() {
        Ok(r) => (r.before, r.after),
        Err(e) => {
            let limit = descriptors::current_limit();
            warn!(error = %e, nofile = limit, "cannot raise the file-descriptor limit");
            (limit, limit)
        }
    };
    let budget = Budget::of(limit);
    info!(
        nofile = budget.limit,
        raised_from = before,
        reserved = budget.reserve,
        max_client_connections = budget.clients,
        "file-descriptor limit: client connections capped; more are closed as they are accepted"
    );
    budget
}

/// A serving seawall. Dropping it drains and stops it.
pub struct Running {
    control: Arc<Control>,
    /// The data-plane workers' threads; they end once the drain is over.
    data: Vec<JoinHandle<()>>,
    control_thread: Option<JoinHandle<()>>,
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

    /// The control side's state: the target registry, the configuration info, the data plane's
    /// snapshot and metrics (for tests and tools that look inside a running seawall).
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Resolves when the process starts draining (a signal, a finished binary upgrade).
    pub async fn draining(&self) {
        self.control.shutdown.cancelled().await
    }

    /// Reloads the configuration file, as SIGHUP or `POST /reload` would, and waits for the outcome.
    pub async fn reload(&self) -> ReloadResult {
        reload::request(&self.control, "API").await
    }

    /// Starts draining: listeners stop accepting, connections close once their requests finish.
    pub fn shutdown(&self) {
        self.control.shutdown.cancel();
    }

    /// Drains (see [`Running::shutdown`]) and waits, at most the drain timeout, until done.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.shutdown();
        for worker in self.data.drain(..) {
            let _ = worker.join();
        }
        self.stopped.cancel();
        if let Some(c) = self.control_thread.take() {
            let _ = c.join();
        }
        // Every request has ended: the logs' last lines are written before the process exits.
        self.control.plane.access_log.close();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_now();
    }
}
