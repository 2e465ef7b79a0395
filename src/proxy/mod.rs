//! One request: check its framing, route it, then answer it directly (fixed response, redirect) or
//! forward it to a target and stream the answer back.
//!
//! - [`record`]: the request's record, made on arrival, finished with the response body;
//! - [`forward`]: the forward, with [`headers`] (rewriting both heads) and [`upgrade`] (the
//!   tunnel hand-off); its retries are [`Retry`](crate::upstream::retry::Retry)'s to decide;
//! - [`body`]: the response body, which carries the record and the target's guards;
//! - [`discard`]: a request body no target reads, read and thrown away.

mod body;
mod discard;
mod forward;
mod headers;
pub mod record;
mod upgrade;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use tracing::debug;

use body::Reply;
pub use body::ResponseBody;
pub use record::{Record, TlsFacts};

use crate::access_log::{ConnText, ConnTraceId};
use crate::descriptors::ClientSlot;
use crate::error::RequestError;
use crate::protocol::ProtocolVersion;
use crate::routing::{
    Action, FixedResponse, Forward, GroupId, RedirectRequest, RedirectTemplate, RequestView,
};
use crate::server::activity::Activity;
use crate::server::framing;
use crate::server::ListenerContext;
use crate::snapshot::Snapshot;
use crate::stickiness::{self, Sealer};
use crate::targets::TargetGroup;
use crate::upstream::{TraceId, X_AMZN_TRACE_ID};
use record::{ActionKind, Facts};

/// What a request needs to know of its connection, computed once per connection and shared by
/// its requests' records.
pub struct ConnContext {
    pub listener: Arc<ListenerContext>,
    pub peer: SocketAddr,
    /// The peer's IP as `X-Forwarded-For` writes it, rendered once per connection.
    pub peer_ip: HeaderValue,
    pub activity: Arc<Activity>,
    /// What the TLS handshake settled; `None` on plain listeners.
    pub tls: Option<TlsFacts>,
    /// ALB's `conn_trace_id`, shared by the connection log's line and the requests' lines.
    pub trace_id: ConnTraceId,
    /// The connection's parts of its requests' access-log lines, formatted on the first.
    pub log_text: ConnText,
    /// The connection's place under the process's cap on client connections. A WebSocket's
    /// tunnel outlives the HTTP connection and still holds the client's descriptor (and a
    /// target's), so it takes this along rather than let the cap forget the connection.
    pub slot: Arc<ClientSlot>,
}

/// Handles one request. Never fails: every error becomes the status code ALB would answer with.
///
/// This and the functions it awaits return `async move` blocks rather than being `async fn`s: an
/// `async fn` copies its arguments into locals of its body, so the request (264 bytes) would take
/// room twice at each level of the request's future, which is allocated and copied per request.
#[allow(clippy::manual_async_fn)] // on purpose, see above
pub fn handle(
    req: Request<Incoming>,
    ctx: Arc<ConnContext>,
) -> impl Future<Output = Response<ResponseBody>> {
    async move {
        let grpc = grpc_content_type(req.headers()).cloned();
        // Begun before the record, which takes it as it is made: set afterwards, the entry
        // (some 200 bytes) would be built aside and copied in.
        let line = ctx
            .listener
            .plane
            .access_log
            .requests_on()
            .then(|| record::begin_entry(&req, &ctx, grpc.is_some()));
        let mut record = Box::new(Record::new(ctx, line));
        record.facts.version = req.version();
        let ctx = &*record.conn;
        let http1 = req.version() < Version::HTTP_2;
        let facts = &mut record.facts;
        // The record joins the response only at the end (see `Reply`).
        let mut response = match respond(req, ctx, facts).await {
            Ok(r) => {
                facts.status = Some(r.status());
                r
            }
            Err(e) => {
                // Debug, not warn: one line per failed request would flood the log exactly
                // when targets die. A target that cannot be reached logs its state change once
                // (passive health, `forward`), and every such answer is counted in
                // seawall_elb_responses_total{code}.
                if e.side() == crate::error::Side::Upstream {
                    let group = facts.metrics.as_ref().and_then(|m| m.group());
                    debug!(listener = %ctx.listener.name, target_group = group.map_or("", |g| &**g), error = %e, "answering with {}", e.status());
                } else {
                    debug!(listener = %ctx.listener.name, peer = %ctx.peer, error = %e, "bad request");
                }
                // Counted under the HTTP status even when a gRPC client is answered with 200 and a
                // grpc-status, so that dashboards see the failure.
                let r = error_response(&e, grpc);
                facts.response_head = None;
                facts.status = Some(e.status());
                facts.error = Some(e);
                r
            }
        };
        // A draining HTTP/1 connection tells its client not to send another request on it, so that
        // closing it afterwards cannot race with one (see `server::DRAIN_IDLE_GRACE`).
        if http1 && ctx.activity.closing() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            facts.response_head = None;
        }
        facts.timing.responded = Some(record::Moment::now());
        let known = facts.response_head;
        if let Some(entry) = &mut record.line {
            record::responded(entry, &response, known);
        }
        response.map(|reply| ResponseBody::new(reply, record))
    }
}

