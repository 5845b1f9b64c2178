//! The worker pool: runs executions on this node, its own handlers at most `max_workers` at once,
//! and records every outcome; fires waiting for one of its workers are served by priority (`pool`).
//! Owns the active/waiting counters (this node's load), per-execution timeouts, retries with
//! backoff (a retry is a new execution of the same fire), renewal of the no-overlap lock while a
//! forbid job runs, and alerts when retries are exhausted. Attached external
//! workers (`remote`) run their handlers' fires on their own slots, which add to the node's load
//! (not to its own workers), and a run whose worker went away follows the job's recovery policy here.
//! Uses: `store` (execution records, locks), `handlers`, `remote`, `alert`. Never claims fires.
pub mod egress;
pub mod handlers;
pub mod http;
pub mod limits;
pub mod pool;
pub mod remote;
pub mod shell;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::alert::{Alert, Alerts};
use crate::cluster::lease::{master_elsewhere, Role, MASTER_WAIT};
use crate::cluster::membership::Membership;
use crate::execution::{new_execution_id, truncate_utf8, ExecState, Execution, MAX_OUTPUT_BYTES};
use crate::job::{Concurrency, Job, JobSpec, Priority, Recovery};
use crate::metrics::Metrics;
use crate::store::{
    now_ms, Accept, Fence, Finish, Keep, Load, MasterOnly, NodeFires, NodeRecord, Reap, ReapBy, ReapRequest, Start,
    StartedFire, Store,
};
use handlers::{FailureKind, FireContext, Partial, Registry, RunOutput, Stop};

pub use crate::store::{lock_ttl_ms, LOCK_TTL_MS};

/// How long a start is asked again while the store cannot answer; after that the fire stays in the
/// processing list for the periodic rescan.
const START_RETRY_FOR: Duration = Duration::from_secs(15);

/// How long after its instant a fire whose handler no live node has waits for a node that has it
/// and may be back (its heartbeat lapsed less than this ago, and it did not leave): a node
/// restarting, or one whose beats a Redis outage or fail-over held up. Past it, the fire is
/// recorded `failed` (`Worker::cannot_run_here`).
const AWAIT_CAPABLE_MS: i64 = 30_000;

/// What a follower of an execution's output gets (`Worker::follow_output`, `Node::follow_output`).
#[derive(Debug)]
pub enum OutputEvent {
    /// Printed since the previous chunk.
    Chunk(RunOutput),
    /// The execution as recorded at its end: the last event.
    End(Box<Execution>),
    /// It cannot be followed (unknown, or the store is down): the last event.
    Failed(crate::Error),
}

/// The output of the runs going on now, by execution id.
type LiveRuns = Arc<std::sync::Mutex<std::collections::HashMap<String, Partial>>>;

/// A run's output in the live registry while the run goes on (`Worker::follow_output`).
struct Live {
    map: LiveRuns,
    id: String,
}

impl Live {
    fn new(map: &LiveRuns, id: &str, p: &Partial) -> Live {
        if let Ok(mut m) = map.lock() {
            m.insert(id.to_string(), p.clone());
        }
        Live { map: Arc::clone(map), id: id.to_string() }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&self.id);
        }
    }
}

/// Who else can run a handler (`Worker::node_with`).
enum Capable {
    /// A live node, the least busy.
    Live(String),
    /// None live now, but this one has it and may be back (None: the node records are unreadable).
    Awaited(Option<String>),
    None,
}

impl Registry {
    /// The built-ins every node has: `noop`, `sleep`, `http`. `shell` is added only when enabled.
    /// Here rather than beside the `Handler` trait, so the handlers' own files depend on the trait
    /// and not the other way round.
    pub fn with_builtins() -> Registry {
        let mut r = Registry::default();
        r.register("noop", handlers::Noop);
        r.register("sleep", handlers::Sleep);
        r.register("http", http::Http::new());
        r
    }
}

/// How a fire reaches this node's pool.
#[derive(Debug)]
enum Taking {
    /// Already in this node's processing list (SubmitTasks accepted it, the rescan found it).
    Accepted,
    /// Still `dispatching`: accepted here first, checking the master's epoch (None for a manual
    /// fire, which no master made).
    Accept { epoch: Option<u64> },
    /// Taken and started in one step by its accept or claim (section 3.8): no start step.
    Started(Taken),
}

/// A fire its take started (`Accept::Started`, `ClaimOutcome::Started`), and the incarnation that
/// took it: only that incarnation may run it (a node judged dead meanwhile has a new one, and the
/// fire was recovered elsewhere; no start step is left to refuse it).
#[derive(Debug)]
pub struct Taken {
    pub fire: Box<StartedFire>,
    pub inc: String,
}

pub struct Worker {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    membership: Arc<Membership>,
    /// Whether this node is master: a master-only fire found here otherwise goes to the master.
    role: tokio::sync::watch::Receiver<Role>,
    registry: Registry,
    node_id: String,
    cluster: String,
    /// A peer whose record is older than this is not live.
    node_ttl_ms: u64,
    alerts: Alerts,
    /// The node's defaults of a job's history caps.
    keep: Keep,
    /// How long before its instant a fire is started (`WorkerParts::start_lead_ms`).
    start_lead_ms: i64,
    /// This node's own workers: a fire of a built-in handler runs holding one. A fire of an external
    /// worker's handler holds none (its worker's slot bounds it, `remote`).
    pool: Arc<pool::Pool>,
    /// Fires this node runs at once (its load's capacity): its own workers plus the slots of
    /// attached external workers.
    max: Arc<AtomicU32>,
    /// Recoveries a fire gets (`max_recoveries`): a fire whose external worker went away is re-run
    /// at most this many times, as one whose node died.
    max_recoveries: u32,
    /// See `WorkerParts::misfire_threshold_ms`.
    misfire_threshold_ms: i64,
    /// The concurrency limits' slots a fire takes before its handler begins.
    /// Shared by every shard's view: the limits are the cluster's, not a shard's.
    limits: Arc<limits::Limits>,
    active: Arc<AtomicU32>,
    waiting: Arc<AtomicU32>,
    /// Fires taken from a queue on an external worker's room and not yet placed (on the worker's
    /// slot, or, a built-in handler's, on one of this node's own workers): the queue taker counts
    /// them against that room.
    unplaced: Arc<AtomicU32>,
    accepting: Arc<AtomicBool>,
    /// The output of the runs going on now, by execution id, for whoever follows one live
    /// (`follow_output`).
    live: LiveRuns,
    /// Fires this process has in hand (taken, waiting for a worker, or running), each with its stop
    /// request (CancelExecution, `stop_run`): the periodic rescan of the processing list leaves them
    /// alone.
    in_hand: InHand,
    tracker: TaskTracker,
    /// Cancelled when the grace period of a shutdown has run out: running handlers are dropped.
    cancel: CancellationToken,
}

/// Room for a fire about to be taken from a queue (`Worker::free_slot`): one of this node's own
/// workers, reserved, or a free slot of an attached external worker, not reserved but counted
/// (`Unplaced`) until the fire is placed: a fire of a built-in handler taken on it waits for one of
/// the node's own workers before it is started.
pub struct Slot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    unplaced: Option<Unplaced>,
}

impl Slot {
    /// No room taken (a fire pushed to this node: `spawn_fire`).
    fn none() -> Slot {
        Slot { permit: None, unplaced: None }
    }
}

/// Counts a fire taken on an external worker's room until it is placed (`Worker::unplaced`).
struct Unplaced(Arc<AtomicU32>);

impl Unplaced {
    fn new(count: &Arc<AtomicU32>) -> Unplaced {
        count.fetch_add(1, Ordering::Relaxed);
        Unplaced(Arc::clone(count))
    }
}

