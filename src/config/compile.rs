//! Validated config → the immutable [`Snapshot`] the data plane serves from. Certificates are read
//! and TLS configurations, routers and target groups are built here, once per load.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use rustls::ServerConfig;

use super::validate::{
    ActionConfig, CertificateSource, Config, ListenerConfig, Protocol, RuntimeConfig,
};
use super::{ConfigErrors, Source};
use crate::admin::AdminToken;
use crate::routing::{Action, FixedResponse, Router, Rule};
use crate::targets::{Origin, Registry, TargetGroup};
use crate::tls::{self, CertError, LoadedCert};

/// Everything the data plane reads, swapped whole on reload.
#[derive(Debug)]
pub struct Snapshot {
    pub runtime: RuntimeConfig,
    /// The admin API's bearer token; kept here so that a reload changes it with the rest.
    pub admin_token: Option<AdminToken>,
    pub listeners: Vec<CompiledListener>,
    pub target_groups: Vec<ConfiguredGroup>,
}

impl Snapshot {
    /// A listener by name (listeners are few; a scan beats hashing).
    pub fn listener(&self, name: &str) -> Option<&CompiledListener> {
        self.listeners.iter().find(|l| &*l.name == name)
    }

    /// Brings the groups' run-time membership in line with this configuration, once it is the one
    /// in force: configured targets are registered or drained (targets from the admin API or
    /// discovery stay), and groups no listener forwards to are marked unused.
    pub fn apply_membership(&self) {
        for tg in &self.target_groups {
            tg.group.state.reconcile(
                Origin::Config,
                &tg.configured_targets,
                tg.group.deregistration_delay,
            );
            tg.group.state.set_in_use(tg.in_use);
        }
    }
}

/// A target group in a snapshot, with what the configuration says of its membership.
#[derive(Debug)]
pub struct ConfiguredGroup {
    pub group: Arc<TargetGroup>,
    pub configured_targets: Vec<SocketAddr>,
    /// Some listener forwards to it.
    pub in_use: bool,
}

#[derive(Debug)]
pub struct CompiledListener {
    pub name: Arc<str>,
    pub bind: SocketAddr,
    pub protocol: Protocol,
    /// `Some` for https listeners.
    pub tls: Option<Arc<ServerConfig>>,
    pub router: Router,
}

/// Builds the snapshot; every certificate problem is reported, naming its file and key path.
pub fn compile(src: &Source, cfg: &Config, registry: &Registry) -> Result<Snapshot, ConfigErrors> {
    let mut errs = Vec::new();

    let certs: Vec<Option<LoadedCert>> = cfg
        .certificates
        .iter()
        .map(|c| {
            let loaded = match &c.source {
                CertificateSource::Files { cert, key } => tls::load_pem_files(cert, key),
                CertificateSource::SelfSigned(names) => tls::self_signed_cached(names),
            };
            loaded
                .map_err(|e| {
                    let key = match (&e, &c.source) {
                        (CertError::Read { path, .. }, CertificateSource::Files { cert, .. })
                            if path == cert =>
                        {
                            "cert"
                        }
                        (CertError::NoCertificate { .. } | CertError::BadCertificate { .. }, _) => {
                            "cert"
                        }
                        (_, CertificateSource::SelfSigned(_)) => "self_signed",
                        _ => "key",
                    };
                    errs.push(src.error(format!("{}.{key}", c.key_path), e.to_string()));
                })
                .ok()
        })
        .collect();

    let target_groups: Vec<Arc<TargetGroup>> = cfg
        .target_groups
        .iter()
        .map(|tg| Arc::new(TargetGroup::new(tg, registry)))
        .collect();

    let mut listeners = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let tls = match l.protocol {
            Protocol::Http => None,
            Protocol::Https => {
                let chosen: Option<Vec<&LoadedCert>> =
                    l.certificates.iter().map(|&c| certs[c].as_ref()).collect();
                // A missing certificate was already reported where it failed to load.
                let Some(chosen) = chosen else { continue };
                match tls::server_config(&chosen, l.tls_policy, &l.alpn) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errs.push(src.error(format!("listeners[{i}].certificates"), e.to_string()));
                        continue;
                    }
                }
            }
        };
        listeners.push(CompiledListener {
            name: l.name.as_str().into(),
            bind: l.bind,
            protocol: l.protocol,
            tls,
            router: router(l, &target_groups),
        });
    }

    if errs.is_empty() {
        let in_use = |i: usize| {
            let forwards = |a: &ActionConfig| matches!(a, ActionConfig::Forward(t) if *t == i);
            cfg.listeners
                .iter()
                .any(|l| forwards(&l.default_action) || l.rules.iter().any(|r| forwards(&r.action)))
        };
        Ok(Snapshot {
            runtime: cfg.runtime.clone(),
            admin_token: cfg.admin.as_ref().and_then(|a| a.token.clone()),
            listeners,
            target_groups: target_groups
                .into_iter()
                .zip(&cfg.target_groups)
                .enumerate()
                .map(|(i, (group, c))| ConfiguredGroup {
                    group,
                    configured_targets: c.targets.clone(),
                    in_use: in_use(i),
                })
                .collect(),
        })
    } else {
        Err(ConfigErrors(errs))
    }
}

fn router(l: &ListenerConfig, tgs: &[Arc<TargetGroup>]) -> Router {
    let rules = l
        .rules
        .iter()
        .map(|r| Rule {
            priority: r.priority,
            host: r.host.clone().into(),
            path: r.path.clone().into(),
            action: action(&r.action, tgs),
        })
        .collect();
    Router::new(rules, action(&l.default_action, tgs))
}

fn action(a: &ActionConfig, tgs: &[Arc<TargetGroup>]) -> Action {
    match a {
        ActionConfig::Forward(i) => Action::Forward(tgs[*i].clone()),
        ActionConfig::FixedResponse {
            status,
            content_type,
            body,
        } => Action::FixedResponse(FixedResponse {
            status: *status,
            content_type: HeaderValue::from_str(content_type).expect("validated as a header value"),
            body: Bytes::from(body.clone()),
        }),
        ActionConfig::Redirect(t) => Action::Redirect(Arc::new(t.clone())),
    }
}
