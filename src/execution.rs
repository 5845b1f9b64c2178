//! Executions: one attempt to run one fire of a job, and the fire identity they share.
//! Owns the record kept for every run (`Execution`) and its life cycle (`ExecState`). Pure data.
use serde::{Deserialize, Serialize};

/// Output kept per execution; the rest is dropped and the record says so.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// Error text kept per execution.
pub const MAX_ERROR_BYTES: usize = 4 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecState {
    Pending,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Skipped,
    Misfired,
    Lost,
    /// A late result from a node incarnation that no longer owned the fire: evidence, not the outcome.
    Superseded,
    /// Stopped, or taken out before it began, by CancelExecution: `error` says who asked and why.
    Cancelled,
}

impl ExecState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecState::Pending | ExecState::Running)
    }

    /// A run that did not succeed: what a job's history keeps longer (`Keep::failed`).
    pub fn is_failure(self) -> bool {
        matches!(self, ExecState::Failed | ExecState::TimedOut | ExecState::Lost)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecState::Pending => "pending",
            ExecState::Running => "running",
            ExecState::Succeeded => "succeeded",
            ExecState::Failed => "failed",
            ExecState::TimedOut => "timed_out",
            ExecState::Skipped => "skipped",
            ExecState::Misfired => "misfired",
            ExecState::Lost => "lost",
            ExecState::Superseded => "superseded",
            ExecState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<ExecState> {
        Some(match s {
            "pending" => ExecState::Pending,
            "running" => ExecState::Running,
            "succeeded" => ExecState::Succeeded,
            "failed" => ExecState::Failed,
            "timed_out" => ExecState::TimedOut,
            "skipped" => ExecState::Skipped,
            "misfired" => ExecState::Misfired,
            "lost" => ExecState::Lost,
            "superseded" => ExecState::Superseded,
            "cancelled" => ExecState::Cancelled,
            _ => return None,
        })
    }
}

