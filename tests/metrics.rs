//! The metrics as a user scrapes them: exact counter deltas for a known mix of requests (200s,
//! fixed responses, redirects, a dead target, a target that fails TLS, failed client handshakes,
//! HTTP/1.0, HTTP/1.1 and HTTP/2), histogram counts equal to request counts, promtool's verdict
//! idle and under load, the process collector's standard names, and deploy/'s dashboard and
//! scrape configuration against what /metrics exposes.
mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for anything that should take well under a second: only a hang fails on it.
const PATIENCE: Duration = Duration::from_secs(20);

const NOT_FOUND: &str =
    r#"{ fixed_response = { status = 404, content_type = "text/plain", body = "none here" } }"#;
const REDIRECT: &str = r#"{ redirect = { host = "elsewhere.test", status = 301 } }"#;
/// Probes often enough that failing ones are seen while the test runs (they must not count as
/// target connection or TLS errors).
const FAST_CHECKS: &str = "interval = \"200ms\"\ntimeout = \"100ms\"";

/// "web" (plain HTTP) has five rules, none of which the router's indexes can rule out (suffix
/// paths), so a request tests every rule up to its match: `*.png` (404 fixed response), `*/old`
/// (redirect), `*/dead` (a group whose target's port is closed), `*/tls` (an HTTPS group whose
/// target speaks plain HTTP), `*/reset` (a group whose target reads the request and closes),
/// else the live group "app". "secure" (HTTPS) has no rules.
fn mix_config(live: SocketAddr, dead: SocketAddr, plain: SocketAddr, closer: SocketAddr) -> String {
    ConfigBuilder::new()
        .admin("")
        .self_signed("dev", &["localhost"])
        .listener(
            Listener::http("web")
                .rule(10, &path("*.png"), NOT_FOUND)
                .rule(20, &path("*/old"), REDIRECT)
                .rule(30, &path("*/dead"), &forward("dead"))
                .rule(40, &path("*/tls"), &forward("tlsbad"))
                .rule(50, &path("*/reset"), &forward("closer"))
                .forward("app"),
        )
        .listener(Listener::https("secure", &["dev"]).forward("app"))
        .target_group(TargetGroup::new("app", &[live]))
        .target_group(TargetGroup::new("dead", &[dead]).health_check(FAST_CHECKS))
        .target_group(
            TargetGroup::new("tlsbad", &[plain])
                .line("protocol = \"https\"")
                .health_check(FAST_CHECKS),
        )
        .target_group(TargetGroup::new("closer", &[closer]).health_check(FAST_CHECKS))
        .build()
}

/// A target that reads a request head, then closes the connection without answering.
async fn closer() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// seawall on [`mix_config`], with its targets (kept alive with it).
async fn start_mix() -> (Seawall, [Backend; 2]) {
    let live = Backend::start("live").await;
    let plain = Backend::start("plain").await;
    let config = mix_config(live.addr, dead_port(), plain.addr, closer().await);
    (Seawall::start(&config), [live, plain])
}

/// One sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Every sample of a Prometheus text (label values here hold no quotes, commas or escapes).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').unwrap();
                    let labels = inner
                        .split(',')
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap();
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, BTreeMap::new()),
            };
            (name.to_string(), labels, value.parse().unwrap())
        })
        .collect()
}

/// The value of `name{labels}` (exactly those labels), 0 when absent.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(text, name, labels)
}

/// `after - before` for one sample.
fn delta(before: &str, after: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(after, name, labels) - value(before, name, labels)
}

/// Sums of `name`'s samples by the values of the labels `by`.
fn sum_by(text: &str, name: &str, by: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for (n, labels, v) in parse(text) {
        if n == name {
            let key = by.iter().map(|k| labels[*k].clone()).collect();
            *out.entry(key).or_insert(0.0) += v;
        }
    }
    out
}

