//! Alerts: a fire that failed after its retries (or, in a cluster, was lost with its node) is
//! announced through the configured sinks: always one structured log line, and an HTTP webhook when
//! configured. Delivery runs on its own task behind a bounded channel with retries and backoff, so
//! a slow or dead webhook never blocks scheduling; when the channel is full the alert is logged as
//! dropped (it is still in the log and in the execution record).
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::execution::Execution;
use crate::metrics::Metrics;

/// Alerts waiting for the webhook; beyond this they are dropped (and said so in the log).
const QUEUE: usize = 1024;
/// Attempts per alert before giving up on the webhook.
const ATTEMPTS: u32 = 5;

/// The webhook's JSON body (documented in the README).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    /// "execution_failed", "execution_lost", "job_paused" (pause_after_failures),
    /// "queue_entry_dead_lettered", "stored_key_set_aside", "clock_skew" or "no_master".
    pub kind: &'static str,
    pub job_id: String,
    pub fire_id: String,
    pub execution_id: String,
    pub node_id: String,
    pub attempt: u32,
    /// The execution's final state, e.g. "failed" or "timed_out".
    pub state: &'static str,
    pub error: String,
    /// RFC 3339.
    pub scheduled_at: String,
    pub cluster: String,
}

impl Alert {
    /// A queue entry set aside in the dead-letter list (`entry` already shortened for display).
    pub fn dead_letter(entry: &str, node_id: &str, reason: &str, cluster: &str) -> Alert {
        Alert {
            kind: "queue_entry_dead_lettered",
            job_id: String::new(),
            fire_id: entry.to_string(),
            execution_id: String::new(),
            node_id: node_id.to_string(),
            attempt: 0,
            state: "dead_lettered",
            error: reason.to_string(),
            scheduled_at: String::new(),
            cluster: cluster.to_string(),
        }
    }

    /// A job or fire set aside because a key the store holds for it is not what it should be (a
    /// key of the wrong type, a record that does not decode): the rest of the cluster goes on.
    pub fn set_aside(job_id: &str, fire_id: &str, node_id: &str, reason: &str) -> Alert {
        Alert {
            kind: "stored_key_set_aside",
            job_id: job_id.to_string(),
            fire_id: fire_id.to_string(),
            execution_id: String::new(),
            node_id: node_id.to_string(),
            attempt: 0,
            state: "set_aside",
            error: reason.to_string(),
            scheduled_at: String::new(),
            cluster: String::new(),
        }
    }

    /// This node's wall clock is off the cluster clock (Redis's) by more than the bound. Its fires
    /// stay on time (it schedules on the corrected clock), but its host's time sync is broken.
    /// `offset_ms` is Redis's clock minus this node's (negative: the node is ahead).
    pub fn clock_skew(node_id: &str, offset_ms: i64, bound_ms: i64, cluster: &str) -> Alert {
        let how = if offset_ms < 0 { "ahead of" } else { "behind" };
        Alert {
            kind: "clock_skew",
            job_id: String::new(),
            fire_id: String::new(),
            execution_id: String::new(),
            node_id: node_id.to_string(),
            attempt: 0,
            state: "clock_skew",
            error: format!(
                "this node's wall clock is {} ms {how} Redis's clock (bound {bound_ms} ms); \
                 fires use the corrected clock, fix the host's time synchronisation",
                offset_ms.saturating_abs()
            ),
            scheduled_at: String::new(),
            cluster: cluster.to_string(),
        }
    }

    /// No node has held the master lease for longer than the failover bound: nothing fires.
    pub fn no_master(node_id: &str, for_ms: u64, bound_ms: u64, cluster: &str) -> Alert {
        Alert {
            kind: "no_master",
            job_id: String::new(),
            fire_id: String::new(),
            execution_id: String::new(),
            node_id: node_id.to_string(),
            attempt: 0,
            state: "no_master",
            error: format!(
                "no master for {for_ms} ms (failover bound {bound_ms} ms): nothing fires until a node holds the lease"
            ),
            scheduled_at: String::new(),
            cluster: cluster.to_string(),
        }
    }

    pub fn from_execution(kind: &'static str, e: &Execution, cluster: &str) -> Alert {
        Alert {
            kind,
            job_id: e.job_id.clone(),
            fire_id: e.fire_id.clone(),
            execution_id: e.id.clone(),
            node_id: e.node_id.clone(),
            attempt: e.attempt,
            state: e.state.as_str(),
            error: e.error.clone(),
            scheduled_at: crate::job::ms_to_datetime(e.scheduled_ms)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            cluster: cluster.to_string(),
        }
    }
}

#[derive(Clone)]
pub struct Alerts {
    tx: Option<mpsc::Sender<Alert>>,
    metrics: Arc<Metrics>,
}

impl Alerts {
    /// Sinks: the log always; `webhook` when given. The delivery task stops with `cancel`.
    pub fn start(
        webhook: Option<String>,
        timeout: Duration,
        cancel: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Alerts {
        let Some(url) = webhook else { return Alerts { tx: None, metrics } };
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(url, timeout, rx, cancel, Arc::clone(&metrics)));
        Alerts { tx: Some(tx), metrics }
    }

    /// Logs the alert and queues it for the webhook. Never waits.
    pub fn raise(&self, a: Alert) {
        tracing::warn!(
            alert = a.kind, job = %a.job_id, fire = %a.fire_id, execution = %a.execution_id,
            node = %a.node_id, attempt = a.attempt, state = a.state, error = %a.error, "alert"
        );
        self.metrics.alert("logged");
        if let Some(tx) = &self.tx {
            if let Err(e) = tx.try_send(a) {
                self.metrics.alert("failed");
                tracing::error!(error = %e, "alert webhook queue full or closed; alert not delivered to the webhook");
            }
        }
    }
}

async fn deliver(
    url: String,
    timeout: Duration,
    mut rx: mpsc::Receiver<Alert>,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let client = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
    // The URL's path and query are often the credential (Slack-style webhooks): logs name the
    // webhook by scheme://host:port only, and reqwest's errors are stripped of the URL.
    let shown = crate::redact::url(&url);
    loop {
        let a = tokio::select! {
            _ = cancel.cancelled() => return,
            a = rx.recv() => match a { Some(a) => a, None => return },
        };
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            match client.post(&url).json(&a).send().await {
                Ok(r) if r.status().is_success() => {
                    metrics.alert("sent");
                    break;
                }
                Ok(r) => tracing::warn!(status = %r.status(), attempt, webhook = %shown, job = %a.job_id,
                    "alert webhook refused"),
                Err(e) => tracing::warn!(error = %e.without_url(), attempt, webhook = %shown, job = %a.job_id,
                    "alert webhook unreachable"),
            }
            if attempt == ATTEMPTS {
                metrics.alert("failed");
                tracing::error!(job = %a.job_id, execution = %a.execution_id, webhook = %shown,
                    "alert webhook gave up after {ATTEMPTS} attempts");
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
}
