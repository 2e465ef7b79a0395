//! One health-check probe, as ALB sends it: `GET <path>` with `Host: <ip>:<port>` and
//! `User-Agent: ELB-HealthChecker/2.0`, over HTTP/1.1 or HTTP/2 (plain or TLS, as the group), or for
//! gRPC groups an HTTP/2 `POST` of an empty gRPC message whose `grpc-status` is matched.
//!
//! Every probe opens its own connection and closes it: a pooled connection could keep answering
//! from a process that no longer accepts new ones, and would hide a dead target.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST, TE, USER_AGENT};
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_rustls::TlsConnector;
use tokio_util::task::AbortOnDropHandle;

use crate::error::error_chain;
use crate::protocol::{Protocol, ProtocolVersion};
use crate::targets::{HealthCheck, Matcher, Reason};
use crate::upstream::connect::{self, Alpn, ConnectError};

/// ALB's health checker's User-Agent; target apps often filter their access logs on it.
const USER_AGENT_VALUE: HeaderValue = HeaderValue::from_static("ELB-HealthChecker/2.0");

/// A gRPC message with no content: uncompressed flag and a zero length.
const EMPTY_GRPC_MESSAGE: &[u8] = &[0; 5];

/// The most of a gRPC answer's body read while looking for its trailers; a health answer is an
/// empty message, so anything near this is a misbehaving target, not a reason to use memory.
const MAX_GRPC_BODY: usize = 64 * 1024;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("request timed out")]
    Timeout,
    /// The target answered with a status (HTTP, or gRPC for gRPC groups) the matcher rejects.
    #[error("unexpected code {0}")]
    CodeMismatch(u16),
    #[error("connection failed: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// The exchange broke after connecting (reset, closed early, not HTTP, ...).
    #[error("{0}")]
    Http(String),
    /// A gRPC answer without a numeric `grpc-status` in its headers or trailers.
    #[error("no grpc-status in the answer (HTTP status {0})")]
    NoGrpcStatus(u16),
}

impl ProbeError {
    /// Whether the probe failed for want of seawall's own descriptors, not the target's doing.
    pub fn is_local_exhaustion(&self) -> bool {
        match self {
            ProbeError::Connect(e) | ProbeError::Tls(e) => connect::is_local_exhaustion(e),
            _ => false,
        }
    }

    /// The reason ALB's DescribeTargetHealth would give a target failing this way.
    pub fn reason(&self) -> Reason {
        match self {
            ProbeError::Timeout => Reason {
                code: "Target.Timeout",
                description: "Request timed out".into(),
            },
            ProbeError::CodeMismatch(code) => Reason {
                code: "Target.ResponseCodeMismatch",
                description: format!("Health checks failed with these codes: [{code}]"),
            },
            other => Reason {
                code: "Target.FailedHealthChecks",
                description: format!("Health checks failed: {other}"),
            },
        }
    }
}

fn http_error(e: &hyper::Error) -> ProbeError {
    ProbeError::Http(error_chain(e))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Http1,
    Http2,
    Grpc,
}

