//! Test harness with the real parts: a real `redis-server` on a free loopback port (killable and
//! restartable on the same port), real `rota` node processes on free ports, real gRPC clients, and
//! `eventually` instead of sleeps.
#![allow(dead_code)]

pub mod pki;
pub mod postgres;
pub mod workers;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rota::pb;
use rota::pb::scheduler_service_client::SchedulerServiceClient;
use tonic::transport::Channel;

/// A free loopback port (bound then released; the race with other tests is tiny and retried by callers).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

/// Retries `f` until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `eventually` for a check that blocks (plain Redis commands): polls every 100 ms.
#[allow(dead_code)]
pub fn eventually_sync<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Option<Child>, sig: nix::sys::signal::Signal) {
    if let Some(c) = child {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
    }
}

/// SIGKILL (after SIGCONT, so a stopped process dies too) and reap.
fn kill(child: &mut Option<Child>) {
    signal(child, nix::sys::signal::Signal::SIGCONT);
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Extra redis-server arguments (e.g. requirepass, an ACL user).
    args: Vec<String>,
    /// `user:pass@` for URLs when the server needs auth.
    auth: String,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[], "")
    }

    /// With extra server arguments; `auth` (`user:pass@`) is put in `url()`.
    pub fn start_with(args: &[&str], auth: &str) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = args.iter().map(|a| a.to_string()).collect();
        let mut r = RedisServer { port: free_port(), child: None, dir, args, auth: auth.to_string() };
        // A free port can be taken by another process before redis-server binds it: then the
        // server exits at once, and another port is tried.
        for _ in 0..5 {
            if r.try_spawn() {
                return r;
            }
            r.port = free_port();
        }
        panic!("redis-server did not come up on five free ports");
    }

    fn spawn(&mut self) {
        assert!(self.try_spawn(), "redis-server on port {} did not come up", self.port);
    }

    /// Starts the server on its port; false when it exited before answering (the port was taken).
    fn try_spawn(&mut self) -> bool {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start '{bin}': {e}. Install Redis (apt-get install redis-server) or set REDIS_SERVER")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
                // Ours, not another test's server that took the port first.
                let pid = self.child.as_ref().map(|c| c.id()).unwrap_or(0);
                if redis::cmd("INFO")
                    .arg("server")
                    .query::<String>(&mut c)
                    .is_ok_and(|i| i.contains(&format!("process_id:{pid}\r")))
                {
                    return true;
                }
            }
            let exited = self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited || Instant::now() >= deadline {
                kill(&mut self.child);
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}127.0.0.1:{}", self.auth, self.port)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Starts again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts again as a primary: without the `--replicaof` it was started with (a Sentinel-managed
    /// server comes back as it was last configured, and the Sentinels make it a replica if they
    /// promoted another; started as its first replica again, it could follow its own replica).
    #[allow(dead_code)]
    pub fn restart_as_primary(&mut self) {
        if let Some(i) = self.args.iter().position(|a| a == "--replicaof") {
            self.args.drain(i..(i + 3).min(self.args.len()));
        }
        self.restart();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which store a test node uses.
#[derive(Clone)]
pub enum Backend {
    Memory,
    Redis(String),
}

pub const LEASE_TTL_MS: &str = "1500";
pub const LEASE_RENEW_MS: &str = "500";

pub struct TestNode {
    pub addr: String,
    pub node_id: String,
    /// How test clients reach a node that serves TLS.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts `rota server` with `extra` flags and waits until it reports SERVING.
    pub async fn start(backend: &Backend, node_id: &str, extra: &[&str]) -> TestNode {
        let node = Self::spawn(backend, node_id, extra);
        node.wait_serving().await;
        node
    }

    /// Starts with extra environment variables and waits until it reports SERVING.
    pub async fn start_env(backend: &Backend, node_id: &str, extra: &[&str], env: &[(&str, &str)]) -> TestNode {
        let node = Self::spawn_env(backend, node_id, extra, env);
        node.wait_serving().await;
        node
    }

    /// Starts without waiting for SERVING.
    pub fn spawn(backend: &Backend, node_id: &str, extra: &[&str]) -> TestNode {
        Self::spawn_env(backend, node_id, extra, &[])
    }

    pub fn spawn_env(backend: &Backend, node_id: &str, extra: &[&str], env: &[(&str, &str)]) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("node.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rota"));
        cmd.args(["server", "--node-id", node_id]);
        // Fast liveness for tests, unless the test sets its own.
        if !extra.contains(&"--heartbeat-ms") {
            cmd.args(["--heartbeat-ms", "200"]);
        }
        if !extra.contains(&"--node-ttl-ms") {
            cmd.args(["--node-ttl-ms", "1000"]);
        }
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if let Backend::Redis(url) = backend {
            cmd.args(["--redis", url]);
        }
        // Set before the caller's environment, which may override it.
        cmd.env("RUST_LOG", "rota=debug,info");
        cmd.envs(env.iter().copied());
        cmd.args(extra)
            .env_remove("ROTA_REDIS")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let mut child = cmd.spawn().expect("spawn rota");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(a) = line.strip_prefix("rota listening on ") {
                        let _ = tx.send(a.to_string());
                        sent = true;
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("node {node_id} did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        TestNode { addr, node_id: node_id.to_string(), tls: None, child: Some(child), log, _dir: dir }
    }

    /// Starts a node serving TLS; test clients use `client_tls`.
    pub async fn start_tls(
        backend: &Backend,
        node_id: &str,
        extra: &[&str],
        client_tls: tonic::transport::ClientTlsConfig,
    ) -> TestNode {
        let mut node = Self::spawn_env(backend, node_id, extra, &[]);
        node.tls = Some(client_tls);
        node.wait_serving().await;
        node
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    fn ep(&self) -> Option<tonic::transport::Endpoint> {
        let ep = tonic::transport::Endpoint::from_shared(self.endpoint()).ok()?;
        match &self.tls {
            Some(t) => ep.tls_config(t.clone()).ok(),
            None => Some(ep),
        }
    }

    pub async fn channel(&self) -> Channel {
        self.ep().expect("endpoint").connect().await.expect("connect to node")
    }

    pub async fn client(&self) -> SchedulerServiceClient<Channel> {
        SchedulerServiceClient::new(self.channel().await)
    }

    pub async fn health(&self) -> Option<i32> {
        let ch = self.ep()?.connect().await.ok()?;
        let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
        let r = h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.ok()?;
        Some(r.into_inner().status)
    }

    pub async fn wait_serving(&self) {
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        eventually(Duration::from_secs(20), "node SERVING", || async {
            (self.health().await == Some(serving)).then_some(())
        })
        .await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGTERM and wait for exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
        c.wait().ok().and_then(|s| s.code())
    }

    /// SIGSTOP: the process freezes (a long GC-like pause) until `resume`.
    pub fn pause(&self) {
        signal(&self.child, nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        signal(&self.child, nix::sys::signal::Signal::SIGCONT);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// True once the process has exited (e.g. it crashed at a failpoint), reaping it.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => false,
            Some(_) => {
                self.child = None;
                true
            }
            None => true,
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- log of node {} ----\n{}", self.node_id, self.log());
        }
        self.kill();
    }
}

/// Every backend a behaviour test runs against; the Redis one owns its server.
pub fn backends() -> Vec<(&'static str, Backend, Option<RedisServer>)> {
    let redis = RedisServer::start();
    let url = redis.url();
    vec![("memory", Backend::Memory, None), ("redis", Backend::Redis(url), Some(redis))]
}

pub fn job(id: &str, cron: &str, handler: &str, args: serde_json::Value) -> pb::Job {
    let spec =
        rota::job::JobSpec { id: id.into(), cron: cron.into(), handler: handler.into(), args, ..Default::default() };
    rota::cli::pb_job(&spec)
}

/// Each job's fires from its first to its last recorded second, as `node` lists them:
/// (duplicated fires, missing seconds, executions per epoch).
pub async fn check_once(node: &TestNode, jobs: &[String]) -> (usize, usize, std::collections::BTreeMap<u64, usize>) {
    let mut c = node.client().await;
    let (mut dups, mut gaps, mut epochs) = (0, 0, std::collections::BTreeMap::new());
    for j in jobs {
        let mut by_fire: std::collections::BTreeMap<i64, usize> = std::collections::BTreeMap::new();
        for e in executions(&mut c, j).await {
            *by_fire.entry(ms(&e.scheduled_time)).or_default() += 1;
            *epochs.entry(e.epoch).or_default() += 1;
        }
        dups += by_fire.values().filter(|n| **n > 1).count();
        if let (Some(first), Some(last)) = (by_fire.keys().next(), by_fire.keys().last()) {
            gaps += ((last - first) / 1000 + 1) as usize - by_fire.len();
        }
    }
    (dups, gaps, epochs)
}

pub async fn executions(c: &mut SchedulerServiceClient<Channel>, job: &str) -> Vec<pb::Execution> {
    try_executions(c, job).await.expect("list executions")
}

/// `executions`, or the listing's error (a job that is gone is NOT_FOUND).
pub async fn try_executions(
    c: &mut SchedulerServiceClient<Channel>,
    job: &str,
) -> Result<Vec<pb::Execution>, tonic::Status> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_executions(pb::ListExecutionsRequest {
                job_id: job.into(),
                state: 0,
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        all.extend(r.executions);
        if r.next_page_token.is_empty() {
            return Ok(all);
        }
        token = r.next_page_token;
    }
}

pub fn ms(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().map(rota::api::convert::timestamp_ms).unwrap_or(0)
}

pub fn state(e: &pb::Execution) -> pb::ExecutionState {
    pb::ExecutionState::try_from(e.state).unwrap_or(pb::ExecutionState::Unspecified)
}

/// A node's view of the cluster (None while it does not answer).
pub async fn status(n: &TestNode) -> Option<pb::GetClusterStatusResponse> {
    let mut c = n.client().await;
    c.get_cluster_status(pb::GetClusterStatusRequest {}).await.ok().map(|r| r.into_inner())
}

/// Three nodes (n1, n2, n3) on one Redis with `flags`, once each sees all three live.
pub async fn three_live(redis: &RedisServer, flags: &[&str]) -> Vec<TestNode> {
    let b = Backend::Redis(redis.url());
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(TestNode::start(&b, id, flags).await);
    }
    eventually(Duration::from_secs(40), "every node sees three live nodes", || async {
        for n in &nodes {
            let s = status(n).await?;
            let live = s.nodes.iter().filter(|x| x.state == pb::NodeState::Live as i32).count();
            (live == 3).then_some(())?;
        }
        Some(())
    })
    .await;
    nodes
}

/// The master as every node given sees it, once they agree: (master id, epoch).
pub async fn agreed_master(nodes: &[&TestNode]) -> (String, u64) {
    eventually(Duration::from_secs(20), "all nodes agree on one master", || async {
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

/// `redis-cli` (Debian's redis-tools, which redis-server's package pulls in).
fn redis_cli() -> String {
    std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into())
}

/// One command on a node, synchronously (None when it does not answer).
pub fn redis_cmd<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut c = client.get_connection_with_timeout(Duration::from_secs(1)).ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c).ok()
}

/// A real Redis Cluster on loopback: 3 primaries and 3 replicas (`redis-cli --cluster create`),
/// a short node timeout so a replica takes over a killed primary in a few seconds.
pub struct RedisCluster {
    pub servers: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        Self::start_with(&[])
    }

    /// With extra arguments for every server (e.g. AOF).
    pub fn start_with(extra: &[&str]) -> RedisCluster {
        let base = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            // A replica may always take over, however long since it last heard its primary.
            "--cluster-replica-validity-factor",
            "0",
        ];
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let servers: Vec<RedisServer> = (0..6).map(|_| RedisServer::start_with(&args, "")).collect();
        let addrs: Vec<String> = servers.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        let out = Command::new(redis_cli())
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}. Install redis-tools or set REDIS_CLI"));
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let c = RedisCluster { servers };
        c.wait_ok(&[]);
        c
    }

    /// `redis+cluster://` listing every node.
    pub fn url(&self) -> String {
        self.url_first(self.servers[0].port)
    }

    /// `redis+cluster://` listing every node, `first` first (the node the change channel's
    /// subscription tries first).
    pub fn url_first(&self, first: u16) -> String {
        let mut ports: Vec<u16> = self.servers.iter().map(|s| s.port).filter(|p| *p != first).collect();
        ports.insert(0, first);
        let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Waits until every live node (not in `dead`) says cluster_state:ok and every replica's link
    /// to its primary is up.
    pub fn wait_ok(&self, dead: &[u16]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.servers.iter().filter(|s| !dead.contains(&s.port)).all(|s| {
                let info: Option<String> = redis_cmd(s.port, &["CLUSTER", "INFO"]);
                let repl: Option<String> = redis_cmd(s.port, &["INFO", "replication"]);
                info.is_some_and(|i| i.contains("cluster_state:ok"))
                    && repl.is_some_and(|r| r.contains("role:master") || r.contains("master_link_status:up"))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the Redis Cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port of the primary that serves `key`'s slot, as a live node sees it.
    pub fn primary_of(&self, key: &str, dead: &[u16]) -> u16 {
        let live = self.servers.iter().find(|s| !dead.contains(&s.port)).expect("a live node");
        let slot: i64 = redis_cmd(live.port, &["CLUSTER", "KEYSLOT", key]).expect("keyslot");
        let slots: Vec<redis::Value> = redis_cmd(live.port, &["CLUSTER", "SLOTS"]).expect("cluster slots");
        for range in slots {
            let redis::Value::Array(r) = range else { continue };
            let (Some(redis::Value::Int(lo)), Some(redis::Value::Int(hi)), Some(redis::Value::Array(primary))) =
                (r.first(), r.get(1), r.get(2))
            else {
                continue;
            };
            if (*lo..=*hi).contains(&slot) {
                if let Some(redis::Value::Int(port)) = primary.get(1) {
                    return *port as u16;
                }
            }
        }
        panic!("no primary serves slot {slot}");
    }

    pub fn server(&mut self, port: u16) -> &mut RedisServer {
        self.servers.iter_mut().find(|s| s.port == port).expect("server")
    }
}

/// A real Sentinel setup on loopback: a primary, one replica and three Sentinels (quorum 2) that
/// call the primary down after 1 s without an answer.
pub struct RedisSentinels {
    pub primary: RedisServer,
    pub replica: RedisServer,
    /// Replicas beyond the first (`start_with_replicas`).
    pub more: Vec<RedisServer>,
    pub sentinels: Vec<SentinelProcess>,
}

pub const SENTINEL_MASTER: &str = "rotamaster";

pub struct SentinelProcess {
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

impl RedisSentinels {
    pub fn start() -> RedisSentinels {
        Self::start_with(&[])
    }

    /// With extra arguments for every Redis server (e.g. AOF).
    pub fn start_with(extra: &[&str]) -> RedisSentinels {
        Self::start_with_replicas(extra, 1)
    }

    /// With `replicas` replicas (at least one): with two, a failover leaves the new primary a
    /// replica to acknowledge strict mode's writes at once.
    pub fn start_with_replicas(extra: &[&str], replicas: usize) -> RedisSentinels {
        let primary = RedisServer::start_with(extra, "");
        let p = primary.port.to_string();
        let replica_args: Vec<&str> =
            ["--replicaof", "127.0.0.1", &p].into_iter().chain(extra.iter().copied()).collect();
        let replica = RedisServer::start_with(&replica_args, "");
        let more: Vec<RedisServer> = (1..replicas.max(1)).map(|_| RedisServer::start_with(&replica_args, "")).collect();
        let sentinels: Vec<SentinelProcess> = (0..3)
            .map(|_| {
                let dir = tempfile::tempdir().expect("tempdir");
                let port = free_port();
                let conf = dir.path().join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {p} 2\n\
                         sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                         sentinel failover-timeout {SENTINEL_MASTER} 10000\n",
                        dir.path().display()
                    ),
                )
                .expect("sentinel.conf");
                let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
                let child = Command::new(&bin)
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start '{bin} --sentinel': {e}"));
                SentinelProcess { port, child: Some(child), _dir: dir }
            })
            .collect();
        let s = RedisSentinels { primary, replica, more, sentinels };
        // Every Sentinel knows the replica and the two other Sentinels, and the replica is in sync.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = s.sentinels.iter().all(|x| {
                let replicas: Option<Vec<redis::Value>> = redis_cmd(x.port, &["SENTINEL", "REPLICAS", SENTINEL_MASTER]);
                let others: Option<Vec<redis::Value>> = redis_cmd(x.port, &["SENTINEL", "SENTINELS", SENTINEL_MASTER]);
                replicas.is_some_and(|r| !r.is_empty()) && others.is_some_and(|o| o.len() == 2)
            }) && std::iter::once(&s.replica).chain(&s.more).all(|r| {
                redis_cmd::<String>(r.port, &["INFO", "replication"])
                    .is_some_and(|i| i.contains("master_link_status:up"))
            });
            if ready {
                return s;
            }
            assert!(Instant::now() < deadline, "the Sentinels did not find each other and the replica");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER}", hosts.join(","))
    }

    /// Every Redis server's port (the first primary's first).
    pub fn ports(&self) -> Vec<u16> {
        std::iter::once(&self.primary).chain(std::iter::once(&self.replica)).chain(&self.more).map(|s| s.port).collect()
    }

    /// The Redis server (the first primary or a replica) on `port`.
    pub fn server(&mut self, port: u16) -> &mut RedisServer {
        if self.primary.port == port {
            &mut self.primary
        } else if self.replica.port == port {
            &mut self.replica
        } else {
            self.more.iter_mut().find(|s| s.port == port).expect("a server of this set")
        }
    }

    /// The primary's port as the Sentinels report it (None while they disagree or do not answer).
    pub fn reported_primary(&self) -> Option<u16> {
        let mut seen = Vec::new();
        for x in &self.sentinels {
            let a: Vec<String> = redis_cmd(x.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER])?;
            seen.push(a.get(1)?.parse::<u16>().ok()?);
        }
        seen.windows(2).all(|w| w[0] == w[1]).then(|| seen[0])
    }
}

