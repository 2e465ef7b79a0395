//! Target groups at run time.
//!
//! A group has two halves. [`GroupState`] holds its members and their health, in-flight counts and
//! draining; it lives in the [`Registry`], keyed by the group's name, outside the configuration
//! snapshot, so that reloads, the admin API and discovery change membership without resetting
//! health or losing in-flight counts (DESIGN.md, invariant 3). [`TargetGroup`] is the half compiled
//! from the configuration into each snapshot: settings and balancer, with a handle on its state.
//! Connections to a target are pooled by the [`Target`] itself.

mod target;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::Scheme;
use tokio::sync::watch;
use tokio::time::Instant;

pub use target::{Eligible, Origin, OutstandingGuard, Reason, State, Target};

use crate::balancer::{self, Balancer, PickContext};
use crate::config::validate::{HealthCheckConfig, Protocol, ProtocolVersion, TargetGroupConfig};
use crate::upstream::pool;

/// Every group's state, by name. Owned by the control side; the data plane reaches a group's state
/// through its snapshot.
#[derive(Debug, Default)]
pub struct Registry {
    groups: Mutex<HashMap<Arc<str>, Arc<GroupState>>>,
}

impl Registry {
    /// The state of the group `name`, created empty on first use.
    pub fn group(&self, name: &str) -> Arc<GroupState> {
        let mut groups = self.groups.lock().expect("not poisoned");
        if let Some(g) = groups.get(name) {
            return g.clone();
        }
        let g = Arc::new(GroupState::new(name.into()));
        groups.insert(g.name.clone(), g.clone());
        g
    }

    pub fn get(&self, name: &str) -> Option<Arc<GroupState>> {
        self.groups.lock().expect("not poisoned").get(name).cloned()
    }

    /// Every group, sorted by name.
    pub fn groups(&self) -> Vec<Arc<GroupState>> {
        let mut all: Vec<_> = self
            .groups
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Forgets groups no longer configured and returns them. Their targets are left as they
    /// are: requests in flight to them finish, and the caller drains them.
    pub fn retain(&self, names: &[&str]) -> Vec<Arc<GroupState>> {
        let mut removed = Vec::new();
        self.groups.lock().expect("not poisoned").retain(|name, g| {
            let keep = names.contains(&&**name);
            if !keep {
                removed.push(g.clone());
            }
            keep
        });
        removed
    }
}

/// A group's members and what changes them. Mutations come from the control side and are
/// serialised by `write`; the data plane only loads `members`.
#[derive(Debug)]
pub struct GroupState {
    pub name: Arc<str>,
    members: ArcSwap<Vec<Arc<Target>>>,
    /// Draining targets and when each is to be dropped.
    draining: Mutex<Vec<(Arc<Target>, Instant)>>,
    write: Mutex<()>,
    /// Bumped on every membership change (the health checker watches it).
    changed: watch::Sender<u64>,
}

impl GroupState {
    fn new(name: Arc<str>) -> Self {
        GroupState {
            name,
            members: ArcSwap::from_pointee(Vec::new()),
            draining: Mutex::new(Vec::new()),
            write: Mutex::new(()),
            changed: watch::Sender::new(0),
        }
    }

