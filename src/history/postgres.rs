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

/// How long one statement may take: a PostgreSQL that stops answering (a black-holed network)
/// must not hold the archive and every read forever.
const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `f`, or None when it takes longer than `QUERY_TIMEOUT`.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(QUERY_TIMEOUT, f).await.ok()
}

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
    async fn conn(&self) -> Result<Conn<'_>> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_some_and(|c| c.is_closed()) {
            *slot = None;
        }
        let client = match slot.take() {
            Some(c) => c,
            None => {
                let (client, conn) = self.config.connect(NoTls).await.map_err(|e| pg_error("connecting", e))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "history store: connection closed");
                    }
                });
                migrate(&client).await?;
                client
            }
        };
        *slot = Some(client);
        Ok(Conn(slot))
    }

    /// Stores a batch of outbox entries (in write order): one statement for the batch; a record
    /// already stored is replaced (the archiver may store a batch twice, after a crash between this
    /// and its acknowledgement in Redis). Of an id written twice in the batch (a final record
    /// overwritten in a final state), the last copy. When PostgreSQL refuses the batch for its
    /// data (SQLSTATE classes 21, 22, 23), the rows are stored one by one and those it refuses are
    /// returned, so that one record can never stop the archive.
    pub async fn store(&self, records: &[Execution]) -> Result<Stored> {
        let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (i, e) in records.iter().enumerate() {
            last.insert(e.id.as_str(), i);
        }
        let rows: Vec<std::borrow::Cow<'_, Execution>> = records
            .iter()
            .enumerate()
            .filter(|(i, e)| last.get(e.id.as_str()) == Some(i))
            .map(|(_, e)| without_nul(e))
            .collect();
        let mut stored = Stored::default();
        match self.insert(&rows).await? {
            None => stored.written = rows.len(),
            Some(_) => {
                for row in &rows {
                    match self.insert(std::slice::from_ref(row)).await? {
                        None => stored.written += 1,
                        Some(why) => stored.refused.push((row.id.clone(), why)),
                    }
                }
            }
        }
        Ok(stored)
    }

    /// One INSERT of `rows`. Ok(Some(why)) when PostgreSQL refused it for its data; Err when it could
    /// not be asked.
    async fn insert(&self, rows: &[std::borrow::Cow<'_, Execution>]) -> Result<Option<String>> {
        if rows.is_empty() {
            return Ok(None);
        }
        // One array per column, for unnest: one statement whatever the batch's size.
        let ids: Vec<&str> = rows.iter().map(|e| e.id.as_str()).collect();
        let jobs: Vec<&str> = rows.iter().map(|e| e.job_id.as_str()).collect();
        let fires: Vec<&str> = rows.iter().map(|e| e.fire_id.as_str()).collect();
        let nodes: Vec<&str> = rows.iter().map(|e| e.node_id.as_str()).collect();
        let states: Vec<&str> = rows.iter().map(|e| e.state.as_str()).collect();
        let scheduled: Vec<i64> = rows.iter().map(|e| e.scheduled_ms).collect();
        let json = rows
            .iter()
            .map(|e| serde_json::to_value(e.as_ref()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Corrupt { key: "history record".into(), reason: e.to_string() })?;
        let cluster = self.cluster.as_str();
        let mut conn = self.conn().await?;
        let r = bounded(conn.client().execute(
            "INSERT INTO rota_executions (cluster, id, job_id, fire_id, node_id, state, scheduled_ms, record) \
                 SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::int8[], $8::jsonb[]) \
                 ON CONFLICT (cluster, id) DO UPDATE SET job_id = EXCLUDED.job_id, fire_id = EXCLUDED.fire_id, \
                 node_id = EXCLUDED.node_id, state = EXCLUDED.state, scheduled_ms = EXCLUDED.scheduled_ms, \
                 record = EXCLUDED.record, archived_at = now()",
            &[&cluster, &ids, &jobs, &fires, &nodes, &states, &scheduled, &json],
        ))
        .await;
        match r {
            Some(Err(e)) if e.code().is_some_and(|c| ["21", "22", "23"].iter().any(|k| c.code().starts_with(k))) => {
                Ok(Some(e.to_string()))
            }
            r => conn.settle("storing executions", r).map(|_| None),
        }
    }

    /// One record by id.
    pub async fn get(&self, id: &str) -> Result<Option<Execution>> {
        let cluster = self.cluster.as_str();
        let mut conn = self.conn().await?;
        let sql = "SELECT record FROM rota_executions WHERE cluster = $1 AND id = $2";
        let r = bounded(conn.client().query_opt(sql, &[&cluster, &id])).await;
        let row = conn.settle("reading an execution", r)?;
        row.map(|r| record(r.get(0))).transpose()
    }

    /// Newest first, at most `f.limit`, with ids below `f.before` (and at or above `f.not_before`).
    pub async fn list(&self, f: &ExecFilter) -> Result<Vec<Execution>> {
        let cluster = self.cluster.as_str();
        let state = f.state.map(|s| s.as_str());
        let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
        let mut conn = self.conn().await?;
        let r = bounded(conn.client().query(
            "SELECT record FROM rota_executions WHERE cluster = $1 \
                 AND ($2::text IS NULL OR job_id = $2) AND ($3::text IS NULL OR state = $3) \
                 AND ($4::text IS NULL OR fire_id = $4 OR left(fire_id, length($4) + 1) = $4 || '/') \
                 AND ($5::text IS NULL OR node_id = $5) \
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
        ))
        .await;
        let rows = conn.settle("listing executions", r)?;
        rows.into_iter().map(|r| record(r.get(0))).collect()
    }

    /// Deletes this cluster's records with ids below `id_floor` (made before the retention's
    /// start), at most `limit`; how many it deleted.
    pub async fn prune(&self, id_floor: &str, limit: i64) -> Result<u64> {
        let cluster = self.cluster.as_str();
        let mut conn = self.conn().await?;
        let r = bounded(conn.client().execute(
            "DELETE FROM rota_executions WHERE (cluster, id) IN \
                 (SELECT cluster, id FROM rota_executions WHERE cluster = $1 AND id < $2 LIMIT $3)",
            &[&cluster, &id_floor, &limit],
        ))
        .await;
        conn.settle("pruning", r)
    }
}

/// The connection, held for one statement (the guard always holds a client).
struct Conn<'a>(tokio::sync::MutexGuard<'a, Option<Client>>);

