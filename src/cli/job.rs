//! `rota job ...`: put (from flags or a file), get, list, delete, pause, resume, trigger. Policy
//! values are spelled as output and the jobs file spell them (`fire_once_now`); the kebab form is
//! a hidden alias for older scripts.
use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::connect::{call, CliError, Conn};
use super::output::{exec_json, job_json, print_job, print_table, state_name, ts};
use super::ClientArgs;
use crate::api::convert;
use crate::job::{Declared, JobSpec};
use crate::pb;
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ConcurrencyArg {
    Allow,
    Forbid,
    Replace,
    #[value(name = "buffer_one", alias = "buffer-one")]
    BufferOne,
    Buffer,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RecoveryArg {
    Lost,
    Rerun,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoutingArg {
    Load,
    #[value(name = "round_robin", alias = "round-robin")]
    RoundRobin,
    Random,
    #[value(name = "consistent_hash", alias = "consistent-hash")]
    ConsistentHash,
    Failover,
    #[value(name = "least_recently_used", alias = "least-recently-used")]
    LeastRecentlyUsed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PriorityArg {
    High,
    Normal,
    Low,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MisfireArg {
    #[value(name = "fire_once_now", alias = "fire-once-now")]
    FireOnceNow,
    Skip,
    #[value(name = "fire_all", alias = "fire-all")]
    FireAll,
}

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Create or replace a job, from flags or from a TOML file: [[job]] tables as in a jobs file
    /// (each is put, in order), or one bare table of a job's fields. Keeps the job's pause state
    /// unless --paused / --paused=false (or `paused` in the file) says otherwise.
    Put(Box<PutArgs>),
    /// Show one job, with its next fire time.
    Get {
        /// The job's id.
        id: String,
    },
    /// List jobs in id order: all of them, unless --limit.
    List {
        /// At most this many (default: all); when there are more, the next page's token is printed.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
        /// Continue after a previous page (the token it printed).
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Delete a job (running executions finish; its executions stay listable until they expire).
    Delete {
        /// The job's id.
        id: String,
    },
    /// The next instants a job fires at, or a schedule not yet put (--cron, --every or --at, with
    /// --tz, --start-time, --end-time, --spread), with its zone, bounds, spread and daylight
    /// saving applied, and a note where one of them shaped an instant.
    Next {
        /// A stored job's id (or give a schedule's flags instead).
        id: Option<String>,
        /// How many instants (1-1000).
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Instants after this one (default: now): RFC 3339, or a local time in the job's zone
        /// (--tz for a schedule's flags).
        #[arg(long)]
        from: Option<String>,
        /// For a schedule's flags: the id the job will have (its spread offset derives from it).
        #[arg(long)]
        job_id: Option<String>,
        #[command(flatten)]
        schedule: Box<ScheduleArgs>,
    },
    /// Stop a job from firing until resumed.
    Pause {
        /// The job's id.
        id: String,
        /// Why (shown by `job get` and `job list` with who paused it and when).
        #[arg(long)]
        note: Option<String>,
        /// Resume by itself then: a duration from now (2h, 30m) or an instant (RFC 3339, or a
        /// UTC date and time such as 2026-12-24T18:00).
        #[arg(long)]
        until: Option<String>,
    },
    /// Let a paused job fire again, from its next instant after now.
    Resume {
        /// The job's id.
        id: String,
    },
    /// Fire a job now, once.
    ///
    /// With --wait, follows the fire through its retries (and re-runs after a node died) to its
    /// outcome, printing a line per attempt to stderr and the final execution to stdout (JSON with
    /// --json). Exit codes with --wait: 0 succeeded, 5 failed, 6 timed_out, 7 lost, 8 did not run
    /// (skipped, misfired), 9 the wait timed out first, 10 cancelled; 1 a call failed, 2 usage, 3 cannot connect.
    Trigger {
        /// The job's id.
        id: String,
        /// A retried trigger with the same key does not fire again (default: a key made up for this
        /// invocation, so a retry on another endpoint does not fire twice).
        #[arg(long)]
        key: Option<String>,
        /// Wait for the fire's outcome, after all its retries.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (e.g. 30s, 5m, 1h).
        #[arg(long, requires = "wait", default_value = super::wait::DEFAULT_WAIT_TIMEOUT)]
        wait_timeout: String,
        /// This fire's arguments (JSON) instead of the job's; the job is unchanged.
        #[arg(long)]
        args: Option<String>,
        /// With --args: put their top-level fields over the job's (both JSON objects) instead of
        /// replacing them.
        #[arg(long, requires = "args")]
        merge_args: bool,
        /// Run this fire on this node (it must be live and able to run the job's handler).
        #[arg(long)]
        node: Option<String>,
        /// Run this fire on an external worker with this tag (key=value, repeatable), besides
        /// the job's selector. Not with --node.
        #[arg(long = "target-tag", conflicts_with = "node")]
        target_tags: Vec<String>,
        /// Say where the fire would run and with what arguments; run nothing.
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
    },
    /// Run the fires of the job's schedule in a past range, once each, oldest first
    /// (BackfillJob), a line per instant (JSON lines with --json). An instant fired before, by
    /// the schedule or an earlier backfill, is not run again. Ctrl-C cancels; fires already
    /// started run to their end.
    Backfill {
        /// The job's id.
        id: String,
        /// The range's first instant: RFC 3339, or a UTC date and time (2026-12-01T00:00).
        #[arg(long)]
        from: String,
        /// The range's last instant, not in the future (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Fires started per second, 1 to 100 (default 10).
        #[arg(long)]
        rate: Option<u32>,
        /// List the range's instants; run none.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// TOML file: [[job]] tables, or one table of fields (id, cron, handler, args, timeout = "30s",
    /// ...); an unknown key is refused.
    #[arg(long, conflicts_with_all = [
        "id", "cron", "every", "at", "after", "after_previous", "anchor", "start_time", "end_time", "spread", "jitter",
        "max_fires", "time_zone", "calendar",
    ])]
    pub file: Option<PathBuf>,
    /// The job's id: 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit.
    #[arg(long, required_unless_present = "file")]
    pub id: Option<String>,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Handler to run: noop, sleep, shell (nodes with --enable-shell), http, or the name an external
    /// worker serves (e.g. report.daily; see sdk/python).
    #[arg(long)]
    pub handler: Option<String>,
    /// Handler arguments as JSON, e.g. '["2s"]' or '{"url": "http://..."}'.
    #[arg(long)]
    pub args: Option<String>,
    /// Quartz-style invoke target instead of --handler/--args, e.g. "sleep('2s')".
    #[arg(long)]
    pub invoke: Option<String>,
    /// Run fires on the master only, never dispatched to other nodes.
    #[arg(long)]
    pub master_only: bool,
    /// A fire that finds the previous one still running: run anyway (allow, the default), record
    /// it skipped (forbid), stop the running one and run after it (replace), or wait for it and
    /// run after it (buffer_one: one fire waits; buffer: up to --buffer-limit).
    #[arg(long, value_enum)]
    pub concurrency: Option<ConcurrencyArg>,
    /// With --concurrency buffer: how many fires may wait (1 to 100).
    #[arg(long)]
    pub buffer_limit: Option<u32>,
    /// A fire later than the node's misfire threshold: run it once now (fire_once_now, the
    /// default), record it misfired (skip), or run each missed fire of the catch-up window, oldest
    /// first, up to the catch-up limit (fire_all).
    #[arg(long, value_enum)]
    pub misfire: Option<MisfireArg>,
    /// With --misfire fire_all: most missed fires one catch-up runs (1-1000, default 100).
    #[arg(long)]
    pub catch_up_limit: Option<u32>,
    /// With --misfire fire_all: how far back a catch-up looks, e.g. 30m (1s to 7d, default 1h).
    #[arg(long)]
    pub catch_up_window: Option<String>,
    /// What happens when the node running a fire dies: record it lost (default) or run it again.
    #[arg(long, value_enum)]
    pub recovery: Option<RecoveryArg>,
    /// Cancel a run after this long and record it timed_out, e.g. 30s, 5m (default: none; http
    /// jobs 60s).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Retry a failed or timed-out run this many times (default 0).
    #[arg(long)]
    pub retries: Option<u32>,
    /// First retry delay (doubles each retry, capped at 1h), e.g. 1s (default 1s).
    #[arg(long)]
    pub retry_backoff: Option<String>,
    /// Put the job paused; --paused=false resumes it. Without it a new job is not paused and an
    /// existing one stays as it is (re-putting never resumes a job someone paused).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub paused: Option<bool>,
    /// Free text shown with the job.
    #[arg(long)]
    pub description: Option<String>,
    /// key=value, repeatable.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// key=value, repeatable: tags an external worker must have to run the job's fires
    #[arg(long = "selector")]
    pub selector: Vec<String>,
    /// How a fire picks its node (default: load, the master while under its load threshold, else
    /// the least-loaded node).
    #[arg(long, value_enum)]
    pub routing: Option<RoutingArg>,
    /// With --routing failover: a node id to try, repeatable, first choice first.
    #[arg(long = "failover-node")]
    pub failover_nodes: Vec<String>,
    /// Which queue list its fires wait in on a busy node: high ones are taken first, low ones
    /// last (yet at least once in every 10 takes while they wait). Default: normal.
    #[arg(long, value_enum)]
    pub priority: Option<PriorityArg>,
    /// Sharding broadcast: each fire fans out into this many executions (1-128; 0 and 1: not
    /// sharded), spread over the live nodes, each told ROTA_SHARD_INDEX and ROTA_SHARD_TOTAL; `all`:
    /// one per live node that can run it. Default: 1.
    #[arg(long)]
    pub shards: Option<crate::job::Shards>,
    /// Pause the job after this many scheduled fires failed in a row (after their retries), with
    /// a note and an alert (default: never).
    #[arg(long)]
    pub pause_after_failures: Option<u32>,
    /// Keep this many of the job's newest executions, whatever their outcome (default: the
    /// node's execution_keep_last, 1000).
    #[arg(long)]
    pub keep_last: Option<u32>,
    /// Keep this many older failed executions besides (default: the node's
    /// execution_keep_failed, 1000; 0: none).
    #[arg(long)]
    pub keep_failed: Option<u32>,
    /// A one-shot job (--at, --after) stays after it completed (default: deleted once the
    /// execution retention has passed since).
    #[arg(long)]
    pub keep_completed: bool,
}

/// A schedule as flags: `job put`'s, and `job next`'s for a schedule not yet put.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Cron with seconds (6 or 7 fields) or standard 5-field cron. A job has one schedule: --cron,
    /// --every, --at, --after or --after-previous.
    #[arg(long)]
    pub cron: Option<String>,
    /// A fixed interval, e.g. 70m, 90s, 1d (1s to 366 days), on a grid from --anchor.
    #[arg(long)]
    pub every: Option<String>,
    /// With --every: the grid's first instant (default 1970-01-01T00:00:00Z, so 1h is on the hour).
    /// RFC 3339, or a local time in --tz (2026-12-24T18:00).
    #[arg(long)]
    pub anchor: Option<String>,
    /// A one-shot instant, repeatable: the job fires once at each, then is completed. RFC 3339,
    /// or a local time in --tz.
    #[arg(long)]
    pub at: Vec<String>,
    /// A one-shot fire this long from now (by this machine's clock), e.g. 10m: --at now + it.
    #[arg(long)]
    pub after: Option<String>,
    /// A fixed delay from the end of the previous fire, e.g. 5m (1s to 366 days): the first fire
    /// at once (the next whole second, or --start-time), each later one this long after the one
    /// before ended. Fires never overlap.
    #[arg(long)]
    pub after_previous: Option<String>,
    /// No fire before this instant (RFC 3339, or a local time in --tz).
    #[arg(long)]
    pub start_time: Option<String>,
    /// No fire after this instant; the job is then completed.
    #[arg(long)]
    pub end_time: Option<String>,
    /// Spread fires out: each moves by a stable offset below this, derived from the job id (1s
    /// to 24h), e.g. 30m.
    #[arg(long)]
    pub spread: Option<String>,
    /// Each fire starts up to this much after its instant (at most 30s), e.g. 10s: a delay of its
    /// own, recorded on its execution.
    #[arg(long)]
    pub jitter: Option<String>,
    /// The job makes at most this many fires, then is completed (default: no limit).
    #[arg(long)]
    pub max_fires: Option<u32>,
    /// IANA time zone (default UTC).
    #[arg(long = "tz")]
    pub time_zone: Option<String>,
    /// A calendar (rota calendar put) whose excluded time the job does not fire in; repeatable,
    /// the first that excludes an instant decides what becomes of it.
    #[arg(long)]
    pub calendar: Vec<String>,
}

impl ScheduleArgs {
    /// How many schedule kinds the flags give: cron, every, at (with after, which is an `at`),
    /// after_previous.
    fn kinds(&self) -> usize {
        [
            self.cron.is_some(),
            self.every.is_some(),
            !self.at.is_empty() || self.after.is_some(),
            self.after_previous.is_some(),
        ]
        .into_iter()
        .filter(|k| *k)
        .count()
    }

    fn given(&self) -> bool {
        self.kinds() > 0
    }

    /// Whether any flag is given, a kind or what shapes one (a preview of a stored job takes none).
    fn any(&self) -> bool {
        self.given()
            || self.anchor.is_some()
            || self.start_time.is_some()
            || self.end_time.is_some()
            || self.spread.is_some()
            || self.jitter.is_some()
            || self.max_fires.is_some()
            || self.time_zone.is_some()
            || !self.calendar.is_empty()
    }

    /// The schedule fields and zone of `spec`, from the flags (ranges are the job's to check).
    fn fill(&self, spec: &mut JobSpec) -> Result<(), CliError> {
        // The wire carries one schedule (a oneof): a second one given would be dropped on the way
        // rather than refused, so it is refused here.
        if self.kinds() > 1 {
            return Err(CliError::Usage(
                "give one schedule: --cron, --every, --at/--after, or --after-previous".into(),
            ));
        }
        let tz = crate::job::cron::parse_time_zone(self.time_zone.as_deref().unwrap_or_default())
            .map_err(|e| CliError::Usage(format!("--tz: {e}")))?;
        let instant = |flag: &str, v: &str| {
            crate::job::schedule::parse_instant(v, tz).map_err(|e| CliError::Usage(format!("--{flag}: {e}")))
        };
        let optional = |flag: &str, v: &Option<String>| v.as_deref().map(|v| instant(flag, v)).transpose();
        spec.at_ms = self.at.iter().map(|t| instant("at", t)).collect::<Result<Vec<_>, _>>()?;
        if self.after.is_some() {
            match flag_ms("after", &self.after)? {
                ms if ms < 1000 => return Err(CliError::Usage("--after: must be 1s or more".into())),
                ms => match i64::try_from(ms).ok().and_then(|ms| crate::store::now_ms().checked_add(ms)) {
                    Some(t) if t < crate::job::schedule::END_OF_TIME_MS => spec.at_ms.push(t),
                    _ => return Err(CliError::Usage("--after: is too long: it ends past 2199".into())),
                },
            }
        }
        spec.every_ms = flag_ms("every", &self.every)?;
        if self.every.is_some() && spec.every_ms == 0 {
            return Err(CliError::Usage("--every: must be longer than 0".into()));
        }
        spec.after_previous_ms = flag_ms("after-previous", &self.after_previous)?;
        if self.after_previous.is_some() && spec.after_previous_ms == 0 {
            return Err(CliError::Usage("--after-previous: must be longer than 0".into()));
        }
        spec.cron = self.cron.clone().unwrap_or_default();
        spec.anchor_ms = optional("anchor", &self.anchor)?;
        spec.start_ms = optional("start-time", &self.start_time)?;
        spec.end_ms = optional("end-time", &self.end_time)?;
        spec.spread_ms = flag_ms("spread", &self.spread)?;
        spec.jitter_ms = flag_ms("jitter", &self.jitter)?;
        spec.max_fires = self.max_fires.unwrap_or(0);
        spec.time_zone = self.time_zone.clone().unwrap_or_default();
        spec.calendars = self.calendar.clone();
        Ok(())
    }
}

/// `job backfill`: streams BackfillJob's progress, a line per instant, then a summary (stderr).
async fn backfill(
    id: String,
    from: &str,
    to: Option<String>,
    rate: Option<u32>,
    dry_run: bool,
    client: &ClientArgs,
) -> Result<(), CliError> {
    let instant = |flag: &str, v: &str| {
        crate::job::schedule::parse_instant(v, chrono_tz::UTC).map_err(|e| CliError::Usage(format!("--{flag}: {e}")))
    };
    let from = instant("from", from)?;
    // Absent: the node's now (this machine's clock may run ahead of the cluster's).
    let to = to.map(|t| instant("to", &t)).transpose()?;
    let c = Conn::open(client).await?;
    let req = pb::BackfillJobRequest {
        job_id: id.clone(),
        from: Some(crate::pb::timestamp(from)),
        to: to.map(crate::pb::timestamp),
        rate: rate.unwrap_or(0),
        dry_run,
    };
    let mut stream = c.client().backfill_job(req).await?.into_inner();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut total = 0;
    while let Some(m) = stream.message().await? {
        let outcome = super::output::backfill_outcome_name(m.outcome);
        let time = m.time.as_ref().map(ts).unwrap_or_default();
        if client.json {
            println!(
                "{}",
                json!({"time": time, "fire_id": m.fire_id, "outcome": outcome, "execution_id": m.execution_id,
                    "done": m.done, "total": m.total})
            );
        } else {
            println!("{}/{} {time} {outcome} {}", m.done, m.total, m.execution_id);
        }
        *counts.entry(outcome).or_default() += 1;
        total = m.total;
    }
    let said: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    eprintln!("backfill of {id}: {total} instants: {}", if said.is_empty() { "none".into() } else { said.join(", ") });
    Ok(())
}

/// A duration flag in ms (0 when absent).
fn flag_ms(flag: &str, v: &Option<String>) -> Result<u64, CliError> {
    v.as_deref()
        .map(|s| {
            crate::job::parse_duration(s)
                .and_then(|d| u64::try_from(d.as_millis()).map_err(|_| format!("'{s}' is out of range")))
        })
        .transpose()
        .map_err(|e| CliError::Usage(format!("--{flag}: {e}")))
        .map(Option::unwrap_or_default)
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
        if toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("calendar")) {
            return Err(CliError::Usage(format!(
                "{key}: [[calendar]] tables are put by a node's jobs file (--jobs), not by job put: use rota calendar put"
            )));
        }
        if jobs.is_empty() {
            return Err(CliError::Usage(format!("{key}: no job in the file")));
        }
        return jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                // Each job is checked here first (all but the handler, which only a node knows), so
                // that a bad job in the middle of a file puts none of them rather than some.
                j.declared()
                    .and_then(|d| crate::job::Job::new(d.spec.clone()).map(|_| d))
                    .map(|d| Declared { paused: d.paused.or(paused), ..d })
                    .map_err(|e| {
                        CliError::Usage(format!("{key} job #{} ('{}'): {e}", i + 1, crate::redact::value(&j.id)))
                    })
            })
            .collect();
    }
    let paused = a.paused;
    put_spec(a).map(|spec| vec![Declared { spec, paused }])
}

