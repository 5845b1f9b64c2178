//! How the client prints: one place for table layouts, JSON shapes and the spelling of values.
//! Every enum value is spelled one way for people and JSON alike (`wire_name`), and the flags that
//! take one accept that spelling; lists in JSON are one object named like the API's response.
use serde_json::{json, Value};

use crate::api::convert;
use crate::pb;
pub(super) fn ts(t: &prost_types::Timestamp) -> String {
    crate::job::ms_to_datetime(convert::timestamp_ms(t)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The one spelling of a wire enum value: its proto name without the type's prefix, in lower case
/// (`EXECUTION_STATE_TIMED_OUT` is `timed_out`, `MISFIRE_POLICY_FIRE_ONCE_NOW` is
/// `fire_once_now`), the spelling of the jobs file too. A value this build does not know prints as
/// its number.
fn wire_name<E: TryFrom<i32>>(v: i32, prefix: &str, name: fn(&E) -> &'static str) -> String {
    E::try_from(v).map(|e| name(&e).trim_start_matches(prefix).to_ascii_lowercase()).unwrap_or_else(|_| v.to_string())
}

pub(super) fn state_name(s: i32) -> String {
    wire_name(s, "EXECUTION_STATE_", pb::ExecutionState::as_str_name)
}

pub(super) fn backfill_outcome_name(v: i32) -> String {
    wire_name(v, "BACKFILL_OUTCOME_", pb::BackfillOutcome::as_str_name)
}

pub(super) fn concurrency_name(v: i32) -> String {
    wire_name(v, "CONCURRENCY_POLICY_", pb::ConcurrencyPolicy::as_str_name)
}

pub(super) fn misfire_name(v: i32) -> String {
    wire_name(v, "MISFIRE_POLICY_", pb::MisfirePolicy::as_str_name)
}

pub(super) fn recovery_name(v: i32) -> String {
    wire_name(v, "RECOVERY_POLICY_", pb::RecoveryPolicy::as_str_name)
}

pub(super) fn routing_name(v: i32) -> String {
    wire_name(v, "ROUTING_STRATEGY_", pb::RoutingStrategy::as_str_name)
}

pub(super) fn priority_name(v: i32) -> String {
    wire_name(v, "PRIORITY_", pb::Priority::as_str_name)
}

pub(super) fn node_role_name(v: i32) -> String {
    wire_name(v, "NODE_ROLE_", pb::NodeRole::as_str_name)
}

pub(super) fn node_state_name(v: i32) -> String {
    wire_name(v, "NODE_STATE_", pb::NodeState::as_str_name)
}

fn duration_ms(d: &Option<prost_types::Duration>) -> Option<i64> {
    d.as_ref().map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000)
}

/// A job's schedule in words: `cron 0 0 * * *`, `every 70m from 2026-...`, `at 2026-...`, with
/// its bounds and spread.
pub(super) fn schedule_text(j: &pb::Job) -> String {
    use crate::job::schedule::{duration_text, rfc3339};
    use pb::job::Schedule as S;
    let mut s = match &j.schedule {
        Some(S::Cron(c)) => format!("cron {c}"),
        Some(S::Every(d)) => {
            let every = duration_text(duration_ms(&Some(*d)).unwrap_or_default());
            match &j.anchor {
                Some(a) => format!("every {every} from {}", rfc3339(convert::timestamp_ms(a))),
                None => format!("every {every}"),
            }
        }
        Some(S::At(at)) => {
            format!("at {}", at.times.iter().map(|t| rfc3339(convert::timestamp_ms(t))).collect::<Vec<_>>().join(", "))
        }
        Some(S::After(d)) => format!("after {}", duration_text(duration_ms(&Some(*d)).unwrap_or_default())),
        Some(S::AfterPrevious(d)) => {
            format!("after_previous {}", duration_text(duration_ms(&Some(*d)).unwrap_or_default()))
        }
        None => "-".into(),
    };
    if let Some(t) = &j.start_time {
        s.push_str(&format!(", not before {}", rfc3339(convert::timestamp_ms(t))));
    }
    if let Some(t) = &j.end_time {
        s.push_str(&format!(", not after {}", rfc3339(convert::timestamp_ms(t))));
    }
    if let Some(d) = duration_ms(&j.spread) {
        s.push_str(&format!(", spread {}", duration_text(d)));
    }
    if let Some(d) = duration_ms(&j.jitter) {
        s.push_str(&format!(", jitter {}", duration_text(d)));
    }
    if j.max_fires > 0 {
        s.push_str(&format!(", at most {} fires", j.max_fires));
    }
    s
}

/// A job's pause state in words: `no`, `yes`, or `yes, until 2026-..., by alice: why`.
pub(super) fn paused_text(j: &pb::Job) -> String {
    if j.paused != Some(true) {
        return "no".into();
    }
    let mut s = "yes".to_string();
    if let Some(u) = &j.paused_until {
        s.push_str(&format!(", until {}", ts(u)));
    }
    if !j.paused_by.is_empty() {
        s.push_str(&format!(", by {}", j.paused_by));
    }
    if !j.pause_note.is_empty() {
        s.push_str(&format!(": {}", j.pause_note));
    }
    s
}

pub(super) fn job_json(j: &pb::Job) -> Value {
    use pb::job::Schedule as S;
    // Two objects made one: a single json! of every field passes the macro's recursion limit.
    let schedule = json!({
        "schedule": schedule_text(j),
        "cron": match &j.schedule { Some(S::Cron(c)) => Some(c), _ => None },
        "every_ms": match &j.schedule { Some(S::Every(d)) => duration_ms(&Some(*d)), _ => None },
        "anchor": j.anchor.as_ref().map(ts),
        "at": match &j.schedule { Some(S::At(at)) => at.times.iter().map(ts).collect(), _ => Vec::new() },
        "after_previous_ms": match &j.schedule { Some(S::AfterPrevious(d)) => duration_ms(&Some(*d)), _ => None },
        "waiting_for_fire": j.waiting_for_fire.as_ref().map(ts),
        "start_time": j.start_time.as_ref().map(ts),
        "end_time": j.end_time.as_ref().map(ts),
        "spread_ms": duration_ms(&j.spread),
        "jitter_ms": duration_ms(&j.jitter),
        "completed": j.completed,
        "max_fires": j.max_fires, "fire_count": j.fire_count, "pause_after_failures": j.pause_after_failures,
        "pause_note": j.pause_note, "paused_by": j.paused_by,
        "pause_time": j.pause_time.as_ref().map(ts), "paused_until": j.paused_until.as_ref().map(ts),
        "catch_up_limit": j.catch_up_limit, "catch_up_window_ms": duration_ms(&j.catch_up_window),
    });
    let mut v = json!({
        "id": j.id,
        "time_zone": j.time_zone, "handler": j.handler,
        "args": j.args.as_ref().and_then(|a| convert::json_from_pb(a, 0).ok()).unwrap_or(Value::Null),
        "invoke": j.invoke, "master_only": j.master_only,
        "concurrency": concurrency_name(j.concurrency), "buffer_limit": j.buffer_limit, "misfire": misfire_name(j.misfire),
        "recovery": recovery_name(j.recovery), "timeout_ms": duration_ms(&j.timeout),
        "retries": j.retries, "retry_backoff_ms": duration_ms(&j.retry_backoff), "paused": j.paused.unwrap_or(false), "description": j.description, "labels": j.labels,
        "keep_last": j.keep_last, "keep_failed": j.keep_failed, "selector": j.selector,
        "routing": routing_name(j.routing), "failover_nodes": j.failover_nodes,
        "priority": priority_name(j.priority),
        "shards": if j.shards_per_node { Value::from("all") } else { Value::from(j.shards.max(1)) },
        "next_fire_time": j.next_fire_time.as_ref().map(ts),
        "update_time": j.update_time.as_ref().map(ts),
        "source": source_name(j.source),
        "drift": j.drift,
    });
    if let (Value::Object(all), Value::Object(more)) = (&mut v, schedule) {
        all.extend(more);
    }
    v
}

/// Who wrote a job's definition last: `api`, `jobs_file`, or `unspecified` (stored by an older rota).
fn source_name(v: i32) -> String {
    wire_name(v, "DEFINITION_SOURCE_", pb::DefinitionSource::as_str_name)
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
        "state": state_name(e.state), "error": e.error, "output": e.output, "stderr": e.stderr,
        "manual": e.manual, "epoch": e.epoch, "next_attempt_time": e.next_attempt_time.as_ref().map(ts),
        "shard_index": e.shard_index, "shard_total": e.shard_total.max(1),
        "jitter_ms": duration_ms(&e.jitter).unwrap_or(0),
    })
}

