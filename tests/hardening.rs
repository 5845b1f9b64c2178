//! Defects found by probing a release build as an attacker and a careless operator would (issue
//! 12), each reproduced here against real processes on a real Redis: a forged epoch, epochs past
//! 2^53, keys of the wrong type, a start whose reply is lost, and a Redis restart that used to
//! declare live nodes dead.
mod common;

use std::time::Duration;

use common::{eventually, executions, job, state, Backend, RedisServer, TestNode};
use redis::AsyncCommands;
use rota::pb;
use rota::store::{LeaseAcquire, RedisStore, Store, MAX_EPOCH};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

async fn redis_conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url()).expect("client").get_multiplexed_async_connection().await.expect("redis")
}

async fn status(n: &TestNode) -> Option<pb::GetClusterStatusResponse> {
    let mut c = n.client().await;
    c.get_cluster_status(pb::GetClusterStatusRequest {}).await.ok().map(|r| r.into_inner())
}

async fn master_of(nodes: &[&TestNode]) -> (String, u64) {
    eventually(WAIT, "a master every node agrees on", || async {
        let mut seen = Vec::new();
        for n in nodes {
            let s = status(n).await?;
            if s.master_id.is_empty() {
                return None;
            }
            seen.push((s.master_id, s.epoch));
        }
        seen.windows(2).all(|w| w[0] == w[1]).then(|| seen[0].clone())
    })
    .await
}

async fn node_client(n: &TestNode) -> pb::node_service_client::NodeServiceClient<tonic::transport::Channel> {
    pb::node_service_client::NodeServiceClient::new(n.channel().await)
}

#[tokio::test]
async fn lease_epochs_are_exact_integers_and_a_forged_counter_is_repaired() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), "rota", "default", 60_000).await.expect("store");
    let mut r = redis_conn(&redis).await;
    let key = store.keys().epoch();
    let acquire = |node: &'static str, floor: u64| {
        let store = &store;
        async move {
            match store.acquire_lease(node, "inc", 60_000, floor).await {
                Ok(LeaseAcquire::Acquired(h)) => {
                    assert!(store.release_lease(&h.value).await.expect("release"));
                    Ok(h.epoch)
                }
                Ok(other) => panic!("not acquired: {other:?}"),
                Err(e) => Err(e),
            }
        }
    };
    let now = chrono::Utc::now().timestamp_millis() as u64;
    // 2^60, as the probe left it: in Lua floating point 2^60 + 1 == 2^60, so two masters got the
    // same epoch. Such a counter can only be forged: it is repaired from Redis's clock.
    let _: () = r.set(&key, "1152921504606846976").await.expect("set");
    let a = acquire("n1", 0).await.expect("acquire");
    assert!(a <= MAX_EPOCH && a >= now, "epoch {a} after a forged counter");
    let b = acquire("n2", 0).await.expect("acquire");
    assert_eq!(b, a + 1, "each acquisition raises the epoch by one");
    // The value the float bug stored (string.format('%d') of 1.8e19 wraps to -2^63).
    let _: () = r.set(&key, "-9223372036854775808").await.expect("set");
    let c = acquire("n1", 0).await.expect("acquire after a wrapped counter");
    assert!(c >= now && c <= MAX_EPOCH, "epoch {c}");
    // Exact +1 steps right up to the bound, then a refusal rather than a wrap or a repeat.
    let _: () = r.set(&key, (MAX_EPOCH - 2).to_string()).await.expect("set");
    assert_eq!(acquire("n1", 0).await.expect("acquire"), MAX_EPOCH - 1);
    assert_eq!(acquire("n2", 0).await.expect("acquire"), MAX_EPOCH);
    let e = acquire("n1", 0).await.expect_err("no epoch past the bound");
    assert!(e.to_string().contains("would pass"), "{e}");
    let stored: String = r.get(&key).await.expect("get");
    assert_eq!(stored, MAX_EPOCH.to_string(), "a refused acquisition writes nothing");
    // A floor past the bound (a peer's forged epoch, were it ever taken as a floor) is refused.
    let _: () = r.set(&key, "5").await.expect("set");
    assert!(acquire("n1", u64::MAX).await.is_err());
    assert!(acquire("n1", MAX_EPOCH + 1).await.is_err());
    let f = acquire("n1", now + 1_000_000).await.expect("a floor within the bound is honoured");
    assert_eq!(f, now + 1_000_001);
}

#[tokio::test]
async fn a_forged_epoch_in_submit_tasks_neither_sticks_nor_stops_election() {
    let redis = RedisServer::start();
    let b = Backend::Redis(redis.url());
    let mut n1 = TestNode::start(&b, "n1", &[]).await;
    let mut n2 = TestNode::start(&b, "n2", &[]).await;
    let (master, epoch) = master_of(&[&n1, &n2]).await;
    let (old, other) = if master == "n1" { (&mut n1, &mut n2) } else { (&mut n2, &mut n1) };
    let mut nc = node_client(other).await;
    let task = pb::SubmitTaskRequest { job_id: "x".into(), fire_id: "x@1".into(), ..Default::default() };
    // Past the protocol's bound: refused as bad input, naming the field.
    let e = nc
        .submit_tasks(pb::SubmitTasksRequest { epoch: u64::MAX, tasks: vec![task.clone()] })
        .await
        .expect_err("forged epoch");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("epoch:"), "{}", e.message());
    // Within the bound but not the store's: refused by the accept, and not recorded either.
    let e = nc
        .submit_tasks(pb::SubmitTasksRequest { epoch: MAX_EPOCH, tasks: vec![task] })
        .await
        .expect_err("epoch the store never issued");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let echoed = nc
        .report_load(pb::ReportLoadRequest {
            node_id: "probe".into(),
            load: Some(pb::NodeLoad { active_workers: 0, max_workers: 1, queue_depth: 0 }),
            measured_at: None,
        })
        .await
        .expect("report load")
        .into_inner()
        .epoch;
    assert!(echoed < MAX_EPOCH && echoed >= epoch, "ReportLoad echoes {echoed}; the real epoch is {epoch}");
    // The master goes; the other node must take over with a real epoch, and fire.
    assert_eq!(old.terminate(), Some(0));
    let (new_master, new_epoch) = master_of(&[other]).await;
    assert_eq!(new_master, other.node_id);
    assert!(new_epoch > epoch && new_epoch < MAX_EPOCH, "epoch {epoch} -> {new_epoch}");
    let mut c = other.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job("after", "* * * * * *", "noop", json!(null))) }).await.expect("put");
    eventually(WAIT, "the new master fires", || async {
        let mut c = other.client().await;
        executions(&mut c, "after")
            .await
            .iter()
            .any(|e| state(e) == pb::ExecutionState::Succeeded && e.epoch == new_epoch)
            .then_some(())
    })
    .await;
}
