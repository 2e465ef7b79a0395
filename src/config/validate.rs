//! Raw configuration → validated, typed [`Config`]. Every value and cross-reference is checked here,
//! and every problem is collected, so that a user fixes a file in one pass rather than one error at a
//! time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

use super::{
    ConfigError, ConfigErrors, Environment, RawAccessLog, RawAction, RawClientAuth, RawConfig,
    RawDiscovery, RawEcs, RawForward, RawHealthCheck, RawListener, RawMatch, RawRedirect,
    RawStickiness, RawTargetGroup, Source, ENV_PREFIX,
};
use crate::access_log;
use crate::balancer::Algorithm;
use crate::discovery::ecs;
use crate::logging::LogFormat;
use crate::protocol::{Protocol, ProtocolVersion, UnknownValue};
use crate::routing::{
    Conditions, HeaderCondition, IpNet, QueryPattern, RedirectError, RedirectTemplate, Wildcard,
};
use crate::server::framing::Mitigation;
use crate::stickiness::{self, TargetStickiness};
use crate::targets::{HealthCheck, Matcher};
use crate::tls;

/// A configuration whose values have all been checked. Certificates are not read yet: that is the
/// compile step's job, so that `validate` stays pure.
#[derive(Debug, Clone)]
pub struct Config {
    pub admin: Option<AdminConfig>,
    pub runtime: RuntimeConfig,
    pub certificates: Vec<CertificateConfig>,
    pub listeners: Vec<ListenerConfig>,
    pub target_groups: Vec<TargetGroupConfig>,
    /// `[access_log]`; `None`: off.
    pub access_log: Option<access_log::Settings>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    /// When set, the admin API's mutating endpoints need it as a bearer token.
    pub token: Option<Secret>,
}

/// A value that must not reach a log: its `Debug` output hides it, so that printing a
/// configuration does not leak it. The admin side turns it into its token.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The most `runtime.max_connections` can be.
pub const MAX_CONNECTIONS: usize = 100_000_000;

/// The most `runtime.http2_max_concurrent_streams` can be: each stream is a request task that may
/// hold a target connection and its buffers.
pub const MAX_HTTP2_STREAMS: u32 = 10_000;
/// The most `runtime.http2_max_resets_per_second` can be.
pub const MAX_HTTP2_RESETS: u32 = 1_000_000;

/// ALB's default quota of rules per listener.
pub const DEFAULT_MAX_RULES: usize = 100;
/// The most `runtime.max_rules_per_listener` can be: one rule per priority.
pub const MAX_RULES: usize = 50_000;

/// `[runtime]`, with the defaults of CONFIG.md.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Data-plane threads; 0 = one per core.
    pub workers: usize,
    /// A connection with no request in flight is closed after this (keep-alive gaps included).
    pub idle_timeout: Duration,
    /// From a request head's first byte to its end; then 408.
    pub header_timeout: Duration,
    /// From accept to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// Graceful shutdown: in-flight requests get this long to finish.
    pub drain_timeout: Duration,
    pub max_header_bytes: usize,
    /// Open client connections per listener; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Streams one HTTP/2 client connection may have open at once (ALB's 128); more are refused.
    pub http2_max_concurrent_streams: u32,
    /// How fast an HTTP/2 client may cancel streams before their answers begin, beyond a burst
    /// of `http2_max_concurrent_streams`; faster, and its connection is closed.
    pub http2_max_resets_per_second: u32,
    /// The binary a zero-downtime upgrade starts.
    pub binary: PathBuf,
    /// The secret stickiness cookies are sealed under; `None`: the process's own random key.
    pub cookie_key: Option<Secret>,
    /// ALB's quota of rules per listener (100), which a file may raise.
    pub max_rules_per_listener: usize,
    /// How the application log is written, unless `--log-format` says otherwise. Read at start
    /// only: a reload that changes it is reported as needing a restart.
    pub log_format: LogFormat,
    /// What is done with requests by their desync classification, on listeners that do not
    /// say otherwise.
    pub desync_mitigation: Mitigation,
}

