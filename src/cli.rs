//! The `rota` command line: `rota server` runs a node; the other subcommands are a gRPC client of a
//! node (`--endpoint`, env ROTA_ENDPOINT), printing tables by default and JSON with `--json`.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::api::convert;
use crate::config::Config;
use crate::job::JobSpec;
use crate::pb;
use crate::pb::scheduler_service_client::SchedulerServiceClient;

#[derive(Debug, Parser)]
#[command(name = "rota", version, about = "A distributed cron and task scheduler")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node (flags override ROTA_* env, which overrides --config FILE).
    Server(Box<ServerArgs>),
    /// Create, inspect and control jobs.
    Job {
        #[command(subcommand)]
        cmd: JobCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Inspect executions.
    Exec {
        #[command(subcommand)]
        cmd: ExecCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the cluster's nodes with state, role and load.
    Nodes {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Who is master, the store, and every node.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Node to talk to.
    #[arg(long, env = "ROTA_ENDPOINT", default_value = "http://127.0.0.1:7700", global = true)]
    pub endpoint: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM CA that signed the node's certificate (TLS); implies https.
    #[arg(long, env = "ROTA_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Args, Default)]
pub struct ServerArgs {
    /// Check the configuration (and the jobs and tokens files) and exit: 0 when valid, 64 when not.
    #[arg(long)]
    pub check: bool,
    /// TOML config file (see deploy/rota.example.toml).
    #[arg(long, env = "ROTA_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC listen address (host:port; port 0 picks a free one).
    #[arg(long, env = "ROTA_LISTEN")]
    pub listen: Option<String>,
    /// Address peers and clients use to reach this node.
    #[arg(long, env = "ROTA_ADVERTISE")]
    pub advertise: Option<String>,
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
    #[arg(long, env = "ROTA_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    #[arg(long, env = "ROTA_CLUSTER")]
    pub cluster: Option<String>,
    /// Executions run at once.
    #[arg(long, env = "ROTA_WORKERS")]
    pub workers: Option<u32>,
    /// TOML file of jobs to put at start.
    #[arg(long = "jobs", env = "ROTA_JOBS")]
    pub jobs_file: Option<PathBuf>,
    /// Enable the shell handler (runs programs on request).
    #[arg(long, env = "ROTA_ENABLE_SHELL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub enable_shell: Option<bool>,
    /// Program the shell handler may run (absolute path); repeat, or comma-separate in the env.
    #[arg(long = "shell-allow", env = "ROTA_SHELL_ALLOW", value_delimiter = ',')]
    pub shell_allow: Vec<String>,
    #[arg(long, env = "ROTA_SHELL_OUTPUT_CAP_BYTES")]
    pub shell_output_cap_bytes: Option<usize>,
    /// Host or network (a.b.c.d/n) http jobs may reach; repeat, or comma-separate in the env.
    /// Without it: anywhere but loopback and link-local.
    #[arg(long = "http-allow", env = "ROTA_HTTP_ALLOW", value_delimiter = ',')]
    pub http_allow: Vec<String>,
    #[arg(long, env = "ROTA_MISFIRE_THRESHOLD_MS")]
    pub misfire_threshold_ms: Option<u64>,
    #[arg(long, env = "ROTA_EXECUTION_RETENTION_MS")]
    pub execution_retention_ms: Option<u64>,
    #[arg(long, env = "ROTA_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    #[arg(long, env = "ROTA_NODE_TTL_MS")]
    pub node_ttl_ms: Option<u64>,
    /// Master load (active/max workers) above which fires go to other nodes.
    #[arg(long, env = "ROTA_LOAD_THRESHOLD")]
    pub load_threshold: Option<f64>,
    #[arg(long, env = "ROTA_DISPATCH_TIMEOUT_MS")]
    pub dispatch_timeout_ms: Option<u64>,
    #[arg(long, env = "ROTA_MAX_RECOVERIES")]
    pub max_recoveries: Option<u32>,
    #[arg(long, env = "ROTA_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u64>,
    #[arg(long, env = "ROTA_LEASE_RENEW_MS")]
    pub lease_renew_ms: Option<u64>,
    #[arg(long, env = "ROTA_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Offset from Redis's clock (ms) past which this node warns and raises a clock_skew alert.
    #[arg(long, env = "ROTA_MAX_CLOCK_OFFSET_MS")]
    pub max_clock_offset_ms: Option<u64>,
    /// PEM certificate of this node (TLS on the gRPC port).
    #[arg(long, env = "ROTA_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
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
    #[arg(long, env = "ROTA_ALERT_WEBHOOK_TIMEOUT_MS")]
    pub alert_webhook_timeout_ms: Option<u64>,
    /// plain or json.
    #[arg(long, env = "ROTA_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter (RUST_LOG wins), e.g. info or rota=debug.
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
            heartbeat_ms,
            node_ttl_ms,
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
        if self.metrics_listen.is_some() {
            c.metrics_listen = self.metrics_listen.filter(|s| !s.is_empty());
        }
        if self.alert_webhook.is_some() {
            c.alert_webhook = self.alert_webhook.filter(|s| !s.is_empty());
        }
        Ok(c)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ConcurrencyArg {
    Allow,
    Forbid,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RecoveryArg {
    Lost,
    Rerun,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MisfireArg {
    FireOnceNow,
    Skip,
}

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Create or replace a job, from flags or from a TOML file (the fields of one [[job]]).
    Put(Box<PutArgs>),
    Get {
        id: String,
    },
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    Delete {
        id: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Fire a job now, once.
    Trigger {
        id: String,
        /// A retried trigger with the same key does not fire again.
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// TOML file with the job's fields (id, cron, handler, args, ...).
    #[arg(long, conflicts_with_all = ["id", "cron"])]
    pub file: Option<PathBuf>,
    #[arg(long, required_unless_present = "file")]
    pub id: Option<String>,
    /// Cron with seconds (6 or 7 fields) or standard 5-field cron.
    #[arg(long, required_unless_present = "file")]
    pub cron: Option<String>,
    /// IANA time zone (default UTC).
    #[arg(long = "tz")]
    pub time_zone: Option<String>,
    #[arg(long)]
    pub handler: Option<String>,
    /// Handler arguments as JSON, e.g. '["2s"]' or '{"url": "http://..."}'.
    #[arg(long)]
    pub args: Option<String>,
    /// Quartz-style invoke target instead of --handler/--args, e.g. "sleep('2s')".
    #[arg(long)]
    pub invoke: Option<String>,
    #[arg(long)]
    pub master_only: bool,
    #[arg(long, value_enum)]
    pub concurrency: Option<ConcurrencyArg>,
    #[arg(long, value_enum)]
    pub misfire: Option<MisfireArg>,
    /// What happens when the node running a fire dies: record it lost (default) or run it again.
    #[arg(long, value_enum)]
    pub recovery: Option<RecoveryArg>,
    /// e.g. 30s, 5m.
    #[arg(long)]
    pub timeout: Option<String>,
    #[arg(long)]
    pub retries: Option<u32>,
    /// First retry delay (doubles each retry), e.g. 1s.
    #[arg(long)]
    pub retry_backoff: Option<String>,
    #[arg(long)]
    pub paused: bool,
    #[arg(long)]
    pub description: Option<String>,
    /// key=value, repeatable.
    #[arg(long = "label")]
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    Pending,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Skipped,
    Misfired,
    Lost,
    Superseded,
}

#[derive(Debug, Subcommand)]
pub enum ExecCmd {
    /// Newest first.
    List {
        #[arg(long)]
        job: Option<String>,
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        page_token: Option<String>,
    },
    Get {
        id: String,
    },
    /// Stream execution changes until interrupted.
    Watch {
        #[arg(long)]
        job: Option<String>,
    },
}

/// A client-side failure, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(
        "cannot reach rota at {endpoint}: {reason} (is `rota server` running there? set --endpoint or ROTA_ENDPOINT)"
    )]
    Connect { endpoint: String, reason: String },
    #[error("{code:?}: {message}")]
    Call { code: tonic::Code, message: String },
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Connect { .. } => 3,
            CliError::Call { .. } => 1,
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        CliError::Call { code: s.code(), message: s.message().to_string() }
    }
}

/// Adds the API token (env ROTA_TOKEN, never a flag: argv is visible to every user) to each call.
#[derive(Clone)]
pub struct TokenInterceptor(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Client = SchedulerServiceClient<tonic::service::interceptor::InterceptedService<Channel, TokenInterceptor>>;

async fn connect(args: &ClientArgs) -> Result<Client, CliError> {
    let endpoint = args.endpoint.as_str();
    let scheme = if args.ca_file.is_some() { "https" } else { "http" };
    let url = if endpoint.contains("://") { endpoint.to_string() } else { format!("{scheme}://{endpoint}") };
    let mut ep = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| CliError::Usage(format!("--endpoint '{endpoint}': {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30));
    if let Some(ca) = &args.ca_file {
        let pem = std::fs::read(ca).map_err(|e| CliError::Usage(format!("--ca-file {}: {e}", ca.display())))?;
        let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
        ep = ep.tls_config(tls).map_err(|e| CliError::Usage(format!("--ca-file: {e}")))?;
    }
    let ch = ep.connect().await.map_err(|e| CliError::Connect { endpoint: url, reason: root_cause(&e) })?;
    let token = match std::env::var("ROTA_TOKEN") {
        Ok(t) if !t.is_empty() => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| CliError::Usage("ROTA_TOKEN has characters not allowed in a header".into()))?,
        ),
        _ => None,
    };
    Ok(SchedulerServiceClient::with_interceptor(ch, TokenInterceptor(token)))
}

/// The innermost error's text ("Connection refused", not "transport error").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Runs a client subcommand, printing to stdout.
pub async fn run_client(cmd: Command) -> Result<(), CliError> {
    match cmd {
        Command::Server(_) => Err(CliError::Usage("server is not a client command".into())),
        Command::Job { cmd, client } => job_cmd(cmd, &client).await,
        Command::Exec { cmd, client } => exec_cmd(cmd, &client).await,
        Command::Nodes { client } => {
            let mut c = connect(&client).await?;
            let r = c.list_nodes(pb::ListNodesRequest {}).await?.into_inner();
            print_nodes(&r.nodes, client.json);
            Ok(())
        }
        Command::Status { client } => {
            let mut c = connect(&client).await?;
            let r = c.get_cluster_status(pb::GetClusterStatusRequest {}).await?.into_inner();
            if client.json {
                let v = json!({"master_id": r.master_id, "epoch": r.epoch, "store": r.store,
                    "nodes": r.nodes.iter().map(node_json).collect::<Vec<_>>()});
                println!("{v:#}");
            } else {
                let master = if r.master_id.is_empty() { "(none)" } else { r.master_id.as_str() };
                println!("master: {master}  epoch: {}  store: {}", r.epoch, r.store);
                print_nodes(&r.nodes, false);
            }
            Ok(())
        }
    }
}

fn put_spec(a: PutArgs) -> Result<JobSpec, CliError> {
    if let Some(path) = &a.file {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        return toml::from_str(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())));
    }
    let dur = |flag: &str, v: &Option<String>| -> Result<u64, CliError> {
        v.as_deref()
            .map(|s| crate::worker::handlers::parse_duration(s).map(|d| d.as_millis() as u64))
            .transpose()
            .map_err(|e| CliError::Usage(format!("--{flag}: {e}")))
            .map(Option::unwrap_or_default)
    };
    let args = match &a.args {
        Some(s) => serde_json::from_str(s).map_err(|e| CliError::Usage(format!("--args is not JSON: {e}")))?,
        None => Value::Null,
    };
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').ok_or_else(|| CliError::Usage(format!("--label '{l}' is not key=value")))?;
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(JobSpec {
        id: a.id.clone().unwrap_or_default(),
        cron: a.cron.clone().unwrap_or_default(),
        time_zone: a.time_zone.clone().unwrap_or_default(),
        handler: a.handler.clone().unwrap_or_default(),
        args,
        invoke: a.invoke.clone().unwrap_or_default(),
        master_only: a.master_only,
        concurrency: match a.concurrency {
            Some(ConcurrencyArg::Forbid) => crate::job::Concurrency::Forbid,
            _ => crate::job::Concurrency::Allow,
        },
        misfire: match a.misfire {
            Some(MisfireArg::Skip) => crate::job::Misfire::Skip,
            _ => crate::job::Misfire::FireOnceNow,
        },
        recovery: match a.recovery {
            Some(RecoveryArg::Rerun) => crate::job::Recovery::Rerun,
            _ => crate::job::Recovery::Lost,
        },
        timeout_ms: dur("timeout", &a.timeout)?,
        retries: a.retries.unwrap_or(0),
        retry_backoff_ms: dur("retry-backoff", &a.retry_backoff)?,
        paused: a.paused,
        description: a.description.clone().unwrap_or_default(),
        labels,
    })
}

async fn job_cmd(cmd: JobCmd, client: &ClientArgs) -> Result<(), CliError> {
    let mut c = connect(client).await?;
    let job = match cmd {
        JobCmd::Put(a) => {
            let spec = put_spec(*a)?;
            let job = pb_job(&spec);
            let r = c.put_job(pb::PutJobRequest { job: Some(job) }).await?.into_inner();
            if !client.json {
                println!("{} job {}", if r.created { "created" } else { "replaced" }, spec.id);
            }
            r.job
        }
        JobCmd::Get { id } => c.get_job(pb::GetJobRequest { id }).await?.into_inner().job,
        JobCmd::List { limit } => {
            let mut jobs = Vec::new();
            let mut token = String::new();
            loop {
                let page = limit.saturating_sub(jobs.len() as u32).min(1000);
                if page == 0 {
                    break;
                }
                let r = c.list_jobs(pb::ListJobsRequest { page_size: page, page_token: token }).await?.into_inner();
                jobs.extend(r.jobs);
                if r.next_page_token.is_empty() {
                    break;
                }
                token = r.next_page_token;
            }
            if client.json {
                println!("{:#}", Value::Array(jobs.iter().map(job_json).collect()));
            } else {
                let rows = jobs
                    .iter()
                    .map(|j| {
                        vec![
                            j.id.clone(),
                            j.cron.clone(),
                            if j.time_zone.is_empty() { "UTC".into() } else { j.time_zone.clone() },
                            j.handler.clone(),
                            j.next_fire_time.as_ref().map(ts).unwrap_or_else(|| "-".into()),
                            if j.paused { "yes".into() } else { "no".into() },
                        ]
                    })
                    .collect();
                print_table(&["ID", "CRON", "TZ", "HANDLER", "NEXT FIRE", "PAUSED"], rows);
            }
            return Ok(());
        }
        JobCmd::Delete { id } => {
            c.delete_job(pb::DeleteJobRequest { id: id.clone() }).await?;
            if client.json {
                println!("{}", json!({"deleted": id}));
            } else {
                println!("deleted job {id}");
            }
            return Ok(());
        }
        JobCmd::Pause { id } => c.pause_job(pb::PauseJobRequest { id }).await?.into_inner().job,
        JobCmd::Resume { id } => c.resume_job(pb::ResumeJobRequest { id }).await?.into_inner().job,
        JobCmd::Trigger { id, key } => {
            let r = c
                .trigger_job(pb::TriggerJobRequest { id, idempotency_key: key.unwrap_or_default() })
                .await?
                .into_inner();
            let e = r.execution.unwrap_or_default();
            if client.json {
                println!("{:#}", json!({"deduplicated": r.deduplicated, "execution": exec_json(&e)}));
            } else {
                let what = if r.deduplicated { "already triggered with this key" } else { "triggered" };
                println!("{what}: execution {} ({})", e.id, state_name(e.state));
            }
            return Ok(());
        }
    };
    let job = job.unwrap_or_default();
    if client.json {
        println!("{:#}", job_json(&job));
    } else {
        print_job(&job);
    }
    Ok(())
}

async fn exec_cmd(cmd: ExecCmd, client: &ClientArgs) -> Result<(), CliError> {
    let mut c = connect(client).await?;
    match cmd {
        ExecCmd::List { job, state, limit, page_token } => {
            let r = c
                .list_executions(pb::ListExecutionsRequest {
                    job_id: job.unwrap_or_default(),
                    state: state.map(state_arg).unwrap_or(pb::ExecutionState::Unspecified) as i32,
                    page_size: limit,
                    page_token: page_token.unwrap_or_default(),
                })
                .await?
                .into_inner();
            if client.json {
                println!(
                    "{:#}",
                    json!({"executions": r.executions.iter().map(exec_json).collect::<Vec<_>>(),
                           "next_page_token": r.next_page_token})
                );
            } else {
                print_execs(&r.executions);
                if !r.next_page_token.is_empty() {
                    println!("(more: --page-token {})", r.next_page_token);
                }
            }
        }
        ExecCmd::Get { id } => {
            let e = c.get_execution(pb::GetExecutionRequest { id }).await?.into_inner().execution.unwrap_or_default();
            if client.json {
                println!("{:#}", exec_json(&e));
            } else {
                print_execs(std::slice::from_ref(&e));
                if !e.output.is_empty() {
                    println!("--- output ---\n{}", e.output);
                }
            }
        }
        ExecCmd::Watch { job } => {
            let mut s =
                c.watch_executions(pb::WatchExecutionsRequest { job_id: job.unwrap_or_default() }).await?.into_inner();
            while let Some(r) = s.message().await? {
                let e = r.execution.unwrap_or_default();
                if client.json {
                    println!("{}", exec_json(&e));
                } else {
                    println!(
                        "{}  {}  {}  {}  attempt {}  {}",
                        e.id,
                        e.job_id,
                        e.scheduled_time.as_ref().map(ts).unwrap_or_default(),
                        state_name(e.state),
                        e.attempt,
                        e.error
                    );
                }
            }
        }
    }
    Ok(())
}

fn state_arg(s: StateArg) -> pb::ExecutionState {
    match s {
        StateArg::Pending => pb::ExecutionState::Pending,
        StateArg::Running => pb::ExecutionState::Running,
        StateArg::Succeeded => pb::ExecutionState::Succeeded,
        StateArg::Failed => pb::ExecutionState::Failed,
        StateArg::TimedOut => pb::ExecutionState::TimedOut,
        StateArg::Skipped => pb::ExecutionState::Skipped,
        StateArg::Misfired => pb::ExecutionState::Misfired,
        StateArg::Lost => pb::ExecutionState::Lost,
        StateArg::Superseded => pb::ExecutionState::Superseded,
    }
}

/// A spec as a wire job (output-only fields unset).
pub fn pb_job(spec: &JobSpec) -> pb::Job {
    let rec = crate::store::JobRecord { spec: spec.clone(), next_ms: None, last_ms: None, updated_ms: 0 };
    pb::Job { update_time: None, ..convert::job(&rec) }
}

fn ts(t: &prost_types::Timestamp) -> String {
    crate::job::ms_to_datetime(convert::timestamp_ms(t)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn state_name(s: i32) -> String {
    pb::ExecutionState::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("EXECUTION_STATE_").to_ascii_lowercase())
        .unwrap_or_else(|_| s.to_string())
}

fn job_json(j: &pb::Job) -> Value {
    json!({
        "id": j.id, "cron": j.cron, "time_zone": j.time_zone, "handler": j.handler,
        "args": j.args.as_ref().and_then(|a| convert::json_from_pb(a, 0).ok()).unwrap_or(Value::Null),
        "invoke": j.invoke, "master_only": j.master_only,
        "concurrency": pb::ConcurrencyPolicy::try_from(j.concurrency).map(|c| c.as_str_name()).unwrap_or("?"),
        "misfire": pb::MisfirePolicy::try_from(j.misfire).map(|c| c.as_str_name()).unwrap_or("?"),
        "recovery": pb::RecoveryPolicy::try_from(j.recovery).map(|c| c.as_str_name()).unwrap_or("?"),
        "timeout_ms": j.timeout.as_ref().map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000),
        "retries": j.retries, "paused": j.paused, "description": j.description, "labels": j.labels,
        "next_fire_time": j.next_fire_time.as_ref().map(ts),
        "update_time": j.update_time.as_ref().map(ts),
    })
}

fn exec_json(e: &pb::Execution) -> Value {
    json!({
        "id": e.id, "job_id": e.job_id, "fire_id": e.fire_id,
        "scheduled_time": e.scheduled_time.as_ref().map(ts), "start_time": e.start_time.as_ref().map(ts),
        "end_time": e.end_time.as_ref().map(ts), "node_id": e.node_id, "attempt": e.attempt,
        "state": state_name(e.state), "error": e.error, "output": e.output, "manual": e.manual, "epoch": e.epoch,
    })
}

fn node_json(n: &pb::NodeInfo) -> Value {
    let l = n.load.unwrap_or_default();
    json!({
        "node_id": n.node_id, "address": n.address,
        "role": pb::NodeRole::try_from(n.role).map(|r| r.as_str_name()).unwrap_or("?"),
        "state": pb::NodeState::try_from(n.state).map(|r| r.as_str_name()).unwrap_or("?"),
        "active_workers": l.active_workers, "max_workers": l.max_workers, "queue_depth": l.queue_depth,
        "last_heartbeat": n.last_heartbeat.as_ref().map(ts), "version": n.version, "incarnation": n.incarnation,
        "clock_offset_ms": n.clock_offset_ms,
    })
}

fn print_job(j: &pb::Job) {
    let v = job_json(j);
    if let Value::Object(o) = v {
        for (k, v) in o {
            let s = match v {
                Value::String(s) => s,
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            println!("{k:>15}: {s}");
        }
    }
}

fn print_execs(execs: &[pb::Execution]) {
    let rows = execs
        .iter()
        .map(|e| {
            let dur = match (&e.start_time, &e.end_time) {
                (Some(s), Some(t)) => format!("{}ms", convert::timestamp_ms(t) - convert::timestamp_ms(s)),
                _ => "-".into(),
            };
            let mut err = e.error.replace('\n', " ");
            if err.len() > 60 {
                err = crate::execution::truncate_utf8(err, 60);
            }
            vec![
                e.id.clone(),
                e.job_id.clone(),
                e.scheduled_time.as_ref().map(ts).unwrap_or_default(),
                state_name(e.state),
                e.node_id.clone(),
                e.attempt.to_string(),
                dur,
                err,
            ]
        })
        .collect();
    print_table(&["ID", "JOB", "SCHEDULED", "STATE", "NODE", "ATTEMPT", "DURATION", "ERROR"], rows);
}

fn print_nodes(nodes: &[pb::NodeInfo], as_json: bool) {
    if as_json {
        println!("{:#}", Value::Array(nodes.iter().map(node_json).collect()));
        return;
    }
    let rows = nodes
        .iter()
        .map(|n| {
            let l = n.load.unwrap_or_default();
            let name = |s: &str, p: &str| s.trim_start_matches(p).to_ascii_lowercase();
            vec![
                n.node_id.clone(),
                n.address.clone(),
                name(pb::NodeState::try_from(n.state).map(|s| s.as_str_name()).unwrap_or("?"), "NODE_STATE_"),
                name(pb::NodeRole::try_from(n.role).map(|s| s.as_str_name()).unwrap_or("?"), "NODE_ROLE_"),
                format!("{}/{} (queue {})", l.active_workers, l.max_workers, l.queue_depth),
                n.last_heartbeat.as_ref().map(ts).unwrap_or_default(),
                n.clock_offset_ms.map(|o| format!("{o:+} ms")).unwrap_or_else(|| "unmeasured".into()),
            ]
        })
        .collect();
    print_table(&["NODE", "ADDRESS", "STATE", "ROLE", "LOAD", "LAST HEARTBEAT", "CLOCK OFFSET"], rows);
}

/// Left-aligned columns separated by two spaces.
fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let example = include_str!("../deploy/rota.example.toml");
        let keys: Vec<String> = example
            .lines()
            .map(|l| l.trim_start_matches('#').trim())
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_string()))
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        assert!(keys.len() > 30, "read the example's keys: {keys:?}");
        // Secrets never on argv (visible in ps): the file or the environment only.
        let off_argv = ["cluster_secret"];
        for k in &keys {
            assert!(flags.contains(k) || off_argv.contains(&k.as_str()), "config key '{k}' has no flag on rota server");
        }
        // Flags that are about the invocation, not settings.
        let invocation = ["check", "config", "help", "version"];
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
            "--heartbeat-ms",
            "11",
            "--node-ttl-ms",
            "33",
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
            heartbeat_ms: 11,
            node_ttl_ms: 33,
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
