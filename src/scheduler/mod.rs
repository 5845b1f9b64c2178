//! The scheduler loop: finds fires that are due, claims them in the store, and hands claimed fires
//! to the worker pool. Also makes manual fires (TriggerJob).
//!
//! How a fire happens:
//! 1. The store keeps each job's watermark (`next_ms`, the next instant that may fire) in a due index.
//!    The loop sleeps until the earliest watermark (or until woken by a job change), then reads every
//!    job that is due.
//! 2. For each, `plan` (pure: time and state are inputs) decides what to claim: the fire at the
//!    watermark, or, when it is later than the misfire threshold, a MISFIRED record for the missed
//!    instants plus (policy `fire_once_now`) the latest missed instant.
//! 3. `Store::claim` moves the watermark from the fire's instant to the next one and records the
//!    execution in one atomic step, so a fire claimed once can never be claimed again, by this node
//!    or any other sharing the store, whatever happens after.
//! 4. Claimed fires go to the worker pool, which records the outcome.
//!
//! Cost per tick grows with the fires due, not with the number of jobs: the due index is ordered.
//! Uses: `store`, `job`, `worker` (load, metrics), `dispatch::Router` (delivery), `recovery` (the
//! master's sweep, setting aside). Never talks to the network itself.
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::cluster::lease::{Mastership, Role};
use crate::dispatch::{Outbox, Router};
use crate::error::{Error, Result};
use crate::execution::{scheduled_fire_id, shard_fire_id, ExecState, Execution, Shard};
use crate::job::calendar::{Calendars, OnExcluded, Verdict};
use crate::job::file::{plan_apply, Apply};
use crate::job::{Concurrency, Declared, Job, JobSpec, Misfire, Shards};
use crate::recovery::Recovery;
use crate::store::{
    now_ms, Chained, Claim, ClaimOutcome, FireOwn, JobRecord, JobWrite, PauseNote, Store, TriggerOutcome,
    WatermarkWrite, Writer, FIRE_AHEAD_MS,
};
use crate::worker::Worker;

/// Jobs read per store round trip; more are read on the next pass without sleeping.
const BATCH: usize = 500;
/// Claims per claim call, about: a tick stops taking due jobs past it (a sharded job's fire is up to
/// 128 claims, and one script call must not stall Redis), leaving the rest to the next pass. A
/// job's claims are never split: a fire's shards are claimed in one call (PROTOCOL §3.23).
const MAX_CLAIMS: usize = 2_000;
/// Longest sleep between looks at the store, so jobs put through another node sharing the store
/// are seen without a wake-up from this one.
const MAX_IDLE: Duration = Duration::from_millis(500);
/// Pause after a store error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

pub struct Scheduler {
    store: Arc<dyn Store>,
    worker: Arc<Worker>,
    node_id: String,
    misfire_threshold_ms: i64,
    wake: Notify,
    /// Only the master fires; this follows the lease.
    role: watch::Receiver<Role>,
    /// Where each claimed fire runs, and getting it there.
    router: Arc<Router>,
    /// Where fires that do not run at once go, and the master's sweep.
    recovery: Arc<Recovery>,
    /// How often the master sweeps (a third of the node TTL).
    sweep_every_ms: i64,
    /// `SchedulerParts::retention_ms`.
    retention_ms: i64,
    /// When the master last swept dead nodes and stuck dispatches (ms).
    swept: AtomicI64,
    /// TriggerJob calls between their load check and their fire waiting for a worker.
    triggers_in_flight: AtomicU32,
    /// The earliest instant of a `forbid` fire the last tick left to claim at its instant
    /// (i64::MAX: none), so the loop sleeps until then instead of spinning.
    deferred_until: AtomicI64,
    /// When a tick (claim pass) last succeeded (ms; 0: never), and how many failed in a row since:
    /// what readiness and `rota_scheduler_seconds_since_last_tick` report for the master.
    last_tick_ok_ms: AtomicI64,
    failing_ticks: AtomicU32,
}

/// What TriggerJob did.
#[derive(Debug, Clone, PartialEq)]
pub struct Triggered {
    /// None for a dry run.
    pub execution: Option<Execution>,
    pub deduplicated: bool,
    /// The arguments the fire runs (or would run) with.
    pub args: serde_json::Value,
    /// The node that takes the fire (this one); empty when this node cannot run the job's handler
    /// and hands the fire to one that can, chosen then.
    pub node_id: String,
}

/// What TriggerJob asks beyond the job itself (`Scheduler::trigger`).
#[derive(Debug, Clone, Default)]
pub struct TriggerAsk {
    pub idempotency_key: Option<String>,
    /// This fire's own arguments, and how they apply to the job's.
    pub args: Option<(serde_json::Value, ArgsOverride)>,
    /// Resolve and check everything, run nothing.
    pub dry_run: bool,
    /// Tags the worker that runs the fire must have, besides the job's selector (TriggerJob's
    /// `target_selector`; empty: none). Checked by the caller (`check_target_selector`).
    pub selector: std::collections::BTreeMap<String, String>,
}

