//! History: where execution records are kept and read. Redis holds the hot part (open runs, and
//! each job's newest executions within the retention); with `history_postgres` set, PostgreSQL
//! holds every final record for `history_retention_days`, copied there by the archiver. Owns the
//! archiver loop (`archive`), and the reads the API makes (`History::list`, `History::get`), which
//! merge the two so a client sees one history.
//!
//! The archive never loses a record: a script that writes a final record puts a copy of it on an
//! outbox in the same atomic step (store/lua/prelude.lua `archive`), and the archiver trims the
//! outbox only after PostgreSQL committed the batch. PostgreSQL down means the outbox grows (a copy
//! per final record, about 400 bytes for a no-op run) and the archiver catches up when it is back;
//! only an outbox no node has archived from for a whole retention period expires.
//! Uses: `store` (the Redis store's outbox and lease), `execution`, `metrics`, `error`.
pub mod postgres;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::execution::Execution;
use crate::metrics::Metrics;
use crate::store::redis::RedisStore;
use crate::store::shards::merge_pages;
use crate::store::{ExecFilter, Shards};

pub use self::postgres::Postgres;

/// Records per archiver batch (one LRANGE, one INSERT).
const BATCH: usize = 500;
/// How long the archive lease lasts; renewed every turn.
const LEASE_TTL_MS: u64 = 10_000;
/// Pause between turns when the outbox is empty, when another node archives, or after a failure.
const IDLE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often records past `history_retention_days` are deleted (and at most how many per turn).
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const PRUNE_MAX: i64 = 10_000;
/// Failed turns in a row after which the archiver hands the lease back (it keeps trying, and
/// takes it again when nobody else did).
const GIVE_UP_AFTER: u32 = 5;

/// What the API reads executions through.
pub struct History {
    shards: Shards,
    archive: Option<Arc<Postgres>>,
}

impl History {
    pub fn new(shards: Shards, archive: Option<Arc<Postgres>>) -> History {
        History { shards, archive }
    }

    /// Redis first; then the history store, for a record Redis no longer keeps.
    pub async fn get(&self, id: &str) -> Result<Option<Execution>> {
        if let Some(e) = self.shards.get_execution(id).await? {
            return Ok(Some(e));
        }
        match &self.archive {
            Some(pg) => pg.get(id).await,
            None => Ok(None),
        }
    }

    /// Newest first, with the token for the next page: Redis's page and the history store's,
    /// merged (see `merge`). Without a history store, Redis's page.
    pub async fn list(&self, f: &ExecFilter) -> Result<(Vec<Execution>, Option<String>)> {
        let hot = self.shards.list_executions(f).await?;
        let Some(pg) = &self.archive else { return Ok(hot) };
        Ok(merge(hot, pg.list(f).await?, f.limit))
    }
}

/// One page of the union of Redis's listing (its page and token) and the history store's (at most
/// `limit`; when full it is complete only down to its last record), as `merge_pages` makes it; a
/// record in both is taken from Redis.
fn merge(
    hot: (Vec<Execution>, Option<String>),
    cold: Vec<Execution>,
    limit: usize,
) -> (Vec<Execution>, Option<String>) {
    let cold_floor = if cold.len() >= limit { cold.last().map(|e| e.id.clone()) } else { None };
    merge_pages(vec![hot, (cold, cold_floor)], limit)
}

/// The archiver's parts.
pub struct Archiver {
    /// Each shard's store: each has its own outbox and archive lease.
    pub stores: Vec<Arc<RedisStore>>,
    /// Its own connection (the API's reads have another).
    pub pg: Postgres,
    /// `<node>:<random>`: this process's name on the archive lease.
    pub holder: String,
    pub retention_days: u32,
    pub metrics: Arc<Metrics>,
}

/// The archiver: while this node holds the archive lease, copies the outbox's records to
/// PostgreSQL in batches and trims what was stored; deletes records past the history retention.
/// Runs on every node with `history_postgres` set; the lease keeps it to one at a time.
pub async fn archive(a: Archiver, cancel: CancellationToken) {
    let Archiver { stores, pg, holder, retention_days, metrics } = a;
    let mut backoff = IDLE;
    let mut failures = 0u32;
    let mut last_prune: Option<tokio::time::Instant> = None;
    let mut warned_at: Option<tokio::time::Instant> = None;
    loop {
        // One turn per shard; the round is as busy as its busiest turn, and fails if one failed.
        let mut round: Result<Turn> = Ok(Turn::NotHolder);
        for store in &stores {
            match archive_turn(store, &pg, &holder, &metrics).await {
                Err(e) => round = Err(e),
                Ok(t) => {
                    if let Ok(r) = &round {
                        round = Ok(t.max(*r));
                    }
                }
            }
        }
        match &round {
            Ok(Turn::More) | Err(_) => {
                report_backlog(&stores, &metrics).await;
            }
            Ok(_) => {
                metrics.history_backlog.set(0);
            }
        }
        let pause = match round {
            Ok(Turn::More) => {
                (backoff, failures) = (IDLE, 0);
                Duration::ZERO
            }
            Ok(Turn::Idle) => {
                (backoff, failures) = (IDLE, 0);
                if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                    last_prune = Some(tokio::time::Instant::now());
                    prune(&pg, retention_days).await;
                }
                IDLE
            }
            Ok(Turn::NotHolder) => IDLE,
            Err(e) => {
                failures += 1;
                if failures == GIVE_UP_AFTER {
                    // Maybe only this node cannot reach PostgreSQL: let another take the archive.
                    for store in &stores {
                        let _ = store.archive_release(&holder).await;
                    }
                }
                // One warning a minute: PostgreSQL down for an hour must not fill the log.
                if warned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    warned_at = Some(tokio::time::Instant::now());
                    let backlog = report_backlog(&stores, &metrics).await;
                    tracing::warn!(error = %e, backlog, "history: cannot archive; the outbox keeps the records meanwhile");
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                backoff
            }
        };
        if pause > Duration::ZERO {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        } else if cancel.is_cancelled() {
            return;
        }
    }
}

