//! Every RPC with malformed input: a precise INVALID_ARGUMENT naming the field (or NOT_FOUND for a
//! well-formed id that does not exist), RESOURCE_EXHAUSTED for an oversized message, and a node that
//! keeps serving afterwards. A key of the wrong type in Redis does not crash a node either.
mod common;

use common::{Backend, RedisServer, TestNode};
use rota::pb;
use tonic::Code;

fn check<T: std::fmt::Debug>(what: &str, r: Result<tonic::Response<T>, tonic::Status>, code: Code, prefix: &str) {
    let e = r.expect_err(what);
    assert_eq!(e.code(), code, "{what}: {e:?}");
    assert!(e.message().starts_with(prefix), "{what}: {:?} does not start with {prefix:?}", e.message());
}

#[tokio::test]
async fn every_rpc_refuses_malformed_input_precisely() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let mut s = node.client().await;
    let mut n = pb::node_service_client::NodeServiceClient::new(node.channel().await);
    let bad_id = "bad id!";
    let long_id = "x".repeat(200);
    use Code::{InvalidArgument as IA, NotFound as NF};

    check("PutJob without job", s.put_job(pb::PutJobRequest { job: None }).await, IA, "job: is required");
    check("GetJob bad id", s.get_job(pb::GetJobRequest { id: bad_id.into() }).await, IA, "id: 'bad id!' has ' '");
    check("GetJob long id", s.get_job(pb::GetJobRequest { id: long_id.clone() }).await, IA, "id: longer than 128");
    check("GetJob unknown", s.get_job(pb::GetJobRequest { id: "nope".into() }).await, NF, "job 'nope' not found");
    check(
        "ListJobs page_size",
        s.list_jobs(pb::ListJobsRequest { page_size: 1001, page_token: String::new() }).await,
        IA,
        "page_size:",
    );
    check(
        "ListJobs token",
        s.list_jobs(pb::ListJobsRequest { page_size: 1, page_token: "!!".into() }).await,
        IA,
        "page_token:",
    );
    check("DeleteJob bad id", s.delete_job(pb::DeleteJobRequest { id: String::new() }).await, IA, "id: is required");
    check("DeleteJob unknown", s.delete_job(pb::DeleteJobRequest { id: "nope".into() }).await, NF, "job 'nope'");
    check(
        "PauseJob bad id",
        s.pause_job(pb::PauseJobRequest { id: bad_id.into(), ..Default::default() }).await,
        IA,
        "id:",
    );
    check(
        "PauseJob unknown",
        s.pause_job(pb::PauseJobRequest { id: "nope".into(), ..Default::default() }).await,
        NF,
        "job 'nope'",
    );
    check("ResumeJob bad id", s.resume_job(pb::ResumeJobRequest { id: long_id.clone() }).await, IA, "id:");
    check("ResumeJob unknown", s.resume_job(pb::ResumeJobRequest { id: "nope".into() }).await, NF, "job 'nope'");
    check(
        "TriggerJob bad key",
        s.trigger_job(pb::TriggerJobRequest {
            id: "nope".into(),
            idempotency_key: "k".repeat(129),
            ..Default::default()
        })
        .await,
        IA,
        "idempotency_key:",
    );
    check(
        "TriggerJob unknown",
        s.trigger_job(pb::TriggerJobRequest {
            id: "nope".into(),
            idempotency_key: String::new(),
            ..Default::default()
        })
        .await,
        NF,
        "job 'nope'",
    );
    let le = |job_id: &str, state: i32, page_size: u32, page_token: &str| pb::ListExecutionsRequest {
        job_id: job_id.into(),
        state,
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    };
    check("ListExecutions job_id", s.list_executions(le(bad_id, 0, 0, "")).await, IA, "job_id:");
    check("ListExecutions state", s.list_executions(le("", 42, 0, "")).await, IA, "state: unknown value 42");
    check("ListExecutions page_size", s.list_executions(le("", 0, 5000, "")).await, IA, "page_size:");
    check("ListExecutions token", s.list_executions(le("", 0, 0, "not-a-uuid")).await, IA, "page_token:");
    check("GetExecution bad id", s.get_execution(pb::GetExecutionRequest { id: "x".into() }).await, IA, "id:");
    check(
        "GetExecution unknown",
        s.get_execution(pb::GetExecutionRequest { id: "01a21e00-0000-7000-8000-000000000000".into() }).await,
        NF,
        "execution",
    );
    let w = s.watch_executions(pb::WatchExecutionsRequest { job_id: bad_id.into() }).await;
    check("WatchExecutions job_id", w, IA, "job_id:");
    check(
        "ReportLoad node_id",
        n.report_load(pb::ReportLoadRequest { node_id: String::new(), load: None, measured_at: None }).await,
        IA,
        "node_id:",
    );
    check(
        "ReportLoad load",
        n.report_load(pb::ReportLoadRequest { node_id: "n9".into(), load: None, measured_at: None }).await,
        IA,
        "load: is required",
    );
    let st = |job_id: &str, fire_id: &str, epoch: u64| pb::SubmitTaskRequest {
        job_id: job_id.into(),
        fire_id: fire_id.into(),
        epoch,
        ..Default::default()
    };
    check("SubmitTask job_id", n.submit_task(st(bad_id, "x@1", 1)).await, IA, "job_id:");
    check("SubmitTask fire_id", n.submit_task(st("j", "k@1", 1)).await, IA, "fire_id:");
    check("SubmitTask epoch", n.submit_task(st("j", "j@1", 0)).await, IA, "epoch:");
    let batch = |epoch: u64, tasks: Vec<pb::SubmitTaskRequest>| pb::SubmitTasksRequest { epoch, tasks };
    check("SubmitTasks epoch", n.submit_tasks(batch(0, vec![st("j", "j@1", 0)])).await, IA, "epoch:");
    check("SubmitTasks epoch past 2^53", n.submit_tasks(batch(u64::MAX, vec![st("j", "j@1", 0)])).await, IA, "epoch:");
    check("SubmitTask epoch past 2^53", n.submit_task(st("j", "j@1", 1 << 53)).await, IA, "epoch:");
    check("SubmitTasks none", n.submit_tasks(batch(1, vec![])).await, IA, "tasks: between 1 and 1000");
    let many = (0..1001).map(|i| st("j", &format!("j@{i}"), 0)).collect();
    check("SubmitTasks too many", n.submit_tasks(batch(1, many)).await, IA, "tasks: between 1 and 1000");
    let bad_second = vec![st("j", "j@1", 0), st("j", "k@1", 0)];
    check("SubmitTasks fire_id", n.submit_tasks(batch(1, bad_second)).await, IA, "tasks[1].fire_id:");
    let mixed = vec![st("j", "j@1", 1), st("j", "j@2", 2)];
    check("SubmitTasks mixed epochs", n.submit_tasks(batch(1, mixed)).await, IA, "tasks[1].epoch:");
    // Oversized: a job whose arguments exceed the request limit.
    let mut big = common::job("big", "* * * * * *", "noop", serde_json::json!(null));
    big.description = "d".repeat(2 * 1024 * 1024);
    let e = s.put_job(pb::PutJobRequest { job: Some(big) }).await.expect_err("oversized");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // Every job field's limits.
    let base = || common::job("ok", "* * * * * *", "noop", serde_json::json!(null));
    let too_many_labels: std::collections::HashMap<String, String> =
        (0..33).map(|i| (format!("k{i}"), "v".into())).collect();
    let mut args_big = base();
    args_big.args = Some(rota::api::convert::json_to_pb(&serde_json::json!(["x".repeat(70 * 1024)])));
    let cases: Vec<(pb::Job, &str)> = vec![
        (pb::Job { description: "d".repeat(1025), ..base() }, "description:"),
        (pb::Job { labels: too_many_labels, ..base() }, "labels: more than 32"),
        (pb::Job { misfire: 9, ..base() }, "misfire: unknown value 9"),
        (pb::Job { recovery: 9, ..base() }, "recovery: unknown value 9"),
        (pb::Job { timeout: Some(prost_types::Duration { seconds: 9_000_000, nanos: 0 }), ..base() }, "timeout:"),
        (pb::Job { retry_backoff: Some(prost_types::Duration { seconds: 0, nanos: -5 }), ..base() }, "retry_backoff:"),
        (
            pb::Job { schedule: Some(pb::job::Schedule::Cron("61 * * * * *".into())), ..base() },
            "cron: field 'second' out of range: 61",
        ),
        (
            pb::Job { schedule: Some(pb::job::Schedule::Cron("* * * * JANUARY *".into())), ..base() },
            "cron: field 'month'",
        ),
        (pb::Job { schedule: Some(pb::job::Schedule::Cron(String::new())), ..base() }, "cron:"),
        (args_big, "args: larger than"),
        (pb::Job { id: "bad id".into(), ..base() }, "id: 'bad id' has ' '"),
        (pb::Job { id: "x".repeat(129), ..base() }, "id: longer than 128"),
        (pb::Job { time_zone: "Mars/Olympus_Mons".into(), ..base() }, "time_zone:"),
        (pb::Job { handler: "no pe".into(), ..base() }, "handler: 'no pe' is not a handler name"),
        (pb::Job { handler: "noop.".repeat(30), ..base() }, "handler: 'noop.noop."),
        (pb::Job { handler: "sleep".into(), ..base() }, "args:"),
        (pb::Job { handler: String::new(), args: None, invoke: "sleep('2s'".into(), ..base() }, "invoke:"),
        (
            pb::Job { schedule: Some(pb::job::Schedule::Cron("0 0 0 31 2 *".into())), ..base() },
            "cron: '0 0 0 31 2 *' never fires after now",
        ),
        (
            pb::Job { schedule: Some(pb::job::Schedule::Cron("0 0 0 1 1 * 2020".into())), ..base() },
            "cron: '0 0 0 1 1 * 2020' never fires",
        ),
    ];
    for (j, want) in cases {
        let r = s.put_job(pb::PutJobRequest { job: Some(j) }).await;
        check(want, r, IA, want);
    }
    // Still serving, and nothing was stored by any refused call.
    node.wait_serving().await;
    assert!(s.list_jobs(pb::ListJobsRequest::default()).await.expect("list").into_inner().jobs.is_empty());
}

