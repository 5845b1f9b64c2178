//! A node: wires the store, worker pool, delivery, recovery and scheduler together, and owns the
//! process lifecycle. `Node::start` builds and spawns the loops (the API above it binds the ports
//! and serves: `api::start`); `shutdown` follows one order: report not ready, stop the scheduler,
//! let running executions finish within the grace period, stop everything spawned (the servers too).
//! Readiness: the node is ready (grpc.health.v1 and /readyz, both published by `api`) only while it
//! can do its part: its store answers (the heartbeat loop, which also publishes the node's record)
//! and takes writes, a live node has held the master lease within the failover bound, and, on the
//! master, the scheduler's ticks succeed. The readiness loop checks that every heartbeat interval
//! and publishes it on a watch channel (`readiness`).
//! Shards (`shards` in the config): a node takes part in every shard of its cluster, each with its
//! own lease, scheduler, delivery and queue-and-recovery bound to that shard's store
//! (`ShardPart`), and one worker pool, membership and API for all of them.
//! Uses every room below it; nothing here speaks protobuf or serves a port.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::{Alert, Alerts};
use crate::cluster::clock::{ClusterClock, Crossing, Measured};
use crate::cluster::lease::{Lease, LeaseTiming};
use crate::cluster::loads::LoadTable;
use crate::cluster::membership::Membership;
use crate::cluster::shares::Share;
use crate::config::Config;
use crate::dispatch::{PeerClient, Router, RouterParts};
use crate::error::{Error, Result};
use crate::execution::{ExecState, Execution};
use crate::history::{History, Postgres};
use crate::job::file::Apply;
use crate::job::{Declared, Job};
use crate::metrics::{Metrics, NodeLabel};
use crate::pb;
use crate::recovery::{Recovery, RecoveryParts};
use crate::scheduler::{Scheduler, SchedulerParts};
use crate::store::{now_ms, MemoryStore, NodeRecord, RedisStore, Shards, Store};
use crate::store::{Beat, Cancel, FireTiming};
use crate::worker::egress::{Egress, OwnPorts};
use crate::worker::handlers::Registry;
use crate::worker::handlers::RunOutput;
use crate::worker::http::Http;
use crate::worker::remote::{Hub, Outbound, Session, WorkerSpec};
use crate::worker::shell::Shell;
use crate::worker::OutputEvent;
use crate::worker::{Worker, WorkerParts};

/// How often execution records past retention are swept from the indexes.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Completed one-shot jobs past retention deleted per shard at each prune.
const EXPIRE_BATCH: usize = 500;

/// This node's TLS identity and the cluster CA, loaded at start.
pub struct TlsFiles {
    pub identity: tonic::transport::Identity,
    pub ca: Option<tonic::transport::Certificate>,
}

impl TlsFiles {
    pub fn load(config: &Config) -> Result<Option<TlsFiles>> {
        let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else { return Ok(None) };
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e));
        let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
        let ca = config.tls_ca_file.as_deref().map(read).transpose()?.map(tonic::transport::Certificate::from_pem);
        Ok(Some(TlsFiles { identity, ca }))
    }

    /// How this node dials its peers: verify them with the cluster CA, present our certificate.
    fn client_config(&self) -> tonic::transport::ClientTlsConfig {
        let mut c = tonic::transport::ClientTlsConfig::new().identity(self.identity.clone());
        if let Some(ca) = &self.ca {
            c = c.ca_certificate(ca.clone());
        }
        c
    }
}

/// How long CancelExecution waits for a cancelled run's record to end before it answers: the shell
/// handler's grace (`worker::shell::CANCEL_GRACE`) and a margin.
const CANCEL_WAIT: Duration = Duration::from_secs(15);

/// How often a node rescans its own processing list for fires no task of it holds.
const RESCAN_EVERY: Duration = Duration::from_secs(5);

/// Where this node's API was bound (ports picked at bind time when the config says 0): the http
/// handler keeps its jobs off these ports, and peers and clients reach the node at `grpc`.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub http: Option<SocketAddr>,
}

/// This node's part in one shard: today's whole fire protocol bound to the shard's store.
pub struct ShardPart {
    pub shard: u16,
    pub store: Arc<dyn Store>,
    pub lease: Arc<Lease>,
    /// The node's worker pool, recording in this shard (`Worker::view`).
    pub worker: Arc<Worker>,
    pub scheduler: Arc<Scheduler>,
    /// Delivery: where fires run and getting them there; receives peers' SubmitTasks.
    pub router: Arc<Router>,
    /// Queue and recovery: adoption at start, the periodic rescan (and, on the master, the sweep).
    pub recovery: Arc<Recovery>,
    /// Highest fencing epoch seen in this shard (own acquisitions, peers' submissions): shared
    /// with its lease.
    max_epoch: Arc<AtomicU64>,
}

impl ShardPart {
    /// Checks a sender's epoch without recording it: refuses one older than the newest seen in
    /// this shard (a deposed master). Nothing a peer claims raises the floor; only the store's
    /// answer does (`confirm_epoch`), or a forged epoch would push every later acquisition past it.
    pub fn check_epoch(&self, epoch: u64) -> Result<()> {
        let seen = self.max_epoch.load(Ordering::SeqCst);
        if epoch < seen {
            return Err(Error::StaleEpoch { epoch, why: format!("this node has seen epoch {seen}") });
        }
        Ok(())
    }

    /// Records an epoch the store confirmed is the current one (an accept compared it with the
    /// stored counter).
    pub fn confirm_epoch(&self, epoch: u64) {
        self.max_epoch.fetch_max(epoch, Ordering::SeqCst);
    }

    fn is_master(&self) -> bool {
        self.lease.role().active().is_some()
    }
}

