//! Job definitions: what a job is, how it is validated, and when it fires next.
//! Owns `JobSpec` (the stored definition) and `Job` (a validated spec with its parsed schedule).
//! Uses: `schedule` (its own: which instants a job fires at, pure; with `cron` for expressions),
//! `calendar` (the time a job's calendars exclude), `invoke` for Quartz-style targets. Touches no
//! store: a job's calendars are resolved by whoever read it (`Job::with_calendars`).
pub mod calendar;
pub mod cron;
pub mod file;
pub mod invoke;
pub mod limit;
pub mod priority;
pub mod schedule;

pub use priority::Priority;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use self::calendar::Calendars;
use self::schedule::Schedule;
use crate::error::{Error, Result};

/// Longest job id; ids appear in Redis keys and log lines, so they stay short and plain.
pub const MAX_ID_LEN: usize = 128;
/// Description cap: jobs are read on every tick, so definitions stay small.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
pub const MAX_LABELS: usize = 32;
pub const MAX_LABEL_KEY_LEN: usize = 63;
pub const MAX_LABEL_VALUE_LEN: usize = 256;
/// Handler arguments are stored with the job and sent with every fire; 64 KiB is plenty for argv,
/// headers and a request body, and keeps a hostile job from bloating Redis.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;
pub const MAX_RETRIES: u32 = 100;
/// Retry backoff doubles per attempt up to this cap.
pub const MAX_RETRY_BACKOFF_MS: u64 = 3_600_000;
pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 1_000;
/// A week: a longer timeout is almost certainly a unit mistake.
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3_600_000;
/// Most executions a job may keep (`keep_last`, `keep_failed`): past this, a history belongs in a
/// history store, not in Redis.
pub const MAX_KEEP: u32 = 100_000;

/// What a fire does when an earlier fire of its job still runs (or waits to), cluster-wide: the
/// overlap policy. Every policy but `Allow` takes the job's no-overlap lock, so the job's runs never
/// overlap (PROTOCOL §3.20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Runs beside any earlier fire.
    #[default]
    Allow,
    /// Skip (and record) a fire while an earlier fire of the job is still running.
    Forbid,
    /// Stop the earlier fire's run (recorded `cancelled`, saying by which fire), then run this one
    /// once it has stopped. A fire that was waiting for the earlier one is skipped, replaced too.
    Replace,
    /// Wait for the earlier fire to end, then run, oldest first; at most this many fires wait
    /// (1: buffer_one), and a fire that finds them all taken is skipped and recorded.
    Buffer(u32),
}

/// Most fires a `buffer` job may keep waiting for its running one.
pub const MAX_BUFFER: u32 = 100;

impl Concurrency {
    /// Whether the job's fires take its no-overlap lock (every policy but `allow`).
    pub fn exclusive(self) -> bool {
        self != Concurrency::Allow
    }

    /// How many fires may wait for the lock (`replace`: the one replacing the running fire).
    pub fn held_limit(self) -> u32 {
        match self {
            Concurrency::Allow | Concurrency::Forbid => 0,
            Concurrency::Replace => 1,
            Concurrency::Buffer(n) => n,
        }
    }

    /// Its name in the jobs file, the CLI and listings: allow, forbid, replace, buffer_one, buffer.
    pub fn name(self) -> &'static str {
        match self {
            Concurrency::Allow => "allow",
            Concurrency::Forbid => "forbid",
            Concurrency::Replace => "replace",
            Concurrency::Buffer(1) => "buffer_one",
            Concurrency::Buffer(_) => "buffer",
        }
    }

    /// From a name (as `name` gives) and, for `buffer`, its limit (`buffer_limit`; 0: not given).
    /// The limit is refused with any other policy but `buffer_one`, where it may only say 1.
    pub fn from_parts(name: &str, limit: u32) -> Result<Concurrency> {
        let c = match name {
            "allow" | "" => Concurrency::Allow,
            "forbid" => Concurrency::Forbid,
            "replace" => Concurrency::Replace,
            "buffer_one" if limit <= 1 => return Ok(Concurrency::Buffer(1)),
            "buffer_one" => {
                return Err(Error::invalid("buffer_limit", "buffer_one keeps one fire waiting; give buffer for more"))
            }
            "buffer" if limit == 0 => {
                return Err(Error::invalid(
                    "buffer_limit",
                    format!("buffer needs how many fires may wait (1 to {MAX_BUFFER})"),
                ))
            }
            "buffer" => return Ok(Concurrency::Buffer(limit)),
            other => {
                return Err(Error::invalid(
                    "concurrency",
                    format!("unknown policy '{other}' (allow, forbid, replace, buffer_one, buffer)"),
                ))
            }
        };
        if limit != 0 {
            return Err(Error::invalid("buffer_limit", format!("only buffer takes a limit, not {name}")));
        }
        Ok(c)
    }

    /// The `buffer_limit` that goes with it in the API and the jobs file (0 but for `buffer`).
    pub fn limit(self) -> u32 {
        match self {
            Concurrency::Buffer(n) if n > 1 => n,
            _ => 0,
        }
    }
}

/// How a job's fire picks the node it runs on (`dispatch::decide` and `dispatch::pick`). A
/// master-only job runs on the master whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// The master while its load is under the threshold, else the least-loaded live node.
    #[default]
    Load,
    /// The live nodes that can run it, in turn (by node id; the turn is the master's, and starts
    /// over with a new master).
    RoundRobin,
    /// Any live node that can run it, at random.
    Random,
    /// The same node for every fire while membership is stable (rendezvous hashing of the job id
    /// over the live nodes that can run it: a node joining or leaving moves about 1/N of the jobs).
    ConsistentHash,
    /// The first live node of `failover_nodes` that can run it.
    Failover,
    /// The live node that can run it and ran this job longest ago (never: first), as the master
    /// remembers it.
    LeastRecentlyUsed,
}

