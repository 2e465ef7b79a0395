//! Compiled listener rules: conditions matched in priority order, the first match's action wins, the
//! listener's default action when none matches. Everything is built at load time; [`Router::find`] is
//! a pure function of the request.

mod action;
mod condition;
mod redirect;
mod wildcard;

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;

use http::{HeaderMap, HeaderName, Method};

pub use action::{Action, FixedResponse, Forward, GroupId, WeightedGroup};
pub use condition::{ConditionKind, Conditions, HeaderCondition, QueryPattern};
use condition::{Facts, Prefilter};
pub use ipnet::IpNet;
pub use redirect::{RedirectError, RedirectRequest, RedirectTemplate};
pub use wildcard::{PatternError, Syntax, Wildcard, MAX_PATTERN_LEN};

/// The whole request as the router sees it, borrowed from it: every condition of ALB's rule
/// language (host, path, method, headers, query string, source IP) reads from here, so new
/// conditions are added in this module alone.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Host without port, as the client wrote it (matching folds case).
    pub host: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The query string without its `?`; empty when there is none.
    pub query: &'a str,
    /// The client's address as the connection shows it (not `X-Forwarded-For`, as for ALB's
    /// `source-ip` condition).
    pub client_ip: IpAddr,
}

/// Which rule decided a request: ALB's `matched_rule_priority` (`0` for the default action in
/// its logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Rule(u32),
    Default,
}

/// The router's answer: the action and which rule gave it.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub priority: Priority,
    pub action: &'a Action,
}

/// The index maps: their keys are the configuration's, and a request only looks up.
type Map<K, V> = HashMap<K, V, RandomState>;

/// A listener's rules and default action, indexed once per load.
///
/// Indexes narrow the rules a request must be tested against, each a set of rule indexes (bits,
/// so that intersecting them is a few word operations and walking the result is walking in
/// priority order): by the request's host (a rule whose host patterns are each exact, or end in
/// a literal `.label`, is found through the lower-cased host or its last label; the others are
/// candidates for any host), by the first segment of its path (rules whose every path pattern
/// starts with a whole literal segment, such as `/api/*`), by its method, header names, query
/// keys, and the first byte of the client's address. The candidates left are tested in full,
/// after a few bits for their header names and query keys.
#[derive(Debug)]
pub struct Router {
    /// Sorted by priority.
    rules: Box<[Rule]>,
    /// `prefilters[i]` is `rules[i]`'s, kept apart so that passing over rules stays in cache.
    prefilters: Box<[Prefilter]>,
    /// 64 rules per word.
    words: usize,
    /// Lower-cased exact host → the rules that name it.
    by_host: Map<Box<[u8]>, Members>,
    /// Lower-cased last label of a host (`test` of `*.example.test`) → the rules with a wildcard
    /// host pattern that ends in it.
    by_host_label: Map<Box<[u8]>, Members>,
    /// The rules any host may match (no host condition, or a pattern neither index keys).
    any_host: Box<[u64]>,
    /// First path segment (`/api` of `/api/v1`) → the rules whose path patterns all start with it.
    by_segment: Map<Box<[u8]>, Members>,
    /// The rules any path may match, as far as the segment index knows.
    any_segment: Box<[u64]>,
    /// Per method bit (see `condition::method_bit`), the rules that accept it.
    by_method: Box<[Box<[u64]>]>,
    /// Header name → the rules whose first header condition names it (every named header must
    /// be present, so one of them is enough to find the rule by).
    by_header: Map<HeaderName, Members>,
    /// The rules without a header condition.
    any_header: Box<[u64]>,
    /// Lower-cased query key → the rules whose query condition has an entry with that exact key
    /// (when all its entries have exact keys, one of them must be in the request).
    by_query_key: Map<Box<[u8]>, Members>,
    /// The rules the query key index cannot rule out.
    any_query_key: Box<[u64]>,
    /// Per [`source_key`], the rules with a `source_ip` block of at least 8 prefix bits that
    /// starts with that byte; empty when no rule has a `source_ip` condition.
    by_source: Box<[Members]>,
    /// The rules without a `source_ip` condition, or with a block shorter than 8 bits.
    any_source: Box<[u64]>,
    default_action: Action,
}

/// One rule: every condition that is present must match (AND); within a condition, any value (OR).
#[derive(Debug)]
pub struct Rule {
    pub priority: u32,
    pub conditions: Conditions,
    pub action: Action,
}

/// The most words a candidate set has: one bit per rule, and at most 50 000 rules (one per
/// priority).
const MAX_WORDS: usize = 50_000usize.div_ceil(64);

