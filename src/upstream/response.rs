//! A target's response body, as the pool hands it out: hyper's [`Incoming`], and for HTTP/1 the
//! connection it comes on, which the body drives and gives back to the pool once it has ended.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

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
}

impl TargetBody {
    pub(super) fn new(incoming: Incoming, lease: Option<Lease>) -> Self {
        TargetBody { incoming, lease }
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
        let frame = match &mut this.lease {
            Some(lease) if lease.in_place() => {
                // Only the connection, polled in this task, puts chunks in the body's channel:
                // the channel needs no waker, and this task's would have it woken by its own
                // poll. What the connection delivered last time is taken first; only when
                // nothing is there is the connection polled (with this task's waker, which its
                // I/O keeps), then the channel looked at again.
                let mut quiet = Context::from_waker(Waker::noop());
                match Pin::new(&mut this.incoming).poll_frame(&mut quiet) {
                    Poll::Pending if lease.drive(cx) => {
                        Pin::new(&mut this.incoming).poll_frame(&mut quiet)
                    }
                    Poll::Pending => {
                        // The connection ended (and is dropped): the rest of the body, or its
                        // failure, is in the channel already.
                        this.lease = None;
                        Pin::new(&mut this.incoming).poll_frame(cx)
                    }
                    ready => ready,
                }
            }
            // HTTP/2, or a connection in a task of its own: the channel is filled from there.
            _ => Pin::new(&mut this.incoming).poll_frame(cx),
        };
        if let Poll::Ready(frame) = &frame {
            // The end as hyper's server sees it (it stops polling once the length is read, and
            // after trailers, which come only once the chunked body has been read to its last
            // line), or as the stream ends. An error leaves the connection to be closed.
            let ended = match frame {
                None => true,
                Some(Ok(f)) => f.is_trailers() || this.incoming.is_end_stream(),
                Some(Err(_)) => {
                    this.lease = None;
                    false
                }
            };
            if ended {
                if let Some(lease) = this.lease.take() {
                    lease.release();
                }
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
