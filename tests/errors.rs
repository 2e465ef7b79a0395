//! What seawall answers itself: 502/503/504 for target trouble, 400 for requests whose framing or
//! Host cannot be trusted (a body that breaks off included), 408 for a slow request head, 431 and
//! 414 for an oversized head or request line; and how connections end: the idle timeout (HTTP/1.1
//! and HTTP/2) and a graceful drain; 413 for a body over a listener's `max_body_bytes`.
mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use http::Request;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

/// One http listener "web" and one https listener "secure", both forwarding to the target group
/// "app" with `targets`; `runtime` and `tg_extra` are spliced into their sections. One worker, so
/// that these tests run on a single data-plane thread (the other test files use a worker per
/// core, each a thread of its own).
fn config(targets: &[SocketAddr], runtime: &str, tg_extra: &str) -> String {
    ConfigBuilder::new()
        .runtime("workers = 1\ndrain_timeout = \"5s\"")
        .runtime(runtime)
        .self_signed("dev", &["localhost"])
        .listener(Listener::http("web").forward("app"))
        .listener(Listener::https("secure", &["dev"]).forward("app"))
        .target_group(TargetGroup::new("app", targets).line(tg_extra))
        .build()
}

/// What came back on a raw connection, and whether the server closed it.
struct Raw {
    text: String,
    closed: bool,
}

/// Writes `data` on a fresh plain connection, then reads until the server closes (EOF or reset)
/// or `wait` passes.
async fn raw(addr: SocketAddr, data: &[u8], wait: Duration) -> Raw {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(data).await.unwrap();
    let mut out = Vec::new();
    let closed = read_until_closed(&mut tcp, &mut out, wait).await;
    Raw {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed,
    }
}

/// Reads into `out` until EOF or an error (true), or until `wait` passes (false).
async fn read_until_closed<S: AsyncRead + Unpin>(
    s: &mut S,
    out: &mut Vec<u8>,
    wait: Duration,
) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response with a Content-Length body from a kept-alive connection: (head, body).
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> (String, String) {
    read_responses(s, 1).await.remove(0)
}

/// Reads `n` responses with Content-Length bodies from a kept-alive connection, and nothing
/// beyond them: answers to pipelined requests may arrive in one read.
async fn read_responses<S: AsyncRead + Unpin>(s: &mut S, n: usize) -> Vec<(String, String)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    let mut at = 0;
    while got.len() < n {
        let head_end = loop {
            if let Some(i) = data[at..].windows(4).position(|w| w == b"\r\n\r\n") {
                break at + i + 4;
            }
            let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
                .await
                .expect("a response in time")
                .expect("the connection stays open");
            assert!(
                n > 0,
                "closed before a whole response head: {:?}",
                String::from_utf8_lossy(&data[at..])
            );
            data.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&data[at..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("a Content-Length in {head:?}"));
        while data.len() < head_end + len {
            let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed in the middle of a body");
            data.extend_from_slice(&buf[..n]);
        }
        let body = String::from_utf8_lossy(&data[head_end..head_end + len]).into_owned();
        got.push((head, body));
        at = head_end + len;
    }
    assert_eq!(data.len(), at, "nothing beyond the {n} responses");
    got
}

fn status_of(text: &str) -> &str {
    text.split(' ').nth(1).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// 502 / 503 / 504

/// A request to a target group with a problem: its status, its seawall-made body, and the count.
async fn assert_generated_error(sw: &Seawall, path: &str, code: u16, body: &str) {
    let got = tokio::time::timeout(PATIENCE, get(sw.addr("web"), false, "example.test", path))
        .await
        .expect("an answer in time");
    assert_eq!(got.status.as_u16(), code, "{}", got.text());
    assert_eq!(got.text(), body);
    let ct = got.headers["content-type"].to_str().unwrap();
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert_eq!(
        sw.metric(&format!("seawall_elb_responses_total{{code=\"{code}\"}}")),
        1.0
    );
    // Over TLS too, and counted again.
    let got = tokio::time::timeout(PATIENCE, get(sw.addr("secure"), true, "localhost", path))
        .await
        .expect("an answer in time");
    assert_eq!(got.status.as_u16(), code, "{}", got.text());
    assert_eq!(got.text(), body);
    assert_eq!(
        sw.metric(&format!("seawall_elb_responses_total{{code=\"{code}\"}}")),
        2.0
    );
}

#[tokio::test]
async fn killed_target_gets_502() {
    let b = Backend::start("b1").await;
    let addr = b.addr;
    b.kill();
    drop(b);
    // Let the aborted accept task drop its listening socket.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sw = Seawall::start(&config(&[addr], "", ""));
    assert_generated_error(&sw, "/x", 502, "502 Bad Gateway\n").await;
    assert_eq!(sw.metric("seawall_elb_responses_total{code=\"504\"}"), 0.0);
}

#[tokio::test]
async fn port_with_nothing_listening_gets_502() {
    let addr = dead_port();
    let sw = Seawall::start(&config(&[addr], "", ""));
    assert_generated_error(&sw, "/x", 502, "502 Bad Gateway\n").await;
}

#[tokio::test]
async fn target_that_never_answers_gets_504() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], "", "response_timeout = \"500ms\""));
    assert_generated_error(&sw, "/slow", 504, "504 Gateway Timeout\n").await;
    assert_eq!(b.hits(), 2, "the requests did reach the target");
    assert_eq!(sw.metric("seawall_elb_responses_total{code=\"502\"}"), 0.0);
}

#[tokio::test]
async fn target_group_without_targets_gets_503() {
    let sw = Seawall::start(&config(&[], "", ""));
    assert_generated_error(&sw, "/x", 503, "503 Service Unavailable\n").await;
}

