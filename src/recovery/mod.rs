//! Queue and recovery: where a fire that is not running goes, and how nothing is left behind. Owns
//! the fallback to a node's durable queue (`enqueue_somewhere`), the master's sweep (fires stuck in
//! `dispatching`, fires handed over but in no list, dead nodes' queues and processing lists, dead
//! attempts still to close, held fires whose job's lock expired), a node's adoption of what its earlier incarnations left, the periodic
//! rescan of its own processing list, setting aside what the store holds wrongly, and the
//! consuming side of the queues: draining this node's own queue (`drain_queue`), higher priorities
//! first with bounded starvation (`Fairness`), and, when idle, taking an entry from a busier node's
//! (`steal_one`), each handed to the worker to run.
//! Uses: `store`, `cluster` (membership, lease view, load table), `worker`.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::alert::Alert;
use crate::cluster::lease::{master_elsewhere, Mastership, Role, MASTER_WAIT};
use crate::cluster::loads::{least_loaded, LoadTable};
use crate::cluster::membership::Membership;
use crate::error::Result;
use crate::execution::{job_of_fire, ExecState, Execution};
use crate::job::priority::Fairness;
use crate::job::{Job, Priority, Recovery as RecoveryPolicy};
use crate::metrics::path;
use crate::store::{now_ms, Closing, Enqueue, Fence, NodeFires, Reap, ReapBy, ReapRequest, Store};
use crate::worker::{lock_ttl_ms, Slot, Worker};

/// Fires read per sweep pass.
const BATCH: usize = 500;
/// How long one wait for the durable queue's doorbell lasts before the drain loop looks around
/// again (and, when idle, for a busier node's queue to help with).
const TAKE_WAIT: Duration = Duration::from_millis(500);
/// Upper bound of the random delay before taking over another node's entry.
const STEAL_JITTER_MS: u64 = 50;
/// Only nodes whose record is this fresh are helped (a dead node's queue is the master's to move).
const STEAL_FRESH_MS: i64 = 3_000;
/// With several shards: how long the one drain loop rests when every queue was empty, and how many
/// such rounds pass between looks for a busier node's queue (`drain_queues`).
const SHARDS_POLL: Duration = Duration::from_millis(100);
const SHARDS_STEAL_EVERY: usize = 5;

/// How one take from the queue went (`Recovery::take_and_run`).
enum Drained {
    /// An entry was taken and runs.
    Ran,
    /// Nothing was queued after all.
    Empty,
    /// The store did not answer (logged).
    Failed,
    /// The node is shutting down, or its pool closed.
    Stop,
}

pub struct Recovery {
    store: Arc<dyn Store>,
    worker: Arc<Worker>,
    node_id: String,
    role: watch::Receiver<Role>,
    membership: Arc<Membership>,
    loads: Arc<LoadTable>,
    /// Re-runs of one fire after its node died (recovery 'rerun').
    max_recoveries: u32,
    misfire_threshold_ms: i64,
    /// Between the levels of this node's queue in this shard.
    fairness: std::sync::Mutex<Fairness>,
    /// The levels of that queue the last take left holding entries (empty: none, or not known).
    waiting: std::sync::Mutex<Vec<Priority>>,
}

/// What queue-and-recovery is built from (`Recovery::new`).
pub struct RecoveryParts {
    pub store: Arc<dyn Store>,
    pub worker: Arc<Worker>,
    pub node_id: String,
    /// This node's role (master or not), from the lease: only the master sweeps and reaps.
    pub role: watch::Receiver<Role>,
    pub membership: Arc<Membership>,
    pub loads: Arc<LoadTable>,
    /// How many times a fire may be recovered (re-run after its node died) before it is lost.
    pub max_recoveries: u32,
    pub misfire_threshold_ms: u64,
}

