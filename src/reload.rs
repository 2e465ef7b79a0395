//! Reloading the configuration while traffic flows.
//!
//! A reload reads, validates and compiles the whole file and binds any new listener before it
//! changes anything; only then is the new snapshot stored, in one atomic swap. Requests in flight
//! finish on the snapshot they started with. A failure changes nothing and is reported with file,
//! line and reason. Reloads run one at a time on the control thread, whatever triggered them:
//! SIGHUP, `POST /reload`, or a change of the config file or of a certificate, key, CA or CRL file
//! it names.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::signal::unix::{Signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::access_log::AccessLog;
use crate::admin;
use crate::config::compile::load_and_compile;
use crate::config::validate::{CertificateSource, ClientAuthConfig, Config};
use crate::config::{self, ConfigErrors, Source};
use crate::control::{self, Control};
use crate::listener::{BindError, ListenerSet};
use crate::logging::LogFormat;
use crate::metrics::ReloadOutcome;
use crate::systemd;

/// File events closer together than this are one change (an editor's temp file and rename, a
/// Kubernetes symlink swap).
const COALESCE: Duration = Duration::from_millis(50);

/// What `GET /config` shows of the configuration in force.
#[derive(Debug, Clone)]
pub struct ConfigInfo {
    /// 1 for the configuration loaded at start, one more for each successful reload.
    pub generation: u64,
    /// SHA-256 of the config file's text.
    pub sha256: String,
    pub loaded_at: SystemTime,
    pub path: String,
    /// Settings this configuration changes that only a restart applies: the process keeps the
    /// value it started with.
    pub restart_needed: Vec<&'static str>,
    /// How many listeners, rules (over all listeners, default actions not counted) and target
    /// groups it has, for the log line that says it was loaded.
    pub listeners: usize,
    pub rules: usize,
    pub target_groups: usize,
}

impl ConfigInfo {
    pub fn new(generation: u64, source: &Source, cfg: &Config) -> Self {
        ConfigInfo {
            generation,
            sha256: hex(&Sha256::digest(source.text.as_bytes())),
            loaded_at: SystemTime::now(),
            path: source.file.display().to_string(),
            restart_needed: Vec::new(),
            listeners: cfg.listeners.len(),
            rules: cfg.listeners.iter().map(|l| l.rules.len()).sum(),
            target_groups: cfg.target_groups.len(),
        }
    }

    /// The one line each configuration loaded logs, at start (`cause = "start"`) or on reload.
    pub fn log_loaded(&self, cause: &str) {
        info!(
            cause,
            generation = self.generation,
            file = %self.path,
            listeners = self.listeners,
            rules = self.rules,
            target_groups = self.target_groups,
            "{}",
            if self.generation == 1 { "config loaded" } else { "config reloaded" }
        );
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "generation": self.generation,
            "sha256": self.sha256,
            "loaded_at": humantime::format_rfc3339_seconds(self.loaded_at).to_string(),
            "path": self.path,
            "restart_needed": self.restart_needed,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Bind(#[from] BindError),
}

impl ReloadError {
    /// The body `POST /reload` answers a failure with.
    pub fn to_json(&self) -> serde_json::Value {
        let errors: Vec<serde_json::Value> = match self {
            ReloadError::Config(errs) => errs
                .0
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "file": e.file.display().to_string(),
                        "line": e.line,
                        "path": e.path,
                        "reason": e.reason,
                        "message": e.to_string(),
                    })
                })
                .collect(),
            ReloadError::Bind(e) => vec![serde_json::json!({
                "listener": &*e.name,
                "reason": e.to_string(),
                "message": e.to_string(),
            })],
        };
        serde_json::json!({ "result": "failure", "errors": errors })
    }
}

pub type ReloadResult = Result<Arc<ConfigInfo>, Arc<ReloadError>>;

/// A request for one reload; `reply` gets its outcome. Requests are never merged: each one
/// reloads.
pub struct ReloadRequest {
    pub cause: &'static str,
    pub reply: Option<oneshot::Sender<ReloadResult>>,
}

/// Asks the control thread for a reload and waits for its outcome.
pub async fn request(control: &Control, cause: &'static str) -> ReloadResult {
    let (tx, rx) = oneshot::channel();
    let gone = || {
        Arc::new(ReloadError::Config(ConfigErrors(vec![
            config::ConfigError {
                file: PathBuf::new(),
                line: None,
                path: String::new(),
                reason: "seawall is shutting down".into(),
            },
        ])))
    };
    control
        .reload
        .send(ReloadRequest {
            cause,
            reply: Some(tx),
        })
        .map_err(|_| gone())?;
    rx.await.unwrap_or_else(|_| Err(gone()))
}

