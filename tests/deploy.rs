//! deploy/ checked by tools rather than by eye, offline: the ECS task definition and service
//! against ECS's API model and moto (tests/deploy/validate_ecs.py), the IAM policy against what
//! discovery calls, the Kubernetes manifests with kubernetes-validate (its bundled schemas), the
//! systemd unit with `systemd-analyze verify` and `security`; then what ties each to seawall (the
//! admin port of the probes, the drain against the stop timeouts, the config it runs). And the
//! unit's `Type=notify` with the real binary: READY, RELOADING, STOPPING and an upgrade's MAINPID
//! on a notify socket the test binds.
//!
//! The tools come from `.ci/run` (systemd's `systemd-analyze`) and from the virtualenvs of
//! `tests/ecs/setup.sh` (moto, botocore) and `tests/deploy/setup.sh` (kubernetes-validate).
mod common;
use common::process::{self, Proc};
use common::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A virtualenv's `bin/` made by `script` once per test binary (the scripts are idempotent and
/// lock, so test binaries running at once share one install).
fn venv_bin(script: &str, var: &str, default: &str) -> PathBuf {
    let venv = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(default));
    let status = Command::new("bash")
        .arg(repo().join(script))
        .env(var, &venv)
        .status()
        .unwrap_or_else(|e| panic!("bash runs {script}: {e}"));
    assert!(status.success(), "{script} failed");
    venv.join("bin")
}

/// moto and botocore: the ECS discovery tests' virtualenv.
fn aws_python() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        venv_bin("tests/ecs/setup.sh", "SEAWALL_ECS_VENV", "target/ecs-venv").join("python")
    })
}

/// kubernetes-validate (and PyYAML).
fn deploy_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        venv_bin(
            "tests/deploy/setup.sh",
            "SEAWALL_DEPLOY_VENV",
            "target/deploy-venv",
        )
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The configuration at `path`, loaded as `seawall run` loads it.
fn load_config(path: &Path) -> seawall::config::validate::Config {
    let source = seawall::config::Source::read(path).unwrap();
    seawall::config::load(&source).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()))
}

/// The repository file a path in the image names: the Dockerfile copies config/ to /etc/seawall/.
fn image_config(path: &str) -> PathBuf {
    let name = path
        .strip_prefix("/etc/seawall/")
        .unwrap_or_else(|| panic!("{path} is not one of the image's configurations"));
    repo().join("config").join(name)
}

/// The value that follows `flag` in `args`.
fn arg_after<'a>(args: &'a [Value], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args[i + 1].as_str().unwrap()
}

/// The runtime stage of the Dockerfile: from its last `FROM`.
fn runtime_stage() -> String {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let start = dockerfile
        .rfind("\nFROM ")
        .expect("a multi-stage Dockerfile");
    dockerfile[start..].to_string()
}

// ---------------------------------------------------------------------------------------------
// ECS

/// The ECS and EC2 operations src/discovery calls through the AWS SDK, as IAM names them: each
/// call in `discovery/ecs/sdk.rs` declares its API's name (`const API: &str = "ListTasks"`) and
/// then sends through one client, `self.ecs` or `self.ec2`.
fn discovery_actions() -> Vec<String> {
    let sdk = std::fs::read_to_string(repo().join("src/discovery/ecs/sdk.rs")).unwrap();
    // Without white space, so that rustfmt's line breaks do not matter.
    let sdk: String = sdk.chars().filter(|c| !c.is_whitespace()).collect();
    let marker = "constAPI:&str=\"";
    let mut actions = Vec::new();
    for (at, _) in sdk.match_indices(marker) {
        let rest = &sdk[at + marker.len()..];
        let name = &rest[..rest.find('"').unwrap()];
        let ecs = rest.find("self.ecs.").unwrap_or(usize::MAX);
        let ec2 = rest.find("self.ec2.").unwrap_or(usize::MAX);
        assert!(ecs != ec2, "{name}: no client call follows");
        let service = if ecs < ec2 { "ecs" } else { "ec2" };
        // The SDK's method for the call is the operation in snake case.
        let snake: String = name
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                let lower = c.to_ascii_lowercase();
                (i > 0 && c.is_ascii_uppercase())
                    .then_some('_')
                    .into_iter()
                    .chain([lower])
            })
            .collect();
        assert!(
            sdk.contains(&format!(".{snake}()")),
            "{name}: no .{snake}() call"
        );
        actions.push(format!("{service}:{name}"));
    }
    actions.sort();
    actions
}