/// A target's own error statuses are passed through, not counted as seawall's.
#[tokio::test]
async fn target_answers_are_not_counted_as_seawalls() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], "", ""));
    let got = get(sw.addr("web"), false, "example.test", "/x").await;
    assert_eq!(got.status, 200);
    assert_eq!(sw.metric("seawall_elb_responses_total{code=\"200\"}"), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Framing

#[tokio::test]
async fn content_length_with_transfer_encoding_gets_400_and_never_reaches_the_target() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], "", ""));
    // Both header orders; each body hides a second request that a parser trusting the other
    // header would see.
    let heads = [
        "Content-Length: 44\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 44\r\n",
    ];
    for h in heads {
        let req = format!(
            "POST /x HTTP/1.1\r\nHost: example.test\r\n{h}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: example.test\r\n\r\n"
        );
        let got = raw(sw.addr("web"), req.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&got.text), "400", "{h:?}: {}", got.text);
        assert_eq!(
            got.text.matches("HTTP/1.1 ").count(),
            1,
            "one answer only: {}",
            got.text
        );
        assert!(got.closed, "the connection is closed after the 400");
    }
    assert_eq!(b.hits(), 0, "nothing reached the target");

    // The same as the second request of a kept-alive connection.
    let mut tcp = TcpStream::connect(sw.addr("web")).await.unwrap();
    tcp.write_all(b"GET /first HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut tcp).await;
    assert_eq!(status_of(&head), "200", "{head}");
    let req = format!(
        "POST /x HTTP/1.1\r\nHost: example.test\r\n{}\r\n0\r\n\r\n",
        heads[0]
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    assert!(read_until_closed(&mut tcp, &mut out, Duration::from_secs(5)).await);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&text), "400", "{text}");
    assert_eq!(b.hits(), 1, "only the first request reached the target");
}

#[tokio::test]
async fn conflicting_content_lengths_get_400_and_never_reach_the_target() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], "", ""));
    for h in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
    ] {
        let req = format!("POST /x HTTP/1.1\r\nHost: example.test\r\n{h}\r\nhello!");
        let got = raw(sw.addr("web"), req.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&got.text), "400", "{h:?}: {}", got.text);
        assert!(got.closed, "the connection is closed after the 400");
    }
    assert_eq!(b.hits(), 0, "nothing reached the target");
}

#[tokio::test]
async fn forwarded_chunked_request_carries_no_content_length() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], "", ""));
    let req = "POST /echo HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let mut tcp = TcpStream::connect(sw.addr("web")).await.unwrap();
    tcp.write_all(req.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut tcp).await;
    assert_eq!(status_of(&head), "200", "{head}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    let headers = seen["headers"].as_object().unwrap();
    assert!(!headers.contains_key("content-length"), "{headers:?}");
    assert_eq!(
        seen["headers"]["transfer-encoding"][0], "chunked",
        "{headers:?}"
    );

    // A streamed body of unknown length from a hyper client: the same on the wire.
    let mut c = h1(TcpStream::connect(sw.addr("web")).await.unwrap()).await;
    let req = Request::post("/echo")
        .header("host", "example.test")
        .body(pattern_body(200_000))
        .unwrap();
    let got = read(c.send_request(req).await.unwrap()).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.seen_header("content-length"), None, "{}", got.text());
    assert_eq!(
        got.seen_header("transfer-encoding").as_deref(),
        Some("chunked")
    );
    assert_eq!(b.hits(), 2);
}

#[tokio::test]
async fn http11_request_without_host_gets_400() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], "", ""));
    let got = raw(
        sw.addr("web"),
        b"GET /x HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&got.text), "400", "{}", got.text);
    assert_eq!(b.hits(), 0);
    assert_eq!(sw.metric("seawall_elb_responses_total{code=\"400\"}"), 1.0);
}

#[tokio::test]
async fn garbage_gets_4xx_or_close_and_seawall_keeps_serving() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], "", ""));
    let junk: [&[u8]; 4] = [
        b"\x00\x01\x02\xff\xfe garbage\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /\x7f\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for data in junk {
        let got = raw(sw.addr("web"), data, Duration::from_secs(5)).await;
        let status = status_of(&got.text);
        assert!(
            got.text.is_empty() || status.starts_with('4'),
            "{data:?} got {:?}",
            got.text
        );
        assert!(got.closed, "{data:?}: connection closed");
    }
    // Not TLS at all, to the https listener.
    let got = raw(
        sw.addr("secure"),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(got.closed);
    assert_eq!(b.hits(), 0);
    // Still serving, on both listeners.
    assert_eq!(
        get(sw.addr("web"), false, "example.test", "/x")
            .await
            .status,
        200
    );
    assert_eq!(
        get(sw.addr("secure"), true, "localhost", "/x").await.status,
        200
    );
    assert_eq!(b.hits(), 2);
}

// ---------------------------------------------------------------------------------------------
// Timeouts

#[tokio::test]
async fn slow_request_head_gets_408_after_header_timeout() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], "header_timeout = \"1s\"", ""));
    let head = b"GET /x HTTP/1.1\r\nHost: example.test\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // One byte every 200 ms: the whole head would take over 16 s.
    let full_head_time = Duration::from_millis(200) * head.len() as u32;
    let tcp = TcpStream::connect(sw.addr("web")).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        for &byte in head.iter() {
            if wr.write_all(&[byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sent
    });
    let mut out = Vec::new();
    let closed = read_until_closed(&mut rd, &mut out, full_head_time).await;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(closed, "closed before the head was complete; got {text:?}");
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "not before header_timeout: {elapsed:?}"
    );
    assert!(
        elapsed < full_head_time / 2,
        "closed after about header_timeout, long before the head would be complete: {elapsed:?}"
    );
    writer.abort();
    let _ = writer.await;
    assert_eq!(b.hits(), 0);
}

