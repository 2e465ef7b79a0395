//! The command line of `seawall bench`, and the [`Plan`] checked from it before any connection.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

/// Load an HTTP or HTTPS endpoint and report requests/s, handshakes/s, latency percentiles, and
/// status and error counts.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The URL to load: `https://host[:port]/path` or `http://host[:port]/path`.
    pub url: String,

    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 16)]
    pub connections: usize,
    /// Threads, each with its own single-threaded runtime; connections are spread over them.
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// How long to run ("5s", "500ms"; a bare number is seconds). The default is 10s unless
    /// --requests is given.
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many requests (whichever of --duration and --requests comes first).
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Open loop: send this many requests per second in all, each at its scheduled time, and
    /// measure latency from that time, so that a stalled server shows as queueing latency.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The deadline of every connect, handshake and request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// A new connection, with its TLS handshake, for every request.
    #[arg(long)]
    pub new_connection: bool,
    /// HTTP/2 (ALPN h2; prior knowledge on http:// URLs).
    #[arg(long)]
    pub h2: bool,
    /// Concurrent HTTP/2 streams per connection.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Resume TLS sessions (session tickets or IDs) on new connections. Without it every handshake
    /// is a full one.
    #[arg(long)]
    pub resume: bool,
    /// Offer only this TLS version: 1.2 or 1.3.
    #[arg(long, value_parser = ["1.2", "1.3"])]
    pub tls: Option<String>,
    /// Offer only this cipher suite (rustls or IANA name, e.g. TLS13_AES_128_GCM_SHA256,
    /// TLS_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256).
    #[arg(long)]
    pub cipher: Option<String>,
    /// Offer only this key-exchange group: x25519, secp256r1, secp384r1 (or X25519MLKEM768).
    #[arg(long)]
    pub group: Option<String>,
    /// Accept any server certificate.
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Trust the certificates in this PEM file (instead of --insecure).
    #[arg(long, conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// The TLS server name to send (default: the URL's host, unless it is an IP address).
    #[arg(long)]
    pub sni: Option<String>,

    /// Request method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// A request header, "Name: value"; repeatable.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body read from a file.
    #[arg(long)]
    pub body_file: Option<PathBuf>,

    /// Print the report as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("bad URL {0:?}: expected http://host[:port]/path or https://host[:port]/path")]
    Url(String),
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("bad header {0:?}: expected \"Name: value\"")]
    Header(String),
    #[error("bad method {0:?}")]
    Method(String),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(&'static str),
}

/// Checked options: everything a connection driver needs, resolved once.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The TLS server name: a DNS name, or the IP address (sent without SNI).
    pub server_name: String,
    /// The `Host` header (HTTP/1.1) or `:authority` (HTTP/2).
    pub authority: String,
    pub path_and_query: String,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub requests: Option<u64>,
    pub rate: Option<f64>,
    pub timeout: Duration,
    pub new_connection: bool,
    pub h2: bool,
    pub streams: usize,
}

