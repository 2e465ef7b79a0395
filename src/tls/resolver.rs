//! Certificate choice by SNI, as ALB does it: an exact name first, then a wildcard certificate for
//! the name's parent domain, then the listener's default (its first certificate).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::LoadedCert;

#[derive(Debug)]
pub struct SniResolver {
    /// Lower-case DNS names → certificate.
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `*.example.test` is stored under `example.test`.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// `None` when `certs` is empty. For a name covered by several certificates, the first listed
    /// wins.
    pub fn new(certs: &[&LoadedCert]) -> Option<Self> {
        let default = certs.first()?.key.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for c in certs {
            for name in &c.names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard
                        .entry(parent.into())
                        .or_insert_with(|| c.key.clone()),
                    None => exact.entry(name.into()).or_insert_with(|| c.key.clone()),
                };
            }
        }
        Some(SniResolver {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for a server name (`None` = no SNI).
    pub fn pick(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        // rustls hands over the name as the client sent it; DNS names compare case-insensitively.
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(c) = self.exact.get(name) {
            return c;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::self_signed;

    #[test]
    fn exact_then_wildcard_then_default() {
        let a = self_signed(&["default.test".into()]).unwrap().loaded;
        let b = self_signed(&["app.example.test".into()]).unwrap().loaded;
        let c = self_signed(&["*.example.test".into()]).unwrap().loaded;
        let r = SniResolver::new(&[&a, &b, &c]).unwrap();
        let is = |got: &Arc<CertifiedKey>, want: &LoadedCert| Arc::ptr_eq(got, &want.key);
        assert!(is(r.pick(Some("app.example.test")), &b));
        assert!(is(r.pick(Some("APP.example.TEST")), &b));
        assert!(is(r.pick(Some("shop.example.test")), &c));
        assert!(is(r.pick(Some("a.shop.example.test")), &a));
        assert!(is(r.pick(Some("example.test")), &a));
        assert!(is(r.pick(None), &a));
    }
}
