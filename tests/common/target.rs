//! Targets that speak what [`super::Backend`] does not: HTTP/2 with prior knowledge (h2c), HTTP/2
//! over TLS with ALPN h2, and HTTP/1.1 over TLS. The test gives the handler; the target records
//! what it saw and counts connections the way `Backend` does.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::{is_probe, Conns};

/// What a target saw of one request (its head; the handler has the body).
#[derive(Debug, Clone)]
pub struct Seen {
    /// Which accepted connection carried it (numbered from 0).
    pub conn: usize,
    /// The ALPN protocol of a TLS connection.
    pub alpn: Option<Vec<u8>>,
    pub version: Version,
    pub method: Method,
    /// Path and query, as sent.
    pub path: String,
    /// HTTP/2's `:authority` (HTTP/1 requests in origin-form have none).
    pub authority: Option<String>,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A target on 127.0.0.1:0 answering with a handler the test gives. Stopped when dropped, with
/// its open connections, as a crash would.
pub struct Target {
    pub addr: SocketAddr,
    /// Requests other than health checks.
    pub hits: Arc<AtomicUsize>,
    /// Health checks (ALB's health-checker User-Agent).
    pub probes: Arc<AtomicUsize>,
    /// Connections that carried at least one request other than a health check.
    pub conns: Arc<Conns>,
    /// Completed TLS handshakes.
    pub handshakes: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a [`Target`] speaks. Each serves one HTTP version only, and the other fails the
/// connection, so a request that reaches the handler came as that version.
#[derive(Clone, Copy)]
pub enum Serves {
    /// HTTP/2 with prior knowledge in plain text.
    H2c,
    /// HTTP/2 over TLS, offering ALPN h2 only.
    H2Tls,
    /// HTTP/1.1 over TLS, without ALPN.
    Https,
}

impl Target {
    /// A target speaking `serves`, answering every request with `handler`.
    pub async fn start<F, Fut, B>(serves: Serves, handler: F) -> Target
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = match serves {
            Serves::H2c => None,
            Serves::H2Tls => Some(tls_acceptor(&[b"h2"])),
            Serves::Https => Some(tls_acceptor(&[])),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Counts {
            hits: Arc::default(),
            probes: Arc::default(),
            conns: Arc::default(),
            seen: Arc::default(),
        };
        let handshakes = Arc::new(AtomicUsize::new(0));
        let (counts2, handshakes2) = (counts.clone(), handshakes.clone());
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            // Owned by the accept task, so that dropping the target closes its connections too.
            let mut open = tokio::task::JoinSet::new();
            for conn in 0.. {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                while open.try_join_next().is_some() {}
                let (handler, counts, tls) = (handler.clone(), counts2.clone(), tls.clone());
                let handshakes = handshakes2.clone();
                open.spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            handshakes.fetch_add(1, Ordering::SeqCst);
                            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                            serve(tls, serves, conn, alpn, handler, counts).await;
                        }
                        None => serve(tcp, serves, conn, None, handler, counts).await,
                    }
                });
            }
        });
        Target {
            addr,
            hits: counts.hits,
            probes: counts.probes,
            conns: counts.conns,
            handshakes,
            seen: counts.seen,
            task,
        }
    }

    /// The requests that reached the target for `path` (path and query, exactly).
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.path == path).cloned().collect()
    }

    /// The one request for `path`.
    pub fn seen_once(&self, path: &str) -> Seen {
        let mut all = self.seen(path);
        assert_eq!(all.len(), 1, "requests for {path}: {all:?}");
        all.pop().unwrap()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Counts {
    hits: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
    conns: Arc<Conns>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn serve<S, F, Fut, B>(
    io: S,
    serves: Serves,
    conn: usize,
    alpn: Option<Vec<u8>>,
    handler: Arc<F>,
    counts: Counts,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let carried = Arc::new(AtomicBool::new(false));
    let (counts2, carried2) = (counts.clone(), carried.clone());
    let svc = service_fn(move |req: Request<Incoming>| {
        if is_probe(&req) {
            counts2.probes.fetch_add(1, Ordering::SeqCst);
        } else {
            counts2.hits.fetch_add(1, Ordering::SeqCst);
            if !carried2.swap(true, Ordering::SeqCst) {
                counts2.conns.opened.fetch_add(1, Ordering::SeqCst);
            }
        }
        counts2.seen.lock().unwrap().push(Seen {
            conn,
            alpn: alpn.clone(),
            version: req.version(),
            method: req.method().clone(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(String::new, |p| p.to_string()),
            authority: req.uri().authority().map(|a| a.to_string()),
            headers: req.headers().clone(),
        });
        let answer = handler(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let io = TokioIo::new(io);
    let _ = match serves {
        Serves::Https => {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
        }
        Serves::H2c | Serves::H2Tls => {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, svc)
                .await
        }
    };
    if carried.load(Ordering::SeqCst) {
        counts.conns.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A TLS server side offering `alpn`, with a certificate generated as seawall generates its own
/// and loaded through rustls' own PEM parser and provider, not seawall's.
pub fn tls_acceptor(alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let cert = seawall::tls::self_signed(&["target.test".to_string()]).unwrap();
    let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}
