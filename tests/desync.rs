//! HTTP desync mitigation end to end: the real binary with one HTTPS listener per mode (monitor,
//! strictest, and defensive by default), each case sent raw over TLS to each, and what came of
//! it on both sides: the answer, whether the client connection was closed, and what the target
//! received (nothing, or exactly one well-formed request with the expected body). The cases are
//! drawn from http_desync_guardian's suite (tests/data/http_desync_guardian) and public request
//! smuggling research.
mod common;
use common::process::Proc;
use common::*;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PATIENCE: Duration = Duration::from_secs(10);

/// A request as the target parsed it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    content_length: Vec<String>,
    transfer_encoding: Vec<String>,
    /// `Err` when the body broke off.
    body: Result<Vec<u8>, String>,
}

/// A target that keeps what it was sent: every request hyper could parse, and every connection
/// that ended in a parse error (bytes a smuggled request would leave behind).
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    broken_conns: AtomicUsize,
    opened_conns: AtomicUsize,
    closed_conns: AtomicUsize,
}

impl Recorder {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn recording_target() -> (SocketAddr, Arc<Recorder>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rec = Arc::new(Recorder::default());
    let rec2 = rec.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let rec = rec2.clone();
            rec.opened_conns.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let rec3 = rec.clone();
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let rec = rec3.clone();
                    async move {
                        let probe = is_probe(&req);
                        let values = |name| {
                            req.headers()
                                .get_all(name)
                                .iter()
                                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                                .collect::<Vec<_>>()
                        };
                        let mut seen = Seen {
                            method: req.method().to_string(),
                            content_length: values(http::header::CONTENT_LENGTH),
                            transfer_encoding: values(http::header::TRANSFER_ENCODING),
                            body: Ok(Vec::new()),
                        };
                        seen.body = match req.into_body().collect().await {
                            Ok(b) => Ok(b.to_bytes().to_vec()),
                            Err(e) => Err(e.to_string()),
                        };
                        if !probe {
                            rec.seen.lock().unwrap().push(seen);
                        }
                        Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
                if served.is_err() {
                    rec.broken_conns.fetch_add(1, Ordering::SeqCst);
                }
                rec.closed_conns.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, rec)
}

const MODES: [&str; 3] = ["monitor", "defensive", "strictest"];

/// seawall with one HTTPS listener per mode; `defensive` sets no key (ALB's default). The
/// access log goes to `access.log` beside the config.
async fn start(target: SocketAddr, dir: &std::path::Path) -> Proc {
    let mut cfg = ConfigBuilder::new()
        .admin("")
        .runtime("workers = 1")
        .self_signed("dev", &["localhost"]);
    for mode in MODES {
        let mut l = Listener::https(mode, &["dev"]).forward("app");
        if mode != "defensive" {
            l = l.line(&format!("desync_mitigation = \"{mode}\""));
        }
        cfg = cfg.listener(l);
    }
    let cfg = cfg
        .target_group(TargetGroup::new("app", &[target]))
        .raw("[access_log]\npath = \"access.log\"\n")
        .build();
    let file = write_file(dir, "seawall.toml", &cfg);
    Proc::start(&file, &MODES, true).await
}

/// One answer read off a connection: its status, head, body, and whether the server closed
/// the connection after it.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
    closed: bool,
}

impl Answer {
    fn says_close(&self) -> bool {
        self.head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("connection: close"))
    }
}

/// Reads one answer; when `until_closed`, waits for the connection's end after it too.
async fn read_answer<S: AsyncRead + Unpin>(s: &mut S, until_closed: bool) -> Answer {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let mut eof = false;
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => data.extend_from_slice(&buf[..n]),
            Ok(_) => {
                eof = true;
                break data.len();
            }
            Err(_) => panic!("no answer: {:?}", String::from_utf8_lossy(&data)),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let mut body = data[head_end..].to_vec();
    while !eof && length.is_none_or(|n| body.len() < n) {
        match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => body.extend_from_slice(&buf[..n]),
            _ => eof = true,
        }
    }
    if until_closed && !eof {
        loop {
            match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) => break,
            }
        }
        eof = matches!(
            tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        );
    }
    Answer {
        status,
        head,
        body,
        closed: eof,
    }
}