impl Recovery {
    #[allow(clippy::too_many_arguments)]
    pub fn new(p: RecoveryParts) -> Recovery {
        let RecoveryParts { store, worker, node_id, role, membership, loads, max_recoveries, misfire_threshold_ms } = p;
        Recovery {
            store,
            worker,
            node_id,
            role,
            membership,
            loads,
            max_recoveries,
            misfire_threshold_ms: i64::try_from(misfire_threshold_ms).unwrap_or(i64::MAX),
            fairness: std::sync::Mutex::new(Fairness::default()),
            waiting: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Takes the next entry of this node's queue in this shard, in the order `Fairness` gives, and
    /// counts the take; remembers which levels still hold entries (`next_level`).
    async fn take(&self) -> Result<Option<String>> {
        let order = self.fairness().order();
        let taken = self.store.take_queued(&self.node_id, order).await;
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.clear();
        let Some(t) = taken? else { return Ok(None) };
        self.fairness().took(t.level, &t.waiting);
        waiting.clone_from(&t.waiting);
        Ok(Some(t.fire_id))
    }

    fn fairness(&self) -> std::sync::MutexGuard<'_, Fairness> {
        // A poisoned lock only means a panic elsewhere mid-count: the count itself is still usable.
        self.fairness.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The level of the entry the next take will take, for the drain's place in the workers'
    /// lines; None when nothing is queued. By the levels the last take left, or else by a look
    /// at the queue (normal when it cannot be had: the take will tell).
    async fn next_level(&self) -> Option<Priority> {
        let known = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let waiting = match known.is_empty() {
            false => known,
            true => match self.store.queue_levels(&self.node_id).await {
                Ok(levels) => levels,
                Err(e) => {
                    tracing::debug!(error = %e, "queue: cannot read its levels");
                    vec![Priority::Normal]
                }
            },
        };
        self.fairness().order().into_iter().find(|l| waiting.contains(l))
    }

    /// One take from this node's queue in this shard: a worker in the line of `level`, then the
    /// entry, handed to the worker to run on it.
    async fn take_and_run(&self, level: Priority, cancel: &CancellationToken) -> Drained {
        let slot = tokio::select! {
            _ = cancel.cancelled() => return Drained::Stop,
            s = self.worker.free_slot(level) => match s { Some(s) => s, None => return Drained::Stop },
        };
        // A take cut short by the shutdown whose move committed leaves its entry in this node's
        // processing list, for adoption or the reap.
        let taken = tokio::select! {
            _ = cancel.cancelled() => return Drained::Stop,
            r = self.take() => r,
        };
        match taken {
            Ok(Some(fire_id)) => {
                if !self.worker.accepting() {
                    // Taken while draining: it stays in our processing list for adoption/reaping.
                    return Drained::Stop;
                }
                // The shard's view of the pool: the fire is recorded in its shard.
                self.worker.run_taken(fire_id, slot);
                Drained::Ran
            }
            Ok(None) => Drained::Empty,
            Err(e) => {
                tracing::warn!(error = %e, "queue: cannot take; retrying");
                Drained::Failed
            }
        }
    }

    /// Drains this node's durable queue until `cancel`: takes an entry only when a worker is free,
    /// so waiting fires stay visible in the queue (and movable) rather than in this process. The
    /// worker is asked for in the line of the entry's priority (`worker::pool`), beside the fires
    /// waiting in the process. With nothing queued, it helps a busier node (`steal_one`), but only
    /// with a worker free that nothing here waits for; then it waits for the queue's doorbell,
    /// holding no worker.
    pub async fn drain_queue(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            match self.next_level().await {
                Some(level) => match self.take_and_run(level, &cancel).await {
                    Drained::Ran => continue,
                    Drained::Stop => return,
                    // Emptied meanwhile (a thief): the take deleted the doorbell; wait for it.
                    Drained::Empty => {}
                    Drained::Failed => {
                        tokio::time::sleep(TAKE_WAIT).await;
                        continue;
                    }
                },
                None => {
                    if let Some((fire_id, slot)) = self.steal_one(|| self.worker.idle_slot()).await {
                        self.worker.run_taken(fire_id, slot);
                        continue;
                    }
                }
            }
            let waited = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.store.wait_queued(&self.node_id, TAKE_WAIT) => r,
            };
            if let Err(e) = waited {
                tracing::debug!(error = %e, "queue: cannot wait for its doorbell; retrying");
                tokio::time::sleep(TAKE_WAIT).await;
            }
        }
    }

