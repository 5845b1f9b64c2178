//! End to end over real gRPC against real `rota server` processes: every behaviour runs on a node
//! with the in-memory store and on a node with a real `redis-server`.
#[macro_use]
mod common;

use std::time::Duration;

use common::{eventually, executions, job, ms, state, Backend, RedisServer, TestNode};
use rota::pb;
use serde_json::json;
use tonic::Code;

use pb::ExecutionState as S;

const WAIT: Duration = Duration::from_secs(15);

/// A job firing every second is executed every second, with the right scheduled instants.
async fn fires_every_second(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    let mut c = node.client().await;
    let r =
        c.put_job(pb::PutJobRequest { job: Some(job("tick", "* * * * * *", "noop", json!(null))) }).await.expect("put");
    assert!(r.get_ref().created);
    let execs = eventually(WAIT, "4 succeeded executions", || {
        let mut c = c.clone();
        async move {
            let e = executions(&mut c, "tick").await;
            (e.iter().filter(|e| state(e) == S::Succeeded).count() >= 4).then_some(e)
        }
    })
    .await;
    let mut scheds: Vec<i64> =
        execs.iter().filter(|e| state(e) == S::Succeeded).map(|e| ms(&e.scheduled_time)).collect();
    scheds.sort();
    for w in scheds.windows(2) {
        assert_eq!(w[1] - w[0], 1000, "consecutive fires one second apart: {scheds:?}");
    }
    for e in &execs {
        assert_eq!(ms(&e.scheduled_time) % 1000, 0, "scheduled on a whole second");
        assert_eq!(e.fire_id, format!("tick@{}", ms(&e.scheduled_time)));
        assert_eq!(e.node_id, "n1");
        if state(e) == S::Succeeded {
            assert!(ms(&e.start_time) >= ms(&e.scheduled_time), "never starts early");
        }
    }
}

/// Pause stops firing; resume restarts; delete stops for good.
async fn pause_resume_delete(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    let mut c = node.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job("p", "* * * * * *", "noop", json!(null))) }).await.expect("put");
    let count = |c: &pb::scheduler_service_client::SchedulerServiceClient<_>| {
        let mut c = c.clone();
        async move { executions(&mut c, "p").await.len() }
    };
    eventually(WAIT, "first fire", || async { (count(&c).await >= 1).then_some(()) }).await;
    let paused =
        c.pause_job(pb::PauseJobRequest { id: "p".into(), ..Default::default() }).await.expect("pause").into_inner();
    assert!(paused.job.as_ref().is_some_and(|j| j.paused == Some(true) && j.next_fire_time.is_none()));
    // Let a fire that was already claimed finish, then nothing more may appear.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = count(&c).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count(&c).await, before, "paused job fired");
    let resumed = c.resume_job(pb::ResumeJobRequest { id: "p".into() }).await.expect("resume").into_inner();
    assert!(resumed.job.as_ref().is_some_and(|j| j.paused == Some(false) && j.next_fire_time.is_some()));
    eventually(WAIT, "fires after resume", || async { (count(&c).await >= before + 2).then_some(()) }).await;
    c.delete_job(pb::DeleteJobRequest { id: "p".into() }).await.expect("delete");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_delete = count(&c).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(count(&c).await, after_delete, "deleted job fired");
    let e = c.get_job(pb::GetJobRequest { id: "p".into() }).await.expect_err("gone");
    assert_eq!(e.code(), Code::NotFound);
}

/// TriggerJob fires once, as its own fire; a retried call with the same key does not fire again.
async fn trigger_fires_once(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    let mut c = node.client().await;
    // A schedule that will not fire during the test (Feb 29 at 03:00, at least a year away).
    c.put_job(pb::PutJobRequest { job: Some(job("manual", "0 0 3 29 2 *", "noop", json!(null))) }).await.expect("put");
    let t1 = c
        .trigger_job(pb::TriggerJobRequest {
            id: "manual".into(),
            idempotency_key: "deploy-42".into(),
            ..Default::default()
        })
        .await
        .expect("trigger")
        .into_inner();
    let t2 = c
        .trigger_job(pb::TriggerJobRequest {
            id: "manual".into(),
            idempotency_key: "deploy-42".into(),
            ..Default::default()
        })
        .await
        .expect("trigger")
        .into_inner();
    let e1 = t1.execution.expect("execution");
    assert!(!t1.deduplicated && t2.deduplicated);
    assert_eq!(t2.execution.expect("execution").id, e1.id);
    assert!(e1.manual && e1.fire_id.starts_with("manual@m:"), "{}", e1.fire_id);
    let t3 = c
        .trigger_job(pb::TriggerJobRequest {
            id: "manual".into(),
            idempotency_key: String::new(),
            ..Default::default()
        })
        .await
        .expect("t");
    assert!(!t3.get_ref().deduplicated);
    let execs = eventually(WAIT, "two manual executions succeed", || {
        let mut c = c.clone();
        async move {
            let e = executions(&mut c, "manual").await;
            (e.len() == 2 && e.iter().all(|e| state(e) == S::Succeeded)).then_some(e)
        }
    })
    .await;
    assert!(execs.iter().any(|e| e.id == e1.id));
    let missing = c
        .trigger_job(pb::TriggerJobRequest { id: "nope".into(), idempotency_key: String::new(), ..Default::default() })
        .await;
    assert_eq!(missing.expect_err("missing").code(), Code::NotFound);
}

