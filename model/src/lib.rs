//! A model of rota's fire protocol as built (`docs/PROTOCOL.md`, section 11), checked with
//! stateright: every interleaving of the cluster's steps, node crashes and pauses, lost replies and
//! reordered requests, and Redis restarts, up to a bound, against the protocol's invariants.
//!
//! Each store step is one model action that does what its Lua script does (`src/store/lua/*.lua`),
//! atomically, as Redis runs a script. Node steps follow `worker`, `dispatch`, `recovery` and
//! `cluster`. Time is not a number here: a timer expires by an action that is enabled only when the
//! code's timing argument allows it (a lease expires only when its holder is crashed, paused or no
//! longer renewing; a heartbeat key only when its node is crashed, paused or revoked; a forbid lock
//! only when nobody renews it and its fire is over). What is left out is listed in the docs.
//!
//! Layout: [`Config`] (the cluster, the jobs, the fault budget, the timing assumptions and the
//! planted bugs), [`State`] (Redis, the nodes' processes, the network, and ghost history that the
//! properties read and that no restart rolls back), [`Action`], and the [`Model`] impl in `step.rs`.

use stateright::{Model, Property};

mod step;

pub use step::Action;

/// Most nodes, jobs and fires a state can hold (fixed-size arrays keep states cheap to copy and hash).
pub const MAX_NODES: usize = 3;
pub const MAX_JOBS: usize = 3;
pub const MAX_FIRES: usize = 12;
/// Scheduling shards. Rota has one lease per cluster today (shard 0); the lease, the epoch counter
/// and each node's role are kept per shard so that per-shard leases can be added by raising this and
/// giving `shard_of` a real hash.
pub const SHARDS: usize = 1;

/// What happens to a fire whose node died while running it (`job::Recovery`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Recovery {
    Lost,
    Rerun,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobSpec {
    pub recovery: Recovery,
    /// `concurrency = forbid`: the no-overlap lock, taken at claim.
    pub forbid: bool,
    pub master_only: bool,
    /// Scheduled instants modelled (fires `j@0`, `j@1`, ...).
    pub instants: u8,
}

/// The kinds of fault a behaviour may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kinds {
    pub crash: bool,
    pub pause: bool,
    pub redis_restart: bool,
    /// Lost replies, SubmitTask timeouts and lost requests.
    pub messages: bool,
}

impl Kinds {
    pub const ALL: Kinds = Kinds { crash: true, pause: true, redis_restart: true, messages: true };
}

/// Redis persistence, for what a restart keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aof {
    /// `appendfsync always`: no acknowledged write is lost. A restart loses replies in flight (as
    /// any lost reply) and time (keys with a TTL may expire: a short restart keeps them, a long one
    /// outlives the lease and node TTLs but not the forbid lock's).
    Always,
    /// `appendfsync everysec`: a restart returns every key to the last fsync (an `Fsync` action),
    /// losing committed writes after it, whose effects outside Redis (a handler that ran) stay.
    EverySec,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub nodes: u8,
    pub jobs: Vec<JobSpec>,
    /// Budget of faults in one behaviour: crash, pause, Redis restart, a lost reply, a SubmitTask
    /// timing out while its target is up, a reply lost on acquiring the lease.
    pub faults: u8,
    /// Which faults the budget may be spent on.
    pub kinds: Kinds,
    /// `max_recoveries`: re-runs of one fire after node deaths.
    pub max_recoveries: u8,
    pub aof: Aof,
    /// Planted bug when false: `claim.lua` without its lease check (`FENCED`).
    pub claim_fence: bool,
    /// Planted bug when true: `start.lua` answers `RESUME` to any incarnation of the node that ran
    /// the fire, not only the one that started it.
    pub resume_any_incarnation: bool,
    /// Planted regression when true: `hand_back` as it was before the model found it wrong
    /// (`docs/PROTOCOL.md` 11.6): a hand-over refused because this node's heartbeat key is not its
    /// own (`FENCED`: it expired during a pause) was taken for "recovered elsewhere" and the fire
    /// recorded `superseded`, and a hand-over whose reply was lost was taken for "no other master"
    /// and the handler ran here. As built (false): both leave the fire to the rescan or the reaper.
    pub old_hand_back: bool,
    /// Timing assumption. False: the worker's last checks before a handler (the forbid lock renewal,
    /// the mastership check) and the handler call are one step. True: a pause can fall between them
    /// (the gap PROTOCOL.md section 10 names for master-only jobs).
    pub pause_before_handler: bool,
    /// Timing assumption. False: a pause is shorter than the forbid lock's TTL (30 s), so a paused
    /// node's lock outlives the pause. True: a pause may outlast it.
    pub pause_outlasts_lock: bool,
    /// Timing assumption. False: when a node must hand a master-only fire to the master, a master
    /// appears within `MASTER_WAIT` (10 s). True: the wait may run out with no master, and the
    /// worker then goes on as the last master (`HandBack::NoOtherMaster`).
    pub master_wait_times_out: bool,
}

