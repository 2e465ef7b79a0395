//! ALB's access log and connection log: one line per request and one per TLS connection, in
//! ALB's field order and quoting (or one JSON object per line), written off the data plane.
//!
//! A worker keeps an [`Entry`] from a request's arrival, and when the request ends formats its
//! line ([`format`](mod@format)) into a bounded buffer that a thread of its own ([`writer`])
//! takes a batch at a time and writes; a worker never writes to a file and never waits for
//! the writer. When the writer falls behind (a slow disk, a pipe nobody reads) and the buffer
//! holds `buffer_lines` lines, new lines are dropped and counted in
//! `seawall_access_log_dropped_total`.
//!
//! Formatting on the worker is cheaper than handing the writer an entry to format: no entry is
//! allocated, sent and freed on another thread, and what a connection's lines share is formatted
//! once per connection. The lock is held for one line's formatting (a microsecond).
//!
//! The control side opens the files ([`AccessLog::open`], so that a file that cannot be opened
//! fails the load and leaves the running configuration in force), hands them over
//! ([`AccessLog::apply`]: on, off or moved by a reload), reopens them on SIGUSR1 for logrotate
//! ([`AccessLog::reopen`]) and flushes them at exit ([`AccessLog::close`]).

mod entry;
pub mod format;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use prometheus::IntCounter;
use tracing::{info, warn};

pub use entry::{
    Certificate, ConnText, ConnTraceId, Connection, ConnectionEntry, Entry, Request, RequestLine,
    RulePriority, TlsLine, TraceText, Verify, WallTime,
};
use writer::{Command, Lane, Output, Shared};

/// How lines are written: ALB's text format, or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// ALB's field order, space-separated, quoting as ALB quotes.
    #[default]
    Alb,
    /// One JSON object per line with the same fields, named as Athena's ALB table names them.
    Json,
}

impl std::str::FromStr for Format {
    type Err = crate::protocol::UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "alb" => Ok(Format::Alb),
            "json" => Ok(Format::Json),
            _ => Err(crate::protocol::UnknownValue::new(
                "access log format",
                s,
                "\"alb\" or \"json\"",
            )),
        }
    }
}

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The process's standard output (`"-"`).
    Stdout,
    /// A file, appended to, created if missing, reopened by path on SIGUSR1.
    File(PathBuf),
}

impl Destination {
    fn describe(&self) -> String {
        match self {
            Destination::Stdout => "stdout".into(),
            Destination::File(p) => p.display().to_string(),
        }
    }
}

/// `[access_log]` as compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The request log's destination.
    pub requests: Destination,
    pub format: Format,
    /// ALB's connection log, in a destination of its own (its lines would break the request
    /// log's parsers).
    pub connections: Option<Destination>,
    /// How many lines may wait for the writer before new ones are dropped (read at start).
    pub buffer_lines: usize,
}

/// Lines waiting for the writer at most, unless `[access_log] buffer_lines` says otherwise.
pub const DEFAULT_BUFFER_LINES: usize = 16384;

/// Bytes that may wait per line of `buffer_lines`: a line is some 400 bytes, and a request whose
/// long URL or user agent makes it kilobytes must not make the buffer hold that many of them.
const LINE_BYTES: usize = 1024;

