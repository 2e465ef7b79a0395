//! `proxy_protocol = true` on a listener: the client a PROXY protocol header (v1 or v2) names is
//! what `source_ip`, X-Forwarded-For and the logs see, over TLS and plain HTTP; v2 LOCAL keeps the
//! TCP peer; a connection without a valid header is closed and counted; a reload flips it for new
//! connections; a non-boolean value is a configuration error with its line.
mod common;
use common::process::cmd;
use common::*;

use std::net::{Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use http::Request;
use hyper::client::conn::http1::SendRequest;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

const V1: &[u8] = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 443\r\n";

/// A v2 header: `command` 0 (LOCAL) or 1 (PROXY), `family` the family and transport byte.
fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend(u16::try_from(addresses.len()).unwrap().to_be_bytes());
    h.extend(addresses);
    h
}

/// v2 PROXY over TCP/IPv4 from `src`, to 127.0.0.1:443, with the TLV that NLB adds (its
/// endpoint id), which seawall ignores.
fn v2_ipv4(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut a = src.to_vec();
    a.extend([127, 0, 0, 1]);
    a.extend(port.to_be_bytes());
    a.extend(443u16.to_be_bytes());
    let vpce = b"\x01vpce-08d2bf15fac5001c9";
    a.push(0xEA);
    a.extend(u16::try_from(vpce.len()).unwrap().to_be_bytes());
    a.extend(vpce);
    v2(1, 0x11, &a)
}

/// v2 PROXY over TCP/IPv6 from `src`, to [::1]:443.
fn v2_ipv6(src: &str, port: u16) -> Vec<u8> {
    let mut a = src.parse::<Ipv6Addr>().unwrap().octets().to_vec();
    a.extend(Ipv6Addr::LOCALHOST.octets());
    a.extend(port.to_be_bytes());
    a.extend(443u16.to_be_bytes());
    v2(1, 0x21, &a)
}

/// `edge` (https) and `plain` (http), both behind a PROXY protocol balancer: `/who` from the
/// documentation networks answers `doc-net`; everything else goes to `app`, which echoes the
/// headers it got.
fn config(app: SocketAddr, proxy_protocol: bool) -> String {
    let listener = |l: Listener| {
        l.line(&format!("proxy_protocol = {proxy_protocol}"))
            .forward("app")
            .rule(
                10,
                r#"{ path = ["/who"], source_ip = ["203.0.113.0/24", "2001:db8::/32"] }"#,
                &fixed("doc-net"),
            )
    };
    ConfigBuilder::new()
        .runtime("workers = 1\nhandshake_timeout = \"1s\"")
        .self_signed("dev", &["localhost"])
        .listener(listener(Listener::https("edge", &["dev"])))
        .listener(listener(Listener::http("plain")))
        .target_group(TargetGroup::new("app", &[app]))
        .raw("[access_log]\npath = \"access.log\"\nconnections_path = \"connections.log\"")
        .build()
}

/// Connects to `addr`, sends `header` and then speaks HTTP/1.1, over TLS when `https`.
async fn connect(addr: SocketAddr, header: &[u8], https: bool) -> SendRequest<Body> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    if !https {
        return h1(tcp).await;
    }
    let tls = TlsConnector::from(tls_client(&Tls::new("localhost")))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    h1(tls).await
}

async fn ask(c: &mut SendRequest<Body>, path: &str) -> Got {
    let req = Request::get(path)
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let got = read(c.send_request(req).await.unwrap()).await;
    assert_eq!(got.status, 200, "{path}: {}", got.text());
    got
}

/// What a connection beginning with `header` is taken for: whether the documentation-network
/// rule took `/who`, and the `X-Forwarded-For` and `X-Forwarded-Port` the target saw.
async fn seen_as(
    addr: SocketAddr,
    header: &[u8],
    https: bool,
    tag: &str,
) -> (bool, String, String) {
    let mut c = connect(addr, header, https).await;
    let who = ask(&mut c, &format!("/who?{tag}")).await;
    let echo = ask(&mut c, &format!("/echo?{tag}")).await;
    (
        who.text() == "doc-net",
        echo.seen_header("x-forwarded-for").unwrap(),
        echo.seen_header("x-forwarded-port").unwrap(),
    )
}

/// The lines of `path` once one of them contains `needle`.
async fn log_line(path: &std::path::Path, needle: &str) -> String {
    let find = || {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains(needle))
            .map(str::to_string)
    };
    assert!(
        eventually(PATIENCE, || async { find().is_some() }).await,
        "no line with {needle} in {}:\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
    find().unwrap()
}

fn errors(sw: &Seawall, listener: &str) -> f64 {
    sw.metric(&format!(
        "seawall_proxy_protocol_errors_total{{listener=\"{listener}\"}}"
    ))
}

