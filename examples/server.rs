//! The whole jobs API of the wire contract over HTTP, on embedded defaults (a SQLite file
//! and artifacts in `./jobworks-data`), with demo credentials and demo job types.
//!
//! ```sh
//! cargo run --example server --features http
//! cargo run --example server --features http -- --store memory --rate-limit 100
//! ```
//!
//! A schedule that makes an `ECHO` job every ten seconds on Berlin's clock (`demo-acme-admin`
//! has the `admin` scope that schedules need; `demo-acme` reads them and their jobs):
//!
//! ```sh
//! curl -s -H 'Authorization: Bearer demo-acme-admin' -H 'content-type: application/json' \
//!      http://127.0.0.1:8080/v1/schedules -d '{"name": "heartbeat", "cron": "*/10 * * * * *",
//!      "timezone": "Europe/Berlin", "job": {"type": "ECHO", "input": {"beat": true}}}'
//! curl -s -H 'Authorization: Bearer demo-acme' "http://127.0.0.1:8080/v1/jobs?schedule_id=ID"
//! curl -s -H 'Authorization: Bearer demo-acme-admin' -X PATCH -H 'content-type: application/json' \
//!      http://127.0.0.1:8080/v1/schedules/ID -d '{"paused": true}'
//! ```
//!
//! Two servers on one SQLite file (or one PostgreSQL database) make each tick once.
//!
//! With the `dashboard` feature it also serves the dashboard at `/dashboard`, with two
//! HTTP Basic logins: `acme-key:acme-secret` sees tenant `acme` and may cancel its jobs,
//! `ops:ops-secret` sees every tenant and may take every action:
//!
//! ```sh
//! cargo run --example server --features "http dashboard"
//! # then open http://127.0.0.1:8080/dashboard
//! ```
//!
//! `README.md` has a curl session against it.

mod common;

use common::Options;
use jobworks::http::JobsApi;

#[tokio::main]
async fn main() {
    let options = Options::from_args();
    let store = options.job_store().await;
    let artifacts = options.artifacts("/v1");
    let engine = common::demo_engine(&options, store, artifacts)
        .build()
        .expect("engine");
    engine.start().expect("workers");
    let prometheus = jobworks::http::install_prometheus().expect("the metrics recorder");
    let api = JobsApi::new(engine.clone(), common::demo_credentials()).metrics(prometheus);
    let api = options.limits(api);
    let app = axum::Router::new().nest("/v1", api.router());
    #[cfg(feature = "dashboard")]
    let app = app.nest_service("/dashboard", common::demo_dashboard(engine.clone()));
    println!(
        "jobworks serving on {}/v1 (store {})",
        options.public_url(),
        common::redacted(&options.store)
    );
    println!(
        "job types: ECHO, SLEEP {{\"ms\": n}}, FLAKY {{\"fail_times\": n}} or {{\"permanent\": true}}, RENDER"
    );
    common::print_credentials();
    println!("OpenAPI document: {}/v1/openapi.json", options.public_url());
    if cfg!(feature = "dashboard") {
        println!(
            "dashboard: {}/dashboard (Basic acme-key:acme-secret sees acme and may cancel; ops:ops-secret sees all and may do all)",
            options.public_url()
        );
    }
    common::serve(&options, app, engine).await;
}
