//! Redis store: what a cluster shares. Each state change that must happen once is one Lua script
//! (`store/lua/*.lua`, each with a KEYS/ARGV contract header), so Redis applies it atomically; plain
//! reads are single commands. Execution changes are announced on a pub/sub channel, relayed to a
//! node's local watchers while it has any. The per-fire start and finish scripts go through a
//! `Batcher`, which sends the fires started (or finished) at the same moment in one script call.
//!
//! Connections (`topology`: one server, a Redis Cluster or a primary found through Sentinel): one
//! shared connection for commands, created lazily so a node starts while Redis is down and reports
//! NOT_SERVING until `ping` succeeds; one dedicated connection for the blocking wait on a node's
//! queue's doorbell (BLPOP); and one pub/sub connection while someone watches (`relay`),
//! re-established in a loop when it drops.
//!
//! This file owns `RedisStore`: the store traits' methods, each a script call (keys and arguments
//! in, the reply read back into the store's types) or plain commands, and the connections above.
//! `batcher` owns coalescing the start and finish calls; `relay` owns the change channel's
//! subscription; `topology` owns the `redis` URL's forms and the connection type. Uses: the store's
//! types and `keys`, the scripts in `../lua/`, `execution`, `job`, `error`, and `failpoints` (the
//! reply a failpoint drops; they exist only with the `failpoints` feature).
mod archive;
mod batcher;
mod relay;
mod topology;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use self::batcher::{batched, Batcher};
use self::relay::relay_changes;
use self::topology::{Conn, Topology};
pub use self::topology::{RedisAccess, ReplicaWait};
use super::keys::Keys;
use super::{
    Accept, Beat, Cancel, Chained, Claim, ClaimOutcome, Closing, ClusterStore, Due, Enqueue, ExecFilter, ExecStore,
    Fence, Finish, FireOwn, FireState, FireStore, JobRecord, JobStore, JobWrite, Keep, LeaseAcquire, MasterOnly,
    NodeFires, NodeRecord, PauseNote, Reap, ReapBy, ReapRequest, Register, SetAside, Slots, Start, StartedFire,
    StopRequest, Store, Taken, TriggerOutcome, WatermarkWrite, Writer, WATCH_BUFFER,
};
use crate::error::{Error, Result};
use crate::execution::{ExecState, Execution};
use crate::job::calendar::{Calendar, CalendarDef, MAX_CALENDARS};
use crate::job::limit::Limit;
use crate::job::{Concurrency, Declared, JobSpec, Priority};

static PUT_JOB: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/put_job.lua")));
static DUE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/due.lua")));
static EXPIRE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/expire.lua")));
static CALENDAR_DROP: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/calendar_drop.lua")));
static CALENDAR_MARK: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/calendar_mark.lua")));
static CHAIN: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/chain.lua")));
static STREAK: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/streak.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/claim.lua")));
static TRIGGER: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/trigger.lua")));
static SAVE_EXEC: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/save_exec.lua")));
static LEASE_ACQUIRE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/lease_acquire.lua")));
/// Renews the lease and a forbid job's lock alike (compare-and-PEXPIRE).
static RENEW: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/renew.lua")));
pub(super) static LEASE_RELEASE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/lease_release.lua")));
static REGISTER: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/register.lua")));
static BEAT: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/beat.lua")));
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/enqueue.lua")));
static DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/dead_letter.lua")));
/// A fire's accept (`accept.lua`), start (`start.lua`) and finish (`finish.lua`), batched together
/// (`Batcher`).
static STEPS: LazyLock<Script> = LazyLock::new(|| {
    script(&batched(&[
        ("accept", include_str!("../lua/accept.lua")),
        ("start", include_str!("../lua/start.lua")),
        ("finish", include_str!("../lua/finish.lua")),
    ]))
});

/// A script with the prelude every script shares (its checks of key types before any write).
fn script(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("../lua/prelude.lua")))
}

static RECORDS: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/records.lua")));
static REAP: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/reap.lua")));
static STEAL: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/steal.lua")));
static TAKE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/take.lua")));
static LENGTHS: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/lengths.lua")));
static LISTS: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/lists.lua")));
/// Deletes a node's doorbell when it is not a list (clobbered); leaves a ring alone.
static BELL_RESET: LazyLock<Script> =
    LazyLock::new(|| Script::new("if redis.call('TYPE', KEYS[1])['ok'] ~= 'list' then redis.call('DEL', KEYS[1]) end"));
static KEEP_ALIVE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/keep_alive.lua")));
static RETRY: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/retry.lua")));
static CANCEL: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/cancel.lua")));
static LIMIT_TAKE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/limit_take.lua")));
static LIMIT_RENEW: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/limit_renew.lua")));
static PROMOTE: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/promote.lua")));
/// Jobs with held fires a sweep looks at, at most (the rest at the next sweeps).
const PROMOTE_JOBS: usize = 500;

/// A claim's or trigger's 'HELD <node> <fire> <exec>' (after 'HELD '): the running fire a replace
/// asked to stop, with the stop request the script left (its `why` as `hold` in prelude.lua words it).
fn replacing(rest: &str, by_fire: &str) -> Option<super::Replacing> {
    let mut it = rest.split(' ');
    let (node, fire, exec) = (it.next()?, it.next()?, it.next()?);
    Some(super::Replacing {
        node: node.to_string(),
        stop: StopRequest { fire: fire.into(), exec: exec.into(), why: super::replaced_why(by_fire) },
    })
}

/// Longest wait for one Redis reply: a script that has not answered by then is treated as failed
/// (it may still have run). Every script the fire path repeats after an error is safe to repeat
/// (start answers RESUME or MISFIRED again, finish OK, reap leaves a `closing` entry, accept ALREADY,
/// enqueue the fire's state); `retry.lua` is not (a repeat counts a second attempt), and its
/// caller gives the fire to the rescan instead of repeating it.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How many index entries one ListExecutions call may scan when filtering by state, so one request
/// cannot walk a whole history.
const MAX_LIST_SCAN: usize = 5_000;
/// How long a reaped incarnation stays buried (`gone:<node>`), so it can never beat again.
const NODE_RECORD_KEEP_MS: u64 = 10 * 60 * 1000;

pub struct RedisStore {
    conn: Conn,
    /// For the doorbell's BLPOP only: a blocking command must not hold up the shared multiplexed connection.
    blocking: tokio::sync::Mutex<Option<Conn>>,
    topology: Arc<Topology>,
    keys: Keys,
    /// The Redis prefix and cluster name, from which every shard's keys are made (`shard`).
    base: (String, String),
    retention_ms: u64,
    /// A gone node's record stays listed this long after its last heartbeat (then it expires and
    /// `list_nodes` forgets the id).
    node_keep_ms: u64,
    timing: super::FireTiming,
    /// How many of the shard's newest executions the index across jobs keeps (`execution_recent`).
    recent: u64,
    events: broadcast::Sender<Execution>,
    /// Starts and finishes made at the same time (a burst, fires due together, one fire's finish
    /// and the next one's start) go to Redis together: one script call for many fires instead of
    /// one each.
    steps: Batcher,
    /// Which finishes do their job index's housekeeping (`finish.lua`).
    housekeeping: Arc<Housekeeping>,
    /// Wakes the relay when the first watcher arrives.
    wanted: Arc<Notify>,
    /// True while the relay is subscribed to the change channel.
    relay_live: watch::Receiver<bool>,
    relay: JoinHandle<()>,
    /// Strict mode: how many replicas must acknowledge a fire's writes (None: off).
    wait: Option<ReplicaWait>,
    /// The connection a fire's writes (claim, trigger, and the batched start and finish) go on:
    /// the shared one, or in strict mode one of their own, so that a `WAIT`, which holds up what
    /// comes after it on its connection, never delays a heartbeat or a lease renewal.
    fire_conn: Conn,
    /// Calendars read before, checked: by name, the stored JSON and what it made, so the tick
    /// checks a calendar (up to 10,000 dates) again only when its definition changed.
    calendar_cache: std::sync::Mutex<HashMap<String, (String, Arc<Calendar>)>>,
}

/// What a finish does to its job's index besides its own entry (`finish.lua` ARGV[17]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexCare {
    Nothing,
    /// Refresh its TTL (`INDEX_TTL_MARGIN_MS` past the retention).
    Ttl,
    /// Housekeeping: size it, drop entries past retention, trim it to the job's caps; and the TTL.
    All,
}

impl IndexCare {
    fn as_arg(self) -> &'static str {
        match self {
            IndexCare::Nothing => "0",
            IndexCare::Ttl => "1",
            IndexCare::All => "2",
        }
    }
}

/// A job's executions index lives this much longer than the retention, so that a node refreshing
/// it every `Housekeeping::TTL_EVERY` keeps it past every record it indexes (a record lives the
/// retention from its last write).
const INDEX_TTL_MARGIN_MS: u64 = 60 * 60 * 1000;

/// Decides what each finish does to its job's index (`IndexCare`), so that a finish does not pay a
/// `ZCARD` and a `PEXPIRE` every time. Kept per job in this process:
/// - housekeeping on one finish in `keep.last / 20` (1 to 16: a small cap is kept to within a
///   tenth, `Keep::trim_due`, by a few nodes), the `every`-th first, and 10 minutes after the
///   last, so a job that finishes once here (a daily job, a burst of many jobs) pays no `ZCARD`;
/// - the TTL on a job's first finish here and then every 30 minutes: the index then outlives every
///   record this node's finishes write (the retention from the write) by up to the margin; other
///   writers set the same TTL (`save_exec.lua`), so it only moves later.
///
/// At most `MAX_JOBS` jobs are remembered; a job beyond them gets both at every finish (as before
/// this existed). A job whose index never reaches its cap keeps entries past retention (their
/// records gone) until a housekeeping finish or a listing meets them.
#[derive(Default)]
struct Housekeeping {
    /// Per job: finishes here, the last housekeeping, the last TTL refresh.
    seen: std::sync::Mutex<HashMap<String, (u32, std::time::Instant, std::time::Instant)>>,
}

impl Housekeeping {
    const MAX_JOBS: usize = 100_000;
    const HOUSEKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
    const TTL_EVERY: std::time::Duration = std::time::Duration::from_secs(1800);

    fn due(&self, job: &str, keep: Keep) -> IndexCare {
        self.due_at(job, keep, std::time::Instant::now())
    }

