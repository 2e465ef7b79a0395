//! Sources of targets: where a target group learns its members from, besides the configuration
//! file and the admin API. Runs on the control thread; the data plane only ever sees the group's
//! membership, published by [`GroupState::apply`](crate::targets::GroupState::apply).
//!
//! A source is a [`TargetSource`] (pingora's `ServiceDiscovery` is the model): it waits for the
//! next change of its targets and says it as an [`Update`]. [`follow`] applies each update to its
//! group through the one membership entry point, as [`Origin::Discovery`], so discovered targets
//! go through the same registration, health checks and draining as any other, and a reload of
//! the file leaves them alone. An address the file or the API registers too stays until every
//! one of them lets go; the admin API cannot deregister a discovered target. A source that knows
//! which task is behind an address says so in its [`Registration`]s, so that a new task on an old
//! one's host port is checked afresh. [`Static`] is the simplest source: a fixed list.

pub mod ecs;
mod supervisor;

pub use supervisor::{run, Discovery, Plan};

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::targets::{Applied, GroupState, Origin, Registration, State, Target, Update};

/// Why a source could not say what its targets are this time. The group keeps the targets it
/// has: a failed lookup is no evidence that they are gone.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct SourceError {
    /// The source, as [`TargetSource::name`] gives it.
    pub source_name: String,
    pub reason: String,
}

/// A source of one group's targets.
pub trait TargetSource: Send {
    /// What the source follows, for logs (`ecs:prod/service:api`).
    fn name(&self) -> String;

    /// Waits for the source's next word on its targets (a polling source may say the same again:
    /// applying it changes nothing); `None` when the source has ended. A source paces itself
    /// (its refresh interval, its backoff after errors).
    fn next(&mut self) -> impl Future<Output = Option<Result<Update, SourceError>>> + Send;
}

/// A fixed list of targets: one [`Update::Reset`], then nothing more.
#[derive(Debug, Clone)]
pub struct Static {
    targets: Option<Vec<Registration>>,
}

impl Static {
    pub fn new(targets: Vec<Registration>) -> Self {
        Static {
            targets: Some(targets),
        }
    }
}

impl TargetSource for Static {
    fn name(&self) -> String {
        "static".into()
    }

    async fn next(&mut self) -> Option<Result<Update, SourceError>> {
        match self.targets.take() {
            Some(t) => Some(Ok(Update::Reset(t))),
            // Nothing ever changes: wait until the follower is stopped.
            None => std::future::pending().await,
        }
    }
}

/// Applies `source`'s updates to `group` until the source ends or `stop` is cancelled. Targets
/// that leave drain for `delay` (the group's deregistration delay). `answered` is set once the
/// source has said what its targets are.
pub async fn follow<S: TargetSource>(
    mut source: S,
    group: Arc<GroupState>,
    delay: Duration,
    stop: CancellationToken,
    answered: Arc<AtomicBool>,
) {
    let name = source.name();
    loop {
        let next = tokio::select! {
            n = source.next() => n,
            _ = stop.cancelled() => return,
        };
        match next {
            None => return,
            Some(Ok(update)) => match group.apply(Origin::Discovery, update, delay) {
                Ok(applied) => {
                    answered.store(true, Ordering::Release);
                    if !applied.added.is_empty() || !applied.draining.is_empty() {
                        log_change(&group, &name, &applied);
                    }
                }
                Err(e) => {
                    warn!(target_group = %group.name, source = %name, error = %e, "discovered targets not applied; the group keeps its targets");
                }
            },
            Some(Err(e)) => {
                warn!(target_group = %group.name, error = %e, "target discovery failed; the group keeps its targets");
            }
        }
    }
}

/// The one line a discovery change logs: the addresses added and removed (removed ones drain
/// for the group's deregistration delay), and how many targets discovery has in the group now.
fn log_change(group: &GroupState, source: &str, applied: &Applied) {
    let addrs = |ts: &[Arc<Target>]| ts.iter().map(|t| t.addr.to_string()).collect::<Vec<_>>();
    let total = group
        .members()
        .iter()
        .filter(|t| t.sources().contains(Origin::Discovery) && t.state() != State::Draining)
        .count();
    info!(
        target_group = %group.name,
        source,
        added = ?addrs(&applied.added),
        removed = ?addrs(&applied.draining),
        total,
        "discovered targets changed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::{Registry, Sources, State};
    use std::net::SocketAddr;
    use tokio::sync::mpsc;

    fn addr(p: u16) -> SocketAddr {
        ([127, 0, 0, 1], p).into()
    }

    /// A source fed by a test, one update or error at a time.
    struct Fed(mpsc::UnboundedReceiver<Result<Update, SourceError>>);

    impl TargetSource for Fed {
        fn name(&self) -> String {
            "fed".into()
        }

        async fn next(&mut self) -> Option<Result<Update, SourceError>> {
            self.0.recv().await
        }
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn ports(g: &GroupState, state: State) -> Vec<u16> {
        let mut p: Vec<u16> = g
            .members()
            .iter()
            .filter(|t| t.state() == state)
            .map(|t| t.addr.port())
            .collect();
        p.sort();
        p
    }

    #[tokio::test]
    async fn discovered_targets_join_and_drain_beside_configured_ones() {
        let registry = Registry::default();
        let g = registry.group("api");
        g.apply(
            Origin::Config,
            Update::Reset(vec![addr(1).into()]),
            Duration::ZERO,
        )
        .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(
            Fed(rx),
            g.clone(),
            Duration::from_secs(60),
            stop.clone(),
            Arc::default(),
        ));

        tx.send(Ok(Update::Reset(vec![addr(2).into(), addr(3).into()])))
            .unwrap();
        settle().await;
        assert_eq!(ports(&g, State::Initial), [1, 2, 3]);
        assert!(g
            .members()
            .iter()
            .filter(|t| t.addr != addr(1))
            .all(|t| t.sources() == Sources::from(Origin::Discovery)));

        // A failed lookup changes nothing; the next answer drains what left.
        tx.send(Err(SourceError {
            source_name: "fed".into(),
            reason: "throttled".into(),
        }))
        .unwrap();
        tx.send(Ok(Update::Reset(vec![addr(3).into()]))).unwrap();
        settle().await;
        assert_eq!(ports(&g, State::Draining), [2]);
        assert_eq!(ports(&g, State::Initial), [1, 3]);

        // A reload of the file resets only its own targets.
        g.apply(Origin::Config, Update::Reset(vec![]), Duration::ZERO)
            .unwrap();
        assert_eq!(ports(&g, State::Initial), [3]);

        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_static_source_resets_once_then_waits_for_the_stop() {
        let registry = Registry::default();
        let g = registry.group("web");
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(
            Static::new(vec![addr(7).into()]),
            g.clone(),
            Duration::ZERO,
            stop.clone(),
            Arc::default(),
        ));
        settle().await;
        assert_eq!(ports(&g, State::Initial), [7]);
        assert!(!task.is_finished(), "a static source does not end");
        stop.cancel();
        task.await.unwrap();
    }
}