/// The segment index's key for a request path: up to (not including) its second `/`.
fn request_segment(path: &[u8]) -> &[u8] {
    match path.iter().skip(1).position(|&b| b == b'/') {
        Some(i) => &path[..i + 1],
        None => path,
    }
}

/// The first segment every match of a path pattern has, when the pattern fixes it: `/api` for
/// `/api/*` or `/api`, none for `/api*` (which `/apiv2/x` matches too) or `*.png`.
fn pattern_segment(w: &Wildcard) -> Option<&[u8]> {
    let (literal, whole) = w.literal_prefix();
    if literal.first() != Some(&b'/') {
        return None;
    }
    match literal.iter().skip(1).position(|&b| b == b'/') {
        Some(i) => Some(&literal[..i + 1]),
        None if whole => Some(literal),
        None => None,
    }
}

/// The rules an index key stands for: their indexes, or (when that is shorter to apply than
/// the list: a key most rules share, such as a common last label) their set of bits.
#[derive(Debug)]
enum Members {
    List(Box<[u32]>),
    Bits(Box<[u64]>),
}

impl Members {
    fn of(list: Vec<u32>, words: usize) -> Self {
        if list.len() > words {
            let mut bits = vec![0u64; words];
            for i in list {
                bits[i as usize / 64] |= 1 << (i % 64);
            }
            Members::Bits(bits.into())
        } else {
            Members::List(list.into())
        }
    }

    /// Adds these rules to `set`.
    #[inline]
    fn add_to(&self, set: &mut [u64]) {
        match self {
            Members::List(list) => {
                for &i in list.iter() {
                    set[i as usize / 64] |= 1 << (i % 64);
                }
            }
            Members::Bits(bits) => {
                for (s, b) in set.iter_mut().zip(bits.iter()) {
                    *s |= b;
                }
            }
        }
    }
}

/// How the host index finds a host pattern's rule.
enum HostKey<'a> {
    /// The lower-cased host itself.
    Exact(&'a [u8]),
    /// The lower-cased last label every match ends with.
    Label(Box<[u8]>),
}

fn host_key(w: &Wildcard) -> Option<HostKey<'_>> {
    if let Some(exact) = w.exact() {
        return Some(HostKey::Exact(exact));
    }
    // `*.example.test` and `api-?.test` end with a literal `.test`: whatever a wildcard stands
    // for, a matching host's last label is `test`.
    let tail = w.literal_suffix();
    let dot = tail.iter().rposition(|&b| b == b'.')?;
    Some(HostKey::Label(tail[dot + 1..].to_ascii_lowercase().into()))
}

/// The source index has a slot per first byte of an IPv4 address, then one per first byte of an
/// IPv6 address.
const SOURCE_SLOTS: usize = 512;

/// A client address's slot in the source index.
fn source_key(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(a) => usize::from(a.octets()[0]),
        IpAddr::V6(a) => 256 + usize::from(a.octets()[0]),
    }
}

/// The slot of every address of a block, when its prefix fixes the first byte.
fn net_source_key(net: &IpNet) -> Option<usize> {
    (net.prefix_len() >= 8).then(|| source_key(net.addr()))
}

/// Keeps of `candidates` the rules an index allows: those `any` holds (the index cannot rule
/// them out) and those `add` puts in for this request.
#[inline]
fn narrow<const N: usize>(candidates: &mut [u64], any: &[u64], add: impl FnOnce(&mut [u64])) {
    let mut allowed = [0u64; N];
    let allowed = &mut allowed[..candidates.len()];
    allowed.copy_from_slice(any);
    add(allowed);
    for (c, a) in candidates.iter_mut().zip(allowed.iter()) {
        *c &= *a;
    }
}

/// Calls `f` with `name` lower-cased, on the stack. A name longer than any pattern can be (see
/// [`HOST_BUF`]) equals no index key, so `f` is not called.
#[inline]
fn with_folded(name: &[u8], f: impl FnOnce(&[u8])) {
    if name.len() <= HOST_BUF {
        let mut buf = [0u8; HOST_BUF];
        let folded = &mut buf[..name.len()];
        folded.copy_from_slice(name);
        folded.make_ascii_lowercase();
        f(folded);
    }
}

/// Adds rule `index` to an index key's list, once: a rule may name the same key twice.
fn push_once(list: &mut Vec<u32>, index: u32) {
    if list.last() != Some(&index) {
        list.push(index);
    }
}

