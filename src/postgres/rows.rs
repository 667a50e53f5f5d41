//! Rows to records and back, in as few round trips as the work allows.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Uuid;
use sqlx::{PgConnection, Row};

use super::db::Sql;
use super::{BACKEND, Shared, db};
use crate::Result;
use crate::job::{
    Artifact, ArtifactRole, Event, EventKind, Job, JobId, JobStatus, JobType, QueueName,
    ScheduleId, TenantId, Visibility,
};
use crate::sql::{corrupt, json_text, parse_json, status};
use crate::store::{Lease, LeaseChange, Stored, Write};

/// The columns of a job row, in the order [`decode_job`] reads them; JSON comes as text.
macro_rules! job_columns {
    () => {
        "id, tenant, job_type, input::text, status, result::text, error, attempts, max_attempts, \
         priority, run_at, created_at, started_at, completed_at, updated_at, idempotency_key, \
         progress::text, cancel_requested, revision, event_seq, lease_id, lease_expires_at, \
         queue, concurrency_key, parents::text, workflow::text, schedule_id, scheduled_for, trace"
    };
}
pub(super) use job_columns;

/// A job row with the bookkeeping the [`Job`] does not show.
#[derive(Debug)]
pub(super) struct JobRow {
    pub(super) job: Job,
    pub(super) event_seq: u64,
    pub(super) lease: Option<(u128, DateTime<Utc>)>,
}

pub(super) fn uuid(id: JobId) -> Uuid {
    Uuid::from_u128(id.to_u128())
}

pub(super) fn get<'r, T>(row: &'r PgRow, idx: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(idx).map_err(db)
}

fn opt_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>> {
    text.map(|t| parse_json(BACKEND, &t)).transpose()
}

pub(super) fn decode_job(row: &PgRow) -> Result<JobRow> {
    let lease_id: Option<Uuid> = get(row, 20)?;
    let lease_expires: Option<DateTime<Utc>> = get(row, 21)?;
    let job = Job {
        id: JobId::from_u128(get::<Uuid>(row, 0)?.as_u128()),
        tenant: TenantId::new(get::<String>(row, 1)?)?,
        job_type: JobType::new(get::<String>(row, 2)?)?,
        queue: QueueName::new(get::<String>(row, 22)?)?,
        concurrency_key: get(row, 23)?,
        input: parse_json(BACKEND, &get::<String>(row, 3)?)?,
        status: status(BACKEND, &get::<String>(row, 4)?)?,
        result: opt_json(get(row, 5)?)?,
        error: get(row, 6)?,
        attempts: get::<i32>(row, 7)? as u32,
        max_attempts: get::<i32>(row, 8)? as u32,
        priority: get(row, 9)?,
        run_at: get(row, 10)?,
        created_at: get(row, 11)?,
        started_at: get(row, 12)?,
        completed_at: get(row, 13)?,
        updated_at: get(row, 14)?,
        idempotency_key: get(row, 15)?,
        progress: opt_json(get(row, 16)?)?,
        cancel_requested: get(row, 17)?,
        revision: get::<i64>(row, 18)? as u64,
        artifacts: Vec::new(),
        latest_event: None,
        parents: opt_json(get(row, 24)?)?.unwrap_or_default(),
        workflow: opt_json(get(row, 25)?)?,
        schedule_id: get::<Option<Uuid>>(row, 26)?.map(|u| ScheduleId::from_u128(u.as_u128())),
        scheduled_for: get(row, 27)?,
        trace: opt_json(get(row, 28)?)?,
    };
    Ok(JobRow {
        job,
        event_seq: get::<i64>(row, 19)? as u64,
        lease: lease_id
            .zip(lease_expires)
            .map(|(id, exp)| (id.as_u128(), exp)),
    })
}

/// The columns of an event row, in the order [`decode_event`] reads them.
macro_rules! event_columns {
    () => {
        "job_id, seq, kind, visibility, message, payload::text, artifacts::text, created_at"
    };
}
pub(super) use event_columns;

