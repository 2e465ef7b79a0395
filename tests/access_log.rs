//! The access log and the connection log: lines that parse back into ALB's documented fields, the
//! JSON format, a sink that stops reading, SIGUSR1 after logrotate's rename, and reloads that turn
//! the log on, move it and turn it off.
mod common;
use common::process::Proc;
use common::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Request;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

/// ALB's access-log fields, in the order its documentation lists them.
const ALB_FIELDS: [&str; 30] = [
    "type",
    "time",
    "elb",
    "client:port",
    "target:port",
    "request_processing_time",
    "target_processing_time",
    "response_processing_time",
    "elb_status_code",
    "target_status_code",
    "received_bytes",
    "sent_bytes",
    "request",
    "user_agent",
    "ssl_cipher",
    "ssl_protocol",
    "target_group_arn",
    "trace_id",
    "domain_name",
    "chosen_cert_arn",
    "matched_rule_priority",
    "request_creation_time",
    "actions_executed",
    "redirect_url",
    "error_reason",
    "target:port_list",
    "target_status_code_list",
    "classification",
    "classification_reason",
    "conn_trace_id",
];

/// ALB's connection-log fields, in the order its documentation lists them.
const CONNECTION_FIELDS: [&str; 12] = [
    "time",
    "client_ip",
    "client_port",
    "listener_port",
    "tls_protocol",
    "tls_cipher",
    "tls_handshake_latency",
    "leaf_client_cert_subject",
    "leaf_client_cert_validity",
    "leaf_client_cert_serial_number",
    "tls_verify_status",
    "conn_trace_id",
];

/// Splits an ALB log line into its fields: space-separated, or double-quoted with `\"`, `\\`
/// and `\xHH` escapes inside the quotes. Panics on anything else, such as a stray quote.
fn split_fields(line: &str) -> Vec<String> {
    let b = line.as_bytes();
    let mut fields = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let mut field = Vec::new();
        if b[i] == b'"' {
            i += 1;
            loop {
                match b.get(i) {
                    Some(b'"') => break,
                    Some(b'\\') => {
                        match b.get(i + 1) {
                            Some(b'"') => field.push(b'"'),
                            Some(b'\\') => field.push(b'\\'),
                            Some(b'x') => {
                                let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                                field.push(u8::from_str_radix(hex, 16).unwrap());
                                i += 2;
                            }
                            other => panic!("bad escape {other:?} in {line}"),
                        }
                        i += 2;
                    }
                    Some(&c) => {
                        field.push(c);
                        i += 1;
                    }
                    None => panic!("unterminated quote in {line}"),
                }
            }
            i += 1;
            assert!(
                i == b.len() || b[i] == b' ',
                "no space after a quote in {line}"
            );
        } else {
            while i < b.len() && b[i] != b' ' {
                assert_ne!(b[i], b'"', "a stray quote in {line}");
                field.push(b[i]);
                i += 1;
            }
        }
        fields.push(String::from_utf8(field).unwrap());
        i += 1;
    }
    fields
}

