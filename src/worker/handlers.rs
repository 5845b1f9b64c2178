//! Handlers: what a fire runs. Owns the `Handler` trait that embedding programs implement, the
//! registry (name -> handler), and the small built-ins `noop` and `sleep` (`shell` and `http` have
//! their own files). A handler name unknown to the registry is refused when a job is put, not when
//! it fires. Touches nothing but its arguments and the fire's context.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{Error, Result};

/// The stop requests of one fire in a node's hands (CancelExecution), each naming the execution it
/// is for: only the run of that execution stops (a request left for an earlier execution of the
/// fire, on a node that re-ran it since, stops nothing). Every clone sees the newest request. A
/// handler that can stop gracefully watches it (`Handler::stop_grace`: the shell handler signals
/// its process group); the pool drops the run's future after the grace.
#[derive(Debug, Clone)]
pub struct Stop {
    /// The newest request: (execution id, why).
    asked: Arc<tokio::sync::watch::Sender<Option<(String, String)>>>,
}

impl Default for Stop {
    fn default() -> Stop {
        Stop { asked: Arc::new(tokio::sync::watch::channel(None).0) }
    }
}

impl Stop {
    /// Asks the run of execution `exec` to stop, saying why (the record's error). False when that
    /// execution was asked already (the first request's words stay).
    pub fn request(&self, exec: &str, why: &str) -> bool {
        let mut first = false;
        self.asked.send_if_modified(|v| {
            first = v.as_ref().is_none_or(|(e, _)| e != exec);
            if first {
                *v = Some((exec.to_string(), why.to_string()));
            }
            first
        });
        first
    }

    /// Why execution `exec` was asked to stop, if it was.
    pub fn requested(&self, exec: &str) -> Option<String> {
        self.asked.borrow().as_ref().filter(|(e, _)| e == exec).map(|(_, why)| why.clone())
    }