#[test]
fn the_iam_policy_allows_exactly_what_discovery_calls() {
    let wanted = discovery_actions();
    assert_eq!(
        wanted,
        [
            "ec2:DescribeInstances",
            "ecs:DescribeContainerInstances",
            "ecs:DescribeTaskDefinition",
            "ecs:DescribeTasks",
            "ecs:ListTasks",
        ],
        "src/discovery/ecs/sdk.rs read as expected"
    );
    let policy: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/ecs/iam-policy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(policy["Version"], "2012-10-17");
    let mut allowed = Vec::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        assert!(statement["Resource"].is_string() || statement["Resource"].is_array());
        for action in statement["Action"].as_array().unwrap() {
            allowed.push(action.as_str().unwrap().to_string());
        }
    }
    allowed.sort();
    assert_eq!(allowed, wanted, "deploy/ecs/iam-policy.json");
    // The README lists the same policy.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for action in &wanted {
        assert!(
            readme.contains(&format!("\"{action}\"")),
            "README: {action}"
        );
    }
}

/// Runs tests/deploy/validate_ecs.py on the three files.
fn validate_ecs(task: &Path, service: &Path, policy: &Path) -> Output {
    run(Command::new(aws_python())
        .arg(repo().join("tests/deploy/validate_ecs.py"))
        .args([task, service, policy]))
}

