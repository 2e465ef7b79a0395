//! Draining the real binary on SIGTERM/SIGINT: the listener stops accepting at once, requests in
//! flight finish within drain_timeout (the one in force, a reload's included), and keep-alive
//! connections are told `Connection: close` or closed when idle.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::process::Proc;
use common::*;

/// True when a TCP connection to `addr` is refused.
async fn refused(addr: SocketAddr) -> bool {
    matches!(
        tokio::net::TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// A plain-HTTP listener `web` with the given default action, an admin server, and the given
/// drain_timeout (plus other `[runtime]` lines).
fn drain_config(drain_timeout: Duration, runtime: &str, default_action: &str) -> String {
    drain_base(drain_timeout, runtime)
        .listener(Listener::http("web").default_action(default_action))
        .build()
}

/// [`drain_config`] forwarding to the target group "app" with `target` as its one target.
fn drain_config_forwarding(drain_timeout: Duration, runtime: &str, target: SocketAddr) -> String {
    drain_base(drain_timeout, runtime)
        .listener(Listener::http("web").forward("app"))
        .target_group(TargetGroup::new("app", &[target]))
        .build()
}

fn drain_base(drain_timeout: Duration, runtime: &str) -> ConfigBuilder {
    ConfigBuilder::new()
        .admin("")
        .runtime(&format!("drain_timeout = \"{}s\"", drain_timeout.as_secs()))
        .runtime(runtime)
}

/// The binary running `config` (written to `seawall.toml` in a temp folder, which the caller
/// keeps) with listener `web` and an admin server, once it reports ready.
async fn ready_binary(config: &str) -> (tempfile::TempDir, PathBuf, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "seawall.toml", config);
    let p = Proc::start(&file, &["web"], true).await;
    p.wait_ready().await;
    (dir, file, p)
}

/// SIGTERM with a request in flight: the listener stops accepting at once, the request finishes
/// with 200, and the process exits 0 well within drain_timeout.
#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let backend = Backend::start("slow").await;
    let drain_timeout = Duration::from_secs(10);
    let (_dir, _, mut p) =
        ready_binary(&drain_config_forwarding(drain_timeout, "", backend.addr)).await;
    let (web, admin) = (p.addr("web"), p.admin());

    let in_flight = tokio::spawn(get(web, false, "example.test", "/delay?ms=1500"));
    assert!(
        eventually(Duration::from_secs(10), || async { backend.hits() >= 1 }).await,
        "the request never reached the backend:\n{}",
        p.log()
    );
    let sent = Instant::now();
    p.signal("TERM");

    // Draining: no new connections, and the admin server tells load balancers to go away.
    assert!(
        eventually(Duration::from_secs(1), || refused(web)).await,
        "the listener still accepts after SIGTERM"
    );
    assert!(
        eventually(Duration::from_secs(1), || async {
            get(admin, false, "127.0.0.1", "/healthz").await.status == 503
        })
        .await,
        "/healthz does not report draining"
    );

    let got = in_flight.await.unwrap();
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "delayed 1500");

    let status = p.wait_exit(drain_timeout).await;
    assert_eq!(status.code(), Some(0), "{}", p.log());
    assert!(
        sent.elapsed() < drain_timeout,
        "exit took {:?}",
        sent.elapsed()
    );
    assert!(refused(web).await);
    assert!(refused(admin).await);
    assert!(p.log().contains("stopped"), "{}", p.log());
    assert!(!p.log().contains('\u{1b}'), "colour codes in a piped log");
}

/// The drain_timeout in force when SIGTERM comes is the one a reload set, not the one at start:
/// a request still in flight when it passes is cut, and the process exits 0.
#[tokio::test]
async fn a_drain_timeout_changed_by_reload_bounds_the_drain() {
    let backend = Backend::start("slow").await;
    let at_start = Duration::from_secs(120);
    let (dir, file, mut p) =
        ready_binary(&drain_config_forwarding(at_start, "", backend.addr)).await;
    let web = p.addr("web");

    // Renamed into place, so that the file watcher never reads half a file.
    let tmp = write_file(
        dir.path(),
        "seawall.toml.new",
        &drain_config_forwarding(Duration::from_secs(1), "", backend.addr),
    );
    std::fs::rename(&tmp, &file).unwrap();
    p.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || async {
            p.log().contains("config reloaded")
        })
        .await,
        "no reload:\n{}",
        p.log()
    );

    let in_flight = tokio::spawn(raw_exchange(
        web,
        b"GET /delay?ms=60000 HTTP/1.1\r\nhost: example.test\r\n\r\n",
        Duration::from_secs(60),
    ));
    assert!(
        eventually(Duration::from_secs(10), || async { backend.hits() >= 1 }).await,
        "the request never reached the backend:\n{}",
        p.log()
    );
    let sent = Instant::now();
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", p.log());
    assert!(
        sent.elapsed() < Duration::from_secs(30),
        "exit took {:?}",
        sent.elapsed()
    );
    assert!(p.log().contains("drain_timeout passed"), "{}", p.log());
    let answer = in_flight.await.unwrap();
    assert!(
        !answer.contains("200"),
        "the request outlived the drain: {answer}"
    );
}

