//! The access log's cost per request on the worker: formatting one keep-alive request's line in
//! ALB's text format (`format/alb`) or as JSON (`format/json`). `benches/callgrind.sh` with
//! `ACCESS_LOG=alb` measures the whole of it, the lock and the writer included.
//!
//! Run: `cargo bench --bench access_log -- --warm-up-time 1 --measurement-time 2`
//!
//! Instructions rather than nanoseconds (the budget is in instructions): run one under callgrind
//! and divide `Formatter::alb_request`'s inclusive cost by its calls,
//! `valgrind --tool=callgrind target/release/deps/access_log-* --bench --profile-time 1 format/alb`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Method, Version};
use seawall::access_log::format::{Formatter, Lines};
use seawall::access_log::{
    Certificate, ConnText, ConnTraceId, Connection, Entry, Format, Request, RequestLine,
    RulePriority, TlsLine, TraceText, WallTime,
};

/// What `seawall bench` sends through a TLS listener to a target, as `benches/callgrind.sh`
/// measures it.
fn entry() -> Entry {
    Entry {
        kind: "https",
        request: RequestLine::new(
            Method::GET,
            Version::HTTP_11,
            b"/",
            Some(b"localhost:8443"),
            Some(b"seawall-bench/0.1"),
        ),
        received_head: 64,
        sent_head: 128,
        redirect_url: None,
    }
}

fn request<'a>(e: &'a Entry, text: &'a ConnText, cert: &'a Certificate) -> Request<'a> {
    Request {
        entry: e,
        conn: Connection {
            listener: "web",
            port: 8443,
            client: "127.0.0.1:40112".parse().unwrap(),
            tls: Some(TlsLine {
                protocol: rustls::ProtocolVersion::TLSv1_3,
                cipher: rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            }),
            domain: Some("localhost"),
            certificate: Some(cert),
            trace_id: ConnTraceId(0xdc57cebed65b444ebc8177bb698fe166),
            text,
        },
        kind: e.kind,
        created: WallTime::now(),
        ended: WallTime::now(),
        target: Some("127.0.0.1:8080".parse().unwrap()),
        request_processing: Some(Duration::from_micros(20)),
        target_processing: Some(Duration::from_micros(140)),
        response_processing: Some(Duration::from_micros(10)),
        elb_status: 200,
        target_status: Some(200),
        received_bytes: e.received_head,
        sent_bytes: e.sent_head + 23,
        target_group: Some("backend"),
        // `seawall bench` sends none: seawall makes one.
        trace_id: Some(TraceText::Own(b"Root=1-692f1a3d-5b0e8c1f2a7d4e6b9c3a0f12")),
        rule: RulePriority::Default,
        action: Some("forward"),
        error_reason: None,
        classification: None,
    }
}

fn bench(c: &mut Criterion) {
    let (e, text, cert) = (entry(), ConnText::default(), Certificate::SessionReused);
    let r = request(&e, &text, &cert);
    let mut g = c.benchmark_group("format");
    for (name, format) in [("alb", Format::Alb), ("json", Format::Json)] {
        let mut f = Formatter::default();
        let mut out = Lines::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                if out.len() > 1 << 20 {
                    out.clear();
                }
                match format {
                    Format::Alb => f.alb_request(black_box(&r), &mut out),
                    Format::Json => f.json_request(black_box(&r), &mut out),
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
