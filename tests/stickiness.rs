//! ALB's weighted forward and its stickiness, end to end: the spread of requests by weight, a
//! blue/green flip by reload that clients holding `AWSALBTG` do not follow, target stickiness by
//! seawall's cookie (lb_cookie) and by the application's (app_cookie), a sticky target that goes
//! away, cookies that must be ignored, and instances that share `cookie_key`.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::Request;
use http_body_util::Full;
use seawall::stickiness::{Kind, Sealer, Ticket};
use seawall::targets::State;
use tokio::net::TcpStream;

/// Generous bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(10);

/// Fast health checks, so that a stopped target is seen unhealthy within half a second.
const FAST: &str = r#"interval = "100ms"
timeout = "50ms"
healthy_threshold = 2
unhealthy_threshold = 2"#;

const KEY: &str = "a cookie key shared by the instances";

/// One keep-alive HTTP/1.1 connection, as a browser would hold.
struct Client {
    send: hyper::client::conn::http1::SendRequest<Body>,
}

impl Client {
    async fn new(addr: SocketAddr) -> Client {
        Client {
            send: h1(TcpStream::connect(addr).await.unwrap()).await,
        }
    }

    /// GET `path` sending `cookies` (`name=value` pairs) as one `Cookie` line each, as HTTP/2
    /// clients do.
    async fn get(&mut self, path: &str, cookies: &[String]) -> Got {
        let mut req = Request::get(path).header("host", "sticky.test");
        for c in cookies {
            req = req.header("cookie", c.as_str());
        }
        let req = req.body(empty()).unwrap();
        self.send.ready().await.unwrap();
        read(self.send.send_request(req).await.unwrap()).await
    }
}