pub(super) fn decode_event(row: &PgRow) -> Result<(JobId, Event)> {
    let kind: String = get(row, 2)?;
    let visibility: String = get(row, 3)?;
    let event = Event {
        seq: get::<i64>(row, 1)? as u64,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| corrupt(BACKEND, format!("event kind {kind:?}")))?,
        visibility: Visibility::parse(&visibility)
            .ok_or_else(|| corrupt(BACKEND, format!("visibility {visibility:?}")))?,
        message: get::<String>(row, 4)?.into(),
        payload: opt_json(get(row, 5)?)?,
        artifacts: opt_json(get(row, 6)?)?.unwrap_or_default(),
        created_at: get(row, 7)?,
    };
    Ok((JobId::from_u128(get::<Uuid>(row, 0)?.as_u128()), event))
}

fn decode_artifact(row: &PgRow) -> Result<(JobId, Artifact)> {
    let role: String = get(row, 3)?;
    let artifact = Artifact {
        name: get(row, 1)?,
        kind: get(row, 2)?,
        role: ArtifactRole::parse(&role)
            .ok_or_else(|| corrupt(BACKEND, format!("role {role:?}")))?,
        content_type: get(row, 4)?,
        size_bytes: get::<i64>(row, 5)? as u64,
        checksum: get(row, 6)?,
        metadata: parse_json(BACKEND, &get::<String>(row, 7)?)?,
        created_at: get(row, 8)?,
        attempt: u32::try_from(get::<i32>(row, 9)?).unwrap_or(0),
    };
    Ok((JobId::from_u128(get::<Uuid>(row, 0)?.as_u128()), artifact))
}

/// The statement of [`save`]: `$first` comes before the update's CTE, `$guard` ends its
/// condition.
macro_rules! save_sql {
    ($first:literal, $guard:literal) => {
        concat!(
            $first,
            "saved AS (
            UPDATE jobworks_jobs j SET status = u.status, result = u.result::jsonb, error = u.error,
                attempts = u.attempts, run_at = u.run_at, started_at = u.started_at,
                completed_at = u.completed_at, updated_at = u.updated_at, progress = u.progress::jsonb,
                cancel_requested = u.cancel_requested, revision = u.revision, event_seq = u.event_seq,
                lease_id = CASE WHEN u.keep_lease THEN j.lease_id ELSE u.lease_id END,
                lease_expires_at = CASE WHEN u.keep_lease THEN j.lease_expires_at ELSE u.lease_expires_at END,
                workflow = u.workflow::jsonb
            FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[],
                        $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::text[], $11::bool[],
                        $12::bigint[], $13::bigint[], $14::bool[], $15::uuid[], $16::timestamptz[],
                        $17::bigint[], $18::uuid[], $19::bool[], $38::bool[], $39::text[])
                AS u(id, status, result, error, attempts, run_at, started_at, completed_at, updated_at,
                     progress, cancel_requested, revision, event_seq, keep_lease, lease_id,
                     lease_expires_at, expected_revision, expected_lease, tells, freed, workflow)
            WHERE j.id = u.id AND j.revision = u.expected_revision
                AND j.lease_id IS NOT DISTINCT FROM u.expected_lease",
            $guard,
            "
            RETURNING j.id, j.status, j.queue, u.tells, u.freed
        ), appended AS (
            INSERT INTO jobworks_events (job_id, seq, kind, visibility, message, payload, artifacts, created_at)
            SELECT v.job_id, v.seq, v.kind, v.visibility, v.message, v.payload::jsonb, v.artifacts::jsonb, v.created_at
            FROM unnest($20::uuid[], $21::bigint[], $22::text[], $23::text[], $24::text[], $25::text[],
                        $26::text[], $27::timestamptz[])
                AS v(job_id, seq, kind, visibility, message, payload, artifacts, created_at)
            WHERE v.job_id IN (SELECT id FROM saved)
            RETURNING 1
        ), recorded AS (
            INSERT INTO jobworks_artifacts
                (job_id, name, kind, role, content_type, size_bytes, checksum, metadata, created_at, attempt)
            SELECT r.job_id, r.name, r.kind, r.role, r.content_type, r.size_bytes, r.checksum,
                r.metadata::jsonb, r.created_at, r.attempt
            FROM unnest($28::uuid[], $29::text[], $30::text[], $31::text[], $32::text[], $33::bigint[],
                        $34::text[], $35::text[], $36::timestamptz[], $37::int[])
                AS r(job_id, name, kind, role, content_type, size_bytes, checksum, metadata, created_at, attempt)
            WHERE r.job_id IN (SELECT id FROM saved)
            ON CONFLICT (job_id, name) DO UPDATE SET kind = EXCLUDED.kind, role = EXCLUDED.role,
                content_type = EXCLUDED.content_type, size_bytes = EXCLUDED.size_bytes,
                checksum = EXCLUDED.checksum, metadata = EXCLUDED.metadata,
                created_at = EXCLUDED.created_at, attempt = EXCLUDED.attempt
            RETURNING 1
        )
        SELECT array(SELECT id FROM saved),
               (SELECT count(*) FROM appended),
               (SELECT count(*) FROM recorded),
               (SELECT CASE WHEN bool_or(status = 'queued') THEN 'w,' ELSE '' END
                    || CASE WHEN bool_or(freed AND queue IN
                        (SELECT name FROM jobworks_queues WHERE max_running IS NOT NULL))
                       THEN 's,' ELSE '' END
                    || CASE WHEN count(*) > 200 THEN '*' ELSE string_agg(id::text, ',') END
                FROM saved WHERE tells HAVING count(*) > 0)"
        )
    };
}

