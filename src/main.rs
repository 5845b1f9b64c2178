//! The `rota` binary: `rota server` runs a node; other subcommands are a client of a node.
//! Order for the server: parse config (exit 64 if bad) -> init logs -> start the node -> print the
//! bound address -> wait for SIGINT/SIGTERM -> drain within the grace period.
use clap::Parser;

use rota::cli::{Cli, Command};
use rota::worker::handlers::Registry;

/// sysexits.h EX_USAGE: the configuration is wrong.
const EXIT_CONFIG: i32 = 64;
/// sysexits.h EX_UNAVAILABLE: `--check` could not reach the store.
const EXIT_UNAVAILABLE: i32 = 69;
/// How long `--check` waits for the store to answer.
const CHECK_STORE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Command::Server(args) => server(*args).await,
        cmd => client(cmd).await,
    };
    std::process::exit(code);
}

async fn client(cmd: Command) -> i32 {
    // A client's output piped into `head` and the like: a closed pipe ends it quietly, as it ends
    // any Unix tool, instead of a panic in println (Rust ignores SIGPIPE).
    restore_sigpipe();
    match rota::cli::run_client(cmd).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn restore_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: setting the default action of one signal before any other thread writes to stdout.
    if unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.is_err() {
        eprintln!("warning: cannot restore SIGPIPE; a closed output pipe may end with a panic");
    }
}

async fn server(args: rota::cli::ServerArgs) -> i32 {
    let (check_only, offline) = (args.check, args.check_offline);
    let config = match args.into_config().and_then(|c| c.validate().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let registry = handlers();
    if check_only {
        return check(&config, &registry, offline).await;
    }
    rota::telemetry::init(&config.log_format, &config.log);
    // Installed before the node starts, so a signal during start-up drains too rather than taking
    // its default action (SIGHUP's and SIGTERM's: exit at once).
    let signals = Signals::install();
    let node = match rota::api::start(config, registry).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return if matches!(e, rota::Error::Config { .. } | rota::Error::NodeIdInUse { .. }) {
                EXIT_CONFIG
            } else {
                1
            };
        }
    };
    // One machine-readable line on stdout: scripts and the test harness read the bound address here.
    println!("rota listening on {}", node.local_addr);
    // A configuration the node can only judge against the cluster once Redis answers (a number
    // of shards other than the cluster's) stops it as a wrong configuration at start would.
    let code = tokio::select! {
        _ = signals.wait() => 0,
        why = node.refused() => {
            eprintln!("error: {why}");
            EXIT_CONFIG
        }
    };
    node.shutdown().await;
    code
}

/// `rota server --check`: the configuration and its files (64 when wrong), then the store (69 when
/// it does not answer, unless `offline`), then a summary on stdout.
async fn check(config: &rota::config::Config, registry: &Registry, offline: bool) -> i32 {
    let checked = match rota::api::check(config, registry) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let store = if offline {
        "not tried: --check-offline"
    } else if let Err(e) = rota::node::check_store(config, CHECK_STORE_WITHIN).await {
        // A file the store needs (its CA) that cannot be read is the configuration's fault.
        if matches!(e, rota::Error::Config { .. } | rota::Error::Io { .. }) {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
        eprintln!("error: store {} unreachable: {e}", rota::node::store_address(config));
        return EXIT_UNAVAILABLE;
    } else {
        "answered"
    };
    println!("configuration ok");
    for line in checked.summary(config, store) {
        println!("  {line}");
    }
    0
}

/// SIGINT, SIGTERM and SIGHUP, each of which drains the node. SIGHUP (the terminal went away, or an
/// operator's reflex for "reload") drains like SIGTERM: rota does not reload its configuration, and
/// the default action (exit at once, no drain, no log line) would drop running work.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let (term, hup) = (signal(SignalKind::terminate()).ok(), signal(SignalKind::hangup()).ok());
        if term.is_none() || hup.is_none() {
            tracing::warn!("cannot install the SIGTERM/SIGHUP handlers; those signals will not drain");
        }
        Signals { term, hup }
    }

    /// Waits for one of the signals and logs which.
    async fn wait(mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let name = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = recv(&mut self.term) => "SIGTERM",
            _ = recv(&mut self.hup) => "SIGHUP",
        };
        tracing::info!(signal = name, "signal received: draining");
    }
}

/// The node's handlers: the built-ins, and in a fault-injection build the runner's side log.
fn handlers() -> Registry {
    #[allow(unused_mut)]
    let mut registry = Registry::with_builtins();
    #[cfg(feature = "failpoints")]
    rota::chaos::register(&mut registry);
    registry
}
