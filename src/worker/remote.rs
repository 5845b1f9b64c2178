//! External workers: processes in any language attached to this node by `WorkerService.Attach`
//! (the stream itself is served by `api/worker_service.rs`). Owns the sessions, their slots
//! (credits: a session is never pushed more fires than it has slots), and `Remote`, the handler
//! the pool runs for a handler name that only external workers serve: it pushes the fire to a
//! session serving the name with a free slot, and waits for its result, the session's end, or its
//! own cancellation (the job's timeout, the node's shutdown), which it tells the worker.
//! Everything else about a fire (start, record, retries, recovery) is the pool's, as for a
//! built-in handler. Uses: the handler trait (`handlers`) and the wire types (`pb`) only.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::handlers::{Attached, FailureKind, FireContext, Handler, HandlerFailure, Partial, RunOutput};
use crate::pb;

pub use super::handlers::BUILTIN_NAMES;

/// The most a session's output may add to a run's record (the record keeps less; see
/// `MAX_OUTPUT_BYTES`): a worker printing without end cannot grow the node's memory.
const MAX_PARTIAL_BYTES: usize = 256 * 1024;

/// A valid worker id, handler name, tag key or value: 1-128 characters of `[A-Za-z0-9._:-]`.
pub use crate::job::is_tag_name as valid_name;

/// What a worker said of itself in its hello (checked by the API edge).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSpec {
    pub worker_id: String,
    pub handlers: BTreeSet<String>,
    pub slots: u32,
    pub tags: BTreeMap<String, String>,
    pub sdk: String,
}

/// A worker's result for one fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerResult {
    pub success: bool,
    /// What it printed, beyond the output messages already sent.
    pub output: String,
    /// Why it failed (empty on success).
    pub error: String,
}

/// How a fire pushed to a worker ended, as its session reports it.
#[derive(Debug)]
enum Reply {
    Done(WorkerResult),
    /// The session ended (closed, silent past its TTL, or replaced) before a result came.
    Gone(String),
}

/// A fire pushed to a session and not yet answered.
struct Pushed {
    reply: Option<oneshot::Sender<Reply>>,
    partial: Partial,
    partial_bytes: usize,
    /// The node stopped waiting (timeout, shutdown) and told the worker to cancel: its slot stays
    /// taken until the worker answers (its handler really stopped) or the session ends, so a
    /// handler that ignores the cancel does not let the node push more than the worker's slots.
    cancelled: bool,
}

/// What the outbound half of a session's stream carries: messages, or the status that ends it.
pub type Outbound = Result<pb::AttachResponse, tonic::Status>;

/// Why a message could not be queued for the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The worker does not read its stream (the session's buffer is full).
    Full,
    /// The stream is gone.
    Closed,
}

/// One connected worker.
pub struct Session {
    pub spec: WorkerSpec,
    /// Distinguishes this session from an earlier or later one of the same worker id.
    pub serial: u64,
    busy: AtomicU32,
    /// The worker said it is stopping: it gets no more fires.
    draining: std::sync::atomic::AtomicBool,
    tx: mpsc::Sender<Outbound>,
    pushed: Mutex<HashMap<String, Pushed>>,
    /// The hub's: notified when a slot of this session frees.
    changed: Arc<Notify>,
    /// Cancelled when the session ends.
    pub gone: CancellationToken,
}

impl Session {
    pub fn busy(&self) -> u32 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Whether it takes fires (it has not said it is stopping).
    fn taking(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    /// Whether it takes fires of `name` for a job with `selector`.
    fn fits(&self, name: &str, selector: &BTreeMap<String, String>) -> bool {
        self.taking() && self.spec.handlers.contains(name) && crate::job::tags_match(&self.spec.tags, selector)
    }

    fn release(&self) {
        self.busy.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Queues a message for the worker, waiting for room; false when the stream or the session is
    /// gone meanwhile.
    async fn send(&self, msg: pb::attach_response::Msg) -> bool {
        tokio::select! {
            r = self.tx.send(Ok(pb::AttachResponse { msg: Some(msg) })) => r.is_ok(),
            _ = self.gone.cancelled() => false,
        }
    }

    /// Queues a message for the worker without waiting (heartbeats, refusals, cancels: a worker
    /// that does not read its stream must not hold up the node).
    pub fn try_send(&self, msg: pb::attach_response::Msg) -> Result<(), SendError> {
        self.tx.try_send(Ok(pb::AttachResponse { msg: Some(msg) })).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })
    }

