//! A target's response body, as the pool hands it out: hyper's [`Incoming`], and for HTTP/1 the
//! connection it comes on, which the body drives and gives back to the pool once it has ended.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::pool::Lease;

/// A target's response body. Over HTTP/1 it owns its connection ([`Lease`]) until it ends: it
/// polls the connection before taking each chunk, so the target's I/O runs in the client
/// connection's task (see [`h1`](super::h1)), and the request body, should the target answer
/// before it has all been sent, goes on being sent while this body is read. Ended, the body
/// gives the connection back to its pool; dropped before its end, or failed, it closes it.
#[derive(Debug)]
pub struct TargetBody {
    incoming: Incoming,
    /// HTTP/1's connection; `None` for HTTP/2 (its shared connection has its own task), and once
    /// the connection has ended or gone back.
    lease: Option<Lease>,
    /// The body's failure, held back for a moment (see `poll_frame`).
    failed: Option<Box<Failed>>,
}

/// How long a failure of the target's body is held back before the client's side is told: long
/// enough for what came before it to be written out (see `poll_frame`).
const HOLD_BACK: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct Failed {
    error: hyper::Error,
    until: Pin<Box<Sleep>>,
}

impl TargetBody {
    pub(super) fn new(incoming: Incoming, lease: Option<Lease>) -> Self {
        TargetBody {
            incoming,
            lease,
            failed: None,
        }
    }

    /// The connection is not to be reused whatever happens: it is closed once this body ends
    /// (the client's request framing was doubtful, so what the target made of its end is
    /// unknown).
    pub fn discard_connection(&mut self) {
        if let Some(lease) = &mut self.lease {
            lease.forbid_reuse();
        }
    }

    /// For a body with nothing in it (HEAD, 204, 304, a zero length), which hyper's server never
    /// polls: the exchange is over, and the connection goes back to its pool now.
    pub fn release_if_ended(&mut self) {
        if self.incoming.is_end_stream() {
            if let Some(lease) = self.lease.take() {
                lease.release();
            }
        }
    }
}

impl Body for TargetBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(failed) = &mut this.failed {
            ready!(failed.until.as_mut().poll(cx));
            let failed = this.failed.take().expect("just seen");
            return Poll::Ready(Some(Err(failed.error)));
        }
        let frame = match &mut this.lease {
            // What the connection delivered last time is taken first; only when nothing is
            // there is the connection polled (its I/O then wakes this task), and the channel
            // looked at again.
            Some(lease) => match lease.take(&mut this.incoming, cx) {
                Poll::Pending if lease.drive(cx) => lease.take(&mut this.incoming, cx),
                Poll::Pending => {
                    // The connection ended (and is dropped): the rest of the body, or its
                    // failure, is in the channel already.
                    this.lease = None;
                    Pin::new(&mut this.incoming).poll_frame(cx)
                }
                ready => ready,
            },
            // HTTP/2: the channel is filled by the shared connection's task.
            None => Pin::new(&mut this.incoming).poll_frame(cx),
        };
        match frame {
            Poll::Ready(Some(Err(e))) => {
                // The connection is closed with the lease. The failure is held back a moment:
                // hyper's server, told the body failed, closes the client's connection (HTTP/1)
                // or resets its stream (HTTP/2) at once, dropping what it has not yet written
                // (the head, the chunks before the break), which the client should get. Driven
                // in this task, the connection finds the break in the very poll after the last
                // good chunk, before the server (for HTTP/2, the connection's own task) had a
                // chance to write those out.
                this.lease = None;
                this.failed = Some(Box::new(Failed {
                    error: e,
                    until: Box::pin(tokio::time::sleep(HOLD_BACK)),
                }));
                // Now waits on the timer, at the top.
                Pin::new(this).poll_frame(cx)
            }
            Poll::Ready(frame) => {
                // The end as hyper's server sees it (it stops polling once the length is read,
                // and after trailers, which come only once the chunked body has been read to
                // its last line), or as the stream ends.
                let ended = match &frame {
                    None => true,
                    Some(f) => {
                        f.as_ref().is_ok_and(Frame::is_trailers) || this.incoming.is_end_stream()
                    }
                };
                if ended {
                    if let Some(lease) = this.lease.take() {
                        lease.release();
                    }
                }
                Poll::Ready(frame)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
