//! Request-path errors and the status codes seawall answers with, as ALB does.

use http::StatusCode;

use crate::upstream::connect::ConnectError;
use crate::upstream::pool;

/// Which side of the proxy an error came from: it decides whose fault a log line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
}

/// Why seawall answered a request itself instead of forwarding the target's answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request's body framing broke after its head was forwarded (a bad chunk size, the
    /// client gone before its body's end): the client's fault, though the target was the one
    /// left with half a request.
    #[error("the request body broke off: {0}")]
    ClientBody(String),
    /// The request body is larger than the listener's `max_body_bytes`: declared so, or found so
    /// while it streamed to the target.
    #[error("the request body is larger than the listener's limit of {0} bytes")]
    BodyTooLarge(u64),
    /// The client sent nothing of its request body for the listener's idle timeout while it was
    /// waited on, or had not finished it when the target's response timeout passed (the target
    /// had not had the whole request): ALB's 408.
    #[error("the client sent its request body too slowly: {0}")]
    BodyTimeout(&'static str),
    #[error("target group has no targets")]
    NoTargets,
    #[error("could not connect to the target: {0}")]
    ConnectFailed(String),
    #[error("connecting to the target timed out")]
    ConnectTimeout,
    #[error("the target did not answer within the response timeout")]
    ResponseTimeout,
    #[error("the target closed or reset the connection: {0}")]
    TargetReset(String),
    /// ALB's 464: the request cannot be carried in the target group's protocol version.
    #[error("incompatible protocol: {0}")]
    IncompatibleProtocol(&'static str),
    /// seawall had no descriptor left to connect to the target (EMFILE, ENFILE): the target is
    /// not at fault, so it is not marked failed, and the request is answered 503.
    #[error("no file descriptor left to connect to the target")]
    OutOfDescriptors,
    /// The target's response head is larger than ALB's limit (32 KiB): 502, as ALB answers it.
    #[error("the target's response head is {0} bytes, over the limit of {limit}", limit = pool::MAX_RESPONSE_HEAD)]
    ResponseHeadTooLarge(usize),
}

impl RequestError {
    /// ALB's mapping: a client error is 400, an empty group 503, a failed connection 502, a target
    /// that does not answer in time 504.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::BadRequest(_) | RequestError::ClientBody(_) => StatusCode::BAD_REQUEST,
            RequestError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            RequestError::NoTargets | RequestError::OutOfDescriptors => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RequestError::ConnectFailed(_)
            | RequestError::TargetReset(_)
            | RequestError::ResponseHeadTooLarge(_) => StatusCode::BAD_GATEWAY,
            RequestError::ConnectTimeout | RequestError::ResponseTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            RequestError::IncompatibleProtocol(_) => {
                StatusCode::from_u16(464).expect("464 is in the valid range")
            }
        }
    }

    /// The status line's reason: the standard one, or ALB's name for its own 464.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::IncompatibleProtocol(_) => "Incompatible Protocol",
            _ => self.status().canonical_reason().unwrap_or(""),
        }
    }

    /// The access log's `error_reason`: a code per kind of failure, in ALB's style.
    pub fn log_code(&self) -> &'static str {
        match self {
            RequestError::BadRequest(_) | RequestError::ClientBody(_) => "ClientBadRequest",
            RequestError::BodyTooLarge(_) => "RequestBodyTooLarge",
            RequestError::BodyTimeout(_) => "ClientRequestTimeout",
            RequestError::NoTargets => "NoServingTargets",
            RequestError::ConnectFailed(_) => "TargetConnectionError",
            RequestError::ConnectTimeout => "TargetConnectionTimeout",
            RequestError::ResponseTimeout => "TargetResponseTimeout",
            RequestError::TargetReset(_) => "TargetConnectionReset",
            RequestError::IncompatibleProtocol(_) => "IncompatibleProtocol",
            RequestError::OutOfDescriptors => "LoadBalancerOutOfDescriptors",
            RequestError::ResponseHeadTooLarge(_) => "TargetResponseHeadTooLarge",
        }
    }

    /// The gRPC status a gRPC client is answered with instead of an HTTP error: gRPC clients
    /// read `grpc-status`, and map a bare 502/504 to UNAVAILABLE without saying why. A response
    /// timeout is DEADLINE_EXCEEDED rather than UNAVAILABLE because the target may have acted on
    /// the call, so it must not look safe to retry.
    pub fn grpc_status(&self) -> u16 {
        match self {
            // INTERNAL, as gRPC maps HTTP 400.
            RequestError::BadRequest(_) | RequestError::ClientBody(_) => 13,
            RequestError::BodyTooLarge(_) => 8, // RESOURCE_EXHAUSTED
            RequestError::BodyTimeout(_) => 4,  // DEADLINE_EXCEEDED
            RequestError::IncompatibleProtocol(_) => 12, // UNIMPLEMENTED
            RequestError::ResponseTimeout => 4, // DEADLINE_EXCEEDED
            RequestError::NoTargets
            | RequestError::OutOfDescriptors
            | RequestError::ConnectFailed(_)
            | RequestError::ConnectTimeout
            | RequestError::TargetReset(_)
            | RequestError::ResponseHeadTooLarge(_) => 14, // UNAVAILABLE
        }
    }

    pub fn side(&self) -> Side {
        match self {
            RequestError::BadRequest(_)
            | RequestError::ClientBody(_)
            | RequestError::BodyTooLarge(_)
            | RequestError::BodyTimeout(_)
            | RequestError::IncompatibleProtocol(_) => Side::Downstream,
            _ => Side::Upstream,
        }
    }

    /// Classifies a failure to exchange a request with a target: whether the target could have
    /// seen the request decides between a failed connection (the proxy marks the target failed
    /// and may retry elsewhere) and a reset.
    pub fn from_upstream(err: &pool::Error) -> Self {
        match err {
            pool::Error::Connect(e) => match &**e {
                e if e.is_local_exhaustion() => RequestError::OutOfDescriptors,
                ConnectError::Timeout => RequestError::ConnectTimeout,
                // The kernel gave up on the SYN before seawall's own timeout did.
                ConnectError::Tcp(io) | ConnectError::Tls(io)
                    if io.kind() == std::io::ErrorKind::TimedOut =>
                {
                    RequestError::ConnectTimeout
                }
                e => RequestError::ConnectFailed(e.to_string()),
            },
            pool::Error::Handshake(e) => RequestError::TargetReset(error_chain(&**e)),
            pool::Error::Exchange(e) | pool::Error::Stale(e) => {
                RequestError::TargetReset(error_chain(&**e))
            }
            pool::Error::ClientBody(e) => RequestError::ClientBody(error_chain(&**e)),
        }
    }
}