/// Someone wrote keys of the wrong type where rota keeps its state: calls touching them fail
/// cleanly (no panic), the node stays up and keeps serving other requests.
#[tokio::test]
async fn wrong_type_keys_in_redis_do_not_crash_a_node() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let mut s = node.client().await;
    let mut r = ::redis::Client::open(redis.url()).and_then(|c| c.get_connection()).expect("redis");
    let _: () = ::redis::cmd("SET").arg("{rota:default:0}:job:clobbered").arg("not a hash").query(&mut r).expect("set");
    let _: () = ::redis::cmd("ZADD").arg("{rota:default:0}:jobs").arg(0).arg("clobbered").query(&mut r).expect("zadd");
    let _: () = ::redis::cmd("HSET")
        .arg("{rota:default:0}:job:garbled")
        .arg("spec")
        .arg("{not json")
        .query(&mut r)
        .expect("hset");
    let e = s.get_job(pb::GetJobRequest { id: "clobbered".into() }).await.expect_err("wrong type");
    assert!(matches!(e.code(), Code::Unavailable | Code::Internal), "{e:?}");
    let e = s.get_job(pb::GetJobRequest { id: "garbled".into() }).await.expect_err("corrupt");
    assert_eq!((e.code(), e.message()), (Code::Internal, "internal error"));
    s.put_job(pb::PutJobRequest { job: Some(common::job("fine", "* * * * * *", "noop", serde_json::json!(null))) })
        .await
        .expect("other jobs still work");
    node.wait_serving().await;
    assert!(node.log().contains("internal error"), "the corrupt record is logged at the edge");
}

