//! Lines in ALB's formats. The text format follows ALB's documented field order and quoting, so
//! that tools made for ALB's logs (Athena's table, GoAccess's `AWSALB` format, Vector's
//! `parse_aws_alb_log`) read it; the JSON format carries the same fields under the column names
//! of Athena's ALB table.
//!
//! In quoted fields `"` and `\` are escaped with a backslash and bytes outside printable ASCII
//! are written `\xHH`, so a line stays one line of ASCII whatever a client sends.
//!
//! The text format is written byte by byte, numbers with `itoa`, and the date part of a
//! timestamp once a second: `core::fmt` and a `String` per field cost ten times as much, and the
//! writer shares the cores with the data plane.

use std::borrow::Cow;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Version};
use serde::Serialize;

use super::entry::{Certificate, ConnectionEntry, Entry, RulePriority, TlsLine, Verify};

/// Formats lines, keeping what they share from one to the next.
#[derive(Debug, Default)]
pub struct Formatter {
    /// The second last formatted, and its text up to the seconds (`2018-07-02T22:23:00`).
    second: Option<(u64, [u8; 19])>,
}

impl Formatter {
    /// ALB's timestamps: ISO 8601 in UTC with microseconds (`2018-07-02T22:23:00.186641Z`).
    fn timestamp(&mut self, out: &mut Vec<u8>, t: SystemTime) {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let date = match self.second {
            Some((s, date)) if s == secs => date,
            _ => {
                let mut date = [0u8; 19];
                let text =
                    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
                        .to_string();
                date.copy_from_slice(&text.as_bytes()[..19]);
                self.second = Some((secs, date));
                date
            }
        };
        out.extend_from_slice(&date);
        out.push(b'.');
        digits(out, since.subsec_micros(), 6);
        out.push(b'Z');
    }

    /// One request in ALB's text format, with its newline.
    pub fn alb_request(&mut self, e: &Entry, out: &mut Vec<u8>) {
        // A line is some 400 bytes: one reservation rather than growth along the way.
        out.reserve(512);
        let tls = e.tls.as_ref();
        out.extend_from_slice(e.kind.as_bytes());
        out.push(b' ');
        self.timestamp(out, e.ended);
        out.extend_from_slice(b" app/seawall/");
        out.extend_from_slice(e.listener.as_bytes());
        out.push(b' ');
        addr(out, Some(e.client));
        out.push(b' ');
        let target = out.len();
        addr(out, e.target);
        let target = target..out.len();
        for t in [
            e.request_processing,
            e.target_processing,
            e.response_processing,
        ] {
            out.push(b' ');
            seconds(out, t);
        }
        out.push(b' ');
        number(out, e.elb_status.into());
        out.push(b' ');
        let status = out.len();
        optional_number(out, e.target_status);
        let status = status..out.len();
        out.push(b' ');
        number(out, e.received_bytes);
        out.push(b' ');
        number(out, e.sent_bytes);
        out.extend_from_slice(b" \"");
        // A method is a token: nothing to escape.
        out.extend_from_slice(e.request.method.as_str().as_bytes());
        out.push(b' ');
        url(out, e, escaped);
        out.push(b' ');
        out.extend_from_slice(version_name(e.request.version).as_bytes());
        out.extend_from_slice(b"\" ");
        quoted(out, e.request.user_agent());
        out.push(b' ');
        dash_or(out, tls.map(|t| cipher_name(t.cipher)).as_deref());
        out.push(b' ');
        dash_or(out, tls.map(|t| protocol_name(t.protocol)).as_deref());
        out.push(b' ');
        dash_or(out, e.target_group.as_deref());
        out.push(b' ');
        quoted(out, e.request.trace_id());
        out.push(b' ');
        quoted(out, e.domain.as_deref().map(str::as_bytes));
        out.push(b' ');
        quoted(out, e.certificate.as_ref().map(|c| c.as_str().as_bytes()));
        out.push(b' ');
        match e.rule {
            RulePriority::NotRouted => out.push(b'-'),
            RulePriority::Default => out.push(b'0'),
            RulePriority::Rule(p) => number(out, p.into()),
        }
        out.push(b' ');
        self.timestamp(out, e.created);
        out.push(b' ');
        quoted_word(out, e.action);
        out.push(b' ');
        quoted(out, e.redirect_url.as_ref().map(HeaderValue::as_bytes));
        out.push(b' ');
        quoted_word(out, e.error_reason);
        // The target and its status again, as ALB's lists of one.
        out.extend_from_slice(b" \"");
        out.extend_from_within(target);
        out.extend_from_slice(b"\" \"");
        out.extend_from_within(status);
        out.extend_from_slice(b"\" ");
        quoted_word(out, e.classification.map(|c| c.0));
        out.push(b' ');
        quoted_word(out, e.classification.map(|c| c.1));
        out.push(b' ');
        e.conn_trace_id.write_to(out);
        out.push(b'\n');
    }