/// The `Set-Cookie` lines of a response, whole.
fn set_cookie_lines(got: &Got) -> Vec<String> {
    got.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The `name=value` pair of the cookie `name` a response sets, as a client sends it back.
fn cookie(got: &Got, name: &str) -> Option<String> {
    set_cookie_lines(got).into_iter().find_map(|line| {
        let pair = line.split(';').next().unwrap().trim().to_string();
        pair.starts_with(&format!("{name}=")).then_some(pair)
    })
}

/// Which backend answered (the echo's `id`, or an h2 target's body).
fn who(got: &Got) -> String {
    assert_eq!(got.status, 200, "{}", got.text());
    match serde_json::from_slice::<serde_json::Value>(&got.body) {
        Ok(v) => v["id"].as_str().unwrap().to_string(),
        Err(_) => got.text(),
    }
}

/// A group `name` of `backends` with fast health checks and `lines` (stickiness, algorithm).
fn group(name: &str, backends: &[&Backend], lines: &str) -> TargetGroup {
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    TargetGroup::new(name, &addrs)
        .line(lines)
        .health_check(FAST)
}

/// `{ forward = { groups = [...], stickiness = ... } }`
fn weighted(groups: &[(&str, u16)], stickiness: Option<&str>) -> String {
    let groups: Vec<String> = groups
        .iter()
        .map(|(n, w)| format!("{{ name = \"{n}\", weight = {w} }}"))
        .collect();
    let sticky = stickiness.map_or(String::new(), |d| format!(", stickiness = \"{d}\""));
    format!(
        "{{ forward = {{ groups = [{}]{sticky} }} }}",
        groups.join(", ")
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_forward_spreads_requests_by_weight() {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .listener(
                Listener::http("canary")
                    .default_action(&weighted(&[("blue", 90), ("green", 10)], None)),
            )
            .listener(
                Listener::http("flipped")
                    .default_action(&weighted(&[("blue", 0), ("green", 100)], None)),
            )
            .target_groups([group("blue", &[&blue], ""), group("green", &[&green], "")])
            .build(),
    );
    const N: usize = 10_000;
    const CLIENTS: usize = 4;
    let addr = sw.addr("canary");
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(addr).await;
            for _ in 0..N / CLIENTS {
                let got = c.get("/", &[]).await;
                assert_eq!(got.status, 200);
                assert!(cookie(&got, "AWSALBTG").is_none(), "no stickiness asked");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(blue.hits() + green.hits(), N);
    let share = blue.hits() as f64 / N as f64;
    assert!(
        (0.88..=0.92).contains(&share),
        "blue took {:.2}% of {N}",
        share * 100.0
    );
    assert_eq!(
        sw.metric("seawall_requests_total{listener=\"canary\",target_group=\"green\",code=\"200\"}")
            as usize,
        green.hits(),
        "each request counted under the group chosen"
    );

    let before = blue.hits();
    let mut c = Client::new(sw.addr("flipped")).await;
    for _ in 0..200 {
        assert_eq!(who(&c.get("/", &[]).await), "green");
    }
    assert_eq!(blue.hits(), before, "weight 0 takes no new client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_blue_green_flip_sticky_clients_stay_on_blue_until_their_cookie_goes() {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let config = |blue_w: u16, green_w: u16| {
        ConfigBuilder::new()
            .listener(Listener::http("web").default_action(&weighted(
                &[("blue", blue_w), ("green", green_w)],
                Some("1h"),
            )))
            .target_groups([group("blue", &[&blue], ""), group("green", &[&green], "")])
            .build()
    };
    let sw = Seawall::start(&config(100, 0));
    let mut c = Client::new(sw.addr("web")).await;
    let first = c.get("/", &[]).await;
    assert_eq!(who(&first), "blue");
    let lines = set_cookie_lines(&first);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("AWSALBTG="), "{lines:?}");
    assert!(lines[0].ends_with("; Path=/"), "{lines:?}");
    assert!(lines[0].contains("; Expires="), "{lines:?}");
    assert!(lines[1].starts_with("AWSALBTGCORS="), "{lines:?}");
    assert!(
        lines[1].ends_with("; Path=/; SameSite=None; Secure"),
        "{lines:?}"
    );
    let mut held = cookie(&first, "AWSALBTG").unwrap();

    std::fs::write(sw.dir.path().join("seawall.toml"), config(0, 100)).unwrap();
    sw.running.reload().await.unwrap();

    for _ in 0..5 {
        let got = c.get("/", std::slice::from_ref(&held)).await;
        assert_eq!(who(&got), "blue", "the cookie holds the client on blue");
        // Refreshed on every response.
        held = cookie(&got, "AWSALBTG").expect("a refreshed cookie");
    }
    let mut fresh = Client::new(sw.addr("web")).await;
    for _ in 0..5 {
        let got = fresh.get("/", &[]).await;
        assert_eq!(
            who(&got),
            "green",
            "a client without the cookie follows the weights"
        );
        assert!(cookie(&got, "AWSALBTG").is_some());
    }
    // The CORS twin alone holds the client too (a cross-site request carries only it).
    let twin = cookie(&first, "AWSALBTGCORS").unwrap();
    assert_eq!(who(&c.get("/", &[twin]).await), "blue");

    // Every weight 0 (ALB's 503): no new client is taken, a sticky one still is.
    std::fs::write(sw.dir.path().join("seawall.toml"), config(0, 0)).unwrap();
    sw.running.reload().await.unwrap();
    assert_eq!(fresh.get("/", &[]).await.status, 503);
    assert_eq!(who(&c.get("/", &[held]).await), "blue");
}

/// lb_cookie stickiness under `algorithm`: the first answer's target keeps the client while
/// clients without the cookie are spread.
async fn lb_cookie_sticks(algorithm: &str) {
    let backends = [
        Backend::start("t0").await,
        Backend::start("t1").await,
        Backend::start("t2").await,
    ];
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .listener(Listener::http("web").forward("web"))
            .target_group(group(
                "web",
                &backends.iter().collect::<Vec<_>>(),
                &format!(
                    "algorithm = \"{algorithm}\"\nstickiness = {{ type = \"lb_cookie\", duration = \"1h\" }}"
                ),
            ))
            .build(),
    );
    sw.wait_healthy("web").await;
    let mut c = Client::new(sw.addr("web")).await;
    let first = c.get("/", &[]).await;
    let stuck = who(&first);
    let lines = set_cookie_lines(&first);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("AWSALB=") && lines[0].ends_with("; Path=/"));
    assert!(lines[1].starts_with("AWSALBCORS="));
    assert!(lines[1].ends_with("; Path=/; SameSite=None; Secure"));
    let held = cookie(&first, "AWSALB").unwrap();
    for _ in 0..12 {
        let got = c.get("/", std::slice::from_ref(&held)).await;
        assert_eq!(who(&got), stuck);
        assert!(
            cookie(&got, "AWSALB").is_some(),
            "refreshed on every response"
        );
    }
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        seen.insert(who(&c.get("/", &[]).await));
    }
    assert!(
        seen.len() >= 2,
        "without the cookie, {algorithm} spreads: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_cookie_sticks_with_round_robin() {
    lb_cookie_sticks("round_robin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_cookie_sticks_with_least_outstanding_requests() {
    lb_cookie_sticks("least_outstanding_requests").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_target_gone_unhealthy_gives_way_to_a_fresh_pick_and_a_new_cookie() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .listener(Listener::http("web").forward("web"))
            .target_group(group(
                "web",
                &[&a, &b],
                "stickiness = { type = \"lb_cookie\" }",
            ))
            .build(),
    );
    sw.wait_healthy("web").await;
    let mut c = Client::new(sw.addr("web")).await;
    let first = c.get("/", &[]).await;
    let stuck = who(&first);
    let held = cookie(&first, "AWSALB").unwrap();
    let (gone, other) = if stuck == "a" { (&a, "b") } else { (&b, "a") };
    gone.kill();
    let member = sw.member("web", gone.addr).unwrap();
    assert!(
        eventually(PATIENCE, || {
            let m = member.clone();
            async move { m.state() == State::Unhealthy }
        })
        .await,
        "the stopped target is seen unhealthy"
    );
    let got = c.get("/", std::slice::from_ref(&held)).await;
    assert_eq!(who(&got), other, "a fresh pick, not an error");
    let renewed = cookie(&got, "AWSALB").expect("a new cookie");
    assert_ne!(renewed, held);
    for _ in 0..4 {
        assert_eq!(
            who(&c.get("/", std::slice::from_ref(&renewed)).await),
            other
        );
    }
}

