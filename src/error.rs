//! The crate's error type. Each variant says what the caller should do: fix its input, look elsewhere,
//! retry later, or give up. `api::status` maps them to gRPC codes in one place.
use std::fmt;

/// Result with rota's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something wrong; the message names the field and the reason.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A job that does not exist.
    #[error("job '{0}' not found")]
    JobNotFound(String),
    /// An execution that does not exist (or is past its retention).
    #[error("execution '{0}' not found")]
    ExecutionNotFound(String),

    #[error("limit '{0}' not found")]
    LimitNotFound(String),
    #[error("calendar '{0}' not found")]
    CalendarNotFound(String),
    /// A fire with no execution recorded (never made, or past its retention).
    #[error("fire '{0}' not found (no execution of it is recorded; unknown or past retention)")]
    FireNotFound(String),
    /// The request is well formed but the state does not allow it now.
    #[error("{0}")]
    FailedPrecondition(String),
    /// This node is shutting down and takes no new work; another node will (UNAVAILABLE, so a
    /// client with several endpoints moves on, as it does for any node going away).
    #[error("node {0} is shutting down; try another node")]
    Draining(String),
    /// The node has more work waiting than it will hold; retry later (RESOURCE_EXHAUSTED).
    #[error("{0}")]
    Busy(String),
    /// A sender's fencing epoch older than one this node or the store has seen: a deposed master.
    #[error("stale epoch {epoch}: {why}")]
    StaleEpoch { epoch: u64, why: String },
    /// This node's incarnation is not live (it was declared dead and is registering anew): the
    /// caller should try again, or elsewhere (ABORTED).
    #[error("this node's incarnation is not live; it is re-registering")]
    NotLive,
    /// A master write refused because the caller no longer holds the lease (a newer master exists).
    #[error("fenced: {0}")]
    Fenced(String),
    /// The store (Redis) cannot be reached or answered with an error; retry later. `source` keeps
    /// Redis's own error when there is one (shared: one failed batch fails each of its items).
    #[error("store unavailable: {reason}")]
    StoreUnavailable {
        reason: String,
        #[source]
        source: Option<std::sync::Arc<redis::RedisError>>,
    },
    /// The store cannot be reached, said as a node answering a read tells it: which store (its
    /// address, never its credentials), why, and what this node still knows without it (`known`).
    /// Made from `StoreUnavailable` at the API edge (`Node::explain`); retry later.
    #[error("store unavailable: {store} does not answer ({reason}); try again. {known}")]
    StoreDown { store: String, reason: String, known: String },
    /// Something the store holds could not be decoded: a bug or a foreign writer.
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// Another live process holds this node's id (`node_id`): two nodes were given one id. The node
    /// refuses to start, or, when it finds out on re-registering, stops serving.
    #[error("node_id '{node}' is in use by another live process (incarnation {holder}); give each node its own id")]
    NodeIdInUse { node: String, holder: String },
    /// Configuration is wrong; the node refuses to start.
    #[error("config {key}: {reason}")]
    Config { key: String, reason: String },
    /// An I/O failure outside the store (binding a port, reading a file).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A user error naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::Invalid { field: field.into(), reason: reason.to_string() }
    }

    /// The store is unavailable for a reason of rota's own (no Redis error behind it).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Error::StoreUnavailable { reason: reason.into(), source: None }
    }

    /// The store is unavailable because Redis failed (or could not be reached).
    pub fn redis_failed(e: std::sync::Arc<redis::RedisError>) -> Self {
        Error::StoreUnavailable { reason: e.to_string(), source: Some(e) }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        match e.code() {
            // A key of the wrong type: a script refused before writing anything (BADKEY), or a
            // plain command met one. Retrying will not help; an operator must look.
            Some("BADKEY") | Some("WRONGTYPE") => {
                Error::Corrupt { key: "a Redis key".into(), reason: e.detail().unwrap_or("wrong type").to_string() }
            }
            _ => Error::redis_failed(std::sync::Arc::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// A Redis failure keeps Redis's error as its source, for whoever walks the chain.
    #[test]
    fn a_redis_failure_keeps_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = Error::from(redis::RedisError::from(io));
        assert!(matches!(e, Error::StoreUnavailable { .. }), "{e:?}");
        let source = e.source().expect("source kept");
        assert!(source.to_string().contains("connection refused"), "{source}");
        assert!(Error::unavailable("no result").source().is_none());
    }
}