/// The Redis a test's rota nodes share: one server, or, with `ROTA_TEST_REDIS=cluster` or
/// `ROTA_TEST_REDIS=sentinel`, a real Redis Cluster (3 primaries, 3 replicas) or a primary, a
/// replica and three Sentinels, so that a suite runs unchanged on each deployment.
#[allow(dead_code)]
pub enum SharedRedis {
    Single(RedisServer),
    Cluster(RedisCluster),
    Sentinel(RedisSentinels),
}

#[allow(dead_code)]
impl SharedRedis {
    pub fn start() -> SharedRedis {
        match std::env::var("ROTA_TEST_REDIS").as_deref() {
            Ok("cluster") => SharedRedis::Cluster(RedisCluster::start()),
            Ok("sentinel") => SharedRedis::Sentinel(RedisSentinels::start()),
            Ok("single") | Ok("") | Err(_) => SharedRedis::Single(RedisServer::start()),
            Ok(other) => panic!("ROTA_TEST_REDIS={other}: expected single, cluster or sentinel"),
        }
    }

    /// The URL the nodes are given.
    pub fn url(&self) -> String {
        match self {
            SharedRedis::Single(r) => r.url(),
            SharedRedis::Cluster(c) => c.url(),
            SharedRedis::Sentinel(x) => x.url(),
        }
    }

