//! The once-per-fire checker. Input: the workload, the independent side log (every handler run, as
//! written by the handler itself), rota's own execution records, the faults the runner injected and
//! the master epochs it saw. Output: counts and a list of violations, each naming the fire.
//!
//! Rules, for every (job, scheduled second) in the window:
//! - it has a rota record and ended in exactly one successful run (a job with an overlap policy may
//!   instead be `skipped`, saying why in its policy's words: forbid, its previous fire still ran;
//!   buffer, the fires waiting filled the buffer; replace, a newer fire replaced it while it
//!   waited; a `replace` job's run may end `cancelled` by the fire that replaced it, and never run
//!   again; a `recovery = lost` job may end `lost` when its node died mid-run: counted as lost by
//!   policy, not as a violation);
//! - every extra run is explained: its record says lost or superseded, and a fault hit its node (or
//!   Redis, or the external worker that ran it) while it ran;
//! - rota and the side log agree: every successful record has a finished run with the same
//!   execution id, and every run has a record;
//! - per job, the master epoch never goes down as scheduled time goes up (a stale master claimed
//!   nothing after its successor), and a master-only job ran only on the node holding its shard's
//!   lease (each shard has its own lease and epochs; judged in the window, where the lease poller
//!   has watched every shard);
//! - runs of a job whose handler only some nodes have are on those nodes (mixed capabilities);
//! - runs of a job with an overlap policy never overlap (a run stopped by a cancel or a replace has
//!   no end line and ends when its record says; a run with no end line ends when its process
//!   died, as the fault log says; a run of an external worker that a fault on the worker or its
//!   node hit may overlap another: its session ended while its handler went on, or, paused, the
//!   worker began the handler only when it resumed);
//! - a job whose handler outlasts its timeout and ignores the cancel (`times_out`) ends each fire
//!   in one `timed_out` run instead of a successful one, recorded only once the handler ended (its
//!   record's end is after the side log's end line, unless a fault hit its worker or node, which may
//!   leave no end line, or no run at all: a worker paused as the fire was pushed never began it);
//! - a job with a history cap (`keep_last`) keeps at most that many finished records (plus the
//!   trim's tenth and a fire or two finishing while the records are read), and its fires, whose
//!   records the cap deletes (oldest first, so some of a fire's records may remain), are judged by
//!   the side log alone: one finished run, any other run explained by a fault on its node.
use std::collections::{BTreeMap, HashMap};

use rota::job::Concurrency;

#[derive(Clone, Debug)]
pub struct JobInfo {
    pub id: String,
    /// Fires every `period_ms`, at `phase_ms` plus multiples of the period (a cron `*/5` is a
    /// period of 5 s at phase 0; an `every 3s` anchored at 1 s, of 3 s at phase 1 s).
    pub period_ms: i64,
    pub phase_ms: i64,
    /// Its runs never overlap: any overlap policy but allow (`overlap`).
    pub forbid: bool,
    pub overlap: rota::job::Concurrency,
    pub master_only: bool,
    pub rerun: bool,
    /// The nodes that may run the job (empty: every node): those with its handler, or its failover
    /// nodes. Its runs must be on one of them.
    pub only_on: Vec<String>,
    /// The job's history cap (`keep_last`, with `keep_failed = 0`), if it sets one.
    pub keep_last: Option<usize>,
    /// The scheduling shard the job is in (0 without shards).
    pub shard: u16,
    /// Its handler outlasts the job's timeout and ignores the cancel: a fire's one run is recorded
    /// `timed_out`, not `succeeded`.
    pub times_out: bool,
    /// It is under the workload's concurrency limit, which lets this many of its jobs' fires run
    /// at once (one limit: every limited job is in it).
    pub limit: Option<usize>,
    /// Its priority: reported with the delays it saw (`Report::p95_delay_ms_by_priority`); no
    /// rule, since under faults the order of waiting fires is not the checker's to judge.
    pub priority: rota::job::Priority,
    /// Its sharding: each instant is one fire per shard (`<job>@<ms>/<i>of<n>`), each judged as a
    /// fire of its own; for `PerNode`, the total its records and runs name (they must agree).
    pub shards: rota::job::Shards,
    /// An `after_previous` job's delay: it has no grid (`period_ms` and `phase_ms` are unused);
    /// its instants are those rota made, each judged as a fire, and the chain by `check_chain`.
    pub after_previous_ms: Option<i64>,
    /// Its jitter bound: each fire's run starts no sooner than its own jitter
    /// (`rota::job::schedule::fire_jitter_ms` of its fire id) after its instant.
    pub jitter_ms: Option<u64>,
    /// The calendar it names (`check_calendar`): its grid's instants in the calendar's windows are
    /// recorded skipped, make nothing, or fire at the window's end, as the calendar says.
    pub calendar: Option<CalendarRule>,
}

/// A calendar of the workload, as the runner wrote it: its excluded windows as instants
/// [from, to), the checker's own reading (not rota's parser).
#[derive(Clone, Debug)]
pub struct CalendarRule {
    pub name: String,
    pub on: rota::job::calendar::OnExcluded,
    pub windows: Vec<(i64, i64)>,
}

impl CalendarRule {
    /// The window `ms` is in, if any.
    fn window_of(&self, ms: i64) -> Option<(i64, i64)> {
        self.windows.iter().copied().find(|(a, b)| *a <= ms && ms < *b)
    }
}

/// One handler run from the side log.
#[derive(Clone, Debug)]
pub struct Run {
    pub job: String,
    pub sched_ms: i64,
    pub exec: String,
    pub node: String,
    pub epoch: u64,
    pub attempt: u32,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    /// The external worker that ran it (jobs of an external worker's handler): a fault on that
    /// worker explains it as a fault on its node does.
    pub worker: Option<String>,
    /// The `mark` in the arguments it ran with (a manual fire's own, TriggerJob's), if any.
    pub mark: Option<String>,
}

/// One execution record from rota's API.
#[derive(Clone, Debug)]
pub struct Record {
    pub exec: String,
    pub job: String,
    pub sched_ms: i64,
    /// Lower-case state name: succeeded, failed, skipped, lost, superseded, misfired, running, …
    pub state: String,
    pub node: String,
    pub manual: bool,
    /// When it ended (None: not ended).
    pub end_ms: Option<i64>,
    /// Why it ended as it did (a skip's or a cancel's reason).
    pub error: String,
    /// Another attempt follows it (`next_attempt_time`): not the fire's outcome.
    pub retried: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Fault {
    pub kind: String,
    /// The node (or external worker) hit; None for Redis (every node).
    pub node: Option<String>,
    pub at_ms: i64,
    /// When the fault was healed (the node back, the link restored).
    pub until_ms: i64,
    /// When the process was seen dead, for faults that end it.
    pub dead_ms: Option<i64>,
    /// Whether the node was master when hit, and the highest epoch seen before.
    pub was_master: bool,
    pub epoch_before: u64,
}

/// Per shard: epoch -> (the node that held the shard's lease, when the poller first saw it).
pub type Masters = BTreeMap<u16, BTreeMap<u64, (String, i64)>>;

#[derive(Clone)]
pub struct History {
    pub jobs: Vec<JobInfo>,
    pub runs: Vec<Run>,
    pub records: Vec<Record>,
    pub faults: Vec<Fault>,
    pub masters: Masters,
    /// Scheduled instants checked: [from, to).
    pub window: (i64, i64),
    /// A first attempt starting later than this after its scheduled instant counts as late.
    pub late_bound_ms: i64,
    /// Whether a Redis fault (no node) may explain an extra run anywhere while it lasts. Not in
    /// strict mode (`redis_wait_replicas`): there a failover undoes no acknowledged write, so an
    /// extra run needs a fault on its own node.
    pub redis_faults_explain: bool,
    /// Executions the runner asked to cancel (CancelExecution): only these may end `cancelled`.
    pub cancels: std::collections::HashSet<String>,
    /// Manual fires the runner triggered with arguments of their own.
    pub triggers: Vec<Trigger>,
    /// A manual fire aimed at one external worker by its target tags: mark -> that worker's id.
    pub trigger_targets: HashMap<String, String>,
}

/// A manual fire the runner triggered with arguments of its own: (job, the mark in them, the fire
/// id when the reply came back).
pub type Trigger = (String, String, Option<String>);

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub fires_expected: usize,
    pub executed: usize,
    pub skipped_by_lock: usize,
    /// Fires of `replace` jobs whose run a newer fire stopped (recorded `cancelled`).
    pub replaced: usize,
    /// The longest a first attempt of a job with held fires (replace, buffer), or under a
    /// concurrency limit, began after its instant: it waits for the run before it (or a slot) by
    /// design, so it counts in no lateness.
    pub max_held_delay_ms: i64,
    /// Fires whose execution was cancelled (asked by the runner) and that did not run to an end.
    pub cancelled: usize,
    /// BackfillJob calls the runner made, and the instants they made a fire for and found fired
    /// (the runner's counts; every backfilled instant is judged as any fire of its job).
    pub backfill_calls: usize,
    pub backfill_started: usize,
    pub backfill_found_fired: usize,
    /// Manual fires triggered with arguments of their own, and of those, run to success.
    pub manual_triggered: usize,
    pub manual_executed: usize,
    pub lost_by_policy: usize,
    /// Fires of a limit's jobs recorded misfired, having waited past the misfire threshold for a
    /// slot while a fault had taken the store or a node away (a dead node's slots stay held until
    /// their lease lapses; a Redis outage stops every take), and the backlog it left: the limit's
    /// policy, not a loss. Without a fault in its wait, such a misfire is a violation.
    pub misfired_by_limit: usize,
    pub explained_extra_runs: usize,
    /// Of those, explained by a Redis fault alone (no fault on the run's node): a Redis fault has
    /// no node, so it explains a run anywhere while it lasts; these are listed apart
    /// (`redis_explained`) so a strict-mode run, where a failover should undo nothing, can be
    /// looked at.
    pub explained_by_redis_alone: usize,
    pub redis_explained: Vec<String>,
    pub lost: usize,
    pub duplicated: usize,
    pub stale_epoch: usize,
    pub overlapping: usize,
    /// `after_previous` fires that began sooner than the delay after the fire before them ended.
    pub chain_early: usize,
    /// Chains that stalled: a fire that came (or none that came) later than the delay plus the
    /// late bound after the end of the one before, with no fault between to explain it.
    pub chain_stalled: usize,
    /// The longest any chain waited past its delay (ms), faults included.
    pub max_chain_wait_ms: i64,
    /// Runs of a jittered job that began before their fire's jitter had passed.
    pub early_for_jitter: usize,
    /// Instants a calendar excluded: recorded skipped (naming it), made nothing (omit), or moved
    /// to the window's end (forward: fires judged as any other, counted here once each).
    pub calendar_skipped: usize,
    pub calendar_omitted: usize,
    pub calendar_forwarded: usize,
    /// A fire a calendar excluded that ran or was recorded otherwise than it says, or a fire at an
    /// instant neither its grid nor its calendar makes.
    pub calendar_broken: usize,
    /// Moments when more runs of a limit's jobs were under way than the limit lets run.
    pub over_limit: usize,
    /// The most runs of the limit's jobs under way at once (by the side log).
    pub most_limited: usize,
    pub master_only_elsewhere: usize,
    /// Runs on a node that does not have the job's handler.
    pub without_handler: usize,
    pub disagreeing: usize,
    /// Fires of capped jobs (their records deleted, or partly, by the cap), judged by the side log.
    pub trimmed: usize,
    pub late: usize,
    pub max_delay_ms: i64,
    /// The 95th percentile of first attempts' start delays, by the job's priority (high, normal,
    /// low; jobs whose fires wait by design left out): what a busy cluster's waits came to.
    pub p95_delay_ms_by_priority: [i64; 3],
    pub failover_ms: Vec<i64>,
    pub violations: Vec<String>,
}

/// The nodes' `max_recoveries` (the default).
const MAX_RECOVERIES: usize = 2;

/// Slack for comparing times taken by different processes on one machine.
const SLACK_MS: i64 = 50;

