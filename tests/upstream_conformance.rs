//! The conformance table of seawall's HTTP/1 exchange with its targets (its client side:
//! `upstream::h1`, run in the request's task from `upstream::pool` and `proxy::forward`; until
//! issue 15, hyper's `client::conn::http1`, which passed the same table). Each row
//! pins what a client of seawall gets, and what the target sees, when a target answers in a
//! particular way; whatever drives that exchange must pass the table.
//!
//! The targets are [`Scripted`]: raw TCP, exact bytes both ways. The clients are raw sockets
//! (plain or TLS) where the bytes matter, and hyper's HTTP/2 client where the row differs over
//! HTTP/2. seawall runs in-process with an http listener `web`, an https listener `secure` (ALPN
//! h2 and http/1.1) and the group `app`.
//!
//! | row | target does | pinned |
//! |-----|-------------|--------|
//! | c01 | chunked answer with trailers | body intact; trailers kept over HTTP/2, and over HTTP/1.1 for a client that sent `TE: trailers`; connection reused |
//! | c01b | (client's chunked upload with trailers) | the target gets the `Trailer` header and the trailer fields after the last chunk |
//! | c02a | `100 Continue` to `Expect: 100-continue` | the client gets seawall's own 100 once, then the 200; the body reached the target |
//! | c02b | `103 Early Hints` before a 200 | the 103 is dropped, the 200 and its body intact |
//! | c03 | 204, 304 (with a length), HEAD answered with a length | no body to the client; the target connection reused |
//! | c04 | close-delimited body | body intact; the next request on a new connection |
//! | c05 | answers before the request body ends | the client gets it while still uploading |
//! | c05b | refuses on the head and closes (or cannot be reached) | the upload read and thrown away: the answer arrives, the client's connection serves on |
//! | c06 | closes a kept-alive connection as request 2 arrives | GET sent again on a new connection; POST gets 502 |
//! | c07 | 101 to a WebSocket upgrade | the tunnel carries bytes both ways, first ones included |
//! | c08 | a response head over 32 KiB (ALB's limit), of 1000 headers, or of 1 MiB | 502, process serves on; 31 KiB is forwarded whole |
//! | c09 | malformed heads | 502, not retried |
//! | c09b | a chunked body that breaks after a valid head | the client's connection (HTTP/2: stream) cut, no end seen |
//! | c09c | closes without answering | 502; on a reused connection a GET goes once more first |
//! | c10 | bytes after a complete answer | the client gets the answer only; the connection not reused |
//! | c11 | one target refuses connections | a GET moves to the other one and succeeds |
//! | c12 | (client's chunked body breaks) | 400, not 502; the target never gets a whole request |
//! | c13 | (client stops reading a large answer) | closed after idle_timeout with the target's connection; others served |
//! | c14 | (access log) | `sent_bytes` is what the client got |
//! | c15 | goes silent mid-body; or trickles its body in gaps under the bound | cut after the group's `response_timeout` of silence, the target's connection closed; the trickle arrives whole |
mod common;
use common::*;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Generous bound for anything that should take well under a second: a hang fails, it does not
/// block the suite.
const PATIENCE: Duration = Duration::from_secs(20);

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// `web` (http) and `secure` (https) forwarding to `app` with `targets`; `runtime` and `group`
/// lines go in their sections. One worker: each worker uses only the target connections it
/// made, and the tests follow which target connection each request took.
fn config(targets: &[SocketAddr], runtime: &str, group: &str) -> String {
    ConfigBuilder::new()
        .runtime("workers = 1")
        .runtime(runtime)
        .self_signed("dev", &["localhost"])
        .listener(Listener::http("web").forward("app"))
        .listener(Listener::https("secure", &["dev"]).forward("app"))
        .target_group(TargetGroup::new("app", targets).line(group))
        .build()
}

/// A script that answers each request on its connection with `answer(head)`, after reading the
/// request's body whole.
async fn serve_each(mut c: Conn, answer: fn(&Head) -> Vec<u8>) {
    while let Some(head) = c.request().await {
        if c.body(&head).await.is_none() || !c.write(&answer(&head)).await {
            return;
        }
    }
}

fn seen(pairs: &[(usize, &str)]) -> Vec<(usize, String)> {
    pairs.iter().map(|(c, p)| (*c, p.to_string())).collect()
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A raw client connection and what it has read and not yet consumed.
struct RawClient<S> {
    s: S,
    buf: Vec<u8>,
}

/// One response as a raw client read it.
struct RawResponse {
    /// Interim (1xx) heads before the final one.
    interim: Vec<String>,
    status: u16,
    head: String,
    body: Vec<u8>,
    /// A chunked body's trailer lines, as sent; empty when none or not chunked.
    trailers: String,
}

/// At most 300 bytes of the head and of the body: a failing row with a 1 MiB header must still
/// print a readable message.
impl std::fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
        f.debug_struct("RawResponse")
            .field("interim", &self.interim)
            .field("head", &cut(self.head.as_bytes()))
            .field("body", &cut(&self.body))
            .field("trailers", &self.trailers)
            .finish()
    }
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.head, name)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl RawClient<TcpStream> {
    async fn web(sw: &Seawall) -> Self {
        RawClient {
            s: TcpStream::connect(sw.addr("web")).await.unwrap(),
            buf: Vec::new(),
        }
    }
}

