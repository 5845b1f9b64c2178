//! Priorities (issue 17, PROTOCOL §3.22) through a real node, a real `redis-server`, real shell
//! processes and the real `rota` binary: with the node's one worker busy, fires waiting for it run
//! high first, then normal, then low (by the runs' own side log); a low fire waiting behind a
//! stream of high ones runs within ten turns; a priority is put and shown through the CLI and the
//! API, and a bad one is refused with the field named and nothing written. (The durable queue's
//! three lists, on both stores, are in `store_conformance.rs`; the rule's table in
//! `job::priority`.)
#[macro_use]
mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, rota, text, Backend, RedisServer, TestNode, NEVER};
use rota::pb;
use serde_json::json;

/// Puts job `id` at `priority`: a run of `secs` that notes its job's start in `log`.
async fn put(node: &TestNode, log: &Path, id: &str, priority: &str, secs: &str) {
    let sh = format!("echo \"$ROTA_JOB_ID\" >> {}; sleep {secs}", log.display());
    let args = json!({ "sh": sh }).to_string();
    let o = rota(
        node,
        &["job", "put", "--id", id, "--cron", NEVER, "--handler", "shell", "--args", &args, "--priority", priority],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "put {id}: {}", text(&o));
}

fn started(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect()
}

async fn trigger(node: &TestNode, id: &str) {
    let r = node.client().await.trigger_job(pb::TriggerJobRequest { id: id.into(), ..Default::default() }).await;
    r.expect("trigger");
}

/// Triggers the blocker, waits for it to run, then triggers `ids` in order (they wait for the one
/// worker), and returns the jobs the worker ran after the blocker, in order.
async fn behind_the_blocker(node: &TestNode, log: &Path, ids: &[&str]) -> Vec<String> {
    let before = started(log).len();
    trigger(node, "blocker").await;
    eventually(Duration::from_secs(20), "the blocker runs", || async { (started(log).len() > before).then_some(()) })
        .await;
    for id in ids {
        trigger(node, id).await;
    }
    let runs = eventually(Duration::from_secs(60), "every fire ran", || async {
        let s = started(log);
        (s.len() > before + ids.len()).then_some(s)
    })
    .await;
    assert_eq!(runs[before], "blocker", "{runs:?}");
    runs[before + 1..].to_vec()
}

#[tokio::test]
async fn a_busy_nodes_worker_goes_to_higher_priorities_first_and_low_ones_still_run() {
    let redis = RedisServer::start();
    let node = TestNode::start(
        &Backend::Redis(redis.url()),
        "n1",
        &["--workers", "1", "--enable-shell", "--shell-allow", "/bin/sh"],
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    // Long enough for every trigger below to be waiting before it ends.
    put(&node, &log, "blocker", "normal", "3").await;
    for (id, level) in
        [("h1", "high"), ("h2", "high"), ("n1", "normal"), ("n2", "normal"), ("l1", "low"), ("l2", "low")]
    {
        put(&node, &log, id, level, "0.05").await;
    }
    let level = |job: &String| job.chars().next().unwrap_or('?');
    let ran = behind_the_blocker(&node, &log, &["l1", "n1", "h1", "l2", "h2", "n2"]).await;
    let levels: String = ran.iter().map(level).collect();
    assert_eq!(levels, "hhnnll", "{ran:?}");
    // A low fire behind ten high ones: the worker's ninth turn is its (eight passes at most, then
    // it goes first).
    let mut ids = vec!["l1"];
    ids.extend(std::iter::repeat_n("h1", 10));
    let ran = behind_the_blocker(&node, &log, &ids).await;
    assert_eq!(ran.iter().position(|j| j == "l1"), Some(8), "{ran:?}");
    // Every run succeeds (the last may still be running), and the priority shows.
    for id in ["h1", "n1", "l1"] {
        eventually(Duration::from_secs(30), "every run succeeded", || async {
            let execs = common::executions(&mut node.client().await, id).await;
            execs.iter().all(|e| common::state(e) == pb::ExecutionState::Succeeded).then_some(())
        })
        .await;
    }
    let o = rota(&node, &["job", "get", "l1", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["priority"], "low", "{v}");
    let got = node.client().await.get_job(pb::GetJobRequest { id: "h1".into() }).await.expect("get").into_inner();
    assert_eq!(got.job.map(|j| j.priority), Some(pb::Priority::High as i32));
}

#[tokio::test]
async fn a_bad_priority_is_refused_naming_the_field_and_nothing_is_written() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    let o =
        rota(&node, &["job", "put", "--id", "p", "--cron", NEVER, "--handler", "noop", "--priority", "urgent"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--priority") && text(&o).contains("urgent"), "{}", text(&o));
    let job = pb::Job {
        id: "p".into(),
        schedule: Some(pb::job::Schedule::Cron(NEVER.into())),
        handler: "noop".into(),
        priority: 9,
        ..Default::default()
    };
    let e = node.client().await.put_job(pb::PutJobRequest { job: Some(job) }).await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("priority") && e.message().contains('9'), "{e:?}");
    let e = node.client().await.get_job(pb::GetJobRequest { id: "p".into() }).await.expect_err("nothing written");
    assert_eq!(e.code(), tonic::Code::NotFound);
    // A jobs file's unknown priority names the key.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(&file, "[[job]]\nid = \"p\"\ncron = \"@daily\"\nhandler = \"noop\"\npriority = \"urgent\"\n")
        .expect("write");
    let o = rota(&node, &["job", "put", "--file", file.to_str().expect("utf-8")]).await;
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("priority"), "{}", text(&o));
}
