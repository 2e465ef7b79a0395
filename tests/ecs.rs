//! ECS discovery against a real ECS API on loopback (moto's server, patched: see
//! tests/common/ecs.rs). The backends behave like containers: when their task is stopped they keep
//! serving for a while (ECS's stopTimeout), then close their listener and the task is STOPPED.
#![cfg(feature = "ecs")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::ecs::{aws_env, Emulator, Mode, SETTLE};
use common::process::Proc;
use common::{eventually, get, metric_value, Backend};
use serde_json::{json, Value};

const CLUSTER: &str = "prod";

/// A cluster of container instances (all at 127.0.0.1) running tasks whose containers are real
/// backends.
struct Fleet {
    emu: Emulator,
    instances: Vec<String>,
    /// Each running task's backend, by task ARN.
    containers: HashMap<String, Arc<Backend>>,
}

impl Fleet {
    async fn new(instances: usize) -> Fleet {
        let emu = Emulator::start().await;
        emu.cluster(CLUSTER).await;
        let mut cis = Vec::new();
        for _ in 0..instances {
            cis.push(emu.instance(CLUSTER).await);
        }
        emu.task_definition("api", Mode::Bridge, 8080).await;
        Fleet {
            emu,
            instances: cis,
            containers: HashMap::new(),
        }
    }

    /// Starts a task of `service` on instance `i` whose container is a new backend on a dynamic
    /// host port, and marks it RUNNING.
    async fn launch(&mut self, service: &str, i: usize) -> String {
        let arn = self
            .emu
            .start_task(CLUSTER, "api", service, &self.instances[i])
            .await;
        let backend = Backend::start(&arn).await;
        self.emu
            .set(
                std::slice::from_ref(&arn),
                json!({"hostPort": backend.addr.port(), "lastStatus": "RUNNING"}),
            )
            .await;
        self.containers.insert(arn.clone(), Arc::new(backend));
        arn
    }

    fn addr(&self, arn: &str) -> SocketAddr {
        self.containers[arn].addr
    }

    /// seawall with one group, `api`, following service `api` (`extra`: further keys of its
    /// discovery block).
    async fn seawall(&self, dir: &Path, extra: &str) -> Proc {
        let text = config(&[group("api", "api", &self.emu.url(), extra)]);
        seawall(dir, &text, &["api"]).await
    }

    /// ECS stopping a task: desiredStatus STOPPED at once; the container keeps serving for
    /// `linger` (its stopTimeout), then exits and the task is STOPPED.
    fn stop(&self, arn: &str, linger: Duration) -> tokio::task::JoinHandle<()> {
        let backend = self.containers[arn].clone();
        let emu = self.emu.addr;
        let arn = arn.to_string();
        let ecs = self.emu.ecs.clone();
        tokio::spawn(async move {
            ecs.stop_task()
                .cluster(CLUSTER)
                .task(&arn)
                .send()
                .await
                .unwrap();
            tokio::time::sleep(linger).await;
            backend.kill();
            control_set(emu, &arn, json!({"lastStatus": "STOPPED"})).await;
        })
    }
}

/// The control API from a task that does not hold the emulator.
async fn control_set(emu: SocketAddr, arn: &str, fields: Value) {
    let mut payload = fields;
    payload["tasks"] = json!([arn]);
    let got = common::post(emu, "/_emulator/tasks", payload.to_string()).await;
    assert_eq!(got.status, 200, "{}", got.text());
}

/// A group `name` following `service`, behind listener `name`.
fn group(name: &str, service: &str, endpoint: &str, extra: &str) -> String {
    format!(
        r#"
[[listeners]]
name = "{name}"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ forward = "{name}" }}

[[target_groups]]
name = "{name}"
deregistration_delay = "10s"
  [target_groups.health_check]
  path = "/health"
  interval = "200ms"
  timeout = "150ms"
  healthy_threshold = 2
  [target_groups.discovery.ecs]
  cluster = "{CLUSTER}"
  service = "{service}"
  container = "app"
  container_port = 8080
  refresh = "1s"
  endpoint = "{endpoint}"
  {extra}
"#
    )
}

fn config(groups: &[String]) -> String {
    format!("[admin]\nbind = \"127.0.0.1:0\"\n{}", groups.concat())
}

