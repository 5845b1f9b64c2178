//! `rota.v1.NodeService`: what peers call on a node (load reports, task submission, info).
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::error::Error;
use crate::job::{validate_id, validate_name};
use crate::node::Node;
use crate::pb;
use crate::pb::node_service_server::NodeService;

pub struct NodeApi {
    node: Arc<Node>,
}

impl NodeApi {
    pub fn new(node: Arc<Node>) -> Self {
        NodeApi { node }
    }
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
        self.node.record_peer_load(&r.node_id, load);
        Ok(Response::new(pb::ReportLoadResponse { epoch: self.node.max_epoch_seen() }))
    }

    async fn submit_task(
        &self,
        req: Request<pb::SubmitTaskRequest>,
    ) -> Result<Response<pb::SubmitTaskResponse>, Status> {
        let r = req.into_inner();
        validate_id(&r.job_id).map_err(|e| Error::invalid("job_id", e))?;
        if r.fire_id.is_empty() || r.fire_id.len() > 256 || !r.fire_id.starts_with(&format!("{}@", r.job_id)) {
            return Err(Error::invalid("fire_id", "must be '<job_id>@…' and at most 256 characters").into());
        }
        let sched = r.scheduled_time.as_ref().ok_or_else(|| Error::invalid("scheduled_time", "is required"))?;
        if let Err(reason) = self.node.observe_epoch(r.epoch) {
            return Ok(Response::new(pb::SubmitTaskResponse { accepted: false, reason, execution_id: String::new() }));
        }
        let t = match self
            .node
            .scheduler
            .run_submitted(&r.job_id, &r.fire_id, convert::timestamp_ms(sched), r.attempt, r.epoch)
            .await
        {
            Ok(t) => t,
            Err(e @ (Error::JobNotFound(_) | Error::FailedPrecondition(_))) => {
                return Ok(Response::new(pb::SubmitTaskResponse {
                    accepted: false,
                    reason: e.to_string(),
                    execution_id: String::new(),
                }))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(pb::SubmitTaskResponse {
            accepted: true,
            reason: String::new(),
            execution_id: t.execution.id,
        }))
    }

    async fn get_node_info(
        &self,
        _: Request<pb::GetNodeInfoRequest>,
    ) -> Result<Response<pb::GetNodeInfoResponse>, Status> {
        Ok(Response::new(pb::GetNodeInfoResponse { node: Some(self.node.self_info()) }))
    }
}