/// Performs reloads; lives on the control thread.
pub struct Reloader {
    control: Arc<Control>,
    listeners: Arc<ListenerSet>,
    /// `None` runs the embedded default, which has no file to re-read.
    path: Option<PathBuf>,
    /// The config file and every certificate, key, CA and CRL file the last file that parsed
    /// names; a file that failed to load is retried when a file it names changes (a certificate
    /// that was missing appears).
    watched: Vec<PathBuf>,
    /// The watched files' [`fingerprint`] as the last load attempt read them. A file event is a
    /// change only when the files no longer match it.
    seen: Vec<u8>,
    /// Registered at construction, before any listener accepts: until a handler is installed,
    /// SIGHUP's default action ends the process.
    hangup: Option<Signal>,
    /// SIGUSR1 (reopen the log files, after logrotate), registered at construction for the
    /// same reason.
    reopen: Option<Signal>,
    /// The settings read once, at start, as they were then.
    started_with: StartOnly,
}

/// Settings that a running process cannot change: the data plane's threads, the admin socket
/// (bound once, and handed over as is in a binary upgrade), and the log format (the log
/// subscriber is installed once, before the first line a user cares about).
#[derive(Debug)]
struct StartOnly {
    worker_threads: usize,
    admin_bind: Option<SocketAddr>,
    /// The access log's channel is made once, at start.
    access_log_buffer: Option<usize>,
    log_format: LogFormat,
}

impl StartOnly {
    fn of(cfg: &Config) -> Self {
        StartOnly {
            worker_threads: cfg.runtime.worker_threads(),
            admin_bind: cfg.admin.as_ref().map(|a| a.bind),
            access_log_buffer: cfg.access_log.as_ref().map(|a| a.buffer_lines),
            log_format: cfg.runtime.log_format,
        }
    }

    /// The keys of `wanted` that differ from `self`.
    fn differences(&self, wanted: &StartOnly) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if wanted.admin_bind != self.admin_bind {
            keys.push("admin.bind");
        }
        if wanted.worker_threads != self.worker_threads {
            keys.push("runtime.workers");
        }
        // Turning the log on or off is no restart; only a different buffer is.
        let started = self
            .access_log_buffer
            .unwrap_or(crate::access_log::DEFAULT_BUFFER_LINES);
        if wanted.access_log_buffer.is_some_and(|w| w != started) {
            keys.push("access_log.buffer_lines");
        }
        if wanted.log_format != self.log_format {
            keys.push("runtime.log_format");
        }
        keys
    }
}

impl Reloader {
    /// Also installs the SIGHUP handler (see [`crate::control::listen_for`]).
    pub fn new(
        control: Arc<Control>,
        listeners: Arc<ListenerSet>,
        source: &Source,
        cfg: &Config,
    ) -> Self {
        let hangup = control::listen_for(listeners.runtime(), SignalKind::hangup(), "SIGHUP");
        let reopen =
            control::listen_for(listeners.runtime(), SignalKind::user_defined1(), "SIGUSR1");
        let watched = watched_files(source, cfg);
        Reloader {
            seen: fingerprint(&watched, Some(&source.text)),
            control,
            listeners,
            path: (!source.embedded).then(|| source.file.clone()),
            watched,
            hangup,
            reopen,
            started_with: StartOnly::of(cfg),
        }
    }

