//! In-memory store: the embedded default for a single node, with nothing to install. Every trait
//! method is one critical section under one mutex, which is what makes it atomic like the Redis
//! scripts. State is lost on exit; `rota server --jobs FILE` puts the jobs back at start.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{
    now_ms, Accept, Beat, Cancel, Chained, Claim, ClaimOutcome, Closing, ClusterStore, DeadAttempt, Due, Enqueue,
    ExecFilter, ExecStore, Fence, Finish, FireOwn, FireState, FireStore, JobRecord, JobStore, JobWrite, Keep,
    LeaseAcquire, MasterOnly, NodeFires, NodeRecord, PauseNote, Reap, ReapBy, ReapRequest, Register, Replacing, Slots,
    Start, StartedFire, StopRequest, Store, Taken, TriggerOutcome, WatermarkWrite, WATCH_BUFFER,
};
use crate::error::{Error, Result};
use crate::execution::{ExecState, Execution};
use crate::job::calendar::{Calendar, CalendarDef, MAX_CALENDARS};
use crate::job::limit::Limit;
use crate::job::schedule::chain_next_ms;
use crate::job::{Concurrency, JobSpec, Priority};

/// Most execution records kept in memory (about 1 KiB each), so a busy single node cannot grow
/// without bound before retention expires them.
pub const MAX_EXECUTIONS: usize = 200_000;

pub struct MemoryStore {
    state: Mutex<State>,
    events: broadcast::Sender<Execution>,
    retention_ms: i64,
    /// A gone node stays listed this long after its record lapsed.
    node_keep_ms: i64,
    /// How many of the newest executions a listing across jobs shows, beside every open one
    /// (`execution_recent`, as the Redis store's bounded index).
    recent: u64,
    timing: super::FireTiming,
    /// Wakes `take_queued` waiters when something is queued.
    queued: tokio::sync::Notify,
}

/// The fire record (docs/PROTOCOL.md §4.1): its state and owner; every hand-off compares and sets it.
#[derive(Debug, Clone)]
struct FireRec {
    state: FireState,
    job: String,
    sched: i64,
    epoch: u64,
    node: String,
    inc: String,
    next_exec: Option<String>,
    exec: String,
    deadline_ms: i64,
    /// While `dispatching`: when the master's hand-off is overdue.
    dispatch_deadline: i64,
    attempts: u32,
    recoveries: u32,
    manual: bool,
    expiry: i64,
    /// When the current attempt started (ms).
    started: i64,
    /// A manual fire's own arguments (TriggerJob's), returned by every take and start of it.
    args: Option<serde_json::Value>,
    /// A manual fire's target tags (TriggerJob's `target_selector`; the hash's `sel`).
    selector: BTreeMap<String, String>,
    /// Its job's priority at its claim: the queue list it waits in (the hash's `prio`).
    priority: Priority,
}

/// A node's durable queue: one list per priority (`Priority::ALL` order), each newest first, as
/// LRANGE reads the Redis lists (section 3.22).
#[derive(Debug, Default)]
struct NodeQueue([std::collections::VecDeque<String>; 3]);

impl NodeQueue {
    fn push(&mut self, level: Priority, fire: &str) {
        self.0[level.rank()].push_front(fire.to_string());
    }

    /// Takes `fire` out of whichever level holds it.
    fn remove(&mut self, fire: &str) -> bool {
        for level in &mut self.0 {
            if let Some(i) = level.iter().position(|x| x == fire) {
                level.remove(i);
                return true;
            }
        }
        false
    }

    fn len(&self) -> usize {
        self.0.iter().map(|l| l.len()).sum()
    }

    /// The levels holding entries, highest first.
    fn waiting(&self) -> Vec<Priority> {
        Priority::ALL.into_iter().filter(|p| !self.0[p.rank()].is_empty()).collect()
    }

    /// The oldest entry of the highest level holding one.
    fn next(&self) -> Option<&String> {
        self.0.iter().find_map(|l| l.back())
    }
}

impl FireRec {
    /// Its current attempt as a start answers it (`spec`: the job's definition as stored).
    fn started_fire(&self, spec: Option<JobSpec>, deadline_ms: Option<i64>) -> StartedFire {
        StartedFire {
            exec_id: self.exec.clone(),
            attempt: self.attempts,
            job_id: self.job.clone(),
            sched_ms: self.sched,
            epoch: self.epoch,
            manual: self.manual,
            start_ms: self.started,
            job: spec,
            deadline_ms,
            args: self.args.clone(),
            selector: self.selector.clone(),
        }
    }
}

/// What a fire of an exclusive job found at the job's lock (`State::meet_lock`).
#[derive(Debug, PartialEq)]
enum Met {
    /// It took the lock (or needs none).
    Locked,
    Held(Option<Replacing>),
    Skipped,
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<String, JobRecord>,
    /// (next_ms, job id) for unpaused jobs with a watermark.
    due: BTreeSet<(i64, String)>,
    fires: HashMap<String, FireRec>,
    /// Whole fires fanned out into shards (claim.lua's marker at the whole fire's key) -> expiry ms.
    fanned: HashMap<String, i64>,
    /// node -> (live incarnation, expiry ms).
    hb: HashMap<String, (String, i64)>,
    /// Per node: incarnations whose running work was taken over (they may never beat again).
    gone: HashMap<String, std::collections::HashSet<String>>,
    /// Dead attempts reaped and not yet closed by the caller (as the `closing` hash).
    closings: BTreeMap<String, Closing>,
    queues: HashMap<String, NodeQueue>,
    /// Nodes whose doorbell rang since a take last found their queue empty (`wait_queued`).
    bells: std::collections::HashSet<String>,
    processing: HashMap<String, Vec<String>>,
    dlq: Vec<String>,
    /// node -> stop requests for its running fires (`cancel`, `take_stops`).
    stops: HashMap<String, Vec<StopRequest>>,
    /// job id -> (owner fire id, expiry ms).
    locks: HashMap<String, (String, i64)>,
    /// job id -> the fires waiting for its lock, oldest first (concurrency replace and buffer).
    held: HashMap<String, std::collections::VecDeque<String>>,
    /// The concurrency limits, and each one's slots: holder -> lease expiry ms.
    limits: BTreeMap<String, Limit>,
    /// The calendars, and those being deleted (no job may name them).
    calendars: BTreeMap<String, CalendarDef>,
    calendars_deleted: BTreeSet<String>,
    slots: HashMap<String, HashMap<String, i64>>,
    /// execution id -> (record, expiry ms). Ids are UUIDv7, so the map is in creation order.
    execs: BTreeMap<String, (Execution, i64)>,
    /// Per job, its executions (as the job's Redis index): the newest ones, trimmed to `Keep`.
    job_execs: HashMap<String, BTreeSet<String>>,
    /// Per job, failed executions older than those, kept besides (`Keep::failed`).
    job_failed: HashMap<String, BTreeSet<String>>,
    /// (job, idempotency key) -> (execution id, expiry ms).
    idem: HashMap<(String, String), (String, i64)>,
    nodes: BTreeMap<String, (NodeRecord, i64)>,
    /// (lease, expiry ms).
    lease: Option<(Fence, i64)>,
    /// Job id -> when it completed (the Redis store's completed index; `expire_completed`).
    completed: HashMap<String, i64>,
    epoch: u64,
}

impl MemoryStore {
    pub fn new(retention_ms: u64) -> MemoryStore {
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        MemoryStore {
            state: Mutex::new(State::default()),
            events,
            retention_ms: retention_ms as i64,
            node_keep_ms: super::DEFAULT_DEAD_NODE_RETENTION_MS as i64,
            recent: super::DEFAULT_RECENT_EXECUTIONS,
            timing: super::FireTiming::default(),
            queued: tokio::sync::Notify::new(),
        }
    }

    pub fn with_fire_timing(mut self, timing: super::FireTiming) -> Self {
        self.timing = timing;
        self
    }

    /// How long a gone node stays listed after its last heartbeat (`dead_node_retention_ms`).
    pub fn with_node_retention(mut self, ms: u64) -> Self {
        self.node_keep_ms = ms as i64;
        self
    }

    /// See `RedisStore::with_recent_executions`.
    pub fn with_recent_executions(mut self, n: u64) -> Self {
        self.recent = n;
        self
    }

