//! The application log of the real binary: text or JSON (`--log-format`, `[runtime] log_format`),
//! and the one line each config load, listener start and stop, and target state change logs.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::process::{cmd, field, json_fields, Proc};
use common::{eventually, fixed, get, path, Backend, ConfigBuilder, Listener, TargetGroup};
use serde_json::{Map, Value};

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(10);

type Fields = Map<String, Value>;

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("seawall.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Replaces the file in one rename, as an editor or a ConfigMap update does.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_file_name(".seawall.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Two plain listeners: `web` answering itself (one rule), `api` forwarding to group `app`.
fn two_listeners(runtime: &str, app: &[std::net::SocketAddr]) -> String {
    ConfigBuilder::new()
        .admin("")
        .runtime("drain_timeout = \"1s\"")
        .runtime(runtime)
        .listener(
            Listener::http("web")
                .rule(10, &path("/static/*"), &fixed("static"))
                .default_action(&fixed("web")),
        )
        .listener(Listener::http("api").forward("app"))
        .target_group(TargetGroup::new("app", app))
        .build()
}

/// Asserts that `line` is one JSON object with what every line carries (no colour codes, a
/// timestamp, a level, the module as `target`, the message among `fields`), and returns its
/// level, message and fields.
#[track_caller]
fn parse(line: &str) -> (String, String, Fields) {
    assert!(!line.contains('\x1b'), "colour codes in {line:?}");
    let v: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {line}"));
    let timestamp = o["timestamp"].as_str().expect("a timestamp");
    assert!(
        timestamp.len() > 19 && timestamp.as_bytes()[10] == b'T',
        "{line}"
    );
    let level = o["level"].as_str().expect("a level").to_string();
    assert!(
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level.as_str()),
        "{line}"
    );
    assert!(
        o["target"]
            .as_str()
            .expect("a target")
            .starts_with("seawall"),
        "{line}"
    );
    let (message, fields) = json_fields(line).unwrap_or_else(|| panic!("no fields: {line}"));
    (level, message, fields)
}

/// Every line parsed (see [`parse`]).
fn parse_all(p: &Proc) -> Vec<(String, String, Fields)> {
    p.lines().iter().map(|l| parse(l)).collect()
}

/// The fields of the lines whose message is `message`.
fn with_message(lines: &[(String, String, Fields)], message: &str) -> Vec<Fields> {
    lines
        .iter()
        .filter(|(_, m, _)| m == message)
        .map(|(_, _, f)| f.clone())
        .collect()
}

fn str_of<'a>(f: &'a Fields, key: &str) -> &'a str {
    f.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string {key} in {f:?}"))
}

fn int_of(f: &Fields, key: &str) -> u64 {
    f.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number {key} in {f:?}"))
}

/// SIGTERM, then waits for the exit and for the last line (`stopped`) to be read.
async fn stop(p: &mut Proc) {
    p.signal("TERM");
    assert!(p.wait_exit(PATIENCE).await.success(), "{}", p.log());
    assert!(
        eventually(PATIENCE, || async { p.log().contains("stopped") }).await,
        "no last line:\n{}",
        p.log()
    );
}

