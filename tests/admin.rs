//! The admin API's target endpoints (ALB's DescribeTargetHealth, RegisterTargets and
//! DeregisterTargets) and the admin token, and the target-group behaviours they make visible:
//! draining, outstanding counts, least outstanding requests, slow start and weighted random, all
//! through the proxy to real backends on loopback.
mod common;
use common::*;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use seawall::targets::State;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(10);

/// The admin server on port 0 (with `admin_extra` in `[admin]`), an http listener "web" that
/// forwards to the group "app", and the target groups `groups`.
fn config(admin_extra: &str, groups: &[TargetGroup]) -> String {
    ConfigBuilder::new()
        .admin(admin_extra)
        .runtime("drain_timeout = \"2s\"")
        .listener(Listener::http("web").forward("app"))
        .target_groups(groups.iter().cloned())
        .build()
}

/// One target group; `extra` lines go in its table.
fn group(name: &str, targets: &[SocketAddr], extra: &str) -> TargetGroup {
    TargetGroup::new(name, targets).line(extra)
}

/// One admin request on a fresh connection.
async fn admin(
    sw: &Seawall,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Got {
    admin_at(sw.admin(), method, path, headers, common::body(body)).await
}

async fn admin_at(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Got {
    let mut c = h1(TcpStream::connect(addr).await.unwrap()).await;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(PATIENCE, c.send_request(req.body(body).unwrap()))
        .await
        .expect("admin answers in time")
        .unwrap();
    read(resp).await
}

/// `POST /targets/<op>` for `addrs` in `group`, without a token.
async fn change(sw: &Seawall, op: &str, group: &str, addrs: &[SocketAddr]) -> Got {
    let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let body = json!({ "target_group": group, "targets": addrs }).to_string();
    admin(
        sw,
        Method::POST,
        &format!("/targets/{op}"),
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// `GET /targets`, parsed.
async fn targets(sw: &Seawall) -> Value {
    let got = admin(sw, Method::GET, "/targets", &[], Bytes::new()).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    got.json()
}

/// One group's entry in a `/targets` answer.
fn group_of<'a>(all: &'a Value, name: &str) -> &'a Value {
    all["target_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no group {name} in {all}"))
}

/// A target's description in one group's entry.
fn target_of(group: &Value, addr: SocketAddr) -> Option<&Value> {
    group["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["Target"]["Id"] == addr.ip().to_string() && d["Target"]["Port"] == addr.port())
}

fn state_of(group: &Value, addr: SocketAddr) -> String {
    target_of(group, addr).unwrap_or_else(|| panic!("{addr} not in {group}"))["TargetHealth"]
        ["State"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sum of `InFlight` over a group's targets.
fn in_flight(group: &Value) -> u64 {
    group["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["InFlight"].as_u64().unwrap())
        .sum()
}

/// Sets a target healthy the way a passing health check does. The balancing tests need healthy
/// targets at a known moment rather than a test of the checker; the backends answer 200 on the
/// health-check path, so the checker, where it runs, agrees.
fn set_healthy(sw: &Seawall, group: &str, addr: SocketAddr) {
    let g = sw.group(group).unwrap();
    let t = g
        .members()
        .iter()
        .find(|t| t.addr == addr && t.state() != State::Draining)
        .unwrap_or_else(|| panic!("{addr} not registered in {group}"))
        .clone();
    t.set_state(State::Healthy, None);
}

/// A GET through the proxy; answers the backend's id (its echo JSON) or the body for non-echo
/// paths.
async fn proxied(sw: &Seawall, path: &str) -> Got {
    tokio::time::timeout(PATIENCE, get(sw.addr("web"), false, "app.test", path))
        .await
        .expect("proxied request answers in time")
}

async fn backend_id(sw: &Seawall) -> String {
    let got = proxied(sw, "/").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    got.json()["id"].as_str().unwrap().to_string()
}

/// Polls `cond` on `/targets` until it holds or `limit` passes; returns the last answer.
async fn wait_targets(sw: &Seawall, limit: Duration, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let all = targets(sw).await;
        if cond(&all) || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_json_error(got: &Got, status: StatusCode) {
    assert_eq!(got.status, status, "{}", got.text());
    assert_eq!(got.headers["content-type"], "application/json");
    let reason = got.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(!reason.is_empty(), "{}", got.text());
}

// ---------------------------------------------------------------------------------------------
// GET /targets

#[tokio::test]
async fn targets_are_described_in_albs_shape() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let sw = Seawall::start(&config(
        "",
        &[
            group("app", &[a.addr, b.addr], ""),
            // No listener forwards to "spare": its target is unused.
            group("spare", &[c.addr], "health_check = { port = 9999 }"),
        ],
    ));
    let got = admin(&sw, Method::GET, "/targets", &[], Bytes::new()).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers["content-type"], "application/json");
    let all = got.json();
    let names: Vec<&str> = all["target_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "spare"], "{all}");

    let app = group_of(&all, "app");
    assert_eq!(app["TargetHealthDescriptions"].as_array().unwrap().len(), 2);
    for be in [&a, &b] {
        let d = target_of(app, be.addr).unwrap();
        assert_eq!(d["Target"]["Id"], "127.0.0.1");
        assert_eq!(d["Target"]["Port"], be.addr.port());
        assert_eq!(d["HealthCheckPort"], be.addr.port().to_string());
        assert_eq!(d["Source"], "config");
        assert!(
            d.get("TaskArn").is_none(),
            "only discovered targets have one: {d}"
        );
        assert_eq!(d["InFlight"], 0);
        let health = &d["TargetHealth"];
        // A health checker, where one runs, may already have passed the target.
        match health["State"].as_str().unwrap() {
            "initial" => {
                assert!(
                    health["Reason"].as_str().unwrap().starts_with("Elb."),
                    "{d}"
                );
                assert!(!health["Description"].as_str().unwrap().is_empty(), "{d}");
            }
            "healthy" => assert!(health.get("Reason").is_none(), "{d}"),
            other => panic!("unexpected state {other}: {d}"),
        }
    }

    let spare = group_of(&all, "spare");
    let d = target_of(spare, c.addr).unwrap();
    assert_eq!(d["HealthCheckPort"], "9999");
    assert_eq!(d["TargetHealth"]["State"], "unused");
    assert_eq!(d["TargetHealth"]["Reason"], "Target.NotInUse");
    assert!(d["TargetHealth"]["Description"].is_string());

    // The endpoints that were there before still answer.
    for (path, status) in [("/healthz", 200), ("/ready", 200), ("/metrics", 200)] {
        let got = admin(&sw, Method::GET, path, &[], Bytes::new()).await;
        assert_eq!(got.status, status, "{path}: {}", got.text());
    }
}

// ---------------------------------------------------------------------------------------------
// Register and deregister

#[tokio::test]
async fn a_registered_target_is_listed_and_gets_traffic() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let sw = Seawall::start(&config("", &[group("app", &[a.addr], "")]));

    let got = change(&sw, "register", "app", &[b.addr]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    let app = got.json();
    assert_eq!(app["name"], "app");
    let d = target_of(&app, b.addr).expect("the answer lists the new target");
    assert_eq!(d["TargetHealth"]["State"], "initial");
    assert_eq!(d["Source"], "api");
    assert!(target_of(&app, a.addr).is_some());

    // Registering again changes nothing (as ALB's RegisterTargets).
    let again = change(&sw, "register", "app", &[b.addr]).await.json();
    assert_eq!(
        again["TargetHealthDescriptions"].as_array().unwrap().len(),
        2
    );

    let app = targets(&sw).await;
    assert_eq!(
        target_of(group_of(&app, "app"), b.addr).unwrap()["Source"],
        "api"
    );

    // The new target takes traffic once its first health check passes (or at once, by
    // fail-open, while every target is still initial).
    let deadline = Instant::now() + PATIENCE;
    while backend_id(&sw).await != "b" {
        assert!(
            Instant::now() < deadline,
            "the registered target got no traffic"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_deregistered_target_drains_then_disappears() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let sw = Seawall::start(&config(
        "",
        &[group(
            "app",
            &[a.addr, b.addr],
            "deregistration_delay = \"3s\"",
        )],
    ));
    let web = sw.addr("web");
    let long = tokio::spawn(async move { get(web, false, "app.test", "/delay?ms=1500").await });
    // Backend hit counts include health checks; the in-flight count tells which target holds
    // the long request.
    let all = wait_targets(&sw, PATIENCE, |all| in_flight(group_of(all, "app")) == 1).await;
    let app = group_of(&all, "app");
    assert_eq!(in_flight(app), 1, "{all}");
    let (busy, other) = if target_of(app, a.addr).unwrap()["InFlight"] == 1 {
        (&a, &b)
    } else {
        (&b, &a)
    };

    let deregistered_at = Instant::now();
    let got = change(&sw, "deregister", "app", &[busy.addr]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    let app = got.json();
    let d = target_of(&app, busy.addr).expect("listed while draining");
    assert_eq!(d["TargetHealth"]["State"], "draining");
    assert_eq!(
        d["TargetHealth"]["Reason"],
        "Target.DeregistrationInProgress"
    );
    assert_eq!(d["InFlight"], 1, "{d}");

    for _ in 0..10 {
        assert_eq!(
            backend_id(&sw).await,
            other.id,
            "no new request goes to the draining target"
        );
    }

    let long = tokio::time::timeout(PATIENCE, long).await.unwrap().unwrap();
    assert_eq!(long.status, StatusCode::OK);
    assert_eq!(long.text(), "delayed 1500");
    let app = targets(&sw).await;
    assert_eq!(state_of(group_of(&app, "app"), busy.addr), "draining");

    let app = wait_targets(&sw, Duration::from_secs(8), |all| {
        target_of(group_of(all, "app"), busy.addr).is_none()
    })
    .await;
    let gone_after = deregistered_at.elapsed();
    assert!(
        target_of(group_of(&app, "app"), busy.addr).is_none(),
        "still listed {gone_after:?} after deregistration: {app}"
    );
    assert!(
        gone_after >= Duration::from_millis(2900),
        "dropped {gone_after:?} after deregistration, before the 3s delay"
    );
    assert!(target_of(group_of(&app, "app"), other.addr).is_some());
}

#[tokio::test]
async fn streams_still_open_when_the_delay_ends_are_cut() {
    let x = Backend::start("x").await;
    let sw = Seawall::start(&config(
        "",
        &[group("app", &[x.addr], "deregistration_delay = \"1s\"")],
    ));
    let web = sw.addr("web");

    // A response body that has started and will not finish by itself.
    let mut c = h1(TcpStream::connect(web).await.unwrap()).await;
    let req = Request::get("/gated?bytes=1000&gate=admin-cut")
        .header("host", "app.test")
        .body(empty())
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream_body = resp.into_body();
    let mut received = 0;
    while received < 1000 {
        let frame = tokio::time::timeout(PATIENCE, stream_body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        received += frame.into_data().map_or(0, |d| d.len());
    }

    // A WebSocket.
    let tcp = TcpStream::connect(web).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://app.test/ws", tcp)
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    let echo = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert_eq!(echo.unwrap().unwrap(), Message::text("before"));

    let deregistered_at = Instant::now();
    let got = change(&sw, "deregister", "app", &[x.addr]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());

    // Draining: what is open may go on.
    ws.send(Message::text("during")).await.unwrap();
    let echo = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert_eq!(echo.unwrap().unwrap(), Message::text("during"));

    let body_end = async {
        let end = tokio::time::timeout(PATIENCE, stream_body.frame())
            .await
            .expect("the body is cut within the patience");
        (end, deregistered_at.elapsed())
    };
    let ws_end = async {
        let end = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("the WebSocket is cut within the patience");
        (end, deregistered_at.elapsed())
    };
    let ((body_end, body_at), (ws_end, ws_at)) = tokio::join!(body_end, ws_end);
    assert!(
        matches!(body_end, Some(Err(_))),
        "the body must end in an error, not cleanly: {body_end:?}"
    );
    assert!(
        !matches!(ws_end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{ws_end:?}"
    );
    for (what, at) in [("body", body_at), ("WebSocket", ws_at)] {
        assert!(
            at >= Duration::from_millis(900),
            "{what} cut {at:?} after deregistration, before the 1s delay"
        );
    }
    open_gate("admin-cut");
}

/// `Source` and `TaskArn` of the target at `addr` in `group`.
fn source_of(group: &Value, addr: SocketAddr) -> (String, Option<String>) {
    let d = target_of(group, addr).unwrap_or_else(|| panic!("{addr} not in {group}"));
    (
        d["Source"].as_str().unwrap().to_string(),
        d.get("TaskArn")
            .map(|arn| arn.as_str().unwrap().to_string()),
    )
}

#[tokio::test]
async fn a_target_the_file_and_the_api_both_register_stays_until_both_let_go() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let delay = "deregistration_delay = \"30s\"";
    let sw = Seawall::start(&config("", &[group("app", &[a.addr, b.addr], delay)]));
    let path = sw.dir.path().join("seawall.toml");
    set_healthy(&sw, "app", b.addr);

    // Registered by the API too: one target, two sources.
    let got = change(&sw, "register", "app", &[b.addr]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    let app = got.json();
    assert_eq!(app["TargetHealthDescriptions"].as_array().unwrap().len(), 2);
    assert_eq!(source_of(&app, b.addr), ("config+api".into(), None));
    assert_eq!(source_of(&app, a.addr), ("config".into(), None));
    assert_eq!(state_of(&app, b.addr), "healthy", "its health is kept");

    // The file lets go of it: the API still holds it.
    replace(&path, &config("", &[group("app", &[a.addr], delay)]));
    let reloaded = admin(&sw, Method::POST, "/reload", &[], Bytes::new()).await;
    assert_eq!(reloaded.status, StatusCode::OK, "{}", reloaded.text());
    let all = targets(&sw).await;
    let app = group_of(&all, "app");
    assert_eq!(source_of(app, b.addr), ("api".into(), None), "{app}");
    assert_eq!(state_of(app, b.addr), "healthy", "{app}");
    assert_eq!(app["TargetHealthDescriptions"].as_array().unwrap().len(), 2);

    // The API lets go too: now it drains, and says who registered it last.
    let got = change(&sw, "deregister", "app", &[b.addr]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    let app = got.json();
    assert_eq!(state_of(&app, b.addr), "draining");
    assert_eq!(source_of(&app, b.addr), ("api".into(), None));
}

#[tokio::test]
async fn discovered_targets_show_their_task_and_cannot_be_deregistered() {
    use seawall::targets::{Origin, Registration, Update};
    let (a, c, d) = (
        Backend::start("a").await,
        Backend::start("c").await,
        Backend::start("d").await,
    );
    let delay = "deregistration_delay = \"30s\"";
    let sw = Seawall::start(&config("", &[group("app", &[a.addr, c.addr], delay)]));
    let arn = |id: &str| format!("arn:aws:ecs:eu-west-1:123456789012:task/prod/{id}");
    // What ECS discovery does at each refresh, without ECS.
    let discovered = [(d.addr, arn("d1")), (a.addr, arn("a1"))]
        .into_iter()
        .map(|(addr, task)| Registration {
            addr,
            task_arn: Some(task.into()),
        })
        .collect();
    sw.group("app")
        .unwrap()
        .apply(
            Origin::Discovery,
            Update::Reset(discovered),
            Duration::from_secs(30),
        )
        .unwrap();

    let all = targets(&sw).await;
    let app = group_of(&all, "app");
    assert_eq!(
        source_of(app, d.addr),
        ("discovery".into(), Some(arn("d1")))
    );
    assert_eq!(
        source_of(app, a.addr),
        ("config+discovery".into(), Some(arn("a1")))
    );
    assert_eq!(source_of(app, c.addr), ("config".into(), None), "{app}");

    // Refused whole, with what to do instead; nothing drains, not even the configured target
    // named beside it.
    for (asked, refused) in [(vec![c.addr, d.addr], d.addr), (vec![a.addr], a.addr)] {
        let got = change(&sw, "deregister", "app", &asked).await;
        assert_json_error(&got, StatusCode::CONFLICT);
        let task = if refused == d.addr {
            arn("d1")
        } else {
            arn("a1")
        };
        assert_eq!(
            got.json()["error"],
            format!("target {refused} in target group \"app\" was registered by ECS discovery (task {task}); stop the task or change the discovery block instead"),
        );
    }
    let all = targets(&sw).await;
    let app = group_of(&all, "app");
    for t in [a.addr, c.addr, d.addr] {
        assert_ne!(state_of(app, t), "draining", "{app}");
    }

    // The configured target alone may go.
    let got = change(&sw, "deregister", "app", &[c.addr]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    assert_eq!(state_of(&got.json(), c.addr), "draining");
}

// ---------------------------------------------------------------------------------------------
// The admin token

#[tokio::test]
async fn the_token_guards_changes_but_not_reads() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let sw = Seawall::start(&config(
        "token = \"t0ken-Xyz\"",
        &[group("app", &[a.addr], "")],
    ));
    let body = json!({ "target_group": "app", "targets": [b.addr.to_string()] }).to_string();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer t0ken-xyz"),
        Some("Bearer t0ken-Xyz-"),
        Some("Basic t0ken-Xyz"),
        Some("t0ken-Xyz"),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|v| ("authorization", *v)).collect();
        for op in ["register", "deregister"] {
            let got = admin(
                &sw,
                Method::POST,
                &format!("/targets/{op}"),
                &headers,
                body.clone(),
            )
            .await;
            assert_json_error(&got, StatusCode::UNAUTHORIZED);
            assert!(got.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"));
        }
    }
    let all = targets(&sw).await;
    assert!(target_of(group_of(&all, "app"), b.addr).is_none(), "{all}");

    let auth = [("authorization", "Bearer t0ken-Xyz")];
    let got = admin(&sw, Method::POST, "/targets/register", &auth, body.clone()).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    assert!(target_of(&got.json(), b.addr).is_some());
    let got = admin(&sw, Method::POST, "/targets/deregister", &auth, body).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    assert_eq!(state_of(&got.json(), b.addr), "draining");
}

/// `token = "env:NAME"` reads the variable at load: run as a separate process so the variable is
/// set for it alone.
#[tokio::test]
async fn the_token_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seawall.toml");
    let text = |token: &str| {
        format!(
            r#"
[admin]
bind = "127.0.0.1:0"
token = "{token}"

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ fixed_response = {{ status = 200 }} }}

[[target_groups]]
name = "app"
"#
        )
    };
    let bin = env!("CARGO_BIN_EXE_seawall");
    let check = |var: Option<&str>| {
        let mut c = Command::new(bin);
        c.arg("check")
            .arg(&file)
            .env_remove("SEAWALL_TEST_ADMIN_TOKEN");
        if let Some(v) = var {
            c.env("SEAWALL_TEST_ADMIN_TOKEN", v);
        }
        c.output().unwrap()
    };

    std::fs::write(&file, text("env:SEAWALL_TEST_ADMIN_TOKEN")).unwrap();
    let out = check(None);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":4: admin.token: ") && err.contains("SEAWALL_TEST_ADMIN_TOKEN"),
        "{err}"
    );
    let out = check(Some("s3cret"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(Some(""));
    assert_eq!(out.status.code(), Some(64));

    // Neither an empty variable name nor a token that no header could carry is accepted.
    for bad in ["env:", "two words", ""] {
        std::fs::write(&file, text(bad)).unwrap();
        assert_eq!(check(Some("x")).status.code(), Some(64), "{bad:?}");
    }

    // The value read is the token the running server wants.
    std::fs::write(&file, text("env:SEAWALL_TEST_ADMIN_TOKEN")).unwrap();
    let mut child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&file)
        .env("SEAWALL_TEST_ADMIN_TOKEN", "from-the-env")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut log = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            log.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(addr) = log
                .lines()
                .filter(|l| l.contains("admin listening"))
                .find_map(|l| {
                    l.split_whitespace()
                        .find_map(|t| t.strip_prefix("addr="))
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                })
            {
                let _ = tx.send(addr);
            }
        }
    });
    let admin_addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap();
    let result = async {
        let admin_addr = admin_addr.expect("the admin address is logged");
        let body = || {
            common::body(json!({ "target_group": "app", "targets": ["127.0.0.1:9"] }).to_string())
        };
        let denied = admin_at(admin_addr, Method::POST, "/targets/register", &[], body()).await;
        let allowed = admin_at(
            admin_addr,
            Method::POST,
            "/targets/register",
            &[("authorization", "Bearer from-the-env")],
            body(),
        )
        .await;
        (denied.status, allowed.status, allowed.text())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let (denied, allowed, text) = result;
    assert_eq!(denied, StatusCode::UNAUTHORIZED);
    assert_eq!(allowed, StatusCode::OK, "{text}");
}

// ---------------------------------------------------------------------------------------------
// Bad requests

#[tokio::test]
async fn bad_requests_get_a_reason() {
    let a = Backend::start("a").await;
    let sw = Seawall::start(&config("", &[group("app", &[a.addr], "")]));
    let post = |path: &'static str, body: String| {
        let sw = &sw;
        async move {
            admin(
                sw,
                Method::POST,
                path,
                &[("content-type", "application/json")],
                body,
            )
            .await
        }
    };

    let got = post(
        "/targets/register",
        json!({"target_group": "nope", "targets": ["127.0.0.1:1"]}).to_string(),
    )
    .await;
    assert_json_error(&got, StatusCode::NOT_FOUND);
    assert!(got.text().contains("nope"), "{}", got.text());

    for targets in [
        json!(["127.0.0.1"]),
        json!(["localhost:80"]),
        json!(["127.0.0.1:0"]),
        json!(["127.0.0.1:70000"]),
        json!([]),
        json!([80]),
    ] {
        for op in ["/targets/register", "/targets/deregister"] {
            let got = post(
                op,
                json!({"target_group": "app", "targets": targets}).to_string(),
            )
            .await;
            assert_json_error(&got, StatusCode::BAD_REQUEST);
        }
    }
    let got = post(
        "/targets/register",
        json!({"target_group": "app", "targets": ["127.0.0.1:1", "nope"]}).to_string(),
    )
    .await;
    assert_json_error(&got, StatusCode::BAD_REQUEST);
    assert!(
        got.text().contains("nope"),
        "names the bad one: {}",
        got.text()
    );

    for body in [
        "not json".to_string(),
        String::new(),
        json!({"target_group": "app"}).to_string(),
        json!({"target_group": "app", "targets": ["127.0.0.1:1"], "extra": 1}).to_string(),
    ] {
        let got = post("/targets/register", body).await;
        assert_json_error(&got, StatusCode::BAD_REQUEST);
    }

    // Deregistering a target that is not registered is refused, and changes nothing.
    let got = post(
        "/targets/deregister",
        json!({"target_group": "app", "targets": [a.addr.to_string(), "127.0.0.1:1"]}).to_string(),
    )
    .await;
    assert_json_error(&got, StatusCode::BAD_REQUEST);
    assert!(got.text().contains("127.0.0.1:1"), "{}", got.text());

    for (method, path, allow) in [
        (Method::GET, "/targets/register", "POST"),
        (Method::PUT, "/targets/deregister", "POST"),
        (Method::POST, "/targets", "GET, HEAD"),
    ] {
        let got = admin(&sw, method, path, &[], Bytes::new()).await;
        assert_json_error(&got, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(got.headers["allow"], allow, "{path}");
    }

    // Too large, whether it says so up front or not.
    let big = format!(
        r#"{{"target_group": "app", "targets": ["{}"]}}"#,
        "1".repeat(70 * 1024)
    );
    let got = post("/targets/register", big).await;
    assert_json_error(&got, StatusCode::PAYLOAD_TOO_LARGE);
    let chunks =
        (0..3).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b' '; 30 * 1024]))));
    let chunked = BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks)));
    let got = admin_at(sw.admin(), Method::POST, "/targets/register", &[], chunked).await;
    assert_json_error(&got, StatusCode::PAYLOAD_TOO_LARGE);

    let all = targets(&sw).await;
    let app = group_of(&all, "app");
    assert_eq!(app["TargetHealthDescriptions"].as_array().unwrap().len(), 1);
    assert_ne!(state_of(app, a.addr), "draining");
}

