//! Schedules in SQLite: a tenant's JSON body with the revision that guards its writes.

use rusqlite::{Connection, OptionalExtension, params};

use super::{BACKEND, db};
use crate::Result;
use crate::job::{ScheduleId, TenantId};
use crate::schedule::Schedule;
use crate::sql::{json_text, parse_json};

fn id_bytes(id: ScheduleId) -> [u8; 16] {
    id.to_u128().to_be_bytes()
}

/// One tenant's schedules, or every tenant's, by id.
pub(super) fn all(conn: &Connection, tenant: Option<&TenantId>) -> Result<Vec<Schedule>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT body FROM jobworks_schedules WHERE ?1 IS NULL OR tenant = ?1 ORDER BY id",
        )
        .map_err(db)?;
    let bodies = stmt
        .query_map([tenant.map(TenantId::as_str)], |r| r.get::<_, String>(0))
        .map_err(db)?;
    bodies
        .map(|body| parse_json(BACKEND, &body.map_err(db)?))
        .collect()
}

/// A tenant's schedule.
pub(super) fn one(
    conn: &Connection,
    tenant: &TenantId,
    id: ScheduleId,
) -> Result<Option<Schedule>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM jobworks_schedules WHERE id = ?1 AND tenant = ?2")
        .and_then(|mut s| {
            s.query_row(params![id_bytes(id), tenant.as_str()], |r| r.get(0))
                .optional()
        })
        .map_err(db)?;
    body.map(|b| parse_json(BACKEND, &b)).transpose()
}

/// Inserts `schedule` (`expected` is `None`) or replaces it while its revision is
/// `expected`; `false` when that guard does not hold.
pub(super) fn put(conn: &Connection, schedule: &Schedule, expected: Option<u64>) -> Result<bool> {
    let (id, tenant, body) = (
        id_bytes(schedule.id),
        schedule.tenant.as_str(),
        json_text(schedule),
    );
    let revision = schedule.revision as i64;
    let changed = match expected {
        None => conn
            .prepare_cached(
                "INSERT INTO jobworks_schedules (id, tenant, revision, body) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![id, tenant, revision, body])),
        Some(expected) => conn
            .prepare_cached(
                "UPDATE jobworks_schedules SET revision = ?3, body = ?4 \
                 WHERE id = ?1 AND tenant = ?2 AND revision = ?5",
            )
            .and_then(|mut s| s.execute(params![id, tenant, revision, body, expected as i64])),
    }
    .map_err(db)?;
    Ok(changed == 1)
}

/// Deletes a tenant's schedule.
pub(super) fn delete(conn: &Connection, tenant: &TenantId, id: ScheduleId) -> Result<bool> {
    let deleted = conn
        .prepare_cached("DELETE FROM jobworks_schedules WHERE id = ?1 AND tenant = ?2")
        .and_then(|mut s| s.execute(params![id_bytes(id), tenant.as_str()]))
        .map_err(db)?;
    Ok(deleted == 1)
}
