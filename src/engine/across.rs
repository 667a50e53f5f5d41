//! Operator reads and actions over a set of tenants, for a host's operators (the
//! dashboard's users may see one tenant, several or all). They go through the same store
//! primitives as a tenant's own reads: `list(None, …)` for every tenant, one list per
//! tenant merged by id for several.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::Engine;
use super::operator::{BulkAction, BulkReport, JobFilter, MAX_BULK};
use crate::job::{Job, JobId, QueueName, TenantId, WorkflowId};
use crate::schedule::Schedule;
use crate::store::{JobPage, ListParams, MinuteCounts, Operator, QueueStats};
use crate::workflow::Workflow;
use crate::{Error, Result};

/// The tenants an operator sees: every one, or a set (which may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    /// Every tenant, those to come included.
    All,
    /// Only these.
    Only(BTreeSet<TenantId>),
}

impl Tenants {
    /// Only `tenants`.
    pub fn only(tenants: impl IntoIterator<Item = TenantId>) -> Self {
        Tenants::Only(tenants.into_iter().collect())
    }

    /// Whether `tenant` is one of them.
    pub fn contains(&self, tenant: &TenantId) -> bool {
        match self {
            Tenants::All => true,
            Tenants::Only(set) => set.contains(tenant),
        }
    }
}

/// The [`Engine`]'s operator reads and actions over [`Tenants`]: from
/// [`Engine::across`].
///
/// A job of a tenant outside the set reads exactly like a missing one.
#[derive(Debug, Clone, Copy)]
pub struct Across<'a> {
    engine: &'a Engine,
    tenants: &'a Tenants,
}

impl Engine {
    /// Operator reads and actions over `tenants`.
    pub fn across<'a>(&'a self, tenants: &'a Tenants) -> Across<'a> {
        Across {
            engine: self,
            tenants,
        }
    }
}

