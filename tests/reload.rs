//! Reloading while traffic flows: whole-config swaps under load with no failed request,
//! certificate rotation picked up by the file watcher, rejected files and port clashes that change
//! nothing, listeners added and removed, target health kept across reloads, exactly one reload per
//! save (editor rename, Kubernetes symlink swap), and SIGHUP on the real binary.

mod common;
use common::process::{field, Proc};
use common::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use seawall::targets::State;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

const RELOADS_OK: &str = "seawall_config_reloads_total{result=\"success\"}";
const RELOADS_FAILED: &str = "seawall_config_reloads_total{result=\"failure\"}";

/// Replaces `path` the way editors and config tools do: a sibling temp file renamed over it, so
/// that the watcher never reads a half-written file.
fn replace(path: &Path, text: &str) {
    let name = path.file_name().unwrap().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// One plain listener `web` answering `body` itself.
fn fixed_config(body: &str) -> String {
    fixed_base(body).build()
}

/// [`fixed_config`], to add to.
fn fixed_base(body: &str) -> ConfigBuilder {
    ConfigBuilder::new().listener(Listener::http("web").default_action(&fixed(body)))
}

/// GET `path` on a fresh plain connection; the body as text, or what went wrong.
async fn try_text(addr: SocketAddr, path: &str) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut c = h1(tcp).await;
    let got = exchange(c.send_request(request(path))).await?;
    if got.status != 200 {
        return Err(format!("status {}: {}", got.status, got.text()));
    }
    Ok(got.text())
}