/// A log file that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {}: {source}", path.display())]
pub struct OpenError {
    /// The `[access_log]` key that names the file.
    pub key: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

/// The logs' destinations, opened by the control side and handed to the writer.
#[derive(Debug, Default)]
pub struct Opened {
    requests: Option<Output>,
    connections: Option<Output>,
    format: Format,
    summary: Option<Settings>,
}

/// Which logs are on, as one byte the data plane reads per request and per connection.
const REQUESTS: u8 = 1;
const CONNECTIONS: u8 = 2;

/// The data plane's handle on the logs, and the control side's way to steer them.
pub struct AccessLog {
    on: AtomicU8,
    shared: Arc<Shared>,
    /// Lines that may wait for the writer, per log; beyond them lines are dropped.
    max_lines: usize,
    /// Bytes that may wait, per log, so that long lines cannot pin much memory either.
    max_bytes: usize,
    dropped: IntCounter,
    /// The writer thread, started when a log is first turned on.
    writer: Mutex<Writer>,
    /// The settings in force, so that a reload that keeps them says nothing of them.
    settings: Mutex<Option<Settings>>,
}

enum Writer {
    /// Not started: nothing has been logged yet.
    Idle,
    /// The thread, and what it says when it has written its last line.
    Running(JoinHandle<()>, mpsc::Receiver<()>),
    Closed,
}

/// How long [`AccessLog::close`] waits for the last lines to be written: a destination that
/// takes nothing (a pipe nobody reads) must not keep the process from exiting.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl AccessLog {
    /// Both logs off; at most `buffer_lines` lines wait for the writer once they are on.
    pub fn new(buffer_lines: usize, dropped: IntCounter) -> Self {
        let max_lines = buffer_lines.max(1);
        AccessLog {
            on: AtomicU8::new(0),
            shared: Arc::default(),
            max_lines,
            max_bytes: max_lines.saturating_mul(LINE_BYTES),
            dropped,
            writer: Mutex::new(Writer::Idle),
            settings: Mutex::new(None),
        }
    }

    /// Whether requests are logged: the data plane asks once per request, when it arrives.
    #[inline]
    pub fn requests_on(&self) -> bool {
        self.on.load(Ordering::Relaxed) & REQUESTS != 0
    }

    /// Whether TLS connections are logged.
    #[inline]
    pub fn connections_on(&self) -> bool {
        self.on.load(Ordering::Relaxed) & CONNECTIONS != 0
    }

    /// Formats a finished request's line for the writer; dropped and counted if it is behind.
    pub fn request(&self, r: &Request<'_>) {
        self.line(
            |s| &mut s.requests,
            |f, out| match f {
                (Format::Alb, fmt) => fmt.alb_request(r, out),
                (Format::Json, fmt) => fmt.json_request(r, out),
            },
        );
    }

    /// Formats a TLS connection's line for the writer; dropped and counted if it is behind.
    pub fn connection(&self, e: &ConnectionEntry) {
        self.line(
            |s| &mut s.connections,
            |f, out| match f {
                (Format::Alb, fmt) => fmt.alb_connection(e, out),
                (Format::Json, fmt) => fmt.json_connection(e, out),
            },
        );
    }

    fn line(
        &self,
        lane: impl FnOnce(&mut writer::State) -> &mut Lane,
        write: impl FnOnce((Format, &mut format::Formatter), &mut format::Lines),
    ) {
        let mut s = self.shared.lock();
        let l = lane(&mut s);
        let Some(format) = l.format else {
            return;
        };
        if l.lines >= self.max_lines || l.buf.len() >= self.max_bytes {
            drop(s);
            self.dropped.inc();
            return;
        }
        write((format, &mut l.formatter), &mut l.buf);
        l.lines += 1;
        let wake = std::mem::take(&mut s.writer_waiting);
        drop(s);
        if wake {
            self.shared.wake();
        }
    }

    /// Opens what `settings` names (nothing for `None`, which turns both logs off), without
    /// changing what is being written: a load that fails here changes nothing.
    pub fn open(settings: Option<&Settings>) -> Result<Opened, OpenError> {
        let Some(s) = settings else {
            return Ok(Opened::default());
        };
        let open = |key, d: &Destination| {
            Output::open(d).map_err(|source| OpenError {
                key,
                path: match d {
                    Destination::File(p) => p.clone(),
                    Destination::Stdout => PathBuf::from("-"),
                },
                source,
            })
        };
        Ok(Opened {
            requests: Some(open("access_log.path", &s.requests)?),
            connections: match &s.connections {
                Some(d) => Some(open("access_log.connections_path", d)?),
                None => None,
            },
            format: s.format,
            summary: Some(s.clone()),
        })
    }