impl Routing {
    /// Its name in the jobs file and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Routing::Load => "load",
            Routing::RoundRobin => "round_robin",
            Routing::Random => "random",
            Routing::ConsistentHash => "consistent_hash",
            Routing::Failover => "failover",
            Routing::LeastRecentlyUsed => "least_recently_used",
        }
    }
}

/// How many executions one fire of a job fans out into (XXL-JOB's sharding broadcast, PROTOCOL
/// §3.23): each shard is a fire of its own, told its index and the total (`ROTA_SHARD_INDEX`,
/// `ROTA_SHARD_TOTAL`), spread over distinct live nodes where there are enough.
/// Stored and written as a number (`shards = 4`) or `"all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shards {
    /// One execution per fire: not sharded.
    #[default]
    One,
    /// This many shards (2 to `MAX_SHARDS`).
    Count(u32),
    /// One shard per live node that can run the job, counted at each fire's claim (1 with none).
    PerNode,
}

/// Most shards one fire may fan out into (`Shards::Count`, and `Shards::PerNode` on a larger cluster).
pub const MAX_SHARDS: u32 = 128;

impl Shards {
    /// From a count as the API and the CLI give it: 0 and 1 both mean not sharded.
    pub fn count(n: u32) -> Shards {
        if n <= 1 {
            Shards::One
        } else {
            Shards::Count(n)
        }
    }

    /// Whether a fire of the job fans out into shards.
    pub fn is_sharded(self) -> bool {
        self != Shards::One
    }

    /// Its name in the jobs file, the CLI and `job get` ("1", "4", "all").
    pub fn name(self) -> String {
        match self {
            Shards::One => "1".into(),
            Shards::Count(n) => n.to_string(),
            Shards::PerNode => "all".into(),
        }
    }
}

impl std::str::FromStr for Shards {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Shards, String> {
        match s {
            "all" => Ok(Shards::PerNode),
            n => n
                .parse::<u32>()
                .map(Shards::count)
                // Not the value: a config error must not echo what may be a pasted secret.
                .map_err(|_| format!("not a shard count from 1 to {MAX_SHARDS}, or all")),
        }
    }
}

impl Serialize for Shards {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Shards::One => s.serialize_u32(1),
            Shards::Count(n) => s.serialize_u32(*n),
            Shards::PerNode => s.serialize_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for Shards {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Shards, D::Error> {
        /// A count or "all", saying what it expects of anything else (not serde's untagged words).
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Shards;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a shard count from 1 to {MAX_SHARDS}, or \"all\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> std::result::Result<Shards, E> {
                u32::try_from(n).map(Shards::count).map_err(|_| E::custom(format!("more than {MAX_SHARDS} shards")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> std::result::Result<Shards, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(n), &self)),
                }
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Shards, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visit)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    #[default]
    FireOnceNow,
    Skip,
    /// Each missed instant of the catch-up window runs, oldest first, up to the catch-up limit
    /// (`JobSpec::catch_up_limit`, `catch_up_window_ms`).
    FireAll,
}

/// Default and largest catch-up of a `fire_all` job: how many missed fires, and how far back.
pub const DEFAULT_CATCH_UP_LIMIT: u32 = 100;
pub const MAX_CATCH_UP_LIMIT: u32 = 1000;
pub const DEFAULT_CATCH_UP_WINDOW_MS: u64 = 3_600_000;
pub const MAX_CATCH_UP_WINDOW_MS: u64 = 7 * 86_400_000;
/// Most failed fires in a row `pause_after_failures` may wait for.
pub const MAX_PAUSE_AFTER_FAILURES: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    /// At most once: a fire whose node died mid-run is recorded lost, with an alert.
    #[default]
    Lost,
    /// At least once: it runs again elsewhere (idempotent jobs).
    Rerun,
}

