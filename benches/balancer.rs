//! Nanoseconds per target pick for a group of 1 000 targets, through `TargetGroup::pick`, the
//! call the proxy makes per request (members load, pick among healthy targets, fail-open
//! fallback, `Arc` clone), for each algorithm:
//!
//! - `healthy/<algorithm>`: every target healthy, no slow start;
//! - `slow_start/<algorithm>`: round robin and weighted random with `slow_start = "30s"` and
//!   every target but one just healthy, so nearly all are ramping (round robin passes over a
//!   ramping target with a probability of one minus its weight, so this is its slowest case);
//! - `fail_open/<algorithm>`: every target unhealthy, so the healthy pick finds nothing and the
//!   fallback picks among all of them.
//!
//! Run: `cargo bench --bench balancer -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use seawall::config::compile::load_and_compile;
use seawall::config::{self, Source};
use seawall::targets::{Origin, Registration, State, TargetGroup, Update};

const TARGETS: u16 = 1000;

/// A group `g` with `algorithm` and `slow_start`, compiled from a config as seawall does, with no
/// targets yet.
fn group(algorithm: &str, slow_start: &str) -> Arc<TargetGroup> {
    let text = format!(
        r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ forward = "g" }}

[[target_groups]]
name = "g"
algorithm = "{algorithm}"
slow_start = "{slow_start}"
"#
    );
    let source = Source::new("bench.toml", ".", text);
    let cfg = config::load(&source).expect("the bench config is valid");
    let registry = seawall::targets::Registry::default();
    let metrics = seawall::metrics::Metrics::new();
    let snapshot = load_and_compile(&source, &cfg, &seawall::secrets::Secrets::generate())
        .expect("the bench config compiles")
        .attach(&registry, &metrics, &seawall::secrets::Secrets::generate());
    snapshot.target_groups[0].group.clone()
}

fn addrs(range: std::ops::Range<u16>) -> Vec<Registration> {
    range
        .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080)).into())
        .collect()
}

/// Registers `TARGETS` targets and puts every one in `state`.
fn populate(tg: &TargetGroup, state: State) {
    tg.state
        .apply(
            Origin::Config,
            Update::Add(addrs(0..TARGETS)),
            Duration::ZERO,
        )
        .expect("an addition is never refused");
    for t in tg.state.members().iter() {
        t.set_state(state, None);
    }
}

fn bench(c: &mut Criterion) {
    let algorithms = [
        "round_robin",
        "least_outstanding_requests",
        "weighted_random",
    ];

    let mut healthy = c.benchmark_group("healthy");
    for algorithm in algorithms {
        let tg = group(algorithm, "0s");
        populate(&tg, State::Healthy);
        healthy.bench_function(algorithm, |b| b.iter(|| black_box(tg.pick())));
    }
    healthy.finish();

    let mut slow = c.benchmark_group("slow_start");
    for algorithm in ["round_robin", "weighted_random"] {
        let tg = group(algorithm, "30s");
        // The first target is registered alone into the empty group, so it is spared the ramp;
        // the others join a group with a healthy target and ramp from a tenth of their weight.
        tg.state
            .apply(Origin::Config, Update::Add(addrs(0..1)), Duration::ZERO)
            .expect("an addition is never refused");
        tg.state.members()[0].set_state(State::Healthy, None);
        tg.state
            .apply(Origin::Api, Update::Add(addrs(1..TARGETS)), Duration::ZERO)
            .expect("an addition is never refused");
        for t in tg.state.members().iter() {
            t.set_state(State::Healthy, None);
        }
        slow.bench_function(algorithm, |b| b.iter(|| black_box(tg.pick())));
    }
    slow.finish();

    let mut fail_open = c.benchmark_group("fail_open");
    for algorithm in algorithms {
        let tg = group(algorithm, "0s");
        populate(&tg, State::Unhealthy);
        assert!(tg.pick().is_some(), "fail-open picks an unhealthy target");
        fail_open.bench_function(algorithm, |b| b.iter(|| black_box(tg.pick())));
    }
    fail_open.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
