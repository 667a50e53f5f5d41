//! The claim: one statement that applies the claim rule in SQL.

use std::collections::HashMap;

use super::rows::{JobRow, complete, decode_job, job_columns};
use super::{BACKEND, PostgresStore, db};
use crate::Result;
use crate::job::{EventKind, NewEvent};
use crate::store::{ClaimParams, Claimed, ClaimedJob, Lease, rules};

impl PostgresStore {
    /// [`JobStore::claim`](crate::JobStore::claim).
    pub(super) async fn claim_due(&self, params: ClaimParams) -> Result<Claimed> {
        let now = self.inner.clock.now();
        let expires_at = rules::lease_until(now, params.lease_ttl)?;
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
                WHERE queue = $6 AND status = 'queued' AND run_at <= $1
                    AND ($2::text[] IS NULL OR job_type = ANY($2))
                    AND NOT EXISTS (SELECT 1 FROM jobworks_queues q WHERE q.name = $6 AND q.paused)
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
        .bind(expires_at)
        .bind(self.channel())
        .bind(params.queue.as_str())
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
        let next_run_at = if jobs.len() < params.limit {
            sqlx::query_scalar(
                "SELECT MIN(run_at) FROM jobworks_jobs WHERE queue = $3 AND status = 'queued' \
                 AND run_at > $1 AND ($2::text[] IS NULL OR job_type = ANY($2)) \
                 AND NOT EXISTS (SELECT 1 FROM jobworks_queues q WHERE q.name = $3 AND q.paused)",
            )
            .bind(now)
            .bind(&types)
            .bind(params.queue.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?
        } else {
            None
        };
        Ok(Claimed { jobs, next_run_at })
    }
}
