//! One whole proxied request per iteration, over loopback: a hyper HTTP/1.1 client on a kept-alive
//! connection → seawall (in-process, its own runtime, one worker) → a hyper backend answering a
//! small fixed body, and back. The time is the round trip, so it counts the client and backend too;
//! compare the figures with each other (plain vs TLS, seawall vs `direct`), not with a proxy's CPU
//! cost alone (benches/compare.sh measures that).
//!
//! - `proxied/direct`: the same client straight to the backend (the floor);
//! - `proxied/http`: through a plain-HTTP listener;
//! - `proxied/https`: through an HTTPS listener (TLS 1.3, kept alive: no handshake per request).
//!
//! Run: `cargo bench --bench proxy -- --warm-up-time 1 --measurement-time 2`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use seawall::upstream::AnyTargetCertificate;
use tokio::net::{TcpListener, TcpStream};

const BODY: &[u8] = b"hello from the backend\n";

/// A hyper HTTP/1.1 server answering `BODY` to everything, on its own thread.
fn backend() -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            BODY,
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
    });
    addr
}

fn seawall(backend: SocketAddr) -> seawall::Running {
    let text = format!(
        r#"
[runtime]
workers = 1

[[certificates]]
name = "c"
self_signed = ["localhost"]

[[listeners]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ forward = "backend" }}

[[listeners]]
name = "https"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["c"]
default_action = {{ forward = "backend" }}

[[target_groups]]
name = "backend"
targets = ["{backend}"]
"#
    );
    let source = seawall::config::Source::new("bench.toml", ".", text);
    seawall::App::build(&source)
        .and_then(seawall::App::start)
        .unwrap_or_else(|e| panic!("seawall starts: {e}"))
}

async fn client(addr: SocketAddr, tls: bool) -> SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    if tls {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyTargetCertificate(provider)))
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        send
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        send
    }
}

async fn round_trip(send: &mut SendRequest<Empty<Bytes>>, host: &str) -> usize {
    send.ready().await.unwrap();
    let req = Request::get("/")
        .header("host", host)
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.into_body().collect().await.unwrap().to_bytes().len()
}

fn bench(c: &mut Criterion) {
    let backend = backend();
    let running = seawall(backend);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let targets = [
        ("direct", backend, false),
        ("http", running.listener_addr("http").unwrap(), false),
        ("https", running.listener_addr("https").unwrap(), true),
    ];
    let mut g = c.benchmark_group("proxied");
    for (name, addr, tls) in targets {
        let mut send = rt.block_on(client(addr, tls));
        let host = format!("localhost:{}", addr.port());
        assert_eq!(rt.block_on(round_trip(&mut send, &host)), BODY.len());
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(round_trip(&mut send, &host)))
        });
    }
    g.finish();
    running.stop();
}

criterion_group!(benches, bench);
criterion_main!(benches);
