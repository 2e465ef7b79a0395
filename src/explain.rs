//! `seawall route FILE URL`: which rule of a configuration a request would match, why each rule
//! before it did not, and what the matched action would do, without binding anything.
//!
//! It sits beside [`app`](crate::app) at the composition level: it loads the file as `seawall
//! check` does, then asks the compiled [`Router`](crate::routing::Router) of the listener the
//! URL's scheme and port name for an [`Explanation`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::Args;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::Serialize;

use crate::config::{self, compile::load_and_compile, ConfigErrors, Source};
use crate::protocol::Protocol;
use crate::routing::{Action, Explanation, Priority, RedirectRequest, RequestView};
use crate::secrets::Secrets;
use crate::snapshot::Compiled;

/// Show which rule of a configuration a request would match, why the rules before it did not,
/// and what the matched action does. Binds nothing.
#[derive(Debug, Clone, Args)]
pub struct RouteArgs {
    /// Configuration file (TOML).
    pub file: PathBuf,
    /// The request: http:// or https://, host, optional port (picks the listener), path, query.
    pub url: String,
    /// Request method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    pub method: String,
    /// A request header, `name: value`; repeat for several (a `Host` header replaces the URL's
    /// host for host conditions).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The client address that `source_ip` conditions see.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub source_ip: IpAddr,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Why `seawall route` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The file does not load, validate or compile: printed as `seawall check` prints it.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("{url:?} is not an http:// or https:// URL with a host: {reason}")]
    Url { url: String, reason: String },
    #[error("-H {0:?}: write a header as \"name: value\"")]
    Header(String),
    #[error("-X {0:?} is not an HTTP method")]
    Method(String),
    #[error("no {protocol} listener binds port {port}; the file's listeners: {listeners}")]
    NoListener {
        protocol: &'static str,
        port: u16,
        listeners: String,
    },
}

/// The configuration is wrong: as `seawall check` (DESIGN.md's exit 64).
pub const EXIT_CONFIG: u8 = 64;
/// The command line is wrong (a bad URL, header or method, or no listener for the URL): the
/// exit code clap gives a usage error.
pub const EXIT_USAGE: u8 = 2;

impl RouteError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RouteError::Config(_) => EXIT_CONFIG,
            _ => EXIT_USAGE,
        }
    }
}

