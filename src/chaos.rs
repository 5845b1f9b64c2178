//! Fault injection for the chaos runner (`tests/chaos.rs`), compiled in only with the `failpoints`
//! feature. Owns two things: arming failpoints at run time (over HTTP on the metrics listener) where
//! `return` means "this process dies here, now", and the `sidelog` handler, which writes every run
//! to a file that does not go through rota's store, so a checker can compare rota's records with an
//! independent history. Touches nothing else.
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::worker::handlers::{ArgsError, FireContext, Handler, HandlerFailure};

/// Environment variable naming the side-log file.
pub const SIDELOG_ENV: &str = "ROTA_SIDELOG";

/// Failpoints where `return` kills the process, at the narrow windows of the fire protocol.
pub const CRASH_POINTS: [&str; 3] = [
    // master: the fire is claimed (state dispatching) but not yet run here, sent or queued
    "after_claim",
    // worker: SubmitTask's accept script ran, the reply has not been sent
    "after_accept",
    // worker: the handler finished, its outcome is not yet recorded (finish + ack)
    "before_finish",
];

/// Failpoints where `return` throws a committed script's reply away, as when Redis restarts or the
/// connection breaks between the two: the caller sees an error for a write that happened.
pub const LOST_REPLY_POINTS: [&str; 5] =
    ["lose_claim_reply", "lose_accept_reply", "lose_start_reply", "lose_finish_reply", "lose_reap_reply"];

/// The error a caller sees when a `lose_*_reply` failpoint threw a committed script's reply away.
pub fn lost_reply(point: &str) -> crate::Error {
    tracing::warn!(failpoint = point, "failpoint hit: a committed script's reply is thrown away");
    crate::Error::StoreUnavailable(format!("reply lost ({point})"))
}

/// Dies like a SIGKILLed process: no drain, no deregistration, nothing flushed to the store.
pub fn crash(point: &str) -> ! {
    tracing::error!(failpoint = point, "failpoint hit: killing this process");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    std::process::abort()
}

/// Arms (or with "off" disarms) a failpoint. `actions` is the `fail` crate's syntax, e.g. `1*return`.
pub fn configure(name: &str, actions: &str) -> Result<(), String> {
    if !CRASH_POINTS.contains(&name) && !LOST_REPLY_POINTS.contains(&name) {
        let known: Vec<&str> = CRASH_POINTS.iter().chain(&LOST_REPLY_POINTS).copied().collect();
        return Err(format!("unknown failpoint '{name}' (known: {})", known.join(", ")));
    }
    fail::cfg(name, actions)
}

/// Adds the fault runner's handler (`sidelog`) to a node's handlers: fault injection registers
/// itself, from the top of the binary, rather than being known to the production rooms.
pub fn register(registry: &mut crate::worker::handlers::Registry) {
    registry.register("sidelog", SideLog::from_env());
}

/// Writes a start line, sleeps `{"ms": N}`, writes an end line. Lines (tab-separated):
/// `S job sched_ms execution node epoch attempt now_ms` and `E execution now_ms`.
pub struct SideLog {
    file: Option<Mutex<std::fs::File>>,
}

impl SideLog {
    pub fn from_env() -> SideLog {
        let file = std::env::var_os(SIDELOG_ENV)
            .and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok())
            .map(Mutex::new);
        SideLog { file }
    }

    fn append(&self, line: String) -> Result<(), HandlerFailure> {
        let Some(f) = &self.file else { return Err(HandlerFailure::new(format!("{SIDELOG_ENV} is not set"))) };
        let mut f = f.lock().map_err(|_| HandlerFailure::new("side log poisoned"))?;
        // One write(2) per line on an O_APPEND file: lines from several processes never interleave.
        f.write_all(line.as_bytes()).map_err(|e| HandlerFailure::new(format!("side log: {e}")))
    }
}

#[async_trait]
impl Handler for SideLog {
    fn validate(&self, args: &Value) -> Result<(), ArgsError> {
        match args.get("ms") {
            None | Some(Value::Number(_)) => Ok(()),
            Some(_) => Err("sidelog takes {\"ms\": <sleep in ms>}".into()),
        }
    }

    async fn run(&self, ctx: &FireContext, args: &Value) -> Result<String, HandlerFailure> {
        let now = crate::store::now_ms;
        self.append(format!(
            "S\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            ctx.job_id,
            ctx.scheduled_ms,
            ctx.execution_id,
            ctx.node_id,
            ctx.epoch,
            ctx.attempt,
            now()
        ))?;
        let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.append(format!("E\t{}\t{}\n", ctx.execution_id, now()))?;
        Ok(String::new())
    }
}
