//! Mutual TLS as ALB does it, per listener: `verify` checks a client's certificate against a trust
//! store (CA certificates, optionally a CRL) during the handshake and refuses the handshake
//! without a valid one; `passthrough` asks for a certificate, checks only that the client holds
//! its key, and leaves judging it to the targets. Either way, what the certificate says reaches
//! the targets in ALB's `X-Amzn-Mtls-*` headers, rendered once per connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::ToDer;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// A listener's `client_auth`, ready for its rustls configuration.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// ALB's verify mode: a certificate that chains to the trust store, unrevoked and within its
    /// validity, or no handshake.
    Verify(Arc<TrustStore>),
    /// ALB's passthrough mode: any certificate (or none), passed on to the targets.
    Passthrough,
}

/// Which of ALB's two modes a listener runs: what the connection asks of its certificate after
/// the handshake, and which headers the targets get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMode {
    Verify,
    Passthrough,
}

impl ClientAuth {
    pub fn mode(&self) -> ClientAuthMode {
        match self {
            ClientAuth::Verify(_) => ClientAuthMode::Verify,
            ClientAuth::Passthrough => ClientAuthMode::Passthrough,
        }
    }

    /// What a listener's session tickets are bound to besides its name. A ticket carries the
    /// client's certificate chain as it was judged when it was issued, and rustls resumes
    /// whatever ticket decrypts: bound to the mode and to the trust store's contents, a ticket
    /// issued before a CA or CRL change (or before mTLS was turned on) no longer decrypts, and
    /// the client goes through a full handshake that judges its certificate anew.
    pub fn ticket_binding(&self) -> String {
        match self {
            ClientAuth::Verify(store) => format!("mtls-verify:{}", hex_lower(&store.digest)),
            ClientAuth::Passthrough => "mtls-passthrough".to_string(),
        }
    }

    pub(super) fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        match self {
            ClientAuth::Verify(store) => store.verifier.clone(),
            ClientAuth::Passthrough => Arc::new(AnyClientCertificate {
                algorithms: super::provider().signature_verification_algorithms,
            }),
        }
    }
}

/// The CA certificates (and CRLs) a verify listener trusts, as one rustls verifier.
pub struct TrustStore {
    verifier: Arc<dyn ClientCertVerifier>,
    /// SHA-256 of the CA file and CRL file as read (see [`ClientAuth::ticket_binding`]).
    digest: [u8; 32],
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("digest", &hex_lower(&self.digest))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not a valid CA certificate file: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{} holds no certificate revocation list (PEM `X509 CRL`, or DER)", path.display())]
    NoCrl { path: PathBuf },
    #[error("{} is not a valid certificate revocation list: {reason}", path.display())]
    BadCrl { path: PathBuf, reason: String },
}

