//! One request: check its framing, route it, then answer it directly (fixed response, redirect) or
//! forward it to a target and stream the answer back.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tracing::{debug, warn};

use crate::error::RequestError;
use crate::protocol::ProtocolVersion;
use crate::routing::{Action, RedirectRequest, RequestView};
use crate::server::activity::{Activity, RequestGuard};
use crate::server::ListenerContext;
use crate::targets::{OutstandingGuard, TargetGroup};
use crate::tunnel;
use crate::upstream::pool::{Lease, Reuse};
use crate::upstream::{self, ForwardedFor, UpstreamBody};

/// What a request needs to know of its connection.
pub struct ConnContext {
    pub listener: Arc<ListenerContext>,
    pub peer: SocketAddr,
    /// The peer's IP as `X-Forwarded-For` writes it, rendered once per connection.
    pub peer_ip: HeaderValue,
    pub activity: Arc<Activity>,
}

/// Handles one request. Never fails: every error becomes the status code ALB would answer with.
///
/// This and the functions it awaits return `async move` blocks rather than being `async fn`s: an
/// `async fn` copies its arguments into locals of its body, so the request (264 bytes) would take
/// room twice at each level of the request's future, which is allocated and copied per request.
#[allow(clippy::manual_async_fn)] // on purpose, see above
pub fn handle(
    req: Request<Incoming>,
    ctx: &ConnContext,
) -> impl Future<Output = Response<ResponseBody>> + '_ {
    async move {
        let request_guard = ctx.activity.begin_request();
        let listener = &ctx.listener;
        let grpc = grpc_content_type(req.headers()).cloned();
        let http1 = req.version() < Version::HTTP_2;
        let (mut response, target_group, code) = match respond(req, ctx).await {
            Ok((r, tg)) => {
                let code = r.status();
                (r, tg, code)
            }
            Err((e, tg)) => {
                if e.side() == crate::error::Side::Upstream {
                    warn!(listener = %listener.name, target_group = tg.as_deref().unwrap_or(""), error = %e, "answering with {}", e.status());
                } else {
                    debug!(listener = %listener.name, peer = %ctx.peer, error = %e, "bad request");
                }
                // Counted under the HTTP status even when a gRPC client is answered with 200 and a
                // grpc-status, so that dashboards see the failure.
                (error_response(&e, grpc), tg, e.status())
            }
        };
        let metrics = &listener.plane.metrics;
        metrics
            .requests_total
            .with_label_values(&[
                &*listener.name,
                target_group.as_deref().unwrap_or(""),
                code.as_str(),
            ])
            .inc();
        if target_group.is_none() || response.body().is_generated() {
            metrics
                .elb_responses_total
                .with_label_values(&[code.as_str()])
                .inc();
        }
        // A draining HTTP/1 connection tells its client not to send another request on it, so that
        // closing it afterwards cannot race with one (see `server::DRAIN_IDLE_GRACE`).
        if http1 && ctx.activity.closing() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response.body_mut().request = Some(request_guard);
        response
    }
}

type Failure = (RequestError, Option<Arc<str>>);

#[allow(clippy::manual_async_fn)] // see `handle`
fn respond(
    mut req: Request<Incoming>,
    ctx: &ConnContext,
) -> impl Future<Output = Result<(Response<ResponseBody>, Option<Arc<str>>), Failure>> + '_ {
    async move {
        if req.method() == Method::CONNECT {
            return Err((RequestError::BadRequest("CONNECT is not proxied"), None));
        }
        if ctx.activity.take_framing_conflict() {
            // hyper has already dropped the Content-Length of this head (see `Activity`).
            return Err((
                RequestError::BadRequest("both Content-Length and Transfer-Encoding"),
                None,
            ));
        }
        check_framing(req.headers_mut()).map_err(|e| (e, None))?;
        let host = request_host(&req).map_err(|e| (e, None))?;
        let (action, group) = {
            let snapshot = ctx.listener.plane.snapshot.load();
            let Some(listener) = snapshot.listener(&ctx.listener.name) else {
                return Err((RequestError::NoTargets, None));
            };
            let action = listener
                .router
                .find(&RequestView {
                    host: strip_port(host),
                    path: req.uri().path(),
                })
                .clone();
            // The group is taken from the snapshot the router came from.
            let group = match action {
                Action::Forward(id) => Some(snapshot.group(id).clone()),
                _ => None,
            };
            (action, group)
        };
        match action {
            Action::FixedResponse(f) => {
                let mut resp = Response::new(ResponseBody::full(f.body));
                *resp.status_mut() = f.status;
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, f.content_type);
                Ok((resp, None))
            }
            Action::Redirect(t) => {
                let location = t.location(&RedirectRequest {
                    protocol: ctx.listener.protocol.as_str(),
                    host: strip_port(host),
                    port: ctx.listener.port,
                    path: req.uri().path(),
                    query: req.uri().query().unwrap_or(""),
                });
                let mut resp = Response::new(ResponseBody::full(Bytes::new()));
                *resp.status_mut() = t.status;
                match HeaderValue::from_str(&location) {
                    Ok(v) => resp.headers_mut().insert(header::LOCATION, v),
                    Err(_) => {
                        return Err((RequestError::BadRequest("unrepresentable redirect"), None))
                    }
                };
                Ok((resp, None))
            }
            Action::Forward(_) => {
                let tg = group.expect("taken with the forward");
                let name = tg.name.clone();
                forward(req, ctx, &tg)
                    .await
                    .map(|r| (r, Some(name.clone())))
                    .map_err(|e| (e, Some(name)))
            }
        }
    }
}