/// A failing handler is recorded with its error and output; retries make new executions of the
/// same fire; the exhausted fire raises an alert on the webhook.
async fn failure_retries_and_alert(b: Backend) {
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_url = format!("http://{}/alert", hook.local_addr().expect("addr"));
    let (tx, mut alerts) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = hook.accept().await else { return };
            let mut buf = vec![0u8; 16384];
            let mut got = Vec::new();
            // Read until the JSON body is complete (headers, then a body ending in '}').
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"}") {
                    break;
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&got).to_string());
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
        }
    });
    let node =
        TestNode::start(&b, "n1", &["--enable-shell", "--shell-allow", "/bin/sh", "--alert-webhook", &hook_url]).await;
    let mut c = node.client().await;
    let mut j = job("boom", "0 0 3 29 2 *", "shell", json!({"sh": "echo out; echo bad >&2; exit 3"}));
    j.retries = 2;
    j.retry_backoff = Some(prost_types::Duration { seconds: 0, nanos: 100_000_000 });
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    c.trigger_job(pb::TriggerJobRequest { id: "boom".into(), idempotency_key: String::new(), ..Default::default() })
        .await
        .expect("trigger");
    let execs = eventually(WAIT, "three failed attempts", || {
        let mut c = c.clone();
        async move {
            let e = executions(&mut c, "boom").await;
            (e.len() == 3 && e.iter().all(|e| state(e) == S::Failed)).then_some(e)
        }
    })
    .await;
    let mut attempts: Vec<u32> = execs.iter().map(|e| e.attempt).collect();
    attempts.sort();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(execs.iter().all(|e| e.fire_id == execs[0].fire_id), "retries share the fire");
    assert!(execs.iter().all(|e| e.error == "exit status 3: bad"), "{:?}", execs[0].error);
    assert_eq!((execs[0].output.as_str(), execs[0].stderr.as_str()), ("out\n", "bad\n"));
    let body = tokio::time::timeout(WAIT, alerts.recv()).await.expect("alert arrives").expect("alert");
    let json_body = &body[body.find('{').expect("json body")..];
    let v: serde_json::Value = serde_json::from_str(json_body).expect("alert is JSON");
    assert_eq!(v["kind"], "execution_failed");
    assert_eq!(v["job_id"], "boom");
    assert_eq!(v["attempt"], 3);
    assert_eq!(v["error"], "exit status 3: bad");
    // One alert per exhausted fire, not one per attempt.
    assert!(tokio::time::timeout(Duration::from_millis(500), alerts.recv()).await.is_err(), "extra alert");
}

/// A shell handler past its timeout is recorded TIMED_OUT and its whole process group is killed.
async fn shell_timeout_kills_process_group(b: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let node = TestNode::start(&b, "n1", &["--enable-shell", "--shell-allow", "/bin/sh"]).await;
    let mut c = node.client().await;
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let mut j = job("slow", "0 0 3 29 2 *", "shell", json!({"sh": script}));
    j.timeout = Some(prost_types::Duration { seconds: 0, nanos: 500_000_000 });
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    c.trigger_job(pb::TriggerJobRequest { id: "slow".into(), idempotency_key: String::new(), ..Default::default() })
        .await
        .expect("trigger");
    let e = eventually(WAIT, "timed out", || {
        let mut c = c.clone();
        async move { executions(&mut c, "slow").await.into_iter().find(|e| state(e) == S::TimedOut) }
    })
    .await;
    assert_eq!(e.error, "timed out after 500 ms");
    let pid: i32 = std::fs::read_to_string(&pidfile).expect("pid").trim().parse().expect("pid number");
    eventually(Duration::from_secs(5), "grandchild killed", || async move {
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "));
        gone.then_some(())
    })
    .await;
}

/// Forbid: a fire that finds the previous one still running is recorded as skipped.
async fn forbid_skips_overlap(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    let mut c = node.client().await;
    let mut j = job("long", "* * * * * *", "sleep", json!(["2500ms"]));
    j.concurrency = pb::ConcurrencyPolicy::Forbid as i32;
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    let execs = eventually(WAIT, "a skipped and a succeeded fire", || {
        let mut c = c.clone();
        async move {
            let e = executions(&mut c, "long").await;
            let skipped = e.iter().filter(|e| state(e) == S::Skipped).count();
            let ok = e.iter().filter(|e| state(e) == S::Succeeded).count();
            (skipped >= 2 && ok >= 1).then_some(e)
        }
    })
    .await;
    // No two executions that ran overlap in time.
    let mut ran: Vec<(i64, i64)> = execs
        .iter()
        .filter(|e| matches!(state(e), S::Succeeded | S::Running))
        .map(|e| (ms(&e.start_time), if e.end_time.is_some() { ms(&e.end_time) } else { i64::MAX }))
        .collect();
    ran.sort();
    for w in ran.windows(2) {
        assert!(w[1].0 >= w[0].1, "overlapping runs: {ran:?}");
    }
}