    fn new_fire(&self, e: &Execution, state: FireState, now: i64, manual: bool) -> FireRec {
        FireRec {
            state,
            job: e.job_id.clone(),
            sched: e.scheduled_ms,
            epoch: e.epoch,
            node: String::new(),
            inc: String::new(),
            next_exec: matches!(state, FireState::Dispatching | FireState::Held).then(|| e.id.clone()),
            exec: e.id.clone(),
            deadline_ms: e.scheduled_ms.max(now) + self.timing.misfire_threshold_ms as i64,
            dispatch_deadline: now + self.timing.dispatch_deadline_ms as i64,
            attempts: 0,
            recoveries: 0,
            manual,
            expiry: now + self.retention_ms,
            started: 0,
            args: None,
            selector: BTreeMap::new(),
            priority: Priority::Normal,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        // A poisoned mutex means a panic mid-update; the state may be half-written, so refuse service.
        self.state.lock().map_err(|_| Error::unavailable("memory store poisoned by a panic"))
    }

    /// Starts taken fire `fire_id` under execution `exec` (compare-and-set done by the caller):
    /// running, attempt + 1, beginning at its instant; its `running` record written (start.lua,
    /// and accept.lua and claim.lua's started fires). The record is for the caller to announce.
    #[allow(clippy::too_many_arguments)]
    fn begin(
        &self,
        st: &mut State,
        fire_id: &str,
        node: &str,
        inc: &str,
        exec: &str,
        spec: Option<JobSpec>,
        now: i64,
    ) -> Option<(StartedFire, Execution)> {
        let f = st.fires.get_mut(fire_id)?;
        f.state = FireState::Running;
        f.node = node.to_string();
        f.exec = exec.to_string();
        f.inc = inc.to_string();
        f.next_exec = None;
        f.attempts += 1;
        // Started ahead of its instant, it begins at the instant (see `super::started_at`).
        f.started = super::started_at(now, f.sched);
        let started = f.started_fire(spec, None);
        // The attempt's `running` record, in the same step as the start.
        let record = started.running_record(fire_id, node);
        st.insert_exec(&record, self.retention_ms, now);
        Some((started, record))
    }

    fn announce(&self, e: &Execution) {
        // No watcher is not an error.
        let _ = self.events.send(e.clone());
    }
}

impl State {
    /// Keeps the completed index as put_job.lua does: a job with no next fire left, unpaused and
    /// not waiting on a fire, is in it (from when it first was); any other is not.
    fn mark_completed(&mut self, rec: &JobRecord, now: i64) {
        if rec.completed() {
            self.completed.entry(rec.spec.id.clone()).or_insert(now);
        } else {
            self.completed.remove(&rec.spec.id);
        }
    }

    fn set_due(&mut self, id: &str, old: Option<i64>, new: Option<i64>) {
        if let Some(o) = old {
            self.due.remove(&(o, id.to_string()));
        }
        if let Some(n) = new {
            self.due.insert((n, id.to_string()));
        }
    }

    fn live(&self, node: &str, inc: &str, now: i64) -> bool {
        self.hb.get(node).is_some_and(|(i, exp)| i == inc && *exp > now)
    }

    /// A fire made `accepted` by `node`'s incarnation `inc`, at the head of its processing list
    /// (accept.lua, claim.lua's `here`, steal.lua).
    fn take_fire(&mut self, fire_id: &str, node: &str, inc: &str) {
        if let Some(f) = self.fires.get_mut(fire_id) {
            f.state = FireState::Accepted;
            f.node = node.to_string();
            f.inc = inc.to_string();
        }
        self.processing.entry(node.to_string()).or_default().insert(0, fire_id.to_string());
    }

    fn remove_processing(&mut self, node: &str, fire_id: &str) {
        if let Some(p) = self.processing.get_mut(node) {
            p.retain(|x| x != fire_id);
        }
    }

    fn lease_value(&self, now: i64) -> Option<&Fence> {
        self.lease.as_ref().filter(|(_, exp)| *exp > now).map(|(v, _)| v)
    }

    fn lock_held(&self, job: &str, now: i64) -> bool {
        self.locks.get(job).is_some_and(|(_, exp)| *exp > now)
    }

    /// As `hold` in prelude.lua: fire `fire` of job `job` found the lock held under `overlap`
    /// (replace or buffer). None when the buffer is full (the caller records it skipped). Else it
    /// is held (the caller makes its fire `Held`); a replace first ends the fires held before it
    /// skipped (their records, to announce, are pushed on `ended`) and asks the running holder to
    /// stop.
    fn hold(
        &mut self,
        overlap: Concurrency,
        job: &str,
        fire: &str,
        now: i64,
        retention_ms: i64,
        ended: &mut Vec<Execution>,
    ) -> Option<Option<Replacing>> {
        let mut stop = None;
        if overlap == Concurrency::Replace {
            self.replace_held(job, fire, now, retention_ms, ended);
            let holder = self.locks.get(job).map(|(o, _)| o.clone());
            if let Some(f) = holder.as_ref().and_then(|h| self.fires.get(h)).filter(|f| f.state == FireState::Running) {
                let r = Replacing {
                    node: f.node.clone(),
                    stop: StopRequest {
                        fire: holder.clone().unwrap_or_default(),
                        exec: f.exec.clone(),
                        why: super::replaced_why(fire),
                    },
                };
                self.stops.entry(r.node.clone()).or_default().push(r.stop.clone());
                stop = Some(r);
            }
        } else if self.held.get(job).map_or(0, |q| q.len()) >= overlap.held_limit() as usize {
            return None;
        }
        self.held.entry(job.to_string()).or_default().push_back(fire.to_string());
        Some(stop)
    }

    /// As `replace_held` in prelude.lua: the fires held for `job` end skipped, replaced by `fire`.
    fn replace_held(&mut self, job: &str, fire: &str, now: i64, retention_ms: i64, ended: &mut Vec<Execution>) {
        let waiting: Vec<String> = self.held.remove(job).unwrap_or_default().into();
        for w in waiting {
            let Some(f) = self.fires.get_mut(&w).filter(|f| f.state == FireState::Held) else { continue };
            f.state = FireState::Skipped;
            let id = f.next_exec.take().unwrap_or_default();
            f.exec = id.clone();
            if let Some(mut e) = self.execs.get(&id).map(|(e, _)| e.clone()) {
                e.state = ExecState::Skipped;
                e.end_ms = Some(now);
                e.set_error(format!(
                    "skipped: replaced by a newer fire, {fire}, before it began (concurrency replace)"
                ));
                self.insert_exec(&e, retention_ms, now);
                ended.push(e);
            }
        }
    }

    /// As `meet_lock` in prelude.lua: a fire meets its job's lock (allow: none to meet). It takes a free one; a lock free while fires are held is theirs: a replace fire
    /// replaces them and takes it, any other is held behind them (or skipped) and the oldest
    /// takes it. A held lock: forbid skips, the others hold (`hold`).
    #[allow(clippy::too_many_arguments)]
    fn meet_lock(
        &mut self,
        overlap: Concurrency,
        job: &str,
        fire: &str,
        now: i64,
        lock_ttl_ms: u64,
        retention_ms: i64,
        timing: &super::FireTiming,
        ended: &mut Vec<Execution>,
    ) -> Met {
        if !overlap.exclusive() {
            return Met::Locked;
        }
        let waiting = self.free_with_waiting(overlap, job, now);
        if waiting && overlap == Concurrency::Replace {
            self.replace_held(job, fire, now, retention_ms, ended);
        }
        // Theirs (held fires wait for it), or another fire's: not taken.
        let taken = self.lock_held(job, now) || (waiting && overlap != Concurrency::Replace);
        if !taken {
            self.locks.insert(job.to_string(), (fire.to_string(), now + lock_ttl_ms as i64));
            return Met::Locked;
        }
        let met = match overlap {
            Concurrency::Forbid => Met::Skipped,
            o => self.hold(o, job, fire, now, retention_ms, ended).map_or(Met::Skipped, Met::Held),
        };
        if waiting {
            self.locks.remove(job);
            self.promote(job, now, timing, None);
        }
        met
    }

    /// Whether the job's lock is free while fires wait for it (its holder ended without handing it
    /// on, and it expired): as claim.lua's `waiting`.
    fn free_with_waiting(&self, overlap: Concurrency, job: &str, now: i64) -> bool {
        overlap.held_limit() > 0 && !self.lock_held(job, now) && self.held.get(job).is_some_and(|q| !q.is_empty())
    }

    /// Into `node`'s queue at `level`, ringing its doorbell (prelude.lua's `push_queue`); the caller
    /// wakes the waiters (`MemoryStore::queued`).
    fn queue_push(&mut self, node: &str, level: Priority, fire: &str) {
        self.queues.entry(node.to_string()).or_default().push(level, fire);
        self.bells.insert(node.to_string());
    }

    /// As `promote` in prelude.lua: the job's lock is free; its oldest held fire takes it, into
    /// `queue_on`'s queue when given, else `dispatching` and due for the sweep. True when the
    /// caller should wake the queue's takers.
    fn promote(&mut self, job: &str, now: i64, timing: &super::FireTiming, queue_on: Option<&str>) -> bool {
        while let Some(fire) = self.held.get_mut(job).and_then(|q| q.pop_front()) {
            let Some(f) = self.fires.get_mut(&fire).filter(|f| f.state == FireState::Held) else { continue };
            f.deadline_ms = now + timing.misfire_threshold_ms as i64;
            let ttl = super::lock_ttl_ms(timing.misfire_threshold_ms as i64) as i64;
            match queue_on {
                Some(node) => {
                    f.state = FireState::Queued;
                    f.node = node.to_string();
                    f.inc.clear();
                    let level = f.priority;
                    self.queue_push(node, level, &fire);
                }
                None => {
                    f.state = FireState::Dispatching;
                    f.dispatch_deadline = now;
                }
            }
            self.locks.insert(job.to_string(), (fire, now + ttl));
            if self.held.get(job).is_some_and(|q| q.is_empty()) {
                self.held.remove(job);
            }
            return queue_on.is_some();
        }
        self.held.remove(job);
        false
    }

