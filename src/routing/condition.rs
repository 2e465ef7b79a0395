//! A rule's conditions (ALB's rule language): host, path, method, HTTP headers, query string and
//! source IP. Within one condition any value may match (OR); every condition of a rule must (AND).

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use http::{HeaderName, Method};
use ipnet::IpNet;

use super::{RequestView, Wildcard};

/// The conditions of one rule; an empty list is a condition the rule does not have.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub host: Box<[Wildcard]>,
    pub path: Box<[Wildcard]>,
    pub method: Box<[Method]>,
    /// One condition per header name; all must match.
    pub headers: Box<[HeaderCondition]>,
    /// ALB's query-string condition: any one pair may match.
    pub query: Box<[QueryPattern]>,
    pub source_ip: Box<[IpNet]>,
}

/// ALB's `http-header` condition: one header name and the values it may have.
#[derive(Debug, Clone)]
pub struct HeaderCondition {
    pub name: HeaderName,
    pub values: Box<[Wildcard]>,
}

/// One key/value pair of a query-string condition.
#[derive(Debug, Clone)]
pub struct QueryPattern {
    /// `None`: ALB's key-less entry, whose value may be found under any key.
    pub key: Option<Wildcard>,
    pub value: Wildcard,
}

/// Which condition of a rule did not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionKind {
    Method,
    SourceIp,
    Host,
    Path,
    /// The index of the header condition in [`Conditions::headers`].
    Header(usize),
    Query,
}

impl ConditionKind {
    /// The word the configuration uses for it.
    pub fn name(self) -> &'static str {
        match self {
            ConditionKind::Method => "method",
            ConditionKind::SourceIp => "source_ip",
            ConditionKind::Host => "host",
            ConditionKind::Path => "path",
            ConditionKind::Header(_) => "header",
            ConditionKind::Query => "query",
        }
    }
}

impl Conditions {
    /// Whether the rule has no condition at all (validation refuses such a rule).
    pub fn is_empty(&self) -> bool {
        self.host.is_empty()
            && self.path.is_empty()
            && self.method.is_empty()
            && self.headers.is_empty()
            && self.query.is_empty()
            && self.source_ip.is_empty()
    }

    /// The first condition, in the order they are tested, that `req` fails; `None` when the rule
    /// matches. The cheapest tests come first. `host_known`: the caller found the rule by the
    /// request's host already.
    #[inline]
    pub(super) fn first_failure(
        &self,
        req: &RequestView<'_>,
        host_known: bool,
    ) -> Option<ConditionKind> {
        if !self.method.is_empty() && !self.method.iter().any(|m| m == req.method) {
            return Some(ConditionKind::Method);
        }
        if !self.source_ip.is_empty() && !source_ip_matches(&self.source_ip, req.client_ip) {
            return Some(ConditionKind::SourceIp);
        }
        if !host_known && !self.host.is_empty() && !self.host.iter().any(|w| w.matches(req.host)) {
            return Some(ConditionKind::Host);
        }
        if !self.path.is_empty() && !self.path.iter().any(|w| w.matches(req.path)) {
            return Some(ConditionKind::Path);
        }
        for (i, h) in self.headers.iter().enumerate() {
            let any = req
                .headers
                .get_all(&h.name)
                .iter()
                .any(|v| h.values.iter().any(|w| w.matches_bytes(v.as_bytes())));
            if !any {
                return Some(ConditionKind::Header(i));
            }
        }
        if !self.query.is_empty() && !query_matches(&self.query, req.query) {
            return Some(ConditionKind::Query);
        }
        None
    }

