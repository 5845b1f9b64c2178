//! Concurrency limits (issue 17, PROTOCOL §3.21) through real nodes, a real `redis-server`, real
//! shell processes and the real `rota` binary: a limit of 3 over 20 fires at once on three nodes
//! never has more than 3 running (by the runs' own side log), through the kill of a node holding a
//! slot (its slot frees itself when its lease runs out); a fire that waits past the misfire
//! threshold is recorded misfired, saying for which limit; bad limits are refused with the field
//! named, and nothing is written. (The store's part, on both stores, is in `store_conformance.rs`.)
#[macro_use]
mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, rota, text, Backend, RedisServer, TestNode, NEVER};
use rota::pb;
use serde_json::json;

/// A run of `secs` that notes its start and end (`S`/`E`, execution, ms) in `log`.
fn script(log: &Path, secs: &str) -> String {
    let l = log.display();
    let line = |what: &str| format!("echo \"{what} $ROTA_EXECUTION_ID $(date +%s%3N)\" >> {l}");
    format!("{}; sleep {secs}; {}", line("S"), line("E"))
}

/// The most runs of the side log under way at once (a run with no end line counts to the end).
fn most_at_once(log: &Path) -> usize {
    let mut events: Vec<(i64, i32)> = Vec::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let at: i64 = f.get(2).and_then(|t| t.parse().ok()).expect("a side-log line");
        // An end sorts before a start at the same ms: that run is over when the next begins.
        events.push((at, if f[0] == "S" { 1 } else { -1 }));
    }
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most as usize
}

async fn put(node: &TestNode, args: &[&str]) {
    let o = rota(node, &[&["job", "put", "--cron", NEVER][..], args].concat()).await;
    assert_eq!(o.status.code(), Some(0), "put {args:?}: {}", text(&o));
}

