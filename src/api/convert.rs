//! Conversions between the wire types (`pb`) and the domain types. Input conversions validate and
//! name the field that is wrong; output conversions cannot fail.
use std::collections::BTreeMap;

use prost_types::{value::Kind, Duration as PbDuration, Value as PbValue};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::execution::{ExecState, Execution};
use crate::job::{Concurrency, JobSpec, Misfire, Priority, Recovery, Routing, Shards};
use crate::pb;
use crate::store::{JobRecord, Load, NodeRecord, Writer};

/// Deepest JSON nesting accepted in job arguments, so a hostile message cannot blow the stack.
const MAX_ARGS_DEPTH: usize = 32;

pub use crate::pb::{json_to_pb, timestamp, timestamp_ms};

fn duration_ms(field: &str, d: Option<&PbDuration>) -> Result<u64> {
    let Some(d) = d else { return Ok(0) };
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Err(Error::invalid(field, "must be a non-negative duration"));
    }
    let ms = (d.seconds as u64).saturating_mul(1000).saturating_add(d.nanos as u64 / 1_000_000);
    Ok(ms)
}

pub fn duration(ms: u64) -> Option<PbDuration> {
    (ms > 0).then(|| PbDuration { seconds: (ms / 1000) as i64, nanos: ((ms % 1000) * 1_000_000) as i32 })
}

pub fn json_from_pb(v: &PbValue, depth: usize) -> Result<Value> {
    if depth > MAX_ARGS_DEPTH {
        return Err(Error::invalid("args", format!("nested deeper than {MAX_ARGS_DEPTH} levels")));
    }
    Ok(match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => {
            // JSON has no NaN or infinity; integral values become integers so `3` stays `3`.
            if !n.is_finite() {
                return Err(Error::invalid("args", "numbers must be finite"));
            }
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Value::from(*n as i64)
            } else {
                Value::from(*n)
            }
        }
        Some(Kind::ListValue(l)) => {
            Value::Array(l.values.iter().map(|x| json_from_pb(x, depth + 1)).collect::<Result<_>>()?)
        }
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields.iter().map(|(k, x)| Ok((k.clone(), json_from_pb(x, depth + 1)?))).collect::<Result<_>>()?,
        ),
    })
}

/// One fire's summary (ListExecutions with group_by_fire).
pub fn fire_summary(g: &crate::execution::FireGroup) -> pb::FireSummary {
    pb::FireSummary {
        fire_id: g.fire_id.clone(),
        job_id: g.job_id.clone(),
        scheduled_time: Some(timestamp(g.scheduled_ms)),
        shard_total: g.shard_total,
        state: exec_state(g.state) as i32,
        shards_succeeded: g.succeeded,
        shards_ended_otherwise: g.ended_otherwise,
        shards_open: g.open,
        shards_unlisted: g.unlisted,
        execution_ids: g.execution_ids.clone(),
    }
}