    /// Why `req` fails condition `kind`, for a person: what the request has and what the rule
    /// wanted.
    pub fn explain_failure(&self, kind: ConditionKind, req: &RequestView<'_>) -> String {
        match kind {
            ConditionKind::Method => format!(
                "method {} is none of {}",
                req.method,
                list(self.method.iter().map(|m| m.as_str()))
            ),
            ConditionKind::SourceIp => format!(
                "source IP {} is in none of {}",
                req.client_ip,
                list(self.source_ip.iter())
            ),
            ConditionKind::Host => format!(
                "host {:?} matched none of {}",
                req.host,
                quoted(self.host.iter())
            ),
            ConditionKind::Path => format!(
                "path {:?} matched none of {}",
                req.path,
                quoted(self.path.iter())
            ),
            ConditionKind::Header(i) => {
                let h = &self.headers[i];
                let seen: Vec<String> = req
                    .headers
                    .get_all(&h.name)
                    .iter()
                    .map(|v| format!("{:?}", String::from_utf8_lossy(v.as_bytes())))
                    .collect();
                if seen.is_empty() {
                    format!(
                        "header {} is absent (wanted one of {})",
                        h.name,
                        quoted(h.values.iter())
                    )
                } else {
                    format!(
                        "header {} [{}] matched none of {}",
                        h.name,
                        seen.join(", "),
                        quoted(h.values.iter())
                    )
                }
            }
            ConditionKind::Query => {
                let wanted = self.query.iter().map(|q| match &q.key {
                    Some(k) => format!("{:?}", format!("{k}={}", q.value)),
                    None => format!("{:?}", format!("(any key)={}", q.value)),
                });
                format!(
                    "query {:?} has no pair matching any of [{}]",
                    req.query,
                    wanted.collect::<Vec<_>>().join(", ")
                )
            }
        }
    }
}

fn list<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let mut out = String::from("[");
    for (i, t) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{t}");
    }
    out.push(']');
    out
}

fn quoted(items: std::slice::Iter<'_, Wildcard>) -> String {
    list(items.map(|w| format!("{:?}", w.to_string())))
}

/// The client address against the CIDRs; an IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`, what a
/// dual-stack socket shows for an IPv4 client) is also tested as the IPv4 address it is.
fn source_ip_matches(nets: &[IpNet], ip: IpAddr) -> bool {
    let mapped = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    nets.iter()
        .any(|n| in_net(n, ip) || mapped.is_some_and(|m| in_net(n, m)))
}

/// `IpNet::contains` builds the network's bounds on every call; validation guarantees no host
/// bits, so comparing the prefix's bits is enough (and a few instructions).
#[inline]
fn in_net(net: &IpNet, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpNet::V4(n), IpAddr::V4(a)) => {
            let shift = 32 - u32::from(n.prefix_len());
            (u32::from(a) ^ u32::from(n.addr()))
                .checked_shr(shift)
                .unwrap_or(0)
                == 0
        }
        (IpNet::V6(n), IpAddr::V6(a)) => {
            let shift = 128 - u32::from(n.prefix_len());
            (u128::from(a) ^ u128::from(n.addr()))
                .checked_shr(shift)
                .unwrap_or(0)
                == 0
        }
        _ => false,
    }
}

/// Whether any pair of the request's query string matches any of the patterns, after
/// URL-decoding (`%XX`, `+` for a space). A pair is decoded into a new string only when it has
/// an escape.
fn query_matches(patterns: &[QueryPattern], query: &str) -> bool {
    query.split('&').filter(|seq| !seq.is_empty()).any(|seq| {
        let bare = !seq.contains('=');
        let Some((key, value)) = form_urlencoded::parse(seq.as_bytes()).next() else {
            return false;
        };
        patterns.iter().any(|p| pair_matches(p, &key, &value, bare))
    })
}

/// A bare item (`?debug`) is key `debug` with an empty value to a keyed pattern, and the value
/// `debug` to the key-less entry, which is how ALB reads `?debug` against a key-less value.
fn pair_matches(p: &QueryPattern, key: &str, value: &str, bare: bool) -> bool {
    match &p.key {
        Some(k) => k.matches(key) && p.value.matches(value),
        None => p.value.matches(value) || (bare && p.value.matches(key)),
    }
}

/// What a rule needs of a request, as bits tested before any of its conditions, so that most
/// rules that cannot match are passed over in a few instructions: with a thousand rules, the
/// string comparisons a rule's conditions need are what a request would otherwise pay for each.
#[derive(Debug, Clone, Copy)]
pub(super) struct Prefilter {
    /// Bits of every header name the rule names (each must be present).
    headers: u64,
    /// Bits of the query keys of which one must be present; 0: no such need (no query condition,
    /// or one with a key-less entry or a wildcard key).
    query_keys: u64,
}

