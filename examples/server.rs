//! The whole jobs API of the wire contract over HTTP, on embedded defaults (a SQLite file
//! and artifacts in `./jobworks-data`), with demo credentials and demo job types.
//!
//! ```sh
//! cargo run --example server --features http
//! cargo run --example server --features http -- --store memory --rate-limit 100
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
    let mut api = JobsApi::new(engine.clone(), common::demo_credentials());
    if let Some(n) = options.rate_limit {
        api = api.rate_limit(n);
    }
    let app = axum::Router::new().nest("/v1", api.router());
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
    common::serve(&options, app, engine).await;
}