/// Before any health check sees the sticky target gone, the request meets a refused connection:
/// it is retried on another target (passive health), and the new cookie names that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_target_that_refuses_the_connection_is_retried_elsewhere() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .listener(Listener::http("web").forward("web"))
            .target_group(
                TargetGroup::new("web", &[a.addr, b.addr])
                    .line("stickiness = { type = \"lb_cookie\" }")
                    // Checks too slow to matter here.
                    .health_check("interval = \"300s\""),
            )
            .build(),
    );
    // The first round of checks runs at start: waited out, so that none can see the target
    // gone. Else it may leave the dead target `Initial` while the other turns `Healthy`, and the
    // request goes to the healthy one without trying the dead one (nothing to mark).
    for addr in [a.addr, b.addr] {
        let sw = &sw;
        assert!(
            eventually(PATIENCE, || async move {
                sw.member("web", addr).unwrap().state() == State::Healthy
            })
            .await
        );
    }
    let mut c = Client::new(sw.addr("web")).await;
    let first = c.get("/", &[]).await;
    let stuck = who(&first);
    let held = cookie(&first, "AWSALB").unwrap();
    let (gone, other) = if stuck == "a" { (&a, "b") } else { (&b, "a") };
    gone.kill();
    let addr = gone.addr;
    // The abort takes effect on the backend's runtime; its port refuses once it has.
    assert!(
        eventually(PATIENCE, || async move {
            TcpStream::connect(addr).await.is_err()
        })
        .await
    );
    let got = c.get("/", std::slice::from_ref(&held)).await;
    assert_eq!(who(&got), other);
    let renewed = cookie(&got, "AWSALB").unwrap();
    assert_eq!(who(&c.get("/", &[renewed]).await), other);
    assert_eq!(
        sw.member("web", gone.addr).unwrap().state(),
        State::Unhealthy,
        "marked by the failed connection, not by a check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_cookie_is_followed_only_while_the_applications_cookie_is_sent() {
    // h2c targets that say who they are, and start a session on /login.
    let target = |id: &'static str| {
        Target::start(Serves::H2c, move |req| async move {
            let mut resp = http::Response::builder();
            if req.uri().path() == "/login" {
                resp = resp.header(
                    "set-cookie",
                    format!("SESSION={id}-session; Path=/; HttpOnly"),
                );
            }
            resp.body(Full::new(bytes::Bytes::from(id))).unwrap()
        })
    };
    let (t0, t1) = (target("t0").await, target("t1").await);
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .listener(Listener::http("web").forward("web"))
            .target_group(
                TargetGroup::new("web", &[t0.addr, t1.addr])
                    .line("protocol_version = \"http2\"")
                    .line("stickiness = { type = \"app_cookie\", cookie_name = \"SESSION\", duration = \"1h\" }")
                    .health_check(FAST),
            )
            .build(),
    );
    sw.wait_healthy("web").await;
    let mut c = Client::new(sw.addr("web")).await;

    let plain = c.get("/", &[]).await;
    assert!(
        set_cookie_lines(&plain).is_empty(),
        "no session, no cookie: {:?}",
        set_cookie_lines(&plain)
    );
    let login = c.get("/login", &[]).await;
    let stuck = who(&login);
    let session = cookie(&login, "SESSION").unwrap();
    let app = cookie(&login, "AWSALBAPP-0").expect("seawall's cookie beside the application's");
    for _ in 0..8 {
        let got = c.get("/", &[session.clone(), app.clone()]).await;
        assert_eq!(who(&got), stuck, "followed while SESSION is sent");
    }
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        seen.insert(who(&c.get("/", std::slice::from_ref(&app)).await));
    }
    assert_eq!(
        seen.len(),
        2,
        "without SESSION the cookie is not followed: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_garbage_expired_tampered_and_other_group_cookies_are_ignored() {
    let t0 = Backend::start("t0").await;
    let t1 = Backend::start("t1").await;
    let o = Backend::start("o").await;
    let sticky = "stickiness = { type = \"lb_cookie\", duration = \"1h\" }";
    let sw = Seawall::start(
        &ConfigBuilder::new()
            .runtime(&format!("cookie_key = \"{KEY}\""))
            .listener(Listener::http("web").forward("web"))
            .listener(Listener::http("other").forward("other"))
            .target_groups([
                group("web", &[&t0, &t1], sticky),
                group("other", &[&o], sticky),
            ])
            .build(),
    );
    sw.wait_healthy("web").await;
    let mut c = Client::new(sw.addr("web")).await;

    let seal = |key: &str, expires: u64, group: &str| {
        let value = Sealer::new(key.as_bytes()).seal(&Ticket {
            kind: Kind::Target,
            expires,
            group,
            target: Some(t0.addr),
        });
        format!("AWSALB={value}")
    };
    // The test seals as seawall does: a good cookie for t0 holds the client there.
    let good = seal(KEY, unix_now() + 600, "web");
    for _ in 0..4 {
        assert_eq!(who(&c.get("/", std::slice::from_ref(&good)).await), "t0");
    }

    let other_group = cookie(
        &Client::new(sw.addr("other")).await.get("/", &[]).await,
        "AWSALB",
    )
    .unwrap();
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let bad = [
        ("garbage", "AWSALB=garbage!!".to_string()),
        ("empty", "AWSALB=".to_string()),
        (
            "forged",
            seal("another key of some length", unix_now() + 600, "web"),
        ),
        ("expired", seal(KEY, unix_now() - 10, "web")),
        ("other group", other_group),
        ("tampered", tampered),
        (
            "a group cookie as AWSALB",
            format!(
                "AWSALB={}",
                Sealer::new(KEY.as_bytes()).seal(&Ticket {
                    kind: Kind::Group,
                    expires: unix_now() + 600,
                    group: "web",
                    target: None,
                })
            ),
        ),
    ];
    for (what, cookie_pair) in bad {
        let mut seen = BTreeSet::new();
        for _ in 0..4 {
            let got = c.get("/", std::slice::from_ref(&cookie_pair)).await;
            assert_eq!(got.status, 200, "{what}");
            assert!(cookie(&got, "AWSALB").is_some(), "{what}: a new cookie");
            seen.insert(who(&got));
        }
        assert_eq!(seen.len(), 2, "{what}: a fresh pick each time: {seen:?}");
    }
}