/// One line as a map from ALB's field names to values.
fn parse(names: &[&'static str], line: &str) -> HashMap<&'static str, String> {
    let fields = split_fields(line);
    assert_eq!(fields.len(), names.len(), "field count of {line}");
    names.iter().copied().zip(fields).collect()
}

/// The lines of `path` once it has at least `n` (empty if it does not exist yet).
async fn lines_of(path: &Path, n: usize) -> Vec<String> {
    let read = || {
        std::fs::read_to_string(path)
            .map(|t| t.lines().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let ok = eventually(PATIENCE, || async { read().len() >= n }).await;
    let lines = read();
    assert!(
        ok,
        "{} has {} lines, not {n}:\n{}",
        path.display(),
        lines.len(),
        lines.join("\n")
    );
    lines
}

/// The line of `lines` whose request field contains `needle`.
fn line_for<'a>(
    lines: &'a [HashMap<&'static str, String>],
    needle: &str,
) -> &'a HashMap<&'static str, String> {
    lines
        .iter()
        .find(|l| l["request"].contains(needle))
        .unwrap_or_else(|| panic!("no line for {needle} in {lines:#?}"))
}

/// http "web" and https "secure" (h2 and HTTP/1.1): `/fixed` answers 404 itself, `/moved` is
/// redirected, `/dead/*` goes to a group whose target refuses connections, the rest to `app`.
fn config(app: SocketAddr, dead: SocketAddr, access_log: &str) -> String {
    let listener = |l: Listener| {
        l.forward("app")
            .rule(
                10,
                &path("/fixed"),
                r#"{ fixed_response = { status = 404, content_type = "text/plain", body = "none" } }"#,
            )
            .rule(
                20,
                &path("/moved"),
                r#"{ redirect = { host = "elsewhere.test", path = "/new", status = 301 } }"#,
            )
            .rule(30, &path("/dead/*"), &forward("dead"))
    };
    ConfigBuilder::new()
        .runtime("workers = 1")
        .self_signed("dev", &["localhost"])
        .listener(listener(Listener::http("web")))
        .listener(listener(
            Listener::https("secure", &["dev"]).line("alpn = [\"h2\", \"http/1.1\"]"),
        ))
        .target_group(TargetGroup::new("app", &[app]))
        .target_group(TargetGroup::new("dead", &[dead]))
        .raw(access_log)
        .build()
}

/// HTTP/1.1 GET on a fresh plain connection with a User-Agent; the status.
async fn get_ua(addr: SocketAddr, path: &str, ua: &str) -> u16 {
    let mut c = h1(TcpStream::connect(addr).await.unwrap()).await;
    let req = Request::get(path)
        .header("host", "app.test")
        .header("user-agent", ua)
        .body(empty())
        .unwrap();
    read(c.send_request(req).await.unwrap())
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn lines_parse_back_into_albs_fields_and_connections_share_their_trace_id() {
    let app = Backend::start("app").await;
    let dead = dead_port();
    let sw = Seawall::start(&config(
        app.addr,
        dead,
        "[access_log]\npath = \"access.log\"\nconnections_path = \"connections.log\"\n",
    ));
    let web = sw.addr("web");
    let secure = sw.addr("secure");
    let ua = r#"Mozilla/5.0 (X11; Linux) "quoted" back\slash"#;
    assert_eq!(get_ua(web, "/hello?a=1", ua).await, 200);
    assert_eq!(get_ua(web, "/fixed", "curl/8.0").await, 404);
    assert_eq!(get_ua(web, "/moved?q=2", "curl/8.0").await, 301);
    assert_eq!(get_ua(web, "/dead/x", "curl/8.0").await, 502);
    // HTTP/2 over TLS.
    let tls = tls_connect(secure, &Tls::new("localhost").h2())
        .await
        .unwrap();
    let mut c = h2(tls).await;
    let req = Request::get(format!("https://localhost:{}/two?x=y", secure.port()))
        .header("user-agent", "h2-client/1")
        .body(empty())
        .unwrap();
    assert_eq!(read(c.send_request(req).await.unwrap()).await.status, 200);
    drop(c);
    // A handshake that fails: not TLS at all.
    let mut junk = TcpStream::connect(secure).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let dir = sw.dir.path();
    let access: Vec<_> = lines_of(&dir.join("access.log"), 5)
        .await
        .iter()
        .map(|l| parse(&ALB_FIELDS, l))
        .collect();
    assert_eq!(access.len(), 5, "{access:#?}");

    let hello = line_for(&access, "/hello");
    assert_eq!(hello["type"], "http");
    assert_eq!(hello["elb"], "app/seawall/web");
    assert_eq!(hello["target:port"], app.addr.to_string());
    assert_eq!(hello["elb_status_code"], "200");
    assert_eq!(hello["target_status_code"], "200");
    assert_eq!(
        hello["request"],
        format!("GET http://app.test:{}/hello?a=1 HTTP/1.1", web.port())
    );
    assert_eq!(hello["user_agent"], ua);
    assert_eq!(hello["ssl_cipher"], "-");
    assert_eq!(hello["target_group_arn"], "app");
    assert!(hello["trace_id"].starts_with("Root=1-"), "{hello:?}");
    assert_eq!(hello["matched_rule_priority"], "0");
    assert_eq!(hello["actions_executed"], "forward");
    assert_eq!(hello["target:port_list"], app.addr.to_string());
    assert_eq!(hello["target_status_code_list"], "200");
    assert_eq!(hello["classification"], "-");
    for key in [
        "request_processing_time",
        "target_processing_time",
        "response_processing_time",
    ] {
        let t: f64 = hello[key].parse().unwrap();
        assert!((0.0..10.0).contains(&t), "{key} {t}");
    }
    assert!(
        hello["received_bytes"].parse::<u64>().unwrap() > 40,
        "{hello:?}"
    );
    assert!(
        hello["sent_bytes"].parse::<u64>().unwrap() > 40,
        "{hello:?}"
    );
    for key in ["time", "request_creation_time"] {
        assert!(
            hello[key].ends_with('Z') && hello[key].len() == 27,
            "{key}: {}",
            hello[key]
        );
    }
    assert!(hello["time"] >= hello["request_creation_time"]);

    let fixed = line_for(&access, "/fixed");
    assert_eq!(fixed["elb_status_code"], "404");
    assert_eq!(fixed["target_status_code"], "-");
    assert_eq!(fixed["target:port"], "-");
    assert_eq!(fixed["target_group_arn"], "-");
    assert_eq!(fixed["request_processing_time"], "-1");
    assert_eq!(fixed["target_processing_time"], "-1");
    assert_eq!(fixed["matched_rule_priority"], "10");
    assert_eq!(fixed["actions_executed"], "fixed-response");
    assert_eq!(fixed["redirect_url"], "-");

    let moved = line_for(&access, "/moved");
    assert_eq!(moved["elb_status_code"], "301");
    assert_eq!(moved["actions_executed"], "redirect");
    assert_eq!(moved["matched_rule_priority"], "20");
    assert_eq!(
        moved["redirect_url"],
        format!("http://elsewhere.test:{}/new?q=2", web.port())
    );

    let dead_line = line_for(&access, "/dead/x");
    assert_eq!(dead_line["elb_status_code"], "502");
    assert_eq!(dead_line["target_status_code"], "-");
    assert_eq!(dead_line["target_group_arn"], "dead");
    assert_eq!(dead_line["target:port"], dead.to_string());
    assert_eq!(dead_line["error_reason"], "TargetConnectionError");
    assert_eq!(dead_line["target_processing_time"], "-1");

    let two = line_for(&access, "/two");
    assert_eq!(two["type"], "h2");
    assert_eq!(
        two["request"],
        format!("GET https://localhost:{}/two?x=y HTTP/2.0", secure.port())
    );
    assert_eq!(two["user_agent"], "h2-client/1");
    assert_eq!(two["ssl_protocol"], "TLSv1.3");
    // OpenSSL's names, as ALB writes them (TLS 1.3's are the IANA ones).
    assert!(two["ssl_cipher"].starts_with("TLS_AES_"), "{two:?}");
    assert_eq!(two["domain_name"], "localhost");
    assert_eq!(two["chosen_cert_arn"], "dev");
    assert_eq!(two["elb"], "app/seawall/secure");
    // Plain connections have no line in the connection log, but a trace id all the same.
    assert!(hello["conn_trace_id"].starts_with("TID_"), "{hello:?}");
    assert_ne!(hello["conn_trace_id"], fixed["conn_trace_id"]);

    let connections: Vec<_> = lines_of(&dir.join("connections.log"), 2)
        .await
        .iter()
        .map(|l| parse(&CONNECTION_FIELDS, l))
        .collect();
    let ok = connections
        .iter()
        .find(|c| c["conn_trace_id"] == two["conn_trace_id"])
        .unwrap_or_else(|| panic!("no connection line for the h2 request: {connections:#?}"));
    assert_eq!(ok["tls_verify_status"], "Success");
    assert_eq!(ok["client_ip"], "127.0.0.1");
    assert_eq!(ok["listener_port"], secure.port().to_string());
    assert_eq!(ok["tls_protocol"], "TLSv1.3");
    assert_eq!(ok["tls_cipher"], two["ssl_cipher"]);
    assert!(ok["tls_handshake_latency"].parse::<f64>().unwrap() >= 0.0);
    assert_eq!(ok["leaf_client_cert_subject"], "-");
    let failed = connections
        .iter()
        .find(|c| c["tls_verify_status"].starts_with("Failed:"))
        .unwrap_or_else(|| panic!("no failed handshake: {connections:#?}"));
    assert_eq!(failed["tls_protocol"], "-");
    assert_eq!(
        failed["client_port"],
        junk.local_addr().unwrap().port().to_string()
    );
}

#[tokio::test]
async fn the_json_format_has_the_same_fields_under_athenas_names() {
    let app = Backend::start("app").await;
    let sw = Seawall::start(&config(
        app.addr,
        dead_port(),
        "[access_log]\npath = \"access.json\"\nformat = \"json\"\nconnections_path = \"conn.json\"\n",
    ));
    let ua = "agent \"with\" quotes";
    assert_eq!(get_ua(sw.addr("web"), "/json?k=v", ua).await, 200);
    assert_eq!(
        get(sw.addr("secure"), true, "localhost", "/tls")
            .await
            .status,
        200
    );
    let lines = lines_of(&sw.dir.path().join("access.json"), 2).await;
    let lines: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let plain = lines
        .iter()
        .find(|l| l["request_url"].as_str().unwrap().contains("/json"))
        .unwrap();
    assert_eq!(plain["type"], "http");
    assert_eq!(plain["user_agent"], ua);
    assert_eq!(plain["request_verb"], "GET");
    assert_eq!(plain["request_proto"], "HTTP/1.1");
    assert_eq!(plain["elb_status_code"], 200);
    assert_eq!(plain["target_port"], app.addr.port());
    assert_eq!(plain["matched_rule_priority"], 0);
    assert_eq!(plain["ssl_cipher"], serde_json::Value::Null);
    let tls = lines
        .iter()
        .find(|l| l["request_url"].as_str().unwrap().contains("/tls"))
        .unwrap();
    assert_eq!(tls["type"], "https");
    assert_eq!(tls["ssl_protocol"], "TLSv1.3");
    let conns = lines_of(&sw.dir.path().join("conn.json"), 1).await;
    let conn: serde_json::Value = serde_json::from_str(&conns[0]).unwrap();
    assert_eq!(conn["tls_verify_status"], "Success");
    assert_eq!(conn["conn_trace_id"], tls["conn_trace_id"]);
}

/// seawall logging into a FIFO, and the FIFO's read end, which the caller reads or not. It is
/// opened for reading (and writing, which on Linux never waits for the other end) before seawall
/// opens it: a FIFO that no process reads is refused at load.
fn seawall_on_a_fifo(app: SocketAddr) -> (Seawall, std::fs::File) {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo");
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let cfg = config(
        app,
        dead_port(),
        "[access_log]\npath = \"pipe\"\nbuffer_lines = 16\n",
    );
    let file = write_file(dir.path(), "seawall.toml", &cfg);
    (Seawall::start_file(dir, &file), reader)
}

/// Sends `n` GETs on `c`, one after the other, each answered 200.
async fn get_all_answered(c: &mut hyper::client::conn::http1::SendRequest<common::Body>, n: usize) {
    for i in 0..n {
        let req = Request::get(format!("/r/{i}"))
            .header("host", "app.test")
            .body(empty())
            .unwrap();
        assert_eq!(read(c.send_request(req).await.unwrap()).await.status, 200);
    }
}

/// A reader that never reads: the writer blocks once the pipe is full, then the buffer fills.
#[tokio::test]
async fn a_sink_that_stops_reading_drops_lines_and_never_holds_up_a_request() {
    use std::io::Read;
    let app = Backend::start("app").await;
    let (sw, mut reader) = seawall_on_a_fifo(app.addr);
    let web = sw.addr("web");
    let dropped = || sw.metric("seawall_access_log_dropped_total");
    assert_eq!(dropped(), 0.0);
    // 64 KiB of pipe is some 200 lines, then 16 wait in the buffer: 1 000 requests must drop
    // lines, and every one of them must still be answered.
    let mut c = h1(TcpStream::connect(web).await.unwrap()).await;
    let answered = tokio::time::timeout(PATIENCE, async {
        get_all_answered(&mut c, 1000).await;
    })
    .await;
    assert!(answered.is_ok(), "requests waited for the log writer");
    assert!(dropped() > 0.0, "nothing was dropped");
    // Reading again: the writer catches up, and later requests are logged again.
    let mut text = Vec::new();
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            let n = reader.read(&mut buf).unwrap();
            text.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&text).contains("/after ") {
                return text;
            }
        }
    });
    let mut got = false;
    for _ in 0..200 {
        let req = Request::get("/after")
            .header("host", "app.test")
            .body(empty())
            .unwrap();
        assert_eq!(read(c.send_request(req).await.unwrap()).await.status, 200);
        if drain.is_finished() {
            got = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(got, "no line reached the reader once it read again");
    let text = String::from_utf8(drain.join().unwrap()).unwrap();
    assert!(text.lines().next().unwrap().starts_with("http "), "{text}");
}

/// logrotate's way: rename the file, then SIGUSR1. Lines written before the signal are in the
/// renamed file, lines after it in a new one, and none is lost.
#[tokio::test]
async fn sigusr1_after_a_rename_moves_to_a_new_file_and_loses_nothing() {
    let app = Backend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = ConfigBuilder::new()
        .runtime("workers = 1")
        .listener(Listener::http("web").forward("app"))
        .target_group(TargetGroup::new("app", &[app.addr]))
        .raw("[access_log]\npath = \"access.log\"\n")
        .build();
    let file = write_file(dir.path(), "seawall.toml", &cfg);
    let mut p = Proc::start(&file, &["web"], false).await;
    let web = p.addr("web");
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let send = |prefix: &'static str, n: usize| async move {
        let mut c = h1(TcpStream::connect(web).await.unwrap()).await;
        for i in 0..n {
            let req = Request::get(format!("/{prefix}/{i}"))
                .header("host", "x")
                .body(empty())
                .unwrap();
            assert_eq!(read(c.send_request(req).await.unwrap()).await.status, 200);
        }
    };
    send("before", 20).await;
    lines_of(&log, 20).await;
    std::fs::rename(&log, &rotated).unwrap();
    send("between", 20).await;
    p.signal("USR1");
    assert!(
        eventually(PATIENCE, || async { p.log().contains("log file reopened") }).await,
        "{}",
        p.log()
    );
    send("after", 20).await;
    let new = lines_of(&log, 20).await;
    let old = lines_of(&rotated, 20).await;
    let all: Vec<&String> = old.iter().chain(&new).collect();
    assert!(
        eventually(PATIENCE, || async {
            let n = std::fs::read_to_string(&log).unwrap().lines().count()
                + std::fs::read_to_string(&rotated).unwrap().lines().count();
            n == 60
        })
        .await,
        "{all:#?}"
    );
    let new = std::fs::read_to_string(&log).unwrap();
    let old = std::fs::read_to_string(&rotated).unwrap();
    for i in 0..20 {
        assert!(old.contains(&format!("/before/{i} ")), "before/{i}");
        assert!(new.contains(&format!("/after/{i} ")), "after/{i}");
        assert!(
            old.contains(&format!("/between/{i} ")) ^ new.contains(&format!("/between/{i} ")),
            "between/{i} in exactly one file"
        );
    }
    p.signal("TERM");
    p.wait_exit(PATIENCE).await;
}

