//! The ECS and EC2 calls discovery makes, in the shapes it needs. [`EcsApi`] is the seam between
//! the refresh logic ([`super::Ecs`]) and the AWS SDK ([`super::SdkApi`]), so the logic is tested
//! against answers written by hand, and the SDK's types stay in one file.

use std::future::Future;
use std::net::IpAddr;

/// One page of ListTasks.
#[derive(Debug, Default)]
pub struct Page {
    pub task_arns: Vec<String>,
    /// Where the next page starts; `None` on the last.
    pub next: Option<String>,
}

/// A DescribeTasks answer: what it described, and the tasks it could not (ECS's `failures`).
#[derive(Debug, Default)]
pub struct Described {
    pub tasks: Vec<TaskFacts>,
    pub failed: Vec<String>,
}

/// What discovery reads of a described task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFacts {
    pub arn: String,
    /// `PROVISIONING`, `PENDING`, `RUNNING`, `DEACTIVATING`, `STOPPED`, ...
    pub last_status: String,
    /// EC2 launch type: the container instance it runs on (bridge and host mode need its address).
    pub container_instance: Option<String>,
    pub task_definition: Option<String>,
    /// awsvpc mode: the private IPv4 address of the task's network interface, once attached.
    pub interface_address: Option<IpAddr>,
    /// The container named in the settings; `None` when the task has no such container.
    pub container: Option<ContainerFacts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerFacts {
    /// The host port bound to the settings' container port (bridge and host mode), once bound.
    pub host_port: Option<u16>,
    pub health: Health,
}

/// ECS's container health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    /// No health check in the task definition, or none finished yet.
    Unknown,
}

/// A task definition's network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Bridge,
    Host,
    Awsvpc,
    /// `none`: no network at all; such a task cannot be a target.
    Isolated,
}

/// A call that failed. The group keeps its targets; the source backs off.
#[derive(Debug, thiserror::Error)]
#[error("{api}: {detail}")]
pub struct ApiError {
    /// The API's name, as ECS and EC2 spell it (`ListTasks`).
    pub api: &'static str,
    pub kind: ErrorKind,
    pub detail: String,
}

/// What kind of failure, as the `reason` label of `seawall_discovery_errors_total` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The API refused for its rate limit.
    Throttled,
    /// No answer within the call's deadline.
    Timeout,
    /// The endpoint could not be reached.
    Connection,
    /// The credentials lack a permission (the README lists the ones needed).
    AccessDenied,
    /// The cluster, service or another named thing does not exist.
    NotFound,
    /// Any other error the API answered with.
    Api,
    /// An answer that could not be read.
    Response,
    /// The request could not be made: no region, no credentials.
    Client,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Api => "api_error",
            ErrorKind::Response => "bad_response",
            ErrorKind::Client => "client",
        }
    }
}

/// The calls, scoped to one discovery block (its cluster, its service or family, its container).
pub trait EcsApi: Send + Sync + 'static {
    /// One page of the tasks whose desired status is RUNNING.
    fn list_tasks(
        &self,
        next: Option<String>,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send;

    /// At most 100 tasks.
    fn describe_tasks(
        &self,
        arns: Vec<String>,
    ) -> impl Future<Output = Result<Described, ApiError>> + Send;

    /// At most 100 container instances: their EC2 instance ids, by container instance ARN.
    /// Instances the answer leaves out are not in it.
    fn describe_container_instances(
        &self,
        arns: Vec<String>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, ApiError>> + Send;

    /// EC2 instances' private IPv4 addresses, by instance id.
    fn describe_instances(
        &self,
        ids: Vec<String>,
    ) -> impl Future<Output = Result<Vec<(String, IpAddr)>, ApiError>> + Send;

    fn describe_task_definition(
        &self,
        arn: String,
    ) -> impl Future<Output = Result<NetworkMode, ApiError>> + Send;
}