/// Applies guarded writes, at most one per job, in one statement: each row that still
/// has the revision and lease its write expects gets the new fields and lease, its events
/// and its artifact records; the others are left alone. Returns the ids written and what
/// to announce once the caller's operation commits ([`Saved::announce`]).
pub(super) async fn save(
    conn: &mut PgConnection,
    writes: &[&Write],
    shared: &Shared,
    whole: bool,
) -> Result<Saved> {
    let mut c = Columns::default();
    let mut e = EventColumns::default();
    let mut a = ArtifactColumns::default();
    for w in writes {
        let job = &w.job;
        let (keep_lease, lease) = match w.lease {
            LeaseChange::Keep => (true, None),
            LeaseChange::Set(lease) => (false, Some(lease)),
            LeaseChange::Clear => (false, None),
        };
        c.id.push(uuid(job.id));
        c.status.push(job.status.as_str());
        c.result.push(job.result.as_ref().map(json_text));
        c.error.push(job.error.clone());
        c.attempts.push(job.attempts as i32);
        c.run_at.push(job.run_at);
        c.started_at.push(job.started_at);
        c.completed_at.push(job.completed_at);
        c.updated_at.push(job.updated_at);
        c.progress.push(
            job.progress
                .as_ref()
                .map(|p| serde_json::to_string(p).expect("serialises")),
        );
        c.cancel_requested.push(job.cancel_requested);
        c.workflow.push(job.workflow.as_ref().map(json_text));
        c.revision.push(job.revision as i64);
        c.event_seq.push(w.last_seq() as i64);
        c.keep_lease.push(keep_lease);
        c.lease_id.push(lease.map(|l| Uuid::from_u128(l.lease_id)));
        c.lease_expires_at.push(lease.map(|l| l.expires_at));
        c.expected_revision.push(w.revision as i64);
        c.expected_lease.push(w.lease_id.map(Uuid::from_u128));
        c.tells.push(!w.events.is_empty());
        c.freed
            .push(w.from_status() == JobStatus::Running && job.status != JobStatus::Running);
        for event in &w.events {
            e.job_id.push(uuid(job.id));
            e.seq.push(event.seq as i64);
            e.kind.push(event.kind.as_str());
            e.visibility.push(event.visibility.as_str());
            e.message.push(event.message.to_string());
            e.payload.push(event.payload.as_ref().map(json_text));
            e.artifacts.push(
                (!event.artifacts.is_empty())
                    .then(|| serde_json::to_string(&event.artifacts).expect("serialises")),
            );
            e.created_at.push(event.created_at);
        }
        for artifact in &w.artifacts {
            a.job_id.push(uuid(job.id));
            a.name.push(artifact.name.clone());
            a.kind.push(artifact.kind.clone());
            a.role.push(artifact.role.as_str());
            a.content_type.push(artifact.content_type.clone());
            a.size.push(artifact.size_bytes as i64);
            a.checksum.push(artifact.checksum.clone());
            a.metadata.push(json_text(&artifact.metadata));
            a.created_at.push(artifact.created_at);
            a.attempt
                .push(i32::try_from(artifact.attempt).unwrap_or(i32::MAX));
        }
    }
    // `fetch_all`, not `fetch_one`: it returns once the server is ready for the next
    // query, so the write is committed (and visible to other sessions) when its writer
    // hears that it was applied; `fetch_one` returns at the row, before the commit.
    let sql = if whole {
        save_sql!(
            // Every guarded row, locked in id order, must hold its guard, or none is
            // written: the statement is one transaction, so it is all or nothing.
            "WITH locked AS (
                SELECT j.id FROM jobworks_jobs j
                JOIN unnest($1::uuid[], $17::bigint[], $18::uuid[]) AS g(id, revision, lease)
                  ON j.id = g.id
                WHERE j.revision = g.revision AND j.lease_id IS NOT DISTINCT FROM g.lease
                ORDER BY j.id FOR UPDATE OF j
            ), whole AS (
                SELECT count(*) = cardinality($1::uuid[]) AS ok FROM locked
            ), ",
            " AND (SELECT ok FROM whole)"
        )
    } else {
        save_sql!("WITH ", "")
    };
    let rows: Vec<(Vec<Uuid>, i64, i64, Option<String>)> = shared
        .sql
        .query_as(sql)
        .bind(c.id)
        .bind(c.status)
        .bind(c.result)
        .bind(c.error)
        .bind(c.attempts)
        .bind(c.run_at)
        .bind(c.started_at)
        .bind(c.completed_at)
        .bind(c.updated_at)
        .bind(c.progress)
        .bind(c.cancel_requested)
        .bind(c.revision)
        .bind(c.event_seq)
        .bind(c.keep_lease)
        .bind(c.lease_id)
        .bind(c.lease_expires_at)
        .bind(c.expected_revision)
        .bind(c.expected_lease)
        .bind(c.tells)
        .bind(e.job_id)
        .bind(e.seq)
        .bind(e.kind)
        .bind(e.visibility)
        .bind(e.message)
        .bind(e.payload)
        .bind(e.artifacts)
        .bind(e.created_at)
        .bind(a.job_id)
        .bind(a.name)
        .bind(a.kind)
        .bind(a.role)
        .bind(a.content_type)
        .bind(a.size)
        .bind(a.checksum)
        .bind(a.metadata)
        .bind(a.created_at)
        .bind(a.attempt)
        .bind(c.freed)
        .bind(c.workflow)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let mut saved = Saved::default();
    for (ids, _, _, changed) in rows {
        saved.ids.extend(ids);
        saved.changes.extend(changed);
    }
    Ok(saved)
}

