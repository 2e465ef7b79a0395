//! What reloading costs, measured on seawall running in this process:
//!
//! - latency: the time from writing a new config file (a temp file renamed over it, with the file
//!   watcher as the only trigger) to the first request answered by the new configuration, p50 and
//!   p99 over 100 reloads (target: p99 under 100 ms; the watcher coalesces events for 50 ms);
//! - throughput: requests/s of a closed-loop load (4 kept-alive HTTP/1.1 connections, each
//!   request forwarded to a backend) while the file is rewritten every 100 ms, as a ratio of
//!   requests/s with no reloads (target: at least 0.95). The two alternate in one run, 20 rounds
//!   of 0.5 s each, so that both see the same machine; the per-round ratios show how noisy it
//!   is, and the CPU time per request, which other processes disturb less, is printed beside.
//!
//! Run: `cargo bench --bench reload`. Without `--bench` (as `cargo test --all-targets` runs it)
//! it makes a short smoke run instead.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Connections of the closed-loop load.
const CONNECTIONS: usize = 4;
/// The phase of requests counted in neither measurement.
const GAP: u8 = 2;
/// Time between config writes during a storm.
const STORM_EVERY: Duration = Duration::from_millis(100);

struct Plan {
    reloads: usize,
    /// Length of each measured phase; phases alternate no-reload / storm `rounds` times.
    phase: Duration,
    rounds: usize,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full {
        Plan {
            reloads: 100,
            phase: Duration::from_millis(500),
            rounds: 20,
        }
    } else {
        println!("smoke run (figures from `cargo bench --bench reload`)");
        Plan {
            reloads: 5,
            phase: Duration::from_millis(300),
            rounds: 1,
        }
    };
    // The clients and the backend share one thread, so that the machine's other cores are left
    // to seawall's own runtime and control thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(plan));
}

/// A config whose fixed response at `/gen` says `gen-<n>`; everything else is forwarded to the
/// backend. The https listener and the other rules make each reload compile what a real config
/// has (a TLS configuration, several matchers).
fn config(n: u64, backend: SocketAddr) -> String {
    format!(
        r#"
[runtime]
drain_timeout = "2s"

[[certificates]]
name = "dev"
self_signed = ["localhost", "*.example.test"]

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ forward = "app" }}

  [[listeners.rules]]
  priority = 10
  match = {{ path = ["/gen"] }}
  action = {{ fixed_response = {{ status = 200, content_type = "text/plain", body = "gen-{n}" }} }}

  [[listeners.rules]]
  priority = 20
  match = {{ host = ["api.example.test", "*.api.example.test"], path = ["/v1/*"] }}
  action = {{ forward = "app" }}

  [[listeners.rules]]
  priority = 30
  match = {{ path = ["/old/*"] }}
  action = {{ redirect = {{ path = "/new/#{{path}}", status = 301 }} }}

[[listeners]]
name = "secure"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["dev"]
default_action = {{ forward = "app" }}

[[target_groups]]
name = "app"
targets = ["{backend}"]
"#
    )
}

/// Writes a sibling temp file and renames it over `path`, as editors and config tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_file_name(".seawall.toml.tmp");
    std::fs::write(&tmp, text).expect("write the config");
    std::fs::rename(&tmp, path).expect("rename the config");
}

/// An HTTP/1.1 backend answering every request with a short body.
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"backend"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