/// `outer: inner: innermost`, for logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the mapping users and dashboards rely on.
    #[test]
    fn status_codes_are_albs() {
        let cases = [
            (RequestError::BadRequest("x"), 400, Side::Downstream),
            (
                RequestError::ClientBody("bad chunk size".into()),
                400,
                Side::Downstream,
            ),
            (RequestError::BodyTooLarge(10), 413, Side::Downstream),
            (RequestError::BodyTimeout("x"), 408, Side::Downstream),
            (RequestError::NoTargets, 503, Side::Upstream),
            (RequestError::OutOfDescriptors, 503, Side::Upstream),
            (
                RequestError::ConnectFailed("refused".into()),
                502,
                Side::Upstream,
            ),
            (
                RequestError::TargetReset("reset".into()),
                502,
                Side::Upstream,
            ),
            (
                RequestError::ResponseHeadTooLarge(40_000),
                502,
                Side::Upstream,
            ),
            (RequestError::ConnectTimeout, 504, Side::Upstream),
            (RequestError::ResponseTimeout, 504, Side::Upstream),
            (
                RequestError::IncompatibleProtocol("x"),
                464,
                Side::Downstream,
            ),
        ];
        let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        let local = pool::Error::Connect(std::sync::Arc::new(ConnectError::Tcp(emfile)));
        assert!(matches!(
            RequestError::from_upstream(&local),
            RequestError::OutOfDescriptors
        ));
        for (err, code, side) in cases {
            assert_eq!(err.status().as_u16(), code, "{err}");
            assert_eq!(err.side(), side, "{err}");
            assert!(!err.reason().is_empty(), "{err}");
            assert!(
                err.log_code().bytes().all(|b| b.is_ascii_alphabetic()),
                "{err}"
            );
        }
    }
}