const IDLE_RUNTIME: &str = "header_timeout = \"500ms\"\nidle_timeout = \"1500ms\"";
/// Longer than header_timeout, shorter than idle_timeout.
const SHORT_GAP: Duration = Duration::from_millis(900);

/// Two requests on one kept-alive HTTP/1.1 connection with a gap longer than header_timeout, then
/// silence: the server closes the connection after idle_timeout.
async fn http1_idle_behaviour<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let req = b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n";
    s.write_all(req).await.unwrap();
    let (head, _) = read_response(&mut s).await;
    assert_eq!(status_of(&head), "200", "{head}");
    tokio::time::sleep(SHORT_GAP).await;
    s.write_all(req).await.unwrap();
    let (head, _) = read_response(&mut s).await;
    assert_eq!(
        status_of(&head),
        "200",
        "second request on the same connection: {head}"
    );
    let idle_from = Instant::now();
    let mut rest = Vec::new();
    let closed = read_until_closed(&mut s, &mut rest, Duration::from_secs(10)).await;
    let waited = idle_from.elapsed();
    assert!(closed, "the server closes an idle connection");
    assert!(
        rest.is_empty(),
        "closed without another answer: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        waited >= Duration::from_millis(1000),
        "not before idle_timeout: {waited:?}"
    );
}

#[tokio::test]
async fn http1_idle_timeout_over_plain_tcp() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], IDLE_RUNTIME, ""));
    http1_idle_behaviour(TcpStream::connect(sw.addr("web")).await.unwrap()).await;
    assert_eq!(b.hits(), 2);
    assert_eq!(sw.metric("seawall_new_connections_total"), 1.0);
}

#[tokio::test]
async fn http1_idle_timeout_over_tls() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], IDLE_RUNTIME, ""));
    let tls = tls_connect(sw.addr("secure"), &Tls::new("localhost"))
        .await
        .unwrap();
    http1_idle_behaviour(tls).await;
    assert_eq!(b.hits(), 2);
    assert_eq!(sw.metric("seawall_new_connections_total"), 1.0);
}

#[tokio::test]
async fn http2_idle_timeout_closes_the_connection() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], IDLE_RUNTIME, ""));
    let tls = tls_connect(sw.addr("secure"), &Tls::new("localhost").h2())
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let mut conn = tokio::spawn(conn);
    let req = || Request::get("https://localhost/x").body(empty()).unwrap();
    assert_eq!(
        read(send.send_request(req()).await.unwrap()).await.status,
        200
    );
    tokio::time::sleep(SHORT_GAP).await;
    assert_eq!(
        read(send.send_request(req()).await.unwrap()).await.status,
        200
    );
    let idle_from = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), &mut conn).await;
    let waited = idle_from.elapsed();
    assert!(ended.is_ok(), "the server ends an idle HTTP/2 connection");
    assert!(
        waited >= Duration::from_millis(1000),
        "not before idle_timeout: {waited:?}"
    );
    assert!(send.is_closed());
    assert_eq!(b.hits(), 2);
}

/// Reads until two whole 200 answers with the backend's JSON bodies have come (pipelined answers
/// may arrive together, which `read_response` does not allow); gives their text.
async fn two_answers<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut answers = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answers).into_owned();
        if text.matches("HTTP/1.1 200").count() == 2 && text.ends_with('}') {
            return text;
        }
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("both answers in time")
            .unwrap();
        assert!(n > 0, "closed after {text:?}");
        answers.extend_from_slice(&buf[..n]);
    }
}

/// Waits until `seawall_parked_connections` reads `n`.
async fn parked(sw: &Seawall, n: f64) {
    let ok = eventually(PATIENCE, || async {
        sw.metric("seawall_parked_connections") == n
    })
    .await;
    assert!(
        ok,
        "parked connections: want {n}, have {}",
        sw.metric("seawall_parked_connections")
    );
}

/// An idle HTTP/1.1 keep-alive connection is parked (its HTTP buffers released) and its next
/// request is served in full whatever shape it arrives in: a head split across the wake-up, a
/// body, two pipelined requests (also with a pause inside the second), or a head that stalls
/// (408 after header_timeout, as unparked).
async fn http1_parked_behaviour<S: AsyncRead + AsyncWrite + Unpin>(sw: &Seawall, mut s: S) {
    let req = b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n";
    s.write_all(req).await.unwrap();
    let (head, _) = read_response(&mut s).await;
    assert_eq!(status_of(&head), "200", "{head}");
    parked(sw, 1.0).await;

    // A head that arrives in two parts, the first of which wakes the connection.
    s.write_all(&req[..20]).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(&req[20..]).await.unwrap();
    let (head, body) = read_response(&mut s).await;
    assert_eq!(status_of(&head), "200", "{head}");
    assert!(body.contains("\"path\":\"/x\""), "{body}");
    parked(sw, 1.0).await;

    // A request with a body.
    let payload = "p".repeat(10_000);
    let post = format!(
        "POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(post.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut s).await;
    assert_eq!(status_of(&head), "200", "{head}");
    assert_eq!(
        body,
        format!("{} {}", sha256_hex(payload.as_bytes()), payload.len())
    );
    parked(sw, 1.0).await;

    // Two pipelined requests in one write: two whole answers (JSON bodies) come back.
    let two = [&req[..], &req[..]].concat();
    s.write_all(&two).await.unwrap();
    two_answers(&mut s).await;
    parked(sw, 1.0).await;

    // A request followed by the start of a pipelined one, whose rest comes after a pause longer
    // than the park delay: the partial head hyper held when the connection was parked is not
    // lost.
    let second = b"GET /y HTTP/1.1\r\nHost: example.test\r\n\r\n";
    s.write_all(&[&req[..], &second[..10]].concat())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.write_all(&second[10..]).await.unwrap();
    let text = two_answers(&mut s).await;
    assert!(text.contains("\"path\":\"/y\""), "{text}");
    parked(sw, 1.0).await;

    // A head that starts after the park and stalls is held to header_timeout.
    s.write_all(b"GET /x HTTP/1.1\r\nHo").await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    assert!(read_until_closed(&mut s, &mut rest, PATIENCE).await);
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    parked(sw, 0.0).await;
}

#[tokio::test]
async fn idle_http1_connections_are_parked_and_resume_over_plain_tcp() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], IDLE_RUNTIME_LONG, ""));
    http1_parked_behaviour(&sw, TcpStream::connect(sw.addr("web")).await.unwrap()).await;
    assert_eq!(b.hits(), 7);
    assert_eq!(sw.metric("seawall_new_connections_total"), 1.0);
}