impl Drop for Unplaced {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a worker pool is built from (`Worker::new`).
pub struct WorkerParts {
    pub store: Arc<dyn Store>,
    pub membership: Arc<Membership>,
    /// This node's role (master or not), from the lease.
    pub role: tokio::sync::watch::Receiver<Role>,
    pub registry: Registry,
    pub node_id: String,
    pub cluster: String,
    /// At most this many executions run at once (at least one).
    pub max: u32,
    pub alerts: Alerts,
    pub metrics: Arc<Metrics>,
    /// A node whose record is older than this is not live (where a fire this node cannot run may
    /// go instead).
    pub node_ttl_ms: u64,
    /// How much of a job's history is kept where the job does not say (`execution_keep_*`).
    pub keep: Keep,
    /// How long before its instant a fire is started (`start_lead_ms`, `store::START_LEAD_MS`).
    pub start_lead_ms: i64,
    /// Recoveries a fire gets (`max_recoveries`).
    pub max_recoveries: u32,
    /// How long after its instant a fire may still start (`misfire_threshold_ms`): how long a fire
    /// of an external handler waits for a worker that serves it.
    pub misfire_threshold_ms: i64,
}

impl Worker {
    pub fn new(p: WorkerParts) -> Worker {
        let WorkerParts {
            store,
            membership,
            role,
            registry,
            node_id,
            cluster,
            max,
            alerts,
            metrics,
            node_ttl_ms,
            keep,
            start_lead_ms,
            max_recoveries,
            misfire_threshold_ms,
        } = p;
        let max = max.max(1);
        Worker {
            limits: Arc::new(limits::Limits::new(Arc::clone(&store))),
            store,
            metrics,
            membership,
            role,
            registry,
            node_id,
            cluster,
            alerts,
            node_ttl_ms,
            keep,
            start_lead_ms,
            pool: Arc::new(pool::Pool::new(max as usize)),
            max: Arc::new(AtomicU32::new(max)),
            max_recoveries,
            misfire_threshold_ms,
            active: Arc::new(AtomicU32::new(0)),
            waiting: Arc::new(AtomicU32::new(0)),
            unplaced: Arc::new(AtomicU32::new(0)),
            accepting: Arc::new(AtomicBool::new(true)),
            in_hand: Default::default(),
            live: Default::default(),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// The same pool (its workers, load, fires in hand and stop) seen from another shard: fires
    /// taken through the view are recorded in `store` (the shard's), and a master-only fire is
    /// judged by `role` (this node's role in that shard).
    pub fn view(&self, store: Arc<dyn Store>, role: tokio::sync::watch::Receiver<Role>) -> Worker {
        Worker {
            store,
            role,
            metrics: Arc::clone(&self.metrics),
            membership: Arc::clone(&self.membership),
            registry: self.registry.clone(),
            node_id: self.node_id.clone(),
            cluster: self.cluster.clone(),
            node_ttl_ms: self.node_ttl_ms,
            alerts: self.alerts.clone(),
            keep: self.keep,
            start_lead_ms: self.start_lead_ms,
            pool: Arc::clone(&self.pool),
            max: Arc::clone(&self.max),
            max_recoveries: self.max_recoveries,
            misfire_threshold_ms: self.misfire_threshold_ms,
            limits: Arc::clone(&self.limits),
            active: Arc::clone(&self.active),
            waiting: Arc::clone(&self.waiting),
            unplaced: Arc::clone(&self.unplaced),
            accepting: Arc::clone(&self.accepting),
            in_hand: Arc::clone(&self.in_hand),
            live: Arc::clone(&self.live),
            tracker: self.tracker.clone(),
            cancel: self.cancel.clone(),
        }
    }

    /// The node's default history caps (`execution_keep_last`, `execution_keep_failed`).
    pub fn keep(&self) -> Keep {
        self.keep
    }

    pub fn load(&self) -> Load {
        Load {
            active: self.active.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
            queue: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// An external worker attached with `slots`: the node's capacity (its load's) grows by them.
    /// Its own workers do not: the worker's slots run only its handlers' fires.
    pub fn add_capacity(&self, slots: u32) {
        self.max.fetch_add(slots, Ordering::Relaxed);
    }

    /// An external worker detached: its slots leave the node's capacity.
    pub fn remove_capacity(&self, slots: u32) {
        self.max.fetch_sub(slots, Ordering::Relaxed);
    }

    /// Why this node cannot run a fire of `spec` itself: no handler of its name here, or (an
    /// external worker's handler) no attached worker with the tags its selector asks (the job's,
    /// and a manual fire's target tags).
    fn missing_here(&self, spec: &crate::job::JobSpec) -> String {
        match self.registry.get(&spec.handler) {
            Some(_) if !spec.selector.is_empty() => {
                let tags: Vec<String> = spec.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "no worker serving handler '{}' on node {} has the tags {}",
                    spec.handler,
                    self.node_id,
                    tags.join(",")
                )
            }
            _ => format!("handler '{}' is not registered on node {}", spec.handler, self.node_id),
        }
    }

    /// Whether the fire of `job` runs on this node's own workers (a built-in handler), not on an
    /// external worker's slot. Unknown (no definition at hand yet): taken as the node's own.
    fn runs_on_own_worker(&self, job: Option<&Job>) -> bool {
        job.is_none_or(|j| self.registry.is_builtin(&j.spec.handler))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn alerts(&self) -> &Alerts {
        &self.alerts
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// Runs a fire this node has accepted (it is in this node's processing list) when a worker is
    /// free. `job` saves a store read when the caller has it. False when the node is draining (the
    /// fire stays in the processing list, and is reaped or adopted).
    pub fn run_accepted(self: &Arc<Self>, fire_id: String, job: Option<Job>) -> bool {
        self.spawn_fire(fire_id, job, Taking::Accepted)
    }

    /// Runs a fire this node's accept or claim started (`Accept::Started`, `ClaimOutcome::Started`)
    /// when a worker is free, with no start step. False when the node is draining (the fire stays
    /// in the processing list, and is reaped or adopted).
    pub fn run_started(self: &Arc<Self>, fire_id: String, job: Option<Job>, taken: Taken) -> bool {
        // The take returned the job's definition: whether a worker of this node's own runs it is
        // known before a worker is waited for.
        let job = job.or_else(|| taken.fire.job.clone().and_then(|s| Job::new(s).ok()));
        self.spawn_fire(fire_id, job, Taking::Started(taken))
    }

    /// `run_started` for a fire this node's claim started (`ClaimOutcome::Started`): its first
    /// attempt, execution `exec_id`, made under `fence` (its epoch, and this node's incarnation that
    /// took it). It must begin within the misfire threshold of its instant, or of now when claimed
    /// late (as the claim's deadline says).
    pub fn run_claimed_started(self: &Arc<Self>, fire_id: &str, job: Job, exec_id: &str, fence: &Fence) -> bool {
        let Some(sched_ms) = crate::execution::fire_due_ms(fire_id) else {
            return self.run_accepted(fire_id.to_string(), Some(job));
        };
        let job_id = crate::execution::job_of_fire(fire_id);
        let start_ms = sched_ms.max(now_ms());
        let started = StartedFire {
            exec_id: exec_id.to_string(),
            attempt: 1,
            job_id: job_id.to_string(),
            sched_ms,
            epoch: fence.epoch,
            manual: false,
            start_ms,
            job: None,
            deadline_ms: Some(start_ms + self.misfire_threshold_ms),
            args: None,
            selector: Default::default(),
        };
        let taken = Taken { fire: Box::new(started), inc: fence.incarnation.clone() };
        self.spawn_fire(fire_id.to_string(), Some(job), Taking::Started(taken))
    }

    /// Accepts a dispatching fire for this node and runs it, on its own task, so that the fires of
    /// one tick are accepted concurrently (their round trips overlap on the shared connection)
    /// instead of one after another. `epoch` None for manual fires (no master made them).
    pub fn accept_and_run(self: &Arc<Self>, fire_id: String, epoch: Option<u64>, job: Job) -> bool {
        self.spawn_fire(fire_id, Some(job), Taking::Accept { epoch })
    }

    /// The fire counts in this node's load at once; on its own task it is accepted first when it
    /// is not yet (`Taking::Accept`), then waits for a worker and runs.
    fn spawn_fire(self: &Arc<Self>, fire_id: String, job: Option<Job>, taking: Taking) -> bool {
        if !self.accepting() {
            return false;
        }
        let Some(held) = self.hold(&fire_id) else {
            // Another task of this process has it (the rescan raced a pop): it runs it.
            return true;
        };
        let me = Arc::clone(self);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.tracker.spawn(async move {
            let _held = held;
            let taken = match taking {
                Taking::Accepted => None,
                Taking::Started(t) => Some(t),
                Taking::Accept { epoch } => {
                    let inc = me.membership.incarnation();
                    match me.store.accept(&fire_id, epoch, &me.node_id, &inc).await {
                        Ok(Accept::Accepted) => None,
                        Ok(Accept::Started(fire)) => Some(Taken { fire, inc }),
                        other => {
                            // Taken but the reply lost: the rescan finds it in this node's list;
                            // not taken: the sweep, once its dispatch deadline passes.
                            let why = match other {
                                Ok(other) => format!("not accepted here: {other:?}"),
                                Err(e) => format!("cannot accept the fire ({e}); the rescan or the sweep will"),
                            };
                            me.waiting.fetch_sub(1, Ordering::Relaxed);
                            tracing::info!(fire = %fire_id, "{why}");
                            return;
                        }
                    }
                }
            };
            wait_until_due(&fire_id, me.start_lead_ms).await;
            // An external worker's fire waits for its worker's slot instead (`remote`). One its take
            // started, cancelled while it waits, goes on without a worker: it is recorded, and
            // never begins.
            let own = me.runs_on_own_worker(job.as_ref());
            let stop = me.stop_of(&fire_id);
            let exec = taken.as_ref().map(|t| t.fire.exec_id.clone()).unwrap_or_default();
            // Its job's priority: as given, as its take read the definition, or read now (a fire
            // accepted and not started: a master-only one, or one the rescan found).
            let spec = job.as_ref().map(|j| &j.spec).or_else(|| taken.as_ref().and_then(|t| t.fire.job.as_ref()));
            let level = match spec {
                Some(s) => s.priority,
                None if own => tokio::select! {
                    j = me.job_of(&fire_id) => j.map(|j| j.spec.priority).unwrap_or_default(),
                    _ = me.cancel.cancelled() => Priority::Normal,
                },
                None => Priority::Normal,
            };
            let permit = match own {
                true if !exec.is_empty() => tokio::select! {
                    p = me.own_worker(level) => p,
                    _ = stop.wait(&exec) => None,
                },
                true => me.own_worker(level).await,
                false => None,
            };
            me.waiting.fetch_sub(1, Ordering::Relaxed);
            let cancelled = !exec.is_empty() && stop.requested(&exec).is_some();
            if permit.is_some() || !own || cancelled {
                me.execute(fire_id, job, Slot { permit, ..Slot::none() }, taken).await;
            } else if let Some(t) = taken {
                // Cut short (the grace period ran out) before a worker was free.
                me.give_back(&fire_id, job.as_ref(), t).await;
            }
        });
        true
    }

    /// Waits for room for one more fire: a free worker of this node's own (reserved; taken only
    /// while fewer fires wait for an external worker's slot than the workers have,
    /// `Registry::backlog_full`), or a free slot of an attached worker that no waiting fire will
    /// take (`Registry::free_worker_slots`; the queue holds both kinds of fire, and an external
    /// one must not wait behind the node's own busy workers). None once the pool is closed. Held
    /// until handed to `run_taken`, so whoever takes from a queue takes only what is free to run
    /// it, and a fire that waits for a worker waits in the queue, where an idle node can take it.
    /// `level`: the priority of the entry the taker will take (its place in the workers' lines).
    pub async fn free_slot(&self, level: Priority) -> Option<Slot> {
        const LOOK: Duration = Duration::from_millis(20);
        // One request for a worker throughout, so the taker keeps its place in the pool's line.
        let mut acquire = Box::pin(self.pool.acquire(level));
        loop {
            tokio::select! {
                p = &mut acquire => {
                    let p = p.ok()?;
                    if !self.registry.backlog_full() {
                        return Some(Slot { permit: Some(p), unplaced: None });
                    }
                    drop(p);
                    acquire = Box::pin(self.pool.acquire(level));
                    tokio::time::sleep(LOOK).await;
                }
                _ = tokio::time::sleep(LOOK) => {}
            }
            if let Some(slot) = self.worker_room() {
                return Some(slot);
            }
        }
    }

    /// A free slot of an attached external worker that no fire taken on such room waits to be
    /// placed on (counted until placed: `Unplaced`), if any.
    fn worker_room(&self) -> Option<Slot> {
        (self.registry.free_worker_slots() > u64::from(self.unplaced.load(Ordering::Relaxed)))
            .then(|| Slot { permit: None, unplaced: Some(Unplaced::new(&self.unplaced)) })
    }

    /// Room for one more fire now, taken only when nothing in this process waits for it: one of
    /// this node's own workers that no fire waits for, or a free slot of an attached worker (as
    /// `free_slot`). None when there is none: for helping a busier node, which must not take a
    /// worker from this node's own fires.
    pub fn idle_slot(&self) -> Option<Slot> {
        if !self.registry.backlog_full() {
            if let Some(p) = self.pool.try_acquire() {
                return Some(Slot { permit: Some(p), unplaced: None });
            }
        }
        self.worker_room()
    }

    /// Runs a fire just taken from a queue (this node's, or stolen) into this node's processing
    /// list, on the free worker `slot`. When a task of this process has the fire already, this
    /// waits for it to let go (a re-run this node queued for itself, whose old task is closing its
    /// attempt) for up to `HELD_WAIT`, then runs it (the start says whether anything is left to
    /// run); past that, the rescan does.
    pub fn run_taken(self: &Arc<Self>, fire_id: String, slot: Slot) {
        const HELD_WAIT: Duration = Duration::from_secs(10);
        let me = Arc::clone(self);
        self.tracker.spawn(async move {
            let since = tokio::time::Instant::now();
            let held = loop {
                match me.hold(&fire_id) {
                    Some(held) => break held,
                    None if since.elapsed() < HELD_WAIT => tokio::time::sleep(Duration::from_millis(20)).await,
                    None => {
                        tracing::info!(fire = %fire_id, "taken from the queue, but another task here still holds it; left to the rescan");
                        return;
                    }
                }
            };
            // Shutting down meanwhile: the fire stays in the processing list (adopted, or reaped).
            if me.accepting() {
                me.execute(fire_id, None, slot, None).await;
            }
            drop(held);
        });
    }

    /// Marks a fire as in this process's hands until the returned guard is dropped; None when a
    /// task of this process has it already. At most one task runs a fire: a start repeated by this
    /// incarnation answers "yours, run it" (`Start::Resume`), so a second task must never ask.
    fn hold(&self, fire_id: &str) -> Option<Held> {
        let mut s = self.in_hand.lock().ok()?;
        if s.contains_key(fire_id) {
            return None;
        }
        s.insert(fire_id.to_string(), Stop::default());
        Some(Held { set: Arc::clone(&self.in_hand), fire_id: fire_id.to_string() })
    }

    /// The fires this process has in hand (accepted, waiting or running), sorted.
    pub fn fires_in_hand(&self) -> Vec<String> {
        let mut v: Vec<String> = self.in_hand.lock().map(|s| s.keys().cloned().collect()).unwrap_or_default();
        v.sort();
        v
    }

    /// Whether this process has the fire in hand (see `hold`).
    pub fn in_hand(&self, fire_id: &str) -> bool {
        self.in_hand.lock().is_ok_and(|s| s.contains_key(fire_id))
    }

    /// The stop request of a fire in hand (a fresh one, never asked, when it is not in hand).
    fn stop_of(&self, fire_id: &str) -> Stop {
        self.in_hand.lock().ok().and_then(|s| s.get(fire_id).cloned()).unwrap_or_default()
    }

    /// CancelExecution reached this node (directly, or through its stop list at the rescan): the
    /// run of `fire_id` here (its execution `exec_id`) is asked to stop, and its record ends
    /// `cancelled` with `why` (`run_fire`). Before its handler began, it never begins. False when
    /// this process does not have the fire in hand (nothing to stop here).
    pub fn stop_run(&self, fire_id: &str, exec_id: &str, why: &str) -> bool {
        let Some(stop) = self.in_hand.lock().ok().and_then(|s| s.get(fire_id).cloned()) else { return false };
        if stop.request(exec_id, why) {
            tracing::info!(execution = %exec_id, why, "asked to stop");
        }
        true
    }

    /// Starts a fire from the processing list (compare-and-set in the store) and runs it; a fire
    /// its accept or claim started (`started`) is run with no start step, unless it waited past its
    /// start deadline, when it is recorded misfired.
    /// `slot`: one of this node's own workers, when taken already (a fire of a built-in handler
    /// takes one if it has none, before its start; a fire of an external worker's handler lets it
    /// go), or an external worker's room it was taken on.
    async fn execute(&self, fire_id: String, job: Option<Job>, slot: Slot, taken: Option<Taken>) {
        let Slot { mut permit, unplaced } = slot;
        self.active.fetch_add(1, Ordering::Relaxed);
        // A fire its take started runs under the incarnation that took it (`Taken`).
        let inc = taken.as_ref().map_or_else(|| self.membership.incarnation(), |t| t.inc.clone());
        let span = tracing::info_span!("fire", fire = %shorten(&fire_id), node = %self.node_id);
        // A fire cancelled before it began needs no worker: it is only recorded (`run_fire`).
        let stop = self.stop_of(&fire_id);
        async {
            if let Some(reason) = crate::store::queue_entry_problem(&fire_id) {
                self.set_aside(&fire_id, &reason).await;
                return;
            }
            // A fire from the queue may have come ahead of its instant too (see `wait_until_due`).
            // It is started a little ahead of it (`START_LEAD_MS`), and run at it (below).
            wait_until_due(&fire_id, self.start_lead_ms).await;
            // Taken on an external worker's room: a fire of a built-in handler waits for one of the
            // node's own workers before its start (started, it would wait `running`, its lock
            // unrenewed and its misfire threshold passed). Its job is read to know (None: unknown,
            // taken as a built-in's).
            let mut job = job;
            if permit.is_none() && unplaced.is_some() {
                if job.is_none() {
                    job = self.job_of(&fire_id).await;
                }
                if self.runs_on_own_worker(job.as_ref()) {
                    permit = self.own_worker(job.as_ref().map(|j| j.spec.priority).unwrap_or_default()).await;
                    if permit.is_none() {
                        return;
                    }
                }
            }
            let (started, stand_in) = match taken {
                // This node was judged dead and came back as another incarnation meanwhile: the
                // fire was recovered (re-run elsewhere, or recorded lost), and is not its to run.
                Some(t) if t.inc != self.membership.incarnation() => {
                    tracing::warn!(execution = %t.fire.exec_id,
                        "not run: taken by an earlier incarnation of this node, which was judged dead meanwhile");
                    return;
                }
                Some(t) => (Ok(Start::Run(t.fire)), false),
                None => match self.start_here(&fire_id, &inc).await {
                    Some(s) => s,
                    None => return,
                },
            };
            match started {
                Ok(Start::Run(sf) | Start::Resume(sf)) => {
                    let mut exec = sf.running_record(&fire_id, &self.node_id);
                    let deadline = sf.deadline_ms;
                    let own_args = sf.args.clone();
                    let own_tags = sf.selector.clone();
                    // The start returned the job's definition (one round trip for both).
                    let job = match (job, sf.job) {
                        (Some(j), _) => Ok(j),
                        (None, Some(spec)) => Job::new(spec),
                        (None, None) => Err(crate::Error::JobNotFound(sf.job_id.clone())),
                    };
                    // A manual fire's own arguments and target tags (TriggerJob's), kept with the
                    // fire: they hold wherever the fire runs, a re-run or a hand-over included. The
                    // tags narrow the job's selector (TriggerJob refuses one that contradicts it).
                    let job = job.map(|mut j| {
                        if let Some(a) = own_args {
                            j.spec.args = a;
                        }
                        j.spec.selector.extend(own_tags);
                        j
                    });
                    match job {
                        // A fire started as master (or resumed) whose mastership lapsed since is
                        // handed to the master by the run's own check (`run_attempt`).
                        Ok(job) if job.spec.master_only && stand_in && self.role.borrow().active().is_none() => {
                            exec.close(
                                ExecState::Skipped,
                                format!(
                                    "skipped: not master (job is master-only; node {} is not master)",
                                    self.node_id
                                ),
                            );
                            tracing::warn!(execution = %exec.id, "master-only fire reached a non-master node: skipped");
                            let _ = self.record_final(&exec, &inc, Some(&job.spec)).await;
                        }
                        Ok(job)
                            if self.registry.get_for(&job.spec.handler, &job.spec.selector).is_none()
                                || !job.spec.may_run_on(&self.node_id) =>
                        {
                            self.cannot_run_here(&job, exec, &inc).await
                        }
                        Ok(job) => {
                            match self.runs_on_own_worker(Some(&job)) {
                                // Its handler changed to a built-in since it was pushed here.
                                true if permit.is_none() && stop.requested(&exec.id).is_none() => {
                                    permit = self.own_worker(job.spec.priority).await;
                                    if permit.is_none() {
                                        return;
                                    }
                                }
                                true => {}
                                false => permit = None,
                            }
                            // Taken, or resumed, but not yet begun, past its start deadline (it
                            // waited for a worker): a misfire, as `start.lua` records one it finds
                            // late. (No handler here: `cannot_run_here` says why, above.) A
                            // cancel asked meanwhile says why it never began instead.
                            if deadline.is_some_and(|d| now_ms() > d) && stop.requested(&exec.id).is_none() {
                                self.misfired_before_start(exec, &inc, &job.spec).await;
                                return;
                            }
                            // Placed: on its worker's slot (waiting, it counts in the hub's
                            // backlog), or on one of the node's own workers.
                            drop(unplaced);
                            // Started ahead, it begins at its instant; the record says when it did.
                            tokio::select! {
                                _ = wait_until_due(&fire_id, 0) => {}
                                _ = stop.wait(&exec.id) => {}
                            }
                            // The job's jitter: this fire's own delay past its instant, waited out
                            // holding its worker and its lock (none left for a fire that is late
                            // by more, as a hand-over or a re-run is), and recorded.
                            let mut begins = now_ms();
                            if !exec.manual && job.spec.jitter_ms > 0 {
                                let jitter = crate::job::schedule::fire_jitter_ms(&fire_id, job.spec.jitter_ms);
                                let until = exec.scheduled_ms + jitter as i64;
                                let us = (until * 1000 - crate::clock::now_us()).max(0) as u64;
                                tokio::select! {
                                    _ = tokio::time::sleep(Duration::from_micros(us)) => {}
                                    _ = stop.wait(&exec.id) => {}
                                }
                                exec.jitter_ms = jitter;
                                // Not before it, whatever a clock correction did meanwhile.
                                begins = now_ms().max(until);
                            }
                            exec.start_ms = Some(begins);
                            // Every line about this run carries the job, the fire's instant, the
                            // execution, the node (outer span) and the master's epoch.
                            let span = tracing::info_span!("run", job = %exec.job_id, sched_ms = exec.scheduled_ms,
                                execution = %exec.id, epoch = exec.epoch);
                            self.run_fire(job, exec, &inc, &stop, deadline).instrument(span).await
                        }
                        Err(e) => {
                            exec.close(ExecState::Failed, format!("cannot run: {e}"));
                            let _ = self.record_final(&exec, &inc, None).await;
                        }
                    }
                }
                Ok(Start::Misfired { job_id, sched_ms, exec_id }) => {
                    let mut exec = Execution::pending(&job_id, fire_id.clone(), sched_ms, &self.node_id, 1);
                    exec.id = exec_id;
                    exec.close(
                        ExecState::Misfired,
                        "misfired: not started within the misfire threshold of its scheduled time",
                    );
                    tracing::warn!(execution = %exec.id, "fire waited past its start deadline");
                    if self.store.finish_execution(&exec, true).await.is_ok() {
                        self.metrics.outcome(exec.state.as_str());
                    }
                }
                Ok(Start::Poison) => self.poisoned(&fire_id, "no such fire"),
                Ok(other) => tracing::debug!(outcome = ?other, "not started"),
                Err(e) => tracing::warn!(error = %e, "cannot start fire; it stays in the processing list"),
            }
        }
        .instrument(span)
        .await;
        drop(permit);
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// A fire its take started, or a first attempt resumed, that waited past its start deadline
    /// (for a worker): recorded misfired, as start.lua records the fires it starts late; its
    /// handler never began.
    async fn misfired_before_start(&self, mut exec: Execution, inc: &str, spec: &JobSpec) {
        exec.start_ms = None;
        exec.close(ExecState::Misfired, "misfired: not started within the misfire threshold of its scheduled time");
        tracing::warn!(execution = %exec.id, "fire waited past its start deadline");
        let _ = self.record_final(&exec, inc, Some(spec)).await;
    }

    /// Starts a fire from the processing list (`start`). Off the master, the start refuses a
    /// master-only fire, which goes to the master instead. The start's answer, and whether it was
    /// started as a stand-in master (no other master could take this master-only fire); None when
    /// not started here (handed to the master, or left for the rescan).
    async fn start_here(&self, fire_id: &str, inc: &str) -> Option<(crate::Result<Start>, bool)> {
        let mut started = self.start(fire_id, inc, false).await;
        // Refused while this node believes it is master: the store names another lease holder
        // or none (after a Redis failover the new primary may not have this node's lease, which
        // has not yet run out here). Asked again until the two views agree: the next renewal
        // settles it, and then the fire goes to whoever holds the lease.
        let since = tokio::time::Instant::now();
        while matches!(started, Ok(Start::MasterOnly))
            && self.role.borrow().active().is_some()
            && since.elapsed() < MASTER_WAIT
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            started = self.start(fire_id, inc, false).await;
        }
        if matches!(started, Ok(Start::MasterOnly)) && self.role.borrow().active().is_some() {
            // Still apart after the wait (a lease renewal slower than that): not run as a
            // stand-in, which would run it on a node the stored lease does not name. It stays in
            // the processing list; the rescan asks again.
            tracing::warn!("master-only fire: this node believes it is master, the stored lease names another or none; left for the rescan");
            return None;
        }
        // Started as a stand-in master: no other master could take this master-only fire.
        let mut stand_in = false;
        if matches!(started, Ok(Start::MasterOnly)) {
            if self.hand_to_master(fire_id, inc).await {
                return None;
            }
            // No other master to hand it to: started anyway; below, it is recorded skipped
            // unless this node has become master meanwhile.
            started = self.start(fire_id, inc, true).await;
            stand_in = true;
        }
        Some((started, stand_in))
    }

    /// One of this node's own workers, waiting for it in the line of `level` (the fire's job's
    /// priority; normal when the job is not known); None when the node is cut short (its grace
    /// period ran out) meanwhile.
    async fn own_worker(&self, level: Priority) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::select! {
            p = self.pool.acquire(level) => p.ok(),
            _ = self.cancel.cancelled() => None,
        }
    }

    /// The job of a fire, read from the store (None: unknown, or the store did not answer).
    async fn job_of(&self, fire_id: &str) -> Option<Job> {
        let id = crate::execution::job_of_fire(fire_id);
        let rec = self.store.get_job(id).await.ok()??;
        Job::new(rec.spec).ok()
    }

    /// Starts a fire, asking again while the store cannot answer: a start is safe to repeat (one
    /// that committed but whose reply was lost answers `Resume`), so a store that restarts at the
    /// instant fires start delays them by its outage, not by the rescan's period.
    /// `as_master`: start a master-only fire even though this node is not master (there is no other
    /// master to hand it to). Otherwise mastership is read afresh at each attempt: a store outage
    /// long enough to ask again is long enough to lose the lease.
    async fn start(&self, fire_id: &str, inc: &str, as_master: bool) -> crate::Result<Start> {
        let deadline = tokio::time::Instant::now() + START_RETRY_FOR;
        let mut delay = Duration::from_millis(50);
        loop {
            let master_only = match (as_master, self.role.borrow().active().is_some()) {
                (true, _) => MasterOnly::Anyway,
                (false, true) => MasterOnly::Verify,
                (false, false) => MasterOnly::Refuse,
            };
            match self.store.start(fire_id, &self.node_id, inc, &new_execution_id(fire_id), master_only).await {
                Err(e @ crate::Error::StoreUnavailable { .. }) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(error = %e, "cannot start the fire yet; asking again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Ok(Start::Resume(sf)) => {
                    // Either a start whose reply was lost, or a fire started here that waits for a
                    // handler or a worker with matching tags (the rescan asks again): not a fault.
                    tracing::info!(execution = %sf.exec_id,
                        "started before by this incarnation (a lost reply, or waiting here for its handler): going on");
                    return Ok(Start::Resume(sf));
                }
                other => return other,
            }
        }
    }

    /// Stops taking work, lets running executions finish for `grace`, then drops what is left and
    /// records it as lost (the last step of a node's shutdown).
    pub async fn stop(&self, grace: Duration) {
        self.accepting.store(false, Ordering::Relaxed);
        self.tracker.close();
        // Said before the wait, so that seconds of silence at shutdown read as what they are.
        let running = self.active.load(Ordering::Relaxed);
        if running > 0 {
            tracing::info!(
                running,
                grace_s = grace.as_secs_f64(),
                "draining: waiting for {running} executions (grace {:.1} s)",
                grace.as_secs_f64()
            );
        }
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!(
                running = self.active.load(Ordering::Relaxed),
                "grace period over; cancelling running executions"
            );
            self.cancel.cancel();
            // Cancelled executions record themselves as lost; give them a moment to reach the store.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
        }
    }

    /// Moves an entry that cannot be a fire id to the dead-letter list (it is kept there, with the
    /// reason), counts and alerts; the node goes on draining.
    async fn set_aside(&self, entry: &str, reason: &str) {
        match self.store.dead_letter(&self.node_id, entry, reason).await {
            Ok(()) => self.poisoned(entry, reason),
            // It stays in the processing list; the next rescan tries again.
            Err(e) => tracing::warn!(error = %e, reason, "cannot set a bad queue entry aside"),
        }
    }

    fn poisoned(&self, entry: &str, reason: &str) {
        tracing::error!(reason, "bad queue entry moved to the dead-letter list");
        self.metrics.dead_letters.inc();
        self.alerts.raise(Alert::dead_letter(&shorten(entry), &self.node_id, reason, &self.cluster));
    }

    /// A master-only fire that reached this node while it is not master (mastership changed
    /// between the claim and now, or this node adopted it after a restart) goes to the master's
    /// queue rather than being skipped. True when handed over.
    async fn hand_to_master(&self, fire_id: &str, inc: &str) -> bool {
        // Between two masters (a lease expiring), wait for the next one, which may be this node;
        // with none, the start below records it skipped.
        let Some(master) = self.master_elsewhere().await else { return false };
        match self.hand_over(fire_id, inc, &master, false).await {
            Ok(Reap::Moved) => {
                tracing::info!(to = %master, "master-only fire handed to the master");
                true
            }
            Ok(other) => {
                tracing::debug!(outcome = ?other, "master-only fire not handed over");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a master-only fire to the master");
                false
            }
        }
    }

    /// A master-only fire this node was about to run after losing mastership goes to the master
    /// to run there (attempt + 1); this attempt's record is closed as `skipped`. With no other
    /// master it runs here, as the last master; if the new master already recovered it (this node
    /// was paused past its heartbeat), it is not run here at all. When the hand-over cannot be
    /// known to have happened (its reply lost) or this node's heartbeat is not its own right now
    /// (it expired during a pause), the fire is left where it is, in this node's processing list,
    /// neither run nor closed: the rescan resumes it and tries again, or, if this incarnation is
    /// dead, the reaper recovers it by the job's policy. (Running it would run a master-only fire
    /// off the master, and perhaps twice; closing it would lose it.)
    async fn hand_back(&self, exec: &mut Execution) -> HandBack {
        let Some(master) = self.master_elsewhere().await else { return HandBack::NoOtherMaster };
        match self.hand_over(&exec.fire_id, &self.membership.incarnation(), &master, true).await {
            Ok(Reap::Rerun { .. }) => {}
            Ok(Reap::Fenced | Reap::Alive) => {
                tracing::warn!(execution = %exec.id, "cannot hand a master-only fire back now (this node's heartbeat is not its own); left for the rescan or the reaper");
                return HandBack::Left;
            }
            // Gone, moved or finished: no longer this node's fire.
            Ok(_) => return HandBack::RecoveredElsewhere,
            Err(e) => {
                tracing::warn!(execution = %exec.id, error = %e, "cannot hand a master-only fire back; left for the rescan or the reaper");
                return HandBack::Left;
            }
        }
        tracing::warn!(execution = %exec.id, to = %master, "mastership lapsed before the run: master-only fire handed to the master");
        exec.close(
            ExecState::Skipped,
            crate::execution::hand_over_error("this node lost mastership before the run began", &master),
        );
        // The fire runs again on the master, as a new attempt.
        exec.next_attempt_ms = Some(now_ms());
        let _ = self.record_finish(exec, false).await;
        HandBack::Handed
    }

    /// A started fire whose handler is not registered here, or that its job's routing does not let
    /// run here (`JobSpec::may_run_on`: a failover job off its nodes). Routing sends a fire only to
    /// a node that may run it; this is the rest: a fire no live node could run, a leftover adopted
    /// after a restart without the handler, a fire stolen from a queue, a race with a node
    /// leaving. A non-master-only fire goes to a
    /// live node that has the handler, as a new attempt there (this one closed `skipped`, saying
    /// where it went). With none live but one that may be back soon (see `Capable::Awaited`), it
    /// waits in this node's processing list, retried by the rescan, for up to `AWAIT_CAPABLE_MS`
    /// after its instant. Otherwise, or for a master-only job (it runs nowhere but on the master),
    /// it is recorded `failed` with the reason and alerted, not retried: never dropped, never
    /// bounced.
    async fn cannot_run_here(&self, job: &Job, mut exec: Execution, inc: &str) {
        let handler = &job.spec.handler;
        // An external worker's handler: workers come and go, so its fire waits for one up to the
        // misfire threshold, wherever it is.
        let external = !self.registry.is_builtin(handler);
        let late = now_ms() - exec.scheduled_ms;
        if !job.spec.master_only {
            let to = match self.node_with(&job.spec).await {
                Capable::Live(to) => Some(to),
                other => {
                    let awaited = match &other {
                        Capable::Awaited(node) => Some(node.clone()),
                        _ => None,
                    };
                    if (awaited.is_some() && late <= AWAIT_CAPABLE_MS)
                        || (external && late <= self.misfire_threshold_ms)
                    {
                        tracing::warn!(execution = %exec.id, handler = %handler, awaited = ?awaited,
                            "no live node or worker serves this fire's handler now; it waits here for one (the rescan tries again)");
                        return;
                    }
                    None
                }
            };
            if let Some(to) = to {
                match self.hand_over(&exec.fire_id, inc, &to, true).await {
                    Ok(Reap::Rerun { .. }) => {
                        // Why this node may not run it: off the job's failover list (whatever its
                        // handlers), or without the handler (or a worker matching the selector).
                        let why = match job.spec.may_run_on(&self.node_id) {
                            true => self.missing_here(&job.spec),
                            false => format!(
                                "node {} is not among the job's failover nodes ({})",
                                self.node_id,
                                job.spec.failover_nodes.join(", ")
                            ),
                        };
                        tracing::warn!(execution = %exec.id, handler = %handler, to = %to, why = %why,
                            "fire handed to a node that may run it");
                        exec.close(
                            ExecState::Skipped,
                            crate::execution::hand_over_error(&why, &format!("{to}, which may run it")),
                        );
                        let _ = self.record_finish(&exec, false).await;
                        return;
                    }
                    // Left in the processing list (the rescan tries again) or no longer ours.
                    Ok(other) => {
                        tracing::info!(execution = %exec.id, outcome = ?other, "fire without its handler here not handed over");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(execution = %exec.id, error = %e, "cannot hand over a fire whose handler is not registered here; the rescan tries again");
                        return;
                    }
                }
            }
        }
        let why = if job.spec.master_only {
            format!(
                "cannot run: the job is master-only and its handler '{handler}' is not registered on the master (node {})",
                self.node_id
            )
        } else if !job.spec.may_run_on(&self.node_id) {
            format!(
                "cannot run: node {} is not among the job's failover nodes ({}) and none of them is live with handler '{handler}'",
                self.node_id,
                job.spec.failover_nodes.join(", ")
            )
        } else {
            format!(
                "cannot run: handler '{handler}' is not registered on node {} and no live node has it",
                self.node_id
            )
        };
        let state = match external && !job.spec.master_only {
            true => {
                exec.close(
                    ExecState::Misfired,
                    format!(
                        "misfired: no worker for handler '{handler}' within the misfire threshold ({} ms)",
                        self.misfire_threshold_ms
                    ),
                );
                "misfired"
            }
            false => {
                exec.close(ExecState::Failed, why);
                "failed"
            }
        };
        tracing::error!(execution = %exec.id, handler = %handler, error = %exec.error, state, "fire recorded: no node can run it");
        if self.record_final(&exec, inc, Some(&job.spec)).await.is_ok() {
            self.alerts.raise(Alert::from_execution("no_node_has_handler", &exec, &self.cluster));
        }
    }

    /// A fire its take started whose handler never began, when this node is cut short (its
    /// shutdown grace ran out before a worker was free): handed to a live node that can run it,
    /// this attempt recorded `skipped`, as `cannot_run_here` does, rather than left to be recovered
    /// as a run (`recovery = lost` would record it lost). With no such node, or if the hand-over
    /// fails, it stays in the processing list, for the master once this node has left.
    async fn give_back(&self, fire_id: &str, job: Option<&Job>, t: Taken) {
        let Some(spec) = job.map(|j| &j.spec).or(t.fire.job.as_ref()) else { return };
        let Capable::Live(to) = self.node_with(spec).await else { return };
        match self.hand_over(fire_id, &t.inc, &to, true).await {
            Ok(Reap::Rerun { .. }) => {
                let mut exec = t.fire.running_record(fire_id, &self.node_id);
                exec.close(
                    ExecState::Skipped,
                    crate::execution::hand_over_error(
                        &format!("node {} shut down before a worker was free", self.node_id),
                        &to,
                    ),
                );
                tracing::warn!(execution = %exec.id, to = %to, "shutting down: a fire not yet begun handed to another node");
                let _ = self.record_finish(&exec, false).await;
            }
            other => {
                tracing::info!(fire = %fire_id, outcome = ?other, "shutting down: a fire not yet begun stays here, for recovery")
            }
        }
    }

    /// Another node that has `handler` registered: a live one (the least busy), else one that may
    /// be back soon.
    async fn node_with(&self, spec: &crate::job::JobSpec) -> Capable {
        // Unreadable node records say nothing about who is gone: wait as for a node that may return.
        let Ok(nodes) = self.store.list_nodes().await else { return Capable::Awaited(None) };
        let now = now_ms();
        let mut capable: Vec<NodeRecord> = nodes
            .into_iter()
            .filter(|n| {
                n.node_id != self.node_id
                    && !n.left
                    && !n.draining
                    && n.can_run(&spec.handler, &spec.selector)
                    && spec.may_run_on(&n.node_id)
            })
            .collect();
        // A failover job's nodes in its order; any other job's, the least loaded first.
        let rank = |n: &NodeRecord| spec.failover_nodes.iter().position(|f| *f == n.node_id).unwrap_or(0);
        capable.sort_by(|a, b| {
            rank(a).cmp(&rank(b)).then(a.load.ratio().total_cmp(&b.load.ratio())).then(a.node_id.cmp(&b.node_id))
        });
        if let Some(n) = capable.iter().find(|n| n.load.max > 0 && now - n.beat_ms <= self.node_ttl_ms as i64) {
            return Capable::Live(n.node_id.clone());
        }
        match capable.into_iter().find(|n| now - n.beat_ms <= AWAIT_CAPABLE_MS) {
            Some(n) => Capable::Awaited(Some(n.node_id)),
            None => Capable::None,
        }
    }

    /// Moves a fire of this node's processing list to `master`'s queue: one not yet started
    /// (`running` false), or one started whose handler has not (`running` true: queued again).
    /// It is no recovery: the fire's count of recoveries (what a node's death spends) is left as it
    /// is.
    async fn hand_over(&self, fire_id: &str, inc: &str, master: &str, running: bool) -> crate::Result<Reap> {
        self.hand_over_counted(fire_id, inc, master, running, None).await
    }

    /// `hand_over`; with `max_recoveries`, a started fire counts a recovery (its external worker
    /// died under it), and past that many it is `Reap::Lost`.
    async fn hand_over_counted(
        &self,
        fire_id: &str,
        inc: &str,
        to: &str,
        running: bool,
        max_recoveries: Option<u32>,
    ) -> crate::Result<Reap> {
        let req = ReapRequest {
            by: ReapBy::Handoff { incarnation: inc.to_string() },
            dead_node: self.node_id.clone(),
            fires: NodeFires::Taken,
            fire_id: fire_id.to_string(),
            target: to.to_string(),
            rerun: running,
            max_recoveries,
            lock_ttl_ms: LOCK_TTL_MS,
        };
        self.store.reap(&req).await
    }

    /// Another node holding the lease, waiting up to `MASTER_WAIT` while there is none (this node
    /// may become master again meanwhile: then None).
    async fn master_elsewhere(&self) -> Option<String> {
        master_elsewhere(&*self.store, &self.role, &self.node_id, MASTER_WAIT).await
    }

    /// All attempts of one fire: run, record, retry with backoff, alert when out of retries.
    /// `deadline`: when it must begin by (its start's, for a fire started ahead), if known.
    async fn run_fire(&self, job: Job, mut exec: Execution, inc: &str, stop: &Stop, deadline: Option<i64>) {
        // Cancelled before its handler began (it waited for its instant or a worker): it never begins.
        if let Some(why) = stop.requested(&exec.id) {
            exec.start_ms = None;
            exec.close(ExecState::Cancelled, why);
            tracing::info!(execution = %exec.id, "cancelled before it began");
            let _ = self.record_final(&exec, inc, Some(&job.spec)).await;
            return;
        }
        // Every policy but allow holds the job's lock while a fire runs (`forbid` below).
        let forbid = job.spec.concurrency.exclusive();
        // A fire of a replace job that a newer fire has come to replace while it waited (it was not
        // running yet, so nothing stopped it): it never begins, and lets the lock go to that fire.
        if job.spec.concurrency == Concurrency::Replace
            && self.store.held_count(&job.spec.id).await.is_ok_and(|n| n > 0)
        {
            exec.start_ms = None;
            exec.close(ExecState::Cancelled, "replaced by a newer fire before it began (concurrency replace)");
            tracing::info!(execution = %exec.id, "replaced before it began");
            let _ = self.record_final(&exec, inc, Some(&job.spec)).await;
            return;
        }
        // An exclusive fire runs only while it holds the job's lock. It can have lost it only by
        // waiting past the lock's lease (a very late start or re-run); another fire may run now.
        if forbid && matches!(self.store.renew_lock(&job.spec.id, &exec.fire_id, LOCK_TTL_MS).await, Ok(false)) {
            exec.close(ExecState::Skipped, "skipped: the job's no-overlap lock expired before this fire started");
            tracing::warn!(execution = %exec.id, "forbid fire lost its lock before starting: skipped");
            let _ = self.record_final(&exec, inc, Some(&job.spec)).await;
            return;
        }
        // Concurrency limits (PROTOCOL §3.21): a slot of each limit covering the job before the
        // handler begins, kept until the fire's last attempt ends (`_slots` drops with this call).
        let Some(_slots) = self.take_slots(&job, &mut exec, inc, stop, deadline, forbid).await else { return };
        // Retries are counted from the first attempt of this recovery round.
        let first_attempt = exec.attempt;
        // The start recorded the first attempt `running`; each retry records its own.
        let mut recorded_running = true;
        loop {
            let Some(state) = self.run_attempt(&job, &mut exec, inc, forbid, recorded_running, stop).await else {
                // Not run here: handed to the master, its record already closed, or left in the
                // processing list for the rescan or the reaper (`hand_back`).
                return;
            };
            recorded_running = false;
            let retry = matches!(state, ExecState::Failed | ExecState::TimedOut)
                && exec.attempt - first_attempt < job.spec.retries;
            let delay = Duration::from_millis(job.retry_delay_ms(exec.attempt));
            // The record says a retry follows, and when: a client waiting for the fire's outcome
            // (`rota job trigger --wait`) knows this failure is not it. Part of the same write.
            if retry {
                exec.next_attempt_ms = Some(now_ms() + delay.as_millis() as i64);
            }
            fail::fail_point!("before_finish", |_| crate::failpoints::crash("before_finish"));
            let recorded = if retry {
                self.record_retry_wait(&exec).await
            } else {
                self.record_final(&exec, inc, Some(&job.spec)).await
            };
            if recorded.is_err() {
                return;
            }
            if state == ExecState::Lost {
                self.alerts.raise(Alert::from_execution("execution_lost", &exec, &self.cluster));
                return;
            }
            if !retry {
                if matches!(state, ExecState::Failed | ExecState::TimedOut) {
                    self.alerts.raise(Alert::from_execution("execution_failed", &exec, &self.cluster));
                }
                return;
            }
            tracing::info!(execution = %exec.id, attempt = exec.attempt, delay_ms = delay.as_millis() as u64, "retrying");
            // The lock (forbid jobs) stays with this fire across the wait.
            let renew = self.keep_lock(&job, &exec.fire_id, forbid);
            // Cancelled meanwhile (CancelExecution): the retry is recorded `cancelled`, never run.
            let mut stopped = None;
            let cancelled = tokio::select! {
                _ = self.cancel.cancelled() => true,
                why = stop.wait(&exec.id) => { stopped = Some(why); false }
                _ = tokio::time::sleep(delay) => false,
            };
            renew.cancel();
            let mut next = Execution::pending(
                &exec.job_id,
                exec.fire_id.clone(),
                exec.scheduled_ms,
                &self.node_id,
                exec.attempt + 1,
            );
            next.manual = exec.manual;
            next.epoch = exec.epoch;
            if cancelled && self.left_for_rerun(&job, &exec, "before the retry") {
                return;
            }
            if cancelled {
                next.close(ExecState::Lost, "node shut down before this retry could run");
                let _ = self.record_final(&next, inc, Some(&job.spec)).await;
                self.alerts.raise(Alert::from_execution("execution_lost", &next, &self.cluster));
                return;
            }
            if let Some(why) = stopped {
                next.close(ExecState::Cancelled, why);
                tracing::info!(execution = %next.id, "cancelled before its retry");
                let _ = self.record_final(&next, inc, Some(&job.spec)).await;
                return;
            }
            // Only the live owner may try again: if this node was declared dead meanwhile, the fire
            // was re-run or recorded elsewhere, and a retry here would be a second run.
            match self.store.retry_attempt(&next.fire_id, &self.node_id, inc, &next.id).await {
                Ok(Some(attempt)) => next.attempt = attempt,
                Ok(None) => {
                    tracing::warn!(execution = %exec.id, "not retrying: this node no longer owns the fire");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record retry; the fire stays running here, and the rescan resumes it");
                    return;
                }
            }
            match self.store.create_execution(&next).await {
                Ok(true) => {}
                Ok(false) => {
                    // The reaper closed this attempt meanwhile (this node was judged dead during
                    // the backoff): its record stays, and the retry does not run here.
                    tracing::warn!(execution = %next.id, "not retrying: the attempt was recorded elsewhere meanwhile");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record retry; the rescan resumes the fire");
                    return;
                }
            }
            exec = next;
        }
    }

    /// The slots of the concurrency limits covering the job (PROTOCOL §3.21), waited for until the
    /// fire's start deadline (`deadline`, else its instant, plus the misfire threshold), the job's
    /// lock (`forbid`: an exclusive job's) kept meanwhile. `Some(None)`: no limit covers it. None:
    /// the fire ended here (misfired, cancelled, or lost at shutdown), recorded, or was left for a
    /// re-run.
    async fn take_slots(
        &self,
        job: &Job,
        exec: &mut Execution,
        inc: &str,
        stop: &Stop,
        deadline: Option<i64>,
        forbid: bool,
    ) -> Option<Option<limits::Held>> {
        // The holder is this run (its first attempt's execution), not the fire: a re-run of the
        // fire elsewhere while this one goes on (a paused node) takes a slot of its own.
        let names = self.limits.covering(&job.spec).await;
        if names.is_empty() {
            return Some(None);
        }
        // Until its start deadline; a fire that became runnable after it (held for its job's
        // lock, or re-run) gets the misfire threshold from now.
        let due = deadline.unwrap_or(exec.scheduled_ms + self.misfire_threshold_ms);
        let due = if due > now_ms() { due } else { now_ms() + self.misfire_threshold_ms };
        // The job's lock (an exclusive job's) is kept across the wait, as across a retry's.
        let renew = self.keep_lock(job, &exec.fire_id, forbid);
        let holder = exec.id.clone();
        let waited = self.limits.take(&names, &holder, due, stop.wait(&exec.id), &self.cancel).await;
        renew.cancel();
        match waited {
            limits::Waited::Taken { waited_ms } => {
                if waited_ms > 0 {
                    // Its handler begins now: the record says when, not its instant.
                    exec.start_ms = Some(now_ms());
                    tracing::info!(execution = %exec.id, waited_ms, "took a slot of its concurrency limits");
                }
                Some(Some(self.limits.hold(names, &holder)))
            }
            limits::Waited::TimedOut { limit, running, max } => {
                exec.start_ms = None;
                let why = match max {
                    0 => "the store did not answer".to_string(),
                    _ => format!("{running} of {max} running"),
                };
                exec.close(
                    ExecState::Misfired,
                    format!("misfired: waited past the misfire threshold for a slot of limit {limit} ({why})"),
                );
                tracing::warn!(execution = %exec.id, limit = %limit, "no slot of its limit before its start deadline: misfired");
                let _ = self.record_final(exec, inc, Some(&job.spec)).await;
                None
            }
            limits::Waited::Stopped(why) => {
                exec.start_ms = None;
                exec.close(ExecState::Cancelled, why);
                tracing::info!(execution = %exec.id, "cancelled while it waited for a limit's slot");
                let _ = self.record_final(exec, inc, Some(&job.spec)).await;
                None
            }
            limits::Waited::ShuttingDown => {
                if self.left_for_rerun(job, exec, "while it waited for a limit's slot") {
                    return None;
                }
                exec.start_ms = None;
                exec.close(ExecState::Lost, "node shut down while the fire waited for a limit's slot");
                let _ = self.record_final(exec, inc, Some(&job.spec)).await;
                self.alerts.raise(Alert::from_execution("execution_lost", exec, &self.cluster));
                None
            }
        }
    }

    /// What a scheduled fire's final record sets going (`spec`: the job's definition, read when
    /// needed and not given): an `after_previous` job's next fire, and its failed fires in a row.
    pub async fn note_outcome(&self, spec: Option<&JobSpec>, exec: &Execution) {
        self.chain_next(spec, exec).await;
        self.count_failures(spec, exec).await;
    }

    /// An `after_previous` job's next fire, set from the end just recorded (`Store::chain_next`).
    /// A failure is logged only: the master's sweep sets it (at most a sweep later).
    async fn chain_next(&self, spec: Option<&JobSpec>, exec: &Execution) {
        let Some(sched) = crate::execution::fire_due_ms(&exec.fire_id).filter(|_| !exec.manual) else { return };
        // Without the definition (a record rebuilt by recovery), the store tells: one call, rare.
        if spec.is_some_and(|s| s.after_previous_ms == 0) {
            return;
        }
        let wait = [(exec.job_id.clone(), sched)];
        match self.store.chain_next(&wait, now_ms()).await {
            Ok(o) => {
                if let Some(crate::store::Chained::Next(next)) = o.first() {
                    tracing::info!(job = %exec.job_id, fire = %exec.fire_id, next_fire = %crate::job::next_fire_text(*next),
                        "after_previous: next fire set");
                }
            }
            Err(e) => tracing::warn!(job = %exec.job_id, fire = %exec.fire_id, error = %e,
                "after_previous: cannot set the next fire (the master's sweep will)"),
        }
    }

    /// A scheduled fire's final outcome, for its job's `pause_after_failures` (`spec`: the job's
    /// definition, read when not given): a failed one (failed, timed out, lost) raises the job's
    /// streak, a succeeded one clears it; at the limit the job is paused, with a note saying why
    /// and a `job_paused` alert. Manual fires, and outcomes that are neither (skipped, misfired,
    /// cancelled), change nothing. Jobs without the setting cost nothing here.
    async fn count_failures(&self, spec: Option<&JobSpec>, exec: &Execution) {
        let failed = match exec.state {
            ExecState::Failed | ExecState::TimedOut | ExecState::Lost => true,
            ExecState::Succeeded => false,
            _ => return,
        };
        // A manual fire's outcome is not the schedule's (a record rebuilt by recovery may not say
        // `manual`: its fire id does).
        if exec.manual || crate::execution::fire_due_ms(&exec.fire_id).is_none() {
            return;
        }
        let read;
        let spec = match spec {
            Some(s) => s,
            None => match self.store.get_job(&exec.job_id).await {
                Ok(Some(rec)) => {
                    read = rec.spec;
                    &read
                }
                _ => return,
            },
        };
        let limit = u64::from(spec.pause_after_failures);
        if limit == 0 {
            return;
        }
        let streak = match self.store.fire_outcome(&spec.id, failed).await {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(job = %spec.id, fire = %exec.fire_id, error = %e, "cannot count the job's failed fires");
                return;
            }
        };
        if !failed || streak < limit {
            return;
        }
        // Paused already (by an operator, with their note and until, or by an earlier failure of
        // this streak): left as it is, with no second alert.
        match self.store.get_job(&spec.id).await {
            Ok(Some(rec)) if !rec.spec.paused => {}
            _ => return,
        }
        let now = now_ms();
        let note = crate::store::PauseNote {
            note: format!("paused after {streak} scheduled fires failed in a row (pause_after_failures = {limit})"),
            by: "rota".into(),
            at_ms: now,
            until_ms: None,
        };
        match self.store.set_paused(&spec.id, true, None, now, Some(&note)).await {
            Ok(Some(_)) => {
                tracing::warn!(job = %spec.id, fire = %exec.fire_id, streak, "job paused: its fires failed in a row");
                self.alerts.raise(Alert::from_execution("job_paused", exec, &self.cluster));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(job = %spec.id, error = %e, "cannot pause the job after its failed fires"),
        }
    }

    /// One attempt: mark running (unless the start already did, `recorded_running`), run the
    /// handler under the job's timeout, fill in the outcome.
    /// The attempt's end state; None when it was not run here: handed to the master (its record
    /// closed already) or left for the rescan or the reaper (its record still open; `hand_back`).
    async fn run_attempt(
        &self,
        job: &Job,
        exec: &mut Execution,
        inc: &str,
        forbid: bool,
        recorded_running: bool,
        stop: &Stop,
    ) -> Option<ExecState> {
        let start = match exec.start_ms {
            Some(t) if recorded_running => t,
            _ => now_ms(),
        };
        exec.state = ExecState::Running;
        exec.start_ms = Some(start);
        exec.node_id = self.node_id.clone();
        tracing::debug!(execution = %exec.id, attempt = exec.attempt, delay_ms = start - exec.scheduled_ms, "started");
        if exec.attempt == 1 && !exec.manual {
            self.metrics.fire_delay.observe((start - exec.scheduled_ms).max(0) as f64 / 1000.0);
        }
        let update = if recorded_running { Ok(true) } else { self.store.update_execution(exec).await };
        match update {
            Ok(true) => {}
            Ok(false) => {
                // Recorded terminal meanwhile: this node was declared dead between the start and
                // now (a long pause) and the fire was recovered elsewhere. Running it would be a
                // second run; nothing ran here, so nothing is recorded (the fire's own record says
                // what became of it).
                tracing::warn!(execution = %exec.id, "not running: the fire was recovered elsewhere while this node was unresponsive");
                return None;
            }
            // The run goes ahead: the final record overwrites this one.
            Err(e) => tracing::warn!(execution = %exec.id, error = %e, "cannot record start"),
        }
        // Mastership can lapse between the check when the fire was taken and now (a pause, a
        // partition): a master-only handler starts only while this node holds the lease.
        if job.spec.master_only && self.role.borrow().active().is_none() {
            match self.hand_back(exec).await {
                // Its record is closed already (handed), or stays open for the rescan (left).
                HandBack::Handed | HandBack::Left => return None,
                HandBack::RecoveredElsewhere => {
                    exec.close(
                        ExecState::Superseded,
                        "not run: mastership lapsed and the fire was recovered elsewhere meanwhile",
                    );
                    return Some(exec.state);
                }
                HandBack::NoOtherMaster => {}
            }
        }
        // The last check before the handler: this incarnation still owns the fire it started.
        // If not, the fire stays in the processing list for the rescan to resume it, or for the
        // master to recover it if this incarnation was judged dead.
        if !self.membership.still_owns(&*self.store, inc).await {
            tracing::warn!(execution = %exec.id,
                "not running yet: cannot show this node still owns the fire (left for the rescan, or for recovery if it was judged dead)");
            return None;
        }
        let ctx = FireContext {
            job_id: exec.job_id.clone(),
            fire_id: exec.fire_id.clone(),
            execution_id: exec.id.clone(),
            scheduled_ms: exec.scheduled_ms,
            attempt: exec.attempt,
            node_id: self.node_id.clone(),
            epoch: exec.epoch,
            manual: exec.manual,
            deadline_ms: None,
            timeout: None,
            stop: stop.clone(),
        };
        let renew = self.keep_lock(job, &exec.fire_id, forbid);
        // The external worker running it went away (or none was there): the job's recovery policy.
        let mut worker_lost = false;
        // Whether this node's shutdown cut the run (its grace period ran out).
        let mut cut = false;
        // It never reached a handler: no worker serves it here now (one left since the start, or
        // between retries), or the one chosen went before the push. It waits for one.
        let mut no_worker = false;
        let outcome = match self.registry.get_for(&job.spec.handler, &job.spec.selector) {
            None if !self.registry.is_builtin(&job.spec.handler) => {
                no_worker = true;
                Err((ExecState::Failed, String::new(), RunOutput::default()))
            }
            None => Err((
                ExecState::Failed,
                format!("handler '{}' is not registered on node {}", job.spec.handler, self.node_id),
                RunOutput::default(),
            )),
            Some(h) => {
                // A panicking handler (an embedding program's bug) fails its run: the panic would end
                // this task with the fire still `running`, and a rescan would resume it forever.
                let partial = Partial::default();
                let _live = Live::new(&self.live, &exec.id, &partial);
                let (timeout, whose) = run_timeout(job.spec.timeout_ms, h.default_timeout());
                let deadline_ms = timeout.map(|t| now_ms() + t.as_millis() as i64);
                let ctx = FireContext { deadline_ms, timeout, ..ctx };
                let exec_id = ctx.execution_id.clone();
                let ms = timeout.map_or(0, |t| t.as_millis());
                // A handler that times itself (an external worker's) is not dropped at the timeout.
                let limit = if h.times_itself() { None } else { timeout };
                let run = std::panic::AssertUnwindSafe(h.run_output(&ctx, &job.spec.args, &partial)).catch_unwind();
                let run = with_timeout(limit, run);
                tokio::pin!(run);
                tokio::select! {
                    // A run that has ended is recorded as it ended, whatever else is ready.
                    biased;
                    r = &mut run => match r {
                        None => Err((ExecState::TimedOut, format!("timed out after {ms} ms{whose}"), partial.take())),
                        Some(Ok(Ok(out))) => Ok(out),
                        Some(Ok(Err(f))) => {
                            worker_lost = f.kind == FailureKind::WorkerLost;
                            no_worker = f.kind == FailureKind::NoWorker;
                            let (state, message) = match f.kind {
                                FailureKind::WorkerLost => (ExecState::Lost, f.message),
                                FailureKind::TimedOut => {
                                    (ExecState::TimedOut, format!("timed out after {ms} ms{whose}; {}", f.message))
                                }
                                FailureKind::Cancelled => (ExecState::Cancelled, f.message),
                                // Stopped: the handler saw the stop first (the shell's group got
                                // SIGTERM and exited 143) and ended before this select saw it.
                                FailureKind::Failed => match stop.requested(&exec_id) {
                                    Some(why) => (ExecState::Cancelled, why),
                                    None => (ExecState::Failed, f.message),
                                },
                                FailureKind::NoWorker => (ExecState::Failed, f.message),
                            };
                            Err((state, message, RunOutput { output: f.output, stderr: f.stderr }))
                        }
                        Some(Err(_)) => Err((ExecState::Failed, "the handler panicked".to_string(), RunOutput::default())),
                    },
                    _ = self.cancel.cancelled() => {
                        cut = true;
                        Err((ExecState::Lost, "node shut down before the handler finished".to_string(), partial.take()))
                    }
                    // Cancelled: the handler gets its grace to stop by itself (the shell handler
                    // signals its group), then is dropped. One that times itself stops its own run
                    // and answers `FailureKind::Cancelled` (below).
                    why = stop.wait(&exec_id), if !h.times_itself() => {
                        // No grace: dropped at once, not polled again (a run that ended in that
                        // last poll would be recorded cancelled after all).
                        let grace = h.stop_grace();
                        if !grace.is_zero() {
                            let _ = tokio::time::timeout(grace, &mut run).await;
                        }
                        Err((ExecState::Cancelled, why, partial.take()))
                    }
                }
            }
        };
        renew.cancel();
        if cut && self.left_for_rerun(job, exec, "during the run") {
            return None;
        }
        if no_worker && !cut {
            self.cannot_run_here(job, exec.clone(), inc).await;
            return None;
        }
        exec.end_ms = Some(now_ms());
        // Other fires of the same instant begin before this one's bookkeeping (its log line, its
        // record): a handler that returned without waiting on anything (noop) would otherwise keep
        // the thread through it, and hundreds of fires due together would begin one after another's
        // bookkeeping.
        tokio::task::yield_now().await;
        let out = match outcome {
            Ok(out) => {
                exec.state = ExecState::Succeeded;
                out
            }
            Err((state, err, out)) => {
                exec.state = state;
                exec.set_error(err);
                out
            }
        };
        exec.output = truncate_utf8(out.output, MAX_OUTPUT_BYTES);
        exec.stderr = truncate_utf8(out.stderr, MAX_OUTPUT_BYTES);
        if worker_lost && job.spec.recovery == Recovery::Rerun {
            return self.rerun_after_worker_loss(job, exec, inc).await;
        }
        tracing::info!(execution = %exec.id, attempt = exec.attempt, state = exec.state.as_str(),
            duration_ms = exec.end_ms.unwrap_or(start) - start, "finished");
        Some(exec.state)
    }

    /// A `recovery = rerun` fire whose external worker went away mid-run: as for a dead node's
    /// fire, it runs again as a new attempt (at most `max_recoveries` times), through this node's
    /// queue when an attached worker still serves the handler, else through a live node that has
    /// it (else this node's queue, where it waits for one: `cannot_run_here`). This attempt is
    /// recorded `lost`, saying where the fire went (out of recoveries: `lost` for good, alerted).
    /// Always None: the attempt is closed here, or left to the rescan or the reaper. (A re-run
    /// queued on this node itself is taken by the queue's taker once this task lets the fire go:
    /// `run_taken`.)
    async fn rerun_after_worker_loss(&self, job: &Job, exec: &mut Execution, inc: &str) -> Option<ExecState> {
        let to = match self.registry.get_for(&job.spec.handler, &job.spec.selector) {
            Some(_) => self.node_id.clone(),
            None => match self.node_with(&job.spec).await {
                Capable::Live(to) => to,
                _ => self.node_id.clone(),
            },
        };
        match self.hand_over_counted(&exec.fire_id, inc, &to, true, Some(self.max_recoveries)).await {
            Ok(Reap::Rerun { .. }) => {
                tracing::warn!(execution = %exec.id, to = %to, error = %exec.error, "external worker lost mid-run: fire re-run (recovery rerun)");
                let why =
                    format!("{}; re-run as attempt {} on node {to} (recovery rerun)", exec.error, exec.attempt + 1);
                exec.set_error(why);
                // Says another attempt follows (as a dead node's re-run does): a client waiting for
                // the fire's outcome (`job trigger --wait`) knows this is not it.
                exec.next_attempt_ms = Some(now_ms());
                let _ = self.record_finish(exec, false).await;
                None
            }
            Ok(Reap::Lost { .. }) => {
                // Out of recoveries: the fire hash is `lost` already; this attempt's record says so.
                let why = format!("{}; not re-run: out of recoveries ({})", exec.error, self.max_recoveries);
                exec.set_error(why);
                if self.record_finish(exec, true).await.is_ok() {
                    self.alerts.raise(Alert::from_execution("execution_lost", exec, &self.cluster));
                }
                None
            }
            Ok(other) => {
                tracing::warn!(execution = %exec.id, outcome = ?other, "external worker lost mid-run; the fire is no longer this node's to re-run");
                None
            }
            Err(e) => {
                tracing::warn!(execution = %exec.id, error = %e, "external worker lost mid-run; cannot re-run it now (left for the rescan or the reaper)");
                None
            }
        }
    }

    /// Streams the output of `execution_id` while it runs on this node: what was printed past the
    /// given byte offsets of its output and standard error, then each append, until the run ends
    /// here (at once when it does not run here) or `tx` closes. Returns the offsets reached.
    pub async fn follow_output(
        &self,
        execution_id: &str,
        mut output: usize,
        mut stderr: usize,
        tx: &tokio::sync::mpsc::Sender<OutputEvent>,
    ) -> (usize, usize) {
        loop {
            let Some(p) = self.live.lock().ok().and_then(|m| m.get(execution_id).cloned()) else {
                return (output, stderr);
            };
            let changed = p.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let new = p.since(output, stderr);
            if !new.output.is_empty() || !new.stderr.is_empty() {
                (output, stderr) = (output + new.output.len(), stderr + new.stderr.len());
                if tx.send(OutputEvent::Chunk(new)).await.is_err() {
                    return (output, stderr);
                }
            }
            // The run's end is noticed within this sleep (the registry entry goes).
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = tx.closed() => return (output, stderr),
            }
        }
    }

    /// Renews a forbid job's lock in the background until the returned token is cancelled.
    fn keep_lock(&self, job: &Job, fire_id: &str, forbid: bool) -> CancellationToken {
        let stop = CancellationToken::new();
        if !forbid {
            return stop;
        }
        let (store, job_id, owner, token) =
            (Arc::clone(&self.store), job.spec.id.clone(), fire_id.to_string(), stop.clone());
        tokio::spawn(async move {
            // The first tick is immediate: the lock's TTL is reset as the run starts, not a third
            // of a TTL later.
            let mut tick = tokio::time::interval(Duration::from_millis(LOCK_TTL_MS / 3));
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => match store.renew_lock(&job_id, &owner, LOCK_TTL_MS).await {
                        Ok(true) => {}
                        Ok(false) => { tracing::warn!(job = %job_id, fire = %owner, "no-overlap lock lost while running"); return; }
                        Err(e) => tracing::warn!(job = %job_id, error = %e, "cannot renew no-overlap lock"),
                    },
                }
            }
        });
        stop
    }

