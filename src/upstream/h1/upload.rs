//! A request on its way to the target: its head, and its body framed by its length or chunked.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::Method;
use http_body::Body as _;
use tokio::io::AsyncWrite;

use super::head::content_length;
use crate::upstream::connect::TargetStream;
use crate::upstream::forwarded::X_FORWARDED_FOR;
use crate::upstream::{Added, BodyError, UpstreamBody};

/// How a request body is framed on its way to the target.
#[derive(Debug, Clone, Copy)]
pub(super) enum Encoding {
    /// As many bytes as the request declared.
    Length(u64),
    Chunked,
}

/// How a body is framed: a declared length is kept; anything else goes chunked (the proxy
/// removed the client's own framing headers, as hop-by-hop or as HTTP/2 has none), except for
/// methods whose body has no defined meaning, which send none then, as hyper's client does (the
/// client's body is read and thrown away as it is dropped).
pub(super) fn encoding(method: &Method, headers: &HeaderMap) -> Option<Encoding> {
    match content_length(headers) {
        Ok(Some(n)) => Some(Encoding::Length(n)),
        _ if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) => None,
        _ => Some(Encoding::Chunked),
    }
}

/// The request line and header lines of a request, into `out`.
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    added: Option<&Added<'_>>,
    encoding: Option<Encoding>,
) {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    // 256: the request line's and the added fields' own (about 150 bytes with a made trace id).
    out.reserve(256 + target.len() + headers.len() * 32);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let chunked = matches!(encoding, Some(Encoding::Chunked));
    let mut client_for = false;
    for (name, value) in headers {
        // A length that was not used to frame the body (it did not parse) is not sent.
        if chunked && (name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING) {
            continue;
        }
        let name = name.as_str();
        if added.is_some() && Added::replaces(name) {
            client_for |= name == "x-forwarded-for";
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(added) = added {
        // The client's lists, looked up only when it sent one.
        let client_for = client_for.then(|| headers.get_all(X_FORWARDED_FOR).iter());
        added.encode(out, client_for.into_iter().flatten());
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Why sending a request body stopped.
pub(super) enum UploadError {
    /// The client's body broke off (framing, the listener's limit, a stall).
    Client(BodyError),
    /// The target's connection failed under it.
    Target(io::Error),
}

/// A request body on its way to the target, framed as its head said.
pub(super) struct Upload {
    body: UpstreamBody,
    encoding: Encoding,
    /// Framed bytes not yet written.
    pending: BytesMut,
    /// The body has ended, and its end is in `pending`.
    ended: bool,
}

impl Upload {
    pub(super) fn new(body: UpstreamBody, encoding: Encoding) -> Self {
        Upload {
            body,
            encoding,
            pending: BytesMut::new(),
            ended: false,
        }
    }

    /// Sends as much of the body as the client has sent and the target takes; `Ready(Ok)` once
    /// it has all gone.
    pub(super) fn poll(
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
