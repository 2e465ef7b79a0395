//! How long one side of an exchange has sent nothing while the other waits on it: the request
//! body waiting on its client, the response body waiting on its target. ALB's idle timeout
//! counts data either way on both of its connections; this is that count for one stream.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// When a body has waited on its sender for too long. Counted from when the body began to wait,
/// not from its last chunk: a receiver that reads slowly holds the body up without the sender
/// being at fault.
pub struct StallClock {
    idle: Duration,
    /// When the body last began to wait on its sender.
    since: Instant,
    /// Armed at the first wait and moved on only when it fires: a clock read per wait, not a
    /// timer reset per wait.
    timer: Option<Pin<Box<Sleep>>>,
}

impl StallClock {
    /// A clock whose body has just begun to wait, and may wait `idle`.
    pub fn new(idle: Duration) -> Self {
        StallClock {
            idle,
            since: Instant::now(),
            timer: None,
        }
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    pub fn wait_began(&mut self) {
        self.since = Instant::now();
    }

    /// Whether the sender has sent nothing for `idle` while the body waits on it; if not, the
    /// task is woken when that could be so. While `busy` (data moves the other way: the
    /// target's response streams to the client while the client's upload waits), the exchange
    /// is not idle, as a bidirectional stream whose client only listens for a while is not.
    pub fn stalled(&mut self, cx: &mut Context<'_>, busy: bool) -> bool {
        let mut due = self.since + self.idle;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        while timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if busy && now >= due {
                self.since = now;
                due = now + self.idle;
            } else if now >= due {
                return true;
            }
            // The body waited anew since the timer was set, or data moved the other way.
            timer.as_mut().reset(due);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stall runs from the latest wait's start, not from when the timer was first set.
    #[tokio::test(start_paused = true)]
    async fn a_body_stalls_idle_after_it_began_to_wait() {
        let second = Duration::from_secs(1);
        let mut clock = StallClock::new(10 * second);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(!clock.stalled(&mut cx, false));
        tokio::time::advance(6 * second).await;
        clock.wait_began();
        // The first timer passes; the latest wait began 5 s ago.
        tokio::time::advance(5 * second).await;
        assert!(!clock.stalled(&mut cx, false));
        tokio::time::advance(4 * second).await;
        assert!(!clock.stalled(&mut cx, false));
        tokio::time::advance(second).await;
        // While data moves the other way, the exchange is not idle: the clock starts again.
        assert!(!clock.stalled(&mut cx, true), "busy");
        tokio::time::advance(9 * second).await;
        assert!(!clock.stalled(&mut cx, false));
        tokio::time::advance(second).await;
        assert!(
            clock.stalled(&mut cx, false),
            "10 s into the wait, the answer over"
        );
    }
}