impl RuntimeConfig {
    /// The data-plane threads `workers` asks for: 0 is one per core.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Every default of CONFIG.md; `binary`'s is the running one, which only loading can know.
    pub fn with_defaults(binary: PathBuf) -> Self {
        RuntimeConfig {
            workers: 0,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            max_header_bytes: 65536,
            max_connections: 100_000,
            http2_max_concurrent_streams: 128,
            http2_max_resets_per_second: 100,
            binary,
            cookie_key: None,
            max_rules_per_listener: DEFAULT_MAX_RULES,
            log_format: LogFormat::Text,
            desync_mitigation: Mitigation::Defensive,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CertificateConfig {
    pub name: String,
    /// Key path of this entry, for errors raised when it is read.
    pub key_path: String,
    pub source: CertificateSource,
}

#[derive(Debug, Clone)]
pub enum CertificateSource {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: Protocol,
    /// Indexes into `Config::certificates`, in the listener's order (the first is the default).
    pub certificates: Vec<usize>,
    pub tls_policy: tls::Policy,
    /// Offered in this order.
    pub alpn: Vec<tls::Alpn>,
    /// Each connection starts with a PROXY protocol header (v1 or v2) from an L4 balancer.
    pub proxy_protocol: bool,
    /// The largest request body forwarded to a target; a larger one is answered 413. No limit
    /// when unset, as ALB.
    pub max_body_bytes: Option<u64>,
    /// The listener's own mode, or `runtime.desync_mitigation`.
    pub desync_mitigation: Mitigation,
    /// ALB's mutual TLS; `None` asks clients for no certificate.
    pub client_auth: Option<ClientAuthConfig>,
    pub default_action: ActionConfig,
    /// Sorted by priority.
    pub rules: Vec<RuleConfig>,
}

/// A listener's `client_auth`: the mode, and for `verify` the trust store's files (resolved
/// against the config file's folder), which are read when the configuration is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuthConfig {
    Verify { ca: PathBuf, crl: Option<PathBuf> },
    Passthrough,
}

#[derive(Debug, Clone)]
pub struct RuleConfig {
    pub priority: u32,
    pub conditions: Conditions,
    pub action: ActionConfig,
}

#[derive(Debug, Clone)]
pub enum ActionConfig {
    Forward(ForwardConfig),
    FixedResponse {
        status: StatusCode,
        content_type: String,
        body: String,
    },
    Redirect(RedirectTemplate),
}

/// A forward: one group, or several with weights (ALB's weighted forward).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Indexes into `Config::target_groups`, with their weights (1 for a forward to one group).
    pub groups: Vec<(usize, u16)>,
    /// Target group stickiness.
    pub stickiness: Option<Duration>,
}

impl ForwardConfig {
    pub fn to(group: usize) -> Self {
        ForwardConfig {
            groups: vec![(group, 1)],
            stickiness: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TargetGroupConfig {
    pub name: String,
    pub protocol: Protocol,
    pub protocol_version: ProtocolVersion,
    pub algorithm: Algorithm,
    pub targets: Vec<SocketAddr>,
    /// How long a removed target drains before it is dropped and its connections closed.
    pub deregistration_delay: Duration,
    /// Ramp-up of a newly healthy target's share; zero = off.
    pub slow_start: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub health_check: HealthCheck,
    /// Where the group's targets are discovered, besides `targets` and the admin API.
    pub discovery: Option<ecs::Settings>,
    /// Target stickiness; `None`: off.
    pub stickiness: Option<TargetStickiness>,
}

/// Checks a parsed file and gives the typed configuration, or every error found. Pure: what it
/// needs from outside the file (variables, the running binary) comes in `env`.
pub fn validate(src: &Source, raw: RawConfig, env: &Environment) -> Result<Config, ConfigErrors> {
    let mut errs = Vec::new();

    let admin = raw.admin.as_ref().and_then(|a| {
        let token = a
            .token
            .as_deref()
            .and_then(|t| admin_token(src, t, env, &mut errs));
        parse_addr(src, "admin.bind", &a.bind, &mut errs).map(|bind| AdminConfig { bind, token })
    });

    let runtime = runtime(src, &raw, env, &mut errs);
    let access_log = raw
        .access_log
        .as_ref()
        .map(|a| access_log_settings(src, a, &mut errs));

    let mut cert_index = HashMap::new();
    let mut certificates = Vec::new();
    for (i, c) in raw.certificates.iter().enumerate() {
        let path = format!("certificates[{i}]");
        if cert_index.insert(c.name.clone(), i).is_some() {
            errs.push(src.error(
                format!("{path}.name"),
                format!("duplicate certificate name {:?}", c.name),
            ));
        }
        let source = match (&c.cert, &c.key, &c.self_signed) {
            (Some(cert), Some(key), None) => CertificateSource::Files {
                cert: src.resolve(cert),
                key: src.resolve(key),
            },
            (None, None, Some(names)) if !names.is_empty() => {
                CertificateSource::SelfSigned(names.clone())
            }
            _ => {
                errs.push(src.error(
                    path.clone(),
                    "give either `cert` and `key` (PEM files) or `self_signed` (a list of names)",
                ));
                continue;
            }
        };
        certificates.push(CertificateConfig {
            name: c.name.clone(),
            key_path: path,
            source,
        });
    }

    let mut tg_index = HashMap::new();
    let mut target_groups = Vec::new();
    for (i, tg) in raw.target_groups.iter().enumerate() {
        if tg_index.insert(tg.name.clone(), i).is_some() {
            errs.push(src.error(
                format!("target_groups[{i}].name"),
                format!("duplicate target group name {:?}", tg.name),
            ));
        }
        target_groups.push(target_group(src, i, tg, &runtime, &mut errs));
    }

    let mut listeners = Vec::new();
    let mut names = HashSet::new();
    let mut binds = HashMap::new();
    if raw.listeners.is_empty() {
        errs.push(src.error("listeners", "at least one [[listeners]] is needed"));
    }
    for (i, l) in raw.listeners.iter().enumerate() {
        let path = format!("listeners[{i}]");
        if !names.insert(l.name.clone()) {
            errs.push(src.error(
                format!("{path}.name"),
                format!("duplicate listener name {:?}", l.name),
            ));
        }
        let lst = listener(src, &path, l, &cert_index, &tg_index, &runtime, &mut errs);
        if let Some(lst) = lst {
            if lst.bind.port() != 0 {
                if let Some(other) = binds.insert(lst.bind, i) {
                    errs.push(src.error(
                        format!("{path}.bind"),
                        format!("{} is already bound by listeners[{other}]", lst.bind),
                    ));
                }
            }
            listeners.push(lst);
        }
    }

    if errs.is_empty() {
        Ok(Config {
            admin,
            runtime,
            certificates,
            listeners,
            target_groups,
            access_log,
        })
    } else {
        // Reported in file order, which is how a user reads and fixes them.
        errs.sort_by_key(|e| e.line);
        Err(ConfigErrors(errs))
    }
}

/// The most lines `[access_log] buffer_lines` may keep waiting for the writer.
const MAX_BUFFER_LINES: usize = 1 << 20;

fn access_log_settings(
    src: &Source,
    raw: &RawAccessLog,
    errs: &mut Vec<ConfigError>,
) -> access_log::Settings {
    let resolve = |p: &str| src.resolve(p);
    let mut settings = access_log::Settings {
        requests: access_log::destination(raw.path.as_deref().unwrap_or("-"), resolve),
        format: word(
            src,
            "access_log.format".into(),
            raw.format.as_deref(),
            access_log::Format::Alb,
            errs,
        ),
        connections: raw
            .connections_path
            .as_deref()
            .map(|p| access_log::destination(p, resolve)),
        buffer_lines: raw.buffer_lines.unwrap_or(access_log::DEFAULT_BUFFER_LINES),
    };
    for (key, value) in [
        ("access_log.path", raw.path.as_deref()),
        (
            "access_log.connections_path",
            raw.connections_path.as_deref(),
        ),
    ] {
        if value == Some("") {
            errs.push(src.error(key, "give a file, or \"-\" for standard output"));
        }
    }
    if let Some(c) = &settings.connections {
        if access_log::same_destination(c, &settings.requests) {
            errs.push(src.error(
                "access_log.connections_path",
                "the connection log needs a destination of its own: its lines would break the \
                 access log's parsers",
            ));
        }
    }
    if !(1..=MAX_BUFFER_LINES).contains(&settings.buffer_lines) {
        errs.push(src.error(
            "access_log.buffer_lines",
            format!("must be between 1 and {MAX_BUFFER_LINES}"),
        ));
        settings.buffer_lines = access_log::DEFAULT_BUFFER_LINES;
    }
    settings
}

/// `admin.token`: `env:NAME` is taken from the environment read at load, so that the secret need
/// not be written in the file; any other string is the token itself.
fn admin_token(
    src: &Source,
    raw: &str,
    env: &Environment,
    errs: &mut Vec<ConfigError>,
) -> Option<Secret> {
    let value = secret_value(src, "admin.token", raw, env, errs)?;
    // An empty token would let an empty `Bearer` header through; a space or control character
    // could never be sent in one.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        errs.push(src.error(
            "admin.token",
            "the token must be non-empty printable ASCII without spaces",
        ));
        return None;
    }
    Some(Secret(value))
}

/// The shortest `runtime.cookie_key`: 128 bits, if every byte were random.
pub const MIN_COOKIE_KEY_BYTES: usize = 16;

/// `runtime.cookie_key`, read as `admin.token` is: `env:NAME` or the secret itself.
fn cookie_key(
    src: &Source,
    raw: &str,
    env: &Environment,
    errs: &mut Vec<ConfigError>,
) -> Option<Secret> {
    let value = secret_value(src, "runtime.cookie_key", raw, env, errs)?;
    if value.len() < MIN_COOKIE_KEY_BYTES {
        errs.push(src.error(
            "runtime.cookie_key",
            format!(
                "the key is {} bytes; give at least {MIN_COOKIE_KEY_BYTES} (a random string, the same on \
                 every instance that should read the others' stickiness cookies)",
                value.len()
            ),
        ));
        return None;
    }
    Some(Secret(value))
}

/// A secret's value: from the environment for `env:NAME` (read at load, so that the secret need
/// not be written in the file), else the string itself.
fn secret_value(
    src: &Source,
    key: &str,
    raw: &str,
    env: &Environment,
    errs: &mut Vec<ConfigError>,
) -> Option<String> {
    match raw.strip_prefix(ENV_PREFIX) {
        Some("") => {
            errs.push(src.error(key, "\"env:\" needs a variable name"));
            None
        }
        Some(var) => match env.var(var).map(|v| v.to_str()) {
            Some(Some(v)) => Some(v.to_string()),
            None => {
                errs.push(src.error(key, format!("the environment variable {var} is not set")));
                None
            }
            Some(None) => {
                errs.push(src.error(
                    key,
                    format!("the environment variable {var} is not valid UTF-8"),
                ));
                None
            }
        },
        None => Some(raw.to_string()),
    }
}

fn runtime(
    src: &Source,
    raw: &RawConfig,
    env: &Environment,
    errs: &mut Vec<ConfigError>,
) -> RuntimeConfig {
    let r = &raw.runtime;
    let d = RuntimeConfig::with_defaults(env.startup_exe().to_path_buf());
    let mut rt = RuntimeConfig {
        workers: r.workers.unwrap_or(d.workers),
        idle_timeout: r.idle_timeout.map_or(d.idle_timeout, |x| x.0),
        header_timeout: r.header_timeout.map_or(d.header_timeout, |x| x.0),
        handshake_timeout: r.handshake_timeout.map_or(d.handshake_timeout, |x| x.0),
        drain_timeout: r.drain_timeout.map_or(d.drain_timeout, |x| x.0),
        max_header_bytes: r.max_header_bytes.unwrap_or(d.max_header_bytes),
        max_connections: r.max_connections.unwrap_or(d.max_connections),
        http2_max_concurrent_streams: r
            .http2_max_concurrent_streams
            .unwrap_or(d.http2_max_concurrent_streams),
        http2_max_resets_per_second: r
            .http2_max_resets_per_second
            .unwrap_or(d.http2_max_resets_per_second),
        binary: r.binary.as_deref().map_or(d.binary, |b| src.resolve(b)),
        cookie_key: r
            .cookie_key
            .as_deref()
            .and_then(|k| cookie_key(src, k, env, errs)),
        max_rules_per_listener: r.max_rules_per_listener.unwrap_or(d.max_rules_per_listener),
        log_format: word(
            src,
            "runtime.log_format".into(),
            r.log_format.as_deref(),
            d.log_format,
            errs,
        ),
        desync_mitigation: word(
            src,
            "runtime.desync_mitigation".into(),
            r.desync_mitigation.as_deref(),
            d.desync_mitigation,
            errs,
        ),
    };
    for (key, value) in [
        ("idle_timeout", rt.idle_timeout),
        ("header_timeout", rt.header_timeout),
        ("handshake_timeout", rt.handshake_timeout),
    ] {
        if value.is_zero() {
            errs.push(src.error(format!("runtime.{key}"), "must be greater than zero"));
        }
    }
    if rt.workers > 1024 {
        errs.push(src.error("runtime.workers", "at most 1024 workers"));
    }
    // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
    if !(8192..=1 << 20).contains(&rt.max_header_bytes) {
        errs.push(src.error(
            "runtime.max_header_bytes",
            "must be between 8192 and 1048576",
        ));
        rt.max_header_bytes = d.max_header_bytes;
    }
    // The bound is far above what file descriptors allow; it keeps the count a valid semaphore.
    if !(1..=MAX_CONNECTIONS).contains(&rt.max_connections) {
        errs.push(src.error(
            "runtime.max_connections",
            format!("must be between 1 and {MAX_CONNECTIONS}"),
        ));
        rt.max_connections = d.max_connections;
    }
    if !(1..=MAX_HTTP2_STREAMS).contains(&rt.http2_max_concurrent_streams) {
        errs.push(src.error(
            "runtime.http2_max_concurrent_streams",
            format!("must be between 1 and {MAX_HTTP2_STREAMS}"),
        ));
        rt.http2_max_concurrent_streams = d.http2_max_concurrent_streams;
    }
    // Zero would close a connection at its first cancelled stream, which browsers do routinely.
    if !(1..=MAX_HTTP2_RESETS).contains(&rt.http2_max_resets_per_second) {
        errs.push(src.error(
            "runtime.http2_max_resets_per_second",
            format!("must be between 1 and {MAX_HTTP2_RESETS}"),
        ));
        rt.http2_max_resets_per_second = d.http2_max_resets_per_second;
    }
    // ALB's priorities go up to 50 000, so more rules than that could not all be told apart.
    if !(1..=MAX_RULES).contains(&rt.max_rules_per_listener) {
        errs.push(src.error(
            "runtime.max_rules_per_listener",
            format!("must be between 1 and {MAX_RULES}"),
        ));
        rt.max_rules_per_listener = d.max_rules_per_listener;
    }
    rt
}

/// A word of the configuration, parsed by its type's `FromStr`; `default` when the key is absent
/// or the word is unknown (which is reported).
fn word<T: std::str::FromStr<Err = UnknownValue>>(
    src: &Source,
    path: String,
    value: Option<&str>,
    default: T,
    errs: &mut Vec<ConfigError>,
) -> T {
    match value.map(str::parse) {
        None => default,
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            errs.push(src.error(path, e.to_string()));
            default
        }
    }
}

