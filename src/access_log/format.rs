//! Lines in ALB's formats. The text format follows ALB's documented field order and quoting, so
//! that tools made for ALB's logs (Athena's table, GoAccess's `AWSALB` format, Vector's
//! `parse_aws_alb_log`) read it; the JSON format carries the same fields under the column names
//! of Athena's ALB table.
//!
//! In quoted fields `"` and `\` are escaped with a backslash and bytes outside printable ASCII
//! are written `\xHH`, so a line stays one line of ASCII whatever a client sends.
//!
//! Lines are formatted on the worker that served the request, so the text format is written for
//! the fewest instructions: into room made once per line ([`Cursor`]), by helpers inlined into
//! the line's one function (a call's prologue and epilogue cost as much as a short field), numbers
//! with `itoa`,
//! client text checked eight bytes at a time, the date part of a timestamp once a second, and
//! what a connection's lines share (the client's address, the TLS names, the trace id) once per
//! connection ([`ConnText`]). `core::fmt` and a `String` per field cost ten times as much.

use std::borrow::Cow;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use http::Version;
use serde::Serialize;

use super::entry::{Connection, ConnectionEntry, RulePriority, TraceText, Verify, WallTime};
use super::Request;

/// Formats lines, keeping what they share from one to the next.
#[derive(Debug, Default)]
pub struct Formatter {
    /// The second last formatted, and its text up to the fraction (`2018-07-02T22:23:00.`).
    second: Option<(u64, [u8; 20])>,
    /// The target last written, and its text: keep-alive connections to a target make it the
    /// same one line after line.
    target: Option<(SocketAddr, AddrText)>,
}

/// `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535` and some.
const ADDR_ROOM: usize = 56;

/// An address's text (`ip:port`), formatted apart from any line, to be copied into lines.
#[derive(Debug, Clone, Copy)]
struct AddrText {
    text: [u8; ADDR_ROOM],
    len: u8,
}

impl AddrText {
    /// Not inlined: a line's cursor stays out of it (see [`Lines::room`]), and a new target
    /// is rare.
    #[inline(never)]
    fn new(a: SocketAddr) -> Self {
        let mut text = [0; ADDR_ROOM];
        let mut len = 0;
        let mut o = Cursor {
            buf: &mut text,
            pos: 0,
            len: &mut len,
        };
        o.addr(a);
        o.finish();
        AddrText {
            text,
            len: len as u8,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }
}

/// A connection's parts of its lines, in one allocation, with the spaces around them:
/// ` app/seawall/<listener> <client> `, `:<port>`, ` <cipher> <protocol> `,
/// ` "<domain>" "<certificate>" `, ` TID_<hex>\n`.
#[derive(Debug)]
pub(super) struct ConnParts {
    text: Box<[u8]>,
    ends: [usize; 5],
}

impl ConnParts {
    fn new(c: &Connection<'_>) -> Self {
        let room = 200
            + c.listener.len()
            + 4 * (c.domain.map_or(0, str::len) + c.certificate.map_or(0, |x| x.as_str().len()));
        let mut text = Lines::default();
        let mut ends = [0; 5];
        with_room(&mut text, room, |o| {
            o.put(b" app/seawall/");
            o.put(c.listener.as_bytes());
            o.byte(b' ');
            o.addr(c.client);
            o.byte(b' ');
            ends[0] = o.pos;
            o.byte(b':');
            o.number(c.port.into());
            ends[1] = o.pos;
            o.byte(b' ');
            match c.tls {
                Some(t) => {
                    o.put(cipher_name(t.cipher).as_bytes());
                    o.byte(b' ');
                    o.put(protocol_name(t.protocol).as_bytes());
                }
                None => o.put(b"- -"),
            }
            o.byte(b' ');
            ends[2] = o.pos;
            o.byte(b' ');
            o.quoted(c.domain.map(str::as_bytes));
            o.byte(b' ');
            o.quoted(c.certificate.map(|x| x.as_str().as_bytes()));
            o.byte(b' ');
            ends[3] = o.pos;
            o.byte(b' ');
            o.trace_id(c.trace_id.0);
            o.byte(b'\n');
            ends[4] = o.pos;
        });
        ConnParts {
            text: text.as_bytes().into(),
            ends,
        }
    }