/// Rejects requests whose body framing two parsers could read differently (request smuggling):
/// Content-Length with Transfer-Encoding, or Content-Length values that disagree. hyper accepts
/// both and keeps the stale header, so this runs before anything is forwarded. Equal repeated
/// values (`5, 5` or two `5` lines) are folded into one.
fn check_framing(headers: &mut HeaderMap) -> Result<(), RequestError> {
    let mut first: Option<&[u8]> = None;
    let mut repeated = false;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value
            .as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
        {
            match first {
                None => first = Some(part),
                Some(f) if f == part => repeated = true,
                Some(_) => {
                    return Err(RequestError::BadRequest(
                        "conflicting Content-Length values",
                    ))
                }
            }
        }
    }
    let Some(first) = first else {
        return Ok(());
    };
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(RequestError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if repeated {
        let one = HeaderValue::from_bytes(first)
            .map_err(|_| RequestError::BadRequest("bad Content-Length"))?;
        headers.insert(header::CONTENT_LENGTH, one);
    }
    Ok(())
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

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[allow(clippy::manual_async_fn)] // see `handle`
fn forward<'a>(
    mut req: Request<Incoming>,
    ctx: &'a ConnContext,
    tg: &'a Arc<TargetGroup>,
) -> impl Future<Output = Result<Response<ResponseBody>, RequestError>> + 'a {
    async move {
        let upgrade = is_upgrade(&req);
        if let Some(why) = incompatible(&req, tg.protocol_version, upgrade) {
            return Err(RequestError::IncompatibleProtocol(why));
        }
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        if parts.version == Version::HTTP_2 && !parts.headers.contains_key(header::HOST) {
            // The target sees the client's host in Host, as behind ALB. An HTTP/1 target would
            // otherwise get the target's ip:port as Host (see below); an HTTP/2 target gets the
            // target's ip:port as :authority, so Host is where it finds the client's host.
            if let Some(a) = parts.uri.authority() {
                if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                    parts.headers.insert(header::HOST, v);
                }
            }
        }
        // `TE: trailers` is the one TE that HTTP/2 carries, and gRPC servers may require it.
        let te_trailers = tg.protocol_version != ProtocolVersion::Http1
            && parts
                .headers
                .get_all(header::TE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
        upstream::strip_hop_by_hop(&mut parts.headers, upgrade);
        if te_trailers {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        if upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        upstream::add_forwarded(
            &mut parts.headers,
            &ForwardedFor {
                client_ip: &ctx.peer_ip,
                proto: ctx.listener.protocol.as_str(),
                port: &ctx.listener.port_header,
            },
        );
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.version = match tg.protocol_version {
            ProtocolVersion::Http1 => Version::HTTP_11,
            ProtocolVersion::Http2 | ProtocolVersion::Grpc => Version::HTTP_2,
        };
        let body = if body.is_end_stream() {
            UpstreamBody::Empty
        } else {
            UpstreamBody::Stream(body)
        };
        // Only a request that can be sent again unchanged is retried: on another target when the
        // connection failed, so the target cannot have seen it; on a new connection to the same
        // target when a reused one was closed under it (idempotent, so sending it twice is allowed).
        let retryable = !upgrade
            && matches!(body, UpstreamBody::Empty)
            && matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);

        let http1_target = tg.protocol_version == ProtocolVersion::Http1;
        let mut target = tg.pick().ok_or(RequestError::NoTargets)?;
        let mut body = Some(body);
        let mut retried = false;
        let mut reuse = Reuse::Pooled;
        let started = Instant::now();
        let (mut resp, outstanding, mut lease) = loop {
            let outstanding = target.begin();
            let mut request = Request::new(body.take().unwrap_or(UpstreamBody::Empty));
            *request.method_mut() = parts.method.clone();
            *request.version_mut() = parts.version;
            *request.headers_mut() = if retryable && !retried {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            // The forms hyper-util's client used to write, which targets keep seeing: an HTTP/1
            // request line in origin-form, with the client's Host (the target's address when the
            // client sent none, as from HTTP/1.0); an HTTP/2 request with the target's address as
            // :authority.
            *request.uri_mut() = if http1_target {
                if !request.headers().contains_key(header::HOST) {
                    request.headers_mut().insert(
                        header::HOST,
                        upstream::host_header(&target.authority, &tg.scheme),
                    );
                }
                Uri::from(path.clone())
            } else {
                Uri::builder()
                    .scheme(tg.scheme.clone())
                    .authority(target.authority.clone())
                    .path_and_query(path.clone())
                    .build()
                    .map_err(|_| RequestError::BadRequest("unrepresentable request target"))?
            };
            let sent = tokio::time::timeout(
                tg.response_timeout,
                target.pool().send(request, &tg.upstream, reuse),
            );
            let answer = tokio::select! {
                answer = sent => answer,
                // The target's deregistration delay ended while it still owed the response head.
                _ = target.closed().cancelled() => {
                    return Err(RequestError::TargetReset("the target was deregistered".into()))
                }
            };
            match answer {
                Err(_) => return Err(RequestError::ResponseTimeout),
                Ok(Ok((resp, lease))) => break (resp, outstanding, lease),
                Ok(Err(e)) => {
                    debug!(target = %target.addr, error = %crate::error::error_chain(&e), "upstream request failed");
                    if e.is_stale() && retryable && reuse == Reuse::Pooled {
                        // The target is up; it closed an idle connection as the request went out.
                        reuse = Reuse::NewConnection;
                        continue;
                    }
                    let err = RequestError::from_upstream(&e);
                    // The target never saw the request: it refused the connection, or did not answer
                    // it at all (a stopped container's address usually times out).
                    let unreachable = match &err {
                        RequestError::ConnectFailed(detail) => {
                            Some(format!("connection failed: {detail}"))
                        }
                        RequestError::ConnectTimeout => Some("connection timed out".to_string()),
                        _ => None,
                    };
                    if let Some(reason) = unreachable {
                        // A dead target costs one failed request, not a health-check interval.
                        if target.mark_failed(reason.clone()) {
                            warn!(target_group = %tg.name, target = %target.addr, %reason, "target unhealthy (passive)");
                        }
                        if retryable && !retried {
                            if let Some(next) = tg.pick_healthy() {
                                retried = true;
                                target = next;
                                continue;
                            }
                        }
                    }
                    return Err(err);
                }
            }
        };
        tg.response_seconds.observe(started.elapsed().as_secs_f64());

        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        upstream::strip_hop_by_hop(resp.headers_mut(), upgrade && switching);
        if let (Some(client_side), true) = (client_upgrade, switching) {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            let target_side = hyper::upgrade::on(&mut resp);
            ctx.activity.mark_upgraded();
            let idle = ctx.listener.plane.snapshot.load().limits.idle_timeout;
            tokio::spawn(async move {
                let closed = outstanding.target().closed().clone();
                let joined = tokio::try_join!(client_side, target_side);
                // The connection now belongs to the tunnel; never to the pool again.
                drop(lease);
                match joined {
                    Ok((c, t)) => tunnel::run(TokioIo::new(c), TokioIo::new(t), idle, closed).await,
                    Err(e) => debug!(error = %e, "upgrade failed"),
                }
                drop(outstanding);
            });
            let (parts, _) = resp.into_parts();
            return Ok(Response::from_parts(
                parts,
                ResponseBody::full(Bytes::new()),
            ));
        }
        let (parts, body) = resp.into_parts();
        if body.is_end_stream() {
            // No body to wait for (HEAD, 204, 304, an empty length): the exchange is over.
            if let Some(lease) = lease.take() {
                outstanding.target().pool().give_back(lease);
            }
        }
        Ok(Response::from_parts(
            parts,
            ResponseBody {
                inner: Inner::Upstream(body),
                request: None,
                target: Some(TargetWatch {
                    outstanding,
                    closed: None,
                    lease,
                }),
                generated: false,
            },
        ))
    }
}