fn target_group(
    src: &Source,
    i: usize,
    tg: &RawTargetGroup,
    rt: &RuntimeConfig,
    errs: &mut Vec<ConfigError>,
) -> TargetGroupConfig {
    let path = format!("target_groups[{i}]");
    let protocol = word(
        src,
        format!("{path}.protocol"),
        tg.protocol.as_deref(),
        Protocol::Http,
        errs,
    );
    let algorithm = word(
        src,
        format!("{path}.algorithm"),
        tg.algorithm.as_deref(),
        Algorithm::RoundRobin,
        errs,
    );
    let protocol_version = word(
        src,
        format!("{path}.protocol_version"),
        tg.protocol_version.as_deref(),
        ProtocolVersion::Http1,
        errs,
    );
    let deregistration_delay = tg
        .deregistration_delay
        .map_or(Duration::from_secs(300), |d| d.0);
    if deregistration_delay > Duration::from_secs(3600) {
        errs.push(src.error(
            format!("{path}.deregistration_delay"),
            "at most 3600s, as ALB allows",
        ));
    }
    let slow_start = tg.slow_start.map_or(Duration::ZERO, |d| d.0);
    if !slow_start.is_zero()
        && !(Duration::from_secs(30)..=Duration::from_secs(900)).contains(&slow_start)
    {
        errs.push(src.error(
            format!("{path}.slow_start"),
            "0s (off) or from 30s to 900s, as ALB allows",
        ));
    }
    if !slow_start.is_zero() && algorithm == Algorithm::LeastOutstandingRequests {
        errs.push(src.error(
            format!("{path}.slow_start"),
            "slow start does not combine with least_outstanding_requests (as in ALB)",
        ));
    }
    let health_check = health_check(
        src,
        &format!("{path}.health_check"),
        tg.health_check.as_ref(),
        protocol,
        protocol_version,
        errs,
    );
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    for (j, t) in tg.targets.iter().enumerate() {
        let tpath = format!("{path}.targets[{j}]");
        if let Some(addr) = parse_addr(src, &tpath, t, errs) {
            if addr.port() == 0 {
                errs.push(src.error(tpath, "a target needs a port"));
            } else if !seen.insert(addr) {
                errs.push(src.error(tpath, format!("target {addr} is listed twice")));
            } else {
                targets.push(addr);
            }
        }
    }
    let connect_timeout = tg.connect_timeout.map_or(Duration::from_secs(10), |d| d.0);
    let response_timeout = tg.response_timeout.map_or(rt.idle_timeout, |d| d.0);
    for (key, v) in [
        ("connect_timeout", connect_timeout),
        ("response_timeout", response_timeout),
    ] {
        if v.is_zero() {
            errs.push(src.error(format!("{path}.{key}"), "must be greater than zero"));
        }
    }
    let discovery = tg
        .discovery
        .as_ref()
        .and_then(|d| discovery(src, &format!("{path}.discovery"), d, errs));
    let stickiness = tg
        .stickiness
        .as_ref()
        .and_then(|s| target_stickiness(src, &format!("{path}.stickiness"), s, errs));
    TargetGroupConfig {
        name: tg.name.clone(),
        protocol,
        protocol_version,
        algorithm,
        targets,
        deregistration_delay,
        slow_start,
        connect_timeout,
        response_timeout,
        health_check,
        discovery,
        stickiness,
    }
}

