//! `rota job ...`: put (from flags or a file), get, list, delete, pause, resume, trigger.
use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::connect::{connect, CliError, Client};
use super::output::{exec_json, job_json, print_job, print_table, state_name, ts};
use super::ClientArgs;
use crate::api::convert;
use crate::job::{Declared, JobSpec};
use crate::pb;
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
    /// Create or replace a job, from flags or from a TOML file: [[job]] tables as in a jobs file
    /// (each is put, in order), or one bare table of a job's fields. Keeps the job's pause state
    /// unless --paused / --paused=false (or `paused` in the file) says otherwise.
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
    /// TOML file: [[job]] tables, or one table of fields (id, cron, handler, args, timeout = "30s",
    /// ...); an unknown key is refused.
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
    /// Put the job paused; --paused=false resumes it. Without it a new job is not paused and an
    /// existing one stays as it is (re-putting never resumes a job someone paused).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub paused: Option<bool>,
    #[arg(long)]
    pub description: Option<String>,
    /// key=value, repeatable.
    #[arg(long = "label")]
    pub labels: Vec<String>,
}

/// The jobs a `job put` writes: the flags' one, or the file's.
pub(super) fn put_specs(a: PutArgs) -> Result<Vec<Declared>, CliError> {
    if let Some(path) = &a.file {
        // --paused with a file: for the jobs whose table does not say `paused`.
        let paused = a.paused;
        let text = std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        let key = path.display().to_string();
        let jobs = crate::job::file::parse_put_file(&text)
            .map_err(|e| CliError::Usage(crate::config::toml_error(&key, &text, &e).to_string()))?;
        if jobs.is_empty() {
            return Err(CliError::Usage(format!("{key}: no job in the file")));
        }
        return jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                j.declared().map(|d| Declared { paused: d.paused.or(paused), ..d }).map_err(|e| {
                    CliError::Usage(format!("{key} job #{} ('{}'): {e}", i + 1, crate::redact::value(&j.id)))
                })
            })
            .collect();
    }
    let paused = a.paused;
    put_spec(a).map(|spec| vec![Declared { spec, paused }])
}

fn put_spec(a: PutArgs) -> Result<JobSpec, CliError> {
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
        paused: false,
        description: a.description.clone().unwrap_or_default(),
        labels,
    })
}

pub(super) async fn job_cmd(cmd: JobCmd, client: &ClientArgs) -> Result<(), CliError> {
    let cmd = match cmd {
        JobCmd::Put(a) => {
            // A bad job file is refused before connecting: it is wrong wherever it is sent.
            let specs = put_specs(*a)?;
            return put_jobs(&mut connect(client).await?, specs, client).await;
        }
        other => other,
    };
    let mut c = connect(client).await?;
    let job = match cmd {
        // Put returned above.
        JobCmd::Put(_) => None,
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
                            if j.paused == Some(true) { "yes".into() } else { "no".into() },
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

/// `job put`: each job in order, as the file lists them.
async fn put_jobs(c: &mut Client, specs: Vec<Declared>, client: &ClientArgs) -> Result<(), CliError> {
    let mut put = Vec::new();
    for d in specs {
        let job = pb::Job { paused: d.paused, ..pb_job(&d.spec) };
        let r = c.put_job(pb::PutJobRequest { job: Some(job) }).await?.into_inner();
        if !client.json {
            println!("{} job {}", if r.created { "created" } else { "replaced" }, d.spec.id);
        }
        // The operator should know their change is now drift from a jobs file, and what becomes of it.
        if let Some(drift) = r.job.as_ref().filter(|j| !j.drift.is_empty()).map(|j| j.drift.join(", ")) {
            eprintln!(
                "note: job {} is also defined by a jobs file and now differs from it in: {drift}; a node \
                 restarted with that file unchanged keeps this change, a changed file replaces it",
                d.spec.id
            );
        }
        put.extend(r.job);
    }
    match put.as_slice() {
        [one] if client.json => println!("{:#}", job_json(one)),
        [one] => print_job(one),
        _ if client.json => println!("{:#}", Value::Array(put.iter().map(job_json).collect())),
        _ => {}
    }
    Ok(())
}

/// A spec as a wire job (output-only fields unset). `paused` is sent only when the spec is
/// paused: an unpaused spec leaves a stored job's pause state as it is.
pub fn pb_job(spec: &JobSpec) -> pb::Job {
    let rec = crate::store::JobRecord::new(spec.clone(), None, None, 0);
    pb::Job {
        update_time: None,
        paused: spec.paused.then_some(true),
        source: 0,
        drift: Vec::new(),
        ..convert::job(&rec)
    }
}
