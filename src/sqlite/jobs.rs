//! The [`JobStore`] implementation of [`SqliteStore`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use rusqlite::OptionalExtension;

use super::rows::{
    EVENT_COLUMNS, JobRow, complete, decode_event, id_bytes, insert_event, job_columns, load,
    load_many, load_owned, owned_status, save, stored, time, u128_from,
};
use super::{BACKEND, SqliteStore, activity, db, queues, schedules};
use crate::Result;
use crate::job::{Job, JobId, QueueName, ScheduleId, TenantId};
use crate::schedule::Schedule;
use crate::sql::{json_text, micros};
use crate::store::{
    ClaimParams, Claimed, ClaimedJob, Committed, EngineBeat, EventPage, EventParams, JobPage,
    JobStore, Lease, ListParams, MinuteCounts, NewRecord, Notifier, PurgeParams, Queue, QueuePatch,
    QueueSettings, QueueStats, Quota, Stored, Taken, Write, rules,
};

/// How many unfinished jobs `tenant` has (in `queue`, or in all).
fn unfinished(conn: &Connection, tenant: &TenantId, queue: Option<&QueueName>) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM jobworks_jobs WHERE tenant = ?1 \
             AND status IN ('waiting', 'queued', 'running') AND (?2 IS NULL OR queue = ?2)",
        )
        .and_then(|mut s| {
            s.query_row(
                params![tenant.as_str(), queue.map(QueueName::as_str)],
                |r| r.get(0),
            )
        })
        .map_err(db)?;
    Ok(n as u64)
}

fn insert_all(conn: &Connection, records: &[NewRecord], quotas: &[Quota]) -> Result<Vec<Taken>> {
    let mut taken = Vec::new();
    let mut holder = conn
        .prepare_cached("SELECT id FROM jobworks_jobs WHERE tenant = ?1 AND idempotency_key = ?2")
        .map_err(db)?;
    for (index, r) in records.iter().enumerate() {
        let Some(key) = &r.job.idempotency_key else {
            continue;
        };
        let by: Option<Vec<u8>> = holder
            .query_row(params![r.job.tenant.as_str(), key], |row| row.get(0))
            .optional()
            .map_err(db)?;
        if let Some(by) = by {
            let by = JobId::from_u128(u128_from(&by)?);
            taken.push(Taken { index, by });
        }
    }
    if !taken.is_empty() {
        return Ok(taken);
    }
    // The writer's transaction holds the database: nothing comes between count and insert.
    Quota::check_all(quotas, records.iter().map(|r| &r.job), |tenant, queue| {
        unfinished(conn, tenant, queue)
    })?;
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO jobworks_jobs (id, tenant, job_type, input, status, attempts, max_attempts, \
             priority, run_at, created_at, updated_at, idempotency_key, cancel_requested, revision, event_seq, \
             queue, concurrency_key, parents, workflow_id, workflow, schedule_id, scheduled_for, trace) \
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
             ?19, ?20, ?21)",
        )
        .map_err(db)?;
    for NewRecord { job, event } in records {
        stmt.execute(params![
            id_bytes(job.id),
            job.tenant.as_str(),
            job.job_type.as_str(),
            json_text(&job.input),
            job.status.as_str(),
            job.max_attempts,
            job.priority,
            micros(job.run_at),
            micros(job.created_at),
            micros(job.updated_at),
            job.idempotency_key.as_deref(),
            job.revision as i64,
            event.seq as i64,
            job.queue.as_str(),
            job.concurrency_key.as_deref(),
            (!job.parents.is_empty()).then(|| json_text(&job.parents)),
            job.workflow.as_ref().map(|l| l.id.to_u128().to_be_bytes()),
            job.workflow.as_ref().map(json_text),
            job.schedule_id.map(|s| s.to_u128().to_be_bytes()),
            job.scheduled_for.map(micros),
            job.trace.as_ref().map(json_text),
        ])
        .map_err(db)?;
        insert_event(conn, job.id, event)?;
    }
    Ok(Vec::new())
}

