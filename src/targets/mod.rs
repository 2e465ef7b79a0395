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
pub use target::{Eligible, Origin, OutstandingGuard, Reason, Sources, State, Target};

use crate::balancer::{self, Algorithm, Balancer, PickContext};
use crate::metrics::{Metrics, TargetErrors};
use crate::protocol::{Protocol, ProtocolVersion};
use crate::stickiness::TargetStickiness;
use crate::upstream::pool;

/// What a source registers: an address, and for a discovered ECS task, the task's ARN. The ARN
/// tells a new task apart from an old one that had the same host port on the same instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub addr: SocketAddr,
    pub task_arn: Option<Arc<str>>,
}

impl From<SocketAddr> for Registration {
    fn from(addr: SocketAddr) -> Registration {
        Registration {
            addr,
            task_arn: None,
        }
    }
}

/// A change to a group's targets, from one [`Origin`]. Every source of membership (the
/// configuration on reload, the admin API, discovery) speaks in these, through
/// [`GroupState::apply`]. A target is registered while any origin registers it (its
/// [`Sources`]); it drains when the last one lets go, or when it is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The origin registers exactly these now. A target it registered that is not among them,
    /// or whose task ARN differs from the one registered at its address now (a new task on an
    /// old task's host port), is let go by the origin; missing ones are registered. Other
    /// origins' registrations are left alone (a reload does not undo the API).
    Reset(Vec<Registration>),
    /// ALB's RegisterTargets: an address registered and not draining is left as it is (the
    /// origin joins its sources); a draining one is registered anew beside it.
    Add(Vec<Registration>),
    /// ALB's DeregisterTargets: these addresses drain, whoever registered them; but what
    /// discovery registered only discovery may remove (see [`MembershipError`]).
    Remove(Vec<SocketAddr>),
}

/// What an [`Update`] changed.
#[derive(Debug, Default)]
pub struct Applied {
    pub added: Vec<Arc<Target>>,
    pub draining: Vec<Arc<Target>>,
}

/// Why [`GroupState::apply`] refused an update. A refused update changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// A `Remove` from another origin named targets that discovery registered: discovery owns
    /// them, and would register them again at its next refresh, so a removal by hand would not
    /// last.
    #[error("{}", discovered_message(group, targets))]
    Discovered {
        group: Arc<str>,
        /// The targets refused, with the ECS task behind each where discovery gave one.
        targets: Vec<Registration>,
    },
}

