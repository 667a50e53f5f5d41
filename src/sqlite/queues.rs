//! Queue settings and counts in SQLite.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{BACKEND, db};
use crate::job::QueueName;
use crate::sql::{from_micros, micros, status};
use crate::store::{Queue, QueuePatch, QueueSettings, QueueStats, RateLimit};
use crate::{Result, TenantId};

/// The settings columns, in the order [`settings_of`] reads them.
macro_rules! settings_columns {
    () => {
        "paused, max_running, rate_limit, rate_period_ms, rate_burst, max_running_per_key"
    };
}

fn settings_of(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<QueueSettings> {
    let limit: Option<u32> = row.get(first + 2)?;
    let period: Option<i64> = row.get(first + 3)?;
    let burst: Option<u32> = row.get(first + 4)?;
    Ok(QueueSettings {
        paused: row.get(first)?,
        max_running: row.get(first + 1)?,
        max_running_per_key: row.get(first + 5)?,
        rate: match (limit, period, burst) {
            (Some(limit), Some(ms), Some(burst)) => {
                let period = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
                Some(RateLimit::new(limit, period).burst(burst))
            }
            _ => None,
        },
    })
}

/// Stores the state of queue `name`'s rate bucket.
pub(super) fn set_rate_tat(conn: &Connection, name: &QueueName, tat: DateTime<Utc>) -> Result<()> {
    conn.prepare_cached("UPDATE jobworks_queues SET rate_tat = ?2 WHERE name = ?1")
        .and_then(|mut s| s.execute(params![name.as_str(), micros(tat)]))
        .map_err(db)?;
    Ok(())
}

/// Where queue `name`'s turn stands: the tenant served last, and the first and last
/// tenants (by name) with queued jobs in it, in one statement.
pub(super) fn turn(
    conn: &Connection,
    name: &QueueName,
) -> Result<(Option<TenantId>, Option<TenantId>, Option<TenantId>)> {
    type Names = (Option<String>, Option<String>, Option<String>);
    let (cursor, first, last): Names = conn
        .prepare_cached(
            "SELECT (SELECT tenant FROM jobworks_turns WHERE queue = ?1), \
                (SELECT tenant FROM jobworks_jobs WHERE queue = ?1 AND status = 'queued' \
                 ORDER BY tenant LIMIT 1), \
                (SELECT tenant FROM jobworks_jobs WHERE queue = ?1 AND status = 'queued' \
                 ORDER BY tenant DESC LIMIT 1)",
        )
        .and_then(|mut s| s.query_row([name.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .map_err(db)?;
    let tenant = |t: Option<String>| t.map(TenantId::new).transpose();
    Ok((tenant(cursor)?, tenant(first)?, tenant(last)?))
}

/// Stores where queue `name`'s next claim starts its turn.
pub(super) fn set_cursor(conn: &Connection, name: &QueueName, tenant: &TenantId) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO jobworks_turns (queue, tenant) VALUES (?1, ?2) \
         ON CONFLICT (queue) DO UPDATE SET tenant = ?2",
    )
    .and_then(|mut s| s.execute(params![name.as_str(), tenant.as_str()]))
    .map_err(db)?;
    Ok(())
}

/// How many of queue `name`'s jobs with concurrency key `key` run under a lease
/// unexpired at `now`.
pub(super) fn running_with_key(
    conn: &Connection,
    name: &QueueName,
    key: &str,
    now: DateTime<Utc>,
) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM jobworks_jobs WHERE status = 'running' AND queue = ?1 \
             AND concurrency_key = ?2 AND concurrency_key IS NOT NULL AND lease_expires_at > ?3",
        )
        .and_then(|mut s| s.query_row(params![name.as_str(), key, micros(now)], |r| r.get(0)))
        .map_err(db)?;
    Ok(n as u64)
}

