//! Dashboard pages and the `/metrics` scrape with 100,000 jobs in the store: SQLite, and
//! PostgreSQL when `JOBWORKS_TEST_POSTGRES_URL` is set.
//!
//! ```sh
//! cargo bench --bench dashboard --all-features
//! ```
//! Each page is answered by the router in process (no socket), as `ops` (every tenant)
//! and, for the jobs list, as `acme-key` (one tenant).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jobworks::dashboard::{Action, BasicLogins, Dashboard, Viewer};
use jobworks::http::{JobsApi, Principal, Scope, StaticCredentials};
use jobworks::{
    Engine, JobContext, JobError, JobId, JobStore, JobType, NewJob, NewWorkflow, RetryPolicy,
    TenantId, Tenants, WorkflowJob, from_fn,
};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tower::ServiceExt as _;

const JOBS: usize = 100_000;
/// Left queued (submitted after the engine stopped).
const QUEUED: usize = 10_000;
const OPS: &str = "Basic b3BzOm9wcy1zZWNyZXQ="; // ops:ops-secret
const ACME: &str = "Basic YWNtZS1rZXk6YWNtZS1zZWNyZXQ="; // acme-key:acme-secret
const OPERATOR: &str = "Bearer operator";

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

/// An engine whose `ECHO` jobs complete and `BROKEN` ones fail for good.
fn engine(store: Arc<dyn JobStore>) -> Engine {
    Engine::builder()
        .store(store)
        .concurrency(64)
        .claim_batch(64)
        .retry_policy(RetryPolicy::default().max_attempts(1))
        .executor(
            "ECHO",
            from_fn(|_c: JobContext, v: Value| async move { Ok::<_, JobError>(v) }),
        )
        .executor(
            "BROKEN",
            from_fn(|_c: JobContext, _v: Value| async move {
                Err::<Value, _>(JobError::fail("broken on purpose"))
            }),
        )
        .build()
        .expect("engine")
}

/// Fills `store` with 100,000 jobs of three tenants (90,000 finished, one in ten of them
/// failed, then 10,000 queued) and a workflow; answers a failed job's id and the
/// workflow's.
async fn seed(store: Arc<dyn JobStore>) -> (JobId, jobworks::WorkflowId) {
    let names = ["acme", "globex", "initech"];
    let batch = |from: usize, n: usize| -> Vec<(TenantId, Vec<NewJob>)> {
        names
            .iter()
            .map(|t| {
                let jobs = (from..from + n)
                    .map(|i| {
                        let ty = if i % 10 == 0 { "BROKEN" } else { "ECHO" };
                        NewJob::new(JobType::new(ty).unwrap(), json!({ "i": i }))
                    })
                    .collect();
                (tenant(t), jobs)
            })
            .collect()
    };
    let running = engine(store.clone());
    running.start().expect("start");
    let finished = JOBS - QUEUED;
    let per = 1000;
    let mut failed = None;
    for from in (0..finished / names.len()).step_by(per) {
        for (t, jobs) in batch(from, per) {
            let done = running.submit_many(&t, jobs).await.expect("submit");
            failed = failed.or(done.first().map(|s| s.job.id));
        }
    }
    running.wait_idle().await;
    let flow = NewWorkflow::new()
        .name("nightly")
        .job(WorkflowJob::new(
            "fetch",
            NewJob::new(JobType::new("ECHO").unwrap(), json!({})),
        ))
        .job(
            WorkflowJob::new(
                "load",
                NewJob::new(JobType::new("ECHO").unwrap(), json!({})),
            )
            .depends_on(["fetch"]),
        );
    let workflow = running
        .submit_workflow(&tenant("acme"), flow)
        .await
        .expect("workflow");
    running.wait_idle().await;
    running.shutdown().await;
    let idle = engine(store);
    for from in (0..QUEUED / names.len()).step_by(per) {
        for (t, jobs) in batch(from, per.min(QUEUED / names.len() - from)) {
            idle.submit_many(&t, jobs).await.expect("submit");
        }
    }
    (failed.expect("a failed job"), workflow.id)
}