impl RawClient<tokio_rustls::client::TlsStream<TcpStream>> {
    /// HTTP/1.1 over TLS (ALPN http/1.1).
    async fn secure(sw: &Seawall) -> Self {
        RawClient {
            s: tls_connect(sw.addr("secure"), &Tls::new("localhost"))
                .await
                .unwrap(),
            buf: Vec::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Reads more; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match tokio::time::timeout(PATIENCE, self.s.read(&mut chunk)).await {
            Err(_) => panic!(
                "nothing more within {PATIENCE:?}; so far: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next head, whatever its status.
    async fn head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..i + 4]).into_owned();
                self.buf.drain(..i + 4);
                return head;
            }
            assert!(
                self.fill().await,
                "closed before a whole head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return line;
            }
            assert!(self.fill().await, "closed in the middle of a chunked body");
        }
    }

    async fn exactly(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(
                self.fill().await,
                "closed after {} of {n} bytes",
                self.buf.len()
            );
        }
        self.buf.drain(..n).collect()
    }

    /// The next response, interim ones gathered, its body read by its framing; `to_head`: the
    /// request was a HEAD, so the answer has no body whatever its headers say.
    async fn response(&mut self, to_head: bool) -> RawResponse {
        let mut interim = Vec::new();
        let head = loop {
            let head = self.head().await;
            if (100..200).contains(&status_of(&head)) {
                interim.push(head);
            } else {
                break head;
            }
        };
        let status = status_of(&head);
        let mut body = Vec::new();
        let mut trailers = String::new();
        let chunked = header_of(&head, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if to_head || status == 204 || status == 304 {
        } else if chunked {
            loop {
                let size = self.line().await;
                let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                    .unwrap_or_else(|_| panic!("a chunk size: {size:?}"));
                if size == 0 {
                    loop {
                        let line = self.line().await;
                        if line.is_empty() {
                            break;
                        }
                        trailers.push_str(&line);
                        trailers.push_str("\r\n");
                    }
                    break;
                }
                body.extend(self.exactly(size).await);
                assert_eq!(self.exactly(2).await, b"\r\n");
            }
        } else if let Some(len) = header_of(&head, "content-length") {
            body = self.exactly(len.parse().unwrap()).await;
        } else {
            while self.fill().await {}
            body = std::mem::take(&mut self.buf);
        }
        RawResponse {
            interim,
            status,
            head,
            body,
            trailers,
        }
    }

    /// Reads until the server closes the connection (true; what came is kept) or `wait` passes.
    async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// An HTTP/2 client connection to `secure`.
async fn h2_client(sw: &Seawall) -> hyper::client::conn::http2::SendRequest<Body> {
    let tls = tls_connect(sw.addr("secure"), &Tls::new("localhost").h2())
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    h2(tls).await
}

/// A response read whole by hyper's client, trailers included.
struct Whole {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

async fn whole(resp: Response) -> Whole {
    let (parts, body) = resp.into_parts();
    let collected = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .expect("the body in time")
        .expect("the body whole");
    let trailers = collected.trailers().cloned();
    Whole {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

type Response = http::Response<Incoming>;

/// `method path` over HTTP/2, with an empty body.
async fn h2_send(
    c: &mut hyper::client::conn::http2::SendRequest<Body>,
    method: &str,
    path: &str,
) -> Whole {
    let req = Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .body(empty())
        .unwrap();
    let resp = tokio::time::timeout(PATIENCE, c.send_request(req))
        .await
        .expect("an answer in time")
        .expect("an answer");
    whole(resp).await
}

/// `req` over the HTTP/1.1 client connection `c`, read whole.
async fn send1(c: &mut hyper::client::conn::http1::SendRequest<Body>, req: Request<Body>) -> Got {
    let answer = async { read(c.send_request(req).await.unwrap()).await };
    tokio::time::timeout(PATIENCE, answer)
        .await
        .expect("an answer in time")
}

/// GET `path` on a fresh plain HTTP/1.1 connection, read whole.
async fn get_web(sw: &Seawall, path: &str) -> Got {
    tokio::time::timeout(PATIENCE, get(sw.addr("web"), false, "localhost", path))
        .await
        .expect("an answer in time")
}

// ---------------------------------------------------------------------------------------------
// c01

const TRAILERED: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc123\r\n\r\n";

/// A chunked answer with trailers. The body arrives intact either way. The target's `Trailer`
/// header, which names them, is forwarded (end to end, not hop-by-hop: RFC 9110 §6.6.2). Over
/// HTTP/1.1 the trailers follow the last chunk for a client that sent `TE: trailers`; hyper's
/// server leaves them out for one that did not (which RFC 9112 §7.1.2 allows), and would for
/// fields the `Trailer` header did not name. Over HTTP/2 they arrive as a trailing HEADERS frame.
/// The trailers are consumed with the body: the target connection carries the next request.
#[tokio::test]
async fn c01_chunked_response_with_trailers() {
    let t = Scripted::start(|c| serve_each(c, |_| TRAILERED.to_vec())).await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));

    let mut c = RawClient::secure(&sw).await;
    c.send(b"GET /h1 HTTP/1.1\r\nHost: localhost\r\nTE: trailers\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "hello world", "{r:?}");
    assert_eq!(r.header("trailer"), Some("X-Checksum"), "{r:?}");
    assert_eq!(
        r.trailers.to_ascii_lowercase(),
        "x-checksum: abc123\r\n",
        "HTTP/1.1 with TE: trailers: {r:?}"
    );

    c.send(b"GET /h1-without-te HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "hello world", "{r:?}");
    assert_eq!(r.trailers, "", "HTTP/1.1 without TE: trailers: {r:?}");

    let mut c = h2_client(&sw).await;
    let w = h2_send(&mut c, "GET", "/h2").await;
    assert_eq!(w.status, 200);
    assert_eq!(w.body, "hello world");
    assert_eq!(w.headers["trailer"], "X-Checksum");
    let trailers = w.trailers.expect("HTTP/2: the trailers arrive");
    assert_eq!(trailers["x-checksum"], "abc123");

    assert_eq!(
        t.seen(),
        seen(&[(0, "/h1"), (0, "/h1-without-te"), (0, "/h2")])
    );
}

/// A client's chunked upload with trailers, announced by its `Trailer` header: the target gets
/// the header (end to end, as in c01) and the trailer fields after the last chunk.
#[tokio::test]
async fn c01b_a_clients_chunked_upload_keeps_its_trailers() {
    let t = Scripted::start(|mut c| async move {
        while let Some(head) = c.request().await {
            let Some((body, trailers)) = c.chunked_body().await else {
                return;
            };
            c.note(format!(
                "{} | {} | {}",
                head.header("trailer").unwrap_or("-"),
                String::from_utf8_lossy(&body),
                trailers.join("; ").to_ascii_lowercase()
            ));
            if !c
                .write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
            {
                return;
            }
        }
    })
    .await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));

    let mut c = RawClient::secure(&sw).await;
    c.send(
        b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
          Trailer: X-Digest\r\n\r\n5\r\nhello\r\n0\r\nX-Digest: sha-256=abc\r\n\r\n",
    )
    .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(t.notes(), ["X-Digest | hello | x-digest: sha-256=abc"]);
}

// ---------------------------------------------------------------------------------------------
// c02

/// `100 Continue` from the target to a request with `Expect: 100-continue`. seawall's own server
/// answers the client's expectation (hyper's, as soon as the body is asked for, that is once the
/// target's connection takes it); the target's 100 is dropped by seawall's client, so the client
/// sees exactly one. The expectation is forwarded; the body and the final answer arrive intact.
#[tokio::test]
async fn c02a_100_continue_before_the_final_answer() {
    let t = Scripted::start(|mut c| async move {
        while let Some(head) = c.request().await {
            if head.header("expect") == Some("100-continue")
                && !c.write(b"HTTP/1.1 100 Continue\r\n\r\n").await
            {
                return;
            }
            let Some(body) = c.body(&head).await else {
                return;
            };
            let text = format!("got {}: {}", body.len(), String::from_utf8_lossy(&body));
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
                text.len()
            );
            if !c.write(answer.as_bytes()).await {
                return;
            }
        }
    })
    .await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));

    let mut c = RawClient::web(&sw).await;
    c.send(b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        .await;
    // The client waits for the go-ahead before it sends the body, as clients that ask do.
    let go = c.head().await;
    assert!(go.starts_with("HTTP/1.1 100 Continue\r\n"), "{go:?}");
    c.send(b"hello world").await;
    let r = c.response(false).await;
    assert_eq!(
        r.interim,
        Vec::<String>::new(),
        "the target's own 100 is not relayed"
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "got 11: hello world");
    let heads = t.heads();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].header("expect"), Some("100-continue"), "forwarded");

    // The exchange ended cleanly: the connection carries the next request.
    c.send(b"GET /next HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!((r.status, r.text().as_str()), (200, "got 0: "));
    assert_eq!(t.seen(), seen(&[(0, "/up"), (0, "/next")]));
}

