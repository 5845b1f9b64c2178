//! The cluster with real processes on a real Redis: one master at a time, failover when it dies,
//! fencing of a master that was paused past its lease, and the lease handed over on shutdown.
//! Every fire is checked against the execution records: each (job, scheduled second) exactly once.
//! On one Redis by default; `ROTA_TEST_REDIS=cluster` or `ROTA_TEST_REDIS=sentinel` runs the same
//! tests on a Redis Cluster or through Sentinel (`SharedRedis`; not the Redis-over-TLS test).
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{agreed_master, check_once, eventually, executions, job, ms, status, Backend, SharedRedis, TestNode};
use rota::pb;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

async fn put_jobs(node: &TestNode, n: usize) -> Vec<String> {
    let mut c = node.client().await;
    let ids: Vec<String> = (0..n).map(|i| format!("every-second-{i}")).collect();
    for id in &ids {
        c.put_job(pb::PutJobRequest { job: Some(job(id, "* * * * * *", "noop", json!(null))) }).await.expect("put");
    }
    ids
}

fn by_id<'a>(nodes: &'a mut [TestNode], id: &str) -> &'a mut TestNode {
    nodes.iter_mut().find(|n| n.node_id == id).expect("node")
}

#[tokio::test]
async fn one_master_and_failover_after_sigkill_loses_and_doubles_nothing() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let mut nodes = vec![
        TestNode::start(&b, "n1", &[]).await,
        TestNode::start(&b, "n2", &[]).await,
        TestNode::start(&b, "n3", &[]).await,
    ];
    let (master, epoch) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    // Exactly one node says it is master.
    let infos = eventually(WAIT, "node records show one master", || async {
        let s = status(&nodes[0]).await?;
        let masters: Vec<String> = s
            .nodes
            .iter()
            .filter(|n| n.role == pb::NodeRole::Master as i32 && n.state == pb::NodeState::Live as i32)
            .map(|n| n.node_id.clone())
            .collect();
        (masters.len() == 1).then_some(masters)
    })
    .await;
    assert_eq!(infos, vec![master.clone()]);
    let jobs = put_jobs(&nodes[0], 5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    by_id(&mut nodes, &master).kill();
    let survivors: Vec<&TestNode> = nodes.iter().filter(|n| n.node_id != master).collect();
    let (new_master, new_epoch) = eventually(WAIT, "a new master", || async {
        let s = status(survivors[0]).await?;
        (!s.master_id.is_empty() && s.master_id != master).then_some((s.master_id, s.epoch))
    })
    .await;
    let failover = killed_at.elapsed();
    eprintln!("failover after SIGKILL: {} ms", failover.as_millis());
    assert!(new_epoch > epoch, "epoch rises: {epoch} -> {new_epoch}");
    assert_ne!(new_master, master);
    // Fires keep coming under the new master; the gap is caught up (within the misfire threshold).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (dups, gaps, epochs) = check_once(survivors[0], &jobs).await;
    assert_eq!((dups, gaps), (0, 0), "duplicated and lost fires; epochs used: {epochs:?}");
    assert!(epochs.contains_key(&epoch) && epochs.contains_key(&new_epoch), "{epochs:?}");
}

#[tokio::test]
async fn a_master_paused_past_its_lease_fires_nothing_after_it_wakes() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let nodes = [TestNode::start(&b, "n1", &[]).await, TestNode::start(&b, "n2", &[]).await];
    let (master, epoch) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let old = nodes.iter().find(|n| n.node_id == master).expect("master");
    let other = nodes.iter().find(|n| n.node_id != master).expect("other");
    let jobs = put_jobs(other, 5).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    old.pause();
    let paused_at = rota::store::now_ms();
    let (_, new_epoch) = eventually(WAIT, "the other node takes over", || async {
        let s = status(other).await?;
        (s.master_id == other.node_id).then_some((s.master_id, s.epoch))
    })
    .await;
    // Keep it frozen well past its lease, then let it run again with its stale view of the world.
    tokio::time::sleep(Duration::from_secs(2)).await;
    old.resume();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (dups, gaps, epochs) = check_once(other, &jobs).await;
    assert_eq!((dups, gaps), (0, 0), "epochs used: {epochs:?}");
    assert!(new_epoch > epoch);
    // Nothing was claimed with the old epoch after the pause began (a claim in flight at that
    // instant may carry a scheduled time up to one second before it).
    let mut c = other.client().await;
    for j in &jobs {
        for e in executions(&mut c, j).await {
            if e.epoch == epoch {
                assert!(
                    ms(&e.scheduled_time) <= paused_at + 1000,
                    "stale master claimed {} after its pause",
                    e.fire_id
                );
            }
        }
    }
    // The old master noticed, and it is a follower now.
    let log = old.log();
    assert!(log.contains("stepping down") || log.contains("claim fenced"), "old master did not step down:\n{log}");
    let s = status(old).await.expect("old master answers");
    assert_eq!(s.master_id, other.node_id);
}

