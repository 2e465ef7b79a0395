//! Target selection: one small trait and ALB's three algorithms, allocation-free. Every algorithm
//! considers only the targets a pick allows ([`Eligible`]): the caller asks for healthy targets
//! first and falls back to every target that is not draining (ALB's fail-open).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::UnknownValue;
use crate::targets::{Eligible, Target};

/// ALB's load-balancing algorithms, as a target group's `algorithm` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastOutstandingRequests,
    WeightedRandom,
}

impl std::str::FromStr for Algorithm {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round_robin" => Ok(Algorithm::RoundRobin),
            "least_outstanding_requests" => Ok(Algorithm::LeastOutstandingRequests),
            "weighted_random" => Ok(Algorithm::WeightedRandom),
            other => Err(UnknownValue::new(
                "algorithm",
                other,
                "\"round_robin\", \"least_outstanding_requests\" or \"weighted_random\"",
            )),
        }
    }
}

/// What a pick needs besides the targets.
#[derive(Debug, Clone, Copy)]
pub struct PickContext {
    /// The group's slow-start ramp; zero = off.
    pub slow_start: Duration,
    pub now: Instant,
}

/// Picks one target among those eligible for a request.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    fn pick<'a>(
        &self,
        targets: &'a [Arc<Target>],
        eligible: Eligible,
        ctx: &PickContext,
    ) -> Option<&'a Arc<Target>>;
}

/// The balancer for a configured algorithm.
pub fn for_algorithm(algorithm: Algorithm) -> Box<dyn Balancer> {
    match algorithm {
        Algorithm::RoundRobin => Box::<RoundRobin>::default(),
        Algorithm::LeastOutstandingRequests => Box::<LeastOutstanding>::default(),
        Algorithm::WeightedRandom => Box::<WeightedRandom>::default(),
    }
}

/// Each eligible target in turn. A target in slow start is taken with a probability equal to its
/// weight and otherwise passed over, so its share ramps up with the weight.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick<'a>(
        &self,
        targets: &'a [Arc<Target>],
        eligible: Eligible,
        ctx: &PickContext,
    ) -> Option<&'a Arc<Target>> {
        let n = targets.len();
        if n == 0 {
            return None;
        }
        // Relaxed is enough: fairness, not an exact order across workers, is what matters.
        let start = self.next.load(Ordering::Relaxed) % n;
        let mut passed_over = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let t = &targets[idx];
            if !t.is_eligible(eligible) {
                continue;
            }
            let w = t.slow_start_weight(ctx.slow_start, ctx.now);
            if w >= 1.0 || fastrand::f64() < w {
                // The next pick starts after this one, so skipped targets do not give their turn
                // to the same neighbour every time.
                self.next.store(idx + 1, Ordering::Relaxed);
                return Some(t);
            }
            passed_over.get_or_insert((idx, t));
        }
        let (idx, t) = passed_over?;
        self.next.store(idx + 1, Ordering::Relaxed);
        Some(t)
    }
}

/// Groups up to this size are scanned whole; larger ones use the power of two random choices.
const FULL_SCAN_MAX: usize = 16;

/// The target with the fewest requests in flight; ties are broken in turn.
#[derive(Debug, Default)]
pub struct LeastOutstanding {
    next: AtomicUsize,
}

impl Balancer for LeastOutstanding {
    fn pick<'a>(
        &self,
        targets: &'a [Arc<Target>],
        eligible: Eligible,
        _ctx: &PickContext,
    ) -> Option<&'a Arc<Target>> {
        let n = targets.len();
        if n == 0 {
            return None;
        }
        if n <= FULL_SCAN_MAX {
            let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
            let mut best: Option<&Arc<Target>> = None;
            for i in 0..n {
                let t = &targets[(start + i) % n];
                if t.is_eligible(eligible) && best.is_none_or(|b| t.outstanding() < b.outstanding())
                {
                    best = Some(t);
                }
            }
            return best;
        }
        let a = random_eligible(targets, eligible, None)?;
        let Some(b) = random_eligible(targets, eligible, Some(a)) else {
            return Some(&targets[a]);
        };
        let (ta, tb) = (&targets[a], &targets[b]);
        Some(if tb.outstanding() < ta.outstanding() {
            tb
        } else {
            ta
        })
    }
}

