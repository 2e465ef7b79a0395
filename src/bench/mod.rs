//! `seawall bench`: a TLS/HTTP load generator, so that seawall (or any HTTP endpoint) can be
//! measured with the same TLS stack it serves with.
//!
//! - [`options`]: the command line and the checked [`options::Plan`];
//! - [`tls`]: the rustls client config (versions, suites, groups, trust, resumption);
//! - [`conn`]: connect + handshake + HTTP/1.1 or HTTP/2 client, the request template, error kinds;
//! - [`driver`]: threads (a current-thread runtime each), connection and stream loops, `--rate`;
//! - [`stats`]: per-thread counters and HdrHistograms, merged at the end;
//! - [`report`]: the table, the JSON, and the live progress line.
//!
//! Every wait has the `--timeout` deadline; failures are counted by kind, never fatal.

pub mod conn;
pub mod driver;
pub mod options;
pub mod report;
pub mod stats;
pub mod tls;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsConnector;

pub use options::{BenchArgs, OptionsError, Plan};
pub use report::Report;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    Tls(#[from] tls::TlsOptionsError),
    #[error("cannot start a load thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("a load thread panicked")]
    Panicked,
}

/// How often the progress line is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// Runs the benchmark that `args` describe and returns what it measured.
pub fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let plan = Plan::new(args)?;
    let tls = if plan.tls {
        let alpn: &[u8] = if plan.h2 { b"h2" } else { b"http/1.1" };
        let config = tls::client_config(args, alpn)?;
        Some((
            TlsConnector::from(config),
            tls::server_name(&plan.server_name)?,
        ))
    } else {
        None
    };
    let shared = Arc::new(driver::Shared::new(plan.duration, plan.requests));
    let mut handles = Vec::with_capacity(plan.threads);
    let mut first = 0;
    for t in 0..plan.threads {
        // Connections spread as evenly as they divide.
        let count =
            plan.connections / plan.threads + usize::from(t < plan.connections % plan.threads);
        let connector = conn::Connector {
            plan: plan.clone(),
            tls: tls.clone(),
            wire: Arc::default(),
        };
        let shared_t = shared.clone();
        let start = first;
        let handle = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || {
                let r = driver::run_thread(shared_t.clone(), connector, start, count);
                let finished = std::time::Instant::now();
                shared_t.threads_done.fetch_add(1, Ordering::Release);
                r.map(|stats| (stats, finished))
            })?;
        handles.push(handle);
        first += count;
    }
    let mut progress = report::Progress::new();
    while shared.threads_done.load(Ordering::Acquire) < handles.len() {
        std::thread::sleep(PROGRESS_TICK);
        progress.update(&shared);
    }
    progress.finish();
    // The last thread's end, not now: the progress loop may have slept past it.
    let mut end = shared.start;
    let mut total = stats::Stats::new();
    for h in handles {
        let (s, finished) = h.join().map_err(|_| BenchError::Panicked)??;
        total.merge(&s);
        end = end.max(finished);
    }
    let elapsed = end - shared.start;
    Ok(Report::new(&args.url, &plan, args.resume, &total, elapsed))
}
