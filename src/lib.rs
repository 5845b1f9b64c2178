//! rota: a distributed cron and task scheduler. Every scheduled fire runs once, on the right node,
//! on time.
//!
//! # Layout
//! - [`job`]: job definitions and their validation (time zone, invoke targets), with cron parsing
//!   and next-fire computation (`job::cron`, pure).
//! - [`scheduler`]: the loop that claims due fires and hands them to the worker pool.
//! - [`store`]: the one trait behind which jobs, watermarks, executions, locks and nodes live, with an
//!   in-memory backend (single node) and a Redis backend (clusters).
//! - [`worker`]: the bounded pool that runs executions, the `Handler` trait and the built-in handlers.
//! - [`execution`]: the record every run leaves.
//! - [`alert`]: failure alerts (log and webhook); [`metrics`]: Prometheus families and the HTTP side.
//! - [`api`]: the gRPC services (scheduler, node, health, reflection); errors become `Status` there.
//! - [`cluster`]: the master lease with its fencing epoch (`cluster::lease`), membership by
//!   incarnation (`cluster::membership`), and the measurement of this node's clock offset
//!   (`cluster::clock`); [`clock`]: the corrected wall clock every reading goes through.
//! - [`dispatch`]: where a fire runs (pure `decide`) and delivery to other nodes over gRPC.
//! - [`node`]: wiring and lifecycle; [`config`]: settings; [`cli`]: the client subcommands.
//!
//! # The path of a fire
//! The scheduler sleeps until the earliest job watermark, claims the due fire in the store (one
//! atomic step that advances the watermark and records a pending execution), and submits it to the
//! worker pool, which runs the handler under the job's timeout and records the outcome (retrying
//! with backoff, and alerting when retries are exhausted).
pub mod alert;
pub mod api;
#[cfg(feature = "failpoints")]
pub mod chaos;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod execution;
pub mod job;
pub mod metrics;
pub mod node;
pub mod pb;
pub mod recovery;
pub mod redact;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod worker;

pub use error::{Error, Result};
