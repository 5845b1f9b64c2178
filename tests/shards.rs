//! Scheduling shards on real processes and a real Redis: the masters of a sharded cluster spread
//! over the nodes (no node above its share), a killed node's shards go to the others and every
//! fire still runs exactly once, a master-only job runs only on its shard's master, a joining node
//! gets its share, and a node configured with another number of shards than its cluster is
//! refused. On one Redis by default; `ROTA_TEST_REDIS=cluster` runs them on a Redis Cluster, where
//! the shards' hash tags land on different primaries.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use common::{check_once, eventually, executions, job, status, Backend, RedisServer, SharedRedis, TestNode};
use rota::pb;
use rota::store::keys::shard_of;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const SHARDS: u16 = 4;

/// Who masters each shard, as `node` reports it, once every shard has a live master.
async fn masters(node: &TestNode) -> Option<BTreeMap<u32, String>> {
    let s = status(node).await?;
    let mut by_shard = BTreeMap::new();
    for n in s.nodes.iter().filter(|n| n.state == pb::NodeState::Live as i32) {
        for k in &n.master_of_shards {
            by_shard.insert(*k, n.node_id.clone());
        }
    }
    (s.shards == u32::from(SHARDS) && by_shard.len() == usize::from(SHARDS) && !s.electing).then_some(by_shard)
}

/// How many shards each node masters.
fn counts(m: &BTreeMap<u32, String>) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for n in m.values() {
        *c.entry(n.clone()).or_default() += 1;
    }
    c
}

/// Every shard mastered, by `live` nodes only, each of them masters at least one and none above
/// `ceil(SHARDS / live)`. (Waiting for the shares alone once caught a moment when two of three
/// nodes held two shards each, before the third had taken its own.)
async fn balanced(node: &TestNode, live: &[&str]) -> BTreeMap<u32, String> {
    let quota = usize::from(SHARDS).div_ceil(live.len());
    eventually(WAIT, "every shard mastered, each node within its share", || async {
        let m = masters(node).await?;
        let c = counts(&m);
        let spread = c.len() == live.len().min(usize::from(SHARDS));
        (spread && c.keys().all(|n| live.contains(&n.as_str())) && c.values().all(|n| *n <= quota)).then_some(m)
    })
    .await
}