    /// One TLS connection in ALB's connection-log format, with its newline. The client
    /// certificate's fields are `-`: seawall does not ask for one yet.
    pub fn alb_connection(&mut self, e: &ConnectionEntry, out: &mut Vec<u8>) {
        let tls = e.tls.as_ref();
        self.timestamp(out, e.time);
        out.push(b' ');
        let _ = write!(out, "{} ", e.client.ip());
        number(out, e.client.port().into());
        out.push(b' ');
        number(out, e.listener_port.into());
        out.push(b' ');
        dash_or(
            out,
            tls.map(|t: &TlsLine| protocol_name(t.protocol)).as_deref(),
        );
        out.push(b' ');
        dash_or(out, tls.map(|t| cipher_name(t.cipher)).as_deref());
        out.push(b' ');
        millis(out, e.handshake);
        out.extend_from_slice(b" - - - ");
        out.extend_from_slice(verify_text(e.verify).as_bytes());
        let _ = writeln!(out, " {}", e.conn_trace_id);
    }

    /// One request as a JSON object, with its newline.
    pub fn json_request(&mut self, e: &Entry, out: &mut Vec<u8>) {
        let mut url_text = Vec::with_capacity(64);
        url(&mut url_text, e, |o, b| o.extend_from_slice(b));
        let line = JsonRequest {
            r#type: e.kind,
            time: self.timestamp_string(e.ended),
            elb: format!("app/seawall/{}", e.listener),
            client_ip: e.client.ip().to_string(),
            client_port: e.client.port(),
            target_ip: e.target.map(|t| t.ip().to_string()),
            target_port: e.target.map(|t| t.port()),
            request_processing_time: json_seconds(e.request_processing),
            target_processing_time: json_seconds(e.target_processing),
            response_processing_time: json_seconds(e.response_processing),
            elb_status_code: e.elb_status,
            target_status_code: e.target_status,
            received_bytes: e.received_bytes,
            sent_bytes: e.sent_bytes,
            request_verb: e.request.method.as_str(),
            request_url: String::from_utf8_lossy(&url_text),
            request_proto: version_name(e.request.version),
            user_agent: e.request.user_agent().map(String::from_utf8_lossy),
            ssl_cipher: e.tls.map(|t| cipher_name(t.cipher)),
            ssl_protocol: e.tls.map(|t| protocol_name(t.protocol)),
            target_group_arn: e.target_group.as_deref(),
            trace_id: e.request.trace_id().map(String::from_utf8_lossy),
            domain_name: e.domain.as_deref(),
            chosen_cert_arn: e.certificate.as_ref().map(Certificate::as_str),
            matched_rule_priority: match e.rule {
                RulePriority::NotRouted => None,
                RulePriority::Default => Some(0),
                RulePriority::Rule(p) => Some(p),
            },
            request_creation_time: self.timestamp_string(e.created),
            actions_executed: e.action,
            redirect_url: e
                .redirect_url
                .as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes())),
            error_reason: e.error_reason,
            target_port_list: e.target.iter().map(|t| t.to_string()).collect(),
            target_status_code_list: e.target_status.into_iter().collect(),
            classification: e.classification.map(|c| c.0),
            classification_reason: e.classification.map(|c| c.1),
            conn_trace_id: e.conn_trace_id.to_string(),
        };
        // Serializing plain strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &line);
        out.push(b'\n');
    }

    /// One TLS connection as a JSON object, with its newline.
    pub fn json_connection(&mut self, e: &ConnectionEntry, out: &mut Vec<u8>) {
        let line = JsonConnection {
            time: self.timestamp_string(e.time),
            client_ip: e.client.ip().to_string(),
            client_port: e.client.port(),
            listener_port: e.listener_port,
            tls_protocol: e.tls.map(|t| protocol_name(t.protocol)),
            tls_cipher: e.tls.map(|t| cipher_name(t.cipher)),
            tls_handshake_latency: (e.handshake.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            leaf_client_cert_subject: None,
            leaf_client_cert_validity: None,
            leaf_client_cert_serial_number: None,
            tls_verify_status: verify_text(e.verify),
            conn_trace_id: e.conn_trace_id.to_string(),
        };
        let _ = serde_json::to_writer(&mut *out, &line);
        out.push(b'\n');
    }

    fn timestamp_string(&mut self, t: SystemTime) -> String {
        let mut out = Vec::with_capacity(27);
        self.timestamp(&mut out, t);
        String::from_utf8(out).expect("a timestamp is ASCII")
    }
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn optional_number(out: &mut Vec<u8>, n: Option<u16>) {
    match n {
        Some(n) => number(out, n.into()),
        None => out.push(b'-'),
    }
}

/// ALB's processing times: seconds with millisecond precision, `-1` when the stage never ran.
fn seconds(out: &mut Vec<u8>, d: Option<Duration>) {
    let Some(d) = d else {
        out.extend_from_slice(b"-1");
        return;
    };
    // In u64: a u128 division (`as_nanos`) is a call into compiler-rt.
    let ms = d.as_secs() * 1000 + u64::from((d.subsec_nanos() + 500_000) / 1_000_000);
    number(out, ms / 1000);
    out.push(b'.');
    digits(out, (ms % 1000) as u32, 3);
}

/// The connection log's handshake time: milliseconds with microsecond precision.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let us = d.as_secs() * 1_000_000 + u64::from((d.subsec_nanos() + 500) / 1000);
    number(out, us / 1000);
    out.push(b'.');
    digits(out, (us % 1000) as u32, 3);
}

