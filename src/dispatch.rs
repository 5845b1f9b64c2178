//! Dispatch (delivery): where a fire runs, and how it gets there.
//! `decide` is pure (loads, handlers and time are inputs). A fire goes only to a node that has its
//! job's handler: a master-only job runs on the master (if the master lacks the handler, the fire
//! is recorded failed with the reason and alerted: `Decision::Unrunnable`); any other fire runs on
//! the master while the master has the handler and its load is under the threshold; otherwise on
//! the least-loaded live node with the handler and a fresh load report; with none, on the master
//! if it has the handler, else it is unrunnable (recorded and alerted, never dropped). `PeerClient` is this node's gRPC client of
//! its peers: it delivers fires to another node with `NodeService.SubmitTasks` over pooled channels
//! with a short deadline (the caller falls back to the target's durable queue when the call fails),
//! and reports this node's load to the master. `Router` puts it together for the scheduler.
//! Uses: `pb` (client), `store`, `cluster` (loads, membership, lease), `worker`, `recovery`.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::cluster::lease::Mastership;
use crate::cluster::loads::LoadTable;
use crate::cluster::membership::Membership;
use crate::error::{Error, Result};
use crate::job::{Job, Routing};
use crate::metrics::path;
use crate::pb;
use crate::pb::node_service_client::NodeServiceClient;
use crate::recovery::Recovery;
use crate::store::{Accept, Fence, Load, Store};
use crate::worker::Worker;

use crate::cluster::loads::least_loaded;
pub use crate::cluster::loads::Peer;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    RunHere,
    SendTo(Peer),
    /// No node that may run it has its handler (the reason says which and why). The master takes
    /// it into its own list anyway, so that it is recorded (failed, with the reason) and alerted
    /// by the worker, never dropped and never bounced around.
    Unrunnable(String),
}

/// The fire being routed, as `decide` needs it.
#[derive(Debug, Clone, Copy)]
pub struct FireNeeds<'a> {
    pub handler: &'a str,
    pub master_only: bool,
    /// The tags an external worker must have (the job's selector).
    pub selector: &'a std::collections::BTreeMap<String, String>,
}

/// This node (the master) as `decide` sees it.
#[derive(Debug, Clone, Copy)]
pub struct Here {
    pub load: Load,
    /// The fire's handler is registered here.
    pub has_handler: bool,
}

/// What the master remembers of a job's routing, for `Routing::RoundRobin` and
/// `Routing::LeastRecentlyUsed`: in its memory only, so a new master starts the turn over.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RouteMemo {
    /// Fires routed so far: round robin's turn.
    turns: u64,
    /// Node id -> the turn at which it last got this job's fire.
    last: HashMap<String, u64>,
}

impl RouteMemo {
    /// Records that this job's fire went to `node`.
    pub fn chose(&mut self, node: &str) {
        self.turns += 1;
        self.last.insert(node.to_string(), self.turns);
    }
}

/// The node a fire of a job routed by `routing` (not `Routing::Load`) runs on, among
/// `candidates`: the live nodes that can run it, sorted by id, with no repeats. Pure: the
/// master's memory of the job (`memo`) and a random number are inputs. None: no candidate (for
/// `Failover`: none of `failover` is a candidate).
pub fn pick<'c>(
    routing: Routing,
    job_id: &str,
    failover: &[String],
    candidates: &[&'c str],
    memo: &RouteMemo,
    random: u64,
) -> Option<&'c str> {
    if candidates.is_empty() {
        return None;
    }
    let n = candidates.len() as u64;
    match routing {
        Routing::Load => None,
        Routing::RoundRobin => Some(candidates[(memo.turns % n) as usize]),
        Routing::Random => Some(candidates[(random % n) as usize]),
        // Rendezvous hashing: the candidate whose hash with the job is highest. A node joining
        // takes only the jobs it now wins (about 1/N); one leaving gives up only its own.
        Routing::ConsistentHash => candidates.iter().copied().max_by_key(|c| (rendezvous(job_id, c), *c)),
        Routing::Failover => failover.iter().find_map(|f| candidates.iter().copied().find(|c| c == f)),
        // Never chosen counts as longest ago; ties (none chosen yet) go by id.
        Routing::LeastRecentlyUsed => {
            candidates.iter().copied().min_by_key(|c| (memo.last.get(*c).copied().unwrap_or(0), *c))
        }
    }
}

/// A stable hash of (job, node), the same on every master.
fn rendezvous(job_id: &str, node_id: &str) -> u64 {
    crate::cluster::shares::stable_hash(job_id.as_bytes(), node_id.as_bytes())
}

/// Where a fire of a job with a routing strategy (`spec.routing`, not `Load`; not master-only)
/// runs: `pick` among the live nodes that can run it (this one, `self_id`, when it has the
/// handler; the peers that have it and report workers). With none, unrunnable: recorded and
/// alerted by the worker, never dropped.
pub fn decide_by(
    spec: &crate::job::JobSpec,
    fire: FireNeeds,
    here: Here,
    self_id: &str,
    peers: &[Peer],
    memo: &RouteMemo,
    random: u64,
) -> Decision {
    let mut candidates: Vec<&str> = peers
        .iter()
        .filter(|p| p.load.max > 0 && p.node_id != self_id && p.can_run(fire.handler, fire.selector))
        .map(|p| p.node_id.as_str())
        .collect();
    if here.has_handler {
        candidates.push(self_id);
    }
    candidates.sort_unstable();
    match pick(spec.routing, &spec.id, &spec.failover_nodes, &candidates, memo, random) {
        Some(n) if n == self_id => Decision::RunHere,
        // Every candidate but this node is a peer.
        Some(n) => peers.iter().find(|p| p.node_id == n).cloned().map_or(Decision::RunHere, Decision::SendTo),
        None if spec.routing == Routing::Failover => Decision::Unrunnable(format!(
            "none of its failover nodes ({}) is live with handler '{}'",
            spec.failover_nodes.join(", "),
            fire.handler
        )),
        None => nobody_has(fire.handler),
    }
}

