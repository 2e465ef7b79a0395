//! A target's response body as the pool hands it out: over HTTP/1, seawall's own ([`h1::Body`],
//! which owns its connection until it ends); over HTTP/2, hyper's, whose shared connection runs
//! in a task of its own.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::h1;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
pub enum TargetBody {
    Http1(h1::Body),
    Http2(Incoming),
}

/// An HTTP/1 connection whose exchange is over, on its way back to its target's pool
/// ([`Pool::give_back`](super::pool::Pool::give_back)).
#[derive(Debug)]
pub struct Lease(pub(super) Box<h1::Conn>);

impl TargetBody {
    /// The HTTP/1 connection, once the body has ended and left it fit for another exchange.
    pub fn take_lease(&mut self) -> Option<Lease> {
        match self {
            TargetBody::Http1(b) => b.take_conn().map(Lease),
            TargetBody::Http2(_) => None,
        }
    }

    /// The HTTP/1 connection is closed once the body ends, whatever happens: what the target
    /// made of the request's end is unknown.
    pub fn forbid_reuse(&mut self) {
        if let TargetBody::Http1(b) = self {
            b.forbid_reuse();
        }
    }

    /// After a 101: the target's connection, for the tunnel.
    pub fn upgraded(self) -> Option<h1::Upgraded> {
        match self {
            TargetBody::Http1(b) => b.upgraded(),
            TargetBody::Http2(_) => None,
        }
    }
}

impl Body for TargetBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            TargetBody::Http1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            TargetBody::Http2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            TargetBody::Http1(b) => b.is_end_stream(),
            TargetBody::Http2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            TargetBody::Http1(b) => b.size_hint(),
            TargetBody::Http2(b) => b.size_hint(),
        }
    }
}
