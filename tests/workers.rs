//! More than one data-plane worker (`[runtime] workers = 2`): each worker is a thread of its own
//! accepting on every listener, and together they serve many connections at once on every
//! listener, each with target connections of its own, stop a listener a reload removes (every
//! worker's accept loop), and drain on SIGTERM.
//! Which worker accepts a connection is the kernel's choice; which serves it is seawall's, and
//! `seawall_worker_connections` shows it.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::process::Proc;
use common::*;
use tokio::net::TcpStream;

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

/// Two workers, a plain listener `web` and an https listener `secure`, both forwarding to the
/// target group `app` with `target` as its one target; `runtime` adds `[runtime]` lines.
fn two_workers(target: SocketAddr, runtime: &str) -> ConfigBuilder {
    ConfigBuilder::new()
        .admin("")
        .runtime("workers = 2")
        .runtime(runtime)
        .self_signed("site", &["example.test"])
        .listener(Listener::http("web").forward("app"))
        .listener(Listener::https("secure", &["site"]).forward("app"))
        .target_group(TargetGroup::new("app", &[target]))
}

/// The listeners of `two_workers`.
const BOTH: &[&str] = &["web", "secure"];

/// The binary running `config` (written to a temp folder, which the caller keeps), once ready,
/// with the addresses of its `listeners`.
async fn ready_binary(config: &str, listeners: &[&str]) -> (tempfile::TempDir, PathBuf, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "seawall.toml", config);
    let p = Proc::start(&file, listeners, true).await;
    p.wait_ready().await;
    (dir, file, p)
}

/// The names of process `pid`'s threads.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect()
}

/// `requests` GETs of `path` on one kept-alive connection to `addr` (TLS when `https`); the
/// statuses and bodies, or what went wrong.
async fn kept_alive(
    addr: SocketAddr,
    https: bool,
    path: &str,
    requests: usize,
) -> Result<Vec<(u16, String)>, String> {
    let mut c = if https {
        let tls = tls_connect(addr, &Tls::new("example.test"))
            .await
            .map_err(|e| e.to_string())?;
        h1(tls).await
    } else {
        h1(TcpStream::connect(addr).await.map_err(|e| e.to_string())?).await
    };
    let mut got = Vec::new();
    for _ in 0..requests {
        let req = http::Request::get(path)
            .header("host", "example.test")
            .body(empty())
            .unwrap();
        let resp = c.send_request(req).await.map_err(|e| e.to_string())?;
        let r = read(resp).await;
        got.push((r.status.as_u16(), r.text()));
    }
    Ok(got)
}

/// True when a TCP connection to `addr` is refused.
async fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Replaces `path` by a rename, so that the file watcher never reads half a file.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Two worker threads, and a couple of hundred connections at once over both listeners, each
/// with several requests: every one is answered by the target.
#[tokio::test]
async fn two_workers_serve_many_connections_on_every_listener() {
    let backend = Backend::start("b").await;
    let (_dir, _, p) = ready_binary(&two_workers(backend.addr, "").build(), BOTH).await;
    let mut workers: Vec<String> = thread_names(p.child.id())
        .into_iter()
        .filter(|n| n.starts_with("seawall-data"))
        .collect();
    workers.sort();
    assert_eq!(workers, ["seawall-data-0", "seawall-data-1"]);

    let clients: Vec<_> = (0..200)
        .map(|i| {
            let (addr, https) = match i % 2 {
                0 => (p.addr("web"), false),
                _ => (p.addr("secure"), true),
            };
            tokio::spawn(kept_alive(addr, https, "/hello", 5))
        })
        .collect();
    for client in clients {
        let got = tokio::time::timeout(PATIENCE, client)
            .await
            .expect("answered in time")
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
        for (status, text) in got {
            assert_eq!(status, 200, "{text}");
            let body: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["id"], "b");
        }
    }
    assert_eq!(backend.hits(), 1000);
}

/// Connections that arrive one after another are spread over the workers. Left to the kernel,
/// whichever worker is awake takes them all: 16 HTTP/2 connections of `seawall bench` all landed
/// on one of two workers, every time, before `spread` handed some over. Each connection here has
/// its request answered before the next one opens, and all stay open.
#[tokio::test]
async fn connections_are_spread_over_the_workers() {
    let backend = Backend::start("b").await;
    let (_dir, _, p) = ready_binary(&two_workers(backend.addr, "").build(), BOTH).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut c = h1(TcpStream::connect(p.addr("web")).await.unwrap()).await;
        let req = http::Request::get("/hello")
            .header("host", "example.test")
            .body(empty())
            .unwrap();
        let got = read(c.send_request(req).await.unwrap()).await;
        assert_eq!(got.status, 200, "{}", got.text());
        held.push(c);
    }
    let text = get(p.admin(), false, "127.0.0.1", "/metrics").await.text();
    let on = |w: &str| metric_value(&text, "seawall_worker_connections", &[("worker", w)]);
    let (a, b) = (on("0"), on("1"));
    assert_eq!(a + b, 8.0, "{text}");
    // At most two apart: a worker keeps a connection that puts it one ahead.
    assert!(
        (a - b).abs() <= 2.0,
        "worker 0 serves {a}, worker 1 serves {b}"
    );
    drop(held);
}

