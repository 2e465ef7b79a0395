//! seawall's connections to its targets: kept alive and reused, a request sent again when a
//! target closed its connection under it, closed with their target, and one shared HTTP/2
//! connection per target and worker (these run one worker).
mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// An http listener "web" forwarding to the group "app" with `targets`; `extra` lines go in the
/// group's table. Health checks every 100 ms, so targets are healthy quickly. One worker: each
/// worker uses only the target connections it made, so with more the connections counted here
/// would depend on which worker the kernel gave each client connection to.
fn config(targets: &[SocketAddr], extra: &str) -> String {
    ConfigBuilder::new()
        .admin("")
        .runtime("workers = 1")
        .listener(Listener::http("web").forward("app"))
        .target_group(
            TargetGroup::new("app", targets)
                .line("health_check = { interval = \"100ms\", timeout = \"50ms\", healthy_threshold = 2 }")
                .line(extra),
        )
        .build()
}

/// GET `path` through seawall over the client connection `c`.
async fn get_on(c: &mut hyper::client::conn::http1::SendRequest<Body>, path: &str) -> Got {
    let req = Request::get(path)
        .header("host", "app.test")
        .body(empty())
        .unwrap();
    read(c.send_request(req).await.unwrap()).await
}

#[tokio::test]
async fn sequential_requests_reuse_one_target_connection() {
    let backend = Backend::start("a").await;
    let sw = Seawall::start(&config(&[backend.addr], ""));
    sw.wait_healthy("app").await;
    // A new client connection each time: what is reused is seawall's own connection.
    for i in 0..20 {
        let got = get(sw.addr("web"), false, "app.test", &format!("/r{i}")).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    }
    // A body streamed in chunks, a HEAD (no body) and a POST with a body come back to the pool
    // too.
    let got = get(sw.addr("web"), false, "app.test", "/download?bytes=300000").await;
    assert_eq!(got.body.len(), 300_000);
    let mut c = h1(TcpStream::connect(sw.addr("web")).await.unwrap()).await;
    let head = Request::builder()
        .method(Method::HEAD)
        .uri("/head")
        .header("host", "app.test")
        .body(empty())
        .unwrap();
    assert_eq!(read(c.send_request(head).await.unwrap()).await.status, 200);
    let post = Request::post("/upload")
        .header("host", "app.test")
        .body(body("some bytes"))
        .unwrap();
    assert_eq!(read(c.send_request(post).await.unwrap()).await.status, 200);
    assert_eq!(get_on(&mut c, "/last").await.status, 200);

    assert_eq!(backend.hits(), 24);
    assert_eq!(
        backend.conns.opened(),
        1,
        "24 sequential requests took one connection to the target"
    );
    assert_eq!(backend.conns.open(), 1, "and it is still open");
}

/// A target that answers each request, then closes the connection at once, without saying
/// `Connection: close` (as a server with a very short keep-alive timeout does).
async fn closing_target() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Dropped: closed right after the answer.
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_target_closing_each_idle_connection_loses_no_request() {
    let (addr, accepted) = closing_target().await;
    let sw = Seawall::start(&config(&[addr], ""));
    sw.wait_healthy("app").await;
    let mut c = h1(TcpStream::connect(sw.addr("web")).await.unwrap()).await;
    let before = accepted.load(Ordering::SeqCst);
    let n = 300;
    for i in 0..n {
        let got = get_on(&mut c, &format!("/r{i}")).await;
        assert_eq!(
            (got.status, got.text().as_str()),
            (StatusCode::OK, "ok"),
            "request {i}: a connection the target closed is never used for a request"
        );
    }
    assert!(
        accepted.load(Ordering::SeqCst) - before >= n,
        "each request had a connection of its own"
    );
}

