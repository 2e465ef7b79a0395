//! Validated config → the [`Compiled`] configuration (TLS configurations, routers, each target
//! group's settings), once per load. Certificates are read first, by [`load_certificates`]; the
//! compile itself is pure, and [`Compiled::attach`](crate::snapshot::Compiled::attach) joins the
//! result to run-time state once a reload is sure to go ahead.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;

use super::validate::{
    ActionConfig, CertificateSource, ClientAuthConfig, Config, ListenerConfig, TargetGroupConfig,
};
use super::{ConfigErrors, Source};
use crate::protocol::Protocol;
use crate::routing::{Action, FixedResponse, Forward, GroupId, Router, Rule, WeightedGroup};
use crate::secrets::Secrets;
use crate::server::Limits;
use crate::snapshot::{Compiled, GroupPlan, Listener};
use crate::stickiness::Sealer;
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

/// Reads the trust store of every listener with `client_auth` (`None` for the others, in
/// `cfg.listeners`' order); every problem is reported, naming its file and key path.
pub fn load_client_auth(
    src: &Source,
    cfg: &Config,
) -> Result<Vec<Option<tls::ClientAuth>>, ConfigErrors> {
    let mut errs = Vec::new();
    let loaded = cfg
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| match l.client_auth.as_ref()? {
            ClientAuthConfig::Passthrough => Some(tls::ClientAuth::Passthrough),
            ClientAuthConfig::Verify { ca, crl } => tls::load_trust_store(ca, crl.as_deref())
                .map_err(|e| {
                    let key = if e.is_crl() { "crl" } else { "ca" };
                    errs.push(
                        src.error(format!("listeners[{i}].client_auth.{key}"), e.to_string()),
                    );
                })
                .ok(),
        })
        .collect();
    if errs.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigErrors(errs))
    }
}

