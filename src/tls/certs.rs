//! Loading certificates: PEM chains and keys (PKCS#8, SEC1, PKCS#1) from files, or a self-signed pair
//! generated with rcgen. Each failure names the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A certificate ready to serve, and the DNS names it covers (from its subjectAltName).
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not a valid PEM certificate chain: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{} holds no PEM private key (PKCS#8, SEC1 or PKCS#1): {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{} is a key of a kind seawall cannot sign with: {reason}", path.display())]
    UnsupportedKey { path: PathBuf, reason: String },
    #[error("the key in {} does not match the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads a PEM chain (leaf first) and its private key.
pub fn load_pem_files(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadCertificate {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CertError::BadKey {
        path: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let names = dns_names(&chain[0]).map_err(|reason| CertError::BadCertificate {
        path: cert_path.to_path_buf(),
        reason,
    })?;
    let certified = certified_key(chain, key, key_path)?;
    certified.keys_match().map_err(|_| CertError::Mismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
    })?;
    Ok(LoadedCert {
        names,
        key: Arc::new(certified),
    })
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    key_path: &Path,
) -> Result<CertifiedKey, CertError> {
    let signer = super::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::UnsupportedKey {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(CertifiedKey::new(chain, signer))
}

/// The DNS names of a certificate's subjectAltName, falling back to its common name.
fn dns_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, x509) = X509Certificate::from_der(cert.as_ref()).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = x509.subject().iter_common_name().next() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// A generated certificate, with its PEM texts for writing to disk.
pub struct SelfSigned {
    pub loaded: LoadedCert,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The self-signed certificate for `names`, generated once per process: a reload keeps serving
/// the same certificate, so clients that pinned it on first use keep working.
pub fn self_signed_cached(names: &[String]) -> Result<LoadedCert, CertError> {
    static CACHE: std::sync::Mutex<Vec<(Vec<String>, LoadedCert)>> =
        std::sync::Mutex::new(Vec::new());
    let mut cache = CACHE.lock().expect("not poisoned");
    if let Some((_, c)) = cache.iter().find(|(n, _)| n == names) {
        return Ok(c.clone());
    }
    let loaded = self_signed(names)?.loaded;
    cache.push((names.to_vec(), loaded.clone()));
    Ok(loaded)
}

/// Generates an ECDSA P-256 self-signed certificate for `names` (DNS names or IP addresses).
pub fn self_signed(names: &[String]) -> Result<SelfSigned, CertError> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| CertError::Generate(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let certified = certified_key(
        vec![generated.cert.der().clone()],
        key,
        Path::new("<rcgen>"),
    )?;
    Ok(SelfSigned {
        loaded: LoadedCert {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            key: Arc::new(certified),
        },
        cert_pem: generated.cert.pem(),
        key_pem: generated.signing_key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_load_and_mismatch_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed(&["a.test".into(), "*.b.test".into()]).unwrap();
        let b = self_signed(&["b.test".into()]).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let (ca, ka, kb) = (
            write("a.pem", &a.cert_pem),
            write("a-key.pem", &a.key_pem),
            write("b-key.pem", &b.key_pem),
        );
        let loaded = load_pem_files(&ca, &ka).unwrap();
        assert_eq!(loaded.names, ["a.test", "*.b.test"]);
        let err = load_pem_files(&ca, &kb).unwrap_err();
        assert!(matches!(err, CertError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains("b-key.pem"));
        let err = load_pem_files(&ka, &ka).unwrap_err();
        assert!(matches!(err, CertError::NoCertificate { .. }), "{err}");
        let err = load_pem_files(&ca, &dir.path().join("missing.pem")).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
