//! Queue settings and counts in SQLite.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{BACKEND, db};
use crate::Result;
use crate::job::QueueName;
use crate::sql::{micros, status};
use crate::store::{Queue, QueuePatch, QueueSettings, QueueStats};

const SETTINGS: &str = "paused, max_running";

fn settings_of(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<QueueSettings> {
    Ok(QueueSettings {
        paused: row.get(first)?,
        max_running: row.get(first + 1)?,
    })
}

/// The settings of queue `name` (the defaults when it has none).
pub(super) fn settings(conn: &Connection, name: &QueueName) -> Result<QueueSettings> {
    let sql = format!("SELECT {SETTINGS} FROM jobworks_queues WHERE name = ?1");
    let found = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row([name.as_str()], |r| settings_of(r, 0))
                .optional()
        })
        .map_err(db)?;
    Ok(found.unwrap_or_default())
}

/// How many of queue `name`'s jobs run under a lease unexpired at `now`.
pub(super) fn running(conn: &Connection, name: &QueueName, now: DateTime<Utc>) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM jobworks_jobs \
             WHERE status = 'running' AND queue = ?1 AND lease_expires_at > ?2",
        )
        .and_then(|mut s| s.query_row(params![name.as_str(), micros(now)], |r| r.get(0)))
        .map_err(db)?;
    Ok(n as u64)
}

/// Every queue with stored settings.
pub(super) fn all(conn: &Connection) -> Result<Vec<Queue>> {
    let sql = format!("SELECT name, {SETTINGS} FROM jobworks_queues ORDER BY name");
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, settings_of(r, 1)?)))
        .map_err(db)?;
    let mut queues = Vec::new();
    for row in rows {
        let (name, settings) = row.map_err(db)?;
        queues.push(Queue {
            name: QueueName::new(name)?,
            settings,
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
    let mut settings = settings(conn, name)?;
    patch.apply(&mut settings);
    conn.prepare_cached(
        "INSERT INTO jobworks_queues (name, paused, max_running, updated_at) \
         VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (name) DO UPDATE SET paused = ?2, max_running = ?3, updated_at = ?4",
    )
    .and_then(|mut s| {
        s.execute(params![
            name.as_str(),
            settings.paused,
            settings.max_running,
            micros(now)
        ])
    })
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
