//! Where Redis is and how to talk to it: one server (`redis://`, `rediss://`, `unix://`), a Redis
//! Cluster (`redis+cluster://h1:p1,h2:p2,...`, `rediss+cluster://` for TLS) or a primary found
//! through Sentinel (`redis+sentinel://s1:p1,s2:p2,.../mastername[/db]`). Owns parsing those URLs
//! (`Topology::parse`, also what `--check` runs) and the connection the store's methods use
//! (`Conn`, a `redis::aio::ConnectionLike`, so the methods are the same for every form).
//!
//! Redis Cluster: every key of a cluster carries one hash tag (`Keys`), so all of them, and every
//! script's keys, are in one slot. The cluster connection follows MOVED/ASK and refreshes its slot
//! map when a primary fails over; the commands without a key this store sends (PING, TIME, INFO,
//! SCRIPT LOAD) go to the primary of that slot, so a script is loaded where it runs (EVALSHA's
//! NOSCRIPT fallback loads it there again after a failover) and TIME/INFO describe the server that
//! holds the data. Pub/sub needs nothing special: a PUBLISH on any node reaches subscribers on all.
//!
//! Sentinel: the primary is asked of the Sentinels (and checked with ROLE) when the first command
//! goes out, again after a command fails in a way that says the primary may have moved (the
//! connection broke or timed out, or the server answered READONLY: a demoted primary), and every
//! half second while connected (a primary the Sentinels replaced keeps taking writes until they
//! demote it, and those writes are lost).
//!
//! Uses: the `redis` crate and `error`. Never puts a URL in an error: it may carry a password.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, TlsMode, Value};

use crate::error::{Error, Result};
use crate::store::RedisUrl;

/// One Redis deployment rota can use, parsed from the `redis` setting.
// One per store, made once: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(super) enum Topology {
    Single(redis::Client),
    Cluster {
        client: ClusterClient,
        /// The listed nodes' URLs and the CA, for a connection of its own with a longer timeout.
        urls: Vec<String>,
        ca_pem: Option<Vec<u8>>,
        /// One client per listed node, for the change channel's subscription (any node will do).
        nodes: Vec<redis::Client>,
        /// The slot every key of this rota cluster hashes to.
        slot: Slot,
    },
    Sentinel(SentinelAccess),
}

/// What a node needs besides the URL to reach Redis: the CA of a TLS Redis (`rediss://`,
/// `rediss+cluster://`, `rediss+sentinel://`) and the Sentinels' own credentials
/// (`redis_sentinel_username` / `redis_sentinel_password`). Debug never shows the password.
#[derive(Clone, Default)]
pub struct RedisAccess {
    pub ca_pem: Option<Vec<u8>>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
}

impl std::fmt::Debug for RedisAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAccess")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "..."))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &self.sentinel_password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// How to ask the Sentinels for the primary and how to log in to it: kept as parts, because the
/// redis crate's client is made by a builder that is used up, and a client is made per connection.
#[derive(Clone)]
pub(super) struct SentinelAccess {
    sentinels: Vec<ConnectionAddr>,
    master: String,
    tls: bool,
    ca_pem: Option<Vec<u8>>,
    /// The primary's user, password and database (from the URL).
    username: Option<String>,
    password: Option<String>,
    db: i64,
    /// The Sentinels' own (from the config).
    sentinel_username: Option<String>,
    sentinel_password: Option<String>,
}