/// A random eligible index other than `not`: a few random probes, then a scan from a random
/// start, so it finds one whenever one exists.
fn random_eligible(
    targets: &[Arc<Target>],
    eligible: Eligible,
    not: Option<usize>,
) -> Option<usize> {
    let n = targets.len();
    let ok = |i: usize| Some(i) != not && targets[i].is_eligible(eligible);
    for _ in 0..4 {
        let i = fastrand::usize(..n);
        if ok(i) {
            return Some(i);
        }
    }
    let start = fastrand::usize(..n);
    (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
}

/// A random target, each with a weight of 1 (less during slow start).
///
/// Picks by rejection sampling, O(1) expected per pick whatever the group's size: a uniformly
/// random target is taken if eligible, with a probability of its weight (every weight is at most
/// 1), and otherwise another is drawn. After [`REJECTION_TRIES`] draws without one (few targets
/// eligible, or most of them ramping up) it falls back to the exact weighted scan. The choice
/// follows the weights exactly either way: each draw accepts target `i` with probability
/// `w_i / n`, so whichever draw accepts, and the scan, choose `i` with probability `w_i / Σw`.
#[derive(Debug, Default)]
pub struct WeightedRandom;

/// Draws before [`WeightedRandom`] falls back to the exact scan. With every target eligible and
/// weights of at least 0.1 (the floor of a slow-start ramp) the fallback runs once in about
/// 0.9^64 ≈ 1/850 picks.
const REJECTION_TRIES: usize = 64;

impl Balancer for WeightedRandom {
    fn pick<'a>(
        &self,
        targets: &'a [Arc<Target>],
        eligible: Eligible,
        ctx: &PickContext,
    ) -> Option<&'a Arc<Target>> {
        let n = targets.len();
        if n == 0 {
            return None;
        }
        for _ in 0..REJECTION_TRIES {
            let t = &targets[fastrand::usize(..n)];
            if !t.is_eligible(eligible) {
                continue;
            }
            let w = t.slow_start_weight(ctx.slow_start, ctx.now);
            if w >= 1.0 || fastrand::f64() < w {
                return Some(t);
            }
        }
        weighted_scan(targets, eligible, ctx)
    }
}

