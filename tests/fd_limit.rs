//! File-descriptor exhaustion: seawall started under a low `ulimit -n` and flooded with far more
//! connections than it may hold refuses the excess at once, stays up with its admin server
//! answering, and serves again once the flood is gone.
mod common;
use common::process::{self, Proc};
use common::*;

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// The hard limit the test gives seawall (its soft one starts lower, at half).
const NOFILE: u64 = 256;
/// Connections opened at once: about four times what the process may hold.
const FLOOD: usize = 1000;
/// Hang guard: far beyond what refusing or answering takes, so that only a connection left
/// waiting (or an admin server that never answers) fails the test.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// The test process holds the flood's 1 000 sockets itself: its soft limit may be 1 024.
fn raise_own_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        },
    );
}

/// `seawall run --config FILE` under a shell's `ulimit`: the soft limit at half the hard one, so
/// that the start shows it raised.
fn under_ulimit(config: &std::path::Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            r#"ulimit -Sn {} && ulimit -Hn {NOFILE} && exec "$0" "$@""#,
            NOFILE / 2
        ))
        .arg(process::BIN)
        .args(["run", "--config"])
        .arg(config)
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    c
}

/// Seawall on `config` (with an admin server and a listener `web`) under [`under_ulimit`], ready,
/// and the cap on client connections its start reports.
async fn start_limited(config: &std::path::Path) -> (Proc, usize) {
    let p = Proc::start_command(under_ulimit(config), &["web"], true).await;
    p.wait_ready().await;
    // The start says what it raised the limit to and how many clients that leaves.
    let lines = p.lines();
    let start = lines
        .iter()
        .find(|l| l.contains("file-descriptor limit: client connections capped"))
        .unwrap_or_else(|| panic!("a start line reports the cap:\n{}", p.log()));
    assert_eq!(process::field(start, "nofile"), Some("256"), "{start}");
    assert_eq!(process::field(start, "raised_from"), Some("128"), "{start}");
    let cap: usize = process::field(start, "max_client_connections")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the cap in {start}"));
    assert!(cap > 0 && cap < NOFILE as usize / 2, "{start}");
    (p, cap)
}

/// A GET / over HTTPS on a fresh connection, or `None` if the connection was refused or closed
/// before an answer.
async fn proxied(addr: SocketAddr) -> Option<Got> {
    let attempt = async {
        let tls = tls_connect(addr, &Tls::new("localhost")).await.ok()?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = Request::get("/")
            .header("host", "localhost")
            .body(empty())
            .unwrap();
        Some(read(send.send_request(req).await.ok()?).await)
    };
    tokio::time::timeout(HANG_GUARD, attempt)
        .await
        .expect("an HTTPS request is answered or refused, not left hanging")
}