impl Plan {
    pub fn new(args: &BenchArgs) -> Result<Plan, OptionsError> {
        let bad_url = || OptionsError::Url(args.url.clone());
        let uri: Uri = args.url.parse().map_err(|_| bad_url())?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad_url()),
        };
        let host = uri.host().ok_or_else(bad_url)?;
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addr = (bare_host, port)
            .to_socket_addrs()
            .map_err(|e| OptionsError::Resolve {
                host: bare_host.to_string(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| OptionsError::Resolve {
                host: bare_host.to_string(),
                reason: "no address".into(),
            })?;
        let authority = uri.authority().ok_or_else(bad_url)?.as_str().to_string();
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let path_and_query = if path_and_query.is_empty() {
            "/".to_string()
        } else {
            path_and_query
        };

        let method = Method::from_bytes(args.method.as_bytes())
            .map_err(|_| OptionsError::Method(args.method.clone()))?;
        let mut headers = HeaderMap::new();
        for h in &args.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| OptionsError::Header(h.clone()))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| OptionsError::Header(h.clone()))?;
            let value =
                HeaderValue::from_str(value.trim()).map_err(|_| OptionsError::Header(h.clone()))?;
            headers.append(name, value);
        }
        let body = match (&args.body, &args.body_file) {
            (Some(b), _) => Bytes::from(b.clone()),
            (None, Some(path)) => {
                Bytes::from(std::fs::read(path).map_err(|source| OptionsError::Read {
                    path: path.clone(),
                    source,
                })?)
            }
            (None, None) => Bytes::new(),
        };

        if args.connections == 0 {
            return Err(OptionsError::Invalid("--connections must be at least 1"));
        }
        if args.threads == 0 {
            return Err(OptionsError::Invalid("--threads must be at least 1"));
        }
        if args.streams == 0 {
            return Err(OptionsError::Invalid("--streams must be at least 1"));
        }
        if args.streams > 1 && !args.h2 {
            return Err(OptionsError::Invalid("--streams needs --h2"));
        }
        if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(OptionsError::Invalid("--rate must be a positive number"));
        }
        if args.requests == Some(0) {
            return Err(OptionsError::Invalid("--requests must be at least 1"));
        }
        if args.timeout.is_zero() {
            return Err(OptionsError::Invalid("--timeout must be positive"));
        }
        if tls && !args.insecure && args.ca.is_none() {
            return Err(OptionsError::Invalid(
                "an https URL needs --ca FILE or --insecure (seawall bench carries no root store)",
            ));
        }
        let duration = match (args.duration, args.requests) {
            (Some(d), _) => d,
            // -n alone: the request count ends the run; the duration is only a backstop.
            (None, Some(_)) => Duration::from_secs(24 * 3600),
            (None, None) => Duration::from_secs(10),
        };
        Ok(Plan {
            addr,
            tls,
            server_name: args.sni.clone().unwrap_or_else(|| bare_host.to_string()),
            authority,
            path_and_query,
            method,
            headers,
            body,
            // More threads than connections would leave threads idle.
            threads: args.threads.min(args.connections),
            connections: args.connections,
            duration,
            requests: args.requests,
            rate: args.rate,
            timeout: args.timeout,
            new_connection: args.new_connection,
            h2: args.h2,
            streams: args.streams,
        })
    }

    /// Whether the server name is an IP address (rustls then sends no SNI).
    pub fn server_name_is_ip(&self) -> bool {
        self.server_name.parse::<IpAddr>().is_ok()
    }

    /// Concurrent request loops in all: connections times streams.
    pub fn workers(&self) -> usize {
        self.connections * self.streams
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn plan(argv: &[&str]) -> Result<Plan, OptionsError> {
        let mut full = vec!["bench"];
        full.extend_from_slice(argv);
        Plan::new(&Cli::try_parse_from(full).unwrap().args)
    }

    #[test]
    fn url_headers_and_defaults() {
        let p = plan(&[
            "-k",
            "https://127.0.0.1:8443/a?b=1",
            "-H",
            "X-One: 1",
            "-H",
            "x-one: 2",
            "--body",
            "hi",
        ])
        .unwrap();
        assert_eq!(p.addr, "127.0.0.1:8443".parse().unwrap());
        assert!(p.tls && p.server_name_is_ip());
        assert_eq!(p.authority, "127.0.0.1:8443");
        assert_eq!(p.path_and_query, "/a?b=1");
        assert_eq!(p.headers.get_all("x-one").iter().count(), 2);
        assert_eq!(p.body, "hi");
        assert_eq!(p.duration, Duration::from_secs(10));
        let p = plan(&["http://localhost:8080", "-d", "0.5", "--sni", "x.test"]).unwrap();
        assert_eq!(p.path_and_query, "/");
        assert_eq!(p.duration, Duration::from_millis(500));
        assert!(!p.tls && !p.server_name_is_ip());
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(matches!(plan(&["ftp://x/"]), Err(OptionsError::Url(_))));
        assert!(matches!(
            plan(&["https://127.0.0.1/"]),
            Err(OptionsError::Invalid(_))
        ));
        assert!(matches!(
            plan(&["http://127.0.0.1/", "-H", "nocolon"]),
            Err(OptionsError::Header(_))
        ));
        assert!(matches!(
            plan(&["http://127.0.0.1/", "--streams", "4"]),
            Err(OptionsError::Invalid(_))
        ));
    }
}
