//! Routing and forwarding: host/path/header/method/query/source-IP rules and their priority,
//! fixed responses, redirects,
//! round-robin, the headers a target sees, HTTP/2 by `:authority`, and request metrics.

mod common;
use common::*;

use std::net::SocketAddr;

use http::{header, Request, Version};
use tokio::net::TcpStream;

/// Sends `req` over a fresh plain HTTP/1.1 connection.
async fn send(addr: SocketAddr, req: Request<Body>) -> Got {
    let mut c = h1(TcpStream::connect(addr).await.unwrap()).await;
    read(c.send_request(req).await.unwrap()).await
}

/// The backend id that answered, or the fixed body when seawall answered itself.
async fn who(addr: SocketAddr, host: &str, path: &str) -> String {
    let got = get(addr, false, host, path).await;
    assert_eq!(got.status, 200, "{host}{path}: {}", got.text());
    match got.headers.get(header::CONTENT_TYPE) {
        Some(ct) if ct == "application/json" => got.json()["id"].as_str().unwrap().to_string(),
        _ => got.text(),
    }
}

/// The configs below that are about rules are written out whole, as a user would write them.
const RUNTIME: &str = r#"
[runtime]
idle_timeout = "5s"
header_timeout = "2s"
"#;

fn group(name: &str, targets: &[SocketAddr]) -> TargetGroup {
    TargetGroup::new(name, targets).line("connect_timeout = \"1s\"\nresponse_timeout = \"5s\"")
}

#[tokio::test]
async fn host_and_path_rules_pick_target_groups() {
    let (api, web) = (Backend::start("api").await, Backend::start("web").await);
    let sw = Seawall::start(&format!(
        r#"{RUNTIME}
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ forward = "web" }}

  [[listeners.rules]]
  priority = 10
  match = {{ host = ["api.example.test", "*.api.example.test"] }}
  action = {{ forward = "api" }}

  [[listeners.rules]]
  priority = 20
  match = {{ path = ["/api/v?/*"] }}
  action = {{ forward = "api" }}

  [[listeners.rules]]
  priority = 30
  match = {{ host = ["shop.test"], path = ["/cart", "/cart/*"] }}
  action = {{ forward = "api" }}

{}
{}"#,
        group("api", &[api.addr]),
        group("web", &[web.addr]),
    ));
    let addr = sw.addr("web");
    for (host, path, want) in [
        // host condition: exact, case-insensitive, port ignored, `*` wildcard
        ("api.example.test", "/", "api"),
        ("API.Example.TEST", "/", "api"),
        ("api.example.test:8080", "/", "api"),
        ("eu.api.example.test", "/x", "api"),
        ("api.example.test.evil", "/", "web"),
        ("xapi.example.test", "/", "web"),
        // path condition: `?` is exactly one character, case-sensitive, query not part of the path
        ("www.example.test", "/api/v1/users", "api"),
        ("www.example.test", "/api/v2/users?x=/api/v3/", "api"),
        ("www.example.test", "/api/v10/users", "web"),
        ("www.example.test", "/API/v1/users", "web"),
        ("www.example.test", "/x?p=/api/v1/users", "web"),
        // both conditions of one rule must match (AND); values within one are OR'ed
        ("shop.test", "/cart", "api"),
        ("shop.test", "/cart/items", "api"),
        ("shop.test", "/carts", "web"),
        ("other.test", "/cart", "web"),
        // the default action
        ("www.example.test", "/", "web"),
    ] {
        assert_eq!(
            who(addr, host, path).await,
            want,
            "Host: {host}, path {path}"
        );
    }
    assert_eq!(api.hits() + web.hits(), 16);
}