    /// A fire this node's shutdown interrupted (`when`: during its run, or before its retry) whose
    /// job re-runs: it is left running in this node's processing list, as a dead node's is, and the
    /// master re-runs it elsewhere once this node has deregistered (its heartbeat key deleted).
    /// Recording it lost here broke the job's promise (the chaos runner's graceful restarts found
    /// it: fires of `rerun` jobs recorded lost, never run to the end). False for a `lost` job: the
    /// caller records it lost.
    fn left_for_rerun(&self, job: &Job, exec: &Execution, when: &str) -> bool {
        if job.spec.recovery != Recovery::Rerun {
            return false;
        }
        tracing::warn!(execution = %exec.id, "shutdown {when}: left for a re-run elsewhere (recovery rerun)");
        true
    }

    /// The fire's final outcome: recorded, lock released, acked from the processing list, in one
    /// step. A superseded result (this incarnation was reaped meanwhile) is kept as evidence only.
    /// `spec`: the job's definition, for its history caps (None: the node's).
    async fn record_final(&self, exec: &Execution, inc: &str, spec: Option<&JobSpec>) -> Result<(), ()> {
        let keep = spec.map_or(self.keep, |s| Keep::of(s, self.keep));
        // Without the definition, the lock is looked at (the store knows whether the fire holds it).
        let forbid = spec.is_none_or(|s| s.concurrency.exclusive());
        match self.with_store_retries(exec, || self.store.finish(exec, &self.node_id, inc, keep, forbid)).await? {
            Finish::Recorded => {
                self.metrics.outcome(exec.state.as_str());
                // Every final record of a fire run here passes here: its job's failed fires in a row.
                self.note_outcome(spec, exec).await;
                Ok(())
            }
            Finish::Superseded => {
                tracing::warn!(execution = %exec.id, "result superseded: this node was declared dead while it ran");
                Err(())
            }
        }
    }

