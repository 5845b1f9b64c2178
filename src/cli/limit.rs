//! `rota limit`: concurrency limits shared by a group of jobs (PutLimit, ListLimits, DeleteLimit).
use clap::Subcommand;
use serde_json::{json, Value};

use super::connect::{call, CliError, Conn};
use super::output::print_table;
use super::ClientArgs;
use crate::pb;

#[derive(Debug, Subcommand)]
pub enum LimitCmd {
    /// Create or replace a limit: at most MAX fires of the jobs it covers run at once, cluster-wide.
    Put {
        /// The limit's name (1-64 of A-Z a-z 0-9 . _ -).
        name: String,
        /// Most fires running at once (1-100000).
        #[arg(long)]
        max: u32,
        /// Cover the jobs of this handler.
        #[arg(long)]
        handler: Option<String>,
        /// Or the jobs with this label, key=value.
        #[arg(long)]
        label: Option<String>,
    },
    /// List the limits, with how many of their slots are held now.
    List,
    /// Delete a limit (fires waiting for it go on at once).
    Delete {
        /// The limit's name.
        name: String,
    },
}

fn limit_json(l: &pb::Limit) -> Value {
    json!({"name": l.name, "max": l.max, "handler": l.handler, "label": l.label, "running": l.running})
}

pub async fn limit_cmd(cmd: LimitCmd, client: &ClientArgs) -> Result<(), CliError> {
    let mut c = Conn::open(client).await?;
    match cmd {
        LimitCmd::Put { name, max, handler, label } => {
            let limit = pb::Limit {
                name,
                max,
                handler: handler.unwrap_or_default(),
                label: label.unwrap_or_default(),
                running: 0,
            };
            let r = call!(c, put_limit, pb::PutLimitRequest { limit: Some(limit) })?;
            let l = r.limit.unwrap_or_default();
            if client.json {
                println!("{:#}", limit_json(&l));
            } else {
                println!("limit {} put: at most {} running ({} now)", l.name, l.max, l.running);
            }
        }
        LimitCmd::List => {
            let r = call!(c, list_limits, pb::ListLimitsRequest {})?;
            if client.json {
                println!("{:#}", json!({"limits": r.limits.iter().map(limit_json).collect::<Vec<_>>()}));
            } else {
                let rows = r
                    .limits
                    .iter()
                    .map(|l| {
                        let covers = if l.handler.is_empty() {
                            format!("label {}", l.label)
                        } else {
                            format!("handler {}", l.handler)
                        };
                        vec![l.name.clone(), l.max.to_string(), l.running.to_string(), covers]
                    })
                    .collect();
                print_table(&["NAME", "MAX", "RUNNING", "COVERS"], rows);
            }
        }
        LimitCmd::Delete { name } => {
            call!(c, delete_limit, pb::DeleteLimitRequest { name: name.clone() })?;
            if client.json {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("deleted limit {name}");
            }
        }
    }
    Ok(())
}
