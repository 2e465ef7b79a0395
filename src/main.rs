//! The `seawall` command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use seawall::config::{self, compile::load_and_compile, Source};
use seawall::logging::{self, LogFormat};
use seawall::{App, StartError};
use tracing::{error, info};

/// seawall: an ALB-like Layer-7 load balancer and TLS terminator.
///
/// With no command, runs the embedded default configuration: HTTPS on 127.0.0.1:8443 with a
/// self-signed certificate, HTTP on 127.0.0.1:8080 redirecting to it, admin on 127.0.0.1:9901.
#[derive(Parser)]
#[command(name = "seawall", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// How log lines are written to stderr: `text` for a person, `json` (one object per line)
    /// for a log collector. Overrides `[runtime] log_format`. Which lines: RUST_LOG (default
    /// `info`).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the load balancer until SIGTERM or SIGINT, then drain in-flight requests and exit 0.
    Run {
        /// Configuration file (TOML). Without it, the embedded default configuration runs.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file (syntax, values, references, certificates) without binding
    /// anything; prints every error with its file, line and key path.
    Check {
        /// Configuration file (TOML).
        file: PathBuf,
    },
    /// Write a self-signed certificate and its key as PEM files, generated with rcgen (ECDSA P-256).
    Certs {
        /// Folder to write into (created if missing).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// File name stem: writes STEM.pem and STEM-key.pem. Defaults to the first name.
        #[arg(long)]
        stem: Option<String>,
        /// DNS names (wildcards such as *.example.test allowed) or IP addresses to certify.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Load an HTTP or HTTPS endpoint (seawall or any other) and report requests/s, handshakes/s,
    /// latency percentiles and errors by kind.
    Bench(Box<seawall::bench::BenchArgs>),
    /// Show which rule a request would match in a configuration file, why each rule before it
    /// did not, and what the action does; binds nothing. Exits 0, 64 for a configuration error
    /// (as `check`), 2 for a bad URL, header or method, or when no listener serves the URL's
    /// scheme and port.
    Route(Box<seawall::explain::RouteArgs>),
}

// jemalloc rather than glibc's malloc: an idle connection's freed buffers (see
// `server::activity::HeadGuard`, parking) go back to the system instead of staying in the
// process, scattered between live allocations. With glibc, 5 000 idle TLS connections cost
// 15.0 KiB each; with jemalloc 11.7 KiB, and requests take slightly fewer instructions.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The configuration is wrong (DESIGN.md: exit 64 before any bind).
const EXIT_CONFIG: u8 = 64;
/// sysexits EX_UNAVAILABLE: a socket could not be bound or a thread started.
const EXIT_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run { config: None });
    // `run` installs the log once it has read its file, which may name the format.
    if !matches!(command, Command::Run { .. }) {
        logging::init(cli.log_format.unwrap_or_default());
    }
    match command {
        Command::Run { config } => run(config.as_deref(), cli.log_format),
        Command::Check { file } => check(&file),
        Command::Certs { out, stem, names } => certs(&out, stem, &names),
        Command::Bench(args) => bench(&args),
        Command::Route(args) => route(&args),
    }
}

/// Failures are counted in the report, so only a run that could not start exits non-zero.
fn bench(args: &seawall::bench::BenchArgs) -> ExitCode {
    match seawall::bench::run(args) {
        Ok(report) => {
            if args.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seawall bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn route(args: &seawall::explain::RouteArgs) -> ExitCode {
    match seawall::explain::route(args) {
        Ok(report) if args.json => {
            println!("{}", report.json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.text());
            ExitCode::SUCCESS
        }
        // Configuration errors print as `seawall check` prints them.
        Err(e @ seawall::explain::RouteError::Config(_)) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("seawall route: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(config: Option<&Path>, log_format: Option<LogFormat>) -> ExitCode {
    let source = match config {
        Some(path) => match Source::read(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => Source::embedded_default(),
    };
    // Configuration errors are printed as `seawall check` prints them, whatever the format.
    let cfg = match config::load(&source) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Before anything is bound or logged: the flag, else the file, else text.
    logging::init(log_format.unwrap_or(cfg.runtime.log_format));
    let running = match App::build_loaded(&source, cfg).and_then(App::start) {
        Ok(r) => r,
        Err(StartError::Config(e)) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            error!("{e}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    if config.is_none() {
        info!("running the embedded default configuration; try: curl -k https://localhost:8443/");
    }
    wait_for_signal_or_handover(&running);
    running.stop();
    info!("stopped");
    ExitCode::SUCCESS
}

/// Returns on SIGTERM or SIGINT, or when a binary upgrade has handed the sockets to a new process
/// (which starts this one's drain).
fn wait_for_signal_or_handover(running: &seawall::Running) {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime starts");
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received; draining"),
            _ = int.recv() => info!("SIGINT received; draining"),
            _ = running.draining() => info!("handed over to the new process; draining"),
        }
    });
}

fn check(file: &Path) -> ExitCode {
    let result = Source::read(file).and_then(|source| {
        let cfg = config::load(&source)?;
        // Throw-away keys: a check compiles the TLS configurations but serves nothing.
        load_and_compile(&source, &cfg, &seawall::secrets::Secrets::generate())?;
        Ok(cfg)
    });
    match result {
        Ok(cfg) => {
            println!(
                "{}: ok ({} listeners, {} target groups, {} certificates)",
                file.display(),
                cfg.listeners.len(),
                cfg.target_groups.len(),
                cfg.certificates.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn certs(out: &Path, stem: Option<String>, names: &[String]) -> ExitCode {
    let stem = stem.unwrap_or_else(|| names[0].replace('*', "_wildcard"));
    let generated = match seawall::tls::self_signed(names) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let cert_path = out.join(format!("{stem}.pem"));
    let key_path = out.join(format!("{stem}-key.pem"));
    let written = std::fs::create_dir_all(out)
        .and_then(|_| std::fs::write(&cert_path, &generated.cert_pem))
        .and_then(|_| write_private(&key_path, &generated.key_pem));
    match written {
        Ok(()) => {
            println!("wrote {} and {}", cert_path.display(), key_path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write to {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}
