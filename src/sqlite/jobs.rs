//! The [`JobStore`] implementation of [`SqliteStore`].

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::rows::{
    EVENT_COLUMNS, JobRow, complete, decode_event, id_bytes, job_columns, load, load_many,
    load_owned, owned_status, push_event, put_artifact, save, time, u128_from,
};
use super::{BACKEND, SqliteStore, db};
use crate::job::{Event, EventKind, Job, JobId, JobStatus, NewEvent, TenantId};
use crate::sql::{json_text, micros};
use crate::store::{
    Append, ClaimParams, Claimed, ClaimedJob, EventPage, EventParams, Finish, Inserted, JobPage,
    JobStore, Lease, LeaseStatus, ListParams, Notifier, PurgeParams, QueueStats, ReapParams,
    ReapReport, apply_plan, cancel_plan, plan_finish, plan_reap, start_attempt,
};
use crate::{Error, Result};

/// The row of a running job whose current, unexpired lease is `lease`.
fn leased(conn: &Connection, lease: &Lease, now: DateTime<Utc>) -> Result<JobRow> {
    match load(conn, lease.job_id)? {
        Some(row) if lease.is_current(row.job.status, row.lease, now) => Ok(row),
        _ => Err(Error::LeaseLost { id: lease.job_id }),
    }
}

fn existing_by_key(conn: &Connection, job: &Job, key: &str) -> Result<Option<JobRow>> {
    let found = load_many(
        conn,
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE tenant = ?1 AND idempotency_key = ?2"
        ),
        params![job.tenant.as_str(), key],
    )?;
    Ok(found.into_iter().next())
}

fn insert_all(conn: &Connection, jobs: Vec<Job>, now: DateTime<Utc>) -> Result<Vec<Inserted>> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO jobworks_jobs (id, tenant, job_type, input, status, attempts, max_attempts, \
             priority, run_at, created_at, updated_at, idempotency_key, cancel_requested, revision, event_seq) \
             VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?6, ?7, ?8, ?9, ?10, 0, 1, 1)",
        )
        .map_err(db)?;
    for job in jobs {
        if let Some(key) = &job.idempotency_key
            && let Some(existing) = existing_by_key(conn, &job, key)?
        {
            if !existing.job.same_request(&job) {
                return Err(Error::AlreadyExists {
                    id: existing.job.id,
                });
            }
            out.push(Inserted {
                job: complete(conn, existing)?,
                created: false,
            });
            continue;
        }
        stmt.execute(params![
            id_bytes(job.id),
            job.tenant.as_str(),
            job.job_type.as_str(),
            json_text(&job.input),
            job.max_attempts,
            job.priority,
            micros(job.run_at),
            micros(job.created_at),
            micros(now),
            job.idempotency_key.as_deref(),
        ])
        .map_err(db)?;
        let mut row = JobRow {
            job: Job {
                status: JobStatus::Queued,
                revision: 0,
                updated_at: now,
                ..job
            },
            event_seq: 0,
            lease: None,
        };
        let event = push_event(
            conn,
            &mut row,
            NewEvent::new(EventKind::Queued, "queued"),
            now,
        )?;
        row.job.latest_event = Some(event);
        out.push(Inserted {
            job: row.job,
            created: true,
        });
    }
    Ok(out)
}

fn claim_due(conn: &Connection, params: &ClaimParams, now: DateTime<Utc>) -> Result<Claimed> {
    let ttl = chrono::Duration::from_std(params.lease_ttl)
        .map_err(|_| Error::invalid("lease_ttl", "too long"))?;
    let types = params
        .types
        .as_ref()
        .map(|t| serde_json::to_string(t).expect("serialises"));
    let rows = load_many(
        conn,
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE status = 'queued' AND run_at <= ?1 \
              AND (?2 IS NULL OR job_type IN (SELECT value FROM json_each(?2))) \
              ORDER BY priority DESC, run_at, id LIMIT ?3"
        ),
        params![micros(now), &types, params.limit as i64],
    )?;
    let mut jobs = Vec::with_capacity(rows.len());
    for mut row in rows {
        // Only the `queued` event comes before a first claim: a job with more ran before
        // (a retry, or a release that gave its attempt back) and may have artifacts.
        let retried = row.event_seq > 1;
        let lease = Lease {
            expires_at: now + ttl,
            ..Lease::new(row.job.id, params.lease_ttl)
        };
        row.lease = Some((lease.lease_id, lease.expires_at));
        let started = start_attempt(&mut row.job, now);
        let event = push_event(conn, &mut row, started, now)?;
        save(conn, &row)?;
        let mut job = if retried {
            complete(conn, row)?
        } else {
            row.job
        };
        job.latest_event = Some(event);
        jobs.push(ClaimedJob { job, lease });
    }
    let next_run_at = if jobs.len() < params.limit {
        let next: Option<i64> = conn
            .prepare_cached(
                "SELECT MIN(run_at) FROM jobworks_jobs WHERE status = 'queued' AND run_at > ?1 \
                 AND (?2 IS NULL OR job_type IN (SELECT value FROM json_each(?2)))",
            )
            .and_then(|mut s| s.query_row(params![micros(now), types], |r| r.get(0)))
            .map_err(db)?;
        next.map(time).transpose()?
    } else {
        None
    };
    Ok(Claimed { jobs, next_run_at })
}

