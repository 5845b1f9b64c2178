//! Node configuration: one documented struct. Precedence: defaults, then the TOML file
//! (`--config`), then `ROTA_*` environment variables, then flags (clap merges the last two).
//! `validate` names the key that is wrong; `main` exits with code 64 on a bad config.
//! Every key is shown with a comment in `deploy/rota.example.toml`.
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};

/// A secret string: never printed (Debug shows `***`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

const DAY_MS: u64 = 86_400_000;

/// The largest `max_clock_offset_ms` accepted: a bound beyond a minute would never alert on any
/// skew that matters to a per-second schedule.
pub const MAX_CLOCK_OFFSET_BOUND_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address. Port 0 picks a free port (the bound address is logged).
    pub listen: String,
    /// Address other nodes and clients should use to reach this node; defaults to the bound address.
    pub advertise: Option<String>,
    /// Stable name of this node (A-Z a-z 0-9 . _ -), kept across restarts. Defaults to the host name.
    pub node_id: String,
    /// Redis URL (redis://[user:pass@]host:port/db). Empty: the in-memory store (single node only).
    pub redis: Option<String>,
    /// PEM CA that signed Redis's certificate, for `rediss://` (default: the system's trust store).
    pub redis_ca_file: Option<PathBuf>,
    /// First part of every Redis key; with `cluster` it makes the hash tag `{prefix:cluster:0}`.
    pub redis_prefix: String,
    /// Cluster name: nodes with the same Redis, prefix and cluster form one cluster.
    pub cluster: String,
    /// Executions this node runs at once.
    pub workers: u32,
    /// TOML file of jobs put at start (create or replace), so a node on the in-memory store gets
    /// its jobs back after a restart.
    pub jobs_file: Option<PathBuf>,
    /// Enables the `shell` handler, which runs programs on request. Off by default.
    pub enable_shell: bool,
    /// Absolute paths of the programs the shell handler may run (`sh` jobs need /bin/sh). Set on
    /// the node, never by a job: a job naming any other program is refused when it is put.
    pub shell_allow: Vec<String>,
    /// Bytes kept of a shell handler's stdout and of its stderr.
    pub shell_output_cap_bytes: usize,
    /// Where http jobs may connect: host names and IP networks (`hooks.example.com`, `10.0.0.0/8`,
    /// `127.0.0.1`). Empty: anywhere except loopback, link-local and unspecified addresses. This
    /// node's own Redis, gRPC and metrics ports are refused whatever the list says.
    pub http_allow: Vec<String>,
    /// A fire later than this is a misfire and follows its job's misfire policy.
    pub misfire_threshold_ms: u64,
    /// How long execution records (and idempotency keys) are kept.
    pub execution_retention_ms: u64,
    /// How often the node publishes its record (load, state) to the store.
    pub heartbeat_ms: u64,
    /// A node whose record is older than this is shown as dead.
    pub node_ttl_ms: u64,
    /// Master lease TTL: a crashed master is replaced within about lease_ttl_ms + lease_renew_ms.
    pub lease_ttl_ms: u64,
    /// How often the master renews its lease and candidates try to take it (at most a third of the TTL).
    pub lease_renew_ms: u64,
    /// The master runs fires itself while its load (active / max workers) is under this; above it,
    /// fires go to the least-loaded live node.
    pub load_threshold: f64,
    /// Deadline of a direct SubmitTask to another node; past it the fire goes to that node's queue.
    pub dispatch_timeout_ms: u64,
    /// How many times a fire whose node died mid-run is re-run (jobs with recovery = rerun).
    pub max_recoveries: u32,
    /// On SIGINT/SIGTERM, how long running executions get to finish before they are cancelled.
    pub shutdown_grace_ms: u64,
    /// This node's wall clock is corrected to Redis's; an offset larger than this (either way) is
    /// logged at WARN and raises a `clock_skew` alert. Fires stay on time either way.
    pub max_clock_offset_ms: u64,
    /// HTTP address for /metrics (Prometheus), /healthz and /readyz. Empty: off.
    pub metrics_listen: Option<String>,
    /// PEM certificate and key of this node: TLS on the gRPC port, and the client certificate it
    /// presents to other nodes. Both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// PEM of the cluster CA. With it, this node verifies other nodes' certificates when it calls
    /// them, asks callers for a client certificate, and accepts SubmitTask and ReportLoad only from a
    /// peer whose certificate chains to this CA (or that presents the cluster secret).
    pub tls_ca_file: Option<PathBuf>,
    /// TOML file of API tokens (`[[token]] name, role = viewer|operator|admin, sha256`). Without it
    /// the API is open: for local use only.
    pub tokens_file: Option<PathBuf>,
    /// Shared secret nodes present to each other (SubmitTask, ReportLoad). Required with tokens on a
    /// cluster. Read from the config file or ROTA_CLUSTER_SECRET, never from the command line.
    pub cluster_secret: Option<Secret>,
    /// URL that receives alerts as JSON POSTs. Empty: alerts go to the log only.
    pub alert_webhook: Option<String>,
    pub alert_webhook_timeout_ms: u64,
    /// "plain" or "json".
    pub log_format: String,
    /// tracing filter, e.g. "info" or "rota=debug". RUST_LOG wins when set.
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7700".into(),
            advertise: None,
            node_id: default_node_id(),
            redis: None,
            redis_ca_file: None,
            redis_prefix: "rota".into(),
            cluster: "default".into(),
            workers: 32,
            jobs_file: None,
            enable_shell: false,
            shell_allow: Vec::new(),
            shell_output_cap_bytes: 64 * 1024,
            http_allow: Vec::new(),
            misfire_threshold_ms: 60_000,
            execution_retention_ms: 24 * 3_600_000,
            heartbeat_ms: 1_000,
            node_ttl_ms: 3_000,
            load_threshold: 0.8,
            dispatch_timeout_ms: 500,
            max_recoveries: 2,
            // A crashed master is replaced in about 2.6 s (measured by benches/failover.rs); one
            // missed renewal (600 ms) is still far from losing the lease.
            lease_ttl_ms: 2_000,
            lease_renew_ms: 600,
            shutdown_grace_ms: 30_000,
            max_clock_offset_ms: 250,
            metrics_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            tokens_file: None,
            cluster_secret: None,
            alert_webhook: None,
            alert_webhook_timeout_ms: 5_000,
            log_format: "plain".into(),
            log: "info".into(),
        }
    }
}

