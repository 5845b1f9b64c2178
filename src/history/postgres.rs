//! The history store in PostgreSQL: months of execution records, off Redis. Owns the schema (the
//! migrations in `migrations/postgres/`, applied at connect under an advisory lock so that nodes
//! starting together apply each once), the batched upsert the archiver writes with, and the queries
//! `ListExecutions` and `GetExecution` use past Redis's hot window.
//! Uses: `tokio-postgres`, `execution`, `store::ExecFilter`, `error`. Never puts the URL (it may
//! carry a password) in an error or a log line.
use std::str::FromStr;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use crate::error::{Error, Result};
use crate::execution::Execution;
use crate::store::ExecFilter;

/// The schema, in order; `version` is the number the file name starts with.
const MIGRATIONS: [(i32, &str); 1] = [(1, include_str!("../../migrations/postgres/0001_executions.sql"))];

/// Any fixed number: the advisory lock that serializes migrations across nodes.
const MIGRATION_LOCK: i64 = 0x726f_7461_6869_7374; // "rotahist"

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Checks a `history_postgres` URL without connecting; the error says what is wrong, never the URL.
pub fn check_url(url: &str) -> std::result::Result<tokio_postgres::Config, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must start with postgres:// or postgresql://".into());
    }
    let cfg = tokio_postgres::Config::from_str(url).map_err(|_| "is not a PostgreSQL URL".to_string())?;
    if cfg.get_dbname().is_none() {
        return Err("names no database (postgres://user:pass@host:port/DATABASE)".into());
    }
    if cfg.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err("sslmode=require: TLS to PostgreSQL is not built yet".into());
    }
    Ok(cfg)
}

pub struct Postgres {
    config: tokio_postgres::Config,
    /// `<redis_prefix>:<cluster>`: the rows of this rota cluster.
    cluster: String,
    /// The connection, made (and the schema migrated) on first use and again after one fails.
    client: Mutex<Option<Client>>,
}

fn pg_error(what: &str, e: tokio_postgres::Error) -> Error {
    // tokio-postgres's messages name the server's error, never the connection string.
    Error::unavailable(format!("history store (PostgreSQL): {what}: {e}"))
}

impl Postgres {
    /// Does not connect: the first call does.
    pub fn new(url: &str, cluster: String) -> Result<Postgres> {
        let mut config = check_url(url).map_err(|reason| Error::Config { key: "history_postgres".into(), reason })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        Ok(Postgres { config, cluster, client: Mutex::new(None) })
    }