/// A job definition as the user gives it and the store keeps it.
/// Stored as JSON in each job's Redis hash: fields at their default are left out (a million mostly
/// default jobs then take ~200 bytes less each), and come back as defaults when read.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSpec {
    pub id: String,
    /// The schedule is exactly one of `cron`, `every_ms`, `at_ms`, `after_previous_ms`
    /// (`schedule::Schedule`).
    #[serde(skip_serializing_if = "is_default")]
    pub cron: String,
    /// A fixed interval (0: none), on a grid from `anchor_ms` (None: the Unix epoch).
    #[serde(skip_serializing_if = "is_default")]
    pub every_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor_ms: Option<i64>,
    /// One-shot instants (UTC epoch ms).
    #[serde(skip_serializing_if = "is_default")]
    pub at_ms: Vec<i64>,
    /// A fixed delay (0: none): each fire starts this long after the previous one ended.
    #[serde(skip_serializing_if = "is_default")]
    pub after_previous_ms: u64,
    /// No instant before this one, none after `end_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
    /// A stable per-job offset below this is added to every instant (0: none).
    #[serde(skip_serializing_if = "is_default")]
    pub spread_ms: u64,
    /// Each fire starts up to this much after its instant, a delay of its own derived from its
    /// fire id (`schedule::fire_jitter_ms`), recorded on its execution (0: none).
    #[serde(skip_serializing_if = "is_default")]
    pub jitter_ms: u64,
    /// Most fires the job makes, counted from its creation (`JobRecord::fired`); then it is
    /// completed. 0: no limit.
    #[serde(skip_serializing_if = "is_default")]
    pub max_fires: u32,
    /// A one-shot (`at`) job stays after it completed; without, it is deleted after the execution
    /// retention (`Store::expire_completed`).
    #[serde(skip_serializing_if = "is_default")]
    pub keep_completed: bool,
    /// Pause the job after this many scheduled fires failed in a row (failed, timed out or lost,
    /// after their retries), with a note and an alert. 0: never.
    #[serde(skip_serializing_if = "is_default")]
    pub pause_after_failures: u32,
    /// IANA name; empty means UTC.
    #[serde(skip_serializing_if = "is_default")]
    pub time_zone: String,
    pub handler: String,
    #[serde(skip_serializing_if = "is_default")]
    pub args: serde_json::Value,
    /// Quartz/RuoYi invoke target; when given, `handler` and `args` come from it.
    #[serde(skip_serializing_if = "is_default")]
    pub invoke: String,
    #[serde(skip_serializing_if = "is_default")]
    pub master_only: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub concurrency: Concurrency,
    #[serde(skip_serializing_if = "is_default")]
    pub misfire: Misfire,
    /// With `Misfire::FireAll`: most missed fires one catch-up runs (0: the default, 100).
    #[serde(skip_serializing_if = "is_default")]
    pub catch_up_limit: u32,
    /// With `Misfire::FireAll`: how far back a catch-up looks (0: the default, 1 h).
    #[serde(skip_serializing_if = "is_default")]
    pub catch_up_window_ms: u64,
    #[serde(skip_serializing_if = "is_default")]
    pub recovery: Recovery,
    /// 0 means no timeout.
    #[serde(skip_serializing_if = "is_default")]
    pub timeout_ms: u64,
    #[serde(skip_serializing_if = "is_default")]
    pub retries: u32,
    /// 0 means the default (1 s).
    #[serde(skip_serializing_if = "is_default")]
    pub retry_backoff_ms: u64,
    #[serde(skip_serializing_if = "is_default")]
    pub paused: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub description: String,
    #[serde(skip_serializing_if = "is_default")]
    pub labels: BTreeMap<String, String>,
    /// How many of the job's newest executions are kept, whatever their outcome; older ones are
    /// deleted before the retention age (see `keep_failed`). 0 means the node's default
    /// (`execution_keep_last`).
    #[serde(skip_serializing_if = "is_default")]
    pub keep_last: u32,
    /// How many failed (failed, timed out, lost) executions older than the newest `keep_last` are
    /// kept besides them: failures stay longer than successes. None means the node's default
    /// (`execution_keep_failed`); 0 keeps none beyond `keep_last`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_failed: Option<u32>,
    /// Tags an external worker must have to run this job's fires (each key with this value;
    /// `region = "eu"`); empty: any worker serving the handler. A built-in handler ignores it.
    #[serde(skip_serializing_if = "is_default")]
    pub selector: BTreeMap<String, String>,
    /// How a fire picks its node.
    #[serde(skip_serializing_if = "is_default")]
    pub routing: Routing,
    /// For `Routing::Failover`: node ids, first choice first (required then, refused otherwise).
    #[serde(skip_serializing_if = "is_default")]
    pub failover_nodes: Vec<String>,
    /// Which queue list its fires wait in on a busy node (`Priority`).
    #[serde(skip_serializing_if = "is_default")]
    pub priority: Priority,
    /// How many executions each fire fans out into (`Shards`).
    #[serde(skip_serializing_if = "is_default")]
    pub shards: Shards,
    /// Names of the calendars whose excluded time the job does not fire in (`calendar`), in
    /// order: the first that excludes an instant decides what happens to it.
    #[serde(default, skip_serializing_if = "is_default")]
    pub calendars: Vec<String>,
}

impl JobSpec {
    /// Whether a fire of this job may run on `node`: on any node, but for `Routing::Failover`
    /// only on one of its failover nodes (a fire that reaches another, stolen from a queue or
    /// taken to be recorded, goes to one of them or is recorded failed).
    pub fn may_run_on(&self, node: &str) -> bool {
        self.routing != Routing::Failover || self.failover_nodes.iter().any(|n| n == node)
    }
}

/// A worker id, an external handler's name, a tag's key or value: 1-128 characters of
/// `[A-Za-z0-9._:-]`.
pub fn is_tag_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// Whether a worker's `tags` have every key of `selector` with its value.
pub fn tags_match(tags: &BTreeMap<String, String>, selector: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| tags.get(k) == Some(v))
}

/// Per external handler a node has, the tags of each attached worker serving it (published in the
/// node's record, for routing by a job's selector).
pub type WorkerTags = BTreeMap<String, Vec<BTreeMap<String, String>>>;

/// Whether a node with `handlers` (and `worker_tags` for those its external workers serve) can run
/// a fire of `handler` for a job with `selector`: a built-in handler ignores the selector; an
/// external one needs an attached worker whose tags match it.
pub fn can_run(
    handlers: &[String],
    worker_tags: &WorkerTags,
    handler: &str,
    selector: &BTreeMap<String, String>,
) -> bool {
    if !handlers.iter().any(|h| h == handler) {
        return false;
    }
    match worker_tags.get(handler) {
        None => true,
        Some(sets) => selector.is_empty() || sets.iter().any(|t| tags_match(t, selector)),
    }
}