async fn text(addr: SocketAddr, path: &str) -> String {
    try_text(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

fn request(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "localhost")
        .body(empty())
        .unwrap()
}

/// Sends a request and reads the whole answer, within a deadline, turning every failure into a
/// description.
async fn exchange(
    response: impl std::future::Future<Output = Result<Response<Incoming>, hyper::Error>>,
) -> Result<Got, String> {
    let limit = Duration::from_secs(10);
    let resp = tokio::time::timeout(limit, response)
        .await
        .map_err(|_| "no response head within 10 s".to_string())?
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(limit, body.collect())
        .await
        .map_err(|_| "no complete body within 10 s".to_string())?
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Got {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// 100 reloads under load

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    A,
    B,
}

/// Two configurations that differ in a fixed response's body and in the target of their forward
/// (same group name, so a reload re-points the group rather than replacing it). The listeners'
/// identity (name, bind, protocol) is the same, so their sockets are kept.
fn load_config(which: Which, target: SocketAddr) -> String {
    let body = match which {
        Which::A => "fixed-a",
        Which::B => "fixed-b",
    };
    let rule = |l: Listener| l.rule(10, &path("/fixed"), &fixed(body));
    ConfigBuilder::new()
        .runtime("drain_timeout = \"5s\"")
        .self_signed("dev", &["localhost"])
        .listener(rule(Listener::http("web").forward("app")))
        .listener(rule(Listener::https("secure", &["dev"]).forward("app")))
        // Longer than the test: a target a reload takes away keeps its in-flight requests.
        .target_group(TargetGroup::new("app", &[target]).line("deregistration_delay = \"30s\""))
        .build()
}

/// Which configuration produced an answer; anything else is a failure.
fn classify(path: &str, got: Result<Got, String>) -> Result<Which, String> {
    let got = got?;
    if got.status != 200 {
        return Err(format!("{path}: status {}: {}", got.status, got.text()));
    }
    if path == "/fixed" {
        return match &*got.body {
            b"fixed-a" => Ok(Which::A),
            b"fixed-b" => Ok(Which::B),
            other => Err(format!("{path}: {:?}", String::from_utf8_lossy(other))),
        };
    }
    match serde_json::from_slice::<serde_json::Value>(&got.body) {
        Ok(v) if v["id"] == "a" => Ok(Which::A),
        Ok(v) if v["id"] == "b" => Ok(Which::B),
        _ => Err(format!("{path}: {}", got.text())),
    }
}

/// The three kinds of client the load test runs.
enum Client {
    /// HTTP/1.1, one kept-alive connection for the whole test.
    KeepAlive {
        addr: SocketAddr,
        conn: Option<hyper::client::conn::http1::SendRequest<Body>>,
    },
    /// HTTP/1.1, a new connection for every request.
    PerRequest { addr: SocketAddr },
    /// HTTP/2 over TLS (ALPN h2), one connection, requests one after another.
    H2 {
        addr: SocketAddr,
        conn: Option<hyper::client::conn::http2::SendRequest<Body>>,
    },
}

impl Client {
    async fn get(&mut self, path: &str) -> Result<Got, String> {
        match self {
            Client::KeepAlive { addr, conn } => {
                if conn.is_none() {
                    let tcp = TcpStream::connect(*addr).await.map_err(|e| e.to_string())?;
                    *conn = Some(h1(tcp).await);
                }
                let c = conn.as_mut().unwrap();
                let result = match c.ready().await {
                    Ok(()) => exchange(c.send_request(request(path))).await,
                    Err(e) => Err(format!("connection closed: {e}")),
                };
                if result.is_err() {
                    // Count the failure, then carry on with a new connection.
                    *conn = None;
                }
                result
            }
            Client::PerRequest { addr } => {
                let tcp = TcpStream::connect(*addr).await.map_err(|e| e.to_string())?;
                exchange(h1(tcp).await.send_request(request(path))).await
            }
            Client::H2 { addr, conn } => {
                if conn.is_none() {
                    let tls = tls_connect(*addr, &Tls::new("localhost").h2())
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                        return Err("ALPN did not choose h2".into());
                    }
                    *conn = Some(h2(tls).await);
                }
                let c = conn.as_mut().unwrap();
                let req = Request::get(format!("https://localhost{path}"))
                    .body(empty())
                    .unwrap();
                let result = exchange(c.send_request(req)).await;
                if result.is_err() {
                    *conn = None;
                }
                result
            }
        }
    }
}

/// What one client saw, split at the moment the last reload had returned.
#[derive(Default)]
struct Seen {
    before_final: Vec<Result<Which, String>>,
    after_final: Vec<Result<Which, String>>,
}

struct Load {
    stop: AtomicBool,
    /// Set once the last reload has returned: requests sent after that must see its config.
    final_done: AtomicBool,
}

async fn run_client(mut client: Client, load: Arc<Load>, after: Arc<AtomicUsize>) -> Seen {
    let mut seen = Seen::default();
    let mut i = 0usize;
    while !load.stop.load(Ordering::SeqCst) {
        let path = if i.is_multiple_of(2) {
            "/fixed"
        } else {
            "/echo"
        };
        i += 1;
        let is_after = load.final_done.load(Ordering::SeqCst);
        let got = classify(path, client.get(path).await);
        if is_after {
            seen.after_final.push(got);
            after.fetch_add(1, Ordering::SeqCst);
        } else {
            seen.before_final.push(got);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_reloads_under_load_fail_no_request() {
    let backend_a = Backend::start("a").await;
    let backend_b = Backend::start("b").await;
    let config = |w: Which| match w {
        Which::A => load_config(Which::A, backend_a.addr),
        Which::B => load_config(Which::B, backend_b.addr),
    };
    let sw = Seawall::start(&config(Which::A));
    let path = sw.dir.path().join("seawall.toml");
    let (web, secure) = (sw.addr("web"), sw.addr("secure"));

    let load = Arc::new(Load {
        stop: AtomicBool::new(false),
        final_done: AtomicBool::new(false),
    });
    let clients = [
        (
            "HTTP/1.1 keep-alive",
            Client::KeepAlive {
                addr: web,
                conn: None,
            },
        ),
        ("HTTP/1.1 new connections", Client::PerRequest { addr: web }),
        (
            "HTTP/2 over TLS",
            Client::H2 {
                addr: secure,
                conn: None,
            },
        ),
    ];
    let mut tasks = Vec::new();
    for (name, client) in clients {
        let after = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(run_client(client, load.clone(), after.clone()));
        tasks.push((name, after, task));
    }

    // Let every client get going on the first configuration.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let generation_before = sw.config_generation();
    let mut which = Which::A;
    for i in 0..100 {
        which = if which == Which::A {
            Which::B
        } else {
            Which::A
        };
        replace(&path, &config(which));
        let info = sw
            .running
            .reload()
            .await
            .unwrap_or_else(|e| panic!("reload {i}: {}", e.to_json()));
        assert!(info.generation > generation_before);
        // Room for the clients' requests to land between reloads.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = which;
    load.final_done.store(true, Ordering::SeqCst);
    let enough = eventually(PATIENCE, || {
        let done = tasks
            .iter()
            .all(|(_, after, _)| after.load(Ordering::SeqCst) >= 20);
        async move { done }
    })
    .await;
    load.stop.store(true, Ordering::SeqCst);

    let mut report = Vec::new();
    for (name, _, task) in tasks {
        let seen = tokio::time::timeout(PATIENCE, task)
            .await
            .unwrap_or_else(|_| panic!("{name}: a request hung"))
            .unwrap();
        let failures: Vec<&String> = seen
            .before_final
            .iter()
            .chain(&seen.after_final)
            .filter_map(|r| r.as_ref().err())
            .collect();
        assert!(
            failures.is_empty(),
            "{name}: {} of {} requests failed, first: {}",
            failures.len(),
            seen.before_final.len() + seen.after_final.len(),
            failures[0]
        );
        let count = |w| {
            seen.before_final
                .iter()
                .filter(|r| r.as_ref() == Ok(&w))
                .count()
        };
        // Both configurations answered this client, so reloads reached its connection.
        assert!(
            count(Which::A) > 0 && count(Which::B) > 0,
            "{name}: answers from A {} and from B {}",
            count(Which::A),
            count(Which::B)
        );
        let stale = seen
            .after_final
            .iter()
            .filter(|r| r.as_ref() != Ok(&last))
            .count();
        assert_eq!(
            stale,
            0,
            "{name}: {stale} of {} answers after the last reload were not from it",
            seen.after_final.len()
        );
        report.push(format!(
            "{name}: {} requests",
            seen.before_final.len() + seen.after_final.len()
        ));
    }
    assert!(enough, "every client got 20 answers after the last reload");
    assert_eq!(sw.metric(RELOADS_FAILED), 0.0);
    // The API asked for 100; the watcher may have added some of its own for the same writes.
    assert!(sw.metric(RELOADS_OK) >= 100.0, "{report:?}");
    let generation = sw.config_generation();
    assert!(generation >= generation_before + 100);
    assert_eq!(
        sw.metric("seawall_config_generation"),
        generation as f64,
        "the gauge follows the config in force"
    );
    // Same sockets throughout: the listeners' identity never changed.
    assert_eq!((sw.addr("web"), sw.addr("secure")), (web, secure));
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// An https listener whose certificate comes from `site.pem` / `site-key.pem` beside the config.
const CERT_FILE_CONFIG: &str = r#"
[[certificates]]
name = "site"
cert = "site.pem"
key = "site-key.pem"

[[listeners]]
name = "secure"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["site"]
default_action = { fixed_response = { status = 200, content_type = "text/plain", body = "ok" } }
"#;

async fn served_certificate(addr: SocketAddr) -> Vec<String> {
    let tls = tls_connect(addr, &Tls::new("localhost"))
        .await
        .expect("handshake");
    served_names(&tls)
}

#[tokio::test]
async fn rotated_certificate_files_are_served_to_new_handshakes() {
    let sw = Seawall::start_with(CERT_FILE_CONFIG, |dir| {
        write_cert(dir, "site", &["old.example.test"]);
    });
    let addr = sw.addr("secure");
    assert_eq!(served_certificate(addr).await, ["old.example.test"]);
    // A handshake made before the rotation keeps its connection (and certificate) afterwards.
    let before = tls_connect(addr, &Tls::new("localhost")).await.unwrap();

    // The new pair is written aside, then renamed into place, as cert-manager or an operator's
    // script would; nothing but the file watcher tells seawall.
    let dir = sw.dir.path();
    let next = write_cert(dir, "next", &["new.example.test"]);
    std::fs::rename(&next.cert, dir.join("site.pem")).unwrap();
    std::fs::rename(&next.key, dir.join("site-key.pem")).unwrap();

    // Every handshake during the rotation succeeds: a certificate and key renamed one after the
    // other are never served mismatched.
    let deadline = Instant::now() + PATIENCE;
    let mut last = served_certificate(addr).await;
    while last != ["new.example.test"] && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        last = served_certificate(addr).await;
    }
    let rotated = last == ["new.example.test"];
    assert!(rotated, "still serving {last:?}");
    assert!(sw.config_generation() >= 2);
    // Counted just after the swap that already serves.
    assert!(eventually(PATIENCE, || async { sw.metric(RELOADS_OK) >= 1.0 }).await);

    let got = {
        let mut c = h1(before).await;
        exchange(c.send_request(request("/"))).await.unwrap()
    };
    assert_eq!(got.text(), "ok", "the older connection still serves");
}

// ---------------------------------------------------------------------------------------------
// Rejected reloads

/// 1-based line of the first line of `text` containing `marker`.
fn line_of(text: &str, marker: &str) -> u64 {
    text.lines().position(|l| l.contains(marker)).unwrap() as u64 + 1
}

#[tokio::test]
async fn broken_config_is_rejected_and_the_old_one_keeps_serving() {
    let good = fixed_base("good").admin("").build();
    let sw = Seawall::start(&good);
    let path = sw.dir.path().join("seawall.toml");
    let web = sw.addr("web");
    assert_eq!(text(web, "/").await, "good");

    let broken = [
        (
            "TOML syntax",
            format!(
                "{}\n[[listeners] # unclosed\nname = \"x\"\n",
                fixed_config("syntax")
            ),
            "[[listeners] # unclosed",
        ),
        (
            "duplicate rule priority",
            format!(
                "{}\n  [[listeners.rules]]\n  priority = 7\n  match = {{ path = [\"/a\"] }}\n  action = {{ fixed_response = {{ status = 200 }} }}\n\n  [[listeners.rules]]\n  priority = 7 # second\n  match = {{ path = [\"/b\"] }}\n  action = {{ fixed_response = {{ status = 200 }} }}\n",
                fixed_config("rules")
            ),
            "priority = 7 # second",
        ),
        (
            "missing certificate file",
            format!(
                "[[certificates]]\nname = \"gone\"\ncert = \"gone.pem\"\nkey = \"gone-key.pem\"\n{}",
                fixed_config("cert")
            ),
            "cert = \"gone.pem\"",
        ),
    ];
    for (n, (what, text_, marker)) in broken.iter().enumerate() {
        replace(&path, text_);
        let err = sw.running.reload().await.expect_err(what).to_json();
        assert_eq!(err["result"], "failure", "{what}: {err}");
        let first = &err["errors"][0];
        let file = first["file"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {err}"));
        assert!(file.ends_with("seawall.toml"), "{what}: {err}");
        let want_line = line_of(text_, marker);
        assert_eq!(first["line"], want_line, "{what}: {err}");
        assert!(
            !first["reason"].as_str().unwrap_or("").is_empty(),
            "{what}: {err}"
        );

        // Nothing changed: the same listener answers with the old configuration.
        assert_eq!(text(web, "/").await, "good", "{what}");
        assert_eq!(sw.config_generation(), 1, "{what}");

        // Counted, and visible on the admin server's /metrics (the watcher may have tried the
        // same file too; both fail).
        let metrics = fetch_metrics(sw.admin()).await;
        let failures = sample_value(&metrics, RELOADS_FAILED);
        assert!(failures >= (n + 1) as f64, "{what}: {failures}");
        assert_eq!(sw.metric(RELOADS_OK), 0.0, "{what}");
    }

    // The file in place names a certificate that is missing. Once it appears the file loads,
    // with no other trigger than the watcher: the files a rejected config names are watched.
    write_cert(sw.dir.path(), "gone", &["localhost"]);
    let loaded = eventually(PATIENCE, || async {
        try_text(web, "/").await.as_deref() == Ok("cert")
    })
    .await;
    assert!(loaded, "the config loads once its certificate exists");
    assert_eq!(sw.config_generation(), 2);
    // Counted just after the swap that already serves.
    assert!(eventually(PATIENCE, || async { sw.metric(RELOADS_OK) == 1.0 }).await);
}

const LAST_SUCCESS: &str = "seawall_config_last_reload_success_timestamp_seconds";

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64
}

/// Waits until the wall clock's whole seconds are past `t`, so that a gauge set now would move.
async fn past(t: f64) {
    assert!(
        eventually(PATIENCE, || async { unix_now() > t }).await,
        "the clock never passed {t}"
    );
}

#[tokio::test]
async fn last_success_timestamp_moves_on_a_successful_reload_only() {
    let before_start = unix_now();
    let sw = Seawall::start(&fixed_config("one"));
    let path = sw.dir.path().join("seawall.toml");
    let started = sw.metric(LAST_SUCCESS);
    assert!(
        (before_start..=unix_now()).contains(&started),
        "set at start: {started}, started at {before_start}"
    );

    past(started).await;
    replace(
        &path,
        &format!(
            "{}
[[listeners]
",
            fixed_config("broken")
        ),
    );
    sw.running.reload().await.expect_err("a broken file");
    assert_eq!(sw.metric(LAST_SUCCESS), started, "a failed reload");
    // The watcher may try the same file too, a little later; it fails as well.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sw.metric(LAST_SUCCESS), started, "a failed reload");
    assert!(sw.metric(RELOADS_FAILED) >= 1.0);

    replace(&path, &fixed_config("two"));
    let before = unix_now();
    sw.running.reload().await.unwrap();
    let first = sw.metric(LAST_SUCCESS);
    assert!(first > started, "{first} after {started}");
    assert!((before..=unix_now()).contains(&first), "{first}");
    assert_eq!(text(sw.addr("web"), "/").await, "two");

    // Every successful reload sets it, not only the first, and one of an unchanged file too.
    past(first).await;
    let before = unix_now();
    sw.running.reload().await.unwrap();
    let second = sw.metric(LAST_SUCCESS);
    assert!(second > first, "{second} after {first}");
    assert!((before..=unix_now()).contains(&second), "{second}");
}

#[tokio::test]
async fn port_in_use_fails_the_whole_reload() {
    let sw = Seawall::start(&fixed_config("one"));
    let path = sw.dir.path().join("seawall.toml");
    let web = sw.addr("web");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();

    // A free listener first, so that it is bound (and must be let go) before the clash.
    let clashing = format!(
        r#"{}
[[listeners]]
name = "free"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ fixed_response = {{ status = 200, content_type = "text/plain", body = "free" }} }}

[[listeners]]
name = "taken"
bind = "127.0.0.1:{port}"
protocol = "http"
default_action = {{ fixed_response = {{ status = 200, content_type = "text/plain", body = "taken" }} }}
"#,
        fixed_config("two")
    );
    replace(&path, &clashing);
    let err = sw
        .running
        .reload()
        .await
        .expect_err("port in use")
        .to_json();
    let first = &err["errors"][0];
    assert_eq!(first["listener"], "taken", "{err}");
    assert!(
        first["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("127.0.0.1:{port}"))),
        "{err}"
    );

    assert_eq!(text(web, "/").await, "one", "the old configuration serves");
    assert_eq!(sw.running.listener_addr("free"), None);
    assert_eq!(sw.running.listener_addr("taken"), None);
    assert_eq!(sw.config_generation(), 1);
    assert!(sw.metric(RELOADS_FAILED) >= 1.0);

    // With the port free, the same file loads: the port was the only problem.
    drop(taken);
    sw.running.reload().await.unwrap();
    assert_eq!(text(web, "/").await, "two");
    assert_eq!(text(sw.addr("taken"), "/").await, "taken");
    assert_eq!(text(sw.addr("free"), "/").await, "free");
}

// ---------------------------------------------------------------------------------------------
// Listeners

#[tokio::test]
async fn listener_added_by_reload_serves_and_removed_one_drains() {
    let backend = Backend::start("b").await;
    // Timeouts longer than the test's patience: the idle connections below must be closed by
    // the drain, not by a timeout.
    let base = fixed_base("web")
        .runtime("header_timeout = \"60s\"\nidle_timeout = \"60s\"")
        .target_group(TargetGroup::new("app", &[backend.addr]));
    let with_extra = base
        .clone()
        .listener(Listener::http("extra").forward("app"))
        .build();
    let base = base.build();
    let sw = Seawall::start(&base);
    let path = sw.dir.path().join("seawall.toml");
    assert_eq!(sw.running.listener_addr("extra"), None);

    replace(&path, &with_extra);
    sw.running.reload().await.unwrap();
    let extra = sw.addr("extra");
    let got: serde_json::Value = serde_json::from_str(&text(extra, "/hello").await).unwrap();
    assert_eq!(got["id"], "b");

    // A request in flight on the listener, and an idle kept-alive connection.
    let hits = backend.hits();
    let in_flight = tokio::spawn(async move {
        let tcp = TcpStream::connect(extra).await.unwrap();
        let mut c = h1(tcp).await;
        exchange(c.send_request(request("/delay?ms=3000"))).await
    });
    // An idle kept-alive connection (one request answered), and one that has sent nothing.
    let mut kept = TcpStream::connect(extra).await.unwrap();
    kept.write_all(b"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let silent = TcpStream::connect(extra).await.unwrap();
    assert!(
        eventually(PATIENCE, || async { backend.hits() > hits }).await,
        "the slow request reached the backend"
    );

    replace(&path, &base);
    sw.running.reload().await.unwrap();
    assert!(
        !in_flight.is_finished(),
        "the request was still in flight during the reload"
    );
    assert_eq!(sw.running.listener_addr("extra"), None);
    let refused = eventually(PATIENCE, || async {
        matches!(
            TcpStream::connect(extra).await,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    })
    .await;
    assert!(
        refused,
        "new connections to the removed listener are refused"
    );

    // Idle connections are closed by the drain, not left to the idle or header timeouts (60 s).
    for (what, mut conn) in [("kept-alive", kept), ("silent", silent)] {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the {what} connection was closed");
    }

    let got = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("the in-flight request finished")
        .unwrap()
        .expect("the in-flight request succeeded");
    assert_eq!(
        (got.status.as_u16(), got.text()),
        (200, "delayed 3000".into())
    );
    assert_eq!(text(sw.addr("web"), "/").await, "web");
}

// ---------------------------------------------------------------------------------------------
// Target health across reloads

fn health_config(targets: &[SocketAddr], healthy_threshold: u32, body: &str) -> String {
    ConfigBuilder::new()
        .listener(
            Listener::http("web")
                .forward("app")
                .rule(1, &path("/fixed"), &fixed(body)),
        )
        .target_group(
            TargetGroup::new("app", targets)
                .line("deregistration_delay = \"1s\"\nconnect_timeout = \"500ms\"")
                .health_check(&format!(
                    "interval = \"200ms\"\ntimeout = \"100ms\"\n\
                     healthy_threshold = {healthy_threshold}\nunhealthy_threshold = 2"
                )),
        )
        .build()
}

#[tokio::test]
async fn target_health_survives_reload_and_removed_targets_drain() {
    let live = Backend::start("live").await;
    let dead = dead_port();
    let sw = Seawall::start(&health_config(&[dead, live.addr], 2, "one"));
    let path = sw.dir.path().join("seawall.toml");
    let group = sw.group("app").unwrap();
    let target = |addr: SocketAddr| {
        group
            .members()
            .iter()
            .find(|t| t.addr == addr)
            .cloned()
            .unwrap()
    };
    let (dead_t, live_t) = (target(dead), target(live.addr));
    let settled = eventually(PATIENCE, || async {
        dead_t.state() == State::Unhealthy && live_t.state() == State::Healthy
    })
    .await;
    assert!(
        settled,
        "health checks settle: dead {:?}, live {:?}",
        dead_t.state(),
        live_t.state()
    );

    // A reload that changes the group's settings (and so restarts its checker) and a rule.
    replace(&path, &health_config(&[dead, live.addr], 3, "two"));
    sw.running.reload().await.unwrap();
    assert_eq!(text(sw.addr("web"), "/fixed").await, "two");
    assert!(Arc::ptr_eq(&target(dead), &dead_t), "the same target");
    assert!(Arc::ptr_eq(&target(live.addr), &live_t), "the same target");
    // Sampled for a while: a reset to initial would show at once, before the checker could
    // take the dead target down again.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        assert_eq!(dead_t.state(), State::Unhealthy, "kept, not reset");
        assert_eq!(live_t.state(), State::Healthy, "kept, not reset");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A reload that takes the live target away: it drains, then goes after the delay.
    let removed_at = Instant::now();
    replace(&path, &health_config(&[dead], 3, "three"));
    sw.running.reload().await.unwrap();
    assert_eq!(live_t.state(), State::Draining);
    assert!(
        group.members().iter().any(|t| Arc::ptr_eq(t, &live_t)),
        "listed while draining"
    );
    assert_eq!(dead_t.state(), State::Unhealthy);
    let gone = eventually(PATIENCE, || async {
        !group.members().iter().any(|t| t.addr == live.addr)
    })
    .await;
    assert!(gone, "dropped after deregistration_delay");
    assert!(
        removed_at.elapsed() >= Duration::from_secs(1),
        "not before deregistration_delay: {:?}",
        removed_at.elapsed()
    );
    assert!(live_t.closed().is_cancelled());
    assert_eq!(dead_t.state(), State::Unhealthy);
}

// ---------------------------------------------------------------------------------------------
// Exactly one reload per save

/// Waits until the success count reaches `want`, then long enough for any further reload the
/// same save might cause, and returns the count then.
async fn settled_reloads(metric: impl Fn() -> f64, want: f64) -> f64 {
    eventually(PATIENCE, || async { metric() >= want }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    metric()
}

#[tokio::test]
async fn editor_save_reloads_exactly_once() {
    let sw = Seawall::start(&fixed_config("one"));
    let path = sw.dir.path().join("seawall.toml");
    // At once after start: a change made while the watcher is being set up is not lost.
    replace(&path, &fixed_config("two"));
    let count = settled_reloads(|| sw.metric(RELOADS_OK), 1.0).await;
    assert_eq!(count, 1.0, "one reload for one save");
    assert_eq!(sw.metric(RELOADS_FAILED), 0.0);
    assert_eq!(text(sw.addr("web"), "/").await, "two");

    // A second save, written in two steps and renamed like vim does (backup, write, rename).
    let tmp = path.with_file_name("seawall.toml~");
    std::fs::write(&tmp, fixed_config("three")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let count = settled_reloads(|| sw.metric(RELOADS_OK), 2.0).await;
    assert_eq!(count, 2.0);
    assert_eq!(text(sw.addr("web"), "/").await, "three");

    // Touching the file, or writing an unrelated file beside it, changes nothing.
    std::fs::write(sw.dir.path().join("notes.txt"), "x").unwrap();
    let same = std::fs::read(&path).unwrap();
    std::fs::write(&path, same).unwrap();
    let count = settled_reloads(|| sw.metric(RELOADS_OK), 2.0).await;
    assert_eq!(count, 2.0, "no reload for an event that changed nothing");
}

/// Kubernetes' atomic writer: `..data` points at a timestamped folder and the visible file is a
/// symlink through it; an update writes a new folder, points `..data_tmp` at it and renames that
/// over `..data`, then deletes the old folder.
struct ConfigMapDir {
    dir: PathBuf,
    version: usize,
}

impl ConfigMapDir {
    fn new(dir: &Path, text: &str) -> Self {
        let mut d = ConfigMapDir {
            dir: dir.to_path_buf(),
            version: 0,
        };
        d.publish(text);
        std::os::unix::fs::symlink("..data/seawall.toml", dir.join("seawall.toml")).unwrap();
        d
    }

    fn version_dir(&self, v: usize) -> PathBuf {
        self.dir.join(format!("..v{v}"))
    }

    fn publish(&mut self, text: &str) {
        self.version += 1;
        let v = self.version_dir(self.version);
        std::fs::create_dir(&v).unwrap();
        std::fs::write(v.join("seawall.toml"), text).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..v{}", self.version), &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    fn remove_old(&self) {
        std::fs::remove_dir_all(self.version_dir(self.version - 1)).unwrap();
    }
}

#[tokio::test]
async fn kubernetes_symlink_swap_reloads_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cm = ConfigMapDir::new(tmp.path(), &fixed_config("v1"));
    let path = tmp.path().join("seawall.toml");
    let sw = Seawall::start_file(tmp, &path);
    let web = sw.addr("web");
    let ok = || sw.metric(RELOADS_OK);
    assert_eq!(text(web, "/").await, "v1");

    cm.publish(&fixed_config("v2"));
    assert_eq!(
        settled_reloads(ok, 1.0).await,
        1.0,
        "one reload for one swap"
    );
    assert_eq!(text(web, "/").await, "v2");

    // The old version's folder goes: nothing to reload.
    cm.remove_old();
    assert_eq!(settled_reloads(ok, 1.0).await, 1.0);

    cm.publish(&fixed_config("v3"));
    assert_eq!(settled_reloads(ok, 2.0).await, 2.0);
    assert_eq!(text(web, "/").await, "v3");
    cm.remove_old();

    // The folder the symlinks lead to now is watched too: a change made inside it (not how
    // Kubernetes writes, but how a person on the node might) is seen.
    replace(
        &cm.version_dir(3).join("seawall.toml"),
        &fixed_config("edited"),
    );
    assert_eq!(settled_reloads(ok, 3.0).await, 3.0);
    assert_eq!(text(web, "/").await, "edited");
    assert_eq!(sw.metric(RELOADS_FAILED), 0.0);
    sw.running.stop();
}

// ---------------------------------------------------------------------------------------------
// SIGHUP, on the real binary

/// The generations of the `config reloaded` lines caused by SIGHUP, in order.
fn sighup_reloads(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("config reloaded") && field(l, "cause") == Some("SIGHUP"))
        .filter_map(|l| field(l, "generation")?.parse().ok())
        .collect()
}

#[tokio::test]
async fn sighup_reloads_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, fixed_config("one")).unwrap();
    let mut p = Proc::start(&path, &["web"], false).await;
    let web = p.addr("web");

    // At once, with nothing changed: SIGHUP is a request, never coalesced away, and it must not
    // find the process without its handler (SIGHUP's default action ends a process).
    p.signal("HUP");
    assert!(
        eventually(PATIENCE, || async { !sighup_reloads(&p.log()).is_empty() }).await,
        "no SIGHUP reload:\n{}",
        p.log()
    );
    assert_eq!(sighup_reloads(&p.log()), [2]);
    assert_eq!(text(web, "/").await, "one");

    replace(&path, &fixed_config("two"));
    p.signal("HUP");
    assert!(
        eventually(PATIENCE, || async { sighup_reloads(&p.log()).len() == 2 }).await,
        "no second SIGHUP reload:\n{}",
        p.log()
    );
    // The file watcher may have loaded the same file first; either way "two" is in force.
    assert_eq!(text(web, "/").await, "two", "{}", p.log());

    p.signal("TERM");
    let status = p.wait_exit(PATIENCE).await;
    assert!(status.success(), "{status}:\n{}", p.log());
    let log = p.log();
    assert!(!log.contains("reload failed"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Target groups removed by a reload

#[tokio::test]
async fn request_in_flight_to_a_removed_group_completes_then_its_targets_close() {
    let backend = Backend::start("old").await;
    let with_group = |rule: bool| {
        let rule = if rule {
            "  [[listeners.rules]]\n  priority = 1\n  match = { host = [\"old.test\"] }\n  action = { forward = \"old\" }\n\n[[target_groups]]\nname = \"old\"\ntargets = [\"BACKEND\"]\nderegistration_delay = \"2s\"\n"
        } else {
            ""
        };
        format!(
            "{}{}",
            fixed_config("web"),
            rule.replace("BACKEND", &backend.addr.to_string())
        )
    };
    let sw = Seawall::start(&with_group(true));
    let path = sw.dir.path().join("seawall.toml");
    let web = sw.addr("web");
    let in_flight = tokio::spawn(async move {
        let tcp = TcpStream::connect(web).await.unwrap();
        let mut c = h1(tcp).await;
        let req = Request::get("/delay?ms=1000")
            .header("host", "old.test")
            .body(empty())
            .unwrap();
        exchange(c.send_request(req)).await
    });
    assert!(
        eventually(PATIENCE, || async { backend.hits() > 0 }).await,
        "the slow request reached the backend"
    );

    let target = sw.group("old").unwrap().members()[0].clone();

    replace(&path, &with_group(false));
    sw.running.reload().await.unwrap();
    assert!(sw.group("old").is_none());
    assert!(!in_flight.is_finished());
    assert_eq!(target.state(), State::Draining);
    assert!(!target.closed().is_cancelled());
    let got = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("the in-flight request finished")
        .unwrap()
        .expect("the in-flight request succeeded");
    assert_eq!(
        (got.status.as_u16(), got.text()),
        (200, "delayed 1000".into())
    );
    // Once the group's deregistration_delay is over, what is left open to it is closed.
    assert!(eventually(PATIENCE, || async { target.closed().is_cancelled() }).await);
}

// ---------------------------------------------------------------------------------------------
// `[runtime]` and `[admin]` settings across a reload

/// [`fixed_config`] with a `[runtime]` section.
fn runtime_config(runtime: &str, body: &str) -> String {
    fixed_base(body).runtime(runtime).build()
}

/// A keep-alive connection that sent one GET; whether its answer came within `wait`.
async fn answered_within(addr: SocketAddr, wait: Duration) -> (TcpStream, bool) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answered = answered(&mut tcp, wait).await;
    (tcp, answered)
}

/// Whether the head of an answer arrives on `tcp` within `wait`.
async fn answered(tcp: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    matches!(
        tokio::time::timeout(wait, tcp.read(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"HTTP/1.1 200")
    )
}

/// A listener kept across a reload takes its new `max_connections` either way: raised, a
/// connection waiting in the accept queue is served at once; lowered below what is open, no new
/// connection is served until enough of the open ones have ended.
#[tokio::test]
async fn max_connections_changes_apply_to_a_listener_already_serving() {
    // Long enough to tell "waits in the accept queue" from "answered", which takes milliseconds.
    const WAIT: Duration = Duration::from_millis(700);
    let sw = Seawall::start(&runtime_config("max_connections = 1", "x"));
    let path = sw.dir.path().join("seawall.toml");
    let web = sw.addr("web");

    let (first, ok) = answered_within(web, PATIENCE).await;
    assert!(ok, "the first connection");
    let (mut second, ok) = answered_within(web, WAIT).await;
    assert!(
        !ok,
        "a second connection was served under max_connections = 1"
    );

    replace(&path, &runtime_config("max_connections = 2", "x"));
    sw.running.reload().await.unwrap();
    assert!(
        answered(&mut second, PATIENCE).await,
        "the waiting connection once the limit is 2"
    );

    // Both are open when the limit drops to 1: the first to end frees no room.
    replace(&path, &runtime_config("max_connections = 1", "x"));
    sw.running.reload().await.unwrap();
    drop(first);
    let (mut third, ok) = answered_within(web, WAIT).await;
    assert!(!ok, "two connections served under max_connections = 1");
    drop(second);
    assert!(
        answered(&mut third, PATIENCE).await,
        "the waiting connection once the others ended"
    );
}

/// `admin.bind` and `runtime.workers` are read once, at start. A reload that changes them says so
/// (in its answer and in `GET /config`) instead of silently keeping the old values, and stops
/// saying so once the file is back to what the process runs with.
#[tokio::test]
async fn settings_read_at_start_are_reported_as_needing_a_restart() {
    let config = |admin: &str, workers: usize, body: &str| {
        format!(
            "[admin]\nbind = \"{admin}\"\n{}",
            runtime_config(&format!("workers = {workers}"), body)
        )
    };
    let sw = Seawall::start(&config("127.0.0.1:0", 1, "one"));
    let path = sw.dir.path().join("seawall.toml");
    let admin = sw.admin();
    let restart_needed = || async move {
        let body = text(admin, "/config").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["restart_needed"].clone()
    };
    assert_eq!(restart_needed().await, serde_json::json!([]));

    let elsewhere = dead_port();
    replace(&path, &config(&elsewhere.to_string(), 2, "two"));
    let info = sw.running.reload().await.unwrap();
    assert_eq!(info.restart_needed, ["admin.bind", "runtime.workers"]);
    assert_eq!(
        restart_needed().await,
        serde_json::json!(["admin.bind", "runtime.workers"])
    );
    // The admin server is still where it started, and the rest of the file applied.
    assert_eq!(sw.admin(), admin);
    assert_eq!(text(sw.addr("web"), "/").await, "two");

    replace(&path, &config("127.0.0.1:0", 1, "two"));
    let info = sw.running.reload().await.unwrap();
    assert!(info.restart_needed.is_empty(), "{:?}", info.restart_needed);
    assert_eq!(restart_needed().await, serde_json::json!([]));
}

#[tokio::test]
async fn a_reload_failing_in_compile_leaves_the_target_registry_as_it_was() {
    let backend = Backend::start("a").await;
    let app = || TargetGroup::new("app", &[backend.addr]);
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .listener(Listener::http("web").forward("app"))
            .target_group(app())
            .build(),
    );
    let names = |groups: &[Arc<seawall::targets::GroupState>]| -> Vec<String> {
        groups.iter().map(|g| g.name.to_string()).collect()
    };
    let before = sw.groups();
    let members_before = before[0].members().clone();

    // Valid up to the compile step: a new group beside a certificate that cannot be read.
    let broken = ConfigBuilder::new()
        .raw("[[certificates]]\nname = \"gone\"\ncert = \"gone.pem\"\nkey = \"gone-key.pem\"")
        .listener(Listener::http("web").forward("extra"))
        .target_group(app())
        .target_group(TargetGroup::new("extra", &[dead_port()]))
        .build();
    replace(&sw.dir.path().join("seawall.toml"), &broken);
    sw.running
        .reload()
        .await
        .expect_err("the certificate is missing");

    let after = sw.groups();
    assert_eq!(names(&after), names(&before), "no group was added");
    assert!(Arc::ptr_eq(&after[0], &before[0]), "the same state");
    assert!(
        Arc::ptr_eq(&after[0].members(), &members_before),
        "membership untouched"
    );
}