/// Each worker makes an HTTP/2 connection of its own to a target and sends all its requests on
/// it: a connection the other worker made is driven by that worker's thread, which each of its
/// requests would then wait on. Client connections are opened one after another until both
/// workers serve some (see `connections_are_spread_over_the_workers`).
#[tokio::test]
async fn each_worker_sends_on_an_http2_connection_of_its_own() {
    let target = Target::start(Serves::H2c, |_req| async {
        http::Response::new(body("h2 ok"))
    })
    .await;
    let config = ConfigBuilder::new()
        .admin("")
        .runtime("workers = 2")
        .listener(Listener::http("web").forward("app"))
        .target_group(TargetGroup::new("app", &[target.addr]).line("protocol_version = \"http2\""))
        .build();
    let (_dir, _, p) = ready_binary(&config, &["web"]).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = h1(TcpStream::connect(p.addr("web")).await.unwrap()).await;
        for i in 0..5 {
            let req = http::Request::get(format!("/r{i}"))
                .header("host", "example.test")
                .body(empty())
                .unwrap();
            let got = read(c.send_request(req).await.unwrap()).await;
            assert_eq!(
                (got.status, got.text().as_str()),
                (http::StatusCode::OK, "h2 ok")
            );
        }
        held.push(c);
    }
    let text = get(p.admin(), false, "127.0.0.1", "/metrics").await.text();
    let on = |w: &str| metric_value(&text, "seawall_worker_connections", &[("worker", w)]);
    assert!(on("0") > 0.0 && on("1") > 0.0, "both workers serve: {text}");
    assert_eq!(target.hits.load(Ordering::SeqCst), 20);
    assert_eq!(
        target.conns.opened(),
        2,
        "one HTTP/2 connection per worker, each reused for its requests"
    );
    drop(held);
}

/// A listener added by a reload is served by both workers' accept loops; removed, it refuses new
/// connections (no worker's loop, nor its duplicate of the socket, is left behind) while a
/// request in flight on it finishes.
#[tokio::test]
async fn reload_adds_and_removes_a_listener_on_every_worker() {
    let backend = Backend::start("b").await;
    let base = two_workers(backend.addr, "");
    let with_extra = base
        .clone()
        .listener(Listener::http("extra").forward("app"))
        .build();
    let base = base.build();
    let sw = Seawall::start(&base);
    let path = sw.dir.path().join("seawall.toml");

    replace(&path, &with_extra);
    sw.running.reload().await.unwrap();
    let extra = sw.addr("extra");
    let clients: Vec<_> = (0..50)
        .map(|_| tokio::spawn(kept_alive(extra, false, "/hello", 2)))
        .collect();
    for client in clients {
        for (status, text) in client.await.unwrap().unwrap() {
            assert_eq!(status, 200, "{text}");
        }
    }

    let hits = backend.hits();
    let in_flight = tokio::spawn(kept_alive(extra, false, "/delay?ms=2000", 1));
    assert!(
        eventually(PATIENCE, || async { backend.hits() > hits }).await,
        "the slow request never reached the backend"
    );
    replace(&path, &base);
    sw.running.reload().await.unwrap();
    assert_eq!(sw.running.listener_addr("extra"), None);
    assert!(
        eventually(PATIENCE, || refused(extra)).await,
        "the removed listener still takes connections"
    );
    let got = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("the in-flight request finished")
        .unwrap()
        .unwrap();
    assert_eq!(got, [(200, "delayed 2000".to_string())]);
    for (status, text) in kept_alive(sw.addr("web"), false, "/hello", 2)
        .await
        .unwrap()
    {
        assert_eq!(status, 200, "{text}");
    }
}

/// SIGTERM with requests in flight on several connections (on both workers, most likely): the
/// listeners stop accepting at once, every request finishes, and the process exits 0 well
/// within the drain_timeout.
#[tokio::test]
async fn sigterm_drains_every_worker_then_exits_0() {
    let backend = Backend::start("slow").await;
    let drain_timeout = Duration::from_secs(10);
    let config = two_workers(backend.addr, "drain_timeout = \"10s\"").build();
    let (_dir, _, mut p) = ready_binary(&config, BOTH).await;
    let (web, secure) = (p.addr("web"), p.addr("secure"));

    let in_flight: Vec<_> = (0..8)
        .map(|_| tokio::spawn(kept_alive(web, false, "/delay?ms=1500", 1)))
        .chain([tokio::spawn(kept_alive(secure, true, "/delay?ms=1500", 1))])
        .collect();
    assert!(
        eventually(PATIENCE, || async { backend.hits() >= 9 }).await,
        "the requests never reached the backend:\n{}",
        p.log()
    );
    let sent = Instant::now();
    p.signal("TERM");
    assert!(
        eventually(Duration::from_secs(1), || async {
            refused(web).await && refused(secure).await
        })
        .await,
        "a listener still accepts after SIGTERM"
    );
    for client in in_flight {
        let got = client
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
        assert_eq!(got, [(200, "delayed 1500".to_string())]);
    }
    let status = p.wait_exit(drain_timeout).await;
    assert_eq!(status.code(), Some(0), "{}", p.log());
    assert!(
        sent.elapsed() < drain_timeout,
        "exit took {:?}",
        sent.elapsed()
    );
}

/// A request outlasting the drain_timeout is cut when it passes, and every worker stops then:
/// the process exits 0 soon after, not when the request would have ended.
#[tokio::test]
async fn the_drain_timeout_stops_every_worker() {
    let backend = Backend::start("slow").await;
    let config = two_workers(backend.addr, "drain_timeout = \"1s\"").build();
    let (_dir, _, mut p) = ready_binary(&config, BOTH).await;
    let in_flight: Vec<_> = (0..4)
        .map(|_| tokio::spawn(kept_alive(p.addr("web"), false, "/delay?ms=60000", 1)))
        .collect();
    assert!(
        eventually(PATIENCE, || async { backend.hits() >= 4 }).await,
        "the requests never reached the backend:\n{}",
        p.log()
    );
    let sent = Instant::now();
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", p.log());
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        sent.elapsed()
    );
    assert!(p.log().contains("drain_timeout passed"), "{}", p.log());
    for client in in_flight {
        assert!(client.await.unwrap().is_err(), "a cut request was answered");
    }
}
