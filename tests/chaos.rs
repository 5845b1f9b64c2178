//! The fault-injection runner: a real `redis-server` (AOF, fsync always) and three `rota server`
//! processes, each behind two small TCP proxies (its gRPC port, its Redis link), a workload of jobs
//! firing every second, and faults injected on a seeded random schedule: SIGKILL of the master or of
//! a worker, SIGSTOP of the master past its lease, a graceful node restart, a Redis restart, a slow
//! or refusing gRPC port, a partition of one node from the others and from Redis, and failpoints
//! that kill a process in the fire protocol's narrow windows. A tenth of the jobs run in two external
//! worker processes (the Python SDK, `WorkerService`), which faults SIGKILL or pause past their
//! session TTL. Every handler run is written to a side log by the handler itself; `checker` compares
//! it with rota's records and the fault log.
//!
//! On one Redis the nodes also archive their history to a real PostgreSQL (`history_postgres`),
//! which a fault stops and restarts, and the archiver is killed between its commit and its trim (a
//! failpoint); after the run every final record Redis holds must be in PostgreSQL in the same state,
//! and the checker judges the capped jobs by their records, which the history store keeps whole.
//!
//! The same profile runs on three Redis deployments: one Redis (`chaos_profile`); a Redis Cluster
//! of 3 primaries and 3 replicas (`chaos_profile_on_redis_cluster`), where the nodes run 4
//! scheduling shards (`--shards 4`: four leases, their keys spread over the primaries, each shard's
//! master-only jobs judged by that shard's lease); a primary, two replicas and three
//! Sentinels (`chaos_profile_on_sentinel`). On the last two every Redis persists with AOF, the nodes
//! run in strict mode (`--redis-wait-replicas 1`: without it a failover may lose what the old
//! primary had not replicated, and run it again), the Redis fault kills the primary that holds
//! rota's keys (down long enough, its replica is promoted and it comes back as the replica), and a
//! partition cuts only the node's gRPC port (its Redis link goes straight to whichever server the
//! cluster or the Sentinels name, past any proxy).
//!
//! Short profile (these tests, in `cargo test --features failpoints`, one at a time): 60 s of faults.
//! Long profile: `ROTA_CHAOS_SECS=1800 cargo test --release --features failpoints --test chaos -- --nocapture`.
//! Knobs: ROTA_CHAOS_SECS, ROTA_CHAOS_JOBS, ROTA_CHAOS_SEED, ROTA_CHAOS_SHARDS (the profile's number of
//! shards), ROTA_CHAOS_OUT (write the JSON summary).
#[path = "chaos/checker.rs"]
mod checker;
#[path = "common/mod.rs"]
mod common;
#[path = "chaos/proxy.rs"]
mod proxy;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use checker::{Fault, History, JobInfo, Record, Run};
use common::postgres::PostgresServer;
use common::{Backend, RedisCluster, RedisSentinels, RedisServer, TestNode};
use proxy::{Mode, Proxy};
use rand::{Rng, SeedableRng};
use rota::pb;

const LEASE_TTL_MS: i64 = 1500;
const NODES: usize = 3;
/// The first this many nodes have the `sidelog_picky` handler; the others must never run its jobs.
const PICKY_NODES: usize = 2;
const FAULTS: [&str; 12] = [
    "kill_master",
    "kill_worker",
    "pause_master",
    "restart_node",
    "restart_redis",
    "grpc_delay",
    "grpc_refuse",
    "partition",
    "failpoint",
    "lost_reply",
    "kill_ext_worker",
    "pause_ext_worker",
];
/// External worker processes (Python SDK, `tests/workers/worker.py`), each attached to one node
/// through its gRPC proxy and moving on to the next when it goes: they run the `ext` jobs.
const EXT_WORKERS: usize = 2;

fn now_ms() -> i64 {
    rota::store::now_ms()
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The Redis deployment a chaos run uses.
enum Redis {
    /// One server, behind a proxy per node (so a partition can cut a node's Redis link).
    Single(RedisServer),
    Cluster(RedisCluster),
    Sentinel(RedisSentinels),
}

/// How to read the shards' lease keys straight from Redis, whichever deployment.
enum LeaseSource {
    Single(u16),
    /// Every server's URL: a cluster client finds the slot of each shard's tag.
    Cluster(Vec<String>),
    /// The Sentinels' ports: read from the primary they name.
    Sentinel(Vec<u16>),
}

impl LeaseSource {
    /// Each shard's lease value (None where none is held or Redis did not answer).
    fn leases(&self, shards: u16) -> Vec<Option<String>> {
        let keys: Vec<String> =
            (0..shards).map(|k| rota::store::keys::Keys::shard("rota", "default", k).lease()).collect();
        let get = |c: &mut dyn redis::ConnectionLike| -> Vec<Option<String>> {
            keys.iter().map(|k| redis::cmd("GET").arg(k).query(c).ok().flatten()).collect()
        };
        let none = || vec![None; usize::from(shards)];
        let one = |port: u16| {
            redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
                .map(|mut c| get(&mut c))
                .unwrap_or_else(|_| none())
        };
        match self {
            LeaseSource::Single(port) => one(*port),
            LeaseSource::Cluster(urls) => redis::cluster::ClusterClientBuilder::new(urls.clone())
                .connection_timeout(Duration::from_millis(300))
                .response_timeout(Duration::from_millis(300))
                .build()
                .and_then(|c| c.get_connection())
                .map(|mut c| get(&mut c))
                .unwrap_or_else(|_| none()),
            LeaseSource::Sentinel(ports) => {
                let primary = ports.iter().find_map(|p| {
                    let a: Vec<String> =
                        common::redis_cmd(*p, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", common::SENTINEL_MASTER])?;
                    a.get(1)?.parse::<u16>().ok()
                });
                primary.map(one).unwrap_or_else(none)
            }
        }
    }
}

/// Every write persisted at once: a killed server comes back with what it acknowledged.
const AOF: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];

impl Redis {
    fn topology(&self) -> &'static str {
        match self {
            Redis::Single(_) => "single",
            Redis::Cluster(_) => "redis_cluster",
            Redis::Sentinel(_) => "sentinel",
        }
    }

    /// The server that holds rota's keys now.
    fn primary(&mut self) -> &mut RedisServer {
        match self {
            Redis::Single(r) => r,
            Redis::Cluster(c) => {
                let key = rota::store::keys::Keys::new("rota", "default").lease();
                let port = c.primary_of(&key, &[]);
                c.server(port)
            }
            Redis::Sentinel(s) => {
                let port = common::eventually_sync(Duration::from_secs(30), "the Sentinels agree on a primary", || {
                    s.reported_primary()
                });
                s.server(port)
            }
        }
    }

    /// Where the poller reads the shards' leases from (past the nodes' proxies).
    fn lease_source(&self) -> LeaseSource {
        match self {
            Redis::Single(r) => LeaseSource::Single(r.port),
            Redis::Cluster(c) => LeaseSource::Cluster(c.servers.iter().map(|s| s.url()).collect()),
            Redis::Sentinel(x) => LeaseSource::Sentinel(x.sentinels.iter().map(|s| s.port).collect()),
        }
    }

    /// After a server came back: every slot served and every replica linked to its primary (the
    /// next fault then kills a primary that has a replica to take over).
    fn settle(&self) {
        match self {
            Redis::Single(_) => {}
            Redis::Cluster(c) => c.wait_ok(&[]),
            Redis::Sentinel(x) => {
                common::eventually_sync(Duration::from_secs(60), "the Sentinels' primary has its replicas", || {
                    let p = x.reported_primary()?;
                    x.ports()
                        .into_iter()
                        .filter(|r| *r != p)
                        .all(|r| {
                            common::redis_cmd::<String>(r, &["INFO", "replication"]).is_some_and(|info| {
                                info.contains(&format!("master_port:{p}")) && info.contains("master_link_status:up")
                            })
                        })
                        .then_some(())
                });
            }
        }
    }
}

struct Slot {
    id: String,
    listen: u16,
    metrics: u16,
    grpc: Proxy,
    /// The node's Redis link, on one Redis only.
    redis: Option<Proxy>,
    node: Option<TestNode>,
    /// Logs of this node's earlier processes (each restart starts a new log).
    old_logs: String,
}

/// An external worker of the workload: its id (`w1`), the node addresses it tries in turn, and its
/// process while it runs.
struct ExtSlot {
    id: String,
    targets: Vec<String>,
    worker: Option<common::workers::ExtWorker>,
}

