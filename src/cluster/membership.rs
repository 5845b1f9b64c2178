//! Membership: this node's incarnation. Owns `hb:<node>` (a key holding the live incarnation, with a
//! TTL) through register, beat and keep-alive scripts, and the local proof that it still owns
//! what it started (`still_owns`). A key that merely expired (a Redis outage or restart) is
//! taken back at the next beat; an incarnation whose running work the master took over (reaped) can
//! never beat again: the process must register a new incarnation. Two live processes cannot share a node id: the second one is refused.
//! With shards, the node has a heartbeat key in every shard (each shard's scripts check theirs) and
//! beats them all; one incarnation serves them all.
//! Uses: `store` only.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::store::{Beat, NodeRecord, Register, Store};

/// When a call that extends the heartbeat key was sent, by both clocks (`Membership::surely_live`).
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    wall_us: i64,
}

impl Sent {
    fn now() -> Sent {
        Sent { at: Instant::now(), wall_us: crate::clock::local_now_us() }
    }
}

pub struct Membership {
    node_id: String,
    incarnation: Mutex<String>,
    ttl_ms: u64,
    /// Since when this node's heartbeats have gone through without a break (None: the last failed).
    contact_since: Mutex<Option<Instant>>,
    /// The incarnation whose register, beat or keep-alive last went through, and when that call was
    /// sent: its key lives in Redis for a node TTL from a moment no earlier (`surely_live`).
    last_sent: Mutex<Option<(String, Sent)>>,
    /// More than one shard: a keep-alive extends one shard's key only, so it proves nothing for
    /// the others (`still_owns` then asks each time past the beats' proof).
    sharded: bool,
}

impl Membership {
    pub fn new(node_id: &str, ttl_ms: u64) -> Membership {
        Membership {
            node_id: node_id.to_string(),
            incarnation: Mutex::new(new_incarnation()),
            ttl_ms,
            contact_since: Mutex::new(None),
            last_sent: Mutex::new(None),
            sharded: false,
        }
    }

    /// The node beats `shards` shards.
    pub fn with_shards(mut self, shards: u16) -> Membership {
        self.sharded = shards > 1;
        self
    }

    /// Whether `inc` is this node's live incarnation and its heartbeat key surely still lives in
    /// Redis: its last register, beat or keep-alive that went through was sent less than a node TTL
    /// ago (less a tenth, for the time until the caller acts), by the monotonic clock and by the
    /// wall clock both (the monotonic one stands still while the host is suspended; Redis expires
    /// keys by its wall clock). Until the key expires no one can judge the node dead and recover its
    /// fires, so what it started it may still run without asking Redis. False after a pause or a
    /// store outage longer than that, and for an incarnation the node has replaced.
    fn surely_live(&self, inc: &str) -> bool {
        let ttl_us = (self.ttl_ms as i64).saturating_mul(1000);
        let within = ttl_us - ttl_us / 10;
        self.last_sent
            .lock()
            .map(|g| {
                g.as_ref().is_some_and(|(i, sent)| {
                    let mono = sent.at.elapsed().as_micros() as i64;
                    let wall = crate::clock::local_now_us() - sent.wall_us;
                    i == inc && mono < within && wall < within
                })
            })
            .unwrap_or(false)
    }

    /// Whether incarnation `inc` still owns what it started, so a handler of it may begin. Its own
    /// heartbeat is the proof: while the key surely lives (`surely_live`, no round trip) no one can
    /// have judged it dead and recovered its fires. Past that (a pause in the start lead or before a
    /// handler, a store outage), the key is extended only if it still holds `inc`
    /// (`Store::keep_alive`); false if not, or if the store cannot say. A node's execution record
    /// alone could not tell: the reaper closes a recovered fire's record a step after it takes it.
    pub async fn still_owns(&self, store: &dyn Store, inc: &str) -> bool {
        if self.surely_live(inc) {
            return true;
        }
        let sent = Sent::now();
        match store.keep_alive(&self.node_id, inc, self.ttl_ms).await {
            Ok(true) => {
                if !self.sharded {
                    self.went_through(inc, sent);
                }
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot extend this node's heartbeat before a handler");
                false
            }
        }
    }

    /// Records that a call of `inc` sent at `sent` extended its heartbeat key (`surely_live`).
    fn went_through(&self, inc: &str, sent: Sent) {
        if let Ok(mut g) = self.last_sent.lock() {
            *g = Some((inc.to_string(), sent));
        }
    }

