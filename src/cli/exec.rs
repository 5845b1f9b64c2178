//! `rota exec ...`: list, get and watch executions. A watch outlives its node: it reconnects to the
//! next endpoint and prints what changed meanwhile before following the new stream.
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use clap::{Subcommand, ValueEnum};
use serde_json::json;
use tonic::Code;

use super::connect::{call, CliError, Conn};
use super::output::{
    exec_json, fire_json, print_exec_detail, print_execs, print_fire_shards, print_fires, print_watch_header,
    print_watch_row,
};
use super::ClientArgs;
use crate::pb;

/// An execution state as a flag value: the spelling output uses (`timed_out`); the kebab form
/// (`timed-out`) is a hidden alias so older scripts keep working.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    Pending,
    Running,
    Succeeded,
    Failed,
    #[value(name = "timed_out", alias = "timed-out")]
    TimedOut,
    Skipped,
    Misfired,
    Lost,
    Superseded,
    Cancelled,
}

#[derive(Debug, Subcommand)]
pub enum ExecCmd {
    /// List executions, newest first, one page (see --limit and --page-token).
    List {
        /// Only this job's executions (a job that neither exists nor has executions kept: exit 4).
        #[arg(long)]
        job: Option<String>,
        /// Only the executions of this fire (every attempt), e.g. from `job trigger --json`.
        #[arg(long)]
        fire: Option<String>,
        /// Only executions in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// Only executions run (or recorded) by this node.
        #[arg(long)]
        node: Option<String>,
        /// Only fires scheduled at or after this instant (RFC 3339, e.g. 2026-12-01T09:00:00Z).
        #[arg(long, value_parser = instant)]
        since: Option<prost_types::Timestamp>,
        /// Only fires scheduled before this instant (RFC 3339).
        #[arg(long, value_parser = instant)]
        until: Option<prost_types::Timestamp>,
        /// At most this many (1-1000); when there are more, the next page's token is printed.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Continue after a previous page (the token it printed).
        #[arg(long)]
        page_token: Option<String>,
        /// Print the page's fires instead, a sharded fire's shards together, with each fire's
        /// outcome (with --json: both).
        #[arg(long)]
        group_by_fire: bool,
    },
    /// One execution in full: the whole error, output and stderr, and where and when it ran.
    Get {
        /// The execution's id (a UUID).
        id: String,
    },
    /// An execution's output (stdout) and standard error (stderr); with --follow, as it is printed
    /// until the execution ends, from any node. Exit codes with --follow: 0 succeeded, 5 failed, 6
    /// timed_out, 7 lost, 8 did not run, 10 cancelled (as `job trigger --wait`).
    Logs {
        /// The execution's id (a UUID).
        id: String,
        /// Follow the output live until the execution ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Cancel an execution (operator role): one not yet begun never runs; a running one is stopped
    /// by its node (a shell handler's process group: SIGTERM, then SIGKILL after 10 s; an HTTP call
    /// dropped; an external worker told to cancel). Prints the execution as recorded once it ended
    /// (waits up to 15 s). Exit 0 when it reads cancelled; 1 when it ended otherwise meanwhile or
    /// has not stopped yet; an ended execution is refused (FAILED_PRECONDITION).
    Cancel {
        /// The execution's id.
        id: String,
        /// Why, for the record (at most 500 bytes).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Stream execution changes until interrupted; reconnects (to the next endpoint, if several)
    /// and prints what changed meanwhile.
    Watch {
        /// Only this job's executions (a job that neither exists nor has executions kept: exit 4).
        #[arg(long)]
        job: Option<String>,
    },
}

/// An RFC 3339 instant as a flag value.
fn instant(s: &str) -> Result<prost_types::Timestamp, String> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("not an RFC 3339 instant (2026-12-01T09:00:00Z): {e}"))?;
    Ok(crate::pb::timestamp(t.timestamp_millis()))
}

