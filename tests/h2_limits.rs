//! HTTP/2 and slow clients against the real binary: a rapid-reset burst (CVE-2023-44487),
//! streams cancelled one by one faster than `http2_max_resets_per_second`, a CONTINUATION flood
//! and HPACK bombs each close the connection that sent them (counted in
//! `seawall_http2_connection_errors_total`) while another client's connection is served
//! throughout; `http2_max_concurrent_streams` is what the server's SETTINGS say and what it
//! enforces (REFUSED_STREAM beyond it). A client that stops taking a response (1 GiB on one
//! stream or on 128, or a target that streams without end) is closed after `idle_timeout` with
//! seawall's memory bounded, and a slowloris client (an HTTP/1 head, an HTTP/2 header block) at
//! `header_timeout`.
//!
//! seawall runs as its own process, so that its memory (`/proc/PID/status`) is its own. The
//! hostile clients write frames by hand over TLS with ALPN h2: no client library sends what they
//! send.
mod common;
use common::process::Proc;
use common::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

// Frame types and flags (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
// Error codes.
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
/// The largest flow-control window HTTP/2 allows.
const MAX_WINDOW: u32 = (1 << 31) - 1;

const METRIC: &str = "seawall_http2_connection_errors_total";

/// `edge` (https, h2 and HTTP/1.1) forwarding everything to `app`, with `runtime` lines.
fn config(app: SocketAddr, runtime: &str) -> String {
    ConfigBuilder::new()
        .admin("")
        .runtime(runtime)
        .self_signed("dev", &["localhost"])
        .listener(
            Listener::https("edge", &["dev"])
                .line(r#"alpn = ["h2", "http/1.1"]"#)
                .forward("app"),
        )
        .target_group(TargetGroup::new("app", &[app]))
        .build()
}

/// seawall as a process of its own with [`config`], and the folder its config is in.
struct Edge {
    proc: Proc,
    _dir: tempfile::TempDir,
}

impl Edge {
    async fn start(app: SocketAddr, runtime: &str) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "seawall.toml", &config(app, runtime));
        let proc = Proc::start(&path, &["edge"], true).await;
        proc.wait_ready().await;
        Edge { proc, _dir: dir }
    }

    fn addr(&self) -> SocketAddr {
        self.proc.addr("edge")
    }

    async fn metrics(&self) -> String {
        fetch_metrics(self.proc.admin()).await
    }

    async fn errors(&self, reason: &str) -> f64 {
        sample_value(
            &self.metrics().await,
            &format!("{METRIC}{{listener=\"edge\",reason=\"{reason}\"}}"),
        )
    }

    /// Bytes written to clients, TLS included.
    async fn bytes_out(&self) -> f64 {
        sample_value(
            &self.metrics().await,
            r#"seawall_processed_bytes_total{direction="out",listener="edge"}"#,
        )
    }

    /// Client connections open.
    async fn active_connections(&self) -> f64 {
        sample_value(&self.metrics().await, "seawall_active_connections")
    }

    /// The process's resident memory: (peak, now), in bytes.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.child.id()))
            .expect("seawall is running");
        let kib = |key: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(key)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        (kib("VmHWM:") * 1024, kib("VmRSS:") * 1024)
    }
}

const MIB: u64 = 1 << 20;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend(&u32::try_from(payload.len()).unwrap().to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// An HPACK integer with an `n`-bit prefix, the prefix's other bits `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// An HPACK string literal, not Huffman-coded.
fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend(s);
}

/// A request's pseudo-headers: `method` (2 GET, 3 POST: static table indexes), https,
/// `:authority: localhost` and `path`.
fn request_block(method: u8, path: &str) -> Vec<u8> {
    let mut b = vec![0x80 | method, 0x87];
    // Literal without indexing, name `:path` (static index 4), then `:authority` (1).
    hpack_int(&mut b, 0, 4, 4);
    hpack_str(&mut b, path.as_bytes());
    hpack_int(&mut b, 0, 4, 1);
    hpack_str(&mut b, b"localhost");
    b
}

