//! `rota.v1.WorkerService`: the stream of an external worker (a process in any language, through
//! an SDK). Checks the worker's hello, attaches its session to the node (`Node::attach_worker`),
//! forwards its results and output to the session, and ends the session when the stream closes,
//! when the worker is silent past the session TTL, or when the node stops. What a session runs and
//! how a lost one's fires are recovered is the worker room's (`worker::remote`, `Worker`).
use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::node::Node;
use crate::pb;
use crate::pb::attach_request::Msg as In;
use crate::pb::attach_response::Msg as Out;
use crate::pb::worker_service_server::WorkerService;
use crate::worker::remote::{
    not_held, valid_name, Outbound, SendError, Session, WorkerResult, WorkerSpec, BUILTIN_NAMES,
};

/// How long a new stream may take to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// Limits of a hello (see `WorkerHello` in the proto).
const MAX_HANDLERS: usize = 64;
const MAX_SLOTS: u32 = 10_000;
const MAX_TAGS: usize = 16;
const MAX_SDK_CHARS: usize = 128;
/// The most text one output or result message may carry.
const MAX_TEXT_BYTES: usize = 64 * 1024;

pub struct WorkerApi {
    node: Arc<Node>,
}

impl WorkerApi {
    pub fn new(node: Arc<Node>) -> Self {
        WorkerApi { node }
    }
}

/// A hello checked field by field; the error names the first field that is wrong.
pub fn worker_spec(h: pb::WorkerHello) -> Result<WorkerSpec, Error> {
    if !valid_name(&h.worker_id) {
        return Err(Error::invalid("hello.worker_id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -"));
    }
    if h.handlers.is_empty() || h.handlers.len() > MAX_HANDLERS {
        return Err(Error::invalid("hello.handlers", format!("must name 1 to {MAX_HANDLERS} handlers")));
    }
    for (i, name) in h.handlers.iter().enumerate() {
        if !valid_name(name) {
            return Err(Error::invalid(
                format!("hello.handlers[{i}]"),
                "must be 1-128 characters of A-Z a-z 0-9 . _ : -",
            ));
        }
        if BUILTIN_NAMES.contains(&name.as_str()) {
            return Err(Error::invalid(
                format!("hello.handlers[{i}]"),
                format!("'{name}' is a built-in handler's name"),
            ));
        }
    }
    if h.slots == 0 || h.slots > MAX_SLOTS {
        return Err(Error::invalid("hello.slots", format!("must be 1 to {MAX_SLOTS}")));
    }
    if h.tags.len() > MAX_TAGS {
        return Err(Error::invalid("hello.tags", format!("at most {MAX_TAGS} tags")));
    }
    if let Some((k, _)) = h.tags.iter().find(|(k, v)| !valid_name(k) || !valid_name(v)) {
        return Err(Error::invalid(
            format!("hello.tags[{k}]"),
            "keys and values must be 1-128 characters of A-Z a-z 0-9 . _ : -",
        ));
    }
    if h.sdk.chars().count() > MAX_SDK_CHARS || h.sdk.chars().any(char::is_control) {
        return Err(Error::invalid("hello.sdk", format!("at most {MAX_SDK_CHARS} printable characters")));
    }
    Ok(WorkerSpec {
        worker_id: h.worker_id,
        handlers: h.handlers.into_iter().collect::<BTreeSet<_>>(),
        slots: h.slots,
        tags: h.tags.into_iter().collect::<BTreeMap<_, _>>(),
        sdk: h.sdk,
    })
}