pub(super) async fn exec_cmd(cmd: ExecCmd, client: &ClientArgs) -> Result<(), CliError> {
    let mut c = Conn::open(client).await?;
    match cmd {
        ExecCmd::List { job, fire, state, node, since, until, limit, page_token, group_by_fire } => {
            let req = pb::ListExecutionsRequest {
                job_id: job.unwrap_or_default(),
                state: state.map(state_arg).unwrap_or(pb::ExecutionState::Unspecified) as i32,
                page_size: limit,
                page_token: page_token.unwrap_or_default(),
                fire_id: fire.unwrap_or_default(),
                node_id: node.unwrap_or_default(),
                scheduled_after: since,
                scheduled_before: until,
                group_by_fire,
            };
            let r = call!(c, list_executions, req)?;
            if client.json {
                let mut out = json!({"executions": r.executions.iter().map(exec_json).collect::<Vec<_>>(),
                                     "next_page_token": r.next_page_token});
                if group_by_fire {
                    out["fires"] = r.fires.iter().map(fire_json).collect();
                }
                println!("{out:#}");
            } else {
                match group_by_fire {
                    true => print_fires(&r.fires),
                    false => print_execs(&r.executions),
                }
                if !r.next_page_token.is_empty() {
                    println!("(more: --page-token {})", r.next_page_token);
                }
            }
        }
        ExecCmd::Get { id } => {
            let e = call!(c, get_execution, pb::GetExecutionRequest { id })?.execution.unwrap_or_default();
            // A shard's execution is shown with its fire: every shard's newest execution.
            let whole = crate::execution::FireId::whole(&e.fire_id).to_string();
            let fire = match e.shard_total > 1 {
                true => {
                    let req = pb::ListExecutionsRequest {
                        job_id: e.job_id.clone(),
                        fire_id: whole,
                        page_size: 1000,
                        group_by_fire: true,
                        ..Default::default()
                    };
                    let r = call!(c, list_executions, req)?;
                    r.fires.into_iter().next().map(|f| (f, r.executions))
                }
                false => None,
            };
            if client.json {
                let mut out = exec_json(&e);
                if let Some((f, _)) = &fire {
                    out["fire"] = fire_json(f);
                }
                println!("{out:#}");
            } else {
                print_exec_detail(&e);
                if let Some((f, execs)) = &fire {
                    print_fire_shards(f, execs);
                }
            }
        }
        ExecCmd::Logs { id, follow: false } => {
            let e = call!(c, get_execution, pb::GetExecutionRequest { id })?.execution.unwrap_or_default();
            print!("{}", e.output);
            eprint!("{}", e.stderr);
        }
        ExecCmd::Logs { id, follow: true } => follow_logs(&c, id).await?,
        ExecCmd::Cancel { id, reason } => {
            let req = pb::CancelExecutionRequest { execution_id: id, reason: reason.unwrap_or_default() };
            let e = call!(c, cancel_execution, req)?.execution.unwrap_or_default();
            if client.json {
                println!("{:#}", exec_json(&e));
            } else {
                print_exec_detail(&e);
            }
            if e.state != pb::ExecutionState::Cancelled as i32 {
                let state = pb::ExecutionState::try_from(e.state).unwrap_or(pb::ExecutionState::Unspecified);
                let state = state.as_str_name().trim_start_matches("EXECUTION_STATE_").to_lowercase();
                return Err(CliError::NotCancelled { id: e.id, state });
            }
        }
        ExecCmd::Watch { job } => watch(c, job.unwrap_or_default(), client.json).await?,
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
        StateArg::Cancelled => pb::ExecutionState::Cancelled,
    }
}

/// How long a watch keeps trying to reconnect after losing its stream before it gives up (exit 3).
const RECONNECT_FOR: Duration = Duration::from_secs(60);
/// Pause between rounds over all endpoints while none answers (doubling up to the cap).
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
const RECONNECT_PAUSE_MAX: Duration = Duration::from_secs(2);
/// How far before the newest execution heard of the catch-up after a reconnect looks: covers ids
/// stamped by nodes whose clocks differ a little (the cluster keeps them within
/// `max_clock_offset_ms`, 250 ms by default) and changes published a little out of order.
const CATCH_UP_SLACK_MS: i64 = 10_000;
/// At most this many pages of 1000 executions are read to catch up.
const CATCH_UP_PAGES: usize = 20;

