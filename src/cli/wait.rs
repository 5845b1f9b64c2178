//! `rota job trigger --wait`: follows one fire through all its attempts (retries, re-runs after a
//! node died, a hand-over to the master) to its outcome, as `kubectl wait` does, and turns that
//! outcome into an exit code. Owns the judgement "is this fire over, and how did it end", made from
//! the fire's executions alone: the newest one (highest attempt; superseded evidence aside) is the
//! outcome once it is terminal and announces no further attempt (`next_attempt_time`). Comparing the
//! attempt with the job's `retries` would be wrong after a recovery, which counts retries afresh.
use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::connect::{call, CliError, Conn};
use super::output::{exec_json, print_exec_detail, state_name, ts};
use crate::pb;

/// How long `--wait` waits when `--wait-timeout` is not given: longer than a few quick retries,
/// short enough that a forgotten script does not hang for the default backoff cap (an hour).
pub const DEFAULT_WAIT_TIMEOUT: &str = "10m";
/// How often the fire's executions are read while waiting.
const POLL: Duration = Duration::from_millis(250);
/// Pages of one fire's executions read per look (a fire has a handful; a page may come back short
/// when the server's scan stopped early, with a token to go on).
const MAX_PAGES: usize = 20;

/// How a fire ended, each with its exit code (documented in `rota job trigger --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    TimedOut,
    Lost,
    /// Skipped, misfired (or only superseded evidence): the fire did not run to an outcome.
    NotRun,
    /// Cancelled (CancelExecution).
    Cancelled,
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Succeeded => 0,
            Outcome::Failed => 5,
            Outcome::TimedOut => 6,
            Outcome::Lost => 7,
            Outcome::NotRun => 8,
            Outcome::Cancelled => 10,
        }
    }
}

/// Where a fire is, judged from its executions.
#[derive(Debug, PartialEq)]
pub enum Progress<'a> {
    /// Not over: its newest execution (None when none is recorded yet) is open or announces
    /// another attempt.
    Open(Option<&'a pb::Execution>),
    /// Over: the execution that is its outcome.
    Over(&'a pb::Execution, Outcome),
}

/// Judges a fire from all its executions (any order).
pub fn judge(execs: &[pb::Execution]) -> Progress<'_> {
    use pb::ExecutionState as S;
    let newest = execs
        .iter()
        .filter(|e| e.state != S::Superseded as i32)
        .max_by(|a, b| (a.attempt, &a.id).cmp(&(b.attempt, &b.id)));
    let Some(mut e) = newest else { return Progress::Open(None) };
    // Handed to another node that may run it: its attempt there comes next (it may not be
    // recorded yet), so a skipped hand-over is not the fire's end. What was recorded after it
    // (ids sort by time) is, whatever its attempt number says (a start's misfire there is
    // recorded as attempt 1).
    if e.state == S::Skipped as i32 && crate::execution::is_hand_over(&e.error) {
        match execs.iter().filter(|x| x.state != S::Superseded as i32 && x.id > e.id).max_by(|a, b| a.id.cmp(&b.id)) {
            Some(after) => e = after,
            None => return Progress::Open(Some(e)),
        }
    }
    let outcome = match S::try_from(e.state).unwrap_or(S::Unspecified) {
        S::Succeeded => Outcome::Succeeded,
        S::Failed => Outcome::Failed,
        S::TimedOut => Outcome::TimedOut,
        S::Lost => Outcome::Lost,
        S::Skipped | S::Misfired | S::Superseded => Outcome::NotRun,
        S::Cancelled => Outcome::Cancelled,
        S::Pending | S::Running | S::Unspecified => return Progress::Open(Some(e)),
    };
    if e.next_attempt_time.is_some() {
        return Progress::Open(Some(e));
    }
    Progress::Over(e, outcome)
}

