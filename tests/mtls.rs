//! Mutual TLS as ALB's: `client_auth = { mode = "verify", ca, crl }` refuses clients without a
//! valid certificate at the handshake and tells targets who the client is in ALB's
//! `X-Amzn-Mtls-Clientcert-*` headers; `mode = "passthrough"` passes whatever chain the client
//! presented in `X-Amzn-Mtls-Clientcert`. A client's own copies of these headers never arrive. The
//! trust store's files reload like certificates. The PKI (CAs, client certificates, a CRL) is
//! made with rcgen for each test.

mod common;
use common::process::Proc;
use common::*;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::HandshakeKind;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Generous bound for what should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

const RELOADS_OK: &str = "seawall_config_reloads_total{result=\"success\"}";
const RELOADS_FAILED: &str = "seawall_config_reloads_total{result=\"failure\"}";

// ---------------------------------------------------------------------------------------------
// The PKI

/// A certificate authority that signs client certificates and revocation lists.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::default();
        // rcgen's default name already holds a CN, which would keep its place first.
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "Seawall Tests");
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate for `cn` with serial `serial`, valid from `from` to `until` (years).
    fn client_valid(&self, cn: &str, serial: u64, from: i32, until: i32) -> Client {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "US");
        p.distinguished_name
            .push(DnType::OrganizationName, "Seawall Tests");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(SerialNumber::from(serial));
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(until, 1, 1);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Client {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }

    /// A client certificate valid from 2020 to 2099.
    fn client(&self, cn: &str, serial: u64) -> Client {
        self.client_valid(cn, serial, 2020, 2099)
    }

    /// A CRL revoking `serials`, valid until 2099.
    fn crl(&self, serials: &[u64]) -> String {
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|&s| RevokedCertParams {
                    serial_number: SerialNumber::from(s),
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// A client's certificate chain (leaf first) and key.
struct Client {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Client {
    /// The leaf as PEM with LF line ends, as ALB's header carries it (`%0A`).
    fn leaf_pem(&self) -> String {
        let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        pem::encode_config(
            &pem::Pem::new("CERTIFICATE", self.chain[0].to_vec()),
            config,
        )
    }
}

/// A TLS client presenting `client`'s certificate (or none). Connections made with the same
/// config resume their sessions.
fn client_config(client: Option<&Client>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(seawall::upstream::AnyTargetCertificate(
            provider,
        )));
    let mut cfg = match client {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// One GET of `/` on a fresh connection made with `client`, with `headers` added: the backend's
/// echo, and how the handshake went; `Err` when seawall refused the handshake. In TLS 1.3 the
/// client's side of the handshake ends before the server has judged its certificate, so a
/// refusal shows as the request failing.
async fn get_with(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    headers: &[(&str, &str)],
) -> Result<(Got, HandshakeKind), String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(client.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| format!("http handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req = Request::get("/").header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        send.send_request(req.body(empty()).unwrap()),
    )
    .await
    .map_err(|_| "no answer".to_string())?
    .map_err(|e| format!("request: {e}"))?;
    Ok((read(resp).await, kind))
}

async fn get(addr: SocketAddr, client: Option<&Client>) -> Result<Got, String> {
    get_with(addr, &client_config(client), &[])
        .await
        .map(|(got, _)| got)
}

/// Every value of a request header the backend saw.
fn seen_all(got: &Got, name: &str) -> Vec<String> {
    got.json()["headers"][name]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The `X-Amzn-Mtls-*` headers the backend saw, by name.
fn mtls_seen(got: &Got) -> Vec<(String, Vec<String>)> {
    got.json()["headers"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("x-amzn-mtls"))
        .map(|k| (k.clone(), seen_all(got, k)))
        .collect()
}

/// Reverses ALB's URL-encoding of PEM text.
fn url_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
        } else {
            out.push(b);
        }
    }
    out
}

/// The DER certificates of URL-encoded PEM text.
fn decoded_chain(header: &str) -> Vec<Vec<u8>> {
    pem::parse_many(url_decode(header))
        .unwrap()
        .into_iter()
        .map(|p| p.contents().to_vec())
        .collect()
}

/// A config with an https listener `mtls` (whose `client_auth` is `client_auth`), a plain
/// listener `plain`, both forwarding to `backend`, and the access and connection logs on.
fn config(backend: SocketAddr, client_auth: &str) -> String {
    ConfigBuilder::new()
        .runtime("handshake_timeout = \"2s\"\nidle_timeout = \"5s\"")
        .self_signed("site", &["localhost"])
        .listener(
            Listener::https("mtls", &["site"])
                .line(&format!("client_auth = {client_auth}"))
                .forward("app"),
        )
        .listener(Listener::http("plain").forward("app"))
        .target_group(TargetGroup::new("app", &[backend]).line("response_timeout = \"5s\""))
        .raw("[access_log]\npath = \"access.log\"\nconnections_path = \"connections.log\"")
        .build()
}

const VERIFY: &str = r#"{ mode = "verify", ca = "ca.pem", crl = "ca.crl" }"#;

/// The connection log's lines, once it has at least `n` of them.
async fn connection_lines(sw: &Seawall, n: usize) -> Vec<String> {
    let path = sw.dir.path().join("connections.log");
    let read = || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    eventually(PATIENCE, || async { read().len() >= n }).await;
    read()
}

/// The `tls_verify_status` of a connection-log line (the field before the trace id).
fn verify_status(line: &str) -> &str {
    let mut fields = line.rsplit(' ');
    fields.next();
    fields.next().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// Replaces `dir/name` as editors and config tools do: a temp file renamed over it.
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Verify mode

#[tokio::test]
async fn verify_refuses_a_missing_foreign_revoked_or_expired_certificate() {
    let b = Backend::start("b1").await;
    let (ca, other) = (Ca::new("Client CA"), Ca::new("Other CA"));
    let sw = Seawall::start_with(&config(b.addr, VERIFY), |dir| {
        write(dir, "ca.pem", &ca.pem());
        write(dir, "ca.crl", &ca.crl(&[666]));
    });
    let addr = sw.addr("mtls");

    let refused = [
        ("no certificate", None, "ClientCertMissing"),
        (
            "another CA's",
            Some(other.client("stranger", 7)),
            "ClientCertUntrusted",
        ),
        (
            "revoked",
            Some(ca.client("revoked", 666)),
            "ClientCertCrlHit",
        ),
        (
            "expired",
            Some(ca.client_valid("expired", 8, 2000, 2001)),
            "ClientCertExpired",
        ),
    ];
    for (what, client, _) in &refused {
        let got = get(addr, client.as_ref()).await;
        assert!(got.is_err(), "{what}: served {:?}", got.map(|g| g.text()));
    }
    assert_eq!(b.hits(), 0, "no refused client reached the target");
    // ALB's connection log says why, one line per handshake, in order.
    let lines = connection_lines(&sw, refused.len()).await;
    let statuses: Vec<&str> = lines.iter().map(|l| verify_status(l)).collect();
    let want: Vec<String> = refused
        .iter()
        .map(|(_, _, why)| format!("Failed:{why}"))
        .collect();
    assert_eq!(statuses, want, "{lines:#?}");
    for l in &lines {
        assert!(l.contains(" - - - Failed:"), "no certificate fields: {l}");
    }
    assert!(sw.metric("seawall_tls_handshake_errors_total{reason=\"alert\"}") >= 4.0);

    // And a valid one still gets through.
    let ok = get(addr, Some(&ca.client("fine", 9))).await.unwrap();
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn a_valid_certificate_reaches_the_target_with_albs_headers_and_forged_ones_never_do() {
    let b = Backend::start("b1").await;
    let ca = Ca::new("Client CA");
    let sw = Seawall::start_with(&config(b.addr, VERIFY), |dir| {
        write(dir, "ca.pem", &ca.pem());
        write(dir, "ca.crl", &ca.crl(&[666]));
    });
    let client = ca.client("alice, admin", 0x00BC_614E);
    let forged = [
        ("x-amzn-mtls-clientcert-subject", "CN=root"),
        ("X-Amzn-Mtls-Clientcert-Serial-Number", "01"),
        ("x-amzn-mtls-clientcert", "forged"),
        ("x-amzn-mtls-something-new", "forged"),
    ];
    let (got, _) = get_with(sw.addr("mtls"), &client_config(Some(&client)), &forged)
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    let seen = mtls_seen(&got);
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "x-amzn-mtls-clientcert-issuer",
            "x-amzn-mtls-clientcert-leaf",
            "x-amzn-mtls-clientcert-serial-number",
            "x-amzn-mtls-clientcert-subject",
            "x-amzn-mtls-clientcert-validity",
        ],
        "seawall's five, once each, and none of the client's: {seen:?}"
    );
    let one = |name: &str| {
        let values = seen_all(&got, name);
        assert_eq!(values.len(), 1, "{name}: {values:?}");
        values[0].clone()
    };
    assert_eq!(one("x-amzn-mtls-clientcert-serial-number"), "BC614E");
    assert_eq!(
        one("x-amzn-mtls-clientcert-subject"),
        r"CN=alice\, admin,O=Seawall Tests,C=US"
    );
    assert_eq!(
        one("x-amzn-mtls-clientcert-issuer"),
        "CN=Client CA,O=Seawall Tests"
    );
    assert_eq!(
        one("x-amzn-mtls-clientcert-validity"),
        "NotBefore=2020-01-01T00:00:00Z;NotAfter=2099-01-01T00:00:00Z"
    );
    let leaf = one("x-amzn-mtls-clientcert-leaf");
    assert!(
        leaf.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
        "{leaf}"
    );
    assert_eq!(decoded_chain(&leaf), [client.chain[0].to_vec()]);
    assert_eq!(url_decode(&leaf), client.leaf_pem().into_bytes());

    // On a listener without client_auth, the forged headers are dropped all the same.
    let tcp = TcpStream::connect(sw.addr("plain")).await.unwrap();
    let mut c = h1(tcp).await;
    let mut req = Request::get("/").header("host", "localhost");
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let plain = read(c.send_request(req.body(empty()).unwrap()).await.unwrap()).await;
    assert_eq!(plain.status, 200);
    assert_eq!(mtls_seen(&plain), [], "forged headers arrived");

    // The connection log names the certificate, as ALB's does.
    let lines = connection_lines(&sw, 1).await;
    let line = &lines[0];
    assert!(
        line.contains(
            r#" "CN=alice\\, admin,O=Seawall Tests,C=US" NotBefore=2020-01-01T00:00:00Z;NotAfter=2099-01-01T00:00:00Z BC614E Success TID_"#
        ),
        "{line}"
    );
}

#[tokio::test]
async fn http2_requests_carry_the_headers_too() {
    let b = Backend::start("b1").await;
    let ca = Ca::new("Client CA");
    let sw = Seawall::start_with(
        &config(b.addr, r#"{ mode = "verify", ca = "ca.pem" }"#),
        |dir| write(dir, "ca.pem", &ca.pem()),
    );
    let client = ca.client("h2-client", 42);
    let mut cfg = (*client_config(Some(&client))).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(sw.addr("mtls")).await.unwrap();
    let tls = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut send = h2(tls).await;
    let req = Request::get("https://localhost/")
        .header("x-amzn-mtls-clientcert-subject", "CN=root")
        .body(empty())
        .unwrap();
    let got = read(send.send_request(req).await.unwrap()).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        seen_all(&got, "x-amzn-mtls-clientcert-subject"),
        ["CN=h2-client,O=Seawall Tests,C=US"]
    );
    assert_eq!(
        seen_all(&got, "x-amzn-mtls-clientcert-serial-number"),
        ["2A"]
    );
}

// ---------------------------------------------------------------------------------------------
// Passthrough

#[tokio::test]
async fn passthrough_passes_any_chain_unverified_and_serves_clients_without_one() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(b.addr, r#"{ mode = "passthrough" }"#));
    let addr = sw.addr("mtls");

    // A certificate nobody configured, expired at that, with its CA in the chain: passed on.
    let ca = Ca::new("Unknown CA");
    let mut client = ca.client_valid("anyone", 5, 2000, 2001);
    client.chain.push(ca.issuer.der().clone());
    let forged = [("x-amzn-mtls-clientcert-subject", "CN=root")];
    let (got, _) = get_with(addr, &client_config(Some(&client)), &forged)
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    let seen = mtls_seen(&got);
    assert_eq!(seen.len(), 1, "only the chain, no forged subject: {seen:?}");
    let chain = &seen_all(&got, "x-amzn-mtls-clientcert")[0];
    let want: Vec<Vec<u8>> = client.chain.iter().map(|c| c.to_vec()).collect();
    assert_eq!(decoded_chain(chain), want);

    // No certificate: served, without the header.
    let (none, _) = get_with(
        addr,
        &client_config(None),
        &[("x-amzn-mtls-clientcert", "x")],
    )
    .await
    .unwrap();
    assert_eq!(none.status, 200);
    assert_eq!(mtls_seen(&none), []);

    // The log has the leaf's fields and Success for the first, dashes for the second.
    let lines = connection_lines(&sw, 2).await;
    assert!(
        lines[0].contains(
            r#" "CN=anyone,O=Seawall Tests,C=US" NotBefore=2000-01-01T00:00:00Z;NotAfter=2001-01-01T00:00:00Z 05 Success "#
        ),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains(" - - - Success "), "{}", lines[1]);
}

// ---------------------------------------------------------------------------------------------
// Resumption and reload

#[tokio::test]
async fn a_resumed_session_keeps_the_client_identity() {
    let b = Backend::start("b1").await;
    let ca = Ca::new("Client CA");
    let sw = Seawall::start_with(
        &config(b.addr, r#"{ mode = "verify", ca = "ca.pem" }"#),
        |dir| write(dir, "ca.pem", &ca.pem()),
    );
    let client = client_config(Some(&ca.client("returning", 77)));
    for version in ["first", "resumed"] {
        let (got, kind) = get_with(sw.addr("mtls"), &client, &[]).await.unwrap();
        let want = if version == "first" {
            HandshakeKind::Full
        } else {
            HandshakeKind::Resumed
        };
        assert_eq!(kind, want, "{version}");
        assert_eq!(
            seen_all(&got, "x-amzn-mtls-clientcert-subject"),
            ["CN=returning,O=Seawall Tests,C=US"],
            "{version}"
        );
        assert_eq!(
            seen_all(&got, "x-amzn-mtls-clientcert-serial-number"),
            ["4D"]
        );
    }
}

#[tokio::test]
async fn ca_and_crl_files_reload_like_certificates() {
    let b = Backend::start("b1").await;
    let (ca, next_ca) = (Ca::new("Client CA"), Ca::new("Next CA"));
    let sw = Seawall::start_with(&config(b.addr, VERIFY), |dir| {
        write(dir, "ca.pem", &ca.pem());
        write(dir, "ca.crl", &ca.crl(&[]));
    });
    let dir = sw.dir.path();
    let addr = sw.addr("mtls");
    let (alice, bob) = (ca.client("alice", 10), ca.client("bob", 11));
    // Alice's client keeps its session tickets: a revocation must not be dodged by resuming.
    let alice_client = client_config(Some(&alice));
    assert!(get_with(addr, &alice_client, &[]).await.is_ok());
    assert!(get(addr, Some(&bob)).await.is_ok());

    // Alice is revoked: nothing but the file watcher tells seawall.
    replace(dir, "ca.crl", &ca.crl(&[10]));
    let revoked = eventually(PATIENCE, || async {
        get_with(addr, &alice_client, &[]).await.is_err()
    })
    .await;
    assert!(revoked, "alice is still served");
    assert!(get(addr, Some(&bob)).await.is_ok(), "bob is not revoked");

    // A broken CA file fails the reload; the trust store in force keeps serving.
    let failed = sw.metric(RELOADS_FAILED);
    let ok = sw.metric(RELOADS_OK);
    replace(
        dir,
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    assert!(eventually(PATIENCE, || async { sw.metric(RELOADS_FAILED) > failed }).await);
    assert!(
        get(addr, Some(&bob)).await.is_ok(),
        "the old trust store serves"
    );
    assert!(get(addr, Some(&alice)).await.is_err(), "and its CRL");

    // A new CA (and no CRL entries): its clients get in, the old CA's no longer do.
    replace(dir, "ca.crl", &next_ca.crl(&[]));
    replace(dir, "ca.pem", &next_ca.pem());
    assert!(eventually(PATIENCE, || async { sw.metric(RELOADS_OK) > ok }).await);
    let carol = next_ca.client("carol", 12);
    assert!(
        eventually(PATIENCE, || async { get(addr, Some(&carol)).await.is_ok() }).await,
        "the new CA's client is refused"
    );
    assert!(
        get(addr, Some(&bob)).await.is_err(),
        "the old CA is still trusted"
    );
}

// ---------------------------------------------------------------------------------------------
// The real binary

#[tokio::test]
async fn the_binary_verifies_client_certificates_and_picks_up_a_new_ca() {
    let b = Backend::start("b1").await;
    let (ca, next_ca) = (Ca::new("Client CA"), Ca::new("Next CA"));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ca.pem", &ca.pem());
    write(dir.path(), "ca.crl", &ca.crl(&[666]));
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, config(b.addr, VERIFY)).unwrap();
    let mut p = Proc::start(&path, &["mtls", "plain"], false).await;
    let addr = p.addr("mtls");

    assert!(
        get(addr, None).await.is_err(),
        "served without a certificate"
    );
    assert!(get(addr, Some(&ca.client("revoked", 666))).await.is_err());
    let alice = ca.client("alice", 1);
    let forged = [("x-amzn-mtls-clientcert-subject", "CN=root")];
    let (got, _) = get_with(addr, &client_config(Some(&alice)), &forged)
        .await
        .unwrap();
    assert_eq!(
        seen_all(&got, "x-amzn-mtls-clientcert-subject"),
        ["CN=alice,O=Seawall Tests,C=US"]
    );
    assert_eq!(
        seen_all(&got, "x-amzn-mtls-clientcert-issuer"),
        ["CN=Client CA,O=Seawall Tests"]
    );

    // The CA file is replaced (and its CRL with it): the watcher reloads, no signal needed.
    replace(dir.path(), "ca.crl", &next_ca.crl(&[]));
    replace(dir.path(), "ca.pem", &next_ca.pem());
    let carol = next_ca.client("carol", 2);
    assert!(
        eventually(PATIENCE, || async { get(addr, Some(&carol)).await.is_ok() }).await,
        "the new CA's client is refused:\n{}",
        p.log()
    );
    assert!(
        get(addr, Some(&alice)).await.is_err(),
        "the old CA is still trusted"
    );

    p.signal("TERM");
    let status = p.wait_exit(PATIENCE).await;
    assert!(status.success(), "{status}:\n{}", p.log());
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[tokio::test]
async fn client_auth_errors_name_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let check = |client_auth: &str, protocol: &str| {
        let listener = if protocol == "https" {
            Listener::https("web", &["site"])
        } else {
            Listener::http("web")
        };
        let text = ConfigBuilder::new()
            .self_signed("site", &["localhost"])
            .listener(
                listener
                    .line(&format!("client_auth = {client_auth}"))
                    .default_action(&fixed("ok")),
            )
            .build();
        let path = dir.path().join("seawall.toml");
        std::fs::write(&path, &text).unwrap();
        let source = seawall::config::Source::read(&path).unwrap();
        match seawall::App::build(&source) {
            Ok(_) => panic!("{client_auth} was accepted"),
            Err(e) => e.to_string(),
        }
    };
    write(dir.path(), "junk.pem", "no PEM here\n");
    let cases = [
        (
            r#"{ mode = "verify" }"#,
            "https",
            "listeners[0].client_auth.mode",
            "needs `ca`",
        ),
        (
            r#"{ mode = "strict", ca = "x" }"#,
            "https",
            "listeners[0].client_auth.mode",
            "unknown mode \"strict\"",
        ),
        (
            r#"{ mode = "passthrough", ca = "ca.pem" }"#,
            "https",
            "listeners[0].client_auth.ca",
            "passthrough verifies nothing",
        ),
        (
            r#"{ mode = "verify", ca = "missing.pem" }"#,
            "https",
            "listeners[0].client_auth.ca",
            "missing.pem",
        ),
        (
            r#"{ mode = "verify", ca = "junk.pem" }"#,
            "https",
            "listeners[0].client_auth.ca",
            "holds no PEM certificate",
        ),
        (
            r#"{ mode = "passthrough" }"#,
            "http",
            "listeners[0].client_auth",
            "only an https listener",
        ),
    ];
    for (client_auth, protocol, key, reason) in cases {
        let err = check(client_auth, protocol);
        assert!(err.contains(&format!(": {key}: ")), "{client_auth}: {err}");
        assert!(err.contains(reason), "{client_auth}: {err}");
        assert!(err.contains("seawall.toml:"), "{client_auth}: {err}");
    }
    // A CRL that is no CRL is named as the crl.
    let ca = Ca::new("Client CA");
    write(dir.path(), "ca.pem", &ca.pem());
    let err = check(
        r#"{ mode = "verify", ca = "ca.pem", crl = "ca.pem" }"#,
        "https",
    );
    assert!(err.contains(": listeners[0].client_auth.crl: "), "{err}");
    assert!(
        err.contains("holds no certificate revocation list"),
        "{err}"
    );
}
