//! The header fields seawall adds to every forwarded request, as ALB does: `X-Forwarded-For`
//! (the client appended to any list the client sent), `X-Forwarded-Proto`, `X-Forwarded-Port`,
//! and `X-Amzn-Trace-Id` when the client sent none. Each replaces whatever the client sent under
//! its name.
//!
//! They travel beside the request's headers, as [`Added`], until the request is written. An
//! HTTP/1 target's head gets them from the encoder (`h1`), which passes over the client's own
//! lines of those names, so that none of them costs a `HeaderMap` insert: each insert hashes the
//! name and probes the map, about 250 instructions, a thousand a request for the four. An HTTP/2
//! request, which hyper encodes from its map, gets them inserted ([`Added::insert_into`]).

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// What the forwarded headers say about the client side of the connection.
pub struct ForwardedFor<'a> {
    /// The client's address, pre-rendered once per connection.
    pub client_ip: &'a HeaderValue,
    /// `http` or `https`: the listener's protocol.
    pub proto: &'static str,
    /// The port the client connected to, pre-rendered once per connection.
    pub port: &'a HeaderValue,
}

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");

/// The fields seawall adds to one request.
pub struct Added<'a> {
    pub forwarded: ForwardedFor<'a>,
    /// The trace id seawall made, for a request that came without one (the client's own stays
    /// among the request's headers). Borrowed from the request's record: a copy would be 40
    /// more bytes in every request's future.
    pub made_trace_id: Option<&'a [u8; TRACE_ID_LEN]>,
}

impl<'a> Added<'a> {
    /// The fields for a request whose trace id is `trace_id` (see [`TraceId::of`]).
    pub fn new(forwarded: ForwardedFor<'a>, trace_id: &'a TraceId) -> Self {
        let made_trace_id = match trace_id {
            TraceId::Made(id) => Some(id),
            TraceId::Client(_) => None,
        };
        Added {
            forwarded,
            made_trace_id,
        }
    }

    /// Whether a field the client sent under `name` gives way to one of these.
    pub fn replaces(name: &str) -> bool {
        matches!(
            name,
            "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-port"
        )
    }

    /// Writes the fields as HTTP/1 header lines; `client_for` are the `X-Forwarded-For` lines
    /// the client sent, which the encoder passed over, each a list the client is appended to.
    pub fn encode<'v>(&self, out: &mut Vec<u8>, client_for: impl Iterator<Item = &'v HeaderValue>) {
        out.extend_from_slice(b"x-forwarded-for: ");
        append_lists(out, client_for);
        out.extend_from_slice(self.forwarded.client_ip.as_bytes());
        out.extend_from_slice(b"\r\nx-forwarded-proto: ");
        out.extend_from_slice(self.forwarded.proto.as_bytes());
        out.extend_from_slice(b"\r\nx-forwarded-port: ");
        out.extend_from_slice(self.forwarded.port.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(id) = self.made_trace_id {
            out.extend_from_slice(b"x-amzn-trace-id: ");
            out.extend_from_slice(id);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Puts the fields among the request's headers, for a target whose requests are encoded from
    /// them (HTTP/2).
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        let f = &self.forwarded;
        // Every XFF line the client sent, in order, then the client: `get` would keep the first
        // only.
        let mut list = Vec::new();
        append_lists(&mut list, headers.get_all(X_FORWARDED_FOR));
        let xff = if list.is_empty() {
            f.client_ip.clone()
        } else {
            list.extend_from_slice(f.client_ip.as_bytes());
            // Valid values joined by ", " are valid. Should a client's value not have been
            // checked where it was taken, its list gives way to the client alone: no panic on
            // what a client sent.
            HeaderValue::from_bytes(&list).unwrap_or_else(|_| f.client_ip.clone())
        };
        headers.insert(X_FORWARDED_FOR, xff);
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(f.proto));
        headers.insert(X_FORWARDED_PORT, f.port.clone());
        if let Some(id) = self.made_trace_id {
            let id = HeaderValue::from_bytes(id).expect("hex digits are a valid header value");
            headers.insert(X_AMZN_TRACE_ID, id);
        }
    }
}

/// Appends the `X-Forwarded-For` lists a client sent, each trimmed and followed by `, `, for
/// the client to go last; blank ones are left out. Several lines fold into one list, as a proxy
/// must when it appends.
fn append_lists<'v>(out: &mut Vec<u8>, lists: impl IntoIterator<Item = &'v HeaderValue>) {
    for list in lists {
        let list = list.as_bytes().trim_ascii();
        if !list.is_empty() {
            out.extend_from_slice(list);
            out.extend_from_slice(b", ");
        }
    }
}

/// A request's `X-Amzn-Trace-Id`, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceId {
    /// One seawall made, by value: a clone of the header's own bytes would allocate (the buffer
    /// of a value made from a slice is only shared on its first clone), this costs a copy.
    Made([u8; TRACE_ID_LEN]),
    /// The client's, shared with the request's header.
    Client(HeaderValue),
}