/// Most entries of a job's selector.
pub const MAX_SELECTOR: usize = 16;

/// A job as a jobs file declares it: the definition, and the pause state only when the file says
/// it. Pausing is an operator's action: a file that does not mention it leaves it as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Declared {
    /// The definition; its `paused` is unused (false).
    pub spec: JobSpec,
    pub paused: Option<bool>,
}

/// The definition fields in which two specs differ, named as in the API and the jobs file (in
/// their order there). The pause state is not part of a definition and is not compared.
pub fn differing_fields(a: &JobSpec, b: &JobSpec) -> Vec<&'static str> {
    // Destructured, so a new field of JobSpec cannot be forgotten here.
    let JobSpec {
        id,
        cron,
        every_ms,
        anchor_ms,
        at_ms,
        after_previous_ms,
        start_ms,
        end_ms,
        spread_ms,
        jitter_ms,
        max_fires,
        keep_completed,
        pause_after_failures,
        time_zone,
        handler,
        args,
        invoke,
        master_only,
        concurrency,
        misfire,
        catch_up_limit,
        catch_up_window_ms,
        recovery,
        timeout_ms,
        retries,
        retry_backoff_ms,
        paused: _,
        description,
        labels,
        keep_last,
        keep_failed,
        selector,
        routing,
        failover_nodes,
        priority,
        shards,
        calendars,
    } = a;
    let pairs = [
        ("id", *id == b.id),
        ("cron", *cron == b.cron),
        ("every", *every_ms == b.every_ms),
        ("anchor", *anchor_ms == b.anchor_ms),
        ("at", *at_ms == b.at_ms),
        ("after_previous", *after_previous_ms == b.after_previous_ms),
        ("start_time", *start_ms == b.start_ms),
        ("end_time", *end_ms == b.end_ms),
        ("spread", *spread_ms == b.spread_ms),
        ("jitter", *jitter_ms == b.jitter_ms),
        ("max_fires", *max_fires == b.max_fires),
        ("keep_completed", *keep_completed == b.keep_completed),
        ("pause_after_failures", *pause_after_failures == b.pause_after_failures),
        ("time_zone", *time_zone == b.time_zone),
        ("handler", *handler == b.handler),
        ("args", *args == b.args),
        ("invoke", *invoke == b.invoke),
        ("master_only", *master_only == b.master_only),
        ("concurrency", *concurrency == b.concurrency),
        ("misfire", *misfire == b.misfire),
        ("catch_up_limit", *catch_up_limit == b.catch_up_limit),
        ("catch_up_window", *catch_up_window_ms == b.catch_up_window_ms),
        ("recovery", *recovery == b.recovery),
        ("timeout", *timeout_ms == b.timeout_ms),
        ("retries", *retries == b.retries),
        ("retry_backoff", *retry_backoff_ms == b.retry_backoff_ms),
        ("description", *description == b.description),
        ("labels", *labels == b.labels),
        ("keep_last", *keep_last == b.keep_last),
        ("keep_failed", *keep_failed == b.keep_failed),
        ("selector", *selector == b.selector),
        ("routing", *routing == b.routing),
        ("failover_nodes", *failover_nodes == b.failover_nodes),
        ("priority", *priority == b.priority),
        ("shards", *shards == b.shards),
        ("calendars", *calendars == b.calendars),
    ];
    pairs.into_iter().filter(|(_, same)| !same).map(|(name, _)| name).collect()
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A validated job: the spec plus its schedule, and its calendars once resolved.
#[derive(Debug, Clone)]
pub struct Job {
    pub spec: JobSpec,
    pub schedule: Schedule,
    /// Empty until `with_calendars` (a job naming none has none to resolve). Unresolved, its
    /// instants are the schedule's; the scheduler checks each against the calendars at its claim.
    pub calendars: Calendars,
}