#[tokio::test]
async fn lower_priority_number_wins_when_two_rules_match() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    // The rules are listed out of priority order on purpose.
    let sw = Seawall::start(&format!(
        r#"{RUNTIME}
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ fixed_response = {{ status = 200, body = "default" }} }}

  [[listeners.rules]]
  priority = 200
  match = {{ path = ["/shared/*", "/b-only"] }}
  action = {{ forward = "b" }}

  [[listeners.rules]]
  priority = 100
  match = {{ host = ["*.test"], path = ["/shared/*", "/a-only"] }}
  action = {{ forward = "a" }}

  [[listeners.rules]]
  priority = 50000
  match = {{ path = ["/*"] }}
  action = {{ fixed_response = {{ status = 200, body = "catch-all" }} }}

{}
{}"#,
        group("a", &[a.addr]),
        group("b", &[b.addr]),
    ));
    let addr = sw.addr("web");
    assert_eq!(who(addr, "x.test", "/shared/1").await, "a");
    assert_eq!(who(addr, "x.test", "/a-only").await, "a");
    assert_eq!(who(addr, "x.test", "/b-only").await, "b");
    // priority 100 needs the host too, so 200 is the first match here
    assert_eq!(who(addr, "x.other", "/shared/1").await, "b");
    assert_eq!(who(addr, "x.test", "/else").await, "catch-all");
}

/// Sends `method target` with `headers` (a header named twice is sent twice) over a fresh
/// HTTP/1.1 connection to `addr` and returns the fixed body that answered.
async fn answer(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut req = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "x.test");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let got = send(addr, req.body(empty()).unwrap()).await;
    assert_eq!(
        got.status,
        200,
        "{method} {target} {headers:?}: {}",
        got.text()
    );
    got.text()
}

/// One condition kind per rule, fixed bodies that name the rule. Within a condition any value
/// may match (OR); every condition of a rule must (AND).
#[tokio::test]
async fn header_method_and_query_conditions_route_requests() {
    let sw = Seawall::start(&format!(
        r#"{RUNTIME}
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ fixed_response = {{ status = 200, body = "default" }} }}

  [[listeners.rules]]
  priority = 10
  match = {{ header = {{ X-Canary = ["1", "true"], x-env = ["prod*"] }} }}
  action = {{ fixed_response = {{ status = 200, body = "canary" }} }}

  [[listeners.rules]]
  priority = 20
  match = {{ method = ["POST", "PUT"], path = ["/write/*"] }}
  action = {{ fixed_response = {{ status = 200, body = "write" }} }}

  [[listeners.rules]]
  priority = 30
  match = {{ query = {{ version = ["v2*"], "" = ["debug"] }} }}
  action = {{ fixed_response = {{ status = 200, body = "query" }} }}

  [[listeners.rules]]
  priority = 40
  match = {{ query = {{ q = ['a\*b c'] }} }}
  action = {{ fixed_response = {{ status = 200, body = "literal" }} }}

  [[listeners.rules]]
  priority = 50
  match = {{ method = ["DELETE"] }}
  action = {{ fixed_response = {{ status = 200, body = "delete" }} }}
"#
    ));
    let addr = sw.addr("web");
    for (method, target, headers, want) in [
        // header: every name must match; names and values fold case; `*` in values
        (
            "GET",
            "/",
            &[("x-canary", "TRUE"), ("X-Env", "Production")][..],
            "canary",
        ),
        (
            "GET",
            "/",
            &[("x-canary", "1"), ("x-env", "prod")][..],
            "canary",
        ),
        ("GET", "/", &[("x-canary", "1")][..], "default"),
        (
            "GET",
            "/",
            &[("x-canary", "2"), ("x-env", "prod")][..],
            "default",
        ),
        (
            "GET",
            "/",
            &[("x-canary", "1"), ("x-env", "staging")][..],
            "default",
        ),
        // a header sent twice matches when any of its lines does
        (
            "GET",
            "/",
            &[("x-canary", "0"), ("x-canary", "true"), ("x-env", "prod")][..],
            "canary",
        ),
        // method AND path; methods are exact
        ("POST", "/write/a", &[][..], "write"),
        ("PUT", "/write/a", &[][..], "write"),
        ("GET", "/write/a", &[][..], "default"),
        ("POST", "/read/a", &[][..], "default"),
        ("DELETE", "/", &[][..], "delete"),
        // query: keys and values fold case, after URL-decoding; any pair of the condition
        ("GET", "/?version=v2", &[][..], "query"),
        ("GET", "/?a=1&VERSION=V2.1", &[][..], "query"),
        ("GET", "/?ver%73ion=v%32beta", &[][..], "query"),
        ("GET", "/?version=v1", &[][..], "default"),
        // the key-less entry: the value under any key, or a bare item
        ("GET", "/?mode=DEBUG", &[][..], "query"),
        ("GET", "/?x=1&debug", &[][..], "query"),
        ("GET", "/?debug=1", &[][..], "default"),
        // `\*` is a literal star; `+` and `%20` are spaces
        ("GET", "/?q=a*b+c", &[][..], "literal"),
        ("GET", "/?q=A%2Ab%20C", &[][..], "literal"),
        ("GET", "/?q=axb+c", &[][..], "default"),
        ("GET", "/?q=a*b", &[][..], "default"),
        // the query string is not the path, nor the path the query
        ("GET", "/version=v2", &[][..], "default"),
        // a request that matches two rules takes the lower priority
        ("DELETE", "/?version=v2", &[][..], "query"),
    ] {
        assert_eq!(
            answer(addr, method, target, headers).await,
            want,
            "{method} {target} {headers:?}"
        );
    }
}

