//! Every Redis key name rota uses, in one place. All keys of one shard of a cluster share one hash
//! tag (`{<prefix>:<cluster>:<shard>}`), so every script and every multi-key command stays in one
//! Redis Cluster slot, and several clusters can share one Redis without touching each other's keys.
//! A job belongs to shard `shard_of(job id, shards)`; so do its fires, executions and locks. The
//! one key outside every shard is the cluster's `meta` (how many shards it was created with).
#[derive(Debug, Clone)]
pub struct Keys {
    tag: String,
}

/// The most shards a cluster may have (`shards` in the config).
pub const MAX_SHARDS: u16 = 256;

impl Keys {
    /// Shard 0's keys: a one-shard cluster's, and those of a cluster made before shards existed.
    pub fn new(prefix: &str, cluster: &str) -> Keys {
        Keys::shard(prefix, cluster, 0)
    }

    /// The keys of shard `k`.
    pub fn shard(prefix: &str, cluster: &str, k: u16) -> Keys {
        Keys { tag: format!("{{{prefix}:{cluster}:{k}}}") }
    }

    /// Hash `shards` (decimal): how many shards the cluster was made with, written by its first
    /// node (`HSETNX`) and checked by every later one. Absent in a cluster made before shards, which
    /// is one shard. Its own hash tag, in no shard's slot: it is only ever read or written alone.
    pub fn meta(prefix: &str, cluster: &str) -> String {
        format!("{{{prefix}:{cluster}}}:meta")
    }

    /// Hash limit name -> its definition (JSON, `job::limit::Limit`): the cluster's concurrency
    /// limits, one set for every shard, under the `meta` hash tag (PROTOCOL §3.21).
    pub fn limits(prefix: &str, cluster: &str) -> String {
        format!("{{{prefix}:{cluster}}}:limits")
    }