/// Everything `seawall route` prints, as text or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub listener: ListenerReport,
    pub request: RequestReport,
    /// Each rule before the match, in priority order, with the first condition it failed.
    pub misses: Vec<MissReport>,
    /// The matched rule's priority; `None`: the default action.
    pub matched_rule: Option<u32>,
    pub action: ActionReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListenerReport {
    pub name: String,
    pub protocol: &'static str,
    pub bind: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestReport {
    pub method: String,
    pub host: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<HeaderReport>,
    pub source_ip: IpAddr,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeaderReport {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MissReport {
    pub priority: u32,
    pub condition: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionReport {
    Forward {
        groups: Vec<GroupReport>,
        /// Target group stickiness, as a duration (`"1h"`); `None`: off.
        stickiness: Option<String>,
    },
    FixedResponse {
        status: u16,
        content_type: String,
        body: String,
    },
    Redirect {
        status: u16,
        location: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub name: String,
    pub weight: u16,
    /// The targets the file lists.
    pub targets: Vec<String>,
    /// Where more targets are discovered at run time (`ecs:cluster/service:name`).
    pub discovery: Option<String>,
}

/// The request the command line describes, owned so that a [`RequestView`] can borrow it.
struct Request {
    https: bool,
    port: u16,
    host: String,
    path: String,
    query: String,
    method: Method,
    headers: HeaderMap,
    source_ip: IpAddr,
}

impl Request {
    fn parse(args: &RouteArgs) -> Result<Request, RouteError> {
        let bad_url = |reason: &str| RouteError::Url {
            url: args.url.clone(),
            reason: reason.to_string(),
        };
        let uri: Uri = args
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad_url(&e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad_url("the scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad_url("no host"))?;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let method = Method::from_bytes(args.method.as_bytes())
            .map_err(|_| RouteError::Method(args.method.clone()))?;
        let mut headers = HeaderMap::new();
        for h in &args.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| RouteError::Header(h.clone()))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| RouteError::Header(h.clone()))?;
            let value =
                HeaderValue::from_str(value.trim()).map_err(|_| RouteError::Header(h.clone()))?;
            headers.append(name, value);
        }
        // As the proxy does for HTTP/1.1: the Host header names the host, without its port.
        let host = match headers.get(http::header::HOST).map(|h| h.to_str()) {
            Some(Ok(h)) => strip_port(h).to_string(),
            Some(Err(_)) => return Err(RouteError::Header("Host".into())),
            None => authority.host().to_string(),
        };
        Ok(Request {
            https,
            port,
            host,
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
            method,
            headers,
            source_ip: args.source_ip,
        })
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            host: &self.host,
            path: &self.path,
            method: &self.method,
            headers: &self.headers,
            query: &self.query,
            client_ip: self.source_ip,
        }
    }
}

/// `host:port` → `host`; an IPv6 literal keeps its brackets.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[..i].contains(':') || host[..i].ends_with(']') => &host[..i],
        _ => host,
    }
}

/// Loads, validates and compiles `args.file` as `seawall check` does, then explains the request.
pub fn route(args: &RouteArgs) -> Result<Report, RouteError> {
    let req = Request::parse(args)?;
    let source = Source::read(&args.file)?;
    let cfg = config::load(&source)?;
    // Keys of its own: nothing is served, so no cookie or ticket is ever sealed with them.
    let compiled = load_and_compile(&source, &cfg, &Secrets::generate())?;
    report(&cfg, &compiled, &req)
}

fn report(cfg: &config::Config, compiled: &Compiled, req: &Request) -> Result<Report, RouteError> {
    let protocol = if req.https {
        Protocol::Https
    } else {
        Protocol::Http
    };
    let listener = compiled
        .listeners
        .iter()
        .find(|l| l.protocol == protocol && l.bind.port() == req.port)
        .ok_or_else(|| RouteError::NoListener {
            protocol: protocol.as_str(),
            port: req.port,
            listeners: compiled
                .listeners
                .iter()
                .map(|l| format!("{} ({} {})", l.name, l.protocol.as_str(), l.bind))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let view = req.view();
    let Explanation { misses, matched } = listener.router.explain(&view);
    let action = match matched.action {
        Action::Forward(f) => ActionReport::Forward {
            groups: f
                .groups
                .iter()
                .map(|g| GroupReport {
                    name: compiled.target_groups[g.group.0].settings.name.to_string(),
                    weight: g.weight,
                    targets: compiled.target_groups[g.group.0]
                        .configured_targets
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    discovery: cfg.target_groups[g.group.0]
                        .discovery
                        .as_ref()
                        .map(|d| d.describe()),
                })
                .collect(),
            stickiness: f
                .stickiness
                .map(|d| humantime::format_duration(d).to_string()),
        },
        Action::FixedResponse(f) => ActionReport::FixedResponse {
            status: f.status.as_u16(),
            content_type: String::from_utf8_lossy(f.content_type.as_bytes()).into_owned(),
            body: String::from_utf8_lossy(&f.body).into_owned(),
        },
        Action::Redirect(t) => ActionReport::Redirect {
            status: t.status.as_u16(),
            location: t.location(&RedirectRequest {
                protocol: protocol.as_str(),
                host: &req.host,
                port: req.port,
                path: &req.path,
                query: &req.query,
            }),
        },
    };
    Ok(Report {
        listener: ListenerReport {
            name: listener.name.to_string(),
            protocol: protocol.as_str(),
            bind: listener.bind.to_string(),
        },
        request: RequestReport {
            method: req.method.to_string(),
            host: req.host.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers: req
                .headers
                .iter()
                .map(|(n, v)| HeaderReport {
                    name: n.to_string(),
                    value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
                })
                .collect(),
            source_ip: req.source_ip,
        },
        misses: misses
            .into_iter()
            .map(|m| MissReport {
                priority: m.priority,
                condition: m.condition.name(),
                reason: m.reason,
            })
            .collect(),
        matched_rule: match matched.priority {
            Priority::Rule(p) => Some(p),
            Priority::Default => None,
        },
        action,
    })
}

impl Report {
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let r = &self.request;
        let _ = writeln!(
            out,
            "listener {} ({} on {})",
            self.listener.name, self.listener.protocol, self.listener.bind
        );
        let query = if r.query.is_empty() {
            String::new()
        } else {
            format!("?{}", r.query)
        };
        let _ = writeln!(
            out,
            "request  {} host {:?} path {}{} from {}",
            r.method, r.host, r.path, query, r.source_ip
        );
        for h in &r.headers {
            let _ = writeln!(out, "         {}: {}", h.name, h.value);
        }
        for m in &self.misses {
            let _ = writeln!(out, "rule {}: no match: {}", m.priority, m.reason);
        }
        match self.matched_rule {
            Some(p) => {
                let _ = writeln!(out, "rule {p}: matched");
            }
            None => {
                let _ = writeln!(out, "no rule matched: the default action");
            }
        }
        match &self.action {
            ActionReport::Forward { groups, stickiness } => {
                let _ = writeln!(out, "action   forward");
                for g in groups {
                    let _ = writeln!(out, "  group {} (weight {})", g.name, g.weight);
                    if g.targets.is_empty() {
                        let _ = writeln!(out, "    no targets in the file");
                    }
                    for t in &g.targets {
                        let _ = writeln!(out, "    target {t}");
                    }
                    if let Some(d) = &g.discovery {
                        let _ = writeln!(out, "    targets discovered from {d}");
                    }
                }
                if let Some(s) = stickiness {
                    let _ = writeln!(out, "  group stickiness {s}");
                }
            }
            ActionReport::FixedResponse {
                status,
                content_type,
                body,
            } => {
                let _ = writeln!(
                    out,
                    "action   fixed response {status} ({content_type}): {body:?}"
                );
            }
            ActionReport::Redirect { status, location } => {
                let _ = writeln!(out, "action   redirect {status} to {location}");
            }
        }
        out
    }
}
