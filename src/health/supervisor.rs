//! The checker tasks, on the control thread's runtime.
//!
//! [`run`] keeps one group checker per target group of the snapshot in force. When a reload
//! stores a snapshot whose group of some name has other health-check settings, that group's
//! checker is dropped and a new one started with the new settings; a reload that leaves them as
//! they were leaves the checker (and its targets' runs of results) alone. Target state lives in
//! the targets' atomics, not in the checkers, so it survives a restart either way.
//!
//! A group checker watches its group's membership and runs one task per target that is not
//! draining: that task probes, waits the interval (with jitter), probes again, so a target never
//! has two probes at once. Dropping a group checker aborts its target tasks.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use super::checker::{Check, Counter};
use super::probe::{ProbeError, Prober};
use crate::metrics::{CheckResult, Metrics};
use crate::protocol::ProtocolVersion;
use crate::snapshot::{Group, Plane};
use crate::targets::{initial_reason, GroupState, HealthCheck, State, Target, TargetGroup};

/// How often the snapshot in force is compared with the running checkers. A reload's new
/// settings take effect within this; between reloads the comparison is a pointer check per group.
const SNAPSHOT_POLL: Duration = Duration::from_millis(500);

/// Spread of each wait around the interval, so targets registered together drift apart.
const JITTER: f64 = 0.1;

