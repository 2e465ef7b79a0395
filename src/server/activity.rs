//! Per-connection timing: which requests are in flight, since when the connection has been idle, and
//! the request-head deadline.
//!
//! hyper's own `header_read_timeout` also bounds the idle gap between keep-alive requests, which
//! would close idle connections after `header_timeout` instead of `idle_timeout`. So seawall tracks
//! the two separately: the head deadline starts at the first byte of a request head (seen here, in
//! the IO wrapper) and ends when hyper hands the parsed request to the service.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// Shared between a connection's IO wrapper, its service and its driver.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// IDLE, HEAD (a request head is arriving) or BUSY (a request is being served). Only HTTP/1
    /// uses HEAD; its requests never overlap, so the phase is exact there.
    phase: AtomicU8,
    /// Milliseconds after `epoch` at which the connection last became idle.
    idle_since_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            phase: AtomicU8::new(IDLE),
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Marks a request as in flight until the guard drops (when its response body is done or
    /// abandoned).
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.phase.store(BUSY, Ordering::Release);
        RequestGuard(self.clone())
    }

    /// When the connection will have been idle for `idle_timeout`; `None` while a request is in
    /// flight.
    pub fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.epoch + since + idle_timeout)
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }
}

/// See [`Activity::begin_request`].
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        let now = Instant::now().saturating_duration_since(a.epoch).as_millis() as u64;
        a.idle_since_ms.store(now, Ordering::Release);
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.phase.store(IDLE, Ordering::Release);
        }
    }
}

const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 20\r\nconnection: close\r\n\r\n408 Request Timeout\n";

/// Wraps an HTTP/1 connection's stream to enforce the request-head deadline. When it passes, the
/// wrapper writes a 408 itself and then fails the read, which makes hyper close the connection.
pub struct HeadTimeout<S> {
    inner: S,
    activity: Arc<Activity>,
    /// `None` turns the deadline off (HTTP/2 connections).
    timeout: Option<Duration>,
    deadline: Option<Pin<Box<Sleep>>>,
    /// How much of the 408 answer has been written, once the deadline has passed.
    timed_out: Option<usize>,
}

impl<S> HeadTimeout<S> {
    pub fn new(inner: S, activity: Arc<Activity>, timeout: Option<Duration>) -> Self {
        HeadTimeout {
            inner,
            activity,
            timeout,
            deadline: None,
            timed_out: None,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> HeadTimeout<S> {
    fn poll_send_408(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let written = self.timed_out.get_or_insert(0);
        while *written < TIMEOUT_RESPONSE.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &TIMEOUT_RESPONSE[*written..])) {
                Ok(0) | Err(_) => break,
                Ok(n) => *written += n,
            }
        }
        let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "request head not received within header_timeout",
        ))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timed_out.is_some() {
            return this.poll_send_408(cx).map(Err);
        }
        let Some(timeout) = this.timeout else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                match this.activity.phase() {
                    IDLE if buf.filled().len() > before => {
                        // First bytes of a new request head: start its clock.
                        this.activity.phase.store(HEAD, Ordering::Release);
                        this.deadline = Some(Box::pin(tokio::time::sleep(timeout)));
                    }
                    BUSY => this.deadline = None,
                    _ => {}
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.activity.phase() != HEAD {
                    this.deadline = None;
                }
                if let Some(d) = &mut this.deadline {
                    if d.as_mut().poll(cx).is_ready() {
                        this.deadline = None;
                        return this.poll_send_408(cx).map(Err);
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