/// Ordered by how busy: a round of turns over the shards is its busiest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Turn {
    /// Another node holds the archive lease.
    NotHolder,
    /// The outbox is empty (or was short).
    Idle,
    /// A full batch was stored: go on at once.
    More,
}

async fn archive_turn(store: &RedisStore, pg: &Postgres, holder: &str, metrics: &Metrics) -> Result<Turn> {
    if !store.archive_hold(holder, LEASE_TTL_MS).await? {
        return Ok(Turn::NotHolder);
    }
    let batch = store.archive_take(BATCH).await?;
    if batch.is_empty() {
        return Ok(Turn::Idle);
    }
    let n = batch.len();
    // The last entry read, so the trim can tell the outbox still starts with what was read.
    let last = batch.last().cloned().flatten().map(|e| e.id);
    let records: Vec<Execution> = batch.into_iter().flatten().collect();
    let undecodable = n - records.len();
    let stored = pg.store(&records).await?;
    fail::fail_point!("history_after_store", |_| crate::failpoints::crash("history_after_store"));
    if !store.archive_ack(holder, n, last.as_deref()).await? {
        // The lease passed on meanwhile (the new holder stores this batch again: the same rows), or
        // the outbox no longer starts with what was read (Redis lost writes): nothing trimmed.
        return Ok(Turn::NotHolder);
    }
    for (id, why) in &stored.refused {
        tracing::error!(execution = %id, why = %why, "history: PostgreSQL refused this record; it is not archived");
    }
    metrics.history_archived.inc_by(stored.written as u64);
    let more = n == BATCH;
    if undecodable > 0 {
        tracing::warn!(undecodable, "history: outbox entries that are not execution records, dropped");
    }
    tracing::debug!(stored = stored.written, "history: archived");
    Ok(if more { Turn::More } else { Turn::Idle })
}

/// Reads the outboxes' length (all shards) into `rota_history_backlog` (and returns it; None when
/// Redis did not answer).
async fn report_backlog(stores: &[Arc<RedisStore>], metrics: &Metrics) -> Option<u64> {
    let mut b = 0;
    for store in stores {
        b += store.archive_backlog().await.ok()?;
    }
    metrics.history_backlog.set(i64::try_from(b).unwrap_or(i64::MAX));
    Some(b)
}

/// Deletes records past the history retention, `PRUNE_MAX` at a time until none is left (a pause
/// between rounds keeps PostgreSQL free for the archive and the reads).
async fn prune(pg: &Postgres, retention_days: u32) {
    let floor = crate::execution::id_floor(crate::store::now_ms() - i64::from(retention_days) * 86_400_000);
    let mut deleted = 0u64;
    loop {
        match pg.prune(&floor, PRUNE_MAX).await {
            Ok(n) => {
                deleted += n;
                if n < PRUNE_MAX as u64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "history: cannot delete records past retention");
                break;
            }
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, "history: records past retention deleted");
    }
}

#[cfg(test)]
mod tests {
    use super::merge;
    use crate::execution::Execution;

    fn e(id: &str) -> Execution {
        let mut e = Execution::pending("j", format!("j@{id}"), 0, "n", 1);
        e.id = id.to_string();
        e
    }
    fn ids(v: &[Execution]) -> Vec<&str> {
        v.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn a_merged_page_is_newest_first_without_doubles() {
        let (page, next) = merge((vec![e("9"), e("7")], None), vec![e("8"), e("7"), e("3")], 10);
        assert_eq!(ids(&page), ["9", "8", "7", "3"]);
        assert_eq!(next, None);
    }

    #[test]
    fn a_full_page_continues_below_its_last() {
        let (page, next) = merge((vec![e("9"), e("7")], Some("7".into())), vec![e("8"), e("6")], 2);
        assert_eq!(ids(&page), ["9", "8"]);
        assert_eq!(next.as_deref(), Some("8"));
    }

    /// Redis stopped its scan early (at 7): the history store's older records wait for the next
    /// page, which starts below 7, or Redis's records between would be skipped.
    #[test]
    fn a_listing_that_stopped_early_bounds_the_page() {
        let (page, next) = merge((vec![e("9")], Some("7".into())), vec![e("8"), e("5"), e("4")], 10);
        assert_eq!(ids(&page), ["9", "8"]);
        assert_eq!(next.as_deref(), Some("7"));
    }
}
