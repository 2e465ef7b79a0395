//! ALB redirect actions: templates with `#{protocol}`, `#{host}`, `#{port}`, `#{path}` and `#{query}`
//! placeholders, parsed once at load and rendered per request.

use std::fmt::Write;

use http::StatusCode;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Protocol,
    Host,
    Port,
    /// The request path without its leading `/`.
    Path,
    Query,
}

type Template = Box<[Part]>;

/// What a redirect needs to know of the request.
pub struct RedirectRequest<'a> {
    /// The listener's protocol, `http` or `https`.
    pub protocol: &'a str,
    /// Host without port.
    pub host: &'a str,
    /// The port the client connected to.
    pub port: u16,
    /// The path, with its leading `/`.
    pub path: &'a str,
    /// The query string without `?` (may be empty).
    pub query: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ProtocolField {
    Same,
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortField {
    Same,
    Fixed(u16),
}

/// A compiled redirect action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectTemplate {
    protocol: ProtocolField,
    host: Template,
    port: PortField,
    path: Template,
    query: Template,
    pub status: StatusCode,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectError {
    #[error("protocol must be \"http\", \"https\" or \"#{{protocol}}\", not {0:?}")]
    Protocol(String),
    #[error("port must be a number from 1 to 65535 or \"#{{port}}\", not {0:?}")]
    Port(String),
    #[error("path must start with \"/\", not {0:?}")]
    Path(String),
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("unknown placeholder {placeholder:?} in {field}; known: #{{protocol}}, #{{host}}, #{{port}}, #{{path}}, #{{query}}")]
    Placeholder {
        field: &'static str,
        placeholder: String,
    },
    #[error("status must be 301 or 302, not {0}")]
    Status(u16),
    #[error("this redirect sends every request to the URL it came from; change the protocol, host, port, path or query")]
    Loop,
}

impl RedirectError {
    /// The key the error is about, to name it in a config error (`None`: the redirect as a whole).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            RedirectError::Protocol(_) => Some("protocol"),
            RedirectError::Port(_) => Some("port"),
            RedirectError::Path(_) => Some("path"),
            RedirectError::Empty { field } | RedirectError::Placeholder { field, .. } => {
                Some(field)
            }
            RedirectError::Status(_) => Some("status"),
            RedirectError::Loop => None,
        }
    }
}

fn parse(field: &'static str, text: &str) -> Result<Template, RedirectError> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("#{") {
        if start > 0 {
            parts.push(Part::Literal(rest[..start].into()));
        }
        let after = &rest[start..];
        let end = after.find('}').ok_or_else(|| RedirectError::Placeholder {
            field,
            placeholder: after.to_string(),
        })?;
        parts.push(match &after[..=end] {
            "#{protocol}" => Part::Protocol,
            "#{host}" => Part::Host,
            "#{port}" => Part::Port,
            "#{path}" => Part::Path,
            "#{query}" => Part::Query,
            other => {
                return Err(RedirectError::Placeholder {
                    field,
                    placeholder: other.to_string(),
                })
            }
        });
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.into()));
    }
    Ok(parts.into())
}

impl RedirectTemplate {
    /// Compiles the fields of a redirect action; `None` takes ALB's default for the field.
    pub fn compile(
        protocol: Option<&str>,
        host: Option<&str>,
        port: Option<&str>,
        path: Option<&str>,
        query: Option<&str>,
        status: Option<u16>,
    ) -> Result<Self, RedirectError> {
        let protocol = match protocol.unwrap_or("#{protocol}") {
            "#{protocol}" => ProtocolField::Same,
            p if p.eq_ignore_ascii_case("http") => ProtocolField::Http,
            p if p.eq_ignore_ascii_case("https") => ProtocolField::Https,
            p => return Err(RedirectError::Protocol(p.to_string())),
        };
        let host_text = host.unwrap_or("#{host}");
        if host_text.is_empty() {
            return Err(RedirectError::Empty { field: "host" });
        }
        let port = match port.unwrap_or("#{port}") {
            "#{port}" => PortField::Same,
            p => match p.parse::<u16>() {
                Ok(n) if n > 0 => PortField::Fixed(n),
                _ => return Err(RedirectError::Port(p.to_string())),
            },
        };
        let path_text = path.unwrap_or("/#{path}");
        if !path_text.starts_with('/') {
            return Err(RedirectError::Path(path_text.to_string()));
        }
        let status = match status.unwrap_or(301) {
            301 => StatusCode::MOVED_PERMANENTLY,
            302 => StatusCode::FOUND,
            s => return Err(RedirectError::Status(s)),
        };
        let t = RedirectTemplate {
            protocol,
            host: parse("host", host_text)?,
            port,
            path: parse("path", path_text)?,
            query: parse("query", query.unwrap_or("#{query}"))?,
            status,
        };
        if t.loops_on(None, None) {
            return Err(RedirectError::Loop);
        }
        Ok(t)
    }