/// One attempt at a fire. Its `id` names the fire and sorts by creation time
/// (`new_execution_id`). Stored as JSON where it is kept apart from its fire (section 4.2 of
/// docs/PROTOCOL.md), and as the fire hash's fields while it is the fire's current attempt.
/// Empty fields are left out of the JSON (every retained record is Redis memory): `stderr`,
/// `start_ms`, `end_ms`, `next_attempt_ms` always were; `error`, `output` and `manual` are since
/// issue 14's history store (about 38 bytes a record), because the release before this one already
/// reads them as empty when absent. A rolling upgrade must therefore come from that release (or
/// later), not from an older one, which required them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: String,
    pub job_id: String,
    pub fire_id: String,
    pub scheduled_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
    pub node_id: String,
    pub attempt: u32,
    pub state: ExecState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// What the run printed (shell: stdout; http: the response body), capped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// What the run printed on standard error (shell), capped; kept apart from `output` so a
    /// failure's cause is not buried in the program's normal output. Empty in records made before
    /// it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    pub epoch: u64,
    /// Set while the fire will be tried again after this execution: a failed or timed-out attempt
    /// with retries left (when the retry is due), an attempt lost with its node and re-run by
    /// recovery, or handed to the master (when it was queued again). None on a fire's last
    /// execution, so a client knows the fire's outcome is this record only when it is None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
    /// How long after its instant this fire waited before it started: its job's jitter
    /// (`schedule::fire_jitter_ms`); 0 for none, and for a retry or a re-run (late already).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jitter_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Execution {
    /// A new pending execution for `fire_id`.
    pub fn pending(job_id: &str, fire_id: String, scheduled_ms: i64, node_id: &str, attempt: u32) -> Execution {
        Execution {
            id: new_execution_id(&fire_id),
            job_id: job_id.to_string(),
            fire_id,
            scheduled_ms,
            start_ms: None,
            end_ms: None,
            node_id: node_id.to_string(),
            attempt,
            state: ExecState::Pending,
            error: String::new(),
            output: String::new(),
            stderr: String::new(),
            manual: false,
            epoch: 0,
            next_attempt_ms: None,
            jitter_ms: 0,
        }
    }

    /// A manual fire's first execution (TriggerJob): its fire is named by the same stamp as the
    /// execution, so the fire's token bounds its executions' ids (`first_exec_id_of`).
    pub fn manual(job_id: &str, scheduled_ms: i64, node_id: &str) -> Execution {
        let stamp = new_stamp();
        let fire_id = manual_fire_id(job_id, &stamp);
        let mut e = Execution::pending(job_id, fire_id, scheduled_ms, node_id, 1);
        e.id = format!("{stamp}{EXEC_ID_SEP}{}", e.fire_id);
        e.manual = true;
        e
    }

    /// The record of this fire when the job's no-overlap lock was held by an earlier fire.
    /// `why`: the lock was held by an earlier fire (forbid), or the fires waiting for it fill the
    /// job's buffer (`store::skipped_by_lock` says which).
    pub fn skipped_by_lock(&self, why: &str) -> Execution {
        let mut e = self.clone();
        e.state = ExecState::Skipped;
        e.end_ms = Some(crate::clock::now_ms());
        e.set_error(why);
        e
    }

    /// The evidence record of a late result from an incarnation that no longer owned the fire: a
    /// record of its own (new id), so the fire's real outcome is never overwritten.
    pub fn superseded(&self) -> Execution {
        let mut e = self.clone();
        e.id = new_execution_id(&self.fire_id);
        e.state = ExecState::Superseded;
        // Evidence only: whatever follows the fire is said by its real records.
        e.next_attempt_ms = None;
        e.set_error(format!(
            "superseded: execution {} finished as {} on a node declared dead meanwhile ({})",
            self.id,
            self.state.as_str(),
            self.error
        ));
        e
    }

    /// Sets the error text, capped.
    pub fn set_error(&mut self, e: impl Into<String>) {
        self.error = truncate_utf8(e.into(), MAX_ERROR_BYTES);
    }

    /// Ends the record now in `state`, saying why. Whoever closes a record decides afresh whether
    /// another attempt follows (`next_attempt_ms`), so a retry announced earlier is forgotten.
    pub fn close(&mut self, state: ExecState, why: impl Into<String>) {
        self.state = state;
        self.next_attempt_ms = None;
        self.end_ms = Some(crate::clock::now_ms());
        self.set_error(why);
    }
}

/// The error of an attempt a node did not run but handed to another node (`skipped`): "not run
/// here: <why>; handed to <node>...". The fire goes on as the next attempt there, so a waiter
/// (`rota job trigger --wait`) reads it as open, not as the fire's end.
pub fn hand_over_error(why: &str, to: &str) -> String {
    format!("not run here: {why}; handed to {to}")
}

/// Whether a skipped attempt's error says it was handed to another node (`hand_over_error`).
pub fn is_hand_over(error: &str) -> bool {
    error.starts_with("not run here: ") && error.contains("; handed to ")
}

/// Fire id of a scheduled fire: the job and the scheduled instant, never "now", so a replay after a
/// restart or failover names the same fire.
pub fn scheduled_fire_id(job_id: &str, scheduled_ms: i64) -> String {
    format!("{job_id}@{scheduled_ms}")
}

/// A fire's identity, parsed once: `<job>@<scheduled ms>` for a scheduled fire, `<job>@m:<token>`
/// for a manual one (job ids never hold '@'); one shard of a sharded job's fire adds
/// `/<index>of<total>` (`report@1767000000000/2of3`, PROTOCOL §3.23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FireId<'a> {
    pub job: &'a str,
    pub instant: FireInstant<'a>,
    /// Which shard of its fire this is (None: the fire is not sharded).
    pub shard: Option<Shard>,
}

/// One shard of a sharded fire: its index (from 0) and how many shards the fire has. Each shard is
/// a fire of its own in the store (claimed, run, retried and recovered alone); they share the job
/// and the instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    pub index: u32,
    pub total: u32,
}

