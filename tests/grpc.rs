//! Target protocol versions as ALB has them: `http2` groups carry HTTP/1.1 and HTTP/2 clients to
//! HTTP/2 targets (prior-knowledge h2c, or TLS with ALPN h2) with bodies streaming both ways;
//! `grpc` groups carry unary, server-streaming and bidirectional gRPC calls with their trailers;
//! failures reach gRPC clients as gRPC statuses; and what a protocol version cannot carry
//! (WebSocket to HTTP/2, HTTP/1.1 or GET to gRPC, gRPC to HTTP/1) is refused with ALB's 464.
//!
//! The gRPC client and most of the gRPC target are tonic, with messages derived by hand (no
//! protoc); one target method writes gRPC's wire format itself, to send custom trailers that
//! tonic's server has no API for.
mod common;
use common::*;

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tonic::codec::Streaming;
use tonic::metadata::MetadataMap;
use tonic::server::{ServerStreamingService, StreamingService, UnaryService};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("finished in time")
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 targets

type TargetBody = tonic::body::Body;
/// What an HTTP/2 [`Target`] answers with.
type Handler = Box<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<TargetBody>> + Send>>
        + Send
        + Sync,
>;

/// Plain HTTP on HTTP/2, by the path's last segment:
/// - `upload`: answers `<sha256 hex> <length>` of the request body;
/// - `download?bytes=N`: N pattern bytes, streamed;
/// - `echo`: streams the request body back as it arrives;
/// - anything else: `ok`.
fn http_target() -> Handler {
    Box::new(|req: Request<Incoming>| {
        Box::pin(async move {
            let last = req
                .uri()
                .path()
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            match last.as_str() {
                "upload" => {
                    let data = req.into_body().collect().await.unwrap().to_bytes();
                    let text = format!("{} {}", sha256_hex(&data), data.len());
                    Response::new(TargetBody::new(body(text)))
                }
                "download" => Response::new(TargetBody::new(pattern_body(bytes_asked(&req)))),
                "echo" => Response::new(TargetBody::new(req.into_body())),
                "big-head" => {
                    // One header of `bytes=` bytes.
                    let mut resp = Response::new(TargetBody::new(body("ok")));
                    resp.headers_mut()
                        .insert("x-big", "b".repeat(bytes_asked(&req)).parse().unwrap());
                    resp
                }
                _ => {
                    let _ = req.into_body().collect().await;
                    Response::new(TargetBody::new(body("ok")))
                }
            }
        })
    })
}

// ---------------------------------------------------------------------------------------------
// gRPC: messages, the target's methods, the client

/// The one message type of the test service (`message Msg { string text = 1; uint32 n = 2; }`).
#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    n: u32,
}

fn msg(text: &str, n: u32) -> Msg {
    Msg {
        text: text.to_string(),
        n,
    }
}

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// `Unary`: answers `echo: <text>` and `n + 1`, and returns the request's `x-request-meta` as
/// `x-echo-meta`. The text `missing` gets NOT_FOUND with a message and metadata, which tonic
/// sends in gRPC's trailers-only form (the status in the response head).
struct EchoUnary;

impl UnaryService<Msg> for EchoUnary {
    type Response = Msg;
    type Future = Ready<Result<tonic::Response<Msg>, Status>>;

    fn call(&mut self, req: tonic::Request<Msg>) -> Self::Future {
        let meta = req.metadata().get("x-request-meta").cloned();
        let m = req.into_inner();
        if m.text == "missing" {
            let mut md = MetadataMap::new();
            md.insert("x-error-detail", "looked everywhere".parse().unwrap());
            return ready(Err(Status::with_metadata(
                Code::NotFound,
                "no such key: missing ✓",
                md,
            )));
        }
        let mut resp = tonic::Response::new(msg(&format!("echo: {}", m.text), m.n + 1));
        if let Some(meta) = meta {
            resp.metadata_mut().insert("x-echo-meta", meta);
        }
        ready(Ok(resp))
    }
}

/// `Count`: streams `item 0` .. `item n-1`, holding `item 1` back until the test opens `gate`,
/// so the test can see `item 0` arrive while the call is still going. The text `then-fail` ends
/// the stream with NOT_FOUND and metadata, in the trailers after the messages.
struct Count {
    gate: Arc<Notify>,
}

impl ServerStreamingService<Msg> for Count {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = Ready<Result<tonic::Response<MsgStream>, Status>>;