    /// The current members, draining ones included.
    pub fn members(&self) -> arc_swap::Guard<Arc<Vec<Arc<Target>>>> {
        self.members.load()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn publish(&self, members: Vec<Arc<Target>>) {
        self.members.store(Arc::new(members));
        self.changed.send_modify(|g| *g += 1);
    }

    /// Registers targets (ALB's RegisterTargets). An address already registered and not draining
    /// is left as it is; a draining one is registered anew beside it. Returns the new targets.
    pub fn register(&self, addrs: &[SocketAddr], origin: Origin) -> Vec<Arc<Target>> {
        self.register_replacing(addrs, origin, &[])
    }

    /// [`GroupState::register`], with the targets at `leaving` about to drain: they do not count
    /// as healthy members that a new target would have to slow-start beside.
    fn register_replacing(
        &self,
        addrs: &[SocketAddr],
        origin: Origin,
        leaving: &[SocketAddr],
    ) -> Vec<Arc<Target>> {
        let _w = self.write.lock().expect("not poisoned");
        let mut members = self.members.load().to_vec();
        let mut added = Vec::new();
        let none_healthy = !members
            .iter()
            .any(|t| t.state() == State::Healthy && !leaving.contains(&t.addr));
        for &addr in addrs {
            let present = members
                .iter()
                .any(|t| t.addr == addr && t.state() != State::Draining);
            if !present {
                let t = Arc::new(Target::new(addr, origin));
                if none_healthy {
                    t.skip_first_slow_start();
                }
                members.push(t.clone());
                added.push(t);
            }
        }
        if !added.is_empty() {
            self.publish(members);
        }
        added
    }

    /// Deregisters targets (ALB's DeregisterTargets): they drain for `delay`, taking no new
    /// requests, then are dropped and whatever is still open to them is closed. Returns the
    /// targets that started draining.
    pub fn deregister(&self, addrs: &[SocketAddr], delay: Duration) -> Vec<Arc<Target>> {
        let _w = self.write.lock().expect("not poisoned");
        let members = self.members.load();
        let until = Instant::now() + delay;
        let mut started = Vec::new();
        for t in members.iter().filter(|t| addrs.contains(&t.addr)) {
            if t.start_draining() {
                started.push(t.clone());
            }
        }
        if !started.is_empty() {
            let mut draining = self.draining.lock().expect("not poisoned");
            draining.extend(started.iter().map(|t| (t.clone(), until)));
            drop(draining);
            self.publish(members.to_vec());
        }
        if delay.is_zero() {
            drop(_w);
            self.sweep(Instant::now());
        }
        started
    }

    /// Makes the `origin` targets exactly `addrs`: missing ones are registered, others drain.
    /// Targets of other origins are left alone (a reload does not undo the admin API).
    pub fn reconcile(&self, origin: Origin, addrs: &[SocketAddr], delay: Duration) {
        let gone: Vec<SocketAddr> = self
            .members
            .load()
            .iter()
            .filter(|t| t.origin == origin && !addrs.contains(&t.addr))
            .map(|t| t.addr)
            .collect();
        // Registered first: a moment with every configured target draining and none new would
        // answer 503 to the requests that pick in it.
        self.register_replacing(addrs, origin, &gone);
        self.deregister(&gone, delay);
    }

    /// Drops targets whose draining time is over, and closes what is still open to them. Returns
    /// when the next one is due, if any.
    pub fn sweep(&self, now: Instant) -> Option<Instant> {
        let _w = self.write.lock().expect("not poisoned");
        let mut draining = self.draining.lock().expect("not poisoned");
        let (done, waiting): (Vec<_>, Vec<_>) = draining.drain(..).partition(|(_, at)| *at <= now);
        *draining = waiting;
        let next = draining.iter().map(|(_, at)| *at).min();
        drop(draining);
        if !done.is_empty() {
            let members = self
                .members
                .load()
                .iter()
                .filter(|t| !done.iter().any(|(d, _)| Arc::ptr_eq(d, t)))
                .cloned()
                .collect();
            self.publish(members);
            for (t, _) in done {
                t.close();
            }
        }
        next
    }

    /// Marks every non-draining member `Unused` (no listener forwards to the group) or back to
    /// `Initial` when the group is in use again.
    pub fn set_in_use(&self, in_use: bool) {
        for t in self.members.load().iter() {
            match (in_use, t.state()) {
                (false, State::Draining | State::Unused) => {}
                (false, _) => {
                    t.set_state(
                        State::Unused,
                        Some(Reason {
                            code: "Target.NotInUse",
                            description: "Target group is not configured to receive traffic from the load balancer".into(),
                        }),
                    );
                }
                (true, State::Unused) => {
                    t.set_state(State::Initial, Some(initial_reason()));
                }
                (true, _) => {}
            }
        }
    }
}

pub(crate) fn initial_reason() -> Reason {
    Reason {
        code: "Elb.InitialHealthChecking",
        description: "Initial health checks in progress".into(),
    }
}

/// A group as one snapshot sees it: the configuration's settings, and its run-time state.
#[derive(Debug)]
pub struct TargetGroup {
    pub name: Arc<str>,
    pub scheme: Scheme,
    pub protocol_version: ProtocolVersion,
    pub response_timeout: Duration,
    pub deregistration_delay: Duration,
    pub slow_start: Duration,
    pub health_check: HealthCheckConfig,
    pub state: Arc<GroupState>,
    balancer: Box<dyn Balancer>,
    /// How its targets' pools connect. A reload keeps the targets, and with them their pooled
    /// connections, unless it changes what those connections are (see [`pool::Shape`]).
    pub upstream: pool::Settings,
}

impl TargetGroup {
    /// Compiles a group's settings around its state in `registry`. Membership is not touched
    /// here: [`GroupState::reconcile`] applies the configured targets when the snapshot goes live.
    pub fn new(cfg: &TargetGroupConfig, registry: &Registry) -> Self {
        let state = registry.group(&cfg.name);
        let tls = cfg.protocol == Protocol::Https;
        TargetGroup {
            name: cfg.name.as_str().into(),
            scheme: if tls { Scheme::HTTPS } else { Scheme::HTTP },
            protocol_version: cfg.protocol_version,
            response_timeout: cfg.response_timeout,
            deregistration_delay: cfg.deregistration_delay,
            slow_start: cfg.slow_start,
            health_check: cfg.health_check.clone(),
            upstream: pool::Settings {
                shape: pool::Shape {
                    http2: cfg.protocol_version != ProtocolVersion::Http1,
                    tls,
                },
                connect_timeout: cfg.connect_timeout,
            },
            state,
            balancer: balancer::for_algorithm(cfg.algorithm),
        }
    }

