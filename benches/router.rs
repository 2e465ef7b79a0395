//! Nanoseconds per `Router::find` over a realistic listener: 50 rules mixing exact and wildcard
//! hosts, path prefixes with wildcards, and host + path rules, as a compiled router is used per
//! request.
//!
//! - `find/first`: the first rule matches;
//! - `find/middle`: rule 25 (a wildcard host) matches, after 24 that do not;
//! - `find/last`: only the last rule (a path wildcard) matches;
//! - `find/default`: nothing matches, every rule is tried, the default action answers.
//!
//! Run: `cargo bench --bench router -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use seawall::routing::{Action, FixedResponse, RequestView, Router, Rule, Wildcard};

const RULES: u32 = 50;

fn fixed(i: u32) -> Action {
    Action::FixedResponse(FixedResponse {
        status: StatusCode::OK,
        content_type: HeaderValue::from_static("text/plain"),
        body: Bytes::from(i.to_string()),
    })
}

/// Rule `i` (1-based): a cycle of the shapes a real listener has.
fn rule(i: u32) -> Rule {
    let host = |p: String| Wildcard::case_insensitive(&p).unwrap();
    let path = |p: String| Wildcard::case_sensitive(&p).unwrap();
    let (hosts, paths) = match i % 5 {
        // An API host and its regional wildcard.
        0 => (
            vec![
                host(format!("api{i}.example.com")),
                host(format!("*.api{i}.example.com")),
            ],
            vec![],
        ),
        // A versioned path prefix on any host.
        1 => (
            vec![],
            vec![path(format!("/v{i}/*")), path(format!("/v{i}"))],
        ),
        // A tenant wildcard host with a path.
        2 => (
            vec![host(format!("*.tenant{i}.example.com"))],
            vec![path(format!("/app{i}/*"))],
        ),
        // An exact host and a file-type path.
        3 => (
            vec![host(format!("static{i}.example.com"))],
            vec![path(format!("/assets/*.{i}.js"))],
        ),
        // A single-character wildcard in the host.
        _ => (vec![host(format!("web?{i}.example.com"))], vec![]),
    };
    Rule {
        priority: i,
        host: hosts.into(),
        path: paths.into(),
        action: fixed(i),
    }
}

fn router(last_catch_all: &str) -> Router {
    let mut rules: Vec<Rule> = (1..RULES).map(rule).collect();
    rules.push(Rule {
        priority: RULES,
        host: Box::new([]),
        path: vec![Wildcard::case_sensitive(last_catch_all).unwrap()].into(),
        action: fixed(RULES),
    });
    Router::new(rules, fixed(0))
}

fn matched(a: &Action) -> u32 {
    match a {
        Action::FixedResponse(f) => std::str::from_utf8(&f.body).unwrap().parse().unwrap(),
        _ => unreachable!("every action is fixed"),
    }
}

fn bench(c: &mut Criterion) {
    let router = router("/health/*");
    let cases = [
        ("first", "www.example.com", "/v1/users/42", 1),
        (
            "middle",
            "eu-west.api25.example.com",
            "/orders/2024/07/items",
            25,
        ),
        ("last", "www.example.com", "/health/deep/check", RULES),
        ("default", "www.example.com", "/nothing/matches/here", 0),
    ];
    let headers = HeaderMap::new();
    let mut g = c.benchmark_group("find");
    for (name, host, path, want) in cases {
        // Borrowed from the request, as the proxy builds it.
        let req = RequestView {
            host,
            path,
            method: &Method::GET,
            headers: &headers,
            query: "",
            client_ip: std::net::IpAddr::from([10, 0, 0, 1]),
        };
        assert_eq!(matched(router.find(&req).action), want, "{name}");
        g.bench_function(name, |b| b.iter(|| black_box(router.find(black_box(&req)))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
