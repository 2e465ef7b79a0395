//! A forward: the request rewritten for a target of the group, sent (and resent as [`Retry`]
//! decides), and the target's answer streamed back or handed to a tunnel.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::body::{Reply, TargetWatch};
use super::record::{Facts, Moment};
use super::{discard, headers, incompatible, upgrade, ConnContext};
use crate::error::RequestError;
use crate::stickiness::{unix_seconds, Sealer, TargetStickiness};
use crate::targets::{State, TargetGroup};
use crate::upstream::retry::{Decision, Failure, Retry};
use crate::upstream::{
    pool, Added, BodyProgress, ClientBody, ClientConn, ForwardedFor, TraceId, UpstreamBody,
};

/// What the listener allows a forwarded request's body.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyLimits {
    /// `max_body_bytes`: more gets 413.
    pub max_bytes: Option<u64>,
    /// `idle_timeout`: how long the client may send nothing of the body while it is waited on;
    /// then 408, or the connection closed if the target has answered already.
    pub idle: std::time::Duration,
}

#[allow(clippy::manual_async_fn)] // see `proxy::handle`
pub(super) fn forward<'a>(
    mut req: Request<Incoming>,
    ctx: &'a ConnContext,
    tg: &'a Arc<TargetGroup>,
    sealer: Option<&'a Sealer>,
    body_limits: BodyLimits,
    discard_target: bool,
    facts: &'a mut Facts,
) -> impl Future<Output = Result<Response<Reply>, RequestError>> + 'a {
    async move {
        let max_body = body_limits.max_bytes;
        if let Some(limit) = max_body {
            // A declared length says it before any of it is read: no target is bothered.
            if req.body().size_hint().lower() > limit {
                discard::request(req, &ctx.activity);
                return Err(RequestError::BodyTooLarge(limit));
            }
        }
        let upgrade = headers::is_upgrade(&req);
        if let Some(why) = incompatible(&req, tg.protocol_version, upgrade) {
            discard::request(req, &ctx.activity);
            return Err(RequestError::IncompatibleProtocol(why));
        }
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        // Read before the head is rewritten for the target; `None` (no stickiness) is the one
        // branch a forward without it pays. Boxed, so that its room in every request's future
        // is a pointer.
        let sticky = match (&tg.stickiness, sealer) {
            (Some(st), Some(sealer)) => {
                let now = SystemTime::now();
                let headers = req.headers();
                let stuck_to = st.requested(sealer, headers, &tg.name, unix_seconds(now));
                Some(Box::new(Sticky {
                    stickiness: st,
                    sealer,
                    now,
                    stuck_to,
                    in_session: st.in_session(headers),
                }))
            }
            _ => None,
        };

        // A sticky target that cannot take the request (unhealthy, draining, gone) gives way to
        // a fresh pick, and the response sticks the client to that one.
        let stuck = sticky
            .as_ref()
            .and_then(|s| s.stuck_to)
            .and_then(|addr| tg.pick_sticky(addr));
        let mut target = match stuck {
            Some(t) => t,
            None => match tg.pick() {
                Some(t) => t,
                None => {
                    discard::request(req, &ctx.activity);
                    return Err(RequestError::NoTargets);
                }
            },
        };

        let (mut parts, body) = req.into_parts();
        let trace_id = facts.trace_id.insert(TraceId::of(&parts.headers));
        let forwarded = ForwardedFor {
            client_ip: &ctx.peer_ip,
            proto: ctx.listener.protocol.as_str(),
            port: &ctx.listener.port_header,
        };
        let added = headers::rewrite_request(
            &mut parts,
            tg.protocol_version,
            upgrade,
            Added::new(forwarded, trace_id),
            ctx.tls.as_ref().and_then(|t| t.client_cert.as_deref()),
        );
        let body = if body.is_end_stream() {
            UpstreamBody::Empty
        } else {
            let progress = Arc::new(BodyProgress::with_limit(max_body));
            facts.received = Some(progress.clone());
            let client = (parts.version < Version::HTTP_2)
                .then(|| ctx.activity.clone() as Arc<dyn ClientConn>);
            let expects_continue = discard::expects_continue(&parts.headers);
            UpstreamBody::Stream(Box::new(ClientBody::new(
                body,
                progress,
                client,
                expects_continue,
                body_limits.idle,
            )))
        };
        let replayable = !upgrade
            && matches!(body, UpstreamBody::Empty)
            && matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let mut retry = Retry::new(replayable);

        let mut body = Some(body);
        facts.timing.sent = Some(Moment::now());
        let (mut resp, outstanding) = loop {
            facts.target = Some(target.addr);
            let outstanding = target.begin();
            let mut request = Request::new(body.take().unwrap_or(UpstreamBody::Empty));
            *request.method_mut() = parts.method.clone();
            *request.version_mut() = parts.version;
            // The headers themselves, not a copy kept in case the request goes again: a failed
            // attempt that may go again gets them back from the pool (`SendError`).
            *request.headers_mut() = std::mem::take(&mut parts.headers);
            let (uri, added_host) = headers::target_uri(
                parts.uri.path_and_query(),
                request.headers_mut(),
                tg,
                &target,
            )?;
            *request.uri_mut() = uri;
            let sent = tokio::time::timeout(
                tg.response_timeout,
                target
                    .pool()
                    .send(request, added.as_ref(), &tg.upstream, retry.reuse()),
            );
            let answer = tokio::select! {
                answer = sent => answer,
                // The target's deregistration delay ended while it still owed the response head.
                _ = target.closed().cancelled() => {
                    return Err(RequestError::TargetReset("the target was deregistered".into()))
                }
            };
            let pool::SendError { error: e, headers } = match answer {
                // A target still waiting for the rest of the body is not the one too slow.
                Err(_) if facts.received.as_ref().is_some_and(|p| p.waiting()) => {
                    return Err(RequestError::BodyTimeout(
                        "unfinished at the target's response timeout",
                    ))
                }
                Err(_) => return Err(RequestError::ResponseTimeout),
                Ok(Ok(resp)) => break (resp, outstanding),
                Ok(Err(e)) => e,
            };
            debug!(target = %target.addr, error = %crate::error::error_chain(&e), "upstream request failed");
            let err = RequestError::from_upstream(&e);
            if let pool::Error::ClientBody(_) = e {
                // Not the target's failure: its health stands, and the request, whose body is
                // partly spent, cannot go again.
                if facts.received.as_ref().is_some_and(|p| p.stalled()) {
                    return Err(RequestError::BodyTimeout(
                        "none of it came for the idle timeout",
                    ));
                }
                if let (Some(limit), Some(p)) = (max_body, &facts.received) {
                    if p.too_large() {
                        return Err(RequestError::BodyTooLarge(limit));
                    }
                }
                return Err(err);
            }
            // The target never saw the request: it refused the connection, or did not answer
            // it at all (a stopped container's address usually times out).
            let unreachable = match &err {
                RequestError::ConnectFailed(detail) => Some(format!("connection failed: {detail}")),
                RequestError::ConnectTimeout => Some("connection timed out".to_string()),
                _ => None,
            };
            let failure = match (&e, &unreachable) {
                (pool::Error::Stale(_), _) => Failure::Stale,
                (_, Some(reason)) => {
                    // Passive health: a dead target costs one failed request, not a
                    // health-check interval.
                    // Logged once, by the request that changed the state (as the checker
                    // logs its own changes), not by every request that fails on it.
                    if let Some(from) = target.mark_failed(reason.clone()) {
                        warn!(
                            target_group = %tg.name,
                            target = %target.addr,
                            from = from.as_str(),
                            to = State::Unhealthy.as_str(),
                            reason = "Target.FailedHealthChecks",
                            description = %reason,
                            check = "passive",
                            "target state changed"
                        );
                    }
                    Failure::Unreachable
                }
                _ => Failure::Other,
            };
            // Without its headers back, the request cannot go again.
            let Some(mut headers) = headers else {
                return Err(err);
            };
            match retry.after(failure) {
                // The target is up; it closed an idle connection as the request went out.
                Decision::NewConnection => {}
                Decision::AnotherTarget => match tg.pick_another(&target) {
                    Some(next) => {
                        if added_host {
                            headers.remove(http::header::HOST);
                        }
                        target = next;
                    }
                    None => return Err(err),
                },
                Decision::GiveUp => return Err(err),
            }
            parts.headers = headers;
        };
        facts.timing.head = Some(Moment::now());
        if let Some(p) = &facts.received {
            p.answer_began();
        }
        facts.target_status = Some(resp.status());
        let head = headers::head_bytes(resp.status(), resp.headers());
        if head.bytes > pool::MAX_RESPONSE_HEAD {
            // Dropping the response closes its connection: the body is never read.
            return Err(RequestError::ResponseHeadTooLarge(head.bytes));
        }
        if discard_target {
            // Whatever the target made of the request's end, it reads nothing more on this
            // connection: it is closed once the response is over.
            resp.body_mut().forbid_reuse();
        }

        let switched = upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let shrunk = headers::rewrite_response(resp.headers_mut(), switched);
        // The head's size is known already (see `Facts::response_head`), less what was taken
        // out; a sticky forward's cookies are added below.
        facts.response_head = match shrunk {
            Some(bytes) if sticky.is_none() => Some(head.sent() - bytes),
            _ => None,
        };
        if let Some(s) = &sticky {
            // The target that answered, after any retry to another.
            s.stickiness.add_cookies(
                s.sealer,
                &tg.name,
                target.addr,
                s.stuck_to,
                s.in_session,
                resp.headers_mut(),
                s.now,
            );
        }
        if let (Some(client_side), true) = (client_upgrade, switched) {
            return Ok(upgrade::hand_off(client_side, resp, outstanding, ctx));
        }
        let (parts, mut body) = resp.into_parts();
        // No body to wait for (HEAD, 204, 304, an empty length): the exchange is over.
        if let Some(lease) = body.take_lease() {
            outstanding.target().pool().give_back(lease);
        }
        Ok(Response::from_parts(
            parts,
            Reply::upstream(body, TargetWatch::new(outstanding, tg.response_timeout)),
        ))
    }
}

/// What a forward to a group with target stickiness read from the request.
struct Sticky<'a> {
    stickiness: &'a TargetStickiness,
    sealer: &'a Sealer,
    now: SystemTime,
    /// The target the request's cookie names, if it has a valid one for this group.
    stuck_to: Option<SocketAddr>,
    /// app_cookie: the request carries the application's cookie.
    in_session: bool,
}
