//! The store: jobs, their next-fire watermark, execution records, no-overlap locks and the node table,
//! behind one trait, `Store`, made of four by concern (`JobStore`, `FireStore`, `ExecStore`,
//! `ClusterStore`), with two backends: `memory` (the embedded default for a single node) and `redis`
//! (what a cluster shares). Every state change that must happen once is one atomic step of the store
//! (a mutex section in memory, a Lua script in Redis), so the two backends behave the same and the
//! same conformance suite (`tests/store_conformance.rs`) runs against both.
//!
//! The once-per-fire rule lives here: a fire `(job, scheduled instant)` is claimed by a compare-and-set
//! on the job's watermark (`next_ms`, the next instant that may be claimed), which never expires and
//! never moves back, plus a fire key created only if absent.
//! Uses: `job`, `execution`. Touches nothing outside its backend.
pub mod fire;
pub mod keys;
pub mod memory;
pub mod redis;
pub mod shards;
pub mod url;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::execution::{ExecState, Execution};
use crate::job::calendar::{Calendar, CalendarDef};
use crate::job::limit::Limit;
use crate::job::{Concurrency, Declared, JobSpec, Priority};

pub use self::fire::{FireState, UnknownFireState};
pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
pub use self::shards::Shards;
pub use self::url::RedisUrl;

/// A job as stored: its definition plus its place in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub spec: JobSpec,
    /// The watermark: the next instant (UTC ms) that may be claimed. None when paused or finished.
    pub next_ms: Option<i64>,
    /// The last instant claimed. A new watermark must be later, so nothing fires twice.
    pub last_ms: Option<i64>,
    pub updated_ms: i64,
    /// Who wrote the definition last.
    pub written_by: Writer,
    /// The jobs file's declaration of this job as last applied; None when no file ever applied it.
    /// Kept whole rather than as a hash, so the drift (what the API changed since) is known at any
    /// time, and goes away by itself when the API puts the file's definition back.
    pub applied: Option<Declared>,
    /// The definition's revision, raised by every definition write (not by pause and resume):
    /// `write_job`'s compare-and-set token. At least 1 for a stored job. `due_jobs` leaves it,
    /// `written_by` and `applied` at their defaults: scheduling does not need them.
    pub rev: u64,
    /// How many scheduled fires were claimed since the job was created (`max_fires`): raised by the
    /// claim that moves the watermark from a fire's instant (a misfire's summary counts none).
    pub fired: u64,
    /// Why, by whom and until when the job was paused (PauseJob); None when not paused, or paused
    /// without one (PutJob's `paused`, a jobs file).
    pub pause: Option<PauseNote>,
    /// Scheduled fires that failed in a row, the newest last (`pause_after_failures`).
    pub fail_streak: u64,
    /// An `after_previous` job's fire whose end sets its next one (its instant): claimed, not yet
    /// ended, or ended and not yet seen by `chain_next`. The job has no watermark meanwhile.
    pub chain_ms: Option<i64>,
}

/// A pause as PauseJob records it: who (the token's name; empty without tokens), why, when, and
/// until when (the master resumes the job by itself then: `Store::resumable`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PauseNote {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub by: String,
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
}

impl JobRecord {
    /// A record of `spec` as written through the API, with its watermark and nothing else.
    pub fn new(spec: JobSpec, next_ms: Option<i64>, last_ms: Option<i64>, updated_ms: i64) -> JobRecord {
        JobRecord {
            spec,
            next_ms,
            last_ms,
            updated_ms,
            written_by: Writer::Api,
            applied: None,
            rev: 0,
            fired: 0,
            pause: None,
            fail_streak: 0,
            chain_ms: None,
        }
    }

    /// Whether the schedule has no instant left (a one-shot that fired, an end passed): not
    /// paused, no watermark, and not waiting for a fire's end (`after_previous`).
    pub fn completed(&self) -> bool {
        !self.spec.paused && self.next_ms.is_none() && self.chain_ms.is_none()
    }

    /// The definition fields (and the pause state, when the file declares one) in which this job
    /// differs from the jobs file's declaration last applied: changed through the API since.
    pub fn drift(&self) -> Vec<&'static str> {
        let Some(d) = &self.applied else { return Vec::new() };
        let mut fields = crate::job::differing_fields(&self.spec, &d.spec);
        if d.paused.is_some_and(|p| p != self.spec.paused) {
            fields.push("paused");
        }
        fields
    }
}

/// Who wrote a job's definition last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Writer {
    /// PutJob (the CLI, a client), or a record older than this distinction.
    #[default]
    Api,
    /// A node's `--jobs` file at its start.
    File,
}

impl Writer {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Writer::Api => "api",
            Writer::File => "file",
        }
    }

    /// As `job get` and the logs spell it (`jobs_file`, not the stored `file`).
    pub fn name(self) -> &'static str {
        match self {
            Writer::Api => "api",
            Writer::File => "jobs_file",
        }
    }

    /// The stored form back; anything else (an absent field) is `Api`.
    pub fn parse(s: &str) -> Writer {
        if s == "file" {
            Writer::File
        } else {
            Writer::Api
        }
    }
}

/// One write of a job's definition (`JobStore::write_job`).
#[derive(Debug, Clone)]
pub struct JobWrite<'a> {
    /// The definition; its `paused` is not read (see `paused`).
    pub spec: &'a JobSpec,
    /// Set the pause state; None keeps the stored one (a new job is not paused).
    pub paused: Option<bool>,
    /// The watermark when the job is (or stays) unpaused.
    pub next_ms: Option<i64>,
    pub writer: Writer,
    /// The jobs file's declaration being applied, kept as the one last applied; None keeps the
    /// stored one (an API write leaves it, so the drift from the file shows).
    pub applied: Option<&'a Declared>,
    /// Write only if the stored revision is this (0: only if the job does not exist); None: always.
    pub expect_rev: Option<u64>,
    pub now_ms: i64,
}

/// Result of a write that sets the watermark.
#[derive(Debug, Clone, PartialEq)]
pub enum WatermarkWrite {
    Done {
        record: Box<JobRecord>,
        created: bool,
    },
    /// The proposed `next_ms` is not after the last claimed instant: recompute from `last_ms` and retry.
    Behind {
        last_ms: i64,
    },
    /// `expect_rev` was not the stored revision: someone wrote the job meanwhile; nothing written.
    Conflict,
}

