//! The chaos runner's side-log handler (`sidelog`), compiled in only with the `failpoints` feature:
//! it writes every run to a file that does not go through rota's store, so the checker can compare
//! rota's records with an independent history. It registers itself from the top of the binary
//! (`register`, called by `main`); no production room knows it. Uses: `worker::handlers`.
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::worker::handlers::{ArgsError, FireContext, Handler, HandlerFailure};

/// Environment variable naming the side-log file.
pub const SIDELOG_ENV: &str = "ROTA_SIDELOG";

/// Environment variable that, set to `1`, also registers the same handler as `sidelog_picky`: the
/// runner sets it on some nodes only, for jobs that only those nodes can run (mixed capabilities).
pub const PICKY_ENV: &str = "ROTA_CHAOS_PICKY";

/// Adds the fault runner's handler (`sidelog`, and `sidelog_picky` where `PICKY_ENV` says so) to a
/// node's handlers: fault injection registers itself, from the top of the binary, rather than being
/// known to the production rooms.
pub fn register(registry: &mut crate::worker::handlers::Registry) {
    registry.register("sidelog", SideLog::from_env());
    if std::env::var(PICKY_ENV).is_ok_and(|v| v == "1") {
        registry.register("sidelog_picky", SideLog::from_env());
    }
}

/// Writes a start line, sleeps `{"ms": N}`, writes an end line. Lines (tab-separated):
/// `S job sched_ms execution node epoch attempt now_ms` and `E execution now_ms`; with a `mark`
/// in its arguments (a manual fire's own, TriggerJob's), `M execution mark` before the start line.
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
        match (args.get("ms"), args.get("mark")) {
            (None | Some(Value::Number(_)), None | Some(Value::String(_))) => Ok(()),
            _ => Err("sidelog takes {\"ms\": <sleep in ms>, \"mark\": <a string to note>}".into()),
        }
    }

    async fn run(&self, ctx: &FireContext, args: &Value) -> Result<String, HandlerFailure> {
        let now = crate::store::now_ms;
        if let Some(mark) = args.get("mark").and_then(Value::as_str) {
            self.append(format!("M\t{}\t{mark}\n", ctx.execution_id))?;
        }
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