pub struct Node {
    pub config: Config,
    pub tls: Option<TlsFiles>,
    pub node_id: String,
    pub started_ms: i64,
    /// Where peers and clients reach this node.
    pub address: String,
    pub local_addr: SocketAddr,
    /// The stores of the cluster's shards (one without shards).
    pub shards: Shards,
    /// This node's part in each shard, shard k at index k.
    pub parts: Vec<ShardPart>,
    /// Execution records as the API reads them: Redis, and the history store when configured.
    pub history: Arc<History>,
    /// The worker pool (every part's worker is a view of it).
    pub worker: Arc<Worker>,
    /// The external workers attached to this node (their handlers are in the pool's registry).
    workers_hub: Hub,
    /// How many shard leases this node holds and should.
    share: Arc<Share>,
    /// Peers' loads, shared by every shard's delivery (fed by ReportLoad).
    loads: Arc<LoadTable>,
    peer_client: Arc<PeerClient>,
    /// This node's offset from the cluster clock (Redis's), measured at every heartbeat.
    pub clock: Arc<ClusterClock>,
    pub metrics: Arc<Metrics>,
    draining: AtomicBool,
    /// Whether the heartbeat may still beat. Cleared (under the lock, so no beat is in flight) just
    /// before a clean stop writes the `left` record, which a late beat would otherwise overwrite.
    beating: tokio::sync::Mutex<bool>,
    /// Store reachable and registered, as last seen by the heartbeat: part of readiness.
    serving: AtomicBool,
    /// The store took the readiness loop's last write probe.
    writable: AtomicBool,
    /// A live master was seen within the failover bound (readiness loop).
    master_ok: AtomicBool,
    alerts: Alerts,
    pub membership: Arc<Membership>,
    /// Shard 0's Redis store while the cluster's number of shards is still to be checked (Redis
    /// was down at start): no work is taken before (`fix_shards`).
    shards_unchecked: std::sync::Mutex<Option<Arc<RedisStore>>>,
    /// Set when this node finds it cannot serve the cluster (`refused`).
    refused: watch::Sender<Option<String>>,
    /// The history archiver, until `start_work` starts it (a node that never checked its number
    /// of shards must not archive, prune or take archive leases).
    archiver: std::sync::Mutex<Option<crate::history::Archiver>>,
    /// Set by `start_work`: the node competes for leases (published in its record).
    competing: AtomicBool,
    /// Ready or not, as the readiness loop last judged (false until it first judges, and from the
    /// start of `shutdown`). The API publishes it as grpc.health.v1 and /readyz.
    ready: watch::Sender<bool>,
    cancel: CancellationToken,
    scheduler_cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Node {
    /// Validates the config and starts the node's loops; `bound` says where its API listens (bound
    /// by the caller, `api::start`, which serves once this returns). The scheduler starts once the
    /// store answers (at once for the in-memory store).
    pub async fn start(config: Config, mut registry: Registry, bound: Bound) -> Result<Arc<Node>> {
        config.validate()?;
        if config.enable_shell {
            if config.shell_allow.is_empty() {
                tracing::warn!("shell handler enabled with an empty shell_allow list: every shell job will be refused");
            }
            registry.register("shell", Shell::new(config.shell_output_cap_bytes, config.shell_allow.clone()));
        }
        let tls = TlsFiles::load(&config)?;
        // External workers: their handlers come and go with their sessions.
        let workers_hub = Hub::default();
        registry.attach_source(Arc::new(workers_hub.clone()));
        let local_addr = bound.grpc;
        // With port 0 in the config, the ports http jobs must not reach are known only once bound.
        // Before the jobs file, whose http jobs are judged by this rule.
        registry.register("http", http_handler(&config, Some(local_addr.port()), bound.http.map(|a| a.port()))?);
        let jobs = match &config.jobs_file {
            Some(path) => read_jobs_file(path, &registry)?,
            None => FileContents::default(),
        };
        let address = config.advertise.clone().unwrap_or_else(|| local_addr.to_string());
        let timing = FireTiming {
            misfire_threshold_ms: config.misfire_threshold_ms,
            dispatch_deadline_ms: config.dispatch_deadline_ms(),
        };
        let redis: Option<Arc<RedisStore>> = match &config.redis {
            Some(url) => Some(Arc::new(
                RedisStore::connect_with(
                    url,
                    redis_access(&config)?,
                    &config.redis_prefix,
                    &config.cluster,
                    config.execution_retention_ms,
                )
                .await?
                .with_fire_timing(timing)
                .with_node_retention(config.dead_node_retention_ms)
                .with_recent_executions(u64::from(config.execution_recent))
                .with_replica_wait((config.redis_wait_replicas > 0).then_some(
                    crate::store::redis::ReplicaWait {
                        replicas: config.redis_wait_replicas,
                        timeout_ms: config.redis_wait_timeout_ms,
                    },
                ))?,
            )),
            None => None,
        };
        // Every shard's store: the Redis store of shard 0 and its siblings, or the in-memory one.
        let redis_shards: Vec<Arc<RedisStore>> = match &redis {
            Some(r) => std::iter::once(Arc::clone(r)).chain((1..config.shards).map(|k| Arc::new(r.shard(k)))).collect(),
            None => Vec::new(),
        };
        // The number of shards is checked against the cluster's now, or, while Redis is down,
        // before the node takes any work (the heartbeat loop).
        let shards_unchecked = match &redis {
            Some(r) => match fix_shards(r, config.shards).await {
                Ok(()) => None,
                Err(e @ Error::Config { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the number of shards yet; will before taking work");
                    Some(Arc::clone(r))
                }
            },
            None => None,
        };
        let shards = match redis_shards.is_empty() {
            false => Shards::new(redis_shards.iter().map(|r| Arc::clone(r) as Arc<dyn Store>).collect()),
            true => Shards::one(Arc::new(
                MemoryStore::new(config.execution_retention_ms)
                    .with_fire_timing(timing)
                    .with_node_retention(config.dead_node_retention_ms)
                    .with_recent_executions(u64::from(config.execution_recent)),
            )),
        };
        let home = Arc::clone(shards.home());
        let clock = Arc::new(match &config.redis {
            Some(_) => ClusterClock::measured_against_store(
                config.max_clock_offset_ms,
                // A measurement older than this no longer counts: after ten beats without a usable
                // sample (and never sooner than three node TTLs) the offset is unknown again.
                Duration::from_millis((10 * config.heartbeat_ms).max(3 * config.node_ttl_ms)),
            ),
            // No other clock than this process's: it is the cluster's.
            None => ClusterClock::local(),
        });
        let membership = Arc::new(Membership::new(&config.node_id, config.node_ttl_ms).with_shards(shards.count()));
        let cancel = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let alerts = Alerts::start(
            config.alert_webhook.clone(),
            Duration::from_millis(config.alert_webhook_timeout_ms),
            cancel.child_token(),
            Arc::clone(&metrics),
        );
        let timing = LeaseTiming {
            ttl: Duration::from_millis(config.lease_ttl_ms),
            renew: Duration::from_millis(config.lease_renew_ms),
        };
        let share = Arc::new(Share::new(&config.node_id, shards.count()));
        let leases: Vec<(Arc<Lease>, Arc<AtomicU64>)> = (0u16..)
            .zip(shards.all())
            .map(|(store_shard, store)| {
                let max_epoch = Arc::new(AtomicU64::new(0));
                let mut lease = Lease::new(
                    Arc::clone(store),
                    &config.node_id,
                    Arc::clone(&membership),
                    timing,
                    Arc::clone(&max_epoch),
                )
                .with_clock_gate(Arc::clone(&clock));
                if shards.count() > 1 {
                    lease = lease.with_share(Arc::clone(&share), store_shard);
                }
                (Arc::new(lease), max_epoch)
            })
            .collect();
        let worker = Arc::new(Worker::new(WorkerParts {
            store: Arc::clone(&home),
            membership: Arc::clone(&membership),
            role: leases[0].0.subscribe(),
            registry,
            node_id: config.node_id.clone(),
            cluster: config.cluster.clone(),
            max: config.workers,
            alerts: alerts.clone(),
            metrics: Arc::clone(&metrics),
            node_ttl_ms: config.node_ttl_ms,
            keep: crate::store::Keep { last: config.execution_keep_last, failed: config.execution_keep_failed },
            start_lead_ms: config.start_lead_ms as i64,
            max_recoveries: config.max_recoveries,
            misfire_threshold_ms: config.misfire_threshold_ms as i64,
        }));
        let loads = Arc::new(LoadTable::new(Arc::clone(&home), &config.node_id, config.node_ttl_ms));
        let peer_client = Arc::new(PeerClient::new(
            Duration::from_millis(config.dispatch_timeout_ms),
            config.cluster_secret.as_ref().map(|s| s.0.clone()),
            tls.as_ref().map(TlsFiles::client_config),
        ));
        let mut parts = Vec::with_capacity(leases.len());
        for (k, (lease, max_epoch)) in leases.into_iter().enumerate() {
            let store = Arc::clone(&shards.all()[k]);
            let worker = match k {
                0 => Arc::clone(&worker),
                _ => Arc::new(worker.view(Arc::clone(&store), lease.subscribe())),
            };
            let recovery = Arc::new(Recovery::new(RecoveryParts {
                store: Arc::clone(&store),
                worker: Arc::clone(&worker),
                node_id: config.node_id.clone(),
                role: lease.subscribe(),
                membership: Arc::clone(&membership),
                loads: Arc::clone(&loads),
                max_recoveries: config.max_recoveries,
                misfire_threshold_ms: config.misfire_threshold_ms,
            }));
            let router = Arc::new(Router::new(RouterParts {
                store: Arc::clone(&store),
                worker: Arc::clone(&worker),
                membership: Arc::clone(&membership),
                loads: Arc::clone(&loads),
                recovery: Arc::clone(&recovery),
                peer_client: Arc::clone(&peer_client),
                node_id: config.node_id.clone(),
                threshold: config.load_threshold,
            }));
            let scheduler = Scheduler::new(SchedulerParts {
                store: Arc::clone(&store),
                worker: Arc::clone(&worker),
                node_id: config.node_id.clone(),
                misfire_threshold_ms: config.misfire_threshold_ms,
                role: lease.subscribe(),
                router: Arc::clone(&router),
                recovery: Arc::clone(&recovery),
                node_ttl_ms: config.node_ttl_ms,
                retention_ms: config.execution_retention_ms,
            });
            parts.push(ShardPart { shard: k as u16, store, lease, worker, scheduler, router, recovery, max_epoch });
        }
        // The history store: one connection for the archiver, one for the API's reads, so a
        // listing never waits behind a batch being written.
        let archive = match &config.history_postgres {
            Some(url) => {
                let cluster = format!("{}:{}", config.redis_prefix, config.cluster);
                Some((Postgres::new(url, cluster.clone())?, Arc::new(Postgres::new(url, cluster)?)))
            }
            None => None,
        };
        let history = Arc::new(History::new(shards.clone(), archive.as_ref().map(|(_, reads)| Arc::clone(reads))));
        let node = Arc::new(Node {
            node_id: config.node_id.clone(),
            started_ms: now_ms(),
            address,
            local_addr,
            shards,
            parts,
            history,
            worker,
            workers_hub,
            share,
            loads,
            peer_client,
            clock,
            metrics,
            tls,
            draining: AtomicBool::new(false),
            beating: tokio::sync::Mutex::new(true),
            serving: AtomicBool::new(false),
            writable: AtomicBool::new(true),
            master_ok: AtomicBool::new(true),
            alerts,
            membership,
            shards_unchecked: std::sync::Mutex::new(shards_unchecked),
            refused: watch::channel(None).0,
            archiver: std::sync::Mutex::new(None),
            competing: AtomicBool::new(false),
            ready: watch::channel(false).0,
            scheduler_cancel: cancel.child_token(),
            cancel,
            tracker: TaskTracker::new(),
            config,
        });
        // A node id held by another live process stops this one at once. A store that is down is
        // not fatal: the heartbeat loop registers when it is back (and has checked the shards: a
        // node of another number of shards must not even be listed as live).
        if node.shards_known() {
            match node.membership.register(node.shards.all(), |inc| node.record_with(inc)).await {
                Ok(()) => {}
                Err(e @ Error::NodeIdInUse { .. }) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "cannot register yet; will retry"),
            }
        }
        if let (false, Some((writes, _))) = (redis_shards.is_empty(), archive) {
            let holder = format!("{}:{}", node.node_id, uuid::Uuid::new_v4().simple());
            let archiver = crate::history::Archiver {
                stores: redis_shards,
                pg: writes,
                holder,
                retention_days: node.config.history_retention_days,
                metrics: Arc::clone(&node.metrics),
            };
            if let Ok(mut g) = node.archiver.lock() {
                *g = Some(archiver);
            }
        }
        node.tracker.spawn(Arc::clone(&node).heartbeat_loop(jobs));
        node.tracker.spawn(Arc::clone(&node).readiness_loop());
        tracing::info!(node = %node.node_id, address = %node.address, store = node.shards.home().kind(),
            shards = node.shards.count(), workers = node.config.workers, shell = node.config.enable_shell, "node started");
        Ok(node)
    }

    /// Stops in order and returns when everything has stopped (or the grace period ran out).
    pub async fn shutdown(&self) {
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        tracing::info!(node = %self.node_id, grace_ms = grace.as_millis() as u64, "shutting down");
        self.draining.store(true, Ordering::SeqCst);
        self.ready.send_replace(false);
        if self.parts.len() > 1 && self.competing.load(Ordering::SeqCst) {
            // With shards, the others give this node's shards to new owners once they read its
            // draining record (the heartbeat publishes it): until then it keeps them, rather than
            // leave them with no owner for a poll or two.
            tokio::time::sleep(Duration::from_millis(2 * self.config.heartbeat_ms)).await;
        }
        self.scheduler_cancel.cancel();
        // Hand mastership over now, so a successor fires while this node finishes its running work.
        for p in &self.parts {
            p.lease.step_down("shutting down").await;
        }
        self.worker.stop(grace).await;
        // Tell the cluster this node is gone rather than waiting for its heartbeat to lapse: the
        // master moves whatever is left in its queue.
        // Marked `left` (a clean stop), unlike a node whose heartbeat merely lapses (`failed`).
        *self.beating.lock().await = false;
        let mut rec = self.record();
        (rec.draining, rec.left, rec.master) = (true, true, false);
        // A node that never checked its number of shards never registered: nothing to say.
        let registered = self.shards_known();
        for store in self.shards.all().iter().filter(|_| registered) {
            if let Err(e) = store.deregister(&rec).await {
                tracing::warn!(error = %e, "cannot deregister; the cluster will notice when the heartbeat lapses");
            }
        }
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await.is_err() {
            tracing::warn!("some background tasks did not stop in time");
        }
        tracing::info!(node = %self.node_id, "stopped");
    }

    /// Ready (grpc.health.v1 and /readyz): not draining, the store answers and takes writes, a live
    /// master was seen within the failover bound, and, if this node is master, its scheduler ticks
    /// are not all failing.
    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
            && self.writable.load(Ordering::SeqCst)
            && self.master_ok.load(Ordering::SeqCst)
            && self.ticks_ok()
            && !self.is_draining()
    }

