//! One client connection: TCP connect, the TLS handshake (timed, full or resumed), and the HTTP/1.1
//! or HTTP/2 client on top; sending a request from its template; and sorting failures by kind.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::options::Plan;
use super::stats::{ErrorKind, Negotiated, Stats};

/// Socket byte counters of one thread. Only that thread writes them, so the relaxed adds never
/// contend.
#[derive(Default)]
pub struct Wire {
    pub read: AtomicU64,
    pub written: AtomicU64,
}

/// A TCP stream that counts what crosses it.
struct Counted {
    tcp: TcpStream,
    wire: Arc<Wire>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.wire.read.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.wire.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The request of a run, built once: each send clones cheap handles (`Bytes`, `Uri`) and the
/// small header map.
pub struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Template {
    pub fn new(plan: &Plan) -> Template {
        let mut headers = plan.headers.clone();
        let uri: Uri = if plan.h2 {
            // HTTP/2 carries the authority in the URI (`:authority`), not a Host header.
            let scheme = if plan.tls { "https" } else { "http" };
            format!("{scheme}://{}{}", plan.authority, plan.path_and_query)
        } else {
            if !headers.contains_key(http::header::HOST) {
                headers.insert(
                    http::header::HOST,
                    HeaderValue::from_str(&plan.authority)
                        .expect("a URI authority is a valid header"),
                );
            }
            if plan.new_connection {
                headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            plan.path_and_query.clone()
        }
        .parse()
        .expect("checked by Plan::new");
        Template {
            method: plan.method.clone(),
            uri,
            version: if plan.h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            headers,
            body: plan.body.clone(),
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// The client half of an open connection.
pub enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    /// Another handle on the same connection, for another stream: HTTP/2 only, since an HTTP/1.1
    /// connection carries one request at a time.
    pub fn another_stream(&self) -> Option<Sender> {
        match self {
            Sender::H1(_) => None,
            Sender::H2(s) => Some(Sender::H2(s.clone())),
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// Sends one request and reads its whole response body. Returns the status and the body size.
    pub async fn send(&mut self, tmpl: &Template) -> Result<(u16, u64), hyper::Error> {
        let resp = match self {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(tmpl.request()).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(tmpl.request()).await?
            }
        };
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut n = 0u64;
        // Frames are counted and dropped: collecting them would copy every byte.
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                n += data.len() as u64;
            }
        }
        Ok((status, n))
    }
}

/// Everything a thread's connections share.
pub struct Connector {
    pub plan: Plan,
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    pub wire: Arc<Wire>,
}

impl Connector {
    /// Opens a connection and runs its handshakes, recording the TLS one in `stats`. Errors are
    /// already sorted by kind.
    pub async fn connect(&self, stats: &std::cell::RefCell<Stats>) -> Result<Sender, ErrorKind> {
        let deadline = self.plan.timeout;
        let tcp = match timeout(deadline, TcpStream::connect(self.plan.addr)).await {
            Err(_) => return Err(ErrorKind::Timeout),
            Ok(Err(_)) => return Err(ErrorKind::Connect),
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let io = Counted {
            tcp,
            wire: self.wire.clone(),
        };
        match &self.tls {
            None => self.http(io).await,
            Some((connector, name)) => {
                let start = Instant::now();
                let tls = match timeout(deadline, connector.connect(name.clone(), io)).await {
                    Err(_) => return Err(ErrorKind::Timeout),
                    Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
                        return Err(ErrorKind::Timeout)
                    }
                    Ok(Err(_)) => return Err(ErrorKind::Tls),
                    Ok(Ok(tls)) => tls,
                };
                let micros = start.elapsed().as_micros() as u64;
                let conn = tls.get_ref().1;
                let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                let alpn = conn.alpn_protocol();
                // A server that ignores ALPN speaks HTTP/1.1; one that picked the other protocol
                // cannot serve this mode.
                let wanted: &[u8] = if self.plan.h2 { b"h2" } else { b"http/1.1" };
                let alpn_ok = alpn.is_none_or(|p| p == wanted) && (alpn.is_some() || !self.plan.h2);
                {
                    let mut s = stats.borrow_mut();
                    s.handshake(resumed, micros);
                    if s.negotiated.is_none() {
                        s.negotiated = Some(Negotiated {
                            version: conn
                                .protocol_version()
                                .map_or_else(String::new, |v| format!("{v:?}")),
                            cipher_suite: conn
                                .negotiated_cipher_suite()
                                .map_or_else(String::new, |c| format!("{:?}", c.suite())),
                            alpn: alpn.map(|p| String::from_utf8_lossy(p).into_owned()),
                        });
                    }
                }
                if !alpn_ok {
                    return Err(ErrorKind::Other);
                }
                self.http(tls).await
            }
        }
    }

    async fn http<S>(&self, io: S) -> Result<Sender, ErrorKind>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        if self.plan.h2 {
            let fut = http2::handshake(TokioExecutor::new(), io);
            let (send, conn) = match timeout(self.plan.timeout, fut).await {
                Err(_) => return Err(ErrorKind::Timeout),
                Ok(r) => r.map_err(|e| classify(&e))?,
            };
            tokio::spawn(conn);
            Ok(Sender::H2(send))
        } else {
            // Writes nothing: the HTTP/1.1 handshake only wraps the stream.
            let (send, conn) = http1::handshake(io).await.map_err(|e| classify(&e))?;
            tokio::spawn(conn);
            Ok(Sender::H1(send))
        }
    }
}

/// Sorts a request failure by kind, looking through hyper's error to the I/O error under it.
pub fn classify(err: &hyper::Error) -> ErrorKind {
    if err.is_timeout() {
        return ErrorKind::Timeout;
    }
    if err.is_incomplete_message() || err.is_canceled() {
        return ErrorKind::Reset;
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::TimedOut => ErrorKind::Timeout,
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => ErrorKind::Reset,
                io::ErrorKind::InvalidData => ErrorKind::Tls,
                _ => ErrorKind::Other,
            };
        }
        if e.downcast_ref::<rustls::Error>().is_some() {
            return ErrorKind::Tls;
        }
        source = e.source();
    }
    ErrorKind::Other
}
