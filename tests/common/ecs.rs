//! An ECS and EC2 API on loopback for discovery tests: moto's server, patched by
//! `tests/ecs/emulator.py` (its docstring lists the patches and the control API), in a
//! virtualenv that `tests/ecs/setup.sh` makes on first use. The tests build their clusters through
//! the real API with the AWS SDK, and move tasks through their lifecycle with the control API.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecs::types::{ContainerDefinition, NetworkMode, PortMapping, TransportProtocol};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The virtualenv's python, made once per test binary (setup.sh is idempotent and locks, so test
/// binaries running at once share one install).
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = std::env::var_os("SEAWALL_ECS_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target/ecs-venv"));
        let status = Command::new("bash")
            .arg(repo().join("tests/ecs/setup.sh"))
            .env("SEAWALL_ECS_VENV", &venv)
            .status()
            .expect("bash runs tests/ecs/setup.sh");
        assert!(status.success(), "tests/ecs/setup.sh failed");
        venv.join("bin/python")
    })
}

/// The environment a seawall under test gets: dummy credentials and a region, and nothing that
/// would let the SDK's default chain look further (no instance or task metadata, no profile), so
/// no traffic leaves loopback.
pub fn aws_env(cmd: &mut Command) {
    for var in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ENDPOINT_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
}

/// A running emulator; killed on drop.
pub struct Emulator {
    child: Child,
    pub addr: SocketAddr,
    pub ecs: aws_sdk_ecs::Client,
    pub ec2: aws_sdk_ec2::Client,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // SIGKILL: a paused (SIGSTOPped) emulator dies of it too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which network mode a task definition uses.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Bridge,
    Host,
    Awsvpc,
}