    /// Sorted set holder (a fire id) -> lease expiry ms: a limit's slots held now.
    pub fn limit_slots(prefix: &str, cluster: &str, name: &str) -> String {
        format!("{{{prefix}:{cluster}}}:slots:{name}")
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
    /// Hash: `spec` (JSON), `paused`, `next_ms` (the watermark), `last_ms`, `updated_ms`.
    pub fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.tag)
    }
    /// Sorted set of job ids, all score 0, so ids list in lexical order (ZRANGE BYLEX).
    pub fn jobs(&self) -> String {
        format!("{}:jobs", self.tag)
    }
    /// Sorted set job id -> next_ms, for unpaused jobs.
    pub fn due(&self) -> String {
        format!("{}:due", self.tag)
    }
    /// Sorted set job id -> when it completed (no next fire left, unpaused, not waiting): a
    /// one-shot's is deleted after the execution retention (`expire.lua`).
    pub fn completed(&self) -> String {
        format!("{}:completed", self.tag)
    }
    /// Hash calendar name -> its definition (JSON, `job::calendar::CalendarDef`): this shard's
    /// copy of every calendar (PROTOCOL §3.24).
    pub fn calendars(&self) -> String {
        format!("{}:calendars", self.tag)
    }
    /// Set of calendar names being deleted: no job is put naming one.
    pub fn calendars_deleted(&self) -> String {
        format!("{}:calendars:deleted", self.tag)
    }
    /// Sorted set job id -> the instant of the fire whose end sets its next fire (`after_previous`
    /// jobs waiting: the job hash's `chain`).
    pub fn chain(&self) -> String {
        format!("{}:chain", self.tag)
    }
    /// String, present while a fire id is remembered (retention).
    pub fn fire(&self, fire_id: &str) -> String {
        format!("{}:fire:{fire_id}", self.tag)
    }
    /// String holding the fire id that owns the job's no-overlap lock.
    pub fn lock(&self, job_id: &str) -> String {
        format!("{}:lock:{job_id}", self.tag)
    }
    /// List of the fire ids waiting for the job's no-overlap lock (concurrency replace and buffer:
    /// PROTOCOL §3.20), oldest first.
    pub fn held(&self, job_id: &str) -> String {
        format!("{}:held:{job_id}", self.tag)
    }
    /// Sorted set of the job ids with a held list (score 0): the master's sweep hands an expired
    /// lock on to their oldest held fire.
    pub fn held_jobs(&self) -> String {
        format!("{}:held", self.tag)
    }
    /// String: one execution record as JSON, expiring after retention.
    pub fn exec(&self, id: &str) -> String {
        format!("{}:exec:{id}", self.tag)
    }
    /// Sorted set of the shard's newest execution ids across jobs (`execution_recent` of them),
    /// score 0: ids sort by time lexically.
    pub fn execs(&self) -> String {
        format!("{}:execs", self.tag)
    }
    /// Sorted set of the open (pending or running) execution ids across jobs, same form: those the
    /// newest may have left behind.
    pub fn open_execs(&self) -> String {
        format!("{}:execs:open", self.tag)
    }
    /// The same index for one job: its newest executions (`Keep::last`).
    pub fn job_execs(&self, job_id: &str) -> String {
        format!("{}:execs:job:{job_id}", self.tag)
    }
    /// A job's failed executions older than those in `job_execs`, kept besides them
    /// (`Keep::failed`); same form.
    pub fn job_failed_execs(&self, job_id: &str) -> String {
        format!("{}:execs:failed:{job_id}", self.tag)
    }
    /// What an execution's key starts with (`exec` is this plus the id): for a script that trims a
    /// job's history and so deletes records it finds in an index.
    pub fn exec_prefix(&self) -> String {
        format!("{}:exec:", self.tag)
    }
    /// String: the execution made by TriggerJob for (job, idempotency key).
    pub fn idem(&self, job_id: &str, key: &str) -> String {
        format!("{}:idem:{job_id}:{key}", self.tag)
    }
    /// Set of node ids ever seen (pruned when their record expires).
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.tag)
    }
    /// String: a node's last heartbeat record as JSON.
    pub fn node(&self, node_id: &str) -> String {
        format!("{}:node:{node_id}", self.tag)
    }
    /// String `<node>:<epoch>:<incarnation>`: the master lease (PX ttl).
    pub fn lease(&self) -> String {
        format!("{}:lease", self.tag)
    }
    /// String: the highest fencing epoch ever issued.
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.tag)
    }
    /// String, a few seconds' TTL: the write-probe of a node's readiness check.
    pub fn probe(&self, node_id: &str) -> String {
        format!("{}:probe:{node_id}", self.tag)
    }
    /// String holding a node's live incarnation (PX node ttl); gone = the node is dead.
    pub fn hb(&self, node_id: &str) -> String {
        format!("{}:hb:{node_id}", self.tag)
    }
    /// The incarnations of a node whose running work the master took over (re-run or recorded
    /// lost): one of them may never beat again, even though its key merely expired.
    pub fn gone(&self, node_id: &str) -> String {
        format!("{}:gone:{node_id}", self.tag)
    }
    /// Hash exec id -> a dead attempt still to close (record it `lost`, alert): written by the reap
    /// in the same step as its decision, deleted once the caller has closed it. A reap whose reply is
    /// lost leaves its entry here for the master's next sweep.
    pub fn closing(&self) -> String {
        format!("{}:closing", self.tag)
    }
    /// List: fire ids waiting in a node's durable queue, at normal priority; the base name the
    /// scripts derive the other levels' lists and the doorbell from (`queue_lists`, `bell`; the
    /// prelude's `queue_list`, PROTOCOL section 3.22).
    pub fn queue(&self, node_id: &str) -> String {
        format!("{}:q:{node_id}", self.tag)
    }
    /// The lists of a node's durable queue, one per priority, highest first (`Priority::ALL`):
    /// `q:<node>:hi`, `q:<node>`, `q:<node>:lo` (a node id holds no ':', so none is another's).
    pub fn queue_lists(&self, node_id: &str) -> [String; 3] {
        let q = self.queue(node_id);
        [format!("{q}:hi"), q.clone(), format!("{q}:lo")]
    }
    /// List of at most one entry: rung by every push into a node's queue, blocked on (BLPOP) by
    /// the node while its queue is empty, deleted by a take that finds the queue empty.
    pub fn bell(&self, node_id: &str) -> String {
        format!("{}:bell", self.queue(node_id))
    }
    /// List: fire ids a node has taken (accepted or running); removed when the outcome is recorded.
    pub fn processing(&self, node_id: &str) -> String {
        format!("{}:p:{node_id}", self.tag)
    }
    /// List: stop requests for a node's running fires (CancelExecution, `cancel.lua`), JSON
    /// `{fire, exec, why}`, taken by the node at its rescan (`take_stops`). PX `STOPS_TTL_MS`.
    pub fn stops(&self, node_id: &str) -> String {
        format!("{}:stops:{node_id}", self.tag)
    }
    /// Sorted set fire id -> dispatch deadline, for fires in `dispatching`.
    pub fn inflight(&self) -> String {
        format!("{}:inflight", self.tag)
    }
    /// Zset: paused job id -> the `until` of its pause (PauseJob), for the master to resume it then.
    pub fn resume(&self) -> String {
        format!("{}:resume", self.tag)
    }
    /// List of poisoned queue entries, kept with the reason (never dropped).
    pub fn dlq(&self) -> String {
        format!("{}:dlq", self.tag)
    }
    /// List: copies of execution records written in a final state, waiting for the history store
    /// (PostgreSQL); pushed only while `archive_on` exists. The scripts derive this name (and
    /// `archive_on`'s) from the change channel's hash tag: `<tag>:archive`.
    pub fn archive(&self) -> String {
        format!("{}:archive", self.tag)
    }
    /// String, present while a node archives (PX retention): the scripts push to `archive` only then.
    pub fn archive_on(&self) -> String {
        format!("{}:archive:on", self.tag)
    }
    /// String `<node>:<incarnation>`: the one node copying `archive` to PostgreSQL (PX a few seconds).
    pub fn archive_lease(&self) -> String {
        format!("{}:archive:lease", self.tag)
    }
    /// Pub/sub channel carrying execution changes (JSON) to watchers on every node.
    pub fn exec_channel(&self) -> String {
        format!("{}:chan:exec", self.tag)
    }
}