#[tokio::test]
async fn idle_http1_connections_are_parked_and_resume_over_tls() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], IDLE_RUNTIME_LONG, ""));
    let tls = tls_connect(sw.addr("secure"), &Tls::new("localhost"))
        .await
        .unwrap();
    http1_parked_behaviour(&sw, tls).await;
    assert_eq!(b.hits(), 7);
    assert_eq!(sw.metric("seawall_new_connections_total"), 1.0);
}

/// A head deadline longer than the pauses of the parking test (themselves longer than the half
/// second after which a connection is parked), and an idle timeout long enough to watch them.
const IDLE_RUNTIME_LONG: &str = "header_timeout = \"2s\"\nidle_timeout = \"30s\"";

/// The idle timeout counts only time without a request in flight.
#[tokio::test]
async fn requests_longer_than_idle_timeout_complete() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(
        &[b.addr],
        IDLE_RUNTIME,
        "response_timeout = \"10s\"",
    ));
    let got = get(sw.addr("web"), false, "example.test", "/delay?ms=2500").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "delayed 2500");

    let tls = tls_connect(sw.addr("secure"), &Tls::new("localhost").h2())
        .await
        .unwrap();
    let mut c = h2(tls).await;
    let req = Request::get("https://localhost/delay?ms=2500")
        .body(empty())
        .unwrap();
    let got = read(c.send_request(req).await.unwrap()).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "delayed 2500");
}

// ---------------------------------------------------------------------------------------------
// Graceful drain

#[tokio::test]
async fn drain_finishes_in_flight_requests_and_takes_no_new_connections() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], "", "response_timeout = \"10s\""));
    let addr = sw.addr("web");
    // An idle kept-alive connection, which the drain should close.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut idle).await;
    assert_eq!(status_of(&head), "200");

    let in_flight = tokio::spawn(get(addr, false, "example.test", "/delay?ms=1500"));
    let deadline = Instant::now() + PATIENCE;
    while b.hits() < 2 {
        assert!(
            Instant::now() < deadline,
            "the slow request reaches the target"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sw.running.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !in_flight.is_finished(),
        "the slow request is still in flight"
    );

    // New connections: refused, or closed without an answer.
    match TcpStream::connect(addr).await {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(mut tcp) => {
            let _ = tcp
                .write_all(b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n")
                .await;
            let mut out = Vec::new();
            let closed = read_until_closed(&mut tcp, &mut out, Duration::from_secs(5)).await;
            assert!(
                closed && out.is_empty(),
                "{:?}",
                String::from_utf8_lossy(&out)
            );
        }
    }
    // The idle connection was closed.
    let mut out = Vec::new();
    assert!(read_until_closed(&mut idle, &mut out, Duration::from_secs(5)).await);
    assert!(out.is_empty());

    let got = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "delayed 1500");
    assert_eq!(b.hits(), 2, "nothing new reached the target");
}

#[tokio::test]
async fn request_head_over_max_header_bytes_gets_431_and_never_reaches_the_target() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], "max_header_bytes = 16384", ""));
    // Just under the limit is served.
    let fits = format!(
        "GET /x HTTP/1.1\r\nHost: example.test\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(16_000)
    );
    let got = raw(sw.addr("web"), fits.as_bytes(), PATIENCE).await;
    assert!(
        got.text.starts_with("HTTP/1.1 200"),
        "{}",
        &got.text[..64.min(got.text.len())]
    );
    assert_eq!(b.hits(), 1);
    // 20 KB of head, well below hyper's own buffer limit, is refused by seawall's.
    let too_big = format!(
        "GET /x HTTP/1.1\r\nHost: example.test\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let got = raw(sw.addr("web"), too_big.as_bytes(), PATIENCE).await;
    assert!(got.text.starts_with("HTTP/1.1 431"), "{:?}", got.text);
    assert!(got.closed);
    assert_eq!(b.hits(), 1, "the refused head never reached the target");
}

