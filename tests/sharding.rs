//! Sharding broadcast (issue 17, PROTOCOL §3.23) through real nodes, a real `redis-server`, real
//! shell processes, real Python and Node.js worker processes and the real `rota` binary: one fire
//! fans out into its shards, each run once, on distinct nodes, told its index and the total; a failed
//! shard retries alone; `shards = all` counts the live nodes at each fire; a shard whose node is
//! killed mid-run is re-run elsewhere by the job's recovery policy; `exec get` and ListExecutions'
//! `group_by_fire` show the fire with its shards; bad input is refused with the field named and
//! nothing written. (The claim of a fire's shards in one step, on both stores, is in
//! `store_conformance.rs`; placement's table in `dispatch`; the chaos runner's sharded jobs in
//! `chaos.rs`.)
#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::workers::{attached, ExtWorker, Sdk};
use common::{agreed_master, eventually, rota, text, Backend, RedisServer, TestNode, NEVER};
use rota::pb;
use serde_json::{json, Value};
use tonic::Code;

const SHELL: [&str; 3] = ["--enable-shell", "--shell-allow", "/bin/sh"];
const WAIT: Duration = Duration::from_secs(40);

/// One line of a run's side log: its fire's instant, shard index, shard total, node, attempt.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Run {
    sched: i64,
    index: u32,
    total: u32,
    node: String,
    attempt: u32,
}

/// The shell a job's shards run: one line per run into `log`, then `tail` (more shell).
fn logging(log: &Path, tail: &str) -> String {
    let line = "$ROTA_SCHEDULED_AT_MS $ROTA_SHARD_INDEX $ROTA_SHARD_TOTAL $ROTA_NODE_ID $ROTA_ATTEMPT";
    json!({ "sh": format!("echo \"{line}\" >> {}; {tail}", log.display()) }).to_string()
}

fn runs(log: &Path) -> Vec<Run> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some(Run {
                sched: f.first()?.parse().ok()?,
                index: f.get(1)?.parse().ok()?,
                total: f.get(2)?.parse().ok()?,
                node: f.get(3)?.to_string(),
                attempt: f.get(4)?.parse().ok()?,
            })
        })
        .collect()
}

fn by_instant(runs: &[Run]) -> BTreeMap<i64, Vec<Run>> {
    let mut m: BTreeMap<i64, Vec<Run>> = BTreeMap::new();
    for r in runs {
        m.entry(r.sched).or_default().push(r.clone());
    }
    m
}

async fn put(node: &TestNode, args: &[&str]) {
    let o = rota(node, &[&["job", "put"], args].concat()).await;
    assert_eq!(o.status.code(), Some(0), "put {args:?}: {}", text(&o));
}

async fn pause(node: &TestNode, id: &str) {
    let o = rota(node, &["job", "pause", id]).await;
    assert_eq!(o.status.code(), Some(0), "pause: {}", text(&o));
}

/// Three nodes on one Redis with shell, each seeing the other two live.
async fn three(redis: &RedisServer, extra: &[&str]) -> Vec<TestNode> {
    common::three_live(redis, &[&SHELL[..], extra].concat()).await
}

/// ListExecutions of one whole fire, grouped.
async fn fire(node: &TestNode, job: &str, fire_id: &str) -> pb::ListExecutionsResponse {
    let req = pb::ListExecutionsRequest {
        job_id: job.into(),
        fire_id: fire_id.into(),
        page_size: 1000,
        group_by_fire: true,
        ..Default::default()
    };
    node.client().await.list_executions(req).await.expect("list the fire").into_inner()
}

