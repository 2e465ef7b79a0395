//! Which data-plane worker the running thread is, for state kept per worker: a target's
//! connection pool keeps a shard per worker, so that a worker taking and returning connections
//! writes no cache line that another core writes too, and finds only connections its own
//! reactor watches.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many workers the process runs. Set at start, before the first target (and its pool) is
/// made; anything made before then has one shard, which is still correct, only shared.
static COUNT: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Records that the process runs `n` data-plane workers.
pub fn set_count(n: usize) {
    COUNT.store(n.max(1), Ordering::Relaxed);
}

/// How many data-plane workers the process runs (1 until told otherwise).
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// Marks the running thread as worker `index`: called on each worker's thread before it serves.
pub fn enter(index: usize) {
    INDEX.with(|i| i.set(index));
}

/// The running thread's worker: 0 on a thread that is not one (the control thread, tests).
pub fn index() -> usize {
    INDEX.with(Cell::get)
}