/// The first tenant above `after` (or of all) with queued jobs in `queue`.
fn next_tenant(
    conn: &Connection,
    queue: &str,
    after: Option<&TenantId>,
) -> Result<Option<TenantId>> {
    // Two statements, so that each uses the index's order.
    let first = |mut s: rusqlite::CachedStatement<'_>, p: &[&dyn rusqlite::ToSql]| {
        s.query_row(p, |r| r.get::<_, String>(0)).optional()
    };
    let found = match after {
        None => conn
            .prepare_cached(
                "SELECT tenant FROM jobworks_jobs WHERE queue = ?1 AND status = 'queued' \
                 ORDER BY tenant LIMIT 1",
            )
            .and_then(|s| first(s, params![queue])),
        Some(after) => conn
            .prepare_cached(
                "SELECT tenant FROM jobworks_jobs WHERE queue = ?1 AND status = 'queued' \
                 AND tenant > ?2 ORDER BY tenant LIMIT 1",
            )
            .and_then(|s| first(s, params![queue, after.as_str()])),
    }
    .map_err(db)?;
    found.map(TenantId::new).transpose()
}

fn claim_due(conn: &Connection, params: &ClaimParams, now: DateTime<Utc>) -> Result<Claimed> {
    let expires_at = rules::lease_until(now, params.lease_ttl)?;
    let (settings, tat) = queues::settings(conn, &params.queue)?;
    if settings.paused {
        return Ok(Claimed::default());
    }
    let running = match settings.max_running {
        None => 0,
        Some(_) => queues::running(conn, &params.queue, now)?,
    };
    let plan = rules::ClaimPlan::new(&settings, running, tat, now, params.limit);
    let types = params
        .types
        .as_ref()
        .map(|t| serde_json::to_string(t).expect("serialises"));
    let queue = params.queue.as_str();
    let (rows, full) = if plan.take == 0 {
        let due: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM jobworks_jobs WHERE queue = ?3 \
                 AND status = 'queued' AND run_at <= ?1 \
                 AND (?2 IS NULL OR job_type IN (SELECT value FROM json_each(?2))) LIMIT ?4)",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![micros(now), &types, queue, plan.scan() as i64],
                    |r| r.get(0),
                )
            })
            .map_err(db)?;
        (Vec::new(), plan.full(due as usize))
    } else {
        let due_of = |tenant: &TenantId, n: usize| {
            load_many(
                conn,
                concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM jobworks_jobs WHERE queue = ?4 AND tenant = ?5 \
                      AND status = 'queued' AND run_at <= ?1 \
                      AND (?2 IS NULL OR job_type IN (SELECT value FROM json_each(?2))) \
                      ORDER BY priority DESC, run_at, id LIMIT ?3"
                ),
                params![micros(now), &types, n as i64, queue, tenant.as_str()],
            )
        };
        let (cursor, first, last) = queues::turn(conn, &params.queue)?;
        match (first, last) {
            (None, _) => (Vec::new(), false),
            // One tenant and no key limit: its first due jobs are the picks.
            (Some(first), Some(last))
                if first == last && settings.max_running_per_key.is_none() =>
            {
                let (rows, full) = rules::one_tenant(&plan, due_of(&first, plan.per_tenant())?);
                if !rows.is_empty() && cursor.as_ref() != Some(&first) {
                    queues::set_cursor(conn, &params.queue, &first)?;
                }
                (rows, full)
            }
            _ => claim_in_turn(conn, &params.queue, &plan, &settings, cursor, now, due_of)?,
        }
    };
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        // Only the `queued` event comes before a first claim: a job with more ran before
        // (a retry, or a release that gave its attempt back) and may have artifacts.
        let retried = row.event_seq > 1;
        let stored = stored(conn, row, retried)?;
        let lease = Lease {
            job_id: stored.job.id,
            lease_id: ulid::Ulid::new().0,
            expires_at,
        };
        let write = rules::claim(stored, lease, now)?;
        if !save(conn, &write)? {
            return Err(crate::sql::corrupt(
                BACKEND,
                "a claimed row changed under the writer",
            ));
        }
        jobs.push(ClaimedJob {
            next_seq: write.last_seq() + 1,
            job: *write.job,
            lease,
        });
    }
    if let Some(tat) = plan.tat_after(jobs.len()) {
        queues::set_rate_tat(conn, &params.queue, tat)?;
    }
    let scheduled = if jobs.len() < params.limit {
        let next: Option<i64> = conn
            .prepare_cached(
                "SELECT MIN(run_at) FROM jobworks_jobs WHERE queue = ?3 AND status = 'queued' \
                 AND run_at > ?1 AND (?2 IS NULL OR job_type IN (SELECT value FROM json_each(?2)))",
            )
            .and_then(|mut s| {
                s.query_row(params![micros(now), types, params.queue.as_str()], |r| {
                    r.get(0)
                })
            })
            .map_err(db)?;
        next.map(time).transpose()?
    } else {
        None
    };
    let next_token = plan.next_token(jobs.len());
    Ok(Claimed {
        jobs,
        next_run_at: rules::earliest(scheduled, next_token),
        full,
    })
}

