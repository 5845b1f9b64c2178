//! External workers (`WorkerService`): real Redis, real `rota` nodes, and real Python worker
//! processes built on the SDK in `sdk/python` (`tests/workers/worker.py`), plus a raw gRPC stream for
//! the bad-input cases. A fire reaches only a worker serving its handler, with its context and
//! arguments; output is kept; a failure, a timeout and a worker gone mid-run are recorded as the job
//! says; nothing runs twice.
mod common;

use std::time::Duration;

use common::workers::{attached, sdk_unit_tests, ExtWorker, Sdk};
use common::*;
use rota::pb;
use rota::pb::attach_request::Msg as In;
use rota::pb::worker_service_client::WorkerServiceClient;
use serde_json::json;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

fn job_with(
    id: &str,
    cron: &str,
    handler: &str,
    args: serde_json::Value,
    f: impl FnOnce(&mut rota::job::JobSpec),
) -> pb::Job {
    let mut spec =
        rota::job::JobSpec { id: id.into(), cron: cron.into(), handler: handler.into(), args, ..Default::default() };
    f(&mut spec);
    rota::cli::pb_job(&spec)
}

async fn put(node: &TestNode, job: pb::Job) -> pb::PutJobResponse {
    node.client().await.put_job(pb::PutJobRequest { job: Some(job) }).await.expect("put job").into_inner()
}

/// Executions of `job` in `state`.
async fn in_state(node: &TestNode, job: &str, s: pb::ExecutionState) -> Vec<pb::Execution> {
    executions(&mut node.client().await, job).await.into_iter().filter(|e| state(e) == s).collect()
}

/// A job runs in a Python and in a Node.js worker: its context and arguments arrive, its log lines
/// and its return value are the execution's output, and the worker's own log agrees with rota's
/// records. PutJob warns while no worker serves the handler, and not once one does.
#[tokio::test]
async fn a_python_worker_runs_fires_with_their_context_arguments_and_output() {
    runs_fires_with_their_context_arguments_and_output(Sdk::Python).await
}

#[tokio::test]
async fn a_node_worker_runs_fires_with_their_context_arguments_and_output() {
    runs_fires_with_their_context_arguments_and_output(Sdk::Node).await
}

async fn runs_fires_with_their_context_arguments_and_output(sdk: Sdk) {
    let (h, wid) = (format!("{}.echo", sdk.prefix()), format!("{}-1", sdk.prefix()));
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let args = json!({"region": "eu", "n": 3, "list": [1, "two"]});
    let r = put(&node, job_with("echo", "* * * * * *", &h, args.clone(), |_| {})).await;
    assert_eq!(r.warnings.len(), 1, "{r:?}");
    assert!(r.warnings[0].contains(&format!("no live node or attached worker serves handler '{h}'")), "{r:?}");
    let w = ExtWorker::start_on(sdk, &[&node.addr], &wid, 2, None);
    attached(&node, &h).await;
    let r = put(&node, job_with("echo", "* * * * * *", &h, args.clone(), |_| {})).await;
    assert!(r.warnings.is_empty(), "{r:?}");
    let done = eventually(WAIT, "three fires succeeded in the worker", || async {
        let d = in_state(&node, "echo", pb::ExecutionState::Succeeded).await;
        (d.len() >= 3).then_some(d)
    })
    .await;
    for e in &done {
        let (log_line, ret) = e.output.split_once('\n').expect("a log line, then the return value");
        assert_eq!(log_line, format!("hello from {wid}"), "{e:?}");
        let v: serde_json::Value = serde_json::from_str(ret).expect("the handler's JSON");
        assert_eq!(v["fire_id"], json!(e.fire_id), "{v}");
        assert_eq!(v["job_id"], json!("echo"));
        assert_eq!(v["attempt"], json!(1));
        assert_eq!(v["epoch"], json!(e.epoch), "{v}");
        assert!(e.epoch > 0);
        assert_eq!(v["node_id"], json!("n1"));
        assert_eq!(v["manual"], json!(false));
        assert_eq!(v["scheduled_ms"], json!(ms(&e.scheduled_time)));
        assert_eq!(v["args"], args, "arguments arrive as the job gives them");
        assert_eq!(v["deadline"], json!(false), "no timeout, no deadline");
        assert_eq!((&v["shard_index"], &v["shard_total"]), (&json!(0), &json!(1)), "not sharded: shard 0 of 1");
        assert_eq!(e.node_id, "n1");
    }
    // The worker's own log: one start and one end per execution, for exactly the recorded ones.
    let runs = w.runs();
    for e in &done {
        let starts = runs.iter().filter(|r| r.0 == "S" && r.1 == e.id).count();
        assert_eq!(starts, 1, "execution {} started {starts} times in the worker", e.id);
    }
    let mut fires: Vec<&str> = runs.iter().filter(|r| r.0 == "S").map(|r| r.2.as_str()).collect();
    let n = fires.len();
    fires.sort();
    fires.dedup();
    assert_eq!(fires.len(), n, "a fire ran twice: {runs:?}");
}

/// A handler that raises fails the run with its message, and the job's retries apply; a manual
/// trigger runs in the worker too.
#[tokio::test]
async fn a_failing_python_handler_is_recorded_failed_with_its_message_and_retried() {
    failing_handler(Sdk::Python, "RuntimeError: failed on purpose: {'why': 'test'}").await
}

