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

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;

use super::connect::TargetStream;
use super::pool::{Shape, MAX_RESPONSE_HEAD};
use super::{BodyError, UpstreamBody};
use crate::http_tokens;

/// The most a response head may fill while its end is looked for: twice ALB's limit on a head,
/// which `proxy::forward` checks exactly once it is parsed.
const MAX_HEAD_BUFFER: usize = 2 * MAX_RESPONSE_HEAD;

/// The first read's room; grown (up to [`MAX_READ`]) while reads fill it.
const FIRST_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;

/// The most header lines a response head, or a chunked body's trailers, may have (hyper's).
const MAX_HEADERS: usize = 100;

/// The most bytes of chunk extensions a body may carry in all (hyper's): they are skipped, but
/// must not be a way to keep seawall reading without end.
const MAX_CHUNK_EXTENSIONS: u64 = 16 * 1024;

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
    #[error("response head larger than {MAX_HEAD_BUFFER} bytes")]
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

/// How a request body is framed on its way to the target.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    /// As many bytes as the request declared.
    Length(u64),
    Chunked,
}

/// Sends `req` on `conn` and reads the target's answer up to its final head. The response's
/// body owns the connection from then on (see [`Body`]). `reused`: the connection served an
/// exchange before, so an early close may be the keep-alive race.
pub async fn exchange(
    mut conn: Box<Conn>,
    req: Request<UpstreamBody>,
    reused: bool,
) -> Result<Response<Body>, Failed> {
    let (parts, body) = req.into_parts();
    let method = parts.method;
    let encoding = match &body {
        UpstreamBody::Empty => None,
        UpstreamBody::Stream(_) => encoding(&method, &parts.headers),
    };
    encode_head(&mut conn.out, &method, &parts.uri, &parts.headers, encoding);
    let mut out = std::mem::take(&mut conn.out);
    let wrote = write_all(&mut conn.io, &out).await;
    out.clear();
    conn.out = out;
    if let Err(e) = wrote {
        let error = Error::Io(e);
        let stale = reused && error.closed_under();
        return Err(Failed { error, stale });
    }
    let mut upload = encoding.map(|enc| Upload::new(body, enc));
    let upgrade = parts.headers.contains_key(header::UPGRADE);
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
            return Err(Failed { error, stale });
        }
    };
    let mut body = Body {
        conn: Some(conn),
        framing: framing.decoding,
        upload: upload.map(Box::new),
        reusable: framing.keep_alive && !cut_short,
        finished: None,
        failed: None,
    };
    if matches!(body.framing, Decoding::Done) {
        body.finish();
    }
    Ok(head.map(|()| body))
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

/// How a body is framed: a declared length is kept; anything else goes chunked (the proxy
/// removed the client's own framing headers, as hop-by-hop or as HTTP/2 has none), except for
/// methods whose body has no defined meaning, which send none then, as hyper's client does (the
/// client's body is read and thrown away as it is dropped).
fn encoding(method: &Method, headers: &HeaderMap) -> Option<Encoding> {
    match content_length(headers) {
        Ok(Some(n)) => Some(Encoding::Length(n)),
        _ if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) => None,
        _ => Some(Encoding::Chunked),
    }
}

