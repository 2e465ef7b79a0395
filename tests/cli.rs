//! The `seawall` command as users run it: the real binary, its exit codes, its messages, its log,
//! its signals; plus the example configurations, the embedded default and the Dockerfile's
//! assumptions about them.

mod common;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::process::{cmd, Proc};
use common::*;
use seawall::config::{self, compile::load_and_compile, Source};

/// The repository's own folder (config/, certs/, Dockerfile).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary to completion (it must finish within 60 s).
fn seawall(args: &[&str]) -> Output {
    let mut child = cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("seawall {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The binary as a server

// ---------------------------------------------------------------------------------------------
// The example configurations

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_config_passes_check() {
    let files = examples();
    for name in [
        "example.toml",
        "minimal.toml",
        "tls-files.toml",
        "container.toml",
        "ecs.toml",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "config/{name} is missing"
        );
    }
    for file in &files {
        let out = seawall(&["check", file.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}:\n{}",
            file.display(),
            stderr(&out)
        );
        assert!(stdout(&out).contains(": ok ("), "{}", stdout(&out));
    }
}

/// Every example also starts and serves, with its binds moved to port 0 on loopback.
#[tokio::test]
async fn every_example_config_starts() {
    for file in examples() {
        let text = std::fs::read_to_string(&file).unwrap();
        let text: String = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("bind = ") {
                    "bind = \"127.0.0.1:0\"".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        // A copy of its own, since seawall watches (and would reload) the file it runs.
        let dir = tempfile::tempdir().unwrap();
        let copy = write_file(dir.path(), "seawall.toml", &text);
        let source = Source::new(&copy, repo().join("config"), text);
        let running = seawall::App::build(&source)
            .unwrap_or_else(|e| panic!("{}:\n{e}", file.display()))
            .start()
            .unwrap();
        let admin = running.admin_addr();
        if let Some(admin) = admin {
            let got = get(admin, false, "127.0.0.1", "/healthz").await;
            assert_eq!(got.status, 200, "{}", file.display());
        }
        drop(running);
    }
}

/// The routes config/example.toml's comments and the README describe.
#[tokio::test]
async fn example_config_routes_as_documented() {
    let file = repo().join("config/example.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("bind = \"127.0.0.1:8443\"", "bind = \"127.0.0.1:0\"")
        .replace("bind = \"127.0.0.1:8080\"", "bind = \"127.0.0.1:0\"")
        .replace("bind = \"127.0.0.1:9901\"", "bind = \"127.0.0.1:0\"");
    // The edited copy lives in a file of its own (seawall watches the file it runs); its
    // certificate paths still resolve against config/.
    let dir = tempfile::tempdir().unwrap();
    let copy = write_file(dir.path(), "example.toml", &text);
    let source = Source::new(&copy, repo().join("config"), text);
    let running = seawall::App::build(&source).unwrap().start().unwrap();
    let https = running.listener_addr("https").unwrap();
    let http = running.listener_addr("http").unwrap();

    let got = get(https, true, "localhost", "/healthz").await;
    assert_eq!((got.status.as_u16(), got.text().as_str()), (200, "ok\n"));

    let got = get(https, true, "app.example.test", "/admin/users").await;
    assert_eq!(got.status, 403);

    let got = get(https, true, "old.example.test", "/a/b?c=d").await;
    assert_eq!(got.status, 301);
    assert_eq!(
        got.headers["location"],
        format!("https://app.example.test:{}/a/b?c=d", https.port()).as_str()
    );

    let got = get(http, false, "localhost", "/x?y=1").await;
    assert_eq!(got.status, 301);
    assert_eq!(got.headers["location"], "https://localhost:8443/x?y=1");

    // SNI picks the file certificate for localhost and the generated one for the wildcard.
    let tls = tls_connect(https, &Tls::new("localhost")).await.unwrap();
    assert_eq!(served_names(&tls), ["localhost"]);
    let tls = tls_connect(https, &Tls::new("shop.example.test"))
        .await
        .unwrap();
    assert_eq!(served_names(&tls), ["app.example.test", "*.example.test"]);
}

/// What `seawall` with no arguments runs: checked in-process, since it binds fixed ports.
#[test]
fn embedded_default_config_loads_and_compiles() {
    let source = Source::embedded_default();
    let cfg = config::load(&source).unwrap_or_else(|e| panic!("{e}"));
    load_and_compile(&source, &cfg, &seawall::secrets::Secrets::generate())
        .unwrap_or_else(|e| panic!("{e}"));
    let binds: Vec<String> = cfg.listeners.iter().map(|l| l.bind.to_string()).collect();
    assert_eq!(binds, ["127.0.0.1:8443", "127.0.0.1:8080"]);
    assert_eq!(cfg.admin.unwrap().bind.to_string(), "127.0.0.1:9901");
}

/// The README's first command, `cargo run --release` then `curl -k https://localhost:8443/`,
/// on the embedded default with its binds moved to port 0.
#[tokio::test]
async fn embedded_default_answers_as_the_readme_says() {
    let text = seawall::config::EMBEDDED_DEFAULT
        .replace("\"127.0.0.1:8443\"", "\"127.0.0.1:0\"")
        .replace("\"127.0.0.1:8080\"", "\"127.0.0.1:0\"")
        .replace("\"127.0.0.1:9901\"", "\"127.0.0.1:0\"");
    let sw = Seawall::start(&text);
    let got = get(sw.addr("https"), true, "localhost", "/").await;
    assert_eq!(got.status, 200);
    assert!(got.text().contains("seawall is running"), "{}", got.text());
    let got = get(sw.addr("http"), false, "localhost", "/").await;
    assert_eq!(got.status, 301);
    assert_eq!(got.headers["location"], "https://localhost:8443/");
}

/// The Dockerfile runs config/container.toml and probes the admin server on 127.0.0.1:9901.
#[test]
fn dockerfile_matches_the_container_config() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(r#"CMD ["run", "--config", "/etc/seawall/container.toml"]"#),
        "{dockerfile}"
    );
    assert!(dockerfile.contains("EXPOSE 8443 8080 9901"));
    assert!(dockerfile.contains("http://127.0.0.1:9901/healthz"));
    let source = Source::read(&repo().join("config/container.toml")).unwrap();
    let cfg = config::load(&source).unwrap();
    let binds: Vec<String> = cfg.listeners.iter().map(|l| l.bind.to_string()).collect();
    assert_eq!(binds, ["0.0.0.0:8443", "0.0.0.0:8080"]);
    assert_eq!(cfg.admin.unwrap().bind.to_string(), "0.0.0.0:9901");
    // Certificates generated at start: the image ships no key.
    assert!(
        !std::fs::read_to_string(repo().join("config/container.toml"))
            .unwrap()
            .contains(".pem")
    );
}

/// What the Dockerfile copies from the build context is in the repository and not left out by
/// .dockerignore (no daemon here to build the image: this is the part a build would fail on
/// first), and the dependency stage instruments its build as benches/pgo.sh does, whose
/// instrumented build would otherwise compile every dependency again.
#[test]
fn dockerfile_copies_what_the_context_has() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let excluded = |path: &str| {
        ignored.iter().any(|p| {
            let p = p.trim_end_matches('/');
            path == p
                || path.starts_with(&format!("{p}/"))
                || p.strip_prefix('*').is_some_and(|ext| path.ends_with(ext))
        })
    };
    let mut sources = Vec::new();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        if words[0].starts_with("--from") {
            continue;
        }
        sources.extend(words[..words.len() - 1].iter().map(|w| w.to_string()));
    }
    assert!(
        sources.contains(&"benches/pgo.sh".to_string()),
        "{sources:?}"
    );
    for s in &sources {
        let path = s.trim_end_matches('/');
        assert!(
            repo().join(path).exists(),
            "COPY {s}: not in the repository"
        );
        assert!(!excluded(path), "COPY {s}: left out by .dockerignore");
    }
    // pgo.sh instruments with the raw profiles under its target folder ($PWD/target/pgo, with
    // WORKDIR /src) and builds there; the stub stage must use the same flags and folder.
    let pgo = std::fs::read_to_string(repo().join("benches/pgo.sh")).unwrap();
    assert!(pgo.contains("dir=$(realpath -m \"${PGO_DIR:-$PWD/target/pgo}\")"));
    assert!(pgo.contains("raw=$dir/raw") && pgo.contains("CARGO_TARGET_DIR=$dir/gen"));
    assert!(dockerfile.contains("WORKDIR /src"));
    assert!(dockerfile.contains(
        "RUSTFLAGS=-Cprofile-generate=/src/target/pgo/raw CARGO_TARGET_DIR=/src/target/pgo/gen"
    ));
}

