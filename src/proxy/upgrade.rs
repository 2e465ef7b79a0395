//! The hand-off of an upgraded exchange (WebSocket) to a tunnel between the two connections.

use bytes::Bytes;
use http::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

use super::body::Reply;
use super::ConnContext;
use crate::targets::OutstandingGuard;
use crate::tunnel;
use crate::upstream::response::TargetBody;

/// Once the target has answered 101: the client's and the target's connections are joined in a
/// tunnel of their own task, which keeps the target counted as outstanding and the client
/// connection under the descriptor cap, and the client gets the 101 head with an empty body.
pub(super) fn hand_off(
    client_side: OnUpgrade,
    resp: Response<TargetBody>,
    outstanding: OutstandingGuard,
    ctx: &ConnContext,
) -> Response<Reply> {
    let (parts, body) = resp.into_parts();
    // The target's connection is the tunnel's, never the pool's again.
    let target_side = body.upgraded();
    ctx.activity.mark_upgraded();
    let idle = ctx.listener.plane.snapshot.load().limits.idle_timeout;
    let slot = ctx.slot.clone();
    tokio::spawn(async move {
        let closed = outstanding.target().closed().clone();
        match (client_side.await, target_side) {
            (Ok(c), Some(t)) => tunnel::run(TokioIo::new(c), t, idle, closed).await,
            (Err(e), _) => debug!(error = %e, "upgrade failed"),
            (_, None) => debug!("upgrade failed: the target's connection is gone"),
        }
        drop(outstanding);
        drop(slot);
    });
    Response::from_parts(parts, Reply::full(Bytes::new()))
}