/// Writes `data` on a fresh plain connection and reads until seawall closes it: every byte each
/// way, as the client saw them.
async fn exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(data).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut out))
        .await
        .expect("seawall closes the connection")
        .expect("a clean close");
    out
}

fn status_line(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response);
    text.lines().next().unwrap_or("").to_string()
}

/// Polls `text()` until `done` holds of it, then gives it; panics after [`PATIENCE`].
async fn wait_for(sw: &Seawall, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = sw.metrics_text();
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The cipher label of a suite: its IANA name, which rustls's differs from only in TLS 1.3's
/// `TLS13_` prefix.
fn iana(suite: rustls::CipherSuite) -> String {
    let name = suite.as_str().unwrap();
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_string(),
    }
}

// How many of each the mix sends.
const OK: usize = 4;
const FIXED: usize = 3;
const REDIRECTS: usize = 2;
const DEAD: usize = 2;
const TLS_BAD: usize = 1;
const RESET: usize = 1;
/// HTTP/1.0 requests to "app" (on "web").
const HTTP10: usize = 1;
/// HTTP/2 requests on one TLS 1.3 connection to "secure".
const H2: usize = 3;
/// HTTP/1.1 requests on one TLS 1.2 connection to "secure".
const TLS12: usize = 1;
/// Connections to "secure" that are not TLS.
const BAD_HANDSHAKES: usize = 2;

/// What the mix saw from the client's side.
struct Sent {
    /// Bytes written to and read from "web", every connection to it closed by seawall.
    web_in: u64,
    web_out: u64,
    /// The suites the two TLS connections settled: TLS 1.3, TLS 1.2.
    suite13: rustls::CipherSuite,
    suite12: rustls::CipherSuite,
}