#[tokio::test]
async fn a_failing_node_handler_is_recorded_failed_with_its_message_and_retried() {
    failing_handler(Sdk::Node, r#"Error: failed on purpose: {"why":"test"}"#).await
}

async fn failing_handler(sdk: Sdk, message: &str) {
    let h = format!("{}.fail", sdk.prefix());
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let _w = ExtWorker::start_on(sdk, &[&node.addr], "w-1", 2, None);
    attached(&node, &h).await;
    put(
        &node,
        job_with("boom", "0 0 0 1 1 *", &h, json!({"why": "test"}), |s| {
            s.retries = 1;
            s.retry_backoff_ms = 200;
        }),
    )
    .await;
    let mut c = node.client().await;
    c.trigger_job(pb::TriggerJobRequest { id: "boom".into(), ..Default::default() }).await.expect("trigger");
    let failed = eventually(WAIT, "both attempts failed", || async {
        let f = in_state(&node, "boom", pb::ExecutionState::Failed).await;
        (f.len() == 2).then_some(f)
    })
    .await;
    for e in &failed {
        assert_eq!(e.error, message, "{e:?}");
        assert!(e.manual);
    }
    let mut attempts: Vec<u32> = failed.iter().map(|e| e.attempt).collect();
    attempts.sort();
    assert_eq!(attempts, vec![1, 2]);
}

/// The job's timeout cancels the handler in the worker (it sees the cancellation) and the execution
/// is `timed_out`; the worker's slot is free again afterwards.
#[tokio::test]
async fn a_timeout_cancels_the_handler_in_a_python_worker() {
    timeout_cancels(Sdk::Python).await
}

#[tokio::test]
async fn a_timeout_cancels_the_handler_in_a_node_worker() {
    timeout_cancels(Sdk::Node).await
}

async fn timeout_cancels(sdk: Sdk) {
    stopped_in_the_worker(sdk, false).await
}

/// CancelExecution reaches the external worker running the fire: the worker is told to cancel, its
/// handler sees the cancellation, and the record ends `cancelled`, saying who asked, why, and that
/// the worker stopped the handler; the worker's one slot is free again afterwards.
#[tokio::test]
async fn a_cancel_stops_the_handler_in_a_python_worker() {
    stopped_in_the_worker(Sdk::Python, true).await
}

#[tokio::test]
async fn a_cancel_stops_the_handler_in_a_node_worker() {
    stopped_in_the_worker(Sdk::Node, true).await
}

/// A long run on a one-slot worker stopped by the node, by the job's timeout or (`cancel`) by
/// CancelExecution: the record says which, keeps what was printed, the handler saw the
/// cancellation, and the slot serves a next run.
async fn stopped_in_the_worker(sdk: Sdk, cancel: bool) {
    let (h, wid) = (format!("{}.sleep", sdk.prefix()), format!("{}-1", sdk.prefix()));
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let w = ExtWorker::start_on(sdk, &[&node.addr], &wid, 1, None);
    attached(&node, &h).await;
    let timeout = if cancel { 0 } else { 800 };
    put(&node, job_with("slow", "0 0 0 1 1 *", &h, json!({"ms": 20000}), |s| s.timeout_ms = timeout)).await;
    let mut c = node.client().await;
    let fired = c.trigger_job(pb::TriggerJobRequest { id: "slow".into(), ..Default::default() }).await;
    let id = fired.expect("trigger").into_inner().execution.expect("execution").id;
    let t = if cancel {
        eventually(WAIT, "the handler began", || async {
            w.runs().iter().any(|r| r.0 == "S" && r.1 == id).then_some(())
        })
        .await;
        let req = pb::CancelExecutionRequest { execution_id: id.clone(), reason: "enough".into() };
        let e = c.cancel_execution(req).await.expect("cancel").into_inner().execution.expect("execution");
        assert_eq!(state(&e), pb::ExecutionState::Cancelled, "{e:?}");
        let said = format!("cancelled by anonymous: enough; worker '{wid}' stopped the handler");
        assert!(e.error.starts_with(&said), "{e:?}");
        e
    } else {
        let t = eventually(WAIT, "the run timed out", || async {
            in_state(&node, "slow", pb::ExecutionState::TimedOut).await.into_iter().next()
        })
        .await;
        assert!(t.error.starts_with("timed out after 800 ms"), "{t:?}");
        t
    };
    assert!(t.output.contains(&format!("sleeping 20000 ms on {wid}")), "the output printed is kept: {t:?}");
    eventually(WAIT, "the handler saw the cancellation", || async {
        w.runs().iter().any(|r| r.0 == "C" && r.1 == t.id).then_some(())
    })
    .await;
    // The one slot is free again: a next run goes through.
    put(&node, job_with("quick", "0 0 0 1 1 *", &h, json!({"ms": 10}), |_| {})).await;
    c.trigger_job(pb::TriggerJobRequest { id: "quick".into(), ..Default::default() }).await.expect("trigger");
    eventually(WAIT, "a next run succeeded", || async {
        in_state(&node, "quick", pb::ExecutionState::Succeeded).await.into_iter().next()
    })
    .await;
}

/// A worker SIGKILLed mid-run: a `lost` job's fire is recorded lost (and alerted), a `rerun` job's
/// fire runs again as a new attempt on the other worker; no fire succeeds twice.
#[tokio::test]
async fn a_python_worker_killed_mid_run_leaves_its_fires_to_their_recovery_policy() {
    killed_mid_run(Sdk::Python).await
}

#[tokio::test]
async fn a_node_worker_killed_mid_run_leaves_its_fires_to_their_recovery_policy() {
    killed_mid_run(Sdk::Node).await
}

async fn killed_mid_run(sdk: Sdk) {
    let h = format!("{}.sleep", sdk.prefix());
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let mut a = ExtWorker::start_on(sdk, &[&node.addr], "w-a", 4, None);
    attached(&node, &h).await;
    let once = |id: &str, rerun: bool| {
        job_with(id, "0 0 0 1 1 *", &h, json!({"ms": 4000}), |s| {
            s.recovery = if rerun { rota::job::Recovery::Rerun } else { rota::job::Recovery::Lost };
        })
    };
    put(&node, once("lostjob", false)).await;
    put(&node, once("rerunjob", true)).await;
    let mut c = node.client().await;
    for id in ["lostjob", "rerunjob"] {
        c.trigger_job(pb::TriggerJobRequest { id: id.into(), ..Default::default() }).await.expect("trigger");
    }
    eventually(WAIT, "both runs started in worker a", || async {
        (a.runs().iter().filter(|r| r.0 == "S").count() == 2).then_some(())
    })
    .await;
    // Worker b is attached before a dies: the re-run goes through the node's own queue, and its
    // queue taker starts it (not the periodic rescan, seconds later).
    let b = ExtWorker::start_on(sdk, &[&node.addr], "w-b", 4, None);
    eventually(WAIT, "worker b attached", || async { b.log().contains("attached to node n1").then_some(()) }).await;
    a.kill();
    let lost = eventually(WAIT, "the lost job's fire recorded lost", || async {
        in_state(&node, "lostjob", pb::ExecutionState::Lost).await.into_iter().next()
    })
    .await;
    assert!(lost.error.contains("worker 'w-a' gone mid-run"), "{lost:?}");
    eventually(WAIT, "the lost fire alerted", || async { node.log().contains("execution_lost").then_some(()) }).await;
    let rerun = eventually(WAIT, "the rerun job's fire succeeded on worker b", || async {
        in_state(&node, "rerunjob", pb::ExecutionState::Succeeded).await.into_iter().next()
    })
    .await;
    assert_eq!(rerun.attempt, 2, "{rerun:?}");
    assert_eq!(rerun.output.lines().last(), Some("slept on w-b"), "{rerun:?}");
    let first = executions(&mut c, "rerunjob").await.into_iter().find(|e| e.attempt == 1).expect("attempt 1");
    assert_eq!(state(&first), pb::ExecutionState::Lost, "{first:?}");
    // Started by the queue's taker, not seconds later by the rescan or the master's sweep.
    for late in ["rescan: starting a fire", "recovered a dead node's fire"] {
        assert!(!node.log().contains(late), "the re-run waited ({late}): {}", node.log());
    }
    assert!(first.error.contains("re-run as attempt 2"), "{first:?}");
    assert!(first.next_attempt_time.is_some(), "it says another attempt follows (trigger --wait goes on): {first:?}");
    // Nothing more: the lost job's fire did not run again, and each job has one fire.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(b.runs().iter().all(|r| !r.2.starts_with("lostjob@")), "a lost fire ran again: {:?}", b.runs());
    for id in ["lostjob", "rerunjob"] {
        let succeeded = in_state(&node, id, pb::ExecutionState::Succeeded).await.len();
        assert!(succeeded <= 1, "{id}: {succeeded} successes");
    }
}

/// The node a worker is attached to is SIGKILLed mid-run: the worker attaches to the other node,
/// the fire it was running is recovered by its job's policy (`rerun`: run again, there), and no
/// fire succeeds twice.
#[tokio::test]
async fn a_worker_whose_node_is_killed_moves_to_another_and_its_fire_is_recovered() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let flags = ["--lease-ttl-ms", LEASE_TTL_MS, "--lease-renew-ms", LEASE_RENEW_MS];
    let mut n1 = TestNode::start(&b, "n1", &flags).await;
    let n2 = TestNode::start(&b, "n2", &flags).await;
    let w = ExtWorker::start(&[&n1.addr, &n2.addr], "py-1", 4, None);
    attached(&n2, "py.sleep").await;
    put(
        &n2,
        job_with("job", "0 0 0 1 1 *", "py.sleep", json!({"ms": 3000}), |s| s.recovery = rota::job::Recovery::Rerun),
    )
    .await;
    // Triggered through n1: the fire runs on n1, where the worker is attached.
    n1.client()
        .await
        .trigger_job(pb::TriggerJobRequest { id: "job".into(), ..Default::default() })
        .await
        .expect("trigger");
    eventually(WAIT, "the run started in the worker", || async { w.runs().iter().any(|r| r.0 == "S").then_some(()) })
        .await;
    n1.kill();
    eventually(WAIT, "the worker attached to n2", || async { w.log().contains("attached to node n2").then_some(()) })
        .await;
    let mut c = n2.client().await;
    let done = eventually(WAIT, "the fire re-run and succeeded", || async {
        in_state(&n2, "job", pb::ExecutionState::Succeeded).await.into_iter().next()
    })
    .await;
    assert_eq!(done.node_id, "n2", "{done:?}");
    assert!(done.attempt >= 2, "{done:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = executions(&mut c, "job").await;
    assert_eq!(all.iter().filter(|e| state(e) == pb::ExecutionState::Succeeded).count(), 1, "{all:?}");
    let first = all.iter().find(|e| e.attempt == 1).expect("attempt 1");
    assert_eq!(state(first), pb::ExecutionState::Lost, "the dead node's attempt: {first:?}");
}

/// An execution's output streams live while the worker prints it, asked of another node than the
/// one running it (relayed), and of that node; the last message is the final record, whose output
/// is what was streamed. `rota exec logs --follow` prints it and exits 0. Bad ids are refused.
#[tokio::test]
async fn output_streams_live_from_any_node() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &[]).await;
    let n2 = TestNode::start(&b, "n2", &[]).await;
    let _w = ExtWorker::start(&[&n1.addr], "py-1", 2, None);
    attached(&n1, "py.count").await;
    put(&n1, job_with("count", "0 0 0 1 1 *", "py.count", json!({"n": 12, "ms": 250}), |_| {})).await;
    let fired = n1
        .client()
        .await
        .trigger_job(pb::TriggerJobRequest { id: "count".into(), ..Default::default() })
        .await
        .expect("trigger")
        .into_inner();
    let id = fired.execution.expect("execution").id;
    // Both nodes: n1 runs it, n2 relays it from n1.
    let follow = |node: &TestNode| {
        let (ep, id) = (node.endpoint(), id.clone());
        async move {
            let ch = tonic::transport::Endpoint::from_shared(ep).expect("ep").connect().await.expect("connect");
            let mut c = pb::scheduler_service_client::SchedulerServiceClient::new(ch);
            let mut s = c
                .watch_execution_output(pb::WatchExecutionOutputRequest { execution_id: id })
                .await
                .expect("watch")
                .into_inner();
            let mut got: Vec<(i64, pb::WatchExecutionOutputResponse)> = Vec::new();
            while let Some(m) = s.message().await.expect("stream") {
                let last = m.execution.is_some();
                got.push((rota::store::now_ms(), m));
                if last {
                    break;
                }
            }
            got
        }
    };
    let (on_n1, on_n2) = tokio::join!(follow(&n1), follow(&n2));
    for (name, got) in [("n1", on_n1), ("n2", on_n2)] {
        let (end_at, last) = got.last().expect("a last message");
        let e = last.execution.clone().expect("the final record last");
        assert_eq!(state(&e), pb::ExecutionState::Succeeded, "{name}: {e:?}");
        let streamed: String = got.iter().map(|(_, m)| m.output.as_str()).collect();
        assert!(streamed.starts_with("line 0\nline 1\n"), "{name}: {streamed:?}");
        assert!(
            e.output.starts_with(&streamed),
            "{name}: the record has what was streamed: {streamed:?} / {:?}",
            e.output
        );
        // Live: chunks came over the run's three seconds, not all at its end (a second of margin for
        // a follower that connects late on a loaded machine).
        let chunks: Vec<i64> = got.iter().filter(|(_, m)| !m.output.is_empty()).map(|(t, _)| *t).collect();
        assert!(chunks.len() >= 3, "{name}: {} chunks", chunks.len());
        assert!(
            ms(&e.end_time) - chunks[0] >= 1000,
            "{name}: the first line came {} ms before the end",
            ms(&e.end_time) - chunks[0]
        );
        assert!(*end_at >= ms(&e.end_time));
    }
    // The CLI, on an ended execution, through n2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["exec", "logs", &id, "--follow", "--endpoint", &n2.endpoint()])
        .output()
        .expect("rota exec logs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("line 0\nline 1\n") && text.ends_with("line 11\ncounted"), "{text:?}");
    // Bad input.
    let mut c = n2.client().await;
    let e = c
        .watch_execution_output(pb::WatchExecutionOutputRequest { execution_id: "nope".into() })
        .await
        .expect_err("not an id");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("execution_id: 'nope' is not an execution id"), "{e:?}");
    // The node-to-node relay refuses a bad id the same way, naming the field.
    let mut peer = pb::node_service_client::NodeServiceClient::new(n1.channel().await);
    let bad = pb::WatchOutputRequest { execution_id: "x y".into(), output_offset: 0, stderr_offset: 0 };
    let e = peer.watch_output(bad).await.expect_err("not an id");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("execution_id: "), "{e:?}");
    let unknown = "01a24300-0000-7000-8000-000000000000".to_string();
    let e =
        c.watch_execution_output(pb::WatchExecutionOutputRequest { execution_id: unknown }).await.expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

