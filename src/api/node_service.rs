//! `rota.v1.NodeService`: what peers call on a node (load reports, task submission, info).
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::execution::FireId;
use crate::job::{validate_id, validate_name};
use crate::node::Node;
use crate::pb;
use crate::pb::node_service_server::NodeService;
use crate::store::{now_ms, Accept, MAX_EPOCH};
use crate::worker::OutputEvent;

pub struct NodeApi {
    node: Arc<Node>,
}

impl NodeApi {
    pub fn new(node: Arc<Node>) -> Self {
        NodeApi { node }
    }

    /// Accepts fires sent by a master (durable before the reply) and starts them. A stale epoch or
    /// a node that is not live fails the whole call; otherwise each fire is taken or refused. The
    /// fires of one call are of one shard (a master sends its shard's), whose epoch `epoch` is.
    async fn submit(&self, epoch: u64, fires: Vec<String>) -> Result<Vec<pb::SubmitTaskResponse>, Status> {
        let shard = self.node.shards.shard_of_fire(&fires[0]);
        if let Some(i) = fires.iter().position(|f| self.node.shards.shard_of_fire(f) != shard) {
            return Err(Error::invalid(
                format!("tasks[{i}].fire_id"),
                format!("is of another shard than tasks[0] (shard {shard}): one call carries one shard's fires"),
            )
            .into());
        }
        let part = &self.node.parts[usize::from(shard)];
        part.check_epoch(epoch)?;
        let refused = |reason: String| pb::SubmitTaskResponse { accepted: false, reason, execution_id: String::new() };
        let accepts = match part.router.accept_submitted(&fires, epoch).await {
            Ok(a) => a,
            Err(e @ Error::FailedPrecondition(_)) => return Ok(fires.iter().map(|_| refused(e.to_string())).collect()),
            Err(e) => return Err(e.into()),
        };
        if accepts.iter().any(|a| matches!(a, Accept::Accepted | Accept::Started(_) | Accept::Already)) {
            // The accept compared the epoch with the store's counter: it is the current one.
            part.confirm_epoch(epoch);
            fail::fail_point!("after_accept", |_| crate::failpoints::crash("after_accept"));
        }
        accepts
            .into_iter()
            .map(|a| match a {
                Accept::Accepted | Accept::Started(_) | Accept::Already => {
                    Ok(pb::SubmitTaskResponse { accepted: true, reason: String::new(), execution_id: String::new() })
                }
                Accept::StaleEpoch => Err(Error::StaleEpoch { epoch, why: "a newer master exists".into() }.into()),
                Accept::NotLive => Err(Error::NotLive.into()),
                Accept::Taken => Ok(refused("taken: the fire is already with another node or past dispatch".into())),
                Accept::Unknown => Ok(refused("unknown fire".into())),
            })
            .collect()
    }
}

/// Checks a call's epoch: given, and within the protocol's bound.
fn check_epoch_field(epoch: u64) -> Result<(), Status> {
    if epoch == 0 {
        return Err(Error::invalid("epoch", "is required (the sender's fencing epoch)").into());
    }
    if epoch > MAX_EPOCH {
        return Err(Error::invalid("epoch", format!("{epoch} is above the largest epoch ({MAX_EPOCH})")).into());
    }
    Ok(())
}

/// Most fires one SubmitTasks call may carry.
pub const MAX_TASKS_PER_CALL: usize = 1000;