impl SentinelAccess {
    fn client(&self) -> RedisResult<SentinelClient> {
        let mut b =
            SentinelClientBuilder::new(self.sentinels.iter().cloned(), &self.master, SentinelServerType::Master)?
                .set_client_to_redis_db(self.db);
        if let Some(u) = &self.username {
            b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = &self.password {
            b = b.set_client_to_redis_password(p);
        }
        if let Some(u) = &self.sentinel_username {
            b = b.set_client_to_sentinel_username(u);
        }
        if let Some(p) = &self.sentinel_password {
            b = b.set_client_to_sentinel_password(p);
        }
        if self.tls {
            b = b.set_client_to_redis_tls_mode(TlsMode::Secure).set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(root) = &self.ca_pem {
                let certs = || redis::TlsCertificates { client_tls: None, root_cert: Some(root.clone()) };
                b = b.set_client_to_redis_certificates(certs()).set_client_to_sentinel_certificates(certs());
            }
        }
        b.build()
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Config { key: "redis".into(), reason: reason.into() }
}

impl Topology {
    /// Parses the `redis` setting, with what else reaching it takes (`access`).
    pub(super) fn parse(url: &str, access: RedisAccess) -> Result<Topology> {
        let RedisAccess { ca_pem, sentinel_username, sentinel_password } = access;
        // The error text of a bad URL may echo it (with its password): say only what is wrong.
        let kind = |e: redis::RedisError| bad(format!("{:?}", e.kind()));
        match RedisUrl::parse(url).map_err(bad)? {
            RedisUrl::Cluster { tls, userinfo, hosts } => {
                let node_scheme = if tls { "rediss" } else { "redis" };
                let urls: Vec<String> = hosts.iter().map(|h| format!("{node_scheme}://{userinfo}{h}/")).collect();
                let mut nodes = Vec::with_capacity(urls.len());
                for u in &urls {
                    nodes.push(client(u, ca_pem.clone()).map_err(kind)?);
                }
                let client = cluster_client(&urls, ca_pem.clone(), super::RESPONSE_TIMEOUT).map_err(kind)?;
                Ok(Topology::Cluster { client, urls, ca_pem, nodes, slot: Slot::for_key("") })
            }
            RedisUrl::Sentinel { tls, userinfo, hosts, master, db } => {
                // The user info and database are the primary's; the Sentinels log in with their own.
                let data = format!("redis://{userinfo}localhost:1/{db}").into_connection_info().map_err(kind)?;
                let scheme = if tls { "rediss" } else { "redis" };
                let mut sentinels = Vec::with_capacity(hosts.len());
                for h in &hosts {
                    sentinels.push(format!("{scheme}://{h}/").into_connection_info().map_err(kind)?.addr().clone());
                }
                let access = SentinelAccess {
                    sentinels,
                    master: master.to_string(),
                    tls,
                    ca_pem,
                    username: data.redis_settings().username().map(str::to_string),
                    password: data.redis_settings().password().map(str::to_string),
                    db: data.redis_settings().db(),
                    sentinel_username,
                    sentinel_password,
                };
                // Building does not connect: what it refuses is a setting, refused here at start.
                access.client().map_err(kind)?;
                Ok(Topology::Sentinel(access))
            }
            RedisUrl::Single => Ok(Topology::Single(client(url, ca_pem).map_err(kind)?)),
        }
    }

    /// Sets the slot that keyless commands go to on a Redis Cluster: that of `key`.
    pub(super) fn with_slot_of(mut self, key: &str) -> Topology {
        if let Topology::Cluster { slot, .. } = &mut self {
            *slot = Slot::for_key(key.as_bytes());
        }
        self
    }

    fn sentinel_client(&self) -> Option<SentinelClient> {
        let Topology::Sentinel(access) = self else { return None };
        // Checked in `parse`; building does not connect.
        access.client().ok()
    }

    /// The shared connection for commands, created lazily: it does not fail when Redis is down.
    pub(super) fn commands(&self) -> Result<Conn> {
        match self {
            Topology::Single(client) => {
                let cfg = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(super::RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(super::RESPONSE_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                Ok(Conn::Single(ConnectionManager::new_lazy_with_config(client.clone(), cfg)?))
            }
            Topology::Cluster { client, slot, .. } => Ok(self.cluster(client, *slot, super::RESPONSE_TIMEOUT)),
            Topology::Sentinel(_) => Ok(Conn::Sentinel(SentinelConn::new(
                self.sentinel_client().ok_or_else(|| bad("redis+sentinel: bad Sentinel address"))?,
                super::RESPONSE_TIMEOUT,
            ))),
        }
    }

    fn cluster(&self, client: &ClusterClient, slot: Slot, response: Duration) -> Conn {
        let cfg = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(super::RESPONSE_TIMEOUT)
            .set_response_timeout(response);
        Conn::Cluster(Box::new(client.get_pending_async_connection_with_config(cfg)), slot)
    }

    /// A connection of its own (for a blocking command, which must not hold up the shared one),
    /// waiting up to `response` for a reply.
    pub(super) async fn dedicated(&self, response: Duration) -> Result<Conn> {
        match self {
            Topology::Single(client) => {
                let cfg = redis::AsyncConnectionConfig::new()
                    .set_response_timeout(Some(response))
                    .set_connection_timeout(Some(super::RESPONSE_TIMEOUT));
                Ok(Conn::Plain(client.get_multiplexed_async_connection_with_config(&cfg).await?))
            }
            Topology::Cluster { urls, ca_pem, slot, .. } => {
                // The overall timeout (retries and redirections included) is the client's.
                let client = cluster_client(urls, ca_pem.clone(), response)?;
                Ok(self.cluster(&client, *slot, response))
            }
            Topology::Sentinel(_) => Ok(Conn::Sentinel(SentinelConn::new(
                self.sentinel_client().ok_or_else(|| bad("redis+sentinel: bad Sentinel address"))?,
                response,
            ))),
        }
    }

    /// A client for the change channel's subscription, on the `attempt`-th try: the one server; a
    /// cluster's listed nodes in turn (a message published on any node reaches every node's
    /// subscribers); the current primary of a Sentinel-managed set.
    pub(super) async fn pubsub_client(&self, attempt: usize) -> RedisResult<redis::Client> {
        match self {
            Topology::Single(client) => Ok(client.clone()),
            Topology::Cluster { nodes, .. } => Ok(nodes[attempt % nodes.len()].clone()),
            Topology::Sentinel(_) => match self.sentinel_client() {
                Some(mut s) => s.async_get_client().await,
                None => Err(redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad Sentinel address"))),
            },
        }
    }
}

/// A cluster client that gives up on a command (retries and redirections included) after `response`.
fn cluster_client(urls: &[String], ca_pem: Option<Vec<u8>>, response: Duration) -> RedisResult<ClusterClient> {
    let mut builder = ClusterClientBuilder::new(urls.iter().map(String::as_str))
        .connection_timeout(super::RESPONSE_TIMEOUT)
        .response_timeout(response)
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(500);
    if let Some(root) = ca_pem {
        builder = builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(root) });
    }
    builder.build()
}

fn client(url: &str, ca_pem: Option<Vec<u8>>) -> RedisResult<redis::Client> {
    match ca_pem {
        Some(root) => {
            redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(root) })
        }
        None => redis::Client::open(url),
    }
}

/// Strict mode (`redis_wait_replicas`): a write that makes or moves a fire (a claim, a manual
/// trigger, a start, a finish) counts only once this many replicas have acknowledged it, within
/// `timeout_ms` (Redis `WAIT`). With asynchronous replication a failover loses what the new primary
/// had not received: a lost claim is claimed again and a lost start run again, so a fire ran twice
/// (docs/PROTOCOL.md, "Redis deployments").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaWait {
    pub replicas: u32,
    pub timeout_ms: u64,
}