/// Where the shards of one sharded fire run (PROTOCOL §3.23): on the nodes that can run it (this
/// one, `self_id`, when it has the handler; the peers that have it and report workers), least
/// loaded first (by load ratio, queue, id), shard `i` on the `i`-th, in turn when there are more
/// shards than nodes: so shards land on distinct nodes wherever there are enough. Pure; a job's
/// routing strategy does not apply (a sharded job has none). Empty: no node can run it.
pub fn shard_places(fire: FireNeeds, here: Here, self_id: &str, peers: &[Peer]) -> Vec<Decision> {
    let mut nodes: Vec<(f64, u32, &str, Decision)> = peers
        .iter()
        .filter(|p| p.load.max > 0 && p.node_id != self_id && p.can_run(fire.handler, fire.selector))
        .map(|p| (p.load.ratio(), p.load.queue, p.node_id.as_str(), Decision::SendTo(p.clone())))
        .collect();
    if here.has_handler {
        nodes.push((here.load.ratio(), here.load.queue, self_id, Decision::RunHere));
    }
    nodes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(b.2)));
    nodes.into_iter().map(|(.., d)| d).collect()
}

/// A fire whose handler no live node has: unrunnable, saying so (by either rule).
fn nobody_has(handler: &str) -> Decision {
    Decision::Unrunnable(format!("handler '{handler}' is not registered on any live node (no live node has it)"))
}

/// Where a fire runs. `peers` are the live nodes with a fresh load report, this node excluded.
pub fn decide(fire: FireNeeds, here: Here, threshold: f64, peers: &[Peer]) -> Decision {
    if fire.master_only {
        return match here.has_handler {
            true => Decision::RunHere,
            false => Decision::Unrunnable(format!(
                "the job is master-only and its handler '{}' is not registered on the master",
                fire.handler
            )),
        };
    }
    if here.has_handler && here.load.ratio() < threshold {
        return Decision::RunHere;
    }
    let capable: Vec<Peer> = peers.iter().filter(|p| p.can_run(fire.handler, fire.selector)).cloned().collect();
    match least_loaded(&capable) {
        // Only worth it if the peer is less loaded than we are (or we cannot run it at all).
        Some(p) if !here.has_handler || p.load.ratio() < here.load.ratio() => Decision::SendTo(p.clone()),
        _ if here.has_handler => Decision::RunHere,
        _ => nobody_has(fire.handler),
    }
}

/// Outcome of a SubmitTask call.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Accepted,
    /// The node answered no (reason given): the fire is still dispatching.
    Refused(String),
    /// No answer in time, or a transport error: the fire may or may not have been accepted; the
    /// caller's compare-and-set enqueue settles it.
    Failed(String),
}

/// As a log value: `refused: <reason>`, `no answer: <reason>`.
impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivery::Accepted => f.write_str("accepted"),
            Delivery::Refused(why) => write!(f, "refused: {why}"),
            Delivery::Failed(why) => write!(f, "no answer: {why}"),
        }
    }
}

/// Metadata a node puts on a TriggerJob it passes to its `target_node` (`PeerClient::trigger_on`):
/// that node does not pass it on again.
pub const FORWARDED: &str = "rota-forwarded";

/// This node's calls to its peers (SubmitTasks, ReportLoad), one kept-open channel per peer.
pub struct PeerClient {
    timeout: Duration,
    /// `Bearer <cluster secret>`, sent on every call when the cluster uses tokens.
    secret: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// With TLS: verify peers with the cluster CA and present this node's certificate.
    tls: Option<tonic::transport::ClientTlsConfig>,
    /// One channel per peer address, kept open.
    channels: Mutex<HashMap<String, Channel>>,
    /// The same for streams, which outlive the per-call deadline of `channels`.
    stream_channels: Mutex<HashMap<String, Channel>>,
}

impl PeerClient {
    pub fn new(
        timeout: Duration,
        cluster_secret: Option<String>,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> PeerClient {
        let secret = cluster_secret.and_then(|s| format!("Bearer {s}").parse().ok());
        PeerClient {
            timeout,
            secret,
            tls,
            channels: Mutex::new(HashMap::new()),
            stream_channels: Mutex::new(HashMap::new()),
        }
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(s) = &self.secret {
            r.metadata_mut().insert("authorization", s.clone());
        }
        r
    }

    /// One kept-open channel per peer without the dispatch deadline, for streams and calls that
    /// take their own time (HTTP/2 carries many at once).
    fn stream_channel(&self, address: &str) -> Result<Channel, String> {
        let mut map = self.stream_channels.lock().map_err(|_| "peer channel cache poisoned".to_string())?;
        if let Some(c) = map.get(address) {
            return Ok(c.clone());
        }
        let c = self.endpoint(address)?.connect_lazy();
        map.insert(address.to_string(), c.clone());
        Ok(c)
    }

    fn channel(&self, address: &str) -> Result<Channel, String> {
        let mut map = self.channels.lock().map_err(|_| "peer channel cache poisoned".to_string())?;
        if let Some(c) = map.get(address) {
            return Ok(c.clone());
        }
        let c = self.endpoint(address)?.timeout(self.timeout).connect_lazy();
        map.insert(address.to_string(), c.clone());
        Ok(c)
    }

    fn endpoint(&self, address: &str) -> Result<Endpoint, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(self.timeout);
        if let Some(tls) = &self.tls {
            ep = ep.tls_config(tls.clone()).map_err(|e| e.to_string())?;
        }
        Ok(ep)
    }

