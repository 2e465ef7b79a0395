//! Every rule of [`validate`], on files written out in full so that the lines asserted can be
//! counted in the text. Each test gives the parse a file it accepts, so what fails is the rule.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::{ConfigError, Environment, Source};

/// An HTTP listener forwarding to `app`, to follow a file's target groups.
const FORWARD_TO_APP: &str = r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { forward = "app" }
"#;

/// An HTTP listener with a fixed response, for files about something else.
const ANSWER: &str = r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { fixed_response = { status = 200 } }
"#;

fn env() -> Environment {
    Environment::new("/opt/seawall/bin/seawall")
}

fn validate_in(text: &str, env: &Environment) -> Result<Config, Vec<ConfigError>> {
    let src = Source::new("test.toml", "/etc/seawall", text.to_string());
    let raw = src
        .parse()
        .unwrap_or_else(|e| panic!("the parse fails:\n{e}"));
    validate(&src, raw, env).map_err(|e| e.0)
}

fn valid(text: &str) -> Config {
    validate_in(text, &env()).unwrap_or_else(|e| panic!("{}", ConfigErrors(e)))
}

/// Every error of `text`, as `(line, key path, reason)`, in the order reported.
fn errors_in(text: &str, env: &Environment) -> Vec<(Option<usize>, String, String)> {
    match validate_in(text, env) {
        Ok(_) => panic!("no error in:\n{text}"),
        Err(errs) => errs
            .into_iter()
            .map(|e| (e.line, e.path, e.reason))
            .collect(),
    }
}

fn errors(text: &str) -> Vec<(Option<usize>, String, String)> {
    errors_in(text, &env())
}

/// Asserts that `text` has exactly one error, at `line` and `path`, and that its reason contains
/// `reason`.
#[track_caller]
fn fails(text: &str, line: usize, path: &str, reason: &str) {
    fails_in(text, &env(), line, path, reason)
}

#[track_caller]
fn fails_in(text: &str, env: &Environment, line: usize, path: &str, reason: &str) {
    let errs = errors_in(text, env);
    assert_eq!(errs.len(), 1, "one error expected: {errs:#?}");
    let (got_line, got_path, got_reason) = &errs[0];
    assert_eq!(
        (*got_line, got_path.as_str()),
        (Some(line), path),
        "{got_reason}"
    );
    assert!(
        got_reason.contains(reason),
        "{got_reason:?} does not say {reason:?}"
    );
}

/// A file with one target group `app`, whose further keys (`keys`) start at line 3.
fn group(keys: &str) -> String {
    format!("[[target_groups]]\nname = \"app\"\n{keys}\n{FORWARD_TO_APP}")
}

/// A file whose group `app` has a `[health_check]` with `keys`, starting at line 5.
fn health(keys: &str) -> String {
    health_of("", keys)
}

/// As [`health`], with `group_keys` (one line at most, line 3) on the group.
fn health_of(group_keys: &str, keys: &str) -> String {
    assert!(!group_keys.contains('\n'));
    group(&format!(
        "{group_keys}\n  [target_groups.health_check]\n{keys}"
    ))
}

/// A file whose `[runtime]` has `keys`, from line 2.
fn runtime(keys: &str) -> String {
    format!("[runtime]\n{keys}\n{ANSWER}")
}

/// A file whose one listener `web` (plain HTTP on port 8080) has a rule at line 7 and below:
/// priority (7), match (8), action (9).
fn rule(priority: &str, conditions: &str, action: &str) -> String {
    format!(
        r#"[[listeners]]
name = "web"
bind = "127.0.0.1:8080"
protocol = "http"
default_action = {{ fixed_response = {{ status = 404 }} }}
  [[listeners.rules]]
  priority = {priority}
  match = {conditions}
  action = {action}
"#
    )
}

/// A file whose listener `web` has `default_action` (line 5) and one target group `app`.
fn default_action(action: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\n\
         default_action = {action}\n\n[[target_groups]]\nname = \"app\"\n"
    )
}

// ---------------------------------------------------------------------------------------------
// What a valid file becomes