/// Runs a script on `conn`, and in strict mode (`wait`) its `WAIT` with it, in one pipeline, so that
/// both go on one connection: sent apart, a reconnect between them (a broken connection, or
/// Sentinel's move to a new primary) sent `WAIT` on a connection that had written nothing, which
/// every replica has caught up with, and an unreplicated write counted as replicated. Fewer
/// acknowledgements than asked is an error: the writes stand on this primary, but the caller treats
/// them as it treats a committed script whose reply was lost (it asks again, or leaves the fire to
/// the sweep), which every write of a fire already survives. A script not yet loaded there
/// (NOSCRIPT, after a restart or a failover) is loaded and the pair sent again.
pub(super) async fn run_script<T: redis::FromRedisValue>(
    inv: &redis::ScriptInvocation<'_>,
    conn: &mut Conn,
    wait: Option<ReplicaWait>,
    what: &str,
) -> RedisResult<T> {
    let Some(w) = wait else { return inv.invoke_async(conn).await };
    let mut loaded = false;
    loop {
        let mut pipe = redis::pipe();
        pipe.invoke_script(inv).cmd("WAIT").arg(w.replicas).arg(w.timeout_ms);
        match pipe.query_async::<(T, i64)>(conn).await {
            Ok((v, acked)) if acked >= i64::from(w.replicas) => return Ok(v),
            Ok((_, acked)) => {
                let why = format!(
                    "{what} reached {acked} of {} replicas within {} ms (strict mode): not counted",
                    w.replicas, w.timeout_ms
                );
                return Err(redis::RedisError::from((redis::ErrorKind::Client, "not replicated", why)));
            }
            Err(e) if !loaded && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                inv.load_async(conn).await?;
                loaded = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The connection the store's methods use, whatever the deployment.
#[derive(Clone)]
pub(super) enum Conn {
    /// One server, reconnecting on its own.
    Single(ConnectionManager),
    /// One server, one connection (a dedicated one, rebuilt by its owner when it breaks).
    Plain(MultiplexedConnection),
    /// A Redis Cluster, and the slot all of this rota cluster's keys are in.
    Cluster(Box<ClusterConnection>, Slot),
    Sentinel(SentinelConn),
}

impl Conn {
    /// The same connection, with keyless commands (`TIME`, `WAIT`, ...) aimed at the slot of `key` on
    /// a Redis Cluster: another shard's store shares the connection but not the slot.
    pub(super) fn for_slot_of(&self, key: &str) -> Conn {
        match self {
            Conn::Cluster(c, _) => Conn::Cluster(c.clone(), Slot::for_key(key.as_bytes())),
            other => other.clone(),
        }
    }
}

/// Whether a command has no key and should go to the primary of the store's slot on a cluster.
fn keyless(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        redis::Arg::Simple(b) => Some(b),
        _ => None,
    });
    let Some(name) = args.next() else { return false };
    let is = |b: &[u8], s: &str| b.eq_ignore_ascii_case(s.as_bytes());
    is(name, "PING")
        || is(name, "TIME")
        || is(name, "INFO")
        || (is(name, "SCRIPT") && args.next().is_some_and(|sub| is(sub, "LOAD") || is(sub, "EXISTS")))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c, slot) => {
                if keyless(cmd) {
                    let route = Route::with_slot(*slot, SlotAddr::Master);
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                    Box::pin(c.route_command(cmd.clone(), route))
                } else {
                    c.req_packed_command(cmd)
                }
            }
            Conn::Sentinel(c) => Box::pin(c.command(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c, _) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(c) => Box::pin(c.pipeline(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(c, _) => c.get_db(),
            Conn::Sentinel(_) => 0,
        }
    }
}

/// A connection to the primary the Sentinels name, asked again after a failure that says it may
/// have moved. Clones share the connection.
#[derive(Clone)]
pub(super) struct SentinelConn {
    shared: Arc<SentinelShared>,
}

struct SentinelShared {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// The connection to the primary, its generation (bumped each time one is made) and the
    /// primary's address.
    current: std::sync::Mutex<Option<(u64, String, MultiplexedConnection)>>,
    generation: AtomicU64,
    response: Duration,
    /// The primary connected to last, and since when (not reset by a reconnect to the same one).
    primary_since: std::sync::Mutex<Option<(String, std::time::Instant)>>,
}

impl SentinelConn {
    fn new(sentinel: SentinelClient, response: Duration) -> SentinelConn {
        let shared = Arc::new(SentinelShared {
            sentinel: tokio::sync::Mutex::new(sentinel),
            current: std::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            response,
            primary_since: std::sync::Mutex::new(None),
        });
        tokio::spawn(Self::follow(Arc::downgrade(&shared)));
        SentinelConn { shared }
    }

    /// Asks the Sentinels for the primary every `SENTINEL_CHECK` while the connection is in use,
    /// and drops the connection when they name another: after a requested failover (SENTINEL
    /// FAILOVER) the old primary keeps taking writes, lost when the Sentinels demote it (about ten
    /// seconds later), so waiting for an error would write into that window.
    async fn follow(shared: std::sync::Weak<SentinelShared>) {
        const SENTINEL_CHECK: Duration = Duration::from_millis(500);
        loop {
            tokio::time::sleep(SENTINEL_CHECK).await;
            let Some(shared) = shared.upgrade() else { return };
            let Some(addr) = Self::lock(&shared).as_ref().map(|c| c.1.clone()) else { continue };
            let named = {
                let mut sentinel = shared.sentinel.lock().await;
                tokio::time::timeout(super::RESPONSE_TIMEOUT, sentinel.async_get_client()).await
            };
            if let Ok(Ok(client)) = named {
                let now = client.get_connection_info().addr().to_string();
                if now != addr {
                    tracing::warn!(from = %addr, to = %now, "redis: the Sentinels name another primary; reconnecting");
                    let mut cur = Self::lock(&shared);
                    if cur.as_ref().is_some_and(|c| c.1 == addr) {
                        *cur = None;
                    }
                }
            }
        }
    }

    fn lock(shared: &SentinelShared) -> std::sync::MutexGuard<'_, Option<(u64, String, MultiplexedConnection)>> {
        shared.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        Self::lock(&self.shared).as_ref().map(|(g, _, c)| (*g, c.clone()))
    }

    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let mut sentinel = self.shared.sentinel.lock().await;
        // Another caller may have connected while this one waited.
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let client = tokio::time::timeout(super::RESPONSE_TIMEOUT, sentinel.async_get_client())
            .await
            .map_err(|_| timeout_error("asking the Sentinels for the primary"))??;
        drop(sentinel);
        let addr = client.get_connection_info().addr().to_string();
        let cfg = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(self.shared.response))
            .set_connection_timeout(Some(super::RESPONSE_TIMEOUT));
        let conn = client.get_multiplexed_async_connection_with_config(&cfg).await?;
        let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut since) = self.shared.primary_since.lock() {
            if since.as_ref().is_none_or(|(a, _)| *a != addr) {
                *since = Some((addr.clone(), std::time::Instant::now()));
            }
        }
        *Self::lock(&self.shared) = Some((generation, addr, conn.clone()));
        Ok((generation, conn))
    }

    /// How long this client has written to the primary it writes to now (since the Sentinels last
    /// named another one). During a fail-over the Sentinels may name two or three primaries in as
    /// many seconds (measured: 35265, 44583, 35265, 37251 within two seconds), and what a node
    /// wrote to one is not on the next: to this client, the store is as new as this.
    pub(super) fn on_this_primary(&self) -> Option<Duration> {
        self.shared.primary_since.lock().ok()?.as_ref().map(|(_, t)| t.elapsed())
    }

    /// After an error on the connection of `generation`: forgets it when the error says the
    /// primary may have moved, so the next command asks the Sentinels again.
    fn after_error(&self, generation: u64, e: &redis::RedisError) {
        let moved = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
            || e.code() == Some("UNBLOCKED");
        if moved {
            let mut cur = Self::lock(&self.shared);
            if cur.as_ref().is_some_and(|(g, _, _)| *g == generation) {
                *cur = None;
            }
        }
    }

    async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        let (generation, mut conn) = self.connection().await?;
        let r = conn.req_packed_command(cmd).await;
        if let Err(e) = &r {
            self.after_error(generation, e);
        }
        r
    }

    async fn pipeline(&self, pipeline: &Pipeline, offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        let (generation, mut conn) = self.connection().await?;
        let r = conn.req_packed_commands(pipeline, offset, count).await;
        if let Err(e) = &r {
            self.after_error(generation, e);
        }
        r
    }
}