/// The settings of queue `name` (the defaults when it has none) and the state of its
/// rate bucket.
pub(super) fn settings(
    conn: &Connection,
    name: &QueueName,
) -> Result<(QueueSettings, Option<DateTime<Utc>>)> {
    let sql = concat!(
        "SELECT ",
        settings_columns!(),
        ", rate_tat FROM jobworks_queues WHERE name = ?1"
    );
    let found = conn
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_row([name.as_str()], |r| {
                Ok((settings_of(r, 0)?, r.get::<_, Option<i64>>(6)?))
            })
            .optional()
        })
        .map_err(db)?;
    let Some((settings, tat)) = found else {
        return Ok(Default::default());
    };
    Ok((
        settings,
        tat.map(|us| from_micros(BACKEND, us)).transpose()?,
    ))
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
    let sql = concat!(
        "SELECT name, ",
        settings_columns!(),
        " FROM jobworks_queues ORDER BY name"
    );
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
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
    let (mut settings, _) = settings(conn, name)?;
    patch.apply(&mut settings);
    let rate = settings.rate;
    conn.prepare_cached(
        "INSERT INTO jobworks_queues (name, paused, max_running, rate_limit, rate_period_ms, \
             rate_burst, updated_at, max_running_per_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?9) \
         ON CONFLICT (name) DO UPDATE SET paused = ?2, max_running = ?3, rate_limit = ?4, \
             rate_period_ms = ?5, rate_burst = ?6, updated_at = ?7, max_running_per_key = ?9, \
             rate_tat = CASE WHEN ?8 THEN NULL ELSE rate_tat END",
    )
    .and_then(|mut s| {
        s.execute(params![
            name.as_str(),
            settings.paused,
            settings.max_running,
            rate.map(|r| r.limit),
            rate.map(|r| r.period.as_millis() as i64),
            rate.map(|r| r.burst),
            micros(now),
            patch.rate.is_some(),
            settings.max_running_per_key,
        ])
    })
    .map_err(db)?;
    Ok(settings)
}

/// Job counts by queue and status.
pub(super) fn stats(
    conn: &Connection,
    tenant: Option<&TenantId>,
) -> Result<BTreeMap<QueueName, QueueStats>> {
    let mut stmt = conn
        .prepare_cached(match tenant {
            Some(_) => {
                "SELECT queue, status, COUNT(*) FROM jobworks_jobs WHERE tenant = ?1 \
                 GROUP BY queue, status"
            }
            None => {
                "SELECT queue, status, COUNT(*) FROM jobworks_jobs WHERE ?1 IS NULL \
                 GROUP BY queue, status"
            }
        })
        .map_err(db)?;
    counts(&mut stmt, tenant)
}

/// The open jobs (waiting, queued, running) by queue and status, each status counted from
/// its own partial index.
pub(super) fn open_counts(
    conn: &Connection,
    tenant: Option<&TenantId>,
) -> Result<BTreeMap<QueueName, QueueStats>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT queue, 'queued', COUNT(*) FROM jobworks_jobs INDEXED BY jobworks_jobs_ready \
             WHERE status = 'queued' AND (?1 IS NULL OR tenant = ?1) GROUP BY queue \
             UNION ALL \
             SELECT queue, 'running', COUNT(*) FROM jobworks_jobs INDEXED BY jobworks_jobs_running \
             WHERE status = 'running' AND (?1 IS NULL OR tenant = ?1) GROUP BY queue \
             UNION ALL \
             SELECT queue, 'waiting', COUNT(*) FROM jobworks_jobs INDEXED BY jobworks_jobs_waiting \
             WHERE status = 'waiting' AND (?1 IS NULL OR tenant = ?1) GROUP BY queue",
        )
        .map_err(db)?;
    counts(&mut stmt, tenant)
}

/// The rows `(queue, status, count)` of `stmt`, run for `tenant`, as counts by queue.
fn counts(
    stmt: &mut rusqlite::CachedStatement<'_>,
    tenant: Option<&TenantId>,
) -> Result<BTreeMap<QueueName, QueueStats>> {
    let rows = stmt
        .query_map([tenant.map(TenantId::as_str)], |r| {
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