/// One frame as read: type, flags, stream and payload.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Bytes,
}

impl Frame {
    fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// A hostile client over TLS with ALPN h2, frames written by hand. Frames read go through a
/// channel from a task of their own, so that a client writing without end still sees the
/// server's answers and its close.
struct Raw {
    write: WriteHalf<TlsStream<TcpStream>>,
    /// Until the connection ends (EOF, or an error: a reset once the server dropped it).
    frames: mpsc::UnboundedReceiver<Frame>,
    /// Set once the connection has ended, frames still unread or not.
    closed: Arc<AtomicBool>,
    reader: JoinHandle<()>,
    /// The server's SETTINGS parameters.
    settings: Vec<(u16, u32)>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw::connect_with(addr, &[]).await
    }

    /// Connects, sends the preface and `settings`, and acknowledges the server's SETTINGS (h2
    /// applies its own settings, the stream limit among them, once they are acknowledged).
    async fn connect_with(addr: SocketAddr, settings: &[(u16, u32)]) -> Raw {
        let tls = tls_connect(addr, &Tls::new("localhost").h2())
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (read, mut write) = tokio::io::split(tls);
        write
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut ours = Vec::new();
        for (id, value) in settings {
            ours.extend(id.to_be_bytes());
            ours.extend(value.to_be_bytes());
        }
        write
            .write_all(&frame(SETTINGS, 0, 0, &ours))
            .await
            .unwrap();
        let (tx, frames) = mpsc::unbounded_channel();
        let closed = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_frames(read, tx, closed.clone()));
        let mut raw = Raw {
            write,
            frames,
            closed,
            reader,
            settings: Vec::new(),
        };
        let settings = raw
            .until(|f| f.kind == SETTINGS && f.flags & ACK == 0)
            .await
            .expect("the server's SETTINGS");
        raw.settings = settings
            .payload
            .chunks(6)
            .map(|p| {
                (
                    u16::from_be_bytes([p[0], p[1]]),
                    u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                )
            })
            .collect();
        raw.send(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        raw
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await?;
        self.write.flush().await
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// From here on, nothing is read from the socket, which stays open: what the server sends
    /// piles up in the kernel's buffers until it can send no more.
    fn stop_reading(&self) {
        self.reader.abort();
    }

    /// The next frame `pick` takes, skipping others; `None` once the connection is closed.
    async fn until(&mut self, mut pick: impl FnMut(&Frame) -> bool) -> Option<Frame> {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.frames.recv())
                .await
                .expect("a frame or the connection's end in time");
            match next {
                Some(f) if pick(&f) => return Some(f),
                Some(_) => {}
                None => return None,
            }
        }
    }

    /// Reads to the connection's end: the GOAWAY frames seen on the way.
    async fn closed(&mut self) -> Vec<Frame> {
        let mut goaways = Vec::new();
        while let Some(f) = self.until(|f| f.kind == GOAWAY).await {
            goaways.push(f);
        }
        goaways
    }
}

async fn read_frames(
    mut read: ReadHalf<TlsStream<TcpStream>>,
    tx: mpsc::UnboundedSender<Frame>,
    closed: Arc<AtomicBool>,
) {
    let mut buf = BytesMut::new();
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let head = buf.split_to(9);
            let f = Frame {
                kind: head[3],
                flags: head[4],
                stream: (&head[5..9]).get_u32() & 0x7fff_ffff,
                payload: buf.split_to(len).freeze(),
            };
            if tx.send(f).is_err() {
                return;
            }
        }
        buf.reserve(16 * 1024);
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                closed.store(true, Ordering::SeqCst);
                return;
            }
            Ok(_) => {}
        }
    }
}