/// One fire to claim: advance job `job_id`'s watermark from `sched_ms` to `next_ms` and record `exec`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub job_id: String,
    pub sched_ms: i64,
    pub next_ms: Option<i64>,
    /// The record to create: `Pending` for a fire to run, `Misfired` for a summary of missed fires.
    pub exec: Execution,
    /// The job's overlap policy: every one but `Allow` takes the job's no-overlap lock (owner = the
    /// fire id); when it is held, `Forbid` records `exec` skipped, `Replace` and `Buffer` hold the
    /// fire for it (`ClaimOutcome::Held`; PROTOCOL §3.20).
    pub overlap: Concurrency,
    pub lock_ttl_ms: u64,
    /// Claim it straight into the claiming node's own hands (the master's own fire): accepted by
    /// it in the same step, as `accept` would at once after the claim (`ClaimOutcome::Here`). Only
    /// while the claimer's heartbeat holds the fence's incarnation; otherwise claimed as usual.
    pub here: bool,
    /// With `here`: started in the same step too (`ClaimOutcome::Started`: its job is not
    /// master-only, whose start checks the stored lease at its instant; section 3.8).
    pub start: bool,
    /// The job's priority: the queue list the fire waits in should it be queued (section 3.22).
    pub priority: Priority,
    /// An `after_previous` fire: `next_ms` is None and the job waits for this fire's end, which
    /// sets its next one (`JobStore::chain_next`); the claim puts it in the chain index.
    pub chain: bool,
    /// Only moves the watermark from `sched_ms` to `next_ms`: no fire is made or recorded (an
    /// instant a calendar omits, or moves forward to `next_ms`), and none is counted.
    pub moves: bool,
}

/// What `JobStore::chain_next` did for one `after_previous` job waiting on a fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chained {
    /// The fire has ended: the job's next fire is at this instant (its end plus the delay); None
    /// when there is none (past the job's end_time, or the job is paused: a resume starts anew).
    Next(Option<i64>),
    /// The fire has not ended yet (running, waiting for a retry, held, queued).
    Open,
    /// The job waits on no such fire (put again as another kind, deleted, or moved on already).
    Stale,
}

impl Claim {
    /// Whether the claim makes a fire that runs (not a record ended at its claim, not a move).
    pub fn runs(&self) -> bool {
        !self.moves && !self.exec.state.is_terminal()
    }

    /// The record written instead when the no-overlap lock is held (or the buffer is full).
    pub fn skipped_exec(&self) -> Execution {
        skipped_by_lock(&self.exec, self.overlap)
    }
}

/// An entry a node took from its own queue (`take_queued`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub fire_id: String,
    /// The level it was taken from.
    pub level: Priority,
    /// The levels that hold entries after the take, highest first: what the caller's fairness
    /// counts as passed over (those below `level`), and where its next take would go.
    pub waiting: Vec<Priority>,
}

/// A level as the queue scripts spell it (take.lua's order and reply).
fn level_letter(p: Priority) -> char {
    match p {
        Priority::High => 'h',
        Priority::Normal => 'n',
        Priority::Low => 'l',
    }
}

fn level_of_letter(c: char) -> Option<Priority> {
    Priority::ALL.into_iter().find(|p| level_letter(*p) == c)
}

/// The record of `exec` skipped at its claim or trigger: the job's lock was held (forbid), or the
/// fires waiting for it filled the job's buffer.
pub fn skipped_by_lock(exec: &Execution, overlap: Concurrency) -> Execution {
    exec.skipped_by_lock(&match overlap {
        Concurrency::Buffer(1) => {
            "skipped: a fire already waits for this job's running fire (concurrency buffer_one)".to_string()
        }
        Concurrency::Buffer(n) => {
            format!("skipped: {n} fires already wait for this job's running fire (concurrency buffer, limit {n})")
        }
        _ => "skipped: an earlier fire of this job is still running (concurrency forbid)".to_string(),
    })
}

/// The lua form of an overlap policy (claim.lua's and trigger.lua's): '0' allow, '1' forbid,
/// 'b<n>' buffer n, 'r' replace.
pub fn overlap_arg(c: Concurrency) -> String {
    match c {
        Concurrency::Allow => "0".into(),
        Concurrency::Forbid => "1".into(),
        Concurrency::Replace => "r".into(),
        Concurrency::Buffer(n) => format!("b{n}"),
    }
}

/// What a run stopped by a replacing fire (concurrency replace) says it ended by: the same words
/// as the stop request `hold` (prelude.lua) leaves on its node's stop list.
pub fn replaced_why(by_fire: &str) -> String {
    format!("replaced by a newer fire, {by_fire} (concurrency replace)")
}

/// A running fire a replacing fire asked to stop (concurrency replace): its node, and the request
/// the store left on that node's stop list, for the caller to deliver directly too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacing {
    pub node: String,
    pub stop: StopRequest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Claimed; the pending execution is recorded (and the lock taken, for forbid jobs).
    Claimed,
    /// Claimed (as `Claimed`) and accepted by the claiming node: in its processing list, for it to
    /// run (a claim asked `here`).
    Here,
    /// As `Here`, and started: its first attempt (execution `exec.id`) is `running` on the claiming
    /// node, to begin at its instant with no start step (a claim asked `here` and `start`).
    Started,
    /// Claimed and recorded as skipped: the job's lock was held (or its buffer full).
    Skipped,
    /// Claimed and recorded pending, waiting for the job's lock (concurrency replace or buffer):
    /// the fire that lets the lock go hands it on (PROTOCOL §3.20). A replace whose lock holder
    /// runs asked it to stop (`Replacing`).
    Held(Option<Replacing>),
    /// Claimed and recorded in its final state at once: a misfire's summary, or the failure of a
    /// job whose stored definition no longer validates.
    Misfired,
    /// The watermark had moved on: someone already claimed this instant (a prevented duplicate).
    Stale,
    /// A `Claim::moves`: the watermark moved, nothing else.
    Moved,
    Paused,
    /// The job no longer exists.
    Gone,
    /// The fire key already existed (a prevented duplicate, or a key planted ahead of the fire):
    /// what it held, for the log.
    Duplicate(String),
    /// A key of this claim has the wrong type (clobbered): no fire made, nothing written for it but
    /// the watermark's move when the job's own key is sound. Why.
    BadKey(String),
}

/// What `due_jobs` read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Due {
    pub jobs: Vec<JobRecord>,
    /// Jobs whose stored record is not a job (a key of the wrong type, a definition that does not
    /// decode): taken out of the due index and named in the dead-letter list, so they never stop the
    /// others. The caller logs and alerts.
    pub set_aside: Vec<SetAside>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub job_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerOutcome {
    /// A new fire; its pending execution is recorded.
    Created(Execution),
    /// The idempotency key was seen before; this is the first call's execution.
    Deduplicated(Execution),
    /// The idempotency key was seen before, but the job's history cap has deleted the execution it
    /// made (its id): nothing is fired again, and there is no record to show.
    Spent(String),
    /// The job forbids overlap and is running (or its buffer is full): recorded as skipped.
    Skipped(Execution),
    /// Pending, waiting for the job's lock (as `ClaimOutcome::Held`).
    Held(Execution, Option<Replacing>),
    /// The idempotency key was seen before with other arguments (this execution): nothing fired.
    Conflict(String),
    Gone,
    /// A backfill's fire (a scheduled instant's id, `exec.manual` false) that was made before, by
    /// the schedule or an earlier backfill (its hash is kept for the retention): nothing fired.
    AlreadyFired,
}

/// The largest fencing epoch the protocol issues or accepts: 2^53 - 1, so an epoch is exact
/// everywhere it travels (Lua numbers and JSON readers such as JavaScript use doubles). Epochs start
/// at Redis's clock in ms (about 1.8e12 today) and rise by one per master, so this bound is never
/// reached honestly; a larger one can only be forged or corrupted, and is refused.
pub const MAX_EPOCH: u64 = (1 << 53) - 1;