/// Garbage in a node's durable queue (another writer, a newer version, a truncated or huge entry):
/// every bad entry is moved to the dead-letter list with its reason, counted and alerted, and the
/// node goes on draining its queue: a real fire queued behind the garbage still runs.
#[tokio::test]
async fn bad_queue_entries_are_set_aside_and_the_node_keeps_draining() {
    let redis = RedisServer::start();
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--metrics-listen", &metrics]).await;
    let mut r = ::redis::Client::open(redis.url()).and_then(|c| c.get_connection()).expect("redis");
    let huge = "j@".to_string() + &"9".repeat(2 * 1024 * 1024);
    let bad: [(&str, &str); 6] = [
        ("garbage", "malformed entry: not '<job>@<instant>'"),
        (r#"{"v":2,"fire":"j@1"}"#, "malformed entry"),
        ("bad id!@123", "malformed entry: the job id part"),
        ("j@m:", "malformed entry: the instant part"),
        (&huge, "oversized entry: 2097154 bytes"),
        ("nojob@1795000000000", "no such fire"),
    ];
    for (entry, _) in &bad {
        let _: () = ::redis::cmd("LPUSH").arg("{rota:default:0}:q:n1").arg(*entry).query(&mut r).expect("lpush");
    }
    // A real fire behind the garbage, and the schedule going on.
    let mut c = node.client().await;
    c.put_job(pb::PutJobRequest { job: Some(common::job("after", "* * * * * *", "noop", serde_json::json!(null))) })
        .await
        .expect("put");
    let dlq: Vec<String> = common::eventually(std::time::Duration::from_secs(15), "all bad entries set aside", || {
        let mut r = ::redis::Client::open(redis.url()).and_then(|c| c.get_connection()).expect("redis");
        async move {
            let dlq: Vec<String> =
                ::redis::cmd("LRANGE").arg("{rota:default:0}:dlq").arg(0).arg(-1).query(&mut r).ok()?;
            (dlq.len() == bad.len()).then_some(dlq)
        }
    })
    .await;
    for (entry, reason) in &bad {
        let kept = dlq.iter().find_map(|j| {
            let v: serde_json::Value = serde_json::from_str(j).expect("dlq entries are JSON");
            (v["entry"] == *entry).then_some(v)
        });
        let kept = kept.unwrap_or_else(|| panic!("entry {:.40} not kept whole in the dead-letter list", entry));
        assert!(kept["reason"].as_str().is_some_and(|x| x.starts_with(reason)), "{:.200}", kept.to_string());
        assert_eq!(kept["node"], "n1");
    }
    // Only the real job's fires may be there: one accepted ahead of its instant waits in the
    // processing list for up to the fire-ahead window (300 ms).
    let (q, p): (Vec<String>, Vec<String>) = ::redis::pipe()
        .lrange("{rota:default:0}:q:n1", 0, -1)
        .lrange("{rota:default:0}:p:n1", 0, -1)
        .query(&mut r)
        .expect("lists");
    let left: Vec<&String> = q.iter().chain(&p).filter(|e| !e.starts_with("after@")).collect();
    assert!(left.is_empty(), "bad entries left in the queue or processing list: {left:.80?}");
    common::eventually(std::time::Duration::from_secs(10), "the job still fires", || {
        let mut c = c.clone();
        async move { (common::executions(&mut c, "after").await.len() >= 2).then_some(()) }
    })
    .await;
    let body = reqwest::get(format!("http://{metrics}/metrics")).await.expect("scrape").text().await.expect("body");
    assert!(body.lines().any(|l| l == "rota_queue_dead_letters_total 6"), "{body}");
    let log = node.log();
    assert_eq!(log.matches("alert=\"queue_entry_dead_lettered\"").count(), 6, "one alert per entry");
    assert!(!log.contains(&"9".repeat(1000)), "a huge entry is shortened in the log");
    node.wait_serving().await;
}

/// Peak resident memory of a process, in bytes (VmHWM).
fn peak_rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).expect("VmHWM");
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().expect("number") * 1024
}

