//! `rota exec ...`: list, get and watch executions.
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::connect::{connect, CliError};
use super::output::{exec_json, print_exec_detail, print_execs, state_name, ts};
use super::ClientArgs;
use crate::pb;
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
        /// Only the executions of this fire (every attempt), e.g. from `job trigger --json`.
        #[arg(long)]
        fire: Option<String>,
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        page_token: Option<String>,
    },
    /// One execution in full: the whole error, output and stderr, and where and when it ran.
    Get { id: String },
    /// Stream execution changes until interrupted.
    Watch {
        #[arg(long)]
        job: Option<String>,
    },
}

pub(super) async fn exec_cmd(cmd: ExecCmd, client: &ClientArgs) -> Result<(), CliError> {
    let mut c = connect(client).await?;
    match cmd {
        ExecCmd::List { job, fire, state, limit, page_token } => {
            let r = c
                .list_executions(pb::ListExecutionsRequest {
                    job_id: job.unwrap_or_default(),
                    state: state.map(state_arg).unwrap_or(pb::ExecutionState::Unspecified) as i32,
                    page_size: limit,
                    page_token: page_token.unwrap_or_default(),
                    fire_id: fire.unwrap_or_default(),
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
                print_exec_detail(&e);
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

pub(super) fn state_arg(s: StateArg) -> pb::ExecutionState {
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