/// A well-behaved HTTP/2 client connection, over which `check` asks for a page.
async fn good_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
    h2(tls_connect(addr, &Tls::new("localhost").h2())
        .await
        .unwrap())
    .await
}

async fn check(c: &mut hyper::client::conn::http2::SendRequest<Body>, tag: &str) {
    let req = Request::get(format!("https://localhost/good?{tag}"))
        .body(empty())
        .unwrap();
    let got = tokio::time::timeout(PATIENCE, async {
        read(c.send_request(req).await.unwrap()).await
    })
    .await
    .expect("the good client is answered in time");
    assert_eq!(got.status, 200, "{tag}: {}", got.text());
}

/// Asserts that a GOAWAY, if the client read one before the socket closed, says
/// ENHANCE_YOUR_CALM. (Closing a socket with unread bytes in it resets the connection, which may
/// drop the GOAWAY on its way.)
fn calm_goaway_if_any(goaways: &[Frame]) {
    for g in goaways {
        assert_eq!(g.code(), ENHANCE_YOUR_CALM, "{g:?}");
    }
}

#[tokio::test]
async fn a_rapid_reset_burst_closes_that_connection_only() {
    let app = Backend::start("app").await;
    let edge = Edge::start(app.addr, "").await;
    let mut good = good_client(edge.addr()).await;
    check(&mut good, "before").await;
    let (peak_before, _) = edge.memory();

    let mut bad = Raw::connect(edge.addr()).await;
    // CVE-2023-44487: request after request, each cancelled at once, in one burst.
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_block(2, "/slow"),
        ));
        burst.extend(rst(id, CANCEL));
    }
    // The server may close before it has read everything.
    let _ = bad.send(&burst).await;
    let goaways = bad.closed().await;
    calm_goaway_if_any(&goaways);

    // h2 catches a burst before its streams are accepted; streams accepted in the meantime are
    // seawall's own bound's to count. Either way, once.
    let e = &edge;
    let counted =
        || async move { e.errors("enhance_your_calm").await + e.errors("rapid_reset").await };
    assert!(
        eventually(PATIENCE, || async { counted().await >= 1.0 }).await,
        "counted"
    );
    assert_eq!(counted().await, 1.0);
    println!(
        "rapid-reset burst: GOAWAY {goaways:?}; enhance_your_calm {}, rapid_reset {}; {} of 1000 \
         streams reached the target (the good client's request included)",
        edge.errors("enhance_your_calm").await,
        edge.errors("rapid_reset").await,
        app.hits()
    );
    assert_eq!(metric_total(&edge.metrics().await, METRIC), 1.0);
    // Far fewer than the thousand reached the target.
    assert!(app.hits() <= 128 + 20, "{} reached the target", app.hits());
    // Nor did the burst's streams stay behind in memory.
    let (peak, now) = edge.memory();
    println!(
        "rapid-reset burst: seawall VmHWM {} KiB before, {} KiB after; VmRSS {} KiB",
        peak_before / 1024,
        peak / 1024,
        now / 1024
    );
    assert!(
        peak < peak_before + 32 * MIB,
        "peak {peak} from {peak_before}"
    );

    check(&mut good, "after").await;
    check(&mut good_client(edge.addr()).await, "new").await;
}

