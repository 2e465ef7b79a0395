//! Active health checks against real targets on loopback: state changes and their reasons, the
//! thresholds, fail-open, HTTPS and gRPC probes, membership changes, a reload's new settings, and
//! the health metrics.
mod common;
use common::*;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use seawall::targets::{Origin, Reason, State, Update};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(10);

/// Fast checks: 200ms interval, thresholds 2.
const FAST: &str = r#"interval = "200ms"
timeout = "150ms"
healthy_threshold = 2
unhealthy_threshold = 2"#;

/// One target group, and an http listener of the same name forwarding to it (a group no listener
/// forwards to is unused, and unused targets are not checked).
struct Group<'a> {
    name: &'a str,
    targets: &'a [SocketAddr],
    /// Lines for `[target_groups]` (protocol, protocol_version, ...).
    extra: &'a str,
    /// Lines for `[target_groups.health_check]`.
    health: &'a str,
}

fn config(runtime: &str, groups: &[Group<'_>]) -> String {
    let mut c = ConfigBuilder::new()
        .runtime("drain_timeout = \"1s\"")
        .runtime(runtime);
    for g in groups {
        c = c.listener(Listener::http(g.name).forward(g.name));
    }
    for g in groups {
        c = c.target_group(
            TargetGroup::new(g.name, g.targets)
                .line(g.extra)
                .health_check(g.health),
        );
    }
    c.build()
}

fn group<'a>(name: &'a str, targets: &'a [SocketAddr], health: &'a str) -> Group<'a> {
    Group {
        name,
        targets,
        extra: "",
        health,
    }
}

/// The state and reason of the non-draining target at `addr` in `group`.
fn state(sw: &Seawall, group: &str, addr: SocketAddr) -> (State, Option<Reason>) {
    let g = sw.group(group).expect("group exists");
    let members = g.members();
    let t = members
        .iter()
        .find(|t| t.addr == addr)
        .unwrap_or_else(|| panic!("{addr} is a member of {group}"));
    (t.state(), t.reason())
}

