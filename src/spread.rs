//! Which data-plane worker serves a new client connection.
//!
//! The workers accept on duplicates of one listening socket, and whichever is awake first takes
//! what waits in the queue. A burst of connections (a client's HTTP/2 pool, a load generator)
//! then lands on one worker, which serves it all on one core while the other workers idle: seen
//! here, 16 HTTP/2 connections all on one of two workers, every time. So each accept loop looks
//! before it serves: a connection that would put its worker more than one ahead of the least
//! busy one is handed to that worker instead. A handed-over connection costs two `epoll_ctl`s
//! and a wake-up of the other thread, once per connection; its requests cost nothing more.

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::runtime::Handle;

use crate::metrics::{Counted, Metrics};

/// The data plane's workers and the client connections each serves.
pub struct Workers {
    handles: Box<[Handle]>,
    /// `seawall_worker_connections{worker}`: the gauges are also the counts placement reads.
    serving: Box<[IntGauge]>,
}

/// How many connections a worker may serve beyond the least busy one before it hands the next
/// over. One rather than none: a worker whose connections come and go (a handshake per request)
/// would otherwise hand over about every other connection to even out a difference of one.
const SLACK: i64 = 1;

impl Workers {
    /// `handles`, the workers' runtimes, in worker order.
    pub fn new(handles: Vec<Handle>, metrics: &Metrics) -> Arc<Self> {
        assert!(!handles.is_empty(), "the data plane has a worker at least");
        let serving = (0..handles.len())
            .map(|i| {
                metrics
                    .worker_connections
                    .with_label_values(&[&i.to_string()])
            })
            .collect();
        Arc::new(Workers {
            handles: handles.into_boxed_slice(),
            serving,
        })
    }

    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// The worker that is to serve the connection worker `me` just accepted: `me`, unless that
    /// would put it more than [`SLACK`] ahead of the least busy worker, which gets it instead.
    pub fn place(&self, me: usize) -> usize {
        let mine = self.serving[me].get();
        let (least, fewest) = self
            .serving
            .iter()
            .enumerate()
            .map(|(i, g)| (i, g.get()))
            .min_by_key(|&(_, n)| n)
            .expect("a worker at least");
        if mine > fewest + SLACK {
            least
        } else {
            me
        }
    }

    /// Counts a connection on `worker` until the guard drops. Taken when the connection is
    /// placed, before the next accept, so that the next placement sees it.
    pub fn serving(&self, worker: usize) -> Counted {
        Counted::new(&self.serving[worker])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(n: usize) -> (tokio::runtime::Runtime, Arc<Workers>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handles = vec![rt.handle().clone(); n];
        let w = Workers::new(handles, &Metrics::new());
        (rt, w)
    }

    #[test]
    fn a_burst_accepted_by_one_worker_is_spread_over_all() {
        let (_rt, w) = workers(2);
        let held: Vec<Counted> = (0..16).map(|_| w.serving(w.place(1))).collect();
        let (a, b) = (w.serving[0].get(), w.serving[1].get());
        assert_eq!(a + b, 16);
        assert!((a - b).abs() <= SLACK + 1, "{a} and {b}");
        drop(held);
        assert_eq!(w.serving[0].get() + w.serving[1].get(), 0);
    }

    #[test]
    fn a_worker_keeps_what_it_accepts_within_the_slack() {
        let (_rt, w) = workers(2);
        let _a = w.serving(w.place(0));
        assert_eq!(w.place(0), 0, "one ahead is within the slack");
        let _b = w.serving(0);
        assert_eq!(w.place(0), 1, "two ahead is not");
        assert_eq!(w.place(1), 1);
    }

    #[test]
    fn one_worker_serves_everything() {
        let (_rt, w) = workers(1);
        let _held: Vec<Counted> = (0..5).map(|_| w.serving(w.place(0))).collect();
        assert_eq!(w.place(0), 0);
    }
}
