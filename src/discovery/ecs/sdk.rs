//! [`EcsApi`] on the AWS SDK for Rust: credentials and region from the standard chain
//! (environment, profile, ECS task role, EC2 instance metadata), requests signed by the SDK.

use std::fmt::Debug;
use std::net::IpAddr;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::types::Filter;
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{DesiredStatus, HealthStatus, Task};

use super::api::{
    ApiError, ContainerFacts, Described, EcsApi, ErrorKind, Health, NetworkMode, Page, TaskFacts,
};
use super::{Selector, Settings};

/// Every call's deadlines. A call that takes longer fails the refresh, which keeps the targets it
/// has and backs off; the SDK's own retries (jittered, for throttling and transient errors) run
/// inside the operation's deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(12);
const MAX_ATTEMPTS: u32 = 3;

/// The ECS and EC2 clients of one discovery block.
pub struct SdkApi {
    ecs: aws_sdk_ecs::Client,
    ec2: aws_sdk_ec2::Client,
    settings: Settings,
    /// Neither the block nor the AWS environment names a region: every call fails with this said.
    no_region: bool,
}

impl SdkApi {
    /// Reads the AWS environment (region, credentials provider chain); makes no request.
    pub async fn load(settings: &Settings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        SdkApi {
            no_region: shared.region().is_none(),
            ecs: aws_sdk_ecs::Client::new(&shared),
            ec2: aws_sdk_ec2::Client::new(&shared),
            settings: settings.clone(),
        }
    }

    fn region(&self, api: &'static str) -> Result<(), ApiError> {
        if self.no_region {
            return Err(ApiError {
                api,
                kind: ErrorKind::Client,
                detail: "no AWS region: set `region` in the discovery block, or AWS_REGION".into(),
            });
        }
        Ok(())
    }

    /// What discovery reads of a task: the settings' container and where it takes traffic.
    fn facts(&self, t: &Task) -> TaskFacts {
        let port = i32::from(self.settings.container_port);
        let interface_address = t
            .attachments()
            .iter()
            .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
            .flat_map(|a| a.details())
            .find(|d| d.name() == Some("privateIPv4Address"))
            .and_then(|d| d.value())
            .and_then(|v| v.parse::<IpAddr>().ok());
        let container = t
            .containers()
            .iter()
            .find(|c| c.name() == Some(self.settings.container.as_str()))
            .map(|c| ContainerFacts {
                host_port: c
                    .network_bindings()
                    .iter()
                    .find(|b| {
                        b.container_port() == Some(port)
                            && b.protocol().is_none_or(|p| p.as_str() == "tcp")
                    })
                    .and_then(|b| b.host_port())
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0),
                health: match c.health_status() {
                    Some(HealthStatus::Healthy) => Health::Healthy,
                    Some(HealthStatus::Unhealthy) => Health::Unhealthy,
                    _ => Health::Unknown,
                },
            });
        TaskFacts {
            arn: t.task_arn().unwrap_or_default().to_string(),
            last_status: t.last_status().unwrap_or_default().to_string(),
            container_instance: t.container_instance_arn().map(str::to_string),
            task_definition: t.task_definition_arn().map(str::to_string),
            interface_address,
            container,
        }
    }
}

impl EcsApi for SdkApi {
    async fn list_tasks(&self, next: Option<String>) -> Result<Page, ApiError> {
        const API: &str = "ListTasks";
        self.region(API)?;
        let mut call = self
            .ecs
            .list_tasks()
            .cluster(&self.settings.cluster)
            .desired_status(DesiredStatus::Running)
            .max_results(100)
            .set_next_token(next);
        call = match &self.settings.tasks {
            Selector::Service(s) => call.service_name(s),
            Selector::Family(f) => call.family(f),
        };
        let out = call.send().await.map_err(|e| api_error(API, e))?;
        Ok(Page {
            task_arns: out.task_arns().to_vec(),
            next: out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        })
    }

    async fn describe_tasks(&self, arns: Vec<String>) -> Result<Described, ApiError> {
        const API: &str = "DescribeTasks";
        self.region(API)?;
        let out = self
            .ecs
            .describe_tasks()
            .cluster(&self.settings.cluster)
            .set_tasks(Some(arns))
            .send()
            .await
            .map_err(|e| api_error(API, e))?;
        Ok(Described {
            tasks: out.tasks().iter().map(|t| self.facts(t)).collect(),
            failed: out
                .failures()
                .iter()
                .filter_map(|f| f.arn().map(str::to_string))
                .collect(),
        })
    }

    async fn describe_container_instances(
        &self,
        arns: Vec<String>,
    ) -> Result<Vec<(String, String)>, ApiError> {
        const API: &str = "DescribeContainerInstances";
        self.region(API)?;
        let out = self
            .ecs
            .describe_container_instances()
            .cluster(&self.settings.cluster)
            .set_container_instances(Some(arns))
            .send()
            .await
            .map_err(|e| api_error(API, e))?;
        Ok(out
            .container_instances()
            .iter()
            .filter_map(|ci| {
                Some((
                    ci.container_instance_arn()?.to_string(),
                    ci.ec2_instance_id()?.to_string(),
                ))
            })
            .collect())
    }

    async fn describe_instances(
        &self,
        ids: Vec<String>,
    ) -> Result<Vec<(String, IpAddr)>, ApiError> {
        const API: &str = "DescribeInstances";
        self.region(API)?;
        // A filter rather than InstanceIds: an id that no longer exists (an instance terminated
        // under a task still listed) is left out of the answer instead of failing the call.
        let out = self
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("instance-id")
                    .set_values(Some(ids))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| api_error(API, e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| {
                let ip = i.private_ip_address()?.parse().ok()?;
                Some((i.instance_id()?.to_string(), ip))
            })
            .collect())
    }

    async fn describe_task_definition(&self, arn: String) -> Result<NetworkMode, ApiError> {
        const API: &str = "DescribeTaskDefinition";
        self.region(API)?;
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map_err(|e| api_error(API, e))?;
        let mode = out.task_definition().and_then(|td| td.network_mode());
        Ok(match mode.map(|m| m.as_str()) {
            Some("host") => NetworkMode::Host,
            Some("awsvpc") => NetworkMode::Awsvpc,
            Some("none") => NetworkMode::Isolated,
            // ECS's default on Linux container instances.
            _ => NetworkMode::Bridge,
        })
    }
}

/// Sorts an SDK error into the kinds the metrics count.
fn api_error<E, R>(api: &'static str, e: SdkError<E, R>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug,
{
    let kind = match &e {
        SdkError::TimeoutError(_) => ErrorKind::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => ErrorKind::Timeout,
        SdkError::DispatchFailure(d) if d.is_user() => ErrorKind::Client,
        SdkError::DispatchFailure(_) => ErrorKind::Connection,
        SdkError::ConstructionFailure(_) => ErrorKind::Client,
        SdkError::ResponseError(_) => ErrorKind::Response,
        SdkError::ServiceError(s) => match s.err().code() {
            Some(
                "ThrottlingException"
                | "Throttling"
                | "RequestLimitExceeded"
                | "TooManyRequestsException",
            ) => ErrorKind::Throttled,
            Some(c) if c.starts_with("AccessDenied") || c == "UnauthorizedOperation" => {
                ErrorKind::AccessDenied
            }
            Some("ClusterNotFoundException" | "ServiceNotFoundException") => ErrorKind::NotFound,
            _ => ErrorKind::Api,
        },
        _ => ErrorKind::Api,
    };
    ApiError {
        api,
        kind,
        detail: DisplayErrorContext(&e).to_string(),
    }
}
