//! Inserting new jobs: one statement, all or none when idempotency keys are taken.

use std::collections::{HashMap, HashSet};

use sqlx::types::Uuid;
use sqlx::{Connection, PgConnection};

use super::rows::uuid;
use super::{BACKEND, PostgresStore, db};
use crate::job::{Job, JobId};
use crate::sql::json_text;
use crate::store::{Inserted, Inserter, NewRecord, Quota, Taken, submit_with};
use crate::{Error, Result};

/// A host's transaction as an [`Inserter`]: each insert and read runs in a savepoint of
/// it, on the store's schema.
struct InTransaction<'a> {
    store: &'a PostgresStore,
    conn: &'a mut PgConnection,
}

impl InTransaction<'_> {
    /// Points `conn`'s `search_path` at the store's schema until the transaction ends
    /// (or the savepoint is rolled back), and answers what it was.
    async fn enter(store: &PostgresStore, conn: &mut PgConnection) -> Result<String> {
        let sql = store.sql();
        let previous = sql
            .query_scalar("SELECT current_setting('search_path')")
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        sql.query("SELECT set_config('search_path', quote_ident($1), true)")
            .bind(&store.inner.schema)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        Ok(previous)
    }

    /// Sets `search_path` back to `previous`.
    async fn leave(store: &PostgresStore, conn: &mut PgConnection, previous: &str) -> Result<()> {
        store
            .sql()
            .query("SELECT set_config('search_path', $1, true)")
            .bind(previous)
            .execute(conn)
            .await
            .map_err(db)?;
        Ok(())
    }
}

impl Inserter for InTransaction<'_> {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn insert(&mut self, records: Vec<NewRecord>, quotas: &[Quota]) -> Result<Vec<Taken>> {
        let mut sp = self.conn.begin().await.map_err(db)?;
        let previous = Self::enter(self.store, &mut sp).await?;
        let taken = self.store.insert_on(&mut sp, &records, quotas).await?;
        Self::leave(self.store, &mut sp, &previous).await?;
        if taken.is_empty() {
            sp.commit().await.map_err(db)?;
        } else {
            sp.rollback().await.map_err(db)?;
        }
        Ok(taken)
    }

    async fn holder(&mut self, id: JobId) -> Result<Option<Job>> {
        let mut sp = self.conn.begin().await.map_err(db)?;
        let previous = Self::enter(self.store, &mut sp).await?;
        let found = super::jobs::load_in(&mut sp, self.store.sql(), None, &[id])
            .await?
            .pop();
        Self::leave(self.store, &mut sp, &previous).await?;
        sp.commit().await.map_err(db)?;
        Ok(found.map(|s| *s.job))
    }
}

/// The insert of [`PostgresStore::insert_rows`], with `$conflict` after its rows: the
/// arbiter of idempotency keys, or nothing when no record has a key (a plain insert skips
/// the speculative insertion and its confirmation record in the WAL).
macro_rules! insert_sql {
    ($conflict:literal) => {
        concat!(
            "WITH inserted AS (
                INSERT INTO jobworks_jobs (id, tenant, job_type, input, status, attempts, max_attempts,
                    priority, run_at, created_at, updated_at, idempotency_key, cancel_requested,
                    revision, event_seq, queue, concurrency_key, parents, workflow_id, workflow,
                    schedule_id, scheduled_for, trace)
                SELECT u.id, u.tenant, u.job_type, u.input::jsonb, u.status, 0, u.max_attempts,
                    u.priority, u.run_at, u.created_at, u.updated_at, u.key, false, u.revision, u.seq,
                    u.queue, u.concurrency_key, u.parents::jsonb, u.workflow_id, u.workflow::jsonb,
                    u.schedule_id, u.scheduled_for, u.trace
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[],
                            $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[],
                            $11::timestamptz[], $12::bigint[], $13::bigint[], $19::text[], $20::text[],
                            $21::text[], $22::uuid[], $23::text[], $24::uuid[], $25::timestamptz[], $26::text[])
                    AS u(id, tenant, job_type, input, max_attempts, priority, run_at, created_at, key,
                         status, updated_at, revision, seq, queue, concurrency_key, parents,
                         workflow_id, workflow, schedule_id, scheduled_for, trace) ",
            $conflict,
            " RETURNING id
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
    };
}

