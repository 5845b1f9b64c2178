//! Control over runs (issue 17), through real nodes, a real `redis-server`, real shell processes and
//! the real `rota` binary: CancelExecution stops a running shell run on another node than the one
//! asked (its process group gets SIGTERM; one that ignores it is killed after the grace), reaches
//! that node through its stop list in Redis when the direct call fails, drops an HTTP call, takes a
//! fire waiting for a worker out before it begins, and refuses what it cannot cancel with the
//! field named. (The external workers' cancel is in `workers.rs`; the store's part, on both stores,
//! in `store_conformance.rs`.)
#[macro_use]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{eventually, rota, text, Backend, RedisServer, TestNode, NEVER};
use rota::pb;
use serde_json::{json, Value};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

/// Puts a job through the CLI; panics (with the CLI's words) when refused.
async fn put(node: &TestNode, args: &[&str]) {
    let o = rota(node, &[&["job", "put", "--cron", NEVER][..], args].concat()).await;
    assert_eq!(o.status.code(), Some(0), "put {args:?}: {}", text(&o));
}

/// Triggers `job` and returns its execution's id.
async fn trigger(node: &TestNode, job: &str) -> String {
    let r = node.client().await.trigger_job(pb::TriggerJobRequest { id: job.into(), ..Default::default() }).await;
    r.expect("trigger").into_inner().execution.expect("execution").id
}

/// The execution of `job` now running. (A manual fire of a job that may not run on the node asked
/// passes through it: its first attempt is recorded `skipped`, handed on, and runs as attempt 2.)
async fn running(node: &TestNode, job: &str) -> pb::Execution {
    let execs = common::executions(&mut node.client().await, job).await;
    let running = execs.into_iter().find(|e| e.state == pb::ExecutionState::Running as i32);
    running.expect("a running execution")
}

async fn get(node: &TestNode, id: &str) -> pb::Execution {
    let r = node.client().await.get_execution(pb::GetExecutionRequest { id: id.into() }).await;
    r.expect("get").into_inner().execution.expect("execution")
}

/// A shell script that notes its pid in `dir`, says it started, and on SIGTERM notes that too and
/// exits (or, `ignore`, ignores it).
fn script(dir: &Path, ignore: bool) -> String {
    let d = dir.display();
    let on_term =
        if ignore { "trap '' TERM".to_string() } else { format!("trap 'echo term > {d}/term; exit 143' TERM") };
    format!("{on_term}; echo $$ > {d}/pid; echo started; while :; do sleep 0.1; done")
}

fn pid_in(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("pid")).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Two nodes on one Redis; the job runs on n2 (routing `failover` to n2), the cancel is asked of
/// n1 through `rota exec cancel`: the process group gets SIGTERM (the script notes it and exits),
/// the record ends `cancelled` naming who asked and why, with what the run printed, and the process
/// is gone. Asked again: FAILED_PRECONDITION, exit 1.
#[tokio::test]
async fn a_running_shell_run_is_stopped_from_another_node() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let shell = ["--enable-shell", "--shell-allow", "/bin/sh"];
    let n1 = TestNode::start(&b, "n1", &shell).await;
    let n2 = TestNode::start(&b, "n2", &shell).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let args = json!({"sh": script(dir.path(), false)}).to_string();
    put(
        &n1,
        &["--id", "hung", "--handler", "shell", "--args", &args, "--routing", "failover", "--failover-node", "n2"],
    )
    .await;
    trigger(&n1, "hung").await;
    let pid = eventually(WAIT, "the script runs", || async { pid_in(dir.path()) }).await;
    let run = running(&n1, "hung").await;
    assert_eq!(run.node_id, "n2");
    let id = run.id;

    let o = rota(&n1, &["exec", "cancel", &id, "--reason", "hung on a lock", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["state"], "cancelled", "{v}");
    assert_eq!(v["error"], "cancelled by anonymous: hung on a lock", "{v}");
    assert_eq!(v["output"], "started\n", "what it printed is kept: {v}");
    assert_eq!(v["node_id"], "n2");
    assert!(n2.log().contains("StopRun from a peer"), "reached directly, not through Redis: {}", n2.log());
    assert!(v["start_time"].is_string() && v["end_time"].is_string(), "{v}");
    assert_eq!(std::fs::read_to_string(dir.path().join("term")).ok().as_deref(), Some("term\n"), "SIGTERM reached it");
    eventually(WAIT, "the process is gone", || async { (!alive(pid)).then_some(()) }).await;
    // Not retried, and the record stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let execs = common::executions(&mut n1.client().await, "hung").await;
    let after: Vec<_> = execs.iter().filter(|e| e.id > id).collect();
    assert!(after.is_empty(), "nothing after the cancelled run: {execs:?}");

    let o = rota(&n2, &["exec", "cancel", &id]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("has ended: cancelled"), "{}", text(&o));
}

