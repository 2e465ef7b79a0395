//! The response body handed to the client connection, and what it keeps alive until it ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::record::Record;
use crate::targets::OutstandingGuard;
use crate::upstream::response::TargetBody;
use crate::upstream::stall::StallClock;

/// A response body as the client connection gets it: the answer, and the request's record, which
/// keeps the request counted as in flight (for the connection's idle timer) and is finished when
/// the body ends or is dropped.
pub struct ResponseBody {
    reply: Reply,
    /// `None` only in tests; finished (metrics counted) when the body ends or is dropped. Boxed:
    /// hyper moves the response about several times, and a pointer is cheaper to copy than the
    /// record (callgrind: about 600 fewer instructions per request than the record inline).
    pub(super) record: Option<Box<Record>>,
    /// A chunk went to hyper, which has not asked for the next one yet: counted on the
    /// connection (see `Activity::stalled_since`), so that a client that stops taking the
    /// response is closed after `idle_timeout` instead of holding the body and its target.
    handed: bool,
}

/// The answer `respond` makes: bytes seawall made, or a target's body streamed through with the
/// guard that counts it as outstanding on its target. Kept apart from the record until
/// `proxy::handle` joins them, so that the responses moved about on the way (a few times per
/// level) do not carry the record's couple of hundred bytes each time.
pub(super) struct Reply {
    inner: Inner,
    /// The target a streamed body comes from; `None` for seawall's own bytes.
    target: Option<TargetWatch>,
}

/// The target a streamed body comes from: counted as outstanding while the body lives, and cut
/// when the target's draining time ends. (The HTTP/1 connection the body comes on is the body's
/// own until it ends, see [`TargetBody`]; then it goes back to the target's pool.)
pub(super) struct TargetWatch {
    pub(super) outstanding: OutstandingGuard,
    /// How long the target may send nothing while the body waits on it (its group's
    /// `response_timeout`, ALB's idle timeout on the target side): then the body fails, so that
    /// a target gone silent mid-body does not hold the client's connection for ever.
    silence: Duration,
    /// Made the first time the body waits for the target, so a body that never waits costs no
    /// allocation, and boxed so that the response, which hyper moves about several times, stays
    /// small.
    waits: Option<Pin<Box<Waits>>>,
}

pin_project! {
    /// What a body waiting on its target watches.
    struct Waits {
        // Ready when the target's draining time ends.
        #[pin]
        closed: WaitForCancellationFutureOwned,
        clock: StallClock,
        // The body's last poll found nothing ready: the wait goes on.
        waiting: bool,
    }
}

impl Waits {
    fn poll_given_up(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Option<Box<dyn std::error::Error + Send + Sync>> {
        let this = self.project();
        if this.closed.poll(cx).is_ready() {
            return Some(TargetClosed.into());
        }
        if !std::mem::replace(this.waiting, true) {
            this.clock.wait_began();
        }
        this.clock
            .stalled(cx, false)
            .then(|| TargetSilent(this.clock.idle()).into())
    }
}

impl TargetWatch {
    pub(super) fn new(outstanding: OutstandingGuard, silence: Duration) -> Self {
        TargetWatch {
            outstanding,
            silence,
            waits: None,
        }
    }

    /// The body had something ready: a wait that follows is a new one.
    fn got(&mut self) {
        if let Some(w) = &mut self.waits {
            *w.as_mut().project().waiting = false;
        }
    }

    /// The body found nothing ready: whether the target has now been silent too long, or its
    /// draining time has ended (the task is woken for either).
    fn given_up(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Option<Box<dyn std::error::Error + Send + Sync>> {
        let silence = self.silence;
        let waits = self.waits.get_or_insert_with(|| {
            Box::pin(Waits {
                closed: self.outstanding.target().closed().clone().cancelled_owned(),
                clock: StallClock::new(silence),
                waiting: true,
            })
        });
        waits.as_mut().poll_given_up(cx)
    }
}

enum Inner {
    Full(Option<Bytes>),
    Upstream(TargetBody),
}

impl ResponseBody {
    pub(super) fn new(reply: Reply, record: Box<Record>) -> Self {
        ResponseBody {
            reply,
            record: Some(record),
            handed: false,
        }
    }
}

impl Reply {
    pub(super) fn full(bytes: Bytes) -> Self {
        Reply {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            target: None,
        }
    }