impl Across<'_> {
    /// The tenants' jobs, newest first, filtered and paged as [`Engine::list`] does.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list(&self, params: ListParams) -> Result<JobPage> {
        let store = self.engine.store();
        let set = match self.tenants {
            Tenants::All => return store.list(None, params).await,
            Tenants::Only(set) => set,
        };
        let limit = params.limit.clamp(1, 1000);
        // Each tenant's newest `limit` before the cursor; the newest `limit` of them all
        // are the page, and a next page exists when any tenant had more left.
        let mut jobs = Vec::new();
        let mut more = false;
        for tenant in set {
            let page = store.list(Some(tenant), params.clone()).await?;
            more |= page.next.is_some();
            jobs.extend(page.jobs);
        }
        jobs.sort_unstable_by_key(|j| std::cmp::Reverse(j.id));
        more |= jobs.len() > limit;
        jobs.truncate(limit);
        let next = if more {
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        Ok(JobPage { jobs, next })
    }

    /// One job of the tenants, with its artifacts and latest event.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a missing job or one of a tenant outside the set.
    pub async fn get(&self, id: JobId) -> Result<Job> {
        // With one tenant the store reads only its rows; otherwise the tenant is checked.
        let tenant = match self.tenants {
            Tenants::Only(set) if set.len() == 1 => set.first(),
            _ => None,
        };
        let found = self.engine.store().load(tenant, &[id]).await?;
        match found.into_iter().next() {
            Some(stored) if self.tenants.contains(&stored.job.tenant) => Ok(*stored.job),
            _ => Err(Error::NotFound { id }),
        }
    }

    /// The tenant of job `id`, when it is one of the set.
    ///
    /// # Errors
    /// [`Error::NotFound`] otherwise.
    pub async fn tenant_of(&self, id: JobId) -> Result<TenantId> {
        Ok(self.get(id).await?.tenant)
    }

    /// The tenants' jobs counted by queue and status (queues without jobs left out).
    ///
    /// # Errors
    /// Store errors.
    pub async fn queue_stats(&self) -> Result<BTreeMap<QueueName, QueueStats>> {
        self.counts(false).await
    }

    /// The tenants' open jobs (waiting, queued, running) counted by queue and status; the
    /// finished counts are zero. Its cost follows the backlog, not the history.
    ///
    /// # Errors
    /// Store errors.
    pub async fn open_counts(&self) -> Result<BTreeMap<QueueName, QueueStats>> {
        self.counts(true).await
    }

    /// The store's counts (of open jobs only, or all), of every tenant at once or summed
    /// over the set.
    async fn counts(&self, open: bool) -> Result<BTreeMap<QueueName, QueueStats>> {
        let store = self.engine.store();
        let read = |tenant| {
            if open {
                store.open_counts(tenant)
            } else {
                store.queue_stats(tenant)
            }
        };
        let set = match self.tenants {
            Tenants::All => return read(None).await,
            Tenants::Only(set) => set,
        };
        let mut all: BTreeMap<QueueName, QueueStats> = BTreeMap::new();
        for tenant in set {
            for (queue, counts) in read(Some(tenant)).await? {
                all.entry(queue).or_default().merge(&counts);
            }
        }
        Ok(all)
    }

    /// The tenants' jobs that completed or failed at or after `since`, counted by
    /// minute, oldest first; `None` when the store cannot count them.
    ///
    /// # Errors
    /// Store errors.
    pub async fn finished_by_minute(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Option<Vec<MinuteCounts>>> {
        let store = self.engine.store();
        let set = match self.tenants {
            Tenants::All => return store.finished_by_minute(None, since).await,
            Tenants::Only(set) => set,
        };
        let mut all: BTreeMap<DateTime<Utc>, MinuteCounts> = BTreeMap::new();
        for tenant in set {
            let Some(counts) = store.finished_by_minute(Some(tenant), since).await? else {
                return Ok(None);
            };
            for c in counts {
                let entry = all.entry(c.minute).or_insert(MinuteCounts {
                    minute: c.minute,
                    completed: 0,
                    failed: 0,
                });
                entry.completed += c.completed;
                entry.failed += c.failed;
            }
        }
        Ok(Some(all.into_values().collect()))
    }

    /// The tenants' schedules, each with its next run.
    ///
    /// # Errors
    /// Store errors.
    pub async fn schedules(&self) -> Result<Vec<Schedule>> {
        let store = self.engine.store();
        let all = match self.tenants {
            Tenants::All => store.schedules(None).await?,
            Tenants::Only(set) => {
                let mut all = Vec::new();
                for tenant in set {
                    all.extend(store.schedules(Some(tenant)).await?);
                }
                all
            }
        };
        Ok(all.into_iter().map(|s| self.engine.shown(s)).collect())
    }

    /// A workflow of one of the tenants.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`] for a missing one or one of a tenant outside the set.
    pub async fn workflow(&self, id: WorkflowId) -> Result<Workflow> {
        // Its tenant is that of any of its jobs.
        let one = ListParams::default().workflow(id).limit(1);
        let tenant = match self.tenants {
            Tenants::All => self
                .engine
                .store()
                .list(None, one)
                .await?
                .jobs
                .pop()
                .map(|j| j.tenant),
            Tenants::Only(set) => {
                let mut found = None;
                for tenant in set {
                    let page = self.engine.store().list(Some(tenant), one.clone()).await?;
                    if !page.jobs.is_empty() {
                        found = Some(tenant.clone());
                        break;
                    }
                }
                found
            }
        };
        match tenant {
            Some(tenant) => self.engine.workflow(&tenant, id).await,
            None => Err(Error::WorkflowNotFound { id }),
        }
    }

    /// [`Engine::bulk`] over the tenants: `action` on up to `limit` (1…[`MAX_BULK`]) of
    /// their jobs that `filter` selects, newest first; with `dry_run`, only counts them.
    ///
    /// # Errors
    /// As for [`Engine::bulk`].
    pub async fn bulk(
        &self,
        action: BulkAction,
        filter: &JobFilter,
        limit: usize,
        dry_run: bool,
        by: &Operator,
    ) -> Result<BulkReport> {
        if !(1..=MAX_BULK).contains(&limit) {
            return Err(Error::invalid("limit", "must be between 1 and 10000"));
        }
        let selected = self.select(filter, limit).await?;
        let mut report = BulkReport {
            matched: selected.len() as u64,
            applied: 0,
        };
        if dry_run {
            return Ok(report);
        }
        for (tenant, id) in selected {
            if self.engine.apply(action, &tenant, id, by).await? {
                report.applied += 1;
            }
        }
        Ok(report)
    }

    /// `action` on each of the jobs `ids` that is one of the tenants' (the others are
    /// not matched); with `dry_run`, only counts them.
    ///
    /// # Errors
    /// Store errors as they come (the jobs changed before one stay changed).
    pub async fn bulk_ids(
        &self,
        action: BulkAction,
        ids: &[JobId],
        dry_run: bool,
        by: &Operator,
    ) -> Result<BulkReport> {
        if ids.len() > MAX_BULK {
            return Err(Error::invalid("ids", "at most 10000 jobs at once"));
        }
        let mut report = BulkReport::default();
        for &id in ids {
            let tenant = match self.tenant_of(id).await {
                Ok(tenant) => tenant,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            report.matched += 1;
            if !dry_run && self.engine.apply(action, &tenant, id, by).await? {
                report.applied += 1;
            }
        }
        Ok(report)
    }

    /// The tenants and ids of up to `limit` of the jobs that `filter` selects, newest
    /// first, read a page at a time; the store filters by status, type and queue when the
    /// filter names one of each, and the time bounds limit the pages read.
    pub(super) async fn select(
        &self,
        filter: &JobFilter,
        limit: usize,
    ) -> Result<Vec<(TenantId, JobId)>> {
        let params = filter.list_params(1000);
        let mut before = params.before;
        let mut selected = Vec::new();
        loop {
            let page = self.list(params.clone().before(before)).await?;
            for job in page.jobs {
                if filter.since.is_some_and(|t| job.created_at < t) {
                    return Ok(selected);
                }
                if filter.matches(&job) {
                    selected.push((job.tenant, job.id));
                    if selected.len() == limit {
                        return Ok(selected);
                    }
                }
            }
            match page.next {
                Some(next) => before = Some(next),
                None => return Ok(selected),
            }
        }
    }
}