impl Job {
    /// Validates every field except the handler name (which needs the node's registry) and
    /// normalises the spec (an invoke target is split into handler and args).
    pub fn new(mut spec: JobSpec) -> Result<Job> {
        validate_id(&spec.id)?;
        let schedule = Schedule::of(&spec)?;
        if !spec.invoke.trim().is_empty() {
            let t = invoke::parse(&spec.invoke).map_err(|e| Error::invalid("invoke", e))?;
            let args = serde_json::Value::Array(t.args);
            // A stored job keeps both forms; they must agree.
            let given = !spec.handler.is_empty() || !is_empty_args(&spec.args);
            if given && (spec.handler != t.handler || spec.args != args) {
                return Err(Error::invalid("invoke", "give either invoke or handler/args, not both"));
            }
            spec.handler = t.handler;
            spec.args = args;
        }
        if spec.handler.is_empty() {
            return Err(Error::invalid("handler", "is required (or give invoke)"));
        }
        if serde_json::to_vec(&spec.args).map(|v| v.len()).unwrap_or(usize::MAX) > MAX_ARGS_BYTES {
            return Err(Error::invalid("args", format!("larger than {MAX_ARGS_BYTES} bytes")));
        }
        if spec.timeout_ms > MAX_TIMEOUT_MS {
            return Err(Error::invalid("timeout", format!("longer than {MAX_TIMEOUT_MS} ms")));
        }
        if spec.retries > MAX_RETRIES {
            return Err(Error::invalid("retries", format!("{} is more than {MAX_RETRIES}", spec.retries)));
        }
        if let Concurrency::Buffer(n) = spec.concurrency {
            if n == 0 || n > MAX_BUFFER {
                return Err(Error::invalid("buffer_limit", format!("{n} is not between 1 and {MAX_BUFFER}")));
            }
        }
        if spec.retry_backoff_ms > MAX_RETRY_BACKOFF_MS {
            return Err(Error::invalid("retry_backoff", format!("longer than {MAX_RETRY_BACKOFF_MS} ms")));
        }
        if spec.description.len() > MAX_DESCRIPTION_LEN {
            return Err(Error::invalid("description", format!("longer than {MAX_DESCRIPTION_LEN} bytes")));
        }
        validate_labels(&spec.labels)?;
        if spec.selector.len() > MAX_SELECTOR {
            return Err(Error::invalid("selector", format!("more than {MAX_SELECTOR} tags")));
        }
        if let Some((k, _)) = spec.selector.iter().find(|(k, v)| !is_tag_name(k) || !is_tag_name(v)) {
            return Err(Error::invalid(
                format!("selector.{}", crate::redact::value(k)),
                "keys and values must be 1-128 characters of A-Z a-z 0-9 . _ : -",
            ));
        }
        validate_routing(spec.routing, &spec.failover_nodes)?;
        if spec.master_only && spec.routing != Routing::Load {
            return Err(Error::invalid(
                "routing",
                format!("a master-only job runs on the master: it takes no routing ({})", spec.routing.name()),
            ));
        }
        validate_shards(&spec)?;
        validate_catch_up(&spec)?;
        if spec.after_previous_ms > 0 && spec.shards.is_sharded() {
            // A sharded fire ends when its last shard does, on several nodes: a chain of them is
            // not built.
            return Err(Error::invalid("after_previous", "not with shards (a fire's shards end apart)"));
        }
        if spec.pause_after_failures > 0 && spec.shards.is_sharded() {
            // Each shard's outcome is its own: counting them as fires would pause a job after one
            // bad fire, or never while the other shards succeed.
            return Err(Error::invalid("pause_after_failures", "not with shards (each shard is a fire of its own)"));
        }
        if spec.pause_after_failures > MAX_PAUSE_AFTER_FAILURES {
            return Err(Error::invalid(
                "pause_after_failures",
                format!("{} is more than {MAX_PAUSE_AFTER_FAILURES}", spec.pause_after_failures),
            ));
        }
        if spec.keep_last > MAX_KEEP {
            return Err(Error::invalid("keep_last", format!("{} is more than {MAX_KEEP}", spec.keep_last)));
        }
        if let Some(n) = spec.keep_failed.filter(|n| *n > MAX_KEEP) {
            return Err(Error::invalid("keep_failed", format!("{n} is more than {MAX_KEEP}")));
        }
        validate_calendar_names(&spec.calendars)?;
        Ok(Job { spec, schedule, calendars: Calendars::default() })
    }

    /// The job with its calendars resolved (`Calendars::resolve` of what the store holds).
    pub fn with_calendars(mut self, calendars: Calendars) -> Job {
        self.calendars = calendars;
        self
    }

    /// The first fire instant strictly after `after_ms` (UTC epoch ms), if any: the schedule's,
    /// shaped by the job's calendars (an instant they record skipped counts; one they omit does
    /// not; one they move forward is where it moved).
    pub fn next_after_ms(&self, after_ms: i64) -> Option<i64> {
        self.next_step(after_ms).map(|s| s.at_ms)
    }

    /// The next `count` fires after `after_ms`, each with notes on what shaped it: the schedule's
    /// (`Schedule::preview`) and the calendars' (skipped by one, moved by one, instants one
    /// omits before it). What `scheduler::plan` claims, in order.
    /// `first`: a stored job's next fire, which the claim takes first whatever the search from
    /// `after_ms` finds (a fire moved forward from an instant before it is not found from there).
    pub fn preview(&self, after_ms: i64, count: usize, first: Option<i64>) -> Vec<schedule::Upcoming> {
        let next = |t: i64| {
            let mut step = self.next_step(t)?;
            if let Some(f) = first.filter(|f| *f > t && *f < step.at_ms) {
                if self.calendars.verdict(f) == calendar::Verdict::Allowed {
                    let notes = vec!["moved forward by a calendar from an earlier instant".to_string()];
                    return Some(schedule::Shaped { at_ms: f, notes, skipped: false, moved: true });
                }
            }
            // A checkpoint is no fire: look on past it (a few times, each a bounded search; past
            // them the preview ends, where the scheduler would go on passing them without a fire).
            for _ in 0..8 {
                if step.what != calendar::StepKind::Checkpoint {
                    return Some(calendar_shaped(&self.schedule, step));
                }
                step = self.next_step(step.at_ms)?;
            }
            (step.what != calendar::StepKind::Checkpoint).then(|| calendar_shaped(&self.schedule, step))
        };
        self.schedule.preview_with(after_ms, count, &next)
    }

    /// `next_after_ms` saying what the calendars made of the instant.
    pub fn next_step(&self, after_ms: i64) -> Option<calendar::Step> {
        if self.schedule.after_previous_ms().is_some() {
            // A chain's instants come from its fires' ends; its calendars act at each claim.
            return self
                .schedule
                .next_after_ms(after_ms)
                .map(|at_ms| calendar::Step { at_ms, what: calendar::StepKind::Fire { omitted: None } });
        }
        self.calendars.next(&self.schedule, after_ms)
    }