/// `103 Early Hints` before a 200, in a segment of its own: seawall's client drops it, the client
/// gets the 200 alone (over HTTP/1.1 no interim head at all, and not the hint's `Link`), its body
/// intact, over HTTP/1.1 and HTTP/2.
#[tokio::test]
async fn c02b_103_early_hints_before_a_200() {
    let t = Scripted::start(|mut c| async move {
        while let Some(head) = c.request().await {
            let hint = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
            if c.body(&head).await.is_none() || !c.write(hint).await {
                return;
            }
            // A moment apart, so that the final answer is not read in the hint's segment.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if !c
                .write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-final: yes\r\n\r\nhello")
                .await
            {
                return;
            }
        }
    })
    .await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));

    let mut c = RawClient::web(&sw).await;
    c.send(b"GET /h1 HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.interim, Vec::<String>::new(), "the 103 is dropped: {r:?}");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-final"), Some("yes"));
    assert_eq!(r.header("link"), None, "{r:?}");
    assert_eq!(r.text(), "hello");

    let mut c = h2_client(&sw).await;
    let w = h2_send(&mut c, "GET", "/h2").await;
    assert_eq!((w.status, &w.body[..]), (StatusCode::OK, &b"hello"[..]));
    assert!(w.headers.get("link").is_none());

    assert_eq!(t.seen(), seen(&[(0, "/h1"), (0, "/h2")]));
}

// ---------------------------------------------------------------------------------------------
// c03

fn bodyless(head: &Head) -> Vec<u8> {
    match head.path.as_str() {
        "/204" => b"HTTP/1.1 204 No Content\r\nx-case: 204\r\n\r\n".to_vec(),
        // A 304 may carry the length the full answer would have: still no body follows.
        "/304" => {
            b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 1234\r\n\r\n".to_vec()
        }
        "/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\nx-case: head\r\n\r\n".to_vec(),
        _ => OK.to_vec(),
    }
}

/// 204, 304 and an answer to HEAD with a Content-Length: none has a body, so the client gets
/// none (the next answer on its connection starts right after each head) and the target's
/// connection goes on to the next request at once.
#[tokio::test]
async fn c03_bodyless_answers_keep_the_target_connection() {
    let t = Scripted::start(|c| serve_each(c, bodyless)).await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));

    let mut c = RawClient::web(&sw).await;
    c.send(b"GET /204 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!((r.status, r.header("x-case")), (204, Some("204")), "{r:?}");
    c.send(b"GET /304 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!((r.status, r.header("etag")), (304, Some("\"v1\"")), "{r:?}");
    c.send(b"HEAD /head HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let r = c.response(true).await;
    assert_eq!((r.status, r.header("x-case")), (200, Some("head")), "{r:?}");
    assert_eq!(r.header("content-length"), Some("1234"), "{r:?}");
    // Had any of them come with a body, this would read it instead of the next head.
    c.send(b"GET /next HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
    assert!(c.closed_within(PATIENCE).await);
    assert_eq!(c.buf, b"", "nothing after the last answer");

    let mut c = h2_client(&sw).await;
    for (method, path, status) in [
        ("GET", "/204", 204),
        ("GET", "/304", 304),
        ("HEAD", "/head", 200),
    ] {
        let w = h2_send(&mut c, method, path).await;
        assert_eq!(w.status, status, "HTTP/2 {method} {path}");
        assert_eq!(w.body, "", "HTTP/2 {method} {path}");
    }

    assert_eq!(
        t.seen(),
        seen(&[
            (0, "/204"),
            (0, "/304"),
            (0, "/head"),
            (0, "/next"),
            (0, "/204"),
            (0, "/304"),
            (0, "/head"),
        ]),
        "one target connection throughout"
    );
}

// ---------------------------------------------------------------------------------------------
// c04

const CLOSE_DELIMITED_LEN: usize = 100 * 1024;

/// `/close`: a body without length or chunking, ended by closing the connection; else `ok`, kept
/// alive.
async fn close_delimited(mut c: Conn) {
    while let Some(head) = c.request().await {
        if head.path != "/close" {
            if !c.write(OK).await {
                return;
            }
            continue;
        }
        let mut answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n".to_vec();
        answer.extend((0..CLOSE_DELIMITED_LEN).map(|i| (i % 251) as u8));
        c.write(&answer).await;
        return;
    }
}

/// A close-delimited body reaches the client whole, over HTTP/1.1 and HTTP/2; the connection it
/// came on is gone, so the next request takes a new one.
#[tokio::test]
async fn c04_close_delimited_body() {
    let t = Scripted::start(close_delimited).await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));
    let want = pattern_sha256(CLOSE_DELIMITED_LEN);

    let got = get_web(&sw, "/close").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), CLOSE_DELIMITED_LEN);
    assert_eq!(sha256_hex(&got.body), want);
    assert_eq!(get_web(&sw, "/next").await.text(), "ok");

    // Now on a reused connection.
    let mut c = h2_client(&sw).await;
    let w = h2_send(&mut c, "GET", "/close").await;
    assert_eq!(w.status, 200);
    assert_eq!(sha256_hex(&w.body), want);
    assert_eq!(h2_send(&mut c, "GET", "/next").await.body, "ok");

    assert_eq!(
        t.seen(),
        seen(&[(0, "/close"), (1, "/next"), (1, "/close"), (2, "/next")])
    );
}

