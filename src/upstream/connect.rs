//! Opening a connection to a target: TCP, then TLS for HTTPS groups. Forwarded requests (through
//! [`super::pool`]) and health checks connect the same way, so a target that passes its checks
//! is reached as it was checked.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

/// The one application protocol a TLS connection offers, as the group's protocol version says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http1,
    Http2,
}

/// The TLS client towards targets offering `alpn`: `h2` for HTTP/2 and gRPC groups (which speak
/// HTTP/2 only), `http/1.1` for HTTP/1 groups. One per protocol for the whole process, shared by
/// forwarded requests and health checks: building a rustls configuration costs more than a
/// handshake, and one session cache lets reconnects resume.
pub fn tls_connector(alpn: Alpn) -> &'static TlsConnector {
    static H1: OnceLock<TlsConnector> = OnceLock::new();
    static H2: OnceLock<TlsConnector> = OnceLock::new();
    let (cell, protocol) = match alpn {
        Alpn::Http1 => (&H1, &b"http/1.1"[..]),
        Alpn::Http2 => (&H2, &b"h2"[..]),
    };
    cell.get_or_init(|| {
        let mut cfg = super::target_tls_config();
        cfg.alpn_protocols = vec![protocol.to_vec()];
        TlsConnector::from(Arc::new(cfg))
    })
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

impl ConnectError {
    /// Whether the connection failed for want of seawall's own descriptors (EMFILE, ENFILE): the
    /// target is not to blame, and must not be marked failed for it.
    pub fn is_local_exhaustion(&self) -> bool {
        match self {
            ConnectError::Tcp(e) | ConnectError::Tls(e) => is_local_exhaustion(e),
            ConnectError::Timeout => false,
        }
    }
}

/// EMFILE or ENFILE: the process, or the system, has no descriptor left for a new socket.
pub fn is_local_exhaustion(e: &io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error()
        .is_some_and(|n| n == Errno::MFILE.raw_os_error() || n == Errno::NFILE.raw_os_error())
}

/// A connection to a target, plain or TLS: one type for both, so that the HTTP layer above is
/// built once rather than once per transport. The TLS side is boxed: a TLS session is ten times
/// the size of a socket, and plain connections should not carry its room.
pub type TargetStream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

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
        None => Ok(Either::Left(tcp)),
        Some(tls) => tls
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map(|s| Either::Right(Box::new(s)))
            .map_err(ConnectError::Tls),
    }
}
