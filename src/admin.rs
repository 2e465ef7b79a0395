//! The admin server: plain HTTP on its own socket, served by the control thread so that it answers
//! even when the data plane is saturated.
//!
//! - `GET /healthz`, `GET /ready`, `GET /metrics`;
//! - `GET /targets`: every group's targets in the shape of `aws elbv2 describe-target-health`,
//!   with seawall's own fields beside ALB's: `Source` (the origins that registered the target,
//!   joined with `+` in a fixed order: `config`, `api`, `discovery`, `config+api`, ...),
//!   `TaskArn` (only for a target discovery registered: its ECS task) and `InFlight`;
//! - `POST /targets/register` and `POST /targets/deregister` (ALB's RegisterTargets and
//!   DeregisterTargets) with `{"target_group": "<name>", "targets": ["<ip>:<port>", ...]}`,
//!   answering with the group's new state. Deregistering a target discovery registered is
//!   refused (409) and changes nothing. When `[admin] token` is set they need
//!   `Authorization: Bearer <token>`; reads stay open.
//!
//! Hardening, since orchestrators' probes need the admin port beyond loopback
//! (`config/container.toml` binds it to 0.0.0.0):
//! - an admin server bound beyond loopback without a token answers every POST endpoint 403
//!   (anyone who can reach the port could otherwise drain targets or start a binary), and each
//!   load says so in a warning; reads stay open for the probes and Prometheus;
//! - the token is compared in constant time;
//! - at most [`MAX_CONNECTIONS`] connections at once (more are closed as they are accepted),
//!   each with a head/idle deadline and a lifetime, so that a flood of connections holds no more
//!   than that; the admin server runs on the control thread, apart from the data plane, so it
//!   cannot take the data plane's workers either.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::control::Control;
use crate::snapshot::Group;
use crate::targets::{MembershipError, Origin, Registration, Target, Update};

/// A request body larger than this is refused (413): a register call with a thousand targets
/// is about 25 KiB.
const MAX_BODY: usize = 64 * 1024;
/// A client that has not sent its whole body by then is answered 408, so a slow sender cannot
/// hold a connection on the control thread.
const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; one more is closed as soon as it is accepted. Probes, a
/// Prometheus scraper and an operator need a handful; the cap keeps a flood of connections to
/// what a few file descriptors and tasks cost.
pub const MAX_CONNECTIONS: usize = 64;
/// From a connection's start, or the end of its last answer, to the end of the next request head
/// (hyper starts this clock again when a kept-alive connection goes idle): a connection that sends
/// nothing is closed by then.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// The longest a connection lives, whatever it does: long enough for an upgrade's 30 s, short
/// enough that a client that never reads its answer lets go of its slot.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

type Resp = Response<Full<Bytes>>;

/// Serves until `stop` is cancelled.
pub async fn serve(listener: TcpListener, control: Arc<Control>, stop: CancellationToken) {
    // The socket's own address: after a binary upgrade it is the one inherited, whatever the
    // new file says.
    let locked = match listener.local_addr() {
        Ok(bind) => {
            warn_if_locked(bind, control.settings.load().admin_token.as_ref());
            LockedOut::beyond_loopback(bind)
        }
        // Not expected of a bound socket; refusing changes is the side to err on.
        Err(_) => Some(LockedOut { bind: None }),
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once: waiting for a slot would keep the flood's sockets open.
            debug!(%peer, max = MAX_CONNECTIONS, "admin connection refused: too many open");
            drop(tcp);
            continue;
        };
        let control = control.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let control = control.clone();
                async move { Ok::<_, Infallible>(handle(req, &control, locked.as_ref()).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_DEADLINE)
                .serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {
                    debug!(%peer, "admin connection closed: lifetime over");
                }
                _ = stop.cancelled() => {}
            }
            drop(slot);
        });
    }
}

/// Why changes through the admin API are refused: it listens beyond loopback and no token is
/// set. Only `GET`s are served then.
#[derive(Debug, Clone, Copy)]
struct LockedOut {
    /// The admin socket's address, for the reason given (`None`: it could not be read).
    bind: Option<SocketAddr>,
}

impl LockedOut {
    /// `Some` when `bind` is reachable from beyond this machine (a token then decides).
    fn beyond_loopback(bind: SocketAddr) -> Option<LockedOut> {
        (!bind.ip().to_canonical().is_loopback()).then_some(LockedOut { bind: Some(bind) })
    }

    fn reason(&self) -> String {
        let bind = self
            .bind
            .map_or_else(|| "an address".to_string(), |b| b.to_string());
        format!(
            "the admin server listens on {bind}, beyond loopback, and [admin] has no token: \
             changes through it are refused; set [admin] token (then send Authorization: Bearer \
             <token>), or bind the admin server to 127.0.0.1"
        )
    }
}

