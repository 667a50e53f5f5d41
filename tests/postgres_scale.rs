//! PostgreSQL at scale: the store keeps its tables free of dead rows, heartbeats stay
//! HOT, and many engine processes drain one queue. Ignored unless
//! `JOBWORKS_TEST_POSTGRES_URL` is set when they are built; `.ci/run` always sets it.

use std::sync::Arc;
use std::time::Duration;

use jobworks::{Engine, JobContext, JobError, JobType, NewJob, PostgresStore, TenantId, from_fn};
use serde_json::{Value, json};

mod pg {
    include!("support/postgres.rs");
}

/// An engine of `NOOP` jobs that purges finished jobs at once.
fn noop_engine(store: Arc<PostgresStore>) -> Engine {
    Engine::builder()
        .store(store)
        .retention(Duration::ZERO)
        .reap_interval(Duration::from_millis(100))
        .executor(
            "NOOP",
            from_fn(|_: JobContext, _: Value| async { Ok::<_, JobError>(()) }),
        )
        .build()
        .unwrap()
}

/// `(vacuums, dead rows)` of a table of the store's schema, as the statistics say.
async fn vacuum_stats(store: &PostgresStore, table: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables
         WHERE schemaname = current_schema() AND relname = $1",
    )
    .bind(table)
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// Dead rows do not pile up when autovacuum does not run: the store vacuums its job and
/// event tables itself once their dead rows pass its threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_vacuums_its_tables_when_dead_rows_pile_up() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store = Arc::new(
        schemas
            .fresh_with(&url, |b| b.vacuum_threshold(Some(200)))
            .await,
    );
    // Whatever the server's settings, only the store vacuums these tables here.
    sqlx::raw_sql(
        "ALTER TABLE jobworks_jobs SET (autovacuum_enabled = false);
         ALTER TABLE jobworks_events SET (autovacuum_enabled = false)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let engine = noop_engine(store.clone());
    let ty = JobType::new("NOOP").unwrap();
    let tenant = TenantId::new("acme").unwrap();
    let jobs: Vec<NewJob> = (0..500)
        .map(|_| NewJob::new(ty.clone(), json!({})))
        .collect();
    engine.submit_many(&tenant, jobs).await.unwrap();
    // Each job's claim and finish leave a dead row version, its purge a third.
    engine.start().unwrap();
    // Statistics reach the server within seconds of a session going idle.
    let mut seen = (0, 0);
    for _ in 0..300 {
        seen = (
            vacuum_stats(&store, "jobworks_jobs").await.0,
            vacuum_stats(&store, "jobworks_events").await.0,
        );
        if seen.0 > 0 && seen.1 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.0 > 0 && seen.1 > 0, "vacuums (jobs, events): {seen:?}");
    let (_, dead) = vacuum_stats(&store, "jobworks_jobs").await;
    assert!(dead < 200, "{dead} dead rows left");
    engine.shutdown().await;
    schemas.drop_all(&url).await;
}

/// `(updates, HOT updates)` of the job table, once the statistics count at least `updates`.
async fn updates_of_jobs(store: &PostgresStore, at_least: i64) -> (i64, i64) {
    let mut seen = (0, 0);
    for _ in 0..300 {
        seen = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
             WHERE schemaname = current_schema() AND relname = 'jobworks_jobs'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if seen.0 >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

/// A heartbeat changes no indexed column, so it is a HOT update: no new index entries,
/// and the row's old version is reclaimed without a vacuum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_postgres_tests),
    ignore = "set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
async fn postgres_heartbeats_are_hot_updates() {
    let url = pg::url();
    let schemas = pg::Schemas::default();
    let store = Arc::new(schemas.fresh(&url).await);
    let engine = Engine::builder()
        .store(store.clone())
        .executor(
            "SLOW",
            from_fn(|_: JobContext, _: Value| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                Ok::<_, JobError>(())
            }),
        )
        .heartbeat_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    engine.start().unwrap();
    let tenant = TenantId::new("acme").unwrap();
    let job = NewJob::new(JobType::new("SLOW").unwrap(), json!({}));
    let id = engine.submit(&tenant, job).await.unwrap().job.id;
    engine
        .wait_until_terminal(&tenant, id, Duration::from_secs(10))
        .await
        .unwrap();
    // The claim and the finish change the status (indexed); every other update is a
    // heartbeat.
    let (updates, hot) = updates_of_jobs(&store, 12).await;
    assert!(
        updates >= 12,
        "{updates} updates: too few heartbeats to tell"
    );
    assert!(hot >= updates - 2, "{hot} of {updates} updates were HOT");
    engine.shutdown().await;
    schemas.drop_all(&url).await;
}
