//! A target group's health-check settings, as compiled from `[target_groups.health_check]`. They
//! live beside the targets rather than with the checkers: the snapshot, which the data plane
//! reads, carries them, and the control side's checkers run them.

use std::time::Duration;

use super::Matcher;
use crate::protocol::Protocol;

/// How a group's targets are checked. Defaults are ALB's; validation fills them in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    /// `None` = the target's own (traffic) port.
    pub port: Option<u16>,
    pub protocol: Protocol,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// HTTP status codes, or gRPC status codes for gRPC groups.
    pub matcher: Matcher,
}