/// A node cut short at shutdown (its grace over) while a fire its take started still waits for a
/// worker: the fire goes to another node that can run it, this attempt recorded `skipped`, and runs
/// there once, though its job's `recovery = lost` would record a run cut short `lost`: its handler
/// never began (`Worker::give_back`).
#[tokio::test]
async fn a_fire_taken_but_not_begun_at_shutdown_runs_on_another_node() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let mut n1 = TestNode::start(&b, "n1", &["--workers", "1", "--shutdown-grace-ms", "1000"]).await;
    let n2 = TestNode::start(&b, "n2", &[]).await;
    agreed_master(&[&n1, &n2]).await;
    let mut c = n1.client().await;
    for j in [job("hog", "0 0 0 1 1 *", "sleep", json!(["30s"])), job("after", "0 0 0 1 1 *", "noop", json!(null))] {
        c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    }
    c.trigger_job(pb::TriggerJobRequest { id: "hog".into(), ..Default::default() }).await.expect("trigger");
    eventually(Duration::from_secs(10), "the hog holds n1's one worker", || async {
        let r = n1.client().await.list_nodes(pb::ListNodesRequest {}).await.ok()?.into_inner();
        (r.nodes.into_iter().find(|n| n.node_id == "n1")?.load?.active_workers >= 1).then_some(())
    })
    .await;
    // Triggered on n1: its own accept takes and starts it there, and it waits for the worker.
    c.trigger_job(pb::TriggerJobRequest { id: "after".into(), ..Default::default() }).await.expect("trigger");
    eventually(Duration::from_secs(10), "the fire taken on n1", || async {
        let runs = executions(&mut n1.client().await, "after").await;
        runs.into_iter().find(|e| e.node_id == "n1" && e.state() == pb::ExecutionState::Running)
    })
    .await;
    n1.terminate();
    let runs = eventually(Duration::from_secs(20), "the fire run on n2", || async {
        let runs = executions(&mut n2.client().await, "after").await;
        runs.iter().any(|e| e.node_id == "n2" && e.state() == pb::ExecutionState::Succeeded).then_some(runs)
    })
    .await;
    let first = runs.iter().find(|e| e.attempt == 1).expect("its first attempt");
    assert_eq!((first.node_id.as_str(), first.state()), ("n1", pb::ExecutionState::Skipped), "{runs:?}");
    assert!(first.error.contains("shut down before a worker was free"), "{first:?}");
    assert_eq!(runs.len(), 2, "one skipped attempt and one run: {runs:?}");
}

#[tokio::test]
async fn graceful_shutdown_hands_the_lease_over_without_waiting_for_expiry() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    // A long lease: a successor that had to wait for expiry would take 10 s.
    let slow = ["--lease-ttl-ms", "10000", "--lease-renew-ms", "300"];
    let mut nodes = vec![TestNode::start(&b, "n1", &slow).await, TestNode::start(&b, "n2", &slow).await];
    let (master, epoch) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let stopped_at = Instant::now();
    assert_eq!(by_id(&mut nodes, &master).terminate(), Some(0));
    let other = nodes.iter().find(|n| n.node_id != master).expect("other");
    let (_, new_epoch) = eventually(WAIT, "successor", || async {
        let s = status(other).await?;
        (s.master_id == other.node_id).then_some((s.master_id, s.epoch))
    })
    .await;
    let took = stopped_at.elapsed();
    eprintln!("handover after SIGTERM: {} ms", took.as_millis());
    assert!(new_epoch > epoch);
    assert!(took < Duration::from_secs(10), "successor waited for the lease to expire ({took:?})");
}

/// Waits until `node` is master (it was started first), then returns its epoch.
async fn is_master(node: &TestNode) -> u64 {
    eventually(WAIT, "first node becomes master", || async {
        let s = status(node).await?;
        (s.master_id == node.node_id).then_some(s.epoch)
    })
    .await
}

/// Executions by node, over the given jobs.
async fn runs_by_node(node: &TestNode, jobs: &[String]) -> BTreeMap<String, usize> {
    let mut c = node.client().await;
    let mut by = BTreeMap::new();
    for j in jobs {
        for e in executions(&mut c, j).await {
            if e.state == pb::ExecutionState::Succeeded as i32 {
                *by.entry(e.node_id).or_default() += 1;
            }
        }
    }
    by
}

async fn put_sleepers(node: &TestNode, n: usize, sleep: &str) -> Vec<String> {
    let mut c = node.client().await;
    let ids: Vec<String> = (0..n).map(|i| format!("sleeper-{i}")).collect();
    for id in &ids {
        c.put_job(pb::PutJobRequest { job: Some(job(id, "* * * * * *", "sleep", json!([sleep]))) }).await.expect("put");
    }
    ids
}

#[tokio::test]
async fn a_busy_master_sends_fires_to_the_least_loaded_nodes() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let flags = ["--workers", "4", "--load-threshold", "0.5"];
    let n1 = TestNode::start(&b, "n1", &flags).await;
    is_master(&n1).await;
    let n2 = TestNode::start(&b, "n2", &flags).await;
    let n3 = TestNode::start(&b, "n3", &flags).await;
    // Let the master see the others' load reports.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let jobs = put_sleepers(&n1, 6, "1500ms").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let by = runs_by_node(&n1, &jobs).await;
    eprintln!("runs by node: {by:?}");
    assert!(by.get("n1").copied().unwrap_or(0) > 0, "the master runs up to its threshold: {by:?}");
    assert!(by.get("n2").copied().unwrap_or(0) > 0 && by.get("n3").copied().unwrap_or(0) > 0, "{by:?}");
    let (dups, gaps, _) = check_once(&n2, &jobs).await;
    assert_eq!((dups, gaps), (0, 0));
    drop(n3);
}

#[tokio::test]
async fn a_node_unreachable_over_grpc_gets_its_fires_through_its_queue() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &["--workers", "1", "--load-threshold", "0.5"]).await;
    is_master(&n1).await;
    // n2 tells the cluster an address nobody listens on: SubmitTask to it always fails, but it is
    // alive and drains its durable queue from Redis.
    let dead_port = common::free_port();
    let _n2 = TestNode::start(&b, "n2", &["--advertise", &format!("127.0.0.1:{dead_port}")]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let jobs = put_sleepers(&n1, 3, "200ms").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let by = runs_by_node(&n1, &jobs).await;
    eprintln!("runs by node: {by:?}");
    assert!(by.get("n2").copied().unwrap_or(0) >= 3, "n2 ran its queued fires: {by:?}");
    assert!(n1.log().contains("using the node's durable queue"), "the master fell back to the queue");
    let (dups, gaps, _) = check_once(&n1, &jobs).await;
    assert_eq!((dups, gaps), (0, 0));
}