/// Whether seawall closed `tcp` (end of stream or reset); `false` while it is open and silent.
/// The socket is non-blocking.
fn closed_by_seawall(tcp: &mut std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match tcp.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("seawall sent bytes before the client's TLS hello"),
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// An admin GET that must answer 200 in time, flood or not.
async fn admin_ok(admin: SocketAddr, path: &str) -> Got {
    let got = tokio::time::timeout(HANG_GUARD, get(admin, false, "127.0.0.1", path))
        .await
        .unwrap_or_else(|_| panic!("the admin server answers {path} during the flood"));
    assert_eq!(got.status, StatusCode::OK, "{path}: {}", got.text());
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_descriptor_limit_is_refused_at_once_and_served_again_after() {
    raise_own_limit();
    let backend = Backend::start("t").await;
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new()
        .admin("")
        // The flood's connections that are served wait for a TLS hello that never comes: they
        // stay open until the test closes them.
        .runtime("handshake_timeout = \"120s\"\ndrain_timeout = \"2s\"")
        .self_signed("site", &["localhost"])
        .listener(Listener::https("web", &["site"]).forward("app"))
        .target_group(TargetGroup::new("app", &[backend.addr]))
        .build();
    let (mut p, cap) = start_limited(&write_file(dir.path(), "seawall.toml", &config)).await;
    let web = p.addr("web");
    let admin = p.admin();

    // The flood: every connection completes (the kernel's queue takes them) and sends nothing.
    let mut flood: Vec<std::net::TcpStream> = tokio::task::spawn_blocking(move || {
        (0..FLOOD)
            .map(|_| {
                let tcp = std::net::TcpStream::connect(web).expect("the kernel takes the flood");
                tcp.set_nonblocking(true).unwrap();
                tcp
            })
            .collect()
    })
    .await
    .unwrap();
    let mut closed = vec![false; FLOOD];
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        for (tcp, c) in flood.iter_mut().zip(closed.iter_mut()) {
            *c = *c || closed_by_seawall(tcp);
        }
        if closed.iter().filter(|c| **c).count() >= FLOOD - cap {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {FLOOD} connections closed with a cap of {cap}: the excess is left waiting\n{}",
            closed.iter().filter(|c| **c).count(),
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Up, its admin answering, while the cap's worth of connections is held.
    assert!(p.child.try_wait().unwrap().is_none(), "seawall is up");
    admin_ok(admin, "/healthz").await;
    let metrics = admin_ok(admin, "/metrics").await.text();
    let rejected = |reason: &str| {
        metric_value(
            &metrics,
            "seawall_rejected_connections_total",
            &[("listener", "web"), ("reason", reason)],
        )
    };
    assert_eq!(rejected("fd_limit"), (FLOOD - cap) as f64, "{metrics}");
    // The cap kept the process from running out of descriptors.
    assert_eq!(rejected("fd_exhausted"), 0.0, "{metrics}");
    // Exactly the cap was served (and still is: nothing more was closed).
    for (tcp, c) in flood.iter_mut().zip(closed.iter_mut()) {
        *c = *c || closed_by_seawall(tcp);
    }
    assert_eq!(closed.iter().filter(|c| !**c).count(), cap);
    // One more client now is refused too, not left waiting.
    assert!(
        proxied(web).await.is_none(),
        "a request beyond the cap is refused"
    );
    let warned = p
        .lines()
        .iter()
        .any(|l| l.contains("WARN") && l.contains("refusing client connections"));
    assert!(
        warned,
        "a warning says connections are refused:\n{}",
        p.log()
    );

    // Once the flood is gone, requests reach the target again.
    drop(flood);
    let served = eventually(HANG_GUARD, || async {
        proxied(web)
            .await
            .is_some_and(|got| got.status == StatusCode::OK)
    })
    .await;
    assert!(served, "served again after the flood:\n{}", p.log());
    assert!(backend.hits() >= 1);

    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}

/// A WebSocket's tunnel outlives its HTTP connection but still holds the client's descriptor (and
/// a target's): it stays under the cap until it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnels_count_under_the_cap_until_they_close() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    raise_own_limit();
    let backend = Backend::start("t").await;
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new()
        .admin("")
        .runtime("drain_timeout = \"2s\"")
        .listener(Listener::http("web").forward("app"))
        .target_group(TargetGroup::new("app", &[backend.addr]))
        .build();
    let (mut p, cap) = start_limited(&write_file(dir.path(), "seawall.toml", &config)).await;
    let web = p.addr("web");
    let get = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

    let mut tunnels = Vec::new();
    for i in 0..cap {
        let tcp = tokio::net::TcpStream::connect(web).await.unwrap();
        let opened = tokio::time::timeout(
            HANG_GUARD,
            tokio_tungstenite::client_async("ws://localhost/ws", tcp),
        )
        .await;
        let (mut ws, resp) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => panic!("tunnel {i} of {cap}: {e}\n{}", p.log()),
            Err(_) => panic!("tunnel {i} of {cap} not opened in time"),
        };
        assert_eq!(resp.status(), 101);
        // Through to the target and back: the tunnel is up, not just the 101.
        ws.send(Message::text("up")).await.unwrap();
        let echoed = tokio::time::timeout(HANG_GUARD, ws.next()).await.unwrap();
        assert_eq!(echoed.unwrap().unwrap(), Message::text("up"));
        tunnels.push(ws);
    }

    // Every place is held by a tunnel: a request on a new connection finds it closed, at once.
    let started = Instant::now();
    let answer = raw_exchange(web, get, HANG_GUARD).await;
    assert_eq!(
        answer, "",
        "beyond the cap of {cap}, with every tunnel open"
    );
    assert!(started.elapsed() < HANG_GUARD, "closed, not left waiting");
    let metrics = fetch_metrics(p.admin()).await;
    let refused = metric_value(
        &metrics,
        "seawall_rejected_connections_total",
        &[("listener", "web"), ("reason", "fd_limit")],
    );
    assert!(refused >= 1.0, "{metrics}");

    // One tunnel closing makes room for one client.
    let mut ws = tunnels.pop().unwrap();
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    let served = eventually(HANG_GUARD, || async {
        raw_exchange(web, get, HANG_GUARD)
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(served, "served once a tunnel closed:\n{}", p.log());

    drop(tunnels);
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}

/// HTTP/2 clients can hold many target connections each, beyond what the cap reckons with: once
/// the process is out of descriptors all the same, a new client is still accepted and closed at
/// once (through the reserve descriptors), not left in the backlog, the log says so, and clients
/// are served again once descriptors come back.
///
/// Ignored: it fails about one run in five. While the requests' target connections are being
/// opened, each descriptor the reserve gives up can be taken by one of them before the accept
/// gets it, and kept for the request's 4 s; with all of the reserve gone that way, the new client
/// waits in the backlog. Target connections need a share of the budget they cannot go past (as
/// client connections have) for this to pass every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "flaky until target connections have a descriptor budget: see the comment"]
async fn out_of_descriptors_a_new_client_is_closed_at_once() {
    raise_own_limit();
    let backend = Backend::start("t").await;
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new()
        .admin("")
        .runtime("drain_timeout = \"1s\"")
        .listener(Listener::http("web").forward("app"))
        .target_group(TargetGroup::new("app", &[backend.addr]))
        .build();
    let (mut p, _cap) = start_limited(&write_file(dir.path(), "seawall.toml", &config)).await;
    let web = p.addr("web");

    // Two h2c clients with 150 slow requests each: every request takes its own HTTP/1 target
    // connection, more than a hard limit of 256 leaves room for.
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let send = h2(tokio::net::TcpStream::connect(web).await.unwrap()).await;
        for _ in 0..150 {
            let mut send = send.clone();
            slow.spawn(async move {
                let req = Request::get("/delay?ms=4000")
                    .header("host", "localhost")
                    .body(empty())
                    .unwrap();
                let _ = send.send_request(req).await;
            });
        }
    }

    // A new client meanwhile is closed, and promptly: a second is far less than the requests'
    // delay, in which a client left waiting would get nothing either.
    let get = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let refused = eventually(Duration::from_secs(3), || async {
        let started = Instant::now();
        let answer = raw_exchange(web, get, Duration::from_secs(1)).await;
        answer.is_empty() && started.elapsed() < Duration::from_millis(900)
    })
    .await;
    assert!(refused, "a new client is closed at once:\n{}", p.log());
    // Logged just after the close: the line may still be on its way.
    let warned = eventually(HANG_GUARD, || async {
        p.lines().iter().any(|l| {
            l.contains("refusing client connections")
                && process::field(l, "reason") == Some("fd_exhausted")
        })
    })
    .await;
    assert!(warned, "the log says why:\n{}", p.log());
    assert!(p.child.try_wait().unwrap().is_none(), "seawall is up");

    // Once the slow requests are answered, new clients are served again.
    while slow.join_next().await.is_some() {}
    let served = eventually(HANG_GUARD, || async {
        raw_exchange(web, get, Duration::from_secs(2))
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(served, "served again after the slow requests:\n{}", p.log());
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}