/// What a case is, by seawall's classification.
#[derive(Debug, Clone, Copy)]
enum Class {
    /// hyper refuses it before it is classified: 400 (or 505 for a version), in every mode.
    Parser,
    /// Classified, and refused in every mode: a target could frame or address it differently.
    Always(&'static str, &'static str),
    /// Classified with this tier and ALB reason code; the mode decides.
    Tier(&'static str, &'static str),
    Compliant,
}

/// What a mode does with a class.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Refused,
    Forwarded,
    ForwardedThenClosed,
}

fn fate(class: Class, mode: &str) -> Fate {
    match (class, mode) {
        (Class::Parser | Class::Always(..), _) => Fate::Refused,
        (Class::Compliant, _) | (Class::Tier(..), "monitor") => Fate::Forwarded,
        (Class::Tier(..), "strictest") => Fate::Refused,
        (Class::Tier("Acceptable", _), _) => Fate::Forwarded,
        (Class::Tier("Ambiguous", _), _) => Fate::ForwardedThenClosed,
        (Class::Tier(..), _) => Fate::Refused,
    }
}

/// (name, request, class, the body the target must get when it is forwarded)
type Case = (&'static str, &'static str, Class, &'static str);

const H: &str = "Host: localhost\r\n";

fn cases() -> Vec<(String, String, Class, &'static str)> {
    use Class::*;
    let chunked = "5\r\nhello\r\n0\r\n\r\n";
    let table: Vec<Case> = vec![
        ("plain GET", "GET /plain HTTP/1.1\r\n{H}\r\n", Compliant, ""),
        ("Content-Length", "POST /cl HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello", Compliant, "hello"),
        ("chunked", "POST /te HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n{C}", Compliant, "hello"),
        ("chunk extension", "POST /ext HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n", Compliant, "hello"),
        ("chunk size with leading zeros", "POST /zeros HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n0\r\n\r\n", Compliant, "hello"),
        ("Content-Length with spaces around", "POST /ows HTTP/1.1\r\n{H}Content-Length:   5  \r\n\r\nhello", Compliant, "hello"),
        ("Transfer-Encoding after a tab", "POST /tab HTTP/1.1\r\n{H}Transfer-Encoding:\tchunked\r\n\r\n{C}", Compliant, "hello"),
        ("absolute-form target naming Host", "GET http://localhost/abs HTTP/1.1\r\n{H}\r\n", Compliant, ""),
        // CL.TE and TE.CL, the classic smuggling pair (Linhart et al. 2005; Kettle 2019).
        ("CL then TE", "POST /clte HTTP/1.1\r\n{H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{C}", Always("Ambiguous", "BothTeClPresent"), ""),
        ("TE then CL", "POST /tecl HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{C}", Always("Ambiguous", "BothTeClPresent"), ""),
        ("TE with Content-Length 0", "POST /tecl0 HTTP/1.1\r\n{H}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n{C}", Always("Ambiguous", "BothTeClPresent"), ""),
        ("differing Content-Lengths", "POST /cl2 HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", Parser, ""),
        ("differing Content-Lengths in one line", "POST /cl2 HTTP/1.1\r\n{H}Content-Length: 5, 6\r\n\r\nhello!", Parser, ""),
        ("repeated equal Content-Length", "POST /dup HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", Tier("Ambiguous", "DuplicateContentLength"), "hello"),
        ("equal Content-Lengths in one line", "POST /list HTTP/1.1\r\n{H}Content-Length: 5, 5\r\n\r\nhello", Parser, ""),
        ("Content-Length with a plus sign", "POST /plus HTTP/1.1\r\n{H}Content-Length: +5\r\n\r\nhello", Parser, ""),
        ("Content-Length with a minus sign", "POST /minus HTTP/1.1\r\n{H}Content-Length: -5\r\n\r\nhello", Parser, ""),
        ("Content-Length in hex", "POST /hex HTTP/1.1\r\n{H}Content-Length: 0x5\r\n\r\nhello", Parser, ""),
        ("space before the colon", "POST /sp HTTP/1.1\r\n{H}Content-Length : 5\r\n\r\nhello", Parser, ""),
        ("Transfer-Encoding: xchunked", "POST /x HTTP/1.1\r\n{H}Transfer-Encoding: xchunked\r\n\r\n{C}", Parser, ""),
        ("quoted chunked", "POST /q HTTP/1.1\r\n{H}Transfer-Encoding: \"chunked\"\r\n\r\n{C}", Parser, ""),
        ("Transfer-Encoding: identity", "POST /id HTTP/1.1\r\n{H}Transfer-Encoding: identity\r\n\r\n{C}", Parser, ""),
        ("Transfer-Encoding space before colon", "POST /sp HTTP/1.1\r\n{H}Transfer-Encoding : chunked\r\n\r\n{C}", Parser, ""),
        ("chunked twice in one line", "POST /cc HTTP/1.1\r\n{H}Transfer-Encoding: chunked, chunked\r\n\r\n{C}", Tier("Severe", "MultipleTransferEncodingChunked"), "hello"),
        ("chunked in two lines", "POST /cc2 HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n{C}", Tier("Severe", "MultipleTransferEncodingChunked"), "hello"),
        ("gzip then chunked", "POST /gz HTTP/1.1\r\n{H}Transfer-Encoding: gzip, chunked\r\n\r\n{C}", Tier("Acceptable", "NonCompliantHeader"), "hello"),
        ("unknown coding then chunked", "POST /foo HTTP/1.1\r\n{H}Transfer-Encoding: foo, chunked\r\n\r\n{C}", Always("Severe", "BadTransferEncoding"), ""),
        ("empty coding then chunked", "POST /empty HTTP/1.1\r\n{H}Transfer-Encoding: , chunked\r\n\r\n{C}", Always("Severe", "BadTransferEncoding"), ""),
        ("Transfer_Encoding", "POST /us HTTP/1.1\r\n{H}Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", Always("Ambiguous", "SuspiciousHeader"), ""),
        ("Content_Length", "POST /us2 HTTP/1.1\r\n{H}Content_Length: 5\r\n\r\nhello", Always("Ambiguous", "SuspiciousHeader"), ""),
        ("folded Transfer-Encoding line", "POST /fold HTTP/1.1\r\n{H} Transfer-Encoding: chunked\r\n\r\n{C}", Parser, ""),
        ("folded Transfer-Encoding value", "POST /fold2 HTTP/1.1\r\n{H}Transfer-Encoding:\r\n chunked\r\n\r\n{C}", Parser, ""),
        // hyper's client sends a GET's body only when its length is known: the target gets none.
        ("GET with a chunked body", "GET /gette HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n{C}", Tier("Ambiguous", "UndefinedTransferEncodingSemantics"), ""),
        ("GET with Content-Length 0", "GET /get0 HTTP/1.1\r\n{H}Content-Length: 0\r\n\r\n", Tier("Acceptable", "GetHeadZeroContentLength"), ""),
        ("GET with a body", "GET /getcl HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello", Tier("Ambiguous", "UndefinedContentLengthSemantics"), "hello"),
        ("HTTP/1.0 with Transfer-Encoding", "POST /10 HTTP/1.0\r\n{H}Transfer-Encoding: chunked\r\n\r\n{C}", Parser, ""),
        ("bare LF line ends", "GET /lf HTTP/1.1\nHost: localhost\n\n", Tier("Acceptable", "NonCrLfLineTermination"), ""),
        ("bare CR in a value", "GET /cr HTTP/1.1\r\n{H}X-A: a\rb\r\n\r\n", Parser, ""),
        ("NUL in a value", "GET /nul HTTP/1.1\r\n{H}X-A: a\0b\r\n\r\n", Parser, ""),
        ("two Hosts", "GET /hosts HTTP/1.1\r\n{H}Host: other.test\r\n\r\n", Always("Severe", "BadHeader"), ""),
        ("absolute-form target naming another host", "GET http://other.test/abs HTTP/1.1\r\n{H}\r\n", Always("Ambiguous", "AmbiguousUri"), ""),
        ("space in the target", "GET /a b HTTP/1.1\r\n{H}\r\n", Parser, ""),
        ("bad method", "G(T / HTTP/1.1\r\n{H}\r\n", Parser, ""),
        ("HTTP/1.2", "GET / HTTP/1.2\r\n{H}\r\n", Parser, ""),
    ];
    table
        .into_iter()
        .map(|(name, raw, class, body)| {
            let raw = raw.replace("{H}", H).replace("{C}", chunked);
            (name.to_string(), raw, class, body)
        })
        .collect()
}

/// The metric's value for a classification and reason (0 when absent).
fn desync_count(text: &str, tier: &str, code: &str) -> f64 {
    metric_value(
        text,
        "seawall_desync_mitigation_total",
        &[("classification", tier), ("reason", code)],
    )
}

#[tokio::test]
async fn every_case_in_every_mode() {
    let (target, rec) = recording_target().await;
    let dir = tempfile::tempdir().unwrap();
    let sw = start(target, dir.path()).await;
    let tls = tls_client(&Tls::new("localhost"));
    let mut failures = Vec::new();
    let table = cases();
    assert!(table.len() >= 30);
    for (name, raw, class, body) in &table {
        let before = fetch_metrics(sw.admin()).await;
        for mode in MODES {
            let want = fate(*class, mode);
            let mut s = tls_connect_with(sw.addr(mode), &tls, "localhost")
                .await
                .unwrap();
            s.write_all(raw.as_bytes()).await.unwrap();
            let got = read_answer(&mut s, want != Fate::Forwarded).await;
            // Let a target that got bytes it could not parse report it.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let seen = rec.take();
            let broken = rec.broken_conns.swap(0, Ordering::SeqCst);
            let mut fail = |what: String| failures.push(format!("{name} [{mode}]: {what}"));
            match want {
                Fate::Refused => {
                    let ok =
                        got.status == 400 || (matches!(class, Class::Parser) && got.status == 505);
                    if !ok || !got.closed {
                        fail(format!("want a refusal and a close, got {got:?}"));
                    }
                    if !seen.is_empty() {
                        fail(format!("the target got {seen:?}"));
                    }
                }
                Fate::Forwarded | Fate::ForwardedThenClosed => {
                    if got.status != 200 || got.body != b"ok" {
                        fail(format!("want the target's answer, got {got:?}"));
                    }
                    let closing = want == Fate::ForwardedThenClosed;
                    if closing && !(got.closed && got.says_close()) {
                        fail(format!("want the connection closed after it, got {got:?}"));
                    }
                    if !closing && got.says_close() {
                        fail(format!("want the connection kept, got {got:?}"));
                    }
                    match seen.as_slice() {
                        [one] => {
                            let framed = one.content_length.len() + one.transfer_encoding.len();
                            let method = raw.starts_with(&format!("{} ", one.method));
                            if one.body.as_deref() != Ok(body.as_bytes()) || framed > 1 || !method {
                                fail(format!("the target got {one:?}"));
                            }
                        }
                        other => fail(format!("want one request at the target, got {other:?}")),
                    }
                }
            }
            if broken > 0 {
                fail(format!(
                    "{broken} target connection(s) got bytes that do not parse"
                ));
            }
        }
        let after = fetch_metrics(sw.admin()).await;
        let total = |t: &str| metric_total(t, "seawall_desync_mitigation_total");
        match class {
            Class::Always(tier, code) | Class::Tier(tier, code) => {
                let d = desync_count(&after, tier, code) - desync_count(&before, tier, code);
                if d != 3.0 {
                    failures.push(format!("{name}: {tier}/{code} counted {d} times, not 3"));
                }
            }
            Class::Parser | Class::Compliant => {
                if total(&after) != total(&before) {
                    failures.push(format!("{name}: counted as not compliant"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The access log carries ALB's classification fields.
    let log = dir.path().join("access.log");
    let found = eventually(PATIENCE, || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines().any(|l| {
                l.contains("\"Ambiguous\" \"BothTeClPresent\"")
                    || l.contains("Ambiguous BothTeClPresent")
            }) && text.lines().any(|l| l.contains("NonCrLfLineTermination"))
        }
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(found, "no classification in the access log:\n{text}");
}

/// A body whose framing breaks after the head went to the target is the client's fault: 400
/// (no answer had started), never 502, and the target's connection is not used again.
#[tokio::test]
async fn a_body_that_breaks_mid_stream_gets_400_and_the_target_connection_is_dropped() {
    let (target, rec) = recording_target().await;
    let dir = tempfile::tempdir().unwrap();
    let sw = start(target, dir.path()).await;
    let tls = tls_client(&Tls::new("localhost"));
    let bad = [
        ("bad chunk size", format!("POST /bad HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n"), false),
        ("chunk size overflow", format!("POST /big HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nfffffffffffffffffffff\r\n"), false),
        ("body shorter than Content-Length", format!("POST /short HTTP/1.1\r\n{H}Content-Length: 10\r\n\r\nhello"), true),
    ];
    let mut reached = 0;
    for (name, raw, shut) in bad {
        for mode in MODES {
            let mut s = tls_connect_with(sw.addr(mode), &tls, "localhost")
                .await
                .unwrap();
            s.write_all(raw.as_bytes()).await.unwrap();
            if shut {
                s.shutdown().await.unwrap();
            }
            let got = read_answer(&mut s, true).await;
            assert_eq!(got.status, 400, "{name} [{mode}]: {got:?}");
            assert!(got.closed, "{name} [{mode}]: {got:?}");
            // Every target connection ends: the one that carried the broken request is not
            // pooled (and none other was opened).
            let dropped = eventually(PATIENCE, || {
                let rec = rec.clone();
                async move {
                    rec.closed_conns.load(Ordering::SeqCst)
                        == rec.opened_conns.load(Ordering::SeqCst)
                }
            })
            .await;
            assert!(
                dropped,
                "{name} [{mode}]: the target connection stayed open"
            );
            // Whether the head reached the target before seawall saw the body break is a race;
            // what reached it never had a whole body.
            let seen = rec.take();
            assert!(
                seen.iter().all(|s| s.body.is_err()),
                "{name} [{mode}]: {seen:?}"
            );
            reached += seen.len();
        }
    }
    assert!(reached <= 9, "{reached} requests reached the target");
    // And the next request is served normally.
    let mut s = tls_connect_with(sw.addr("defensive"), &tls, "localhost")
        .await
        .unwrap();
    s.write_all(format!("GET /after HTTP/1.1\r\n{H}\r\n").as_bytes())
        .await
        .unwrap();
    let got = read_answer(&mut s, false).await;
    assert_eq!(got.status, 200, "{got:?}");
}

/// ALB's request line limit (16 KiB) is enforced by the raw head scan: 414, not forwarded.
#[tokio::test]
async fn a_100_kib_uri_gets_414() {
    let (target, rec) = recording_target().await;
    let dir = tempfile::tempdir().unwrap();
    let sw = start(target, dir.path()).await;
    let tls = tls_client(&Tls::new("localhost"));
    let uri = format!("/{}", "a".repeat(100 * 1024));
    let mut s = tls_connect_with(sw.addr("monitor"), &tls, "localhost")
        .await
        .unwrap();
    // The server may answer and close before it has read the whole line.
    let _ = s
        .write_all(format!("GET {uri} HTTP/1.1\r\n{H}\r\n").as_bytes())
        .await;
    let got = read_answer(&mut s, true).await;
    assert_eq!(got.status, 414, "{got:?}");
    assert!(rec.take().is_empty());
}

/// A head pipelined behind another in one write is not seen by the raw scan (README, "HTTP
/// desync mitigation"): whatever it is classified, the target never gets a request framed two
/// ways, and no bytes it cannot parse.
#[tokio::test]
async fn a_pipelined_head_with_both_framings_never_reaches_the_target_framed_two_ways() {
    let (target, rec) = recording_target().await;
    let dir = tempfile::tempdir().unwrap();
    let sw = start(target, dir.path()).await;
    let tls = tls_client(&Tls::new("localhost"));
    let two = format!(
        "GET /first HTTP/1.1\r\n{H}\r\nPOST /second HTTP/1.1\r\n{H}Content-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    for mode in MODES {
        let mut s = tls_connect_with(sw.addr(mode), &tls, "localhost")
            .await
            .unwrap();
        s.write_all(two.as_bytes()).await.unwrap();
        let first = read_answer(&mut s, false).await;
        assert_eq!(first.status, 200, "[{mode}] {first:?}");
        let second = read_answer(&mut s, false).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seen = rec.take();
        assert_eq!(rec.broken_conns.load(Ordering::SeqCst), 0, "[{mode}]");
        match second.status {
            400 => assert_eq!(seen.len(), 1, "[{mode}] {seen:?}"),
            200 => {
                assert_eq!(seen.len(), 2, "[{mode}] {seen:?}");
                let one = &seen[1];
                assert!(
                    one.content_length.is_empty() && one.body.as_deref() == Ok(&b"hello"[..]),
                    "[{mode}] {one:?}"
                );
            }
            other => panic!("[{mode}] {other}: {second:?}"),
        }
    }
}