pub fn check(h: &History) -> Report {
    let mut r = Report::default();
    let mut runs_by_fire: HashMap<String, Vec<&Run>> = HashMap::new();
    // Per sharded instant (job, ms), the shard totals its fire ids name.
    let mut totals: HashMap<(&str, i64), std::collections::BTreeSet<u32>> = HashMap::new();
    // Manual fires' runs are judged apart (`check_manual`).
    for run in h.runs.iter().filter(|x| !is_manual(&x.exec)) {
        let fire = fire_key(&run.exec, &run.job, run.sched_ms);
        if let Some(s) = rota::execution::shard_in(&fire) {
            totals.entry((run.job.as_str(), run.sched_ms)).or_default().insert(s.total);
        }
        runs_by_fire.entry(fire).or_default().push(run);
    }
    let mut recs_by_fire: HashMap<String, Vec<&Record>> = HashMap::new();
    for rec in h.records.iter().filter(|x| !x.manual) {
        let fire = fire_key(&rec.exec, &rec.job, rec.sched_ms);
        if let Some(s) = rota::execution::shard_in(&fire) {
            totals.entry((rec.job.as_str(), rec.sched_ms)).or_default().insert(s.total);
        }
        recs_by_fire.entry(fire).or_default().push(rec);
    }
    let rec_by_exec: HashMap<&str, &Record> = h.records.iter().map(|x| (x.exec.as_str(), x)).collect();
    let run_by_exec: HashMap<&str, &Run> = h.runs.iter().map(|x| (x.exec.as_str(), x)).collect();

    for job in &h.jobs {
        if let Some(delay) = job.after_previous_ms {
            check_chain(h, &mut r, job, delay, &runs_by_fire, &recs_by_fire, &rec_by_exec, &run_by_exec);
        }
        let period = job.period_ms;
        let first = job.phase_ms + (h.window.0 - job.phase_ms + period - 1).div_euclid(period) * period;
        let mut sched = first;
        // A calendar's instants: those it excludes are judged by `check_calendar`, which gives the
        // instants it moves fires to, judged below as fires.
        let mut moved_to: std::collections::BTreeSet<i64> = Default::default();
        if let Some(cal) = &job.calendar {
            moved_to = check_calendar(h, &mut r, job, cal, &runs_by_fire, &recs_by_fire);
        }
        for at in moved_to {
            r.fires_expected += 1;
            check_fire(
                h,
                &mut r,
                job,
                &format!("{}@{at}", job.id),
                &runs_by_fire,
                &recs_by_fire,
                &rec_by_exec,
                &run_by_exec,
            );
        }
        while job.after_previous_ms.is_none() && sched < h.window.1 {
            if job.calendar.as_ref().is_some_and(|c| c.window_of(sched).is_some()) {
                sched += period;
                continue;
            }
            let whole = format!("{}@{sched}", job.id);
            let shard = |i: u32, n: u32| format!("{whole}/{i}of{n}");
            let seen = totals.get(&(job.id.as_str(), sched));
            let fires: Vec<String> = match job.shards {
                rota::job::Shards::One => vec![whole.clone()],
                rota::job::Shards::Count(n) => (0..n).map(|i| shard(i, n)).collect(),
                // As many shards as its fire ids say (none seen: the whole fire, found nowhere).
                rota::job::Shards::PerNode => match seen.and_then(|s| s.iter().next_back()) {
                    Some(&n) => (0..n).map(|i| shard(i, n)).collect(),
                    None => vec![whole.clone()],
                },
            };
            let odd = |s: &&std::collections::BTreeSet<u32>| match job.shards {
                rota::job::Shards::One => true,
                rota::job::Shards::Count(n) => s.iter().any(|t| *t != n),
                rota::job::Shards::PerNode => s.len() > 1,
            };
            if let Some(seen) = seen.filter(odd) {
                r.disagreeing += 1;
                r.violations.push(format!(
                    "{whole}: its shards name totals {seen:?}, not as its job fans out ({:?})",
                    job.shards
                ));
            }
            for fire in &fires {
                r.fires_expected += 1;
                check_fire(h, &mut r, job, fire, &runs_by_fire, &recs_by_fire, &rec_by_exec, &run_by_exec);
            }
            sched += period;
        }
        let mut runs: Vec<&Run> = h.runs.iter().filter(|x| x.job == job.id && !is_manual(&x.exec)).collect();
        check_epochs(&mut r, job, &mut runs);
        if let Some(bound) = job.jitter_ms {
            for run in &runs {
                let jitter = rota::job::schedule::fire_jitter_ms(&fire_key(&run.exec, &run.job, run.sched_ms), bound);
                if run.start_ms + SLACK_MS < run.sched_ms + jitter as i64 {
                    r.early_for_jitter += 1;
                    r.violations.push(format!(
                        "{}@{}: run {} started {} ms after its instant, before its jitter of {jitter} ms",
                        job.id,
                        run.sched_ms,
                        run.exec,
                        run.start_ms - run.sched_ms
                    ));
                }
            }
        }
        if job.master_only {
            // Judged in the window only: the lease poller starts when the jobs are put, so a
            // holder of the cluster's first second (before a shard went to its owner) may never
            // have been seen by it.
            let seen: Vec<&Run> = runs.iter().copied().filter(|x| in_window(h, x.sched_ms)).collect();
            check_master_only(h, &mut r, job.shard, &seen);
        }
        for run in runs.iter().filter(|x| !job.only_on.is_empty() && !job.only_on.contains(&x.node)) {
            r.without_handler += 1;
            r.violations.push(format!(
                "{}@{}: ran on {}, which may not run it (its handler or its failover list: only {:?})",
                job.id, run.sched_ms, run.node, job.only_on
            ));
        }
        if job.forbid {
            // Up to the window's end: the records were read during the settle, so a later fire's
            // stopped run may have no `cancelled` record to say when it ended.
            let mut judged: Vec<&Run> = runs.iter().copied().filter(|x| x.sched_ms < h.window.1).collect();
            check_overlap(h, &mut r, job, &mut judged, &rec_by_exec);
        }
        if let Some(keep) = job.keep_last {
            let kept = h.records.iter().filter(|x| x.job == job.id && is_terminal(&x.state)).count();
            if kept > keep + keep / 10 + 2 {
                r.violations.push(format!("{}: {kept} finished records kept, over its cap of {keep}", job.id));
            }
        }
    }
    let waits: std::collections::HashSet<&str> =
        h.jobs.iter().filter(|j| j.overlap.held_limit() > 0 || j.limit.is_some()).map(|j| j.id.as_str()).collect();
    let priority: HashMap<&str, rota::job::Priority> = h.jobs.iter().map(|j| (j.id.as_str(), j.priority)).collect();
    let mut by_priority: [Vec<i64>; 3] = Default::default();
    for run in h.runs.iter().filter(|x| x.attempt == 1 && in_window(h, x.sched_ms) && !is_manual(&x.exec)) {
        let delay = run.start_ms - run.sched_ms;
        if waits.contains(run.job.as_str()) {
            r.max_held_delay_ms = r.max_held_delay_ms.max(delay);
            continue;
        }
        if let Some(p) = priority.get(run.job.as_str()) {
            by_priority[p.rank()].push(delay);
        }
        r.max_delay_ms = r.max_delay_ms.max(delay);
        if delay > h.late_bound_ms {
            r.late += 1;
        }
    }
    for (i, mut delays) in by_priority.into_iter().enumerate() {
        delays.sort_unstable();
        r.p95_delay_ms_by_priority[i] = delays.get(delays.len() * 95 / 100).copied().unwrap_or(0);
    }
    check_limit(h, &mut r, &rec_by_exec);
    // After the settle, nothing scheduled before the faults ended may still be open, in the window
    // or not, manual fires included: an execution left `running` is a fire nobody will finish.
    for rec in h.records.iter().filter(|x| x.sched_ms < h.window.1 && !is_terminal(&x.state)) {
        if !in_window(h, rec.sched_ms) || rec.manual {
            r.lost += 1;
            r.violations.push(format!(
                "{}@{}: execution {} on {} still '{}' after the run settled",
                rec.job, rec.sched_ms, rec.exec, rec.node, rec.state
            ));
        }
    }
    check_manual(h, &mut r, &rec_by_exec, &run_by_exec);
    r.failover_ms = failovers(h);
    r
}

/// A job naming a calendar: each of its grid's instants in the window that the calendar excludes
/// is recorded once, `skipped` in the calendar's words, and never run (skip); has no record and no
/// run (omit); or has neither, its fire moved to the window's end (forward: those ends are given
/// back, to be judged as fires). Every fire of the job in the window is at an instant of its grid
/// or one a window moved fires to.
fn check_calendar(
    h: &History,
    r: &mut Report,
    job: &JobInfo,
    cal: &CalendarRule,
    runs_by_fire: &HashMap<String, Vec<&Run>>,
    recs_by_fire: &HashMap<String, Vec<&Record>>,
) -> std::collections::BTreeSet<i64> {
    use rota::job::calendar::OnExcluded;
    let mut moved_to = std::collections::BTreeSet::new();
    let period = job.period_ms;
    // From the start of a window that holds the judged window's start: a fire moved into the
    // judged window may come from an instant before it.
    let from = cal.windows.iter().filter(|(a, b)| *a < h.window.0 && *b >= h.window.0).map(|(a, _)| *a).min();
    let from = from.unwrap_or(h.window.0);
    let mut sched = job.phase_ms + (from - job.phase_ms + period - 1).div_euclid(period) * period;
    let broken = |r: &mut Report, why: String| {
        r.calendar_broken += 1;
        r.violations.push(why);
    };
    while sched < h.window.1 {
        if sched < h.window.0 {
            if let (Some((_, end)), rota::job::calendar::OnExcluded::Forward) = (cal.window_of(sched), cal.on) {
                if in_window(h, end) && moved_to.insert(end) {
                    r.calendar_forwarded += 1;
                }
            }
            sched += period;
            continue;
        }
        if let Some((_, end)) = cal.window_of(sched) {
            let fire = format!("{}@{sched}", job.id);
            let runs = runs_by_fire.get(&fire).map_or(0, Vec::len);
            let recs = recs_by_fire.get(&fire).cloned().unwrap_or_default();
            if runs > 0 {
                broken(r, format!("{fire}: ran {runs} time(s), though calendar {} excludes it", cal.name));
            }
            match cal.on {
                OnExcluded::Skip => {
                    let want = format!("skipped: calendar {}", cal.name);
                    match recs.as_slice() {
                        [one] if one.state == "skipped" && one.error == want => r.calendar_skipped += 1,
                        [] => {
                            r.lost += 1;
                            r.violations
                                .push(format!("{fire}: excluded by calendar {}, yet not recorded skipped", cal.name));
                        }
                        more => {
                            let got: Vec<(&str, &str)> =
                                more.iter().map(|x| (x.state.as_str(), x.error.as_str())).collect();
                            broken(r, format!("{fire}: excluded by calendar {}, recorded {got:?}", cal.name));
                        }
                    }
                }
                OnExcluded::Omit | OnExcluded::Forward => {
                    if recs.is_empty() {
                        if cal.on == OnExcluded::Omit {
                            r.calendar_omitted += 1;
                        }
                    } else {
                        broken(
                            r,
                            format!(
                                "{fire}: {} record(s), though calendar {} leaves no trace of it",
                                recs.len(),
                                cal.name
                            ),
                        );
                    }
                    if cal.on == OnExcluded::Forward && in_window(h, end) && moved_to.insert(end) {
                        r.calendar_forwarded += 1;
                    }
                }
            }
        }
        sched += period;
    }
    // No fire but at the grid's instants and the ends fires moved to.
    let on_grid = |t: i64| (t - job.phase_ms).rem_euclid(period) == 0;
    let stray: std::collections::BTreeSet<i64> = h
        .runs
        .iter()
        .filter(|x| x.job == job.id && !is_manual(&x.exec))
        .map(|x| x.sched_ms)
        .chain(h.records.iter().filter(|x| x.job == job.id && !x.manual).map(|x| x.sched_ms))
        .filter(|t| in_window(h, *t) && !on_grid(*t) && !moved_to.contains(t))
        .collect();
    for t in stray {
        broken(r, format!("{}@{t}: a fire at an instant neither its grid nor calendar {} makes", job.id, cal.name));
    }
    moved_to
}