/// A stickiness duration: from 1s to 7d, as ALB allows.
fn stickiness_duration(
    src: &Source,
    path: String,
    d: Duration,
    errs: &mut Vec<ConfigError>,
) -> Option<Duration> {
    if (stickiness::MIN_DURATION..=stickiness::MAX_DURATION).contains(&d) {
        Some(d)
    } else {
        errs.push(src.error(
            path,
            format!(
                "{} is out of range; stickiness lasts from 1s to 7d, as ALB allows",
                humantime::format_duration(d)
            ),
        ));
        None
    }
}

/// `[target_groups] stickiness`: ALB's lb_cookie or app_cookie.
fn target_stickiness(
    src: &Source,
    path: &str,
    raw: &RawStickiness,
    errs: &mut Vec<ConfigError>,
) -> Option<TargetStickiness> {
    let duration = |default: Option<Duration>, errs: &mut Vec<ConfigError>| {
        let key = format!("{path}.duration");
        match (raw.duration, default) {
            (Some(d), _) => stickiness_duration(src, key, d.0, errs),
            (None, Some(d)) => Some(d),
            (None, None) => {
                errs.push(src.error(key, "an app_cookie stickiness needs a duration (1s..7d)"));
                None
            }
        }
    };
    match raw.kind.as_str() {
        "lb_cookie" => {
            if raw.cookie_name.is_some() {
                errs.push(src.error(
                    format!("{path}.cookie_name"),
                    "only app_cookie stickiness names a cookie; lb_cookie's is AWSALB",
                ));
            }
            let duration = duration(Some(stickiness::DEFAULT_LB_COOKIE_DURATION), errs)?;
            Some(TargetStickiness::LbCookie { duration })
        }
        "app_cookie" => {
            let key = format!("{path}.cookie_name");
            let name = match raw.cookie_name.as_deref() {
                None => {
                    errs.push(src.error(
                        key,
                        "app_cookie stickiness needs the application's cookie_name",
                    ));
                    None
                }
                Some(n) if !stickiness::cookie::is_token(n) => {
                    errs.push(src.error(
                        key,
                        format!("{n:?} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"),
                    ));
                    None
                }
                Some(n)
                    if stickiness::RESERVED_PREFIXES
                        .iter()
                        .any(|p| n.starts_with(p)) =>
                {
                    errs.push(src.error(
                        key,
                        format!("{n:?}: names starting with AWSALB, AWSALBAPP or AWSALBTG are the load balancer's own, as in ALB"),
                    ));
                    None
                }
                Some(n) => Some(n),
            };
            let duration = duration(None, errs);
            Some(TargetStickiness::AppCookie {
                cookie_name: name?.into(),
                duration: duration?,
            })
        }
        other => {
            errs.push(src.error(
                format!("{path}.type"),
                format!(
                    "unknown stickiness type {other:?}; expected \"lb_cookie\" or \"app_cookie\""
                ),
            ));
            None
        }
    }
}

/// `[target_groups.discovery]`: exactly one source.
fn discovery(
    src: &Source,
    path: &str,
    raw: &RawDiscovery,
    errs: &mut Vec<ConfigError>,
) -> Option<ecs::Settings> {
    let Some(e) = &raw.ecs else {
        errs.push(src.error(
            path,
            "name a source of targets: [target_groups.discovery.ecs]",
        ));
        return None;
    };
    let path = format!("{path}.ecs");
    if !cfg!(feature = "ecs") {
        errs.push(src.error(
            path,
            "this seawall was built without ECS discovery (cargo feature `ecs`); \
             build it with its default features to use it",
        ));
        return None;
    }
    ecs_settings(src, &path, e, errs)
}

/// The longest a refresh may be: a task stopped by a deploy must be drained while its container
/// still serves, within its stopTimeout (at most 120 s on ECS).
const MAX_REFRESH: Duration = Duration::from_secs(3600);