/// How a start treats a master-only job's fire (`FireStore::start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterOnly {
    /// The caller is not master: refused (`Start::MasterOnly`), to be handed to the master.
    Refuse,
    /// The caller believes it is master: started only while the stored lease is this node's
    /// incarnation's, read in the same step (its own view can be behind the store's, after a
    /// Redis failover), else refused.
    Verify,
    /// A stand-in with no master to hand it to: started (recorded skipped unless it became master).
    Anyway,
}

impl MasterOnly {
    pub fn as_str(self) -> &'static str {
        match self {
            MasterOnly::Refuse => "refuse",
            MasterOnly::Verify => "verify",
            MasterOnly::Anyway => "any",
        }
    }
}

/// The master lease: who holds it, with which epoch, in which incarnation. Its wire form, the value
/// stored under the lease key, is `<node>:<epoch>:<incarnation>` (node ids cannot hold ':'); every
/// write fenced by the lease (claim, enqueue, the master's reap, renew, release) is refused unless
/// the caller's fence, in that form, is the stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub node_id: String,
    pub epoch: u64,
    pub incarnation: String,
}

impl Fence {
    /// Reads a lease value; None when it is not one. The stores write the epoch as plain digits, so
    /// a fence they issued displays as exactly the value they stored.
    pub fn parse(value: &str) -> Option<Fence> {
        let mut parts = value.splitn(3, ':');
        let (node, epoch, inc) = (parts.next()?, parts.next()?, parts.next()?);
        Some(Fence { node_id: node.to_string(), epoch: epoch.parse().ok()?, incarnation: inc.to_string() })
    }
}

/// The wire form: `<node>:<epoch>:<incarnation>`.
impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.node_id, self.epoch, self.incarnation)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAcquire {
    /// The caller is master now, with this (new, higher) epoch.
    Acquired(Fence),
    /// Someone holds it (None: the stored value is not a lease).
    Held(Option<Fence>),
}

/// A node's registration of one incarnation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Register {
    Registered,
    /// Another live process holds this node id (with this incarnation).
    InUse(String),
}

/// Result of a heartbeat, with the highest epoch issued so far (so nodes learn of new masters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    Alive {
        epoch: u64,
    },
    /// This incarnation was replaced, or its running work was taken over after its key expired
    /// (buried): it can never beat again; register anew. (A key that merely expired is taken back:
    /// `Alive`.)
    Revoked {
        epoch: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Accept {
    /// Taken: it is in this node's processing list, for its start (a master-only job's fire).
    Accepted,
    /// Taken and started in the same step (section 3.8): in this node's processing list, its first
    /// attempt `running`, to begin at its instant with no start step.
    Started(Box<StartedFire>),
    /// This node had already taken it (a retried SubmitTask).
    Already,
    /// Another node has it, or it is past dispatching.
    Taken,
    /// The sender's epoch is not the current one: a newer master exists.
    StaleEpoch,
    /// This node's incarnation is not live (it was reaped).
    NotLive,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueue {
    Queued,
    TargetDead,
    /// The fire left `dispatching` in the meantime (e.g. the target accepted it): nothing to do.
    NotDispatching(FireState),
    /// No such fire (it expired, or never was): nothing to do.
    Unknown,
    /// The fire said `accepted` or `queued` but no list held it: queued again on the target.
    Orphan,
}

/// What `start` found for a fire taken from this node's processing list.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    Run(Box<StartedFire>),
    /// Started before by this very incarnation, whose reply was lost (the store restarted between
    /// the commit and the reply): run it, under the execution and attempt already recorded, if no
    /// task of this process has it.
    Resume(Box<StartedFire>),
    /// Already running here (a repeated start).
    Already,
    NotLive,
    /// The entry names no fire: moved to the dead-letter list.
    Poison,
    /// A stale copy of a fire that lives elsewhere (or has ended): removed.
    NotMine(FireState),
    /// It waited past its start deadline: recorded by the caller as misfired.
    Misfired {
        job_id: String,
        sched_ms: i64,
        exec_id: String,
    },
    /// The caller is not master and the job is master-only: not started, nothing changed.
    MasterOnly,
}

/// A started fire: its attempt reads `running` from the same step as the start (the Redis store
/// shows the claim's record `running` from the fire hash; the in-memory store writes it).
#[derive(Debug, Clone, PartialEq)]
pub struct StartedFire {
    pub exec_id: String,
    pub attempt: u32,
    pub job_id: String,
    pub sched_ms: i64,
    pub epoch: u64,
    pub manual: bool,
    /// When the store started it (ms).
    pub start_ms: i64,
    /// The job's definition as stored (None: the job was deleted).
    pub job: Option<JobSpec>,
    /// For a fire started ahead by its accept or claim (section 3.8): when it must begin by, or be
    /// recorded misfired (the node checks, as start.lua does for the fires it starts). None: the
    /// start checked it.
    pub deadline_ms: Option<i64>,
    /// The fire's own arguments (TriggerJob's `args`), run instead of its job's (None: the job's).
    pub args: Option<serde_json::Value>,
    /// Tags the worker that runs it must have besides its job's selector (TriggerJob's
    /// `target_selector`; empty: none).
    pub selector: BTreeMap<String, String>,
}

/// What a manual fire brings of its own (TriggerJob), kept with the fire: every take and start of
/// it returns it (`StartedFire::args`, `StartedFire::selector`), so it holds wherever the fire runs,
/// a hand-over or a re-run included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FireOwn {
    /// Its arguments, run instead of its job's (None: the job's).
    pub args: Option<serde_json::Value>,
    /// Tags its worker must have besides its job's selector (empty: none).
    pub selector: BTreeMap<String, String>,
}

impl FireOwn {
    /// A fire with its own arguments only.
    pub fn with_args(args: serde_json::Value) -> FireOwn {
        FireOwn { args: Some(args), selector: BTreeMap::new() }
    }
}

impl StartedFire {
    /// The attempt's `running` record, as the start wrote it.
    pub fn running_record(&self, fire_id: &str, node: &str) -> Execution {
        let mut e = Execution::pending(&self.job_id, fire_id.to_string(), self.sched_ms, node, self.attempt);
        e.id = self.exec_id.clone();
        e.state = ExecState::Running;
        e.start_ms = Some(self.start_ms);
        e.epoch = self.epoch;
        e.manual = self.manual;
        e
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Recorded,
    /// This incarnation no longer owned the fire: the result is kept as evidence only.
    Superseded,
}

/// Which of a node's fires: those queued for it (not yet taken by any incarnation), or those it
/// has taken (accepted or running, until finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFires {
    Queued,
    Taken,
}

