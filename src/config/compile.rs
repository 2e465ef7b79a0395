//! Validated config → the [`Compiled`] configuration (TLS configurations, routers, each target
//! group's settings), once per load. Certificates are read first, by [`load_certificates`]; the
//! compile itself is pure, and [`Compiled::attach`](crate::snapshot::Compiled::attach) joins the
//! result to run-time state once a reload is sure to go ahead.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;

use super::validate::{ActionConfig, CertificateSource, Config, ListenerConfig, TargetGroupConfig};
use super::{ConfigErrors, Source};
use crate::protocol::Protocol;
use crate::routing::{Action, FixedResponse, GroupId, Router, Rule};
use crate::server::Limits;
use crate::snapshot::{Compiled, GroupPlan, Listener};
use crate::targets;
use crate::tls::{self, CertError, LoadedCert};

/// Reads (or generates) every certificate of `cfg`, in its order; every problem is reported,
/// naming its file and key path.
pub fn load_certificates(src: &Source, cfg: &Config) -> Result<Vec<LoadedCert>, ConfigErrors> {
    let mut errs = Vec::new();
    let certs: Vec<LoadedCert> = cfg
        .certificates
        .iter()
        .filter_map(|c| {
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
    if errs.is_empty() {
        Ok(certs)
    } else {
        Err(ConfigErrors(errs))
    }
}

/// Reads the certificates, then compiles: what a start, a reload and `seawall check` all do.
pub fn load_and_compile(src: &Source, cfg: &Config) -> Result<Compiled, ConfigErrors> {
    compile(src, cfg, &load_certificates(src, cfg)?)
}

/// Builds the compiled configuration from a validated one and its loaded certificates (`certs`
/// in the order of `cfg.certificates`). Pure: it touches no run-time state, so a failure leaves
/// nothing behind. Errors name the key path.
pub fn compile(src: &Source, cfg: &Config, certs: &[LoadedCert]) -> Result<Compiled, ConfigErrors> {
    let mut errs = Vec::new();
    let mut listeners = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let tls = match l.protocol {
            Protocol::Http => None,
            Protocol::Https => {
                let chosen: Vec<(Arc<str>, &LoadedCert)> = l
                    .certificates
                    .iter()
                    .map(|&c| (cfg.certificates[c].name.as_str().into(), &certs[c]))
                    .collect();
                match tls::listener_tls(&chosen, l.tls_policy, &l.alpn) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errs.push(src.error(format!("listeners[{i}].certificates"), e.to_string()));
                        continue;
                    }
                }
            }
        };
        listeners.push(Listener {
            name: l.name.as_str().into(),
            bind: l.bind,
            protocol: l.protocol,
            tls,
            router: router(l),
        });
    }
    if !errs.is_empty() {
        return Err(ConfigErrors(errs));
    }
    let in_use = |i: usize| {
        let forwards = |a: &ActionConfig| matches!(a, ActionConfig::Forward(t) if *t == i);
        cfg.listeners
            .iter()
            .any(|l| forwards(&l.default_action) || l.rules.iter().any(|r| forwards(&r.action)))
    };
    let rt = &cfg.runtime;
    Ok(Compiled {
        limits: Limits {
            idle_timeout: rt.idle_timeout,
            header_timeout: rt.header_timeout,
            handshake_timeout: rt.handshake_timeout,
            max_header_bytes: rt.max_header_bytes,
        },
        max_connections: rt.max_connections,
        listeners,
        target_groups: cfg
            .target_groups
            .iter()
            .enumerate()
            .map(|(i, tg)| GroupPlan {
                settings: group_settings(tg),
                health_check: tg.health_check.clone(),
                configured_targets: tg.targets.clone(),
                in_use: in_use(i),
            })
            .collect(),
    })
}

fn group_settings(tg: &TargetGroupConfig) -> targets::Settings {
    targets::Settings {
        name: tg.name.as_str().into(),
        protocol: tg.protocol,
        protocol_version: tg.protocol_version,
        algorithm: tg.algorithm,
        deregistration_delay: tg.deregistration_delay,
        slow_start: tg.slow_start,
        connect_timeout: tg.connect_timeout,
        response_timeout: tg.response_timeout,
    }
}

fn router(l: &ListenerConfig) -> Router {
    let rules = l
        .rules
        .iter()
        .map(|r| Rule {
            priority: r.priority,
            host: r.host.clone().into(),
            path: r.path.clone().into(),
            action: action(&r.action),
        })
        .collect();
    Router::new(rules, action(&l.default_action))
}

fn action(a: &ActionConfig) -> Action {
    match a {
        ActionConfig::Forward(i) => Action::Forward(GroupId(*i)),
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