    /// Delay before retry number `retry` (1 for the first retry): doubling, capped.
    pub fn retry_delay_ms(&self, retry: u32) -> u64 {
        let base = if self.spec.retry_backoff_ms == 0 { DEFAULT_RETRY_BACKOFF_MS } else { self.spec.retry_backoff_ms };
        let factor = 1u64.checked_shl(retry.saturating_sub(1).min(32)).unwrap_or(u64::MAX);
        base.saturating_mul(factor).min(MAX_RETRY_BACKOFF_MS)
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// A `fire_all` job's catch-up: (most fires, how far back in ms). A `buffer` job's default
    /// is what its buffer holds besides the first (the rest would be skipped).
    pub fn catch_up(&self) -> (usize, i64) {
        let limit = match (self.spec.catch_up_limit, self.spec.concurrency) {
            (0, Concurrency::Buffer(n)) => DEFAULT_CATCH_UP_LIMIT.min(n + 1),
            (0, _) => DEFAULT_CATCH_UP_LIMIT,
            (n, _) => n,
        };
        let window = match self.spec.catch_up_window_ms {
            0 => DEFAULT_CATCH_UP_WINDOW_MS,
            ms => ms,
        };
        (limit as usize, window as i64)
    }
}

/// A preview's words for what a job's calendars made of one of its instants.
fn calendar_shaped(s: &Schedule, step: calendar::Step) -> schedule::Shaped {
    use calendar::StepKind;
    let local = |ms: i64| s.local(ms).format("%Y-%m-%d %H:%M:%S").to_string();
    let (notes, skipped, moved) = match step.what {
        StepKind::Fire { omitted: None } => (Vec::new(), false, false),
        StepKind::Fire { omitted: Some(c) } => {
            (vec![format!("calendar {c} omits the schedule's instants before it (not recorded)")], false, false)
        }
        StepKind::Skip { calendar, missing: false } => {
            (vec![format!("skipped by calendar {calendar}: recorded skipped, not run")], true, false)
        }
        StepKind::Skip { calendar, missing: true } => {
            (vec![format!("skipped: calendar {calendar} does not exist (recorded skipped, not run)")], true, false)
        }
        StepKind::Forwarded { from_ms, calendar } => {
            (vec![format!("moved forward by calendar {calendar} from {}", local(from_ms))], false, true)
        }
        StepKind::Checkpoint => (vec!["the calendars exclude a long stretch: nothing fires here".into()], true, true),
    };
    schedule::Shaped { at_ms: step.at_ms, notes, skipped, moved }
}

/// A job's calendar names: valid names, at most `MAX_JOB_CALENDARS`, none twice.
fn validate_calendar_names(names: &[String]) -> Result<()> {
    if names.len() > calendar::MAX_JOB_CALENDARS {
        return Err(Error::invalid("calendars", format!("more than {} calendars", calendar::MAX_JOB_CALENDARS)));
    }
    for (i, n) in names.iter().enumerate() {
        validate_name(&format!("calendars[{i}]"), n, 64)?;
        if names[..i].contains(n) {
            return Err(Error::invalid(format!("calendars[{i}]"), format!("'{n}' is named twice")));
        }
    }
    Ok(())
}

/// A catch-up is bounded, and only a `fire_all` job has one.
fn validate_catch_up(spec: &JobSpec) -> Result<()> {
    if spec.misfire != Misfire::FireAll {
        for (field, set) in
            [("catch_up_limit", spec.catch_up_limit != 0), ("catch_up_window", spec.catch_up_window_ms != 0)]
        {
            if set {
                return Err(Error::invalid(field, "only with misfire fire_all"));
            }
        }
    }
    if spec.misfire == Misfire::FireAll {
        // The catch-up's fires are claimed together: an exclusive policy would skip (forbid) or
        // stop (replace) all but one of them; a buffer makes them wait for each other, in order.
        match spec.concurrency {
            Concurrency::Forbid | Concurrency::Replace => {
                return Err(Error::invalid(
                    "misfire",
                    format!(
                        "fire_all runs the missed fires together, which concurrency {} would skip or stop all but one \
                         of (use buffer to run them one after another, or allow)",
                        spec.concurrency.name()
                    ),
                ))
            }
            Concurrency::Buffer(n) if spec.catch_up_limit > n + 1 => {
                return Err(Error::invalid(
                    "catch_up_limit",
                    format!(
                        "{} is more than the first fire and the {n} its buffer holds: the rest would be skipped",
                        spec.catch_up_limit
                    ),
                ))
            }
            _ => {}
        }
    }
    if spec.catch_up_limit > MAX_CATCH_UP_LIMIT {
        return Err(Error::invalid(
            "catch_up_limit",
            format!("{} is more than {MAX_CATCH_UP_LIMIT}", spec.catch_up_limit),
        ));
    }
    if spec.catch_up_window_ms != 0 && !(1_000..=MAX_CATCH_UP_WINDOW_MS).contains(&spec.catch_up_window_ms) {
        return Err(Error::invalid(
            "catch_up_window",
            format!("{} is not between 1s and 7 days", schedule::length_text(spec.catch_up_window_ms)),
        ));
    }
    Ok(())
}

/// A sharded job's fire fans out over the cluster, one shard per node where it can: what would pin
/// every shard to one node, or tie the shards of one fire to each other, is refused.
fn validate_shards(spec: &JobSpec) -> Result<()> {
    if let Shards::Count(n) = spec.shards {
        if n > MAX_SHARDS {
            return Err(Error::invalid("shards", format!("{n} is more than {MAX_SHARDS}")));
        }
    }
    if !spec.shards.is_sharded() {
        return Ok(());
    }
    let why = if spec.master_only {
        "a master-only job runs on the master alone: it cannot fan out over nodes"
    } else if spec.routing != Routing::Load {
        "a sharded job's shards are spread over the live nodes, least loaded first: it takes no routing strategy"
    } else if spec.concurrency != Concurrency::Allow {
        "a sharded job takes only concurrency allow (the shards of one fire run at once)"
    } else {
        return Ok(());
    };
    Err(Error::invalid("shards", format!("{why} (shards {})", spec.shards.name())))
}

#[cfg(test)]
mod shards_tests {
    use super::*;