async fn seawall(dir: &Path, text: &str, listeners: &[&str]) -> Proc {
    let path = dir.join("seawall.toml");
    std::fs::write(&path, text).unwrap();
    Proc::start_with(&path, listeners, true, aws_env).await
}

/// `/targets` of one group: address → (state, source, task ARN).
async fn targets(sw: &Proc, group: &str) -> BTreeMap<String, (String, String, String)> {
    let all = get(sw.admin(), false, "admin", "/targets").await.json();
    let g = all["target_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == group)
        .unwrap_or_else(|| panic!("no group {group}: {all}"))
        .clone();
    g["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let addr = format!(
                "{}:{}",
                d["Target"]["Id"].as_str().unwrap(),
                d["Target"]["Port"]
            );
            let state = d["TargetHealth"]["State"].as_str().unwrap().to_string();
            let source = d["Source"].as_str().unwrap_or_default().to_string();
            let task = d["TaskArn"].as_str().unwrap_or_default().to_string();
            (addr, (state, source, task))
        })
        .collect()
}

/// Waits until the group's targets, by address, are in exactly these states.
async fn wait_targets(sw: &Proc, group: &str, want: &[(SocketAddr, &str)]) {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(a, s)| (a.to_string(), s.to_string()))
        .collect();
    let ok = eventually(SETTLE, || async {
        let now: BTreeMap<String, String> = targets(sw, group)
            .await
            .into_iter()
            .map(|(a, (s, _, _))| (a, s))
            .collect();
        now == want
    })
    .await;
    assert!(
        ok,
        "group {group}: wanted {want:?}, have {:?}\n{}",
        targets(sw, group).await,
        sw.log()
    );
}

async fn metrics(sw: &Proc) -> String {
    common::fetch_metrics(sw.admin()).await
}