    fn part(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

impl Formatter {
    /// ALB's timestamps: ISO 8601 in UTC with microseconds (`2018-07-02T22:23:00.186641Z`).
    #[inline(always)]
    fn timestamp(&mut self, out: &mut Cursor<'_>, t: WallTime) {
        let secs = t.secs;
        if !matches!(self.second, Some((s, _)) if s == secs) {
            let mut date = [b'.'; 20];
            let text = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
                .to_string();
            date[..19].copy_from_slice(&text.as_bytes()[..19]);
            self.second = Some((secs, date));
        }
        if let Some((_, date)) = &self.second {
            out.put(date);
        }
        let micros = t.micros.min(999_999);
        let [a, b, c] = [micros / 10_000, micros / 100 % 100, micros % 100].map(pair);
        // One write: each write checks the room.
        out.put(&[a[0], a[1], b[0], b[1], c[0], c[1], b'Z']);
    }

    /// The target's `ip:port`, or `-`.
    #[inline(always)]
    fn target(&mut self, out: &mut Cursor<'_>, target: Option<SocketAddr>) {
        let Some(t) = target else {
            out.byte(b'-');
            return;
        };
        let text = match &self.target {
            Some((last, text)) if *last == t => text,
            _ => &self.target.insert((t, AddrText::new(t))).1,
        };
        out.put(text.as_bytes());
    }

    /// The target [`target`](Self::target) wrote last, again: its text is the formatter's copy.
    #[inline(always)]
    fn target_again(&self, out: &mut Cursor<'_>, target: Option<SocketAddr>) {
        match (target, &self.target) {
            (Some(_), Some((_, text))) => out.put(text.as_bytes()),
            _ => out.byte(b'-'),
        }
    }

    /// One request in ALB's text format, with its newline.
    pub fn alb_request(&mut self, r: &Request<'_>, out: &mut Lines) {
        let conn = r
            .conn
            .text
            .0
            .get_or_init(|| Box::new(ConnParts::new(&r.conn)));
        let e = r.entry;
        let (trace_id, own_trace_id) = match r.trace_id {
            Some(TraceText::Client(t)) => (Some(t), None),
            Some(TraceText::Own(t)) => (None, Some(t)),
            None => (None, None),
        };
        let escaped = e.request.text_len()
            + trace_id.map_or(0, <[u8]>::len)
            + e.redirect_url.as_ref().map_or(0, |u| u.len());
        let words = r.target_group.map_or(0, str::len)
            + own_trace_id.map_or(0, <[u8]>::len)
            + r.error_reason.map_or(0, str::len)
            + r.classification.map_or(0, |(c, r)| c.len() + r.len());
        let room = 512 + conn.text.len() + e.request.method.as_str().len() + 4 * escaped + words;
        // A local of this function, not a closure's argument (see `Lines::room`).
        let mut line = out.room(room);
        let o = &mut line;
        o.put(r.kind.as_bytes());
        o.byte(b' ');
        self.timestamp(o, r.ended);
        o.put(conn.part(0));
        self.target(o, r.target);
        for t in [
            r.request_processing,
            r.target_processing,
            r.response_processing,
        ] {
            o.seconds(t);
        }
        o.spaced_status(Some(r.elb_status));
        o.spaced_status(r.target_status);
        o.byte(b' ');
        o.number(r.received_bytes);
        o.byte(b' ');
        o.number(r.sent_bytes);
        o.put(b" \"");
        // A method is a token: nothing to escape.
        o.put(e.request.method.as_str().as_bytes());
        o.put(if r.conn.tls.is_some() {
            &b" https://"[..]
        } else {
            &b" http://"[..]
        });
        match e.request.host() {
            Some(h) if !h.is_empty() => o.escaped(strip_port(h)),
            _ => o.byte(b'-'),
        }
        o.put(conn.part(1));
        o.escaped(e.request.target());
        o.put(version_text(e.request.version));
        o.quoted(e.request.user_agent());
        o.put(conn.part(2));
        o.put(r.target_group.unwrap_or("-").as_bytes());
        o.put(b" \"");
        match (trace_id, own_trace_id) {
            (Some(t), _) => o.escaped(t),
            // Seawall's own (`Root=1-` and hex digits): nothing to escape.
            (None, Some(t)) => o.put(t),
            (None, None) => o.byte(b'-'),
        }
        o.byte(b'"');
        o.put(conn.part(3));
        match r.rule {
            RulePriority::NotRouted => o.byte(b'-'),
            RulePriority::Default => o.byte(b'0'),
            RulePriority::Rule(p) => o.number(p.into()),
        }
        o.byte(b' ');
        self.timestamp(o, r.created);
        // Quoted fields from here on: each `" "` closes one and opens the next, in one write.
        o.put(b" \"");
        o.put(r.action.unwrap_or("-").as_bytes());
        o.put(b"\" \"");
        match &e.redirect_url {
            Some(u) if !u.is_empty() => o.escaped(u.as_bytes()),
            _ => o.byte(b'-'),
        }
        o.put(b"\" \"");
        o.put(r.error_reason.unwrap_or("-").as_bytes());
        // The target and its status again, as ALB's lists of one.
        o.put(b"\" \"");
        self.target_again(o, r.target);
        o.put(b"\" \"");
        o.status(r.target_status);
        match r.classification {
            Some((class, reason)) => {
                o.put(b"\" \"");
                o.put(class.as_bytes());
                o.put(b"\" \"");
                o.put(reason.as_bytes());
                o.byte(b'"');
            }
            None => o.put(b"\" \"-\" \"-\""),
        }
        o.put(conn.part(4));
        line.finish();
    }

    /// One TLS connection in ALB's connection-log format, with its newline. The client
    /// certificate's fields are `-` without one (no `client_auth`, none presented).
    pub fn alb_connection(&mut self, e: &ConnectionEntry, out: &mut Lines) {
        let leaf = e.client_cert.as_ref().and_then(|c| c.leaf.as_ref());
        let room = leaf.map_or(0, |l| {
            4 * l.subject.len() + l.validity.len() + l.serial.len()
        });
        with_room(out, 512 + room, |o| {
            self.timestamp(o, e.time);
            o.byte(b' ');
            o.ip(e.client);
            o.byte(b' ');
            o.number(e.client.port().into());
            o.byte(b' ');
            o.number(e.listener_port.into());
            o.byte(b' ');
            match e.tls {
                Some(t) => {
                    o.put(protocol_name(t.protocol).as_bytes());
                    o.byte(b' ');
                    o.put(cipher_name(t.cipher).as_bytes());
                }
                None => o.put(b"- -"),
            }
            o.byte(b' ');
            o.millis(e.handshake);
            match leaf {
                Some(l) => {
                    // The subject is quoted, as ALB writes it (it has spaces); the validity
                    // and serial never do.
                    o.byte(b' ');
                    o.quoted(Some(l.subject.as_bytes()));
                    o.byte(b' ');
                    o.put(l.validity.as_bytes());
                    o.byte(b' ');
                    o.put(l.serial.as_bytes());
                    o.byte(b' ');
                }
                None => o.put(b" - - - "),
            }
            o.put(verify_text(e.verify).as_bytes());
            o.byte(b' ');
            o.trace_id(e.conn_trace_id.0);
            o.byte(b'\n');
        });
    }

    /// One request as a JSON object, with its newline.
    pub fn json_request(&mut self, r: &Request<'_>, out: &mut Lines) {
        let e = r.entry;
        let c = &r.conn;
        let mut url_text = Lines::default();
        with_room(&mut url_text, 32 + e.request.text_len(), |o| {
            o.put(r.scheme().as_bytes());
            o.put(b"://");
            match e.request.host() {
                Some(h) if !h.is_empty() => o.put(strip_port(h)),
                _ => o.byte(b'-'),
            }
            o.byte(b':');
            o.number(c.port.into());
            o.put(e.request.target());
        });
        let line = JsonRequest {
            r#type: r.kind,
            time: self.timestamp_string(r.ended),
            elb: format!("app/seawall/{}", c.listener),
            client_ip: c.client.ip().to_string(),
            client_port: c.client.port(),
            target_ip: r.target.map(|t| t.ip().to_string()),
            target_port: r.target.map(|t| t.port()),
            request_processing_time: json_seconds(r.request_processing),
            target_processing_time: json_seconds(r.target_processing),
            response_processing_time: json_seconds(r.response_processing),
            elb_status_code: r.elb_status,
            target_status_code: r.target_status,
            received_bytes: r.received_bytes,
            sent_bytes: r.sent_bytes,
            request_verb: e.request.method.as_str(),
            request_url: String::from_utf8_lossy(url_text.as_bytes()),
            request_proto: version_name(e.request.version),
            user_agent: e.request.user_agent().map(String::from_utf8_lossy),
            ssl_cipher: c.tls.map(|t| cipher_name(t.cipher)),
            ssl_protocol: c.tls.map(|t| protocol_name(t.protocol)),
            target_group_arn: r.target_group,
            trace_id: r.trace_id.map(|t| String::from_utf8_lossy(t.as_bytes())),
            domain_name: c.domain,
            chosen_cert_arn: c.certificate.map(|x| x.as_str()),
            matched_rule_priority: match r.rule {
                RulePriority::NotRouted => None,
                RulePriority::Default => Some(0),
                RulePriority::Rule(p) => Some(p),
            },
            request_creation_time: self.timestamp_string(r.created),
            actions_executed: r.action,
            redirect_url: e
                .redirect_url
                .as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes())),
            error_reason: r.error_reason,
            target_port_list: r.target.iter().map(|t| t.to_string()).collect(),
            target_status_code_list: r.target_status.into_iter().collect(),
            classification: r.classification.map(|c| c.0),
            classification_reason: r.classification.map(|c| c.1),
            conn_trace_id: c.trace_id.to_string(),
        };
        write_json(out, &line);
    }