impl Shard {
    /// What a fire that is not sharded is told: shard 0 of 1 (as XXL-JOB tells a job that is not
    /// a broadcast), so a handler reads the same two values either way.
    pub const WHOLE: Shard = Shard { index: 0, total: 1 };

    /// The suffix a shard's fire id carries: `/<index>of<total>`.
    pub fn suffix(self) -> String {
        format!("/{}of{}", self.index, self.total)
    }

    /// Parses a suffix's text after its '/' (`2of3`): an index below a total of 1 to `MAX_SHARDS`.
    fn parse(s: &str) -> Option<Shard> {
        let (i, t) = s.split_once("of")?;
        let digits = |x: &str| !x.is_empty() && x.len() <= 3 && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(i) || !digits(t) {
            return None;
        }
        let (index, total): (u32, u32) = (i.parse().ok()?, t.parse().ok()?);
        // One written form per shard: no leading zeros.
        let canonical = Shard { index, total }.suffix();
        (index < total && total <= crate::job::MAX_SHARDS && canonical[1..] == *s).then_some(Shard { index, total })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireInstant<'a> {
    /// The scheduled instant, UTC ms.
    Scheduled(i64),
    /// A manual fire's token (TriggerJob).
    Manual(&'a str),
}

/// Why a string is not a fire id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FireIdError {
    #[error("not '<job>@<instant>'")]
    NoInstant,
    #[error("the job id part is not a job id")]
    BadJob,
    #[error("the instant part is neither milliseconds nor 'm:<token>'")]
    BadInstant,
    #[error("the shard part is not '/<index>of<total>' (an index below a total of at most 128)")]
    BadShard,
}

impl<'a> FireId<'a> {
    pub fn parse(s: &'a str) -> Result<FireId<'a>, FireIdError> {
        let (job, instant) = s.rsplit_once('@').ok_or(FireIdError::NoInstant)?;
        crate::job::validate_id(job).map_err(|_| FireIdError::BadJob)?;
        // Neither an instant nor a token holds '/': what follows one is the shard.
        let (instant, shard) = match instant.split_once('/') {
            Some((instant, shard)) => (instant, Some(Shard::parse(shard).ok_or(FireIdError::BadShard)?)),
            None => (instant, None),
        };
        let instant = match instant.strip_prefix("m:") {
            Some(token) if !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
                FireInstant::Manual(token)
            }
            None if !instant.is_empty() && instant.len() <= 19 && instant.bytes().all(|b| b.is_ascii_digit()) => {
                FireInstant::Scheduled(instant.parse().map_err(|_| FireIdError::BadInstant)?)
            }
            _ => return Err(FireIdError::BadInstant),
        };
        Ok(FireId { job, instant, shard })
    }

