//! The writer thread: takes the lines the workers formatted, a batch at a time, and writes each
//! batch with one `write` per log.
//!
//! After a batch it pauses briefly before it looks again. While it pauses, lines only gather: a
//! writer asleep on the condition variable has to be woken (a system call) by the first line of
//! every batch, which at a few thousand requests a second would be one wake-up per request.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{error, info};

use super::format::{Formatter, Lines};
use super::{Destination, Format};

/// What the control side asks of the writer, in order with the lines: each is taken when the
/// lines gathered before it have been written.
pub enum Command {
    /// The logs' new destinations (`None`: that log is off).
    Configure {
        requests: Option<Output>,
        connections: Option<Output>,
    },
    Reopen,
    Stop,
}

/// One log's lines waiting for the writer, and how new ones are formatted.
#[derive(Default)]
pub struct Lane {
    /// `None` while the log is off: lines for it are not formatted.
    pub format: Option<Format>,
    pub formatter: Formatter,
    pub buf: Lines,
    pub lines: usize,
}

/// What the workers, the control side and the writer share, under one lock.
#[derive(Default)]
pub struct State {
    pub requests: Lane,
    pub connections: Lane,
    /// Commands, each with where the lanes' lines stood when it came.
    commands: Vec<(Command, [usize; 2])>,
    /// The writer waits on the condition variable: the next line must wake it.
    pub writer_waiting: bool,
}

impl State {
    fn is_empty(&self) -> bool {
        self.requests.buf.is_empty() && self.connections.buf.is_empty() && self.commands.is_empty()
    }
}

#[derive(Default)]
pub struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `c` after the lines gathered so far, and wakes the writer for it.
    pub fn command(&self, c: Command) {
        self.command_with(c, |_| {});
    }

    /// Queues `c` as [`command`](Self::command) does, and changes the state with `change`
    /// under the same lock, so that no line comes between the two.
    pub fn command_with(&self, c: Command, change: impl FnOnce(&mut State)) {
        let mut s = self.lock();
        change(&mut s);
        let at = [s.requests.buf.len(), s.connections.buf.len()];
        s.commands.push((c, at));
        s.writer_waiting = false;
        drop(s);
        self.wake.notify_one();
    }

    /// Wakes the writer after a line was added while it waited (see [`State::writer_waiting`]).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// An open destination.
#[derive(Debug)]
pub enum Output {
    Stdout,
    File { path: PathBuf, file: File },
}

impl Output {
    /// Opens `d` for appending; a file is created (mode 0640) if missing.
    pub fn open(d: &Destination) -> std::io::Result<Output> {
        match d {
            Destination::Stdout => Ok(Output::Stdout),
            Destination::File(path) => Ok(Output::File {
                file: open_file(path)?,
                path: path.clone(),
            }),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Output::File { file, .. } => file.write_all(bytes),
        }
    }

    fn reopen(&mut self) {
        if let Output::File { path, file } = self {
            match open_file(path) {
                Ok(f) => {
                    *file = f;
                    info!(path = %path.display(), "log file reopened");
                }
                Err(e) => error!(
                    path = %path.display(),
                    error = %e,
                    "cannot reopen the log file; writing on to the old one"
                ),
            }
        }
    }
}

fn open_file(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::FileTypeExt;
    // Opening a FIFO for writing waits for a reader, which would hold up a reload for good: a
    // non-blocking open first fails at once when no process reads it.
    if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo()) {
        OpenOptions::new()
            .append(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) {
                    std::io::Error::other("no process reads this FIFO")
                } else {
                    e
                }
            })?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// One log's destination.
struct Sink {
    name: &'static str,
    output: Option<Output>,
    /// The last write failed: said once, until a write succeeds again.
    failing: bool,
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) {
        let Some(output) = &mut self.output else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        match output.write_all(bytes) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                error!(log = self.name, error = %e, "cannot write the log; its lines are lost until it can");
            }
            Err(_) => {}
        }
    }
}

/// The pause after a batch (see the module's doc).
const PAUSE: Duration = Duration::from_millis(5);
/// How long the writer waits for a line before it looks again anyway.
const IDLE_WAKE: Duration = Duration::from_secs(1);

pub fn run(shared: &Shared) {
    let mut sinks = [
        Sink {
            name: "access",
            output: None,
            failing: false,
        },
        Sink {
            name: "connection",
            output: None,
            failing: false,
        },
    ];
    let mut batch = [Lines::default(), Lines::default()];
    loop {
        let commands = {
            let mut s = shared.lock();
            while s.is_empty() {
                s.writer_waiting = true;
                s = shared
                    .wake
                    .wait_timeout(s, IDLE_WAKE)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            s.writer_waiting = false;
            std::mem::swap(&mut s.requests.buf, &mut batch[0]);
            std::mem::swap(&mut s.connections.buf, &mut batch[1]);
            s.requests.lines = 0;
            s.connections.lines = 0;
            std::mem::take(&mut s.commands)
        };
        let mut written = [0, 0];
        let mut stop = false;
        for (c, at) in commands {
            for i in 0..2 {
                sinks[i].write(&batch[i].as_bytes()[written[i]..at[i]]);
            }
            written = at;
            match c {
                Command::Configure {
                    requests,
                    connections,
                } => {
                    sinks[0].output = requests;
                    sinks[1].output = connections;
                }
                Command::Reopen => {
                    for s in &mut sinks {
                        if let Some(o) = &mut s.output {
                            o.reopen();
                        }
                    }
                }
                Command::Stop => stop = true,
            }
        }
        let wrote = batch[0].len() > written[0] || batch[1].len() > written[1];
        for i in 0..2 {
            sinks[i].write(&batch[i].as_bytes()[written[i]..]);
            batch[i].clear();
        }
        if stop {
            return;
        }
        if wrote {
            std::thread::sleep(PAUSE);
        }
    }
}
