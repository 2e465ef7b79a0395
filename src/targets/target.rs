//! One target and its run-time state: health (as ALB names it), in-flight requests, slow-start
//! clock and draining. Every field the data plane reads is atomic.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Authority;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::upstream::pool::Pool;

/// ALB's target states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Registered, first health check not passed yet.
    Initial = 0,
    Healthy = 1,
    Unhealthy = 2,
    /// Deregistered: no new requests; in-flight ones may finish until the delay passes.
    Draining = 3,
    /// In a group that no listener forwards to: not health-checked, not used.
    Unused = 4,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Initial,
            1 => State::Healthy,
            2 => State::Unhealthy,
            3 => State::Draining,
            _ => State::Unused,
        }
    }

    /// The name ALB's DescribeTargetHealth uses.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initial => "initial",
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
            State::Draining => "draining",
            State::Unused => "unused",
        }
    }
}

/// A source of membership. A target stays registered while any source registers it, so a reload
/// (which speaks for `Config`) never undoes what the API or discovery registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Config,
    Api,
    Discovery,
}

impl Origin {
    /// Every origin, in the order [`Sources`] lists them.
    pub const ALL: [Origin; 3] = [Origin::Config, Origin::Api, Origin::Discovery];

    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
            Origin::Discovery => "discovery",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The set of origins that registered a target. Listed and shown in a fixed order (config, api,
/// discovery), so `/targets` reads the same whichever source came first.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Sources(u8);

impl Sources {
    pub fn contains(self, origin: Origin) -> bool {
        self.0 & origin.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn with(self, origin: Origin) -> Sources {
        Sources(self.0 | origin.bit())
    }

    pub fn without(self, origin: Origin) -> Sources {
        Sources(self.0 & !origin.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Origin> {
        Origin::ALL.into_iter().filter(move |o| self.contains(*o))
    }
}

impl From<Origin> for Sources {
    fn from(origin: Origin) -> Sources {
        Sources(origin.bit())
    }
}

impl FromIterator<Origin> for Sources {
    fn from_iter<I: IntoIterator<Item = Origin>>(iter: I) -> Sources {
        iter.into_iter().fold(Sources::default(), Sources::with)
    }
}

/// The origins joined with `+`: `config+api`.
impl fmt::Display for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, o) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            f.write_str(o.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sources({self})")
    }
}

/// Who registers a target, and the task behind it. Membership bookkeeping of the control side:
/// the data plane never reads it.
#[derive(Debug, Default)]
struct Registered {
    sources: Sources,
    /// The ECS task discovery registered the address for; cleared when discovery lets go.
    task_arn: Option<Arc<str>>,
}

/// ALB's reason code for a state, with a human description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// e.g. `Target.Timeout`, `Target.ResponseCodeMismatch`, `Elb.InitialHealthChecking`.
    pub code: &'static str,
    pub description: String,
}

/// Which targets a pick may choose from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eligible {
    Healthy,
    /// ALB's fail-open: when no target is healthy, every target that is not draining.
    NotDraining,
}

/// A process-wide clock origin, so instants fit in an atomic as milliseconds.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `healthy_since_ms` of a target that became healthy without a slow-start ramp.
const NO_RAMP: u64 = u64::MAX;

fn millis(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_millis() as u64
}

#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `ip:port`, built once because every forwarded request's URI needs it.
    pub authority: Authority,
    /// Behind a lock, not atomics: only membership changes and `/targets` read it.
    registered: Mutex<Registered>,
    state: AtomicU8,
    /// Requests sent to this target whose response has not finished yet.
    outstanding: AtomicUsize,
    /// When the target last became healthy (ms after `epoch()`), for slow start; `NO_RAMP` when
    /// that turn to healthy was spared slow start.
    healthy_since_ms: AtomicU64,
    /// The next turn to healthy starts at full weight (see [`Target::skip_first_slow_start`]).
    skip_ramp: AtomicBool,
    /// Bumped by the data plane when a connection to the target fails; the health checker
    /// restarts its count of consecutive successes when it sees it change.
    passive_failures: AtomicU32,
    reason: Mutex<Option<Reason>>,
    /// Cancelled when draining ends: requests and tunnels still open to the target are cut, and
    /// its pooled connections closed.
    closed: CancellationToken,
    /// Kept-alive connections to the target.
    pool: Pool,
}

