//! The unread body of a request that seawall answers itself (a fixed response, a redirect, an
//! error before anything is forwarded), or that a forward's exchange left (the target answered
//! or failed before it read all of it), read and thrown away beside the answer.
//!
//! hyper's HTTP/1 server, given back a request whose body was never read, takes what has already
//! arrived and stops reading: the connection closes after the response with the rest of the body
//! still coming, and the kernel answers those bytes with a reset, which on the client's side
//! throws away whatever of the response it had not read yet. A client that sends its whole body
//! before it reads (most do) sees "connection reset" instead of the answer. Read to its end, the
//! body costs some bandwidth, and the client gets its answer and keeps its connection unless the
//! answer closes it (nginx's discarded body and lingering close). HTTP/2 needs none of this: an
//! unread stream is reset on its own, and the connection goes on.

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, Request, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::server::activity::Activity;
use crate::upstream::ClientConn;

/// How long a body is read for at most, however steadily it comes (nginx's `lingering_time`).
const LINGER: Duration = Duration::from_secs(30);

/// How long the client may send nothing before the reading stops (nginx's `lingering_timeout`).
const LINGER_GAP: Duration = Duration::from_secs(5);

/// Throws away the body of `req`, which seawall answers itself (see the module's comment).
pub(super) fn request(req: Request<Incoming>, activity: &Arc<Activity>) {
    let (parts, body) = req.into_parts();
    if parts.version >= Version::HTTP_2 || body.is_end_stream() {
        return;
    }
    // hyper sends `100 Continue` when a body is first read before any response has been
    // written: read beside the answer, that could go out before it. The client that asked waits
    // for one or the other and sends its body only after a 100, so there is nothing to read;
    // hyper closes the connection after the answer.
    if expects_continue(&parts.headers) {
        return;
    }
    spawn(body, activity.clone());
}

/// Whether the client waits for `100 Continue` before it sends its body.
pub(super) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The client's side of a forwarded HTTP/1 body (see [`ClientConn`]): counted as a request in
/// flight while it is read, what the exchange leaves unread thrown away as a body seawall
/// answers itself is.
impl ClientConn for Activity {
    fn reading(&self) {
        self.begin_unguarded();
    }

    fn unread(self: Arc<Self>, body: Incoming) {
        // Counted as in flight before `done` ends the body's own count, so the connection is
        // never idle in between.
        spawn(body, self);
    }

    fn done(&self) {
        self.end_unguarded();
    }
}

fn spawn(body: Incoming, activity: Arc<Activity>) {
    // A body dropped as the runtime shuts down (its connection with it) has no one to send it.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    // Counted as a request in flight, so that the connection is neither parked nor timed out
    // as idle, nor the body's bytes taken for the next request's head, while they come.
    let in_flight = activity.begin_request();
    runtime.spawn(async move {
        read_to_end(body).await;
        drop(in_flight);
    });
}

/// Reads `body` to its end, an error, or the end of the bounds above: the client's connection
/// goes on only if all of it was read.
async fn read_to_end(mut body: Incoming) {
    let deadline = Instant::now() + LINGER;
    loop {
        let until = deadline.min(Instant::now() + LINGER_GAP);
        match tokio::time::timeout_at(until, body.frame()).await {
            Ok(Some(Ok(_))) => {}
            Ok(None) | Ok(Some(Err(_))) | Err(_) => return,
        }
    }
}
