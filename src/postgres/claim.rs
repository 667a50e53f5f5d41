//! The claim: one statement that applies the claim rule in SQL.

use std::collections::HashMap;
use std::fmt::Write as _;

use sqlx::Row;
use sqlx::types::Uuid;

use super::rows::{JobRow, complete, decode_job, job_columns};
use super::{BACKEND, PostgresStore, db};
use crate::Result;
use crate::job::{EventKind, NewEvent};
use crate::store::{ClaimParams, Claimed, ClaimedJob, Lease, rules};

/// The claim from a queue without limiting settings whose queued jobs are all one
/// tenant's, as common table expressions: `only_tenant` (empty when the claim is not
/// that case), `claimed` (the rows after the claim) and `relaxed`, and the turn moved to
/// the tenant when it changed.
macro_rules! claim_one_tenant {
    () => {
        "unlimited AS (
            SELECT NOT coalesce((
                SELECT q.paused OR q.max_running IS NOT NULL OR q.max_running_per_key IS NOT NULL
                    OR q.rate_limit IS NOT NULL
                FROM jobworks_queues q WHERE q.name = $6), false) AS yes
        ), last_queued AS (
            SELECT j.tenant FROM jobworks_jobs j WHERE j.queue = $6 AND j.status = 'queued'
            ORDER BY j.tenant DESC, j.priority, j.run_at DESC, j.id DESC LIMIT 1
        ), only_tenant AS (
            SELECT l.tenant FROM last_queued l, unlimited u
            WHERE u.yes AND (
                SELECT j.tenant FROM jobworks_jobs j
                WHERE j.queue = $6 AND j.status = 'queued' AND j.tenant < l.tenant
                ORDER BY j.tenant DESC, j.priority, j.run_at DESC, j.id DESC LIMIT 1) IS NULL
        ), picked AS (
            SELECT j.id FROM jobworks_jobs j
            WHERE j.queue = $6 AND j.tenant = (SELECT o.tenant FROM only_tenant o)
                AND j.status = 'queued' AND j.run_at <= $1
                AND ($2::text[] IS NULL OR j.job_type = ANY($2))
            ORDER BY j.priority DESC, j.run_at, j.id LIMIT $3 FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE jobworks_jobs j SET status = 'running', attempts = j.attempts + 1,
                started_at = $1, progress = NULL, updated_at = $1, revision = j.revision + 1,
                event_seq = j.event_seq + 1, lease_id = gen_random_uuid(), lease_expires_at = $4
            FROM picked WHERE j.id = picked.id
            RETURNING j AS claimed_row, j.id, j.event_seq, j.attempts, j.priority, j.run_at
        ), started AS (
            INSERT INTO jobworks_events (job_id, seq, kind, visibility, message, created_at)
            SELECT c.id, c.event_seq, 'started', 'public', 'attempt ' || c.attempts, $1
            FROM claimed c
        ), turned AS (
            INSERT INTO jobworks_turns (queue, tenant)
            SELECT $6, o.tenant FROM only_tenant o
            WHERE EXISTS (SELECT 1 FROM claimed)
                AND o.tenant IS DISTINCT FROM
                    (SELECT t.tenant FROM jobworks_turns t WHERE t.queue = $6)
            ON CONFLICT (queue) DO UPDATE SET tenant = EXCLUDED.tenant
        ), relaxed AS (
            SELECT set_config('synchronous_commit', 'off', true)
        )"
    };
}