#[tokio::test]
async fn too_many_headers_get_431_and_never_reach_the_target() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&[b.addr], "", ""));
    let head = |n: usize| {
        let mut h = String::from("GET /x HTTP/1.1\r\nHost: example.test\r\n");
        for i in 0..n {
            h.push_str(&format!("X-H{i}: 1\r\n"));
        }
        h + "\r\n"
    };
    // 90 and the Host line: served (the test target, hyper too, takes 100 with the four
    // headers seawall adds).
    let got = raw(
        sw.addr("web"),
        head(90).as_bytes(),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(status_of(&got.text), "200", "{}", got.text);
    assert_eq!(b.hits(), 1);
    // One over hyper's count of 100 (a 1 KB head, far below max_header_bytes), and 10 000 (a
    // flood far above it): both refused by seawall, the connection closed.
    for n in [100, 10_000] {
        let got = raw(sw.addr("web"), head(n).as_bytes(), PATIENCE).await;
        assert_eq!(status_of(&got.text), "431", "{n} headers: {}", got.text);
        assert!(got.closed, "{n} headers: the connection is closed");
    }
    assert_eq!(b.hits(), 1, "no refused head reached the target");
    // The process goes on serving.
    let got = raw(
        sw.addr("web"),
        head(1).as_bytes(),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(status_of(&got.text), "200", "{}", got.text);
}

#[tokio::test]
async fn request_line_over_16_kib_gets_414_and_never_reaches_the_target() {
    let b = Backend::start("b1").await;
    // The default max_header_bytes (64 KiB): the request line's own limit must come first.
    let sw = Seawall::start(&config(&[b.addr], "", ""));
    // A request line of `len` bytes: `GET /aaa... HTTP/1.1` is 13 bytes besides the path's.
    let request = |len: usize| {
        let path = format!("/{}", "a".repeat(len - 14));
        format!("GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
    };
    let got = raw(sw.addr("web"), request(16_384).as_bytes(), PATIENCE).await;
    assert!(
        got.text.starts_with("HTTP/1.1 200"),
        "{}",
        &got.text[..64.min(got.text.len())]
    );
    assert_eq!(b.hits(), 1, "a request line of exactly 16 KiB is forwarded");
    for len in [16_385, 20_000, 100 * 1024] {
        let got = raw(sw.addr("web"), request(len).as_bytes(), PATIENCE).await;
        assert!(
            got.text.starts_with("HTTP/1.1 414"),
            "{len}: {:?}",
            got.text
        );
        assert!(
            got.text.ends_with("414 URI Too Long\n"),
            "{len}: {:?}",
            got.text
        );
        assert!(got.closed, "{len}");
        assert_eq!(
            b.hits(),
            1,
            "{len}: the refused request never reached the target"
        );
    }
    // Over TLS too, and the process goes on serving.
    let mut tls = tls_connect(sw.addr("secure"), &Tls::new("localhost"))
        .await
        .unwrap();
    tls.write_all(request(20_000).as_bytes()).await.unwrap();
    let mut out = Vec::new();
    assert!(read_until_closed(&mut tls, &mut out, PATIENCE).await);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 414"), "{text:?}");
    assert_eq!(b.hits(), 1);
    assert_eq!(
        get(sw.addr("secure"), true, "localhost", "/x").await.status,
        200
    );
    assert_eq!(b.hits(), 2);
}

// ---------------------------------------------------------------------------------------------
// Request bodies that break off

/// A target that answers GETs at once (`200 ok`, kept alive) and reads POST bodies slowly without
/// ever answering them, so that a broken body is seen while the target still owes its answer.
struct SlowReader {
    addr: SocketAddr,
    /// POST heads received, and connections that carried one and have since closed.
    posts: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    /// GETs received (health checks not counted).
    gets: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowReader {
    async fn start() -> SlowReader {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters: [Arc<AtomicUsize>; 3] = Default::default();
        let [posts, closed, gets] = counters.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut tcp, _)) = listener.accept().await {
                let [posts, closed, gets] = counters.clone();
                conns.spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 1024];
                    let mut posted = false;
                    loop {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => data.extend_from_slice(&buf[..n]),
                        }
                        if posted {
                            continue;
                        }
                        while let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                            if head.starts_with("post ") {
                                posted = true;
                                posts.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            if !head.contains("elb-healthchecker") {
                                gets.fetch_add(1, Ordering::SeqCst);
                            }
                            data.drain(..end + 4);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if tcp.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    }
                    if posted {
                        closed.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        SlowReader {
            addr,
            posts,
            closed,
            gets,
            task,
        }
    }
}

impl Drop for SlowReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads `client` until seawall closes it, and checks that the answer was `status` and said so
/// (`Connection: close`).
async fn answered_and_closed<S: AsyncRead + Unpin>(client: &mut S, status: &str, name: &str) {
    let mut out = Vec::new();
    assert!(
        read_until_closed(client, &mut out, PATIENCE).await,
        "{name}: closed"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with(&format!("HTTP/1.1 {status}")),
        "{name}: {text:?}"
    );
    assert!(
        text.to_lowercase().contains("connection: close"),
        "{name}: {text:?}"
    );
}

/// How a request body breaks off after its head (and a first part of it) went to the target.
enum BreakOff {
    /// More bytes that do not fit the framing.
    Garbage(&'static [u8]),
    /// The client stops sending (closes its write side) before the body's end.
    HalfClose,
}

#[tokio::test]
async fn a_body_that_breaks_off_gets_400_and_its_target_connection_is_closed() {
    let t = SlowReader::start().await;
    let sw = Seawall::start(&config(&[t.addr], "", ""));
    const CHUNKED: &str =
        "POST /up HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    const SHORT: &str =
        "POST /up HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100\r\n\r\n0123456789";
    let cases = [
        (
            "bad chunk size",
            CHUNKED,
            BreakOff::Garbage(b"zz\r\n"),
            false,
        ),
        (
            "bad chunk size over TLS",
            CHUNKED,
            BreakOff::Garbage(b"zz\r\n"),
            true,
        ),
        ("chunked cut short", CHUNKED, BreakOff::HalfClose, false),
        (
            "shorter than Content-Length",
            SHORT,
            BreakOff::HalfClose,
            false,
        ),
        (
            "shorter than Content-Length over TLS",
            SHORT,
            BreakOff::HalfClose,
            true,
        ),
    ];
    let count = cases.len();
    for (i, (name, start, then, tls)) in cases.into_iter().enumerate() {
        let mut client: Box<dyn Io> = if tls {
            Box::new(
                tls_connect(sw.addr("secure"), &Tls::new("localhost"))
                    .await
                    .unwrap(),
            )
        } else {
            Box::new(TcpStream::connect(sw.addr("web")).await.unwrap())
        };
        client.write_all(start.as_bytes()).await.unwrap();
        // The head is forwarded before the body breaks off.
        assert!(
            eventually(PATIENCE, || async { t.posts.load(Ordering::SeqCst) > i }).await,
            "{name}: the head reached the target"
        );
        match then {
            BreakOff::Garbage(bytes) => client.write_all(bytes).await.unwrap(),
            BreakOff::HalfClose => client.shutdown().await.unwrap(),
        }
        answered_and_closed(&mut client, "400", name).await;
        // The target's connection, left in the middle of a request, is not kept for another.
        assert!(
            eventually(PATIENCE, || async { t.closed.load(Ordering::SeqCst) > i }).await,
            "{name}: the target connection was closed"
        );
    }
    let metrics = sw.metrics_text();
    let elb = |code| metric_value(&metrics, "seawall_elb_responses_total", &[("code", code)]);
    assert_eq!(elb("400"), count as f64, "{metrics}");
    assert_eq!(elb("502"), 0.0, "{metrics}");
    assert_eq!(
        metric_total(&metrics, "seawall_target_connection_errors_total"),
        0.0,
        "the target is not blamed: {metrics}"
    );
    let target = sw.member("app", t.addr).unwrap();
    assert_ne!(target.state(), seawall::targets::State::Unhealthy);
    // The process, and the target, go on serving.
    for _ in 0..2 {
        let got = get(sw.addr("web"), false, "example.test", "/x").await;
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "ok");
    }
    assert_eq!(t.gets.load(Ordering::SeqCst), 2);
}

/// A target that answers a POST as soon as its head is in (`200 ok`) and reads the body on,
/// throwing it away; counts the connections that carried a POST and have closed.
async fn early_answerer() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let counted = closed.clone();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            let closed = counted.clone();
            conns.spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let mut posted = false;
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                    if posted {
                        data.clear();
                        continue;
                    }
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                        posted = head.starts_with("post ");
                        data.drain(..end + 4);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if tcp.write_all(ok).await.is_err() {
                            break;
                        }
                    }
                }
                if posted {
                    closed.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, closed, task)
}