/// An `after_previous` job: its instants are the ones rota made (its records and the side log
/// name them; a chain has no grid), each in the window judged as a fire (`check_fire`: run once,
/// or lost only by policy). Then, in order, each fire must begin no sooner than the delay after the
/// fire before it ended (by its final record, a superseded late result aside: the end rota chains
/// from), and no later than the delay plus the late bound, unless a fault came between; the last
/// ended fire of the window must have a successor by then, the same way.
#[allow(clippy::too_many_arguments)]
fn check_chain(
    h: &History,
    r: &mut Report,
    job: &JobInfo,
    delay: i64,
    runs_by_fire: &HashMap<String, Vec<&Run>>,
    recs_by_fire: &HashMap<String, Vec<&Record>>,
    rec_by_exec: &HashMap<&str, &Record>,
    run_by_exec: &HashMap<&str, &Run>,
) {
    let fire = |t: i64| format!("{}@{t}", job.id);
    let mut instants: Vec<i64> = h
        .records
        .iter()
        .filter(|x| x.job == job.id && !x.manual)
        .map(|x| x.sched_ms)
        .chain(h.runs.iter().filter(|x| x.job == job.id && !is_manual(&x.exec)).map(|x| x.sched_ms))
        .collect();
    instants.sort_unstable();
    instants.dedup();
    for &t in instants.iter().filter(|t| in_window(h, **t)) {
        r.fires_expected += 1;
        check_fire(h, r, job, &fire(t), runs_by_fire, recs_by_fire, rec_by_exec, run_by_exec);
    }
    // The fire's outcome: its record no attempt follows, a superseded late result aside; and
    // whether it is a loss (or a misfire at start), whose record is written just after the
    // moment the chain counts from (when the loss was found).
    let outcome = |t: i64| {
        recs_by_fire
            .get(&fire(t))
            .into_iter()
            .flatten()
            .filter(|x| is_terminal(&x.state) && x.state != "superseded" && !x.retried)
            .filter_map(|x| x.end_ms.map(|e| (e, matches!(x.state.as_str(), "lost" | "misfired"))))
            .max()
    };
    // Until when the faults that overlap [from, to] could hold a chain up: the latest of their
    // ends, plus the time a new master and its sweep take to notice (a lease and a sweep).
    const RECOVERY_MS: i64 = 10_000;
    let held_up_until = |from: i64, to: i64| {
        h.faults
            .iter()
            .filter(|f| {
                f.kind != "restart_postgres"
                    && f.at_ms <= to + SLACK_MS
                    && f.until_ms.max(f.dead_ms.unwrap_or(0)) + SLACK_MS >= from
            })
            .map(|f| f.until_ms.max(f.dead_ms.unwrap_or(0)) + RECOVERY_MS)
            .max()
    };
    for (i, &a) in instants.iter().enumerate().filter(|(_, t)| in_window(h, **t)) {
        let Some((end, loss)) = outcome(a) else { continue };
        let due = end + delay;
        let next = instants.get(i + 1).copied();
        // After a loss the chain counts from when it was found, which the loss's record, written
        // just after, may follow by a little.
        let slack = if loss { h.late_bound_ms } else { SLACK_MS };
        if let Some(b) = next {
            r.max_chain_wait_ms = r.max_chain_wait_ms.max(b - due);
            if b + slack < due {
                r.chain_early += 1;
                r.violations.push(format!(
                    "{}@{b}: began {} ms after {}@{a} ended, sooner than its delay of {delay} ms",
                    job.id,
                    b - end,
                    job.id
                ));
                continue;
            }
        }
        let came = next.unwrap_or(h.window.1);
        let bound = held_up_until(end, came).unwrap_or(0).max(due) + h.late_bound_ms;
        if came > bound {
            r.chain_stalled += 1;
            r.violations.push(match next {
                Some(b) => format!(
                    "{}@{b}: came {} ms after {}@{a} ended (delay {delay} ms), later than any fault between explains",
                    job.id,
                    b - end,
                    job.id
                ),
                None => format!("{}: the chain stopped after {}@{a}, which ended at {end}", job.id, job.id),
            });
        }
    }
}

/// How many of a fire's attempts were recorded lost.
fn lost_attempts(recs: &[&Record]) -> usize {
    recs.iter().filter(|x| x.state == "lost").count()
}

/// The fire a run or record is of: the one its execution id names (`<stamp>~<fire>`), or, for an id
/// that names none (the checker's own tests), the job's scheduled fire.
fn fire_key(exec: &str, job: &str, sched: i64) -> String {
    fire_of(exec).map_or_else(|| format!("{job}@{sched}"), str::to_string)
}

/// The fire id an execution id names (`<stamp>~<fire>`).
fn fire_of(exec: &str) -> Option<&str> {
    exec.split_once('~').map(|(_, f)| f)
}

/// Whether an execution id is of a manual fire (`<stamp>~<job>@m:<stamp>`).
fn is_manual(exec: &str) -> bool {
    fire_of(exec).is_some_and(|f| f.contains("@m:"))
}

/// Manual fires (the runner triggers `plain` jobs with arguments of their own: a mark in them, and
/// the mark as the idempotency key). Every manual fire is judged, whether or not its trigger's
/// reply came back:
/// - each mark made at most one fire; a job has no more manual fires than its triggers;
/// - every run of a manual fire carries a mark of its job's triggers (the mark of the trigger its
///   reply or a run names): its arguments went with it through hand-overs and re-runs;
/// - it ended as a scheduled fire must: one success, backed by a finished run, or `lost` past the
///   recoveries; a run rota has no record of is a duplicate; any other run needs a fault.
fn check_manual(h: &History, r: &mut Report, rec_by_exec: &HashMap<&str, &Record>, run_by_exec: &HashMap<&str, &Run>) {
    let mut runs_of: HashMap<&str, Vec<&Run>> = HashMap::new();
    for run in h.runs.iter().filter(|x| is_manual(&x.exec)) {
        runs_of.entry(fire_of(&run.exec).unwrap_or_default()).or_default().push(run);
    }
    let mut recs_of: HashMap<&str, Vec<&Record>> = HashMap::new();
    for rec in h.records.iter().filter(|x| is_manual(&x.exec)) {
        recs_of.entry(fire_of(&rec.exec).unwrap_or_default()).or_default().push(rec);
    }
    // The fire each mark made, from its reply or its runs.
    let mut fire_of_mark: HashMap<&str, &str> = HashMap::new();
    let mut marks_of_job: HashMap<&str, Vec<&str>> = HashMap::new();
    for (job, mark, acked) in &h.triggers {
        r.manual_triggered += 1;
        marks_of_job.entry(job.as_str()).or_default().push(mark.as_str());
        let mut fires: Vec<&str> =
            h.runs.iter().filter(|x| x.mark.as_deref() == Some(mark)).filter_map(|x| fire_of(&x.exec)).collect();
        fires.extend(acked.as_deref());
        fires.sort_unstable();
        fires.dedup();
        match fires.as_slice() {
            [] => {}
            [one] => {
                fire_of_mark.insert(mark, one);
            }
            more => {
                r.duplicated += 1;
                r.violations.push(format!("{job}: the trigger marked {mark} made {} fires: {more:?}", more.len()));
            }
        }
    }
    let claimed: std::collections::HashSet<&str> = fire_of_mark.values().copied().collect();
    let mut fires: Vec<&str> = runs_of.keys().chain(recs_of.keys()).copied().collect();
    fires.extend(claimed.iter().copied());
    fires.sort_unstable();
    fires.dedup();
    let mut unclaimed_by_job: HashMap<&str, usize> = HashMap::new();
    for fire in fires {
        let job = fire.split_once('@').map_or(fire, |(j, _)| j);
        let runs = runs_of.get(fire).cloned().unwrap_or_default();
        let recs = recs_of.get(fire).cloned().unwrap_or_default();
        let mark = fire_of_mark.iter().find(|(_, f)| **f == fire).map(|(m, _)| *m);
        if mark.is_none() {
            *unclaimed_by_job.entry(job).or_default() += 1;
        }
        let job_marks = marks_of_job.get(job).cloned().unwrap_or_default();
        let aimed = mark.and_then(|m| h.trigger_targets.get(m));
        for run in &runs {
            let ok = match (mark, run.mark.as_deref()) {
                (Some(m), Some(got)) => m == got,
                (None, Some(got)) => job_marks.contains(&got),
                (_, None) => false,
            };
            if !ok {
                r.disagreeing += 1;
                r.violations.push(format!("{fire}: run {} on {} ran without its own arguments", run.exec, run.node));
            }
            // Aimed by target tags at one worker: run by it, never by another (or by a node).
            if let Some(w) = aimed.or_else(|| run.mark.as_deref().and_then(|m| h.trigger_targets.get(m))) {
                if run.worker.as_deref() != Some(w.as_str()) {
                    r.disagreeing += 1;
                    r.violations.push(format!(
                        "{fire}: run {} went to {}, not to the worker its target tags name ({w})",
                        run.exec,
                        run.worker.as_deref().unwrap_or(&run.node)
                    ));
                }
            }
        }
        if recs.iter().any(|x| !is_terminal(&x.state)) {
            continue; // counted by the check of open records
        }
        let succeeded: Vec<&&Record> = recs.iter().filter(|x| x.state == "succeeded").collect();
        // An aimed fire whose worker a fault took away (that worker, not another) waited for it
        // past the misfire threshold, as a job's fire for a worker its selector matches does, and
        // was recorded so.
        let waited_out = |x: &&Record| {
            let (from, to) = (x.sched_ms, x.end_ms.unwrap_or(i64::MAX));
            let hit = |f: &Fault| {
                aimed.is_some_and(|w| f.node.as_deref() == Some(w.as_str()))
                    && f.at_ms <= to + SLACK_MS
                    && f.until_ms.max(f.dead_ms.unwrap_or(0)) + SLACK_MS >= from
            };
            x.state == "misfired" && x.error.contains("no worker") && h.faults.iter().any(hit)
        };
        match succeeded.len() {
            1 => r.manual_executed += 1,
            0 if aimed.is_some() && recs.iter().any(waited_out) => r.lost_by_policy += 1,
            0 if lost_attempts(&recs) > MAX_RECOVERIES
                || (recs.iter().any(|x| x.state == "lost") && runs.len() > MAX_RECOVERIES) =>
            {
                r.lost_by_policy += 1
            }
            0 => {
                r.lost += 1;
                let states: Vec<&str> = recs.iter().map(|x| x.state.as_str()).collect();
                r.violations
                    .push(format!("{fire}: a manual fire not executed (records: {states:?}, runs: {})", runs.len()));
                continue;
            }
            n => {
                r.duplicated += 1;
                r.violations.push(format!("{fire}: {n} successful executions of one trigger"));
            }
        }
        let ok = succeeded.first().map(|x| x.exec.as_str());
        if let Some(ok) = ok {
            if run_by_exec.get(ok).is_none_or(|run| run.end_ms.is_none()) {
                r.disagreeing += 1;
                r.violations.push(format!("{fire}: rota says {ok} succeeded; the side log has no finished run"));
            }
        }
        for run in &runs {
            if Some(run.exec.as_str()) == ok {
                continue;
            }
            match rec_by_exec.get(run.exec.as_str()) {
                None => {
                    r.duplicated += 1;
                    r.violations.push(format!("{fire}: run {} on {} has no rota record", run.exec, run.node));
                }
                Some(_) => extra_run(h, r, fire, run, "beside its one success"),
            }
        }
    }
    // Fires no reply and no run names belong to triggers whose reply was lost: at most one each.
    for (job, n) in unclaimed_by_job {
        let unknown = h.triggers.iter().filter(|(j, m, _)| j == job && !fire_of_mark.contains_key(m.as_str())).count();
        if n > unknown {
            r.duplicated += 1;
            r.violations
                .push(format!("{job}: {n} manual fires no trigger names, for {unknown} triggers without a reply"));
        }
    }
}

fn in_window(h: &History, sched: i64) -> bool {
    sched >= h.window.0 && sched < h.window.1
}

