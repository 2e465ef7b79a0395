//! Test harness: seawall started in-process on port-0 listeners, real backends (hyper servers on
//! 127.0.0.1:0), rcgen certificates written to a temp folder, and real TLS/HTTP clients.
#![allow(dead_code)]

pub mod config;
#[cfg(feature = "ecs")]
pub mod ecs;
pub mod process;
pub mod scripted;
pub mod target;

// Not every test file uses every piece.
#[allow(unused_imports)]
pub use config::{fixed, forward, path, ConfigBuilder, Listener, TargetGroup};
#[allow(unused_imports)]
pub use scripted::{Conn, Head, Scripted};
#[allow(unused_imports)]
pub use target::{Seen, Serves, Target};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
// Test clients accept any server certificate (and check handshake signatures): the tests inspect
// the certificate they were shown instead of trusting it.
use seawall::upstream::AnyTargetCertificate;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn empty() -> Body {
    body(Bytes::new())
}

/// A body of `len` deterministic bytes (`i % 251`), sent in 64 KiB chunks.
pub fn pattern_body(len: usize) -> Body {
    let chunks = (0..len).step_by(65536).map(move |start| {
        let end = (start + 65536).min(len);
        Ok::<_, Infallible>(Frame::data(Bytes::from(
            (start..end).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
        )))
    });
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks)))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn pattern_sha256(len: usize) -> String {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    sha256_hex(&data)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A self-signed certificate written as PEM files.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `STEM.pem` and `STEM-key.pem` for `names` into `dir`.
pub fn write_cert(dir: &std::path::Path, stem: &str, names: &[&str]) -> CertFiles {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let g = seawall::tls::self_signed(&names).unwrap();
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    std::fs::write(&cert, g.cert_pem).unwrap();
    std::fs::write(&key, g.key_pem).unwrap();
    CertFiles { cert, key }
}

// ---------------------------------------------------------------------------------------------
// seawall in-process

/// A running seawall and the temp folder holding its config and certificates.
pub struct Seawall {
    pub running: seawall::Running,
    pub dir: tempfile::TempDir,
}

impl Seawall {
    /// Writes `config` to `<tmp>/seawall.toml` (after `prepare` has put files in the folder) and
    /// starts it. Listener binds in the config should use port 0.
    pub fn start_with(config: &str, prepare: impl FnOnce(&std::path::Path)) -> Seawall {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let path = dir.path().join("seawall.toml");
        std::fs::write(&path, config).unwrap();
        Self::start_file(dir, &path)
    }

    /// Starts seawall on the config file at `path`, somewhere under `dir` (a symlink, say).
    pub fn start_file(dir: tempfile::TempDir, path: &std::path::Path) -> Seawall {
        let source = seawall::config::Source::read(path).unwrap();
        let app = seawall::App::build(&source).unwrap_or_else(|e| panic!("config:\n{e}"));
        let running = app.start().unwrap();
        Seawall { running, dir }
    }

    pub fn start(config: &str) -> Seawall {
        Self::start_with(config, |_| {})
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.running
            .listener_addr(listener)
            .expect("listener exists")
    }

    pub fn admin(&self) -> SocketAddr {
        self.running.admin_addr().expect("admin configured")
    }

    /// Waits until every target of `group` has passed its first health check. Until then the
    /// group fails open or favours the targets already checked, which tests of balancing must not
    /// see.
    pub async fn wait_healthy(&self, group: &str) {
        let start = std::time::Instant::now();
        let g = self.group(group).expect("group exists");
        while !g
            .members()
            .iter()
            .all(|t| t.state() == seawall::targets::State::Healthy)
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{group}: targets not healthy in time"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // Everything below reaches into seawall's run-time state. The tests go through these methods
    // only, so that a change in how `Running` exposes that state is made here and nowhere else.

    /// The Prometheus text the admin server's /metrics would answer.
    pub fn metrics_text(&self) -> String {
        self.running.control().plane.metrics.render()
    }

    /// The value of one metric sample written `name` or `name{label="value",...}`, or 0 when
    /// absent. See [`metric_value`].
    pub fn metric(&self, sample: &str) -> f64 {
        sample_value(&self.metrics_text(), sample)
    }

    /// The run-time state of target group `name` (membership, health), if it exists.
    pub fn group(&self, name: &str) -> Option<Arc<seawall::targets::GroupState>> {
        self.running.control().registry.get(name)
    }

    /// Every configured target group's run-time state, sorted by name.
    pub fn groups(&self) -> Vec<Arc<seawall::targets::GroupState>> {
        self.running.control().registry.groups()
    }

    /// The first member of `group` at `addr`, draining or not.
    pub fn member(&self, group: &str, addr: SocketAddr) -> Option<Arc<seawall::targets::Target>> {
        let g = self.group(group)?;
        let found = g.members().iter().find(|t| t.addr == addr).cloned();
        found
    }

    /// The generation of the configuration in force (1 at start, one more per reload).
    pub fn config_generation(&self) -> u64 {
        self.running.control().config.load().generation
    }

    /// Puts `text` in force the way a reload does once the file has compiled, without the
    /// reload's own bookkeeping: swap the snapshot, then apply its membership.
    pub fn swap_config(&self, text: String) {
        let source = seawall::config::Source::new(
            self.dir.path().join("seawall.toml"),
            self.dir.path(),
            text,
        );
        let cfg = seawall::config::load(&source).unwrap();
        let control = self.running.control();
        let snapshot = seawall::config::compile::load_and_compile(&source, &cfg, &control.secrets)
            .unwrap()
            .attach(&control.registry, &control.plane.metrics, &control.secrets);
        control.plane.snapshot.store(Arc::new(snapshot));
        control.plane.snapshot.load().apply_membership();
    }
}

/// Splits a sample `name{a="1",b="2"}` (or a bare `name`) into its name and labels; label
/// values are unescaped.
fn parse_sample(sample: &str) -> (&str, Vec<(&str, String)>) {
    let Some((name, mut rest)) = sample.split_once('{') else {
        return (sample, Vec::new());
    };
    let mut labels = Vec::new();
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => break after.len(),
                },
                Some((i, '"')) => break i + 1,
                Some((_, c)) => value.push(c),
                None => break after.len(),
            }
        };
        labels.push((key.trim_start_matches(','), value));
        rest = &after[end..];
    }
    (name, labels)
}

