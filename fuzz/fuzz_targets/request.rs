//! The raw request path: any bytes sent as a client's connection to a running seawall (in this
//! process, over loopback) with rules that forward, redirect and answer; what it forwards arrives
//! at a target in this process too.
//!
//! Holds: seawall neither panics nor hangs; what it sends back is HTTP responses; what reaches the
//! target carries one framing, no hop-by-hop header (but an upgrade's), and the X-Forwarded-*
//! headers naming this client, listener and protocol last.
//!
//! Each input ends with a request of the harness's own ([`LAST`]), so that seawall closes the
//! connection as soon as it has answered everything.

#![no_main]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longer than any answer can take on an idle machine, well short of libFuzzer's own timeout.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

struct World {
    seawall: SocketAddr,
    client: tokio::runtime::Runtime,
    _running: seawall::Running,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let target = serve_on_thread(|req| async move { Ok(checked(req).await) });
    // Health checks go to a port of their own: every request on the target's port is one
    // seawall forwarded, and is checked as such.
    let health = serve_on_thread(|_| async { Ok(Response::new(Full::new(Bytes::new()))) });
    let text = format!(
        r#"
[runtime]
workers = 1
header_timeout = "2s"
idle_timeout = "2s"
max_header_bytes = 8192

[[listeners]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ forward = "target" }}

  [[listeners.rules]]
  priority = 1
  match = {{ path = ["/r/*"] }}
  action = {{ redirect = {{ host = "elsewhere.test", path = "/#{{path}}", query = "from=#{{host}}&#{{query}}", status = 302 }} }}

  [[listeners.rules]]
  priority = 2
  match = {{ host = ["fixed.*"], method = ["GET", "POST"] }}
  action = {{ fixed_response = {{ status = 418, body = "fixed\n" }} }}

  [[listeners.rules]]
  priority = 3
  match = {{ header = {{ x-sticky = ["*"] }} }}
  action = {{ forward = {{ groups = [{{ name = "target", weight = 1 }}], stickiness = "1h" }} }}

[[target_groups]]
name = "target"
targets = ["{target}"]
stickiness = {{ type = "lb_cookie", duration = "1h" }}
response_timeout = "2s"
  [target_groups.health_check]
  port = {port}
  interval = "300s"
"#,
        port = health.port()
    );
    let source = seawall::config::Source::new("fuzz.toml", ".", text);
    let running = seawall::App::build(&source)
        .and_then(seawall::App::start)
        .unwrap_or_else(|e| panic!("seawall starts: {e}"));
    let seawall = running
        .listener_addr("http")
        .expect("the listener is bound");
    SEAWALL_PORT.set(seawall.port()).expect("set once");
    let world = World {
        seawall,
        client: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
        _running: running,
    };
    // Until the target's first health check passes, forwards may be refused: wait for it, so
    // that every input finds the same seawall.
    let mut answer = Vec::new();
    for _ in 0..100 {
        answer = world.exchange(b"GET / HTTP/1.1\r\nhost: a\r\n");
        if answer.starts_with(b"HTTP/1.1 200") {
            return world;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the target never became reachable through seawall: {:?}",
        String::from_utf8_lossy(&answer)
    );
});

/// Ends every input: a request that closes the connection once it is answered. hyper reads an
/// end of file from a client as the end of everything, answering nothing more (seawall keeps
/// hyper's default: no half-closed connections), so the client cannot simply stop sending. When
/// the input leaves a head open, the empty line ends it first; when it leaves a body open, the
/// request is read as body bytes, and the client stops reading once seawall has gone quiet.
const LAST: &[u8] = b"\r\n\r\nGET /last HTTP/1.1\r\nHost: last.test\r\nConnection: close\r\n\r\n";

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long seawall may stay silent before the client takes it to be waiting for more bytes.
const QUIET: Duration = Duration::from_millis(250);