/// A flood of TriggerJob calls at a node with one worker: manual fires beyond the node's bound on
/// waiting fires are refused with RESOURCE_EXHAUSTED (saying why), the rest are accepted, and the
/// node's memory stays bounded and it keeps serving.
#[tokio::test]
async fn a_trigger_flood_is_refused_beyond_a_bound() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--workers", "1"]).await;
    let mut c = node.client().await;
    c.put_job(pb::PutJobRequest { job: Some(common::job("slow", "0 0 3 29 2 *", "sleep", serde_json::json!(["1h"]))) })
        .await
        .expect("put");
    // 15 connections with 200 calls each: one HTTP/2 connection carries at most 200 concurrent
    // streams by default, and this test is about the node's bound, not a client's.
    let mut channels = Vec::new();
    for _ in 0..15 {
        channels.push(node.client().await);
    }
    let calls = (0..3000).map(|i| {
        let mut c = channels[i % 15].clone();
        tokio::spawn(async move {
            c.trigger_job(pb::TriggerJobRequest {
                id: "slow".into(),
                idempotency_key: String::new(),
                ..Default::default()
            })
            .await
        })
    });
    let mut ok = 0;
    let mut refused = 0;
    for r in futures_util::future::join_all(calls).await {
        match r.expect("task") {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(e.message().contains("fires waiting for 1 workers (at most 1024); retry later"), "{e:?}");
                refused += 1;
            }
        }
    }
    // The bound (1024 for one worker) counts fires waiting and calls on their way, so a burst
    // cannot pass it together; the fire taken by the worker may free one place.
    assert!((1024..=1025).contains(&ok), "accepted {ok}");
    assert_eq!(ok + refused, 3000);
    node.wait_serving().await;
    let peak = peak_rss(node.pid());
    assert!(peak < 200 * 1024 * 1024, "peak RSS {peak} bytes");
}

