//! TLS termination: certificates (PEM files or generated with rcgen), the SNI resolver, and one
//! rustls `ServerConfig` per listener, built at load time and shared by every handshake.

mod certs;
mod client_auth;
mod hkdf;
mod resolver;
mod tickets;

use std::sync::{Arc, OnceLock};

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache};
use rustls::ServerConfig;
use rustls::SupportedCipherSuite;

pub use certs::{
    load_pem_files, self_signed, self_signed_cached, CertError, LoadedCert, SelfSigned,
};
pub use client_auth::{
    is_mtls_header, load_trust_store, verify_failure, ClientAuth, ClientAuthMode, ClientCert,
    LeafFacts, TrustStore, TrustStoreError,
};
pub use resolver::SniResolver;
pub use tickets::{TicketKeyError, TicketKeys, TicketKeysExport, ROTATION_SECS};

use crate::protocol::UnknownValue;

/// A listener's TLS security policy: which protocol versions it accepts. Either way only AEAD
/// suites with forward secrecy are offered (see [`provider`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `tls13-1-2`: TLS 1.2 and 1.3.
    Tls13And12,
    /// `tls13-only`.
    Tls13Only,
}

impl std::str::FromStr for Policy {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tls13-1-2" => Ok(Policy::Tls13And12),
            "tls13-only" => Ok(Policy::Tls13Only),
            other => Err(UnknownValue::new(
                "TLS policy",
                other,
                "\"tls13-1-2\" or \"tls13-only\"",
            )),
        }
    }
}

/// An application protocol a listener offers in the TLS handshake (ALPN), as the configuration
/// names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`.
    Http2,
    /// `http/1.1`.
    Http11,
}

impl Alpn {
    /// A listener's offer when its `alpn` key is absent: HTTP/2 first, as browsers prefer.
    pub const DEFAULT: [Alpn; 2] = [Alpn::Http2, Alpn::Http11];

    /// The protocol ID on the wire, which is also the configuration's word.
    pub fn id(self) -> &'static [u8] {
        match self {
            Alpn::Http2 => b"h2",
            Alpn::Http11 => b"http/1.1",
        }
    }
}

impl std::str::FromStr for Alpn {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "h2" => Ok(Alpn::Http2),
            "http/1.1" => Ok(Alpn::Http11),
            other => Err(UnknownValue::new(
                "ALPN protocol",
                other,
                "\"h2\" or \"http/1.1\"",
            )),
        }
    }
}

/// The crypto provider everywhere in seawall: aws-lc-rs, with the AEAD suites only (TLS 1.2 suites
/// with ECDHE key exchange, so every TLS 1.2 session has forward secrecy too), and TLS 1.3's key
/// schedule keyed once per secret (see [`hkdf`]).
pub fn provider() -> CryptoProvider {
    use aws_lc_rs::cipher_suite as cs;
    static SUITES: OnceLock<Vec<SupportedCipherSuite>> = OnceLock::new();
    let suites = SUITES.get_or_init(|| {
        [
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ]
        .into_iter()
        .map(hkdf::keyed_once)
        .collect()
    });
    CryptoProvider {
        cipher_suites: suites.clone(),
        ..aws_lc_rs::default_provider()
    }
}

/// Stateful resumption cache size per listener: enough for a busy edge without unbounded growth.
/// Only TLS 1.2 clients that offer no session ticket fill it (everyone else resumes with a
/// ticket); it belongs to one `ServerConfig`, so what it holds does not outlive a reload.
const SESSION_CACHE_ENTRIES: usize = 8192;

/// TLS 1.3 tickets sent after a full handshake: rustls's default. A client spends one per
/// resumption, and two let it open a second connection in parallel before the first resumed
/// one brings fresh tickets.
const TLS13_TICKETS: usize = 2;

/// A listener's TLS: the rustls configuration every handshake shares, and its certificate
/// resolver, which the connection asks afterwards which certificate it was served.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub config: Arc<ServerConfig>,
    resolver: Arc<SniResolver>,
    /// The listener's mTLS mode, `None` when it asks for no client certificate.
    pub client_auth: Option<ClientAuthMode>,
}

impl ListenerTls {
    /// The configured name of the certificate a full handshake for `server_name` was served.
    pub fn chosen_certificate(&self, server_name: Option<&str>) -> Arc<str> {
        self.resolver.chosen_name(server_name).clone()
    }
}

/// Builds a listener's TLS configuration, with ticket keys of its own. `certs` is in the
/// listener's order: the first one is served when SNI names nothing that a certificate covers.
pub fn server_config(
    certs: &[&LoadedCert],
    policy: Policy,
    alpn: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, ServerConfigError> {
    let named: Vec<(Arc<str>, &LoadedCert)> = certs
        .iter()
        .enumerate()
        .map(|(i, c)| (Arc::from(i.to_string()), *c))
        .collect();
    let tickets = Arc::new(TicketKeys::generate()?).for_listener("");
    Ok(listener_tls(&named, policy, alpn, tickets, None)?.config)
}

#[derive(Debug, thiserror::Error)]
pub enum ServerConfigError {
    #[error(transparent)]
    Tls(#[from] rustls::Error),
    #[error("cannot make session-ticket keys: {0}")]
    Tickets(#[from] TicketKeyError),
}

/// [`server_config`] with the certificates' configured names, which the connections' records
/// report, and the process's session tickets (see [`TicketKeys::for_listener`]; a listener with
/// `client_auth` binds them to it too, see [`ClientAuth::ticket_binding`]).
pub fn listener_tls(
    certs: &[(Arc<str>, &LoadedCert)],
    policy: Policy,
    alpn: &[Vec<u8>],
    tickets: Arc<dyn ProducesTickets>,
    client_auth: Option<&ClientAuth>,
) -> Result<ListenerTls, rustls::Error> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match policy {
        Policy::Tls13Only => &[&rustls::version::TLS13],
        Policy::Tls13And12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let resolver = Arc::new(SniResolver::new(certs).ok_or(rustls::Error::NoCertificatesPresented)?);
    let builder = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)?;
    let builder = match client_auth {
        Some(auth) => builder.with_client_cert_verifier(auth.verifier()),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(resolver.clone());
    cfg.alpn_protocols = alpn.to_vec();
    cfg.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    cfg.ticketer = tickets;
    cfg.send_tls13_tickets = TLS13_TICKETS;
    // The server's order of suites decides, as ALB's security policies do (Server Order
    // Preference). Clients such as OpenSSL's and rustls's list AES-256-GCM-SHA384 first, and its
    // SHA-384 key schedule and transcript have no SHA extensions to run on: a full handshake
    // with AES-128-GCM-SHA256 costs a sixth less CPU here (1.20x the handshakes per CPU-second).
    cfg.ignore_client_order = true;
    Ok(ListenerTls {
        config: Arc::new(cfg),
        resolver,
        client_auth: client_auth.map(ClientAuth::mode),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_words_are_their_wire_ids() {
        for a in Alpn::DEFAULT {
            let word = std::str::from_utf8(a.id()).unwrap();
            assert_eq!(word.parse::<Alpn>(), Ok(a));
        }
        assert_eq!(
            "h3".parse::<Alpn>().unwrap_err().to_string(),
            "unknown ALPN protocol \"h3\"; expected \"h2\" or \"http/1.1\""
        );
    }
}