    /// Records a failed attempt that a retry follows, only over its still-open record. A record
    /// closed meanwhile stands: this node was declared dead while the attempt ran (a pause, a
    /// partition), and the reaper recorded it lost or re-ran the fire elsewhere; writing over it would
    /// replace the fire's outcome with a retry that never comes. Err: no retry from here.
    async fn record_retry_wait(&self, exec: &Execution) -> Result<(), ()> {
        if self.with_store_retries(exec, || self.store.update_execution(exec)).await? {
            return Ok(());
        }
        // A repeat of this very write, whose first reply was lost, finds it recorded: that is ours.
        if let Ok(Some(cur)) = self.store.get_execution(&exec.id).await {
            if (cur.state, cur.end_ms, cur.next_attempt_ms) == (exec.state, exec.end_ms, exec.next_attempt_ms) {
                return Ok(());
            }
        }
        tracing::warn!(execution = %exec.id, "not retrying: the attempt was closed elsewhere while it ran (this node was declared dead)");
        // Its result is kept as evidence, as `finish` keeps a late final result, never as the outcome.
        let _ = self.record_finish(&exec.superseded(), false).await;
        Err(())
    }

    /// Writes an execution record (a retried attempt's outcome), releasing the lock if asked.
    async fn record_finish(&self, exec: &Execution, release_lock: bool) -> Result<(), ()> {
        self.with_store_retries(exec, || self.store.finish_execution(exec, release_lock)).await
    }