#[test]
fn the_ecs_task_definition_and_service_pass_ecs_api_checks() {
    let ecs = repo().join("deploy/ecs");
    let (task_path, service_path, policy_path) = (
        ecs.join("task-definition.json"),
        ecs.join("service.json"),
        ecs.join("iam-policy.json"),
    );
    let out = validate_ecs(&task_path, &service_path, &policy_path);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let checked: Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = &checked["task_definition"];
    assert_eq!(task["networkMode"], "awsvpc");
    let containers = task["containerDefinitions"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // The configuration the container runs is one the image carries, and it is valid.
    let args = c["command"].as_array().unwrap();
    assert_eq!(args[0], "run");
    let cfg = load_config(&image_config(arg_after(args, "--config")));
    let admin = cfg
        .admin
        .as_ref()
        .expect("an admin server for the health check");
    let admin_port = admin.bind.port();
    assert!(
        !admin.bind.ip().is_loopback(),
        "the health check reaches it"
    );

    let mapped: Vec<u64> = c["portMappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["containerPort"].as_u64().unwrap())
        .collect();
    for l in &cfg.listeners {
        assert!(mapped.contains(&u64::from(l.bind.port())), "{}", l.name);
    }
    assert!(mapped.contains(&u64::from(admin_port)));

    // The health check asks the admin server's /healthz with a program the image has.
    let check: Vec<&str> = c["healthCheck"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(check[0], "CMD", "{check:?}");
    assert!(
        check.contains(&format!("http://127.0.0.1:{admin_port}/healthz").as_str()),
        "{check:?}"
    );
    let stage = runtime_stage();
    assert!(
        stage.contains(&format!(" {} ", check[1])) || stage.contains(&format!(" {}\n", check[1])),
        "the runtime image installs {}",
        check[1]
    );

    // ECS sends SIGKILL stopTimeout seconds after SIGTERM: the drain must fit in it.
    let stop = c["stopTimeout"].as_u64().unwrap();
    assert!(
        Duration::from_secs(stop) > cfg.runtime.drain_timeout,
        "stopTimeout {stop}s against drain_timeout {:?}",
        cfg.runtime.drain_timeout
    );
    assert!(stop <= 120, "ECS's maximum");
    // The image's user, not root.
    let user = c["user"].as_str().unwrap();
    assert!(stage.contains(&format!("--uid {}", user.split(':').next().unwrap())));
    assert_eq!(c["logConfiguration"]["logDriver"], "awslogs");

    let service = &checked["service"];
    assert!(service["taskDefinition"]
        .as_str()
        .unwrap()
        .contains(&format!(
            ":task-definition/{}:",
            task["family"].as_str().unwrap()
        )));
    for lb in service["loadBalancers"].as_array().unwrap() {
        assert_eq!(lb["containerName"], c["name"]);
        assert!(
            mapped.contains(&lb["containerPort"].as_u64().unwrap()),
            "{lb}"
        );
    }

    let mut actions: Vec<&str> = checked["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    actions.sort();
    assert_eq!(actions, discovery_actions());
}

/// The checks catch mistakes: a misspelt key, an action no service has, a bad policy version.
#[test]
fn the_ecs_checks_refuse_a_broken_file() {
    let ecs = repo().join("deploy/ecs");
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(ecs.join(name)).unwrap()).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, v: &Value| write_file(dir.path(), name, &v.to_string());
    // Each broken file in place of its good one: refused, naming what is wrong.
    let refused = |task: &Path, policy: &Path, needle: &str| {
        let out = validate_ecs(task, &ecs.join("service.json"), policy);
        assert!(!out.status.success(), "{needle}");
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    };
    let (good_task, good_policy) = (
        ecs.join("task-definition.json"),
        ecs.join("iam-policy.json"),
    );

    let mut task = read("task-definition.json");
    let c = task["containerDefinitions"][0].as_object_mut().unwrap();
    let timeout = c.remove("stopTimeout").unwrap();
    c.insert("stoptimeout".into(), timeout);
    refused(&write("task.json", &task), &good_policy, "stoptimeout");

    let mut policy = read("iam-policy.json");
    policy["Statement"][0]["Action"][0] = "ecs:ListTask".into();
    refused(&good_task, &write("policy.json", &policy), "ListTask");

    let mut policy = read("iam-policy.json");
    policy["Version"] = "2012-10-18".into();
    refused(&good_task, &write("policy.json", &policy), "policy");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

const KUBERNETES: [&str; 3] = ["configmap.yaml", "deployment.yaml", "service.yaml"];

fn kubernetes_validate(files: &[PathBuf]) -> Output {
    run(Command::new(deploy_bin().join("kubernetes-validate"))
        .args(["--strict", "--quiet"])
        .args(files))
}

/// Every document of a YAML file, as JSON (PyYAML, from the same virtualenv).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = run(Command::new(deploy_bin().join("python"))
        .arg("-c")
        .arg(
            "import json, sys, yaml\n\
             print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        )
        .arg(path));
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kubernetes_object(name: &str) -> Value {
    let mut docs = yaml_documents(&repo().join("deploy/kubernetes").join(name));
    assert_eq!(docs.len(), 1, "{name}: one object");
    docs.remove(0)
}

#[test]
fn the_kubernetes_manifests_pass_kubernetes_validate() {
    let files: Vec<PathBuf> = KUBERNETES
        .iter()
        .map(|f| repo().join("deploy/kubernetes").join(f))
        .collect();
    let out = kubernetes_validate(&files);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // --strict refuses what the schema does not have, so a misspelt field cannot pass.
    let dir = tempfile::tempdir().unwrap();
    let deployment = std::fs::read_to_string(&files[1]).unwrap();
    assert!(deployment.contains("readinessProbe:"));
    let broken = write_file(
        dir.path(),
        "deployment.yaml",
        &deployment.replace("readinessProbe:", "readynessProbe:"),
    );
    let out = kubernetes_validate(&[broken]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("readynessProbe")
            || text(&out.stderr).contains("readynessProbe")
    );
}

#[test]
fn the_kubernetes_deployment_probes_drains_and_runs_its_configmap() {
    let configmap = kubernetes_object("configmap.yaml");
    let deployment = kubernetes_object("deployment.yaml");
    let service = kubernetes_object("service.yaml");
    assert_eq!(configmap["kind"], "ConfigMap");
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(service["kind"], "Service");

    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // The file it runs is the ConfigMap's, through the volume it is mounted from.
    let args = c["args"].as_array().unwrap();
    assert_eq!(args[0], "run");
    let config_path = Path::new(arg_after(args, "--config"));
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| config_path.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("the config file is on a mounted volume");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["configMap"]["name"], configmap["metadata"]["name"]);
    let key = config_path.file_name().unwrap().to_str().unwrap();
    let toml = configmap["data"][key]
        .as_str()
        .expect("the ConfigMap holds the file");

    // `seawall check` accepts it.
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), key, toml);
    let out = run(process::cmd().arg("check").arg(&file));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cfg = load_config(&file);

    // Ports: every listener and the admin server are container ports.
    let ports: Vec<(String, u64)> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    let port_of = |name: &str| {
        ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    for l in &cfg.listeners {
        assert!(
            ports.iter().any(|(_, p)| *p == u64::from(l.bind.port())),
            "{}",
            l.name
        );
    }
    let admin = cfg.admin.as_ref().expect("an admin server for the probes");
    assert!(!admin.bind.ip().is_loopback(), "the kubelet reaches it");

    // Readiness on /ready, liveness on /healthz, both on the admin port.
    for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        let port = match &get["port"] {
            Value::String(name) => port_of(name),
            p => p.as_u64().unwrap(),
        };
        assert_eq!(port, u64::from(admin.bind.port()), "{probe}");
    }

    // preStop pauses, then SIGTERM drains: the grace period holds both.
    let pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .unwrap();
    assert_eq!(pre_stop[0], "/bin/sleep", "the image has /bin/sleep");
    let pause: u64 = pre_stop[1].as_str().unwrap().parse().unwrap();
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        Duration::from_secs(grace) > Duration::from_secs(pause) + cfg.runtime.drain_timeout,
        "terminationGracePeriodSeconds {grace} against preStop {pause}s + drain_timeout {:?}",
        cfg.runtime.drain_timeout
    );

    // Not root, nothing to gain, nothing to write.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    // The image's user is the one the pod runs as.
    let uid = pod["securityContext"]["runAsUser"].as_u64().unwrap();
    assert!(runtime_stage().contains(&format!("--uid {uid}")));

    // The Service selects these pods and sends to named container ports; the admin port is not
    // among them.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "selector {k}");
    }
    for p in service["spec"]["ports"].as_array().unwrap() {
        let target = p["targetPort"].as_str().unwrap();
        let port = port_of(target);
        assert_ne!(
            port,
            u64::from(admin.bind.port()),
            "the admin port stays inside"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// systemd

fn unit_text() -> String {
    std::fs::read_to_string(repo().join("deploy/systemd/seawall.service")).unwrap()
}

/// The values of `key=` in the unit, in order.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

/// The unit as installed, written to `dir` with the binary's path pointing at the one cargo
/// built: `verify` checks that every command it starts exists and is executable.
fn installable_unit(dir: &Path, unit: &str) -> PathBuf {
    write_file(
        dir,
        "seawall.service",
        &unit.replace("/usr/local/bin/seawall", process::BIN),
    )
}

/// `systemd-analyze verify` without a running systemd: `--man=no` (no man pages on CI machines
/// to look `Documentation=` up in) and `--generators=no` (nothing of this machine's boot).
fn systemd_verify(unit: &Path) -> Output {
    run(Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--generators=no"])
        .arg(unit))
}

#[test]
fn the_systemd_unit_passes_systemd_analyze() {
    let unit = unit_text();
    let dir = tempfile::tempdir().unwrap();
    let installed = installable_unit(dir.path(), &unit);
    let out = systemd_verify(&installed);
    // Unknown keys and bad values are warnings, which verify prints without failing.
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let broken = installable_unit(
        dir.path(),
        &unit.replace("NotifyAccess=all", "NotifyAcess=all"),
    );
    let out = systemd_verify(&broken);
    assert!(
        text(&out.stderr).contains("NotifyAcess"),
        "{}",
        text(&out.stderr)
    );

    // The hardening as systemd rates it: "OK" is below 4.0 of 10; this unit is under 2.5.
    let installed = installable_unit(dir.path(), &unit);
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=25", "--no-pager"])
        .arg(&installed));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn the_systemd_unit_notifies_reloads_with_sighup_and_outlasts_the_drain() {
    let unit = unit_text();
    assert_eq!(unit_values(&unit, "Type"), ["notify"]);
    assert_eq!(unit_values(&unit, "NotifyAccess"), ["all"]);
    assert_eq!(
        unit_values(&unit, "ExecReload"),
        ["/bin/kill -HUP $MAINPID"]
    );
    let start = &unit_values(&unit, "ExecStart")[0];
    assert!(
        start.starts_with("/usr/local/bin/seawall run --config "),
        "{start}"
    );
    for key in [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "CapabilityBoundingSet",
        "AmbientCapabilities",
        "LimitNOFILE",
    ] {
        assert_eq!(unit_values(&unit, key).len(), 1, "{key}");
    }
    assert_eq!(unit_values(&unit, "ProtectSystem"), ["strict"]);
    assert_eq!(
        unit_values(&unit, "CapabilityBoundingSet"),
        ["CAP_NET_BIND_SERVICE"]
    );
    // The file the unit runs is not in the repository; the default drain_timeout is what it
    // must outlast unless the file says otherwise.
    let dir = tempfile::tempdir().unwrap();
    let minimal = write_file(
        dir.path(),
        "seawall.toml",
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n\
         default_action = { fixed_response = { status = 200 } }\n",
    );
    let drain = load_config(&minimal).runtime.drain_timeout;
    let stop = unit_values(&unit, "TimeoutStopSec")[0].clone();
    let stop = humantime::parse_duration(&stop).unwrap();
    assert!(
        stop > drain,
        "TimeoutStopSec {stop:?} against drain_timeout {drain:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The notify protocol, with the real binary

/// A notify socket as systemd's: a Unix datagram socket the messages arrive on.
struct NotifySocket {
    socket: tokio::net::UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
        NotifySocket { socket, path }
    }

    /// The next message, within `limit`.
    async fn next(&self, limit: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(limit, self.socket.recv(&mut buf))
            .await
            .ok()?
            .unwrap();
        Some(String::from_utf8(buf[..n].to_vec()).unwrap())
    }

    async fn expect(&self, what: &str, sender: &Proc) -> String {
        self.next(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("no {what} message:\n{}", sender.log()))
    }
}

/// Each `KEY=VALUE` line of a notify message.
fn fields(message: &str) -> Vec<(&str, &str)> {
    message
        .lines()
        .map(|l| l.split_once('=').unwrap_or_else(|| panic!("{message:?}")))
        .collect()
}

/// A port on loopback that was free a moment ago: the test must know where seawall listens
/// before it has said so, to ask it the moment READY=1 arrives.
fn free_port() -> SocketAddr {
    dead_port()
}

async fn answers(addr: SocketAddr, path: &str) -> bool {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(tcp) => {
            let mut c = h1(tcp).await;
            let req = http::Request::get(path)
                .header("host", "t")
                .body(empty())
                .unwrap();
            matches!(c.send_request(req).await, Ok(r) if r.status() == 200)
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_says_ready_reloading_an_upgrades_mainpid_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (web, admin) = (free_port(), free_port());
    let path = write_file(
        dir.path(),
        "seawall.toml",
        &format!(
            r#"
[admin]
bind = "{admin}"

[runtime]
drain_timeout = "5s"

[[listeners]]
name = "web"
bind = "{web}"
protocol = "http"
default_action = {{ fixed_response = {{ status = 200, body = "served" }} }}
"#
        ),
    );
    let notify = NotifySocket::bind(dir.path());
    let mut old = Proc::start_with(&path, &["web"], true, |c| {
        c.env("NOTIFY_SOCKET", &notify.path);
    })
    .await;

    // READY=1 alone, and by then the listener and the admin server answer.
    let ready = notify.expect("READY", &old).await;
    assert_eq!(ready, "READY=1\n");
    assert!(answers(web, "/").await, "the listener serves at READY=1");
    assert!(answers(admin, "/healthz").await);

    // A reload is bracketed: RELOADING=1 with the monotonic clock, then READY=1.
    old.signal("HUP");
    let reloading = notify.expect("RELOADING", &old).await;
    let f = fields(&reloading);
    assert_eq!(f[0], ("RELOADING", "1"), "{reloading:?}");
    assert_eq!(f[1].0, "MONOTONIC_USEC", "{reloading:?}");
    assert!(f[1].1.parse::<u64>().unwrap() > 0);
    assert_eq!(
        notify.expect("READY after the reload", &old).await,
        "READY=1\n"
    );

    // An upgrade: the new process names itself the main one and is ready in one message, when
    // it already serves; the old one says nothing more, not even STOPPING=1.
    old.signal("USR2");
    let took_over = notify.expect("MAINPID", &old).await;
    let f = fields(&took_over);
    assert_eq!(f.len(), 2, "{took_over:?}");
    assert_eq!(f[0].0, "MAINPID");
    let new_pid: u32 = f[0].1.parse().unwrap();
    assert_ne!(new_pid, old.child.id());
    assert_eq!(f[1], ("READY", "1"));
    assert!(answers(web, "/").await, "the new process serves");
    let status = old.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}\n{}", old.log());
    let started = old
        .lines()
        .iter()
        .filter(|l| l.contains("new process started"))
        .find_map(|l| process::field(l, "pid")?.parse::<u32>().ok());
    assert_eq!(
        started,
        Some(new_pid),
        "MAINPID is the process the old one started"
    );
    let after = notify.next(Duration::from_millis(500)).await;
    assert_eq!(
        after, None,
        "the old process said nothing after the hand-over"
    );

    // The new process is the service now: a reload and a stop are its to tell.
    process::signal(new_pid, "HUP");
    assert!(notify
        .expect("RELOADING from the new process", &old)
        .await
        .starts_with("RELOADING=1\n"));
    assert_eq!(notify.expect("READY", &old).await, "READY=1\n");
    process::signal(new_pid, "TERM");
    assert_eq!(notify.expect("STOPPING", &old).await, "STOPPING=1\n");
}

#[tokio::test]
async fn a_notify_socket_that_is_gone_stops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "seawall.toml",
        r#"
[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { fixed_response = { status = 200, body = "served" } }
"#,
    );
    let mut p = Proc::start_with(&path, &["web"], true, |c| {
        c.env("NOTIFY_SOCKET", dir.path().join("nobody-listens.sock"));
    })
    .await;
    p.wait_ready().await;
    assert_eq!(get(p.addr("web"), false, "a", "/").await.text(), "served");
    p.signal("HUP");
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
    assert!(p.log().contains("cannot notify systemd"), "{}", p.log());
}
