//! Test harness with the real parts: a real `redis-server` on a free loopback port (killable and
//! restartable on the same port), real `rota` node processes on free ports, real gRPC clients, and
//! `eventually` instead of sleeps.
#![allow(dead_code)]

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
        r.spawn();
        r
    }

    fn spawn(&mut self) {
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
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server on port {} did not come up", self.port);
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
        cmd.args(["server", "--node-id", node_id, "--heartbeat-ms", "200", "--node-ttl-ms", "1000"]);
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

pub async fn executions(c: &mut SchedulerServiceClient<Channel>, job: &str) -> Vec<pb::Execution> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_executions(pb::ListExecutionsRequest {
                job_id: job.into(),
                state: 0,
                page_size: 1000,
                page_token: token,
            })
            .await
            .expect("list executions")
            .into_inner();
        all.extend(r.executions);
        if r.next_page_token.is_empty() {
            return all;
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
