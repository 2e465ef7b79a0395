//! The control thread: its own OS thread and current-thread runtime, so that health checks, the
//! admin API, reloads and discovery never take a data-plane worker, and the admin API
//! answers even when the data plane is saturated.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::{self, AdminToken};
use crate::config::Config;
use crate::discovery::{self, Discovery, Plan};
use crate::reload::{self, ConfigInfo, ReloadRequest, Reloader};
use crate::secrets::Secrets;
use crate::snapshot::Plane;
use crate::targets::Registry;
use crate::upgrade::{self, UpgradeRequest, Upgrader};

/// What the control side's tasks (admin API, reloads, upgrades, health checks, the drain
/// sweeper) share. The data plane never sees it: it is handed only [`Plane`].
pub struct Control {
    /// The data plane's handle: the control side stores snapshots in it.
    pub plane: Arc<Plane>,
    /// Target groups' run-time state (membership, health), kept across snapshots. Changed only
    /// through [`crate::targets::GroupState::apply`].
    pub registry: Registry,
    /// What `GET /config` shows of the configuration in force.
    pub config: ArcSwap<ConfigInfo>,
    /// The settings only the control side reads, replaced by each reload.
    pub settings: ArcSwap<Settings>,
    /// Reload requests for the reload loop (see [`crate::reload::request`]).
    pub reload: mpsc::UnboundedSender<ReloadRequest>,
    /// Binary-upgrade requests for the upgrade loop (see [`crate::upgrade::request`]).
    pub upgrade: mpsc::UnboundedSender<UpgradeRequest>,
    /// Cancelled when the process starts draining: stop accepting, finish in-flight requests.
    pub shutdown: CancellationToken,
    /// True once every listener accepts.
    pub ready: AtomicBool,
    /// Set before `shutdown` is cancelled when the drain follows a binary upgrade: the new
    /// process accepts on the sockets now (what the listeners' stop lines say).
    pub handed_over: AtomicBool,
    /// The discovery watchers' plans and first answers.
    pub discovery: Arc<Discovery>,
    /// The process's own keys (see [`crate::secrets`]); a binary upgrade hands them on.
    pub secrets: Arc<Secrets>,
}

impl Control {
    /// Hands discovery the blocks of `cfg`, the configuration now in force (its groups are in
    /// the registry by then).
    pub fn follow_discovery(&self, cfg: &Config) {
        let plans = cfg
            .target_groups
            .iter()
            .filter_map(|tg| {
                Some(Plan {
                    settings: tg.discovery.clone()?,
                    group: self.registry.group(&tg.name),
                    deregistration_delay: tg.deregistration_delay,
                })
            })
            .collect();
        self.discovery.follow(plans);
    }
}

/// `[admin]` and `[runtime]` settings that only the control side reads.
#[derive(Debug)]
pub struct Settings {
    /// The admin API's bearer token for mutating endpoints.
    pub admin_token: Option<AdminToken>,
    /// The binary a zero-downtime upgrade starts.
    pub binary: PathBuf,
    /// Graceful shutdown: in-flight requests get this long to finish. Read when the drain starts.
    pub drain_timeout: Duration,
}

impl Settings {
    pub fn of(cfg: &Config) -> Self {
        Settings {
            admin_token: cfg
                .admin
                .as_ref()
                .and_then(|a| a.token.as_ref())
                .map(|t| AdminToken::new(t.expose())),
            binary: cfg.runtime.binary.clone(),
            drain_timeout: cfg.runtime.drain_timeout,
        }
    }
}

/// Installs a handler for a control signal (SIGHUP, SIGUSR2) in `runtime`, at start-up: until a
/// handler is installed the signal's default action kills the process. A signal stream works from
/// any runtime once installed, and the control thread's runtime does not exist yet.
pub fn listen_for(
    runtime: &tokio::runtime::Handle,
    kind: tokio::signal::unix::SignalKind,
    name: &str,
) -> Option<tokio::signal::unix::Signal> {
    let _runtime = runtime.enter();
    tokio::signal::unix::signal(kind)
        .map_err(|e| warn!(error = %e, "cannot listen for {name}"))
        .ok()
}

/// How often draining targets are checked for the end of their deregistration delay.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Starts the control thread; it runs until `stop` is cancelled.
pub fn spawn(
    control: Arc<Control>,
    admin_socket: Option<std::net::TcpListener>,
    reloader: Reloader,
    reloads: mpsc::UnboundedReceiver<ReloadRequest>,
    (upgrader, upgrades): (Upgrader, mpsc::UnboundedReceiver<UpgradeRequest>),
    stop: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("seawall-control".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime starts");
            rt.block_on(async move {
                if let Some(socket) = admin_socket {
                    match tokio::net::TcpListener::from_std(socket) {
                        Ok(l) => {
                            tokio::spawn(admin::serve(l, control.clone(), stop.clone()));
                        }
                        Err(e) => warn!(error = %e, "cannot register the admin socket"),
                    }
                }
                tokio::spawn(sweep_draining(control.clone(), stop.clone()));
                tokio::spawn(crate::health::run(control.plane.clone(), stop.clone()));
                tokio::spawn(discovery::run(
                    control.discovery.clone(),
                    control.plane.metrics.clone(),
                    stop.clone(),
                ));
                tokio::spawn(reload::run(reloader, reloads, stop.clone()));
                tokio::spawn(upgrade::run(upgrader, upgrades, stop.clone()));
                stop.cancelled().await;
            });
        })
}

/// The one drain sweeper: drops targets whose deregistration delay is over, of configured and
/// retired groups alike.
async fn sweep_draining(control: Arc<Control>, stop: CancellationToken) {
    loop {
        for (group, dropped) in control.registry.sweep(Instant::now()) {
            info!(target_group = %group, dropped, "deregistration delay over; targets dropped");
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}