impl Config {
    /// The protocol as built, CI-sized: two nodes; a master-only job re-run on recovery (one
    /// instant) and a forbid job recorded lost (two instants; the chaos runner's choice: forbid with
    /// re-run may overlap, a known gap); two faults; `appendfsync always`. The tests narrow it.
    pub fn ci() -> Config {
        Config {
            nodes: 2,
            jobs: vec![
                JobSpec { recovery: Recovery::Rerun, forbid: false, master_only: true, instants: 1 },
                JobSpec { recovery: Recovery::Lost, forbid: true, master_only: false, instants: 2 },
            ],
            faults: 2,
            kinds: Kinds::ALL,
            max_recoveries: 2,
            aof: Aof::Always,
            claim_fence: true,
            resume_any_incarnation: false,
            old_hand_back: false,
            pause_before_handler: false,
            pause_outlasts_lock: false,
            master_wait_times_out: false,
        }
    }

    pub fn fires(&self) -> usize {
        self.jobs.iter().map(|j| j.instants as usize).sum()
    }
    pub fn job_of(&self, f: u8) -> usize {
        let mut first = 0;
        for (j, spec) in self.jobs.iter().enumerate() {
            if f < first + spec.instants {
                return j;
            }
            first += spec.instants;
        }
        unreachable!("fire {f} out of range")
    }
    /// The fire's instant (its index among its job's fires).
    pub fn instant_of(&self, f: u8) -> u8 {
        f - self.fire(self.job_of(f), 0)
    }
    pub fn spec_of(&self, f: u8) -> JobSpec {
        self.jobs[self.job_of(f)]
    }
    pub fn fire(&self, job: usize, k: u8) -> u8 {
        self.jobs[..job].iter().map(|j| j.instants).sum::<u8>() + k
    }
    /// The job's shard: all jobs are on shard 0 today (one lease per cluster).
    pub fn shard_of(&self, _job: usize) -> usize {
        0
    }
    pub fn shard_of_fire(&self, f: u8) -> usize {
        self.shard_of(self.job_of(f))
    }

    pub fn validate(&self) {
        assert!(self.nodes >= 1 && self.nodes as usize <= MAX_NODES);
        assert!(!self.jobs.is_empty() && self.jobs.len() <= MAX_JOBS);
        assert!(self.jobs.iter().all(|j| j.instants >= 1) && self.fires() <= MAX_FIRES);
    }
}

/// How long a pause lasts, against the timers it outlives: what expires is decided when the pause
/// begins (the lease TTL, 2 s, is shorter than the node TTL, 3 s, which is shorter than the forbid
/// lock's, 30 s). Nothing another node does before the expiry depends on the paused node's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PauseLen {
    Short,
    /// Past the lease TTL: a lease it holds expires (its local deadline passed before).
    PastLease,
    /// Past the node TTL too: its heartbeat key expires.
    PastNode,
    /// Past the forbid lock's TTL too (only with `pause_outlasts_lock`): locks it renews may expire.
    PastLock,
}

