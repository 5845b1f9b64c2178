//! `rota.v1.SchedulerService`: jobs, executions, nodes. Every node serves it; everything here is
//! made safe by the store (atomic claims and watermarks), so no call needs the master.
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::convert;
use crate::error::Error;
use crate::job::validate_id;
use crate::node::Node;
use crate::pb;
use crate::pb::scheduler_service_server::SchedulerService;
use crate::store::{now_ms, ExecFilter};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

pub struct SchedulerApi {
    node: Arc<Node>,
}

impl SchedulerApi {
    pub fn new(node: Arc<Node>) -> Self {
        SchedulerApi { node }
    }

    /// Every node the store knows, as seen now.
    async fn node_infos(&self) -> Result<Vec<pb::NodeInfo>, Error> {
        let (now, ttl_ms) = (now_ms(), self.node.config.node_ttl_ms);
        Ok(self.node.node_records().await?.iter().map(|n| convert::node(n, now, ttl_ms)).collect())
    }
}

fn page_size(n: u32) -> Result<usize, Error> {
    match n {
        0 => Ok(DEFAULT_PAGE as usize),
        1..=MAX_PAGE => Ok(n as usize),
        _ => Err(Error::invalid("page_size", format!("{n} is more than {MAX_PAGE}"))),
    }
}

