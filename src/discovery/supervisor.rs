//! The discovery watchers, on the control thread's runtime: one per target group whose
//! configuration has a discovery block.
//!
//! A load or reload hands [`Discovery::follow`] the plans of the configuration now in force.
//! A group whose block (or deregistration delay) is unchanged keeps its watcher, and with it the
//! watcher's caches; a changed block restarts the watcher, whose first refresh then registers
//! what the new block finds and drains what only the old one found; a removed block stops the
//! watcher and drains every target it registered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ecs;
use crate::metrics::Metrics;
use crate::targets::{GroupState, Origin, Update};

/// The least time `/ready` waits for a group's first refresh before it stops waiting (an ECS API
/// that does not answer must not keep a fleet from ever being ready: static and API-registered
/// targets may still serve). Two refresh intervals when those are longer.
const READY_WAIT: Duration = Duration::from_secs(30);

/// A group's discovery, as the configuration in force asks for it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub group: Arc<GroupState>,
    pub settings: ecs::Settings,
    /// The group's deregistration delay: how long the targets that leave drain.
    pub deregistration_delay: Duration,
}

impl Plan {
    fn same_as(&self, other: &Plan) -> bool {
        Arc::ptr_eq(&self.group, &other.group)
            && self.settings == other.settings
            && self.deregistration_delay == other.deregistration_delay
    }
}

/// The control side's handle on discovery: what to follow, and who has answered.
#[derive(Debug)]
pub struct Discovery {
    plans: watch::Sender<Arc<Vec<Plan>>>,
    /// The watchers of the start-up configuration have been started. Readiness is a start-up
    /// gate: a reload that adds or changes a block does not make a serving process unready.
    started: AtomicBool,
    /// Per group watched since start-up: whether its source has answered once, and until when
    /// `/ready` waits for it.
    progress: Mutex<HashMap<Arc<str>, Progress>>,
}

#[derive(Debug)]
struct Progress {
    answered: Arc<AtomicBool>,
    wait_until: Instant,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            plans: watch::Sender::new(Arc::new(Vec::new())),
            started: AtomicBool::new(false),
            progress: Mutex::new(HashMap::new()),
        }
    }
}

impl Discovery {
    /// Follows `plans` from now on (the watchers are brought in line by [`run`]).
    pub fn follow(&self, plans: Vec<Plan>) {
        self.plans.send_replace(Arc::new(plans));
    }

    /// The groups `/ready` still waits for: those of the start-up configuration that have not
    /// answered once, within their wait.
    pub fn waiting(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = if self.started.load(Ordering::Acquire) {
            let now = Instant::now();
            self.progress
                .lock()
                .expect("not poisoned")
                .iter()
                .filter(|(_, p)| !p.answered.load(Ordering::Acquire) && now < p.wait_until)
                .map(|(name, _)| name.clone())
                .collect()
        } else {
            // Not picked up by the watchers yet.
            self.plans
                .borrow()
                .iter()
                .map(|p| p.group.name.clone())
                .collect()
        };
        names.sort();
        names
    }
}