/// A job's selector: its fires run only on a worker whose tags match (two Python workers serving
/// the same handlers, one on n1 tagged `region=eu`, one on n2 tagged `region=us,gpu=true`); with
/// no matching worker, PutJob warns and the fire waits, then is misfired. A bad selector is
/// refused naming it.
#[tokio::test]
async fn a_selector_routes_fires_to_workers_with_matching_tags() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &["--misfire-threshold-ms", "3000"]).await;
    let _n2 = TestNode::start(&b, "n2", &["--misfire-threshold-ms", "3000"]).await;
    let _eu = ExtWorker::start_tagged(Sdk::Python, &[&n1.addr], "eu-1", 4, "region=eu");
    let _us = ExtWorker::start_tagged(Sdk::Python, &[&_n2.addr], "us-1", 4, "region=us,gpu=true");
    let with = |sel: &[(&str, &str)]| {
        let sel: std::collections::BTreeMap<String, String> =
            sel.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |s: &mut rota::job::JobSpec| s.selector = sel
    };
    // Both attached (the master sees each node's workers' tags).
    eventually(WAIT, "both workers attached", || async {
        let r = n1.client().await.list_nodes(pb::ListNodesRequest {}).await.ok()?.into_inner();
        (r.nodes.iter().filter(|n| n.handlers.iter().any(|h| h == "py.echo")).count() == 2).then_some(())
    })
    .await;
    let r = put(&n1, job_with("us", "* * * * * *", "py.echo", json!(null), with(&[("region", "us")]))).await;
    assert!(r.warnings.is_empty(), "{r:?}");
    put(&n1, job_with("eu", "* * * * * *", "py.echo", json!(null), with(&[("region", "eu")]))).await;
    put(&n1, job_with("gpu", "* * * * * *", "py.echo", json!(null), with(&[("region", "us"), ("gpu", "true")]))).await;
    for (job, worker) in [("us", "us-1"), ("eu", "eu-1"), ("gpu", "us-1")] {
        let done = eventually(WAIT, "three fires of the job succeeded", || async {
            let d = in_state(&n1, job, pb::ExecutionState::Succeeded).await;
            (d.len() >= 3).then_some(d)
        })
        .await;
        for e in done {
            let v: serde_json::Value = serde_json::from_str(e.output.lines().last().unwrap_or_default()).expect("json");
            assert_eq!(v["worker"], json!(worker), "{job}: {e:?}");
        }
    }
    // No worker matches: a warning, then the fire waits and is misfired.
    let r = put(&n1, job_with("ap", "0 0 0 1 1 *", "py.echo", json!(null), with(&[("region", "ap")]))).await;
    assert_eq!(r.warnings.len(), 1, "{r:?}");
    assert!(r.warnings[0].contains("with tags matching its selector"), "{r:?}");
    n1.client()
        .await
        .trigger_job(pb::TriggerJobRequest { id: "ap".into(), ..Default::default() })
        .await
        .expect("trigger");
    let m = eventually(WAIT, "the fire no worker matches recorded misfired", || async {
        in_state(&n1, "ap", pb::ExecutionState::Misfired).await.into_iter().next()
    })
    .await;
    assert!(m.error.contains("no worker for handler 'py.echo'"), "{m:?}");
    // A bad selector.
    let bad = job_with("bad", "* * * * * *", "py.echo", json!(null), with(&[("bad key", "x")]));
    let e = n1.client().await.put_job(pb::PutJobRequest { job: Some(bad) }).await.expect_err("bad selector");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("selector.bad key: keys and values must be"), "{e:?}");
    let many: Vec<(String, String)> = (0..17).map(|i| (format!("k{i}"), "v".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let bad = job_with("bad", "* * * * * *", "py.echo", json!(null), with(&many));
    let e = n1.client().await.put_job(pb::PutJobRequest { job: Some(bad) }).await.expect_err("too many");
    assert!(e.message().starts_with("selector: more than 16 tags"), "{e:?}");
}

/// TriggerJob's `target_selector` (issue 17: "a target: node id or tag selector"): a manual fire
/// runs on a worker with those tags besides the job's selector, even when the node asked has none
/// (it hands the fire to the node that has: the tags go with the fire, through its hash); a dry run
/// says where; bad targets are refused naming the field, nothing fired.
#[tokio::test]
async fn a_manual_fires_target_tags_pick_its_worker_wherever_it_is_asked() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &[]).await;
    let n2 = TestNode::start(&b, "n2", &[]).await;
    let _eu = ExtWorker::start_tagged(Sdk::Python, &[&n1.addr], "eu-1", 4, "region=eu");
    let _us = ExtWorker::start_tagged(Sdk::Python, &[&n2.addr], "us-1", 4, "region=us");
    eventually(WAIT, "both workers attached", || async {
        let r = n1.client().await.list_nodes(pb::ListNodesRequest {}).await.ok()?.into_inner();
        (r.nodes.iter().filter(|n| n.handlers.iter().any(|h| h == "py.echo")).count() == 2).then_some(())
    })
    .await;
    put(&n1, job_with("hook", NEVER, "py.echo", json!(null), |_| {})).await;
    let tags = |k: &str, v: &str| [(k.to_string(), v.to_string())].into_iter().collect();
    let trigger = |target_selector: std::collections::HashMap<String, String>, dry_run: bool| pb::TriggerJobRequest {
        id: "hook".into(),
        target_selector,
        dry_run,
        ..Default::default()
    };
    // Asked of n1, whose worker is in eu: the us fire goes to n2's worker; the eu one stays.
    for (region, worker) in [("us", "us-1"), ("eu", "eu-1"), ("us", "us-1")] {
        let r = n1.client().await.trigger_job(trigger(tags("region", region), false)).await.expect("trigger");
        let fire = r.into_inner().execution.expect("an execution").fire_id;
        // Handed on, the fire's run is a new execution of it (the first says where it went).
        let e = eventually(WAIT, "the manual fire succeeded", || async {
            let req = pb::ListExecutionsRequest { fire_id: fire.clone(), ..Default::default() };
            let r = n1.client().await.list_executions(req).await.ok()?.into_inner();
            r.executions.into_iter().find(|e| state(e) == pb::ExecutionState::Succeeded)
        })
        .await;
        let handed: Vec<pb::Execution> = {
            let req = pb::ListExecutionsRequest { fire_id: fire.clone(), ..Default::default() };
            n1.client().await.list_executions(req).await.expect("list").into_inner().executions
        };
        if worker == "us-1" {
            assert!(
                handed
                    .iter()
                    .any(|x| x.error.contains("no worker serving handler 'py.echo' on node n1 has the tags region=us")),
                "{handed:?}"
            );
        }
        let v: serde_json::Value = serde_json::from_str(e.output.lines().last().unwrap_or_default()).expect("json");
        assert_eq!(v["worker"], json!(worker), "{region}: {e:?}");
    }
    // A dry run: n1 has no us worker (it would hand the fire on), it has an eu one.
    let r = n1.client().await.trigger_job(trigger(tags("region", "us"), true)).await.expect("dry run").into_inner();
    assert_eq!((r.node_id.as_str(), r.execution.is_none()), ("", true), "{r:?}");
    let r = n1.client().await.trigger_job(trigger(tags("region", "eu"), true)).await.expect("dry run").into_inner();
    assert_eq!(r.node_id, "n1", "{r:?}");
    // The CLI, asked of the node whose worker has the tags. (Asked of n2, the fire is handed to n1
    // and `--wait` may read the hand-over's `skipped` record as the end: exit 8. A defect of
    // `--wait` with hand-overs, left open; the hand-over itself is checked above.)
    let o = rota(&n1, &["job", "trigger", "hook", "--target-tag", "region=eu", "--wait", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("eu-1"), "{}", text(&o));
    let o = rota(&n2, &["job", "trigger", "hook", "--target-tag", "region"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // Refused, naming the field; nothing fired.
    let before = executions(&mut n1.client().await, "hook").await.len();
    put(
        &n1,
        job_with("pinned", NEVER, "py.echo", json!(null), |s| s.selector = tags("region", "eu").into_iter().collect()),
    )
    .await;
    put(&n1, job_with("builtin", NEVER, "noop", json!(null), |_| {})).await;
    let both = pb::TriggerJobRequest { target_node: "n2".into(), ..trigger(tags("region", "us"), false) };
    let cases = [
        (both, "target_selector: give target_node or target_selector, not both"),
        (trigger(tags("bad key", "x"), false), "target_selector.bad key: keys and values must be"),
        (
            pb::TriggerJobRequest { id: "pinned".into(), ..trigger(tags("region", "us"), false) },
            "target_selector.region: 'us' contradicts the job's own selector (region = eu)",
        ),
        (
            pb::TriggerJobRequest { id: "builtin".into(), ..trigger(tags("region", "us"), false) },
            "target_selector: job 'builtin' runs the built-in handler 'noop'",
        ),
    ];
    for (req, says) in cases {
        let e = n1.client().await.trigger_job(req).await.expect_err(says);
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(says), "{e:?}");
    }
    assert_eq!(executions(&mut n1.client().await, "hook").await.len(), before);
    assert!(executions(&mut n1.client().await, "pinned").await.is_empty());
}

/// A worker frozen (SIGSTOP) past the session TTL is taken as gone: its `rerun` fire runs again on
/// the other worker. Resumed, it attaches again and its old run is not recorded (no second success).
#[tokio::test]
async fn a_paused_worker_is_taken_as_gone_and_its_late_run_is_not_recorded() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--worker-ttl-ms", "1000"]).await;
    let a = ExtWorker::start(&[&node.addr], "py-a", 4, None);
    attached(&node, "py.sleep").await;
    put(
        &node,
        job_with("job", "0 0 0 1 1 *", "py.sleep", json!({"ms": 2500}), |s| s.recovery = rota::job::Recovery::Rerun),
    )
    .await;
    let mut c = node.client().await;
    c.trigger_job(pb::TriggerJobRequest { id: "job".into(), ..Default::default() }).await.expect("trigger");
    eventually(WAIT, "the run started in worker a", || async { a.runs().iter().any(|r| r.0 == "S").then_some(()) })
        .await;
    a.pause();
    let b = ExtWorker::start(&[&node.addr], "py-b", 4, None);
    let done = eventually(WAIT, "the fire re-run and succeeded on b", || async {
        in_state(&node, "job", pb::ExecutionState::Succeeded).await.into_iter().next()
    })
    .await;
    assert_eq!(done.output.lines().last(), Some("slept on py-b"), "{done:?}");
    assert!(node.log().contains("silent for more than"), "the session ended by its TTL");
    a.resume();
    // a attaches again (it gets the next fires), and nothing of its old run is recorded.
    eventually(WAIT, "worker a attached again", || async {
        a.log().matches("attached to node n1").count().ge(&2).then_some(())
    })
    .await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = executions(&mut c, "job").await;
    let succeeded: Vec<_> = all.iter().filter(|e| state(e) == pb::ExecutionState::Succeeded).collect();
    assert_eq!(succeeded.len(), 1, "{all:?}");
    drop(b);
}