/// Two instances with the same targets; `shared` gives both the same `cookie_key`. Whether the
/// second keeps the client where the first's cookie says.
async fn second_instance_honours_first_cookie(shared: bool) -> bool {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let config = ConfigBuilder::new()
        .runtime(if shared {
            "cookie_key = \"a cookie key shared by the instances\""
        } else {
            ""
        })
        .listener(Listener::http("web").forward("web"))
        .target_group(group(
            "web",
            &[&a, &b],
            "stickiness = { type = \"lb_cookie\", duration = \"1h\" }",
        ))
        .build();
    let first = Seawall::start(&config);
    let second = Seawall::start(&config);
    first.wait_healthy("web").await;
    second.wait_healthy("web").await;
    let got = Client::new(first.addr("web")).await.get("/", &[]).await;
    let stuck = who(&got);
    let held = cookie(&got, "AWSALB").unwrap();
    let mut c = Client::new(second.addr("web")).await;
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        seen.insert(who(&c.get("/", std::slice::from_ref(&held)).await));
    }
    if shared {
        assert_eq!(seen, BTreeSet::from([stuck.clone()]));
    }
    seen == BTreeSet::from([stuck])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_cookie_key_honour_each_others_cookies() {
    assert!(second_instance_honours_first_cookie(true).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_their_own_keys_ignore_each_others_cookies() {
    assert!(!second_instance_honours_first_cookie(false).await);
}