/// Whether `target` may narrow a job's worker selection for one manual fire: only for a job whose
/// handler is an external worker's (a built-in runs on the node, which has no tags), and never
/// contradicting the job's own selector (a fire of a job that says `region = eu` cannot run on a
/// worker of `region = us`). Tags are checked as a job's selector's are.
pub fn check_target_selector(
    job: &JobSpec,
    target: &std::collections::BTreeMap<String, String>,
    builtin: bool,
) -> Result<()> {
    if target.is_empty() {
        return Ok(());
    }
    if builtin {
        return Err(Error::invalid(
            "target_selector",
            format!(
                "job '{}' runs the built-in handler '{}' on its node, which has no tags: a target selector picks an \
                 external worker (use target_node for a node)",
                job.id, job.handler
            ),
        ));
    }
    if target.len() > crate::job::MAX_SELECTOR {
        return Err(Error::invalid("target_selector", format!("more than {} tags", crate::job::MAX_SELECTOR)));
    }
    if let Some((k, _)) = target.iter().find(|(k, v)| !crate::job::is_tag_name(k) || !crate::job::is_tag_name(v)) {
        return Err(Error::invalid(
            format!("target_selector.{}", crate::redact::value(k)),
            "keys and values must be 1-128 characters of A-Z a-z 0-9 . _ : -",
        ));
    }
    if let Some((k, v)) = target.iter().find(|(k, v)| job.selector.get(*k).is_some_and(|j| j != *v)) {
        return Err(Error::invalid(
            format!("target_selector.{k}"),
            format!(
                "'{v}' contradicts the job's own selector ({k} = {}): a fire runs only where both hold",
                job.selector.get(k).map(String::as_str).unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// How TriggerJob's arguments apply to the job's (`TriggerAsk::args`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgsOverride {
    /// The fire's arguments are the given ones.
    Replace,
    /// The given object's top-level fields over the job's (both JSON objects).
    Merge,
}

/// The arguments a manual fire runs with: the job's, or the override applied to them (None: the
/// job's, unchanged).
pub fn resolve_args(
    job_args: &serde_json::Value,
    over: Option<&(serde_json::Value, ArgsOverride)>,
) -> Result<Option<serde_json::Value>> {
    use serde_json::Value;
    let Some((given, how)) = over else { return Ok(None) };
    match (how, job_args, given) {
        (ArgsOverride::Replace, _, _) => Ok(Some(given.clone())),
        // A job without arguments merges as an empty object.
        (ArgsOverride::Merge, Value::Null, Value::Object(over)) => Ok(Some(Value::Object(over.clone()))),
        (ArgsOverride::Merge, Value::Object(job), Value::Object(over)) => {
            let mut merged = job.clone();
            merged.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
            Ok(Some(Value::Object(merged)))
        }
        (ArgsOverride::Merge, Value::Object(_) | Value::Null, other) => {
            Err(Error::invalid("args", format!("merging needs a JSON object, not {}", json_kind(other))))
        }
        (ArgsOverride::Merge, job, _) => Err(Error::invalid(
            "args",
            format!(
                "merging needs the job's args to be a JSON object; they are {} (replace them instead)",
                json_kind(job)
            ),
        )),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// What a `Scheduler` is made of (wired by the node).
pub struct SchedulerParts {
    pub store: Arc<dyn Store>,
    pub worker: Arc<Worker>,
    pub node_id: String,
    pub misfire_threshold_ms: u64,
    pub role: watch::Receiver<Role>,
    pub router: Arc<Router>,
    pub recovery: Arc<Recovery>,
    /// The node TTL: the master sweeps every third of it.
    pub node_ttl_ms: u64,
    /// How long a fire's id is remembered (`execution_retention_ms`): a backfill reaches no further back.
    pub retention_ms: u64,
}

impl Scheduler {
    pub fn new(p: SchedulerParts) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            store: p.store,
            worker: p.worker,
            node_id: p.node_id,
            misfire_threshold_ms: p.misfire_threshold_ms as i64,
            wake: Notify::new(),
            role: p.role,
            router: p.router,
            recovery: p.recovery,
            sweep_every_ms: (p.node_ttl_ms / 3).max(100) as i64,
            retention_ms: p.retention_ms as i64,
            swept: AtomicI64::new(0),
            triggers_in_flight: AtomicU32::new(0),
            deferred_until: AtomicI64::new(i64::MAX),
            last_tick_ok_ms: AtomicI64::new(0),
            failing_ticks: AtomicU32::new(0),
        })
    }

    /// Makes the loop look at the store now (a job was put or resumed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `cancel`, firing only while this node is master.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        tracing::info!(node = %self.node_id, "scheduler started");
        let mut role = self.role.clone();
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let Some(master) = role.borrow_and_update().active().cloned() else {
                // Not master (or past the local deadline): wait for the lease to change.
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = role.changed() => {}
                    _ = tokio::time::sleep(MAX_IDLE) => {}
                }
                continue;
            };
            let now = now_ms();
            if now - self.swept.load(Ordering::Relaxed) >= self.sweep_every_ms {
                self.swept.store(now, Ordering::Relaxed);
                if let Err(e) = self.recovery.sweep(&master).await {
                    tracing::warn!(error = %e, "master sweep failed");
                }
                self.resume_paused_until(now).await;
                // after_previous fires whose ender died, or lost its chain step's reply.
                match self.store.chained(BATCH).await {
                    Ok(waits) => self.chain_next(&waits, "the master's sweep").await,
                    Err(e) => tracing::warn!(error = %e, "cannot read the after_previous jobs waiting"),
                }
            }
            let wait = match self.step(now_ms(), &master).await {
                Ok(true) => {
                    self.tick_succeeded();
                    continue;
                }
                Ok(false) => match self.store.next_due_ms().await.inspect(|_| self.tick_succeeded()) {
                    Ok(Some(t)) => {
                        // The earliest due fire is claimed ahead, unless it is one left for its instant.
                        let at = if self.deferred_until.load(Ordering::Relaxed) <= t { t } else { t - FIRE_AHEAD_MS };
                        Duration::from_micros(
                            (at * 1000 - crate::clock::now_us()).clamp(0, MAX_IDLE.as_micros() as i64) as u64,
                        )
                    }
                    Ok(None) => MAX_IDLE,
                    Err(e) => {
                        self.tick_failed();
                        tracing::warn!(error = %e, "scheduler: cannot read the due index");
                        ERROR_BACKOFF
                    }
                },
                Err(Error::Fenced(why)) => {
                    tracing::warn!(node = %self.node_id, epoch = master.epoch, why = %why, "claim fenced: no longer master");
                    ERROR_BACKOFF
                }
                Err(e) => {
                    self.tick_failed();
                    tracing::warn!(error = %e, "scheduler: tick failed");
                    ERROR_BACKOFF
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = role.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(node = %self.node_id, "scheduler stopped");
    }

    /// Resumes the jobs whose pause ran until now (PauseJob's `until`): the master's, at each
    /// sweep, so a job resumes at most a sweep (a third of the node TTL) after its `until`.
    async fn resume_paused_until(&self, now: i64) {
        let ids = match self.store.resumable(now, BATCH).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the jobs to resume");
                return;
            }
        };
        for id in ids {
            // Read again just before: a pause made since the index was read (a new until, or none)
            // stands. (Narrows the race to the two calls; the resume itself is not conditional.)
            match self.store.get_job(&id).await {
                Ok(Some(rec))
                    if rec.spec.paused && rec.pause.as_ref().and_then(|p| p.until_ms).is_some_and(|u| u <= now) => {}
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "cannot read a job whose pause ran out");
                    continue;
                }
            }
            match self.set_paused(&id, false, None).await {
                Ok(rec) => tracing::info!(job = %id, next_fire = %crate::job::next_fire_text(rec.next_ms),
                    "resumed: its pause ran until now"),
                Err(e) => tracing::warn!(job = %id, error = %e, "cannot resume a job whose pause ran out"),
            }
        }
    }

    fn tick_succeeded(&self) {
        self.last_tick_ok_ms.store(now_ms(), Ordering::Relaxed);
        self.failing_ticks.store(0, Ordering::Relaxed);
    }

    fn tick_failed(&self) {
        self.failing_ticks.fetch_add(1, Ordering::Relaxed);
        self.worker.metrics().tick_failures.inc();
    }

    /// (when a tick last succeeded in ms, 0 if never; ticks failed in a row since).
    pub fn tick_health(&self) -> (i64, u32) {
        (self.last_tick_ok_ms.load(Ordering::Relaxed), self.failing_ticks.load(Ordering::Relaxed))
    }

    /// Claims everything due by `now` + FIRE_AHEAD_MS and hands it to where it runs. True when it
    /// made progress (look again at once).
    pub async fn step(&self, now: i64, master: &Mastership) -> Result<bool> {
        let due = self.store.due_jobs(now + FIRE_AHEAD_MS, BATCH).await?;
        for s in &due.set_aside {
            self.recovery.set_aside(&s.job_id, "", &s.reason);
        }
        let mut deferred = i64::MAX;
        let mut claims = Vec::new();
        let mut jobs = Vec::new();
        // The calendars the due jobs name, read once for the pass: each instant is checked
        // against them as they are now, at its claim.
        let mut names: Vec<String> = due.jobs.iter().flat_map(|r| r.spec.calendars.iter().cloned()).collect();
        names.sort();
        names.dedup();
        // Unread (the store erred), the jobs naming calendars wait for the next pass: neither run
        // against calendars not read, nor recorded skipped for a read that failed once.
        let (calendars, unread) = match self.store.calendars(&names).await {
            Ok(c) => (c, false),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the due jobs' calendars; their fires wait for the next pass");
                (Default::default(), true)
            }
        };
        for rec in &due.jobs {
            if claims.len() >= MAX_CLAIMS {
                break;
            }
            if unread && !rec.spec.calendars.is_empty() {
                continue;
            }
            match Job::new(rec.spec.clone()).map(|j| {
                let c = Calendars::resolve(&j.spec.calendars, &calendars);
                j.with_calendars(c)
            }) {
                Ok(job) if job.spec.concurrency.exclusive() && rec.next_ms.is_some_and(|t| t > now) => {
                    deferred = deferred.min(rec.next_ms.unwrap_or(i64::MAX));
                }
                Ok(job) => {
                    let shards = match job.spec.shards {
                        Shards::One => None,
                        Shards::Count(n) => Some(n),
                        Shards::PerNode => Some(self.router.nodes_for(&job, now).await),
                    };
                    let epoch = master.epoch;
                    for c in plan(&job, rec, now, self.misfire_threshold_ms, &self.node_id, epoch, shards) {
                        claims.push(c);
                        jobs.push(Some(job.clone()));
                    }
                }
                Err(e) => {
                    // A definition that no longer validates (written by an older or foreign
                    // version): record why and stop its schedule, rather than spin on it.
                    if let Some(c) = broken_job_claim(rec, &e, &self.node_id) {
                        tracing::error!(job = %rec.spec.id, error = %e, "stored job is invalid; its schedule is stopped");
                        claims.push(c);
                        jobs.push(None);
                    }
                }
            }
        }
        self.deferred_until.store(deferred, Ordering::Relaxed);
        if claims.is_empty() {
            return Ok(false);
        }
        // Where each fire goes is decided before its claim: the fires this node will run itself
        // go into its hands with their claim, saving each an accept (`Claim::here`); the rest are
        // delivered once claimed.
        // A misfire's summary runs nowhere: it takes no turn and counts in no load.
        let routed: Vec<Option<(&Job, &str)>> = claims
            .iter()
            .zip(&jobs)
            .map(|(c, j)| j.as_ref().filter(|_| c.runs()).map(|j| (j, c.exec.fire_id.as_str())))
            .collect();
        let decisions = self.router.plan(&routed, now).await;
        for ((claim, d), job) in claims.iter_mut().zip(&decisions).zip(&jobs) {
            claim.here = self.router.claims_here(d.as_ref());
            // Started with its claim too, unless master-only: that start checks the stored lease
            // at the fire's instant (start.lua).
            claim.start = claim.here && job.as_ref().is_some_and(|j| !j.spec.master_only);
        }
        if tokio::time::Instant::now() >= master.deadline {
            // The lease may have passed to another node while we read: act no more.
            return Ok(false);
        }
        let outcomes = self.store.claim(&master.lease, &claims).await?;
        let mut progress = false;
        let mut outbox = Outbox::new();
        // after_previous fires that ended at their claim: their next is set at once, not at a sweep.
        let mut ended = Vec::new();
        for (((claim, job), decision), outcome) in claims.into_iter().zip(jobs).zip(decisions).zip(outcomes) {
            let fire = &claim.exec.fire_id;
            if claim.chain
                && matches!(outcome, ClaimOutcome::Misfired | ClaimOutcome::Skipped | ClaimOutcome::Duplicate(_))
            {
                ended.push((claim.job_id.clone(), claim.sched_ms));
            }
            match outcome {
                ClaimOutcome::Claimed => {
                    progress = true;
                    fail::fail_point!("after_claim", |_| crate::failpoints::crash("after_claim"));
                    if let (Some(job), Some(decision)) = (job, decision) {
                        self.router.deliver(job, claim.exec.fire_id.clone(), decision, master, &mut outbox).await;
                    }
                }
                ClaimOutcome::Here | ClaimOutcome::Started => {
                    progress = true;
                    fail::fail_point!("after_claim", |_| crate::failpoints::crash("after_claim"));
                    let started = (outcome == ClaimOutcome::Started).then_some((claim.exec.id.as_str(), &master.lease));
                    if let Some(job) = job {
                        self.router.run_claimed_here(job, fire, started);
                    }
                }
                ClaimOutcome::Skipped => {
                    progress = true;
                    self.worker.metrics().outcome("skipped");
                    tracing::info!(job = %claim.job_id, fire = %fire, "skipped: previous fire still running");
                }
                ClaimOutcome::Held(replacing) => {
                    progress = true;
                    tracing::info!(job = %claim.job_id, fire = %fire, replacing = replacing.is_some(),
                        "held: waits for the job's running fire");
                    if let Some(r) = replacing {
                        self.router.stop_replaced(r);
                    }
                }
                ClaimOutcome::Misfired => {
                    progress = true;
                    let state = claim.exec.state.as_str();
                    self.worker.metrics().outcome(state);
                    if claim.exec.state == ExecState::Skipped {
                        tracing::info!(job = %claim.job_id, fire = %fire, why = %claim.exec.error, "skipped by a calendar");
                    } else {
                        tracing::warn!(job = %claim.job_id, fire = %fire, state, error = %claim.exec.error, "recorded at its claim");
                    }
                }
                ClaimOutcome::Moved => {
                    progress = true;
                    tracing::info!(job = %claim.job_id, instant = claim.sched_ms,
                        next_fire = %crate::job::next_fire_text(claim.next_ms), "moved on by a calendar: no fire");
                }
                ClaimOutcome::Stale => {
                    progress = true;
                    self.worker.metrics().prevented_duplicates.inc();
                    tracing::info!(job = %claim.job_id, fire = %fire, "prevented duplicate: fire already claimed");
                }
                ClaimOutcome::Duplicate(held) => {
                    // The fire's key existed before its claim: claimed before (Redis lost the
                    // watermark's move but kept the fire), or planted. Either way it does not run:
                    // say what was there.
                    progress = true;
                    self.worker.metrics().prevented_duplicates.inc();
                    tracing::warn!(job = %claim.job_id, fire = %fire, held = %held,
                        "fire not run: its key existed before its claim (a prevented duplicate, or a planted key)");
                }
                ClaimOutcome::BadKey(why) => {
                    progress = true;
                    self.recovery.set_aside(&claim.job_id, fire, &why);
                }
                ClaimOutcome::Paused | ClaimOutcome::Gone => {
                    tracing::debug!(job = %claim.job_id, fire = %fire, ?outcome, "not claimed");
                }
            }
        }
        self.router.send(outbox, master);
        self.chain_next(&ended, "ended at its claim").await;
        Ok(progress)
    }

    /// Sets the next fire of `after_previous` jobs whose fire (job, instant) has ended, logging
    /// each (`by` says who noticed). A failure is logged only: the master's sweep tries again.
    async fn chain_next(&self, ended: &[(String, i64)], by: &str) {
        if ended.is_empty() {
            return;
        }
        match self.store.chain_next(ended, now_ms()).await {
            Ok(outcomes) => {
                for ((job, sched), o) in ended.iter().zip(outcomes) {
                    if let Chained::Next(next) = o {
                        tracing::info!(job = %job, fire = %scheduled_fire_id(job, *sched), by,
                            next_fire = %crate::job::next_fire_text(next), "after_previous: next fire set");
                        self.wake();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, by, "after_previous: cannot set the next fires"),
        }
    }

    /// Fires `job_id` now as a manual fire of its own (never colliding with a scheduled fire).
    pub async fn trigger(&self, job_id: &str, ask: &TriggerAsk) -> Result<Triggered> {
        let rec = self.store.get_job(job_id).await?.ok_or_else(|| Error::JobNotFound(job_id.to_string()))?;
        let mut job = Job::new(rec.spec)?;
        if job.spec.shards.is_sharded() {
            // Not built yet: a manual fire is one fire, made and run by the node asked, and a
            // sharded one would be several spread over the cluster (PROTOCOL §3.23).
            return Err(Error::FailedPrecondition(format!(
                "job '{job_id}' is sharded (shards {}): a manual fire of a sharded job is not supported yet; \
                 nothing was triggered",
                job.spec.shards.name()
            )));
        }
        // The fire's own arguments, checked as PutJob checks a job's (its size and form, and the
        // handler's own rules where this node has the handler; a node that runs it checks again).
        let args = resolve_args(&job.spec.args, ask.args.as_ref())?;
        if let Some(a) = &args {
            // A job defined by `invoke` keeps its handler; the fire's arguments are its own (an
            // invoke string that no longer matches them would be refused by `Job::new`).
            job = Job::new(crate::job::JobSpec { args: a.clone(), invoke: String::new(), ..job.spec })?;
            if self.worker.registry().get(&job.spec.handler).is_some() {
                self.worker.registry().validate(&job.spec.handler, a)?;
            }
        }
        // The fire's target tags narrow where it may run, here as on the node it is handed to.
        check_target_selector(&job.spec, &ask.selector, self.worker.registry().is_builtin(&job.spec.handler))?;
        job.spec.selector.extend(ask.selector.iter().map(|(k, v)| (k.clone(), v.clone())));
        let here = self.worker.registry().get_for(&job.spec.handler, &job.spec.selector).is_some();
        let node_id = if here { self.node_id.to_string() } else { String::new() };
        if !self.worker.accepting() {
            return Err(Error::Draining(self.node_id.to_string()));
        }
        if ask.dry_run {
            return Ok(Triggered { execution: None, deduplicated: false, args: job.spec.args.clone(), node_id });
        }
        let idempotency_key = ask.idempotency_key.as_deref();
        // Manual fires wait in this process for a worker: a flood of them is refused beyond a
        // bound, so memory stays bounded and the caller learns to back off. Calls still on their
        // way to the store count too, or a burst would pass the check all at once.
        let in_flight = self.triggers_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _in_flight = InFlight(&self.triggers_in_flight);
        let load = self.worker.load();
        let bound = max_waiting(load.max);
        if load.queue + in_flight > bound {
            return Err(Error::Busy(format!(
                "node {} has {} fires waiting for {} workers (at most {bound}); retry later",
                self.node_id,
                load.queue + in_flight - 1,
                load.max
            )));
        }
        let exec = Execution::manual(job_id, now_ms(), &self.node_id);
        match self
            .store
            .trigger(
                &exec,
                idempotency_key,
                job.spec.concurrency,
                crate::worker::lock_ttl_ms(self.misfire_threshold_ms),
                &FireOwn { args: args.clone(), selector: ask.selector.clone() },
                job.spec.priority,
            )
            .await?
        {
            TriggerOutcome::Gone => Err(Error::JobNotFound(job_id.to_string())),
            // Only a backfill's fire (a scheduled instant's id) can have been made before.
            TriggerOutcome::AlreadyFired => Err(Error::unavailable("a manual fire's id was found taken")),
            TriggerOutcome::Conflict(id) => Err(Error::FailedPrecondition(format!(
                "this idempotency key already triggered execution {id} with other arguments or target tags; \
                 nothing was triggered (use a new key to trigger with these)"
            ))),
            TriggerOutcome::Deduplicated(e) => {
                let node_id = e.node_id.clone();
                Ok(Triggered { execution: Some(e), deduplicated: true, args: job.spec.args.clone(), node_id })
            }
            TriggerOutcome::Spent(id) => Err(Error::FailedPrecondition(format!(
                "this idempotency key already triggered execution {id}, whose record the job's history cap \
                 (keep_last) has deleted since; nothing was triggered again (use a new key to trigger again)"
            ))),
            TriggerOutcome::Skipped(e) => {
                Ok(Triggered { execution: Some(e), deduplicated: false, args: job.spec.args.clone(), node_id })
            }
            TriggerOutcome::Held(e, replacing) => {
                // It runs where the fire that lets the lock go hands it (PROTOCOL §3.20): no node yet.
                tracing::info!(job = %job_id, fire = %e.fire_id, execution = %e.id, "manual fire held: waits for the job's running fire");
                if let Some(r) = replacing {
                    self.router.stop_replaced(r);
                }
                Ok(Triggered {
                    execution: Some(e),
                    deduplicated: false,
                    args: job.spec.args.clone(),
                    node_id: String::new(),
                })
            }
            TriggerOutcome::Created(e) => {
                tracing::info!(job = %job_id, fire = %e.fire_id, execution = %e.id, own_args = args.is_some(), "manual fire");
                let args = job.spec.args.clone();
                self.router.run_here(job, &e.fire_id, None).await;
                Ok(Triggered { execution: Some(e), deduplicated: false, args, node_id })
            }
        }
    }

    /// The instants a backfill of `job_id` over [`from_ms`, `to_ms`] runs (BackfillJob), checked:
    /// a range in the past and within the retention (a fire's id is remembered that long: older,
    /// an instant the schedule ran would run again), a job whose schedule has instants (not
    /// `after_previous`, whose fires follow each other's ends) and is not sharded, and at most
    /// `MAX_BACKFILL` of them, nor more than the job keeps records of (its history cap deletes the
    /// oldest fires' ids). Instants at or past the job's watermark are the scheduler's (behind,
    /// it catches up by its misfire policy): left out.
    pub async fn backfill_plan(&self, job_id: &str, from_ms: i64, to_ms: i64) -> Result<(Job, Vec<i64>)> {
        let now = now_ms();
        if to_ms < from_ms {
            return Err(Error::invalid("to", "is before from"));
        }
        if to_ms > now {
            return Err(Error::invalid(
                "to",
                "is in the future: a backfill runs past instants (the schedule runs the rest)",
            ));
        }
        if from_ms < now - self.retention_ms {
            return Err(Error::invalid(
                "from",
                format!(
                    "is older than the execution retention ({}): a fire's id is remembered only that long, so an \
                     instant fired before could run twice",
                    crate::job::schedule::length_text(self.retention_ms as u64)
                ),
            ));
        }
        let rec = self.store.get_job(job_id).await?.ok_or_else(|| Error::JobNotFound(job_id.to_string()))?;
        let next_ms = rec.next_ms;
        let job = self.resolve(rec.spec).await?;
        if job.schedule.after_previous_ms().is_some() {
            return Err(Error::FailedPrecondition(format!(
                "job '{job_id}' is after_previous: its fires follow each other's ends, so a past range has no instants to run"
            )));
        }
        if job.spec.shards.is_sharded() {
            return Err(Error::FailedPrecondition(format!(
                "job '{job_id}' is sharded: a backfill of a sharded job is not supported yet; nothing was run"
            )));
        }
        let most = MAX_BACKFILL.min(crate::store::Keep::of(&job.spec, self.worker.keep()).last.max(1) as usize);
        let to_ms = next_ms.map_or(to_ms, |next| to_ms.min(next - 1));
        let mut instants = Vec::new();
        let mut at = job.next_after_ms(from_ms - 1);
        while let Some(t) = at.filter(|t| *t <= to_ms) {
            if instants.len() == most {
                return Err(Error::invalid(
                    "to",
                    format!(
                        "the range holds more than {most} of the job's instants (at most {MAX_BACKFILL}, and no more \
                         than the job's history keeps: keep_last): backfill it in parts"
                    ),
                ));
            }
            // An instant the job's calendars exclude is not run (the schedule records it skipped).
            if job.calendars.verdict(t) == Verdict::Allowed {
                instants.push(t);
            }
            at = job.next_after_ms(t);
        }
        Ok((job, instants))
    }

    /// Whether execution `id` has not ended (a store that cannot say counts as ended: a backfill
    /// waiting on it goes on rather than hang).
    pub async fn execution_open(&self, id: &str) -> bool {
        matches!(self.store.get_execution(id).await, Ok(Some(e)) if !e.state.is_terminal())
    }

    /// Whether this node can take another backfill fire now: fewer fires wait for a worker than
    /// it has workers (a backfill paces itself to the node, so no fire waits past its deadline).
    pub fn backfill_room(&self) -> bool {
        let load = self.worker.load();
        load.queue < load.max.max(1)
    }

    /// One instant of a backfill: its fire made (its id is the instant's, so one made before, by
    /// the schedule or an earlier backfill, is not made again) and run here, as a manual fire is.
    pub async fn backfill_one(&self, job: &Job, at_ms: i64) -> Result<(Backfilled, Option<Execution>)> {
        if !self.worker.accepting() {
            return Err(Error::Draining(self.node_id.to_string()));
        }
        let fire_id = scheduled_fire_id(&job.spec.id, at_ms);
        let exec = Execution::pending(&job.spec.id, fire_id.clone(), at_ms, &self.node_id, 1);
        let lock_ttl = crate::worker::lock_ttl_ms(self.misfire_threshold_ms);
        let own = FireOwn::default();
        match self.store.trigger(&exec, None, job.spec.concurrency, lock_ttl, &own, job.spec.priority).await? {
            TriggerOutcome::Created(e) => {
                tracing::info!(job = %job.spec.id, fire = %fire_id, execution = %e.id, "backfill fire");
                self.router.run_here(job.clone(), &fire_id, None).await;
                Ok((Backfilled::Started, Some(e)))
            }
            TriggerOutcome::AlreadyFired => Ok((Backfilled::AlreadyFired, None)),
            TriggerOutcome::Skipped(e) => Ok((Backfilled::Skipped, Some(e))),
            TriggerOutcome::Held(e, replacing) => {
                if let Some(r) = replacing {
                    self.router.stop_replaced(r);
                }
                Ok((Backfilled::Held, Some(e)))
            }
            TriggerOutcome::Gone => Err(Error::JobNotFound(job.spec.id.clone())),
            other => Err(Error::unavailable(format!("a backfill fire answered {other:?}"))),
        }
    }

    /// A job with its calendars as the store holds them now (a name it lacks is missing).
    pub async fn resolve(&self, spec: JobSpec) -> Result<Job> {
        let job = Job::new(spec)?;
        if job.spec.calendars.is_empty() {
            return Ok(job);
        }
        let found = self.store.calendars(&job.spec.calendars).await?;
        let calendars = Calendars::resolve(&job.spec.calendars, &found);
        Ok(job.with_calendars(calendars))
    }

    /// A re-put of a job naming calendars keeps its stored next fire when that is a fire a
    /// calendar moved forward from an instant before now (the search from now cannot find it):
    /// still to come, allowed, earlier than the search's, and the schedule and calendars are the
    /// same as stored.
    async fn pending_moved_fire(&self, job: &Job, now: i64) -> Result<Option<i64>> {
        if job.calendars.is_empty() {
            return Ok(None);
        }
        let Some(rec) = self.store.get_job(job.id()).await? else { return Ok(None) };
        let (a, b) = (&rec.spec, &job.spec);
        let same =
            (&a.cron, a.every_ms, a.anchor_ms, &a.at_ms, a.start_ms, a.end_ms, a.spread_ms, &a.time_zone, &a.calendars)
                == (
                    &b.cron,
                    b.every_ms,
                    b.anchor_ms,
                    &b.at_ms,
                    b.start_ms,
                    b.end_ms,
                    b.spread_ms,
                    &b.time_zone,
                    &b.calendars,
                );
        Ok(rec
            .next_ms
            .filter(|n| same && *n > now && job.calendars.verdict(*n) == crate::job::calendar::Verdict::Allowed))
    }

    /// After a put of calendar `name`: each unpaused job of this shard naming it whose next fire
    /// the calendar now brings sooner (it allowed, or moved a fire to, an instant before the stored
    /// one) gets that sooner one, as a re-put of the same definition would give it (compare-and-set
    /// on its revision: a job written meanwhile is left to its writer). A later or equal one is
    /// left to the claim, which checks each instant against the calendars as they are then. How
    /// many jobs moved.
    pub async fn follow_calendar(&self, name: &str) -> Result<usize> {
        let mut moved = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list_jobs(after.as_deref(), BATCH).await?;
            for rec in &page {
                let Some(stored) = rec.next_ms else { continue };
                if rec.spec.paused || rec.spec.after_previous_ms > 0 || !rec.spec.calendars.iter().any(|c| c == name) {
                    continue;
                }
                let job = match self.resolve(rec.spec.clone()).await {
                    Ok(job) => job,
                    Err(e) => {
                        tracing::warn!(job = %rec.spec.id, calendar = %name, error = %e, "cannot follow the calendar");
                        continue;
                    }
                };
                let from = now_ms().max(rec.last_ms.unwrap_or(i64::MIN));
                if job.next_after_ms(from).is_none_or(|n| n >= stored) {
                    continue;
                }
                // One job's refusal (its calendars now leave it no fire, say) is logged, not the
                // put's: the calendar is stored, and the other jobs follow it.
                match self.write(&job, None, rec.written_by, None, Some(rec.rev)).await {
                    Ok(Some(_)) => moved += 1,
                    Ok(None) => {}
                    Err(e) => tracing::warn!(job = %rec.spec.id, calendar = %name, error = %e,
                        "the calendar brings the job's next fire sooner, but it cannot be written"),
                }
            }
            match page.last() {
                Some(r) if page.len() == BATCH => after = Some(r.spec.id.clone()),
                _ => return Ok(moved),
            }
        }
    }

    /// Creates or replaces a job, paused as `spec.paused` says: validates it (handler included),
    /// sets its watermark to the next instant after now (never back before an instant already
    /// claimed), and wakes the loop.
    pub async fn put_job(&self, spec: JobSpec) -> Result<(JobRecord, bool)> {
        let paused = spec.paused;
        self.put_job_from_api(spec, Some(paused)).await
    }

    /// `put_job` for PutJob: `paused` None keeps the stored pause state (a new job: not paused),
    /// so re-putting a definition never resumes a job an operator paused.
    pub async fn put_job_from_api(&self, spec: JobSpec, paused: Option<bool>) -> Result<(JobRecord, bool)> {
        let job = self.resolve(spec).await?;
        self.worker.registry().validate(&job.spec.handler, &job.spec.args)?;
        self.write(&job, paused, Writer::Api, None, None)
            .await?
            .ok_or_else(|| Error::FailedPrecondition("job is being written concurrently; try again".into()))
    }

    /// Applies one job of a jobs file (validated by the caller) the safe way (`job::file::plan_apply`):
    /// created when absent, written when the file changed since it was last applied, left as it is
    /// (changes made through the API included) when not. Each write is a compare-and-set on the
    /// revision read, so nodes starting at once with the same file do not fight: one writes, the
    /// others decide again on what it wrote (and find it unchanged).
    pub async fn apply_declared(&self, declared: &Declared) -> Result<(JobRecord, Apply)> {
        let job = self.resolve(declared.spec.clone()).await?;
        for _ in 0..5 {
            let stored = self.store.get_job(job.id()).await?;
            let plan = plan_apply(declared, stored.as_ref().map(|r| (&r.spec, r.applied.as_ref())));
            let rev = match (&plan, stored) {
                (Apply::Keep { .. }, Some(rec)) => return Ok((rec, plan)),
                (_, rec) => rec.map_or(0, |r| r.rev),
            };
            if let Some((rec, _)) = self.write(&job, declared.paused, Writer::File, Some(declared), Some(rev)).await? {
                return Ok((rec, plan));
            }
        }
        Err(Error::FailedPrecondition(format!("job '{}' kept changing while the jobs file was applied", job.id())))
    }

    /// One definition write, retried past a watermark that moved on. None: `expect_rev` was not
    /// the stored revision (nothing written).
    async fn write(
        &self,
        job: &Job,
        paused: Option<bool>,
        writer: Writer,
        applied: Option<&Declared>,
        expect_rev: Option<u64>,
    ) -> Result<Option<(JobRecord, bool)>> {
        let mut after = now_ms();
        // As Quartz does: a schedule no instant matches any more (Feb 31, a past year, an `at` or
        // an end in the past) is a mistake, refused to the API. A jobs file's is not: a one-shot
        // the file still lists after it fired is stored completed, with a WARN, so a node
        // restarted with that file (edited, or after the job was deleted) starts and fires the rest.
        if let Some(name) = job.calendars.missing().first() {
            return Err(crate::store::no_calendar(&job.spec, name, false));
        }
        // The calendars' check looks ahead up to a year of instants: off the async threads, so no
        // heartbeat or lease renewal waits for it.
        let never = match job.schedule.never_fires(&job.spec, after) {
            Some(e) => Some(e),
            None if job.calendars.is_empty() => None,
            None => {
                let j = job.clone();
                tokio::task::spawn_blocking(move || calendars_never_allow(&j, after))
                    .await
                    .map_err(|e| Error::unavailable(format!("the calendars' check stopped: {e}")))?
            }
        };
        if let Some(e) = never {
            if writer != Writer::File {
                return Err(e);
            }
            tracing::warn!(job = %job.spec.id, why = %e, "jobs file: the job has no instant left; stored completed");
        }
        let pending = self.pending_moved_fire(job, after).await?;
        for _ in 0..3 {
            let computed = job.next_after_ms(after);
            let w = JobWrite {
                spec: &job.spec,
                paused,
                next_ms: match (pending.filter(|p| *p > after), computed) {
                    (Some(p), Some(c)) => Some(p.min(c)),
                    (p, c) => c.or(p),
                },
                writer,
                applied,
                expect_rev,
                now_ms: now_ms(),
            };
            match self.store.write_job(&w).await? {
                WatermarkWrite::Done { record, created } => {
                    tracing::info!(job = %job.spec.id, created, source = writer.name(), paused = record.spec.paused,
                        next_fire = %crate::job::next_fire_text(record.next_ms), "job put");
                    self.wake();
                    return Ok(Some((*record, created)));
                }
                WatermarkWrite::Behind { last_ms } => after = after.max(last_ms),
                WatermarkWrite::Conflict => return Ok(None),
            }
        }
        Err(Error::FailedPrecondition("job is being fired concurrently; try again".into()))
    }

    /// Pauses (with PauseJob's note, when given) or resumes a job. Resuming starts from the next
    /// instant after now.
    pub async fn set_paused(&self, id: &str, paused: bool, note: Option<PauseNote>) -> Result<JobRecord> {
        let rec = self.store.get_job(id).await?.ok_or_else(|| Error::JobNotFound(id.to_string()))?;
        let job = self.resolve(rec.spec).await?;
        let mut after = now_ms().max(rec.last_ms.unwrap_or(i64::MIN));
        for _ in 0..3 {
            let next = if paused { None } else { job.next_after_ms(after) };
            match self.store.set_paused(id, paused, next, now_ms(), note.as_ref()).await? {
                None => return Err(Error::JobNotFound(id.to_string())),
                Some(WatermarkWrite::Done { record, .. }) => {
                    let note = note.as_ref().map(|n| crate::redact::value(&n.note)).unwrap_or_default();
                    tracing::info!(job = %id, paused, note = %note, next_fire = %crate::job::next_fire_text(record.next_ms),
                        "job paused/resumed");
                    self.wake();
                    return Ok(*record);
                }
                Some(WatermarkWrite::Behind { last_ms }) => after = after.max(last_ms),
                // Pausing is not conditional; a store answering so is broken.
                Some(WatermarkWrite::Conflict) => {
                    return Err(Error::unavailable("pause answered a revision conflict it was not asked about"))
                }
            }
        }
        Err(Error::FailedPrecondition("job is being fired concurrently; try again".into()))
    }
}

