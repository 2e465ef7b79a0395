//! ALB's stickiness, with ALB's cookie names: a client is kept on the target group of a weighted
//! forward (`AWSALBTG`) and on the target of a group (`AWSALB` for lb_cookie, `AWSALBAPP-0` for
//! app_cookie) by cookies seawall issues, sealed ([`seal`]) so that a client can neither read nor
//! forge them. A cookie that does not open, has expired, or names what cannot take the request
//! is ignored: the request is balanced as if it had none, and is answered with a new cookie.
//!
//! A data-plane module: the configuration is lowered into [`TargetStickiness`] and a
//! [`Sealer`]; nothing here reads the configuration's types.

pub mod cookie;
pub mod seal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

pub use seal::{Kind, Opened, Sealer, Ticket};

/// Target stickiness by duration (lb_cookie).
pub const AWSALB: &str = "AWSALB";
/// `AWSALB`'s twin for cross-origin requests (`SameSite=None; Secure`).
pub const AWSALBCORS: &str = "AWSALBCORS";
/// Target group stickiness of a weighted forward.
pub const AWSALBTG: &str = "AWSALBTG";
/// `AWSALBTG`'s twin for cross-origin requests.
pub const AWSALBTGCORS: &str = "AWSALBTGCORS";
/// Target stickiness following the application's cookie (app_cookie). ALB spreads a long value
/// over `-0`..`-3`; seawall's values are short enough for the first.
pub const AWSALBAPP: &str = "AWSALBAPP-0";
/// Names ALB keeps for its own cookies, which an application cookie may not start with.
pub const RESERVED_PREFIXES: [&str; 3] = ["AWSALB", "AWSALBAPP", "AWSALBTG"];

/// The shortest stickiness ALB allows (groups and targets alike).
pub const MIN_DURATION: Duration = Duration::from_secs(1);
/// The longest: 7 days.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// ALB's default duration of lb_cookie stickiness: 1 day.
pub const DEFAULT_LB_COOKIE_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A target group's target stickiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetStickiness {
    /// seawall's cookie `AWSALB` keeps a client on its target for `duration`.
    LbCookie { duration: Duration },
    /// The application's own cookie `cookie_name` says when a client is in a session; seawall's
    /// `AWSALBAPP-0`, issued when the target sets that cookie, keeps it on its target meanwhile.
    AppCookie {
        cookie_name: Arc<str>,
        duration: Duration,
    },
}

impl TargetStickiness {
    pub fn duration(&self) -> Duration {
        match self {
            TargetStickiness::LbCookie { duration }
            | TargetStickiness::AppCookie { duration, .. } => *duration,
        }
    }

    /// Whether the request is in an application session (app_cookie: it carries the
    /// application's cookie); lb_cookie has no sessions.
    pub fn in_session(&self, headers: &HeaderMap) -> bool {
        match self {
            TargetStickiness::LbCookie { .. } => false,
            TargetStickiness::AppCookie { cookie_name, .. } => cookie::has(headers, cookie_name),
        }
    }

    /// The target a request's cookie sticks it to in `group`, if it carries one that opens,
    /// names this group, and (app_cookie) comes with the application's cookie.
    pub fn requested(
        &self,
        sealer: &Sealer,
        headers: &HeaderMap,
        group: &str,
        now: u64,
    ) -> Option<SocketAddr> {
        let (kind, value) = match self {
            TargetStickiness::LbCookie { .. } => (
                Kind::Target,
                cookie::find(headers, AWSALB).or_else(|| cookie::find(headers, AWSALBCORS))?,
            ),
            TargetStickiness::AppCookie { cookie_name, .. } => {
                // Out of its session, a client is balanced afresh (ALB's rule).
                if !cookie::has(headers, cookie_name) {
                    return None;
                }
                (Kind::App, cookie::find(headers, AWSALBAPP)?)
            }
        };
        let opened = sealer.open(kind, value, now)?;
        if opened.group() != group.as_bytes() {
            return None;
        }
        opened.target
    }

    /// Adds to a response of `target` in `group` the cookies that keep its client there.
    /// lb_cookie refreshes `AWSALB` (and its twin) on every response, as ALB does. app_cookie
    /// issues `AWSALBAPP-0` when the target sets the application's cookie (a session begins or
    /// is renewed), and when a client `in_session` (see [`Self::in_session`]) was sent elsewhere
    /// than its cookie said (`stuck_to`: none, or a target that went away), so that it sticks to
    /// the new one.
    #[allow(clippy::too_many_arguments)] // each is one fact of the exchange; a struct would only rename them
    pub fn add_cookies(
        &self,
        sealer: &Sealer,
        group: &str,
        target: SocketAddr,
        stuck_to: Option<SocketAddr>,
        in_session: bool,
        response: &mut HeaderMap,
        now: SystemTime,
    ) {
        let expires = now + self.duration();
        let ticket = |kind| Ticket {
            kind,
            expires: unix_seconds(expires),
            group,
            target: Some(target),
        };
        match self {
            TargetStickiness::LbCookie { .. } => {
                let value = sealer.seal(&ticket(Kind::Target));
                add_twins(response, AWSALB, AWSALBCORS, &value, expires);
            }
            TargetStickiness::AppCookie { cookie_name, .. } => {
                let moved = in_session && stuck_to != Some(target);
                if moved || cookie::sets(response, cookie_name) {
                    let value = sealer.seal(&ticket(Kind::App));
                    response.append(
                        http::header::SET_COOKIE,
                        cookie::set_cookie(AWSALBAPP, &value, expires, false),
                    );
                }
            }
        }
    }
}