/// The last `width` decimal digits of `n`, with leading zeros.
fn digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// `ip:port`, or `-`.
fn addr(out: &mut Vec<u8>, a: Option<SocketAddr>) {
    match a {
        None => out.push(b'-'),
        Some(SocketAddr::V4(v4)) => {
            let [a, b, c, d] = v4.ip().octets();
            for (i, octet) in [a, b, c, d].into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                let width = if octet >= 100 {
                    3
                } else if octet >= 10 {
                    2
                } else {
                    1
                };
                digits(out, octet.into(), width);
            }
            out.push(b':');
            number(out, v4.port().into());
        }
        Some(a @ SocketAddr::V6(_)) => {
            let _ = write!(out, "{a}");
        }
    }
}

fn dash_or(out: &mut Vec<u8>, v: Option<&str>) {
    out.extend_from_slice(v.unwrap_or("-").as_bytes());
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

/// Writes `bytes` escaped for a quoted field (see the module's doc): runs of bytes that need no
/// escape are copied whole.
fn escaped(out: &mut Vec<u8>, mut bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    while !bytes.is_empty() {
        let plain = bytes
            .iter()
            .position(|&b| !PLAIN[usize::from(b)])
            .unwrap_or(bytes.len());
        out.extend_from_slice(&bytes[..plain]);
        let Some(&b) = bytes.get(plain) else {
            return;
        };
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            _ => out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
        }
        bytes = &bytes[plain + 1..];
    }
}

/// A quoted field of seawall's own words (an action, a code), which need no escape.
fn quoted_word(out: &mut Vec<u8>, value: Option<&str>) {
    out.push(b'"');
    out.extend_from_slice(value.unwrap_or("-").as_bytes());
    out.push(b'"');
}

/// A quoted field: `"value"`, or `"-"` when absent.
fn quoted(out: &mut Vec<u8>, value: Option<&[u8]>) {
    out.push(b'"');
    match value {
        Some(v) if !v.is_empty() => escaped(out, v),
        _ => out.push(b'-'),
    }
    out.push(b'"');
}

/// The request URL as ALB writes it in the request line, `scheme://host:port/path?query`, its
/// client-sent parts through `text` (escaping them, or not for JSON).
fn url(out: &mut Vec<u8>, e: &Entry, text: fn(&mut Vec<u8>, &[u8])) {
    out.extend_from_slice(e.scheme.as_bytes());
    out.extend_from_slice(b"://");
    match e.request.host() {
        Some(h) if !h.is_empty() => text(out, strip_port(h)),
        _ => out.push(b'-'),
    }
    out.push(b':');
    number(out, e.port.into());
    text(out, e.request.target());
}

