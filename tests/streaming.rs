//! Bodies and upgraded connections stream through seawall intact: 10 MiB both ways over HTTP/1.1
//! and HTTP/2, uploads with and without a length, WebSocket echo over http and https listeners, and
//! a download whose first bytes reach the client while the target is still sending.
mod common;
use common::*;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

const TEN_MIB: usize = 10 * 1024 * 1024;

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

fn config(backend: &Backend) -> String {
    ConfigBuilder::new()
        .runtime("drain_timeout = \"1s\"")
        .self_signed("dev", &["localhost"])
        .listener(Listener::https("https", &["dev"]).forward("app"))
        .listener(Listener::http("http").forward("app"))
        .target_group(TargetGroup::new("app", &[backend.addr]))
        .build()
}

/// One client connection to the https listener, HTTP/1.1 or HTTP/2 as ALPN chose.
enum Client {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

impl Client {
    async fn connect(sw: &Seawall, http2: bool) -> Client {
        let opts = if http2 {
            Tls::new("localhost").h2()
        } else {
            Tls::new("localhost")
        };
        let tls = tls_connect(sw.addr("https"), &opts).await.unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        if http2 {
            assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
            Client::H2(h2(tls).await)
        } else {
            assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
            Client::H1(h1(tls).await)
        }
    }

    /// A request to `path` (origin form on HTTP/1.1 with a Host header, absolute on HTTP/2).
    fn request(&self, method: &str, path: &str) -> http::request::Builder {
        match self {
            Client::H1(_) => Request::builder()
                .method(method)
                .uri(path)
                .header("host", "localhost"),
            Client::H2(_) => Request::builder()
                .method(method)
                .uri(format!("https://localhost{path}")),
        }
    }

    async fn send(&mut self, req: Request<Body>) -> Response<Incoming> {
        let sent = match self {
            Client::H1(c) => tokio::time::timeout(PATIENCE, c.send_request(req)).await,
            Client::H2(c) => tokio::time::timeout(PATIENCE, c.send_request(req)).await,
        };
        sent.expect("response head in time").expect("response")
    }
}

async fn download_is_intact(http2: bool) {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&b));
    let mut c = Client::connect(&sw, http2).await;
    let req = c
        .request("GET", &format!("/download?bytes={TEN_MIB}"))
        .body(empty())
        .unwrap();
    let resp = c.send(req).await;
    assert_eq!(resp.status(), 200);
    let got = tokio::time::timeout(PATIENCE, read(resp)).await.unwrap();
    assert_eq!(got.body.len(), TEN_MIB);
    assert_eq!(sha256_hex(&got.body), pattern_sha256(TEN_MIB));
    assert_eq!(b.hits(), 1);
}

/// `with_length`: a whole body with Content-Length; else a stream of unknown length (chunked on
/// HTTP/1.1, DATA frames without content-length on HTTP/2).
async fn upload_is_intact(http2: bool, with_length: bool) {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&b));
    let mut c = Client::connect(&sw, http2).await;
    let mut req = c.request("POST", "/upload");
    let body = if with_length {
        req = req.header("content-length", TEN_MIB.to_string());
        let data: Vec<u8> = (0..TEN_MIB).map(|i| (i % 251) as u8).collect();
        common::body(data)
    } else {
        pattern_body(TEN_MIB)
    };
    assert_eq!(
        http_body::Body::size_hint(&body).exact().is_some(),
        with_length,
        "the client body has the framing the test names"
    );
    let resp = c.send(req.body(body).unwrap()).await;
    let got = tokio::time::timeout(PATIENCE, read(resp)).await.unwrap();
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), format!("{} {TEN_MIB}", pattern_sha256(TEN_MIB)));
}

#[tokio::test]
async fn download_10mib_over_https_http1_is_intact() {
    download_is_intact(false).await;
}

#[tokio::test]
async fn download_10mib_over_http2_is_intact() {
    download_is_intact(true).await;
}

#[tokio::test]
async fn chunked_upload_10mib_over_https_http1_is_intact() {
    upload_is_intact(false, false).await;
}

#[tokio::test]
async fn content_length_upload_10mib_over_https_http1_is_intact() {
    upload_is_intact(false, true).await;
}

#[tokio::test]
async fn streamed_upload_10mib_over_http2_is_intact() {
    upload_is_intact(true, false).await;
}

#[tokio::test]
async fn content_length_upload_10mib_over_http2_is_intact() {
    upload_is_intact(true, true).await;
}

#[tokio::test]
async fn several_requests_share_one_http2_connection() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&b));
    let mut c = Client::connect(&sw, true).await;
    let Client::H2(send) = &mut c else {
        unreachable!()
    };
    // Concurrent streams on the one connection, each with its own body.
    let mut tasks = Vec::new();
    for i in 1..=8usize {
        let mut send = send.clone();
        tasks.push(tokio::spawn(async move {
            let n = i * 100_000;
            let req = Request::get(format!("https://localhost/download?bytes={n}"))
                .body(empty())
                .unwrap();
            let got = read(send.send_request(req).await.unwrap()).await;
            assert_eq!(got.status, 200);
            assert_eq!(sha256_hex(&got.body), pattern_sha256(n), "stream {i}");
        }));
    }
    for t in tasks {
        tokio::time::timeout(PATIENCE, t).await.unwrap().unwrap();
    }
    assert_eq!(sw.metric("seawall_new_connections_total"), 1.0);
}