impl Emulator {
    pub async fn start() -> Emulator {
        let python = python();
        let mut child = Command::new(python)
            .arg(repo().join("tests/ecs/emulator.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the emulator starts");
        let stdout = child.stdout.take().unwrap();
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        // Importing moto takes about 3 s; an emulator that never says where it listens fails
        // the test instead of hanging it (the child is killed with the reader's pipe).
        let line = match tokio::time::timeout(Duration::from_secs(60), read).await {
            Ok(read) => read.unwrap().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("the emulator did not say where it listens within 60 s");
            }
        };
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the emulator said {line:?}"))
            .parse()
            .unwrap();
        let url = format!("http://{addr}");
        let creds = Credentials::new("test", "test", None, None, "tests");
        let ecs = aws_sdk_ecs::Client::from_conf(
            aws_sdk_ecs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(creds.clone())
                .endpoint_url(&url)
                .build(),
        );
        let ec2 = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::Config::builder()
                .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
                .region(aws_sdk_ec2::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                    "test", "test", None, None, "tests",
                ))
                .endpoint_url(&url)
                .build(),
        );
        Emulator {
            child,
            addr,
            ecs,
            ec2,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Freezes the emulator (SIGSTOP): connections are accepted by the kernel, nothing answers.
    pub fn pause(&self) {
        super::process::signal(self.child.id(), "STOP");
    }

    pub fn resume(&self) {
        super::process::signal(self.child.id(), "CONT");
    }

    /// A call to the control API.
    pub async fn control(&self, method: &str, path: &str, payload: Value) -> Value {
        let got = match method {
            "GET" => super::get(self.addr, false, &self.addr.to_string(), path).await,
            _ => super::post(self.addr, path, payload.to_string()).await,
        };
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        got.json()
    }

    /// Sets fields of tasks (`lastStatus`, `desiredStatus`, `health`, `hostPort`, ...).
    pub async fn set(&self, tasks: &[String], fields: Value) {
        let mut payload = fields;
        payload["tasks"] = json!(tasks);
        self.control("POST", "/_emulator/tasks", payload).await;
    }

    /// API calls by action since the last reset.
    pub async fn calls(&self) -> Value {
        self.control("GET", "/_emulator/calls", json!({})).await
    }

    pub async fn reset_calls(&self) {
        self.control("POST", "/_emulator/calls/reset", json!({}))
            .await;
    }

    pub async fn cluster(&self, name: &str) {
        self.ecs
            .create_cluster()
            .cluster_name(name)
            .send()
            .await
            .unwrap();
    }

    /// An EC2 instance at 127.0.0.1 registered in `cluster`: its container instance ARN.
    pub async fn instance(&self, cluster: &str) -> String {
        let ran = self
            .ec2
            .run_instances()
            .image_id("ami-1e749f67")
            .min_count(1)
            .max_count(1)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Small)
            .private_ip_address("127.0.0.1")
            .send()
            .await
            .unwrap();
        let id = ran.instances()[0].instance_id().unwrap().to_string();
        let doc =
            json!({"instanceId": id, "region": "us-east-1", "availabilityZone": "us-east-1a"});
        let ci = self
            .ecs
            .register_container_instance()
            .cluster(cluster)
            .instance_identity_document(doc.to_string())
            .send()
            .await
            .unwrap();
        ci.container_instance()
            .unwrap()
            .container_instance_arn()
            .unwrap()
            .to_string()
    }

    /// A task definition with a container `app` listening on `port` (dynamic host port in bridge
    /// mode) and a sidecar `log` with no port.
    pub async fn task_definition(&self, family: &str, mode: Mode, port: i32) -> String {
        let mapping = PortMapping::builder()
            .container_port(port)
            .protocol(TransportProtocol::Tcp);
        let mapping = match mode {
            Mode::Bridge => mapping.host_port(0),
            Mode::Host | Mode::Awsvpc => mapping,
        };
        let td = self
            .ecs
            .register_task_definition()
            .family(family)
            .network_mode(match mode {
                Mode::Bridge => NetworkMode::Bridge,
                Mode::Host => NetworkMode::Host,
                Mode::Awsvpc => NetworkMode::Awsvpc,
            })
            .container_definitions(
                ContainerDefinition::builder()
                    .name("log")
                    .image("log:1")
                    .memory(16)
                    .build(),
            )
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("app:1")
                    .memory(16)
                    .port_mappings(mapping.build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        td.task_definition()
            .unwrap()
            .task_definition_arn()
            .unwrap()
            .to_string()
    }

    /// Starts one task of `family` for `service` on container instance `instance` (PENDING).
    pub async fn start_task(
        &self,
        cluster: &str,
        family: &str,
        service: &str,
        instance: &str,
    ) -> String {
        let out = self
            .ecs
            .start_task()
            .cluster(cluster)
            .task_definition(family)
            .container_instances(instance)
            .group(format!("service:{service}"))
            .send()
            .await
            .unwrap();
        assert!(out.failures().is_empty(), "{:?}", out.failures());
        out.tasks()[0].task_arn().unwrap().to_string()
    }

    /// Starts `count` tasks of `family` for `service` on the cluster's instances (PENDING).
    pub async fn run_tasks(
        &self,
        cluster: &str,
        family: &str,
        service: &str,
        count: i32,
    ) -> Vec<String> {
        let mut arns = Vec::new();
        // RunTask starts at most 10 tasks per call, as ECS allows.
        let mut left = count;
        while left > 0 {
            let n = left.min(10);
            let out = self
                .ecs
                .run_task()
                .cluster(cluster)
                .task_definition(family)
                .count(n)
                .group(format!("service:{service}"))
                .send()
                .await
                .unwrap();
            assert_eq!(out.tasks().len(), n as usize, "{:?}", out.failures());
            arns.extend(
                out.tasks()
                    .iter()
                    .map(|t| t.task_arn().unwrap().to_string()),
            );
            left -= n;
        }
        arns
    }

    /// Starts an awsvpc task of `family` for `service` (PENDING); its address is 127.0.0.1.
    pub async fn run_awsvpc_task(&self, cluster: &str, family: &str, service: &str) -> String {
        let vpc = self
            .ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        let subnet = self
            .ec2
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block("10.0.1.0/24")
            .send()
            .await
            .unwrap();
        let subnet_id = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
        let out = self
            .ecs
            .run_task()
            .cluster(cluster)
            .task_definition(family)
            .launch_type(aws_sdk_ecs::types::LaunchType::Ec2)
            .group(format!("service:{service}"))
            .network_configuration(
                aws_sdk_ecs::types::NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                            .subnets(subnet_id)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.tasks()[0].task_arn().unwrap().to_string()
    }

    /// ECS's StopTask: desiredStatus STOPPED, the container still running (lastStatus unchanged).
    pub async fn stop_task(&self, cluster: &str, arn: &str) {
        self.ecs
            .stop_task()
            .cluster(cluster)
            .task(arn)
            .reason("deploy")
            .send()
            .await
            .unwrap();
    }
}

/// How long the tests' emulator-backed waits may take: refreshes are 1 s, health checks fast.
pub const SETTLE: Duration = Duration::from_secs(20);