impl Target {
    /// A target `origin` registered, in state `initial`.
    pub fn new(addr: SocketAddr, origin: Origin) -> Self {
        let closed = CancellationToken::new();
        Target {
            addr,
            authority: addr
                .to_string()
                .parse()
                .expect("a socket address is a valid authority"),
            registered: Mutex::new(Registered {
                sources: origin.into(),
                task_arn: None,
            }),
            state: AtomicU8::new(State::Initial as u8),
            outstanding: AtomicUsize::new(0),
            healthy_since_ms: AtomicU64::new(0),
            skip_ramp: AtomicBool::new(false),
            passive_failures: AtomicU32::new(0),
            reason: Mutex::new(Some(Reason {
                code: "Elb.RegistrationInProgress",
                description: "Target registration is in progress".into(),
            })),
            pool: Pool::new(addr, closed.clone()),
            closed,
        }
    }

    /// The origins that register the target. A draining target keeps those it had when it began
    /// to drain, so that `/targets` still says where it came from.
    pub fn sources(&self) -> Sources {
        self.registered.lock().expect("not poisoned").sources
    }

    /// The ECS task behind the target, while discovery registers it (and, once it drains, the
    /// task it drained for).
    pub fn task_arn(&self) -> Option<Arc<str>> {
        self.registered
            .lock()
            .expect("not poisoned")
            .task_arn
            .clone()
    }

    /// `origin` registers the target too; a task ARN given replaces the one recorded.
    pub(super) fn join(&self, origin: Origin, task_arn: Option<Arc<str>>) {
        let mut r = self.registered.lock().expect("not poisoned");
        r.sources = r.sources.with(origin);
        if task_arn.is_some() {
            r.task_arn = task_arn;
        }
    }