    /// One TLS connection as a JSON object, with its newline.
    pub fn json_connection(&mut self, e: &ConnectionEntry, out: &mut Lines) {
        let leaf = e.client_cert.as_ref().and_then(|c| c.leaf.as_ref());
        let line = JsonConnection {
            time: self.timestamp_string(e.time),
            client_ip: e.client.ip().to_string(),
            client_port: e.client.port(),
            listener_port: e.listener_port,
            tls_protocol: e.tls.map(|t| protocol_name(t.protocol)),
            tls_cipher: e.tls.map(|t| cipher_name(t.cipher)),
            tls_handshake_latency: (e.handshake.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            leaf_client_cert_subject: leaf.map(|l| l.subject.as_str()),
            leaf_client_cert_validity: leaf.map(|l| l.validity.as_str()),
            leaf_client_cert_serial_number: leaf.map(|l| l.serial.as_str()),
            tls_verify_status: verify_text(e.verify),
            conn_trace_id: e.conn_trace_id.to_string(),
        };
        write_json(out, &line);
    }

    fn timestamp_string(&mut self, t: WallTime) -> String {
        let mut out = Lines::default();
        with_room(&mut out, 32, |o| self.timestamp(o, t));
        String::from_utf8_lossy(out.as_bytes()).into_owned()
    }
}

/// Lines, in a buffer whose bytes are all initialised once: a line is written straight into
/// the room after the last one ([`with_room`]). A `Vec`'s `resize` would zero that room again for
/// every line, and its `extend_from_slice` checks the capacity at each of a line's seventy-odd
/// writes.
#[derive(Debug, Default)]
pub struct Lines {
    bytes: Vec<u8>,
    len: usize,
}

impl Lines {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the lines, keeping the room.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    fn extend(&mut self, bytes: &[u8]) {
        with_room(self, bytes.len(), |o| o.put(bytes));
    }

    /// A cursor on at least `room` bytes after the lines; what it writes is kept when it
    /// [finishes](Cursor::finish). `room` must be at least what is written (a line's bound is
    /// worked out from its variable parts), or the cursor's index panics.
    ///
    /// The line formatted per request takes the cursor as a local of its own, never behind a
    /// reference that a call is handed: then its position and room stay in registers. Handed to
    /// a function that is not inlined, the cursor could be written through its own buffer as far
    /// as the compiler knows, and every byte written reloaded all three (twice the instructions).
    #[inline(always)]
    fn room(&mut self, room: usize) -> Cursor<'_> {
        if self.bytes.len() - self.len < room {
            let grown = (self.len + room).max(2 * self.bytes.len()).max(4096);
            self.bytes.resize(grown, 0);
        }
        Cursor {
            buf: &mut self.bytes[self.len..],
            pos: 0,
            len: &mut self.len,
        }
    }
}

/// Copies `src` into `dst`, of the same length. Most of a line's copies are a few bytes long, of
/// a length known only at run time, which `copy_from_slice` hands to `memcpy` (a call and its
/// dispatch on the length): up to 64 bytes are moved here as two overlapping fixed-size copies
/// instead. Always inlined: a call of its own costs as much as the copy.
#[inline(always)]
pub(super) fn copy_short(dst: &mut [u8], src: &[u8]) {
    match src.len() {
        33..=64 => overlapping::<32>(dst, src),
        17..=32 => overlapping::<16>(dst, src),
        8..=16 => overlapping::<8>(dst, src),
        4..=7 => overlapping::<4>(dst, src),
        2..=3 => overlapping::<2>(dst, src),
        // Not a loop over the bytes: the compiler turns that into a `memcpy` call.
        1 => dst[0] = src[0],
        0 => {}
        _ => dst.copy_from_slice(src),
    }
}

/// Copies `src` (`W` to `2 * W` bytes) as its first `W` bytes and its last `W`, which overlap.
#[inline(always)]
fn overlapping<const W: usize>(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    dst[..W].copy_from_slice(&src[..W]);
    dst[n - W..].copy_from_slice(&src[n - W..]);
}

/// One JSON object and its newline.
fn write_json(out: &mut Lines, line: &impl Serialize) {
    // Serializing plain strings and numbers into a Vec cannot fail.
    let mut text = serde_json::to_vec(line).unwrap_or_default();
    text.push(b'\n');
    out.extend(&text);
}

/// Lets `write` write at most `room` bytes after `out`'s lines, and keeps what it wrote (see
/// [`Lines::room`]; for the lines formatted once per connection or less, where a closure reads
/// better than a cursor's `finish`).
fn with_room(out: &mut Lines, room: usize, write: impl FnOnce(&mut Cursor<'_>)) {
    let mut cursor = out.room(room);
    write(&mut cursor);
    cursor.finish();
}

/// Writes into room made beforehand (see [`Lines::room`]).
pub(super) struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
    /// The lines' length, moved on by [`finish`](Self::finish).
    len: &'a mut usize,
}

impl Cursor<'_> {
    /// Keeps what was written.
    #[inline(always)]
    fn finish(self) {
        *self.len += self.pos;
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        self.buf[self.pos] = b;
        self.pos += 1;
    }