impl PostgresStore {
    /// [`JobStore::claim`](crate::JobStore::claim).
    pub(super) async fn claim_due(&self, params: ClaimParams) -> Result<Claimed> {
        // The time once a connection is at hand: a claim never predates a commit that
        // made a job claimable while it waited for one (only the round trip remains).
        let mut conn = self.db.conn().await?;
        let now = self.inner.clock.now();
        let expires_at = rules::lease_until(now, params.lease_ttl)?;
        let types: Option<Vec<String>> = params
            .types
            .as_ref()
            .map(|t| t.iter().map(ToString::to_string).collect());
        // One round trip, which applies the claim rule in SQL (running, one more attempt,
        // started now, progress cleared, a `started` event "attempt N") to the jobs
        // `rules::pick` takes within what the queue's settings allow. A queue without
        // settings that limit claims, whose queued jobs are all one tenant's, is claimed
        // from in plain SQL (`claim_one_tenant!`: that tenant's first due jobs are the
        // rule's picks); any other calls `jobworks_claim` (schema v6: none while paused,
        // limits on running jobs and starts, tenants in turn), in the same statement.
        // The conformance suite and the differential test hold both to the other
        // backends.
        // Its commit does not wait for the disk: a claim lost in a server crash leaves the
        // job queued without a lease, so it runs again and the lost lease can write
        // nothing; a later synchronous commit (a finish) flushes it anyway.
        let found = self
            .sql()
            .query(concat!(
                "WITH ",
                claim_one_tenant!(),
                ", slow AS (
                SELECT (r.job).*, r.pos, r.room, r.next_token, r.held_back
                FROM (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM only_tenant)) AS go,
                    LATERAL jobworks_claim($6, $1, $2, $3, $4, $5) AS r
            )
            SELECT ",
                job_columns!(),
                ", room, next_token, held_back FROM (
                SELECT (c.claimed_row).*,
                    row_number() OVER (ORDER BY c.priority DESC, c.run_at, c.id) AS pos,
                    $3 AS room, NULL::timestamptz AS next_token, false AS held_back
                FROM claimed c, relaxed
                UNION ALL
                SELECT (NULL::jobworks_jobs).*, NULL, $3, NULL, false FROM only_tenant
                UNION ALL
                SELECT * FROM slow
            ) AS x ORDER BY pos"
            ))
            .bind(now)
            .bind(&types)
            .bind(i32::try_from(params.limit).unwrap_or(i32::MAX))
            .bind(expires_at)
            // Unused since schema v11 (claims announce after they commit), kept in the
            // function's signature.
            .bind(self.channel())
            .bind(params.queue.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        // The row without a job says what room the claim had and when the rate limit
        // lets the next job start.
        let marker = found
            .iter()
            .find(|row| matches!(row.try_get::<Option<Uuid>, _>(0), Ok(None)))
            .ok_or_else(|| crate::sql::corrupt(BACKEND, "the claim gave no room"))?;
        let room: i32 = marker.try_get("room").map_err(db)?;
        let next_token: Option<chrono::DateTime<chrono::Utc>> =
            marker.try_get("next_token").map_err(db)?;
        let paused = room < 0;
        let full: bool = marker.try_get("held_back").map_err(db)?;
        let found: Vec<_> = found
            .into_iter()
            .filter(|row| matches!(row.try_get::<Option<Uuid>, _>(0), Ok(Some(_))))
            .collect();
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
            let mut conn = self.db.conn().await?;
            let earlier: Vec<JobRow> = retried
                .iter()
                .map(|&i| JobRow {
                    job: rows[i].job.clone(),
                    event_seq: rows[i].event_seq,
                    lease: rows[i].lease,
                })
                .collect();
            for job in complete(&mut conn, self.sql(), earlier).await? {
                artifacts.insert(job.id, job.artifacts);
            }
            conn.done().await?;
        }
        if !rows.is_empty() {
            // This process's watchers by id, the others by the payload.
            let mut started = String::with_capacity(rows.len() * 27);
            for row in &rows {
                self.inner.notifier.job_changed(row.job.id);
                if !started.is_empty() {
                    started.push(',');
                }
                let _ = write!(started, "{}", row.job.id);
            }
            self.inner.tell_others(started);
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
            let message = rules::started_message(row.job.attempts);
            let event = NewEvent::new(EventKind::Started, message).into_event(row.event_seq, now);
            row.job.latest_event = Some(event);
            row.job.artifacts = artifacts.remove(&row.job.id).unwrap_or_default();
            jobs.push(ClaimedJob {
                job: row.job,
                lease,
                next_seq: row.event_seq + 1,
            });
        }
        let scheduled = if jobs.len() < params.limit && !paused {
            let mut conn = self.db.conn().await?;
            let scheduled = self
                .sql()
                .query_scalar(
                    "SELECT MIN(run_at) FROM jobworks_jobs WHERE queue = $3 AND status = 'queued' \
                 AND run_at > $1 AND ($2::text[] IS NULL OR job_type = ANY($2))",
                )
                .bind(now)
                .bind(&types)
                .bind(params.queue.as_str())
                .fetch_one(&mut *conn)
                .await
                .map_err(db)?;
            conn.done().await?;
            scheduled
        } else {
            None
        };
        Ok(Claimed {
            jobs,
            next_run_at: rules::earliest(scheduled, next_token),
            full,
        })
    }
}