    fn call(&mut self, req: tonic::Request<Msg>) -> Self::Future {
        let m = req.into_inner();
        let (n, fail) = (m.n, m.text == "then-fail");
        let gate = self.gate.clone();
        let items = futures_util::stream::unfold(0u32, move |i| {
            let gate = gate.clone();
            async move {
                if i > n || (i == n && !fail) {
                    return None;
                }
                if i == n {
                    let mut md = MetadataMap::new();
                    md.insert("x-error-detail", format!("after {n}").parse().unwrap());
                    let end = Status::with_metadata(Code::NotFound, "ran out of items", md);
                    return Some((Err(end), i + 1));
                }
                if i == 1 {
                    gate.notified().await;
                }
                Some((Ok(msg(&format!("item {i}"), i)), i + 1))
            }
        });
        ready(Ok(tonic::Response::new(Box::pin(items))))
    }
}

/// `Chat`: answers each message as it comes, until the client ends its stream.
struct Chat;

impl StreamingService<Msg> for Chat {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = Ready<Result<tonic::Response<MsgStream>, Status>>;

    fn call(&mut self, req: tonic::Request<Streaming<Msg>>) -> Self::Future {
        let replies = req
            .into_inner()
            .map(|m| m.map(|m| msg(&format!("echo: {}", m.text), m.n)));
        ready(Ok(tonic::Response::new(Box::pin(replies))))
    }
}

/// A gRPC message as it goes on the wire: uncompressed flag, big-endian length, protobuf.
fn grpc_frame(m: &Msg) -> Bytes {
    let encoded = prost::Message::encode_to_vec(m);
    let mut buf = BytesMut::with_capacity(5 + encoded.len());
    buf.put_u8(0);
    buf.put_u32(encoded.len() as u32);
    buf.put_slice(&encoded);
    buf.freeze()
}

/// `Trailers`, written by hand: two messages, then trailers with OK and custom metadata, text
/// and binary (`-bin` values are unpadded base64, as gRPC sends them).
fn trailers_method() -> Response<TargetBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    trailers.insert("x-trailer-text", "kept".parse().unwrap());
    trailers.insert("x-trailer-bin", "AAEC/w".parse().unwrap());
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(grpc_frame(&msg("one", 1)))),
        Ok(Frame::data(grpc_frame(&msg("two", 2)))),
        Ok(Frame::trailers(trailers)),
    ];
    Response::builder()
        .header("content-type", "application/grpc")
        .body(TargetBody::new(StreamBody::new(
            futures_util::stream::iter(frames),
        )))
        .unwrap()
}

/// The gRPC target: methods by the path's last segment, whatever the service name (the test
/// routes by service name), `Hang` never answers, and anything else is UNIMPLEMENTED.
fn grpc_target(gate: Arc<Notify>) -> Handler {
    Box::new(move |req: Request<Incoming>| {
        let gate = gate.clone();
        Box::pin(async move {
            let method = req
                .uri()
                .path()
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            let codec = || ProstCodec::<Msg, Msg>::default();
            match method.as_str() {
                "Unary" => {
                    tonic::server::Grpc::new(codec())
                        .unary(EchoUnary, req)
                        .await
                }
                "Count" => {
                    tonic::server::Grpc::new(codec())
                        .server_streaming(Count { gate }, req)
                        .await
                }
                "Chat" => tonic::server::Grpc::new(codec()).streaming(Chat, req).await,
                "Trailers" => trailers_method(),
                "Hang" => std::future::pending().await,
                _ => Status::unimplemented(method).into_http(),
            }
        })
    })
}

/// A tonic channel: one HTTP/2 connection to seawall.
#[derive(Clone)]
struct Channel(hyper::client::conn::http2::SendRequest<TargetBody>);