/// `source_ip` matches the TCP peer's address, not `X-Forwarded-For`; over IPv4 and IPv6.
#[tokio::test]
async fn source_ip_matches_the_peer_address_over_ipv4_and_ipv6() {
    let v6 = match std::net::TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            println!("note: ::1 cannot be bound here ({e}); the IPv6 half of this test is skipped");
            false
        }
    };
    let rules = r#"default_action = { fixed_response = { status = 200, body = "default" } }

  [[listeners.rules]]
  priority = 10
  match = { source_ip = ["10.0.0.0/8"] }
  action = { fixed_response = { status = 200, body = "ten" } }

  [[listeners.rules]]
  priority = 20
  match = { source_ip = ["192.0.2.0/24", "127.0.0.0/8"] }
  action = { fixed_response = { status = 200, body = "loopback4" } }

  [[listeners.rules]]
  priority = 30
  match = { source_ip = ["fd00::/8", "::1/128"] }
  action = { fixed_response = { status = 200, body = "loopback6" } }
"#;
    let mut config = format!(
        "{RUNTIME}\n[[listeners]]\nname = \"v4\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n{rules}"
    );
    if v6 {
        config.push_str(&format!(
            "\n[[listeners]]\nname = \"v6\"\nbind = \"[::1]:0\"\nprotocol = \"http\"\n{rules}"
        ));
    }
    let sw = Seawall::start(&config);
    let forwarded = [("x-forwarded-for", "10.1.2.3")];
    let v4 = sw.addr("v4");
    assert_eq!(answer(v4, "GET", "/", &[]).await, "loopback4");
    assert_eq!(answer(v4, "GET", "/", &forwarded).await, "loopback4");
    if v6 {
        let v6 = sw.addr("v6");
        assert!(v6.is_ipv6(), "{v6}");
        assert_eq!(answer(v6, "GET", "/", &[]).await, "loopback6");
        assert_eq!(answer(v6, "GET", "/", &forwarded).await, "loopback6");
    }
}

