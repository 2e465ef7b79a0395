//! The ECS source: one refresh lists the tasks, describes what it has not settled, resolves
//! addresses and says the targets as one [`Update::Reset`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{Histogram, IntCounterVec, IntGauge};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::api::{ApiError, EcsApi, ErrorKind, Health, NetworkMode, TaskFacts};
use super::Settings;
use crate::discovery::{SourceError, TargetSource};
use crate::metrics::Metrics;
use crate::targets::{Registration, Update};

/// ECS's limit on the tasks one DescribeTasks (and the container instances one
/// DescribeContainerInstances) may name.
const BATCH: usize = 100;

/// The longest wait after failed refreshes, whatever the refresh interval.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Spread of each wait around the refresh interval, so that seawall instances started together
/// do not call the API in step.
const JITTER: f64 = 0.1;

/// Follows the tasks of one discovery block. See the module doc of [`super`].
pub struct Ecs<A> {
    api: A,
    settings: Settings,
    /// Every listed task, described or not, by ARN.
    tasks: HashMap<String, Known>,
    /// Container instance ARN → EC2 instance id: fixed for the instance's life.
    instances: HashMap<String, String>,
    /// EC2 instance id → private IPv4 address: fixed for the instance's life.
    addresses: HashMap<String, IpAddr>,
    /// Task definition ARN (family:revision) → network mode: a revision never changes.
    networks: HashMap<String, NetworkMode>,
    /// Failed refreshes in a row.
    failures: u32,
    next_at: Option<Instant>,
    meters: Meters,
}

/// What is known of a listed task.
#[derive(Debug, Default)]
struct Known {
    /// The last description; `None` until one arrives (DescribeTasks may leave it out).
    facts: Option<TaskFacts>,
    /// Where its container takes traffic, once known.
    addr: Option<SocketAddr>,
    /// Why it can never be a target (no such container, no network): said once, not re-described.
    unusable: Option<String>,
    /// Said once that its address is still missing.
    warned: bool,
}

impl Known {
    /// Running with an address (or never usable): describing it again would change nothing,
    /// unless container health matters.
    fn settled(&self) -> bool {
        self.unusable.is_some() || (self.running() && self.addr.is_some())
    }

    fn running(&self) -> bool {
        self.facts
            .as_ref()
            .is_some_and(|f| f.last_status == "RUNNING")
    }

    /// Running, usable, and its address not found yet.
    fn unresolved(&self) -> bool {
        self.running() && self.addr.is_none() && self.unusable.is_none()
    }
}

/// Where a running task takes traffic.
enum Placement<'k> {
    /// awsvpc: its own interface's address, the container's port.
    Interface(SocketAddr),
    /// bridge or host mode: a port of the container instance it runs on.
    Host {
        instance: &'k String,
        port: u16,
    },
    /// Not bound yet.
    Unbound,
    Unusable(String),
}

/// The group's discovery metrics, resolved once.
struct Meters {
    group: Arc<str>,
    targets: IntGauge,
    last_success: IntGauge,
    refresh_seconds: Histogram,
    errors: IntCounterVec,
    api_calls: IntCounterVec,
}

impl Meters {
    fn call(&self, api: &str) {
        self.api_calls.with_label_values(&[api]).inc();
    }

    fn error(&self, reason: &str) {
        self.errors.with_label_values(&[&*self.group, reason]).inc();
    }
}

impl<A: EcsApi> Ecs<A> {
    pub fn new(api: A, settings: Settings, group: Arc<str>, metrics: &Metrics) -> Self {
        let g = &*group;
        let meters = Meters {
            targets: metrics.discovery_targets.with_label_values(&[g]),
            last_success: metrics
                .discovery_last_success_timestamp_seconds
                .with_label_values(&[g]),
            refresh_seconds: metrics.discovery_refresh_seconds.with_label_values(&[g]),
            errors: metrics.discovery_errors_total.clone(),
            api_calls: metrics.discovery_api_calls_total.clone(),
            group,
        };
        Ecs {
            api,
            settings,
            tasks: HashMap::new(),
            instances: HashMap::new(),
            addresses: HashMap::new(),
            networks: HashMap::new(),
            failures: 0,
            next_at: None,
            meters,
        }
    }