/// A stream error after which watching again cannot help: the request itself is refused.
fn final_code(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument | Code::NotFound | Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented
    )
}

/// How far along an execution is: its state moves only forward (pending, running, then one final
/// state; a retry is a new execution), so a change at or below what was printed is old news.
fn progress(state: i32) -> u8 {
    match pb::ExecutionState::try_from(state) {
        Ok(pb::ExecutionState::Unspecified) | Err(_) => 0,
        Ok(pb::ExecutionState::Pending) => 1,
        Ok(pb::ExecutionState::Running) => 2,
        Ok(_) => 3,
    }
}

/// When an execution was made, from its id (its stamp).
fn id_ms(id: &str) -> Option<i64> {
    crate::execution::execution_ms(id)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What a watch has printed, so that what a reconnect re-reads is printed once, in order.
struct Printed {
    json: bool,
    /// Progress printed per execution id, and when (this client's clock) it was printed.
    seen: HashMap<String, (u8, i64)>,
    /// Size of `seen` past which finished entries too old to be re-read are dropped.
    prune_at: usize,
    /// The cluster's clock (ids are stamped by it, this client's may be off) when the watch first
    /// subscribed, and the newest execution heard of since, by its id.
    started_ms: i64,
    newest_ms: i64,
}

impl Printed {
    /// Prints `e` unless a change as far along was printed already.
    fn show(&mut self, e: &pb::Execution) {
        self.newest_ms = self.newest_ms.max(id_ms(&e.id).unwrap_or(0));
        let p = progress(e.state);
        if self.seen.get(&e.id).is_some_and(|&(q, _)| q >= p) {
            return;
        }
        self.seen.insert(e.id.clone(), (p, now_ms()));
        if self.seen.len() > self.prune_at {
            self.prune();
        }
        if self.json {
            println!("{}", exec_json(e));
        } else {
            print_watch_row(e);
        }
    }

    /// Ids printed in a state that is not final: their later changes may have been missed.
    fn open(&self) -> Vec<String> {
        self.seen.iter().filter(|(_, &(p, _))| p < 3).map(|(id, _)| id.clone()).collect()
    }

    /// The oldest id a catch-up re-lists, by the time in it: shortly before the newest execution
    /// heard of (everything made after that is unheard of), never before the watch began.
    fn catch_up_since(&self) -> i64 {
        (self.newest_ms - CATCH_UP_SLACK_MS).max(self.started_ms - 1000)
    }

    /// Forgets finished executions that no catch-up re-lists (ids older than its window) and that
    /// no stream still in flight repeats (printed a while ago): a long watch does not grow without
    /// bound.
    fn prune(&mut self) {
        let (old_id, printed_before) = (self.catch_up_since() - 1000, now_ms() - CATCH_UP_SLACK_MS);
        self.seen
            .retain(|id, &mut (p, at)| p < 3 || at >= printed_before || id_ms(id).is_none_or(|made| made >= old_id));
        self.prune_at = (self.seen.len() * 2).max(PRUNE_AT);
    }
}

/// Entries a watch remembers before it first prunes.
const PRUNE_AT: usize = 10_000;

/// `cluster_now`: the cluster's clock at the start (this client's when it cannot be had).
fn new_printed(json: bool, cluster_now: i64) -> Printed {
    Printed { json, seen: HashMap::new(), prune_at: PRUNE_AT, started_ms: cluster_now, newest_ms: cluster_now }
}

/// The answering node's clock (corrected to the cluster's), or this client's if it does not say.
async fn cluster_now(c: &Conn) -> i64 {
    let status = c.client().get_cluster_status(pb::GetClusterStatusRequest {}).await;
    status.ok().and_then(|r| r.into_inner().now).map(|t| crate::api::convert::timestamp_ms(&t)).unwrap_or_else(now_ms)
}

/// `exec logs --follow`: prints the output as it comes, then what the final record holds past it;
/// the exit code says how the execution ended.
async fn follow_logs(c: &Conn, id: String) -> Result<(), CliError> {
    use std::io::Write;
    let req = pb::WatchExecutionOutputRequest { execution_id: id };
    let mut stream = c.client().watch_execution_output(req).await?.into_inner();
    let (mut out, mut err) = (0usize, 0usize);
    while let Some(m) = stream.message().await? {
        print!("{}", m.output);
        eprint!("{}", m.stderr);
        let _ = std::io::stdout().flush();
        (out, err) = (out + m.output.len(), err + m.stderr.len());
        let Some(e) = m.execution else { continue };
        // The record keeps what was printed (capped): what the stream did not carry, shown now.
        print!("{}", e.output.get(out..).unwrap_or_default());
        eprint!("{}", e.stderr.get(err..).unwrap_or_default());
        use super::wait::Outcome;
        use pb::ExecutionState as S;
        let state = S::try_from(e.state).unwrap_or(S::Unspecified);
        let outcome = match state {
            S::Succeeded => return Ok(()),
            S::Failed => Outcome::Failed,
            S::TimedOut => Outcome::TimedOut,
            S::Lost => Outcome::Lost,
            S::Cancelled => Outcome::Cancelled,
            _ => Outcome::NotRun,
        };
        return Err(CliError::Outcome {
            fire_id: e.fire_id.clone(),
            state: state.as_str_name().trim_start_matches("EXECUTION_STATE_").to_lowercase(),
            attempt: e.attempt,
            code: outcome.exit_code(),
        });
    }
    Err(CliError::Call {
        code: tonic::Code::Unavailable,
        message: "the output stream ended before the execution did".into(),
    })
}

async fn subscribe(c: &Conn, job: &str) -> Result<tonic::Streaming<pb::WatchExecutionsResponse>, tonic::Status> {
    Ok(c.client().watch_executions(pb::WatchExecutionsRequest { job_id: job.to_string() }).await?.into_inner())
}

/// Follows the change stream, reconnecting when it breaks. After a reconnect it subscribes first
/// and then re-reads (so nothing falls between the two): every execution printed in a state that
/// was not final, and every execution made since shortly before the newest one heard of; it prints
/// what moved on, oldest first, then follows the new stream. Duplicates are dropped by id and state.
async fn watch(mut c: Conn, job: String, json: bool) -> Result<(), CliError> {
    let mut printed = new_printed(json, cluster_now(&c).await);
    let mut stream = match subscribe(&c, &job).await {
        Ok(s) => s,
        Err(s) if final_code(s.code()) => return Err(s.into()),
        // The first endpoint connected but cannot serve a watch now (draining, store down).
        Err(s) => {
            eprintln!(
                "rota: watch on {} refused ({:?}: {}); trying the next endpoint",
                c.endpoint(),
                s.code(),
                s.message()
            );
            reconnect(&mut c, &job, &mut printed).await?
        }
    };
    if !json {
        print_watch_header();
    }
    loop {
        let why = match stream.message().await {
            Ok(Some(r)) => {
                if let Some(e) = r.execution {
                    printed.show(&e);
                }
                continue;
            }
            Ok(None) => "the stream ended".to_string(),
            Err(s) if final_code(s.code()) => return Err(s.into()),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        };
        eprintln!("rota: watch on {} lost ({why}); reconnecting", c.endpoint());
        stream = reconnect(&mut c, &job, &mut printed).await?;
        eprintln!("rota: watch reconnected to {}", c.endpoint());
    }
}

/// Subscribes again on the first endpoint that answers (the next one first) and catches up,
/// retrying for `RECONNECT_FOR`.
async fn reconnect(
    c: &mut Conn,
    job: &str,
    printed: &mut Printed,
) -> Result<tonic::Streaming<pb::WatchExecutionsResponse>, CliError> {
    let deadline = Instant::now() + RECONNECT_FOR;
    let mut pause = RECONNECT_PAUSE;
    loop {
        let attempt = async {
            c.next().await?;
            let stream = subscribe(c, job).await?;
            catch_up(c, job, printed).await?;
            Ok::<_, CliError>(stream)
        };
        match attempt.await {
            Ok(stream) => return Ok(stream),
            Err(CliError::NotFound(m)) => return Err(CliError::NotFound(m)),
            Err(CliError::Call { code, message }) if final_code(code) => return Err(CliError::Call { code, message }),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECONNECT_PAUSE_MAX);
            }
        }
    }
}

