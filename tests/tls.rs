//! TLS termination: protocol versions and policies, SNI certificate choice, ALPN, key formats, and
//! the certificate errors a config load reports.

mod common;
use common::*;

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use http::{Request, Version};
use rustls::{HandshakeKind, ProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// An https listener `web` with the given extra listener keys, forwarding to `backend`, and the
/// `[[certificates]]` tables in `certificates`.
fn https_config(backend: std::net::SocketAddr, certificates: &str, listener_extra: &str) -> String {
    https_base(
        backend,
        Listener::https("web", &[])
            .forward("app")
            .line(listener_extra),
    )
    .raw(certificates)
    .build()
}

/// [`https_config`] with one self-signed certificate for `localhost`.
fn one_cert_config(backend: std::net::SocketAddr, listener_extra: &str) -> String {
    https_base(
        backend,
        Listener::https("web", &["default"])
            .forward("app")
            .line(listener_extra),
    )
    .self_signed("default", &["localhost"])
    .build()
}

fn https_base(backend: std::net::SocketAddr, web: Listener) -> ConfigBuilder {
    ConfigBuilder::new()
        .runtime("handshake_timeout = \"2s\"\nidle_timeout = \"5s\"")
        .listener(web)
        .target_group(
            TargetGroup::new("app", &[backend])
                .line("connect_timeout = \"1s\"\nresponse_timeout = \"5s\""),
        )
}

/// One GET over an HTTP/1.1 connection on an established TLS stream.
async fn get_over(stream: TlsStream<TcpStream>, host: &str, path: &str) -> Got {
    let mut c = h1(stream).await;
    let req = Request::get(path)
        .header("host", host)
        .body(empty())
        .unwrap();
    read(c.send_request(req).await.unwrap()).await
}

/// Waits (bounded) for a metric that the server updates after the client has already moved on.
async fn wait_metric(sw: &Seawall, sample: &str, want: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let v = sw.metric(sample);
        if v >= want || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tls13_and_tls12_handshakes_serve_requests() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&one_cert_config(b.addr, ""));
    let addr = sw.addr("web");
    for (version, want) in [
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
    ] {
        let tls = tls_connect(addr, &Tls::new("localhost").only(version))
            .await
            .unwrap_or_else(|e| panic!("{want:?} handshake: {e}"));
        assert_eq!(tls.get_ref().1.protocol_version(), Some(want));
        let got = get_over(tls, "localhost", "/v").await;
        assert_eq!(got.status, 200, "{want:?}: {}", got.text());
        assert_eq!(got.json()["id"], "b1");
        assert_eq!(
            got.seen_header("x-forwarded-proto").as_deref(),
            Some("https")
        );
    }
    assert_eq!(b.hits(), 2);
}

/// A client offering `suites`, in that order of preference.
fn client_offering(
    suites: &[rustls::SupportedCipherSuite],
) -> std::sync::Arc<rustls::ClientConfig> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: suites.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(seawall::upstream::AnyTargetCertificate(
            provider,
        )))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[tokio::test]
async fn the_servers_order_of_suites_decides_as_albs_policies_do() {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&one_cert_config(b.addr, ""));
    let addr = sw.addr("web");
    for (offered, want) in [
        // OpenSSL's and rustls's clients list AES-256 first; the policy's first suite wins.
        (
            vec![cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_AES_128_GCM_SHA256],
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
        ),
        // A client that offers only a later suite of the policy still gets it.
        (
            vec![cs::TLS13_AES_256_GCM_SHA384],
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
        ),
        (
            vec![
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ],
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
    ] {
        let tls = tls_connect_with(addr, &client_offering(&offered), "localhost")
            .await
            .unwrap();
        let got = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(got, want, "offered {offered:?}");
        assert_eq!(get_over(tls, "localhost", "/").await.status, 200);
    }
}

#[tokio::test]
async fn full_handshakes_are_counted() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&one_cert_config(b.addr, ""));
    let metric = "seawall_tls_handshakes_total{kind=\"full\"}";
    assert_eq!(sw.metric(metric), 0.0);
    for _ in 0..3 {
        // Each client config is new, so nothing can be resumed: three full handshakes.
        let tls = tls_connect(sw.addr("web"), &Tls::new("localhost"))
            .await
            .unwrap();
        // A served request proves the server side finished its handshake too.
        assert_eq!(get_over(tls, "localhost", "/").await.status, 200);
    }
    assert_eq!(sw.metric(metric), 3.0);
    assert_eq!(
        sw.metric("seawall_tls_handshakes_total{kind=\"resumed\"}"),
        0.0
    );
}