fn timeout_error(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("timed out {what}")))
}

#[cfg(test)]
mod tests {
    use super::Topology;

    fn reason(url: &str) -> String {
        match Topology::parse(url, super::RedisAccess::default()) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn forms() {
        assert_eq!(reason("redis://127.0.0.1:6379"), "ok");
        assert_eq!(reason("redis+cluster://127.0.0.1:7000,127.0.0.1:7001"), "ok");
        assert_eq!(reason("redis+cluster://u:pw@127.0.0.1:7000/"), "ok");
        assert_eq!(reason("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster"), "ok");
        assert_eq!(reason("redis+sentinel://:pw@127.0.0.1:26379/mymaster/2"), "ok");
        assert_eq!(reason("rediss+sentinel://u:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster/1"), "ok");
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        for (url, want) in [
            ("http://h:1", "must start with"),
            ("redis+cluster://", "lists no host:port"),
            ("redis+cluster://u:s3cret@h:1,h2", "host 2 of redis+cluster is not host:port"),
            ("redis+cluster://u:s3cret@h:1/3", "no database number"),
            ("redis+cluster://u:s3cret@h:1?x=1", "no query"),
            ("redis+sentinel://u:s3cret@h:1", "needs the primary's name"),
            ("redis+sentinel://u:s3cret@h:1/m/x", "not a database number"),
            ("redis+sentinel://u:s3cret@h:0/m", "host 1 of redis+sentinel is not host:port"),
            ("rediss+sentinel://u:s3cret@h:1", "rediss+sentinel needs the primary's name"),
        ] {
            let r = reason(url);
            assert!(r.contains(want), "{url}: {r}");
            assert!(r.contains("redis"), "{url}: {r}");
            assert!(!r.contains("s3cret"), "{url}: {r}");
        }
    }
}
