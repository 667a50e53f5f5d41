//! Queue settings and counts in SQLite.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{BACKEND, db};
use crate::Result;
use crate::job::QueueName;
use crate::sql::{micros, status};
use crate::store::{Queue, QueuePatch, QueueSettings, QueueStats};

/// Whether queue `name` is paused.
pub(super) fn paused(conn: &Connection, name: &QueueName) -> Result<bool> {
    let paused: Option<bool> = conn
        .prepare_cached("SELECT paused FROM jobworks_queues WHERE name = ?1")
        .and_then(|mut s| s.query_row([name.as_str()], |r| r.get(0)).optional())
        .map_err(db)?;
    Ok(paused.unwrap_or(false))
}

/// Every queue with stored settings.
pub(super) fn all(conn: &Connection) -> Result<Vec<Queue>> {
    let mut stmt = conn
        .prepare_cached("SELECT name, paused FROM jobworks_queues ORDER BY name")
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))
        .map_err(db)?;
    let mut queues = Vec::new();
    for row in rows {
        let (name, paused) = row.map_err(db)?;
        queues.push(Queue {
            name: QueueName::new(name)?,
            settings: QueueSettings { paused },
        });
    }
    Ok(queues)
}

/// Applies `patch` to queue `name`'s settings, in the writer's transaction.
pub(super) fn update(
    conn: &Connection,
    name: &QueueName,
    patch: &QueuePatch,
    now: DateTime<Utc>,
) -> Result<QueueSettings> {
    let mut settings = all(conn)?
        .into_iter()
        .find(|q| &q.name == name)
        .map(|q| q.settings)
        .unwrap_or_default();
    patch.apply(&mut settings);
    conn.prepare_cached(
        "INSERT INTO jobworks_queues (name, paused, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET paused = ?2, updated_at = ?3",
    )
    .and_then(|mut s| s.execute(params![name.as_str(), settings.paused, micros(now)]))
    .map_err(db)?;
    Ok(settings)
}

/// Job counts by queue and status.
pub(super) fn stats(conn: &Connection) -> Result<BTreeMap<QueueName, QueueStats>> {
    let mut stmt = conn
        .prepare_cached("SELECT queue, status, COUNT(*) FROM jobworks_jobs GROUP BY queue, status")
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(db)?;
    let mut all: BTreeMap<QueueName, QueueStats> = BTreeMap::new();
    for row in rows {
        let (queue, st, n) = row.map_err(db)?;
        all.entry(QueueName::new(queue)?)
            .or_default()
            .add(status(BACKEND, &st)?, n as u64);
    }
    Ok(all)
}