// ---------------------------------------------------------------------------------------------
// Balancing, seen through the proxy

#[tokio::test]
async fn least_outstanding_sends_new_work_away_from_a_busy_target() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let sw = Seawall::start(&config(
        "",
        &[group(
            "app",
            &[a.addr],
            "algorithm = \"least_outstanding_requests\"",
        )],
    ));
    set_healthy(&sw, "app", a.addr);
    // With "a" alone in the group, the slow requests all go to it.
    let web = sw.addr("web");
    let slow: Vec<_> = (0..4)
        .map(|_| tokio::spawn(async move { get(web, false, "app.test", "/delay?ms=3000").await }))
        .collect();
    let all = wait_targets(&sw, PATIENCE, |all| in_flight(group_of(all, "app")) == 4).await;
    assert_eq!(in_flight(group_of(&all, "app")), 4, "{all}");
    assert_eq!(change(&sw, "register", "app", &[b.addr]).await.status, 200);
    set_healthy(&sw, "app", b.addr);

    let all = targets(&sw).await;
    let app = group_of(&all, "app");
    assert_eq!(target_of(app, a.addr).unwrap()["InFlight"], 4, "{app}");
    assert_eq!(target_of(app, b.addr).unwrap()["InFlight"], 0, "{app}");
    for _ in 0..10 {
        assert_eq!(backend_id(&sw).await, "b");
    }

    for s in slow {
        let got = tokio::time::timeout(PATIENCE, s).await.unwrap().unwrap();
        assert_eq!(got.status, StatusCode::OK);
    }
    let all = wait_targets(&sw, PATIENCE, |all| in_flight(group_of(all, "app")) == 0).await;
    assert_eq!(in_flight(group_of(&all, "app")), 0, "{all}");
}