/// Most instants one backfill runs.
pub const MAX_BACKFILL: usize = 10_000;

/// What became of one instant of a backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backfilled {
    /// Its fire was made and runs (here, or where its handler is).
    Started,
    /// A fire of that instant was made before (the schedule's, or an earlier backfill's).
    AlreadyFired,
    /// The job's no-overlap lock was held: recorded skipped, as a scheduled fire would be.
    Skipped,
    /// It waits for the job's running fire (concurrency replace or buffer).
    Held,
}

/// Decrements the counter when dropped.
struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many fires may wait in one node's process for a worker before manual fires are refused.
fn max_waiting(workers: u32) -> u32 {
    workers.saturating_mul(32).max(1024)
}

/// What to claim for a due job at `now`. Pure, so tables test it. A fire of a sharded job is
/// `shards` claims, one per shard (`Some(total)`, from the job's `Shards` and, for `PerNode`, the
/// live nodes that can run it; PROTOCOL §3.23), made in one claim call, in order: the first moves
/// the watermark, the others follow it. A misfire's summary is one record, never sharded.
pub fn plan(
    job: &Job,
    rec: &JobRecord,
    now: i64,
    misfire_threshold_ms: i64,
    node_id: &str,
    epoch: u64,
    shards: Option<u32>,
) -> Vec<Claim> {
    let claims = plan_instants(job, rec, now, misfire_threshold_ms, node_id, epoch, shards);
    cap_fires(claims, job.spec.max_fires, rec.fired)
}

