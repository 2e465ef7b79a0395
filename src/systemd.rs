//! systemd's readiness protocol (sd_notify(3)), for `Type=notify` units
//! (`deploy/systemd/seawall.service`). Every message is a datagram to the socket named by
//! `NOTIFY_SOCKET`; without that variable (not under systemd, or a unit of another type) nothing
//! is sent, and a failed send is logged, never fatal: serving matters more than telling.
//!
//! What systemd hears, and when:
//! - `READY=1` once every listener accepts and the admin server runs: `systemctl start`
//!   returns then, and units ordered after seawall start;
//! - `RELOADING=1` (with `MONOTONIC_USEC`, which systemd 253 and later want) when a reload
//!   begins, `READY=1` when it is over, applied or refused: a refused file leaves the old
//!   configuration serving, so the service is ready either way;
//! - `STOPPING=1` when a shutdown starts the drain;
//! - after a binary upgrade, `MAINPID=<its pid>` and `READY=1` from the new process, once it
//!   accepts on the sockets and before it lets the old one go: systemd then follows the new
//!   process as the service's main one, and the old one's exit is no longer the service's
//!   (`NotifyAccess=all` lets a process other than the main one send this). The old process
//!   says nothing after the hand-over: with `NotifyAccess=all` its `STOPPING=1` would stop the
//!   service the new process now is.

use sd_notify::NotifyState;
use tracing::warn;

/// Every listener accepts: the service has started.
pub fn ready() {
    send("ready", &[NotifyState::Ready]);
}

/// This process took over from the one it replaces in a binary upgrade, and accepts on every
/// socket: it is the service's main process from now on.
pub fn took_over() {
    send(
        "took over",
        &[NotifyState::MainPid(std::process::id()), NotifyState::Ready],
    );
}

/// A reload begins.
pub fn reloading() {
    // systemd (253 and later) matches a reload to the moment it was asked for by this clock.
    let now = NotifyState::monotonic_usec_now().ok();
    let mut states = vec![NotifyState::Reloading];
    states.extend(now);
    send("reloading", &states);
}

/// A reload is over (applied or refused: the configuration in force serves either way).
pub fn reloaded() {
    send("reloaded", &[NotifyState::Ready]);
}

/// A shutdown starts the drain.
pub fn stopping() {
    send("stopping", &[NotifyState::Stopping]);
}

fn send(what: &str, states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(state = what, error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}