/// A forbid job's fire is claimed (and its lock taken) at its instant, not in the fire-ahead window
/// before it: a run that ends just before the next instant leaves that fire free to run.
async fn forbid_runs_ending_just_before_the_next_instant_do_not_skip_it(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    let mut c = node.client().await;
    // Every 2 s, running 1.85 s: the lock is held through the fire-ahead window of the next instant
    // and free at the instant itself.
    let mut j = job("tight", "*/2 * * * * *", "sleep", json!(["1850ms"]));
    j.concurrency = pb::ConcurrencyPolicy::Forbid as i32;
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    let execs = eventually(WAIT, "three finished runs", || {
        let mut c = c.clone();
        async move {
            let e = executions(&mut c, "tight").await;
            (e.iter().filter(|e| state(e) == S::Succeeded).count() >= 3).then_some(e)
        }
    })
    .await;
    let skipped: Vec<_> = execs.iter().filter(|e| state(e) == S::Skipped).map(|e| e.error.clone()).collect();
    assert!(skipped.is_empty(), "fires skipped although the previous run had ended: {skipped:?}");
}

/// Invalid definitions get INVALID_ARGUMENT naming the field.
async fn invalid_input_names_the_field(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    let mut c = node.client().await;
    let base = || job("ok", "* * * * * *", "noop", json!(null));
    let cases: Vec<(pb::Job, &str)> = vec![
        (
            pb::Job { schedule: Some(pb::job::Schedule::Cron("0 0 0 32 * *".into())), ..base() },
            "cron: field 'day-of-month' out of range: 32",
        ),
        (
            pb::Job { schedule: Some(pb::job::Schedule::Cron("* * *".into())), ..base() },
            "cron: expected 5, 6 or 7 fields, got 3",
        ),
        (pb::Job { time_zone: "Mars/Base".into(), ..base() }, "time_zone: unknown IANA time zone 'Mars/Base'"),
        (pb::Job { handler: "no pe".into(), ..base() }, "handler: 'no pe' is not a handler name"),
        (pb::Job { handler: "noop.".repeat(30), ..base() }, "handler: 'noop.noop."),
        (
            pb::Job { handler: "shell".into(), ..base() },
            "handler: unknown handler 'shell' (start the node with --enable-shell)",
        ),
        (pb::Job { id: "bad id".into(), ..base() }, "id: 'bad id' has ' '"),
        (pb::Job { id: String::new(), ..base() }, "id: is required"),
        (pb::Job { handler: "sleep".into(), ..base() }, "args: sleep takes one duration"),
        (pb::Job { handler: String::new(), invoke: "sleep('2s'".into(), ..base() }, "invoke: at column"),
        (pb::Job { concurrency: 7, ..base() }, "concurrency: unknown value 7"),
        (pb::Job { retries: 1000, ..base() }, "retries: 1000 is more than 100"),
        (pb::Job { keep_last: 100_001, ..base() }, "keep_last: 100001 is more than 100000"),
        (pb::Job { keep_failed: Some(100_001), ..base() }, "keep_failed: 100001 is more than 100000"),
        (pb::Job { routing: 9, ..base() }, "routing: unknown value 9"),
        (
            pb::Job { master_only: true, routing: pb::RoutingStrategy::RoundRobin as i32, ..base() },
            "routing: a master-only job runs on the master: it takes no routing (round_robin)",
        ),
        (
            pb::Job { routing: pb::RoutingStrategy::Failover as i32, ..base() },
            "failover_nodes: routing failover needs the node ids to try, in order",
        ),
        (
            pb::Job { failover_nodes: vec!["n1".into()], ..base() },
            "failover_nodes: only for routing failover (this job's routing is load)",
        ),
        (
            pb::Job {
                routing: pb::RoutingStrategy::Failover as i32,
                failover_nodes: vec!["n1".into(), "n 2".into()],
                ..base()
            },
            "failover_nodes[1]: 'n 2' has ' '",
        ),
        (
            pb::Job {
                routing: pb::RoutingStrategy::Failover as i32,
                failover_nodes: vec!["n1".into(), "n2".into(), "n1".into()],
                ..base()
            },
            "failover_nodes[2]: names a node twice",
        ),
        (
            pb::Job {
                routing: pb::RoutingStrategy::Failover as i32,
                failover_nodes: (0..17).map(|i| format!("n{i}")).collect(),
                ..base()
            },
            "failover_nodes: more than 16 nodes",
        ),
    ];
    for (j, want) in cases {
        let e = c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect_err(want);
        assert_eq!(e.code(), Code::InvalidArgument, "{want}: {e:?}");
        assert!(e.message().starts_with(want), "got {:?}, want {want:?}", e.message());
    }
    let e = c.put_job(pb::PutJobRequest { job: None }).await.expect_err("no job");
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "job: is required"));
    let e = c.list_jobs(pb::ListJobsRequest { page_size: 5000, page_token: String::new() }).await.expect_err("page");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("page_size:"));
    let e = c.get_execution(pb::GetExecutionRequest { id: "x".into() }).await.expect_err("bad id");
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "id: 'x' is not an execution id: is not '<stamp>~<fire id>'")
    );
    // An id whose fire part is not a fire id says which part is wrong.
    let e =
        c.get_execution(pb::GetExecutionRequest { id: "01a24984-4045-76c7~a b@1".into() }).await.expect_err("bad fire");
    assert!(
        e.message().starts_with("id: '01a24984-4045-76c7~a b@1' is not an execution id: its part after '~'"),
        "{e:?}"
    );
    let e =
        c.list_executions(pb::ListExecutionsRequest { state: 99, ..Default::default() }).await.expect_err("bad state");
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "state: unknown value 99"));
    let e = c
        .trigger_job(pb::TriggerJobRequest {
            id: "ok".into(),
            idempotency_key: "bad key!".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad key");
    assert!(e.message().starts_with("idempotency_key:"), "{}", e.message());
    // Nothing was stored by any of the refused calls.
    let jobs = c.list_jobs(pb::ListJobsRequest::default()).await.expect("list").into_inner();
    assert!(jobs.jobs.is_empty(), "{:?}", jobs.jobs);
}

/// A job's history is capped by its own `keep_last` / `keep_failed` (passed from the definition to
/// the finish of each run): however many runs, it shows its newest two and one older failure.
async fn a_jobs_history_is_capped_by_its_definition(b: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let node = TestNode::start(&b, "n1", &["--enable-shell", "--shell-allow", "/bin/sh"]).await;
    let mut c = node.client().await;
    // Every second; fails on odd seconds. Each run leaves a line, so runs are counted apart from
    // the records the cap deletes.
    let sh = format!("echo x >> {}; exit $(( $(date +%s) % 2 ))", runs.display());
    let mut j = job("capped", "* * * * * *", "shell", json!({"sh": sh}));
    j.keep_last = 2;
    j.keep_failed = Some(1);
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    let got = c.get_job(pb::GetJobRequest { id: "capped".into() }).await.expect("get").into_inner().job.expect("job");
    assert_eq!((got.keep_last, got.keep_failed), (2, Some(1)));
    eventually(WAIT, "eight runs", || {
        let runs = runs.clone();
        async move { (std::fs::read_to_string(&runs).unwrap_or_default().lines().count() >= 8).then_some(()) }
    })
    .await;
    let execs = executions(&mut c, "capped").await;
    let done: Vec<_> = execs.iter().filter(|e| !matches!(state(e), S::Pending | S::Running)).collect();
    let failed = done.iter().filter(|e| state(e) == S::Failed).count();
    // The newest two runs (one may still be open: a fire claimed ahead of its instant) and one older
    // failure; of eight runs and more, about half failed.
    assert!(
        (1..=3).contains(&done.len()) && failed >= 1 && done.len() - failed <= 2,
        "{} finished, {failed} failed: {execs:?}",
        done.len()
    );
}

/// A TriggerJob retried with an idempotency key whose execution the job's history cap has deleted
/// since is refused with FAILED_PRECONDITION naming that execution; nothing fires again.
async fn a_spent_idempotency_key_is_refused_not_fired_again(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    let mut c = node.client().await;
    let mut j = job("once", "0 0 3 29 2 *", "noop", json!(null));
    j.keep_last = 1;
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    let trigger =
        |key: &str| pb::TriggerJobRequest { id: "once".into(), idempotency_key: key.into(), ..Default::default() };
    let first = c.trigger_job(trigger("k1")).await.expect("trigger").into_inner().execution.expect("execution");
    // Two more runs finish after it: the cap of 1 deletes the first's record.
    for _ in 0..2 {
        c.trigger_job(trigger("")).await.expect("trigger");
    }
    eventually(WAIT, "the first run's record trimmed", || {
        let mut c = c.clone();
        let id = first.id.clone();
        async move { c.get_execution(pb::GetExecutionRequest { id }).await.is_err().then_some(()) }
    })
    .await;
    let e = c.trigger_job(trigger("k1")).await.expect_err("a spent key");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains(&first.id) && e.message().contains("history cap"), "{}", e.message());
    let runs = executions(&mut c, "once").await;
    assert!(runs.len() <= 2, "nothing fired again: {runs:?}");
}