/// A lease value `<node>:<epoch>:<incarnation>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lease {
    pub node: u8,
    pub epoch: u8,
    pub inc: u8,
}

/// The fire hash's `state` (`docs/PROTOCOL.md` 4.1; `misfired` is not modelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FState {
    Dispatching,
    Accepted,
    Queued,
    Running,
    Succeeded,
    Skipped,
    Lost,
    /// What `finish.lua` writes when a worker that still owns the fire records a run it did not
    /// make as `superseded` (the state is the worker's, see `HandBack::RecoveredElsewhere`).
    Superseded,
}

impl FState {
    pub fn is_final(self) -> bool {
        matches!(self, FState::Succeeded | FState::Skipped | FState::Lost | FState::Superseded)
    }
}

/// The fire hash `T:fire:<job>@<instant>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fire {
    pub state: FState,
    pub node: Option<u8>,
    pub inc: Option<u8>,
    /// The claiming master's epoch.
    pub epoch: u8,
    /// Stands for `exec`: each start makes a new attempt.
    pub attempts: u8,
    pub recoveries: u8,
}

/// The keys the protocol reads and writes. Lists are sets of fires (bit `f`); the order of a queue
/// only chooses which entry a pop or a steal takes, and here any entry may be taken. A push of an
/// entry already there is flagged (`Ghost::bad`, `DUP_ENTRY`), so a set is never silently too small.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Redis {
    /// `T:lease` per shard.
    pub lease: [Option<Lease>; SHARDS],
    /// `T:epoch` per shard.
    pub epoch: [u8; SHARDS],
    /// The job's watermark `next_ms` (an instant index; None past the last modelled instant).
    pub next: [Option<u8>; MAX_JOBS],
    pub fires: [Option<Fire>; MAX_FIRES],
    /// `T:lock:<job>`: the owning fire.
    pub lock: [Option<u8>; MAX_JOBS],
    /// `T:hb:<node>`: the live incarnation.
    pub hb: [Option<u8>; MAX_NODES],
    /// `T:gone:<node>`: buried incarnations (bit per incarnation).
    pub gone: [u16; MAX_NODES],
    /// `T:q:<node>` and `T:p:<node>`.
    pub q: [u16; MAX_NODES],
    pub p: [u16; MAX_NODES],
    /// `T:inflight` (scores abstracted: the sweep may look at an entry at any time).
    pub inflight: u16,
    /// Redis has been up for a node TTL (`Membership::may_judge_liveness`): the master may reap.
    pub uptime_ok: bool,
}

/// A node's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub up: bool,
    /// Paused (stopped, or cut off from everything), and for how long the pause lasts.
    pub paused: Option<PauseLen>,
    /// False after `REVOKED` until the new incarnation is registered.
    pub registered: bool,
    pub inc: u8,
    /// The lease this process believes it holds (`Role::Master`), per shard.
    pub role: [Option<Lease>; SHARDS],
    /// A claim planned (due jobs read, mastership checked) and not yet sent: what a pause or a slow
    /// network turns into a stale master's claim.
    pub intent: Option<Intent>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Intent {
    pub job: u8,
    pub k: u8,
    pub lease: Lease,
}

/// Where a worker task is (`Worker::spawn_fire`, `execute`, `run_fire`, `run_attempt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// `Taking::Accept`: the master's own fire, `accept.lua` with its epoch.
    Accept { epoch: u8 },
    /// `start.lua` (`as_master`: asked as a stand-in master, not-master flag off).
    Start { as_master: bool },
    /// `start.lua` answered `MASTER_ONLY`: `hand_to_master`.
    MasterOnly,
    /// Started: the checks before the handler (`stand_in` for `execute`'s stand-in case).
    Check { stand_in: bool },
    /// `hand_back`: hand the started fire to the master.
    HandBack,
    /// Checks passed, handler not yet called (only with `pause_before_handler`).
    Ready,
    /// The handler is running.
    Run,
    /// `finish.lua` with this outcome, asked until Redis answers.
    Finish(FState),
}