fn put_spec(a: PutArgs) -> Result<JobSpec, CliError> {
    let dur = flag_ms;
    let args = match &a.args {
        Some(s) => serde_json::from_str(s).map_err(|e| CliError::Usage(format!("--args is not JSON: {e}")))?,
        None => Value::Null,
    };
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').ok_or_else(|| CliError::Usage(format!("--label '{l}' is not key=value")))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let mut selector = BTreeMap::new();
    for l in &a.selector {
        let (k, v) = l.split_once('=').ok_or_else(|| CliError::Usage(format!("--selector '{l}' is not key=value")))?;
        selector.insert(k.to_string(), v.to_string());
    }
    if !a.schedule.given() {
        return Err(CliError::Usage("give a schedule: --cron, --every, --at, --after or --after-previous".into()));
    }
    let mut spec = JobSpec {
        id: a.id.clone().unwrap_or_default(),
        handler: a.handler.clone().unwrap_or_default(),
        args,
        invoke: a.invoke.clone().unwrap_or_default(),
        master_only: a.master_only,
        concurrency: {
            let name = match a.concurrency {
                None | Some(ConcurrencyArg::Allow) => "allow",
                Some(ConcurrencyArg::Forbid) => "forbid",
                Some(ConcurrencyArg::Replace) => "replace",
                Some(ConcurrencyArg::BufferOne) => "buffer_one",
                Some(ConcurrencyArg::Buffer) => "buffer",
            };
            crate::job::Concurrency::from_parts(name, a.buffer_limit.unwrap_or(0))
                .map_err(|e| CliError::Usage(e.to_string().replace("buffer_limit", "--buffer-limit")))?
        },
        misfire: match a.misfire {
            Some(MisfireArg::Skip) => crate::job::Misfire::Skip,
            Some(MisfireArg::FireAll) => crate::job::Misfire::FireAll,
            _ => crate::job::Misfire::FireOnceNow,
        },
        catch_up_limit: a.catch_up_limit.unwrap_or(0),
        pause_after_failures: a.pause_after_failures.unwrap_or(0),
        catch_up_window_ms: dur("catch-up-window", &a.catch_up_window)?,
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
        keep_last: a.keep_last.unwrap_or(0),
        keep_failed: a.keep_failed,
        keep_completed: a.keep_completed,
        selector,
        routing: match a.routing {
            None | Some(RoutingArg::Load) => crate::job::Routing::Load,
            Some(RoutingArg::RoundRobin) => crate::job::Routing::RoundRobin,
            Some(RoutingArg::Random) => crate::job::Routing::Random,
            Some(RoutingArg::ConsistentHash) => crate::job::Routing::ConsistentHash,
            Some(RoutingArg::Failover) => crate::job::Routing::Failover,
            Some(RoutingArg::LeastRecentlyUsed) => crate::job::Routing::LeastRecentlyUsed,
        },
        failover_nodes: a.failover_nodes.clone(),
        shards: a.shards.unwrap_or_default(),
        priority: match a.priority {
            None | Some(PriorityArg::Normal) => crate::job::Priority::Normal,
            Some(PriorityArg::High) => crate::job::Priority::High,
            Some(PriorityArg::Low) => crate::job::Priority::Low,
        },
        ..JobSpec::default()
    };
    a.schedule.fill(&mut spec)?;
    Ok(spec)
}

