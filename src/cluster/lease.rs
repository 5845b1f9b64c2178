//! Master lease. Owns the lease loop of this node: acquire, renew, step down, release. Publishes the
//! node's `Role` on a watch channel that the scheduler follows. With shards, one `Lease` per shard,
//! each competing only for the shards the node's `Share` gives it. Uses: `store` (lease scripts
//! only), `cluster::shares`.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::clock::{ClockState, ClusterClock};
use crate::cluster::shares::Share;
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

pub struct Lease {
    store: Arc<dyn Store>,
    /// With shards: the node's share and this lease's shard; since when the shard's lease was seen
    /// free (a lease left free by its owner is taken by any node: `may_try`); and when this node
    /// took the shard although it is another's (it keeps it `FALLBACK_HOLD` before handing it
    /// back, so an owner unable to take it costs a gap now and then, not at every renewal).
    share: Option<(Arc<Share>, u16)>,
    free_since: std::sync::Mutex<Option<Instant>>,
    fallback_at: std::sync::Mutex<Option<Instant>>,
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

/// How long a node keeps a shard it took as a fallback (its owner left it free) before
/// handing it back to the owner.
const FALLBACK_HOLD: Duration = Duration::from_secs(30);

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
            fallback_at: std::sync::Mutex::new(None),
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

    /// The lease of `shard`, one among several: it competes only for what `share` gives this node.
    pub fn with_share(mut self, share: Arc<Share>, shard: u16) -> Lease {
        self.share = Some((share, shard));
        self
    }

    /// Whether this node may try for this shard's lease: its share gives it the shard, or the
    /// lease has been free for two renewal intervals (its owner's polls: it cannot take it, or the
    /// nodes do not agree yet on who is live).
    async fn may_try(&self) -> bool {
        let Some((share, shard)) = &self.share else { return true };
        if share.is_mine(*shard) {
            return true;
        }
        let free = matches!(self.store.lease().await, Ok(None));
        let Ok(mut since) = self.free_since.lock() else { return false };
        if !free {
            *since = None;
            return false;
        }
        // Two polls of the owner's: time enough for a healthy owner to take it.
        since.get_or_insert_with(Instant::now).elapsed() >= 2 * self.timing.renew
    }

    /// The node this lease should hand its shard to now, if any: the shard is another live
    /// node's, and this node has not just taken it as a fallback.
    fn hand_to(&self) -> Option<String> {
        let (share, shard) = self.share.as_ref()?;
        let owner = share.owner(*shard).filter(|o| *o != self.node_id)?;
        let recent = self.fallback_at.lock().ok()?.is_some_and(|t| t.elapsed() < FALLBACK_HOLD);
        (!recent).then_some(owner)
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

    /// Gives up mastership now (graceful shutdown, or handing the shard to its owner), deleting
    /// the lease if still ours.
    pub async fn step_down(&self, why: &str) {
        if let Role::Master(m) = self.role() {
            self.role.send_replace(Role::Follower);
            match self.store.release_lease(&m.lease).await {
                Ok(true) => tracing::info!(node = %self.node_id, epoch = m.epoch, why, "released the master lease"),
                Ok(false) => tracing::info!(node = %self.node_id, epoch = m.epoch, why, "lease already gone"),
                Err(e) => tracing::warn!(node = %self.node_id, error = %e, "cannot release the lease; it will expire"),
            }
        }
    }

    async fn try_acquire(&self) -> Duration {
        if !self.clock_allows() || !self.may_try().await {
            return self.timing.renew;
        }
        let (wait, won) = self.acquire().await;
        if let (true, Some((share, shard))) = (won, &self.share) {
            // A later free spell starts its own count; a shard won that is not ours is a fallback.
            if let (Ok(mut free), Ok(mut fallback)) = (self.free_since.lock(), self.fallback_at.lock()) {
                *free = None;
                *fallback = (!share.is_mine(*shard)).then(Instant::now);
            }
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
            self.role.send_replace(Role::Follower);
            return Duration::ZERO;
        }
        if m.lease.incarnation != self.membership.incarnation() {
            // The node took a new incarnation (revoked in another shard): a lease naming the old
            // one names no live node to the others. The table's owner (maybe this node) takes the
            // shard again under the new one.
            tracing::warn!(node = %self.node_id, epoch = m.epoch, "lease held by a replaced incarnation: stepping down");
            self.step_down("replaced incarnation").await;
            return Duration::ZERO;
        }
        if let Some(owner) = self.hand_to() {
            // The shard is another live node's (one joined, or came back): it takes it at its next
            // try, within a renewal interval.
            tracing::info!(node = %self.node_id, to = %owner, "handing the shard to its owner");
            self.step_down("handing the shard to its owner").await;
            return self.timing.renew;
        }
        let sent = now;
        // Never wait for an answer past our own deadline.
        let budget = self.timing.renew.min(m.deadline - now);
        match tokio::time::timeout(budget, self.store.renew_lease(&m.lease, self.timing.ttl.as_millis() as u64)).await {
            Ok(Ok(true)) => {
                let deadline = sent + self.timing.ttl - self.timing.margin();
                self.saw(&m.lease);
                // Only if still master under this epoch: a step-down (shutdown) while the renewal
                // was out must not be undone by its answer.
                self.role.send_if_modified(|r| match r {
                    Role::Master(cur) if cur.epoch == m.epoch => {
                        *r = Role::Master(Mastership { deadline, ..m });
                        true
                    }
                    _ => false,
                });
                self.timing.renew
            }
            Ok(Ok(false)) => {
                tracing::warn!(node = %self.node_id, epoch = m.epoch, "lease lost to another node: stepping down");
                self.role.send_replace(Role::Follower);
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