/// Who reaps an entry, and on what authority: what a reap may do depends on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReapBy {
    /// The master, fenced by its lease, resolving a dead node's entry: refused (`Alive`) while the
    /// node's heartbeat is live; the incarnation that was running a fire is buried (it may never
    /// beat again); the dead attempt is left to close (`closings`).
    Master(Fence),
    /// This node, fenced by its live incarnation, resolving what its earlier incarnations left in
    /// its own lists: an entry of the live incarnation is put back (`Alive`), the others are dealt
    /// with as the master would, without burial; the dead attempt is left to close.
    Adopt { incarnation: String },
    /// This node, fenced by its live incarnation, moving a fire that incarnation holds to another
    /// node's queue (a master-only fire that reached it while it is not master, handed to the
    /// master). It records its own attempt: nothing is left to close.
    Handoff { incarnation: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReapRequest {
    pub by: ReapBy,
    /// Whose list holds the entry: a dead node, or this node itself (`Adopt`, `Handoff`).
    pub dead_node: String,
    /// Among which of its fires the entry is.
    pub fires: NodeFires,
    pub fire_id: String,
    pub target: String,
    pub rerun: bool,
    /// A running fire re-run counts a recovery, and past this many it is lost instead. None: a
    /// hand-over that is no recovery (a node handing a fire whose handler has not begun to a node
    /// that can run it, or to the master): the count is left as it is, and the fire is re-run.
    pub max_recoveries: Option<u32>,
    pub lock_ttl_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reap {
    Fenced,
    /// The node is alive after all (or the entry is its current incarnation's): left alone.
    Alive,
    /// Someone else handled the entry.
    Gone,
    StaleCopy,
    /// A never-started fire moved to the target's queue.
    Moved,
    /// A fire that was running is queued on the target to run again; `dead_exec_id` is the
    /// attempt that died with its node (the caller records it lost, so it does not stay `running`).
    Rerun {
        dead_exec_id: String,
        /// The dead attempt as the reap read it from the fire (its record until a re-run starts).
        dead: DeadAttempt,
    },
    /// A fire that was running is lost (recovery 'lost' or too many recoveries): record and alert.
    Lost {
        job_id: String,
        sched_ms: i64,
        exec_id: String,
        dead: DeadAttempt,
    },
    /// A finished fire's leftover entry (None: a fire with no state): cleaned up.
    Dropped(Option<FireState>),
}

/// What a reap read of the attempt that was running, from its fire hash: the record of the fire's
/// current execution (section 4.2 of docs/PROTOCOL.md), which a re-run that starts overwrites, so
/// whoever closes the attempt afterwards has it from here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadAttempt {
    pub job_id: String,
    pub sched_ms: i64,
    pub started_ms: Option<i64>,
    pub attempt: u32,
}

/// A dead attempt the reap decided about, to be closed by the caller: its record made `lost` (it
/// would say `running` forever) and, when the fire itself is lost, an alert. Kept by the store until
/// `closed`, so a reap whose reply was lost is closed by the next sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub exec_id: String,
    /// True: the fire is lost (recovery `lost`, or out of recoveries). False: it is re-run.
    pub lost: bool,
    /// The attempt's own node handed the fire over (`ReapBy::Handoff`): it records its attempt
    /// itself, and this closes it only when it never did (the hand-over's reply was lost).
    pub handed: bool,
    pub fire_id: String,
    /// The attempt as the reap read it: its record once the fire hash has moved on to a re-run.
    pub attempt: DeadAttempt,
    pub dead_node: String,
    /// Where a re-run went.
    pub target: String,
}

/// Which executions to list.
#[derive(Debug, Clone, Default)]
pub struct ExecFilter {
    pub job_id: Option<String>,
    pub state: Option<ExecState>,
    /// Only the executions of this fire, or of its shards when it is a whole fire
    /// (`execution::fire_matches`; the caller sets `job_id` to its job, and `not_before`).
    pub fire_id: Option<String>,
    /// List executions with ids strictly lower (older) than this one.
    pub before: Option<String>,
    /// List executions with ids at or above this one only: ids sort by creation time, so a fire's
    /// executions are found without scanning its job's older history.
    pub not_before: Option<String>,
    /// Only executions run (or recorded) by this node.
    pub node_id: Option<String>,
    /// Only executions of fires scheduled at or after this instant (UTC ms).
    pub scheduled_from_ms: Option<i64>,
    /// Only executions of fires scheduled before this instant (UTC ms).
    pub scheduled_to_ms: Option<i64>,
    pub limit: usize,
}

impl ExecFilter {
    /// Whether `e` passes the filter's conditions on the record itself (job, state, fire, node,
    /// scheduled time; not the paging bounds, which the listing applies to ids).
    pub fn matches(&self, e: &Execution) -> bool {
        self.job_id.as_ref().is_none_or(|j| *j == e.job_id)
            && self.state.is_none_or(|s| s == e.state)
            && self.fire_id.as_ref().is_none_or(|f| crate::execution::fire_matches(f, &e.fire_id))
            && self.node_id.as_ref().is_none_or(|n| *n == e.node_id)
            && self.scheduled_from_ms.is_none_or(|t| e.scheduled_ms >= t)
            && self.scheduled_to_ms.is_none_or(|t| e.scheduled_ms < t)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Load {
    pub active: u32,
    pub max: u32,
    pub queue: u32,
}

impl Load {
    /// (active + waiting) / max workers: the number the routing threshold compares against. Fires
    /// waiting for a worker count, so a burst in one tick does not all land on one node.
    pub fn ratio(&self) -> f64 {
        if self.max == 0 {
            f64::INFINITY
        } else {
            (f64::from(self.active) + f64::from(self.queue)) / f64::from(self.max)
        }
    }

    /// One more fire sent to it: a free worker taken, or one more waiting.
    pub fn bump(&mut self) {
        if self.active < self.max {
            self.active += 1;
        } else {
            self.queue += 1;
        }
    }
}

/// What a node publishes about itself on every heartbeat.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub address: String,
    pub incarnation: String,
    pub started_ms: i64,
    pub beat_ms: i64,
    pub version: String,
    pub handlers: Vec<String>,
    pub load: Load,
    pub master: bool,
    pub draining: bool,
    /// Redis's clock minus the node's wall clock in ms (the correction it applies), as last
    /// measured; None while unmeasured (and in records written before it existed).
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
    /// The built-in shell handler is enabled on the node (`enable_shell`), with these programs
    /// allowed (`shell_allow`). Defaults for records written before these existed.
    #[serde(default)]
    pub shell_enabled: bool,
    #[serde(default)]
    pub shell_allow: Vec<String>,
    /// Where the node's http handler may connect (`http_allow`; empty: the default rule).
    #[serde(default)]
    pub http_allow: Vec<String>,
    /// The node stopped cleanly: its last record, written by its graceful shutdown (a node whose
    /// heartbeat merely lapsed never writes this).
    #[serde(default)]
    pub left: bool,
    /// The node competes for master leases (it has started its work: registered, jobs file put).
    /// With shards, only such nodes are given shards to master.
    #[serde(default)]
    pub competing: bool,
    /// Per external handler, the tags of each attached worker serving it (routing by selector).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub worker_tags: crate::job::WorkerTags,
}

impl NodeRecord {
    /// Whether the node can run fires of `handler` (by a job with `selector`).
    pub fn can_run(&self, handler: &str, selector: &std::collections::BTreeMap<String, String>) -> bool {
        crate::job::can_run(&self.handlers, &self.worker_tags, handler, selector)
    }
}

/// How long a gone node's record stays listed after its last heartbeat when nothing else is set
/// (`Config::dead_node_retention_ms`).
pub const DEFAULT_DEAD_NODE_RETENTION_MS: u64 = 5 * 60 * 1000;

/// How many of a shard's newest executions `ListExecutions` without a job lists by default, beside
/// every open one (`execution_recent`): the index across jobs is bounded, so a retained execution
/// costs Redis its record and its job's index entry only. Older ones are listed by their job (or
/// from the history store).
pub const DEFAULT_RECENT_EXECUTIONS: u64 = 10_000;

/// How much of a job's history is kept before the retention age: its newest `last` executions,
/// whatever their outcome, and besides them its newest `failed` older failed ones (failed, timed
/// out, lost), so failures stay longer than successes. Applied when a run of the job finishes, once
/// the job's newest executions are a tenth past `last` (at least one), so that a busy job pays the
/// trim once per tenth of its cap: a job shows between `last` and `last + last / 10` of them.
/// An execution still open (pending, running) is never deleted by the trim, nor the one the
/// finishing run just wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub last: u32,
    pub failed: u32,
}