/// Longer host names cannot be exact-host keys (a pattern is at most 128 characters of at most
/// 4 bytes): the request's host is folded into a buffer of this size.
const HOST_BUF: usize = 4 * MAX_PATTERN_LEN;

/// What [`Router::explain`] found: every rule tried before the answer, and the answer.
#[derive(Debug, Clone)]
pub struct Explanation<'a> {
    /// In priority order, every rule before the matched one (every rule when the default action
    /// answers), each with the first of its conditions the request failed.
    pub misses: Vec<Miss>,
    /// The same answer [`Router::find`] gives.
    pub matched: Matched<'a>,
}

/// A rule that did not match, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    pub priority: u32,
    /// The first condition, in the order the router tests them, that failed.
    pub condition: ConditionKind,
    /// For a person: what the request had and what the condition wanted.
    pub reason: String,
}

impl Router {
    /// `rules` must be sorted by priority; validation guarantees priorities are unique.
    pub fn new(rules: Vec<Rule>, default_action: Action) -> Self {
        debug_assert!(rules.windows(2).all(|w| w[0].priority < w[1].priority));
        let words = rules.len().div_ceil(64);
        let set = |bits: &mut [u64], i: usize| bits[i / 64] |= 1 << (i % 64);
        let mut by_host: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        let mut by_host_label: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        let mut any_host = vec![0; words];
        let mut by_segment: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        let mut any_segment = vec![0; words];
        let mut by_method = vec![vec![0u64; words]; condition::METHOD_BITS];
        let mut by_header: HashMap<HeaderName, Vec<u32>> = HashMap::new();
        let mut any_header = vec![0; words];
        let mut by_query_key: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        let mut any_query_key = vec![0; words];
        let sourced = rules.iter().any(|r| !r.conditions.source_ip.is_empty());
        let slots = if sourced { SOURCE_SLOTS } else { 0 };
        let mut by_source: Vec<Vec<u32>> = vec![Vec::new(); slots];
        let mut any_source = vec![0; words];
        for (i, r) in rules.iter().enumerate() {
            let index = u32::try_from(i).expect("fewer than 2^32 rules");
            let c = &r.conditions;
            let hosts: Option<Vec<HostKey>> = c.host.iter().map(host_key).collect();
            match hosts {
                Some(hosts) if !hosts.is_empty() => {
                    for key in hosts {
                        let list = match key {
                            HostKey::Exact(h) => by_host.entry(h.into()).or_default(),
                            HostKey::Label(l) => by_host_label.entry(l).or_default(),
                        };
                        push_once(list, index);
                    }
                }
                _ => set(&mut any_host, i),
            }
            let sources: Option<Vec<usize>> = c.source_ip.iter().map(net_source_key).collect();
            match sources {
                Some(keys) if !keys.is_empty() => {
                    for k in keys {
                        push_once(&mut by_source[k], index);
                    }
                }
                _ => set(&mut any_source, i),
            }
            let segments: Option<Vec<&[u8]>> = c.path.iter().map(|w| pattern_segment(w)).collect();
            match segments {
                Some(segments) if !segments.is_empty() => {
                    for s in segments {
                        push_once(by_segment.entry(s.into()).or_default(), index);
                    }
                }
                _ => set(&mut any_segment, i),
            }
            match c.headers.first() {
                Some(h) => by_header.entry(h.name.clone()).or_default().push(index),
                None => set(&mut any_header, i),
            }
            let keys: Option<Vec<&[u8]>> = c
                .query
                .iter()
                .map(|q| q.key.as_ref().and_then(Wildcard::exact))
                .collect();
            match keys {
                Some(keys) if !keys.is_empty() => {
                    for k in keys {
                        push_once(by_query_key.entry(k.into()).or_default(), index);
                    }
                }
                _ => set(&mut any_query_key, i),
            }
            for (bit, rules) in by_method.iter_mut().enumerate() {
                if condition::accepts_method_bit(c, bit) {
                    set(rules, i);
                }
            }
        }
        let boxed = |m: HashMap<Box<[u8]>, Vec<u32>>| {
            m.into_iter()
                .map(|(k, v)| (k, Members::of(v, words)))
                .collect()
        };
        Router {
            prefilters: rules.iter().map(|r| Prefilter::of(&r.conditions)).collect(),
            rules: rules.into(),
            words,
            by_host: boxed(by_host),
            by_host_label: boxed(by_host_label),
            any_host: any_host.into(),
            by_segment: boxed(by_segment),
            any_segment: any_segment.into(),
            by_method: by_method.into_iter().map(Vec::into_boxed_slice).collect(),
            by_header: by_header
                .into_iter()
                .map(|(k, v)| (k, Members::of(v, words)))
                .collect(),
            any_header: any_header.into(),
            by_query_key: boxed(by_query_key),
            any_query_key: any_query_key.into(),
            by_source: by_source
                .into_iter()
                .map(|v| Members::of(v, words))
                .collect(),
            any_source: any_source.into(),
            default_action,
        }
    }