pub(super) async fn job_cmd(cmd: JobCmd, client: &ClientArgs) -> Result<(), CliError> {
    let cmd = match cmd {
        JobCmd::Put(a) => {
            // A bad job file is refused before connecting: it is wrong wherever it is sent.
            let specs = put_specs(*a)?;
            return put_jobs(&mut Conn::open(client).await?, specs, client).await;
        }
        JobCmd::Next { id, count, from, job_id, schedule } => {
            return next_fires(id, count, from, job_id, &schedule, client).await;
        }
        JobCmd::Backfill { id, from, to, rate, dry_run } => {
            return backfill(id, &from, to, rate, dry_run, client).await
        }
        other => other,
    };
    let mut c = Conn::open(client).await?;
    let job = match cmd {
        // Put, Next and Backfill returned above.
        JobCmd::Put(_) | JobCmd::Next { .. } | JobCmd::Backfill { .. } => None,
        JobCmd::Get { id } => call!(c, get_job, pb::GetJobRequest { id })?.job,
        JobCmd::List { limit, page_token } => {
            // Every page by default: a silent cut at one page read as "that is all" (and a
            // script would miss jobs); with --limit, the token to go on from is given.
            let mut jobs = Vec::new();
            let mut token = page_token.unwrap_or_default();
            loop {
                let page = match limit {
                    Some(l) => l.saturating_sub(jobs.len() as u32).min(1000),
                    None => 1000,
                };
                if page == 0 {
                    break;
                }
                let r = call!(c, list_jobs, pb::ListJobsRequest { page_size: page, page_token: token.clone() })?;
                jobs.extend(r.jobs);
                token = r.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            if client.json {
                println!(
                    "{:#}",
                    json!({"jobs": jobs.iter().map(job_json).collect::<Vec<_>>(), "next_page_token": token})
                );
            } else {
                let rows = jobs
                    .iter()
                    .map(|j| {
                        vec![
                            j.id.clone(),
                            super::output::schedule_text(j),
                            if j.time_zone.is_empty() { "UTC".into() } else { j.time_zone.clone() },
                            j.handler.clone(),
                            match &j.next_fire_time {
                                Some(t) => ts(t),
                                None if j.completed => "completed".into(),
                                // after_previous: the next fire follows this one's end.
                                None => match &j.waiting_for_fire {
                                    Some(t) => format!("after the fire of {} ends", ts(t)),
                                    None => "-".into(),
                                },
                            },
                            super::output::paused_text(j),
                        ]
                    })
                    .collect();
                print_table(&["ID", "SCHEDULE", "TZ", "HANDLER", "NEXT FIRE", "PAUSED"], rows);
                if !token.is_empty() {
                    println!("(more: --page-token {token})");
                }
            }
            return Ok(());
        }
        JobCmd::Delete { id } => {
            call!(c, delete_job, pb::DeleteJobRequest { id: id.clone() })?;
            if client.json {
                println!("{}", json!({"deleted": id}));
            } else {
                println!("deleted job {id}");
            }
            return Ok(());
        }
        JobCmd::Pause { id, note, until } => {
            let until = match until {
                None => None,
                Some(u) => Some(crate::pb::timestamp(match crate::job::parse_duration(&u) {
                    Ok(d) => crate::store::now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                    Err(_) => crate::job::schedule::parse_instant(&u, chrono_tz::UTC)
                        .map_err(|e| CliError::Usage(format!("--until: not a duration, and {e}")))?,
                })),
            };
            let req = pb::PauseJobRequest { id: id.clone(), note: note.unwrap_or_default(), until };
            let job = call!(c, pause_job, req)?.job;
            if !client.json {
                println!("paused job {id}");
            }
            job
        }
        JobCmd::Resume { id } => {
            let job = call!(c, resume_job, pb::ResumeJobRequest { id: id.clone() })?.job;
            if !client.json {
                println!("resumed job {id}");
            }
            job
        }
        JobCmd::Trigger { id, key, wait, wait_timeout, args, merge_args, node, target_tags, dry_run } => {
            let mut target_selector = std::collections::HashMap::new();
            for t in &target_tags {
                let (k, v) =
                    t.split_once('=').ok_or_else(|| CliError::Usage(format!("--target-tag '{t}' is not key=value")))?;
                if target_selector.insert(k.to_string(), v.to_string()).is_some() {
                    return Err(CliError::Usage(format!("--target-tag: '{k}' is given twice")));
                }
            }
            let timeout = match crate::worker::handlers::parse_duration(&wait_timeout) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => return Err(CliError::Usage("--wait-timeout: must be more than 0".into())),
                Err(e) => return Err(CliError::Usage(format!("--wait-timeout: {e}"))),
            };
            let args = match args {
                None => None,
                Some(a) => Some(crate::pb::json_to_pb(
                    &serde_json::from_str(&a).map_err(|e| CliError::Usage(format!("--args: not JSON: {e}")))?,
                )),
            };
            let args_override = match (&args, merge_args) {
                (None, _) => pb::ArgsOverride::Unspecified,
                (Some(_), false) => pb::ArgsOverride::Replace,
                (Some(_), true) => pb::ArgsOverride::Merge,
            } as i32;
            let (idempotency_key, made_up) = trigger_key(key);
            let req = pb::TriggerJobRequest {
                id,
                idempotency_key,
                args,
                args_override,
                target_node: node.unwrap_or_default(),
                dry_run,
                target_selector,
            };
            let r = call!(c, trigger_job, req)?;
            let resolved =
                r.args.as_ref().and_then(|a| crate::api::convert::json_from_pb(a, 0).ok()).unwrap_or_default();
            if dry_run {
                if client.json {
                    println!("{:#}", json!({"dry_run": true, "node_id": r.node_id, "args": resolved}));
                } else {
                    match r.node_id.as_str() {
                        "" => println!(
                            "would be handed to a node that can run it (the node asked cannot: no handler, or no \
                             worker with the tags asked) with args {resolved}"
                        ),
                        node => println!("would run on node {node} with args {resolved}"),
                    }
                }
                return Ok(());
            }
            // A made-up key seen again means this invocation's own retry reached the server twice:
            // one fire, made by this invocation, not an earlier trigger.
            let deduplicated = r.deduplicated && !made_up;
            let e = r.execution.unwrap_or_default();
            if wait {
                return super::wait::wait_for_fire(&mut c, &e, timeout, client.json).await;
            }
            if client.json {
                println!(
                    "{:#}",
                    json!({"deduplicated": deduplicated, "execution": exec_json(&e), "node_id": r.node_id, "args": resolved})
                );
            } else {
                let what = if deduplicated { "already triggered with this key" } else { "triggered" };
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

/// The idempotency key of a trigger, and whether it was made up: without --key, one per
/// invocation, so that when a call is repeated on another endpoint (the first may have fired before
/// its answer was lost) the job still fires once.
fn trigger_key(given: Option<String>) -> (String, bool) {
    match given {
        Some(k) => (k, false),
        None => (format!("cli-{}", uuid::Uuid::new_v4().simple()), true),
    }
}

/// `job next`: a preview of a stored job's schedule, or of one given by flags.
async fn next_fires(
    id: Option<String>,
    count: u32,
    from: Option<String>,
    job_id: Option<String>,
    schedule: &ScheduleArgs,
    client: &ClientArgs,
) -> Result<(), CliError> {
    use pb::preview_schedule_request::Target;
    let (target, tz) = match (id, schedule.any()) {
        (Some(_), true) => return Err(CliError::Usage("give a job's id or a schedule's flags, not both".into())),
        (None, false) => {
            return Err(CliError::Usage("give a job's id, or a schedule: --cron, --every, --at or --after".into()))
        }
        (Some(id), false) => (Target::JobId(id), None),
        (None, true) => {
            let mut spec = JobSpec { id: job_id.unwrap_or_default(), ..JobSpec::default() };
            schedule.fill(&mut spec)?;
            (Target::Job(pb_job(&spec)), Some(spec.time_zone))
        }
    };
    let mut c = Conn::open(client).await?;
    let after = match from {
        None => None,
        Some(t) => {
            // A local time is in the job's zone: a stored job's is asked for first.
            let zone = match (&target, tz) {
                (Target::JobId(id), _) => call!(c, get_job, pb::GetJobRequest { id: id.clone() })?
                    .job
                    .map(|j| j.time_zone)
                    .unwrap_or_default(),
                (_, zone) => zone.unwrap_or_default(),
            };
            let tz = crate::job::cron::parse_time_zone(&zone).map_err(|e| CliError::Usage(format!("--tz: {e}")))?;
            let ms =
                crate::job::schedule::parse_instant(&t, tz).map_err(|e| CliError::Usage(format!("--from: {e}")))?;
            Some(crate::pb::timestamp(ms))
        }
    };
    let r = call!(c, preview_schedule, pb::PreviewScheduleRequest { target: Some(target), count, after })?;
    if client.json {
        let fires: Vec<Value> = r
            .fires
            .iter()
            .map(|f| {
                json!({"time": f.time.as_ref().map(ts), "local_time": f.local_time, "notes": f.notes, "skipped": f.skipped})
            })
            .collect();
        let offset = r.spread_offset.as_ref().map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000);
        println!("{:#}", json!({"time_zone": r.time_zone, "spread_offset_ms": offset, "fires": fires}));
        return Ok(());
    }
    if r.fires.is_empty() {
        println!("no fire left: the schedule has ended");
        return Ok(());
    }
    let rows = r
        .fires
        .iter()
        .map(|f| vec![f.time.as_ref().map(ts).unwrap_or_default(), f.local_time.clone(), f.notes.join("; ")])
        .collect();
    print_table(&["UTC", &format!("LOCAL ({})", r.time_zone), "NOTES"], rows);
    Ok(())
}

/// `job put`: each job in order, as the file lists them.
async fn put_jobs(c: &mut Conn, specs: Vec<Declared>, client: &ClientArgs) -> Result<(), CliError> {
    let mut put = Vec::new();
    let total = specs.len();
    for (i, d) in specs.into_iter().enumerate() {
        let job = pb::Job { paused: d.paused, ..pb_job(&d.spec) };
        let r = call!(c, put_job, pb::PutJobRequest { job: Some(job) }).map_err(|e| match total {
            1 => e,
            // Refused by the node (a handler it does not have, say): which job, and how far it got.
            _ => e.in_context(format!("job #{} ('{}') of {total}, after {i} put", i + 1, d.spec.id)),
        })?;
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
        for w in &r.warnings {
            eprintln!("warning: job {}: {w}", d.spec.id);
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
        completed: false,
        ..convert::job(&rec)
    }
}