#[tokio::test]
async fn cancelling_accepted_streams_faster_than_the_budget_closes_the_connection() {
    let app = Backend::start("app").await;
    let edge = Edge::start(
        app.addr,
        "http2_max_concurrent_streams = 10\nhttp2_max_resets_per_second = 1",
    )
    .await;
    let mut good = good_client(edge.addr()).await;
    check(&mut good, "before").await;

    // Each stream is let through to the target before it is cancelled: the request task h2's
    // own bound (on streams reset before they are accepted) does not see.
    let mut bad = Raw::connect(edge.addr()).await;
    let mut cancelled = 0u32;
    for i in 0..200u32 {
        let id = 2 * i + 1;
        let hits = app.hits();
        let head = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_block(2, "/slow"),
        );
        if bad.send(&head).await.is_err() {
            break;
        }
        let b = &bad;
        let reached = eventually(PATIENCE, || async { app.hits() > hits || b.is_closed() }).await;
        assert!(
            reached,
            "stream {id} neither reached the target nor was refused"
        );
        if bad.is_closed() || bad.send(&rst(id, CANCEL)).await.is_err() {
            break;
        }
        cancelled += 1;
        // Time for the server to act on the reset before the next stream.
        tokio::time::sleep(Duration::from_millis(5)).await;
        if bad.is_closed() {
            break;
        }
    }
    let goaways = bad.closed().await;
    println!(
        "cancelled one by one: closed after {cancelled} cancelled streams, GOAWAY {goaways:?}"
    );
    // The burst allowance: as many as the connection may have open, whatever the rate.
    assert!(
        (11..30).contains(&cancelled),
        "closed after {cancelled} cancelled streams"
    );
    let e = &edge;
    assert!(
        eventually(
            PATIENCE,
            || async move { e.errors("rapid_reset").await == 1.0 }
        )
        .await,
        "counted as rapid_reset: {}",
        edge.metrics().await
    );
    assert_eq!(edge.errors("enhance_your_calm").await, 0.0);
    check(&mut good, "after").await;
}

#[tokio::test]
async fn a_continuation_flood_closes_that_connection_only() {
    let app = Backend::start("app").await;
    let edge = Edge::start(app.addr, "").await;
    let mut good = good_client(edge.addr()).await;

    let mut bad = Raw::connect(edge.addr()).await;
    bad.send(&frame(HEADERS, 0, 1, &request_block(2, "/flood")))
        .await
        .unwrap();
    // CONTINUATION frames without END_HEADERS, each a few headers more, without end: at most
    // 64 MiB of them, far beyond any bound.
    let mut block = Vec::new();
    while block.len() < 16_000 {
        hpack_int(&mut block, 0, 4, 0);
        hpack_str(&mut block, b"x-flood");
        hpack_str(&mut block, b"0123456789abcdef");
    }
    let continuation = frame(CONTINUATION, 0, 1, &block);
    let limit = 64 << 20;
    let mut sent = 0usize;
    while sent < limit {
        let write = tokio::time::timeout(PATIENCE, bad.send(&continuation))
            .await
            .expect("the server reads the flood or closes the connection");
        if write.is_err() || bad.is_closed() {
            break;
        }
        sent += continuation.len();
    }
    let goaways = bad.closed().await;
    assert!(
        sent < limit,
        "the server read {sent} bytes of CONTINUATION frames"
    );
    println!("CONTINUATION flood: closed after {sent} bytes sent, GOAWAY {goaways:?}");
    calm_goaway_if_any(&goaways);
    let e = &edge;
    assert!(
        eventually(PATIENCE, || async move {
            e.errors("enhance_your_calm").await == 1.0
        })
        .await,
        "{}",
        edge.metrics().await
    );
    assert_eq!(app.hits(), 0, "nothing of the flood reached the target");
    check(&mut good, "after").await;
}

