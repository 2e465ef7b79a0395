//! An HTTP/1 connection to a target, driven in place: polled by the task of the request that is
//! using it (its future until the response head, then its response body, see [`TargetBody`]),
//! never by a task of its own.
//!
//! hyper's client connection is two halves: the [`http1::SendRequest`] that queues a request and
//! waits for its answer, and the [`http1::Connection`] future that does the I/O. Spawned, the
//! connection future is another task, and every exchange crosses between the two tasks several
//! times (the request through a channel, the head back through another, each body chunk through
//! a third), each crossing a wake of the other task. Polled here, the request's own task does the
//! I/O and finds the answer on the channels at once: no other task is woken.
//!
//! One wake is left that hyper's channels make by themselves: taking a chunk from the response
//! body's channel wakes whoever last polled its sending end, the connection, which here is the
//! very task taking it; a task that wakes itself is polled once more, for nothing. So the
//! connection is polled with a waker of its own ([`Relay`]) that passes its wakes on to the task
//! driving it, except while that task is taking a chunk ([`Conn::take`]).
//!
//! Idle, in the pool, a connection is polled by no one: whatever happened to it while it waited
//! (the target closed it, sent stray bytes) is noticed as it is taken ([`Conn::settle`]). A close
//! that lands just as it is reused is the keep-alive race that `retry` already covers.
//!
//! [`TargetBody`]: super::response::TargetBody

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{Request, Response};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use hyper_util::rt::TokioIo;
use tracing::debug;

use super::connect::TargetStream;
use super::UpstreamBody;

type Connection = http1::Connection<TokioIo<TargetStream>, UpstreamBody>;

/// An HTTP/1 connection: the sender and the connection future, kept together so that whoever
/// sends on it also drives it.
pub(super) struct Conn {
    send: http1::SendRequest<UpstreamBody>,
    /// hyper's state machine of the socket: it reads and writes only when polled. Boxed: it is
    /// most of a kilobyte, and the connection moves with each request (out of the pool, into its
    /// response body, which hyper's server moves about, back), which a pointer does cheaply.
    conn: Box<Connection>,
    /// What the connection is polled with when driven (see [`Relay`]), and the same as a waker,
    /// made once per connection.
    relay: Arc<Relay>,
    waker: Waker,
}

/// The waker a connection is driven with. It passes each wake on to the task driving the
/// connection now, unless hushed: while that task takes a chunk from the response body's
/// channel, which wakes the connection (hyper's channel does, to say there is room again), that
/// is, the taking task itself, for nothing: the connection is polled anyway when the next chunk
/// is asked for (see [`Conn::take`]).
#[derive(Debug, Default)]
struct Relay {
    task: AtomicWaker,
    hushed: AtomicBool,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A wake from elsewhere (the target's socket, say) that lands while hushed is lost
        // harmlessly too: the readiness it announces stays recorded on the socket, and the
        // connection is polled before the body waits (see `TargetBody::poll_frame`).
        if !self.hushed.load(Ordering::Relaxed) {
            self.task.wake();
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

/// What an open connection is doing, as [`Conn::settle`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settled {
    /// Idle: it can take a request.
    Ready,
    /// Still busy with an exchange: sending a request body, or taking in the end of an answer.
    Busy,
    /// Closed or failed: only to be dropped.
    Ended,
}

/// A request that could not be exchanged, as hyper gives it: the error, and the request itself
/// when it never left (so it may be sent again).
pub(super) type SendError = TrySendError<Request<UpstreamBody>>;

/// hyper's HTTP/1 client refuses a head that does not fit its read buffer, but only once the
/// buffer is full, and a read may bring in more than the cap at once: twice the limit bounds what
/// a target can make seawall hold while the exact size is checked after parsing. Bodies are read
/// in pieces of at most this size.
const READ_BUFFER: usize = 2 * super::pool::MAX_RESPONSE_HEAD;

impl Conn {
    /// The HTTP/1 handshake on an open connection (no I/O: hyper only sets up its state).
    pub(super) async fn handshake(io: TargetStream) -> Result<Self, hyper::Error> {
        let (send, conn) = http1::Builder::new()
            .max_buf_size(READ_BUFFER)
            .handshake(TokioIo::new(io))
            .await?;
        let relay = Arc::new(Relay::default());
        Ok(Conn {
            send,
            conn: Box::new(conn),
            waker: Waker::from(relay.clone()),
            relay,
        })
    }

    /// Polls the connection once with a waker that wakes nothing, and says whether it can take a
    /// request now. It takes in whatever happened since it was last polled (the end of the last
    /// exchange, a close by the target, stray bytes, which are an error), and leaves none of its
    /// wakers pointing at the task that last used it: an idle connection must not wake a task
    /// when the target closes it, nor when the next request is queued on it.
    pub(super) fn settle(&mut self, addr: SocketAddr) -> Settled {
        let mut quiet = Context::from_waker(Waker::noop());
        match Pin::new(&mut *self.conn).poll(&mut quiet) {
            Poll::Ready(ended) => {
                log_end(addr, ended);
                Settled::Ended
            }
            Poll::Pending if self.send.is_ready() => Settled::Ready,
            Poll::Pending => Settled::Busy,
        }
    }

    /// Drives the connection until it can take another request, for an exchange whose answer
    /// has ended while its request body is still being sent (the target answered before reading
    /// it whole): `None` if it ends first.
    pub(super) async fn finish_request(mut self, addr: SocketAddr) -> Option<Conn> {
        let open = poll_fn(|cx| {
            if !self.drive(cx, addr) {
                Poll::Ready(false)
            } else if self.send.is_ready() {
                Poll::Ready(true)
            } else {
                Poll::Pending
            }
        })
        .await;
        open.then_some(self)
    }

    /// Polls the connection for the task whose context is `cx`: it reads and writes what it can
    /// (the request body too) and arranges to wake that task when it can do more. `false` once
    /// it has ended (closed, failed); it must not be polled again.
    pub(super) fn drive(&mut self, cx: &mut Context<'_>, addr: SocketAddr) -> bool {
        match poll_relayed(&mut self.conn, &self.relay, &self.waker, cx) {
            Poll::Ready(ended) => {
                log_end(addr, ended);
                false
            }
            Poll::Pending => true,
        }
    }

    /// Takes what the connection has put in the response body's channel, if anything. Only the
    /// connection, driven in this task, fills the channel: the channel needs no waker, and the
    /// wake its taking gives the connection is hushed (see [`Relay`]).
    pub(super) fn take(
        &self,
        body: &mut Incoming,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.relay.hushed.store(true, Ordering::Relaxed);
        let frame = Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()));
        self.relay.hushed.store(false, Ordering::Relaxed);
        frame
    }