/// ListJobs pages through every job in id order.
async fn list_jobs_paginates(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    let mut c = node.client().await;
    for i in 0..25 {
        c.put_job(pb::PutJobRequest { job: Some(job(&format!("j{i:02}"), "0 0 3 29 2 *", "noop", json!(null))) })
            .await
            .expect("put");
    }
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let r = c.list_jobs(pb::ListJobsRequest { page_size: 10, page_token: token }).await.expect("list").into_inner();
        assert!(r.jobs.len() <= 10);
        ids.extend(r.jobs.into_iter().map(|j| j.id));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    let want: Vec<String> = (0..25).map(|i| format!("j{i:02}")).collect();
    assert_eq!(ids, want);
}

/// WatchExecutions streams state changes as they happen.
async fn watch_streams_changes(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    let mut c = node.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job("w", "0 0 3 29 2 *", "noop", json!(null))) }).await.expect("put");
    let mut stream =
        c.watch_executions(pb::WatchExecutionsRequest { job_id: "w".into() }).await.expect("watch").into_inner();
    // The Redis relay attaches asynchronously; trigger until changes flow.
    let mut states = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !states.contains(&S::Succeeded) {
        assert!(std::time::Instant::now() < deadline, "no change seen: {states:?}");
        if states.is_empty() {
            c.trigger_job(pb::TriggerJobRequest {
                id: "w".into(),
                idempotency_key: String::new(),
                ..Default::default()
            })
            .await
            .expect("t");
        }
        if let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
            let e = m.execution.expect("execution");
            assert_eq!(e.job_id, "w");
            states.push(state(&e));
        }
    }
    assert!(states.contains(&S::Running), "{states:?}");
}