/// A running watcher.
struct Watcher {
    plan: Plan,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Keeps one watcher per plan, until `stop`.
pub async fn run(discovery: Arc<Discovery>, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut plans = discovery.plans.subscribe();
    let mut watchers: HashMap<Arc<str>, Watcher> = HashMap::new();
    loop {
        let wanted = plans.borrow_and_update().clone();
        sync(&discovery, &metrics, &mut watchers, &wanted).await;
        discovery.started.store(true, Ordering::Release);
        tokio::select! {
            changed = plans.changed() => if changed.is_err() { break },
            _ = stop.cancelled() => break,
        }
    }
    for (_, w) in watchers.drain() {
        w.stop.cancel();
    }
}

async fn sync(
    discovery: &Discovery,
    metrics: &Arc<Metrics>,
    watchers: &mut HashMap<Arc<str>, Watcher>,
    wanted: &[Plan],
) {
    let gone: Vec<Arc<str>> = watchers
        .iter()
        .filter(|(name, w)| {
            !wanted
                .iter()
                .any(|p| p.group.name == **name && p.same_as(&w.plan))
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in gone {
        let w = watchers.remove(&name).expect("listed above");
        w.stop.cancel();
        // Waited for, so that nothing it applies lands after what follows.
        let _ = w.task.await;
        discovery
            .progress
            .lock()
            .expect("not poisoned")
            .remove(&name);
        // By state, not name: a group removed and added again by two quick reloads is a new
        // state, and the old one (retired, draining) must not keep what this watcher found.
        let still_planned = wanted.iter().any(|p| Arc::ptr_eq(&p.group, &w.plan.group));
        if !still_planned {
            // The block is gone: what it found drains, as deregistered targets do.
            let emptied = w.plan.group.apply(
                Origin::Discovery,
                Update::Reset(Vec::new()),
                w.plan.deregistration_delay,
            );
            forget_metrics(metrics, &name);
            match emptied {
                Ok(applied) => {
                    info!(target_group = %name, drained = applied.draining.len(), "discovery removed; the targets it found drain")
                }
                Err(e) => {
                    warn!(target_group = %name, error = %e, "discovery removed, but what it found could not be drained")
                }
            }
        } else {
            info!(target_group = %name, "discovery changed; restarting its watcher");
        }
    }
    for plan in wanted {
        if watchers.contains_key(&plan.group.name) {
            continue;
        }
        let answered = Arc::new(AtomicBool::new(false));
        if !discovery.started.load(Ordering::Acquire) {
            let wait = READY_WAIT.max(plan.settings.refresh * 2);
            discovery.progress.lock().expect("not poisoned").insert(
                plan.group.name.clone(),
                Progress {
                    answered: answered.clone(),
                    wait_until: Instant::now() + wait,
                },
            );
        }
        let stop = CancellationToken::new();
        info!(target_group = %plan.group.name, source = %plan.settings.describe(), refresh = ?plan.settings.refresh, "discovery started");
        let task = start(plan.clone(), metrics.clone(), answered, stop.clone());
        watchers.insert(
            plan.group.name.clone(),
            Watcher {
                plan: plan.clone(),
                stop,
                task,
            },
        );
    }
}

/// Series of a group no longer discovered are removed, not left at their last value.
fn forget_metrics(metrics: &Metrics, group: &str) {
    let _ = metrics.discovery_targets.remove_label_values(&[group]);
    let _ = metrics
        .discovery_last_success_timestamp_seconds
        .remove_label_values(&[group]);
    let _ = metrics
        .discovery_refresh_seconds
        .remove_label_values(&[group]);
}

#[cfg(feature = "ecs")]
fn start(
    plan: Plan,
    metrics: Arc<Metrics>,
    answered: Arc<AtomicBool>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Reading the AWS environment may ask the instance's metadata service for the region:
        // a stop must not wait for that (the reconciler awaits a stopped watcher).
        let api = tokio::select! {
            api = ecs::SdkApi::load(&plan.settings) => api,
            _ = stop.cancelled() => return,
        };
        let source = ecs::Ecs::new(api, plan.settings, plan.group.name.clone(), &metrics);
        super::follow(
            source,
            plan.group,
            plan.deregistration_delay,
            stop,
            answered,
        )
        .await;
    })
}

/// Without the `ecs` feature, configuration validation refuses every discovery block, so no plan
/// reaches here; one that did would be said loudly rather than half-obeyed.
#[cfg(not(feature = "ecs"))]
fn start(
    plan: Plan,
    _metrics: Arc<Metrics>,
    _answered: Arc<AtomicBool>,
    _stop: CancellationToken,
) -> JoinHandle<()> {
    tracing::error!(target_group = %plan.group.name, "this seawall was built without ECS discovery (cargo feature `ecs`); the group's discovery block is ignored");
    tokio::spawn(async {})
}