    fn due_at(&self, job: &str, keep: Keep, now: std::time::Instant) -> IndexCare {
        let every = (keep.last / 20).clamp(1, 16);
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = !seen.contains_key(job);
        if first && seen.len() >= Self::MAX_JOBS {
            return IndexCare::All;
        }
        let (count, housekept, refreshed) = seen.entry(job.to_string()).or_insert((0, now, now));
        *count = count.wrapping_add(1);
        if *count % every == 0 || now.duration_since(*housekept) >= Self::HOUSEKEEP_EVERY {
            (*housekept, *refreshed) = (now, now);
            IndexCare::All
        } else if first || now.duration_since(*refreshed) >= Self::TTL_EVERY {
            *refreshed = now;
            IndexCare::Ttl
        } else {
            IndexCare::Nothing
        }
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

impl RedisStore {
    /// The length of each of `nodes`' queue lists, three per node, highest level first
    /// (`lengths.lua`: a list of the wrong type counts 0).
    async fn queue_list_lengths(&self, nodes: &[String]) -> Result<Vec<usize>> {
        let mut inv = LENGTHS.prepare_invoke();
        for n in nodes {
            for list in self.keys.queue_lists(n) {
                inv.key(list);
            }
        }
        Ok(inv.invoke_async(&mut self.conn()).await?)
    }

    /// Opens the store. Does not fail when Redis is down: commands fail (and `ping` tells) until it is up.
    pub async fn connect(url: &str, prefix: &str, cluster: &str, retention_ms: u64) -> Result<RedisStore> {
        Self::connect_with(url, RedisAccess::default(), prefix, cluster, retention_ms).await
    }

    /// As `connect`, with what else reaching Redis takes: the CA to trust for TLS instead of the
    /// system's roots, and the Sentinels' own credentials.
    pub async fn connect_with(
        url: &str,
        access: RedisAccess,
        prefix: &str,
        cluster: &str,
        retention_ms: u64,
    ) -> Result<RedisStore> {
        let keys = Keys::new(prefix, cluster);
        let topology = Arc::new(Topology::parse(url, access)?.with_slot_of(&keys.lease()));
        let conn = topology.commands()?;
        let mut store = Self::assemble(topology, conn, keys, retention_ms);
        store.base = (prefix.to_string(), cluster.to_string());
        Ok(store)
    }

    /// The store of shard `k` of the same cluster (`Keys::shard`): the same connections (on a Redis
    /// Cluster, its keyless commands aimed at that shard's slot), with its own keys, batchers,
    /// change relay and blocking connection, and this store's settings.
    pub fn shard(&self, k: u16) -> RedisStore {
        let keys = Keys::shard(&self.base.0, &self.base.1, k);
        let topology = Arc::new(Topology::clone(&self.topology).with_slot_of(&keys.lease()));
        let mut s = Self::assemble(topology, self.conn.for_slot_of(&keys.lease()), keys, self.retention_ms);
        s.base = self.base.clone();
        s.fire_conn = self.fire_conn.for_slot_of(&s.keys.lease());
        s.node_keep_ms = self.node_keep_ms;
        s.timing = self.timing;
        s.recent = self.recent;
        s.wait = self.wait;
        s.steps = Batcher::spawn(&STEPS, s.fire_conn.clone(), s.wait);
        s
    }

    fn assemble(topology: Arc<Topology>, conn: Conn, keys: Keys, retention_ms: u64) -> RedisStore {
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let wanted = Arc::new(Notify::new());
        let (live_tx, relay_live) = watch::channel(false);
        let relay = tokio::spawn(relay_changes(
            Arc::clone(&topology),
            keys.exec_channel(),
            events.clone(),
            Arc::clone(&wanted),
            live_tx,
        ));
        let steps = Batcher::spawn(&STEPS, conn.clone(), None);
        RedisStore {
            fire_conn: conn.clone(),
            conn,
            blocking: tokio::sync::Mutex::new(None),
            topology,
            keys,
            base: Default::default(),
            retention_ms,
            node_keep_ms: super::DEFAULT_DEAD_NODE_RETENTION_MS,
            timing: super::FireTiming::default(),
            recent: super::DEFAULT_RECENT_EXECUTIONS,
            events,
            steps,
            housekeeping: Arc::default(),
            wanted,
            relay_live,
            relay,
            wait: None,
            calendar_cache: Default::default(),
        }
    }

    /// Strict mode (`redis_wait_replicas`): claims, manual triggers, starts and finishes count only
    /// once `wait.replicas` replicas acknowledged them (`ReplicaWait`).
    pub fn with_replica_wait(mut self, wait: Option<ReplicaWait>) -> Result<Self> {
        if wait.is_some() {
            self.fire_conn = self.topology.commands()?;
        }
        self.wait = wait;
        self.steps = Batcher::spawn(&STEPS, self.fire_conn.clone(), wait);
        Ok(self)
    }

    /// Runs a script that writes a fire (claim, trigger) on `fire_conn`: in strict mode with its
    /// `WAIT` (`topology::run_script`).
    async fn write_fire<T: redis::FromRedisValue>(&self, inv: &redis::ScriptInvocation<'_>, what: &str) -> Result<T> {
        Ok(topology::run_script(inv, &mut self.fire_conn.clone(), self.wait, what).await?)
    }

    /// Sets the misfire threshold and dispatch deadline written into fire records.
    pub fn with_fire_timing(mut self, timing: super::FireTiming) -> Self {
        self.timing = timing;
        self
    }

    /// How long a gone node stays listed after its last heartbeat (`dead_node_retention_ms`).
    pub fn with_node_retention(mut self, ms: u64) -> Self {
        self.node_keep_ms = ms;
        self
    }

    /// How many of the shard's newest executions `ListExecutions` without a job lists, beside every
    /// open one (`execution_recent`).
    pub fn with_recent_executions(mut self, n: u64) -> Self {
        self.recent = n;
        self
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// How many shards the cluster has (`Keys::meta`): written as `wanted` by the cluster's first
    /// node (`HSETNX`, so two first nodes agree), read by every later one. 0 for a cluster made
    /// before shards (it has shard 0's keys but no meta) when `wanted` is not 1; with 1 it is
    /// adopted as one shard.
    pub async fn cluster_shards(&self, wanted: u16) -> Result<u16> {
        let meta = Keys::meta(&self.base.0, &self.base.1);
        let parse = |v: String| {
            v.parse::<u16>()
                .ok()
                .filter(|n| (1..=super::keys::MAX_SHARDS).contains(n))
                .ok_or_else(|| Error::Corrupt { key: meta.clone(), reason: format!("shards is '{v}'") })
        };
        let mut c = self.conn();
        if let Some(v) = c.hget::<_, _, Option<String>>(&meta, "shards").await? {
            return parse(v);
        }
        let made_before: bool = c.exists(self.keys.epoch()).await?;
        if made_before && wanted != 1 {
            return Ok(0);
        }
        let _: bool = c.hset_nx(&meta, "shards", wanted).await?;
        match c.hget::<_, _, Option<String>>(&meta, "shards").await? {
            Some(v) => parse(v),
            None => Err(Error::unavailable(format!("{meta} was written and is gone"))),
        }
    }

    fn conn(&self) -> Conn {
        // A clone shares the one multiplexed connection.
        self.conn.clone()
    }

    /// One run of put_job.lua: a definition write (`Some(w)`) or a pause/resume of `id` (`None`).
    async fn put_or_pause(
        &self,
        id: &str,
        w: Option<&JobWrite<'_>>,
        paused: Option<bool>,
        next_ms: Option<i64>,
        now: i64,
        note: Option<&PauseNote>,
    ) -> Result<Option<WatermarkWrite>> {
        let spec_json = match w {
            // The pause state lives in its own field: the spec is stored without it.
            Some(w) => encode(&JobSpec { paused: false, ..w.spec.clone() })?,
            None => String::new(),
        };
        let (file_spec, file_paused) = match w.and_then(|w| w.applied) {
            Some(d) => (encode(&JobSpec { paused: false, ..d.spec.clone() })?, flag(d.paused)),
            None => ("-".to_string(), ""),
        };
        let mut c = self.conn();
        let r: Vec<String> = PUT_JOB
            .key(self.keys.job(id))
            .key(self.keys.jobs())
            .key(self.keys.due())
            .key(self.keys.resume())
            .key(self.keys.chain())
            .key(self.keys.completed())
            .key(self.keys.calendars())
            .key(self.keys.calendars_deleted())
            .arg(id)
            .arg(spec_json)
            .arg(match paused {
                Some(p) => flag(Some(p)),
                None => "-",
            })
            .arg(opt_ms(next_ms))
            .arg(now)
            .arg(if w.is_some() { "put" } else { "pause" })
            .arg(w.map_or("api", |w| w.writer.as_str()))
            .arg(file_spec)
            .arg(file_paused)
            .arg(w.and_then(|w| w.expect_rev).map_or("-".to_string(), |r| r.to_string()))
            .arg(note.map(encode).transpose()?.unwrap_or_default())
            .arg(w.map(|w| w.spec.calendars.join(" ")).unwrap_or_default())
            .invoke_async(&mut c)
            .await?;
        match r.first().map(String::as_str) {
            Some("GONE") => Ok(None),
            Some("NOCAL") => {
                let name = r.get(1).map_or("", String::as_str);
                Err(super::no_calendar(
                    w.map_or(&JobSpec::default(), |w| w.spec),
                    name,
                    r.get(2).is_some_and(|s| s == "deleted"),
                ))
            }
            Some("CONFLICT") => Ok(Some(WatermarkWrite::Conflict)),
            Some("BADKEY") => Err(Error::FailedPrecondition(format!(
                "job '{id}' cannot be written: {}; delete the job and put it again",
                r.get(1).map(String::as_str).unwrap_or("a key has the wrong type")
            ))),
            Some("BEHIND") => Ok(Some(WatermarkWrite::Behind { last_ms: parse_ms(r.get(1), "last_ms")?.unwrap_or(0) })),
            Some("OK") if r.len() == 14 => {
                // spec, paused, next_ms, last_ms, updated_ms, writer, file_spec, file_paused, rev,
                // fired, pause, fail_streak, chain: the order `job_from_fields` reads. The watermark
                // is the one written (none for a paused job, one that made its max_fires, or one
                // waiting for its fire's end).
                let fields = [
                    r[3].clone(),
                    r[4].clone(),
                    r[9].clone(),
                    r[2].clone(),
                    now.to_string(),
                    r[6].clone(),
                    r[7].clone(),
                    r[8].clone(),
                    r[5].clone(),
                    r[10].clone(),
                    r[11].clone(),
                    r[12].clone(),
                    r[13].clone(),
                ];
                let record = self.job_from_fields(id, &fields)?;
                Ok(Some(WatermarkWrite::Done { record: Box::new(record), created: r[1] == "0" }))
            }
            _ => Err(unexpected("put_job", &r)),
        }
    }

    /// A job from its hash fields, in the order of `JOB_FIELDS` (`due.lua` gives only the first
    /// five: the rest are then at their defaults).
    fn job_from_fields(&self, id: &str, f: &[String]) -> Result<JobRecord> {
        let key = self.keys.job(id);
        let mut spec: JobSpec = decode(&f[0], &key)?;
        spec.paused = f[1] == "1";
        let field = |i: usize| f.get(i).map(String::as_str).unwrap_or("");
        let applied = match field(6) {
            "" => None,
            json => {
                let spec: JobSpec = decode(json, &key)?;
                let paused = match field(7) {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                };
                Some(Declared { spec, paused })
            }
        };
        Ok(JobRecord {
            spec,
            next_ms: parse_ms(f.get(2), "next_ms")?,
            last_ms: parse_ms(f.get(3), "last_ms")?,
            updated_ms: parse_ms(f.get(4), "updated_ms")?.unwrap_or(0),
            written_by: Writer::parse(field(5)),
            applied,
            // A stored job is at revision 1 at least (one written before revisions were kept).
            rev: field(8).parse::<u64>().unwrap_or(0).max(1),
            fired: field(9).parse::<u64>().unwrap_or(0),
            // A pause note that does not decode is dropped, not the job: it is only words.
            pause: match field(10) {
                "" => None,
                json => serde_json::from_str(json).ok(),
            },
            fail_streak: field(11).parse::<u64>().unwrap_or(0),
            chain_ms: parse_ms(f.get(12), "chain")?,
        })
    }

    /// The jobs of `ids` that exist. `skip_unreadable`: a key of the wrong type, or a record that does
    /// not decode, is left out (and logged) rather than failing the whole read (a listing).
    async fn get_jobs(&self, ids: &[String], skip_unreadable: bool) -> Result<Vec<JobRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HMGET").arg(self.keys.job(id)).arg(&JOB_FIELDS);
        }
        let rows: Vec<redis::RedisResult<Vec<Option<String>>>> =
            pipe.ignore_errors().query_async(&mut self.conn()).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, row) in ids.iter().zip(rows) {
            let record = match row {
                Ok(row) if row.first().is_some_and(Option::is_some) => {
                    let f: Vec<String> = row.into_iter().map(Option::unwrap_or_default).collect();
                    self.job_from_fields(id, &f)
                }
                Ok(_) => continue,
                Err(e) => Err(Error::from(e)),
            };
            match record {
                Ok(r) => out.push(r),
                Err(e) if skip_unreadable => {
                    tracing::warn!(job = %id, error = %e, "stored job is not readable; left out")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Execution records by id, in the order asked (None: no record), as section 4.2 says where
    /// each is: the fire hash for its fire's current execution, a record kept apart for the rest.
    /// One read-only script call (`records.lua`); every id must be of this store's shard.
    async fn records(&self, ids: &[String]) -> Result<Vec<Option<Execution>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = RECORDS.prepare_invoke();
        for id in ids {
            let record = self.keys.exec(id);
            let fire = crate::execution::fire_of_execution(id).map_or_else(|| record.clone(), |f| self.keys.fire(f));
            inv.key(record).key(fire).arg(id);
        }
        let rows: Vec<Vec<String>> = inv.invoke_async(&mut self.conn()).await?;
        if rows.len() != ids.len() {
            return Err(unexpected("records", &[format!("{} rows for {} ids", rows.len(), ids.len())]));
        }
        ids.iter()
            .zip(rows)
            .map(|(id, row)| {
                let fire = crate::execution::fire_of_execution(id).unwrap_or_default();
                match row.split_first() {
                    Some((json, fields)) => record_from(id, fire, json, fields, &self.keys),
                    None => Err(unexpected("records", &row)),
                }
            })
            .collect()
    }

    /// A started fire from a start's or an accept's reply: {tag, exec id, attempt, job, sched,
    /// epoch, manual, start ms, job spec JSON or '', ...}; `deadline` the reply's start deadline
    /// (ms, '' for none).
    fn started_fire(&self, r: &[String], deadline: Option<&String>) -> Result<Box<StartedFire>> {
        let num = |i: usize| r.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        Ok(Box::new(StartedFire {
            exec_id: r[1].clone(),
            attempt: num(2) as u32,
            job_id: r[3].clone(),
            sched_ms: num(4),
            epoch: num(5) as u64,
            manual: r[6] == "1",
            start_ms: num(7),
            job: match r[8].as_str() {
                "" => None,
                spec => Some(decode(spec, &self.keys.job(&r[3]))?),
            },
            deadline_ms: deadline.and_then(|d| d.parse().ok()),
            args: match r.get(10).map(String::as_str) {
                None | Some("") => None,
                Some(json) => Some(decode(json, &format!("the args of a manual fire of {}", self.keys.job(&r[3])))?),
            },
            selector: match r.get(11).map(String::as_str) {
                None | Some("") => BTreeMap::new(),
                Some(json) => decode(json, &format!("the target tags of a manual fire of {}", self.keys.job(&r[3])))?,
            },
        }))
    }

    /// A fire's state as a script read it from the fire hash: one that names no state is a corrupt key.
    fn fire_state(&self, fire_id: &str, state: &str) -> Result<FireState> {
        state.parse().map_err(|e: super::UnknownFireState| Error::Corrupt {
            key: self.keys.fire(fire_id),
            reason: e.to_string(),
        })
    }

    async fn save(&self, exec: &Execution, release_lock: bool) -> Result<()> {
        self.save_if(exec, release_lock, false).await.map(|_| ())
    }

    /// `only_open`: write only over a missing or still open record (see `update_execution`).
    async fn save_if(&self, exec: &Execution, release_lock: bool, only_open: bool) -> Result<bool> {
        let json = encode(exec)?;
        let mut c = self.conn();
        let written: i64 = SAVE_EXEC
            .key(self.keys.exec(&exec.id))
            .key(self.keys.execs())
            .key(self.keys.job_execs(&exec.job_id))
            .key(self.keys.lock(&exec.job_id))
            .key(self.keys.open_execs())
            .key(self.keys.held(&exec.job_id))
            .key(self.keys.held_jobs())
            .key(self.keys.inflight())
            .arg(&exec.id)
            .arg(json)
            .arg(self.retention_ms)
            .arg(self.keys.exec_channel())
            .arg(if release_lock { "1" } else { "0" })
            .arg(&exec.fire_id)
            .arg(crate::execution::id_floor(super::now_ms() - self.retention_ms as i64))
            .arg(if only_open { "1" } else { "0" })
            .arg(self.retention_ms + INDEX_TTL_MARGIN_MS)
            .arg(self.keys.fire(""))
            .arg(self.lock_ttl())
            .arg(self.timing.misfire_threshold_ms)
            .invoke_async(&mut c)
            .await?;
        Ok(written == 1)
    }
}

impl RedisStore {
    /// The connection for the limits' scripts: on a Redis Cluster, the keyless commands a script
    /// call may send (`SCRIPT LOAD` after a `NOSCRIPT`) go to the limits' slot, not the shard's.
    fn limits_conn(&self) -> Conn {
        self.conn().for_slot_of(&Keys::limits(&self.base.0, &self.base.1))
    }

    /// A call of a limits script (`limit_take.lua`, `limit_renew.lua`, which take the same keys and
    /// arguments): the limits hash, then each limit's slots; the holder, the lease, the names.
    fn limit_call<'a>(
        &self,
        script: &'a Script,
        limits: &[String],
        holder: &str,
        lease_ms: u64,
    ) -> redis::ScriptInvocation<'a> {
        let (p, c) = (&self.base.0, &self.base.1);
        let mut inv = script.key(Keys::limits(p, c));
        for l in limits {
            inv.key(Keys::limit_slots(p, c, l));
        }
        inv.arg(holder).arg(lease_ms.max(1));
        for l in limits {
            inv.arg(l);
        }
        inv
    }

    /// The TTL of a lock handed to a held fire (`promote`): as a claim's.
    fn lock_ttl(&self) -> u64 {
        super::lock_ttl_ms(self.timing.misfire_threshold_ms as i64)
    }
}

#[async_trait]
impl super::CalendarStore for RedisStore {
    async fn put_calendar(&self, def: &CalendarDef) -> Result<()> {
        let key = self.keys.calendars();
        let mut c = self.conn();
        let (n, exists): (usize, bool) = redis::pipe().hlen(&key).hexists(&key, &def.name).query_async(&mut c).await?;
        if !exists && n >= MAX_CALENDARS {
            return Err(Error::invalid(
                "name",
                format!("the cluster has {n} calendars, the most it keeps; delete one first"),
            ));
        }
        let _: () = redis::pipe()
            .atomic()
            .hset(&key, &def.name, encode(def)?)
            .ignore()
            .srem(self.keys.calendars_deleted(), &def.name)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    async fn list_calendars(&self) -> Result<Vec<CalendarDef>> {
        let all: BTreeMap<String, String> = self.conn().hgetall(self.keys.calendars()).await?;
        Ok(all.iter().filter_map(|(name, json)| decode_calendar(name, json).map(|c| c.def.clone())).collect())
    }

    async fn calendars(&self, names: &[String]) -> Result<HashMap<String, Arc<Calendar>>> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let got: Vec<Option<String>> =
            redis::cmd("HMGET").arg(self.keys.calendars()).arg(names).query_async(&mut self.conn()).await?;
        let mut cache = self.calendar_cache.lock().map_err(|_| Error::unavailable("calendar cache poisoned"))?;
        let mut out = HashMap::new();
        for (name, json) in names.iter().zip(got) {
            let Some(json) = json else { continue };
            match cache.get(name).filter(|(stored, _)| *stored == json) {
                Some((_, c)) => _ = out.insert(name.clone(), Arc::clone(c)),
                None => {
                    if let Some(c) = decode_calendar(name, &json) {
                        if cache.len() >= MAX_CALENDARS {
                            cache.clear();
                        }
                        cache.insert(name.clone(), (json, Arc::clone(&c)));
                        out.insert(name.clone(), c);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn mark_calendar_deleted(&self, name: &str) -> Result<bool> {
        let marked: i64 = CALENDAR_MARK
            .key(self.keys.calendars())
            .key(self.keys.calendars_deleted())
            .arg(name)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(marked == 1)
    }

    async fn unmark_calendar_deleted(&self, name: &str) -> Result<()> {
        let _: i64 = self.conn().srem(self.keys.calendars_deleted(), name).await?;
        Ok(())
    }

    async fn drop_calendar(&self, name: &str) -> Result<bool> {
        let dropped: i64 = CALENDAR_DROP
            .key(self.keys.calendars())
            .key(self.keys.calendars_deleted())
            .arg(name)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(dropped == 1)
    }
}

/// A stored calendar, checked; None (logged) when it no longer decodes or checks: the jobs naming
/// it then find it missing, and their fires are recorded skipped saying so.
fn decode_calendar(name: &str, json: &str) -> Option<Arc<Calendar>> {
    match serde_json::from_str::<CalendarDef>(json)
        .map_err(|e| Error::invalid("calendar", e.to_string()))
        .and_then(Calendar::new)
    {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            tracing::warn!(calendar = %name, error = %e, "a stored calendar that does not decode or check: ignored");
            None
        }
    }
}

#[async_trait]
impl super::LimitStore for RedisStore {
    async fn put_limit(&self, limit: &Limit) -> Result<()> {
        let key = Keys::limits(&self.base.0, &self.base.1);
        let mut c = self.conn();
        let (n, exists): (usize, bool) =
            redis::pipe().hlen(&key).hexists(&key, &limit.name).query_async(&mut c).await?;
        if !exists && n >= crate::job::limit::MAX_LIMITS {
            return Err(Error::invalid(
                "limit.name",
                format!("the cluster has {n} limits, the most it keeps; delete one first"),
            ));
        }
        let _: () = c.hset(&key, &limit.name, encode(limit)?).await?;
        Ok(())
    }

    async fn list_limits(&self) -> Result<Vec<(Limit, u32)>> {
        let (p, c) = (&self.base.0, &self.base.1);
        let all: Vec<(String, String)> = self.conn().hgetall(Keys::limits(p, c)).await?;
        let limits: Vec<Limit> = all
            .iter()
            .filter_map(|(name, json)| match serde_json::from_str::<Limit>(json) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(limit = %name, error = %e, "a stored limit that does not decode: ignored");
                    None
                }
            })
            .collect();
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        let now = super::now_ms();
        let mut pipe = redis::pipe();
        for l in &limits {
            pipe.zcount(Keys::limit_slots(p, c, &l.name), now + 1, "+inf");
        }
        let running: Vec<u32> = pipe.query_async(&mut self.conn()).await?;
        let mut out: Vec<(Limit, u32)> = limits.into_iter().zip(running).collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(out)
    }

    async fn delete_limit(&self, name: &str) -> Result<bool> {
        let (p, c) = (&self.base.0, &self.base.1);
        let (n, _): (i64, i64) = redis::pipe()
            .atomic()
            .hdel(Keys::limits(p, c), name)
            .del(Keys::limit_slots(p, c, name))
            .query_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    async fn take_slots(&self, limits: &[String], holder: &str, lease_ms: u64) -> Result<Slots> {
        let r: Vec<String> =
            self.limit_call(&LIMIT_TAKE, limits, holder, lease_ms).invoke_async(&mut self.limits_conn()).await?;
        match r.as_slice() {
            [ok] if ok == "OK" => Ok(Slots::Taken),
            [full, limit, running, max] if full == "FULL" => Ok(Slots::Full {
                limit: limit.clone(),
                running: running.parse().unwrap_or(0),
                max: max.parse().unwrap_or(0),
            }),
            _ => Err(unexpected("limit_take", &r)),
        }
    }

    async fn renew_slots(&self, limits: &[String], holder: &str, lease_ms: u64) -> Result<Vec<String>> {
        Ok(self.limit_call(&LIMIT_RENEW, limits, holder, lease_ms).invoke_async(&mut self.limits_conn()).await?)
    }

    async fn release_slots(&self, limits: &[String], holder: &str) -> Result<()> {
        let (p, c) = (&self.base.0, &self.base.1);
        let mut pipe = redis::pipe();
        for l in limits {
            pipe.zrem(Keys::limit_slots(p, c, l), holder).ignore();
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }
}

#[async_trait]
impl JobStore for RedisStore {
    async fn write_job(&self, w: &JobWrite<'_>) -> Result<WatermarkWrite> {
        self.put_or_pause(&w.spec.id, Some(w), w.paused, w.next_ms, w.now_ms, None)
            .await?
            .ok_or_else(|| Error::unavailable("put_job returned GONE"))
    }

    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        Ok(self.get_jobs(&[id.to_string()], false).await?.pop())
    }

    async fn list_jobs(&self, after_id: Option<&str>, limit: usize) -> Result<Vec<JobRecord>> {
        let min = match after_id {
            Some(a) => format!("({a}"),
            None => "-".to_string(),
        };
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.jobs())
            .arg(min)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn())
            .await?;
        self.get_jobs(&ids, true).await
    }

    async fn delete_job(&self, id: &str) -> Result<bool> {
        let (deleted, _, _, _, _, _): (i64, i64, i64, i64, i64, i64) = redis::pipe()
            .atomic()
            .del(self.keys.job(id))
            .zrem(self.keys.jobs(), id)
            .zrem(self.keys.due(), id)
            .zrem(self.keys.resume(), id)
            .zrem(self.keys.chain(), id)
            .zrem(self.keys.completed(), id)
            .query_async(&mut self.conn())
            .await?;
        Ok(deleted == 1)
    }

    async fn set_paused(
        &self,
        id: &str,
        paused: bool,
        next_ms: Option<i64>,
        now: i64,
        note: Option<&PauseNote>,
    ) -> Result<Option<WatermarkWrite>> {
        let next_ms = if paused { None } else { next_ms };
        self.put_or_pause(id, None, Some(paused), next_ms, now, note).await
    }

    async fn fire_outcome(&self, job_id: &str, failed: bool) -> Result<Option<u64>> {
        let n: i64 = STREAK
            .key(self.keys.job(job_id))
            .arg(if failed { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await?;
        Ok(u64::try_from(n).ok())
    }

    async fn chained(&self, limit: usize) -> Result<Vec<(String, i64)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let waits: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.keys.chain())
            .arg(0)
            .arg(limit - 1)
            .arg("WITHSCORES")
            .query_async(&mut self.conn())
            .await?;
        Ok(waits.into_iter().map(|(id, t)| (id, t as i64)).collect())
    }

    async fn chain_next(&self, waits: &[(String, i64)], now: i64) -> Result<Vec<Chained>> {
        if waits.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = CHAIN.key(self.keys.due());
        inv.key(self.keys.chain())
            .arg(self.keys.job(""))
            .arg(self.keys.fire(""))
            .arg(now)
            .arg(crate::job::schedule::END_OF_TIME_MS);
        for (job, sched) in waits {
            inv.arg(job).arg(sched);
        }
        let r: Vec<String> = inv.invoke_async(&mut self.conn()).await?;
        if r.first().map(String::as_str) == Some("BADKEY") {
            return Err(Error::Corrupt { key: self.keys.chain(), reason: r.get(1).cloned().unwrap_or_default() });
        }
        if r.len() != waits.len() {
            return Err(unexpected("chain", &r));
        }
        r.iter()
            .map(|s| match s.as_str() {
                "OPEN" => Ok(Chained::Open),
                "STALE" => Ok(Chained::Stale),
                "NEXT" => Ok(Chained::Next(None)),
                s => s
                    .strip_prefix("NEXT ")
                    .and_then(|t| t.parse::<i64>().ok())
                    .map(|t| Chained::Next(Some(t)))
                    .ok_or_else(|| unexpected("chain", &r)),
            })
            .collect()
    }

    async fn resumable(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.resume())
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn())
            .await?;
        Ok(ids)
    }