    /// Lets go of the job's lock when `fire` holds it, and hands it on (`promote`). A lock that
    /// expired is no one's (as the key gone in Redis): the master's sweep hands it on.
    fn release(&mut self, job: &str, fire: &str, now: i64, timing: &super::FireTiming, queue_on: Option<&str>) -> bool {
        if self.locks.get(job).is_some_and(|(o, exp)| o == fire && *exp > now) {
            self.locks.remove(job);
            return self.promote(job, now, timing, queue_on);
        }
        false
    }

    fn insert_exec(&mut self, e: &Execution, retention_ms: i64, now: i64) {
        self.execs.insert(e.id.clone(), (e.clone(), now + retention_ms));
        self.job_execs.entry(e.job_id.clone()).or_default().insert(e.id.clone());
        // Bounded memory whatever the retention: the oldest records go first.
        while self.execs.len() > MAX_EXECUTIONS {
            self.execs.pop_first();
        }
    }

    /// A job's history past its caps (as `trim_history` in the Redis store's finish): the oldest of
    /// its newest executions beyond `keep.last` go, a failed one into the failure index (kept to
    /// `keep.failed`), an open one stays; the rest are deleted.
    fn trim_history(&mut self, job: &str, keep: Keep, own: &str, now: i64) {
        let State { job_execs, job_failed, execs, .. } = self;
        let Some(ids) = job_execs.get_mut(job) else { return };
        // Entries whose record is gone (expired, or pushed out by MAX_EXECUTIONS) do not count.
        ids.retain(|id| execs.get(id).is_some_and(|(_, exp)| *exp > now));
        if !keep.trim_due(ids.len()) {
            return;
        }
        let old: Vec<String> = ids.iter().take((ids.len() - keep.last as usize).min(Keep::TRIM_MAX)).cloned().collect();
        let failed = job_failed.entry(job.to_string()).or_default();
        for id in old {
            let state = execs.get(&id).map(|(e, _)| e.state);
            match state {
                Some(s) if !s.is_terminal() || id == own => continue,
                Some(s) if s.is_failure() && keep.failed > 0 => {
                    failed.insert(id.clone());
                }
                _ => {
                    execs.remove(&id);
                }
            }
            ids.remove(&id);
        }
        failed.retain(|id| execs.get(id).is_some_and(|(_, exp)| *exp > now));
        for _ in 0..failed.len().saturating_sub(keep.failed as usize).min(Keep::TRIM_MAX) {
            if let Some(id) = failed.pop_first() {
                execs.remove(&id);
            }
        }
    }
}

#[async_trait]
impl super::CalendarStore for MemoryStore {
    async fn put_calendar(&self, def: &CalendarDef) -> Result<()> {
        let mut st = self.lock()?;
        if !st.calendars.contains_key(&def.name) && st.calendars.len() >= MAX_CALENDARS {
            return Err(Error::invalid("name", "the cluster keeps no more calendars; delete one first"));
        }
        st.calendars.insert(def.name.clone(), def.clone());
        st.calendars_deleted.remove(&def.name);
        Ok(())
    }

    async fn list_calendars(&self) -> Result<Vec<CalendarDef>> {
        Ok(self.lock()?.calendars.values().cloned().collect())
    }

    async fn calendars(&self, names: &[String]) -> Result<HashMap<String, std::sync::Arc<Calendar>>> {
        let st = self.lock()?;
        Ok(names
            .iter()
            .filter_map(|n| {
                let c = Calendar::new(st.calendars.get(n)?.clone()).ok()?;
                Some((n.clone(), std::sync::Arc::new(c)))
            })
            .collect())
    }

    async fn mark_calendar_deleted(&self, name: &str) -> Result<bool> {
        let mut st = self.lock()?;
        if !st.calendars.contains_key(name) {
            return Ok(false);
        }
        st.calendars_deleted.insert(name.to_string());
        Ok(true)
    }

    async fn unmark_calendar_deleted(&self, name: &str) -> Result<()> {
        self.lock()?.calendars_deleted.remove(name);
        Ok(())
    }

    async fn drop_calendar(&self, name: &str) -> Result<bool> {
        let mut st = self.lock()?;
        if !st.calendars_deleted.remove(name) {
            return Ok(false);
        }
        st.calendars.remove(name);
        Ok(true)
    }
}

#[async_trait]
impl super::LimitStore for MemoryStore {
    async fn put_limit(&self, limit: &Limit) -> Result<()> {
        let mut st = self.lock()?;
        if !st.limits.contains_key(&limit.name) && st.limits.len() >= crate::job::limit::MAX_LIMITS {
            return Err(Error::invalid("limit.name", "the cluster keeps no more limits; delete one first"));
        }
        st.limits.insert(limit.name.clone(), limit.clone());
        Ok(())
    }

    async fn list_limits(&self) -> Result<Vec<(Limit, u32)>> {
        let st = self.lock()?;
        let now = now_ms();
        Ok(st
            .limits
            .values()
            .map(|l| {
                let n = st.slots.get(&l.name).map_or(0, |h| h.values().filter(|exp| **exp > now).count());
                (l.clone(), n as u32)
            })
            .collect())
    }

    async fn delete_limit(&self, name: &str) -> Result<bool> {
        let mut st = self.lock()?;
        st.slots.remove(name);
        Ok(st.limits.remove(name).is_some())
    }

    async fn take_slots(&self, limits: &[String], holder: &str, lease_ms: u64) -> Result<Slots> {
        let mut st = self.lock()?;
        let now = now_ms();
        let mut live = Vec::new();
        for name in limits {
            let Some(max) = st.limits.get(name).map(|l| l.max) else { continue };
            let held = st.slots.entry(name.clone()).or_default();
            held.retain(|_, exp| *exp > now);
            if !held.contains_key(holder) && held.len() >= max as usize {
                return Ok(Slots::Full { limit: name.clone(), running: held.len() as u32, max });
            }
            live.push(name.clone());
        }
        for name in live {
            st.slots.entry(name).or_default().insert(holder.to_string(), now + lease_ms as i64);
        }
        Ok(Slots::Taken)
    }

    async fn renew_slots(&self, limits: &[String], holder: &str, lease_ms: u64) -> Result<Vec<String>> {
        let mut st = self.lock()?;
        let now = now_ms();
        let mut lost = Vec::new();
        for name in limits {
            // As limit_renew.lua: a lapsed slot is taken again while its limit has room.
            let Some(max) = st.limits.get(name).map(|l| l.max as usize) else { continue };
            let held = st.slots.entry(name.clone()).or_default();
            let live = held.get(holder).is_some_and(|exp| *exp > now);
            held.retain(|_, exp| *exp > now);
            if live || held.len() < max {
                held.insert(holder.to_string(), now + lease_ms as i64);
            } else {
                lost.push(name.clone());
            }
        }
        Ok(lost)
    }

