//! Zero-downtime binary upgrade with the real binary: SIGUSR2 starts the new process, which takes
//! over every listening socket; the old one drains and exits.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::process::{self, Proc};
use common::*;
use http::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn config(dir: &std::path::Path, extra_runtime: &str) -> std::path::PathBuf {
    let path = dir.join("seawall.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[admin]
bind = "127.0.0.1:0"

[runtime]
drain_timeout = "5s"
{extra_runtime}

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ fixed_response = {{ status = 200, body = "served" }} }}
"#
        ),
    )
    .unwrap();
    path
}

/// The pid a log line `... pid=N ...` names.
fn logged_pid(log: &str, marker: &str) -> Option<u32> {
    log.lines()
        .filter(|l| l.contains(marker))
        .find_map(|l| process::field(l, "pid")?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_under_load_refuses_nothing_and_the_old_process_drains_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let mut old = Proc::start(&path, &["web"], true).await;
    old.wait_ready().await;
    let addr = old.addr("web");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut loads = Vec::new();
    // A new connection for every request: a refused or reset connection would show here.
    for _ in 0..2 {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        loads.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match tokio::net::TcpStream::connect(addr).await {
                    Err(e) => failures.lock().unwrap().push(format!("connect: {e}")),
                    Ok(tcp) => {
                        let mut c = h1(tcp).await;
                        let req = Request::get("/").header("host", "t").body(empty()).unwrap();
                        match c.send_request(req).await {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures
                                .lock()
                                .unwrap()
                                .push(format!("status {}", r.status())),
                            Err(e) => failures.lock().unwrap().push(format!("request: {e}")),
                        }
                    }
                }
            }
        }));
    }
    // Keep-alive requests through a pooled client, which (like any HTTP client) sends again a
    // request that a server closing an idle connection never read.
    {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        loads.push(tokio::spawn(async move {
            let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
            let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
            while !stop.load(Ordering::Relaxed) {
                match client.get(uri.clone()).await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status())),
                    Err(e) => failures.lock().unwrap().push(format!("keep-alive: {e:?}")),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 0, "the load runs");

    old.signal("USR2");
    let status = old.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "the old process exits 0 after draining: {status}\n{}",
        old.log()
    );
    let new_pid = logged_pid(&old.log(), "new process started").expect("the new pid is logged");
    assert_ne!(new_pid, old.child.id());

    // The new process serves on the same address, the admin one included.
    let after_exit = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    let served = ok.load(Ordering::Relaxed);
    assert!(
        served > after_exit,
        "requests are served after the old process left"
    );
    assert_eq!(get(old.admin(), false, "a", "/healthz").await.status, 200);
    let failures = failures.lock().unwrap().clone();
    process::signal(new_pid, "TERM");
    assert!(
        failures.is_empty(),
        "{} failures, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let log = old.log();
    assert!(log.contains("took over the listening sockets"), "{log}");
}

#[tokio::test]
async fn a_new_binary_that_fails_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "binary = \"/bin/false\"");
    let mut p = Proc::start(&path, &["web"], true).await;
    p.wait_ready().await;
    p.signal("USR2");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !p.log().contains("upgrade failed") {
        assert!(std::time::Instant::now() < deadline, "{}", p.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(p.child.try_wait().unwrap().is_none(), "still running");
    let got = get(p.addr("web"), false, "a", "/").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "served");
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}

#[tokio::test]
async fn post_upgrade_hands_over_and_answers_with_the_new_pid() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let mut old = Proc::start(&path, &["web"], true).await;
    old.wait_ready().await;
    let admin = old.admin();
    let mut c = h1(tokio::net::TcpStream::connect(admin).await.unwrap()).await;
    let req = Request::post("/upgrade")
        .header("host", "admin")
        .body(empty())
        .unwrap();
    let got = read(c.send_request(req).await.unwrap()).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let pid = got.json()["pid"].as_u64().unwrap() as u32;
    assert_ne!(pid, old.child.id());
    assert!(old.wait_exit(Duration::from_secs(20)).await.success());
    // The same addresses now belong to the new process.
    assert_eq!(get(old.addr("web"), false, "a", "/").await.text(), "served");
    assert_eq!(get(admin, false, "a", "/healthz").await.status, 200);
    process::signal(pid, "TERM");
}

/// An https listener `web` with a self-signed certificate for `localhost`.
fn https_config(dir: &std::path::Path) -> std::path::PathBuf {
    write_file(
        dir,
        "seawall.toml",
        r#"
[admin]
bind = "127.0.0.1:0"

[runtime]
drain_timeout = "5s"

[[certificates]]
name = "default"
self_signed = ["localhost"]

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["default"]
default_action = { fixed_response = { status = 200, body = "served" } }
"#,
    )
}

