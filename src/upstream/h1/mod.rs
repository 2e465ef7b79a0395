//! seawall's HTTP/1 client towards targets: the exchange runs in the task of the request that
//! makes it (its future until the response head, then its response body), on a connection it
//! owns while it lasts, as Pingora's does. No connection task, no channels between tasks: each
//! request reads and writes its target's socket itself.
//!
//! What it does, and what it leaves to others:
//! - Requests go out as the proxy made them (origin-form, Host set, hop-by-hop headers gone); a
//!   body with no declared length goes chunked.
//! - Responses are parsed with httparse, framed as RFC 9112 section 6.3 says (HEAD, 1xx, 204 and
//!   304 carry no body; `Transfer-Encoding: chunked`; `Content-Length`; else until the target
//!   closes), and 1xx answers other than 101 are passed over.
//! - The request body, when the target answers before it has all gone, goes on being sent while
//!   the response body is read ([`Body`]).
//! - A connection is kept for the next request only when both messages ended cleanly, the
//!   target did not ask to close, and nothing followed the answer.
//! - Idle, in the pool, a connection is watched by no one: what happened to it meanwhile (the
//!   target closed it, sent stray bytes) is found as it is taken ([`Conn::is_reusable`]), at no
//!   system call when nothing did.
//!
//! Its parts: [`head`] parses a response head and says how its body is framed, [`decode`] takes
//! the body off the connection's buffer, [`upload`] frames and sends the request.

mod decode;
mod head;
mod upload;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;

pub use decode::{Chunked, Decoding, Step};
pub use head::{parse_head, Framing};
use upload::{encode_head, encoding, Upload, UploadError};

use super::connect::TargetStream;
use super::pool::Shape;
use super::{Added, BodyError, UpstreamBody};

/// The first read's room; grown (up to [`MAX_READ`]) while reads fill it.
const FIRST_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;

/// How long a failure of the target's body is held back before the client's side is told: long
/// enough for what came before it to be written out. hyper's server, told that a body failed,
/// closes the client's connection (or resets its stream) at once, dropping what it has not yet
/// written; in this task, the break is found in the very poll after the last good chunk.
const HOLD_BACK: Duration = Duration::from_millis(1);

/// Why an exchange with a target failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error("the target closed the connection before a whole response head")]
    ClosedBeforeHead,
    #[error("the target closed the connection before the end of the response body")]
    ClosedInBody,
    #[error("malformed response head: {0}")]
    Head(#[from] httparse::Error),
    #[error("response head larger than {} bytes", head::MAX_HEAD_BUFFER)]
    HeadTooLarge,
    #[error("malformed response: {0}")]
    Framing(&'static str),
    #[error("the client's request body: {0}")]
    ClientBody(#[from] BodyError),
}

impl Error {
    /// Whether the connection was closed or reset under the exchange, rather than the target
    /// answering something wrong.
    pub fn closed_under(&self) -> bool {
        use std::io::ErrorKind::*;
        match self {
            Error::ClosedBeforeHead | Error::ClosedInBody => true,
            Error::Io(e) => matches!(
                e.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ),
            _ => false,
        }
    }
}

/// A failed exchange: the error, and whether it is the keep-alive race (a reused connection
/// closed under the request before any byte of an answer came), which an idempotent request
/// may survive by going again on a new connection.
#[derive(Debug)]
pub struct Failed {
    pub error: Error,
    pub stale: bool,
    /// The request's headers, handed back when the exchange is stale, for the request to go
    /// again without a copy made beforehand in case.
    pub headers: Option<HeaderMap>,
}

/// An open connection to a target, and what was read from it but not yet taken.
pub struct Conn {
    io: TargetStream,
    buf: BytesMut,
    /// The request head's bytes, kept between requests for its room.
    out: Vec<u8>,
    /// The room the next read asks for.
    read_size: usize,
    pub(super) shape: Shape,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("shape", &self.shape)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Conn {
    pub(super) fn new(io: TargetStream, shape: Shape) -> Box<Self> {
        Box::new(Conn {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            read_size: FIRST_READ,
            shape,
        })
    }

    /// Whether an idle connection can take a request: nothing came on it while it waited (not
    /// the target's close, nor stray bytes). The socket's readiness is what the reactor last
    /// saw, so this makes no system call unless something arrived (or the last read filled its
    /// room).
    pub(super) fn is_reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.buf.reserve(FIRST_READ);
        let mut cx = Context::from_waker(Waker::noop());
        poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.buf).is_pending()
    }

    /// Reads more into the buffer; `Ok(0)` at the target's end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            self.buf.reserve(self.read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = ready!(poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf))?;
        if n == room && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Poll::Ready(Ok(n))
    }
}

