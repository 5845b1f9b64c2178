//! The `rota` command line: `rota server` runs a node; the other subcommands are a gRPC client of a
//! node (`--endpoint`, env ROTA_ENDPOINT), printing tables by default and JSON with `--json`.
//! Rooms: `server` (the flags of `rota server` and how they make a `Config`), `connect` (reaching a
//! node, the client's errors and exit codes), `job` and `exec` (their subcommands), `wait`
//! (following a triggered fire to its outcome), `output` (tables and JSON shapes, one place).
mod connect;
mod exec;
mod job;
mod output;
mod server;
mod wait;

pub use connect::CliError;
pub use exec::ExecCmd;
pub use job::{pb_job, JobCmd};
pub use server::ServerArgs;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::pb;
use connect::connect;
use exec::exec_cmd;
use job::job_cmd;
use output::{node_json, print_nodes};

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