    /// The live incarnation's id.
    pub fn incarnation(&self) -> String {
        self.incarnation.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Registers in every shard, waiting up to two node TTLs for an earlier process with the same
    /// id to expire (a restart); after that another live process holds the id and this one must
    /// not start. Registering again where it already is (same incarnation) is harmless.
    pub async fn register(&self, stores: &[Arc<dyn Store>], record: impl Fn(&str) -> NodeRecord) -> Result<()> {
        self.register_replacing(stores, record, None).await
    }

    /// As `register`, taking over `replacing` (this process's previous incarnation) where its key
    /// still lives: revoked in one shard, it may still be live in another, and must not block this
    /// process's new incarnation there.
    async fn register_replacing(
        &self,
        stores: &[Arc<dyn Store>],
        record: impl Fn(&str) -> NodeRecord,
        replacing: Option<&str>,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.ttl_ms * 2);
        'again: loop {
            let inc = self.incarnation();
            let sent = Sent::now();
            for store in stores {
                if let Register::InUse(other) = store.register(&record(&inc), self.ttl_ms, replacing).await? {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::NodeIdInUse { node: self.node_id.clone(), holder: other });
                    }
                    tokio::time::sleep(Duration::from_millis(self.ttl_ms / 4 + 1)).await;
                    continue 'again;
                }
            }
            self.went_through(&inc, sent);
            tracing::info!(node = %self.node_id, incarnation = %inc, "registered");
            return Ok(());
        }
    }

    /// One heartbeat, in every shard at once: the shards' answers in shard order. When the
    /// incarnation was revoked in any (this node was declared dead there, e.g. after a long pause),
    /// takes a new incarnation and registers it everywhere: work the old one held there was reaped.
    pub async fn beat(&self, stores: &[Arc<dyn Store>], record: impl Fn(&str) -> NodeRecord) -> Result<Vec<Beat>> {
        let inc = self.incarnation();
        let sent = Sent::now();
        let rec = record(&inc);
        let beats: Result<Vec<Beat>> =
            join_all(stores.iter().map(|s| s.beat(&rec, self.ttl_ms))).await.into_iter().collect();
        if let Ok(b) = &beats {
            if b.iter().all(|b| matches!(b, Beat::Alive { .. })) {
                self.went_through(&inc, sent);
            }
        }
        if let Ok(mut c) = self.contact_since.lock() {
            match (&beats, *c) {
                (Ok(_), None) => *c = Some(Instant::now()),
                (Err(_), _) => *c = None,
                _ => {}
            }
        }
        let beats = beats?;
        if beats.iter().any(|b| matches!(b, Beat::Revoked { .. })) {
            let fresh = new_incarnation();
            tracing::warn!(node = %self.node_id, old = %inc, new = %fresh,
                "incarnation revoked (this node was declared dead): registering anew");
            if let Ok(mut g) = self.incarnation.lock() {
                *g = fresh;
            }
            self.register_replacing(stores, record, Some(&inc)).await?;
        }
        Ok(beats)
    }
}

impl Membership {
    /// Whether this node may judge others dead now: only after it has been in touch with the store
    /// without a break for a whole node TTL, and the store itself has been up that long. A node
    /// whose key expired during a store outage (or restart) has had one TTL to beat again (and
    /// take its key back) before anyone looks: a blip delays fires, it never kills nodes.
    pub async fn may_judge_liveness(&self, store: &dyn Store) -> Result<bool> {
        let ttl = Duration::from_millis(self.ttl_ms);
        let in_touch = self.contact_since.lock().map(|c| c.is_some_and(|t| t.elapsed() >= ttl)).unwrap_or(false);
        if !in_touch {
            return Ok(false);
        }
        // Uptime is whole seconds: one more second of margin. A store that will not say (an ACL
        // user without INFO, which is in @dangerous) leaves the contact rule alone to judge: a
        // restart shorter than a heartbeat could then still declare a node dead, never a longer one.
        match store.uptime_ms().await {
            Ok(up) => Ok(up.is_none_or(|up| up >= self.ttl_ms + 1000)),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the store's uptime; judging liveness by contact alone");
                Ok(true)
            }
        }
    }
}

fn new_incarnation() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
