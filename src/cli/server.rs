//! The flags of `rota server`, applied over the config file and the environment.
use std::path::PathBuf;

use clap::Args;

use crate::config::Config;

#[derive(Debug, Args, Default)]
pub struct ServerArgs {
    /// Check the configuration (and the jobs, tokens and TLS files) and that the store answers, print
    /// a summary and exit: 0 when all is well, 64 when the configuration is wrong, 69 when the store
    /// cannot be reached.
    #[arg(long)]
    pub check: bool,
    /// With --check: do not try the store (checking on a host that cannot reach Redis).
    #[arg(long, requires = "check")]
    pub check_offline: bool,
    /// TOML config file (see deploy/rota.example.toml).
    #[arg(long, env = "ROTA_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC listen address (host:port; port 0 picks a free one; default 127.0.0.1:7700).
    #[arg(long, env = "ROTA_LISTEN")]
    pub listen: Option<String>,
    /// Address peers and clients use to reach this node (default: the bound address).
    #[arg(long, env = "ROTA_ADVERTISE")]
    pub advertise: Option<String>,
    /// This node's id, unique in the cluster (default: the host name).
    #[arg(long, env = "ROTA_NODE_ID")]
    pub node_id: Option<String>,
    /// Redis URL; without it the node uses the in-memory store (single node). A password in it given
    /// as --redis is visible to every user on the host in `ps`: set ROTA_REDIS or `redis` in the
    /// config file instead.
    #[arg(long, env = "ROTA_REDIS", hide_env_values = true)]
    pub redis: Option<String>,
    /// PEM CA of Redis's certificate (rediss://).
    #[arg(long, env = "ROTA_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// The Sentinels' own user, when they require one (redis+sentinel://). Their password is read
    /// from ROTA_REDIS_SENTINEL_PASSWORD or the config file only.
    #[arg(long, env = "ROTA_REDIS_SENTINEL_USERNAME")]
    pub redis_sentinel_username: Option<String>,
    /// First part of every Redis key (default rota).
    #[arg(long, env = "ROTA_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Cluster name: nodes with the same Redis, prefix and cluster form one cluster (default default).
    #[arg(long, env = "ROTA_CLUSTER")]
    pub cluster: Option<String>,
    /// Executions run at once (default 32).
    #[arg(long, env = "ROTA_WORKERS")]
    pub workers: Option<u32>,
    /// TOML file of jobs to put at start.
    #[arg(long = "jobs", env = "ROTA_JOBS")]
    pub jobs_file: Option<PathBuf>,
    /// Enable the shell handler (runs programs on request; default off).
    #[arg(long, env = "ROTA_ENABLE_SHELL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub enable_shell: Option<bool>,
    /// Program the shell handler may run (absolute path); repeat, or comma-separate in the env.
    #[arg(long = "shell-allow", env = "ROTA_SHELL_ALLOW", value_delimiter = ',')]
    pub shell_allow: Vec<String>,
    /// Bytes of stdout and of stderr kept per shell run (default 65536).
    #[arg(long, env = "ROTA_SHELL_OUTPUT_CAP_BYTES")]
    pub shell_output_cap_bytes: Option<usize>,
    /// Host or network (a.b.c.d/n) http jobs may reach; repeat, or comma-separate in the env.
    /// Without it: anywhere but loopback and link-local.
    #[arg(long = "http-allow", env = "ROTA_HTTP_ALLOW", value_delimiter = ',')]
    pub http_allow: Vec<String>,
    /// A fire later than this is a misfire, handled by the job's misfire policy (default 60000).
    #[arg(long, env = "ROTA_MISFIRE_THRESHOLD_MS")]
    pub misfire_threshold_ms: Option<u64>,
    /// How long execution records are kept (default 86400000, 24 h).
    #[arg(long, env = "ROTA_EXECUTION_RETENTION_MS")]
    pub execution_retention_ms: Option<u64>,
    /// Strict mode: fire writes count once this many Redis replicas acknowledged them (WAIT);
    /// default 0, off.
    #[arg(long, env = "ROTA_REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: Option<u32>,
    /// Scheduling shards, each with its own master lease (1-256, default 1). Fixed when the
    /// cluster is created: every node must say the same.
    #[arg(long, env = "ROTA_SHARDS")]
    pub shards: Option<u16>,
    /// How long strict mode waits for the replicas, per write (default 200).
    #[arg(long, env = "ROTA_REDIS_WAIT_TIMEOUT_MS")]
    pub redis_wait_timeout_ms: Option<u64>,
    /// How long before its instant a fire is started, its handler still beginning at the instant
    /// (0-300, default 100; 0: at the instant).
    #[arg(long, env = "ROTA_START_LEAD_MS")]
    pub start_lead_ms: Option<u64>,
    /// PostgreSQL URL of the history store (postgres://user:pass@host:port/db): every finished
    /// execution is copied there and kept history_retention_days. A password here shows in `ps`:
    /// set ROTA_HISTORY_POSTGRES or `history_postgres` in the config file instead.
    #[arg(long, env = "ROTA_HISTORY_POSTGRES", hide_env_values = true)]
    pub history_postgres: Option<String>,
    /// Days the history store keeps an execution (default 90).
    #[arg(long, env = "ROTA_HISTORY_RETENTION_DAYS")]
    pub history_retention_days: Option<u32>,
    /// Executions kept per job that does not set keep_last (default 1000).
    #[arg(long, env = "ROTA_EXECUTION_KEEP_LAST")]
    pub execution_keep_last: Option<u32>,
    /// Older failed executions kept per job besides, where it does not set keep_failed
    /// (default 1000).
    #[arg(long, env = "ROTA_EXECUTION_KEEP_FAILED")]
    pub execution_keep_failed: Option<u32>,
    /// How many of the newest executions (per shard) ListExecutions without a job lists, beside
    /// every open one (default 10000).
    #[arg(long, env = "ROTA_EXECUTION_RECENT")]
    pub execution_recent: Option<u32>,
    /// How often this node reports itself alive (default 1000).
    #[arg(long, env = "ROTA_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// A node silent this long is dead and its work recovered (default 3000).
    #[arg(long, env = "ROTA_NODE_TTL_MS")]
    pub node_ttl_ms: Option<u64>,
    /// An external worker silent this long is gone and its fires follow their recovery policy
    /// (default 10000; at least twice --heartbeat-ms).
    #[arg(long, env = "ROTA_WORKER_TTL_MS")]
    pub worker_ttl_ms: Option<u64>,
    /// How long a gone node (left or failed) stays listed after its last heartbeat (default 300000).
    #[arg(long, env = "ROTA_DEAD_NODE_RETENTION_MS")]
    pub dead_node_retention_ms: Option<u64>,
    /// Master load (active/max workers) above which fires go to other nodes (default 0.8).
    #[arg(long, env = "ROTA_LOAD_THRESHOLD")]
    pub load_threshold: Option<f64>,
    /// Deadline of a SubmitTasks call to another node; past it the fires go to its queue (default 500).
    #[arg(long, env = "ROTA_DISPATCH_TIMEOUT_MS")]
    pub dispatch_timeout_ms: Option<u64>,
    /// How many times a fire whose node died mid-run is re-run (jobs with recovery = rerun; default 2).
    #[arg(long, env = "ROTA_MAX_RECOVERIES")]
    pub max_recoveries: Option<u32>,
    /// Master lease lifetime: a dead master is replaced after about this long (default 2000).
    #[arg(long, env = "ROTA_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u64>,
    /// How often the master renews its lease (default 600).
    #[arg(long, env = "ROTA_LEASE_RENEW_MS")]
    pub lease_renew_ms: Option<u64>,
    /// On SIGINT/SIGTERM/SIGHUP, how long running executions get to finish (default 30000).
    #[arg(long, env = "ROTA_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Offset from Redis's clock (ms) past which this node warns and raises a clock_skew alert
    /// (default 250).
    #[arg(long, env = "ROTA_MAX_CLOCK_OFFSET_MS")]
    pub max_clock_offset_ms: Option<u64>,
    /// PEM certificate of this node (TLS on the gRPC port).
    #[arg(long, env = "ROTA_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "ROTA_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM of the cluster CA (mutual TLS between nodes).
    #[arg(long, env = "ROTA_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// API tokens file (hashed tokens with roles); without it the API is open.
    #[arg(long, env = "ROTA_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Let a clustered node listen beyond loopback with no cluster secret (ROTA_CLUSTER_SECRET) and
    /// no mutual TLS: anyone reaching the port can then submit fires. For isolated test networks.
    #[arg(long, env = "ROTA_ALLOW_INSECURE_CLUSTER", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_insecure_cluster: Option<bool>,
    /// HTTP address for /metrics, /healthz and /readyz (off unless given).
    #[arg(long, env = "ROTA_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// URL alerts are POSTed to. Often a credential itself (its path or query): prefer
    /// ROTA_ALERT_WEBHOOK or the config file to the flag, visible in `ps`. Logged as scheme://host:port.
    #[arg(long, env = "ROTA_ALERT_WEBHOOK", hide_env_values = true)]
    pub alert_webhook: Option<String>,
    /// Timeout of one alert webhook POST (default 5000).
    #[arg(long, env = "ROTA_ALERT_WEBHOOK_TIMEOUT_MS")]
    pub alert_webhook_timeout_ms: Option<u64>,
    /// Log format: plain or json (default plain).
    #[arg(long, env = "ROTA_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter (RUST_LOG wins), e.g. info or rota=debug (default info).
    #[arg(long, env = "ROTA_LOG")]
    pub log: Option<String>,
}