    /// Waits until execution `exec` is asked to stop; then why.
    pub async fn wait(&self, exec: &str) -> String {
        let mut rx = self.asked.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().as_ref().filter(|(e, _)| e == exec).map(|(_, w)| w.clone()) {
                return why;
            }
            // The sender lives as long as `self`: `changed` only ends with a new request.
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What a handler knows about the fire it runs, so it can be idempotent and a test can check every
/// run against an independent record.
#[derive(Debug, Clone)]
pub struct FireContext {
    pub job_id: String,
    pub fire_id: String,
    pub execution_id: String,
    /// The scheduled instant, UTC epoch ms (for manual fires: when it was triggered).
    pub scheduled_ms: i64,
    pub attempt: u32,
    pub node_id: String,
    /// The master's fencing epoch when the fire was claimed (0 on a standalone node).
    pub epoch: u64,
    pub manual: bool,
    /// When the job's timeout ends the run (UTC epoch ms; None: no timeout). The pool cancels the
    /// run then by dropping its future, unless the handler times itself (`Handler::times_itself`).
    pub deadline_ms: Option<i64>,
    /// The job's timeout (or the handler's default), for a handler that times itself.
    pub timeout: Option<Duration>,
    /// Asked to stop by CancelExecution.
    pub stop: Stop,
}

impl FireContext {
    /// A fire's context for handler tests: job `j`, instant 1000 ms, first attempt on `n1`.
    #[cfg(test)]
    pub(crate) fn example() -> FireContext {
        FireContext {
            job_id: "j".into(),
            fire_id: "j@1000".into(),
            execution_id: "e1".into(),
            scheduled_ms: 1000,
            attempt: 1,
            node_id: "n1".into(),
            epoch: 0,
            manual: false,
            deadline_ms: None,
            timeout: None,
            stop: Stop::default(),
        }
    }

    /// The scheduled instant in RFC 3339 (UTC, milliseconds).
    pub fn scheduled_rfc3339(&self) -> String {
        crate::job::ms_to_datetime(self.scheduled_ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// Name/value pairs handed to handlers as `ROTA_*` environment variables or `X-Rota-*` headers.
    /// Every fire has a shard: a fire that is not sharded is shard 0 of 1.
    pub fn fields(&self) -> [(&'static str, String); 10] {
        let shard = self.shard();
        [
            ("JOB_ID", self.job_id.clone()),
            ("FIRE_ID", self.fire_id.clone()),
            ("SCHEDULED_AT", self.scheduled_rfc3339()),
            ("SCHEDULED_AT_MS", self.scheduled_ms.to_string()),
            ("EXECUTION_ID", self.execution_id.clone()),
            ("ATTEMPT", self.attempt.to_string()),
            ("NODE_ID", self.node_id.clone()),
            ("EPOCH", self.epoch.to_string()),
            ("SHARD_INDEX", shard.index.to_string()),
            ("SHARD_TOTAL", shard.total.to_string()),
        ]
    }

    /// Which shard of its fire this run is (PROTOCOL §3.23), from the fire id.
    pub fn shard(&self) -> crate::execution::Shard {
        crate::execution::shard_of_fire(&self.fire_id)
    }
}

/// Why a run failed; `output` and `stderr` are kept in the execution record next to the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerFailure {
    pub message: String,
    pub output: String,
    /// What the run wrote to standard error (shell), kept apart from `output`.
    pub stderr: String,
    pub kind: FailureKind,
}

/// What a failure means for the fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureKind {
    /// The handler ran and failed: recorded `failed`, retried as the job says.
    #[default]
    Failed,
    /// The external worker running it went away mid-run: the fire follows its job's `recovery`
    /// policy, as it would had its node died.
    WorkerLost,
    /// It never reached a worker (none serves its handler here now, or the one chosen went away
    /// before the push): it waits for one, as a fire no node can run does.
    NoWorker,
    /// It passed its timeout (a handler that times itself: an external worker's run, which ends
    /// only once the worker says its handler stopped). Recorded `timed_out`, retried as the job says.
    TimedOut,
    /// It was asked to stop (`FireContext::stop`) and did (a handler that times itself: an external
    /// worker's run). Recorded `cancelled`, never retried.
    Cancelled,
}

impl HandlerFailure {
    pub fn new(message: impl Into<String>) -> Self {
        HandlerFailure {
            message: message.into(),
            output: String::new(),
            stderr: String::new(),
            kind: FailureKind::Failed,
        }
    }

    pub fn worker_lost(message: impl Into<String>) -> Self {
        HandlerFailure { kind: FailureKind::WorkerLost, ..HandlerFailure::new(message) }
    }

    pub fn no_worker(message: impl Into<String>) -> Self {
        HandlerFailure { kind: FailureKind::NoWorker, ..HandlerFailure::new(message) }
    }
}

/// What a run has printed so far, shared between the handler (which appends what it keeps, within
/// its cap), the worker, which records it when the run is cut short (a timed-out run keeps the
/// lines it printed before its timeout, often the clue to why it hung), and whoever follows the
/// run's output live (`WatchExecutionOutput`).
#[derive(Debug, Clone, Default)]
pub struct Partial(std::sync::Arc<PartialInner>);

#[derive(Debug, Default)]
pub struct PartialInner {
    out: std::sync::Mutex<RunOutput>,
    /// Notified at every append.
    changed: tokio::sync::Notify,
}

impl Partial {
    pub fn output(&self, bytes: &[u8]) {
        if let Ok(mut o) = self.0.out.lock() {
            o.output.push_str(&String::from_utf8_lossy(bytes));
        }
        self.0.changed.notify_waiters();
    }

    pub fn stderr(&self, bytes: &[u8]) {
        if let Ok(mut o) = self.0.out.lock() {
            o.stderr.push_str(&String::from_utf8_lossy(bytes));
        }
        self.0.changed.notify_waiters();
    }

    /// What was printed so far (the handler's own result replaces it when it finishes).
    pub fn take(&self) -> RunOutput {
        self.0.out.lock().map(|mut o| std::mem::take(&mut *o)).unwrap_or_default()
    }

    /// What was printed past these byte offsets of the output and of the standard error (empty
    /// past the end, or after `take`).
    pub fn since(&self, output: usize, stderr: usize) -> RunOutput {
        let tail = |s: &str, from: usize| s.get(from..).unwrap_or_default().to_string();
        self.0
            .out
            .lock()
            .map(|o| RunOutput { output: tail(&o.output, output), stderr: tail(&o.stderr, stderr) })
            .unwrap_or_default()
    }

    /// Resolves at the next append (registered before the caller reads, see `since`: create it,
    /// pin it and `enable` it first, so an append in between is not missed).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.changed.notified()
    }
}

/// What a successful run printed: its output and, apart, its standard error (shell).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutput {
    pub output: String,
    pub stderr: String,
}

impl From<String> for RunOutput {
    fn from(output: String) -> Self {
        RunOutput { output, stderr: String::new() }
    }
}

/// Why a handler refuses a job's arguments, naming the part that is wrong: `path` is empty for the
/// arguments as a whole, else a path inside them (`env.LD_PRELOAD`, `argv[1]`, `[0]`), so PutJob
/// answers `args.env.LD_PRELOAD: …`. A plain reason converts with `.into()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", self.field())]
pub struct ArgsError {
    pub path: String,
    pub reason: String,
}

impl ArgsError {
    pub fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ArgsError { path: path.into(), reason: reason.into() }
    }