/// Checks one task's ids; `prefix` names it within a batch ("tasks[3].").
fn check_task(t: &pb::SubmitTaskRequest, prefix: &str) -> Result<(), Status> {
    validate_id(&t.job_id).map_err(|e| Error::invalid(format!("{prefix}job_id"), e))?;
    let names_job = FireId::parse(&t.fire_id).is_ok_and(|f| f.job == t.job_id);
    if t.fire_id.len() > 256 || !names_job {
        return Err(
            Error::invalid(format!("{prefix}fire_id"), "must be '<job_id>@…' and at most 256 characters").into()
        );
    }
    Ok(())
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn report_load(
        &self,
        req: Request<pb::ReportLoadRequest>,
    ) -> Result<Response<pb::ReportLoadResponse>, Status> {
        let r = req.into_inner();
        validate_name("node_id", &r.node_id, 64)?;
        let load = r.load.ok_or_else(|| Error::invalid("load", "is required"))?;
        if load.active_workers > load.max_workers {
            return Err(Error::invalid("load", "active_workers is more than max_workers").into());
        }
        self.node.loads().record(
            &r.node_id,
            crate::store::Load { active: load.active_workers, max: load.max_workers, queue: load.queue_depth },
        );
        Ok(Response::new(pb::ReportLoadResponse { epoch: self.node.max_epoch_seen() }))
    }

    async fn submit_task(
        &self,
        req: Request<pb::SubmitTaskRequest>,
    ) -> Result<Response<pb::SubmitTaskResponse>, Status> {
        let r = req.into_inner();
        check_task(&r, "")?;
        check_epoch_field(r.epoch)?;
        let mut results = self.submit(r.epoch, vec![r.fire_id]).await?;
        let result = results
            .pop()
            .ok_or_else(|| Error::Corrupt { key: "SubmitTask".into(), reason: "no result for the task".into() })?;
        Ok(Response::new(result))
    }

    async fn submit_tasks(
        &self,
        req: Request<pb::SubmitTasksRequest>,
    ) -> Result<Response<pb::SubmitTasksResponse>, Status> {
        let r = req.into_inner();
        check_epoch_field(r.epoch)?;
        if r.tasks.is_empty() || r.tasks.len() > MAX_TASKS_PER_CALL {
            return Err(Error::invalid("tasks", format!("between 1 and {MAX_TASKS_PER_CALL} are required")).into());
        }
        let mut fires = Vec::with_capacity(r.tasks.len());
        for (i, t) in r.tasks.into_iter().enumerate() {
            check_task(&t, &format!("tasks[{i}]."))?;
            if t.epoch != 0 && t.epoch != r.epoch {
                return Err(Error::invalid(format!("tasks[{i}].epoch"), "differs from the call's epoch").into());
            }
            fires.push(t.fire_id);
        }
        Ok(Response::new(pb::SubmitTasksResponse { results: self.submit(r.epoch, fires).await? }))
    }

    async fn get_node_info(
        &self,
        _: Request<pb::GetNodeInfoRequest>,
    ) -> Result<Response<pb::GetNodeInfoResponse>, Status> {
        let rec = self.node.record();
        let master_of = self.node.mastered().into_iter().map(u32::from).collect();
        let info = crate::api::convert::node(&rec, now_ms(), self.node.config.node_ttl_ms, master_of);
        Ok(Response::new(pb::GetNodeInfoResponse { node: Some(info) }))
    }

    type WatchOutputStream = Pin<Box<dyn Stream<Item = Result<pb::WatchOutputResponse, Status>> + Send>>;

    /// The output of an execution running here, from the given offsets, until its run ends here.
    async fn watch_output(
        &self,
        req: Request<pb::WatchOutputRequest>,
    ) -> Result<Response<Self::WatchOutputStream>, Status> {
        let r = req.into_inner();
        if crate::execution::execution_id_problem(&r.execution_id).is_some() {
            return Err(Error::invalid("execution_id", "is not an execution id").into());
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let node = Arc::clone(&self.node);
        let (output, stderr) = (r.output_offset as usize, r.stderr_offset as usize);
        tokio::spawn(async move { node.worker.follow_output(&r.execution_id, output, stderr, &tx).await });
        let stream = ReceiverStream::new(rx).filter_map(|e| match e {
            OutputEvent::Chunk(c) => Some(Ok(pb::WatchOutputResponse { output: c.output, stderr: c.stderr })),
            _ => None,
        });
        Ok(Response::new(Box::pin(stream)))
    }

    /// Asks the run of a fire this node has in hand to stop (CancelExecution on another node).
    async fn stop_run(&self, req: Request<pb::StopRunRequest>) -> Result<Response<pb::StopRunResponse>, Status> {
        let r = req.into_inner();
        if r.fire_id.len() > 256 || FireId::parse(&r.fire_id).is_err() {
            return Err(Error::invalid("fire_id", "must be '<job_id>@…' and at most 256 characters").into());
        }
        if crate::execution::execution_id_problem(&r.execution_id).is_some() {
            return Err(Error::invalid("execution_id", "is not an execution id").into());
        }
        if r.why.is_empty() || r.why.len() > MAX_STOP_WHY {
            return Err(Error::invalid("why", format!("must be 1 to {MAX_STOP_WHY} bytes")).into());
        }
        let found = self.node.worker.stop_run(&r.fire_id, &r.execution_id, &r.why);
        tracing::info!(execution = %r.execution_id, found, "StopRun from a peer");
        Ok(Response::new(pb::StopRunResponse { found }))
    }
}

/// Longest `why` a StopRun may carry (CancelExecution's reason, at most 500 bytes, and who asked).
const MAX_STOP_WHY: usize = 1024;