impl ServerArgs {
    /// Defaults, then the file, then env and flags.
    pub fn into_config(self) -> crate::Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { c.$f = v; } )* };
        }
        over!(
            listen,
            node_id,
            redis_prefix,
            cluster,
            workers,
            enable_shell,
            shell_output_cap_bytes,
            misfire_threshold_ms,
            execution_retention_ms,
            execution_keep_last,
            execution_keep_failed,
            execution_recent,
            history_retention_days,
            start_lead_ms,
            redis_wait_replicas,
            redis_wait_timeout_ms,
            shards,
            heartbeat_ms,
            node_ttl_ms,
            worker_ttl_ms,
            dead_node_retention_ms,
            lease_ttl_ms,
            lease_renew_ms,
            load_threshold,
            dispatch_timeout_ms,
            max_recoveries,
            shutdown_grace_ms,
            max_clock_offset_ms,
            allow_insecure_cluster,
            alert_webhook_timeout_ms,
            log_format,
            log
        );
        if !self.shell_allow.is_empty() {
            c.shell_allow = self.shell_allow;
        }
        if !self.http_allow.is_empty() {
            c.http_allow = self.http_allow;
        }
        if self.advertise.is_some() {
            c.advertise = self.advertise;
        }
        if self.redis.is_some() {
            c.redis = self.redis.filter(|s| !s.is_empty());
        }
        if self.jobs_file.is_some() {
            c.jobs_file = self.jobs_file;
        }
        if self.history_postgres.is_some() {
            c.history_postgres = self.history_postgres.filter(|s| !s.is_empty());
        }
        if self.redis_sentinel_username.is_some() {
            c.redis_sentinel_username = self.redis_sentinel_username;
        }
        if self.redis_ca_file.is_some() {
            c.redis_ca_file = self.redis_ca_file;
        }
        if self.tokens_file.is_some() {
            c.tokens_file = self.tokens_file;
        }
        for (flag, field) in [
            (self.tls_cert_file, &mut c.tls_cert_file),
            (self.tls_key_file, &mut c.tls_key_file),
            (self.tls_ca_file, &mut c.tls_ca_file),
        ] {
            if flag.is_some() {
                *field = flag;
            }
        }
        // Secrets come from the environment or the config file, never from argv (visible in ps).
        // Set but blank is kept (and refused by `validate`): it is a mistake, such as a missing
        // Kubernetes secret, not a request for no secret.
        if let Ok(s) = std::env::var("ROTA_CLUSTER_SECRET") {
            c.cluster_secret = Some(crate::config::Secret(s));
        }
        if let Ok(s) = std::env::var("ROTA_REDIS_SENTINEL_PASSWORD") {
            c.redis_sentinel_password = Some(crate::config::Secret(s));
        }
        if self.metrics_listen.is_some() {
            c.metrics_listen = self.metrics_listen.filter(|s| !s.is_empty());
        }
        if self.alert_webhook.is_some() {
            c.alert_webhook = self.alert_webhook.filter(|s| !s.is_empty());
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// The configuration is declared once (`config::Config`, documented key by key in
    /// `deploy/rota.example.toml`) and reachable from the command line: every key has a flag of the
    /// same name on `rota server` (with its `ROTA_*` env), except the ones kept off argv on purpose;
    /// and no flag exists that names no key.
    #[test]
    fn every_config_key_has_its_flag_and_every_flag_its_key() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let server = cli.find_subcommand("server").expect("server subcommand");
        let flags: Vec<String> = server.get_arguments().map(|a| a.get_id().to_string()).collect();
        let example = include_str!("../../deploy/rota.example.toml");
        let keys: Vec<String> = example
            .lines()
            .map(|l| l.trim_start_matches('#').trim())
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_string()))
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        assert!(keys.len() > 30, "read the example's keys: {keys:?}");
        // Secrets never on argv (visible in ps): the file or the environment only.
        let off_argv = ["cluster_secret", "redis_sentinel_password"];
        for k in &keys {
            assert!(flags.contains(k) || off_argv.contains(&k.as_str()), "config key '{k}' has no flag on rota server");
        }
        // Flags that are about the invocation, not settings.
        let invocation = ["check", "check_offline", "config", "help", "version"];
        for f in &flags {
            let f = f.as_str();
            assert!(
                keys.iter().any(|k| k == f) || invocation.contains(&f) || f == "jobs",
                "flag '{f}' of rota server names no config key"
            );
        }
    }

    /// Every server flag reaches the config (a flag that parses but is not applied is a silent bug).
    #[test]
    fn every_server_flag_is_applied() {
        let args = [
            "rota",
            "server",
            "--listen",
            "127.0.0.1:1",
            "--advertise",
            "h:2",
            "--node-id",
            "n9",
            "--redis",
            "redis://r:1",
            "--redis-ca-file",
            "rca.pem",
            "--redis-sentinel-username",
            "su",
            "--redis-prefix",
            "p",
            "--cluster",
            "c",
            "--workers",
            "3",
            "--jobs",
            "j.toml",
            "--enable-shell",
            "--shell-allow",
            "/bin/a,/bin/b",
            "--http-allow",
            "hooks.example,10.0.0.0/8",
            "--shell-output-cap-bytes",
            "5",
            "--misfire-threshold-ms",
            "7000",
            "--execution-retention-ms",
            "70000",
            "--history-postgres",
            "postgres://h/db",
            "--history-retention-days",
            "61",
            "--execution-keep-last",
            "41",
            "--execution-keep-failed",
            "43",
            "--execution-recent",
            "44",
            "--start-lead-ms",
            "53",
            "--redis-wait-replicas",
            "2",
            "--redis-wait-timeout-ms",
            "47",
            "--shards",
            "9",
            "--heartbeat-ms",
            "11",
            "--node-ttl-ms",
            "33",
            "--worker-ttl-ms",
            "31",
            "--dead-node-retention-ms",
            "37",
            "--load-threshold",
            "0.5",
            "--dispatch-timeout-ms",
            "13",
            "--max-recoveries",
            "4",
            "--lease-ttl-ms",
            "1500",
            "--lease-renew-ms",
            "500",
            "--shutdown-grace-ms",
            "17",
            "--max-clock-offset-ms",
            "23",
            "--tokens-file",
            "t.toml",
            "--tls-cert-file",
            "c.pem",
            "--tls-key-file",
            "k.pem",
            "--tls-ca-file",
            "ca.pem",
            "--allow-insecure-cluster",
            "--metrics-listen",
            "127.0.0.1:9",
            "--alert-webhook",
            "http://w",
            "--alert-webhook-timeout-ms",
            "19",
            "--log-format",
            "json",
            "--log",
            "debug",
        ];
        let Command::Server(a) = Cli::try_parse_from(args).expect("parse").cmd else { panic!("not server") };
        let c = a.into_config().expect("config");
        let want = Config {
            listen: "127.0.0.1:1".into(),
            advertise: Some("h:2".into()),
            node_id: "n9".into(),
            redis: Some("redis://r:1".into()),
            redis_ca_file: Some("rca.pem".into()),
            redis_sentinel_username: Some("su".into()),
            redis_sentinel_password: None,
            redis_prefix: "p".into(),
            cluster: "c".into(),
            workers: 3,
            jobs_file: Some("j.toml".into()),
            enable_shell: true,
            shell_allow: vec!["/bin/a".into(), "/bin/b".into()],
            shell_output_cap_bytes: 5,
            http_allow: vec!["hooks.example".into(), "10.0.0.0/8".into()],
            misfire_threshold_ms: 7000,
            execution_retention_ms: 70000,
            history_postgres: Some("postgres://h/db".into()),
            history_retention_days: 61,
            execution_keep_last: 41,
            execution_keep_failed: 43,
            execution_recent: 44,
            start_lead_ms: 53,
            redis_wait_replicas: 2,
            redis_wait_timeout_ms: 47,
            shards: 9,
            heartbeat_ms: 11,
            node_ttl_ms: 33,
            worker_ttl_ms: 31,
            dead_node_retention_ms: 37,
            load_threshold: 0.5,
            dispatch_timeout_ms: 13,
            max_recoveries: 4,
            lease_ttl_ms: 1500,
            lease_renew_ms: 500,
            shutdown_grace_ms: 17,
            max_clock_offset_ms: 23,
            metrics_listen: Some("127.0.0.1:9".into()),
            tls_cert_file: Some("c.pem".into()),
            tls_key_file: Some("k.pem".into()),
            tls_ca_file: Some("ca.pem".into()),
            tokens_file: Some("t.toml".into()),
            cluster_secret: None,
            allow_insecure_cluster: true,
            alert_webhook: Some("http://w".into()),
            alert_webhook_timeout_ms: 19,
            log_format: "json".into(),
            log: "debug".into(),
        };
        assert_eq!(c, want);
    }
}
