//! The health decision for one target, as a pure counter of consecutive results: no clock, no I/O,
//! so every ALB rule it encodes is tested on its own.
//!
//! - `initial` → `healthy` after one passing check (ALB does not wait for the threshold for a new
//!   target);
//! - `unhealthy` → `healthy` after `healthy_threshold` consecutive passes;
//! - `healthy` or `initial` → `unhealthy` after `unhealthy_threshold` consecutive failures;
//! - a connection failure seen by the data plane (the target's passive-failure count moved) has
//!   already made the target unhealthy, and restarts the run of passes from zero.

use crate::targets::State;

/// What one probe said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Pass,
    Fail,
}

/// Consecutive results for one target, owned by that target's checker task.
#[derive(Debug, Clone)]
pub struct Counter {
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    /// Consecutive passes (zero after any failure, active or passive).
    passes: u32,
    /// Consecutive failures (zero after any pass).
    failures: u32,
    /// The target's passive-failure count when last recorded.
    passive_seen: u32,
}

impl Counter {
    /// A counter with no results yet; `passive_failures` is the target's count now, so failures
    /// from before the checker started do not count against it.
    pub fn new(healthy_threshold: u32, unhealthy_threshold: u32, passive_failures: u32) -> Self {
        Counter {
            // A zero threshold would never be reached by `>=` after a reset; one is the floor.
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
            passes: 0,
            failures: 0,
            passive_seen: passive_failures,
        }
    }

    /// Forgets the runs (the target was not checked for a while, e.g. while unused).
    pub fn reset(&mut self, passive_failures: u32) {
        self.passes = 0;
        self.failures = 0;
        self.passive_seen = passive_failures;
    }

    /// Counts one probe of a target that is now in `current`, with its passive-failure count read
    /// after the probe. Returns the state the target moves to, when it moves.
    pub fn record(&mut self, current: State, check: Check, passive_failures: u32) -> Option<State> {
        if passive_failures != self.passive_seen {
            self.passive_seen = passive_failures;
            self.passes = 0;
        }
        match check {
            Check::Pass => {
                self.failures = 0;
                self.passes = self.passes.saturating_add(1);
                match current {
                    State::Initial => Some(State::Healthy),
                    State::Unhealthy if self.passes >= self.healthy_threshold => {
                        Some(State::Healthy)
                    }
                    _ => None,
                }
            }
            Check::Fail => {
                self.passes = 0;
                self.failures = self.failures.saturating_add(1);
                match current {
                    State::Initial | State::Healthy
                        if self.failures >= self.unhealthy_threshold =>
                    {
                        Some(State::Unhealthy)
                    }
                    _ => None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Check::{Fail, Pass};
    use State::{Draining, Healthy, Initial, Unhealthy, Unused};

    /// Feeds `checks` to a counter, applying each move to `state` as the checker task does; returns
    /// the state after each check.
    fn run(counter: &mut Counter, mut state: State, checks: &[(Check, u32)]) -> Vec<State> {
        checks
            .iter()
            .map(|&(c, passive)| {
                if let Some(next) = counter.record(state, c, passive) {
                    state = next;
                }
                state
            })
            .collect()
    }

    #[test]
    fn one_pass_makes_a_new_target_healthy() {
        let mut c = Counter::new(5, 2, 0);
        assert_eq!(c.record(Initial, Pass, 0), Some(Healthy));
    }

    #[test]
    fn a_new_target_that_fails_goes_unhealthy_at_the_threshold() {
        let mut c = Counter::new(2, 3, 0);
        assert_eq!(
            run(&mut c, Initial, &[(Fail, 0), (Fail, 0), (Fail, 0)]),
            [Initial, Initial, Unhealthy]
        );
    }

    #[test]
    fn thresholds_count_consecutive_results_only() {
        let mut c = Counter::new(3, 2, 0);
        let states = run(
            &mut c,
            Healthy,
            &[
                (Fail, 0),
                (Pass, 0), // breaks the run of failures
                (Fail, 0),
                (Fail, 0), // second in a row: unhealthy
                (Pass, 0),
                (Pass, 0),
                (Fail, 0), // breaks the run of passes
                (Pass, 0),
                (Pass, 0),
                (Pass, 0), // third in a row: healthy
            ],
        );
        assert_eq!(
            states,
            [
                Healthy, Healthy, Healthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy,
                Unhealthy, Healthy
            ]
        );
    }

    #[test]
    fn a_passive_failure_restarts_the_run_of_passes() {
        let mut c = Counter::new(2, 2, 7);
        // Unhealthy; one pass, then the data plane sees a connection fail (count 7 -> 8) and marks
        // the target unhealthy again: the pass before it no longer counts.
        assert_eq!(c.record(Unhealthy, Pass, 7), None);
        assert_eq!(c.record(Unhealthy, Pass, 8), None);
        assert_eq!(c.record(Unhealthy, Pass, 8), Some(Healthy));
        // A count that did not move changes nothing.
        let mut c = Counter::new(2, 2, 3);
        assert_eq!(c.record(Unhealthy, Pass, 3), None);
        assert_eq!(c.record(Unhealthy, Pass, 3), Some(Healthy));
    }

    #[test]
    fn failures_from_before_the_checker_started_do_not_count() {
        let mut c = Counter::new(2, 2, 4);
        assert_eq!(c.record(Unhealthy, Pass, 4), None);
        assert_eq!(c.record(Unhealthy, Pass, 4), Some(Healthy));
    }

    #[test]
    fn draining_and_unused_targets_never_move() {
        let mut c = Counter::new(2, 2, 0);
        for _ in 0..5 {
            assert_eq!(c.record(Draining, Fail, 0), None);
            assert_eq!(c.record(Unused, Fail, 0), None);
        }
        let mut c = Counter::new(2, 2, 0);
        for _ in 0..5 {
            assert_eq!(c.record(Draining, Pass, 0), None);
            assert_eq!(c.record(Unused, Pass, 0), None);
        }
    }

    #[test]
    fn reset_forgets_the_runs() {
        let mut c = Counter::new(2, 2, 0);
        assert_eq!(c.record(Healthy, Fail, 0), None);
        c.reset(5);
        assert_eq!(
            c.record(Healthy, Fail, 5),
            None,
            "one failure after the reset"
        );
        assert_eq!(c.record(Healthy, Fail, 5), Some(Unhealthy));
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut c = Counter::new(0, 0, 0);
        assert_eq!(c.record(Healthy, Fail, 0), Some(Unhealthy));
        assert_eq!(c.record(Unhealthy, Pass, 0), Some(Healthy));
    }
}
