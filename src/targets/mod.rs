//! Target groups at run time.
//!
//! A group has two halves. [`GroupState`] holds its members and their health, in-flight counts and
//! draining; it lives in the [`Registry`], keyed by the group's name, outside the configuration
//! snapshot, so that reloads, the admin API and discovery change membership without resetting
//! health or losing in-flight counts (DESIGN.md, invariant 3). [`TargetGroup`] is the half compiled
//! from the configuration into each snapshot: settings and balancer, with a handle on its state.
//! Connections to a target are pooled by the [`Target`] itself.

mod health_check;
mod matcher;
mod target;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::Scheme;
use tokio::sync::watch;
use tokio::time::Instant;

pub use health_check::HealthCheck;
pub use matcher::{Matcher, MatcherError};
pub use target::{Eligible, Origin, OutstandingGuard, Reason, State, Target};

use crate::balancer::{self, Algorithm, Balancer, PickContext};
use crate::metrics::Metrics;
use crate::protocol::{Protocol, ProtocolVersion};
use crate::upstream::pool;

/// A change to a group's targets, from one [`Origin`]. Every source of membership (the
/// configuration on reload, the admin API, discovery) speaks in these, through
/// [`GroupState::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The origin's targets are exactly these now: missing ones are registered, the origin's
    /// others drain. Targets of other origins are left alone (a reload does not undo the API).
    Reset(Vec<SocketAddr>),
    /// ALB's RegisterTargets: an address registered and not draining is left as it is; a
    /// draining one is registered anew beside it.
    Add(Vec<SocketAddr>),
    /// ALB's DeregisterTargets: these addresses drain, whoever registered them.
    Remove(Vec<SocketAddr>),
}

/// What an [`Update`] changed.
#[derive(Debug, Default)]
pub struct Applied {
    pub added: Vec<Arc<Target>>,
    pub draining: Vec<Arc<Target>>,
}

/// Every group's state, by name, and the groups a reload removed while their targets drain.
/// Owned by the control side; the data plane reaches a group's state through its snapshot.
#[derive(Debug, Default)]
pub struct Registry {
    groups: Mutex<HashMap<Arc<str>, Arc<GroupState>>>,
    /// Groups no longer configured, kept until their last target's delay is over.
    retired: Mutex<Vec<Arc<GroupState>>>,
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

    /// Every configured group, sorted by name.
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

    /// Retires the groups not in `names`: each target drains as if deregistered, for its group's
    /// `delay`, so requests in flight to it finish; [`Registry::sweep`] drops it afterwards.
    /// Returns the names retired.
    pub fn retire_others(&self, names: &[&str], delay: impl Fn(&str) -> Duration) -> Vec<Arc<str>> {
        let mut removed = Vec::new();
        self.groups.lock().expect("not poisoned").retain(|name, g| {
            let keep = names.contains(&&**name);
            if !keep {
                removed.push(g.clone());
            }
            keep
        });
        let mut names = Vec::new();
        for g in removed {
            let addrs: Vec<SocketAddr> = g.members().iter().map(|t| t.addr).collect();
            g.deregister(&addrs, delay(&g.name));
            names.push(g.name.clone());
            self.retired.lock().expect("not poisoned").push(g);
        }
        names
    }