pub fn job_spec(j: &pb::Job) -> Result<JobSpec> {
    let concurrency = match pb::ConcurrencyPolicy::try_from(j.concurrency) {
        Ok(pb::ConcurrencyPolicy::Unspecified | pb::ConcurrencyPolicy::Allow) => "allow",
        Ok(pb::ConcurrencyPolicy::Forbid) => "forbid",
        Ok(pb::ConcurrencyPolicy::Replace) => "replace",
        Ok(pb::ConcurrencyPolicy::BufferOne) => "buffer_one",
        Ok(pb::ConcurrencyPolicy::Buffer) => "buffer",
        Err(_) => return Err(Error::invalid("concurrency", format!("unknown value {}", j.concurrency))),
    };
    let concurrency = Concurrency::from_parts(concurrency, j.buffer_limit)?;
    let misfire = match pb::MisfirePolicy::try_from(j.misfire) {
        Ok(pb::MisfirePolicy::Unspecified | pb::MisfirePolicy::FireOnceNow) => Misfire::FireOnceNow,
        Ok(pb::MisfirePolicy::Skip) => Misfire::Skip,
        Ok(pb::MisfirePolicy::FireAll) => Misfire::FireAll,
        Err(_) => return Err(Error::invalid("misfire", format!("unknown value {}", j.misfire))),
    };
    let recovery = match pb::RecoveryPolicy::try_from(j.recovery) {
        Ok(pb::RecoveryPolicy::Unspecified | pb::RecoveryPolicy::Lost) => Recovery::Lost,
        Ok(pb::RecoveryPolicy::Rerun) => Recovery::Rerun,
        Err(_) => return Err(Error::invalid("recovery", format!("unknown value {}", j.recovery))),
    };
    let routing = match pb::RoutingStrategy::try_from(j.routing) {
        Ok(pb::RoutingStrategy::Unspecified | pb::RoutingStrategy::Load) => Routing::Load,
        Ok(pb::RoutingStrategy::RoundRobin) => Routing::RoundRobin,
        Ok(pb::RoutingStrategy::Random) => Routing::Random,
        Ok(pb::RoutingStrategy::ConsistentHash) => Routing::ConsistentHash,
        Ok(pb::RoutingStrategy::Failover) => Routing::Failover,
        Ok(pb::RoutingStrategy::LeastRecentlyUsed) => Routing::LeastRecentlyUsed,
        Err(_) => return Err(Error::invalid("routing", format!("unknown value {}", j.routing))),
    };
    let priority = match pb::Priority::try_from(j.priority) {
        Ok(pb::Priority::Unspecified | pb::Priority::Normal) => Priority::Normal,
        Ok(pb::Priority::High) => Priority::High,
        Ok(pb::Priority::Low) => Priority::Low,
        Err(_) => return Err(Error::invalid("priority", format!("unknown value {}", j.priority))),
    };
    let shards = match (j.shards, j.shards_per_node) {
        (n, false) => Shards::count(n),
        (0, true) => Shards::PerNode,
        (n, true) => return Err(Error::invalid("shards", format!("{n} with shards_per_node: give one or the other"))),
    };
    let mut spec = JobSpec {
        id: j.id.clone(),
        time_zone: j.time_zone.clone(),
        handler: j.handler.clone(),
        args: match &j.args {
            Some(v) => json_from_pb(v, 0)?,
            None => Value::Null,
        },
        invoke: j.invoke.clone(),
        master_only: j.master_only,
        concurrency,
        misfire,
        recovery,
        timeout_ms: duration_ms("timeout", j.timeout.as_ref())?,
        retries: j.retries,
        retry_backoff_ms: duration_ms("retry_backoff", j.retry_backoff.as_ref())?,
        // PutJob passes `paused` on by itself (unset keeps the stored state): see `put_job`.
        paused: j.paused.unwrap_or(false),
        description: j.description.clone(),
        labels: j.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>(),
        keep_last: j.keep_last,
        keep_failed: j.keep_failed,
        keep_completed: j.keep_completed,
        calendars: j.calendars.clone(),
        selector: j.selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        routing,
        failover_nodes: j.failover_nodes.clone(),
        priority,
        shards,
        ..JobSpec::default()
    };
    spec.catch_up_limit = j.catch_up_limit;
    spec.max_fires = j.max_fires;
    spec.pause_after_failures = j.pause_after_failures;
    spec.catch_up_window_ms = duration_ms("catch_up_window", j.catch_up_window.as_ref())?;
    set_schedule(&mut spec, j, crate::store::now_ms())?;
    Ok(spec)
}

/// The schedule fields of `j` into `spec` (`after` counted from `now_ms`); their ranges are the
/// job's to check (`job::schedule::Schedule::of`), the wire's shape is checked here.
fn set_schedule(spec: &mut JobSpec, j: &pb::Job, now_ms: i64) -> Result<()> {
    use pb::job::Schedule as S;
    match &j.schedule {
        None => {}
        Some(S::Cron(c)) => spec.cron = c.clone(),
        Some(S::Every(d)) => {
            spec.every_ms = duration_ms("every", Some(d))?;
            if spec.every_ms == 0 {
                return Err(Error::invalid("every", "must be longer than 0"));
            }
        }
        Some(S::At(at)) => {
            if at.times.is_empty() {
                return Err(Error::invalid("at", "needs at least one instant"));
            }
            spec.at_ms = at.times.iter().map(|t| instant_ms("at", t)).collect::<Result<_>>()?;
        }
        Some(S::AfterPrevious(d)) => {
            spec.after_previous_ms = duration_ms("after_previous", Some(d))?;
            if spec.after_previous_ms == 0 {
                return Err(Error::invalid("after_previous", "must be longer than 0"));
            }
        }
        Some(S::After(d)) => {
            let after = duration_ms("after", Some(d))?;
            if after < 1000 {
                return Err(Error::invalid("after", "must be 1s or more"));
            }
            let at = i64::try_from(after).ok().and_then(|a| now_ms.checked_add(a));
            let at = at.filter(|t| *t < crate::job::schedule::END_OF_TIME_MS);
            spec.at_ms = vec![at.ok_or_else(|| Error::invalid("after", "is too long: it ends past 2199"))?];
        }
    }
    spec.anchor_ms = j.anchor.as_ref().map(|t| instant_ms("anchor", t)).transpose()?;
    spec.start_ms = j.start_time.as_ref().map(|t| instant_ms("start_time", t)).transpose()?;
    spec.end_ms = j.end_time.as_ref().map(|t| instant_ms("end_time", t)).transpose()?;
    spec.spread_ms = duration_ms("spread", j.spread.as_ref())?;
    spec.jitter_ms = duration_ms("jitter", j.jitter.as_ref())?;
    Ok(())
}

