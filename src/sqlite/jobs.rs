//! The [`JobStore`] implementation of [`SqliteStore`].

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::{
    JobRow, SqliteStore, db, decode_artifact, decode_event, decode_job, id_bytes, job_columns,
    u128_from,
};
use crate::job::{Event, Job, JobId, JobStatus, NewEvent, TenantId};
use crate::sql::{json_text, micros};
use crate::store::{
    Append, ClaimParams, Claimed, ClaimedJob, EventPage, EventParams, Finish, Inserted, JobPage,
    JobStore, Lease, LeaseStatus, ListParams, Notifier, PurgeParams, QueueStats, ReapParams,
    ReapReport, apply_plan, cancel_plan, plan_finish, plan_reap, start_attempt,
};
use crate::{Error, Result};

type Tx = Transaction<'static, Sqlite>;

impl SqliteStore {
    async fn write(&self) -> Result<Tx> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }

    async fn row_for_update(tx: &mut SqliteConnection, id: JobId) -> Result<Option<JobRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE id = ?"
        ))
        .bind(id_bytes(id))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        row.as_ref().map(decode_job).transpose()
    }

    /// The row of a running job whose current, unexpired lease is `lease`.
    async fn leased(
        tx: &mut SqliteConnection,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<JobRow> {
        match Self::row_for_update(tx, lease.job_id).await? {
            Some(row)
                if row.job.status == JobStatus::Running
                    && row
                        .lease
                        .is_some_and(|(id, exp)| id == lease.lease_id && exp > now) =>
            {
                Ok(row)
            }
            _ => Err(Error::LeaseLost { id: lease.job_id }),
        }
    }

    /// Writes back a job's changeable fields, with its lease.
    async fn save(tx: &mut SqliteConnection, row: &JobRow) -> Result<()> {
        let job = &row.job;
        sqlx::query(
            "UPDATE jobworks_jobs SET status = ?, result = ?, error = ?, attempts = ?, run_at = ?, \
             started_at = ?, completed_at = ?, updated_at = ?, progress = ?, cancel_requested = ?, \
             revision = ?, event_seq = ?, lease_id = ?, lease_expires_at = ? WHERE id = ?",
        )
        .bind(job.status.as_str())
        .bind(job.result.as_ref().map(json_text))
        .bind(job.error.as_deref())
        .bind(i64::from(job.attempts))
        .bind(micros(job.run_at))
        .bind(job.started_at.map(micros))
        .bind(job.completed_at.map(micros))
        .bind(micros(job.updated_at))
        .bind(
            job.progress
                .as_ref()
                .map(|p| serde_json::to_string(p).expect("serialises")),
        )
        .bind(job.cancel_requested)
        .bind(job.revision as i64)
        .bind(row.event_seq as i64)
        .bind(row.lease.map(|(id, _)| id.to_be_bytes().to_vec()))
        .bind(row.lease.map(|(_, exp)| micros(exp)))
        .bind(id_bytes(job.id))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Numbers and inserts an event, bumping the row's counters (save it afterwards).
    async fn push_event(
        tx: &mut SqliteConnection,
        row: &mut JobRow,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> Result<Event> {
        row.event_seq += 1;
        row.job.revision += 1;
        row.job.updated_at = now;
        let event = event.into_event(row.event_seq, now);
        sqlx::query(
            "INSERT INTO jobworks_events (job_id, seq, kind, visibility, message, payload, artifacts, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id_bytes(row.job.id))
        .bind(event.seq as i64)
        .bind(event.kind.as_str())
        .bind(event.visibility.as_str())
        .bind(&*event.message)
        .bind(event.payload.as_ref().map(json_text))
        .bind((!event.artifacts.is_empty()).then(|| serde_json::to_string(&event.artifacts).expect("serialises")))
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        Ok(event)
    }

    /// Fills in `artifacts` and `latest_event`.
    async fn complete(conn: &mut SqliteConnection, row: JobRow) -> Result<Job> {
        let mut job = row.job;
        let id = id_bytes(job.id);
        let latest = sqlx::query(
            "SELECT seq, kind, visibility, message, payload, artifacts, created_at \
             FROM jobworks_events WHERE job_id = ? AND seq = ?",
        )
        .bind(&id)
        .bind(row.event_seq as i64)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        job.latest_event = latest.as_ref().map(decode_event).transpose()?;
        let artifacts = sqlx::query(
            "SELECT name, kind, role, content_type, size_bytes, checksum, metadata, created_at \
             FROM jobworks_artifacts WHERE job_id = ? ORDER BY created_at, name",
        )
        .bind(&id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        job.artifacts = artifacts
            .iter()
            .map(decode_artifact)
            .collect::<Result<_>>()?;
        Ok(job)
    }

    async fn read_job(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let mut conn = self.readers.acquire().await.map_err(db)?;
        match Self::row_for_update(&mut conn, id).await? {
            Some(row) if row.job.tenant == *tenant => Self::complete(&mut conn, row).await,
            _ => Err(Error::NotFound { id }),
        }
    }

    async fn insert_one(
        tx: &mut SqliteConnection,
        job: Job,
        now: DateTime<Utc>,
    ) -> Result<Inserted> {
        if let Some(key) = &job.idempotency_key {
            let existing = sqlx::query(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobworks_jobs WHERE tenant = ? AND idempotency_key = ?"
            ))
            .bind(job.tenant.as_str())
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if let Some(existing) = existing {
                let row = decode_job(&existing)?;
                if !row.job.same_request(&job) {
                    return Err(Error::AlreadyExists { id: row.job.id });
                }
                return Ok(Inserted {
                    job: Self::complete(tx, row).await?,
                    created: false,
                });
            }
        }
        sqlx::query(
            "INSERT INTO jobworks_jobs (id, tenant, job_type, input, status, attempts, max_attempts, \
             priority, run_at, created_at, updated_at, idempotency_key, cancel_requested, revision, event_seq) \
             VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?, 0, 0, 0)",
        )
        .bind(id_bytes(job.id))
        .bind(job.tenant.as_str())
        .bind(job.job_type.as_str())
        .bind(json_text(&job.input))
        .bind(i64::from(job.max_attempts))
        .bind(i64::from(job.priority))
        .bind(micros(job.run_at))
        .bind(micros(job.created_at))
        .bind(micros(job.created_at))
        .bind(job.idempotency_key.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let mut row = JobRow {
            job: Job {
                status: JobStatus::Queued,
                revision: 0,
                ..job
            },
            event_seq: 0,
            lease: None,
        };
        let queued = NewEvent::new(crate::EventKind::Queued, "queued");
        let event = Self::push_event(tx, &mut row, queued, now).await?;
        Self::save(tx, &row).await?;
        row.job.latest_event = Some(event);
        Ok(Inserted {
            job: row.job,
            created: true,
        })
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    fn backend(&self) -> &'static str {
        super::BACKEND
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    async fn insert(&self, jobs: Vec<Job>) -> Result<Vec<Inserted>> {
        let now = crate::job::now();
        let mut tx = self.write().await?;
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            out.push(Self::insert_one(&mut tx, job, now).await?);
        }
        tx.commit().await.map_err(db)?;
        if out.iter().any(|i| i.created) {
            self.notifier.work_available();
        }
        Ok(out)
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        self.read_job(tenant, id).await
    }

    async fn list(&self, tenant: &TenantId, params: ListParams) -> Result<JobPage> {
        let limit = params.limit.clamp(1, 1000);
        let mut conn = self.readers.acquire().await.map_err(db)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE tenant = ? AND id < ? AND (? IS NULL OR status = ?) \
              AND (? IS NULL OR job_type = ?) ORDER BY id DESC LIMIT ?"
        ))
        .bind(tenant.as_str())
        .bind(params.before.map_or_else(|| vec![0xff; 17], id_bytes))
        .bind(params.status.map(|s| s.as_str()))
        .bind(params.status.map(|s| s.as_str()))
        .bind(params.job_type.as_ref().map(|t| t.as_str()))
        .bind(params.job_type.as_ref().map(|t| t.as_str()))
        .bind(limit as i64 + 1)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let mut jobs = Vec::with_capacity(rows.len().min(limit));
        for row in rows.iter().take(limit) {
            jobs.push(Self::complete(&mut conn, decode_job(row)?).await?);
        }
        let next = (rows.len() > limit)
            .then(|| jobs.last().map(|j| j.id))
            .flatten();
        Ok(JobPage { jobs, next })
    }

    async fn events(&self, tenant: &TenantId, id: JobId, params: EventParams) -> Result<EventPage> {
        let mut conn = self.readers.acquire().await.map_err(db)?;
        let status: Option<(String, String)> =
            sqlx::query_as("SELECT tenant, status FROM jobworks_jobs WHERE id = ?")
                .bind(id_bytes(id))
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
        let terminal = match status {
            Some((owner, status)) if owner == tenant.as_str() => {
                crate::sql::status(super::BACKEND, &status)?.is_terminal()
            }
            _ => return Err(Error::NotFound { id }),
        };
        let rows = sqlx::query(
            "SELECT seq, kind, visibility, message, payload, artifacts, created_at FROM jobworks_events \
             WHERE job_id = ? AND seq > ? AND (? OR visibility = 'public') ORDER BY seq LIMIT ?",
        )
        .bind(id_bytes(id))
        .bind(i64::try_from(params.after).unwrap_or(i64::MAX))
        .bind(params.include_internal)
        .bind(params.limit.clamp(1, 1000) as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let events = rows.iter().map(decode_event).collect::<Result<_>>()?;
        Ok(EventPage { events, terminal })
    }

    async fn claim(&self, params: ClaimParams) -> Result<Claimed> {
        let now = crate::job::now();
        let ttl = chrono::Duration::from_std(params.lease_ttl)
            .map_err(|_| Error::invalid("lease_ttl", "too long"))?;
        let types = params
            .types
            .as_ref()
            .map(|t| serde_json::to_string(&t).expect("serialises"));
        let mut tx = self.write().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE status = 'queued' AND run_at <= ? \
              AND (? IS NULL OR job_type IN (SELECT value FROM json_each(?))) \
              ORDER BY priority DESC, run_at, id LIMIT ?"
        ))
        .bind(micros(now))
        .bind(types.as_deref())
        .bind(types.as_deref())
        .bind(params.limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut row = decode_job(row)?;
            let attempts_before = row.job.attempts;
            let lease = Lease::new(row.job.id, params.lease_ttl);
            let lease = Lease {
                expires_at: now + ttl,
                ..lease
            };
            row.lease = Some((lease.lease_id, lease.expires_at));
            let started = start_attempt(&mut row.job, now);
            let event = Self::push_event(&mut tx, &mut row, started, now).await?;
            Self::save(&mut tx, &row).await?;
            let mut job = if attempts_before > 0 {
                Self::complete(&mut tx, row).await?
            } else {
                row.job
            };
            job.latest_event = Some(event);
            jobs.push(ClaimedJob { job, lease });
        }
        let next_run_at = if jobs.len() < params.limit {
            let next: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(run_at) FROM jobworks_jobs WHERE status = 'queued' AND run_at > ?",
            )
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            next.map(super::time).transpose()?
        } else {
            None
        };
        tx.commit().await.map_err(db)?;
        for claimed in &jobs {
            self.notifier.job_changed(claimed.job.id);
        }
        Ok(Claimed { jobs, next_run_at })
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<LeaseStatus> {
        let now = crate::job::now();
        let ttl = chrono::Duration::from_std(ttl).map_err(|_| Error::invalid("ttl", "too long"))?;
        let mut tx = self.write().await?;
        let mut row = Self::leased(&mut tx, lease, now).await?;
        let expires_at = now + ttl;
        row.lease = Some((lease.lease_id, expires_at));
        sqlx::query("UPDATE jobworks_jobs SET lease_expires_at = ? WHERE id = ?")
            .bind(micros(expires_at))
            .bind(id_bytes(lease.job_id))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(LeaseStatus {
            expires_at,
            cancel_requested: row.job.cancel_requested,
        })
    }

    async fn append(&self, lease: &Lease, append: Append) -> Result<Event> {
        let now = crate::job::now();
        let mut tx = self.write().await?;
        let mut row = Self::leased(&mut tx, lease, now).await?;
        if let Some(progress) = append.progress {
            row.job.progress = Some(progress);
        }
        if let Some(a) = &append.artifact {
            sqlx::query(
                "INSERT OR REPLACE INTO jobworks_artifacts \
                 (job_id, name, kind, role, content_type, size_bytes, checksum, metadata, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id_bytes(lease.job_id))
            .bind(&a.name)
            .bind(&a.kind)
            .bind(a.role.as_str())
            .bind(&a.content_type)
            .bind(a.size_bytes as i64)
            .bind(&a.checksum)
            .bind(json_text(&a.metadata))
            .bind(micros(a.created_at))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        let event = Self::push_event(&mut tx, &mut row, append.event, now).await?;
        Self::save(&mut tx, &row).await?;
        tx.commit().await.map_err(db)?;
        self.notifier.job_changed(lease.job_id);
        Ok(event)
    }

    async fn finish(&self, lease: &Lease, outcome: Finish) -> Result<Job> {
        let now = crate::job::now();
        let mut tx = self.write().await?;
        let mut row = Self::leased(&mut tx, lease, now).await?;
        let job = &row.job;
        let plan = plan_finish(
            &outcome,
            job.attempts,
            job.max_attempts,
            job.cancel_requested,
        );
        let event = apply_plan(&mut row.job, plan, Some(&outcome), now);
        row.lease = None;
        Self::push_event(&mut tx, &mut row, event, now).await?;
        Self::save(&mut tx, &row).await?;
        let job = Self::complete(&mut tx, row).await?;
        tx.commit().await.map_err(db)?;
        self.notifier.job_changed(job.id);
        if job.status == JobStatus::Queued {
            self.notifier.work_available();
        }
        Ok(job)
    }

    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let now = crate::job::now();
        let mut tx = self.write().await?;
        let mut row = match Self::row_for_update(&mut tx, id).await? {
            Some(row) if row.job.tenant == *tenant => row,
            _ => return Err(Error::NotFound { id }),
        };
        if let Some(event) = cancel_plan(&mut row.job, now)? {
            Self::push_event(&mut tx, &mut row, event, now).await?;
            Self::save(&mut tx, &row).await?;
        }
        let job = Self::complete(&mut tx, row).await?;
        tx.commit().await.map_err(db)?;
        self.notifier.job_changed(id);
        Ok(job)
    }

    async fn reap(&self, params: ReapParams) -> Result<ReapReport> {
        let now = crate::job::now();
        let mut tx = self.write().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE status = 'running' AND lease_expires_at <= ? \
              ORDER BY lease_expires_at LIMIT ?"
        ))
        .bind(micros(now))
        .bind(params.limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut report = ReapReport::default();
        let mut changed = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut row = decode_job(row)?;
            let job = &row.job;
            let plan = plan_reap(job.attempts, job.max_attempts, job.cancel_requested);
            match plan.status {
                JobStatus::Queued => report.requeued += 1,
                JobStatus::Failed => report.failed += 1,
                _ => report.cancelled += 1,
            }
            let event = apply_plan(&mut row.job, plan, None, now);
            row.lease = None;
            Self::push_event(&mut tx, &mut row, event, now).await?;
            Self::save(&mut tx, &row).await?;
            changed.push(row.job.id);
        }
        tx.commit().await.map_err(db)?;
        for id in changed {
            self.notifier.job_changed(id);
        }
        if report.requeued > 0 {
            self.notifier.work_available();
        }
        Ok(report)
    }

    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
        let mut tx = self.write().await?;
        let doomed: Vec<(Vec<u8>, String)> = sqlx::query_as(
            "SELECT id, tenant FROM jobworks_jobs WHERE completed_at < ? \
             AND status IN ('completed', 'failed', 'cancelled') LIMIT ?",
        )
        .bind(micros(params.completed_before))
        .bind(params.limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut purged = Vec::with_capacity(doomed.len());
        for (id, tenant) in doomed {
            for table in [
                "DELETE FROM jobworks_events WHERE job_id = ?",
                "DELETE FROM jobworks_artifacts WHERE job_id = ?",
                "DELETE FROM jobworks_jobs WHERE id = ?",
            ] {
                sqlx::query(table)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            purged.push((TenantId::new(tenant)?, JobId::from_u128(u128_from(&id)?)));
        }
        tx.commit().await.map_err(db)?;
        Ok(purged)
    }

    async fn stats(&self) -> Result<QueueStats> {
        let mut conn = self.readers.acquire().await.map_err(db)?;
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM jobworks_jobs GROUP BY status")
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
        let mut stats = QueueStats::default();
        for (status, n) in rows {
            let slot = match crate::sql::status(super::BACKEND, &status)? {
                JobStatus::Queued => &mut stats.queued,
                JobStatus::Running => &mut stats.running,
                JobStatus::Completed => &mut stats.completed,
                JobStatus::Failed => &mut stats.failed,
                JobStatus::Cancelled => &mut stats.cancelled,
            };
            *slot = n as u64;
        }
        Ok(stats)
    }
}