#[tokio::test]
async fn sessions_resume_after_a_reload() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&one_cert_config(b.addr, ""));
    let addr = sw.addr("web");
    for (i, version) in [&rustls::version::TLS13, &rustls::version::TLS12]
        .into_iter()
        .enumerate()
    {
        let client = tls_client(&Tls::new("localhost").only(version));
        let tls = tls_connect_with(addr, &client, "localhost").await.unwrap();
        let kind = tls.get_ref().1.handshake_kind();
        assert_eq!(kind, Some(HandshakeKind::Full), "{version:?}");
        // Reading the answer also takes in the TLS 1.3 tickets sent after the handshake.
        assert_eq!(get_over(tls, "localhost", "/").await.status, 200);

        let generation = sw.config_generation();
        sw.running.reload().await.unwrap();
        assert_eq!(sw.config_generation(), generation + 1, "a new snapshot");

        // The new snapshot's TLS configuration accepts the ticket the old one issued.
        let tls = tls_connect_with(addr, &client, "localhost").await.unwrap();
        let kind = tls.get_ref().1.handshake_kind();
        assert_eq!(kind, Some(HandshakeKind::Resumed), "{version:?}");
        assert_eq!(get_over(tls, "localhost", "/").await.status, 200);
        let resumed = "seawall_tls_handshakes_total{kind=\"resumed\"}";
        assert_eq!(sw.metric(resumed), (i + 1) as f64);
    }
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_default_certificate() {
    let b = Backend::start("b1").await;
    let certs = r#"
[[certificates]]
name = "default"
self_signed = ["default.test"]

[[certificates]]
name = "app"
self_signed = ["app.example.test"]

[[certificates]]
name = "wild"
self_signed = ["*.example.test"]
"#;
    let sw = Seawall::start(&https_config(
        b.addr,
        certs,
        r#"certificates = ["default", "app", "wild"]"#,
    ));
    let addr = sw.addr("web");
    let served = |sni: &'static str| async move {
        let tls = tls_connect(addr, &Tls::new(sni)).await.unwrap();
        let names = served_names(&tls);
        // The connection serves requests whichever certificate it got.
        let got = get_over(tls, "x.test", "/").await;
        assert_eq!(got.status, 200, "{sni}: {}", got.text());
        names
    };
    assert_eq!(served("app.example.test").await, ["app.example.test"]);
    assert_eq!(served("APP.Example.TEST").await, ["app.example.test"]);
    assert_eq!(served("shop.example.test").await, ["*.example.test"]);
    // A wildcard covers one label only; the bare parent is not covered either.
    assert_eq!(served("a.shop.example.test").await, ["default.test"]);
    assert_eq!(served("example.test").await, ["default.test"]);
    assert_eq!(served("unknown.test").await, ["default.test"]);
    // Connecting by IP address sends no SNI at all.
    assert_eq!(served("127.0.0.1").await, ["default.test"]);
}

#[tokio::test]
async fn tls13_only_policy_refuses_tls12_clients() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&one_cert_config(b.addr, r#"tls_policy = "tls13-only""#));
    let addr = sw.addr("web");
    let errors = "seawall_tls_handshake_errors_total{reason=\"alert\"}";
    assert_eq!(sw.metric(errors), 0.0);

    let refused = tls_connect(addr, &Tls::new("localhost").only(&rustls::version::TLS12)).await;
    assert!(refused.is_err(), "a TLS 1.2-only client must be refused");
    assert_eq!(wait_metric(&sw, errors, 1.0).await, 1.0);

    let tls = tls_connect(addr, &Tls::new("localhost")).await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    assert_eq!(get_over(tls, "localhost", "/").await.status, 200);
    assert_eq!(b.hits(), 1);
    assert_eq!(sw.metric(errors), 1.0);
}

// Multi-thread: the HTTP/2 client connection must keep running (answering the GOAWAY/PING of the
// drain) while the test thread blocks in dropping seawall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_gives_http2_and_http11_gives_http1() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&one_cert_config(b.addr, ""));
    let addr = sw.addr("web");

    let tls = tls_connect(addr, &Tls::new("localhost").h2())
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut c = h2(tls).await;
    let req = Request::get("https://localhost/over-h2")
        .body(empty())
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    let got = read(resp).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["path"], "/over-h2");

    let tls = tls_connect(addr, &Tls::new("localhost")).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut c = h1(tls).await;
    let req = Request::get("/over-h1")
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_11);
    let got = read(resp).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["path"], "/over-h1");
}