    /// Copies `s` (see [`copy_short`]).
    #[inline]
    fn put(&mut self, s: &[u8]) {
        let n = s.len();
        copy_short(&mut self.buf[self.pos..self.pos + n], s);
        self.pos += n;
    }

    /// `n` in decimal: the common small ones from the pairs table, the rest by `itoa`.
    #[inline(always)]
    fn number(&mut self, n: u64) {
        match n {
            0..=9 => self.byte(b'0' + n as u8),
            10..=99 => self.put(&pair(n as u32)),
            100..=999 => self.put(&three_digits(n as u32)),
            1000..=9999 => {
                let ([a, b], [c, d]) = (pair((n / 100) as u32), pair((n % 100) as u32));
                self.put(&[a, b, c, d]);
            }
            _ => self.put(itoa::Buffer::new().format(n).as_bytes()),
        }
    }

    /// A status code (100..=999), or `-`.
    #[inline(always)]
    fn status(&mut self, s: Option<u16>) {
        match s {
            Some(s @ 100..=999) => self.three(s.into()),
            Some(s) => self.number(s.into()),
            None => self.byte(b'-'),
        }
    }

    /// A space and a status code, or ` -`, in one write (each write checks the room).
    #[inline(always)]
    fn spaced_status(&mut self, s: Option<u16>) {
        match s {
            Some(s @ 100..=999) => {
                let [a, b, c] = three_digits(s.into());
                self.put(&[b' ', a, b, c]);
            }
            Some(s) => {
                self.byte(b' ');
                self.number(s.into());
            }
            None => self.put(b" -"),
        }
    }

    /// `n` (below 1000) in three digits, with leading zeros.
    #[inline(always)]
    fn three(&mut self, n: u32) {
        self.put(&three_digits(n));
    }

    /// A space and one of ALB's processing times: seconds with millisecond precision, `-1` when
    /// the stage never ran.
    #[inline(always)]
    fn seconds(&mut self, d: Option<Duration>) {
        let Some(d) = d else {
            self.put(b" -1");
            return;
        };
        if d < Duration::from_micros(500) {
            // Most stages on a near network: rounded to nothing, without the arithmetic.
            self.put(b" 0.000");
            return;
        }
        // In u64: a u128 division (`as_nanos`) is a call into compiler-rt.
        let ms = d.as_secs() * 1000 + u64::from((d.subsec_nanos() + 500_000) / 1_000_000);
        let [a, b, c] = three_digits((ms % 1000) as u32);
        if ms < 10_000 {
            self.put(&[b' ', b'0' + (ms / 1000) as u8, b'.', a, b, c]);
        } else {
            self.byte(b' ');
            self.number(ms / 1000);
            self.put(&[b'.', a, b, c]);
        }
    }

    /// The connection log's handshake time: milliseconds with microsecond precision.
    fn millis(&mut self, d: Duration) {
        let us = d.as_secs() * 1_000_000 + u64::from((d.subsec_nanos() + 500) / 1000);
        self.number(us / 1000);
        self.byte(b'.');
        self.three((us % 1000) as u32);
    }

    fn ip(&mut self, a: SocketAddr) {
        match a {
            SocketAddr::V4(v4) => {
                for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        self.byte(b'.');
                    }
                    self.number(octet.into());
                }
            }
            SocketAddr::V6(v6) => {
                let mut text = [0u8; ADDR_ROOM];
                let mut w = &mut text[..];
                let _ = write!(w, "{}", v6.ip());
                let len = ADDR_ROOM - w.len();
                self.put(&text[..len]);
            }
        }
    }

    /// `ip:port` (`[ip]:port` for IPv6).
    fn addr(&mut self, a: SocketAddr) {
        if a.is_ipv6() {
            self.byte(b'[');
            self.ip(a);
            self.byte(b']');
        } else {
            self.ip(a);
        }
        self.byte(b':');
        self.number(a.port().into());
    }

    /// ALB's `conn_trace_id`: `TID_` and 32 hex digits.
    fn trace_id(&mut self, id: u128) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.put(b"TID_");
        for (i, slot) in self.buf[self.pos..self.pos + 32].iter_mut().enumerate() {
            *slot = HEX[((id >> ((31 - i) * 4)) & 15) as usize];
        }
        self.pos += 32;
    }

    /// Writes `bytes` escaped for a quoted field (see the module's doc). Eight bytes at a
    /// time are checked for any that needs an escape, and copied whole when none does; the
    /// last eight overlap the chunk before when the length is not a multiple of eight.
    #[inline(always)]
    fn escaped(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        if n < 8 {
            bytes.iter().for_each(|&b| self.escaped_byte(b));
            return;
        }
        let word =
            |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
        let mut plain = true;
        let mut at = 0;
        while at + 8 <= n {
            let x = word(at);
            if needs_escape(x) {
                plain = false;
                bytes[at..at + 8].iter().for_each(|&b| self.escaped_byte(b));
            } else {
                self.put(&x.to_le_bytes());
            }
            at += 8;
        }
        if at == n {
            return;
        }
        let last = word(n - 8);
        if plain && !needs_escape(last) {
            // Everything so far was copied as it is: the overlap is written again, the same.
            self.pos -= at - (n - 8);
            self.put(&last.to_le_bytes());
        } else {
            bytes[at..].iter().for_each(|&b| self.escaped_byte(b));
        }
    }

    /// Always inlined: a call that is handed the cursor would put it back in memory (see
    /// [`Lines::room`]).
    #[inline(always)]
    fn escaped_byte(&mut self, b: u8) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        if PLAIN[usize::from(b)] {
            self.byte(b);
        } else if b == b'"' || b == b'\\' {
            self.put(&[b'\\', b]);
        } else {
            self.put(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        }
    }

    /// A quoted field: `"value"`, or `"-"` when absent.
    #[inline(always)]
    fn quoted(&mut self, value: Option<&[u8]>) {
        self.byte(b'"');
        match value {
            Some(v) if !v.is_empty() => self.escaped(v),
            _ => self.byte(b'-'),
        }
        self.byte(b'"');
    }
}