impl Conn<'_> {
    fn client(&self) -> &Client {
        // `Postgres::conn` only hands out a guard holding a client.
        self.0.as_ref().expect("a connection")
    }

    /// A statement's result (None: it did not answer within `QUERY_TIMEOUT`). A timeout, or a
    /// failure that is not the server refusing the statement, drops the connection, so the next
    /// call connects again.
    fn settle<T>(&mut self, what: &str, r: Option<std::result::Result<T, tokio_postgres::Error>>) -> Result<T> {
        match r {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => {
                if e.is_closed() || e.as_db_error().is_none() {
                    *self.0 = None;
                }
                Err(pg_error(what, e))
            }
            None => {
                *self.0 = None;
                Err(Error::unavailable(format!(
                    "history store (PostgreSQL): no answer within {} s",
                    QUERY_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

/// What `store` did with a batch.
#[derive(Debug, Default)]
pub struct Stored {
    pub written: usize,
    /// Records PostgreSQL refused (id, why): the caller logs them and moves on.
    pub refused: Vec<(String, String)>,
}

/// PostgreSQL's text (and jsonb) cannot hold NUL, which a program's output may: such characters
/// become U+FFFD in the archived copy (Redis keeps the original).
fn without_nul(e: &Execution) -> std::borrow::Cow<'_, Execution> {
    if !(e.output.contains('\0') || e.stderr.contains('\0') || e.error.contains('\0')) {
        return std::borrow::Cow::Borrowed(e);
    }
    let mut e = e.clone();
    for s in [&mut e.output, &mut e.stderr, &mut e.error] {
        *s = s.replace('\0', "\u{fffd}");
    }
    std::borrow::Cow::Owned(e)
}

fn record(v: serde_json::Value) -> Result<Execution> {
    serde_json::from_value(v).map_err(|e| Error::Corrupt { key: "history record".into(), reason: e.to_string() })
}

/// Applies the migrations this database lacks, each in its own transaction, all under one advisory
/// lock (nodes starting together wait for each other instead of racing).
async fn migrate(client: &Client) -> Result<()> {
    let m = |e| pg_error("migrating the schema", e);
    // The lock first: two nodes creating the bookkeeping table at once can collide.
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(m)?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS rota_schema_migrations \
                 (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .map_err(m)?;
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