/// The claim's picks from tenants in turn ([`rules::gather`], [`rules::pick`]), and
/// whether a limit held a job back; moves the turn on.
fn claim_in_turn(
    conn: &Connection,
    queue: &QueueName,
    plan: &rules::ClaimPlan,
    settings: &QueueSettings,
    cursor: Option<TenantId>,
    now: DateTime<Utc>,
    due_of: impl FnMut(&TenantId, usize) -> Result<Vec<JobRow>>,
) -> Result<(Vec<JobRow>, bool)> {
    let mut candidates = rules::gather(
        plan,
        cursor.as_ref(),
        |after| next_tenant(conn, queue.as_str(), after),
        due_of,
    )?;
    let jobs: Vec<&Job> = candidates.iter().map(|row| &row.job).collect();
    let mut busy = BTreeMap::new();
    if settings.max_running_per_key.is_some() {
        for key in jobs.iter().filter_map(|job| job.concurrency_key.as_deref()) {
            if !busy.contains_key(key) {
                let n = queues::running_with_key(conn, queue, key, now)?;
                busy.insert(key, n);
            }
        }
    }
    let picks = rules::pick(plan, &jobs, cursor.as_ref(), |key| busy[key]);
    if let Some(last) = picks
        .cursor
        .as_ref()
        .filter(|&c| Some(c) != cursor.as_ref())
    {
        queues::set_cursor(conn, queue, last)?;
    }
    let mut slots: Vec<_> = candidates.drain(..).map(Some).collect();
    let rows: Vec<_> = picks
        .taken
        .iter()
        .filter_map(|&i| slots[i].take())
        .collect();
    Ok((rows, picks.full))
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
        delete_job(conn, &id)?;
        purged.push((TenantId::new(tenant)?, JobId::from_u128(u128_from(&id)?)));
    }
    Ok(purged)
}

/// Deletes a job row with its events and artifact records.
fn delete_job(conn: &Connection, id: &[u8]) -> Result<()> {
    for sql in [
        "DELETE FROM jobworks_events WHERE job_id = ?1",
        "DELETE FROM jobworks_artifacts WHERE job_id = ?1",
        "DELETE FROM jobworks_jobs WHERE id = ?1",
    ] {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute(params![id]))
            .map_err(db)?;
    }
    Ok(())
}

