//! Logging setup: structured `tracing` to stderr, plain or JSON. Fields about a fire use the names
//! `job`, `fire`, `execution`, `node`, `epoch` everywhere.
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` is used unless RUST_LOG is set.
pub fn init(format: &str, filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    // Colours only on a terminal: piped logs (files, the local-cluster script) stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}