/// A client that stops sending its request body, as ALB treats it: after `idle_timeout` without
/// a byte of it, a target still waiting for the rest has the request abandoned and the client
/// gets `408` (so does one whose body is unfinished when the target's response timeout passes:
/// not the target's `504`), and a client whose answer came early has its connection closed
/// rather than held open for a body never finished.
#[tokio::test]
async fn a_request_body_the_client_stops_sending_gets_408_after_idle_timeout() {
    let slow = SlowReader::start().await;
    let (early, early_closed, early_task) = early_answerer().await;
    let cfg = ConfigBuilder::new()
        .runtime("workers = 1\nidle_timeout = \"1s\"")
        .self_signed("dev", &["localhost"])
        // The target's response timeout passes first, while the body waits on its client.
        .listener(Listener::http("web").forward("waits"))
        // A long response timeout: only the body's own idle bound can end the wait.
        .listener(Listener::http("patient").forward("waits_long"))
        .listener(Listener::https("secure", &["dev"]).forward("waits_long"))
        .listener(Listener::http("early").forward("answers"))
        .target_group(TargetGroup::new("waits", &[slow.addr]).line("response_timeout = \"500ms\""))
        .target_group(
            TargetGroup::new("waits_long", &[slow.addr]).line("response_timeout = \"30s\""),
        )
        .target_group(TargetGroup::new("answers", &[early]).line("response_timeout = \"30s\""))
        .build();
    let sw = Seawall::start(&cfg);
    const SHORT: &[u8] =
        b"POST /up HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100\r\n\r\n0123456789";

    let waits = [
        ("web", Duration::from_millis(400)),
        ("patient", Duration::from_millis(900)),
    ];
    for (i, (listener, not_before)) in waits.into_iter().enumerate() {
        let mut tcp = TcpStream::connect(sw.addr(listener)).await.unwrap();
        tcp.write_all(SHORT).await.unwrap();
        let started = Instant::now();
        // The client keeps its side open and sends nothing more.
        answered_and_closed(&mut tcp, "408", listener).await;
        assert!(
            started.elapsed() >= not_before,
            "{listener}: not before its timeout ({:?})",
            started.elapsed()
        );
        // The target's connection, left in the middle of a request, is not kept for another.
        assert!(
            eventually(PATIENCE, || async {
                slow.closed.load(Ordering::SeqCst) > i
            })
            .await,
            "{listener}: the target connection was closed"
        );
    }

    // HTTP/2: the stream whose body stops gets 408; the connection serves on.
    let tls = tls_connect(sw.addr("secure"), &Tls::new("localhost").h2())
        .await
        .unwrap();
    let mut c = h2(tls).await;
    let stalled = http_body_util::StreamBody::new(
        futures_util::stream::iter([Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
            bytes::Bytes::from_static(b"0123456789"),
        ))])
        .chain(futures_util::stream::pending()),
    );
    let req = Request::post("https://localhost/up")
        .header("content-length", "100")
        .body(http_body_util::BodyExt::boxed(stalled))
        .unwrap();
    let got = tokio::time::timeout(PATIENCE, async {
        read(c.send_request(req).await.unwrap()).await
    })
    .await
    .expect("an answer");
    assert_eq!(got.status, 408, "{}", got.text());
    let got = read(
        c.send_request(Request::get("https://localhost/x").body(empty()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());

    // The answer came before the body: it arrives, and the connection, its body never finished,
    // is closed after the idle timeout instead of waiting for the rest.
    let mut tcp = TcpStream::connect(sw.addr("early")).await.unwrap();
    tcp.write_all(SHORT).await.unwrap();
    let mut out = Vec::new();
    assert!(
        read_until_closed(&mut tcp, &mut out, PATIENCE).await,
        "closed, not held for the rest of the body"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(text.ends_with("ok"), "{text:?}");
    assert!(
        eventually(PATIENCE, || async {
            early_closed.load(Ordering::SeqCst) > 0
        })
        .await,
        "the target connection was closed"
    );
    early_task.abort();

    let metrics = sw.metrics_text();
    let elb = |code| metric_value(&metrics, "seawall_elb_responses_total", &[("code", code)]);
    assert_eq!(elb("408"), 3.0, "{metrics}");
    assert_eq!(elb("504"), 0.0, "the target is not blamed: {metrics}");
    assert_eq!(
        metric_total(&metrics, "seawall_target_connection_errors_total"),
        0.0,
        "{metrics}"
    );
}

/// A request body its client pauses while the target's answer streams is not stalled: the
/// exchange is not idle (a bidirectional stream whose client listens for a while), as ALB's idle
/// timeout counts data either way.
#[tokio::test]
async fn a_request_body_is_not_stalled_while_its_answer_streams() {
    const CHUNKS: usize = 10;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    // Answers a POST at once, streams a chunk every 200 ms, then reads the rest of the 100-byte
    // body and ends the answer.
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let end = loop {
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                };
                if !data.starts_with(b"POST") {
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    let _ = tcp.write_all(ok).await;
                    return;
                }
                let mut body = data.len() - end;
                let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                tcp.write_all(head).await.unwrap();
                for _ in 0..CHUNKS {
                    tcp.write_all(b"1\r\nx\r\n").await.unwrap();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                while body < 100 {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body += n,
                    }
                }
                tcp.write_all(b"0\r\n\r\n").await.unwrap();
            });
        }
    });
    let cfg = ConfigBuilder::new()
        .runtime("workers = 1\nidle_timeout = \"1s\"")
        .listener(Listener::http("web").forward("app"))
        .target_group(TargetGroup::new("app", &[target]))
        .build();
    let sw = Seawall::start(&cfg);
    let mut tcp = TcpStream::connect(sw.addr("web")).await.unwrap();
    tcp.write_all(
        b"POST /up HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    // Two seconds of answer (twice the idle timeout) while the client sends nothing.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.windows(3).filter(|w| w == b"\r\nx").count() < CHUNKS {
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
            .await
            .expect("the answer streams")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    tcp.write_all(&[b'y'; 90]).await.unwrap();
    let mut rest = Vec::new();
    read_until_closed(&mut tcp, &mut rest, Duration::from_secs(3)).await;
    out.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(
        text.ends_with("0\r\n\r\n"),
        "the answer ended whole: {text:?}"
    );
    task.abort();
}

