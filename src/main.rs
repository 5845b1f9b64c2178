//! The `rota` binary: `rota server` runs a node; other subcommands are a client of a node.
//! Order for the server: parse config (exit 64 if bad) -> init logs -> start the node -> print the
//! bound address -> wait for SIGINT/SIGTERM -> drain within the grace period.
use clap::Parser;

use rota::cli::{Cli, Command};
use rota::node::Node;
use rota::worker::handlers::Registry;

/// sysexits.h EX_USAGE: the configuration is wrong.
const EXIT_CONFIG: i32 = 64;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Command::Server(args) => server(*args).await,
        cmd => match rota::cli::run_client(cmd).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                e.exit_code()
            }
        },
    };
    std::process::exit(code);
}

async fn server(args: rota::cli::ServerArgs) -> i32 {
    let check_only = args.check;
    let config = match args.into_config().and_then(|c| c.validate().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    if check_only {
        return match rota::node::check_files(&config, &Registry::with_builtins()) {
            Ok(()) => {
                println!("configuration ok");
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_CONFIG
            }
        };
    }
    rota::telemetry::init(&config.log_format, &config.log);
    let node = match Node::start(config, Registry::with_builtins()).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return if matches!(e, rota::Error::Config { .. }) { EXIT_CONFIG } else { 1 };
        }
    };
    // One machine-readable line on stdout: scripts and the test harness read the bound address here.
    println!("rota listening on {}", node.local_addr);
    shutdown_signal().await;
    node.shutdown().await;
    0
}

/// Waits for SIGINT, SIGTERM or SIGHUP and logs which. SIGHUP (the terminal went away, or an
/// operator's reflex for "reload") drains like SIGTERM: rota does not reload its configuration, and
/// the default action (exit at once, no drain, no log line) would drop running work.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (term, hup) = (signal(SignalKind::terminate()), signal(SignalKind::hangup()));
    let (Ok(mut term), Ok(mut hup)) = (term, hup) else {
        tracing::warn!("cannot install the SIGTERM/SIGHUP handlers; only SIGINT drains");
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!(signal = "SIGINT", "signal received: draining");
        return;
    };
    let name = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    };
    tracing::info!(signal = name, "signal received: draining");
}
