//! The admin server facing more than loopback: changes refused without a token, secrets kept out
//! of logs and answers, and a connection cap that keeps a flood on the admin port from reaching
//! the data plane.
mod common;
use common::process::Proc;
use common::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The admin server's connection cap (`admin::MAX_CONNECTIONS`).
const ADMIN_CONNECTIONS: usize = 64;

/// A request to the admin server on a fresh connection.
async fn admin_request(addr: SocketAddr, method: Method, path: &str, auth: Option<&str>) -> Got {
    let mut c = h1(TcpStream::connect(addr).await.unwrap()).await;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin")
        .header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let body = r#"{"target_group": "app", "targets": ["127.0.0.1:9"]}"#;
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        c.send_request(req.body(common::body(body)).unwrap()),
    )
    .await
    .expect("the admin server answers in time")
    .unwrap();
    read(resp).await
}

/// The admin socket's port on loopback (it may be bound to 0.0.0.0).
fn on_loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

const POSTS: [&str; 4] = [
    "/reload",
    "/upgrade",
    "/targets/register",
    "/targets/deregister",
];

fn exposed_config(admin_extra: &str) -> String {
    format!(
        r#"
[admin]
bind = "0.0.0.0:0"
{admin_extra}

[runtime]
drain_timeout = "2s"

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ fixed_response = {{ status = 200, body = "served" }} }}

[[target_groups]]
name = "app"
"#
    )
}

#[tokio::test]
async fn beyond_loopback_without_a_token_reads_are_served_and_changes_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "seawall.toml", &exposed_config(""));
    let mut p = Proc::start(&path, &["web"], true).await;
    let admin = on_loopback(p.admin());
    p.wait_ready().await;

    for read_only in ["/healthz", "/ready", "/metrics", "/config", "/targets"] {
        let got = admin_request(admin, Method::GET, read_only, None).await;
        assert_eq!(
            got.status,
            StatusCode::OK,
            "GET {read_only}: {}",
            got.text()
        );
    }
    for change in POSTS {
        let got = admin_request(admin, Method::POST, change, None).await;
        assert_eq!(
            got.status,
            StatusCode::FORBIDDEN,
            "{change}: {}",
            got.text()
        );
        let reason = got.json()["error"].as_str().unwrap().to_string();
        assert!(
            reason.contains("beyond loopback") && reason.contains("token"),
            "{change}: {reason}"
        );
        // A token sent anyway changes nothing: there is none to match.
        let got = admin_request(admin, Method::POST, change, Some("Bearer guess")).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{change}");
    }
    // Nothing was registered, nothing reloaded.
    let targets = admin_request(admin, Method::GET, "/targets", None)
        .await
        .json();
    assert_eq!(
        targets["target_groups"][0]["TargetHealthDescriptions"],
        serde_json::json!([])
    );
    let warned = |log: &str| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("beyond loopback"))
            .count()
    };
    assert_eq!(warned(&p.log()), 1, "one warning at load:\n{}", p.log());

    // A reload that sets a token opens the changes to whoever has it, and says no more of it.
    std::fs::write(&path, exposed_config("token = \"s3cret-t0ken\"")).unwrap();
    p.signal("HUP");
    let reloaded = eventually(Duration::from_secs(10), || async {
        admin_request(admin, Method::POST, "/reload", None)
            .await
            .status
            == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(reloaded, "{}", p.log());
    let got = admin_request(admin, Method::POST, "/reload", Some("Bearer s3cret-t0ken")).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    assert_eq!(warned(&p.log()), 1, "{}", p.log());

    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}

/// The admin token, the cookie key and a TLS key, every way seawall could show them: the log at
/// its most verbose through start, requests (one with the token), reloads (one that fails) and
/// shutdown; `GET /config` and `/targets`.
#[tokio::test]
async fn secrets_are_neither_logged_nor_shown() {
    const TOKEN: &str = "tok-5ecret-7f3a9c";
    const COOKIE_KEY: &str = "cookie-5ecret-0b1d2e3f4a5b6c";
    const ENV_TOKEN: &str = "env-5ecret-c0ffee";
    let backend = Backend::start("t").await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "site", &["localhost"]);
    let key_pem = std::fs::read_to_string(&cert.key).unwrap();
    // The key's base64 lines, long enough to mean something if they turned up.
    let key_lines: Vec<String> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect();
    assert!(!key_lines.is_empty());
    let config = |token: &str| {
        format!(
            r#"
[admin]
bind = "127.0.0.1:0"
token = "{token}"

[runtime]
drain_timeout = "2s"
cookie_key = "{COOKIE_KEY}"

[[certificates]]
name = "site"
cert = "site.pem"
key = "site-key.pem"

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["site"]
default_action = {{ forward = "app" }}

[[target_groups]]
name = "app"
targets = ["{}"]
stickiness = {{ type = "lb_cookie", duration = "1h" }}
"#,
            backend.addr
        )
    };
    let path = write_file(dir.path(), "seawall.toml", &config(TOKEN));
    let mut p = Proc::start_with(&path, &["web"], true, |c| {
        c.env("RUST_LOG", "trace")
            .env("SEAWALL_TEST_TOKEN", ENV_TOKEN);
    })
    .await;
    p.wait_ready().await;
    let admin = p.admin();

    let got = get(p.addr("web"), true, "localhost", "/").await;
    assert_eq!(got.status, 200, "{}", got.text());
    let shown_config = admin_request(admin, Method::GET, "/config", None).await;
    assert_eq!(shown_config.status, 200);
    let shown_targets = admin_request(admin, Method::GET, "/targets", None).await;
    let bearer = format!("Bearer {TOKEN}");
    let got = admin_request(admin, Method::POST, "/reload", Some(&bearer)).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let denied = admin_request(admin, Method::POST, "/reload", Some("Bearer wrong")).await;
    assert_eq!(denied.status, 401);
    // A file that fails to load (its error is logged), then one taking the token from the
    // environment.
    std::fs::write(
        &path,
        config(TOKEN).replace("drain_timeout = \"2s\"", "drain_timeout = 2"),
    )
    .unwrap();
    let failed = admin_request(admin, Method::POST, "/reload", Some(&bearer)).await;
    assert_eq!(failed.status, 422, "{}", failed.text());
    std::fs::write(&path, config("env:SEAWALL_TEST_TOKEN")).unwrap();
    let got = admin_request(admin, Method::POST, "/reload", Some(&bearer)).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let env_bearer = format!("Bearer {ENV_TOKEN}");
    let reloaded_config = admin_request(admin, Method::POST, "/reload", Some(&env_bearer)).await;
    assert_eq!(reloaded_config.status, 200, "{}", reloaded_config.text());
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());

    let log = p.log();
    assert!(log.contains("TRACE"), "the log ran at its most verbose");
    let answers = [
        ("GET /config", shown_config.text()),
        ("GET /targets", shown_targets.text()),
        ("POST /reload", reloaded_config.text()),
        ("a failed reload", failed.text()),
        ("the log", log),
    ];
    for (what, text) in &answers {
        for secret in [TOKEN, COOKIE_KEY, ENV_TOKEN] {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
        for line in &key_lines {
            assert!(!text.contains(line.as_str()), "{what} shows the TLS key");
        }
    }
}