impl tower_service::Service<Request<TargetBody>> for Channel {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<TargetBody>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

type GrpcClient = tonic::client::Grpc<Channel>;

/// A gRPC client of seawall's https listener, over TLS with ALPN h2, for `host`.
async fn grpc_client(addr: SocketAddr, host: &str) -> GrpcClient {
    let tls = within(tls_connect(addr, &Tls::new(host).h2()))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let origin = format!("https://{host}").parse().unwrap();
    tonic::client::Grpc::with_origin(Channel(send), origin)
}

async fn unary(
    client: &mut GrpcClient,
    path: &'static str,
    req: tonic::Request<Msg>,
) -> Result<tonic::Response<Msg>, Status> {
    within(client.ready()).await.unwrap();
    within(client.unary(req, PathAndQuery::from_static(path), ProstCodec::default())).await
}

async fn server_streaming(client: &mut GrpcClient, path: &'static str, m: Msg) -> Streaming<Msg> {
    within(client.ready()).await.unwrap();
    within(client.server_streaming(
        tonic::Request::new(m),
        PathAndQuery::from_static(path),
        ProstCodec::default(),
    ))
    .await
    .unwrap()
    .into_inner()
}

async fn next(stream: &mut Streaming<Msg>) -> Option<Result<Msg, Status>> {
    within(stream.next()).await
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 target groups

const APP: &str = "app.example.test";

/// An https and an http listener, each forwarding `/h2c/*` to an h2c target, `/h2tls/*` to a TLS
/// target with ALPN h2 (both `protocol_version = "http2"`), and everything else to an HTTP/1.1
/// target.
fn http2_config(web: &Backend, h2c: &Target, h2tls: &Target) -> String {
    let rules = |l: Listener| {
        l.rule(10, &path("/h2c/*"), &forward("h2c"))
            .rule(20, &path("/h2tls/*"), &forward("h2tls"))
    };
    // One worker: each worker makes an HTTP/2 connection of its own to a target, and the
    // multiplexing test below counts one for requests that came on several client connections.
    ConfigBuilder::new()
        .runtime("drain_timeout = \"1s\"\nworkers = 1")
        .self_signed("dev", &[APP])
        .listener(rules(Listener::https("https", &["dev"]).forward("web")))
        .listener(rules(Listener::http("http").forward("web")))
        .target_group(TargetGroup::new("web", &[web.addr]))
        .target_group(
            TargetGroup::new("h2c", &[h2c.addr])
                .line("protocol = \"http\"\nprotocol_version = \"http2\""),
        )
        .target_group(
            TargetGroup::new("h2tls", &[h2tls.addr])
                .line("protocol = \"https\"\nprotocol_version = \"http2\""),
        )
        .build()
}

struct Http2Setup {
    sw: Seawall,
    /// The HTTP/1.1 target of the default group, kept alive with the setup.
    _web: Backend,
    h2c: Target,
    h2tls: Target,
}

async fn http2_setup() -> Http2Setup {
    let web = Backend::start("web").await;
    let h2c = Target::start(Serves::H2c, http_target()).await;
    let h2tls = Target::start(Serves::H2Tls, http_target()).await;
    let sw = Seawall::start(&http2_config(&web, &h2c, &h2tls));
    Http2Setup {
        sw,
        _web: web,
        h2c,
        h2tls,
    }
}

/// How a test client reaches seawall.
#[derive(Debug, Clone, Copy)]
enum Via {
    H1Plain,
    H1Tls,
    H2Tls,
}

const ALL_VIA: [Via; 3] = [Via::H1Plain, Via::H1Tls, Via::H2Tls];

impl Via {
    fn proto(self) -> &'static str {
        match self {
            Via::H1Plain => "http",
            Via::H1Tls | Via::H2Tls => "https",
        }
    }
}

/// Sends `req` (origin-form path; the host is added as HTTP/1.1's Host or HTTP/2's :authority)
/// over a fresh connection and returns the response head with its body unread.
async fn send(sw: &Seawall, via: Via, req: Request<Body>) -> Response<Incoming> {
    let (mut parts, b) = req.into_parts();
    match via {
        Via::H1Plain | Via::H1Tls => {
            parts.headers.insert("host", APP.parse().unwrap());
            let req = Request::from_parts(parts, b);
            let mut c = if matches!(via, Via::H1Plain) {
                h1(TcpStream::connect(sw.addr("http")).await.unwrap()).await
            } else {
                h1(within(tls_connect(sw.addr("https"), &Tls::new(APP)))
                    .await
                    .unwrap())
                .await
            };
            within(c.send_request(req)).await.unwrap()
        }
        Via::H2Tls => {
            parts.uri = format!("https://{APP}{}", parts.uri).parse().unwrap();
            let req = Request::from_parts(parts, b);
            let tls = within(tls_connect(sw.addr("https"), &Tls::new(APP).h2()))
                .await
                .unwrap();
            let mut c = h2(tls).await;
            within(c.send_request(req)).await.unwrap()
        }
    }
}

async fn send_read(sw: &Seawall, via: Via, req: Request<Body>) -> Got {
    within(read(send(sw, via, req).await)).await
}

#[tokio::test]
async fn http2_groups_send_http2_with_the_clients_host_to_h2c_and_tls_targets() {
    let s = http2_setup().await;
    for (prefix, target) in [("h2c", &s.h2c), ("h2tls", &s.h2tls)] {
        for (i, via) in ALL_VIA.into_iter().enumerate() {
            let path = format!("/{prefix}/hello?via={i}&q=a%20b");
            let mut req = Request::get(&path).header("x-custom", "kept");
            if !matches!(via, Via::H2Tls) {
                // Hop-by-hop headers of the client's connection; illegal in HTTP/2.
                req = req
                    .header("connection", "keep-alive, x-hop")
                    .header("keep-alive", "timeout=5")
                    .header("x-hop", "1");
            }
            let got = send_read(&s.sw, via, req.body(empty()).unwrap()).await;
            assert_eq!(
                got.status,
                StatusCode::OK,
                "{prefix} {via:?}: {}",
                got.text()
            );
            assert_eq!(got.text(), "ok");

            let seen = target.seen_once(&path);
            let what = format!("{prefix} via {via:?}: {seen:?}");
            assert_eq!(seen.version, Version::HTTP_2, "{what}");
            assert_eq!(seen.method, Method::GET, "{what}");
            // ALB preserves the client's host: HTTP/2 carries it as `:authority`, with no Host
            // beside it (which nginx 1.22 refuses as a duplicate).
            assert_eq!(seen.authority.as_deref(), Some(APP), "{what}");
            assert_eq!(seen.header("host"), None, "{what}");
            assert_eq!(seen.header("x-custom"), Some("kept"), "{what}");
            assert_eq!(
                seen.header("x-forwarded-proto"),
                Some(via.proto()),
                "{what}"
            );
            assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "{what}");
            for hop in ["connection", "keep-alive", "x-hop", "upgrade", "te"] {
                assert_eq!(seen.header(hop), None, "{hop} forwarded: {what}");
            }
            if prefix == "h2tls" {
                assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]), "{what}");
            }
        }
    }
}

