//! Master lease. Owns the lease loop of this node: acquire, renew, step down, release. Publishes the
//! node's `Role` on a watch channel that the scheduler follows. With shards, one `Lease` per shard,
//! and a `Share` between them that keeps this node to its part of the shards. Uses: `store` (lease
//! scripts only).
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::clock::{ClockState, ClusterClock};
use crate::error::Error;
use crate::store::{Fence, LeaseAcquire, Store, MAX_EPOCH};

/// What this node is right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Follower,
    Master(Mastership),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mastership {
    pub epoch: u64,
    /// The lease as stored, passed to every fenced write.
    pub lease: Fence,
    /// Local monotonic deadline: past it this node must not act as master.
    pub deadline: Instant,
}

impl Role {
    /// The mastership if it is still within its local deadline.
    pub fn active(&self) -> Option<&Mastership> {
        match self {
            Role::Master(m) if Instant::now() < m.deadline => Some(m),
            _ => None,
        }
    }
}

/// Lease timing.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub ttl: Duration,
    /// Renewal interval of the master, and polling interval of candidates.
    pub renew: Duration,
}

impl LeaseTiming {
    /// Covers clock-rate drift between this node and Redis over one lease.
    fn margin(&self) -> Duration {
        (self.ttl / 100).max(Duration::from_millis(50))
    }
}

/// How many of the cluster's shard leases this node holds, and how many it should: at most
/// `ceil(shards / live nodes)`, and no more than `floor(shards / live nodes)` while another live
/// node holds fewer than that (docs/DESIGN.md "Shards"). Shared by the node's `Lease`s; the
/// heartbeat keeps `live` and `starving` current.
#[derive(Debug)]
pub struct Share {
    shards: usize,
    held: AtomicUsize,
    live: AtomicUsize,
    /// A live node holds fewer than `floor(shards / live)` shards (one that just joined).
    starving: std::sync::atomic::AtomicBool,
}