/// A handler that never returns is cut off by the job's timeout, and the worker it held is free
/// again: with one worker, fire after fire times out rather than the node stalling.
#[tokio::test]
async fn a_handler_that_never_returns_is_timed_out_and_frees_its_worker() {
    let node = TestNode::start(&Backend::Memory, "n1", &["--workers", "1"]).await;
    let mut c = node.client().await;
    let mut j = common::job("stuck", "* * * * * *", "sleep", serde_json::json!(["1h"]));
    j.timeout = Some(prost_types::Duration { seconds: 0, nanos: 300_000_000 });
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    common::eventually(std::time::Duration::from_secs(15), "three timed-out fires", || {
        let mut c = c.clone();
        async move {
            let timed_out = common::executions(&mut c, "stuck")
                .await
                .iter()
                .filter(|e| common::state(e) == pb::ExecutionState::TimedOut)
                .count();
            (timed_out >= 3).then_some(())
        }
    })
    .await;
}

/// Handlers that produce a gigabyte: a shell command printing 1 GiB and an HTTP endpoint sending a
/// 1 GiB body. Both runs succeed with their output capped, and the node never holds the gigabyte.
#[tokio::test]
async fn a_gigabyte_of_output_is_capped_not_held() {
    // An HTTP server that announces 1 GiB and streams zeros until the client hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'z'; 64 * 1024];
                for _ in 0..(1 << 14) {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    // The test server is on loopback, which http jobs reach only when http_allow lists it.
    let flags = ["--enable-shell", "--shell-allow", "/bin/sh", "--http-allow", "127.0.0.1"];
    let node = TestNode::start(&Backend::Memory, "n1", &flags).await;
    let mut c = node.client().await;
    let never = "0 0 3 29 2 *";
    let shell =
        common::job("loud", never, "shell", serde_json::json!({"sh": "head -c 1073741824 /dev/zero | tr '\\0' x"}));
    let http = common::job("big", never, "http", serde_json::json!([format!("http://{addr}/")]));
    for j in [shell, http] {
        c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    }
    for id in ["loud", "big"] {
        c.trigger_job(pb::TriggerJobRequest { id: id.into(), idempotency_key: String::new(), ..Default::default() })
            .await
            .expect("trigger");
    }
    for id in ["loud", "big"] {
        let e = common::eventually(std::time::Duration::from_secs(60), "run finished", || {
            let mut c = c.clone();
            async move {
                common::executions(&mut c, id).await.into_iter().find(|e| {
                    common::state(e) != pb::ExecutionState::Running && common::state(e) != pb::ExecutionState::Pending
                })
            }
        })
        .await;
        assert_eq!(common::state(&e), pb::ExecutionState::Succeeded, "{id}: {e:?}");
        assert!(!e.output.is_empty() && e.output.len() <= 2 * 64 * 1024 + 64, "{id}: output {} bytes", e.output.len());
    }
    let peak = peak_rss(node.pid());
    assert!(peak < 200 * 1024 * 1024, "peak RSS {peak} bytes: the gigabyte was held");
}

/// Shell and http arguments that would get past the node's limits are refused at PutJob with
/// INVALID_ARGUMENT naming the part of `args` that is wrong, and nothing is stored: loader and
/// interpreter variables in a shell job's env (LD_PRELOAD runs its library inside any allowlisted
/// program), NUL bytes, methods outside the HTTP list (`SET` against Redis runs as a command),
/// header injection, and http destinations on loopback or link-local or on the node's own Redis,
/// gRPC and metrics ports, which stay refused even when loopback is listed in http_allow.
#[tokio::test]
async fn shell_env_and_http_destinations_are_refused_at_put() {
    let redis = RedisServer::start();
    let rp = redis.port;
    let (m1, m2) = (common::free_port(), common::free_port());
    let (metrics1, metrics2) = (format!("127.0.0.1:{m1}"), format!("127.0.0.1:{m2}"));
    let shell = ["--enable-shell", "--shell-allow", "/bin/echo"];
    let open =
        TestNode::start(&Backend::Redis(redis.url()), "n1", &[&shell[..], &["--metrics-listen", &metrics1]].concat())
            .await;
    let listed_flags = [&shell[..], &["--metrics-listen", &metrics2, "--http-allow", "127.0.0.0/8,::1"]].concat();
    let listed = TestNode::start(&Backend::Redis(redis.url()), "n2", &listed_flags).await;
    let shell_env = |k: &str, v: &str| serde_json::json!({"argv": ["/bin/echo", "hi"], "env": {k: v}});
    let mut cases: Vec<(&str, serde_json::Value, String)> = vec![
        ("shell", shell_env("LD_PRELOAD", "/tmp/evil.so"), "args.env.LD_PRELOAD: ".into()),
        ("shell", shell_env("PATH", "/tmp"), "args.env.PATH: ".into()),
        ("shell", shell_env("BASH_ENV", "/tmp/x"), "args.env.BASH_ENV: ".into()),
        ("shell", shell_env("PYTHONPATH", "/tmp"), "args.env.PYTHONPATH: ".into()),
        ("shell", shell_env("GLIBC_TUNABLES", "x"), "args.env.GLIBC_TUNABLES: ".into()),
        ("shell", shell_env("ROTA_JOB_ID", "x"), "args.env.ROTA_JOB_ID: ".into()),
        ("shell", shell_env("A=B", "x"), "args.env.A=B: ".into()),
        ("shell", shell_env("K", "v\u{0}"), "args.env.K: ".into()),
        ("shell", serde_json::json!(["/bin/echo", "a\u{0}b"]), "args[1]: ".into()),
        ("shell", serde_json::json!({"argv": ["/bin/echo"], "cwd": "/tmp\u{0}"}), "args.cwd: ".into()),
        (
            "http",
            serde_json::json!({"method": "SET", "url": format!("http://127.0.0.1:{rp}/ssrf-key")}),
            "args.method: ".into(),
        ),
        ("http", serde_json::json!(["FLUSHALL", "http://h.example/"]), "args[0]: ".into()),
        (
            "http",
            serde_json::json!({"url": "http://h.example/", "headers": {"X-A": "1\r\nX-B: 2"}}),
            "args.headers.X-A: ".into(),
        ),
        (
            "http",
            serde_json::json!({"url": "http://h.example/", "headers": {"X-A": "1\u{0}"}}),
            "args.headers.X-A: ".into(),
        ),
    ];
    // The node's own Redis port on any local spelling: refused by both nodes, although the second
    // lists loopback.
    for url in [
        format!("http://127.0.0.1:{rp}/ssrf-key"),
        format!("http://[::ffff:127.0.0.1]:{rp}/ssrf-key"),
        format!("http://0.0.0.0:{rp}/"),
    ] {
        cases.push(("http", serde_json::json!({"method": "POST", "url": url}), "args.url: ".into()));
    }
    let port = |n: &TestNode| n.addr.rsplit(':').next().expect("port").to_string();
    let own = |n: &TestNode, metrics: u16| {
        [format!("http://127.0.0.1:{}/", port(n)), format!("http://127.0.0.1:{metrics}/metrics")]
            .map(|u| ("http", serde_json::json!([u]), "args[0]: ".to_string()))
    };
    // Loopback and link-local without http_allow.
    let mut open_cases = cases.clone();
    open_cases.extend(own(&open, m1));
    for url in ["http://169.254.169.254/latest/meta-data/", "http://[::1]:8080/", "http://127.0.0.1:8080/"] {
        open_cases.push(("http", serde_json::json!([url]), "args[0]: ".into()));
    }
    put_refused(&open, open_cases).await;
    let mut listed_cases = cases;
    listed_cases.extend(own(&listed, m2));
    listed_cases.push(("http", serde_json::json!(["http://169.254.169.254/"]), "args[0]: ".into()));
    put_refused(&listed, listed_cases).await;
    // Nothing stored, and nothing reached Redis.
    let mut c = open.client().await;
    assert!(c.list_jobs(pb::ListJobsRequest::default()).await.expect("list").into_inner().jobs.is_empty());
    let mut r = ::redis::Client::open(redis.url()).and_then(|c| c.get_connection()).expect("redis");
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*ssrf-key*").query(&mut r).expect("keys");
    assert!(keys.is_empty(), "{keys:?}");
    open.wait_serving().await;
    listed.wait_serving().await;
}

/// Names are resolved at run time and every address is checked before the connection: a job whose
/// host name resolves to loopback passes PutJob (names are not resolved there) and its execution
/// fails with the reason; with loopback listed in http_allow it runs, except against the node's
/// own Redis port, which no key reaches.
#[tokio::test]
async fn http_destinations_are_checked_again_after_dns() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            });
        }
    });
    let redis = RedisServer::start();
    let open = TestNode::start(&Backend::Memory, "n1", &[]).await;
    let listed = TestNode::start(&Backend::Redis(redis.url()), "n2", &["--http-allow", "127.0.0.1"]).await;
    let e = run(&open, "loop", serde_json::json!([format!("http://localhost:{port}/hook?token=secret")])).await;
    assert_eq!(common::state(&e), pb::ExecutionState::Failed, "{e:?}");
    assert!(e.error.contains(&format!("localhost:{port}")) && e.error.contains("loopback"), "{}", e.error);
    assert!(!e.error.contains("secret"), "{}", e.error);
    let e = run(&listed, "ok", serde_json::json!([format!("http://localhost:{port}/")])).await;
    assert_eq!((common::state(&e), e.output.as_str()), (pb::ExecutionState::Succeeded, "ok"), "{e:?}");
    let ssrf =
        serde_json::json!({"method": "PUT", "url": format!("http://localhost:{}/ssrf-key", redis.port), "body": "x"});
    let e = run(&listed, "redis-put", ssrf).await;
    assert_eq!(common::state(&e), pb::ExecutionState::Failed, "{e:?}");
    assert!(e.error.contains("Redis"), "{}", e.error);
    let mut r = ::redis::Client::open(redis.url()).and_then(|c| c.get_connection()).expect("redis");
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*ssrf-key*").query(&mut r).expect("keys");
    assert!(keys.is_empty(), "{keys:?}");
}