    /// Tells the worker to cancel a fire's handler (without waiting: see `try_send`).
    fn cancel(&self, execution_id: &str, reason: &str) {
        let msg = pb::attach_response::Msg::Cancel(pb::CancelFire {
            execution_id: execution_id.to_string(),
            reason: reason.to_string(),
        });
        let _ = self.try_send(msg);
    }

    /// Ends the stream to the worker with `status` (best effort: a full buffer means it does not
    /// read anyway).
    pub fn end_stream(&self, status: tonic::Status) {
        let _ = self.tx.try_send(Err(status));
    }

    /// The worker's result for `execution_id`. A result for a fire the node cancelled frees its
    /// slot and is not recorded (the node recorded the fire's outcome already). Err(reason) when
    /// the session holds no such fire (a result twice, or for a fire never pushed to it).
    pub fn result(&self, execution_id: &str, outcome: WorkerResult) -> Result<(), String> {
        let pushed = self.pushed.lock().ok().and_then(|mut m| m.remove(execution_id));
        match pushed {
            Some(p) if p.cancelled => {
                self.release();
                Ok(())
            }
            Some(mut p) => {
                if let Some(r) = p.reply.take() {
                    let _ = r.send(Reply::Done(outcome));
                }
                Ok(())
            }
            None => Err(not_held(execution_id)),
        }
    }

    /// Output printed by the handler of `execution_id` (kept up to a cap).
    pub fn output(&self, execution_id: &str, text: &str) -> Result<(), String> {
        let Ok(mut m) = self.pushed.lock() else { return Err("session state unavailable".into()) };
        let Some(p) = m.get_mut(execution_id) else { return Err(not_held(execution_id)) };
        if p.partial_bytes < MAX_PARTIAL_BYTES && !p.cancelled {
            let room = MAX_PARTIAL_BYTES - p.partial_bytes;
            let text = crate::execution::truncate_utf8(text.to_string(), room);
            p.partial_bytes += text.len();
            p.partial.output(text.as_bytes());
        }
        Ok(())
    }

    /// Whether `execution_id` is one of this session's running fires.
    pub fn holds(&self, execution_id: &str) -> bool {
        self.pushed.lock().is_ok_and(|m| m.contains_key(execution_id))
    }

    /// Ends the session: every fire it holds is answered `Gone`; the slots of cancelled ones free.
    fn end(&self, why: &str) {
        self.gone.cancel();
        let drained: Vec<Pushed> =
            self.pushed.lock().map(|mut m| m.drain().map(|(_, p)| p).collect()).unwrap_or_default();
        for mut p in drained {
            match p.reply.take() {
                Some(r) if !p.cancelled => {
                    let _ = r.send(Reply::Gone(why.to_string()));
                }
                _ => self.release(),
            }
        }
    }
}

/// The refusal of a message about a fire the session does not hold (the id is shown only when it
/// is a well-formed one: a worker's garbage does not reach the log or the reply whole).
pub fn not_held(execution_id: &str) -> String {
    match valid_name(execution_id) {
        true => format!("this worker holds no running fire with execution id '{execution_id}'"),
        false => "this worker holds no running fire with that execution id (not a valid id)".to_string(),
    }
}

/// Sessions a node takes at once: each holds a stream, a task and up to 10,000 slots.
pub const MAX_SESSIONS: usize = 1000;

/// Distinct handler names a node's sessions may serve together: they are all in the node's record,
/// which every heartbeat rewrites.
pub const MAX_NAMES: usize = 512;

/// Distinct tag sets per handler published in the node's record (`Hub::tags_by_handler`).
pub const MAX_TAG_SETS: usize = 16;

/// The sessions attached to this node (a handle: clones share them).
#[derive(Clone, Default)]
pub struct Hub(Arc<HubState>);

#[derive(Default)]
pub struct HubState {
    sessions: Mutex<BTreeMap<String, Arc<Session>>>,
    /// Notified when a slot frees or a session comes or goes (a fire waiting for a slot looks again).
    changed: Arc<Notify>,
    serial: AtomicU64,
    /// Fires waiting for a free slot (`take_slot`).
    waiting: AtomicU32,
}

/// The registry's view of the attached workers: a handler for a name they serve.
impl Attached for Hub {
    fn handler(&self, name: &str, selector: &BTreeMap<String, String>) -> Option<Arc<dyn Handler>> {
        let remote = Remote { name: name.to_string(), selector: selector.clone(), hub: self.clone() };
        self.serves(name, selector).then(|| Arc::new(remote) as Arc<dyn Handler>)
    }