    async fn due_jobs(&self, now: i64, limit: usize) -> Result<Due> {
        let flat: Vec<String> = DUE
            .key(self.keys.due())
            .key(self.keys.dlq())
            .arg(now)
            .arg(limit)
            .arg(self.keys.job(""))
            .invoke_async(&mut self.conn())
            .await?;
        let mut due = Due::default();
        for c in flat.chunks(8).filter(|c| c.len() == 8) {
            if !c[7].is_empty() {
                due.set_aside.push(SetAside { job_id: c[0].clone(), reason: c[7].clone() });
                continue;
            }
            // The fields due.lua reads, in JOB_FIELDS' places (the others are left at their
            // defaults: scheduling does not need them).
            let mut fields = c[1..6].to_vec();
            fields.extend(["", "", "", ""].map(String::from));
            fields.push(c[6].clone());
            match self.job_from_fields(&c[0], &fields) {
                Ok(rec) => due.jobs.push(rec),
                // A record that does not decode must not stop the other jobs either: out of the due
                // index, named in the dead-letter list.
                Err(e) => {
                    let reason = e.to_string();
                    let entry =
                        serde_json::json!({"entry": self.keys.job(&c[0]), "node": "", "reason": reason, "at": now});
                    let _: () = redis::pipe()
                        .atomic()
                        .zrem(self.keys.due(), &c[0])
                        .ignore()
                        .lpush(self.keys.dlq(), entry.to_string())
                        .ignore()
                        .query_async(&mut self.conn())
                        .await?;
                    due.set_aside.push(SetAside { job_id: c[0].clone(), reason });
                }
            }
        }
        Ok(due)
    }