#[tokio::test]
async fn json_flag_writes_every_line_as_a_json_object_with_the_lifecycle_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &two_listeners("", &[]));
    // Before the subcommand: the option is global.
    let mut p = Proc::start_with(&path, &["web", "api"], true, |c| {
        c.args(["--log-format", "json"]);
    })
    .await;
    p.wait_ready().await;
    stop(&mut p).await;
    let lines = parse_all(&p);

    let loaded = with_message(&lines, "config loaded");
    assert_eq!(loaded.len(), 1, "{}", p.log());
    let l = &loaded[0];
    assert_eq!(str_of(l, "cause"), "start");
    assert_eq!(int_of(l, "generation"), 1);
    assert_eq!(str_of(l, "file"), path.display().to_string());
    assert_eq!(
        (
            int_of(l, "listeners"),
            int_of(l, "rules"),
            int_of(l, "target_groups")
        ),
        (2, 1, 1)
    );

    let listening = with_message(&lines, "listening");
    assert_eq!(listening.len(), 2, "{}", p.log());
    for name in ["web", "api"] {
        let l = listening
            .iter()
            .find(|l| str_of(l, "listener") == name)
            .unwrap_or_else(|| panic!("no listening line for {name}:\n{}", p.log()));
        assert_eq!(str_of(l, "addr"), p.addr(name).to_string());
        assert_eq!(str_of(l, "protocol"), "http");
    }

    let stopped = with_message(&lines, "listener stopped; its connections drain");
    let mut names: Vec<&str> = stopped.iter().map(|s| str_of(s, "listener")).collect();
    names.sort();
    assert_eq!(names, ["api", "web"], "{}", p.log());
    for s in &stopped {
        assert_eq!(str_of(s, "why"), "shutdown");
        assert_eq!(str_of(s, "addr"), p.addr(str_of(s, "listener")).to_string());
    }
}

#[tokio::test]
async fn the_file_can_ask_for_json_and_the_flag_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &two_listeners("log_format = \"json\"", &[]));

    let mut p = Proc::start(&path, &["web", "api"], true).await;
    stop(&mut p).await;
    let lines = parse_all(&p);
    assert_eq!(with_message(&lines, "config loaded").len(), 1);

    // After the subcommand too.
    let mut p = Proc::start_args(
        &path,
        &["web", "api"],
        true,
        |_| {},
        &["--log-format", "text"],
    )
    .await;
    stop(&mut p).await;
    let lines = p.lines();
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with('{') && !l.contains('\x1b')),
        "{}",
        p.log()
    );
    let loaded: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("config loaded"))
        .collect();
    assert_eq!(loaded.len(), 1, "{}", p.log());
    assert_eq!(field(loaded[0], "generation"), Some("1"));
    assert_eq!(field(loaded[0], "listeners"), Some("2"));
    assert!(lines
        .iter()
        .any(|l| l.contains(" listening ") && field(l, "listener") == Some("web")));
}