    /// The target for the next request: a healthy one, else (ALB's fail-open) any that is not
    /// draining; `None` when the group has no such target.
    pub fn pick(&self) -> Option<Arc<Target>> {
        let ctx = self.pick_context();
        let mut members = self.state.members.load();
        loop {
            let picked = self
                .balancer
                .pick(&members, Eligible::Healthy, &ctx)
                .or_else(|| self.balancer.pick(&members, Eligible::NotDraining, &ctx));
            if let Some(t) = picked {
                return Some(t.clone());
            }
            // States are read live but the list was loaded before: a reload may have drained
            // every target of it since, having published their replacements first. Only an
            // unchanged list means there is nothing to pick.
            let latest = self.state.members.load();
            if Arc::ptr_eq(&latest, &members) {
                return None;
            }
            members = latest;
        }
    }

    /// A healthy target for a retry (the failed one was marked unhealthy, so it is not chosen).
    pub fn pick_healthy(&self) -> Option<Arc<Target>> {
        let members = self.state.members.load();
        self.balancer
            .pick(&members, Eligible::Healthy, &self.pick_context())
            .cloned()
    }

    fn pick_context(&self) -> PickContext {
        PickContext {
            slow_start: self.slow_start,
            now: Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        ([127, 0, 0, 1], p).into()
    }

    #[tokio::test(start_paused = true)]
    async fn deregistered_targets_drain_then_go() {
        let reg = Registry::default();
        let g = reg.group("web");
        g.register(&[addr(1), addr(2)], Origin::Config);
        let t1 = g.members()[0].clone();
        let started = g.deregister(&[addr(1)], Duration::from_secs(10));
        assert_eq!(started.len(), 1);
        assert_eq!(t1.state(), State::Draining);
        assert_eq!(
            g.members().len(),
            2,
            "listed while draining, as ALB shows it"
        );
        assert!(g.sweep(Instant::now()).is_some());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(g.sweep(Instant::now()).is_none());
        assert_eq!(g.members().len(), 1);
        assert!(t1.closed().is_cancelled());
    }

    #[tokio::test]
    async fn reconcile_keeps_other_origins_and_state() {
        let reg = Registry::default();
        let g = reg.group("web");
        g.register(&[addr(1)], Origin::Config);
        g.register(&[addr(9)], Origin::Api);
        g.members()[0].set_state(State::Unhealthy, None);
        g.reconcile(Origin::Config, &[addr(1), addr(2)], Duration::ZERO);
        let m = g.members();
        let find = |p| m.iter().find(|t| t.addr == addr(p)).unwrap().clone();
        assert_eq!(find(1).state(), State::Unhealthy, "kept, not reset");
        assert_eq!(find(2).state(), State::Initial);
        assert_eq!(find(9).origin, Origin::Api);
        drop(m);
        g.reconcile(Origin::Config, &[], Duration::ZERO);
        let ports: Vec<u16> = g.members().iter().map(|t| t.addr.port()).collect();
        assert_eq!(ports, [9]);
        assert!(Arc::ptr_eq(&reg.group("web"), &g));
    }

    #[tokio::test(start_paused = true)]
    async fn only_targets_joining_healthy_ones_slow_start() {
        let ramp = Duration::from_secs(100);
        let reg = Registry::default();
        let g = reg.group("web");
        let first = g.register(&[addr(1), addr(2)], Origin::Config);
        for t in &first {
            t.set_state(State::Healthy, None);
            assert_eq!(t.slow_start_weight(ramp, Instant::now()), 1.0);
        }
        let late = g.register(&[addr(3)], Origin::Api).remove(0);
        late.set_state(State::Healthy, None);
        assert!(late.slow_start_weight(ramp, Instant::now()) < 0.2);
        // A spared target that comes back from unhealthy ramps like any other.
        first[0].set_state(State::Unhealthy, None);
        first[0].set_state(State::Healthy, None);
        assert!(first[0].slow_start_weight(ramp, Instant::now()) < 0.2);
    }
}
