//! Relays the execution changes any node publishes on the cluster's change channel to this
//! process's watchers (the store's broadcast sender). Owns the pub/sub connection: subscribed only
//! while someone watches, re-established when it drops. Lossy: a change published while it is not
//! subscribed is not seen. Uses: `topology` (which server to subscribe on: any node of a Redis Cluster, as a PUBLISH
//! reaches every node's subscribers; the current primary under Sentinel) and `execution` (the changes' JSON).
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, watch, Notify};

use super::topology::Topology;
use crate::execution::Execution;

/// One message on the change channel: a JSON array of the executions one script call changed (the
/// batched scripts announce a whole batch at once: one PUBLISH per call, not per fire), or a single
/// execution's JSON object (the scripts that change one).
fn decode_changes(payload: &str) -> serde_json::Result<Vec<Execution>> {
    if payload.trim_start().starts_with('[') {
        serde_json::from_str(payload)
    } else {
        serde_json::from_str::<Execution>(payload).map(|e| vec![e])
    }
}

/// Relays execution changes published by any node to this process's watchers, reconnecting while
/// there are any. Subscribed only while someone watches: every node decoding every change of the
/// cluster (one message per script call, up to three changes per fire) cost each node CPU in
/// proportion to the whole cluster's fires.
pub(super) async fn relay_changes(
    topology: Arc<Topology>,
    channel: String,
    events: broadcast::Sender<Execution>,
    wanted: Arc<Notify>,
    live: watch::Sender<bool>,
) {
    /// How often a subscribed relay checks whether anyone still watches.
    const IDLE_CHECK: Duration = Duration::from_secs(1);
    let mut attempt = 0usize;
    loop {
        while events.receiver_count() == 0 {
            wanted.notified().await;
        }
        let client = topology.pubsub_client(attempt).await;
        attempt = attempt.wrapping_add(1);
        match client {
            Err(e) => tracing::debug!(error = %e, "execution watch: cannot find a server; retrying"),
            Ok(client) => match client.get_async_pubsub().await {
                Ok(mut ps) => {
                    if let Err(e) = ps.subscribe(&channel).await {
                        tracing::warn!(error = %e, "execution watch: subscribe failed");
                    } else {
                        live.send_replace(true);
                        let mut msgs = ps.on_message();
                        let mut check = tokio::time::interval(IDLE_CHECK);
                        let unwatched = loop {
                            tokio::select! {
                                msg = msgs.next() => {
                                    let Some(msg) = msg else { break false };
                                    let Ok(payload) = msg.get_payload::<String>() else { continue };
                                    match decode_changes(&payload) {
                                        Ok(changes) => {
                                            for e in changes {
                                                let _ = events.send(e);
                                            }
                                        }
                                        Err(e) => tracing::warn!(error = %e, "execution watch: undecodable change ignored"),
                                    }
                                }
                                _ = check.tick() => if events.receiver_count() == 0 { break true },
                            }
                        };
                        live.send_replace(false);
                        if unwatched {
                            continue;
                        }
                        tracing::warn!("execution watch: pub/sub connection closed; reconnecting");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "execution watch: cannot connect; retrying"),
            },
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