/// Prints what changed while the watch was away: the executions it last saw unfinished, and the
/// ones made since shortly before the newest one it heard of.
async fn catch_up(c: &mut Conn, job: &str, printed: &mut Printed) -> Result<(), CliError> {
    let mut found: BTreeMap<String, pb::Execution> = BTreeMap::new();
    for id in printed.open() {
        match c.client().get_execution(pb::GetExecutionRequest { id: id.clone() }).await {
            Ok(r) => {
                if let Some(e) = r.into_inner().execution {
                    found.insert(e.id.clone(), e);
                }
            }
            // Past retention: nothing more will be heard of it.
            Err(s) if s.code() == Code::NotFound => {
                printed.seen.insert(id, (3, now_ms()));
            }
            Err(s) => return Err(s.into()),
        }
    }
    let since = printed.catch_up_since();
    let mut token = String::new();
    'pages: for _ in 0..CATCH_UP_PAGES {
        let req = pb::ListExecutionsRequest {
            job_id: job.to_string(),
            state: pb::ExecutionState::Unspecified as i32,
            page_size: 1000,
            page_token: token,
            ..Default::default()
        };
        let r = c.client().list_executions(req).await?.into_inner();
        for e in r.executions {
            if id_ms(&e.id).is_some_and(|ms| ms < since) {
                break 'pages;
            }
            found.insert(e.id.clone(), e);
        }
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    // Ids sort by when they were made: oldest first, as the stream would have told them.
    for e in found.values() {
        printed.show(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_tell_when_they_were_made() {
        let id = crate::execution::new_execution_id("j@1");
        let made = id_ms(&id).expect("a uuid");
        assert!((made - now_ms()).abs() < 60_000, "{made}");
        assert_eq!(id_ms("not-a-uuid"), None);
    }

    #[test]
    fn a_change_is_printed_once_and_never_backwards() {
        let mut p = new_printed(true, now_ms());
        let e = |state: pb::ExecutionState| pb::Execution { id: "x".into(), state: state as i32, ..Default::default() };
        p.show(&e(pb::ExecutionState::Running));
        assert_eq!(p.open(), vec!["x".to_string()]);
        p.show(&e(pb::ExecutionState::Pending));
        assert_eq!(p.seen["x"].0, 2, "an older state after a newer one is not printed");
        p.show(&e(pb::ExecutionState::Succeeded));
        assert!(p.open().is_empty());
    }

    #[test]
    fn a_long_watch_forgets_what_no_catch_up_re_reads() {
        let now = now_ms();
        let mut p = new_printed(true, now - 3_600_000);
        let id = |ms: i64| {
            let ts = uuid::Timestamp::from_unix(uuid::NoContext, (ms / 1000) as u64, (ms % 1000) as u32 * 1_000_000);
            uuid::Uuid::new_v7(ts).to_string()
        };
        p.show(&pb::Execution { id: id(now), state: pb::ExecutionState::Pending as i32, ..Default::default() });
        let (old, recent) = (now - 3 * CATCH_UP_SLACK_MS, now - CATCH_UP_SLACK_MS / 2);
        let long_ago = now - 3 * CATCH_UP_SLACK_MS;
        p.seen.insert(id(old), (3, long_ago)); // finished, old id, printed long ago: forgotten
        p.seen.insert(id(old + 1), (2, long_ago)); // not finished: a catch-up re-reads it
        p.seen.insert(id(old + 2), (3, now)); // printed just now: a stream in flight may repeat it
        p.seen.insert(id(recent), (3, long_ago)); // inside the window a catch-up re-lists
        p.prune();
        assert_eq!(p.seen.len(), 4, "{:?}", p.seen);
        assert!(!p.seen.contains_key(&id(old)));
    }
}