/// A GET whose connect to a dead HTTP/2 target was refused goes to the live one with the
/// client's host as `:authority`, and still no Host: the request handed back unsent keeps the
/// client's Host for the next attempt to build its `:authority` from, and the pool takes it out
/// as the request goes. Both targets pass their checks, which go to a third port.
#[tokio::test]
async fn an_http2_request_moved_off_a_refused_target_keeps_the_clients_host() {
    let probe = |req: Request<Incoming>| async move {
        let _ = req;
        Response::new(body("ok"))
    };
    let checks = Target::start(Serves::H2c, probe).await;
    let live = Target::start(Serves::H2c, probe).await;
    let dead = dead_port();
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .runtime("workers = 1")
            .listener(Listener::http("http").forward("h2c"))
            .target_group(
                TargetGroup::new("h2c", &[dead, live.addr])
                    .line("protocol = \"http\"\nprotocol_version = \"http2\"")
                    .line(&format!(
                        "health_check = {{ port = {} }}",
                        checks.addr.port()
                    )),
            )
            .build(),
    );
    sw.wait_healthy("h2c").await;
    let dead_target = sw.member("h2c", dead).unwrap();
    let mut gets = 0;
    while dead_target.passive_failures() == 0 {
        assert!(gets < 20, "the dead target was never picked");
        let got = get(sw.addr("http"), false, APP, &format!("/moved/{gets}")).await;
        assert_eq!(got.status, StatusCode::OK, "GET {gets}: {}", got.text());
        gets += 1;
    }
    for i in 0..gets {
        let seen = live.seen_once(&format!("/moved/{i}"));
        assert_eq!(seen.authority.as_deref(), Some(APP), "GET {i}: {seen:?}");
        assert_eq!(seen.header("host"), None, "GET {i}: {seen:?}");
    }
}

/// A target that holds HTTP/2 requests to RFC 9113 (8.3.1: Host, when present, is the same as
/// `:authority`) takes seawall's: seawall behind seawall, whose server refuses a request whose
/// Host differs from `:authority` with 400. Before, the target's address went as `:authority`
/// beside the client's Host, and every request through an `http2` group to such a target got 400.
#[tokio::test]
async fn an_http2_target_that_checks_host_against_authority_takes_seawalls_requests() {
    let behind = Seawall::start(
        &ConfigBuilder::new()
            .listener(Listener::http("http").default_action(&fixed("behind")))
            .build(),
    );
    let front = Seawall::start(
        &ConfigBuilder::new()
            .runtime("drain_timeout = \"1s\"")
            .self_signed("dev", &[APP])
            .listener(Listener::https("https", &["dev"]).forward("h2c"))
            .listener(Listener::http("http").forward("h2c"))
            .target_group(
                TargetGroup::new("h2c", &[behind.addr("http")])
                    .line("protocol = \"http\"\nprotocol_version = \"http2\""),
            )
            .build(),
    );
    for via in ALL_VIA {
        let req = Request::get("/checked").body(empty()).unwrap();
        let got = send_read(&front, via, req).await;
        assert_eq!(got.status, StatusCode::OK, "{via:?}: {}", got.text());
        assert_eq!(got.text(), "behind", "{via:?}");
    }
}