    /// The field as PutJob names it: `args`, `args.env.K`, `args[1]`.
    pub fn field(&self) -> String {
        match self.path.as_str() {
            "" => "args".to_string(),
            p if p.starts_with('[') => format!("args{p}"),
            p => format!("args.{p}"),
        }
    }
}

impl From<String> for ArgsError {
    fn from(reason: String) -> Self {
        ArgsError { path: String::new(), reason }
    }
}

impl From<&str> for ArgsError {
    fn from(reason: &str) -> Self {
        reason.to_string().into()
    }
}

/// Implement this to run your own code on a fire, and register it with `Registry::register`.
/// The future is dropped when the job's timeout passes: release what you hold in `Drop`.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Checks a job's arguments when the job is put, so a bad job is refused before it fires.
    /// Return a reason naming what is wrong (and where, with `ArgsError::at`).
    fn validate(&self, _args: &Value) -> std::result::Result<(), ArgsError> {
        Ok(())
    }

    /// The timeout a run gets when its job sets none (None: no limit). A handler that waits on
    /// something outside the node (a server) sets one, so a silent peer cannot hold a worker forever.
    fn default_timeout(&self) -> Option<Duration> {
        None
    }

    /// Whether the handler applies the run's timeout itself (`FireContext::timeout`) instead of the
    /// pool dropping its future when it passes. An external worker's handler does: the wait for a
    /// free slot of a worker is not part of the run, and a run is over only once the worker says its
    /// handler stopped (until then a `forbid` job's lock stays held, so a next fire cannot overlap
    /// a handler that ignores the cancel). Such a handler returns `FailureKind::TimedOut`.
    fn times_itself(&self) -> bool {
        false
    }

    /// How long a cancelled run (`FireContext::stop`) may take to stop by itself before the pool
    /// drops its future. Zero (the default): dropped at once (an HTTP call is abandoned). The shell
    /// handler signals its process group SIGTERM and gets `CANCEL_GRACE`; dropped, it is killed. A
    /// handler that times itself (an external worker's) stops its own run and returns
    /// `FailureKind::Cancelled`: this is not used for it.
    fn stop_grace(&self) -> Duration {
        Duration::ZERO
    }

    /// Runs one execution. Ok carries the captured output (may be empty).
    async fn run(&self, ctx: &FireContext, args: &Value) -> std::result::Result<String, HandlerFailure>;

    /// Runs one execution keeping standard error apart from the output: what the worker calls. The
    /// default is `run` with no stderr; a handler that has a stderr of its own (shell) overrides it,
    /// so handlers written against `run` alone keep working. A handler that prints as it goes copies
    /// what it keeps into `partial`, which the worker records if the run is cut short (timeout).
    async fn run_output(
        &self,
        ctx: &FireContext,
        args: &Value,
        _partial: &Partial,
    ) -> std::result::Result<RunOutput, HandlerFailure> {
        self.run(ctx, args).await.map(RunOutput::from)
    }
}

/// Names only built-in handlers may have: a worker may not serve them.
pub const BUILTIN_NAMES: [&str; 4] = ["noop", "sleep", "http", "shell"];

/// Handlers that come and go: the external workers attached to this node (`remote::Hub`). The
/// registry asks it for the names it does not have itself.
pub trait Attached: Send + Sync {
    /// The handler of `name` for a job with `selector`, if an attached worker serves it so.
    fn handler(&self, name: &str, selector: &BTreeMap<String, String>) -> Option<Arc<dyn Handler>>;
    /// Every name attached workers serve now.
    fn names(&self) -> std::collections::BTreeSet<String>;
    /// Whether as many fires wait for a free slot of an attached worker as the workers have slots:
    /// the node then takes no more from its queue (they wait there, where idle nodes can take them).
    fn backlog_full(&self) -> bool;
    /// Free slots of the attached workers beyond the fires already waiting for one.
    fn free_slots(&self) -> u64;
}

