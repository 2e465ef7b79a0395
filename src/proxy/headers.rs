//! The header rewriting a forwarded request and its response get, and the request's form on the
//! target's side.

use http::header::{self, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{request, HeaderMap, Request, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::error::RequestError;
use crate::http_tokens;
use crate::protocol::ProtocolVersion;
use crate::targets::{Target, TargetGroup};
use crate::tls::{self, ClientCert};
use crate::upstream::{self, Added};

/// An HTTP/1.1 request asking to switch protocols (WebSocket).
pub(super) fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && http_tokens::has_token(req.headers().get_all(header::CONNECTION), "upgrade")
}

/// Rewrites a request's head for a target speaking `version`: Host from HTTP/2's `:authority`,
/// hop-by-hop headers out (but `TE: trailers` for HTTP/2 targets, and `Connection: upgrade` for an
/// upgrade), the client's `X-Amzn-Mtls-*` out and the connection's own (`client_cert`) in; for
/// an HTTP/2 target, `added` (`X-Forwarded-*` and the trace id) in. An HTTP/1 target's encoder
/// writes those instead (see `upstream::forwarded`): they are handed back for it.
pub(super) fn rewrite_request<'a>(
    parts: &mut request::Parts,
    version: ProtocolVersion,
    upgrade: bool,
    added: Added<'a>,
    client_cert: Option<&ClientCert>,
) -> Option<Added<'a>> {
    if parts.version == Version::HTTP_2 && !parts.headers.contains_key(header::HOST) {
        // The target sees the client's host, as behind ALB: an HTTP/1 target in Host, an HTTP/2
        // one in `:authority`, which `target_uri` makes from Host. Without it, either would get
        // the target's own ip:port.
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    // `TE: trailers` is the one TE that HTTP/2 carries, and gRPC servers may require it.
    let te_trailers = version != ProtocolVersion::Http1
        && http_tokens::has_token(parts.headers.get_all(header::TE), "trailers");
    upstream::strip_hop_by_hop(&mut parts.headers, upgrade);
    if te_trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    strip_mtls(&mut parts.headers);
    if let Some(c) = client_cert {
        for (name, value) in c.headers.iter() {
            parts.headers.insert(name, value.clone());
        }
    }
    if version == ProtocolVersion::Http1 {
        parts.version = Version::HTTP_11;
        Some(added)
    } else {
        parts.version = Version::HTTP_2;
        added.insert_into(&mut parts.headers);
        None
    }
}

/// Removes every `X-Amzn-Mtls-*` header a client sent, on every listener: a target behind
/// seawall may trust them as seawall's word about the client's certificate. One pass over the
/// names; only a request that carries one pays for removing it.
fn strip_mtls(headers: &mut HeaderMap) {
    if !headers.keys().any(tls::is_mtls_header) {
        return;
    }
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|n| tls::is_mtls_header(n))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

/// The request target as the target's protocol writes it: an HTTP/1 request line in origin-form,
/// with the client's Host (the target's address when the client sent none, as from HTTP/1.0); an
/// HTTP/2 request with the client's host as `:authority`, as ALB preserves it. HTTP/2 forbids a
/// Host that differs from `:authority` (RFC 9113, 8.3.1), and servers that check it (seawall's own
/// among them) refuse such a request with 400; so the Host stays only when it is the same (and
/// the pool then sends `:authority` alone: see `upstream::pool`).
///
/// Also whether it added a Host, the target's own, which the request must not keep should it go
/// to another target.
pub(super) fn target_uri(
    path: Option<&http::uri::PathAndQuery>,
    headers: &mut HeaderMap,
    tg: &TargetGroup,
    target: &Target,
) -> Result<(Uri, bool), RequestError> {
    let path = path
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    if tg.protocol_version == ProtocolVersion::Http1 {
        let add_host = !headers.contains_key(header::HOST);
        if add_host {
            headers.insert(
                header::HOST,
                upstream::host_header(&target.authority, &tg.scheme),
            );
        }
        Ok((Uri::from(path), add_host))
    } else {
        let host = headers
            .get(header::HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok())
            // `:authority` carries no userinfo (RFC 9113, 8.3.1); a Host never does either.
            .filter(|a| !a.as_str().contains('@'));
        let authority = match host {
            Some(host) => host,
            None => {
                // No Host, or none that an authority can carry: the target's address, alone.
                headers.remove(header::HOST);
                target.authority.clone()
            }
        };
        let uri = Uri::builder()
            .scheme(tg.scheme.clone())
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|_| RequestError::BadRequest("unrepresentable request target"))?;
        Ok((uri, false))
    }
}

/// A response head's size as HTTP/1 frames it: `HTTP/1.1 200 OK\r\n`, `name: value\r\n` each,
/// the blank line. Measured for ALB's limit on a target's response head, whatever version it came
/// in, and for the access log's `sent_bytes` ([`HeadSize::sent`]).
pub(super) fn head_bytes(status: StatusCode, headers: &HeaderMap) -> HeadSize {
    let reason = status.canonical_reason().map_or(0, str::len);
    let mut dated = false;
    let fields: usize = headers
        .iter()
        .map(|(n, v)| {
            dated |= n == header::DATE;
            n.as_str().len() + v.len() + 4
        })
        .sum();
    HeadSize {
        bytes: 13 + reason + 2 + fields + 2,
        dated,
    }
}

/// A response head's size, and whether it has a `Date`.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadSize {
    pub bytes: usize,
    pub dated: bool,
}

impl HeadSize {
    /// The size as the client gets it: hyper's server adds a `Date` to a response without one.
    pub fn sent(self) -> usize {
        // `date: `, an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), CRLF.
        const DATE_FIELD: usize = 6 + 29 + 2;
        self.bytes + if self.dated { 0 } else { DATE_FIELD }
    }
}

/// Rewrites a target's response head for the client: hop-by-hop headers out, except what a
/// switch of protocols (`switched`) needs, which gets `Connection: upgrade` back. Says by how many
/// bytes the head shrank as HTTP/1 frames it, so that a size measured before need not be measured
/// again; `None` when that is not known (a `Connection` that named other headers, a switch).
pub(super) fn rewrite_response(headers: &mut HeaderMap, switched: bool) -> Option<usize> {
    let stripped = upstream::strip_hop_by_hop(headers, switched);
    if switched {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        return None;
    }
    match stripped {
        upstream::Stripped::Nothing => Some(0),
        upstream::Stripped::Fields(bytes) => Some(bytes),
        upstream::Stripped::Listed => None,
    }
}