/// The request line and header lines of a request, into `out`.
fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    encoding: Option<Encoding>,
) {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    out.reserve(64 + target.len() + headers.len() * 32);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let chunked = matches!(encoding, Some(Encoding::Chunked));
    for (name, value) in headers {
        // A length that was not used to frame the body (it did not parse) is not sent.
        if chunked && (name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A `Content-Length`'s value: every line and list element must say the same number.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let mut length = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        let v = v
            .to_str()
            .map_err(|_| Error::Framing("invalid content-length"))?;
        for n in v.split(',') {
            let n = n.trim();
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::Framing("invalid content-length"));
            }
            let n: u64 = n
                .parse()
                .map_err(|_| Error::Framing("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Framing("conflicting content-lengths"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// How the response's body is framed, and whether the connection may serve another exchange.
#[derive(Debug)]
pub struct Framing {
    pub decoding: Decoding,
    pub keep_alive: bool,
}

/// The next final response head at the front of `buf`, taken off it; 1xx heads before it are
/// passed over (101 ends the exchange: `upgrade`, the request asked for one). `None`: more
/// bytes are needed.
pub fn parse_head(
    buf: &mut BytesMut,
    method: &Method,
    upgrade: bool,
) -> Result<Option<(Response<()>, Framing)>, Error> {
    loop {
        let Some(parsed) = parse_one_head(buf)? else {
            return Ok(None);
        };
        let (head, keep_alive) = parsed;
        let status = head.status();
        let decoding = match status.as_u16() {
            101 if upgrade => Decoding::Upgraded,
            101 => return Err(Error::Framing("101 to a request that asked for no upgrade")),
            100..=199 => continue,
            204 | 304 => Decoding::Done,
            _ if method == Method::HEAD => Decoding::Done,
            _ => body_decoding(&head)?,
        };
        let keep_alive = keep_alive
            && match decoding {
                Decoding::Close | Decoding::Upgraded => false,
                // Both framings: the length is not trusted, nor the connection after.
                Decoding::Chunked(_) => !head.headers().contains_key(header::CONTENT_LENGTH),
                _ => true,
            };
        let mut head = head;
        if matches!(decoding, Decoding::Chunked(_)) {
            head.headers_mut().remove(header::CONTENT_LENGTH);
        }
        return Ok(Some((
            head,
            Framing {
                decoding,
                keep_alive,
            },
        )));
    }
}

/// RFC 9112, 6.3: chunked when it is the last transfer coding (else until close); a length;
/// else until close.
fn body_decoding(head: &Response<()>) -> Result<Decoding, Error> {
    let headers = head.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if head.version() == Version::HTTP_10 {
            return Err(Error::Framing("transfer-encoding in an HTTP/1.0 response"));
        }
        let last = http_tokens::tokens(headers.get_all(header::TRANSFER_ENCODING)).last();
        return Ok(if last.is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            Decoding::Chunked(Chunked::default())
        } else {
            Decoding::Close
        });
    }
    Ok(match content_length(headers)? {
        Some(0) => Decoding::Done,
        Some(n) => Decoding::Length(n),
        None => Decoding::Close,
    })
}

/// Where a header line's name and value lie in the head's bytes.
#[derive(Clone, Copy)]
struct Indices {
    name: (usize, usize),
    value: (usize, usize),
}

/// One head at the front of `buf`, taken off it, with whether the target lets the connection
/// live on (HTTP/1.1 unless it said close; HTTP/1.0 only if it said keep-alive).
fn parse_one_head(buf: &mut BytesMut) -> Result<Option<(Response<()>, bool)>, Error> {
    // Neither array is zeroed per response (6 KiB of memset was 7% of a proxied request's
    // instructions): httparse fills the lines it found, and the indices are as many as those.
    let (len, code, version, reason, indices) = {
        let mut lines = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, buf, &mut lines);
        let len = match parsed? {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial if buf.len() >= MAX_HEAD_BUFFER => {
                return Err(Error::HeadTooLarge)
            }
            httparse::Status::Partial => return Ok(None),
        };
        let start = buf.as_ptr() as usize;
        let indices: Vec<Indices> = res
            .headers
            .iter()
            .map(|h| {
                let name = h.name.as_ptr() as usize - start;
                let value = h.value.as_ptr() as usize - start;
                Indices {
                    name: (name, name + h.name.len()),
                    value: (value, value + h.value.len()),
                }
            })
            .collect();
        let code = res.code.expect("a complete head has a status");
        let version = match res.version {
            Some(1) => Version::HTTP_11,
            _ => Version::HTTP_10,
        };
        // httparse gives a reason that is not UTF-8 as a static "", which does not lie in `buf`
        // (found by the `response` fuzz target): only one that does is kept.
        let reason = res.reason.and_then(|r| {
            let at = (r.as_ptr() as usize).checked_sub(start)?;
            (!r.is_empty() && at + r.len() <= len).then_some(at..at + r.len())
        });
        (len, code, version, reason, indices)
    };
    let status =
        StatusCode::from_u16(code).map_err(|_| Error::Framing("status code out of range"))?;
    let bytes = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(indices.len());
    let mut keep_alive = version == Version::HTTP_11;
    let mut said_close = false;
    for i in &indices {
        let name = HeaderName::from_bytes(&bytes[i.name.0..i.name.1])
            .map_err(|_| Error::Framing("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(i.value.0..i.value.1))
            .map_err(|_| Error::Framing("invalid header value"))?;
        if name == header::CONNECTION {
            // Once any line asks to close, a later keep-alive does not undo it.
            let says = |token: &str| {
                http_tokens::value_tokens(&value).any(|t| t.eq_ignore_ascii_case(token))
            };
            if said_close || says("close") {
                said_close = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = says("keep-alive");
            }
        }
        headers.append(name, value);
    }
    let mut head = Response::new(());
    *head.status_mut() = status;
    *head.version_mut() = version;
    *head.headers_mut() = headers;
    if let Some(r) = reason {
        let reason = &bytes[r];
        // A reason that is not the usual one is kept, as hyper's client keeps it (its server
        // writes it out again).
        if status.canonical_reason().map(str::as_bytes) != Some(reason) {
            if let Ok(r) = hyper::ext::ReasonPhrase::try_from(reason) {
                head.extensions_mut().insert(r);
            }
        }
    }
    Ok(Some((head, keep_alive)))
}

/// How much of the response body is left, as its framing says.
#[derive(Debug)]
pub enum Decoding {
    Length(u64),
    Chunked(Chunked),
    /// Until the target closes.
    Close,
    /// The connection is the tunnel's now (101).
    Upgraded,
    Done,
}

impl Decoding {
    /// The next piece of the body from `buf` (taken off it). After the last one, the decoding
    /// is done.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Error> {
        match self {
            Decoding::Length(_) | Decoding::Close if buf.is_empty() => Ok(Step::More),
            Decoding::Length(left) => {
                let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                if *left == 0 {
                    *self = Decoding::Done;
                }
                Ok(Step::Data(buf.split_to(take).freeze()))
            }
            Decoding::Chunked(c) => {
                let step = c.decode(buf)?;
                if matches!(step, Step::Trailers(_) | Step::End) {
                    *self = Decoding::Done;
                }
                Ok(step)
            }
            Decoding::Close => Ok(Step::Data(buf.split().freeze())),
            Decoding::Upgraded | Decoding::Done => Ok(Step::End),
        }
    }

    /// The target closed the connection: the end of a body read until then, or the failure of
    /// any other.
    pub fn at_eof(&mut self) -> Result<(), Error> {
        match self {
            Decoding::Close | Decoding::Done => {
                *self = Decoding::Done;
                Ok(())
            }
            _ => Err(Error::ClosedInBody),
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Decoding::Done)
    }
}

/// One step of decoding a body from the buffer.
#[derive(Debug)]
pub enum Step {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
    /// More bytes are needed.
    More,
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    /// Chunk extension bytes seen in all (see [`MAX_CHUNK_EXTENSIONS`]).
    extensions: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// The size line's hex digits: the value so far, and whether there was a digit.
    #[default]
    SizeStart,
    Size(u64),
    /// Spaces or tabs after the size.
    SizeSpace(u64),
    /// A `;` extension, skipped to the line's end.
    Extension(u64),
    /// The size line's CR was read; its LF is next.
    SizeLf(u64),
    Data(u64),
    /// A chunk's data was read; its CRLF is next.
    DataCr,
    DataLf,
    /// The last chunk's line was read: trailers, or the final CRLF.
    Trailers,
    Done,
}

impl Chunked {
    /// The next piece of the body from `buf` (taken off it).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, Error> {
        use ChunkState::*;
        loop {
            match self.state {
                Done => return Ok(Step::End),
                Data(0) => self.state = DataCr,
                Data(n) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                    self.state = Data(n - take as u64);
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                Trailers => return self.trailers(buf),
                _ => {
                    let Some(&b) = buf.first() else {
                        return Ok(Step::More);
                    };
                    buf.advance(1);
                    self.state = self.line_byte(b)?;
                }
            }
        }
    }

    /// The state after `b`, a byte of a size line or of a chunk's closing CRLF.
    fn line_byte(&mut self, b: u8) -> Result<ChunkState, Error> {
        use ChunkState::*;
        let bad = Error::Framing("invalid chunk size line");
        Ok(match (self.state, b) {
            (SizeStart, _) | (Size(_), _) if (b as char).is_ascii_hexdigit() => {
                let size = match self.state {
                    Size(s) => s,
                    _ => 0,
                };
                let digit = (b as char).to_digit(16).expect("a hex digit") as u64;
                size.checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .map(Size)
                    .ok_or(Error::Framing("chunk size too large"))?
            }
            (Size(s), b' ' | b'\t') | (SizeSpace(s), b' ' | b'\t') => SizeSpace(s),
            (Size(s), b';') | (SizeSpace(s), b';') => Extension(s),
            (Size(s), b'\r') | (SizeSpace(s), b'\r') | (Extension(s), b'\r') => SizeLf(s),
            (Extension(_), b'\n') => return Err(Error::Framing("newline in a chunk extension")),
            (Extension(s), _) => {
                self.extensions += 1;
                if self.extensions > MAX_CHUNK_EXTENSIONS {
                    return Err(Error::Framing("chunk extensions too long"));
                }
                Extension(s)
            }
            (SizeLf(0), b'\n') => Trailers,
            (SizeLf(s), b'\n') => Data(s),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => SizeStart,
            _ => return Err(bad),
        })
    }

    /// The trailer section, whole, or its empty line.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Step, Error> {
        if buf.len() < 2 {
            return Ok(Step::More);
        }
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = ChunkState::Done;
            return Ok(Step::End);
        }
        let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(buf, &mut lines) {
            Ok(httparse::Status::Complete((len, lines))) => {
                let mut trailers = HeaderMap::with_capacity(lines.len());
                for l in lines {
                    let name = HeaderName::from_bytes(l.name.as_bytes())
                        .map_err(|_| Error::Framing("invalid trailer name"))?;
                    let value = HeaderValue::from_bytes(l.value)
                        .map_err(|_| Error::Framing("invalid trailer value"))?;
                    trailers.append(name, value);
                }
                buf.advance(len);
                self.state = ChunkState::Done;
                Ok(Step::Trailers(trailers))
            }
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BUFFER => {
                Err(Error::Framing("trailers too large"))
            }
            Ok(httparse::Status::Partial) => Ok(Step::More),
            Err(e) => Err(Error::Head(e)),
        }
    }
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

