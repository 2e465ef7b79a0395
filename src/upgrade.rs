//! Zero-downtime binary upgrade: the running process starts the new binary and hands it every
//! listening socket (the admin one included) over a Unix socket with SCM_RIGHTS. Both processes
//! then hold the same sockets, so connections waiting in the kernel's accept queues are accepted by
//! whichever process takes them first and none is refused; once the new process reports ready,
//! the old one stops accepting, drains its connections and exits. A new binary that fails to start
//! or to report ready in time is stopped, and the old process goes on serving.
//!
//! SO_REUSEPORT is deliberately not used: closing the old process's socket would reset the
//! connections still queued on it.
//!
//! The process's [`Secrets`] travel with the sockets, so that the new process accepts the session
//! tickets and stickiness cookies the old one issued. The Unix socket therefore sits in a
//! directory only this process's user may enter.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use zeroize::Zeroize;

use crate::control::Control;
use crate::listener::{HandedOver, ListenerSet};
use crate::protocol::Protocol;
use crate::secrets::{ExportedSecrets, Secrets};

/// Names the Unix socket a process started for an upgrade fetches its sockets from.
pub const ENV_SOCKET: &str = "SEAWALL_UPGRADE_SOCKET";

/// How long the new process gets to start, take the sockets and report ready.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// The most sockets one hand-over carries (the kernel's SCM_MAX_FD is 253).
const MAX_FDS: usize = 250;

/// The largest manifest the new process reads (`MAX_FDS` listeners' entries fit several times).
const MANIFEST_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("cannot start {}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("handing the sockets over failed: {0}")]
    Handover(#[from] std::io::Error),
    #[error("the new process exited before it was ready ({0})")]
    Exited(std::process::ExitStatus),
    #[error("the new process did not report ready within {}s", READY_DEADLINE.as_secs())]
    Timeout,
    #[error("an upgrade is already under way")]
    Busy,
    #[error("the hand-over message is malformed: {0}")]
    Manifest(String),
    #[error("too many sockets to hand over ({0}; at most {MAX_FDS})")]
    TooMany(usize),
    #[error(
        "seawall runs as PID 1 (a container without an init): the container would end when this \
         process exits after the hand-over, taking the new one with it; roll out a new image instead"
    )]
    Pid1,
}

/// Whether a process with id `pid` may hand over to a new binary. PID 1 may not: it is a
/// container's first process, and the container ends with it, the new process included.
fn may_hand_over(pid: u32) -> Result<(), UpgradeError> {
    if pid == 1 {
        return Err(UpgradeError::Pid1);
    }
    Ok(())
}

/// What travels with the file descriptors, in the same order.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    listeners: Vec<Entry>,
    admin: bool,
    /// Required: a new process that made up keys of its own would refuse every ticket and cookie
    /// the old one issued, so an upgrade from a process that sends none fails instead.
    secrets: ExportedSecrets,
}