    /// How long the cluster may be seen without a master before that is an outage: a crashed
    /// master's lease expires (TTL), a candidate polls (renewal interval), plus one more poll and
    /// one more look of the readiness loop. (Counted from the first look that finds no live holder,
    /// which is at the earliest when the dead master's lease expires, so this is generous.)
    pub fn failover_bound(&self) -> Duration {
        let c = &self.config;
        Duration::from_millis(c.lease_ttl_ms + 2 * c.lease_renew_ms + c.heartbeat_ms)
    }

    /// False on a master (of any shard) whose last ticks all failed (the loop backs off 1 s after
    /// each failure).
    fn ticks_ok(&self) -> bool {
        const FAILING_TICKS: u32 = 3;
        self.parts.iter().all(|p| !p.is_master() || p.scheduler.tick_health().1 < FAILING_TICKS)
    }

    /// The part of the shard a job is in. Unavailable while the number of shards is unchecked
    /// (Redis was down when this node started): a job routed by a wrong number of shards would
    /// land in another shard than its fires are claimed in, and fire twice or never.
    pub fn part_of_job(&self, job_id: &str) -> Result<&ShardPart> {
        if !self.shards_known() {
            return Err(Error::unavailable(
                "this node has not checked its number of shards against the cluster's yet (Redis was down when it started)",
            ));
        }
        Ok(&self.parts[usize::from(self.shards.shard_of_job(job_id))])
    }