/// A worker stopped gracefully (SIGTERM) mid-run finishes the fire it runs (recorded succeeded, not
/// lost), takes no more, and exits 0; the job's next fires wait for a worker.
#[tokio::test]
async fn a_stopping_python_worker_finishes_its_fires_and_takes_no_more() {
    stopping_worker(Sdk::Python).await
}

#[tokio::test]
async fn a_stopping_node_worker_finishes_its_fires_and_takes_no_more() {
    stopping_worker(Sdk::Node).await
}

async fn stopping_worker(sdk: Sdk) {
    let h = format!("{}.sleep", sdk.prefix());
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let mut w = ExtWorker::start_on(sdk, &[&node.addr], "w-1", 2, None);
    attached(&node, &h).await;
    put(&node, job_with("job", "0 0 0 1 1 *", &h, json!({"ms": 1500}), |_| {})).await;
    let mut c = node.client().await;
    c.trigger_job(pb::TriggerJobRequest { id: "job".into(), ..Default::default() }).await.expect("trigger");
    eventually(WAIT, "the run started", || async { w.runs().iter().any(|r| r.0 == "S").then_some(()) }).await;
    // The node's process is not this test's: waiting here blocks only the test's own thread.
    let code = w.terminate();
    assert_eq!(code, Some(0), "{}", w.log());
    let done = eventually(WAIT, "the run recorded", || async {
        executions(&mut node.client().await, "job")
            .await
            .into_iter()
            .find(|e| !matches!(state(e), pb::ExecutionState::Running | pb::ExecutionState::Pending))
    })
    .await;
    assert_eq!(state(&done), pb::ExecutionState::Succeeded, "{done:?}");
    // Gone from the node's list; a next fire waits (running on no worker).
    eventually(WAIT, "the worker detached", || async {
        let r = node.client().await.list_nodes(pb::ListNodesRequest {}).await.ok()?.into_inner();
        r.nodes.iter().all(|n| !n.handlers.contains(&h)).then_some(())
    })
    .await;
}