impl TrustStoreError {
    /// Whether the error is the CRL file's (else it is the CA file's).
    pub fn is_crl(&self) -> bool {
        match self {
            TrustStoreError::NoCrl { .. } | TrustStoreError::BadCrl { .. } => true,
            TrustStoreError::Read { .. }
            | TrustStoreError::NoCertificate { .. }
            | TrustStoreError::BadCertificate { .. } => false,
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TrustStoreError> {
    std::fs::read(path).map_err(|source| TrustStoreError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a verify listener's trust store: every certificate of the PEM file `ca` is a trust
/// anchor; `crl`, when given, holds revocation lists (PEM, or one DER list) that client
/// certificates are checked against.
pub fn load_trust_store(ca: &Path, crl: Option<&Path>) -> Result<ClientAuth, TrustStoreError> {
    let ca_bytes = read(ca)?;
    let bad_ca = |reason: String| TrustStoreError::BadCertificate {
        path: ca.to_path_buf(),
        reason,
    };
    let anchors = CertificateDer::pem_slice_iter(&ca_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_ca(e.to_string()))?;
    if anchors.is_empty() {
        return Err(TrustStoreError::NoCertificate {
            path: ca.to_path_buf(),
        });
    }
    let mut roots = RootCertStore::empty();
    for (i, der) in anchors.into_iter().enumerate() {
        roots
            .add(der)
            .map_err(|e| bad_ca(format!("certificate {}: {e}", i + 1)))?;
    }
    let mut digest = Sha256::new();
    digest.update(Sha256::digest(&ca_bytes));
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(super::provider()));
    if let Some(path) = crl {
        let bytes = read(path)?;
        digest.update(Sha256::digest(&bytes));
        let mut crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TrustStoreError::BadCrl {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        // `openssl crl -outform DER` writes one list without PEM armour; a DER SEQUENCE begins
        // with 0x30, which no PEM text does.
        if crls.is_empty() && bytes.first() == Some(&0x30) {
            crls.push(CertificateRevocationListDer::from(bytes));
        }
        if crls.is_empty() {
            return Err(TrustStoreError::NoCrl {
                path: path.to_path_buf(),
            });
        }
        // A CRL covers the certificates its issuer signed; a chain through an intermediate that
        // has no list of its own is not refused for that (ALB's revocation lists are optional
        // per CA too).
        builder = builder.with_crls(crls).allow_unknown_revocation_status();
    }
    let verifier = builder.build().map_err(|e| match (e, crl) {
        (rustls::server::VerifierBuilderError::InvalidCrl(e), Some(path)) => {
            TrustStoreError::BadCrl {
                path: path.to_path_buf(),
                reason: format!("{e:?}"),
            }
        }
        (e, _) => bad_ca(e.to_string()),
    })?;
    Ok(ClientAuth::Verify(Arc::new(TrustStore {
        verifier,
        digest: digest.finalize().into(),
    })))
}

/// Passthrough's verifier: any certificate is accepted, but the handshake's signature is still
/// checked against it, so a client cannot present a certificate whose key it does not hold.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    /// ALB's passthrough forwards a client that sends no certificate, without the header.
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// ALB's `tls_verify_status` reason for a handshake that rustls refused over the client's
/// certificate, or `None` when the failure was something else.
pub fn verify_failure(e: &rustls::Error) -> Option<&'static str> {
    use CertificateError as C;
    Some(match e {
        // Not one of ALB's codes (its docs list none for a missing certificate): seawall's.
        rustls::Error::NoCertificatesPresented => "ClientCertMissing",
        rustls::Error::InvalidCertRevocationList(_) => "ClientCertCrlProcessingError",
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "ClientCertExpired",
            C::NotValidYet | C::NotValidYetContext { .. } => "ClientCertNotYetValid",
            C::Revoked => "ClientCertCrlHit",
            C::UnknownRevocationStatus
            | C::ExpiredRevocationList
            | C::ExpiredRevocationListContext { .. } => "ClientCertCrlProcessingError",
            C::BadEncoding => "ClientCertInvalid",
            _ => "ClientCertUntrusted",
        },
        _ => return None,
    })
}

/// `X-Amzn-Mtls-Clientcert-*`, verify mode's headers.
const SERIAL_NUMBER: HeaderName = HeaderName::from_static("x-amzn-mtls-clientcert-serial-number");
const ISSUER: HeaderName = HeaderName::from_static("x-amzn-mtls-clientcert-issuer");
const SUBJECT: HeaderName = HeaderName::from_static("x-amzn-mtls-clientcert-subject");
const VALIDITY: HeaderName = HeaderName::from_static("x-amzn-mtls-clientcert-validity");
const LEAF: HeaderName = HeaderName::from_static("x-amzn-mtls-clientcert-leaf");
/// `X-Amzn-Mtls-Clientcert`, passthrough's header: the whole chain.
const CHAIN: HeaderName = HeaderName::from_static("x-amzn-mtls-clientcert");

/// Whether a request header is one of ALB's mTLS headers (or any `X-Amzn-Mtls-` name): such a
/// header is seawall's to write, and a client's copy never reaches a target.
pub fn is_mtls_header(name: &HeaderName) -> bool {
    // Header names are stored lower-case, whatever case the client wrote.
    name.as_str().starts_with("x-amzn-mtls-")
}

/// What a client's certificate says, read once per connection: for its requests' headers and
/// its line in the connection log.
#[derive(Debug)]
pub struct ClientCert {
    /// What the leaf says; `None` when x509-parser cannot read it (passthrough accepts such a
    /// certificate as long as the client proves it holds its key).
    pub leaf: Option<LeafFacts>,
    /// The headers every request of the connection takes to its target.
    pub headers: Box<[(HeaderName, HeaderValue)]>,
}

/// The leaf certificate's names, serial and validity as ALB writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFacts {
    /// RFC 2253.
    pub subject: String,
    pub issuer: String,
    /// Upper-case hex digits of the serial number.
    pub serial: String,
    /// `NotBefore=2023-09-21T01:50:17Z;NotAfter=2024-09-20T01:50:17Z`.
    pub validity: String,
    /// notAfter, in seconds since the Unix epoch.
    pub not_after: i64,
}

impl ClientCert {
    /// Reads what the client presented (`chain`, leaf first) on a listener in `mode`; `None`
    /// when it presented nothing.
    pub fn read(mode: ClientAuthMode, chain: &[CertificateDer<'_>]) -> Option<ClientCert> {
        let leaf_der = chain.first()?;
        let leaf = LeafFacts::read(leaf_der);
        let mut headers = Vec::new();
        let mut add = |name: HeaderName, value: &[u8]| {
            // A value a header cannot carry (a control byte the escaping missed) is left out
            // rather than failing the connection.
            if let Ok(v) = HeaderValue::from_bytes(value) {
                headers.push((name, v));
            }
        };
        match mode {
            ClientAuthMode::Verify => {
                if let Some(l) = &leaf {
                    add(SERIAL_NUMBER, l.serial.as_bytes());
                    add(ISSUER, l.issuer.as_bytes());
                    add(SUBJECT, l.subject.as_bytes());
                    add(VALIDITY, l.validity.as_bytes());
                }
                add(LEAF, url_encode(&pem(leaf_der)).as_bytes());
            }
            ClientAuthMode::Passthrough => {
                let chain_pem: String = chain.iter().map(|c| pem(c)).collect();
                add(CHAIN, url_encode(&chain_pem).as_bytes());
            }
        }
        Some(ClientCert {
            leaf,
            headers: headers.into(),
        })
    }

    /// Whether the leaf's notAfter is behind `now` (seconds since the Unix epoch).
    pub fn expired_at(&self, now: i64) -> bool {
        self.leaf.as_ref().is_some_and(|l| l.not_after < now)
    }
}

impl LeafFacts {
    fn read(der: &CertificateDer<'_>) -> Option<LeafFacts> {
        let (_, x509) = X509Certificate::from_der(der.as_ref()).ok()?;
        let v = x509.validity();
        Some(LeafFacts {
            subject: rfc2253(x509.subject()),
            issuer: rfc2253(x509.issuer()),
            serial: serial_hex(x509.raw_serial()),
            validity: format!(
                "NotBefore={};NotAfter={}",
                iso8601(&v.not_before),
                iso8601(&v.not_after)
            ),
            not_after: v.not_after.timestamp(),
        })
    }
}

/// The serial number's value in upper-case hex, as OpenSSL prints it: DER's sign byte (a
/// leading zero before a high bit) is not part of the number.
fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let digits = &raw[start..];
    if digits.is_empty() {
        return "00".to_string();
    }
    digits.iter().map(|b| format!("{b:02X}")).collect()
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `2023-09-21T01:50:17Z`, from the certificate's own fields: a client's certificate may carry
/// any date (before 1970, year 9999), which a formatter over `SystemTime` could not take.
fn iso8601(t: &x509_parser::time::ASN1Time) -> String {
    let d = t.to_datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

/// RFC 2253's string form of a distinguished name: the last RDN first, `,` between RDNs, `+`
/// within one, the standard short names (else the dotted OID), special characters escaped, and
/// a value that is not a string written as `#` and the hex of its DER.
fn rfc2253(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type().to_id_string();
            out.push_str(short_name(&oid).unwrap_or(&oid));
            out.push('=');
            match atv.as_str() {
                Ok(s) => escape_dn_value(s, &mut out),
                Err(_) => {
                    out.push('#');
                    let der = atv.attr_value().to_der_vec().unwrap_or_default();
                    out.push_str(&hex_lower(&der));
                }
            }
        }
    }
    out
}

/// RFC 2253's keywords, the only ones it lets a writer use instead of the OID.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 2253 §2.4, and RFC 4514's `\XX` for control characters, which would not survive in a
/// header or a log line.
fn escape_dn_value(s: &str, out: &mut String) {
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_ascii_control() => out.push_str(&format!("\\{:02X}", c as u8)),
            c => out.push(c),
        }
    }
}