/// The child of a shell job gets the node's environment minus the node's own ROTA_* settings
/// (ROTA_CLUSTER_SECRET, a ROTA_REDIS URL with its password), plus the job's env and the fire's
/// ROTA_* context: a job printing its environment learns no secret of the node.
#[tokio::test]
async fn a_shell_child_does_not_inherit_the_nodes_settings() {
    let env = [("ROTA_CLUSTER_SECRET", "s3cret-of-the-node"), ("ROTA_SHUTDOWN_GRACE_MS", "1000")];
    let node =
        TestNode::start_env(&Backend::Memory, "n1", &["--enable-shell", "--shell-allow", "/usr/bin/env"], &env).await;
    let mut c = node.client().await;
    let j = common::job(
        "env",
        "0 0 3 29 2 *",
        "shell",
        serde_json::json!({"argv": ["/usr/bin/env"], "env": {"FOO": "bar"}}),
    );
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    c.trigger_job(pb::TriggerJobRequest { id: "env".into(), idempotency_key: String::new(), ..Default::default() })
        .await
        .expect("trigger");
    let e = common::eventually(std::time::Duration::from_secs(20), "run finished", || {
        let mut c = c.clone();
        async move {
            common::executions(&mut c, "env")
                .await
                .into_iter()
                .find(|e| common::state(e) == pb::ExecutionState::Succeeded)
        }
    })
    .await;
    assert!(!e.output.contains("s3cret"), "{}", e.output);
    assert!(!e.output.contains("ROTA_SHUTDOWN_GRACE_MS"), "{}", e.output);
    assert!(e.output.lines().any(|l| l == "FOO=bar"), "{}", e.output);
    assert!(e.output.lines().any(|l| l == "ROTA_JOB_ID=env"), "{}", e.output);
    assert!(e.output.lines().any(|l| l.starts_with("PATH=")), "the node's PATH is kept: {}", e.output);
}