/// A session the node ends is told why: a worker silent past the TTL gets UNAVAILABLE saying so.
#[tokio::test]
async fn a_session_the_node_ends_is_told_why() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--worker-ttl-ms", "1000"]).await;
    let (_tx, s) = stream(&node, vec![hello("quiet", &["x.y"], 1)]).await;
    let mut s = s.expect("attached");
    let e = loop {
        match tokio::time::timeout(WAIT, s.message()).await.expect("in time") {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("session ended by node n1: silent for more than 1000 ms"), "{e:?}");
}

/// A second worker process with the id of an attached one takes the id over: the first one's
/// stream ends with ALREADY_EXISTS (its SDK stops on it rather than take the id back for ever).
#[tokio::test]
async fn a_second_worker_with_the_same_id_ends_the_first_with_already_exists() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let (_a_tx, a) = stream(&node, vec![hello("dup", &["x.y"], 1)]).await;
    let mut a = a.expect("first attached");
    assert!(matches!(next(&mut a).await, pb::attach_response::Msg::Welcome(_)));
    let (_b_tx, b) = stream(&node, vec![hello("dup", &["x.y"], 1)]).await;
    let mut b = b.expect("second attached");
    assert!(matches!(next(&mut b).await, pb::attach_response::Msg::Welcome(_)));
    let e = loop {
        match tokio::time::timeout(WAIT, a.message()).await.expect("in time") {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the first stream ended without a status"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("replaced by a new session of worker id 'dup'"), "{e:?}");
    // The Python SDK stops on it: a second process with a live one's id exits with the reason.
    let mut w1 = ExtWorker::start(&[&node.addr], "same-id", 1, None);
    attached(&node, "py.echo").await;
    let _w2 = ExtWorker::start(&[&node.addr], "same-id", 1, None);
    eventually_sync(WAIT, "the first worker process exited", || w1.exited().then_some(()));
    assert!(w1.log().contains("ALREADY_EXISTS"), "{}", w1.log());
}

/// A worker with one slot never gets a second fire while it runs one: fires wait for the slot.
#[tokio::test]
async fn a_worker_never_gets_more_fires_than_its_slots() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let w = ExtWorker::start(&[&node.addr], "py-1", 1, None);
    attached(&node, "py.sleep").await;
    // Two fires a second, each running 700 ms, on one slot: they queue on it.
    put(&node, job_with("a", "* * * * * *", "py.sleep", json!({"ms": 700}), |_| {})).await;
    put(&node, job_with("b", "* * * * * *", "py.sleep", json!({"ms": 700}), |_| {})).await;
    eventually(WAIT, "six runs ended in the worker", || async {
        (w.runs().iter().filter(|r| r.0 == "E").count() >= 6).then_some(())
    })
    .await;
    let mut running = 0;
    for (kind, exec, ..) in w.runs() {
        match kind.as_str() {
            "S" => running += 1,
            "E" | "C" => running -= 1,
            _ => {}
        }
        assert!(running <= 1, "two fires at once on a one-slot worker (at {exec}): {:?}", w.runs());
    }
}