/// Sends the mix, checking each answer's status.
async fn drive_mix(sw: &Seawall) -> Sent {
    let web = sw.addr("web");
    let secure = sw.addr("secure");
    let (mut web_in, mut web_out) = (0u64, 0u64);
    let send = |path: &str, version: &str| {
        format!("GET {path} {version}\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let plan: Vec<(String, &str, &str)> = [
        (OK, "/ok", "HTTP/1.1", "200"),
        (FIXED, "/a.png", "HTTP/1.1", "404"),
        (REDIRECTS, "/a/old", "HTTP/1.1", "301"),
        (DEAD, "/x/dead", "HTTP/1.1", "502"),
        (TLS_BAD, "/x/tls", "HTTP/1.1", "502"),
        (RESET, "/x/reset", "HTTP/1.1", "502"),
        (HTTP10, "/ok", "HTTP/1.0", "200"),
    ]
    .iter()
    .flat_map(|&(n, path, version, status)| {
        std::iter::repeat_n((path.to_string(), version, status), n)
    })
    .collect();
    for (path, version, status) in plan {
        let request = send(&path, version);
        let response = exchange(web, &request).await;
        let line = status_line(&response);
        assert!(
            line.split(' ').nth(1) == Some(status),
            "{path} {version}: {line}"
        );
        web_in += request.len() as u64;
        web_out += response.len() as u64;
    }

    // HTTP/2 over TLS 1.3.
    let tls = tls_connect(
        secure,
        &Tls::new("localhost").h2().only(&rustls::version::TLS13),
    )
    .await
    .unwrap();
    let suite13 = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
    let mut c = h2(tls).await;
    for _ in 0..H2 {
        let req = Request::get("https://localhost/h2").body(empty()).unwrap();
        let got = read(c.send_request(req).await.unwrap()).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    }
    drop(c);

    // HTTP/1.1 over TLS 1.2.
    let tls = tls_connect(secure, &Tls::new("localhost").only(&rustls::version::TLS12))
        .await
        .unwrap();
    let suite12 = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
    let mut c = h1(tls).await;
    for _ in 0..TLS12 {
        let req = Request::get("/tls12")
            .header("host", "localhost")
            .body(empty())
            .unwrap();
        let got = read(c.send_request(req).await.unwrap()).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    }
    drop(c);

    // Not TLS: refused with an alert.
    let junk: [&[u8]; BAD_HANDSHAKES] = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",
    ];
    for data in junk {
        let mut tcp = TcpStream::connect(secure).await.unwrap();
        tcp.write_all(data).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut out))
            .await
            .expect("seawall closes a connection that is not TLS");
    }
    Sent {
        web_in,
        web_out,
        suite13,
        suite12,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_mix_counts_exactly() {
    let (sw, _targets) = start_mix().await;
    let before = sw.metrics_text();

    let sent = drive_mix(&sw).await;

    let web_requests = OK + FIXED + REDIRECTS + DEAD + TLS_BAD + RESET + HTTP10;
    let total = (web_requests + H2 + TLS12) as f64;
    let after = wait_for(&sw, "every request counted, every probe failed once", |t| {
        metric_total(t, "seawall_requests_total") >= total
            && metric_total(t, "seawall_tls_handshake_errors_total") >= BAD_HANDSHAKES as f64
            && value(
                t,
                "seawall_health_checks_total",
                &[("target_group", "dead"), ("result", "failure")],
            ) >= 1.0
            && ["dead", "tlsbad", "closer"].iter().all(|g| {
                value(
                    t,
                    "seawall_health_checks_total",
                    &[("target_group", g), ("result", "failure")],
                ) >= 1.0
            })
    })
    .await;
    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    let n = |x: usize| x as f64;

    // requests_total, its labels as they were.
    let requests = "seawall_requests_total";
    let pair = |l, g, c| [("listener", l), ("target_group", g), ("code", c)];
    assert_eq!(d(requests, &pair("web", "app", "200")), n(OK + HTTP10));
    assert_eq!(d(requests, &pair("web", "", "404")), n(FIXED));
    assert_eq!(d(requests, &pair("web", "", "301")), n(REDIRECTS));
    assert_eq!(d(requests, &pair("web", "dead", "502")), n(DEAD));
    assert_eq!(d(requests, &pair("web", "tlsbad", "502")), n(TLS_BAD));
    assert_eq!(d(requests, &pair("web", "closer", "502")), n(RESET));
    assert_eq!(d(requests, &pair("secure", "app", "200")), n(H2 + TLS12));
    assert_eq!(metric_total(&after, requests), total, "{after}");

    // Answers seawall made itself.
    let elb = "seawall_elb_responses_total";
    assert_eq!(d(elb, &[("code", "404")]), n(FIXED));
    assert_eq!(d(elb, &[("code", "301")]), n(REDIRECTS));
    assert_eq!(d(elb, &[("code", "502")]), n(DEAD + TLS_BAD + RESET));
    assert_eq!(
        metric_total(&after, elb),
        n(FIXED + REDIRECTS + DEAD + TLS_BAD + RESET)
    );

    // Actions, by listener.
    for (name, web) in [
        ("seawall_fixed_responses_total", FIXED),
        ("seawall_redirects_total", REDIRECTS),
    ] {
        assert_eq!(d(name, &[("listener", "web")]), n(web), "{name}");
        assert_eq!(d(name, &[("listener", "secure")]), 0.0, "{name}");
        // Present before the first one, for dashboards and alerts.
        assert!(before.contains(&format!("{name}{{listener=\"secure\"}} 0")));
    }

    // Requests by version.
    let version = |l, v| [("listener", l), ("version", v)];
    let by_version = "seawall_requests_by_version_total";
    assert_eq!(
        d(by_version, &version("web", "HTTP/1.1")),
        n(web_requests - HTTP10)
    );
    assert_eq!(d(by_version, &version("web", "HTTP/1.0")), n(HTTP10));
    assert_eq!(d(by_version, &version("web", "HTTP/2")), 0.0);
    assert_eq!(d(by_version, &version("secure", "HTTP/2")), n(H2));
    assert_eq!(d(by_version, &version("secure", "HTTP/1.1")), n(TLS12));
    assert_eq!(metric_total(&after, by_version), total);

    // Rules tested: every rule before the match (and the match); "secure" has none.
    let evaluations = "seawall_rule_evaluations_total";
    let rules_to_default = 5;
    let expected = (OK + HTTP10) * rules_to_default
        + FIXED
        + REDIRECTS * 2
        + DEAD * 3
        + TLS_BAD * 4
        + RESET * 5;
    assert_eq!(d(evaluations, &[("listener", "web")]), n(expected));
    assert_eq!(d(evaluations, &[("listener", "secure")]), 0.0);

    // Target errors: one per failed connect, by kind and group; the failing health probes of
    // the same targets (seen above) are not among them.
    let group = |g| [("target_group", g)];
    let conn_errors = "seawall_target_connection_errors_total";
    let tls_errors = "seawall_target_tls_errors_total";
    assert_eq!(d(conn_errors, &group("dead")), n(DEAD));
    assert_eq!(d(conn_errors, &group("tlsbad")), 0.0);
    assert_eq!(d(conn_errors, &group("app")), 0.0);
    assert_eq!(d(tls_errors, &group("tlsbad")), n(TLS_BAD));
    // A target that closed the connection before answering.
    assert_eq!(d(conn_errors, &group("closer")), n(RESET));
    assert_eq!(d(tls_errors, &group("closer")), 0.0);
    assert_eq!(d(tls_errors, &group("dead")), 0.0);
    assert_eq!(d(tls_errors, &group("app")), 0.0);
    assert!(before.contains(&format!("{tls_errors}{{target_group=\"app\"}} 0")));

    // Client TLS: the handshakes, what they settled, the failures.
    let negotiations = "seawall_tls_negotiations_total";
    let cipher13 = iana(sent.suite13);
    assert!(
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256"
        ]
        .contains(&cipher13.as_str()),
        "{cipher13}"
    );
    let negotiated = |p, c: &str| d(negotiations, &[("protocol", p), ("cipher", c)]);
    assert_eq!(negotiated("TLSv1.3", &cipher13), 1.0, "{after}");
    assert_eq!(negotiated("TLSv1.2", &iana(sent.suite12)), 1.0, "{after}");
    assert_eq!(metric_total(&after, negotiations), 2.0, "{after}");
    let handshakes = "seawall_tls_handshakes_total";
    assert_eq!(d(handshakes, &[("kind", "full")]), 2.0);
    assert_eq!(d(handshakes, &[("kind", "resumed")]), 0.0);
    let handshake_errors = "seawall_tls_handshake_errors_total";
    assert_eq!(
        d(handshake_errors, &[("reason", "alert")]),
        n(BAD_HANDSHAKES)
    );
    assert_eq!(metric_total(&after, handshake_errors), n(BAD_HANDSHAKES));

    // Bytes: on "web", exactly what the clients wrote and read (every connection there was
    // closed by seawall after its one answer); on "secure", TLS records and handshakes, more
    // each way.
    let bytes = "seawall_processed_bytes_total";
    let dir = |l, d| [("listener", l), ("direction", d)];
    assert_eq!(d(bytes, &dir("web", "in")), sent.web_in as f64);
    assert_eq!(d(bytes, &dir("web", "out")), sent.web_out as f64);
    assert!(
        value(&after, bytes, &dir("secure", "in")) > value(&before, bytes, &dir("secure", "in"))
    );
    assert!(
        value(&after, bytes, &dir("secure", "out")) > value(&before, bytes, &dir("secure", "out"))
    );

    // Request duration: the histogram's count is requests_total's, pair by pair.
    let requests_by_pair = sum_by(&after, requests, &["listener", "target_group"]);
    let counts_by_pair = sum_by(
        &after,
        "seawall_request_duration_seconds_count",
        &["listener", "target_group"],
    );
    assert_eq!(requests_by_pair, counts_by_pair);
    assert_eq!(requests_by_pair.len(), 6, "{requests_by_pair:?}");
    let inf = sum_by(
        &after,
        "seawall_request_duration_seconds_bucket",
        &["listener", "target_group", "le"],
    );
    for ((pair, count), le) in counts_by_pair.iter().zip(std::iter::repeat("+Inf")) {
        let key = vec![pair[0].clone(), pair[1].clone(), le.to_string()];
        assert_eq!(inf[&key], *count, "{pair:?}");
    }
    // Every bucket is there, 1 ms to 60 s.
    for le in ["0.001", "0.0025", "0.25", "10", "30", "60"] {
        let key = vec!["web".to_string(), "app".to_string(), le.to_string()];
        assert!(inf.contains_key(&key), "le={le}");
    }
}