/// A timestamp a caller gives, as epoch ms (its range is the schedule's to check).
pub fn instant_ms(field: &str, t: &prost_types::Timestamp) -> Result<i64> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::invalid(field, "has nanos outside 0-999999999"));
    }
    t.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(t.nanos / 1_000_000)))
        .ok_or_else(|| Error::invalid(field, "is out of range"))
}

/// What became of a backfill's instant, as the API says it.
pub fn backfill_outcome(o: crate::scheduler::Backfilled) -> pb::BackfillOutcome {
    use crate::scheduler::Backfilled as B;
    match o {
        B::Started => pb::BackfillOutcome::Started,
        B::AlreadyFired => pb::BackfillOutcome::AlreadyFired,
        B::Skipped => pb::BackfillOutcome::Skipped,
        B::Held => pb::BackfillOutcome::Held,
    }
}

/// A spec's schedule as the API shows it.
fn pb_schedule(s: &JobSpec) -> Option<pb::job::Schedule> {
    use pb::job::Schedule as S;
    if s.every_ms != 0 {
        Some(S::Every(duration(s.every_ms).unwrap_or_default()))
    } else if !s.at_ms.is_empty() {
        Some(S::At(pb::At { times: s.at_ms.iter().map(|t| timestamp(*t)).collect() }))
    } else if s.after_previous_ms != 0 {
        Some(S::AfterPrevious(duration(s.after_previous_ms).unwrap_or_default()))
    } else {
        Some(S::Cron(s.cron.clone()))
    }
}

/// A limit as the API shows it, with how many of its slots are held now.
pub fn limit(l: &crate::job::limit::Limit, running: u32) -> pb::Limit {
    let (handler, label) = l.fields();
    pb::Limit { name: l.name.clone(), max: l.max, handler, label, running }
}

/// A calendar from the API: its fields, checked (`Calendar::new`), with an .ics file's dates
/// added to its excluded dates.
pub fn calendar_def(c: &pb::Calendar, ics: &str) -> Result<crate::job::calendar::CalendarDef> {
    use crate::job::calendar::{ics_dates, Calendar, CalendarDef, OnExcluded};
    let on_excluded = match pb::CalendarOnExcluded::try_from(c.on_excluded) {
        Ok(pb::CalendarOnExcluded::Unspecified | pb::CalendarOnExcluded::Skip) => OnExcluded::Skip,
        Ok(pb::CalendarOnExcluded::Omit) => OnExcluded::Omit,
        Ok(pb::CalendarOnExcluded::Forward) => OnExcluded::Forward,
        Err(_) => return Err(Error::invalid("on_excluded", format!("{} is not a CalendarOnExcluded", c.on_excluded))),
    };
    let mut excluded_dates = c.excluded_dates.clone();
    let given = excluded_dates.len();
    if !ics.is_empty() {
        if ics.len() > MAX_ICS_BYTES {
            return Err(Error::invalid("ics", format!("larger than {MAX_ICS_BYTES} bytes")));
        }
        excluded_dates.extend(ics_dates(ics).map_err(|e| Error::invalid("ics", e))?);
    }
    let def = CalendarDef {
        name: c.name.clone(),
        time_zone: c.time_zone.clone(),
        excluded_dates,
        excluded_windows: c.excluded_windows.clone(),
        included_dates: c.included_dates.clone(),
        on_excluded,
        description: c.description.clone(),
    };
    // An entry the .ics added that the calendar refuses (too long a range, too many dates) is
    // the file's fault: named so.
    Calendar::new(def).map(|c| c.def).map_err(|e| match e {
        Error::Invalid { field, reason } if !ics.is_empty() && ics_field(&field, given) => {
            Error::invalid("ics", format!("an event's dates: {reason}"))
        }
        other => other,
    })
}