// ---------------------------------------------------------------------------------------------
// c05

/// `/413`: refused on its head alone with `Connection: close`, the rest of the upload read and
/// thrown away until seawall closes (a careful server's lingering close: closing with unread
/// bytes would reset the connection and could destroy the answer in flight). `/200`: answered on
/// its head alone, kept alive, the upload read on to its end and the connection served on. Else
/// `ok`.
async fn answers_early(mut c: Conn) {
    while let Some(head) = c.request().await {
        match head.path.as_str() {
            "/413" => {
                c.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!")
                    .await;
                c.until_closed(PATIENCE).await;
                return;
            }
            "/200" => {
                if !c
                    .write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly")
                    .await
                    || c.body(&head).await.is_none()
                {
                    return;
                }
            }
            _ => {
                if c.body(&head).await.is_none() || !c.write(OK).await {
                    return;
                }
            }
        }
    }
}

/// A request body of unknown length that goes on for as long as the test holds its sender:
/// 64 KiB chunks, the first four at once.
fn endless_upload() -> (tokio::sync::mpsc::UnboundedSender<Bytes>, Body) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    for _ in 0..4 {
        tx.send(Bytes::from(vec![b'u'; 64 * 1024])).unwrap();
    }
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(Frame::data(data)), rx))
    });
    (tx, BodyExt::boxed(http_body_util::StreamBody::new(frames)))
}

/// The target answers on the request head alone while the client is still uploading (its body
/// has no end yet): the client gets that answer at once, over HTTP/1.1 (a declared 100 MiB
/// length) and HTTP/2 (no length), refused (`413`, `Connection: close`) or accepted (`200`, kept
/// alive); nothing waits for the upload to end, and seawall serves on.
#[tokio::test]
async fn c05_an_answer_before_the_request_body_ends() {
    let t = Scripted::start(answers_early).await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));
    for (path, status, text) in [("/413", 413, "too big!"), ("/200", 200, "early")] {
        let mut c = h1(TcpStream::connect(sw.addr("web")).await.unwrap()).await;
        let (upload, body) = endless_upload();
        let req = Request::post(path)
            .header("host", "localhost")
            .header("content-length", (100u64 << 20).to_string())
            .body(body)
            .unwrap();
        let resp = tokio::time::timeout(PATIENCE, c.send_request(req))
            .await
            .unwrap_or_else(|_| panic!("HTTP/1.1 {path}: no answer while the upload goes on"))
            .unwrap();
        let w = whole(resp).await;
        assert_eq!(
            (w.status.as_u16(), &w.body[..]),
            (status, text.as_bytes()),
            "HTTP/1.1 {path}"
        );
        drop(upload);

        let mut c = h2_client(&sw).await;
        let (upload, body) = endless_upload();
        let req = Request::post(format!("https://localhost{path}"))
            .body(body)
            .unwrap();
        let resp = tokio::time::timeout(PATIENCE, c.send_request(req))
            .await
            .unwrap_or_else(|_| panic!("HTTP/2 {path}: no answer while the upload goes on"))
            .unwrap();
        let w = whole(resp).await;
        assert_eq!(
            (w.status.as_u16(), &w.body[..]),
            (status, text.as_bytes()),
            "HTTP/2 {path}"
        );
        drop(upload);
    }
    assert_eq!(get_web(&sw, "/next").await.text(), "ok");
}

/// A client that sends its whole upload before it reads (as most do) to a target that refuses
/// on the head alone and closes (`/413`), or to a target that cannot be reached (502): the rest
/// of the upload, which no target takes, is read and thrown away, so the client gets the answer
/// and its connection serves on. Left unread, the upload would reset the client's connection,
/// answer and all (over HTTP/2 the stream is reset on its own, and the connection goes on: c05).
#[tokio::test]
async fn c05b_an_upload_no_target_reads_is_thrown_away_and_the_connection_serves_on() {
    let t = Scripted::start(answers_early).await;
    let cfg = ConfigBuilder::new()
        .runtime("workers = 1")
        .listener(
            Listener::http("web")
                .rule(1, &path("/dead"), &forward("dead"))
                .forward("app"),
        )
        .target_group(TargetGroup::new("app", &[t.addr]))
        .target_group(TargetGroup::new("dead", &[dead_port()]))
        .build();
    let sw = Seawall::start(&cfg);
    let upload = vec![b'u'; 8 << 20];
    for (path, status) in [("/dead", 502), ("/413", 413)] {
        let mut c = RawClient::web(&sw).await;
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
            upload.len()
        )
        .into_bytes();
        request.extend_from_slice(&upload);
        request.extend_from_slice(b"GET /next HTTP/1.1\r\nhost: localhost\r\n\r\n");
        // Larger than the sockets' buffers: it goes only as fast as seawall reads it.
        c.send(&request).await;
        let r = c.response(false).await;
        assert_eq!(r.status, status, "{path}: {r:?}");
        let r = c.response(false).await;
        assert_eq!(
            (r.status, r.text()),
            (200, "ok".into()),
            "after {path}: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// c06

/// Answers the first request on each connection and keeps it alive, then closes it, unanswered,
/// as the second arrives: the keep-alive race lost after the request went out.
async fn one_answer_per_connection(mut c: Conn) {
    let Some(head) = c.request().await else {
        return;
    };
    if c.body(&head).await.is_none() || !c.write(OK).await {
        return;
    }
    if let Some(head) = c.request().await {
        c.note(format!("dropped {} {} on {}", head.method, head.path, c.id));
    }
}

/// A kept-alive connection the target closes under the next request (see `upstream::retry`): an
/// idempotent GET without a body goes again, once, on a new connection, and succeeds; a POST with
/// a body is not sent twice (the target may have acted on it) and gets 502.
#[tokio::test]
async fn c06_a_reused_connection_closed_under_the_request() {
    let t = Scripted::start(one_answer_per_connection).await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));
    let mut c = h1(TcpStream::connect(sw.addr("web")).await.unwrap()).await;
    let get = |path: &str| {
        Request::get(path)
            .header("host", "localhost")
            .body(empty())
            .unwrap()
    };
    let got = send1(&mut c, get("/g1")).await;
    assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "ok"));
    let got = send1(&mut c, get("/g2")).await;
    assert_eq!(
        (got.status, got.text().as_str()),
        (StatusCode::OK, "ok"),
        "the GET is sent again on a new connection"
    );
    let post = Request::post("/p")
        .header("host", "localhost")
        .body(body("once"))
        .unwrap();
    let got = send1(&mut c, post).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{}", got.text());
    assert_eq!(got.text(), "502 Bad Gateway\n");

    assert_eq!(
        t.seen(),
        seen(&[(0, "/g1"), (0, "/g2"), (1, "/g2"), (1, "/p")]),
        "the POST went out once"
    );
    assert_eq!(t.notes(), ["dropped GET /g2 on 0", "dropped POST /p on 1"]);
}