#[tokio::test]
async fn a_dead_nodes_queue_is_drained_by_the_others() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &["--workers", "1", "--load-threshold", "0.5"]).await;
    is_master(&n1).await;
    // n2 is reachable only through its queue, and slow: a backlog builds up there.
    let dead_port = common::free_port();
    let flags = ["--workers", "1", "--advertise", &format!("127.0.0.1:{dead_port}")];
    let mut n2 = TestNode::start(&b, "n2", &flags).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let jobs = put_sleepers(&n1, 3, "1s").await;
    let backlog = eventually(WAIT, "a backlog in n2's queue", || async {
        let len: usize = redis.query(::redis::cmd("LLEN").arg("{rota:default:0}:q:n2")).ok()?;
        (len >= 3).then_some(len)
    })
    .await;
    let mut c = n1.client().await;
    for id in &jobs {
        c.pause_job(pb::PauseJobRequest { id: id.clone(), ..Default::default() }).await.expect("pause");
    }
    n2.kill();
    // The master reaps n2 once its heartbeat lapses: queued fires move to a live node (here n1);
    // the fire n2 was running is recorded lost (recovery policy 'lost').
    eventually(WAIT, "n2's queue moved", || async {
        let q: usize = redis.query(::redis::cmd("LLEN").arg("{rota:default:0}:q:n2")).ok()?;
        let p: usize = redis.query(::redis::cmd("LLEN").arg("{rota:default:0}:p:n2")).ok()?;
        (q + p == 0).then_some(())
    })
    .await;
    let by = eventually(WAIT, "every fire has its outcome", || {
        let (n1, jobs) = (&n1, &jobs);
        async move {
            let mut c = n1.client().await;
            for j in jobs {
                let pending = executions(&mut c, j).await.iter().any(|e| {
                    e.state == pb::ExecutionState::Pending as i32 || e.state == pb::ExecutionState::Running as i32
                });
                if pending {
                    return None;
                }
            }
            Some(runs_by_node(n1, jobs).await)
        }
    })
    .await;
    eprintln!("backlog {backlog}; runs by node: {by:?}");
    assert!(n1.log().contains("recovered a dead node's fire"), "nothing was reaped");
    let (dups, gaps, _) = check_once(&n1, &jobs).await;
    assert_eq!((dups, gaps), (0, 0), "after n2 died every fire still ran (or was recorded lost) once: {by:?}");
}

#[tokio::test]
async fn a_worker_killed_mid_run_reruns_idempotent_jobs_and_reports_the_others_lost() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &[]).await;
    is_master(&n1).await;
    let mut n2 = TestNode::start(&b, "n2", &[]).await;
    let mut c2 = n2.client().await;
    for (id, recovery) in [("once", pb::RecoveryPolicy::Lost), ("again", pb::RecoveryPolicy::Rerun)] {
        let mut j = job(id, "0 0 3 29 2 *", "sleep", json!(["2s"]));
        j.recovery = recovery as i32;
        c2.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
        // A manual fire runs on the node that was asked: n2.
        c2.trigger_job(pb::TriggerJobRequest { id: id.into(), idempotency_key: String::new(), ..Default::default() })
            .await
            .expect("trigger");
    }
    let mut c1 = n1.client().await;
    eventually(WAIT, "both running on n2", || {
        let mut c1 = c1.clone();
        async move {
            let mut running = 0;
            for j in ["once", "again"] {
                running += executions(&mut c1, j)
                    .await
                    .iter()
                    .filter(|e| e.state == pb::ExecutionState::Running as i32 && e.node_id == "n2")
                    .count();
            }
            (running == 2).then_some(())
        }
    })
    .await;
    n2.kill();
    let lost = eventually(WAIT, "the at-most-once fire recorded lost", || {
        let mut c1 = c1.clone();
        async move { executions(&mut c1, "once").await.into_iter().find(|e| e.state == pb::ExecutionState::Lost as i32) }
    })
    .await;
    assert!(lost.error.contains("node n2 died"), "{}", lost.error);
    let rerun = eventually(WAIT, "the at-least-once fire re-run and succeeded", || {
        let mut c1 = c1.clone();
        async move {
            executions(&mut c1, "again").await.into_iter().find(|e| e.state == pb::ExecutionState::Succeeded as i32)
        }
    })
    .await;
    assert_eq!((rerun.node_id.as_str(), rerun.attempt), ("n1", 2));
    assert_eq!(executions(&mut c1, "once").await.len(), 1, "the lost fire did not run again");
    assert!(n1.log().contains("alert") && n1.log().contains("execution_lost"), "no alert for the lost fire");
}