    /// Retries a write of `exec`'s outcome with backoff until the store answers: an outcome must
    /// not be lost to a store outage, and a fire left `running` in a live node's processing list
    /// would never be recovered. Only a shutdown stops it (the next incarnation, or the reaper,
    /// then deals with the fire). The writes are fenced, so a retry after this node was declared
    /// dead is recorded as superseded, not as the outcome.
    async fn with_store_retries<T, F, Fut>(&self, exec: &Execution, write: F) -> Result<T, ()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = crate::Result<T>>,
    {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1u32;
        loop {
            match write().await {
                Ok(v) => return Ok(v),
                Err(e) => tracing::warn!(execution = %exec.id, attempt, error = %e, "cannot record outcome; retrying"),
            }
            if self.cancel.is_cancelled() && attempt >= 5 {
                tracing::error!(execution = %exec.id, state = exec.state.as_str(), "outcome not recorded: store unreachable at shutdown");
                return Err(());
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            attempt += 1;
        }
    }
}

/// An entry as shown in logs and alerts: a huge one is cut (the dead-letter list keeps it whole).
fn shorten(entry: &str) -> String {
    const SHOWN: usize = 160;
    if entry.len() <= SHOWN {
        return entry.to_string();
    }
    let mut end = SHOWN;
    while !entry.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &entry[..end], entry.len())
}

enum HandBack {
    Handed,
    RecoveredElsewhere,
    NoOtherMaster,
    /// Not known to be handed over: left in this node's processing list, neither run nor closed.
    Left,
}

/// The fires a process has in hand, each with its stop request (`Worker::in_hand`).
type InHand = Arc<std::sync::Mutex<std::collections::HashMap<String, Stop>>>;

/// Removes a fire from the in-hand set when its task ends, however it ends.
struct Held {
    set: InHand,
    fire_id: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.fire_id);
        }
    }
}