/// Sends GETs one after another until stopped, counting answers other than 200.
struct Load {
    sent: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (s, f, st) = (sent.clone(), failed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !st.is_cancelled() {
                let got = get(addr, false, "app.example", "/work").await;
                s.fetch_add(1, Ordering::SeqCst);
                if got.status != 200 {
                    f.lock()
                        .unwrap()
                        .push(format!("{} {}", got.status, got.text()));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Load {
            sent,
            failed,
            stop,
            task,
        }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.cancel();
        self.task.await.unwrap();
        (
            self.sent.load(Ordering::SeqCst),
            self.failed.lock().unwrap().clone(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_tasks_on_two_instances_become_targets_and_serve_and_new_ones_join() {
    let mut fleet = Fleet::new(2).await;
    let a = fleet.launch("api", 0).await;
    let b = fleet.launch("api", 0).await;
    let c = fleet.launch("api", 1).await;
    // A task still PENDING is not a target.
    let pending = fleet
        .emu
        .start_task(CLUSTER, "api", "api", &fleet.instances[1])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let sw = fleet.seawall(dir.path(), "").await;
    sw.wait_ready().await;
    let (pa, pb, pc) = (fleet.addr(&a), fleet.addr(&b), fleet.addr(&c));
    wait_targets(
        &sw,
        "api",
        &[(pa, "healthy"), (pb, "healthy"), (pc, "healthy")],
    )
    .await;
    let listed = targets(&sw, "api").await;
    for arn in [&a, &b, &c] {
        let (_, source, task) = &listed[&fleet.addr(arn).to_string()];
        assert_eq!(
            (source.as_str(), task.as_str()),
            ("discovery", arn.as_str())
        );
    }
    for _ in 0..30 {
        assert_eq!(get(sw.addr("api"), false, "x", "/").await.status, 200);
    }
    for arn in [&a, &b, &c] {
        assert!(
            fleet.containers[arn].hits() >= 5,
            "round robin reaches every task"
        );
    }
    let m = metrics(&sw).await;
    assert_eq!(
        metric_value(&m, "seawall_discovery_targets", &[("target_group", "api")]),
        3.0
    );
    assert!(
        metric_value(
            &m,
            "seawall_discovery_last_success_timestamp_seconds",
            &[("target_group", "api")]
        ) > 1.7e9
    );
    assert!(
        metric_value(
            &m,
            "seawall_discovery_api_calls_total",
            &[("api", "ListTasks")]
        ) >= 1.0
    );

    // The pending task starts running: it joins.
    let backend = Backend::start("late").await;
    fleet
        .emu
        .set(
            std::slice::from_ref(&pending),
            json!({"hostPort": backend.addr.port(), "lastStatus": "RUNNING"}),
        )
        .await;
    wait_targets(
        &sw,
        "api",
        &[
            (pa, "healthy"),
            (pb, "healthy"),
            (pc, "healthy"),
            (backend.addr, "healthy"),
        ],
    )
    .await;
    for _ in 0..8 {
        get(sw.addr("api"), false, "x", "/").await;
    }
    assert!(backend.hits() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_task_drains_while_it_still_serves_and_no_request_fails() {
    let mut fleet = Fleet::new(2).await;
    let a = fleet.launch("api", 0).await;
    let b = fleet.launch("api", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let sw = fleet.seawall(dir.path(), "").await;
    let (pa, pb) = (fleet.addr(&a), fleet.addr(&b));
    wait_targets(&sw, "api", &[(pa, "healthy"), (pb, "healthy")]).await;

    let load = Load::start(sw.addr("api"));
    // Two slow requests, one on each task (round robin), in flight when the task is stopped.
    let addr = sw.addr("api");
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(addr, false, "x", "/delay?ms=2500").await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = fleet.stop(&a, Duration::from_secs(4));
    // It drains at the next refresh, while its container still runs.
    wait_targets(&sw, "api", &[(pa, "draining"), (pb, "healthy")]).await;
    assert!(fleet.containers[&a].hits() > 0);
    for s in slow {
        let got = s.await.unwrap();
        assert_eq!(
            got.status, 200,
            "an in-flight request to a draining task completes"
        );
    }
    stopping.await.unwrap();

    // A task whose desired status turns STOPPED by other means (a scale-in) drains the same way.
    let c = fleet.launch("api", 0).await;
    let pc = fleet.addr(&c);
    wait_targets(
        &sw,
        "api",
        &[(pa, "draining"), (pb, "healthy"), (pc, "healthy")],
    )
    .await;
    fleet
        .emu
        .set(
            std::slice::from_ref(&b),
            json!({"desiredStatus": "STOPPED"}),
        )
        .await;
    wait_targets(
        &sw,
        "api",
        &[(pa, "draining"), (pb, "draining"), (pc, "healthy")],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (sent, failed) = load.finish().await;
    assert!(sent > 50, "the load ran: {sent}");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
    // The deregistration delay (10 s) over, the drained target is gone.
    wait_targets(&sw, "api", &[(pb, "draining"), (pc, "healthy")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awsvpc_and_host_mode_tasks_are_found_at_their_own_addresses() {
    let emu = Emulator::start().await;
    emu.cluster(CLUSTER).await;
    let ci = emu.instance(CLUSTER).await;
    // awsvpc: the task's interface address (127.0.0.1 here) and the container port.
    let vpc_backend = Backend::start("vpc").await;
    let vpc_port = vpc_backend.addr.port() as i32;
    emu.task_definition("vpc", Mode::Awsvpc, vpc_port).await;
    let vpc_task = emu.run_awsvpc_task(CLUSTER, "vpc", "vpc").await;
    emu.set(
        std::slice::from_ref(&vpc_task),
        json!({"lastStatus": "RUNNING"}),
    )
    .await;
    // host: the instance's address and the container port.
    let host_backend = Backend::start("host").await;
    let host_port = host_backend.addr.port() as i32;
    emu.task_definition("hostnet", Mode::Host, host_port).await;
    let host_task = emu.start_task(CLUSTER, "hostnet", "hostnet", &ci).await;
    emu.set(
        std::slice::from_ref(&host_task),
        json!({"lastStatus": "RUNNING"}),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let text = config(&[
        group("vpc", "vpc", &emu.url(), "").replace(
            "container_port = 8080",
            &format!("container_port = {vpc_port}"),
        ),
        group("hostnet", "hostnet", &emu.url(), "").replace(
            "container_port = 8080",
            &format!("container_port = {host_port}"),
        ),
    ]);
    let sw = seawall(dir.path(), &text, &["vpc", "hostnet"]).await;
    wait_targets(&sw, "vpc", &[(vpc_backend.addr, "healthy")]).await;
    wait_targets(&sw, "hostnet", &[(host_backend.addr, "healthy")]).await;
    assert_eq!(
        targets(&sw, "vpc").await[&vpc_backend.addr.to_string()].2,
        vpc_task
    );
    assert_eq!(get(sw.addr("vpc"), false, "x", "/").await.status, 200);
    assert_eq!(get(sw.addr("hostnet"), false, "x", "/").await.status, 200);
    assert_eq!(vpc_backend.hits(), 1);
    assert_eq!(host_backend.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_healthy_tasks_only_an_unhealthy_container_is_not_a_target() {
    let mut fleet = Fleet::new(1).await;
    let a = fleet.launch("api", 0).await;
    let b = fleet.launch("api", 0).await;
    fleet
        .emu
        .set(std::slice::from_ref(&b), json!({"health": "UNHEALTHY"}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let sw = seawall(
        dir.path(),
        &config(&[group(
            "api",
            "api",
            &fleet.emu.url(),
            "healthy_tasks_only = true",
        )]),
        &["api"],
    )
    .await;
    let (pa, pb) = (fleet.addr(&a), fleet.addr(&b));
    wait_targets(&sw, "api", &[(pa, "healthy")]).await;
    // Container health changes are seen without a change in the listing.
    fleet
        .emu
        .set(std::slice::from_ref(&b), json!({"health": "HEALTHY"}))
        .await;
    wait_targets(&sw, "api", &[(pa, "healthy"), (pb, "healthy")]).await;
    fleet
        .emu
        .set(std::slice::from_ref(&a), json!({"health": "UNHEALTHY"}))
        .await;
    wait_targets(&sw, "api", &[(pa, "draining"), (pb, "healthy")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_outage_keeps_the_targets_counts_errors_and_recovers() {
    let mut fleet = Fleet::new(1).await;
    let a = fleet.launch("api", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let sw = fleet.seawall(dir.path(), "").await;
    let pa = fleet.addr(&a);
    wait_targets(&sw, "api", &[(pa, "healthy")]).await;

    // Throttling: counted by reason, the targets stay.
    fleet
        .emu
        .control("POST", "/_emulator/throttle", json!({"count": 6}))
        .await;
    let errors = |m: &str, reason: &str| {
        metric_value(
            m,
            "seawall_discovery_errors_total",
            &[("target_group", "api"), ("reason", reason)],
        )
    };
    assert!(
        eventually(SETTLE, || async {
            errors(&metrics(&sw).await, "throttled") >= 1.0
        })
        .await,
        "{}",
        metrics(&sw).await
    );
    // An emulator that answers nothing at all: every call meets its deadline.
    fleet.emu.pause();
    let during = get(sw.addr("api"), false, "x", "/").await;
    assert!(
        eventually(Duration::from_secs(40), || async {
            errors(&metrics(&sw).await, "timeout") >= 1.0
        })
        .await,
        "{}",
        metrics(&sw).await
    );
    fleet.emu.resume();
    assert_eq!(during.status, 200, "the group kept its target");
    wait_targets(&sw, "api", &[(pa, "healthy")]).await;
    // Recovery: a new task is found once the API answers again.
    let b = fleet.launch("api", 0).await;
    let pb = fleet.addr(&b);
    wait_targets(&sw, "api", &[(pa, "healthy"), (pb, "healthy")]).await;
    let m = metrics(&sw).await;
    assert_eq!(
        metric_value(&m, "seawall_discovery_targets", &[("target_group", "api")]),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_and_fifty_tasks_are_listed_by_pages_and_described_in_batches() {
    let fleet = Fleet::new(1).await;
    let arns = fleet.emu.run_tasks(CLUSTER, "api", "bulk", 150).await;
    fleet.emu.set(&arns, json!({"lastStatus": "RUNNING"})).await;
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on the allocated ports: the targets stay unhealthy, which is beside the
    // point here. A slow health check keeps the log quiet.
    let text = config(&[group("bulk", "bulk", &fleet.emu.url(), "")])
        .replace("interval = \"200ms\"", "interval = \"60s\"")
        .replace("timeout = \"150ms\"", "timeout = \"1s\"");
    fleet.emu.reset_calls().await;
    let sw = seawall(dir.path(), &text, &["bulk"]).await;
    assert!(
        eventually(SETTLE, || async { targets(&sw, "bulk").await.len() == 150 }).await,
        "{}",
        sw.log()
    );
    let first = fleet.emu.calls().await;
    assert_eq!(first["ListTasks"], 2, "two pages: {first}");
    assert_eq!(first["DescribeTasks"], 2, "two batches: {first}");
    assert_eq!(first["DescribeContainerInstances"], 1, "{first}");
    assert_eq!(first["DescribeInstances"], 1, "{first}");
    // Once every task is settled, a refresh is the listing alone.
    fleet.emu.reset_calls().await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let settled = fleet.emu.calls().await;
    let pages = settled["ListTasks"].as_u64().unwrap();
    assert!(pages >= 4 && pages % 2 == 0, "{settled}");
    assert_eq!(
        settled.as_object().unwrap().len(),
        1,
        "only ListTasks: {settled}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_follow_two_services_and_a_reload_changes_or_removes_discovery() {
    let mut fleet = Fleet::new(1).await;
    let a = fleet.launch("api", 0).await;
    let w = fleet.launch("web", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let url = fleet.emu.url();
    let sw = seawall(
        dir.path(),
        &config(&[group("api", "api", &url, ""), group("web", "web", &url, "")]),
        &["api", "web"],
    )
    .await;
    let (pa, pw) = (fleet.addr(&a), fleet.addr(&w));
    wait_targets(&sw, "api", &[(pa, "healthy")]).await;
    wait_targets(&sw, "web", &[(pw, "healthy")]).await;
    assert!(get(sw.addr("web"), false, "x", "/")
        .await
        .text()
        .contains(&w));

    // Reload: "web" now follows service "api"; "api" loses its discovery block.
    let reloaded = config(&[
        group("api", "api", &url, "")
            .split("  [target_groups.discovery.ecs]")
            .next()
            .unwrap()
            .to_string(),
        group("web", "api", &url, ""),
    ]);
    std::fs::write(dir.path().join("seawall.toml"), reloaded).unwrap();
    sw.signal("HUP");
    wait_targets(&sw, "web", &[(pw, "draining"), (pa, "healthy")]).await;
    wait_targets(&sw, "api", &[(pa, "draining")]).await;
    let m = metrics(&sw).await;
    assert!(
        !m.contains("seawall_discovery_targets{target_group=\"api\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_under_load_fails_no_request() {
    let mut fleet = Fleet::new(2).await;
    let mut running = Vec::new();
    for i in 0..3 {
        running.push(fleet.launch("api", i % 2).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let sw = fleet.seawall(dir.path(), "").await;
    let healthy: Vec<(SocketAddr, &str)> =
        running.iter().map(|t| (fleet.addr(t), "healthy")).collect();
    wait_targets(&sw, "api", &healthy).await;

    let load = Load::start(sw.addr("api"));
    let old = running.clone();
    let mut stops = Vec::new();
    for (i, arn) in old.iter().enumerate() {
        // ECS starts the replacement, waits for it to be healthy behind the load balancer, then
        // stops an old task, which keeps serving until its stopTimeout.
        let new = fleet.launch("api", i % 2).await;
        let new_addr = fleet.addr(&new);
        assert!(
            eventually(SETTLE, || async {
                targets(&sw, "api")
                    .await
                    .get(&new_addr.to_string())
                    .map(|t| t.0.as_str())
                    == Some("healthy")
            })
            .await,
            "{}",
            sw.log()
        );
        stops.push(fleet.stop(arn, Duration::from_secs(3)));
        running.push(new);
    }
    for s in stops {
        s.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (sent, failed) = load.finish().await;
    assert!(sent > 100, "the load ran: {sent}");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
    for arn in &running[3..] {
        assert!(
            fleet.containers[arn].hits() > 0,
            "the new tasks took traffic"
        );
    }
}

/// The refresh of `sw`'s log, after its first `skip` lines, whose `targets` field is `targets`:
/// how long it took, in microseconds.
fn refresh_elapsed(sw: &Proc, skip: usize, targets: usize) -> Option<u64> {
    let log = sw.log();
    log.lines()
        .skip(skip)
        .filter(|l| l.contains("ECS refresh"))
        .find(|l| common::process::field(l, "targets") == Some(&targets.to_string()))
        .and_then(|l| common::process::field(l, "elapsed_us")?.parse().ok())
}

/// A benchmark, not a test: `benches/discovery.sh` runs it. With 500 tasks in a service, it
/// prints the API calls one refresh makes when nothing changed, and how long the refresh that
/// sees a task start or stop takes (the wait for the refresh itself excluded), with and without
/// `healthy_tasks_only`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: benches/discovery.sh"]
async fn discovery_benchmark_with_500_tasks() {
    const TASKS: usize = 500;
    // Ten container instances: a t3.small fits 64 of these tasks by memory.
    let fleet = Fleet::new(10).await;
    let arns = fleet
        .emu
        .run_tasks(CLUSTER, "api", "bulk", TASKS as i32)
        .await;
    fleet.emu.set(&arns, json!({"lastStatus": "RUNNING"})).await;
    println!("tasks: {TASKS}; refresh: 1s; each figure the median of 5 runs");
    for healthy_only in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let extra = if healthy_only {
            "healthy_tasks_only = true"
        } else {
            ""
        };
        let text = config(&[group("bulk", "bulk", &fleet.emu.url(), extra)])
            .replace("interval = \"200ms\"", "interval = \"300s\"")
            .replace("timeout = \"150ms\"", "timeout = \"5s\"");
        let path = dir.path().join("seawall.toml");
        std::fs::write(&path, text).unwrap();
        let sw = Proc::start_with(&path, &["bulk"], true, |c| {
            aws_env(c);
            c.env("RUST_LOG", "info,seawall::discovery=debug");
        })
        .await;
        let count = |sw: &Proc| {
            let sw_admin = sw.admin();
            async move {
                let m = common::fetch_metrics(sw_admin).await;
                metric_value(&m, "seawall_discovery_targets", &[("target_group", "bulk")]) as usize
            }
        };
        assert!(
            eventually(Duration::from_secs(60), || async {
                count(&sw).await == TASKS
            })
            .await,
            "{}",
            sw.log()
        );

        // Calls per refresh with nothing changing.
        let refreshes = |m: &str| {
            metric_value(
                m,
                "seawall_discovery_refresh_seconds_count",
                &[("target_group", "bulk")],
            )
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        fleet.emu.reset_calls().await;
        let before = refreshes(&metrics(&sw).await);
        tokio::time::sleep(Duration::from_secs(8)).await;
        let calls = fleet.emu.calls().await;
        let after = refreshes(&metrics(&sw).await);
        let n = after - before;
        let per = |api: &str| calls[api].as_f64().unwrap_or(0.0) / n;

        // One task starts, one stops: the refresh that sees each.
        let (mut started, mut stopped) = (Vec::new(), Vec::new());
        let mut live = TASKS;
        for _ in 0..5 {
            let skip = sw.log().lines().count();
            let new = fleet.emu.run_tasks(CLUSTER, "api", "bulk", 1).await;
            fleet.emu.set(&new, json!({"lastStatus": "RUNNING"})).await;
            live += 1;
            assert!(eventually(SETTLE, || async { count(&sw).await == live }).await);
            started.push(refresh_elapsed(&sw, skip, live).unwrap());
            let skip = sw.log().lines().count();
            fleet.emu.stop_task(CLUSTER, &new[0]).await;
            live -= 1;
            assert!(eventually(SETTLE, || async { count(&sw).await == live }).await);
            stopped.push(refresh_elapsed(&sw, skip, live).unwrap());
        }
        let median = |v: &mut Vec<u64>| {
            v.sort();
            v[v.len() / 2] as f64 / 1000.0
        };
        println!(
            "healthy_tasks_only={healthy_only}: per refresh with nothing changed ({n} refreshes): \
             ListTasks {:.1}, DescribeTasks {:.1}, DescribeContainerInstances {:.1}, \
             DescribeInstances {:.1}, DescribeTaskDefinition {:.1}; refresh that sees a new task \
             {:.1} ms, a stopped task {:.1} ms",
            per("ListTasks"),
            per("DescribeTasks"),
            per("DescribeContainerInstances"),
            per("DescribeInstances"),
            per("DescribeTaskDefinition"),
            median(&mut started),
            median(&mut stopped),
        );
    }
}

/// A POST to the admin API with a JSON body.
async fn admin_post(sw: &Proc, path: &str, payload: Value) -> common::Got {
    common::post(sw.admin(), path, payload.to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_targets_sit_beside_api_ones_and_a_reused_host_port_is_a_new_target() {
    let mut fleet = Fleet::new(1).await;
    let a = fleet.launch("api", 0).await;
    let b = fleet.launch("api", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let sw = fleet.seawall(dir.path(), "").await;
    let (pa, pb) = (fleet.addr(&a), fleet.addr(&b));
    wait_targets(&sw, "api", &[(pa, "healthy"), (pb, "healthy")]).await;

    // Deregistering a discovered target by hand is refused, and changes nothing.
    let got = admin_post(
        &sw,
        "/targets/deregister",
        json!({"target_group": "api", "targets": [pa.to_string()]}),
    )
    .await;
    assert_eq!(got.status, 409, "{}", got.text());
    assert!(got.text().contains(&a), "names the task: {}", got.text());
    wait_targets(&sw, "api", &[(pa, "healthy"), (pb, "healthy")]).await;

    // The API registers a discovered address too: it stays when its task stops.
    let got = admin_post(
        &sw,
        "/targets/register",
        json!({"target_group": "api", "targets": [pb.to_string()]}),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        targets(&sw, "api").await[&pb.to_string()].1,
        "api+discovery"
    );
    fleet.stop(&b, Duration::ZERO).await.unwrap();
    // Discovery lets go and the API keeps it: its backend is gone, so its health check fails,
    // but it is not drained.
    let kept = eventually(SETTLE, || async {
        targets(&sw, "api").await[&pb.to_string()]
            == ("unhealthy".into(), "api".into(), String::new())
    })
    .await;
    assert!(kept, "{:?}", targets(&sw, "api").await);

    // A's task stops and exits; a new task gets its host port while A's target still drains.
    fleet.stop(&a, Duration::ZERO).await.unwrap();
    wait_targets(&sw, "api", &[(pa, "draining"), (pb, "unhealthy")]).await;
    let c = fleet
        .emu
        .start_task(CLUSTER, "api", "api", &fleet.instances[0])
        .await;
    let reborn = Backend::start_on(pa, "reborn").await;
    fleet
        .emu
        .set(
            std::slice::from_ref(&c),
            json!({"hostPort": pa.port(), "lastStatus": "RUNNING"}),
        )
        .await;
    let listed = |sw: &Proc| {
        let admin = sw.admin();
        async move {
            let all = get(admin, false, "admin", "/targets").await.json();
            all["target_groups"][0]["TargetHealthDescriptions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["Target"]["Port"] == pa.port())
                .map(|d| {
                    (
                        d["TargetHealth"]["State"].as_str().unwrap().to_string(),
                        d["TaskArn"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let want = |mut v: Vec<(String, String)>| {
        v.sort();
        v == [
            ("draining".to_string(), a.clone()),
            ("healthy".to_string(), c.clone()),
        ]
    };
    assert!(
        eventually(SETTLE, || async { want(listed(&sw).await) }).await,
        "{:?}\n{}",
        listed(&sw).await,
        sw.log()
    );
    assert_eq!(get(sw.addr("api"), false, "x", "/").await.status, 200);
    assert!(reborn.hits() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_the_first_refresh_of_each_discovery_group() {
    let mut fleet = Fleet::new(1).await;
    let a = fleet.launch("api", 0).await;
    let dir = tempfile::tempdir().unwrap();
    fleet.emu.pause();
    let sw = fleet.seawall(dir.path(), "").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = get(sw.admin(), false, "admin", "/ready").await;
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("api"), "{}", ready.text());
    fleet.emu.resume();
    sw.wait_ready().await;
    wait_targets(&sw, "api", &[(fleet.addr(&a), "healthy")]).await;

    // Readiness is a start-up gate: a reload that restarts the watcher while the API does not
    // answer leaves a serving process ready.
    fleet.emu.pause();
    let text = config(&[group("api", "api", &fleet.emu.url(), "")])
        .replace("refresh = \"1s\"", "refresh = \"2s\"");
    std::fs::write(dir.path().join("seawall.toml"), text).unwrap();
    sw.signal("HUP");
    assert!(
        eventually(SETTLE, || async {
            sw.log().contains("restarting its watcher")
        })
        .await,
        "{}",
        sw.log()
    );
    assert_eq!(get(sw.admin(), false, "admin", "/ready").await.status, 200);
    fleet.emu.resume();
}