/// A routed request's action, resolved in the snapshot the router came from, so that what it
/// needs outlives the snapshot's guard.
enum Resolved {
    Forward(Forwarding),
    FixedResponse(FixedResponse),
    Redirect(Arc<RedirectTemplate>),
}

/// A forward's chosen group and what its stickiness needs.
struct Forwarding {
    group: Arc<TargetGroup>,
    /// Only when the forward or the group is sticky: otherwise no cookie is read or written.
    sealer: Option<Arc<Sealer>>,
    /// The forward's group stickiness (`AWSALBTG`), if on.
    group_stickiness: Option<Duration>,
    /// The listener's bounds on the request body, from the same snapshot.
    body: forward::BodyLimits,
}

/// The group of `f` that takes a request: the one its `AWSALBTG` cookie names, when the forward
/// is sticky and that group (of any weight: a client stays on blue after a flip to green until
/// its cookie expires, as in ALB) can serve; else a pick by weight.
fn choose_group(f: &Forward, snapshot: &Snapshot, headers: &HeaderMap) -> Option<GroupId> {
    if f.stickiness.is_some() {
        let now = stickiness::unix_seconds(SystemTime::now());
        let stuck = stickiness::requested_group(&snapshot.sealer, headers, now).and_then(|c| {
            f.groups
                .iter()
                .map(|g| g.group)
                .find(|&id| snapshot.group(id).name.as_bytes() == c.group())
        });
        if let Some(id) = stuck.filter(|&id| snapshot.group(id).can_serve()) {
            return Some(id);
        }
    }
    f.pick(|id| snapshot.group(id).can_serve())
}

