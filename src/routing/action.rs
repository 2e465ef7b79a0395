//! What a rule does with the request it matched: ALB's forward, fixed-response and redirect
//! actions, compiled once per load.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::RedirectTemplate;

/// A target group, by its index in the snapshot's groups: routing knows rules, not run-time
/// target state, and the data plane resolves the index in the snapshot the router came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupId(pub usize);

#[derive(Debug, Clone)]
pub enum Action {
    Forward(Forward),
    FixedResponse(FixedResponse),
    Redirect(Arc<RedirectTemplate>),
}

/// A forward to one target group, or (ALB's weighted forward) to several, each taking a share
/// of the requests in proportion to its weight.
#[derive(Debug, Clone)]
pub struct Forward {
    /// One or more groups; a forward to one group has it at weight 1.
    pub groups: Box<[WeightedGroup]>,
    /// ALB's target group stickiness: a client that was sent to a group keeps being sent to it
    /// for this long (`None`: off).
    pub stickiness: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightedGroup {
    pub group: GroupId,
    /// 0..=999; weight 0 sends the group no new clients.
    pub weight: u16,
}

impl Forward {
    /// A forward to one group.
    pub fn to(group: GroupId) -> Self {
        Forward {
            groups: Box::new([WeightedGroup { group, weight: 1 }]),
            stickiness: None,
        }
    }

    /// Whether any of its groups is `group`.
    pub fn names(&self, group: GroupId) -> bool {
        self.groups.iter().any(|g| g.group == group)
    }

    /// The group a new client goes to: one of weight above 0, at random in proportion to the
    /// weights, among those that `can_serve` (have a target that is not draining). Only when no
    /// weighted group can serve is one of them chosen anyway (by weight), so that the request
    /// meets its group's 503 and is counted under it. `None` when every weight is 0: ALB answers
    /// such a forward with 503.
    pub fn pick(&self, can_serve: impl Fn(GroupId) -> bool) -> Option<GroupId> {
        let groups = &self.groups[..self.groups.len().min(MAX_GROUPS)];
        if let [one] = groups {
            return (one.weight > 0).then_some(one.group);
        }
        // Asked once per group: a group's answer may change while the pick runs.
        let mut serving = [0u32; MAX_GROUPS];
        for (w, g) in serving.iter_mut().zip(groups) {
            if g.weight > 0 && can_serve(g.group) {
                *w = u32::from(g.weight);
            }
        }
        let chosen = weighted(groups, &serving);
        chosen.or_else(|| {
            let mut any = [0u32; MAX_GROUPS];
            for (w, g) in any.iter_mut().zip(groups) {
                *w = u32::from(g.weight);
            }
            weighted(groups, &any)
        })
    }
}

/// ALB's quota of target groups in one forward (validation holds the configuration to it).
const MAX_GROUPS: usize = 5;

/// A group at random, each with the weight at its index.
fn weighted(groups: &[WeightedGroup], weights: &[u32; MAX_GROUPS]) -> Option<GroupId> {
    let total: u32 = weights.iter().sum();
    if total == 0 {
        return None;
    }
    let mut n = fastrand::u32(..total);
    for (g, &w) in groups.iter().zip(weights) {
        if n < w {
            return Some(g.group);
        }
        n -= w;
    }
    None
}

/// A `fixed_response` action, with its header value and body built once.
#[derive(Debug, Clone)]
pub struct FixedResponse {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub body: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(weights: &[u16]) -> Forward {
        Forward {
            groups: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| WeightedGroup {
                    group: GroupId(i),
                    weight,
                })
                .collect(),
            stickiness: None,
        }
    }

    /// How many of `n` picks went to each group.
    fn spread(f: &Forward, n: usize, can_serve: impl Fn(GroupId) -> bool) -> Vec<usize> {
        let mut counts = vec![0; f.groups.len()];
        for _ in 0..n {
            counts[f.pick(&can_serve).unwrap().0] += 1;
        }
        counts
    }

    #[test]
    fn picks_follow_the_weights() {
        let got = spread(&forward(&[90, 10]), 20_000, |_| true);
        let share = got[0] as f64 / 20_000.0;
        assert!((0.88..=0.92).contains(&share), "{got:?}");
        assert_eq!(spread(&forward(&[0, 100]), 1000, |_| true), [0, 1000]);
        assert_eq!(spread(&forward(&[999, 0, 0]), 1000, |_| true), [1000, 0, 0]);
    }

    #[test]
    fn a_group_that_cannot_serve_is_skipped_only_for_one_that_can() {
        let f = forward(&[50, 50, 0]);
        assert_eq!(spread(&f, 1000, |g| g != GroupId(0)), [0, 1000, 0]);
        // Neither weighted group can serve: one of them still takes the request (and its 503),
        // never the group of weight 0.
        let got = spread(&f, 1000, |g| g == GroupId(2));
        assert_eq!(got[2], 0);
        assert!(got[0] > 0 && got[1] > 0, "{got:?}");
    }

    #[test]
    fn every_weight_zero_picks_nothing() {
        assert_eq!(forward(&[0, 0]).pick(|_| true), None);
        assert_eq!(forward(&[0]).pick(|_| true), None);
        assert_eq!(Forward::to(GroupId(3)).pick(|_| false), Some(GroupId(3)));
    }
}