/// Puts each job and checks it is refused with INVALID_ARGUMENT starting with the given prefix.
async fn put_refused(node: &TestNode, cases: Vec<(&str, serde_json::Value, String)>) {
    let mut c = node.client().await;
    for (handler, args, want) in cases {
        let what = format!("{handler} {args} on {}", node.node_id);
        let r = c.put_job(pb::PutJobRequest { job: Some(common::job("bad", "0 0 3 29 2 *", handler, args)) }).await;
        check(&what, r, Code::InvalidArgument, &want);
    }
}

/// Puts an http job that never fires by itself, triggers it, and returns its finished execution.
async fn run(node: &TestNode, id: &str, args: serde_json::Value) -> pb::Execution {
    let mut c = node.client().await;
    c.put_job(pb::PutJobRequest { job: Some(common::job(id, "0 0 3 29 2 *", "http", args)) }).await.expect("put");
    c.trigger_job(pb::TriggerJobRequest { id: id.into(), idempotency_key: String::new(), ..Default::default() })
        .await
        .expect("trigger");
    common::eventually(std::time::Duration::from_secs(20), "run finished", || {
        let mut c = c.clone();
        async move {
            common::executions(&mut c, id)
                .await
                .into_iter()
                .find(|e| !matches!(common::state(e), pb::ExecutionState::Running | pb::ExecutionState::Pending))
        }
    })
    .await
}