/// Reads the certificates and trust stores, then compiles: what a start, a reload and
/// `seawall check` all do.
pub fn load_and_compile(
    src: &Source,
    cfg: &Config,
    secrets: &Secrets,
) -> Result<Compiled, ConfigErrors> {
    // Both read before either fails, so that one check reports every unreadable file.
    let (certs, client_auth) = (load_certificates(src, cfg), load_client_auth(src, cfg));
    match (certs, client_auth) {
        (Ok(certs), Ok(client_auth)) => compile(src, cfg, &certs, &client_auth, secrets),
        (Err(ConfigErrors(mut a)), Err(ConfigErrors(b))) => {
            a.extend(b);
            Err(ConfigErrors(a))
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Builds the compiled configuration from a validated one, its loaded certificates (`certs`
/// in the order of `cfg.certificates`) and trust stores (`client_auth`, in the order of
/// `cfg.listeners`). Pure: it touches no run-time state, so a failure leaves
/// nothing behind; `secrets` are only read (the listeners' TLS seals session tickets with the
/// process's keys, which outlive every configuration). Errors name the key path.
pub fn compile(
    src: &Source,
    cfg: &Config,
    certs: &[LoadedCert],
    client_auth: &[Option<tls::ClientAuth>],
    secrets: &Secrets,
) -> Result<Compiled, ConfigErrors> {
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
                let alpn: Vec<Vec<u8>> = l.alpn.iter().map(|a| a.id().to_vec()).collect();
                let auth = client_auth.get(i).and_then(Option::as_ref);
                let tickets = secrets.tickets().for_listener(&match auth {
                    Some(a) => format!("{}\n{}", l.name, a.ticket_binding()),
                    None => l.name.clone(),
                });
                match tls::listener_tls(&chosen, l.tls_policy, &alpn, tickets, auth) {
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
            proxy_protocol: l.proxy_protocol,
            max_body_bytes: l.max_body_bytes,
            desync_mitigation: l.desync_mitigation,
            router: router(l),
        });
    }
    if !errs.is_empty() {
        return Err(ConfigErrors(errs));
    }
    let in_use = |i: usize| {
        let forwards = |a: &ActionConfig| matches!(a, ActionConfig::Forward(f) if f.groups.iter().any(|&(g, _)| g == i));
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
            http2_max_concurrent_streams: rt.http2_max_concurrent_streams,
            http2_max_resets_per_second: rt.http2_max_resets_per_second,
        },
        max_connections: rt.max_connections,
        cookie_sealer: rt
            .cookie_key
            .as_ref()
            .map(|k| Sealer::new(k.expose().as_bytes())),
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
        stickiness: tg.stickiness.clone(),
    }
}

fn router(l: &ListenerConfig) -> Router {
    let rules = l
        .rules
        .iter()
        .map(|r| Rule {
            priority: r.priority,
            conditions: r.conditions.clone(),
            action: action(&r.action),
        })
        .collect();
    Router::new(rules, action(&l.default_action))
}

fn action(a: &ActionConfig) -> Action {
    match a {
        ActionConfig::Forward(f) => Action::Forward(Forward {
            groups: f
                .groups
                .iter()
                .map(|&(g, weight)| WeightedGroup {
                    group: GroupId(g),
                    weight,
                })
                .collect(),
            stickiness: f.stickiness,
        }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::validate;
    use crate::config::Environment;

    /// A file with one certificate `main` of `keys` (from line 3) on an https listener, whose
    /// relative paths resolve against `dir`.
    fn source(dir: &std::path::Path, keys: &str) -> Source {
        let text = format!(
            "[[certificates]]\nname = \"main\"\n{keys}\n\n[[listeners]]\nname = \"web\"\n\
             bind = \"127.0.0.1:0\"\nprotocol = \"https\"\ncertificates = [\"main\"]\n\
             default_action = {{ fixed_response = {{ status = 200 }} }}\n"
        );
        Source::new(dir.join("seawall.toml"), dir, text)
    }

    fn compiled(src: &Source) -> Result<Compiled, ConfigErrors> {
        let raw = src.parse().unwrap_or_else(|e| panic!("{e}"));
        let cfg =
            validate(src, raw, &Environment::new("seawall")).unwrap_or_else(|e| panic!("{e}"));
        load_and_compile(src, &cfg, &Secrets::generate())
    }

    /// The one error of `src`, as (line, key path, reason).
    fn error(src: &Source) -> (Option<usize>, String, String) {
        let mut errs = compiled(src).expect_err("an error").0;
        assert_eq!(errs.len(), 1, "{}", ConfigErrors(errs));
        let e = errs.remove(0);
        (e.line, e.path, e.reason)
    }

    /// Writes a generated pair as `site.pem` and `site-key.pem` in `dir`.
    fn write_pair(dir: &std::path::Path) {
        let pair = tls::self_signed(&["site.test".to_string()]).unwrap();
        std::fs::write(dir.join("site.pem"), pair.cert_pem).unwrap();
        std::fs::write(dir.join("site-key.pem"), pair.key_pem).unwrap();
    }

    #[test]
    fn a_missing_certificate_file_is_named_resolved_against_the_files_folder() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(
            dir.path(),
            "cert = \"missing/site.pem\"\nkey = \"missing/site-key.pem\"",
        );
        let (line, path, reason) = error(&src);
        assert_eq!((line, path.as_str()), (Some(3), "certificates[0].cert"));
        let resolved = dir.path().join("missing/site.pem");
        assert!(reason.contains(&resolved.display().to_string()), "{reason}");
        assert!(reason.contains("No such file"), "{reason}");
    }

    #[test]
    fn a_missing_or_bad_key_is_named_as_the_key() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path());
        let src = source(dir.path(), "cert = \"site.pem\"\nkey = \"nope-key.pem\"");
        let (line, path, reason) = error(&src);
        assert_eq!((line, path.as_str()), (Some(4), "certificates[0].key"));
        assert!(reason.contains("nope-key.pem"), "{reason}");

        // The certificate given as its own key: a PEM file, but no key in it.
        let src = source(dir.path(), "cert = \"site.pem\"\nkey = \"site.pem\"");
        let (line, path, reason) = error(&src);
        assert_eq!((line, path.as_str()), (Some(4), "certificates[0].key"));
        assert!(reason.contains("holds no PEM private key"), "{reason}");
    }

    #[test]
    fn a_file_without_a_certificate_is_named_as_the_cert() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path());
        let src = source(
            dir.path(),
            "cert = \"site-key.pem\"\nkey = \"site-key.pem\"",
        );
        let (line, path, reason) = error(&src);
        assert_eq!((line, path.as_str()), (Some(3), "certificates[0].cert"));
        assert!(reason.contains("holds no PEM certificate"), "{reason}");
    }

    #[test]
    fn certificate_files_that_load_compile_into_a_tls_listener() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path());
        let src = source(dir.path(), "cert = \"site.pem\"\nkey = \"site-key.pem\"");
        let compiled = compiled(&src).unwrap_or_else(|e| panic!("{e}"));
        let tls = compiled.listeners[0]
            .tls
            .as_ref()
            .expect("an https listener");
        // The listener offers the default ALPN list, in its order.
        assert_eq!(
            tls.config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
