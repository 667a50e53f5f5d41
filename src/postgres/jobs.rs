//! The [`JobStore`] implementation of [`PostgresStore`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::types::Uuid;

use super::db::{Sql, Tx};
use super::rows::{
    JobRow, complete, decode_event, decode_job, event_columns, job_columns, stored, uuid,
};
use super::{BACKEND, PostgresStore, db};
use crate::job::{Job, JobId, QueueName, ScheduleId, TenantId};
use crate::schedule::Schedule;
use crate::sql::{json_text, parse_json, status};
use crate::store::{
    ClaimParams, Claimed, Committed, EngineBeat, EventPage, EventParams, JobPage, JobStore,
    LeaseChange, ListParams, MinuteCounts, NewRecord, Notifier, PurgeParams, Queue, QueuePatch,
    QueueSettings, QueueStats, Quota, Stored, Taken, Write,
};
use crate::{Error, Result};

/// The records of `ids` (of `tenant`, when given) as `conn` sees them.
pub(super) async fn load_in(
    conn: &mut PgConnection,
    sql: Sql,
    tenant: Option<&TenantId>,
    ids: &[JobId],
) -> Result<Vec<Stored>> {
    let found = sql
        .query(concat!(
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
    stored(conn, sql, rows).await
}

/// Loads the row of job `id` if it belongs to `tenant`. The tenant is part of the lookup,
/// so another tenant's row is never read (nor its input decoded), and costs what a
/// missing one does.
async fn owned(conn: &mut PgConnection, sql: Sql, tenant: &TenantId, id: JobId) -> Result<JobRow> {
    let row = sql
        .query(concat!(
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
    /// Starts a transaction, cancel safely ([`db::Db::begin`](super::db::Db::begin)).
    pub(super) async fn begin(&self) -> Result<Tx> {
        self.db.begin().await
    }

    /// How the store's statements are built.
    pub(super) fn sql(&self) -> Sql {
        self.inner.sql
    }

    pub(super) fn channel(&self) -> &str {
        &self.inner.channel
    }
}

/// Whether a database error is a detected deadlock (SQLSTATE 40P01).
fn deadlock(error: &(dyn std::error::Error + 'static)) -> bool {
    error
        .downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01")
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
        self.insert_records(records, &[]).await
    }

    async fn insert_within(&self, records: Vec<NewRecord>, quotas: &[Quota]) -> Result<Vec<Taken>> {
        self.insert_records(records, quotas).await
    }

    async fn load(&self, tenant: Option<&TenantId>, ids: &[JobId]) -> Result<Vec<Stored>> {
        let mut conn = self.db.conn().await?;
        let found = load_in(&mut conn, self.sql(), tenant, ids).await?;
        conn.done().await?;
        Ok(found)
    }

    async fn load_expired(&self, limit: usize) -> Result<Vec<Stored>> {
        let now = self.inner.clock.now();
        let mut conn = self.db.conn().await?;
        let found = self
            .sql()
            .query(concat!(
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
        let expired = stored(&mut conn, self.sql(), rows).await?;
        conn.done().await?;
        Ok(expired)
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

    async fn commit_all(&self, writes: Vec<Write>) -> Result<Committed> {
        if writes.is_empty() {
            return Ok(Committed::Applied);
        }
        // One statement, so one transaction: it writes every row or none (and is
        // announced only once it did; two writes about one job lock one row, fewer than
        // the writes, so they are a conflict). Two such statements that lock the same rows take
        // them in one order; should the server still see a deadlock, nothing was written.
        let mut conn = self.db.conn().await?;
        let refs: Vec<&Write> = writes.iter().collect();
        let saved = match super::rows::save(&mut conn, &refs, &self.inner, true).await {
            Ok(saved) => saved,
            Err(Error::Backend { source, .. }) if deadlock(&*source) => {
                return Ok(Committed::Conflict);
            }
            Err(e) => return Err(e),
        };
        conn.done().await?;
        saved.announce(&self.inner);
        Ok(if saved.ids.len() == writes.len() {
            Committed::Applied
        } else {
            Committed::Conflict
        })
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let mut conn = self.db.conn().await?;
        let row = owned(&mut conn, self.sql(), tenant, id).await?;
        let job = one(complete(&mut conn, self.sql(), vec![row]).await?);
        conn.done().await?;
        Ok(job)
    }

    async fn list(&self, tenant: Option<&TenantId>, params: ListParams) -> Result<JobPage> {
        let limit = params.limit.clamp(1, 1000);
        let mut conn = self.db.conn().await?;
        // A tenant's jobs are read through its index, a workflow's through their own.
        macro_rules! filtered {
            ($tenant:literal, $scope:literal) => {
                concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM jobworks_jobs WHERE ",
                    $tenant,
                    " AND ($2::uuid IS NULL OR id < $2) \
                      AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR job_type = $4) \
                      AND ($6::text IS NULL OR queue = $6) ",
                    $scope,
                    " ORDER BY id DESC LIMIT $5"
                )
            };
        }
        macro_rules! scoped {
            ($tenant:literal) => {
                match (params.workflow, params.schedule) {
                    (Some(_), _) => filtered!(
                        $tenant,
                        "AND workflow_id = $7 AND ($8::uuid IS NULL OR schedule_id = $8)"
                    ),
                    (None, Some(_)) => {
                        filtered!($tenant, "AND $7::uuid IS NULL AND schedule_id = $8")
                    }
                    (None, None) => filtered!($tenant, "AND $7::uuid IS NULL AND $8::uuid IS NULL"),
                }
            };
        }
        let sql = match tenant {
            Some(_) => scoped!("tenant = $1"),
            None => scoped!("$1::text IS NULL"),
        };
        let found = self
            .sql()
            .query(sql)
            .bind(tenant.map(TenantId::as_str))
            .bind(params.before.map(uuid))
            .bind(params.status.map(|s| s.as_str()))
            .bind(params.job_type.as_ref().map(|t| t.as_str()))
            .bind(limit as i64 + 1)
            .bind(params.queue.as_ref().map(|q| q.as_str()))
            .bind(params.workflow.map(|w| Uuid::from_u128(w.to_u128())))
            .bind(params.schedule.map(|s| Uuid::from_u128(s.to_u128())))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let more = found.len() > limit;
        let rows = found
            .iter()
            .take(limit)
            .map(decode_job)
            .collect::<Result<Vec<_>>>()?;
        let jobs = complete(&mut conn, self.sql(), rows).await?;
        conn.done().await?;
        let next = if more {
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        Ok(JobPage { jobs, next })
    }

    async fn events(&self, tenant: &TenantId, id: JobId, params: EventParams) -> Result<EventPage> {
        let mut conn = self.db.conn().await?;
        let owned: Option<(String,)> = self
            .sql()
            .query_as("SELECT status FROM jobworks_jobs WHERE id = $1 AND tenant = $2")
            .bind(uuid(id))
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        let terminal = match owned {
            Some((st,)) => status(BACKEND, &st)?.is_terminal(),
            None => return Err(Error::NotFound { id }),
        };
        let rows = self.sql().query(concat!(
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
        conn.done().await?;
        let events = rows
            .iter()
            .map(|r| decode_event(r).map(|(_, e)| e))
            .collect::<Result<_>>()?;
        Ok(EventPage { events, terminal })
    }

    async fn claim(&self, params: ClaimParams) -> Result<Claimed> {
        self.claim_due(params).await
    }

    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
        let mut tx = self.begin().await?;
        // No row locks taken to pick the rows (each would be a WAL record): the delete
        // checks the condition again on the row's latest version, so a job retried or
        // changed meanwhile stays.
        let doomed: Vec<(Uuid, String)> = self
            .sql()
            .query_as(
                "DELETE FROM jobworks_jobs WHERE id IN (
                 SELECT id FROM jobworks_jobs WHERE completed_at < $1
                     AND status IN ('completed', 'failed', 'cancelled')
                 LIMIT $2)
                 AND completed_at < $1 AND status IN ('completed', 'failed', 'cancelled')
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
            self.sql()
                .query(sql)
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

    async fn remove(&self, tenant: &TenantId, id: JobId, revision: u64) -> Result<bool> {
        // One statement: the guarded delete of the row, and its events and artifact
        // records only if the row went.
        let mut conn = self.db.conn().await?;
        let (removed,): (bool,) = self
            .sql()
            .query_as(
                "WITH gone AS (
                DELETE FROM jobworks_jobs WHERE id = $1 AND tenant = $2 AND revision = $3
                RETURNING id
            ), events AS (
                DELETE FROM jobworks_events WHERE job_id IN (SELECT id FROM gone) RETURNING 1
            ), records AS (
                DELETE FROM jobworks_artifacts WHERE job_id IN (SELECT id FROM gone) RETURNING 1
            )
            SELECT EXISTS (SELECT 1 FROM gone)
                FROM (SELECT count(*) FROM events) AS e, (SELECT count(*) FROM records) AS r",
            )
            .bind(uuid(id))
            .bind(tenant.as_str())
            .bind(revision as i64)
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        Ok(removed)
    }

    async fn queue_stats(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>> {
        self.counts_by_queue(tenant).await
    }

    async fn open_counts(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>> {
        self.counts_of_open(tenant).await
    }

    async fn queues(&self) -> Result<Vec<Queue>> {
        self.all_queues().await
    }

    async fn update_queue(&self, name: &QueueName, patch: &QueuePatch) -> Result<QueueSettings> {
        self.patch_queue(name, patch).await
    }

    async fn schedules(&self, tenant: Option<&TenantId>) -> Result<Vec<Schedule>> {
        let mut conn = self.db.conn().await?;
        let bodies: Vec<String> = self
            .sql()
            .query_scalar(
                "SELECT body::text FROM jobworks_schedules WHERE $1::text IS NULL OR tenant = $1 \
             ORDER BY id",
            )
            .bind(tenant.map(TenantId::as_str))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        bodies.iter().map(|b| parse_json(BACKEND, b)).collect()
    }

    async fn schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<Option<Schedule>> {
        let mut conn = self.db.conn().await?;
        let body: Option<String> = self
            .sql()
            .query_scalar("SELECT body::text FROM jobworks_schedules WHERE id = $1 AND tenant = $2")
            .bind(Uuid::from_u128(id.to_u128()))
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        body.map(|b| parse_json(BACKEND, &b)).transpose()
    }

    async fn put_schedule(&self, schedule: &Schedule, expected: Option<u64>) -> Result<bool> {
        let query = match expected {
            None => self.sql().query(
                "INSERT INTO jobworks_schedules (id, tenant, revision, body) \
                 VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (id) DO NOTHING",
            ),
            Some(_) => self.sql().query(
                "UPDATE jobworks_schedules SET revision = $3, body = $4::jsonb \
                 WHERE id = $1 AND tenant = $2 AND revision = $5",
            ),
        };
        let mut conn = self.db.conn().await?;
        let done = query
            .bind(Uuid::from_u128(schedule.id.to_u128()))
            .bind(schedule.tenant.as_str())
            .bind(schedule.revision as i64)
            .bind(json_text(schedule))
            .bind(expected.map(|r| r as i64))
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<bool> {
        let mut conn = self.db.conn().await?;
        let done = self
            .sql()
            .query("DELETE FROM jobworks_schedules WHERE id = $1 AND tenant = $2")
            .bind(Uuid::from_u128(id.to_u128()))
            .bind(tenant.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn beat(&self, beat: &EngineBeat) -> Result<()> {
        // Seen on the server's clock, like every other time this store keeps.
        let mut conn = self.db.conn().await?;
        self.sql()
            .query(
                "WITH beat AS (INSERT INTO jobworks_engines (id, seen_at, body) \
             VALUES ($1, now(), $2::jsonb) \
             ON CONFLICT (id) DO UPDATE SET seen_at = now(), body = excluded.body) \
             DELETE FROM jobworks_engines WHERE seen_at < now() - interval '1 hour' AND id <> $1",
            )
            .bind(&beat.id)
            .bind(json_text(beat))
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        Ok(())
    }

    async fn engines(&self, since: DateTime<Utc>) -> Result<Option<Vec<EngineBeat>>> {
        let mut conn = self.db.conn().await?;
        let rows: Vec<(String, DateTime<Utc>)> = self
            .sql()
            .query_as(
                "SELECT body::text, seen_at FROM jobworks_engines WHERE seen_at >= $1 \
             ORDER BY seen_at DESC",
            )
            .bind(since)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        let mut all = Vec::with_capacity(rows.len());
        for (body, seen_at) in rows {
            let mut beat: EngineBeat = parse_json(BACKEND, &body)?;
            beat.seen_at = seen_at;
            all.push(beat);
        }
        Ok(Some(all))
    }

    async fn finished_by_minute(
        &self,
        tenant: Option<&TenantId>,
        since: DateTime<Utc>,
    ) -> Result<Option<Vec<MinuteCounts>>> {
        macro_rules! by_minute {
            ($tenant:literal) => {
                concat!(
                    "SELECT floor(extract(epoch FROM completed_at) / 60)::bigint, \
                     count(*) FILTER (WHERE status = 'completed'), \
                     count(*) FILTER (WHERE status = 'failed') \
                     FROM jobworks_jobs WHERE completed_at >= $1 AND ",
                    $tenant,
                    " AND status IN ('completed', 'failed') GROUP BY 1 ORDER BY 1"
                )
            };
        }
        let sql = match tenant {
            Some(_) => by_minute!("tenant = $2"),
            None => by_minute!("$2::text IS NULL"),
        };
        let mut conn = self.db.conn().await?;
        let rows: Vec<(i64, i64, i64)> = self
            .sql()
            .query_as(sql)
            .bind(since)
            .bind(tenant.map(TenantId::as_str))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        Ok(Some(
            rows.into_iter()
                .map(|(minute, completed, failed)| MinuteCounts {
                    minute: DateTime::from_timestamp(minute.saturating_mul(60), 0)
                        .unwrap_or_default(),
                    completed: completed as u64,
                    failed: failed as u64,
                })
                .collect(),
        ))
    }
}
