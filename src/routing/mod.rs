//! Compiled listener rules: conditions matched in priority order, the first match's action wins, the
//! listener's default action when none matches. Everything is built at load time; [`Router::find`] is
//! a pure function of the request.

mod action;
mod redirect;
mod wildcard;

use std::net::IpAddr;

use http::{HeaderMap, Method};

pub use action::{Action, FixedResponse, Forward, GroupId, WeightedGroup};
pub use redirect::{RedirectError, RedirectRequest, RedirectTemplate};
pub use wildcard::{PatternError, Wildcard};

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

/// A listener's rules and default action.
#[derive(Debug)]
pub struct Router {
    rules: Box<[Rule]>,
    default_action: Action,
}

/// One rule: every condition that is present must match (AND); within a condition, any value (OR).
#[derive(Debug)]
pub struct Rule {
    pub priority: u32,
    /// Empty = no host condition.
    pub host: Box<[Wildcard]>,
    /// Empty = no path condition.
    pub path: Box<[Wildcard]>,
    pub action: Action,
}

impl Rule {
    fn matches(&self, req: &RequestView<'_>) -> bool {
        (self.host.is_empty() || self.host.iter().any(|w| w.matches(req.host)))
            && (self.path.is_empty() || self.path.iter().any(|w| w.matches(req.path)))
    }
}

impl Router {
    /// `rules` must be sorted by priority; validation guarantees priorities are unique.
    pub fn new(rules: Vec<Rule>, default_action: Action) -> Self {
        debug_assert!(rules.windows(2).all(|w| w[0].priority < w[1].priority));
        Router {
            rules: rules.into(),
            default_action,
        }
    }

    /// The action for a request: the lowest-priority matching rule's, else the default.
    pub fn find(&self, req: &RequestView<'_>) -> Matched<'_> {
        match self.rules.iter().find(|r| r.matches(req)) {
            Some(r) => Matched {
                priority: Priority::Rule(r.priority),
                action: &r.action,
            },
            None => Matched {
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
    use http::{HeaderValue, StatusCode};

    fn fixed(body: &'static str) -> Action {
        Action::FixedResponse(FixedResponse {
            status: StatusCode::OK,
            content_type: HeaderValue::from_static("text/plain"),
            body: Bytes::from_static(body.as_bytes()),
        })
    }

    fn body(a: &Action) -> &[u8] {
        match a {
            Action::FixedResponse(f) => &f.body,
            _ => panic!("not fixed"),
        }
    }

    #[test]
    fn lowest_priority_match_wins_and_conditions_are_anded() {
        let h = |p: &str| Wildcard::case_insensitive(p).unwrap();
        let p = |p: &str| Wildcard::case_sensitive(p).unwrap();
        let router = Router::new(
            vec![
                Rule {
                    priority: 1,
                    host: vec![h("api.test")].into(),
                    path: vec![p("/v1/*")].into(),
                    action: fixed("api-v1"),
                },
                Rule {
                    priority: 2,
                    host: vec![h("api.test"), h("*.api.test")].into(),
                    path: Box::new([]),
                    action: fixed("api"),
                },
                Rule {
                    priority: 3,
                    host: Box::new([]),
                    path: vec![p("/static/*")].into(),
                    action: fixed("static"),
                },
            ],
            fixed("default"),
        );
        let headers = HeaderMap::new();
        let view = |host, path| RequestView {
            host,
            path,
            method: &Method::GET,
            headers: &headers,
            query: "",
            client_ip: IpAddr::from([127, 0, 0, 1]),
        };
        let find = |host, path| body(router.find(&view(host, path)).action).to_vec();
        assert_eq!(find("API.test", "/v1/x"), b"api-v1");
        assert_eq!(find("api.test", "/v2/x"), b"api");
        assert_eq!(find("eu.api.test", "/static/a"), b"api");
        assert_eq!(find("other.test", "/static/a"), b"static");
        assert_eq!(find("other.test", "/"), b"default");

        // The router says which rule decided.
        let priority = |host, path| router.find(&view(host, path)).priority;
        assert_eq!(priority("API.test", "/v1/x"), Priority::Rule(1));
        assert_eq!(priority("eu.api.test", "/static/a"), Priority::Rule(2));
        assert_eq!(priority("other.test", "/static/a"), Priority::Rule(3));
        assert_eq!(priority("other.test", "/"), Priority::Default);
    }
}