fn ecs_settings(
    src: &Source,
    path: &str,
    e: &RawEcs,
    errs: &mut Vec<ConfigError>,
) -> Option<ecs::Settings> {
    let before = errs.len();
    // A name or an ARN: either way one word.
    let word_ok =
        |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if !word_ok(&e.cluster) {
        errs.push(src.error(
            format!("{path}.cluster"),
            "a cluster name or ARN, without spaces",
        ));
    }
    let tasks = match (&e.service, &e.family) {
        (Some(s), None) if word_ok(s) => Some(ecs::Selector::Service(s.clone())),
        (None, Some(f)) if word_ok(f) => Some(ecs::Selector::Family(f.clone())),
        (Some(_), None) => {
            errs.push(src.error(
                format!("{path}.service"),
                "a service name or ARN, without spaces",
            ));
            None
        }
        (None, Some(_)) => {
            errs.push(src.error(
                format!("{path}.family"),
                "a task definition family, without spaces",
            ));
            None
        }
        (Some(_), Some(_)) => {
            errs.push(src.error(
                format!("{path}.family"),
                "give `service` or `family`, not both",
            ));
            None
        }
        (None, None) => {
            errs.push(src.error(
                path,
                "give `service` (the ECS service whose tasks to follow) or `family` (a task definition family)",
            ));
            None
        }
    };
    if !word_ok(&e.container) {
        errs.push(src.error(
            format!("{path}.container"),
            "the container's name in the task definition, without spaces",
        ));
    }
    let container_port = match u16::try_from(e.container_port) {
        Ok(p) if p != 0 => p,
        _ => {
            errs.push(src.error(format!("{path}.container_port"), "a port from 1 to 65535"));
            0
        }
    };
    let refresh = e.refresh.map_or(ecs::Settings::DEFAULT_REFRESH, |d| d.0);
    if !(Duration::from_secs(1)..=MAX_REFRESH).contains(&refresh) {
        errs.push(src.error(
            format!("{path}.refresh"),
            "from 1s (ECS's API rate limits) to 1h",
        ));
    }
    if let Some(r) = &e.region {
        if r.is_empty()
            || !r
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            errs.push(src.error(
                format!("{path}.region"),
                format!("{r:?} is not an AWS region name (like \"us-east-1\")"),
            ));
        }
    }
    if let Some(url) = &e.endpoint {
        if let Err(reason) = endpoint(url) {
            errs.push(src.error(format!("{path}.endpoint"), reason));
        }
    }
    if errs.len() > before {
        return None;
    }
    Some(ecs::Settings {
        cluster: e.cluster.clone(),
        tasks: tasks?,
        container: e.container.clone(),
        container_port,
        refresh,
        region: e.region.clone(),
        endpoint: e.endpoint.clone(),
        healthy_tasks_only: e.healthy_tasks_only.unwrap_or(false),
    })
}

/// An endpoint override: an `http` or `https` URL of a host, with no path beyond `/`.
fn endpoint(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "{url:?}: the URL must start with http:// or https://"
            ))
        }
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(format!("{url:?}: the URL needs a host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "{url:?}: give the endpoint's scheme, host and port only"
        ));
    }
    Ok(())
}

/// `health_check.port`: where checks connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckPort {
    /// `"traffic-port"`: each target's own port.
    Traffic,
    Fixed(NonZeroU16),
}

/// A `health_check.port` that is neither `"traffic-port"` nor a port; shown as the file wrote it.
#[derive(Debug, thiserror::Error)]
#[error("{0} is neither \"traffic-port\" nor a port from 1 to 65535")]
struct BadCheckPort(toml::Value);

impl TryFrom<&toml::Value> for CheckPort {
    type Error = BadCheckPort;

    /// A port may be written as a number or, as ALB's API spells it, a string.
    fn try_from(v: &toml::Value) -> Result<Self, Self::Error> {
        let fixed = match v {
            toml::Value::String(s) if s == "traffic-port" => return Ok(CheckPort::Traffic),
            toml::Value::String(s) => s.parse().ok(),
            toml::Value::Integer(n) => u16::try_from(*n).ok().and_then(NonZeroU16::new),
            _ => None,
        };
        fixed
            .map(CheckPort::Fixed)
            .ok_or_else(|| BadCheckPort(v.clone()))
    }
}

fn health_check(
    src: &Source,
    path: &str,
    raw: Option<&RawHealthCheck>,
    group_protocol: Protocol,
    version: ProtocolVersion,
    errs: &mut Vec<ConfigError>,
) -> HealthCheck {
    let default = RawHealthCheck::default();
    let raw = raw.unwrap_or(&default);
    let grpc = version == ProtocolVersion::Grpc;
    let hc_path = raw
        .path
        .clone()
        .unwrap_or_else(|| if grpc { "/AWS.ALB/healthcheck" } else { "/" }.to_string());
    if !hc_path.starts_with('/') || hc_path.parse::<http::uri::PathAndQuery>().is_err() {
        errs.push(src.error(
            format!("{path}.path"),
            format!("{hc_path:?} is not a path starting with \"/\""),
        ));
    }
    let port = match raw.port.as_ref().map(CheckPort::try_from) {
        None | Some(Ok(CheckPort::Traffic)) => None,
        Some(Ok(CheckPort::Fixed(p))) => Some(p.get()),
        Some(Err(e)) => {
            errs.push(src.error(format!("{path}.port"), e.to_string()));
            None
        }
    };
    let protocol = word(
        src,
        format!("{path}.protocol"),
        raw.protocol.as_deref(),
        group_protocol,
        errs,
    );
    let interval = raw.interval.map_or(Duration::from_secs(30), |d| d.0);
    let timeout = raw.timeout.map_or(Duration::from_secs(5), |d| d.0);
    // Faster than ALB's 5s minimum is allowed, for quick failover and quick tests.
    if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&interval) {
        errs.push(src.error(format!("{path}.interval"), "must be from 100ms to 300s"));
    }
    if !(Duration::from_millis(50)..=Duration::from_secs(120)).contains(&timeout) {
        errs.push(src.error(format!("{path}.timeout"), "must be from 50ms to 120s"));
    } else if timeout >= interval {
        errs.push(src.error(format!("{path}.timeout"), "must be less than the interval"));
    }
    let threshold = |key: &str, value: Option<u32>, default: u32, errs: &mut Vec<ConfigError>| {
        let v = value.unwrap_or(default);
        if !(2..=10).contains(&v) {
            errs.push(src.error(format!("{path}.{key}"), "must be from 2 to 10"));
        }
        v
    };
    let healthy_threshold = threshold("healthy_threshold", raw.healthy_threshold, 5, errs);
    let unhealthy_threshold = threshold("unhealthy_threshold", raw.unhealthy_threshold, 2, errs);
    let (text, low, high) = match (&raw.matcher, grpc) {
        (Some(m), true) => (m.as_str(), 0, 99),
        (Some(m), false) => (m.as_str(), 200, 499),
        (None, true) => ("12", 0, 99),
        (None, false) => ("200", 200, 499),
    };
    let matcher = Matcher::parse(text, low, high).unwrap_or_else(|e| {
        errs.push(src.error(format!("{path}.matcher"), e.to_string()));
        Matcher::parse("200", 200, 499).expect("the default matcher parses")
    });
    HealthCheck {
        path: hc_path,
        port,
        protocol,
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
        matcher,
    }
}