fn discovered_message(group: &str, targets: &[Registration]) -> String {
    let tasks = targets.iter().filter(|t| t.task_arn.is_some()).count();
    let by = if tasks > 0 {
        "ECS discovery"
    } else {
        "discovery"
    };
    let stop = match tasks {
        0 => "",
        1 => "stop the task or ",
        _ => "stop the tasks or ",
    };
    let head = match targets {
        [one] => {
            let task = one
                .task_arn
                .as_ref()
                .map(|arn| format!(" (task {arn})"))
                .unwrap_or_default();
            format!(
                "target {} in target group {group:?} was registered by {by}{task}",
                one.addr
            )
        }
        _ => {
            let listed: Vec<String> = targets
                .iter()
                .map(|t| match &t.task_arn {
                    Some(arn) => format!("{} (task {arn})", t.addr),
                    None => t.addr.to_string(),
                })
                .collect();
            format!(
                "targets {} in target group {group:?} were registered by {by}",
                listed.join(", ")
            )
        }
    };
    format!("{head}; {stop}change the discovery block instead")
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
            // Discovered targets too: with the group gone, nothing would ever deregister them.
            g.drain_all(delay(&g.name));
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
    /// Only a `Remove` can be refused, and then nothing changes.
    pub fn apply(
        &self,
        origin: Origin,
        update: Update,
        delay: Duration,
    ) -> Result<Applied, MembershipError> {
        let w = self.write.lock().expect("not poisoned");
        let members = self.members.load_full();
        let applied = match update {
            Update::Add(regs) => Applied {
                added: self.register(&members, &regs, origin, &[]),
                draining: Vec::new(),
            },
            Update::Remove(addrs) => {
                // In the order asked, so that a refusal lists them so.
                let at: Vec<Arc<Target>> = addrs
                    .iter()
                    .flat_map(|a| members.iter().filter(move |t| t.addr == *a))
                    .filter(|t| t.state() != State::Draining)
                    .cloned()
                    .collect();
                if origin != Origin::Discovery {
                    let discovered: Vec<Registration> = at
                        .iter()
                        .filter(|t| t.sources().contains(Origin::Discovery))
                        .map(|t| Registration {
                            addr: t.addr,
                            task_arn: t.task_arn(),
                        })
                        .collect();
                    if !discovered.is_empty() {
                        return Err(MembershipError::Discovered {
                            group: self.name.clone(),
                            targets: discovered,
                        });
                    }
                }
                Applied {
                    added: Vec::new(),
                    draining: self.drain(&at, delay),
                }
            }
            Update::Reset(regs) => {
                let mut leaving = Vec::new();
                for t in members.iter() {
                    if t.state() == State::Draining || !t.sources().contains(origin) {
                        continue;
                    }
                    // A registration with a task ARN keeps only the target of that same task: a
                    // new task on an old task's host port is another target, checked afresh.
                    let kept = regs.iter().any(|r| {
                        r.addr == t.addr && (r.task_arn.is_none() || r.task_arn == t.task_arn())
                    });
                    if !kept && t.release(origin) {
                        leaving.push(t.clone());
                    }
                }
                // Registered first: a moment with every configured target draining and none
                // new would answer 503 to the requests that pick in it.
                let added = self.register(&members, &regs, origin, &leaving);
                Applied {
                    added,
                    draining: self.drain(&leaving, delay),
                }
            }
        };
        drop(w);
        if delay.is_zero() && !applied.draining.is_empty() {
            self.sweep(Instant::now());
        }
        Ok(applied)
    }

    /// Registers `regs` for `origin` over `members` (loaded under the write lock), with the
    /// targets in `leaving` about to drain: they neither take a registration nor count as healthy
    /// members that a new target would have to slow-start beside. An address with a target that
    /// stays gets `origin` in its sources; any other gets a new target. Publishes the new list.
    fn register(
        &self,
        members: &[Arc<Target>],
        regs: &[Registration],
        origin: Origin,
        leaving: &[Arc<Target>],
    ) -> Vec<Arc<Target>> {
        let is_leaving = |t: &Arc<Target>| leaving.iter().any(|l| Arc::ptr_eq(l, t));
        let mut members = members.to_vec();
        let mut added = Vec::new();
        let none_healthy = !members
            .iter()
            .any(|t| t.state() == State::Healthy && !is_leaving(t));
        let in_use = self.in_use.load(Ordering::Acquire);
        for reg in regs {
            let staying = members
                .iter()
                .find(|t| t.addr == reg.addr && t.state() != State::Draining && !is_leaving(t));
            if let Some(t) = staying {
                t.join(origin, reg.task_arn.clone());
                continue;
            }
            let t = Arc::new(Target::new(reg.addr, origin));
            t.join(origin, reg.task_arn.clone());
            if none_healthy {
                t.skip_first_slow_start();
            }
            if !in_use {
                t.set_state(State::Unused, Some(not_in_use_reason()));
            }
            members.push(t.clone());
            added.push(t);
        }
        if !added.is_empty() {
            self.publish(members);
        }
        added
    }

    /// Starts draining `targets` (by identity: a new target may share a draining one's
    /// address). The caller holds the write lock, and sweeps when `delay` is zero.
    fn drain(&self, targets: &[Arc<Target>], delay: Duration) -> Vec<Arc<Target>> {
        let until = Instant::now() + delay;
        let started: Vec<Arc<Target>> = targets
            .iter()
            .filter(|t| t.start_draining())
            .cloned()
            .collect();
        if !started.is_empty() {
            let mut draining = self.draining.lock().expect("not poisoned");
            draining.extend(started.iter().map(|t| (t.clone(), until)));
            drop(draining);
            self.publish(self.members.load().to_vec());
        }
        started
    }

    /// Drains every member, whoever registered it: the group itself is going.
    fn drain_all(&self, delay: Duration) {
        let w = self.write.lock().expect("not poisoned");
        let members = self.members.load_full();
        self.drain(&members, delay);
        drop(w);
        if delay.is_zero() {
            self.sweep(Instant::now());
        }
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
            // Closed before they leave the list: whoever no longer finds one there finds it
            // closed too (a draining target takes no new requests meanwhile).
            for (t, _) in &done {
                t.close();
            }
            let members = self
                .members
                .load()
                .iter()
                .filter(|t| !done.iter().any(|(d, _)| Arc::ptr_eq(d, t)))
                .cloned()
                .collect();
            self.publish(members);
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
    /// Target stickiness (ALB's lb_cookie or app_cookie); `None`: off.
    pub stickiness: Option<TargetStickiness>,
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
    /// Target stickiness; `None` (the usual case) costs a forward one branch.
    pub stickiness: Option<TargetStickiness>,
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
            stickiness: settings.stickiness.clone(),
            upstream: pool::Settings {
                shape: pool::Shape {
                    http2: settings.protocol_version.is_http2(),
                    tls,
                },
                connect_timeout: settings.connect_timeout,
                errors: TargetErrors::new(metrics, &settings.name),
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
        self.pick_in(|members| self.fail_open(members, &ctx).cloned())
    }

    /// Another target for a request that could not reach `failed`: chosen as [`Self::pick`]
    /// chooses, so a group whose targets are all `initial` still moves the request, but never
    /// `failed` itself, whatever state its failure left it in. Runs only after a failure, so it
    /// may copy the list.
    pub fn pick_another(&self, failed: &Arc<Target>) -> Option<Arc<Target>> {
        let ctx = self.pick_context();
        self.pick_in(|members| {
            let others: Vec<Arc<Target>> = members
                .iter()
                .filter(|t| !Arc::ptr_eq(t, failed))
                .cloned()
                .collect();
            self.fail_open(&others, &ctx).cloned()
        })
    }

    /// The member at `addr` that a sticky request asks for, if [`Self::pick`] could choose it
    /// now: healthy, or, while no member is healthy (fail-open), not draining. `None` sends the
    /// request to a fresh pick.
    pub fn pick_sticky(&self, addr: SocketAddr) -> Option<Arc<Target>> {
        let members = self.state.members.load();
        let t = members
            .iter()
            .find(|t| t.addr == addr && t.is_eligible(Eligible::NotDraining))?;
        let usable = t.is_eligible(Eligible::Healthy)
            || !members.iter().any(|m| m.is_eligible(Eligible::Healthy));
        usable.then(|| t.clone())
    }

    /// Whether a pick would find a target: some member is not draining (healthy or not, as
    /// fail-open takes them). A weighted forward passes over a group that cannot.
    pub fn can_serve(&self) -> bool {
        let members = self.state.members.load();
        members.iter().any(|t| t.is_eligible(Eligible::NotDraining))
    }

    /// A healthy target of `targets`, else one that is not draining.
    fn fail_open<'a>(
        &self,
        targets: &'a [Arc<Target>],
        ctx: &PickContext,
    ) -> Option<&'a Arc<Target>> {
        self.balancer
            .pick(targets, Eligible::Healthy, ctx)
            .or_else(|| self.balancer.pick(targets, Eligible::NotDraining, ctx))
    }

    /// What `choose` picks from the members, loaded again while it finds none and the list has
    /// changed meanwhile.
    fn pick_in(
        &self,
        choose: impl Fn(&[Arc<Target>]) -> Option<Arc<Target>>,
    ) -> Option<Arc<Target>> {
        let mut members = self.state.members.load();
        loop {
            if let Some(t) = choose(&members) {
                return Some(t);
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

    fn regs(ports: &[u16]) -> Vec<Registration> {
        ports.iter().map(|&p| addr(p).into()).collect()
    }

    /// A registration of `port` for the ECS task `arn`.
    fn task(port: u16, arn: &str) -> Registration {
        Registration {
            addr: addr(port),
            task_arn: Some(arn.into()),
        }
    }

    fn add(g: &GroupState, ports: &[u16], origin: Origin) -> Vec<Arc<Target>> {
        g.apply(origin, Update::Add(regs(ports)), Duration::ZERO)
            .unwrap()
            .added
    }

    fn reset(g: &GroupState, origin: Origin, regs: Vec<Registration>) -> Applied {
        g.apply(origin, Update::Reset(regs), Duration::from_secs(60))
            .unwrap()
    }

    /// The one member at `port` that is not draining.
    fn live(g: &GroupState, port: u16) -> Arc<Target> {
        let m = g.members();
        let mut at = m
            .iter()
            .filter(|t| t.addr == addr(port) && t.state() != State::Draining);
        let t = at
            .next()
            .unwrap_or_else(|| panic!("no live target at {port}"));
        assert!(at.next().is_none(), "two live targets at {port}");
        t.clone()
    }

    fn sources(origins: &[Origin]) -> Sources {
        origins.iter().copied().collect()
    }

    #[tokio::test(start_paused = true)]
    async fn deregistered_targets_drain_then_go() {
        let reg = Registry::default();
        let g = reg.group("web");
        add(&g, &[1, 2], Origin::Config);
        let t1 = g.members()[0].clone();
        let applied = g
            .apply(
                Origin::Api,
                Update::Remove(vec![addr(1)]),
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(applied.draining.len(), 1);
        assert_eq!(t1.state(), State::Draining);
        assert_eq!(t1.sources(), Origin::Config.into(), "kept for the record");
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
        g.apply(Origin::Config, Update::Reset(regs(&[1, 2])), Duration::ZERO)
            .unwrap();
        assert_eq!(live(&g, 1).state(), State::Unhealthy, "kept, not reset");
        assert_eq!(live(&g, 2).state(), State::Initial);
        assert_eq!(live(&g, 9).sources(), Origin::Api.into());
        g.apply(Origin::Config, Update::Reset(vec![]), Duration::ZERO)
            .unwrap();
        let ports: Vec<u16> = g.members().iter().map(|t| t.addr.port()).collect();
        assert_eq!(ports, [9]);
        assert!(Arc::ptr_eq(&reg.group("web"), &g));
    }

    #[test]
    fn sources_list_in_a_fixed_order() {
        let all = sources(&[Origin::Discovery, Origin::Config, Origin::Api]);
        assert_eq!(all.to_string(), "config+api+discovery");
        assert_eq!(
            all.iter().collect::<Vec<_>>(),
            [Origin::Config, Origin::Api, Origin::Discovery]
        );
        let two = sources(&[Origin::Api, Origin::Config]);
        assert_eq!(two.to_string(), "config+api");
        assert_eq!(format!("{two:?}"), "Sources(config+api)");
        assert_eq!(Sources::from(Origin::Discovery).to_string(), "discovery");
        assert!(two.contains(Origin::Api) && !two.contains(Origin::Discovery));
        assert_eq!(two.without(Origin::Api), Origin::Config.into());
        assert!(two.without(Origin::Api).without(Origin::Config).is_empty());
    }

    #[tokio::test]
    async fn an_address_registered_again_gains_a_source_not_a_target() {
        let reg = Registry::default();
        let g = reg.group("web");
        let t = add(&g, &[1], Origin::Config).remove(0);
        t.set_state(State::Healthy, None);
        let generation = *g.subscribe().borrow();
        assert!(add(&g, &[1], Origin::Api).is_empty(), "no new target");
        let applied = reset(&g, Origin::Discovery, vec![task(1, "task-a")]);
        assert!(applied.added.is_empty() && applied.draining.is_empty());
        assert_eq!(g.members().len(), 1);
        assert!(Arc::ptr_eq(&live(&g, 1), &t));
        assert_eq!(t.state(), State::Healthy, "its health is kept");
        assert_eq!(
            t.sources(),
            sources(&[Origin::Config, Origin::Api, Origin::Discovery])
        );
        assert_eq!(t.task_arn().as_deref(), Some("task-a"));
        assert_eq!(
            *g.subscribe().borrow(),
            generation,
            "the published list did not change"
        );
    }

    #[tokio::test]
    async fn a_target_drains_only_when_the_last_origin_lets_go() {
        let reg = Registry::default();
        let g = reg.group("web");
        add(&g, &[1], Origin::Config);
        add(&g, &[1], Origin::Api);
        reset(&g, Origin::Discovery, vec![task(1, "task-a")]);
        let t = live(&g, 1);

        // The file no longer lists it: the API and discovery still do.
        let applied = reset(&g, Origin::Config, vec![]);
        assert!(applied.draining.is_empty());
        assert_eq!(t.sources(), sources(&[Origin::Api, Origin::Discovery]));

        // Discovery lets go: its task goes with it.
        assert!(reset(&g, Origin::Discovery, vec![]).draining.is_empty());
        assert_eq!(t.sources(), Origin::Api.into());
        assert_eq!(t.task_arn(), None);
        assert_ne!(t.state(), State::Draining);

        // A reset of an origin that does not register it changes nothing.
        assert!(reset(&g, Origin::Config, vec![]).draining.is_empty());

        // The API's removal drains it.
        let applied = g
            .apply(
                Origin::Api,
                Update::Remove(vec![addr(1)]),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(applied.draining.len(), 1);
        assert_eq!(t.state(), State::Draining);

        // And the last one of a reset letting go drains too, keeping its sources for the record.
        reset(&g, Origin::Discovery, vec![task(2, "task-b")]);
        let d = live(&g, 2);
        let applied = reset(&g, Origin::Discovery, vec![]);
        assert!(Arc::ptr_eq(&applied.draining[0], &d));
        assert_eq!(d.state(), State::Draining);
        assert_eq!(d.sources(), Origin::Discovery.into());
        assert_eq!(d.task_arn().as_deref(), Some("task-b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_task_on_an_old_tasks_port_is_a_new_target_and_only_the_old_drains() {
        let reg = Registry::default();
        let g = reg.group("api");
        reset(
            &g,
            Origin::Discovery,
            vec![task(1, "old"), task(2, "other")],
        );
        let old = live(&g, 1);
        old.set_state(State::Healthy, None);
        let other = live(&g, 2);

        let applied = reset(
            &g,
            Origin::Discovery,
            vec![task(1, "new"), task(2, "other")],
        );
        assert_eq!(applied.added.len(), 1);
        assert_eq!(applied.draining.len(), 1);
        let new = live(&g, 1);
        assert!(Arc::ptr_eq(&applied.added[0], &new));
        assert!(Arc::ptr_eq(&applied.draining[0], &old));
        assert_eq!(old.state(), State::Draining);
        assert_eq!(old.task_arn().as_deref(), Some("old"));
        assert_eq!(new.state(), State::Initial, "checked afresh");
        assert_eq!(new.task_arn().as_deref(), Some("new"));
        assert_eq!(new.sources(), Origin::Discovery.into());
        assert_ne!(other.state(), State::Draining);
        assert_eq!(g.members().len(), 3);

        // The next refresh says the same: nothing changes, the new target is not drained.
        let applied = reset(
            &g,
            Origin::Discovery,
            vec![task(1, "new"), task(2, "other")],
        );
        assert!(applied.added.is_empty() && applied.draining.is_empty());
        assert_eq!(new.state(), State::Initial);

        // The old one's delay ends: it alone is dropped.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(reg.sweep(Instant::now()), [("api".into(), 1)]);
        assert!(old.closed().is_cancelled());
        assert!(!new.closed().is_cancelled());
        assert_eq!(g.members().len(), 2);
        assert!(Arc::ptr_eq(&live(&g, 1), &new));
    }

    #[tokio::test]
    async fn a_new_task_replacing_the_only_target_is_published_before_the_old_drains() {
        let reg = Registry::default();
        let g = reg.group("api");
        reset(&g, Origin::Discovery, vec![task(1, "old")]);
        let old = live(&g, 1);
        let before = *g.subscribe().borrow();
        reset(&g, Origin::Discovery, vec![task(1, "new")]);
        // Two publications: the list with the new target (while the old still serves), then the
        // old one's drain.
        assert_eq!(*g.subscribe().borrow(), before + 2);
        assert_eq!(old.state(), State::Draining);
        assert_eq!(live(&g, 1).task_arn().as_deref(), Some("new"));
    }

    #[tokio::test]
    async fn a_new_task_at_an_address_another_origin_registers_keeps_the_target() {
        let reg = Registry::default();
        let g = reg.group("api");
        add(&g, &[1], Origin::Config);
        reset(&g, Origin::Discovery, vec![task(1, "old")]);
        let t = live(&g, 1);
        t.set_state(State::Healthy, None);
        let applied = reset(&g, Origin::Discovery, vec![task(1, "new")]);
        assert!(applied.added.is_empty() && applied.draining.is_empty());
        assert!(Arc::ptr_eq(&live(&g, 1), &t));
        assert_eq!(t.state(), State::Healthy);
        assert_eq!(t.task_arn().as_deref(), Some("new"));
        assert_eq!(t.sources(), sources(&[Origin::Config, Origin::Discovery]));
    }

    #[tokio::test]
    async fn a_registration_at_a_draining_targets_address_is_a_new_target() {
        let reg = Registry::default();
        let g = reg.group("api");
        reset(&g, Origin::Discovery, vec![task(1, "old")]);
        let old = live(&g, 1);
        reset(&g, Origin::Discovery, vec![]);
        assert_eq!(old.state(), State::Draining);

        let applied = reset(&g, Origin::Discovery, vec![task(1, "new")]);
        assert_eq!(applied.added.len(), 1);
        assert!(applied.draining.is_empty());
        let new = live(&g, 1);
        assert!(!Arc::ptr_eq(&new, &old));
        assert_eq!(new.task_arn().as_deref(), Some("new"));
        assert_eq!(old.task_arn().as_deref(), Some("old"));

        // The same for the API's RegisterTargets after a DeregisterTargets.
        add(&g, &[2], Origin::Config);
        let first = live(&g, 2);
        g.apply(
            Origin::Api,
            Update::Remove(vec![addr(2)]),
            Duration::from_secs(60),
        )
        .unwrap();
        let again = add(&g, &[2], Origin::Api).remove(0);
        assert!(!Arc::ptr_eq(&first, &again));
        assert_eq!(first.state(), State::Draining);
        assert_eq!(again.sources(), Origin::Api.into());
        assert!(Arc::ptr_eq(&live(&g, 2), &again));
    }

    #[tokio::test]
    async fn removing_a_discovered_target_is_refused_and_changes_nothing() {
        let reg = Registry::default();
        let g = reg.group("api");
        add(&g, &[1, 3], Origin::Config);
        let arn = "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d";
        reset(&g, Origin::Discovery, vec![task(2, arn), task(3, "task-3")]);
        let before = g.members().clone();

        let refused = g
            .apply(
                Origin::Api,
                Update::Remove(vec![addr(1), addr(2)]),
                Duration::ZERO,
            )
            .unwrap_err();
        assert_eq!(
            refused,
            MembershipError::Discovered {
                group: "api".into(),
                targets: vec![task(2, arn)],
            }
        );
        assert_eq!(
            refused.to_string(),
            format!("target 127.0.0.1:2 in target group \"api\" was registered by ECS discovery (task {arn}); stop the task or change the discovery block instead")
        );
        assert!(Arc::ptr_eq(&g.members(), &before), "nothing published");
        assert!(g.members().iter().all(|t| t.state() == State::Initial));

        // Registered by the file too: still discovery's.
        let refused = g
            .apply(
                Origin::Api,
                Update::Remove(vec![addr(2), addr(3)]),
                Duration::ZERO,
            )
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!("targets 127.0.0.1:2 (task {arn}), 127.0.0.1:3 (task task-3) in target group \"api\" were registered by ECS discovery; stop the tasks or change the discovery block instead")
        );
        assert!(g.members().iter().all(|t| t.state() == State::Initial));

        // Discovery itself may remove what it registered; the file's own target is free.
        let applied = g
            .apply(
                Origin::Discovery,
                Update::Remove(vec![addr(2)]),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(applied.draining.len(), 1);
        let applied = g
            .apply(
                Origin::Api,
                Update::Remove(vec![addr(1)]),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(applied.draining.len(), 1);
    }

    #[test]
    fn a_refusal_without_a_task_names_discovery_alone() {
        let one = MembershipError::Discovered {
            group: "web".into(),
            targets: vec![addr(7).into()],
        };
        assert_eq!(
            one.to_string(),
            "target 127.0.0.1:7 in target group \"web\" was registered by discovery; change the discovery block instead"
        );
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
        reset(&old, Origin::Discovery, vec![task(2, "task-2")]);
        reg.group("kept");
        let retired = reg.retire_others(&["kept"], |_| Duration::from_secs(5));
        assert_eq!(retired, [Arc::<str>::from("old")]);
        assert!(reg.get("old").is_none());
        assert!(
            old.members().iter().all(|t| t.state() == State::Draining),
            "discovered targets too"
        );
        assert!(reg.sweep(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(reg.sweep(Instant::now()), [("old".into(), 2)]);
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

    #[tokio::test(start_paused = true)]
    async fn a_task_replacing_the_only_healthy_one_is_spared_slow_start() {
        let ramp = Duration::from_secs(100);
        let reg = Registry::default();
        let g = reg.group("api");
        reset(&g, Origin::Discovery, vec![task(1, "old")]);
        live(&g, 1).set_state(State::Healthy, None);
        reset(&g, Origin::Discovery, vec![task(1, "new")]);
        let new = live(&g, 1);
        new.set_state(State::Healthy, None);
        assert_eq!(new.slow_start_weight(ramp, Instant::now()), 1.0);
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
            stickiness: None,
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
        tg.state
            .apply(
                Origin::Api,
                Update::Remove(vec![addr(3)]),
                Duration::from_secs(60),
            )
            .unwrap();
        for _ in 0..6 {
            assert!(Arc::ptr_eq(&tg.pick_another(failed).unwrap(), b));
        }
        tg.state
            .apply(
                Origin::Api,
                Update::Remove(vec![addr(2)]),
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(
            tg.pick_another(failed).is_none(),
            "only the failed one is left"
        );
        assert!(Arc::ptr_eq(&tg.pick().unwrap(), failed));
    }

    #[tokio::test]
    async fn a_sticky_target_is_taken_only_when_a_pick_could_take_it() {
        let reg = Registry::default();
        let tg = group_of(&reg, "web");
        let t = add(&tg.state, &[1, 2], Origin::Config);
        let sticky = |port| tg.pick_sticky(addr(port)).map(|t| t.addr.port());

        // Nobody healthy (all `initial`): fail-open takes any that is not draining.
        assert_eq!(sticky(1), Some(1));
        assert!(tg.can_serve());
        // One healthy: only healthy targets stick.
        t[1].set_state(State::Healthy, None);
        assert_eq!(sticky(1), None);
        assert_eq!(sticky(2), Some(2));
        t[0].set_state(State::Healthy, None);
        assert_eq!(sticky(1), Some(1));
        t[0].set_state(State::Unhealthy, None);
        assert_eq!(sticky(1), None, "unhealthy beside a healthy one");
        assert_eq!(sticky(3), None, "not a member");

        // Draining: never, even when it is the only one left.
        tg.state
            .apply(
                Origin::Api,
                Update::Remove(vec![addr(2)]),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(sticky(2), None);
        assert_eq!(sticky(1), Some(1), "fail-open again: none healthy");
        tg.state
            .apply(
                Origin::Api,
                Update::Remove(vec![addr(1)]),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(sticky(1), None);
        assert!(!tg.can_serve(), "every member draining");
    }
}