#[tokio::test]
async fn the_stream_limit_is_advertised_and_enforced() {
    let app = Backend::start("app").await;
    // ALB's limit, by default.
    let edge = Edge::start(app.addr, "").await;
    let mut good = good_client(edge.addr()).await;
    let mut c = Raw::connect(edge.addr()).await;
    assert!(
        c.settings.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, 128)),
        "{:?}",
        c.settings
    );
    // 128 uploads whose bodies have not ended keep their streams open...
    let open: Vec<u32> = (0..128).map(|i| 2 * i + 1).collect();
    let mut heads = Vec::new();
    for &id in &open {
        heads.extend(frame(
            HEADERS,
            END_HEADERS,
            id,
            &request_block(3, "/upload"),
        ));
    }
    c.send(&heads).await.unwrap();
    assert!(
        eventually(PATIENCE, || async { app.hits() == 128 }).await,
        "the 128 reached the target: {}",
        app.hits()
    );
    // ...so two more are refused,
    for id in [257, 259] {
        c.send(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_block(2, "/more"),
        ))
        .await
        .unwrap();
        let refused = c
            .until(|f| f.kind == RST_STREAM || f.kind == HEADERS)
            .await
            .expect("an answer to the stream beyond the limit");
        assert_eq!(
            (refused.kind, refused.stream),
            (RST_STREAM, id),
            "{refused:?}"
        );
        assert_eq!(refused.code(), REFUSED_STREAM);
    }
    // while another connection is served,
    check(&mut good, "meanwhile").await;
    // and the 128 complete.
    let mut bodies = Vec::new();
    for &id in &open {
        bodies.extend(frame(DATA, END_STREAM, id, b"body"));
    }
    c.send(&bodies).await.unwrap();
    let mut answered = Vec::new();
    while answered.len() < open.len() {
        let f = c
            .until(|f| f.kind == HEADERS || f.kind == RST_STREAM)
            .await
            .expect("answers to the 128");
        assert_eq!(f.kind, HEADERS, "{f:?}");
        // `:status: 200` is static table entry 8.
        assert_eq!(f.payload[0], 0x88, "{f:?}");
        answered.push(f.stream);
    }
    answered.sort_unstable();
    assert_eq!(answered, open);
    assert_eq!(
        app.hits(),
        128 + 1,
        "the refused streams never reached the target"
    );
    // Refusing a stream is not a connection error.
    assert_eq!(metric_total(&edge.metrics().await, METRIC), 0.0);
    drop((c, edge));

    // A limit of its own.
    let edge = Edge::start(app.addr, "http2_max_concurrent_streams = 3").await;
    let c = Raw::connect(edge.addr()).await;
    assert!(
        c.settings.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, 3)),
        "{:?}",
        c.settings
    );
}

/// A header block for `path` whose one literal of `value_len` bytes goes into the HPACK dynamic
/// table and is then referred to `refs` times: a few bytes on the wire each, `value_len` decoded.
fn hpack_bomb(path: &str, value_len: usize, refs: usize) -> Vec<u8> {
    let mut b = request_block(2, path);
    // Literal with incremental indexing, new name: dynamic table entry 62.
    b.push(0x40);
    hpack_str(&mut b, b"x-bomb");
    hpack_str(&mut b, &vec![b'a'; value_len]);
    b.extend(std::iter::repeat_n(0x80 | 62, refs));
    b
}

#[tokio::test]
async fn hpack_bombs_are_refused_without_growing_the_process() {
    let app = Backend::start("app").await;
    let edge = Edge::start(app.addr, "").await;
    let mut good = good_client(edge.addr()).await;
    check(&mut good, "before").await;
    let (peak_before, _) = edge.memory();

    // Above max_header_bytes (64 KiB) but within what h2 decodes to the end: the request gets
    // 431 and the connection lives on.
    let mut c = Raw::connect(edge.addr()).await;
    c.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &hpack_bomb("/small-bomb", 1000, 100),
    ))
    .await
    .unwrap();
    let answer = c
        .until(|f| f.stream == 1 && f.kind == HEADERS)
        .await
        .expect("an answer");
    // `:status: 431`, not in the static table: literal with the name of entry 8, its value
    // Huffman-coded or not.
    assert!(
        [&b"\x48\x03431"[..], b"\x48\x83\x69\x90\xff"].contains(&&answer.payload[..]),
        "{answer:?}"
    );

    // Each far beyond it (12 000 references to a 4 000-byte value: 48 MB decoded from 16 KB),
    // from ten connections at once: each connection is closed.
    let bombs = (0..10).map(|_| async {
        let mut c = Raw::connect(edge.addr()).await;
        let bomb = hpack_bomb("/big-bomb", 4000, 12_000);
        assert!(bomb.len() <= 16_384, "one frame of the default size");
        let _ = c
            .send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &bomb))
            .await;
        let goaways = c.closed().await;
        calm_goaway_if_any(&goaways);
    });
    futures_util::future::join_all(bombs).await;
    let e = &edge;
    assert!(
        eventually(PATIENCE, || async move {
            e.errors("enhance_your_calm").await == 10.0
        })
        .await,
        "{}",
        edge.metrics().await
    );
    assert_eq!(
        app.hits(),
        1,
        "only the good client's request reached the target"
    );
    // Had the bombs been decoded whole, they would have taken 480 MB.
    let (peak, rss) = edge.memory();
    println!(
        "HPACK bombs: seawall VmHWM {} KiB before, {} KiB after; VmRSS {} KiB",
        peak_before / 1024,
        peak / 1024,
        rss / 1024
    );
    assert!(
        peak - peak_before < 32 * MIB,
        "peak RSS grew by {} bytes",
        peak - peak_before
    );
    check(&mut good, "after").await;
}

