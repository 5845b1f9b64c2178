//! The node table tells the truth, fires go only to nodes that can run them, and a store outage is
//! reported with the store's address and what the node still knows. Real Redis, real `rota` nodes,
//! the real `rota` binary as the client.
mod common;

use std::time::Duration;

use common::*;
use rota::pb;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
/// How long a gone node stays listed in these tests (`--dead-node-retention-ms`).
const RETENTION_MS: &str = "3000";

/// Fast failover for the tests: a crashed master's lease lapses in 1.5 s.
fn flags<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--lease-ttl-ms", LEASE_TTL_MS, "--lease-renew-ms", LEASE_RENEW_MS];
    v.extend_from_slice(extra);
    v
}

/// Runs the `rota` client against `node`: (exit code, stdout, stderr).
fn cli(node: &TestNode, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(args)
        .args(["--endpoint", &node.endpoint()])
        .output()
        .expect("run rota");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rota nodes --json` as seen by `node`.
fn nodes_json(node: &TestNode) -> Vec<Value> {
    let (code, out, err) = cli(node, &["nodes", "--json"]);
    assert_eq!(code, Some(0), "rota nodes failed: {err}");
    serde_json::from_str::<Value>(&out).expect("json")["nodes"].as_array().cloned().unwrap_or_default()
}

fn find<'a>(nodes: &'a [Value], id: &str) -> Option<&'a Value> {
    nodes.iter().find(|n| n["node_id"] == id)
}

/// The row of `rota nodes` (table) for `id`.
fn table_row(node: &TestNode, id: &str) -> Option<String> {
    let (code, out, _) = cli(node, &["nodes"]);
    assert_eq!(code, Some(0));
    out.lines().find(|l| l.split_whitespace().next() == Some(id)).map(str::to_string)
}

/// 3 nodes; SIGKILL the master: status says electing (with the last epoch, never 0) and then the new
/// master; the killed node is `failed` with no role and no load; a SIGTERMed node is `left`; both
/// drop off the list after the retention. `rota nodes` shows handlers and shell on/off.
#[tokio::test]
async fn status_and_nodes_tell_what_happened_to_each_node() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let keep = ["--dead-node-retention-ms", RETENTION_MS];
    let n1 =
        TestNode::start(&b, "n1", &flags(&[&keep[..], &["--enable-shell", "--shell-allow", "/bin/sh"]].concat())).await;
    let n2 = TestNode::start(&b, "n2", &flags(&keep)).await;
    let n3 = TestNode::start(&b, "n3", &flags(&keep)).await;
    let (master, epoch) = agreed_master(&[&n1, &n2, &n3]).await;
    assert_ne!(epoch, 0);

    // Handlers and permissions, in JSON and in the table.
    let nodes = eventually(WAIT, "three live nodes listed", || async {
        let v = nodes_json(&n2);
        (v.len() == 3 && v.iter().all(|n| n["state"] == "live")).then_some(v)
    })
    .await;
    let one = find(&nodes, "n1").expect("n1");
    assert_eq!(one["shell_enabled"], true, "{one}");
    assert_eq!(one["shell_allow"], json!(["/bin/sh"]), "{one}");
    assert!(one["handlers"].as_array().expect("handlers").contains(&json!("shell")), "{one}");
    let two = find(&nodes, "n2").expect("n2");
    assert_eq!(two["shell_enabled"], false, "{two}");
    assert!(!two["handlers"].as_array().expect("handlers").contains(&json!("shell")), "{two}");
    let row1 = table_row(&n2, "n1").expect("n1 row");
    let row2 = table_row(&n2, "n2").expect("n2 row");
    assert!(row1.contains("shell") && row1.contains("on (1 program)"), "{row1}");
    assert!(row2.contains("noop") && !row2.contains("shell") && row2.contains(" off "), "{row2}");

    // SIGKILL the master. Every answer until a new master is there: no master means electing, with
    // the last epoch (never `(none) epoch 0`), and the dead node is never still the live master.
    let mut nodes = [n1, n2, n3];
    let idx = nodes.iter().position(|n| n.node_id == master).expect("master is one of them");
    nodes[idx].kill();
    let w = (0..3).find(|i| *i != idx).expect("a survivor");
    let saw_electing = std::cell::Cell::new(false);
    let (new_master, new_epoch) = eventually(WAIT, "a new master", || {
        let (saw, watcher, master) = (&saw_electing, &nodes[w], &master);
        async move {
            let s = status(watcher).await?;
            let dead = s.nodes.iter().find(|n| n.node_id == *master)?;
            if s.master_id.is_empty() {
                assert!(s.electing, "no master but not electing: {s:?}");
                assert!(s.epoch >= epoch, "electing shows epoch {} below the last one {epoch}", s.epoch);
                saw.set(true);
            } else {
                assert!(!s.electing);
                if s.master_id == *master {
                    // Only while its lease and heartbeat have not lapsed yet: then it is live.
                    assert_eq!(dead.state, pb::NodeState::Live as i32, "a gone node named master: {s:?}");
                }
            }
            (!s.master_id.is_empty() && s.master_id != *master).then(|| (s.master_id.clone(), s.epoch))
        }
    })
    .await;
    assert!(saw_electing.get(), "status never said electing between the two masters");
    assert!(new_epoch > epoch);
    let (code, out, _) = cli(&nodes[w], &["status"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("master: {new_master}  epoch: {new_epoch}")), "{out}");

    // The killed node: failed, no role, no load.
    let dead = eventually(WAIT, "the killed master listed as failed", || async {
        find(&nodes_json(&nodes[w]), &master).filter(|n| n["state"] == "failed").cloned()
    })
    .await;
    assert_eq!(dead["role"], serde_json::Value::Null, "{dead}");
    assert_eq!((&dead["active_workers"], &dead["max_workers"]), (&Value::Null, &Value::Null), "{dead}");
    let row = table_row(&nodes[w], &master).expect("row of the killed node");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[2..5], &["failed", "-", "-"], "{row}");

    // SIGTERM the third node (neither the old master nor the new one): left.
    let nm = nodes.iter().position(|n| n.node_id == new_master).expect("new master is one of them");
    let third = (0..3).find(|i| *i != idx && *i != nm).expect("third node");
    let leaving = nodes[third].node_id.clone();
    // SIGTERM without waiting for the exit: the node marks itself left as its shutdown begins, and
    // its record is pruned `RETENTION_MS` later, perhaps before the process is gone.
    let pid = nix::unistd::Pid::from_raw(nodes[third].pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let asker = &nodes[nm];
    let left = eventually(WAIT, "the stopped node listed as left", || async {
        find(&nodes_json(asker), &leaving).filter(|n| n["state"] == "left").cloned()
    })
    .await;
    assert_eq!(left["role"], serde_json::Value::Null, "{left}");
    assert_eq!(left["active_workers"], Value::Null, "{left}");
    let row = table_row(asker, &leaving).expect("row of the stopped node");
    assert_eq!(row.split_whitespace().nth(2), Some("left"), "{row}");

    // Both drop off the list after the retention.
    eventually(WAIT, "gone nodes pruned after the retention", || async {
        let v = nodes_json(asker);
        (find(&v, &master).is_none() && find(&v, &leaving).is_none()).then_some(())
    })
    .await;
    assert!(find(&nodes_json(asker), &new_master).is_some());
}

/// Two nodes, only one with shell; the one without is master. Every shell fire runs on the shell
/// node; none fails with "not registered". With the shell node killed and back a few seconds
/// later, the fires meanwhile wait for it and run there. With the shell node gone (it left), a
/// fire is recorded failed with the reason and alerted, not dropped, and not bounced around.
#[tokio::test]
async fn shell_fires_run_only_where_shell_is() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let plain = TestNode::start(&b, "plain", &flags(&[])).await;
    let (m, _) = agreed_master(&[&plain]).await;
    assert_eq!(m, "plain");
    let mut shell = TestNode::start(&b, "shell", &flags(&["--enable-shell", "--shell-allow", "/bin/sh"])).await;
    assert_eq!(agreed_master(&[&plain, &shell]).await.0, "plain", "the node without shell stays master");
    // Routing needs the master to know the shell node's handlers (its record, at the next refresh).
    eventually(WAIT, "the master lists the shell node's handlers", || async {
        let v = nodes_json(&plain);
        find(&v, "shell")?["handlers"].as_array()?.contains(&json!("shell")).then_some(())
    })
    .await;
    let mut c = shell.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job("sh", "* * * * * *", "shell", json!({"sh": "echo ran"}))) })
        .await
        .expect("put a shell job");
    let done = eventually(WAIT, "five shell fires succeeded", || {
        let mut c = c.clone();
        async move {
            let e = executions(&mut c, "sh").await;
            (e.iter().filter(|e| state(e) == pb::ExecutionState::Succeeded).count() >= 5).then_some(e)
        }
    })
    .await;
    for e in &done {
        assert!(!e.error.contains("not registered"), "a fire went to a node without shell: {e:?}");
        if state(e) == pb::ExecutionState::Succeeded {
            assert_eq!(e.node_id, "shell", "{e:?}");
        }
    }

    // The shell node is SIGKILLed and back 5 s later (past its 3 s TTL, so the master sees no
    // live node with shell for a while): the fires of the outage wait for it and run there; none
    // is recorded failed, since a node that did not leave may be back.
    let c = plain.client().await;
    shell.kill();
    let killed_at = rota::store::now_ms();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut shell = TestNode::start(&b, "shell", &flags(&["--enable-shell", "--shell-allow", "/bin/sh"])).await;
    let back_at = rota::store::now_ms();
    let outage = |e: &pb::Execution| ms(&e.scheduled_time) > killed_at + 1000 && ms(&e.scheduled_time) < back_at;
    let waited = eventually(WAIT, "the outage's fires ran on the shell node once back", || {
        let mut c = c.clone();
        async move {
            let e: Vec<pb::Execution> = executions(&mut c, "sh").await.into_iter().filter(outage).collect();
            let fires: std::collections::BTreeSet<&str> = e.iter().map(|e| e.fire_id.as_str()).collect();
            let done = e.iter().filter(|e| state(e) == pb::ExecutionState::Succeeded).count();
            (fires.len() >= 3 && done == fires.len()).then_some(e)
        }
    })
    .await;
    for e in &waited {
        assert_ne!(state(e), pb::ExecutionState::Failed, "a fire failed while its node was away: {e:?}");
        if state(e) == pb::ExecutionState::Succeeded {
            assert_eq!(e.node_id, "shell", "{e:?}");
        }
    }

    // The shell node goes for good (it leaves): the next fires are recorded failed on the master,
    // with the reason.
    shell.terminate();
    let failed = eventually(WAIT, "a fire recorded failed: no live node has shell", || {
        let mut c = c.clone();
        async move {
            executions(&mut c, "sh")
                .await
                .into_iter()
                .find(|e| state(e) == pb::ExecutionState::Failed && e.error.contains("no live node has it"))
        }
    })
    .await;
    assert!(failed.error.contains("handler 'shell'"), "{failed:?}");
    assert_eq!(failed.node_id, "plain", "{failed:?}");
    eventually(WAIT, "the master alerted", || async {
        let log = plain.log();
        (log.contains("no_node_has_handler") && log.contains(&failed.fire_id)).then_some(())
    })
    .await;
    // One attempt per fire: it is not bounced around or retried in a loop.
    let mut c2 = c.clone();
    let all = executions(&mut c2, "sh").await;
    let attempts = all.iter().filter(|e| e.fire_id == failed.fire_id).count();
    assert_eq!(attempts, 1, "{all:?}");
    // Later fires keep being recorded (the schedule goes on; nothing piles up unrecorded).
    let later = eventually(WAIT, "a later fire recorded too", || {
        let (mut c, after) = (c.clone(), ms(&failed.scheduled_time));
        async move {
            executions(&mut c, "sh")
                .await
                .into_iter()
                .find(|e| ms(&e.scheduled_time) > after + 1000 && state(e) == pb::ExecutionState::Failed)
        }
    })
    .await;
    assert!(later.error.contains("no live node has it"), "{later:?}");
}

/// Redis down (password-protected): `status`, `nodes` and `job list` exit non-zero naming the
/// store's address (never its password) and what the node still knows.
#[tokio::test]
async fn with_redis_down_the_error_names_the_store_and_what_the_node_knows() {
    const PW: &str = "hunter2-node-table-pw";
    let mut redis = RedisServer::start_with(&["--requirepass", PW], &format!(":{PW}@"));
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &flags(&[])).await;
    let (_, epoch) = agreed_master(&[&n1]).await;
    let mut c = n1.client().await;
    let mut j = job("slow", "0 0 3 29 2 *", "sleep", json!(["60s"]));
    j.timeout = None;
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    c.trigger_job(pb::TriggerJobRequest { id: "slow".into(), idempotency_key: String::new(), ..Default::default() })
        .await
        .expect("trigger");
    eventually(WAIT, "the sleep runs", || {
        let mut c = c.clone();
        async move { executions(&mut c, "slow").await.into_iter().find(|e| state(e) == pb::ExecutionState::Running) }
    })
    .await;
    let port = redis.port;
    redis.kill();
    for args in [&["status"][..], &["nodes"], &["job", "list"]] {
        let (code, out, err) = cli(&n1, args);
        assert_ne!(code, Some(0), "{args:?} succeeded with Redis down: {out}");
        assert!(err.contains(&format!("redis at 127.0.0.1:{port}")), "{args:?}: {err}");
        assert!(err.contains("What this node knows: node n1"), "{args:?}: {err}");
        assert!(err.contains(&format!("last saw master n1 (epoch {epoch})")), "{args:?}: {err}");
        assert!(err.contains("slow@m:"), "the running fire is named: {args:?}: {err}");
        assert!(!err.contains(PW), "the password leaked: {err}");
    }
}

/// `dead_node_retention_ms` out of range (flag, env or file) is refused by `--check` with exit 64,
/// the key named and the node not started; a non-number is a usage error.
#[test]
fn a_bad_dead_node_retention_is_refused_naming_the_key() {
    let check = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
            .args(["server", "--check"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run rota");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for (args, env) in [
        (&["--dead-node-retention-ms", "99"][..], &[][..]),
        (&["--dead-node-retention-ms", "18446744073709551615"], &[]),
        (&[], &[("ROTA_DEAD_NODE_RETENTION_MS", "0")]),
    ] {
        let (code, err) = check(args, env);
        assert_eq!(code, Some(64), "{args:?} {env:?}: {err}");
        assert!(err.contains("dead_node_retention_ms") && err.contains("is not in"), "{err}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("rota.toml");
    std::fs::write(&cfg, "dead_node_retention_ms = 1\n").expect("write");
    let (code, err) = check(&["--config", cfg.to_str().expect("utf8")], &[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("dead_node_retention_ms"), "{err}");
    let (code, err) = check(&["--dead-node-retention-ms", "soon"], &[]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("--dead-node-retention-ms"), "{err}");
    // In range: accepted.
    let (code, err) = check(&["--dead-node-retention-ms", "100"], &[]);
    assert_eq!(code, Some(0), "{err}");
}
