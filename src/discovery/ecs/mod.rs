//! ECS task discovery: a target group that follows the running tasks of an ECS service (or of a
//! task family), as ALB does for a service with dynamic host port mapping.
//!
//! Each refresh lists the tasks whose desired status is RUNNING (a task whose desired status turns
//! STOPPED leaves the listing while its container is still shutting down, which is the moment to
//! start draining it), describes only the tasks it has not settled yet (and, with
//! `healthy_tasks_only`, every listed task, since container health is not in a listing), and
//! resolves each task's address: in bridge and host network mode the container's host port and
//! its container instance's private address (through EC2, cached per instance), in awsvpc mode
//! the task's own network interface and the container port.
//!
//! [`Settings`] is what the configuration lowers into; it exists in every build so that a build
//! without the `ecs` feature can name what it refuses. The source itself ([`Ecs`]) and its AWS
//! SDK client are compiled with the feature only.

use std::time::Duration;

#[cfg(feature = "ecs")]
mod api;
#[cfg(feature = "ecs")]
mod sdk;
#[cfg(feature = "ecs")]
mod source;

#[cfg(feature = "ecs")]
pub use api::{ApiError, EcsApi};
#[cfg(feature = "ecs")]
pub use sdk::SdkApi;
#[cfg(feature = "ecs")]
pub use source::Ecs;

/// `[target_groups.discovery.ecs]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The cluster's name or ARN.
    pub cluster: String,
    pub tasks: Selector,
    /// The container, by its name in the task definition, whose port takes the traffic.
    pub container: String,
    /// The port the container listens on; in bridge mode its host port is found per task.
    pub container_port: u16,
    /// Time between two listings of the tasks.
    pub refresh: Duration,
    /// `None`: from the AWS environment (`AWS_REGION`, the profile, the instance's metadata).
    pub region: Option<String>,
    /// The ECS and EC2 API endpoint instead of AWS's (a local emulator in tests).
    pub endpoint: Option<String>,
    /// Register only tasks whose ECS container health is HEALTHY.
    pub healthy_tasks_only: bool,
}

/// Which tasks of the cluster are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The tasks of an ECS service.
    Service(String),
    /// The tasks of a task definition family, however they were started.
    Family(String),
}

impl Settings {
    /// The default `refresh`, as CONFIG.md gives it.
    pub const DEFAULT_REFRESH: Duration = Duration::from_secs(10);

    /// What the source follows, for logs: `ecs:prod/service:api`.
    pub fn describe(&self) -> String {
        match &self.tasks {
            Selector::Service(s) => format!("ecs:{}/service:{s}", self.cluster),
            Selector::Family(f) => format!("ecs:{}/family:{f}", self.cluster),
        }
    }
}
