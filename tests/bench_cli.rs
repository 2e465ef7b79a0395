//! `seawall bench` as a user runs it: the real binary against seawall started in-process on port-0
//! listeners (fixed responses, or a forward to a test backend), checked against what seawall
//! itself counted.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Seawall};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_seawall");
const BODY: &str = "hello from seawall\n";

/// An HTTPS listener (TLS 1.2 and 1.3 unless `policy` says otherwise) answering `BODY` with 200,
/// and 503 on /down.
fn fixed_config(policy: &str) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[certificates]]
name = "c"
self_signed = ["localhost"]

[[listeners]]
name = "https"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["c"]
tls_policy = "{policy}"
alpn = ["h2", "http/1.1"]
default_action = {{ fixed_response = {{ status = 200, content_type = "text/plain", body = "{}" }} }}

  [[listeners.rules]]
  priority = 1
  match = {{ path = ["/down"] }}
  action = {{ fixed_response = {{ status = 503, body = "down" }} }}
"#,
        BODY.escape_default()
    )
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("bench")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs with `--json`, checks it succeeded and that the report's counts agree with each other.
fn run_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    check_consistent(&report);
    report
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn check_consistent(r: &Value) {
    let requests = n(&r["requests"]);
    let by_status: u64 = r["status"].as_object().unwrap().values().map(n).sum();
    assert_eq!(by_status, requests, "status counts add up: {r}");
    assert_eq!(
        n(&r["latency_us"]["count"]),
        requests,
        "one latency per response"
    );
    let errors: u64 = r["errors"].as_object().unwrap().values().map(n).sum();
    assert_eq!(errors, n(&r["errors_total"]), "error kinds add up: {r}");
    for kind in ["connect", "tls", "timeout", "reset", "other"] {
        assert!(r["errors"][kind].is_u64(), "error kind {kind} is reported");
    }
    let hs = &r["handshakes"];
    assert_eq!(
        n(&hs["full"]) + n(&hs["resumed"]),
        n(&r["handshake_us"]["count"]),
        "one handshake time per handshake"
    );
    assert!(r["duration_secs"].as_f64().unwrap() > 0.0);
}

fn https_url(addr: SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", addr.port())
}

