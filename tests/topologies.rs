//! rota on a real Redis Cluster (3 primaries, 3 replicas) and on a real Sentinel setup (a primary,
//! a replica, three Sentinels; and one with TLS and passwords everywhere), at one shard: every key
//! carries one hash tag, so on a Redis Cluster they all live in one slot. Each failover test reports what it delayed and what it lost (printed
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
    let on_new: Option<Vec<String>> = common::redis_cmd(redis.replica.port, &["KEYS", "{rota:default:0}:fire:*"]);
    assert!(on_new.is_some_and(|k| !k.is_empty()), "records on the new primary");
    runs
}

/// A process the test started, killed when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sentinel with TLS everywhere and a password on each side: a primary and a replica that speak
/// only TLS (`--port 0`) and need `PRIMARY_PW`, and three Sentinels that speak only TLS and need
/// `SENTINEL_PW` (their own `requirepass`), all with certificates from one CA.
struct SecuredSentinels {
    pki: common::pki::Pki,
    primary: (u16, Option<Proc>),
    replica: (u16, Proc),
    sentinels: Vec<(u16, Proc)>,
    _dir: tempfile::TempDir,
}

const PRIMARY_PW: &str = "primary-pw-5521";
const SENTINEL_PW: &str = "sentinel-pw-7734";

impl SecuredSentinels {
    fn start() -> SecuredSentinels {
        let pki = common::pki::Pki::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = [
            format!("tls-cert-file {}", pki.path("node.pem")),
            format!("tls-key-file {}", pki.path("node.key")),
            format!("tls-ca-cert-file {}", pki.path("ca.pem")),
            "tls-auth-clients no".to_string(),
            "tls-replication yes".to_string(),
        ];
        // One config file per process: a server's lines, then the role's own.
        let spawn = |name: &str, port: u16, own: &[String], sentinel: bool| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).expect("dir");
            let mut conf = format!("port 0\ntls-port {port}\nbind 127.0.0.1\ndir {}\n", d.display());
            for l in tls.iter().chain(own) {
                conf.push_str(l);
                conf.push('\n');
            }
            let path = d.join("redis.conf");
            std::fs::write(&path, conf).expect("conf");
            let mut cmd = std::process::Command::new("redis-server");
            cmd.arg(&path);
            if sentinel {
                cmd.arg("--sentinel");
            }
            Proc(cmd.stdout(std::process::Stdio::null()).spawn().expect("redis-server"))
        };
        let data = [
            "save \"\"".to_string(),
            "appendonly no".to_string(),
            format!("requirepass {PRIMARY_PW}"),
            format!("masterauth {PRIMARY_PW}"),
        ];
        let p = common::free_port();
        let primary = spawn("primary", p, &data, false);
        let r = common::free_port();
        let mut replica_conf = data.to_vec();
        replica_conf.push(format!("replicaof 127.0.0.1 {p}"));
        let replica = spawn("replica", r, &replica_conf, false);
        let sentinels = (0..3)
            .map(|i| {
                let port = common::free_port();
                let own = [
                    format!("requirepass {SENTINEL_PW}"),
                    format!("sentinel monitor {} 127.0.0.1 {p} 2", common::SENTINEL_MASTER),
                    format!("sentinel auth-pass {} {PRIMARY_PW}", common::SENTINEL_MASTER),
                    format!("sentinel sentinel-pass {SENTINEL_PW}"),
                    format!("sentinel down-after-milliseconds {} 1000", common::SENTINEL_MASTER),
                    format!("sentinel failover-timeout {} 10000", common::SENTINEL_MASTER),
                ];
                (port, spawn(&format!("sentinel{i}"), port, &own, true))
            })
            .collect();
        let s = SecuredSentinels { pki, primary: (p, Some(primary)), replica: (r, replica), sentinels, _dir: dir };
        common::eventually_sync(
            Duration::from_secs(30),
            "the secured Sentinels find each other and the replica",
            || {
                let ready = s.sentinels.iter().all(|(port, _)| {
                    let others = s.cli(*port, SENTINEL_PW, &["SENTINEL", "SENTINELS", common::SENTINEL_MASTER]);
                    let replicas = s.cli(*port, SENTINEL_PW, &["SENTINEL", "REPLICAS", common::SENTINEL_MASTER]);
                    others.matches("\nname\n").count() + usize::from(others.starts_with("name\n")) == 2
                        && replicas.contains(&r.to_string())
                }) && s.cli(r, PRIMARY_PW, &["INFO", "replication"]).contains("master_link_status:up");
                ready.then_some(())
            },
        );
        s
    }

    /// A command through redis-cli over TLS with a password; its output ("" when it fails).
    fn cli(&self, port: u16, password: &str, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert", &self.pki.path("ca.pem"), "-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["--no-auth-warning", "-a", password])
            .args(args)
            .output();
        out.ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The primary's port as every Sentinel reports it (None while they disagree).
    fn reported_primary(&self) -> Option<u16> {
        let seen: Vec<Option<u16>> = self
            .sentinels
            .iter()
            .map(|(port, _)| {
                let out =
                    self.cli(*port, SENTINEL_PW, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", common::SENTINEL_MASTER]);
                out.lines().nth(1).and_then(|p| p.trim().parse().ok())
            })
            .collect();
        seen.windows(2).all(|w| w[0] == w[1]).then(|| seen[0]).flatten()
    }

    /// `rediss+sentinel://` with the primary's password (the Sentinels' comes from the environment).
    fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|(p, _)| format!("127.0.0.1:{p}")).collect();
        format!("rediss+sentinel://:{PRIMARY_PW}@{}/{}", hosts.join(","), common::SENTINEL_MASTER)
    }
}

