//! The control thread: its own OS thread and current-thread runtime, so that health checks, the
//! admin API and (later) reloads and discovery never take a data-plane worker, and the admin API
//! answers even when the data plane is saturated.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin;
use crate::app::Shared;
use crate::reload::{self, ReloadRequest, Reloader};
use crate::upgrade::{self, UpgradeRequest, Upgrader};

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
    shared: Arc<Shared>,
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
                            tokio::spawn(admin::serve(l, shared.clone(), stop.clone()));
                        }
                        Err(e) => warn!(error = %e, "cannot register the admin socket"),
                    }
                }
                tokio::spawn(sweep_draining(shared.clone(), stop.clone()));
                tokio::spawn(crate::health::run(shared.clone(), stop.clone()));
                tokio::spawn(reload::run(reloader, reloads, stop.clone()));
                tokio::spawn(upgrade::run(upgrader, upgrades, stop.clone()));
                stop.cancelled().await;
            });
        })
}

/// Drops targets whose deregistration delay is over.
async fn sweep_draining(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let now = Instant::now();
        for group in shared.registry.groups() {
            let before = group.members().len();
            group.sweep(now);
            let dropped = before.saturating_sub(group.members().len());
            if dropped > 0 {
                info!(target_group = %group.name, dropped, "deregistration delay over; targets dropped");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}