impl World {
    /// Sends `bytes` and [`LAST`] on a new connection and reads what seawall sends until it closes
    /// the connection or goes quiet.
    fn exchange(&self, bytes: &[u8]) -> Vec<u8> {
        self.client.block_on(async {
            let mut tcp = TcpStream::connect(self.seawall)
                .await
                .expect("seawall accepts");
            let mut answer = Vec::new();
            let talk = async {
                // seawall may close before it has read everything (an answer that ends the
                // connection): what it did send is still read.
                let _ = tcp.write_all(bytes).await;
                let _ = tcp.write_all(LAST).await;
                let mut buf = [0u8; 16 * 1024];
                while let Ok(Ok(n)) = tokio::time::timeout(QUIET, tcp.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                    answer.extend_from_slice(&buf[..n]);
                }
            };
            if tokio::time::timeout(ANSWER_WITHIN, talk).await.is_err() {
                panic!("no end within {ANSWER_WITHIN:?}");
            }
            answer
        })
    }
}

/// A hyper HTTP/1.1 server on a thread of its own, answering with `svc`.
fn serve_on_thread<F, Fut>(svc: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener.local_addr().expect("bound");
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let svc = svc.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service_fn(svc))
                        .with_upgrades()
                        .await;
                });
            }
        });
    });
    addr
}

/// Checks what seawall forwarded, and answers it.
async fn checked(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let h = req.headers();
    let one = |name: &str| -> Option<&[u8]> {
        let mut all = h.get_all(name).iter();
        let first = all.next()?;
        assert!(all.next().is_none(), "one {name} line: {h:?}");
        Some(first.as_bytes())
    };
    let port = SEAWALL_PORT
        .get()
        .expect("seawall started before it forwards");
    assert_eq!(one("x-forwarded-proto"), Some(&b"http"[..]), "{h:?}");
    assert_eq!(
        one("x-forwarded-port"),
        Some(port.to_string().as_bytes()),
        "{h:?}"
    );
    let xff = one("x-forwarded-for").expect("X-Forwarded-For");
    let last = xff.rsplit(|&b| b == b',').next().expect("split yields one");
    assert_eq!(last.trim_ascii(), b"127.0.0.1", "the client last: {h:?}");
    // A client's own trace id lines are passed on as they came, however many.
    assert!(h.contains_key("x-amzn-trace-id"), "{h:?}");
    assert!(h.contains_key(header::HOST), "{h:?}");
    assert!(
        !(h.contains_key(header::CONTENT_LENGTH) && h.contains_key(header::TRANSFER_ENCODING)),
        "two framings: {h:?}"
    );
    if let Some(te) = one("transfer-encoding") {
        assert_eq!(te, b"chunked", "hyper's own framing only: {h:?}");
    }
    let upgrade = h.contains_key(header::UPGRADE);
    // Not `Trailer`: it names the trailer fields end to end (RFC 9110 §6.6.2).
    for name in [
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
    ] {
        assert!(!h.contains_key(name), "hop-by-hop {name}: {h:?}");
    }
    if let Some(connection) = one("connection") {
        assert!(
            upgrade && connection.eq_ignore_ascii_case(b"upgrade"),
            "Connection: {h:?}"
        );
    }
    // The body is read whole, so that the connection stays usable for the pool.
    let _ = req.into_body().collect().await;
    Response::new(Full::new(Bytes::from_static(b"target\n")))
}

/// seawall's port, for the target's check of X-Forwarded-Port (the target starts first).
static SEAWALL_PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let answer = world.exchange(data);
    if answer.is_empty() {
        return;
    }
    // The preface as it went out: LAST's leading CRLFs can complete an input's partial one.
    if [data, LAST].concat().starts_with(H2_PREFACE) {
        // HTTP/2 with prior knowledge: the server's connection preface is a SETTINGS frame.
        assert!(
            answer.len() >= 9 && answer[3] == 4,
            "not HTTP/2: {answer:?}"
        );
        return;
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&answer) {
        Ok(httparse::Status::Complete(_)) => {}
        other => panic!(
            "not an HTTP response ({other:?}): {:?}",
            String::from_utf8_lossy(&answer)
        ),
    }
});