// ---------------------------------------------------------------------------------------------
// c07

const FIRST: &[u8] = b"first from target";
const PING: &[u8] = b"ping from client";
const PONG: &[u8] = b"pong from target";
const BULK: usize = 256 * 1024;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Answers an upgrade with 101 and, in the same write, its first bytes through the tunnel; then
/// takes a ping and a bulk of bytes and answers with a pong and the bulk back.
async fn upgrading(mut c: Conn) {
    let Some(head) = c.request().await else {
        return;
    };
    c.note(format!(
        "upgrade: {:?}, connection: {:?}",
        head.header("upgrade"),
        head.header("connection")
    ));
    let mut answer =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            .to_vec();
    answer.extend_from_slice(FIRST);
    if !c.write(&answer).await || c.read_exact(PING.len()).await.as_deref() != Some(PING) {
        return;
    }
    let Some(bulk) = c.read_exact(BULK).await else {
        return;
    };
    let mut back = PONG.to_vec();
    back.extend(bulk);
    if !c.write(&back).await {
        return;
    }
    if c.until_closed(PATIENCE).await {
        c.note("tunnel closed");
    }
}

async fn upgrade_through<S: AsyncRead + AsyncWrite + Unpin>(mut c: RawClient<S>, how: &str) {
    c.send(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    let head = c.head().await;
    assert_eq!(status_of(&head), 101, "{how}: {head:?}");
    assert_eq!(
        header_of(&head, "upgrade"),
        Some("websocket"),
        "{how}: {head:?}"
    );
    assert_eq!(
        c.exactly(FIRST.len()).await,
        FIRST,
        "{how}: the target's first bytes"
    );
    let mut out = PING.to_vec();
    out.extend(pattern(BULK));
    c.send(&out).await;
    assert_eq!(c.exactly(PONG.len()).await, PONG, "{how}");
    assert_eq!(
        c.exactly(BULK).await,
        pattern(BULK),
        "{how}: the bulk came back whole"
    );
    // The client's close goes through to the target, whose close comes back.
    c.s.shutdown().await.unwrap();
    assert!(c.closed_within(PATIENCE).await, "{how}: closed end to end");
    assert_eq!(c.buf, b"", "{how}");
}

/// A 101 answer to a WebSocket upgrade: the tunnel carries bytes both ways, the ones the target
/// wrote with its 101 first, and a close from either end, over http and https listeners.
#[tokio::test]
async fn c07_101_upgrade_tunnels_bytes_both_ways() {
    let t = Scripted::start(upgrading).await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));
    upgrade_through(RawClient::web(&sw).await, "http").await;
    upgrade_through(RawClient::secure(&sw).await, "https").await;
    let upgrade = "upgrade: Some(\"websocket\"), connection: Some(\"upgrade\")";
    assert!(
        eventually(PATIENCE, || async { t.notes().len() == 4 }).await,
        "{:?}",
        t.notes()
    );
    assert_eq!(
        t.notes(),
        [upgrade, "tunnel closed", upgrade, "tunnel closed"]
    );
    assert_eq!(t.seen(), seen(&[(0, "/ws"), (1, "/ws")]));
}

// ---------------------------------------------------------------------------------------------
// c08 and c09

/// What a target sends that seawall cannot take as an answer: each row's bytes, by path.
fn bad_answer(path: &str) -> Option<Vec<u8>> {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    Some(match path {
        "/big-header" => {
            head.extend(format!("x-big: {}\r\n", "a".repeat(200 * 1024)).bytes());
            head.extend(b"content-length: 2\r\n\r\nok");
            head
        }
        "/head-33k" => {
            head.extend(format!("x-big: {}\r\n", "a".repeat(33 * 1024)).bytes());
            head.extend(b"content-length: 2\r\n\r\nok");
            head
        }
        "/huge-header" => {
            head.extend(format!("x-big: {}\r\n", "a".repeat(1024 * 1024)).bytes());
            head.extend(b"content-length: 2\r\n\r\nok");
            head
        }
        "/many-headers" => {
            for i in 0..1000 {
                head.extend(format!("x-h{i}: 1\r\n").bytes());
            }
            head.extend(b"content-length: 2\r\n\r\nok");
            head
        }
        "/garbage" => b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(),
        "/abc" => b"HTTP/1.1 abc\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        "/nul" => b"HTTP/1.1 200 OK\r\nx-bad: a\x00b\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        "/space-in-name" => {
            b"HTTP/1.1 200 OK\r\nbad name: x\r\ncontent-length: 2\r\n\r\nok".to_vec()
        }
        "/obs-fold" => {
            b"HTTP/1.1 200 OK\r\nx-folded: a\r\n b\r\ncontent-length: 2\r\n\r\nok".to_vec()
        }
        "/two-lengths" => {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok".to_vec()
        }
        "/nothing" => Vec::new(),
        _ => return None,
    })
}

/// Answers each path of [`bad_answer`] with its bytes, then waits for seawall to close the
/// connection (closing first could reset it before seawall read them); anything else `ok`.
async fn bad_answers(mut c: Conn) {
    while let Some(head) = c.request().await {
        match bad_answer(&head.path) {
            Some(bytes) => {
                if !bytes.is_empty() {
                    c.write(&bytes).await;
                    c.until_closed(PATIENCE).await;
                }
                return;
            }
            None => {
                if c.body(&head).await.is_none() || !c.write(OK).await {
                    return;
                }
            }
        }
    }
}