/// Many jobs firing every second over three nodes with load-based dispatch, the master killed
/// mid-run: every (job, scheduled second) runs exactly once, by the execution records and by a side
/// log that the handler itself appends to (outside rota's store).
#[tokio::test]
async fn many_jobs_through_a_master_kill_run_each_second_exactly_once_by_two_histories() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let side = dir.path().join("side.log");
    let flags = ["--enable-shell", "--shell-allow", "/bin/sh", "--workers", "6", "--load-threshold", "0.3"];
    let mut nodes = vec![
        TestNode::start(&b, "n1", &flags).await,
        TestNode::start(&b, "n2", &flags).await,
        TestNode::start(&b, "n3", &flags).await,
    ];
    let (master, _) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let mut c = nodes[0].client().await;
    let script = format!(
        "echo \"$ROTA_JOB_ID $ROTA_SCHEDULED_AT_MS $ROTA_EXECUTION_ID $ROTA_NODE_ID $ROTA_EPOCH\" >> {}",
        side.display()
    );
    let jobs: Vec<String> = (0..20).map(|i| format!("side-{i:02}")).collect();
    for id in &jobs {
        c.put_job(pb::PutJobRequest { job: Some(job(id, "* * * * * *", "shell", json!({"sh": script}))) })
            .await
            .expect("put");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    by_id(&mut nodes, &master).kill();
    let survivor = nodes.iter().find(|n| n.node_id != master).expect("survivor");
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Stop firing, let the last runs finish, then compare the two histories.
    let mut c = survivor.client().await;
    for id in &jobs {
        c.pause_job(pb::PauseJobRequest { id: id.clone(), ..Default::default() }).await.expect("pause");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut records: BTreeMap<(String, i64), Vec<pb::Execution>> = BTreeMap::new();
    for id in &jobs {
        for e in executions(&mut c, id).await {
            if e.state != pb::ExecutionState::Superseded as i32 {
                records.entry((e.job_id.clone(), ms(&e.scheduled_time))).or_default().push(e);
            }
        }
    }
    let mut side_runs: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(&side).expect("side log").lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 5, "malformed side log line {line:?}");
        side_runs.entry((f[0].to_string(), f[1].parse().expect("ms"))).or_default().push(f[2].to_string());
    }
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    let (mut lost, mut excused) = (0, 0);
    for (fire, recs) in &records {
        assert_eq!(recs.len(), 1, "fire {fire:?} has {} records: {recs:?}", recs.len());
        let e = &recs[0];
        let ran = side_runs.get(fire).map(Vec::len).unwrap_or(0);
        if e.state == pb::ExecutionState::Lost as i32 {
            // Killed with its node mid-run: the handler may or may not have got as far as the log.
            lost += 1;
            excused += ran;
            assert!(ran <= 1, "lost fire {fire:?} ran {ran} times");
            continue;
        }
        assert_eq!(e.state, pb::ExecutionState::Succeeded as i32, "fire {fire:?}: {e:?}");
        assert_eq!(side_runs.get(fire), Some(&vec![e.id.clone()]), "fire {fire:?}: side log disagrees with {e:?}");
        *by_node.entry(e.node_id.clone()).or_default() += 1;
    }
    for fire in side_runs.keys() {
        assert!(records.contains_key(fire), "the side log has a run rota never recorded: {fire:?}");
    }
    // No gaps: every second from each job's first to last fire is there.
    for id in &jobs {
        let secs: Vec<i64> = records.keys().filter(|(j, _)| j == id).map(|(_, t)| *t).collect();
        let (first, last) = (secs[0], secs[secs.len() - 1]);
        assert_eq!(secs.len() as i64, (last - first) / 1000 + 1, "{id} has gaps: {secs:?}");
    }
    eprintln!(
        "fires: {}, by node: {by_node:?}, lost with the master: {lost} (ran before dying: {excused})",
        records.len()
    );
    assert!(by_node.len() >= 2, "fires spread over nodes: {by_node:?}");
}

#[tokio::test]
async fn an_idle_node_takes_over_a_busy_nodes_queue_and_master_only_jobs_stay_on_the_master() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &["--workers", "1", "--load-threshold", "0.5"]).await;
    is_master(&n1).await;
    // n2 is reachable only through its queue, and slow: a backlog builds up there.
    let dead_port = common::free_port();
    let _n2 = TestNode::start(&b, "n2", &["--workers", "1", "--advertise", &format!("127.0.0.1:{dead_port}")]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut c = n1.client().await;
    let jobs = put_sleepers(&n1, 3, "1s").await;
    let mut only = job("on-master", "* * * * * *", "noop", json!(null));
    only.master_only = true;
    c.put_job(pb::PutJobRequest { job: Some(only) }).await.expect("put");
    let backlog = eventually(WAIT, "a backlog in n2's queue", || async {
        let len: usize = redis.query(::redis::cmd("LLEN").arg("{rota:default:0}:q:n2")).ok()?;
        (len >= 3).then_some(len)
    })
    .await;
    for id in &jobs {
        c.pause_job(pb::PauseJobRequest { id: id.clone(), ..Default::default() }).await.expect("pause");
    }
    // An idle node arrives and helps.
    let n3 = TestNode::start(&b, "n3", &["--workers", "8"]).await;
    eventually(WAIT, "n3 took over queued fires", || async {
        n3.log().contains("took over a queued fire from a busier node").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let by = runs_by_node(&n1, &jobs).await;
    eprintln!("backlog {backlog}; runs by node: {by:?}");
    assert!(by.get("n3").copied().unwrap_or(0) > 0, "{by:?}");
    let (dups, gaps, _) = check_once(&n1, &jobs).await;
    assert_eq!((dups, gaps), (0, 0));
    let only_runs = runs_by_node(&n1, &["on-master".to_string()]).await;
    assert_eq!(only_runs.keys().collect::<Vec<_>>(), vec!["n1"], "master-only ran elsewhere: {only_runs:?}");
}

async fn submit(addr: &str, tls: Option<tonic::transport::ClientTlsConfig>) -> Result<(), tonic::Status> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}")).expect("endpoint");
    if let Some(t) = tls {
        ep = ep.tls_config(t).expect("tls");
    }
    let ch = ep.connect().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let req = pb::SubmitTaskRequest { job_id: "j".into(), fire_id: "j@1".into(), epoch: 0, ..Default::default() };
    pb::node_service_client::NodeServiceClient::new(ch).submit_task(req).await.map(|_| ())
}

#[tokio::test]
async fn mutual_tls_between_nodes_and_tls_for_clients() {
    let pki = Pki::new();
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let (cert, key, ca) = (pki.path("node.pem"), pki.path("node.key"), pki.path("ca.pem"));
    let flags = [
        "--tls-cert-file",
        cert.as_str(),
        "--tls-key-file",
        key.as_str(),
        "--tls-ca-file",
        ca.as_str(),
        "--workers",
        "1",
        "--load-threshold",
        "0.5",
    ];
    let n1 = TestNode::start_tls(&b, "n1", &flags, pki.client()).await;
    is_master(&n1).await;
    let n2 = TestNode::start_tls(&b, "n2", &flags, pki.client()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // A client with the CA (no certificate of its own) uses the scheduler API over TLS.
    let jobs = put_sleepers(&n1, 3, "1200ms").await;
    // The busy master hands fires to n2 over mutual TLS.
    eventually(WAIT, "fires run on n2", || async {
        (runs_by_node(&n1, &jobs).await.get("n2").copied().unwrap_or(0) > 0).then_some(())
    })
    .await;
    // Plaintext to a TLS port fails.
    assert!(submit(&n1.addr, None).await.is_err());
    // Node-only calls: refused without a certificate, refused (at the handshake) with one from
    // another CA, let through with one from the cluster CA (then judged on their content).
    let e = submit(&n1.addr, Some(pki.client())).await.expect_err("no client certificate");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = submit(&n1.addr, Some(pki.client_with(&pki.rogue_cert, &pki.rogue_key))).await.expect_err("rogue");
    assert_ne!(e.code(), tonic::Code::InvalidArgument, "a rogue certificate got past authentication: {e:?}");
    let e = submit(&n1.addr, Some(pki.client_with(&pki.node_cert, &pki.node_key))).await.expect_err("bad request");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "a cluster certificate passes authentication: {e:?}");
    let (dups, gaps, _) = check_once(&n1, &jobs).await;
    assert_eq!((dups, gaps), (0, 0));
    drop(n2);
}