/// `promtool check metrics` on `text`: the problems it reports, one per line (none when it
/// accepts the text).
fn promtool_problems(text: &str) -> Vec<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; .ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<String> = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(
        out.status.success(),
        problems.is_empty(),
        "promtool's exit status and its output disagree: {said}"
    );
    problems
}

/// What promtool may say of seawall's metrics: nothing.
fn assert_promtool_clean(text: &str) {
    let problems = promtool_problems(text);
    assert!(problems.is_empty(), "promtool: {problems:#?}\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_idle_and_under_load() {
    // The check can fail: promtool flags a counter without `_total`.
    let bad = "# HELP seawall_bad A counter.\n# TYPE seawall_bad counter\nseawall_bad 1\n";
    assert!(!promtool_problems(bad).is_empty());
    let (sw, _targets) = start_mix().await;
    assert_promtool_clean(&fetch_metrics(sw.admin()).await);
    // Every family with series, then idle again.
    drive_mix(&sw).await;
    let text = wait_for(&sw, "the mix counted", |t| {
        metric_total(t, "seawall_requests_by_version_total") >= 1.0
    })
    .await;
    assert_promtool_clean(&text);

    // Clients hammering both listeners while /metrics is scraped.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = tokio::task::JoinSet::new();
    for i in 0..4 {
        let (stop, done) = (stop.clone(), done.clone());
        let (web, secure) = (sw.addr("web"), sw.addr("secure"));
        load.spawn(async move {
            let paths = ["/ok", "/a.png", "/a/old", "/x/dead"];
            if i == 3 {
                // HTTP/2 over TLS: many streams on one connection.
                let tls = tls_connect(secure, &Tls::new("localhost").h2())
                    .await
                    .unwrap();
                let mut c = h2(tls).await;
                while !stop.load(Ordering::Relaxed) {
                    let req = Request::get("https://localhost/h2").body(empty()).unwrap();
                    read(c.send_request(req).await.unwrap()).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            // HTTP/1.1 keep-alive, a mix of answers.
            let mut c = h1(TcpStream::connect(web).await.unwrap()).await;
            let mut k = i;
            while !stop.load(Ordering::Relaxed) {
                let req = Request::get(paths[k % paths.len()])
                    .header("host", "localhost")
                    .body(empty())
                    .unwrap();
                read(c.send_request(req).await.unwrap()).await;
                done.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
        });
    }
    for round in 0..5 {
        // Each scrape starts with requests under way.
        let seen = done.load(Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while done.load(Ordering::Relaxed) < seen + 20 {
            assert!(tokio::time::Instant::now() < deadline, "the load stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let text = fetch_metrics(sw.admin()).await;
        assert!(
            text.contains("seawall_request_duration_seconds_bucket"),
            "round {round}"
        );
        assert_promtool_clean(&text);
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = load.join_next().await {
        r.unwrap();
    }
}

#[tokio::test]
async fn process_metrics_keep_their_standard_names() {
    let live = Backend::start("live").await;
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .admin("")
            .listener(Listener::http("web").forward("app"))
            .target_group(TargetGroup::new("app", &[live.addr]))
            .build(),
    );
    let text = fetch_metrics(sw.admin()).await;
    let sample = |name: &str| value(&text, name, &[]);
    assert!(sample("process_resident_memory_bytes") > 0.0, "{text}");
    assert!(sample("process_virtual_memory_bytes") > 0.0, "{text}");
    assert!(sample("process_open_fds") > 0.0, "{text}");
    assert!(
        sample("process_max_fds") >= sample("process_open_fds"),
        "{text}"
    );
    assert!(sample("process_start_time_seconds") > 1.5e9, "{text}");
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter\n"),
        "{text}"
    );
    assert!(!text.contains("seawall_process_"), "{text}");
}

/// Every metric family a PromQL expression names (`seawall_*`, `process_*`, outside quoted
/// strings), a histogram's `_bucket`, `_count` and `_sum` series under their family's name.
fn families_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        if bytes[i] == b'"' {
            // A label value or a string: no metric names in there.
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            let name = &expr[start..i];
            if name.starts_with("seawall_") || name.starts_with("process_") {
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                out.insert(family.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every PromQL text of a Grafana dashboard: panel and annotation `expr`s, template variables'
/// queries.
fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) if s.contains('(') => {
                        out.push(s.clone())
                    }
                    _ => queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_only_metrics_seawall_exposes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dashboard["schemaVersion"], 39);
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for v in ["DS_PROMETHEUS", "listener", "target_group"] {
        assert!(variables.contains(&v), "variable {v} in {variables:?}");
    }
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(
        families_in(
            r#"sum(rate(seawall_a_bucket{x="process_no"}[5m])) / process_b_count + seawall_c_sum"#
        ),
        BTreeSet::from(["seawall_a", "process_b", "seawall_c"].map(String::from))
    );
    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| families_in(e)).collect();
    // The extraction works: the panels the issue asks for are there.
    for family in [
        "seawall_requests_total",
        "seawall_elb_responses_total",
        "seawall_request_duration_seconds",
        "seawall_target_response_seconds",
        "seawall_tls_handshakes_total",
        "seawall_tls_handshake_errors_total",
        "seawall_tls_negotiations_total",
        "seawall_healthy_targets",
        "seawall_unhealthy_targets",
        "seawall_active_connections",
        "seawall_new_connections_total",
        "seawall_rejected_connections_total",
        "seawall_processed_bytes_total",
        "seawall_config_reloads_total",
        "seawall_config_generation",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(family), "the dashboard shows {family}");
    }

    let (sw, _targets) = start_mix().await;
    drive_mix(&sw).await;
    // Labelled families have series once something counted in them (health checks of the
    // failing groups included).
    wait_for(&sw, "the mix and a probe counted", |t| {
        metric_total(t, "seawall_requests_by_version_total") >= 1.0
            && metric_total(t, "seawall_health_checks_total") >= 1.0
    })
    .await;
    let text = fetch_metrics(sw.admin()).await;
    let exposed: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let missing: Vec<&String> = used
        .iter()
        .filter(|f| !exposed.contains(f.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in /metrics: {missing:?}\n{text}");
}

#[test]
fn the_scrape_config_is_valid_and_points_at_the_admin_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("deploy/prometheus.yml");
    let out = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(&path)
        .output()
        .expect("promtool (Debian package `prometheus`; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let yml = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = yml
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(lines.contains(&"metrics_path: /metrics"), "{yml}");
    // The target is the example configuration's admin address.
    let example: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("config/example.toml")).unwrap())
            .unwrap();
    let admin = example["admin"]["bind"].as_str().unwrap();
    assert!(
        lines.contains(&format!("- {admin}").as_str()),
        "{admin} in {yml}"
    );
}
