//! The load table: how busy each live peer is, as the master sees it. Fed by the store's node
//! records (every heartbeat, so a new master starts with one) and by peers' `ReportLoad` calls, and
//! bumped by the master for each fire it sends until the next report, so a burst spreads instead of
//! piling on the node that looked least loaded at the start of a tick. Uses: `store` only.
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::store::{now_ms, Load, Store};

/// A live peer as the master sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub node_id: String,
    pub address: String,
    pub load: Load,
    /// The handlers registered on it, from its record: a fire goes only to a node that has its
    /// job's handler.
    pub handlers: Vec<String>,
    /// Its external workers' tags per handler, from its record (a job's selector).
    pub worker_tags: crate::job::WorkerTags,
}

impl Peer {
    /// Whether it can run fires of `handler` for a job with `selector`.
    pub fn can_run(&self, handler: &str, selector: &std::collections::BTreeMap<String, String>) -> bool {
        crate::job::can_run(&self.handlers, &self.worker_tags, handler, selector)
    }
}

/// The least loaded of `peers`: by load ratio, then queue length, then id (deterministic for tests
/// and logs); peers without workers are never chosen.
pub fn least_loaded(peers: &[Peer]) -> Option<&Peer> {
    peers.iter().filter(|p| p.load.max > 0).min_by(|a, b| {
        a.load.ratio().total_cmp(&b.load.ratio()).then(a.load.queue.cmp(&b.load.queue)).then(a.node_id.cmp(&b.node_id))
    })
}

pub struct LoadTable {
    store: Arc<dyn Store>,
    node_id: String,
    /// A peer's report older than this is not used (and the peer counts as gone).
    fresh_ms: u64,
    /// Peer id -> (peer, when its load was last reported, ms).
    loads: Mutex<HashMap<String, (Peer, i64)>>,
    /// When the table was last refreshed from the store (ms).
    refreshed: AtomicI64,
}

impl LoadTable {
    pub fn new(store: Arc<dyn Store>, node_id: &str, fresh_ms: u64) -> LoadTable {
        LoadTable {
            store,
            node_id: node_id.to_string(),
            fresh_ms,
            loads: Mutex::new(HashMap::new()),
            refreshed: AtomicI64::new(0),
        }
    }

    /// A peer's load report (NodeService.ReportLoad). Peers not yet known from the store's node
    /// records (which carry their address) are ignored until they are.
    pub fn record(&self, node_id: &str, load: Load) {
        if let Ok(mut m) = self.loads.lock() {
            if let Some((p, at)) = m.get_mut(node_id) {
                p.load = load;
                *at = now_ms();
            }
        }
    }

    /// Live peers with a fresh load report, this node excluded. Refreshed from the store's node
    /// records at most every `fresh_ms / 3`.
    pub async fn peers(&self, now: i64) -> Vec<Peer> {
        let every = (self.fresh_ms / 3).max(100) as i64;
        if now - self.refreshed.load(Ordering::Relaxed) >= every {
            self.refreshed.store(now, Ordering::Relaxed);
            if let Ok(nodes) = self.store.list_nodes().await {
                if let Ok(mut m) = self.loads.lock() {
                    for n in nodes.into_iter().filter(|n| !n.draining) {
                        match m.get_mut(&n.node_id) {
                            // What a node is (its address, its handlers, its workers' tags) is its
                            // record's, always: a report carries only a load, and its time (this
                            // node's clock) would otherwise keep a node restarted on another
                            // address (a pod's new IP) at its old one. Its load is the newer one's.
                            Some((p, at)) => {
                                p.address = n.address;
                                p.handlers = n.handlers;
                                p.worker_tags = n.worker_tags;
                                if *at < n.beat_ms {
                                    p.load = n.load;
                                    *at = n.beat_ms;
                                }
                            }
                            None => {
                                let p = Peer {
                                    node_id: n.node_id.clone(),
                                    address: n.address.clone(),
                                    load: n.load,
                                    handlers: n.handlers.clone(),
                                    worker_tags: n.worker_tags.clone(),
                                };
                                m.insert(n.node_id, (p, n.beat_ms));
                            }
                        }
                    }
                }
            }
        }
        let fresh = self.fresh_ms as i64;
        self.loads
            .lock()
            .map(|m| {
                m.values()
                    .filter(|(p, at)| p.node_id != self.node_id && now - *at <= fresh)
                    .map(|(p, _)| p.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Counts a fire just sent to `peer` in its load.
    pub fn bump(&self, peer: &str) {
        if let Ok(mut m) = self.loads.lock() {
            if let Some((p, _)) = m.get_mut(peer) {
                p.load.bump();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, NodeRecord};

    /// A peer restarted under its id on another address is reached there at the next refresh,
    /// though its last load report (timed by this node's clock) is newer than its record's beat;
    /// its handlers follow its record too. Found by a probe: fires went to the old address for a
    /// minute and more, each falling back to the queue.
    #[tokio::test]
    async fn a_peers_new_address_and_handlers_win_over_a_newer_report() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(60_000));
        let rec = |address: &str, handlers: &[&str], beat_ms: i64| NodeRecord {
            node_id: "n2".into(),
            address: address.into(),
            incarnation: "i1".into(),
            beat_ms,
            handlers: handlers.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        };
        let now = now_ms();
        store.register(&rec("10.0.0.1:1", &["noop"], now), 60_000, None).await.expect("register");
        let table = LoadTable::new(store.clone(), "n1", 120_000);
        assert_eq!(table.peers(now).await[0].address, "10.0.0.1:1");
        table.record("n2", Load { active: 1, max: 4, queue: 0 });
        store.register(&rec("10.0.0.9:1", &["noop", "shell"], now - 10), 60_000, None).await.expect("again");
        let later = now + 60_000;
        let p = table.peers(later).await;
        assert_eq!(p[0].address, "10.0.0.9:1");
        assert_eq!(p[0].handlers, ["noop", "shell"]);
        assert_eq!(p[0].load.active, 1, "the newer report's load stays");
    }
}