    /// Resolves with the reason once this node has found that its configuration cannot serve the
    /// cluster (a number of shards other than the cluster's, found after start): the process
    /// should stop, as it would have at start.
    pub async fn refused(&self) -> String {
        let mut rx = self.refused.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// The shards whose lease this node holds.
    pub fn mastered(&self) -> Vec<u16> {
        self.parts.iter().filter(|p| p.is_master()).map(|p| p.shard).collect()
    }

    /// Every heartbeat interval: checks what readiness needs beyond the heartbeat (the store takes
    /// writes, a master exists), raises `no_master` past the failover bound, and publishes
    /// readiness when it changes. The only writer of `ready`, except `shutdown`, which sets it
    /// false first.
    async fn readiness_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.heartbeat_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let bound = self.failover_bound();
        // Since when this node has seen no master, counted only while it can see the store (a
        // Redis blip or a partition says nothing about the master, and must not raise no_master).
        let mut no_master_since: Option<std::time::Instant> = None;
        let mut no_master_alerted = false;
        let mut published: Option<bool> = None;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.is_draining() {
                continue;
            }
            let writable = match self.shards.home().probe_write(&self.node_id).await {
                Ok(()) => true,
                Err(e) => {
                    if self.writable.load(Ordering::SeqCst) && self.serving.load(Ordering::SeqCst) {
                        tracing::warn!(error = %e, "store refuses writes (full? read-only replica?): NOT_SERVING");
                    }
                    false
                }
            };
            self.writable.store(writable, Ordering::SeqCst);
            match self.every_shard_has_a_live_master().await {
                Ok(true) => {
                    if no_master_alerted {
                        tracing::info!("a master holds the lease again");
                    }
                    self.metrics.master_present.set(1);
                    (no_master_since, no_master_alerted) = (None, false);
                }
                Ok(false) => {
                    self.metrics.master_present.set(0);
                    no_master_since.get_or_insert_with(std::time::Instant::now);
                }
                // The heartbeat reports an unreachable store; the clock restarts once it is back.
                Err(_) => no_master_since = None,
            }
            let without = no_master_since.map(|t| t.elapsed()).unwrap_or_default();
            self.master_ok.store(without <= bound, Ordering::SeqCst);
            if without > bound && !no_master_alerted {
                no_master_alerted = true;
                let (for_ms, bound_ms) = (without.as_millis() as u64, bound.as_millis() as u64);
                tracing::warn!(for_ms, bound_ms, "no master past the failover bound: nothing fires");
                self.alerts.raise(Alert::no_master(&self.node_id, for_ms, bound_ms, &self.config.cluster));
            }
            let ready = self.is_serving();
            if published != Some(ready) && !self.is_draining() {
                published = Some(ready);
                self.ready.send_replace(ready);
                tracing::info!(
                    serving = ready,
                    store = self.serving.load(Ordering::SeqCst),
                    writable,
                    master = self.master_ok.load(Ordering::SeqCst),
                    ticks = self.ticks_ok(),
                    "health changed"
                );
            }
        }
    }

    /// Whether every shard's lease is held by a live node (false as soon as one is not).
    async fn every_shard_has_a_live_master(&self) -> Result<bool> {
        for store in self.shards.all() {
            if !store.lease_holder_live().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads the gauges of state fresh, for a scrape.
    pub async fn refresh_metrics(&self) {
        let m = &self.metrics;
        let load = self.worker.load();
        m.running.set(i64::from(load.active));
        m.load_ratio.set(if load.max == 0 { 0.0 } else { load.ratio() });
        m.master.set(self.mastered().len() as i64);
        m.epoch.set(i64::try_from(self.max_epoch_seen()).unwrap_or(i64::MAX));
        if let Some(offset) = self.clock.offset_ms() {
            m.clock_offset.set(offset as f64 / 1000.0);
        }
        // The oldest last tick among the shards this node masters.
        let age = self
            .parts
            .iter()
            .filter(|p| p.is_master())
            .map(|p| p.scheduler.tick_health().0)
            .filter(|t| *t > 0)
            .map(|t| (now_ms() - t).max(0) as f64 / 1000.0)
            .fold(0.0, f64::max);
        m.tick_age.set(age);
        if let Ok(nodes) = self.shards.home().list_nodes().await {
            let ids: Vec<String> = nodes.into_iter().map(|n| n.node_id).collect();
            let mut depth = vec![0usize; ids.len()];
            for store in self.shards.all() {
                let Ok(lens) = store.queue_lengths(&ids).await else { return };
                depth.iter_mut().zip(lens).for_each(|(d, l)| *d += l);
            }
            for (id, len) in ids.into_iter().zip(depth) {
                m.queue_depth.get_or_create(&NodeLabel { node: id }).set(len as i64);
            }
        }
    }

    /// Readiness as the readiness loop last judged it, to publish (grpc.health.v1).
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Cancelled when the node stops (the end of `shutdown`): what the node's servers stop on.
    pub fn stopping(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs `task` as part of the node: `shutdown` waits for it (within its bound) after `stopping`.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    /// Attaches an external worker's session (`WorkerService.Attach`): its handlers become this
    /// node's (published with the next heartbeat) and its slots part of its capacity. A session of
    /// the same worker id is replaced: its fires follow their jobs' recovery policy.
    pub fn attach_worker(&self, spec: WorkerSpec, tx: tokio::sync::mpsc::Sender<Outbound>) -> Result<Arc<Session>> {
        let slots = spec.slots;
        let (session, old) = self.workers_hub.attach(spec, tx)?;
        if let Some(old) = old {
            self.worker.remove_capacity(old.spec.slots);
        }
        self.worker.add_capacity(slots);
        tracing::info!(worker = %session.spec.worker_id, handlers = session.spec.handlers.len(), slots, sdk = %session.spec.sdk,
            "external worker attached");
        // Fires waiting here for a worker (`Worker::cannot_run_here`) start now rather than at the
        // next periodic rescan.
        for part in &self.parts {
            let recovery = Arc::clone(&part.recovery);
            tokio::spawn(async move {
                if let Err(e) = recovery.rescan().await {
                    tracing::debug!(error = %e, "rescan after a worker attached failed; the periodic one follows");
                }
            });
        }
        Ok(session)
    }

    /// An attached worker stops taking fires (it is stopping): the node pushes it no more.
    pub fn drain_worker(&self, session: &Session) {
        self.workers_hub.drain(session);
    }

    /// Follows an execution's output to its end, wherever it runs: live from this node's pool
    /// while it runs here, relayed from the node that runs it (`NodeService.WatchOutput`) while it
    /// runs there, and otherwise by its record until the record is final, which ends the stream
    /// (`OutputEvent::End`). Stops when `tx` closes.
    pub async fn follow_output(&self, id: &str, tx: tokio::sync::mpsc::Sender<OutputEvent>) {
        let (mut output, mut stderr) = (0usize, 0usize);
        loop {
            if tx.is_closed() {
                return;
            }
            // Here: the pool's live output, until the run ends here (or the node stops).
            tokio::select! {
                r = self.worker.follow_output(id, output, stderr, &tx) => (output, stderr) = r,
                _ = self.cancel.cancelled() => return,
            }
            let rec = match self.history.get(id).await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    let _ = tx.send(OutputEvent::Failed(Error::ExecutionNotFound(id.to_string()))).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(OutputEvent::Failed(e)).await;
                    return;
                }
            };
            if rec.state.is_terminal() {
                let _ = tx.send(OutputEvent::End(Box::new(rec))).await;
                return;
            }
            // Running elsewhere: relayed from that node while it runs there.
            if rec.node_id != self.node_id {
                if let Some(address) = self.peer_address(&rec.node_id).await {
                    if let Ok(mut s) = self.peer_client.watch_output(&address, id, output as u64, stderr as u64).await {
                        loop {
                            // The relay ends with the client, the node, or the run there.
                            let m = tokio::select! {
                                m = s.message() => m,
                                _ = tx.closed() => return,
                                _ = self.cancel.cancelled() => return,
                            };
                            let Ok(Some(m)) = m else { break };
                            (output, stderr) = (output + m.output.len(), stderr + m.stderr.len());
                            let c = RunOutput { output: m.output, stderr: m.stderr };
                            if tx.send(OutputEvent::Chunk(c)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            // Not started yet, between retries, waiting for a worker, or its node unreachable: its
            // record is read again in a second (one Redis read a second per follower).
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tx.closed() => return,
                _ = self.cancel.cancelled() => return,
            }
        }
    }

    /// Where TriggerJob's `target_node` is, checked: this node (None) when it is this one and can
    /// run the job's handler, else the live node's API address. FAILED_PRECONDITION (field
    /// `target_node`) when the node is not live, or is this one and cannot run the handler.
    pub async fn trigger_target(&self, target: &str, job: &crate::job::JobSpec) -> Result<Option<String>> {
        let refused = |why: String| Error::FailedPrecondition(format!("target_node: {why}"));
        if job.master_only {
            return Err(refused(format!("job '{}' is master-only: its fires run on the master", job.id)));
        }
        if target == self.node_id {
            let here = self.worker.registry().get_for(&job.handler, &job.selector).is_some();
            if !here || !job.may_run_on(target) {
                return Err(refused(format!("node {target} cannot run job '{}' (handler '{}')", job.id, job.handler)));
            }
            return Ok(None);
        }
        let now = now_ms();
        let ttl = self.config.node_ttl_ms as i64;
        let nodes = self.shards.home().list_nodes().await?;
        let live = nodes.into_iter().find(|n| n.node_id == target && !n.left && !n.draining && now - n.beat_ms <= ttl);
        match live {
            Some(n) => Ok(Some(n.address)),
            None => Err(refused(format!("node {target} is not live (unknown, gone, or draining)"))),
        }
    }

    /// The API address of a node that has not left (None: unknown, left, or the store did not answer).
    async fn peer_address(&self, node_id: &str) -> Option<String> {
        let nodes = self.shards.home().list_nodes().await.ok()?;
        nodes.into_iter().find(|n| n.node_id == node_id && !n.left).map(|n| n.address)
    }

    /// CancelExecution (PROTOCOL §3.19): cancels execution `id`, saying `why` in its record. One not
    /// yet begun is taken out in the store; a running one is stopped by its node, here or asked
    /// directly (StopRun), the store having left the request on that node's stop list too (taken at
    /// its rescan, should the call fail). Then waits up to `CANCEL_WAIT` for the record to end, and
    /// returns it as recorded.
    pub async fn cancel_execution(&self, id: &str, why: &str) -> Result<Execution> {
        let not_found = || Error::ExecutionNotFound(id.to_string());
        let rec = self.history.get(id).await?.ok_or_else(not_found)?;
        // An ended attempt that announced a retry: the retry is cancelled while it waits out its
        // backoff on its node (the record of the retry ends `cancelled`).
        let retry = rec.state.is_terminal() && rec.next_attempt_ms.is_some();
        if rec.state.is_terminal() && !retry {
            return Err(Error::FailedPrecondition(format!("execution {id} has ended: {}", rec.state.as_str())));
        }
        let mut cancelled = rec.clone();
        cancelled.start_ms = None;
        cancelled.close(ExecState::Cancelled, why);
        let store = self.shards.of_job(&rec.job_id);
        match store.cancel(&cancelled, retry).await? {
            Cancel::Cancelled => {
                tracing::info!(execution = %id, job = %rec.job_id, fire = %rec.fire_id, "cancelled before it began");
                // A final record as any other: its end sets an after_previous job's next fire.
                if let Ok(part) = self.part_of_job(&rec.job_id) {
                    part.worker.note_outcome(None, &cancelled).await;
                }
            }
            Cancel::Running { node } if node == self.node_id => {
                self.worker.stop_run(&rec.fire_id, id, why);
            }
            Cancel::Running { node } => {
                let req = pb::StopRunRequest { fire_id: rec.fire_id.clone(), execution_id: id.into(), why: why.into() };
                let asked = match self.peer_address(&node).await {
                    Some(address) => self.peer_client.stop_run(&address, req).await,
                    None => Err(format!("node {node} is not listed")),
                };
                if let Err(e) = asked {
                    tracing::warn!(execution = %id, node = %node, error = %e,
                        "cannot ask the node running it to stop it; it takes the request from its stop list at its rescan");
                }
            }
            Cancel::NotOpen(state) if retry => {
                return Err(Error::FailedPrecondition(format!(
                    "execution {id} has ended ({}); the attempt that follows it is not waiting for its retry on a \
                     node (the fire is {state}): cancel that attempt's own execution",
                    rec.state.as_str()
                )))
            }
            Cancel::NotOpen(state) => {
                return Err(Error::FailedPrecondition(format!(
                    "execution {id} is not its fire's current execution, or has ended (the fire is {state})"
                )))
            }
            Cancel::Unknown => return Err(not_found()),
        }
        let until = tokio::time::Instant::now() + CANCEL_WAIT;
        loop {
            // A retry's cancel ends the retry's own record, the fire's newest.
            let now = match retry {
                true => self.newest_of_fire(&rec).await?.unwrap_or_else(|| rec.clone()),
                false => self.history.get(id).await?.ok_or_else(not_found)?,
            };
            let over = now.state.is_terminal() && now.next_attempt_ms.is_none();
            if over || tokio::time::Instant::now() >= until {
                return Ok(now);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The newest execution of `of`'s fire (its latest attempt), as recorded.
    async fn newest_of_fire(&self, of: &Execution) -> Result<Option<Execution>> {
        let fire = crate::execution::FireId::parse(&of.fire_id)
            .map_err(|e| Error::Corrupt { key: of.id.clone(), reason: format!("its fire id does not parse: {e}") })?;
        let filter = crate::store::ExecFilter {
            job_id: Some(of.job_id.clone()),
            fire_id: Some(of.fire_id.clone()),
            not_before: crate::execution::first_exec_id_of(&fire),
            limit: 100,
            ..Default::default()
        };
        let (execs, _) = self.history.list(&filter).await?;
        Ok(execs.into_iter().max_by(|a, b| (a.attempt, &a.id).cmp(&(b.attempt, &b.id))))
    }

    /// Whether this node or a live peer can run `handler` for a job with `selector` now (a
    /// built-in, or an attached worker whose tags match).
    pub async fn served_anywhere(&self, handler: &str, selector: &std::collections::BTreeMap<String, String>) -> bool {
        if self.worker.registry().get_for(handler, selector).is_some() {
            return true;
        }
        let now = now_ms();
        let ttl = self.config.node_ttl_ms as i64;
        self.shards.home().list_nodes().await.is_ok_and(|nodes| {
            nodes.iter().any(|n| !n.left && !n.draining && now - n.beat_ms <= ttl && n.can_run(handler, selector))
        })
    }

    /// Detaches a session (its stream ended): the fires it held follow their jobs' recovery policy.
    pub fn detach_worker(&self, session: &Arc<Session>, why: &str) {
        if self.workers_hub.detach(session, why) {
            self.worker.remove_capacity(session.spec.slots);
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The highest epoch this node has seen in any shard.
    pub fn max_epoch_seen(&self) -> u64 {
        self.parts.iter().map(|p| p.max_epoch.load(Ordering::SeqCst)).max().unwrap_or(0)
    }

    /// `e` as a caller should see it: a store that does not answer is named (its address, never
    /// its credentials) with what this node still knows without it (`Error::StoreDown`); any other
    /// error as it is.
    pub fn explain(&self, e: Error) -> Error {
        match e {
            Error::StoreUnavailable { reason, .. } => {
                Error::StoreDown { store: self.store_name(), reason, known: self.what_it_knows() }
            }
            other => other,
        }
    }

    /// The store as an operator knows it: "redis at host:port" (every host of a Redis Cluster or
    /// Sentinel URL), from the configured URL with its user, password and path left out.
    pub fn store_name(&self) -> String {
        let Some(url) = &self.config.redis else { return "the in-memory store".to_string() };
        let hosts = redis_hosts(url);
        if hosts.is_empty() {
            return "redis on a unix socket".to_string();
        }
        let hosts: Vec<String> = hosts.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        format!("redis at {}", hosts.join(","))
    }

    /// Each shard's lease holder (node id, epoch) as stored now, shard k at index k.
    pub async fn shard_masters(&self) -> Result<Vec<Option<(String, u64)>>> {
        let mut out = Vec::with_capacity(self.parts.len());
        for store in self.shards.all() {
            out.push(store.lease().await?.map(|h| (h.node_id, h.epoch)));
        }
        Ok(out)
    }

    /// What this node knows without the store, in one sentence: its id and incarnation, whether it
    /// holds the master lease (of which shards) and until when (it steps down then unless it can
    /// renew), the last master and epoch it saw, and the fires it has in hand.
    pub fn what_it_knows(&self) -> String {
        let at = |ms: i64| crate::job::ms_to_datetime(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut parts = vec![format!("node {} (incarnation {})", self.node_id, self.membership.incarnation())];
        let sharded = self.parts.len() > 1;
        for p in &self.parts {
            let of = if sharded { format!(" of shard {}", p.shard) } else { String::new() };
            match p.lease.role().active() {
                Some(m) => {
                    let left = m.deadline.saturating_duration_since(tokio::time::Instant::now());
                    parts.push(format!(
                        "holds the master lease{of} (epoch {}) until {} at the latest, unless it can renew it",
                        m.epoch,
                        at(now_ms() + left.as_millis() as i64)
                    ));
                }
                None if !sharded => parts.push("does not hold the master lease".to_string()),
                None => {}
            }
            match p.lease.last_seen() {
                Some(s) if !sharded || s.node_id != self.node_id => {
                    parts.push(format!("last saw master{of} {} (epoch {}) at {}", s.node_id, s.epoch, at(s.at_ms)))
                }
                Some(_) => {}
                None => parts.push(format!(
                    "has seen no master{of} yet (highest epoch seen {})",
                    p.max_epoch.load(Ordering::SeqCst)
                )),
            }
        }
        let fires = self.worker.fires_in_hand();
        let running = self.worker.load().active;
        let shown: Vec<&str> = fires.iter().take(5).map(String::as_str).collect();
        let more =
            if fires.len() > shown.len() { format!(" and {} more", fires.len() - shown.len()) } else { String::new() };
        if fires.is_empty() {
            parts.push("has no executions in hand".to_string());
        } else {
            parts.push(format!("has {} fire(s) in hand, {running} running: {}{more}", fires.len(), shown.join(", ")));
        }
        format!("What this node knows: {}.", parts.join("; "))
    }

    /// This node's record as it would publish it now.
    pub fn record(&self) -> NodeRecord {
        self.record_with(&self.membership.incarnation())
    }

    fn record_with(&self, incarnation: &str) -> NodeRecord {
        NodeRecord {
            node_id: self.node_id.clone(),
            address: self.address.clone(),
            incarnation: incarnation.to_string(),
            started_ms: self.started_ms,
            beat_ms: now_ms(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            handlers: self.worker.registry().names(),
            load: self.worker.load(),
            master: !self.mastered().is_empty(),
            draining: self.is_draining(),
            clock_offset_ms: self.clock.offset_ms(),
            shell_enabled: self.config.enable_shell,
            shell_allow: if self.config.enable_shell { self.config.shell_allow.clone() } else { Vec::new() },
            http_allow: self.config.http_allow.clone(),
            left: false,
            competing: self.competing.load(Ordering::SeqCst) && !self.is_draining(),
            worker_tags: self.workers_hub.tags_by_handler(),
        }
    }

    /// Every node the store knows (this one included, even before its first beat), by id.
    pub async fn node_records(&self) -> Result<Vec<NodeRecord>> {
        let mut nodes = self.shards.home().list_nodes().await?;
        if !nodes.iter().any(|n| n.node_id == self.node_id) {
            nodes.push(self.record());
        }
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }

    /// What a node starts once it is registered and its jobs file is loaded (the first good
    /// heartbeat), in this order: draining its own durable queue (it may take work), competing for
    /// the master lease, the scheduler loop (it fires only while master), and, on their own task,
    /// adoption of what its earlier incarnations left followed by the periodic rescan of its
    /// processing list. Before this point the node serves the API but takes no work.
    /// With shards, all of this once per shard, each task's log lines carrying its `shard`, but
    /// one drain loop for every shard's queue (`Recovery::drain_queues`).
    fn start_work(self: Arc<Self>) {
        use tracing::Instrument;
        let recoveries = self.parts.iter().map(|p| Arc::clone(&p.recovery)).collect();
        self.tracker.spawn(Recovery::drain_queues(recoveries, self.scheduler_cancel.clone()));
        self.tracker.spawn(Arc::clone(&self).prune_loop());
        if let Some(archiver) = self.archiver.lock().ok().and_then(|mut g| g.take()) {
            self.tracker.spawn(crate::history::archive(archiver, self.cancel.child_token()));
        }
        self.competing.store(true, Ordering::SeqCst);
        for p in &self.parts {
            let span = match self.parts.len() {
                1 => tracing::Span::none(),
                _ => tracing::info_span!("shard", shard = p.shard),
            };
            let stop = self.scheduler_cancel.clone();
            self.tracker.spawn(Arc::clone(&p.lease).run(stop.clone()).instrument(span.clone()));
            self.tracker.spawn(Arc::clone(&p.scheduler).run(stop.clone()).instrument(span.clone()));
            // Its own task: a master-only leftover waits for the lease to settle (it goes to the
            // master), and the heartbeat must not wait with it.
            let recovery = Arc::clone(&p.recovery);
            self.tracker.spawn(
                async move {
                    if let Err(e) = recovery.adopt().await {
                        tracing::warn!(error = %e, "cannot adopt work left by this node's earlier run; the master will reap it");
                    }
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(RESCAN_EVERY) => {}
                        }
                        if let Err(e) = recovery.rescan().await {
                            tracing::debug!(error = %e, "rescan of the processing list failed; next time");
                        }
                    }
                }
                .instrument(span),
            );
        }
    }

    async fn heartbeat_loop(self: Arc<Self>, jobs: FileContents) {
        let mut pending_jobs = Some(jobs);
        let mut started = false;
        let mut healthy = false;
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.heartbeat_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.is_draining() {
                // A draining node keeps beating while it finishes its running work: were its
                // heartbeat to lapse, the master would judge it dead and re-run (or record lost)
                // fires it is still running. Its record says draining, so no new work comes.
                let beating = self.beating.lock().await;
                // A node that never started its work (refused, or never checked) has no heartbeat
                // to keep up: beating would list it.
                if *beating && started {
                    if let Err(e) = self.membership.beat(self.shards.all(), |inc| self.record_with(inc)).await {
                        tracing::debug!(error = %e, "heartbeat while draining failed");
                    }
                }
                continue;
            }
            // Nothing, not even a heartbeat (which would list this node as live), before the
            // number of shards is known to be the cluster's.
            if !started && !self.shards_checked().await {
                self.serving.store(false, Ordering::SeqCst);
                continue;
            }
            // Before the beat, so the record it publishes carries the offset, and the clock is
            // corrected before this node first takes work or competes for mastership.
            self.check_clock().await;
            let sent = std::time::Instant::now();
            let beat = self.membership.beat(self.shards.all(), |inc| self.record_with(inc)).await;
            self.metrics.store_rtt.observe(sent.elapsed().as_secs_f64());
            let ok = match beat {
                Ok(beats) => {
                    for (p, b) in self.parts.iter().zip(beats) {
                        let (Beat::Alive { epoch } | Beat::Revoked { epoch }) = b;
                        p.max_epoch.fetch_max(epoch, Ordering::SeqCst);
                    }
                    true
                }
                Err(e @ Error::NodeIdInUse { .. }) => {
                    tracing::error!(error = %e, "cannot re-register; this node stops serving");
                    false
                }
                Err(e) => {
                    if healthy {
                        tracing::warn!(error = %e, "store unreachable: NOT_SERVING until it is back");
                    }
                    false
                }
            };
            if ok {
                if let Some(jobs) = pending_jobs.take() {
                    if let Err(e) = self.put_jobs(&jobs).await {
                        tracing::warn!(error = %e, "cannot load the jobs file yet; will retry");
                        pending_jobs = Some(jobs);
                        continue;
                    }
                }
                // The node records, read once for both: before the lease loops start, so that a
                // node that joins competes by the table at once, not as if it were alone.
                let nodes = self.shards.home().list_nodes().await.ok();
                if let Some(nodes) = &nodes {
                    self.observe_share(nodes);
                }
                if !started {
                    started = true;
                    Arc::clone(&self).start_work();
                }
                if let (Some(nodes), Ok(holders)) = (&nodes, self.shard_masters().await) {
                    self.report_load(nodes, &holders).await;
                }
            }
            self.serving.store(ok, Ordering::SeqCst);
            // Health itself is published by `readiness_loop`, which weighs this with the rest.
            if ok != healthy && !self.is_draining() {
                healthy = ok;
                tracing::info!(store_ok = ok, "store reachability changed");
            }
        }
    }

    /// Whether the cluster's number of shards has been checked against this node's (at start, or
    /// now). A node configured otherwise than its cluster never takes work: it says so at ERROR
    /// and stays NOT_SERVING.
    fn shards_known(&self) -> bool {
        self.shards_unchecked.lock().is_ok_and(|g| g.is_none())
    }

    async fn shards_checked(&self) -> bool {
        let Some(store) = self.shards_unchecked.lock().ok().and_then(|g| g.clone()) else { return true };
        match fix_shards(&store, self.config.shards).await {
            Ok(()) => {
                if let Ok(mut g) = self.shards_unchecked.lock() {
                    *g = None;
                }
                true
            }
            Err(e @ Error::Config { .. }) => {
                tracing::error!(error = %e, "this node takes no work and stops");
                self.refused.send_replace(Some(e.to_string()));
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot check the number of shards yet");
                false
            }
        }
    }

    /// Measures this node's offset from the cluster clock; warns and alerts when it goes past the
    /// bound (once per crossing: the gauge shows it meanwhile).
    async fn check_clock(&self) {
        match self.clock.measure(&**self.shards.home()).await {
            Ok(Some(Measured::Offset { offset_ms, rtt_ms, first, crossed })) => {
                if first {
                    tracing::info!(node = %self.node_id, offset_ms, rtt_ms, "clock offset from Redis measured");
                }
                let bound_ms = self.clock.max_offset_ms();
                match crossed {
                    Some(Crossing::Out) => {
                        tracing::warn!(node = %self.node_id, offset_ms, rtt_ms, bound_ms,
                            "this node's wall clock is off Redis's by more than max_clock_offset_ms; fires use the corrected clock");
                        self.worker.alerts().raise(Alert::clock_skew(
                            &self.node_id,
                            offset_ms,
                            bound_ms,
                            &self.config.cluster,
                        ));
                    }
                    Some(Crossing::Back) => {
                        tracing::info!(node = %self.node_id, offset_ms, bound_ms, "clock offset back within max_clock_offset_ms")
                    }
                    None => tracing::trace!(offset_ms, rtt_ms, "clock offset"),
                }
            }
            Ok(Some(Measured::Rejected(why))) => tracing::debug!(node = %self.node_id, %why, "clock sample not used"),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read Redis's clock"),
        }
    }

    /// Tells the masters this node's load (NodeService.ReportLoad): each other node that masters
    /// a shard, once.
    async fn report_load(&self, nodes: &[NodeRecord], holders: &[Option<(String, u64)>]) {
        let mut masters: Vec<String> = holders.iter().flatten().map(|(id, _)| id.clone()).collect();
        masters.sort();
        masters.dedup();
        masters.retain(|m| *m != self.node_id);
        for master in nodes.iter().filter(|n| masters.contains(&n.node_id)) {
            // The master's answer (its highest epoch) is not taken as a floor: only the store's
            // counter is (the heartbeat reads it), so no peer can raise it.
            let _ = self.peer_client.report_load(&master.address, &self.node_id, self.worker.load()).await;
        }
    }

    /// Tells the share of shards which nodes can master now: live (fresh record, not draining,
    /// not gone), competing (its work started) and with a measured clock (a node without one does
    /// not take leases).
    fn observe_share(&self, nodes: &[NodeRecord]) {
        if self.parts.len() == 1 {
            return;
        }
        let now = now_ms();
        let ttl = self.config.node_ttl_ms as i64;
        let live = nodes
            .iter()
            .filter(|n| n.competing && !n.left && !n.draining && now - n.beat_ms <= ttl && n.clock_offset_ms.is_some())
            .map(|n| n.node_id.clone())
            .collect();
        self.share.observe(live);
    }

    /// The gRPC client to peers.
    pub fn peer_client(&self) -> &PeerClient {
        &self.peer_client
    }

    /// Peers' loads as this node knows them (ReportLoad feeds it).
    pub fn loads(&self) -> &LoadTable {
        &self.loads
    }

    /// Applies the jobs file (`Scheduler::apply_declared`): it never resumes a job an operator
    /// paused (unless the file says `paused`), and never replaces a change made through the API
    /// without a WARN naming the job and the fields.
    async fn put_jobs(&self, file: &FileContents) -> Result<()> {
        // Its calendars first: its jobs may name them. Each is put when it differs from the stored
        // one, and the jobs naming it follow it (`Scheduler::follow_calendar`).
        if !file.calendars.is_empty() {
            let stored = self.shards.home().list_calendars().await?;
            for def in &file.calendars {
                // Put even when unchanged: a put ends a delete's mark left behind.
                self.shards.put_calendar(def).await?;
                if stored.iter().any(|s| s == def) {
                    continue;
                }
                for p in &self.parts {
                    p.scheduler.follow_calendar(&def.name).await?;
                }
                tracing::info!(calendar = %def.name, "jobs file: calendar put");
            }
        }
        let jobs = &file.jobs;
        let (mut created, mut written, mut unchanged, mut kept) = (0, 0, 0, 0);
        for d in jobs {
            let (_, outcome) = self.part_of_job(&d.spec.id)?.scheduler.apply_declared(d).await?;
            match outcome {
                Apply::Create => created += 1,
                Apply::Keep { drift } if drift.is_empty() => unchanged += 1,
                Apply::Keep { drift } => {
                    kept += 1;
                    tracing::warn!(job = %d.spec.id, fields = %drift.join(","),
                        "job changed through the API since the jobs file was applied, and the file has not changed: \
                         keeping the API's version (`rota job get` shows the drift)");
                }
                Apply::Write { overwrites } => {
                    written += 1;
                    if !overwrites.is_empty() {
                        tracing::warn!(job = %d.spec.id, fields = %overwrites.join(","),
                            "the jobs file changed since it was last applied: its definition replaces changes made through the API");
                    }
                }
            }
        }
        if !jobs.is_empty() {
            tracing::info!(
                count = jobs.len(),
                created,
                updated = written,
                unchanged,
                kept_api_changes = kept,
                "jobs file applied"
            );
        }
        Ok(())
    }

    async fn prune_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            for store in self.shards.all() {
                match store.prune(now_ms()).await {
                    Ok(n) if n > 0 => tracing::debug!(removed = n, "pruned expired execution records"),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "prune failed"),
                }
                match store.expire_completed(now_ms(), EXPIRE_BATCH).await {
                    Ok(ids) => {
                        for id in ids {
                            tracing::info!(job = %id, "deleted: a one-shot job completed longer ago than the retention");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot delete the completed one-shot jobs past retention"),
                }
            }
        }
    }
}

/// Checks the files the node reads (jobs, TLS) without starting anything (`api::check` adds the
/// tokens file): `rota server --check`. The number of jobs in the jobs file.
pub fn check_files(config: &Config, registry: &Registry) -> Result<usize> {
    let mut registry = registry.clone();
    if config.enable_shell {
        registry.register("shell", Shell::new(config.shell_output_cap_bytes, config.shell_allow.clone()));
    }
    let port = |a: &str| a.parse::<std::net::SocketAddr>().ok().map(|a| a.port()).filter(|p| *p != 0);
    let metrics_port = config.metrics_listen.as_deref().and_then(port);
    registry.register("http", http_handler(config, port(&config.listen), metrics_port)?);
    let jobs = match &config.jobs_file {
        Some(path) => read_jobs_file(path, &registry)?.jobs.len(),
        None => 0,
    };
    TlsFiles::load(config)?;
    Ok(jobs)
}

/// Connects to the store a config names and waits up to `within` for it to answer a PING
/// (`rota server --check`). The in-memory store always answers.
pub async fn check_store(config: &Config, within: Duration) -> Result<()> {
    use crate::store::ClusterStore;
    let Some(url) = &config.redis else { return Ok(()) };
    let access = redis_access(config)?;
    let ping = async {
        let store =
            RedisStore::connect_with(url, access, &config.redis_prefix, &config.cluster, config.execution_retention_ms)
                .await?;
        store.ping().await
    };
    match tokio::time::timeout(within, ping).await {
        Ok(answer) => answer,
        Err(_) => Err(Error::unavailable(format!("no answer within {} s", within.as_secs()))),
    }
}

/// Fixes the cluster's number of shards at its creation, or checks a node's against it
/// (`Keys::meta`): a node configured otherwise is refused, naming both numbers. A cluster made
/// before shards has no meta key and is one shard: it is adopted as such, and refused more.
async fn fix_shards(store: &RedisStore, shards: u16) -> Result<()> {
    let refuse = |reason: String| Err(Error::Config { key: "shards".into(), reason });
    let found = match store.cluster_shards(shards).await {
        Ok(n) => n,
        // A meta key that is not what rota wrote: no number to trust, so no work.
        Err(Error::Corrupt { key, reason }) => {
            return refuse(format!("{key} is not the cluster's number of shards ({reason}); see docs/PROTOCOL.md §5.6"))
        }
        Err(e) => return Err(e),
    };
    match found {
        n if n == shards => Ok(()),
        0 => refuse(format!(
            "this cluster was made before shards (it is one shard), and this node says {shards}; to shard it, \
             export its jobs (`rota job list --json`), and put them in a new cluster name with shards = {shards}"
        )),
        n => refuse(format!("the cluster was created with {n} shards and this node says {shards}: set shards = {n}")),
    }
}

/// What reaching the configured Redis takes besides its URL: the CA file's contents, the
/// Sentinels' own credentials.
fn redis_access(config: &Config) -> Result<crate::store::redis::RedisAccess> {
    let ca_pem = match &config.redis_ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?),
        None => None,
    };
    Ok(crate::store::redis::RedisAccess {
        ca_pem,
        sentinel_username: config.redis_sentinel_username.clone(),
        sentinel_password: config.redis_sentinel_password.as_ref().map(|s| s.0.clone()),
    })
}

/// Where the store is, for a summary or a message: `memory`, or the Redis address(es) without the
/// user, password or database.
pub fn store_address(config: &Config) -> String {
    use crate::store::RedisUrl;
    let Some(url) = &config.redis else { return "memory (one node; nothing kept across restarts)".into() };
    match RedisUrl::parse(url) {
        Ok(RedisUrl::Cluster { tls, hosts, .. }) => {
            format!("{}://{}", if tls { "rediss+cluster" } else { "redis+cluster" }, hosts.join(","))
        }
        Ok(RedisUrl::Sentinel { tls, hosts, master, .. }) => {
            format!("{}://{}/{master}", if tls { "rediss+sentinel" } else { "redis+sentinel" }, hosts.join(","))
        }
        _ => crate::redact::url(url),
    }
}

/// The built-in http handler with this node's destination rule: `http_allow`, and the ports of
/// this node that http jobs never reach (gRPC and metrics as bound, and Redis).
fn http_handler(config: &Config, grpc: Option<u16>, metrics: Option<u16>) -> Result<Http> {
    let redis = config.redis.as_deref().map(redis_hosts).unwrap_or_default();
    let own = OwnPorts { grpc, metrics, redis };
    let egress =
        Egress::new(&config.http_allow, own).map_err(|reason| Error::Config { key: "http_allow".into(), reason })?;
    Ok(Http::with_egress(egress))
}

/// Redis's hosts and ports from its URL: the one server (none for a unix socket), or every node of a
/// Redis Cluster or Sentinel it lists.
fn redis_hosts(url: &str) -> Vec<(String, u16)> {
    use crate::store::RedisUrl;
    match RedisUrl::parse(url) {
        Ok(RedisUrl::Cluster { hosts, .. } | RedisUrl::Sentinel { hosts, .. }) => hosts
            .iter()
            .filter_map(|h| h.rsplit_once(':'))
            .filter_map(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
            .collect(),
        _ => {
            let Ok(u) = reqwest::Url::parse(url) else { return Vec::new() };
            if u.scheme() == "unix" {
                return Vec::new();
            }
            u.host_str().map(|h| vec![(h.to_string(), u.port().unwrap_or(6379))]).unwrap_or_default()
        }
    }
}

/// Reads and fully validates a jobs file, so a bad file stops the node at start with the job and
/// field named, rather than failing later. The file's shape (and its strictness about keys) is
/// `job::file`'s. Definitions come back normalised (an invoke target split into handler and args),
/// as the store keeps them.
fn read_jobs_file(path: &std::path::Path, registry: &Registry) -> Result<FileContents> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let key = format!("jobs_file {}", path.display());
    let parsed = crate::job::file::parse_jobs_file(&text).map_err(|e| crate::config::toml_error(&key, &text, &e))?;
    let mut calendars = Vec::with_capacity(parsed.calendar.len());
    for (i, c) in parsed.calendar.iter().enumerate() {
        let checked = crate::job::calendar::Calendar::new(c.def()).map_err(|e| Error::Config {
            key: format!("{key} calendar #{} ('{}')", i + 1, crate::redact::value(&c.name)),
            reason: e.to_string(),
        })?;
        if calendars.iter().any(|d: &crate::job::calendar::CalendarDef| d.name == checked.def.name) {
            return Err(Error::Config {
                key: format!("{key} calendar #{} ('{}')", i + 1, crate::redact::value(&c.name)),
                reason: "name: declared twice in the file".into(),
            });
        }
        calendars.push(checked.def);
    }
    let file = parsed.job;
    let mut declared = Vec::with_capacity(file.len());
    for (i, entry) in file.iter().enumerate() {
        let check = entry.declared().and_then(|d| {
            let job = Job::new(d.spec)?;
            registry.validate(&job.spec.handler, &job.spec.args)?;
            Ok(Declared { spec: job.spec, paused: d.paused })
        });
        match check {
            Ok(d) => declared.push(d),
            Err(e) => {
                // A job's arguments may hold secrets (a URL with a token): their errors name the field
                // but not the values they quote.
                let reason = match &e {
                    Error::Invalid { field, reason } if field == "args" || field == "invoke" => {
                        format!("{field}: {}", crate::redact::without_quoted(reason))
                    }
                    _ => crate::redact::quoted_values(&e.to_string()).into_owned(),
                };
                return Err(Error::Config {
                    key: format!("{key} job #{} ('{}')", i + 1, crate::redact::value(&entry.id)),
                    reason,
                });
            }
        }
    }
    Ok(FileContents { jobs: declared, calendars })
}

/// What a jobs file declares, checked.
#[derive(Debug, Default)]
pub struct FileContents {
    pub jobs: Vec<Declared>,
    pub calendars: Vec<crate::job::calendar::CalendarDef>,
}
