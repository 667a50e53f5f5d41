//! Queue settings and counts in PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{BACKEND, PostgresStore, db};
use crate::Result;
use crate::job::{QueueName, TenantId};
use crate::sql::status;
use crate::store::{Queue, QueuePatch, QueueSettings, QueueStats, RateLimit};

/// The settings columns, which [`settings`] reads by name.
macro_rules! settings_columns {
    () => {
        "paused, max_running, rate_limit, rate_period_ms, rate_burst, max_running_per_key"
    };
}

/// The settings in a row of [`settings_columns`].
fn settings(row: &PgRow) -> Result<QueueSettings> {
    let positive = |column: &str| -> Result<Option<u32>> {
        let n: Option<i32> = row.try_get(column).map_err(db)?;
        Ok(n.and_then(|n| u32::try_from(n).ok()))
    };
    let period: Option<i64> = row.try_get("rate_period_ms").map_err(db)?;
    let rate = match (positive("rate_limit")?, period, positive("rate_burst")?) {
        (Some(limit), Some(ms), Some(burst)) => {
            let period = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            Some(RateLimit::new(limit, period).burst(burst))
        }
        _ => None,
    };
    Ok(QueueSettings {
        paused: row.try_get("paused").map_err(db)?,
        max_running: positive("max_running")?,
        max_running_per_key: positive("max_running_per_key")?,
        rate,
    })
}

impl PostgresStore {
    /// [`JobStore::queues`](crate::JobStore::queues).
    pub(super) async fn all_queues(&self) -> Result<Vec<Queue>> {
        let sql = concat!(
            "SELECT name, ",
            settings_columns!(),
            " FROM jobworks_queues ORDER BY name"
        );
        let mut conn = self.db.conn().await?;
        let rows = self
            .sql()
            .query(sql)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name").map_err(db)?;
                Ok(Queue {
                    name: QueueName::new(name)?,
                    settings: settings(row)?,
                })
            })
            .collect()
    }

    /// [`JobStore::update_queue`](crate::JobStore::update_queue): one statement, which
    /// also tells the other processes when the change may let jobs run. A new rate
    /// limit starts with a full bucket.
    pub(super) async fn patch_queue(
        &self,
        name: &QueueName,
        patch: &QueuePatch,
    ) -> Result<QueueSettings> {
        let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        let max_running = patch.max_running.map(|max| max.map(int));
        let per_key = patch.max_running_per_key.map(|max| max.map(int));
        let rate = patch.rate.flatten();
        let sql = concat!(
            "WITH saved AS (
                INSERT INTO jobworks_queues
                    (name, paused, max_running, rate_limit, rate_period_ms, rate_burst, updated_at,
                     max_running_per_key)
                VALUES ($1, COALESCE($2, false), $7, $9, $10, $11, $3, $13)
                ON CONFLICT (name) DO UPDATE
                    SET paused = COALESCE($2, jobworks_queues.paused),
                        max_running = CASE WHEN $6 THEN $7 ELSE jobworks_queues.max_running END,
                        max_running_per_key =
                            CASE WHEN $12 THEN $13 ELSE jobworks_queues.max_running_per_key END,
                        rate_limit = CASE WHEN $8 THEN $9 ELSE jobworks_queues.rate_limit END,
                        rate_period_ms =
                            CASE WHEN $8 THEN $10 ELSE jobworks_queues.rate_period_ms END,
                        rate_burst = CASE WHEN $8 THEN $11 ELSE jobworks_queues.rate_burst END,
                        rate_tat = CASE WHEN $8 THEN NULL ELSE jobworks_queues.rate_tat END,
                        updated_at = $3
                RETURNING ",
            settings_columns!(),
            "
            ), told AS (
                SELECT pg_notify($4, 'w') WHERE $5
            )
            SELECT ",
            settings_columns!(),
            " FROM saved, (SELECT count(*) FROM told) AS t"
        );
        let mut conn = self.db.conn().await?;
        let row = self
            .sql()
            .query(sql)
            .bind(name.as_str())
            .bind(patch.paused)
            .bind(self.inner.clock.now())
            .bind(self.channel())
            .bind(patch.may_free_work())
            .bind(max_running.is_some())
            .bind(max_running.flatten())
            .bind(patch.rate.is_some())
            .bind(rate.map(|r| int(r.limit)))
            .bind(rate.map(|r| i64::try_from(r.period.as_millis()).unwrap_or(i64::MAX)))
            .bind(rate.map(|r| int(r.burst)))
            .bind(per_key.is_some())
            .bind(per_key.flatten())
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        settings(&row)
    }

    /// [`JobStore::queue_stats`](crate::JobStore::queue_stats).
    pub(super) async fn counts_by_queue(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>> {
        let sql = match tenant {
            Some(_) => {
                "SELECT queue, status, COUNT(*) FROM jobworks_jobs WHERE tenant = $1 \
                 GROUP BY queue, status"
            }
            None => {
                "SELECT queue, status, COUNT(*) FROM jobworks_jobs WHERE $1::text IS NULL \
                 GROUP BY queue, status"
            }
        };
        let mut conn = self.db.conn().await?;
        let rows: Vec<(String, String, i64)> = self
            .sql()
            .query_as(sql)
            .bind(tenant.map(TenantId::as_str))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        counts(rows)
    }

    /// The open jobs (waiting, queued, running) by queue and status, each status counted
    /// from its own partial index.
    pub(super) async fn counts_of_open(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<QueueName, QueueStats>> {
        let mut conn = self.db.conn().await?;
        let rows: Vec<(String, String, i64)> = self
            .sql()
            .query_as(
                "SELECT queue, 'queued', COUNT(*) FROM jobworks_jobs \
             WHERE status = 'queued' AND ($1::text IS NULL OR tenant = $1) GROUP BY queue \
             UNION ALL \
             SELECT queue, 'running', COUNT(*) FROM jobworks_jobs \
             WHERE status = 'running' AND ($1::text IS NULL OR tenant = $1) GROUP BY queue \
             UNION ALL \
             SELECT queue, 'waiting', COUNT(*) FROM jobworks_jobs \
             WHERE status = 'waiting' AND ($1::text IS NULL OR tenant = $1) GROUP BY queue",
            )
            .bind(tenant.map(TenantId::as_str))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        conn.done().await?;
        counts(rows)
    }
}

/// Rows `(queue, status, count)` as counts by queue.
fn counts(rows: Vec<(String, String, i64)>) -> Result<BTreeMap<QueueName, QueueStats>> {
    let mut all: BTreeMap<QueueName, QueueStats> = BTreeMap::new();
    for (queue, st, n) in rows {
        all.entry(QueueName::new(queue)?)
            .or_default()
            .add(status(BACKEND, &st)?, n as u64);
    }
    Ok(all)
}