#[tokio::test]
async fn a_v1_header_before_tls_is_the_client_for_rules_headers_and_logs() {
    let app = Backend::start("app").await;
    let sw = Seawall::start(&config(app.addr, true));
    let edge = sw.addr("edge");

    let (matched, xff, port) = seen_as(edge, V1, true, "v1").await;
    assert!(matched, "source_ip did not match the header's client");
    assert_eq!(xff, "203.0.113.7");
    assert_eq!(port, edge.port().to_string(), "the port seawall listens on");

    // Another client of the balancer, outside the rule's networks.
    let other = b"PROXY TCP4 198.51.100.20 127.0.0.1 40000 443\r\n";
    let (matched, xff, _) = seen_as(edge, other, true, "other").await;
    assert!(!matched, "source_ip matched 198.51.100.20");
    assert_eq!(xff, "198.51.100.20");

    let dir = sw.dir.path();
    let access = log_line(&dir.join("access.log"), "/echo?v1").await;
    let fields: Vec<&str> = access.split(' ').collect();
    assert_eq!(fields[3], "203.0.113.7:51234", "{access}");
    let who = log_line(&dir.join("access.log"), "/who?v1").await;
    assert_eq!(who.split(' ').nth(3), Some("203.0.113.7:51234"), "{who}");
    // ALB's connection log: client IP and port are fields 2 and 3.
    let conn = log_line(&dir.join("connections.log"), " 203.0.113.7 ").await;
    let fields: Vec<&str> = conn.split(' ').collect();
    assert_eq!((fields[1], fields[2]), ("203.0.113.7", "51234"), "{conn}");
    assert!(conn.contains("Success"), "{conn}");
    assert_eq!(errors(&sw, "edge"), 0.0);
}

#[tokio::test]
async fn a_v2_header_over_ipv4_or_ipv6_is_the_client() {
    let app = Backend::start("app").await;
    let sw = Seawall::start(&config(app.addr, true));
    let edge = sw.addr("edge");

    let (matched, xff, _) = seen_as(edge, &v2_ipv4([203, 0, 113, 9], 4242), true, "v4").await;
    assert!(matched);
    assert_eq!(xff, "203.0.113.9");
    let (matched, xff, _) = seen_as(edge, &v2_ipv4([192, 0, 2, 1], 4242), true, "v4b").await;
    assert!(!matched);
    assert_eq!(xff, "192.0.2.1");

    let (matched, xff, _) = seen_as(edge, &v2_ipv6("2001:db8::7", 5000), true, "v6").await;
    assert!(matched);
    assert_eq!(xff, "2001:db8::7");
    let (matched, xff, _) = seen_as(edge, &v2_ipv6("fd00::1", 5000), true, "v6b").await;
    assert!(!matched);
    assert_eq!(xff, "fd00::1");

    let access = log_line(&sw.dir.path().join("access.log"), "/echo?v6 ").await;
    assert_eq!(
        access.split(' ').nth(3),
        Some("[2001:db8::7]:5000"),
        "{access}"
    );
    assert_eq!(errors(&sw, "edge"), 0.0);
}

#[tokio::test]
async fn v2_local_and_v1_unknown_keep_the_tcp_peer() {
    let app = Backend::start("app").await;
    let sw = Seawall::start(&config(app.addr, true));
    let edge = sw.addr("edge");

    // LOCAL, as NLB's health checks send it: bare, or with addresses that do not count.
    for (tag, header) in [
        ("local", v2(0, 0x00, &[])),
        ("local-addrs", {
            let mut h = v2_ipv4([203, 0, 113, 7], 1);
            h[12] = 0x20;
            h
        }),
    ] {
        let (matched, xff, _) = seen_as(edge, &header, true, tag).await;
        assert!(!matched, "{tag}");
        assert_eq!(xff, "127.0.0.1", "{tag}");
    }
    let (matched, xff, _) = seen_as(edge, b"PROXY UNKNOWN\r\n", true, "unknown").await;
    assert!(!matched);
    assert_eq!(xff, "127.0.0.1");
    let access = log_line(&sw.dir.path().join("access.log"), "/echo?local ").await;
    assert!(
        access.split(' ').nth(3).unwrap().starts_with("127.0.0.1:"),
        "{access}"
    );
    assert_eq!(errors(&sw, "edge"), 0.0);
}

/// Writes `data` (then nothing more) and waits for the server to close: whether it closed without
/// a byte of answer, and how long that took.
async fn closed_silently(addr: SocketAddr, data: &[u8], half_close: bool) -> (bool, Duration) {
    let start = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(data).await.unwrap();
    if half_close {
        tcp.shutdown().await.unwrap();
    }
    let mut got = Vec::new();
    // A reset (seawall closed with the client's bytes unread) ends the read as well as a FIN.
    let ended = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut got))
        .await
        .is_ok();
    (ended && got.is_empty(), start.elapsed())
}