    async fn release_slots(&self, limits: &[String], holder: &str) -> Result<()> {
        let mut st = self.lock()?;
        for name in limits {
            if let Some(h) = st.slots.get_mut(name) {
                h.remove(holder);
            }
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// An unpaused `after_previous` job between two fires keeps the next fire its last end set, whatever
/// a put (of `spec`, still `after_previous`) or a resume says (put_job.lua's rule).
fn between_fires(old: Option<&JobRecord>, spec: &JobSpec) -> Option<i64> {
    let old = old.filter(|o| !o.spec.paused && o.spec.after_previous_ms > 0 && spec.after_previous_ms > 0)?;
    old.next_ms
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn write_job(&self, w: &JobWrite<'_>) -> Result<WatermarkWrite> {
        let mut st = self.lock()?;
        let id = &w.spec.id;
        for name in &w.spec.calendars {
            let deleting = st.calendars_deleted.contains(name);
            if deleting || !st.calendars.contains_key(name) {
                return Err(super::no_calendar(w.spec, name, deleting));
            }
        }
        let old = st.jobs.get(id).cloned();
        if w.expect_rev.is_some_and(|r| r != old.as_ref().map_or(0, |o| o.rev)) {
            return Ok(WatermarkWrite::Conflict);
        }
        let last_ms = old.as_ref().and_then(|r| r.last_ms);
        let paused = w.paused.unwrap_or_else(|| old.as_ref().is_some_and(|o| o.spec.paused));
        let fired = old.as_ref().map_or(0, |o| o.fired);
        let spent = w.spec.max_fires > 0 && fired >= u64::from(w.spec.max_fires);
        // after_previous: a job waiting for its fire's end keeps waiting (that end sets its next
        // fire); a put that makes it another kind ends the wait (put_job.lua's `chain`).
        let chain_ms = old.as_ref().and_then(|o| o.chain_ms).filter(|_| w.spec.after_previous_ms > 0);
        let next_ms = if paused || spent || chain_ms.is_some() {
            None
        } else {
            between_fires(old.as_ref(), w.spec).or(w.next_ms)
        };
        if let (Some(n), Some(l)) = (next_ms, last_ms) {
            if n <= l {
                return Ok(WatermarkWrite::Behind { last_ms: l });
            }
        }
        let rec = JobRecord {
            spec: JobSpec { paused, ..w.spec.clone() },
            next_ms,
            last_ms,
            updated_ms: w.now_ms,
            written_by: w.writer,
            applied: w.applied.cloned().or_else(|| old.as_ref().and_then(|o| o.applied.clone())),
            rev: old.as_ref().map_or(0, |o| o.rev) + 1,
            fired,
            // Kept only by a put that keeps the pause state; one that says paused is a pause of its
            // own, without a note or an until.
            pause: if paused && w.paused.is_none() { old.as_ref().and_then(|o| o.pause.clone()) } else { None },
            fail_streak: if paused { old.as_ref().map_or(0, |o| o.fail_streak) } else { 0 },
            chain_ms,
        };
        st.set_due(id, old.as_ref().and_then(|r| r.next_ms), next_ms);
        st.jobs.insert(id.clone(), rec.clone());
        st.mark_completed(&rec, w.now_ms);
        Ok(WatermarkWrite::Done { record: Box::new(rec), created: old.is_none() })
    }

    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        Ok(self.lock()?.jobs.get(id).cloned())
    }

    async fn list_jobs(&self, after_id: Option<&str>, limit: usize) -> Result<Vec<JobRecord>> {
        let st = self.lock()?;
        let iter: Box<dyn Iterator<Item = &JobRecord>> = match after_id {
            Some(a) => Box::new(
                st.jobs.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)).map(|(_, r)| r),
            ),
            None => Box::new(st.jobs.values()),
        };
        Ok(iter.take(limit).cloned().collect())
    }