/// A fire of `shards = 3` on three nodes: its three shards run once each, on three distinct nodes,
/// each told its index and the total; shard 1 fails its first attempt and retries alone; the fire
/// reads succeeded once every shard did, through the API (`group_by_fire`) and `rota exec get`.
#[tokio::test]
async fn each_shard_runs_once_on_its_own_node_and_a_failed_shard_retries_alone() {
    let redis = RedisServer::start();
    let nodes = three(&redis, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let fail_first = "if [ \"$ROTA_SHARD_INDEX\" = 1 ] && [ \"$ROTA_ATTEMPT\" = 1 ]; then exit 3; fi";
    let args = logging(&log, fail_first);
    let put_args = ["--id", "fan", "--cron", "*/2 * * * * *", "--handler", "shell", "--args", &args];
    let more = ["--shards", "3", "--retries", "1", "--retry-backoff", "200ms"];
    put(&nodes[0], &[&put_args[..], &more[..]].concat()).await;
    // An instant whose every shard ran, shard 1 twice (its retry).
    let (sched, fired) = eventually(WAIT, "a fire's three shards ran, shard 1 retried", || async {
        by_instant(&runs(&log)).into_iter().find(|(_, r)| r.len() == 4)
    })
    .await;
    pause(&nodes[0], "fan").await;
    let mut got: Vec<(u32, u32, u32)> = fired.iter().map(|r| (r.index, r.total, r.attempt)).collect();
    got.sort();
    assert_eq!(got, [(0, 3, 1), (1, 3, 1), (1, 3, 2), (2, 3, 1)], "{fired:?}");
    let first: BTreeSet<&str> = fired.iter().filter(|r| r.attempt == 1).map(|r| r.node.as_str()).collect();
    assert_eq!(first.len(), 3, "the three shards' first runs went to three nodes: {fired:?}");
    // No instant ran a shard twice (but shard 1's retry), and none ran more than three shards.
    for (at, r) in by_instant(&runs(&log)) {
        let mut seen: Vec<(u32, u32)> = r.iter().map(|x| (x.index, x.attempt)).collect();
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n, "instant {at}: a shard's attempt ran twice: {r:?}");
        assert!(r.iter().all(|x| x.total == 3 && x.index < 3), "{r:?}");
    }
    // The API's view of the whole fire: every shard's executions, one fire, succeeded.
    let whole = format!("fan@{sched}");
    let r = fire(&nodes[1], "fan", &whole).await;
    assert_eq!(r.executions.len(), 4, "{r:?}");
    assert_eq!(r.fires.len(), 1, "{r:?}");
    let f = &r.fires[0];
    assert_eq!((f.fire_id.as_str(), f.shard_total, f.shards_succeeded), (whole.as_str(), 3, 3), "{f:?}");
    assert_eq!(f.state, pb::ExecutionState::Succeeded as i32, "{f:?}");
    let failed: Vec<&pb::Execution> =
        r.executions.iter().filter(|e| e.state == pb::ExecutionState::Failed as i32).collect();
    assert_eq!(failed.len(), 1, "{r:?}");
    assert_eq!((failed[0].shard_index, failed[0].shard_total), (1, 3));
    assert_eq!(failed[0].fire_id, format!("{whole}/1of3"));
    assert!(failed[0].next_attempt_time.is_some(), "its retry was announced: {:?}", failed[0]);
    // One shard's fire id lists that shard alone.
    let one = fire(&nodes[1], "fan", &format!("{whole}/1of3")).await;
    assert_eq!(one.executions.len(), 2, "{one:?}");
    // `rota exec get` shows a shard's execution with its fire's shards.
    let o = rota(&nodes[2], &["exec", "get", &failed[0].id]).await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains(&format!("fire {whole}: succeeded (3 of 3 shards succeeded")), "{out}");
    for i in 0..3 {
        assert!(out.contains(&format!("{i}/3")), "shard {i} listed: {out}");
    }
    let o = rota(&nodes[2], &["exec", "get", &failed[0].id, "--json"]).await;
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        (&v["shard_index"], &v["fire"]["shard_total"], &v["fire"]["state"]),
        (&json!(1), &json!(3), &json!("succeeded"))
    );
    // `exec list --group-by-fire`: the fire on one line.
    let o = rota(&nodes[0], &["exec", "list", "--fire", &whole, "--group-by-fire"]).await;
    let out = text(&o);
    assert!(out.lines().any(|l| l.starts_with(&whole) && l.contains("succeeded")), "{out}");
    // `job get` says how it fans out.
    let o = rota(&nodes[0], &["job", "get", "fan", "--json"]).await;
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["shards"], json!(3), "{v}");
}