    /// Follows an execution's output on the peer that runs it (`NodeService.WatchOutput`), past
    /// the given offsets: a stream for as long as the run goes on there (its own channel, with no
    /// per-call deadline).
    pub async fn watch_output(
        &self,
        address: &str,
        execution_id: &str,
        output_offset: u64,
        stderr_offset: u64,
    ) -> Result<tonic::Streaming<pb::WatchOutputResponse>, String> {
        let ch = self.stream_channel(address)?;
        let req = pb::WatchOutputRequest { execution_id: execution_id.to_string(), output_offset, stderr_offset };
        NodeServiceClient::new(ch)
            .watch_output(self.request(req))
            .await
            .map(|r| r.into_inner())
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    }

    /// Passes a TriggerJob call to the node at `address` (its `target_node`), with the caller's own
    /// credential (`authorization`): the target checks the caller's role as if asked directly.
    pub async fn trigger_on(
        &self,
        address: &str,
        req: pb::TriggerJobRequest,
        authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) -> Result<pb::TriggerJobResponse, tonic::Status> {
        // Not the dispatch channel, whose deadline (`dispatch_timeout_ms`) is for a peer's quick
        // answers: the target reads the job and writes the fire, as any TriggerJob does.
        let ch =
            self.stream_channel(address).map_err(|e| tonic::Status::unavailable(format!("node at {address}: {e}")))?;
        let mut r = tonic::Request::new(req);
        r.set_timeout(std::time::Duration::from_secs(30));
        if let Some(a) = authorization {
            r.metadata_mut().insert("authorization", a);
        }
        r.metadata_mut().insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        pb::scheduler_service_client::SchedulerServiceClient::new(ch).trigger_job(r).await.map(|r| r.into_inner())
    }

    /// Asks the node at `address` to stop a run (StopRun): whether it had the fire in hand.
    pub async fn stop_run(&self, address: &str, req: pb::StopRunRequest) -> Result<bool, String> {
        fail::fail_point!("fail_stop_run", |_| Err("failpoint fail_stop_run: the call was not sent".to_string()));
        NodeServiceClient::new(self.channel(address)?)
            .stop_run(self.request(req))
            .await
            .map(|r| r.into_inner().found)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    }

    /// Sends several fires in one SubmitTasks call: one delivery per task, in order.
    pub async fn submit_many(&self, peer: &Peer, req: pb::SubmitTasksRequest) -> Vec<Delivery> {
        let n = req.tasks.len();
        let ch = match self.channel(&peer.address) {
            Ok(c) => c,
            Err(e) => return vec![Delivery::Failed(e); n],
        };
        match tokio::time::timeout(self.timeout, NodeServiceClient::new(ch).submit_tasks(self.request(req))).await {
            Ok(Ok(r)) => {
                let results = r.into_inner().results;
                if results.len() != n {
                    return vec![Delivery::Failed(format!("{} results for {n} tasks", results.len())); n];
                }
                results
                    .into_iter()
                    .map(|r| if r.accepted { Delivery::Accepted } else { Delivery::Refused(r.reason) })
                    .collect()
            }
            Ok(Err(s)) => vec![Delivery::Failed(format!("{:?}: {}", s.code(), s.message())); n],
            Err(_) => vec![Delivery::Failed(format!("no answer within {} ms", self.timeout.as_millis())); n],
        }
    }

    /// Tells the master this node's load (best effort).
    pub async fn report_load(&self, master_address: &str, node_id: &str, load: Load) -> Option<u64> {
        let req = pb::ReportLoadRequest {
            node_id: node_id.to_string(),
            load: Some(pb::NodeLoad { active_workers: load.active, max_workers: load.max, queue_depth: load.queue }),
            measured_at: Some(pb::timestamp(crate::clock::now_ms())),
        };
        let ch = self.channel(master_address).ok()?;
        let r = tokio::time::timeout(self.timeout, NodeServiceClient::new(ch).report_load(self.request(req)))
            .await
            .ok()?
            .ok()?;
        Some(r.into_inner().epoch)
    }
}

/// Fires for peers, gathered over one tick: peer id -> (peer, tasks).
pub type Outbox = HashMap<String, (Peer, Vec<pb::SubmitTaskRequest>)>;

/// Fires per SubmitTasks call (the node's limit is `MAX_TASKS_PER_CALL`).
const SUBMIT_BATCH: usize = 250;