    /// `origin` no longer registers the target. Returns true when it was the last origin to: the
    /// target is to drain, and keeps its sources (and task) for the record.
    pub(super) fn release(&self, origin: Origin) -> bool {
        let mut r = self.registered.lock().expect("not poisoned");
        let rest = r.sources.without(origin);
        if rest.is_empty() {
            return true;
        }
        r.sources = rest;
        if origin == Origin::Discovery {
            r.task_arn = None;
        }
        false
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn reason(&self) -> Option<Reason> {
        self.reason.lock().expect("not poisoned").clone()
    }

    /// Moves the target to `state` unless it is draining (draining is final). Returns whether the
    /// state changed.
    pub fn set_state(&self, state: State, reason: Option<Reason>) -> bool {
        self.replace_state(state, reason).is_some()
    }

    /// As [`Target::set_state`]; returns the state it left when it changed.
    fn replace_state(&self, state: State, reason: Option<Reason>) -> Option<State> {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current == State::Draining as u8 && state != State::Draining {
                return None;
            }
            match self.state.compare_exchange(
                current,
                state as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        *self.reason.lock().expect("not poisoned") = reason;
        if current == state as u8 {
            return None;
        }
        if state == State::Healthy {
            self.start_healthy_clock();
        }
        Some(State::from_u8(current))
    }

    /// Starts the slow-start clock of a target that just became healthy.
    fn start_healthy_clock(&self) {
        let since = if self.skip_ramp.swap(false, Ordering::AcqRel) {
            NO_RAMP
        } else {
            millis(Instant::now())
        };
        self.healthy_since_ms.store(since, Ordering::Release);
    }

    /// Moves the target from `from` to `to` (or, with `from == to`, only updates the reason) if it
    /// is still in `from`. The health checker decides on a state it read before probing; a
    /// passive failure or a deregistration that happened meanwhile must win over that decision.
    /// Returns whether it was applied.
    pub fn transition(&self, from: State, to: State, reason: Option<Reason>) -> bool {
        if from == State::Draining && to != State::Draining {
            return false;
        }
        // Held across the exchange so that state and reason change together against other
        // transitions and `set_state`, whose reason write waits for it.
        let mut current_reason = self.reason.lock().expect("not poisoned");
        if self
            .state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        *current_reason = reason;
        if to == State::Healthy && from != State::Healthy {
            self.start_healthy_clock();
        }
        true
    }

    pub fn is_eligible(&self, e: Eligible) -> bool {
        let s = self.state.load(Ordering::Relaxed);
        match e {
            Eligible::Healthy => s == State::Healthy as u8,
            Eligible::NotDraining => s != State::Draining as u8 && s != State::Unused as u8,
        }
    }

    /// Share of traffic during slow start: rises linearly from 10% to 100% over `slow_start`
    /// after the target became healthy.
    pub fn slow_start_weight(&self, slow_start: Duration, now: Instant) -> f64 {
        if slow_start.is_zero() || self.state() != State::Healthy {
            return 1.0;
        }
        let since = self.healthy_since_ms.load(Ordering::Acquire);
        if since == NO_RAMP {
            return 1.0;
        }
        let elapsed = millis(now).saturating_sub(since) as f64;
        let ramp = elapsed / slow_start.as_millis() as f64;
        (0.1 + 0.9 * ramp).min(1.0)
    }

    /// Spares the target's first turn to healthy from slow start. ALB does this for targets
    /// registered into a group with no healthy target: there is nobody to carry the rest of their
    /// share, and a ramp shared by every target changes no one's share anyway. A later return to
    /// healthy ramps again, as in ALB.
    pub fn skip_first_slow_start(&self) {
        self.skip_ramp.store(true, Ordering::Release);
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a request as outstanding until the guard drops, whichever way the request ends.
    pub fn begin(self: &Arc<Self>) -> OutstandingGuard {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        OutstandingGuard(self.clone())
    }

    /// The data plane saw a connection to the target fail: take it out of rotation at once, until
    /// the active checker sees it pass again. Returns the state it left when this changed it
    /// (for the one log line a state change gets).
    pub fn mark_failed(&self, description: String) -> Option<State> {
        self.passive_failures.fetch_add(1, Ordering::AcqRel);
        self.replace_state(
            State::Unhealthy,
            Some(Reason {
                code: "Target.FailedHealthChecks",
                description,
            }),
        )
    }

    pub fn passive_failures(&self) -> u32 {
        self.passive_failures.load(Ordering::Acquire)
    }

    /// Starts draining; returns false when it already was.
    pub fn start_draining(&self) -> bool {
        self.set_state(
            State::Draining,
            Some(Reason {
                code: "Target.DeregistrationInProgress",
                description: "Target deregistration is in progress".into(),
            }),
        )
    }

    /// Ends draining: whatever is still open to the target is closed.
    pub fn close(&self) {
        self.closed.cancel();
    }

    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Decrements a target's outstanding count on drop.
#[derive(Debug)]
pub struct OutstandingGuard(Arc<Target>);

impl OutstandingGuard {
    pub fn target(&self) -> &Arc<Target> {
        &self.0
    }
}

impl Drop for OutstandingGuard {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::new(([127, 0, 0, 1], 1).into(), Origin::Config)
    }

    #[test]
    fn draining_is_final() {
        let t = target();
        assert_eq!(t.state(), State::Initial);
        assert!(t.set_state(State::Healthy, None));
        assert!(t.is_eligible(Eligible::Healthy));
        assert!(t.start_draining());
        assert!(!t.set_state(State::Healthy, None));
        assert_eq!(t.state(), State::Draining);
        assert!(!t.is_eligible(Eligible::NotDraining));
    }

    #[test]
    fn transition_applies_only_from_the_state_it_was_decided_on() {
        let t = target();
        assert!(t.transition(State::Initial, State::Healthy, None));
        // The data plane marked it failed after the checker read `Healthy`: the checker's
        // decision based on `Healthy` no longer applies.
        t.mark_failed("refused".into());
        assert!(!t.transition(State::Healthy, State::Healthy, None));
        assert_eq!(t.reason().unwrap().description, "refused");
        let why = Reason {
            code: "Target.Timeout",
            description: "Request timed out".into(),
        };
        assert!(t.transition(State::Unhealthy, State::Unhealthy, Some(why.clone())));
        assert_eq!(t.reason(), Some(why));
        t.start_draining();
        assert!(!t.transition(State::Draining, State::Healthy, None));
        assert_eq!(t.state(), State::Draining);
    }

    #[test]
    fn passive_failure_takes_the_target_out_at_once() {
        let t = target();
        t.set_state(State::Healthy, None);
        assert_eq!(
            t.mark_failed("connection refused".into()),
            Some(State::Healthy)
        );
        assert_eq!(t.mark_failed("connection refused".into()), None);
        assert_eq!(t.state(), State::Unhealthy);
        assert_eq!(t.passive_failures(), 2);
        assert!(!t.is_eligible(Eligible::Healthy));
        assert!(t.is_eligible(Eligible::NotDraining));
    }

    #[test]
    fn outstanding_returns_to_zero_on_drop() {
        let t = Arc::new(target());
        let a = t.begin();
        let b = t.begin();
        assert_eq!(t.outstanding(), 2);
        drop(a);
        drop(b);
        assert_eq!(t.outstanding(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_ramps_linearly() {
        let t = target();
        let ramp = Duration::from_secs(100);
        t.set_state(State::Healthy, None);
        let start = Instant::now();
        let w0 = t.slow_start_weight(ramp, start);
        let w50 = t.slow_start_weight(ramp, start + Duration::from_secs(50));
        let w200 = t.slow_start_weight(ramp, start + Duration::from_secs(200));
        assert!((0.09..0.12).contains(&w0), "{w0}");
        assert!((0.5..0.6).contains(&w50), "{w50}");
        assert_eq!(w200, 1.0);
        assert_eq!(t.slow_start_weight(Duration::ZERO, start), 1.0);
    }
}