/// A job's `max_fires`: of `claims`, the fires up to the last one it may make, that one's
/// watermark moved to none (the job is then completed); a misfire's summary counts none. `fired`
/// is how many it made before (counted by the claims that moved its watermark).
fn cap_fires(claims: Vec<Claim>, max_fires: u32, fired: u64) -> Vec<Claim> {
    if max_fires == 0 {
        return claims;
    }
    let left = u64::from(max_fires).saturating_sub(fired);
    let mut out = Vec::with_capacity(claims.len());
    let (mut counted, mut instant) = (0u64, None);
    for mut c in claims {
        // A misfire's summary, a calendar's skip, a watermark's move: no fire of the job's.
        let summary = c.exec.state.is_terminal() || c.moves;
        if counted == left && (summary || instant != Some(c.sched_ms)) {
            if left == 0 && out.is_empty() {
                // Made its fires, yet due (a watermark the store's guard did not clear): its
                // schedule ends here, saying why, rather than stay due and be read every tick.
                c.next_ms = None;
                c.chain = false;
                c.moves = false;
                c.overlap = Concurrency::Allow;
                c.exec.close(ExecState::Misfired, format!("not fired: the job made its max_fires ({max_fires})"));
                out.push(c);
            }
            break;
        }
        if !summary {
            if instant != Some(c.sched_ms) {
                counted += 1;
                instant = Some(c.sched_ms);
            }
            if counted == left {
                c.next_ms = None;
                c.chain = false;
            }
        }
        out.push(c);
    }
    out
}