    /// One refresh: the targets the service's tasks are now.
    pub async fn refresh(&mut self) -> Result<Vec<Registration>, ApiError> {
        let started = Instant::now();
        let listed = self.list().await?;
        self.tasks.retain(|arn, _| listed.contains(arn));
        for arn in &listed {
            self.tasks.entry(arn.clone()).or_default();
        }
        let described = self.describe().await?;
        self.resolve().await?;
        self.prune_caches();
        let regs = self.registrations();
        debug!(
            target_group = %self.meters.group,
            listed = listed.len(),
            described,
            targets = regs.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "ECS refresh"
        );
        Ok(regs)
    }

    /// Every page of the listing. A token handed out twice would page forever: that answer is
    /// refused like any other bad one.
    async fn list(&self) -> Result<HashSet<String>, ApiError> {
        let mut listed = HashSet::new();
        let mut tokens = HashSet::new();
        let mut next = None;
        loop {
            self.meters.call("ListTasks");
            let page = self.api.list_tasks(next).await?;
            listed.extend(page.task_arns);
            match page.next {
                Some(token) if !tokens.insert(token.clone()) => {
                    return Err(ApiError {
                        api: "ListTasks",
                        kind: ErrorKind::Response,
                        detail: "the same nextToken came back twice".into(),
                    })
                }
                Some(token) => next = Some(token),
                None => return Ok(listed),
            }
        }
    }

