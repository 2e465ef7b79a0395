//! The PROXY protocol header (HAProxy's, v1 text or v2 binary) that an L4 balancer such as AWS
//! NLB puts before a connection's own bytes to say whom it is relaying.
//!
//! Only the header's bytes are taken off the socket: what follows belongs to the TLS handshake or
//! the HTTP request, which read the socket themselves. So the header is framed here from what a
//! peek shows (v1 ends at its line feed, v2 says its length in its fixed part) and read exactly;
//! the `ppp` crate parses it once it is whole. Framing first also keeps a header split across
//! TCP segments from reaching the parser half-way through a field.

use std::net::SocketAddr;

use ppp::{v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest v1 header, CRLF included (the specification's limit).
const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// v2's fixed part: signature, version and command, family and transport, then the length of
/// what follows (addresses and TLVs) as a big-endian u16.
const V2_FIXED: usize = 16;
/// How much one peek looks at: a v1 header whole, a v2 one with the few TLVs balancers send.
const PEEK: usize = 256;

/// Why a connection's first bytes were not a PROXY protocol header.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("no PROXY protocol signature")]
    Signature,
    #[error("no line end within a v1 header's {V1_MAX} bytes")]
    TooLong,
    #[error("the connection ended inside the header")]
    Truncated,
    #[error("bad v1 header: {0}")]
    V1(#[from] v1::BinaryParseError),
    #[error("bad v2 header: {0}")]
    V2(#[from] v2::ParseError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A header read off a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The client the balancer relays; `None` for a connection that is the balancer's own (v2
    /// `LOCAL`, as its health checks send) or whose client it does not know (v1 `UNKNOWN`, v2
    /// with no IP addresses): the TCP peer stays the client then.
    pub client: Option<SocketAddr>,
    /// Bytes the header took on the wire.
    pub len: usize,
}

/// Reads the PROXY protocol header that `tcp` must begin with, and nothing after it. Waits as
/// long as the header is incomplete: the caller bounds the wait.
pub async fn read_header(tcp: &mut TcpStream) -> Result<Header, HeaderError> {
    // What has been taken off the socket so far, all of it the header's.
    let mut buf = Vec::new();
    loop {
        let taken = buf.len();
        buf.resize(taken + PEEK, 0);
        let peeked = tcp.peek(&mut buf[taken..]).await?;
        buf.truncate(taken + peeked);
        if peeked == 0 {
            return Err(HeaderError::Truncated);
        }
        match frame(&buf)? {
            // The header ends past `taken`: the previous round found it incomplete.
            Frame::Complete(len) => {
                tcp.read_exact(&mut buf[taken..len]).await?;
                return Ok(Header {
                    client: client(&buf[..len])?,
                    len,
                });
            }
            // Every byte peeked is the header's: take them, so that the next peek waits for new
            // bytes rather than showing these again at once.
            Frame::Incomplete => {
                tcp.read_exact(&mut buf[taken..]).await?;
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// The header is the first this many bytes.
    Complete(usize),
    /// Everything so far is the start of a header.
    Incomplete,
}

/// Where the header at the start of `buf` ends, telling v1 from v2 by the signature.
fn frame(buf: &[u8]) -> Result<Frame, HeaderError> {
    let starts = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    if starts(V2_SIGNATURE) {
        if buf.len() < V2_FIXED {
            return Ok(Frame::Incomplete);
        }
        let len = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        return Ok(if buf.len() >= len {
            Frame::Complete(len)
        } else {
            Frame::Incomplete
        });
    }
    if starts(V1_PREFIX) {
        let window = &buf[..buf.len().min(V1_MAX)];
        return match memchr::memchr(b'\n', window) {
            Some(end) => Ok(Frame::Complete(end + 1)),
            None if window.len() == V1_MAX => Err(HeaderError::TooLong),
            None => Ok(Frame::Incomplete),
        };
    }
    Err(HeaderError::Signature)
}

/// The client a whole header names.
fn client(header: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    if header.starts_with(V2_SIGNATURE) {
        let h = v2::Header::try_from(header)?;
        if h.command == v2::Command::Local {
            return Ok(None);
        }
        return Ok(match h.addresses {
            v2::Addresses::IPv4(a) => Some((a.source_address, a.source_port).into()),
            v2::Addresses::IPv6(a) => Some((a.source_address, a.source_port).into()),
            // Nothing that a source_ip rule or X-Forwarded-For could use.
            v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
        });
    }
    let h = v1::Header::try_from(header)?;
    Ok(match h.addresses {
        v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
        v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
        v1::Addresses::Unknown => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    const V1: &[u8] = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 443\r\n";

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend((addresses.len() as u16).to_be_bytes());
        h.extend(addresses);
        h
    }

    fn v2_ipv4() -> Vec<u8> {
        v2(1, 0x11, &[198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 1, 187])
    }

    #[test]
    fn frames_by_signature_and_length() {
        let with_tail = [V1, b"\x16\x03\x01"].concat();
        assert_eq!(frame(&with_tail).unwrap(), Frame::Complete(V1.len()));
        for n in 1..V1.len() {
            assert_eq!(frame(&V1[..n]).unwrap(), Frame::Incomplete, "{n}");
        }
        let h = v2_ipv4();
        assert_eq!(
            frame(&[&h[..], b"GET"].concat()).unwrap(),
            Frame::Complete(28)
        );
        for n in 1..h.len() {
            assert_eq!(frame(&h[..n]).unwrap(), Frame::Incomplete, "{n}");
        }
        for junk in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x16\x03\x01\x02\x00",
            b"PROXX",
            b"\r\n\r\n\0X",
        ] {
            assert!(
                matches!(frame(junk), Err(HeaderError::Signature)),
                "{junk:?}"
            );
        }
        let long = [&b"PROXY "[..], &[b'1'; 120]].concat();
        assert!(matches!(frame(&long), Err(HeaderError::TooLong)));
    }

    #[test]
    fn names_the_client_or_keeps_the_peer() {
        assert_eq!(
            client(V1).unwrap(),
            Some("203.0.113.7:51234".parse().unwrap())
        );
        assert_eq!(
            client(b"PROXY TCP6 2001:db8::7 ::1 4000 443\r\n").unwrap(),
            Some("[2001:db8::7]:4000".parse().unwrap())
        );
        assert_eq!(client(b"PROXY UNKNOWN\r\n").unwrap(), None);
        assert_eq!(
            client(&v2_ipv4()).unwrap(),
            Some("198.51.100.9:8080".parse().unwrap())
        );
        let mut v6 = [0u8; 36];
        v6[..16].copy_from_slice(
            &"2001:db8::9"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6[15 + 16] = 1;
        v6[32..34].copy_from_slice(&7000u16.to_be_bytes());
        assert_eq!(
            client(&v2(1, 0x21, &v6)).unwrap(),
            Some("[2001:db8::9]:7000".parse().unwrap())
        );
        // LOCAL, with or without addresses: the balancer speaking for itself.
        assert_eq!(client(&v2(0, 0x00, &[])).unwrap(), None);
        assert_eq!(client(&v2(0, 0x11, &v2_ipv4()[16..])).unwrap(), None);
        // Addresses shorter than the family needs; a version other than 2; a bad v1 address.
        assert!(matches!(
            client(&v2(1, 0x11, &[1, 2, 3])),
            Err(HeaderError::V2(_))
        ));
        let mut v3 = v2_ipv4();
        v3[12] = 0x31;
        assert!(matches!(client(&v3), Err(HeaderError::V2(_))));
        assert!(matches!(
            client(b"PROXY TCP4 203.0.113.300 127.0.0.1 1 2\r\n"),
            Err(HeaderError::V1(_))
        ));
        assert!(matches!(
            client(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
            Err(HeaderError::V1(_))
        ));
    }

    /// A connected pair on loopback: the client's end and the server's.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        client.set_nodelay(true).unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn a_header_in_pieces_is_read_and_what_follows_left_in_the_socket() {
        for header in [V1.to_vec(), v2_ipv4()] {
            let (mut c, mut s) = pair().await;
            let sent = header.clone();
            let writer = tokio::spawn(async move {
                // Byte by byte, then the stream's own bytes with the header's last one.
                for b in &sent[..sent.len() - 1] {
                    c.write_all(&[*b]).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                c.write_all(&[sent[sent.len() - 1]]).await.unwrap();
                c.write_all(b"after").await.unwrap();
                c
            });
            let got = read_header(&mut s).await.unwrap();
            assert_eq!(got.len, header.len());
            assert!(got.client.is_some());
            let _c = writer.await.unwrap();
            let mut rest = [0u8; 5];
            s.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest, b"after");
        }
    }

    #[tokio::test]
    async fn a_connection_that_ends_inside_the_header_is_truncated() {
        let (mut c, mut s) = pair().await;
        c.write_all(&V1[..20]).await.unwrap();
        drop(c);
        assert!(matches!(
            read_header(&mut s).await,
            Err(HeaderError::Truncated)
        ));
    }
}