/// Waits until the target reaches `want`; gives how long that took.
async fn wait_state(sw: &Seawall, group: &str, addr: SocketAddr, want: State) -> Duration {
    let start = Instant::now();
    loop {
        let (now, reason) = state(sw, group, addr);
        if now == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{group}/{addr}: still {now:?} ({reason:?}), expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn checks(sw: &Seawall, group: &str, result: &str) -> f64 {
    metric_value(
        &sw.metrics_text(),
        "seawall_health_checks_total",
        &[("target_group", group), ("result", result)],
    )
}

fn gauges(sw: &Seawall, group: &str) -> (f64, f64) {
    let text = sw.metrics_text();
    (
        metric_value(&text, "seawall_healthy_targets", &[("target_group", group)]),
        metric_value(
            &text,
            "seawall_unhealthy_targets",
            &[("target_group", group)],
        ),
    )
}

/// Waits until the group's (healthy, unhealthy) gauges read `want`: the checker updates them just
/// after the state change a test waits for, on another thread.
async fn wait_gauges(sw: &Seawall, group: &str, want: (f64, f64)) {
    let start = Instant::now();
    while gauges(sw, group) != want {
        assert!(
            start.elapsed() < PATIENCE,
            "{group}: gauges {:?}, expected {want:?}",
            gauges(sw, group)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A GET through `listener`; gives the status and the id of the backend that answered, if any.
async fn through(sw: &Seawall, listener: &str) -> (u16, Option<String>) {
    let got = tokio::time::timeout(PATIENCE, get(sw.addr(listener), false, "example.test", "/"))
        .await
        .expect("an answer in time");
    let id = (got.status == 200)
        .then(|| got.json()["id"].as_str().map(str::to_string))
        .flatten();
    (got.status.as_u16(), id)
}

// ---------------------------------------------------------------------------------------------
// State machine against live targets

#[tokio::test]
async fn a_new_target_is_probed_at_once_and_one_pass_makes_it_healthy() {
    let b = Backend::start("b1").await;
    let dead = dead_port();
    // A long interval and a high healthy threshold: only an immediate first probe, and ALB's
    // one-pass rule for new targets, can make it healthy before the first interval ends.
    let health = r#"interval = "5s"
timeout = "1s"
healthy_threshold = 5
unhealthy_threshold = 3
path = "/health""#;
    let sw = Seawall::start(&config("", &[group("app", &[b.addr, dead], health)]));
    let took = wait_state(&sw, "app", b.addr, State::Healthy).await;
    assert!(took < Duration::from_secs(4), "healthy after {took:?}");
    assert_eq!(b.probes(), 1, "exactly one probe made it healthy");
    assert_eq!(
        state(&sw, "app", b.addr).1,
        None,
        "a healthy target has no reason"
    );

    // The dead target failed its first check but stays initial below the unhealthy threshold.
    let start = Instant::now();
    while checks(&sw, "app", "failure") < 1.0 {
        assert!(
            start.elapsed() < PATIENCE,
            "the dead target was never probed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (s, reason) = state(&sw, "app", dead);
    assert_eq!(s, State::Initial);
    assert_eq!(reason.unwrap().code, "Elb.InitialHealthChecking");
    assert_eq!(checks(&sw, "app", "success"), 1.0);
    wait_gauges(&sw, "app", (1.0, 0.0)).await;
}

#[tokio::test]
async fn a_dead_target_without_traffic_is_found_by_the_checks() {
    let b1 = Backend::start("b1").await;
    let b2 = Backend::start("b2").await;
    let sw = Seawall::start(&config("", &[group("app", &[b1.addr, b2.addr], FAST)]));
    wait_state(&sw, "app", b1.addr, State::Healthy).await;
    wait_state(&sw, "app", b2.addr, State::Healthy).await;
    wait_gauges(&sw, "app", (2.0, 0.0)).await;

    b2.kill();
    // No request goes through seawall: only the active checks can notice.
    let took = wait_state(&sw, "app", b2.addr, State::Unhealthy).await;
    // interval x unhealthy_threshold, plus jitter and a loaded machine's margin.
    assert!(
        took < Duration::from_millis(400 + 3000),
        "unhealthy after {took:?}"
    );
    let reason = state(&sw, "app", b2.addr).1.unwrap();
    assert_eq!(reason.code, "Target.FailedHealthChecks");
    assert!(
        reason
            .description
            .starts_with("Health checks failed: connection failed"),
        "{reason:?}"
    );
    assert_eq!(state(&sw, "app", b1.addr).0, State::Healthy);
    assert!(checks(&sw, "app", "failure") >= 2.0);
    assert!(checks(&sw, "app", "success") >= 2.0);
    wait_gauges(&sw, "app", (1.0, 1.0)).await;
}

#[tokio::test]
async fn a_killed_target_costs_few_requests_and_comes_back_after_the_threshold() {
    let b1 = Backend::start("b1").await;
    let b2 = Backend::start("b2").await;
    let b2_addr = b2.addr;
    let sw = Arc::new(Seawall::start(&config(
        "workers = 2",
        &[group("app", &[b1.addr, b2.addr], FAST)],
    )));
    wait_state(&sw, "app", b1.addr, State::Healthy).await;
    wait_state(&sw, "app", b2.addr, State::Healthy).await;

    // A client sending one request after another until `run` is cleared.
    let results = Arc::new(Mutex::new(Vec::<(u16, Option<String>)>::new()));
    let run = Arc::new(AtomicBool::new(true));
    let client = {
        let (sw, results, run) = (sw.clone(), results.clone(), run.clone());
        tokio::spawn(async move {
            while run.load(Ordering::SeqCst) {
                let r = through(&sw, "app").await;
                results.lock().unwrap().push(r);
            }
        })
    };
    let count = || results.lock().unwrap().len();

    tokio::time::sleep(Duration::from_millis(300)).await;
    b2.kill();
    drop(b2);
    wait_state(&sw, "app", b2_addr, State::Unhealthy).await;
    // The one request in flight when the state changed may have gone either way; all the later
    // ones land on b1.
    let out = count() + 1;
    let start = Instant::now();
    while count() < out + 20 {
        assert!(start.elapsed() < PATIENCE, "the request loop stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    {
        let r = results.lock().unwrap();
        assert!(
            r[out..]
                .iter()
                .all(|(s, id)| *s == 200 && id.as_deref() == Some("b1")),
            "{:?}",
            &r[out..]
        );
    }

    // Back on the same address: healthy after healthy_threshold passes, then traffic again.
    let b2 = Backend::start_on(b2_addr, "b2").await;
    wait_state(&sw, "app", b2_addr, State::Healthy).await;
    assert!(
        b2.probes() >= 2,
        "healthy after {} passing checks; healthy_threshold is 2",
        b2.probes()
    );
    let start = Instant::now();
    while b2.hits() == 0 {
        assert!(start.elapsed() < PATIENCE, "b2 never got traffic again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run.store(false, Ordering::SeqCst);
    client.await.unwrap();
    let r = results.lock().unwrap();
    assert!(r.iter().any(|(_, id)| id.as_deref() == Some("b2")));
    let failures = r.iter().filter(|(status, _)| *status != 200).count();
    assert!(
        failures <= 2,
        "at most one failure per data-plane worker: {failures} in {:?}",
        *r
    );
}

#[tokio::test]
async fn a_500_on_the_health_path_is_a_response_code_mismatch() {
    let b = Backend::start("b1").await;
    let health = format!("{FAST}\npath = \"/status?code=500\"");
    let sw = Seawall::start(&config("", &[group("app", &[b.addr], &health)]));
    wait_state(&sw, "app", b.addr, State::Unhealthy).await;
    let reason = state(&sw, "app", b.addr).1.unwrap();
    assert_eq!(reason.code, "Target.ResponseCodeMismatch");
    assert_eq!(
        reason.description,
        "Health checks failed with these codes: [500]"
    );
    assert!(checks(&sw, "app", "failure") >= 2.0);
    assert_eq!(checks(&sw, "app", "success"), 0.0);
    wait_gauges(&sw, "app", (0.0, 1.0)).await;
}

#[tokio::test]
async fn matcher_ranges_decide_on_a_redirecting_health_path() {
    let b = Backend::start("b1").await;
    let ranged = format!("{FAST}\npath = \"/status?code=302\"\nmatcher = \"200-399\"");
    let exact = format!("{FAST}\npath = \"/status?code=302\"\nmatcher = \"200\"");
    let listed = format!("{FAST}\npath = \"/status?code=302\"\nmatcher = \"200,301,303-399\"");
    let sw = Seawall::start(&config(
        "",
        &[
            group("ranged", &[b.addr], &ranged),
            group("exact", &[b.addr], &exact),
            group("listed", &[b.addr], &listed),
        ],
    ));
    wait_state(&sw, "ranged", b.addr, State::Healthy).await;
    wait_state(&sw, "exact", b.addr, State::Unhealthy).await;
    wait_state(&sw, "listed", b.addr, State::Unhealthy).await;
    let reason = state(&sw, "exact", b.addr).1.unwrap();
    assert_eq!(reason.code, "Target.ResponseCodeMismatch");
    assert_eq!(
        reason.description,
        "Health checks failed with these codes: [302]"
    );
    // Still healthy after several more checks.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(state(&sw, "ranged", b.addr).0, State::Healthy);
}

// ---------------------------------------------------------------------------------------------
// Fail-open

#[tokio::test]
async fn all_targets_unhealthy_still_serve_and_an_empty_group_answers_503() {
    let b1 = Backend::start("b1").await;
    let b2 = Backend::start("b2").await;
    let health = format!("{FAST}\npath = \"/status?code=500\"");
    let sw = Seawall::start(&config(
        "",
        &[
            group("app", &[b1.addr, b2.addr], &health),
            group("empty", &[], FAST),
        ],
    ));
    wait_state(&sw, "app", b1.addr, State::Unhealthy).await;
    wait_state(&sw, "app", b2.addr, State::Unhealthy).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let (status, id) = through(&sw, "app").await;
        assert_eq!(
            status, 200,
            "ALB's fail-open: unhealthy targets still serve"
        );
        ids.push(id.unwrap());
    }
    assert!(
        ids.iter().any(|i| i == "b1") && ids.iter().any(|i| i == "b2"),
        "{ids:?}"
    );
    wait_gauges(&sw, "app", (0.0, 2.0)).await;

    assert_eq!(through(&sw, "empty").await.0, 503);
    wait_gauges(&sw, "empty", (0.0, 0.0)).await;
    assert_eq!(
        checks(&sw, "empty", "success") + checks(&sw, "empty", "failure"),
        0.0
    );
}

// ---------------------------------------------------------------------------------------------
// Membership and reload

#[tokio::test]
async fn registered_targets_are_probed_at_once_and_draining_ones_no_more() {
    let b1 = Backend::start("b1").await;
    let b2 = Backend::start("b2").await;
    let b3 = Backend::start("b3").await;
    let slow = r#"interval = "5s"
timeout = "1s"
healthy_threshold = 2"#;
    let sw = Seawall::start(&config(
        "",
        &[
            group("slow", &[b1.addr], slow),
            group("fast", &[b2.addr, b3.addr], FAST),
        ],
    ));
    wait_state(&sw, "slow", b1.addr, State::Healthy).await;

    // Registered mid-interval: probed at once, not at the group's next tick.
    let new = Backend::start("new").await;
    let added = sw
        .group("slow")
        .unwrap()
        .apply(
            Origin::Api,
            Update::Add(vec![new.addr.into()]),
            Duration::ZERO,
        )
        .unwrap()
        .added;
    assert_eq!(added.len(), 1);
    let took = wait_state(&sw, "slow", new.addr, State::Healthy).await;
    assert!(took < Duration::from_secs(4), "healthy after {took:?}");
    wait_gauges(&sw, "slow", (2.0, 0.0)).await;

    // Deregistered: draining, and its probes stop.
    wait_state(&sw, "fast", b2.addr, State::Healthy).await;
    wait_state(&sw, "fast", b3.addr, State::Healthy).await;
    sw.group("fast")
        .unwrap()
        .apply(
            Origin::Api,
            Update::Remove(vec![b3.addr]),
            Duration::from_secs(60),
        )
        .unwrap();
    // A probe already under way may still land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probes = b3.probes();
    let b2_probes = b2.probes();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(b3.probes(), probes, "a draining target is not probed");
    assert!(b2.probes() > b2_probes, "the rest of the group still is");
    assert_eq!(state(&sw, "fast", b3.addr).0, State::Draining);
    wait_gauges(&sw, "fast", (1.0, 0.0)).await;
}

#[tokio::test]
async fn a_reload_restarts_the_checks_with_new_settings_and_keeps_target_state() {
    let b = Backend::start("b1").await;
    let redirect =
        |matcher: &str| format!("{FAST}\npath = \"/status?code=302\"\nmatcher = \"{matcher}\"");
    let before = redirect("200");
    let sw = Seawall::start(&config("", &[group("app", &[b.addr], &before)]));
    wait_state(&sw, "app", b.addr, State::Unhealthy).await;
    assert_eq!(checks(&sw, "app", "success"), 0.0);

    // What a reload does once the new file has compiled: swap the snapshot, then apply membership.
    let after = redirect("200-399");
    let text = config("", &[group("app", &[b.addr], &after)]);
    sw.swap_config(text);

    // The target kept its state: unhealthy, it needs healthy_threshold passes, not one.
    wait_state(&sw, "app", b.addr, State::Healthy).await;
    assert!(
        checks(&sw, "app", "success") >= 2.0,
        "healthy after {} passes",
        checks(&sw, "app", "success")
    );
    wait_gauges(&sw, "app", (1.0, 0.0)).await;
}

// ---------------------------------------------------------------------------------------------
// HTTPS and gRPC

/// What a probe-recording target saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    version: http::Version,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn record(req: Request<Incoming>, log: &Log) -> Request<()> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    log.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        version: parts.version,
        headers: parts.headers.clone(),
        body,
    });
    Request::from_parts(parts, ())
}

/// An HTTPS (HTTP/1.1) target answering 200, recording what it saw in the log.
async fn tls_target() -> (Target, Log) {
    let log = Log::default();
    let log2 = log.clone();
    let target = Target::start(Serves::Https, move |req| {
        let log = log2.clone();
        async move {
            record(req, &log).await;
            Response::new(empty())
        }
    })
    .await;
    (target, log)
}

#[tokio::test]
async fn https_groups_check_over_tls() {
    let (target, log) = tls_target().await;
    let (tls_addr, handshakes) = (target.addr, &target.handshakes);
    let plain = Backend::start("plain").await;
    let health = r#"interval = "500ms"
timeout = "400ms"
healthy_threshold = 2
unhealthy_threshold = 2
path = "/health""#;
    let sw = Seawall::start(&config(
        "",
        &[Group {
            name: "secure",
            targets: &[tls_addr, plain.addr],
            extra: "protocol = \"https\"",
            health,
        }],
    ));
    wait_state(&sw, "secure", tls_addr, State::Healthy).await;
    assert!(handshakes.load(Ordering::SeqCst) >= 1);
    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/health");
    assert_eq!(seen.headers["host"], tls_addr.to_string().as_str());
    assert_eq!(seen.headers["user-agent"], "ELB-HealthChecker/2.0");

    // A plain-HTTP target cannot pass a check that speaks TLS.
    wait_state(&sw, "secure", plain.addr, State::Unhealthy).await;
    let reason = state(&sw, "secure", plain.addr).1.unwrap();
    assert_eq!(reason.code, "Target.FailedHealthChecks");
    assert!(reason.description.contains("TLS"), "{reason:?}");
}

/// How an h2c gRPC target answers its health path.
#[derive(Clone, Copy)]
enum GrpcAnswer {
    /// `grpc-status` in the trailers, after an empty message.
    Trailers(u16),
    /// A trailers-only answer: `grpc-status` in the headers.
    HeadersOnly(u16),
}

/// A plain-text HTTP/2 (prior knowledge) target: the gRPC health path answers as `answer`
/// says; anything else answers 200.
async fn h2c_target(answer: GrpcAnswer) -> (SocketAddr, Log, Target) {
    let log = Log::default();
    let log2 = log.clone();
    let target = Target::start(Serves::H2c, move |req| {
        let log = log2.clone();
        async move {
            let req = record(req, &log).await;
            if req.uri().path() != "/AWS.ALB/healthcheck" {
                return Response::new(empty());
            }
            match answer {
                GrpcAnswer::Trailers(code) => {
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", code.into());
                    let frames = [
                        Frame::data(Bytes::from_static(&[0; 5])),
                        Frame::trailers(trailers),
                    ];
                    Response::builder()
                        .header("content-type", "application/grpc")
                        .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
                            frames.map(Ok::<_, Infallible>),
                        ))))
                        .unwrap()
                }
                GrpcAnswer::HeadersOnly(code) => Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", code)
                    .body(empty())
                    .unwrap(),
            }
        }
    })
    .await;
    (target.addr, log, target)
}

#[tokio::test]
async fn grpc_groups_match_grpc_status_and_http2_groups_probe_over_h2c() {
    let (unimplemented, log, _t1) = h2c_target(GrpcAnswer::Trailers(12)).await;
    let (unavailable, _, _t2) = h2c_target(GrpcAnswer::HeadersOnly(14)).await;
    let http1 = Backend::start("http1").await;
    let health = r#"interval = "500ms"
timeout = "400ms"
healthy_threshold = 2
unhealthy_threshold = 2"#;
    let sw = Seawall::start(&config(
        "",
        &[
            Group {
                name: "grpc",
                targets: &[unimplemented, unavailable],
                extra: "protocol_version = \"grpc\"",
                health,
            },
            Group {
                name: "h2",
                targets: &[unimplemented, http1.addr],
                extra: "protocol_version = \"http2\"",
                health,
            },
        ],
    ));
    // ALB's default gRPC matcher is 12 (UNIMPLEMENTED: the server is up, the method unknown).
    wait_state(&sw, "grpc", unimplemented, State::Healthy).await;
    wait_state(&sw, "grpc", unavailable, State::Unhealthy).await;
    let reason = state(&sw, "grpc", unavailable).1.unwrap();
    assert_eq!(reason.code, "Target.ResponseCodeMismatch");
    assert_eq!(
        reason.description,
        "Health checks failed with these codes: [14]"
    );

    let grpc_probe = log
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.path == "/AWS.ALB/healthcheck")
        .cloned()
        .expect("a gRPC probe");
    assert_eq!(grpc_probe.method, "POST");
    assert_eq!(grpc_probe.version, http::Version::HTTP_2);
    assert_eq!(grpc_probe.headers["content-type"], "application/grpc");
    assert_eq!(grpc_probe.headers["te"], "trailers");
    assert_eq!(grpc_probe.headers["user-agent"], "ELB-HealthChecker/2.0");
    assert_eq!(&grpc_probe.body[..], &[0u8; 5], "one empty gRPC message");

    // HTTP/2 groups: GET over prior-knowledge h2c; an HTTP/1-only target fails it.
    wait_state(&sw, "h2", unimplemented, State::Healthy).await;
    wait_state(&sw, "h2", http1.addr, State::Unhealthy).await;
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.method == "GET" && s.path == "/" && s.version == http::Version::HTTP_2));
    assert_eq!(
        state(&sw, "h2", http1.addr).1.unwrap().code,
        "Target.FailedHealthChecks"
    );
}