#[tokio::test]
async fn listener_with_http11_alpn_does_not_negotiate_h2() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&one_cert_config(b.addr, r#"alpn = ["http/1.1"]"#));
    let addr = sw.addr("web");

    // A client that prefers h2 but also speaks HTTP/1.1 gets HTTP/1.1.
    let mut opts = Tls::new("localhost");
    opts.alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = tls_connect(addr, &opts).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let got = get_over(tls, "localhost", "/").await;
    assert_eq!(got.status, 200, "{}", got.text());

    // A client that offers h2 alone never gets it.
    match tls_connect(addr, &Tls::new("localhost").h2()).await {
        Err(_) => {}
        Ok(tls) => assert_ne!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..])),
    }
}

// ---------------------------------------------------------------------------------------------
// Key formats

fn pem_text(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

/// A self-signed certificate for `name` over `key` (given as PKCS#8 DER).
fn cert_for(name: &str, pkcs8: &[u8], alg: &'static rcgen::SignatureAlgorithm) -> String {
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.to_vec().into(), alg).unwrap();
    rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem()
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (its `privateKey` OCTET STRING).
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    use x509_parser::der_parser::ber::BerObjectContent;
    let (_, info) = x509_parser::der_parser::parse_der(pkcs8).unwrap();
    let BerObjectContent::Sequence(items) = info.content else {
        panic!("PKCS#8 is a SEQUENCE")
    };
    // version INTEGER, privateKeyAlgorithm AlgorithmIdentifier, privateKey OCTET STRING
    items[2].as_slice().unwrap().to_vec()
}

/// Writes `STEM.pem` and `STEM-key.pem`: an ECDSA P-256 certificate with a SEC1 key.
fn write_sec1(dir: &Path, stem: &str, name: &str) {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let pkcs8 = key.to_pkcs8v1().unwrap();
    let sec1 = key.private_key().as_der().unwrap();
    std::fs::write(
        dir.join(format!("{stem}.pem")),
        cert_for(name, pkcs8.as_ref(), &rcgen::PKCS_ECDSA_P256_SHA256),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{stem}-key.pem")),
        pem_text("EC PRIVATE KEY", sec1.as_ref()),
    )
    .unwrap();
}

/// Writes `STEM.pem` and `STEM-key.pem`: an RSA-2048 certificate with a PKCS#1 key.
fn write_pkcs1(dir: &Path, stem: &str, name: &str) {
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = key.as_der().unwrap();
    std::fs::write(
        dir.join(format!("{stem}.pem")),
        cert_for(name, pkcs8.as_ref(), &rcgen::PKCS_RSA_SHA256),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{stem}-key.pem")),
        pem_text("RSA PRIVATE KEY", &pkcs1_from_pkcs8(pkcs8.as_ref())),
    )
    .unwrap();
}

/// Writes `STEM.pem` (leaf then its issuing CA) and `STEM-key.pem` (the leaf's PKCS#8 key).
fn write_chain(dir: &Path, stem: &str, name: &str) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "seawall test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    std::fs::write(
        dir.join(format!("{stem}.pem")),
        format!("{}{}", leaf.pem(), ca.pem()),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{stem}-key.pem")),
        leaf_key.serialize_pem(),
    )
    .unwrap();
}

fn public_key_is_rsa(tls: &TlsStream<TcpStream>) -> bool {
    use x509_parser::prelude::*;
    let certs = tls.get_ref().1.peer_certificates().unwrap();
    let (_, cert) = X509Certificate::from_der(certs[0].as_ref()).unwrap();
    matches!(
        cert.public_key().parsed().unwrap(),
        x509_parser::public_key::PublicKey::RSA(_)
    )
}

