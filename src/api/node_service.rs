//! `rota.v1.NodeService`: what peers call on a node (load reports, task submission, info).
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::job::{validate_id, validate_name};
use crate::node::Node;
use crate::pb;
use crate::pb::node_service_server::NodeService;
use crate::store::Accept;

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
        self.node.scheduler.record_load(
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
        validate_id(&r.job_id).map_err(|e| Error::invalid("job_id", e))?;
        if r.fire_id.is_empty() || r.fire_id.len() > 256 || !r.fire_id.starts_with(&format!("{}@", r.job_id)) {
            return Err(Error::invalid("fire_id", "must be '<job_id>@…' and at most 256 characters").into());
        }
        if r.epoch == 0 {
            return Err(Error::invalid("epoch", "is required (the sender's fencing epoch)").into());
        }
        let refuse = |reason: String| {
            Ok(Response::new(pb::SubmitTaskResponse { accepted: false, reason, execution_id: String::new() }))
        };
        if let Err(reason) = self.node.observe_epoch(r.epoch) {
            return Err(Status::failed_precondition(reason));
        }
        match self.node.scheduler.accept_submitted(&r.fire_id, r.epoch).await {
            Ok(Accept::Accepted | Accept::Already) => {
                fail::fail_point!("after_accept", |_| crate::chaos::crash("after_accept"));
                Ok(Response::new(pb::SubmitTaskResponse {
                    accepted: true,
                    reason: String::new(),
                    execution_id: String::new(),
                }))
            }
            Ok(Accept::StaleEpoch) => {
                Err(Status::failed_precondition(format!("stale epoch {}: a newer master exists", r.epoch)))
            }
            Ok(Accept::NotLive) => Err(Status::aborted("this node's incarnation is not live; it is re-registering")),
            Ok(Accept::Taken) => refuse("taken: the fire is already with another node or past dispatch".into()),
            Ok(Accept::Unknown) => refuse("unknown fire".into()),
            Err(e @ Error::FailedPrecondition(_)) => refuse(e.to_string()),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_node_info(
        &self,
        _: Request<pb::GetNodeInfoRequest>,
    ) -> Result<Response<pb::GetNodeInfoResponse>, Status> {
        Ok(Response::new(pb::GetNodeInfoResponse { node: Some(self.node.self_info()) }))
    }
}