/// Why sending a request body stopped.
enum UploadError {
    /// The client's body broke off (framing, the listener's limit, a stall).
    Client(BodyError),
    /// The target's connection failed under it.
    Target(io::Error),
}

/// A request body on its way to the target, framed as its head said.
struct Upload {
    body: UpstreamBody,
    encoding: Encoding,
    /// Framed bytes not yet written.
    pending: BytesMut,
    /// The body has ended, and its end is in `pending`.
    ended: bool,
}

impl Upload {
    fn new(body: UpstreamBody, encoding: Encoding) -> Self {
        Upload {
            body,
            encoding,
            pending: BytesMut::new(),
            ended: false,
        }
    }

    /// Sends as much of the body as the client has sent and the target takes; `Ready(Ok)` once
    /// it has all gone.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut TargetStream,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            while !self.pending.is_empty() {
                match ready!(Pin::new(&mut *io).poll_write(cx, &self.pending)) {
                    Ok(0) => {
                        return Poll::Ready(Err(UploadError::Target(
                            io::ErrorKind::WriteZero.into(),
                        )))
                    }
                    Ok(n) => self.pending.advance(n),
                    Err(e) => return Poll::Ready(Err(UploadError::Target(e))),
                }
            }
            if self.ended {
                return Pin::new(&mut *io)
                    .poll_flush(cx)
                    .map_err(UploadError::Target);
            }
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => {
                    // What went so far reaches the target while the client is awaited.
                    ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(UploadError::Target)?;
                    return Poll::Pending;
                }
                Poll::Ready(f) => f,
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.push_data(data)?,
                    Err(frame) => {
                        if let (Ok(trailers), Encoding::Chunked) =
                            (frame.into_trailers(), self.encoding)
                        {
                            self.push_end(Some(&trailers));
                        }
                    }
                },
                Some(Err(e)) => return Poll::Ready(Err(UploadError::Client(e))),
                None => self.push_end(None),
            }
        }
    }

    fn push_data(&mut self, data: Bytes) -> Result<(), UploadError> {
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.encoding {
            Encoding::Length(left) => {
                // hyper's server holds the client to its declared length; this only guards it.
                *left = left.checked_sub(data.len() as u64).ok_or_else(|| {
                    UploadError::Target(io::Error::other("request body longer than its length"))
                })?;
                self.pending.extend_from_slice(&data);
            }
            Encoding::Chunked => {
                use std::fmt::Write;
                let _ = write!(Hex(&mut self.pending), "{:x}\r\n", data.len());
                self.pending.extend_from_slice(&data);
                self.pending.extend_from_slice(b"\r\n");
            }
        }
        Ok(())
    }

    fn push_end(&mut self, trailers: Option<&HeaderMap>) {
        if self.ended {
            return;
        }
        self.ended = true;
        if let Encoding::Chunked = self.encoding {
            self.pending.extend_from_slice(b"0\r\n");
            for (name, value) in trailers.into_iter().flatten() {
                self.pending.extend_from_slice(name.as_str().as_bytes());
                self.pending.extend_from_slice(b": ");
                self.pending.extend_from_slice(value.as_bytes());
                self.pending.extend_from_slice(b"\r\n");
            }
            self.pending.extend_from_slice(b"\r\n");
        }
    }
}

/// `write!` into a `BytesMut`.
struct Hex<'a>(&'a mut BytesMut);

impl std::fmt::Write for Hex<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
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
    use super::*;

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