fn default_node_id() -> String {
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let clean: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).collect();
    if clean.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        clean
    } else {
        "rota-node".into()
    }
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &std::path::Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        toml::from_str(&text).map_err(|e| Error::Config { key: path.display().to_string(), reason: e.to_string() })
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, reason: String| Err(Error::Config { key: key.into(), reason });
        if self.listen.parse::<SocketAddr>().is_err() {
            return bad("listen", format!("'{}' is not host:port (an IP address and a port)", self.listen));
        }
        crate::job::validate_name("node_id", &self.node_id, 64)
            .map_err(|e| Error::Config { key: "node_id".into(), reason: e.to_string() })?;
        for (k, v) in [("redis_prefix", &self.redis_prefix), ("cluster", &self.cluster)] {
            crate::job::validate_name(k, v, 64).map_err(|e| Error::Config { key: k.into(), reason: e.to_string() })?;
        }
        if let Some(url) = &self.redis {
            if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
                return bad("redis", "must start with redis://, rediss:// (TLS) or unix://".into());
            }
        }
        if self.workers == 0 || self.workers > 100_000 {
            return bad("workers", format!("{} is not in 1..=100000", self.workers));
        }
        // Every number has a range: an extreme one passed `--check` and then broke the node
        // (a retention of u64::MAX made every claim's PEXPIRE fail, so nothing fired; an output cap
        // of u64::MAX wrapped `2 * cap + 64` and kept 62 bytes).
        for (key, v, lo, hi) in [
            ("misfire_threshold_ms", self.misfire_threshold_ms, 1_000, 7 * DAY_MS),
            ("execution_retention_ms", self.execution_retention_ms, 60_000, 366 * DAY_MS),
            ("heartbeat_ms", self.heartbeat_ms, 10, 60_000),
            ("node_ttl_ms", self.node_ttl_ms, 20, 600_000),
            ("lease_ttl_ms", self.lease_ttl_ms, 30, 600_000),
            ("lease_renew_ms", self.lease_renew_ms, 10, 200_000),
            ("dispatch_timeout_ms", self.dispatch_timeout_ms, 1, 60_000),
            ("max_recoveries", u64::from(self.max_recoveries), 0, 100),
            ("shutdown_grace_ms", self.shutdown_grace_ms, 0, 3_600_000),
            ("shell_output_cap_bytes", self.shell_output_cap_bytes as u64, 1, 64 * 1024 * 1024),
            ("alert_webhook_timeout_ms", self.alert_webhook_timeout_ms, 1, 300_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return bad(key, format!("{v} is not in {lo}..={hi}"));
            }
        }
        if self.heartbeat_ms == 0 || self.node_ttl_ms < 2 * self.heartbeat_ms {
            return bad("node_ttl_ms", "must be at least twice heartbeat_ms (one lost beat is not death)".into());
        }
        if self.lease_renew_ms == 0 || self.lease_ttl_ms < 3 * self.lease_renew_ms {
            return bad(
                "lease_ttl_ms",
                "must be at least three times lease_renew_ms (one lost renewal is not a lost lease)".into(),
            );
        }
        if !(self.load_threshold > 0.0 && self.load_threshold <= 1.0) {
            return bad("load_threshold", format!("{} is not in (0, 1]", self.load_threshold));
        }
        if self.dispatch_timeout_ms == 0 || self.dispatch_timeout_ms >= self.misfire_threshold_ms {
            return bad("dispatch_timeout_ms", "must be above 0 and below misfire_threshold_ms".into());
        }
        if !(1..=MAX_CLOCK_OFFSET_BOUND_MS).contains(&self.max_clock_offset_ms) {
            return bad(
                "max_clock_offset_ms",
                format!("{} is not in 1..={MAX_CLOCK_OFFSET_BOUND_MS}", self.max_clock_offset_ms),
            );
        }
        if let Some(p) = self.shell_allow.iter().find(|p| !p.starts_with('/')) {
            return bad("shell_allow", format!("'{p}' is not an absolute path"));
        }
        if let Err(reason) = crate::worker::egress::Egress::new(&self.http_allow, Default::default()) {
            return bad("http_allow", reason);
        }
        if !matches!(self.log_format.as_str(), "plain" | "json") {
            return bad("log_format", format!("'{}' is not plain or json", self.log_format));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return bad("tls_cert_file", "tls_cert_file and tls_key_file go together".into());
        }
        if self.tls_ca_file.is_some() && self.tls_cert_file.is_none() {
            return bad("tls_ca_file", "needs tls_cert_file and tls_key_file (this node's identity)".into());
        }
        if self.tokens_file.is_some()
            && self.redis.is_some()
            && self.cluster_secret.is_none()
            && self.tls_ca_file.is_none()
        {
            return bad(
                "cluster_secret",
                "is required with tokens_file on a cluster without tls_ca_file: nodes authenticate to each other with it"
                    .into(),
            );
        }
        if let Some(a) = &self.metrics_listen {
            if a.parse::<SocketAddr>().is_err() {
                return bad("metrics_listen", format!("'{a}' is not host:port (an IP address and a port)"));
            }
        }
        if let Some(u) = &self.alert_webhook {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return bad("alert_webhook", format!("'{u}' is not an http(s) URL"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_file_overrides() {
        Config::default().validate().expect("defaults valid");
        let c: Config = toml::from_str("workers = 4\nredis = \"redis://127.0.0.1:6379\"\n").expect("parse");
        assert_eq!(c.workers, 4);
        assert_eq!(c.listen, "127.0.0.1:7700");
        c.validate().expect("valid");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = toml::from_str::<Config>("wrokers = 4").expect_err("unknown key").to_string();
        assert!(e.contains("wrokers"), "{e}");
        let cases = [
            (Config { listen: "nope".into(), ..Config::default() }, "config listen:"),
            (Config { workers: 0, ..Config::default() }, "config workers:"),
            (Config { node_id: "a b".into(), ..Config::default() }, "config node_id:"),
            (Config { redis: Some("http://x".into()), ..Config::default() }, "config redis:"),
            (Config { node_ttl_ms: 1000, ..Config::default() }, "config node_ttl_ms:"),
            (Config { log_format: "xml".into(), ..Config::default() }, "config log_format:"),
            (Config { lease_ttl_ms: 1000, ..Config::default() }, "config lease_ttl_ms:"),
            (Config { http_allow: vec!["10.1.2.3/8".into()], ..Config::default() }, "config http_allow:"),
            (Config { http_allow: vec!["not a host".into()], ..Config::default() }, "config http_allow:"),
            (Config { max_clock_offset_ms: 0, ..Config::default() }, "config max_clock_offset_ms:"),
            (Config { max_clock_offset_ms: 60_001, ..Config::default() }, "config max_clock_offset_ms:"),
            (Config { execution_retention_ms: u64::MAX, ..Config::default() }, "config execution_retention_ms:"),
            (Config { execution_retention_ms: 59_999, ..Config::default() }, "config execution_retention_ms:"),
            (Config { shell_output_cap_bytes: usize::MAX, ..Config::default() }, "config shell_output_cap_bytes:"),
            (Config { shell_output_cap_bytes: 0, ..Config::default() }, "config shell_output_cap_bytes:"),
            (Config { misfire_threshold_ms: u64::MAX, ..Config::default() }, "config misfire_threshold_ms:"),
            (Config { shutdown_grace_ms: u64::MAX, ..Config::default() }, "config shutdown_grace_ms:"),
            (Config { alert_webhook_timeout_ms: 0, ..Config::default() }, "config alert_webhook_timeout_ms:"),
            (Config { max_recoveries: u32::MAX, ..Config::default() }, "config max_recoveries:"),
            (Config { heartbeat_ms: u64::MAX / 2, node_ttl_ms: u64::MAX, ..Config::default() }, "config heartbeat_ms:"),
        ];
        for (c, want) in cases {
            let got = c.validate().expect_err("invalid").to_string();
            assert!(got.starts_with(want), "{got}");
        }
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The documented example config loads and is valid as shipped.
    #[test]
    fn deploy_example_config_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rota.example.toml");
        let c = Config::from_file(&path).expect("example parses");
        c.validate().expect("example is valid");
        assert_eq!(c.listen, Config::default().listen, "the example shows the defaults");
        assert_eq!(c.lease_ttl_ms, Config::default().lease_ttl_ms);
    }
}