#[tokio::test]
async fn fixed_response_sends_status_content_type_and_body() {
    let sw = Seawall::start(&format!(
        r#"{RUNTIME}
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ fixed_response = {{ status = 503, content_type = "application/json", body = '{{"down":true}}' }} }}

  [[listeners.rules]]
  priority = 1
  match = {{ path = ["/plain"] }}
  action = {{ fixed_response = {{ status = 404, body = "nothing here" }} }}

  [[listeners.rules]]
  priority = 2
  match = {{ path = ["/empty"] }}
  action = {{ fixed_response = {{ status = 204 }} }}
"#
    ));
    let addr = sw.addr("web");
    let got = get(addr, false, "x.test", "/").await;
    assert_eq!(got.status, 503);
    assert_eq!(got.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(got.text(), r#"{"down":true}"#);

    let got = get(addr, false, "x.test", "/plain").await;
    assert_eq!(got.status, 404);
    assert_eq!(
        got.headers[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_eq!(got.text(), "nothing here");

    let got = get(addr, false, "x.test", "/empty").await;
    assert_eq!(got.status, 204);
    assert!(got.body.is_empty());
}

#[tokio::test]
async fn redirects_fill_placeholders_and_leave_out_default_ports() {
    let sw = Seawall::start(&format!(
        r##"{RUNTIME}
[[listeners]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ redirect = {{ protocol = "https", port = "8443" }} }}

  [[listeners.rules]]
  priority = 1
  match = {{ path = ["/std/*"] }}
  action = {{ redirect = {{ protocol = "https", port = "443" }} }}

  [[listeners.rules]]
  priority = 2
  match = {{ path = ["/tmp/*"] }}
  action = {{ redirect = {{ protocol = "https", host = "www.#{{host}}", port = "#{{port}}", path = "/new/#{{path}}", query = "from=#{{port}}&#{{query}}", status = 302 }} }}

  [[listeners.rules]]
  priority = 3
  match = {{ path = ["/plain/*"] }}
  action = {{ redirect = {{ port = "80", path = "/moved/#{{path}}", query = "" }} }}
"##
    ));
    let addr = sw.addr("http");
    let port = addr.port();
    let location = |host: &'static str, path: &'static str| async move {
        let got = get(addr, false, host, path).await;
        let loc = got.headers[header::LOCATION].to_str().unwrap().to_string();
        (got.status.as_u16(), loc)
    };
    // default action: http → https on a non-default port, path and query kept
    assert_eq!(
        location("example.test", "/a/b?x=1&y=2").await,
        (301, "https://example.test:8443/a/b?x=1&y=2".to_string())
    );
    // the port of the Host header is not the host
    assert_eq!(
        location("example.test:8080", "/").await,
        (301, "https://example.test:8443/".to_string())
    );
    // 443 for https is left out; an empty query leaves no `?`
    assert_eq!(
        location("example.test", "/std/p").await,
        (301, "https://example.test/std/p".to_string())
    );
    assert_eq!(
        location("example.test", "/std/p?q=1").await,
        (301, "https://example.test/std/p?q=1".to_string())
    );
    // every placeholder, 302; #{port} is the port the client connected to
    assert_eq!(
        location("Shop.example.test:1234", "/tmp/cart?id=7").await,
        (
            302,
            format!("https://www.Shop.example.test:{port}/new/tmp/cart?from={port}&id=7")
        )
    );
    // #{protocol} stays http; 80 for http is left out; the query can be dropped
    assert_eq!(
        location("example.test", "/plain/x?drop=1").await,
        (301, "http://example.test/moved/plain/x".to_string())
    );
    assert_eq!(
        sw.metric("seawall_requests_total{code=\"301\",listener=\"http\",target_group=\"\"}"),
        5.0
    );
}

#[tokio::test]
async fn round_robin_alternates_between_targets() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .raw(RUNTIME)
            .listener(Listener::http("web").forward("app"))
            .target_group(group("app", &[a.addr, b.addr]))
            .build(),
    );
    sw.wait_healthy("app").await;
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(who(sw.addr("web"), "x.test", "/").await);
    }
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "targets must alternate: {seen:?}"
    );
    assert_eq!(seen.iter().filter(|s| *s == "a").count(), 5, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "b").count(), 5, "{seen:?}");
    assert_eq!((a.hits(), b.hits()), (5, 5));
}

/// An http listener `http` and an https listener `https`, both forwarding to `backend`.
fn both_listeners(backend: SocketAddr) -> String {
    ConfigBuilder::new()
        .raw(RUNTIME)
        .self_signed("default", &["app.example.test"])
        .listener(Listener::http("http").forward("app"))
        .listener(Listener::https("https", &["default"]).forward("app"))
        .target_group(group("app", &[backend]))
        .build()
}