/// ALB's `ssl_protocol`.
pub fn protocol_name(v: rustls::ProtocolVersion) -> Cow<'static, str> {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}").into(),
    }
}

/// ALB's `ssl_cipher`: the OpenSSL name of the suite, as ALB writes it.
pub fn cipher_name(c: rustls::CipherSuite) -> Cow<'static, str> {
    use rustls::CipherSuite as C;
    let name = match c {
        C::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        C::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        C::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        other => return format!("{other:?}").into(),
    };
    name.into()
}

/// The request line's version and its end, as ALB writes them (`HTTP/2.0` for HTTP/2).
fn version_text(v: Version) -> &'static [u8] {
    match v {
        Version::HTTP_09 => b" HTTP/0.9\" ",
        Version::HTTP_10 => b" HTTP/1.0\" ",
        Version::HTTP_2 => b" HTTP/2.0\" ",
        Version::HTTP_3 => b" HTTP/3.0\" ",
        _ => b" HTTP/1.1\" ",
    }
}

/// The request line's version, as ALB writes it (`HTTP/2.0` for HTTP/2).
fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The bytes a quoted field takes as they are: printable ASCII but `"` and `\\`.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b <= 0x7e {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
};

/// Whether any of the eight bytes in `x` needs an escape: below 0x20, 0x7f and above, `"`, `\`.
/// Each test is exact for "any byte" (Bit Twiddling Hacks' `hasless` and `haszero`).
#[inline]
fn needs_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    let high = (((x & !HIGH) + ONES) | x) & HIGH;
    let special = zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\')));
    control | high | special != 0
}

/// `00` to `99`, for writing numbers two digits at a time.
const PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// The two decimal digits of `n` (below 100).
#[inline(always)]
fn pair(n: u32) -> [u8; 2] {
    let at = 2 * (n as usize % 100);
    [PAIRS[at], PAIRS[at + 1]]
}

/// `n` (below 1000) in three digits, with leading zeros.
#[inline(always)]
fn three_digits(n: u32) -> [u8; 3] {
    let [b, c] = pair(n % 100);
    [b'0' + (n / 100 % 10) as u8, b, c]
}

/// `host` of a `host:port` header value (IPv6 literals keep their brackets).
///
/// Read from the end over the port's digits: a search for the last `:` costs more than the rest
/// of the field.
fn strip_port(h: &[u8]) -> &[u8] {
    let digits = h.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    match h.len().checked_sub(digits + 1) {
        Some(colon) if h[colon] == b':' => &h[..colon],
        _ => h,
    }
}

fn verify_text(v: Verify) -> String {
    match v {
        Verify::Success => "Success".into(),
        Verify::Failed(reason) => format!("Failed:{reason}"),
    }
}

/// One request as a JSON object; `null` where ALB's text writes `-`, `-1` for times not
/// reached, as ALB's text has them.
#[derive(Serialize)]
struct JsonRequest<'a> {
    r#type: &'a str,
    time: String,
    elb: String,
    client_ip: String,
    client_port: u16,
    target_ip: Option<String>,
    target_port: Option<u16>,
    request_processing_time: f64,
    target_processing_time: f64,
    response_processing_time: f64,
    elb_status_code: u16,
    target_status_code: Option<u16>,
    received_bytes: u64,
    sent_bytes: u64,
    request_verb: &'a str,
    request_url: Cow<'a, str>,
    request_proto: &'a str,
    user_agent: Option<Cow<'a, str>>,
    ssl_cipher: Option<Cow<'static, str>>,
    ssl_protocol: Option<Cow<'static, str>>,
    target_group_arn: Option<&'a str>,
    trace_id: Option<Cow<'a, str>>,
    domain_name: Option<&'a str>,
    chosen_cert_arn: Option<&'a str>,
    matched_rule_priority: Option<u32>,
    request_creation_time: String,
    actions_executed: Option<&'a str>,
    redirect_url: Option<Cow<'a, str>>,
    error_reason: Option<&'a str>,
    target_port_list: Vec<String>,
    target_status_code_list: Vec<u16>,
    classification: Option<&'a str>,
    classification_reason: Option<&'a str>,
    conn_trace_id: String,
}