/// What [`save`] wrote.
#[derive(Debug, Default)]
pub(super) struct Saved {
    /// The jobs written.
    pub(super) ids: HashSet<Uuid>,
    /// The rows written that have new events, in the listener's format (`w,` first when
    /// one of them is queued, `s,` when one freed a slot of a limited queue).
    changes: Vec<String>,
}

impl Saved {
    /// Announces the changes; call it once they are committed.
    pub(super) fn announce(&self, shared: &Shared) {
        for changed in &self.changes {
            shared.announce(changed);
        }
    }
}

#[derive(Default)]
struct Columns {
    id: Vec<Uuid>,
    status: Vec<&'static str>,
    result: Vec<Option<String>>,
    error: Vec<Option<String>>,
    attempts: Vec<i32>,
    run_at: Vec<DateTime<Utc>>,
    started_at: Vec<Option<DateTime<Utc>>>,
    completed_at: Vec<Option<DateTime<Utc>>>,
    updated_at: Vec<DateTime<Utc>>,
    progress: Vec<Option<String>>,
    cancel_requested: Vec<bool>,
    revision: Vec<i64>,
    event_seq: Vec<i64>,
    keep_lease: Vec<bool>,
    lease_id: Vec<Option<Uuid>>,
    lease_expires_at: Vec<Option<DateTime<Utc>>>,
    expected_revision: Vec<i64>,
    expected_lease: Vec<Option<Uuid>>,
    tells: Vec<bool>,
    freed: Vec<bool>,
    workflow: Vec<Option<String>>,
}