/// Each of `rows` (a name, a path of [`bad_answer`]) gets 502 over HTTP/1.1 and HTTP/2, reaches
/// the target once each time (a GET is not sent again after an answer that was not HTTP: the
/// target may have acted on it), and seawall serves on.
async fn each_gets_502(rows: &[(&str, &str)]) {
    let t = Scripted::start(bad_answers).await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));
    let mut h2c = h2_client(&sw).await;
    for (i, (name, path)) in rows.iter().enumerate() {
        let mut c = RawClient::web(&sw).await;
        c.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await;
        let r = c.response(false).await;
        assert_eq!(r.status, 502, "{name}, HTTP/1.1: {r:?}");
        assert_eq!(r.text(), "502 Bad Gateway\n", "{name}");
        let w = h2_send(&mut h2c, "GET", path).await;
        assert_eq!(w.status, 502, "{name}, HTTP/2");
        let heads = t.heads();
        let tries = heads.iter().filter(|h| h.path == *path).count();
        assert_eq!(tries, 2, "{name}: once per request");
        assert_eq!(
            get_web(&sw, "/next").await.text(),
            "ok",
            "{name}: served on"
        );
        assert_eq!(
            sw.metric("seawall_elb_responses_total{code=\"502\"}"),
            2.0 * (i + 1) as f64,
            "{name}"
        );
    }
}

/// A response head seawall's client cannot hold: 502, the process serves on.
#[tokio::test]
async fn c08_a_response_head_over_the_limit_gets_502() {
    each_gets_502(&[
        ("1000 headers", "/many-headers"),
        ("a 1 MiB header", "/huge-header"),
    ])
    .await;
}

/// ALB's limit on a target's response head, 32 KiB: one header of 33 KiB or of 200 KiB gets 502;
/// one of 31 KiB is forwarded whole.
#[tokio::test]
async fn c08_response_heads_over_32_kib_get_502_as_albs_do() {
    each_gets_502(&[
        ("a 33 KiB header", "/head-33k"),
        ("a 200 KiB header", "/big-header"),
    ])
    .await;
    let big = "b".repeat(31 * 1024);
    let answer = format!("HTTP/1.1 200 OK\r\nx-big: {big}\r\ncontent-length: 2\r\n\r\nok");
    let t = Scripted::start(move |mut c: Conn| {
        let answer = answer.clone();
        async move {
            while c.request().await.is_some() {
                if !c.write(answer.as_bytes()).await {
                    return;
                }
            }
        }
    })
    .await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));
    let got = get_web(&sw, "/head-31k").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["x-big"].as_bytes(), big.as_bytes());
    assert_eq!(got.text(), "ok");
}

/// Answers that are not HTTP: 502.
#[tokio::test]
async fn c09_malformed_answers_get_502() {
    each_gets_502(&[
        ("garbage status line", "/garbage"),
        ("non-numeric status", "/abc"),
        ("NUL in a header value", "/nul"),
        ("space in a header name", "/space-in-name"),
        ("obsolete line folding", "/obs-fold"),
        ("two different Content-Lengths", "/two-lengths"),
    ])
    .await;
}

/// `/broken`: a valid head, then a chunked body whose second chunk size is not hex; else `ok`.
/// Over HTTP/2, `path`'s 200 arrives and then its stream fails (no end is seen), and the
/// connection serves the next request.
async fn h2_stream_fails_then_next_is_served(sw: &Seawall, path: &str) {
    let mut h2c = h2_client(sw).await;
    let req = Request::get(format!("https://localhost{path}"))
        .body(empty())
        .unwrap();
    let resp = tokio::time::timeout(PATIENCE, h2c.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(PATIENCE, resp.into_body().collect())
        .await
        .expect("the stream ends in time");
    assert!(body.is_err(), "HTTP/2: the stream fails");
    assert_eq!(h2_send(&mut h2c, "GET", "/next").await.body, "ok");
}

async fn breaks_after_the_head(mut c: Conn) {
    while let Some(head) = c.request().await {
        if head.path == "/broken" {
            c.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
                .await;
            if c.until_closed(PATIENCE).await {
                c.note(format!("{} closed", c.id));
            }
            return;
        }
        if !c.write(OK).await {
            return;
        }
    }
}

/// A body that breaks after a valid head: the head has gone to the client, so there is no 502 to
/// give. The HTTP/1.1 client gets what came before the break and then its connection is closed,
/// the chunked body never ended; the HTTP/2 client's stream fails. The target connection is
/// closed, not reused.
#[tokio::test]
async fn c09b_a_body_that_breaks_after_the_head_cuts_the_client_off() {
    let t = Scripted::start(breaks_after_the_head).await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));

    let mut c = RawClient::web(&sw).await;
    c.send(b"GET /broken HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let head = c.head().await;
    assert_eq!(status_of(&head), 200, "{head:?}");
    assert_eq!(header_of(&head, "transfer-encoding"), Some("chunked"));
    assert!(
        c.closed_within(PATIENCE).await,
        "the client connection is closed"
    );
    let rest = String::from_utf8_lossy(&c.buf).into_owned();
    assert!(
        !rest.contains("0\r\n\r\n"),
        "the body never looks ended: {rest:?}"
    );
    assert!(
        "5\r\nhello\r\n".starts_with(&rest),
        "at most what came before the break: {rest:?}"
    );
    assert_eq!(get_web(&sw, "/next").await.text(), "ok");

    h2_stream_fails_then_next_is_served(&sw, "/broken").await;

    assert_eq!(
        t.seen(),
        seen(&[(0, "/broken"), (1, "/next"), (1, "/broken"), (2, "/next")])
    );
    assert!(
        eventually(PATIENCE, || async { t.notes().len() == 2 }).await,
        "{:?}",
        t.notes()
    );
    assert_eq!(t.notes(), ["0 closed", "1 closed"]);
}