/// Redis over TLS (rediss://) with a password: a node that trusts Redis's CA works; one that does
/// not, does not serve (and says nothing of the password).
#[tokio::test]
async fn redis_over_tls_with_password() {
    let pki = Pki::new();
    let port = common::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, ca) = (pki.path("node.pem"), pki.path("node.key"), pki.path("ca.pem"));
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-cert-file", &cert, "--tls-key-file", &key, "--tls-ca-cert-file", &ca, "--tls-auth-clients", "no"])
        .args(["--requirepass", "tls-pw-31"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server with TLS");
    let url = format!("rediss://:tls-pw-31@127.0.0.1:{port}");
    let node = TestNode::start(&Backend::Redis(url.clone()), "n1", &["--redis-ca-file", &ca]).await;
    let mut c = node.client().await;
    c.put_job(pb::PutJobRequest { job: Some(job("tls", "* * * * * *", "noop", json!(null))) }).await.expect("put");
    eventually(WAIT, "fires over a TLS Redis", || {
        let mut c = c.clone();
        async move { (executions(&mut c, "tls").await.len() >= 2).then_some(()) }
    })
    .await;
    let untrusting = TestNode::spawn(&Backend::Redis(url), "n2", &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    assert_eq!(untrusting.health().await, Some(not_serving), "a node that does not trust Redis's CA must not serve");
    for n in [&node, &untrusting] {
        assert!(!n.log().contains("tls-pw-31"), "the Redis password appears in {}'s log", n.node_id);
    }
    let _ = redis.kill();
    let _ = redis.wait();
}

/// A node stopped with SIGTERM keeps its heartbeat while it finishes its running work: a run
/// longer than the node TTL is not judged dead, re-run elsewhere (recovery = rerun) and so run
/// twice. It runs once, to success, on the stopping node.
#[tokio::test]
async fn a_draining_node_is_not_judged_dead_while_it_finishes() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    // The harness's nodes beat every 200 ms with a 1 s TTL.
    let mut nodes = vec![TestNode::start(&b, "n1", &[]).await, TestNode::start(&b, "n2", &[]).await];
    let (master, _) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let mut c = by_id(&mut nodes, &master).client().await;
    let mut j = job("long", "0 0 1 1 *", "sleep", json!(["4s"]));
    j.recovery = pb::RecoveryPolicy::Rerun as i32;
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    let fire = c
        .trigger_job(pb::TriggerJobRequest { id: "long".into(), ..Default::default() })
        .await
        .expect("trigger")
        .into_inner()
        .execution
        .expect("execution")
        .fire_id;
    let running =
        eventually(WAIT, "the run starts", || {
            let mut c = c.clone();
            async move {
                executions(&mut c, "long").await.into_iter().find(|e| e.state == pb::ExecutionState::Running as i32)
            }
        })
        .await;
    c.put_job(pb::PutJobRequest { job: Some(job("quick", "0 0 1 1 *", "noop", json!(null))) }).await.expect("put");
    // Four times the node TTL to go: without a heartbeat the other node would reap it.
    let draining = by_id(&mut nodes, &running.node_id);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(draining.pid()), nix::sys::signal::Signal::SIGTERM);
    // Meanwhile a trigger sent to it first goes to the next endpoint (UNAVAILABLE, not refused).
    let endpoints = format!(
        "{},{}",
        draining.endpoint(),
        nodes.iter().find(|n| n.node_id != running.node_id).expect("other").endpoint()
    );
    let o = eventually(WAIT, "the draining node sends the caller on", || {
        let endpoints = endpoints.clone();
        async move {
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
                .args(["job", "trigger", "quick", "--endpoint", &endpoints])
                .env_remove("ROTA_TOKEN")
                .output()
                .expect("run rota");
            String::from_utf8_lossy(&o.stderr).contains("shutting down; try another node").then_some(o)
        }
    })
    .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(by_id(&mut nodes, &running.node_id).terminate(), Some(0));
    let other = nodes.iter().find(|n| n.node_id != running.node_id).expect("other");
    let mut c = other.client().await;
    // Time for a wrongly judged run to be re-run and recorded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs: Vec<_> = executions(&mut c, "long").await.into_iter().filter(|e| e.fire_id == fire).collect();
    let states: Vec<_> = runs.iter().map(|e| (e.node_id.clone(), e.state, e.error.clone())).collect();
    assert_eq!(runs.len(), 1, "one run of the fire: {states:?}");
    assert_eq!(runs[0].state, pb::ExecutionState::Succeeded as i32, "{states:?}");
    assert_eq!(runs[0].node_id, running.node_id);
}

