//! The end of a run: the [`Report`] (a table for people, JSON for machines) and the live progress
//! line while it runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::driver::Shared;
use super::options::Plan;
use super::stats::{ErrorKind, Negotiated, Stats};

/// A histogram's summary, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            mean: if h.is_empty() { 0.0 } else { h.mean() },
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Handshakes {
    pub full: u64,
    pub resumed: u64,
    pub per_sec: f64,
    pub full_per_sec: f64,
    pub resumed_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ByteCounts {
    /// Response body bytes.
    pub body: u64,
    /// Bytes read from the sockets (TLS records, HTTP framing and bodies).
    pub read: u64,
    pub written: u64,
    pub read_per_sec: f64,
    pub body_per_sec: f64,
}

/// What a run measured. `requests` counts responses (any status); failed requests are in `errors`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub mode: String,
    pub connections: usize,
    pub streams: usize,
    pub threads: usize,
    pub rate: Option<f64>,
    pub duration_secs: f64,
    pub requests: u64,
    pub requests_per_sec: f64,
    pub handshakes: Handshakes,
    pub bytes: ByteCounts,
    pub latency_us: Percentiles,
    pub handshake_us: Percentiles,
    /// Responses by status code.
    pub status: BTreeMap<u16, u64>,
    pub errors_total: u64,
    /// Failed requests by kind: connect, tls, timeout, reset, other (all present, zeros too).
    pub errors: BTreeMap<&'static str, u64>,
    /// The first successful handshake's version, suite and ALPN (absent for http://).
    pub tls: Option<Negotiated>,
}

impl Report {
    pub fn new(url: &str, plan: &Plan, resume: bool, stats: &Stats, elapsed: Duration) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let rate = |n: u64| n as f64 / secs;
        let mut mode = if plan.h2 { "h2" } else { "http/1.1" }.to_string();
        if plan.new_connection {
            mode.push_str(" new-connection");
        } else {
            mode.push_str(" keep-alive");
        }
        if resume {
            mode.push_str(" resume");
        }
        if plan.rate.is_some() {
            mode.push_str(" open-loop");
        }
        let requests = stats.responses();
        let hs = stats.full_handshakes + stats.resumed_handshakes;
        Report {
            url: url.to_string(),
            mode,
            connections: plan.connections,
            streams: if plan.h2 { plan.streams } else { 1 },
            threads: plan.threads,
            rate: plan.rate,
            duration_secs: secs,
            requests,
            requests_per_sec: rate(requests),
            handshakes: Handshakes {
                full: stats.full_handshakes,
                resumed: stats.resumed_handshakes,
                per_sec: rate(hs),
                full_per_sec: rate(stats.full_handshakes),
                resumed_per_sec: rate(stats.resumed_handshakes),
            },
            bytes: ByteCounts {
                body: stats.body_bytes,
                read: stats.wire_read,
                written: stats.wire_written,
                read_per_sec: rate(stats.wire_read),
                body_per_sec: rate(stats.body_bytes),
            },
            latency_us: Percentiles::of(&stats.latency),
            handshake_us: Percentiles::of(&stats.handshake),
            status: stats
                .status
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(code, n)| (code as u16, *n))
                .collect(),
            errors_total: stats.error_count(),
            errors: ErrorKind::ALL
                .iter()
                .map(|k| (k.name(), stats.errors[*k as usize]))
                .collect(),
            tls: stats.negotiated.clone(),
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "{}  ({})", self.url, self.mode);
        let streams = if self.streams > 1 {
            format!(" x {} streams", self.streams)
        } else {
            String::new()
        };
        let _ = writeln!(
            w,
            "  {} connections{streams}, {} thread(s), {:.2} s{}",
            self.connections,
            self.threads,
            self.duration_secs,
            self.rate
                .map_or_else(String::new, |r| format!(", target {r} req/s"))
        );
        if let Some(t) = &self.tls {
            let _ = writeln!(
                w,
                "  TLS: {} {} ALPN {}",
                t.version,
                t.cipher_suite,
                t.alpn.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "  requests     {:>12}   {:>12.1}/s",
            self.requests, self.requests_per_sec
        );
        let h = &self.handshakes;
        if h.full + h.resumed > 0 {
            let _ = writeln!(
                w,
                "  handshakes   {:>12}   {:>12.1}/s   (full {} = {:.1}/s, resumed {} = {:.1}/s)",
                h.full + h.resumed,
                h.per_sec,
                h.full,
                h.full_per_sec,
                h.resumed,
                h.resumed_per_sec
            );
        }
        let _ = writeln!(
            w,
            "  bytes read   {:>12}   {:>12}/s   (bodies {}/s)",
            human_bytes(self.bytes.read as f64),
            human_bytes(self.bytes.read_per_sec),
            human_bytes(self.bytes.body_per_sec)
        );
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "  {:<14}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "", "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        for (name, p) in [
            ("latency", &self.latency_us),
            ("handshake", &self.handshake_us),
        ] {
            if p.count == 0 {
                continue;
            }
            let _ = writeln!(
                w,
                "  {:<14}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
                name,
                human_micros(p.p50 as f64),
                human_micros(p.p90 as f64),
                human_micros(p.p99 as f64),
                human_micros(p.p999 as f64),
                human_micros(p.max as f64),
                human_micros(p.mean)
            );
        }
        let _ = writeln!(w);
        let codes: Vec<String> = self
            .status
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        let _ = writeln!(
            w,
            "  status       {}",
            if codes.is_empty() {
                "-".to_string()
            } else {
                codes.join(", ")
            }
        );
        let errors: Vec<String> = self
            .errors
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(
            w,
            "  errors       {}",
            if errors.is_empty() {
                "0".to_string()
            } else {
                errors.join(", ")
            }
        );
        out
    }
}

fn human_micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The live line on stderr: shown only to a person at a terminal, so piped output stays clean.
pub struct Progress {
    bar: ProgressBar,
    last: (std::time::Instant, u64),
}

impl Progress {
    pub fn new() -> Progress {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .expect("a constant template parses"),
        );
        Progress {
            bar,
            last: (std::time::Instant::now(), 0),
        }
    }

    pub fn update(&mut self, shared: &Shared) {
        let now = std::time::Instant::now();
        let done = shared.responses.load(Ordering::Relaxed);
        let errors = shared.errors.load(Ordering::Relaxed);
        let dt = now.duration_since(self.last.0).as_secs_f64().max(1e-6);
        let rps = (done - self.last.1) as f64 / dt;
        self.last = (now, done);
        self.bar
            .set_message(format!("{done} requests, {rps:.0} req/s, {errors} errors"));
        self.bar.tick();
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}
