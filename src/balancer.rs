//! Target selection: one small trait, allocation-free implementations.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::targets::Target;

/// Picks one target among those eligible for a request.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    fn pick<'a>(&self, targets: &'a [Arc<Target>]) -> Option<&'a Arc<Target>>;
}

/// Each target in turn. The counter is shared by all workers; a relaxed increment is enough because
/// fairness, not exact order, is what matters.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick<'a>(&self, targets: &'a [Arc<Target>]) -> Option<&'a Arc<Target>> {
        if targets.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        targets.get(n % targets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_each_target_in_turn() {
        let targets: Vec<_> = (1..=3)
            .map(|p| Arc::new(Target::new(([127, 0, 0, 1], p).into())))
            .collect();
        let rr = RoundRobin::default();
        let ports: Vec<u16> = (0..6)
            .map(|_| rr.pick(&targets).unwrap().addr.port())
            .collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3]);
        assert!(rr.pick(&[]).is_none());
    }
}