fn plan_instants(
    job: &Job,
    rec: &JobRecord,
    now: i64,
    misfire_threshold_ms: i64,
    node_id: &str,
    epoch: u64,
    shards: Option<u32>,
) -> Vec<Claim> {
    let Some(sched) = rec.next_ms else { return Vec::new() };
    let claim = |fire_id: String, at: i64, next: Option<i64>| {
        let mut exec = Execution::pending(&job.spec.id, fire_id, at, node_id, 1);
        exec.epoch = epoch;
        Claim {
            job_id: job.spec.id.clone(),
            sched_ms: at,
            next_ms: next,
            exec,
            overlap: job.spec.concurrency,
            lock_ttl_ms: crate::worker::lock_ttl_ms(misfire_threshold_ms),
            here: false,
            start: false,
            priority: job.spec.priority,
            chain: false,
            moves: false,
        }
    };
    let fire = |at: i64, next: Option<i64>| -> Vec<Claim> {
        let whole = scheduled_fire_id(&job.spec.id, at);
        if let Some(why) = calendar_skip(job, at) {
            // Excluded by a calendar that records it: one record, skipped, never sharded.
            let mut c = claim(whole, at, next);
            c.overlap = Concurrency::Allow;
            c.exec.close(ExecState::Skipped, why);
            return vec![c];
        }
        match shards {
            None => vec![claim(whole, at, next)],
            Some(total) => {
                (0..total).map(|index| claim(shard_fire_id(&whole, Shard { index, total }), at, next)).collect()
            }
        }
    };
    let misfire_why = |from: i64, to_incl: i64, next: Option<i64>, why: &str| {
        let mut c = claim(scheduled_fire_id(&job.spec.id, from), from, next);
        c.overlap = Concurrency::Allow;
        c.exec.state = ExecState::Misfired;
        c.exec.end_ms = Some(now);
        c.exec.set_error(format!(
            "missed fires from {} to {} (more than {} ms late; misfire policy {:?}{why})",
            crate::job::ms_to_datetime(from).to_rfc3339(),
            crate::job::ms_to_datetime(to_incl).to_rfc3339(),
            misfire_threshold_ms,
            job.spec.misfire
        ));
        c
    };
    let misfire = |from: i64, to_incl: i64, next: Option<i64>| misfire_why(from, to_incl, next, "");
    if let Some(next) = calendar_move(job, sched) {
        // The watermark is an instant the job's calendars (changed since it was set) omit or move
        // forward: it moves on, making no fire.
        let mut c = claim(scheduled_fire_id(&job.spec.id, sched), sched, next);
        c.overlap = Concurrency::Allow;
        c.moves = true;
        return vec![c];
    }
    if job.schedule.after_previous_ms().is_some() {
        // after_previous: one instant at a time, none after it until it ends (its end sets the
        // next: `Store::chain_next`). Late past the threshold, it runs all the same, but under
        // `skip`, where it is recorded missed and the chain goes on from now.
        let late = now - sched > misfire_threshold_ms;
        let mut claims = if late && job.spec.misfire == Misfire::Skip {
            vec![misfire(sched, sched, None)]
        } else {
            fire(sched, None)
        };
        for c in &mut claims {
            c.chain = true;
        }
        return claims;
    }
    if now - sched <= misfire_threshold_ms {
        return fire(sched, job.next_after_ms(sched));
    }
    let latest = latest_at_or_before(job, sched, now);
    match job.spec.misfire {
        Misfire::FireOnceNow if latest > sched => {
            let before_latest = job_prev_hint(sched, latest);
            let mut claims = vec![misfire(sched, before_latest, Some(latest))];
            claims.extend(fire(latest, job.next_after_ms(latest)));
            claims
        }
        Misfire::FireOnceNow => fire(sched, job.next_after_ms(sched)),
        Misfire::Skip => vec![misfire(sched, latest, job.next_after_ms(now))],
        Misfire::FireAll => {
            // Oldest first, each missed instant of the window a fire of its own (its instant its
            // id), claimed in order in one call: each moves the watermark to the next. What lies
            // before the window, and past the limit, is one summary each.
            let (limit, window) = job.catch_up();
            // One claim call stays under the tick's bound: a sharded fire is a claim per shard.
            let limit = limit.min((MAX_CLAIMS / shards.unwrap_or(1).max(1) as usize).max(1));
            let from = sched.max(now.saturating_sub(window));
            let first = if from == sched { Some(sched) } else { job.next_after_ms(from - 1) }.filter(|t| *t <= now);
            let mut claims = Vec::new();
            if first != Some(sched) {
                let to = first.map_or(latest, |f| job_prev_hint(sched, f));
                let next = first.or_else(|| job.next_after_ms(now));
                claims.push(misfire_why(sched, to, next, ", before the catch-up window"));
            }
            let mut at = first;
            let mut fired = 0;
            while let Some(t) = at.filter(|t| *t <= now && fired < limit) {
                let next = job.next_after_ms(t);
                claims.extend(fire(t, next));
                fired += 1;
                at = next;
            }
            if let Some(rest) = at.filter(|t| *t <= now) {
                claims.push(misfire_why(rest, latest, job.next_after_ms(now), ", past the catch-up limit"));
            }
            claims
        }
    }
}

