//! The writer thread: takes lines from the channel in batches, formats them, and writes each
//! batch with one `write` per log.
//!
//! After a batch it pauses briefly before it waits again. While it pauses the data plane's
//! offers only queue: a writer asleep in the channel's wait would have to be woken (a system
//! call) by the first offer of every batch, which at a few thousand requests a second is one
//! wake-up per request.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

use tracing::{error, info};

use super::entry::{ConnectionEntry, Entry};
use super::format::Formatter;
use super::{Destination, Format};

/// What the data plane hands the writer.
pub enum Message {
    Request(Box<Entry>),
    Connection(Box<ConnectionEntry>),
    /// Look at the commands (see [`Shared`]).
    Wake,
}

/// What the control side asks of the writer. They do not travel in the channel, where a full
/// buffer would refuse them: they wait in [`Shared`], and a `Wake` (or the next batch) brings
/// the writer to them.
pub enum Command {
    Configure {
        requests: Option<(Output, Format)>,
        connections: Option<(Output, Format)>,
    },
    Reopen,
    Stop,
}

#[derive(Default)]
pub struct Shared {
    commands: Mutex<Vec<Command>>,
}

impl Shared {
    pub fn push(&self, c: Command) {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c);
    }

    fn take(&self) -> Vec<Command> {
        std::mem::take(&mut *self.commands.lock().unwrap_or_else(|e| e.into_inner()))
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

/// One log: where it goes, how, and the lines of the batch in hand.
struct Lane {
    output: Output,
    format: Format,
    buf: Vec<u8>,
    /// The last write failed: said once, until a write succeeds again.
    failing: bool,
}

impl Lane {
    fn new((output, format): (Output, Format)) -> Self {
        Lane {
            output,
            format,
            buf: Vec::with_capacity(BATCH_BYTES),
            failing: false,
        }
    }

    fn flush(&mut self, what: &str) {
        if self.buf.is_empty() {
            return;
        }
        match self.output.write_all(&self.buf) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                error!(log = what, error = %e, "cannot write the log; its lines are lost until it can");
            }
            Err(_) => {}
        }
        self.buf.clear();
    }
}

/// A batch is written once its lines take this much room, or when the channel is empty.
const BATCH_BYTES: usize = 64 * 1024;
/// The pause after a batch (see the module's doc).
const PAUSE: Duration = Duration::from_millis(5);
/// How long the writer waits for a line before it looks at its commands again anyway.
const IDLE_WAKE: Duration = Duration::from_secs(1);

pub fn run(rx: Receiver<Message>, shared: &Shared) {
    let mut requests: Option<Lane> = None;
    let mut connections: Option<Lane> = None;
    let mut f = Formatter::default();
    loop {
        let mut stop = false;
        for c in shared.take() {
            match c {
                Command::Configure {
                    requests: r,
                    connections: c,
                } => {
                    flush(&mut requests, &mut connections);
                    requests = r.map(Lane::new);
                    connections = c.map(Lane::new);
                }
                Command::Reopen => {
                    flush(&mut requests, &mut connections);
                    for lane in [&mut requests, &mut connections].into_iter().flatten() {
                        lane.output.reopen();
                    }
                }
                Command::Stop => stop = true,
            }
        }
        if stop {
            while let Ok(m) = rx.try_recv() {
                take(m, &mut f, &mut requests, &mut connections);
            }
            flush(&mut requests, &mut connections);
            return;
        }
        let first = match rx.recv_timeout(IDLE_WAKE) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                flush(&mut requests, &mut connections);
                return;
            }
        };
        let mut wrote = !matches!(first, Message::Wake);
        take(first, &mut f, &mut requests, &mut connections);
        while let Ok(m) = rx.try_recv() {
            wrote |= !matches!(m, Message::Wake);
            take(m, &mut f, &mut requests, &mut connections);
            let full = |l: &Option<Lane>| l.as_ref().is_some_and(|l| l.buf.len() >= BATCH_BYTES);
            if full(&requests) || full(&connections) {
                flush(&mut requests, &mut connections);
            }
        }
        flush(&mut requests, &mut connections);
        if wrote {
            std::thread::sleep(PAUSE);
        }
    }
}

/// Formats one message into its lane's batch; a line for a log that is off is dropped.
fn take(
    m: Message,
    f: &mut Formatter,
    requests: &mut Option<Lane>,
    connections: &mut Option<Lane>,
) {
    match m {
        Message::Request(e) => {
            if let Some(l) = requests {
                match l.format {
                    Format::Alb => f.alb_request(&e, &mut l.buf),
                    Format::Json => f.json_request(&e, &mut l.buf),
                }
            }
        }
        Message::Connection(e) => {
            if let Some(l) = connections {
                match l.format {
                    Format::Alb => f.alb_connection(&e, &mut l.buf),
                    Format::Json => f.json_connection(&e, &mut l.buf),
                }
            }
        }
        Message::Wake => {}
    }
}

fn flush(requests: &mut Option<Lane>, connections: &mut Option<Lane>) {
    if let Some(l) = requests {
        l.flush("access");
    }
    if let Some(l) = connections {
        l.flush("connection");
    }
}