    /// The id of the whole fire this one is a shard of (itself when it is not a shard).
    pub fn whole(s: &str) -> &str {
        match FireId::parse(s) {
            Ok(FireId { shard: Some(_), .. }) => s.rsplit_once('/').map_or(s, |(whole, _)| whole),
            _ => s,
        }
    }
}

/// The shard a fire id names, if it is one shard of a sharded fire (None: not sharded, or an id
/// that does not parse).
pub fn shard_in(fire_id: &str) -> Option<Shard> {
    FireId::parse(fire_id).ok().and_then(|f| f.shard)
}

/// The shard a fire id names; `Shard::WHOLE` for a fire that is not sharded (or an id that does
/// not parse, which names no shard).
pub fn shard_of_fire(fire_id: &str) -> Shard {
    shard_in(fire_id).unwrap_or(Shard::WHOLE)
}

/// Whether `fire` is the fire `asked` names, or one of its shards when `asked` is a whole fire.
pub fn fire_matches(asked: &str, fire: &str) -> bool {
    fire == asked || fire.strip_prefix(asked).is_some_and(|rest| rest.starts_with('/'))
}

/// How one fire went, from some of its executions (`group_fires`): a sharded fire's shards together.
#[derive(Debug, Clone, PartialEq)]
pub struct FireGroup {
    /// The whole fire's id (no shard).
    pub fire_id: String,
    pub job_id: String,
    pub scheduled_ms: i64,
    pub shard_total: u32,
    pub state: ExecState,
    pub succeeded: u32,
    pub ended_otherwise: u32,
    pub open: u32,
    /// Shards none of the given executions is of.
    pub unlisted: u32,
    /// The given executions of this fire, in the order given.
    pub execution_ids: Vec<String>,
}

/// Groups executions (newest first, as listed) by their whole fire, in the order of each fire's
/// first execution given. Each shard's outcome is its newest execution's (superseded evidence
/// aside): open while pending, running or with a next attempt. The fire succeeded once every shard
/// did; while a shard is open or has no execution given, it is running (if any execution began) or
/// pending; once all ended, the lowest shard that did not succeed gives its state.
pub fn group_fires(execs: &[Execution]) -> Vec<FireGroup> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_fire: std::collections::HashMap<&str, Vec<&Execution>> = std::collections::HashMap::new();
    for e in execs {
        let whole = FireId::whole(&e.fire_id);
        by_fire.entry(whole).or_insert_with(|| {
            order.push(whole);
            Vec::new()
        });
        if let Some(v) = by_fire.get_mut(whole) {
            v.push(e);
        }
    }
    order
        .into_iter()
        .map(|whole| {
            let group = by_fire.remove(whole).unwrap_or_default();
            let total = group.iter().map(|e| shard_of_fire(&e.fire_id).total).max().unwrap_or(1);
            // Each shard's newest execution (ids sort by when they were made).
            let mut last: std::collections::BTreeMap<u32, &Execution> = std::collections::BTreeMap::new();
            for e in group.iter().filter(|e| e.state != ExecState::Superseded) {
                let i = shard_of_fire(&e.fire_id).index;
                if last.get(&i).is_none_or(|l| l.id < e.id) {
                    last.insert(i, e);
                }
            }
            let open = |e: &Execution| !e.state.is_terminal() || e.next_attempt_ms.is_some();
            let succeeded = last.values().filter(|e| !open(e) && e.state == ExecState::Succeeded).count() as u32;
            let still = last.values().filter(|e| open(e)).count() as u32;
            let ended_otherwise = last.len() as u32 - succeeded - still;
            let unlisted = total.saturating_sub(last.len() as u32);
            let state = if succeeded == total {
                ExecState::Succeeded
            } else if still > 0 || unlisted > 0 {
                match group.iter().any(|e| e.start_ms.is_some()) {
                    true => ExecState::Running,
                    false => ExecState::Pending,
                }
            } else {
                last.values().find(|e| e.state != ExecState::Succeeded).map_or(ExecState::Failed, |e| e.state)
            };
            let first = group.first();
            FireGroup {
                fire_id: whole.to_string(),
                job_id: first.map(|e| e.job_id.clone()).unwrap_or_default(),
                scheduled_ms: first.map_or(0, |e| e.scheduled_ms),
                shard_total: total,
                state,
                succeeded,
                ended_otherwise,
                open: still,
                unlisted,
                execution_ids: group.iter().map(|e| e.id.clone()).collect(),
            }
        })
        .collect()
}

/// The fire id of one shard of the whole fire `whole`.
pub fn shard_fire_id(whole: &str, shard: Shard) -> String {
    format!("{whole}{}", shard.suffix())
}

/// The job a fire id names: its part before the last '@' (the whole id when it has none).
pub fn job_of_fire(fire_id: &str) -> &str {
    fire_id.rsplit_once('@').map_or(fire_id, |(job, _)| job)
}

/// The instant a scheduled fire is due; None for a manual fire (`<job>@m:<token>`).
pub fn fire_due_ms(fire_id: &str) -> Option<i64> {
    match FireId::parse(fire_id).ok()?.instant {
        FireInstant::Scheduled(ms) => Some(ms),
        FireInstant::Manual(_) => None,
    }
}