impl Share {
    pub fn new(shards: u16) -> Arc<Share> {
        Arc::new(Share {
            shards: usize::from(shards.max(1)),
            held: AtomicUsize::new(0),
            live: AtomicUsize::new(1),
            starving: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// What the heartbeat last saw: how many shards each live node (this one included) masters.
    pub fn observe(&self, held_by_live_nodes: &[usize]) {
        let live = held_by_live_nodes.len().max(1);
        self.live.store(live, Ordering::Relaxed);
        let floor = self.shards / live;
        self.starving.store(held_by_live_nodes.iter().any(|h| *h < floor), Ordering::Relaxed);
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    fn quota(&self) -> usize {
        self.shards.div_ceil(self.live.load(Ordering::Relaxed).max(1))
    }

    /// Takes one shard off the count if this node holds more than its quota, or more than the
    /// floor while a node is starving: true if the caller should hand its shard back.
    /// Compare-and-set, so leases renewing at once hand back only the excess between them.
    fn give_back_one(&self) -> bool {
        let quota = self.quota();
        let floor = self.shards / self.live.load(Ordering::Relaxed).max(1);
        let starving = self.starving.load(Ordering::Relaxed);
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| (h > quota || (starving && h > floor)).then(|| h - 1))
            .is_ok()
    }
}

pub struct Lease {
    store: Arc<dyn Store>,
    /// With shards: the node's share, and since when this shard's lease was seen free (a lease
    /// free for a whole TTL is taken even above the quota: a live count that is briefly too high
    /// must not leave a shard without master), and until when this lease stays away after handing
    /// its shard back (so that another node takes it).
    share: Option<Arc<Share>>,
    free_since: std::sync::Mutex<Option<Instant>>,
    away_until: std::sync::Mutex<Option<Instant>>,
    node_id: String,
    /// This node's live incarnation, read at each acquisition: it changes when the node is
    /// declared dead and registers anew, and a lease naming a revoked incarnation names no live node.
    membership: Arc<crate::cluster::membership::Membership>,
    timing: LeaseTiming,
    role: watch::Sender<Role>,
    /// Highest epoch this node has seen in the store (never one a peer merely claimed); the floor
    /// for its next acquisition.
    max_epoch: Arc<AtomicU64>,
    /// When this node last complained that it cannot take a lease nobody holds (rate limit).
    complained: std::sync::Mutex<Option<Instant>>,
    /// With a clock: no acquisition while this node's offset from the cluster clock is unknown.
    clock_gate: Option<ClockGate>,
    /// The last lease holder this node saw in the store (itself included) and when (wall ms): what
    /// it can still tell about mastership while the store is out of reach.
    last_seen: std::sync::Mutex<Option<(Fence, i64)>>,
}

/// The master this node saw last (`Lease::last_seen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenMaster {
    pub node_id: String,
    pub epoch: u64,
    /// When it was seen holding the lease (wall clock ms).
    pub at_ms: i64,
}

/// The master decides when every fire of the cluster is due, so a node that does not know how far
/// its wall clock is off the cluster clock must not become master.
struct ClockGate {
    clock: Arc<ClusterClock>,
    /// Whether the last attempt was held back (logged once per change, not every poll).
    holding: std::sync::atomic::AtomicBool,
}

/// A node that cannot take a lease it should be able to take says so at most this often.
const COMPLAIN_EVERY: Duration = Duration::from_secs(10);

impl Lease {
    pub fn new(
        store: Arc<dyn Store>,
        node_id: &str,
        membership: Arc<crate::cluster::membership::Membership>,
        timing: LeaseTiming,
        max_epoch: Arc<AtomicU64>,
    ) -> Lease {
        let (role, _) = watch::channel(Role::Follower);
        Lease {
            store,
            share: None,
            free_since: std::sync::Mutex::new(None),
            away_until: std::sync::Mutex::new(None),
            node_id: node_id.to_string(),
            membership,
            timing,
            role,
            max_epoch,
            complained: std::sync::Mutex::new(None),
            clock_gate: None,
            last_seen: std::sync::Mutex::new(None),
        }
    }

    /// Takes the lease only while `clock` has a fresh measurement of this node's offset.
    pub fn with_clock_gate(mut self, clock: Arc<ClusterClock>) -> Lease {
        self.clock_gate = Some(ClockGate { clock, holding: std::sync::atomic::AtomicBool::new(false) });
        self
    }

    /// One shard's lease among several: kept to this node's `share`.
    pub fn with_share(mut self, share: Arc<Share>) -> Lease {
        self.share = Some(share);
        self
    }

    /// Whether this node may try for this shard's lease under its share, and if so counts it in
    /// (the caller takes it off again if the lease is not won: `unreserve`): not while it stays
    /// away after handing the shard back; not at or above its quota, unless the lease has been free
    /// a TTL. Counted by compare-and-set before the try, so leases trying at once cannot all pass
    /// the same quota.
    async fn reserve(&self) -> bool {
        let Some(share) = &self.share else { return true };
        let away = self.away_until.lock().map(|g| g.is_some_and(|t| Instant::now() < t)).unwrap_or(false);
        if away {
            return false;
        }
        let quota = share.quota();
        if share.held.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| (h < quota).then(|| h + 1)).is_ok() {
            return true;
        }
        let free = matches!(self.store.lease().await, Ok(None));
        let long_free = {
            let Ok(mut since) = self.free_since.lock() else { return false };
            if !free {
                *since = None;
            }
            free && since.get_or_insert_with(Instant::now).elapsed() >= self.timing.ttl
        };
        if long_free {
            share.held.fetch_add(1, Ordering::SeqCst);
        }
        long_free
    }

    fn unreserve(&self) {
        if let Some(share) = &self.share {
            share.held.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Becomes follower; `counted`: the mastership is still in the share's count (a hand-back has
    /// already taken it off).
    fn demote(&self, counted: bool) {
        let was = self.role.send_replace(Role::Follower);
        if let (Role::Master(_), Some(share), true) = (was, &self.share, counted) {
            share.held.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// True when the clock gate lets this node try for the lease now.
    fn clock_allows(&self) -> bool {
        let Some(g) = &self.clock_gate else { return true };
        let measured = matches!(g.clock.state(), ClockState::Measured { .. });
        let was_holding = g.holding.swap(!measured, Ordering::Relaxed);
        match (was_holding, measured) {
            (false, false) => tracing::warn!(node = %self.node_id,
                "not competing for mastership: this node's clock offset from Redis is not measured (yet, or not recently)"),
            (true, true) => tracing::info!(node = %self.node_id, "clock offset measured: competing for mastership"),
            _ => {}
        }
        measured
    }

    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// The last lease holder this node saw (None before it first looked).
    pub fn last_seen(&self) -> Option<SeenMaster> {
        let g = self.last_seen.lock().ok()?;
        g.as_ref().map(|(f, at)| SeenMaster { node_id: f.node_id.clone(), epoch: f.epoch, at_ms: *at })
    }

    fn saw(&self, holder: &Fence) {
        if let Ok(mut g) = self.last_seen.lock() {
            *g = Some((holder.clone(), crate::clock::now_ms()));
        }
    }

    /// Runs until `cancel`; then releases the lease if held, so a successor need not wait for expiry.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let current = self.role();
            let wait = match current {
                Role::Follower => self.try_acquire().await,
                Role::Master(m) => self.renew(m).await,
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.step_down("shutting down").await;
    }

    /// Gives up mastership now (graceful shutdown), deleting the lease if still ours.
    pub async fn step_down(&self, why: &str) {
        self.release(why, true).await
    }

    async fn release(&self, why: &str, counted: bool) {
        if let Role::Master(m) = self.role() {
            self.demote(counted);
            match self.store.release_lease(&m.lease).await {
                Ok(true) => tracing::info!(node = %self.node_id, epoch = m.epoch, why, "released the master lease"),
                Ok(false) => tracing::info!(node = %self.node_id, epoch = m.epoch, why, "lease already gone"),
                Err(e) => tracing::warn!(node = %self.node_id, error = %e, "cannot release the lease; it will expire"),
            }
        }
    }

    async fn try_acquire(&self) -> Duration {
        if !self.clock_allows() || !self.reserve().await {
            return self.timing.renew;
        }
        let (wait, won) = self.acquire().await;
        if !won {
            self.unreserve();
        }
        wait
    }

    /// One try for the lease: how long until the next, and whether it was won.
    async fn acquire(&self) -> (Duration, bool) {
        let floor = self.max_epoch.load(Ordering::SeqCst);
        let sent = Instant::now();
        let r = tokio::time::timeout(
            self.timing.renew,
            self.store.acquire_lease(
                &self.node_id,
                &self.membership.incarnation(),
                self.timing.ttl.as_millis() as u64,
                floor,
            ),
        )
        .await;
        let wait = match r {
            Ok(Ok(LeaseAcquire::Acquired(h))) => {
                let before = self.max_epoch.fetch_max(h.epoch, Ordering::SeqCst);
                if h.epoch <= before {
                    // The store issued an epoch no higher than one already seen: acting on it could
                    // let a deposed master's writes pass as ours. Give it back and say so.
                    self.complain(&format!("the store issued epoch {} but epoch {before} was seen before", h.epoch));
                    let _ = self.store.release_lease(&h).await;
                    return (self.timing.renew, false);
                }
                let deadline = sent + self.timing.ttl - self.timing.margin();
                self.saw(&h);
                tracing::info!(node = %self.node_id, epoch = h.epoch, "became master");
                self.role.send_replace(Role::Master(Mastership { epoch: h.epoch, lease: h, deadline }));
                return (self.timing.renew, true);
            }
            Ok(Ok(LeaseAcquire::Held(h))) => {
                match h {
                    Some(h) if h.epoch <= MAX_EPOCH => {
                        self.saw(&h);
                        self.max_epoch.fetch_max(h.epoch, Ordering::SeqCst);
                    }
                    // Held under a value that names no master: it blocks every node until it expires.
                    _ => self.complain(
                        "the lease key holds a value that is not a lease; no node can become master while it does",
                    ),
                }
                self.timing.renew
            }
            Ok(Err(e @ Error::StoreUnavailable { .. })) => {
                tracing::debug!(node = %self.node_id, error = %e, "cannot reach the store to take the lease");
                self.timing.renew
            }
            Ok(Err(e)) => {
                // The store answered, and refused: without this line, a cluster with no master
                // looks healthy while nothing fires.
                self.complain(&format!("cannot take the master lease: {e}"));
                self.timing.renew
            }
            Err(_) => self.timing.renew,
        };
        (wait, false)
    }

    /// Logs at ERROR that this node cannot become master although it should be able to, at most
    /// every `COMPLAIN_EVERY`.
    fn complain(&self, why: &str) {
        let Ok(mut last) = self.complained.lock() else { return };
        if last.is_none_or(|t| t.elapsed() >= COMPLAIN_EVERY) {
            *last = Some(Instant::now());
            tracing::error!(node = %self.node_id, why, "no master can be elected by this node");
        }
    }

    /// Renews; steps down when the lease is someone else's or the local deadline passes.
    async fn renew(&self, m: Mastership) -> Duration {
        let now = Instant::now();
        if now >= m.deadline {
            tracing::warn!(node = %self.node_id, epoch = m.epoch, "lease deadline passed without renewal: stepping down");
            self.demote(true);
            return Duration::ZERO;
        }
        if self.share.as_ref().is_some_and(|s| s.give_back_one()) {
            // More shards than this node's part (a node joined): this one goes to another node.
            if let Ok(mut g) = self.away_until.lock() {
                *g = Some(now + 2 * self.timing.ttl);
            }
            self.release("handing the shard to a node with fewer", false).await;
            return self.timing.renew;
        }
        let sent = now;
        // Never wait for an answer past our own deadline.
        let budget = self.timing.renew.min(m.deadline - now);
        match tokio::time::timeout(budget, self.store.renew_lease(&m.lease, self.timing.ttl.as_millis() as u64)).await {
            Ok(Ok(true)) => {
                let deadline = sent + self.timing.ttl - self.timing.margin();
                self.saw(&m.lease);
                self.role.send_replace(Role::Master(Mastership { deadline, ..m }));
                self.timing.renew
            }
            Ok(Ok(false)) => {
                tracing::warn!(node = %self.node_id, epoch = m.epoch, "lease lost to another node: stepping down");
                self.demote(true);
                Duration::ZERO
            }
            Ok(Err(e)) => {
                tracing::warn!(node = %self.node_id, error = %e, "cannot renew the lease; retrying until the deadline");
                Duration::from_millis(100).min(self.timing.renew)
            }
            Err(_) => Duration::ZERO,
        }
    }
}

/// How long a node waits for another master to appear before acting alone (handing over a
/// master-only fire, or choosing where a recovered one goes).
pub const MASTER_WAIT: Duration = Duration::from_secs(10);

/// Another node holding the lease, as `me` sees it: waits up to `wait` while there is none (a lease
/// held by this node's previous process is about to expire or pass). None when this node is master
/// (or becomes so meanwhile), or when no other master appears in time.
pub async fn master_elsewhere(
    store: &dyn Store,
    role: &watch::Receiver<Role>,
    me: &str,
    wait: Duration,
) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        if role.borrow().active().is_some() {
            return None;
        }
        match store.lease().await {
            Ok(Some(h)) if h.node_id != me => return Some(h.node_id),
            _ if Instant::now() >= deadline => return None,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