/// The shard a job belongs to among `shards`: CRC-16/XMODEM of its id (the checksum Redis Cluster
/// uses for slots: stable across processes, versions and platforms, unlike Rust's hasher) modulo
/// the number of shards. A fire id names its job, so its shard follows without a lookup.
pub fn shard_of(job_id: &str, shards: u16) -> u16 {
    let mut crc: u16 = 0;
    for b in job_id.bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % shards.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis's own check value for its CRC16 (`src/crc16.c`: "123456789" -> 0x31C3); the shard
    /// must never move with a release.
    #[test]
    fn a_jobs_shard_is_crc16_xmodem_of_its_id() {
        assert_eq!(shard_of("123456789", u16::MAX), 0x31C3);
        assert_eq!(shard_of("123456789", 16), 0x31C3 % 16);
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0, "no shards reads as one");
        let mut seen = [0u32; 16];
        for i in 0..1600 {
            seen[usize::from(shard_of(&format!("job-{i}"), 16))] += 1;
        }
        assert!(seen.iter().all(|n| (50..=150).contains(n)), "spread over 16 shards: {seen:?}");
    }

    #[test]
    fn each_shard_has_its_own_tag_and_the_meta_key_none() {
        assert_eq!(Keys::shard("rota", "prod", 5).lease(), "{rota:prod:5}:lease");
        assert_eq!(Keys::new("rota", "prod").lease(), Keys::shard("rota", "prod", 0).lease());
        assert_eq!(Keys::meta("rota", "prod"), "{rota:prod}:meta");
    }

    #[test]
    fn all_keys_share_the_hash_tag() {
        let k = Keys::new("rota", "prod");
        for key in [
            k.job("a"),
            k.jobs(),
            k.job_failed_execs("a"),
            k.exec_prefix(),
            k.due(),
            k.fire("a@1"),
            k.lock("a"),
            k.exec("x"),
            k.execs(),
            k.open_execs(),
            k.job_execs("a"),
            k.idem("a", "k"),
            k.nodes(),
            k.node("n1"),
            k.archive(),
            k.archive_on(),
            k.archive_lease(),
            k.exec_channel(),
        ] {
            assert!(key.starts_with("{rota:prod:0}:"), "{key}");
        }
    }

    /// The scripts name the archive keys from the change channel's hash tag (prelude.lua `archive`).
    #[test]
    fn the_archive_keys_are_the_change_channels_tag_and_a_suffix() {
        let k = Keys::new("rota", "prod");
        let tag = &k.exec_channel()[..=k.exec_channel().find('}').expect("a tag")];
        assert_eq!(k.archive(), format!("{tag}:archive"));
        assert_eq!(k.archive_on(), format!("{tag}:archive:on"));
    }
}