/// Health, reflection, node info and cluster status.
async fn health_reflection_and_status(b: Backend) {
    let node = TestNode::start(&b, "n1", &[]).await;
    let mut refl =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(node.channel().await);
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut resp = refl.server_reflection_info(tokio_stream::iter(vec![req])).await.expect("reflection").into_inner();
    let msg = resp.message().await.expect("reply").expect("one reply");
    let Some(tonic_reflection::pb::v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        msg.message_response
    else {
        panic!("unexpected reflection reply")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["rota.v1.SchedulerService", "rota.v1.NodeService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    // What grpcurl does before a call by name: fetch the file that defines the service, and decode it.
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "rota.v1.SchedulerService".into(),
            ),
        ),
    };
    let mut resp = refl.server_reflection_info(tokio_stream::iter(vec![req])).await.expect("reflection").into_inner();
    let msg = resp.message().await.expect("reply").expect("one reply");
    let Some(tonic_reflection::pb::v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        msg.message_response
    else {
        panic!("no file descriptor for rota.v1.SchedulerService")
    };
    let methods: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .filter_map(|b| <prost_types::FileDescriptorProto as prost::Message>::decode(b.as_slice()).ok())
        .flat_map(|f| f.service)
        .filter(|s| s.name() == "SchedulerService")
        .flat_map(|s| s.method.into_iter().map(|m| m.name().to_string()))
        .collect();
    assert!(methods.contains(&"PutJob".to_string()) && methods.contains(&"WatchExecutions".to_string()), "{methods:?}");
    let mut n = pb::node_service_client::NodeServiceClient::new(node.channel().await);
    let info = n.get_node_info(pb::GetNodeInfoRequest {}).await.expect("info").into_inner().node.expect("node");
    assert_eq!(info.node_id, "n1");
    assert!(info.handlers.contains(&"noop".to_string()));
    let mut c = node.client().await;
    let st = c.get_cluster_status(pb::GetClusterStatusRequest {}).await.expect("status").into_inner();
    assert!(st.nodes.iter().any(|n| n.node_id == "n1" && n.state == pb::NodeState::Live as i32));
    let store = match b {
        Backend::Memory => "memory",
        Backend::Redis(_) => "redis",
    };
    assert_eq!(st.store, store);
    let r = n
        .report_load(pb::ReportLoadRequest {
            node_id: "n2".into(),
            load: Some(pb::NodeLoad { active_workers: 9, max_workers: 1, queue_depth: 0 }),
            measured_at: None,
        })
        .await
        .expect_err("bad load");
    assert_eq!(r.code(), Code::InvalidArgument);
}

/// Jobs from --jobs FILE are put at start; SIGTERM waits for running work, then exits 0.
async fn jobs_file_and_graceful_shutdown(b: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        "[[job]]\nid = \"from-file\"\ncron = \"* * * * * *\"\ninvoke = \"sleep('1500ms')\"\nconcurrency = \"forbid\"\n",
    )
    .expect("write");
    let mut node = TestNode::start(&b, "n1", &["--jobs", file.to_str().expect("utf8")]).await;
    let mut c = node.client().await;
    let running = eventually(WAIT, "a running execution", || {
        let mut c = c.clone();
        async move { executions(&mut c, "from-file").await.into_iter().find(|e| state(e) == S::Running) }
    })
    .await;
    assert_eq!(node.terminate(), Some(0));
    // The drain says what it waits for, and logs carry values (a time), not Rust's `Some(..)`.
    let log = node.log();
    assert!(log.contains("draining: waiting for 1 executions (grace 30.0 s)"), "{log}");
    assert!(log.contains("next_fire=20") && !log.contains("Some("), "{log}");
    if let Backend::Redis(_) = b {
        // The record outlives the node: the run that was going finished and was recorded.
        let node2 = TestNode::start(&b, "n2", &[]).await;
        let mut c2 = node2.client().await;
        let e = c2
            .get_execution(pb::GetExecutionRequest { id: running.id.clone() })
            .await
            .expect("get")
            .into_inner()
            .execution
            .expect("execution");
        assert_eq!(state(&e), S::Succeeded, "running work finished before exit");
    } else {
        let log = node.log();
        let finished =
            log.lines().any(|l| l.contains(&running.id) && l.contains("finished") && l.contains("succeeded"));
        assert!(finished, "running work did not finish before exit:\n{log}");
    }
    let _ = &mut c;
}

/// A bad jobs file stops the node at start with the job and field named, exit code 64.
#[tokio::test]
async fn bad_jobs_file_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(&file, "[[job]]\nid = \"x\"\ncron = \"0 61 * * * *\"\nhandler = \"noop\"\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["server", "--listen", "127.0.0.1:0", "--jobs", file.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("job #1 ('x')") && err.contains("field 'minute' out of range: 61"), "{err}");
}

/// Two nodes on one Redis, both scheduling the same job: every fire runs exactly once.
#[tokio::test]
async fn two_nodes_on_one_redis_fire_each_instant_once() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &[]).await;
    let n2 = TestNode::start(&b, "n2", &[]).await;
    let mut c = n1.client().await;
    for i in 0..5 {
        c.put_job(pb::PutJobRequest { job: Some(job(&format!("shared{i}"), "* * * * * *", "noop", json!(null))) })
            .await
            .expect("put");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut c2 = n2.client().await;
    for i in 0..5 {
        let execs = executions(&mut c2, &format!("shared{i}")).await;
        assert!(execs.len() >= 3, "shared{i} fired {} times", execs.len());
        let mut fires: Vec<&str> = execs.iter().map(|e| e.fire_id.as_str()).collect();
        fires.sort();
        let n = fires.len();
        fires.dedup();
        assert_eq!(fires.len(), n, "a fire ran twice: {execs:?}");
    }
    let nodes = c2.list_nodes(pb::ListNodesRequest {}).await.expect("nodes").into_inner().nodes;
    assert_eq!(nodes.iter().map(|n| n.node_id.as_str()).collect::<Vec<_>>(), vec!["n1", "n2"]);
}

