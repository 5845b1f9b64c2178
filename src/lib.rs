//! rota: a distributed cron and task scheduler. Every scheduled fire runs once, on the right node,
//! on time.
//!
//! # Layout (from the top of the fire path down)
//! - [`scheduler`]: plans (misfires, catch-up) and claims due fires in the store, and hands the
//!   claimed ones to delivery. Nothing else.
//! - [`dispatch`]: delivery: where each fire runs (pure `decide`), running it here, sending a
//!   peer's fires in one SubmitTasks call per tick, the durable-queue fallback, and the receiving
//!   side of SubmitTasks.
//! - [`recovery`]: queue and recovery: the durable-queue fallback, the master's sweep (stuck
//!   dispatches, orphans, dead nodes, dead attempts to close), adoption, the rescan, setting aside.
//! - [`worker`]: the bounded pool that starts, runs, retries and finishes executions, drains this
//!   node's queue and steals from busier ones; the `Handler` trait and the built-in handlers.
//! - [`cluster`]: the master lease and its fencing epoch, membership by incarnation, the load
//!   table, and the measurement of this node's clock offset; [`clock`]: the corrected wall clock.
//! - [`store`]: the trait behind which jobs, fires, queues, executions, leases and nodes live, with
//!   an in-memory backend (single node) and a Redis backend (clusters; atomic Lua steps).
//! - [`job`]: job definitions and their validation, cron parsing and next fires (`job::cron`,
//!   pure), invoke targets; [`execution`]: the record every run leaves.
//! - [`api`]: the gRPC services and the HTTP side (metrics, health); errors become `Status` there.
//! - [`alert`], [`metrics`], [`redact`]; [`node`]: wiring and lifecycle; [`config`]: settings;
//!   [`cli`]: the client subcommands; `failpoints` (the points where faults are injected) and `chaos` (the
//!   runner's side-log handler): fault injection, feature `failpoints` only.
//!
//! # The path of a fire
//! `scheduler::Scheduler::step` reads the due jobs (`store::Store::due_jobs`), plans each
//! (`scheduler::plan`) and claims the fires 300 ms ahead (`Store::claim`: one atomic step advances
//! the watermark and records a pending execution, fenced by the master's lease), each where
//! `dispatch::Router::plan` decided before the claim: one the master runs itself is claimed into
//! its hands and run (`worker::Worker::run_accepted`), one for a peer is batched for it
//! (`Router::deliver`, `Router::send`: SubmitTasks; on failure `recovery::Recovery::enqueue_somewhere`).
//! On the node that takes it, the worker waits for the instant, starts the fire
//! (`Store::start`, which writes the `running` record), runs the handler under the job's timeout,
//! retries with backoff, and records the outcome with the ack (`Store::finish`). What a crash,
//! a partition or a lost reply leaves behind, `recovery` finds. `docs/PROTOCOL.md` has every key,
//! script and state.
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
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod history;
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