/// A reload turns the log on, moves it, and turns it off; a file that cannot be opened fails the
/// reload with its file, line and key, and the log in force stays.
#[tokio::test]
async fn reloads_turn_the_log_on_move_it_and_turn_it_off() {
    let app = Backend::start("app").await;
    let base = ConfigBuilder::new()
        .runtime("workers = 1")
        .listener(Listener::http("web").forward("app"))
        .target_group(TargetGroup::new("app", &[app.addr]))
        .build();
    let sw = Seawall::start(&base);
    let dir = sw.dir.path().to_path_buf();
    let web = sw.addr("web");
    let reload_with = |extra: &str| {
        std::fs::write(dir.join("seawall.toml"), format!("{base}\n{extra}")).unwrap();
    };
    assert_eq!(get(web, false, "x", "/off").await.status, 200);

    reload_with("[access_log]\npath = \"a.log\"\n");
    sw.running.reload().await.unwrap();
    assert_eq!(get(web, false, "x", "/to-a").await.status, 200);
    assert!(lines_of(&dir.join("a.log"), 1).await[0].contains("/to-a "));

    reload_with("[access_log]\npath = \"b.log\"\n");
    sw.running.reload().await.unwrap();
    assert_eq!(get(web, false, "x", "/to-b").await.status, 200);
    assert!(lines_of(&dir.join("b.log"), 1).await[0].contains("/to-b "));

    reload_with("[access_log]\npath = \"missing/dir/c.log\"\n");
    let err = sw.running.reload().await.unwrap_err().to_string();
    assert!(
        err.contains("seawall.toml:") && err.contains("access_log.path"),
        "{err}"
    );
    assert!(err.contains("missing/dir/c.log"), "{err}");
    assert_eq!(get(web, false, "x", "/still-b").await.status, 200);
    let b = lines_of(&dir.join("b.log"), 2).await;
    assert!(b[1].contains("/still-b "), "{b:#?}");

    reload_with("");
    sw.running.reload().await.unwrap();
    assert_eq!(get(web, false, "x", "/off-again").await.status, 200);
    // On again, to a third file: once its line is there, the writer has handled everything
    // handed to it before, so a line for /off-again would be in one of the files by now.
    reload_with("[access_log]\npath = \"c.log\"\n");
    sw.running.reload().await.unwrap();
    assert_eq!(get(web, false, "x", "/to-c").await.status, 200);
    let c = lines_of(&dir.join("c.log"), 1).await;
    assert_eq!(c.len(), 1, "{c:#?}");
    assert!(c[0].contains("/to-c "), "{c:#?}");
    for f in ["a.log", "b.log", "c.log"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(!text.contains("/off"), "{f}: {text}");
    }
    let count = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!((count("a.log"), count("b.log")), (1, 2));
}