/// A response whose head went out (with keep-alive) before the drain began: the connection is
/// closed soon after the response ends, not kept until idle_timeout or drain_timeout.
#[tokio::test]
async fn a_response_started_before_the_drain_closes_its_connection_when_done() {
    let backend = Backend::start("gated").await;
    let drain_timeout = Duration::from_secs(20);
    let (_dir, _, mut p) = ready_binary(&drain_config_forwarding(
        drain_timeout,
        "idle_timeout = \"60s\"",
        backend.addr,
    ))
    .await;
    let web = p.addr("web");

    let mut c = h1(tokio::net::TcpStream::connect(web).await.unwrap()).await;
    let req = http::Request::get("/gated?bytes=1000&gate=drain-started")
        .header("host", "a")
        .body(empty())
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("connection").is_none());

    let sent = Instant::now();
    p.signal("TERM");
    assert!(
        eventually(Duration::from_secs(5), || refused(web)).await,
        "the listener still accepts after SIGTERM"
    );
    open_gate("drain-started");
    let got = read(resp).await;
    assert_eq!(got.body.len(), 2000, "the response finishes whole");
    assert!(
        eventually(Duration::from_secs(10), || async { c.is_closed() }).await,
        "the connection stays open after its response"
    );
    let status = p.wait_exit(drain_timeout).await;
    assert_eq!(status.code(), Some(0), "{}", p.log());
    assert!(
        sent.elapsed() < drain_timeout / 2,
        "exit took {:?}",
        sent.elapsed()
    );
}

/// Draining and HTTP/1 keep-alive: closing an idle connection would race with a request the client
/// is sending on it, so a draining connection answers its next request with `Connection: close`
/// and then closes; one that stays idle is closed shortly after, without holding the exit up
/// until drain_timeout.
#[tokio::test]
async fn draining_keep_alive_connections_get_connection_close_then_idle_ones_are_closed() {
    let drain_timeout = Duration::from_secs(20);
    let (_dir, _, mut p) = ready_binary(&drain_config(
        drain_timeout,
        "idle_timeout = \"60s\"",
        r#"{ fixed_response = { status = 200, body = "up" } }"#,
    ))
    .await;
    let web = p.addr("web");

    let request = || {
        http::Request::get("/")
            .header("host", "a")
            .body(empty())
            .unwrap()
    };
    let mut busy = h1(tokio::net::TcpStream::connect(web).await.unwrap()).await;
    let mut idle = h1(tokio::net::TcpStream::connect(web).await.unwrap()).await;
    for c in [&mut busy, &mut idle] {
        let got = read(c.send_request(request()).await.unwrap()).await;
        assert_eq!(got.status, 200);
        assert!(got.headers.get("connection").is_none(), "{:?}", got.headers);
    }

    let sent = Instant::now();
    p.signal("TERM");
    assert!(
        eventually(Duration::from_secs(5), || refused(web)).await,
        "the listener still accepts after SIGTERM"
    );
    // The kept-alive connection still takes one request, and says it is the last.
    let got = read(busy.send_request(request()).await.unwrap()).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "up");
    assert_eq!(
        got.headers.get("connection").map(|v| v.to_str().unwrap()),
        Some("close")
    );
    assert!(
        eventually(Duration::from_secs(5), || async { busy.is_closed() }).await,
        "the connection stays open after its last response"
    );
    // The idle one is closed by the server, and the process exits long before drain_timeout.
    assert!(
        eventually(Duration::from_secs(10), || async { idle.is_closed() }).await,
        "the idle connection is never closed"
    );
    let status = p.wait_exit(drain_timeout).await;
    assert_eq!(status.code(), Some(0), "{}", p.log());
    assert!(
        sent.elapsed() < drain_timeout / 2,
        "exit took {:?}",
        sent.elapsed()
    );
}