    fn names(&self) -> BTreeSet<String> {
        self.0
            .sessions
            .lock()
            .map(|m| m.values().filter(|s| s.taking()).flat_map(|s| s.spec.handlers.iter().cloned()).collect())
            .unwrap_or_default()
    }

    fn backlog_full(&self) -> bool {
        let waiting = self.0.waiting.load(Ordering::Relaxed);
        waiting > 0 && u64::from(waiting) >= self.slots(|s| s.spec.slots)
    }

    fn free_slots(&self) -> u64 {
        let free = self.slots(|s| s.spec.slots.saturating_sub(s.busy()));
        free.saturating_sub(u64::from(self.0.waiting.load(Ordering::Relaxed)))
    }
}

impl Hub {
    /// The sum of `count` over the sessions taking fires.
    fn slots(&self, count: impl Fn(&Session) -> u32) -> u64 {
        let m = self.0.sessions.lock();
        m.map(|m| m.values().filter(|s| s.taking()).map(|s| u64::from(count(s))).sum()).unwrap_or_default()
    }

    /// Attaches a session; a live one of the same worker id is replaced: its stream ends with
    /// ALREADY_EXISTS (the SDKs stop on it: two processes sharing an id would otherwise take the
    /// id from each other for ever) and it is returned. Busy when the node has `MAX_SESSIONS`.
    pub fn attach(
        &self,
        spec: WorkerSpec,
        tx: mpsc::Sender<Outbound>,
    ) -> crate::Result<(Arc<Session>, Option<Arc<Session>>)> {
        let session = Arc::new(Session {
            spec,
            serial: self.0.serial.fetch_add(1, Ordering::Relaxed) + 1,
            busy: AtomicU32::new(0),
            draining: Default::default(),
            tx,
            pushed: Mutex::new(HashMap::new()),
            changed: Arc::clone(&self.0.changed),
            gone: CancellationToken::new(),
        });
        let old = {
            let mut m = self.0.sessions.lock().map_err(|_| crate::Error::Busy("worker sessions unavailable".into()))?;
            if m.len() >= MAX_SESSIONS && !m.contains_key(&session.spec.worker_id) {
                return Err(crate::Error::Busy(format!(
                    "this node has {MAX_SESSIONS} external workers attached; attach to another node"
                )));
            }
            let names: BTreeSet<&String> =
                m.values().flat_map(|s| s.spec.handlers.iter()).chain(&session.spec.handlers).collect();
            if names.len() > MAX_NAMES {
                return Err(crate::Error::Busy(format!(
                    "the workers attached to this node would serve more than {MAX_NAMES} handler names; attach to another node"
                )));
            }
            m.insert(session.spec.worker_id.clone(), Arc::clone(&session))
        };
        if let Some(old) = &old {
            let why = format!("replaced by a new session of worker id '{}'", old.spec.worker_id);
            old.end_stream(tonic::Status::already_exists(format!(
                "{why}: two worker processes share this id, or this one reconnected; give each process its own id"
            )));
            old.end(&why);
        }
        self.0.changed.notify_waiters();
        Ok((session, old))
    }

    /// Detaches a session (if it is still the one attached under its id) and ends it. True when
    /// it was attached (its slots are to be taken off the node's capacity).
    pub fn detach(&self, session: &Arc<Session>, why: &str) -> bool {
        let removed = self.0.sessions.lock().is_ok_and(|mut m| match m.get(&session.spec.worker_id) {
            Some(s) if s.serial == session.serial => m.remove(&session.spec.worker_id).is_some(),
            _ => false,
        });
        session.end(why);
        self.0.changed.notify_waiters();
        removed
    }

    /// A session stops taking fires (its worker is stopping).
    pub fn drain(&self, session: &Session) {
        session.draining.store(true, Ordering::Relaxed);
        self.0.changed.notify_waiters();
    }

    /// Whether a session taking fires serves `name` with tags matching `selector`.
    pub fn serves(&self, name: &str, selector: &BTreeMap<String, String>) -> bool {
        self.0.sessions.lock().is_ok_and(|m| m.values().any(|s| s.fits(name, selector)))
    }