/// A graceful stop whose grace period runs out cuts a running handler: a re-run job's fire then runs
/// again on another node (as if the node had died), and a lost job's is recorded lost, with the
/// reason. Both jobs run on the node that stops.
#[tokio::test]
async fn a_run_cut_by_a_graceful_stop_follows_its_jobs_recovery_policy() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let grace = ["--shutdown-grace-ms", "300", "--enable-shell", "--shell-allow", "/bin/sh"];
    let mut nodes = vec![TestNode::start(&b, "n1", &grace).await, TestNode::start(&b, "n2", &grace).await];
    let (master, _) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let mut c = by_id(&mut nodes, &master).client().await;
    let mut fires = Vec::new();
    for (id, recovery) in [("again", pb::RecoveryPolicy::Rerun), ("once", pb::RecoveryPolicy::Lost)] {
        let mut j = job(id, "0 0 1 1 *", "sleep", json!(["3s"]));
        j.recovery = recovery as i32;
        c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
        let t = c.trigger_job(pb::TriggerJobRequest { id: id.into(), ..Default::default() }).await.expect("trigger");
        fires.push(t.into_inner().execution.expect("execution").fire_id);
    }
    // A re-run job between a failed attempt and its retry (10 s of backoff) when the node stops.
    let mut j = job("retrying", "0 0 1 1 *", "shell", json!({"sh": "exit 3"}));
    j.recovery = pb::RecoveryPolicy::Rerun as i32;
    j.retries = 1;
    j.retry_backoff = Some(prost_types::Duration { seconds: 10, nanos: 0 });
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    let t =
        c.trigger_job(pb::TriggerJobRequest { id: "retrying".into(), ..Default::default() }).await.expect("trigger");
    let retrying = t.into_inner().execution.expect("execution").fire_id;
    let failed = eventually(WAIT, "the first attempt fails", || {
        let mut c = c.clone();
        async move {
            executions(&mut c, "retrying").await.into_iter().find(|e| e.state == pb::ExecutionState::Failed as i32)
        }
    })
    .await;
    assert_eq!(failed.node_id, master, "the failing job runs on the master, which stops");
    for id in ["again", "once"] {
        let running =
            eventually(WAIT, "the run starts", || {
                let mut c = c.clone();
                async move {
                    executions(&mut c, id).await.into_iter().find(|e| e.state == pb::ExecutionState::Running as i32)
                }
            })
            .await;
        assert_eq!(running.node_id, master, "{id} runs on the master, which stops");
    }
    assert_eq!(by_id(&mut nodes, &master).terminate(), Some(0));
    let other = nodes.iter().find(|n| n.node_id != master).expect("other");
    let mut c = other.client().await;
    let again = eventually(Duration::from_secs(20), "the cut re-run job succeeds elsewhere", || {
        let mut c = c.clone();
        let fire = fires[0].clone();
        async move {
            let runs: Vec<_> = executions(&mut c, "again").await.into_iter().filter(|e| e.fire_id == fire).collect();
            runs.iter().any(|e| e.state == pb::ExecutionState::Succeeded as i32).then_some(runs)
        }
    })
    .await;
    let ok: Vec<_> = again.iter().filter(|e| e.state == pb::ExecutionState::Succeeded as i32).collect();
    assert_eq!((ok.len(), ok[0].node_id.as_str()), (1, other.node_id.as_str()), "{again:?}");
    let once: Vec<_> = executions(&mut c, "once").await.into_iter().filter(|e| e.fire_id == fires[1]).collect();
    assert_eq!(once.len(), 1, "{once:?}");
    assert_eq!(once[0].state, pb::ExecutionState::Lost as i32, "{once:?}");
    assert!(once[0].error.contains("node shut down before the handler finished"), "{once:?}");
    // The retry-waiting fire ran again on the other node (no `lost` record ends it).
    let runs = eventually(WAIT, "the retry-waiting fire runs again elsewhere", || {
        let mut c = c.clone();
        let fire = retrying.clone();
        let other = other.node_id.clone();
        async move {
            let runs: Vec<_> = executions(&mut c, "retrying").await.into_iter().filter(|e| e.fire_id == fire).collect();
            runs.iter().any(|e| e.node_id == other && e.state == pb::ExecutionState::Failed as i32).then_some(runs)
        }
    })
    .await;
    assert!(!runs.iter().any(|e| e.error.contains("before this retry could run")), "{runs:?}");
}

/// A master paused inside the start lead: it has started its fires ahead of their instant (marked
/// them `running`), and stops before their handlers begin, for longer than its heartbeat's TTL. The
/// other node takes over and re-runs them (`recovery = rerun`). Woken, the paused node must not run
/// them too: past its heartbeat's TTL it no longer has the local proof that it owns them, asks the
/// store, finds their records closed, and runs nothing. Every fire runs once (by the side log).
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_node_paused_in_the_start_lead_does_not_run_what_was_recovered_meanwhile() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let sidelog = dir.path().join("runs.tsv").display().to_string();
    let env = [("ROTA_SIDELOG", sidelog.as_str())];
    let lead = ["--start-lead-ms", "300"];
    let nodes = [TestNode::start_env(&b, "n1", &lead, &env).await, TestNode::start_env(&b, "n2", &lead, &env).await];
    let (master, _) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let paused = nodes.iter().find(|n| n.node_id == master).expect("master");
    let mut c = paused.client().await;
    let ids: Vec<String> = (0..5).map(|i| format!("lead-{i}")).collect();
    for id in &ids {
        let mut j = job(id, "* * * * * *", "sidelog", json!({"ms": 0}));
        j.recovery = pb::RecoveryPolicy::Rerun as i32;
        c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // 120 ms before an instant: the master has claimed, accepted and started its fires of that
    // instant (300 ms ahead), and is waiting for it to run them.
    let instant = (rota::store::now_ms() / 1000 + 2) * 1000;
    tokio::time::sleep(Duration::from_millis((instant - 120 - rota::store::now_ms()) as u64)).await;
    paused.pause();
    tokio::time::sleep(Duration::from_secs(4)).await;
    paused.resume();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = side_runs(&sidelog);
    let twice: Vec<_> = runs.iter().filter(|(_, nodes)| nodes.len() > 1).collect();
    assert!(twice.is_empty(), "fires run twice: {twice:?}");
    // The instant paused in was run once, by the other node (the re-run).
    for id in &ids {
        let by = runs.get(&(id.clone(), instant));
        assert!(by.is_some_and(|n| n.len() == 1), "{id}@{instant}: {by:?}");
    }
}

