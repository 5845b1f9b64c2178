//! A cluster's shards as one: the store of each shard (`Keys::shard`), which one a job, fire or
//! execution belongs to, and the reads that span them (listings merged, an execution looked up in
//! each). A shard is the whole protocol under its own hash tag; nothing here writes across shards
//! atomically: a calendar, copied into every shard, is put and deleted shard by shard (§3.24).
//! Uses: the store traits, `keys::shard_of`, `execution`.
use std::sync::Arc;

use futures_util::future::try_join_all;

use super::keys::shard_of;
use super::{ExecFilter, JobRecord, Store};
use crate::error::Result;
use crate::execution::{job_of_fire, Execution};
use crate::job::calendar::CalendarDef;

/// The stores of a cluster's shards, shard `k` at index `k` (at least one).
#[derive(Clone)]
pub struct Shards {
    stores: Arc<Vec<Arc<dyn Store>>>,
}

impl Shards {
    /// `stores[k]` is shard `k`'s store. Panics on none: a cluster has at least one shard.
    pub fn new(stores: Vec<Arc<dyn Store>>) -> Shards {
        assert!(!stores.is_empty(), "a cluster has at least one shard");
        Shards { stores: Arc::new(stores) }
    }

    /// One shard: the whole store.
    pub fn one(store: Arc<dyn Store>) -> Shards {
        Shards::new(vec![store])
    }

    pub fn count(&self) -> u16 {
        self.stores.len() as u16
    }

    pub fn all(&self) -> &[Arc<dyn Store>] {
        &self.stores
    }

    /// Shard 0: where the cluster-wide reads go (node records, the clock).
    pub fn home(&self) -> &Arc<dyn Store> {
        &self.stores[0]
    }

    pub fn shard_of_job(&self, job_id: &str) -> u16 {
        shard_of(job_id, self.count())
    }

    pub fn shard_of_fire(&self, fire_id: &str) -> u16 {
        self.shard_of_job(job_of_fire(fire_id))
    }

    /// The store of the shard a job (and so its fires and executions) is in.
    pub fn of_job(&self, job_id: &str) -> &Arc<dyn Store> {
        &self.stores[usize::from(self.shard_of_job(job_id))]
    }

    /// A page of jobs in id order after `after_id`: each shard's page, merged.
    pub async fn list_jobs(&self, after_id: Option<&str>, limit: usize) -> Result<Vec<JobRecord>> {
        let pages = try_join_all(self.stores.iter().map(|s| s.list_jobs(after_id, limit))).await?;
        let mut all: Vec<JobRecord> = pages.into_iter().flatten().collect();
        all.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        all.truncate(limit);
        Ok(all)
    }

    /// Puts a calendar into every shard (one after another: a put that fails part way is
    /// repeated by the caller; until then jobs in the shards it missed cannot name it, or read
    /// the calendar as it was).
    pub async fn put_calendar(&self, def: &CalendarDef) -> Result<()> {
        for s in self.stores.iter() {
            s.put_calendar(def).await?;
        }
        Ok(())
    }

    /// Deletes a calendar no job names, from every shard: each marks it first (no job is put
    /// naming it from then on), then every shard's jobs are read for one that names it; found,
    /// the marks go and the delete is refused with those jobs (at most `MAX_NAMED`); not, the
    /// calendar goes. A delete that fails part way leaves marks, which the next put or delete
    /// of the calendar ends.
    pub async fn delete_calendar(&self, name: &str) -> Result<DeleteCalendar> {
        let mut found = false;
        for s in self.stores.iter() {
            found |= s.mark_calendar_deleted(name).await?;
        }
        if !found {
            return Ok(DeleteCalendar::NotFound);
        }
        let mut users = Vec::new();
        'shards: for s in self.stores.iter() {
            let mut after: Option<String> = None;
            loop {
                let page = s.list_jobs(after.as_deref(), 500).await?;
                for r in &page {
                    if r.spec.calendars.iter().any(|c| c == name) {
                        users.push(r.spec.id.clone());
                        if users.len() == MAX_NAMED {
                            break 'shards;
                        }
                    }
                }
                match page.last() {
                    Some(r) if page.len() == 500 => after = Some(r.spec.id.clone()),
                    _ => break,
                }
            }
        }
        if !users.is_empty() {
            for s in self.stores.iter() {
                s.unmark_calendar_deleted(name).await?;
            }
            users.sort();
            return Ok(DeleteCalendar::InUse(users));
        }
        // A shard whose mark a put took away meanwhile keeps the calendar (a job there may name
        // it); the others, still marked, have no job naming it.
        let mut kept = false;
        for s in self.stores.iter() {
            kept |= !s.drop_calendar(name).await?;
        }
        Ok(if kept { DeleteCalendar::PutMeanwhile } else { DeleteCalendar::Deleted })
    }

    /// An execution by id: its fire's shard; an id made before ids named their fire does not name
    /// its shard, so each is asked (at once).
    pub async fn get_execution(&self, id: &str) -> Result<Option<Execution>> {
        if let Some(fire) = crate::execution::fire_of_execution(id) {
            return self.stores[usize::from(self.shard_of_fire(fire))].get_execution(id).await;
        }
        let found = try_join_all(self.stores.iter().map(|s| s.get_execution(id))).await?;
        Ok(found.into_iter().flatten().next())
    }

    /// Newest first: with a job, that job's shard's page; without, every shard's page merged
    /// (`merge_pages`).
    pub async fn list_executions(&self, f: &ExecFilter) -> Result<(Vec<Execution>, Option<String>)> {
        match &f.job_id {
            Some(job) => self.of_job(job).list_executions(f).await,
            None => {
                let pages = try_join_all(self.stores.iter().map(|s| s.list_executions(f))).await?;
                Ok(merge_pages(pages, f.limit))
            }
        }
    }
}

/// The most jobs a refused calendar delete names.
pub const MAX_NAMED: usize = 20;

/// What `Shards::delete_calendar` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteCalendar {
    Deleted,
    NotFound,
    /// Refused: these jobs name it (the first `MAX_NAMED`, by id).
    InUse(Vec<String>),
    /// Put again while the delete ran: kept where the put came first, deleted elsewhere.
    PutMeanwhile,
}

/// One page of the union of listings of the same filter below the same cursor, each newest first
/// with its token (set when it stopped early or filled its page: it is complete only down to
/// there). The page holds only records at or above the highest of those floors, with a token just
/// below it; a record in several listings is taken once, from the first that has it.
pub fn merge_pages(pages: Vec<(Vec<Execution>, Option<String>)>, limit: usize) -> (Vec<Execution>, Option<String>) {
    let floor = pages.iter().filter_map(|(_, next)| next.clone()).max();
    let mut all: Vec<Execution> = pages.into_iter().flat_map(|(page, _)| page).collect();
    if let Some(fl) = &floor {
        all.retain(|e| e.id >= *fl);
    }
    // Stable sort: dedup keeps the copy of the earlier listing.
    all.sort_by(|a, b| b.id.cmp(&a.id));
    all.dedup_by(|b, a| a.id == b.id);
    if all.len() > limit {
        all.truncate(limit);
        let next = all.last().map(|e| e.id.clone());
        return (all, next);
    }
    (all, floor)
}
