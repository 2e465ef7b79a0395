//! The real `seawall` binary as a child process, with the addresses it logged.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::get;

pub const BIN: &str = env!("CARGO_BIN_EXE_seawall");

/// The binary with a predictable environment. NO_COLOR is removed on purpose: a log written to a
/// pipe must carry no colour codes by itself (tests parse it, and so do log collectors).
pub fn cmd() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    c
}

/// Sends signal `name` (`TERM`, `HUP`, ...) to `pid` with the shell's `kill` builtin (no libc, no
/// extra package).
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{name} {pid}"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid} failed");
}

/// The value of a `key=value` field of a log line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
}

/// A JSON log line's message and fields (`--log-format json`: they are under `fields`), as
/// (`message`, the `fields` object); `None` for a line that is not a JSON object.
pub fn json_fields(line: &str) -> Option<(String, serde_json::Map<String, serde_json::Value>)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?.as_object()?.clone();
    let message = fields.get("message")?.as_str()?.to_string();
    Some((message, fields))
}

/// The listener name and address of a `listening` line, or (`None`, address) of the admin
/// server's, in either log format.
fn logged_addr(line: &str) -> Option<(Option<String>, SocketAddr)> {
    if let Some((message, fields)) = json_fields(line) {
        let addr = fields.get("addr")?.as_str()?.parse().ok()?;
        return match message.as_str() {
            "admin listening" => Some((None, addr)),
            "listening" => Some((Some(fields.get("listener")?.as_str()?.to_string()), addr)),
            _ => None,
        };
    }
    let addr = field(line, "addr")?.parse().ok()?;
    if line.contains("admin listening") {
        Some((None, addr))
    } else if line.contains(" listening ") {
        Some((Some(field(line, "listener")?.to_string()), addr))
    } else {
        None
    }
}

/// `seawall run` as a child process, with the addresses it logged.
pub struct Proc {
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
    listeners: HashMap<String, SocketAddr>,
    admin: Option<SocketAddr>,
}

impl Proc {
    /// Starts `seawall run --config FILE` and waits until it has logged the address of every
    /// listener in `listeners` (and of the admin server when `admin`).
    pub async fn start(config: &Path, listeners: &[&str], admin: bool) -> Proc {
        Self::start_with(config, listeners, admin, |_| {}).await
    }

    /// As [`Proc::start`], with the command adjusted first (its environment, say).
    pub async fn start_with(
        config: &Path,
        listeners: &[&str],
        admin: bool,
        adjust: impl FnOnce(&mut Command),
    ) -> Proc {
        Self::start_args(config, listeners, admin, adjust, &[]).await
    }

    /// As [`Proc::start_with`]; `after` goes on the command line after `run --config FILE`
    /// (what `adjust` adds comes before `run`).
    pub async fn start_args(
        config: &Path,
        listeners: &[&str],
        admin: bool,
        adjust: impl FnOnce(&mut Command),
        after: &[&str],
    ) -> Proc {
        let mut command = cmd();
        adjust(&mut command);
        command.args(["run", "--config"]).arg(config).args(after);
        Self::start_command(command, listeners, admin).await
    }

    /// As [`Proc::start`], for a command that ends up running seawall with its arguments already
    /// given (a shell that sets limits, then `exec`s the binary).
    pub async fn start_command(mut command: Command, listeners: &[&str], admin: bool) -> Proc {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stream = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut p = Proc {
            child,
            log,
            listeners: HashMap::new(),
            admin: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.listeners.len() < listeners.len() || (admin && p.admin.is_none()) {
            match rx.try_recv() {
                Ok(line) => match logged_addr(&line) {
                    Some((None, addr)) => p.admin = Some(addr),
                    Some((Some(name), addr)) => {
                        p.listeners.insert(name, addr);
                    }
                    None => {}
                },
                Err(mpsc::TryRecvError::Empty) => {
                    if let Some(status) = p.child.try_wait().unwrap() {
                        panic!("seawall exited early ({status}):\n{}", p.log());
                    }
                    assert!(
                        Instant::now() < deadline,
                        "seawall did not log its addresses within 30 s:\n{}",
                        p.log()
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        for name in listeners {
            assert!(p.listeners.contains_key(*name), "no listener {name}");
        }
        p
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners[listener]
    }

    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("admin configured")
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The lines of stderr read so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "seawall did not exit within {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls the admin server until /ready says 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if get(self.admin(), false, "127.0.0.1", "/ready").await.status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "never ready:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Only a test that failed half-way leaves the child running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