impl Keep {
    /// The node's defaults (`execution_keep_last`, `execution_keep_failed`).
    pub const DEFAULT: Keep = Keep { last: 1000, failed: 1000 };
    /// Most executions one trim takes out of an index (the Lua side's `TRIM_MAX`): a history
    /// filled before caps existed is worked down over later finishes, not in one long call.
    pub const TRIM_MAX: usize = 100;

    /// A job's caps: its own where it sets them, else the node's.
    pub fn of(spec: &JobSpec, defaults: Keep) -> Keep {
        Keep {
            last: if spec.keep_last == 0 { defaults.last } else { spec.keep_last },
            failed: spec.keep_failed.unwrap_or(defaults.failed),
        }
    }

    /// Whether a job index of `n` executions is due for its trim (the Lua side has the same rule,
    /// in `trim_history`).
    pub fn trim_due(&self, n: usize) -> bool {
        let last = self.last as usize;
        n > last + last / 10
    }
}

/// The whole store, as the node holds it (`Arc<dyn Store>`): the four concerns below, one backend.
/// Through `dyn Store` every method of the four is at hand; on a concrete store (`RedisStore`,
/// `MemoryStore`) bring the concern's trait into scope.
pub trait Store: JobStore + FireStore + ExecStore + ClusterStore + LimitStore + CalendarStore + 'static {
    /// "memory" or "redis".
    fn kind(&self) -> &'static str;
}

/// Jobs: their definitions, pause state and watermark (the next instant that may be claimed),
/// and which are due.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Creates or replaces a job through the API, paused as `spec.paused` says. `next_ms` is the
    /// first instant to fire (None when paused or never).
    async fn put_job(&self, spec: &JobSpec, next_ms: Option<i64>, now_ms: i64) -> Result<WatermarkWrite> {
        self.write_job(&JobWrite {
            spec,
            paused: Some(spec.paused),
            next_ms,
            writer: Writer::Api,
            applied: None,
            expect_rev: None,
            now_ms,
        })
        .await
    }
    /// Creates or replaces a job's definition in one atomic step: the pause state set or kept,
    /// the watermark never moved back (`Behind`), and with `expect_rev`, only over that revision
    /// (`Conflict`), so nodes applying the same jobs file at once do not fight: one writes.
    /// Refused (`no_calendar`, nothing written) when a calendar it names is not in its shard or is
    /// being deleted.
    async fn write_job(&self, w: &JobWrite<'_>) -> Result<WatermarkWrite>;
    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>>;
    /// Jobs ordered by id, starting strictly after `after_id`.
    async fn list_jobs(&self, after_id: Option<&str>, limit: usize) -> Result<Vec<JobRecord>>;
    /// True if the job existed.
    async fn delete_job(&self, id: &str) -> Result<bool>;
    /// Pauses (next_ms ignored; `note` kept with the pause, and its `until` indexed for
    /// `resumable`) or resumes from `next_ms` (the note and its index entry go). None when the job
    /// does not exist.
    async fn set_paused(
        &self,
        id: &str,
        paused: bool,
        next_ms: Option<i64>,
        now_ms: i64,
        note: Option<&PauseNote>,
    ) -> Result<Option<WatermarkWrite>>;
    /// Paused jobs whose pause's `until` is at or before `now_ms` (at most `limit`): the master
    /// resumes them.
    async fn resumable(&self, now_ms: i64, limit: usize) -> Result<Vec<String>>;
    /// A scheduled fire's final outcome, for `pause_after_failures`: a failed one raises the job's
    /// streak of failed fires, a succeeded one clears it (so does a put or a resume that leaves the
    /// job unpaused). The streak after it; None when the job is gone.
    async fn fire_outcome(&self, job_id: &str, failed: bool) -> Result<Option<u64>>;
    /// `after_previous` jobs waiting for a fire's end (the chain index): (job id, that fire's
    /// instant), oldest first, at most `limit`. The master's sweep calls `chain_next` on them, for
    /// a fire whose ender did not (it died, or lost the reply).
    async fn chained(&self, limit: usize) -> Result<Vec<(String, i64)>>;
    /// For each (job id, fire instant) of a job waiting on that fire: once the fire has ended, the
    /// job's next fire is its end (the record's; `now_ms` for a fire whose hash is gone) plus the
    /// job's delay, unless past its end_time or paused, in one step that checks the job still
    /// waits on that very fire. One outcome each, in order.
    async fn chain_next(&self, waits: &[(String, i64)], now_ms: i64) -> Result<Vec<Chained>>;
    /// Unpaused jobs whose watermark is at or before `now_ms`, oldest first.
    async fn due_jobs(&self, now_ms: i64, limit: usize) -> Result<Due>;
    /// The earliest watermark of any unpaused job.
    async fn next_due_ms(&self) -> Result<Option<i64>>;
}