    async fn next_due_ms(&self) -> Result<Option<i64>> {
        let first: Vec<(String, f64)> = self.conn().zrange_withscores(self.keys.due(), 0, 0).await?;
        Ok(first.first().map(|(_, s)| *s as i64))
    }
}

#[async_trait]
impl FireStore for RedisStore {
    async fn claim(&self, fence: &Fence, claims: &[Claim]) -> Result<Vec<ClaimOutcome>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = CLAIM.key(self.keys.due());
        inv.key(self.keys.execs()).key(self.keys.lease()).key(self.keys.inflight());
        inv.key(self.keys.processing(&fence.node_id)).key(self.keys.hb(&fence.node_id)).key(self.keys.open_execs());
        inv.key(self.keys.held_jobs()).key(self.keys.chain()).key(self.keys.completed());
        inv.arg(self.retention_ms)
            .arg(self.keys.exec_channel())
            .arg(fence.to_string())
            .arg(fence.epoch)
            .arg(self.timing.dispatch_deadline_ms)
            .arg(self.timing.misfire_threshold_ms)
            .arg(&fence.node_id)
            .arg(&fence.incarnation)
            .arg(self.timing.watch_ms())
            .arg(self.recent)
            .arg(self.keys.fire(""))
            .arg(self.keys.stops(""))
            .arg(super::STOPS_TTL_MS);
        for c in claims {
            inv.key(self.keys.job(&c.job_id))
                .key(self.keys.fire(&c.exec.fire_id))
                .key(self.keys.lock(&c.job_id))
                .key(self.keys.job_execs(&c.job_id))
                .key(self.keys.held(&c.job_id));
            inv.arg(&c.job_id)
                .arg(c.sched_ms)
                .arg(if c.chain { "c".to_string() } else { opt_ms(c.next_ms) })
                .arg(super::overlap_arg(c.overlap))
                .arg(c.lock_ttl_ms.max(1))
                .arg(&c.exec.id)
                .arg(encode(&c.exec)?)
                // Only an exclusive claim can meet the lock and need its `skipped` record.
                .arg(if c.overlap.exclusive() { encode(&c.skipped_exec())? } else { String::new() })
                .arg(match (c.moves, c.exec.state.is_terminal()) {
                    (true, _) => "moved",
                    (false, true) => FireState::from(c.exec.state).as_str(),
                    (false, false) => "0",
                })
                .arg(match (c.here, c.start) {
                    (false, _) => "0",
                    (true, false) => "1",
                    (true, true) => "2",
                })
                .arg(c.priority.name())
                .arg(crate::execution::shard_in(&c.exec.fire_id).map(|s| s.suffix()).unwrap_or_default());
        }
        // In strict mode, not replicated is an error: the fires stay `dispatching` (their
        // watermarks moved) and the sweep dispatches those a failover did not lose, or, claimed
        // into this node's hands, stay in its processing list for its rescan, as after a lost reply.
        let r: Vec<String> = self.write_fire(&inv, "a claim").await?;
        fail::fail_point!("lose_claim_reply", |_| Err(crate::failpoints::lost_reply("lose_claim_reply")));
        if r.first().map(String::as_str) == Some("FENCED") {
            return Err(Error::Fenced(format!("lease {fence} is no longer held")));
        }
        if r.len() != claims.len() {
            return Err(unexpected("claim", &r));
        }
        r.iter()
            .zip(claims)
            .map(|(s, c)| match s.as_str() {
                "CLAIMED" => Ok(ClaimOutcome::Claimed),
                "HERE" => Ok(ClaimOutcome::Here),
                "STARTED" => Ok(ClaimOutcome::Started),
                "SKIPPED" => Ok(ClaimOutcome::Skipped),
                "HELD" => Ok(ClaimOutcome::Held(None)),
                s if s.starts_with("HELD ") => replacing(&s["HELD ".len()..], &c.exec.fire_id)
                    .map(|x| ClaimOutcome::Held(Some(x)))
                    .ok_or_else(|| unexpected("claim", &r)),
                "MISFIRED" => Ok(ClaimOutcome::Misfired),
                "MOVED" => Ok(ClaimOutcome::Moved),
                "STALE" => Ok(ClaimOutcome::Stale),
                "PAUSED" => Ok(ClaimOutcome::Paused),
                "GONE" => Ok(ClaimOutcome::Gone),
                s if s.starts_with("DUP") => Ok(ClaimOutcome::Duplicate(s[3..].trim().to_string())),
                s if s.starts_with("BADKEY ") => Ok(ClaimOutcome::BadKey(s["BADKEY ".len()..].to_string())),
                _ => Err(unexpected("claim", &r)),
            })
            .collect()
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
        let skipped = super::skipped_by_lock(exec, overlap);
        let selector = match own.selector.is_empty() {
            true => String::new(),
            false => encode(&own.selector)?,
        };
        let mut inv = TRIGGER.prepare_invoke();
        inv.key(self.keys.job(&exec.job_id))
            .key(self.keys.fire(&exec.fire_id))
            .key(self.keys.lock(&exec.job_id))
            .key(self.keys.open_execs())
            .key(self.keys.execs())
            .key(self.keys.job_execs(&exec.job_id))
            .key(self.keys.idem(&exec.job_id, key.unwrap_or("")))
            .key(self.keys.inflight())
            .key(self.keys.held(&exec.job_id))
            .key(self.keys.held_jobs())
            .arg(self.retention_ms)
            .arg(self.keys.exec_channel())
            .arg(&exec.id)
            .arg(encode(exec)?)
            .arg(encode(&skipped)?)
            .arg(super::overlap_arg(overlap))
            .arg(lock_ttl_ms.max(1))
            .arg(if key.is_some() { "1" } else { "0" })
            .arg(&exec.fire_id)
            .arg(self.keys.exec(""))
            .arg(exec.scheduled_ms)
            .arg(exec.epoch)
            // Its start deadline: a backfill's instant is past, so counted from now.
            .arg(exec.scheduled_ms.max(super::now_ms()) + self.timing.misfire_threshold_ms as i64)
            .arg(super::now_ms() + self.timing.dispatch_deadline_ms as i64)
            .arg(&exec.job_id)
            .arg(skipped.end_ms.unwrap_or_else(super::now_ms))
            .arg(&skipped.error)
            .arg(self.recent)
            .arg(own.args.as_ref().map(|a| a.to_string()).unwrap_or_default())
            .arg(self.keys.fire(""))
            .arg(self.keys.stops(""))
            .arg(super::STOPS_TTL_MS)
            .arg(self.timing.misfire_threshold_ms)
            .arg(priority.name())
            .arg(selector)
            .arg(if exec.manual { "1" } else { "0" });
        let r: Vec<String> = self.write_fire(&inv, "a trigger").await?;
        match (r.first().map(String::as_str), r.get(1)) {
            (Some("HELD"), None) => Ok(TriggerOutcome::Held(exec.clone(), None)),
            (Some("HELD"), Some(_)) => replacing(&r[1..].join(" "), &exec.fire_id)
                .map(|x| TriggerOutcome::Held(exec.clone(), Some(x)))
                .ok_or_else(|| unexpected("trigger", &r)),
            (Some("CONFLICT"), Some(id)) => Ok(TriggerOutcome::Conflict(id.clone())),
            (Some("GONE"), _) => Ok(TriggerOutcome::Gone),
            (Some("FIRED"), _) => Ok(TriggerOutcome::AlreadyFired),
            (Some("CREATED"), _) => Ok(TriggerOutcome::Created(exec.clone())),
            (Some("SKIPPED"), _) => Ok(TriggerOutcome::Skipped(skipped)),
            (Some("DEDUP"), Some(id)) => Ok(match self.get_execution(id).await? {
                Some(e) => TriggerOutcome::Deduplicated(e),
                None => TriggerOutcome::Spent(id.clone()),
            }),
            _ => Err(unexpected("trigger", &r)),
        }
    }

    async fn accept_many(
        &self,
        fire_ids: &[String],
        epoch: Option<u64>,
        node: &str,
        inc: &str,
        start: bool,
    ) -> Result<Vec<Accept>> {
        // Without an epoch (a node's own manual fire) the script checks none.
        let epoch_arg = epoch.map_or_else(|| "-".to_string(), |e| e.to_string());
        // One step per fire; the batcher sends the fires of this call (and whatever else is being
        // accepted, started or finished at the moment) together.
        let calls = fire_ids.iter().map(|f| {
            let keys = vec![
                self.keys.epoch(),
                self.keys.processing(node),
                self.keys.inflight(),
                self.keys.hb(node),
                self.keys.fire(f),
            ];
            let args = vec![
                epoch_arg.clone(),
                node.to_string(),
                inc.to_string(),
                self.timing.watch_ms().to_string(),
                f.clone(),
                self.keys.job(""),
                self.keys.exec_channel(),
                if start { "1" } else { "0" }.to_string(),
            ];
            self.steps.call::<redis::Value>("accept", keys, args)
        });
        let replies = futures_util::future::join_all(calls).await;
        fail::fail_point!("lose_accept_reply", |_| Err(crate::failpoints::lost_reply("lose_accept_reply")));
        replies
            .into_iter()
            .map(|r| match r? {
                redis::Value::SimpleString(s) => Ok(accept_reply(&s)),
                redis::Value::BulkString(b) => Ok(accept_reply(&String::from_utf8_lossy(&b))),
                other => {
                    let why: Vec<String> = redis::from_redis_value(other).unwrap_or_default();
                    match why.as_slice() {
                        [tag, why] if tag == "BADKEY" => {
                            Err(Error::Corrupt { key: self.keys.processing(node), reason: why.clone() })
                        }
                        [tag, ..] if tag == "STARTED" && why.len() == 12 => {
                            // Committed: a definition that does not decode is this fire's problem
                            // alone (recorded failed by the worker), not the whole batch's.
                            let fire = match self.started_fire(&why, Some(&why[9])) {
                                Ok(sf) => sf,
                                Err(e) => {
                                    tracing::warn!(job = %why[3], error = %e, "a started fire's job definition does not decode");
                                    // Recorded failed as a fire of no job (its own args too, when
                                    // they are what does not decode).
                                    let mut no_spec = why.clone();
                                    no_spec[8] = String::new();
                                    no_spec[10] = String::new();
                                    self.started_fire(&no_spec, Some(&why[9]))?
                                }
                            };
                            Ok(Accept::Started(fire))
                        }
                        _ => Err(unexpected("accept", &why)),
                    }
                }
            })
            .collect()
    }

    async fn enqueue(&self, fence: &Fence, fire_id: &str, target: &str) -> Result<Enqueue> {
        let r: String = ENQUEUE
            .key(self.keys.lease())
            .key(self.keys.fire(fire_id))
            .key(self.keys.queue(target))
            .key(self.keys.inflight())
            .key(self.keys.hb(target))
            .arg(fence.to_string())
            .arg(fire_id)
            .arg(target)
            .arg(self.timing.watch_ms())
            .arg(self.keys.processing(""))
            .arg(self.keys.queue(""))
            .invoke_async(&mut self.conn())
            .await?;
        match r.as_str() {
            "OK" => Ok(Enqueue::Queued),
            "ORPHAN" => Ok(Enqueue::Orphan),
            "FENCED" => Err(Error::Fenced(format!("lease {fence} is no longer held"))),
            "TARGET_DEAD" => Ok(Enqueue::TargetDead),
            "UNKNOWN" => Ok(Enqueue::Unknown),
            state => Ok(Enqueue::NotDispatching(self.fire_state(fire_id, state)?)),
        }
    }

    async fn take_queued(&self, node: &str, order: [Priority; 3]) -> Result<Option<Taken>> {
        let letters: String = order.iter().map(|p| super::level_letter(*p)).collect();
        let r: Vec<String> = TAKE
            .key(self.keys.queue(node))
            .key(self.keys.processing(node))
            .arg(letters)
            .invoke_async(&mut self.conn())
            .await?;
        let [fire_id, level, waiting, clobbered] = <[String; 4]>::try_from(r).map_err(|r| unexpected("take", &r))?;
        if !clobbered.is_empty() {
            // Passed over, not fatal: the node goes on with its other levels. Said at most every
            // 10 s: a drain takes several times a second.
            static SAID: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
            let now = super::now_ms();
            if now - SAID.swap(now, std::sync::atomic::Ordering::Relaxed) >= 10_000 {
                tracing::warn!(node = %node, why = %clobbered, "a queue list of the wrong type is passed over; its entries wait until it is put right");
            }
        }
        if fire_id.is_empty() {
            return Ok(None);
        }
        let level = level.chars().next().and_then(super::level_of_letter);
        let Some(level) = level else { return Err(unexpected("take", &[fire_id, waiting])) };
        Ok(Some(Taken { fire_id, level, waiting: waiting.chars().filter_map(super::level_of_letter).collect() }))
    }

    async fn queue_levels(&self, node: &str) -> Result<Vec<Priority>> {
        let lens = self.queue_list_lengths(std::slice::from_ref(&node.to_string())).await?;
        Ok(Priority::ALL.into_iter().zip(lens).filter(|(_, n)| *n > 0).map(|(p, _)| p).collect())
    }

    async fn wait_queued(&self, node: &str, wait: Duration) -> Result<()> {
        // BLPOP's timeout is in seconds, and 0 would wait for ever.
        if wait < Duration::from_millis(1) {
            return Ok(());
        }
        // A take that found the queue empty deleted the doorbell; a push since has rung it (the
        // push and its ring are one script), so the wait below misses nothing.
        let mut slot = self.blocking.lock().await;
        if slot.is_none() {
            *slot = Some(self.topology.dedicated(wait + RESPONSE_TIMEOUT).await?);
        }
        let Some(conn) = slot.as_mut() else { return Ok(()) };
        let rung: redis::RedisResult<Option<(String, String)>> =
            redis::cmd("BLPOP").arg(self.keys.bell(node)).arg(wait.as_secs_f64()).query_async(conn).await;
        match rung {
            Ok(_) => Ok(()),
            // A bell of the wrong type (clobbered): put right here, as no take may come to
            // delete it while nothing is queued. The connection is fine.
            Err(e) if e.code() == Some("WRONGTYPE") => {
                drop(slot);
                let _: () = BELL_RESET.key(self.keys.bell(node)).invoke_async(&mut self.conn()).await?;
                Ok(())
            }
            Err(e) => {
                // A broken blocking connection is rebuilt next time.
                *slot = None;
                Err(e.into())
            }
        }
    }

    async fn steal(&self, victim: &str, node: &str, inc: &str) -> Result<Option<String>> {
        let r: Option<String> = STEAL
            .key(self.keys.queue(victim))
            .key(self.keys.processing(node))
            .key(self.keys.hb(node))
            .key(self.keys.fire(""))
            .arg(victim)
            .arg(node)
            .arg(inc)
            .arg(self.keys.job(""))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(r)
    }

    async fn dead_letter(&self, node: &str, entry: &str, reason: &str) -> Result<()> {
        let _: i64 = DEAD_LETTER
            .key(self.keys.processing(node))
            .key(self.keys.dlq())
            .arg(entry)
            .arg(node)
            .arg(reason)
            .arg(super::now_ms())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn start(
        &self,
        fire_id: &str,
        node: &str,
        inc: &str,
        fresh_exec_id: &str,
        master_only: MasterOnly,
    ) -> Result<Start> {
        let keys = [
            self.keys.fire(fire_id),
            self.keys.processing(node),
            self.keys.hb(node),
            self.keys.dlq(),
            self.keys.execs(),
            self.keys.inflight(),
            self.keys.lease(),
            self.keys.open_execs(),
        ];
        let args = [
            fire_id.to_string(),
            node.to_string(),
            inc.to_string(),
            fresh_exec_id.to_string(),
            super::now_ms().to_string(),
            self.keys.job(""),
            self.keys.exec(""),
            self.keys.job_execs(""),
            self.retention_ms.to_string(),
            self.keys.exec_channel(),
            master_only.as_str().to_string(),
        ];
        let r: Vec<String> = self.steps.call("start", keys.into(), args.into()).await?;
        fail::fail_point!("lose_start_reply", |_| Err(crate::failpoints::lost_reply("lose_start_reply")));
        let num = |i: usize| r.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        Ok(match r.first().map(String::as_str) {
            Some("OK") if r.len() == 12 => Start::Run(self.started_fire(&r, None)?),
            Some("RESUME") if r.len() == 12 => Start::Resume(self.started_fire(&r, Some(&r[9]))?),
            Some("BADKEY") => {
                return Err(Error::Corrupt {
                    key: self.keys.fire(fire_id),
                    reason: r.get(1).cloned().unwrap_or_default(),
                })
            }
            Some("MASTER_ONLY") => Start::MasterOnly,
            Some("ALREADY") => Start::Already,
            Some("NOT_LIVE") => Start::NotLive,
            Some("POISON") => Start::Poison,
            Some("NOT_MINE") => Start::NotMine(self.fire_state(fire_id, r.get(1).map_or("", String::as_str))?),
            Some("MISFIRED") if r.len() == 4 => {
                Start::Misfired { job_id: r[1].clone(), sched_ms: num(2), exec_id: r[3].clone() }
            }
            _ => return Err(unexpected("start", &r)),
        })
    }

    async fn retry_attempt(&self, fire_id: &str, node: &str, inc: &str, exec_id: &str) -> Result<Option<u32>> {
        let n: i64 = RETRY
            .key(self.keys.fire(fire_id))
            .key(self.keys.hb(node))
            .key(self.keys.execs())
            .key(self.keys.open_execs())
            .arg(node)
            .arg(inc)
            .arg(exec_id)
            .arg(self.keys.job_execs(""))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(u32::try_from(n).ok().filter(|n| *n > 0))
    }

    async fn renew_lock(&self, job_id: &str, owner: &str, ttl_ms: u64) -> Result<bool> {
        let r: i64 =
            RENEW.key(self.keys.lock(job_id)).arg(owner).arg(ttl_ms.max(1)).invoke_async(&mut self.conn()).await?;
        Ok(r == 1)
    }

    async fn finish(&self, exec: &Execution, node: &str, inc: &str, keep: Keep, forbid: bool) -> Result<Finish> {
        let superseded = exec.superseded();
        let keys = [
            self.keys.exec(&exec.id),
            self.keys.execs(),
            self.keys.job_execs(&exec.job_id),
            self.keys.lock(&exec.job_id),
            self.keys.fire(&exec.fire_id),
            self.keys.processing(node),
            self.keys.exec(&superseded.id),
            self.keys.job_failed_execs(&exec.job_id),
            self.keys.open_execs(),
            self.keys.held(&exec.job_id),
            self.keys.held_jobs(),
            self.keys.queue(node),
            self.keys.inflight(),
            self.keys.node(node),
        ];
        let args = [
            exec.id.clone(),
            encode(exec)?,
            self.retention_ms.to_string(),
            self.keys.exec_channel(),
            exec.fire_id.clone(),
            crate::execution::id_floor(super::now_ms() - self.retention_ms as i64),
            node.to_string(),
            inc.to_string(),
            FireState::from(exec.state).as_str().to_string(),
            encode(&superseded)?,
            superseded.id.clone(),
            keep.last.to_string(),
            keep.failed.to_string(),
            self.keys.exec_prefix(),
            String::new(), // unused
            flag(Some(forbid)).to_string(),
            self.housekeeping.due(&exec.job_id, keep).as_arg().to_string(),
            (self.retention_ms + INDEX_TTL_MARGIN_MS).to_string(),
            exec.start_ms.map(|n| n.to_string()).unwrap_or_default(),
            // The hash holds the outcome once it has `ended` (section 4.2): a record given without
            // an end ends now.
            exec.end_ms.unwrap_or_else(super::now_ms).to_string(),
            exec.attempt.to_string(),
            exec.error.clone(),
            exec.output.clone(),
            exec.stderr.clone(),
            self.keys.fire(""),
            // A retry's record was written apart while it ran (`update_execution`).
            flag(Some(exec.attempt > 1)).to_string(),
            self.lock_ttl().to_string(),
            self.timing.misfire_threshold_ms.to_string(),
            self.timing.watch_ms().to_string(),
            match exec.jitter_ms {
                0 => String::new(),
                j => j.to_string(),
            },
        ];
        let r: Vec<String> = self.steps.call("finish", keys.into(), args.into()).await?;
        fail::fail_point!("lose_finish_reply", |_| Err(crate::failpoints::lost_reply("lose_finish_reply")));
        match r.first().map(String::as_str) {
            Some("OK") => Ok(Finish::Recorded),
            Some("SUPERSEDED") => Ok(Finish::Superseded),
            Some("BADKEY") => Err(Error::Corrupt {
                key: self.keys.fire(&exec.fire_id),
                reason: r.get(1).cloned().unwrap_or_default(),
            }),
            _ => Err(unexpected("finish", &r)),
        }
    }

    async fn node_fires(&self, node: &str) -> Result<(Vec<String>, Vec<String>)> {
        let [hi, normal, lo] = self.keys.queue_lists(node);
        let (hi, normal, lo, p): (Vec<String>, Vec<String>, Vec<String>, Vec<String>) =
            LISTS.key(hi).key(normal).key(lo).key(self.keys.processing(node)).invoke_async(&mut self.conn()).await?;
        Ok(([hi, normal, lo].concat(), p))
    }

    async fn queue_lengths(&self, nodes: &[String]) -> Result<Vec<usize>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let lens = self.queue_list_lengths(nodes).await?;
        Ok(lens.chunks(3).map(|c| c.iter().sum()).collect())
    }

    async fn reap(&self, r: &ReapRequest) -> Result<Reap> {
        let (fence_key, fence, mode) = match &r.by {
            ReapBy::Master(fence) => (self.keys.lease(), fence.to_string(), "master"),
            ReapBy::Adopt { incarnation } => (self.keys.hb(&r.dead_node), incarnation.clone(), "adopt"),
            ReapBy::Handoff { incarnation } => (self.keys.hb(&r.dead_node), incarnation.clone(), "handoff"),
        };
        let list = match r.fires {
            NodeFires::Queued => self.keys.queue(&r.dead_node),
            NodeFires::Taken => self.keys.processing(&r.dead_node),
        };
        let job = crate::execution::job_of_fire(&r.fire_id);
        let v: redis::Value = REAP
            .key(fence_key)
            .key(self.keys.hb(&r.dead_node))
            .key(list)
            .key(self.keys.fire(&r.fire_id))
            .key(self.keys.queue(&r.target))
            .key(self.keys.lock(job))
            .key(self.keys.gone(&r.dead_node))
            .key(self.keys.inflight())
            .key(self.keys.closing())
            .arg(fence)
            .arg(&r.fire_id)
            .arg(if r.rerun { "rerun" } else { "lost" })
            .arg(r.max_recoveries.map_or_else(|| "-".to_string(), |m| m.to_string()))
            .arg(r.lock_ttl_ms.max(1))
            .arg(&r.target)
            .arg(&r.dead_node)
            .arg(self.timing.misfire_threshold_ms)
            .arg(mode)
            .arg(NODE_RECORD_KEEP_MS)
            .arg(self.timing.watch_ms())
            .arg(match r.fires {
                NodeFires::Queued => "q",
                NodeFires::Taken => "p",
            })
            .invoke_async(&mut self.conn())
            .await?;
        fail::fail_point!("lose_reap_reply", |_| Err(crate::failpoints::lost_reply("lose_reap_reply")));
        let reply: Vec<String> = match v {
            redis::Value::Array(items) => {
                items.iter().map(|i| redis::from_redis_value_ref(i).unwrap_or_default()).collect()
            }
            other => vec![redis::from_redis_value_ref(&other).unwrap_or_default()],
        };
        Ok(match reply.first().map(String::as_str) {
            Some("FENCED") => Reap::Fenced,
            Some("ALIVE") => Reap::Alive,
            Some("GONE") => Reap::Gone,
            Some("STALE_COPY") => Reap::StaleCopy,
            Some("MOVED") => Reap::Moved,
            Some("RERUN") if reply.len() == 6 => Reap::Rerun {
                dead_exec_id: reply[1].clone(),
                dead: dead_attempt(&reply[2], &reply[3], &reply[4], &reply[5]),
            },
            Some("LOST") if reply.len() == 6 => Reap::Lost {
                job_id: reply[1].clone(),
                sched_ms: reply[2].parse().unwrap_or(0),
                exec_id: reply[3].clone(),
                dead: dead_attempt(&reply[1], &reply[2], &reply[4], &reply[5]),
            },
            Some(other) => match other.strip_prefix("DROPPED_") {
                // Lua's name for no state at all.
                Some("nil") => Reap::Dropped(None),
                Some(state) => Reap::Dropped(Some(self.fire_state(&r.fire_id, state)?)),
                None => return Err(unexpected("reap", &reply)),
            },
            None => return Err(unexpected("reap", &reply)),
        })
    }

    async fn stuck_dispatching(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let v: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.inflight())
            .arg("-inf")
            .arg(now)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn())
            .await?;
        Ok(v)
    }

    async fn closings(&self) -> Result<Vec<Closing>> {
        let all: Vec<(String, String)> = self.conn().hgetall(self.keys.closing()).await?;
        Ok(all
            .into_iter()
            .filter_map(|(exec_id, v)| {
                let f: Vec<&str> = v.split('\t').collect();
                // Entries made before the reap wrote the attempt's start and number have six fields.
                let (kind, fire, job, sched, dead, target, started, attempts) = match f.as_slice() {
                    [k, f, j, s, d, t, st, a] => (*k, *f, *j, *s, *d, *t, *st, *a),
                    [k, f, j, s, d, t] => (*k, *f, *j, *s, *d, *t, "", ""),
                    _ => return None,
                };
                Some(Closing {
                    exec_id,
                    lost: kind == "lost",
                    handed: kind == "handoff",
                    fire_id: fire.to_string(),
                    attempt: dead_attempt(job, sched, started, attempts),
                    dead_node: dead.to_string(),
                    target: target.to_string(),
                })
            })
            .collect())
    }

    async fn closed(&self, exec_id: &str) -> Result<()> {
        let _: i64 = self.conn().hdel(self.keys.closing(), exec_id).await?;
        Ok(())
    }

    async fn cancel(&self, exec: &Execution, retry: bool) -> Result<Cancel> {
        let r: Vec<String> = CANCEL
            .key(self.keys.fire(&exec.fire_id))
            .key(self.keys.inflight())
            .key(self.keys.open_execs())
            .key(self.keys.lock(&exec.job_id))
            .key(self.keys.held(&exec.job_id))
            .key(self.keys.held_jobs())
            .arg(&exec.fire_id)
            .arg(&exec.id)
            .arg(encode(exec)?)
            .arg(&exec.error)
            .arg(exec.end_ms.unwrap_or_else(super::now_ms))
            .arg(self.keys.stops(""))
            .arg(super::STOPS_TTL_MS)
            .arg(self.keys.exec_channel())
            .arg(if retry { "1" } else { "0" })
            .arg(self.keys.queue(""))
            .arg(self.keys.fire(""))
            .arg(self.lock_ttl())
            .arg(self.timing.misfire_threshold_ms)
            .invoke_async(&mut self.conn())
            .await?;
        fail::fail_point!("lose_cancel_reply", |_| Err(crate::failpoints::lost_reply("lose_cancel_reply")));
        match (r.first().map(String::as_str), r.get(1)) {
            (Some("CANCELLED"), _) => Ok(Cancel::Cancelled),
            (Some("RUNNING"), Some(node)) => Ok(Cancel::Running { node: node.clone() }),
            (Some("NOT_OPEN"), Some(state)) => Ok(Cancel::NotOpen(state.clone())),
            (Some("UNKNOWN"), _) => Ok(Cancel::Unknown),
            (Some("BADKEY"), why) => {
                Err(Error::Corrupt { key: self.keys.fire(&exec.fire_id), reason: why.cloned().unwrap_or_default() })
            }
            _ => Err(unexpected("cancel", &r)),
        }
    }

    async fn promote_held(&self, fence: &Fence, lock_ttl_ms: u64) -> Result<Vec<String>> {
        let r: Vec<String> = PROMOTE
            .key(self.keys.held_jobs())
            .key(self.keys.inflight())
            .key(self.keys.lease())
            .arg(fence.to_string())
            .arg(self.keys.held(""))
            .arg(self.keys.lock(""))
            .arg(self.keys.fire(""))
            .arg(lock_ttl_ms.max(1))
            .arg(self.timing.misfire_threshold_ms)
            .arg(PROMOTE_JOBS)
            .invoke_async(&mut self.conn())
            .await?;
        match r.first().map(String::as_str) {
            Some("FENCED") => Err(Error::Fenced(format!("lease {fence} is no longer held"))),
            Some("BADKEY") => {
                Err(Error::Corrupt { key: self.keys.held_jobs(), reason: r.get(1).cloned().unwrap_or_default() })
            }
            _ => Ok(r),
        }
    }

    async fn held_count(&self, job_id: &str) -> Result<usize> {
        Ok(self.conn().llen(self.keys.held(job_id)).await?)
    }

    async fn take_stops(&self, node: &str) -> Result<Vec<StopRequest>> {
        let key = self.keys.stops(node);
        let taken: Option<Vec<String>> = redis::cmd("LPOP").arg(&key).arg(100).query_async(&mut self.conn()).await?;
        let mut out = Vec::new();
        for s in taken.unwrap_or_default() {
            match serde_json::from_str::<StopRequest>(&s) {
                Ok(r) => out.push(r),
                // Not one cancel.lua wrote: said, and dropped (the list is a request, not a record).
                Err(e) => tracing::warn!(key = %key, error = %e, "a stop request that does not decode: dropped"),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ExecStore for RedisStore {
    async fn create_execution(&self, exec: &Execution) -> Result<bool> {
        self.save_if(exec, false, true).await
    }

    async fn update_execution(&self, exec: &Execution) -> Result<bool> {
        self.save_if(exec, false, true).await
    }

    async fn finish_execution(&self, exec: &Execution, release_lock: bool) -> Result<()> {
        self.save(exec, release_lock).await
    }

    async fn get_execution(&self, id: &str) -> Result<Option<Execution>> {
        Ok(self.records(&[id.to_string()]).await?.pop().flatten())
    }

    async fn list_executions(&self, f: &ExecFilter) -> Result<(Vec<Execution>, Option<String>)> {
        // A job's history is its newest executions and, apart, its older failures (`Keep`): a page
        // is the newest of both.
        // Across jobs: the shard's newest (`execution_recent` of them), and the open ones they may
        // have left behind; asked for an open state only, those alone.
        let indexes = match (&f.job_id, f.state) {
            (Some(j), _) => vec![self.keys.job_execs(j), self.keys.job_failed_execs(j)],
            (None, Some(s)) if !s.is_terminal() => vec![self.keys.open_execs()],
            (None, _) => vec![self.keys.execs(), self.keys.open_execs()],
        };
        let chunk = (f.limit + 1).clamp(16, 500);
        let mut out = Vec::new();
        let mut cursor = f.before.clone();
        let mut scanned = 0usize;
        let min = f.not_before.as_ref().map(|n| format!("[{n}")).unwrap_or_else(|| "-".to_string());
        loop {
            let max = cursor.as_ref().map(|c| format!("({c}")).unwrap_or_else(|| "+".to_string());
            let mut pipe = redis::pipe();
            for index in &indexes {
                pipe.cmd("ZRANGE")
                    .arg(index)
                    .arg(&max)
                    .arg(&min)
                    .arg("BYLEX")
                    .arg("REV")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(chunk);
            }
            let pages: Vec<Vec<String>> = pipe.query_async(&mut self.conn()).await?;
            // What the open set gave (its ended entries are dropped below).
            let from_open: std::collections::HashSet<String> = indexes
                .iter()
                .zip(&pages)
                .filter(|(index, _)| **index == self.keys.open_execs())
                .flat_map(|(_, page)| page.iter().cloned())
                .collect();
            // The newest `chunk` of the indexes together are among each one's newest `chunk`.
            let mut ids: Vec<String> = pages.into_iter().flatten().collect();
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids.dedup();
            ids.truncate(chunk);
            if ids.is_empty() {
                return Ok((out, None));
            }
            let records = self.records(&ids).await?;
            let mut expired = Vec::new();
            // Ended executions still in the open set (one a path ended without leaving it: a
            // reap's `lost`, a record closed apart): it is kept by what it finds.
            let mut ended = Vec::new();
            let mut page = Vec::with_capacity(ids.len());
            for (id, record) in ids.iter().zip(records) {
                match record {
                    Some(e) => {
                        if e.state.is_terminal() && from_open.contains(id) {
                            ended.push(id.clone());
                        }
                        page.push(e)
                    }
                    None => expired.push(id.clone()),
                }
            }
            if !ended.is_empty() {
                // Upkeep only: a listing does not fail for it (the next one tries again).
                let dropped: redis::RedisResult<i64> =
                    redis::cmd("ZREM").arg(self.keys.open_execs()).arg(&ended).query_async(&mut self.conn()).await;
                if let Err(e) = dropped {
                    tracing::debug!(error = %e, "cannot drop ended executions from the open set");
                }
            }
            scanned += ids.len();
            cursor = ids.last().cloned();
            for e in page {
                if f.matches(&e) {
                    out.push(e);
                    if out.len() > f.limit {
                        out.truncate(f.limit);
                        let next = out.last().map(|e| e.id.clone());
                        return Ok((out, next));
                    }
                }
            }
            if !expired.is_empty() {
                // Index entries whose record passed retention: drop them as we go.
                let mut pipe = redis::pipe();
                for index in &indexes {
                    pipe.zrem(index, &expired).ignore();
                }
                let _: () = pipe.query_async(&mut self.conn()).await?;
            }
            if ids.len() < chunk {
                return Ok((out, None));
            }
            if scanned >= MAX_LIST_SCAN {
                // A short page with a token: the client continues where the scan stopped.
                return Ok((out, cursor));
            }
        }
    }

    async fn subscribe(&self) -> broadcast::Receiver<Execution> {
        let rx = self.events.subscribe();
        self.wanted.notify_one();
        // Changes made before the relay is subscribed would not reach this watcher: wait for it,
        // but not forever (Redis may be down; the watcher then gets changes once it is back).
        let mut live = self.relay_live.clone();
        let _ = tokio::time::timeout(RESPONSE_TIMEOUT, live.wait_for(|l| *l)).await;
        rx
    }

    async fn expire_completed(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let ids: Vec<String> = EXPIRE
            .key(self.keys.completed())
            .key(self.keys.jobs())
            .key(self.keys.due())
            .key(self.keys.resume())
            .key(self.keys.chain())
            .arg(self.keys.job(""))
            .arg(now - self.retention_ms as i64)
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(ids)
    }

    async fn prune(&self, now: i64) -> Result<u64> {
        let cutoff = format!("({}", crate::execution::id_floor(now - self.retention_ms as i64));
        let mut removed = 0;
        for index in [self.keys.execs(), self.keys.open_execs()] {
            let n: i64 =
                redis::cmd("ZREMRANGEBYLEX").arg(index).arg("-").arg(&cutoff).query_async(&mut self.conn()).await?;
            removed += n.max(0) as u64;
        }
        Ok(removed)
    }
}

#[async_trait]
impl ClusterStore for RedisStore {
    async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    async fn clock_us(&self) -> Result<Option<i64>> {
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut self.conn()).await?;
        Ok(Some(secs.saturating_mul(1_000_000).saturating_add(micros)))
    }

    async fn uptime_ms(&self) -> Result<Option<u64>> {
        // Through Sentinel, a primary named lately is as new as a restarted one: the heartbeats
        // the nodes wrote to the previous one are not on it (`SentinelConn::on_this_primary`).
        // Applied even when INFO is not allowed (an ACL user without @dangerous).
        let on_primary = match &self.conn {
            Conn::Sentinel(s) => s.on_this_primary().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            _ => None,
        };
        let info: std::result::Result<String, _> = redis::cmd("INFO").arg("server").query_async(&mut self.conn()).await;
        let server = match info {
            Ok(info) => info
                .lines()
                .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| secs.saturating_mul(1000))
                .ok_or_else(|| Error::unavailable("INFO server has no uptime_in_seconds")),
            Err(e) => Err(e.into()),
        };
        match (server, on_primary) {
            (Ok(up), on) => Ok(Some(on.map_or(up, |on| up.min(on)))),
            (Err(_), Some(on)) => Ok(Some(on)),
            (Err(e), None) => Err(e),
        }
    }

    async fn probe_write(&self, node_id: &str) -> Result<()> {
        // A plain SET: Redis refuses it with OOM under maxmemory + noeviction, as it refuses claims.
        let _: () = redis::cmd("SET")
            .arg(self.keys.probe(node_id))
            .arg(super::now_ms())
            .arg("PX")
            .arg(10_000)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn acquire_lease(&self, node_id: &str, inc: &str, ttl_ms: u64, floor: u64) -> Result<LeaseAcquire> {
        let r: Vec<String> = LEASE_ACQUIRE
            .key(self.keys.lease())
            .key(self.keys.epoch())
            .arg(node_id)
            .arg(inc)
            .arg(ttl_ms.max(1))
            .arg(floor)
            .arg(super::MAX_EPOCH)
            .invoke_async(&mut self.conn())
            .await?;
        match (r.first().map(String::as_str), r.get(1)) {
            (Some("1"), Some(v)) => {
                if let Some(note) = r.get(3).filter(|n| !n.is_empty()) {
                    tracing::error!(key = %self.keys.epoch(), note = %note, "fencing epoch counter repaired");
                }
                // The script writes the epoch as digits: the fence's wire form is the stored value.
                Fence::parse(v)
                    .filter(|f| f.to_string() == *v)
                    .map(LeaseAcquire::Acquired)
                    .ok_or_else(|| unexpected("lease_acquire", &r))
            }
            (Some("0"), v) => Ok(LeaseAcquire::Held(v.and_then(|v| Fence::parse(v)))),
            (Some("ERR"), Some(why)) => Err(Error::Corrupt { key: self.keys.epoch(), reason: why.clone() }),
            _ => Err(unexpected("lease_acquire", &r)),
        }
    }

    async fn renew_lease(&self, fence: &Fence, ttl_ms: u64) -> Result<bool> {
        let r: i64 = RENEW
            .key(self.keys.lease())
            .arg(fence.to_string())
            .arg(ttl_ms.max(1))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(r == 1)
    }

    async fn release_lease(&self, fence: &Fence) -> Result<bool> {
        let r: i64 = LEASE_RELEASE.key(self.keys.lease()).arg(fence.to_string()).invoke_async(&mut self.conn()).await?;
        Ok(r == 1)
    }

    async fn lease(&self) -> Result<Option<Fence>> {
        let v: Option<String> = self.conn().get(self.keys.lease()).await?;
        Ok(v.and_then(|v| Fence::parse(&v)))
    }

    async fn lease_holder_live(&self) -> Result<bool> {
        let Some(holder) = self.lease().await? else { return Ok(false) };
        let live: Option<String> = self.conn().get(self.keys.hb(&holder.node_id)).await?;
        Ok(live.as_deref() == Some(holder.incarnation.as_str()))
    }

    async fn register(&self, node: &NodeRecord, ttl_ms: u64, replacing: Option<&str>) -> Result<Register> {
        let r: Vec<String> = REGISTER
            .key(self.keys.hb(&node.node_id))
            .key(self.keys.nodes())
            .key(self.keys.node(&node.node_id))
            .arg(&node.node_id)
            .arg(&node.incarnation)
            .arg(ttl_ms.max(1))
            .arg(encode(node)?)
            .arg(ttl_ms + self.node_keep_ms)
            .arg(replacing.unwrap_or(""))
            .invoke_async(&mut self.conn())
            .await?;
        match (r.first().map(String::as_str), r.get(1)) {
            (Some("OK"), _) => Ok(Register::Registered),
            (Some("ID_IN_USE"), other) => Ok(Register::InUse(other.cloned().unwrap_or_default())),
            _ => Err(unexpected("register", &r)),
        }
    }

    async fn beat(&self, node: &NodeRecord, ttl_ms: u64) -> Result<Beat> {
        let r: Vec<String> = BEAT
            .key(self.keys.hb(&node.node_id))
            .key(self.keys.node(&node.node_id))
            .key(self.keys.nodes())
            .key(self.keys.epoch())
            .key(self.keys.gone(&node.node_id))
            .arg(&node.incarnation)
            .arg(ttl_ms.max(1))
            .arg(encode(node)?)
            .arg(ttl_ms + self.node_keep_ms)
            .arg(&node.node_id)
            .invoke_async(&mut self.conn())
            .await?;
        // A counter that is not an epoch (forged or corrupted) is no floor: the next acquisition
        // repairs it.
        let epoch = r.get(1).and_then(|e| e.parse().ok()).filter(|e| *e <= super::MAX_EPOCH).unwrap_or(0);
        match r.first().map(String::as_str) {
            Some("OK") => Ok(Beat::Alive { epoch }),
            Some("RESUMED") => {
                tracing::warn!(node = %node.node_id, incarnation = %node.incarnation,
                    "heartbeat key had expired while nobody took this node's work over (a Redis outage or restart): taken back");
                Ok(Beat::Alive { epoch })
            }
            Some("REVOKED") => Ok(Beat::Revoked { epoch }),
            _ => Err(unexpected("beat", &r)),
        }
    }

    async fn keep_alive(&self, node: &str, inc: &str, ttl_ms: u64) -> Result<bool> {
        let r: i64 =
            KEEP_ALIVE.key(self.keys.hb(node)).arg(inc).arg(ttl_ms.max(1)).invoke_async(&mut self.conn()).await?;
        Ok(r == 1)
    }

    async fn deregister(&self, node: &NodeRecord) -> Result<()> {
        let hb = self.keys.hb(&node.node_id);
        let cur: Option<String> = self.conn().get(&hb).await?;
        if cur.as_deref() == Some(node.incarnation.as_str()) {
            let _: i64 = self.conn().del(&hb).await?;
        }
        let _: () = self.conn().pset_ex(self.keys.node(&node.node_id), encode(node)?, self.node_keep_ms.max(1)).await?;
        Ok(())
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        let ids: Vec<String> = self.conn().smembers(self.keys.nodes()).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let node_keys: Vec<String> = ids.iter().map(|i| self.keys.node(i)).collect();
        let jsons: Vec<Option<String>> = redis::cmd("MGET").arg(&node_keys).query_async(&mut self.conn()).await?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (id, json) in ids.into_iter().zip(jsons) {
            match json {
                Some(j) => out.push(decode(&j, &self.keys.node(&id))?),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            let _: i64 = self.conn().srem(self.keys.nodes(), &gone).await?;
        }
        out.sort_by(|a: &NodeRecord, b| a.node_id.cmp(&b.node_id));
        Ok(out)
    }

    async fn dead_nodes(&self) -> Result<Vec<String>> {
        let ids: Vec<String> = self.conn().smembers(self.keys.nodes()).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.exists(self.keys.hb(id));
        }
        let alive: Vec<bool> = pipe.query_async(&mut self.conn()).await?;
        Ok(ids.into_iter().zip(alive).filter(|(_, a)| !a).map(|(id, _)| id).collect())
    }
}

/// A job hash's fields as `job_from_fields` reads them.
const JOB_FIELDS: [&str; 13] = [
    "spec",
    "paused",
    "next_ms",
    "last_ms",
    "updated_ms",
    "writer",
    "file_spec",
    "file_paused",
    "rev",
    "fired",
    "pause",
    "fail_streak",
    "chain",
];

/// A pause state to set for put_job.lua: '1', '0', or '' when not given.
fn flag(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "1",
        Some(false) => "0",
        None => "",
    }
}

fn opt_ms(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".to_string())
}

fn parse_ms(v: Option<&String>, what: &str) -> Result<Option<i64>> {
    match v.map(String::as_str) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| Error::Corrupt { key: what.to_string(), reason: format!("not a number: {s}") }),
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt { key: "encode".into(), reason: e.to_string() })
}