/// Sends `req` on `conn` and reads the target's answer up to its final head. The response's
/// body owns the connection from then on (see [`Body`]). `reused`: the connection served an
/// exchange before, so an early close may be the keep-alive race.
#[allow(clippy::manual_async_fn)] // see `proxy::handle`: the request is not kept twice
pub fn exchange<'a>(
    mut conn: Box<Conn>,
    req: Request<UpstreamBody>,
    added: Option<&'a Added<'a>>,
    reused: bool,
) -> impl Future<Output = Result<Response<Body>, Failed>> + 'a {
    async move {
        let (parts, body) = req.into_parts();
        let encoding = match &body {
            UpstreamBody::Empty => None,
            UpstreamBody::Stream(_) => encoding(&parts.method, &parts.headers),
        };
        // The head's other parts end in this block, so the future does not keep them across
        // its waits. The headers are kept until the answer comes: a stale exchange hands them
        // back.
        let (method, upgrade, headers) = {
            let parts = parts;
            encode_head(
                &mut conn.out,
                &parts.method,
                &parts.uri,
                &parts.headers,
                added,
                encoding,
            );
            let upgrade = parts.headers.contains_key(header::UPGRADE);
            (parts.method, upgrade, parts.headers)
        };
        let mut out = std::mem::take(&mut conn.out);
        let wrote = write_all(&mut conn.io, &out).await;
        out.clear();
        conn.out = out;
        if let Err(e) = wrote {
            let error = Error::Io(e);
            let stale = reused && error.closed_under();
            let headers = stale.then_some(headers);
            return Err(Failed {
                error,
                stale,
                headers,
            });
        }
        // Boxed at once: the response body takes it over, and the exchange's future (every
        // request's) stays small.
        let mut upload = encoding.map(|enc| Box::new(Upload::new(body, enc)));
        // Whether any of the answer came: after that, a close is not the keep-alive race.
        let mut answered = false;
        // The request did not all go: whatever the answer, the connection is not reused.
        let mut cut_short = false;
        let head = poll_fn(|cx| {
            if let Some(up) = &mut upload {
                match up.poll(cx, &mut conn.io) {
                    Poll::Ready(Ok(())) => upload = None,
                    Poll::Ready(Err(UploadError::Client(e))) => {
                        return Poll::Ready(Err(Error::ClientBody(e)));
                    }
                    // The target stopped taking the request, perhaps to answer it: its answer, or
                    // its close, is read for.
                    Poll::Ready(Err(UploadError::Target(e))) => {
                        tracing::debug!(error = %e, "the target stopped taking the request body");
                        upload = None;
                        cut_short = true;
                    }
                    Poll::Pending => {}
                }
            }
            loop {
                if !conn.buf.is_empty() {
                    answered = true;
                    if let Some(head) = parse_head(&mut conn.buf, &method, upgrade)? {
                        return Poll::Ready(Ok(head));
                    }
                }
                if ready!(conn.poll_fill(cx))? == 0 {
                    return Poll::Ready(Err(Error::ClosedBeforeHead));
                }
            }
        })
        .await;
        let (head, framing) = match head {
            Ok(h) => h,
            Err(error) => {
                let stale = reused && !answered && error.closed_under();
                let headers = stale.then_some(headers);
                return Err(Failed {
                    error,
                    stale,
                    headers,
                });
            }
        };
        drop(headers);
        let mut body = Body {
            conn: Some(conn),
            framing: framing.decoding,
            upload,
            reusable: framing.keep_alive && !cut_short,
            finished: None,
            failed: None,
        };
        if matches!(body.framing, Decoding::Done) {
            body.finish();
        }
        Ok(head.map(|()| body))
    }
}

