//! The worker pool: runs executions on this node, at most `max_workers` at once, and records every
//! outcome. Owns the active/waiting counters (this node's load), per-execution timeouts, retries
//! with backoff (a retry is a new execution of the same fire), renewal of the no-overlap lock while a
//! forbid job runs, and alerts when retries are exhausted.
//! Uses: `store` (execution records, locks), `handlers`, `alert`. Never claims fires.
pub mod handlers;
pub mod http;
pub mod shell;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::alert::{Alert, Alerts};
use crate::execution::{truncate_utf8, ExecState, Execution, MAX_OUTPUT_BYTES};
use crate::job::{Concurrency, Job};
use crate::store::{now_ms, Load, Store};
use handlers::{FireContext, Registry};

/// TTL of a forbid job's lock while it runs; renewed every third of it, so a dead node's lock
/// frees itself within this time.
pub const LOCK_TTL_MS: u64 = 30_000;

pub struct Worker {
    store: Arc<dyn Store>,
    registry: Registry,
    node_id: String,
    cluster: String,
    alerts: Alerts,
    permits: Arc<Semaphore>,
    max: u32,
    active: Arc<AtomicU32>,
    waiting: Arc<AtomicU32>,
    accepting: AtomicBool,
    tracker: TaskTracker,
    /// Cancelled when the grace period of a shutdown has run out: running handlers are dropped.
    cancel: CancellationToken,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Registry,
        node_id: &str,
        cluster: &str,
        max: u32,
        alerts: Alerts,
    ) -> Worker {
        let max = max.max(1);
        Worker {
            store,
            registry,
            node_id: node_id.to_string(),
            cluster: cluster.to_string(),
            alerts,
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            active: Arc::new(AtomicU32::new(0)),
            waiting: Arc::new(AtomicU32::new(0)),
            accepting: AtomicBool::new(true),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    pub fn load(&self) -> Load {
        Load { active: self.active.load(Ordering::Relaxed), max: self.max, queue: self.waiting.load(Ordering::Relaxed) }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// Runs `exec` (a recorded, pending execution of `job`) when a worker is free. Returns false
    /// when the node is draining: the caller must not consider the fire taken.
    pub fn submit(self: &Arc<Self>, job: Job, exec: Execution) -> bool {
        if !self.accepting() {
            return false;
        }
        let me = Arc::clone(self);
        let span = tracing::info_span!("fire", job = %exec.job_id, fire = %exec.fire_id, node = %self.node_id);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.tracker.spawn(
            async move {
                let permit = Arc::clone(&me.permits).acquire_owned().await;
                me.waiting.fetch_sub(1, Ordering::Relaxed);
                let Ok(_permit) = permit else { return };
                me.active.fetch_add(1, Ordering::Relaxed);
                me.run_fire(job, exec).await;
                me.active.fetch_sub(1, Ordering::Relaxed);
            }
            .instrument(span),
        );
        true
    }

    /// Stops taking work, lets running executions finish for `grace`, then drops what is left and
    /// records it as lost.
    pub async fn drain(&self, grace: Duration) {
        self.accepting.store(false, Ordering::Relaxed);
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!(
                running = self.active.load(Ordering::Relaxed),
                "grace period over; cancelling running executions"
            );
            self.cancel.cancel();
            // Cancelled executions record themselves as lost; give them a moment to reach the store.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
        }
    }

    /// All attempts of one fire: run, record, retry with backoff, alert when out of retries.
    async fn run_fire(&self, job: Job, mut exec: Execution) {
        let forbid = job.spec.concurrency == Concurrency::Forbid;
        loop {
            let state = self.run_attempt(&job, &mut exec, forbid).await;
            let retry = matches!(state, ExecState::Failed | ExecState::TimedOut) && exec.attempt <= job.spec.retries;
            if self.record_finish(&exec, forbid && !retry).await.is_err() {
                return;
            }
            if state == ExecState::Lost {
                self.alerts.raise(Alert::from_execution("execution_lost", &exec, &self.cluster));
                return;
            }
            if !retry {
                if matches!(state, ExecState::Failed | ExecState::TimedOut) {
                    self.alerts.raise(Alert::from_execution("execution_failed", &exec, &self.cluster));
                }
                return;
            }
            let delay = Duration::from_millis(job.retry_delay_ms(exec.attempt));
            tracing::info!(execution = %exec.id, attempt = exec.attempt, delay_ms = delay.as_millis() as u64, "retrying");
            // The lock (forbid jobs) stays with this fire across the wait.
            let renew = self.keep_lock(&job, &exec.fire_id, forbid);
            let cancelled = tokio::select! {
                _ = self.cancel.cancelled() => true,
                _ = tokio::time::sleep(delay) => false,
            };
            renew.cancel();
            let mut next = Execution::pending(
                &exec.job_id,
                exec.fire_id.clone(),
                exec.scheduled_ms,
                &self.node_id,
                exec.attempt + 1,
            );
            next.manual = exec.manual;
            next.epoch = exec.epoch;
            if cancelled {
                next.state = ExecState::Lost;
                next.end_ms = Some(now_ms());
                next.set_error("node shut down before this retry could run");
                let _ = self.record_finish(&next, forbid).await;
                self.alerts.raise(Alert::from_execution("execution_lost", &next, &self.cluster));
                return;
            }
            if let Err(e) = self.store.create_execution(&next).await {
                tracing::error!(error = %e, "cannot record retry; the fire ends here");
                return;
            }
            exec = next;
        }
    }

    /// One attempt: mark running, run the handler under the job's timeout, fill in the outcome.
    async fn run_attempt(&self, job: &Job, exec: &mut Execution, forbid: bool) -> ExecState {
        let start = now_ms();
        exec.state = ExecState::Running;
        exec.start_ms = Some(start);
        exec.node_id = self.node_id.clone();
        tracing::debug!(execution = %exec.id, attempt = exec.attempt, delay_ms = start - exec.scheduled_ms, "started");
        if let Err(e) = self.store.update_execution(exec).await {
            // The run goes ahead: the final record overwrites this one.
            tracing::warn!(execution = %exec.id, error = %e, "cannot record start");
        }
        let ctx = FireContext {
            job_id: exec.job_id.clone(),
            fire_id: exec.fire_id.clone(),
            execution_id: exec.id.clone(),
            scheduled_ms: exec.scheduled_ms,
            attempt: exec.attempt,
            node_id: self.node_id.clone(),
            epoch: exec.epoch,
            manual: exec.manual,
        };
        let renew = self.keep_lock(job, &exec.fire_id, forbid);
        let outcome = match self.registry.get(&job.spec.handler) {
            None => Err((
                ExecState::Failed,
                format!("handler '{}' is not registered on node {}", job.spec.handler, self.node_id),
                String::new(),
            )),
            Some(h) => {
                let run = h.run(&ctx, &job.spec.args);
                let timeout = (job.spec.timeout_ms > 0).then(|| Duration::from_millis(job.spec.timeout_ms));
                tokio::select! {
                    _ = self.cancel.cancelled() => Err((ExecState::Lost, "node shut down before the handler finished".to_string(), String::new())),
                    r = with_timeout(timeout, run) => match r {
                        None => Err((ExecState::TimedOut, format!("timed out after {} ms", job.spec.timeout_ms), String::new())),
                        Some(Ok(out)) => Ok(out),
                        Some(Err(f)) => Err((ExecState::Failed, f.message, f.output)),
                    },
                }
            }
        };
        renew.cancel();
        exec.end_ms = Some(now_ms());
        match outcome {
            Ok(out) => {
                exec.state = ExecState::Succeeded;
                exec.output = truncate_utf8(out, MAX_OUTPUT_BYTES);
            }
            Err((state, err, out)) => {
                exec.state = state;
                exec.set_error(err);
                exec.output = truncate_utf8(out, MAX_OUTPUT_BYTES);
            }
        }
        tracing::info!(execution = %exec.id, attempt = exec.attempt, state = exec.state.as_str(),
            duration_ms = exec.end_ms.unwrap_or(start) - start, "finished");
        exec.state
    }

    /// Renews a forbid job's lock in the background until the returned token is cancelled.
    fn keep_lock(&self, job: &Job, fire_id: &str, forbid: bool) -> CancellationToken {
        let stop = CancellationToken::new();
        if !forbid {
            return stop;
        }
        let (store, job_id, owner, token) =
            (Arc::clone(&self.store), job.spec.id.clone(), fire_id.to_string(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(LOCK_TTL_MS / 3));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => match store.renew_lock(&job_id, &owner, LOCK_TTL_MS).await {
                        Ok(true) => {}
                        Ok(false) => { tracing::warn!(job = %job_id, fire = %owner, "no-overlap lock lost while running"); return; }
                        Err(e) => tracing::warn!(job = %job_id, error = %e, "cannot renew no-overlap lock"),
                    },
                }
            }
        });
        stop
    }

    /// Writes the outcome, retrying a few times: an outcome must not be lost to a short store blip.
    async fn record_finish(&self, exec: &Execution, release_lock: bool) -> Result<(), ()> {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=5 {
            match self.store.finish_execution(exec, release_lock).await {
                Ok(()) => return Ok(()),
                Err(e) => tracing::warn!(execution = %exec.id, attempt, error = %e, "cannot record outcome; retrying"),
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        tracing::error!(execution = %exec.id, state = exec.state.as_str(), "outcome not recorded: store unreachable");
        Err(())
    }
}

async fn with_timeout<F: std::future::Future>(t: Option<Duration>, f: F) -> Option<F::Output> {
    match t {
        Some(t) => tokio::time::timeout(t, f).await.ok(),
        None => Some(f.await),
    }
}