impl Prefilter {
    pub(super) fn of(c: &Conditions) -> Prefilter {
        let headers = c
            .headers
            .iter()
            .fold(0, |m, h| m | name_bit(h.name.as_str().as_bytes()));
        let exact_keys: Option<Vec<&[u8]>> = c
            .query
            .iter()
            .map(|q| q.key.as_ref().and_then(Wildcard::exact))
            .collect();
        let query_keys = exact_keys.map_or(0, |keys| keys.iter().fold(0, |m, k| m | name_bit(k)));
        Prefilter {
            headers,
            query_keys,
        }
    }
}

/// The request's side of the prefilters, computed once per `find`, each part only when a rule
/// first needs it.
pub(super) struct Facts<'a, 'r> {
    req: &'a RequestView<'r>,
    method: u16,
    headers: Option<u64>,
    query_keys: Option<u64>,
}

impl<'a, 'r> Facts<'a, 'r> {
    /// The request method's bit, as an index into per-method tables.
    pub(super) fn method_index(&self) -> usize {
        self.method.trailing_zeros() as usize
    }

    pub(super) fn new(req: &'a RequestView<'r>) -> Self {
        Facts {
            req,
            method: method_bit(req.method),
            headers: None,
            query_keys: None,
        }
    }

    /// `false`: the rule cannot match. `true`: its conditions decide.
    #[inline]
    pub(super) fn may_match(&mut self, p: &Prefilter) -> bool {
        if p.headers != 0 {
            let req = self.req;
            let have = *self.headers.get_or_insert_with(|| {
                req.headers
                    .keys()
                    .fold(0, |m, k| m | name_bit(k.as_str().as_bytes()))
            });
            if have & p.headers != p.headers {
                return false;
            }
        }
        if p.query_keys != 0 {
            let query = self.req.query;
            let have = *self.query_keys.get_or_insert_with(|| query_key_bits(query));
            if have & p.query_keys == 0 {
                return false;
            }
        }
        true
    }
}

/// How many method bits there are (9 standard methods, the top one for every other).
pub(super) const METHOD_BITS: usize = 16;

/// Whether a request whose method has bit `bit` may pass the rule's method condition.
pub(super) fn accepts_method_bit(c: &Conditions, bit: usize) -> bool {
    c.method.is_empty() || c.method.iter().any(|m| method_bit(m) == 1 << bit)
}

const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
    Method::PATCH,
    Method::TRACE,
    Method::CONNECT,
];

/// One bit per standard method; every extension method shares the top bit (the condition then
/// compares it in full).
fn method_bit(m: &Method) -> u16 {
    STANDARD_METHODS
        .iter()
        .position(|s| s == m)
        .map_or(1 << 15, |i| 1 << i)
}

/// A name's bit out of 64 (FNV-1a over its ASCII-lower-cased bytes): names that share a bit
/// only cost the full test.
fn name_bit(name: &[u8]) -> u64 {
    let h = name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3)
    });
    1 << (h >> 58)
}

/// The bits of the request's query keys, URL-decoded and folded.
fn query_key_bits(query: &str) -> u64 {
    let mut bits = 0;
    each_query_key(query, |k| bits |= name_bit(k));
    bits
}

/// Calls `f` with each key of the query string, URL-decoded (into a new string only when it has
/// an escape) and ASCII-lower-cased (in a buffer on the stack; a key longer than any pattern
/// could be is left out, as no exact key can match it).
pub(super) fn each_query_key(query: &str, mut f: impl FnMut(&[u8])) {
    const MAX: usize = 4 * super::MAX_PATTERN_LEN;
    let mut buf = [0u8; MAX];
    for seq in query.split('&').filter(|seq| !seq.is_empty()) {
        let raw = seq.split_once('=').map_or(seq, |(k, _)| k);
        let decoded;
        let key = if raw.contains(['%', '+']) {
            decoded = form_urlencoded::parse(raw.as_bytes())
                .next()
                .map(|(k, _)| k)
                .unwrap_or_default();
            decoded.as_bytes()
        } else {
            raw.as_bytes()
        };
        if key.len() <= MAX {
            let folded = &mut buf[..key.len()];
            folded.copy_from_slice(key);
            folded.make_ascii_lowercase();
            f(folded);
        }
    }
}