    /// Drains this node's queue in every shard (`parts`, one per shard) until `cancel`. One shard:
    /// `drain_queue`, which waits on its queue's doorbell. Several: one loop for them all, since a
    /// wait per shard would hold a free worker per shard (16 shards held every worker of an
    /// 8-worker node: measured, the burst ran at a twentieth of its speed). It looks at the shards
    /// in turn for one with something queued, asks for a worker in the line of the entry it will
    /// take, and takes it; when every queue is empty it rests `SHARDS_POLL`, and every
    /// `SHARDS_STEAL_EVERY` such rounds helps a busier node in some shard, with a worker nothing
    /// here waits for. A fire waiting in a queue (the fallback
    /// path) is therefore taken up to `SHARDS_POLL` later than with one shard.
    pub async fn drain_queues(parts: Vec<Arc<Recovery>>, cancel: CancellationToken) {
        let n = parts.len();
        if n == 1 {
            return Arc::clone(&parts[0]).drain_queue(cancel).await;
        }
        let mut round = 0usize;
        loop {
            // The first shard (in turn) with something queued, and the level its take will take.
            let mut found = None;
            for i in 0..n {
                let r = &parts[(round + i) % n];
                if let Some(level) = r.next_level().await {
                    found = Some((r, level));
                    break;
                }
            }
            round = round.wrapping_add(1);
            if let Some((r, level)) = found {
                match r.take_and_run(level, &cancel).await {
                    Drained::Stop => return,
                    Drained::Ran => continue,
                    // Emptied meanwhile, or the store did not answer: rest, as after an empty round.
                    Drained::Empty | Drained::Failed => {}
                }
            }
            if round.is_multiple_of(SHARDS_STEAL_EVERY) {
                for r in &parts {
                    if let Some((fire_id, slot)) = r.steal_one(|| r.worker.idle_slot()).await {
                        r.worker.run_taken(fire_id, slot);
                        break;
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(SHARDS_POLL) => {}
            }
        }
    }

    /// Takes one entry from the live node with the longest queue into this node's processing list,
    /// after a small random delay so that idle nodes do not all race for the same entry (the loser
    /// just finds nothing). Only from a node whose every handler this node has too: a steal takes
    /// the head of the queue, whatever its handler, and a fire must only reach a node that can run
    /// it (a node with shell enabled is never robbed by one without). The room to run it is taken
    /// last (`slot`, None: no room), just before the steal, so that no fire of this node waits
    /// behind the look around.
    async fn steal_one(&self, slot: impl FnOnce() -> Option<Slot>) -> Option<(String, Slot)> {
        let nodes = self.store.list_nodes().await.ok()?;
        let now = now_ms();
        let mine = self.worker.registry().names();
        let others: Vec<String> = nodes
            .into_iter()
            .filter(|n| n.node_id != self.node_id && !n.draining && now - n.beat_ms <= STEAL_FRESH_MS)
            .filter(|n| n.handlers.iter().all(|h| mine.contains(h)))
            .map(|n| n.node_id)
            .collect();
        let lens = self.store.queue_lengths(&others).await.ok()?;
        let (victim, len) = others.iter().zip(lens).max_by_key(|(_, l)| *l)?;
        if len == 0 {
            return None;
        }
        let jitter = rand::random_range(0..STEAL_JITTER_MS);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        let slot = slot()?;
        let fire = self.store.steal(victim, &self.node_id, &self.membership.incarnation()).await.ok()??;
        tracing::info!(fire = %fire, from = %victim, "took over a queued fire from a busier node");
        self.worker.metrics().dispatched(path::STOLEN);
        Some((fire, slot))
    }

    /// Puts a dispatching fire into `target`'s queue, or this node's when the target is dead.
    pub async fn enqueue_somewhere(&self, fence: &Fence, fire_id: &str, target: &str) {
        for t in [target, self.node_id.as_str()] {
            match self.store.enqueue(fence, fire_id, t).await {
                Ok(Enqueue::Queued) => {
                    self.worker.metrics().dispatched(path::QUEUED);
                    tracing::info!(fire = %fire_id, node = %t, "queued");
                    return;
                }
                Ok(Enqueue::Orphan) => {
                    // It said accepted or queued, yet no list held it: it would have waited forever.
                    self.worker.metrics().dispatched(path::QUEUED);
                    let job = job_of_fire(fire_id);
                    self.set_aside(job, fire_id, &format!("fire was handed over but in no list: queued again on {t}"));
                    return;
                }
                Ok(Enqueue::NotDispatching(state)) => {
                    // The target accepted after all (an ambiguous timeout): nothing to do.
                    tracing::debug!(fire = %fire_id, state = %state, "already handed over");
                    return;
                }
                Ok(Enqueue::Unknown) => {
                    tracing::debug!(fire = %fire_id, state = "unknown", "already handed over");
                    return;
                }
                Ok(Enqueue::TargetDead) => continue,
                Err(e) => {
                    tracing::warn!(fire = %fire_id, error = %e, "cannot queue the fire; the takeover sweep will");
                    return;
                }
            }
        }
    }

    /// Master duties besides firing, every interval: move dead nodes' work, and hand fires left in
    /// `dispatching` (their master died mid-dispatch) to a queue.
    pub async fn sweep(&self, master: &Mastership) -> Result<()> {
        // Free locks with fires held for them (their holder's node died and the lock expired):
        // the oldest held fire takes each, `dispatching` and due, queued just below.
        // Its failure (a clobbered index) holds up none of the sweep's other duties.
        match self.store.promote_held(&master.lease, lock_ttl_ms(self.misfire_threshold_ms)).await {
            Ok(fires) => {
                for fire_id in fires {
                    tracing::info!(fire = %fire_id, "a held fire took its job's lock, free since its holder ended elsewhere");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot hand free locks on to held fires; next sweep"),
        }
        let now = now_ms();
        for fire_id in self.store.stuck_dispatching(now, BATCH).await? {
            let job = self.job_of(&fire_id).await?;
            let target = self.target_for(job.as_ref(), now).await;
            self.enqueue_somewhere(&master.lease, &fire_id, &target).await;
        }
        // Dead attempts a reap decided about whose closing did not happen (its reply was lost).
        for c in self.store.closings().await? {
            self.close_dead_attempt(&c).await?;
        }
        let dead_nodes = self.store.dead_nodes().await?;
        if dead_nodes.iter().any(|d| *d != self.node_id) && !self.membership.may_judge_liveness(&*self.store).await? {
            tracing::info!(nodes = %dead_nodes.join(","), "heartbeats missing, but the store was out of reach or restarted lately: not judging them dead yet");
            return Ok(());
        }
        for dead in dead_nodes {
            if dead == self.node_id {
                continue;
            }
            let (q, p) = self.store.node_fires(&dead).await?;
            for (fires, entries) in [(NodeFires::Queued, q), (NodeFires::Taken, p)] {
                for fire_id in entries {
                    self.reap_one(ReapBy::Master(master.lease.clone()), &dead, fires, &fire_id).await?;
                }
            }
        }
        Ok(())
    }

    /// At start, resolves what this node's earlier incarnations left in its own lists.
    /// Every few seconds: hands the stop requests left for this node to its runs, and recovers what sits in this node's processing list but is in no task of
    /// this process: an earlier incarnation's leftovers (the node was declared dead and came back)
    /// by adoption, and a fire whose start failed (a store error) by starting it again. The start
    /// is a compare-and-set, so a fire that is in fact running is never run twice.
    pub async fn rescan(&self) -> Result<()> {
        let (_, p) = self.store.node_fires(&self.node_id).await?;
        let leftovers: Vec<String> = p.into_iter().filter(|f| !self.worker.in_hand(f)).collect();
        self.adopt_entries(NodeFires::Taken, leftovers).await?;
        let (_, p) = self.store.node_fires(&self.node_id).await?;
        for fire_id in p.into_iter().filter(|f| !self.worker.in_hand(f)) {
            tracing::info!(fire = %fire_id, "rescan: starting a fire left in this node's processing list");
            self.worker.run_accepted(fire_id, None);
        }
        // Stop requests left for this node (CancelExecution, when its direct call did not get here),
        // after the fires just restarted are in hand: each reaches the run of its execution (a
        // request for an execution this node no longer runs stops nothing). A stop list that
        // cannot be read does not hold the rescan up.
        match self.store.take_stops(&self.node_id).await {
            Ok(stops) => {
                for s in stops {
                    if !self.worker.stop_run(&s.fire, &s.exec, &s.why) {
                        tracing::info!(execution = %s.exec, "a stop request for a fire this node does not have in hand: nothing to stop");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot take this node's stop requests; next rescan"),
        }
        Ok(())
    }

    pub async fn adopt(&self) -> Result<()> {
        let (q, p) = self.store.node_fires(&self.node_id).await?;
        self.adopt_entries(NodeFires::Queued, q).await?;
        self.adopt_entries(NodeFires::Taken, p).await
    }

    /// Resolves entries of this node's own list left by its earlier incarnations (fenced by its
    /// live heartbeat; entries of the live incarnation are left as they are).
    async fn adopt_entries(&self, fires: NodeFires, entries: Vec<String>) -> Result<()> {
        let inc = self.membership.incarnation();
        for fire_id in entries {
            self.reap_one(ReapBy::Adopt { incarnation: inc.clone() }, &self.node_id, fires, &fire_id).await?;
        }
        Ok(())
    }

    /// The job a fire belongs to (fire ids are `<job>@…`, and job ids never hold '@').
    async fn job_of(&self, fire_id: &str) -> Result<Option<Job>> {
        let job_id = job_of_fire(fire_id);
        Ok(self.store.get_job(job_id).await?.and_then(|r| Job::new(r.spec).ok()))
    }

    /// Where a recovered fire goes: a master-only fire to the master, never elsewhere (this node
    /// when it is master; when it is not, as when adopting its own leftovers at start, the lease
    /// holder); any other to the least-loaded live node that has its handler, or, with none, this
    /// node (whose worker records it failed with the reason, or hands it on if one appeared).
    async fn target_for(&self, job: Option<&Job>, now: i64) -> String {
        if job.is_some_and(|j| j.spec.master_only) {
            return self.current_master().await;
        }
        self.least_loaded_target(now, job.map(|j| &j.spec)).await
    }

    /// This node if it is master; otherwise another node holding the lease, waiting a while for
    /// one (a lease still held by this node's previous process is about to expire or pass).
    async fn current_master(&self) -> String {
        master_elsewhere(&*self.store, &self.role, &self.node_id, MASTER_WAIT)
            .await
            .unwrap_or_else(|| self.node_id.clone())
    }

    async fn least_loaded_target(&self, now: i64, spec: Option<&crate::job::JobSpec>) -> String {
        let peers: Vec<_> = self
            .loads
            .peers(now)
            .await
            .into_iter()
            .filter(|p| spec.is_none_or(|s| p.can_run(&s.handler, &s.selector)))
            .collect();
        least_loaded(&peers).map_or_else(|| self.node_id.clone(), |p| p.node_id.clone())
    }

    /// Records a reaped attempt `lost` (it would say `running` forever) and, when its fire is lost,
    /// alerts; then tells the store it is closed. Safe to repeat: a record already `lost` is left
    /// alone and not alerted again (the sweep closes what a reap whose reply was lost left behind).
    async fn close_dead_attempt(&self, c: &Closing) -> Result<()> {
        let prev = if c.exec_id.is_empty() { None } else { self.store.get_execution(&c.exec_id).await? };
        let dead = &c.dead_node;
        // No record to read: the fire hash, the record of its current attempt, has moved on to a
        // re-run that started before this close (section 4.2); the reap kept what it needs.
        let from_closing = || {
            let a = &c.attempt;
            let mut e = Execution::pending(&a.job_id, c.fire_id.clone(), a.sched_ms, dead, a.attempt.max(1));
            if !c.exec_id.is_empty() {
                e.id = c.exec_id.clone();
            }
            e.start_ms = a.started_ms;
            e.state = if a.started_ms.is_some() { ExecState::Running } else { ExecState::Pending };
            e
        };
        if c.lost {
            let mut e = prev.unwrap_or_else(from_closing);
            if e.state != ExecState::Lost {
                // The attempt ran on the dead node; the record read back may name another (the fire's
                // `node` now names where it went).
                e.node_id = dead.clone();
                e.close(ExecState::Lost, format!("lost: node {dead} died while running it (recovery policy: lost)"));
                self.store.finish_execution(&e, false).await?;
                self.worker.metrics().outcome("lost");
                self.worker.alerts().raise(Alert::from_execution("execution_lost", &e, ""));
                tracing::warn!(fire = %c.fire_id, node = %dead, "fire lost with its node");
                self.worker.note_outcome(None, &e).await;
            }
        } else if let Some(mut e) =
            prev.or_else(|| (!c.exec_id.is_empty()).then(from_closing)).filter(|e| !e.state.is_terminal())
        {
            // The attempt is over, and the fire runs again on `target`: say so, rather than leave
            // its record open. It died with its node; or its own node handed the fire over and its
            // record of that never came (the hand-over's reply was lost): not run there.
            let (state, why) = match c.handed {
                true => (ExecState::Skipped, format!("not run on {dead}: handed to {}, which runs it", c.target)),
                false => (ExecState::Lost, format!("lost: node {dead} died while running it; re-run on {}", c.target)),
            };
            e.node_id = dead.clone();
            e.close(state, why);
            // Not the fire's outcome: it runs again, as a new attempt (see `next_attempt_ms`).
            e.next_attempt_ms = Some(now_ms());
            self.store.finish_execution(&e, false).await?;
        }
        if !c.exec_id.is_empty() {
            self.store.closed(&c.exec_id).await?;
        }
        Ok(())
    }

    async fn reap_one(&self, by: ReapBy, dead: &str, fires: NodeFires, fire_id: &str) -> Result<()> {
        let job = self.job_of(fire_id).await?;
        // Its own leftovers a node keeps (a master-only one goes to the master); a dead node's go
        // where `target_for` says.
        let own = matches!(by, ReapBy::Adopt { .. });
        let target = match &job {
            Some(j) if own && !j.spec.master_only => self.node_id.clone(),
            None if own => self.node_id.clone(),
            _ => self.target_for(job.as_ref(), now_ms()).await,
        };
        let target = target.as_str();
        let rerun = job.as_ref().is_some_and(|j| j.spec.recovery == RecoveryPolicy::Rerun);
        let req = ReapRequest {
            by,
            dead_node: dead.to_string(),
            fires,
            fire_id: fire_id.to_string(),
            target: target.to_string(),
            rerun,
            max_recoveries: Some(self.max_recoveries),
            // A re-run may wait up to the misfire threshold again before it starts.
            lock_ttl_ms: lock_ttl_ms(self.misfire_threshold_ms),
        };
        let outcome = self.store.reap(&req).await?;
        match &outcome {
            Reap::Lost { exec_id, dead: attempt, .. } => {
                let c = Closing {
                    exec_id: exec_id.clone(),
                    lost: true,
                    handed: false,
                    fire_id: fire_id.to_string(),
                    attempt: attempt.clone(),
                    dead_node: dead.to_string(),
                    target: target.to_string(),
                };
                self.close_dead_attempt(&c).await?;
            }
            Reap::Rerun { dead_exec_id, dead: attempt } => {
                let c = Closing {
                    exec_id: dead_exec_id.clone(),
                    lost: false,
                    handed: false,
                    fire_id: fire_id.to_string(),
                    attempt: attempt.clone(),
                    dead_node: dead.to_string(),
                    target: target.to_string(),
                };
                self.close_dead_attempt(&c).await?;
                self.worker.metrics().dispatched(path::REAPED);
                tracing::info!(fire = %fire_id, from = %dead, to = %target, "re-running a dead node's fire");
            }
            Reap::Moved => {
                self.worker.metrics().dispatched(path::REAPED);
                tracing::info!(fire = %fire_id, from = %dead, to = %target, "recovered a dead node's fire");
            }
            _ => tracing::debug!(fire = %fire_id, outcome = ?outcome, "reap"),
        }
        Ok(())
    }
    /// A job (or one fire of it) whose stored keys are not what they should be: logged, counted and
    /// alerted; the store has already taken it out of the way, so the other jobs go on firing.
    pub fn set_aside(&self, job_id: &str, fire_id: &str, reason: &str) {
        tracing::error!(job = %job_id, fire = %fire_id, reason, "set aside: a stored key is not what it should be");
        self.worker.metrics().set_aside.inc();
        self.worker.alerts().raise(Alert::set_aside(job_id, fire_id, &self.node_id, reason));
    }
}