    /// What a sharded job may be put with, and what it may not, naming `shards`.
    #[test]
    fn a_sharded_job_fans_out_over_nodes_or_is_refused_saying_why() {
        let spec = |shards: Shards, f: fn(&mut JobSpec)| {
            let mut s =
                JobSpec { id: "j".into(), cron: "@daily".into(), handler: "noop".into(), shards, ..Default::default() };
            f(&mut s);
            Job::new(s).map(|_| ()).map_err(|e| e.to_string())
        };
        assert!(spec(Shards::Count(128), |_| {}).is_ok());
        assert!(spec(Shards::PerNode, |_| {}).is_ok());
        // Not sharded: any of these is fine.
        assert!(spec(Shards::One, |s| s.concurrency = Concurrency::Forbid).is_ok());
        for (shards, f, says) in [
            (Shards::Count(129), (|_| {}) as fn(&mut JobSpec), "more than 128"),
            (Shards::Count(2), |s| s.master_only = true, "master-only"),
            (Shards::PerNode, |s| s.routing = Routing::Random, "no routing strategy"),
            (Shards::Count(3), |s| s.concurrency = Concurrency::Replace, "concurrency allow"),
        ] {
            let e = spec(shards, f).expect_err(says);
            assert!(e.contains("shards") && e.contains(says), "{e}");
        }
        assert_eq!(Shards::count(0), Shards::One);
        assert_eq!(Shards::count(1), Shards::One);
        assert_eq!("all".parse::<Shards>(), Ok(Shards::PerNode));
        assert_eq!("7".parse::<Shards>(), Ok(Shards::Count(7)));
        assert!("seven".parse::<Shards>().is_err());
        // Stored as a number or "all", and absent when not sharded.
        assert_eq!(serde_json::to_value(Shards::Count(4)).ok(), Some(serde_json::json!(4)));
        assert_eq!(serde_json::from_value::<Shards>(serde_json::json!("all")).ok(), Some(Shards::PerNode));
        let plain = JobSpec { id: "j".into(), ..Default::default() };
        assert!(!serde_json::to_string(&plain).unwrap_or_default().contains("shards"));
    }
}

/// Most nodes a job's `failover_nodes` may name.
pub const MAX_FAILOVER_NODES: usize = 16;

/// `failover_nodes` goes with `Routing::Failover`, and only with it: 1-16 distinct node ids.
fn validate_routing(routing: Routing, nodes: &[String]) -> Result<()> {
    match (routing, nodes.is_empty()) {
        (Routing::Failover, true) => {
            return Err(Error::invalid("failover_nodes", "routing failover needs the node ids to try, in order"))
        }
        (Routing::Failover, false) => {}
        (other, false) => {
            return Err(Error::invalid(
                "failover_nodes",
                format!("only for routing failover (this job's routing is {})", other.name()),
            ))
        }
        (_, true) => return Ok(()),
    }
    if nodes.len() > MAX_FAILOVER_NODES {
        return Err(Error::invalid("failover_nodes", format!("more than {MAX_FAILOVER_NODES} nodes")));
    }
    for (i, n) in nodes.iter().enumerate() {
        validate_name(&format!("failover_nodes[{i}]"), n, 64)?;
        if nodes[..i].contains(n) {
            return Err(Error::invalid(format!("failover_nodes[{i}]"), "names a node twice"));
        }
    }
    Ok(())
}

fn is_empty_args(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Ids go into Redis keys (`…:job:<id>`), fire ids (`<id>@<ms>`) and logs, so they are restricted
/// to characters that need no quoting anywhere and cannot contain the fire-id separator '@'.
pub fn validate_id(id: &str) -> Result<()> {
    validate_name("id", id, MAX_ID_LEN)
}

/// Shared rule for job and node ids.
pub fn validate_name(field: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if s.len() > max {
        return Err(Error::invalid(field, format!("longer than {max} characters")));
    }
    let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok {
        return Err(Error::invalid(field, format!("'{s}' must start with a letter or digit")));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(Error::invalid(field, format!("'{s}' has '{c}'; allowed are A-Z a-z 0-9 . _ -")));
    }
    Ok(())
}

pub(crate) fn validate_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid("labels", format!("more than {MAX_LABELS} labels")));
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_LABEL_KEY_LEN
            && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
        if !key_ok {
            return Err(Error::invalid(
                "labels",
                format!("key '{k}' must be 1-{MAX_LABEL_KEY_LEN} characters of A-Z a-z 0-9 . _ - /"),
            ));
        }
        if v.len() > MAX_LABEL_VALUE_LEN {
            return Err(Error::invalid("labels", format!("value of '{k}' is longer than {MAX_LABEL_VALUE_LEN} bytes")));
        }
    }
    Ok(())
}

/// Parses "250ms", "2s", "1.5s", "3m", "1h", "1d" (a bare number is seconds): the durations of the
/// command line, the jobs file and the `sleep` handler.
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 500ms, 2s, 1m, 1h)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        u => return Err(format!("'{s}' has unknown unit '{u}' (use ms, s, m, h or d)")),
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is out of range"))
}

