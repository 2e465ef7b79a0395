//! The load loops: one OS thread per `--threads`, each with a current-thread runtime and its share
//! of the connections; per connection a loop of requests (HTTP/1.1) or one loop per stream
//! (HTTP/2), closed-loop or paced by `--rate`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::{sleep_until, timeout};

use super::conn::{classify, Connector, Sender, Template};
use super::stats::{ErrorKind, Stats};

/// After a failed connect, wait this long before the next: a refused port must not turn the run
/// into a busy loop, and the pause is short against any real connect.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// What every thread shares: the run's bounds and the live counters for the progress line.
pub struct Shared {
    pub start: Instant,
    pub end: Instant,
    /// `--requests`: the run stops once this many have been started.
    pub limit: Option<u64>,
    pub issued: AtomicU64,
    pub responses: AtomicU64,
    pub errors: AtomicU64,
    pub threads_done: AtomicUsize,
}

impl Shared {
    pub fn new(duration: Duration, limit: Option<u64>) -> Shared {
        let start = Instant::now();
        Shared {
            start,
            end: start + duration,
            limit,
            issued: AtomicU64::new(0),
            responses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            threads_done: AtomicUsize::new(0),
        }
    }

    /// Takes one request from the budget; false once the time or the count is spent.
    fn claim(&self) -> bool {
        Instant::now() < self.end && self.claim_count()
    }

    fn claim_count(&self) -> bool {
        self.limit
            .is_none_or(|n| self.issued.fetch_add(1, Ordering::Relaxed) < n)
    }

    fn over(&self) -> bool {
        Instant::now() >= self.end
            || self
                .limit
                .is_some_and(|n| self.issued.load(Ordering::Relaxed) >= n)
    }
}

/// `--rate`: the send times of one request loop. Every loop gets an equal share of the rate and
/// loops are staggered, so the sends of the whole run are evenly spaced.
struct Pacer {
    next: Instant,
    interval: Duration,
}

impl Pacer {
    fn new(shared: &Shared, rate: f64, loops: usize, index: usize) -> Pacer {
        Pacer {
            next: shared.start + Duration::from_secs_f64(index as f64 / rate),
            interval: Duration::from_secs_f64(loops as f64 / rate),
        }
    }
}

/// One thread's state, shared by its tasks (a current-thread runtime: `Rc`, no locks).
struct Worker {
    shared: Arc<Shared>,
    connector: Connector,
    template: Template,
    stats: RefCell<Stats>,
}

impl Worker {
    /// Waits for the next send time and claims a request. Returns the time latency counts from:
    /// the scheduled time under `--rate` (so a late send shows as latency), else now.
    async fn next(&self, pacer: &mut Option<Pacer>) -> Option<Instant> {
        match pacer {
            Some(p) => {
                let at = p.next;
                // Every send scheduled before the end is made, even late: dropping late sends
                // would hide the very queueing that open-loop pacing is there to show.
                if at >= self.shared.end || !self.shared.claim_count() {
                    return None;
                }
                p.next += p.interval;
                sleep_until(at.into()).await;
                Some(at)
            }
            None => self.shared.claim().then(Instant::now),
        }
    }

    fn fail(&self, kind: ErrorKind) {
        self.stats.borrow_mut().error(kind);
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
    }

    async fn backoff(&self) {
        let until = (Instant::now() + CONNECT_BACKOFF).min(self.shared.end);
        sleep_until(until.into()).await;
    }

    /// Sends one request; false when the connection is no longer usable.
    async fn request(&self, sender: &mut Sender, since: Instant) -> bool {
        match timeout(self.connector.plan.timeout, sender.send(&self.template)).await {
            Ok(Ok((status, bytes))) => {
                let micros = since.elapsed().as_micros() as u64;
                self.stats.borrow_mut().response(status, micros, bytes);
                self.shared.responses.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(Err(e)) => {
                self.fail(classify(&e));
                !sender.is_closed()
            }
            Err(_) => {
                self.fail(ErrorKind::Timeout);
                // An HTTP/1.1 connection with an abandoned response cannot carry another.
                matches!(sender, Sender::H2(_)) && !sender.is_closed()
            }
        }
    }

    /// HTTP/1.1: one request at a time; a new connection when the last one closed or failed, or
    /// for every request with `--new-connection`.
    async fn h1_loop(&self, mut pacer: Option<Pacer>) {
        let mut sender: Option<Sender> = None;
        while let Some(since) = self.next(&mut pacer).await {
            let s = match sender.as_mut() {
                Some(s) if !s.is_closed() => s,
                _ => match self.connector.connect(&self.stats).await {
                    Ok(s) => sender.insert(s),
                    Err(kind) => {
                        sender = None;
                        self.fail(kind);
                        self.backoff().await;
                        continue;
                    }
                },
            };
            let usable = self.request(s, since).await;
            if !usable || self.connector.plan.new_connection {
                sender = None;
            }
        }
    }

    /// HTTP/2: `streams` request loops share each connection; when it fails (or, with
    /// `--new-connection`, after one request per stream) a new one replaces it.
    async fn h2_loop(&self, mut pacers: Vec<Option<Pacer>>) {
        while !self.shared.over() {
            let sender = match self.connector.connect(&self.stats).await {
                Ok(s) => s,
                Err(kind) => {
                    // A failed connect takes a request from the budget, so that -n ends a run
                    // against a dead server.
                    if !self.shared.claim() {
                        break;
                    }
                    self.fail(kind);
                    self.backoff().await;
                    continue;
                }
            };
            let loops = pacers.iter_mut().map(|p| {
                let stream = sender.another_stream();
                async move {
                    let Some(mut sender) = stream else { return };
                    while let Some(since) = self.next(p).await {
                        if !self.request(&mut sender, since).await
                            || self.connector.plan.new_connection
                        {
                            break;
                        }
                    }
                }
            });
            futures_util::future::join_all(loops).await;
        }
    }
}

/// Runs one thread's connections (`first..first + count` of the run's) to the end of the run.
pub fn run_thread(
    shared: Arc<Shared>,
    connector: Connector,
    first: usize,
    count: usize,
) -> std::io::Result<Stats> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let plan = &connector.plan;
    let streams = if plan.h2 { plan.streams } else { 1 };
    let loops = plan.workers();
    let rate = plan.rate;
    let template = Template::new(plan);
    let worker = Rc::new(Worker {
        shared: shared.clone(),
        connector,
        template,
        stats: RefCell::new(Stats::new()),
    });
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut tasks = Vec::with_capacity(count);
        for conn in first..first + count {
            let pacers: Vec<Option<Pacer>> = (0..streams)
                .map(|s| rate.map(|r| Pacer::new(&shared, r, loops, conn * streams + s)))
                .collect();
            let w = worker.clone();
            tasks.push(tokio::task::spawn_local(async move {
                if w.connector.plan.h2 {
                    w.h2_loop(pacers).await;
                } else {
                    w.h1_loop(pacers.into_iter().next().flatten()).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    // Let the spawned hyper connection tasks see their senders dropped and close.
    drop(local);
    let mut stats = worker.stats.take();
    stats.wire_read = worker.connector.wire.read.load(Ordering::Relaxed);
    stats.wire_written = worker.connector.wire.written.load(Ordering::Relaxed);
    Ok(stats)
}