type OutStream = Pin<Box<dyn Stream<Item = Result<pb::AttachResponse, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    type AttachStream = OutStream;

    async fn attach(&self, req: Request<Streaming<pb::AttachRequest>>) -> Result<Response<OutStream>, Status> {
        let mut inbound = req.into_inner();
        let first = match tokio::time::timeout(HELLO_WITHIN, inbound.message()).await {
            Err(_) => return Err(Status::deadline_exceeded(format!("no hello within {} s", HELLO_WITHIN.as_secs()))),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(None)) => return Err(Status::invalid_argument("hello: the stream ended before its first message")),
            Ok(Ok(Some(m))) => m,
        };
        let Some(In::Hello(hello)) = first.msg else {
            return Err(Status::invalid_argument("hello: the first message must be a hello"));
        };
        let spec = worker_spec(hello)?;
        let (tx, rx) = mpsc::channel::<Outbound>(256);
        let beat = Duration::from_millis(self.node.config.heartbeat_ms);
        let ttl = Duration::from_millis(self.node.config.worker_ttl_ms);
        let welcome = pb::Welcome {
            node_id: self.node.node_id.clone(),
            heartbeat_interval_ms: beat.as_millis() as u32,
            session_ttl_ms: ttl.as_millis() as u32,
        };
        // Queued before the session is attached, so the welcome is the first thing it reads.
        let _ = tx.send(Ok(pb::AttachResponse { msg: Some(Out::Welcome(welcome)) })).await;
        let session = self.node.attach_worker(spec, tx)?;
        let node = Arc::clone(&self.node);
        tokio::spawn(async move {
            let why = serve(&node, &session, &mut inbound, beat, ttl).await;
            tracing::info!(worker = %session.spec.worker_id, why = %why, "external worker detached");
            // The worker is told why its stream ends (unless it closed it, or was replaced, which
            // ended it with ALREADY_EXISTS already).
            session.end_stream(tonic::Status::unavailable(format!("session ended by node {}: {why}", node.node_id)));
            node.detach_worker(&session, &why);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Reads a session's stream until it ends; says why it ended. Heartbeats and refusals are queued
/// without waiting: a worker that does not read its stream ends its session rather than hold this
/// loop (and its TTL check, and the node's stop).
async fn serve(
    node: &Node,
    session: &Arc<Session>,
    inbound: &mut Streaming<pb::AttachRequest>,
    beat: Duration,
    ttl: Duration,
) -> String {
    let mut ticker = tokio::time::interval(beat);
    let mut last_heard = tokio::time::Instant::now();
    let stopping = node.stopping();
    let mut refused = 0u32;
    let unread = "the worker does not read its stream (its buffer is full)";
    loop {
        tokio::select! {
            _ = session.gone.cancelled() => return "replaced by a new session of the same worker id".into(),
            _ = stopping.cancelled() => return "the node is stopping".into(),
            _ = ticker.tick() => {
                if last_heard.elapsed() > ttl {
                    return format!("silent for more than {} ms (session TTL)", ttl.as_millis());
                }
                match session.try_send(Out::Heartbeat(pb::Heartbeat {})) {
                    Ok(()) => {}
                    Err(SendError::Full) => return unread.into(),
                    Err(SendError::Closed) => return "the stream to the worker closed".into(),
                }
            }
            m = inbound.message() => match m {
                Ok(Some(m)) => {
                    last_heard = tokio::time::Instant::now();
                    if let Err((id, why)) = handle(node, session, m) {
                        refused += 1;
                        if refused > MAX_REFUSED {
                            return format!("more than {MAX_REFUSED} of its messages refused");
                        }
                        // The first few, then one in a hundred: a confused or hostile worker
                        // must not flood the log.
                        if refused <= 10 || refused.is_multiple_of(100) {
                            tracing::warn!(worker = %session.spec.worker_id, execution = %id, why = %why, refused,
                                "worker message refused");
                        }
                        if session.try_send(Out::Rejected(pb::Rejected { execution_id: id, reason: why })).is_err() {
                            return unread.into();
                        }
                    }
                }
                Ok(None) => return "the worker closed its stream".into(),
                Err(e) => return format!("the stream failed: {}", e.message()),
            },
        }
    }
}

/// Refused messages a session may send before the node ends it (garbage, a confused SDK).
const MAX_REFUSED: u32 = 1000;

/// An execution id as a refusal may echo it (and the log show it): a valid one, or nothing.
fn echoed(id: &str) -> String {
    if valid_name(id) {
        id.to_string()
    } else {
        String::new()
    }
}

/// One message of an attached worker. Err: (execution it named, why it was refused).
fn handle(node: &Node, session: &Session, m: pb::AttachRequest) -> Result<(), (String, String)> {
    let too_long = |id: &str, what: &str, n: usize| {
        Err((echoed(id), format!("{what} is {n} bytes; at most {MAX_TEXT_BYTES} per message")))
    };
    match m.msg {
        None => Err((String::new(), "empty message (no field of its oneof set)".into())),
        Some(In::Hello(_)) => Err((String::new(), "hello: already said; a session says hello once".into())),
        Some(In::Heartbeat(_)) => Ok(()),
        Some(In::Drain(_)) => {
            node.drain_worker(session);
            Ok(())
        }
        Some(In::Started(s)) => match session.holds(&s.execution_id) {
            true => Ok(()),
            false => Err((echoed(&s.execution_id), not_held(&s.execution_id))),
        },
        Some(In::Output(o)) if o.text.len() > MAX_TEXT_BYTES => too_long(&o.execution_id, "output.text", o.text.len()),
        Some(In::Output(o)) => session.output(&o.execution_id, &o.text).map_err(|e| (echoed(&o.execution_id), e)),
        Some(In::Result(r)) if r.output.len() > MAX_TEXT_BYTES => {
            too_long(&r.execution_id, "result.output", r.output.len())
        }
        Some(In::Result(r)) if r.error.len() > MAX_TEXT_BYTES => {
            too_long(&r.execution_id, "result.error", r.error.len())
        }
        Some(In::Result(r)) => {
            let error = match (r.success, r.error.is_empty()) {
                (false, true) => "the worker's handler failed (no message given)".to_string(),
                _ => r.error,
            };
            let outcome = WorkerResult { success: r.success, output: r.output, error };
            session.result(&r.execution_id, outcome).map_err(|e| (echoed(&r.execution_id), e))
        }
    }
}