/// ALB's 32 KiB limit on a target's response head holds for HTTP/2 targets too (seawall tells
/// them as `SETTINGS_MAX_HEADER_LIST_SIZE`): a 40 KiB header gets 502, a 31 KiB one arrives whole.
#[tokio::test]
async fn http2_targets_response_heads_over_32_kib_get_502() {
    let s = http2_setup().await;
    for prefix in ["h2c", "h2tls"] {
        for via in ALL_VIA {
            // The test's own HTTP/2 client takes heads of 16 KiB at most (hyper's default).
            if !matches!(via, Via::H2Tls) {
                let path = format!("/{prefix}/big-head?bytes={}", 31 * 1024);
                let got = send_read(&s.sw, via, Request::get(&path).body(empty()).unwrap()).await;
                assert_eq!(got.status, StatusCode::OK, "{prefix} {via:?}");
                assert_eq!(got.headers["x-big"].len(), 31 * 1024, "{prefix} {via:?}");
            }
            let path = format!("/{prefix}/big-head?bytes={}", 40 * 1024);
            let got = send_read(&s.sw, via, Request::get(&path).body(empty()).unwrap()).await;
            assert_eq!(
                got.status,
                StatusCode::BAD_GATEWAY,
                "{prefix} {via:?}: {}",
                got.text()
            );
        }
    }
}

#[tokio::test]
async fn http2_targets_multiplex_concurrent_requests_on_one_connection() {
    let s = http2_setup().await;
    // The first request opens the pooled connection; the rest share it as HTTP/2 streams.
    let first = send_read(
        &s.sw,
        Via::H2Tls,
        Request::get("/h2c/mux/first").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK);
    let calls = (0..8).map(|i| {
        let sw = &s.sw;
        let via = ALL_VIA[i % ALL_VIA.len()];
        async move {
            let req = Request::get(format!("/h2c/mux/{i}")).body(empty()).unwrap();
            send_read(sw, via, req).await
        }
    });
    for got in futures_util::future::join_all(calls).await {
        assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    }
    let conn = s.h2c.seen_once("/h2c/mux/first").conn;
    for i in 0..8 {
        let seen = s.h2c.seen_once(&format!("/h2c/mux/{i}"));
        assert_eq!(seen.conn, conn, "request {i} on its own connection");
    }
}

#[tokio::test]
async fn http2_targets_carry_large_bodies_intact_both_ways() {
    let s = http2_setup().await;
    // Not a multiple of any frame or window size.
    let len = 6 * 1024 * 1024 + 7;
    for prefix in ["h2c", "h2tls"] {
        for via in ALL_VIA {
            let up = Request::post(format!("/{prefix}/upload"))
                .body(pattern_body(len))
                .unwrap();
            let got = send_read(&s.sw, via, up).await;
            assert_eq!(got.status, StatusCode::OK, "{prefix} {via:?}");
            assert_eq!(
                got.text(),
                format!("{} {len}", pattern_sha256(len)),
                "upload {prefix} {via:?}"
            );

            let down = Request::get(format!("/{prefix}/download?bytes={len}"))
                .body(empty())
                .unwrap();
            let got = send_read(&s.sw, via, down).await;
            assert_eq!(got.status, StatusCode::OK, "{prefix} {via:?}");
            assert_eq!(got.body.len(), len, "download {prefix} {via:?}");
            assert_eq!(
                sha256_hex(&got.body),
                pattern_sha256(len),
                "download {prefix} {via:?}"
            );
        }
    }
}

/// A request body fed by the test, chunk by chunk.
fn channel_body() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(1);
    let chunks = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|c| c.map(|c| Ok::<_, Infallible>(Frame::data(c))))
    });
    (tx, BodyExt::boxed(StreamBody::new(chunks)))
}

/// Reads exactly `n` bytes of a body, across however many frames they come in.
async fn read_n(body: &mut Incoming, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = within(body.frame())
            .await
            .expect("body ended early")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
    assert_eq!(out.len(), n, "more than asked for");
    out
}

#[tokio::test]
async fn http2_targets_stream_request_and_response_at_once() {
    let s = http2_setup().await;
    for prefix in ["h2c", "h2tls"] {
        let (tx, req_body) = channel_body();
        let req = Request::post(format!("/{prefix}/echo"))
            .body(req_body)
            .unwrap();
        tx.send(Bytes::from_static(b"ping 0;")).await.unwrap();
        let resp = send(&s.sw, Via::H2Tls, req).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        assert_eq!(read_n(&mut body, 7).await, b"ping 0;");
        // Each chunk is sent only after the previous one came back, so nothing on the way may
        // wait for the whole request or the whole response.
        for i in 1..5 {
            let chunk = format!("ping {i};");
            tx.send(Bytes::from(chunk.clone())).await.unwrap();
            assert_eq!(read_n(&mut body, chunk.len()).await, chunk.as_bytes());
        }
        drop(tx);
        let rest = within(body.collect()).await.unwrap().to_bytes();
        assert!(rest.is_empty(), "{prefix}: unexpected {rest:?}");
    }
}

