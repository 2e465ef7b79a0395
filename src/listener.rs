//! Accepting connections on a listener that the control side bound as a std socket and registered
//! with the data-plane runtime.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::server::{self, ListenerContext};

/// The kernel's accept queue length for every listener.
const BACKLOG: i32 = 4096;

/// Binds a listening socket the way a server needs it: address reuse so a restart does not wait for
/// TIME_WAIT, a deep accept queue, non-blocking for tokio.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accepts until the process starts draining. At most `max_connections` are served at once; past
/// that, new connections wait in the kernel's queue rather than being refused.
pub async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ListenerContext>,
    tracker: TaskTracker,
    max_connections: usize,
) {
    let shutdown = ctx.shared.shutdown.clone();
    let limit = Arc::new(Semaphore::new(max_connections));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let ctx = ctx.clone();
                tracker.spawn(async move {
                    let metrics = &ctx.shared.metrics;
                    metrics.new_connections_total.inc();
                    metrics.active_connections.inc();
                    server::serve(tcp, peer, ctx.clone()).await;
                    ctx.shared.metrics.active_connections.dec();
                    drop(permit);
                });
            }
            Err(e) if is_per_connection(&e) => debug!(error = %e, "accept: connection gone"),
            Err(e) => {
                // Out of file descriptors or memory: back off instead of spinning on the error.
                ctx.shared.metrics.rejected_connections_total.inc();
                warn!(listener = %ctx.name, error = %e, "accept failed; pausing 100ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