/// A client that leaves before its answer is logged with ALB's 460 (and counted in no metric).
#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_logged_as_460() {
    let app = Backend::start("app").await;
    let sw = Seawall::start(&config(
        app.addr,
        dead_port(),
        "[access_log]\npath = \"access.log\"\n",
    ));
    let mut tcp = TcpStream::connect(sw.addr("web")).await.unwrap();
    tcp.write_all(b"GET /slow HTTP/1.1\r\nHost: app.test\r\nUser-Agent: impatient\r\n\r\n")
        .await
        .unwrap();
    let hits = app.hits.clone();
    assert!(
        eventually(PATIENCE, || async {
            hits.load(std::sync::atomic::Ordering::SeqCst) >= 1
        })
        .await,
        "the request never reached the target"
    );
    drop(tcp);
    let line = parse(
        &ALB_FIELDS,
        &lines_of(&sw.dir.path().join("access.log"), 1).await[0],
    );
    assert_eq!(line["elb_status_code"], "460");
    assert_eq!(line["target_status_code"], "-");
    assert_eq!(line["target:port"], app.addr.to_string());
    assert_eq!(line["user_agent"], "impatient");
    assert_eq!(line["target_processing_time"], "-1");
    let text = sw.metrics_text();
    assert_eq!(metric_total(&text, "seawall_requests_total"), 0.0, "{text}");
}

/// A destination that takes no lines does not keep seawall from stopping: the writer, stuck in a
/// write, is left behind after a few seconds.
#[tokio::test]
async fn a_sink_that_never_reads_does_not_hold_up_the_exit() {
    let app = Backend::start("app").await;
    let (sw, _reader) = seawall_on_a_fifo(app.addr);
    let mut c = h1(TcpStream::connect(sw.addr("web")).await.unwrap()).await;
    get_all_answered(&mut c, 1000).await;
    drop(c);
    assert!(sw.metric("seawall_access_log_dropped_total") > 0.0);
    let stopped = tokio::task::spawn_blocking(move || drop(sw));
    assert!(
        tokio::time::timeout(PATIENCE, stopped).await.is_ok(),
        "seawall did not stop while its log writer was stuck"
    );
}