    /// Describes the tasks not settled yet (every task, when container health counts). A task
    /// the answer lists as a failure keeps what was known of it: a partial answer changes only
    /// what it covers. Returns how many tasks it asked about.
    async fn describe(&mut self) -> Result<usize, ApiError> {
        let healthy_only = self.settings.healthy_tasks_only;
        let mut wanted: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, k)| healthy_only || !k.settled())
            .map(|(arn, _)| arn.clone())
            .collect();
        wanted.sort();
        for batch in wanted.chunks(BATCH) {
            self.meters.call("DescribeTasks");
            let answer = self.api.describe_tasks(batch.to_vec()).await?;
            if !answer.failed.is_empty() {
                self.meters.error("describe_failures");
                debug!(target_group = %self.meters.group, failed = ?answer.failed, "DescribeTasks left tasks out; what was known of them stands");
            }
            for facts in answer.tasks {
                let Some(known) = self.tasks.get_mut(&facts.arn) else {
                    continue;
                };
                if known.facts.as_ref() != Some(&facts) {
                    // A changed description (a new binding, a restarted container) is read anew.
                    known.addr = None;
                }
                known.facts = Some(facts);
            }
        }
        Ok(wanted.len())
    }

    /// Finds the address of every running task that has none yet.
    async fn resolve(&mut self) -> Result<(), ApiError> {
        // Task definitions first: only tasks with neither an interface nor a binding need theirs.
        let mut definitions: Vec<String> = Vec::new();
        for k in self.tasks.values().filter(|k| k.unresolved()) {
            let f = k.facts.as_ref().expect("unresolved tasks are described");
            let unbound =
                f.interface_address.is_none() && f.container.is_some_and(|c| c.host_port.is_none());
            match &f.task_definition {
                Some(td)
                    if unbound && !self.networks.contains_key(td) && !definitions.contains(td) =>
                {
                    definitions.push(td.clone());
                }
                _ => {}
            }
        }
        for td in definitions {
            self.meters.call("DescribeTaskDefinition");
            let mode = self.api.describe_task_definition(td.clone()).await?;
            self.networks.insert(td, mode);
        }

        // Then the container instances of tasks bound to a host port, and their addresses.
        let mut on_instances: Vec<String> = Vec::new();
        for k in self.tasks.values().filter(|k| k.unresolved()) {
            if let Placement::Host { instance, .. } = self.placement(k) {
                if !self.instances.contains_key(instance) && !on_instances.contains(instance) {
                    on_instances.push(instance.clone());
                }
            }
        }
        for batch in on_instances.chunks(BATCH) {
            self.meters.call("DescribeContainerInstances");
            let found = self
                .api
                .describe_container_instances(batch.to_vec())
                .await?;
            self.instances.extend(found);
        }
        let ids: HashSet<&String> = self
            .instances
            .values()
            .filter(|id| !self.addresses.contains_key(*id))
            .collect();
        let ids: Vec<String> = ids.into_iter().cloned().collect();
        // DescribeInstances takes up to 1000 ids; a hundred keeps each answer small.
        for batch in ids.chunks(BATCH) {
            self.meters.call("DescribeInstances");
            let found = self.api.describe_instances(batch.to_vec()).await?;
            self.addresses.extend(found);
        }

        let mut outcome: Vec<(String, Result<Option<SocketAddr>, String>)> = Vec::new();
        for (arn, k) in self.tasks.iter().filter(|(_, k)| k.unresolved()) {
            let found = match self.placement(k) {
                Placement::Interface(addr) => Ok(Some(addr)),
                Placement::Host { instance, port } => Ok(self
                    .instances
                    .get(instance)
                    .and_then(|id| self.addresses.get(id))
                    .map(|ip| SocketAddr::new(*ip, port))),
                Placement::Unbound => Ok(None),
                Placement::Unusable(why) => Err(why),
            };
            outcome.push((arn.clone(), found));
        }
        let port = self.settings.container_port;
        for (arn, found) in outcome {
            let k = self.tasks.get_mut(&arn).expect("listed above");
            match found {
                Ok(Some(addr)) => k.addr = Some(addr),
                // Bridge mode before the binding is reported, awsvpc before the interface is
                // attached, an instance EC2 did not describe: described again next time.
                Ok(None) => {
                    if !k.warned {
                        k.warned = true;
                        debug!(target_group = %self.meters.group, task = %arn, "running, but where container port {port} is reachable is not known yet");
                    }
                }
                Err(why) => {
                    warn!(target_group = %self.meters.group, task = %arn, "{why}; the task is not registered");
                    k.unusable = Some(why);
                }
            }
        }
        Ok(())
    }

    /// Where a running task's container port is reachable, as far as the caches know.
    fn placement<'k>(&self, k: &'k Known) -> Placement<'k> {
        let f = k.facts.as_ref().expect("unresolved tasks are described");
        let port = self.settings.container_port;
        let Some(container) = f.container else {
            return Placement::Unusable(format!(
                "it has no container named {:?}",
                self.settings.container
            ));
        };
        if let Some(ip) = f.interface_address {
            return Placement::Interface(SocketAddr::new(ip, port));
        }
        let mode = f
            .task_definition
            .as_ref()
            .and_then(|td| self.networks.get(td));
        let host_port = match (container.host_port, mode) {
            (Some(p), _) => p,
            // Host mode: the container's port is the host's.
            (None, Some(NetworkMode::Host)) => port,
            (None, Some(NetworkMode::Isolated)) => {
                return Placement::Unusable("its task definition's network mode is none".into())
            }
            _ => return Placement::Unbound,
        };
        match &f.container_instance {
            Some(instance) => Placement::Host {
                instance,
                port: host_port,
            },
            None => Placement::Unusable(
                "it is bound to a host port but runs on no container instance".into(),
            ),
        }
    }

    /// Forgets instances, addresses and task definitions no listed task refers to any more.
    fn prune_caches(&mut self) {
        let facts = || self.tasks.values().filter_map(|k| k.facts.as_ref());
        let instances: HashSet<&String> = facts()
            .filter_map(|f| f.container_instance.as_ref())
            .collect();
        let definitions: HashSet<&String> =
            facts().filter_map(|f| f.task_definition.as_ref()).collect();
        self.instances.retain(|ci, _| instances.contains(ci));
        let ids: HashSet<&String> = self.instances.values().collect();
        self.addresses.retain(|id, _| ids.contains(id));
        self.networks.retain(|td, _| definitions.contains(td));
    }

    /// The listed tasks that are targets: running, with an address, and healthy when that counts.
    fn registrations(&self) -> Vec<Registration> {
        let healthy_only = self.settings.healthy_tasks_only;
        let mut regs: Vec<Registration> = self
            .tasks
            .iter()
            .filter(|(_, k)| k.running())
            .filter(|(_, k)| {
                !healthy_only
                    || k.facts.as_ref().and_then(|f| f.container).map(|c| c.health)
                        == Some(Health::Healthy)
            })
            .filter_map(|(arn, k)| {
                k.addr.map(|addr| Registration {
                    addr,
                    task_arn: Some(arn.as_str().into()),
                })
            })
            .collect();
        regs.sort_by(|a, b| a.addr.cmp(&b.addr).then(a.task_arn.cmp(&b.task_arn)));
        regs
    }

    /// The wait before the next refresh: the interval after a success, growing after failures.
    fn wait(&self) -> Duration {
        let refresh = self.settings.refresh;
        if self.failures == 0 {
            return refresh.mul_f64(1.0 + JITTER * (2.0 * fastrand::f64() - 1.0));
        }
        let cap = MAX_BACKOFF.max(refresh);
        let backoff = refresh
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(cap);
        // Full jitter over the upper half: failing instances spread out, none retries at once.
        backoff.mul_f64(0.5 + 0.5 * fastrand::f64())
    }
}

