//! TLS in memory, with seawall's own server configuration (`seawall::tls::server_config`, so its
//! provider, suites and session tickets): a rustls client and server pump bytes into each other's
//! buffers, no sockets, so the figures are the TLS work alone.
//!
//! - `full_handshake/<version>/<cert>`: server-side time of one full handshake (only the
//!   server's `read_tls` + `process_new_packets` + `write_tls` are timed; the client's work is
//!   left out), X25519, with an ECDSA P-256 and an RSA-2048 certificate;
//! - `resumed_handshake/<version>`: the same for a resumed handshake (stateless tickets sealed
//!   with seawall's ticket keys, TLS 1.3 and 1.2 alike), ECDSA P-256;
//! - `records/<suite>`: server-side encryption of 16 KiB application-data writes on an established
//!   TLS 1.3 connection (`writer().write_all` + `write_tls`), as bytes per second.
//!
//! Run: `cargo bench --bench tls -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::io::{Read, Write};

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs::{self, cipher_suite, kx_group};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, Connection, DigitallySignedStruct, ServerConfig,
    ServerConnection, SignatureScheme, SupportedProtocolVersion,
};
use seawall::tls::LoadedCert;
use seawall::tls::Policy as TlsPolicy;

const NAME: &str = "bench.test";
const RECORD: usize = 16 * 1024;

/// The client trusts anything and checks no signature: only the server's cost is measured, and
/// this keeps the client's share of the wall time (not timed, but waited for) small.
#[derive(Debug)]
struct TrustAll;

impl ServerCertVerifier for TrustAll {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Loads a certificate the way seawall does (PEM files through `load_pem_files`).
fn load(dir: &std::path::Path, stem: &str, cert_pem: &str, key_pem: &str) -> LoadedCert {
    let (c, k) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}-key.pem")),
    );
    std::fs::write(&c, cert_pem).unwrap();
    std::fs::write(&k, key_pem).unwrap();
    seawall::tls::load_pem_files(&c, &k).unwrap()
}

fn ecdsa_cert(dir: &std::path::Path) -> LoadedCert {
    let g = seawall::tls::self_signed(&[NAME.to_string()]).unwrap();
    load(dir, "ecdsa", &g.cert_pem, &g.key_pem)
}

/// RSA-2048, generated with aws-lc-rs (rcgen cannot generate RSA keys with its aws-lc backend).
fn rsa_cert(dir: &std::path::Path) -> LoadedCert {
    use ::aws_lc_rs::encoding::AsDer;
    use ::aws_lc_rs::rsa::{KeyPair, KeySize};
    let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = key.as_der().unwrap();
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8.as_ref().to_vec().into(),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let cert = rcgen::CertificateParams::new(vec![NAME.to_string()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    load(dir, "rsa", &cert.pem(), &kp.serialize_pem())
}

fn server(cert: &LoadedCert) -> Arc<ServerConfig> {
    seawall::tls::server_config(&[cert], TlsPolicy::Tls13And12, &[b"http/1.1".to_vec()]).unwrap()
}

fn client(
    version: &'static SupportedProtocolVersion,
    suite: Option<rustls::SupportedCipherSuite>,
    resume: bool,
) -> Arc<ClientConfig> {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![kx_group::X25519];
    if let Some(s) = suite {
        provider.cipher_suites = vec![s];
    }
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAll))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = if resume {
        Resumption::in_memory_sessions(64)
    } else {
        Resumption::disabled()
    };
    Arc::new(cfg)
}

/// Moves everything the client has to send into the server; returns the server's time to take it
/// in.
fn to_server(c: &mut Connection, s: &mut Connection, buf: &mut Vec<u8>) -> Duration {
    buf.clear();
    while c.wants_write() {
        c.write_tls(buf).unwrap();
    }
    let start = Instant::now();
    let mut rd = &buf[..];
    while !rd.is_empty() {
        s.read_tls(&mut rd).unwrap();
        s.process_new_packets().unwrap();
    }
    start.elapsed()
}

/// Moves everything the server has to send into the client; returns the server's time to write
/// it out.
fn to_client(s: &mut Connection, c: &mut Connection, buf: &mut Vec<u8>) -> Duration {
    buf.clear();
    let start = Instant::now();
    while s.wants_write() {
        s.write_tls(buf).unwrap();
    }
    let spent = start.elapsed();
    let mut rd = &buf[..];
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets().unwrap();
    }
    spent
}