    /// The connection, made and migrated when there is none (or the last one broke).
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_some_and(|c| c.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            let (client, conn) = self.config.connect(NoTls).await.map_err(|e| pg_error("connecting", e))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "history store: connection closed");
                }
            });
            migrate(&client).await?;
            *slot = Some(client);
        }
        Ok(slot)
    }

    /// A query's result; a failure that is not the server refusing the statement drops the
    /// connection, so the next call connects again.
    fn settle<T>(slot: &mut Option<Client>, what: &str, r: std::result::Result<T, tokio_postgres::Error>) -> Result<T> {
        r.map_err(|e| {
            if e.is_closed() || e.as_db_error().is_none() {
                *slot = None;
            }
            pg_error(what, e)
        })
    }

    /// Checks PostgreSQL answers (and the schema is there).
    pub async fn ping(&self) -> Result<()> {
        let mut slot = self.client().await?;
        let r = match slot.as_ref() {
            Some(c) => c.simple_query("SELECT 1").await.map(|_| ()),
            None => return Err(Error::unavailable("history store: no connection")),
        };
        Self::settle(&mut slot, "ping", r)
    }

    /// Writes `records` in one statement; a record already stored is replaced (the archiver may
    /// store a batch twice: after a crash between this and its acknowledgement in Redis).
    pub async fn store(&self, records: &[Execution]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // One array per column, for unnest: one statement whatever the batch's size.
        let ids: Vec<&str> = records.iter().map(|e| e.id.as_str()).collect();
        let jobs: Vec<&str> = records.iter().map(|e| e.job_id.as_str()).collect();
        let fires: Vec<&str> = records.iter().map(|e| e.fire_id.as_str()).collect();
        let nodes: Vec<&str> = records.iter().map(|e| e.node_id.as_str()).collect();
        let states: Vec<&str> = records.iter().map(|e| e.state.as_str()).collect();
        let scheduled: Vec<i64> = records.iter().map(|e| e.scheduled_ms).collect();
        let json = records
            .iter()
            .map(serde_json::to_value)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Corrupt { key: "history record".into(), reason: e.to_string() })?;
        let cluster = self.cluster.as_str();
        let mut slot = self.client().await?;
        let Some(c) = slot.as_ref() else { return Err(Error::unavailable("history store: no connection")) };
        let r = c
            .execute(
                "INSERT INTO rota_executions (cluster, id, job_id, fire_id, node_id, state, scheduled_ms, record) \
                 SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::int8[], $8::jsonb[]) \
                 ON CONFLICT (cluster, id) DO UPDATE SET job_id = EXCLUDED.job_id, fire_id = EXCLUDED.fire_id, \
                 node_id = EXCLUDED.node_id, state = EXCLUDED.state, scheduled_ms = EXCLUDED.scheduled_ms, \
                 record = EXCLUDED.record, archived_at = now()",
                &[&cluster, &ids, &jobs, &fires, &nodes, &states, &scheduled, &json],
            )
            .await
            .map(|_| ());
        Self::settle(&mut slot, "storing executions", r)
    }

    /// One record by id.
    pub async fn get(&self, id: &str) -> Result<Option<Execution>> {
        let cluster = self.cluster.as_str();
        let mut slot = self.client().await?;
        let Some(c) = slot.as_ref() else { return Err(Error::unavailable("history store: no connection")) };
        let r =
            c.query_opt("SELECT record FROM rota_executions WHERE cluster = $1 AND id = $2", &[&cluster, &id]).await;
        let row = Self::settle(&mut slot, "reading an execution", r)?;
        row.map(|r| record(r.get(0))).transpose()
    }

    /// Newest first, at most `f.limit`, with ids below `f.before` (and at or above `f.not_before`).
    pub async fn list(&self, f: &ExecFilter) -> Result<Vec<Execution>> {
        let cluster = self.cluster.as_str();
        let state = f.state.map(|s| s.as_str());
        let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
        let mut slot = self.client().await?;
        let Some(c) = slot.as_ref() else { return Err(Error::unavailable("history store: no connection")) };
        let r = c
            .query(
                "SELECT record FROM rota_executions WHERE cluster = $1 \
                 AND ($2::text IS NULL OR job_id = $2) AND ($3::text IS NULL OR state = $3) \
                 AND ($4::text IS NULL OR fire_id = $4) AND ($5::text IS NULL OR node_id = $5) \
                 AND ($6::int8 IS NULL OR scheduled_ms >= $6) AND ($7::int8 IS NULL OR scheduled_ms < $7) \
                 AND ($8::text IS NULL OR id < $8) AND ($9::text IS NULL OR id >= $9) \
                 ORDER BY id DESC LIMIT $10",
                &[
                    &cluster,
                    &f.job_id,
                    &state,
                    &f.fire_id,
                    &f.node_id,
                    &f.scheduled_from_ms,
                    &f.scheduled_to_ms,
                    &f.before,
                    &f.not_before,
                    &limit,
                ],
            )
            .await;
        let rows = Self::settle(&mut slot, "listing executions", r)?;
        rows.into_iter().map(|r| record(r.get(0))).collect()
    }

    /// Deletes this cluster's records with ids below `id_floor` (made before the retention's
    /// start), at most `limit`; how many it deleted.
    pub async fn prune(&self, id_floor: &str, limit: i64) -> Result<u64> {
        let cluster = self.cluster.as_str();
        let mut slot = self.client().await?;
        let Some(c) = slot.as_ref() else { return Err(Error::unavailable("history store: no connection")) };
        let r = c
            .execute(
                "DELETE FROM rota_executions WHERE (cluster, id) IN \
                 (SELECT cluster, id FROM rota_executions WHERE cluster = $1 AND id < $2 LIMIT $3)",
                &[&cluster, &id_floor, &limit],
            )
            .await;
        Self::settle(&mut slot, "pruning", r)
    }
}

fn record(v: serde_json::Value) -> Result<Execution> {
    serde_json::from_value(v).map_err(|e| Error::Corrupt { key: "history record".into(), reason: e.to_string() })
}

/// Applies the migrations this database lacks, each in its own transaction, all under one advisory
/// lock (nodes starting together wait for each other instead of racing).
async fn migrate(client: &Client) -> Result<()> {
    let m = |e| pg_error("migrating the schema", e);
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS rota_schema_migrations \
             (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(m)?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(m)?;
    let result = async {
        for (version, sql) in MIGRATIONS {
            let done = client
                .query_opt("SELECT 1 FROM rota_schema_migrations WHERE version = $1", &[&version])
                .await
                .map_err(m)?
                .is_some();
            if !done {
                client
                    .batch_execute(&format!(
                        "BEGIN; {sql}; INSERT INTO rota_schema_migrations (version) VALUES ({version}); COMMIT;"
                    ))
                    .await
                    .map_err(m)?;
                tracing::info!(version, "history store: schema migrated");
            }
        }
        Ok(())
    }
    .await;
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
    result
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn urls_are_checked_without_echoing_them() {
        assert!(check_url("postgres://rota:pw@127.0.0.1:5432/rota").is_ok());
        assert!(check_url("postgresql://127.0.0.1/rota?application_name=rota").is_ok());
        for (url, want) in [
            ("mysql://u:s3cret@h/db", "must start with postgres://"),
            ("postgres://u:s3cret@h:notaport/db", "is not a PostgreSQL URL"),
            ("postgres://u:s3cret@h:5432", "names no database"),
            ("postgres://u:s3cret@h/db?sslmode=require", "TLS to PostgreSQL is not built yet"),
        ] {
            let e = check_url(url).expect_err(url);
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("s3cret"), "{url}: {e}");
        }
    }
}
