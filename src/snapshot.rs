//! The compiled configuration the data plane serves from, and the narrow handle it is given.
//!
//! A configuration becomes a [`Snapshot`] in two steps. `config::compile` is pure: from the
//! validated file and the loaded certificates it builds a [`Compiled`] (TLS configurations,
//! routers, each group's settings), touching no run-time state, so a compile that fails leaves
//! nothing behind. [`Compiled::attach`] then joins each group to its live state in the target
//! registry and resolves its metric handles; it cannot fail, and runs only once a reload is sure
//! to go ahead. The snapshot is immutable and swapped whole; requests in flight finish on the one
//! they started with.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::warn;

use crate::access_log::AccessLog;
use crate::metrics::{Metrics, RequestMetrics};
use crate::protocol::Protocol;
use crate::routing::{GroupId, Router};
use crate::secrets::Secrets;
use crate::server::framing::Mitigation;
use crate::server::Limits;
use crate::stickiness::Sealer;
use crate::targets::{self, Origin, Registry, TargetGroup, Update};
use crate::tls::ListenerTls;

/// All the data plane is handed: the configuration in force and where to count. The control side
/// stores new snapshots; listeners, connections and requests only `load()` them.
pub struct Plane {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    /// The access and connection logs, steered by the control side (on, off, moved, reopened)
    /// and kept across snapshots.
    pub access_log: AccessLog,
}

/// A configuration compiled and checked, not yet joined to run-time state.
#[derive(Debug)]
pub struct Compiled {
    pub limits: Limits,
    /// Open client connections per listener; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    pub listeners: Vec<Listener>,
    pub target_groups: Vec<GroupPlan>,
    /// The sealer of stickiness cookies under the configured `cookie_key`; `None` when the file
    /// sets none, and the process's own key is used (see [`Compiled::attach`]).
    pub cookie_sealer: Option<Sealer>,
}

/// A target group as compiled, before it is joined to its state.
#[derive(Debug)]
pub struct GroupPlan {
    pub settings: targets::Settings,
    pub health_check: targets::HealthCheck,
    /// The targets the file lists (others come from the admin API or discovery).
    pub configured_targets: Vec<SocketAddr>,
    /// Some listener forwards to it; a group no listener uses is not health-checked.
    pub in_use: bool,
}

impl Compiled {
    /// Joins every group to its state in `registry` (created on first use, kept across reloads
    /// for a group that keeps its name). Membership is not changed here: see
    /// [`Snapshot::apply_membership`], once the snapshot is in force. Stickiness cookies are
    /// sealed under the configured key, else under the process's own (`secrets`), which stays
    /// the same across reloads so that the cookies it issued stay valid.
    pub fn attach(self, registry: &Registry, metrics: &Metrics, secrets: &Secrets) -> Snapshot {
        let target_groups = self
            .target_groups
            .into_iter()
            .map(|plan| {
                let state = registry.group(&plan.settings.name);
                let group = Arc::new(TargetGroup::new(&plan.settings, state, metrics));
                Group {
                    group,
                    health_check: plan.health_check,
                    configured_targets: plan.configured_targets,
                    in_use: plan.in_use,
                }
            })
            .collect::<Vec<Group>>();
        let listener_metrics = self
            .listeners
            .iter()
            .map(|l| ListenerMetrics {
                groups: target_groups
                    .iter()
                    .map(|g| {
                        let histogram = g.group.response_seconds.clone();
                        Arc::new(RequestMetrics::new(
                            metrics,
                            l.name.clone(),
                            Some((g.group.name.clone(), histogram)),
                        ))
                    })
                    .collect(),
            })
            .collect();
        let sealer = self
            .cookie_sealer
            .unwrap_or_else(|| Sealer::new(secrets.cookie_key()));
        Snapshot {
            sealer: Arc::new(sealer),
            limits: self.limits,
            max_connections: self.max_connections,
            listeners: self.listeners,
            listener_metrics,
            target_groups,
        }
    }
}

/// Everything the data plane reads, swapped whole on reload.
#[derive(Debug)]
pub struct Snapshot {
    pub limits: Limits,
    /// Open client connections per listener; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    pub listeners: Vec<Listener>,
    /// Beside `listeners`, in the same order (built from them in [`Compiled::attach`]).
    listener_metrics: Vec<ListenerMetrics>,
    /// Indexed by the routers' [`GroupId`]s.
    pub target_groups: Vec<Group>,
    /// Seals and opens stickiness cookies; shared so that a request can keep it beyond the
    /// snapshot's guard.
    pub sealer: Arc<Sealer>,
}

/// A listener's request metrics, per target group its requests may be counted under. Answers no
/// group gave are counted by the listener itself (`server::ListenerContext::direct`).
#[derive(Debug)]
pub struct ListenerMetrics {
    /// Indexed by [`GroupId`], every group of the snapshot (a few hundred bytes each until used).
    pub groups: Box<[Arc<RequestMetrics>]>,
}

impl Snapshot {
    /// A listener by name (listeners are few; a scan beats hashing).
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| &*l.name == name)
    }

    /// A listener by name, with its request metrics.
    pub fn served(&self, name: &str) -> Option<(&Listener, &ListenerMetrics)> {
        let i = self.listeners.iter().position(|l| &*l.name == name)?;
        Some((&self.listeners[i], &self.listener_metrics[i]))
    }

    /// The group a router's forward names.
    pub fn group(&self, id: GroupId) -> &Arc<TargetGroup> {
        &self.target_groups[id.0].group
    }

    /// A group by name.
    pub fn group_named(&self, name: &str) -> Option<&Group> {
        self.target_groups.iter().find(|g| &*g.group.name == name)
    }

    /// Brings the groups' run-time membership in line with this configuration, once it is the one
    /// in force: configured targets are registered or drained (targets from the admin API or
    /// discovery stay), and groups no listener forwards to are marked unused.
    pub fn apply_membership(&self) {
        for g in &self.target_groups {
            g.group.state.set_in_use(g.in_use);
            let configured = g.configured_targets.iter().copied().map(Into::into);
            let reset = Update::Reset(configured.collect());
            // Only a removal can be refused; should a reset ever be, the group keeps its targets.
            if let Err(e) = g
                .group
                .state
                .apply(Origin::Config, reset, g.group.deregistration_delay)
            {
                warn!(target_group = %g.group.name, error = %e, "configured targets not applied");
            }
        }
    }
}

/// A target group in a snapshot, with what the configuration says of its membership and checks.
#[derive(Debug)]
pub struct Group {
    pub group: Arc<TargetGroup>,
    pub health_check: targets::HealthCheck,
    pub configured_targets: Vec<SocketAddr>,
    /// Some listener forwards to it.
    pub in_use: bool,
}

/// A listener as compiled.
#[derive(Debug)]
pub struct Listener {
    pub name: Arc<str>,
    pub bind: SocketAddr,
    pub protocol: Protocol,
    /// `Some` for https listeners.
    pub tls: Option<ListenerTls>,
    /// Connections begin with a PROXY protocol header whose source address is the client's. Read
    /// per connection, so a reload that flips it applies to the connections accepted after it.
    pub proxy_protocol: bool,
    /// The largest request body a forward takes (413 above it), read per request, so a reload
    /// applies to the next request.
    pub max_body_bytes: Option<u64>,
    /// What is done with requests by their desync classification (`server::framing`).
    pub desync_mitigation: Mitigation,
    pub router: Router,
}