/// Delivery: where each claimed fire runs, and getting it there. The scheduler hands it claimed
/// fires and is done: a fire runs here (accepted into this node's processing list), or goes to the
/// least-loaded peer in one SubmitTasks call per peer per tick, falling back to the peer's durable
/// queue (recovery's `enqueue_somewhere`). The receiving side of SubmitTasks is here too.
pub struct Router {
    store: Arc<dyn Store>,
    worker: Arc<Worker>,
    membership: Arc<Membership>,
    loads: Arc<LoadTable>,
    recovery: Arc<Recovery>,
    peer_client: Arc<PeerClient>,
    node_id: String,
    /// The master runs fires itself while its load is under this.
    threshold: f64,
    /// Per job with a routing strategy, what `plan` remembers for round robin and least recently
    /// used (an entry is a few bytes a node a job; jobs routed by load have none).
    memo: Mutex<HashMap<String, RouteMemo>>,
}

/// What a `Router` is made of.
pub struct RouterParts {
    pub store: Arc<dyn Store>,
    pub worker: Arc<Worker>,
    pub membership: Arc<Membership>,
    pub loads: Arc<LoadTable>,
    pub recovery: Arc<Recovery>,
    /// Shared by every shard's router (one kept-open channel per peer).
    pub peer_client: Arc<PeerClient>,
    pub node_id: String,
    pub threshold: f64,
}