/// The exact weighted choice: two passes over the targets, one to sum the eligible weights and one
/// to find where a random point of that sum falls.
fn weighted_scan<'a>(
    targets: &'a [Arc<Target>],
    eligible: Eligible,
    ctx: &PickContext,
) -> Option<&'a Arc<Target>> {
    let weight = |t: &Target| t.slow_start_weight(ctx.slow_start, ctx.now);
    let total: f64 = targets
        .iter()
        .filter(|t| t.is_eligible(eligible))
        .map(|t| weight(t))
        .sum();
    if total <= 0.0 {
        return None;
    }
    let mut point = fastrand::f64() * total;
    let mut last = None;
    for t in targets.iter().filter(|t| t.is_eligible(eligible)) {
        point -= weight(t);
        if point < 0.0 {
            return Some(t);
        }
        last = Some(t);
    }
    // Rounding can leave the point a hair above zero after the last target.
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::{Origin, State};

    fn targets(n: u16) -> Vec<Arc<Target>> {
        (1..=n)
            .map(|p| {
                let t = Arc::new(Target::new(([127, 0, 0, 1], p).into(), Origin::Config));
                t.set_state(State::Healthy, None);
                t
            })
            .collect()
    }

    fn ctx() -> PickContext {
        PickContext {
            slow_start: Duration::ZERO,
            now: Instant::now(),
        }
    }

    fn port(t: Option<&Arc<Target>>) -> u16 {
        t.unwrap().addr.port()
    }

    #[tokio::test]
    async fn round_robin_visits_each_eligible_target_in_turn() {
        let ts = targets(3);
        let rr = RoundRobin::default();
        let ports: Vec<u16> = (0..6)
            .map(|_| port(rr.pick(&ts, Eligible::Healthy, &ctx())))
            .collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3]);
        ts[0].set_state(State::Unhealthy, None);
        let ports: Vec<u16> = (0..4)
            .map(|_| port(rr.pick(&ts, Eligible::Healthy, &ctx())))
            .collect();
        assert_eq!(ports, [2, 3, 2, 3]);
        assert!(rr.pick(&[], Eligible::Healthy, &ctx()).is_none());
    }

    #[tokio::test]
    async fn draining_targets_are_never_picked_even_failing_open() {
        let ts = targets(2);
        ts[0].set_state(State::Unhealthy, None);
        ts[1].start_draining();
        for b in [
            for_algorithm(Algorithm::RoundRobin),
            for_algorithm(Algorithm::LeastOutstandingRequests),
            for_algorithm(Algorithm::WeightedRandom),
        ] {
            assert!(b.pick(&ts, Eligible::Healthy, &ctx()).is_none());
            for _ in 0..10 {
                assert_eq!(port(b.pick(&ts, Eligible::NotDraining, &ctx())), 1);
            }
        }
    }

    #[tokio::test]
    async fn least_outstanding_avoids_busy_targets_and_rotates_ties() {
        let ts = targets(3);
        let lor = LeastOutstanding::default();
        let _busy = ts[0].begin();
        let ports: Vec<u16> = (0..4)
            .map(|_| port(lor.pick(&ts, Eligible::Healthy, &ctx())))
            .collect();
        assert!(!ports.contains(&1), "{ports:?}");
        assert!(ports.contains(&2) && ports.contains(&3), "{ports:?}");
    }

    #[tokio::test]
    async fn least_outstanding_two_choices_on_large_groups() {
        let ts = targets(100);
        let lor = LeastOutstanding::default();
        let _busy: Vec<_> = ts[..99].iter().map(|t| t.begin()).collect();
        // Two random choices find the idle target only sometimes, but never pick a busier one
        // than the better of the two.
        let hits = (0..2000)
            .filter(|_| port(lor.pick(&ts, Eligible::Healthy, &ctx())) == 100)
            .count();
        assert!(hits > 10, "{hits}");
    }

    #[tokio::test(start_paused = true)]
    async fn weighted_random_spreads_and_slow_start_lowers_the_share() {
        let ts = targets(2);
        let wr = WeightedRandom;
        let mut counts = [0usize; 2];
        for _ in 0..4000 {
            counts[port(wr.pick(&ts, Eligible::Healthy, &ctx())) as usize - 1] += 1;
        }
        assert!(counts.iter().all(|&c| c > 1500), "{counts:?}");
        // Target 1 has been healthy for longer than the ramp; target 2 just became healthy: it
        // gets about 10% of its full share.
        tokio::time::advance(Duration::from_secs(601)).await;
        ts[1].set_state(State::Unhealthy, None);
        ts[1].set_state(State::Healthy, None);
        let slow = PickContext {
            slow_start: Duration::from_secs(600),
            now: Instant::now(),
        };
        let new = (0..4000)
            .filter(|_| port(wr.pick(&ts, Eligible::Healthy, &slow)) == 2)
            .count();
        assert!(new < 800, "{new}");
        let rr = RoundRobin::default();
        let new = (0..4000)
            .filter(|_| port(rr.pick(&ts, Eligible::Healthy, &slow)) == 2)
            .count();
        assert!(new < 800, "{new}");
    }

    #[tokio::test(start_paused = true)]
    async fn weighted_random_shares_follow_the_weights() {
        let ramp = Duration::from_secs(100);
        let ts = targets(5);
        // Past the ramp: every target at full weight.
        tokio::time::advance(Duration::from_secs(200)).await;
        // Target 2 turned healthy again half-way through the ramp ago: 0.1 + 0.9 * 0.5 = 0.55.
        ts[1].set_state(State::Unhealthy, None);
        ts[1].set_state(State::Healthy, None);
        tokio::time::advance(Duration::from_secs(50)).await;
        // Target 3 just turned healthy again: 0.1. Target 4 is unhealthy, target 5 draining.
        ts[2].set_state(State::Unhealthy, None);
        ts[2].set_state(State::Healthy, None);
        ts[3].set_state(State::Unhealthy, None);
        ts[4].start_draining();
        let slow = PickContext {
            slow_start: ramp,
            now: Instant::now(),
        };
        let weights = [1.0, 0.55, 0.1, 0.0, 0.0];
        for (t, w) in ts.iter().zip(weights).take(3) {
            assert!((t.slow_start_weight(ramp, slow.now) - w).abs() < 1e-9);
        }
        let total: f64 = weights.iter().sum();
        let wr = WeightedRandom;
        let picks = 40_000;
        let mut counts = [0usize; 5];
        for _ in 0..picks {
            counts[port(wr.pick(&ts, Eligible::Healthy, &slow)) as usize - 1] += 1;
        }
        for (i, w) in weights.iter().enumerate() {
            let share = counts[i] as f64 / picks as f64;
            // Standard deviations are at most 0.0025; 0.015 is six of them.
            assert!(
                (share - w / total).abs() < 0.015,
                "target {}: share {share}, expected {}: {counts:?}",
                i + 1,
                w / total
            );
        }
        assert_eq!(counts[3] + counts[4], 0, "{counts:?}");

        // Fail-open: the unhealthy target joins at full weight (slow start is for healthy targets
        // only), the draining one stays out.
        ts[0].set_state(State::Unhealthy, None);
        ts[1].set_state(State::Unhealthy, None);
        ts[2].set_state(State::Unhealthy, None);
        assert!(wr.pick(&ts, Eligible::Healthy, &slow).is_none());
        let mut counts = [0usize; 5];
        for _ in 0..8000 {
            counts[port(wr.pick(&ts, Eligible::NotDraining, &slow)) as usize - 1] += 1;
        }
        assert_eq!(counts[4], 0, "{counts:?}");
        assert!(counts[..4].iter().all(|&c| c > 1600), "{counts:?}");
    }

    #[tokio::test]
    async fn weighted_random_finds_the_one_eligible_target_of_a_large_group() {
        let ts = targets(1000);
        for t in &ts[1..] {
            t.set_state(State::Unhealthy, None);
        }
        ts[999].start_draining();
        let wr = WeightedRandom;
        // Random draws almost never land on it; the exact scan after them always does.
        for _ in 0..100 {
            assert_eq!(port(wr.pick(&ts, Eligible::Healthy, &ctx())), 1);
            let p = port(wr.pick(&ts, Eligible::NotDraining, &ctx()));
            assert_ne!(p, 1000, "a draining target is never picked");
        }
        ts[0].start_draining();
        assert!(wr.pick(&ts, Eligible::Healthy, &ctx()).is_none());
    }
}