    /// Reads, validates, compiles and binds; then swaps the new configuration in whole.
    pub fn reload(&mut self) -> Result<Arc<ConfigInfo>, ReloadError> {
        // Taken before the files are read: a change made while this reload reads them still
        // differs from it, so its event reloads again rather than being lost.
        self.seen = fingerprint(&self.watched, None);
        let source = match &self.path {
            Some(p) => Source::read(p)?,
            None => Source::embedded_default(),
        };
        let cfg = config::load(&source)?;
        self.watched = watched_files(&source, &cfg);
        // The config as read; the certificates before `compile` reads them, for the same reason.
        self.seen = fingerprint(&self.watched, Some(&source.text));
        let compiled = load_and_compile(&source, &cfg, &self.control.secrets)?;
        let logs = AccessLog::open(cfg.access_log.as_ref())
            .map_err(|e| ConfigErrors(vec![source.error(e.key, e.to_string())]))?;
        // Checked before the snapshot exists: binding is the last thing that can fail.
        let bound = self.listeners.bind_new(&compiled.listeners)?;
        // Nothing can fail from here on.
        let c = &self.control;
        let snapshot = Arc::new(compiled.attach(&c.registry, &c.plane.metrics, &c.secrets));
        let previous = c.plane.snapshot.swap(snapshot.clone());
        let settings = Arc::new(control::Settings::of(&cfg));
        if let Some(bind) = self.started_with.admin_bind {
            admin::warn_if_locked(bind, settings.admin_token.as_ref());
        }
        c.settings.store(settings);
        c.plane.access_log.apply(logs);
        snapshot.apply_membership();
        let groups: Vec<&str> = snapshot
            .target_groups
            .iter()
            .map(|g| &*g.group.name)
            .collect();
        // A removed group's targets drain for the delay it was configured with.
        let delay = |name: &str| {
            previous
                .group_named(name)
                .map_or(Duration::ZERO, |g| g.group.deregistration_delay)
        };
        for name in c.registry.retire_others(&groups, delay) {
            info!(target_group = %name, "target group removed; its targets drain");
        }
        c.follow_discovery(&cfg);
        self.listeners
            .commit(bound, &snapshot.listeners, snapshot.max_connections);
        let restart_needed = self.started_with.differences(&StartOnly::of(&cfg));
        for key in &restart_needed {
            warn!(
                setting = key,
                "changed; the running process keeps its value until the next start"
            );
        }
        let generation = c.config.load().generation + 1;
        let mut info = ConfigInfo::new(generation, &source, &cfg);
        info.restart_needed = restart_needed;
        let info = Arc::new(info);
        c.config.store(info.clone());
        Ok(info)
    }

    /// Whether the watched files differ from what the last load read.
    fn changed(&self) -> bool {
        fingerprint(&self.watched, None) != self.seen
    }
}

/// The files whose change should reload the configuration.
fn watched_files(source: &Source, cfg: &Config) -> Vec<PathBuf> {
    if source.embedded {
        return Vec::new();
    }
    let mut files = vec![source.file.clone()];
    for c in &cfg.certificates {
        if let CertificateSource::Files { cert, key } = &c.source {
            files.push(cert.clone());
            files.push(key.clone());
        }
    }
    for l in &cfg.listeners {
        if let Some(ClientAuthConfig::Verify { ca, crl }) = &l.client_auth {
            files.push(ca.clone());
            files.extend(crl.clone());
        }
    }
    files
}

/// A digest of the watched files' contents, to tell a real change from an event that changed
/// nothing (a touch, a second event of the same save, a file beside them). `config_text` stands
/// for the first file, the config, when its text is at hand as loaded.
fn fingerprint(files: &[PathBuf], config_text: Option<&str>) -> Vec<u8> {
    let mut h = Sha256::new();
    for (i, f) in files.iter().enumerate() {
        h.update(f.as_os_str().as_encoded_bytes());
        match (i, config_text) {
            (0, Some(text)) => h.update(Sha256::digest(text.as_bytes())),
            _ => match std::fs::read(f) {
                Ok(bytes) => h.update(Sha256::digest(&bytes)),
                Err(e) => h.update(format!("unreadable: {e}")),
            },
        }
    }
    h.finalize().to_vec()
}