struct Cluster {
    /// The external workers (`EXT_WORKERS`).
    ext: Vec<ExtSlot>,
    /// Workers per node, sized to the workload (see `workers_for`).
    workers: String,
    /// Scheduling shards (`--shards`).
    shards: u16,
    redis: Redis,
    /// The history store (one Redis only): every node archives to it.
    history: Option<PostgresServer>,
    slots: Vec<Slot>,
    sidelog: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Cluster {
    /// `history`: on one Redis, the nodes also archive to a PostgreSQL of their own.
    async fn start(redis: Redis, workers: usize, history: bool, shards: u16) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let sidelog = dir.path().join("sidelog.tsv");
        let mut slots = Vec::new();
        for i in 0..NODES {
            let listen = common::free_port();
            slots.push(Slot {
                id: format!("n{}", i + 1),
                listen,
                metrics: common::free_port(),
                grpc: Proxy::start(format!("127.0.0.1:{listen}")).await,
                redis: match &redis {
                    Redis::Single(r) => Some(Proxy::start(format!("127.0.0.1:{}", r.port)).await),
                    _ => None,
                },
                node: None,
                old_logs: String::new(),
            });
        }
        // On one Redis the nodes also keep their history in PostgreSQL, which the faults hit too.
        let history =
            (history && matches!(redis, Redis::Single(_))).then(|| tokio::task::block_in_place(PostgresServer::start));
        // Each external worker starts on its own node and moves round the others (through the
        // proxies, so partitions and refusals hit it too).
        let ext = (0..EXT_WORKERS)
            .map(|k| ExtSlot {
                id: format!("w{}", k + 1),
                targets: (0..NODES).map(|i| slots[(i + k) % NODES].grpc.addr()).collect(),
                worker: None,
            })
            .collect();
        let mut c = Cluster {
            ext,
            workers: workers.to_string(),
            shards,
            redis,
            history,
            slots,
            sidelog,
            _dir: dir,
            http: reqwest::Client::new(),
        };
        for i in 0..NODES {
            c.spawn(i).await;
        }
        for k in 0..EXT_WORKERS {
            c.spawn_ext(k);
        }
        c
    }

    fn spawn_ext(&mut self, k: usize) {
        let e = &mut self.ext[k];
        let targets: Vec<&str> = e.targets.iter().map(String::as_str).collect();
        let sdk = common::workers::Sdk::Python;
        // Tagged with its own id: a manual fire's target tags (`pool`) pick it.
        let tags = format!("pool={}", e.id);
        e.worker = Some(common::workers::ExtWorker::start_logging_to(sdk, &targets, &e.id, 8, &self.sidelog, &tags));
    }

    async fn spawn(&mut self, i: usize) {
        let s = &self.slots[i];
        let listen = format!("127.0.0.1:{}", s.listen);
        let advertise = s.grpc.addr();
        let metrics = format!("127.0.0.1:{}", s.metrics);
        let workers = self.workers.clone();
        let shards = self.shards.to_string();
        let mut args = vec![
            "--shards",
            &shards,
            "--listen",
            &listen,
            "--advertise",
            &advertise,
            "--metrics-listen",
            &metrics,
            "--workers",
            &workers,
            "--lease-ttl-ms",
            "1500",
            "--lease-renew-ms",
            "500",
            "--shutdown-grace-ms",
            "2000",
            // The external workers' session TTL: a paused worker is gone after a second.
            "--worker-ttl-ms",
            "1000",
        ];
        let url = match (&self.redis, &s.redis) {
            (Redis::Single(_), Some(proxy)) => format!("redis://{}", proxy.addr()),
            (Redis::Single(r), None) => r.url(),
            (Redis::Cluster(c), _) => c.url(),
            (Redis::Sentinel(x), _) => x.url(),
        };
        if !matches!(self.redis, Redis::Single(_)) {
            args.extend(["--redis-wait-replicas", "1"]);
        }
        let pg = self.history.as_ref().map(|p| p.url()).unwrap_or_default();
        if self.history.is_some() {
            args.extend(["--history-postgres", pg.as_str()]);
        }
        let sidelog = self.sidelog.to_string_lossy().to_string();
        // Mixed capabilities: only the first two nodes have `sidelog_picky` (see `workload`).
        let picky = if i < PICKY_NODES { "1" } else { "0" };
        let env = [("ROTA_SIDELOG", sidelog.as_str()), ("RUST_LOG", "rota=info,warn"), ("ROTA_CHAOS_PICKY", picky)];
        let backend = Backend::Redis(url);
        let node = TestNode::spawn_env(&backend, &s.id, &args, &env);
        node.wait_serving().await;
        if let Some(old) = self.slots[i].node.replace(node) {
            self.slots[i].old_logs.push_str(&old.log());
        }
    }

    /// Any live node's scheduler client.
    async fn client(&self) -> Option<pb::scheduler_service_client::SchedulerServiceClient<tonic::transport::Channel>> {
        for s in &self.slots {
            let ep = format!("http://127.0.0.1:{}", s.listen);
            if let Ok(ch) = tonic::transport::Endpoint::from_shared(ep)
                .ok()?
                .connect_timeout(Duration::from_millis(300))
                .connect()
                .await
            {
                return Some(pb::scheduler_service_client::SchedulerServiceClient::new(ch));
            }
        }
        None
    }

    /// (master index, epoch) as the cluster reports it.
    async fn master(&self) -> Option<(usize, u64)> {
        let mut c = self.client().await?;
        let st = tokio::time::timeout(Duration::from_secs(1), c.get_cluster_status(pb::GetClusterStatusRequest {}))
            .await
            .ok()?
            .ok()?
            .into_inner();
        let i = self.slots.iter().position(|s| s.id == st.master_id)?;
        Some((i, st.epoch))
    }

    async fn wait_master(&self) -> (usize, u64) {
        common::eventually(Duration::from_secs(30), "a master", || self.master()).await
    }

    /// The node holding the history archive's lease (one Redis only).
    fn archiver(&self) -> Option<usize> {
        let Redis::Single(r) = &self.redis else { return None };
        let key = rota::store::keys::Keys::new("rota", "default").archive_lease();
        let holder: String = common::redis_cmd(r.port, &["GET", &key])?;
        self.slots.iter().position(|s| holder.starts_with(&format!("{}:", s.id)))
    }