    /// Whether the connection can take a request, as far as it knew when last polled.
    pub(super) fn is_ready(&self) -> bool {
        self.send.is_ready()
    }

    /// Forgets the task that drove the connection, which an idle connection has no business
    /// holding on to (nor waking, should the target close it).
    pub(super) fn forget_task(&self) {
        drop(self.relay.task.take());
    }

    /// Sends `req` and drives the connection from this future until the response head has come.
    /// The connection comes back with the response, for its body to drive on; `None` when it
    /// ended with the head (`Connection: close` with the whole body read already, say), whose
    /// body is then all in the response's channel.
    ///
    /// Dropped before the head comes (the response timeout, the client gone), the connection is
    /// dropped with it, and closed: its state is unknown.
    pub(super) async fn exchange(
        self,
        req: Request<UpstreamBody>,
        addr: SocketAddr,
    ) -> Result<(Response<Incoming>, Option<Conn>), SendError> {
        let Conn {
            mut send,
            conn,
            relay,
            waker,
        } = self;
        let mut conn = Some(conn);
        // hyper's answer future does not borrow the sender: it waits on a channel whose sending
        // end is the connection's.
        let mut answer = pin!(send.try_send_request(req));
        let answered = poll_fn(|cx| {
            if let Some(c) = &mut conn {
                if let Poll::Ready(ended) = poll_relayed(c, &relay, &waker, cx) {
                    log_end(addr, ended);
                    // Dropped, it fails whatever it still owed the answer.
                    conn = None;
                }
            }
            if conn.is_some() {
                // Only the connection, polled just above, completes the answer: the answer
                // needs no waker, and this task's would have it woken by its own poll.
                answer
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
            } else {
                answer.as_mut().poll(cx)
            }
        })
        .await;
        let resp = answered?;
        let conn = conn.map(|conn| Conn {
            send,
            conn,
            relay,
            waker,
        });
        Ok((resp, conn))
    }

    /// Hands the connection to a task of its own, with upgrades: for a request that may be
    /// answered `101 Switching Protocols` (a WebSocket), whose socket hyper then hands to the
    /// tunnel. Such a connection never comes back to the pool; its sender, kept until the
    /// exchange is over, is all that is left here.
    pub(super) fn spawn(self, addr: SocketAddr) -> http1::SendRequest<UpstreamBody> {
        let Conn { send, conn, .. } = self;
        tokio::spawn(async move {
            if let Err(e) = (*conn).with_upgrades().await {
                debug!(target = %addr, error = %crate::error::error_chain(&e), "target connection failed");
            }
        });
        send
    }
}

/// Polls `conn` with its relay, which passes wakes on to the task of `cx`.
fn poll_relayed(
    conn: &mut Connection,
    relay: &Relay,
    waker: &Waker,
    cx: &mut Context<'_>,
) -> Poll<hyper::Result<()>> {
    relay.task.register(cx.waker());
    Pin::new(conn).poll(&mut Context::from_waker(waker))
}

fn log_end(addr: SocketAddr, ended: hyper::Result<()>) {
    if let Err(e) = ended {
        debug!(target = %addr, error = %crate::error::error_chain(&e), "target connection failed");
    }
}
