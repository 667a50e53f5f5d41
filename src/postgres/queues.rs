//! Queue settings and counts in PostgreSQL.

use std::collections::BTreeMap;

use super::{BACKEND, PostgresStore, db};
use crate::Result;
use crate::job::QueueName;
use crate::sql::status;
use crate::store::{Queue, QueuePatch, QueueSettings, QueueStats};

fn settings(paused: bool, max_running: Option<i32>) -> QueueSettings {
    QueueSettings {
        paused,
        max_running: max_running.and_then(|n| u32::try_from(n).ok()),
    }
}

impl PostgresStore {
    /// [`JobStore::queues`](crate::JobStore::queues).
    pub(super) async fn all_queues(&self) -> Result<Vec<Queue>> {
        let rows: Vec<(String, bool, Option<i32>)> =
            sqlx::query_as("SELECT name, paused, max_running FROM jobworks_queues ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.into_iter()
            .map(|(name, paused, max_running)| {
                Ok(Queue {
                    name: QueueName::new(name)?,
                    settings: settings(paused, max_running),
                })
            })
            .collect()
    }

    /// [`JobStore::update_queue`](crate::JobStore::update_queue): one statement, which
    /// also tells the other processes when the change may let jobs run.
    pub(super) async fn patch_queue(
        &self,
        name: &QueueName,
        patch: &QueuePatch,
    ) -> Result<QueueSettings> {
        let max_running = patch
            .max_running
            .map(|max| max.map(|n| i32::try_from(n).unwrap_or(i32::MAX)));
        let (paused, max_running): (bool, Option<i32>) = sqlx::query_as(
            "WITH saved AS (
                INSERT INTO jobworks_queues (name, paused, max_running, updated_at)
                VALUES ($1, COALESCE($2, false), $7, $3)
                ON CONFLICT (name) DO UPDATE
                    SET paused = COALESCE($2, jobworks_queues.paused),
                        max_running = CASE WHEN $6 THEN $7 ELSE jobworks_queues.max_running END,
                        updated_at = $3
                RETURNING paused, max_running
            ), told AS (
                SELECT pg_notify($4, 'w') WHERE $5
            )
            SELECT paused, max_running FROM saved, (SELECT count(*) FROM told) AS t",
        )
        .bind(name.as_str())
        .bind(patch.paused)
        .bind(self.inner.clock.now())
        .bind(self.channel())
        .bind(patch.may_free_work())
        .bind(max_running.is_some())
        .bind(max_running.flatten())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(settings(paused, max_running))
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