    /// The rules, in priority order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn default_action(&self) -> &Action {
        &self.default_action
    }

    /// The action for a request: the lowest-priority matching rule's, else the default.
    pub fn find(&self, req: &RequestView<'_>) -> Matched<'_> {
        self.find_counted(req).0
    }

    /// [`find`](Self::find), with the number of rules whose conditions were tested to decide
    /// (ALB's RuleEvaluations): the candidates the indexes and prefilters leave, up to and
    /// including the match. [`explain`](Self::explain), which tests every rule before the
    /// match, never tests fewer.
    pub fn find_counted(&self, req: &RequestView<'_>) -> (Matched<'_>, u32) {
        // The candidate set lives on the stack, sized to the listener: most have few rules,
        // and zeroing a set for the largest would cost more than the search.
        let mut evaluated = 0;
        let found = match self.words {
            0..=2 => self.search::<2>(req, &mut evaluated),
            3..=16 => self.search::<16>(req, &mut evaluated),
            _ => self.search::<MAX_WORDS>(req, &mut evaluated),
        };
        let matched = match found {
            Some(rule) => Matched {
                priority: Priority::Rule(rule.priority),
                action: &rule.action,
            },
            None => Matched {
                priority: Priority::Default,
                action: &self.default_action,
            },
        };
        (matched, evaluated)
    }

    /// The first matching rule, among the candidates the indexes leave; `N` ≥ `self.words`.
    /// Adds the rules tested in full to `evaluated`.
    fn search<const N: usize>(&self, req: &RequestView<'_>, evaluated: &mut u32) -> Option<&Rule> {
        let words = self.words;
        let mut candidates = [0u64; N];
        let candidates = &mut candidates[..words];
        candidates.copy_from_slice(&self.any_host);
        let host = req.host.as_bytes();
        if !self.by_host.is_empty() {
            with_folded(host, |folded| {
                if let Some(m) = self.by_host.get(folded) {
                    m.add_to(candidates);
                }
            });
        }
        if !self.by_host_label.is_empty() {
            let label = match host.iter().rposition(|&b| b == b'.') {
                Some(dot) => &host[dot + 1..],
                None => host,
            };
            with_folded(label, |folded| {
                if let Some(m) = self.by_host_label.get(folded) {
                    m.add_to(candidates);
                }
            });
        }
        if !self.by_source.is_empty() {
            narrow::<N>(candidates, &self.any_source, |allowed| {
                let ip = req.client_ip;
                // An IPv4 client on a dual-stack socket shows as `::ffff:a.b.c.d`, which IPv4
                // blocks match too (see `condition::source_ip_matches`).
                let mapped = match ip {
                    IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4),
                    IpAddr::V4(_) => None,
                };
                for key in std::iter::once(ip).chain(mapped).map(source_key) {
                    self.by_source[key].add_to(allowed);
                }
            });
        }
        if !self.by_segment.is_empty() {
            narrow::<N>(candidates, &self.any_segment, |allowed| {
                if let Some(m) = self.by_segment.get(request_segment(req.path.as_bytes())) {
                    m.add_to(allowed);
                }
            });
        }
        if !self.by_header.is_empty() {
            narrow::<N>(candidates, &self.any_header, |allowed| {
                for name in req.headers.keys() {
                    if let Some(m) = self.by_header.get(name) {
                        m.add_to(allowed);
                    }
                }
            });
        }
        if !self.by_query_key.is_empty() {
            narrow::<N>(candidates, &self.any_query_key, |allowed| {
                condition::each_query_key(req.query, |key| {
                    if let Some(m) = self.by_query_key.get(key) {
                        m.add_to(allowed);
                    }
                });
            });
        }
        let mut facts = Facts::new(req);
        let methods = &self.by_method[facts.method_index()];
        for (w, (c, m)) in candidates.iter().zip(methods.iter()).enumerate() {
            let mut bits = c & m;
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if !facts.may_match(&self.prefilters[i]) {
                    continue;
                }
                let rule = &self.rules[i];
                *evaluated += 1;
                if rule.conditions.first_failure(req, false).is_none() {
                    return Some(rule);
                }
            }
        }
        None
    }

    /// What [`find`](Self::find) decides and why, rule by rule: every rule is tested in
    /// priority order, without the host index, so that this is also a reference for `find`.
    pub fn explain(&self, req: &RequestView<'_>) -> Explanation<'_> {
        let mut misses = Vec::new();
        for rule in self.rules.iter() {
            match rule.conditions.first_failure(req, false) {
                None => {
                    return Explanation {
                        misses,
                        matched: Matched {
                            priority: Priority::Rule(rule.priority),
                            action: &rule.action,
                        },
                    }
                }
                Some(kind) => misses.push(Miss {
                    priority: rule.priority,
                    condition: kind,
                    reason: rule.conditions.explain_failure(kind, req),
                }),
            }
        }
        Explanation {
            misses,
            matched: Matched {
                priority: Priority::Default,
                action: &self.default_action,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderName, HeaderValue, StatusCode};
    use proptest::prelude::*;

    fn fixed(body: &str) -> Action {
        Action::FixedResponse(FixedResponse {
            status: StatusCode::OK,
            content_type: HeaderValue::from_static("text/plain"),
            body: Bytes::from(body.to_string()),
        })
    }

    fn body(a: &Action) -> &[u8] {
        match a {
            Action::FixedResponse(f) => &f.body,
            _ => panic!("not fixed"),
        }
    }

    fn h(p: &str) -> Wildcard {
        Wildcard::case_insensitive(p).unwrap()
    }
    fn p(p: &str) -> Wildcard {
        Wildcard::case_sensitive(p).unwrap()
    }

    fn rule(priority: u32, conditions: Conditions) -> Rule {
        Rule {
            priority,
            conditions,
            action: fixed(&priority.to_string()),
        }
    }

    /// A request to build views from: the headers live here so that views can borrow them.
    struct Req {
        host: &'static str,
        path: &'static str,
        method: Method,
        headers: HeaderMap,
        query: &'static str,
        ip: IpAddr,
    }

    impl Req {
        fn new(host: &'static str, path: &'static str) -> Req {
            Req {
                host,
                path,
                method: Method::GET,
                headers: HeaderMap::new(),
                query: "",
                ip: IpAddr::from([127, 0, 0, 1]),
            }
        }
        fn header(mut self, name: &'static str, value: &'static str) -> Req {
            self.headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
            self
        }
        fn query(mut self, q: &'static str) -> Req {
            self.query = q;
            self
        }
        fn method(mut self, m: Method) -> Req {
            self.method = m;
            self
        }
        fn ip(mut self, ip: &str) -> Req {
            self.ip = ip.parse().unwrap();
            self
        }
        fn view(&self) -> RequestView<'_> {
            RequestView {
                host: self.host,
                path: self.path,
                method: &self.method,
                headers: &self.headers,
                query: self.query,
                client_ip: self.ip,
            }
        }
    }

    /// The rule that answers, checked against `explain`.
    fn answer(router: &Router, req: &Req) -> Priority {
        let found = router.find(&req.view());
        let explained = router.explain(&req.view());
        assert_eq!(found.priority, explained.matched.priority);
        assert_eq!(body(found.action), body(explained.matched.action));
        found.priority
    }

    #[test]
    fn lowest_priority_match_wins_and_conditions_are_anded() {
        let router = Router::new(
            vec![
                rule(
                    1,
                    Conditions {
                        host: vec![h("api.test")].into(),
                        path: vec![p("/v1/*")].into(),
                        ..Default::default()
                    },
                ),
                rule(
                    2,
                    Conditions {
                        host: vec![h("api.test"), h("*.api.test")].into(),
                        ..Default::default()
                    },
                ),
                rule(
                    3,
                    Conditions {
                        path: vec![p("/static/*")].into(),
                        ..Default::default()
                    },
                ),
            ],
            fixed("default"),
        );
        let find = |host, path| answer(&router, &Req::new(host, path));
        assert_eq!(find("API.test", "/v1/x"), Priority::Rule(1));
        assert_eq!(find("api.test", "/v2/x"), Priority::Rule(2));
        assert_eq!(find("eu.api.test", "/static/a"), Priority::Rule(2));
        assert_eq!(find("other.test", "/static/a"), Priority::Rule(3));
        assert_eq!(find("other.test", "/"), Priority::Default);
    }

    /// RuleEvaluations: the rules tested up to the match; a rule the host index rules out is
    /// not tested.
    #[test]
    fn find_counts_the_rules_it_tests() {
        let suffix = |priority, pattern| {
            rule(
                priority,
                Conditions {
                    path: vec![p(pattern)].into(),
                    ..Default::default()
                },
            )
        };
        let router = Router::new(
            vec![
                suffix(1, "*.png"),
                suffix(2, "*.css"),
                suffix(3, "*.js"),
                rule(
                    4,
                    Conditions {
                        host: vec![h("api.test")].into(),
                        ..Default::default()
                    },
                ),
            ],
            fixed("default"),
        );
        let counted = |host, path| {
            let req = Req::new(host, path);
            let (m, n) = router.find_counted(&req.view());
            assert_eq!(m.priority, answer(&router, &req));
            (m.priority, n)
        };
        assert_eq!(counted("x.test", "/a.png"), (Priority::Rule(1), 1));
        assert_eq!(counted("x.test", "/a.css"), (Priority::Rule(2), 2));
        assert_eq!(counted("x.test", "/a.txt"), (Priority::Default, 3));
        assert_eq!(counted("api.test", "/a.txt"), (Priority::Rule(4), 4));
        let empty = Router::new(Vec::new(), fixed("default"));
        assert_eq!(empty.find_counted(&Req::new("x", "/").view()).1, 0);
    }

    /// An exact-host rule and an unindexed one interleave: the merge keeps priority order.
    #[test]
    fn indexed_and_unindexed_rules_are_tried_in_priority_order() {
        let router = Router::new(
            vec![
                rule(
                    1,
                    Conditions {
                        path: vec![p("/first")].into(),
                        ..Default::default()
                    },
                ),
                rule(
                    2,
                    Conditions {
                        host: vec![h("a.test")].into(),
                        path: vec![p("/x*")].into(),
                        ..Default::default()
                    },
                ),
                rule(
                    3,
                    Conditions {
                        path: vec![p("/x*")].into(),
                        ..Default::default()
                    },
                ),
                rule(
                    4,
                    Conditions {
                        host: vec![h("A.TEST"), h("b.test")].into(),
                        ..Default::default()
                    },
                ),
            ],
            fixed("default"),
        );
        let find = |host, path| answer(&router, &Req::new(host, path));
        assert_eq!(find("a.test", "/first"), Priority::Rule(1));
        assert_eq!(find("A.Test", "/xy"), Priority::Rule(2));
        assert_eq!(find("b.test", "/xy"), Priority::Rule(3));
        assert_eq!(find("b.test", "/"), Priority::Rule(4));
        assert_eq!(find("c.test", "/"), Priority::Default);
        let long: &'static str = Box::leak(format!("{}.test", "a".repeat(300)).into_boxed_str());
        assert_eq!(find(long, "/xy"), Priority::Rule(3));
    }

    #[test]
    fn every_condition_kind_matches_and_explains() {
        let router = Router::new(
            vec![
                rule(
                    10,
                    Conditions {
                        method: vec![Method::POST, Method::PUT].into(),
                        ..Default::default()
                    },
                ),
                rule(
                    20,
                    Conditions {
                        source_ip: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
                            .into(),
                        ..Default::default()
                    },
                ),
                rule(
                    30,
                    Conditions {
                        headers: vec![
                            HeaderCondition {
                                name: HeaderName::from_static("x-canary"),
                                values: vec![
                                    Wildcard::header_value("1").unwrap(),
                                    Wildcard::header_value("tr?e").unwrap(),
                                ]
                                .into(),
                            },
                            HeaderCondition {
                                name: HeaderName::from_static("x-env"),
                                values: vec![Wildcard::header_value("prod*").unwrap()].into(),
                            },
                        ]
                        .into(),
                        ..Default::default()
                    },
                ),
                rule(
                    40,
                    Conditions {
                        query: vec![
                            QueryPattern {
                                key: Some(Wildcard::query("version").unwrap()),
                                value: Wildcard::query("v2*").unwrap(),
                            },
                            QueryPattern {
                                key: None,
                                value: Wildcard::query("debug").unwrap(),
                            },
                            QueryPattern {
                                key: Some(Wildcard::query("q").unwrap()),
                                value: Wildcard::query(r"a\*b c").unwrap(),
                            },
                        ]
                        .into(),
                        ..Default::default()
                    },
                ),
            ],
            fixed("default"),
        );
        let r = |req: Req| answer(&router, &req);
        let base = || Req::new("x.test", "/");
        assert_eq!(r(base().method(Method::PUT)), Priority::Rule(10));
        assert_eq!(r(base().ip("10.2.3.4")), Priority::Rule(20));
        assert_eq!(r(base().ip("::ffff:10.2.3.4")), Priority::Rule(20));
        assert_eq!(r(base().ip("fd12::1")), Priority::Rule(20));
        assert_eq!(r(base().ip("11.0.0.1")), Priority::Default);
        // Headers: every name must match, any occurrence of one may, values fold case.
        assert_eq!(
            r(base()
                .header("x-canary", "TRUE")
                .header("x-env", "Production")),
            Priority::Rule(30)
        );
        assert_eq!(
            r(base()
                .header("x-canary", "0")
                .header("x-canary", "1")
                .header("x-env", "prod")),
            Priority::Rule(30)
        );
        assert_eq!(r(base().header("x-canary", "1")), Priority::Default);
        assert_eq!(
            r(base().header("x-canary", "2").header("x-env", "prod")),
            Priority::Default
        );
        // Query: decoded, case folded, any pair; the key-less entry under any key or bare.
        assert_eq!(r(base().query("a=1&VERSION=V2.1")), Priority::Rule(40));
        assert_eq!(r(base().query("ver%73ion=v%32")), Priority::Rule(40));
        assert_eq!(r(base().query("mode=DEBUG")), Priority::Rule(40));
        assert_eq!(r(base().query("x=1&debug")), Priority::Rule(40));
        assert_eq!(r(base().query("q=a*b+c")), Priority::Rule(40));
        assert_eq!(r(base().query("q=a%2Ab%20c")), Priority::Rule(40));
        assert_eq!(r(base().query("q=axb+c")), Priority::Default);
        assert_eq!(r(base().query("version=v1&debug=0")), Priority::Default);
        assert_eq!(r(base().query("")), Priority::Default);

        let req = base()
            .header("x-canary", "0")
            .query("version=v1")
            .ip("192.0.2.1");
        let e = router.explain(&req.view());
        let got: Vec<(u32, ConditionKind, &str)> = e
            .misses
            .iter()
            .map(|m| (m.priority, m.condition, m.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    10,
                    ConditionKind::Method,
                    "method GET is none of [POST, PUT]"
                ),
                (
                    20,
                    ConditionKind::SourceIp,
                    "source IP 192.0.2.1 is in none of [10.0.0.0/8, fd00::/8]"
                ),
                (
                    30,
                    ConditionKind::Header(0),
                    r#"header x-canary ["0"] matched none of ["1", "tr?e"]"#
                ),
                (
                    40,
                    ConditionKind::Query,
                    r#"query "version=v1" has no pair matching any of ["version=v2*", "(any key)=debug", "q=a\\*b c"]"#
                ),
            ]
        );
        assert_eq!(e.matched.priority, Priority::Default);
    }

    #[test]
    fn explain_names_the_hosts_a_rule_wanted() {
        let router = Router::new(
            vec![rule(
                5,
                Conditions {
                    host: vec![h("api.test"), h("*.api.test")].into(),
                    ..Default::default()
                },
            )],
            fixed("default"),
        );
        let e = router.explain(&Req::new("x.test", "/").view());
        assert_eq!(
            e.misses[0].reason,
            r#"host "x.test" matched none of ["api.test", "*.api.test"]"#
        );
    }

    /// More rules than one word of the candidate sets holds, of every indexed kind.
    #[test]
    fn large_listeners_find_what_a_scan_finds() {
        let rules: Vec<Rule> = (1..=300u32)
            .map(|i| {
                let c = match i % 3 {
                    0 => Conditions {
                        host: vec![h(&format!("h{i}.test"))].into(),
                        ..Default::default()
                    },
                    1 => Conditions {
                        path: vec![p(&format!("/p{i}/*"))].into(),
                        ..Default::default()
                    },
                    _ => Conditions {
                        method: vec![Method::PUT].into(),
                        path: vec![p(&format!("/m{i}"))].into(),
                        ..Default::default()
                    },
                };
                rule(i, c)
            })
            .collect();
        let router = Router::new(rules, fixed("default"));
        let find = |req: Req| answer(&router, &req);
        assert_eq!(find(Req::new("H291.test", "/")), Priority::Rule(291));
        assert_eq!(find(Req::new("x.test", "/p292/a")), Priority::Rule(292));
        assert_eq!(find(Req::new("h3.test", "/p292/a")), Priority::Rule(3));
        assert_eq!(find(Req::new("x.test", "/p292")), Priority::Default);
        assert_eq!(
            find(Req::new("x.test", "/m293").method(Method::PUT)),
            Priority::Rule(293)
        );
        assert_eq!(find(Req::new("x.test", "/m293")), Priority::Default);
        assert_eq!(find(Req::new("h300.test", "/p1/")), Priority::Rule(1));
    }

    // Random listeners: `find` (through the host index) and `explain` (a scan of every rule)
    // must give the same rule for any request.

    const HOSTS: [&str; 9] = [
        "a.test", "B.test", "*.test", "a.*", "c.test", "?.test", "*.B.Test", "x*.org", "*",
    ];
    const PATHS: [&str; 6] = ["/x", "/x*", "/*", "/y", "/x/*", "/x/?"];

    fn conditions() -> impl Strategy<Value = Conditions> {
        (
            proptest::sample::subsequence(HOSTS.to_vec(), 0..3),
            proptest::sample::subsequence(PATHS.to_vec(), 0..2),
            proptest::option::of(prop_oneof![Just(Method::GET), Just(Method::POST)]),
            proptest::option::of(prop_oneof![Just("1"), Just("*")]),
            proptest::option::of(prop_oneof![
                Just("10.0.0.0/8"),
                Just("::/0"),
                Just("10.1.0.0/16"),
                Just("0.0.0.0/0"),
                Just("fd00::/8"),
                Just("::ffff:10.0.0.0/104"),
            ]),
            proptest::option::of(prop_oneof![
                Just((None, "v")),
                Just((None, "d*")),
                Just((Some("version"), "v*")),
                Just((Some("a"), "d*")),
            ]),
        )
            .prop_map(|(hosts, paths, method, header, net, query)| Conditions {
                host: hosts.into_iter().map(h).collect(),
                path: paths.into_iter().map(p).collect(),
                method: method.into_iter().collect(),
                headers: header
                    .map(|v| HeaderCondition {
                        name: HeaderName::from_static("x-h"),
                        values: vec![Wildcard::header_value(v).unwrap()].into(),
                    })
                    .into_iter()
                    .collect(),
                source_ip: net.into_iter().map(|n| n.parse().unwrap()).collect(),
                query: query
                    .map(|(k, v)| QueryPattern {
                        key: k.map(|k| Wildcard::query(k).unwrap()),
                        value: Wildcard::query(v).unwrap(),
                    })
                    .into_iter()
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn find_and_explain_agree(
            rules in proptest::collection::vec(conditions(), 0..12),
            host in prop_oneof![Just("a.test"), Just("A.TEST"), Just("b.test"), Just("c.test"), Just("x.org"), Just("a.org"), Just("q.b.TEST"), Just("xy.org"), Just("localhost")],
            path in prop_oneof![Just("/x"), Just("/xy"), Just("/y"), Just("/"), Just("/x/z"), Just("/x/zz")],
            post in any::<bool>(),
            header in proptest::option::of(prop_oneof![Just("1"), Just("2")]),
            client in prop_oneof![Just("10.1.1.1"), Just("192.0.2.1"), Just("::ffff:10.1.1.1"), Just("fd00::1"), Just("2001:db8::1")],
            query in prop_oneof![
                Just(""),
                Just("k=v"),
                Just("debug"),
                Just("a=D%41ta"),
                Just("ver%73ion=v2"),
                Just("VERSION=x&a=d"),
            ],
        ) {
            let rules: Vec<Rule> = rules
                .into_iter()
                .enumerate()
                .map(|(i, c)| rule(i as u32 * 3 + 1, c))
                .collect();
            let router = Router::new(rules, fixed("default"));
            let mut headers = HeaderMap::new();
            if let Some(v) = header {
                headers.insert("x-h", HeaderValue::from_static(v));
            }
            let method = if post { Method::POST } else { Method::GET };
            let view = RequestView {
                host,
                path,
                method: &method,
                headers: &headers,
                query,
                client_ip: client.parse().unwrap(),
            };
            let found = router.find(&view);
            let explained = router.explain(&view);
            prop_assert_eq!(found.priority, explained.matched.priority);
            // Every miss explained is a rule before the match, in priority order.
            let before = match found.priority {
                Priority::Rule(p) => router.rules().iter().filter(|r| r.priority < p).count(),
                Priority::Default => router.rules().len(),
            };
            prop_assert_eq!(explained.misses.len(), before);
            // The rules find tests are among those explain tests (every rule before the match,
            // and the match), and include the match.
            let (counted, evaluated) = router.find_counted(&view);
            prop_assert_eq!(counted.priority, found.priority);
            let matched = usize::from(found.priority != Priority::Default);
            prop_assert!(evaluated as usize <= before + matched, "{} > {}", evaluated, before + matched);
            prop_assert!(evaluated as usize >= matched);
        }
    }
}
