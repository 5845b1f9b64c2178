//! Concurrency limits on the worker's side (PROTOCOL §3.21): before a fire's handler begins, the
//! fire takes a slot of every limit covering its job (all or none, in the store), waiting while one
//! is full, at most until its start deadline; it keeps them (renewed under a lease) until its last
//! attempt ends, then gives them back. Which limits cover a job is read from the store at most
//! every `REFRESH_MS`. Uses: `store`, `job::limit`.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::job::limit::Limit;
use crate::job::JobSpec;
use crate::store::{now_ms, Slots, Store};

/// A slot's lease: a node that dies holding one frees it this long after its last renewal (every
/// third of it).
pub const SLOT_LEASE_MS: u64 = 15_000;
/// How stale the node's copy of the limits may be: a limit put or deleted applies to fires that
/// begin this long after, at most.
const REFRESH_MS: i64 = 2_000;
/// How often a fire waiting for a slot asks again (plus up to as much at random, so waiters on
/// several nodes do not ask in step).
const POLL_MS: u64 = 100;

pub struct Limits {
    store: Arc<dyn Store>,
    /// When the limits were last read, and what they were.
    known: Mutex<Option<(i64, Arc<Vec<Limit>>)>>,
}

/// How a wait for slots ended.
#[derive(Debug)]
pub enum Waited {
    /// Taken, after waiting this long (0: at its first ask).
    Taken { waited_ms: i64 },
    /// Past the deadline, `limit` still full (`max` 0: the store did not answer).
    TimedOut { limit: String, running: u32, max: u32 },
    /// Cancelled meanwhile (CancelExecution): why.
    Stopped(String),
    /// The node is shutting down.
    ShuttingDown,
}

/// The slots a running fire holds: renewed until dropped, then given back.
pub struct Held {
    renew: CancellationToken,
    release: Option<(Arc<dyn Store>, Vec<String>, String)>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renew.cancel();
        // Outside a runtime (a drop at exit) nothing can be sent: the lease frees the slots.
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        if let Some((store, names, holder)) = self.release.take() {
            rt.spawn(async move {
                if let Err(e) = store.release_slots(&names, &holder).await {
                    // Its lease frees it: at most SLOT_LEASE_MS late.
                    tracing::warn!(execution = %holder, error = %e, "cannot give a limit's slot back; its lease frees it");
                }
            });
        }
    }
}

impl Limits {
    pub fn new(store: Arc<dyn Store>) -> Limits {
        Limits { store, known: Mutex::new(None) }
    }

    /// The names of the limits covering `job`. When the store cannot say, the last copy read;
    /// with none, no limit (said in the log): a fire is not held up by a table it cannot read.
    pub async fn covering(&self, job: &JobSpec) -> Vec<String> {
        let limits = self.current().await;
        limits.iter().filter(|l| l.covers(job)).map(|l| l.name.clone()).collect()
    }

    async fn current(&self) -> Arc<Vec<Limit>> {
        let mut known = self.known.lock().await;
        let now = now_ms();
        if let Some((at, limits)) = known.as_ref() {
            if now - at < REFRESH_MS {
                return Arc::clone(limits);
            }
        }
        match self.store.list_limits().await {
            Ok(all) => {
                let limits = Arc::new(all.into_iter().map(|(l, _)| l).collect::<Vec<_>>());
                *known = Some((now, Arc::clone(&limits)));
                limits
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the concurrency limits; using the last ones read");
                known.as_ref().map(|(_, l)| Arc::clone(l)).unwrap_or_default()
            }
        }
    }

    /// Waits until `holder` (a fire id) has a slot of each of `names`, until `deadline_ms`, the
    /// wait ended early by `stop` (a cancel: its reason) or `shutdown`.
    pub async fn take(
        &self,
        names: &[String],
        holder: &str,
        deadline_ms: i64,
        stop: impl std::future::Future<Output = String>,
        shutdown: &CancellationToken,
    ) -> Waited {
        let began = now_ms();
        let (mut said, mut first) = (false, true);
        tokio::pin!(stop);
        loop {
            match self.store.take_slots(names, holder, SLOT_LEASE_MS).await {
                // Taken at the first ask: it did not wait (a round trip is no wait).
                Ok(Slots::Taken) if first => return Waited::Taken { waited_ms: 0 },
                Ok(Slots::Taken) => return Waited::Taken { waited_ms: now_ms() - began },
                Ok(Slots::Full { limit, running, max }) => {
                    if !said {
                        tracing::info!(execution = %holder, limit = %limit, running, max, "waiting for a slot of a concurrency limit");
                        said = true;
                    }
                    if now_ms() > deadline_ms {
                        return Waited::TimedOut { limit, running, max };
                    }
                }
                Err(e) => {
                    tracing::warn!(execution = %holder, error = %e, "cannot take a limit's slot; asking again");
                    if now_ms() > deadline_ms {
                        return Waited::TimedOut { limit: names.join(","), running: 0, max: 0 };
                    }
                }
            }
            first = false;
            let pause = Duration::from_millis(POLL_MS + rand::random_range(0..POLL_MS));
            tokio::select! {
                why = &mut stop => return Waited::Stopped(why),
                _ = shutdown.cancelled() => return Waited::ShuttingDown,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Keeps `holder`'s slots of `names` (renewed every third of their lease) until the returned
    /// `Held` drops, which gives them back. A slot whose lease ran out meanwhile (the node was
    /// paused past it, or Redis was away) is taken again while its limit has room; when it has
    /// none, it is said in the log: another fire has it now.
    pub fn hold(&self, names: Vec<String>, holder: &str) -> Held {
        let renew = CancellationToken::new();
        let (store, token, h, n) = (Arc::clone(&self.store), renew.clone(), holder.to_string(), names.clone());
        tokio::spawn(async move {
            // Every third of the lease; after a failed renewal, every second, so that a slot
            // whose lease ran out during a Redis outage is taken back as soon as Redis answers.
            let mut pause = Duration::from_millis(SLOT_LEASE_MS / 3);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = match store.renew_slots(&n, &h, SLOT_LEASE_MS).await {
                    Ok(lost) => {
                        if !lost.is_empty() {
                            tracing::warn!(execution = %h, limits = %lost.join(","),
                                "a limit's slot lapsed while the fire ran, and others hold them all now");
                        }
                        Duration::from_millis(SLOT_LEASE_MS / 3)
                    }
                    Err(e) => {
                        tracing::warn!(execution = %h, error = %e, "cannot renew a limit's slot; again in a second");
                        Duration::from_secs(1)
                    }
                };
            }
        });
        Held { renew, release: Some((Arc::clone(&self.store), names, holder.to_string())) }
    }
}