/// GET `path` on a kept-alive connection: status and body.
async fn get(c: &mut SendRequest<Empty<Bytes>>, path: &str) -> Result<(u16, Bytes), String> {
    c.ready().await.map_err(|e| e.to_string())?;
    let req = Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .expect("request");
    let resp = c.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// CPU time (user + system) of this process so far, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name, which is in parentheses and may hold spaces: state is
    // the first of them, utime and stime the 12th and 13th.
    let rest = &stat[stat.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(plan: Plan) {
    let backend = backend().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, config(0, backend)).expect("write the config");
    let source = seawall::config::Source::read(&path).expect("read the config");
    let running = seawall::App::build(&source)
        .unwrap_or_else(|e| panic!("{e}"))
        .start()
        .expect("start");
    let web = running.listener_addr("web").expect("listener web");
    let metrics = &running.control().plane.metrics;
    let reloads = || {
        metrics
            .config_reloads_total
            .with_label_values(&["success"])
            .get()
    };
    let mut generation = 0u64;

    // Latency: write, then ask on one kept-alive connection until the answer is the new one.
    let mut poll = connect(web).await;
    let before = reloads();
    let mut latencies = Vec::with_capacity(plan.reloads);
    for _ in 0..plan.reloads {
        generation += 1;
        let want = format!("gen-{generation}");
        let text = config(generation, backend);
        let started = Instant::now();
        replace(&path, &text);
        loop {
            let (status, body) = get(&mut poll, "/gen").await.expect("poll request");
            assert_eq!(status, 200);
            if body == want.as_bytes() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{want} not served within 10 s"
            );
        }
        latencies.push(started.elapsed());
        // Apart from the next write, so that each write is a reload of its own.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Any reload a write caused beyond its first would show here.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counted = reloads() - before;
    latencies.sort();
    println!(
        "reload latency (file write -> first answer from the new config), {} reloads: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target: p99 < 100 ms); reloads counted: {counted}",
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().expect("at least one reload")),
    );
    drop(poll);

    // Throughput: a closed loop on CONNECTIONS connections, phases alternating.
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // The phase a request is counted in: 0 = no reloads, 1 = storm, GAP = neither.
    let phase = Arc::new(AtomicU8::new(0));
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let (done, failed, stop, phase) =
            (done.clone(), failed.clone(), stop.clone(), phase.clone());
        clients.push(tokio::spawn(async move {
            let mut c = connect(web).await;
            let mut latencies: [Vec<Duration>; 3] = Default::default();
            while !stop.load(Ordering::Relaxed) {
                let p = phase.load(Ordering::Relaxed) as usize;
                let started = Instant::now();
                match get(&mut c, "/").await {
                    Ok((200, _)) => {
                        latencies[p].push(started.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        c = connect(web).await;
                    }
                }
            }
            latencies
        }));
    }
    // Warm-up: connections to seawall and from it to the backend.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut requests = [0u64; 2];
    let mut elapsed = [Duration::ZERO; 2];
    let mut cpu = [0u64; 2];
    let mut storm_reloads = 0;
    // Storm / no-reload rate of each round.
    let mut round_ratios = Vec::new();
    for round in 0..plan.rounds {
        // Storm first in every other round, so that a drift of the machine's speed over the run
        // weighs on both phases alike.
        let order = if round.is_multiple_of(2) {
            [0u8, 1]
        } else {
            [1, 0]
        };
        let mut rates = [0f64; 2];
        for p in order {
            phase.store(p, Ordering::Relaxed);
            let reloads_before = reloads();
            let count_before = done.load(Ordering::Relaxed);
            let cpu_before = cpu_ticks();
            let started = Instant::now();
            if p == 1 {
                let mut tick = tokio::time::interval(STORM_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while started.elapsed() < plan.phase {
                    tick.tick().await;
                    generation += 1;
                    replace(&path, &config(generation, backend));
                }
            } else {
                tokio::time::sleep(plan.phase).await;
            }
            let count = done.load(Ordering::Relaxed) - count_before;
            let took = started.elapsed();
            cpu[p as usize] += cpu_ticks() - cpu_before;
            requests[p as usize] += count;
            elapsed[p as usize] += took;
            rates[p as usize] = count as f64 / took.as_secs_f64();
            // A gap counted in neither phase: the last write of a storm reloads after it.
            phase.store(GAP, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(150)).await;
            if p == 1 {
                storm_reloads += reloads() - reloads_before;
            }
        }
        round_ratios.push(rates[1] / rates[0]);
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for c in clients {
        let [a, b, _gap] = c.await.expect("client task");
        latencies[0].extend(a);
        latencies[1].extend(b);
    }
    let rate = |p: usize| requests[p] as f64 / elapsed[p].as_secs_f64();
    for (p, name) in ["no reloads", "reload storm"].iter().enumerate() {
        let l = &mut latencies[p];
        l.sort();
        println!(
            "{name}: {:.0} requests/s over {:.1} s; request latency p50 {:.3} ms, p99 {:.3} ms, max {:.1} ms",
            rate(p),
            elapsed[p].as_secs_f64(),
            ms(percentile(l, 0.50)),
            ms(percentile(l, 0.99)),
            ms(*l.last().expect("requests were answered")),
        );
    }
    round_ratios.sort_by(f64::total_cmp);
    // Less sensitive than requests/s to other processes on the machine: what the whole process
    // (seawall, clients, backend) spends per request.
    let cpu_per_request = |p: usize| cpu[p] as f64 / requests[p] as f64;
    println!(
        "CPU time per request during the storm / without: {:.3}",
        cpu_per_request(1) / cpu_per_request(0)
    );
    println!(
        "throughput during a reload storm ({storm_reloads} reloads, one per {} ms) / without: \
         {:.3} (target: >= 0.95); per round ({} rounds): median {:.3}, min {:.3}, max {:.3}; \
         failed requests: {}",
        STORM_EVERY.as_millis(),
        rate(1) / rate(0),
        round_ratios.len(),
        round_ratios[round_ratios.len() / 2],
        round_ratios[0],
        round_ratios[round_ratios.len() - 1],
        failed.load(Ordering::Relaxed),
    );
    running.stop();
}
