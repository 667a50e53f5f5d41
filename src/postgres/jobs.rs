//! The [`JobStore`] implementation of [`PostgresStore`].

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Uuid;
use sqlx::{PgConnection, Postgres, Transaction};

use super::rows::{
    JobRow, complete, decode_event, decode_job, event_columns, job_columns, load, number, uuid,
    write_back,
};
use super::{BACKEND, PostgresStore, db};
use crate::job::{Event, EventKind, Job, JobId, JobStatus, NewEvent, TenantId};
use crate::sql::{json_text, status};
use crate::store::{
    Append, ClaimParams, Claimed, ClaimedJob, EventPage, EventParams, Finish, Inserted, JobPage,
    JobStore, Lease, LeaseStatus, ListParams, Notifier, PurgeParams, QueueStats, ReapParams,
    ReapReport, apply_plan, cancel_plan, plan_reap,
};
use crate::{Error, Result};

type Tx = Transaction<'static, Postgres>;

async fn leased(conn: &mut PgConnection, lease: &Lease, now: DateTime<Utc>) -> Result<JobRow> {
    match load(conn, lease.job_id, true).await? {
        Some(row) if lease.is_current(row.job.status, row.lease, now) => Ok(row),
        _ => Err(Error::LeaseLost { id: lease.job_id }),
    }
}

/// Loads the row of job `id` if it belongs to `tenant`, locking it for the transaction
/// when `for_update`. The tenant is part of the lookup, so another tenant's row is never
/// read (nor its input decoded), and costs what a missing one does.
async fn owned(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: JobId,
    for_update: bool,
) -> Result<JobRow> {
    let sql = if for_update {
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE id = $1 AND tenant = $2 FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE id = $1 AND tenant = $2"
        )
    };
    let row = sqlx::query(sql)
        .bind(uuid(id))
        .bind(tenant.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    match row {
        Some(row) => decode_job(&row),
        None => Err(Error::NotFound { id }),
    }
}

fn one(mut jobs: Vec<Job>) -> Job {
    jobs.pop().expect("one row in, one job out")
}

impl PostgresStore {
    /// Starts a transaction, cancel safely.
    ///
    /// sqlx's `begin` is not cancel safe: dropped while `BEGIN` is in flight, it hands the
    /// connection back to the pool inside a transaction nobody will end, and every later
    /// statement on that connection (claims, submits) would stay uncommitted. So `BEGIN`
    /// runs in a task of its own and always finishes; a transaction that nobody waits for
    /// any more is dropped, which rolls it back.
    pub(super) async fn begin(&self) -> Result<Tx> {
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.begin().await })
            .await
            .map_err(|e| Error::Backend {
                backend: BACKEND,
                source: e.into(),
            })?
            .map_err(db)
    }

    fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Writes one changed row with its event, notifying `payload`, and commits.
    async fn commit_one(
        &self,
        mut tx: Tx,
        row: JobRow,
        event: &Event,
        payload: &str,
    ) -> Result<Job> {
        write_back(
            &mut tx,
            &[&row],
            &[(row.job.id, event)],
            self.channel(),
            payload,
            None,
        )
        .await?;
        let job = one(complete(&mut tx, vec![row]).await?);
        tx.commit().await.map_err(db)?;
        Ok(job)
    }
}