    /// Per handler served, the tags of each session serving it (the node record's `worker_tags`).
    ///
    /// The record is rewritten at every heartbeat, so it is kept small: each distinct tag set once
    /// per handler, and a handler served by more than `MAX_TAG_SETS` distinct sets is published
    /// without them (peers then route its fires here whatever their selector; this node's own
    /// choice of session still applies it, and sends on what no session here matches).
    pub fn tags_by_handler(&self) -> crate::job::WorkerTags {
        let mut sets: BTreeMap<&String, BTreeSet<&BTreeMap<String, String>>> = BTreeMap::new();
        let Ok(m) = self.0.sessions.lock() else { return crate::job::WorkerTags::new() };
        for s in m.values().filter(|s| s.taking()) {
            for h in &s.spec.handlers {
                sets.entry(h).or_default().insert(&s.spec.tags);
            }
        }
        sets.into_iter()
            .filter(|(_, v)| v.len() <= MAX_TAG_SETS)
            .map(|(h, v)| (h.clone(), v.into_iter().cloned().collect()))
            .collect()
    }

    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.0.sessions.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// A session serving `name` with a free slot (the least busy), its slot taken; waits while
    /// every serving session is full (counted in the hub's backlog). None when no session serves
    /// `name`.
    async fn take_slot(&self, name: &str, selector: &BTreeMap<String, String>) -> Option<Arc<Session>> {
        let mut waiting: Option<Waiting> = None;
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a slot freed between the look and the wait is seen.
            changed.as_mut().enable();
            {
                let m = self.0.sessions.lock().ok()?;
                let serving: Vec<&Arc<Session>> = m.values().filter(|s| s.fits(name, selector)).collect();
                if serving.is_empty() {
                    return None;
                }
                let free = serving.into_iter().filter(|s| s.busy() < s.spec.slots).min_by(|a, b| {
                    (u64::from(a.busy()) * u64::from(b.spec.slots))
                        .cmp(&(u64::from(b.busy()) * u64::from(a.spec.slots)))
                });
                if let Some(s) = free {
                    s.busy.fetch_add(1, Ordering::Relaxed);
                    return Some(Arc::clone(s));
                }
            }
            waiting.get_or_insert_with(|| Waiting::new(&self.0));
            changed.await;
        }
    }
}

/// Counts a fire in the hub's backlog while it waits for a slot, however the wait ends.
struct Waiting(Arc<HubState>);