#[allow(clippy::too_many_arguments)]
fn check_fire(
    h: &History,
    r: &mut Report,
    job: &JobInfo,
    fire: &str,
    runs_by_fire: &HashMap<String, Vec<&Run>>,
    recs_by_fire: &HashMap<String, Vec<&Record>>,
    rec_by_exec: &HashMap<&str, &Record>,
    run_by_exec: &HashMap<&str, &Run>,
) {
    let runs = runs_by_fire.get(fire).cloned().unwrap_or_default();
    let recs = recs_by_fire.get(fire).cloned().unwrap_or_default();
    if job.keep_last.is_some() {
        // Trimmed oldest first, a fire's records may be partly gone: its first attempt's but not
        // a later `superseded` evidence record (a newer id), or a dead attempt's but not its
        // re-run's. The side log judges a capped job's fires whole.
        check_trimmed_fire(h, r, fire, &runs);
        return;
    }
    let has = |s: &str| recs.iter().any(|x| x.state == s);
    // The state of a fire's one run that did its work.
    let done = if job.times_out { "timed_out" } else { "succeeded" };
    let succeeded: Vec<&&Record> = recs.iter().filter(|x| x.state == done).collect();
    if let Some(open) = recs.iter().find(|x| !is_terminal(&x.state)) {
        r.lost += 1;
        r.violations
            .push(format!("{fire}: execution {} on {} still '{}' after the run", open.exec, open.node, open.state));
        return;
    }
    // Cancelled: only what the runner asked, and never run again after (no retry, no re-run).
    let cancelled: Vec<&&Record> = recs.iter().filter(|x| x.state == "cancelled").collect();
    let replaced = |x: &Record| job.overlap == Concurrency::Replace && x.error.contains("replaced by a newer fire");
    for c in &cancelled {
        if !h.cancels.contains(&c.exec) && !replaced(c) {
            r.disagreeing += 1;
            r.violations.push(format!("{fire}: {} recorded cancelled ({}), which no one asked", c.exec, c.error));
        }
        // Execution ids sort by when they were made: a later attempt's is greater. Nothing of the
        // fire may run, or be recorded (but late evidence), after its cancel.
        for s in recs.iter().filter(|s| s.exec > c.exec && s.state != "superseded") {
            r.duplicated += 1;
            r.violations
                .push(format!("{fire}: cancelled as {}, then recorded again as {} ({})", c.exec, s.exec, s.state));
        }
        for run in runs.iter().filter(|x| x.exec > c.exec) {
            r.duplicated += 1;
            r.violations
                .push(format!("{fire}: cancelled as {}, then run again as {} on {}", c.exec, run.exec, run.node));
        }
        // A stopped run's handler does not reach its end after the record says it was cancelled.
        if let Some(run) = run_by_exec.get(c.exec.as_str()) {
            if run.end_ms.is_some_and(|e| e > c.end_ms.unwrap_or(i64::MAX) + SLACK_MS) {
                r.disagreeing += 1;
                r.violations.push(format!("{fire}: {} recorded cancelled, but its handler ran on to its end", c.exec));
            }
        }
    }
    match succeeded.len() {
        1 => r.executed += 1,
        0 if !cancelled.is_empty() && cancelled.iter().all(|c| replaced(c)) => r.replaced += 1,
        0 if !cancelled.is_empty() => r.cancelled += 1,
        0 if job.forbid && has("skipped") => {
            r.skipped_by_lock += 1;
            // Skipped in its policy's words (or its lock, held across a wait past its lease, gone).
            let why = match job.overlap {
                Concurrency::Buffer(_) => "already wait",
                Concurrency::Replace => "replaced by a newer fire",
                _ => "concurrency forbid",
            };
            for x in recs.iter().filter(|x| x.state == "skipped") {
                if !x.error.contains(why) && !x.error.contains("lock expired") {
                    r.disagreeing += 1;
                    r.violations.push(format!(
                        "{fire}: skipped, saying {:?}, not as its policy {:?} says",
                        x.error, job.overlap
                    ));
                }
            }
        }
        // A re-run job is given up (recorded lost) after the cluster's max recoveries (2): its
        // attempts recorded lost, not its side-log runs, since an attempt taken but not yet begun
        // when its node dies counts as begun (PROTOCOL 6.1 step 7) and never reaches the handler.
        0 if has("lost") && (!job.rerun || lost_attempts(&recs) > MAX_RECOVERIES || runs.len() > MAX_RECOVERIES) => {
            r.lost_by_policy += 1
        }
        0 if job.limit.is_some() && runs.is_empty() && recs.iter().any(|x| limit_misfire_under_fault(h, x)) => {
            r.misfired_by_limit += 1
        }
        0 => {
            r.lost += 1;
            let states: Vec<&str> = recs.iter().map(|x| x.state.as_str()).collect();
            r.violations.push(format!("{fire}: not executed (records: {states:?}, runs: {})", runs.len()));
            return;
        }
        n => {
            r.duplicated += 1;
            r.violations.push(format!("{fire}: {n} successful executions"));
        }
    }
    for rec in &succeeded {
        match run_by_exec.get(rec.exec.as_str()) {
            // Timed out: recorded only once the handler ended (unless its worker was hit, and the
            // node stopped waiting for it).
            Some(run)
                if job.times_out
                    && run.end_ms.unwrap_or(i64::MAX) > rec.end_ms.unwrap_or(0) + SLACK_MS
                    && fault_during(h, run).is_none() =>
            {
                r.disagreeing += 1;
                r.violations.push(format!(
                    "{fire}: rota recorded {} timed out at {:?}, before its handler ended at {:?}",
                    rec.exec, rec.end_ms, run.end_ms
                ));
            }
            Some(run) if run.end_ms.is_some() => {}
            // Timed out, then its worker (or node) went before the handler ended: the node stopped
            // waiting and recorded the timeout.
            Some(run) if job.times_out && fault_during(h, run).is_some_and(|f| f.node.is_some()) => {}
            // Timed out on a worker that never began it (paused as the fire was pushed), which a
            // fault on an external worker explains (the record does not name the worker).
            None if job.times_out && worker_fault_between(h, rec.sched_ms, rec.end_ms.unwrap_or(i64::MAX)) => {}
            _ => {
                r.disagreeing += 1;
                r.violations
                    .push(format!("{fire}: rota says {} succeeded; the side log has no finished run", rec.exec));
            }
        }
    }
    for run in &runs {
        let Some(rec) = rec_by_exec.get(run.exec.as_str()) else {
            // A run rota has no record of at all: a second execution rota does not know about.
            r.duplicated += 1;
            r.violations.push(format!("{fire}: run {} on {} has no rota record", run.exec, run.node));
            continue;
        };
        // A cancelled execution's own run (begun, then stopped) is the fire's one run.
        if rec.state == done || rec.state == "skipped" || rec.state == "cancelled" {
            continue;
        }
        extra_run(h, r, fire, run, &format!("recorded '{}'", rec.state));
    }
}

/// A run beyond a fire's one successful run: explained by a fault that hit its node (or Redis)
/// while it ran, or a duplicate (`what` says what makes it extra).
fn extra_run(h: &History, r: &mut Report, fire: &str, run: &Run, what: &str) {
    if let Some(f) = fault_during(h, run) {
        r.explained_extra_runs += 1;
        if f.node.is_none() {
            r.explained_by_redis_alone += 1;
            r.redis_explained.push(format!("{fire}: run {} on {} {what}, during {}", run.exec, run.node, f.kind));
        }
    } else {
        r.duplicated += 1;
        r.violations.push(format!("{fire}: run {} on {} {what} with no fault to explain it", run.exec, run.node));
    }
}

/// A fire of a capped job, whose records the cap deletes: the side log alone says whether it ran
/// once. At least one finished run; one run needs no explanation (the fire's own) and every other
/// must have a fault on its node to explain it (which of two runs was the extra one the records no
/// longer say); no finished run at all is a lost fire unless it was re-run past the recoveries.
fn check_trimmed_fire(h: &History, r: &mut Report, fire: &str, runs: &[&Run]) {
    r.trimmed += 1;
    if runs.iter().all(|x| x.end_ms.is_none()) {
        if runs.len() > MAX_RECOVERIES {
            r.lost_by_policy += 1;
        } else {
            r.lost += 1;
            r.violations.push(format!("{fire}: not executed (records trimmed by its cap; runs: {})", runs.len()));
        }
        return;
    }
    r.executed += 1;
    let unexplained: Vec<&&Run> = runs.iter().filter(|x| fault_during(h, x).is_none()).collect();
    r.explained_extra_runs += runs.len() - unexplained.len().max(1);
    for run in unexplained.iter().skip(1) {
        r.duplicated += 1;
        r.violations.push(format!(
            "{fire}: run {} on {} is a second run (records trimmed by its cap) with no fault to explain it",
            run.exec, run.node
        ));
    }
}

fn is_terminal(state: &str) -> bool {
    !matches!(state, "pending" | "running" | "dispatching" | "queued" | "")
}

/// A fault that hit the run's node or worker (or else Redis) while it ran (open end: any later
/// fault).
fn fault_during<'a>(h: &'a History, run: &Run) -> Option<&'a Fault> {
    let (start, end) = (run.start_ms, run.end_ms);
    let hit = |f: &&Fault| f.node.as_deref() == Some(run.node.as_str()) || (f.node.is_some() && f.node == run.worker);
    let during = |f: &&Fault| {
        // A lost reply never explains an extra run: every script is safe to call again. Nor does
        // the history store going down: it is off the fire's path.
        !f.kind.starts_with("lost_reply")
            && f.kind != "restart_postgres"
            && f.at_ms <= end.map_or(i64::MAX, |e| e + SLACK_MS)
            && f.until_ms.max(f.dead_ms.unwrap_or(0)) + SLACK_MS >= start
    };
    h.faults
        .iter()
        .filter(during)
        .find(hit)
        .or_else(|| h.faults.iter().filter(during).find(|f| f.node.is_none() && h.redis_faults_explain))
}

fn check_epochs(r: &mut Report, job: &JobInfo, runs: &mut [&Run]) {
    // A backfill's fire is made by the node asked, not claimed by a master: it carries no epoch
    // (0), and fences nothing. The claim it races finds its fire made, and runs nothing.
    let runs: &mut Vec<&Run> = &mut runs.iter().copied().filter(|x| x.epoch > 0).collect();
    runs.sort_by_key(|x| (x.sched_ms, x.epoch));
    let mut high: Option<&Run> = None;
    for run in runs.iter() {
        if let Some(h) = high {
            if run.epoch < h.epoch && run.sched_ms > h.sched_ms {
                r.stale_epoch += 1;
                r.violations.push(format!(
                    "{}@{}: claimed by epoch {} after epoch {} had fired {}@{}",
                    job.id, run.sched_ms, run.epoch, h.epoch, job.id, h.sched_ms
                ));
                continue;
            }
        }
        if high.is_none_or(|h| run.epoch >= h.epoch) {
            high = Some(run);
        }
    }
}

/// A master-only run must start on the node that held its shard's lease at that moment: the
/// claiming master, or a later one that recovered the fire. An epoch is taken from Redis's clock in ms at
/// acquisition (or just above the previous one), so a node holds the lease from about its epoch
/// value to the next epoch's; the poller only says which node each epoch belongs to (its own
/// sighting times lag by up to a poll under faults).
fn check_master_only(h: &History, r: &mut Report, shard: u16, runs: &[&Run]) {
    const GAP_MS: i64 = 250;
    let none = BTreeMap::new();
    let of_shard = h.masters.get(&shard).unwrap_or(&none);
    let leases: Vec<(&str, i64)> = of_shard.iter().map(|(e, (n, _))| (n.as_str(), *e as i64)).collect();
    for run in runs {
        let t = run.start_ms;
        let ok = leases.iter().enumerate().any(|(i, (node, from))| {
            let to = leases.get(i + 1).map_or(i64::MAX, |(_, next)| next + GAP_MS);
            *node == run.node && from - GAP_MS <= t && t <= to
        });
        if !ok {
            r.master_only_elsewhere += 1;
            r.violations.push(format!(
                "{}@{}: master-only job ran on {} at {t}, which did not hold the lease then",
                run.job, run.sched_ms, run.node
            ));
        }
    }
}