/// A certificate as PEM text, 64 base64 characters a line, lines ending in LF as ALB's do.
fn pem(der: &CertificateDer<'_>) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.as_ref()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// What ALB's URL-encoding of PEM text leaves as it is: letters, digits, `-_.~` and the `+=/` it
/// names as safe. Every other byte becomes `%XX`.
const ALB_URL_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'+')
    .remove(b'=')
    .remove(b'/');

fn url_encode(text: &str) -> String {
    utf8_percent_encode(text, ALB_URL_SAFE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der_of(params: rcgen::CertificateParams) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_leaf_is_written_as_alb_writes_it() {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CountryName, "US");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc.");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, " client#1 ");
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0xFE, 0xF2, 0x57]));
        p.not_before = rcgen::date_time_ymd(2023, 9, 21);
        p.not_after = rcgen::date_time_ymd(2024, 9, 20);
        let der = der_of(p);
        let got = ClientCert::read(ClientAuthMode::Verify, std::slice::from_ref(&der)).unwrap();
        let leaf = got.leaf.as_ref().unwrap();
        assert_eq!(leaf.subject, r"CN=\ client#1\ ,O=Example\, Inc.,C=US");
        assert_eq!(leaf.issuer, leaf.subject, "self-signed");
        assert_eq!(leaf.serial, "FEF257");
        assert_eq!(
            leaf.validity,
            "NotBefore=2023-09-21T00:00:00Z;NotAfter=2024-09-20T00:00:00Z"
        );
        assert!(got.expired_at(leaf.not_after + 1));
        assert!(!got.expired_at(leaf.not_after));
        let names: Vec<&str> = got.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-amzn-mtls-clientcert-serial-number",
                "x-amzn-mtls-clientcert-issuer",
                "x-amzn-mtls-clientcert-subject",
                "x-amzn-mtls-clientcert-validity",
                "x-amzn-mtls-clientcert-leaf",
            ]
        );
        let leaf_pem = got.headers[4].1.to_str().unwrap();
        assert!(
            leaf_pem.starts_with("-----BEGIN%20CERTIFICATE-----%0AMII"),
            "{leaf_pem}"
        );
        assert!(leaf_pem.ends_with("%0A-----END%20CERTIFICATE-----%0A"));
        // What the header carries is the certificate, once decoded.
        let decoded = url_decode(leaf_pem);
        assert_eq!(CertificateDer::from_pem_slice(&decoded).unwrap(), der);
    }

    fn url_decode(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex: String = [bytes.next().unwrap(), bytes.next().unwrap()]
                    .iter()
                    .map(|&c| c as char)
                    .collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn passthrough_sends_the_chain_in_one_header() {
        let a = der_of(rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap());
        let b = der_of(rcgen::CertificateParams::new(vec!["b.test".into()]).unwrap());
        let got = ClientCert::read(ClientAuthMode::Passthrough, &[a, b]).unwrap();
        assert_eq!(got.headers.len(), 1);
        let (name, value) = &got.headers[0];
        assert_eq!(name.as_str(), "x-amzn-mtls-clientcert");
        assert_eq!(
            value
                .to_str()
                .unwrap()
                .matches("BEGIN%20CERTIFICATE")
                .count(),
            2
        );
        assert!(ClientCert::read(ClientAuthMode::Passthrough, &[]).is_none());
    }

    #[test]
    fn serials_drop_the_sign_byte_only() {
        assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0x01, 0x00]), "0100");
        assert_eq!(serial_hex(&[0x00]), "00");
    }

    #[test]
    fn only_mtls_names_are_ours() {
        for n in [
            "x-amzn-mtls-clientcert",
            "x-amzn-mtls-clientcert-leaf",
            "x-amzn-mtls-anything",
        ] {
            assert!(is_mtls_header(&HeaderName::from_static(n)), "{n}");
        }
        for n in ["x-amzn-trace-id", "x-amzn-mtls", "host"] {
            assert!(!is_mtls_header(&HeaderName::from_static(n)), "{n}");
        }
    }

    #[test]
    fn url_encoding_keeps_albs_safe_characters() {
        assert_eq!(url_encode("a+b=c/d e\n%"), "a+b=c/d%20e%0A%25");
    }
}
