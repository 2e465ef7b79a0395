//! Opening a connection to a target: TCP, then TLS for HTTPS groups. Forwarded requests (through
//! [`super::pool`]) and health checks connect the same way, so a target that passes its checks
//! is reached as it was checked.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The one application protocol a TLS connection offers, as the group's protocol version says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http1,
    Http2,
}

/// A TLS client towards targets offering `alpn`: `h2` for HTTP/2 and gRPC groups (which speak
/// HTTP/2 only), `http/1.1` for HTTP/1 groups.
pub fn tls_connector(alpn: Alpn) -> TlsConnector {
    let mut cfg = super::target_tls_config();
    cfg.alpn_protocols = vec![match alpn {
        Alpn::Http1 => b"http/1.1".to_vec(),
        Alpn::Http2 => b"h2".to_vec(),
    }];
    TlsConnector::from(Arc::new(cfg))
}

/// Why no connection was made. A target that fails this way never saw a request.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("timed out")]
    Timeout,
    #[error("TCP connect: {0}")]
    Tcp(io::Error),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
}

/// A connection to a target, plain or TLS. One type for both, so that the HTTP layer above is
/// built once rather than once per transport.
#[derive(Debug)]
pub enum TargetStream {
    Plain(TcpStream),
    /// Boxed: a TLS session is ten times the size of a socket, and plain connections should not
    /// carry its room.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to `addr` within `timeout` (the TCP connect only: a slow TLS handshake is bounded by
/// the caller's overall deadline, as it was with hyper-util's connector), then runs the TLS
/// handshake when `tls` is given. The server name is the target's IP, which rustls sends no SNI
/// for: targets are addressed by IP, like ALB's.
pub async fn open(
    addr: SocketAddr,
    tls: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<TargetStream, ConnectError> {
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(tcp) => tcp.map_err(ConnectError::Tcp)?,
    };
    // Requests and small answers go out at once rather than waiting for an ACK (Nagle).
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(TargetStream::Plain(tcp)),
        Some(tls) => tls
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map(|s| TargetStream::Tls(Box::new(s)))
            .map_err(ConnectError::Tls),
    }
}

impl AsyncRead for TargetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            TargetStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TargetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            TargetStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            TargetStream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            TargetStream::Plain(s) => s.is_write_vectored(),
            TargetStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_flush(cx),
            TargetStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            TargetStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