#[tokio::test]
async fn outstanding_counts_return_to_zero_after_clients_abort() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let sw = Seawall::start(&config("", &[group("app", &[a.addr, b.addr], "")]));
    let web = sw.addr("web");

    // Clients waiting for a response head that never comes...
    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut tcp = TcpStream::connect(web).await.unwrap();
        tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: app.test\r\n\r\n")
            .await
            .unwrap();
        clients.push(tcp);
    }
    // ...and clients that stop reading a body half-way.
    for i in 0..2 {
        let mut tcp = TcpStream::connect(web).await.unwrap();
        let req =
            format!("GET /gated?bytes=100000&gate=abort-{i} HTTP/1.1\r\nhost: app.test\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        clients.push(tcp);
    }
    let all = wait_targets(&sw, PATIENCE, |all| in_flight(group_of(all, "app")) == 8).await;
    assert_eq!(in_flight(group_of(&all, "app")), 8, "{all}");

    drop(clients);
    let all = wait_targets(&sw, PATIENCE, |all| in_flight(group_of(all, "app")) == 0).await;
    assert_eq!(in_flight(group_of(&all, "app")), 0, "{all}");
    for i in 0..2 {
        open_gate(&format!("abort-{i}"));
    }
}

#[tokio::test]
async fn slow_start_gives_a_new_target_a_small_share() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let sw = Seawall::start(&config(
        "",
        &[group("app", &[a.addr], "slow_start = \"30s\"")],
    ));
    // "a" was registered into an empty group, so it starts at full weight (as in ALB); "b"
    // joins a group with a healthy target, so it ramps up from a tenth of its share.
    set_healthy(&sw, "app", a.addr);
    assert_eq!(change(&sw, "register", "app", &[b.addr]).await.status, 200);
    set_healthy(&sw, "app", b.addr);

    let mut to_b = 0;
    for _ in 0..200 {
        if backend_id(&sw).await == "b" {
            to_b += 1;
        }
    }
    // Its steady share would be 100; about a tenth of that is expected.
    assert!(
        (1..60).contains(&to_b),
        "the new target got {to_b} of 200 requests"
    );
}

