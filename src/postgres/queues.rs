//! Queue settings and counts in PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{BACKEND, PostgresStore, db};
use crate::Result;
use crate::job::QueueName;
use crate::sql::status;
use crate::store::{Queue, QueuePatch, QueueSettings, QueueStats, RateLimit};

/// The settings columns, in the order [`SettingsRow`] reads them.
macro_rules! settings_columns {
    () => {
        "paused, max_running, rate_limit, rate_period_ms, rate_burst, max_running_per_key"
    };
}

type SettingsRow = (
    bool,
    Option<i32>,
    Option<i32>,
    Option<i64>,
    Option<i32>,
    Option<i32>,
);

/// A queue's name and its [`SettingsRow`].
type NamedSettingsRow = (
    String,
    bool,
    Option<i32>,
    Option<i32>,
    Option<i64>,
    Option<i32>,
    Option<i32>,
);

fn settings((paused, max_running, limit, period, burst, per_key): SettingsRow) -> QueueSettings {
    let positive = |n: i32| u32::try_from(n).ok();
    QueueSettings {
        paused,
        max_running: max_running.and_then(positive),
        max_running_per_key: per_key.and_then(positive),
        rate: match (limit.and_then(positive), period, burst.and_then(positive)) {
            (Some(limit), Some(ms), Some(burst)) => {
                let period = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
                Some(RateLimit::new(limit, period).burst(burst))
            }
            _ => None,
        },
    }
}

impl PostgresStore {
    /// [`JobStore::queues`](crate::JobStore::queues).
    pub(super) async fn all_queues(&self) -> Result<Vec<Queue>> {
        let sql = concat!(
            "SELECT name, ",
            settings_columns!(),
            " FROM jobworks_queues ORDER BY name"
        );
        let rows: Vec<NamedSettingsRow> = sqlx::query_as(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|(name, paused, max, limit, period, burst, per_key)| {
                Ok(Queue {
                    name: QueueName::new(name)?,
                    settings: settings((paused, max, limit, period, burst, per_key)),
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
        let row: SettingsRow = sqlx::query_as(sql)
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
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(settings(row))
    }

    /// [`JobStore::queue_stats`](crate::JobStore::queue_stats).
    pub(super) async fn counts_by_queue(&self) -> Result<BTreeMap<QueueName, QueueStats>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT queue, status, COUNT(*) FROM jobworks_jobs GROUP BY queue, status",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut all: BTreeMap<QueueName, QueueStats> = BTreeMap::new();
        for (queue, st, n) in rows {
            all.entry(QueueName::new(queue)?)
                .or_default()
                .add(status(BACKEND, &st)?, n as u64);
        }
        Ok(all)
    }
}
