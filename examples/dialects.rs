//! Two other real-world shapes of the same polling API, served from one engine beside the
//! canonical one (under `/v1`), each in a few dozen lines built from the adapter's public
//! pieces: the `Principal` extractor, the `ApiError` envelope and the engine.
//!
//! - `GET /api/jobs/{id}`: UUID ids, `PENDING | PROCESSING | COMPLETED | FAILED`, camelCase
//!   (a snoozed or retried job is `PENDING` again; a cancelled one `FAILED` with the error
//!   `cancelled`).
//! - `GET /api/jobs/{type}/{id}`: `{"data": {"job_id", "type", "status", "result", "error"}}`
//!   with `created | running | done | failed`.
//!
//! ```sh
//! cargo run --example dialects --features http
//! ```
//! It takes the flags of the `server` example, and its credentials and demo job types.

mod common;

use axum::extract::{FromRef, Path, State};
use axum::routing::get;
use axum::{Json, Router};
use jobworks::http::{ApiError, Auth, JobsApi, Principal, Scope, format_time};
use jobworks::{Engine, Job, JobId, JobStatus, JobType};
use serde_json::{Value, json};

#[derive(Clone)]
struct Dialects {
    engine: Engine,
    auth: Auth,
}

impl FromRef<Dialects> for Auth {
    fn from_ref(state: &Dialects) -> Auth {
        state.auth.clone()
    }
}

/// Only the hyphenated UUID form: anything else is `400 invalid_id`.
fn uuid_id(raw: &str) -> Result<JobId, ApiError> {
    match raw.len() {
        36 => raw.parse().map_err(|_| ApiError::invalid_id(raw)),
        _ => Err(ApiError::invalid_id(raw)),
    }
}

async fn read(state: &Dialects, principal: &Principal, id: JobId) -> Result<Job, ApiError> {
    principal.require(Scope::Read)?;
    Ok(state.engine.get(&principal.tenant, id).await?)
}

/// Dialect 1: `GET /api/jobs/{id}`.
async fn camel_case(
    State(state): State<Dialects>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = read(&state, &principal, uuid_id(&id)?).await?;
    let status = match job.status {
        JobStatus::Queued => "PENDING",
        JobStatus::Running => "PROCESSING",
        JobStatus::Completed => "COMPLETED",
        _ => "FAILED",
    };
    let error = job
        .error
        .clone()
        .or_else(|| (job.status == JobStatus::Cancelled).then(|| "cancelled".into()));
    Ok(Json(json!({
        "id": job.id.to_uuid_string(),
        "status": status,
        "queue": job.queue.as_str(),
        "concurrencyKey": job.concurrency_key,
        "attempts": job.attempts,
        "result": job.result,
        "error": error,
        "createdAt": format_time(job.created_at),
        "startedAt": job.started_at.map(format_time),
        "completedAt": job.completed_at.map(format_time),
        "updatedAt": format_time(job.updated_at),
    })))
}

/// Dialect 2: `GET /api/jobs/{type}/{id}`.
async fn enveloped(
    State(state): State<Dialects>,
    principal: Principal,
    Path((job_type, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let known = state.engine.job_types();
    let Some(job_type) = JobType::new(&job_type).ok().filter(|t| known.contains(t)) else {
        let known: Vec<String> = known.iter().map(ToString::to_string).collect();
        return Err(ApiError::from(jobworks::Error::UnknownJobType {
            job_type,
            known,
        }));
    };
    let id = uuid_id(&id)?;
    let job = read(&state, &principal, id).await?;
    if job.job_type != job_type {
        return Err(jobworks::Error::NotFound { id }.into());
    }
    let status = match job.status {
        JobStatus::Queued => "created",
        JobStatus::Running => "running",
        JobStatus::Completed => "done",
        _ => "failed",
    };
    Ok(Json(json!({ "data": {
        "job_id": job.id.to_uuid_string(),
        "type": job.job_type.as_str(),
        "status": status,
        "result": job.result,
        "error": job.error,
    }})))
}

fn app(engine: Engine, api: JobsApi, auth: Auth) -> Router {
    let dialects = Router::new()
        .route("/api/jobs/{id}", get(camel_case))
        .route("/api/jobs/{job_type}/{id}", get(enveloped))
        .with_state(Dialects { engine, auth });
    Router::new().nest("/v1", api.router()).merge(dialects)
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
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use jobworks::{NewJob, TenantId};
    use tower::ServiceExt;

    async fn call(app: &Router, path: &str, token: &str) -> (StatusCode, Value) {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
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
        let (status, body) = call(&app, &format!("/api/jobs/{id}"), "demo-acme").await;
        assert_eq!(
            (status, &body["type"]),
            (StatusCode::BAD_REQUEST, &json!("invalid_id"))
        );
        let (status, _) = call(&app, &format!("/api/jobs/{uuid}"), "demo-globex").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (status, body) = call(&app, &format!("/api/jobs/ECHO/{uuid}"), "demo-acme").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"]["status"], "done");
        assert_eq!(body["data"]["job_id"], json!(uuid));
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