/// The folders to watch for `files`: a rename or a symlink swap replaces a file, so the file
/// itself cannot be watched. Each file's own folder, and the folder its symlinks lead to now (a
/// Kubernetes volume's `..data` target), so that an edit made there is seen too.
fn watch_dirs(files: &[PathBuf]) -> Vec<PathBuf> {
    let parent = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    for f in files {
        dirs.push(parent(f));
        if let Ok(real) = std::fs::canonicalize(f) {
            dirs.push(parent(&real));
        }
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

/// The file watcher and the folders it watches.
struct Watch {
    watcher: Option<RecommendedWatcher>,
    /// The folders watched successfully; one that failed (missing) is tried again at the next
    /// update.
    dirs: Vec<PathBuf>,
}

impl Watch {
    fn new(events: mpsc::UnboundedSender<()>) -> Self {
        let watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            // Opening or reading a file is no change; without this filter every read of the
            // files (the fingerprint's own) would wake the loop again, forever. A write is
            // taken when the writer closes the file (inotify's close-write), not at each
            // `write`: a log file kept open beside the configuration (an access log with a
            // relative path) would otherwise have the files fingerprinted again and again.
            let relevant = e.is_ok_and(|e| match e.kind {
                EventKind::Access(kind) => kind == AccessKind::Close(AccessMode::Write),
                EventKind::Modify(ModifyKind::Data(_)) => false,
                _ => true,
            });
            if relevant {
                let _ = events.send(());
            }
        });
        let watcher = watcher
            .map_err(|e| {
                warn!(error = %e, "cannot watch the configuration files; reload with SIGHUP or POST /reload");
            })
            .ok();
        Watch {
            watcher,
            dirs: Vec::new(),
        }
    }

    /// Watches the folders `files` need now. New folders are added before old ones are dropped,
    /// so a folder in both is never unwatched. Returns whether a folder was added: a change made
    /// there before its watch began has no event.
    fn update(&mut self, files: &[PathBuf]) -> bool {
        let Some(watcher) = &mut self.watcher else {
            return false;
        };
        let wanted = watch_dirs(files);
        let mut added = false;
        let mut dirs = Vec::new();
        for d in &wanted {
            if self.dirs.contains(d) {
                dirs.push(d.clone());
                continue;
            }
            match watcher.watch(d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    dirs.push(d.clone());
                    added = true;
                }
                Err(e) => warn!(dir = %d.display(), error = %e, "cannot watch folder"),
            }
        }
        for d in self.dirs.iter().filter(|d| !wanted.contains(d)) {
            // Fails when the folder is gone (an old Kubernetes version folder), which is fine.
            let _ = watcher.unwatch(d);
        }
        self.dirs = dirs;
        added
    }
}

/// The control thread's reload loop: takes requests, SIGHUP and file changes, one reload at a time.
pub async fn run(
    mut reloader: Reloader,
    mut requests: mpsc::UnboundedReceiver<ReloadRequest>,
    stop: CancellationToken,
) {
    let mut hangup = reloader.hangup.take();
    let mut reopen = reloader.reopen.take();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut watch = Watch::new(events_tx);
    watch.update(&reloader.watched);
    // A change made between the load at start and the watch beginning has no event of its own.
    let mut pending = reloader.changed();
    // When the file events seen so far are looked at: COALESCE after the first of them. A timer
    // rather than a sleep, so that SIGHUP and requests are not held up meanwhile.
    let mut settle: Option<Instant> = None;
    loop {
        let (cause, reply) = if std::mem::take(&mut pending) {
            ("file change", None)
        } else {
            tokio::select! {
                r = requests.recv() => match r {
                    Some(r) => (r.cause, r.reply),
                    None => return,
                },
                Some(()) = async { hangup.as_mut()?.recv().await } => ("SIGHUP", None),
                Some(()) = async { reopen.as_mut()?.recv().await } => {
                    info!("SIGUSR1: reopening the log files");
                    reloader.control.plane.access_log.reopen();
                    continue;
                }
                Some(()) = events.recv() => {
                    settle.get_or_insert_with(|| Instant::now() + COALESCE);
                    continue;
                }
                _ = async { sleep_until(settle?).await; Some(()) }, if settle.is_some() => {
                    settle = None;
                    // A reload meanwhile (SIGHUP, a request) may have read the change already.
                    if !reloader.changed() {
                        continue;
                    }
                    ("file change", None)
                }
                _ = stop.cancelled() => return,
            }
        };
        // A process that handed over drains for the new one, which is the service now.
        let tell = !reloader.control.handed_over.load(Ordering::Acquire);
        if tell {
            systemd::reloading();
        }
        let result = reloader.reload();
        if tell {
            systemd::reloaded();
        }
        let metrics = &reloader.control.plane.metrics;
        match &result {
            Ok(info) => {
                info.log_loaded(cause);
                metrics.config_reload(ReloadOutcome::Success);
                metrics.config_generation.set(info.generation as i64);
                metrics
                    .config_last_reload_success_timestamp_seconds
                    .set(unix_seconds(info.loaded_at));
            }
            Err(e) => {
                // Every error with its file, line and key path, one per line (the text format
                // prints the message's new lines; JSON escapes them).
                warn!(
                    cause,
                    "config reload failed; the running configuration stays in force:\n{e}"
                );
                metrics.config_reload(ReloadOutcome::Failure);
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(result.map_err(Arc::new));
        }
        // The file may name other certificates now, or its symlinks lead to another folder.
        if watch.update(&reloader.watched) {
            pending = reloader.changed();
        }
    }
}

pub fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