    /// With a history store: every execution record Redis holds in a final state, of a fire
    /// scheduled before `until`, must reach PostgreSQL in the same state (waited for up to a
    /// minute: the archiver takes the outbox every quarter second, and the jobs go on firing).
    /// Violations, one per record.
    fn archive_violations(&self, until: i64) -> Vec<String> {
        let (Redis::Single(r), Some(pg)) = (&self.redis, &self.history) else { return Vec::new() };
        let keys = rota::store::keys::Keys::new("rota", "default");
        let scan = |pattern: &str| -> Vec<String> {
            let (mut out, mut cursor) = (Vec::new(), "0".to_string());
            loop {
                let (next, batch): (String, Vec<String>) =
                    common::redis_cmd(r.port, &["SCAN", &cursor, "MATCH", pattern, "COUNT", "10000"]).expect("scan");
                out.extend(batch);
                if next == "0" {
                    return out;
                }
                cursor = next;
            }
        };
        let mut want: BTreeMap<String, String> = BTreeMap::new();
        let mut keep = |id: &str, state: &str, sched: i64| {
            if sched < until && !matches!(state, "pending" | "running") {
                want.insert(id.to_string(), state.to_string());
            }
        };
        // The records kept apart (JSON: earlier attempts, closed dead ones, evidence)...
        for key in scan(&format!("{}*", keys.exec_prefix())) {
            let json: Option<String> = common::redis_cmd(r.port, &["GET", &key]);
            let Some(j) = json.and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok()) else { continue };
            let id = j.get("id").and_then(|s| s.as_str()).unwrap_or_default().to_string();
            let state = j.get("state").and_then(|s| s.as_str()).unwrap_or_default().to_string();
            keep(&id, &state, j.get("scheduled_ms").and_then(|s| s.as_i64()).unwrap_or(i64::MAX));
        }
        // ...and the fire hashes that hold their execution's outcome (`ended`), which win over a
        // record kept apart of the same execution (PROTOCOL 4.2).
        let fire_prefix = keys.fire("");
        for key in scan(&format!("{fire_prefix}*")) {
            let f: Vec<Option<String>> =
                common::redis_cmd(r.port, &["HMGET", &key, "exec", "state", "ended", "sched"]).unwrap_or_default();
            let [Some(id), Some(state), Some(_ended), sched] = f.as_slice() else { continue };
            let fire = &key[fire_prefix.len()..];
            let sched = sched.as_ref().and_then(|s| s.parse().ok()).or_else(|| rota::execution::fire_due_ms(fire));
            keep(id, state, sched.unwrap_or(i64::MAX));
        }
        if want.is_empty() {
            return vec!["history: no final record in Redis to compare with PostgreSQL".to_string()];
        }
        let mut missing = Vec::new();
        for _ in 0..120 {
            let archived: HashMap<String, String> = pg
                .psql("rota", "SELECT id || ' ' || state FROM rota_executions")
                .lines()
                .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
                .collect();
            missing = want
                .iter()
                .filter_map(|(id, state)| match archived.get(id) {
                    None => Some(format!("history: {id} ({state}) is in Redis but not in PostgreSQL")),
                    Some(s) if s != state => Some(format!("history: {id} is {state} in Redis, {s} in PostgreSQL")),
                    Some(_) => None,
                })
                .collect();
            if missing.is_empty() {
                tracing_line(&format!(
                    "history: all {} final records in Redis are in PostgreSQL ({} rows)",
                    want.len(),
                    archived.len()
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        missing
    }

    fn kill(&mut self, i: usize) -> i64 {
        if let Some(n) = self.slots[i].node.as_mut() {
            tokio::task::block_in_place(|| n.kill());
        }
        now_ms()
    }
}

struct Runner {
    cluster: Cluster,
    rng: rand::rngs::StdRng,
    faults: Vec<Fault>,
    /// Per shard: epoch -> (holder, first seen).
    masters: std::sync::Arc<std::sync::Mutex<checker::Masters>>,
    epoch_seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Nodes found dead that no fault killed (a crash): violations.
    crashes: Vec<String>,
}

impl Runner {
    fn record(&mut self, kind: &str, node: Option<usize>, at: i64, dead: Option<i64>, was_master: bool, epoch: u64) {
        let node = node.map(|i| self.cluster.slots[i].id.clone());
        self.record_on(kind, node, at, dead, was_master, epoch)
    }

    /// `record` for a fault on `who`: a node's or an external worker's id, or None for Redis.
    fn record_on(
        &mut self,
        kind: &str,
        node: Option<String>,
        at: i64,
        dead: Option<i64>,
        was_master: bool,
        epoch: u64,
    ) {
        tracing_line(&format!("fault {kind} on {node:?} at {at} (master: {was_master})"));
        self.faults.push(Fault {
            kind: kind.into(),
            node,
            at_ms: at,
            until_ms: now_ms(),
            dead_ms: dead,
            was_master,
            epoch_before: epoch,
        });
    }

    fn pick_other(&mut self, not: usize) -> usize {
        let others: Vec<usize> = (0..NODES).filter(|i| *i != not).collect();
        others[self.rng.random_range(0..others.len())]
    }

    async fn inject(&mut self, kind: &str) {
        for i in 0..NODES {
            if self.cluster.slots[i].node.as_mut().is_some_and(|n| n.exited()) {
                let id = self.cluster.slots[i].id.clone();
                tracing_line(&format!("node {id} exited with no fault: a crash"));
                self.crashes.push(format!("node {id} exited with no fault injected, before {}", now_ms()));
                self.cluster.spawn(i).await;
            }
        }
        for k in 0..EXT_WORKERS {
            if self.cluster.ext[k].worker.as_mut().is_some_and(|w| w.exited()) {
                let id = self.cluster.ext[k].id.clone();
                let log = self.cluster.ext[k].worker.as_ref().map(|w| w.log()).unwrap_or_default();
                tracing_line(&format!("external worker {id} exited with no fault: a crash\n{log}"));
                self.crashes.push(format!("external worker {id} exited with no fault injected, before {}", now_ms()));
                self.cluster.spawn_ext(k);
            }
        }
        let (m, epoch) = self.cluster.wait_master().await;
        let epoch = epoch.max(self.epoch_seen.load(std::sync::atomic::Ordering::SeqCst));
        let at = now_ms();
        match kind {
            "kill_master" | "kill_worker" => {
                let i = if kind == "kill_master" { m } else { self.pick_other(m) };
                let dead = self.cluster.kill(i);
                tokio::time::sleep(Duration::from_millis(self.rng.random_range(300..2500))).await;
                self.cluster.spawn(i).await;
                self.record(kind, Some(i), at, Some(dead), i == m, epoch);
            }
            "pause_master" => {
                let n = self.cluster.slots[m].node.as_ref().expect("master runs");
                n.pause();
                let hold = LEASE_TTL_MS as u64 + self.rng.random_range(300..1500);
                tokio::time::sleep(Duration::from_millis(hold)).await;
                if let Some(n) = self.cluster.slots[m].node.as_ref() {
                    n.resume();
                }
                self.record(kind, Some(m), at, None, true, epoch);
            }
            "restart_node" => {
                let i = self.rng.random_range(0..NODES);
                if let Some(n) = self.cluster.slots[i].node.as_mut() {
                    tokio::task::block_in_place(|| n.terminate());
                }
                let dead = now_ms();
                self.cluster.spawn(i).await;
                self.record(kind, Some(i), at, Some(dead), i == m, epoch);
            }
            "restart_redis" => {
                // On a Redis Cluster or Sentinel, past about a second (their failure detection) the
                // replica is promoted and the old primary comes back as its replica.
                let down = match self.cluster.redis {
                    Redis::Single(_) => self.rng.random_range(200..1500),
                    _ => self.rng.random_range(200..4000),
                };
                // Half the time at the instant fires start (a few ms past a whole second, when the
                // batched starts are in flight): the window where a committed start's reply is lost.
                let aimed = self.rng.random_bool(0.5);
                if aimed {
                    let to_next = 1000 - now_ms().rem_euclid(1000) + self.rng.random_range(2..8);
                    tokio::time::sleep(Duration::from_millis(to_next as u64)).await;
                }
                let killed = tokio::task::block_in_place(|| {
                    let primary = self.cluster.redis.primary();
                    primary.kill();
                    primary.port
                });
                tokio::time::sleep(Duration::from_millis(down)).await;
                let now_primary = tokio::task::block_in_place(|| {
                    match &mut self.cluster.redis {
                        Redis::Single(r) => r.restart(),
                        Redis::Cluster(c) => c.server(killed).restart(),
                        Redis::Sentinel(x) => x.server(killed).restart_as_primary(),
                    }
                    self.cluster.redis.settle();
                    self.cluster.redis.primary().port
                });
                // Named for what happened: the same server back, or its replica promoted.
                let kind = match (aimed, now_primary == killed) {
                    (true, true) => "restart_redis_at_instant",
                    (false, true) => "restart_redis",
                    (true, false) => "failover_redis_at_instant",
                    (false, false) => "failover_redis",
                };
                self.record(kind, None, at, None, true, epoch);
            }
            "restart_postgres" => {
                // The history store down (immediate shutdown, as a crash) for a while: fires go on,
                // the outbox keeps their records, the archive catches up. Never explains a run.
                let down = self.rng.random_range(300..3000);
                if let Some(pg) = self.cluster.history.as_mut() {
                    tokio::task::block_in_place(|| pg.stop());
                    tokio::time::sleep(Duration::from_millis(down)).await;
                    tokio::task::block_in_place(|| pg.restart());
                }
                self.record(kind, None, at, None, false, epoch);
            }
            "lost_reply" => {
                // A committed script's reply thrown away, some of the time, for a few seconds: the
                // caller must treat the error as "maybe done" and never run or record twice. Never
                // an excuse for an extra run (the checker does not count it as a fault that explains one).
                let points = rota::failpoints::LOST_REPLY_POINTS;
                let point = points[self.rng.random_range(0..points.len())];
                let i = match point {
                    "lose_claim_reply" => m,
                    "lose_accept_reply" => self.pick_other(m),
                    "lose_reap_reply" => m,
                    _ => self.rng.random_range(0..NODES),
                };
                let url = format!("http://127.0.0.1:{}/failpoints/{point}", self.cluster.slots[i].metrics);
                let armed = self.cluster.http.put(&url).body("25%return").send().await;
                assert!(armed.is_ok_and(|r| r.status().is_success()), "cannot arm {point}");
                tokio::time::sleep(Duration::from_millis(self.rng.random_range(1500..4000))).await;
                let _ = self.cluster.http.put(&url).body("off").send().await;
                self.record(&format!("lost_reply:{point}"), Some(i), at, None, i == m, epoch);
            }
            "grpc_delay" | "grpc_refuse" => {
                let i = self.pick_other(m);
                let mode = if kind == "grpc_delay" { Mode::Delay } else { Mode::Refuse };
                self.cluster.slots[i].grpc.set(mode, Duration::from_millis(700));
                tokio::time::sleep(Duration::from_millis(self.rng.random_range(1500..4000))).await;
                self.cluster.slots[i].grpc.set(Mode::Pass, Duration::ZERO);
                self.record(kind, Some(i), at, None, false, epoch);
            }
            "partition" => {
                let i = self.rng.random_range(0..NODES);
                let s = &self.cluster.slots[i];
                s.grpc.set(Mode::Blackhole, Duration::ZERO);
                if let Some(r) = &s.redis {
                    r.set(Mode::Blackhole, Duration::ZERO);
                }
                tokio::time::sleep(Duration::from_millis(self.rng.random_range(500..4000))).await;
                let s = &self.cluster.slots[i];
                s.grpc.set(Mode::Pass, Duration::ZERO);
                let whole = s.redis.as_ref().map(|r| r.set(Mode::Pass, Duration::ZERO)).is_some();
                self.record(if whole { kind } else { "partition_grpc" }, Some(i), at, None, i == m, epoch);
            }
            "failpoint" => {
                // The archiver's point only where there is an archiver.
                let points: Vec<&str> = rota::failpoints::CRASH_POINTS
                    .into_iter()
                    .filter(|p| *p != "history_after_store" || self.cluster.history.is_some())
                    .collect();
                let point = points[self.rng.random_range(0..points.len())];
                let i = match point {
                    "after_claim" => m,
                    "after_accept" => self.pick_other(m),
                    "history_after_store" => self.cluster.archiver().unwrap_or(m),
                    _ => self.rng.random_range(0..NODES),
                };
                let url = format!("http://127.0.0.1:{}/failpoints/{point}", self.cluster.slots[i].metrics);
                let armed = self.cluster.http.put(&url).body("1*return").send().await;
                assert!(armed.is_ok_and(|r| r.status().is_success()), "cannot arm {point}");
                let deadline = now_ms() + 10_000;
                let mut dead = None;
                while now_ms() < deadline {
                    let gone = self.cluster.slots[i].node.as_mut().is_none_or(|n| n.exited());
                    if gone {
                        dead = Some(now_ms());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let kind = format!("failpoint:{point}");
                if dead.is_none() {
                    // Not reached in time (e.g. no dispatch to that node): disarm; nothing happened.
                    let _ = self.cluster.http.put(&url).body("off").send().await;
                    tracing_line(&format!("{kind} on node {} not reached in 10 s; disarmed", i + 1));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(self.rng.random_range(300..1500))).await;
                self.cluster.spawn(i).await;
                self.record(&kind, Some(i), at, dead, i == m, epoch);
            }
            "kill_ext_worker" => {
                let k = self.rng.random_range(0..EXT_WORKERS);
                if let Some(w) = self.cluster.ext[k].worker.as_mut() {
                    w.kill();
                }
                let dead = now_ms();
                tokio::time::sleep(Duration::from_millis(self.rng.random_range(300..2500))).await;
                self.cluster.spawn_ext(k);
                let who = self.cluster.ext[k].id.clone();
                self.record_on(kind, Some(who), at, Some(dead), false, epoch);
            }
            "pause_ext_worker" => {
                // Past its session TTL (the nodes' node TTL): its node takes it as gone.
                let k = self.rng.random_range(0..EXT_WORKERS);
                if let Some(w) = self.cluster.ext[k].worker.as_ref() {
                    w.pause();
                    tokio::time::sleep(Duration::from_millis(self.rng.random_range(1500..3000))).await;
                    w.resume();
                }
                let who = self.cluster.ext[k].id.clone();
                self.record_on(kind, Some(who), at, None, false, epoch);
            }
            other => panic!("unknown fault {other}"),
        }
    }
}

fn tracing_line(s: &str) {
    eprintln!("[chaos {}] {s}", now_ms());
}

/// Workers per node for `n` jobs of `workload`. The slow jobs keep about n/5 workers busy across
/// the cluster (forbid: n/10 x 1.5 s every 2 s; 3 s jobs: n/10 every 5 s), so three nodes with
/// n/8 each have room to spare with one node down, while a master running its share is still
/// pushed over its load threshold now and then (the dispatch paths are exercised). Too few
/// workers makes fires wait past the misfire threshold: that measures overload, not faults.
fn workers_for(n: usize) -> usize {
    (n / 8).max(8)
}

/// The workload's concurrency limit: its `limited` jobs (label `group=chaos`) run at most this many
/// at once, cluster-wide.
const LIMIT_GROUP: &str = "chaos";
const LIMIT_MAX: usize = 2;

/// What the runner's backfills came to: calls made, instants they made a fire for, instants they
/// found fired, and refusals a retry cannot mend.
#[derive(Debug, Default, Clone)]
struct Backfills {
    calls: usize,
    started: usize,
    found: usize,
    refused: Vec<String>,
}

/// The `every` jobs' interval and anchor (ms).
const EVERY_MS: i64 = 3_000;
const EVERY_ANCHOR_MS: i64 = 1_000;
/// The `chain` jobs' delay after each run's end (ms).
const CHAIN_DELAY_MS: i64 = 1_000;
/// The jittered `plain` jobs' bound (ms).
const JITTER_MS: u64 = 700;

/// The `calendar` jobs' grid (ms): every 2 s from half a second past the epoch, so a fire moved
/// to a window's end (a whole second) is off it.
const CALENDAR_EVERY_MS: i64 = 2_000;
const CALENDAR_ANCHOR_MS: i64 = 500;
/// The workload's calendars, one per way an excluded fire goes.
const CALENDARS: [(&str, rota::job::calendar::OnExcluded); 3] = [
    ("chaos-skip", rota::job::calendar::OnExcluded::Skip),
    ("chaos-forward", rota::job::calendar::OnExcluded::Forward),
    ("chaos-omit", rota::job::calendar::OnExcluded::Omit),
];

/// The calendar `calendar` job `i` names: each in turn, from the run's `turn` (its seed's), so
/// runs of 100 jobs (two calendar jobs) see each way in two runs of three.
fn calendar_of(i: usize, turn: usize) -> (&'static str, rota::job::calendar::OnExcluded) {
    CALENDARS[(i / 40 + turn) % CALENDARS.len()]
}

/// The calendars' excluded windows for a run of `secs` from now: 4 s of every 10 s (at most 90),
/// as instants [from, to) on whole seconds.
fn calendar_windows(secs: i64) -> Vec<(i64, i64)> {
    let base = (now_ms() / 1000 + 3) * 1000;
    let n = (secs / 10 + 3).clamp(1, 90);
    (0..n).map(|k| (base + k * 10_000, base + k * 10_000 + 4_000)).collect()
}

/// The history cap of the workload's capped jobs.
const CAPPED_KEEP: usize = 5;

/// The workload: one job in ten of each kind. `routed` jobs choose their node by a routing
/// strategy; a failover one may run only on its two nodes. `picky` jobs use a handler only the first
/// `PICKY_NODES` nodes have: their fires must reach only those nodes, whoever is master. `capped`
/// jobs keep only their last `CAPPED_KEEP` executions. `ext` jobs run in the external workers, and
/// half of them (`extslow`) forbid overlap, outlast their timeout and ignore its cancel: each fire is
/// `timed_out`, recorded only once the handler ended, and the next fire meanwhile `skipped`.
fn workload(n: usize, shards: u16, windows: &[(i64, i64)], turn: usize) -> (Vec<pb::Job>, Vec<JobInfo>) {
    let mut jobs = Vec::new();
    let mut infos = Vec::new();
    for i in 0..n {
        let (kind, cron, ms, period, forbid, master_only, rerun) = match i % 10 {
            3 if i % 20 == 13 => ("extslow", "* * * * * *", 1500, 1, true, false, true),
            // A history cap of 5 (and no older failures kept): its fires in the window are all
            // trimmed by the time the records are read; the side log judges them.
            4 => ("capped", "* * * * * *", 20, 1, false, false, true),
            6 => ("master", "* * * * * *", 10, 1, false, true, true),
            // Runs of 1.5 s a second apart, each overlap policy in turn: forbid (skipped while one
            // runs), replace (each fire stops the run before it), buffer_one and buffer 3 (fires
            // wait for the run before them, the rest skipped).
            7 => match (i / 10) % 4 {
                0 => ("forbid", "* * * * * *", 1500, 1, true, false, false),
                1 => ("replace", "* * * * * *", 1500, 1, true, false, false),
                2 => ("bufone", "* * * * * *", 1500, 1, true, false, false),
                _ => ("buffer", "* * * * * *", 1500, 1, true, false, false),
            },
            // Under the concurrency limit `chaos` (LIMIT_MAX at once): their fires come five
            // seconds apart, all at one instant, so most of them wait for a slot.
            8 if (i / 10) % 2 == 1 => ("limited", "*/5 * * * * *", 1000, 5, false, false, true),
            8 => ("slowrerun", "*/5 * * * * *", 3000, 5, false, false, true),
            // Slow runs the runner cancels (CancelExecution) while they run, through any node.
            9 if i % 20 == 19 => ("cancel", "*/5 * * * * *", 3000, 5, false, false, i % 40 == 39),
            9 => ("slowlost", "*/5 * * * * *", 3000, 5, false, false, false),
            5 => ("picky", "* * * * * *", 20, 1, false, false, true),
            // Sharded: three shards a fire, or one per live node (re-run when a node goes mid-run).
            2 if (i / 10) % 2 == 0 => ("shard3", "* * * * * *", 20, 1, false, false, true),
            2 => ("shardall", "* * * * * *", 20, 1, false, false, true),
            // Run by the external workers (`py.chaos`), re-run when one goes mid-run.
            3 => ("ext", "* * * * * *", 20, 1, false, false, true),
            // Routed by a strategy of their own (`routing`), in turn: round robin, consistent
            // hash, failover (on the last two nodes only, which the checker holds them to) and
            // least recently used.
            0 => ("routed", "* * * * * *", 20, 1, false, false, true),
            // A fixed interval on a grid of its own (`every 3s` from 1 s past the epoch): fires at
            // 1, 4, 7, ... s, not at multiples of its period.
            1 if (i / 10) % 4 == 1 => ("every", "", 20, 3, false, false, true),
            // A fixed delay (`after_previous`) from the end of runs of half a second: no grid, its
            // fires never overlap (checked as forbid's), each a second after the one before ended
            // (`check_chain`). Re-run, or lost, when a node goes mid-run, in turn.
            1 if (i / 10) % 4 == 2 => ("chain", "", 500, 1, true, false, (i / 40) % 2 == 0),
            // A 2 s grid half a second past the second, naming a calendar whose windows (4 s of
            // every 10 s through the run) exclude some of its instants: recorded skipped, omitted
            // or moved to the window's end (a whole second, off the grid), by turns.
            1 if (i / 10) % 4 == 3 => ("calendar", "", 20, 2, false, false, true),
            _ => ("plain", "* * * * * *", 20, 1, false, false, true),
        };
        let id = format!("{kind}-{i:04}");
        let spec = rota::job::JobSpec {
            id: id.clone(),
            cron: cron.into(),
            handler: match kind {
                "picky" => "sidelog_picky",
                "ext" | "extslow" => "py.chaos",
                _ => "sidelog",
            }
            .into(),
            args: match kind {
                "extslow" => serde_json::json!({ "ms": ms, "ignore_cancel": true }),
                _ => serde_json::json!({ "ms": ms }),
            },
            timeout_ms: if kind == "extslow" { 700 } else { 0 },
            master_only,
            concurrency: match kind {
                "replace" => rota::job::Concurrency::Replace,
                "bufone" => rota::job::Concurrency::Buffer(1),
                "buffer" => rota::job::Concurrency::Buffer(3),
                _ if forbid => rota::job::Concurrency::Forbid,
                _ => rota::job::Concurrency::Allow,
            },
            recovery: if rerun { rota::job::Recovery::Rerun } else { rota::job::Recovery::Lost },
            keep_last: if kind == "capped" { CAPPED_KEEP as u32 } else { 0 },
            keep_failed: (kind == "capped").then_some(0),
            labels: match kind {
                "limited" => [("group".to_string(), LIMIT_GROUP.to_string())].into(),
                _ => Default::default(),
            },
            routing: match (kind, (i / 10) % 4) {
                ("routed", 0) => rota::job::Routing::RoundRobin,
                ("routed", 1) => rota::job::Routing::ConsistentHash,
                ("routed", 2) => rota::job::Routing::Failover,
                ("routed", _) => rota::job::Routing::LeastRecentlyUsed,
                _ => rota::job::Routing::Load,
            },
            // Every kind at each priority in turn: the queue's three lists and the workers' lines
            // see every path a fire takes.
            priority: rota::job::Priority::ALL[(i / 10) % 3],
            shards: match kind {
                "shard3" => rota::job::Shards::Count(3),
                "shardall" => rota::job::Shards::PerNode,
                _ => rota::job::Shards::One,
            },
            ..Default::default()
        };
        let spec = rota::job::JobSpec {
            every_ms: match kind {
                "every" => EVERY_MS as u64,
                "calendar" => CALENDAR_EVERY_MS as u64,
                _ => 0,
            },
            after_previous_ms: if kind == "chain" { CHAIN_DELAY_MS as u64 } else { 0 },
            // Every other `plain` job starts each fire its own jitter (below 0.7 s) after its instant.
            jitter_ms: if kind == "plain" && (i / 40) % 2 == 1 { JITTER_MS } else { 0 },
            anchor_ms: match kind {
                "every" => Some(EVERY_ANCHOR_MS),
                "calendar" => Some(CALENDAR_ANCHOR_MS),
                _ => None,
            },
            calendars: match kind {
                "calendar" => vec![calendar_of(i, turn).0.to_string()],
                _ => Vec::new(),
            },
            failover_nodes: match spec.routing {
                rota::job::Routing::Failover => vec![format!("n{}", NODES - 1), format!("n{NODES}")],
                _ => Vec::new(),
            },
            ..spec
        };
        jobs.push(rota::cli::pb_job(&spec));
        let only_on = match kind {
            "picky" => (1..=PICKY_NODES).map(|i| format!("n{i}")).collect(),
            _ => spec.failover_nodes.clone(),
        };
        let keep_last = (kind == "capped").then_some(CAPPED_KEEP);
        let shard = rota::store::keys::shard_of(&id, shards);
        let times_out = kind == "extslow";
        let overlap = spec.concurrency;
        let limit = (kind == "limited").then_some(LIMIT_MAX);
        infos.push(JobInfo {
            id,
            period_ms: match kind {
                "every" => EVERY_MS,
                "calendar" => CALENDAR_EVERY_MS,
                _ => period * 1000,
            },
            phase_ms: match kind {
                "every" => EVERY_ANCHOR_MS,
                "calendar" => CALENDAR_ANCHOR_MS,
                _ => 0,
            },
            forbid,
            overlap,
            master_only,
            rerun,
            only_on,
            keep_last,
            shard,
            times_out,
            limit,
            priority: spec.priority,
            shards: spec.shards,
            after_previous_ms: (kind == "chain").then_some(CHAIN_DELAY_MS),
            jitter_ms: (kind == "plain" && (i / 40) % 2 == 1).then_some(JITTER_MS),
            calendar: (kind == "calendar").then(|| {
                let (name, on) = calendar_of(i, turn);
                checker::CalendarRule { name: name.into(), on, windows: windows.to_vec() }
            }),
        });
    }
    (jobs, infos)
}

fn read_sidelog(path: &PathBuf) -> Vec<Run> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut runs: Vec<Run> = Vec::new();
    let mut ends: HashMap<String, i64> = HashMap::new();
    let mut marks: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            // The nodes' side-log handler, or an external worker's (the same, plus the worker).
            ["S", job, sched, exec, node, epoch, attempt, at, worker @ ..] if worker.len() <= 1 => runs.push(Run {
                job: job.to_string(),
                sched_ms: sched.parse().unwrap_or(0),
                exec: exec.to_string(),
                node: node.to_string(),
                epoch: epoch.parse().unwrap_or(0),
                attempt: attempt.parse().unwrap_or(0),
                start_ms: at.parse().unwrap_or(0),
                end_ms: None,
                worker: worker.first().map(|w| w.to_string()),
                mark: None,
            }),
            ["M", exec, mark] => {
                marks.insert(exec.to_string(), mark.to_string());
            }
            ["E", exec, at] => {
                ends.insert(exec.to_string(), at.parse().unwrap_or(0));
            }
            _ => panic!("side log: malformed line {line:?}"),
        }
    }
    for r in &mut runs {
        r.end_ms = ends.get(&r.exec).copied();
        r.mark = marks.get(&r.exec).cloned();
    }
    runs
}

/// Every record of `jobs`, listed job by job: the listing across jobs shows only a shard's newest
/// executions (`execution_recent`) and the open ones.
async fn records(
    c: &mut pb::scheduler_service_client::SchedulerServiceClient<tonic::transport::Channel>,
    jobs: &[JobInfo],
) -> Vec<Record> {
    let mut all = Vec::new();
    for j in jobs {
        match common::try_executions(c, &j.id).await {
            Ok(v) => all.extend(v),
            // Gone with a wiped Redis (`redis_restart_without_persistence`): it has none.
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => panic!("list executions of {}: {s}", j.id),
        }
    }
    all.into_iter()
        .map(|e| Record {
            state: common::state(&e).as_str_name().trim_start_matches("EXECUTION_STATE_").to_lowercase(),
            exec: e.id,
            job: e.job_id,
            sched_ms: common::ms(&e.scheduled_time),
            end_ms: e.end_time.as_ref().map(|_| common::ms(&e.end_time)),
            node: e.node_id,
            manual: e.manual,
            error: e.error,
            retried: e.next_attempt_time.is_some(),
        })
        .collect()
}

/// One chaos profile at a time: each is three nodes and up to nine Redis processes on this
/// machine's cores, and two at once would measure overload, not faults.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_profile() {
    run_profile(|| Redis::Single(RedisServer::start_with(&AOF, "")), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_profile_on_redis_cluster() {
    run_profile(|| Redis::Cluster(RedisCluster::start_with(&AOF)), 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_profile_on_sentinel() {
    // Two replicas: a failover leaves the new primary one to acknowledge strict mode's writes. With
    // one, nothing ran from a kill until the Sentinels made the old primary a replica (10-20 s), and
    // three failovers in one run kept fires waiting past the misfire threshold.
    run_profile(|| Redis::Sentinel(RedisSentinels::start_with_replicas(&AOF, 2)), 1).await;
}

async fn run_profile(redis: impl FnOnce() -> Redis, shards: u16) {
    let _one = ONE_AT_A_TIME.lock().await;
    let secs: i64 = env_or("ROTA_CHAOS_SECS", 60);
    let n_jobs: usize = env_or("ROTA_CHAOS_JOBS", 100);
    let seed: u64 = env_or("ROTA_CHAOS_SEED", now_ms() as u64);
    let shards: u16 = env_or("ROTA_CHAOS_SHARDS", shards);
    let redis = tokio::task::block_in_place(redis);
    let topology = redis.topology();
    tracing_line(&format!(
        "{topology}: seed {seed}, {secs} s of faults, {n_jobs} jobs, {shards} shard(s) (replay: ROTA_CHAOS_SEED={seed})"
    ));
    let cluster = Cluster::start(redis, workers_for(n_jobs), true, shards).await;
    let mut runner = Runner {
        cluster,
        rng: rand::rngs::StdRng::seed_from_u64(seed),
        faults: Vec::new(),
        masters: Default::default(),
        epoch_seen: Default::default(),
        crashes: Vec::new(),
    };
    let windows = calendar_windows(secs);
    let (jobs, mut infos) = workload(n_jobs, shards, &windows, (seed % 3) as usize);
    if runner.cluster.history.is_some() {
        // Their records are all in the history store: judged by them, like every other job.
        for i in &mut infos {
            i.keep_last = None;
        }
    }
    let mut c = runner.cluster.client().await.expect("client");
    let limit = pb::Limit {
        name: LIMIT_GROUP.into(),
        max: LIMIT_MAX as u32,
        handler: String::new(),
        label: format!("group={LIMIT_GROUP}"),
        running: 0,
    };
    c.put_limit(pb::PutLimitRequest { limit: Some(limit) }).await.expect("put limit");
    let clock = |ms: i64| rota::job::ms_to_datetime(ms).format("%H:%M:%S").to_string();
    for (name, on) in CALENDARS {
        let cal = pb::Calendar {
            name: name.into(),
            excluded_windows: windows.iter().map(|(a, b)| format!("{}-{}", clock(*a), clock(*b))).collect(),
            on_excluded: match on {
                rota::job::calendar::OnExcluded::Skip => pb::CalendarOnExcluded::Skip,
                rota::job::calendar::OnExcluded::Omit => pb::CalendarOnExcluded::Omit,
                rota::job::calendar::OnExcluded::Forward => pb::CalendarOnExcluded::Forward,
            } as i32,
            ..Default::default()
        };
        c.put_calendar(pb::PutCalendarRequest { calendar: Some(cal), ics: String::new() }).await.expect("put calendar");
    }
    for j in jobs {
        c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect("put job");
    }
    let t0 = now_ms();
    // Cancel a running execution of a `cancel` job now and then, through a node in turn, during the
    // faults: every execution asked is noted (the checker holds a `cancelled` record to one).
    let cancels: Arc<std::sync::Mutex<HashSet<String>>> = Default::default();
    let stop_cancels = tokio_util::sync::CancellationToken::new();
    // Trigger a `plain` job now and then with arguments of its own (a mark in them, which the side
    // log notes, and the mark as the idempotency key, so a retry after a lost reply fires nothing
    // twice), through a node in turn: the checker holds each to one fire, run once, with them.
    // One in three is of an `ext` job, aimed at one of the external workers by target tags
    // (`pool = <worker>`): the checker holds its run to that worker (`History::trigger_targets`).
    let triggers: Arc<std::sync::Mutex<Vec<checker::Trigger>>> = Default::default();
    let trigger_targets: Arc<std::sync::Mutex<HashMap<String, String>>> = Default::default();
    // Refusals a retry cannot mend (a bad request, a conflict on the same arguments): violations.
    let trigger_refusals: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let trigger_loop = {
        let (triggers, refusals, stop) = (Arc::clone(&triggers), Arc::clone(&trigger_refusals), stop_cancels.clone());
        let targets = Arc::clone(&trigger_targets);
        let ext_jobs: Vec<String> = infos.iter().filter(|j| j.id.starts_with("ext-")).map(|j| j.id.clone()).collect();
        let pools: Vec<String> = runner.cluster.ext.iter().map(|e| e.id.clone()).collect();
        // Through the nodes' gRPC proxies, where the faults on gRPC (delay, refusal, partition) are.
        let addrs: Vec<String> = runner.cluster.slots.iter().map(|s| s.grpc.addr()).collect();
        let jobs: Vec<String> = infos.iter().filter(|j| j.id.starts_with("plain-")).map(|j| j.id.clone()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x7419);
        tokio::spawn(async move {
            let mut n = 0;
            while !jobs.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(rng.random_range(700..1700))) => {}
                }
                n += 1;
                let mark = format!("mk{seed}-{n}");
                let aimed = (n % 3 == 0 && !ext_jobs.is_empty() && !pools.is_empty())
                    .then(|| pools[rng.random_range(0..pools.len())].clone());
                let job = match aimed {
                    Some(_) => ext_jobs[rng.random_range(0..ext_jobs.len())].clone(),
                    None => jobs[rng.random_range(0..jobs.len())].clone(),
                };
                let req = pb::TriggerJobRequest {
                    id: job.clone(),
                    idempotency_key: mark.clone(),
                    args: Some(rota::pb::json_to_pb(&serde_json::json!({"ms": 20, "mark": mark}))),
                    target_selector: aimed.iter().map(|w| ("pool".to_string(), w.clone())).collect(),
                    ..Default::default()
                };
                if let Some(w) = &aimed {
                    targets.lock().expect("targets").insert(mark.clone(), w.clone());
                }
                let mut fire = None;
                // Asked again (same key) on the next node while no node answers: one fire.
                let first = rng.random_range(0..addrs.len());
                for attempt in 0..4 {
                    let addr = &addrs[(first + attempt) % addrs.len()];
                    let Ok(ep) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else { continue };
                    let Ok(Ok(ch)) = tokio::time::timeout(Duration::from_secs(1), ep.connect()).await else { continue };
                    let mut c = pb::scheduler_service_client::SchedulerServiceClient::new(ch);
                    match tokio::time::timeout(Duration::from_secs(5), c.trigger_job(req.clone())).await {
                        Ok(Ok(r)) => {
                            fire = r.into_inner().execution.map(|e| e.fire_id);
                            break;
                        }
                        Ok(Err(s))
                            if matches!(
                                s.code(),
                                tonic::Code::InvalidArgument
                                    | tonic::Code::PermissionDenied
                                    | tonic::Code::NotFound
                                    | tonic::Code::FailedPrecondition
                            ) =>
                        {
                            refusals.lock().expect("refusals").push(format!("trigger {mark} of {job}: {s:?}"));
                            break;
                        }
                        _ => {}
                    }
                }
                triggers.lock().expect("triggers").push((job, mark, fire));
            }
        })
    };
    // Backfill the last four seconds of a `plain` job now and then (BackfillJob), through a node in
    // turn: those instants were claimed by the schedule already (fired a second ahead), or, while
    // no master claims (a kill, a pause), are made by the backfill first and found made by the
    // claim. The checker's rules hold each instant to one run either way (`Backfills` counts).
    let backfills: Arc<std::sync::Mutex<Backfills>> = Default::default();
    let backfill_loop = {
        let (tally, stop) = (Arc::clone(&backfills), stop_cancels.clone());
        let addrs: Vec<String> = runner.cluster.slots.iter().map(|s| s.grpc.addr()).collect();
        let jobs: Vec<String> = infos.iter().filter(|j| j.id.starts_with("plain-")).map(|j| j.id.clone()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xbac4);
        tokio::spawn(async move {
            while !jobs.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(rng.random_range(2000..5000))) => {}
                }
                let job = jobs[rng.random_range(0..jobs.len())].clone();
                let addr = &addrs[rng.random_range(0..addrs.len())];
                let now = now_ms();
                let req = pb::BackfillJobRequest {
                    job_id: job.clone(),
                    from: Some(rota::pb::timestamp(now - 4000)),
                    to: Some(rota::pb::timestamp(now)),
                    rate: 100,
                    dry_run: false,
                };
                tally.lock().expect("backfills").calls += 1;
                let Ok(ep) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else { continue };
                let Ok(Ok(ch)) = tokio::time::timeout(Duration::from_secs(1), ep.connect()).await else { continue };
                let mut c = pb::scheduler_service_client::SchedulerServiceClient::new(ch);
                let call = async {
                    let mut stream = c.backfill_job(req).await?.into_inner();
                    let (mut started, mut found) = (0, 0);
                    while let Some(m) = stream.message().await? {
                        match pb::BackfillOutcome::try_from(m.outcome) {
                            Ok(pb::BackfillOutcome::AlreadyFired) => found += 1,
                            _ => started += 1,
                        }
                    }
                    Ok::<_, tonic::Status>((started, found))
                };
                match tokio::time::timeout(Duration::from_secs(10), call).await {
                    Ok(Ok((started, found))) => {
                        let mut t = tally.lock().expect("backfills");
                        t.started += started;
                        t.found += found;
                    }
                    Ok(Err(s)) if matches!(s.code(), tonic::Code::InvalidArgument | tonic::Code::NotFound) => {
                        tally.lock().expect("backfills").refused.push(format!("backfill of {job}: {s:?}"));
                    }
                    _ => {}
                }
            }
        })
    };
    let canceller = {
        let (cancels, stop) = (Arc::clone(&cancels), stop_cancels.clone());
        let ports: Vec<u16> = runner.cluster.slots.iter().map(|s| s.listen).collect();
        let jobs: Vec<String> = infos.iter().filter(|j| j.id.starts_with("cancel-")).map(|j| j.id.clone()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xca9c);
        tokio::spawn(async move {
            while !stop.is_cancelled() && !jobs.is_empty() {
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
                let job = jobs[rng.random_range(0..jobs.len())].clone();
                let port = ports[rng.random_range(0..ports.len())];
                let Ok(ep) = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")) else {
                    continue;
                };
                let Ok(Ok(ch)) = tokio::time::timeout(Duration::from_secs(1), ep.connect()).await else { continue };
                let mut c = pb::scheduler_service_client::SchedulerServiceClient::new(ch);
                let list = pb::ListExecutionsRequest {
                    job_id: job,
                    state: pb::ExecutionState::Running as i32,
                    page_size: 1,
                    ..Default::default()
                };
                let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), c.list_executions(list)).await else {
                    continue;
                };
                let Some(e) = r.into_inner().executions.into_iter().next() else { continue };
                // Noted before it is asked: a cancel whose reply is lost may still have happened.
                cancels.lock().expect("cancels").insert(e.id.clone());
                let req = pb::CancelExecutionRequest { execution_id: e.id, reason: "chaos".into() };
                let _ = tokio::time::timeout(Duration::from_secs(20), c.cancel_execution(req)).await;
            }
        })
    };
    // Watch every shard's lease in Redis: epoch -> node, for the master-only rule and failover times.
    let stop = tokio_util::sync::CancellationToken::new();
    let poll = {
        let (masters, seen, stop) = (runner.masters.clone(), runner.epoch_seen.clone(), stop.clone());
        let source = runner.cluster.redis.lease_source();
        tokio::task::spawn_blocking(move || {
            while !stop.is_cancelled() {
                for (k, lease) in source.leases(shards).into_iter().enumerate() {
                    // `<node>:<epoch>:<incarnation>`
                    let Some((node, epoch)) = lease.as_deref().and_then(|v| {
                        let mut f = v.split(':');
                        Some((f.next()?.to_string(), f.next()?.parse::<u64>().ok()?))
                    }) else {
                        continue;
                    };
                    let mut all = masters.lock().expect("masters");
                    let m = all.entry(k as u16).or_default();
                    m.entry(epoch).or_insert((node, now_ms()));
                    // A lease with a higher epoch seen earlier, while this lower one is still the
                    // store's: it was issued by a Redis primary whose writes were then lost (a
                    // killed primary restarted with its old data takes writes until the Sentinels
                    // demote it). Epochs only rise on the real store, so that lease never held: it
                    // does not count as a master.
                    let zombies: Vec<u64> = m.range(epoch + 1..).map(|(e, _)| *e).collect();
                    for z in zombies {
                        if let Some((node, at)) = m.remove(&z) {
                            eprintln!("[chaos {}] shard {k}: epoch {z} of {node} (seen at {at}) was lost with its Redis primary: {epoch} is still the store's", now_ms());
                        }
                    }
                    if k == 0 {
                        seen.fetch_max(epoch, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fault_end = t0 + 5000 + secs * 1000;
    // On a Redis Cluster or Sentinel the Redis fault (a primary killed, maybe failed over) is what
    // the run is for: drawn four times as often.
    let mut kinds = FAULTS.to_vec();
    if !matches!(runner.cluster.redis, Redis::Single(_)) {
        kinds.extend(["restart_redis"; 3]);
    }
    if runner.cluster.history.is_some() {
        kinds.push("restart_postgres");
    }
    while now_ms() < fault_end {
        let kind = kinds[runner.rng.random_range(0..kinds.len())];
        runner.inject(kind).await;
        tokio::time::sleep(Duration::from_millis(runner.rng.random_range(1000..3000))).await;
    }
    let window = ((t0 / 1000 + 2) * 1000, now_ms() / 1000 * 1000);
    stop_cancels.cancel();
    let _ = canceller.await;
    let _ = trigger_loop.await;
    let _ = backfill_loop.await;
    tracing_line(&format!("faults over; window {window:?}; letting the cluster settle"));
    // Settle: every fire in the window reaches a terminal record (recoveries need a node TTL or
    // two); a long run's backlog and record listing take longer.
    let settle_until = now_ms() + 45_000 + secs * 1000 / 30;
    let mut recs;
    loop {
        let mut c = runner.cluster.client().await.expect("client");
        recs = records(&mut c, &infos).await;
        // Manual fires too, whenever they were triggered (the trigger loop stopped at the window's end).
        let open = recs
            .iter()
            .filter(|r| (r.sched_ms >= window.0 && r.sched_ms < window.1) || r.manual)
            .filter(|r| matches!(r.state.as_str(), "pending" | "running"))
            .count();
        if open == 0 || now_ms() > settle_until {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.cancel();
    let _ = poll.await;
    // With a history store the listing reads PostgreSQL too: once the archive has caught up, a
    // capped job's records are all there again.
    let mut archive = Vec::new();
    if runner.cluster.history.is_some() {
        archive = tokio::task::block_in_place(|| runner.cluster.archive_violations(window.1));
        let mut c = runner.cluster.client().await.expect("client");
        recs = records(&mut c, &infos).await;
    }
    let runs = read_sidelog(&runner.cluster.sidelog);
    let masters = runner.masters.lock().expect("masters").clone();
    let history = History {
        jobs: infos,
        runs,
        records: recs,
        faults: runner.faults.clone(),
        masters,
        window,
        late_bound_ms: 5000,
        // Strict mode on the Redis Cluster and Sentinel profiles: a failover there undoes no
        // acknowledged write, so it explains no extra run (0 such runs in each profile's runs
        // before this was made a rule).
        redis_faults_explain: matches!(runner.cluster.redis, Redis::Single(_)),
        cancels: cancels.lock().expect("cancels").clone(),
        triggers: triggers.lock().expect("triggers").clone(),
        trigger_targets: trigger_targets.lock().expect("targets").clone(),
    };
    let mut report = checker::check(&history);
    // With three limited jobs or more (five fire at one instant in the default workload), the
    // limit must have bound, or its rule was never put to the test.
    let limited = history.jobs.iter().filter(|j| j.limit.is_some()).count();
    if limited > LIMIT_MAX && report.most_limited < LIMIT_MAX {
        report.violations.push(format!(
            "limit: {limited} limited jobs never had {LIMIT_MAX} runs at once (at most {}): the limit was not exercised",
            report.most_limited
        ));
    }
    for line in &report.redis_explained {
        tracing_line(&format!("explained by a Redis fault alone: {line}"));
    }
    report.violations.append(&mut runner.crashes);
    report.violations.append(&mut trigger_refusals.lock().expect("refusals").clone());
    let Backfills { calls, started, found, mut refused } = backfills.lock().expect("backfills").clone();
    (report.backfill_calls, report.backfill_started, report.backfill_found_fired) = (calls, started, found);
    report.violations.append(&mut refused);
    // Backfills must work at all: most get through the faults.
    if calls >= 5 && started + found == 0 {
        report.violations.push(format!("none of {calls} backfills got through"));
    }
    // Triggers with arguments of their own must work at all: most get through the faults.
    if report.manual_triggered >= 10 && report.manual_executed == 0 {
        report.violations.push(format!("none of {} manual triggers ran", report.manual_triggered));
    }
    report.violations.append(&mut archive);
    let summary = summary(topology, seed, secs, n_jobs, &history, &report);
    println!("{}", serde_json::to_string(&summary).expect("json"));
    println!("{}", table(&summary));
    if let Ok(p) = std::env::var("ROTA_CHAOS_OUT") {
        let _ = std::fs::write(p, serde_json::to_string_pretty(&summary).expect("json"));
    }
    if let Ok(dir) = std::env::var("ROTA_CHAOS_DUMP") {
        // Everything needed to look into a violation: the side log, the records, the faults, the
        // node logs.
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::copy(&runner.cluster.sidelog, dir.join("sidelog.tsv"));
        let recs: Vec<String> = history.records.iter().map(|r| format!("{r:?}")).collect();
        let _ = std::fs::write(dir.join("records.txt"), recs.join("\n"));
        let _ = std::fs::write(dir.join("faults.json"), serde_json::to_string_pretty(&history.faults).expect("json"));
        let _ = std::fs::write(dir.join("masters.txt"), format!("{:#?}", history.masters));
        let _ = std::fs::write(dir.join("violations.txt"), report.violations.join("\n"));
        for s in &runner.cluster.slots {
            let last = s.node.as_ref().map(|n| n.log()).unwrap_or_default();
            let _ = std::fs::write(dir.join(format!("{}.log", s.id)), format!("{}{last}", s.old_logs));
        }
    }
    if !report.violations.is_empty() {
        // The node logs first and the violations last: a CI log keeps only its tail, and the logs
        // printed while unwinding (TestNode's drop) used to bury the panic message.
        for s in &runner.cluster.slots {
            let last = s.node.as_ref().map(|n| n.log()).unwrap_or_default();
            eprintln!("---- log of node {} ----\n{}{last}", s.id, s.old_logs);
        }
        for s in &mut runner.cluster.slots {
            drop(s.node.take());
        }
        panic!("{} violations ({topology}, seed {seed}):\n{}", report.violations.len(), report.violations.join("\n"));
    }
}

fn summary(topology: &str, seed: u64, secs: i64, jobs: usize, h: &History, r: &checker::Report) -> serde_json::Value {
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for f in &h.faults {
        *by_kind.entry(f.kind.clone()).or_default() += 1;
    }
    let mut fo = r.failover_ms.clone();
    fo.sort_unstable();
    let mut v = serde_json::json!({
        "scenario": "chaos",
        "redis": topology,
        "seed": seed,
        "fault_seconds": secs,
        "jobs": jobs,
        "nodes": NODES,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "faults": by_kind,
        "faults_total": h.faults.len(),
        "fires_expected": r.fires_expected,
        "executed": r.executed,
        "skipped_by_lock": r.skipped_by_lock,
        "cancelled": r.cancelled,
        "replaced": r.replaced,
        "max_held_delay_ms": r.max_held_delay_ms,
        "manual_triggered": r.manual_triggered,
        "manual_executed": r.manual_executed,
        "lost_by_policy": r.lost_by_policy,
        "misfired_by_limit": r.misfired_by_limit,
        "explained_extra_runs": r.explained_extra_runs,
        "explained_by_redis_alone": r.explained_by_redis_alone,
        "lost": r.lost,
        "duplicated": r.duplicated,
        "stale_epoch": r.stale_epoch,
        "overlapping": r.overlapping,
        "chain_early": r.chain_early,
        "chain_stalled": r.chain_stalled,
        "max_chain_wait_ms": r.max_chain_wait_ms,
        "over_limit": r.over_limit,
        "most_limited": r.most_limited,
        "master_only_elsewhere": r.master_only_elsewhere,
        "without_handler": r.without_handler,
        "disagreeing": r.disagreeing,
        "trimmed": r.trimmed,
        "late_over_5s": r.late,
        "max_delay_ms": r.max_delay_ms,
        "p95_delay_ms_by_priority": {
            "high": r.p95_delay_ms_by_priority[0],
            "normal": r.p95_delay_ms_by_priority[1],
            "low": r.p95_delay_ms_by_priority[2],
        },
        "failover_ms_median": fo.get(fo.len() / 2).copied().unwrap_or(0),
        "failover_ms_max": fo.last().copied().unwrap_or(0),
        "violations": r.violations.len(),
    });
    // Two objects made one: a single json! of every measure passes the macro's recursion limit.
    let more = serde_json::json!({
        "backfill_calls": r.backfill_calls,
        "backfill_started": r.backfill_started,
        "backfill_found_fired": r.backfill_found_fired,
        "early_for_jitter": r.early_for_jitter,
        "calendar_skipped": r.calendar_skipped,
        "calendar_omitted": r.calendar_omitted,
        "calendar_forwarded": r.calendar_forwarded,
        "calendar_broken": r.calendar_broken,
    });
    if let (Some(o), serde_json::Value::Object(m)) = (v.as_object_mut(), more) {
        o.extend(m);
    }
    v
}

fn table(s: &serde_json::Value) -> String {
    let mut out = String::from("| measure | value |\n| --- | --- |\n");
    if let Some(o) = s.as_object() {
        for (k, v) in o {
            out.push_str(&format!("| {k} | {v} |\n"));
        }
    }
    out
}

/// Redis restarted without persistence (no AOF, no RDB): documents what is lost, and checks that
/// the cluster itself comes back (nodes re-register, a master with a higher epoch, so a master
/// from before the wipe stays fenced) and that once the jobs are put again every fire runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restart_without_persistence() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Without the history store: what a wipe loses when Redis is all there is.
    let mut cluster = Cluster::start(Redis::Single(RedisServer::start()), 8, false, 1).await;
    let (jobs, infos) = workload(20, 1, &[], 0);
    let infos: Vec<JobInfo> =
        infos.into_iter().filter(|j| j.period_ms == 1000 && j.phase_ms == 0 && !j.forbid && !j.master_only).collect();
    let jobs: Vec<pb::Job> = jobs.into_iter().filter(|j| infos.iter().any(|i| i.id == j.id)).collect();
    let mut c = cluster.client().await.expect("client");
    for j in &jobs {
        c.put_job(pb::PutJobRequest { job: Some(j.clone()) }).await.expect("put job");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, epoch_before) = cluster.wait_master().await;
    let execs_before = records(&mut c, &infos).await.len();
    let wiped = now_ms();
    tokio::task::block_in_place(|| cluster.redis.primary().kill());
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| cluster.redis.primary().restart());
    // The cluster comes back on the empty Redis by itself.
    let (_, epoch_after) = cluster.wait_master().await;
    for s in &cluster.slots {
        s.node.as_ref().expect("node").wait_serving().await;
    }
    let mut c = cluster.client().await.expect("client");
    let jobs_after = c.list_jobs(pb::ListJobsRequest::default()).await.expect("list").into_inner().jobs.len();
    let execs_after = records(&mut c, &infos).await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ran_without_jobs = read_sidelog(&cluster.sidelog).iter().filter(|r| r.start_ms > wiped + 2000).count();
    // Put the jobs again (what a deploy tool or `--jobs` on a restarted node does).
    for j in &jobs {
        c.put_job(pb::PutJobRequest { job: Some(j.clone()) }).await.expect("put job again");
    }
    let reput = now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let window = ((reput / 1000 + 1) * 1000, (now_ms() / 1000 - 1) * 1000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs = read_sidelog(&cluster.sidelog);
    let after: Vec<Run> = runs.iter().filter(|r| r.sched_ms >= window.0).cloned().collect();
    let max_epoch_after = after.iter().map(|r| r.epoch).max().unwrap_or(0);
    let history = History {
        jobs: infos.clone(),
        runs: after,
        records: records(&mut c, &infos).await,
        faults: Vec::new(),
        masters: BTreeMap::new(),
        window,
        late_bound_ms: 5000,
        redis_faults_explain: true,
        cancels: HashSet::new(),
        triggers: Vec::new(),
        trigger_targets: Default::default(),
    };
    let report = checker::check(&history);
    let summary = serde_json::json!({
        "scenario": "redis_restart_without_persistence",
        "jobs_before": jobs.len(),
        "jobs_after_restart": jobs_after,
        "executions_before": execs_before,
        "executions_after_restart": execs_after,
        "epoch_before": epoch_before,
        "epoch_after": epoch_after,
        "runs_while_jobs_were_gone": ran_without_jobs,
        "seconds_from_wipe_to_reput": (reput - wiped) / 1000,
        "fires_checked_after_reput": report.fires_expected,
        "violations_after_reput": report.violations.len(),
    });
    println!("{summary}");
    println!("{}", table(&summary));
    // What is lost: every job definition and the execution history (and, not checked here, queued
    // fires, in-flight claims and locks). What is kept: the cluster, and fencing.
    assert_eq!(jobs_after, 0, "job definitions live only in Redis");
    assert!(execs_after < execs_before, "history lives only in Redis: {execs_after} of {execs_before}");
    assert_eq!(ran_without_jobs, 0, "nothing fires without job definitions");
    assert!(epoch_after > epoch_before, "epochs keep rising across the wipe (floors): {epoch_after} <= {epoch_before}");
    assert!(max_epoch_after > epoch_before, "fires after the wipe carry a newer epoch");
    assert!(report.fires_expected > 0);
    assert!(report.violations.is_empty(), "{}", report.violations.join("\n"));
}