fn listener(
    src: &Source,
    path: &str,
    l: &RawListener,
    certs: &HashMap<String, usize>,
    tgs: &HashMap<String, usize>,
    rt: &RuntimeConfig,
    errs: &mut Vec<ConfigError>,
) -> Option<ListenerConfig> {
    let bind = parse_addr(src, &format!("{path}.bind"), &l.bind, errs);
    let protocol = l
        .protocol
        .parse::<Protocol>()
        .map_err(|e| errs.push(src.error(format!("{path}.protocol"), e.to_string())))
        .ok();

    let mut certificates = Vec::new();
    for (j, name) in l.certificates.iter().enumerate() {
        match certs.get(name) {
            Some(&idx) => certificates.push(idx),
            None => errs.push(src.error(
                format!("{path}.certificates[{j}]"),
                format!("no [[certificates]] is named {name:?}"),
            )),
        }
    }
    let tls_policy = word(
        src,
        format!("{path}.tls_policy"),
        l.tls_policy.as_deref(),
        tls::Policy::Tls13And12,
        errs,
    );
    let alpn = match &l.alpn {
        None => tls::Alpn::DEFAULT.to_vec(),
        Some(words) => words
            .iter()
            .enumerate()
            .filter_map(|(j, w)| {
                w.parse()
                    .map_err(|e: UnknownValue| {
                        errs.push(src.error(format!("{path}.alpn[{j}]"), e.to_string()))
                    })
                    .ok()
            })
            .collect(),
    };
    match protocol {
        Some(Protocol::Https) if l.certificates.is_empty() => errs.push(src.error(
            format!("{path}.certificates"),
            "an https listener needs at least one certificate",
        )),
        Some(Protocol::Http) => {
            for (key, set) in [
                ("certificates", !l.certificates.is_empty()),
                ("tls_policy", l.tls_policy.is_some()),
                ("alpn", l.alpn.is_some()),
                ("client_auth", l.client_auth.is_some()),
            ] {
                if set {
                    errs.push(src.error(
                        format!("{path}.{key}"),
                        "only an https listener takes this key",
                    ));
                }
            }
        }
        _ => {}
    }

    let client_auth = l
        .client_auth
        .as_ref()
        .and_then(|c| client_auth(src, &format!("{path}.client_auth"), c, errs));

    // A redirect is checked against the listener it sits on, to catch spelled-out loops.
    let here = (protocol.unwrap_or(Protocol::Http), bind.map(|b| b.port()));
    let default_action = action(
        src,
        &format!("{path}.default_action"),
        &l.default_action,
        here,
        tgs,
        errs,
    );

    let mut rules = Vec::new();
    let mut priorities: HashMap<i64, usize> = HashMap::new();
    for (j, r) in l.rules.iter().enumerate() {
        let rpath = format!("{path}.rules[{j}]");
        let priority = if !(1..=50_000).contains(&r.priority) {
            errs.push(src.error(
                format!("{rpath}.priority"),
                format!("priority {} is out of range 1..=50000", r.priority),
            ));
            None
        } else if let Some(other) = priorities.insert(r.priority, j) {
            errs.push(src.error(
                format!("{rpath}.priority"),
                format!(
                    "duplicate priority {} (also used by {path}.rules[{other}])",
                    r.priority
                ),
            ));
            None
        } else {
            Some(r.priority as u32)
        };
        let conditions = conditions(src, &format!("{rpath}.match"), &r.conditions, errs);
        let act = action(src, &format!("{rpath}.action"), &r.action, here, tgs, errs);
        if let (Some(priority), Some(action)) = (priority, act) {
            rules.push(RuleConfig {
                priority,
                conditions,
                action,
            });
        }
    }
    rules.sort_by_key(|r| r.priority);
    let max_body_bytes = match l.max_body_bytes {
        Some(0) => {
            errs.push(src.error(
                format!("{path}.max_body_bytes"),
                "must be at least 1 (leave it out for no limit)".to_string(),
            ));
            None
        }
        n => n,
    };
    if l.rules.len() > rt.max_rules_per_listener {
        errs.push(src.error(
            format!("{path}.rules"),
            format!(
                "{} rules; a listener has at most {} (ALB's quota; raise it with runtime.max_rules_per_listener)",
                l.rules.len(),
                rt.max_rules_per_listener
            ),
        ));
    }

    Some(ListenerConfig {
        name: l.name.clone(),
        bind: bind?,
        protocol: protocol?,
        certificates,
        tls_policy,
        alpn,
        proxy_protocol: l.proxy_protocol,
        max_body_bytes,
        desync_mitigation: word(
            src,
            format!("{path}.desync_mitigation"),
            l.desync_mitigation.as_deref(),
            rt.desync_mitigation,
            errs,
        ),
        client_auth,
        default_action: default_action?,
        rules,
    })
}

/// `client_auth = { mode, ca, crl }`: verify needs a CA file; passthrough judges nothing, so a
/// CA or CRL given with it would be a promise it does not keep.
fn client_auth(
    src: &Source,
    path: &str,
    c: &RawClientAuth,
    errs: &mut Vec<ConfigError>,
) -> Option<ClientAuthConfig> {
    match c.mode.as_str() {
        "verify" => match &c.ca {
            Some(ca) => Some(ClientAuthConfig::Verify {
                ca: src.resolve(ca),
                crl: c.crl.as_deref().map(|p| src.resolve(p)),
            }),
            None => {
                errs.push(src.error(
                    format!("{path}.mode"),
                    "mode = \"verify\" needs `ca`: the PEM file of the CA certificates that client certificates must chain to",
                ));
                None
            }
        },
        "passthrough" => {
            for (key, set) in [("ca", c.ca.is_some()), ("crl", c.crl.is_some())] {
                if set {
                    errs.push(src.error(
                        format!("{path}.{key}"),
                        "passthrough verifies nothing; `ca` and `crl` belong to mode = \"verify\"",
                    ));
                }
            }
            Some(ClientAuthConfig::Passthrough)
        }
        other => {
            errs.push(src.error(
                format!("{path}.mode"),
                format!("unknown mode {other:?}; expected \"verify\" or \"passthrough\""),
            ));
            None
        }
    }
}

/// ALB's quotas on a rule's conditions.
const MAX_VALUES_PER_CONDITION: usize = 3;
const MAX_VALUES_PER_RULE: usize = 5;
const MAX_WILDCARDS_PER_RULE: usize = 5;
/// ALB's limit on a method name and on a header name.
const MAX_TOKEN_LEN: usize = 40;