#[derive(Default)]
struct ArtifactColumns {
    job_id: Vec<Uuid>,
    name: Vec<String>,
    kind: Vec<String>,
    role: Vec<&'static str>,
    content_type: Vec<String>,
    size: Vec<i64>,
    checksum: Vec<String>,
    metadata: Vec<String>,
    created_at: Vec<DateTime<Utc>>,
    attempt: Vec<i32>,
}

#[derive(Default)]
struct EventColumns {
    job_id: Vec<Uuid>,
    seq: Vec<i64>,
    kind: Vec<&'static str>,
    visibility: Vec<&'static str>,
    message: Vec<String>,
    payload: Vec<Option<String>>,
    artifacts: Vec<Option<String>>,
    created_at: Vec<DateTime<Utc>>,
}

/// Fills in the jobs' artifacts and latest events: two queries for any number of jobs.
pub(super) async fn complete(
    conn: &mut PgConnection,
    sql: Sql,
    rows: Vec<JobRow>,
) -> Result<Vec<Job>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| uuid(r.job.id)).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.event_seq as i64).collect();
    let latest: HashMap<JobId, Event> = sql
        .query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM unnest($1::uuid[], $2::bigint[]) AS u(wanted_id, wanted_seq) \
          CROSS JOIN LATERAL (SELECT * FROM jobworks_events w \
            WHERE w.job_id = u.wanted_id AND w.seq <= u.wanted_seq AND w.visibility = 'public' \
            ORDER BY w.seq DESC LIMIT 1) e"
        ))
        .bind(&ids)
        .bind(&seqs)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?
        .iter()
        .map(decode_event)
        .collect::<Result<_>>()?;
    let mut artifacts: HashMap<JobId, Vec<Artifact>> = HashMap::new();
    let found = sql
        .query(
        "SELECT job_id, name, kind, role, content_type, size_bytes, checksum, metadata::text, \
         created_at, attempt FROM jobworks_artifacts WHERE job_id = ANY($1) ORDER BY created_at, name",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for row in &found {
        let (id, artifact) = decode_artifact(row)?;
        artifacts.entry(id).or_default().push(artifact);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut job = row.job;
            job.latest_event = latest.get(&job.id).cloned();
            job.artifacts = artifacts.remove(&job.id).unwrap_or_default();
            job
        })
        .collect())
}

/// The records of job rows, with their artifacts and latest events.
pub(super) async fn stored(
    conn: &mut PgConnection,
    sql: Sql,
    rows: Vec<JobRow>,
) -> Result<Vec<Stored>> {
    let kept: Vec<(u64, Option<Lease>)> = rows
        .iter()
        .map(|r| {
            let lease = r.lease.map(|(lease_id, expires_at)| Lease {
                job_id: r.job.id,
                lease_id,
                expires_at,
            });
            (r.event_seq + 1, lease)
        })
        .collect();
    let jobs = complete(conn, sql, rows).await?;
    Ok(jobs
        .into_iter()
        .zip(kept)
        .map(|(job, (next_seq, lease))| Stored {
            job: Box::new(job),
            lease,
            next_seq,
        })
        .collect())
}