    async fn delete_job(&self, id: &str) -> Result<bool> {
        let mut st = self.lock()?;
        match st.jobs.remove(id) {
            Some(r) => {
                st.set_due(id, r.next_ms, None);
                st.completed.remove(id);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn set_paused(
        &self,
        id: &str,
        paused: bool,
        next_ms: Option<i64>,
        now: i64,
        note: Option<&PauseNote>,
    ) -> Result<Option<WatermarkWrite>> {
        let mut st = self.lock()?;
        let Some(old) = st.jobs.get(id).cloned() else { return Ok(None) };
        let spent = old.spec.max_fires > 0 && old.fired >= u64::from(old.spec.max_fires);
        let next_ms = if paused || spent || old.chain_ms.is_some() {
            None
        } else {
            between_fires(Some(&old), &old.spec).or(next_ms)
        };
        if let (Some(n), Some(l)) = (next_ms, old.last_ms) {
            if n <= l {
                return Ok(Some(WatermarkWrite::Behind { last_ms: l }));
            }
        }
        let mut rec = old.clone();
        rec.spec.paused = paused;
        rec.next_ms = next_ms;
        rec.updated_ms = now;
        if !paused {
            rec.fail_streak = 0;
        }
        rec.pause = match (paused, note) {
            (false, _) => None,
            (true, Some(n)) => Some(n.clone()),
            (true, None) => old.pause.clone(),
        };
        st.set_due(id, old.next_ms, next_ms);
        st.jobs.insert(id.to_string(), rec.clone());
        st.mark_completed(&rec, now);
        Ok(Some(WatermarkWrite::Done { record: Box::new(rec), created: false }))
    }

    async fn fire_outcome(&self, job_id: &str, failed: bool) -> Result<Option<u64>> {
        let mut st = self.lock()?;
        let Some(rec) = st.jobs.get_mut(job_id) else { return Ok(None) };
        rec.fail_streak = if failed { rec.fail_streak + 1 } else { 0 };
        Ok(Some(rec.fail_streak))
    }

    async fn resumable(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let st = self.lock()?;
        let due = |r: &&JobRecord| r.spec.paused && r.pause.as_ref().and_then(|p| p.until_ms).is_some_and(|u| u <= now);
        Ok(st.jobs.values().filter(due).take(limit).map(|r| r.spec.id.clone()).collect())
    }

    async fn chained(&self, limit: usize) -> Result<Vec<(String, i64)>> {
        let st = self.lock()?;
        let mut waits: Vec<(String, i64)> =
            st.jobs.values().filter_map(|r| r.chain_ms.map(|t| (r.spec.id.clone(), t))).collect();
        waits.sort_by_key(|(id, t)| (*t, id.clone()));
        waits.truncate(limit);
        Ok(waits)
    }

    async fn chain_next(&self, waits: &[(String, i64)], now: i64) -> Result<Vec<Chained>> {
        let mut st = self.lock()?;
        let mut out = Vec::with_capacity(waits.len());
        for (job, sched) in waits {
            let Some(rec) = st.jobs.get(job).cloned().filter(|r| r.chain_ms == Some(*sched)) else {
                out.push(Chained::Stale);
                continue;
            };
            let fire = st.fires.get(&crate::execution::scheduled_fire_id(job, *sched)).filter(|f| f.expiry > now);
            if fire.is_some_and(|f| f.state.is_open()) {
                out.push(Chained::Open);
                continue;
            }
            // The end the fire's record says (chain.lua reads the hash's `ended`); now, when the
            // fire's hash is gone or holds none (a reap's `lost`, decided about now).
            let end = fire.and_then(|f| st.execs.get(&f.exec)).and_then(|(e, _)| e.end_ms).unwrap_or(now);
            let spent = rec.spec.max_fires > 0 && rec.fired >= u64::from(rec.spec.max_fires);
            let next = chain_next_ms(&rec.spec, *sched, end).filter(|_| !rec.spec.paused && !spent);
            let mut new = rec.clone();
            new.chain_ms = None;
            new.next_ms = next;
            st.set_due(job, rec.next_ms, next);
            st.jobs.insert(job.clone(), new);
            out.push(Chained::Next(next));
        }
        Ok(out)
    }

    async fn due_jobs(&self, now: i64, limit: usize) -> Result<Due> {
        let st = self.lock()?;
        // Records here are typed values: nothing can be set aside.
        let jobs = st
            .due
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(limit)
            .filter_map(|(_, id)| st.jobs.get(id).cloned())
            .collect();
        Ok(Due { jobs, set_aside: Vec::new() })
    }

    async fn next_due_ms(&self) -> Result<Option<i64>> {
        Ok(self.lock()?.due.iter().next().map(|(t, _)| *t))
    }
}

#[async_trait]
impl FireStore for MemoryStore {
    async fn claim(&self, fence: &Fence, claims: &[Claim]) -> Result<Vec<ClaimOutcome>> {
        let mut out = Vec::with_capacity(claims.len());
        let mut announce = Vec::new();
        {
            let mut st = self.lock()?;
            let now = now_ms();
            if st.lease_value(now) != Some(fence) {
                return Err(Error::Fenced(format!("lease {fence} is no longer held")));
            }
            // Per job, the instant whose claim moved its watermark in this call: the shards of one
            // fire after its first follow it (claim.lua's `moved`).
            let mut moved: HashMap<&str, i64> = HashMap::new();
            // Per job, the instant of a sharded fire found fanned out before (claim.lua's `fanned`).
            let mut fanned: HashMap<&str, i64> = HashMap::new();
            for c in claims {
                let Some(rec) = st.jobs.get(&c.job_id).cloned() else {
                    out.push(ClaimOutcome::Gone);
                    continue;
                };
                if rec.spec.paused {
                    out.push(ClaimOutcome::Paused);
                    continue;
                }
                let shard = crate::execution::shard_in(&c.exec.fire_id).is_some();
                if rec.next_ms != Some(c.sched_ms) && !(shard && moved.get(c.job_id.as_str()) == Some(&c.sched_ms)) {
                    out.push(ClaimOutcome::Stale);
                    continue;
                }
                let whole = crate::execution::FireId::whole(&c.exec.fire_id).to_string();
                if shard && rec.next_ms == Some(c.sched_ms) {
                    // As claim.lua's EXISTS of the whole fire's key: a mark, or a fire of that id.
                    let marked = st.fanned.get(&whole).is_some_and(|exp| *exp > now)
                        || st.fires.get(&whole).is_some_and(|f| f.expiry > now);
                    match marked {
                        true => _ = fanned.insert(&c.job_id, c.sched_ms),
                        false => _ = st.fanned.insert(whole.clone(), now + self.retention_ms),
                    }
                }
                moved.insert(&c.job_id, c.sched_ms);
                let mut new = rec.clone();
                if rec.next_ms == Some(c.sched_ms) && !c.exec.state.is_terminal() && !c.moves {
                    new.fired += 1;
                }
                new.last_ms = Some(c.sched_ms);
                new.next_ms = c.next_ms;
                if c.chain {
                    new.chain_ms = Some(c.sched_ms);
                } else if c.next_ms.is_none() {
                    st.completed.insert(c.job_id.clone(), now);
                }
                st.set_due(&c.job_id, rec.next_ms, c.next_ms);
                st.jobs.insert(c.job_id.clone(), new);
                if c.moves {
                    out.push(ClaimOutcome::Moved);
                    continue;
                }
                // A fire recorded before (or, a shard, fanned out before; a whole fire whose instant
                // was): the watermark moved on above, nothing else happens.
                let before = match shard {
                    true => fanned.get(c.job_id.as_str()) == Some(&c.sched_ms),
                    false => st.fanned.get(&whole).is_some_and(|exp| *exp > now),
                };
                if before || st.fires.get(&c.exec.fire_id).is_some_and(|f| f.expiry > now) {
                    out.push(ClaimOutcome::Duplicate(String::new()));
                    continue;
                }
                let (outcome, exec, fs) = if c.exec.state.is_terminal() {
                    (ClaimOutcome::Misfired, c.exec.clone(), FireState::from(c.exec.state))
                } else {
                    let (job, fire) = (&c.job_id, &c.exec.fire_id);
                    match st.meet_lock(
                        c.overlap,
                        job,
                        fire,
                        now,
                        c.lock_ttl_ms,
                        self.retention_ms,
                        &self.timing,
                        &mut announce,
                    ) {
                        Met::Locked => (ClaimOutcome::Claimed, c.exec.clone(), FireState::Dispatching),
                        Met::Held(stop) => (ClaimOutcome::Held(stop), c.exec.clone(), FireState::Held),
                        Met::Skipped => (ClaimOutcome::Skipped, c.skipped_exec(), FireState::Skipped),
                    }
                };
                // Made under the fence's epoch, as claim.lua writes it.
                let fire = FireRec { epoch: fence.epoch, priority: c.priority, ..self.new_fire(&exec, fs, now, false) };
                st.fires.insert(c.exec.fire_id.clone(), fire);
                let outcome = match outcome {
                    // Into the claimer's hands, as `accept_many` would make it at once.
                    ClaimOutcome::Claimed if c.here && st.live(&fence.node_id, &fence.incarnation, now) => {
                        st.take_fire(&c.exec.fire_id, &fence.node_id, &fence.incarnation);
                        ClaimOutcome::Here
                    }
                    other => other,
                };
                st.insert_exec(&exec, self.retention_ms, now);
                // Started too (claim.lua's `start`): its record reads `running` from here.
                let (f, n, i) = (&c.exec.fire_id, &fence.node_id, &fence.incarnation);
                let started = match outcome {
                    ClaimOutcome::Here if c.start => self.begin(&mut st, f, n, i, &exec.id, None, now),
                    _ => None,
                };
                match started {
                    Some((_, record)) => {
                        announce.push(record);
                        out.push(ClaimOutcome::Started);
                    }
                    None => {
                        announce.push(exec);
                        out.push(outcome);
                    }
                }
            }
        }
        announce.iter().for_each(|e| self.announce(e));
        Ok(out)
    }

    async fn trigger(
        &self,
        exec: &Execution,
        key: Option<&str>,
        overlap: Concurrency,
        lock_ttl_ms: u64,
        own: &FireOwn,
        priority: Priority,
    ) -> Result<TriggerOutcome> {
        let args = own.args.as_ref();
        let mut ended = Vec::new();
        let outcome = {
            let mut st = self.lock()?;
            let now = now_ms();
            if !st.jobs.contains_key(&exec.job_id) {
                return Ok(TriggerOutcome::Gone);
            }
            // A scheduled instant's fire (a backfill): once, as the claim's fire key makes it.
            if !exec.manual && st.fires.get(&exec.fire_id).is_some_and(|f| f.expiry > now) {
                return Ok(TriggerOutcome::AlreadyFired);
            }
            if let Some(k) = key {
                let idem = (exec.job_id.clone(), k.to_string());
                if let Some((id, exp)) = st.idem.get(&idem) {
                    if *exp > now {
                        // The same key with other arguments (as trigger.lua: its fire says, while its
                        // record is kept; a trimmed one is spent, whatever the arguments).
                        let was = crate::execution::fire_of_execution(id).and_then(|f| st.fires.get(f));
                        let other = |f: &FireRec| f.args.as_ref() != args || f.selector != own.selector;
                        if st.execs.contains_key(id) && was.is_some_and(other) {
                            return Ok(TriggerOutcome::Conflict(id.clone()));
                        }
                        return Ok(match st.execs.get(id) {
                            Some((e, _)) => TriggerOutcome::Deduplicated(e.clone()),
                            None => TriggerOutcome::Spent(id.clone()),
                        });
                    }
                }
                st.idem.insert(idem, (exec.id.clone(), now + self.retention_ms));
            }
            let (job, fire) = (&exec.job_id, &exec.fire_id);
            let met = st.meet_lock(overlap, job, fire, now, lock_ttl_ms, self.retention_ms, &self.timing, &mut ended);
            if let Met::Held(stop) = met {
                st.insert_exec(exec, self.retention_ms, now);
                let mut fire = self.new_fire(exec, FireState::Held, now, exec.manual);
                fire.args = args.cloned();
                fire.selector = own.selector.clone();
                fire.priority = priority;
                st.fires.insert(exec.fire_id.clone(), fire);
                TriggerOutcome::Held(exec.clone(), stop)
            } else if met == Met::Skipped {
                let e = super::skipped_by_lock(exec, overlap);
                st.insert_exec(&e, self.retention_ms, now);
                let mut fire = self.new_fire(&e, FireState::Skipped, now, exec.manual);
                fire.args = args.cloned();
                fire.selector = own.selector.clone();
                fire.priority = priority;
                st.fires.insert(exec.fire_id.clone(), fire);
                TriggerOutcome::Skipped(e)
            } else {
                st.insert_exec(exec, self.retention_ms, now);
                let mut fire = self.new_fire(exec, FireState::Dispatching, now, exec.manual);
                fire.args = args.cloned();
                fire.selector = own.selector.clone();
                fire.priority = priority;
                st.fires.insert(exec.fire_id.clone(), fire);
                TriggerOutcome::Created(exec.clone())
            }
        };
        ended.iter().for_each(|e| self.announce(e));
        if let TriggerOutcome::Created(e) | TriggerOutcome::Skipped(e) | TriggerOutcome::Held(e, _) = &outcome {
            self.announce(e);
        }
        Ok(outcome)
    }

    async fn accept_many(
        &self,
        fire_ids: &[String],
        epoch: Option<u64>,
        node: &str,
        inc: &str,
        start: bool,
    ) -> Result<Vec<Accept>> {
        let mut announce = Vec::new();
        // Under the lock; the records of the fires it started are announced once it is let go.
        let out = {
            let mut st = self.lock()?;
            let now = now_ms();
            let whole = if !st.live(node, inc, now) {
                Some(Accept::NotLive)
            } else if epoch.is_some_and(|e| e != st.epoch) {
                Some(Accept::StaleEpoch)
            } else {
                None
            };
            let mut out = Vec::with_capacity(fire_ids.len());
            for fire_id in fire_ids {
                if let Some(w) = &whole {
                    out.push(w.clone());
                    continue;
                }
                let Some((state, mine)) = st.fires.get(fire_id).map(|f| (f.state, f.node == node)) else {
                    out.push(Accept::Unknown);
                    continue;
                };
                match state {
                    FireState::Accepted | FireState::Running if mine => out.push(Accept::Already),
                    FireState::Dispatching => {
                        st.take_fire(fire_id, node, inc);
                        // Started in the same step unless master-only (accept.lua).
                        let Some(f) = st.fires.get(fire_id) else {
                            out.push(Accept::Unknown);
                            continue;
                        };
                        let (job, next, deadline) = (f.job.clone(), f.next_exec.clone(), f.deadline_ms);
                        let spec = st.jobs.get(&job).map(|r| r.spec.clone());
                        match next {
                            Some(exec) if start && !spec.as_ref().is_some_and(|s| s.master_only) => {
                                match self.begin(&mut st, fire_id, node, inc, &exec, spec, now) {
                                    Some((mut started, record)) => {
                                        started.deadline_ms = Some(deadline);
                                        announce.push(record);
                                        out.push(Accept::Started(Box::new(started)));
                                    }
                                    None => out.push(Accept::Unknown),
                                }
                            }
                            _ => out.push(Accept::Accepted),
                        }
                    }
                    _ => out.push(Accept::Taken),
                }
            }
            out
        };
        announce.iter().for_each(|e| self.announce(e));
        Ok(out)
    }

    async fn enqueue(&self, fence: &Fence, fire_id: &str, target: &str) -> Result<Enqueue> {
        {
            let mut st = self.lock()?;
            let now = now_ms();
            if st.lease_value(now) != Some(fence) {
                return Err(Error::Fenced(format!("lease {fence} is no longer held")));
            }
            if st.hb.get(target).is_none_or(|(_, exp)| *exp <= now) {
                return Ok(Enqueue::TargetDead);
            }
            let Some(f) = st.fires.get_mut(fire_id) else { return Ok(Enqueue::Unknown) };
            if f.state != FireState::Dispatching {
                return Ok(Enqueue::NotDispatching(f.state));
            }
            f.state = FireState::Queued;
            f.node = target.to_string();
            f.inc.clear();
            let level = f.priority;
            st.queue_push(target, level, fire_id);
        }
        self.queued.notify_waiters();
        Ok(Enqueue::Queued)
    }

    async fn take_queued(&self, node: &str, order: [Priority; 3]) -> Result<Option<Taken>> {
        let mut st = self.lock()?;
        let taken = st.queues.get_mut(node).and_then(|q| {
            let level = order.into_iter().find(|l| q.waiting().contains(l))?;
            let fire = q.0[level.rank()].pop_back()?;
            Some(Taken { fire_id: fire, level, waiting: q.waiting() })
        });
        match &taken {
            Some(t) => st.processing.entry(node.to_string()).or_default().insert(0, t.fire_id.clone()),
            // As take.lua's: the bell goes, and the next push rings it.
            None => {
                st.bells.remove(node);
            }
        }
        Ok(taken)
    }

    async fn queue_levels(&self, node: &str) -> Result<Vec<Priority>> {
        Ok(self.lock()?.queues.get(node).map(NodeQueue::waiting).unwrap_or_default())
    }

    async fn wait_queued(&self, node: &str, wait: std::time::Duration) -> Result<()> {
        let notified = self.queued.notified();
        tokio::pin!(notified);
        // Registered before the look, so a push after it wakes this wait.
        notified.as_mut().enable();
        // As BLPOP: a ring is used up by the wait it ends.
        if self.lock()?.bells.remove(node) {
            return Ok(());
        }
        if tokio::time::timeout(wait, notified).await.is_ok() {
            self.lock()?.bells.remove(node);
        }
        Ok(())
    }

    async fn steal(&self, victim: &str, node: &str, inc: &str) -> Result<Option<String>> {
        let mut st = self.lock()?;
        if !st.live(node, inc, now_ms()) {
            return Ok(None);
        }
        let Some(fire) = st.queues.get(victim).and_then(|q| q.next().cloned()) else { return Ok(None) };
        let ok = st.fires.get(&fire).is_some_and(|f| f.state == FireState::Queued && f.node == victim);
        // A failover job's fire is not taken off its list (steal.lua).
        let job = crate::execution::job_of_fire(&fire);
        let off_list = st.jobs.get(job).is_some_and(|j| !j.spec.may_run_on(node));
        if !ok || off_list {
            return Ok(None);
        }
        if let Some(q) = st.queues.get_mut(victim) {
            q.remove(&fire);
        }
        st.take_fire(&fire, node, inc);
        Ok(Some(fire))
    }

    async fn dead_letter(&self, node: &str, entry: &str, reason: &str) -> Result<()> {
        let mut st = self.lock()?;
        st.remove_processing(node, entry);
        st.dlq.push(format!("{reason}: {entry}"));
        Ok(())
    }

    async fn start(&self, fire_id: &str, node: &str, inc: &str, fresh: &str, master_only: MasterOnly) -> Result<Start> {
        let mut st = self.lock()?;
        let now = now_ms();
        if !st.live(node, inc, now) {
            return Ok(Start::NotLive);
        }
        let Some(f) = st.fires.get(fire_id).cloned() else {
            st.remove_processing(node, fire_id);
            st.dlq.push(fire_id.to_string());
            return Ok(Start::Poison);
        };
        // Running here, in this or an earlier incarnation: never dropped from the list by a start
        // (an earlier incarnation's run is recovered by adoption or the reaper).
        if f.state == FireState::Running && f.node == node {
            // Started by this very incarnation (its reply lost, as start.lua): run it, same attempt.
            if f.inc == inc {
                let spec = st.jobs.get(&f.job).map(|r| r.spec.clone());
                // A first attempt's deadline, for the caller to check (start.lua).
                let deadline = (f.attempts <= 1).then_some(f.deadline_ms);
                return Ok(Start::Resume(Box::new(f.started_fire(spec, deadline))));
            }
            return Ok(Start::Already);
        }
        if f.state == FireState::Misfired && f.node == node && f.inc == inc {
            // The same start again (as start.lua: its reply lost): the caller records the misfire.
            return Ok(Start::Misfired { job_id: f.job, sched_ms: f.sched, exec_id: f.exec });
        }
        if !matches!(f.state, FireState::Queued | FireState::Accepted) || f.node != node {
            st.remove_processing(node, fire_id);
            return Ok(Start::NotMine(f.state));
        }
        let exec = f.next_exec.clone().unwrap_or_else(|| fresh.to_string());
        if now > f.deadline_ms {
            st.remove_processing(node, fire_id);
            if let Some(f) = st.fires.get_mut(fire_id) {
                f.state = FireState::Misfired;
                f.next_exec = None;
                f.exec = exec.clone();
                f.inc = inc.to_string();
            }
            return Ok(Start::Misfired { job_id: f.job, sched_ms: f.sched, exec_id: exec });
        }
        let spec = st.jobs.get(&f.job).map(|r| r.spec.clone());
        if spec.as_ref().is_some_and(|s| s.master_only) {
            let holder = st.lease_value(now).is_some_and(|l| l.node_id == node && l.incarnation == inc);
            match master_only {
                MasterOnly::Refuse => return Ok(Start::MasterOnly),
                MasterOnly::Verify if !holder => return Ok(Start::MasterOnly),
                MasterOnly::Verify | MasterOnly::Anyway => {}
            }
        }
        let Some((started, record)) = self.begin(&mut st, fire_id, node, inc, &exec, spec, now) else {
            return Ok(Start::Poison);
        };
        drop(st);
        self.announce(&record);
        Ok(Start::Run(Box::new(started)))
    }

    async fn retry_attempt(&self, fire_id: &str, node: &str, inc: &str, exec_id: &str) -> Result<Option<u32>> {
        let mut st = self.lock()?;
        if !st.live(node, inc, now_ms()) {
            return Ok(None);
        }
        match st.fires.get_mut(fire_id) {
            Some(f) if f.state == FireState::Running && f.node == node && f.inc == inc => {
                f.exec = exec_id.to_string();
                f.attempts += 1;
                Ok(Some(f.attempts))
            }
            _ => Ok(None),
        }
    }

    async fn renew_lock(&self, job_id: &str, owner: &str, ttl_ms: u64) -> Result<bool> {
        let mut st = self.lock()?;
        let now = now_ms();
        match st.locks.get_mut(job_id) {
            Some((o, exp)) if o == owner && *exp > now => {
                *exp = now + ttl_ms as i64;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn finish(&self, exec: &Execution, node: &str, inc: &str, keep: Keep, _forbid: bool) -> Result<Finish> {
        let mut queued = false;
        let (result, recorded) = {
            let mut st = self.lock()?;
            let now = now_ms();
            // The ack (as finish.lua): not when a newer incarnation of this node holds the fire now.
            let newer = st.fires.get(&exec.fire_id).is_some_and(|f| f.node == node && f.inc != inc);
            if !newer {
                st.remove_processing(node, &exec.fire_id);
            }
            // The same finish again (as finish.lua: its first reply lost) is recorded already.
            let again = st.fires.get(&exec.fire_id).is_some_and(|f| {
                f.state == FireState::from(exec.state) && f.node == node && f.inc == inc && f.exec == exec.id
            });
            if again {
                return Ok(Finish::Recorded);
            }
            let owns = st
                .fires
                .get(&exec.fire_id)
                .is_some_and(|f| f.state == FireState::Running && f.node == node && f.inc == inc);
            let mut rec = exec.clone();
            if owns {
                // The fire is kept the retention from its claim, as its hash in Redis, which is the
                // record of its execution there.
                if let Some(f) = st.fires.get_mut(&exec.fire_id) {
                    f.state = FireState::from(exec.state);
                    f.exec = exec.id.clone();
                }
                // A node shutting down no longer takes from its queue (as finish.lua).
                let draining = st.nodes.get(node).is_some_and(|(n, _)| n.draining);
                queued = st.release(&exec.job_id, &exec.fire_id, now, &self.timing, (!draining).then_some(node));
            } else {
                rec = exec.superseded();
            }
            st.insert_exec(&rec, self.retention_ms, now);
            st.trim_history(&exec.job_id, keep, &rec.id, now);
            (if owns { Finish::Recorded } else { Finish::Superseded }, rec)
        };
        if queued {
            self.queued.notify_waiters();
        }
        self.announce(&recorded);
        Ok(result)
    }

    async fn node_fires(&self, node: &str) -> Result<(Vec<String>, Vec<String>)> {
        let st = self.lock()?;
        let q = st.queues.get(node).map(|q| q.0.iter().flatten().cloned().collect()).unwrap_or_default();
        let p = st.processing.get(node).cloned().unwrap_or_default();
        Ok((q, p))
    }

    async fn queue_lengths(&self, nodes: &[String]) -> Result<Vec<usize>> {
        let st = self.lock()?;
        Ok(nodes.iter().map(|n| st.queues.get(n).map(|q| q.len()).unwrap_or(0)).collect())
    }

    async fn reap(&self, r: &ReapRequest) -> Result<Reap> {
        let out = {
            let mut st = self.lock()?;
            let now = now_ms();
            match &r.by {
                ReapBy::Master(fence) => {
                    if st.lease_value(now) != Some(fence) {
                        return Ok(Reap::Fenced);
                    }
                    if st.hb.get(&r.dead_node).is_some_and(|(_, exp)| *exp > now) {
                        return Ok(Reap::Alive);
                    }
                }
                ReapBy::Adopt { incarnation } | ReapBy::Handoff { incarnation } => {
                    if !st.live(&r.dead_node, incarnation, now) {
                        return Ok(Reap::Fenced);
                    }
                }
            }
            let removed = match r.fires {
                NodeFires::Queued => {
                    st.queues.get_mut(&r.dead_node).is_some_and(|q| q.remove(&r.fire_id)).then(|| r.fire_id.clone())
                }
                NodeFires::Taken => st.processing.get_mut(&r.dead_node).and_then(|p| {
                    let i = p.iter().position(|x| *x == r.fire_id)?;
                    Some(p.remove(i))
                }),
            };
            if removed.is_none() {
                return Ok(Reap::Gone);
            }
            let Some(f) = st.fires.get(&r.fire_id).cloned() else { return Ok(Reap::Dropped(None)) };
            if f.node != r.dead_node {
                return Ok(Reap::StaleCopy);
            }
            if matches!(&r.by, ReapBy::Adopt { incarnation } if *incarnation == f.inc) {
                // The live incarnation's own entry, not a leftover: put back.
                st.processing.entry(r.dead_node.clone()).or_default().push(r.fire_id.clone());
                return Ok(Reap::Alive);
            }
            let job_lock = st.locks.get(&f.job).is_some_and(|(o, _)| *o == r.fire_id);
            let threshold = self.timing.misfire_threshold_ms as i64;
            let Some(fm) = st.fires.get_mut(&r.fire_id) else { return Ok(Reap::Gone) };
            let out = match f.state {
                FireState::Queued | FireState::Accepted => {
                    fm.state = FireState::Queued;
                    fm.node = r.target.clone();
                    fm.inc.clear();
                    Reap::Moved
                }
                FireState::Running => {
                    if matches!(r.by, ReapBy::Master(_)) {
                        st.gone.entry(r.dead_node.clone()).or_default().insert(f.inc.clone());
                    }
                    let Some(fm) = st.fires.get_mut(&r.fire_id) else { return Ok(Reap::Gone) };
                    if r.max_recoveries.is_some() {
                        fm.recoveries += 1;
                    }
                    let dead = DeadAttempt {
                        job_id: f.job.clone(),
                        sched_ms: f.sched,
                        started_ms: (f.started > 0).then_some(f.started),
                        attempt: f.attempts.max(1),
                    };
                    let out = if r.rerun && r.max_recoveries.is_none_or(|max| fm.recoveries <= max) {
                        fm.state = FireState::Queued;
                        fm.node = r.target.clone();
                        fm.inc.clear();
                        fm.deadline_ms = now + threshold;
                        Reap::Rerun { dead_exec_id: f.exec.clone(), dead: dead.clone() }
                    } else {
                        fm.state = FireState::Lost;
                        Reap::Lost {
                            job_id: f.job.clone(),
                            sched_ms: f.sched,
                            exec_id: f.exec.clone(),
                            dead: dead.clone(),
                        }
                    };
                    if !f.exec.is_empty() {
                        let lost = matches!(out, Reap::Lost { .. });
                        let closing = Closing {
                            exec_id: f.exec.clone(),
                            lost,
                            handed: !lost && matches!(r.by, ReapBy::Handoff { .. }),
                            fire_id: r.fire_id.clone(),
                            attempt: dead.clone(),
                            dead_node: r.dead_node.clone(),
                            target: r.target.clone(),
                        };
                        st.closings.insert(f.exec.clone(), closing);
                    }
                    out
                }
                other => Reap::Dropped(Some(other)),
            };
            if matches!(out, Reap::Moved | Reap::Rerun { .. }) {
                st.queue_push(&r.target, f.priority, &r.fire_id);
                if job_lock {
                    st.locks.insert(f.job.clone(), (r.fire_id.clone(), now + r.lock_ttl_ms as i64));
                }
            }
            out
        };
        if matches!(out, Reap::Moved | Reap::Rerun { .. }) {
            self.queued.notify_waiters();
        }
        Ok(out)
    }

    async fn stuck_dispatching(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let st = self.lock()?;
        Ok(st
            .fires
            .iter()
            .filter(|(_, f)| f.state == FireState::Dispatching && f.dispatch_deadline <= now)
            .map(|(id, _)| id.clone())
            .take(limit)
            .collect())
    }

    async fn closings(&self) -> Result<Vec<Closing>> {
        Ok(self.lock()?.closings.values().cloned().collect())
    }

    async fn closed(&self, exec_id: &str) -> Result<()> {
        self.lock()?.closings.remove(exec_id);
        Ok(())
    }

    async fn cancel(&self, exec: &Execution, retry: bool) -> Result<Cancel> {
        let rec = {
            let mut st = self.lock()?;
            let now = now_ms();
            let Some(f) = st.fires.get_mut(&exec.fire_id) else { return Ok(Cancel::Unknown) };
            // As cancel.lua: a running fire's execution is `exec`; one not yet begun, its claim's
            // (`next_exec`; a queued re-run has none yet, and is not cancelled here).
            let waiting =
                matches!(f.state, FireState::Dispatching | FireState::Accepted | FireState::Queued | FireState::Held);
            match f.state {
                FireState::Running if f.exec == exec.id => {
                    let node = f.node.clone();
                    let stop =
                        StopRequest { fire: exec.fire_id.clone(), exec: exec.id.clone(), why: exec.error.clone() };
                    st.stops.entry(node.clone()).or_default().push(stop);
                    return Ok(Cancel::Running { node });
                }
                _ if waiting && !retry && f.next_exec.as_deref() == Some(exec.id.as_str()) => {}
                other => return Ok(Cancel::NotOpen(other.to_string())),
            }
            // As cancel.lua: ended here, never begun, out of its node's queue; an entry in a
            // processing list stays for its owner's start to drop (NotMine).
            let queued = (f.state == FireState::Queued).then(|| f.node.clone());
            let was_held = f.state == FireState::Held;
            f.state = FireState::Cancelled;
            f.exec = exec.id.clone();
            f.next_exec = None;
            f.attempts += 1;
            let mut rec = exec.clone();
            rec.state = crate::execution::ExecState::Cancelled;
            rec.attempt = f.attempts;
            rec.start_ms = None;
            st.release(&exec.job_id, &exec.fire_id, now, &self.timing, None);
            if was_held {
                if let Some(q) = st.held.get_mut(&exec.job_id) {
                    q.retain(|x| *x != exec.fire_id);
                }
            }
            if let Some(q) = queued.and_then(|node| st.queues.get_mut(&node)) {
                q.remove(&exec.fire_id);
            }
            st.insert_exec(&rec, self.retention_ms, now);
            rec
        };
        self.announce(&rec);
        Ok(Cancel::Cancelled)
    }

    async fn take_stops(&self, node: &str) -> Result<Vec<StopRequest>> {
        Ok(self.lock()?.stops.remove(node).unwrap_or_default())
    }

    async fn promote_held(&self, fence: &Fence, _lock_ttl_ms: u64) -> Result<Vec<String>> {
        let mut st = self.lock()?;
        let now = now_ms();
        if st.lease_value(now) != Some(fence) {
            return Err(Error::Fenced(format!("lease {fence} is no longer held")));
        }
        let jobs: Vec<String> = st.held.keys().cloned().collect();
        let mut out = Vec::new();
        for job in jobs {
            if st.lock_held(&job, now) {
                continue;
            }
            st.locks.remove(&job);
            st.promote(&job, now, &self.timing, None);
            out.extend(st.locks.get(&job).map(|(o, _)| o.clone()));
        }
        Ok(out)
    }

    async fn held_count(&self, job_id: &str) -> Result<usize> {
        Ok(self.lock()?.held.get(job_id).map_or(0, |q| q.len()))
    }
}

#[async_trait]
impl ExecStore for MemoryStore {
    async fn expire_completed(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let mut st = self.lock()?;
        let cutoff = now - self.retention_ms;
        let mut due: Vec<(i64, String)> =
            st.completed.iter().filter(|(_, t)| **t <= cutoff).map(|(id, t)| (*t, id.clone())).collect();
        due.sort();
        due.truncate(limit);
        let mut out = Vec::new();
        for (_, id) in due {
            st.completed.remove(&id);
            let gone =
                st.jobs.get(&id).is_some_and(|r| r.completed() && !r.spec.at_ms.is_empty() && !r.spec.keep_completed);
            if gone {
                if let Some(r) = st.jobs.remove(&id) {
                    st.set_due(&id, r.next_ms, None);
                }
                out.push(id);
            }
        }
        Ok(out)
    }

    async fn create_execution(&self, exec: &Execution) -> Result<bool> {
        {
            let mut st = self.lock()?;
            if st.execs.get(&exec.id).is_some_and(|(e, _)| e.state.is_terminal()) {
                return Ok(false);
            }
            st.insert_exec(exec, self.retention_ms, now_ms());
        }
        self.announce(exec);
        Ok(true)
    }

    async fn update_execution(&self, exec: &Execution) -> Result<bool> {
        self.create_execution(exec).await
    }

    async fn finish_execution(&self, exec: &Execution, release_lock: bool) -> Result<()> {
        {
            let mut st = self.lock()?;
            let now = now_ms();
            st.insert_exec(exec, self.retention_ms, now);
            if release_lock {
                st.release(&exec.job_id, &exec.fire_id, now, &self.timing, None);
            }
        }
        self.announce(exec);
        Ok(())
    }

    async fn get_execution(&self, id: &str) -> Result<Option<Execution>> {
        let st = self.lock()?;
        let now = now_ms();
        Ok(st.execs.get(id).filter(|(_, exp)| *exp > now).map(|(e, _)| e.clone()))
    }

    async fn list_executions(&self, f: &ExecFilter) -> Result<(Vec<Execution>, Option<String>)> {
        let st = self.lock()?;
        let now = now_ms();
        let upper = match &f.before {
            Some(b) => std::ops::Bound::Excluded(b.as_str()),
            None => std::ops::Bound::Unbounded,
        };
        let lower = match &f.not_before {
            Some(n) => std::ops::Bound::Included(n.as_str()),
            None => std::ops::Bound::Unbounded,
        };
        // Across jobs: the newest `recent`, and older ones only while open (the Redis store's
        // bounded index and its open set). `first_old`: the newest execution past the recent ones.
        let first_old = match f.job_id {
            Some(_) => None,
            None => {
                st.execs.iter().rev().filter(|(_, (_, exp))| *exp > now).nth(self.recent as usize).map(|(id, _)| id)
            }
        };
        let listed = |id: &String, e: &Execution| first_old.is_none_or(|old| id > old) || !e.state.is_terminal();
        let mut page: Vec<Execution> = st
            .execs
            .range::<str, _>((lower, upper))
            .rev()
            .filter(|(id, (e, exp))| *exp > now && f.matches(e) && listed(id, e))
            .take(f.limit + 1)
            .map(|(_, (e, _))| e.clone())
            .collect();
        let next = if page.len() > f.limit {
            page.truncate(f.limit);
            page.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok((page, next))
    }

    async fn subscribe(&self) -> broadcast::Receiver<Execution> {
        self.events.subscribe()
    }

    async fn prune(&self, now: i64) -> Result<u64> {
        let mut st = self.lock()?;
        let before = st.execs.len() + st.fires.len() + st.idem.len() + st.locks.len();
        st.execs.retain(|_, (_, exp)| *exp > now);
        st.fires.retain(|_, f| f.expiry > now);
        st.fanned.retain(|_, exp| *exp > now);
        st.idem.retain(|_, (_, exp)| *exp > now);
        st.locks.retain(|_, (_, exp)| *exp > now);
        let State { execs, job_execs, job_failed, .. } = &mut *st;
        for index in [job_execs, job_failed] {
            index.retain(|_, ids| {
                ids.retain(|id| execs.contains_key(id));
                !ids.is_empty()
            });
        }
        let after = st.execs.len() + st.fires.len() + st.idem.len() + st.locks.len();
        Ok((before - after) as u64)
    }
}

#[async_trait]
impl ClusterStore for MemoryStore {
    async fn ping(&self) -> Result<()> {
        self.lock().map(|_| ())
    }

    async fn clock_us(&self) -> Result<Option<i64>> {
        // No clock but this process's: it is the cluster's.
        Ok(None)
    }

    async fn acquire_lease(&self, node_id: &str, inc: &str, ttl_ms: u64, floor: u64) -> Result<LeaseAcquire> {
        let mut st = self.lock()?;
        let now = now_ms();
        if let Some(v) = st.lease_value(now) {
            return Ok(LeaseAcquire::Held(Some(v.clone())));
        }
        if floor > super::MAX_EPOCH {
            return Err(Error::Corrupt { key: "epoch".into(), reason: format!("floor {floor} is not an epoch") });
        }
        let epoch = st.epoch.max(floor).max(now.max(0) as u64) + 1;
        if epoch > super::MAX_EPOCH {
            return Err(Error::Corrupt {
                key: "epoch".into(),
                reason: format!("the next epoch would pass {}", super::MAX_EPOCH),
            });
        }
        st.epoch = epoch;
        let fence = Fence { node_id: node_id.to_string(), epoch, incarnation: inc.to_string() };
        st.lease = Some((fence.clone(), now + ttl_ms as i64));
        Ok(LeaseAcquire::Acquired(fence))
    }

    async fn renew_lease(&self, fence: &Fence, ttl_ms: u64) -> Result<bool> {
        let mut st = self.lock()?;
        let now = now_ms();
        if st.lease_value(now) == Some(fence) {
            st.lease = Some((fence.clone(), now + ttl_ms as i64));
            return Ok(true);
        }
        Ok(false)
    }

    async fn release_lease(&self, fence: &Fence) -> Result<bool> {
        let mut st = self.lock()?;
        if st.lease.as_ref().is_some_and(|(v, _)| v == fence) {
            st.lease = None;
            return Ok(true);
        }
        Ok(false)
    }

    async fn lease(&self) -> Result<Option<Fence>> {
        let st = self.lock()?;
        Ok(st.lease_value(now_ms()).cloned())
    }

    async fn register(&self, node: &NodeRecord, ttl_ms: u64, replacing: Option<&str>) -> Result<Register> {
        let mut st = self.lock()?;
        let now = now_ms();
        if let Some((inc, exp)) = st.hb.get(&node.node_id) {
            if *exp > now && *inc != node.incarnation && Some(inc.as_str()) != replacing {
                return Ok(Register::InUse(inc.clone()));
            }
        }
        st.hb.insert(node.node_id.clone(), (node.incarnation.clone(), now + ttl_ms as i64));
        st.nodes.insert(node.node_id.clone(), (node.clone(), node.beat_ms + ttl_ms as i64));
        Ok(Register::Registered)
    }

    async fn keep_alive(&self, node: &str, inc: &str, ttl_ms: u64) -> Result<bool> {
        let mut st = self.lock()?;
        let now = now_ms();
        let live = st.live(node, inc, now);
        if live {
            st.hb.insert(node.to_string(), (inc.to_string(), now + ttl_ms as i64));
        }
        Ok(live)
    }

    async fn beat(&self, node: &NodeRecord, ttl_ms: u64) -> Result<Beat> {
        let mut st = self.lock()?;
        let now = now_ms();
        let epoch = st.epoch;
        let buried = st.gone.get(&node.node_id).is_some_and(|g| g.contains(&node.incarnation));
        match st.hb.get_mut(&node.node_id) {
            Some((inc, exp)) if *inc == node.incarnation && *exp > now => *exp = now + ttl_ms as i64,
            // Held by another live incarnation.
            Some((_, exp)) if *exp > now => return Ok(Beat::Revoked { epoch }),
            // Expired: taken back unless its running work was taken over (as beat.lua).
            _ if buried => return Ok(Beat::Revoked { epoch }),
            _ => {
                st.hb.insert(node.node_id.clone(), (node.incarnation.clone(), now + ttl_ms as i64));
            }
        }
        st.nodes.insert(node.node_id.clone(), (node.clone(), node.beat_ms + ttl_ms as i64));
        Ok(Beat::Alive { epoch })
    }

    async fn deregister(&self, node: &NodeRecord) -> Result<()> {
        let mut st = self.lock()?;
        if st.hb.get(&node.node_id).is_some_and(|(inc, _)| *inc == node.incarnation) {
            st.hb.remove(&node.node_id);
        }
        st.nodes.insert(node.node_id.clone(), (node.clone(), node.beat_ms));
        Ok(())
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        // As the Redis record's PX: a gone node is forgotten `node_keep_ms` after its record lapsed.
        let (keep, now) = (self.node_keep_ms, now_ms());
        let mut st = self.lock()?;
        st.nodes.retain(|_, (_, exp)| *exp + keep > now);
        Ok(st.nodes.values().map(|(n, _)| n.clone()).collect())
    }

    async fn dead_nodes(&self) -> Result<Vec<String>> {
        let st = self.lock()?;
        let now = now_ms();
        Ok(st.nodes.keys().filter(|n| st.hb.get(*n).is_none_or(|(_, exp)| *exp <= now)).cloned().collect())
    }
}