/// `host` of a `host:port` header value (IPv6 literals keep their brackets).
fn strip_port(h: &[u8]) -> &[u8] {
    match h.iter().rposition(|&b| b == b':') {
        Some(i) if !h[i..].contains(&b']') => &h[..i],
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
struct JsonConnection {
    time: String,
    client_ip: String,
    client_port: u16,
    listener_port: u16,
    tls_protocol: Option<Cow<'static, str>>,
    tls_cipher: Option<Cow<'static, str>>,
    tls_handshake_latency: f64,
    leaf_client_cert_subject: Option<String>,
    leaf_client_cert_validity: Option<String>,
    leaf_client_cert_serial_number: Option<String>,
    tls_verify_status: String,
    conn_trace_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::entry::{ConnTraceId, RequestLine};
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    fn entry() -> Entry {
        let t0 = UNIX_EPOCH + Duration::from_micros(1_530_570_180_186_641);
        Entry {
            kind: "https",
            created: t0,
            ended: t0 + Duration::from_millis(12),
            listener: "web".into(),
            port: 443,
            client: "192.168.131.39:2817".parse().unwrap(),
            target: Some("10.0.0.1:80".parse().unwrap()),
            request_processing: Some(Duration::from_micros(86)),
            target_processing: Some(Duration::from_millis(48)),
            response_processing: Some(Duration::from_micros(37_400)),
            elb_status: 200,
            target_status: Some(200),
            received_bytes: 34,
            sent_bytes: 366,
            request: {
                let mut r = RequestLine::new(
                    http::Method::GET,
                    Version::HTTP_11,
                    b"/a%20b?x=1",
                    Some(b"www.example.com:443"),
                    Some(br#"say "hi" \ ok"#),
                );
                r.set_trace_id(b"Root=1-58337281-1d84f3d73c47ec4e58577259");
                r
            },
            scheme: "https",
            tls: Some(TlsLine {
                protocol: rustls::ProtocolVersion::TLSv1_2,
                cipher: rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            }),
            target_group: Some(Arc::from("web-tg")),
            domain: Some(Arc::from("www.example.com")),
            certificate: Some(Certificate::Named(Arc::from("default"))),
            rule: RulePriority::Rule(1),
            action: Some("forward"),
            redirect_url: None,
            error_reason: None,
            classification: None,
            conn_trace_id: ConnTraceId(0xdc57cebed65b444ebc8177bb698fe166),
        }
    }

    #[test]
    fn the_text_line_is_albs() {
        let mut out = Vec::new();
        Formatter::default().alb_request(&entry(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "https 2018-07-02T22:23:00.198641Z app/seawall/web 192.168.131.39:2817 10.0.0.1:80 \
             0.000 0.048 0.037 200 200 34 366 \
             \"GET https://www.example.com:443/a%20b?x=1 HTTP/1.1\" \"say \\\"hi\\\" \\\\ ok\" \
             ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 web-tg \
             \"Root=1-58337281-1d84f3d73c47ec4e58577259\" \"www.example.com\" \"default\" 1 \
             2018-07-02T22:23:00.186641Z \"forward\" \"-\" \"-\" \"10.0.0.1:80\" \"200\" \"-\" \"-\" \
             TID_dc57cebed65b444ebc8177bb698fe166\n"
        );
    }

    #[test]
    fn absent_fields_are_dashes_and_minus_one() {
        let mut e = entry();
        e.kind = "http";
        e.scheme = "http";
        e.port = 80;
        e.tls = None;
        e.target = None;
        e.target_status = None;
        e.request_processing = None;
        e.target_processing = None;
        e.response_processing = None;
        e.target_group = None;
        e.domain = None;
        e.certificate = None;
        e.rule = RulePriority::NotRouted;
        e.action = None;
        e.request = RequestLine::new(
            http::Method::GET,
            Version::HTTP_11,
            b"/a%20b?x=1",
            None,
            None,
        );
        e.error_reason = Some("ClientBadRequest");
        e.elb_status = 400;
        let mut out = Vec::new();
        Formatter::default().alb_request(&e, &mut out);
        let line = String::from_utf8(out).unwrap();
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
    fn one_formatter_keeps_timestamps_right_across_seconds_and_days() {
        let mut f = Formatter::default();
        let mut out = Vec::new();
        for micros in [86_399_999_999u64, 86_400_000_001, 86_400_000_002, 0] {
            f.timestamp(&mut out, UNIX_EPOCH + Duration::from_micros(micros));
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T23:59:59.999999Z 1970-01-02T00:00:00.000001Z \
             1970-01-02T00:00:00.000002Z 1970-01-01T00:00:00.000000Z "
        );
    }

    #[test]
    fn the_trace_id_is_written_as_its_display_shows_it() {
        for id in [0, 1, u128::MAX, 0xdc57cebed65b444ebc8177bb698fe166] {
            let mut out = Vec::new();
            ConnTraceId(id).write_to(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), ConnTraceId(id).to_string());
        }
    }

    #[test]
    fn addresses_and_times_are_written_as_alb_writes_them() {
        let mut out = Vec::new();
        addr(&mut out, Some("[2001:db8::1]:443".parse().unwrap()));
        out.push(b' ');
        addr(&mut out, Some("10.0.0.255:8080".parse().unwrap()));
        out.push(b' ');
        seconds(&mut out, Some(Duration::from_micros(1_234_567)));
        out.push(b' ');
        seconds(&mut out, Some(Duration::from_micros(999_600)));
        out.push(b' ');
        millis(&mut out, Duration::from_nanos(4_036_400));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[2001:db8::1]:443 10.0.0.255:8080 1.235 1.000 4.036"
        );
    }

    #[test]
    fn bytes_outside_printable_ascii_are_escaped() {
        let mut out = Vec::new();
        escaped(&mut out, b"a\"b\\c\td\xffe");
        assert_eq!(out, br#"a\"b\\c\x09d\xffe"#);
    }

    #[test]
    fn hosts_lose_their_port_but_ipv6_keeps_its_brackets() {
        assert_eq!(strip_port(b"example.com:8443"), b"example.com");
        assert_eq!(strip_port(b"example.com"), b"example.com");
        assert_eq!(strip_port(b"[::1]:8443"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
    }

    #[test]
    fn http2_and_the_default_rule_are_written_as_alb_writes_them() {
        let mut e = entry();
        e.kind = "h2";
        e.request.version = Version::HTTP_2;
        e.rule = RulePriority::Default;
        let mut out = Vec::new();
        Formatter::default().alb_request(&e, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with("h2 "), "{line}");
        assert!(line.contains("?x=1 HTTP/2.0\""), "{line}");
        assert!(line.contains("\"default\" 0 2018-"), "{line}");
    }

    #[test]
    fn the_json_line_has_the_same_fields() {
        let mut out = Vec::new();
        Formatter::default().json_request(&entry(), &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "https");
        assert_eq!(v["client_ip"], "192.168.131.39");
        assert_eq!(v["target_port"], 80);
        assert_eq!(v["target_processing_time"], 0.048);
        assert_eq!(v["request_url"], "https://www.example.com:443/a%20b?x=1");
        assert_eq!(v["user_agent"], r#"say "hi" \ ok"#);
        assert_eq!(v["ssl_cipher"], "ECDHE-RSA-AES128-GCM-SHA256");
        assert_eq!(v["matched_rule_priority"], 1);
        assert_eq!(v["redirect_url"], serde_json::Value::Null);
        assert_eq!(v["conn_trace_id"], "TID_dc57cebed65b444ebc8177bb698fe166");
        assert_eq!(v.as_object().unwrap().len(), 34);
    }

    #[test]
    fn the_connection_line_is_albs() {
        let e = ConnectionEntry {
            time: UNIX_EPOCH + Duration::from_micros(1_696_440_415_180_849),
            client: "192.0.2.1:49590".parse().unwrap(),
            listener_port: 443,
            tls: Some(TlsLine {
                protocol: rustls::ProtocolVersion::TLSv1_3,
                cipher: rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            }),
            handshake: Duration::from_micros(4036),
            verify: Verify::Success,
            conn_trace_id: ConnTraceId(1),
        };
        let mut out = Vec::new();
        Formatter::default().alb_connection(&e, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2023-10-04T17:26:55.180849Z 192.0.2.1 49590 443 TLSv1.3 TLS_AES_128_GCM_SHA256 \
             4.036 - - - Success TID_00000000000000000000000000000001\n"
        );
        let failed = ConnectionEntry {
            tls: None,
            verify: Verify::Failed("HandshakeTimeout"),
            ..e
        };
        let mut out = Vec::new();
        Formatter::default().json_connection(&failed, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["tls_verify_status"], "Failed:HandshakeTimeout");
        assert_eq!(v["tls_protocol"], serde_json::Value::Null);
        assert_eq!(v["tls_handshake_latency"], 4.036);
    }
}
