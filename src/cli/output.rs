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
        "retries": j.retries, "paused": j.paused, "description": j.description, "labels": j.labels,
        "next_fire_time": j.next_fire_time.as_ref().map(ts),
        "update_time": j.update_time.as_ref().map(ts),
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
    // A gone node has no load: null, not zeros that read as an idle node.
    let l = n.load;
    json!({
        "node_id": n.node_id, "address": n.address,
        "role": pb::NodeRole::try_from(n.role).map(|r| r.as_str_name()).unwrap_or("?"),
        "state": pb::NodeState::try_from(n.state).map(|r| r.as_str_name()).unwrap_or("?"),
        "active_workers": l.map(|l| l.active_workers), "max_workers": l.map(|l| l.max_workers),
        "queue_depth": l.map(|l| l.queue_depth),
        "last_heartbeat": n.last_heartbeat.as_ref().map(ts), "version": n.version, "incarnation": n.incarnation,
        "clock_offset_ms": n.clock_offset_ms,
        "handlers": n.handlers, "shell_enabled": n.shell_enabled, "shell_allow": n.shell_allow,
        "http_allow": n.http_allow,
    })
}

/// The first line of `rota status`: the master and its epoch, or, while no node holds the lease,
/// that a new master is being elected (with the last epoch known, not 0).
pub(super) fn status_line(r: &pb::GetClusterStatusResponse) -> String {
    if r.electing || r.master_id.is_empty() {
        format!("master: (electing a new master; last epoch {})  store: {}", r.epoch, r.store)
    } else {
        format!("master: {}  epoch: {}  store: {}", r.master_id, r.epoch, r.store)
    }
}

/// What a node may run, for the table: its handlers, and shell and http on their terms.
fn permissions(n: &pb::NodeInfo) -> (String, String, String) {
    let handlers = if n.handlers.is_empty() { "-".to_string() } else { n.handlers.join(",") };
    // The allowed programs in full are in `--json`; the table says how many.
    let shell = match (n.shell_enabled, n.shell_allow.len()) {
        (false, _) => "off".to_string(),
        (true, 0) => "on (nothing allowed)".to_string(),
        (true, 1) => "on (1 program)".to_string(),
        (true, k) => format!("on ({k} programs)"),
    };
    let http = if n.http_allow.is_empty() { "default".to_string() } else { n.http_allow.join(",") };
    (handlers, shell, http)
}

pub(super) fn print_job(j: &pb::Job) {
    let v = job_json(j);
    if let Value::Object(o) = v {
        for (k, v) in o {
            let s = match v {
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
            let name = |s: &str, p: &str| s.trim_start_matches(p).to_ascii_lowercase();
            let role = match pb::NodeRole::try_from(n.role) {
                Ok(pb::NodeRole::Unspecified) => "-".to_string(),
                r => name(r.map(|s| s.as_str_name()).unwrap_or("?"), "NODE_ROLE_"),
            };
            let load = match n.load {
                Some(l) => format!("{}/{} (queue {})", l.active_workers, l.max_workers, l.queue_depth),
                None => "-".to_string(),
            };
            let (handlers, shell, http) = permissions(n);
            vec![
                n.node_id.clone(),
                n.address.clone(),
                name(pb::NodeState::try_from(n.state).map(|s| s.as_str_name()).unwrap_or("?"), "NODE_STATE_"),
                role,
                load,
                n.last_heartbeat.as_ref().map(ts).unwrap_or_default(),
                n.clock_offset_ms.map(|o| format!("{o:+} ms")).unwrap_or_else(|| "unmeasured".into()),
                handlers,
                shell,
                http,
            ]
        })
        .collect();
    print_table(
        &["NODE", "ADDRESS", "STATE", "ROLE", "LOAD", "LAST HEARTBEAT", "CLOCK OFFSET", "HANDLERS", "SHELL", "HTTP"],
        rows,
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// While no node holds the lease, status says a master is being elected and keeps the last
    /// epoch, never `(none) epoch 0`.
    #[test]
    fn status_line_says_electing_with_the_last_epoch() {
        let electing = pb::GetClusterStatusResponse {
            electing: true,
            epoch: 1_796_285_141_421,
            store: "redis".into(),
            ..Default::default()
        };
        let line = status_line(&electing);
        assert_eq!(line, "master: (electing a new master; last epoch 1796285141421)  store: redis");
        let master = pb::GetClusterStatusResponse {
            master_id: "n2".into(),
            epoch: 7,
            store: "redis".into(),
            ..Default::default()
        };
        assert_eq!(status_line(&master), "master: n2  epoch: 7  store: redis");
    }

    /// A gone node's load is null in JSON (not zeros that read as idle), and its permissions show.
    #[test]
    fn node_json_has_no_load_for_a_gone_node_and_shows_permissions() {
        let n = pb::NodeInfo {
            node_id: "n1".into(),
            state: pb::NodeState::Failed as i32,
            handlers: vec!["noop".into(), "shell".into()],
            shell_enabled: true,
            shell_allow: vec!["/bin/sh".into()],
            ..Default::default()
        };
        let v = node_json(&n);
        assert_eq!(v["active_workers"], Value::Null);
        assert_eq!(v["state"], "NODE_STATE_FAILED");
        assert_eq!(v["shell_allow"], json!(["/bin/sh"]));
        assert_eq!(permissions(&n), ("noop,shell".into(), "on (1 program)".into(), "default".into()));
    }
}