/// A node's own workers (`--workers`) bound its built-in handlers' runs, however many slots
/// its external workers bring; and an external worker's fire does not wait for the node's own
/// workers: it runs on its worker's slot while a built-in run holds the only one.
#[tokio::test]
async fn worker_slots_do_not_add_to_the_nodes_own_workers_nor_wait_for_them() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--workers", "1"]).await;
    let _w = ExtWorker::start(&[&node.addr], "py-1", 4, None);
    attached(&node, "py.sleep").await;
    for id in ["b1", "b2"] {
        put(&node, job_with(id, "0 0 0 1 1 *", "sleep", json!(["1500ms"]), |_| {})).await;
    }
    put(&node, job_with("x", "0 0 0 1 1 *", "py.sleep", json!({"ms": 300}), |_| {})).await;
    let mut c = node.client().await;
    for id in ["b1", "b2", "x"] {
        c.trigger_job(pb::TriggerJobRequest { id: id.into(), ..Default::default() }).await.expect("trigger");
    }
    let done = |id: &'static str| {
        let node = &node;
        async move {
            eventually(WAIT, "the run succeeded", || async {
                in_state(node, id, pb::ExecutionState::Succeeded).await.into_iter().next()
            })
            .await
        }
    };
    let (b1, b2, x) = (done("b1").await, done("b2").await, done("x").await);
    let (first, second) = if ms(&b1.start_time) <= ms(&b2.start_time) { (&b1, &b2) } else { (&b2, &b1) };
    assert!(
        ms(&second.start_time) >= ms(&first.end_time),
        "two built-in runs at once on a node with one worker of its own: {b1:?} {b2:?}"
    );
    assert!(
        ms(&x.end_time) < ms(&second.start_time),
        "the external worker's fire waited for the node's own worker: {x:?} {b1:?} {b2:?}"
    );
}

/// Node n1 (`n1_flags`, one own worker) with a Python worker of two slots attached, and n2 with no
/// worker: a built-in `hog` job sleeping `hog` holds n1's own worker, and then `job` is put and
/// triggered on n2, which cannot run it and hands it to n1's queue.
async fn handed_to_a_busy_node(
    n1_flags: &[&str],
    hog: &str,
    job: pb::Job,
) -> (RedisServer, TestNode, TestNode, ExtWorker) {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", n1_flags).await;
    let n2 = TestNode::start(&b, "n2", &[]).await;
    let w = ExtWorker::start(&[&n1.addr], "py-1", 2, None);
    attached(&n1, "py.sleep").await;
    put(&n1, job_with("hog", "0 0 0 1 1 *", "sleep", json!([hog]), |_| {})).await;
    let id = job.id.clone();
    put(&n1, job).await;
    n1.client()
        .await
        .trigger_job(pb::TriggerJobRequest { id: "hog".into(), ..Default::default() })
        .await
        .expect("trigger");
    // Its handler holds n1's own worker: the load n1 reports says so (a record reads `running`, with
    // a start time, from the fire's take, before a worker is free for it).
    eventually(WAIT, "the built-in run holds n1's own worker", || async {
        let r = n1.client().await.list_nodes(pb::ListNodesRequest {}).await.ok()?.into_inner();
        let n = r.nodes.into_iter().find(|n| n.node_id == "n1")?;
        (n.load?.active_workers >= 1).then_some(())
    })
    .await;
    n2.client().await.trigger_job(pb::TriggerJobRequest { id, ..Default::default() }).await.expect("trigger");
    (redis, n1, n2, w)
}

/// A fire of a worker's handler that reaches a node through its queue (handed over by a node with
/// no worker for it) is taken on a free slot of the worker, not only when one of the node's own
/// workers is free: here the node's one own worker runs a long built-in job meanwhile.
#[tokio::test]
async fn a_queued_fire_for_a_worker_does_not_wait_for_the_nodes_own_workers() {
    let x = job_with("x", "0 0 0 1 1 *", "py.sleep", json!({"ms": 100}), |_| {});
    let (_redis, n1, _n2, _w) = handed_to_a_busy_node(&["--workers", "1"], "4s", x).await;
    let x = eventually(WAIT, "the worker's fire succeeded", || async {
        in_state(&n1, "x", pb::ExecutionState::Succeeded).await.into_iter().next()
    })
    .await;
    assert_eq!(x.node_id, "n1", "{x:?}");
    let hog = executions(&mut n1.client().await, "hog").await;
    assert!(
        hog.iter().all(|h| h.end_time.is_none() || ms(&h.end_time) > ms(&x.end_time)),
        "the queued fire waited for the node's own worker: {x:?} {hog:?}"
    );
}

/// A fire of a built-in handler taken from the queue on a worker's free slot, while the node's one
/// own worker is busy, is not started (not `running`, its lock not left unrenewed) until an own
/// worker frees; then it runs.
#[tokio::test]
async fn a_queued_builtin_fire_taken_on_a_workers_room_starts_only_with_an_own_worker() {
    let sh = job_with("sh", "0 0 0 1 1 *", "shell", json!({"sh": "echo hi"}), |_| {});
    let flags = ["--workers", "1", "--enable-shell", "--shell-allow", "/bin/sh"];
    let (_redis, n1, _n2, _w) = handed_to_a_busy_node(&flags, "3s", sh).await;
    loop {
        // The shell fire's records first, then the hog's: the own worker frees only once the hog's
        // outcome is recorded, so a shell run seen here while the hog still reads unfinished
        // started beside it (read the other way round, the hog could end between the two reads).
        let early = executions(&mut n1.client().await, "sh").await;
        if !in_state(&n1, "hog", pb::ExecutionState::Succeeded).await.is_empty() {
            break;
        }
        assert!(
            early.iter().all(|e| !(state(e) == pb::ExecutionState::Running && e.node_id == "n1")),
            "started on n1 while its own worker was busy: {early:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sh = eventually(WAIT, "the shell fire succeeded on n1", || async {
        in_state(&n1, "sh", pb::ExecutionState::Succeeded).await.into_iter().next()
    })
    .await;
    assert_eq!((sh.node_id.as_str(), sh.output.as_str()), ("n1", "hi\n"), "{sh:?}");
}