/// With Redis down the node stays up and reports NOT_SERVING; when Redis is back it serves again.
#[tokio::test]
async fn redis_outage_is_not_serving_then_recovers() {
    let mut redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let node = TestNode::start(&b, "n1", &[]).await;
    redis.kill();
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    eventually(WAIT, "NOT_SERVING while Redis is down", || async {
        (node.health().await == Some(not_serving)).then_some(())
    })
    .await;
    let mut c = node.client().await;
    let e = c.get_job(pb::GetJobRequest { id: "x".into() }).await.expect_err("store down");
    assert_eq!(e.code(), Code::Unavailable);
    redis.restart();
    node.wait_serving().await;
    c.put_job(pb::PutJobRequest { job: Some(job("after", "* * * * * *", "noop", json!(null))) }).await.expect("put");
}

on_both_stores!(
    fires_every_second,
    pause_resume_delete,
    trigger_fires_once,
    failure_retries_and_alert,
    shell_timeout_kills_process_group,
    forbid_skips_overlap,
    forbid_runs_ending_just_before_the_next_instant_do_not_skip_it,
    invalid_input_names_the_field,
    a_jobs_history_is_capped_by_its_definition,
    a_spent_idempotency_key_is_refused_not_fired_again,
    list_jobs_paginates,
    watch_streams_changes,
    health_reflection_and_status,
    jobs_file_and_graceful_shutdown,
);

/// A node that was down longer than the misfire threshold records the gap once and fires the
/// latest missed instant (fire_once_now); nothing runs twice.
#[tokio::test]
async fn misfire_after_downtime_is_recorded_once() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let mut n1 = TestNode::start(&b, "n1", &["--misfire-threshold-ms", "1000"]).await;
    let mut c = n1.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job("m", "* * * * * *", "noop", json!(null))) }).await.expect("put");
    eventually(WAIT, "first fire", || {
        let mut c = c.clone();
        async move { (!executions(&mut c, "m").await.is_empty()).then_some(()) }
    })
    .await;
    n1.kill();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let n2 = TestNode::start(&b, "n2", &["--misfire-threshold-ms", "1000"]).await;
    let c = n2.client().await;
    let execs = eventually(WAIT, "a misfire record and fires after it", || {
        let mut c = c.clone();
        async move {
            let e = executions(&mut c, "m").await;
            let after = e.iter().filter(|e| e.node_id == "n2" && state(e) == S::Succeeded).count();
            (e.iter().any(|e| state(e) == S::Misfired) && after >= 2).then_some(e)
        }
    })
    .await;
    let misfired: Vec<&pb::Execution> = execs.iter().filter(|e| state(e) == S::Misfired).collect();
    let summaries: Vec<&&pb::Execution> =
        misfired.iter().filter(|e| e.error.starts_with("missed fires from")).collect();
    assert_eq!(summaries.len(), 1, "one summary record for the gap: {misfired:?}");
    // A fire n1 had claimed but not started when it was killed reaches its start deadline while
    // the lease changes hands: recorded as misfired too, never run late and never lost.
    for e in &misfired {
        let why = &e.error;
        assert!(why.starts_with("missed fires from") || why.starts_with("misfired: not started"), "{why}");
    }
    let mut fires: Vec<&str> = execs.iter().map(|e| e.fire_id.as_str()).collect();
    let n = fires.len();
    fires.sort();
    fires.dedup();
    assert_eq!(fires.len(), n, "a fire ran twice");
}