#[tokio::test]
async fn weighted_random_spreads_over_every_target() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let sw = Seawall::start(&config(
        "",
        &[group(
            "app",
            &[a.addr, b.addr],
            "algorithm = \"weighted_random\"",
        )],
    ));
    set_healthy(&sw, "app", a.addr);
    set_healthy(&sw, "app", b.addr);
    let mut to_a = 0;
    for _ in 0..200 {
        if backend_id(&sw).await == "a" {
            to_a += 1;
        }
    }
    // Expected 100 each; 50 is more than seven standard deviations away.
    assert!((50..=150).contains(&to_a), "a got {to_a} of 200");
}

#[tokio::test]
async fn post_reload_applies_the_file_and_reports_failures_with_their_line() {
    let token = "token = \"s3cret\"";
    let sw = Seawall::start(&config(token, &[group("app", &[], "")]));
    let path = sw.dir.path().join("seawall.toml");
    let auth = [("authorization", "Bearer s3cret")];

    let before = admin(&sw, Method::GET, "/config", &[], Bytes::new()).await;
    assert_eq!(before.status, StatusCode::OK);
    let before = before.json();
    assert_eq!(before["generation"], 1);
    assert_eq!(before["path"], path.display().to_string());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(before["sha256"], sha256_hex(text.as_bytes()));
    assert!(before["loaded_at"].as_str().unwrap().ends_with('Z'));

    // Mutating: the token is needed.
    let denied = admin(&sw, Method::POST, "/reload", &[], Bytes::new()).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let wrong_method = admin(&sw, Method::GET, "/reload", &[], Bytes::new()).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);

    // A new fixed response, applied by POST /reload.
    let changed = text.replace(
        "default_action = { forward = \"app\" }",
        "default_action = { fixed_response = { status = 200, body = \"v2\" } }",
    );
    std::fs::write(&path, &changed).unwrap();
    let ok = admin(&sw, Method::POST, "/reload", &auth, Bytes::new()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let generation = ok.json()["config"]["generation"].as_u64().unwrap();
    assert!(generation >= 2, "{}", ok.text());
    assert_eq!(proxied(&sw, "/").await.text(), "v2");
    let now = admin(&sw, Method::GET, "/config", &[], Bytes::new())
        .await
        .json();
    assert_eq!(now["sha256"], sha256_hex(changed.as_bytes()));

    // A broken file: 422 with file, line and reason; the running configuration stays.
    let broken = changed.replace("protocol = \"http\"", "protocol = \"http\"\nbogus = 1");
    std::fs::write(&path, &broken).unwrap();
    let failed = admin(&sw, Method::POST, "/reload", &auth, Bytes::new()).await;
    assert_eq!(
        failed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        failed.text()
    );
    let body = failed.json();
    assert_eq!(body["result"], "failure");
    let err = &body["errors"][0];
    assert_eq!(err["file"], path.display().to_string());
    let bogus_line = broken.lines().position(|l| l == "bogus = 1").unwrap() + 1;
    assert_eq!(err["line"], bogus_line as u64);
    assert!(err["reason"].as_str().unwrap().contains("bogus"), "{body}");
    assert_eq!(proxied(&sw, "/").await.text(), "v2");
    assert!(sw.metric("seawall_config_reloads_total{result=\"failure\"}") >= 1.0);
    let after = admin(&sw, Method::GET, "/config", &[], Bytes::new())
        .await
        .json();
    assert_eq!(
        after["sha256"], now["sha256"],
        "a failed reload changes nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// Reloads and the admin API

/// Replaces the config file whole (a temp file renamed over it), so that the file watcher, which
/// may reload it too, never reads it half-written.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn api_targets_survive_a_reload_that_drains_a_config_target() {
    let (a, b, api) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("api").await,
    );
    // Long enough that "b" is still draining when the test ends.
    let delay = "deregistration_delay = \"30s\"";
    let sw = Seawall::start(&config("", &[group("app", &[a.addr, b.addr], delay)]));
    let path = sw.dir.path().join("seawall.toml");
    assert_eq!(
        change(&sw, "register", "app", &[api.addr]).await.status,
        200
    );
    let all_healthy = |all: &Value| {
        let g = group_of(all, "app");
        [a.addr, b.addr, api.addr]
            .iter()
            .all(|&t| target_of(g, t).is_some_and(|d| d["TargetHealth"]["State"] == "healthy"))
    };
    let all = wait_targets(&sw, PATIENCE, all_healthy).await;
    assert!(all_healthy(&all), "{all}");

    // The file now lists "a" alone, applied by POST /reload.
    replace(&path, &config("", &[group("app", &[a.addr], delay)]));
    let reloaded = admin(&sw, Method::POST, "/reload", &[], Bytes::new()).await;
    assert_eq!(reloaded.status, StatusCode::OK, "{}", reloaded.text());

    let all = targets(&sw).await;
    let g = group_of(&all, "app");
    let described = |addr| target_of(g, addr).unwrap_or_else(|| panic!("{addr} in {g}"));
    assert_eq!(
        described(b.addr)["TargetHealth"]["State"],
        "draining",
        "{g}"
    );
    assert_eq!(described(b.addr)["Source"], "config", "{g}");
    assert_eq!(described(api.addr)["Source"], "api", "{g}");
    assert_eq!(
        described(api.addr)["TargetHealth"]["State"],
        "healthy",
        "kept as it was, not reset: {g}"
    );
    assert_eq!(described(a.addr)["TargetHealth"]["State"], "healthy", "{g}");

    // And it still takes traffic; the draining target takes none.
    let b_hits = b.hits();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(backend_id(&sw).await);
    }
    assert!(ids.iter().any(|id| id == "api"), "{ids:?}");
    assert!(ids.iter().all(|id| id == "api" || id == "a"), "{ids:?}");
    assert_eq!(b.hits(), b_hits);

    // A second reload, of the same file, keeps it too.
    let reloaded = admin(&sw, Method::POST, "/reload", &[], Bytes::new()).await;
    assert_eq!(reloaded.status, StatusCode::OK, "{}", reloaded.text());
    let all = targets(&sw).await;
    let api_now = target_of(group_of(&all, "app"), api.addr).cloned();
    assert_eq!(
        api_now.map(|d| (d["Source"].clone(), d["TargetHealth"]["State"].clone())),
        Some((json!("api"), json!("healthy"))),
        "{all}"
    );
}