/// Waits for the outcome of `first`'s fire, printing a progress line per attempt and state to
/// stderr, then the outcome's execution to stdout (JSON with `json`). Ok only when it succeeded;
/// otherwise the error carries the outcome's exit code.
pub(super) async fn wait_for_fire(
    c: &mut Conn,
    first: &pb::Execution,
    timeout: Duration,
    json: bool,
) -> Result<(), CliError> {
    let fire_id = first.fire_id.clone();
    let deadline = Instant::now() + timeout;
    let mut seen = HashSet::new();
    // Whether the last look went unanswered: said once per outage, not at every look.
    let mut unanswered = false;
    // The executions as last read (kept through an unanswered look).
    let mut execs = Vec::new();
    eprintln!("waiting for fire {fire_id} (execution {}), up to {}", first.id, human(timeout));
    loop {
        match fire_executions(c, &fire_id).await {
            Ok(read) => {
                if std::mem::take(&mut unanswered) {
                    eprintln!("answered again");
                }
                execs = read;
            }
            // The node or its store is down for a moment (a restart): the fire goes on without us,
            // so the wait does too, until its timeout.
            Err(CliError::Call { code: tonic::Code::Unavailable, message }) => {
                if !std::mem::replace(&mut unanswered, true) {
                    eprintln!("unavailable ({message}); still waiting");
                }
            }
            Err(e) => return Err(e),
        }
        let mut ordered: Vec<&pb::Execution> = execs.iter().collect();
        ordered.sort_by(|a, b| (a.attempt, &a.id).cmp(&(b.attempt, &b.id)));
        for e in ordered {
            if seen.insert((e.id.clone(), e.state, e.next_attempt_time.is_some())) {
                eprintln!("{}", progress_line(e));
            }
        }
        match judge(&execs) {
            Progress::Over(e, outcome) => {
                if json {
                    println!("{:#}", exec_json(e));
                } else {
                    print_exec_detail(e);
                }
                return match outcome {
                    Outcome::Succeeded => Ok(()),
                    _ => Err(CliError::Outcome {
                        fire_id,
                        state: state_name(e.state),
                        attempt: e.attempt,
                        code: outcome.exit_code(),
                    }),
                };
            }
            Progress::Open(newest) => {
                if Instant::now() >= deadline {
                    let now = newest.map_or_else(
                        || "no execution recorded yet".to_string(),
                        |e| format!("attempt {} {}", e.attempt, state_name(e.state)),
                    );
                    return Err(CliError::WaitTimedOut { fire_id, waited: human(timeout), now });
                }
            }
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Every execution of the fire (NOT_FOUND counts as none yet: the wait goes on until its timeout).
async fn fire_executions(c: &mut Conn, fire_id: &str) -> Result<Vec<pb::Execution>, CliError> {
    let mut all = Vec::new();
    let mut token = String::new();
    for _ in 0..MAX_PAGES {
        let req = pb::ListExecutionsRequest {
            fire_id: fire_id.to_string(),
            page_size: 1000,
            page_token: std::mem::take(&mut token),
            ..Default::default()
        };
        match call!(c, list_executions, req) {
            Ok(r) => {
                all.extend(r.executions);
                if r.next_page_token.is_empty() {
                    break;
                }
                token = r.next_page_token;
            }
            Err(CliError::NotFound(_)) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(all)
}

/// One line per attempt and state: "attempt 2 failed on n1: exit status 3: boom; attempt 3 at …".
fn progress_line(e: &pb::Execution) -> String {
    let mut s = format!("attempt {} {}", e.attempt, state_name(e.state));
    if !e.node_id.is_empty() {
        s.push_str(&format!(" on {}", e.node_id));
    }
    if !e.error.is_empty() {
        s.push_str(&format!(": {}", e.error.replace('\n', " ")));
    }
    if let Some(t) = &e.next_attempt_time {
        s.push_str(&format!("; attempt {} follows (due {})", e.attempt + 1, ts(t)));
    }
    s
}

/// A duration as `--wait-timeout` takes it: "10m", "90s", "700ms".
fn human(d: Duration) -> String {
    match d.as_millis() {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::connect::WAIT_TIMED_OUT_EXIT;
    use pb::ExecutionState as S;

    fn ex(id: &str, attempt: u32, state: S, next: bool) -> pb::Execution {
        pb::Execution {
            id: id.into(),
            fire_id: "j@m:x".into(),
            attempt,
            state: state as i32,
            next_attempt_time: next.then_some(prost_types::Timestamp { seconds: 1, nanos: 0 }),
            ..Default::default()
        }
    }

    #[test]
    fn a_fire_is_over_only_when_its_newest_attempt_announces_no_other() {
        assert_eq!(judge(&[]), Progress::Open(None));
        let a1 = ex("a", 1, S::Failed, true);
        assert!(matches!(judge(std::slice::from_ref(&a1)), Progress::Open(Some(_))), "a retry is to come");
        let a2 = ex("b", 2, S::Running, false);
        assert!(matches!(judge(&[a1.clone(), a2]), Progress::Open(Some(e)) if e.id == "b"));
        let a2 = ex("b", 2, S::Failed, false);
        assert_eq!(judge(&[a2.clone(), a1.clone()]), Progress::Over(&a2, Outcome::Failed));
        // A lost attempt re-run by recovery is not the outcome; the re-run is.
        let lost = ex("c", 1, S::Lost, true);
        assert!(matches!(judge(std::slice::from_ref(&lost)), Progress::Open(_)));
        let rerun = ex("d", 2, S::Succeeded, false);
        assert_eq!(judge(&[lost, rerun.clone()]), Progress::Over(&rerun, Outcome::Succeeded));
        // Superseded evidence is never the outcome.
        let won = ex("e", 1, S::Lost, false);
        let late = ex("f", 1, S::Superseded, false);
        assert_eq!(judge(&[won.clone(), late]), Progress::Over(&won, Outcome::Lost));
        let skipped = ex("g", 1, S::Skipped, false);
        assert_eq!(judge(std::slice::from_ref(&skipped)), Progress::Over(&skipped, Outcome::NotRun));
        // Skipped because handed to a node that has the handler: its attempt there is the outcome.
        let handed = pb::Execution {
            error: crate::execution::hand_over_error("no worker serves 'py.x' here", "n2, which may run it"),
            ..ex("g1", 1, S::Skipped, false)
        };
        assert!(matches!(judge(std::slice::from_ref(&handed)), Progress::Open(Some(_))));
        let there = ex("g2", 2, S::Succeeded, false);
        assert_eq!(judge(&[handed.clone(), there.clone()]), Progress::Over(&there, Outcome::Succeeded));
        // A misfire where it was handed to, recorded as attempt 1 but later: the outcome.
        let misfired = ex("g3", 1, S::Misfired, false);
        assert_eq!(judge(&[handed, misfired.clone()]), Progress::Over(&misfired, Outcome::NotRun));
        let t = ex("h", 1, S::TimedOut, false);
        assert_eq!(judge(std::slice::from_ref(&t)), Progress::Over(&t, Outcome::TimedOut));
    }

    #[test]
    fn exit_codes_are_distinct_and_clear_of_the_error_codes() {
        let codes: Vec<i32> = [Outcome::Succeeded, Outcome::Failed, Outcome::TimedOut, Outcome::Lost, Outcome::NotRun]
            .iter()
            .map(|o| o.exit_code())
            .chain([WAIT_TIMED_OUT_EXIT])
            .collect();
        assert_eq!(codes, [0, 5, 6, 7, 8, 9]);
    }
}