/// The wait for a free slot of a worker is not part of a run's timeout: a fire queued behind a
/// long run on a one-slot worker runs its full time once the slot frees.
#[tokio::test]
async fn the_wait_for_a_worker_slot_is_not_part_of_the_timeout() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let w = ExtWorker::start(&[&node.addr], "py-1", 1, None);
    attached(&node, "py.sleep").await;
    put(&node, job_with("long", "0 0 0 1 1 *", "py.sleep", json!({"ms": 2500}), |_| {})).await;
    put(&node, job_with("short", "0 0 0 1 1 *", "py.sleep", json!({"ms": 200}), |s| s.timeout_ms = 1500)).await;
    let mut c = node.client().await;
    c.trigger_job(pb::TriggerJobRequest { id: "long".into(), ..Default::default() }).await.expect("trigger");
    eventually(WAIT, "the long run started", || async { w.runs().iter().any(|r| r.0 == "S").then_some(()) }).await;
    c.trigger_job(pb::TriggerJobRequest { id: "short".into(), ..Default::default() }).await.expect("trigger");
    let short = eventually(WAIT, "the short run ended", || async {
        executions(&mut node.client().await, "short").await.into_iter().find(|e| e.end_time.is_some())
    })
    .await;
    assert_eq!(state(&short), pb::ExecutionState::Succeeded, "{short:?}");
    let long = in_state(&node, "long", pb::ExecutionState::Succeeded).await;
    assert_eq!(long.len(), 1, "{long:?}");
    assert!(ms(&short.end_time) >= ms(&long[0].end_time), "the short run waited for the slot: {short:?} {long:?}");
}

/// A `forbid` job whose handler cannot be stopped (a plain Python function, on a thread): at the
/// timeout the worker is told to cancel, and the run lasts until the handler really ends, holding
/// the job's lock, so the next fire never overlaps it; the record says `timed_out` and when the
/// handler stopped.
#[tokio::test]
async fn a_timed_out_run_holds_its_forbid_lock_until_the_worker_stops_it() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let w = ExtWorker::start(&[&node.addr], "py-1", 4, None);
    attached(&node, "py.block").await;
    put(
        &node,
        job_with("hung", "* * * * * *", "py.block", json!({"ms": 2500}), |s| {
            s.timeout_ms = 500;
            s.concurrency = rota::job::Concurrency::Forbid;
        }),
    )
    .await;
    let t = eventually(WAIT, "two runs timed out", || async {
        let t = in_state(&node, "hung", pb::ExecutionState::TimedOut).await;
        (t.len() >= 2).then_some(t)
    })
    .await;
    for e in &t {
        assert!(e.error.starts_with("timed out after 500 ms; worker 'py-1' stopped the handler"), "{e:?}");
        assert!(ms(&e.end_time) - ms(&e.start_time) >= 2500, "recorded when the handler ended: {e:?}");
    }
    let mut running = 0;
    for (kind, exec, ..) in w.runs() {
        match kind.as_str() {
            "S" => running += 1,
            "E" => running -= 1,
            _ => {}
        }
        assert!(running <= 1, "two runs of a forbid job at once (at {exec}): {:?}", w.runs());
    }
    assert!(!in_state(&node, "hung", pb::ExecutionState::Skipped).await.is_empty(), "fires meanwhile skipped");
}

/// With no worker serving its handler, a fire waits up to the misfire threshold, then is recorded
/// misfired with the reason and alerted; a worker attached within the threshold runs it.
#[tokio::test]
async fn with_no_worker_a_fire_waits_then_is_misfired() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--misfire-threshold-ms", "6000"]).await;
    put(&node, job_with("orphan", "0 0 0 1 1 *", "py.none", json!(null), |_| {})).await;
    put(&node, job_with("late", "0 0 0 1 1 *", "py.echo", json!(null), |_| {})).await;
    let mut c = node.client().await;
    for id in ["orphan", "late"] {
        c.trigger_job(pb::TriggerJobRequest { id: id.into(), ..Default::default() }).await.expect("trigger");
    }
    // A worker for py.echo comes 2 s later: the waiting fire runs there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _w = ExtWorker::start(&[&node.addr], "py-1", 1, None);
    let ran = eventually(WAIT, "the waiting fire ran once a worker came", || async {
        in_state(&node, "late", pb::ExecutionState::Succeeded).await.into_iter().next()
    })
    .await;
    assert!(ran.output.starts_with("hello from py-1"), "{ran:?}");
    let m = eventually(WAIT, "the fire no worker serves recorded misfired", || async {
        in_state(&node, "orphan", pb::ExecutionState::Misfired).await.into_iter().next()
    })
    .await;
    assert!(m.error.contains("no worker for handler 'py.none'"), "{m:?}");
    assert!(ms(&m.end_time) - ms(&m.scheduled_time) >= 6000, "it waited the threshold: {m:?}");
    assert!(node.log().contains("no_node_has_handler"), "alerted");
}

async fn stream(
    node: &TestNode,
    first: Vec<pb::AttachRequest>,
) -> (tokio::sync::mpsc::Sender<pb::AttachRequest>, Result<tonic::Streaming<pb::AttachResponse>, tonic::Status>) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    for m in first {
        tx.send(m).await.expect("queue");
    }
    let mut c = WorkerServiceClient::new(node.channel().await);
    let r = c.attach(tokio_stream::wrappers::ReceiverStream::new(rx)).await.map(|r| r.into_inner());
    (tx, r)
}

fn hello(id: &str, handlers: &[&str], slots: u32) -> pb::AttachRequest {
    pb::AttachRequest {
        msg: Some(In::Hello(pb::WorkerHello {
            worker_id: id.into(),
            handlers: handlers.iter().map(|h| h.to_string()).collect(),
            slots,
            tags: Default::default(),
            sdk: "test".into(),
        })),
    }
}

fn msg(m: In) -> pb::AttachRequest {
    pb::AttachRequest { msg: Some(m) }
}

/// The next message that is not a heartbeat.
async fn next(s: &mut tonic::Streaming<pb::AttachResponse>) -> pb::attach_response::Msg {
    loop {
        let m = tokio::time::timeout(WAIT, s.message())
            .await
            .expect("a message in time")
            .expect("stream ok")
            .expect("open");
        match m.msg {
            Some(pb::attach_response::Msg::Heartbeat(_)) => continue,
            Some(m) => return m,
            None => panic!("empty node message"),
        }
    }
}