// ---------------------------------------------------------------------------------------------
// Broken configurations: exit 64, and `file:line: key.path: reason`

/// Writes `text` as `name` and runs `seawall check` on it; asserts exit 64 and a message that
/// starts `FILE:LINE: KEY_PATH: `. Returns the message.
fn check_fails(name: &str, text: &str, line: usize, key_path: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), name, text);
    let out = seawall(&["check", path.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    let prefix = if key_path.is_empty() {
        format!("{}:{line}: ", path.display())
    } else {
        format!("{}:{line}: {key_path}: ", path.display())
    };
    assert!(
        err.lines().any(|l| l.starts_with(&prefix)),
        "expected a line starting {prefix:?}, got:\n{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    err
}

#[test]
fn missing_certificate_file_is_named() {
    let err = check_fails(
        "bad-cert.toml",
        r#"[[certificates]]
name = "main"
cert = "missing/site.pem"
key = "missing/site-key.pem"

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["main"]
default_action = { fixed_response = { status = 200 } }
"#,
        3,
        "certificates[0].cert",
    );
    // Resolved against the config file's folder.
    assert!(err.contains("missing/site.pem"), "{err}");
    assert!(err.contains("No such file"), "{err}");
}

/// Every error of a file is reported in one run, not only the first.
#[test]
fn all_errors_are_reported_at_once() {
    let err = check_fails(
        "many.toml",
        r#"[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { forward = "nowhere" }

  [[listeners.rules]]
  priority = 0
  match = { path = ["/a"] }
  action = { fixed_response = { status = 200 } }
"#,
        5,
        "listeners[0].default_action.forward",
    );
    let path_line = err
        .lines()
        .find(|l| l.contains("listeners[0].rules[0].priority"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(path_line.contains("many.toml:8: "), "{err}");
}

#[test]
fn unreadable_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    for args in [
        vec!["check", missing.to_str().unwrap()],
        vec!["run", "--config", missing.to_str().unwrap()],
    ] {
        let out = seawall(&args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("nope.toml: cannot read the file"));
    }
}

/// `run` validates the whole file before it binds a single socket: with a listener's port
/// already taken and an error elsewhere, it reports the config error (64), not the bind (69).
#[test]
fn config_error_exits_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = |action: &str| {
        format!(
            r#"[[listeners]]
name = "web"
bind = "127.0.0.1:{port}"
protocol = "http"
default_action = {action}
"#
        )
    };
    let bad = write_file(
        dir.path(),
        "bad.toml",
        &config(r#"{ forward = "nowhere" }"#),
    );
    let out = seawall(&["run", "--config", bad.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("bad.toml:5: listeners[0].default_action.forward"),
        "{err}"
    );
    assert!(!err.contains("cannot bind"), "{err}");
    assert!(!err.contains("listening"), "{err}");

    // The control: the same file without the error does try to bind, and fails on the port.
    let good = write_file(
        dir.path(),
        "good.toml",
        &config("{ fixed_response = { status = 200 } }"),
    );
    let out = seawall(&["run", "--config", good.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("cannot bind"), "{err}");
    assert!(err.contains(" ERROR "), "logged as an error: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in a piped log: {err:?}"
    );

    // And with the port free, the bad file still leaves it free.
    drop(taken);
    let out = seawall(&["run", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port was left unbound");
}

// ---------------------------------------------------------------------------------------------
// seawall certs

#[tokio::test]
async fn certs_writes_a_usable_pair() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = seawall(&[
        "certs",
        "--out",
        out_dir.to_str().unwrap(),
        "a.test",
        "*.b.test",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (cert, key) = (out_dir.join("a.test.pem"), out_dir.join("a.test-key.pem"));
    assert!(stdout(&out).contains("a.test.pem"), "{}", stdout(&out));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");
    assert!(std::fs::read_to_string(&cert)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));

    // A config that uses them (relative paths, from the config's folder) passes check...
    let config = r#"[[certificates]]
name = "a"
cert = "out/a.test.pem"
key = "out/a.test-key.pem"

[[listeners]]
name = "tls"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["a"]
default_action = { fixed_response = { status = 200, body = "a" } }
"#;
    let file = write_file(dir.path(), "a.toml", config);
    let out = seawall(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // ...and serves both names.
    let base = dir.path().to_path_buf();
    let sw = Seawall::start_with(
        &config
            .replace("out/", &format!("{}/out/", base.display()))
            .to_string(),
        |_| {},
    );
    let tls = tls_connect(sw.addr("tls"), &Tls::new("x.b.test"))
        .await
        .unwrap();
    assert_eq!(served_names(&tls), ["a.test", "*.b.test"]);
    let got = get(sw.addr("tls"), true, "a.test", "/").await;
    assert_eq!(got.text(), "a");
}

#[test]
fn certs_names_files_after_the_first_name_or_the_stem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = seawall(&["certs", "--out", d, "*.c.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(dir.path().join("_wildcard.c.test.pem").exists());
    assert!(dir.path().join("_wildcard.c.test-key.pem").exists());
    let out = seawall(&["certs", "--out", d, "--stem", "site", "d.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(dir.path().join("site.pem").exists());
    assert!(dir.path().join("site-key.pem").exists());
}

// ---------------------------------------------------------------------------------------------
// Help

// ---------------------------------------------------------------------------------------------
// `seawall route`

/// A file whose http listener on port 8080 has rules of several condition kinds and actions of
/// every kind, and an https listener on 443.
const ROUTES: &str = r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:8080"
protocol = "http"
default_action = { fixed_response = { status = 404, content_type = "text/plain", body = "none" } }

  [[listeners.rules]]
  priority = 10
  match = { host = ["api.test", "*.api.test"] }
  action = { forward = "api" }

  [[listeners.rules]]
  priority = 20
  match = { method = ["POST"], header = { x-canary = ["1", "true"] } }
  action = { redirect = { host = "canary.test", status = 302 } }

  [[listeners.rules]]
  priority = 30
  match = { query = { version = ["v2*"] }, source_ip = ["10.0.0.0/8"] }
  action = { forward = "api" }

[[listeners]]
name = "secure"
bind = "127.0.0.1:443"
protocol = "https"
certificates = ["self"]
default_action = { fixed_response = { status = 200, body = "secure" } }

[[certificates]]
name = "self"
self_signed = ["localhost"]

[[target_groups]]
name = "api"
targets = ["127.0.0.1:9001", "127.0.0.1:9002"]
"#;

fn route(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "routes.toml", ROUTES);
    let mut all = vec!["route", path.to_str().unwrap()];
    all.extend_from_slice(args);
    seawall(&all)
}

#[test]
fn route_explains_each_rule_before_the_match_in_text() {
    let out = route(&[
        "http://www.test:8080/x?VERSION=v2.1",
        "-X",
        "POST",
        "-H",
        "X-Canary: 0",
        "--source-ip",
        "10.1.2.3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "listener web (http on 127.0.0.1:8080)",
        r#"rule 10: no match: host "www.test" matched none of ["api.test", "*.api.test"]"#,
        r#"rule 20: no match: header x-canary ["0"] matched none of ["1", "true"]"#,
        "rule 30: matched",
        "action   forward",
        "  group api (weight 1)",
        "    target 127.0.0.1:9001",
        "    target 127.0.0.1:9002",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }

    // The same rules, nothing matching: every rule is listed, then the default action.
    let out = route(&["http://www.test:8080/"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("rule 20: no match: method GET is none of [POST]"),
        "{text}"
    );
    assert!(
        text.contains("rule 30: no match: source IP 127.0.0.1 is in none of [10.0.0.0/8]"),
        "{text}"
    );
    assert!(
        text.contains("no rule matched: the default action"),
        "{text}"
    );
    assert!(
        text.contains(r#"action   fixed response 404 (text/plain): "none""#),
        "{text}"
    );

    // The scheme picks the listener, its default port too.
    let out = route(&["https://localhost/"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("listener secure (https on 127.0.0.1:443)"));
}

#[test]
fn route_prints_one_json_object() {
    let out = route(&[
        "http://www.test:8080/a?b=1",
        "-X",
        "POST",
        "-H",
        "x-canary: TRUE",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["listener"]["name"], "web");
    assert_eq!(v["request"]["method"], "POST");
    assert_eq!(v["request"]["headers"][0]["name"], "x-canary");
    assert_eq!(v["misses"].as_array().unwrap().len(), 1);
    assert_eq!(v["misses"][0]["priority"], 10);
    assert_eq!(v["misses"][0]["condition"], "host");
    assert_eq!(v["matched_rule"], 20);
    assert_eq!(v["action"]["type"], "redirect");
    assert_eq!(v["action"]["status"], 302);
    assert_eq!(v["action"]["location"], "http://canary.test:8080/a?b=1");

    let out = route(&["http://api.test:8080/", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["matched_rule"], 10);
    assert_eq!(v["action"]["type"], "forward");
    assert_eq!(v["action"]["groups"][0]["name"], "api");
    assert_eq!(v["action"]["groups"][0]["weight"], 1);
    assert_eq!(
        v["action"]["groups"][0]["targets"],
        serde_json::json!(["127.0.0.1:9001", "127.0.0.1:9002"])
    );
    assert_eq!(v["action"]["stickiness"], serde_json::Value::Null);

    let out = route(&["http://www.test:8080/", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["matched_rule"], serde_json::Value::Null);
    assert_eq!(v["action"]["type"], "fixed_response");
    assert_eq!(v["action"]["status"], 404);
    assert_eq!(v["action"]["body"], "none");
}

#[test]
fn route_exit_codes() {
    // A configuration error: 64 and the message `seawall check` prints.
    let dir = tempfile::tempdir().unwrap();
    let bad = ROUTES.replace(
        r#"source_ip = ["10.0.0.0/8"]"#,
        r#"source_ip = ["10.0.0.1/8"]"#,
    );
    let path = write_file(dir.path(), "bad.toml", &bad);
    let out = seawall(&["route", path.to_str().unwrap(), "http://a.test:8080/"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let prefix = format!(
        "{}:20: listeners[0].rules[2].match.source_ip[0]: ",
        path.display()
    );
    assert!(stderr(&out).starts_with(&prefix), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());

    // No listener for the URL's scheme and port, a bad URL, a bad header: usage errors.
    for (args, says) in [
        (
            vec!["http://a.test:9999/"],
            "no http listener binds port 9999",
        ),
        (vec!["ftp://a.test/"], "is not an http:// or https:// URL"),
        (
            vec!["http://a.test:8080/", "-H", "no colon"],
            "write a header as",
        ),
        (
            vec!["http://a.test:8080/", "-X", "GE T"],
            "is not an HTTP method",
        ),
    ] {
        let out = route(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn help_for_every_command() {
    for (args, mentions) in [
        (vec!["--help"], vec!["run", "check", "certs", "8443"]),
        (vec!["run", "--help"], vec!["--config"]),
        (vec!["check", "--help"], vec!["<FILE>"]),
        (vec!["certs", "--help"], vec!["--out", "--stem", "<NAMES>"]),
        (
            vec!["route", "--help"],
            vec!["<FILE>", "<URL>", "-X", "-H", "--source-ip", "--json"],
        ),
    ] {
        let out = seawall(&args);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(text.contains("Usage: seawall"), "{args:?}: {text}");
        for m in mentions {
            assert!(text.contains(m), "{args:?} does not mention {m}: {text}");
        }
    }
    let out = seawall(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).trim(),
        format!("seawall {}", env!("CARGO_PKG_VERSION"))
    );
    // A mistyped command is a usage error, not a run.
    let out = seawall(&["chekc", "x.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// Running: admin, metrics, signals

#[tokio::test]
async fn admin_server_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "seawall.toml",
        r#"[admin]
bind = "127.0.0.1:0"

[[certificates]]
name = "local"
self_signed = ["localhost"]

[[listeners]]
name = "https"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["local"]
default_action = { fixed_response = { status = 200, body = "tls" } }

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { fixed_response = { status = 200, body = "plain" } }
"#,
    );
    let mut p = Proc::start(&file, &["https", "web"], true).await;
    p.wait_ready().await;

    assert_eq!(
        get(p.addr("https"), true, "localhost", "/").await.text(),
        "tls"
    );
    assert_eq!(
        get(p.addr("web"), false, "localhost", "/").await.text(),
        "plain"
    );
    // Plain HTTP to the TLS port: a failed handshake.
    raw_exchange(
        p.addr("https"),
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;

    let got = get(p.admin(), false, "127.0.0.1", "/healthz").await;
    assert_eq!((got.status.as_u16(), got.text().as_str()), (200, "ok\n"));
    let got = get(p.admin(), false, "127.0.0.1", "/ready").await;
    assert_eq!(got.status, 200);
    // The gauge goes back to 0 once seawall has seen the clients' connections close.
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = fetch_metrics(p.admin()).await;
        if text.contains("\nseawall_active_connections 0\n") {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let sample = |name: &str| metric_total(&text, name);
    for name in [
        "seawall_requests_total",
        "seawall_active_connections",
        "seawall_tls_handshakes_total",
        "seawall_tls_handshake_errors_total",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
    }
    assert_eq!(sample("seawall_requests_total"), 2.0, "{text}");
    assert_eq!(sample("seawall_tls_handshakes_total"), 1.0, "{text}");
    assert_eq!(sample("seawall_tls_handshake_errors_total"), 1.0, "{text}");
    assert_eq!(sample("seawall_new_connections_total"), 3.0, "{text}");
    let got = get(p.admin(), false, "127.0.0.1", "/nope").await;
    assert_eq!(got.status, 404);

    // SIGINT drains and exits 0 too.
    p.signal("INT");
    let status = p.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", p.log());
}