#[tokio::test]
async fn the_shards_masters_spread_over_the_nodes_and_a_killed_nodes_shards_move_without_losing_a_fire() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let flags = ["--shards", "4"];
    let mut nodes = [
        TestNode::start(&b, "n1", &flags).await,
        TestNode::start(&b, "n2", &flags).await,
        TestNode::start(&b, "n3", &flags).await,
    ];
    let before = balanced(&nodes[0], &["n1", "n2", "n3"]).await;
    eprintln!("shard masters: {before:?}");
    assert_eq!(counts(&before).len(), 3, "every node masters a shard: {before:?}");
    // Jobs in every shard, and a master-only job.
    let mut c = nodes[0].client().await;
    let ids: Vec<String> = (0..12).map(|i| format!("every-second-{i}")).collect();
    let in_shards: BTreeSet<u16> = ids.iter().map(|j| shard_of(j, SHARDS)).collect();
    assert_eq!(in_shards.len(), usize::from(SHARDS), "the jobs cover every shard");
    for id in &ids {
        c.put_job(pb::PutJobRequest { job: Some(job(id, "* * * * * *", "noop", json!(null))) }).await.expect("put");
    }
    let mut only = job("on-the-master", "* * * * * *", "noop", json!(null));
    only.master_only = true;
    c.put_job(pb::PutJobRequest { job: Some(only) }).await.expect("put master-only");
    let only_shard = u32::from(shard_of("on-the-master", SHARDS));
    // Listings span the shards: every job, in id order.
    let listed = c.list_jobs(pb::ListJobsRequest { page_size: 100, ..Default::default() }).await.expect("list");
    let listed: Vec<String> = listed.into_inner().jobs.into_iter().map(|j| j.id).collect();
    let mut want: Vec<String> = ids.iter().cloned().chain(["on-the-master".to_string()]).collect();
    want.sort();
    assert_eq!(listed, want);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Kill the node that masters the master-only job's shard.
    let victim = before[&only_shard].clone();
    nodes.iter_mut().find(|n| n.node_id == victim).expect("victim").kill();
    let survivors: Vec<&TestNode> = nodes.iter().filter(|n| n.node_id != victim).collect();
    let live: Vec<&str> = survivors.iter().map(|n| n.node_id.as_str()).collect();
    let after = balanced(survivors[0], &live).await;
    eprintln!("shard masters after {victim} was killed: {after:?}");
    for (k, n) in &before {
        if *n != victim {
            assert_eq!(after[k], *n, "shard {k} stayed with its live master");
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all: Vec<String> = ids.iter().cloned().chain(["on-the-master".to_string()]).collect();
    let (dups, gaps, _) = check_once(survivors[0], &all).await;
    assert_eq!((dups, gaps), (0, 0), "duplicated and lost fires");
    // The master-only job ran on its shard's master only: the victim, then its successor.
    let mut c = survivors[0].client().await;
    let ran_on: BTreeSet<String> = executions(&mut c, "on-the-master").await.into_iter().map(|e| e.node_id).collect();
    let holders: BTreeSet<String> = [victim.clone(), after[&only_shard].clone()].into();
    assert!(ran_on.is_subset(&holders), "master-only job ran on {ran_on:?}; its shard's masters were {holders:?}");
    assert!(ran_on.contains(&after[&only_shard]), "it ran on the new master: {ran_on:?}");
    // Every execution of the cluster lists, merged across shards, newest first.
    let page = c
        .list_executions(pb::ListExecutionsRequest { page_size: 50, ..Default::default() })
        .await
        .expect("list executions")
        .into_inner();
    let ids_listed: Vec<String> = page.executions.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids_listed.len(), 50);
    assert!(ids_listed.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats");
    let jobs_seen: BTreeSet<u16> = page.executions.iter().map(|e| shard_of(&e.job_id, SHARDS)).collect();
    assert!(jobs_seen.len() > 1, "one page holds several shards' executions: {jobs_seen:?}");
    // Any execution is found by id alone, whatever its shard.
    let e = page.executions.last().expect("one");
    let got = c.get_execution(pb::GetExecutionRequest { id: e.id.clone() }).await.expect("get by id").into_inner();
    assert_eq!(got.execution.map(|g| g.id), Some(e.id.clone()));
}

#[tokio::test]
async fn a_node_that_joins_gets_its_share_of_the_shards() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let flags = ["--shards", "4"];
    let first = [TestNode::start(&b, "n1", &flags).await, TestNode::start(&b, "n2", &flags).await];
    let two = balanced(&first[0], &["n1", "n2"]).await;
    assert_eq!(counts(&two).values().copied().collect::<Vec<_>>(), vec![2, 2], "{two:?}");
    let _third = TestNode::start(&b, "n3", &flags).await;
    let three = eventually(WAIT, "the new node masters a shard", || async {
        let m = balanced(&first[0], &["n1", "n2", "n3"]).await;
        counts(&m).contains_key("n3").then_some(m)
    })
    .await;
    eprintln!("shard masters: {two:?} -> {three:?}");
}