/// `match = { ... }`: every condition compiled, and ALB's quotas checked. Each header name is a
/// condition of its own (ALB's `http-header` has one name); the query table's key/value pairs
/// are the values of one condition. Wildcards are counted per value, a query key once per pair.
fn conditions(src: &Source, path: &str, m: &RawMatch, errs: &mut Vec<ConfigError>) -> Conditions {
    let mut values = 0;
    let mut count = |key: &str, n: usize, errs: &mut Vec<ConfigError>| {
        if n > MAX_VALUES_PER_CONDITION {
            errs.push(src.error(
                key,
                format!(
                    "{n} values; a condition has at most {MAX_VALUES_PER_CONDITION} (ALB's quota)"
                ),
            ));
        }
        values += n;
    };

    let key = format!("{path}.host");
    let host = patterns(
        src,
        &key,
        m.host.as_deref(),
        Wildcard::case_insensitive,
        errs,
    );
    count(&key, m.host.as_ref().map_or(0, Vec::len), errs);
    let key = format!("{path}.path");
    let paths = patterns(src, &key, m.path.as_deref(), Wildcard::case_sensitive, errs);
    count(&key, m.path.as_ref().map_or(0, Vec::len), errs);

    let mut method = Vec::new();
    if let Some(list) = &m.method {
        let key = format!("{path}.method");
        if list.is_empty() {
            errs.push(src.error(&key, "give at least one value"));
        }
        count(&key, list.len(), errs);
        for (k, v) in list.iter().enumerate() {
            let ok = !v.is_empty()
                && v.len() <= MAX_TOKEN_LEN
                && v.bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-');
            match http::Method::from_bytes(v.as_bytes()) {
                Ok(m) if ok => method.push(m),
                _ => errs.push(src.error(
                    format!("{key}[{k}]"),
                    format!("{v:?}: a method is A-Z, \"_\" and \"-\", at most {MAX_TOKEN_LEN} characters, as ALB allows (methods match exactly: write GET, not get)"),
                )),
            }
        }
    }

    let mut headers = Vec::new();
    if let Some(table) = &m.header {
        if table.is_empty() {
            errs.push(src.error(format!("{path}.header"), "give at least one header"));
        }
        for (name, list) in table {
            let key = format!("{path}.header.{name}");
            let valid = name.len() <= MAX_TOKEN_LEN && !name.contains(['*', '?']);
            let header_name = http::HeaderName::from_bytes(name.as_bytes())
                .ok()
                .filter(|_| valid);
            if header_name.is_none() {
                errs.push(src.error(
                    &key,
                    format!("{name:?} is not a header name (letters, digits and !#$%&'+-.^_`|~, at most {MAX_TOKEN_LEN} characters, no wildcards)"),
                ));
            }
            let values = patterns(src, &key, Some(list), Wildcard::header_value, errs);
            count(&key, list.len(), errs);
            if let Some(name) = header_name {
                headers.push(HeaderCondition {
                    name,
                    values: values.into(),
                });
            }
        }
    }

    let mut query = Vec::new();
    if let Some(table) = &m.query {
        let key = format!("{path}.query");
        let pairs: usize = table.values().map(Vec::len).sum();
        if pairs == 0 {
            errs.push(src.error(&key, "give at least one value"));
        }
        count(&key, pairs, errs);
        for (k, list) in table {
            // The empty key is ALB's key-less entry, written `""` in TOML.
            let kpath = if k.is_empty() {
                format!("{key}.\"\"")
            } else {
                format!("{key}.{k}")
            };
            let qkey = if k.is_empty() {
                None
            } else {
                match Wildcard::query(k) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        errs.push(src.error(&kpath, format!("key {k:?}: {e}")));
                        continue;
                    }
                }
            };
            for value in patterns(src, &kpath, Some(list), Wildcard::query, errs) {
                query.push(QueryPattern {
                    key: qkey.clone(),
                    value,
                });
            }
        }
    }

    let mut source_ip = Vec::new();
    if let Some(list) = &m.source_ip {
        let key = format!("{path}.source_ip");
        if list.is_empty() {
            errs.push(src.error(&key, "give at least one value"));
        }
        count(&key, list.len(), errs);
        for (k, v) in list.iter().enumerate() {
            match v.parse::<IpNet>() {
                Ok(net) if net.trunc() == net => source_ip.push(net),
                Ok(net) => errs.push(src.error(
                    format!("{key}[{k}]"),
                    format!(
                        "{v:?} has host bits set; the network is {} (or write /{} for the one address)",
                        net.trunc(),
                        net.max_prefix_len()
                    ),
                )),
                Err(_) => errs.push(src.error(
                    format!("{key}[{k}]"),
                    format!("{v:?} is not a CIDR block like \"10.0.0.0/8\" or \"fd00::/8\""),
                )),
            }
        }
    }

    let conditions = Conditions {
        host: host.into(),
        path: paths.into(),
        method: method.into(),
        headers: headers.into(),
        query: query.into(),
        source_ip: source_ip.into(),
    };
    let any_given = m.host.is_some()
        || m.path.is_some()
        || m.header.is_some()
        || m.method.is_some()
        || m.query.is_some()
        || m.source_ip.is_some();
    if !any_given {
        errs.push(src.error(
            path,
            "a rule needs at least one condition (host, path, header, method, query or source_ip); use default_action to match everything",
        ));
    }
    if values > MAX_VALUES_PER_RULE {
        errs.push(src.error(
            path,
            format!(
                "{values} condition values; a rule has at most {MAX_VALUES_PER_RULE} (ALB's quota)"
            ),
        ));
    }
    let wildcards = conditions
        .host
        .iter()
        .map(Wildcard::wildcards)
        .sum::<usize>()
        + conditions
            .path
            .iter()
            .map(Wildcard::wildcards)
            .sum::<usize>()
        + conditions
            .headers
            .iter()
            .flat_map(|h| h.values.iter())
            .map(Wildcard::wildcards)
            .sum::<usize>()
        + conditions
            .query
            .iter()
            .map(|q| q.value.wildcards() + q.key.as_ref().map_or(0, Wildcard::wildcards))
            .sum::<usize>();
    if wildcards > MAX_WILDCARDS_PER_RULE {
        errs.push(src.error(
            path,
            format!("{wildcards} wildcards (* and ?); a rule has at most {MAX_WILDCARDS_PER_RULE} (ALB's quota)"),
        ));
    }
    conditions
}

/// A condition's list of wildcard patterns; each bad one is reported by its index.
fn patterns<E: std::fmt::Display>(
    src: &Source,
    path: &str,
    values: Option<&[String]>,
    compile: impl Fn(&str) -> Result<Wildcard, E>,
    errs: &mut Vec<ConfigError>,
) -> Vec<Wildcard> {
    let Some(values) = values else {
        return Vec::new();
    };
    if values.is_empty() {
        errs.push(src.error(path, "give at least one value"));
    }
    values
        .iter()
        .enumerate()
        .filter_map(|(k, v)| match compile(v) {
            Ok(w) => Some(w),
            Err(e) => {
                errs.push(src.error(format!("{path}[{k}]"), format!("{v:?}: {e}")));
                None
            }
        })
        .collect()
}