fn reap_expired(
    conn: &Connection,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<(ReapReport, Vec<JobId>)> {
    let rows = load_many(
        conn,
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobworks_jobs WHERE status = 'running' AND lease_expires_at <= ?1 \
              ORDER BY lease_expires_at LIMIT ?2"
        ),
        params![micros(now), limit as i64],
    )?;
    let mut report = ReapReport::default();
    let mut changed = Vec::with_capacity(rows.len());
    for mut row in rows {
        let job = &row.job;
        let plan = plan_reap(job.attempts, job.max_attempts, job.cancel_requested);
        report.count(plan.status);
        let event = apply_plan(&mut row.job, plan, None, now);
        row.lease = None;
        push_event(conn, &mut row, event, now)?;
        save(conn, &row)?;
        changed.push(row.job.id);
    }
    Ok((report, changed))
}

fn purge_before(conn: &Connection, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
    let doomed: Vec<(Vec<u8>, String)> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, tenant FROM jobworks_jobs WHERE completed_at < ?1 \
                 AND status IN ('completed', 'failed', 'cancelled') LIMIT ?2",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(
                params![micros(params.completed_before), params.limit as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)?
    };
    let mut purged = Vec::with_capacity(doomed.len());
    for (id, tenant) in doomed {
        for sql in [
            "DELETE FROM jobworks_events WHERE job_id = ?1",
            "DELETE FROM jobworks_artifacts WHERE job_id = ?1",
            "DELETE FROM jobworks_jobs WHERE id = ?1",
        ] {
            conn.prepare_cached(sql)
                .and_then(|mut s| s.execute(params![id]))
                .map_err(db)?;
        }
        purged.push((TenantId::new(tenant)?, JobId::from_u128(u128_from(&id)?)));
    }
    Ok(purged)
}