/// seawall's own answer to a failed request. A gRPC client gets gRPC's "trailers-only" form
/// (HTTP 200, the status in `grpc-status` and `grpc-message`), which gRPC clients read as the
/// call's status; an HTTP error status would reach the application as a generic error.
fn error_response(e: &RequestError, grpc: Option<HeaderValue>) -> Response<ResponseBody> {
    let status = e.status();
    let mut line = format!("{} {}", status.as_str(), e.reason());
    if let RequestError::IncompatibleProtocol(why) = e {
        line = format!("{line}: {why}");
    }
    let mut resp = match grpc {
        Some(content_type) => {
            let mut resp = Response::new(ResponseBody::full(Bytes::new()));
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
            let mut resp = Response::new(ResponseBody::full(Bytes::from(format!("{line}\n"))));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
    };
    resp.body_mut().generated = true;
    if matches!(e, RequestError::BadRequest(_)) {
        // The connection's framing can no longer be trusted.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A response body: bytes seawall made, or a target's body streamed through. It carries the guards
/// that keep the request counted as in flight (for the connection's idle timer and the target's
/// outstanding count) until the body is finished or dropped.
pub struct ResponseBody {
    inner: Inner,
    request: Option<RequestGuard>,
    target: Option<TargetWatch>,
    /// An error answer made by seawall (for `elb_responses_total`).
    generated: bool,
}

/// The target a streamed body comes from: counted as outstanding while the body lives, and cut
/// when the target's draining time ends.
struct TargetWatch {
    outstanding: OutstandingGuard,
    /// The HTTP/1 connection the body comes on, back to the target's pool when the body ends.
    lease: Option<Lease>,
    /// Created the first time the body waits for the target, so a body that never waits costs
    /// no allocation.
    closed: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

enum Inner {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

impl ResponseBody {
    fn full(bytes: Bytes) -> Self {
        ResponseBody {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            request: None,
            target: None,
            generated: false,
        }
    }

    fn is_generated(&self) -> bool {
        self.generated
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the target's deregistration delay ended while its response was streaming")]
struct TargetClosed;

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            Inner::Upstream(body) => match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(frame) => {
                    // The end as hyper's server sees it (it stops polling once the length is
                    // read), or as the stream ends. An error leaves the connection unreturned.
                    let ended = match &frame {
                        None => true,
                        Some(Ok(_)) => body.is_end_stream(),
                        Some(Err(_)) => false,
                    };
                    if ended {
                        if let Some(watch) = &mut this.target {
                            if let Some(lease) = watch.lease.take() {
                                watch.outstanding.target().pool().give_back(lease);
                            }
                        }
                    }
                    Poll::Ready(frame.map(|f| f.map_err(Into::into)))
                }
                Poll::Pending => {
                    if let Some(watch) = &mut this.target {
                        let closed = watch.closed.get_or_insert_with(|| {
                            Box::pin(
                                watch
                                    .outstanding
                                    .target()
                                    .closed()
                                    .clone()
                                    .cancelled_owned(),
                            )
                        });
                        if closed.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Some(Err(TargetClosed.into())));
                        }
                    }
                    Poll::Pending
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Upstream(body) => body.size_hint(),
        }
    }
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

    #[test]
    fn ambiguous_framing_is_rejected_and_repeats_are_folded() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            h
        };
        let mut h = headers(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        assert!(check_framing(&mut h).is_err());
        let mut h = headers(&[("content-length", "5"), ("content-length", "6")]);
        assert!(check_framing(&mut h).is_err());
        let mut h = headers(&[("content-length", "5, 6")]);
        assert!(check_framing(&mut h).is_err());
        let mut h = headers(&[("content-length", "5"), ("content-length", "5")]);
        check_framing(&mut h).unwrap();
        assert_eq!(h.get_all("content-length").iter().count(), 1);
        assert_eq!(h["content-length"], "5");
        let mut h = headers(&[("transfer-encoding", "chunked")]);
        check_framing(&mut h).unwrap();
    }
}