/// Fires, from claim to outcome: each hand-off (claim or trigger, accept or enqueue, take or steal,
/// start, finish) is one compare-and-set of the fire's `FireState`. A node's fires are those queued
/// for it and those it has taken (`NodeFires`); what a dead node (or an earlier incarnation) left
/// there is reaped, and the dead attempts a reap decided about are kept until closed.
#[async_trait]
pub trait FireStore: Send + Sync {
    /// Claims fires atomically, each independently; one outcome per claim, in order. `fence` is the
    /// caller's lease: when it is no longer the stored lease, nothing is claimed and the answer is
    /// `Error::Fenced`.
    async fn claim(&self, fence: &Fence, claims: &[Claim]) -> Result<Vec<ClaimOutcome>>;
    /// Makes a manual fire of `exec.job_id` (in `dispatching`, like a claimed fire), deduplicated
    /// by `idempotency_key` when given. With `exec.manual` false, the fire of a scheduled instant
    /// (BackfillJob: its id is the instant's), made only if no fire of that id was made before
    /// (`TriggerOutcome::AlreadyFired`).
    /// `args`: the fire's own arguments (TriggerJob's, resolved), kept with the fire and returned by
    /// every take and start of it (`StartedFire::args`); the same key with other `args` is
    /// `TriggerOutcome::Conflict`. `priority`: the job's (`Claim::priority`).
    async fn trigger(
        &self,
        exec: &Execution,
        idempotency_key: Option<&str>,
        overlap: Concurrency,
        lock_ttl_ms: u64,
        own: &FireOwn,
        priority: Priority,
    ) -> Result<TriggerOutcome>;
    /// `node` takes a dispatching fire (compare-and-set) and starts it in the same step
    /// (`Accept::Started`), unless its job is master-only (`Accept::Accepted`: start.lua checks the
    /// stored lease at its instant). `epoch` None skips the epoch check (a node accepting its own
    /// manual fire).
    async fn accept(&self, fire_id: &str, epoch: Option<u64>, node: &str, incarnation: &str) -> Result<Accept> {
        let mut r = self.accept_many(&[fire_id.to_string()], epoch, node, incarnation, true).await?;
        r.pop().ok_or_else(|| Error::unavailable("accept: no result"))
    }
    /// `accept` for several fires in one step (a batch from SubmitTasks); one result per fire.
    /// `start` false: every fire is taken only, as a master-only job's is (`Accept::Accepted`),
    /// for `start`.
    async fn accept_many(
        &self,
        fire_ids: &[String],
        epoch: Option<u64>,
        node: &str,
        incarnation: &str,
        start: bool,
    ) -> Result<Vec<Accept>>;
    /// `accept` that takes the fire only (`accept_many`'s `start` false).
    async fn take_only(&self, fire_id: &str, epoch: Option<u64>, node: &str, incarnation: &str) -> Result<Accept> {
        let mut r = self.accept_many(&[fire_id.to_string()], epoch, node, incarnation, false).await?;
        r.pop().ok_or_else(|| Error::unavailable("accept: no result"))
    }
    /// Master only (fenced): queues a dispatching fire for `target` (its durable queue).
    async fn enqueue(&self, fence: &Fence, fire_id: &str, target: &str) -> Result<Enqueue>;
    /// `node` takes the oldest fire queued for it at the first level of `order` that holds one
    /// (section 3.22: the caller's fairness between levels), into its processing list; None when
    /// its queue is empty.
    async fn take_queued(&self, node: &str, order: [Priority; 3]) -> Result<Option<Taken>>;
    /// Waits up to `wait` for a push into `node`'s queue (its doorbell), returning at once when one
    /// came since a take last found the queue empty. A wait holds none of the node's workers: the
    /// caller takes a worker, then the entry.
    async fn wait_queued(&self, node: &str, wait: std::time::Duration) -> Result<()>;
    /// The levels of `node`'s queue that hold entries, highest first (for the place its drain
    /// takes in the workers' lines before it takes).
    async fn queue_levels(&self, node: &str) -> Result<Vec<Priority>>;
    /// Takes the oldest fire queued for `victim` at its highest waiting level as `node`'s
    /// (accepted), if any.
    async fn steal(&self, victim: &str, node: &str, incarnation: &str) -> Result<Option<String>>;
    /// Sets aside an entry among `node`'s taken fires that cannot be a fire id (see
    /// `queue_entry_problem`): out of them, into the dead-letter list with the reason.
    async fn dead_letter(&self, node: &str, entry: &str, reason: &str) -> Result<()>;
    /// Starts a fire `node` has taken (compare-and-set to running) and records the attempt
    /// `running`, in one step. `master_only`: what to do if its job is master-only.
    async fn start(
        &self,
        fire_id: &str,
        node: &str,
        incarnation: &str,
        fresh_exec_id: &str,
        master_only: MasterOnly,
    ) -> Result<Start>;
    /// Before a retry: records the new attempt's execution on the fire and returns the attempt
    /// number, or None when this incarnation no longer owns the running fire (it was reaped).
    async fn retry_attempt(&self, fire_id: &str, node: &str, incarnation: &str, exec_id: &str) -> Result<Option<u32>>;
    /// Extends the job's no-overlap lock while `owner` (a fire id) holds it. False when it does not.
    async fn renew_lock(&self, job_id: &str, owner: &str, ttl_ms: u64) -> Result<bool>;
    /// Records the final outcome of a running fire and acks it: no longer among its node's taken
    /// fires (see `Finish`).
    /// Then trims the job's history to `keep`. `forbid`: the caller's definition of the job is
    /// exclusive (any policy but allow), so the fire may hold the job's lock (the store also knows
    /// it from the claim; this covers a fire claimed by an older version). A lock let go passes to
    /// the oldest fire held for it, which goes into `node`'s queue (PROTOCOL §3.20).
    async fn finish(&self, exec: &Execution, node: &str, incarnation: &str, keep: Keep, forbid: bool)
        -> Result<Finish>;
    /// The fires queued for `node`, and those it has taken.
    async fn node_fires(&self, node: &str) -> Result<(Vec<String>, Vec<String>)>;
    /// How many fires are queued for each given node.
    async fn queue_lengths(&self, nodes: &[String]) -> Result<Vec<usize>>;
    /// Resolves one of a dead node's fires (or one this node's earlier incarnations left, or one it
    /// hands over): see `ReapBy`.
    async fn reap(&self, r: &ReapRequest) -> Result<Reap>;
    /// Fires of the watch set due for a look: still `dispatching` past their dispatch deadline (their
    /// master died mid-dispatch), or handed over and not started by `FireTiming::watch_ms` (Redis
    /// store; `enqueue` sorts out which).
    async fn stuck_dispatching(&self, now_ms: i64, limit: usize) -> Result<Vec<String>>;
    /// Dead attempts reaps decided about and nobody has closed yet (see `Closing`).
    async fn closings(&self) -> Result<Vec<Closing>>;
    /// The caller closed this dead attempt.
    async fn closed(&self, exec_id: &str) -> Result<()>;
    /// CancelExecution (PROTOCOL §3.19): `exec` is the execution as it would end cancelled (its
    /// `error` says who asked and why, `end_ms` when). Only the fire's current execution, not yet
    /// ended, is cancelled: a fire not yet begun ends `cancelled` here; a running one gets a stop
    /// request for its node (`take_stops`). `retry`: `exec` ended and announced a retry, which is
    /// what is cancelled, only while its node holds the fire in the retry's backoff (`Running`).
    async fn cancel(&self, exec: &Execution, retry: bool) -> Result<Cancel>;
    /// The stop requests left for `node` (`cancel`), taken: each is handed out once.
    async fn take_stops(&self, node: &str) -> Result<Vec<StopRequest>>;
    /// Master only (fenced): hands the free locks of jobs with held fires to their oldest held
    /// fire, `dispatching` and due for `stuck_dispatching` (a lock whose holder's node died
    /// expired; PROTOCOL §3.20). The fires handed a lock.
    async fn promote_held(&self, fence: &Fence, lock_ttl_ms: u64) -> Result<Vec<String>>;
    /// How many fires wait for job `job_id`'s lock (a `replace` fire about to begin was replaced
    /// meanwhile when one does).
    async fn held_count(&self, job_id: &str) -> Result<usize>;
}