#[test]
fn the_option_takes_text_or_json_in_any_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &two_listeners("", &[]));
    let out = cmd()
        .arg("check")
        .arg(&path)
        .args(["--log-format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let out = cmd()
        .args(["--log-format", "xml", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("xml") && err.contains("text") && err.contains("json"),
        "{err}"
    );

    // In the file: the key path and the allowed values.
    let bad = write(dir.path(), &two_listeners("log_format = \"xml\"", &[]));
    let out = cmd().arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "runtime.log_format: unknown log format \"xml\"; expected \"text\" or \"json\""
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_reload_logs_one_config_line_and_the_stop_of_the_listener_it_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &two_listeners("log_format = \"json\"", &[]));
    let mut p = Proc::start(&path, &["web", "api"], true).await;
    p.wait_ready().await;

    // `api` goes, and the file asks for text, which only a restart applies.
    let only_web = ConfigBuilder::new()
        .admin("")
        .runtime("drain_timeout = \"1s\"\nlog_format = \"text\"")
        .listener(Listener::http("web").default_action(&fixed("web")))
        .build();
    replace(&path, &only_web);
    p.signal("HUP");
    let sighup = |p: &Proc| {
        with_message(&parse_all(p), "config reloaded")
            .into_iter()
            .any(|l| str_of(&l, "cause") == "SIGHUP")
    };
    assert!(
        eventually(PATIENCE, || async { sighup(&p) }).await,
        "no SIGHUP reload:\n{}",
        p.log()
    );
    stop(&mut p).await;
    // Still JSON after the reload, to the end.
    let lines = parse_all(&p);

    // The file watcher may have reloaded the new file too: one line per reload, each with its
    // own generation, counted on from the start's.
    let reloaded = with_message(&lines, "config reloaded");
    let generations: Vec<u64> = reloaded.iter().map(|l| int_of(l, "generation")).collect();
    let expected: Vec<u64> = (2..2 + reloaded.len() as u64).collect();
    assert_eq!(generations, expected, "{}", p.log());
    for l in &reloaded {
        assert_eq!(
            (
                int_of(l, "listeners"),
                int_of(l, "rules"),
                int_of(l, "target_groups")
            ),
            (1, 0, 0)
        );
        assert_eq!(str_of(l, "file"), path.display().to_string());
    }

    let stopped = with_message(&lines, "listener stopped; its connections drain");
    let removed: Vec<&Fields> = stopped
        .iter()
        .filter(|s| str_of(s, "why") == "removed by reload")
        .collect();
    assert_eq!(removed.len(), 1, "{}", p.log());
    assert_eq!(str_of(removed[0], "listener"), "api");
    assert_eq!(str_of(removed[0], "addr"), p.addr("api").to_string());
    // At shutdown, only the listener still served.
    let at_shutdown: Vec<&str> = stopped
        .iter()
        .filter(|s| str_of(s, "why") == "shutdown")
        .map(|s| str_of(s, "listener"))
        .collect();
    assert_eq!(at_shutdown, ["web"], "{}", p.log());

    let restart: Vec<&(String, String, Fields)> = lines
        .iter()
        .filter(|(_, _, f)| f.get("setting").and_then(Value::as_str) == Some("runtime.log_format"))
        .collect();
    assert!(!restart.is_empty(), "{}", p.log());
    assert!(restart.iter().all(|(level, _, _)| level == "WARN"));
}

#[tokio::test]
async fn a_target_going_down_logs_one_state_change_and_its_requests_log_nothing() {
    let b = Backend::start("b1").await;
    let dir = tempfile::tempdir().unwrap();
    let health =
        "  [target_groups.health_check]\n  interval = \"200ms\"\n  timeout = \"150ms\"\n  \
                  healthy_threshold = 2\n  unhealthy_threshold = 2\n";
    let text = two_listeners("", &[b.addr]) + health;
    let path = write(dir.path(), &text);
    let p = Proc::start_with(&path, &["web", "api"], true, |c| {
        c.args(["--log-format", "json"]);
    })
    .await;
    let target = b.addr.to_string();
    let changes = |p: &Proc| -> Vec<(String, Fields)> {
        parse_all(p)
            .into_iter()
            .filter(|(_, m, f)| {
                m == "target state changed"
                    && f.get("target").and_then(Value::as_str) == Some(&target)
            })
            .map(|(level, _, f)| (level, f))
            .collect()
    };
    let to = |p: &Proc, state: &str| changes(p).iter().any(|(_, f)| str_of(f, "to") == state);
    assert!(
        eventually(PATIENCE, || async { to(&p, "healthy") }).await,
        "never healthy:\n{}",
        p.log()
    );
    b.kill();
    assert!(
        eventually(PATIENCE, || async { to(&p, "unhealthy") }).await,
        "never unhealthy:\n{}",
        p.log()
    );
    // Requests to the dead target (ALB's fail-open routes to it anyway): each is a 502, none
    // is a log line at info or above.
    for _ in 0..5 {
        let got = get(p.addr("api"), false, "localhost", "/").await;
        assert_eq!(got.status, 502);
    }
    let lines = parse_all(&p);
    assert!(
        !lines
            .iter()
            .any(|(_, m, _)| m.starts_with("answering with")),
        "{}",
        p.log()
    );
    let changes = changes(&p);
    assert_eq!(changes.len(), 2, "{}", p.log());
    let (level, up) = &changes[0];
    assert_eq!(level, "INFO");
    assert_eq!(
        (
            str_of(up, "target_group"),
            str_of(up, "from"),
            str_of(up, "to")
        ),
        ("app", "initial", "healthy")
    );
    let (level, down) = &changes[1];
    assert_eq!(level, "WARN");
    assert_eq!(
        (
            str_of(down, "target_group"),
            str_of(down, "from"),
            str_of(down, "to")
        ),
        ("app", "healthy", "unhealthy")
    );
    assert!(str_of(down, "reason").starts_with("Target."), "{down:?}");
    assert!(!str_of(down, "description").is_empty(), "{down:?}");
}