pub(super) fn fire_json(f: &pb::FireSummary) -> Value {
    json!({
        "fire_id": f.fire_id, "job_id": f.job_id, "scheduled_time": f.scheduled_time.as_ref().map(ts),
        "shard_total": f.shard_total, "state": state_name(f.state), "shards_succeeded": f.shards_succeeded,
        "shards_ended_otherwise": f.shards_ended_otherwise, "shards_open": f.shards_open,
        "shards_unlisted": f.shards_unlisted, "execution_ids": f.execution_ids,
    })
}

/// Fires as `exec list --group-by-fire` prints them: one line each, its shards counted.
pub(super) fn print_fires(fires: &[pb::FireSummary]) {
    let rows = fires
        .iter()
        .map(|f| {
            vec![
                f.fire_id.clone(),
                state_name(f.state),
                f.shard_total.to_string(),
                f.shards_succeeded.to_string(),
                f.shards_ended_otherwise.to_string(),
                f.shards_open.to_string(),
                f.shards_unlisted.to_string(),
            ]
        })
        .collect();
    print_table(&["FIRE", "STATE", "SHARDS", "SUCCEEDED", "ENDED OTHERWISE", "OPEN", "UNLISTED"], rows);
}

/// A sharded fire under `exec get`: its outcome, and each shard's newest execution.
pub(super) fn print_fire_shards(f: &pb::FireSummary, execs: &[pb::Execution]) {
    println!(
        "\nfire {}: {} ({} of {} shards succeeded, {} open, {} ended otherwise)",
        f.fire_id,
        state_name(f.state),
        f.shards_succeeded,
        f.shard_total,
        f.shards_open,
        f.shards_ended_otherwise
    );
    let mut newest: std::collections::BTreeMap<u32, &pb::Execution> = std::collections::BTreeMap::new();
    for e in execs.iter().filter(|e| e.state != pb::ExecutionState::Superseded as i32) {
        // Listed newest first: the first seen of a shard is its newest.
        newest.entry(e.shard_index).or_insert(e);
    }
    let rows = (0..f.shard_total)
        .map(|i| match newest.get(&i) {
            Some(e) => vec![
                format!("{i}/{}", f.shard_total),
                state_name(e.state),
                e.attempt.to_string(),
                if e.node_id.is_empty() { "-".into() } else { e.node_id.clone() },
                e.id.clone(),
            ],
            None => vec![format!("{i}/{}", f.shard_total), "-".into(), "-".into(), "-".into(), "-".into()],
        })
        .collect();
    print_table(&["SHARD", "STATE", "ATTEMPT", "NODE", "EXECUTION"], rows);
}