    /// Whether the redirect sends every request back to the URL it came from, on a listener of
    /// this protocol and port (`None`: not known, so only placeholders can make it loop).
    pub fn loops_on(&self, protocol: Option<&str>, port: Option<u16>) -> bool {
        let same_protocol = match self.protocol {
            ProtocolField::Same => true,
            ProtocolField::Http => protocol == Some("http"),
            ProtocolField::Https => protocol == Some("https"),
        };
        let same_port = match self.port {
            PortField::Same => true,
            PortField::Fixed(p) => port == Some(p),
        };
        same_protocol
            && same_port
            && *self.host == [Part::Host]
            && *self.path == [Part::Literal("/".into()), Part::Path]
            && *self.query == [Part::Query]
    }

    /// The Location header for a request.
    pub fn location(&self, req: &RedirectRequest<'_>) -> String {
        let protocol = match self.protocol {
            ProtocolField::Same => req.protocol,
            ProtocolField::Http => "http",
            ProtocolField::Https => "https",
        };
        let port = match self.port {
            PortField::Same => req.port,
            PortField::Fixed(p) => p,
        };
        let mut out = String::with_capacity(64 + req.path.len() + req.query.len());
        out.push_str(protocol);
        out.push_str("://");
        render(&mut out, &self.host, protocol, req, port);
        let default_port = if protocol == "https" { 443 } else { 80 };
        if port != default_port {
            let _ = write!(out, ":{port}");
        }
        let path_start = out.len();
        render(&mut out, &self.path, protocol, req, port);
        if out.len() == path_start {
            out.push('/');
        }
        let query_start = out.len();
        out.push('?');
        render(&mut out, &self.query, protocol, req, port);
        if out.len() == query_start + 1 {
            out.truncate(query_start);
        }
        out
    }
}

fn render(out: &mut String, t: &[Part], protocol: &str, req: &RedirectRequest<'_>, port: u16) {
    for p in t {
        match p {
            Part::Literal(s) => out.push_str(s),
            Part::Protocol => out.push_str(protocol),
            Part::Host => out.push_str(req.host),
            Part::Port => {
                let _ = write!(out, "{port}");
            }
            Part::Path => out.push_str(req.path.strip_prefix('/').unwrap_or(req.path)),
            Part::Query => out.push_str(req.query),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RedirectRequest<'static> {
        RedirectRequest {
            protocol: "http",
            host: "shop.example.test",
            port: 8080,
            path: "/cart/view",
            query: "a=1&b=2",
        }
    }

    #[test]
    fn http_to_https_keeps_host_path_and_query() {
        let t =
            RedirectTemplate::compile(Some("https"), None, Some("8443"), None, None, None).unwrap();
        assert_eq!(
            t.location(&req()),
            "https://shop.example.test:8443/cart/view?a=1&b=2"
        );
        assert_eq!(t.status, StatusCode::MOVED_PERMANENTLY);
    }

    #[test]
    fn default_ports_and_empty_query_are_left_out() {
        let t = RedirectTemplate::compile(Some("HTTPS"), None, Some("443"), None, None, Some(302))
            .unwrap();
        let mut r = req();
        r.query = "";
        assert_eq!(t.location(&r), "https://shop.example.test/cart/view");
        assert_eq!(t.status, StatusCode::FOUND);
    }

    #[test]
    fn placeholders_inside_literals() {
        let t = RedirectTemplate::compile(
            None,
            Some("www.#{host}"),
            None,
            Some("/new/#{path}"),
            Some("from=#{port}&#{query}"),
            None,
        )
        .unwrap();
        assert_eq!(
            t.location(&req()),
            "http://www.shop.example.test:8080/new/cart/view?from=8080&a=1&b=2"
        );
    }

    #[test]
    fn bad_templates_are_rejected() {
        let c = |p, h, port, path, q, s| RedirectTemplate::compile(p, h, port, path, q, s);
        assert_eq!(
            c(None, None, None, None, None, None),
            Err(RedirectError::Loop)
        );
        assert!(matches!(
            c(Some("ftp"), None, None, None, None, None),
            Err(RedirectError::Protocol(_))
        ));
        assert!(matches!(
            c(Some("https"), None, Some("0"), None, None, None),
            Err(RedirectError::Port(_))
        ));
        assert!(matches!(
            c(Some("https"), None, None, Some("x"), None, None),
            Err(RedirectError::Path(_))
        ));
        assert!(matches!(
            c(Some("https"), Some("#{hots}"), None, None, None, None),
            Err(RedirectError::Placeholder { .. })
        ));
        assert_eq!(
            c(Some("https"), None, None, None, None, Some(307)),
            Err(RedirectError::Status(307))
        );
    }
}