/// Fire id of a manual fire: its own namespace (`@m:`), so it can never equal a scheduled fire's id.
pub fn manual_fire_id(job_id: &str, token: &str) -> String {
    format!("{job_id}@m:{token}")
}

/// The lowest execution id a fire's executions can have, for listing them without scanning older
/// ones: a manual fire's token is its first execution's stamp (or, made before ids named their
/// fire, its whole id); a scheduled fire's executions are made from its claim on, at most
/// `FIRE_AHEAD_MS` before its instant (a minute of margin here, for clock corrections). None when
/// the id gives no bound (a token that is not a stamp).
pub fn first_exec_id_of(fire: &FireId<'_>) -> Option<String> {
    match fire.instant {
        FireInstant::Manual(token) => stamp_ms(token).is_some().then(|| token.to_string()),
        FireInstant::Scheduled(ms) => {
            let ms = u64::try_from(ms.saturating_sub(60_000)).unwrap_or(0).min((1 << 48) - 1);
            Some(format!("{:08x}-{:04x}-0000-0000-000000000000", ms >> 16, ms & 0xffff))
        }
    }
}

/// The prefix of every execution id made at or after `ms` (UTC): ids below it were made before.
/// What a trim of records past retention compares ids with (Redis indexes, the history store).
pub fn id_floor(ms: i64) -> String {
    let ms = ms.max(0) as u64;
    format!("{:08x}-{:04x}", (ms >> 16) & 0xffff_ffff, ms & 0xffff)
}

/// The last stamp this process made: its milliseconds and counter.
static LAST_STAMP: std::sync::Mutex<(u64, u16)> = std::sync::Mutex::new((0, 0));

/// What separates an execution id's stamp from its fire id: a character no fire id holds.
pub const EXEC_ID_SEP: char = '~';
/// Length of a stamp: `xxxxxxxx-xxxx-7xxx`, shaped as the first three groups of a UUIDv7.
const STAMP_LEN: usize = 18;

/// A stamp: 48 bits of milliseconds of the cluster clock and a 12-bit counter, written as the first
/// three groups of a UUIDv7. Stamps made by one process rise strictly (the counter, starting at a
/// random value in each millisecond, carries into the milliseconds as `Uuid::now_v7` does), and
/// stamps made on different nodes sort by when they were made even when a node's own clock is off.
fn new_stamp() -> String {
    let now = u64::try_from(crate::clock::now_ms()).unwrap_or(0);
    let (ms, seq) = {
        let mut last = LAST_STAMP.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = if now > last.0 {
            (now, rand::random::<u16>() & 0x7ff)
        } else if last.1 < 0xfff {
            (last.0, last.1 + 1)
        } else {
            (last.0 + 1, 0)
        };
        *last
    };
    format!("{:08x}-{:04x}-7{:03x}", (ms >> 16) & 0xffff_ffff, ms & 0xffff, seq)
}

/// The milliseconds a stamp (or a whole UUIDv7, which starts with one) was made at.
fn stamp_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| b.get(r).filter(|x| x.iter().all(u8::is_ascii_hexdigit));
    let (hi, lo, ver) = (hex(0..8)?, hex(9..13)?, hex(14..STAMP_LEN)?);
    if b.get(8) != Some(&b'-') || b.get(13) != Some(&b'-') || ver[0] != b'7' {
        return None;
    }
    let text = |x: &[u8]| std::str::from_utf8(x).ok().and_then(|t| i64::from_str_radix(t, 16).ok());
    Some((text(hi)? << 16) | text(lo)?)
}

/// An execution id: `<stamp>~<fire id>`. The stamp (`new_stamp`) makes ids sort by when they were
/// made, as the whole UUIDv7s of earlier releases did (and sort with them: their first 18
/// characters are a stamp); the fire id says where the record is: the fire hash holds its current
/// attempt's (section 4.2 of docs/PROTOCOL.md). Two executions of one fire made in the same
/// millisecond on one node differ by the counter; on two nodes, by the counter's random start.
pub fn new_execution_id(fire_id: &str) -> String {
    format!("{}{EXEC_ID_SEP}{fire_id}", new_stamp())
}