/// How far past a job's first instant its calendars must allow one, or PutJob refuses it.
const CALENDAR_HORIZON_MS: i64 = 366 * 86_400_000;

/// Why a job is refused whose calendars exclude every instant of its schedule in the year after
/// its first (it would never fire).
fn calendars_never_allow(job: &Job, after: i64) -> Option<Error> {
    if job.calendars.is_empty() {
        return None;
    }
    let first = job.schedule.next_after_ms(after)?;
    let horizon = first.saturating_sub(after).saturating_add(CALENDAR_HORIZON_MS);
    if job.calendars.allows_any(&job.schedule, after, horizon) {
        return None;
    }
    Some(Error::invalid(
        "calendars",
        format!(
            "{} exclude every instant of the schedule for a year from its first ({}): the job would never fire",
            job.spec.calendars.join(", "),
            crate::job::schedule::rfc3339(first)
        ),
    ))
}

/// Why a job's calendars record instant `at` skipped (the first calendar excluding it says
/// `skip`, or one it names is missing), if they do.
fn calendar_skip(job: &Job, at: i64) -> Option<String> {
    match job.calendars.verdict(at) {
        Verdict::Excluded { calendar, on: OnExcluded::Skip, .. } => Some(format!("skipped: calendar {calendar}")),
        // Omitted or moved forward, yet reached (a catch-up past a stretch too long to search at
        // once): never run, so recorded.
        Verdict::Excluded { calendar, .. } => {
            Some(format!("skipped: calendar {calendar} (an instant it excludes, reached by a catch-up)"))
        }
        Verdict::Missing(name) => Some(format!(
            "skipped: calendar {name} does not exist (put it again, or take it off the job); no fire is made against a calendar that cannot be read"
        )),
        _ => None,
    }
}

/// Where the watermark `sched` moves to when the job's calendars omit it or move it forward (or,
/// for an `after_previous` job, exclude it at all: its fire waits for the next instant they
/// allow), making no fire: Some(next), None when they let it be.
fn calendar_move(job: &Job, sched: i64) -> Option<Option<i64>> {
    let on = match job.calendars.verdict(sched) {
        Verdict::Excluded { on, .. } => on,
        Verdict::Allowed | Verdict::Missing(_) => return None,
    };
    let end = job.schedule.end_ms.unwrap_or(i64::MAX);
    if job.schedule.after_previous_ms().is_some() {
        // Where the calendars allow, or as far as the search got (moved on again from there).
        return Some(Some(job.calendars.forward_or_last(sched)).filter(|f| *f > sched && *f <= end));
    }
    let next = job.next_after_ms(sched);
    match on {
        OnExcluded::Skip => None,
        OnExcluded::Omit => Some(next),
        // This very instant moved (it may be a moved one itself, which the search from it would
        // not see), or the job's next, whichever comes first.
        OnExcluded::Forward => {
            let moved = job.calendars.forward(sched).filter(|f| *f > sched && *f <= end);
            Some(match (moved, next) {
                (Some(m), Some(n)) => Some(m.min(n)),
                (m, n) => m.or(n),
            })
        }
    }
}

