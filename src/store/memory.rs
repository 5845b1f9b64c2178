//! In-memory store: the embedded default for a single node, with nothing to install. Every trait
//! method is one critical section under one mutex, which is what makes it atomic like the Redis
//! scripts. State is lost on exit; `rota server --jobs FILE` puts the jobs back at start.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{
    now_ms, Claim, ClaimOutcome, ExecFilter, JobRecord, LeaseAcquire, LeaseHolder, NodeRecord, Store, TriggerOutcome,
    WatermarkWrite, WATCH_BUFFER,
};
use crate::error::{Error, Result};
use crate::execution::{ExecState, Execution};
use crate::job::JobSpec;

/// Most execution records kept in memory (about 1 KiB each), so a busy single node cannot grow
/// without bound before retention expires them.
pub const MAX_EXECUTIONS: usize = 200_000;

pub struct MemoryStore {
    state: Mutex<State>,
    events: broadcast::Sender<Execution>,
    retention_ms: i64,
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<String, JobRecord>,
    /// (next_ms, job id) for unpaused jobs with a watermark.
    due: BTreeSet<(i64, String)>,
    /// fire id -> expiry ms.
    fires: HashMap<String, i64>,
    /// job id -> (owner fire id, expiry ms).
    locks: HashMap<String, (String, i64)>,
    /// execution id -> (record, expiry ms). Ids are UUIDv7, so the map is in creation order.
    execs: BTreeMap<String, (Execution, i64)>,
    /// (job, idempotency key) -> (execution id, expiry ms).
    idem: HashMap<(String, String), (String, i64)>,
    nodes: BTreeMap<String, (NodeRecord, i64)>,
    /// (lease value, expiry ms).
    lease: Option<(String, i64)>,
    epoch: u64,
}

impl MemoryStore {
    pub fn new(retention_ms: u64) -> MemoryStore {
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        MemoryStore { state: Mutex::new(State::default()), events, retention_ms: retention_ms as i64 }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        // A poisoned mutex means a panic mid-update; the state may be half-written, so refuse service.
        self.state.lock().map_err(|_| Error::StoreUnavailable("memory store poisoned by a panic".into()))
    }

    fn announce(&self, e: &Execution) {
        // No watcher is not an error.
        let _ = self.events.send(e.clone());
    }
}

impl State {
    fn set_due(&mut self, id: &str, old: Option<i64>, new: Option<i64>) {
        if let Some(o) = old {
            self.due.remove(&(o, id.to_string()));
        }
        if let Some(n) = new {
            self.due.insert((n, id.to_string()));
        }
    }

    fn lease_value(&self, now: i64) -> Option<&str> {
        self.lease.as_ref().filter(|(_, exp)| *exp > now).map(|(v, _)| v.as_str())
    }

    fn lock_held(&self, job: &str, now: i64) -> bool {
        self.locks.get(job).is_some_and(|(_, exp)| *exp > now)
    }