/// A target that answers the first request on each connection and closes the connection as the
/// next one arrives, unanswered: the keep-alive race lost after the request went out. Gives how
/// many requests it dropped so.
async fn one_answer_per_connection_target() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let count = dropped.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                for answered in [true, false] {
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if answered {
                        let _ = tcp
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    } else {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (addr, dropped)
}

#[tokio::test]
async fn an_idempotent_request_lost_on_a_reused_connection_is_sent_again() {
    let (addr, dropped) = one_answer_per_connection_target().await;
    let sw = Seawall::start(&config(&[addr], ""));
    sw.wait_healthy("app").await;
    let mut c = h1(TcpStream::connect(sw.addr("web")).await.unwrap()).await;
    for i in 0..10 {
        let got = get_on(&mut c, &format!("/r{i}")).await;
        assert_eq!(
            (got.status, got.text().as_str()),
            (StatusCode::OK, "ok"),
            "GET {i}: sent again on a new connection"
        );
    }
    assert!(
        dropped.load(Ordering::SeqCst) >= 9,
        "the target closed a reused connection under each GET after the first"
    );
    // A request with a body is not sent twice: the target may have acted on it.
    let post = Request::post("/p")
        .header("host", "app.test")
        .body(body("once"))
        .unwrap();
    let got = read(c.send_request(post).await.unwrap()).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{}", got.text());
}

#[tokio::test]
async fn idle_connections_close_when_their_target_is_deregistered() {
    let backend = Backend::start("a").await;
    let sw = Seawall::start(&config(&[backend.addr], "deregistration_delay = \"1s\""));
    sw.wait_healthy("app").await;
    for i in 0..3 {
        let got = get(sw.addr("web"), false, "app.test", &format!("/r{i}")).await;
        assert_eq!(got.status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (backend.conns.opened(), backend.conns.open()),
        (1, 1),
        "one pooled connection, kept open while the target serves"
    );

    let targets = format!(
        r#"{{"target_group": "app", "targets": ["{}"]}}"#,
        backend.addr
    );
    let mut admin = h1(TcpStream::connect(sw.admin()).await.unwrap()).await;
    let req = Request::post("/targets/deregister")
        .header("host", "admin")
        .header("content-type", "application/json")
        .body(body(targets))
        .unwrap();
    let got = read(admin.send_request(req).await.unwrap()).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    let deregistered = Instant::now();

    // Draining: the connection may still be used by what is in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(backend.conns.open(), 1, "open while the target drains");
    let closed = eventually(Duration::from_secs(3), || async {
        backend.conns.open() == 0
    })
    .await;
    assert!(
        closed,
        "the idle connection is closed when draining ends, not when it times out"
    );
    assert!(
        deregistered.elapsed() < Duration::from_secs(3),
        "closed {:?} after deregistration with a 1s delay",
        deregistered.elapsed()
    );
}

/// An h2c target (HTTP/2 with prior knowledge) that answers after `delay`; its `conns` and
/// `hits` count the connections and requests other than health checks.
async fn h2_target(delay: Duration) -> Target {
    Target::start(Serves::H2c, move |req| async move {
        if !is_probe(&req) {
            tokio::time::sleep(delay).await;
        }
        http::Response::new(body("h2 ok"))
    })
    .await
}

#[tokio::test]
async fn an_http2_group_sends_concurrent_requests_on_one_connection() {
    let target = h2_target(Duration::from_millis(200)).await;
    let (addr, conns, requests) = (target.addr, &target.conns.opened, &target.hits);
    let sw = Seawall::start(&config(&[addr], "protocol_version = \"http2\""));
    sw.wait_healthy("app").await;
    let web = sw.addr("web");
    // All at once, each on its own client connection, while no connection to the target exists
    // yet: they wait for one connect instead of each making its own.
    let n = 50;
    let started = Instant::now();
    let answers: Vec<_> = (0..n)
        .map(|i| tokio::spawn(async move { get(web, false, "app.test", &format!("/r{i}")).await }))
        .collect();
    for a in answers {
        let got = a.await.unwrap();
        assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "h2 ok"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "concurrent, not one after another: {:?}",
        started.elapsed()
    );
    assert_eq!(requests.load(Ordering::SeqCst), n);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "{n} requests, one connection"
    );
    // Later requests keep using it.
    let got = get(web, false, "app.test", "/later").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}
