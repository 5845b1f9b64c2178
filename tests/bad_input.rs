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
    check("PauseJob bad id", s.pause_job(pb::PauseJobRequest { id: bad_id.into() }).await, IA, "id:");
    check("PauseJob unknown", s.pause_job(pb::PauseJobRequest { id: "nope".into() }).await, NF, "job 'nope'");
    check("ResumeJob bad id", s.resume_job(pb::ResumeJobRequest { id: long_id.clone() }).await, IA, "id:");
    check("ResumeJob unknown", s.resume_job(pb::ResumeJobRequest { id: "nope".into() }).await, NF, "job 'nope'");
    check(
        "TriggerJob bad key",
        s.trigger_job(pb::TriggerJobRequest { id: "nope".into(), idempotency_key: "k".repeat(129) }).await,
        IA,
        "idempotency_key:",
    );
    check(
        "TriggerJob unknown",
        s.trigger_job(pb::TriggerJobRequest { id: "nope".into(), idempotency_key: String::new() }).await,
        NF,
        "job 'nope'",
    );
    let le = |job_id: &str, state: i32, page_size: u32, page_token: &str| pb::ListExecutionsRequest {
        job_id: job_id.into(),
        state,
        page_size,
        page_token: page_token.into(),
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
        (pb::Job { cron: "61 * * * * *".into(), ..base() }, "cron: field 'second' out of range: 61"),
        (pb::Job { cron: "* * * * JANUARY *".into(), ..base() }, "cron: field 'month'"),
        (pb::Job { cron: String::new(), ..base() }, "cron:"),
        (args_big, "args: larger than"),
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