/// One task of a node's process holding one fire (`Worker::hold`: at most one per fire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Task {
    pub node: u8,
    pub fire: u8,
    /// The incarnation the task runs under (read when it began).
    pub inc: u8,
    pub attempt: u8,
    pub phase: Phase,
}

/// A SubmitTask(s) request on the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Delivery {
    pub fire: u8,
    pub from: u8,
    pub to: u8,
    pub lease: Lease,
    /// The sender still waits for the reply (it falls back to `enqueue` on a refusal or timeout).
    pub waiting: bool,
}

/// A fallback `enqueue_somewhere` the master's dispatch task is about to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Enq {
    pub node: u8,
    pub fire: u8,
    pub target: u8,
    pub lease: Lease,
}

pub const BAD_EPOCH: u8 = 1;
pub const BAD_MASTER_ONLY: u8 = 2;
pub const BAD_OVERLAP: u8 = 4;
pub const BAD_DUP_ENTRY: u8 = 8;

pub const SEEN_FENCED_CLAIM: u8 = 1;
pub const SEEN_STEAL: u8 = 2;
pub const SEEN_HANDED: u8 = 4;

/// History no restart rolls back: what ran, where, under which epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ghost {
    pub faults: u8,
    /// Highest epoch ever issued (Redis's clock in ms is above it after a restart: epochs are ms).
    pub max_epoch: u8,
    /// Highest epoch a claim committed under, per shard.
    pub claim_epoch: [u8; SHARDS],
    /// Handler calls per fire (saturating).
    pub runs: [u8; MAX_FIRES],
    /// Nodes whose handler for the fire is running now (bit per node).
    pub active: [u8; MAX_FIRES],
    pub bad: u8,
    pub seen: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub redis: Redis,
    /// `Aof::EverySec`: Redis as of the last fsync.
    pub synced: Option<Redis>,
    pub nodes: [Node; MAX_NODES],
    /// Sorted; at most one per (node, fire).
    pub tasks: Vec<Task>,
    pub net: Vec<Delivery>,
    pub enq: Vec<Enq>,
    pub ghost: Ghost,
}

/// The model: a configuration.
#[derive(Clone, Debug)]
pub struct ProtocolModel {
    pub cfg: Config,
}

impl ProtocolModel {
    pub fn new(cfg: Config) -> ProtocolModel {
        cfg.validate();
        ProtocolModel { cfg }
    }

    /// Whether fire `f` is done, or can still be brought to an end by the protocol's own steps
    /// (a sweep, a reap, a rescan, its task) once the faults stop and a master is elected.
    pub fn recoverable(&self, s: &State, f: u8) -> bool {
        let spec = self.cfg.spec_of(f);
        let bit = 1u16 << f;
        let Some(fire) = s.redis.fires[f as usize] else {
            // Not claimed (or the claim was rolled back with the watermark): still claimable.
            let k = self.cfg.instant_of(f);
            return s.redis.next[self.cfg.job_of(f)].is_some_and(|n| n <= k);
        };
        match fire.state {
            FState::Succeeded | FState::Skipped => true,
            // Lost by policy: recovery 'lost', or the re-runs used up.
            FState::Lost => spec.recovery == Recovery::Lost || fire.recoveries > self.cfg.max_recoveries,
            // Ended without a run: acceptable only where losing is the policy.
            FState::Superseded => spec.recovery == Recovery::Lost,
            FState::Dispatching => s.redis.inflight & bit != 0,
            FState::Accepted | FState::Queued => {
                let o = fire.node.unwrap_or(0) as usize;
                (s.redis.q[o] | s.redis.p[o]) & bit != 0 || s.redis.inflight & bit != 0
            }
            FState::Running => {
                let o = fire.node.unwrap_or(0) as usize;
                s.redis.p[o] & bit != 0
                    || s.tasks
                        .iter()
                        .any(|t| t.fire == f && t.node as usize == o && Some(t.inc) == fire.inc && s.nodes[o].up)
            }
        }
    }
}