    /// Puts `opened` in force: the logs it has are on (from the next request or connection),
    /// the others off; files no longer named are closed once the lines before are written.
    pub fn apply(&self, opened: Opened) {
        let on = if opened.requests.is_some() {
            REQUESTS
        } else {
            0
        } | if opened.connections.is_some() {
            CONNECTIONS
        } else {
            0
        };
        let mut in_force = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        if *in_force != opened.summary {
            match &opened.summary {
                Some(s) => info!(
                    requests = %s.requests.describe(),
                    connections = %s.connections.as_ref().map_or("off".into(), Destination::describe),
                    format = ?s.format,
                    "access log on"
                ),
                None => info!("access log off"),
            }
            in_force.clone_from(&opened.summary);
        }
        drop(in_force);
        if on != 0 {
            self.start_writer();
        }
        // Under the lock with the lines: those formatted before go to the old destinations,
        // those after, in the new format, to the new ones.
        let formats = (
            opened.requests.is_some().then_some(opened.format),
            opened.connections.is_some().then_some(opened.format),
        );
        let set = |s: &mut writer::State| (s.requests.format, s.connections.format) = formats;
        if self.writer_running() {
            self.shared.command_with(
                Command::Configure {
                    requests: opened.requests,
                    connections: opened.connections,
                },
                set,
            );
        } else {
            // No writer to tell (never started, or stopped): the lanes are off, and commands
            // nobody takes would only pile up, reload after reload.
            set(&mut self.shared.lock());
        }
        self.on.store(on, Ordering::Relaxed);
    }

    /// Reopens the log files by their paths (SIGUSR1, after logrotate renamed them): lines
    /// already handed over go to the old file, later ones to the new.
    pub fn reopen(&self) {
        if self.writer_running() {
            self.shared.command(Command::Reopen);
        }
    }

    fn writer_running(&self) -> bool {
        matches!(
            &*self.writer.lock().unwrap_or_else(|e| e.into_inner()),
            Writer::Running(..)
        )
    }

    /// Turns both logs off, writes every line already handed over, and stops the writer.
    pub fn close(&self) {
        self.on.store(0, Ordering::Relaxed);
        let mut s = self.shared.lock();
        s.requests.format = None;
        s.connections.format = None;
        drop(s);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Writer::Running(..) = &*w {
            self.shared.command(Command::Stop);
            if let Writer::Running(handle, done) = std::mem::replace(&mut *w, Writer::Closed) {
                match done.recv_timeout(CLOSE_WAIT) {
                    Ok(()) => {
                        let _ = handle.join();
                    }
                    // Stuck in a write: left behind, and the process goes on exiting.
                    Err(mpsc::RecvTimeoutError::Timeout) => warn!(
                        "the access log's destination took no lines for {CLOSE_WAIT:?}; \
                         the lines not yet written are lost"
                    ),
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        warn!("the access log writer panicked")
                    }
                }
            }
        } else {
            *w = Writer::Closed;
        }
    }

    fn start_writer(&self) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(&*w, Writer::Idle) {
            return;
        }
        *w = Writer::Closed;
        let shared = self.shared.clone();
        let (done_tx, done) = mpsc::channel();
        match std::thread::Builder::new()
            .name("seawall-log".into())
            .spawn(move || {
                writer::run(&shared);
                let _ = done_tx.send(());
            }) {
            Ok(handle) => *w = Writer::Running(handle, done),
            Err(e) => warn!(error = %e, "cannot start the access log writer; lines are dropped"),
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("on", &self.on.load(Ordering::Relaxed))
            .finish()
    }
}

/// A path relative to the configuration file's folder, for `[access_log]`'s keys.
pub fn destination(value: &str, resolve: impl FnOnce(&str) -> PathBuf) -> Destination {
    if value == "-" {
        Destination::Stdout
    } else {
        Destination::File(resolve(value))
    }
}

/// Whether two destinations would mix their lines.
pub fn same_destination(a: &Destination, b: &Destination) -> bool {
    match (a, b) {
        (Destination::Stdout, Destination::Stdout) => true,
        (Destination::File(a), Destination::File(b)) => same_file(a, b),
        _ => false,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}