    /// A target's body, streamed through while `watch` counts it on its target.
    pub(super) fn upstream(body: TargetBody, watch: TargetWatch) -> Self {
        Reply {
            inner: Inner::Upstream(body),
            target: Some(watch),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the target's deregistration delay ended while its response was streaming")]
struct TargetClosed;

#[derive(Debug, thiserror::Error)]
#[error("the target sent nothing of its response body for {0:?} (its group's response_timeout)")]
struct TargetSilent(Duration);

impl Body for Reply {
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
                    if let Some(watch) = &mut this.target {
                        watch.got();
                    }
                    // The end as hyper's server sees it (it stops polling once the length is
                    // read, and after trailers, which come only once the chunked body has been
                    // read to its last line), or as the stream ends. An error leaves the
                    // connection unreturned.
                    let ended = match &frame {
                        None => true,
                        Some(Ok(f)) => f.is_trailers() || body.is_end_stream(),
                        Some(Err(_)) => false,
                    };
                    if ended {
                        if let (Some(watch), Some(lease)) = (&this.target, body.take_lease()) {
                            watch.outstanding.target().pool().give_back(lease);
                        }
                    }
                    Poll::Ready(frame)
                }
                Poll::Pending => match this.target.as_mut().and_then(|w| w.given_up(cx)) {
                    Some(e) => Poll::Ready(Some(Err(e))),
                    None => Poll::Pending,
                },
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

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let was_handed = std::mem::take(&mut this.handed);
        let frame = Pin::new(&mut this.reply).poll_frame(cx);
        let Some(r) = &mut this.record else {
            return frame;
        };
        if let Poll::Ready(Some(Ok(f))) = &frame {
            // ALB's `sent_bytes` (body bytes here).
            if let Some(d) = f.data_ref() {
                r.facts.sent_bytes += d.len() as u64;
                // Not the last chunk: hyper may not ask again after it (it has the whole
                // length), and the connection's idle timer watches what follows the end.
                this.handed = !d.is_empty() && !this.reply.is_end_stream();
            }
        }
        // Counted from the first chunk the body had ready and on until it waits for its target
        // again: hyper asks for the next chunk whenever a little of the window or buffer frees
        // up, which is no sign that the client is reading.
        match (was_handed, this.handed) {
            (false, true) => r.conn.activity.handed(),
            (true, false) => r.conn.activity.taken(),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.reply.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.reply.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let Some(r) = &self.record else {
            return;
        };
        if self.handed {
            r.conn.activity.taken();
        }
        // A request body still going to the target may now be idle (see `upstream::ClientBody`).
        if let Some(p) = &r.facts.received {
            p.answer_ended();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arc_swap::ArcSwap;
    use http::{HeaderValue, StatusCode};
    use http_body_util::BodyExt;

    use super::*;
    use crate::metrics::Metrics;
    use crate::protocol::Protocol;
    use crate::proxy::ConnContext;
    use crate::server::activity::Activity;
    use crate::server::{Limits, ListenerContext};
    use crate::snapshot::{Compiled, Plane};
    use crate::targets::Registry;

    fn conn() -> Arc<ConnContext> {
        let metrics = Arc::new(Metrics::new());
        let limit = Duration::from_secs(1);
        let snapshot = Compiled {
            limits: Limits {
                idle_timeout: limit,
                header_timeout: limit,
                handshake_timeout: limit,
                max_header_bytes: 1024,
                http2_max_concurrent_streams: 1,
                http2_max_resets_per_second: 1,
            },
            max_connections: 1,
            listeners: Vec::new(),
            target_groups: Vec::new(),
            cookie_sealer: None,
        }
        .attach(
            &Registry::default(),
            &metrics,
            &crate::secrets::Secrets::generate(),
        );
        Arc::new(ConnContext {
            listener: Arc::new(ListenerContext {
                direct: Arc::new(crate::metrics::RequestMetrics::new(
                    &metrics,
                    "l".into(),
                    None,
                )),
                counters: crate::metrics::ListenerCounters::new(&metrics, "l"),
                name: "l".into(),
                protocol: Protocol::Http,
                port: 80,
                port_header: HeaderValue::from_static("80"),
                plane: Arc::new(Plane {
                    snapshot: ArcSwap::from_pointee(snapshot),
                    access_log: crate::access_log::AccessLog::new(
                        1,
                        metrics.access_log_dropped_total.clone(),
                    ),
                    metrics,
                }),
                stop: Default::default(),
            }),
            peer: "10.0.0.1:5000".parse().unwrap(),
            peer_ip: HeaderValue::from_static("10.0.0.1"),
            activity: Activity::new(),
            tls: None,
            trace_id: crate::access_log::ConnTraceId(1),
            log_text: Default::default(),
            slot: Arc::new(
                crate::descriptors::ClientSlots::new(1)
                    .try_take()
                    .expect("an empty cap of one"),
            ),
        })
    }

    fn count(conn: &ConnContext) -> (String, String) {
        let text = conn.listener.plane.metrics.render();
        let find = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or("")
                .to_string()
        };
        (
            find(r#"seawall_requests_total{code="200",listener="l",target_group="""#),
            find(r#"seawall_elb_responses_total{code="200"}"#),
        )
    }

    #[tokio::test]
    async fn the_record_counts_bytes_sent_and_is_counted_once_when_the_body_ends() {
        let conn = conn();
        let mut record = Record::new(conn.clone(), None);
        record.facts.status = Some(StatusCode::OK);
        let mut body =
            ResponseBody::new(Reply::full(Bytes::from_static(b"hello")), Box::new(record));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert!(body.frame().await.is_none());
        assert_eq!(body.record.as_ref().unwrap().facts.sent_bytes, 5);
        assert_eq!(count(&conn), (String::new(), String::new()), "not yet");
        drop(body);
        let (requests, elb) = count(&conn);
        assert!(requests.ends_with(" 1"), "{requests}");
        assert!(elb.ends_with(" 1"), "{elb}");
    }

    #[tokio::test]
    async fn a_request_left_unanswered_is_not_counted() {
        let conn = conn();
        drop(Record::new(conn.clone(), None));
        let text = conn.listener.plane.metrics.render();
        assert!(!text.contains("seawall_requests_total{"), "{text}");
    }
}