#[tokio::test]
async fn connections_without_a_valid_header_are_closed_and_counted() {
    let app = Backend::start("app").await;
    let sw = Seawall::start(&config(app.addr, true));
    let edge = sw.addr("edge");

    // A TLS client that knows nothing of the balancer: its ClientHello comes first.
    assert!(tls_connect(edge, &Tls::new("localhost")).await.is_err());
    assert!(eventually(PATIENCE, || async { errors(&sw, "edge") == 1.0 }).await);

    let mut bad_version = v2_ipv4([203, 0, 113, 7], 1);
    bad_version[12] = 0x31;
    let long_v1 = [&b"PROXY TCP4 "[..], &[b'1'; 150]].concat();
    for (what, data, half_close) in [
        (
            "HTTP instead",
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            false,
        ),
        (
            "a bad address",
            &b"PROXY TCP4 203.0.113.300 127.0.0.1 1 2\r\n"[..],
            false,
        ),
        ("a v2 version 3", &bad_version[..], false),
        ("a v1 line past 107 bytes", &long_v1[..], false),
        ("cut short", &V1[..20], true),
    ] {
        let before = errors(&sw, "edge");
        let (silent, took) = closed_silently(edge, data, half_close).await;
        assert!(silent, "{what}: not closed without an answer");
        assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
        assert!(
            eventually(PATIENCE, || async { errors(&sw, "edge") == before + 1.0 }).await,
            "{what}: not counted"
        );
    }

    // Half a header, then silence: closed at handshake_timeout (1 s here), not left hanging.
    let (silent, took) = closed_silently(edge, &V1[..20], false).await;
    assert!(silent);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(eventually(PATIENCE, || async { errors(&sw, "edge") == 7.0 }).await);

    // Only the listener that saw them counts them, and a proper connection is served.
    assert_eq!(errors(&sw, "plain"), 0.0);
    let (matched, xff, _) = seen_as(edge, V1, true, "after").await;
    assert!(matched);
    assert_eq!(xff, "203.0.113.7");
}

#[tokio::test]
async fn a_plain_http_listener_takes_the_header_too() {
    let app = Backend::start("app").await;
    let sw = Seawall::start(&config(app.addr, true));
    let plain = sw.addr("plain");

    let (matched, xff, port) = seen_as(plain, V1, false, "plain").await;
    assert!(matched);
    assert_eq!(xff, "203.0.113.7");
    assert_eq!(port, plain.port().to_string());
    let (matched, xff, _) = seen_as(plain, &v2_ipv6("2001:db8::5", 1), false, "plain6").await;
    assert!(matched);
    assert_eq!(xff, "2001:db8::5");

    // The header and the request in one segment: only the header is taken as the header.
    let answer = raw_exchange(
        plain,
        &[
            &v2_ipv4([203, 0, 113, 8], 9)[..],
            b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        ]
        .concat(),
        PATIENCE,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(r#""x-forwarded-for":["203.0.113.8"]"#),
        "{answer}"
    );

    // HTTP/2 with prior knowledge after the header.
    let mut tcp = TcpStream::connect(plain).await.unwrap();
    tcp.write_all(V1).await.unwrap();
    let mut c = h2(tcp).await;
    let req = Request::get(format!("http://localhost:{}/echo", plain.port()))
        .body(empty())
        .unwrap();
    let got = read(c.send_request(req).await.unwrap()).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.seen_header("x-forwarded-for").unwrap(), "203.0.113.7");

    // A request without the header is not one.
    let (silent, _) = closed_silently(plain, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false).await;
    assert!(silent);
    assert!(eventually(PATIENCE, || async { errors(&sw, "plain") == 1.0 }).await);
}

#[tokio::test]
async fn a_reload_turns_it_on_for_new_connections() {
    let app = Backend::start("app").await;
    let sw = Seawall::start(&config(app.addr, false));
    let plain = sw.addr("plain");

    let (matched, xff, _) = seen_as(plain, b"", false, "off").await;
    assert!(!matched);
    assert_eq!(xff, "127.0.0.1");
    // A connection from before the reload goes on as it began (once it has been served, its
    // task has read the configuration it runs on).
    let mut before = connect(plain, b"", false).await;
    ask(&mut before, "/echo?first").await;

    sw.swap_config(config(app.addr, true));
    let (matched, xff, _) = seen_as(plain, V1, false, "on").await;
    assert!(matched);
    assert_eq!(xff, "203.0.113.7");
    let echo = ask(&mut before, "/echo?before").await;
    assert_eq!(echo.seen_header("x-forwarded-for").unwrap(), "127.0.0.1");
    let (silent, _) = closed_silently(plain, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false).await;
    assert!(silent);

    sw.swap_config(config(app.addr, false));
    let (_, xff, _) = seen_as(plain, b"", false, "off-again").await;
    assert_eq!(xff, "127.0.0.1");
}

#[test]
fn a_value_that_is_not_a_boolean_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[[listeners]]
name = "edge"
bind = "127.0.0.1:0"
protocol = "http"
proxy_protocol = "yes"
default_action = { fixed_response = { status = 200 } }
"#;
    let path = write_file(dir.path(), "seawall.toml", text);
    let out = cmd()
        .args(["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    let prefix = format!("{}:5: listeners[0].proxy_protocol: ", path.display());
    assert!(
        err.lines()
            .any(|l| l.starts_with(&prefix) && l.contains("boolean")),
        "expected a line starting {prefix:?}, got:\n{err}"
    );

    // The same file with a boolean passes.
    let path = write_file(dir.path(), "good.toml", &text.replace(r#""yes""#, "true"));
    let out = cmd()
        .args(["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
