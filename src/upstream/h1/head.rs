//! A target's response head, parsed with httparse, and how it frames its body (RFC 9112,
//! section 6.3).

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};

use super::decode::{Chunked, Decoding};
use super::Error;
use crate::http_tokens;
use crate::upstream::pool::MAX_RESPONSE_HEAD;

/// The most a response head may fill while its end is looked for: twice ALB's limit on a head,
/// which `proxy::forward` checks exactly once it is parsed.
pub(super) const MAX_HEAD_BUFFER: usize = 2 * MAX_RESPONSE_HEAD;

/// The most header lines a response head, or a chunked body's trailers, may have (hyper's).
pub(super) const MAX_HEADERS: usize = 100;

/// A `Content-Length`'s value: every line and list element must say the same number.
pub(super) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
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
