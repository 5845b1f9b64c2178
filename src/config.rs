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
    /// Redis URL: one server (redis://[user:pass@]host:port/db, rediss:// for TLS, unix://), a Redis
    /// Cluster (redis+cluster://[user:pass@]h1:p1,h2:p2,..., rediss+cluster:// for TLS) or a primary
    /// found through Sentinel (redis+sentinel://[user:pass@]s1:p1,s2:p2,.../primary-name[/db],
    /// rediss+sentinel:// for TLS).
    /// Empty: the in-memory store (single node only).
    pub redis: Option<String>,
    /// PEM CA that signed Redis's certificate, for `rediss://` (default: the system's trust store).
    pub redis_ca_file: Option<PathBuf>,
    /// The Sentinels' own user (ACL), for `redis+sentinel://` and `rediss+sentinel://` when the
    /// Sentinels require one; the URL's user and password are the primary's.
    pub redis_sentinel_username: Option<String>,
    /// The Sentinels' own password (their `requirepass`). Read from the config file or
    /// ROTA_REDIS_SENTINEL_PASSWORD, never from the command line. Blank is refused.
    pub redis_sentinel_password: Option<Secret>,
    /// Strict mode: a claim, trigger, start or finish counts only once this many Redis replicas
    /// acknowledged it (WAIT), so a Redis failover cannot lose it and run a fire twice. 0: off.
    /// Works with one Redis, Sentinel and a Redis Cluster (WAIT goes to the primary of rota's slot).
    pub redis_wait_replicas: u32,
    /// How long strict mode waits for the replicas' acknowledgement of one write.
    pub redis_wait_timeout_ms: u64,
    /// Scheduling shards: jobs hash to this many shards (`store::keys::shard_of`), each with its own
    /// keys under one hash tag, its own master lease and epoch, so the masters' work spreads over
    /// the nodes and, on a Redis Cluster, over its primaries. Fixed when the cluster is created:
    /// every node must say the same. 1: one master for everything (a cluster made before shards).
    pub shards: u16,
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
    /// How long before its instant a worker starts a fire its take did not start (a master-only
    /// job's, one from a queue: marks it running in the store), so the start's Redis round trip is
    /// not on the instant; the handler still begins at the instant. A node that dies in that window
    /// leaves a fire that never began to its job's recovery policy (`lost` records it lost). 0:
    /// start at the instant.
    pub start_lead_ms: u64,
    /// How long execution records (and idempotency keys) are kept.
    pub execution_retention_ms: u64,
    /// PostgreSQL URL of the history store (postgres://user:pass@host:port/db): every execution in
    /// a final state is copied there (asynchronously, in batches, by one node at a time) and kept
    /// `history_retention_days`; ListExecutions and GetExecution read it past what Redis keeps.
    /// Needs Redis. Empty: history is what Redis keeps (`execution_retention_ms`, the job caps).
    pub history_postgres: Option<String>,
    /// How long the history store keeps an execution.
    pub history_retention_days: u32,
    /// How many of a job's newest executions are kept before the retention age, for a job that does
    /// not say (`keep_last`).
    pub execution_keep_last: u32,
    /// How many older failed executions of a job are kept besides, for a job that does not say
    /// (`keep_failed`).
    pub execution_keep_failed: u32,
    /// How many of a shard's newest executions `ListExecutions` without a job lists, beside every
    /// open one (the index across jobs is bounded to them; older ones are listed by their job).
    pub execution_recent: u32,
    /// How often the node publishes its record (load, state) to the store.
    pub heartbeat_ms: u64,
    /// A node whose record is older than this (and that did not stop cleanly) is shown as failed.
    pub node_ttl_ms: u64,
    /// An external worker (or the node, as its worker sees it) silent this long is gone: its fires
    /// follow their jobs' recovery policy. Heartbeats go both ways every `heartbeat_ms`. Longer than
    /// `node_ttl_ms` by default: a worker's handler may hold its event loop for a while.
    pub worker_ttl_ms: u64,
    /// How long a gone node (left or failed) stays listed by `rota nodes` / `rota status` after its
    /// last heartbeat; then its record expires and it drops off the list.
    pub dead_node_retention_ms: u64,
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
    /// On SIGINT/SIGTERM/SIGHUP, how long running executions get to finish before they are cancelled.
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
    /// Shared secret nodes present to each other (SubmitTask(s), ReportLoad). When set, those calls
    /// need it (with or without tokens). Required on a cluster listening beyond loopback unless
    /// mutual TLS (tls_ca_file) or `allow_insecure_cluster`. Read from the config file or
    /// ROTA_CLUSTER_SECRET, never from the command line. Blank is refused.
    pub cluster_secret: Option<Secret>,
    /// Lets a clustered node listen beyond loopback with no cluster secret and no mutual TLS, so
    /// anyone who reaches its port can submit fires and report loads. For isolated test networks.
    pub allow_insecure_cluster: bool,
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
            redis_sentinel_username: None,
            redis_sentinel_password: None,
            redis_wait_replicas: 0,
            shards: 1,
            redis_wait_timeout_ms: 200,
            redis_prefix: "rota".into(),
            cluster: "default".into(),
            workers: 32,
            jobs_file: None,
            enable_shell: false,
            shell_allow: Vec::new(),
            shell_output_cap_bytes: 64 * 1024,
            http_allow: Vec::new(),
            misfire_threshold_ms: 60_000,
            start_lead_ms: crate::store::START_LEAD_MS as u64,
            execution_retention_ms: 24 * 3_600_000,
            history_postgres: None,
            history_retention_days: 90,
            execution_keep_last: crate::store::Keep::DEFAULT.last,
            execution_keep_failed: crate::store::Keep::DEFAULT.failed,
            execution_recent: crate::store::DEFAULT_RECENT_EXECUTIONS as u32,
            heartbeat_ms: 1_000,
            node_ttl_ms: 3_000,
            worker_ttl_ms: 10_000,
            dead_node_retention_ms: crate::store::DEFAULT_DEAD_NODE_RETENTION_MS,
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
            allow_insecure_cluster: false,
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
        toml::from_str(&text).map_err(|e| toml_error(&path.display().to_string(), &text, &e))
    }

    /// How long a claimed fire may stay `dispatching` before the master's sweep moves it to a
    /// queue: a few delivery attempts (each bounded by `dispatch_timeout_ms`) plus one lease renewal,
    /// so a slow peer is not raced by the sweep.
    pub fn dispatch_deadline_ms(&self) -> u64 {
        4 * self.dispatch_timeout_ms + self.lease_renew_ms
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
            crate::store::RedisUrl::parse(url).map_err(|reason| Error::Config { key: "redis".into(), reason })?;
        }
        let through_sentinel = self
            .redis
            .as_deref()
            .is_some_and(|u| matches!(crate::store::RedisUrl::parse(u), Ok(crate::store::RedisUrl::Sentinel { .. })));
        for (key, set) in [
            ("redis_sentinel_username", self.redis_sentinel_username.is_some()),
            ("redis_sentinel_password", self.redis_sentinel_password.is_some()),
        ] {
            if set && !through_sentinel {
                return bad(
                    key,
                    "is only for Redis found through Sentinel (redis+sentinel://, rediss+sentinel://)".into(),
                );
            }
        }
        // Set but blank is a mistake (a missing Kubernetes secret, say), not a request for none.
        if self.redis_sentinel_password.as_ref().is_some_and(|p| p.0.trim().is_empty()) {
            return bad("redis_sentinel_password", "is empty".into());
        }
        if let Some(u) = &self.redis_sentinel_username {
            if u.is_empty() || u.len() > 128 || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return bad("redis_sentinel_username", "must be 1 to 128 characters without spaces".into());
            }
        }
        if let Some(url) = &self.history_postgres {
            if self.redis.is_none() {
                return bad(
                    "history_postgres",
                    "the history store needs Redis (redis = ...): the in-memory store keeps no outbox".into(),
                );
            }
            crate::history::postgres::check_url(url)
                .map_err(|reason| Error::Config { key: "history_postgres".into(), reason })?;
        }
        if self.redis_wait_replicas > 0 && self.redis.is_none() {
            return bad(
                "redis_wait_replicas",
                "strict mode needs Redis (redis = ...); the in-memory store has no replicas".into(),
            );
        }
        if self.shards > 1 && self.redis.is_none() {
            return bad(
                "shards",
                "shards are in Redis (redis = ...); the in-memory store is one node, one shard".into(),
            );
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
            ("redis_wait_replicas", u64::from(self.redis_wait_replicas), 0, 16),
            ("shards", u64::from(self.shards), 1, u64::from(crate::store::keys::MAX_SHARDS)),
            // WAITs on the fire writes' connection run one behind another, and up to about six can
            // be out at once (two start and two finish batches, a claim, a trigger): together they
            // must stay under the store's 2 s reply timeout, or the client gives up first.
            ("redis_wait_timeout_ms", self.redis_wait_timeout_ms, 1, 250),
            ("execution_keep_last", u64::from(self.execution_keep_last), 1, u64::from(crate::job::MAX_KEEP)),
            ("history_retention_days", u64::from(self.history_retention_days), 1, 3650),
            // Within the fire-ahead window: a fire is claimed and handed over only that early.
            ("start_lead_ms", self.start_lead_ms, 0, crate::store::FIRE_AHEAD_MS as u64),
            ("execution_keep_failed", u64::from(self.execution_keep_failed), 0, u64::from(crate::job::MAX_KEEP)),
            ("execution_recent", u64::from(self.execution_recent), 0, 10_000_000),
            ("heartbeat_ms", self.heartbeat_ms, 10, 60_000),
            ("node_ttl_ms", self.node_ttl_ms, 20, 600_000),
            ("worker_ttl_ms", self.worker_ttl_ms, 20, 600_000),
            ("dead_node_retention_ms", self.dead_node_retention_ms, 100, 7 * DAY_MS),
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
        if self.worker_ttl_ms < 2 * self.heartbeat_ms {
            return bad("worker_ttl_ms", "must be at least twice heartbeat_ms (one lost beat is not death)".into());
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
        if self.cluster_secret.as_ref().is_some_and(|s| s.0.trim().is_empty()) {
            return bad("cluster_secret", "is empty: set a real secret, or unset it".into());
        }
        // A cluster's nodes take fires and load reports from each other; beyond loopback that
        // needs a credential, or anyone reaching the port can submit fires (see README "Security").
        let beyond_loopback = self.listen.parse::<SocketAddr>().is_ok_and(|a| !a.ip().is_loopback());
        if self.redis.is_some()
            && beyond_loopback
            && self.cluster_secret.is_none()
            && self.tls_ca_file.is_none()
            && !self.allow_insecure_cluster
        {
            return bad(
                "cluster_secret",
                format!(
                    "a clustered node listening on {} (beyond loopback) needs cluster_secret (or ROTA_CLUSTER_SECRET) \
                     or mutual TLS (tls_ca_file); set allow_insecure_cluster = true to run without",
                    self.listen
                ),
            );
        }
        if let Some(a) = &self.metrics_listen {
            let Ok(m) = a.parse::<SocketAddr>() else {
                return bad("metrics_listen", format!("'{a}' is not host:port (an IP address and a port)"));
            };
            if let Ok(g) = self.listen.parse::<SocketAddr>() {
                let overlap = m.ip() == g.ip() || m.ip().is_unspecified() || g.ip().is_unspecified();
                if m.port() != 0 && m.port() == g.port() && overlap {
                    return bad("metrics_listen", format!("port {} is the gRPC port (listen)", m.port()));
                }
            }
        }
        if let Some(u) = &self.alert_webhook {
            // Never echo the URL: its path and query are often the credential.
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return bad("alert_webhook", "is not an http(s) URL".into());
            }
        }
        Ok(())
    }
}