/// A target group's probe, built once per checker from its settings.
#[derive(Clone)]
pub struct Prober {
    mode: Mode,
    path: PathAndQuery,
    /// `None` probes each target on its own (traffic) port.
    port: Option<u16>,
    /// For the whole probe: connect, TLS, request and answer (with trailers for gRPC).
    timeout: Duration,
    matcher: Matcher,
    /// `Some` for HTTPS health checks.
    tls: Option<&'static TlsConnector>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("mode", &self.mode)
            .field("path", &self.path)
            .field("port", &self.port)
            .field("timeout", &self.timeout)
            .field("matcher", &self.matcher.to_string())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Prober {
    pub fn new(hc: &HealthCheck, version: ProtocolVersion) -> Self {
        let mode = match version {
            ProtocolVersion::Http1 => Mode::Http1,
            ProtocolVersion::Http2 => Mode::Http2,
            ProtocolVersion::Grpc => Mode::Grpc,
        };
        let tls = (hc.protocol == Protocol::Https).then(|| {
            connect::tls_connector(match mode {
                Mode::Http1 => Alpn::Http1,
                Mode::Http2 | Mode::Grpc => Alpn::Http2,
            })
        });
        Prober {
            mode,
            // Validated at load; "/" keeps a probe meaningful should that ever be bypassed.
            path: hc
                .path
                .parse()
                .unwrap_or_else(|_| PathAndQuery::from_static("/")),
            port: hc.port,
            timeout: hc.timeout,
            matcher: hc.matcher.clone(),
            tls,
        }
    }

    /// Probes the target at `target` (its traffic address) once.
    pub async fn probe(&self, target: SocketAddr) -> Result<(), ProbeError> {
        let addr = SocketAddr::new(target.ip(), self.port.unwrap_or(target.port()));
        match tokio::time::timeout(self.timeout, self.exchange(addr)).await {
            Err(_) => Err(ProbeError::Timeout),
            Ok(Ok(code)) if self.matcher.matches(code) => Ok(()),
            Ok(Ok(code)) => Err(ProbeError::CodeMismatch(code)),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Connects and asks; gives the code to match.
    async fn exchange(&self, addr: SocketAddr) -> Result<u16, ProbeError> {
        // The probe's own timeout bounds the connect too, from outside.
        let io = connect::open(addr, self.tls, self.timeout)
            .await
            .map_err(|e| match e {
                ConnectError::Timeout => ProbeError::Timeout,
                ConnectError::Tcp(e) => ProbeError::Connect(e),
                ConnectError::Tls(e) => ProbeError::Tls(e),
            })?;
        let io = TokioIo::new(io);
        let authority = addr.to_string();
        let host =
            HeaderValue::from_str(&authority).map_err(|e| ProbeError::Http(e.to_string()))?;
        if self.mode == Mode::Http1 {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| http_error(&e))?;
            // Dropped with this future, so a timed-out probe leaves no connection behind.
            let _conn = AbortOnDropHandle::new(tokio::spawn(conn));
            let req = Request::get(self.path.as_str())
                .header(HOST, host)
                .header(USER_AGENT, USER_AGENT_VALUE)
                .header(CONNECTION, "close")
                .body(Full::new(Bytes::new()))
                .map_err(|e| ProbeError::Http(e.to_string()))?;
            let resp = send.send_request(req).await.map_err(|e| http_error(&e))?;
            return Ok(resp.status().as_u16());
        }
        let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|e| http_error(&e))?;
        let _conn = AbortOnDropHandle::new(tokio::spawn(conn));
        let scheme = if self.tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(self.path.clone())
            .build()
            .map_err(|e| ProbeError::Http(e.to_string()))?;
        let req = Request::builder()
            .uri(uri)
            .header(USER_AGENT, USER_AGENT_VALUE);
        let req = if self.mode == Mode::Grpc {
            req.method(Method::POST)
                .header(CONTENT_TYPE, "application/grpc")
                .header(TE, "trailers")
                .body(Full::new(Bytes::from_static(EMPTY_GRPC_MESSAGE)))
        } else {
            req.method(Method::GET).body(Full::new(Bytes::new()))
        }
        .map_err(|e| ProbeError::Http(e.to_string()))?;
        let resp = send.send_request(req).await.map_err(|e| http_error(&e))?;
        if self.mode == Mode::Grpc {
            grpc_status(resp).await
        } else {
            Ok(resp.status().as_u16())
        }
    }
}

/// The `grpc-status` of an answer: in the headers for a trailers-only answer, else in the trailers.
async fn grpc_status(resp: Response<Incoming>) -> Result<u16, ProbeError> {
    let http_status = resp.status().as_u16();
    let parse = |v: Option<&HeaderValue>| -> Option<u16> { v?.to_str().ok()?.trim().parse().ok() };
    if let Some(code) = parse(resp.headers().get("grpc-status")) {
        return Ok(code);
    }
    let collected = Limited::new(resp.into_body(), MAX_GRPC_BODY)
        .collect()
        .await
        .map_err(|e| ProbeError::Http(error_chain(&*e)))?;
    collected
        .trailers()
        .and_then(|t| parse(t.get("grpc-status")))
        .ok_or(ProbeError::NoGrpcStatus(http_status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn config(matcher: &str) -> HealthCheck {
        HealthCheck {
            path: "/health".into(),
            port: None,
            protocol: Protocol::Http,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(300),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            matcher: matcher.parse().unwrap(),
        }
    }

    /// Answers one connection with `answer` after reading the request head; gives the head.
    async fn one_answer(answer: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn sends_albs_request_and_matches_the_status() {
        let (addr, head) = one_answer("HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
        let p = Prober::new(&config("200-299"), ProtocolVersion::Http1);
        p.probe(addr).await.unwrap();
        let head = head.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /health http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {addr}\r\n")), "{head}");
        assert!(
            head.contains("user-agent: elb-healthchecker/2.0\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_status_the_matcher_rejects_is_a_code_mismatch() {
        let (addr, _head) = one_answer("HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n").await;
        let p = Prober::new(&config("200"), ProtocolVersion::Http1);
        let err = p.probe(addr).await.unwrap_err();
        assert!(matches!(err, ProbeError::CodeMismatch(500)), "{err:?}");
        let reason = err.reason();
        assert_eq!(reason.code, "Target.ResponseCodeMismatch");
        assert_eq!(
            reason.description,
            "Health checks failed with these codes: [500]"
        );
    }

    #[tokio::test]
    async fn silence_is_a_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // Accepted by the kernel's backlog, never answered.
        let p = Prober::new(&config("200"), ProtocolVersion::Http1);
        let err = p.probe(addr).await.unwrap_err();
        assert!(matches!(err, ProbeError::Timeout), "{err:?}");
        assert_eq!(err.reason().code, "Target.Timeout");
        drop(l);
    }

    #[tokio::test]
    async fn refused_and_garbage_are_failed_checks() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let p = Prober::new(&config("200"), ProtocolVersion::Http1);
        let err = p.probe(addr).await.unwrap_err();
        assert!(matches!(err, ProbeError::Connect(_)), "{err:?}");
        assert_eq!(err.reason().code, "Target.FailedHealthChecks");

        let (addr, _head) = one_answer("SSH-2.0-OpenSSH\r\n\r\n").await;
        let err = p.probe(addr).await.unwrap_err();
        assert!(matches!(err, ProbeError::Http(_)), "{err:?}");
        assert!(
            err.reason()
                .description
                .starts_with("Health checks failed: "),
            "{:?}",
            err.reason()
        );
    }

    #[tokio::test]
    async fn the_configured_port_overrides_the_traffic_port() {
        let (addr, _head) = one_answer("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let mut cfg = config("200");
        cfg.port = Some(addr.port());
        let p = Prober::new(&cfg, ProtocolVersion::Http1);
        // Port 1 on loopback refuses; the probe goes to the configured port instead.
        p.probe(SocketAddr::new(addr.ip(), 1)).await.unwrap();
    }
}