fn action(
    src: &Source,
    path: &str,
    a: &RawAction,
    listener: (Protocol, Option<u16>),
    tgs: &HashMap<String, usize>,
    errs: &mut Vec<ConfigError>,
) -> Option<ActionConfig> {
    let set = [
        a.forward.is_some(),
        a.fixed_response.is_some(),
        a.redirect.is_some(),
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    if set != 1 {
        errs.push(src.error(
            path,
            "an action is exactly one of `forward`, `fixed_response` or `redirect`",
        ));
        return None;
    }
    if let Some(f) = &a.forward {
        return forward(src, &format!("{path}.forward"), f, tgs, errs).map(ActionConfig::Forward);
    }
    if let Some(f) = &a.fixed_response {
        let status = match StatusCode::from_u16(f.status) {
            Ok(s) if s.is_success() || s.is_client_error() || s.is_server_error() => Some(s),
            _ => {
                errs.push(src.error(
                    format!("{path}.fixed_response.status"),
                    format!("status {} is not a 2XX, 4XX or 5XX code", f.status),
                ));
                None
            }
        };
        let content_type = f
            .content_type
            .clone()
            .unwrap_or_else(|| "text/plain; charset=utf-8".into());
        if !fixed_content_type(&content_type) {
            errs.push(src.error(
                format!("{path}.fixed_response.content_type"),
                format!(
                    "{content_type:?} is not one of ALB's content types: {} (optionally with \"; charset=utf-8\")",
                    FIXED_CONTENT_TYPES.join(", ")
                ),
            ));
        }
        if f.body.len() > MAX_FIXED_BODY {
            errs.push(src.error(
                format!("{path}.fixed_response.body"),
                format!(
                    "the body is {} bytes; ALB's limit is {MAX_FIXED_BODY}",
                    f.body.len()
                ),
            ));
        }
        return Some(ActionConfig::FixedResponse {
            status: status?,
            content_type,
            body: f.body.clone(),
        });
    }
    let r = a.redirect.as_ref()?;
    redirect(src, &format!("{path}.redirect"), r, listener, errs)
}

/// ALB's fixed-response content types.
const FIXED_CONTENT_TYPES: [&str; 5] = [
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];

/// ALB's largest fixed-response body.
const MAX_FIXED_BODY: usize = 1024;

/// One of ALB's five types, as ALB takes them, or with the charset seawall's own default names
/// (the body is TOML text, so UTF-8 is the only charset it can be in).
fn fixed_content_type(value: &str) -> bool {
    let value = value.to_ascii_lowercase();
    let (media, params) = match value.split_once(';') {
        Some((media, params)) => (media.trim(), Some(params.trim())),
        None => (value.trim(), None),
    };
    FIXED_CONTENT_TYPES.contains(&media) && matches!(params, None | Some("charset=utf-8"))
}

/// ALB's quota of target groups in one forward.
pub const MAX_FORWARD_GROUPS: usize = 5;
/// ALB's highest weight.
pub const MAX_WEIGHT: u16 = 999;

/// A forward to one group, or ALB's weighted forward. Every weight may be 0, as in ALB: the
/// forward then takes no new clients and answers 503, while clients that a group's stickiness
/// holds keep going to it (the last step of a drain-out, or a maintenance window).
fn forward(
    src: &Source,
    path: &str,
    f: &RawForward,
    tgs: &HashMap<String, usize>,
    errs: &mut Vec<ConfigError>,
) -> Option<ForwardConfig> {
    let group = |key: String, name: &str, errs: &mut Vec<ConfigError>| match tgs.get(name) {
        Some(&i) => Some(i),
        None => {
            errs.push(src.error(key, format!("no [[target_groups]] is named {name:?}")));
            None
        }
    };
    let w = match f {
        RawForward::Group(name) => {
            return group(path.to_string(), name, errs).map(ForwardConfig::to);
        }
        RawForward::Weighted(w) => w,
    };
    let before = errs.len();
    if !(1..=MAX_FORWARD_GROUPS).contains(&w.groups.len()) {
        errs.push(src.error(
            format!("{path}.groups"),
            format!(
                "a forward names from 1 to {MAX_FORWARD_GROUPS} target groups (ALB's quota); this one names {}",
                w.groups.len()
            ),
        ));
    }
    let mut groups = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (j, g) in w.groups.iter().enumerate() {
        let gpath = format!("{path}.groups[{j}]");
        if let Some(first) = seen.insert(&g.name, j) {
            errs.push(src.error(
                format!("{gpath}.name"),
                format!(
                    "target group {:?} is already in this forward ({path}.groups[{first}])",
                    g.name
                ),
            ));
            continue;
        }
        let weight = match u16::try_from(g.weight) {
            Ok(w) if w <= MAX_WEIGHT => Some(w),
            _ => {
                errs.push(src.error(
                    format!("{gpath}.weight"),
                    format!(
                        "weight {} is out of range 0..=999 (0 sends the group no new clients)",
                        g.weight
                    ),
                ));
                None
            }
        };
        if let (Some(i), Some(weight)) = (group(format!("{gpath}.name"), &g.name, errs), weight) {
            groups.push((i, weight));
        }
    }
    let stickiness = w
        .stickiness
        .and_then(|d| stickiness_duration(src, format!("{path}.stickiness"), d.0, errs));
    (errs.len() == before).then_some(ForwardConfig { groups, stickiness })
}

fn redirect(
    src: &Source,
    path: &str,
    r: &RawRedirect,
    (protocol, port): (Protocol, Option<u16>),
    errs: &mut Vec<ConfigError>,
) -> Option<ActionConfig> {
    match RedirectTemplate::compile(
        r.protocol.as_deref(),
        r.host.as_deref(),
        r.port.as_deref(),
        r.path.as_deref(),
        r.query.as_deref(),
        r.status,
    ) {
        Ok(t) if t.loops_on(Some(protocol.as_str()), port.filter(|&p| p != 0)) => {
            errs.push(src.error(path, RedirectError::Loop.to_string()));
            None
        }
        Ok(t) => Some(ActionConfig::Redirect(t)),
        Err(e) => {
            let key = match e.field() {
                Some(field) => format!("{path}.{field}"),
                None => path.to_string(),
            };
            errs.push(src.error(key, e.to_string()));
            None
        }
    }
}

fn parse_addr(
    src: &Source,
    path: &str,
    value: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<SocketAddr> {
    match value.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(src.error(
                path,
                format!("{value:?} is not an address like \"127.0.0.1:8080\" or \"[::1]:8080\""),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests;