#[tokio::test]
async fn request_bodies_over_max_body_bytes_get_413_whether_declared_or_streamed() {
    let b = Backend::start("b1").await;
    let cfg = ConfigBuilder::new()
        .runtime("workers = 1")
        .self_signed("dev", &["localhost"])
        .listener(
            Listener::http("web")
                .line("max_body_bytes = 1000")
                .forward("app"),
        )
        .listener(
            Listener::https("secure", &["dev"])
                .line("max_body_bytes = 1000")
                .forward("app"),
        )
        .listener(Listener::http("open").forward("app"))
        .target_group(TargetGroup::new("app", &[b.addr]))
        .build();
    let sw = Seawall::start(&cfg);
    let post = |len: usize| {
        format!(
            "POST /up HTTP/1.1\r\nHost: example.test\r\nContent-Length: {len}\r\n\r\n{}",
            "x".repeat(len)
        )
    };

    // At the limit: forwarded.
    let got = raw(
        sw.addr("web"),
        post(1000).as_bytes(),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(status_of(&got.text), "200", "{}", got.text);
    assert_eq!(b.hits(), 1);

    // One byte over, declared: answered before any target is asked, and the connection, whose
    // body is left unread, closed.
    let got = raw(sw.addr("web"), post(1001).as_bytes(), PATIENCE).await;
    assert_eq!(status_of(&got.text), "413", "{}", got.text);
    assert!(
        got.text.to_lowercase().contains("connection: close"),
        "{}",
        got.text
    );
    assert!(got.closed);
    assert_eq!(b.hits(), 1, "the target never saw it");

    // Chunked, so only counting finds it: the target got the head, never a whole request.
    let chunk = format!("200\r\n{}\r\n", "y".repeat(512));
    let chunked = format!(
        "POST /up HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(3)
    );
    let got = raw(sw.addr("web"), chunked.as_bytes(), PATIENCE).await;
    assert_eq!(status_of(&got.text), "413", "{}", got.text);
    assert!(got.closed);

    // HTTP/2, a body of unknown length: the stream gets 413, the connection goes on.
    let tls = tls_connect(sw.addr("secure"), &Tls::new("localhost").h2())
        .await
        .unwrap();
    let mut c = h2(tls).await;
    let big = Request::post("https://localhost/up")
        .body(pattern_body(200_000))
        .unwrap();
    let got = read(c.send_request(big).await.unwrap()).await;
    assert_eq!(got.status, 413, "{}", got.text());
    let small = Request::post("https://localhost/up")
        .body(pattern_body(900))
        .unwrap();
    let got = read(c.send_request(small).await.unwrap()).await;
    assert_eq!(got.status, 200, "{}", got.text());

    // A listener without the setting takes any size.
    let got = raw(
        sw.addr("open"),
        post(5000).as_bytes(),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(status_of(&got.text), "200", "{}", got.text);

    let metrics = sw.metrics_text();
    let elb = |code| metric_value(&metrics, "seawall_elb_responses_total", &[("code", code)]);
    assert_eq!(elb("413"), 3.0, "{metrics}");
    assert_eq!(
        metric_total(&metrics, "seawall_target_connection_errors_total"),
        0.0,
        "the target is not blamed: {metrics}"
    );
}

/// A request body seawall does not forward, because it answers itself (a fixed response, a
/// redirect, a 503, a 464, a 413), is read and thrown away: unread, it would be in the socket when the
/// connection closes, and the reset that earns would throw away the answer on the client's side
/// (or, on a kept-alive connection, the connection itself).
#[tokio::test]
async fn bodies_seawall_answers_without_forwarding_are_read_so_the_answer_arrives() {
    let cfg = ConfigBuilder::new()
        .runtime("workers = 1")
        .listener(
            Listener::http("web")
                .line("max_body_bytes = 100000")
                .rule(1, &path("/fixed"), &fixed("fixed"))
                .rule(
                    2,
                    &path("/moved"),
                    r#"{ redirect = { path = "/elsewhere", status = 302 } }"#,
                )
                // A target that is never reached: 413 is answered before any is asked.
                .rule(3, &path("/big"), &forward("unreached"))
                .rule(
                    4,
                    &path("/off"),
                    r#"{ forward = { groups = [{ name = "unreached", weight = 0 }] } }"#,
                )
                .forward("empty"),
        )
        .target_group(TargetGroup::new("empty", &[]))
        .target_group(TargetGroup::new("unreached", &[dead_port()]))
        .build();
    let sw = Seawall::start(&cfg);
    let addr = sw.addr("web");
    let head = |path: &str, len: usize, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: example.test\r\nContent-Length: {len}\r\n{extra}\r\n"
        )
    };
    const GET: &[u8] = b"GET /fixed HTTP/1.1\r\nHost: example.test\r\n\r\n";
    let body = vec![b'x'; 60_000];

    // The answer comes before the body is sent; the body follows, and the connection takes the
    // next request. Had the body been left unread, the connection would have ended after the
    // answer.
    let grpc = "Content-Type: application/grpc\r\n";
    for (path, status, extra) in [
        ("/fixed", "200", ""),
        ("/moved", "302", ""),
        ("/app", "503", ""),
        // Every weight 0: 503 before a group is chosen.
        ("/off", "503", ""),
        // gRPC to an HTTP/1 group: ALB's 464, in gRPC's form (200 and a grpc-status).
        ("/big", "200", grpc),
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(head(path, body.len(), extra).as_bytes())
            .await
            .unwrap();
        let (got, _) = read_response(&mut tcp).await;
        assert_eq!(status_of(&got), status, "{got}");
        tcp.write_all(&body).await.unwrap();
        tcp.write_all(GET).await.unwrap();
        let (got, text) = read_response(&mut tcp).await;
        assert_eq!(status_of(&got), "200", "{path}: {got}");
        assert_eq!(text, "fixed");
    }

    // Most clients send the whole request before they read; a body larger than the socket's
    // buffers goes only as fast as seawall reads it.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let big = vec![b'x'; 8 << 20];
    let mut request = head("/fixed", big.len(), "").into_bytes();
    request.extend_from_slice(&big);
    request.extend_from_slice(GET);
    tcp.write_all(&request).await.unwrap();
    for (got, text) in read_responses(&mut tcp, 2).await {
        assert_eq!(status_of(&got), "200", "{got}");
        assert_eq!(text, "fixed");
    }

    // 413 closes the connection, but only once the body is in, so that the close is not a
    // reset: it is still open after the answer, until the body's last byte.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head("/big", 200_000, "").as_bytes())
        .await
        .unwrap();
    let (got, _) = read_response(&mut tcp).await;
    assert_eq!(status_of(&got), "413", "{got}");
    assert!(got.to_lowercase().contains("connection: close"), "{got}");
    let mut out = Vec::new();
    assert!(
        !read_until_closed(&mut tcp, &mut out, Duration::from_millis(300)).await,
        "closed with the body unread"
    );
    tcp.write_all(&vec![b'x'; 200_000]).await.unwrap();
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(PATIENCE, tcp.read(&mut rest))
        .await
        .expect("closed in time")
        .expect("closed, not reset");
    assert_eq!(n, 0, "nothing after the answer");

    // A client that waits for `100 Continue` gets the answer instead, and no 100 after it: it
    // never sends its body, which is not waited for.
    let got = raw(
        addr,
        head("/fixed", 5000, "Expect: 100-continue\r\n").as_bytes(),
        PATIENCE,
    )
    .await;
    assert!(got.text.starts_with("HTTP/1.1 200 "), "{}", got.text);
    assert!(!got.text.contains("100 Continue"), "{}", got.text);
    assert!(got.closed);

    // A client that stops part way through its body is not waited for without end.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head("/fixed", 100_000, "").as_bytes())
        .await
        .unwrap();
    tcp.write_all(b"only this much").await.unwrap();
    let (got, _) = read_response(&mut tcp).await;
    assert_eq!(status_of(&got), "200", "{got}");
    let mut out = Vec::new();
    assert!(read_until_closed(&mut tcp, &mut out, PATIENCE).await);
}

/// A client connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