/// Deletes a tenant's job while it still has `revision`.
fn remove_job(conn: &Connection, tenant: &TenantId, id: JobId, revision: u64) -> Result<bool> {
    let found = conn
        .prepare_cached(
            "SELECT 1 FROM jobworks_jobs WHERE id = ?1 AND tenant = ?2 AND revision = ?3",
        )
        .and_then(|mut s| {
            s.query_row(
                params![id_bytes(id), tenant.as_str(), revision as i64],
                |_| Ok(()),
            )
            .optional()
        })
        .map_err(db)?;
    if found.is_none() {
        return Ok(false);
    }
    delete_job(conn, &id_bytes(id))?;
    Ok(true)
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

    async fn insert(&self, records: Vec<NewRecord>) -> Result<Vec<Taken>> {
        self.writer
            .write(move |conn| insert_all(conn, &records, &[]))
            .await
    }

    async fn insert_within(&self, records: Vec<NewRecord>, quotas: &[Quota]) -> Result<Vec<Taken>> {
        let quotas = quotas.to_vec();
        self.writer
            .write(move |conn| insert_all(conn, &records, &quotas))
            .await
    }

    async fn load(&self, tenant: Option<&TenantId>, ids: &[JobId]) -> Result<Vec<Stored>> {
        let ids = ids.to_vec();
        let tenant = tenant.cloned();
        self.read(move |conn| {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let row = match &tenant {
                    Some(tenant) => match load_owned(conn, tenant, id) {
                        Err(crate::Error::NotFound { .. }) => None,
                        found => Some(found?),
                    },
                    None => load(conn, id)?,
                };
                if let Some(row) = row {
                    out.push(stored(conn, row, true)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn load_expired(&self, limit: usize) -> Result<Vec<Stored>> {
        let now = self.clock.now();
        self.read(move |conn| {
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
            rows.into_iter()
                .map(|row| stored(conn, row, true))
                .collect()
        })
        .await
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Committed>> {
        self.writer
            .write(move |conn| {
                let mut out = Vec::with_capacity(writes.len());
                for w in &writes {
                    out.push(if save(conn, w)? {
                        Committed::Applied
                    } else {
                        Committed::Conflict
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn commit_all(&self, writes: Vec<Write>) -> Result<Committed> {
        let all = move |conn: &rusqlite::Connection| {
            for w in &writes {
                if !save(conn, w)? {
                    return Ok(Committed::Conflict);
                }
            }
            Ok(Committed::Applied)
        };
        // A conflict rolls back the writes saved before it.
        let applied = |answer: &Result<Committed>| matches!(answer, Ok(Committed::Applied));
        self.writer.write_keeping(all, applied).await
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let tenant = tenant.clone();
        self.read(move |conn| complete(conn, load_owned(conn, &tenant, id)?))
            .await
    }

    async fn list(&self, tenant: Option<&TenantId>, params: ListParams) -> Result<JobPage> {
        let tenant = tenant.cloned();
        self.read(move |conn| {
            let limit = params.limit.clamp(1, 1000);
            let before = params.before.map_or([0xff; 16], id_bytes);
            // A tenant's jobs are read through its index, a workflow's through their own.
            macro_rules! filtered {
                ($tenant:literal, $scope:literal) => {
                    concat!(
                        "SELECT ",
                        job_columns!(),
                        " FROM jobworks_jobs WHERE ",
                        $tenant,
                        " AND (id < ?2 OR ?3) \
                          AND (?4 IS NULL OR status = ?4) AND (?5 IS NULL OR job_type = ?5) \
                          AND (?7 IS NULL OR queue = ?7) ",
                        $scope,
                        " ORDER BY id DESC LIMIT ?6"
                    )
                };
            }
            macro_rules! scoped {
                ($tenant:literal) => {
                    match (params.workflow, params.schedule) {
                        (Some(_), _) => filtered!(
                            $tenant,
                            "AND workflow_id = ?8 AND (?9 IS NULL OR schedule_id = ?9)"
                        ),
                        (None, Some(_)) => {
                            filtered!($tenant, "AND ?8 IS NULL AND schedule_id = ?9")
                        }
                        (None, None) => filtered!($tenant, "AND ?8 IS NULL AND ?9 IS NULL"),
                    }
                };
            }
            let sql = match tenant {
                Some(_) => scoped!("tenant = ?1"),
                None => scoped!("?1 IS NULL"),
            };
            let rows = load_many(
                conn,
                sql,
                params![
                    tenant.as_ref().map(TenantId::as_str),
                    before,
                    params.before.is_none(),
                    params.status.map(|s| s.as_str()),
                    params.job_type.as_ref().map(|t| t.as_str()),
                    limit as i64 + 1,
                    params.queue.as_ref().map(|q| q.as_str()),
                    params.workflow.map(|w| w.to_u128().to_be_bytes()),
                    params.schedule.map(|s| s.to_u128().to_be_bytes()),
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
        // The time on the writer's thread: a claim never predates the commit before it
        // that made a job claimable.
        let clock = self.clock.clone();
        self.writer
            .write(move |conn| claim_due(conn, &params, clock.now()))
            .await
    }

    async fn purge(&self, params: PurgeParams) -> Result<Vec<(TenantId, JobId)>> {
        self.writer
            .write(move |conn| purge_before(conn, params))
            .await
    }

    async fn remove(&self, tenant: &TenantId, id: JobId, revision: u64) -> Result<bool> {
        let tenant = tenant.clone();
        self.writer
            .write(move |conn| remove_job(conn, &tenant, id, revision))
            .await
    }

    async fn queue_stats(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>> {
        let tenant = tenant.cloned();
        self.read(move |conn| queues::stats(conn, tenant.as_ref()))
            .await
    }

    async fn open_counts(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>> {
        let tenant = tenant.cloned();
        self.read(move |conn| queues::open_counts(conn, tenant.as_ref()))
            .await
    }

    async fn queues(&self) -> Result<Vec<Queue>> {
        self.read(queues::all).await
    }

    async fn update_queue(&self, name: &QueueName, patch: &QueuePatch) -> Result<QueueSettings> {
        let (name, patch, now) = (name.clone(), patch.clone(), self.clock.now());
        self.writer
            .write(move |conn| queues::update(conn, &name, &patch, now))
            .await
    }

    async fn schedules(&self, tenant: Option<&TenantId>) -> Result<Vec<Schedule>> {
        let tenant = tenant.cloned();
        self.read(move |conn| schedules::all(conn, tenant.as_ref()))
            .await
    }

    async fn schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<Option<Schedule>> {
        let tenant = tenant.clone();
        self.read(move |conn| schedules::one(conn, &tenant, id))
            .await
    }

    async fn put_schedule(&self, schedule: &Schedule, expected: Option<u64>) -> Result<bool> {
        let schedule = schedule.clone();
        self.writer
            .write(move |conn| schedules::put(conn, &schedule, expected))
            .await
    }

    async fn delete_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<bool> {
        let tenant = tenant.clone();
        self.writer
            .write(move |conn| schedules::delete(conn, &tenant, id))
            .await
    }

    async fn beat(&self, beat: &EngineBeat) -> Result<()> {
        let beat = beat.clone();
        self.writer
            .write(move |conn| activity::beat(conn, &beat))
            .await
    }

    async fn engines(&self, since: DateTime<Utc>) -> Result<Option<Vec<EngineBeat>>> {
        self.read(move |conn| activity::engines(conn, since).map(Some))
            .await
    }

    async fn finished_by_minute(
        &self,
        tenant: Option<&TenantId>,
        since: DateTime<Utc>,
    ) -> Result<Option<Vec<MinuteCounts>>> {
        let tenant = tenant.cloned();
        self.read(move |conn| activity::finished_by_minute(conn, tenant.as_ref(), since).map(Some))
            .await
    }
}