/// Settings out of range are refused by `--check` (exit 64) naming the key and never echoing other
/// values; they used to pass and then break the node (a retention of u64::MAX: nothing fired).
#[test]
fn out_of_range_settings_are_refused_at_check_naming_the_key() {
    let cases = [
        ("ROTA_EXECUTION_RETENTION_MS", "18446744073709551615", "execution_retention_ms"),
        ("ROTA_MISFIRE_THRESHOLD_MS", "18446744073709551615", "misfire_threshold_ms"),
        ("ROTA_SHUTDOWN_GRACE_MS", "18446744073709551615", "shutdown_grace_ms"),
    ];
    for (var, value, key) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
            .args(["server", "--check"])
            .env(var, value)
            .output()
            .expect("run rota");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{var}={value}: {err}");
        assert!(err.contains(key) && err.contains("is not in"), "{var}: {err}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("rota.toml");
    std::fs::write(&cfg, "shell_output_cap_bytes = 18446744073709551615\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["server", "--check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run rota");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("shell_output_cap_bytes"), "{err}");
}

/// Arguments nested 50 levels deep (past the protobuf decoder's limit) are the caller's error:
/// INVALID_ARGUMENT naming `args`, no decoder internals. A 100,000-character value comes back cut to
/// its first characters and its size, never whole. Nothing is stored; the node keeps serving.
#[tokio::test]
async fn deep_args_and_huge_values_are_refused_briefly() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let mut s = node.client().await;
    let mut deep = serde_json::json!(1);
    for _ in 0..50 {
        deep = serde_json::json!([deep]);
    }
    let mut j = common::job("deep", "* * * * * *", "noop", serde_json::json!(null));
    j.args = Some(rota::api::convert::json_to_pb(&deep));
    let e = s.put_job(pb::PutJobRequest { job: Some(j) }).await.expect_err("too deep");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("args:"), "{:?}", e.message());
    assert!(!e.message().contains("Value.kind") && !e.message().contains("ListValue"), "{:?}", e.message());
    let huge = "x".repeat(100_000);
    let huge_sp = format!("{huge} y");
    let mut n = pb::node_service_client::NodeServiceClient::new(node.channel().await);
    let task = pb::SubmitTaskRequest { job_id: "j".into(), fire_id: huge.clone(), epoch: 1, ..Default::default() };
    let calls: Vec<(&str, tonic::Status)> = vec![
        ("GetExecution", s.get_execution(pb::GetExecutionRequest { id: huge.clone() }).await.expect_err("x")),
        (
            "PutJob cron",
            s.put_job(pb::PutJobRequest {
                job: Some(pb::Job {
                    schedule: Some(pb::job::Schedule::Cron(huge_sp.clone())),
                    ..common::job("h", "* * * * * *", "noop", serde_json::json!(null))
                }),
            })
            .await
            .expect_err("x"),
        ),
        (
            "PutJob time_zone",
            s.put_job(pb::PutJobRequest {
                job: Some(pb::Job {
                    time_zone: huge.clone(),
                    ..common::job("h", "* * * * * *", "noop", serde_json::json!(null))
                }),
            })
            .await
            .expect_err("x"),
        ),
        (
            "PutJob handler",
            s.put_job(pb::PutJobRequest { job: Some(common::job("h", "* * * * * *", &huge, serde_json::json!(null))) })
                .await
                .expect_err("x"),
        ),
        ("SubmitTask fire_id", n.submit_task(task).await.expect_err("x")),
    ];
    for (what, e) in calls {
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {:.300}", e.message());
        assert!(e.message().len() < 600, "{what}: {} bytes echoed: {:.300}", e.message().len(), e.message());
    }
    node.wait_serving().await;
    assert!(s.list_jobs(pb::ListJobsRequest::default()).await.expect("list").into_inner().jobs.is_empty());
}