fn decode<T: serde::de::DeserializeOwned>(s: &str, key: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt { key: key.to_string(), reason: e.to_string() })
}

/// One fire's reply from `accept.lua`.
fn accept_reply(s: &str) -> Accept {
    match s {
        "OK" => Accept::Accepted,
        "ALREADY" => Accept::Already,
        "TAKEN" => Accept::Taken,
        "STALE_EPOCH" => Accept::StaleEpoch,
        "NOT_LIVE" => Accept::NotLive,
        // UNKNOWN, or BADKEY: the fire's key is not a fire (refused, nothing written).
        _ => Accept::Unknown,
    }
}

/// One execution record from a row of `records.lua`: the record kept apart (`json`, '' when none)
/// and the fields of its fire's hash (`fields`, in the script's order), by section 4.2's rule: the
/// hash is the record of the fire's current execution (`next_exec` until it starts, `exec` after);
/// a record kept apart wins unless the hash holds this execution's outcome (`ended`). A hash in an
/// ended state without `ended` (a reap's `lost`, a start's `misfired`, whose records are written
/// apart just after) says the execution is still open: running if it started, else pending.
fn record_from(id: &str, fire: &str, json: &str, fields: &[String], keys: &Keys) -> Result<Option<Execution>> {
    let field = |i: usize| fields.get(i).map_or("", String::as_str);
    let [state, job, sched, epoch, attempts, manual, node, next_exec, exec, started, ended, error, output, stderr, jitter] =
        std::array::from_fn(field);
    let current = if next_exec.is_empty() { exec } else { next_exec };
    let in_hash = !state.is_empty() && current == id;
    let outcome_in_hash = in_hash && !ended.is_empty();
    if !outcome_in_hash && !json.is_empty() {
        return decode(json, &keys.exec(id)).map(Some);
    }
    if !in_hash {
        return Ok(None);
    }
    let corrupt = |reason: String| Error::Corrupt { key: keys.fire(fire), reason };
    let fs: FireState = state.parse().map_err(|e: super::UnknownFireState| corrupt(e.to_string()))?;
    let ms = |s: &str| s.parse::<i64>().ok();
    let has_started = next_exec.is_empty() && !started.is_empty();
    let open = if has_started { ExecState::Running } else { ExecState::Pending };
    let state = match fs {
        FireState::Dispatching | FireState::Accepted | FireState::Queued | FireState::Held | FireState::Pending => {
            ExecState::Pending
        }
        FireState::Running => ExecState::Running,
        _ if ended.is_empty() => open,
        FireState::Succeeded => ExecState::Succeeded,
        FireState::Failed => ExecState::Failed,
        FireState::TimedOut => ExecState::TimedOut,
        FireState::Skipped => ExecState::Skipped,
        FireState::Misfired => ExecState::Misfired,
        FireState::Lost => ExecState::Lost,
        FireState::Superseded => ExecState::Superseded,
        FireState::Cancelled => ExecState::Cancelled,
    };
    let tried: u32 = attempts.parse().unwrap_or(0);
    Ok(Some(Execution {
        id: id.to_string(),
        job_id: if job.is_empty() { crate::execution::job_of_fire(fire).to_string() } else { job.to_string() },
        fire_id: fire.to_string(),
        // An ended scheduled fire's hash leaves its instant to its id (finish.lua).
        scheduled_ms: ms(sched)
            .or_else(|| crate::execution::fire_due_ms(fire))
            .ok_or_else(|| corrupt(format!("sched '{sched}' is not a number")))?,
        start_ms: if has_started { ms(started) } else { None },
        end_ms: ms(ended),
        node_id: node.to_string(),
        attempt: if next_exec.is_empty() { tried.max(1) } else { tried + 1 },
        state,
        error: error.to_string(),
        output: output.to_string(),
        stderr: stderr.to_string(),
        manual: manual == "1",
        epoch: epoch.parse().unwrap_or(0),
        next_attempt_ms: None,
        jitter_ms: jitter.parse().unwrap_or(0),
    }))
}

