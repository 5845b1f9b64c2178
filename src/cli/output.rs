//! How the client prints: one place for table layouts and JSON shapes.
use serde_json::{json, Value};

use crate::api::convert;
use crate::pb;
pub(super) fn ts(t: &prost_types::Timestamp) -> String {
    crate::job::ms_to_datetime(convert::timestamp_ms(t)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) fn state_name(s: i32) -> String {
    pb::ExecutionState::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("EXECUTION_STATE_").to_ascii_lowercase())
        .unwrap_or_else(|_| s.to_string())
}

pub(super) fn job_json(j: &pb::Job) -> Value {
    json!({
        "id": j.id, "cron": j.cron, "time_zone": j.time_zone, "handler": j.handler,
        "args": j.args.as_ref().and_then(|a| convert::json_from_pb(a, 0).ok()).unwrap_or(Value::Null),
        "invoke": j.invoke, "master_only": j.master_only,
        "concurrency": pb::ConcurrencyPolicy::try_from(j.concurrency).map(|c| c.as_str_name()).unwrap_or("?"),
        "misfire": pb::MisfirePolicy::try_from(j.misfire).map(|c| c.as_str_name()).unwrap_or("?"),
        "recovery": pb::RecoveryPolicy::try_from(j.recovery).map(|c| c.as_str_name()).unwrap_or("?"),
        "timeout_ms": j.timeout.as_ref().map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000),
        "retries": j.retries, "paused": j.paused.unwrap_or(false), "description": j.description, "labels": j.labels,
        "next_fire_time": j.next_fire_time.as_ref().map(ts),
        "update_time": j.update_time.as_ref().map(ts),
        "source": pb::DefinitionSource::try_from(j.source).map(source_name).unwrap_or("?"),
        "drift": j.drift,
    })
}

/// A definition source as `job get` shows it.
fn source_name(s: pb::DefinitionSource) -> &'static str {
    match s {
        pb::DefinitionSource::Unspecified => "unknown",
        pb::DefinitionSource::Api => "api",
        pb::DefinitionSource::JobsFile => "jobs file",
    }
}

/// The drift of a job from its jobs file, in words; None when there is none.
fn drift_text(j: &pb::Job) -> Option<String> {
    (!j.drift.is_empty()).then(|| {
        format!("changed through the API since the jobs file was applied; the file differs in: {}", j.drift.join(", "))
    })
}

pub(super) fn exec_json(e: &pb::Execution) -> Value {
    json!({
        "id": e.id, "job_id": e.job_id, "fire_id": e.fire_id,
        "scheduled_time": e.scheduled_time.as_ref().map(ts), "start_time": e.start_time.as_ref().map(ts),
        "end_time": e.end_time.as_ref().map(ts), "node_id": e.node_id, "attempt": e.attempt,
        "state": state_name(e.state), "error": e.error, "output": e.output, "manual": e.manual, "epoch": e.epoch,
    })
}

pub(super) fn node_json(n: &pb::NodeInfo) -> Value {
    let l = n.load.unwrap_or_default();
    json!({
        "node_id": n.node_id, "address": n.address,
        "role": pb::NodeRole::try_from(n.role).map(|r| r.as_str_name()).unwrap_or("?"),
        "state": pb::NodeState::try_from(n.state).map(|r| r.as_str_name()).unwrap_or("?"),
        "active_workers": l.active_workers, "max_workers": l.max_workers, "queue_depth": l.queue_depth,
        "last_heartbeat": n.last_heartbeat.as_ref().map(ts), "version": n.version, "incarnation": n.incarnation,
        "clock_offset_ms": n.clock_offset_ms,
    })
}

pub(super) fn print_job(j: &pb::Job) {
    let v = job_json(j);
    if let Value::Object(o) = v {
        for (k, v) in o {
            let s = match v {
                Value::Array(_) if k == "drift" => drift_text(j).unwrap_or_else(|| "-".into()),
                Value::String(s) => s,
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            println!("{k:>15}: {s}");
        }
    }
}

pub(super) fn print_execs(execs: &[pb::Execution]) {
    let rows = execs
        .iter()
        .map(|e| {
            let dur = match (&e.start_time, &e.end_time) {
                (Some(s), Some(t)) => format!("{}ms", convert::timestamp_ms(t) - convert::timestamp_ms(s)),
                _ => "-".into(),
            };
            let mut err = e.error.replace('\n', " ");
            if err.len() > 60 {
                err = crate::execution::truncate_utf8(err, 60);
            }
            vec![
                e.id.clone(),
                e.job_id.clone(),
                e.scheduled_time.as_ref().map(ts).unwrap_or_default(),
                state_name(e.state),
                e.node_id.clone(),
                e.attempt.to_string(),
                dur,
                err,
            ]
        })
        .collect();
    print_table(&["ID", "JOB", "SCHEDULED", "STATE", "NODE", "ATTEMPT", "DURATION", "ERROR"], rows);
}

pub(super) fn print_nodes(nodes: &[pb::NodeInfo], as_json: bool) {
    if as_json {
        println!("{:#}", Value::Array(nodes.iter().map(node_json).collect()));
        return;
    }
    let rows = nodes
        .iter()
        .map(|n| {
            let l = n.load.unwrap_or_default();
            let name = |s: &str, p: &str| s.trim_start_matches(p).to_ascii_lowercase();
            vec![
                n.node_id.clone(),
                n.address.clone(),
                name(pb::NodeState::try_from(n.state).map(|s| s.as_str_name()).unwrap_or("?"), "NODE_STATE_"),
                name(pb::NodeRole::try_from(n.role).map(|s| s.as_str_name()).unwrap_or("?"), "NODE_ROLE_"),
                format!("{}/{} (queue {})", l.active_workers, l.max_workers, l.queue_depth),
                n.last_heartbeat.as_ref().map(ts).unwrap_or_default(),
                n.clock_offset_ms.map(|o| format!("{o:+} ms")).unwrap_or_else(|| "unmeasured".into()),
            ]
        })
        .collect();
    print_table(&["NODE", "ADDRESS", "STATE", "ROLE", "LOAD", "LAST HEARTBEAT", "CLOCK OFFSET"], rows);
}

/// Left-aligned columns separated by two spaces.
pub(super) fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}