#[async_trait]
impl JobStore for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    fn clock(&self) -> &crate::Clock {
        &self.clock
    }

    async fn insert(&self, jobs: Vec<Job>) -> Result<Vec<Inserted>> {
        let now = self.clock.now();
        let out = self
            .writer
            .write(move |conn| insert_all(conn, jobs, now))
            .await?;
        if out.iter().any(|i| i.created) {
            self.notifier.work_available();
        }
        Ok(out)
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let tenant = tenant.clone();
        self.read(move |conn| complete(conn, load_owned(conn, &tenant, id)?))
            .await
    }

    async fn list(&self, tenant: &TenantId, params: ListParams) -> Result<JobPage> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let limit = params.limit.clamp(1, 1000);
            let before = params.before.map_or([0xff; 16], id_bytes);
            let rows = load_many(
                conn,
                concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM jobworks_jobs WHERE tenant = ?1 AND (id < ?2 OR ?3) \
                      AND (?4 IS NULL OR status = ?4) AND (?5 IS NULL OR job_type = ?5) \
                      ORDER BY id DESC LIMIT ?6"
                ),
                params![
                    tenant.as_str(),
                    before,
                    params.before.is_none(),
                    params.status.map(|s| s.as_str()),
                    params.job_type.as_ref().map(|t| t.as_str()),
                    limit as i64 + 1
                ],
            )?;
            let more = rows.len() > limit;
            let jobs = rows
                .into_iter()
                .take(limit)
                .map(|row| complete(conn, row))
                .collect::<Result<Vec<_>>>()?;
            let next = if more {
                jobs.last().map(|j| j.id)
            } else {
                None
            };
            Ok(JobPage { jobs, next })
        })
        .await
    }

    async fn events(&self, tenant: &TenantId, id: JobId, params: EventParams) -> Result<EventPage> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let terminal = owned_status(conn, &tenant, id)?.is_terminal();
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM jobworks_events \
                 WHERE job_id = ?1 AND seq > ?2 AND (?3 OR visibility = 'public') ORDER BY seq LIMIT ?4"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
            let mut rows = stmt
                .query(params![
                    id_bytes(id),
                    i64::try_from(params.after).unwrap_or(i64::MAX),
                    params.include_internal,
                    params.limit.clamp(1, 1000) as i64
                ])
                .map_err(db)?;
            let mut events = Vec::new();
            while let Some(row) = rows.next().map_err(db)? {
                events.push(decode_event(row)?);
            }
            Ok(EventPage { events, terminal })
        })
        .await
    }

    async fn claim(&self, params: ClaimParams) -> Result<Claimed> {
        let now = self.clock.now();
        let claimed = self
            .writer
            .write(move |conn| claim_due(conn, &params, now))
            .await?;
        for c in &claimed.jobs {
            self.notifier.job_changed(c.job.id);
        }
        Ok(claimed)
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<LeaseStatus> {
        let now = self.clock.now();
        let ttl = chrono::Duration::from_std(ttl).map_err(|_| Error::invalid("ttl", "too long"))?;
        let lease = *lease;
        self.writer
            .write(move |conn| {
                let row = leased(conn, &lease, now)?;
                let expires_at = now + ttl;
                conn.prepare_cached("UPDATE jobworks_jobs SET lease_expires_at = ?1 WHERE id = ?2")
                    .and_then(|mut s| {
                        s.execute(params![micros(expires_at), id_bytes(lease.job_id)])
                    })
                    .map_err(db)?;
                Ok(LeaseStatus {
                    expires_at,
                    cancel_requested: row.job.cancel_requested,
                })
            })
            .await
    }

    async fn append(&self, lease: &Lease, append: Append) -> Result<Event> {
        let now = self.clock.now();
        let lease = *lease;
        let event = self
            .writer
            .write(move |conn| {
                let mut row = leased(conn, &lease, now)?;
                if let Some(progress) = append.progress {
                    row.job.progress = Some(progress);
                }
                if let Some(artifact) = &append.artifact {
                    put_artifact(conn, lease.job_id, artifact)?;
                }
                let event = push_event(conn, &mut row, append.event, now)?;
                save(conn, &row)?;
                Ok(event)
            })
            .await?;
        self.notifier.job_changed(lease.job_id);
        Ok(event)
    }

    async fn finish(&self, lease: &Lease, outcome: Finish) -> Result<Job> {
        let now = self.clock.now();
        let lease = *lease;
        let job = self
            .writer
            .write(move |conn| {
                let mut row = leased(conn, &lease, now)?;
                let job = &row.job;
                let plan = plan_finish(
                    &outcome,
                    job.attempts,
                    job.max_attempts,
                    job.cancel_requested,
                );
                let event = apply_plan(&mut row.job, plan, Some(&outcome), now);
                row.lease = None;
                push_event(conn, &mut row, event, now)?;
                save(conn, &row)?;
                complete(conn, row)
            })
            .await?;
        self.notifier.job_changed(job.id);
        if job.status == JobStatus::Queued {
            self.notifier.work_available();
        }
        Ok(job)
    }

    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let now = self.clock.now();
        let tenant = tenant.clone();
        let job = self
            .writer
            .write(move |conn| {
                let mut row = load_owned(conn, &tenant, id)?;
                if let Some(event) = cancel_plan(&mut row.job, now)? {
                    push_event(conn, &mut row, event, now)?;
                    save(conn, &row)?;
                }
                complete(conn, row)
            })
            .await?;
        self.notifier.job_changed(id);
        Ok(job)
    }

    async fn reap(&self, params: ReapParams) -> Result<ReapReport> {
        let now = self.clock.now();
        let (report, changed) = self
            .writer
            .write(move |conn| reap_expired(conn, params.limit, now))
            .await?;
        for id in changed {
            self.notifier.job_changed(id);
        }
        if report.requeued > 0 {
            self.notifier.work_available();
        }
        Ok(report)
    }

    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
        self.writer
            .write(move |conn| purge_before(conn, params))
            .await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT status, COUNT(*) FROM jobworks_jobs GROUP BY status")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db)?;
            let mut stats = QueueStats::default();
            for row in rows {
                let (status, n) = row.map_err(db)?;
                stats.add(crate::sql::status(BACKEND, &status)?, n as u64);
            }
            Ok(stats)
        })
        .await
    }
}