/// `shards = all`: one shard per live node at each fire's claim. With three nodes a fire has three
/// shards, one on each; once a node is killed and declared dead, fires have two, on the two left.
#[tokio::test]
async fn shards_all_fans_out_over_the_nodes_live_at_each_fire() {
    let redis = RedisServer::start();
    let mut nodes = three(&redis, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let args = logging(&log, "true");
    put(&nodes[0], &["--id", "all", "--cron", "* * * * * *", "--handler", "shell", "--args", &args, "--shards", "all"])
        .await;
    let three_way = eventually(WAIT, "a fire ran on all three nodes", || async {
        by_instant(&runs(&log)).into_values().find(|r| r.len() == 3)
    })
    .await;
    let on: BTreeSet<&str> = three_way.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(on.len(), 3, "{three_way:?}");
    assert!(three_way.iter().all(|r| r.total == 3), "{three_way:?}");
    let (master, _) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let victim = nodes.iter().position(|n| n.node_id != master).expect("a node that is not master");
    let gone = nodes[victim].node_id.clone();
    nodes[victim].kill();
    let killed_at = rota::clock::now_ms();
    // Fires claimed after its death was noticed: two shards, on the two nodes left.
    let later = eventually(WAIT, "fires fan out over the two nodes left", || async {
        by_instant(&runs(&log))
            .into_iter()
            .filter(|(at, r)| *at > killed_at + 3_000 && r.len() == 2 && r.iter().all(|x| x.total == 2))
            .nth(1)
    })
    .await;
    let left = &nodes[0];
    let alive = if victim == 0 { &nodes[1] } else { left };
    pause(alive, "all").await;
    let on: BTreeSet<&str> = later.1.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(on.len(), 2, "{later:?}");
    assert!(!on.contains(gone.as_str()), "{later:?}");
}

/// A shard whose node is killed while it runs is re-run elsewhere (recovery `rerun`): the fire ends
/// succeeded, that shard with a lost attempt and a succeeded one on another node; the other shards
/// ran once.
#[tokio::test]
async fn a_shard_lost_with_its_node_is_recovered_by_the_jobs_policy() {
    let redis = RedisServer::start();
    let mut nodes = three(&redis, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs");
    let args = logging(&log, "sleep 3");
    let put_args = ["--id", "slow", "--cron", "*/10 * * * * *", "--handler", "shell", "--args", &args];
    put(&nodes[0], &[&put_args[..], &["--shards", "3", "--recovery", "rerun"]].concat()).await;
    let started = eventually(Duration::from_secs(60), "a fire's three shards started", || async {
        by_instant(&runs(&log)).into_iter().find(|(_, r)| r.len() == 3)
    })
    .await;
    let (master, _) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let alive = nodes.iter().position(|n| n.node_id == master).expect("master");
    pause(&nodes[alive], "slow").await;
    let victim_run =
        started.1.iter().find(|r| r.node != master).cloned().expect("a shard runs on a node that is not master");
    let victim = nodes.iter().position(|n| n.node_id == victim_run.node).expect("its node");
    nodes[victim].kill();
    let whole = format!("slow@{}", started.0);
    let r = eventually(Duration::from_secs(60), "the fire ended succeeded, its lost shard re-run", || async {
        let r = fire(&nodes[alive], "slow", &whole).await;
        (r.fires.first()?.state == pb::ExecutionState::Succeeded as i32).then_some(r)
    })
    .await;
    let f = &r.fires[0];
    assert_eq!((f.shard_total, f.shards_succeeded), (3, 3), "{f:?}");
    let of = |i: u32| -> Vec<&pb::Execution> { r.executions.iter().filter(|e| e.shard_index == i).collect() };
    let lost = of(victim_run.index);
    assert!(
        lost.iter().any(|e| e.state == pb::ExecutionState::Lost as i32 && e.node_id == victim_run.node),
        "{lost:?}"
    );
    let rerun: Vec<&&pb::Execution> = lost.iter().filter(|e| e.state == pb::ExecutionState::Succeeded as i32).collect();
    assert_eq!(rerun.len(), 1, "{lost:?}");
    assert_ne!(rerun[0].node_id, victim_run.node, "re-run on another node");
    for i in (0..3).filter(|i| *i != victim_run.index) {
        let e = of(i);
        assert_eq!(e.len(), 1, "shard {i} ran once: {e:?}");
        assert_eq!(e[0].state, pb::ExecutionState::Succeeded as i32, "{e:?}");
    }
}

/// A sharded job's fires reach external workers with their shard: each worker run is told its
/// index and the total (FireTask's shard_index and shard_total, the SDK's context).
#[tokio::test]
async fn a_python_worker_is_told_its_shard() {
    told_its_shard(Sdk::Python).await
}

#[tokio::test]
async fn a_node_worker_is_told_its_shard() {
    told_its_shard(Sdk::Node).await
}

async fn told_its_shard(sdk: Sdk) {
    let h = format!("{}.echo", sdk.prefix());
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let _w = ExtWorker::start_on(sdk, &[&node.addr], "w-1", 4, None);
    attached(&node, &h).await;
    put(&node, &["--id", "ext", "--cron", "*/2 * * * * *", "--handler", &h, "--shards", "2"]).await;
    let done = eventually(WAIT, "a fire's two shards succeeded in the worker", || async {
        let all = common::executions(&mut node.client().await, "ext").await;
        let mut by: BTreeMap<String, Vec<pb::Execution>> = BTreeMap::new();
        for e in all.into_iter().filter(|e| e.state == pb::ExecutionState::Succeeded as i32) {
            by.entry(rota::execution::FireId::whole(&e.fire_id).to_string()).or_default().push(e);
        }
        by.into_values().find(|v| v.len() == 2)
    })
    .await;
    pause(&node, "ext").await;
    let mut told: Vec<(Value, Value, u32)> = done
        .iter()
        .map(|e| {
            let ret = e.output.split_once('\n').map_or(e.output.as_str(), |(_, r)| r);
            let v: Value = serde_json::from_str(ret).expect("the handler's JSON");
            (v["shard_index"].clone(), v["shard_total"].clone(), e.shard_index)
        })
        .collect();
    told.sort_by_key(|t| t.2);
    assert_eq!(told, [(json!(0), json!(2), 0), (json!(1), json!(2), 1)]);
}

/// Bad sharding input is refused with the field named, nothing written, the node unharmed; a
/// manual fire of a sharded job is refused (not built yet), saying so.
#[tokio::test]
async fn bad_sharding_input_is_refused_naming_the_field() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &SHELL).await;
    let base = ["job", "put", "--id", "bad", "--cron", NEVER, "--handler", "shell", "--args", r#"{"sh":"true"}"#];
    for (extra, says) in [
        (vec!["--shards", "129"], "more than 128"),
        (vec!["--shards", "two"], "--shards"),
        (vec!["--shards", "-1"], "'-1'"),
        (vec!["--shards", "3", "--concurrency", "forbid"], "concurrency allow"),
        (vec!["--shards", "all", "--routing", "round_robin"], "no routing strategy"),
        (vec!["--shards", "2", "--master-only"], "master-only"),
    ] {
        let o = rota(&node, &[&base[..], &extra[..]].concat()).await;
        let out = text(&o);
        assert_ne!(o.status.code(), Some(0), "{extra:?} was accepted: {out}");
        assert!(out.contains(says), "{extra:?}: {out}");
        if !says.starts_with("--") && !says.starts_with('\'') {
            assert!(out.contains("shards"), "the field is named: {out}");
        }
    }
    let mut c = node.client().await;
    // Both a count and per-node: one or the other.
    let mut j = rota::cli::pb_job(&rota::job::JobSpec {
        id: "bad".into(),
        cron: NEVER.into(),
        handler: "noop".into(),
        ..Default::default()
    });
    j.shards = 3;
    j.shards_per_node = true;
    let e = c.put_job(pb::PutJobRequest { job: Some(j.clone()) }).await.expect_err("both");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("shards"), "{e:?}");
    let e = c.get_job(pb::GetJobRequest { id: "bad".into() }).await.expect_err("nothing written");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // A jobs file's bad value names the key.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(&file, "[[job]]\nid = \"f\"\ncron = \"@daily\"\nhandler = \"noop\"\nshards = \"half\"\n")
        .expect("write");
    let o = rota(&node, &["job", "put", "--file", file.to_str().expect("path")]).await;
    let out = text(&o);
    assert_ne!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("key 'shards'") && out.contains("count from 1 to 128, or all"), "{out}");
    // A fire id with a bad shard part.
    for bad in ["x@1000/3of3", "x@1000/0of0", "x@1000/1of200"] {
        let req = pb::ListExecutionsRequest { fire_id: bad.into(), ..Default::default() };
        let e = c.list_executions(req).await.expect_err(bad);
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
        assert!(e.message().contains("fire_id") && e.message().contains("shard"), "{bad}: {e:?}");
    }
    // A manual fire of a sharded job: refused, saying why; nothing runs.
    j.shards_per_node = false;
    c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("a sharded job");
    let e = c
        .trigger_job(pb::TriggerJobRequest { id: "bad".into(), ..Default::default() })
        .await
        .expect_err("a manual fire of a sharded job");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("sharded") && e.message().contains("nothing was triggered"), "{e:?}");
    assert!(common::executions(&mut c, "bad").await.is_empty());
    // The node is unharmed.
    assert!(node.health().await.is_some());
}
