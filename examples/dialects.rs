//! Two other real-world shapes of the same polling API, served from one engine beside the
//! canonical one (under `/v1`), each a `JobShape`: configuration, no handlers.
//!
//! - `GET /api/jobs/{id}`: UUID ids, `PENDING | PROCESSING | COMPLETED | FAILED`, camelCase
//!   (a waiting, snoozed or retried job is `PENDING`; a cancelled one `FAILED` with the
//!   error `cancelled`).
//! - `GET /api/jobs/{type}/{id}`: `{"data": {"job_id", "type", "status", "result", "error"}}`
//!   with `created | running | done | failed`.
//!
//! ```sh
//! cargo run --example dialects --features http
//! ```
//! It takes the flags of the `server` example, and its credentials and demo job types.

mod common;

use axum::Router;
use jobworks::http::{Auth, FieldCase, IdForm, JobShape, JobsApi};
use jobworks::{Engine, JobStatus};

/// UUIDs, upper-case status words and camelCase.
fn camel_case() -> JobShape {
    JobShape::new()
        .case(FieldCase::Camel)
        .ids(IdForm::Uuid)
        .status(JobStatus::Waiting, "PENDING")
        .status(JobStatus::Queued, "PENDING")
        .status(JobStatus::Running, "PROCESSING")
        .status(JobStatus::Completed, "COMPLETED")
        .status(JobStatus::Failed, "FAILED")
        .status(JobStatus::Cancelled, "FAILED")
        .cancelled_error("cancelled")
        .fields([
            "id",
            "type",
            "status",
            "queue",
            "concurrency_key",
            "attempts",
            "result",
            "error",
            "created_at",
            "started_at",
            "completed_at",
            "updated_at",
        ])
}

/// `{"data": …}` with a few fields and lower-case words.
fn enveloped() -> JobShape {
    JobShape::new()
        .ids(IdForm::Uuid)
        .status(JobStatus::Waiting, "created")
        .status(JobStatus::Queued, "created")
        .status(JobStatus::Running, "running")
        .status(JobStatus::Completed, "done")
        .status(JobStatus::Failed, "failed")
        .status(JobStatus::Cancelled, "failed")
        .fields(["id", "type", "status", "result", "error"])
        .rename("id", "job_id")
        .wrap("data")
}

fn app(engine: Engine, api: JobsApi, auth: Auth) -> Router {
    Router::new()
        .nest("/v1", api.router())
        .merge(camel_case().poll_route("/api/jobs/{id}", engine.clone(), auth.clone()))
        .merge(enveloped().poll_route("/api/jobs/{type}/{id}", engine, auth))
}

#[tokio::main]
async fn main() {
    let options = common::Options::from_args();
    let artifacts = options.artifacts("/v1");
    let engine = common::demo_engine(&options, options.job_store().await, artifacts)
        .build()
        .expect("engine");
    engine.start().expect("workers");
    let mut api = JobsApi::new(engine.clone(), common::demo_credentials());
    let mut auth = Auth::new(common::demo_credentials());
    if let Some(n) = options.rate_limit {
        api = api.rate_limit(n);
        auth = auth.rate_limit(n);
    }
    let url = options.public_url();
    println!("canonical API: {url}/v1/jobs");
    println!("dialect 1:     {url}/api/jobs/{{uuid}}");
    println!("dialect 2:     {url}/api/jobs/{{type}}/{{uuid}}");
    common::print_credentials();
    common::serve(&options, app(engine.clone(), api, auth), engine).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use jobworks::{JobType, NewJob, TenantId};
    use serde_json::{Value, json};

    async fn call(app: &Router, path: &str, token: &str) -> (StatusCode, Value) {
        common::call(app, "GET", path, token, None).await
    }

    #[tokio::test]
    async fn both_dialects_answer_from_one_engine() {
        let options = common::Options::from_args_in(["--store", "memory"]);
        let engine = common::demo_engine(
            &options,
            options.job_store().await,
            options.artifacts("/v1"),
        )
        .build()
        .unwrap();
        engine.start().unwrap();
        let api = JobsApi::new(engine.clone(), common::demo_credentials());
        let app = app(engine.clone(), api, Auth::new(common::demo_credentials()));
        let acme = TenantId::new("acme").unwrap();
        let new = NewJob::new(JobType::new("ECHO").unwrap(), json!({"hi": 1}));
        let id = engine.submit(&acme, new).await.unwrap().job.id;
        engine
            .wait_until_terminal(&acme, id, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let uuid = id.to_uuid_string();

        let (status, body) = call(&app, &format!("/api/jobs/{uuid}"), "demo-acme").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (&body["id"], &body["status"]),
            (&json!(uuid), &json!("COMPLETED"))
        );
        assert_eq!(body["result"], json!({"hi": 1}));
        assert!(body["createdAt"].is_string() && body["completedAt"].is_string());
        assert_eq!(
            (&body["queue"], &body["concurrencyKey"]),
            (&json!("default"), &Value::Null)
        );
        assert_eq!(body["type"], "ECHO");
        let mut keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut expected = [
            "id",
            "type",
            "status",
            "queue",
            "concurrencyKey",
            "attempts",
            "result",
            "error",
            "createdAt",
            "startedAt",
            "completedAt",
            "updatedAt",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected, "every field of the shape, and no other");
        let (status, body) = call(&app, &format!("/api/jobs/{id}"), "demo-acme").await;
        assert_eq!(
            (status, &body["type"]),
            (StatusCode::BAD_REQUEST, &json!("invalid_id"))
        );
        let (status, _) = call(&app, &format!("/api/jobs/{uuid}"), "demo-globex").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (status, body) = call(&app, &format!("/api/jobs/ECHO/{uuid}"), "demo-acme").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"data": {"job_id": uuid, "type": "ECHO", "status": "done",
                            "result": {"hi": 1}, "error": null}})
        );
        let (status, body) = call(&app, &format!("/api/jobs/SLEEP/{uuid}"), "demo-acme").await;
        assert_eq!(
            (status, &body["type"]),
            (StatusCode::NOT_FOUND, &json!("job_not_found"))
        );
        let (status, body) = call(&app, &format!("/api/jobs/NOPE/{uuid}"), "demo-acme").await;
        assert_eq!(
            (status, &body["type"]),
            (StatusCode::BAD_REQUEST, &json!("unknown_job_type"))
        );
        let (status, body) = call(&app, &format!("/v1/jobs/{id}"), "demo-acme").await;
        assert_eq!(
            (status, &body["status"]),
            (StatusCode::OK, &json!("completed"))
        );
        engine.shutdown().await;
    }
}