impl PostgresStore {
    /// Submits `jobs` in the host's transaction on `conn` ([`Engine::submit_in`](crate::Engine::submit_in)).
    pub(crate) async fn submit_in(
        &self,
        conn: &mut PgConnection,
        jobs: Vec<Job>,
        quotas: &[Quota],
    ) -> Result<Vec<Inserted>> {
        let now = self.inner.clock.now();
        submit_with(&mut InTransaction { store: self, conn }, jobs, quotas, now).await
    }

    /// [`JobStore::insert_within`](crate::JobStore::insert_within) (`insert` without
    /// quotas).
    pub(super) async fn insert_records(
        &self,
        records: Vec<NewRecord>,
        quotas: &[Quota],
    ) -> Result<Vec<Taken>> {
        // Without idempotency keys nothing can conflict: one statement, committed alone.
        if quotas.is_empty() && records.iter().all(|r| r.job.idempotency_key.is_none()) {
            let mut conn = self.db.conn().await?;
            self.insert_rows(&mut conn, &records).await?;
            conn.done().await?;
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let taken = self.insert_on(&mut tx, &records, quotas).await?;
        if taken.is_empty() {
            tx.commit().await.map_err(db)?;
        } else {
            tx.rollback().await.map_err(db)?;
        }
        Ok(taken)
    }

    /// Inserts `records` within quotas in the transaction on `conn`, which the caller
    /// commits when none was taken and rolls back otherwise (all or none: a taken key
    /// rolls the others back, and their wake-up with them).
    async fn insert_on(
        &self,
        conn: &mut PgConnection,
        records: &[NewRecord],
        quotas: &[Quota],
    ) -> Result<Vec<Taken>> {
        if !quotas.is_empty() {
            // One submit of a tenant at a time until commit, on every engine: the count
            // below sees every job committed before.
            self.lock_tenants(conn, records).await?;
        }
        let inserted = self.insert_rows(conn, records).await?;
        if inserted.len() == records.len() {
            if !quotas.is_empty() {
                self.check_quotas(conn, records, quotas).await?;
            }
            return Ok(Vec::new());
        }
        let taken = self.holders(conn, records, &inserted).await?;
        if taken.is_empty() {
            // The holder went between the insert and the lookup (purged): try again.
            return Err(Error::Unavailable {
                backend: BACKEND,
                source: "an idempotency key was freed while inserting; try again".into(),
            });
        }
        Ok(taken)
    }

    /// Takes the quota lock of every tenant among `records`, in name order.
    async fn lock_tenants(&self, conn: &mut PgConnection, records: &[NewRecord]) -> Result<()> {
        let tenants: Vec<&str> = records.iter().map(|r| r.job.tenant.as_str()).collect();
        self.sql()
            .query(
                "SELECT pg_advisory_xact_lock(1785684595, hashtext(t.tenant))
             FROM (SELECT DISTINCT tenant FROM unnest($1::text[]) AS u(tenant) ORDER BY 1) AS t",
            )
            .bind(&tenants)
            .fetch_all(conn)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// [`Quota::check_all`] for `records`, just inserted: the tenants' other unfinished
    /// jobs, counted under their quota locks.
    async fn check_quotas(
        &self,
        conn: &mut PgConnection,
        records: &[NewRecord],
        quotas: &[Quota],
    ) -> Result<()> {
        let tenants: Vec<&str> = records.iter().map(|r| r.job.tenant.as_str()).collect();
        let ids: Vec<Uuid> = records.iter().map(|r| uuid(r.job.id)).collect();
        let mut counts = HashMap::new();
        for quota in quotas {
            let queue = quota.queue.as_ref().map(|q| q.as_str().to_owned());
            let rows: Vec<(String, i64)> = self
                .sql()
                .query_as(
                    "SELECT tenant, count(*) FROM jobworks_jobs
                 WHERE tenant = ANY($1) AND status IN ('waiting', 'queued', 'running')
                     AND ($2::text IS NULL OR queue = $2) AND NOT (id = ANY($3))
                 GROUP BY tenant",
                )
                .bind(&tenants)
                .bind(&queue)
                .bind(&ids)
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
            for (tenant, n) in rows {
                counts.insert((tenant, queue.clone()), n as u64);
            }
        }
        Quota::check_all(quotas, records.iter().map(|r| &r.job), |tenant, queue| {
            let key = (
                tenant.as_str().to_owned(),
                queue.map(|q| q.as_str().to_owned()),
            );
            Ok(counts.get(&key).copied().unwrap_or(0))
        })
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
        let keyed = records.iter().any(|r| r.job.idempotency_key.is_some());
        let sql = if keyed {
            insert_sql!(
                "ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
            )
        } else {
            insert_sql!("")
        };
        let inserted: Vec<Uuid> = self
            .sql()
            .query_scalar(sql)
            .bind(jobs().map(|j| uuid(j.id)).collect::<Vec<_>>())
            .bind(jobs().map(|j| j.tenant.to_string()).collect::<Vec<_>>())
            .bind(jobs().map(|j| j.job_type.to_string()).collect::<Vec<_>>())
            .bind(jobs().map(|j| json_text(&j.input)).collect::<Vec<_>>())
            .bind(jobs().map(|j| j.max_attempts as i32).collect::<Vec<_>>())
            .bind(jobs().map(|j| j.priority).collect::<Vec<_>>())
            .bind(jobs().map(|j| j.run_at).collect::<Vec<_>>())
            .bind(jobs().map(|j| j.created_at).collect::<Vec<_>>())
            .bind(
                jobs()
                    .map(|j| j.idempotency_key.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(jobs().map(|j| j.status.as_str()).collect::<Vec<_>>())
            .bind(jobs().map(|j| j.updated_at).collect::<Vec<_>>())
            .bind(jobs().map(|j| j.revision as i64).collect::<Vec<_>>())
            .bind(
                records
                    .iter()
                    .map(|r| r.event.seq as i64)
                    .collect::<Vec<_>>(),
            )
            .bind(
                records
                    .iter()
                    .map(|r| r.event.kind.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                records
                    .iter()
                    .map(|r| r.event.visibility.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                records
                    .iter()
                    .map(|r| r.event.message.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(
                records
                    .iter()
                    .map(|r| r.event.created_at)
                    .collect::<Vec<_>>(),
            )
            .bind(self.channel())
            .bind(jobs().map(|j| j.queue.to_string()).collect::<Vec<_>>())
            .bind(
                jobs()
                    .map(|j| j.concurrency_key.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                jobs()
                    .map(|j| (!j.parents.is_empty()).then(|| json_text(&j.parents)))
                    .collect::<Vec<_>>(),
            )
            .bind(
                jobs()
                    .map(|j| j.workflow.as_ref().map(|l| Uuid::from_u128(l.id.to_u128())))
                    .collect::<Vec<_>>(),
            )
            .bind(
                jobs()
                    .map(|j| j.workflow.as_ref().map(json_text))
                    .collect::<Vec<_>>(),
            )
            .bind(
                jobs()
                    .map(|j| j.schedule_id.map(|s| Uuid::from_u128(s.to_u128())))
                    .collect::<Vec<_>>(),
            )
            .bind(jobs().map(|j| j.scheduled_for).collect::<Vec<_>>())
            .bind(
                jobs()
                    .map(|j| j.trace.as_ref().map(json_text))
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        Ok(inserted.into_iter().collect())
    }

    /// The jobs holding the idempotency keys of `records` that were not inserted.
    async fn holders(
        &self,
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
        let found: Vec<(String, String, Uuid)> = self
            .sql()
            .query_as(
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