// ---------------------------------------------------------------------------------------------
// Clients that stop reading

/// A target that streams: `/stream?bytes=N` answers N bytes, `/stream` a body without end, 64 KiB
/// at a time (the same bytes again and again: the test process does no work per byte) and as
/// fast as they are taken; anything else gets an empty 200 (its health checks, requests served
/// meanwhile).
struct Streamer {
    addr: SocketAddr,
    /// Connections that carried a `/stream` request, and how many of those have ended.
    streaming: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Streamer {
    async fn start() -> Streamer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let streaming = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (s, e) = (streaming.clone(), ended.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (s, e) = (s.clone(), e.clone());
                tokio::spawn(async move {
                    let carried = Arc::new(AtomicBool::new(false));
                    let c = carried.clone();
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let stream = req.uri().path() == "/stream";
                            if stream && !c.swap(true, Ordering::SeqCst) {
                                s.fetch_add(1, Ordering::SeqCst);
                            }
                            let bytes: Option<u64> = req
                                .uri()
                                .query()
                                .and_then(|q| q.strip_prefix("bytes="))
                                .and_then(|n| n.parse().ok());
                            async move {
                                let body = if stream {
                                    Streamer::body(bytes)
                                } else {
                                    empty()
                                };
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                    if carried.load(Ordering::SeqCst) {
                        e.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Streamer {
            addr,
            streaming,
            ended,
            task,
        }
    }

    /// `len` bytes, or without end.
    fn body(len: Option<u64>) -> Body {
        const CHUNK: u64 = 64 * 1024;
        let chunk = Bytes::from(vec![b'x'; CHUNK as usize]);
        let chunks = (0..len.map_or(u64::MAX, |n| n.div_ceil(CHUNK))).map(move |i| {
            let left = len.map_or(CHUNK, |n| (n - i * CHUNK).min(CHUNK));
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                chunk.slice(..left as usize),
            ))
        });
        http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            chunks,
        )))
    }

    fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long the slow-reader tests let a connection sit without progress.
const IDLE: Duration = Duration::from_secs(2);

/// Waits until seawall has closed every client connection and `freed` says the target's
/// connection ended too, at most `IDLE` plus a generous margin: how long after `from` that was.
async fn all_closed(edge: &Edge, freed: impl Fn() -> bool, from: Instant) -> Duration {
    let closed = eventually(IDLE + PATIENCE, || async {
        freed() && edge.active_connections().await == 0.0
    })
    .await;
    assert!(closed, "still open: {}", edge.metrics().await);
    from.elapsed()
}

/// While a client holds a response up: another connection is served, and closed by its client
/// at once (an HTTP/1.1 one: a dropped HTTP/2 client lingers until the server's idle timeout).
async fn served_meanwhile(edge: &Edge) {
    let got = get(edge.addr(), true, "localhost", "/meanwhile").await;
    assert_eq!(got.status, 200, "{}", got.text());
}

/// A client that stops reading a 1 GiB answer over HTTP/2, with a flow-control window that
/// lets seawall send all of it (`big_window`: only the socket holds it back) or only the
/// default 64 KiB (the window does).
async fn h2_client_that_never_reads(big_window: bool, streams: u32) {
    let target = Streamer::start().await;
    let edge = Edge::start(
        target.addr,
        &format!("idle_timeout = \"{}s\"", IDLE.as_secs()),
    )
    .await;
    let before = edge.memory();

    let settings: &[(u16, u32)] = if big_window {
        &[(SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW)]
    } else {
        &[]
    };
    let mut c = Raw::connect_with(edge.addr(), settings).await;
    if big_window {
        c.send(&frame(
            WINDOW_UPDATE,
            0,
            0,
            &(MAX_WINDOW - 65_535).to_be_bytes(),
        ))
        .await
        .unwrap();
    }
    c.stop_reading();
    let asked = Instant::now();
    let mut heads = Vec::new();
    for i in 0..streams {
        heads.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2 * i + 1,
            &request_block(2, &format!("/stream?bytes={}", 1u64 << 30)),
        ));
    }
    c.send(&heads).await.unwrap();
    served_meanwhile(&edge).await;
    let t = &target;
    let took = all_closed(&edge, || t.ended() == streams as usize, asked).await;
    assert_eq!(target.streaming.load(Ordering::SeqCst), streams as usize);
    closed_at_idle_timeout_within_bounds(
        &format!("h2 never-reading client (big window: {big_window}, {streams} streams)"),
        took,
        &edge,
        before,
    )
    .await;
    // The good client's connection has gone idle meanwhile, and been closed: a new one.
    check(&mut good_client(edge.addr()).await, "after").await;
}

/// Reports how a client that stopped reading was closed (`took` after it asked), and checks it
/// was at `idle_timeout`, with what seawall wrote and the memory it grew by bounded; `before` is
/// `Edge::memory` from before the client came.
async fn closed_at_idle_timeout_within_bounds(
    what: &str,
    took: Duration,
    edge: &Edge,
    (peak_before, rss_before): (u64, u64),
) {
    let sent = edge.bytes_out().await;
    let (peak, rss) = edge.memory();
    println!(
        "{what}: closed after {took:?}, {} KiB sent in all; seawall VmHWM {} KiB before, {} KiB \
         after; VmRSS {} KiB before, {} KiB after",
        sent as u64 / 1024,
        peak_before / 1024,
        peak / 1024,
        rss_before / 1024,
        rss / 1024,
    );
    assert!(took >= IDLE, "closed before idle_timeout: {took:?}");
    assert!(
        took < IDLE + Duration::from_secs(2),
        "closed long after idle_timeout: {took:?}"
    );
    assert!(sent < (64 * MIB) as f64, "{sent} bytes written");
    assert!(
        peak - peak_before < 48 * MIB,
        "peak RSS grew by {} KiB",
        (peak - peak_before) / 1024
    );
}

#[tokio::test]
async fn an_h2_client_that_never_reads_is_closed_after_idle_timeout_with_memory_bounded() {
    h2_client_that_never_reads(true, 1).await;
}

#[tokio::test]
async fn an_h2_client_that_grants_no_window_is_closed_after_idle_timeout() {
    h2_client_that_never_reads(false, 1).await;
}

/// As many 1 GiB answers as the connection may ask for at once.
#[tokio::test]
async fn an_h2_client_that_never_reads_128_streams_is_closed_with_memory_bounded() {
    h2_client_that_never_reads(true, 128).await;
}