/// Handlers by name: the built-ins (and an embedding program's own), and the names the external
/// workers attached to this node serve (`attached`, shared by every clone of the registry).
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Arc<dyn Handler>>,
    attached: Option<Arc<dyn Attached>>,
}

impl Registry {
    pub fn register(&mut self, name: &str, h: impl Handler) {
        self.handlers.insert(name.to_string(), Arc::new(h));
    }

    /// The handler of `name` here: a built-in, or an attached worker that serves it.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Handler>> {
        self.get_for(name, &BTreeMap::new())
    }

    /// The handler of `name` here for a job with `selector`: a built-in (which ignores it), or
    /// the attached workers that serve `name` with tags matching it.
    pub fn get_for(&self, name: &str, selector: &BTreeMap<String, String>) -> Option<Arc<dyn Handler>> {
        if let Some(h) = self.handlers.get(name) {
            return Some(Arc::clone(h));
        }
        self.attached.as_ref()?.handler(name, selector)
    }

    /// Every name this node can run now (built-ins, then what attached workers serve).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.handlers.keys().cloned().collect();
        if let Some(a) = &self.attached {
            v.extend(a.names().into_iter().filter(|n| !self.handlers.contains_key(n)));
        }
        v
    }

    /// Where the names of attached external workers come from (the node's `remote::Hub`).
    pub fn attach_source(&mut self, attached: Arc<dyn Attached>) {
        self.attached = Some(attached);
    }

    /// See `Attached::backlog_full` (false without attached workers).
    pub fn backlog_full(&self) -> bool {
        self.attached.as_ref().is_some_and(|a| a.backlog_full())
    }

    /// See `Attached::free_slots` (0 without attached workers).
    pub fn free_worker_slots(&self) -> u64 {
        self.attached.as_ref().map_or(0, |a| a.free_slots())
    }

    /// Whether `name` is one of this node's own handlers (not an external worker's).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.handlers.contains_key(name) || BUILTIN_NAMES.contains(&name)
    }

    /// Refuses arguments a built-in handler rejects, a built-in that is off here (`shell`), and a
    /// name no handler could have. Any other well-formed name is an external worker's: accepted
    /// whether or not a worker serving it is attached now (workers come and go).
    pub fn validate(&self, name: &str, args: &Value) -> Result<()> {
        let Some(h) = self.handlers.get(name) else {
            if name == "shell" {
                return Err(Error::invalid(
                    "handler",
                    format!(
                        "unknown handler 'shell' (start the node with --enable-shell); this node has: {}",
                        self.handlers.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if BUILTIN_NAMES.contains(&name) || !crate::job::is_tag_name(name) {
                return Err(Error::invalid(
                    "handler",
                    format!(
                        "'{name}' is not a handler name: a built-in ({}) or an external worker's handler, 1-128 characters of A-Z a-z 0-9 . _ : -",
                        self.handlers.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            return Ok(());
        };
        h.validate(args).map_err(|e| Error::invalid(e.field(), e.reason))
    }
}

/// Does nothing, successfully. For tests, benchmarks and placeholders.
pub struct Noop;

#[async_trait]
impl Handler for Noop {
    async fn run(&self, _: &FireContext, _: &Value) -> std::result::Result<String, HandlerFailure> {
        Ok(String::new())
    }
}

/// Sleeps for a duration: `sleep('2s')`, `["500ms"]`, `[1500]` (ms) or `{"duration": "1m"}`.
pub struct Sleep;

impl Sleep {
    fn duration(args: &Value) -> std::result::Result<Duration, String> {
        let v = match args {
            Value::Array(a) if a.len() == 1 => &a[0],
            Value::Object(o) => o.get("duration").ok_or("sleep takes {\"duration\": \"2s\"}")?,
            _ => return Err("sleep takes one duration, e.g. sleep('2s') or [\"500ms\"]".into()),
        };
        match v {
            Value::String(s) => parse_duration(s),
            Value::Number(n) => n.as_u64().map(Duration::from_millis).ok_or_else(|| format!("bad duration {n}")),
            other => Err(format!("duration must be a string like '2s' or a number of ms, got {other}")),
        }
    }
}

#[async_trait]
impl Handler for Sleep {
    fn validate(&self, args: &Value) -> std::result::Result<(), ArgsError> {
        Self::duration(args).map(|_| ()).map_err(ArgsError::from)
    }

    async fn run(&self, _: &FireContext, args: &Value) -> std::result::Result<String, HandlerFailure> {
        let d = Self::duration(args).map_err(HandlerFailure::new)?;
        tokio::time::sleep(d).await;
        Ok(String::new())
    }
}

/// Job definitions and their files take the same durations: one parser, in `job`.
pub use crate::job::parse_duration;

/// Reads a string field of an object argument.
pub(crate) fn str_field<'a>(
    o: &'a serde_json::Map<String, Value>,
    k: &str,
) -> std::result::Result<Option<&'a str>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(format!("'{k}' must be a string, got {v}")),
    }
}

/// Reads an object-of-strings field (env, headers).
pub(crate) fn map_field(
    o: &serde_json::Map<String, Value>,
    k: &str,
) -> std::result::Result<Vec<(String, String)>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(n, v)| match v {
                Value::String(s) => Ok((n.clone(), s.clone())),
                other => Err(format!("'{k}.{n}' must be a string, got {other}")),
            })
            .collect(),
        Some(v) => Err(format!("'{k}' must be an object of strings, got {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn registry_refuses_unknown_and_bad_args() {
        let r = Registry::with_builtins();
        // Any other well-formed name is an external worker's, accepted before a worker serves it.
        r.validate("report.daily", &Value::Null).expect("an external worker's handler");
        let e = r.validate("no such", &Value::Null).expect_err("not a name").to_string();
        assert!(e.starts_with("handler: 'no such' is not a handler name"), "{e}");
        let e = r.validate("", &Value::Null).expect_err("empty").to_string();
        assert!(e.starts_with("handler: '' is not a handler name"), "{e}");
        let e = r.validate("shell", &Value::Null).expect_err("disabled").to_string();
        assert!(e.contains("--enable-shell"), "{e}");
        let e = r.validate("sleep", &json!([])).expect_err("no duration").to_string();
        assert!(e.starts_with("args: sleep takes one duration"), "{e}");
        r.validate("sleep", &json!(["10ms"])).expect("valid");
        r.validate("sleep", &json!({"duration": 5})).expect("valid");
        r.validate("noop", &Value::Null).expect("valid");
    }

    /// A stop request reaches only the run of the execution it names: one left for an earlier
    /// execution of the fire stops nothing; the first words asked for an execution stay.
    #[tokio::test]
    async fn a_stop_is_for_the_execution_it_names() {
        let stop = Stop::default();
        assert!(stop.request("x", "cancelled by ops"));
        assert_eq!(stop.requested("y"), None);
        let waiting = tokio::time::timeout(Duration::from_millis(50), stop.wait("y")).await;
        assert!(waiting.is_err(), "a request for x does not stop y");
        let seen = stop.clone();
        let y = tokio::spawn(async move { seen.wait("y").await });
        assert!(stop.request("y", "cancelled by oncall: hung"));
        assert!(!stop.request("y", "again"), "asked already");
        assert_eq!(y.await.expect("join"), "cancelled by oncall: hung");
        assert_eq!(stop.requested("y").as_deref(), Some("cancelled by oncall: hung"));
    }

    #[test]
    fn context_fields() {
        let ctx = FireContext {
            job_id: "j".into(),
            fire_id: "j@1767225600000".into(),
            execution_id: "e".into(),
            scheduled_ms: 1_767_225_600_000,
            attempt: 2,
            node_id: "n1".into(),
            epoch: 7,
            manual: false,
            deadline_ms: None,
            timeout: None,
            stop: Stop::default(),
        };
        let f = ctx.fields();
        assert_eq!(f[2], ("SCHEDULED_AT", "2026-01-01T00:00:00.000Z".to_string()));
        assert_eq!(f[5], ("ATTEMPT", "2".to_string()));
        assert_eq!((&f[8], &f[9]), (&("SHARD_INDEX", "0".to_string()), &("SHARD_TOTAL", "1".to_string())));
        let shard = FireContext { fire_id: "j@1767225600000/2of5".into(), ..ctx };
        let f = shard.fields();
        assert_eq!((&f[8], &f[9]), (&("SHARD_INDEX", "2".to_string()), &("SHARD_TOTAL", "5".to_string())));
    }
}