#[async_trait]
impl JobStore for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn notifier(&self) -> &Notifier {
        &self.inner.notifier
    }

    fn clock(&self) -> &crate::Clock {
        &self.inner.clock
    }

    async fn insert(&self, jobs: Vec<Job>) -> Result<Vec<Inserted>> {
        let now = self.inner.clock.now();
        // Without idempotency keys nothing can conflict: one statement, committed alone.
        let keyed = jobs.iter().any(|j| j.idempotency_key.is_some());
        let mut tx = if keyed {
            Some(self.begin().await?)
        } else {
            None
        };
        let statement = sqlx::query_scalar(
            "WITH inserted AS (
                INSERT INTO jobworks_jobs (id, tenant, job_type, input, status, attempts, max_attempts,
                    priority, run_at, created_at, updated_at, idempotency_key, cancel_requested,
                    revision, event_seq)
                SELECT u.id, u.tenant, u.job_type, u.input::jsonb, 'queued', 0, u.max_attempts,
                    u.priority, u.run_at, u.created_at, $10, u.key, false, 1, 1
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[],
                            $7::timestamptz[], $8::timestamptz[], $9::text[])
                    AS u(id, tenant, job_type, input, max_attempts, priority, run_at, created_at, key)
                ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                RETURNING id
            ), queued AS (
                INSERT INTO jobworks_events (job_id, seq, kind, visibility, message, created_at)
                SELECT id, 1, 'queued', 'public', 'queued', $10 FROM inserted
            ), told AS (
                SELECT pg_notify($11, 'w') FROM inserted HAVING count(*) > 0
            )
            SELECT id FROM inserted, (SELECT count(*) FROM told) AS t",
        )
        .bind(jobs.iter().map(|j| uuid(j.id)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.tenant.to_string()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.job_type.to_string()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| json_text(&j.input)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.max_attempts as i32).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.created_at).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.idempotency_key.clone()).collect::<Vec<_>>())
        .bind(now)
        .bind(self.channel());
        let inserted: Vec<Uuid> = match tx.as_mut() {
            Some(tx) => statement.fetch_all(&mut **tx).await,
            None => statement.fetch_all(&self.pool).await,
        }
        .map_err(db)?;
        let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
        let mut out = Vec::with_capacity(jobs.len());
        let mut replays = Vec::new();
        for job in jobs {
            if inserted.contains(&uuid(job.id)) {
                let queued = NewEvent::new(EventKind::Queued, "queued").into_event(1, now);
                out.push(Some(Job {
                    status: JobStatus::Queued,
                    revision: 1,
                    updated_at: now,
                    latest_event: Some(queued),
                    ..job
                }));
                continue;
            }
            // Its idempotency key is taken: a replay if it asks for the same work.
            let tx = tx.as_mut().expect("only keyed jobs can be left out");
            let existing = sqlx::query(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobworks_jobs WHERE tenant = $1 AND idempotency_key = $2"
            ))
            .bind(job.tenant.as_str())
            .bind(job.idempotency_key.as_deref())
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
            let existing = decode_job(&existing)?;
            if !existing.job.same_request(&job) {
                return Err(Error::AlreadyExists {
                    id: existing.job.id,
                });
            }
            out.push(None);
            replays.push(existing);
        }
        let mut replays = match tx {
            Some(mut tx) => {
                let replays = complete(&mut tx, replays).await?;
                tx.commit().await.map_err(db)?;
                replays
            }
            None => Vec::new(),
        }
        .into_iter();
        if !inserted.is_empty() {
            self.inner.notifier.work_available();
        }
        Ok(out
            .into_iter()
            .map(|new| match new {
                Some(job) => Inserted { job, created: true },
                None => Inserted {
                    job: replays.next().expect("one replay per taken key"),
                    created: false,
                },
            })
            .collect())
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let row = owned(&mut conn, tenant, id, false).await?;
        Ok(one(complete(&mut conn, vec![row]).await?))
    }

    async fn list(&self, tenant: &TenantId, params: ListParams) -> Result<JobPage> {
        let limit = params.limit.clamp(1, 1000);
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let found = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE tenant = $1 AND ($2::uuid IS NULL OR id < $2) \
              AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR job_type = $4) \
              ORDER BY id DESC LIMIT $5"
        ))
        .bind(tenant.as_str())
        .bind(params.before.map(uuid))
        .bind(params.status.map(|s| s.as_str()))
        .bind(params.job_type.as_ref().map(|t| t.as_str()))
        .bind(limit as i64 + 1)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let more = found.len() > limit;
        let rows = found
            .iter()
            .take(limit)
            .map(decode_job)
            .collect::<Result<Vec<_>>>()?;
        let jobs = complete(&mut conn, rows).await?;
        let next = if more {
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        Ok(JobPage { jobs, next })
    }

    async fn events(&self, tenant: &TenantId, id: JobId, params: EventParams) -> Result<EventPage> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let owned: Option<(String,)> =
            sqlx::query_as("SELECT status FROM jobworks_jobs WHERE id = $1 AND tenant = $2")
                .bind(uuid(id))
                .bind(tenant.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
        let terminal = match owned {
            Some((st,)) => status(BACKEND, &st)?.is_terminal(),
            None => return Err(Error::NotFound { id }),
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM jobworks_events WHERE job_id = $1 AND seq > $2 AND ($3 OR visibility = 'public') \
              ORDER BY seq LIMIT $4"
        ))
        .bind(uuid(id))
        .bind(i64::try_from(params.after).unwrap_or(i64::MAX))
        .bind(params.include_internal)
        .bind(params.limit.clamp(1, 1000) as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let events = rows
            .iter()
            .map(|r| decode_event(r).map(|(_, e)| e))
            .collect::<Result<_>>()?;
        Ok(EventPage { events, terminal })
    }

    async fn claim(&self, params: ClaimParams) -> Result<Claimed> {
        let now = self.inner.clock.now();
        let ttl = chrono::Duration::from_std(params.lease_ttl)
            .map_err(|_| Error::invalid("lease_ttl", "too long"))?;
        let types: Option<Vec<String>> = params
            .types
            .as_ref()
            .map(|t| t.iter().map(ToString::to_string).collect());
        // One statement, committed on its own. It applies `start_attempt` in SQL (running,
        // one more attempt, started now, progress cleared, a `started` event "attempt N")
        // and the conformance suite holds it to the same results as the other backends.
        // Its commit does not wait for the disk: a claim lost in a server crash leaves the
        // job queued without a lease, so it runs again and the lost lease can write
        // nothing; a later synchronous commit (a finish) flushes it anyway.
        let found = sqlx::query(concat!(
            "WITH picked AS (
                SELECT id FROM jobworks_jobs
                WHERE status = 'queued' AND run_at <= $1 AND ($2::text[] IS NULL OR job_type = ANY($2))
                ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
            ), claimed AS (
                UPDATE jobworks_jobs j SET status = 'running', attempts = j.attempts + 1,
                    started_at = $1, progress = NULL, updated_at = $1, revision = j.revision + 1,
                    event_seq = j.event_seq + 1, lease_id = gen_random_uuid(), lease_expires_at = $4
                FROM picked WHERE j.id = picked.id
                RETURNING j.*
            ), started AS (
                INSERT INTO jobworks_events (job_id, seq, kind, visibility, message, created_at)
                SELECT id, event_seq, 'started', 'public', 'attempt ' || attempts, $1 FROM claimed
            ), told AS (
                SELECT pg_notify($5, string_agg(id::text, ',')) FROM claimed HAVING count(*) > 0
            ), relaxed AS (
                SELECT set_config('synchronous_commit', 'off', true)
            )
            SELECT ",
            job_columns!(),
            " FROM claimed, (SELECT count(*) FROM told) AS t, relaxed
            ORDER BY priority DESC, run_at, id"
        ))
        .bind(now)
        .bind(&types)
        .bind(params.limit as i64)
        .bind(now + ttl)
        .bind(self.channel())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut jobs = Vec::with_capacity(found.len());
        let mut retried = Vec::new();
        for row in &found {
            let row = decode_job(row)?;
            let (lease_id, expires_at) = row
                .lease
                .ok_or_else(|| crate::sql::corrupt(BACKEND, "a claimed job has no lease"))?;
            let lease = Lease {
                job_id: row.job.id,
                lease_id,
                expires_at,
            };
            let event = NewEvent::new(EventKind::Started, format!("attempt {}", row.job.attempts))
                .into_event(row.event_seq, now);
            // Only the `queued` event comes before a first claim's `started`: a job with
            // more ran before (a retry, or a release that gave its attempt back).
            if row.event_seq > 2 {
                retried.push(jobs.len());
            }
            let mut job = row.job.clone();
            job.latest_event = Some(event);
            jobs.push((job, lease, row));
        }
        // A job claimed before may have artifacts from earlier attempts.
        if !retried.is_empty() {
            let mut conn = self.pool.acquire().await.map_err(db)?;
            for i in retried {
                let (job, _, row) = &mut jobs[i];
                let full = one(complete(
                    &mut conn,
                    vec![JobRow {
                        job: job.clone(),
                        event_seq: row.event_seq,
                        lease: row.lease,
                        has_artifacts: true,
                    }],
                )
                .await?);
                job.artifacts = full.artifacts;
            }
        }
        let next_run_at = if jobs.len() < params.limit {
            sqlx::query_scalar(
                "SELECT MIN(run_at) FROM jobworks_jobs WHERE status = 'queued' AND run_at > $1 \
                 AND ($2::text[] IS NULL OR job_type = ANY($2))",
            )
            .bind(now)
            .bind(&types)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?
        } else {
            None
        };
        for (job, _, _) in &jobs {
            self.inner.notifier.job_changed(job.id);
        }
        let jobs = jobs
            .into_iter()
            .map(|(job, lease, _)| ClaimedJob { job, lease })
            .collect();
        Ok(Claimed { jobs, next_run_at })
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<LeaseStatus> {
        let now = self.inner.clock.now();
        let expires_at =
            now + chrono::Duration::from_std(ttl).map_err(|_| Error::invalid("ttl", "too long"))?;
        let cancel_requested: Option<bool> = sqlx::query_scalar(
            "UPDATE jobworks_jobs SET lease_expires_at = $1 \
             WHERE id = $2 AND status = 'running' AND lease_id = $3 AND lease_expires_at > $4 \
             RETURNING cancel_requested",
        )
        .bind(expires_at)
        .bind(uuid(lease.job_id))
        .bind(Uuid::from_u128(lease.lease_id))
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match cancel_requested {
            Some(cancel_requested) => Ok(LeaseStatus {
                expires_at,
                cancel_requested,
            }),
            None => Err(Error::LeaseLost { id: lease.job_id }),
        }
    }

    async fn append(&self, lease: &Lease, append: Append) -> Result<Event> {
        let now = self.inner.clock.now();
        let mut tx = self.begin().await?;
        let mut row = leased(&mut tx, lease, now).await?;
        if let Some(progress) = append.progress {
            row.job.progress = Some(progress);
        }
        if let Some(a) = &append.artifact {
            sqlx::query(
                "INSERT INTO jobworks_artifacts
                     (job_id, name, kind, role, content_type, size_bytes, checksum, metadata, created_at, attempt)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10)
                 ON CONFLICT (job_id, name) DO UPDATE SET kind = EXCLUDED.kind, role = EXCLUDED.role,
                     content_type = EXCLUDED.content_type, size_bytes = EXCLUDED.size_bytes,
                     checksum = EXCLUDED.checksum, metadata = EXCLUDED.metadata,
                     created_at = EXCLUDED.created_at, attempt = EXCLUDED.attempt",
            )
            .bind(uuid(lease.job_id))
            .bind(&a.name)
            .bind(&a.kind)
            .bind(a.role.as_str())
            .bind(&a.content_type)
            .bind(a.size_bytes as i64)
            .bind(&a.checksum)
            .bind(json_text(&a.metadata))
            .bind(a.created_at)
            .bind(i32::try_from(a.attempt).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        let event = number(&mut row, append.event, now);
        write_back(
            &mut tx,
            &[&row],
            &[(row.job.id, &event)],
            self.channel(),
            &row.job.id.to_string(),
            None,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        self.inner.notifier.job_changed(lease.job_id);
        Ok(event)
    }

    async fn finish(&self, lease: &Lease, outcome: Finish) -> Result<Job> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = super::batch::Request {
            lease: *lease,
            outcome,
            reply,
        };
        let gone = || Error::Unavailable {
            backend: BACKEND,
            source: "the finish batcher has stopped".into(),
        };
        self.finishes.send(request).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let now = self.inner.clock.now();
        let mut tx = self.begin().await?;
        let mut row = owned(&mut tx, tenant, id, true).await?;
        let job = match cancel_plan(&mut row.job, now)? {
            Some(event) => {
                let event = number(&mut row, event, now);
                self.commit_one(tx, row, &event, &id.to_string()).await?
            }
            None => {
                let job = one(complete(&mut tx, vec![row]).await?);
                tx.commit().await.map_err(db)?;
                job
            }
        };
        self.inner.notifier.job_changed(id);
        Ok(job)
    }

    async fn reap(&self, params: ReapParams) -> Result<ReapReport> {
        let now = self.inner.clock.now();
        let mut tx = self.begin().await?;
        let found = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE status = 'running' AND lease_expires_at <= $1 \
              ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"
        ))
        .bind(now)
        .bind(params.limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut report = ReapReport::default();
        let mut rows = Vec::with_capacity(found.len());
        let mut events = Vec::with_capacity(found.len());
        for row in &found {
            let mut row = decode_job(row)?;
            let job = &row.job;
            let plan = plan_reap(job.attempts, job.max_attempts, job.cancel_requested);
            report.count(plan.status);
            let event = apply_plan(&mut row.job, plan, None, now);
            row.lease = None;
            events.push(number(&mut row, event, now));
            rows.push(row);
        }
        if !rows.is_empty() {
            let refs: Vec<&JobRow> = rows.iter().collect();
            let event_refs: Vec<(JobId, &Event)> =
                rows.iter().map(|r| r.job.id).zip(events.iter()).collect();
            let mut payload = rows
                .iter()
                .map(|r| r.job.id.to_string())
                .collect::<Vec<_>>()
                .join(",");
            if report.requeued > 0 {
                payload.insert_str(0, "w,");
            }
            write_back(&mut tx, &refs, &event_refs, self.channel(), &payload, None).await?;
        }
        tx.commit().await.map_err(db)?;
        for row in &rows {
            self.inner.notifier.job_changed(row.job.id);
        }
        if report.requeued > 0 {
            self.inner.notifier.work_available();
        }
        Ok(report)
    }

    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
        let mut tx = self.begin().await?;
        let doomed: Vec<(Uuid, String)> = sqlx::query_as(
            "DELETE FROM jobworks_jobs WHERE id IN (
                 SELECT id FROM jobworks_jobs WHERE completed_at < $1
                     AND status IN ('completed', 'failed', 'cancelled')
                 LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id, tenant",
        )
        .bind(params.completed_before)
        .bind(params.limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let ids: Vec<Uuid> = doomed.iter().map(|(id, _)| *id).collect();
        for sql in [
            "DELETE FROM jobworks_events WHERE job_id = ANY($1)",
            "DELETE FROM jobworks_artifacts WHERE job_id = ANY($1)",
        ] {
            sqlx::query(sql)
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        doomed
            .into_iter()
            .map(|(id, tenant)| Ok((TenantId::new(tenant)?, JobId::from_u128(id.as_u128()))))
            .collect()
    }

    async fn stats(&self) -> Result<QueueStats> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM jobworks_jobs GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        let mut stats = QueueStats::default();
        for (st, n) in rows {
            stats.add(status(BACKEND, &st)?, n as u64);
        }
        Ok(stats)
    }
}