pub(super) fn node_json(n: &pb::NodeInfo) -> Value {
    // A gone node has no load: null, not zeros that read as an idle node.
    let l = n.load;
    json!({
        "node_id": n.node_id, "address": n.address,
        // A gone node has no role either: null, not "unspecified".
        "role": (n.role != pb::NodeRole::Unspecified as i32).then(|| node_role_name(n.role)),
        "state": node_state_name(n.state),
        "active_workers": l.map(|l| l.active_workers), "max_workers": l.map(|l| l.max_workers),
        "queue_depth": l.map(|l| l.queue_depth),
        "last_heartbeat": n.last_heartbeat.as_ref().map(ts), "version": n.version, "incarnation": n.incarnation,
        "clock_offset_ms": n.clock_offset_ms,
        "handlers": n.handlers, "shell_enabled": n.shell_enabled, "shell_allow": n.shell_allow,
        "http_allow": n.http_allow, "master_of_shards": n.master_of_shards,
    })
}

/// The first line of `rota status`: the master and its epoch, or, while no node holds the lease,
/// that a new master is being elected (with the last epoch known, not 0).
pub(super) fn status_line(r: &pb::GetClusterStatusResponse) -> String {
    let shards = if r.shards > 1 { format!("  shards: {} (masters in the table)", r.shards) } else { String::new() };
    if r.electing || r.master_id.is_empty() {
        format!("master: (electing a new master; last epoch {})  store: {}{shards}", r.epoch, r.store)
    } else if r.shards > 1 {
        format!("master of shard 0: {}  epoch: {}  store: {}{shards}", r.master_id, r.epoch, r.store)
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
                Value::Array(_) if k == "drift" => drift_text(j).unwrap_or_else(|| "-".into()),
                // 0 and unset say "the node's default" in the API.
                Value::Number(n) if k == "keep_last" && n.as_u64() == Some(0) => "node default".into(),
                Value::Null if k == "keep_failed" => "node default".into(),
                Value::String(s) => s,
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            println!("{k:>15}: {s}");
        }
    }
}

const EXEC_HEADERS: [&str; 8] = ["ID", "JOB", "SCHEDULED", "STATE", "NODE", "ATTEMPT", "DURATION", "ERROR"];