/// Talks to the WebSocket echo target through `stream`: text and binary messages come back as
/// sent, and a close is answered with a close.
async fn websocket_echo<S>(stream: S, url: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut ws, resp) =
        tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(url, stream))
            .await
            .unwrap()
            .expect("WebSocket handshake through seawall");
    assert_eq!(resp.status(), 101);
    let messages = vec![
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255, 254]),
        Message::text("ünïcödé ✓"),
        Message::binary((0..200_000).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
        Message::text(""),
    ];
    for m in &messages {
        ws.send(m.clone()).await.unwrap();
        let echoed = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("echo in time")
            .expect("connection open")
            .expect("a message");
        assert_eq!(&echoed, m);
    }
    // Several messages in flight at once come back in order.
    for i in 0..20 {
        ws.feed(Message::text(format!("burst {i}"))).await.unwrap();
    }
    ws.flush().await.unwrap();
    for i in 0..20 {
        let echoed = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text(format!("burst {i}")));
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let reply = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("close answered in time");
    match reply {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the target's close frame, got {other:?}"),
    }
    // After the closing handshake the stream ends.
    let end = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert!(
        !matches!(end, Some(Ok(_))),
        "no message after close: {end:?}"
    );
}

#[tokio::test]
async fn websocket_echoes_through_an_http_listener() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&b));
    let tcp = TcpStream::connect(sw.addr("http")).await.unwrap();
    websocket_echo(tcp, "ws://localhost/ws").await;
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn websocket_echoes_through_an_https_listener() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&b));
    let tls = tls_connect(sw.addr("https"), &Tls::new("localhost"))
        .await
        .unwrap();
    websocket_echo(tls, "wss://localhost/ws").await;
    assert_eq!(b.hits(), 1);
}

/// Reads body frames until `n` bytes have arrived (or the body ends).
async fn read_at_least(body: &mut Incoming, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        match body.frame().await {
            Some(frame) => {
                if let Ok(data) = frame.unwrap().into_data() {
                    got.extend_from_slice(&data);
                }
            }
            None => break,
        }
    }
    got
}

/// The target sends the first half of its body and then waits for the test to open a gate: the
/// client must get that first half while the target is waiting, or seawall is buffering.
async fn download_streams_before_the_target_is_done(http2: bool, gate: &str) {
    const HALF: usize = 100_000;
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&b));
    let mut c = Client::connect(&sw, http2).await;
    let req = c
        .request("GET", &format!("/gated?bytes={HALF}&gate={gate}"))
        .body(empty())
        .unwrap();
    let mut body = c.send(req).await.into_body();
    let first = tokio::time::timeout(PATIENCE, read_at_least(&mut body, HALF))
        .await
        .expect("the first half arrives while the target still holds the second");
    assert_eq!(first.len(), HALF, "exactly the first half so far");
    open_gate(gate);
    let rest = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    let mut all = first;
    all.extend_from_slice(&rest);
    assert_eq!(all.len(), 2 * HALF);
    assert_eq!(sha256_hex(&all), pattern_sha256(2 * HALF));
}

#[tokio::test]
async fn http1_download_streams_before_the_target_is_done() {
    download_streams_before_the_target_is_done(false, "streaming-h1").await;
}

#[tokio::test]
async fn http2_download_streams_before_the_target_is_done() {
    download_streams_before_the_target_is_done(true, "streaming-h2").await;
}

/// The request body streams too: the request reaches the target while the client is still holding
/// back the rest of its body (a buffering proxy would wait for the whole body).
#[tokio::test]
async fn upload_is_forwarded_before_the_client_is_done() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&b));
    let mut c = Client::connect(&sw, false).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let d = rx.recv().await?;
        Some((
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(d)),
            rx,
        ))
    });
    let body = BodyExt::boxed(http_body_util::StreamBody::new(frames));
    let req = c.request("POST", "/upload").body(body).unwrap();
    let pending = tokio::spawn(async move { read(c.send(req).await).await });
    tx.send(Bytes::from_static(b"first part ")).await.unwrap();
    // The target only counts a hit once the request head has been forwarded, which seawall
    // does before the body is complete.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while b.hits() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request reached the target before its body was complete"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pending.is_finished());
    tx.send(Bytes::from_static(b"second part")).await.unwrap();
    drop(tx);
    let got = tokio::time::timeout(PATIENCE, pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.text(),
        format!("{} 22", sha256_hex(b"first part second part"))
    );
}

/// The bytes after a 101 are WebSocket frames, not request heads: neither header_timeout nor
/// max_header_bytes may touch them.
#[tokio::test]
async fn websocket_outlives_header_timeout_and_max_header_bytes() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&config(&b).replace(
        "[runtime]\n",
        "[runtime]\nheader_timeout = \"300ms\"\nmax_header_bytes = 8192\n",
    ));
    let tcp = TcpStream::connect(sw.addr("http")).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://localhost/ws", tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    // A message, a pause longer than header_timeout, then a message larger than max_header_bytes.
    ws.send(Message::text("first")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let big = Message::binary(vec![7u8; 50_000]);
    ws.send(big.clone()).await.unwrap();
    let mut echoed = Vec::new();
    for _ in 0..2 {
        echoed.push(
            tokio::time::timeout(PATIENCE, ws.next())
                .await
                .expect("echo in time")
                .expect("open")
                .expect("a message"),
        );
    }
    assert_eq!(echoed, [Message::text("first"), big]);
}