/// The master's claim of its own fires commits and its reply is lost (failpoint `lose_claim_reply`,
/// as when Redis restarts or the connection breaks between the two). Claimed into its hands
/// (`Claim::here`), those fires are in its processing list in the store but in no task of its
/// process: its rescan finds them there and runs them. Every fire of the run, the lost claim's
/// included, runs exactly once (by the side log).
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_lost_claim_reply_leaves_the_masters_own_fires_to_its_rescan() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let sidelog = dir.path().join("runs.tsv").display().to_string();
    let port = common::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let node =
        TestNode::start_env(&b, "n1", &["--metrics-listen", &metrics], &[("ROTA_SIDELOG", sidelog.as_str())]).await;
    let mut c = node.client().await;
    let ids: Vec<String> = (0..3).map(|i| format!("lost-claim-{i}")).collect();
    for id in &ids {
        c.put_job(pb::PutJobRequest { job: Some(job(id, "* * * * * *", "sidelog", json!({"ms": 0}))) })
            .await
            .expect("put");
    }
    let runs = || side_runs(&sidelog);
    eventually(Duration::from_secs(15), "the jobs run", || {
        let n = runs().len();
        async move { (n >= 3).then_some(()) }
    })
    .await;
    let armed_at = rota::store::now_ms();
    let url = format!("http://127.0.0.1:{port}/failpoints/lose_claim_reply");
    let r = reqwest::Client::new().put(&url).body("1*return").send().await.expect("arm");
    assert!(r.status().is_success(), "{}", r.status());
    // The next claim loses its reply; the rescan (every 5 s) runs what it claimed.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(node.log().contains("lose_claim_reply"), "the failpoint was hit");
    let runs = runs();
    let (from, to) = (armed_at / 1000 * 1000, armed_at / 1000 * 1000 + 3000);
    for id in &ids {
        for at in (from..=to).step_by(1000) {
            assert_eq!(runs.get(&(id.clone(), at)).map(Vec::len), Some(1), "{id}@{at} ran once: {runs:?}");
        }
    }
}

/// The side log's runs: (job, instant) -> the nodes that ran it, in order.
fn side_runs(path: &str) -> BTreeMap<(String, i64), Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut runs: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for l in text.lines().filter(|l| l.starts_with("S\t")) {
        let f: Vec<&str> = l.split('\t').collect();
        runs.entry((f[1].to_string(), f[2].parse().unwrap_or(0))).or_default().push(f[4].to_string());
    }
    runs
}

/// A job's fires by instant, each run once: the node of each, oldest first (a fire run twice or
/// not at all in the span fails the test).
fn nodes_by_instant(runs: &BTreeMap<(String, i64), Vec<String>>, job: &str, from: i64, to: i64) -> Vec<String> {
    (from..=to)
        .step_by(1000)
        .map(|at| match runs.get(&(job.to_string(), at)).map(Vec::as_slice) {
            Some([node]) => node.clone(),
            other => panic!("{job}@{at} ran {other:?}"),
        })
        .collect()
}

/// Three nodes on one Redis, each with the side log; the master agreed and every node's load
/// known to it. `ttl`: the node TTL, which is also how fresh a load report must be for its node to
/// be a candidate (a longer one keeps every node a candidate on a loaded machine).
async fn three_routed_nodes(b: &Backend, sidelog: &str, ttl: &str) -> Vec<TestNode> {
    let env = [("ROTA_SIDELOG", sidelog)];
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(TestNode::start_env(b, id, &["--node-ttl-ms", ttl], &env).await);
    }
    agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    eventually(Duration::from_secs(20), "every node reports its load", || async {
        let s = status(&nodes[0]).await?;
        (s.nodes.iter().filter(|n| n.load.is_some()).count() == 3).then_some(())
    })
    .await;
    nodes
}

