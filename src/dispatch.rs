//! Dispatch: where a fire runs, and how it gets there.
//! `decide` is pure (loads and time are inputs): a master-only job, or any fire while the master's
//! load is under the threshold, runs on the master; otherwise on the least-loaded live node with a
//! fresh load report; with none, on the master anyway. `Dispatcher` delivers a fire to another node
//! with `NodeService.SubmitTask` over pooled channels with a short deadline; the caller falls back to
//! the target's durable queue when the call fails. Uses: `pb` (client), `store::Load`, `cluster::loads`.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::pb;
use crate::pb::node_service_client::NodeServiceClient;
use crate::store::Load;

pub use crate::cluster::loads::Peer;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    RunHere,
    SendTo(Peer),
}

/// Where a fire runs. `peers` are the live nodes with a fresh load report, this node excluded.
pub fn decide(master_only: bool, local: Load, threshold: f64, peers: &[Peer]) -> Decision {
    if master_only || local.ratio() < threshold {
        return Decision::RunHere;
    }
    // Least loaded by ratio, then shortest queue, then id (deterministic for tests and logs).
    let best = peers.iter().filter(|p| p.load.max > 0).min_by(|a, b| {
        a.load.ratio().total_cmp(&b.load.ratio()).then(a.load.queue.cmp(&b.load.queue)).then(a.node_id.cmp(&b.node_id))
    });
    match best {
        // Only worth it if the peer is less loaded than we are.
        Some(p) if p.load.ratio() < local.ratio() => Decision::SendTo(p.clone()),
        _ => Decision::RunHere,
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

pub struct Dispatcher {
    timeout: Duration,
    /// `Bearer <cluster secret>`, sent on every call when the cluster uses tokens.
    secret: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// With TLS: verify peers with the cluster CA and present this node's certificate.
    tls: Option<tonic::transport::ClientTlsConfig>,
    /// One channel per peer address, kept open.
    channels: Mutex<HashMap<String, Channel>>,
}

impl Dispatcher {
    pub fn new(
        timeout: Duration,
        cluster_secret: Option<String>,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Dispatcher {
        let secret = cluster_secret.and_then(|s| format!("Bearer {s}").parse().ok());
        Dispatcher { timeout, secret, tls, channels: Mutex::new(HashMap::new()) }
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(s) = &self.secret {
            r.metadata_mut().insert("authorization", s.clone());
        }
        r
    }

    fn channel(&self, address: &str) -> Result<Channel, String> {
        let mut map = self.channels.lock().map_err(|_| "dispatcher poisoned".to_string())?;
        if let Some(c) = map.get(address) {
            return Ok(c.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        if let Some(tls) = &self.tls {
            ep = ep.tls_config(tls.clone()).map_err(|e| e.to_string())?;
        }
        let c = ep.connect_lazy();
        map.insert(address.to_string(), c.clone());
        Ok(c)
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
    pub async fn report_load(&self, master_address: &str, req: pb::ReportLoadRequest) -> Option<u64> {
        let ch = self.channel(master_address).ok()?;
        let r = tokio::time::timeout(self.timeout, NodeServiceClient::new(ch).report_load(self.request(req)))
            .await
            .ok()?
            .ok()?;
        Some(r.into_inner().epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(active: u32, max: u32, queue: u32) -> Load {
        Load { active, max, queue }
    }

    fn peer(id: &str, l: Load) -> Peer {
        Peer { node_id: id.into(), address: format!("{id}:1"), load: l }
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
            let got = match decide(master_only, local, 0.8, peers) {
                Decision::RunHere => None,
                Decision::SendTo(p) => Some(p.node_id),
            };
            assert_eq!(got.as_deref(), want, "{name}");
        }
    }
}