fn rota_cli(endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(args)
        .args(["--endpoint", endpoint])
        .output()
        .expect("run rota");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The CLI's output piped into a reader that closes early (`rota job list | head -1`): it ends
/// by SIGPIPE like any Unix tool, never with a panic (exit 101).
#[tokio::test]
async fn cli_output_into_a_closed_pipe_is_no_panic() {
    use std::os::unix::process::ExitStatusExt;
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    let ep = node.endpoint();
    for i in 0..50 {
        let (code, _, err) =
            rota_cli(&ep, &["job", "put", "--id", &format!("p{i}"), "--cron", "0 0 1 1 *", "--invoke", "noop"]);
        assert_eq!(code, 0, "{err}");
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["job", "list", "--endpoint", &ep])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rota");
    drop(child.stdout.take()); // the reader goes away before the first line is written
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert_eq!(out.status.signal(), Some(13), "ended by SIGPIPE: {:?} {err}", out.status);
}

/// The CLI: tables, JSON, refused calls and a wrong endpoint.
#[tokio::test]
async fn cli_tables_json_and_errors() {
    let node = TestNode::start(&Backend::Memory, "n1", &[]).await;
    let ep = node.addr.as_str();
    let (code, out, _) =
        rota_cli(ep, &["job", "put", "--id", "c1", "--cron", "* * * * * *", "--invoke", "sleep('10ms')"]);
    assert!(code == 0 && out.starts_with("created job c1\n") && out.contains("next_fire_time: 20"), "{out}");
    let (code, out, _) = rota_cli(ep, &["job", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ID") && out.contains("c1") && out.contains("sleep"), "{out}");
    let (code, out, _) = rota_cli(ep, &["job", "get", "c1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((code, v["id"].as_str(), v["handler"].as_str()), (0, Some("c1"), Some("sleep")));
    let (code, out, _) = rota_cli(ep, &["job", "trigger", "c1", "--key", "k", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((code, v["deduplicated"].as_bool()), (0, Some(false)));
    let (code, out, err) = rota_cli(ep, &["job", "put", "--id", "bad", "--cron", "0 0 0 32 * *", "--handler", "noop"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "error: InvalidArgument: cron: field 'day-of-month' out of range: 32 (expected 1-31)\n");
    let (code, _, err) = rota_cli(ep, &["job", "get", "nope"]);
    assert_eq!((code, err.as_str()), (4, "error: NotFound: job 'nope' not found\n"));
    eventually(WAIT, "executions listed", || async {
        let (code, out, _) = rota_cli(ep, &["exec", "list", "--job", "c1", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        (code == 0 && v["executions"].as_array().is_some_and(|a| a.len() >= 2)).then_some(())
    })
    .await;
    let (code, out, _) = rota_cli(ep, &["nodes"]);
    assert!(code == 0 && out.contains("n1") && out.contains("live"), "{out}");
    let dead = format!("127.0.0.1:{}", common::free_port());
    let (code, _, err) = rota_cli(&dead, &["status"]);
    assert_eq!(code, 3);
    assert!(err.starts_with(&format!("error: cannot reach rota at http://{dead}: Connection refused")), "{err}");
}

/// The shell handler runs only programs on the node's allowlist; a job cannot widen it.
#[tokio::test]
async fn shell_jobs_are_limited_to_the_nodes_allowlist() {
    let node = TestNode::start(&Backend::Memory, "n1", &["--enable-shell", "--shell-allow", "/bin/echo"]).await;
    let mut c = node.client().await;
    let ok = job("echo", "0 0 3 29 2 *", "shell", json!(["/bin/echo", "hi"]));
    c.put_job(pb::PutJobRequest { job: Some(ok) }).await.expect("allowed program");
    for (args, want) in [
        (json!(["/bin/rm", "-rf", "/tmp/x"]), "args: program '/bin/rm' is not in this node's shell allowlist"),
        (json!({"sh": "rm -rf /tmp/x"}), "args: program '/bin/sh' is not in this node's shell allowlist"),
        (json!(["echo", "hi"]), "args: program 'echo' must be an absolute path"),
    ] {
        let e =
            c.put_job(pb::PutJobRequest { job: Some(job("bad", "* * * * * *", "shell", args)) }).await.expect_err(want);
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(want), "{}", e.message());
    }
}

/// /metrics parses as Prometheus exposition and counts what happened; /healthz and /readyz follow
/// the node's state like grpc.health.v1 does.
#[tokio::test]
async fn metrics_and_http_health() {
    let mut redis = RedisServer::start();
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--metrics-listen", &listen]).await;
    let mut c = node.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job("m", "* * * * * *", "noop", json!(null))) }).await.expect("put");
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("http://{listen}{path}"));
        async move { http.get(url).send().await.ok() }
    };
    let samples = eventually(WAIT, "metrics with fires", || async {
        let body = get("/metrics").await?.text().await.ok()?;
        let lines = body.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
        let fired = scrape.samples.iter().any(|s| {
            s.metric == "rota_fires_total" && s.labels.get("outcome") == Some("succeeded") && value(&s.value) >= 2.0
        });
        fired.then_some(scrape.samples)
    })
    .await;
    let find = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| value(&s.value))
            .unwrap_or_else(|| panic!("{name} {label:?} missing"))
    };
    assert_eq!(find("rota_master", None), 1.0);
    assert!(find("rota_epoch", None) > 0.0);
    assert!(find("rota_dispatch_total", Some(("path", "local"))) >= 2.0);
    assert!(find("rota_fire_delay_seconds_count", None) >= 2.0);
    assert!(find("rota_store_round_trip_seconds_count", None) >= 1.0);
    assert_eq!(find("rota_queue_depth", Some(("node", "n1"))), 0.0);
    for s in &samples {
        assert!(!s.labels.iter().any(|(k, _)| *k == "job"), "no job-id labels: {s:?}");
    }
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
    redis.kill();
    eventually(WAIT, "/readyz 503 while Redis is down", || async {
        (get("/readyz").await?.status() == 503).then_some(())
    })
    .await;
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200, "alive all the same");
}

fn value(v: &prometheus_parse::Value) -> f64 {
    match v {
        prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Untyped(x) => *x,
        prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => f64::NAN,
    }
}

/// Tokens with roles on the API, the cluster secret between nodes, health and reflection open,
/// and no token in any log.
#[tokio::test]
async fn tokens_roles_and_cluster_secret() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens.toml");
    let (viewer, operator, admin, secret) = ("view-tok-1f3a", "oper-tok-9c2e", "admin-tok-77d0", "cluster-s3cret-x");
    let mut toml = String::new();
    for (name, role, tok) in [("dash", "viewer", viewer), ("ops", "operator", operator), ("ci", "admin", admin)] {
        let h = rota::api::auth::hex(&rota::api::auth::hash(tok));
        toml.push_str(&format!("[[token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{h}\"\n"));
    }
    std::fs::write(&file, toml).expect("write");
    let path = file.to_str().expect("utf8");
    let env = [("ROTA_CLUSTER_SECRET", secret)];
    let flags = ["--tokens-file", path, "--workers", "1", "--load-threshold", "0.5"];
    let n1 = TestNode::start_env(&b, "n1", &flags, &env).await;
    let n2 = TestNode::start_env(&b, "n2", &flags, &env).await;
    let call = |tok: &str| {
        let mut r = tonic::Request::new(pb::ListJobsRequest::default());
        r.metadata_mut().insert("authorization", format!("Bearer {tok}").parse().expect("header"));
        r
    };
    let mut c = n1.client().await;
    let e = c.list_jobs(pb::ListJobsRequest::default()).await.expect_err("no token");
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = c.list_jobs(call("wrong")).await.expect_err("bad token");
    assert_eq!(e.code(), Code::Unauthenticated);
    c.list_jobs(call(viewer)).await.expect("viewer reads");
    let put = |tok: &str, j: pb::Job| {
        let mut r = tonic::Request::new(pb::PutJobRequest { job: Some(j) });
        r.metadata_mut().insert("authorization", format!("Bearer {tok}").parse().expect("header"));
        r
    };
    let e = c.put_job(put(viewer, job("t", "* * * * * *", "sleep", json!(["1500ms"])))).await.expect_err("viewer");
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("needs role 'admin'"), "{}", e.message());
    let e = c.put_job(put(operator, job("t", "* * * * * *", "sleep", json!(["1500ms"])))).await.expect_err("op");
    assert_eq!(e.code(), Code::PermissionDenied);
    for i in 0..3 {
        c.put_job(put(admin, job(&format!("t{i}"), "* * * * * *", "sleep", json!(["1500ms"]))))
            .await
            .expect("admin puts");
    }
    let mut t = tonic::Request::new(pb::TriggerJobRequest {
        id: "t0".into(),
        idempotency_key: String::new(),
        ..Default::default()
    });
    t.metadata_mut().insert("authorization", format!("Bearer {operator}").parse().expect("header"));
    c.trigger_job(t).await.expect("operator triggers");
    // A fire's own arguments change what the job runs: an admin's call, not an operator's.
    let with_args = |tok: &str| {
        let mut t = tonic::Request::new(pb::TriggerJobRequest {
            id: "t0".into(),
            args: Some(rota::pb::json_to_pb(&json!(["10ms"]))),
            dry_run: true,
            ..Default::default()
        });
        t.metadata_mut().insert("authorization", format!("Bearer {tok}").parse().expect("header"));
        t
    };
    let e = c.trigger_job(with_args(operator)).await.expect_err("operator with args");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("needs role 'admin' (this token has 'operator')"), "{e:?}");
    c.trigger_job(with_args(admin)).await.expect("admin triggers with args");
    // Health needs no token.
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(n1.health().await, Some(serving));
    // Peers reach each other with the cluster secret: the busy master's fires run on n2.
    eventually(WAIT, "fires dispatched to n2", || async {
        let mut r = tonic::Request::new(pb::ListExecutionsRequest { page_size: 100, ..Default::default() });
        r.metadata_mut().insert("authorization", format!("Bearer {viewer}").parse().expect("header"));
        let execs = n1.client().await.list_executions(r).await.ok()?.into_inner().executions;
        execs.iter().any(|e| e.node_id == "n2" && e.state == pb::ExecutionState::Succeeded as i32).then_some(())
    })
    .await;
    // A peer call without the secret is refused.
    let mut nc = pb::node_service_client::NodeServiceClient::new(n1.channel().await);
    let mut r = tonic::Request::new(pb::ReportLoadRequest {
        node_id: "x".into(),
        load: Some(pb::NodeLoad { active_workers: 0, max_workers: 1, queue_depth: 0 }),
        measured_at: None,
    });
    r.metadata_mut().insert("authorization", format!("Bearer {admin}").parse().expect("header"));
    assert_eq!(nc.report_load(r).await.expect_err("admin is not a node").code(), Code::PermissionDenied);
    // The CLI takes the token from ROTA_TOKEN.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["job", "list", "--endpoint", &n1.addr])
        .env("ROTA_TOKEN", viewer)
        .output()
        .expect("cli");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("t0"));
    for n in [&n1, &n2] {
        let log = n.log();
        for tok in [viewer, operator, admin, secret] {
            assert!(!log.contains(tok), "a token appears in {}'s log", n.node_id);
        }
    }
}