/// A target that closes the connection on a request's head without answering. On a new
/// connection that is the target's failure: 502 at once. On a reused one it cannot be told from
/// the keep-alive race (the target closing an idle connection as the request went out), so an
/// idempotent GET goes once more on a new connection, and gets 502 when that fails too.
#[tokio::test]
async fn c09c_closed_without_an_answer_gets_502() {
    let t = Scripted::start(bad_answers).await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));
    let got = get_web(&sw, "/nothing").await;
    assert_eq!(
        (got.status.as_u16(), got.text().as_str()),
        (502, "502 Bad Gateway\n")
    );
    assert_eq!(get_web(&sw, "/next").await.text(), "ok");
    let got = get_web(&sw, "/nothing").await;
    assert_eq!(
        (got.status.as_u16(), got.text().as_str()),
        (502, "502 Bad Gateway\n")
    );
    assert_eq!(
        t.seen(),
        seen(&[
            (0, "/nothing"),
            (1, "/next"),
            (1, "/nothing"),
            (2, "/nothing")
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// c10

/// `/extra`: `Content-Length: 5` and ten bytes; `/smuggle`: the five bytes and then a whole
/// second answer nobody asked for. Else `ok`, kept alive.
async fn extra_bytes(mut c: Conn) {
    while let Some(head) = c.request().await {
        let answer: &[u8] = match head.path.as_str() {
            "/extra" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloworld",
            "/smuggle" => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello\
HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled"
            }
            _ => OK,
        };
        if !c.write(answer).await {
            return;
        }
        if answer != OK {
            if c.until_closed(PATIENCE).await {
                c.note(format!("{} closed", c.id));
            }
            return;
        }
    }
}

/// Bytes after a complete answer: the client gets exactly the answer's five bytes, and the
/// connection they came on is closed rather than reused, so the surplus (a whole second answer,
/// say) never becomes the answer to the next request.
#[tokio::test]
async fn c10_bytes_after_a_complete_answer() {
    let t = Scripted::start(extra_bytes).await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));

    for path in ["/extra", "/smuggle"] {
        let mut c = RawClient::web(&sw).await;
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let r = c.response(false).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello"),
            "{path}: {r:?}"
        );
        assert!(c.closed_within(PATIENCE).await);
        assert_eq!(c.buf, b"", "{path}: nothing after the answer");
        assert_eq!(
            get_web(&sw, "/next").await.text(),
            "ok",
            "{path}: the next request"
        );
    }
    let mut h2c = h2_client(&sw).await;
    let w = h2_send(&mut h2c, "GET", "/smuggle").await;
    assert_eq!((w.status, &w.body[..]), (StatusCode::OK, &b"hello"[..]));
    assert_eq!(h2_send(&mut h2c, "GET", "/next").await.body, "ok");

    assert_eq!(
        t.seen(),
        seen(&[
            (0, "/extra"),
            (1, "/next"),
            (1, "/smuggle"),
            (2, "/next"),
            (2, "/smuggle"),
            (3, "/next"),
        ])
    );
    assert!(
        eventually(PATIENCE, || async { t.notes().len() == 3 }).await,
        "{:?}",
        t.notes()
    );
    assert_eq!(t.notes(), ["0 closed", "1 closed", "2 closed"]);
}

// ---------------------------------------------------------------------------------------------
// c11

/// A group of a port where nothing listens and a live target, both healthy by their checks (which
/// go to a third port): every GET succeeds, the one sent to the dead port first after moving to
/// the live target, which sees each GET once. The dead target is marked unhealthy at once.
///
/// The GETs are HTTP/1.0 without a Host, so that seawall adds the target's address as the Host:
/// the GET that moved carries the live target's, not the dead one's.
#[tokio::test]
async fn c11_a_refused_connect_moves_the_request_to_another_target() {
    let checks = Backend::start("checks").await;
    let t = Scripted::start(|c| serve_each(c, |_| OK.to_vec())).await;
    let dead = dead_port();
    let group = format!("health_check = {{ port = {} }}", checks.addr.port());
    let sw = Seawall::start(&config(&[dead, t.addr], "", &group));
    sw.wait_healthy("app").await;
    let dead_target = sw.member("app", dead).unwrap();

    let mut gets = 0;
    while dead_target.passive_failures() == 0 {
        assert!(gets < 20, "the dead target was never picked");
        let mut c = RawClient::web(&sw).await;
        c.send(format!("GET /r{gets} HTTP/1.0\r\n\r\n").as_bytes())
            .await;
        let got = c.response(false).await;
        assert_eq!((got.status, got.text().as_str()), (200, "ok"), "GET {gets}");
        gets += 1;
    }
    let heads = t.heads();
    assert_eq!(heads.len(), gets, "each GET reached the live target once");
    let live = t.addr.to_string();
    for h in &heads {
        assert_eq!(h.header("host"), Some(live.as_str()), "{}", h.text);
    }
    assert_eq!(dead_target.passive_failures(), 1);
    assert_eq!(dead_target.state(), seawall::targets::State::Unhealthy);
}

// ---------------------------------------------------------------------------------------------
// c12

/// Reads a POST's head, notes it, and reads whatever follows until seawall closes the connection;
/// notes whether the body ever looked ended. Anything else: `ok`.
async fn reads_a_post_until_closed(mut c: Conn) {
    while let Some(head) = c.request().await {
        if head.method == "POST" {
            c.note("head");
            let closed = c.until_closed(PATIENCE).await;
            let ended = c.drained().windows(5).any(|w| w == b"0\r\n\r\n");
            c.note(format!("closed: {closed}, body ended: {ended}"));
            return;
        }
        if !c.write(OK).await {
            return;
        }
    }
}

/// A client whose chunked body breaks (a chunk size that is not hex) after its head was
/// forwarded, over TLS: 400 with `Connection: close`, not 502 (the target is not to blame); the
/// target's connection, left mid-request, is closed without ever seeing the body's end.
#[tokio::test]
async fn c12_a_client_body_that_breaks_gets_400() {
    let t = Scripted::start(reads_a_post_until_closed).await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));
    let mut c = RawClient::secure(&sw).await;
    c.send(
        b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await;
    assert!(
        eventually(PATIENCE, || async { t.noted("head") }).await,
        "the head reached the target"
    );
    c.send(b"zz\r\n").await;
    assert!(
        c.closed_within(PATIENCE).await,
        "the client connection is closed"
    );
    let text = String::from_utf8_lossy(&c.buf).to_lowercase();
    assert!(text.starts_with("http/1.1 400"), "{text:?}");
    assert!(text.contains("connection: close"), "{text:?}");
    assert!(
        eventually(PATIENCE, || async { t.notes().len() == 2 }).await,
        "{:?}",
        t.notes()
    );
    assert_eq!(t.notes()[1], "closed: true, body ended: false");
    assert_eq!(sw.metric("seawall_elb_responses_total{code=\"400\"}"), 1.0);
    assert_eq!(sw.metric("seawall_elb_responses_total{code=\"502\"}"), 0.0);
    assert_eq!(get_web(&sw, "/next").await.text(), "ok");
}