/// Runs the health checkers of every target group in the snapshot in force, until `stop`.
pub async fn run(plane: Arc<Plane>, stop: CancellationToken) {
    let mut checkers: HashMap<Arc<str>, GroupChecker> = HashMap::new();
    loop {
        sync(&plane, &mut checkers);
        tokio::select! {
            _ = tokio::time::sleep(SNAPSHOT_POLL) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// What a group checker runs with, taken from a snapshot's group. The checker keeps this, not the
/// snapshot's group, so an old snapshot's upstream client and pooled connections are not kept alive.
#[derive(Clone)]
struct Watched {
    name: Arc<str>,
    state: Arc<GroupState>,
    health_check: HealthCheck,
    protocol_version: ProtocolVersion,
}

impl Watched {
    fn of(g: &Group) -> Self {
        Watched {
            name: g.group.name.clone(),
            state: g.group.state.clone(),
            health_check: g.health_check.clone(),
            protocol_version: g.group.protocol_version,
        }
    }

    fn same_as(&self, g: &Group) -> bool {
        Arc::ptr_eq(&self.state, &g.group.state)
            && self.health_check == g.health_check
            && self.protocol_version == g.group.protocol_version
    }
}

/// A running group checker.
struct GroupChecker {
    /// The snapshot group last compared with, so that an unchanged snapshot costs a pointer
    /// check. Weak: it must not keep the group alive, and it keeps its address from being reused.
    seen: Weak<TargetGroup>,
    settings: Watched,
    /// Aborts the checker, and with it its target tasks, when dropped.
    _task: AbortOnDropHandle<()>,
}

/// Starts, restarts and stops group checkers to match the snapshot in force.
fn sync(plane: &Plane, checkers: &mut HashMap<Arc<str>, GroupChecker>) {
    let snapshot = plane.snapshot.load();
    let groups = &snapshot.target_groups;
    checkers.retain(|name, c| {
        let Some(g) = groups.iter().find(|g| g.group.name == *name) else {
            GroupMetrics::remove(&plane.metrics, name);
            debug!(target_group = %name, "group gone; health checks stopped");
            return false;
        };
        if std::ptr::eq(c.seen.as_ptr(), Arc::as_ptr(&g.group)) {
            return true;
        }
        c.seen = Arc::downgrade(&g.group);
        let same = c.settings.same_as(g);
        if !same {
            info!(target_group = %name, "health-check settings changed; checks restarted");
        }
        same
    });
    for g in groups {
        if !checkers.contains_key(&g.group.name) {
            debug!(target_group = %g.group.name, "starting health checks");
            let settings = Watched::of(g);
            let metrics = GroupMetrics::new(&plane.metrics, &settings.name);
            let task = tokio::spawn(check_group(settings.clone(), metrics));
            checkers.insert(
                g.group.name.clone(),
                GroupChecker {
                    seen: Arc::downgrade(&g.group),
                    settings,
                    _task: AbortOnDropHandle::new(task),
                },
            );
        }
    }
}

/// A group's metric handles, resolved once.
struct GroupMetrics {
    healthy: IntGauge,
    unhealthy: IntGauge,
    success: IntCounter,
    failure: IntCounter,
}

impl GroupMetrics {
    fn new(m: &Metrics, group: &str) -> Self {
        GroupMetrics {
            healthy: m.healthy_targets.with_label_values(&[group]),
            unhealthy: m.unhealthy_targets.with_label_values(&[group]),
            success: m
                .health_checks_total
                .with_label_values(&[group, CheckResult::Success.as_str()]),
            failure: m
                .health_checks_total
                .with_label_values(&[group, CheckResult::Failure.as_str()]),
        }
    }

    /// Drops a group's series once the group is no longer configured.
    fn remove(m: &Metrics, group: &str) {
        let _ = m.healthy_targets.remove_label_values(&[group]);
        let _ = m.unhealthy_targets.remove_label_values(&[group]);
        for result in CheckResult::ALL {
            let _ = m
                .health_checks_total
                .remove_label_values(&[group, result.as_str()]);
        }
    }
}

/// What a group's target tasks share.
struct GroupContext {
    group: Watched,
    prober: Prober,
    metrics: GroupMetrics,
}

impl GroupContext {
    /// Recounts the group's healthy and unhealthy targets into the gauges.
    fn refresh_gauges(&self) {
        let (mut healthy, mut unhealthy) = (0, 0);
        for t in self.group.state.members().iter() {
            match t.state() {
                State::Healthy => healthy += 1,
                State::Unhealthy => unhealthy += 1,
                _ => {}
            }
        }
        self.metrics.healthy.set(healthy);
        self.metrics.unhealthy.set(unhealthy);
    }

    /// Applies one probe's result to the target.
    fn record(&self, target: &Target, counter: &mut Counter, result: Result<(), ProbeError>) {
        let check = match &result {
            Ok(()) => {
                self.metrics.success.inc();
                Check::Pass
            }
            Err(_) => {
                self.metrics.failure.inc();
                Check::Fail
            }
        };
        let current = target.state();
        let passive = target.passive_failures();
        let reason = result.as_ref().err().map(ProbeError::reason);
        match counter.record(current, check, passive) {
            Some(next) => {
                // A connection failure the data plane saw while we decided outweighs a pass.
                if next == State::Healthy && target.passive_failures() != passive {
                    return;
                }
                if target.transition(current, next, reason.clone()) {
                    self.log_change(target, current, next, reason.as_ref());
                }
            }
            None => {
                if let (Some(reason), State::Unhealthy) = (reason, current) {
                    // Still unhealthy: describe the latest failure, as ALB does.
                    target.transition(current, current, Some(reason));
                }
            }
        }
    }

    fn log_change(
        &self,
        target: &Target,
        from: State,
        to: State,
        reason: Option<&crate::targets::Reason>,
    ) {
        let group = &*self.group.name;
        let (code, description) = reason.map_or(("", ""), |r| (r.code, r.description.as_str()));
        // The same line as a passive failure's (proxy::forward), told apart by `check`.
        if to == State::Healthy {
            info!(target_group = group, target = %target.addr, from = from.as_str(), to = to.as_str(), check = "active", "target state changed");
        } else {
            warn!(target_group = group, target = %target.addr, from = from.as_str(), to = to.as_str(), reason = code, description, check = "active", "target state changed");
        }
    }
}

/// Checks one group's targets, following its membership, until aborted or the group is gone.
async fn check_group(group: Watched, metrics: GroupMetrics) {
    let prober = Prober::new(&group.health_check, group.protocol_version);
    let ctx = Arc::new(GroupContext {
        group,
        prober,
        metrics,
    });
    let mut changes = ctx.group.state.subscribe();
    // Keyed by the target's address in memory; holding the `Arc` keeps the key from being reused.
    let mut running: HashMap<usize, (Arc<Target>, AbortHandle)> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        changes.borrow_and_update();
        let members = ctx.group.state.members();
        running.retain(|_, (t, handle)| {
            let keep = !handle.is_finished()
                && t.state() != State::Draining
                && members.iter().any(|m| Arc::ptr_eq(m, t));
            if !keep {
                handle.abort();
            }
            keep
        });
        for t in members.iter() {
            let key = Arc::as_ptr(t) as usize;
            if t.state() == State::Draining || running.contains_key(&key) {
                continue;
            }
            // A new target is probed at once; others (after a restart of the checker) start at
            // a random point of their interval, so a group's probes do not all fire together.
            let first = if t.state() == State::Initial {
                Duration::ZERO
            } else {
                ctx.group.health_check.interval.mul_f64(fastrand::f64())
            };
            let handle = tasks.spawn(check_target(ctx.clone(), t.clone(), first));
            running.insert(key, (t.clone(), handle));
        }
        drop(members);
        ctx.refresh_gauges();
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            // A target task ended (its target is draining): recount and forget it.
            Some(_) = tasks.join_next() => {}
        }
    }
}

/// Probes one target every interval until it drains (or the group checker is dropped).
async fn check_target(ctx: Arc<GroupContext>, target: Arc<Target>, first: Duration) {
    tokio::time::sleep(first).await;
    let hc = &ctx.group.health_check;
    let mut counter = Counter::new(
        hc.healthy_threshold,
        hc.unhealthy_threshold,
        target.passive_failures(),
    );
    let mut seen = target.state();
    loop {
        match target.state() {
            State::Draining => return,
            // Not in use: nothing to check until a listener forwards to the group again.
            State::Unused => counter.reset(target.passive_failures()),
            state => {
                if state == State::Initial {
                    target.transition(State::Initial, State::Initial, Some(initial_reason()));
                }
                let result = ctx.prober.probe(target.addr).await;
                match &result {
                    // seawall's own shortage says nothing of the target: not counted either way.
                    Err(e) if e.is_local_exhaustion() => {
                        warn!(target_group = %ctx.group.name, target = %target.addr, error = %e, "health check skipped: no file descriptor left");
                    }
                    Err(e) => {
                        debug!(target_group = %ctx.group.name, target = %target.addr, error = %e, "health check failed");
                        ctx.record(&target, &mut counter, result);
                    }
                    Ok(()) => ctx.record(&target, &mut counter, result),
                }
            }
        }
        // Also catches changes made elsewhere (a passive failure) since the last probe.
        let now = target.state();
        if now != seen {
            seen = now;
            ctx.refresh_gauges();
        }
        tokio::time::sleep(jittered(hc.interval)).await;
    }
}

/// `interval` ± `JITTER`.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 - JITTER + 2.0 * JITTER * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(10);
        let waits: Vec<Duration> = (0..1000).map(|_| jittered(base)).collect();
        assert!(waits
            .iter()
            .all(|w| (Duration::from_secs(9)..=Duration::from_secs(11)).contains(w)));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 900, "the waits are spread, not one value");
    }
}