fn check_overlap(h: &History, r: &mut Report, job: &JobInfo, runs: &mut [&Run], recs: &HashMap<&str, &Record>) {
    runs.sort_by_key(|x| x.start_ms);
    let mut busy_until: Option<(i64, &Run)> = None;
    for run in runs.iter() {
        if let Some((until, prev)) = busy_until {
            // A fault on an external worker (paused past its session's TTL, killed) or on its
            // node ended its session while its handler, which may ignore cancels, went on (or, a
            // paused worker, had not begun: it starts the handler when it resumes): the node gave
            // the fire to its policy meanwhile. Fencing does not reach into a worker's process.
            let hit = |x: &Run| x.worker.is_some() && fault_during(h, x).is_some_and(|f| f.node.is_some());
            let worker_hit = hit(prev) || hit(run);
            // A `rerun` job's fire re-run while its first run went on, on a node a fault took
            // away (paused past its TTL, cut off): the extra run `check_fire` explains, of the
            // same fire. Runs of two fires never overlap by it.
            let rerun_of_same_fire = job.rerun
                && prev.sched_ms == run.sched_ms
                && fault_during(h, prev).is_some_and(|f| f.node.as_deref() == Some(prev.node.as_str()));
            if run.start_ms + SLACK_MS < until && !worker_hit && !rerun_of_same_fire {
                r.overlapping += 1;
                r.violations.push(format!(
                    "{}: run {} ({}@{} on {}) started while {} ({}@{} on {}) still ran",
                    job.id, run.exec, job.id, run.sched_ms, run.node, prev.exec, job.id, prev.sched_ms, prev.node
                ));
            }
        }
        let process = run.worker.as_deref().unwrap_or(&run.node);
        // A run stopped by a cancel (or a replacing fire) was dropped without an end line: it ended
        // by the time its record says it was cancelled.
        let stopped = recs.get(run.exec.as_str()).filter(|x| x.state == "cancelled").and_then(|x| x.end_ms);
        let end = run.end_ms.or(stopped).unwrap_or_else(|| death_after(h, process, run.start_ms).unwrap_or(i64::MAX));
        if busy_until.is_none_or(|(u, _)| end > u) {
            busy_until = Some((end, run));
        }
    }
}

/// The concurrency limit: at no moment are more runs of its jobs under way (by the side log) than
/// it lets run. A run ends at its end line, or, with none, when its record says it was stopped or
/// its process died; a run that a fault hit (its node paused past its slot's lease, say, while its
/// handler went on) is not counted, as it explains an overlap.
fn check_limit(h: &History, r: &mut Report, recs: &HashMap<&str, &Record>) {
    let Some(max) = h.jobs.iter().find_map(|j| j.limit) else { return };
    let limited: std::collections::HashSet<&str> =
        h.jobs.iter().filter(|j| j.limit.is_some()).map(|j| j.id.as_str()).collect();
    let mut events: Vec<(i64, i32, &str)> = Vec::new();
    for run in h.runs.iter().filter(|x| limited.contains(x.job.as_str()) && x.sched_ms < h.window.1) {
        if fault_during(h, run).is_some() {
            continue;
        }
        let stopped = recs.get(run.exec.as_str()).filter(|x| x.state == "cancelled").and_then(|x| x.end_ms);
        let end = run.end_ms.or(stopped).or_else(|| death_after(h, &run.node, run.start_ms)).unwrap_or(i64::MAX);
        events.push((run.start_ms, 1, run.exec.as_str()));
        // The side log's times come from several processes' clocks (each corrected to Redis's):
        // a run is counted to its end less that slack.
        events.push((end.saturating_sub(SLACK_MS), -1, run.exec.as_str()));
    }
    // An end sorts before a start at the same ms (the slot is given back before the next takes it).
    events.sort_by_key(|(t, d, _)| (*t, *d));
    let (mut running, mut over) = (Vec::new(), false);
    for (t, d, exec) in events {
        if d < 0 {
            running.retain(|x| *x != exec);
            over = running.len() > max;
            continue;
        }
        running.push(exec);
        r.most_limited = r.most_limited.max(running.len());
        if running.len() > max && !over {
            r.over_limit += 1;
            r.violations.push(format!("limit: {} runs under way at {t}, over its {max}: {running:?}", running.len()));
            over = true;
        }
    }
}

/// Whether a fault hit an external worker (not a node, not Redis) between `from` and `to`.
/// A record of a fire that waited for a limit's slot past the misfire threshold while a fault (but
/// the history store's) was under way: from the fire's instant to its misfire.
fn limit_misfire_under_fault(h: &History, x: &Record) -> bool {
    x.state == "misfired"
        && x.error.contains("for a slot of limit")
        && h.faults.iter().any(|f| {
            f.kind != "restart_postgres"
                && f.at_ms <= x.end_ms.unwrap_or(i64::MAX) + SLACK_MS
                && f.until_ms.max(f.dead_ms.unwrap_or(0)) + SLACK_MS >= x.sched_ms
        })
}

fn worker_fault_between(h: &History, from: i64, to: i64) -> bool {
    let workers: Vec<&str> = h.runs.iter().filter_map(|r| r.worker.as_deref()).collect();
    h.faults.iter().any(|f| {
        f.node.as_deref().is_some_and(|n| workers.contains(&n))
            && f.at_ms <= to + SLACK_MS
            && f.until_ms.max(f.dead_ms.unwrap_or(0)) + SLACK_MS >= from
    })
}

/// When a process that ran something from `start` on was last seen alive: the first fault after
/// `start` that ended it.
fn death_after(h: &History, node: &str, start: i64) -> Option<i64> {
    h.faults
        .iter()
        .filter(|f| f.node.as_deref() == Some(node))
        .filter_map(|f| f.dead_ms.filter(|d| *d + SLACK_MS >= start))
        .min()
}

/// For each fault that hit the master: from the fault to the first run claimed by a newer epoch.
/// For each fault on shard 0's master: how long until a run under a higher epoch of that shard
/// started (other shards' epochs are their own).
fn failovers(h: &History) -> Vec<i64> {
    let mut out = Vec::new();
    let shard0: Vec<&str> = h.jobs.iter().filter(|j| j.shard == 0).map(|j| j.id.as_str()).collect();
    // Only faults that take the master away: a reply lost on the master, or a slow gRPC port,
    // leaves it master, and the next higher epoch (the next real failover's) would be counted as
    // this fault's failover time.
    for f in h.faults.iter().filter(|f| f.was_master && takes_the_master_away(&f.kind)) {
        let first = h
            .runs
            .iter()
            .filter(|x| shard0.contains(&x.job.as_str()))
            .filter(|x| x.epoch > f.epoch_before && x.start_ms >= f.at_ms)
            .map(|x| x.start_ms)
            .min();
        if let Some(t) = first {
            out.push(t - f.at_ms);
        }
    }
    out
}

