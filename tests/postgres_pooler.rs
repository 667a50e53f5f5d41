//! The PostgreSQL store through PgBouncer in transaction mode: the conformance suites
//! with `LISTEN` on a direct connection, the wake-up test polling instead, and the error
//! a store not told about the pooler gets. Ignored unless `JOBWORKS_TEST_PGBOUNCER_URL`
//! (the pooler, e.g. `postgres://postgres@127.0.0.1:6432/test`) and
//! `JOBWORKS_TEST_POSTGRES_URL` (the same database directly) are set when they are built;
//! `.ci/run` starts the pooler (`.ci/pgbouncer`) and sets both.

use std::sync::Arc;
use std::time::Duration;

use jobworks::testing::{run_document_store_suite, run_job_store_suite, wake_up_test};

#[allow(dead_code)]
mod pg {
    include!("support/postgres.rs");
}

fn pooler_url() -> String {
    std::env::var("JOBWORKS_TEST_PGBOUNCER_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("JOBWORKS_TEST_PGBOUNCER_URL names the PgBouncer of these tests")
}

/// In CI (`CI` set) the pooler tests must run, never show as ignored.
#[test]
fn pooler_tests_are_not_ignored_in_ci() {
    let built_with_a_pooler = cfg!(jobworks_pgbouncer_tests);
    if std::env::var_os("CI").is_some() && !built_with_a_pooler {
        panic!("CI must set JOBWORKS_TEST_PGBOUNCER_URL (.ci/run starts PgBouncer)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_pgbouncer_tests),
    ignore = "set JOBWORKS_TEST_PGBOUNCER_URL to run the PgBouncer tests"
)]
async fn the_store_passes_the_suites_through_pgbouncer_in_transaction_mode() {
    let (pooler, direct) = (pooler_url(), pg::url());
    let schemas = pg::Schemas::default();
    let through =
        |b: jobworks::PostgresStoreBuilder| b.transaction_pooler(true).listen_url(&direct);
    run_job_store_suite(|| schemas.fresh_with(&pooler, through)).await;
    run_document_store_suite(|| schemas.fresh_with(&pooler, through)).await;
    let store = schemas.fresh_with(&pooler, through).await;
    wake_up_test(Arc::new(store), 500).await;
    schemas.drop_all(&direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_pgbouncer_tests),
    ignore = "set JOBWORKS_TEST_PGBOUNCER_URL to run the PgBouncer tests"
)]
async fn without_a_listen_url_the_store_polls_and_loses_no_wake_up() {
    let (pooler, direct) = (pooler_url(), pg::url());
    let schemas = pg::Schemas::default();
    let store = schemas
        .fresh_with(&pooler, |b| {
            b.transaction_pooler(true)
                .poll_interval(Duration::from_millis(50))
        })
        .await;
    wake_up_test(Arc::new(store), 200).await;
    schemas.drop_all(&direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jobworks_pgbouncer_tests),
    ignore = "set JOBWORKS_TEST_PGBOUNCER_URL to run the PgBouncer tests"
)]
async fn a_store_not_told_about_the_pooler_is_refused_with_a_hint() {
    let e = jobworks::PostgresStore::builder(pooler_url())
        .connect()
        .await
        .unwrap_err();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    assert!(text.contains("transaction_pooler"), "{text}");
}
