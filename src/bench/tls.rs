//! The rustls client configuration of a run: offered versions, suites and groups narrowed by the
//! options, the trust decision, and whether sessions resume.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::options::BenchArgs;

#[derive(Debug, thiserror::Error)]
pub enum TlsOptionsError {
    #[error("unknown cipher suite {0:?}; known: {1}")]
    Cipher(String, String),
    #[error("unknown key-exchange group {0:?}; known: {1}")]
    Group(String, String),
    #[error("cipher suite {0} is not one of TLS {1}")]
    CipherVersion(String, String),
    #[error("cannot read CA file {}: {reason}", path.display())]
    Ca { path: PathBuf, reason: String },
    #[error("bad TLS server name {0:?}")]
    ServerName(String),
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// Sessions kept for resumption: one server name needs only a few, but every connection of a
/// `--new-connection --resume` run takes one ticket and brings back new ones.
const RESUMPTION_SESSIONS: usize = 1024;

/// The name rustls gives a suite, matched case-insensitively; IANA's TLS 1.3 names
/// (`TLS_AES_128_GCM_SHA256`) are accepted too.
fn suite_name(s: rustls::SupportedCipherSuite) -> String {
    format!("{:?}", s.suite())
}

fn normalise_suite(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase().replace('-', "_");
    match upper.strip_prefix("TLS_") {
        Some(rest) if rest.starts_with("AES_") || rest.starts_with("CHACHA20_") => {
            format!("TLS13_{rest}")
        }
        _ => upper,
    }
}

fn group_matches(group: rustls::NamedGroup, wanted: &str) -> bool {
    let wanted = wanted.trim().to_ascii_lowercase();
    let alias = match wanted.as_str() {
        "p-256" | "p256" | "prime256v1" => "secp256r1",
        "p-384" | "p384" => "secp384r1",
        other => other,
    };
    format!("{group:?}").eq_ignore_ascii_case(alias)
}

/// Builds the client configuration; `alpn` is what the mode speaks (`h2` or `http/1.1`).
pub fn client_config(args: &BenchArgs, alpn: &[u8]) -> Result<Arc<ClientConfig>, TlsOptionsError> {
    let mut provider = aws_lc_rs::default_provider();
    if let Some(wanted) = &args.cipher {
        let norm = normalise_suite(wanted);
        let known: Vec<String> = provider
            .cipher_suites
            .iter()
            .map(|s| suite_name(*s))
            .collect();
        provider
            .cipher_suites
            .retain(|s| suite_name(*s).eq_ignore_ascii_case(&norm));
        if provider.cipher_suites.is_empty() {
            return Err(TlsOptionsError::Cipher(wanted.clone(), known.join(", ")));
        }
    }
    if let Some(wanted) = &args.group {
        let known: Vec<String> = provider
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        provider
            .kx_groups
            .retain(|g| group_matches(g.name(), wanted));
        if provider.kx_groups.is_empty() {
            return Err(TlsOptionsError::Group(wanted.clone(), known.join(", ")));
        }
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match args.tls.as_deref() {
        Some("1.2") => vec![&rustls::version::TLS12],
        Some("1.3") => vec![&rustls::version::TLS13],
        _ => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };
    if let (Some(cipher), Some(v)) = (&args.cipher, &args.tls) {
        let fits = provider.cipher_suites.iter().any(|s| {
            versions
                .iter()
                .any(|ver| s.version().version == ver.version)
        });
        if !fits {
            return Err(TlsOptionsError::CipherVersion(cipher.clone(), v.clone()));
        }
    }
    let provider = Arc::new(provider);
    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions)?;
    let mut cfg = match &args.ca {
        Some(path) => builder
            .with_root_certificates(roots(path)?)
            .with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::upstream::AnyTargetCertificate(
                provider,
            )))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    // rustls resumes by default; a handshake benchmark must opt in, or "full handshakes/s" would
    // quietly measure resumptions (the wrk trap in BENCHMARKING.md).
    cfg.resumption = if args.resume {
        Resumption::in_memory_sessions(RESUMPTION_SESSIONS)
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(cfg))
}

pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsOptionsError> {
    ServerName::try_from(name.to_string()).map_err(|_| TlsOptionsError::ServerName(name.into()))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsOptionsError> {
    let err = |reason: String| TlsOptionsError::Ca {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        store
            .add(cert.map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_and_group_names() {
        assert_eq!(
            normalise_suite("tls_aes_256_gcm_sha384"),
            "TLS13_AES_256_GCM_SHA384"
        );
        assert_eq!(
            normalise_suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert!(group_matches(rustls::NamedGroup::X25519, "x25519"));
        assert!(group_matches(rustls::NamedGroup::secp256r1, "P-256"));
        assert!(!group_matches(rustls::NamedGroup::secp384r1, "secp256r1"));
    }
}