impl Manifest {
    fn parse(data: &[u8]) -> Result<(Manifest, Secrets), UpgradeError> {
        let manifest: Manifest =
            serde_json::from_slice(data).map_err(|e| UpgradeError::Manifest(e.to_string()))?;
        let secrets = Secrets::import(&manifest.secrets)
            .map_err(|e| UpgradeError::Manifest(format!("secrets: {e}")))?;
        Ok((manifest, secrets))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    name: String,
    bind: SocketAddr,
    https: bool,
}

/// The sockets a process started for an upgrade received, and the line back to the old process.
pub struct Inherited {
    pub listeners: Vec<HandedOver>,
    pub admin: Option<std::net::TcpListener>,
    /// The previous process's keys, which this one keeps using.
    pub secrets: Arc<Secrets>,
    channel: UnixStream,
}

impl Inherited {
    /// Tells the old process that this one accepts on every socket: it may stop.
    pub fn ready(mut self) -> std::io::Result<()> {
        self.channel.write_all(b"ready\n")
    }
}

/// When this process was started for an upgrade, connects to the old one and takes its sockets.
pub fn inherit() -> Result<Option<Inherited>, UpgradeError> {
    let Some(path) = std::env::var_os(ENV_SOCKET) else {
        return Ok(None);
    };
    let channel = UnixStream::connect(&path)?;
    channel.set_read_timeout(Some(READY_DEADLINE))?;
    let mut data = vec![0u8; MANIFEST_BYTES];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(
        &channel,
        &mut [IoSliceMut::new(&mut data)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    let parsed = Manifest::parse(&data[..received.bytes]);
    data.zeroize();
    let (manifest, secrets) = parsed?;
    let expected = manifest.listeners.len() + usize::from(manifest.admin);
    if fds.len() != expected {
        return Err(UpgradeError::Manifest(format!(
            "{} sockets announced, {} received",
            expected,
            fds.len()
        )));
    }
    let mut fds = fds.into_iter();
    let mut listeners = Vec::new();
    for e in manifest.listeners {
        let socket = std::net::TcpListener::from(fds.next().expect("counted above"));
        socket.set_nonblocking(true)?;
        listeners.push(HandedOver {
            name: e.name.into(),
            bind: e.bind,
            protocol: if e.https {
                Protocol::Https
            } else {
                Protocol::Http
            },
            socket,
        });
    }
    let admin = fds.next().map(std::net::TcpListener::from);
    if let Some(a) = &admin {
        a.set_nonblocking(true)?;
    }
    info!(
        listeners = listeners.len(),
        admin = admin.is_some(),
        "took over the listening sockets of the previous process"
    );
    Ok(Some(Inherited {
        listeners,
        admin,
        secrets: Arc::new(secrets),
        channel,
    }))
}

/// An upgrade asked for through the admin API; the reply carries the new process's id.
pub struct UpgradeRequest {
    pub reply: oneshot::Sender<Result<u32, Arc<UpgradeError>>>,
}

/// Asks the control thread for an upgrade and waits for its outcome.
pub async fn request(control: &Control) -> Result<u32, Arc<UpgradeError>> {
    let (tx, rx) = oneshot::channel();
    let gone = || Arc::new(UpgradeError::Busy);
    control
        .upgrade
        .send(UpgradeRequest { reply: tx })
        .map_err(|_| gone())?;
    rx.await.unwrap_or_else(|_| Err(gone()))
}

/// What an upgrade needs to know of this process.
pub struct Upgrader {
    control: Arc<Control>,
    listeners: Arc<ListenerSet>,
    /// A duplicate of the admin socket, to hand over.
    admin: Option<std::net::TcpListener>,
    /// The config file to start the new binary with (`None`: the embedded default).
    config: Option<PathBuf>,
    /// SIGUSR2, listened for from the start: until a handler is installed the signal's default
    /// action is to kill the process, which must never be what an upgrade request does.
    usr2: Option<tokio::signal::unix::Signal>,
}

impl Upgrader {
    /// Also installs the SIGUSR2 handler (see [`crate::control::listen_for`]).
    pub fn new(
        control: Arc<Control>,
        listeners: Arc<ListenerSet>,
        admin: Option<std::net::TcpListener>,
        config: Option<PathBuf>,
    ) -> Self {
        let usr2 = crate::control::listen_for(
            listeners.runtime(),
            tokio::signal::unix::SignalKind::user_defined2(),
            "SIGUSR2",
        );
        Upgrader {
            control,
            listeners,
            admin,
            config,
            usr2,
        }
    }

    /// Starts `binary`, hands it the sockets, and waits until it is ready. Returns its pid.
    async fn upgrade(&self, binary: &Path) -> Result<u32, UpgradeError> {
        // Whoever connects first takes the listening sockets and the keys, and a socket's own
        // mode follows the umask: in a 0700 directory, only this user (and root) can reach it.
        let dir = std::env::temp_dir().join(format!(
            "seawall-upgrade-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let socket_path = dir.join("handover.sock");
        let result = match tokio::net::UnixListener::bind(&socket_path) {
            Ok(server) => self.hand_over(binary, &socket_path, server).await,
            Err(e) => Err(e.into()),
        };
        let _ = std::fs::remove_file(&socket_path);
        let _ = std::fs::remove_dir(&dir);
        result
    }

    async fn hand_over(
        &self,
        binary: &Path,
        socket_path: &Path,
        server: tokio::net::UnixListener,
    ) -> Result<u32, UpgradeError> {
        let mut cmd = tokio::process::Command::new(binary);
        cmd.arg("run");
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.env(ENV_SOCKET, socket_path);
        let mut child = cmd.spawn().map_err(|source| UpgradeError::Spawn {
            binary: binary.to_path_buf(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        info!(pid, binary = %binary.display(), "upgrade: new process started");
        let exchange = async {
            let (stream, _) = server.accept().await?;
            let stream = stream.into_std()?;
            stream.set_nonblocking(false)?;
            self.send_sockets(&stream)?;
            // The answer comes once the new process serves; read it off the runtime's thread.
            tokio::task::spawn_blocking(move || {
                let mut stream = stream;
                stream.set_read_timeout(Some(READY_DEADLINE))?;
                let mut buf = [0u8; 6];
                stream.read_exact(&mut buf)?;
                if &buf == b"ready\n" {
                    Ok(())
                } else {
                    Err(std::io::Error::other("unexpected answer"))
                }
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok::<(), UpgradeError>(())
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(READY_DEADLINE, exchange) => r.unwrap_or(Err(UpgradeError::Timeout)),
            status = child.wait() => Err(match status {
                Ok(s) => UpgradeError::Exited(s),
                Err(e) => UpgradeError::Handover(e),
            }),
        };
        if let Err(e) = outcome {
            // The old process goes on serving; the half-started one must not linger.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(e);
        }
        // The new process outlives this one; nothing waits for it here.
        drop(child);
        Ok(pid)
    }

    fn send_sockets(&self, stream: &UnixStream) -> Result<(), UpgradeError> {
        let listeners = self.listeners.handover();
        let manifest = Manifest {
            listeners: listeners
                .iter()
                .map(|l| Entry {
                    name: l.name.to_string(),
                    bind: l.bind,
                    https: l.protocol == Protocol::Https,
                })
                .collect(),
            admin: self.admin.is_some(),
            secrets: self.control.secrets.export(),
        };
        let mut fds: Vec<BorrowedFd<'_>> = listeners.iter().map(|l| l.socket.as_fd()).collect();
        if let Some(a) = &self.admin {
            fds.push(a.as_fd());
        }
        if fds.len() > MAX_FDS {
            return Err(UpgradeError::TooMany(fds.len()));
        }
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(UpgradeError::TooMany(fds.len()));
        }
        // Room enough that the buffer never grows: a reallocation would leave a copy of the keys
        // behind in freed memory, out of reach of the wipe below.
        let mut body = Vec::with_capacity(MANIFEST_BYTES);
        serde_json::to_writer(&mut body, &manifest).expect("the manifest serialises");
        drop(manifest);
        let sent = sendmsg(
            stream,
            &[IoSlice::new(&body)],
            &mut control,
            SendFlags::empty(),
        );
        body.zeroize();
        sent.map_err(std::io::Error::from)?;
        Ok(())
    }
}

/// The control thread's upgrade loop: SIGUSR2 or `POST /upgrade` starts one; on success this
/// process drains and exits.
pub async fn run(
    mut upgrader: Upgrader,
    mut requests: mpsc::UnboundedReceiver<UpgradeRequest>,
    stop: CancellationToken,
) {
    let mut usr2 = upgrader.usr2.take();
    loop {
        let reply = tokio::select! {
            r = requests.recv() => match r {
                Some(r) => Some(r.reply),
                None => return,
            },
            Some(()) = async { usr2.as_mut()?.recv().await } => None,
            _ = stop.cancelled() => return,
        };
        let binary = upgrader.control.settings.load().binary.clone();
        let result = match may_hand_over(std::process::id()) {
            Ok(()) => upgrader.upgrade(&binary).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(pid) => info!(
                pid,
                "upgrade: the new process is ready; this one stops accepting and drains"
            ),
            // Not a passing failure: every upgrade asked of this process will be refused.
            Err(e @ UpgradeError::Pid1) => error!(error = %e, "upgrade refused"),
            Err(e) => warn!(error = %e, "upgrade failed; this process goes on serving"),
        }
        let done = result.is_ok();
        if let Some(reply) = reply {
            let _ = reply.send(result.map_err(Arc::new));
        }
        if done {
            upgrader
                .control
                .handed_over
                .store(true, std::sync::atomic::Ordering::Release);
            upgrader.control.shutdown.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(secrets: &Secrets) -> Vec<u8> {
        serde_json::to_vec(&Manifest {
            listeners: Vec::new(),
            admin: false,
            secrets: secrets.export(),
        })
        .unwrap()
    }

    #[test]
    fn pid_1_may_not_hand_over_and_any_other_may() {
        let refused = may_hand_over(1).unwrap_err();
        assert!(matches!(refused, UpgradeError::Pid1));
        let reason = refused.to_string();
        assert!(
            reason.contains("PID 1") && reason.contains("container"),
            "{reason}"
        );
        for pid in [2, 7, 4242, u32::MAX] {
            assert!(may_hand_over(pid).is_ok(), "{pid}");
        }
    }

    #[test]
    fn the_manifest_carries_the_cookie_key_and_the_ticket_keys() {
        let old = Secrets::generate();
        let ticket = old.tickets().for_listener("web").encrypt(b"state").unwrap();
        let (_, new) = Manifest::parse(&manifest_json(&old)).unwrap();
        assert_eq!(new.cookie_key(), old.cookie_key());
        let tickets = new.tickets().for_listener("web");
        assert_eq!(tickets.decrypt(&ticket).unwrap(), b"state");
    }

    #[test]
    fn a_manifest_with_missing_or_malformed_secrets_is_refused() {
        let good: serde_json::Value =
            serde_json::from_slice(&manifest_json(&Secrets::generate())).unwrap();
        let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            edit(&mut v);
            match Manifest::parse(&serde_json::to_vec(&v).unwrap()) {
                Err(UpgradeError::Manifest(reason)) => reason,
                Err(e) => panic!("another error: {e}"),
                Ok(_) => panic!("accepted: {v}"),
            }
        };
        let reason = edited(&|v| {
            v.as_object_mut().unwrap().remove("secrets");
        });
        assert!(reason.contains("missing field `secrets`"), "{reason}");
        let reason = edited(&|v| v["secrets"]["cookie_key"] = serde_json::json!([1, 2, 3]));
        assert!(reason.contains("invalid length"), "{reason}");
        let reason = edited(&|v| {
            v["secrets"].as_object_mut().unwrap().remove("tickets");
        });
        assert!(reason.contains("missing field `tickets`"), "{reason}");
        let reason = edited(&|v| v["secrets"]["tickets"]["current"]["secret"] = "x".into());
        assert!(reason.contains("invalid type"), "{reason}");
    }
}
