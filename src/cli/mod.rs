//! The `rota` command line: `rota server` runs a node; the other subcommands are a gRPC client of
//! one of the nodes given (`--endpoint`, env ROTA_ENDPOINT; several fail over), printing tables by
//! default and JSON with `--json`. Every subcommand and flag has a help line (a test checks).
//! Rooms: `server` (the flags of `rota server` and how they make a `Config`), `connect` (reaching a
//! node, the client's errors and exit codes), `job`, `exec`, `limit` and `calendar` (their
//! subcommands), `wait`
//! (following a triggered fire to its outcome), `output` (tables and JSON shapes, one place).
mod calendar;
mod connect;
mod exec;
mod job;
mod limit;
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
use calendar::{calendar_cmd, CalendarCmd};
use connect::{call, Conn};
use exec::exec_cmd;
use job::job_cmd;
use limit::{limit_cmd, LimitCmd};
use output::{node_json, print_nodes, status_line};

#[derive(Debug, Parser)]
#[command(
    name = "rota",
    version,
    about = "A distributed cron and task scheduler",
    after_help = "Exit codes of the client commands: 0 done, 1 the call failed, 2 usage, 3 cannot connect, 4 not found."
)]
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
    /// Concurrency limits shared by a group of jobs.
    Limit {
        #[command(subcommand)]
        cmd: LimitCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Calendars of excluded time (holidays, weekends, windows) that jobs name.
    Calendar {
        #[command(subcommand)]
        cmd: CalendarCmd,
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
    /// Node(s) to talk to, HOST:PORT or a URL; repeat or comma-separate to fail over between them
    /// in order.
    #[arg(long, env = "ROTA_ENDPOINT", value_delimiter = ',', default_value = "http://127.0.0.1:7700", global = true)]
    pub endpoint: Vec<String>,
    /// Print JSON instead of a table (a list is one object named like the API's response).
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
        Command::Limit { cmd, client } => limit_cmd(cmd, &client).await,
        Command::Calendar { cmd, client } => calendar_cmd(cmd, &client).await,
        Command::Nodes { client } => {
            let mut c = Conn::open(&client).await?;
            let r = call!(c, list_nodes, pb::ListNodesRequest {})?;
            print_nodes(&r.nodes, client.json);
            Ok(())
        }
        Command::Status { client } => {
            let mut c = Conn::open(&client).await?;
            let r = call!(c, get_cluster_status, pb::GetClusterStatusRequest {})?;
            if client.json {
                let v = json!({"master_id": r.master_id, "epoch": r.epoch, "electing": r.electing, "store": r.store,
                    "shards": r.shards,
                    "nodes": r.nodes.iter().map(node_json).collect::<Vec<_>>()});
                println!("{v:#}");
            } else {
                println!("{}", status_line(&r));
                print_nodes(&r.nodes, false);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every subcommand and every argument, all the way down, has a help line: `--help` is the
    /// manual a user reaches first.
    #[test]
    fn every_subcommand_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_name() != "help" && sub.get_about().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        let cmd = Cli::command();
        walk(&cmd, "rota", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
        assert!(cmd.get_subcommands().count() >= 5, "walked the tree");
    }
}
