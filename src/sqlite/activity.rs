//! Engines' beats and the count of finished jobs by minute, in SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::{BACKEND, db};
use crate::Result;
use crate::job::TenantId;
use crate::sql::{from_micros, json_text, micros, parse_json};
use crate::store::{EngineBeat, MinuteCounts, forget_before};

/// Stores `beat` in place of the engine's earlier one and forgets old beats.
pub(super) fn beat(conn: &Connection, beat: &EngineBeat) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO jobworks_engines (id, seen_at, body) VALUES (?1, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, body = excluded.body",
    )
    .and_then(|mut s| s.execute(params![beat.id, micros(beat.seen_at), json_text(beat)]))
    .map_err(db)?;
    conn.prepare_cached("DELETE FROM jobworks_engines WHERE seen_at < ?1")
        .and_then(|mut s| s.execute([micros(beat.seen_at - forget_before())]))
        .map_err(db)?;
    Ok(())
}

/// The engines seen since `since`, the most recent first.
pub(super) fn engines(conn: &Connection, since: DateTime<Utc>) -> Result<Vec<EngineBeat>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT body FROM jobworks_engines WHERE seen_at >= ?1 ORDER BY seen_at DESC",
        )
        .map_err(db)?;
    let bodies = stmt
        .query_map([micros(since)], |r| r.get::<_, String>(0))
        .map_err(db)?;
    bodies
        .map(|body| parse_json(BACKEND, &body.map_err(db)?))
        .collect()
}

/// Jobs that completed or failed since `since`, by minute, counted from the index of
/// finished jobs alone (it holds the time, the status and the tenant).
pub(super) fn finished_by_minute(
    conn: &Connection,
    tenant: Option<&TenantId>,
    since: DateTime<Utc>,
) -> Result<Vec<MinuteCounts>> {
    macro_rules! by_minute {
        ($tenant:literal) => {
            concat!(
                "SELECT completed_at / 60000000, \
                 SUM(status = 'completed'), SUM(status = 'failed') \
                 FROM jobworks_jobs INDEXED BY jobworks_jobs_ended \
                 WHERE completed_at >= ?1 AND ",
                $tenant,
                " AND status IN ('completed', 'failed') GROUP BY 1 ORDER BY 1"
            )
        };
    }
    let sql = match tenant {
        Some(_) => by_minute!("tenant = ?2"),
        None => by_minute!("?2 IS NULL"),
    };
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let rows = stmt
        .query_map(params![micros(since), tenant.map(TenantId::as_str)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(db)?;
    let mut all = Vec::new();
    for row in rows {
        let (minute, completed, failed) = row.map_err(db)?;
        all.push(MinuteCounts {
            minute: minute_start(minute)?,
            completed: completed as u64,
            failed: failed as u64,
        });
    }
    Ok(all)
}

/// The start of minute `n` since the epoch.
fn minute_start(n: i64) -> Result<DateTime<Utc>> {
    from_micros(BACKEND, n.saturating_mul(60_000_000))
}