/// `rota server` run to its exit (it must refuse at once): (exit code, stderr).
fn refused(redis: Option<&str>, extra: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rota"));
    cmd.args(["server", "--node-id", "x", "--listen", "127.0.0.1:0"]).args(extra).env_remove("ROTA_REDIS");
    if let Some(url) = redis {
        cmd.args(["--redis", url]);
    }
    let mut child =
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("rota server {extra:?} did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn a_node_with_another_number_of_shards_than_its_cluster_is_refused() {
    // Out of range, and without Redis: refused before anything starts, naming the key.
    for bad in ["0", "257"] {
        let (code, err) = refused(Some("redis://127.0.0.1:1"), &["--shards", bad]);
        assert_eq!(code, Some(64), "{err}");
        assert!(err.contains("shards") && err.contains("1..=256"), "{err}");
    }
    let (code, err) = refused(None, &["--shards", "2"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("shards") && err.contains("in-memory"), "{err}");
    // A cluster created with 4 shards refuses a node that says 2, naming both numbers.
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"], "");
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &["--shards", "4"]).await;
    let (code, err) = refused(Some(&redis.url()), &["--shards", "2"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("created with 4 shards") && err.contains("says 2"), "{err}");
    let meta: Option<String> = common::redis_cmd(redis.port, &["HGET", "{rota:default}:meta", "shards"]);
    assert_eq!(meta.as_deref(), Some("4"), "the refused node changed nothing");
    // The same node started while Redis is down: it starts (refusing API writes meanwhile), and
    // once Redis is back it finds the mismatch before it writes anything, says so and stops.
    redis.kill();
    let mut late = TestNode::spawn(&b, "n9", &["--shards", "2"]);
    let mut c = late.client().await;
    let put = c.put_job(pb::PutJobRequest { job: Some(job("early", "* * * * * *", "noop", json!(null))) }).await;
    assert_eq!(put.err().map(|s| s.code()), Some(tonic::Code::Unavailable), "no write before the check");
    redis.restart();
    common::eventually_sync(WAIT, "the late node stops", || late.exited().then_some(()));
    let log = late.log();
    assert!(log.contains("error: config shards: the cluster was created with 4 shards and this node says 2"), "{log}");
    n1.wait_serving().await;
    let nodes = status(&n1).await.expect("status").nodes;
    assert!(nodes.iter().all(|n| n.node_id != "n9"), "the refused node is listed: {nodes:?}");
    let hb: Vec<String> = common::redis_cmd(redis.port, &["KEYS", "*:hb:n9"]).expect("keys");
    assert!(hb.is_empty(), "the refused node beat: {hb:?}");
    let jobs: Vec<String> = common::redis_cmd(redis.port, &["KEYS", "*:job:early"]).expect("keys");
    assert!(jobs.is_empty(), "the refused node wrote a job: {jobs:?}");
    drop(n1);
    // A cluster made before shards (shard 0's keys, no meta key): it is one shard, kept working
    // with shards = 1, and a node that says 4 is told how to migrate.
    let old = RedisServer::start();
    let b = Backend::Redis(old.url());
    let n = TestNode::start(&b, "n1", &[]).await;
    let _: Option<i64> = common::redis_cmd(old.port, &["DEL", "{rota:default}:meta"]);
    let (code, err) = refused(Some(&old.url()), &["--shards", "4"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("made before shards") && err.contains("rota job list --json"), "{err}");
    let again = TestNode::start(&b, "n2", &[]).await;
    assert!(status(&again).await.is_some_and(|s| s.shards == 1));
    drop(n);
}

/// The durable queue in a sharded cluster: fires of the shards n1 masters, sent to n2, which
/// nobody can call, reach n2 through its queue in their shard, and n2's one drain loop over every
/// shard's queue runs them (a blocking take per shard held every worker of a node while it waited).
#[tokio::test]
async fn an_unreachable_nodes_fires_of_every_shard_reach_it_through_its_queues() {
    let redis = SharedRedis::start();
    let b = Backend::Redis(redis.url());
    let n1 = TestNode::start(&b, "n1", &["--shards", "4", "--workers", "1", "--load-threshold", "0.5"]).await;
    let dead_port = common::free_port();
    let advertise = format!("127.0.0.1:{dead_port}");
    let n2 = TestNode::start(&b, "n2", &["--shards", "4", "--workers", "4", "--advertise", &advertise]).await;
    let m = balanced(&n1, &["n1", "n2"]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Sleepers in every shard: n1 (one worker) sends what it cannot run to n2.
    let mut c = n1.client().await;
    let ids: Vec<String> = (0..8).map(|i| format!("sleeper-{i}")).collect();
    for id in &ids {
        c.put_job(pb::PutJobRequest { job: Some(job(id, "* * * * * *", "sleep", json!(["300ms"]))) })
            .await
            .expect("put");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut on_n2_from_n1_shards = 0;
    for id in &ids {
        let of_n1 = m[&u32::from(shard_of(id, SHARDS))] == "n1";
        for e in executions(&mut c, id).await {
            if of_n1 && e.node_id == "n2" {
                on_n2_from_n1_shards += 1;
            }
        }
    }
    assert!(on_n2_from_n1_shards >= 3, "n2 ran fires of n1's shards: {on_n2_from_n1_shards}");
    assert!(n1.log().contains("using the node's durable queue"), "n1 fell back to n2's queue");
    let (dups, gaps, _) = check_once(&n1, &ids).await;
    assert_eq!((dups, gaps), (0, 0));
    drop(n2);
}

/// SubmitTasks carries one shard's fires (a master sends its own shard's): a call that mixes
/// shards is refused, naming the first task of another shard, and nothing is accepted.
#[tokio::test]
async fn submit_tasks_mixing_shards_is_refused_naming_the_task() {
    let redis = RedisServer::start();
    let n1 = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--shards", "4"]).await;
    let (a, b) = {
        let ids: Vec<String> = (0..32).map(|i| format!("j{i}")).collect();
        let a = ids[0].clone();
        let b = ids.iter().find(|j| shard_of(j, SHARDS) != shard_of(&a, SHARDS)).cloned().expect("two shards");
        (a, b)
    };
    let task =
        |job: &str| pb::SubmitTaskRequest { job_id: job.into(), fire_id: format!("{job}@1000"), ..Default::default() };
    let mut n = pb::node_service_client::NodeServiceClient::new(n1.channel().await);
    let r = n.submit_tasks(pb::SubmitTasksRequest { epoch: 1, tasks: vec![task(&a), task(&a), task(&b)] }).await;
    let err = r.expect_err("mixed shards");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("tasks[2].fire_id") && err.message().contains("another shard"), "{err:?}");
    let taken: Vec<String> = common::redis_cmd(redis.port, &["KEYS", "*:p:n1"]).expect("keys");
    assert!(taken.is_empty(), "nothing accepted: {taken:?}");
    // One shard's fires pass this check (they are then judged by the epoch and the store).
    let r = n.submit_tasks(pb::SubmitTasksRequest { epoch: 1, tasks: vec![task(&b)] }).await;
    assert!(r.as_ref().err().is_none_or(|e| e.code() != tonic::Code::InvalidArgument), "{r:?}");
}

/// A calendar (issue 16) is kept in every shard: jobs in each of the four shards follow it (the
/// fires in its window recorded skipped, naming it, the others run), a delete is refused while a
/// job in any shard names it (naming jobs of several shards), and once none does it is gone from
/// every shard: no job in any shard can name it.
#[tokio::test]
async fn a_calendar_reaches_every_shard_and_is_deleted_from_all_once_no_job_names_it() {
    let redis = SharedRedis::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--shards", "4"]).await;
    let mut c = node.client().await;
    // One job id per shard.
    let mut ids: BTreeMap<u16, String> = BTreeMap::new();
    for i in 0..64 {
        let id = format!("cal{i}");
        ids.entry(shard_of(&id, SHARDS)).or_insert(id);
    }
    assert_eq!(ids.len(), usize::from(SHARDS));
    let w = (rota::clock::now_ms() / 1000 + 4) * 1000;
    let clock = |ms: i64| rota::job::ms_to_datetime(ms).format("%H:%M:%S").to_string();
    let cal = pb::Calendar {
        name: "pause".into(),
        excluded_windows: vec![format!("{}-{}", clock(w), clock(w + 3_000))],
        ..Default::default()
    };
    c.put_calendar(pb::PutCalendarRequest { calendar: Some(cal), ics: String::new() }).await.expect("put calendar");
    for id in ids.values() {
        let j = pb::Job { calendars: vec!["pause".into()], ..job(id, "* * * * * *", "noop", json!(null)) };
        c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put job");
    }
    for id in ids.values() {
        let got = eventually(WAIT, &format!("{id} ran past the window"), || {
            let mut c = c.clone();
            async move {
                let runs = executions(&mut c, id).await;
                let done = runs.iter().any(|e| common::ms(&e.scheduled_time) == w + 4_000 && e.end_time.is_some());
                done.then_some(runs)
            }
        })
        .await;
        let by_instant: BTreeMap<i64, (i32, String)> = got
            .iter()
            .filter(|e| (w - 1_000..=w + 4_000).contains(&common::ms(&e.scheduled_time)))
            .map(|e| (common::ms(&e.scheduled_time), (e.state, e.error.clone())))
            .collect();
        let skipped = (pb::ExecutionState::Skipped as i32, "skipped: calendar pause".to_string());
        let ok = (pb::ExecutionState::Succeeded as i32, String::new());
        let want: BTreeMap<i64, (i32, String)> = [
            (w - 1_000, ok.clone()),
            (w, skipped.clone()),
            (w + 1_000, skipped.clone()),
            (w + 2_000, skipped),
            (w + 3_000, ok.clone()),
            (w + 4_000, ok),
        ]
        .into_iter()
        .filter(|(t, _)| *t != w - 1_000 || by_instant.contains_key(t))
        .collect();
        assert_eq!(by_instant, want, "{id}");
    }
    let e = c.delete_calendar(pb::DeleteCalendarRequest { name: "pause".into() }).await.expect_err("in use");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let named: Vec<&String> = ids.values().collect();
    for id in &named {
        assert!(e.message().contains(id.as_str()), "{id}: {}", e.message());
    }
    for id in ids.values() {
        c.delete_job(pb::DeleteJobRequest { id: id.clone() }).await.expect("delete job");
    }
    c.delete_calendar(pb::DeleteCalendarRequest { name: "pause".into() }).await.expect("deleted");
    for id in ids.values() {
        let j = pb::Job { calendars: vec!["pause".into()], ..job(id, "* * * * * *", "noop", json!(null)) };
        let e = c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect_err("gone from its shard");
        assert!(e.message().starts_with("calendars[0]: no calendar 'pause'"), "{id}: {}", e.message());
    }
}
