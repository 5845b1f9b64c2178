//! rota on a real Redis Cluster (3 primaries, 3 replicas) and on a real Sentinel setup (a primary,
//! a replica, three Sentinels), at one shard: every key carries one hash tag, so on a Redis Cluster
//! they all live in one slot. Each failover test reports what it delayed and what it lost (printed
//! with `--nocapture`); what a failover may lose is described in docs/PROTOCOL.md ("Redis
//! deployments").
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    agreed_master, eventually, executions, job, ms, state, status, Backend, RedisCluster, RedisSentinels, TestNode,
};
use rota::pb;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// Where the nodes' handler logs each run, outside Redis (the `sidelog` handler, built with the
/// `failpoints` feature; without it the jobs run `noop` and only the records are counted).
struct Runs {
    dir: tempfile::TempDir,
}

impl Runs {
    fn new() -> Runs {
        Runs { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn path(&self) -> String {
        self.dir.path().join("runs.log").display().to_string()
    }

    async fn node(&self, b: &Backend, id: &str) -> TestNode {
        self.node_with(b, id, &[]).await
    }

    async fn node_with(&self, b: &Backend, id: &str, extra: &[&str]) -> TestNode {
        TestNode::start_env(b, id, extra, &[("ROTA_SIDELOG", &self.path())]).await
    }

    /// Scheduled seconds the handler ran more than once (None without the side log).
    fn ran_twice(&self) -> Option<usize> {
        if !cfg!(feature = "failpoints") {
            return None;
        }
        let text = std::fs::read_to_string(self.path()).unwrap_or_default();
        let mut runs: BTreeMap<(String, String), usize> = BTreeMap::new();
        for l in text.lines().filter(|l| l.starts_with("S\t")) {
            let f: Vec<&str> = l.split('\t').collect();
            *runs.entry((f[1].to_string(), f[2].to_string())).or_default() += 1;
        }
        Some(runs.values().filter(|n| **n > 1).count())
    }

    /// Handler runs that began in [from_ms, to_ms] (None without the side log).
    fn began_between(&self, from_ms: i64, to_ms: i64) -> Option<usize> {
        if !cfg!(feature = "failpoints") {
            return None;
        }
        let text = std::fs::read_to_string(self.path()).unwrap_or_default();
        let at = |l: &str| l.split('\t').nth(7).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        Some(text.lines().filter(|l| l.starts_with("S\t") && (from_ms..=to_ms).contains(&at(l))).count())
    }
}

async fn put_jobs(node: &TestNode, n: usize) -> Vec<String> {
    let mut c = node.client().await;
    let ids: Vec<String> = (0..n).map(|i| format!("every-second-{i}")).collect();
    let (handler, args) =
        if cfg!(feature = "failpoints") { ("sidelog", json!({"ms": 0})) } else { ("noop", json!(null)) };
    for id in &ids {
        c.put_job(pb::PutJobRequest { job: Some(job(id, "* * * * * *", handler, args.clone())) }).await.expect("put");
    }
    ids
}

/// What the jobs' records say: per job, each scheduled second from the first recorded to the last.
#[derive(Debug, Default)]
struct Report {
    fires: usize,
    /// Seconds recorded more than once.
    dups: usize,
    /// Seconds between the first and last recorded that have no record.
    gaps: usize,
    /// Fires that started more than a second after their scheduled time, and the latest start.
    late: usize,
    max_late_ms: i64,
    /// Records by state name.
    states: BTreeMap<String, usize>,
    /// The errors of the records that did not succeed (their first 100 characters), and how many.
    errors: BTreeMap<String, usize>,
}

async fn report(node: &TestNode, jobs: &[String]) -> Report {
    let mut c = node.client().await;
    let mut r = Report::default();
    for j in jobs {
        let mut by_fire: BTreeMap<i64, usize> = BTreeMap::new();
        for e in executions(&mut c, j).await {
            let at = ms(&e.scheduled_time);
            *by_fire.entry(at).or_default() += 1;
            *r.states.entry(format!("{:?}", state(&e))).or_default() += 1;
            if !e.error.is_empty() {
                *r.errors.entry(e.error.chars().take(100).collect()).or_default() += 1;
            }
            let started = ms(&e.start_time);
            if started > 0 && started - at > 1000 {
                r.late += 1;
                r.max_late_ms = r.max_late_ms.max(started - at);
            }
            r.fires += 1;
        }
        r.dups += by_fire.values().filter(|n| **n > 1).count();
        if let (Some(first), Some(last)) = (by_fire.keys().next(), by_fire.keys().last()) {
            r.gaps += ((last - first) / 1000 + 1) as usize - by_fire.len();
        }
    }
    r
}

/// After a failover: lets the last fires settle, prints what the records say (late, lost, doubled)
/// with the run log's double runs beside `timings`, and waits until every node serves again.
async fn settle_and_report(what: &str, timings: &str, nodes: &[TestNode], jobs: &[String], runs: &Runs) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = report(&nodes[0], jobs).await;
    eprintln!("{what}, {timings}; {r:?}; seconds run twice: {:?}", runs.ran_twice());
    for n in nodes {
        n.wait_serving().await;
    }
}

/// Waits until every job has a succeeded fire scheduled after `after_ms`.
async fn fires_after(node: &TestNode, jobs: &[String], after_ms: i64, what: &str) {
    eventually(WAIT, what, || async {
        let mut c = node.client().await;
        for j in jobs {
            // A read may fail while the store is failing over: ask again.
            let r = c
                .list_executions(pb::ListExecutionsRequest {
                    job_id: j.clone(),
                    state: pb::ExecutionState::Succeeded as i32,
                    page_size: 1000,
                    page_token: String::new(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            if !r.executions.iter().any(|e| ms(&e.scheduled_time) > after_ms) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

type Watch = tonic::Streaming<pb::WatchExecutionsResponse>;

async fn watch(node: &TestNode, job: &str) -> Watch {
    let mut c = node.client().await;
    c.watch_executions(pb::WatchExecutionsRequest { job_id: job.into() }).await.expect("watch").into_inner()
}

/// Waits until the watch stream shows a fire scheduled after `after_ms` succeed.
async fn watched_after(stream: &mut Watch, after_ms: i64, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
            Ok(Ok(Some(m))) => {
                let e = m.execution.expect("execution");
                if ms(&e.scheduled_time) > after_ms && state(&e) == pb::ExecutionState::Succeeded {
                    return;
                }
            }
            Ok(Ok(None)) | Ok(Err(_)) => panic!("the watch stream ended: {what}"),
            Err(_) => {}
        }
    }
}

/// Kills `old`, the primary of `key`'s slot, and waits until a replica takes the slot over: when it
/// was killed (instant, ms), the new primary, and how long the promotion took.
async fn kill_until_promoted(redis: &mut RedisCluster, key: &str, old: u16) -> (Instant, i64, u16, Duration) {
    let killed_at = Instant::now();
    let killed_ms = rota::store::now_ms();
    redis.server(old).kill();
    let new = eventually(WAIT, "a replica takes over the slot", || async {
        let p = redis.primary_of(key, &[old]);
        (p != old).then_some(p)
    })
    .await;
    (killed_at, killed_ms, new, killed_at.elapsed())
}

fn by_id<'a>(nodes: &'a mut [TestNode], id: &str) -> &'a mut TestNode {
    nodes.iter_mut().find(|n| n.node_id == id).expect("node")
}

#[tokio::test]
async fn a_rota_cluster_on_redis_cluster_fires_once_and_survives_a_master_kill() {
    let redis = RedisCluster::start();
    let b = Backend::Redis(redis.url());
    let runs = Runs::new();
    let mut nodes = vec![runs.node(&b, "n1").await, runs.node(&b, "n2").await, runs.node(&b, "n3").await];
    let (master, epoch) = agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let jobs = put_jobs(&nodes[0], 5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    by_id(&mut nodes, &master).kill();
    let survivors: Vec<&TestNode> = nodes.iter().filter(|n| n.node_id != master).collect();
    let new_epoch = eventually(WAIT, "a new master", || async {
        let s = status(survivors[0]).await?;
        (!s.master_id.is_empty() && s.master_id != master).then_some(s.epoch)
    })
    .await;
    assert!(new_epoch > epoch);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = report(survivors[0], &jobs).await;
    eprintln!("redis cluster, rota master killed: {r:?}; seconds run twice: {:?}", runs.ran_twice());
    assert!(runs.ran_twice().unwrap_or(0) == 0, "a fire ran twice");
    assert!(r.fires >= 5 * 5, "{r:?}");
    assert_eq!((r.dups, r.gaps), (0, 0), "{r:?}");
}

#[tokio::test]
async fn a_node_on_redis_cluster_resumes_after_the_primary_of_its_slot_fails_over() {
    let mut redis = RedisCluster::start();
    let key = rota::store::keys::Keys::new("rota", "default").lease();
    let old = redis.primary_of(&key, &[]);
    // The change channel's subscription starts on the primary that is killed: it must move.
    let b = Backend::Redis(redis.url_first(old));
    let runs = Runs::new();
    let nodes = [runs.node(&b, "n1").await, runs.node(&b, "n2").await];
    agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let jobs = put_jobs(&nodes[0], 5).await;
    let mut changes = watch(&nodes[1], &jobs[0]).await;
    watched_after(&mut changes, 0, "changes published on the Redis Cluster reach a watcher").await;
    let (killed_at, killed_ms, new, promoted) = kill_until_promoted(&mut redis, &key, old).await;
    redis.wait_ok(&[old]);
    let after = rota::store::now_ms();
    fires_after(&nodes[0], &jobs, after, "fires resume after the failover").await;
    let resumed = killed_at.elapsed();
    watched_after(&mut changes, after, "the watcher sees fires after the failover").await;
    let timings = format!(
        "primary {old} killed at {killed_ms}: replica {new} promoted after {} ms, fires resumed after {} ms",
        promoted.as_millis(),
        resumed.as_millis()
    );
    settle_and_report("redis cluster", &timings, &nodes, &jobs, &runs).await;
}

/// Strict mode on a Redis Cluster: the primary of rota's slot killed under load, its replica
/// promoted, the old primary back as the new one's replica. No fire runs twice: every write a fire
/// ran on was on the replica before it counted. Until the old primary is back, the new one has no
/// replica to acknowledge, and nothing runs (fires wait; the report says how late).
#[tokio::test]
async fn in_strict_mode_a_killed_primary_of_the_redis_cluster_runs_no_fire_twice() {
    let mut redis = RedisCluster::start();
    let key = rota::store::keys::Keys::new("rota", "default").lease();
    let old = redis.primary_of(&key, &[]);
    let b = Backend::Redis(redis.url());
    let runs = Runs::new();
    let strict = ["--redis-wait-replicas", "1"];
    let nodes = [runs.node_with(&b, "n1", &strict).await, runs.node_with(&b, "n2", &strict).await];
    agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let jobs = put_jobs(&nodes[0], 5).await;
    fires_after(&nodes[0], &jobs, rota::store::now_ms(), "fires in strict mode on a Redis Cluster").await;
    let (killed_at, killed_ms, new, promoted) = kill_until_promoted(&mut redis, &key, old).await;
    // Back empty (no persistence), it rejoins as the new primary's replica and resyncs.
    redis.server(old).restart();
    redis.wait_ok(&[]);
    let rejoined = killed_at.elapsed();
    let after = rota::store::now_ms();
    // Strict mode is in force: with no replica to acknowledge, nothing began (a second of margin
    // each side: a start acknowledged just before the kill, a replica's first acknowledgement just
    // before `wait_ok` saw its link up).
    if let Some(began) = runs.began_between(killed_ms + 1000, after - 1000) {
        assert_eq!(began, 0, "handlers began while the slot's primary had no replica");
    }
    fires_after(&nodes[0], &jobs, after, "fires resume once the new primary has a replica").await;
    let resumed = killed_at.elapsed();
    let timings = format!(
        "strict mode, primary {old} killed: replica {new} promoted after {} ms, old primary its replica after {} ms, \
         fires resumed after {} ms",
        promoted.as_millis(),
        rejoined.as_millis(),
        resumed.as_millis()
    );
    settle_and_report("redis cluster, strict mode", &timings, &nodes, &jobs, &runs).await;
    if let Some(twice) = runs.ran_twice() {
        assert_eq!(twice, 0, "seconds run twice in strict mode");
    }
}

#[tokio::test]
async fn nodes_on_sentinel_follow_the_primary_through_a_failover() {
    let mut redis = RedisSentinels::start();
    let b = Backend::Redis(redis.url());
    let runs = Runs::new();
    let nodes = [runs.node(&b, "n1").await, runs.node(&b, "n2").await];
    agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let jobs = put_jobs(&nodes[0], 5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let old = redis.primary.port;
    assert_eq!(redis.reported_primary(), Some(old));
    let killed_at = Instant::now();
    redis.primary.kill();
    eventually(WAIT, "the Sentinels promote the replica", || async {
        (redis.reported_primary() == Some(redis.replica.port)).then_some(())
    })
    .await;
    let promoted = killed_at.elapsed();
    fires_after(&nodes[0], &jobs, rota::store::now_ms(), "fires resume on the new primary").await;
    let resumed = killed_at.elapsed();
    let timings = format!(
        "primary killed: replica promoted after {} ms, fires resumed after {} ms",
        promoted.as_millis(),
        resumed.as_millis()
    );
    settle_and_report("sentinel", &timings, &nodes, &jobs, &runs).await;
}

#[tokio::test]
async fn nodes_on_sentinel_follow_a_requested_failover_to_the_replica() {
    requested_failover(&[]).await;
}

/// Strict mode: the same requested failover runs no fire twice (without it, about one second of
/// fires ran twice in each run: what the old primary took after the switch was lost, claimed again
/// and run again).
#[tokio::test]
async fn in_strict_mode_a_requested_failover_runs_no_fire_twice() {
    let runs = requested_failover(&["--redis-wait-replicas", "1"]).await;
    if let Some(twice) = runs.ran_twice() {
        assert_eq!(twice, 0, "seconds run twice in strict mode");
    }
}

/// Strict mode against a Redis with no replica: no write of a fire is acknowledged, so nothing runs
/// (and the node says why); the same node without it fires.
#[tokio::test]
async fn in_strict_mode_nothing_runs_while_no_replica_acknowledges() {
    let redis = common::RedisServer::start();
    let b = Backend::Redis(redis.url());
    let runs = Runs::new();
    let mut node = runs.node_with(&b, "n1", &["--redis-wait-replicas", "1", "--redis-wait-timeout-ms", "50"]).await;
    let jobs = put_jobs(&node, 2).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = report(&node, &jobs).await;
    let ran = r.states.get("Succeeded").copied().unwrap_or(0);
    assert_eq!(ran, 0, "{r:?}");
    assert!(node.log().contains("replicas within 50 ms (strict mode)"), "the node says why:\n{}", node.log());
    node.terminate();
    let node = runs.node(&b, "n1").await;
    fires_after(&node, &jobs, rota::store::now_ms(), "fires without strict mode").await;
}

/// A `SENTINEL FAILOVER` under a steady load, with the nodes started with `extra`: reports what
/// it delayed and doubled, and returns the run log.
async fn requested_failover(extra: &[&str]) -> Runs {
    let redis = RedisSentinels::start();
    let b = Backend::Redis(redis.url());
    let runs = Runs::new();
    let nodes = [runs.node_with(&b, "n1", extra).await, runs.node_with(&b, "n2", extra).await];
    agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let jobs = put_jobs(&nodes[0], 5).await;
    let mut changes = watch(&nodes[1], &jobs[0]).await;
    watched_after(&mut changes, 0, "changes reach a watcher through Sentinel").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The old primary stays up and becomes a replica: the nodes' writes to it get READONLY.
    let asked_at = Instant::now();
    let ok: Option<String> =
        common::redis_cmd(redis.sentinels[0].port, &["SENTINEL", "FAILOVER", common::SENTINEL_MASTER]);
    assert_eq!(ok.as_deref(), Some("OK"));
    eventually(WAIT, "the Sentinels switch to the replica", || async {
        (redis.reported_primary() == Some(redis.replica.port)).then_some(())
    })
    .await;
    let switched = asked_at.elapsed();
    // Until the Sentinels turn the old primary into a replica, the nodes may still write to it.
    eventually(WAIT, "the old primary becomes a replica", || async {
        let role: Option<String> = common::redis_cmd(redis.primary.port, &["INFO", "replication"]);
        role.is_some_and(|r| r.contains("role:slave")).then_some(())
    })
    .await;
    let demoted = asked_at.elapsed();
    let after = rota::store::now_ms();
    fires_after(&nodes[0], &jobs, after, "fires resume on the new primary").await;
    let resumed = asked_at.elapsed();
    watched_after(&mut changes, after, "the watcher sees fires after the failover").await;
    let timings = format!(
        "SENTINEL FAILOVER: switched after {} ms, old primary a replica after {} ms, fires resumed after {} ms",
        switched.as_millis(),
        demoted.as_millis(),
        resumed.as_millis()
    );
    settle_and_report(&format!("sentinel {extra:?}"), &timings, &nodes, &jobs, &runs).await;
    // The nodes write to the new primary: the fires after the switch are there.
    let on_new: Option<Vec<String>> = common::redis_cmd(redis.replica.port, &["KEYS", "{rota:default:0}:exec:*"]);
    assert!(on_new.is_some_and(|k| !k.is_empty()), "records on the new primary");
    runs
}
