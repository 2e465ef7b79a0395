//! Nanoseconds per `Router::find` over a large listener: 1 000 rules mixing every condition kind
//! (exact hosts, wildcard hosts, paths, headers, methods, query strings, source IPs), as a
//! compiled router is used per request.
//!
//! - `find/first`: rule 1 (a wildcard host and a path) matches;
//! - `find/middle`: rule 500 (a header) matches, after 499 that do not;
//! - `find/last`: only rule 1 000 (a path wildcard) matches;
//! - `find/default`: nothing matches, every candidate rule is tried, the default action answers;
//! - `find/exact_host`: an exact host rule near the end (rule 992), found through the host index.
//!
//! Run: `cargo bench --bench router -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use seawall::routing::{
    Action, Conditions, FixedResponse, HeaderCondition, QueryPattern, RequestView, Router, Rule,
    Wildcard,
};

const RULES: u32 = 1000;

fn fixed(i: u32) -> Action {
    Action::FixedResponse(FixedResponse {
        status: StatusCode::OK,
        content_type: HeaderValue::from_static("text/plain"),
        body: Bytes::from(i.to_string()),
    })
}

fn host(p: String) -> Wildcard {
    Wildcard::case_insensitive(&p).unwrap()
}
fn path(p: String) -> Wildcard {
    Wildcard::case_sensitive(&p).unwrap()
}

/// Rule `i` (1-based): a cycle of the shapes a large listener has.
fn conditions(i: u32) -> Conditions {
    match i % 8 {
        // An API host.
        0 => Conditions {
            host: vec![host(format!("api{i}.example.com"))].into(),
            ..Default::default()
        },
        // A tenant wildcard host with a path.
        1 => Conditions {
            host: vec![host(format!("*.tenant{i}.example.com"))].into(),
            path: vec![path(format!("/app{i}/*"))].into(),
            ..Default::default()
        },
        // A versioned path prefix on any host.
        2 => Conditions {
            path: vec![path(format!("/v{i}/*")), path(format!("/v{i}"))].into(),
            ..Default::default()
        },
        // A tenant header (as an API gateway in front would set it).
        3 | 4 => Conditions {
            headers: vec![HeaderCondition {
                name: HeaderName::from_bytes(format!("x-tenant-{}", i % 7).as_bytes()).unwrap(),
                values: vec![Wildcard::header_value(&format!("t{i}")).unwrap()].into(),
            }]
            .into(),
            ..Default::default()
        },
        // Writes to one resource.
        5 => Conditions {
            method: vec![Method::POST, Method::PUT].into(),
            path: vec![path(format!("/r{i}/*"))].into(),
            ..Default::default()
        },
        // A query switch.
        6 => Conditions {
            query: vec![QueryPattern {
                key: Some(Wildcard::query("version").unwrap()),
                value: Wildcard::query(&format!("v{i}*")).unwrap(),
            }]
            .into(),
            ..Default::default()
        },
        // An office network on a wildcard host.
        _ => Conditions {
            host: vec![host(format!("intranet?{i}.example.com"))].into(),
            source_ip: vec![format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap()].into(),
            ..Default::default()
        },
    }
}

fn router() -> Router {
    let mut rules: Vec<Rule> = (1..RULES)
        .map(|i| Rule {
            priority: i,
            conditions: conditions(i),
            action: fixed(i),
        })
        .collect();
    rules.push(Rule {
        priority: RULES,
        conditions: Conditions {
            path: vec![path("/health/*".into())].into(),
            ..Default::default()
        },
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
    let router = router();
    // What a browser behind a gateway sends: a handful of headers, one of them a tenant.
    let mut headers = HeaderMap::new();
    for (n, v) in [
        ("accept", "text/html"),
        ("user-agent", "Mozilla/5.0"),
        ("accept-encoding", "gzip, br"),
        ("cookie", "session=abc"),
    ] {
        headers.insert(n, HeaderValue::from_static(v));
    }
    let mut tenant = headers.clone();
    // Rule 500 is `x-tenant-3 = t500` (500 % 8 == 4, 500 % 7 == 3).
    tenant.insert("x-tenant-3", HeaderValue::from_static("t500"));
    let cases = [
        (
            "first",
            "eu.tenant1.example.com",
            "/app1/x",
            "",
            &headers,
            1,
        ),
        (
            "middle",
            "www.example.com",
            "/orders/7",
            "page=2",
            &tenant,
            500,
        ),
        (
            "last",
            "www.example.com",
            "/health/deep",
            "page=2",
            &headers,
            RULES,
        ),
        (
            "default",
            "www.example.com",
            "/nothing",
            "page=2",
            &headers,
            0,
        ),
        ("exact_host", "API992.example.com", "/", "", &headers, 992),
    ];
    let mut g = c.benchmark_group("find");
    for (name, host, path, query, headers, want) in cases {
        // Borrowed from the request, as the proxy builds it.
        let req = RequestView {
            host,
            path,
            method: &Method::GET,
            headers,
            query,
            client_ip: std::net::IpAddr::from([192, 0, 2, 1]),
        };
        assert_eq!(matched(router.find(&req).action), want, "{name}");
        assert_eq!(matched(router.explain(&req).matched.action), want, "{name}");
        g.bench_function(name, |b| b.iter(|| black_box(router.find(black_box(&req)))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