/// The routing strategies on three real nodes (issue 17; `dispatch::pick` has the tables): a
/// round-robin and a least-recently-used job visit every node in turn, a random one more than one
/// node, and a consistent-hash job stays on the node its hash names (the same function's answer
/// for the three nodes). Every fire runs once.
#[tokio::test]
async fn routing_strategies_spread_fires_as_they_say() {
    use rota::dispatch::{pick, RouteMemo};
    use rota::job::Routing;
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let sidelog = dir.path().join("runs.tsv").display().to_string();
    // Every node stays a candidate for every fire even when a load report comes late.
    let nodes = three_routed_nodes(&b, &sidelog, "5000").await;
    let mut c = nodes[0].client().await;
    let strategies = [
        ("rr", pb::RoutingStrategy::RoundRobin),
        ("lru", pb::RoutingStrategy::LeastRecentlyUsed),
        ("rand-a", pb::RoutingStrategy::Random),
        ("rand-b", pb::RoutingStrategy::Random),
        ("rand-c", pb::RoutingStrategy::Random),
        ("ch-a", pb::RoutingStrategy::ConsistentHash),
        ("ch-b", pb::RoutingStrategy::ConsistentHash),
        ("ch-c", pb::RoutingStrategy::ConsistentHash),
    ];
    let put_at = rota::store::now_ms();
    for (id, routing) in strategies {
        let mut j = job(id, "* * * * * *", "sidelog", json!({"ms": 0}));
        j.routing = routing as i32;
        c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    let runs = side_runs(&sidelog);
    // The instants from the second after the puts to two seconds ago: every fire ran once.
    let (from, to) = ((put_at / 1000 + 2) * 1000, (rota::store::now_ms() / 1000 - 2) * 1000);
    let all = ["n1", "n2", "n3"];
    for id in ["rr", "lru"] {
        let seq = nodes_by_instant(&runs, id, from, to);
        assert!(seq.len() >= 6, "{id}: {seq:?}");
        for w in seq.windows(3) {
            let mut w = w.to_vec();
            w.sort();
            assert_eq!(w, all, "{id}: every three fires in a row visit the three nodes: {seq:?}");
        }
    }
    // Three random jobs' fires all on one node: about 3 chances in 3^20.
    let seq: Vec<String> =
        ["rand-a", "rand-b", "rand-c"].iter().flat_map(|j| nodes_by_instant(&runs, j, from, to)).collect();
    assert!(seq.iter().any(|n| *n != seq[0]), "random ran only on {}: {seq:?}", seq[0]);
    for id in ["ch-a", "ch-b", "ch-c"] {
        let want = pick(Routing::ConsistentHash, id, &[], &all, &RouteMemo::default(), 0).expect("a node");
        let seq = nodes_by_instant(&runs, id, from, to);
        assert!(seq.iter().all(|n| n == want), "{id}: on {want} by its hash, ran on {seq:?}");
    }
}

/// A failover job runs on the first live node of its list; when that node dies its fires go to
/// the next one listed, never to a node off the list. Every fire runs at most once.
#[tokio::test]
async fn failover_routing_follows_its_list_when_a_node_dies() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let sidelog = dir.path().join("runs.tsv").display().to_string();
    let mut nodes = three_routed_nodes(&b, &sidelog, "1000").await;
    let (master, _) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    // First choice a node that is not master (the master keeps scheduling when it dies), then the
    // master.
    let first = nodes.iter().position(|n| n.node_id != master).expect("a non-master");
    let (first_id, second_id) = (nodes[first].node_id.clone(), master.clone());
    let mut c = nodes[first].client().await;
    let mut j = job("fo", "* * * * * *", "sidelog", json!({"ms": 0}));
    j.routing = pb::RoutingStrategy::Failover as i32;
    j.failover_nodes = vec!["gone".into(), first_id.clone(), second_id.clone()];
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    let put_at = rota::store::now_ms();
    tokio::time::sleep(Duration::from_secs(5)).await;
    nodes[first].kill();
    let killed_at = rota::store::now_ms();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let runs = side_runs(&sidelog);
    let mut on = BTreeMap::new();
    for ((job, at), by) in &runs {
        assert!(job != "fo" || by.len() == 1, "fo@{at} ran {by:?}");
        if job == "fo" {
            on.insert(*at, by[0].clone());
        }
    }
    let before: Vec<_> = on.range(put_at + 1000..killed_at - 1000).map(|(_, n)| n.clone()).collect();
    assert!(!before.is_empty() && before.iter().all(|n| *n == first_id), "before the kill: {on:?}");
    let after: Vec<_> = on.range(killed_at + 7000..).map(|(_, n)| n.clone()).collect();
    assert!(!after.is_empty() && after.iter().all(|n| *n == second_id), "after the kill: {on:?}");
    assert!(on.values().all(|n| *n == first_id || *n == second_id), "ran off its list: {on:?}");
}

/// A failover job none of whose nodes is live (here: never was) is not run elsewhere: its fire is
/// recorded `failed`, naming the list, and never dropped.
#[tokio::test]
async fn a_failover_job_with_no_live_node_of_its_list_is_recorded_failed() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let sidelog = dir.path().join("runs.tsv").display().to_string();
    let node = TestNode::start_env(&b, "n1", &[], &[("ROTA_SIDELOG", sidelog.as_str())]).await;
    let mut c = node.client().await;
    let mut j = job("nowhere", "* * * * * *", "sidelog", json!({"ms": 0}));
    j.routing = pb::RoutingStrategy::Failover as i32;
    j.failover_nodes = vec!["ghost-1".into(), "ghost-2".into()];
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    let failed = eventually(Duration::from_secs(15), "a fire recorded failed", || {
        let mut c = c.clone();
        async move {
            executions(&mut c, "nowhere").await.into_iter().find(|e| common::state(e) == pb::ExecutionState::Failed)
        }
    })
    .await;
    assert!(failed.error.contains("not among the job's failover nodes (ghost-1, ghost-2)"), "{}", failed.error);
    assert!(side_runs(&sidelog).is_empty(), "it ran: {:?}", side_runs(&sidelog));
}

/// A node hands a fire it cannot run to one that can (here: a shell job triggered on a node
/// without shell), and the hand-over's reply is lost (failpoint `lose_reap_reply`) after it
/// committed. The fire runs on the other node; the handing node's attempt, which it never
/// recorded, is closed by the master's sweep (`skipped`, saying where the fire went), not left
/// `pending` for ever.
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_hand_over_whose_reply_is_lost_still_closes_its_attempt() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let shell = ["--enable-shell", "--shell-allow", "/bin/sh"];
    let n1 = TestNode::start(&b, "n1", &shell).await;
    let port = common::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let n2 = TestNode::start(&b, "n2", &["--metrics-listen", &metrics]).await;
    agreed_master(&[&n1, &n2]).await;
    let mut c = n1.client().await;
    let j = job("sh", "0 0 0 1 1 *", "shell", json!({"sh": "echo hi"}));
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put");
    let url = format!("http://127.0.0.1:{port}/failpoints/lose_reap_reply");
    let r = reqwest::Client::new().put(&url).body("1*return").send().await.expect("arm");
    assert!(r.status().is_success(), "{}", r.status());
    let t = n2.client().await.trigger_job(pb::TriggerJobRequest { id: "sh".into(), ..Default::default() }).await;
    let first = t.expect("trigger").into_inner().execution.expect("execution").id;
    let records = eventually(Duration::from_secs(20), "the run on n1 and the first attempt closed", || {
        let mut c = c.clone();
        let first = first.clone();
        async move {
            let e = executions(&mut c, "sh").await;
            let ran = e.iter().any(|x| common::state(x) == pb::ExecutionState::Succeeded && x.node_id == "n1");
            let closed = e.iter().any(|x| x.id == first && common::state(x) == pb::ExecutionState::Skipped);
            (ran && closed).then_some(e)
        }
    })
    .await;
    assert!(n2.log().contains("lose_reap_reply"), "the failpoint was hit");
    let closed = records.iter().find(|x| x.id == first).expect("first attempt");
    assert!(closed.error.contains("handed to n1"), "{closed:?}");
}