/// The samples of the Prometheus `text` (comments left out): name, labels, value.
fn samples(text: &str) -> impl Iterator<Item = (&str, Vec<(&str, String)>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = parse_sample(series);
            Some((name, labels, value.trim().parse().unwrap()))
        })
}

/// The value of the sample of metric `name` in the Prometheus `text` whose labels are exactly
/// `labels` (in any order), or 0 when there is none: a counter not yet incremented is not
/// rendered at all.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut want: Vec<(&str, &str)> = labels.to_vec();
    want.sort_unstable();
    samples(text)
        .find_map(|(n, got, value)| {
            let mut got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (*k, v.as_str())).collect();
            got.sort_unstable();
            (n == name && got == want).then_some(value)
        })
        .unwrap_or(0.0)
}

/// [`metric_value`] for a sample written `name` or `name{label="value",...}`.
pub fn sample_value(text: &str, sample: &str) -> f64 {
    let (name, labels) = parse_sample(sample);
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    metric_value(text, name, &labels)
}

/// The sum of every sample of metric `name`, whatever their labels.
pub fn metric_total(text: &str, name: &str) -> f64 {
    samples(text)
        .filter(|(n, _, _)| *n == name)
        .map(|(_, _, v)| v)
        .sum()
}

/// The Prometheus text of the admin server at `admin` (a seawall binary's, say).
pub async fn fetch_metrics(admin: SocketAddr) -> String {
    let got = get(admin, false, "127.0.0.1", "/metrics").await;
    assert_eq!(got.status, 200, "{}", got.text());
    got.text()
}

/// Writes `text` to `dir/name`; gives the path.
pub fn write_file(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// An address on loopback where nothing listens (a port bound, then released): connecting to it
/// is refused.
pub fn dead_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Whether `req` is one of seawall's health checks (ALB's health-checker User-Agent) rather than
/// proxied traffic a test counts.
pub fn is_probe<B>(req: &Request<B>) -> bool {
    req.headers()
        .get("user-agent")
        .is_some_and(|v| v.as_bytes().starts_with(b"ELB-HealthChecker"))
}

// ---------------------------------------------------------------------------------------------
// Backends

/// A test target: an HTTP/1.1 server on 127.0.0.1:0.
///
/// - `/download?bytes=N`: N pattern bytes, streamed.
/// - `/upload`: answers `<sha256 hex> <length>` of the request body.
/// - `/slow`: never answers.
/// - `/ws`: WebSocket echo.
/// - `/status?code=N`: an empty answer with status N (a health path that fails or redirects).
/// - anything else: JSON `{"id", "method", "path", "headers": {name: [values]}}`.
pub struct Backend {
    pub addr: SocketAddr,
    pub id: String,
    /// Requests whose head reached the backend, health checks not counted.
    pub hits: Arc<AtomicUsize>,
    /// Health checks (requests with ALB's health-checker User-Agent) that reached the backend.
    pub probes: Arc<AtomicUsize>,
    /// Connections that carried at least one request other than a health check (health checks
    /// open their own), and how many of those have ended.
    pub conns: Arc<Conns>,
    task: tokio::task::JoinHandle<()>,
}