fn assert_trace_id_shape(id: &str) {
    let rest = id.strip_prefix("Root=1-").unwrap_or_else(|| panic!("{id}"));
    let parts: Vec<&str> = rest.split('-').collect();
    assert_eq!(parts.len(), 2, "{id}");
    assert_eq!(parts[0].len(), 8, "{id}");
    assert_eq!(parts[1].len(), 24, "{id}");
    assert!(
        parts.iter().all(|p| p
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))),
        "{id}"
    );
}

#[tokio::test]
async fn forwarded_headers_over_http_and_https() {
    let b = Backend::start("b").await;
    let sw = Seawall::start(&both_listeners(b.addr));
    let (http, https) = (sw.addr("http"), sw.addr("https"));

    // plain HTTP, with a client-sent X-Forwarded-For to append to, and a forged protocol and
    // port that seawall's own replace
    let req = Request::get("/fwd")
        .header("host", "app.example.test:8080")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-port", "1")
        .body(empty())
        .unwrap();
    let got = send(http, req).await;
    assert_eq!(got.status, 200, "{}", got.text());
    for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-port"] {
        let lines = got.json()["headers"][name].as_array().unwrap().len();
        assert_eq!(lines, 1, "{name}: {}", got.text());
    }
    assert_eq!(
        got.seen_header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(
        got.seen_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        got.seen_header("x-forwarded-port"),
        Some(http.port().to_string())
    );
    assert_eq!(
        got.seen_header("host").as_deref(),
        Some("app.example.test:8080")
    );
    let first_trace = got
        .seen_header("x-amzn-trace-id")
        .expect("a trace id is added");
    assert_trace_id_shape(&first_trace);
    assert_eq!(
        got.json()["headers"]["x-amzn-trace-id"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // HTTPS: the listener's protocol and port; no client XFF, so the list is the client alone
    let got = get(https, true, "app.example.test", "/fwd").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        got.seen_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        got.seen_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        got.seen_header("x-forwarded-port"),
        Some(https.port().to_string())
    );
    assert_eq!(got.seen_header("host").as_deref(), Some("app.example.test"));
    let second_trace = got.seen_header("x-amzn-trace-id").unwrap();
    assert_trace_id_shape(&second_trace);
    assert_ne!(
        first_trace, second_trace,
        "each request gets its own trace id"
    );
}

#[tokio::test]
async fn a_client_trace_id_is_kept_unchanged() {
    let b = Backend::start("b").await;
    let sw = Seawall::start(&both_listeners(b.addr));
    let id = "Root=1-67891233-abcdef012345678912345678;Self=1-67891233-12456789abcdef012345678";
    let req = Request::get("/")
        .header("host", "app.example.test")
        .header("x-amzn-trace-id", id)
        .body(empty())
        .unwrap();
    let got = send(sw.addr("http"), req).await;
    assert_eq!(
        got.json()["headers"]["x-amzn-trace-id"],
        serde_json::json!([id])
    );
}

#[tokio::test]
async fn several_x_forwarded_for_lines_are_kept_and_appended_to() {
    let b = Backend::start("b").await;
    let sw = Seawall::start(&both_listeners(b.addr));
    let req = Request::get("/")
        .header("host", "app.example.test")
        .header("x-forwarded-for", "198.51.100.1")
        .header("x-forwarded-for", "198.51.100.2, 198.51.100.3")
        .body(empty())
        .unwrap();
    let got = send(sw.addr("http"), req).await;
    assert_eq!(
        got.json()["headers"]["x-forwarded-for"],
        serde_json::json!(["198.51.100.1, 198.51.100.2, 198.51.100.3, 127.0.0.1"])
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let b = Backend::start("b").await;
    let sw = Seawall::start(&both_listeners(b.addr));
    let req = Request::get("/")
        .header("host", "app.example.test")
        .header("connection", "x-foo, keep-alive")
        .header("x-foo", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-kept", "yes")
        .body(empty())
        .unwrap();
    let got = send(sw.addr("http"), req).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let headers = got.json()["headers"].clone();
    for name in ["x-foo", "keep-alive", "te", "proxy-authorization"] {
        assert!(
            headers.get(name).is_none(),
            "{name} was forwarded: {headers}"
        );
    }
    if let Some(conn) = got.seen_header("connection") {
        assert!(!conn.contains("x-foo"), "Connection forwarded: {conn}");
    }
    assert_eq!(got.seen_header("x-kept").as_deref(), Some("yes"));
}

// Multi-thread: the HTTP/2 client connection must keep running (answering the drain's GOAWAY)
// while the test thread blocks in dropping seawall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_route_by_authority_and_reach_targets_with_its_host() {
    let (api, web) = (Backend::start("api").await, Backend::start("web").await);
    let sw = Seawall::start(&format!(
        r#"{RUNTIME}
[[certificates]]
name = "default"
self_signed = ["*.example.test"]

[[listeners]]
name = "https"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["default"]
default_action = {{ forward = "web" }}

  [[listeners.rules]]
  priority = 1
  match = {{ host = ["api.example.test"] }}
  action = {{ forward = "api" }}

{}
{}"#,
        group("api", &[api.addr]),
        group("web", &[web.addr]),
    ));
    let tls = tls_connect(sw.addr("https"), &Tls::new("api.example.test").h2())
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut c = h2(tls).await;
    // One HTTP/2 connection, several authorities: each request routes on its own.
    for (uri, want_id, want_host) in [
        ("https://api.example.test/a?x=1", "api", "api.example.test"),
        (
            "https://API.example.test:8443/b",
            "api",
            "API.example.test:8443",
        ),
        ("https://www.example.test/c", "web", "www.example.test"),
    ] {
        let resp = c
            .send_request(Request::get(uri).body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        let got = read(resp).await;
        assert_eq!(got.status, 200, "{uri}: {}", got.text());
        assert_eq!(got.json()["id"], want_id, "{uri}");
        assert_eq!(got.seen_header("host").as_deref(), Some(want_host), "{uri}");
        assert_eq!(got.json()["headers"]["host"].as_array().unwrap().len(), 1);
        let path = got.json()["path"].as_str().unwrap().to_string();
        assert!(path.starts_with('/'), "origin-form path expected: {path}");
    }
}

#[tokio::test]
async fn requests_are_counted_by_listener_target_group_and_code() {
    let (api, web) = (Backend::start("api").await, Backend::start("web").await);
    let sw = Seawall::start(&format!(
        r#"{RUNTIME}
[[listeners]]
name = "front"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ forward = "web" }}

  [[listeners.rules]]
  priority = 1
  match = {{ path = ["/api/*"] }}
  action = {{ forward = "api" }}

  [[listeners.rules]]
  priority = 2
  match = {{ path = ["/gone"] }}
  action = {{ fixed_response = {{ status = 410 }} }}

{}
{}"#,
        group("api", &[api.addr]),
        group("web", &[web.addr]),
    ));
    let addr = sw.addr("front");
    for _ in 0..3 {
        assert_eq!(who(addr, "x.test", "/api/x").await, "api");
    }
    for _ in 0..2 {
        assert_eq!(who(addr, "x.test", "/").await, "web");
    }
    assert_eq!(get(addr, false, "x.test", "/gone").await.status, 410);
    let m = |tg: &str, code: &str| {
        sw.metric(&format!(
            "seawall_requests_total{{code=\"{code}\",listener=\"front\",target_group=\"{tg}\"}}"
        ))
    };
    assert_eq!(m("api", "200"), 3.0);
    assert_eq!(m("web", "200"), 2.0);
    assert_eq!(m("", "410"), 1.0);
    assert_eq!(m("api", "410"), 0.0);
}