// ---------------------------------------------------------------------------------------------
// c13

const IDLE: Duration = Duration::from_secs(2);

/// `/big`: a 1 GiB answer written as fast as it is taken, until the connection fails; else `ok`.
async fn big_answer(mut c: Conn) {
    while let Some(head) = c.request().await {
        if head.path != "/big" {
            if !c.write(OK).await {
                return;
            }
            continue;
        }
        if !c
            .write(b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n")
            .await
        {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        while c.write(&chunk).await {}
        c.note("big: cut off");
        return;
    }
}

/// A client (HTTP/1.1 over TLS) that asks for a large answer and reads none of it: seawall
/// closes its connection once nothing has moved for `idle_timeout`, and the target's with it;
/// others are served meanwhile and after.
#[tokio::test]
async fn c13_a_client_that_stops_reading_is_closed_after_idle_timeout() {
    let t = Scripted::start(big_answer).await;
    let runtime = format!("idle_timeout = \"{}s\"", IDLE.as_secs());
    let sw = Seawall::start(&config(&[t.addr], &runtime, ""));
    let mut c = RawClient::secure(&sw).await;
    c.send(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert!(eventually(PATIENCE, || async { t.heads().len() == 1 }).await);
    assert_eq!(get_web(&sw, "/meanwhile").await.text(), "ok");
    let closed = eventually(IDLE + PATIENCE, || async {
        t.noted("big: cut off") && sw.metric("seawall_active_connections") == 0.0
    })
    .await;
    assert!(closed, "still open: {:?}\n{}", t.notes(), sw.metrics_text());
    // What had piled up, then the end.
    assert!(c.closed_within(PATIENCE).await);
    assert!(c.buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(c.buf.len() < 1 << 30, "cut short");
    assert_eq!(get_web(&sw, "/after").await.text(), "ok");
    assert_eq!(
        t.seen(),
        seen(&[(0, "/big"), (1, "/meanwhile"), (1, "/after")])
    );
}

/// The access log's `sent_bytes` are the bytes the client got: for a head passed on as the target
/// sent it (measured once, for the head limit and the log alike) and for one that lost its
/// hop-by-hop headers on the way (measured again as it goes out).
#[tokio::test]
async fn c14_the_access_logs_sent_bytes_are_what_the_client_got() {
    let t = Scripted::start(|c| {
        serve_each(c, |h| match h.path.as_str() {
            "/as-sent" => b"HTTP/1.1 200 OK\r\nx-kept: 1\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            // `Connection` names a header of its own, which goes too.
            "/listed" => b"HTTP/1.1 200 OK\r\nconnection: x-hop\r\nx-hop: 1\r\nx-kept: 1\r\n\
                           content-length: 2\r\n\r\nok"
                .to_vec(),
            _ => b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n\
                   content-length: 2\r\n\r\nok"
                .to_vec(),
        })
    })
    .await;
    let sw = Seawall::start(&format!(
        "{}\n[access_log]\npath = \"access.log\"\nformat = \"json\"\n",
        config(&[t.addr], "", "")
    ));
    let mut c = RawClient::web(&sw).await;
    let mut got = Vec::new();
    for path in ["/as-sent", "/stripped", "/listed"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes())
            .await;
        let r = c.response(false).await;
        assert_eq!(r.text(), "ok");
        got.push((path, r.head.len() + r.body.len()));
    }
    let log = sw.dir.path().join("access.log");
    let lines = eventually(PATIENCE, || async {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 3)
    })
    .await;
    assert!(lines, "three lines in the access log");
    let text = std::fs::read_to_string(&log).unwrap();
    for (path, bytes) in got {
        let line: serde_json::Value = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .find(|v: &serde_json::Value| v["request_url"].as_str().unwrap().ends_with(path))
            .unwrap_or_else(|| panic!("no line for {path}:\n{text}"));
        assert_eq!(line["sent_bytes"], bytes as u64, "{path}: {line}");
    }
}

async fn silent_or_trickling(mut c: Conn) {
    while let Some(head) = c.request().await {
        match head.path.as_str() {
            "/silent" => {
                c.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
                    .await;
                if c.until_closed(PATIENCE).await {
                    c.note(format!("{} closed", c.id));
                }
                return;
            }
            "/trickle" => {
                c.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    c.write(b"1\r\nx\r\n").await;
                }
                if !c.write(b"0\r\n\r\n").await {
                    return;
                }
            }
            _ => {
                if !c.write(OK).await {
                    return;
                }
            }
        }
    }
}

/// A target that goes silent in the middle of its body, without closing: as ALB's idle timeout
/// on the target side, after the group's `response_timeout` with nothing from the target the
/// client's connection (HTTP/2: stream) is cut, no end seen, and the target's connection closed,
/// instead of both being held until someone gives up. The bound is on silence, not on the whole
/// body: one that trickles in with gaps under it, for longer than it in all, arrives whole.
#[tokio::test]
async fn c15_a_target_silent_mid_body_is_cut_off_after_response_timeout() {
    let t = Scripted::start(silent_or_trickling).await;
    let sw = Seawall::start(&config(&[t.addr], "", "response_timeout = \"1s\""));

    let mut c = RawClient::web(&sw).await;
    c.send(b"GET /silent HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let head = c.head().await;
    let since = Instant::now();
    assert_eq!(status_of(&head), 200, "{head:?}");
    assert!(
        c.closed_within(PATIENCE).await,
        "the client connection is closed"
    );
    assert!(
        since.elapsed() >= Duration::from_millis(900),
        "not before the target was silent for response_timeout: {:?}",
        since.elapsed()
    );
    let rest = String::from_utf8_lossy(&c.buf).into_owned();
    assert_eq!(rest, "5\r\nhello\r\n", "what came, and no end");

    h2_stream_fails_then_next_is_served(&sw, "/silent").await;

    let trickled = get_web(&sw, "/trickle").await;
    assert_eq!(trickled.text(), "xxxxx", "2 s in all, no gap of 1 s");

    assert!(
        eventually(PATIENCE, || async { t.notes().len() == 2 }).await,
        "{:?}",
        t.notes()
    );
    assert_eq!(t.notes(), ["0 closed", "1 closed"]);
}
