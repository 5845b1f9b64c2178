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
use crate::execution::FireId;
use crate::job::limit::Limit;
use crate::job::{validate_id, validate_name};
use crate::node::Node;
use crate::pb;
use crate::pb::scheduler_service_server::SchedulerService;
use crate::scheduler::{ArgsOverride, TriggerAsk};
use crate::store::shards::DeleteCalendar;
use crate::store::{now_ms, ExecFilter};
use crate::worker::OutputEvent;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// Longest pause note (PauseJob), as a job's description.
const MAX_PAUSE_NOTE: usize = crate::job::MAX_DESCRIPTION_LEN;
/// Most instants one PreviewSchedule gives.
const MAX_PREVIEW: u32 = 1000;
/// A backfill's fires started per second: by default, and at most.
const DEFAULT_BACKFILL_RATE: u32 = 10;
const MAX_BACKFILL_RATE: u32 = 100;
/// Longest reason CancelExecution takes (it goes into the record's error, with who asked).
const MAX_CANCEL_REASON: usize = 500;

pub struct SchedulerApi {
    node: Arc<Node>,
    /// Output followers (`WatchExecutionOutput`) open on this node now.
    followers: Arc<std::sync::atomic::AtomicUsize>,
}

/// Output followers a node serves at once: each may hold a stream from the node that runs the
/// execution, and reads its record once a second while it is not running.
const MAX_FOLLOWERS: usize = 256;

impl SchedulerApi {
    pub fn new(node: Arc<Node>) -> Self {
        SchedulerApi { node, followers: Default::default() }
    }

    /// Each shard's lease holder (id, epoch), if any, and every node the store knows as seen now,
    /// its role from the leases (not from a record that may predate a crash). A store out of reach
    /// is said as `Node::explain` says it: named, with what this node still knows.
    async fn holders_and_nodes(&self) -> Result<(Vec<Option<(String, u64)>>, Vec<pb::NodeInfo>), Error> {
        let read = async {
            let holders = self.node.shard_masters().await?;
            let records = self.node.node_records().await?;
            Ok::<_, Error>((holders, records))
        };
        let (holders, records) = read.await.map_err(|e| self.node.explain(e))?;
        let (now, ttl_ms) = (now_ms(), self.node.config.node_ttl_ms);
        let nodes = records
            .iter()
            .map(|n| {
                let master_of = (0u32..)
                    .zip(&holders)
                    .filter(|(_, h)| h.as_ref().is_some_and(|(id, _)| *id == n.node_id))
                    .map(|(k, _)| k)
                    .collect();
                convert::node(n, now, ttl_ms, master_of)
            })
            .collect();
        Ok((holders, nodes))
    }