/// `rediss+sentinel://` with passwords on the primary and on the Sentinels (their own, from
/// `ROTA_REDIS_SENTINEL_PASSWORD`): nodes fire through it, follow the primary through a failover
/// over TLS, and no log shows either password. A node without the Sentinels' password, or one that
/// does not trust the CA, does not serve.
#[tokio::test]
async fn nodes_reach_redis_through_sentinels_with_tls_and_passwords() {
    let mut redis = SecuredSentinels::start();
    let b = Backend::Redis(redis.url());
    let ca = redis.pki.path("ca.pem");
    let flags = ["--redis-ca-file", ca.as_str()];
    let runs = Runs::new();
    let log = runs.path();
    let env = [("ROTA_REDIS_SENTINEL_PASSWORD", SENTINEL_PW), ("ROTA_SIDELOG", log.as_str())];
    let nodes = [TestNode::start_env(&b, "n1", &flags, &env).await, TestNode::start_env(&b, "n2", &flags, &env).await];
    agreed_master(&nodes.iter().collect::<Vec<_>>()).await;
    let jobs = put_jobs(&nodes[0], 3).await;
    fires_after(&nodes[0], &jobs, rota::store::now_ms(), "fires through TLS Sentinels").await;
    // Without the Sentinels' password, or without the CA: not serving.
    let no_password = TestNode::spawn(&b, "n3", &flags);
    let untrusting = TestNode::spawn_env(&b, "n4", &[], &env[..1]);
    // The primary dies; the Sentinels promote the replica; the nodes follow, over TLS.
    let (old, killed_at) = (redis.primary.0, Instant::now());
    assert_eq!(redis.reported_primary(), Some(old));
    redis.primary.1 = None;
    let promoted = redis.replica.0;
    eventually(WAIT, "the Sentinels promote the replica", || async {
        (redis.reported_primary() == Some(promoted)).then_some(())
    })
    .await;
    fires_after(&nodes[0], &jobs, rota::store::now_ms(), "fires resume on the new primary over TLS").await;
    let timings = format!("primary killed: fires resumed after {} ms", killed_at.elapsed().as_millis());
    settle_and_report("sentinel over TLS with passwords", &timings, &nodes, &jobs, &runs).await;
    // The records on the new primary: every second once, from the first to the last.
    let r = report(&nodes[0], &jobs).await;
    assert_eq!((r.dups, r.gaps), (0, 0), "{r:?}");
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    for n in [&no_password, &untrusting] {
        assert_eq!(n.health().await, Some(not_serving), "{} serves", n.node_id);
    }
    assert!(
        no_password.log().contains("NOAUTH") || no_password.log().contains("uthentication"),
        "{}",
        no_password.log()
    );
    for n in nodes.iter().chain([&no_password, &untrusting]) {
        let log = n.log();
        for secret in [PRIMARY_PW, SENTINEL_PW] {
            assert!(!log.contains(secret), "a password appears in {}'s log", n.node_id);
        }
    }
}