#[tokio::test]
async fn websocket_upgrades_go_to_http1_groups_only() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let s = http2_setup().await;
    let tcp = TcpStream::connect(s.sw.addr("http")).await.unwrap();
    let (mut ws, resp) = within(tokio_tungstenite::client_async(
        format!("ws://{APP}/ws"),
        tcp,
    ))
    .await
    .expect("WebSocket to an http1 group");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = within(ws.next()).await.unwrap().unwrap();
    assert_eq!(echoed, Message::text("hello"));

    // ALB answers 464 to an HTTP/1.1 request for an HTTP/2 group; an upgrade has no HTTP/2 form.
    for (prefix, target) in [("h2c", &s.h2c), ("h2tls", &s.h2tls)] {
        let path = format!("/{prefix}/ws");
        let req = Request::get(&path)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(empty())
            .unwrap();
        let got = send_read(&s.sw, Via::H1Plain, req).await;
        assert_eq!(got.status.as_u16(), 464, "{prefix}: {}", got.text());
        assert_eq!(
            got.text(),
            "464 Incompatible Protocol: upgrades (WebSocket) need an http1 target group\n"
        );
        assert!(target.seen(&path).is_empty(), "{prefix}: forwarded");
    }
    assert_eq!(
        s.sw.metric("seawall_elb_responses_total{code=\"464\"}"),
        2.0
    );
}

// ---------------------------------------------------------------------------------------------
// gRPC target groups

const GRPC_HOST: &str = "grpc.example.test";

/// An https listener (ALPN h2 and http/1.1, the default) whose default action forwards to the
/// `grpc` group (h2c target); services named `test.Tls`, `test.Dead`, `test.Empty`, `test.Slow`
/// and `test.H1` go to a TLS target, a target that refuses connections, a group with no targets,
/// a group with a 500 ms response timeout, and an http1 group.
fn grpc_config(grpc: &Target, grpc_tls: &Target, dead: SocketAddr) -> String {
    let mut https = Listener::https("https", &["dev"]).forward("grpc");
    for (i, (service, group)) in [
        ("test.Tls", "grpc-tls"),
        ("test.Dead", "dead"),
        ("test.Empty", "empty"),
        ("test.Slow", "slow"),
        ("test.H1", "h1"),
    ]
    .into_iter()
    .enumerate()
    {
        https = https.rule(
            10 * (i as u32 + 1),
            &path(&format!("/{service}/*")),
            &forward(group),
        );
    }
    let grpc_group = |name: &str, targets: &[SocketAddr]| {
        TargetGroup::new(name, targets).line("protocol_version = \"grpc\"")
    };
    ConfigBuilder::new()
        .runtime("drain_timeout = \"1s\"")
        .self_signed("dev", &[GRPC_HOST])
        .listener(https)
        .target_group(grpc_group("grpc", &[grpc.addr]).line("protocol = \"http\""))
        .target_group(grpc_group("grpc-tls", &[grpc_tls.addr]).line("protocol = \"https\""))
        .target_group(grpc_group("dead", &[dead]))
        .target_group(grpc_group("empty", &[]))
        .target_group(grpc_group("slow", &[grpc.addr]).line("response_timeout = \"500ms\""))
        .target_group(TargetGroup::new("h1", &[grpc.addr]))
        .build()
}

struct GrpcSetup {
    sw: Seawall,
    grpc: Target,
    grpc_tls: Target,
    gate: Arc<Notify>,
}

async fn grpc_setup() -> GrpcSetup {
    let gate = Arc::new(Notify::new());
    let grpc = Target::start(Serves::H2c, grpc_target(gate.clone())).await;
    let grpc_tls = Target::start(Serves::H2Tls, grpc_target(gate.clone())).await;
    let dead = dead_port();
    let sw = Seawall::start(&grpc_config(&grpc, &grpc_tls, dead));
    GrpcSetup {
        sw,
        grpc,
        grpc_tls,
        gate,
    }
}

