//! The one retry policy of a forwarded request: after a failed attempt, whether to send it again
//! on a new connection to the same target, on another target, or to give up.
//!
//! It lives here, below the proxy, because the pool consults it too: a request that a pooled
//! connection gave back unwritten is resent inside [`Pool::send`](super::pool::Pool::send), where
//! the connection is known. Every attempt of a request goes through one [`Retry`]: the proxy's
//! loop, and one per call into the pool for the resends the pool makes itself.

use super::pool::Reuse;

/// How an attempt failed, as far as resending goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection went away before the request was written (hyper handed it back whole): the
    /// target never saw it, so any request may go again. `reused`: the connection was an idle
    /// one taken from the pool (or an HTTP/2 one made before), not one made for this request.
    Unsent { reused: bool },
    /// A reused HTTP/1 connection was closed under the request after it was written, before any
    /// answer: the keep-alive race. The target most likely did not read it.
    Stale,
    /// No connection could be made (refused, timed out): the target never saw the request.
    Unreachable,
    /// Anything else: the target may have acted on the request.
    Other,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it again to the same target, on a connection made for it.
    NewConnection,
    /// Send it to another target, if there is one (a healthy one first; see
    /// `TargetGroup::pick_another`).
    AnotherTarget,
    GiveUp,
}

/// The retry state of one request (or of one call into the pool).
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// The request can be sent again unchanged and twice is allowed: idempotent, no body, not an
    /// upgrade (RFC 9110, 9.2.2).
    replayable: bool,
    /// Which HTTP/1 connection the next attempt may take.
    reuse: Reuse,
    /// An unsent request was already resent once: a new connection failing the same way is final.
    resent_unsent: bool,
    /// The request already moved to another target once.
    moved: bool,
}

impl Retry {
    pub fn new(replayable: bool) -> Self {
        Retry {
            replayable,
            reuse: Reuse::Pooled,
            resent_unsent: false,
            moved: false,
        }
    }

    /// A policy that starts where a caller's attempt is: the pool's resends of an unsent request
    /// are its own, whatever the proxy did before.
    pub fn for_attempt(reuse: Reuse) -> Self {
        Retry {
            reuse,
            ..Retry::new(false)
        }
    }

    /// Which HTTP/1 connection the next attempt may take.
    pub fn reuse(&self) -> Reuse {
        self.reuse
    }

    /// Decides after a failed attempt, and notes what was decided.
    pub fn after(&mut self, failure: Failure) -> Decision {
        match failure {
            Failure::Unsent { reused: true } if !self.resent_unsent => {
                self.resent_unsent = true;
                self.reuse = Reuse::NewConnection;
                Decision::NewConnection
            }
            Failure::Stale if self.replayable && self.reuse == Reuse::Pooled => {
                self.reuse = Reuse::NewConnection;
                Decision::NewConnection
            }
            Failure::Unreachable if self.replayable && !self.moved => {
                self.moved = true;
                Decision::AnotherTarget
            }
            _ => Decision::GiveUp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;
    use Failure::*;

    /// Each row: whether the request is replayable, the failures in order, and what the policy
    /// decides after each.
    #[test]
    fn the_retry_table() {
        let table: &[(bool, &[Failure], &[Decision])] = &[
            // A replayable request: a stale connection once, then another target once.
            (true, &[Stale], &[NewConnection]),
            (true, &[Stale, Stale], &[NewConnection, GiveUp]),
            (true, &[Unreachable, Unreachable], &[AnotherTarget, GiveUp]),
            (true, &[Stale, Unreachable], &[NewConnection, AnotherTarget]),
            (true, &[Unreachable, Stale], &[AnotherTarget, NewConnection]),
            (true, &[Other], &[GiveUp]),
            // Anything else is never sent twice...
            (false, &[Stale], &[GiveUp]),
            (false, &[Unreachable], &[GiveUp]),
            (false, &[Other], &[GiveUp]),
            // ...except what never left: once, and only from a reused connection.
            (false, &[Unsent { reused: true }], &[NewConnection]),
            (
                false,
                &[Unsent { reused: true }, Unsent { reused: true }],
                &[NewConnection, GiveUp],
            ),
            (false, &[Unsent { reused: false }], &[GiveUp]),
            (true, &[Unsent { reused: false }], &[GiveUp]),
        ];
        for (replayable, failures, want) in table {
            let mut retry = Retry::new(*replayable);
            let got: Vec<Decision> = failures.iter().map(|f| retry.after(*f)).collect();
            assert_eq!(&got, want, "replayable {replayable}, {failures:?}");
        }
    }

    #[test]
    fn connections_follow_the_decisions() {
        let mut retry = Retry::new(true);
        assert_eq!(retry.reuse(), Reuse::Pooled);
        retry.after(Failure::Unreachable);
        assert_eq!(
            retry.reuse(),
            Reuse::Pooled,
            "a pooled one on the next target"
        );
        retry.after(Failure::Stale);
        assert_eq!(retry.reuse(), Reuse::NewConnection);

        let pool = Retry::for_attempt(Reuse::NewConnection);
        assert_eq!(pool.reuse(), Reuse::NewConnection);
    }
}