#[allow(clippy::manual_async_fn)] // see `handle`
fn respond<'a>(
    mut req: Request<Incoming>,
    ctx: &'a ConnContext,
    facts: &'a mut Facts,
) -> impl Future<Output = Result<Response<Reply>, RequestError>> + 'a {
    async move {
        // Taken first, so that a request rejected before its framing is judged cannot leave its
        // head's facts to a pipelined one after it.
        let raw_head = ctx.activity.take_raw_head();
        if req.method() == Method::CONNECT {
            return Err(RequestError::BadRequest("CONNECT is not proxied"));
        }
        let discard_target = check_framing(&mut req, raw_head, ctx, facts)?;
        let host = request_host(&req)?;
        let resolved = {
            let snapshot = ctx.listener.plane.snapshot.load();
            let Some((listener, metrics)) = snapshot.served(&ctx.listener.name) else {
                discard::request(req, &ctx.activity);
                return Err(RequestError::NoTargets);
            };
            let (matched, evaluated) = listener.router.find_counted(&RequestView {
                host: strip_port(host),
                path: req.uri().path(),
                method: req.method(),
                headers: req.headers(),
                query: req.uri().query().unwrap_or(""),
                client_ip: ctx.peer.ip(),
            });
            facts.rule = Some(matched.priority);
            if evaluated > 0 {
                let evaluations = &ctx.listener.counters.rule_evaluations;
                evaluations.inc_by(evaluated.into());
            }
            // The group is taken from the snapshot the router came from. Answers seawall makes
            // itself are counted by the listener (the record's default).
            match matched.action {
                Action::Forward(f) => {
                    // Every weight 0: ALB's 503, counted by the listener (no group answered).
                    let Some(id) = choose_group(f, &snapshot, req.headers()) else {
                        discard::request(req, &ctx.activity);
                        return Err(RequestError::NoTargets);
                    };
                    facts.metrics = Some(metrics.groups[id.0].clone());
                    let group = snapshot.group(id).clone();
                    let sticky = f.stickiness.is_some() || group.stickiness.is_some();
                    Resolved::Forward(Forwarding {
                        sealer: sticky.then(|| snapshot.sealer.clone()),
                        group,
                        group_stickiness: f.stickiness,
                        body: forward::BodyLimits {
                            max_bytes: listener.max_body_bytes,
                            idle: snapshot.limits.idle_timeout,
                        },
                    })
                }
                Action::FixedResponse(f) => Resolved::FixedResponse(f.clone()),
                Action::Redirect(t) => Resolved::Redirect(t.clone()),
            }
        };
        match resolved {
            Resolved::FixedResponse(f) => {
                facts.action = Some(ActionKind::FixedResponse);
                facts.trace_id = client_trace_id(&req);
                let mut resp = Response::new(Reply::full(f.body));
                *resp.status_mut() = f.status;
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, f.content_type);
                discard::request(req, &ctx.activity);
                Ok(resp)
            }
            Resolved::Redirect(t) => {
                facts.action = Some(ActionKind::Redirect);
                facts.trace_id = client_trace_id(&req);
                let location = t.location(&RedirectRequest {
                    protocol: ctx.listener.protocol.as_str(),
                    host: strip_port(host),
                    port: ctx.listener.port,
                    path: req.uri().path(),
                    query: req.uri().query().unwrap_or(""),
                });
                discard::request(req, &ctx.activity);
                let mut resp = Response::new(Reply::full(Bytes::new()));
                *resp.status_mut() = t.status;
                match HeaderValue::from_str(&location) {
                    Ok(v) => resp.headers_mut().insert(header::LOCATION, v),
                    Err(_) => return Err(RequestError::BadRequest("unrepresentable redirect")),
                };
                Ok(resp)
            }
            Resolved::Forward(fwd) => {
                facts.action = Some(ActionKind::Forward);
                let sealer = fwd.sealer.as_deref();
                let mut resp = forward::forward(
                    req,
                    ctx,
                    &fwd.group,
                    sealer,
                    fwd.body,
                    discard_target,
                    facts,
                )
                .await?;
                if let (Some(duration), Some(sealer)) = (fwd.group_stickiness, sealer) {
                    // Refreshed on every response, as ALB does.
                    stickiness::add_group_cookies(
                        sealer,
                        &fwd.group.name,
                        duration,
                        resp.headers_mut(),
                        SystemTime::now(),
                    );
                }
                Ok(resp)
            }
        }
    }
}

/// The trace id a client sent, for the record of an answer seawall makes itself (a forward makes
/// one when the client sent none: `TraceId::of`).
fn client_trace_id(req: &Request<Incoming>) -> Option<TraceId> {
    req.headers()
        .get(X_AMZN_TRACE_ID)
        .cloned()
        .map(TraceId::Client)
}

/// Classifies the request's framing and addressing (`server::framing`, from the raw head and
/// hyper's parse) and acts on it by the listener's desync mitigation mode, before anything is
/// forwarded: hyper accepts some doubtful framings and keeps the stale header. `Ok(true)`: the
/// request goes on, but its connections, to the client and to the target, end after it.
fn check_framing(
    req: &mut Request<Incoming>,
    raw_head: Option<framing::RawHead>,
    ctx: &ConnContext,
    facts: &mut Facts,
) -> Result<bool, RequestError> {
    let judgment = framing::judge(
        raw_head,
        req.method(),
        req.version(),
        req.uri(),
        req.headers(),
    );
    let verdict = judgment.verdict;
    let mut close = false;
    // A compliant request is forwarded in every mode: the snapshot is not even looked at.
    if let Some(reason) = verdict.cause() {
        facts.classification = verdict.alb_classification();
        let plane = &ctx.listener.plane;
        plane.metrics.desync(reason);
        let mode = plane
            .snapshot
            .load()
            .listener(&ctx.listener.name)
            .map_or_else(framing::Mitigation::default, |l| l.desync_mitigation);
        match mode.action(verdict) {
            framing::Action::Refuse => return Err(RequestError::BadRequest(verdict.reason())),
            framing::Action::ForwardThenClose => {
                close = true;
                // HTTP/2 streams are framed by the protocol, so only HTTP/1 has a connection
                // whose next request could be misread.
                if req.version() < Version::HTTP_2 {
                    ctx.activity.ask_to_close();
                }
            }
            framing::Action::Forward => {}
        }
        debug!(listener = %ctx.listener.name, peer = %ctx.peer, ?verdict, mode = mode.as_str(), reason = verdict.reason(), "forwarding a request of doubtful framing");
    }
    if let Some(one) = judgment.content_length {
        req.headers_mut().insert(header::CONTENT_LENGTH, one);
    }
    Ok(close)
}

