//! The Redis side of the history archive (`history_postgres`): the outbox of final execution
//! records (copies) that the scripts fill while archiving is on (prelude.lua `archive`), and the lease that
//! lets one node at a time copy it out and trim it. Only the Redis store has these: the history
//! store needs Redis (the config refuses it on the in-memory store).
use std::sync::LazyLock;

use redis::Script;

use super::{decode, script, RedisStore};
use crate::error::Result;
use crate::execution::Execution;

static HOLD: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/archive_hold.lua")));
static ACK: LazyLock<Script> = LazyLock::new(|| script(include_str!("../lua/archive_ack.lua")));

impl RedisStore {
    /// Takes or keeps the archive lease for `holder` (`<node>:<incarnation>`) for `ttl_ms`, and keeps
    /// archiving on for the retention. False when another node holds the lease.
    pub async fn archive_hold(&self, holder: &str, ttl_ms: u64) -> Result<bool> {
        let k = self.keys();
        let r: i64 = HOLD
            .key(k.archive_lease())
            .key(k.archive_on())
            .key(k.archive())
            .arg(holder)
            .arg(ttl_ms.max(1))
            .arg(self.retention_ms.max(1))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(r == 1)
    }

    /// The outbox's first `limit` entries (copies of final records, oldest first; one LRANGE). An
    /// entry that does not decode as an execution (planted by hand) is None: it must not stop the
    /// archive.
    pub async fn archive_take(&self, limit: usize) -> Result<Vec<Option<Execution>>> {
        let k = self.keys();
        // A clobbered outbox (WRONGTYPE) comes back as `Error::Corrupt`, as for any key.
        let entries: Vec<String> =
            redis::cmd("LRANGE").arg(k.archive()).arg(0).arg(limit.max(1) - 1).query_async(&mut self.conn()).await?;
        Ok(entries.iter().map(|json| decode::<Execution>(json, &k.archive()).ok()).collect())
    }

    /// Drops the outbox's first `n` entries, stored by the caller, if `holder` still holds the
    /// lease and the `n`-th entry is still the record `last` (its id; None: it did not decode). False
    /// when not (another node stores them again, or Redis lost writes since they were read).
    pub async fn archive_ack(&self, holder: &str, n: usize, last: Option<&str>) -> Result<bool> {
        let k = self.keys();
        let r: i64 = ACK
            .key(k.archive_lease())
            .key(k.archive())
            .arg(holder)
            .arg(n)
            .arg(last.unwrap_or(""))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(r == 1)
    }

    /// Hands the archive lease back, if `holder` holds it.
    pub async fn archive_release(&self, holder: &str) -> Result<()> {
        let k = self.keys();
        // The master lease's release serves as is: delete the key if it holds the caller's value.
        let _: i64 = super::LEASE_RELEASE.key(k.archive_lease()).arg(holder).invoke_async(&mut self.conn()).await?;
        Ok(())
    }

    /// How many entries wait in the outbox.
    pub async fn archive_backlog(&self) -> Result<u64> {
        Ok(redis::cmd("LLEN").arg(self.keys().archive()).query_async(&mut self.conn()).await?)
    }
}