/// A TOML parse error as `key` (the file), the line, and the offending key when the line has one:
/// never the line's text or the value (toml's own message quotes both, and they may be secrets: a
/// cluster_secret, a Redis URL with its password, a token pasted where a file was expected).
pub fn toml_error(key: &str, text: &str, e: &toml::de::Error) -> Error {
    let start = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let line_no = text.get(..start).map_or(0, |t| t.matches('\n').count()) + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    // The key of a `key = value` line, or the name of a `[table]` / `[[table]]` header, when it
    // looks like one (a bare or dotted key).
    let header = line.trim().strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let header = header.map(|h| h.trim_start_matches('[').trim_end_matches(']').trim());
    let line_key = header.or_else(|| line.split_once('=').map(|(k, _)| k.trim())).filter(|k| {
        !k.is_empty() && k.len() <= 64 && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    });
    let msg = e.message().lines().next().unwrap_or("");
    // What kind of error, without quoted values; what was expected comes from the schema (safe).
    let kind_end = msg.find([':', '`', '"', '\'']).unwrap_or(msg.len());
    let kind = msg[..kind_end].trim().trim_end_matches(',');
    let expected = msg.find(", expected ").map(|i| &msg[i..]).unwrap_or("");
    let reason = if let Some(field) = msg.strip_prefix("missing field ") {
        // The field name comes from the schema, not the file.
        format!("missing field {field}")
    } else if kind.is_empty() || kind == "expected" || kind.starts_with("invalid key") || kind.starts_with("unclosed") {
        "invalid TOML syntax".to_string()
    } else if kind.starts_with("unknown field") {
        // What is allowed comes from the schema (safe to show).
        format!("unknown key{expected}")
    } else {
        format!("{kind}{}", crate::redact::value(expected))
    };
    let at = match line_key {
        Some(k) => format!("line {line_no}, key '{k}'"),
        None => format!("line {line_no}"),
    };
    Error::Config { key: key.to_string(), reason: format!("{at}: {reason}") }
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
    fn strict_mode_is_accepted_on_every_redis_deployment() {
        for url in ["redis://h:1", "redis+cluster://h:1,h:2", "redis+sentinel://s:1,s:2/main"] {
            let c = Config { redis: Some(url.into()), redis_wait_replicas: 1, ..Config::default() };
            c.validate().unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn the_sentinels_own_credentials_are_taken_and_never_printed() {
        let c: Config = toml::from_str(
            "redis = \"rediss+sentinel://:pw@s:1,s:2/main\"\nredis_sentinel_username = \"watcher\"\n\
             redis_sentinel_password = \"s3cret-sentinel\"\n",
        )
        .expect("parse");
        c.validate().expect("valid");
        assert_eq!(c.redis_sentinel_password, Some(Secret("s3cret-sentinel".into())));
        assert!(!format!("{c:?}").contains("s3cret-sentinel"), "the Sentinel password is printed by Debug");
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
            (Config { redis: Some("redis+cluster://u:pw@h:1,h2".into()), ..Config::default() }, "config redis:"),
            (Config { redis: Some("redis+sentinel://h:1".into()), ..Config::default() }, "config redis:"),
            (Config { redis: Some("rediss+sentinel://h:1/m/x".into()), ..Config::default() }, "config redis:"),
            (
                Config {
                    redis: Some("redis://h:1".into()),
                    redis_sentinel_password: Some(Secret("s3cret".into())),
                    ..Config::default()
                },
                "config redis_sentinel_password: is only for Redis found through Sentinel",
            ),
            (
                Config { redis_sentinel_username: Some("u".into()), ..Config::default() },
                "config redis_sentinel_username: is only for Redis found through Sentinel",
            ),
            (
                Config {
                    redis: Some("rediss+sentinel://h:1/m".into()),
                    redis_sentinel_password: Some(Secret(" ".into())),
                    ..Config::default()
                },
                "config redis_sentinel_password: is empty",
            ),
            (
                Config {
                    redis: Some("redis+sentinel://h:1/m".into()),
                    redis_sentinel_username: Some("a b".into()),
                    ..Config::default()
                },
                "config redis_sentinel_username: must be 1 to 128 characters",
            ),
            (Config { node_ttl_ms: 1000, ..Config::default() }, "config node_ttl_ms:"),
            (Config { worker_ttl_ms: 1000, ..Config::default() }, "config worker_ttl_ms:"),
            (Config { worker_ttl_ms: 0, ..Config::default() }, "config worker_ttl_ms:"),
            (Config { log_format: "xml".into(), ..Config::default() }, "config log_format:"),
            (Config { lease_ttl_ms: 1000, ..Config::default() }, "config lease_ttl_ms:"),
            (Config { http_allow: vec!["10.1.2.3/8".into()], ..Config::default() }, "config http_allow:"),
            (Config { http_allow: vec!["not a host".into()], ..Config::default() }, "config http_allow:"),
            (Config { max_clock_offset_ms: 0, ..Config::default() }, "config max_clock_offset_ms:"),
            (Config { max_clock_offset_ms: 60_001, ..Config::default() }, "config max_clock_offset_ms:"),
            (Config { execution_retention_ms: u64::MAX, ..Config::default() }, "config execution_retention_ms:"),
            (Config { execution_retention_ms: 59_999, ..Config::default() }, "config execution_retention_ms:"),
            (Config { dead_node_retention_ms: 99, ..Config::default() }, "config dead_node_retention_ms:"),
            (
                Config { execution_keep_last: 0, ..Config::default() },
                "config execution_keep_last: 0 is not in 1..=100000",
            ),
            (Config { execution_keep_failed: 100_001, ..Config::default() }, "config execution_keep_failed:"),
            (
                Config { execution_recent: 10_000_001, ..Config::default() },
                "config execution_recent: 10000001 is not in 0..=10000000",
            ),
            (Config { start_lead_ms: 301, ..Config::default() }, "config start_lead_ms: 301 is not in 0..=300"),
            (
                Config { redis_wait_replicas: 1, ..Config::default() },
                "config redis_wait_replicas: strict mode needs Redis",
            ),
            (
                Config { redis_wait_timeout_ms: 0, redis: Some("redis://h:1".into()), ..Config::default() },
                "config redis_wait_timeout_ms: 0 is not in 1..=250",
            ),
            (Config { dead_node_retention_ms: u64::MAX, ..Config::default() }, "config dead_node_retention_ms:"),
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
mod hardening_tests {
    use super::*;

    fn from_text(text: &str) -> Result<Config> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rota.toml");
        std::fs::write(&path, text).expect("write");
        Config::from_file(&path)
    }

    /// A parse error names the key and line, never the value or the line's text (it may be a
    /// secret: a cluster_secret, a Redis URL with its password).
    #[test]
    fn parse_errors_name_key_and_line_not_value() {
        let cases = [
            ("workers = 4\ncluster_secret = \"s3cret\nlog = \"info\"\n", "line 2"),
            ("redis = \"redis://u:s3cret@h:1\"\nworkers = \"s3cret\"\n", "line 2"),
            ("cluster_secret = { v = \"s3cret\" }\n", "line 1"),
            ("s3cret\n", "line 1"),
            ("wrokers = \"s3cret\"\n", "line 1"),
        ];
        for (text, want) in cases {
            let e = from_text(text).expect_err("bad").to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("s3cret"), "{text:?}: {e}");
        }
        let e = from_text("workers = \"x\"\n").expect_err("bad").to_string();
        assert!(e.contains("workers") && e.contains("line 1"), "the key is named: {e}");
        let e = from_text("wrokers = 1\n").expect_err("bad").to_string();
        assert!(e.contains("wrokers") && e.contains("unknown"), "the unknown key is named: {e}");
    }

    /// The webhook URL is a secret (its path and query): validation never echoes it.
    #[test]
    fn a_bad_webhook_url_is_not_echoed() {
        let c = Config { alert_webhook: Some("ftp://h/s3cret?t=s3cret".into()), ..Config::default() };
        let e = c.validate().expect_err("bad").to_string();
        assert!(e.starts_with("config alert_webhook:") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn a_blank_cluster_secret_is_refused() {
        for s in ["", "  "] {
            let c = Config { cluster_secret: Some(Secret(s.into())), ..Config::default() };
            let e = c.validate().expect_err("blank").to_string();
            assert!(e.starts_with("config cluster_secret:"), "{e}");
        }
    }

    #[test]
    fn metrics_port_must_differ_from_grpc_port() {
        for m in ["127.0.0.1:7700", "0.0.0.0:7700"] {
            let c = Config { metrics_listen: Some(m.into()), ..Config::default() };
            let e = c.validate().expect_err("same port").to_string();
            assert!(e.starts_with("config metrics_listen:"), "{e}");
        }
        let c = Config { metrics_listen: Some("127.0.0.1:9464".into()), ..Config::default() };
        c.validate().expect("different ports");
        let c =
            Config { listen: "127.0.0.1:0".into(), metrics_listen: Some("127.0.0.1:0".into()), ..Config::default() };
        c.validate().expect("port 0 picks two different ports");
    }

    /// A clustered node listening beyond loopback needs a cluster secret or mutual TLS, unless the
    /// operator says `allow_insecure_cluster`.
    #[test]
    fn a_cluster_beyond_loopback_needs_a_credential() {
        let base = || Config {
            listen: "0.0.0.0:7700".into(),
            redis: Some("redis://127.0.0.1:6379".into()),
            ..Config::default()
        };
        let e = base().validate().expect_err("insecure").to_string();
        assert!(e.starts_with("config cluster_secret:") && e.contains("allow_insecure_cluster"), "{e}");
        Config { allow_insecure_cluster: true, ..base() }.validate().expect("told to");
        Config { cluster_secret: Some(Secret("s".into())), ..base() }.validate().expect("with a secret");
        let mtls = Config {
            tls_cert_file: Some("c.pem".into()),
            tls_key_file: Some("k.pem".into()),
            tls_ca_file: Some("ca.pem".into()),
            ..base()
        };
        mtls.validate().expect("mutual TLS");
        Config { listen: "127.0.0.1:7700".into(), ..base() }.validate().expect("loopback");
        Config { redis: None, ..base() }.validate().expect("a single node on the in-memory store");
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