/// Connects with `client`, GETs `/`, and tells how the handshake went.
async fn tls_get(
    addr: std::net::SocketAddr,
    client: &Arc<rustls::ClientConfig>,
) -> Option<rustls::HandshakeKind> {
    let tls = tls_connect_with(addr, client, "localhost").await.unwrap();
    let kind = tls.get_ref().1.handshake_kind();
    let mut c = h1(tls).await;
    let req = Request::get("/")
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    // Reading the answer also takes in the TLS 1.3 tickets sent after the handshake.
    let got = read(c.send_request(req).await.unwrap()).await;
    assert_eq!(got.text(), "served");
    kind
}

#[tokio::test]
async fn tls_sessions_of_the_old_process_resume_on_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = https_config(dir.path());
    let mut old = Proc::start(&path, &["web"], true).await;
    old.wait_ready().await;
    let addr = old.addr("web");
    let clients = [&rustls::version::TLS13, &rustls::version::TLS12]
        .map(|v| (v, tls_client(&Tls::new("localhost").only(v))));
    for (v, client) in &clients {
        let kind = tls_get(addr, client).await;
        assert_eq!(kind, Some(rustls::HandshakeKind::Full), "{v:?}");
    }

    old.signal("USR2");
    let status = old.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}\n{}", old.log());
    let new_pid = logged_pid(&old.log(), "new process started").expect("the new pid is logged");

    // Only the new process accepts now; the tickets the old one issued resume there.
    for (v, client) in &clients {
        let kind = tls_get(addr, client).await;
        assert_eq!(kind, Some(rustls::HandshakeKind::Resumed), "{v:?}");
    }
    let metrics = fetch_metrics(old.admin()).await;
    process::signal(new_pid, "TERM");
    let resumed = sample_value(&metrics, "seawall_tls_handshakes_total{kind=\"resumed\"}");
    assert_eq!(resumed, 2.0, "counted by the new process");
}

/// The test plays the old process: it hands over a manifest without the secrets.
#[tokio::test]
async fn a_new_process_refuses_a_hand_over_without_secrets() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let socket = dir.path().join("handover.sock");
    let server = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let child = process::cmd()
        .args(["run", "--config"])
        .arg(&path)
        .env("SEAWALL_UPGRADE_SOCKET", &socket)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stream, _) = server.accept().unwrap();
    stream
        .write_all(br#"{"listeners":[],"admin":false}"#)
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(answer.is_empty(), "never ready: {answer:?}");
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("malformed") && log.contains("secrets"),
        "{log}"
    );
}

/// Without `cookie_key`, a process seals stickiness cookies with a key of its own. The new process
/// receives that key with the sockets, so the clients the old one made sticky stay on their
/// targets (round robin would move a client that the new process did not recognise).
#[tokio::test]
async fn stickiness_cookies_of_the_old_process_hold_on_the_new_one() {
    let backends = [Backend::start("t0").await, Backend::start("t1").await];
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "seawall.toml",
        &format!(
            r#"
[admin]
bind = "127.0.0.1:0"

[runtime]
drain_timeout = "5s"

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ forward = "app" }}

[[target_groups]]
name = "app"
targets = ["{}", "{}"]
stickiness = {{ type = "lb_cookie", duration = "1h" }}
"#,
            backends[0].addr, backends[1].addr
        ),
    );
    let mut old = Proc::start(&path, &["web"], true).await;
    old.wait_ready().await;
    let addr = old.addr("web");
    // Who answered, and the AWSALB pair it set.
    let get = |cookie: Option<String>| async move {
        let mut c = h1(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
        let mut req = Request::get("/").header("host", "sticky.test");
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let got = read(c.send_request(req.body(empty()).unwrap()).await.unwrap()).await;
        assert_eq!(got.status, 200, "{}", got.text());
        let who: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        let pair = got
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|p| p.starts_with("AWSALB="))
            .expect("an AWSALB cookie");
        (who["id"].as_str().unwrap().to_string(), pair)
    };
    let (stuck, held) = get(None).await;
    for _ in 0..4 {
        assert_eq!(get(Some(held.clone())).await.0, stuck, "sticky before");
    }

    old.signal("USR2");
    let status = old.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}\n{}", old.log());
    let new_pid = logged_pid(&old.log(), "new process started").expect("the new pid is logged");

    for _ in 0..6 {
        assert_eq!(get(Some(held.clone())).await.0, stuck, "sticky after");
    }
    // Without the cookie the new process still spreads the requests.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(get(None).await.0);
    }
    process::signal(new_pid, "TERM");
    assert_eq!(seen.len(), 2, "{seen:?}");
}