impl<A: EcsApi> TargetSource for Ecs<A> {
    fn name(&self) -> String {
        self.settings.describe()
    }

    async fn next(&mut self) -> Option<Result<Update, SourceError>> {
        if let Some(at) = self.next_at {
            tokio::time::sleep_until(at).await;
        }
        let started = Instant::now();
        let outcome = self.refresh().await;
        self.meters
            .refresh_seconds
            .observe(started.elapsed().as_secs_f64());
        let result = match outcome {
            Ok(regs) => {
                self.failures = 0;
                self.meters.targets.set(regs.len() as i64);
                self.meters.last_success.set(unix_now());
                Ok(Update::Reset(regs))
            }
            Err(e) => {
                self.failures += 1;
                self.meters.error(e.kind.as_str());
                Err(SourceError {
                    source_name: self.name(),
                    reason: e.to_string(),
                })
            }
        };
        self.next_at = Some(Instant::now() + self.wait());
        Some(result)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::api::{ContainerFacts, Described, Page};
    use super::super::Selector;
    use super::*;

    /// An ECS and EC2 API answered from memory, counting calls.
    #[derive(Default)]
    struct World {
        tasks: Vec<TaskFacts>,
        failing: Vec<String>,
        instances: HashMap<String, String>,
        addresses: HashMap<String, IpAddr>,
        networks: HashMap<String, NetworkMode>,
        calls: HashMap<&'static str, usize>,
        /// The next call fails with this.
        outage: Option<ErrorKind>,
    }

    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<World>>);

    impl Fake {
        fn call(&self, api: &'static str) -> Result<std::sync::MutexGuard<'_, World>, ApiError> {
            let mut w = self.0.lock().unwrap();
            *w.calls.entry(api).or_default() += 1;
            match w.outage {
                Some(kind) => Err(ApiError {
                    api,
                    kind,
                    detail: "unavailable".into(),
                }),
                None => Ok(w),
            }
        }

        fn calls(&self) -> HashMap<&'static str, usize> {
            std::mem::take(&mut self.0.lock().unwrap().calls)
        }