/// A full (or resumed) handshake to the end, TLS 1.3 tickets included; returns the pair and the
/// server's time.
fn handshake(
    client_cfg: &Arc<ClientConfig>,
    server_cfg: &Arc<ServerConfig>,
    buf: &mut Vec<u8>,
) -> (Connection, Connection, Duration) {
    let name = ServerName::try_from(NAME).unwrap();
    let mut c = Connection::from(ClientConnection::new(client_cfg.clone(), name).unwrap());
    let mut s = Connection::from(ServerConnection::new(server_cfg.clone()).unwrap());
    let mut server_time = Duration::ZERO;
    while c.is_handshaking() || s.is_handshaking() || c.wants_write() || s.wants_write() {
        assert!(c.wants_write() || s.wants_write(), "handshake stalled");
        server_time += to_server(&mut c, &mut s, buf);
        server_time += to_client(&mut s, &mut c, buf);
    }
    (c, s, server_time)
}

fn kind(c: &Connection) -> Option<rustls::HandshakeKind> {
    match c {
        Connection::Client(c) => c.handshake_kind(),
        Connection::Server(s) => s.handshake_kind(),
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ecdsa = server(&ecdsa_cert(dir.path()));
    let rsa = server(&rsa_cert(dir.path()));
    let mut buf = Vec::with_capacity(64 * 1024);
    let versions: [(&str, &'static SupportedProtocolVersion); 2] = [
        ("tls13", &rustls::version::TLS13),
        ("tls12", &rustls::version::TLS12),
    ];

    let mut full = c.benchmark_group("full_handshake");
    for (vname, version) in versions {
        let client_cfg = client(version, None, false);
        for (cname, server_cfg) in [("ecdsa_p256", &ecdsa), ("rsa2048", &rsa)] {
            let (cl, _, _) = handshake(&client_cfg, server_cfg, &mut buf);
            assert_eq!(kind(&cl), Some(rustls::HandshakeKind::Full));
            full.bench_function(format!("{vname}/{cname}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += black_box(handshake(&client_cfg, server_cfg, &mut buf)).2;
                    }
                    total
                })
            });
        }
    }
    full.finish();

    let mut resumed = c.benchmark_group("resumed_handshake");
    for (vname, version) in versions {
        let client_cfg = client(version, None, true);
        // The first handshake stores a session; every later one resumes and stores a fresh one.
        handshake(&client_cfg, &ecdsa, &mut buf);
        let (cl, _, _) = handshake(&client_cfg, &ecdsa, &mut buf);
        assert_eq!(kind(&cl), Some(rustls::HandshakeKind::Resumed), "{vname}");
        resumed.bench_function(vname, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += black_box(handshake(&client_cfg, &ecdsa, &mut buf)).2;
                }
                total
            })
        });
    }
    resumed.finish();

    let mut records = c.benchmark_group("records");
    records.throughput(Throughput::Bytes(RECORD as u64));
    let plaintext = vec![0x5au8; RECORD];
    for suite in [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let client_cfg = client(&rustls::version::TLS13, Some(suite), false);
        let (mut cl, mut sv, _) = handshake(&client_cfg, &ecdsa, &mut buf);
        let Connection::Server(server_conn) = &mut sv else {
            unreachable!()
        };
        let mut out = Vec::with_capacity(2 * RECORD);
        // The pair works before the records sent from here on go unread (the client's sequence
        // numbers would fall behind, so it cannot check afterwards).
        server_conn.writer().write_all(b"ok").unwrap();
        out.clear();
        while server_conn.wants_write() {
            server_conn.write_tls(&mut out).unwrap();
        }
        let mut rd = &out[..];
        cl.read_tls(&mut rd).unwrap();
        cl.process_new_packets().unwrap();
        let mut got = [0u8; 2];
        cl.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ok");
        records.bench_function(format!("{:?}", suite.suite()), |b| {
            b.iter(|| {
                server_conn.writer().write_all(&plaintext).unwrap();
                out.clear();
                while server_conn.wants_write() {
                    server_conn.write_tls(&mut out).unwrap();
                }
                black_box(out.len())
            })
        });
    }
    records.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