/// The summary record covers instants from the watermark up to (not including) the one fired now.
fn job_prev_hint(sched: i64, latest: i64) -> i64 {
    (latest - 1).max(sched)
}

/// The latest instant of `job` at or before `now`, starting from the watermark `from` (itself an
/// instant). Looks in growing windows back from `now`, so a per-second job late by a day costs about
/// 60 steps, not 86,400.
pub fn latest_at_or_before(job: &Job, from: i64, now: i64) -> i64 {
    const WINDOWS_MS: [i64; 6] = [60_000, 3_600_000, 86_400_000, 32 * 86_400_000, 366 * 86_400_000, i64::MAX];
    for w in WINDOWS_MS {
        let start = from.max(now.saturating_sub(w));
        let Some(mut t) = job.next_after_ms(start - 1) else { return from };
        if t > now {
            continue;
        }
        while let Some(n) = job.next_after_ms(t) {
            if n > now {
                break;
            }
            t = n;
        }
        return t;
    }
    from
}

/// A claim that stops a job whose stored definition is invalid, recording why.
fn broken_job_claim(rec: &JobRecord, e: &Error, node_id: &str) -> Option<Claim> {
    let sched = rec.next_ms?;
    let mut exec = Execution::pending(&rec.spec.id, scheduled_fire_id(&rec.spec.id, sched), sched, node_id, 1);
    exec.close(ExecState::Failed, format!("stored job definition is invalid, schedule stopped: {e}"));
    Some(Claim {
        job_id: rec.spec.id.clone(),
        sched_ms: sched,
        next_ms: None,
        exec,
        overlap: Concurrency::Allow,
        lock_ttl_ms: 1,
        here: false,
        start: false,
        priority: crate::job::Priority::Normal,
        chain: false,
        moves: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSpec;
    use chrono::{TimeZone, Utc};

    fn ms(h: u32, m: u32, s: u32) -> i64 {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, s).unwrap().timestamp_millis()
    }

    fn job(cron: &str, misfire: Misfire) -> Job {
        Job::new(JobSpec { id: "j".into(), cron: cron.into(), handler: "noop".into(), misfire, ..Default::default() })
            .expect("valid")
    }

    fn rec(j: &Job, next: i64) -> JobRecord {
        JobRecord::new(j.spec.clone(), Some(next), None, 0)
    }

    /// (state, sched, next) of each claim.
    fn summary(c: &[Claim]) -> Vec<(ExecState, i64, Option<i64>)> {
        c.iter().map(|c| (c.exec.state, c.sched_ms, c.next_ms)).collect()
    }

    #[test]
    fn on_time_fire_advances_to_next_instant() {
        let j = job("*/10 * * * * *", Misfire::FireOnceNow);
        let p = plan(&j, &rec(&j, ms(10, 0, 0)), ms(10, 0, 0) + 3, 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![(ExecState::Pending, ms(10, 0, 0), Some(ms(10, 0, 10)))]);
        assert_eq!(p[0].exec.fire_id, format!("j@{}", ms(10, 0, 0)));
    }

    /// `after_previous`: one fire, its next left to the chain (its end); late past the threshold
    /// it runs all the same, or under `skip` is recorded missed; the fire that makes max_fires
    /// ends the chain.
    #[test]
    fn after_previous_claims_one_fire_and_leaves_its_next_to_its_end() {
        let chained = |misfire: Misfire, max_fires: u32| {
            Job::new(JobSpec {
                id: "j".into(),
                after_previous_ms: 5_000,
                handler: "noop".into(),
                misfire,
                max_fires,
                ..Default::default()
            })
            .expect("valid")
        };
        let j = chained(Misfire::FireOnceNow, 0);
        for now in [ms(10, 0, 0), ms(11, 0, 0)] {
            let p = plan(&j, &rec(&j, ms(10, 0, 0)), now, 60_000, "n1", 7, None);
            assert_eq!(summary(&p), vec![(ExecState::Pending, ms(10, 0, 0), None)]);
            assert!(p[0].chain);
        }
        let j = chained(Misfire::Skip, 0);
        let p = plan(&j, &rec(&j, ms(10, 0, 0)), ms(11, 0, 0), 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![(ExecState::Misfired, ms(10, 0, 0), None)]);
        assert!(p[0].chain, "the chain goes on from the misfire's record");
        let j = chained(Misfire::FireOnceNow, 3);
        let mut r = rec(&j, ms(10, 0, 0));
        r.fired = 2;
        let p = plan(&j, &r, ms(10, 0, 0), 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![(ExecState::Pending, ms(10, 0, 0), None)]);
        assert!(!p[0].chain, "the last fire ends the chain");
    }

    #[test]
    fn late_within_threshold_catches_up_one_instant_at_a_time() {
        let j = job("* * * * * *", Misfire::FireOnceNow);
        let p = plan(&j, &rec(&j, ms(10, 0, 0)), ms(10, 0, 30), 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![(ExecState::Pending, ms(10, 0, 0), Some(ms(10, 0, 1)))]);
    }

    #[test]
    fn misfire_fire_once_now_records_gap_and_fires_latest() {
        let j = job("* * * * * *", Misfire::FireOnceNow);
        let now = ms(12, 0, 0) + 400;
        let p = plan(&j, &rec(&j, ms(10, 0, 0)), now, 60_000, "n1", 7, None);
        assert_eq!(
            summary(&p),
            vec![
                (ExecState::Misfired, ms(10, 0, 0), Some(ms(12, 0, 0))),
                (ExecState::Pending, ms(12, 0, 0), Some(ms(12, 0, 1))),
            ]
        );
        assert!(p[0].exec.error.starts_with("missed fires from 2026-03-01T10:00:00"), "{}", p[0].exec.error);
    }

    #[test]
    fn misfire_of_a_single_late_instant_just_fires_it() {
        let j = job("0 0 6 * * *", Misfire::FireOnceNow);
        let p = plan(&j, &rec(&j, ms(6, 0, 0)), ms(9, 0, 0), 60_000, "n1", 7, None);
        let next_day = ms(6, 0, 0) + 86_400_000;
        assert_eq!(summary(&p), vec![(ExecState::Pending, ms(6, 0, 0), Some(next_day))]);
    }

    #[test]
    fn misfire_skip_records_and_moves_past_now() {
        let j = job("0 * * * * *", Misfire::Skip);
        let p = plan(&j, &rec(&j, ms(10, 0, 0)), ms(12, 30, 5), 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![(ExecState::Misfired, ms(10, 0, 0), Some(ms(12, 31, 0)))]);
        assert!(p[0].exec.error.contains("to 2026-03-01T12:30:00"), "{}", p[0].exec.error);
    }

    /// `fire_all`: each missed instant of the window runs, oldest first, as its own fire, each
    /// claim moving the watermark to the next; before the window and past the limit, a summary.
    #[test]
    fn fire_all_catches_up_each_missed_instant_within_its_window_and_limit() {
        let all = |limit: u32, window_ms: u64| {
            Job::new(JobSpec {
                id: "j".into(),
                cron: "0 * * * * *".into(),
                handler: "noop".into(),
                misfire: Misfire::FireAll,
                catch_up_limit: limit,
                catch_up_window_ms: window_ms,
                ..Default::default()
            })
            .expect("valid")
        };
        let m = |min: u32| ms(10, min, 0);
        let pending = |at: i64| (ExecState::Pending, at, Some(at + 60_000));
        // Down from 10:00 to 10:03:30, the whole gap in the window: four fires, in order.
        let j = all(0, 0);
        let p = plan(&j, &rec(&j, m(0)), m(3) + 30_000, 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![pending(m(0)), pending(m(1)), pending(m(2)), pending(m(3))]);
        let ids: Vec<&str> = p.iter().map(|c| c.exec.fire_id.as_str()).collect();
        assert_eq!(ids, [0, 1, 2, 3].map(|i| format!("j@{}", m(i))));
        // A 2-minute window: 10:00 and 10:01 are before it (one summary), 10:02 and 10:03 run.
        let j = all(0, 120_000);
        let p = plan(&j, &rec(&j, m(0)), m(3) + 30_000, 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![(ExecState::Misfired, m(0), Some(m(2))), pending(m(2)), pending(m(3))]);
        assert!(p[0].exec.error.contains("before the catch-up window"), "{}", p[0].exec.error);
        // A limit of 2: 10:00 and 10:01 run, 10:02 and 10:03 are one summary, then 10:04 is next.
        let j = all(2, 0);
        let p = plan(&j, &rec(&j, m(0)), m(3) + 30_000, 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![pending(m(0)), pending(m(1)), (ExecState::Misfired, m(2), Some(m(4)))]);
        assert!(
            p[2].exec.error.contains("past the catch-up limit") && p[2].exec.error.contains("to 2026-03-01T10:03:00")
        );
        // Nothing in the window (down for an hour, window 30 s): one summary to the next instant.
        let j = all(0, 30_000);
        let p = plan(&j, &rec(&j, m(0)), ms(11, 0, 40), 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![(ExecState::Misfired, m(0), Some(ms(11, 1, 0)))]);
    }

    /// `max_fires`: the fire that makes the last one ends the schedule (its next is none); the
    /// claims after it are dropped; a summary counts none; a sharded fire's shards count once.
    #[test]
    fn max_fires_ends_the_schedule_at_the_last_fire() {
        let capped = |max_fires: u32, fired: u64| {
            let j = Job::new(JobSpec {
                id: "j".into(),
                cron: "0 * * * * *".into(),
                handler: "noop".into(),
                misfire: Misfire::FireAll,
                max_fires,
                ..Default::default()
            })
            .expect("valid");
            let r = JobRecord { fired, ..rec(&j, ms(10, 0, 0)) };
            (j, r)
        };
        let pending = |at: i64, next: Option<i64>| (ExecState::Pending, at, next);
        // On time, two left: the fire moves the watermark on.
        let (j, r) = capped(5, 3);
        let p = plan(&j, &r, ms(10, 0, 0), 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![pending(ms(10, 0, 0), Some(ms(10, 1, 0)))]);
        // One left: this fire is the last.
        let (j, r) = capped(5, 4);
        let p = plan(&j, &r, ms(10, 0, 0), 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![pending(ms(10, 0, 0), None)]);
        // A catch-up of four with two left: two fires, the second the last; nothing after.
        let (j, r) = capped(5, 3);
        let p = plan(&j, &r, ms(10, 3, 30), 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![pending(ms(10, 0, 0), Some(ms(10, 1, 0))), pending(ms(10, 1, 0), None)]);
        // Sharded: the last fire's three shards all end the schedule.
        let (j, r) = capped(1, 0);
        let p = plan(&j, &r, ms(10, 0, 0), 60_000, "n1", 7, Some(3));
        assert_eq!(summary(&p), vec![pending(ms(10, 0, 0), None); 3]);
        // Made its fires yet due (the store's guard bypassed): its schedule ends with a record why.
        let (j, r) = capped(5, 5);
        let p = plan(&j, &r, ms(10, 0, 0), 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![(ExecState::Misfired, ms(10, 0, 0), None)]);
        assert!(p[0].exec.error.contains("max_fires (5)"), "{}", p[0].exec.error);
    }

    #[test]
    fn a_sharded_fire_is_one_claim_per_shard_and_its_misfire_summary_one_record() {
        let j = job("*/10 * * * * *", Misfire::FireOnceNow);
        let p = plan(&j, &rec(&j, ms(10, 0, 0)), ms(10, 0, 0), 60_000, "n1", 7, Some(3));
        let at = ms(10, 0, 0);
        let ids: Vec<&str> = p.iter().map(|c| c.exec.fire_id.as_str()).collect();
        assert_eq!(ids, [format!("j@{at}/0of3"), format!("j@{at}/1of3"), format!("j@{at}/2of3")]);
        assert!(p.iter().all(|c| c.sched_ms == at && c.next_ms == Some(ms(10, 0, 10))));
        let p = plan(&j, &rec(&j, ms(10, 0, 0)), ms(12, 0, 0) + 400, 60_000, "n1", 7, Some(2));
        assert_eq!(
            summary(&p),
            vec![
                (ExecState::Misfired, ms(10, 0, 0), Some(ms(12, 0, 0))),
                (ExecState::Pending, ms(12, 0, 0), Some(ms(12, 0, 10))),
                (ExecState::Pending, ms(12, 0, 0), Some(ms(12, 0, 10))),
            ]
        );
        assert_eq!(p[0].exec.fire_id, format!("j@{}", ms(10, 0, 0)));
        assert!(p[2].exec.fire_id.ends_with("/1of2"));
    }

    #[test]
    fn forbid_jobs_claim_with_lock() {
        let mut j = job("* * * * * *", Misfire::FireOnceNow);
        j.spec.concurrency = Concurrency::Forbid;
        let p = plan(&j, &rec(&j, ms(10, 0, 0)), ms(10, 0, 0), 60_000, "n1", 7, None);
        assert!(p[0].overlap == Concurrency::Forbid && p[0].lock_ttl_ms >= 60_000);
    }

    #[test]
    fn latest_instant_search_is_exact() {
        let j = job("*/7 * * * * *", Misfire::FireOnceNow);
        // Instants at :00 :07 ... :56 each minute.
        assert_eq!(latest_at_or_before(&j, ms(0, 0, 0), ms(5, 0, 3)), ms(5, 0, 0));
        assert_eq!(latest_at_or_before(&j, ms(0, 0, 0), ms(5, 0, 59)), ms(5, 0, 56));
        let daily = job("0 0 6 * * *", Misfire::FireOnceNow);
        let five_days = 5 * 86_400_000;
        assert_eq!(latest_at_or_before(&daily, ms(6, 0, 0), ms(7, 0, 0) + five_days), ms(6, 0, 0) + five_days);
    }

    /// A job's calendars at its claim: an instant a `skip` calendar excludes is one skipped record
    /// (never sharded), not a fire; one an `omit` or `forward` calendar excludes (a calendar
    /// changed after the watermark was set) is a move of the watermark to the job's next fire, or
    /// to where the instant moves; a missing calendar records the instant skipped, saying so.
    #[test]
    fn a_claim_checks_its_instant_against_the_calendars_as_they_are_now() {
        use crate::job::calendar::{Calendar, CalendarDef, Calendars, OnExcluded};
        use std::collections::HashMap;
        use std::sync::Arc;
        let with = |on: OnExcluded| {
            let def = CalendarDef {
                name: "noon".into(),
                excluded_windows: vec!["10:00:05-10:00:25".into()],
                on_excluded: on,
                ..Default::default()
            };
            let found = HashMap::from([("noon".to_string(), Arc::new(Calendar::new(def).expect("valid")))]);
            let spec = JobSpec { calendars: vec!["noon".into()], ..job("*/10 * * * * *", Misfire::FireOnceNow).spec };
            Job::new(spec).expect("valid").with_calendars(Calendars::resolve(&["noon".into()], &found))
        };
        let at = ms(10, 0, 10);
        let skip = with(OnExcluded::Skip);
        let p = plan(&skip, &rec(&skip, at), at, 60_000, "n1", 7, Some(3));
        assert_eq!(summary(&p), vec![(ExecState::Skipped, at, Some(ms(10, 0, 20)))]);
        assert_eq!(p[0].exec.error, "skipped: calendar noon");
        assert!(!p[0].runs() && !p[0].moves);
        let omit = with(OnExcluded::Omit);
        let p = plan(&omit, &rec(&omit, at), at, 60_000, "n1", 7, None);
        assert_eq!((p.len(), p[0].moves, p[0].sched_ms, p[0].next_ms), (1, true, at, Some(ms(10, 0, 30))));
        let forward = with(OnExcluded::Forward);
        let p = plan(&forward, &rec(&forward, at), at, 60_000, "n1", 7, None);
        assert_eq!((p.len(), p[0].moves, p[0].next_ms), (1, true, Some(ms(10, 0, 25))));
        // At the instant it moved to, the fire is made there.
        let p = plan(&forward, &rec(&forward, ms(10, 0, 25)), ms(10, 0, 25), 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![(ExecState::Pending, ms(10, 0, 25), Some(ms(10, 0, 30)))]);
        assert_eq!(p[0].exec.fire_id, format!("j@{}", ms(10, 0, 25)));
        // A missing calendar: skipped, saying so; allowed instants of a job whose calendars allow
        // them fire as usual.
        let missing =
            Job::new(JobSpec { calendars: vec!["gone".into()], ..job("*/10 * * * * *", Misfire::FireOnceNow).spec })
                .expect("valid")
                .with_calendars(Calendars::resolve(&["gone".into()], &HashMap::new()));
        let p = plan(&missing, &rec(&missing, ms(10, 0, 0)), ms(10, 0, 0), 60_000, "n1", 7, None);
        assert_eq!(p[0].exec.state, ExecState::Skipped);
        assert!(p[0].exec.error.starts_with("skipped: calendar gone does not exist"), "{}", p[0].exec.error);
        let p = plan(&skip, &rec(&skip, ms(10, 0, 0)), ms(10, 0, 0), 60_000, "n1", 7, None);
        assert_eq!(summary(&p), vec![(ExecState::Pending, ms(10, 0, 0), Some(ms(10, 0, 10)))]);
        // max_fires counts no skip and no move.
        let capped = Job::new(JobSpec { max_fires: 1, ..skip.spec.clone() })
            .expect("valid")
            .with_calendars(skip.calendars.clone());
        let p = plan(&capped, &rec(&capped, at), at + 20_000, 60_000, "n1", 7, None);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].exec.state, ExecState::Skipped);
    }
}