fn json_seconds(d: Option<Duration>) -> f64 {
    d.map_or(-1.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

#[derive(Serialize)]
struct JsonConnection<'a> {
    time: String,
    client_ip: String,
    client_port: u16,
    listener_port: u16,
    tls_protocol: Option<Cow<'static, str>>,
    tls_cipher: Option<Cow<'static, str>>,
    tls_handshake_latency: f64,
    leaf_client_cert_subject: Option<&'a str>,
    leaf_client_cert_validity: Option<&'a str>,
    leaf_client_cert_serial_number: Option<&'a str>,
    tls_verify_status: String,
    conn_trace_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::entry::{
        Certificate, ConnText, ConnTraceId, Entry, RequestLine, TlsLine,
    };

    fn t0() -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_micros(1_530_570_180_186_641)
    }

    fn entry() -> Entry {
        Entry {
            kind: "https",
            request: RequestLine::new(
                http::Method::GET,
                Version::HTTP_11,
                b"/a%20b?x=1",
                Some(b"www.example.com:443"),
                Some(br#"say "hi" \ ok"#),
            ),
            received_head: 34,
            sent_head: 366,
            redirect_url: None,
        }
    }

    const CERT: Certificate = Certificate::SessionReused;

    /// A request of `e` on a TLS connection, with `text` as its connection's cache.
    fn request<'a>(e: &'a Entry, text: &'a ConnText, cert: &'a Certificate) -> Request<'a> {
        Request {
            entry: e,
            conn: Connection {
                listener: "web",
                port: 443,
                client: "192.168.131.39:2817".parse().unwrap(),
                tls: Some(TlsLine {
                    protocol: rustls::ProtocolVersion::TLSv1_2,
                    cipher: rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                }),
                domain: Some("www.example.com"),
                certificate: Some(cert),
                trace_id: ConnTraceId(0xdc57cebed65b444ebc8177bb698fe166),
                text,
            },
            kind: e.kind,
            created: t0().into(),
            ended: (t0() + Duration::from_millis(12)).into(),
            target: Some("10.0.0.1:80".parse().unwrap()),
            request_processing: Some(Duration::from_micros(86)),
            target_processing: Some(Duration::from_millis(48)),
            response_processing: Some(Duration::from_micros(37_400)),
            elb_status: 200,
            target_status: Some(200),
            received_bytes: e.received_head,
            sent_bytes: e.sent_head,
            target_group: Some("web-tg"),
            trace_id: Some(TraceText::Client(
                b"Root=1-58337281-1d84f3d73c47ec4e58577259",
            )),
            rule: RulePriority::Rule(1),
            action: Some("forward"),
            error_reason: None,
            classification: None,
        }
    }

    fn alb(r: &Request<'_>) -> String {
        let mut out = Lines::default();
        Formatter::default().alb_request(r, &mut out);
        String::from_utf8(out.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn the_text_line_is_albs() {
        let (e, text, cert) = (
            entry(),
            ConnText::default(),
            Certificate::Named("default".into()),
        );
        let expected = "https 2018-07-02T22:23:00.198641Z app/seawall/web 192.168.131.39:2817 10.0.0.1:80 \
             0.000 0.048 0.037 200 200 34 366 \
             \"GET https://www.example.com:443/a%20b?x=1 HTTP/1.1\" \"say \\\"hi\\\" \\\\ ok\" \
             ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 web-tg \
             \"Root=1-58337281-1d84f3d73c47ec4e58577259\" \"www.example.com\" \"default\" 1 \
             2018-07-02T22:23:00.186641Z \"forward\" \"-\" \"-\" \"10.0.0.1:80\" \"200\" \"-\" \"-\" \
             TID_dc57cebed65b444ebc8177bb698fe166\n";
        // The connection's parts, formatted on its first line, serve the next as they are.
        let mut f = Formatter::default();
        for _ in 0..2 {
            let mut out = Lines::default();
            f.alb_request(&request(&e, &text, &cert), &mut out);
            assert_eq!(
                String::from_utf8(out.as_bytes().to_vec()).unwrap(),
                expected
            );
        }
    }

    #[test]
    fn seawalls_own_trace_id_is_written_as_it_is_and_a_clients_is_escaped() {
        let (e, text) = (entry(), ConnText::default());
        let mut r = request(&e, &text, &CERT);
        r.trace_id = Some(TraceText::Own(b"Root=1-692f1a3d-5b0e8c1f2a7d4e6b9c3a0f12"));
        assert!(alb(&r).contains(" web-tg \"Root=1-692f1a3d-5b0e8c1f2a7d4e6b9c3a0f12\" "));
        r.trace_id = Some(TraceText::Client(b"Root=\"1\""));
        assert!(alb(&r).contains(" web-tg \"Root=\\\"1\\\"\" "));
    }

    #[test]
    fn absent_fields_are_dashes_and_minus_one() {
        let mut e = entry();
        e.kind = "http";
        e.request = RequestLine::new(
            http::Method::GET,
            Version::HTTP_11,
            b"/a%20b?x=1",
            None,
            None,
        );
        let text = ConnText::default();
        let mut r = request(&e, &text, &CERT);
        r.kind = "http";
        r.conn.port = 80;
        r.conn.tls = None;
        r.conn.domain = None;
        r.conn.certificate = None;
        r.target = None;
        r.target_status = None;
        r.request_processing = None;
        r.target_processing = None;
        r.response_processing = None;
        r.target_group = None;
        r.trace_id = None;
        r.rule = RulePriority::NotRouted;
        r.action = None;
        r.error_reason = Some("ClientBadRequest");
        r.elb_status = 400;
        let line = alb(&r);
        assert!(
            line.contains(" - -1 -1 -1 400 - 34 366 \"GET http://-:80/a%20b?x=1 HTTP/1.1\" \"-\" - - - \"-\" \"-\" \"-\" - "),
            "{line}"
        );
        assert!(
            line.contains("\"-\" \"-\" \"ClientBadRequest\" \"-\" \"-\""),
            "{line}"
        );
    }

    #[test]
    fn a_long_client_text_of_bytes_to_escape_fits_its_room() {
        // Every byte needs four: the room worked out for a line must hold them all.
        let nasty = vec![0x01u8; 5000];
        let mut e = entry();
        e.request = RequestLine::new(
            http::Method::from_bytes(&[b'X'; 300]).unwrap(),
            Version::HTTP_11,
            &nasty,
            Some(&nasty),
            Some(&nasty),
        );
        e.redirect_url = Some(http::HeaderValue::from_bytes(&[b'"'; 3000]).unwrap());
        let text = ConnText::default();
        let mut r = request(&e, &text, &CERT);
        r.trace_id = Some(TraceText::Client(&nasty));
        r.classification = Some(("Ambiguous", "UndefinedContentLengthSemantics"));
        let line = alb(&r);
        assert_eq!(line.matches("\\x01").count(), 4 * 5000);
        assert!(line.contains(&"\\\"".repeat(3000)));
        assert!(line.ends_with("TID_dc57cebed65b444ebc8177bb698fe166\n"));
    }

    #[test]
    fn one_formatter_keeps_timestamps_right_across_seconds_and_days() {
        let mut f = Formatter::default();
        let mut out = Lines::default();
        for micros in [86_399_999_999u64, 86_400_000_001, 86_400_000_002, 0] {
            with_room(&mut out, 32, |o| {
                f.timestamp(o, (UNIX_EPOCH + Duration::from_micros(micros)).into());
                o.byte(b' ');
            });
        }
        assert_eq!(
            String::from_utf8(out.as_bytes().to_vec()).unwrap(),
            "1970-01-01T23:59:59.999999Z 1970-01-02T00:00:00.000001Z \
             1970-01-02T00:00:00.000002Z 1970-01-01T00:00:00.000000Z "
        );
    }

    #[test]
    fn the_trace_id_is_written_as_its_display_shows_it() {
        for id in [0, 1, u128::MAX, 0xdc57cebed65b444ebc8177bb698fe166] {
            let mut out = Lines::default();
            with_room(&mut out, 36, |o| o.trace_id(id));
            assert_eq!(
                String::from_utf8(out.as_bytes().to_vec()).unwrap(),
                ConnTraceId(id).to_string()
            );
        }
    }

    #[test]
    fn addresses_and_times_are_written_as_alb_writes_them() {
        let mut out = Lines::default();
        let mut f = Formatter::default();
        with_room(&mut out, 256, |o| {
            o.addr("[2001:db8::1]:443".parse().unwrap());
            o.byte(b' ');
            o.addr("10.0.0.255:8080".parse().unwrap());
            o.byte(b' ');
            // The target's text is kept for the next line, and only for the same target.
            for t in ["10.1.2.3:80", "10.1.2.3:80", "[::1]:81", "10.1.2.3:80"] {
                f.target(o, Some(t.parse().unwrap()));
                o.byte(b' ');
            }
            // Each with its space before it.
            o.seconds(Some(Duration::from_micros(1_234_567)));
            o.seconds(Some(Duration::from_micros(999_600)));
            // Ten seconds and more take more than one digit; 9.9996 s rounds up to them.
            o.seconds(Some(Duration::from_micros(9_999_600)));
            o.seconds(Some(Duration::from_millis(3_723_042)));
            // Rounded to the millisecond on either side of the half.
            o.seconds(Some(Duration::from_nanos(499_999)));
            o.seconds(Some(Duration::from_micros(500)));
            o.seconds(None);
            o.byte(b' ');
            o.millis(Duration::from_nanos(4_036_400));
        });
        assert_eq!(
            String::from_utf8(out.as_bytes().to_vec()).unwrap(),
            "[2001:db8::1]:443 10.0.0.255:8080 10.1.2.3:80 10.1.2.3:80 [::1]:81 10.1.2.3:80  \
             1.235 1.000 10.000 3723.042 0.000 0.001 -1 4.036"
        );
    }

    #[test]
    fn numbers_and_copies_of_every_length_are_written_as_they_are() {
        let mut n = 1u64;
        let mut all = vec![0, u64::MAX];
        while n < u64::MAX / 10 {
            all.extend([n - 1, n, n + 1, 5 * n]);
            n *= 10;
        }
        for n in all {
            let mut out = Lines::default();
            with_room(&mut out, 24, |o| o.number(n));
            assert_eq!(
                String::from_utf8(out.as_bytes().to_vec()).unwrap(),
                n.to_string()
            );
        }
        for len in 0..=80 {
            let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut out = Lines::default();
            with_room(&mut out, 96, |o| o.put(&text));
            assert_eq!(out.as_bytes(), &text[..], "{len} bytes");
        }
        for s in [100u16, 200, 404, 999, 1000, 12] {
            let mut out = Lines::default();
            with_room(&mut out, 16, |o| {
                o.status(Some(s));
                o.spaced_status(Some(s));
            });
            assert_eq!(
                String::from_utf8(out.as_bytes().to_vec()).unwrap(),
                format!("{s} {s}")
            );
        }
        let mut out = Lines::default();
        with_room(&mut out, 8, |o| {
            o.status(None);
            o.spaced_status(None);
        });
        assert_eq!(out.as_bytes(), b"- -");
    }

    #[test]
    fn bytes_outside_printable_ascii_are_escaped() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"a\"b\\c\td\xffe", br#"a\"b\\c\x09d\xffe"#),
            // Eight at a time: clean, then one of each kind in a chunk, then a tail.
            (b"abcdefgh\x7fbcdefgh~ ok", br#"abcdefgh\x7fbcdefgh~ ok"#),
            (
                b"01234567\x1f\x20\"\\\x80\xfe\x7e\x7d",
                br#"01234567\x1f \"\\\x80\xfe~}"#,
            ),
            (b"", b""),
        ];
        for (raw, want) in cases {
            let mut out = Lines::default();
            with_room(&mut out, 4 * raw.len(), |o| o.escaped(raw));
            assert_eq!(out.as_bytes(), want, "{}", String::from_utf8_lossy(raw));
        }
        // Every byte, in every position of whole chunks and of a last one that overlaps.
        for len in [7, 8, 9, 12, 15, 16, 17, 23] {
            for b in 0..=255u8 {
                for at in 0..len {
                    let mut raw = b"abcdefghijklmnopqrstuvw"[..len].to_vec();
                    raw[at] = b;
                    let mut fast = Lines::default();
                    with_room(&mut fast, 128, |o| o.escaped(&raw));
                    let mut slow = Lines::default();
                    with_room(&mut slow, 128, |o| {
                        raw.iter().for_each(|&x| o.escaped_byte(x))
                    });
                    assert_eq!(
                        fast.as_bytes(),
                        slow.as_bytes(),
                        "byte {b:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn hosts_lose_their_port_but_ipv6_keeps_its_brackets() {
        assert_eq!(strip_port(b"example.com:8443"), b"example.com");
        assert_eq!(strip_port(b"example.com"), b"example.com");
        assert_eq!(strip_port(b"[::1]:8443"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
        assert_eq!(strip_port(b"[2001:db8::1]"), b"[2001:db8::1]");
        assert_eq!(strip_port(b"example.com:"), b"example.com");
        assert_eq!(strip_port(b"8443"), b"8443");
    }

    #[test]
    fn http2_and_the_default_rule_are_written_as_alb_writes_them() {
        let mut e = entry();
        e.kind = "h2";
        e.request.version = Version::HTTP_2;
        let (text, cert) = (ConnText::default(), Certificate::Named("default".into()));
        let mut r = request(&e, &text, &cert);
        r.rule = RulePriority::Default;
        let line = alb(&r);
        assert!(line.starts_with("h2 "), "{line}");
        assert!(line.contains("?x=1 HTTP/2.0\""), "{line}");
        assert!(line.contains("\"default\" 0 2018-"), "{line}");
    }

    #[test]
    fn the_json_line_has_the_same_fields() {
        let (e, text) = (entry(), ConnText::default());
        let mut out = Lines::default();
        Formatter::default().json_request(&request(&e, &text, &CERT), &mut out);
        assert_eq!(out.as_bytes().last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(out.as_bytes()).unwrap();
        assert_eq!(v["type"], "https");
        assert_eq!(v["client_ip"], "192.168.131.39");
        assert_eq!(v["target_port"], 80);
        assert_eq!(v["target_processing_time"], 0.048);
        assert_eq!(v["request_url"], "https://www.example.com:443/a%20b?x=1");
        assert_eq!(v["user_agent"], r#"say "hi" \ ok"#);
        assert_eq!(v["ssl_cipher"], "ECDHE-RSA-AES128-GCM-SHA256");
        assert_eq!(v["chosen_cert_arn"], "session-reused");
        assert_eq!(v["matched_rule_priority"], 1);
        assert_eq!(v["redirect_url"], serde_json::Value::Null);
        assert_eq!(v["conn_trace_id"], "TID_dc57cebed65b444ebc8177bb698fe166");
        assert_eq!(v.as_object().unwrap().len(), 34);
    }

    #[test]
    fn the_connection_line_is_albs() {
        let e = ConnectionEntry {
            time: (UNIX_EPOCH + Duration::from_micros(1_696_440_415_180_849)).into(),
            client: "192.0.2.1:49590".parse().unwrap(),
            listener_port: 443,
            tls: Some(TlsLine {
                protocol: rustls::ProtocolVersion::TLSv1_3,
                cipher: rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            }),
            handshake: Duration::from_micros(4036),
            client_cert: None,
            verify: Verify::Success,
            conn_trace_id: ConnTraceId(1),
        };
        let mut out = Lines::default();
        Formatter::default().alb_connection(&e, &mut out);
        assert_eq!(
            String::from_utf8(out.as_bytes().to_vec()).unwrap(),
            "2023-10-04T17:26:55.180849Z 192.0.2.1 49590 443 TLSv1.3 TLS_AES_128_GCM_SHA256 \
             4.036 - - - Success TID_00000000000000000000000000000001\n"
        );
        let failed = ConnectionEntry {
            tls: None,
            verify: Verify::Failed("HandshakeTimeout"),
            ..e
        };
        let mut out = Lines::default();
        Formatter::default().json_connection(&failed, &mut out);
        let v: serde_json::Value = serde_json::from_slice(out.as_bytes()).unwrap();
        assert_eq!(v["tls_verify_status"], "Failed:HandshakeTimeout");
        assert_eq!(v["tls_protocol"], serde_json::Value::Null);
        assert_eq!(v["tls_handshake_latency"], 4.036);
    }

    #[test]
    fn the_connection_line_names_the_client_certificate() {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Amazon Inc");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "amazon.com");
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0xFE, 0xF2, 0x57, 0xE5]));
        p.not_before = rcgen::date_time_ymd(2023, 10, 3);
        p.not_after = rcgen::date_time_ymd(2024, 10, 2);
        let key = rcgen::KeyPair::generate().unwrap();
        let der = p.self_signed(&key).unwrap().der().clone();
        let cert = crate::tls::ClientCert::read(crate::tls::ClientAuthMode::Verify, &[der]);
        let e = ConnectionEntry {
            time: (UNIX_EPOCH + Duration::from_micros(1_696_440_415_180_849)).into(),
            client: "192.0.2.1:49590".parse().unwrap(),
            listener_port: 443,
            tls: Some(TlsLine {
                protocol: rustls::ProtocolVersion::TLSv1_3,
                cipher: rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            }),
            handshake: Duration::from_micros(4036),
            client_cert: cert.map(std::sync::Arc::new),
            verify: Verify::Success,
            conn_trace_id: ConnTraceId(1),
        };
        let mut out = Lines::default();
        Formatter::default().alb_connection(&e, &mut out);
        assert_eq!(
            String::from_utf8(out.as_bytes().to_vec()).unwrap(),
            "2023-10-04T17:26:55.180849Z 192.0.2.1 49590 443 TLSv1.3 TLS_AES_128_GCM_SHA256 \
             4.036 \"CN=amazon.com,O=Amazon Inc\" \
             NotBefore=2023-10-03T00:00:00Z;NotAfter=2024-10-02T00:00:00Z FEF257E5 Success \
             TID_00000000000000000000000000000001\n"
        );
        let mut out = Lines::default();
        Formatter::default().json_connection(&e, &mut out);
        let v: serde_json::Value = serde_json::from_slice(out.as_bytes()).unwrap();
        assert_eq!(v["leaf_client_cert_subject"], "CN=amazon.com,O=Amazon Inc");
        assert_eq!(v["leaf_client_cert_serial_number"], "FEF257E5");
    }
}