/// A Redis with a password and an ACL user: the node works with the credentials in the URL, does
/// not with wrong ones, and never shows the password (logs, cluster status).
#[tokio::test]
async fn redis_with_acl_user_and_password() {
    let pass = "redis-pw-5e1f";
    let secret = format!(">{pass}");
    let args = ["--requirepass", "admin-pw", "--user", "rota", "on", &secret, "~*", "&*", "+@all"];
    let redis = RedisServer::start_with(&args, &format!("rota:{pass}@"));
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let mut c = node.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job("acl", "* * * * * *", "noop", json!(null))) }).await.expect("put");
    let st = c.get_cluster_status(pb::GetClusterStatusRequest {}).await.expect("status").into_inner();
    assert_eq!(st.store, "redis");
    assert!(!format!("{st:?}").contains(pass), "password in GetClusterStatus");
    let wrong = format!("redis://rota:nope@127.0.0.1:{}", redis.port);
    let bad = TestNode::spawn(&Backend::Redis(wrong), "n2", &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    assert_eq!(bad.health().await, Some(not_serving), "wrong credentials: not serving");
    for n in [&node, &bad] {
        let log = n.log();
        assert!(!log.contains(pass) && !log.contains(":nope@"), "a Redis password appears in {}'s log", n.node_id);
    }
}