#[tokio::test]
async fn pem_chains_and_pkcs8_sec1_pkcs1_keys_load_and_serve() {
    let b = Backend::start("b1").await;
    let certs = r#"
[[certificates]]
name = "pkcs8"
cert = "pkcs8.pem"
key = "pkcs8-key.pem"

[[certificates]]
name = "sec1"
cert = "sec1.pem"
key = "sec1-key.pem"

[[certificates]]
name = "pkcs1"
cert = "pkcs1.pem"
key = "pkcs1-key.pem"

[[certificates]]
name = "chain"
cert = "chain.pem"
key = "chain-key.pem"
"#;
    let sw = Seawall::start_with(
        &https_config(
            b.addr,
            certs,
            r#"certificates = ["pkcs8", "sec1", "pkcs1", "chain"]"#,
        ),
        |dir| {
            write_cert(dir, "pkcs8", &["pkcs8.test"]);
            write_sec1(dir, "sec1", "sec1.test");
            write_pkcs1(dir, "pkcs1", "rsa.test");
            write_chain(dir, "chain", "chain.test");
        },
    );
    // The fixtures are in the forms they claim to be.
    let key_pem = |stem: &str| std::fs::read_to_string(sw.dir.path().join(stem)).unwrap();
    assert!(key_pem("pkcs8-key.pem").starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(key_pem("sec1-key.pem").starts_with("-----BEGIN EC PRIVATE KEY-----"));
    assert!(key_pem("pkcs1-key.pem").starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert_eq!(key_pem("chain.pem").matches("BEGIN CERTIFICATE").count(), 2);

    let addr = sw.addr("web");
    for (sni, version) in [
        ("pkcs8.test", &rustls::version::TLS13),
        ("sec1.test", &rustls::version::TLS13),
        ("sec1.test", &rustls::version::TLS12),
        ("rsa.test", &rustls::version::TLS13),
        ("rsa.test", &rustls::version::TLS12),
        ("chain.test", &rustls::version::TLS13),
    ] {
        let tls = tls_connect(addr, &Tls::new(sni).only(version))
            .await
            .unwrap_or_else(|e| panic!("{sni} {version:?}: {e}"));
        assert_eq!(served_names(&tls), [sni]);
        assert_eq!(public_key_is_rsa(&tls), sni == "rsa.test", "{sni}");
        let chain_len = tls.get_ref().1.peer_certificates().unwrap().len();
        assert_eq!(chain_len, if sni == "chain.test" { 2 } else { 1 }, "{sni}");
        let got = get_over(tls, sni, "/").await;
        assert_eq!(got.status, 200, "{sni} {version:?}: {}", got.text());
    }
}

// ---------------------------------------------------------------------------------------------
// Certificate errors at load

/// Builds (without starting) a config written to a temp folder; gives the config errors.
fn build_errors(config: &str, prepare: impl FnOnce(&Path)) -> Vec<seawall::config::ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, config).unwrap();
    let source = seawall::config::Source::read(&path).unwrap();
    match seawall::App::build(&source) {
        Ok(_) => panic!("the config must be rejected"),
        Err(seawall::StartError::Config(errs)) => errs.0,
        Err(e) => panic!("expected a config error, got: {e}"),
    }
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

const FILE_CERT_LISTENER: &str = r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["main"]
default_action = { fixed_response = { status = 200, body = "ok" } }
"#;

#[test]
fn a_key_that_does_not_match_its_certificate_is_rejected() {
    let config = format!(
        "[[certificates]]\nname = \"main\"\ncert = \"a.pem\"\nkey = \"b-key.pem\"\n{FILE_CERT_LISTENER}"
    );
    let errs = build_errors(&config, |dir| {
        write_cert(dir, "a", &["a.test"]);
        write_cert(dir, "b", &["b.test"]);
    });
    assert_eq!(errs.len(), 1, "{errs:?}");
    let text = errs[0].to_string();
    assert!(text.contains("b-key.pem"), "{text}");
    assert!(text.contains("does not match"), "{text}");
    assert_eq!(errs[0].path, "certificates[0].key", "{text}");
    assert_eq!(errs[0].line, Some(line_of(&config, "b-key.pem")), "{text}");
}

#[test]
fn a_missing_certificate_file_is_rejected_with_its_name_and_line() {
    let config = format!(
        "# certificates\n\n[[certificates]]\nname = \"main\"\ncert = \"missing.pem\"\nkey = \"a-key.pem\"\n{FILE_CERT_LISTENER}"
    );
    let errs = build_errors(&config, |dir| {
        write_cert(dir, "a", &["a.test"]);
    });
    assert_eq!(errs.len(), 1, "{errs:?}");
    let text = errs[0].to_string();
    assert!(text.contains("missing.pem"), "{text}");
    assert_eq!(errs[0].path, "certificates[0].cert", "{text}");
    let line = line_of(&config, "missing.pem");
    assert_eq!(line, 5);
    assert_eq!(errs[0].line, Some(line), "{text}");
    assert!(text.contains(&format!("seawall.toml:{line}:")), "{text}");
}
