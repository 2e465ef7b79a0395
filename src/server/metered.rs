//! A client socket that counts the bytes through it (\[ProcessedBytes\]): under TLS, so that
//! records and handshakes count as ALB counts them, and under everything a connection does after
//! (HTTP/1, HTTP/2, an upgraded tunnel).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::activity::Activity;

/// `io`, with every byte read added to `read` and every byte written to `written`: one relaxed
/// atomic add per call that moved bytes, nothing for calls that did not. Writes also tell the
/// connection's [`Activity`] that the client is taking what it is sent: here, under TLS, where a
/// write is bytes the client's socket accepted, not plaintext TLS buffered on its way.
pub struct Metered<S> {
    io: S,
    read: IntCounter,
    written: IntCounter,
    activity: Arc<Activity>,
}

impl<S> Metered<S> {
    /// Counts `io`'s traffic in `read` and `written` (the listener's, resolved once).
    pub fn new(io: S, read: &IntCounter, written: &IntCounter, activity: &Arc<Activity>) -> Self {
        Metered {
            io,
            read: read.clone(),
            written: written.clone(),
            activity: activity.clone(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.read.inc_by(n as u64);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                this.written.inc_by(n as u64);
                this.activity.wrote();
            }
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                this.written.inc_by(n as u64);
                this.activity.wrote();
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counts_what_moves_each_way_and_keeps_vectored_writes() {
        let read = IntCounter::new("r", "r").unwrap();
        let written = IntCounter::new("w", "w").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut b = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (a, _) = listener.accept().await.unwrap();
        let mut m = Metered::new(a, &read, &written, &Activity::new());
        // A socket writes vectored (hyper then writes a head and a body in one call).
        assert!(m.is_write_vectored());
        m.write_all(b"hello").await.unwrap();
        let n = m
            .write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")])
            .await
            .unwrap();
        assert_eq!(n, 4);
        let mut got = [0u8; 9];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"helloabcd");
        assert_eq!(written.get(), 9);
        b.write_all(b"0123456789").await.unwrap();
        drop(b);
        let mut back = Vec::new();
        m.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"0123456789");
        assert_eq!(read.get(), 10);
        assert_eq!(written.get(), 9);
    }
}