/// Faults after which the master's process is gone or cut off until its lease runs out: killed,
/// paused, restarted, partitioned from Redis, or killed at a failpoint.
fn takes_the_master_away(kind: &str) -> bool {
    matches!(kind, "kill_master" | "pause_master" | "restart_node" | "partition") || kind.starts_with("failpoint:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, forbid: bool, master_only: bool) -> JobInfo {
        JobInfo {
            id: id.into(),
            period_ms: 1000,
            phase_ms: 0,
            forbid,
            overlap: if forbid { Concurrency::Forbid } else { Concurrency::Allow },
            master_only,
            rerun: false,
            only_on: Vec::new(),
            keep_last: None,
            shard: 0,
            times_out: false,
            limit: None,
            priority: rota::job::Priority::Normal,
            shards: rota::job::Shards::One,
            after_previous_ms: None,
            jitter_ms: None,
            calendar: None,
        }
    }

    fn run(job: &str, sched_s: i64, exec: &str, node: &str, epoch: u64, dur: i64) -> Run {
        let sched_ms = sched_s * 1000;
        Run {
            job: job.into(),
            sched_ms,
            exec: exec.into(),
            node: node.into(),
            epoch,
            attempt: 1,
            start_ms: sched_ms + 5,
            end_ms: Some(sched_ms + 5 + dur),
            worker: None,
            mark: None,
        }
    }

    fn rec(r: &Run, state: &str) -> Record {
        Record {
            exec: r.exec.clone(),
            job: r.job.clone(),
            sched_ms: r.sched_ms,
            state: state.into(),
            node: r.node.clone(),
            manual: false,
            end_ms: r.end_ms.map(|e| e + 2),
            error: String::new(),
            retried: false,
        }
    }

    /// Three jobs over ten seconds, every fire run once, successfully; n1 master from 99.0 s
    /// (epoch 99000), n2 from 104.9 s.
    fn clean() -> History {
        let jobs = vec![job("a", false, false), job("f", true, false), job("m", false, true)];
        let mut runs = Vec::new();
        for s in 100..110 {
            let (node, epoch) = if s < 105 { ("n1", 99_000) } else { ("n2", 104_900) };
            runs.push(run("a", s, &format!("a{s}"), "n3", epoch, 20));
            runs.push(run("f", s, &format!("f{s}"), "n3", epoch, 500));
            runs.push(run("m", s, &format!("m{s}"), node, epoch, 10));
        }
        let records = runs.iter().map(|r| rec(r, "succeeded")).collect();
        History {
            jobs,
            runs,
            records,
            faults: vec![],
            masters: [(0, [(99_000, ("n1".to_string(), 99_100)), (104_900, ("n2".to_string(), 105_000))].into())]
                .into(),
            window: (100_000, 110_000),
            late_bound_ms: 5000,
            redis_faults_explain: true,
            cancels: Default::default(),
            triggers: Vec::new(),
            trigger_targets: Default::default(),
        }
    }

    /// A calendar excluding [103.5 s, 106 s) of a 1 s grid at phase 0: skip records 104 and 105
    /// skipped in its words and runs neither; omit leaves no trace; forward fires once at 106 (its
    /// own instant on this grid, judged as a fire). A run inside the window, a missing or wrong
    /// skip record, a trace of an omitted fire, or a fire off the grid is caught.
    #[test]
    fn a_calendar_job_skips_omits_or_forwards_the_instants_of_its_windows() {
        use rota::job::calendar::OnExcluded;
        let with = |on: OnExcluded, runs_at: &[i64], skip_recs: &[(i64, &str)]| {
            let mut h = clean();
            let cal = CalendarRule { name: "c".into(), on, windows: vec![(103_500, 106_000)] };
            h.jobs = vec![JobInfo { calendar: Some(cal), ..job("k", false, false) }];
            h.runs = runs_at.iter().map(|s| run("k", *s, &format!("k{s}"), "n3", 99_000, 20)).collect();
            h.records = h.runs.iter().map(|r| rec(r, "succeeded")).collect();
            for (s, error) in skip_recs {
                let mut x = rec(&run("k", *s, &format!("k{s}s"), "n1", 99_000, 0), "skipped");
                x.error = error.to_string();
                h.records.push(x);
            }
            check(&h)
        };
        let around = [100, 101, 102, 103, 106, 107, 108, 109];
        let r = with(OnExcluded::Skip, &around, &[(104, "skipped: calendar c"), (105, "skipped: calendar c")]);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!((r.calendar_skipped, r.executed), (2, 8));
        let r = with(OnExcluded::Omit, &around, &[]);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.calendar_omitted, 2);
        let r = with(OnExcluded::Forward, &around, &[]);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.calendar_forwarded, 1);
        // Broken: a run in the window; a skip record missing, or in other words; a record of an
        // omitted fire.
        // (A run in the window: it ran, and its record joins the skip's.)
        let skips = [(104, "skipped: calendar c"), (105, "skipped: calendar c")];
        let r = with(OnExcluded::Skip, &[100, 101, 102, 103, 104, 106, 107, 108, 109], &skips);
        assert_eq!(r.calendar_broken, 2, "{:?}", r.violations);
        let r = with(OnExcluded::Skip, &around, &[(104, "skipped: calendar c")]);
        assert_eq!(r.lost, 1, "{:?}", r.violations);
        let r = with(OnExcluded::Skip, &around, &[(104, "skipped: calendar c"), (105, "skipped: lock")]);
        assert_eq!(r.calendar_broken, 1, "{:?}", r.violations);
        let r = with(OnExcluded::Omit, &around, &[(105, "skipped: calendar c")]);
        assert_eq!(r.calendar_broken, 1, "{:?}", r.violations);
        // A fire off the grid (at 104.5 s).
        let mut h = clean();
        let cal = CalendarRule { name: "c".into(), on: OnExcluded::Forward, windows: vec![(103_500, 106_000)] };
        h.jobs = vec![JobInfo { calendar: Some(cal), ..job("k", false, false) }];
        h.runs = around.iter().map(|s| run("k", *s, &format!("k{s}"), "n3", 99_000, 20)).collect();
        let mut stray = run("k", 104, "kx", "n3", 99_000, 20);
        stray.sched_ms += 500;
        h.runs.push(stray);
        h.records = h.runs.iter().map(|r| rec(r, "succeeded")).collect();
        let r = check(&h);
        assert_eq!(r.calendar_broken, 1, "{:?}", r.violations);
        // A window that ends at the judged window's start: its fire moved to 100 s is judged as a
        // fire, not a stray, though the instants it came from are before the window.
        let mut h = clean();
        let cal = CalendarRule { name: "c".into(), on: OnExcluded::Forward, windows: vec![(98_500, 100_000)] };
        h.jobs = vec![JobInfo { calendar: Some(cal), phase_ms: 500, ..job("k", false, false) }];
        let mut runs: Vec<Run> = (100..110)
            .map(|s| {
                let mut x = run("k", s, &format!("k{s}"), "n3", 99_000, 20);
                x.sched_ms += 500;
                x
            })
            .collect();
        runs.push(run("k", 100, "kf", "n3", 99_000, 20));
        h.records = runs.iter().map(|r| rec(r, "succeeded")).collect();
        h.runs = runs;
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.calendar_forwarded, 1);
    }

    /// An `after_previous` chain (runs of 300 ms, a delay of 1 s): each fire at its predecessor's
    /// recorded end plus the delay passes; one that begins sooner is caught, as is a stall (a fire
    /// that came 8 s late, or none at all) unless a fault came between.
    #[test]
    fn a_chain_follows_each_end_by_its_delay_and_never_stalls_without_a_fault() {
        let chain = |starts: &[i64]| {
            let mut h = clean();
            h.jobs = vec![JobInfo { after_previous_ms: Some(1000), forbid: true, ..job("c", false, false) }];
            h.runs = starts
                .iter()
                .map(|t| Run {
                    sched_ms: *t,
                    start_ms: *t + 5,
                    end_ms: Some(*t + 305),
                    ..run("c", 0, &format!("c{t}"), "n3", 99_000, 0)
                })
                .collect();
            h.records = h.runs.iter().map(|r| rec(r, "succeeded")).collect();
            h
        };
        // Each record ends 307 ms after its instant: the next is 1,307 ms later.
        let good: Vec<i64> = (0..7).map(|i| 100_000 + i * 1307).collect();
        let r = check(&chain(&good));
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.fires_expected, 7);
        let mut early = good.clone();
        early[3] -= 200;
        let r = check(&chain(&early));
        assert_eq!(r.chain_early, 1, "{:?}", r.violations);
        let mut stalled = good.clone();
        stalled.truncate(3);
        stalled.push(good[2] + 1307 + 8000);
        let r = check(&chain(&stalled));
        assert_eq!(r.chain_stalled, 1, "{:?}", r.violations);
        let r = check(&chain(&good[..3]));
        assert_eq!(r.chain_stalled, 1, "the chain stopped: {:?}", r.violations);
        let mut h = chain(&stalled);
        h.faults.push(Fault {
            kind: "kill_master".into(),
            node: Some("n1".into()),
            at_ms: good[2] + 500,
            until_ms: good[2] + 4000,
            dead_ms: Some(good[2] + 600),
            was_master: true,
            epoch_before: 99_000,
        });
        let r = check(&h);
        assert!(r.violations.is_empty(), "a fault between explains the wait: {:?}", r.violations);
    }

    /// A jittered job's runs start no sooner than their fire's own jitter after its instant: runs
    /// that wait it out pass; ones that start at once are caught (unless the jitter is under the
    /// slack).
    #[test]
    fn a_jittered_run_never_starts_before_its_jitter() {
        let mut h = clean();
        h.jobs[0].jitter_ms = Some(700);
        let jitter = |x: &Run| rota::job::schedule::fire_jitter_ms(&format!("a@{}", x.sched_ms), 700) as i64;
        let early = h.runs.iter().filter(|x| x.job == "a" && jitter(x) > SLACK_MS + 5).count();
        assert!(early > 0);
        let r = check(&h);
        assert_eq!(r.early_for_jitter, early, "{:?}", r.violations);
        for x in h.runs.iter_mut().filter(|x| x.job == "a") {
            let j = jitter(x);
            x.start_ms = x.sched_ms + j + 3;
            x.end_ms = Some(x.start_ms + 20);
        }
        h.records = h.runs.iter().map(|x| rec(x, "succeeded")).collect();
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
    }

    /// A `rerun` job's fire whose first run went on while a fault had taken its node away (paused
    /// past its TTL) and the fire was re-run elsewhere: the two runs of that one fire may overlap
    /// (the extra run is explained); without the fault, the overlap is caught.
    #[test]
    fn a_rerun_of_the_same_fire_overlaps_its_first_run_only_under_a_fault() {
        let rerun = |fault: bool| {
            let mut h = clean();
            h.jobs = vec![JobInfo { rerun: true, ..job("f", true, false) }];
            h.runs.retain(|x| x.job == "f" && x.sched_ms != 105_000);
            let first = Run { end_ms: Some(106_500), ..run("f", 105, "f105a", "n1", 99_000, 0) };
            let again = Run { start_ms: 105_900, end_ms: Some(106_000), ..run("f", 105, "f105b", "n2", 99_000, 0) };
            h.records = h.runs.iter().map(|r| rec(r, "succeeded")).collect();
            h.records.push(rec(&first, "superseded"));
            h.records.push(rec(&again, "succeeded"));
            // f@106 starts at 106.005 s: after the re-run, while the first run still went on.
            h.runs.retain(|x| x.sched_ms != 106_000);
            h.records.retain(|x| x.sched_ms != 106_000);
            h.runs.extend([first, again]);
            if fault {
                h.faults.push(Fault {
                    kind: "pause_master".into(),
                    node: Some("n1".into()),
                    at_ms: 105_200,
                    until_ms: 106_400,
                    dead_ms: None,
                    was_master: false,
                    epoch_before: 99_000,
                });
            }
            check(&h)
        };
        let r = rerun(true);
        assert_eq!(r.overlapping, 0, "{:?}", r.violations);
        let r = rerun(false);
        assert!(r.overlapping >= 1, "{:?}", r.violations);
    }

    /// A limited job's fire that waited past the misfire threshold for a slot is the limit's
    /// policy while a fault (a Redis outage here) was under way in its wait; with no fault, lost.
    #[test]
    fn a_limit_misfire_passes_only_under_a_fault() {
        let mut h = clean();
        h.jobs.push(JobInfo { limit: Some(2), period_ms: 4000, ..job("l", false, false) });
        for s in [100, 104, 108] {
            let x = run("l", s, &format!("l{s}"), "n3", 99_000, 20);
            if s == 104 {
                let mut m = rec(&x, "misfired");
                m.end_ms = Some(164_000);
                m.error =
                    "misfired: waited past the misfire threshold for a slot of limit chaos (2 of 2 running)".into();
                h.records.push(m);
            } else {
                h.records.push(rec(&x, "succeeded"));
                h.runs.push(x);
            }
        }
        let r = check(&h);
        assert!(r.violations.iter().any(|v| v.contains("l@104000: not executed")), "{:?}", r.violations);
        h.faults.push(Fault {
            kind: "restart_redis".into(),
            node: None,
            at_ms: 130_000,
            until_ms: 140_000,
            dead_ms: None,
            was_master: false,
            epoch_before: 99_000,
        });
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.misfired_by_limit, 1);
    }

    /// A re-run job's fire recorded lost once per allowed attempt (1 and 2 recoveries) is lost by
    /// policy even when one attempt never reached its handler (taken, not begun, when its node died);
    /// lost twice, with a recovery left, it is a lost fire.
    #[test]
    fn a_rerun_fire_lost_past_its_recoveries_is_lost_by_policy() {
        let mut h = clean();
        h.jobs.push(JobInfo { rerun: true, ..job("r", false, false) });
        let runs: Vec<Run> = (0..2).map(|i| run("r", 104, &format!("r104-{i}"), "n3", 99_000, 20)).collect();
        for (i, x) in runs.iter().enumerate() {
            h.runs.push(Run { attempt: i as u32 + 1, end_ms: None, ..x.clone() });
        }
        let mut recs: Vec<Record> = runs.iter().map(|x| rec(x, "lost")).collect();
        let third = Record { exec: "r104-2".into(), ..recs[0].clone() };
        recs.push(third);
        for s in 100..110 {
            if s != 104 {
                let x = run("r", s, &format!("r{s}"), "n3", 99_000, 20);
                h.records.push(rec(&x, "succeeded"));
                h.runs.push(x);
            }
        }
        h.records.extend(recs.clone());
        // Its node killed under each run (what explains them, and what lost them).
        h.faults.push(Fault {
            kind: "kill_worker".into(),
            node: Some("n3".into()),
            at_ms: 104_000,
            until_ms: 104_100,
            dead_ms: None,
            was_master: false,
            epoch_before: 99_000,
        });
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.lost_by_policy, 1);
        // Two attempts lost, one recovery left: lost.
        h.records.retain(|x| x.exec != "r104-2");
        let r = check(&h);
        assert!(r.violations.iter().any(|v| v.contains("r@104000: not executed")), "{:?}", r.violations);
    }

    /// A manual fire with arguments of its own: run once with them passes; a run of it without
    /// them, or the mark firing twice, is a violation.
    #[test]
    fn a_manual_fire_runs_once_and_with_its_own_arguments() {
        let mut h = clean();
        let mut m = run("a", 103, "s1~a@m:s0", "n1", 0, 20);
        m.sched_ms += 123;
        m.mark = Some("mk1".into());
        h.runs.push(m.clone());
        h.records.push(Record { manual: true, ..rec(&m, "succeeded") });
        h.triggers.push(("a".into(), "mk1".into(), Some("a@m:s0".into())));
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!((r.manual_triggered, r.manual_executed), (1, 1));
        // A re-run of it that lost its arguments.
        let mut bare = m.clone();
        bare.exec = "s2~a@m:s0".into();
        bare.mark = None;
        h.runs.push(bare.clone());
        h.records.push(Record { manual: true, ..rec(&bare, "failed") });
        let r = check(&h);
        assert!(r.violations.iter().any(|v| v.contains("ran without its own arguments")), "{:?}", r.violations);
        // The mark fired twice.
        h.runs.pop();
        h.records.pop();
        let mut twice = m.clone();
        twice.exec = "s3~a@m:s9".into();
        h.runs.push(twice);
        let r = check(&h);
        assert!(r.violations.iter().any(|v| v.contains("made 2 fires")), "{:?}", r.violations);
        // A manual fire no trigger names (its reply lost, or made twice), run without arguments.
        h.runs.pop();
        let stray = run("a", 104, "s5~a@m:s7", "n2", 0, 20);
        h.runs.push(stray.clone());
        h.records.push(Record { manual: true, ..rec(&stray, "succeeded") });
        let r = check(&h);
        assert!(
            r.violations.iter().any(|v| v.contains("s5~a@m:s7 on n2 ran without its own arguments")),
            "{:?}",
            r.violations
        );
        assert!(
            r.violations.iter().any(|v| v.contains("1 manual fires no trigger names, for 0")),
            "{:?}",
            r.violations
        );
        // Recorded succeeded with no finished run behind it.
        h.runs.pop();
        h.records.pop();
        h.runs.iter_mut().filter(|x| x.exec == "s1~a@m:s0").for_each(|x| x.end_ms = None);
        let r = check(&h);
        assert!(r.violations.iter().any(|v| v.contains("the side log has no finished run")), "{:?}", r.violations);
    }

    /// A manual fire aimed at a worker by target tags: run by that worker passes; by another is a
    /// violation; misfired for want of a worker passes only while a fault had taken workers away.
    #[test]
    fn an_aimed_manual_fire_runs_on_its_worker_or_waits_it_out_only_under_a_fault() {
        let mut h = clean();
        let mut m = run("a", 103, "s1~a@m:s0", "n1", 0, 20);
        m.mark = Some("mk1".into());
        m.worker = Some("w1".into());
        h.runs.push(m.clone());
        h.records.push(Record { manual: true, ..rec(&m, "succeeded") });
        h.triggers.push(("a".into(), "mk1".into(), Some("a@m:s0".into())));
        h.trigger_targets.insert("mk1".into(), "w1".into());
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        let mut elsewhere = h.clone();
        elsewhere.runs.last_mut().expect("run").worker = Some("w2".into());
        let r = check(&elsewhere);
        assert!(
            r.violations.iter().any(|v| v.contains("went to w2, not to the worker its target tags name (w1)")),
            "{:?}",
            r.violations
        );
        // Misfired, no worker: a violation, unless a fault hit a worker meanwhile.
        let mut waited = h.clone();
        waited.runs.pop();
        let rec_m = waited.records.last_mut().expect("record");
        rec_m.state = "misfired".into();
        rec_m.error = "misfired: no worker for handler 'py.chaos' with tags pool=w1".into();
        waited.runs.push(run("b", 100, "x1", "n2", 99_000, 10));
        waited.runs.last_mut().expect("run").worker = Some("w1".into());
        let r = check(&waited);
        assert!(r.violations.iter().any(|v| v.contains("a manual fire not executed")), "{:?}", r.violations);
        let fault = |worker: &str| Fault {
            kind: "kill_ext_worker".into(),
            node: Some(worker.into()),
            at_ms: 103_010,
            until_ms: 103_100,
            dead_ms: None,
            was_master: false,
            epoch_before: 0,
        };
        // A fault on another worker excuses nothing.
        waited.faults.push(fault("w2"));
        let r = check(&waited);
        assert!(r.violations.iter().any(|v| v.contains("a manual fire not executed")), "{:?}", r.violations);
        waited.faults.push(fault("w1"));
        let r = check(&waited);
        assert!(!r.violations.iter().any(|v| v.contains("a manual fire not executed")), "{:?}", r.violations);
    }

    /// A cancelled fire is neither lost nor run twice when the runner asked for it; a `cancelled`
    /// record no one asked for, or a run again after the cancel, is a violation.
    #[test]
    fn a_cancel_is_held_to_what_was_asked_and_ends_the_fire() {
        let mut h = clean();
        let i = h.records.iter().position(|x| x.exec == "a103").expect("a103");
        h.records[i].state = "cancelled".into();
        let unasked = check(&h);
        assert_eq!(unasked.violations.len(), 1, "{:?}", unasked.violations);
        assert!(unasked.violations[0].contains("which no one asked"), "{:?}", unasked.violations);
        h.cancels.insert("a103".into());
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!((r.cancelled, r.lost, r.duplicated), (1, 0, 0));
        // Run again after its cancel (a later execution that succeeded).
        let mut again = h.runs.iter().find(|x| x.exec == "a103").expect("run").clone();
        again.exec = "a103-again".into();
        h.runs.push(again.clone());
        h.records.push(rec(&again, "succeeded"));
        let r = check(&h);
        assert!(r.violations.iter().any(|v| v.contains("then run again as a103-again")), "{:?}", r.violations);
    }

    /// The failover time counts faults that take the master away, not a reply lost on it (which
    /// would count up to the next real failover's first run).
    #[test]
    fn failover_time_counts_only_faults_that_take_the_master_away() {
        let mut h = clean();
        let fault = |kind: &str, at_ms| Fault {
            kind: kind.into(),
            node: Some("n1".into()),
            at_ms,
            until_ms: at_ms + 100,
            dead_ms: None,
            was_master: true,
            epoch_before: 99_000,
        };
        h.faults.push(fault("lost_reply:lose_reap_reply", 100_500));
        h.faults.push(fault("kill_master", 104_000));
        let r = check(&h);
        // The first run at epoch 104,900 starts at 105,005: 1,005 ms after the kill.
        assert_eq!(r.failover_ms, vec![1_005], "{:?}", r.failover_ms);
    }

    #[test]
    fn a_clean_history_passes() {
        let r = check(&clean());
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!((r.fires_expected, r.executed), (30, 30));
    }

    /// A sharded job's instant is one fire per shard, each judged alone: every shard run once
    /// passes; a shard never run is lost, one run twice is duplicated; a `PerNode` job's total is
    /// what its fire ids say, and fire ids that disagree on it are caught.
    #[test]
    fn each_shard_of_a_sharded_instant_is_judged_as_a_fire() {
        let sharded = |shards: rota::job::Shards, per: &[u32]| {
            let mut h = clean();
            h.jobs = vec![JobInfo { shards, ..job("s", false, false) }];
            h.runs.clear();
            for sec in 100..110 {
                let n = per[(sec - 100) as usize % per.len()];
                for i in 0..n {
                    let exec = format!("0190aaaa-bbbb-7ccc~s@{}/{i}of{n}", sec * 1000);
                    h.runs.push(run("s", sec, &exec, "n1", 99_000, 10));
                }
            }
            h.records = h.runs.iter().map(|r| rec(r, "succeeded")).collect();
            h
        };
        let h = sharded(rota::job::Shards::Count(3), &[3]);
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!((r.fires_expected, r.executed), (30, 30));
        // A shard missing, another run twice.
        let mut bad = h.clone();
        bad.runs.retain(|x| !x.exec.ends_with("s@101000/2of3"));
        bad.records.retain(|x| !x.exec.ends_with("s@101000/2of3"));
        let again = run("s", 102, "0190aaaa-bbbb-7ccd~s@102000/1of3", "n2", 99_000, 10);
        bad.records.push(rec(&again, "succeeded"));
        bad.runs.push(again);
        let r = check(&bad);
        assert_eq!((r.lost, r.duplicated), (1, 1), "{:?}", r.violations);
        assert!(r.violations.iter().any(|v| v.starts_with("s@101000/2of3: not executed")), "{:?}", r.violations);
        // Per node: three shards while three nodes lived, two after; all judged by their ids.
        let h = sharded(rota::job::Shards::PerNode, &[3, 2]);
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.fires_expected, 25);
        let mut mixed = h.clone();
        let odd = run("s", 100, "0190aaaa-bbbb-7cce~s@100000/0of2", "n2", 99_000, 10);
        mixed.records.push(rec(&odd, "succeeded"));
        mixed.runs.push(odd);
        let r = check(&mixed);
        assert!(r.violations.iter().any(|v| v.contains("not as its job fans out")), "{:?}", r.violations);
        // A fixed count's fire with a shard of another total.
        let mut other = sharded(rota::job::Shards::Count(3), &[3]);
        let odd = run("s", 104, "0190aaaa-bbbb-7ccf~s@104000/0of2", "n2", 99_000, 10);
        other.records.push(rec(&odd, "succeeded"));
        other.runs.push(odd);
        let r = check(&other);
        assert!(r.violations.iter().any(|v| v.starts_with("s@104000: its shards name totals")), "{:?}", r.violations);
    }

    /// A capped job's trimmed fires are judged by the side log: a clean history passes; a second
    /// run, a missing run and records over the cap are caught.
    #[test]
    fn a_capped_jobs_trimmed_fires_are_judged_by_the_side_log() {
        let mut h = clean();
        h.jobs[0].keep_last = Some(3);
        // The cap kept the newest three of a's records; all ten of its fires are judged by the
        // side log, whether their records remain or not.
        h.records.retain(|x| x.job != "a" || x.sched_ms >= 107_000);
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!((r.trimmed, r.executed), (10, 30));
        let mut twice = h.clone();
        twice.runs.push(run("a", 102, "a102-bis", "n2", 99_000, 20));
        let r = check(&twice);
        assert_eq!(r.duplicated, 1, "{:?}", r.violations);
        assert!(r.violations[0].contains("a@102000: run a102-bis on n2 is a second run"), "{:?}", r.violations);
        let mut missing = h.clone();
        missing.runs.retain(|x| x.exec != "a103");
        let r = check(&missing);
        assert_eq!(r.lost, 1, "{:?}", r.violations);
        assert!(r.violations[0].starts_with("a@103000: not executed (records trimmed"), "{:?}", r.violations);
        // A paused node's run (listed first) and its re-run elsewhere: the pause explains the first,
        // so neither is a violation, whichever the side log lists first.
        let mut paused = h.clone();
        let mut first = run("a", 102, "a102-paused", "n1", 99_000, 2000);
        first.start_ms = 101_990;
        paused.runs.insert(0, first);
        paused.faults.push(Fault {
            kind: "pause_master".into(),
            node: Some("n1".into()),
            at_ms: 102_005,
            until_ms: 104_000,
            dead_ms: None,
            was_master: true,
            epoch_before: 99_000,
        });
        let r = check(&paused);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.explained_extra_runs, 1);
        // The paused run's late result left a `superseded` record, newer than the fire's own
        // (trimmed): the side log still judges the fire (CI's failure before this rule).
        let mut evidence = paused.clone();
        let late = evidence.runs[0].clone();
        evidence.records.push(rec(&late, "superseded"));
        let r = check(&evidence);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        let mut over = h.clone();
        over.jobs[0].keep_last = Some(1);
        over.records = clean().records;
        let r = check(&over);
        assert!(
            r.violations.iter().any(|v| v.contains("a: 10 finished records kept, over its cap of 1")),
            "{:?}",
            r.violations
        );
    }

    #[test]
    fn catches_a_planted_duplicate() {
        let mut h = clean();
        let mut extra = run("a", 103, "a103-bis", "n2", 99_000, 20);
        extra.start_ms += 100;
        h.records.push(rec(&extra, "succeeded"));
        h.runs.push(extra);
        let r = check(&h);
        assert_eq!(r.duplicated, 1, "{:?}", r.violations);
        assert!(r.violations[0].contains("a@103000: 2 successful"), "{:?}", r.violations);
    }

    #[test]
    fn catches_a_run_rota_does_not_know() {
        let mut h = clean();
        h.runs.push(run("a", 104, "ghost", "n1", 99_000, 20));
        let r = check(&h);
        assert_eq!(r.duplicated, 1, "{:?}", r.violations);
        assert!(r.violations[0].contains("ghost"), "{:?}", r.violations);
    }

    #[test]
    fn catches_a_planted_lost_fire() {
        let mut h = clean();
        h.runs.retain(|x| x.exec != "a106");
        h.records.retain(|x| x.exec != "a106");
        let r = check(&h);
        assert_eq!(r.lost, 1, "{:?}", r.violations);
        assert!(r.violations[0].starts_with("a@106000: not executed"), "{:?}", r.violations);
    }

    #[test]
    fn catches_an_execution_left_running_outside_the_window() {
        let mut h = clean();
        // Before the window (the start-up seconds) and a manual fire: neither is a window fire.
        let early = run("a", 98, "a98", "n1", 99_000, 20);
        h.records.push(rec(&early, "running"));
        let mut manual = rec(&run("a", 105, "m1", "n2", 99_000, 20), "pending");
        manual.manual = true;
        h.records.push(manual);
        let r = check(&h);
        assert_eq!(r.lost, 2, "{:?}", r.violations);
        assert!(
            r.violations.iter().any(|v| v.contains("a98") && v.contains("after the run settled")),
            "{:?}",
            r.violations
        );
    }

    #[test]
    fn a_lost_reply_explains_no_extra_run() {
        let mut h = clean();
        let extra = run("a", 103, "a103-again", "n1", 99_000, 20);
        h.records.push(rec(&extra, "failed"));
        h.runs.push(extra);
        h.faults.push(Fault {
            kind: "lost_reply:lose_start_reply".into(),
            node: Some("n1".into()),
            at_ms: 100_000,
            until_ms: 109_000,
            dead_ms: None,
            was_master: false,
            epoch_before: 1,
        });
        let r = check(&h);
        assert_eq!(r.duplicated, 1, "{:?}", r.violations);
    }

    #[test]
    fn catches_a_success_the_side_log_never_saw() {
        let mut h = clean();
        h.runs.retain(|x| x.exec != "a107");
        let r = check(&h);
        assert_eq!(r.disagreeing, 1, "{:?}", r.violations);
    }

    #[test]
    fn catches_a_planted_overlap() {
        let mut h = clean();
        // f@105's run lasts 1.5 s: f@106 starts while it runs.
        for x in h.runs.iter_mut().filter(|x| x.exec == "f105") {
            x.end_ms = Some(x.start_ms + 1500);
        }
        let r = check(&h);
        assert_eq!(r.overlapping, 1, "{:?}", r.violations);
        assert!(r.violations[0].contains("f106"), "{:?}", r.violations);
    }

    /// A forbid job of an external worker's handler that outlasts its timeout (`times_out`): each
    /// fire's one run is `timed_out`, recorded after the handler ended; one recorded before it is
    /// caught, and so is an overlap, unless a fault hit the earlier run's worker.
    #[test]
    fn a_timed_out_run_is_recorded_after_its_handler_ended() {
        let mut h = clean();
        h.jobs[1].times_out = true;
        for x in h.runs.iter_mut().filter(|x| x.job == "f") {
            x.worker = Some("w1".into());
        }
        for x in h.records.iter_mut().filter(|x| x.job == "f") {
            x.state = "timed_out".into();
        }
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.executed, 30);
        let mut early = h.clone();
        for x in early.records.iter_mut().filter(|x| x.exec == "f103") {
            x.end_ms = x.end_ms.map(|e| e - 300);
        }
        let r = check(&early);
        assert_eq!(r.disagreeing, 1, "{:?}", r.violations);
        assert!(r.violations[0].contains("before its handler ended"), "{:?}", r.violations);
        let mut overlap = h.clone();
        for x in overlap.runs.iter_mut().filter(|x| x.exec == "f105") {
            x.end_ms = Some(x.start_ms + 1500);
        }
        assert_eq!(check(&overlap).overlapping, 1);
        overlap.faults.push(Fault {
            kind: "pause_ext_worker".into(),
            node: Some("w1".into()),
            at_ms: 105_100,
            until_ms: 106_500,
            dead_ms: None,
            was_master: false,
            epoch_before: 0,
        });
        let r = check(&overlap);
        assert_eq!(r.overlapping, 0, "explained by the fault on its worker: {:?}", r.violations);
    }

    #[test]
    fn catches_a_planted_stale_epoch_run() {
        let mut h = clean();
        // The old master (epoch 1) claims a@108 after epoch 2 fired a@105..107.
        for x in h.runs.iter_mut().filter(|x| x.exec == "a108") {
            x.epoch = 99_000;
        }
        let r = check(&h);
        assert_eq!(r.stale_epoch, 1, "{:?}", r.violations);
        assert!(
            r.violations[0].starts_with("a@108000: claimed by epoch 99000 after epoch 104900"),
            "{:?}",
            r.violations
        );
    }

    #[test]
    fn catches_a_master_only_run_off_the_master() {
        let mut h = clean();
        for x in h.runs.iter_mut().filter(|x| x.exec == "m102") {
            x.node = "n3".into();
        }
        let r = check(&h);
        assert_eq!(r.master_only_elsewhere, 1, "{:?}", r.violations);
    }

    /// Each shard has its own lease: a master-only job of shard 1 must run on shard 1's master,
    /// whoever masters shard 0.
    #[test]
    fn judges_a_master_only_run_by_its_own_shards_lease() {
        let mut h = clean();
        h.masters.insert(1, [(99_500, ("n3".to_string(), 99_600))].into());
        for j in h.jobs.iter_mut().filter(|j| j.id == "m") {
            j.shard = 1;
        }
        // n1 and n2 master shard 0; shard 1's runs on them are off their master.
        let r = check(&h);
        assert_eq!(r.master_only_elsewhere, 10, "{:?}", r.violations);
        for x in h.runs.iter_mut().filter(|x| x.job == "m") {
            x.node = "n3".into();
        }
        let r = check(&h);
        assert_eq!(r.master_only_elsewhere, 0, "{:?}", r.violations);
    }

    #[test]
    fn catches_a_run_on_a_node_without_the_handler() {
        let mut h = clean();
        let picky = h.jobs[0].id.clone();
        // The clean history runs `a` on n3: say only n3 has its handler, then plant a run on n1.
        h.jobs[0].only_on = vec!["n3".into()];
        assert_eq!(check(&h).without_handler, 0, "{:?}", check(&h).violations);
        let Some(x) = h.runs.iter_mut().find(|x| x.job == picky) else { panic!("no run of {picky}") };
        x.node = "n1".into();
        let r = check(&h);
        assert_eq!(r.without_handler, 1, "{:?}", r.violations);
    }

    #[test]
    fn an_extra_run_needs_a_fault_to_explain_it() {
        let mut h = clean();
        // a@104 first ran on n3, which died mid-run; a second run on n2 succeeded.
        let mut dead = run("a", 104, "a104-dead", "n3", 99_000, 0);
        dead.end_ms = None;
        h.records.push(rec(&dead, "lost"));
        h.runs.push(dead);
        let unexplained = check(&h);
        assert_eq!(unexplained.duplicated, 1, "{:?}", unexplained.violations);
        h.faults.push(Fault {
            kind: "kill_worker".into(),
            node: Some("n3".into()),
            at_ms: 104_010,
            until_ms: 106_000,
            dead_ms: Some(104_011),
            was_master: false,
            epoch_before: 1,
        });
        let explained = check(&h);
        assert!(explained.violations.is_empty(), "{:?}", explained.violations);
        assert_eq!(explained.explained_extra_runs, 1);
    }

    /// An external worker's extra run is explained by a fault on that worker (killed, paused), not
    /// by one on another worker.
    #[test]
    fn an_external_workers_extra_run_is_explained_by_a_fault_on_that_worker() {
        let mut h = clean();
        let mut dead = run("a", 104, "a104-dead", "n1", 99_000, 0);
        dead.end_ms = None;
        dead.worker = Some("w1".into());
        h.records.push(rec(&dead, "lost"));
        h.runs.push(dead);
        let fault = |worker: &str| Fault {
            kind: "kill_ext_worker".into(),
            node: Some(worker.into()),
            at_ms: 104_010,
            until_ms: 106_000,
            dead_ms: Some(104_011),
            was_master: false,
            epoch_before: 1,
        };
        h.faults.push(fault("w2"));
        let other = check(&h);
        assert_eq!(other.duplicated, 1, "another worker's fault explains nothing: {:?}", other.violations);
        h.faults.push(fault("w1"));
        let explained = check(&h);
        assert!(explained.violations.is_empty(), "{:?}", explained.violations);
        assert_eq!(explained.explained_extra_runs, 1);
    }

    /// A Redis fault (no node) explains an extra run only where a failover may undo writes: in
    /// strict mode it does not, and the run is a duplicate.
    #[test]
    fn in_strict_mode_a_redis_fault_alone_explains_no_extra_run() {
        let mut h = clean();
        let mut dead = run("a", 104, "a104-dead", "n3", 99_000, 0);
        dead.end_ms = None;
        h.records.push(rec(&dead, "lost"));
        h.runs.push(dead);
        h.faults.push(Fault {
            kind: "failover_redis".into(),
            node: None,
            at_ms: 104_010,
            until_ms: 106_000,
            dead_ms: None,
            was_master: true,
            epoch_before: 1,
        });
        let lenient = check(&h);
        assert!(lenient.violations.is_empty(), "{:?}", lenient.violations);
        assert_eq!(lenient.explained_by_redis_alone, 1);
        h.redis_faults_explain = false;
        let strict = check(&h);
        assert_eq!(strict.duplicated, 1, "{:?}", strict.violations);
    }

    #[test]
    fn forbid_skips_and_policy_losses_are_not_violations() {
        let mut h = clean();
        for x in h.records.iter_mut().filter(|x| x.exec == "f101") {
            x.state = "skipped".into();
            x.error = "skipped: an earlier fire of this job is still running (concurrency forbid)".into();
        }
        h.runs.retain(|x| x.exec != "f101");
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.skipped_by_lock, 1);
        // Skipped for a reason that is not its policy's: caught.
        let mut wrong = h.clone();
        for x in wrong.records.iter_mut().filter(|x| x.exec == "f101") {
            x.error = "skipped: 3 fires already wait for this job's running fire (concurrency buffer, limit 3)".into();
        }
        assert_eq!(check(&wrong).disagreeing, 1);
    }

    /// A `replace` job: each fire stops the run before it (recorded `cancelled` by the fire that
    /// replaced it, no end line in the side log: it ends when its record says), a fire replaced
    /// while it waited is `skipped`; none of it is a violation. A cancel no one asked, a replaced
    /// run whose handler ran on to its end, or a replacing run that starts before the replaced one
    /// stopped, is one; so is a run after its fire's cancel.
    #[test]
    fn replaced_runs_are_stopped_and_never_overlap() {
        let mut h = clean();
        h.jobs[1].overlap = Concurrency::Replace;
        for s in 100..109 {
            let next = h.runs.iter().find(|x| x.exec == format!("f{}", s + 1)).map(|x| x.start_ms).unwrap_or(0);
            for x in h.runs.iter_mut().filter(|x| x.exec == format!("f{s}")) {
                x.end_ms = None; // dropped at the stop: no end line
            }
            for x in h.records.iter_mut().filter(|x| x.exec == format!("f{s}")) {
                x.state = "cancelled".into();
                x.error = format!("replaced by a newer fire, f@{} (concurrency replace)", s + 1);
                x.end_ms = Some(next - 3);
            }
        }
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!((r.replaced, r.executed, r.overlapping), (9, 21, 0));
        // Its record says it stopped after the next run began: an overlap.
        let mut late = h.clone();
        for x in late.records.iter_mut().filter(|x| x.exec == "f104") {
            x.end_ms = x.end_ms.map(|e| e + 200);
        }
        assert_eq!(check(&late).overlapping, 1);
        // Cancelled for another reason that no one asked.
        let mut unasked = h.clone();
        for x in unasked.records.iter_mut().filter(|x| x.exec == "f104") {
            x.error = "cancelled by nobody".into();
        }
        assert_eq!(check(&unasked).disagreeing, 1);
        // A replaced run that ran on to its end after its record.
        let mut ran_on = h.clone();
        for x in ran_on.runs.iter_mut().filter(|x| x.exec == "f104") {
            x.end_ms = Some(x.start_ms + 1200);
        }
        let r = check(&ran_on);
        assert!(r.disagreeing >= 1 && r.overlapping == 1, "{:?}", r.violations);
        // A fire held for the lock and replaced before it began: skipped, saying so.
        let mut held = h.clone();
        held.runs.retain(|x| x.exec != "f105");
        for x in held.records.iter_mut().filter(|x| x.exec == "f105") {
            x.state = "skipped".into();
            x.error = "skipped: replaced by a newer fire, f@106, before it began (concurrency replace)".into();
        }
        let r = check(&held);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.skipped_by_lock, 1);
    }

    /// The concurrency limit: three jobs under a limit of 2, their fires at one instant. Two run,
    /// the third after one ended: no violation. All three at once: one, unless a fault hit one of
    /// the runs' nodes (its slot may have lapsed while its handler went on).
    #[test]
    fn a_limit_is_never_passed() {
        let mut h = clean();
        h.jobs = ["l1", "l2", "l3"].iter().map(|id| JobInfo { limit: Some(2), ..job(id, false, false) }).collect();
        h.runs.clear();
        h.records.clear();
        for s in 100..110 {
            for (k, id) in ["l1", "l2", "l3"].iter().enumerate() {
                let mut x = run(id, s, &format!("{id}-{s}"), "n3", 99_000, 300);
                if k == 2 {
                    // Waits for a slot: begins as the first ends.
                    x.start_ms += 300;
                    x.end_ms = x.end_ms.map(|e| e + 300);
                }
                h.records.push(rec(&x, "succeeded"));
                h.runs.push(x);
            }
        }
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!((r.most_limited, r.over_limit), (2, 0));
        let mut over = h.clone();
        for x in over.runs.iter_mut().filter(|x| x.exec == "l3-104") {
            x.start_ms -= 200;
        }
        let r = check(&over);
        assert_eq!((r.most_limited, r.over_limit), (3, 1), "{:?}", r.violations);
        over.faults.push(Fault {
            kind: "pause_worker".into(),
            node: Some("n3".into()),
            at_ms: 104_000,
            until_ms: 104_900,
            dead_ms: None,
            was_master: false,
            epoch_before: 0,
        });
        assert_eq!(check(&over).over_limit, 0, "explained by the fault on its node");
    }

    /// A `buffer` job's held fires begin late by design: counted apart, not as lateness. Its skips
    /// say the buffer was full; runs still never overlap.
    #[test]
    fn held_fires_are_late_by_design_and_never_overlap() {
        let mut h = clean();
        h.jobs[1].overlap = Concurrency::Buffer(3);
        for x in h.runs.iter_mut().filter(|x| x.job == "f") {
            let k = x.sched_ms / 1000 - 100;
            x.start_ms = x.sched_ms + 5 + k * 600;
            x.end_ms = Some(x.start_ms + 500);
        }
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!((r.late, r.max_held_delay_ms), (0, 5 + 9 * 600));
        let mut over = h.clone();
        for x in over.runs.iter_mut().filter(|x| x.exec == "f107") {
            x.start_ms -= 1200;
        }
        assert_eq!(check(&over).overlapping, 1);
    }
}