impl Router {
    pub fn new(p: RouterParts) -> Router {
        Router {
            store: p.store,
            worker: p.worker,
            membership: p.membership,
            loads: p.loads,
            recovery: p.recovery,
            peer_client: p.peer_client,
            node_id: p.node_id,
            threshold: p.threshold,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// Where each of a tick's fires goes, decided before their claim, in order, each counting in
    /// the loads the next one sees (a fire run here in this node's, one sent to a peer in that
    /// peer's): by the job's routing strategy (`pick`), or for `Routing::Load` and master-only
    /// jobs by `decide`. A `RunHere` fire is claimed into this node's hands (`Claim::here`); the
    /// rest are delivered once claimed (`deliver`). `None` for a fire that runs nowhere (a
    /// definition that no longer validates, a misfire's summary: recorded by their claim). A round-robin or least-recently-used job's turn
    /// moves here, once per fire, whether or not its claim then claims it.
    ///
    /// The shards of a sharded fire (given in order, `fire_id` naming each) are placed together
    /// when its first comes (`shard_places`, on the loads as they are then).
    pub async fn plan(&self, fires: &[Option<(&Job, &str)>], now: i64) -> Vec<Option<Decision>> {
        let spread = fires.iter().flatten().any(|(j, _)| !j.spec.master_only);
        let mut peers = if spread { self.loads.peers(now).await } else { Vec::new() };
        let mut load = self.worker.load();
        let accepting = self.worker.accepting();
        // The whole fire whose shards are being placed, and where each goes.
        let mut places: Option<(&str, Vec<Decision>)> = None;
        fires
            .iter()
            .map(|f| {
                let (job, fire_id) = (*f)?;
                let fire = FireNeeds {
                    handler: &job.spec.handler,
                    master_only: job.spec.master_only,
                    selector: &job.spec.selector,
                };
                let has_handler = self.worker.registry().get_for(fire.handler, fire.selector).is_some();
                let here = Here { load, has_handler };
                let shard = crate::execution::shard_in(fire_id);
                let decision = if let Some(shard) = shard {
                    let whole = crate::execution::FireId::whole(fire_id);
                    if places.as_ref().is_none_or(|(w, _)| *w != whole) {
                        places = Some((whole, shard_places(fire, here, &self.node_id, &peers)));
                    }
                    match places.as_ref().map(|(_, p)| p.as_slice()).unwrap_or_default() {
                        [] => nobody_has(fire.handler),
                        p => p[shard.index as usize % p.len()].clone(),
                    }
                } else if job.spec.master_only || job.spec.routing == Routing::Load {
                    decide(fire, here, self.threshold, &peers)
                } else {
                    let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
                    // Deleted jobs leave their entries: past this many, all start their turns over.
                    if memo.len() > 100_000 {
                        memo.clear();
                    }
                    let m = memo.entry(job.spec.id.clone()).or_default();
                    let d = decide_by(&job.spec, fire, here, &self.node_id, &peers, m, rand::random());
                    match &d {
                        Decision::RunHere => m.chose(&self.node_id),
                        Decision::SendTo(p) => m.chose(&p.node_id),
                        Decision::Unrunnable(_) => {}
                    }
                    d
                };
                match &decision {
                    // Draining: taken by no claim here; `deliver` leaves it dispatching.
                    Decision::RunHere if accepting => load.queue = load.queue.saturating_add(1),
                    // In this tick's view only: the shared table counts it once it is claimed
                    // (`deliver`).
                    Decision::SendTo(to) => {
                        if let Some(p) = peers.iter_mut().find(|p| p.node_id == to.node_id) {
                            p.load.bump();
                        }
                    }
                    _ => {}
                }
                Some(decision)
            })
            .collect()
    }

    /// How many shards a `Shards::PerNode` job's fire fans out into now: the live nodes that can
    /// run it (this one included), 1 with none (its one shard is then recorded unrunnable), at most
    /// `MAX_SHARDS`.
    pub async fn nodes_for(&self, job: &Job, now: i64) -> u32 {
        let peers = self.loads.peers(now).await;
        let fire = FireNeeds { handler: &job.spec.handler, master_only: false, selector: &job.spec.selector };
        let has_handler = self.worker.registry().get_for(fire.handler, fire.selector).is_some();
        let here = Here { load: self.worker.load(), has_handler };
        (shard_places(fire, here, &self.node_id, &peers).len() as u32).clamp(1, crate::job::MAX_SHARDS)
    }

    /// Whether `plan`'s decision takes the fire into this node's hands with its claim.
    pub fn claims_here(&self, decision: Option<&Decision>) -> bool {
        matches!(decision, Some(Decision::RunHere)) && self.worker.accepting()
    }

    /// Delivers a claimed fire (`ClaimOutcome::Claimed`) as `plan` decided: here (accepted into
    /// this node's processing list: a fire its claim did not take into its hands), or into
    /// `outbox` for a peer (see `send`).
    pub async fn deliver(
        &self,
        job: Job,
        fire_id: String,
        decision: Decision,
        master: &Mastership,
        outbox: &mut Outbox,
    ) {
        match decision {
            Decision::RunHere => {
                self.worker.metrics().dispatched(path::LOCAL);
                self.run_here(job, &fire_id, Some(master.epoch)).await
            }
            Decision::Unrunnable(why) => {
                // Taken here to be recorded: the worker finds it may not run here, looks once more
                // for a live node that may, and otherwise records the fire failed and alerts.
                tracing::warn!(fire = %fire_id, handler = %job.spec.handler, why = %why, "no node can run this fire");
                self.worker.metrics().dispatched(path::LOCAL);
                self.run_here(job, &fire_id, Some(master.epoch)).await
            }
            Decision::SendTo(peer) => {
                self.loads.bump(&peer.node_id);
                let task = pb::SubmitTaskRequest {
                    job_id: job.spec.id.clone(),
                    fire_id,
                    scheduled_time: None,
                    attempt: 1,
                    epoch: master.epoch,
                };
                outbox.entry(peer.node_id.clone()).or_insert_with(|| (peer, Vec::new())).1.push(task);
            }
        }
    }

    /// A replacing fire's stop (concurrency replace, PROTOCOL §3.20): the store left the request on
    /// the running fire's node's stop list (taken at its rescan); this asks that node at once too,
    /// here or by StopRun, on a task of its own so the tick goes on.
    pub fn stop_replaced(&self, r: crate::store::Replacing) {
        let crate::store::Replacing { node, stop } = r;
        if node == self.node_id {
            self.worker.stop_run(&stop.fire, &stop.exec, &stop.why);
            return;
        }
        let (loads, client) = (Arc::clone(&self.loads), Arc::clone(&self.peer_client));
        tokio::spawn(async move {
            let peers = loads.peers(crate::store::now_ms()).await;
            let Some(peer) = peers.into_iter().find(|p| p.node_id == node) else {
                tracing::info!(node = %node, fire = %stop.fire, "the replaced fire's node is not a live peer: it takes the stop request at its rescan");
                return;
            };
            let req = pb::StopRunRequest { fire_id: stop.fire.clone(), execution_id: stop.exec, why: stop.why };
            if let Err(e) = client.stop_run(&peer.address, req).await {
                tracing::warn!(node = %node, fire = %stop.fire, error = %e,
                    "cannot ask the node to stop the replaced run; it takes the request at its rescan");
            }
        });
    }

    /// Runs a fire claimed into this node's hands (`ClaimOutcome::Here`: already accepted;
    /// `ClaimOutcome::Started`, as execution `exec_id` under `fence`: already started).
    pub fn run_claimed_here(&self, job: Job, fire_id: &str, started: Option<(&str, &Fence)>) {
        self.worker.metrics().dispatched(path::LOCAL);
        let running = match started {
            Some((exec_id, fence)) => self.worker.run_claimed_started(fire_id, job, exec_id, fence),
            None => self.worker.run_accepted(fire_id.to_string(), Some(job)),
        };
        if !running {
            tracing::info!(fire = %fire_id, "draining: the fire stays in this node's list, for the master to move once this node has left");
        }
    }

    /// Delivers a tick's fires for peers: one SubmitTasks call per peer (per `SUBMIT_BATCH` fires),
    /// each on its own task so delivery never holds up the next fires. A fire the peer did not
    /// take (or a call that failed) goes to that peer's durable queue.
    pub fn send(self: &Arc<Self>, outbox: Outbox, master: &Mastership) {
        for (_, (peer, tasks)) in outbox {
            for chunk in tasks.chunks(SUBMIT_BATCH) {
                let req = pb::SubmitTasksRequest { epoch: master.epoch, tasks: chunk.to_vec() };
                let (me, fence, peer) = (Arc::downgrade(self), master.lease.clone(), peer.clone());
                self.worker.metrics().submit_calls.inc();
                tokio::spawn(async move {
                    let Some(me) = me.upgrade() else { return };
                    let fires: Vec<String> = req.tasks.iter().map(|t| t.fire_id.clone()).collect();
                    let results = me.peer_client.submit_many(&peer, req).await;
                    for (fire_id, delivery) in fires.iter().zip(results) {
                        match delivery {
                            Delivery::Accepted => {
                                me.worker.metrics().dispatched(path::DIRECT);
                                tracing::debug!(fire = %fire_id, node = %peer.node_id, "dispatched");
                            }
                            other => {
                                tracing::info!(fire = %fire_id, node = %peer.node_id, outcome = %other,
                                    "direct dispatch failed: using the node's durable queue");
                                me.recovery.enqueue_somewhere(&fence, fire_id, &peer.node_id).await;
                            }
                        }
                    }
                });
            }
        }
    }

    /// Accepts a fire into this node's processing list and runs it. `epoch` None for manual fires.
    pub async fn run_here(&self, job: Job, fire_id: &str, epoch: Option<u64>) {
        if !self.worker.accept_and_run(fire_id.to_string(), epoch, job) {
            tracing::info!(fire = %fire_id, "draining: the fire stays dispatching; the next master's sweep queues it");
        }
    }

    /// A peer's SubmitTask(s): accept (compare-and-set, durable before the reply; one store step
    /// for the whole batch) and run.
    pub async fn accept_submitted(&self, fire_ids: &[String], epoch: u64) -> Result<Vec<Accept>> {
        if !self.worker.accepting() {
            return Err(Error::FailedPrecondition("node is shutting down".into()));
        }
        let inc = self.membership.incarnation();
        let accepts = self.store.accept_many(fire_ids, Some(epoch), &self.node_id, &inc, true).await?;
        for (fire_id, a) in fire_ids.iter().zip(&accepts) {
            match a {
                Accept::Accepted => {
                    self.worker.run_accepted(fire_id.clone(), None);
                }
                Accept::Started(sf) => {
                    let taken = crate::worker::Taken { fire: sf.clone(), inc: inc.clone() };
                    self.worker.run_started(fire_id.clone(), None, taken);
                }
                _ => {}
            }
        }
        Ok(accepts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(active: u32, max: u32, queue: u32) -> Load {
        Load { active, max, queue }
    }

    fn peer(id: &str, l: Load) -> Peer {
        Peer {
            node_id: id.into(),
            address: format!("{id}:1"),
            load: l,
            handlers: vec!["noop".into()],
            worker_tags: Default::default(),
        }
    }

    fn with_shell(mut p: Peer) -> Peer {
        p.handlers.push("shell".into());
        p
    }

    #[test]
    fn routing_table() {
        let peers = vec![peer("a", load(5, 10, 0)), peer("b", load(1, 10, 3)), peer("c", load(1, 10, 0))];
        let busier = [peer("x", load(9, 10, 0))];
        let empty = [peer("z", load(0, 0, 0))];
        type Case<'a> = (&'a str, bool, Load, &'a [Peer], Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("under threshold runs here", false, load(7, 10, 0), &peers, None),
            ("master-only runs here even when busy", true, load(10, 10, 5), &peers, None),
            ("over threshold goes to least loaded, shortest queue", false, load(8, 10, 0), &peers, Some("c")),
            ("no peers: here anyway", false, load(10, 10, 0), &[], None),
            ("peers busier than us: here", false, load(8, 10, 0), &busier, None),
            ("a peer reporting no workers is skipped", false, load(9, 10, 0), &empty, None),
        ];
        for (name, master_only, local, peers, want) in cases {
            let none = Default::default();
            let fire = FireNeeds { handler: "noop", master_only, selector: &none };
            let got = match decide(fire, Here { load: local, has_handler: true }, 0.8, peers) {
                Decision::RunHere => None,
                Decision::SendTo(p) => Some(p.node_id),
                Decision::Unrunnable(why) => panic!("{name}: unrunnable: {why}"),
            };
            assert_eq!(got.as_deref(), want, "{name}");
        }
    }

    /// A sharded fire's shards: one per node that can run it, least loaded first (this node among
    /// them), in turn past the last; none without workers or the handler; none at all: empty.
    #[test]
    fn shard_places_table() {
        let none = Default::default();
        let fire = FireNeeds { handler: "noop", master_only: false, selector: &none };
        let shell = FireNeeds { handler: "shell", ..fire };
        let names = |d: Vec<Decision>| -> Vec<String> {
            d.into_iter()
                .map(|d| match d {
                    Decision::RunHere => "here".to_string(),
                    Decision::SendTo(p) => p.node_id,
                    Decision::Unrunnable(why) => panic!("unrunnable: {why}"),
                })
                .collect()
        };
        let peers = vec![
            peer("c", load(1, 10, 0)),
            peer("a", load(5, 10, 0)),
            peer("b", load(1, 10, 2)),
            peer("idle-but-empty", load(0, 0, 0)),
            with_shell(peer("s", load(9, 10, 0))),
        ];
        let idle = Here { load: load(0, 4, 0), has_handler: true };
        let busy = Here { load: load(4, 4, 9), has_handler: true };
        let without = Here { load: load(0, 4, 0), has_handler: false };
        type Case<'a> = (&'a str, FireNeeds<'a>, Here, &'a [Peer], &'a [&'a str]);
        let cases: Vec<Case> = vec![
            ("idle master first, then by load, queue, id", fire, idle, &peers, &["here", "c", "b", "a", "s"]),
            ("a busy master last", fire, busy, &peers, &["c", "b", "a", "s", "here"]),
            ("a master without the handler is not a place", fire, without, &peers, &["c", "b", "a", "s"]),
            ("only nodes with the handler", shell, without, &peers, &["s"]),
            ("alone", fire, idle, &[], &["here"]),
            ("nowhere", shell, without, &peers[..4], &[]),
        ];
        for (name, fire, here, peers, want) in cases {
            assert_eq!(names(shard_places(fire, here, "m", peers)), *want, "{name}");
        }
    }

    /// A job's selector: its fire goes only to a node with an attached worker whose tags match;
    /// with none, it is unrunnable here (it waits for one: `Worker::cannot_run_here`). A built-in
    /// handler ignores the selector.
    #[test]
    fn routing_by_selector() {
        let tagged = |id: &str, l: Load, sets: &[&[(&str, &str)]]| {
            let mut p = peer(id, l);
            p.handlers.push("report".into());
            let sets = sets.iter().map(|t| t.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect();
            p.worker_tags.insert("report".into(), sets);
            p
        };
        let peers = vec![
            tagged("eu", load(0, 10, 0), &[&[("region", "eu")]]),
            tagged("us", load(5, 10, 0), &[&[("region", "us"), ("gpu", "true")], &[("region", "us")]]),
        ];
        let sel = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let lacking = Here { load: load(0, 10, 0), has_handler: false };
        type Case<'a> = (&'a str, std::collections::BTreeMap<String, String>, &'a str, Result<&'a str, &'a str>);
        let cases: Vec<Case> = vec![
            ("no selector: the least loaded that has it", sel(&[]), "report", Ok("eu")),
            ("region=us: only us", sel(&[("region", "us")]), "report", Ok("us")),
            ("two tags: a worker with both", sel(&[("region", "us"), ("gpu", "true")]), "report", Ok("us")),
            ("no worker matches: unrunnable", sel(&[("region", "ap")]), "report", Err("no live node has it")),
            (
                "tags of two workers do not add up",
                sel(&[("region", "eu"), ("gpu", "true")]),
                "report",
                Err("no live node"),
            ),
            ("a built-in ignores the selector", sel(&[("region", "ap")]), "noop", Ok("eu")),
        ];
        for (name, selector, handler, want) in cases {
            let fire = FireNeeds { handler, master_only: false, selector: &selector };
            let got = match decide(fire, lacking, 0.8, &peers) {
                Decision::SendTo(p) => Ok(p.node_id),
                Decision::RunHere => Ok("here".to_string()),
                Decision::Unrunnable(why) => Err(why),
            };
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{name}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{name}: {g}"),
                (g, w) => panic!("{name}: got {g:?}, want {w:?}"),
            }
        }
    }

    /// A fire goes only to a node that has its handler; with none, it is unrunnable (recorded and
    /// alerted by the master), never sent to a node that would fail it.
    #[test]
    fn routing_by_handler() {
        let idle = load(0, 10, 0);
        let peers = vec![
            peer("a", load(0, 10, 0)),
            with_shell(peer("b", load(5, 10, 0))),
            with_shell(peer("c", load(3, 10, 0))),
        ];
        let plain = [peer("a", load(0, 10, 0))];
        let none = Default::default();
        let shell = |master_only| FireNeeds { handler: "shell", master_only, selector: &none };
        let lacking = Here { load: idle, has_handler: false };
        let having = Here { load: idle, has_handler: true };
        let busy_having = Here { load: load(9, 10, 0), has_handler: true };
        let busy_no_workers = [with_shell(peer("z", load(0, 0, 0)))];
        type Case<'a> = (&'a str, FireNeeds<'a>, Here, &'a [Peer], Result<Option<&'a str>, &'a str>);
        let cases: Vec<Case> = vec![
            (
                "master lacks it: least-loaded peer that has it, not the idler one that does not",
                shell(false),
                lacking,
                &peers,
                Ok(Some("c")),
            ),
            ("master has it and is idle: here", shell(false), having, &peers, Ok(None)),
            ("master busy: least-loaded capable peer", shell(false), busy_having, &peers, Ok(Some("c"))),
            ("master busy, no capable peer: here", shell(false), busy_having, &plain, Ok(None)),
            ("nobody has it: unrunnable", shell(false), lacking, &plain, Err("no live node has it")),
            ("no peers at all: unrunnable", shell(false), lacking, &[], Err("no live node has it")),
            (
                "a capable peer without workers does not count",
                shell(false),
                lacking,
                &busy_no_workers,
                Err("no live node has it"),
            ),
            (
                "master-only, master lacks it: unrunnable even if a peer has it",
                shell(true),
                lacking,
                &peers,
                Err("master-only"),
            ),
            ("master-only, master has it: here", shell(true), busy_having, &peers, Ok(None)),
        ];
        for (name, fire, here, peers, want) in cases {
            match (decide(fire, here, 0.8, peers), want) {
                (Decision::RunHere, Ok(None)) => {}
                (Decision::SendTo(p), Ok(Some(id))) => assert_eq!(p.node_id, id, "{name}"),
                (Decision::Unrunnable(why), Err(part)) => {
                    assert!(why.contains(part) && why.contains("'shell'"), "{name}: {why}")
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn memo_of(chosen: &[&str]) -> RouteMemo {
        let mut m = RouteMemo::default();
        chosen.iter().for_each(|n| m.chose(n));
        m
    }

    /// Each strategy as a table: (routing, candidates, the job's memory, the random number) ->
    /// the node.
    #[test]
    fn pick_table() {
        let abc = ["a", "b", "c"];
        let fo = vec!["c".to_string(), "a".to_string()];
        type Case<'a> = (&'a str, Routing, &'a [&'a str], RouteMemo, u64, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("round robin: the first turn", Routing::RoundRobin, &abc, memo_of(&[]), 0, Some("a")),
            ("round robin: the next turn", Routing::RoundRobin, &abc, memo_of(&["a"]), 0, Some("b")),
            ("round robin: wraps", Routing::RoundRobin, &abc, memo_of(&["a", "b", "c"]), 0, Some("a")),
            ("round robin: a node gone", Routing::RoundRobin, &["a", "c"], memo_of(&["a"]), 0, Some("c")),
            ("random: by the number", Routing::Random, &abc, memo_of(&[]), 7, Some("b")),
            ("failover: the first listed", Routing::Failover, &abc, memo_of(&[]), 0, Some("c")),
            ("failover: the next listed", Routing::Failover, &["a", "b"], memo_of(&[]), 0, Some("a")),
            ("failover: none listed is a candidate", Routing::Failover, &["b"], memo_of(&[]), 0, None),
            ("lru: never used first", Routing::LeastRecentlyUsed, &abc, memo_of(&["a", "b"]), 0, Some("c")),
            ("lru: then the oldest", Routing::LeastRecentlyUsed, &abc, memo_of(&["c", "a", "b"]), 0, Some("c")),
            ("lru: ties by id", Routing::LeastRecentlyUsed, &abc, memo_of(&[]), 0, Some("a")),
            (
                "lru: a new node first",
                Routing::LeastRecentlyUsed,
                &["a", "b", "d"],
                memo_of(&["a", "d", "b"]),
                0,
                Some("a"),
            ),
            ("no candidates", Routing::RoundRobin, &[], memo_of(&[]), 0, None),
            ("consistent hash: no candidates", Routing::ConsistentHash, &[], memo_of(&[]), 0, None),
        ];
        for (name, routing, candidates, memo, random, want) in cases {
            assert_eq!(pick(routing, "job", &fo, candidates, &memo, random), want, "{name}");
        }
    }

    /// Consistent hashing: the same node for a job whatever the turn or order of calls; a node
    /// joining takes about 1/N of the jobs and only those (each moved job moves to it); one
    /// leaving gives up only its own.
    #[test]
    fn consistent_hash_moves_about_one_nth() {
        let nodes3 = ["n1", "n2", "n3"];
        let nodes4 = ["n1", "n2", "n3", "n4"];
        let jobs: Vec<String> = (0..2000).map(|i| format!("job-{i}")).collect();
        let at = |job: &str, nodes: &[&'static str]| {
            pick(Routing::ConsistentHash, job, &[], nodes, &memo_of(&["n1"]), 5).expect("a node")
        };
        let mut moved = 0;
        let mut per_node = HashMap::new();
        for j in &jobs {
            let (before, after) = (at(j, &nodes3), at(j, &nodes4));
            assert_eq!(before, at(j, &nodes3), "stable");
            *per_node.entry(before).or_insert(0) += 1;
            if before != after {
                assert_eq!(after, "n4", "{j} moved between old nodes");
                moved += 1;
            }
            // n2 leaves: only its jobs move.
            let without = at(j, &["n1", "n3"]);
            assert!(before == "n2" || without == before, "{j}: {before} -> {without}");
        }
        // About a quarter move to the fourth node, and three nodes share the jobs about evenly.
        assert!((350..650).contains(&moved), "moved {moved} of 2000");
        assert!(per_node.values().all(|n| (500..834).contains(n)), "{per_node:?}");
    }

    /// A strategy chooses among the live nodes that can run the fire: this one when it has the
    /// handler, peers that have it and report workers; with none, unrunnable, saying why.
    #[test]
    fn decide_by_chooses_among_the_nodes_that_can_run_it() {
        let spec = |routing, failover: &[&str]| crate::job::JobSpec {
            id: "j".into(),
            handler: "shell".into(),
            routing,
            failover_nodes: failover.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let none = Default::default();
        let fire = FireNeeds { handler: "shell", master_only: false, selector: &none };
        let having = Here { load: load(10, 10, 5), has_handler: true };
        let lacking = Here { load: load(0, 10, 0), has_handler: false };
        let peers = vec![
            peer("a", load(0, 10, 0)),
            with_shell(peer("b", load(9, 10, 9))),
            with_shell(peer("z", load(0, 0, 0))),
        ];
        let to = |d: Decision| match d {
            Decision::RunHere => Ok("m".to_string()),
            Decision::SendTo(p) => Ok(p.node_id),
            Decision::Unrunnable(why) => Err(why),
        };
        let fresh = RouteMemo::default();
        // Candidates b and m (a lacks the handler, z reports no workers): round robin's first turn
        // is b, busy as it is (a strategy does not weigh load), then m.
        assert_eq!(
            to(decide_by(&spec(Routing::RoundRobin, &[]), fire, having, "m", &peers, &fresh, 0)),
            Ok("b".into())
        );
        let after_b = memo_of(&["b"]);
        assert_eq!(
            to(decide_by(&spec(Routing::RoundRobin, &[]), fire, having, "m", &peers, &after_b, 0)),
            Ok("m".into())
        );
        // This node without the handler is no candidate.
        let rr = decide_by(&spec(Routing::RoundRobin, &[]), fire, lacking, "m", &peers, &after_b, 0);
        assert_eq!(to(rr), Ok("b".into()));
        // Failover: the first listed that can run it; none: unrunnable, naming the list.
        let fo = decide_by(&spec(Routing::Failover, &["z", "a", "m"]), fire, having, "m", &peers, &fresh, 0);
        assert_eq!(to(fo), Ok("m".into()));
        let fo = decide_by(&spec(Routing::Failover, &["z", "a"]), fire, having, "m", &peers, &fresh, 0);
        assert!(to(fo).is_err_and(|why| why.contains("failover nodes (z, a)") && why.contains("'shell'")));
        // Nobody has it: unrunnable, as for the default rule.
        let nobody = [peer("a", load(0, 10, 0))];
        let d = decide_by(&spec(Routing::Random, &[]), fire, lacking, "m", &nobody, &fresh, 3);
        assert!(to(d).is_err_and(|why| why.contains("no live node has it")));
    }
}
