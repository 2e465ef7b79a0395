//! Target groups at run time: the targets a group forwards to, the balancer that picks among them, and
//! the upstream client that carries requests to them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};

use crate::balancer::{Balancer, RoundRobin};
use crate::config::validate::{Algorithm, Protocol, TargetGroupConfig};
use crate::upstream::{self, UpstreamClient};

/// One registered target.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `ip:port`, built once because every forwarded request's URI needs it.
    pub authority: Authority,
    /// Requests sent to this target whose response has not finished yet.
    outstanding: AtomicUsize,
}

impl Target {
    pub fn new(addr: SocketAddr) -> Self {
        Target {
            addr,
            authority: addr
                .to_string()
                .parse()
                .expect("a socket address is a valid authority"),
            outstanding: AtomicUsize::new(0),
        }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a request as outstanding until the guard is dropped, whichever way the request ends.
    pub fn begin(self: &Arc<Self>) -> OutstandingGuard {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        OutstandingGuard(self.clone())
    }
}

/// Decrements a target's outstanding count on drop.
#[derive(Debug)]
pub struct OutstandingGuard(Arc<Target>);

impl Drop for OutstandingGuard {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A target group as the data plane sees it.
#[derive(Debug)]
pub struct TargetGroup {
    pub name: Arc<str>,
    pub scheme: Scheme,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    targets: Box<[Arc<Target>]>,
    balancer: Box<dyn Balancer>,
    pub client: UpstreamClient,
}

impl TargetGroup {
    pub fn new(cfg: &TargetGroupConfig) -> Self {
        let balancer: Box<dyn Balancer> = match cfg.algorithm {
            Algorithm::RoundRobin => Box::<RoundRobin>::default(),
        };
        TargetGroup {
            name: cfg.name.as_str().into(),
            scheme: match cfg.protocol {
                Protocol::Http => Scheme::HTTP,
                Protocol::Https => Scheme::HTTPS,
            },
            connect_timeout: cfg.connect_timeout,
            response_timeout: cfg.response_timeout,
            targets: cfg
                .targets
                .iter()
                .map(|&a| Arc::new(Target::new(a)))
                .collect(),
            balancer,
            client: upstream::client(cfg.connect_timeout),
        }
    }

    pub fn targets(&self) -> &[Arc<Target>] {
        &self.targets
    }

    /// The target for the next request, or `None` when the group has no targets.
    pub fn pick(&self) -> Option<&Arc<Target>> {
        self.balancer.pick(&self.targets)
    }
}