/// Concurrency limits (PROTOCOL §3.21): their definitions and their slots, one set for the whole
/// cluster (every shard's store reaches the same keys). A slot is a lease its holder (a fire id)
/// renews while it runs, so a dead node's slots free themselves.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Creates or replaces a limit (at most `job::limit::MAX_LIMITS` of them).
    async fn put_limit(&self, limit: &Limit) -> Result<()>;
    /// Every limit with how many of its slots are held now (live leases), in name order.
    async fn list_limits(&self) -> Result<Vec<(Limit, u32)>>;
    /// True if it existed. Its slots go with it.
    async fn delete_limit(&self, name: &str) -> Result<bool>;
    /// Takes a slot of each of `limits` for `holder`, all or none, each under a lease of
    /// `lease_ms`. A limit deleted meanwhile limits nothing; one the holder holds already counts as
    /// taken (a repeat whose reply was lost).
    async fn take_slots(&self, limits: &[String], holder: &str, lease_ms: u64) -> Result<Slots>;
    /// Extends `holder`'s slots; the limits whose slot it no longer holds (its lease ran out).
    async fn renew_slots(&self, limits: &[String], holder: &str, lease_ms: u64) -> Result<Vec<String>>;
    async fn release_slots(&self, limits: &[String], holder: &str) -> Result<()>;
}

/// Calendars (`job::calendar`), one shard's copy: every shard keeps every calendar, so a job's
/// put checks the calendars it names, and its scheduler reads them, in its own shard
/// (`Shards::put_calendar`, `Shards::delete_calendar` write them all; PROTOCOL §3.24).
#[async_trait]
pub trait CalendarStore: Send + Sync {
    /// Creates or replaces a calendar (at most `calendar::MAX_CALENDARS`); a delete of it left
    /// half done ends: jobs may name it again.
    async fn put_calendar(&self, def: &CalendarDef) -> Result<()>;
    /// Every calendar, in name order (one that no longer decodes or checks is left out, logged).
    async fn list_calendars(&self) -> Result<Vec<CalendarDef>>;
    /// The calendars named that this shard has, checked and ready (`Calendars::resolve`).
    async fn calendars(&self, names: &[String]) -> Result<HashMap<String, Arc<Calendar>>>;
    /// A delete's first step: from now no job is put naming the calendar (`write_job` refuses),
    /// until `drop_calendar` or `put_calendar`. False when the shard has no such calendar.
    async fn mark_calendar_deleted(&self, name: &str) -> Result<bool>;
    /// Undoes `mark_calendar_deleted` (the delete was refused: jobs name it).
    async fn unmark_calendar_deleted(&self, name: &str) -> Result<()>;
    /// Removes the calendar and its mark, only while it is marked (a put since the mark keeps
    /// it: true when removed).
    async fn drop_calendar(&self, name: &str) -> Result<bool>;
}

/// Why `JobStore::write_job` refused a job naming calendar `name` (its index in the spec's list).
pub fn no_calendar(spec: &JobSpec, name: &str, deleting: bool) -> Error {
    let i = spec.calendars.iter().position(|n| n == name).unwrap_or(0);
    let why = if deleting {
        format!("calendar '{name}' is being deleted (put it again to keep it)")
    } else {
        format!("no calendar '{name}' (put it first: PutCalendar, rota calendar put)")
    };
    Error::invalid(format!("calendars[{i}]"), why)
}

/// What `LimitStore::take_slots` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slots {
    Taken,
    /// Nothing taken: `limit` has `running` of its `max` slots held.
    Full {
        limit: String,
        running: u32,
        max: u32,
    },
}

/// What `FireStore::cancel` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// It had not begun: it is recorded `cancelled` now, and will not run.
    Cancelled,
    /// It runs (or was taken and begins at its instant) on `node`: a stop request waits for it.
    Running { node: String },
    /// Nothing changed: it ended (the fire's state), or another execution is the fire's current one.
    NotOpen(String),
    /// No such fire.
    Unknown,
}

/// A request to stop a running execution, left for its node (`FireStore::take_stops`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StopRequest {
    pub fire: String,
    pub exec: String,
    /// The record's error when it ends: who asked, and why.
    pub why: String,
}

/// How long a node's stop list is kept after its last request (a node that never takes it, dead or
/// gone, does not keep it forever).
pub const STOPS_TTL_MS: u64 = 3_600_000;

/// Execution records (one per attempt), their listing, and the stream of their changes.
#[async_trait]
pub trait ExecStore: Send + Sync {
    /// Writes a new execution record (a retry attempt). False, and nothing written, when a record
    /// with this id is already final: the fire's owner was declared dead during the retry's backoff
    /// and the reaper recorded the attempt `lost`, which must stay (the caller must not run it).
    async fn create_execution(&self, exec: &Execution) -> Result<bool>;
    /// Overwrites an open (pending or running) execution record and announces the change to
    /// watchers. False, and nothing written, when the record is already terminal: the fire was
    /// recovered elsewhere (e.g. recorded lost by the reaper while this node was paused), and the
    /// caller must not run it.
    async fn update_execution(&self, exec: &Execution) -> Result<bool>;
    /// Records a terminal (or retry-waiting) execution and, when `release_lock` names the job,
    /// releases its no-overlap lock if this fire still owns it: one atomic step.
    async fn finish_execution(&self, exec: &Execution, release_lock: bool) -> Result<()>;
    async fn get_execution(&self, id: &str) -> Result<Option<Execution>>;
    /// Newest first. The second value is the id to pass as `before` for the next page.
    async fn list_executions(&self, filter: &ExecFilter) -> Result<(Vec<Execution>, Option<String>)>;
    /// Every execution change made through any node sharing this store, from now on.
    async fn subscribe(&self) -> broadcast::Receiver<Execution>;
    /// Drops index entries of executions past retention.
    async fn prune(&self, now_ms: i64) -> Result<u64>;
    /// Deletes the one-shot jobs (`at`) that completed longer ago than the execution retention,
    /// unless kept (`keep_completed`), at most `limit`: their ids.
    async fn expire_completed(&self, now_ms: i64, limit: usize) -> Result<Vec<String>>;
}