/// Bad input on the worker stream: a bad or missing hello is refused naming the field; a result
/// for a fire the worker does not hold, a result twice, an output too long and a second hello are
/// rejected without recording anything; the node keeps serving, and the honest fire's result is
/// recorded once.
#[tokio::test]
async fn bad_worker_messages_get_clear_errors_and_record_nothing() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let heartbeat = msg(In::Heartbeat(pb::Heartbeat {}));
    let cases: Vec<(Vec<pb::AttachRequest>, &str)> = vec![
        (vec![heartbeat.clone()], "hello: the first message must be a hello"),
        (vec![hello("", &["x.y"], 1)], "hello.worker_id"),
        (vec![hello("bad id", &["x.y"], 1)], "hello.worker_id"),
        (vec![hello("w", &[], 1)], "hello.handlers"),
        (vec![hello("w", &["ok", "no spaces"], 1)], "hello.handlers[1]"),
        (vec![hello("w", &["noop"], 1)], "hello.handlers[0]: 'noop' is a built-in"),
        (vec![hello("w", &["x.y"], 0)], "hello.slots"),
        (vec![hello("w", &["x.y"], 10_001)], "hello.slots"),
    ];
    for (first, want) in cases {
        let (_tx, r) = stream(&node, first).await;
        let e = match r {
            Err(e) => e,
            Ok(mut s) => s.message().await.expect_err("refused"),
        };
        assert_eq!(e.code(), Code::InvalidArgument, "{want}: {e:?}");
        assert!(e.message().contains(want), "want {want:?} in {:?}", e.message());
    }
    // An honest session, then garbage on it.
    let (tx, s) = stream(&node, vec![hello("raw", &["raw.job"], 1)]).await;
    let mut s = s.expect("attached");
    assert!(matches!(next(&mut s).await, pb::attach_response::Msg::Welcome(w) if w.node_id == "n1"));
    let reject = |s: pb::attach_response::Msg| match s {
        pb::attach_response::Msg::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    };
    let result = |id: &str, ok: bool| {
        msg(In::Result(pb::FireResult {
            execution_id: id.into(),
            success: ok,
            error: String::new(),
            output: "out".into(),
        }))
    };
    tx.send(result("no-such-exec", true)).await.expect("send");
    let r = reject(next(&mut s).await);
    assert_eq!(r.execution_id, "no-such-exec");
    assert!(r.reason.contains("holds no running fire"), "{r:?}");
    tx.send(hello("raw", &["raw.job"], 1)).await.expect("send");
    assert!(reject(next(&mut s).await).reason.contains("hello: already said"));
    tx.send(pb::AttachRequest { msg: None }).await.expect("send");
    assert!(reject(next(&mut s).await).reason.contains("empty message"));
    // A real fire: its result recorded once; a second result rejected; too long an output rejected.
    put(&node, job_with("raw", "0 0 0 1 1 *", "raw.job", json!({"a": 1}), |_| {})).await;
    let mut c = node.client().await;
    c.trigger_job(pb::TriggerJobRequest { id: "raw".into(), ..Default::default() }).await.expect("trigger");
    let fire = match next(&mut s).await {
        pb::attach_response::Msg::Fire(f) => f,
        other => panic!("expected a fire, got {other:?}"),
    };
    assert_eq!(fire.job_id, "raw");
    assert_eq!(fire.handler, "raw.job");
    assert_eq!(fire.attempt, 1);
    tx.send(msg(In::Output(pb::FireOutput { execution_id: fire.execution_id.clone(), text: "x".repeat(70 * 1024) })))
        .await
        .expect("send");
    assert!(reject(next(&mut s).await).reason.contains("at most 65536"));
    tx.send(msg(In::Output(pb::FireOutput { execution_id: fire.execution_id.clone(), text: "line\n".into() })))
        .await
        .expect("send");
    tx.send(result(&fire.execution_id, true)).await.expect("send");
    tx.send(result(&fire.execution_id, true)).await.expect("send");
    assert!(reject(next(&mut s).await).reason.contains("holds no running fire"));
    let done = eventually(WAIT, "the result recorded", || async {
        in_state(&node, "raw", pb::ExecutionState::Succeeded).await.into_iter().next()
    })
    .await;
    assert_eq!(done.output, "line\nout");
    assert_eq!(executions(&mut c, "raw").await.len(), 1, "one record");
    // The node is unharmed.
    assert!(status(&node).await.is_some());
}

/// A `worker` token attaches a worker and can call nothing else; a viewer's token cannot attach.
#[tokio::test]
async fn a_worker_token_attaches_workers_and_nothing_else() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens.toml");
    let (worker_tok, viewer_tok) = ("worker-tok-51aa", "viewer-tok-0b2c");
    let mut toml = String::new();
    for (name, role, tok) in [("w", "worker", worker_tok), ("v", "viewer", viewer_tok), ("ci", "admin", "admin-tok-9")]
    {
        let h = rota::api::auth::hex(&rota::api::auth::hash(tok));
        toml.push_str(&format!("[[token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{h}\"\n"));
    }
    std::fs::write(&file, toml).expect("write");
    let flags = ["--tokens-file", file.to_str().expect("utf8")];
    let node =
        TestNode::start_env(&Backend::Redis(redis.url()), "n1", &flags, &[("ROTA_CLUSTER_SECRET", "s3cret-w")]).await;
    let with = |tok: &str| format!("Bearer {tok}").parse::<tonic::metadata::MetadataValue<_>>().expect("header");
    let mut c = node.client().await;
    let mut r = tonic::Request::new(pb::ListJobsRequest::default());
    r.metadata_mut().insert("authorization", with(worker_tok));
    let e = c.list_jobs(r).await.expect_err("a worker token reads nothing");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let mut r =
        tonic::Request::new(pb::PutJobRequest { job: Some(job_with("j", "0 0 0 1 1 *", "x.y", json!(null), |_| {})) });
    r.metadata_mut().insert("authorization", with(worker_tok));
    assert_eq!(c.put_job(r).await.expect_err("nor writes").code(), Code::PermissionDenied);
    // A viewer cannot attach a worker.
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::AttachRequest>(4);
    _tx.send(hello("v", &["x.y"], 1)).await.expect("queue");
    let mut r = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    r.metadata_mut().insert("authorization", with(viewer_tok));
    let e = WorkerServiceClient::new(node.channel().await).attach(r).await.expect_err("a viewer cannot attach");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("needs role 'worker' or 'admin'"), "{e:?}");
    // The Python worker with its token attaches and runs.
    let _w = ExtWorker::start(&[&node.addr], "py-1", 1, Some(worker_tok));
    attached_with(&node, "py.echo", "admin-tok-9").await;
    assert!(!node.log().contains(worker_tok), "no token in the log");
}

async fn attached_with(node: &TestNode, handler: &str, tok: &str) {
    eventually(WAIT, "the worker attached (its handler listed by the node)", || async {
        let mut r = tonic::Request::new(pb::ListNodesRequest {});
        r.metadata_mut().insert("authorization", format!("Bearer {tok}").parse().ok()?);
        let r = node.client().await.list_nodes(r).await.ok()?.into_inner();
        r.nodes.iter().any(|n| n.handlers.iter().any(|h| h == handler)).then_some(())
    })
    .await;
}

/// Each SDK's own unit tests (settings checked and named, values converted), run on the SDK as
/// built here.
#[test]
fn the_python_sdks_own_tests_pass() {
    sdk_unit_tests(Sdk::Python)
}

#[test]
fn the_node_sdks_own_tests_pass() {
    sdk_unit_tests(Sdk::Node)
}
