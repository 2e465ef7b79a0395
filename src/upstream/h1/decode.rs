//! A response body taken off the connection's buffer as its head framed it: a length, chunked
//! (with trailers), or until the target closes.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::head::{MAX_HEADERS, MAX_HEAD_BUFFER};
use super::Error;

/// The most bytes of chunk extensions a body may carry in all (hyper's): they are skipped, but
/// must not be a way to keep seawall reading without end.
pub(super) const MAX_CHUNK_EXTENSIONS: u64 = 16 * 1024;

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