fn app(engine: Engine, prometheus: jobworks::http::PrometheusHandle) -> axum::Router {
    let logins = BasicLogins::new()
        .login(
            "acme-key",
            "acme-secret",
            Viewer::new("acme-key", Tenants::only([tenant("acme")])).may(Action::Cancel),
        )
        .login(
            "ops",
            "ops-secret",
            Viewer::new("ops", Tenants::All).may_do_everything(),
        );
    let credentials = StaticCredentials::new().bearer(
        "operator",
        Principal::new(tenant("acme"), "operator").with_scope(Scope::Operator),
    );
    axum::Router::new()
        .nest(
            "/v1",
            JobsApi::new(engine.clone(), credentials)
                .metrics(prometheus)
                .router(),
        )
        .nest_service("/dashboard", Dashboard::new(engine, logins).router())
}

async fn answer(app: &axum::Router, path: &str, login: &str) -> usize {
    let request = Request::get(path)
        .header(header::AUTHORIZATION, login)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    body.len()
}

fn pages(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let prometheus = jobworks::http::install_prometheus().expect("recorder");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut stores: Vec<(&str, Arc<dyn JobStore>)> = Vec::new();
    let sqlite = rt.block_on(async {
        jobworks::SqliteStore::open(dir.path().join("dashboard.db"))
            .await
            .expect("open")
    });
    stores.push(("sqlite", Arc::new(sqlite)));
    if let Ok(url) = std::env::var("JOBWORKS_TEST_POSTGRES_URL") {
        let pg = rt.block_on(async {
            let store = jobworks::PostgresStore::builder(&url)
                .schema("jobworks_bench_dashboard")
                .connect()
                .await
                .expect("connect");
            store.drop_schema().await.expect("drop");
            store.migrate().await.expect("migrate");
            store
        });
        stores.push(("postgres", Arc::new(pg)));
    }
    let mut group = c.benchmark_group("dashboard_100k_jobs");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    for (name, store) in stores {
        let (failed, workflow) = rt.block_on(seed(store.clone()));
        // The jobs ran in a minute or two; spread their finishes over the last 55 minutes,
        // as an hour of steady work would have left them.
        if name == "postgres" {
            rt.block_on(async {
                let url = std::env::var("JOBWORKS_TEST_POSTGRES_URL").unwrap();
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                for sql in [
                    "UPDATE jobworks_bench_dashboard.jobworks_jobs \
                     SET completed_at = completed_at - random() * interval '55 minutes' \
                     WHERE completed_at IS NOT NULL",
                    // As after autovacuum: fresh statistics and visibility map.
                    "VACUUM ANALYZE jobworks_bench_dashboard.jobworks_jobs",
                ] {
                    sqlx::query(sql).execute(&pool).await.unwrap();
                }
            });
        } else {
            let db = rusqlite::Connection::open(dir.path().join("dashboard.db")).unwrap();
            db.execute(
                "UPDATE jobworks_jobs SET completed_at = completed_at - abs(random()) % 3300000000 \
                 WHERE completed_at IS NOT NULL",
                [],
            )
            .unwrap();
        }
        let app = app(engine(store.clone()), prometheus.clone());
        // The first view of the overview reads the whole hour; later ones only the last
        // two minutes.
        let cold = std::time::Instant::now();
        rt.block_on(answer(&app, "/dashboard", OPS));
        println!("{name}: the first overview took {:?}", cold.elapsed());
        let paths = [
            ("overview", "/dashboard".to_owned(), OPS),
            ("queues", "/dashboard/queues".to_owned(), OPS),
            ("jobs", "/dashboard/jobs".to_owned(), OPS),
            ("jobs_one_tenant", "/dashboard/jobs".to_owned(), ACME),
            (
                "jobs_failed_of_a_type",
                "/dashboard/jobs?status=failed&type=BROKEN".to_owned(),
                OPS,
            ),
            ("failed", "/dashboard/failed".to_owned(), OPS),
            ("job", format!("/dashboard/jobs/{failed}"), OPS),
            ("schedules", "/dashboard/schedules".to_owned(), OPS),
            ("workflow", format!("/dashboard/workflows/{workflow}"), OPS),
            ("metrics", "/v1/metrics".to_owned(), OPERATOR),
        ];
        for (page, path, login) in paths {
            group.bench_function(BenchmarkId::new(name, page), |b| {
                b.to_async(&rt).iter(|| answer(&app, &path, login));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, pages);
criterion_main!(benches);