        fn world(&self) -> std::sync::MutexGuard<'_, World> {
            self.0.lock().unwrap()
        }
    }

    impl EcsApi for Fake {
        async fn list_tasks(&self, next: Option<String>) -> Result<Page, ApiError> {
            let w = self.call("ListTasks")?;
            let start: usize = next.map_or(0, |n| n.parse().unwrap());
            let end = (start + 100).min(w.tasks.len());
            Ok(Page {
                task_arns: w.tasks[start..end].iter().map(|t| t.arn.clone()).collect(),
                next: (end < w.tasks.len()).then(|| end.to_string()),
            })
        }

        async fn describe_tasks(&self, arns: Vec<String>) -> Result<Described, ApiError> {
            let w = self.call("DescribeTasks")?;
            assert!(arns.len() <= 100, "ECS refuses more than 100 tasks");
            let (failed, asked): (Vec<String>, Vec<String>) =
                arns.into_iter().partition(|a| w.failing.contains(a));
            Ok(Described {
                tasks: w
                    .tasks
                    .iter()
                    .filter(|t| asked.contains(&t.arn))
                    .cloned()
                    .collect(),
                failed,
            })
        }

        async fn describe_container_instances(
            &self,
            arns: Vec<String>,
        ) -> Result<Vec<(String, String)>, ApiError> {
            let w = self.call("DescribeContainerInstances")?;
            Ok(arns
                .into_iter()
                .filter_map(|a| Some((a.clone(), w.instances.get(&a)?.clone())))
                .collect())
        }

        async fn describe_instances(
            &self,
            ids: Vec<String>,
        ) -> Result<Vec<(String, IpAddr)>, ApiError> {
            let w = self.call("DescribeInstances")?;
            Ok(ids
                .into_iter()
                .filter_map(|i| Some((i.clone(), *w.addresses.get(&i)?)))
                .collect())
        }

        async fn describe_task_definition(&self, arn: String) -> Result<NetworkMode, ApiError> {
            let w = self.call("DescribeTaskDefinition")?;
            Ok(w.networks[&arn])
        }
    }

    fn settings(healthy_tasks_only: bool) -> Settings {
        Settings {
            cluster: "prod".into(),
            tasks: Selector::Service("api".into()),
            container: "app".into(),
            container_port: 8080,
            refresh: Duration::from_secs(10),
            region: None,
            endpoint: None,
            healthy_tasks_only,
        }
    }

    /// A running bridge-mode task on container instance `ci` bound to `host_port`.
    fn bridge(n: u32, ci: &str, host_port: u16) -> TaskFacts {
        TaskFacts {
            arn: format!("task/{n}"),
            last_status: "RUNNING".into(),
            container_instance: Some(ci.into()),
            task_definition: Some("td/api:1".into()),
            interface_address: None,
            container: Some(ContainerFacts {
                host_port: Some(host_port),
                health: Health::Healthy,
            }),
        }
    }

    /// Two container instances, `ci/a` at 10.0.0.1 and `ci/b` at 10.0.0.2.
    fn world(tasks: Vec<TaskFacts>) -> Fake {
        let fake = Fake::default();
        {
            let mut w = fake.world();
            w.tasks = tasks;
            for (ci, id, ip) in [
                ("ci/a", "i-a", [10, 0, 0, 1]),
                ("ci/b", "i-b", [10, 0, 0, 2]),
            ] {
                w.instances.insert(ci.into(), id.into());
                w.addresses.insert(id.into(), IpAddr::from(ip));
            }
            w.networks.insert("td/api:1".into(), NetworkMode::Bridge);
        }
        fake
    }

    fn source(fake: &Fake, healthy_tasks_only: bool) -> Ecs<Fake> {
        Ecs::new(
            fake.clone(),
            settings(healthy_tasks_only),
            "api".into(),
            &Metrics::new(),
        )
    }

    fn addrs(regs: &[Registration]) -> Vec<String> {
        regs.iter().map(|r| r.addr.to_string()).collect()
    }

    fn calls(list: &[(&'static str, usize)]) -> HashMap<&'static str, usize> {
        list.iter().copied().collect()
    }

    #[tokio::test]
    async fn bridge_tasks_are_found_at_their_instance_and_host_port_then_cost_one_listing() {
        let fake = world(vec![
            bridge(1, "ci/a", 32768),
            bridge(2, "ci/a", 32769),
            bridge(3, "ci/b", 32768),
        ]);
        let mut ecs = source(&fake, false);
        let regs = ecs.refresh().await.unwrap();
        assert_eq!(
            addrs(&regs),
            ["10.0.0.1:32768", "10.0.0.1:32769", "10.0.0.2:32768"]
        );
        assert_eq!(regs[0].task_arn.as_deref(), Some("task/1"));
        assert_eq!(
            fake.calls(),
            calls(&[
                ("ListTasks", 1),
                ("DescribeTasks", 1),
                ("DescribeContainerInstances", 1),
                ("DescribeInstances", 1)
            ])
        );
        // Every task settled: nothing but the listing.
        assert_eq!(ecs.refresh().await.unwrap(), regs);
        assert_eq!(fake.calls(), calls(&[("ListTasks", 1)]));
    }

    #[tokio::test]
    async fn a_task_is_registered_once_running_with_its_port_bound() {
        let mut pending = bridge(1, "ci/a", 32768);
        pending.last_status = "PENDING".into();
        pending.container.as_mut().unwrap().host_port = None;
        let fake = world(vec![pending]);
        let mut ecs = source(&fake, false);
        assert!(ecs.refresh().await.unwrap().is_empty());
        // Running, but the binding is not reported yet: still not a target, described again.
        {
            let mut w = fake.world();
            w.tasks[0].last_status = "RUNNING".into();
        }
        assert!(ecs.refresh().await.unwrap().is_empty());
        fake.world().tasks[0].container.as_mut().unwrap().host_port = Some(32768);
        fake.calls();
        assert_eq!(addrs(&ecs.refresh().await.unwrap()), ["10.0.0.1:32768"]);
        assert_eq!(fake.calls()["DescribeTasks"], 1);
        // The task definition was read once, to learn that bridge mode has to wait for a binding.
        assert!(ecs.networks.contains_key("td/api:1"));
    }

    #[tokio::test]
    async fn many_tasks_are_listed_by_pages_and_described_in_batches_of_a_hundred() {
        let tasks = (0..250)
            .map(|n| {
                bridge(
                    n,
                    if n % 2 == 0 { "ci/a" } else { "ci/b" },
                    30000 + n as u16,
                )
            })
            .collect();
        let fake = world(tasks);
        let mut ecs = source(&fake, false);
        assert_eq!(ecs.refresh().await.unwrap().len(), 250);
        let c = fake.calls();
        assert_eq!((c["ListTasks"], c["DescribeTasks"]), (3, 3));
        ecs.refresh().await.unwrap();
        assert_eq!(fake.calls(), calls(&[("ListTasks", 3)]));
        // With container health counting, every listed task is described every time.
        let mut ecs = source(&fake, true);
        ecs.refresh().await.unwrap();
        fake.calls();
        ecs.refresh().await.unwrap();
        assert_eq!(
            fake.calls(),
            calls(&[("ListTasks", 3), ("DescribeTasks", 3)])
        );
    }

    #[tokio::test]
    async fn with_healthy_tasks_only_container_health_decides() {
        let fake = world(vec![bridge(1, "ci/a", 32768), bridge(2, "ci/b", 32768)]);
        fake.world().tasks[1].container.as_mut().unwrap().health = Health::Unhealthy;
        let mut ecs = source(&fake, true);
        assert_eq!(addrs(&ecs.refresh().await.unwrap()), ["10.0.0.1:32768"]);
        fake.world().tasks[1].container.as_mut().unwrap().health = Health::Healthy;
        fake.world().tasks[0].container.as_mut().unwrap().health = Health::Unknown;
        assert_eq!(addrs(&ecs.refresh().await.unwrap()), ["10.0.0.2:32768"]);
        // Without the option, health does not matter.
        let mut ecs = source(&fake, false);
        assert_eq!(ecs.refresh().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn awsvpc_tasks_take_their_interface_address_and_the_container_port() {
        let mut t = bridge(1, "ci/a", 0);
        t.container_instance = None;
        t.container.as_mut().unwrap().host_port = None;
        t.interface_address = Some([10, 1, 2, 3].into());
        let fake = world(vec![t]);
        let mut ecs = source(&fake, false);
        assert_eq!(addrs(&ecs.refresh().await.unwrap()), ["10.1.2.3:8080"]);
        assert_eq!(
            fake.calls(),
            calls(&[("ListTasks", 1), ("DescribeTasks", 1)])
        );
    }

    #[tokio::test]
    async fn host_mode_tasks_use_the_container_port_and_one_read_of_their_definition() {
        let tasks: Vec<TaskFacts> = (1..=3)
            .map(|n| {
                let mut t = bridge(n, if n == 1 { "ci/a" } else { "ci/b" }, 0);
                t.container.as_mut().unwrap().host_port = None;
                t.task_definition = Some("td/host:7".into());
                t
            })
            .collect();
        let fake = world(tasks);
        fake.world()
            .networks
            .insert("td/host:7".into(), NetworkMode::Host);
        let mut ecs = source(&fake, false);
        assert_eq!(
            addrs(&ecs.refresh().await.unwrap()),
            ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.2:8080"]
        );
        assert_eq!(fake.calls()["DescribeTaskDefinition"], 1, "cached by ARN");
    }

    #[tokio::test]
    async fn a_partial_answer_changes_only_what_it_covers() {
        let fake = world(vec![bridge(1, "ci/a", 32768)]);
        let mut ecs = source(&fake, true);
        assert_eq!(ecs.refresh().await.unwrap().len(), 1);
        // Task 1 is left out of the next answer, task 2 is new and left out too.
        {
            let mut w = fake.world();
            w.tasks.push(bridge(2, "ci/b", 32768));
            w.failing = vec!["task/1".into(), "task/2".into()];
        }
        assert_eq!(addrs(&ecs.refresh().await.unwrap()), ["10.0.0.1:32768"]);
        fake.world().failing.clear();
        assert_eq!(ecs.refresh().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_task_that_leaves_the_listing_leaves_the_targets_and_the_caches() {
        let fake = world(vec![bridge(1, "ci/a", 32768), bridge(2, "ci/b", 32768)]);
        let mut ecs = source(&fake, false);
        assert_eq!(ecs.refresh().await.unwrap().len(), 2);
        fake.world().tasks.remove(1);
        assert_eq!(addrs(&ecs.refresh().await.unwrap()), ["10.0.0.1:32768"]);
        assert_eq!(ecs.instances.keys().collect::<Vec<_>>(), ["ci/a"]);
        assert_eq!(ecs.addresses.keys().collect::<Vec<_>>(), ["i-a"]);
    }

    #[tokio::test]
    async fn a_task_without_the_container_is_not_registered_nor_described_again() {
        let mut t = bridge(1, "ci/a", 32768);
        t.container = None;
        let fake = world(vec![t]);
        let mut ecs = source(&fake, false);
        assert!(ecs.refresh().await.unwrap().is_empty());
        fake.calls();
        ecs.refresh().await.unwrap();
        assert_eq!(fake.calls(), calls(&[("ListTasks", 1)]));
    }

    /// A listing whose pages never end.
    #[derive(Clone)]
    struct Looping(Fake);

    impl EcsApi for Looping {
        async fn list_tasks(&self, _: Option<String>) -> Result<Page, ApiError> {
            Ok(Page {
                task_arns: vec!["task/1".into()],
                next: Some("again".into()),
            })
        }
        async fn describe_tasks(&self, arns: Vec<String>) -> Result<Described, ApiError> {
            self.0.describe_tasks(arns).await
        }
        async fn describe_container_instances(
            &self,
            arns: Vec<String>,
        ) -> Result<Vec<(String, String)>, ApiError> {
            self.0.describe_container_instances(arns).await
        }
        async fn describe_instances(
            &self,
            ids: Vec<String>,
        ) -> Result<Vec<(String, IpAddr)>, ApiError> {
            self.0.describe_instances(ids).await
        }
        async fn describe_task_definition(&self, arn: String) -> Result<NetworkMode, ApiError> {
            self.0.describe_task_definition(arn).await
        }
    }

    #[tokio::test]
    async fn a_listing_that_repeats_its_token_fails_instead_of_paging_forever() {
        let fake = world(vec![bridge(1, "ci/a", 32768)]);
        let mut ecs = Ecs::new(
            Looping(fake),
            settings(false),
            "api".into(),
            &Metrics::new(),
        );
        let err = ecs.refresh().await.unwrap_err();
        assert_eq!((err.api, err.kind), ("ListTasks", ErrorKind::Response));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_keep_the_targets_and_back_off() {
        let fake = world(vec![bridge(1, "ci/a", 32768)]);
        let mut ecs = source(&fake, false);
        assert!(matches!(ecs.next().await, Some(Ok(Update::Reset(r))) if r.len() == 1));
        fake.world().outage = Some(ErrorKind::Throttled);
        let mut waits = Vec::new();
        for _ in 0..4 {
            let err = ecs.next().await.unwrap().unwrap_err();
            assert!(err.reason.contains("ListTasks"), "{err}");
            waits.push(ecs.wait());
        }
        // Each wait is drawn from the upper half of a doubling backoff: 10s, 20s, 40s, 80s.
        for (n, w) in waits.iter().enumerate() {
            let b = Duration::from_secs(10 << n);
            assert!(*w >= b / 2 && *w <= b, "{n}: {w:?}");
        }
        fake.world().outage = None;
        assert!(matches!(ecs.next().await, Some(Ok(Update::Reset(r))) if r.len() == 1));
        let w = ecs.wait();
        assert!(w >= Duration::from_secs(9) && w <= Duration::from_secs(11));
    }
}