/// Polls seawall's metric until it equals `want` (the server counts a handshake just after the
/// client sees it end), or fails after a few seconds.
fn wait_metric(sw: &Seawall, sample: &str, want: u64) {
    let start = Instant::now();
    loop {
        let got = sw.metric(sample) as u64;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{sample}: seawall counted {got}, bench {want}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

const FULL: &str = r#"seawall_tls_handshakes_total{kind="full"}"#;
const RESUMED: &str = r#"seawall_tls_handshakes_total{kind="resumed"}"#;

#[test]
fn keep_alive_reuses_one_handshake_per_connection() {
    let sw = Seawall::start(&fixed_config("tls13-1-2"));
    let url = https_url(sw.addr("https"), "/");
    let r = run_json(&["-k", "-c", "4", "-d", "500ms", &url]);
    let requests = n(&r["requests"]);
    assert!(requests > 4, "{r}");
    assert_eq!(n(&r["status"]["200"]), requests);
    assert_eq!(n(&r["errors_total"]), 0, "{r}");
    assert_eq!(
        n(&r["handshakes"]["full"]),
        4,
        "one handshake per connection: {r}"
    );
    assert_eq!(n(&r["handshakes"]["resumed"]), 0);
    assert_eq!(n(&r["bytes"]["body"]), requests * BODY.len() as u64);
    assert!(
        n(&r["bytes"]["read"]) > n(&r["bytes"]["body"]),
        "wire bytes include framing"
    );
    assert_eq!(r["tls"]["version"], "TLSv1_3");
    assert_eq!(r["tls"]["alpn"], "http/1.1");
    wait_metric(&sw, FULL, 4);
}

#[test]
fn new_connection_makes_a_full_handshake_per_request() {
    let sw = Seawall::start(&fixed_config("tls13-1-2"));
    let url = https_url(sw.addr("https"), "/");
    let r = run_json(&["-k", "-c", "2", "-d", "500ms", "--new-connection", &url]);
    let requests = n(&r["requests"]);
    assert!(requests > 2, "{r}");
    assert_eq!(n(&r["errors_total"]), 0, "{r}");
    assert_eq!(n(&r["handshakes"]["full"]), requests, "{r}");
    assert_eq!(
        n(&r["handshakes"]["resumed"]),
        0,
        "no resumption unless asked: {r}"
    );
    assert!(r["handshakes"]["full_per_sec"].as_f64().unwrap() > 0.0);
    wait_metric(&sw, FULL, requests);
    assert_eq!(sw.metric(RESUMED), 0.0);
}

#[test]
fn resume_resumes_every_connection_after_the_first() {
    let sw = Seawall::start(&fixed_config("tls13-1-2"));
    let url = https_url(sw.addr("https"), "/");
    for (tls, label) in [("1.3", "TLSv1_3"), ("1.2", "TLSv1_2")] {
        let r = run_json(&[
            "-k",
            "-c",
            "1",
            "-n",
            "20",
            "--new-connection",
            "--resume",
            "--tls",
            tls,
            &url,
        ]);
        assert_eq!(n(&r["requests"]), 20, "{r}");
        assert_eq!(r["tls"]["version"], label);
        let (full, resumed) = (n(&r["handshakes"]["full"]), n(&r["handshakes"]["resumed"]));
        assert_eq!(full + resumed, 20);
        // The first connection has no session to resume; every later one has.
        assert_eq!(full, 1, "TLS {tls}: {r}");
        assert_eq!(resumed, 19, "TLS {tls}: {r}");
    }
    wait_metric(&sw, FULL, 2);
    wait_metric(&sw, RESUMED, 38);
}

#[test]
fn h2_runs_streams_over_few_connections() {
    let sw = Seawall::start(&fixed_config("tls13-1-2"));
    let url = https_url(sw.addr("https"), "/");
    let r = run_json(&[
        "-k",
        "--h2",
        "--streams",
        "4",
        "-c",
        "2",
        "-d",
        "500ms",
        &url,
    ]);
    assert_eq!(r["tls"]["alpn"], "h2");
    assert_eq!(r["streams"], 4);
    assert!(n(&r["requests"]) > 8, "{r}");
    assert_eq!(n(&r["errors_total"]), 0, "{r}");
    assert_eq!(
        n(&r["handshakes"]["full"]),
        2,
        "streams share connections: {r}"
    );
    wait_metric(&sw, FULL, 2);
}

#[test]
fn rate_sends_exactly_the_scheduled_requests() {
    let sw = Seawall::start(&fixed_config("tls13-1-2"));
    let url = https_url(sw.addr("https"), "/");
    // 200/s for 0.5 s: 100 sends at fixed times, each made even if late.
    let r = run_json(&["-k", "-c", "2", "-d", "500ms", "--rate", "200", &url]);
    assert_eq!(n(&r["requests"]), 100, "{r}");
    assert_eq!(r["rate"], 200.0);
    assert!(r["mode"].as_str().unwrap().contains("open-loop"));
}

#[test]
fn requests_limit_stops_at_the_count_and_counts_statuses() {
    let sw = Seawall::start(&fixed_config("tls13-1-2"));
    let r = run_json(&[
        "-k",
        "-c",
        "3",
        "-n",
        "37",
        &https_url(sw.addr("https"), "/down"),
    ]);
    assert_eq!(n(&r["requests"]), 37, "{r}");
    assert_eq!(n(&r["status"]["503"]), 37, "{r}");
    assert_eq!(r["status"].as_object().unwrap().len(), 1);
}

#[test]
fn refused_connections_are_counted_not_fatal() {
    let port = common::dead_port().port();
    let url = format!("https://127.0.0.1:{port}/");
    let r = run_json(&["-k", "-c", "2", "-n", "10", &url]);
    assert_eq!(n(&r["requests"]), 0, "{r}");
    assert_eq!(n(&r["errors"]["connect"]), 10, "{r}");
    assert_eq!(n(&r["errors_total"]), 10);
    // The table form says the same to a person.
    let out = run(&["-k", "-c", "1", "-n", "3", &url]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("connect: 3"), "{table}");
}

#[test]
fn tls12_against_a_tls13_only_listener_fails_the_handshakes() {
    let sw = Seawall::start(&fixed_config("tls13-only"));
    let url = https_url(sw.addr("https"), "/");
    let r = run_json(&["-k", "-c", "1", "-n", "5", "--tls", "1.2", &url]);
    assert_eq!(n(&r["requests"]), 0, "{r}");
    assert_eq!(n(&r["errors"]["tls"]), 5, "{r}");
    assert_eq!(n(&r["errors_total"]), 5);
    assert!(r["tls"].is_null(), "no handshake completed");
    wait_metric(
        &sw,
        r#"seawall_tls_handshake_errors_total{reason="alert"}"#,
        5,
    );
    assert_eq!(sw.metric(FULL), 0.0);
}

#[test]
fn cipher_and_group_restrict_the_offer() {
    let sw = Seawall::start(&fixed_config("tls13-1-2"));
    let url = https_url(sw.addr("https"), "/");
    let r = run_json(&[
        "-k",
        "-n",
        "3",
        "-c",
        "1",
        "--cipher",
        "TLS_CHACHA20_POLY1305_SHA256",
        "--group",
        "secp256r1",
        &url,
    ]);
    assert_eq!(
        r["tls"]["cipher_suite"], "TLS13_CHACHA20_POLY1305_SHA256",
        "{r}"
    );
    let r = run_json(&[
        "-k",
        "-n",
        "3",
        "-c",
        "1",
        "--tls",
        "1.2",
        "--cipher",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        &url,
    ]);
    assert_eq!(r["tls"]["version"], "TLSv1_2");
    assert_eq!(
        r["tls"]["cipher_suite"],
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    );
    // A suite that does not exist is an error before any connection.
    let out = run(&["-k", "--cipher", "TLS_NULL_WITH_NULL", "-n", "1", &url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown cipher suite"));
}

#[test]
fn https_needs_a_trust_decision() {
    let out = run(&["-n", "1", "https://127.0.0.1:1/"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
}

#[test]
fn ca_file_verifies_the_server() {
    let sw = Seawall::start_with(
        &format!(
            r#"
[[certificates]]
name = "c"
cert = "c.pem"
key = "c-key.pem"

[[listeners]]
name = "https"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["c"]
default_action = {{ fixed_response = {{ status = 200, body = "{}" }} }}
"#,
            "ok"
        ),
        |dir| {
            common::write_cert(dir, "c", &["localhost"]);
        },
    );
    let ca = sw.dir.path().join("c.pem");
    let url = https_url(sw.addr("https"), "/");
    let r = run_json(&["--ca", ca.to_str().unwrap(), "-n", "3", "-c", "1", &url]);
    assert_eq!(n(&r["requests"]), 3, "{r}");
    // The certificate names localhost only: another SNI name fails verification.
    let r = run_json(&[
        "--ca",
        ca.to_str().unwrap(),
        "--sni",
        "other.test",
        "-n",
        "2",
        "-c",
        "1",
        &url,
    ]);
    assert_eq!(n(&r["errors"]["tls"]), 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_post_with_headers_reaches_the_backend() {
    let backend = Backend::start("b").await;
    let sw = Seawall::start(&format!(
        r#"
[[listeners]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ forward = "g" }}

[[target_groups]]
name = "g"
targets = ["{}"]
  [target_groups.health_check]
  interval = "100ms"
  timeout = "50ms"
"#,
        backend.addr
    ));
    sw.wait_healthy("g").await;
    let url = format!("http://127.0.0.1:{}/upload", sw.addr("http").port());
    let r = tokio::task::spawn_blocking(move || {
        run_json(&[
            "-X",
            "POST",
            "-H",
            "X-Test: 1",
            "--body",
            "0123456789",
            "-c",
            "2",
            "-n",
            "25",
            &url,
        ])
    })
    .await
    .unwrap();
    assert_eq!(n(&r["requests"]), 25, "{r}");
    assert_eq!(n(&r["status"]["200"]), 25, "{r}");
    assert!(r["tls"].is_null());
    assert_eq!(n(&r["handshakes"]["full"]), 0);
    assert_eq!(backend.hits(), 25);
    // /upload answers "<sha256 of the body> <length>": 64 hex digits, a space, "10".
    assert_eq!(n(&r["bytes"]["body"]), 25 * 67);
}