/// Over HTTP/1.1 and TLS, from a target that never ends its answer.
#[tokio::test]
async fn a_client_that_never_reads_an_endless_answer_is_closed_after_idle_timeout() {
    let target = Streamer::start().await;
    let edge = Edge::start(
        target.addr,
        &format!("idle_timeout = \"{}s\"", IDLE.as_secs()),
    )
    .await;
    let before = edge.memory();

    let mut tls = tls_connect(edge.addr(), &Tls::new("localhost"))
        .await
        .unwrap();
    tls.write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let asked = Instant::now();
    served_meanwhile(&edge).await;
    let t = &target;
    let took = all_closed(&edge, || t.ended() == 1, asked).await;
    assert_eq!(target.streaming.load(Ordering::SeqCst), 1);
    closed_at_idle_timeout_within_bounds(
        "HTTP/1.1 never-reading client of an endless answer",
        took,
        &edge,
        before,
    )
    .await;
    // What had piled up, then the end of the connection.
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(PATIENCE, tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("the connection is still open after {got} bytes"),
        }
    }
    check(&mut good_client(edge.addr()).await, "after").await;
}

/// A request head a byte at a time: closed with 408 at `header_timeout`, while another client
/// is served.
#[tokio::test]
async fn a_slowloris_client_is_closed_at_header_timeout() {
    let app = Backend::start("app").await;
    let edge = Edge::start(app.addr, "header_timeout = \"1s\"\nidle_timeout = \"60s\"").await;
    let mut good = good_client(edge.addr()).await;

    let tls = tls_connect(edge.addr(), &Tls::new("localhost"))
        .await
        .unwrap();
    let (mut read, mut write) = tokio::io::split(tls);
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".iter();
        for b in head.chain(std::iter::repeat(&b'a')) {
            if write.write_all(&[*b]).await.is_err() || write.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Served meanwhile, again and again.
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(800) {
        check(&mut good, "meanwhile").await;
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, read.read_to_end(&mut answer))
        .await
        .expect("closed in time")
        .ok();
    let took = started.elapsed();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    println!(
        "slowloris: closed after {took:?} with {answer:?}; {served} requests served meanwhile"
    );
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        app.hits(),
        served,
        "only the good client's requests reached the target"
    );
    check(&mut good, "after").await;
}

/// The HTTP/2 slowloris: a header block trickled a CONTINUATION frame at a time is closed at
/// `header_timeout`, counted from the block's first frame, while another connection is served.
#[tokio::test]
async fn an_h2_header_block_trickled_is_closed_at_header_timeout() {
    let app = Backend::start("app").await;
    let edge = Edge::start(app.addr, "header_timeout = \"1s\"\nidle_timeout = \"60s\"").await;
    let mut good = good_client(edge.addr()).await;

    let mut bad = Raw::connect(edge.addr()).await;
    // A request, whole, first: the deadline is the header block's, not the connection's.
    bad.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block(2, "/first"),
    ))
    .await
    .unwrap();
    bad.until(|f| f.kind == HEADERS && f.stream == 1)
        .await
        .expect("the first request answered");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    bad.send(&frame(HEADERS, 0, 3, &request_block(2, "/slow-head")))
        .await
        .unwrap();
    let mut header = Vec::new();
    hpack_int(&mut header, 0, 4, 0);
    hpack_str(&mut header, b"x-slow");
    hpack_str(&mut header, b"a");
    let mut served = 0;
    while !bad.is_closed() && started.elapsed() < PATIENCE {
        if bad.send(&frame(CONTINUATION, 0, 3, &header)).await.is_err() {
            break;
        }
        check(&mut good, "meanwhile").await;
        served += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let goaways = bad.closed().await;
    let took = started.elapsed();
    println!("h2 slowloris: closed after {took:?}, GOAWAY {goaways:?}; {served} requests served meanwhile");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        app.hits(),
        1 + served,
        "the trickled request never reached the target"
    );
    check(&mut good, "after").await;
}