/// Logs, at each load, that the admin API refuses changes: reachable beyond loopback with no
/// token. `bind` is the admin socket's address.
pub fn warn_if_locked(bind: SocketAddr, token: Option<&AdminToken>) {
    if token.is_none() {
        if let Some(locked) = LockedOut::beyond_loopback(bind) {
            warn!(addr = %bind, "{}", locked.reason());
        }
    }
}

/// The bearer token that the admin API's mutating endpoints require. Its `Debug` output hides the
/// value, so that logging a configuration does not leak it.
#[derive(Clone)]
pub struct AdminToken(Arc<[u8]>);

impl AdminToken {
    pub fn new(token: impl AsRef<[u8]>) -> Self {
        AdminToken(token.as_ref().into())
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`.
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let Some(space) = value.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (scheme, rest) = value.split_at(space);
        // The scheme is case-insensitive (RFC 9110, section 11.1).
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let presented = rest.trim_ascii_start();
        // An empty token (which the configuration refuses) must not let an empty one through.
        !self.0.is_empty() && constant_time_eq(&self.0, presented)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Compares the two values' SHA-256 digests with `subtle`'s constant-time equality: the time
/// taken tells neither how much of `presented` matched nor how long the token is (a comparison
/// of the values themselves would stop at a length mismatch).
fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    let (expected, presented) = (Sha256::digest(expected), Sha256::digest(presented));
    expected.as_slice().ct_eq(presented.as_slice()).into()
}

async fn handle(req: Request<Incoming>, control: &Control, locked: Option<&LockedOut>) -> Resp {
    let path = req.uri().path();
    if matches!(
        path,
        "/targets/register" | "/targets/deregister" | "/reload" | "/upgrade"
    ) {
        if req.method() != Method::POST {
            return method_not_allowed(true, "POST");
        }
        if let Some(denied) = authorize(control, req.headers(), locked) {
            return denied;
        }
    }
    match path {
        "/targets/register" => return change_targets(req, control, Change::Register).await,
        "/targets/deregister" => return change_targets(req, control, Change::Deregister).await,
        "/reload" => return reload(control).await,
        "/upgrade" => return upgrade(control).await,
        _ => {}
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let json_api = matches!(req.uri().path(), "/targets" | "/config");
        return method_not_allowed(json_api, "GET, HEAD");
    }
    let draining = control.shutdown.is_cancelled();
    match req.uri().path() {
        "/healthz" if draining => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/ready" if draining => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/ready" if control.ready.load(Ordering::Acquire) => {
            let waiting = control.discovery.waiting();
            if waiting.is_empty() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "starting: waiting for the first discovery of target groups {}\n",
                        waiting.join(", ")
                    ),
                )
            }
        }
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        "/metrics" => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(control.plane.metrics.render())))
            .expect("static parts are valid"),
        "/config" => json(StatusCode::OK, &control.config.load().to_json()),
        "/targets" => {
            let snapshot = control.plane.snapshot.load();
            let all = AllTargets {
                target_groups: snapshot.target_groups.iter().map(describe).collect(),
            };
            json(StatusCode::OK, &all)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /ready, /metrics, /targets or /config\n",
        ),
    }
}

/// `POST /reload`: reloads the configuration file now and answers with the outcome. Each request
/// reloads (requests are never merged).
async fn reload(control: &Control) -> Resp {
    match crate::reload::request(control, "POST /reload").await {
        Ok(info) => json(
            StatusCode::OK,
            &serde_json::json!({ "result": "success", "config": info.to_json() }),
        ),
        Err(e) => {
            let status = match *e {
                // The file is wrong: the request was understood, its content cannot be applied.
                crate::reload::ReloadError::Config(_) => StatusCode::UNPROCESSABLE_ENTITY,
                // A port is taken: the configuration conflicts with the machine's state.
                crate::reload::ReloadError::Bind(_) => StatusCode::CONFLICT,
            };
            json(status, &e.to_json())
        }
    }
}

/// `POST /upgrade`: starts the configured binary, hands it the sockets and, once it is ready,
/// drains this process (as SIGUSR2 does).
async fn upgrade(control: &Control) -> Resp {
    match crate::upgrade::request(control).await {
        Ok(pid) => json(
            StatusCode::OK,
            &serde_json::json!({ "result": "success", "pid": pid }),
        ),
        Err(e) => {
            let status = match *e {
                // Both are the process's state, not a fault: one upgrade at a time, and none
                // from a container's PID 1.
                crate::upgrade::UpgradeError::Busy | crate::upgrade::UpgradeError::Pid1 => {
                    StatusCode::CONFLICT
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, e.to_string())
        }
    }
}

fn text(status: StatusCode, body: &str) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("static parts are valid")
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    let mut body = serde_json::to_vec(value).expect("admin answers serialise");
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static parts are valid")
}

fn error(status: StatusCode, reason: impl Into<String>) -> Resp {
    json(
        status,
        &ErrorBody {
            error: reason.into(),
        },
    )
}

fn method_not_allowed(json_api: bool, allow: &'static str) -> Resp {
    let mut r = if json_api {
        error(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}"))
    } else {
        text(StatusCode::METHOD_NOT_ALLOWED, &format!("use {allow}\n"))
    };
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Every mutating endpoint is let through this first: with `[admin] token` set, it gives the 401
/// to answer unless the request carries the token; without one, the 403 of an admin server
/// reachable beyond loopback.
fn authorize(control: &Control, headers: &HeaderMap, locked: Option<&LockedOut>) -> Option<Resp> {
    // Read per request: a reload may set or remove the token.
    match &control.settings.load().admin_token {
        None => locked.map(|l| error(StatusCode::FORBIDDEN, l.reason())),
        Some(token) if !token.authorizes(headers) => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs the admin token: Authorization: Bearer <token>",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"seawall admin\""),
            );
            Some(r)
        }
        Some(_) => None,
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

// ---------------------------------------------------------------------------------------------
// GET /targets: ALB's DescribeTargetHealth

#[derive(Serialize)]
struct AllTargets {
    target_groups: Vec<GroupTargets>,
}

#[derive(Serialize)]
struct GroupTargets {
    name: String,
    #[serde(rename = "TargetHealthDescriptions")]
    descriptions: Vec<TargetHealthDescription>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TargetHealthDescription {
    target: TargetId,
    /// A string, as ALB gives it.
    health_check_port: String,
    target_health: TargetHealth,
    /// seawall's own: the origins that register the target, joined with `+` (`config+api`). A
    /// string whatever their number, so readers of the one-origin form keep working.
    source: String,
    /// seawall's own: the ECS task behind a target discovery registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    task_arn: Option<String>,
    /// seawall's own: requests sent to the target whose response has not finished.
    in_flight: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TargetId {
    id: String,
    port: u16,
}

/// As ALB, a target without a reason (a healthy one) has neither `Reason` nor `Description`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TargetHealth {
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

fn describe(g: &Group) -> GroupTargets {
    GroupTargets {
        name: g.group.name.to_string(),
        descriptions: g
            .group
            .state
            .members()
            .iter()
            .map(|t| describe_target(t, g.health_check.port))
            .collect(),
    }
}

fn describe_target(t: &Target, health_check_port: Option<u16>) -> TargetHealthDescription {
    let reason = t.reason();
    TargetHealthDescription {
        target: TargetId {
            id: t.addr.ip().to_string(),
            port: t.addr.port(),
        },
        health_check_port: health_check_port.unwrap_or(t.addr.port()).to_string(),
        target_health: TargetHealth {
            state: t.state().as_str(),
            reason: reason.as_ref().map(|r| r.code),
            description: reason.map(|r| r.description),
        },
        source: t.sources().to_string(),
        task_arn: t.task_arn().map(|arn| arn.to_string()),
        in_flight: t.outstanding(),
    }
}

// ---------------------------------------------------------------------------------------------
// POST /targets/register and /targets/deregister

#[derive(Debug, Clone, Copy)]
enum Change {
    Register,
    Deregister,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetChange {
    target_group: String,
    targets: Vec<String>,
}

const CHANGE_SHAPE: &str =
    r#"expected {"target_group": "<name>", "targets": ["<ip>:<port>", ...]}"#;

async fn change_targets(req: Request<Incoming>, control: &Control, change: Change) -> Resp {
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let request: TargetChange = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}; {CHANGE_SHAPE}"),
            )
        }
    };
    // Loaded after the body is in, so that a reload during a slow upload is seen.
    let snapshot = control.plane.snapshot.load();
    let Some(cg) = snapshot.group_named(&request.target_group) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no target group is named {:?}", request.target_group),
        );
    };
    let addrs = match parse_targets(&request.targets) {
        Ok(a) => a,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let tg = &cg.group;
    let listed: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    match change {
        Change::Register => {
            let regs = addrs.into_iter().map(Registration::from).collect();
            let added =
                match tg
                    .state
                    .apply(Origin::Api, Update::Add(regs), tg.deregistration_delay)
                {
                    Ok(applied) => applied.added,
                    Err(e) => return membership_error(&e),
                };
            info!(target_group = %tg.name, targets = ?listed, added = added.len(), "targets registered via the admin API");
        }
        Change::Deregister => {
            let members = tg.state.members();
            let unknown: Vec<&str> = addrs
                .iter()
                .zip(&listed)
                .filter(|(a, _)| !members.iter().any(|t| t.addr == **a))
                .map(|(_, s)| s.as_str())
                .collect();
            drop(members);
            // As ALB's InvalidTarget: nothing changes when any of them is not registered.
            if !unknown.is_empty() {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "not registered in target group {:?}: {}",
                        &*tg.name,
                        unknown.join(", ")
                    ),
                );
            }
            let started =
                match tg
                    .state
                    .apply(Origin::Api, Update::Remove(addrs), tg.deregistration_delay)
                {
                    Ok(applied) => applied.draining,
                    Err(e) => return membership_error(&e),
                };
            info!(target_group = %tg.name, targets = ?listed, draining = started.len(), delay = ?tg.deregistration_delay, "targets deregistered via the admin API");
        }
    }
    json(StatusCode::OK, &describe(cg))
}

/// The answer to a membership change the target group refused (nothing changed).
fn membership_error(e: &MembershipError) -> Resp {
    let status = match e {
        // The request is well formed; the targets' state (discovery owns them) forbids it.
        MembershipError::Discovered { .. } => StatusCode::CONFLICT,
    };
    error(status, e.to_string())
}

/// Why a request body was not read.
enum BodyError {
    TooLarge,
    Late,
    Read(String),
}

impl BodyError {
    fn response(self) -> Resp {
        match self {
            BodyError::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over {MAX_BODY} bytes"),
            ),
            BodyError::Late => error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {BODY_DEADLINE:?}"),
            ),
            BodyError::Read(e) => error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            ),
        }
    }
}

/// The whole body, within [`MAX_BODY`] and [`BODY_DEADLINE`].
async fn read_body(body: Incoming) -> Result<Bytes, BodyError> {
    // A declared length over the limit is refused before a byte of it is read.
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(BodyError::TooLarge);
    }
    match tokio::time::timeout(BODY_DEADLINE, Limited::new(body, MAX_BODY).collect()).await {
        Err(_) => Err(BodyError::Late),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// `ip:port` addresses; every bad one is named.
fn parse_targets(targets: &[String]) -> Result<Vec<SocketAddr>, String> {
    if targets.is_empty() {
        return Err(format!("\"targets\" is empty; {CHANGE_SHAPE}"));
    }
    let mut addrs = Vec::with_capacity(targets.len());
    let mut bad = Vec::new();
    for t in targets {
        match t.trim().parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            _ => bad.push(format!("{t:?}")),
        }
    }
    if bad.is_empty() {
        Ok(addrs)
    } else {
        Err(format!(
            "not an <ip>:<port> target address (port 1 to 65535): {}",
            bad.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn token_needs_the_bearer_scheme_and_the_exact_value() {
        let t = AdminToken::new("s3cret");
        assert!(t.authorizes(&headers("Bearer s3cret")));
        assert!(t.authorizes(&headers("bearer s3cret")));
        assert!(!t.authorizes(&HeaderMap::new()));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer S3cret",
            "Bearer ",
            "Basic s3cret",
            "s3cret",
            "Bearers3cret",
        ] {
            assert!(!t.authorizes(&headers(wrong)), "{wrong}");
        }
        assert_eq!(format!("{t:?}"), "AdminToken(<redacted>)");
        assert!(!AdminToken::new("").authorizes(&headers("Bearer ")));
    }

    #[test]
    fn changes_are_locked_out_beyond_loopback_only() {
        for open in [
            "127.0.0.1:9901",
            "127.8.9.10:1",
            "[::1]:9901",
            "[::ffff:127.0.0.1]:9901",
        ] {
            let bind: SocketAddr = open.parse().unwrap();
            assert!(LockedOut::beyond_loopback(bind).is_none(), "{open}");
        }
        for locked in [
            "0.0.0.0:9901",
            "10.0.0.5:9901",
            "[::]:9901",
            "[fd00::1]:9901",
        ] {
            let bind: SocketAddr = locked.parse().unwrap();
            let reason = LockedOut::beyond_loopback(bind).expect(locked).reason();
            assert!(
                reason.contains(locked) && reason.contains("token"),
                "{reason}"
            );
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"a\xff", b"a"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn target_lists_are_checked_whole() {
        let ok = parse_targets(&["127.0.0.1:80".into(), "[::1]:8080".into()]).unwrap();
        assert_eq!(ok.len(), 2);
        let dup = parse_targets(&["127.0.0.1:80".into(), "127.0.0.1:80".into()]).unwrap();
        assert_eq!(dup.len(), 1);
        let err =
            parse_targets(&["10.0.0.1".into(), "10.0.0.2:0".into(), "x:1".into()]).unwrap_err();
        assert!(
            err.contains("\"10.0.0.1\"")
                && err.contains("\"10.0.0.2:0\"")
                && err.contains("\"x:1\""),
            "{err}"
        );
        assert!(parse_targets(&[]).is_err());
    }
}
