//! The hand-off of an upgraded exchange (WebSocket) to a tunnel between the two connections.

use bytes::Bytes;
use http::Response;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

use super::body::Reply;
use super::ConnContext;
use crate::targets::OutstandingGuard;
use crate::tunnel;
use crate::upstream::pool::Lease;

/// Once the target has answered 101: the client's and the target's connections are joined in a
/// tunnel of their own task, which keeps the target counted as outstanding and the client
/// connection under the descriptor cap, and the client gets the 101 head with an empty body.
pub(super) fn hand_off(
    client_side: OnUpgrade,
    mut resp: Response<Incoming>,
    outstanding: OutstandingGuard,
    lease: Option<Lease>,
    ctx: &ConnContext,
) -> Response<Reply> {
    let target_side = hyper::upgrade::on(&mut resp);
    ctx.activity.mark_upgraded();
    let idle = ctx.listener.plane.snapshot.load().limits.idle_timeout;
    let slot = ctx.slot.clone();
    tokio::spawn(async move {
        let closed = outstanding.target().closed().clone();
        let joined = tokio::try_join!(client_side, target_side);
        // The connection now belongs to the tunnel; never to the pool again.
        drop(lease);
        match joined {
            Ok((c, t)) => tunnel::run(TokioIo::new(c), TokioIo::new(t), idle, closed).await,
            Err(e) => debug!(error = %e, "upgrade failed"),
        }
        drop(outstanding);
        drop(slot);
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, Reply::full(Bytes::new()))
}