/// The target group a request's `AWSALBTG` (or its twin) names, if it opens.
pub fn requested_group(sealer: &Sealer, headers: &HeaderMap, now: u64) -> Option<Opened> {
    let value = cookie::find(headers, AWSALBTG).or_else(|| cookie::find(headers, AWSALBTGCORS))?;
    sealer.open(Kind::Group, value, now)
}

/// Adds `AWSALBTG` and its twin, naming `group` for `duration` from `now`.
pub fn add_group_cookies(
    sealer: &Sealer,
    group: &str,
    duration: Duration,
    response: &mut HeaderMap,
    now: SystemTime,
) {
    let expires = now + duration;
    let value = sealer.seal(&Ticket {
        kind: Kind::Group,
        expires: unix_seconds(expires),
        group,
        target: None,
    });
    add_twins(response, AWSALBTG, AWSALBTGCORS, &value, expires);
}

/// A cookie and its CORS twin, with one sealed value.
fn add_twins(response: &mut HeaderMap, name: &str, cors: &str, value: &str, expires: SystemTime) {
    let h = http::header::SET_COOKIE;
    response.append(h.clone(), cookie::set_cookie(name, value, expires, false));
    response.append(h, cookie::set_cookie(cors, value, expires, true));
}

/// Seconds since the Unix epoch (0 for a clock set before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderValue, COOKIE, SET_COOKIE};

    fn sealer() -> Sealer {
        Sealer::new(b"0123456789abcdef")
    }

    fn addr(port: u16) -> SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    /// The request headers a browser would send back after `response`.
    fn cookies_of(response: &HeaderMap, extra: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in response.get_all(SET_COOKIE) {
            let pair = line.to_str().unwrap().split(';').next().unwrap();
            h.append(COOKIE, HeaderValue::from_str(pair).unwrap());
        }
        if !extra.is_empty() {
            h.append(COOKIE, HeaderValue::from_str(extra).unwrap());
        }
        h
    }

    #[test]
    fn an_lb_cookie_names_its_group_and_target() {
        let s = sealer();
        let st = TargetStickiness::LbCookie {
            duration: Duration::from_secs(60),
        };
        let now = SystemTime::now();
        let mut resp = HeaderMap::new();
        st.add_cookies(&s, "web", addr(1), None, false, &mut resp, now);
        assert_eq!(resp.get_all(SET_COOKIE).iter().count(), 2);
        let req = cookies_of(&resp, "");
        let t = unix_seconds(now);
        assert_eq!(st.requested(&s, &req, "web", t), Some(addr(1)));
        assert_eq!(st.requested(&s, &req, "api", t), None, "another group's");
        assert_eq!(st.requested(&s, &req, "web", t + 60), None, "expired");
        // The CORS twin alone is enough.
        let mut cors = HeaderMap::new();
        let twin = req.get_all(COOKIE).iter().nth(1).unwrap().clone();
        cors.insert(COOKIE, twin);
        assert_eq!(st.requested(&s, &cors, "web", t), Some(addr(1)));
    }

    #[test]
    fn an_app_cookie_is_followed_only_in_the_applications_session() {
        let s = sealer();
        let st = TargetStickiness::AppCookie {
            cookie_name: "SESSION".into(),
            duration: Duration::from_secs(60),
        };
        let now = SystemTime::now();
        let t = unix_seconds(now);
        let mut resp = HeaderMap::new();
        st.add_cookies(&s, "web", addr(1), None, false, &mut resp, now);
        assert!(
            resp.is_empty(),
            "the target set no SESSION: nothing to follow"
        );

        resp.insert(SET_COOKIE, HeaderValue::from_static("SESSION=abc; Path=/"));
        st.add_cookies(&s, "web", addr(1), None, false, &mut resp, now);
        let issued: Vec<_> = resp.get_all(SET_COOKIE).iter().collect();
        assert_eq!(issued.len(), 2);
        assert!(issued[1].to_str().unwrap().starts_with("AWSALBAPP-0="));

        let in_session = cookies_of(&resp, "");
        assert_eq!(st.requested(&s, &in_session, "web", t), Some(addr(1)));
        let mut out_of_session = HeaderMap::new();
        let app = in_session.get_all(COOKIE).iter().nth(1).unwrap().clone();
        out_of_session.insert(COOKIE, app);
        assert_eq!(st.requested(&s, &out_of_session, "web", t), None);

        // In a session but sent elsewhere (its target went away): stuck to the new one.
        let mut again = HeaderMap::new();
        assert!(st.in_session(&in_session));
        assert!(!st.in_session(&out_of_session));
        st.add_cookies(&s, "web", addr(2), Some(addr(1)), true, &mut again, now);
        assert_eq!(again.len(), 1);
        // Where its cookie said: nothing new unless the target renews its session.
        let mut same = HeaderMap::new();
        st.add_cookies(&s, "web", addr(1), Some(addr(1)), true, &mut same, now);
        assert!(same.is_empty());
    }

    #[test]
    fn group_cookies_round_trip_and_do_not_open_as_target_cookies() {
        let s = sealer();
        let now = SystemTime::now();
        let mut resp = HeaderMap::new();
        add_group_cookies(&s, "blue", Duration::from_secs(5), &mut resp, now);
        let req = cookies_of(&resp, "");
        let opened = requested_group(&s, &req, unix_seconds(now)).unwrap();
        assert_eq!(opened.group(), b"blue");
        let lb = TargetStickiness::LbCookie {
            duration: Duration::from_secs(5),
        };
        let value = cookie::find(&req, AWSALBTG).unwrap();
        let mut replayed = HeaderMap::new();
        let forged = format!("AWSALB={}", std::str::from_utf8(value).unwrap());
        replayed.insert(COOKIE, HeaderValue::from_str(&forged).unwrap());
        assert_eq!(lb.requested(&s, &replayed, "blue", unix_seconds(now)), None);
    }
}
