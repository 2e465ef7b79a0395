//! Certificate choice by SNI, as ALB does it: an exact name first, then a wildcard certificate for
//! the name's parent domain, then the listener's default (its first certificate).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::LoadedCert;

#[derive(Debug)]
pub struct SniResolver {
    /// The listener's certificates in its order, with their names in the configuration; the
    /// first is the default.
    certs: Box<[(Arc<str>, Arc<CertifiedKey>)]>,
    /// Lower-case DNS names → index in `certs`.
    exact: HashMap<Box<str>, usize>,
    /// `*.example.test` is stored under `example.test`.
    wildcard: HashMap<Box<str>, usize>,
}

impl SniResolver {
    /// `None` when `certs` is empty. For a name covered by several certificates, the first listed
    /// wins.
    pub fn new(certs: &[(Arc<str>, &LoadedCert)]) -> Option<Self> {
        certs.first()?;
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, (_, c)) in certs.iter().enumerate() {
            for name in &c.names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.into()).or_insert(i),
                    None => exact.entry(name.into()).or_insert(i),
                };
            }
        }
        Some(SniResolver {
            certs: certs
                .iter()
                .map(|(name, c)| (name.clone(), c.key.clone()))
                .collect(),
            exact,
            wildcard,
        })
    }

    /// The certificate for a server name (`None` = no SNI).
    pub fn pick(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        &self.certs[self.choose(server_name)].1
    }

    /// The configured name of the certificate [`pick`](Self::pick) serves for a server name.
    /// rustls does not say which certificate a handshake was served; the choice is a pure
    /// function of the name, so asking again after the handshake gives the one it made.
    pub fn chosen_name(&self, server_name: Option<&str>) -> &Arc<str> {
        &self.certs[self.choose(server_name)].0
    }

    /// The index in `certs` of the certificate for a server name.
    fn choose(&self, server_name: Option<&str>) -> usize {
        let Some(name) = server_name else {
            return 0;
        };
        // rustls hands over the name as the client sent it; DNS names compare case-insensitively.
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(&i) = self.exact.get(name) {
            return i;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .map_or(0, |&i| i)
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
        let r = SniResolver::new(&[("a".into(), &a), ("b".into(), &b), ("c".into(), &c)]).unwrap();
        let is = |got: &Arc<CertifiedKey>, want: &LoadedCert| Arc::ptr_eq(got, &want.key);
        assert!(is(r.pick(Some("app.example.test")), &b));
        assert!(is(r.pick(Some("APP.example.TEST")), &b));
        assert!(is(r.pick(Some("shop.example.test")), &c));
        assert!(is(r.pick(Some("a.shop.example.test")), &a));
        assert!(is(r.pick(Some("example.test")), &a));
        assert!(is(r.pick(None), &a));
        // The name of the choice, as the connection's record asks for it afterwards.
        assert_eq!(&**r.chosen_name(Some("shop.example.test")), "c");
        assert_eq!(&**r.chosen_name(Some("APP.example.TEST")), "b");
        assert_eq!(&**r.chosen_name(None), "a");
    }
}