/// UTC epoch ms to a `DateTime`, clamping nonsense to the epoch (records come from our own store).
/// A next-fire instant as a log value: RFC 3339, or `none` (a paused job, or a schedule that ended).
/// Logs carry values, not Rust's `Some(1796213740000)`.
pub fn next_fire_text(ms: Option<i64>) -> String {
    ms.map_or_else(|| "none".to_string(), |ms| ms_to_datetime(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

pub fn ms_to_datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_specs_leave_defaults_out_and_read_back_whole() {
        let plain =
            JobSpec { id: "j".into(), cron: "* * * * * *".into(), handler: "noop".into(), ..Default::default() };
        let json = serde_json::to_string(&plain).expect("json");
        assert_eq!(json, r#"{"id":"j","cron":"* * * * * *","handler":"noop"}"#);
        let full = JobSpec {
            time_zone: "Europe/Paris".into(),
            args: serde_json::json!([1]),
            master_only: true,
            concurrency: Concurrency::Forbid,
            recovery: Recovery::Rerun,
            timeout_ms: 5,
            retries: 2,
            paused: true,
            labels: [("k".to_string(), "v".to_string())].into(),
            ..plain.clone()
        };
        for spec in [plain, full] {
            let back: JobSpec = serde_json::from_str(&serde_json::to_string(&spec).expect("json")).expect("read");
            assert_eq!(back, spec);
        }
    }

    fn spec(id: &str, cron: &str) -> JobSpec {
        JobSpec { id: id.into(), cron: cron.into(), handler: "noop".into(), ..Default::default() }
    }

    #[test]
    fn validation_names_the_field() {
        let cases: Vec<(JobSpec, &str)> = vec![
            (spec("", "* * * * * *"), "id: is required"),
            (spec("a b", "* * * * * *"), "id: 'a b' has ' '"),
            (spec("-x", "* * * * * *"), "id: '-x' must start with a letter or digit"),
            (spec(&"a".repeat(129), "* * * * * *"), "id: longer than 128"),
            (spec("j", "0 0 0 32 * *"), "cron: field 'day-of-month' out of range: 32"),
            (spec("j", "* * *"), "cron: expected 5, 6 or 7 fields, got 3"),
            (
                JobSpec { time_zone: "Mars/Base".into(), ..spec("j", "* * * * * *") },
                "time_zone: unknown IANA time zone 'Mars/Base'",
            ),
            (JobSpec { handler: String::new(), ..spec("j", "* * * * * *") }, "handler: is required"),
            (JobSpec { retries: 101, ..spec("j", "* * * * * *") }, "retries: 101 is more than 100"),
            (JobSpec { keep_last: 100_001, ..spec("j", "* * * * * *") }, "keep_last: 100001 is more than 100000"),
            (JobSpec { keep_failed: Some(100_001), ..spec("j", "* * * * * *") }, "keep_failed: 100001 is more"),
            (
                JobSpec { invoke: "a.b(1,".into(), handler: String::new(), ..spec("j", "* * * * * *") },
                "invoke: at column",
            ),
            (JobSpec { invoke: "a.b()".into(), ..spec("j", "* * * * * *") }, "invoke: give either"),
            (JobSpec { description: "x".repeat(1025), ..spec("j", "* * * * * *") }, "description:"),
            (
                JobSpec { labels: [("bad key".to_string(), "v".to_string())].into(), ..spec("j", "* * * * * *") },
                "labels: key 'bad key'",
            ),
        ];
        for (s, want) in cases {
            let got = Job::new(s.clone()).expect_err(&format!("{s:?} should be invalid")).to_string();
            assert!(got.starts_with(want), "got {got:?}, want prefix {want:?}");
        }
    }

    #[test]
    fn invoke_target_fills_handler_and_args() {
        let s =
            JobSpec { invoke: "report.daily('eu', 3L, true)".into(), handler: String::new(), ..spec("j", "@daily") };
        let job = Job::new(s).expect("valid");
        assert_eq!(job.spec.handler, "report.daily");
        assert_eq!(job.spec.args, serde_json::json!(["eu", 3, true]));
        // The normalised spec (as stored) validates again.
        Job::new(job.spec.clone()).expect("normalised spec stays valid");
    }

    #[test]
    fn retry_delay_doubles_and_caps() {
        let job = Job::new(JobSpec { retry_backoff_ms: 500, ..spec("j", "* * * * * *") }).expect("valid");
        assert_eq!([1, 2, 3, 4].map(|r| job.retry_delay_ms(r)), [500, 1000, 2000, 4000]);
        assert_eq!(job.retry_delay_ms(60), MAX_RETRY_BACKOFF_MS);
        let dflt = Job::new(spec("j", "* * * * * *")).expect("valid");
        assert_eq!(dflt.retry_delay_ms(1), DEFAULT_RETRY_BACKOFF_MS);
    }

    #[test]
    fn next_after_ms_uses_zone() {
        let job = Job::new(JobSpec { time_zone: "Europe/Paris".into(), ..spec("j", "0 0 9 * * *") }).expect("valid");
        // 2026-01-15T00:00:00Z -> 09:00 Paris (UTC+1) = 08:00Z
        let after = Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap().timestamp_millis();
        let want = Utc.with_ymd_and_hms(2026, 1, 15, 8, 0, 0).unwrap().timestamp_millis();
        assert_eq!(job.next_after_ms(after), Some(want));
    }
}