#[tokio::test]
async fn grpc_unary_calls_keep_metadata_and_statuses() {
    let s = grpc_setup().await;
    let mut client = grpc_client(s.sw.addr("https"), GRPC_HOST).await;

    let mut req = tonic::Request::new(msg("hello", 41));
    req.metadata_mut()
        .insert("x-request-meta", "abc".parse().unwrap());
    let resp = unary(&mut client, "/test.Echo/Unary", req).await.unwrap();
    assert_eq!(resp.metadata().get("x-echo-meta").unwrap(), "abc");
    assert_eq!(resp.into_inner(), msg("echo: hello", 42));

    let seen = s.grpc.seen_once("/test.Echo/Unary");
    assert_eq!(seen.version, Version::HTTP_2, "{seen:?}");
    assert_eq!(seen.method, Method::POST, "{seen:?}");
    assert_eq!(seen.header("content-type"), Some("application/grpc"));
    // gRPC servers may insist on it, and it is the one TE HTTP/2 allows.
    assert_eq!(seen.header("te"), Some("trailers"), "{seen:?}");
    assert_eq!(seen.authority.as_deref(), Some(GRPC_HOST), "{seen:?}");
    assert_eq!(seen.header("host"), None, "{seen:?}");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));

    // An error status in the response head (trailers-only), with its metadata.
    let err = unary(
        &mut client,
        "/test.Echo/Unary",
        tonic::Request::new(msg("missing", 0)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "no such key: missing ✓");
    assert_eq!(
        err.metadata().get("x-error-detail").unwrap(),
        "looked everywhere"
    );

    // The target's own UNIMPLEMENTED for a method it does not have.
    let err = unary(
        &mut client,
        "/test.Echo/Nope",
        tonic::Request::new(msg("", 0)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert_eq!(err.message(), "Nope");
}

#[tokio::test]
async fn grpc_reaches_a_tls_target_over_alpn_h2() {
    let s = grpc_setup().await;
    let mut client = grpc_client(s.sw.addr("https"), GRPC_HOST).await;
    let resp = unary(
        &mut client,
        "/test.Tls/Unary",
        tonic::Request::new(msg("over tls", 1)),
    )
    .await
    .unwrap();
    assert_eq!(resp.into_inner(), msg("echo: over tls", 2));
    let seen = s.grpc_tls.seen_once("/test.Tls/Unary");
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]), "{seen:?}");
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.header("te"), Some("trailers"));

    let mut items = server_streaming(&mut client, "/test.Tls/Trailers", msg("", 0)).await;
    assert_eq!(next(&mut items).await.unwrap().unwrap(), msg("one", 1));
    assert_eq!(next(&mut items).await.unwrap().unwrap(), msg("two", 2));
    assert!(next(&mut items).await.is_none());
    let trailers = within(items.trailers()).await.unwrap().unwrap();
    assert_eq!(trailers.get("x-trailer-text").unwrap(), "kept");
}

#[tokio::test]
async fn grpc_server_streams_arrive_as_sent_with_their_trailers() {
    let s = grpc_setup().await;
    let mut client = grpc_client(s.sw.addr("https"), GRPC_HOST).await;

    // The target holds `item 1` back until `item 0` has reached the client.
    let mut items = server_streaming(&mut client, "/test.Echo/Count", msg("", 5)).await;
    assert_eq!(next(&mut items).await.unwrap().unwrap(), msg("item 0", 0));
    s.gate.notify_one();
    for i in 1..5 {
        let item = next(&mut items).await.unwrap().unwrap();
        assert_eq!(item, msg(&format!("item {i}"), i));
    }
    assert!(next(&mut items).await.is_none());
    let trailers = within(items.trailers()).await.unwrap().unwrap();
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");

    // An error status in the trailers, after messages.
    let mut items = server_streaming(&mut client, "/test.Echo/Count", msg("then-fail", 1)).await;
    assert_eq!(next(&mut items).await.unwrap().unwrap(), msg("item 0", 0));
    let err = next(&mut items).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "ran out of items");
    assert_eq!(err.metadata().get("x-error-detail").unwrap(), "after 1");
    assert!(next(&mut items).await.is_none());

    // Custom trailers beside an OK status, text and binary.
    let mut items = server_streaming(&mut client, "/test.Echo/Trailers", msg("", 0)).await;
    assert_eq!(next(&mut items).await.unwrap().unwrap(), msg("one", 1));
    assert_eq!(next(&mut items).await.unwrap().unwrap(), msg("two", 2));
    assert!(next(&mut items).await.is_none());
    let trailers = within(items.trailers()).await.unwrap().unwrap();
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("x-trailer-text").unwrap(), "kept");
    let bin = trailers
        .get_bin("x-trailer-bin")
        .unwrap()
        .to_bytes()
        .unwrap();
    assert_eq!(&bin[..], &[0u8, 1, 2, 255]);
}