    fn insert_exec(&mut self, e: &Execution, retention_ms: i64, now: i64) {
        self.execs.insert(e.id.clone(), (e.clone(), now + retention_ms));
        // Bounded memory whatever the retention: the oldest records go first.
        while self.execs.len() > MAX_EXECUTIONS {
            self.execs.pop_first();
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<()> {
        self.lock().map(|_| ())
    }

    async fn put_job(&self, spec: &JobSpec, next_ms: Option<i64>, now: i64) -> Result<WatermarkWrite> {
        let mut st = self.lock()?;
        let old = st.jobs.get(&spec.id).cloned();
        let last_ms = old.as_ref().and_then(|r| r.last_ms);
        let next_ms = if spec.paused { None } else { next_ms };
        if let (Some(n), Some(l)) = (next_ms, last_ms) {
            if n <= l {
                return Ok(WatermarkWrite::Behind { last_ms: l });
            }
        }
        let rec = JobRecord { spec: spec.clone(), next_ms, last_ms, updated_ms: now };
        st.set_due(&spec.id, old.as_ref().and_then(|r| r.next_ms), next_ms);
        st.jobs.insert(spec.id.clone(), rec.clone());
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
    ) -> Result<Option<WatermarkWrite>> {
        let mut st = self.lock()?;
        let Some(old) = st.jobs.get(id).cloned() else { return Ok(None) };
        let next_ms = if paused { None } else { next_ms };
        if let (Some(n), Some(l)) = (next_ms, old.last_ms) {
            if n <= l {
                return Ok(Some(WatermarkWrite::Behind { last_ms: l }));
            }
        }
        let mut rec = old.clone();
        rec.spec.paused = paused;
        rec.next_ms = next_ms;
        rec.updated_ms = now;
        st.set_due(id, old.next_ms, next_ms);
        st.jobs.insert(id.to_string(), rec.clone());
        Ok(Some(WatermarkWrite::Done { record: Box::new(rec), created: false }))
    }

    async fn due_jobs(&self, now: i64, limit: usize) -> Result<Vec<JobRecord>> {
        let st = self.lock()?;
        Ok(st
            .due
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(limit)
            .filter_map(|(_, id)| st.jobs.get(id).cloned())
            .collect())
    }

    async fn next_due_ms(&self) -> Result<Option<i64>> {
        Ok(self.lock()?.due.iter().next().map(|(t, _)| *t))
    }

    async fn claim(&self, fence: &str, claims: &[Claim]) -> Result<Vec<ClaimOutcome>> {
        let mut out = Vec::with_capacity(claims.len());
        let mut announce = Vec::new();
        {
            let mut st = self.lock()?;
            let now = now_ms();
            if st.lease_value(now) != Some(fence) {
                return Err(Error::Fenced(format!("lease {fence} is no longer held")));
            }
            for c in claims {
                let Some(rec) = st.jobs.get(&c.job_id).cloned() else {
                    out.push(ClaimOutcome::Gone);
                    continue;
                };
                if rec.spec.paused {
                    out.push(ClaimOutcome::Paused);
                    continue;
                }
                if rec.next_ms != Some(c.sched_ms) {
                    out.push(ClaimOutcome::Stale);
                    continue;
                }
                let mut new = rec.clone();
                new.last_ms = Some(c.sched_ms);
                new.next_ms = c.next_ms;
                st.set_due(&c.job_id, rec.next_ms, c.next_ms);
                st.jobs.insert(c.job_id.clone(), new);
                // A fire recorded before: the watermark moved on above, nothing else happens.
                if st.fires.get(&c.exec.fire_id).is_some_and(|exp| *exp > now) {
                    out.push(ClaimOutcome::Duplicate);
                    continue;
                }
                st.fires.insert(c.exec.fire_id.clone(), now + self.retention_ms);
                let (outcome, exec) = if c.exec.state == ExecState::Misfired {
                    (ClaimOutcome::Misfired, c.exec.clone())
                } else if c.forbid && st.lock_held(&c.job_id, now) {
                    (ClaimOutcome::Skipped, c.skipped_exec())
                } else {
                    if c.forbid {
                        st.locks.insert(c.job_id.clone(), (c.exec.fire_id.clone(), now + c.lock_ttl_ms as i64));
                    }
                    (ClaimOutcome::Claimed, c.exec.clone())
                };
                st.insert_exec(&exec, self.retention_ms, now);
                announce.push(exec);
                out.push(outcome);
            }
        }
        announce.iter().for_each(|e| self.announce(e));
        Ok(out)
    }

    async fn trigger(
        &self,
        exec: &Execution,
        key: Option<&str>,
        forbid: bool,
        lock_ttl_ms: u64,
    ) -> Result<TriggerOutcome> {
        let outcome = {
            let mut st = self.lock()?;
            let now = now_ms();
            if !st.jobs.contains_key(&exec.job_id) {
                return Ok(TriggerOutcome::Gone);
            }
            if let Some(k) = key {
                let idem = (exec.job_id.clone(), k.to_string());
                if let Some((id, exp)) = st.idem.get(&idem) {
                    if *exp > now {
                        if let Some((e, _)) = st.execs.get(id) {
                            return Ok(TriggerOutcome::Deduplicated(e.clone()));
                        }
                    }
                }
                st.idem.insert(idem, (exec.id.clone(), now + self.retention_ms));
            }
            st.fires.insert(exec.fire_id.clone(), now + self.retention_ms);
            if forbid && st.lock_held(&exec.job_id, now) {
                let mut e = exec.clone();
                e.state = ExecState::Skipped;
                e.set_error("skipped: an earlier fire of this job is still running (concurrency forbid)");
                st.insert_exec(&e, self.retention_ms, now);
                TriggerOutcome::Skipped(e)
            } else {
                if forbid {
                    st.locks.insert(exec.job_id.clone(), (exec.fire_id.clone(), now + lock_ttl_ms as i64));
                }
                st.insert_exec(exec, self.retention_ms, now);
                TriggerOutcome::Created(exec.clone())
            }
        };
        if let TriggerOutcome::Created(e) | TriggerOutcome::Skipped(e) = &outcome {
            self.announce(e);
        }
        Ok(outcome)
    }

    async fn create_execution(&self, exec: &Execution) -> Result<()> {
        self.lock()?.insert_exec(exec, self.retention_ms, now_ms());
        self.announce(exec);
        Ok(())
    }

    async fn update_execution(&self, exec: &Execution) -> Result<()> {
        self.create_execution(exec).await
    }

    async fn finish_execution(&self, exec: &Execution, release_lock: bool) -> Result<()> {
        {
            let mut st = self.lock()?;
            st.insert_exec(exec, self.retention_ms, now_ms());
            if release_lock && st.locks.get(&exec.job_id).is_some_and(|(owner, _)| *owner == exec.fire_id) {
                st.locks.remove(&exec.job_id);
            }
        }
        self.announce(exec);
        Ok(())
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
        let mut page: Vec<Execution> = st
            .execs
            .range::<str, _>((std::ops::Bound::Unbounded, upper))
            .rev()
            .filter(|(_, (e, exp))| {
                *exp > now && f.job_id.as_ref().is_none_or(|j| *j == e.job_id) && f.state.is_none_or(|s| s == e.state)
            })
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

    fn subscribe(&self) -> broadcast::Receiver<Execution> {
        self.events.subscribe()
    }

    async fn prune(&self, now: i64) -> Result<u64> {
        let mut st = self.lock()?;
        let before = st.execs.len() + st.fires.len() + st.idem.len() + st.locks.len();
        st.execs.retain(|_, (_, exp)| *exp > now);
        st.fires.retain(|_, exp| *exp > now);
        st.idem.retain(|_, (_, exp)| *exp > now);
        st.locks.retain(|_, (_, exp)| *exp > now);
        let after = st.execs.len() + st.fires.len() + st.idem.len() + st.locks.len();
        Ok((before - after) as u64)
    }

    async fn acquire_lease(&self, node_id: &str, inc: &str, ttl_ms: u64, floor: u64) -> Result<LeaseAcquire> {
        let mut st = self.lock()?;
        let now = now_ms();
        if let Some(v) = st.lease_value(now) {
            return Ok(LeaseAcquire::Held(LeaseHolder::parse(v)));
        }
        let epoch = st.epoch.max(floor).max(now.max(0) as u64) + 1;
        st.epoch = epoch;
        let value = format!("{node_id}:{epoch}:{inc}");
        st.lease = Some((value.clone(), now + ttl_ms as i64));
        Ok(LeaseAcquire::Acquired(LeaseHolder {
            node_id: node_id.to_string(),
            epoch,
            incarnation: inc.to_string(),
            value,
        }))
    }

    async fn renew_lease(&self, value: &str, ttl_ms: u64) -> Result<bool> {
        let mut st = self.lock()?;
        let now = now_ms();
        if st.lease_value(now) == Some(value) {
            st.lease = Some((value.to_string(), now + ttl_ms as i64));
            return Ok(true);
        }
        Ok(false)
    }

    async fn release_lease(&self, value: &str) -> Result<bool> {
        let mut st = self.lock()?;
        if st.lease.as_ref().is_some_and(|(v, _)| v == value) {
            st.lease = None;
            return Ok(true);
        }
        Ok(false)
    }

    async fn lease(&self) -> Result<Option<LeaseHolder>> {
        let st = self.lock()?;
        Ok(st.lease_value(now_ms()).and_then(LeaseHolder::parse))
    }

    async fn heartbeat(&self, node: &NodeRecord, ttl_ms: u64) -> Result<()> {
        let mut st = self.lock()?;
        st.nodes.insert(node.node_id.clone(), (node.clone(), node.beat_ms + ttl_ms as i64));
        Ok(())
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        Ok(self.lock()?.nodes.values().map(|(n, _)| n.clone()).collect())
    }
}