    /// One command, sent where its key lives (the slot's primary, or the Sentinels' primary).
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            SharedRedis::Single(r) => cmd.query(&mut redis::Client::open(r.url())?.get_connection()?),
            SharedRedis::Cluster(c) => {
                let urls: Vec<String> = c.servers.iter().map(|s| s.url()).collect();
                cmd.query(&mut redis::cluster::ClusterClient::new(urls)?.get_connection()?)
            }
            SharedRedis::Sentinel(x) => {
                let port = x
                    .reported_primary()
                    .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "the Sentinels name no primary")))?;
                cmd.query(&mut redis::Client::open(format!("redis://127.0.0.1:{port}"))?.get_connection()?)
            }
        }
    }
}

/// `on_both_stores!(test_fn, ...)`: each `async fn test_fn(Backend)` of the file becomes two tests,
/// `memory::test_fn` and `redis::test_fn` (against a real redis-server of its own). The file must
/// have `Backend` and `RedisServer` in scope and declare `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Memory).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let server = super::RedisServer::start();
                    super::$name(super::Backend::Redis(server.url())).await;
                }
            )*
        }
    };
}

/// Runs the real `rota` client (`bin`: the test's `CARGO_BIN_EXE_rota`) against `node`, without a
/// token of the environment's.
/// A date that never comes soon (Feb 29, 03:00): jobs on it run only when triggered.
pub const NEVER: &str = "0 0 3 29 2 *";

/// Runs the real `rota` client of this build against `node`.
pub async fn rota(node: &TestNode, args: &[&str]) -> std::process::Output {
    rota_cli(env!("CARGO_BIN_EXE_rota"), node, args).await
}

/// A client run's output, both streams, for an assertion's message.
pub fn text(o: &std::process::Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub async fn rota_cli(bin: &str, node: &TestNode, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(bin)
        .args(args)
        .env("ROTA_ENDPOINT", node.endpoint())
        .env_remove("ROTA_TOKEN")
        .output()
        .await
        .expect("run rota")
}