    /// A job id given as a filter must name a job that exists, or one whose executions are still
    /// kept (a deleted job's history stays listable and watchable). Anything else is most likely a
    /// typo, which the caller should hear about rather than get an empty list or a silent watch.
    async fn known_job(&self, id: &str) -> Result<(), Error> {
        // Redis first: a job it knows needs no answer from the history store (which may be down).
        let probe = ExecFilter { job_id: Some(id.to_string()), limit: 1, ..ExecFilter::default() };
        if !self.node.shards.list_executions(&probe).await?.0.is_empty() {
            return Ok(());
        }
        match self.node.part_of_job(id)?.store.get_job(id).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) if !self.node.history.list(&probe).await?.0.is_empty() => Ok(()),
            Ok(None) => Err(Error::JobNotFound(id.to_string())),
            // A job key set aside as corrupt still names a job: its history is not this call's
            // concern (the set-aside is reported where it is found).
            Err(Error::Corrupt { .. }) => Ok(()),
            Err(e) => Err(e),
        }
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
        let (handler, selector) = (spec.handler.clone(), spec.selector.clone());
        let (rec, created) = self.node.part_of_job(&spec.id)?.scheduler.put_job_from_api(spec, job.paused).await?;
        let mut warnings = Vec::new();
        if !self.node.served_anywhere(&handler, &selector).await {
            let matching = match selector.is_empty() {
                true => String::new(),
                false => " with tags matching its selector".to_string(),
            };
            warnings.push(format!(
                "no live node or attached worker{matching} serves handler '{handler}' yet: its fires wait for one up to the misfire threshold, then are recorded misfired"
            ));
        }
        Ok(Response::new(pb::PutJobResponse { job: Some(convert::job(&rec)), created, warnings }))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::GetJobResponse>, Status> {
        let id = req.into_inner().id;
        validate_id(&id)?;
        let rec = self.node.part_of_job(&id)?.store.get_job(&id).await?.ok_or(Error::JobNotFound(id))?;
        Ok(Response::new(pb::GetJobResponse { job: Some(convert::job(&rec)) }))
    }

    async fn preview_schedule(
        &self,
        req: Request<pb::PreviewScheduleRequest>,
    ) -> Result<Response<pb::PreviewScheduleResponse>, Status> {
        let r = req.into_inner();
        let count = match r.count {
            0 => 10,
            n @ 1..=MAX_PREVIEW => n as usize,
            n => return Err(Error::invalid("count", format!("{n} is more than {MAX_PREVIEW}")).into()),
        };
        let now = crate::store::now_ms();
        let mut after = r.after.as_ref().map(|t| convert::instant_ms("after", t)).transpose()?.unwrap_or(now);
        // Fires the job may still make (max_fires), when it has a limit.
        let mut left: Option<u64> = None;
        // A paused job's preview says when its fires can come: after its pause's `until`, or once
        // resumed.
        let mut paused_note: Option<String> = None;
        // An unpaused after_previous job's next fire: its watermark, set from the previous fire's
        // end (none while that fire runs).
        let mut chained_next: Option<Option<i64>> = None;
        // A stored job's next fire: the first the claim takes.
        let mut stored_next: Option<i64> = None;
        let job = match r.target {
            Some(pb::preview_schedule_request::Target::JobId(id)) => {
                validate_id(&id)?;
                let rec = self.node.part_of_job(&id)?.store.get_job(&id).await?.ok_or(Error::JobNotFound(id))?;
                if rec.completed() {
                    None
                } else {
                    // Instants before the watermark were claimed already.
                    if let Some(next) = rec.next_ms {
                        after = after.max(next - 1);
                        stored_next = Some(next);
                    }
                    if rec.spec.max_fires > 0 {
                        left = Some(u64::from(rec.spec.max_fires).saturating_sub(rec.fired));
                    }
                    if rec.spec.after_previous_ms > 0 && !rec.spec.paused {
                        chained_next = Some(rec.next_ms);
                    }
                    if rec.spec.paused {
                        let until = rec.pause.as_ref().and_then(|p| p.until_ms);
                        if let Some(u) = until {
                            after = after.max(u);
                        }
                        paused_note = Some(match until {
                            Some(u) => format!(
                                "the job is paused until {}: its fires resume from there",
                                crate::job::schedule::rfc3339(u)
                            ),
                            None => "the job is paused: none of these fires runs unless it is resumed first".into(),
                        });
                    }
                    Some(self.node.part_of_job(&rec.spec.id)?.scheduler.resolve(rec.spec).await?)
                }
            }
            Some(pb::preview_schedule_request::Target::Job(j)) => {
                let mut spec = convert::job_spec(&j)?;
                // Only the schedule is previewed: the rest of a definition may be left out.
                if spec.handler.is_empty() && spec.invoke.is_empty() {
                    spec.handler = "noop".into();
                }
                if spec.id.is_empty() {
                    spec.id = "preview".into();
                }
                if spec.max_fires > 0 {
                    left = Some(u64::from(spec.max_fires));
                }
                let job = self.node.part_of_job(&spec.id)?.scheduler.resolve(spec).await?;
                if let Some(name) = job.calendars.missing().first() {
                    return Err(crate::store::no_calendar(&job.spec, name, false).into());
                }
                Some(job)
            }
            None => return Err(Error::invalid("target", "give job_id or job").into()),
        };
        let Some(job) = job else {
            return Ok(Response::new(pb::PreviewScheduleResponse::default()));
        };
        let s = &job.schedule;
        // Through calendars a preview can look far: off the async threads (no heartbeat waits).
        let mut upcoming = {
            let j = job.clone();
            tokio::task::spawn_blocking(move || j.preview(after, count, stored_next))
                .await
                .map_err(|e| Error::unavailable(format!("the preview stopped: {e}")))?
        };
        if let Some(next) = chained_next {
            upcoming.truncate(usize::from(next.is_some()));
            if let (Some(u), Some(t)) = (upcoming.first_mut(), next) {
                u.at_ms = t;
            }
        }
        // The fires it may still make: an instant a calendar skips is no fire.
        let last_allowed = left.and_then(|n| {
            let n = usize::try_from(n).ok()?;
            upcoming.iter().enumerate().filter(|(_, u)| !u.skipped).map(|(i, _)| i).nth(n.checked_sub(1)?)
        });
        let left = match (left, last_allowed) {
            (Some(0), _) => Some(0),
            (Some(_), Some(i)) => Some(i + 1),
            _ => None,
        };
        if let Some(left) = left.filter(|n| *n <= upcoming.len()) {
            upcoming.truncate(left);
            if let Some(last) = upcoming.last_mut() {
                last.notes.retain(|n| !n.starts_with("last fire"));
                last.notes.push(format!("last fire: the job's max_fires ({}) is then made", job.spec.max_fires));
            }
        }
        if let (Some(first), Some(note)) = (upcoming.first_mut(), paused_note) {
            first.notes.insert(0, note);
        }
        // Each fire's own jitter, as the node that runs it will wait it out.
        if job.spec.jitter_ms > 0 {
            for u in &mut upcoming {
                let fire = crate::execution::scheduled_fire_id(&job.spec.id, u.at_ms);
                let j = crate::job::schedule::fire_jitter_ms(&fire, job.spec.jitter_ms);
                u.notes.push(format!("jitter: starts {} after it", crate::job::schedule::length_text(j)));
            }
        }
        let fires = upcoming
            .into_iter()
            .map(|u| pb::UpcomingFire {
                time: Some(crate::pb::timestamp(u.at_ms)),
                local_time: s.local(u.at_ms).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
                notes: u.notes,
                skipped: u.skipped,
            })
            .collect();
        Ok(Response::new(pb::PreviewScheduleResponse {
            fires,
            time_zone: s.tz.name().to_string(),
            spread_offset: (s.offset_ms > 0).then(|| convert::duration(s.offset_ms as u64).unwrap_or_default()),
        }))
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
        let mut recs = self.node.shards.list_jobs(after, limit + 1).await.map_err(|e| self.node.explain(e))?;
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
        if !self.node.part_of_job(&id)?.store.delete_job(&id).await? {
            return Err(Error::JobNotFound(id).into());
        }
        tracing::info!(job = %id, "job deleted");
        Ok(Response::new(pb::DeleteJobResponse {}))
    }

    async fn pause_job(&self, req: Request<pb::PauseJobRequest>) -> Result<Response<pb::PauseJobResponse>, Status> {
        let by = crate::api::auth::Caller::of(&req);
        let r = req.into_inner();
        let id = r.id;
        validate_id(&id)?;
        if r.note.len() > MAX_PAUSE_NOTE {
            return Err(Error::invalid("note", format!("longer than {MAX_PAUSE_NOTE} bytes")).into());
        }
        let now = now_ms();
        if r.note.chars().any(|c| c.is_control() && c != '\t') {
            return Err(Error::invalid("note", "has control characters (one line of text, please)").into());
        }
        let until_ms = r.until.as_ref().map(|t| convert::instant_ms("until", t)).transpose()?;
        if until_ms.is_some_and(|u| u >= crate::job::schedule::END_OF_TIME_MS) {
            return Err(Error::invalid("until", "must lie before 2200").into());
        }
        if let Some(u) = until_ms.filter(|u| *u <= now) {
            return Err(
                Error::invalid("until", format!("{} is not in the future", crate::job::schedule::rfc3339(u))).into()
            );
        }
        let note = crate::store::PauseNote { note: r.note, by, at_ms: now, until_ms };
        let rec = self.node.part_of_job(&id)?.scheduler.set_paused(&id, true, Some(note)).await?;
        Ok(Response::new(pb::PauseJobResponse { job: Some(convert::job(&rec)) }))
    }

    async fn resume_job(&self, req: Request<pb::ResumeJobRequest>) -> Result<Response<pb::ResumeJobResponse>, Status> {
        let id = req.into_inner().id;
        validate_id(&id)?;
        let rec = self.node.part_of_job(&id)?.scheduler.set_paused(&id, false, None).await?;
        Ok(Response::new(pb::ResumeJobResponse { job: Some(convert::job(&rec)) }))
    }

    type BackfillJobStream = Pin<Box<dyn Stream<Item = Result<pb::BackfillJobResponse, Status>> + Send>>;

    async fn backfill_job(
        &self,
        req: Request<pb::BackfillJobRequest>,
    ) -> Result<Response<Self::BackfillJobStream>, Status> {
        let r = req.into_inner();
        validate_id(&r.job_id)?;
        let instant = |field: &str, t: &Option<prost_types::Timestamp>| {
            t.as_ref().ok_or_else(|| Error::invalid(field, "is required")).and_then(|t| convert::instant_ms(field, t))
        };
        let from = instant("from", &r.from)?;
        // Absent: now, by this node's clock (a client's may run ahead of the cluster's).
        let to = match &r.to {
            None => now_ms(),
            t => instant("to", t)?,
        };
        let rate = match r.rate {
            0 => DEFAULT_BACKFILL_RATE,
            n @ 1..=MAX_BACKFILL_RATE => n,
            n => {
                return Err(
                    Error::invalid("rate", format!("{n} is more than {MAX_BACKFILL_RATE} fires a second")).into()
                )
            }
        };
        let scheduler = Arc::clone(&self.node.part_of_job(&r.job_id)?.scheduler);
        // Checked before the stream begins: a bad range is an error, not an empty stream.
        let (job, instants) = scheduler.backfill_plan(&r.job_id, from, to).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (total, dry_run) = (instants.len() as u32, r.dry_run);
        tokio::spawn(async move {
            let every = std::time::Duration::from_micros(1_000_000 / u64::from(rate));
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A job with an overlap policy runs its backfill one fire at a time (each would
            // otherwise meet the one before's lock and be skipped): the last one made, till it ends.
            let mut last: Option<String> = None;
            for (i, at) in instants.into_iter().enumerate() {
                // Paced: at the rate, with room on this node, one at a time for an exclusive job.
                // The caller closing the stream cancels the rest; what started runs on.
                // (A dry run lists them at once.)
                let ready = async {
                    if dry_run {
                        return;
                    }
                    tick.tick().await;
                    while !scheduler.backfill_room() {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    if let Some(id) = last.as_deref().filter(|_| job.spec.concurrency.exclusive()) {
                        while scheduler.execution_open(id).await {
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                    }
                };
                tokio::select! {
                    _ = tx.closed() => {
                        tracing::info!(job = %job.spec.id, done = i, total, "backfill cancelled by its caller");
                        return;
                    }
                    _ = ready => {}
                }
                let fire_id = crate::execution::scheduled_fire_id(&job.spec.id, at);
                let step = if dry_run {
                    Ok((pb::BackfillOutcome::WouldRun, String::new()))
                } else {
                    scheduler.backfill_one(&job, at).await.map(|(o, e)| {
                        let id = e.map(|e| e.id).unwrap_or_default();
                        if !id.is_empty() {
                            last = Some(id.clone());
                        }
                        (convert::backfill_outcome(o), id)
                    })
                };
                let msg = step.map(|(outcome, execution_id)| pb::BackfillJobResponse {
                    time: Some(crate::pb::timestamp(at)),
                    fire_id,
                    outcome: outcome as i32,
                    execution_id,
                    done: i as u32 + 1,
                    total,
                });
                let failed = msg.is_err();
                if tx.send(msg.map_err(Status::from)).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn trigger_job(
        &self,
        req: Request<pb::TriggerJobRequest>,
    ) -> Result<Response<pb::TriggerJobResponse>, Status> {
        let authorization = req.metadata().get("authorization").cloned();
        let forwarded = req.metadata().contains_key(crate::dispatch::FORWARDED);
        // A fire's own arguments change what the job runs (a shell job's command, an http job's
        // target): as PutJob does, they need an admin, where an operator may only run the job.
        if req.get_ref().args.is_some() {
            crate::api::auth::Caller::require(&req, crate::api::auth::Role::Admin, "args (a fire's own arguments)")?;
        }
        let r = req.into_inner();
        validate_id(&r.id)?;
        let key = idempotency_key(&r.idempotency_key)?;
        let how = match pb::ArgsOverride::try_from(r.args_override) {
            Ok(pb::ArgsOverride::Unspecified | pb::ArgsOverride::Replace) => ArgsOverride::Replace,
            Ok(pb::ArgsOverride::Merge) => ArgsOverride::Merge,
            Err(_) => return Err(Error::invalid("args_override", format!("unknown value {}", r.args_override)).into()),
        };
        if r.args.is_none() && r.args_override != pb::ArgsOverride::Unspecified as i32 {
            return Err(Error::invalid("args_override", "is set, but no args are given").into());
        }
        let args = r.args.as_ref().map(|v| convert::json_from_pb(v, 0)).transpose()?.map(|a| (a, how));
        if !r.target_selector.is_empty() && !r.target_node.is_empty() {
            return Err(Error::invalid("target_selector", "give target_node or target_selector, not both").into());
        }
        let ask = TriggerAsk {
            idempotency_key: key.map(str::to_string),
            args,
            dry_run: r.dry_run,
            selector: r.target_selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let part = self.node.part_of_job(&r.id)?;
        if !r.target_node.is_empty() {
            validate_name("target_node", &r.target_node, 64)?;
            let rec = part.store.get_job(&r.id).await?.ok_or_else(|| Error::JobNotFound(r.id.clone()))?;
            if let Some(address) = self.node.trigger_target(&r.target_node, &rec.spec).await? {
                // Another node: the call is its (it checks the target again: itself). Passed once:
                // a node table whose address for the target leads elsewhere must not loop.
                if forwarded {
                    return Err(Error::FailedPrecondition(format!(
                        "target_node: node {}'s listed address ({address}) reached node {} instead",
                        r.target_node, self.node.node_id
                    ))
                    .into());
                }
                return Ok(Response::new(self.node.peer_client().trigger_on(&address, r, authorization).await?));
            }
        }
        let t = part.scheduler.trigger(&r.id, &ask).await?;
        Ok(Response::new(pb::TriggerJobResponse {
            execution: t.execution.as_ref().map(convert::execution),
            deduplicated: t.deduplicated,
            node_id: t.node_id,
            args: Some(pb::json_to_pb(&t.args)),
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
            if crate::execution::execution_id_problem(&r.page_token).is_some() {
                return Err(Error::invalid("page_token", "is not a token from ListExecutions").into());
            }
            Some(r.page_token)
        };
        if !r.node_id.is_empty() {
            crate::job::validate_name("node_id", &r.node_id, 64).map_err(|e| Error::invalid("node_id", e))?;
        }
        let from = r.scheduled_after.as_ref().map(convert::timestamp_ms);
        let to = r.scheduled_before.as_ref().map(convert::timestamp_ms);
        if let (Some(a), Some(b)) = (from, to) {
            if b <= a {
                return Err(Error::invalid("scheduled_before", "is not after scheduled_after").into());
            }
        }
        let mut filter = ExecFilter {
            job_id: (!r.job_id.is_empty()).then_some(r.job_id),
            state: convert::exec_state_filter(r.state)?,
            before,
            node_id: (!r.node_id.is_empty()).then_some(r.node_id),
            scheduled_from_ms: from,
            scheduled_to_ms: to,
            limit: page_size(r.page_size)?,
            ..Default::default()
        };
        if !r.fire_id.is_empty() {
            let fire = FireId::parse(&r.fire_id).map_err(|e| {
                Error::invalid("fire_id", format!("'{}' is not a fire id: {e}", crate::redact::value(&r.fire_id)))
            })?;
            // A fire belongs to one job: a job filter naming another is a mistake, not an empty list.
            if let Some(job) = filter.job_id.as_deref().filter(|j| *j != fire.job) {
                return Err(Error::invalid(
                    "fire_id",
                    format!("fire '{}' is of job '{}', not of job_id '{job}'", r.fire_id, fire.job),
                )
                .into());
            }
            filter.job_id = Some(fire.job.to_string());
            filter.not_before = crate::execution::first_exec_id_of(&fire);
            filter.fire_id = Some(r.fire_id.clone());
        }
        if let Some(job) = &filter.job_id {
            self.known_job(job).await?;
        }
        let (execs, next) = self.node.history.list(&filter).await?;
        // An unknown fire is an error, not an empty list (asked without a state filter or page
        // token, an empty answer can only mean no execution of it is recorded).
        if execs.is_empty()
            && next.is_none()
            && filter.fire_id.is_some()
            && filter.state.is_none()
            && filter.before.is_none()
        {
            return Err(Error::FireNotFound(r.fire_id).into());
        }
        let fires = match r.group_by_fire {
            true => crate::execution::group_fires(&execs).iter().map(convert::fire_summary).collect(),
            false => Vec::new(),
        };
        Ok(Response::new(pb::ListExecutionsResponse {
            executions: execs.iter().map(convert::execution).collect(),
            next_page_token: next.unwrap_or_default(),
            fires,
        }))
    }

    async fn get_execution(
        &self,
        req: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::GetExecutionResponse>, Status> {
        let id = req.into_inner().id;
        if let Some(why) = crate::execution::execution_id_problem(&id) {
            let id = crate::redact::value(&id);
            return Err(Error::invalid("id", format!("'{id}' is not an execution id: {why}")).into());
        }
        let e = self.node.history.get(&id).await?.ok_or(Error::ExecutionNotFound(id))?;
        Ok(Response::new(pb::GetExecutionResponse { execution: Some(convert::execution(&e)) }))
    }

    async fn cancel_execution(
        &self,
        req: Request<pb::CancelExecutionRequest>,
    ) -> Result<Response<pb::CancelExecutionResponse>, Status> {
        let who = crate::api::auth::Caller::of(&req);
        let r = req.into_inner();
        let id = r.execution_id;
        if id.is_empty() {
            return Err(Error::invalid("execution_id", "is required").into());
        }
        if let Some(why) = crate::execution::execution_id_problem(&id) {
            let id = crate::redact::value(&id);
            return Err(Error::invalid("execution_id", format!("'{id}' is not an execution id: {why}")).into());
        }
        if r.reason.len() > MAX_CANCEL_REASON {
            return Err(Error::invalid(
                "reason",
                format!("is {} bytes, more than {MAX_CANCEL_REASON}", r.reason.len()),
            )
            .into());
        }
        if r.reason.chars().any(char::is_control) {
            return Err(Error::invalid("reason", "must not contain control characters").into());
        }
        let why = match r.reason.trim() {
            "" => format!("cancelled by {who}"),
            reason => format!("cancelled by {who}: {reason}"),
        };
        let e = self.node.cancel_execution(&id, &why).await?;
        Ok(Response::new(pb::CancelExecutionResponse { execution: Some(convert::execution(&e)) }))
    }

    type WatchExecutionsStream = WatchStream;

    async fn watch_executions(
        &self,
        req: Request<pb::WatchExecutionsRequest>,
    ) -> Result<Response<Self::WatchExecutionsStream>, Status> {
        let job = req.into_inner().job_id;
        if !job.is_empty() {
            validate_id(&job).map_err(|e| Error::invalid("job_id", e))?;
            self.known_job(&job).await?;
        }
        // A job's changes come from its shard; all of them from every shard's channel.
        let stores = match job.is_empty() {
            true => self.node.shards.all().to_vec(),
            false => vec![std::sync::Arc::clone(&self.node.part_of_job(&job)?.store)],
        };
        let mut feeds = Vec::with_capacity(stores.len());
        for store in stores {
            feeds.push(BroadcastStream::new(store.subscribe().await));
        }
        let stream = futures_util::stream::select_all(feeds).filter_map(move |item| match item {
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

    type WatchExecutionOutputStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchExecutionOutputResponse, Status>> + Send>>;

    async fn watch_execution_output(
        &self,
        req: Request<pb::WatchExecutionOutputRequest>,
    ) -> Result<Response<Self::WatchExecutionOutputStream>, Status> {
        let id = req.into_inner().execution_id;
        if let Some(why) = crate::execution::execution_id_problem(&id) {
            let id = crate::redact::value(&id);
            return Err(Error::invalid("execution_id", format!("'{id}' is not an execution id: {why}")).into());
        }
        // Known, or NOT_FOUND now rather than in the stream.
        self.node.history.get(&id).await?.ok_or_else(|| Error::ExecutionNotFound(id.clone()))?;
        use std::sync::atomic::Ordering;
        if self.followers.fetch_add(1, Ordering::SeqCst) >= MAX_FOLLOWERS {
            self.followers.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Busy(format!(
                "this node follows {MAX_FOLLOWERS} executions' output already; try another node or later"
            ))
            .into());
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (node, followers) = (Arc::clone(&self.node), Arc::clone(&self.followers));
        tokio::spawn(async move {
            node.follow_output(&id, tx).await;
            followers.fetch_sub(1, Ordering::SeqCst);
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|e| match e {
            OutputEvent::Chunk(c) => {
                Ok(pb::WatchExecutionOutputResponse { output: c.output, stderr: c.stderr, execution: None })
            }
            OutputEvent::End(e) => Ok(pb::WatchExecutionOutputResponse {
                output: String::new(),
                stderr: String::new(),
                execution: Some(convert::execution(&e)),
            }),
            OutputEvent::Failed(e) => Err(Status::from(e)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn put_limit(&self, req: Request<pb::PutLimitRequest>) -> Result<Response<pb::PutLimitResponse>, Status> {
        let l = req.into_inner().limit.ok_or_else(|| Error::invalid("limit", "is required"))?;
        let limit = Limit::new(&l.name, l.max, &l.handler, &l.label)?;
        let store = self.node.shards.home();
        store.put_limit(&limit).await?;
        tracing::info!(limit = %limit.name, max = limit.max, "limit put");
        let running = store.list_limits().await?.into_iter().find(|(x, _)| x.name == limit.name).map_or(0, |(_, n)| n);
        Ok(Response::new(pb::PutLimitResponse { limit: Some(convert::limit(&limit, running)) }))
    }

    async fn list_limits(&self, _: Request<pb::ListLimitsRequest>) -> Result<Response<pb::ListLimitsResponse>, Status> {
        let limits = self.node.shards.home().list_limits().await?;
        Ok(Response::new(pb::ListLimitsResponse {
            limits: limits.iter().map(|(l, n)| convert::limit(l, *n)).collect(),
        }))
    }

    async fn delete_limit(
        &self,
        req: Request<pb::DeleteLimitRequest>,
    ) -> Result<Response<pb::DeleteLimitResponse>, Status> {
        let name = req.into_inner().name;
        validate_name("name", &name, 64)?;
        if !self.node.shards.home().delete_limit(&name).await? {
            return Err(Error::LimitNotFound(name).into());
        }
        tracing::info!(limit = %name, "limit deleted");
        Ok(Response::new(pb::DeleteLimitResponse {}))
    }

    async fn put_calendar(
        &self,
        req: Request<pb::PutCalendarRequest>,
    ) -> Result<Response<pb::PutCalendarResponse>, Status> {
        let r = req.into_inner();
        let c = r.calendar.ok_or_else(|| Error::invalid("calendar", "is required"))?;
        let def = convert::calendar_def(&c, &r.ics)?;
        // A task of its own: a client that goes away mid-put does not leave the shards apart.
        let (node, put) = (Arc::clone(&self.node), def.clone());
        let done = tokio::spawn(async move {
            node.shards.put_calendar(&put).await?;
            tracing::info!(calendar = %put.name, dates = put.excluded_dates.len(), windows = put.excluded_windows.len(),
                on_excluded = put.on_excluded.name(), "calendar put");
            // Jobs whose next fire the calendar now brings sooner get it (a later one is left to
            // each claim, which checks the calendars as they are then).
            for part in &node.parts {
                let moved = part.scheduler.follow_calendar(&put.name).await?;
                if moved > 0 {
                    tracing::info!(calendar = %put.name, jobs = moved, "next fires brought sooner by the calendar");
                }
            }
            Ok::<(), Error>(())
        });
        done.await.map_err(|e| Error::unavailable(format!("the put stopped: {e}")))??;
        Ok(Response::new(pb::PutCalendarResponse { calendar: Some(convert::calendar(&def)) }))
    }

    async fn list_calendars(
        &self,
        _: Request<pb::ListCalendarsRequest>,
    ) -> Result<Response<pb::ListCalendarsResponse>, Status> {
        let all = self.node.shards.home().list_calendars().await?;
        Ok(Response::new(pb::ListCalendarsResponse { calendars: all.iter().map(convert::calendar).collect() }))
    }

    async fn delete_calendar(
        &self,
        req: Request<pb::DeleteCalendarRequest>,
    ) -> Result<Response<pb::DeleteCalendarResponse>, Status> {
        let name = req.into_inner().name;
        validate_name("name", &name, 64)?;
        // A task of its own: a client that goes away mid-delete leaves no marks behind.
        let (node, gone) = (Arc::clone(&self.node), name.clone());
        let outcome = tokio::spawn(async move { node.shards.delete_calendar(&gone).await })
            .await
            .map_err(|e| Error::unavailable(format!("the delete stopped: {e}")))??;
        match outcome {
            DeleteCalendar::Deleted => {
                tracing::info!(calendar = %name, "calendar deleted");
                Ok(Response::new(pb::DeleteCalendarResponse {}))
            }
            DeleteCalendar::NotFound => Err(Error::CalendarNotFound(name).into()),
            DeleteCalendar::PutMeanwhile => Err(Error::FailedPrecondition(format!(
                "calendar '{name}' was put again while it was being deleted: it is kept in the shards the put reached \
                 first; put it again, or delete it again"
            ))
            .into()),
            DeleteCalendar::InUse(jobs) => Err(Error::FailedPrecondition(format!(
                "calendar '{name}' is named by job{} {}{}: take it off them (or delete them) first",
                if jobs.len() == 1 { "" } else { "s" },
                jobs.join(", "),
                if jobs.len() == crate::store::shards::MAX_NAMED { " and maybe more" } else { "" }
            ))
            .into()),
        }
    }

    async fn list_nodes(&self, _: Request<pb::ListNodesRequest>) -> Result<Response<pb::ListNodesResponse>, Status> {
        let (_, nodes) = self.holders_and_nodes().await?;
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn get_cluster_status(
        &self,
        _: Request<pb::GetClusterStatusRequest>,
    ) -> Result<Response<pb::GetClusterStatusResponse>, Status> {
        let (holders, nodes) = self.holders_and_nodes().await?;
        // A lease still held by a node that is gone (killed, its lease not yet expired) is no
        // master: the cluster is electing, and the epoch shown is the last one known.
        let live = |h: &Option<(String, u64)>| {
            h.clone().filter(|(id, _)| nodes.iter().any(|n| n.node_id == *id && n.role == pb::NodeRole::Master as i32))
        };
        let electing = holders.iter().any(|h| live(h).is_none());
        let (master_id, epoch) = match holders.first().and_then(live) {
            Some((id, epoch)) => (id, epoch),
            None => (String::new(), self.node.max_epoch_seen()),
        };
        Ok(Response::new(pb::GetClusterStatusResponse {
            master_id,
            epoch,
            nodes,
            store: self.node.shards.home().kind().to_string(),
            now: Some(convert::timestamp(now_ms())),
            electing,
            shards: u32::from(self.node.shards.count()),
        }))
    }
}
