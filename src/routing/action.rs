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
}

/// A `fixed_response` action, with its header value and body built once.
#[derive(Debug, Clone)]
pub struct FixedResponse {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub body: Bytes,
}