/// Writes `buf` whole, and flushes it (a TLS stream holds what it encrypted until then).
async fn write_all(io: &mut TargetStream, mut buf: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    while !buf.is_empty() {
        let n = io.write(buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    io.flush().await
}

/// A target's response body. It owns the connection until the body ends: it reads it itself,
/// and goes on sending the request body should the target have answered before all of it went.
/// Ended cleanly on a connection fit for more, it holds the connection for the pool
/// ([`Body::take_conn`]); dropped before its end, or failed, it closes it.
pub struct Body {
    conn: Option<Box<Conn>>,
    framing: Decoding,
    upload: Option<Box<Upload>>,
    reusable: bool,
    /// The connection, once the exchange is over and it can serve another.
    finished: Option<Box<Conn>>,
    /// A failure, held back a moment (see [`HOLD_BACK`]).
    failed: Option<Box<(Error, Pin<Box<Sleep>>)>>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("framing", &self.framing)
            .field("reusable", &self.reusable)
            .finish_non_exhaustive()
    }
}

impl Body {
    /// The connection, once the exchange is over and left it fit for another.
    pub fn take_conn(&mut self) -> Option<Box<Conn>> {
        self.finished.take()
    }

    /// The connection is closed at the end whatever happens (what the target made of the
    /// request's end is unknown).
    pub fn forbid_reuse(&mut self) {
        self.reusable = false;
        self.finished = None;
    }

    /// After a 101: the connection, with whatever the target sent after its head, for the
    /// tunnel.
    pub fn upgraded(mut self) -> Option<Upgraded> {
        if !matches!(self.framing, Decoding::Upgraded) {
            return None;
        }
        let conn = self.conn.take()?;
        let Conn { io, buf, .. } = *conn;
        Some(Upgraded {
            early: buf.freeze(),
            io,
        })
    }

    /// The body ended: the connection goes to `finished` if it can serve another exchange.
    fn finish(&mut self) {
        self.framing = Decoding::Done;
        let conn = self.conn.take();
        if self.reusable && self.upload.is_none() {
            self.finished = conn.filter(|c| c.buf.is_empty());
        }
        self.upload = None;
    }

    fn fail(
        &mut self,
        error: Error,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.conn = None;
        self.upload = None;
        self.framing = Decoding::Done;
        let mut hold = Box::pin(tokio::time::sleep(HOLD_BACK));
        if hold.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(error)));
        }
        self.failed = Some(Box::new((error, hold)));
        Poll::Pending
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if let Some(failed) = &mut this.failed {
            ready!(failed.1.as_mut().poll(cx));
            let (error, _) = *this.failed.take().expect("just seen");
            return Poll::Ready(Some(Err(error)));
        }
        let Some(conn) = &mut this.conn else {
            return Poll::Ready(None);
        };
        if let Some(up) = &mut this.upload {
            match up.poll(cx, &mut conn.io) {
                Poll::Ready(Ok(())) => this.upload = None,
                // Either way the request did not end as it should: the connection is not kept.
                Poll::Ready(Err(e)) => {
                    if let UploadError::Target(e) = e {
                        tracing::debug!(error = %e, "the target stopped taking the request body");
                    }
                    this.upload = None;
                    this.reusable = false;
                }
                Poll::Pending => {}
            }
        }
        loop {
            match this.framing.step(&mut conn.buf) {
                Ok(Step::Data(d)) => {
                    if this.framing.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Ok(Step::Trailers(t)) => {
                    this.finish();
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => match conn.poll_fill(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => match this.framing.at_eof() {
                        Ok(()) => {
                            this.reusable = false;
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Err(e) => return this.fail(e, cx),
                    },
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return this.fail(Error::Io(e), cx),
                },
                Err(e) => return this.fail(e, cx),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.framing, &self.conn) {
            (Decoding::Length(n), Some(_)) => SizeHint::with_exact(*n),
            (_, None) | (Decoding::Done | Decoding::Upgraded, _) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// A target connection switched to another protocol (101): what the target sent after its
/// head is read first.
pub struct Upgraded {
    early: Bytes,
    io: TargetStream,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
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
    use super::decode::MAX_CHUNK_EXTENSIONS;
    use super::head::MAX_HEAD_BUFFER;
    use super::upload::Encoding;
    use super::*;
    use bytes::BytesMut;
    use http::header::{HeaderMap, HeaderValue};
    use http::Method;

    fn head(raw: &str, method: Method) -> Result<Option<(Response<()>, Framing)>, Error> {
        parse_head(&mut BytesMut::from(raw), &method, false)
    }

    fn framing(raw: &str) -> Framing {
        head(raw, Method::GET).unwrap().expect("a whole head").1
    }

    /// The body's pieces, fed `step` bytes at a time: its data, its trailers, and whether it
    /// ended.
    fn decode(
        mut d: Decoding,
        bytes: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>, bool), Error> {
        let mut buf = BytesMut::new();
        let (mut data, mut trailers) = (Vec::new(), None);
        for piece in bytes.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match d.step(&mut buf)? {
                    Step::Data(b) => data.extend_from_slice(&b),
                    Step::Trailers(t) => trailers = Some(t),
                    Step::End => return Ok((data, trailers, true)),
                    Step::More => break,
                }
                if d.is_done() {
                    return Ok((data, trailers, true));
                }
            }
        }
        Ok((data, trailers, false))
    }

    #[test]
    fn a_chunked_body_decodes_the_same_however_it_arrives() {
        let body = b"5;name=value\r\nhello\r\n6 \r\n world\r\n0\r\nx-sum: 1\r\nx-more: 2\r\n\r\n";
        for step in 1..body.len() {
            let (data, trailers, ended) =
                decode(Decoding::Chunked(Chunked::default()), body, step).unwrap();
            assert_eq!(data, b"hello world", "step {step}");
            let trailers = trailers.expect("trailers");
            assert_eq!(trailers["x-sum"], "1");
            assert_eq!(trailers["x-more"], "2");
            assert!(ended);
        }
        let (data, trailers, ended) = decode(
            Decoding::Chunked(Chunked::default()),
            b"3\r\nabc\r\n0\r\n\r\n",
            1,
        )
        .unwrap();
        assert_eq!(
            (data.as_slice(), trailers, ended),
            (&b"abc"[..], None, true)
        );
    }

    #[test]
    fn broken_chunked_framing_is_an_error() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"5;a\nb\r\n",
            b"11111111111111111\r\n",
            b"0\r\nbad trailer\r\n\r\n",
        ] {
            let got = decode(Decoding::Chunked(Chunked::default()), bad, bad.len());
            assert!(got.is_err(), "{:?}: {got:?}", String::from_utf8_lossy(bad));
        }
        // Extensions are skipped, but not without end.
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_CHUNK_EXTENSIONS as usize + 1));
        assert!(decode(Decoding::Chunked(Chunked::default()), &long, 4096).is_err());
    }

    #[test]
    fn a_length_body_ends_at_its_length_and_leaves_the_rest() {
        let mut buf = BytesMut::from(&b"helloEXTRA"[..]);
        let mut d = Decoding::Length(5);
        assert!(matches!(d.step(&mut buf).unwrap(), Step::Data(b) if b == "hello"));
        assert!(d.is_done());
        assert_eq!(buf, "EXTRA");
        let mut short = Decoding::Length(5);
        assert!(short.at_eof().is_err(), "a length cut short is an error");
        let mut close = Decoding::Close;
        assert!(close.at_eof().is_ok() && close.is_done());
    }

    #[test]
    fn responses_are_framed_as_rfc_9112_says() {
        let f = framing("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n");
        assert!(matches!(f.decoding, Decoding::Length(3)) && f.keep_alive);
        let f = framing("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(f.decoding.is_done() && f.keep_alive);
        let f = framing("HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(f.decoding, Decoding::Close) && !f.keep_alive);
        let f = framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert!(matches!(f.decoding, Decoding::Close) && !f.keep_alive);
        for bodyless in [
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
        ] {
            let f = framing(bodyless);
            assert!(f.decoding.is_done() && f.keep_alive, "{bodyless}");
        }
        let (_, f) = head("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD)
            .unwrap()
            .unwrap();
        assert!(f.decoding.is_done() && f.keep_alive);
        // Both framings: chunked, the length dropped, the connection not kept.
        let (h, f) = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(f.decoding, Decoding::Chunked(_)) && !f.keep_alive);
        assert!(!h.headers().contains_key(header::CONTENT_LENGTH));
        // Who may keep the connection.
        assert!(
            !framing("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                .keep_alive
        );
        assert!(!framing("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive);
        assert!(
            framing("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n")
                .keep_alive
        );
        assert!(!framing("HTTP/1.1 200 OK\r\nconnection: close\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n").keep_alive);
    }

    #[test]
    fn informational_answers_are_passed_over_but_101_ends_an_upgrade() {
        let raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let (h, _) = head(raw, Method::POST).unwrap().unwrap();
        assert_eq!(h.status(), 200);
        // Only the 1xx so far: more is needed.
        assert!(head("HTTP/1.1 100 Continue\r\n\r\n", Method::POST)
            .unwrap()
            .is_none());
        let switch = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\nearly";
        let mut buf = BytesMut::from(switch);
        let (h, f) = parse_head(&mut buf, &Method::GET, true).unwrap().unwrap();
        assert_eq!(h.status(), 101);
        assert!(matches!(f.decoding, Decoding::Upgraded) && !f.keep_alive);
        assert_eq!(buf, "early", "what follows is the tunnel's");
        assert!(head(switch, Method::GET).is_err(), "a 101 no one asked for");
    }

    #[test]
    fn malformed_heads_are_errors() {
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\n",
            "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            "NOTHTTP 200 OK\r\n\r\n",
        ] {
            assert!(head(bad, Method::GET).is_err(), "{bad}");
        }
        let f = framing("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n");
        assert!(
            matches!(f.decoding, Decoding::Length(3)),
            "the same length twice"
        );
        let huge = format!("HTTP/1.1 200 OK\r\nx-a: {}", "a".repeat(MAX_HEAD_BUFFER));
        assert!(matches!(head(&huge, Method::GET), Err(Error::HeadTooLarge)));
    }

    #[test]
    fn a_target_s_own_reason_is_kept() {
        let (h, _) = head(
            "HTTP/1.1 200 Fine\r\ncontent-length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        let reason = h.extensions().get::<hyper::ext::ReasonPhrase>().unwrap();
        assert_eq!(reason.as_bytes(), b"Fine");
        let (h, _) = head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", Method::GET)
            .unwrap()
            .unwrap();
        assert!(h.extensions().get::<hyper::ext::ReasonPhrase>().is_none());
        // A reason that is not UTF-8 (which httparse gives as a "" of its own) is dropped, not
        // a crash (found by the `response` fuzz target).
        let raw = b"HTTP/1.1 100 Co\xc7\xc7ntinue\r\n\r\nHTTP/1.1 200 \xc7\xc7\r\ncontent-length: 0\r\n\r\n";
        let (h, _) = parse_head(&mut BytesMut::from(&raw[..]), &Method::GET, false)
            .unwrap()
            .unwrap();
        assert_eq!(h.status(), 200);
    }

    #[test]
    fn requests_are_framed_by_their_length_or_chunked() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("t"));
        let uri: http::Uri = "/p?q=1".parse().unwrap();
        let mut out = Vec::new();
        encode_head(
            &mut out,
            &Method::POST,
            &uri,
            &headers,
            None,
            encoding(&Method::POST, &headers),
        );
        assert_eq!(
            out,
            b"POST /p?q=1 HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert!(matches!(
            encoding(&Method::POST, &headers),
            Some(Encoding::Length(5))
        ));
        headers.remove(header::CONTENT_LENGTH);
        assert!(
            encoding(&Method::GET, &headers).is_none(),
            "a GET's unframed body is not sent"
        );
    }
}