// ---------------------------------------------------------------------------------------------
// Passive failure and the one retry

/// `[admin]` on port 0. `config` puts its first argument at the end of `[runtime]`; a table
/// header there starts a table of its own.
const ADMIN: &str = "[admin]\nbind = \"127.0.0.1:0\"";

/// A check interval far longer than the tests that use it: after the first probes, only the data
/// plane can notice a target die.
const SLOW: &str = r#"interval = "60s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 2"#;

/// The member of `group` at `addr`.
fn member(sw: &Seawall, group: &str, addr: SocketAddr) -> Arc<seawall::targets::Target> {
    sw.member(group, addr)
        .unwrap_or_else(|| panic!("{addr} is a member of {group}"))
}

/// Kills a backend and waits until its port refuses connections.
async fn kill(b: Backend) -> SocketAddr {
    let addr = b.addr;
    b.kill();
    drop(b);
    let start = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(start.elapsed() < PATIENCE, "{addr} still accepts");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    addr
}

/// A POST of `data` to `/upload` through `listener`.
async fn post(sw: &Seawall, listener: &str, data: &'static str) -> Got {
    let tcp = tokio::net::TcpStream::connect(sw.addr(listener))
        .await
        .unwrap();
    let mut c = h1(tcp).await;
    let req = Request::post("/upload")
        .header("host", "example.test")
        .body(body(data))
        .unwrap();
    let resp = tokio::time::timeout(PATIENCE, c.send_request(req))
        .await
        .expect("an answer in time")
        .unwrap();
    read(resp).await
}

