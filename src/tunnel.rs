//! The two-way byte pipe behind an upgraded connection (WebSocket): both directions copied until
//! both sides close, or until neither has said anything for the idle timeout, as ALB does.

use std::time::Duration;

use tokio::io::{split, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const BUF: usize = 16 * 1024;

/// `closed` ends the tunnel early: the target's deregistration delay is over.
pub async fn run<A, B>(a: A, b: B, idle: Duration, closed: CancellationToken)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = split(a);
    let (mut b_read, mut b_write) = split(b);
    let (mut a_buf, mut b_buf) = (vec![0u8; BUF], vec![0u8; BUF]);
    let (mut a_open, mut b_open) = (true, true);
    while a_open || b_open {
        // Reads are cancel-safe, so losing a race in select! loses no bytes.
        tokio::select! {
            r = a_read.read(&mut a_buf), if a_open => match r {
                Ok(n) if n > 0 => if b_write.write_all(&a_buf[..n]).await.is_err() { return },
                _ => { a_open = false; let _ = b_write.shutdown().await; }
            },
            r = b_read.read(&mut b_buf), if b_open => match r {
                Ok(n) if n > 0 => if a_write.write_all(&b_buf[..n]).await.is_err() { return },
                _ => { b_open = false; let _ = a_write.shutdown().await; }
            },
            _ = tokio::time::sleep(idle) => return,
            _ = closed.cancelled() => return,
        }
    }
}