impl Waiting {
    fn new(hub: &Arc<HubState>) -> Waiting {
        hub.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(Arc::clone(hub))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The handler behind an external handler name: runs a fire on an attached worker (one whose tags
/// match the job's selector).
pub struct Remote {
    pub name: String,
    pub selector: BTreeMap<String, String>,
    pub hub: Hub,
}

/// The worker's answer for a fire pushed to `session`, or the session's end. The session may have
/// ended between taking the slot and recording the fire in it (its fires were answered `Gone` before
/// this one was there): its end is watched too.
async fn until_answer(
    answer: &mut oneshot::Receiver<Reply>,
    session: &Session,
) -> Result<Reply, oneshot::error::RecvError> {
    tokio::select! {
        // The answer first: a worker that sends its result and then closes its stream has both
        // ready at once, and its result is the outcome.
        biased;
        r = answer => r,
        _ = session.gone.cancelled() => Ok(Reply::Gone("the session ended".into())),
    }
}

/// Frees the slot when the run ends with an answer; when the run is dropped before its result (the
/// job's timeout, the node's shutdown), tells the worker to cancel and keeps the slot taken until
/// the worker answers (`Session::result`) or the session ends.
struct InFlight {
    session: Arc<Session>,
    execution_id: String,
    answered: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let cancel = self.session.pushed.lock().is_ok_and(|mut m| match m.get_mut(&self.execution_id) {
            Some(p) if !self.answered => {
                p.cancelled = true;
                p.reply = None;
                true
            }
            Some(_) => {
                m.remove(&self.execution_id);
                false
            }
            None => false,
        });
        if cancel {
            // Not sent (the worker does not read its stream): the slot stays taken until the
            // session ends, which its silence then brings about.
            self.session.cancel(&self.execution_id, "stopped by the node: it is shutting down");
        } else {
            self.session.release();
        }
    }
}

#[async_trait]
impl Handler for Remote {
    /// The timeout runs from the push, not from the wait for a slot; past it the worker is told to
    /// cancel, and the run ends when the worker says its handler stopped (or its session ends).
    fn times_itself(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &FireContext, args: &Value) -> Result<String, HandlerFailure> {
        self.run_output(ctx, args, &Partial::default()).await.map(|o| o.output)
    }

    async fn run_output(
        &self,
        ctx: &FireContext,
        args: &Value,
        partial: &Partial,
    ) -> Result<RunOutput, HandlerFailure> {
        // Cancelled while it waits for a slot: it never reaches the worker.
        let slot = tokio::select! {
            s = self.hub.take_slot(&self.name, &self.selector) => s,
            why = ctx.stop.wait(&ctx.execution_id) => {
                return Err(HandlerFailure { kind: FailureKind::Cancelled, ..HandlerFailure::new(why) })
            }
        };
        let Some(session) = slot else {
            return Err(HandlerFailure::no_worker(format!(
                "no worker attached to node {} serves handler '{}'",
                ctx.node_id, self.name
            )));
        };
        let (reply, mut answer) = oneshot::channel();
        if let Ok(mut m) = session.pushed.lock() {
            let p = Pushed { reply: Some(reply), partial: partial.clone(), partial_bytes: 0, cancelled: false };
            m.insert(ctx.execution_id.clone(), p);
        }
        let mut flight =
            InFlight { session: Arc::clone(&session), execution_id: ctx.execution_id.clone(), answered: false };
        let shard = ctx.shard();
        let task = pb::FireTask {
            fire_id: ctx.fire_id.clone(),
            execution_id: ctx.execution_id.clone(),
            job_id: ctx.job_id.clone(),
            handler: self.name.clone(),
            args: Some(pb::json_to_pb(args)),
            scheduled_time: Some(pb::timestamp(ctx.scheduled_ms)),
            attempt: ctx.attempt,
            epoch: ctx.epoch,
            deadline: ctx.timeout.map(|t| pb::timestamp(crate::store::now_ms() + t.as_millis() as i64)),
            manual: ctx.manual,
            node_id: ctx.node_id.clone(),
            shard_index: shard.index,
            shard_total: shard.total,
        };
        let worker = session.spec.worker_id.clone();
        if !session.send(pb::attach_response::Msg::Fire(task)).await {
            flight.answered = true;
            // Never sent: the fire did not reach a worker, so it waits for one like a fire no
            // worker serves.
            return Err(HandlerFailure::no_worker(format!("worker '{worker}' went away before its fire was sent")));
        }
        let timeout = async {
            match ctx.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        // Cut short by the job's timeout, or by CancelExecution (`FireContext::stop`: why).
        let in_time = tokio::select! {
            biased;
            r = until_answer(&mut answer, &session) => Ok(r),
            _ = timeout => Err(None),
            why = ctx.stop.wait(&ctx.execution_id) => Err(Some(why)),
        };
        let reply = match in_time {
            Ok(reply) => reply,
            Err(stopped) => {
                // The worker is told to cancel, and the run lasts until it says its handler stopped
                // (or its session ends): a handler that cannot be stopped (a Python thread) still
                // holds the slot and, for a `forbid` job, the lock.
                let told = tokio::time::Instant::now();
                let reason = stopped.as_deref().unwrap_or("the job's timeout passed");
                session.cancel(&ctx.execution_id, reason);
                let r = until_answer(&mut answer, &session).await;
                flight.answered = true;
                let after = told.elapsed().as_millis();
                let mut out = partial.take();
                let message = match r {
                    Ok(Reply::Done(r)) => {
                        out.output.push_str(&r.output);
                        format!("worker '{worker}' stopped the handler {after} ms after the cancel")
                    }
                    Ok(Reply::Gone(why)) => {
                        format!("worker '{worker}' went away {after} ms after the cancel ({why}), before saying its handler stopped")
                    }
                    Err(_) => format!("worker '{worker}' went away {after} ms after the cancel"),
                };
                let (kind, message) = match stopped {
                    Some(why) => (FailureKind::Cancelled, format!("{why}; {message}")),
                    None => (FailureKind::TimedOut, message),
                };
                return Err(HandlerFailure {
                    output: out.output,
                    stderr: out.stderr,
                    kind,
                    ..HandlerFailure::new(message)
                });
            }
        };
        flight.answered = true;
        match reply {
            Ok(Reply::Done(r)) => {
                let mut out = partial.take();
                out.output.push_str(&r.output);
                match r.success {
                    true => Ok(out),
                    false => {
                        Err(HandlerFailure { output: out.output, stderr: out.stderr, ..HandlerFailure::new(r.error) })
                    }
                }
            }
            Ok(Reply::Gone(why)) => {
                let out = partial.take();
                Err(HandlerFailure {
                    message: format!("worker '{worker}' gone mid-run: {why}"),
                    output: out.output,
                    stderr: out.stderr,
                    kind: FailureKind::WorkerLost,
                })
            }
            Err(_) => Err(HandlerFailure::worker_lost(format!("worker '{worker}' gone mid-run"))),
        }
    }
}