pub const NO_DOUBLE_RUN: &str = "no fire runs twice under recovery = lost";
pub const NO_LOST_FIRE: &str = "no fire is lost under recovery = rerun (every claimed fire ends or is recoverable)";
pub const MASTER_ONLY_ON_HOLDER: &str = "a master-only handler starts only on the lease holder";
pub const NO_OVERLAP: &str = "a forbid job never overlaps itself";
pub const EPOCHS_RISE: &str = "epochs only rise (issued, and along the claims of a shard)";
pub const NO_DUP_ENTRY: &str = "no list holds a fire twice";

pub fn properties() -> Vec<Property<ProtocolModel>> {
    vec![
        Property::always(NO_DOUBLE_RUN, |m: &ProtocolModel, s: &State| {
            (0..m.cfg.fires() as u8)
                .all(|f| m.cfg.spec_of(f).recovery != Recovery::Lost || s.ghost.runs[f as usize] <= 1)
        }),
        Property::always(NO_LOST_FIRE, |m: &ProtocolModel, s: &State| {
            (0..m.cfg.fires() as u8).all(|f| m.recoverable(s, f))
        }),
        Property::always(MASTER_ONLY_ON_HOLDER, |_, s: &State| s.ghost.bad & BAD_MASTER_ONLY == 0),
        Property::always(NO_OVERLAP, |_, s: &State| s.ghost.bad & BAD_OVERLAP == 0),
        Property::always(EPOCHS_RISE, |_, s: &State| s.ghost.bad & BAD_EPOCH == 0),
        Property::always(NO_DUP_ENTRY, |_, s: &State| s.ghost.bad & BAD_DUP_ENTRY == 0),
        // Reached at all (else the checks above would hold for want of trying).
        Property::sometimes("a fire runs to success", |_, s: &State| {
            s.redis.fires.iter().flatten().any(|f| f.state == FState::Succeeded)
        }),
        Property::sometimes("a fire of a re-run job runs twice", |m: &ProtocolModel, s: &State| {
            (0..m.cfg.fires() as u8)
                .any(|f| m.cfg.spec_of(f).recovery == Recovery::Rerun && s.ghost.runs[f as usize] >= 2)
        }),
        Property::sometimes("a running fire is recorded lost", |_, s: &State| {
            s.redis.fires.iter().flatten().any(|f| f.state == FState::Lost)
        }),
        Property::sometimes("a stale claim is fenced", |_, s: &State| s.ghost.seen & SEEN_FENCED_CLAIM != 0),
        Property::sometimes("a queued fire is stolen", |_, s: &State| s.ghost.seen & SEEN_STEAL != 0),
        Property::sometimes("a master-only fire is handed to the master", |_, s: &State| {
            s.ghost.seen & SEEN_HANDED != 0
        }),
    ]
}

impl State {
    pub fn task(&self, node: u8, fire: u8) -> Option<&Task> {
        self.tasks.iter().find(|t| t.node == node && t.fire == fire)
    }
    pub fn holds(&self, node: u8, fire: u8) -> bool {
        self.task(node, fire).is_some()
    }
}

/// A fire as `j<job>@<instant>` in traces.
pub fn fire_name(cfg: &Config, f: u8) -> String {
    format!("j{}@{}", cfg.job_of(f), cfg.instant_of(f))
}

/// One line per step of a trace: the action and what it left in Redis and the nodes.
pub fn describe_path(m: &ProtocolModel, path: &[(State, Option<Action>)]) -> String {
    let mut out = String::new();
    for (i, (_, a)) in path.iter().enumerate() {
        if let Some(a) = a {
            out.push_str(&format!("{i:>3}. {}\n", m.action_name(a)));
        }
    }
    if let Some((last, _)) = path.last() {
        out.push_str(&format!("last state:\n{}", m.state_summary(last)));
    }
    out
}

impl Model for ProtocolModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.initial()]
    }
    fn actions(&self, s: &State, out: &mut Vec<Action>) {
        self.enabled(s, out)
    }
    fn next_state(&self, s: &State, a: Action) -> Option<State> {
        self.step(s, a)
    }
    fn properties(&self) -> Vec<Property<Self>> {
        properties()
    }
}