/// POSTs with a body to listener `writes` until one has been sent to `dead` (seen by its passive
/// failure): the ones before reach `live` and answer 200; that one answers 502 and never reaches
/// `live` (a request with a body is not retried).
async fn post_until_the_dead_one_is_picked(
    sw: &Seawall,
    live: &Backend,
    dead: &seawall::targets::Target,
) {
    let mut posts = 0;
    let hits = live.hits();
    let last = loop {
        assert!(posts < 20, "the dead target was never picked");
        let got = post(sw, "writes", "hello").await;
        posts += 1;
        if dead.passive_failures() > 0 {
            break got;
        }
        assert_eq!(got.status, 200, "POST {posts}: {}", got.text());
        assert!(
            got.text().ends_with(" 5"),
            "the body arrived: {}",
            got.text()
        );
    };
    assert_eq!(last.status, 502, "POST {posts}: {}", last.text());
    assert_eq!(
        live.hits(),
        hits + posts - 1,
        "the failed POST never reached the live target"
    );
}

#[tokio::test]
async fn a_refused_connection_marks_the_target_unhealthy_at_once_and_only_a_get_is_retried() {
    let dying = Backend::start("dying").await;
    let live = Backend::start("live").await;
    let targets = [dying.addr, live.addr];
    // The same two targets in two groups, each with its own target states and round-robin turn:
    // "reads" takes GETs, "writes" a POST.
    let sw = Seawall::start(&config(
        ADMIN,
        &[
            group("reads", &targets, SLOW),
            group("writes", &targets, SLOW),
        ],
    ));
    sw.wait_healthy("reads").await;
    sw.wait_healthy("writes").await;
    let dead = kill(dying).await;
    let (reads_dead, writes_dead) = (member(&sw, "reads", dead), member(&sw, "writes", dead));
    assert_eq!(
        reads_dead.state(),
        State::Healthy,
        "the checks have not seen it"
    );

    // GETs until one has been sent to the dead target first: each is answered by the live one,
    // the one that met the refused connection after its single retry.
    let mut gets = 0;
    while reads_dead.passive_failures() == 0 {
        assert!(gets < 20, "the dead target was never picked");
        let (status, id) = through(&sw, "reads").await;
        gets += 1;
        assert_eq!(
            (status, id.as_deref()),
            (200, Some("live")),
            "GET {gets}: a GET whose connection was refused is retried on the other target"
        );
    }
    assert_eq!(live.hits(), gets, "each GET reached the live target once");
    assert_eq!(reads_dead.passive_failures(), 1);
    // At once, not after a check interval: read without waiting.
    assert_eq!(reads_dead.state(), State::Unhealthy);
    let reason = reads_dead.reason().unwrap();
    assert_eq!(reason.code, "Target.FailedHealthChecks");
    assert!(
        reason.description.starts_with("connection failed"),
        "{reason:?}"
    );
    let all = get(sw.admin(), false, "admin", "/targets").await.json();
    let described = all["target_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "reads")
        .and_then(|g| {
            g["TargetHealthDescriptions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["Target"]["Port"] == dead.port())
        })
        .cloned()
        .unwrap_or_else(|| panic!("{dead} in /targets: {all}"));
    assert_eq!(
        described["TargetHealth"]["State"], "unhealthy",
        "{described}"
    );
    let text = described["TargetHealth"]["Description"].as_str().unwrap();
    assert!(text.contains("connection failed"), "{described}");
    // The other group's target is another target: its state is its own.
    assert_eq!(writes_dead.state(), State::Healthy);
    // Later GETs go to the live target alone.
    for _ in 0..4 {
        assert_eq!(through(&sw, "reads").await, (200, Some("live".into())));
    }
    assert_eq!(reads_dead.passive_failures(), 1, "not picked again");

    post_until_the_dead_one_is_picked(&sw, &live, &writes_dead).await;
    assert_eq!(writes_dead.state(), State::Unhealthy);
}

/// A group none of whose targets has passed a check (all `initial`, say, just discovered) serves
/// by fail-open; a GET whose connection is refused then moves to another target all the same,
/// rather than answering 502 for want of a healthy one. A POST with a body still does not move.
#[tokio::test]
async fn a_refused_get_moves_to_another_target_even_when_none_is_healthy() {
    let live = Backend::start("live").await;
    let dead = dead_port();
    let targets = [dead, live.addr];
    // Neither can pass a check: one answers 500 on the health path, the other refuses.
    let health = format!("{SLOW}\npath = \"/status?code=500\"");
    let sw = Seawall::start(&config(
        ADMIN,
        &[
            group("reads", &targets, &health),
            group("writes", &targets, &health),
        ],
    ));
    let (reads_dead, writes_dead) = (member(&sw, "reads", dead), member(&sw, "writes", dead));
    let none_healthy = |name: &str| {
        sw.group(name)
            .unwrap()
            .members()
            .iter()
            .all(|t| t.state() != State::Healthy)
    };

    // GETs until the dead target has been picked first twice: every one is answered by the live
    // target, the ones that met the refused connection after their single retry.
    let mut gets = 0;
    while reads_dead.passive_failures() < 2 {
        assert!(gets < 20, "the dead target was picked too rarely");
        assert!(none_healthy("reads"));
        let (status, id) = through(&sw, "reads").await;
        gets += 1;
        assert_eq!(
            (status, id.as_deref()),
            (200, Some("live")),
            "GET {gets}: a GET whose connection was refused moves to the other target"
        );
    }
    assert_eq!(live.hits(), gets, "each GET reached the live target once");
    assert!(none_healthy("reads"));

    post_until_the_dead_one_is_picked(&sw, &live, &writes_dead).await;
    assert!(none_healthy("writes"));
}

// ---------------------------------------------------------------------------------------------
// State changes in the log

#[tokio::test]
async fn a_target_going_unhealthy_is_logged_once_with_its_reason() {
    use common::process::{field, Proc};
    let b = Backend::start("b1").await;
    let health = format!("{FAST}\npath = \"/status?code=500\"");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, config("", &[group("app", &[b.addr], &health)])).unwrap();
    let p = Proc::start(&path, &["app"], false).await;
    let target = b.addr.to_string();
    let changes = || -> Vec<String> {
        p.log()
            .lines()
            .filter(|l| l.contains("target state changed") && field(l, "target") == Some(&target))
            .map(str::to_string)
            .collect()
    };
    let start = Instant::now();
    while changes().is_empty() {
        assert!(
            start.elapsed() < PATIENCE,
            "no state change logged:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Several more failing checks: the target stays unhealthy, and that is no news.
    let probes = b.probes();
    let start = Instant::now();
    while b.probes() < probes + 3 {
        assert!(
            start.elapsed() < PATIENCE,
            "the checks stopped:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lines = changes();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert_eq!(field(line, "target_group"), Some("app"), "{line}");
    assert_eq!(field(line, "from"), Some("initial"), "{line}");
    assert_eq!(field(line, "to"), Some("unhealthy"), "{line}");
    assert_eq!(
        field(line, "reason"),
        Some("Target.ResponseCodeMismatch"),
        "{line}"
    );
    assert!(
        line.contains("Health checks failed with these codes: [500]"),
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------------
// One probe at a time

/// A target that accepts connections and never answers, holding each until the client closes it.
/// Gives the number of connections it accepted and the most it saw open at once.
///
/// Counted when a connection is accepted, against the ones before it that have not reached their
/// end of stream: on loopback a client's close has reached this side by the time its `close`
/// returns, so a client that closes one connection before opening the next is never counted
/// twice, however late this task runs.
async fn holding_target() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (accepted2, most2) = (accepted.clone(), most.clone());
    tokio::spawn(async move {
        let mut open: Vec<std::net::TcpStream> = Vec::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            // Non-blocking, as tokio left it: a read says "still open" with `WouldBlock`.
            let tcp = tcp.into_std().unwrap();
            open.retain_mut(|c| {
                let mut buf = [0u8; 1024];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => return false,
                        Ok(_) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                        Err(_) => return false,
                    }
                }
            });
            open.push(tcp);
            accepted2.fetch_add(1, Ordering::SeqCst);
            most2.fetch_max(open.len(), Ordering::SeqCst);
        }
    });
    (addr, accepted, most)
}

#[tokio::test]
async fn a_target_never_has_two_probes_at_once() {
    let (a, a_probes, a_most) = holding_target().await;
    let (b, b_probes, b_most) = holding_target().await;
    // Every probe is held until it times out, most of each interval: a probe left open, or a
    // second checker for the same target, shows as two connections at once.
    let health = r#"interval = "300ms"
timeout = "250ms"
healthy_threshold = 2
unhealthy_threshold = 2"#;
    let sw = Seawall::start(&config("", &[group("app", &[a, b], health)]));
    let g = sw.group("app").unwrap();
    let start = Instant::now();
    let mut churned = 0;
    while a_probes.load(Ordering::SeqCst) < 6 || b_probes.load(Ordering::SeqCst) < 6 {
        assert!(start.elapsed() < PATIENCE, "too few probes");
        // Membership changes meanwhile: the group checker looks at its targets again each time,
        // and must not start a second task for one it checks already.
        if churned < 4 && start.elapsed() > Duration::from_millis(250 * (churned + 1)) {
            let extra = dead_port();
            g.apply(Origin::Api, Update::Add(vec![extra.into()]), Duration::ZERO)
                .unwrap();
            g.apply(Origin::Api, Update::Remove(vec![extra]), Duration::ZERO)
                .unwrap();
            churned += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_state(&sw, "app", a, State::Unhealthy).await;
    assert_eq!(state(&sw, "app", a).1.unwrap().code, "Target.Timeout");
    assert_eq!(a_most.load(Ordering::SeqCst), 1, "probes of {a} at once");
    assert_eq!(b_most.load(Ordering::SeqCst), 1, "probes of {b} at once");
}

/// A target whose connections time out (a host that no longer answers, as the address of a
/// stopped container usually does) is taken out by the data plane at once too, not after the
/// health check's own timeout.
#[tokio::test]
async fn a_connect_timeout_marks_the_target_unhealthy_at_once() {
    // A listener that never accepts, its one-slot queue filled: the kernel drops further SYNs, so
    // connecting to it hangs until the connect timeout.
    let hole = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    hole.bind(&any.into()).unwrap();
    hole.listen(0).unwrap();
    let addr = hole.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    while let Ok(Ok(s)) = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    {
        queued.push(s);
        assert!(queued.len() < 16, "the accept queue never fills");
    }

    // The health check's timeout is far longer than the connect timeout: only the data plane
    // can mark the target before the answer.
    let health = r#"interval = "60s"
timeout = "30s"
healthy_threshold = 2
unhealthy_threshold = 2"#;
    let sw = Seawall::start(&config(
        ADMIN,
        &[Group {
            name: "app",
            targets: &[addr],
            extra: "connect_timeout = \"200ms\"",
            health,
        }],
    ));
    // Fail-open sends the request to the initial target; nothing else can take it.
    let (status, _) = through(&sw, "app").await;
    assert_eq!(status, 504, "a connect timeout is answered 504");
    let t = member(&sw, "app", addr);
    assert_eq!(t.passive_failures(), 1);
    assert_eq!(t.state(), State::Unhealthy);
    let reason = t.reason().unwrap();
    assert_eq!(reason.code, "Target.FailedHealthChecks");
    assert!(
        reason.description.starts_with("connection timed out"),
        "{reason:?}"
    );
    drop(queued);
}