fn idempotency_key(k: &str) -> Result<Option<&str>, Error> {
    if k.is_empty() {
        return Ok(None);
    }
    let ok = k.len() <= 128 && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if !ok {
        return Err(Error::invalid("idempotency_key", "must be 1-128 characters of A-Z a-z 0-9 . _ : -"));
    }
    Ok(Some(k))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchExecutionsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SchedulerService for SchedulerApi {
    async fn put_job(&self, req: Request<pb::PutJobRequest>) -> Result<Response<pb::PutJobResponse>, Status> {
        let job = req.into_inner().job.ok_or_else(|| Error::invalid("job", "is required"))?;
        let spec = convert::job_spec(&job)?;
        let (rec, created) = self.node.scheduler.put_job_from_api(spec, job.paused).await?;
        Ok(Response::new(pb::PutJobResponse { job: Some(convert::job(&rec)), created }))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::GetJobResponse>, Status> {
        let id = req.into_inner().id;
        validate_id(&id)?;
        let rec = self.node.store.get_job(&id).await?.ok_or(Error::JobNotFound(id))?;
        Ok(Response::new(pb::GetJobResponse { job: Some(convert::job(&rec)) }))
    }

    async fn list_jobs(&self, req: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let r = req.into_inner();
        let limit = page_size(r.page_size)?;
        let after = if r.page_token.is_empty() {
            None
        } else {
            validate_id(&r.page_token).map_err(|_| Error::invalid("page_token", "is not a token from ListJobs"))?;
            Some(r.page_token.as_str())
        };
        let mut recs = self.node.store.list_jobs(after, limit + 1).await?;
        let next = if recs.len() > limit {
            recs.truncate(limit);
            recs.last().map(|r| r.spec.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListJobsResponse { jobs: recs.iter().map(convert::job).collect(), next_page_token: next }))
    }

    async fn delete_job(&self, req: Request<pb::DeleteJobRequest>) -> Result<Response<pb::DeleteJobResponse>, Status> {
        let id = req.into_inner().id;
        validate_id(&id)?;
        if !self.node.store.delete_job(&id).await? {
            return Err(Error::JobNotFound(id).into());
        }
        tracing::info!(job = %id, "job deleted");
        Ok(Response::new(pb::DeleteJobResponse {}))
    }

    async fn pause_job(&self, req: Request<pb::PauseJobRequest>) -> Result<Response<pb::PauseJobResponse>, Status> {
        let id = req.into_inner().id;
        validate_id(&id)?;
        let rec = self.node.scheduler.set_paused(&id, true).await?;
        Ok(Response::new(pb::PauseJobResponse { job: Some(convert::job(&rec)) }))
    }

    async fn resume_job(&self, req: Request<pb::ResumeJobRequest>) -> Result<Response<pb::ResumeJobResponse>, Status> {
        let id = req.into_inner().id;
        validate_id(&id)?;
        let rec = self.node.scheduler.set_paused(&id, false).await?;
        Ok(Response::new(pb::ResumeJobResponse { job: Some(convert::job(&rec)) }))
    }

    async fn trigger_job(
        &self,
        req: Request<pb::TriggerJobRequest>,
    ) -> Result<Response<pb::TriggerJobResponse>, Status> {
        let r = req.into_inner();
        validate_id(&r.id)?;
        let key = idempotency_key(&r.idempotency_key)?;
        let t = self.node.scheduler.trigger(&r.id, key).await?;
        Ok(Response::new(pb::TriggerJobResponse {
            execution: Some(convert::execution(&t.execution)),
            deduplicated: t.deduplicated,
        }))
    }

    async fn list_executions(
        &self,
        req: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let r = req.into_inner();
        if !r.job_id.is_empty() {
            validate_id(&r.job_id).map_err(|e| Error::invalid("job_id", e))?;
        }
        let before = if r.page_token.is_empty() {
            None
        } else {
            uuid::Uuid::parse_str(&r.page_token)
                .map_err(|_| Error::invalid("page_token", "is not a token from ListExecutions"))?;
            Some(r.page_token)
        };
        let filter = ExecFilter {
            job_id: (!r.job_id.is_empty()).then_some(r.job_id),
            state: convert::exec_state_filter(r.state)?,
            before,
            limit: page_size(r.page_size)?,
        };
        let (execs, next) = self.node.store.list_executions(&filter).await?;
        Ok(Response::new(pb::ListExecutionsResponse {
            executions: execs.iter().map(convert::execution).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn get_execution(
        &self,
        req: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::GetExecutionResponse>, Status> {
        let id = req.into_inner().id;
        if uuid::Uuid::parse_str(&id).is_err() {
            return Err(Error::invalid("id", format!("'{id}' is not an execution id")).into());
        }
        let e = self.node.store.get_execution(&id).await?.ok_or(Error::ExecutionNotFound(id))?;
        Ok(Response::new(pb::GetExecutionResponse { execution: Some(convert::execution(&e)) }))
    }

    type WatchExecutionsStream = WatchStream;

    async fn watch_executions(
        &self,
        req: Request<pb::WatchExecutionsRequest>,
    ) -> Result<Response<Self::WatchExecutionsStream>, Status> {
        let job = req.into_inner().job_id;
        if !job.is_empty() {
            validate_id(&job).map_err(|e| Error::invalid("job_id", e))?;
        }
        let stream = BroadcastStream::new(self.node.store.subscribe().await).filter_map(move |item| match item {
            Ok(e) if job.is_empty() || e.job_id == job => {
                Some(Ok(pb::WatchExecutionsResponse { execution: Some(convert::execution(&e)) }))
            }
            Ok(_) => None,
            // A watcher that falls behind is told, rather than silently missing changes.
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(Err(Status::from(Error::Busy(format!(
                "watcher too slow: {n} changes were dropped; list executions and watch again"
            ))))),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_nodes(&self, _: Request<pb::ListNodesRequest>) -> Result<Response<pb::ListNodesResponse>, Status> {
        Ok(Response::new(pb::ListNodesResponse { nodes: self.node_infos().await? }))
    }

    async fn get_cluster_status(
        &self,
        _: Request<pb::GetClusterStatusRequest>,
    ) -> Result<Response<pb::GetClusterStatusResponse>, Status> {
        let nodes = self.node_infos().await?;
        let (master_id, epoch) = self.node.master().await?.unwrap_or_default();
        Ok(Response::new(pb::GetClusterStatusResponse {
            master_id,
            epoch,
            nodes,
            store: self.node.store.kind().to_string(),
            now: Some(convert::timestamp(now_ms())),
        }))
    }
}