/// A backend's count of the connections that carried proxied requests.
#[derive(Debug, Default)]
pub struct Conns {
    pub opened: AtomicUsize,
    pub closed: AtomicUsize,
}

impl Conns {
    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
    /// Connections carrying proxied requests that are open now.
    pub fn open(&self) -> usize {
        self.opened() - self.closed()
    }
}

impl Backend {
    pub async fn start(id: &str) -> Backend {
        Self::start_on("127.0.0.1:0".parse().unwrap(), id).await
    }

    /// A backend on `addr`: a killed backend's port, to bring the "same" target back.
    pub async fn start_on(addr: SocketAddr, id: &str) -> Backend {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let probes = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(Conns::default());
        let (id2, hits2, probes2, conns2) =
            (id.to_string(), hits.clone(), probes.clone(), conns.clone());
        let task = tokio::spawn(async move {
            // Owned by the accept task, so `kill` closes open connections too, as a crash would.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                let (id, hits, probes) = (id2.clone(), hits2.clone(), probes2.clone());
                let counts = conns2.clone();
                let carried = Arc::new(std::sync::atomic::AtomicBool::new(false));
                conns.spawn(async move {
                    let carried2 = carried.clone();
                    let counts2 = counts.clone();
                    let svc = service_fn(move |req| {
                        let (id, hits, probes) = (id.clone(), hits.clone(), probes.clone());
                        let (carried, counts) = (carried2.clone(), counts2.clone());
                        async move {
                            if is_probe(&req) {
                                probes.fetch_add(1, Ordering::SeqCst);
                            } else {
                                hits.fetch_add(1, Ordering::SeqCst);
                                if !carried.swap(true, Ordering::SeqCst) {
                                    counts.opened.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            Ok::<_, Infallible>(backend_handle(req, &id).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                    if carried.load(Ordering::SeqCst) {
                        counts.closed.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Backend {
            addr,
            id: id.to_string(),
            hits,
            probes,
            conns,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn probes(&self) -> usize {
        self.probes.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes the listening socket and every open connection.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `bytes=N` a test request's query asks for (0 without one).
pub fn bytes_asked<B>(req: &Request<B>) -> usize {
    req.uri()
        .query()
        .and_then(|q| q.strip_prefix("bytes="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn backend_handle(mut req: Request<Incoming>, id: &str) -> Response<Body> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/download" => Response::new(pattern_body(bytes_asked(&req))),
        "/upload" => {
            let mut hasher = Sha256::new();
            let mut len = 0usize;
            let mut b = req.into_body();
            while let Some(frame) = b.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    len += data.len();
                    hasher.update(&data);
                }
            }
            Response::new(body(format!("{} {len}", hex(&hasher.finalize()))))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(empty())
        }
        // `/delay?ms=N`: answers "delayed N" after N milliseconds.
        "/delay" => {
            let ms: u64 = query_param(&req, "ms").unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(body(format!("delayed {ms}")))
        }
        // `/gated?bytes=N&gate=NAME`: streams N pattern bytes, then waits until the test calls
        // `open_gate(NAME)`, then streams N more (the pattern continued: 2N bytes in all).
        "/gated" => {
            let n: usize = query_param(&req, "bytes").unwrap_or(0);
            let gate = gate(&query_param::<String>(&req, "gate").unwrap_or_default());
            let chunks = futures_util::stream::iter([0usize, 1]).then(move |half| {
                let gate = gate.clone();
                async move {
                    if half == 1 {
                        gate.notified().await;
                    }
                    let data: Vec<u8> = (half * n..(half + 1) * n)
                        .map(|i| (i % 251) as u8)
                        .collect();
                    Ok::<_, Infallible>(Frame::data(Bytes::from(data)))
                }
            });
            Response::new(BodyExt::boxed(StreamBody::new(chunks)))
        }
        "/status" => {
            let code: u16 = query_param(&req, "code").unwrap_or(200);
            Response::builder()
                .status(code)
                .header("location", "/")
                .body(empty())
                .unwrap()
        }
        "/ws" => {
            let key = req
                .headers()
                .get("sec-websocket-key")
                .cloned()
                .unwrap_or_else(|| http::HeaderValue::from_static(""));
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let upgraded = on_upgrade.await.unwrap();
                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                    // On a close, tungstenite queues the close reply; the next read sends it and
                    // then ends the stream, completing the closing handshake.
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header(
                    "sec-websocket-accept",
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
                )
                .body(empty())
                .unwrap()
        }
        _ => {
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in req.headers() {
                headers
                    .entry(k.as_str().to_string())
                    .or_default()
                    .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
            }
            let json = serde_json::json!({
                "id": id,
                "method": req.method().as_str(),
                "path": req.uri().to_string(),
                "headers": headers,
            });
            // Read the request body before answering: hyper closes (and may reset) a connection
            // whose request body was left unread, which would race the answer to the proxy.
            let _ = req.into_body().collect().await;
            Response::builder()
                .header("content-type", "application/json")
                .body(body(json.to_string()))
                .unwrap()
        }
    }
}

/// Polls `check` every 10 ms until it is true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// TLS client options.
#[derive(Clone)]
pub struct Tls {
    pub sni: String,
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
    pub alpn: Vec<Vec<u8>>,
}

impl Tls {
    pub fn new(sni: &str) -> Tls {
        Tls {
            sni: sni.to_string(),
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            alpn: vec![b"http/1.1".to_vec()],
        }
    }
    pub fn h2(mut self) -> Tls {
        self.alpn = vec![b"h2".to_vec()];
        self
    }
    pub fn only(mut self, v: &'static rustls::SupportedProtocolVersion) -> Tls {
        self.versions = vec![v];
        self
    }
}

/// A fresh client each time: nothing resumes.
pub async fn tls_connect(addr: SocketAddr, opts: &Tls) -> std::io::Result<TlsStream<TcpStream>> {
    tls_connect_with(addr, &tls_client(opts), &opts.sni).await
}

/// A client for `opts`. Connections made with the same one resume their sessions (rustls's
/// in-memory session store, keyed by server name).
pub fn tls_client(opts: &Tls) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&opts.versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyTargetCertificate(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = opts.alpn.clone();
    Arc::new(cfg)
}

pub async fn tls_connect_with(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    TlsConnector::from(client.clone()).connect(name, tcp).await
}

/// The DNS names in the subjectAltName of the certificate the server presented.
pub fn served_names(stream: &TlsStream<TcpStream>) -> Vec<String> {
    use x509_parser::prelude::*;
    let certs = stream.get_ref().1.peer_certificates().unwrap();
    let (_, cert) = X509Certificate::from_der(certs[0].as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// An HTTP/1.1 client connection over any stream.
pub async fn h1<S>(io: S) -> hyper::client::conn::http1::SendRequest<Body>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    send
}

/// An HTTP/2 client connection over any stream.
pub async fn h2<S>(io: S) -> hyper::client::conn::http2::SendRequest<Body>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// A response with its body read whole.
pub struct Got {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
    /// For backend echo answers: the first value of a request header the backend saw.
    pub fn seen_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name][0].as_str().map(str::to_string)
    }
}

pub async fn read(resp: Response<Incoming>) -> Got {
    let (parts, b) = resp.into_parts();
    let body = b.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// POST of a JSON `payload` over a fresh plain HTTP/1.1 connection.
pub async fn post(addr: SocketAddr, path: &str, payload: String) -> Got {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut send = h1(tcp).await;
    let req = Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(body(payload))
        .unwrap();
    read(send.send_request(req).await.unwrap()).await
}

/// GET over a fresh HTTP/1.1 connection; `scheme` picks TLS (with SNI = host) or plain TCP.
pub async fn get(addr: SocketAddr, https: bool, host: &str, path: &str) -> Got {
    let req = Request::get(path)
        .header("host", host)
        .body(empty())
        .unwrap();
    if https {
        let tls = tls_connect(addr, &Tls::new(host.split(':').next().unwrap()))
            .await
            .unwrap();
        let mut c = h1(tls).await;
        read(c.send_request(req).await.unwrap()).await
    } else {
        let mut c = h1(TcpStream::connect(addr).await.unwrap()).await;
        read(c.send_request(req).await.unwrap()).await
    }
}

/// Writes raw bytes on a plain connection and reads what comes back until the server closes or
/// `wait` passes.
pub async fn raw_exchange(addr: SocketAddr, data: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(data).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Backend helpers for /delay and /gated

/// A query parameter of a backend request, parsed.
fn query_param<T: std::str::FromStr>(req: &Request<Incoming>, key: &str) -> Option<T> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

type Gates = std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Notify>>>;
static GATES: std::sync::OnceLock<Gates> = std::sync::OnceLock::new();

fn gate(name: &str) -> Arc<tokio::sync::Notify> {
    let gates = GATES.get_or_init(Default::default);
    gates
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .clone()
}

/// Lets a `/gated?gate=NAME` response (waiting now or arriving later) send its second half.
pub fn open_gate(name: &str) {
    gate(name).notify_one();
}