#[test]
fn a_valid_file_becomes_typed_values_with_the_documented_defaults() {
    let cfg = valid(
        r#"[[certificates]]
name = "site"
cert = "certs/site.pem"
key = "/abs/site-key.pem"

[[listeners]]
name = "tls"
bind = "127.0.0.1:8443"
protocol = "https"
certificates = ["site"]
default_action = { fixed_response = { status = 503 } }
  [[listeners.rules]]
  priority = 20
  match = { path = ["/b/*"] }
  action = { forward = "app" }
  [[listeners.rules]]
  priority = 10
  match = { host = ["A.example.test"] }
  action = { redirect = { host = "b.example.test" } }

[[target_groups]]
name = "app"
targets = ["10.0.0.1:80", "[::1]:81"]
"#,
    );
    let rt = &cfg.runtime;
    assert_eq!(rt.workers, 0);
    assert_eq!(rt.idle_timeout, Duration::from_secs(60));
    assert_eq!(rt.header_timeout, Duration::from_secs(10));
    assert_eq!(rt.handshake_timeout, Duration::from_secs(10));
    assert_eq!(rt.drain_timeout, Duration::from_secs(30));
    assert_eq!((rt.max_header_bytes, rt.max_connections), (65536, 100_000));
    // ALB's per-connection stream limit.
    assert_eq!(
        (
            rt.http2_max_concurrent_streams,
            rt.http2_max_resets_per_second
        ),
        (128, 100)
    );
    assert_eq!(rt.log_format, crate::logging::LogFormat::Text);
    // The running binary comes from the environment, not from the process running the test.
    assert_eq!(rt.binary, Path::new("/opt/seawall/bin/seawall"));

    // Relative certificate paths are resolved against the file's folder.
    match &cfg.certificates[0].source {
        CertificateSource::Files { cert, key } => {
            assert_eq!(cert, Path::new("/etc/seawall/certs/site.pem"));
            assert_eq!(key, Path::new("/abs/site-key.pem"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cfg.certificates[0].key_path, "certificates[0]");

    let l = &cfg.listeners[0];
    assert_eq!(
        (l.protocol, l.certificates.as_slice()),
        (Protocol::Https, &[0][..])
    );
    assert_eq!(l.tls_policy, tls::Policy::Tls13And12);
    assert_eq!(l.alpn, [tls::Alpn::Http2, tls::Alpn::Http11]);
    assert!(!l.proxy_protocol);
    let priorities: Vec<u32> = l.rules.iter().map(|r| r.priority).collect();
    assert_eq!(priorities, [10, 20], "rules are sorted by priority");
    assert!(matches!(&l.rules[1].action, ActionConfig::Forward(f) if *f == ForwardConfig::to(0)));

    let tg = &cfg.target_groups[0];
    assert_eq!(
        (tg.protocol, tg.protocol_version, tg.algorithm),
        (
            Protocol::Http,
            ProtocolVersion::Http1,
            Algorithm::RoundRobin
        )
    );
    assert_eq!(tg.targets.len(), 2);
    assert_eq!(tg.deregistration_delay, Duration::from_secs(300));
    assert_eq!(tg.slow_start, Duration::ZERO);
    assert_eq!(tg.connect_timeout, Duration::from_secs(10));
    assert_eq!(
        tg.response_timeout, rt.idle_timeout,
        "defaults to idle_timeout"
    );
    let hc = &tg.health_check;
    assert_eq!(
        (hc.path.as_str(), hc.port, hc.protocol),
        ("/", None, Protocol::Http)
    );
    assert_eq!(
        (hc.interval, hc.timeout),
        (Duration::from_secs(30), Duration::from_secs(5))
    );
    assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (5, 2));
    assert!(hc.matcher.matches(200) && !hc.matcher.matches(204));
}

#[test]
fn words_are_parsed_into_their_types() {
    let cfg = valid(
        r#"[[certificates]]
name = "gen"
self_signed = ["localhost"]

[[listeners]]
name = "tls"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["gen"]
tls_policy = "tls13-only"
alpn = ["http/1.1"]
proxy_protocol = true
default_action = { forward = "app" }

[[target_groups]]
name = "app"
protocol = "https"
protocol_version = "http2"
algorithm = "least_outstanding_requests"
"#,
    );
    let l = &cfg.listeners[0];
    assert_eq!(l.tls_policy, tls::Policy::Tls13Only);
    assert_eq!(l.alpn, [tls::Alpn::Http11]);
    assert!(l.proxy_protocol);
    let tg = &cfg.target_groups[0];
    assert_eq!(tg.protocol, Protocol::Https);
    assert_eq!(tg.protocol_version, ProtocolVersion::Http2);
    assert_eq!(tg.algorithm, Algorithm::LeastOutstandingRequests);
    // The health check follows the group's protocol unless it says otherwise.
    assert_eq!(tg.health_check.protocol, Protocol::Https);
}

#[test]
fn unknown_words_name_the_choices() {
    fails(
        &group(r#"protocol = "ftp""#),
        3,
        "target_groups[0].protocol",
        r#"unknown protocol "ftp"; expected "http" or "https""#,
    );
    fails(
        &group(r#"protocol_version = "http3""#),
        3,
        "target_groups[0].protocol_version",
        r#"unknown protocol version "http3""#,
    );
    fails(
        &group(r#"algorithm = "random""#),
        3,
        "target_groups[0].algorithm",
        "unknown algorithm \"random\"",
    );
    let listener = |keys: &str| {
        format!(
            "[[certificates]]\nname = \"c\"\nself_signed = [\"a\"]\n\n[[listeners]]\nname = \"w\"\n\
             bind = \"127.0.0.1:0\"\ncertificates = [\"c\"]\n{keys}\n\
             default_action = {{ fixed_response = {{ status = 200 }} }}\n"
        )
    };
    fails(
        &listener("protocol = \"tcp\""),
        9,
        "listeners[0].protocol",
        r#"unknown protocol "tcp""#,
    );
    fails(
        &listener("protocol = \"https\"\ntls_policy = \"tls10\""),
        10,
        "listeners[0].tls_policy",
        r#"unknown TLS policy "tls10"; expected "tls13-1-2" or "tls13-only""#,
    );
    fails(
        &listener("protocol = \"https\"\nalpn = [\"h2\", \"h3\"]"),
        10,
        "listeners[0].alpn[1]",
        r#"unknown ALPN protocol "h3"; expected "h2" or "http/1.1""#,
    );
}

// ---------------------------------------------------------------------------------------------
// Names and references

#[test]
fn duplicate_names() {
    fails(
        &format!(
            "[[certificates]]\nname = \"c\"\nself_signed = [\"a\"]\n\n\
             [[certificates]]\nname = \"c\"\nself_signed = [\"b\"]\n{ANSWER}"
        ),
        6,
        "certificates[1].name",
        r#"duplicate certificate name "c""#,
    );
    fails(
        &format!(
            "[[target_groups]]\nname = \"app\"\n\n[[target_groups]]\nname = \"app\"\n{FORWARD_TO_APP}"
        ),
        5,
        "target_groups[1].name",
        r#"duplicate target group name "app""#,
    );
    fails(
        &format!("{ANSWER}{ANSWER}"),
        9,
        "listeners[1].name",
        r#"duplicate listener name "web""#,
    );
}

#[test]
fn a_certificate_is_files_or_self_signed() {
    let reason = "give either `cert` and `key` (PEM files) or `self_signed` (a list of names)";
    for (keys, why) in [
        ("cert = \"a.pem\"", "no key"),
        ("key = \"a-key.pem\"", "no cert"),
        ("self_signed = []", "no names"),
        (
            "cert = \"a.pem\"\nkey = \"k.pem\"\nself_signed = [\"a\"]",
            "both",
        ),
        ("", "neither"),
    ] {
        let errs = errors(&format!("[[certificates]]\nname = \"c\"\n{keys}\n{ANSWER}"));
        assert_eq!(
            errs,
            [(Some(1), "certificates[0]".into(), reason.into())],
            "{why}"
        );
    }
}

#[test]
fn two_listeners_cannot_bind_one_address_but_port_0_can_repeat() {
    let listener = |name: &str, bind: &str| {
        format!(
            "[[listeners]]\nname = \"{name}\"\nbind = \"{bind}\"\nprotocol = \"http\"\n\
             default_action = {{ fixed_response = {{ status = 200 }} }}\n"
        )
    };
    fails(
        &(listener("a", "127.0.0.1:8080") + &listener("b", "127.0.0.1:8080")),
        8,
        "listeners[1].bind",
        "127.0.0.1:8080 is already bound by listeners[0]",
    );
    valid(&(listener("a", "127.0.0.1:0") + &listener("b", "127.0.0.1:0")));
    valid(&(listener("a", "127.0.0.1:8080") + &listener("b", "127.0.0.2:8080")));
}

#[test]
fn addresses_must_be_socket_addresses() {
    fails(
        &ANSWER.replace("127.0.0.1:0", "localhost:80"),
        4,
        "listeners[0].bind",
        r#""localhost:80" is not an address like "127.0.0.1:8080" or "[::1]:8080""#,
    );
    fails(
        &format!("[admin]\nbind = \"9901\"\n{ANSWER}"),
        2,
        "admin.bind",
        r#""9901" is not an address"#,
    );
    fails(
        &group(r#"targets = ["10.0.0.1"]"#),
        3,
        "target_groups[0].targets[0]",
        r#""10.0.0.1" is not an address"#,
    );
}

#[test]
fn at_least_one_listener() {
    let errs = errors("[runtime]\nworkers = 1\n");
    assert_eq!(
        errs,
        [(
            None,
            "listeners".into(),
            "at least one [[listeners]] is needed".into()
        )]
    );
}

#[test]
fn references_name_something_that_exists() {
    fails(
        r#"[[certificates]]
name = "site"
self_signed = ["a"]

[[listeners]]
name = "tls"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["site", "other"]
default_action = { fixed_response = { status = 200 } }
"#,
        9,
        "listeners[0].certificates[1]",
        r#"no [[certificates]] is named "other""#,
    );
    fails(
        &default_action(r#"{ forward = "nowhere" }"#),
        5,
        "listeners[0].default_action.forward",
        r#"no [[target_groups]] is named "nowhere""#,
    );
}

/// What `seawall check` used to be run for in tests/cli.rs (`forward_to_an_unknown_target_group`).
#[test]
fn forward_to_an_unknown_target_group() {
    fails(
        r#"[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { fixed_response = { status = 404 } }

  [[listeners.rules]]
  priority = 1
  match = { host = ["api.example.test"] }
  action = { forward = "api" }

[[target_groups]]
name = "web"
targets = ["127.0.0.1:9201"]
"#,
        10,
        "listeners[0].rules[0].action.forward",
        r#"no [[target_groups]] is named "api""#,
    );
}

// ---------------------------------------------------------------------------------------------
// Listeners: protocol and TLS keys

#[test]
fn an_https_listener_needs_a_certificate() {
    fails(
        &ANSWER.replace("\"http\"", "\"https\""),
        // The key is missing, so the error points at the listener that should hold it.
        2,
        "listeners[0].certificates",
        "an https listener needs at least one certificate",
    );
}

#[test]
fn tls_keys_belong_to_https_listeners_only() {
    let errs = errors(
        r#"[[certificates]]
name = "c"
self_signed = ["a"]

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
certificates = ["c"]
tls_policy = "tls13-only"
alpn = ["h2"]
default_action = { fixed_response = { status = 200 } }
"#,
    );
    let reason = "only an https listener takes this key".to_string();
    assert_eq!(
        errs,
        [
            (Some(9), "listeners[0].certificates".into(), reason.clone()),
            (Some(10), "listeners[0].tls_policy".into(), reason.clone()),
            (Some(11), "listeners[0].alpn".into(), reason),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Rules

#[test]
fn priorities_are_from_1_to_50000() {
    let action = "{ fixed_response = { status = 200 } }";
    for p in ["0", "-1", "50001"] {
        fails(
            &rule(p, r#"{ path = ["/a"] }"#, action),
            7,
            "listeners[0].rules[0].priority",
            &format!("priority {p} is out of range 1..=50000"),
        );
    }
    for p in ["1", "50000"] {
        valid(&rule(p, r#"{ path = ["/a"] }"#, action));
    }
}

/// What `seawall check` used to be run for in tests/cli.rs
/// (`duplicate_rule_priority_points_at_the_second`).
#[test]
fn duplicate_rule_priority_points_at_the_second() {
    fails(
        r#"[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { fixed_response = { status = 404 } }

  [[listeners.rules]]
  priority = 10
  match = { path = ["/a/*"] }
  action = { fixed_response = { status = 200, body = "a" } }

  [[listeners.rules]]
  priority = 10
  match = { path = ["/b/*"] }
  action = { fixed_response = { status = 200, body = "b" } }
"#,
        13,
        "listeners[0].rules[1].priority",
        "duplicate priority 10 (also used by listeners[0].rules[0])",
    );
}

#[test]
fn a_rule_needs_a_condition() {
    fails(
        &rule("1", "{}", "{ fixed_response = { status = 200 } }"),
        8,
        "listeners[0].rules[0].match",
        "a rule needs at least one condition (host, path, header, method, query or source_ip); use default_action to match everything",
    );
}

#[test]
fn condition_lists_are_not_empty() {
    let action = "{ fixed_response = { status = 200 } }";
    fails(
        &rule("1", "{ host = [] }", action),
        8,
        "listeners[0].rules[0].match.host",
        "give at least one value",
    );
    fails(
        &rule("1", r#"{ host = ["a.test"], path = [] }"#, action),
        8,
        "listeners[0].rules[0].match.path",
        "give at least one value",
    );
}

#[test]
fn bad_wildcards_are_named_by_index() {
    let action = "{ fixed_response = { status = 200 } }";
    fails(
        &rule("1", r#"{ host = ["a.test", "a b.test"] }"#, action),
        8,
        "listeners[0].rules[0].match.host[1]",
        r#""a b.test": pattern contains a control character or a space"#,
    );
    fails(
        &rule("1", r#"{ path = [""] }"#, action),
        8,
        "listeners[0].rules[0].match.path[0]",
        r#""": pattern is empty"#,
    );
    let long = format!("/{}", "a".repeat(128));
    fails(
        &rule("1", &format!(r#"{{ path = ["{long}"] }}"#), action),
        8,
        "listeners[0].rules[0].match.path[0]",
        "pattern is longer than 128 characters",
    );
}

#[test]
fn every_condition_kind_is_compiled() {
    let cfg = valid(&rule(
        "1",
        r#"{ host = ["a.test"], method = ["GET"], header = { "X-Canary" = ["1"] }, query = { v = ["2"] } }"#,
        "{ fixed_response = { status = 200 } }",
    ));
    let c = &cfg.listeners[0].rules[0].conditions;
    assert_eq!(c.host.len(), 1);
    assert_eq!(&*c.method, [http::Method::GET]);
    // Header names are case-insensitive: kept in HTTP's lower case.
    assert_eq!(c.headers[0].name.as_str(), "x-canary");
    assert_eq!(c.query.len(), 1);
    let cfg = valid(&rule(
        "1",
        r#"{ source_ip = ["10.0.0.0/8", "fd00::/8", "192.0.2.7/32"], query = { "" = ["debug"] } }"#,
        "{ fixed_response = { status = 200 } }",
    ));
    let c = &cfg.listeners[0].rules[0].conditions;
    assert_eq!(c.source_ip.len(), 3);
    assert!(
        c.query[0].key.is_none(),
        "the empty key is the key-less entry"
    );
}

#[test]
fn a_rule_has_at_most_5_wildcards() {
    let action = "{ fixed_response = { status = 200 } }";
    fails(
        &rule(
            "1",
            r#"{ host = ["*.a.test", "?.b.test"], path = ["/*/x/*"], query = { "k*" = ["v?"] } }"#,
            action,
        ),
        8,
        "listeners[0].rules[0].match",
        "6 wildcards (* and ?); a rule has at most 5 (ALB's quota)",
    );
    // Escaped ones are literal characters, not wildcards.
    valid(&rule(
        "1",
        r#"{ host = ["*.a.test", "?.b.test"], path = ["/*/x/*"], query = { 'k\*' = ['v\?'] } }"#,
        action,
    ));
}

#[test]
fn a_condition_has_at_most_3_values_and_a_rule_5() {
    let action = "{ fixed_response = { status = 200 } }";
    fails(
        &rule("1", r#"{ path = ["/a", "/b", "/c", "/d"] }"#, action),
        8,
        "listeners[0].rules[0].match.path",
        "4 values; a condition has at most 3 (ALB's quota)",
    );
    fails(
        &rule(
            "1",
            r#"{ header = { x-a = ["1"], x-b = ["1", "2", "3", "4"] } }"#,
            action,
        ),
        8,
        "listeners[0].rules[0].match.header.x-b",
        "4 values; a condition has at most 3",
    );
    // The query table's pairs are the values of one condition.
    fails(
        &rule(
            "1",
            r#"{ query = { a = ["1", "2"], b = ["1"], "" = ["x"] } }"#,
            action,
        ),
        8,
        "listeners[0].rules[0].match.query",
        "4 values; a condition has at most 3",
    );
    fails(
        &rule(
            "1",
            r#"{ host = ["a.test", "b.test"], path = ["/a", "/b"], method = ["GET", "HEAD"] }"#,
            action,
        ),
        8,
        "listeners[0].rules[0].match",
        "6 condition values; a rule has at most 5 (ALB's quota)",
    );
    valid(&rule(
        "1",
        r#"{ host = ["a.test", "b.test"], path = ["/a", "/b"], method = ["GET"] }"#,
        action,
    ));
}

#[test]
fn a_source_ip_is_a_cidr_block_without_host_bits() {
    let action = "{ fixed_response = { status = 200 } }";
    fails(
        &rule("1", r#"{ source_ip = ["10.0.0.1"] }"#, action),
        8,
        "listeners[0].rules[0].match.source_ip[0]",
        r#""10.0.0.1" is not a CIDR block like "10.0.0.0/8" or "fd00::/8""#,
    );
    fails(
        &rule("1", r#"{ source_ip = ["10.0.0.0/33"] }"#, action),
        8,
        "listeners[0].rules[0].match.source_ip[0]",
        "is not a CIDR block",
    );
    fails(
        &rule(
            "1",
            r#"{ source_ip = ["10.0.0.0/8", "10.1.2.3/8"] }"#,
            action,
        ),
        8,
        "listeners[0].rules[0].match.source_ip[1]",
        r#""10.1.2.3/8" has host bits set; the network is 10.0.0.0/8 (or write /32 for the one address)"#,
    );
    fails(
        &rule("1", r#"{ source_ip = ["fd00::1/8"] }"#, action),
        8,
        "listeners[0].rules[0].match.source_ip[0]",
        "the network is fd00::/8 (or write /128",
    );
}

#[test]
fn a_value_is_at_most_128_characters() {
    let action = "{ fixed_response = { status = 200 } }";
    let long = "a".repeat(129);
    fails(
        &rule(
            "1",
            &format!(r#"{{ header = {{ x-a = ["{long}"] }} }}"#),
            action,
        ),
        8,
        "listeners[0].rules[0].match.header.x-a[0]",
        "pattern is longer than 128 characters",
    );
    fails(
        &rule(
            "1",
            &format!(r#"{{ query = {{ k = ["{long}"] }} }}"#),
            action,
        ),
        8,
        "listeners[0].rules[0].match.query.k[0]",
        "pattern is longer than 128 characters",
    );
    fails(
        &rule(
            "1",
            &format!(r#"{{ query = {{ {long} = ["v"] }} }}"#),
            action,
        ),
        8,
        &format!("listeners[0].rules[0].match.query.{long}"),
        "pattern is longer than 128 characters",
    );
    valid(&rule(
        "1",
        &format!(r#"{{ query = {{ k = ["{}"] }} }}"#, "a".repeat(128)),
        action,
    ));
}

#[test]
fn methods_are_alb_tokens() {
    let action = "{ fixed_response = { status = 200 } }";
    for bad in ["get", "GET POST", "", "GÉT", &"A".repeat(41), "GET/1"] {
        fails(
            &rule("1", &format!(r#"{{ method = ["{bad}"] }}"#), action),
            8,
            "listeners[0].rules[0].match.method[0]",
            r#"a method is A-Z, "_" and "-", at most 40 characters"#,
        );
    }
    valid(&rule(
        "1",
        &format!(
            r#"{{ method = ["GET", "CUSTOM_VERB-2", "{}"] }}"#,
            "A".repeat(40)
        )
        .replace("-2", "-"),
        action,
    ));
}

#[test]
fn header_names_are_tokens_without_wildcards() {
    let action = "{ fixed_response = { status = 200 } }";
    for bad in ["x a", "x-*", "x?", ""] {
        fails(
            &rule(
                "1",
                &format!(r#"{{ header = {{ "{bad}" = ["1"] }} }}"#),
                action,
            ),
            8,
            &format!("listeners[0].rules[0].match.header.{bad}"),
            "is not a header name",
        );
    }
    fails(
        &rule("1", "{ header = {} }", action),
        8,
        "listeners[0].rules[0].match.header",
        "give at least one header",
    );
}

#[test]
fn a_listener_has_at_most_100_rules_unless_raised() {
    let many = |n: u32| {
        let mut text = String::from(ANSWER);
        for p in 1..=n {
            text.push_str(&format!(
                "\n  [[listeners.rules]]\n  priority = {p}\n  match = {{ path = [\"/{p}\"] }}\n  action = {{ fixed_response = {{ status = 200 }} }}\n"
            ));
        }
        text
    };
    valid(&many(100));
    fails(
        &many(101),
        8,
        "listeners[0].rules",
        "101 rules; a listener has at most 100 (ALB's quota; raise it with runtime.max_rules_per_listener)",
    );
    let cfg = valid(&format!(
        "[runtime]\nmax_rules_per_listener = 200\n{}",
        many(101)
    ));
    assert_eq!(cfg.runtime.max_rules_per_listener, 200);
    assert_eq!(cfg.listeners[0].rules.len(), 101);
    fails(
        &runtime("max_rules_per_listener = 0"),
        2,
        "runtime.max_rules_per_listener",
        "must be between 1 and 50000",
    );
}

#[test]
fn a_listener_body_limit_is_a_positive_byte_count_or_none() {
    assert_eq!(valid(ANSWER).listeners[0].max_body_bytes, None);
    let limited = format!("{ANSWER}max_body_bytes = 1048576\n");
    assert_eq!(valid(&limited).listeners[0].max_body_bytes, Some(1 << 20));
    fails(
        &format!("{ANSWER}max_body_bytes = 0\n"),
        7,
        "listeners[0].max_body_bytes",
        "must be at least 1 (leave it out for no limit)",
    );
}

// ---------------------------------------------------------------------------------------------
// Actions

#[test]
fn an_action_is_exactly_one_kind() {
    let reason = "an action is exactly one of `forward`, `fixed_response` or `redirect`";
    fails(
        &default_action("{}"),
        5,
        "listeners[0].default_action",
        reason,
    );
    fails(
        &default_action(r#"{ forward = "app", fixed_response = { status = 200 } }"#),
        5,
        "listeners[0].default_action",
        reason,
    );
    fails(
        &rule(
            "1",
            r#"{ path = ["/"] }"#,
            r#"{ forward = "app", redirect = {} }"#,
        ),
        9,
        "listeners[0].rules[0].action",
        reason,
    );
}

#[test]
fn fixed_response_status_and_content_type() {
    for status in [100, 302, 600, 999] {
        fails(
            &default_action(&format!("{{ fixed_response = {{ status = {status} }} }}")),
            5,
            "listeners[0].default_action.fixed_response.status",
            &format!("status {status} is not a 2XX, 4XX or 5XX code"),
        );
    }
    fails(
        &default_action(
            r#"{ fixed_response = { status = 200, content_type = "text/plain\u0007" } }"#,
        ),
        5,
        "listeners[0].default_action.fixed_response.content_type",
        "is not one of ALB's content types: text/plain, text/css, text/html, application/javascript, application/json",
    );
    fails(
        &default_action(r#"{ fixed_response = { status = 200, content_type = "image/png" } }"#),
        5,
        "listeners[0].default_action.fixed_response.content_type",
        "\"image/png\" is not one of ALB's content types",
    );
    fails(
        &default_action(
            r#"{ fixed_response = { status = 200, content_type = "text/html; charset=latin1" } }"#,
        ),
        5,
        "listeners[0].default_action.fixed_response.content_type",
        "is not one of ALB's content types",
    );
    for ok in ["text/css", "Application/JSON", "text/html; charset=utf-8"] {
        valid(&default_action(&format!(
            "{{ fixed_response = {{ status = 200, content_type = {ok:?} }} }}"
        )));
    }
    // ALB's body limit is 1024 bytes.
    let body = |n: usize| {
        default_action(&format!(
            "{{ fixed_response = {{ status = 200, body = \"{}\" }} }}",
            "x".repeat(n)
        ))
    };
    valid(&body(1024));
    fails(
        &body(1025),
        5,
        "listeners[0].default_action.fixed_response.body",
        "the body is 1025 bytes; ALB's limit is 1024",
    );
    let cfg = valid(&default_action("{ fixed_response = { status = 503 } }"));
    match &cfg.listeners[0].default_action {
        ActionConfig::FixedResponse {
            status,
            content_type,
            body,
        } => {
            assert_eq!(status.as_u16(), 503);
            assert_eq!(content_type, "text/plain; charset=utf-8");
            assert!(body.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_redirect_to_the_url_it_came_from_is_refused() {
    let loop_reason = "sends every request to the URL it came from";
    // The listener's protocol, spelled out or left to its placeholder.
    for redirect in [
        r##"{ protocol = "#{protocol}", status = 302 }"##,
        r#"{ protocol = "http" }"#,
        // The listener's own port (8080), written out.
        r#"{ port = "8080" }"#,
    ] {
        fails(
            &default_action(&format!("{{ redirect = {redirect} }}")),
            5,
            // The loop is the redirect's as a whole, not one field's.
            "listeners[0].default_action.redirect",
            loop_reason,
        );
    }
    // Anything that changes the URL is no loop.
    for redirect in [
        r#"{ protocol = "https" }"#,
        r#"{ port = "8443" }"#,
        r#"{ host = "www.#{host}" }"#,
        r#"{ path = "/new/#{path}" }"#,
    ] {
        valid(&default_action(&format!("{{ redirect = {redirect} }}")));
    }
    // On port 0 the port is unknown until bound, so a port written out cannot be called a loop.
    valid(
        &default_action(r#"{ redirect = { port = "8080" } }"#)
            .replace("127.0.0.1:8080", "127.0.0.1:0"),
    );
}

/// What `seawall check` used to be run for in tests/cli.rs (`redirect_to_itself`).
#[test]
fn redirect_to_itself() {
    fails(
        r##"[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { fixed_response = { status = 404 } }

  [[listeners.rules]]
  priority = 5
  match = { path = ["/old/*"] }
  action = { redirect = { protocol = "#{protocol}", status = 302 } }
"##,
        10,
        "listeners[0].rules[0].action.redirect",
        "this redirect sends every request to the URL it came from",
    );
}

#[test]
fn a_bad_redirect_field_is_named() {
    for (field, value, reason) in [
        (
            "protocol",
            r#""ftp""#,
            r##"protocol must be "http", "https" or "#{protocol}", not "ftp""##,
        ),
        ("port", r#""0""#, "port must be a number from 1 to 65535"),
        ("port", r#""http""#, "port must be a number from 1 to 65535"),
        (
            "path",
            r#""no-slash""#,
            r#"path must start with "/", not "no-slash""#,
        ),
        ("host", r#""""#, "host is empty"),
        ("query", r##""a=#{nope}""##, "unknown placeholder"),
        ("status", "307", "status must be 301 or 302, not 307"),
    ] {
        fails(
            &rule(
                "1",
                r#"{ path = ["/"] }"#,
                &format!("{{ redirect = {{ {field} = {value} }} }}"),
            ),
            9,
            &format!("listeners[0].rules[0].action.redirect.{field}"),
            reason,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// [runtime]

#[test]
fn runtime_timeouts_are_not_zero() {
    for key in ["idle_timeout", "header_timeout", "handshake_timeout"] {
        fails(
            &runtime(&format!("{key} = \"0s\"")),
            2,
            &format!("runtime.{key}"),
            "must be greater than zero",
        );
    }
}

#[test]
fn runtime_bounds() {
    fails(
        &runtime("workers = 1025"),
        2,
        "runtime.workers",
        "at most 1024 workers",
    );
    valid(&runtime("workers = 1024"));
    for bytes in [8191, 1048577] {
        fails(
            &runtime(&format!("max_header_bytes = {bytes}")),
            2,
            "runtime.max_header_bytes",
            "must be between 8192 and 1048576",
        );
    }
    valid(&runtime("max_header_bytes = 8192"));
    valid(&runtime("max_header_bytes = 1048576"));
    for n in ["0", "100000001"] {
        fails(
            &runtime(&format!("max_connections = {n}")),
            2,
            "runtime.max_connections",
            "must be between 1 and 100000000",
        );
    }
    valid(&runtime("max_connections = 100000000"));
    for n in ["0", "10001"] {
        fails(
            &runtime(&format!("http2_max_concurrent_streams = {n}")),
            2,
            "runtime.http2_max_concurrent_streams",
            "must be between 1 and 10000",
        );
    }
    valid(&runtime("http2_max_concurrent_streams = 1"));
    valid(&runtime("http2_max_concurrent_streams = 10000"));
    for n in ["0", "1000001"] {
        fails(
            &runtime(&format!("http2_max_resets_per_second = {n}")),
            2,
            "runtime.http2_max_resets_per_second",
            "must be between 1 and 1000000",
        );
    }
    valid(&runtime("http2_max_resets_per_second = 1"));
    valid(&runtime("http2_max_resets_per_second = 1000000"));
}

/// What `seawall check` used to be run for in tests/cli.rs (`max_connections_out_of_range`): a
/// limit past what a semaphore can count is refused with its line, not a panic at start.
#[test]
fn max_connections_out_of_range() {
    fails(
        r#"[runtime]
max_connections = 9223372036854775807

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { fixed_response = { status = 200 } }
"#,
        2,
        "runtime.max_connections",
        "must be between 1 and 100000000",
    );
}

#[test]
fn runtime_binary_is_resolved_against_the_file_or_comes_from_the_environment() {
    let cfg = valid(&runtime(r#"binary = "bin/seawall-next""#));
    assert_eq!(
        cfg.runtime.binary,
        Path::new("/etc/seawall/bin/seawall-next")
    );
    let cfg = validate_in(ANSWER, &Environment::new("/somewhere/else")).unwrap();
    assert_eq!(cfg.runtime.binary, Path::new("/somewhere/else"));
}

#[test]
fn runtime_log_format_is_text_or_json() {
    use crate::logging::LogFormat;
    assert_eq!(valid(ANSWER).runtime.log_format, LogFormat::Text);
    assert_eq!(
        valid(&runtime(r#"log_format = "json""#)).runtime.log_format,
        LogFormat::Json
    );
    assert_eq!(
        valid(&runtime(r#"log_format = "text""#)).runtime.log_format,
        LogFormat::Text
    );
    fails(
        &runtime(r#"log_format = "xml""#),
        2,
        "runtime.log_format",
        r#"unknown log format "xml"; expected "text" or "json""#,
    );
    // Words are exact, as every other word of the file.
    fails(
        &runtime(r#"log_format = "JSON""#),
        2,
        "runtime.log_format",
        r#"expected "text" or "json""#,
    );
}

// ---------------------------------------------------------------------------------------------
// Target groups

#[test]
fn deregistration_delay_is_at_most_an_hour() {
    fails(
        &group(r#"deregistration_delay = "3601s""#),
        3,
        "target_groups[0].deregistration_delay",
        "at most 3600s, as ALB allows",
    );
    valid(&group(r#"deregistration_delay = "1h""#));
    valid(&group(r#"deregistration_delay = "0s""#));
}

#[test]
fn slow_start_is_off_or_from_30s_to_900s() {
    for d in ["29s", "901s", "1ms"] {
        fails(
            &group(&format!("slow_start = \"{d}\"")),
            3,
            "target_groups[0].slow_start",
            "0s (off) or from 30s to 900s, as ALB allows",
        );
    }
    for d in ["0s", "30s", "15m"] {
        valid(&group(&format!("slow_start = \"{d}\"")));
    }
}

/// What `seawall check` used to be run for in tests/cli.rs
/// (`slow_start_with_least_outstanding_requests`).
#[test]
fn slow_start_with_least_outstanding_requests() {
    fails(
        r#"[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { forward = "app" }

[[target_groups]]
name = "app"
targets = ["127.0.0.1:9201"]
algorithm = "least_outstanding_requests"
slow_start = "30s"
"#,
        11,
        "target_groups[0].slow_start",
        "slow start does not combine with least_outstanding_requests (as in ALB)",
    );
    valid(&group(
        "algorithm = \"least_outstanding_requests\"\nslow_start = \"0s\"",
    ));
}

#[test]
fn group_timeouts_are_not_zero() {
    for key in ["connect_timeout", "response_timeout"] {
        fails(
            &group(&format!("{key} = \"0s\"")),
            3,
            &format!("target_groups[0].{key}"),
            "must be greater than zero",
        );
    }
}

#[test]
fn targets_have_ports_and_appear_once() {
    fails(
        &group(r#"targets = ["10.0.0.1:0"]"#),
        3,
        "target_groups[0].targets[0]",
        "a target needs a port",
    );
    fails(
        &group(r#"targets = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80"]"#),
        3,
        "target_groups[0].targets[2]",
        "target 10.0.0.1:80 is listed twice",
    );
}

// ---------------------------------------------------------------------------------------------
// Health checks

#[test]
fn health_check_interval_and_timeout() {
    for i in ["99ms", "301s"] {
        fails(
            &health(&format!("  interval = \"{i}\"\n  timeout = \"50ms\"")),
            5,
            "target_groups[0].health_check.interval",
            "must be from 100ms to 300s",
        );
    }
    for t in ["49ms", "121s"] {
        fails(
            &health(&format!("  interval = \"300s\"\n  timeout = \"{t}\"")),
            6,
            "target_groups[0].health_check.timeout",
            "must be from 50ms to 120s",
        );
    }
    for t in ["1s", "2s"] {
        fails(
            &health(&format!("  interval = \"1s\"\n  timeout = \"{t}\"")),
            6,
            "target_groups[0].health_check.timeout",
            "must be less than the interval",
        );
    }
    // Faster than ALB allows, for quick failover and quick tests.
    valid(&health("  interval = \"100ms\"\n  timeout = \"50ms\""));
    // The default timeout (5s) must fit the interval too.
    fails(
        &health("  interval = \"5s\""),
        4,
        "target_groups[0].health_check.timeout",
        "must be less than the interval",
    );
}

#[test]
fn health_check_thresholds_are_from_2_to_10() {
    for key in ["healthy_threshold", "unhealthy_threshold"] {
        for n in [1, 11] {
            fails(
                &health(&format!("  {key} = {n}")),
                5,
                &format!("target_groups[0].health_check.{key}"),
                "must be from 2 to 10",
            );
        }
        valid(&health(&format!("  {key} = 2")));
        valid(&health(&format!("  {key} = 10")));
    }
}

#[test]
fn health_check_matcher_ranges() {
    let matcher =
        |group_keys: &str, m: &str| health_of(group_keys, &format!("  matcher = \"{m}\""));
    fails(
        &matcher("", "200-600"),
        5,
        "target_groups[0].health_check.matcher",
        "600 is outside 200..=499",
    );
    fails(
        &matcher("", "ok"),
        5,
        "target_groups[0].health_check.matcher",
        r#""ok" is not a code or a range of codes like "200-299""#,
    );
    let cfg = valid(&matcher("", "200-299,404"));
    let m = &cfg.target_groups[0].health_check.matcher;
    assert!(m.matches(204) && m.matches(404) && !m.matches(403));

    // gRPC codes are from 0 to 99, and the default is 12 (UNIMPLEMENTED: the service is up).
    let grpc = "protocol_version = \"grpc\"";
    fails(
        &matcher(grpc, "200"),
        5,
        "target_groups[0].health_check.matcher",
        "200 is outside 0..=99",
    );
    let cfg = valid(&matcher(grpc, "0-99"));
    assert!(cfg.target_groups[0].health_check.matcher.matches(0));
    let cfg = valid(&group(grpc));
    let hc = &cfg.target_groups[0].health_check;
    assert!(hc.matcher.matches(12) && !hc.matcher.matches(0));
    assert_eq!(hc.path, "/AWS.ALB/healthcheck");
}

#[test]
fn health_check_port_forms() {
    let port = |v: &str| {
        valid(&health(&format!("  port = {v}")))
            .target_groups
            .remove(0)
            .health_check
            .port
    };
    assert_eq!(port(r#""traffic-port""#), None);
    assert_eq!(port("8081"), Some(8081));
    assert_eq!(port(r#""8081""#), Some(8081));
    assert_eq!(port("65535"), Some(65535));
    for (v, shown) in [
        ("0", "0"),
        ("65536", "65536"),
        ("-1", "-1"),
        (r#""0""#, r#""0""#),
        (r#""eighty""#, r#""eighty""#),
        ("true", "true"),
        ("80.5", "80.5"),
    ] {
        fails(
            &health(&format!("  port = {v}")),
            5,
            "target_groups[0].health_check.port",
            &format!(r#"{shown} is neither "traffic-port" nor a port from 1 to 65535"#),
        );
    }
}

#[test]
fn health_check_protocol_and_path() {
    fails(
        &health("  protocol = \"tcp\""),
        5,
        "target_groups[0].health_check.protocol",
        r#"unknown protocol "tcp""#,
    );
    let cfg = valid(&health("  protocol = \"https\"\n  path = \"/ping?deep=1\""));
    let hc = &cfg.target_groups[0].health_check;
    assert_eq!(
        (hc.protocol, hc.path.as_str()),
        (Protocol::Https, "/ping?deep=1")
    );
    for p in ["ping", "/a b"] {
        fails(
            &health(&format!("  path = \"{p}\"")),
            5,
            "target_groups[0].health_check.path",
            &format!(r#""{p}" is not a path starting with "/""#),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// admin.token

fn admin(token: &str) -> String {
    format!("[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{token}\"\n{ANSWER}")
}

#[test]
fn admin_token_from_the_file_or_the_environment() {
    let cfg = valid(&admin("s3cret"));
    assert!(
        !format!("{cfg:?}").contains("s3cret"),
        "a printed configuration hides the token"
    );
    assert_eq!(cfg.admin.unwrap().token.unwrap().expose(), "s3cret");
    let env = env().with_var("SEAWALL_TOKEN", "from-env");
    let cfg = validate_in(&admin("env:SEAWALL_TOKEN"), &env).unwrap();
    assert_eq!(cfg.admin.unwrap().token.unwrap().expose(), "from-env");
    let cfg = valid(&format!("[admin]\nbind = \"127.0.0.1:0\"\n{ANSWER}"));
    assert!(cfg.admin.unwrap().token.is_none());
}

#[test]
fn admin_token_errors() {
    fails(
        &admin("env:SEAWALL_TOKEN"),
        3,
        "admin.token",
        "the environment variable SEAWALL_TOKEN is not set",
    );
    fails(
        &admin("env:"),
        3,
        "admin.token",
        r#""env:" needs a variable name"#,
    );
    let printable = "the token must be non-empty printable ASCII without spaces";
    for token in ["", "two words", "tab\\there", "caf\u{e9}"] {
        fails(&admin(token), 3, "admin.token", printable);
    }
    // A variable's value is held to the same rules.
    for value in ["", "two words"] {
        fails_in(
            &admin("env:SEAWALL_TOKEN"),
            &env().with_var("SEAWALL_TOKEN", value),
            3,
            "admin.token",
            printable,
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        fails_in(
            &admin("env:SEAWALL_TOKEN"),
            &env().with_var("SEAWALL_TOKEN", OsString::from_vec(vec![0xff, 0xfe])),
            3,
            "admin.token",
            "the environment variable SEAWALL_TOKEN is not valid UTF-8",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting

/// Every error of a file is reported at once, in the order of the file's lines, whatever the
/// order the checks run in (target groups are checked before the listeners above them here).
#[test]
fn all_errors_are_reported_at_once_in_line_order() {
    let errs = errors(
        r#"[runtime]
workers = 2000

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { forward = "nowhere" }

  [[listeners.rules]]
  priority = 0
  match = { path = ["/a"] }
  action = { fixed_response = { status = 200 } }

[[target_groups]]
name = "app"
slow_start = "1s"
"#,
    );
    let got: Vec<(Option<usize>, &str)> = errs.iter().map(|(l, p, _)| (*l, p.as_str())).collect();
    assert_eq!(
        got,
        [
            (Some(2), "runtime.workers"),
            (Some(8), "listeners[0].default_action.forward"),
            (Some(11), "listeners[0].rules[0].priority"),
            (Some(17), "target_groups[0].slow_start"),
        ]
    );
}

/// The file-level error that has no line comes first.
#[test]
fn errors_without_a_line_come_first() {
    let errs = errors("[runtime]\nworkers = 2000\n");
    let lines: Vec<Option<usize>> = errs.iter().map(|e| e.0).collect();
    assert_eq!(lines, [None, Some(2)]);
}

/// A file whose group `app` has a `[discovery.ecs]` with `keys`, whose header is line 4 and keys start at line 5.
fn ecs(keys: &str) -> String {
    group(&format!("\n  [target_groups.discovery.ecs]\n{keys}"))
}

const ECS_MINIMAL: &str =
    "cluster = \"prod\"\nservice = \"api\"\ncontainer = \"app\"\ncontainer_port = 8080";

#[cfg(feature = "ecs")]
#[test]
fn an_ecs_block_takes_the_defaults_of_config_md() {
    let cfg = valid(&ecs(ECS_MINIMAL));
    let d = cfg.target_groups[0].discovery.clone().unwrap();
    assert_eq!(
        d,
        ecs::Settings {
            cluster: "prod".into(),
            tasks: ecs::Selector::Service("api".into()),
            container: "app".into(),
            container_port: 8080,
            refresh: Duration::from_secs(10),
            region: None,
            endpoint: None,
            healthy_tasks_only: false,
        }
    );
    let cfg = valid(&ecs(
        "cluster = \"arn:aws:ecs:us-east-1:1:cluster/prod\"\nfamily = \"api-task\"\n\
         container = \"app\"\ncontainer_port = 80\nrefresh = \"2s\"\nregion = \"eu-west-1\"\n\
         endpoint = \"http://127.0.0.1:5055\"\nhealthy_tasks_only = true",
    ));
    let d = cfg.target_groups[0].discovery.clone().unwrap();
    assert_eq!(d.tasks, ecs::Selector::Family("api-task".into()));
    assert_eq!(
        (
            d.refresh,
            d.region.as_deref(),
            d.endpoint.as_deref(),
            d.healthy_tasks_only
        ),
        (
            Duration::from_secs(2),
            Some("eu-west-1"),
            Some("http://127.0.0.1:5055"),
            true
        )
    );
}

#[cfg(feature = "ecs")]
#[test]
fn an_ecs_block_names_its_tasks_once() {
    fails(
        &ecs("cluster = \"prod\"\ncontainer = \"app\"\ncontainer_port = 8080"),
        4,
        "target_groups[0].discovery.ecs",
        "give `service`",
    );
    fails(
        &ecs(&format!("{ECS_MINIMAL}\nfamily = \"api\"")),
        9,
        "target_groups[0].discovery.ecs.family",
        "not both",
    );
}

#[cfg(feature = "ecs")]
#[test]
fn bad_ecs_values_are_named_with_their_line() {
    let m = ECS_MINIMAL;
    fails(
        &ecs(&m.replace("8080", "0")),
        8,
        "target_groups[0].discovery.ecs.container_port",
        "from 1 to 65535",
    );
    fails(
        &ecs(&m.replace("8080", "70000")),
        8,
        "target_groups[0].discovery.ecs.container_port",
        "from 1 to 65535",
    );
    fails(
        &ecs(&m.replace("\"prod\"", "\"my cluster\"")),
        5,
        "target_groups[0].discovery.ecs.cluster",
        "without spaces",
    );
    fails(
        &ecs(&m.replace("container = \"app\"", "container = \"\"")),
        7,
        "target_groups[0].discovery.ecs.container",
        "container's name",
    );
    fails(
        &ecs(&format!("{m}\nrefresh = \"500ms\"")),
        9,
        "target_groups[0].discovery.ecs.refresh",
        "from 1s",
    );
    fails(
        &ecs(&format!("{m}\nregion = \"US East\"")),
        9,
        "target_groups[0].discovery.ecs.region",
        "not an AWS region",
    );
    for (url, why) in [
        ("127.0.0.1:5055", "http:// or https://"),
        ("ftp://127.0.0.1", "http:// or https://"),
        ("http://127.0.0.1:5055/ecs", "scheme, host and port only"),
    ] {
        fails(
            &ecs(&format!("{m}\nendpoint = \"{url}\"")),
            9,
            "target_groups[0].discovery.ecs.endpoint",
            why,
        );
    }
}

#[test]
fn a_discovery_block_needs_a_source() {
    fails(
        &group("\n  [target_groups.discovery]"),
        4,
        "target_groups[0].discovery",
        "[target_groups.discovery.ecs]",
    );
}

/// Built only without the `ecs` feature (`.ci/run` runs it so).
#[cfg(not(feature = "ecs"))]
#[test]
fn a_build_without_ecs_refuses_a_discovery_block_clearly() {
    fails(
        &ecs(ECS_MINIMAL),
        4,
        "target_groups[0].discovery.ecs",
        "built without ECS discovery (cargo feature `ecs`)",
    );
}

// ---------------------------------------------------------------------------------------------
// Weighted forward, stickiness, cookie_key

/// A file whose listener `web` has `default_action` (line 5), and groups `g0`..`g5`.
fn forward_file(action: &str) -> String {
    let mut text = format!(
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\n\
         default_action = {action}\n"
    );
    for i in 0..6 {
        text += &format!("\n[[target_groups]]\nname = \"g{i}\"\n");
    }
    text
}

fn groups_of(weights: &[(&str, i64)]) -> String {
    let groups: Vec<String> = weights
        .iter()
        .map(|(name, w)| format!("{{ name = \"{name}\", weight = {w} }}"))
        .collect();
    groups.join(", ")
}

#[test]
fn a_weighted_forward_becomes_groups_with_weights() {
    let cfg = valid(&forward_file(&format!(
        "{{ forward = {{ groups = [{}], stickiness = \"1h\" }} }}",
        groups_of(&[("g1", 90), ("g0", 10), ("g2", 0)])
    )));
    let ActionConfig::Forward(f) = &cfg.listeners[0].default_action else {
        panic!("a forward");
    };
    assert_eq!(f.groups, [(1, 90), (0, 10), (2, 0)]);
    assert_eq!(f.stickiness, Some(Duration::from_secs(3600)));
    // The plain form is a forward to one group of weight 1, without stickiness.
    let cfg = valid(&forward_file("{ forward = \"g3\" }"));
    let ActionConfig::Forward(f) = &cfg.listeners[0].default_action else {
        panic!("a forward");
    };
    assert_eq!(*f, ForwardConfig::to(3));
}

/// ALB accepts a forward whose weights are all 0 (and answers it with 503): a step of a drain
/// that clients held by group stickiness still follow.
#[test]
fn every_weight_may_be_zero() {
    valid(&forward_file(&format!(
        "{{ forward = {{ groups = [{}], stickiness = \"1m\" }} }}",
        groups_of(&[("g0", 0), ("g1", 0)])
    )));
}

#[test]
fn a_weight_is_from_0_to_999() {
    for w in [-1, 1000, 70000] {
        fails(
            &forward_file(&format!(
                "{{ forward = {{ groups = [{}] }} }}",
                groups_of(&[("g0", 1), ("g1", w)])
            )),
            5,
            "listeners[0].default_action.forward.groups[1].weight",
            &format!("weight {w} is out of range 0..=999"),
        );
    }
}

#[test]
fn a_forward_names_from_1_to_5_groups() {
    let six: Vec<(String, i64)> = (0..6).map(|i| (format!("g{i}"), 1)).collect();
    let six: Vec<(&str, i64)> = six.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    fails(
        &forward_file(&format!(
            "{{ forward = {{ groups = [{}] }} }}",
            groups_of(&six)
        )),
        5,
        "listeners[0].default_action.forward.groups",
        "from 1 to 5 target groups (ALB's quota); this one names 6",
    );
    fails(
        &forward_file("{ forward = { groups = [] } }"),
        5,
        "listeners[0].default_action.forward.groups",
        "this one names 0",
    );
}

#[test]
fn a_group_appears_once_in_a_forward() {
    fails(
        &forward_file(&format!(
            "{{ forward = {{ groups = [{}] }} }}",
            groups_of(&[("g0", 1), ("g1", 1), ("g0", 5)])
        )),
        5,
        "listeners[0].default_action.forward.groups[2].name",
        r#"target group "g0" is already in this forward (listeners[0].default_action.forward.groups[0])"#,
    );
}

#[test]
fn a_weighted_forward_names_groups_that_exist() {
    fails(
        &forward_file(&format!(
            "{{ forward = {{ groups = [{}] }} }}",
            groups_of(&[("g0", 1), ("nowhere", 1)])
        )),
        5,
        "listeners[0].default_action.forward.groups[1].name",
        r#"no [[target_groups]] is named "nowhere""#,
    );
}

#[test]
fn group_stickiness_is_from_1s_to_7d() {
    valid(&forward_file(&format!(
        "{{ forward = {{ groups = [{}], stickiness = \"7d\" }} }}",
        groups_of(&[("g0", 1)])
    )));
    for d in ["500ms", "8d", "0s"] {
        fails(
            &forward_file(&format!(
                "{{ forward = {{ groups = [{}], stickiness = \"{d}\" }} }}",
                groups_of(&[("g0", 1)])
            )),
            5,
            "listeners[0].default_action.forward.stickiness",
            "stickiness lasts from 1s to 7d",
        );
    }
}

#[test]
fn target_stickiness_becomes_its_kind_with_albs_default_duration() {
    let cfg = valid(&group("stickiness = { type = \"lb_cookie\" }"));
    assert_eq!(
        cfg.target_groups[0].stickiness,
        Some(TargetStickiness::LbCookie {
            duration: Duration::from_secs(86400)
        })
    );
    let cfg = valid(&group(
        "stickiness = { type = \"app_cookie\", cookie_name = \"SESSION\", duration = \"1h\" }",
    ));
    assert_eq!(
        cfg.target_groups[0].stickiness,
        Some(TargetStickiness::AppCookie {
            cookie_name: "SESSION".into(),
            duration: Duration::from_secs(3600)
        })
    );
    assert_eq!(valid(&group("")).target_groups[0].stickiness, None);
}

#[test]
fn target_stickiness_duration_is_from_1s_to_7d() {
    for keys in [
        "stickiness = { type = \"lb_cookie\", duration = \"8d\" }",
        "stickiness = { type = \"lb_cookie\", duration = \"999ms\" }",
        "stickiness = { type = \"app_cookie\", cookie_name = \"S\", duration = \"30d\" }",
    ] {
        fails(
            &group(keys),
            3,
            "target_groups[0].stickiness.duration",
            "stickiness lasts from 1s to 7d",
        );
    }
    fails(
        &group("stickiness = { type = \"app_cookie\", cookie_name = \"S\" }"),
        3,
        "target_groups[0].stickiness.duration",
        "needs a duration",
    );
}

#[test]
fn an_app_cookie_name_is_the_applications_own_token() {
    for (name, reason) in [
        ("AWSALB", "the load balancer's own"),
        ("AWSALBAPP-0", "the load balancer's own"),
        ("AWSALBTGCORS", "the load balancer's own"),
        ("two words", "is not a cookie name"),
        ("a;b", "is not a cookie name"),
        ("", "is not a cookie name"),
    ] {
        fails(
            &group(&format!(
                "stickiness = {{ type = \"app_cookie\", cookie_name = \"{name}\", duration = \"1h\" }}"
            )),
            3,
            "target_groups[0].stickiness.cookie_name",
            reason,
        );
    }
    fails(
        &group("stickiness = { type = \"app_cookie\", duration = \"1h\" }"),
        3,
        "target_groups[0].stickiness.cookie_name",
        "needs the application's cookie_name",
    );
    fails(
        &group("stickiness = { type = \"lb_cookie\", cookie_name = \"S\" }"),
        3,
        "target_groups[0].stickiness.cookie_name",
        "only app_cookie stickiness names a cookie",
    );
    fails(
        &group("stickiness = { type = \"source_ip\" }"),
        3,
        "target_groups[0].stickiness.type",
        r#"unknown stickiness type "source_ip""#,
    );
}

#[test]
fn cookie_key_from_the_file_or_the_environment() {
    let cfg = valid(&runtime("cookie_key = \"0123456789abcdef\""));
    assert!(!format!("{cfg:?}").contains("0123456789abcdef"));
    assert_eq!(cfg.runtime.cookie_key.unwrap().expose(), "0123456789abcdef");
    let env = env().with_var("SEAWALL_COOKIE_KEY", "a key from the environment");
    let cfg = validate_in(&runtime("cookie_key = \"env:SEAWALL_COOKIE_KEY\""), &env).unwrap();
    assert_eq!(
        cfg.runtime.cookie_key.unwrap().expose(),
        "a key from the environment"
    );
    assert!(valid(&runtime("")).runtime.cookie_key.is_none());
}

#[test]
fn cookie_key_errors() {
    fails(
        &runtime("cookie_key = \"short\""),
        2,
        "runtime.cookie_key",
        "the key is 5 bytes; give at least 16",
    );
    fails(
        &runtime("cookie_key = \"env:SEAWALL_COOKIE_KEY\""),
        2,
        "runtime.cookie_key",
        "the environment variable SEAWALL_COOKIE_KEY is not set",
    );
    fails_in(
        &runtime("cookie_key = \"env:SEAWALL_COOKIE_KEY\""),
        &env().with_var("SEAWALL_COOKIE_KEY", "too short"),
        2,
        "runtime.cookie_key",
        "the key is 9 bytes",
    );
    fails(
        &runtime("cookie_key = \"env:\""),
        2,
        "runtime.cookie_key",
        r#""env:" needs a variable name"#,
    );
}

#[test]
fn the_access_log_defaults_to_albs_format_on_stdout_and_resolves_files_beside_the_config() {
    assert_eq!(valid(ANSWER).access_log, None);
    let on = valid(&format!("{ANSWER}\n[access_log]\n"));
    assert_eq!(
        on.access_log,
        Some(access_log::Settings {
            requests: access_log::Destination::Stdout,
            format: access_log::Format::Alb,
            connections: None,
            buffer_lines: access_log::DEFAULT_BUFFER_LINES,
        })
    );
    let files = valid(&format!(
        "{ANSWER}\n[access_log]\npath = \"logs/access.log\"\nformat = \"json\"\n\
         connections_path = \"/var/log/conn.log\"\nbuffer_lines = 64\n"
    ));
    assert_eq!(
        files.access_log,
        Some(access_log::Settings {
            requests: access_log::Destination::File("/etc/seawall/logs/access.log".into()),
            format: access_log::Format::Json,
            connections: Some(access_log::Destination::File("/var/log/conn.log".into())),
            buffer_lines: 64,
        })
    );
}

#[test]
fn access_log_values_are_checked() {
    // ANSWER has 6 lines (a leading blank one), then a blank line and the table header.
    fails(
        &format!("{ANSWER}\n[access_log]\nformat = \"clf\"\n"),
        9,
        "access_log.format",
        "\"alb\" or \"json\"",
    );
    fails(
        &format!("{ANSWER}\n[access_log]\nconnections_path = \"-\"\n"),
        9,
        "access_log.connections_path",
        "destination of its own",
    );
    fails(
        &format!("{ANSWER}\n[access_log]\npath = \"a.log\"\nconnections_path = \"./a.log\"\n"),
        10,
        "access_log.connections_path",
        "destination of its own",
    );
    fails(
        &format!("{ANSWER}\n[access_log]\nbuffer_lines = 0\n"),
        9,
        "access_log.buffer_lines",
        "between 1 and",
    );
    fails(
        &format!("{ANSWER}\n[access_log]\npath = \"\"\n"),
        9,
        "access_log.path",
        "give a file",
    );
}

#[test]
fn desync_mitigation_is_albs_mode_by_runtime_then_listener() {
    use crate::server::framing::Mitigation;
    let cfg = valid(ANSWER);
    assert_eq!(cfg.runtime.desync_mitigation, Mitigation::Defensive);
    assert_eq!(cfg.listeners[0].desync_mitigation, Mitigation::Defensive);
    let cfg = valid(&runtime(r#"desync_mitigation = "strictest""#));
    assert_eq!(cfg.listeners[0].desync_mitigation, Mitigation::Strictest);
    let own = format!(
        "[runtime]\ndesync_mitigation = \"strictest\"\n{ANSWER}desync_mitigation = \"monitor\"\n"
    );
    let cfg = valid(&own);
    assert_eq!(cfg.runtime.desync_mitigation, Mitigation::Strictest);
    assert_eq!(cfg.listeners[0].desync_mitigation, Mitigation::Monitor);
    fails(
        &runtime(r#"desync_mitigation = "paranoid""#),
        2,
        "runtime.desync_mitigation",
        r#"unknown desync mitigation mode "paranoid"; expected "monitor", "defensive" or "strictest""#,
    );
    fails(
        &format!("{ANSWER}desync_mitigation = \"Defensive\"\n"),
        7,
        "listeners[0].desync_mitigation",
        "expected \"monitor\"",
    );
}