#[tokio::test]
async fn concurrent_post_reloads_each_reload_and_a_taken_port_is_a_409() {
    let sw = Seawall::start(&config("", &[group("app", &[], "")]));
    let path = sw.dir.path().join("seawall.toml");
    let generation = || sw.config_generation();
    let ok = "seawall_config_reloads_total{result=\"success\"}";
    let failed = "seawall_config_reloads_total{result=\"failure\"}";
    let (gen0, ok0) = (generation(), sw.metric(ok));

    // Five at once, of a file that has not changed: none is merged into another.
    let answers = futures_util::future::join_all(
        (0..5).map(|_| admin(&sw, Method::POST, "/reload", &[], Bytes::new())),
    )
    .await;
    let mut generations: Vec<u64> = answers
        .iter()
        .map(|got| {
            assert_eq!(got.status, StatusCode::OK, "{}", got.text());
            got.json()["config"]["generation"].as_u64().unwrap()
        })
        .collect();
    generations.sort();
    assert_eq!(generations, (gen0 + 1..=gen0 + 5).collect::<Vec<_>>());
    assert_eq!(generation(), gen0 + 5);
    assert_eq!(sw.metric(ok), ok0 + 5.0);
    assert_eq!(sw.metric("seawall_config_generation"), (gen0 + 5) as f64);

    // A new listener on a port that is taken: 409 with the listener and the reason.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let text = std::fs::read_to_string(&path).unwrap();
    replace(
        &path,
        &format!(
            "{text}\n[[listeners]]\nname = \"taken\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"http\"\ndefault_action = {{ fixed_response = {{ status = 200 }} }}\n"
        ),
    );
    let failed_before = sw.metric(failed);
    let got = admin(&sw, Method::POST, "/reload", &[], Bytes::new()).await;
    assert_eq!(got.status, StatusCode::CONFLICT, "{}", got.text());
    assert_eq!(got.headers["content-type"], "application/json");
    let body = got.json();
    assert_eq!(body["result"], "failure", "{body}");
    let err = &body["errors"][0];
    assert_eq!(err["listener"], "taken", "{body}");
    assert!(
        err["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("127.0.0.1:{port}"))),
        "{body}"
    );
    assert_eq!(generation(), gen0 + 5, "nothing changed");
    assert_eq!(sw.running.listener_addr("taken"), None);
    assert!(sw.metric(failed) > failed_before);
    assert_eq!(
        proxied(&sw, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