#[tokio::test]
async fn grpc_bidirectional_streams_interleave() {
    let s = grpc_setup().await;
    let mut client = grpc_client(s.sw.addr("https"), GRPC_HOST).await;
    let (tx, rx) = mpsc::channel::<Msg>(1);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    tx.send(msg("first", 0)).await.unwrap();
    within(client.ready()).await.unwrap();
    let mut replies = within(client.streaming(
        tonic::Request::new(outgoing),
        PathAndQuery::from_static("/test.Echo/Chat"),
        ProstCodec::<Msg, Msg>::default(),
    ))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        next(&mut replies).await.unwrap().unwrap(),
        msg("echo: first", 0)
    );
    // Each message goes out only after the previous answer came back.
    for i in 1..6 {
        tx.send(msg(&format!("m{i}"), i)).await.unwrap();
        let reply = next(&mut replies).await.unwrap().unwrap();
        assert_eq!(reply, msg(&format!("echo: m{i}"), i));
    }
    drop(tx);
    assert!(next(&mut replies).await.is_none());
    let trailers = within(replies.trailers()).await.unwrap().unwrap();
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
}

#[tokio::test]
async fn grpc_clients_get_grpc_statuses_for_seawalls_own_errors() {
    let s = grpc_setup().await;
    let mut client = grpc_client(s.sw.addr("https"), GRPC_HOST).await;
    let cases = [
        ("/test.Dead/Unary", Code::Unavailable, "502 Bad Gateway"),
        (
            "/test.Empty/Unary",
            Code::Unavailable,
            "503 Service Unavailable",
        ),
        (
            "/test.Slow/Hang",
            Code::DeadlineExceeded,
            "504 Gateway Timeout",
        ),
        (
            "/test.H1/Unary",
            Code::Unimplemented,
            "464 Incompatible Protocol: gRPC needs a grpc or http2 target group",
        ),
    ];
    for (path, code, message) in cases {
        let err = unary(&mut client, path, tonic::Request::new(msg("x", 0)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{path}: {err:?}");
        assert_eq!(err.message(), message, "{path}");
    }
    // The slow group's target got the call; the http1 group's was never asked.
    assert_eq!(s.grpc.seen("/test.Slow/Hang").len(), 1);
    assert!(s.grpc.seen("/test.H1/Unary").is_empty());

    // On the wire: gRPC's trailers-only answer.
    let tls = within(tls_connect(s.sw.addr("https"), &Tls::new(GRPC_HOST).h2()))
        .await
        .unwrap();
    let mut raw = h2(tls).await;
    let req = Request::post(format!("https://{GRPC_HOST}/test.Dead/Unary"))
        .header("content-type", "application/grpc+proto")
        .header("te", "trailers")
        .body(body(grpc_frame(&msg("x", 0))))
        .unwrap();
    let got = within(read(within(raw.send_request(req)).await.unwrap())).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers["content-type"], "application/grpc+proto");
    assert_eq!(got.headers["grpc-status"], "14");
    assert_eq!(got.headers["grpc-message"], "502 Bad Gateway");
    assert!(got.body.is_empty());

    // Anything else keeps ALB's plain answer.
    let req = Request::post(format!("https://{GRPC_HOST}/test.Dead/Unary"))
        .header("content-type", "application/json")
        .body(body("{}"))
        .unwrap();
    let got = within(read(within(raw.send_request(req)).await.unwrap())).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(got.text(), "502 Bad Gateway\n");

    // Dashboards count the failures under their HTTP status, not the 200 a gRPC client saw.
    let count = |code: &str, tg: &str| {
        s.sw.metric(&format!(
            "seawall_requests_total{{code=\"{code}\",listener=\"https\",target_group=\"{tg}\"}}"
        ))
    };
    assert_eq!(count("502", "dead"), 3.0);
    assert_eq!(count("200", "dead"), 0.0);
    assert_eq!(count("503", "empty"), 1.0);
    assert_eq!(count("504", "slow"), 1.0);
    assert_eq!(count("464", "h1"), 1.0);
}

#[tokio::test]
async fn grpc_groups_refuse_http1_and_non_post_requests() {
    let s = grpc_setup().await;
    let addr = s.sw.addr("https");

    let got = get(addr, true, GRPC_HOST, "/test.Echo/Unary").await;
    assert_eq!(got.status.as_u16(), 464, "{}", got.text());
    assert_eq!(
        got.text(),
        "464 Incompatible Protocol: a grpc target group takes HTTP/2 requests only\n"
    );

    let tls = within(tls_connect(addr, &Tls::new(GRPC_HOST).h2()))
        .await
        .unwrap();
    let mut c = h2(tls).await;
    let req = Request::get(format!("https://{GRPC_HOST}/test.Echo/Unary"))
        .body(empty())
        .unwrap();
    let got = within(read(within(c.send_request(req)).await.unwrap())).await;
    assert_eq!(got.status.as_u16(), 464, "{}", got.text());
    assert_eq!(
        got.text(),
        "464 Incompatible Protocol: a grpc target group takes POST requests only\n"
    );
    assert!(s.grpc.seen("/test.Echo/Unary").is_empty());
}