impl TraceId {
    /// The client's `X-Amzn-Trace-Id`, or a new one: made once per request, and written to the
    /// target by [`Added`].
    pub fn of(headers: &HeaderMap) -> TraceId {
        match headers.get(X_AMZN_TRACE_ID) {
            Some(v) => TraceId::Client(v.clone()),
            None => TraceId::Made(new_trace_id()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            TraceId::Made(id) => id,
            TraceId::Client(v) => v.as_bytes(),
        }
    }
}

/// The length of the trace ids seawall makes.
pub const TRACE_ID_LEN: usize = 40;

/// `Root=1-<8 hex digits of the epoch second>-<24 hex digits>`, ALB's request id.
fn new_trace_id() -> [u8; TRACE_ID_LEN] {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Written by hand: `format!` costs several times as much on every request.
    let mut id = *b"Root=1-00000000-000000000000000000000000";
    put_hex(&mut id[7..15], u64::from(secs as u32));
    put_hex(&mut id[16..32], fastrand::u64(..));
    put_hex(&mut id[32..40], u64::from(fastrand::u32(..)));
    id
}

/// Writes the low `out.len()` hex digits of `v` into `out`, most significant first.
fn put_hex(out: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    /// The names [`Added::replaces`] matches, as `HeaderName`s.
    const REPLACED: [HeaderName; 3] = [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_PORT];

    fn forwarded<'a>(ip: &'a HeaderValue, port: &'a HeaderValue) -> ForwardedFor<'a> {
        ForwardedFor {
            client_ip: ip,
            proto: "https",
            port,
        }
    }

    /// The fields as the HTTP/1 encoder writes them, after the client's own (those not
    /// replaced), parsed back into a map.
    fn encoded(headers: &HeaderMap, added: &Added<'_>) -> HeaderMap {
        let mut out = Vec::new();
        for (name, value) in headers {
            if !Added::replaces(name.as_str()) {
                out.extend_from_slice(format!("{name}: ").as_bytes());
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        added.encode(&mut out, headers.get_all(X_FORWARDED_FOR).iter());
        out.extend_from_slice(b"\r\n");
        let mut lines = [httparse::EMPTY_HEADER; 16];
        let (_, parsed) = httparse::parse_headers(&out, &mut lines).unwrap().unwrap();
        let mut map = HeaderMap::new();
        for h in parsed {
            let name = HeaderName::from_bytes(h.name.as_bytes()).unwrap();
            map.append(name, HeaderValue::from_bytes(h.value).unwrap());
        }
        map
    }

    /// Both ways of adding the fields (HTTP/1's encoder, HTTP/2's map) give the same fields.
    fn both_ways(
        headers: &HeaderMap,
        ip: &HeaderValue,
        port: &HeaderValue,
    ) -> (TraceId, HeaderMap) {
        let trace_id = TraceId::of(headers);
        let added = Added::new(forwarded(ip, port), &trace_id);
        let written = encoded(headers, &added);
        let mut inserted = headers.clone();
        added.insert_into(&mut inserted);
        assert_eq!(written, inserted);
        (trace_id, written)
    }

    #[test]
    fn forwarded_headers_append_and_trace_id_is_kept() {
        let port = HeaderValue::from_static("8443");
        let ip = HeaderValue::from_static("10.1.2.3");
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, "1.1.1.1".parse().unwrap());
        h.insert(X_FORWARDED_PROTO, "http".parse().unwrap());
        h.insert(X_FORWARDED_PORT, "1".parse().unwrap());
        h.insert(X_AMZN_TRACE_ID, "Root=1-00000000-abc".parse().unwrap());
        let (trace_id, h) = both_ways(&h, &ip, &port);
        assert_eq!(trace_id.as_bytes(), b"Root=1-00000000-abc");
        assert_eq!(h[X_FORWARDED_FOR], "1.1.1.1, 10.1.2.3");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_PORT], "8443");
        assert_eq!(h[X_AMZN_TRACE_ID], "Root=1-00000000-abc");
        for name in REPLACED {
            assert_eq!(h.get_all(&name).iter().count(), 1, "{name}");
        }

        // Several XFF lines, one of them blank, fold into one list.
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, "1.1.1.1, 2.2.2.2".parse().unwrap());
        h.append(X_FORWARDED_FOR, " ".parse().unwrap());
        h.append(X_FORWARDED_FOR, " 3.3.3.3 ".parse().unwrap());
        h.insert(header::HOST, "example.com".parse().unwrap());
        let (_, h) = both_ways(&h, &ip, &port);
        assert_eq!(h[X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3");
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[header::HOST], "example.com");

        // Without a list from the client, the client alone; a new trace id is added.
        let (made, h) = both_ways(&HeaderMap::new(), &ip, &port);
        assert_eq!(h[X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(h[X_AMZN_TRACE_ID].as_bytes(), made.as_bytes());
        assert!(matches!(made, TraceId::Made(_)));
    }

    #[test]
    fn the_replaced_names_are_the_forwarded_ones() {
        for name in REPLACED {
            assert!(Added::replaces(name.as_str()), "{name}");
        }
        assert!(!Added::replaces(X_AMZN_TRACE_ID.as_str()));
        assert!(!Added::replaces("x-forwarded-host"));
    }

    #[test]
    fn hex_digits_are_written_most_significant_first() {
        let mut out = [0u8; 8];
        put_hex(&mut out, 0x1234_abcd);
        assert_eq!(&out, b"1234abcd");
        let mut out = [0u8; 16];
        put_hex(&mut out, 0xf);
        assert_eq!(&out, b"000000000000000f");
    }

    #[test]
    fn trace_id_has_albs_shape() {
        let id = TraceId::of(&HeaderMap::new());
        assert!(matches!(id, TraceId::Made(_)));
        let s = std::str::from_utf8(id.as_bytes()).unwrap();
        let parts: Vec<&str> = s.strip_prefix("Root=1-").unwrap().split('-').collect();
        assert_eq!(parts[0].len(), 8);
        assert_eq!(parts[1].len(), 24);
        assert!(parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit())));
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let stamped = u64::from_str_radix(parts[0], 16).unwrap();
        assert!(stamped.abs_diff(secs & 0xffff_ffff) < 5, "{s}");
    }
}