/// Three nodes, a limit of 3 on the jobs labelled `group=db`, 20 fires of such a job triggered at
/// once across the nodes (1.5 s runs). The node running the most is killed while it holds slots:
/// the others wait until those slots' leases run out, then go on. Never more than 3 run at once;
/// every fire ends (those of the killed node `lost`, by their policy), none past its threshold.
#[tokio::test]
async fn a_limit_of_three_over_twenty_fires_through_a_node_kill() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let shell = ["--enable-shell", "--shell-allow", "/bin/sh"];
    let mut nodes = [
        TestNode::start(&b, "n1", &shell).await,
        TestNode::start(&b, "n2", &shell).await,
        TestNode::start(&b, "n3", &shell).await,
    ];
    common::agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let o = rota(&nodes[0], &["limit", "put", "db", "--max", "3", "--label", "group=db", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!((v["name"].as_str(), v["max"].as_u64(), v["label"].as_str()), (Some("db"), Some(3), Some("group=db")));
    let args = json!({"sh": script(&log, "1.5")}).to_string();
    put(&nodes[0], &["--id", "q", "--handler", "shell", "--args", &args, "--label", "group=db"]).await;
    // The nodes read the limits every 2 s at most.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let n = &nodes[i % 3];
        let r = n.client().await.trigger_job(pb::TriggerJobRequest { id: "q".into(), ..Default::default() }).await;
        ids.push(r.expect("trigger").into_inner().execution.expect("execution").id);
    }
    // Wait for n3 to hold a slot, then kill it.
    eventually(Duration::from_secs(20), "n3 runs one", || async {
        let execs = common::executions(&mut nodes[0].client().await, "q").await;
        execs.iter().any(|e| e.node_id == "n3" && common::state(e) == pb::ExecutionState::Running).then_some(())
    })
    .await;
    let limits = nodes[0].client().await.list_limits(pb::ListLimitsRequest {}).await.expect("list").into_inner();
    assert!(limits.limits.iter().all(|l| l.running <= 3), "{limits:?}");
    nodes[2].kill();
    let execs = eventually(Duration::from_secs(90), "every fire ends", || async {
        let execs = common::executions(&mut nodes[0].client().await, "q").await;
        let open =
            execs.iter().any(|e| matches!(common::state(e), pb::ExecutionState::Pending | pb::ExecutionState::Running));
        (execs.len() >= 20 && !open).then_some(execs)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // the killed node's orphaned shells end too
    let most = most_at_once(&log);
    assert!(most <= 3, "{most} ran at once:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert_eq!(most, 3, "the limit was used");
    let mut by_state = std::collections::BTreeMap::<String, usize>::new();
    for e in &execs {
        *by_state.entry(format!("{:?}", common::state(e))).or_default() += 1;
        match common::state(e) {
            pb::ExecutionState::Succeeded => {}
            pb::ExecutionState::Lost => assert_eq!(e.node_id, "n3", "{e:?}"),
            other => panic!("a fire ended {other:?}: {e:?}"),
        }
    }
    eprintln!("20 fires under a limit of 3: {by_state:?}; at most {most} at once");
    assert!(by_state.get("Succeeded").copied().unwrap_or(0) >= 13, "{by_state:?}");
    // The dead node's slot frees itself when its lease (15 s) runs out.
    eventually(Duration::from_secs(20), "the dead node's slot frees itself", || async {
        let limits = nodes[0].client().await.list_limits(pb::ListLimitsRequest {}).await.expect("list").into_inner();
        (limits.limits.iter().map(|l| l.running).sum::<u32>() == 0).then_some(())
    })
    .await;
    let o = rota(&nodes[0], &["limit", "list"]).await;
    assert!(text(&o).contains("db") && text(&o).contains("label group=db"), "{}", text(&o));
}

/// A fire that finds its limit full past its misfire threshold (3 s here) is recorded misfired,
/// saying for which limit; a fire waiting for a slot can be cancelled; the limit deleted, fires go
/// on at once.
#[tokio::test]
async fn a_fire_waits_for_its_limit_at_most_the_misfire_threshold() {
    let node = TestNode::start(
        &Backend::Memory,
        "n1",
        &[
            "--enable-shell",
            "--shell-allow",
            "/bin/sh",
            "--misfire-threshold-ms",
            "3000",
            "--dispatch-timeout-ms",
            "1000",
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let o = rota(&node, &["limit", "put", "one", "--max", "1", "--handler", "shell"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let args = json!({"sh": script(&dir.path().join("runs"), "12")}).to_string();
    put(&node, &["--id", "long", "--handler", "shell", "--args", &args]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let c = node.client().await;
    let trigger = |c: &pb::scheduler_service_client::SchedulerServiceClient<tonic::transport::Channel>| {
        let mut c = c.clone();
        async move {
            let r = c.trigger_job(pb::TriggerJobRequest { id: "long".into(), ..Default::default() }).await;
            r.expect("trigger").into_inner().execution.expect("execution").id
        }
    };
    let first = trigger(&c).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = trigger(&c).await;
    let got = |id: String| {
        let mut c = c.clone();
        async move {
            let r = c.get_execution(pb::GetExecutionRequest { id }).await.expect("get");
            r.into_inner().execution.expect("execution")
        }
    };
    let e = eventually(Duration::from_secs(10), "the second gives up", || async {
        let e = got(second.clone()).await;
        (common::state(&e) == pb::ExecutionState::Misfired).then_some(e)
    })
    .await;
    assert!(e.error.contains("for a slot of limit one (1 of 1 running)"), "{e:?}");
    assert!(e.start_time.is_none(), "it never began: {e:?}");
    // A third waits, and is cancelled while it waits.
    let third = trigger(&c).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c
        .clone()
        .cancel_execution(pb::CancelExecutionRequest { execution_id: third.clone(), reason: "no".into() })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(r.execution.map(|e| e.state), Some(pb::ExecutionState::Cancelled as i32));
    // Deleted, the limit holds nothing up: a fourth runs beside the first.
    let o = rota(&node, &["limit", "delete", "one"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let fourth = trigger(&c).await;
    eventually(Duration::from_secs(5), "the fourth runs", || async {
        (common::state(&got(fourth.clone()).await) == pb::ExecutionState::Running).then_some(())
    })
    .await;
    assert_eq!(common::state(&got(first).await), pb::ExecutionState::Running, "beside the first");
    let o = rota(&node, &["limit", "delete", "one"]).await;
    assert_eq!(o.status.code(), Some(4), "not found: {}", text(&o));
}

/// Bad limits: the right code, the field named, nothing written.
#[tokio::test]
async fn bad_limits_are_refused_naming_the_field() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    let mut c = node.client().await;
    let limit = |name: &str, max: u32, handler: &str, label: &str| pb::Limit {
        name: name.into(),
        max,
        handler: handler.into(),
        label: label.into(),
        running: 0,
    };
    for (l, field) in [
        (limit("", 3, "h", ""), "name"),
        (limit("a b", 3, "h", ""), "name"),
        (limit("x", 0, "h", ""), "max"),
        (limit("x", 100_001, "h", ""), "max"),
        (limit("x", 3, "", ""), "handler"),
        (limit("x", 3, "h", "k=v"), "label"),
        (limit("x", 3, "", "nokey"), "label"),
    ] {
        let e = c.put_limit(pb::PutLimitRequest { limit: Some(l.clone()) }).await.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{l:?}: {e:?}");
        assert!(e.message().starts_with(&format!("{field}: ")), "{l:?}: {}", e.message());
    }
    let e = c.put_limit(pb::PutLimitRequest { limit: None }).await.expect_err("refused");
    assert!(e.message().starts_with("limit: "), "{}", e.message());
    let e = c.delete_limit(pb::DeleteLimitRequest { name: "no such".into() }).await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = c.delete_limit(pb::DeleteLimitRequest { name: "absent".into() }).await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let all = c.list_limits(pb::ListLimitsRequest {}).await.expect("list").into_inner();
    assert!(all.limits.is_empty(), "nothing written: {all:?}");
    let o = rota(&node, &["limit", "put", "x", "--max", "3"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("handler: "), "{}", text(&o));
}
