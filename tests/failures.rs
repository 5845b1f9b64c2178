//! Failures explained in full, and waiting for a fire's outcome, through the real `rota` binary
//! against real nodes (in-memory store and a real `redis-server`): `exec get` shows a failed run's
//! whole error (an http job's "Connection refused" cause chain), where and when it ran; a shell run
//! keeps stdout and stderr apart and names stderr's last line in its error; `job trigger --wait`
//! follows a fire through its retries to its outcome, with one exit code per outcome; `exec list
//! --fire` lists every attempt of one fire, and refuses a fire id that is malformed, unknown, or of
//! another job than `--job`.
#[macro_use]
mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::{eventually, rota, status, Backend, RedisServer, TestNode, NEVER};
use rota::pb;
use serde_json::Value;

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", out(o), err(o)))
}

/// Puts a job through the CLI; panics (with the CLI's words) when refused.
async fn put(node: &TestNode, args: &[&str]) {
    let o = rota(node, &[&["job", "put", "--cron", NEVER][..], args].concat()).await;
    assert_eq!(o.status.code(), Some(0), "put {args:?}: {}", err(&o));
}

/// Every execution of `fire` through `exec list --fire --json`.
async fn fire_execs(node: &TestNode, fire: &str) -> Vec<Value> {
    let o = rota(node, &["exec", "list", "--fire", fire, "--limit", "100", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "exec list --fire {fire}: {}", err(&o));
    json_of(&o)["executions"].as_array().cloned().unwrap_or_default()
}

/// An http job to a closed port: `exec get` shows the whole error with its cause ("Connection
/// refused"), the fire, manual, start, end, node and attempt, in the table and in JSON; the URL's
/// path and query never appear. The list may shorten the error.
async fn http_failure_is_explained_in_full(b: Backend) {
    let node = TestNode::start(&b, "n1", &["--http-allow", "127.0.0.1"]).await;
    let closed = common::free_port();
    let url = format!("http://127.0.0.1:{closed}/hook/s3cret-path?token=s3cret-query");
    put(&node, &["--id", "hook", "--handler", "http", "--args", &serde_json::json!([url]).to_string()]).await;
    let o = rota(&node, &["job", "trigger", "hook", "--wait", "--json"]).await;
    assert_eq!(o.status.code(), Some(5), "failed: exit 5\n{}\n{}", out(&o), err(&o));
    let id = json_of(&o)["id"].as_str().expect("execution id").to_string();

    let o = rota(&node, &["exec", "get", &id]).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let table = out(&o);
    let prefix = format!("request to http://127.0.0.1:{closed} failed: ");
    let error_line = table.lines().find(|l| l.trim_start().starts_with("error:")).expect(&table);
    assert!(error_line.contains(&prefix) && error_line.contains("Connection refused"), "{table}");
    assert!(!table.contains("[truncated]") && !table.contains("s3cret"), "{table}");
    for (k, v) in [("fire", "hook@m:"), ("trigger", "manual"), ("node", "n1"), ("attempt", "1"), ("state", "failed")] {
        let line = table.lines().find(|l| l.trim_start().starts_with(&format!("{k}:"))).expect(k);
        assert!(line.contains(v), "{k}: {line}");
    }
    for k in ["started", "ended"] {
        let line = table.lines().find(|l| l.trim_start().starts_with(&format!("{k}:"))).expect(k);
        assert!(line.contains("Z"), "{k} is a time: {line}");
    }

    let o = rota(&node, &["exec", "get", &id, "--json"]).await;
    let v = json_of(&o);
    let e = v["error"].as_str().expect("error");
    assert!(e.starts_with(&prefix) && e.contains("Connection refused") && !e.contains("s3cret"), "{e}");
    assert!(v["fire_id"].as_str().is_some_and(|f| f.starts_with("hook@m:")), "{v}");
    assert_eq!((v["manual"].clone(), v["node_id"].clone(), v["attempt"].clone()), (true.into(), "n1".into(), 1.into()));
    assert!(v["start_time"].is_string() && v["end_time"].is_string(), "{v}");
    assert!(v["next_attempt_time"].is_null(), "no retry: {v}");

    // The list may shorten, and still names the execution.
    let o = rota(&node, &["exec", "list", "--job", "hook"]).await;
    assert!(out(&o).contains(&id), "{}", out(&o));
}

/// A shell run writing to both streams and exiting 3: stdout and stderr kept apart, the error
/// `exit status 3: <last stderr line>`, in the record (gRPC) and in `exec get`.
async fn shell_streams_kept_apart(b: Backend) {
    let node = TestNode::start(&b, "n1", &["--enable-shell", "--shell-allow", "/bin/sh"]).await;
    let script = "echo to-stdout; echo first-err >&2; echo 'the real cause' >&2; exit 3";
    put(&node, &["--id", "sh3", "--handler", "shell", "--args", &serde_json::json!({"sh": script}).to_string()]).await;
    let o = rota(&node, &["job", "trigger", "sh3", "--wait", "--json"]).await;
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    let v = json_of(&o);
    assert_eq!(v["error"], "exit status 3: the real cause");
    assert_eq!(v["output"], "to-stdout\n");
    assert_eq!(v["stderr"], "first-err\nthe real cause\n");

    let id = v["id"].as_str().expect("id").to_string();
    let mut c = node.client().await;
    let e = c.get_execution(pb::GetExecutionRequest { id: id.clone() }).await.expect("get").into_inner();
    let e = e.execution.expect("execution");
    assert_eq!((e.output.as_str(), e.stderr.as_str()), ("to-stdout\n", "first-err\nthe real cause\n"));
    assert!(!e.output.contains("--- stderr ---"));

    let table = out(&rota(&node, &["exec", "get", &id]).await);
    let after = |h: &str| table.split(h).nth(1).map(|s| s.lines().nth(1).unwrap_or("").to_string());
    assert_eq!(after("--- output ---").as_deref(), Some("to-stdout"), "{table}");
    assert_eq!(after("--- stderr ---").as_deref(), Some("first-err"), "{table}");
}

/// A shell run that times out keeps what it printed before its timeout, each stream apart.
async fn a_timed_out_shell_run_keeps_what_it_printed(b: Backend) {
    let node = TestNode::start(&b, "n1", &["--enable-shell", "--shell-allow", "/bin/sh"]).await;
    let script = "echo partial; echo perr >&2; sleep 30";
    let args = serde_json::json!({"sh": script}).to_string();
    put(&node, &["--id", "hang", "--handler", "shell", "--args", &args, "--timeout", "1s"]).await;
    let o = rota(&node, &["job", "trigger", "hang", "--wait", "--json"]).await;
    assert_eq!(o.status.code(), Some(6), "timed_out: {}", err(&o));
    let v = json_of(&o);
    assert_eq!(v["error"], "timed out after 1000 ms");
    assert_eq!((&v["output"], &v["stderr"]), (&serde_json::json!("partial\n"), &serde_json::json!("perr\n")), "{v}");
}

/// retries=2, failing twice then succeeding: `--wait` exits 0 with attempt 3 (not at attempt 1's
/// failure), printing a line per attempt to stderr; `exec list --fire` lists the 3 executions.
async fn wait_follows_retries_to_success(b: Backend) {
    let node = TestNode::start(&b, "n1", &["--enable-shell", "--shell-allow", "/bin/sh"]).await;
    let script = r#"[ "$ROTA_ATTEMPT" -ge 3 ] || { echo "attempt $ROTA_ATTEMPT: not yet" >&2; exit 1; }; echo done"#;
    let args = serde_json::json!({"sh": script}).to_string();
    put(&node, &["--id", "flaky", "--handler", "shell", "--args", &args, "--retries", "2", "--retry-backoff", "200ms"])
        .await;
    let o = rota(&node, &["job", "trigger", "flaky", "--wait", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}\n{}", out(&o), err(&o));
    let v = json_of(&o);
    assert_eq!(
        (v["state"].clone(), v["attempt"].clone(), v["output"].clone()),
        ("succeeded".into(), 3.into(), "done\n".into())
    );
    let progress = err(&o);
    for line in [
        "attempt 1 failed on n1: exit status 1: attempt 1: not yet; attempt 2 follows",
        "attempt 2 failed",
        "attempt 3 succeeded",
    ] {
        assert!(progress.contains(line), "{line} in:\n{progress}");
    }
    let fire = v["fire_id"].as_str().expect("fire").to_string();
    let execs = fire_execs(&node, &fire).await;
    let mut seen: Vec<(u64, String, bool)> = execs
        .iter()
        .map(|e| {
            (
                e["attempt"].as_u64().unwrap_or(0),
                e["state"].as_str().unwrap_or("").to_string(),
                e["next_attempt_time"].is_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [(1, "failed".into(), true), (2, "failed".into(), true), (3, "succeeded".into(), false)],
        "{execs:?}"
    );

    // Table form: the same three, and only this fire's (another trigger of the job is not listed).
    let o = rota(&node, &["job", "trigger", "flaky", "--json"]).await;
    let other = json_of(&o)["execution"]["fire_id"].as_str().expect("fire").to_string();
    assert_ne!(other, fire);
    let table = out(&rota(&node, &["exec", "list", "--fire", &fire]).await);
    assert_eq!(table.lines().count(), 4, "header and three rows:\n{table}");
}

/// Always failing with retries=2: `--wait` exits 5 only after the last retry (attempt 3).
async fn wait_reports_failure_after_the_last_retry(b: Backend) {
    let node = TestNode::start(&b, "n1", &["--enable-shell", "--shell-allow", "/bin/sh"]).await;
    let args = serde_json::json!({"sh": "echo broken >&2; exit 1"}).to_string();
    put(&node, &["--id", "bad", "--handler", "shell", "--args", &args, "--retries", "2", "--retry-backoff", "200ms"])
        .await;
    let o = rota(&node, &["job", "trigger", "bad", "--wait", "--json"]).await;
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    let v = json_of(&o);
    assert_eq!((v["state"].clone(), v["attempt"].clone()), ("failed".into(), 3.into()), "{v}");
    assert_eq!(v["error"], "exit status 1: broken");
    assert!(err(&o).contains("ended failed (attempt 3)"), "{}", err(&o));
    // By the time it returned, every attempt had run.
    let execs = fire_execs(&node, v["fire_id"].as_str().expect("fire")).await;
    assert_eq!(execs.len(), 3, "{execs:?}");
    assert!(execs.iter().all(|e| e["state"] == "failed"), "{execs:?}");
}

/// A wait shorter than the run: exit 9, saying where the fire is.
async fn wait_timeout_exits_9(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    put(&node, &["--id", "slow", "--invoke", "sleep('20s')"]).await;
    let o = rota(&node, &["job", "trigger", "slow", "--wait", "--wait-timeout", "700ms"]).await;
    assert_eq!(o.status.code(), Some(9), "{}\n{}", out(&o), err(&o));
    assert!(err(&o).contains("gave up waiting after 700ms: fire slow@m:"), "{}", err(&o));
    assert!(out(&o).is_empty(), "no outcome printed: {}", out(&o));
}

/// Bad input: `--fire` malformed, unknown, or of another job than `--job`; `--wait-timeout` that is
/// not a duration, zero, or without `--wait`: each refused with the field named, and a refused
/// trigger fires nothing.
async fn bad_fire_and_wait_input(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    put(&node, &["--id", "j", "--handler", "noop"]).await;
    put(&node, &["--id", "k", "--handler", "noop"]).await;
    let o = rota(&node, &["job", "trigger", "j", "--wait", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let fire = json_of(&o)["fire_id"].as_str().expect("fire").to_string();

    let mut c = node.client().await;
    let list = |fire_id: &str, job_id: &str| pb::ListExecutionsRequest {
        fire_id: fire_id.into(),
        job_id: job_id.into(),
        ..Default::default()
    };
    for (fire_id, job_id, code, msg) in [
        ("nope", "", tonic::Code::InvalidArgument, "fire_id: 'nope' is not a fire id: not '<job>@<instant>'"),
        ("j@soon", "", tonic::Code::InvalidArgument, "fire_id: 'j@soon' is not a fire id"),
        (
            "j@m:0192d6a0-0000-7000-8000-000000000000",
            "",
            tonic::Code::NotFound,
            "fire 'j@m:0192d6a0-0000-7000-8000-000000000000' not found",
        ),
        ("j@1767000000000", "", tonic::Code::NotFound, "fire 'j@1767000000000' not found"),
        (fire.as_str(), "k", tonic::Code::InvalidArgument, "fire_id: fire '"),
    ] {
        let s = c.list_executions(list(fire_id, job_id)).await.expect_err(fire_id);
        assert_eq!(s.code(), code, "{fire_id}: {}", s.message());
        assert!(s.message().starts_with(msg), "{fire_id}: {}", s.message());
    }
    // The fire with its own job, and the CLI's words for the refusals.
    let ok = c.list_executions(list(&fire, "j")).await.expect("own job").into_inner();
    assert_eq!(ok.executions.len(), 1);
    let o = rota(&node, &["exec", "list", "--fire", &fire, "--job", "k"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("InvalidArgument: fire_id: fire '") && err(&o).contains("is of job 'j', not of job_id 'k'"),
        "{}",
        err(&o)
    );
    let o = rota(&node, &["exec", "list", "--fire", "k@m:0192d6a0-0000-7000-8000-000000000000"]).await;
    assert_eq!(o.status.code(), Some(4), "not found has its own exit code");
    assert!(err(&o).contains("NotFound: fire 'k@m:0192d6a0-0000-7000-8000-000000000000' not found"), "{}", err(&o));

    for (args, says) in [
        (&["job", "trigger", "k", "--wait", "--wait-timeout", "soon"][..], "--wait-timeout: 'soon' is not a duration"),
        (&["job", "trigger", "k", "--wait", "--wait-timeout", "0s"][..], "--wait-timeout: must be more than 0"),
        (&["job", "trigger", "k", "--wait-timeout", "5s"][..], "--wait"),
    ] {
        let o = rota(&node, args).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(says), "{args:?}: {}", err(&o));
    }
    // Nothing half-done: no refused trigger fired.
    let r =
        c.list_executions(pb::ListExecutionsRequest { job_id: "k".into(), ..Default::default() }).await.expect("list");
    assert!(r.into_inner().executions.is_empty());
}

/// A fire whose node dies mid-run: with recovery `rerun` the lost attempt announces the re-run and
/// `--wait` follows it to its success on the surviving node (exit 0); with recovery `lost` the lost
/// attempt is the outcome (exit 7). Master-only jobs triggered on the worker run on the master
/// (n1), which is killed; the waits ask the worker (n2), which becomes master and recovers them.
#[tokio::test]
async fn wait_follows_a_fire_through_its_nodes_death() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let shell = ["--enable-shell", "--shell-allow", "/bin/sh"];
    let mut n1 = TestNode::start(&b, "n1", &shell).await;
    eventually(Duration::from_secs(20), "n1 master", || async {
        status(&n1).await.filter(|s| s.master_id == "n1").map(|_| ())
    })
    .await;
    let n2 = TestNode::start(&b, "n2", &shell).await;
    // The first attempt runs until its node dies; a re-run (attempt 2 on) succeeds.
    // The re-run takes a second, as real work does: the wait reads the first attempt's close (its
    // record written by the master's recovery at once after the reap) before the re-run's outcome.
    let script = r#"[ "$ROTA_ATTEMPT" -ge 2 ] && { sleep 1; echo "rerun ok"; exit 0; }; sleep 30"#;
    let args = serde_json::json!({"sh": script}).to_string();
    let mut waits = Vec::new();
    for (id, recovery) in [("again", "rerun"), ("once", "lost")] {
        put(&n2, &["--id", id, "--handler", "shell", "--args", &args, "--master-only", "--recovery", recovery]).await;
        let child = spawn_wait(&n2, id);
        waits.push((id, child));
    }
    let c = n2.client().await;
    eventually(Duration::from_secs(20), "both first attempts running on n1", || {
        let mut c = c.clone();
        async move {
            let mut running = 0;
            for j in ["again", "once"] {
                running += common::executions(&mut c, j)
                    .await
                    .iter()
                    .filter(|e| e.state == pb::ExecutionState::Running as i32 && e.node_id == "n1")
                    .count();
            }
            (running == 2).then_some(())
        }
    })
    .await;
    n1.kill();
    let mut outcomes = Vec::new();
    for (id, child) in waits {
        let o = child.wait_with_output().await.expect("wait for rota");
        outcomes.push((id, o));
    }
    let (_, again) = &outcomes[0];
    assert_eq!(again.status.code(), Some(0), "re-run followed to success\n{}\n{}", out(again), err(again));
    let v = json_of(again);
    assert_eq!(
        (v["state"].clone(), v["node_id"].clone(), v["output"].clone()),
        ("succeeded".into(), "n2".into(), "rerun ok\n".into()),
        "{v}"
    );
    assert!(
        err(again).contains("lost on n1: lost: node n1 died while running it; re-run on n2; attempt"),
        "{}",
        err(again)
    );
    let (_, once) = &outcomes[1];
    assert_eq!(once.status.code(), Some(7), "lost is the outcome\n{}\n{}", out(once), err(once));
    let v = json_of(once);
    assert_eq!(
        (v["state"].clone(), v["node_id"].clone(), v["next_attempt_time"].clone()),
        ("lost".into(), "n1".into(), Value::Null),
        "{v}"
    );
}

/// A node paused past its heartbeat while its attempt ran: the master records the attempt lost
/// (recovery `lost`). When the node resumes and its attempt fails, it must not write over that
/// outcome with "failed, a retry follows" (a retry that never comes: `--wait` would hang); the lost
/// record stands, and `--wait` reports it (exit 7).
#[tokio::test]
async fn a_reaped_attempt_that_fails_later_does_not_announce_a_retry() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let shell = ["--enable-shell", "--shell-allow", "/bin/sh"];
    let n1 = TestNode::start(&b, "n1", &shell).await;
    eventually(Duration::from_secs(20), "n1 master", || async {
        status(&n1).await.filter(|s| s.master_id == "n1").map(|_| ())
    })
    .await;
    let n2 = TestNode::start(&b, "n2", &shell).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    // Fails once told to, so the failure comes after the node was resumed.
    let script = format!("while [ ! -f {} ]; do sleep 0.05; done; echo late failure >&2; exit 1", go.display());
    let args = serde_json::json!({"sh": script}).to_string();
    put(&n2, &["--id", "paused", "--handler", "shell", "--args", &args, "--retries", "2", "--retry-backoff", "100ms"])
        .await;
    // A manual fire runs on the node that was asked: n2.
    let o = rota(&n2, &["job", "trigger", "paused", "--json"]).await;
    let first = json_of(&o)["execution"]["id"].as_str().expect("id").to_string();
    let c = n1.client().await;
    let get = || {
        let (mut c, id) = (c.clone(), first.clone());
        async move { c.get_execution(pb::GetExecutionRequest { id }).await.ok()?.into_inner().execution }
    };
    eventually(Duration::from_secs(20), "attempt 1 running on n2", || async {
        get().await.filter(|e| e.state == pb::ExecutionState::Running as i32 && e.node_id == "n2")
    })
    .await;
    n2.pause();
    eventually(Duration::from_secs(20), "attempt 1 recorded lost by the master", || async {
        get().await.filter(|e| e.state == pb::ExecutionState::Lost as i32)
    })
    .await;
    n2.resume();
    std::fs::write(&go, "").expect("go");
    // n2 sees its attempt fail and either refuses to announce a retry, or (the bug) writes over
    // the lost record.
    eventually(Duration::from_secs(20), "n2 handled the late failure", || async {
        let refused = n2.log().contains("not retrying: the attempt was closed elsewhere");
        let overwritten = get().await.is_some_and(|e| e.state != pb::ExecutionState::Lost as i32);
        (refused || overwritten).then_some(())
    })
    .await;
    let e = get().await.expect("record");
    assert_eq!((e.state, e.next_attempt_time), (pb::ExecutionState::Lost as i32, None), "{e:?}");
    // The late result is kept as evidence beside it, never as the outcome; no retry ran.
    let execs = eventually(Duration::from_secs(20), "the late result kept as evidence", || async {
        let execs = fire_execs(&n1, &e.fire_id).await;
        execs.iter().any(|x| x["state"] == "superseded").then_some(execs)
    })
    .await;
    assert!(execs.iter().all(|x| x["attempt"] == 1), "no retry ran: {execs:?}");
    let late = execs.iter().find(|x| x["state"] == "superseded").expect("evidence");
    assert!(late["error"].as_str().is_some_and(|e| e.contains("finished as failed")), "{late}");
}

/// The store restarts while `--wait` waits: the looks that go unanswered (UNAVAILABLE) are said
/// once, the wait goes on, and it still ends with the fire's outcome (exit 0).
#[tokio::test]
async fn wait_rides_out_a_store_restart() {
    use tokio::io::AsyncBufReadExt;
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"], "");
    let b = Backend::Redis(redis.url());
    let node = TestNode::start(&b, "n1", &["--enable-shell", "--shell-allow", "/bin/sh"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let script = format!("while [ ! -f {} ]; do sleep 0.05; done; echo ok", go.display());
    put(&node, &["--id", "patient", "--handler", "shell", "--args", &serde_json::json!({"sh": script}).to_string()])
        .await;
    let mut child = spawn_wait(&node, "patient");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let c = node.client().await;
    eventually(Duration::from_secs(20), "the fire running", || {
        let mut c = c.clone();
        async move {
            common::executions(&mut c, "patient")
                .await
                .into_iter()
                .find(|e| e.state == pb::ExecutionState::Running as i32)
        }
    })
    .await;
    redis.kill();
    let mut said = Vec::new();
    let unavailable = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(l)) = lines.next_line().await {
            said.push(l.clone());
            if l.starts_with("unavailable (") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(unavailable, Ok(true), "the wait said the node was unavailable and went on: {said:?}");
    redis.restart();
    std::fs::write(&go, "").expect("go");
    let rest: Vec<String> = {
        let mut v = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            v.push(l);
        }
        v
    };
    let o = child.wait_with_output().await.expect("wait for rota");
    assert_eq!(o.status.code(), Some(0), "{}\n{said:?}\n{rest:?}", out(&o));
    assert_eq!(json_of(&o)["output"], "ok\n");
    assert!(rest.iter().any(|l| l == "answered again"), "{rest:?}");
    assert_eq!(rest.iter().filter(|l| l.starts_with("unavailable (")).count(), 0, "said once per outage: {rest:?}");
}

on_both_stores!(
    http_failure_is_explained_in_full,
    shell_streams_kept_apart,
    a_timed_out_shell_run_keeps_what_it_printed,
    wait_follows_retries_to_success,
    wait_reports_failure_after_the_last_retry,
    wait_timeout_exits_9,
    bad_fire_and_wait_input,
);

/// `rota job trigger JOB --wait --json` against `node`, running in the background (piped output).
fn spawn_wait(node: &TestNode, job: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["job", "trigger", job, "--wait", "--wait-timeout", "60s", "--json"])
        .env("ROTA_ENDPOINT", node.endpoint())
        .env_remove("ROTA_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rota")
}