/// The fire an execution id names; None for an id made before ids named their fire (a UUIDv7).
pub fn fire_of_execution(id: &str) -> Option<&str> {
    id.split_once(EXEC_ID_SEP).map(|(_, fire)| fire)
}

/// When an execution was made, from its id (its stamp, or an older id's UUIDv7).
pub fn execution_ms(id: &str) -> Option<i64> {
    stamp_ms(id)
}

/// Why a string is not an execution id: neither `<stamp>~<fire id>` nor (made before ids named
/// their fire) a UUID.
pub fn execution_id_problem(id: &str) -> Option<String> {
    match id.split_once(EXEC_ID_SEP) {
        Some((stamp, fire)) => {
            if stamp.len() != STAMP_LEN || stamp_ms(stamp).is_none() {
                return Some("its part before '~' is not a stamp ('xxxxxxxx-xxxx-7xxx', hex)".into());
            }
            FireId::parse(fire).err().map(|e| format!("its part after '~' is not a fire id: {e}"))
        }
        None => uuid::Uuid::parse_str(id).is_err().then(|| "is not '<stamp>~<fire id>'".to_string()),
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate_utf8(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str("…[truncated]");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Empty fields are not stored, and a record in the older form (every field written) still
    /// reads the same.
    #[test]
    fn a_record_leaves_its_empty_fields_out_and_reads_the_older_form() {
        let mut e = Execution::pending("j", scheduled_fire_id("j", 1000), 1000, "n1", 1);
        e.state = ExecState::Succeeded;
        let json = serde_json::to_string(&e).expect("json");
        for absent in ["error", "output", "manual", "stderr", "start_ms", "end_ms", "next_attempt_ms"] {
            assert!(!json.contains(&format!("\"{absent}\"")), "{absent} in {json}");
        }
        assert_eq!(serde_json::from_str::<Execution>(&json).expect("read"), e);
        let older = json.replacen('{', "{\"error\":\"\",\"output\":\"\",\"manual\":false,", 1);
        assert_eq!(serde_json::from_str::<Execution>(&older).expect("read the older form"), e);
        let mut m = e.clone();
        (m.manual, m.error) = (true, "boom".into());
        assert_eq!(serde_json::from_str::<Execution>(&serde_json::to_string(&m).expect("json")).expect("read"), m);
    }

    #[test]
    fn id_floor_orders_like_ids() {
        let id =
            uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_700_000_000, 500_000_000)).to_string();
        assert!(id_floor(1_700_000_000_499).as_str() < id.as_str());
        assert!(id_floor(1_700_000_000_501).as_str() > id.as_str());
    }

    #[test]
    fn fire_ids_parse_once() {
        let s = scheduled_fire_id("report.daily", 1_767_000_000_000);
        assert_eq!(
            FireId::parse(&s),
            Ok(FireId { job: "report.daily", instant: FireInstant::Scheduled(1_767_000_000_000), shard: None })
        );
        let m = manual_fire_id("j", "01a2-b3");
        assert_eq!(FireId::parse(&m), Ok(FireId { job: "j", instant: FireInstant::Manual("01a2-b3"), shard: None }));
        assert_eq!(FireId::parse("no-instant"), Err(FireIdError::NoInstant));
        assert_eq!(FireId::parse("a b@1"), Err(FireIdError::BadJob));
        for bad in ["j@", "j@m:", "j@12x", "j@m:a b", "j@99999999999999999999"] {
            assert_eq!(FireId::parse(bad), Err(FireIdError::BadInstant), "{bad}");
        }
        assert_eq!(job_of_fire("j@m:x"), "j");
        assert_eq!(fire_due_ms(&s), Some(1_767_000_000_000));
        assert_eq!(fire_due_ms(&m), None);
    }

    #[test]
    fn a_shards_fire_id_names_its_shard_and_its_whole_fire() {
        let s = shard_fire_id(&scheduled_fire_id("j", 1000), Shard { index: 2, total: 3 });
        assert_eq!(s, "j@1000/2of3");
        let f = FireId::parse(&s).expect("shard fire");
        assert_eq!(
            (f.job, f.instant, f.shard),
            ("j", FireInstant::Scheduled(1000), Some(Shard { index: 2, total: 3 }))
        );
        assert_eq!(FireId::whole(&s), "j@1000");
        assert_eq!(FireId::whole("j@1000"), "j@1000");
        assert_eq!(shard_of_fire(&s), Shard { index: 2, total: 3 });
        assert_eq!(shard_of_fire("j@1000"), Shard::WHOLE);
        assert_eq!(fire_due_ms(&s), Some(1000));
        assert_eq!(job_of_fire(&s), "j");
        let m = shard_fire_id(&manual_fire_id("j", "abc"), Shard { index: 0, total: 2 });
        assert_eq!(
            FireId::parse(&m).map(|f| (f.instant, f.shard)),
            Ok((FireInstant::Manual("abc"), Some(Shard { index: 0, total: 2 })))
        );
        for bad in ["j@1/3of3", "j@1/0of0", "j@1/01of3", "j@1/1of129", "j@1/1", "j@1/", "j@1/aofb", "j@1/1of2/0of2"] {
            assert_eq!(FireId::parse(bad), Err(FireIdError::BadShard), "{bad}");
        }
        assert_eq!(FireId::parse("j@1/0of128").map(|f| f.shard), Ok(Some(Shard { index: 0, total: 128 })));
    }

    #[test]
    fn a_sharded_fire_goes_as_its_shards_went() {
        let rec = |fire: &str, state: ExecState, next: Option<i64>| {
            let mut e = Execution::pending("j", fire.to_string(), 1000, "n1", 1);
            e.state = state;
            e.start_ms = (state != ExecState::Pending).then_some(1000);
            e.next_attempt_ms = next;
            e
        };
        let s = |i: u32| format!("j@1000/{i}of3");
        // Newest first, as listed: shard 1 failed, then its retry succeeded.
        let failed = rec(&s(1), ExecState::Failed, Some(2000));
        let all = vec![
            rec(&s(1), ExecState::Succeeded, None),
            rec(&s(2), ExecState::Succeeded, None),
            rec(&s(0), ExecState::Succeeded, None),
            rec("j@999", ExecState::Failed, None),
        ];
        let mut all = all;
        all.insert(3, failed.clone());
        // Ids sort by when they were made: the retry (made first above) must be the newer.
        all[0].id = new_execution_id(&s(1));
        let g = group_fires(&all);
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].fire_id.as_str(), g[0].shard_total, g[0].state), ("j@1000", 3, ExecState::Succeeded));
        assert_eq!((g[0].succeeded, g[0].open, g[0].unlisted, g[0].execution_ids.len()), (3, 0, 0, 4));
        assert_eq!((g[1].fire_id.as_str(), g[1].shard_total, g[1].state), ("j@999", 1, ExecState::Failed));
        // One shard with a retry to come, one not listed: running.
        let g = group_fires(&[failed.clone(), rec(&s(0), ExecState::Succeeded, None)]);
        assert_eq!((g[0].state, g[0].open, g[0].unlisted, g[0].succeeded), (ExecState::Running, 1, 1, 1));
        // Every shard ended, one lost: the fire is lost.
        let g = group_fires(&[
            rec(&s(0), ExecState::Succeeded, None),
            rec(&s(1), ExecState::Lost, None),
            rec(&s(2), ExecState::Succeeded, None),
        ]);
        assert_eq!((g[0].state, g[0].ended_otherwise), (ExecState::Lost, 1));
        assert!(fire_matches("j@1000", &s(2)) && fire_matches(&s(2), &s(2)));
        assert!(!fire_matches("j@100", "j@1000/0of3") && !fire_matches(&s(1), &s(2)));
    }

    #[test]
    fn manual_and_scheduled_fire_ids_never_collide() {
        // A job id cannot contain '@' or ':', and a scheduled id has only digits after '@'.
        assert_eq!(scheduled_fire_id("j", 1000), "j@1000");
        assert!(manual_fire_id("j", "1000").starts_with("j@m:"));
        assert_ne!(scheduled_fire_id("j", 1000), manual_fire_id("j", "1000"));
    }

    /// The lower bound of a fire's execution ids: at or below every id made from its claim on, and
    /// above ids made well before it.
    #[test]
    fn a_fires_first_execution_id_bounds_its_executions() {
        let now = crate::clock::now_ms();
        let scheduled = scheduled_fire_id("j", now);
        let id = new_execution_id(&scheduled);
        let bound = first_exec_id_of(&FireId::parse(&scheduled).expect("fire")).expect("bound");
        assert!(bound <= id, "{bound} <= {id}");
        let later = scheduled_fire_id("j", now + 120_000);
        let bound = first_exec_id_of(&FireId::parse(&later).expect("fire")).expect("bound");
        assert!(bound > id, "an id two minutes before the fire is below its bound");
        let manual = Execution::manual("j", now, "n1");
        let bound = first_exec_id_of(&FireId::parse(&manual.fire_id).expect("fire")).expect("bound");
        assert!(bound.as_str() < manual.id.as_str() && manual.id.starts_with(&bound), "{bound} {}", manual.id);
        // A manual fire made before ids named their fire: its token is a whole UUIDv7.
        let old = uuid::Uuid::now_v7().to_string();
        assert_eq!(first_exec_id_of(&FireId::parse(&manual_fire_id("j", &old)).expect("fire")), Some(old.clone()));
        // A token that is not an execution id gives no bound (its fire is searched in full).
        assert_eq!(first_exec_id_of(&FireId::parse("j@m:abc").expect("fire")), None);
        assert!(first_exec_id_of(&FireId::parse("j@0").expect("fire")).is_some());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = truncate_utf8("ééé".to_string(), 3);
        assert_eq!(s, "é…[truncated]");
        assert_eq!(truncate_utf8("abc".into(), 3), "abc");
    }

    #[test]
    fn state_round_trips() {
        for s in [
            ExecState::Pending,
            ExecState::Running,
            ExecState::Succeeded,
            ExecState::Failed,
            ExecState::TimedOut,
            ExecState::Skipped,
            ExecState::Misfired,
            ExecState::Lost,
        ] {
            assert_eq!(ExecState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn execution_ids_sort_by_time() {
        let a = new_execution_id("z@1");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_execution_id("a@1");
        assert!(a < b);
        // Within a millisecond on one node, by the counter; and among the UUIDv7 ids of before.
        let (c, d) = (new_execution_id("z@1"), new_execution_id("a@1"));
        assert!(c < d, "{c} {d}");
        let old = uuid::Uuid::now_v7().to_string();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(old < new_execution_id("a@1"));
    }

    #[test]
    fn an_execution_id_names_its_fire_and_when_it_was_made() {
        let id = new_execution_id("report.daily@1767000000000");
        assert_eq!(fire_of_execution(&id), Some("report.daily@1767000000000"));
        assert!((execution_ms(&id).expect("ms") - crate::clock::now_ms()).abs() < 60_000);
        assert_eq!(execution_id_problem(&id), None);
        let old = uuid::Uuid::now_v7().to_string();
        assert_eq!((fire_of_execution(&old), execution_id_problem(&old)), (None, None));
        assert!(execution_ms(&old).is_some());
        for bad in [
            "",
            "x",
            "~j@1",
            "0190aaaa-bbbb-7ccc~",
            "0190aaaa-bbbb-7ccc~j",
            "0190aaaa-bbbb-6ccc~j@1",
            "0190aaaa-bbbb-7ccc-dd~j@1",
            "0190aaaa-bbbb-7ccz~j@1",
            "0190aaaa-bbbb-7ccc~a b@1",
        ] {
            assert!(execution_id_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(execution_ms("not-a-uuid"), None);
    }
}