    /// The one drain sweeper: drops every target, of configured and retired groups alike, whose
    /// deregistration delay is over, and forgets retired groups once empty. Returns how many
    /// targets each group dropped (groups that dropped none are left out).
    pub fn sweep(&self, now: Instant) -> Vec<(Arc<str>, usize)> {
        let mut dropped = Vec::new();
        let mut count = |g: &GroupState| {
            let n = g.sweep(now);
            if n > 0 {
                dropped.push((g.name.clone(), n));
            }
        };
        for g in self.groups() {
            count(&g);
        }
        self.retired.lock().expect("not poisoned").retain(|g| {
            count(g);
            !g.members().is_empty()
        });
        dropped
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
    /// Some listener forwards to the group; when not, its targets are `Unused`, new ones too.
    in_use: AtomicBool,
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
            in_use: AtomicBool::new(true),
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

    /// The one way a group's membership changes. Targets that leave drain for `delay` (the
    /// group's deregistration delay), taking no new requests, then are dropped by the sweeper.
    pub fn apply(&self, origin: Origin, update: Update, delay: Duration) -> Applied {
        match update {
            Update::Add(addrs) => Applied {
                added: self.register(&addrs, origin, &[]),
                draining: Vec::new(),
            },
            Update::Remove(addrs) => Applied {
                added: Vec::new(),
                draining: self.deregister(&addrs, delay),
            },
            Update::Reset(addrs) => {
                let gone: Vec<SocketAddr> = self
                    .members
                    .load()
                    .iter()
                    .filter(|t| t.origin == origin && !addrs.contains(&t.addr))
                    .map(|t| t.addr)
                    .collect();
                // Registered first: a moment with every configured target draining and none
                // new would answer 503 to the requests that pick in it.
                let added = self.register(&addrs, origin, &gone);
                Applied {
                    added,
                    draining: self.deregister(&gone, delay),
                }
            }
        }
    }

    /// Registers `addrs`, with the targets at `leaving` about to drain: they do not count as
    /// healthy members that a new target would have to slow-start beside.
    fn register(
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
        let in_use = self.in_use.load(Ordering::Acquire);
        for &addr in addrs {
            let present = members
                .iter()
                .any(|t| t.addr == addr && t.state() != State::Draining);
            if !present {
                let t = Arc::new(Target::new(addr, origin));
                if none_healthy {
                    t.skip_first_slow_start();
                }
                if !in_use {
                    t.set_state(State::Unused, Some(not_in_use_reason()));
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

    /// Starts draining the targets at `addrs`; with no delay they are dropped at once.
    fn deregister(&self, addrs: &[SocketAddr], delay: Duration) -> Vec<Arc<Target>> {
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

    /// Drops targets whose draining time is over, and closes what is still open to them.
    /// Returns how many were dropped.
    fn sweep(&self, now: Instant) -> usize {
        let _w = self.write.lock().expect("not poisoned");
        let mut draining = self.draining.lock().expect("not poisoned");
        let (done, waiting): (Vec<_>, Vec<_>) = draining.drain(..).partition(|(_, at)| *at <= now);
        *draining = waiting;
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
            for (t, _) in &done {
                t.close();
            }
        }
        done.len()
    }

    /// Marks every non-draining member `Unused` (no listener forwards to the group) or back to
    /// `Initial` when the group is in use again; targets registered later follow suit.
    pub fn set_in_use(&self, in_use: bool) {
        let _w = self.write.lock().expect("not poisoned");
        self.in_use.store(in_use, Ordering::Release);
        for t in self.members.load().iter() {
            match (in_use, t.state()) {
                (false, State::Draining | State::Unused) => {}
                (false, _) => {
                    t.set_state(State::Unused, Some(not_in_use_reason()));
                }
                (true, State::Unused) => {
                    t.set_state(State::Initial, Some(initial_reason()));
                }
                (true, _) => {}
            }
        }
    }
}

fn not_in_use_reason() -> Reason {
    Reason {
        code: "Target.NotInUse",
        description: "Target group is not configured to receive traffic from the load balancer"
            .into(),
    }
}

pub(crate) fn initial_reason() -> Reason {
    Reason {
        code: "Elb.InitialHealthChecking",
        description: "Initial health checks in progress".into(),
    }
}

/// What the configuration says of a group's traffic, compiled once per load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub name: Arc<str>,
    pub protocol: Protocol,
    pub protocol_version: ProtocolVersion,
    pub algorithm: Algorithm,
    /// How long a removed target drains before it is dropped and its connections closed.
    pub deregistration_delay: Duration,
    /// Ramp-up of a newly healthy target's share; zero = off.
    pub slow_start: Duration,
    pub connect_timeout: Duration,
    /// Time to the target's response head.
    pub response_timeout: Duration,
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
    pub state: Arc<GroupState>,
    balancer: Box<dyn Balancer>,
    /// \[TargetResponseTime\] of this group, resolved once per snapshot rather than per request.
    pub response_seconds: prometheus::Histogram,
    /// How its targets' pools connect. A reload keeps the targets, and with them their pooled
    /// connections, unless it changes what those connections are (see [`pool::Shape`]).
    pub upstream: pool::Settings,
}

impl TargetGroup {
    /// Puts a group's compiled settings around its run-time state. Membership is not touched
    /// here: the configured targets are applied when the snapshot goes live.
    pub fn new(settings: &Settings, state: Arc<GroupState>, metrics: &Metrics) -> Self {
        let tls = settings.protocol == Protocol::Https;
        TargetGroup {
            name: settings.name.clone(),
            scheme: if tls { Scheme::HTTPS } else { Scheme::HTTP },
            protocol_version: settings.protocol_version,
            response_timeout: settings.response_timeout,
            deregistration_delay: settings.deregistration_delay,
            slow_start: settings.slow_start,
            upstream: pool::Settings {
                shape: pool::Shape {
                    http2: settings.protocol_version.is_http2(),
                    tls,
                },
                connect_timeout: settings.connect_timeout,
            },
            response_seconds: metrics
                .target_response_seconds
                .with_label_values(&[&*settings.name]),
            state,
            balancer: balancer::for_algorithm(settings.algorithm),
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

    /// Another target for a request that could not reach `failed`: a healthy one, else (ALB's
    /// fail-open) one that is not draining, so a group whose targets are all `initial` still
    /// moves the request; never `failed` itself, whatever state its failure left it in. Runs only
    /// after a failure, so it may copy the list.
    pub fn pick_another(&self, failed: &Arc<Target>) -> Option<Arc<Target>> {
        let ctx = self.pick_context();
        let mut members = self.state.members.load_full();
        loop {
            let others: Vec<Arc<Target>> = members
                .iter()
                .filter(|t| !Arc::ptr_eq(t, failed))
                .cloned()
                .collect();
            let picked = self
                .balancer
                .pick(&others, Eligible::Healthy, &ctx)
                .or_else(|| self.balancer.pick(&others, Eligible::NotDraining, &ctx));
            if let Some(t) = picked {
                return Some(t.clone());
            }
            // As in `pick`: only an unchanged list means there is nothing to pick.
            let latest = self.state.members.load_full();
            if Arc::ptr_eq(&latest, &members) {
                return None;
            }
            members = latest;
        }
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

    fn add(g: &GroupState, ports: &[u16], origin: Origin) -> Vec<Arc<Target>> {
        let addrs = ports.iter().map(|&p| addr(p)).collect();
        g.apply(origin, Update::Add(addrs), Duration::ZERO).added
    }

    #[tokio::test(start_paused = true)]
    async fn deregistered_targets_drain_then_go() {
        let reg = Registry::default();
        let g = reg.group("web");
        add(&g, &[1, 2], Origin::Config);
        let t1 = g.members()[0].clone();
        let applied = g.apply(
            Origin::Api,
            Update::Remove(vec![addr(1)]),
            Duration::from_secs(10),
        );
        assert_eq!(applied.draining.len(), 1);
        assert_eq!(t1.state(), State::Draining);
        assert_eq!(
            g.members().len(),
            2,
            "listed while draining, as ALB shows it"
        );
        assert!(reg.sweep(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(reg.sweep(Instant::now()), [("web".into(), 1)]);
        assert_eq!(g.members().len(), 1);
        assert!(t1.closed().is_cancelled());
    }

    #[tokio::test]
    async fn reset_keeps_other_origins_and_state() {
        let reg = Registry::default();
        let g = reg.group("web");
        add(&g, &[1], Origin::Config);
        add(&g, &[9], Origin::Api);
        g.members()[0].set_state(State::Unhealthy, None);
        g.apply(
            Origin::Config,
            Update::Reset(vec![addr(1), addr(2)]),
            Duration::ZERO,
        );
        let m = g.members();
        let find = |p| m.iter().find(|t| t.addr == addr(p)).unwrap().clone();
        assert_eq!(find(1).state(), State::Unhealthy, "kept, not reset");
        assert_eq!(find(2).state(), State::Initial);
        assert_eq!(find(9).origin, Origin::Api);
        drop(m);
        g.apply(Origin::Config, Update::Reset(vec![]), Duration::ZERO);
        let ports: Vec<u16> = g.members().iter().map(|t| t.addr.port()).collect();
        assert_eq!(ports, [9]);
        assert!(Arc::ptr_eq(&reg.group("web"), &g));
    }

    #[tokio::test]
    async fn targets_joining_a_group_no_listener_uses_are_unused() {
        let reg = Registry::default();
        let g = reg.group("spare");
        add(&g, &[1], Origin::Config);
        g.set_in_use(false);
        let late = add(&g, &[2], Origin::Api).remove(0);
        assert_eq!(late.state(), State::Unused);
        assert_eq!(g.members()[0].state(), State::Unused);
        g.set_in_use(true);
        assert!(g.members().iter().all(|t| t.state() == State::Initial));
    }

    #[tokio::test(start_paused = true)]
    async fn retired_groups_drain_and_are_forgotten_by_the_one_sweeper() {
        let reg = Registry::default();
        let old = reg.group("old");
        add(&old, &[1], Origin::Config);
        reg.group("kept");
        let retired = reg.retire_others(&["kept"], |_| Duration::from_secs(5));
        assert_eq!(retired, [Arc::<str>::from("old")]);
        assert!(reg.get("old").is_none());
        assert_eq!(old.members()[0].state(), State::Draining);
        assert!(reg.sweep(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(reg.sweep(Instant::now()), [("old".into(), 1)]);
        assert!(reg.retired.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn only_targets_joining_healthy_ones_slow_start() {
        let ramp = Duration::from_secs(100);
        let reg = Registry::default();
        let g = reg.group("web");
        let first = add(&g, &[1, 2], Origin::Config);
        for t in &first {
            t.set_state(State::Healthy, None);
            assert_eq!(t.slow_start_weight(ramp, Instant::now()), 1.0);
        }
        let late = add(&g, &[3], Origin::Api).remove(0);
        late.set_state(State::Healthy, None);
        assert!(late.slow_start_weight(ramp, Instant::now()) < 0.2);
        // A spared target that comes back from unhealthy ramps like any other.
        first[0].set_state(State::Unhealthy, None);
        first[0].set_state(State::Healthy, None);
        assert!(first[0].slow_start_weight(ramp, Instant::now()) < 0.2);
    }

    fn group_of(reg: &Registry, name: &str) -> TargetGroup {
        let settings = Settings {
            name: name.into(),
            protocol: Protocol::Http,
            protocol_version: ProtocolVersion::Http1,
            algorithm: Algorithm::RoundRobin,
            deregistration_delay: Duration::ZERO,
            slow_start: Duration::ZERO,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
        };
        TargetGroup::new(&settings, reg.group(name), &Metrics::new())
    }

    #[tokio::test]
    async fn another_target_is_any_but_the_failed_one_healthy_first() {
        let reg = Registry::default();
        let tg = group_of(&reg, "web");
        let t = add(&tg.state, &[1, 2, 3], Origin::Config);
        let (failed, b, c) = (&t[0], &t[1], &t[2]);

        // Nobody healthy yet (all `initial`): fail-open, but never back to the failed one, in
        // whatever state the failure left it.
        for failed_state in [State::Initial, State::Unhealthy, State::Healthy] {
            failed.set_state(failed_state, None);
            for _ in 0..6 {
                let next = tg.pick_another(failed).unwrap();
                assert!(!Arc::ptr_eq(&next, failed), "{failed_state:?}");
            }
        }
        failed.set_state(State::Unhealthy, None);

        // A healthy one is preferred.
        c.set_state(State::Healthy, None);
        for _ in 0..6 {
            assert!(Arc::ptr_eq(&tg.pick_another(failed).unwrap(), c));
        }

        // Draining and unused targets are never chosen.
        tg.state.apply(
            Origin::Api,
            Update::Remove(vec![addr(3)]),
            Duration::from_secs(60),
        );
        for _ in 0..6 {
            assert!(Arc::ptr_eq(&tg.pick_another(failed).unwrap(), b));
        }
        tg.state.apply(
            Origin::Api,
            Update::Remove(vec![addr(2)]),
            Duration::from_secs(60),
        );
        assert!(
            tg.pick_another(failed).is_none(),
            "only the failed one is left"
        );
        assert!(Arc::ptr_eq(&tg.pick().unwrap(), failed));
    }
}