/// Reads from `tcp` until the server closes it, `limit` passes or data arrives; whether the
/// server closed.
async fn closed_by_server(tcp: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, tcp.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_flood_on_the_admin_port_is_capped_and_the_data_plane_serves_through_it() {
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .admin("")
            .listener(Listener::http("web").default_action(&fixed("served")))
            .build(),
    );
    let admin = sw.admin();
    let extra = 36;
    let mut flood = Vec::new();
    for _ in 0..ADMIN_CONNECTIONS + extra {
        flood.push(TcpStream::connect(admin).await.unwrap());
    }
    // Every connection beyond the cap is closed as it is accepted; those within it wait for a
    // request head.
    // Watched all at once: one by one, the first ones would reach their head deadline.
    let watched = futures_util::future::join_all(flood.into_iter().map(|mut tcp| async move {
        let closed = closed_by_server(&mut tcp, Duration::from_secs(1)).await;
        (closed, tcp)
    }))
    .await;
    let closed = watched.iter().filter(|(closed, _)| *closed).count();
    let held: Vec<TcpStream> = watched
        .into_iter()
        .filter(|(closed, _)| !closed)
        .map(|(_, tcp)| tcp)
        .collect();
    assert_eq!(
        closed, extra,
        "the connections beyond the cap are closed at once"
    );
    assert_eq!(held.len(), ADMIN_CONNECTIONS);
    let mut late = TcpStream::connect(admin).await.unwrap();
    assert!(closed_by_server(&mut late, Duration::from_secs(2)).await);

    // The data plane does not notice.
    for _ in 0..20 {
        let got = get(sw.addr("web"), false, "a", "/").await;
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "served");
    }

    // Once the flood lets go, the admin server answers again.
    drop(held);
    let answered = eventually(Duration::from_secs(5), || async {
        match TcpStream::connect(admin).await {
            Ok(tcp) => {
                let mut c = h1(tcp).await;
                let req = Request::get("/healthz")
                    .header("host", "admin")
                    .body(empty())
                    .unwrap();
                matches!(c.send_request(req).await, Ok(r) if r.status() == 200)
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(answered, "/healthz answers once the flood has closed");
}

/// A connection that sends nothing, or only part of a head, is closed by the head deadline (10 s)
/// and gives its place back.
#[tokio::test]
async fn an_admin_connection_that_stalls_is_closed() {
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .admin("")
            .listener(Listener::http("web").default_action(&fixed("served")))
            .build(),
    );
    let start = Instant::now();
    let mut silent = TcpStream::connect(sw.admin()).await.unwrap();
    let mut partial = TcpStream::connect(sw.admin()).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut silent, Duration::from_secs(15)).await);
    assert!(closed_by_server(&mut partial, Duration::from_secs(5)).await);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(14),
        "{took:?}"
    );
    // A kept-alive connection that goes quiet after an answer is closed the same way.
    let mut idle = TcpStream::connect(sw.admin()).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    let quiet = Instant::now();
    assert!(closed_by_server(&mut idle, Duration::from_secs(15)).await);
    assert!(
        quiet.elapsed() >= Duration::from_secs(9),
        "{:?}",
        quiet.elapsed()
    );
}