/// One execution as a table row (`exec list`, `exec get`, `exec watch`).
fn exec_row(e: &pb::Execution) -> Vec<String> {
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
}

pub(super) fn print_execs(execs: &[pb::Execution]) {
    print_table(&EXEC_HEADERS, execs.iter().map(exec_row).collect());
}

/// Column widths of `exec watch`, which prints rows as they come and so cannot measure them
/// first: an execution id of a job id of up to 16 characters (18 for the stamp, the '~', the job,
/// the '@' and 13 digits), a timestamp's 24, room for the longest state name; a longer job or node
/// id pushes its line's later columns right.
const WATCH_WIDTHS: [usize; 7] = [52, 16, 24, 10, 12, 7, 8];

fn watch_line(cells: &[String]) {
    let s: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| match WATCH_WIDTHS.get(i) {
            Some(w) => format!("{c:<w$}"),
            None => c.clone(),
        })
        .collect();
    println!("{}", s.join("  ").trim_end());
}

pub(super) fn print_watch_header() {
    watch_line(&EXEC_HEADERS.map(String::from));
}

pub(super) fn print_watch_row(e: &pb::Execution) {
    watch_line(&exec_row(e));
}

/// One execution in full (`exec get`, `job trigger --wait`): never shortened, unlike the list, since
/// this is where an operator reads why a run failed. The error keeps its lines; output and stderr
/// follow under their own headings.
pub(super) fn print_exec_detail(e: &pb::Execution) {
    let or_dash = |t: &Option<prost_types::Timestamp>| t.as_ref().map(ts).unwrap_or_else(|| "-".into());
    let duration = match (&e.start_time, &e.end_time) {
        (Some(s), Some(t)) => format!("{}ms", convert::timestamp_ms(t) - convert::timestamp_ms(s)),
        _ => "-".into(),
    };
    let mut rows = vec![
        ("execution", e.id.clone()),
        ("job", e.job_id.clone()),
        ("fire", e.fire_id.clone()),
        ("trigger", if e.manual { "manual" } else { "scheduled" }.to_string()),
        ("state", state_name(e.state)),
        ("attempt", e.attempt.to_string()),
        ("node", if e.node_id.is_empty() { "-".into() } else { e.node_id.clone() }),
        ("scheduled", or_dash(&e.scheduled_time)),
        ("started", or_dash(&e.start_time)),
        ("ended", or_dash(&e.end_time)),
        ("duration", duration),
        ("epoch", e.epoch.to_string()),
    ];
    if let Some(t) = &e.next_attempt_time {
        rows.push(("next attempt", format!("attempt {} due {}", e.attempt + 1, ts(t))));
    }
    for (k, v) in rows {
        println!("{k:>12}: {v}");
    }
    if !e.error.is_empty() {
        // Continuation lines indented under the first, so a multi-line error stays readable.
        println!("{:>12}: {}", "error", e.error.replace('\n', &format!("\n{:14}", "")));
    }
    if !e.output.is_empty() {
        println!("--- output ---\n{}", e.output.trim_end_matches('\n'));
    }
    if !e.stderr.is_empty() {
        println!("--- stderr ---\n{}", e.stderr.trim_end_matches('\n'));
    }
}

pub(super) fn print_nodes(nodes: &[pb::NodeInfo], as_json: bool) {
    if as_json {
        println!("{:#}", json!({"nodes": nodes.iter().map(node_json).collect::<Vec<_>>()}));
        return;
    }
    let rows = nodes
        .iter()
        .map(|n| {
            let role = match n.role == pb::NodeRole::Unspecified as i32 {
                true => "-".to_string(),
                // With shards: which ones it masters.
                false if n.master_of_shards.len() > 1 || n.master_of_shards.iter().any(|k| *k > 0) => {
                    let ks: Vec<String> = n.master_of_shards.iter().map(u32::to_string).collect();
                    format!("{} of {}", node_role_name(n.role), ks.join(","))
                }
                false => node_role_name(n.role),
            };
            let load = match n.load {
                Some(l) => format!("{}/{} (queue {})", l.active_workers, l.max_workers, l.queue_depth),
                None => "-".to_string(),
            };
            let (handlers, shell, http) = permissions(n);
            vec![
                n.node_id.clone(),
                n.address.clone(),
                node_state_name(n.state),
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
        assert_eq!(v["state"], "failed");
        assert_eq!(v["role"], Value::Null);
        assert_eq!(v["shell_allow"], json!(["/bin/sh"]));
        assert_eq!(permissions(&n), ("noop,shell".into(), "on (1 program)".into(), "default".into()));
    }
}
