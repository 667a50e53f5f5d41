//! The [`JobStore`] implementation of [`PostgresStore`].

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::types::Uuid;
use sqlx::{PgConnection, Postgres, Transaction};

use super::rows::{
    JobRow, complete, decode_event, decode_job, event_columns, job_columns, stored, uuid,
};
use super::{BACKEND, PostgresStore, db};
use crate::job::{EventKind, Job, JobId, NewEvent, TenantId};
use crate::sql::{json_text, status};
use crate::store::{
    ClaimParams, Claimed, ClaimedJob, Committed, EventPage, EventParams, JobPage, JobStore, Lease,
    LeaseChange, ListParams, NewRecord, Notifier, PurgeParams, QueueStats, Stored, Taken, Write,
};
use crate::{Error, Result};

type Tx = Transaction<'static, Postgres>;

/// Loads the row of job `id` if it belongs to `tenant`. The tenant is part of the lookup,
/// so another tenant's row is never read (nor its input decoded), and costs what a
/// missing one does.
async fn owned(conn: &mut PgConnection, tenant: &TenantId, id: JobId) -> Result<JobRow> {
    let row = sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobworks_jobs WHERE id = $1 AND tenant = $2"
    ))
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

    /// Inserts records in one statement, skipping those whose idempotency key is taken,
    /// and returns the ids inserted. Sends the wake-up when any was. Every first event is
    /// inserted: when a key was taken, the caller rolls the whole statement back.
    async fn insert_rows(
        &self,
        conn: &mut PgConnection,
        records: &[NewRecord],
    ) -> Result<HashSet<Uuid>> {
        let jobs = || records.iter().map(|r| &r.job);
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            "WITH inserted AS (
                INSERT INTO jobworks_jobs (id, tenant, job_type, input, status, attempts, max_attempts,
                    priority, run_at, created_at, updated_at, idempotency_key, cancel_requested,
                    revision, event_seq)
                SELECT u.id, u.tenant, u.job_type, u.input::jsonb, u.status, 0, u.max_attempts,
                    u.priority, u.run_at, u.created_at, u.updated_at, u.key, false, u.revision, u.seq
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[],
                            $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[],
                            $11::timestamptz[], $12::bigint[], $13::bigint[])
                    AS u(id, tenant, job_type, input, max_attempts, priority, run_at, created_at, key,
                         status, updated_at, revision, seq)
                ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                RETURNING id
            ), first AS (
                INSERT INTO jobworks_events (job_id, seq, kind, visibility, message, created_at)
                SELECT e.id, e.seq, e.kind, e.visibility, e.message, e.created_at
                FROM unnest($1::uuid[], $13::bigint[], $14::text[], $15::text[], $16::text[],
                            $17::timestamptz[])
                    AS e(id, seq, kind, visibility, message, created_at)
            ), told AS (
                SELECT pg_notify($18, 'w') FROM inserted HAVING count(*) > 0
            )
            SELECT id FROM inserted, (SELECT count(*) FROM told) AS t",
        )
        .bind(jobs().map(|j| uuid(j.id)).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.tenant.to_string()).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.job_type.to_string()).collect::<Vec<_>>())
        .bind(jobs().map(|j| json_text(&j.input)).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.max_attempts as i32).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.priority).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.run_at).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.created_at).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.idempotency_key.clone()).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.status.as_str()).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.updated_at).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.revision as i64).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.event.seq as i64).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.event.kind.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.event.visibility.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.event.message.to_string()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.event.created_at).collect::<Vec<_>>())
        .bind(self.channel())
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        Ok(inserted.into_iter().collect())
    }

    /// The jobs holding the idempotency keys of `records` that were not inserted.
    async fn holders(
        conn: &mut PgConnection,
        records: &[NewRecord],
        inserted: &HashSet<Uuid>,
    ) -> Result<Vec<Taken>> {
        let left: Vec<(usize, &Job)> = records
            .iter()
            .map(|r| &r.job)
            .enumerate()
            .filter(|(_, j)| !inserted.contains(&uuid(j.id)))
            .collect();
        let found: Vec<(String, String, Uuid)> = sqlx::query_as(
            "SELECT j.tenant, j.idempotency_key, j.id FROM jobworks_jobs j
             JOIN unnest($1::text[], $2::text[]) AS k(tenant, key)
               ON j.tenant = k.tenant AND j.idempotency_key = k.key",
        )
        .bind(
            left.iter()
                .map(|(_, j)| j.tenant.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            left.iter()
                .map(|(_, j)| j.idempotency_key.clone())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let by: HashMap<(&str, &str), Uuid> = found
            .iter()
            .map(|(t, k, id)| ((t.as_str(), k.as_str()), *id))
            .collect();
        Ok(left
            .into_iter()
            .filter_map(|(index, j)| {
                let key = (j.tenant.as_str(), j.idempotency_key.as_deref()?);
                let by = JobId::from_u128(by.get(&key)?.as_u128());
                Some(Taken { index, by })
            })
            .collect())
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

    async fn insert(&self, records: Vec<NewRecord>) -> Result<Vec<Taken>> {
        // Without idempotency keys nothing can conflict: one statement, committed alone.
        if records.iter().all(|r| r.job.idempotency_key.is_none()) {
            let mut conn = self.pool.acquire().await.map_err(db)?;
            self.insert_rows(&mut conn, &records).await?;
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let inserted = self.insert_rows(&mut tx, &records).await?;
        if inserted.len() == records.len() {
            tx.commit().await.map_err(db)?;
            return Ok(Vec::new());
        }
        // All or none: a taken key rolls the others back (and their wake-up with them).
        let taken = Self::holders(&mut tx, &records, &inserted).await?;
        tx.rollback().await.map_err(db)?;
        if taken.is_empty() {
            // The holder went between the insert and the lookup (purged): try again.
            return Err(Error::Unavailable {
                backend: BACKEND,
                source: "an idempotency key was freed while inserting; try again".into(),
            });
        }
        Ok(taken)
    }

    async fn load(&self, tenant: Option<&TenantId>, ids: &[JobId]) -> Result<Vec<Stored>> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let found = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE id = ANY($1) AND ($2::text IS NULL OR tenant = $2)"
        ))
        .bind(ids.iter().map(|&id| uuid(id)).collect::<Vec<_>>())
        .bind(tenant.map(TenantId::as_str))
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let rows = found.iter().map(decode_job).collect::<Result<Vec<_>>>()?;
        stored(&mut conn, rows).await
    }

    async fn load_expired(&self, limit: usize) -> Result<Vec<Stored>> {
        let now = self.inner.clock.now();
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let found = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE status = 'running' AND lease_expires_at <= $1 \
              ORDER BY lease_expires_at LIMIT $2"
        ))
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let rows = found.iter().map(decode_job).collect::<Result<Vec<_>>>()?;
        stored(&mut conn, rows).await
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Committed>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        // Ends of attempts may go to the relaxed batcher; everything else waits for the disk.
        let outcomes = writes.iter().all(|w| w.lease == LeaseChange::Clear);
        let batcher = match &self.outcomes {
            Some(relaxed) if outcomes => relaxed,
            _ => &self.commits,
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || Error::Unavailable {
            backend: BACKEND,
            source: "the commit batcher has stopped".into(),
        };
        batcher
            .send(super::batch::Request { writes, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let row = owned(&mut conn, tenant, id).await?;
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
        let mut rows = Vec::with_capacity(found.len());
        let mut retried = Vec::new();
        for row in &found {
            let row = decode_job(row)?;
            // Only the `queued` event comes before a first claim's `started`: a job with
            // more ran before (a retry, or a release that gave its attempt back) and may
            // have artifacts from earlier attempts.
            if row.event_seq > 2 {
                retried.push(rows.len());
            }
            rows.push(row);
        }
        let mut artifacts = HashMap::new();
        if !retried.is_empty() {
            let mut conn = self.pool.acquire().await.map_err(db)?;
            let earlier: Vec<JobRow> = retried
                .iter()
                .map(|&i| JobRow {
                    job: rows[i].job.clone(),
                    event_seq: rows[i].event_seq,
                    lease: rows[i].lease,
                })
                .collect();
            for job in complete(&mut conn, earlier).await? {
                artifacts.insert(job.id, job.artifacts);
            }
        }
        let mut jobs = Vec::with_capacity(rows.len());
        for mut row in rows {
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
            row.job.latest_event = Some(event);
            row.job.artifacts = artifacts.remove(&row.job.id).unwrap_or_default();
            jobs.push(ClaimedJob {
                job: row.job,
                lease,
                next_seq: row.event_seq + 1,
            });
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
        Ok(Claimed { jobs, next_run_at })
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