/// A run that ignores SIGTERM is killed when the grace (10 s) runs out; its record ends
/// `cancelled`, and the process is gone.
#[tokio::test]
async fn a_run_that_ignores_sigterm_is_killed_after_the_grace() {
    let node = TestNode::start(&Backend::Memory, "n1", &["--enable-shell", "--shell-allow", "/bin/sh"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let args = json!({"sh": script(dir.path(), true)}).to_string();
    put(&node, &["--id", "stubborn", "--handler", "shell", "--args", &args]).await;
    let id = trigger(&node, "stubborn").await;
    let pid = eventually(WAIT, "the script runs", || async { pid_in(dir.path()) }).await;
    let asked = Instant::now();
    let r = node
        .client()
        .await
        .cancel_execution(pb::CancelExecutionRequest { execution_id: id.clone(), reason: String::new() })
        .await
        .expect("cancel")
        .into_inner();
    let e = r.execution.expect("execution");
    assert_eq!((e.state, e.error.as_str()), (pb::ExecutionState::Cancelled as i32, "cancelled by anonymous"));
    assert!(asked.elapsed() >= Duration::from_secs(9), "it outlived SIGTERM until the grace ran out");
    eventually(WAIT, "the process group was killed", || async { (!alive(pid)).then_some(()) }).await;
}

/// The node that runs it cannot be called (failpoint `fail_stop_run` on the asking node): the stop
/// request waits on its stop list in Redis, and its rescan (every 5 s) takes it and stops the run.
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_stop_reaches_the_node_through_redis_when_the_call_fails() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let port = common::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let n1 =
        TestNode::start(&b, "n1", &["--enable-shell", "--shell-allow", "/bin/sh", "--metrics-listen", &metrics]).await;
    let n2 = TestNode::start(&b, "n2", &["--enable-shell", "--shell-allow", "/bin/sh"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let args = json!({"sh": script(dir.path(), false)}).to_string();
    put(&n1, &["--id", "far", "--handler", "shell", "--args", &args, "--routing", "failover", "--failover-node", "n2"])
        .await;
    trigger(&n1, "far").await;
    eventually(WAIT, "the script runs", || async { pid_in(dir.path()) }).await;
    let id = running(&n1, "far").await.id;
    // n1, asked, may not run it (it has the handler, but is off the job's list): it says so.
    let execs = common::executions(&mut n1.client().await, "far").await;
    let handed = execs.iter().find(|e| common::state(e) == pb::ExecutionState::Skipped).expect("n1's record");
    assert_eq!(
        handed.error,
        "not run here: node n1 is not among the job's failover nodes (n2); handed to n2, which may run it"
    );
    let url = format!("http://127.0.0.1:{port}/failpoints/fail_stop_run");
    let r = reqwest::Client::new().put(&url).body("return").send().await.expect("arm");
    assert!(r.status().is_success(), "{}", r.status());
    let r = n1
        .client()
        .await
        .cancel_execution(pb::CancelExecutionRequest { execution_id: id.clone(), reason: "via redis".into() })
        .await
        .expect("cancel")
        .into_inner();
    let e = r.execution.expect("execution");
    assert_eq!(
        (e.state, e.error.as_str()),
        (pb::ExecutionState::Cancelled as i32, "cancelled by anonymous: via redis")
    );
    assert!(n1.log().contains("fail_stop_run"), "the direct call failed: {}", n1.log());
    assert!(dir.path().join("term").exists(), "SIGTERM reached it");
    drop(n2);
}

/// An HTTP call to a server that never answers is dropped at once: `cancelled`, well before the
/// handler's own timeout.
#[tokio::test]
async fn a_hanging_http_call_is_dropped() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts and never answers; the connections are held open until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let node = TestNode::start(&Backend::Memory, "n1", &["--http-allow", "127.0.0.1"]).await;
    let args = json!([format!("http://127.0.0.1:{port}/slow")]).to_string();
    put(&node, &["--id", "slow", "--handler", "http", "--args", &args, "--timeout", "5m"]).await;
    let id = trigger(&node, "slow").await;
    eventually(WAIT, "the call is under way", || async {
        (get(&node, &id).await.state == pb::ExecutionState::Running as i32).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = rota(&node, &["exec", "cancel", &id, "--reason", "server down"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("cancelled by anonymous: server down"), "{}", text(&o));
}

/// One worker, busy: a fire taken and waiting for it is cancelled before it begins (no start time,
/// its script never runs), at once, while the busy run goes on untouched.
#[tokio::test]
async fn a_fire_waiting_for_a_worker_is_cancelled_before_it_begins() {
    let node =
        TestNode::start(&Backend::Memory, "n1", &["--workers", "1", "--enable-shell", "--shell-allow", "/bin/sh"])
            .await;
    let dir = tempfile::tempdir().expect("tempdir");
    put(&node, &["--id", "hog", "--handler", "sleep", "--args", r#"["4s"]"#]).await;
    let marker = dir.path().join("ran");
    let args = json!({"sh": format!("touch {}", marker.display())}).to_string();
    put(&node, &["--id", "later", "--handler", "shell", "--args", &args]).await;
    let hog = trigger(&node, "hog").await;
    eventually(WAIT, "the hog runs", || async {
        (get(&node, &hog).await.state == pb::ExecutionState::Running as i32).then_some(())
    })
    .await;
    let id = trigger(&node, "later").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = node
        .client()
        .await
        .cancel_execution(pb::CancelExecutionRequest { execution_id: id.clone(), reason: "not today".into() })
        .await
        .expect("cancel")
        .into_inner();
    let e = r.execution.expect("execution");
    assert_eq!(e.state, pb::ExecutionState::Cancelled as i32, "{e:?}");
    assert!(e.start_time.is_none(), "it never began: {e:?}");
    let h = get(&node, &hog).await;
    assert_eq!(h.state, pb::ExecutionState::Running as i32, "cancelled while the hog still ran, not after: {h:?}");
    let h = eventually(WAIT, "the hog ends", || async {
        let h = get(&node, &hog).await;
        (h.state != pb::ExecutionState::Running as i32).then_some(h)
    })
    .await;
    assert_eq!(h.state, pb::ExecutionState::Succeeded as i32, "{h:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!marker.exists(), "the cancelled fire never ran");
}

/// A failed attempt that announced a retry: cancelling it cancels the retry while it waits out its
/// backoff. The reply is the retry's record, `cancelled`; the retry never runs, and the fire is over.
#[tokio::test]
async fn a_retry_waiting_out_its_backoff_is_cancelled() {
    let node = TestNode::start(&Backend::Memory, "n1", &["--enable-shell", "--shell-allow", "/bin/sh"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let args = json!({"sh": format!("echo run >> {}; exit 1", runs.display())}).to_string();
    put(&node, &["--id", "flaky", "--handler", "shell", "--args", &args, "--retries", "3", "--retry-backoff", "30s"])
        .await;
    let id = trigger(&node, "flaky").await;
    eventually(WAIT, "the first attempt failed, announcing its retry", || async {
        let e = get(&node, &id).await;
        (e.state == pb::ExecutionState::Failed as i32 && e.next_attempt_time.is_some()).then_some(())
    })
    .await;
    let req = pb::CancelExecutionRequest { execution_id: id.clone(), reason: "stop retrying".into() };
    let e = node.client().await.cancel_execution(req).await.expect("cancel").into_inner().execution.expect("execution");
    assert_eq!((e.state, e.attempt), (pb::ExecutionState::Cancelled as i32, 2), "the retry's record: {e:?}");
    assert_eq!(e.error, "cancelled by anonymous: stop retrying");
    assert!(e.start_time.is_none() && e.next_attempt_time.is_none(), "{e:?}");
    assert_eq!(std::fs::read_to_string(&runs).expect("runs"), "run\n", "the retry never ran");
    let first = get(&node, &id).await;
    assert_eq!(first.state, pb::ExecutionState::Failed as i32, "the failed attempt stays as it was: {first:?}");
    let again = node
        .client()
        .await
        .cancel_execution(pb::CancelExecutionRequest { execution_id: id, reason: String::new() })
        .await
        .expect_err("over");
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
}

/// Bad input: no id, a malformed id, a reason too long (each naming its field); an unknown
/// execution (NOT_FOUND); an ended one (FAILED_PRECONDITION). Nothing changes, the node serves on.
#[tokio::test]
async fn cancel_refuses_what_it_cannot_cancel() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    put(&node, &["--id", "quick", "--handler", "noop"]).await;
    let id = trigger(&node, "quick").await;
    eventually(WAIT, "it ends", || async {
        (get(&node, &id).await.state == pb::ExecutionState::Succeeded as i32).then_some(())
    })
    .await;
    let mut c = node.client().await;
    let cancel = |execution_id: &str, reason: &str| pb::CancelExecutionRequest {
        execution_id: execution_id.into(),
        reason: reason.into(),
    };
    let cases = [
        (cancel("", ""), Code::InvalidArgument, "execution_id: is required"),
        (cancel("not an id", ""), Code::InvalidArgument, "execution_id: 'not an id' is not an execution id"),
        (cancel(&id, &"x".repeat(501)), Code::InvalidArgument, "reason: is 501 bytes, more than 500"),
        (cancel(&id, "two\nlines"), Code::InvalidArgument, "reason: must not contain control characters"),
        (cancel("01a24300-0000-7000-8000-000000000000", ""), Code::NotFound, ""),
        (cancel(&id, ""), Code::FailedPrecondition, "has ended: succeeded"),
    ];
    for (req, code, words) in cases {
        let e = c.cancel_execution(req.clone()).await.expect_err("refused");
        assert_eq!(e.code(), code, "{req:?}: {e:?}");
        assert!(e.message().contains(words), "{req:?}: {e:?}");
    }
    assert_eq!(get(&node, &id).await.state, pb::ExecutionState::Succeeded as i32, "unchanged");
    assert!(node.health().await.is_some(), "the node serves on");
}

/// TriggerJob with arguments of its own (replace, merge), a target node and a dry run, on two nodes
/// of one Redis (n1 runs shell jobs, n2 does not): the fire runs with its own arguments and the job
/// keeps its own; a fire handed from n2 to n1 (n2 has no shell) still runs with them (they live
/// with the fire); the same idempotency key with other arguments is refused; a dry run answers and
/// runs nothing; bad input names its field.
#[tokio::test]
async fn trigger_with_arguments_a_target_and_a_dry_run() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &["--enable-shell", "--shell-allow", "/bin/sh,/bin/echo"]).await;
    let n2 = TestNode::start(&b, "n2", &[]).await;
    put(&n1, &["--id", "echo", "--handler", "shell", "--args", r#"["/bin/echo", "job"]"#]).await;
    put(&n1, &["--id", "pwd", "--handler", "shell", "--args", r#"{"sh": "pwd", "cwd": "/tmp"}"#]).await;
    let outcome = |node: &TestNode, id: String| {
        let node = node.endpoint();
        async move {
            let ch = tonic::transport::Endpoint::from_shared(node).expect("ep").connect().await.expect("connect");
            let c = pb::scheduler_service_client::SchedulerServiceClient::new(ch);
            eventually(WAIT, "the fire ends", || {
                let (mut c, id) = (c.clone(), id.clone());
                async move {
                    let e = c.get_execution(pb::GetExecutionRequest { id }).await.ok()?.into_inner().execution?;
                    (e.end_time.is_some()).then_some(e)
                }
            })
            .await
        }
    };
    let trig = |id: &str, args: Value, how: pb::ArgsOverride| pb::TriggerJobRequest {
        id: id.into(),
        args: Some(rota::pb::json_to_pb(&args)),
        args_override: how as i32,
        ..Default::default()
    };
    let mut c1 = n1.client().await;
    // Replace, through the CLI, waiting for the outcome.
    let o = rota(&n1, &["job", "trigger", "echo", "--args", r#"["/bin/echo", "fire"]"#, "--wait", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["output"], "fire\n", "{v}");
    let job = c1.get_job(pb::GetJobRequest { id: "echo".into() }).await.expect("get").into_inner().job.expect("job");
    let kept = rota::api::convert::json_from_pb(job.args.as_ref().expect("args"), 0).expect("json");
    assert_eq!(kept, json!(["/bin/echo", "job"]), "the job keeps its own");
    // Merge: the fire's `sh` over the job's, the job's `cwd` kept.
    let r = c1.trigger_job(trig("pwd", json!({"sh": "pwd; echo merged"}), pb::ArgsOverride::Merge)).await;
    let r = r.expect("trigger").into_inner();
    let resolved = rota::api::convert::json_from_pb(r.args.as_ref().expect("args"), 0).expect("json");
    assert_eq!(resolved, json!({"sh": "pwd; echo merged", "cwd": "/tmp"}));
    assert_eq!(outcome(&n1, r.execution.expect("execution").id).await.output, "/tmp\nmerged\n");
    // Asked of n2, which has no shell: handed to n1, and run there with the fire's own arguments.
    let mut c2 = n2.client().await;
    let r = c2.trigger_job(trig("echo", json!(["/bin/echo", "handed"]), pb::ArgsOverride::Replace)).await;
    let r = r.expect("trigger").into_inner();
    assert_eq!(r.node_id, "", "n2 cannot run it: it hands the fire on");
    let fire = r.execution.expect("execution").fire_id;
    let ran = eventually(WAIT, "the handed fire ran on n1", || async {
        let execs = common::executions(&mut n1.client().await, "echo").await;
        execs.into_iter().find(|e| e.fire_id == fire && e.state == pb::ExecutionState::Succeeded as i32)
    })
    .await;
    assert_eq!((ran.node_id.as_str(), ran.output.as_str()), ("n1", "handed\n"), "{ran:?}");
    // A target: asked of n2, run on n1.
    let mut t = trig("echo", json!(["/bin/echo", "targeted"]), pb::ArgsOverride::Replace);
    t.target_node = "n1".into();
    let r = c2.trigger_job(t.clone()).await.expect("trigger").into_inner();
    assert_eq!(r.node_id, "n1");
    let e = outcome(&n1, r.execution.expect("execution").id).await;
    assert_eq!((e.node_id.as_str(), e.output.as_str(), e.attempt), ("n1", "targeted\n", 1), "{e:?}");
    // A dry run answers where and with what, and runs nothing.
    let before = common::executions(&mut c1, "echo").await.len();
    let mut dry = t.clone();
    dry.dry_run = true;
    let r = c2.trigger_job(dry).await.expect("dry run").into_inner();
    assert!(r.execution.is_none(), "{r:?}");
    assert_eq!(r.node_id, "n1");
    let o = rota(&n1, &["job", "trigger", "pwd", "--args", r#"{"sh": "true"}"#, "--merge-args", "--dry-run", "--json"])
        .await;
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v, json!({"dry_run": true, "node_id": "n1", "args": {"sh": "true", "cwd": "/tmp"}}), "{}", text(&o));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(common::executions(&mut c1, "echo").await.len(), before, "a dry run runs nothing");
    // One idempotency key, one set of arguments.
    let mut k = trig("echo", json!(["/bin/echo", "once"]), pb::ArgsOverride::Replace);
    k.idempotency_key = "deploy-7".into();
    let first = c1.trigger_job(k.clone()).await.expect("first").into_inner();
    let again = c1.trigger_job(k.clone()).await.expect("again").into_inner();
    assert!(again.deduplicated && again.execution.map(|e| e.id) == first.execution.map(|e| e.id));
    k.args = Some(rota::pb::json_to_pb(&json!(["/bin/echo", "twice"])));
    let e = c1.trigger_job(k).await.expect_err("other arguments");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("with other arguments"), "{e:?}");
    // Bad input, each naming its field; nothing fires.
    let before = common::executions(&mut c1, "echo").await.len();
    let mut unknown = trig("echo", json!([]), pb::ArgsOverride::Replace);
    unknown.args_override = 9;
    let mut no_args = trig("echo", json!([]), pb::ArgsOverride::Merge);
    no_args.args = None;
    let mut far = trig("echo", json!(["/bin/echo", "x"]), pb::ArgsOverride::Replace);
    far.target_node = "n9".into();
    let mut bad_name = far.clone();
    bad_name.target_node = "a b".into();
    let cases = [
        (
            trig("echo", json!({"x": 1}), pb::ArgsOverride::Merge),
            Code::InvalidArgument,
            "args: merging needs the job's args",
        ),
        (trig("pwd", json!([1]), pb::ArgsOverride::Merge), Code::InvalidArgument, "args: merging needs a JSON object"),
        (
            trig("echo", json!(["/bin/rm", "-rf", "/"]), pb::ArgsOverride::Replace),
            Code::InvalidArgument,
            "args: program '/bin/rm'",
        ),
        (unknown, Code::InvalidArgument, "args_override: unknown value 9"),
        (no_args, Code::InvalidArgument, "args_override: is set, but no args"),
        (far, Code::FailedPrecondition, "target_node: node n9 is not live"),
        (bad_name, Code::InvalidArgument, "target_node"),
    ];
    for (req, code, words) in cases {
        let e = c1.trigger_job(req.clone()).await.expect_err("refused");
        assert_eq!(e.code(), code, "{req:?}: {e:?}");
        assert!(e.message().contains(words), "{req:?}: {e:?}");
    }
    assert_eq!(common::executions(&mut c1, "echo").await.len(), before, "nothing fired");
}