/// A fire claimed ahead of its instant (the scheduler's fire-ahead window) waits here until `lead_ms`
/// before it is due: before it takes a worker and is started (`START_LEAD_MS`), and again, with no
/// lead, before its handler begins. Bounded, so an entry naming a far-future instant (not a fire
/// rota made) cannot hold anything up.
async fn wait_until_due(fire_id: &str, lead_ms: i64) {
    const MAX_WAIT_US: i64 = 2 * crate::store::FIRE_AHEAD_MS * 1000;
    if let Some(due) = crate::execution::fire_due_ms(fire_id) {
        let us = due.saturating_sub(lead_ms).saturating_mul(1000).saturating_sub(crate::clock::now_us());
        if us > 0 {
            tokio::time::sleep(Duration::from_micros(us.min(MAX_WAIT_US) as u64)).await;
        }
    }
}

/// The timeout of one run: the job's, else the handler's default (http: a server that never
/// answers must not hold a worker forever), with words for the record saying which it was.
fn run_timeout(job_timeout_ms: u64, handler_default: Option<Duration>) -> (Option<Duration>, &'static str) {
    match job_timeout_ms {
        0 => (handler_default, " (the handler's default; set the job's timeout to change it)"),
        ms => (Some(Duration::from_millis(ms)), ""),
    }
}

async fn with_timeout<F: std::future::Future>(t: Option<Duration>, f: F) -> Option<F::Output> {
    match t {
        Some(t) => tokio::time::timeout(t, f).await.ok(),
        None => Some(f.await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::handlers::Registry;

    /// An http job without a timeout gets the handler's default; a job's own timeout wins.
    #[test]
    fn a_job_without_timeout_gets_its_handlers_default() {
        let r = Registry::with_builtins();
        let http = r.get("http").expect("http").default_timeout();
        assert_eq!(http, Some(crate::worker::http::DEFAULT_TIMEOUT));
        assert_eq!(run_timeout(0, http).0, Some(Duration::from_secs(60)));
        assert_eq!(run_timeout(5_000, http), (Some(Duration::from_secs(5)), ""));
        let noop = r.get("noop").expect("noop").default_timeout();
        assert_eq!(run_timeout(0, noop).0, None, "no default: no limit, as before");
    }
}