/// The dead attempt a reap read (`reap.lua`'s reply, or a closing entry's fields).
fn dead_attempt(job: &str, sched: &str, started: &str, attempts: &str) -> super::DeadAttempt {
    super::DeadAttempt {
        job_id: job.to_string(),
        sched_ms: sched.parse().unwrap_or(0),
        started_ms: started.parse().ok(),
        attempt: attempts.parse().unwrap_or(1),
    }
}

fn unexpected(script: &str, reply: &[String]) -> Error {
    Error::unavailable(format!("{script}: unexpected reply {reply:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn housekeeping_comes_once_in_a_twentieth_of_the_cap_and_the_ttl_every_half_hour() {
        use IndexCare::{All, Nothing, Ttl};
        let h = Housekeeping::default();
        let big = Keep { last: 1000, failed: 1000 };
        let t0 = std::time::Instant::now();
        let due: Vec<IndexCare> = (0..34).map(|_| h.due_at("a", big, t0)).collect();
        // The first finish of a job here refreshes the TTL; every 16th (1000 / 20, at most 16)
        // housekeeps; the others do nothing.
        assert_eq!(due[0], Ttl);
        let at: Vec<usize> = due.iter().enumerate().filter(|(_, d)| **d == All).map(|(i, _)| i + 1).collect();
        assert_eq!(at, vec![16, 32]);
        assert_eq!(due.iter().filter(|d| **d == Nothing).count(), 31);
        // Another job counts on its own; a small cap is housekept at every finish.
        assert_eq!(h.due_at("b", big, t0), Ttl);
        let small = Keep { last: 2, failed: 0 };
        assert!((0..5).all(|_| h.due_at("c", small, t0) == All));
        let mid = Keep { last: 100, failed: 0 };
        let n = (0..20).filter(|_| h.due_at("d", mid, t0) == All).count();
        assert_eq!(n, 4, "every 5th of 20");
        // Half an hour on, the TTL again; ten minutes after the last housekeeping, housekeeping.
        let t1 = t0 + Housekeeping::TTL_EVERY;
        assert_eq!(h.due_at("b", big, t1), All, "housekeeping is older than ten minutes too");
        assert_eq!(h.due_at("b", big, t1), Nothing, "and then counted again");
        assert_eq!(h.due_at("b", big, t1 + Housekeeping::HOUSEKEEP_EVERY / 2), Nothing);
        // A job past the remembered ones gets both at every finish.
        let full = Housekeeping::default();
        for i in 0..Housekeeping::MAX_JOBS {
            full.due_at(&i.to_string(), big, t0);
        }
        assert_eq!(full.due_at("new", big, t0), All);
        assert_eq!(full.due_at("new", big, t0), All);
    }
}