/// The cluster: the store's own health and clock, the master lease, and node membership.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Checks the backend answers.
    async fn ping(&self) -> Result<()>;
    /// The store's own clock in µs since the Unix epoch (Redis `TIME`), which the cluster clock
    /// corrects every node's wall clock to; None when the store has no clock apart from this
    /// process's (in-memory).
    async fn clock_us(&self) -> Result<Option<i64>>;
    /// How long the store has been up (None: it never restarts under a running node, as the
    /// in-memory store). Keys expire by the store's wall clock, which runs on while it is down: a
    /// node is judged dead only on time the cluster could observe.
    async fn uptime_ms(&self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Fails when the store would refuse a new write now (Redis over `maxmemory` with `noeviction`
    /// answers reads, and even scripts whose first write is not one that allocates, such as the
    /// heartbeat's PEXPIRE, but refuses claims): readiness. The in-memory store always can.
    async fn probe_write(&self, _node_id: &str) -> Result<()> {
        Ok(())
    }

    /// Takes the master lease if free, with an epoch above `floor`, above every epoch issued before
    /// and above the store's clock in ms (so it stays monotonic even if the store lost its data).
    async fn acquire_lease(&self, node_id: &str, incarnation: &str, ttl_ms: u64, floor: u64) -> Result<LeaseAcquire>;
    /// Extends the lease while `fence` still holds it.
    async fn renew_lease(&self, fence: &Fence, ttl_ms: u64) -> Result<bool>;
    /// Gives the lease up at once if `fence` holds it.
    async fn release_lease(&self, fence: &Fence) -> Result<bool>;
    /// The current holder, if any.
    async fn lease(&self) -> Result<Option<Fence>>;
    /// True while the lease has a holder whose incarnation is still live (its heartbeat key, judged
    /// by the store's clock, not by comparing wall clocks): a master exists. The in-memory store
    /// lives in the one process that holds its lease.
    async fn lease_holder_live(&self) -> Result<bool> {
        Ok(self.lease().await?.is_some())
    }

    /// Registers an incarnation of `node` (refused while another live incarnation holds the id,
    /// unless it is `replacing`: this process's own previous incarnation, revoked in another shard
    /// and still live in this one).
    async fn register(&self, node: &NodeRecord, ttl_ms: u64, replacing: Option<&str>) -> Result<Register>;
    /// Extends a live incarnation and publishes the node's record.
    async fn beat(&self, node: &NodeRecord, ttl_ms: u64) -> Result<Beat>;
    /// Extends `node`'s heartbeat by `ttl_ms` only while it still holds `incarnation` (an expired or
    /// replaced one is never taken back): whether it did. A node's proof, before it begins a
    /// handler, that no one has recovered what it started (`keep_alive.lua`).
    async fn keep_alive(&self, node: &str, incarnation: &str, ttl_ms: u64) -> Result<bool>;
    /// Removes a node's registration at once (graceful shutdown, after it holds no fires).
    async fn deregister(&self, node: &NodeRecord) -> Result<()>;
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>>;
    /// Node ids whose incarnation is not live (heartbeat expired) but which are still registered.
    async fn dead_nodes(&self) -> Result<Vec<String>>;
}

/// Timing written into fire records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FireTiming {
    /// A fire not started this long after its scheduled instant is a misfire.
    pub misfire_threshold_ms: u64,
    /// A fire left in `dispatching` this long (its master died mid-dispatch) is swept to a queue.
    pub dispatch_deadline_ms: u64,
}

/// TTL of an exclusive job's lock while it runs; renewed every third of it, so a dead node's lock
/// frees itself within this time.
pub const LOCK_TTL_MS: u64 = 30_000;

/// An exclusive job's (any overlap policy but allow) lock must outlive the longest wait before the run starts (the misfire threshold,
/// the start deadline) with room to spare; the running worker renews it from its first moment.
pub fn lock_ttl_ms(misfire_threshold_ms: i64) -> u64 {
    misfire_threshold_ms.max(0) as u64 + LOCK_TTL_MS
}

/// Fires are claimed, routed and accepted by their node this long before they are due; the node
/// starts each on its instant (as Quartz's fire-ahead window does). Claiming and routing 1,000 fires
/// due at the same instant took ~150 ms, all of it lateness when done at the instant; ahead of it,
/// only the start remains. The cost: a job paused or changed within this window of an instant
/// still fires at that instant. A `forbid` job's fire is claimed at its instant, not ahead: the
/// claim takes its no-overlap lock, and a run ending in the window before the instant would
/// otherwise make the next fire `skipped` rather than run.
pub const FIRE_AHEAD_MS: i64 = 300;

/// How long before its instant a worker starts a fire it holds (marks it `running` in the store,
/// `start.lua`): the start's round trip, batched with the other fires of that instant, is then
/// off the instant, and the handler begins when the local (cluster-corrected) clock reaches it.
/// The price: a node that dies in that window leaves a fire that never began `running`, and the
/// job's recovery policy applies to it as to any running fire (docs/PROTOCOL.md, section 6.1).
pub const START_LEAD_MS: i64 = 100;

/// The start time a start records: a fire started ahead of its instant (`START_LEAD_MS`) begins at
/// its instant; one started late, when it is started.
pub fn started_at(now_ms: i64, sched_ms: i64) -> i64 {
    now_ms.max(sched_ms)
}

impl FireTiming {
    /// How long after a fire is handed to a node (accepted or queued) the master's sweep looks at it
    /// again: by then it has started, or been recorded misfired when taken. One still waiting in its
    /// owner's list is left there; one in no list at all (an orphan: a half-done write, a list deleted
    /// by hand) is queued again, so it runs or is recorded rather than wait forever.
    pub fn watch_ms(&self) -> u64 {
        self.misfire_threshold_ms + self.dispatch_deadline_ms
    }
}

impl Default for FireTiming {
    fn default() -> Self {
        FireTiming { misfire_threshold_ms: 60_000, dispatch_deadline_ms: 2_000 }
    }
}

/// How many change events a slow watcher may lag behind before it misses some (it is told).
pub const WATCH_BUFFER: usize = 4096;

/// The longest queue entry taken as a fire id; fire ids are `<job id (128)>@<instant>` or
/// `<job id>@m:<uuid>`, far shorter.
pub const MAX_QUEUE_ENTRY_BYTES: usize = 512;

/// Why a queue entry cannot be a fire id, or None when it has a fire id's shape: `<job>@<ms>` or
/// `<job>@m:<token>`. Queue entries carry no version: anything else (e.g. a JSON object from a newer
/// or foreign writer) is malformed and set aside by the caller.
pub fn queue_entry_problem(entry: &str) -> Option<String> {
    if entry.len() > MAX_QUEUE_ENTRY_BYTES {
        return Some(format!("oversized entry: {} bytes (at most {MAX_QUEUE_ENTRY_BYTES})", entry.len()));
    }
    crate::execution::FireId::parse(entry).err().map(|e| format!("malformed entry: {e}"))
}

/// Wall clock in UTC ms, corrected to the cluster clock (Redis's; see `cluster::clock`): stamps
/// records, computes cron instants, decides when fires are due (never used for safety).
pub use crate::clock::now_ms;

#[cfg(test)]
mod tests {
    use super::Fence;

    #[test]
    fn a_fence_displays_as_the_lease_value_it_was_read_from() {
        let f = Fence::parse("n1:1767225600001:0f3c9a2e").expect("a lease value");
        assert_eq!((f.node_id.as_str(), f.epoch, f.incarnation.as_str()), ("n1", 1_767_225_600_001, "0f3c9a2e"));
        assert_eq!(f.to_string(), "n1:1767225600001:0f3c9a2e");
        // Only the first two ':' separate: the rest is the incarnation's.
        assert_eq!(Fence::parse("n:2:a:b").map(|f| f.to_string()).as_deref(), Some("n:2:a:b"));
        for bad in ["", "n1", "n1:5", "n1:x:i", "n1:-1:i"] {
            assert_eq!(Fence::parse(bad), None, "{bad:?}");
        }
    }
}