/// The request's host as the client wrote it: `:authority` for HTTP/2, else the Host header (or
/// the authority of an absolute-form target).
fn request_host(req: &Request<Incoming>) -> Result<&str, RequestError> {
    let from_header = || {
        req.headers().get(header::HOST).map(|h| {
            h.to_str()
                .map_err(|_| RequestError::BadRequest("Host is not text"))
        })
    };
    let from_uri = || req.uri().authority().map(|a| Ok(a.as_str()));
    let host = if req.version() == Version::HTTP_2 {
        from_uri().or_else(from_header)
    } else {
        from_header().or_else(from_uri)
    };
    match host {
        Some(h) => h,
        None if req.version() == Version::HTTP_11 => {
            Err(RequestError::BadRequest("HTTP/1.1 request without Host"))
        }
        None => Ok(""),
    }
}

/// `example.test:8443` → `example.test`; `[::1]:8443` → `[::1]`.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i)
            if !host[i + 1..].is_empty()
                && host[i + 1..].bytes().all(|b| b.is_ascii_digit())
                && !host[..i].ends_with(':') =>
        {
            &host[..i]
        }
        Some(i) if host.len() == i + 1 => &host[..i],
        _ => host,
    }
}

/// The request's content type when it is gRPC (`application/grpc`, `application/grpc+proto`,
/// gRPC-Web's `application/grpc-web...`).
fn grpc_content_type(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers
        .get(header::CONTENT_TYPE)
        .filter(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// ALB's compatibility of request protocol and target group protocol version, which it enforces
/// with 464. One difference: a plain HTTP/1.1 request to an http2 group is sent as HTTP/2 (ALB
/// refuses it), since nothing is lost in that translation. What cannot be translated is refused:
/// an upgrade (WebSocket) has no HTTP/2 form here, gRPC needs HTTP/2 both ways, and a grpc
/// group takes gRPC's POSTs only.
fn incompatible(
    req: &Request<Incoming>,
    version: ProtocolVersion,
    upgrade: bool,
) -> Option<&'static str> {
    let grpc = grpc_content_type(req.headers())
        .is_some_and(|v| !v.as_bytes().starts_with(b"application/grpc-web"));
    match version {
        ProtocolVersion::Http1 if grpc => Some("gRPC needs a grpc or http2 target group"),
        ProtocolVersion::Http2 | ProtocolVersion::Grpc if upgrade => {
            Some("upgrades (WebSocket) need an http1 target group")
        }
        ProtocolVersion::Grpc if req.version() != Version::HTTP_2 => {
            Some("a grpc target group takes HTTP/2 requests only")
        }
        ProtocolVersion::Grpc if req.method() != Method::POST => {
            Some("a grpc target group takes POST requests only")
        }
        _ => None,
    }
}

/// seawall's own answer to a failed request. A gRPC client gets gRPC's "trailers-only" form
/// (HTTP 200, the status in `grpc-status` and `grpc-message`), which gRPC clients read as the
/// call's status; an HTTP error status would reach the application as a generic error.
fn error_response(e: &RequestError, grpc: Option<HeaderValue>) -> Response<Reply> {
    let status = e.status();
    let mut line = format!("{} {}", status.as_str(), e.reason());
    if let RequestError::IncompatibleProtocol(why) = e {
        line = format!("{line}: {why}");
    }
    let mut resp = match grpc {
        Some(content_type) => {
            let mut resp = Response::new(Reply::full(Bytes::new()));
            let headers = resp.headers_mut();
            headers.insert(header::CONTENT_TYPE, content_type);
            headers.insert("grpc-status", HeaderValue::from(e.grpc_status()));
            // The line is printable ASCII without '%', which grpc-message carries unencoded.
            if let Ok(v) = HeaderValue::from_str(&line) {
                headers.insert("grpc-message", v);
            }
            resp
        }
        None => {
            let mut resp = Response::new(Reply::full(Bytes::from(format!("{line}\n"))));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
    };
    if matches!(
        e,
        RequestError::BadRequest(_)
            | RequestError::ClientBody(_)
            | RequestError::BodyTooLarge(_)
            | RequestError::BodyTimeout(_)
    ) {
        // The connection's framing can no longer be trusted, or a body too large to take is
        // read only to throw it away (`discard`) or not read at all, or its client is too slow
        // to wait for.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.test:8443"), "example.test");
        assert_eq!(strip_port("example.test"), "example.test");
        assert_eq!(strip_port("example.test:"), "example.test");
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
