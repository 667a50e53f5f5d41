//! The store vacuums its busiest tables itself.
//!
//! Every job leaves three dead row versions in `jobworks_jobs` (queued, running, and the
//! finished row once the purge deletes it) and one per event in `jobworks_events`. A busy
//! queue makes tens of thousands a second, and until a `VACUUM` clears them each claim
//! walks over the dead entries at the head of the ready index: throughput falls by half
//! within minutes (see `BENCHMARKS.md`). Autovacuum is off on some servers, and where it
//! is on it looks only once a minute (`autovacuum_naptime`) and waits for a fifth of the
//! table to be dead. So the store looks every second and vacuums a table once its dead
//! rows pass the threshold, on a connection of its pool. A table another session is
//! vacuuming (autovacuum or another engine) is skipped (`SKIP_LOCKED`).

use std::time::Duration;

use super::db::Db;
use tracing::{debug, warn};

/// How often the dead rows are counted.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The tables the store vacuums.
const TABLES: [&str; 2] = ["jobworks_jobs", "jobworks_events"];

/// Whether a table of `live` rows with `dead` dead ones needs a vacuum: past `threshold`
/// dead rows plus a fifth of the live ones (autovacuum's rule, with its own numbers).
pub(super) fn due(dead: i64, live: i64, threshold: u64) -> bool {
    dead > 0 && dead as u64 >= threshold.saturating_add(live.max(0) as u64 / 5)
}

/// Vacuums the tables when due, on a connection of the store's pool, until the store is
/// dropped.
pub(super) async fn run(store: Db, schema: String, threshold: u64) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if let Err(e) = vacuum_due(&store, &schema, threshold).await {
            warn!(error = %e, "vacuuming failed; trying again");
        }
    }
}

async fn vacuum_due(store: &Db, schema: &str, threshold: u64) -> crate::Result<()> {
    let mut conn = store.conn().await?;
    let counts: Vec<(String, i64, i64)> = store
        .sql()
        .query_as(
            "SELECT relname::text, n_dead_tup, n_live_tup FROM pg_stat_user_tables
             WHERE schemaname = $1 AND relname = ANY($2)",
        )
        .bind(schema)
        .bind(&TABLES[..])
        .fetch_all(&mut *conn)
        .await
        .map_err(super::db)?;
    conn.done().await?;
    for (table, dead, live) in counts {
        if !due(dead, live, threshold) {
            continue;
        }
        let Some(table) = TABLES.iter().find(|t| **t == table) else {
            continue;
        };
        debug!(table, dead, live, "vacuuming");
        // The table is one of the constants above, the schema's name was validated. A
        // vacuum cannot run in a transaction: it is one simple query, which even a
        // transaction-mode pooler runs on one server connection.
        let sql = format!("VACUUM (SKIP_LOCKED) \"{schema}\".{table}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .map_err(super::db)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn a_table_is_due_past_the_threshold_and_a_fifth_of_its_live_rows() {
        assert!(!due(0, 0, 20_000));
        assert!(!due(19_999, 0, 20_000));
        assert!(due(20_000, 0, 20_000));
        assert!(!due(39_999, 100_000, 20_000));
        assert!(due(40_000, 100_000, 20_000));
        // Statistics can be briefly negative after a reset; never a vacuum then.
        assert!(!due(-5, -5, 1));
        assert!(due(1, 0, 0));
        assert!(!due(0, 0, 0));
    }
}