/// Whether `field` names an excluded date the .ics added (index `given` on), or all of them.
fn ics_field(field: &str, given: usize) -> bool {
    field == "excluded_dates"
        || field
            .strip_prefix("excluded_dates[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i >= given)
}

/// The largest .ics text PutCalendar takes.
pub const MAX_ICS_BYTES: usize = 1 << 20;

pub fn calendar(d: &crate::job::calendar::CalendarDef) -> pb::Calendar {
    use crate::job::calendar::OnExcluded;
    pb::Calendar {
        name: d.name.clone(),
        time_zone: d.time_zone.clone(),
        excluded_dates: d.excluded_dates.clone(),
        excluded_windows: d.excluded_windows.clone(),
        included_dates: d.included_dates.clone(),
        on_excluded: match d.on_excluded {
            OnExcluded::Skip => pb::CalendarOnExcluded::Skip,
            OnExcluded::Omit => pb::CalendarOnExcluded::Omit,
            OnExcluded::Forward => pb::CalendarOnExcluded::Forward,
        } as i32,
        description: d.description.clone(),
    }
}

pub fn job(r: &JobRecord) -> pb::Job {
    let s = &r.spec;
    pb::Job {
        id: s.id.clone(),
        schedule: pb_schedule(s),
        anchor: s.anchor_ms.map(timestamp),
        start_time: s.start_ms.map(timestamp),
        end_time: s.end_ms.map(timestamp),
        spread: duration(s.spread_ms),
        jitter: duration(s.jitter_ms),
        completed: r.completed(),
        catch_up_limit: s.catch_up_limit,
        max_fires: s.max_fires,
        pause_after_failures: s.pause_after_failures,
        fire_count: r.fired,
        pause_note: r.pause.as_ref().map(|p| p.note.clone()).unwrap_or_default(),
        paused_by: r.pause.as_ref().map(|p| p.by.clone()).unwrap_or_default(),
        pause_time: r.pause.as_ref().map(|p| timestamp(p.at_ms)),
        paused_until: r.pause.as_ref().and_then(|p| p.until_ms).map(timestamp),
        waiting_for_fire: r.chain_ms.map(timestamp),
        catch_up_window: duration(s.catch_up_window_ms),
        time_zone: s.time_zone.clone(),
        handler: s.handler.clone(),
        args: (!s.args.is_null()).then(|| json_to_pb(&s.args)),
        invoke: s.invoke.clone(),
        master_only: s.master_only,
        concurrency: match s.concurrency {
            Concurrency::Allow => pb::ConcurrencyPolicy::Allow,
            Concurrency::Forbid => pb::ConcurrencyPolicy::Forbid,
            Concurrency::Replace => pb::ConcurrencyPolicy::Replace,
            Concurrency::Buffer(1) => pb::ConcurrencyPolicy::BufferOne,
            Concurrency::Buffer(_) => pb::ConcurrencyPolicy::Buffer,
        } as i32,
        buffer_limit: s.concurrency.limit(),
        misfire: match s.misfire {
            Misfire::FireOnceNow => pb::MisfirePolicy::FireOnceNow,
            Misfire::Skip => pb::MisfirePolicy::Skip,
            Misfire::FireAll => pb::MisfirePolicy::FireAll,
        } as i32,
        recovery: match s.recovery {
            Recovery::Lost => pb::RecoveryPolicy::Lost,
            Recovery::Rerun => pb::RecoveryPolicy::Rerun,
        } as i32,
        timeout: duration(s.timeout_ms),
        retries: s.retries,
        retry_backoff: duration(s.retry_backoff_ms),
        paused: Some(s.paused),
        description: s.description.clone(),
        labels: s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        keep_last: s.keep_last,
        keep_failed: s.keep_failed,
        keep_completed: s.keep_completed,
        calendars: s.calendars.clone(),
        selector: s.selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        routing: match s.routing {
            Routing::Load => pb::RoutingStrategy::Load,
            Routing::RoundRobin => pb::RoutingStrategy::RoundRobin,
            Routing::Random => pb::RoutingStrategy::Random,
            Routing::ConsistentHash => pb::RoutingStrategy::ConsistentHash,
            Routing::Failover => pb::RoutingStrategy::Failover,
            Routing::LeastRecentlyUsed => pb::RoutingStrategy::LeastRecentlyUsed,
        } as i32,
        failover_nodes: s.failover_nodes.clone(),
        priority: match s.priority {
            Priority::High => pb::Priority::High,
            Priority::Normal => pb::Priority::Normal,
            Priority::Low => pb::Priority::Low,
        } as i32,
        shards: match s.shards {
            Shards::One | Shards::PerNode => 0,
            Shards::Count(n) => n,
        },
        shards_per_node: s.shards == Shards::PerNode,
        next_fire_time: r.next_ms.map(timestamp),
        update_time: Some(timestamp(r.updated_ms)),
        source: match r.written_by {
            Writer::Api => pb::DefinitionSource::Api,
            Writer::File => pb::DefinitionSource::JobsFile,
        } as i32,
        drift: r.drift().into_iter().map(String::from).collect(),
    }
}

pub fn exec_state(s: ExecState) -> pb::ExecutionState {
    match s {
        ExecState::Pending => pb::ExecutionState::Pending,
        ExecState::Running => pb::ExecutionState::Running,
        ExecState::Succeeded => pb::ExecutionState::Succeeded,
        ExecState::Failed => pb::ExecutionState::Failed,
        ExecState::TimedOut => pb::ExecutionState::TimedOut,
        ExecState::Skipped => pb::ExecutionState::Skipped,
        ExecState::Misfired => pb::ExecutionState::Misfired,
        ExecState::Lost => pb::ExecutionState::Lost,
        ExecState::Superseded => pb::ExecutionState::Superseded,
        ExecState::Cancelled => pb::ExecutionState::Cancelled,
    }
}

/// None for UNSPECIFIED (no filter).
pub fn exec_state_filter(v: i32) -> Result<Option<ExecState>> {
    Ok(Some(match pb::ExecutionState::try_from(v) {
        Ok(pb::ExecutionState::Unspecified) => return Ok(None),
        Ok(pb::ExecutionState::Pending) => ExecState::Pending,
        Ok(pb::ExecutionState::Running) => ExecState::Running,
        Ok(pb::ExecutionState::Succeeded) => ExecState::Succeeded,
        Ok(pb::ExecutionState::Failed) => ExecState::Failed,
        Ok(pb::ExecutionState::TimedOut) => ExecState::TimedOut,
        Ok(pb::ExecutionState::Skipped) => ExecState::Skipped,
        Ok(pb::ExecutionState::Misfired) => ExecState::Misfired,
        Ok(pb::ExecutionState::Lost) => ExecState::Lost,
        Ok(pb::ExecutionState::Superseded) => ExecState::Superseded,
        Ok(pb::ExecutionState::Cancelled) => ExecState::Cancelled,
        Err(_) => return Err(Error::invalid("state", format!("unknown value {v}"))),
    }))
}

pub fn execution(e: &Execution) -> pb::Execution {
    let shard = crate::execution::shard_of_fire(&e.fire_id);
    pb::Execution {
        id: e.id.clone(),
        job_id: e.job_id.clone(),
        fire_id: e.fire_id.clone(),
        scheduled_time: Some(timestamp(e.scheduled_ms)),
        start_time: e.start_ms.map(timestamp),
        end_time: e.end_ms.map(timestamp),
        node_id: e.node_id.clone(),
        attempt: e.attempt,
        state: exec_state(e.state) as i32,
        error: e.error.clone(),
        output: e.output.clone(),
        manual: e.manual,
        epoch: e.epoch,
        stderr: e.stderr.clone(),
        next_attempt_time: e.next_attempt_ms.map(timestamp),
        shard_index: shard.index,
        shard_total: shard.total,
        jitter: duration(e.jitter_ms),
    }
}

pub fn load(l: Load) -> pb::NodeLoad {
    pb::NodeLoad { active_workers: l.active, max_workers: l.max, queue_depth: l.queue }
}

/// A node as seen at `now`: `left` once it marked itself gone at a clean shutdown, `failed` once its
/// last beat is older than `ttl_ms` (and it did not), else draining or live. `master`: whether it
/// holds the lease (the caller knows; a record's own flag lags behind a crash). A gone node has no
/// role and no load: what it last reported is no longer true.
/// A node as ListNodes shows it; `master_of`: the shards whose lease it holds, as read now.
pub fn node(n: &NodeRecord, now: i64, ttl_ms: u64, master_of: Vec<u32>) -> pb::NodeInfo {
    let master = !master_of.is_empty();
    let state = if n.left {
        pb::NodeState::Left
    } else if now - n.beat_ms > ttl_ms as i64 {
        pb::NodeState::Failed
    } else if n.draining {
        pb::NodeState::Draining
    } else {
        pb::NodeState::Live
    };
    let gone = matches!(state, pb::NodeState::Left | pb::NodeState::Failed);
    let role = match (gone, master) {
        (true, _) => pb::NodeRole::Unspecified,
        (false, true) => pb::NodeRole::Master,
        (false, false) => pb::NodeRole::Worker,
    };
    pb::NodeInfo {
        node_id: n.node_id.clone(),
        address: n.address.clone(),
        role: role as i32,
        state: state as i32,
        load: (!gone).then(|| load(n.load)),
        last_heartbeat: Some(timestamp(n.beat_ms)),
        started_at: Some(timestamp(n.started_ms)),
        version: n.version.clone(),
        handlers: n.handlers.clone(),
        incarnation: n.incarnation.clone(),
        clock_offset_ms: n.clock_offset_ms,
        shell_enabled: n.shell_enabled,
        shell_allow: n.shell_allow.clone(),
        http_allow: n.http_allow.clone(),
        master_of_shards: if gone { Vec::new() } else { master_of },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_round_trip_and_integers_stay_integers() {
        let v = json!({"argv": ["a", 1, true, null], "n": 2.5, "o": {"k": "v"}});
        assert_eq!(json_from_pb(&json_to_pb(&v), 0).expect("ok"), v);
    }

    #[test]
    fn hostile_args_are_refused() {
        let mut v = json!(1);
        for _ in 0..40 {
            v = json!([v]);
        }
        assert!(json_from_pb(&json_to_pb(&v), 0).expect_err("deep").to_string().starts_with("args: nested deeper"));
        let nan = PbValue { kind: Some(Kind::NumberValue(f64::NAN)) };
        assert!(json_from_pb(&nan, 0).is_err());
    }

    #[test]
    fn bad_enums_and_durations_name_the_field() {
        let j = pb::Job { concurrency: 9, ..Default::default() };
        assert!(job_spec(&j).expect_err("bad").to_string().starts_with("concurrency:"));
        let j = pb::Job { timeout: Some(PbDuration { seconds: -1, nanos: 0 }), ..Default::default() };
        assert!(job_spec(&j).expect_err("bad").to_string().starts_with("timeout:"));
        assert!(exec_state_filter(99).is_err());
    }

    #[test]
    fn a_gone_node_has_no_role_and_no_load_and_says_how_it_went() {
        let rec = NodeRecord {
            node_id: "n1".into(),
            beat_ms: 10_000,
            master: true,
            load: Load { active: 1, max: 32, queue: 0 },
            ..Default::default()
        };
        let state = |i: &pb::NodeInfo| pb::NodeState::try_from(i.state).ok();
        let role = |i: &pb::NodeInfo| pb::NodeRole::try_from(i.role).ok();
        let live = node(&rec, 10_500, 1_000, vec![0, 3]);
        assert_eq!((state(&live), role(&live)), (Some(pb::NodeState::Live), Some(pb::NodeRole::Master)));
        assert!(live.load.is_some());
        assert_eq!(live.master_of_shards, vec![0, 3]);
        // The record says master, the lease says otherwise: the lease wins.
        assert_eq!(role(&node(&rec, 10_500, 1_000, vec![])), Some(pb::NodeRole::Worker));
        let failed = node(&rec, 11_001, 1_000, vec![0]);
        assert_eq!((state(&failed), role(&failed)), (Some(pb::NodeState::Failed), Some(pb::NodeRole::Unspecified)));
        assert!(failed.load.is_none());
        assert!(failed.master_of_shards.is_empty(), "a gone node masters nothing");
        let left = node(&NodeRecord { left: true, ..rec.clone() }, 10_001, 1_000, vec![]);
        assert_eq!((state(&left), role(&left)), (Some(pb::NodeState::Left), Some(pb::NodeRole::Unspecified)));
        assert!(left.load.is_none());
    }

    #[test]
    fn timestamps_round_trip_negative_too() {
        for ms in [0, 1, 999, 1_767_225_600_123, -1, -1001] {
            assert_eq!(timestamp_ms(&timestamp(ms)), ms);
        }
    }
}
