//! The wire contract over a real loopback socket with a real HTTP client.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::request::Parts;
use jobworks::http::{
    ApiError, Authenticator, JobsApi, PathParams, Principal, Scope, StaticCredentials,
};
use jobworks::{
    ArtifactKey, ArtifactName, ArtifactSpec, Engine, JobContext, JobError, ObjectStoreArtifacts,
    TenantId, from_fn,
};
use reqwest::{Method, StatusCode};

mod support {
    include!("support/http.rs");
}
use serde_json::{Value, json};
use support::{Server, assert_envelope};

fn credentials() -> StaticCredentials {
    let acme = TenantId::new("acme").unwrap();
    StaticCredentials::new()
        .bearer("acme", Principal::new(acme.clone(), "a"))
        .bearer(
            "globex",
            Principal::new(TenantId::new("globex").unwrap(), "g"),
        )
        .bearer("reader", Principal::new(acme.clone(), "r").read_only())
        .bearer(
            "operator",
            Principal::new(acme.clone(), "o").with_scope(Scope::Operator),
        )
        .bearer(
            "admin",
            Principal::new(acme.clone(), "admin-7").with_scope(Scope::Admin),
        )
        .basic("key", "secret", Principal::new(acme, "k"))
}

fn engine(artifacts: ObjectStoreArtifacts) -> Engine {
    let engine = Engine::builder()
        .artifacts(artifacts)
        .executor(
            "ECHO",
            from_fn(|_c: JobContext, v: Value| async move { Ok::<_, JobError>(v) }),
        )
        .executor(
            "SLEEP",
            from_fn(|ctx: JobContext, ms: u64| async move {
                ctx.stage("sleeping").await?;
                tokio::select! {
                    _ = ctx.cancelled() => Err(JobError::cancelled()),
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(json!(ms)),
                }
            }),
        )
        .executor(
            "THROW",
            from_fn(|_c: JobContext, _v: Value| async move {
                Err::<Value, _>(JobError::fail("thrown"))
            }),
        )
        .executor(
            "RENDER",
            from_fn(|ctx: JobContext, text: String| async move {
                ctx.put_artifact(
                    ArtifactSpec::new("draft.txt", "text/plain").intermediate(),
                    "draft",
                )
                .await?;
                ctx.put_artifact(
                    ArtifactSpec::new("out/final.txt", "text/plain").kind("text"),
                    text,
                )
                .await?;
                Ok::<_, JobError>(json!("ok"))
            }),
        )
        .build()
        .unwrap();
    engine.start().unwrap();
    engine
}

async fn serve_with(mount: &str, make: impl FnOnce(Engine) -> axum::Router) -> Server {
    Server::start(mount, |artifacts| make(engine(artifacts))).await
}

async fn serve() -> Server {
    serve_with("/v1", |e| {
        axum::Router::new().nest("/v1", JobsApi::new(e, credentials()).router())
    })
    .await
}

impl Server {
    async fn submit(&self, body: Value) -> Value {
        let (status, _, job) = self
            .send(self.req(Method::POST, "/jobs", "acme").json(&body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        job
    }

    async fn wait_done(&self, id: &str) -> Value {
        for _ in 0..100 {
            let (_, _, job) = self
                .send(self.req(Method::GET, &format!("/jobs/{id}?wait=5"), "acme"))
                .await;
            if ["completed", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
                return job;
            }
        }
        panic!("job {id} never finished");
    }
}

#[tokio::test]
async fn submit_poll_and_events_follow_the_contract() {
    let s = serve().await;
    let (status, headers, job) = s
        .send(
            s.req(Method::POST, "/jobs", "acme")
                .json(&json!({"type": "ECHO", "input": {"x": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/v1/jobs/{id}").as_str());
    assert_eq!(job["status"], "queued");
    assert_eq!(job["type"], "ECHO");
    assert!(job["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        job["created_at"].as_str().unwrap().len(),
        24,
        "milliseconds and Z"
    );

    let done = s.wait_done(&id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["result"], json!({"x": 1}));
    assert_eq!(done["error"], Value::Null);
    assert_eq!(done["attempts"], 1);

    // ETag and 304; no Retry-After once terminal.
    let (status, headers, _) = s
        .send(s.req(Method::GET, &format!("/jobs/{id}"), "acme"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("retry-after").is_none());
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let (status, _, body) = s
        .send(
            s.req(Method::GET, &format!("/jobs/{id}"), "acme")
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!((status, body), (StatusCode::NOT_MODIFIED, Value::Null));

    // The same job as a UUID.
    let uuid = jobworks::JobId::from_str_any(&id);
    let (status, _, by_uuid) = s
        .send(s.req(Method::GET, &format!("/jobs/{uuid}"), "acme"))
        .await;
    assert_eq!((status, &by_uuid["id"]), (StatusCode::OK, &json!(id)));

    let (status, _, page) = s
        .send(s.req(Method::GET, &format!("/jobs/{id}/events"), "acme"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["queued", "started", "succeeded"]);
    assert_eq!(page["next_after"], 3);
    assert_eq!(page["terminal"], true);
    let (_, _, page) = s
        .send(s.req(
            Method::GET,
            &format!("/jobs/{id}/events?after=1&limit=1"),
            "acme",
        ))
        .await;
    assert_eq!(page["events"][0]["seq"], 2);
    assert_eq!(page["next_after"], 2);
    let (_, _, page) = s
        .send(s.req(Method::GET, &format!("/jobs/{id}/events?after=3"), "acme"))
        .await;
    assert_eq!(
        (
            page["events"].as_array().unwrap().len(),
            &page["next_after"]
        ),
        (0, &json!(3))
    );
}

trait AnyId {
    fn from_str_any(id: &str) -> String;
}
impl AnyId for jobworks::JobId {
    fn from_str_any(id: &str) -> String {
        id.parse::<jobworks::JobId>().unwrap().to_uuid_string()
    }
}

/// Without an OpenTelemetry layer, the job keeps the headers' context as sent; one it
/// cannot read is ignored, not refused.
#[tokio::test]
async fn a_submit_keeps_its_trace_context() {
    let kept = std::sync::Arc::new(std::sync::OnceLock::new());
    let engine_slot = kept.clone();
    let s = serve_with("/v1", move |e| {
        engine_slot.set(e.clone()).unwrap();
        axum::Router::new().nest("/v1", JobsApi::new(e, credentials()).router())
    })
    .await;
    let engine: &Engine = kept.get().unwrap();
    let acme = TenantId::new("acme").unwrap();
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = |rb: reqwest::RequestBuilder| {
        rb.header("traceparent", parent)
            .header("tracestate", "rojo=00f067aa0ba902b7")
            .header("tracestate", "congo=t61rcWkgMzE")
    };

    let (status, _, job) = s
        .send(traced(s.req(Method::POST, "/jobs", "acme")).json(&json!({"type": "ECHO"})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().parse().unwrap();
    let cx = engine.get(&acme, id).await.unwrap().trace.expect("kept");
    assert_eq!(cx.traceparent(), parent);
    assert_eq!(
        cx.tracestate(),
        Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    );
    // The wire shape of the job does not change.
    assert!(
        job.get("trace").is_none() && job.get("traceparent").is_none(),
        "{job}"
    );

    let flow = json!({"jobs": [{"key": "a", "type": "ECHO"}, {"key": "b", "type": "ECHO", "depends_on": ["a"]}]});
    let (status, _, workflow) = s
        .send(traced(s.req(Method::POST, "/workflows", "acme")).json(&flow))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{workflow}");
    let nodes = workflow["jobs"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{workflow}");
    for node in nodes {
        let id = node["id"].as_str().unwrap().parse().unwrap();
        let cx = engine.get(&acme, id).await.unwrap().trace.expect("kept");
        assert_eq!(cx.traceparent(), parent);
    }

    for bad in [
        &parent.to_uppercase(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    ] {
        let (status, _, job) = s
            .send(
                s.req(Method::POST, "/jobs", "acme")
                    .header("traceparent", bad)
                    .json(&json!({"type": "ECHO"})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        let id = job["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(engine.get(&acme, id).await.unwrap().trace, None, "{bad}");
    }
}

#[tokio::test]
async fn queued_jobs_carry_a_polling_hint_and_cancel_at_once() {
    let s = serve().await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let job = s
        .submit(json!({"type": "ECHO", "run_at": later, "priority": 5, "max_attempts": 2}))
        .await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(
        (&job["priority"], &job["max_attempts"]),
        (&json!(5), &json!(2))
    );
    let (_, headers, _) = s
        .send(s.req(Method::GET, &format!("/jobs/{id}"), "acme"))
        .await;
    assert!(headers.get("retry-after").is_some());
    let (status, _, cancelled) = s
        .send(s.req(Method::POST, &format!("/jobs/{id}/cancel"), "acme"))
        .await;
    assert_eq!(
        (status, &cancelled["status"]),
        (StatusCode::ACCEPTED, &json!("cancelled"))
    );
    let (status, _, body) = s
        .send(s.req(Method::POST, &format!("/jobs/{id}/cancel"), "acme"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_envelope(&body, 409, "conflict");
}

#[tokio::test]
async fn long_polls_answer_promptly_on_change() {
    let s = serve().await;
    let job = s.submit(json!({"type": "SLEEP", "input": 300})).await;
    let id = job["id"].as_str().unwrap();
    let started = Instant::now();
    let done = s.wait_done(id).await;
    assert_eq!(done["status"], "completed");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );

    // A running job, cancelled while a reader waits for events: the reader wakes at once.
    let job = s.submit(json!({"type": "SLEEP", "input": 60_000})).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let (_, _, page) = s
        .send(s.req(
            Method::GET,
            &format!("/jobs/{id}/events?after=0&wait=5"),
            "acme",
        ))
        .await;
    let mut after = page["next_after"].as_u64().unwrap();
    let waiter = {
        let rb = s.req(
            Method::GET,
            &format!("/jobs/{id}/events?after={after}&wait=20"),
            "acme",
        );
        tokio::spawn(async move {
            (
                Instant::now(),
                rb.send().await.unwrap().json::<Value>().await.unwrap(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, _) = s
        .send(s.req(Method::POST, &format!("/jobs/{id}/cancel"), "acme"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (since, page) = waiter.await.unwrap();
    assert!(
        since.elapsed() < Duration::from_secs(5),
        "the long poll slept"
    );
    assert!(!page["events"].as_array().unwrap().is_empty());
    after = page["next_after"].as_u64().unwrap().max(after);
    let done = s.wait_done(&id).await;
    assert_eq!(done["status"], "cancelled");
    assert!(after >= 3);
}

#[tokio::test]
async fn idempotency_by_header_or_body() {
    let s = serve().await;
    let first = s
        .submit(json!({"type": "ECHO", "input": 1, "idempotency_key": "k1"}))
        .await;
    let (status, _, again) = s
        .send(
            s.req(Method::POST, "/jobs", "acme")
                .header("idempotency-key", "k1")
                .json(&json!({"type": "ECHO", "input": 1})),
        )
        .await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &first["id"]));
    let (status, _, body) = s
        .send(
            s.req(Method::POST, "/jobs", "acme")
                .json(&json!({"type": "ECHO", "input": 2, "idempotency_key": "k1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_envelope(&body, 409, "already_exists");
    // Another tenant's key space is its own.
    let (status, _, _) = s
        .send(
            s.req(Method::POST, "/jobs", "globex")
                .json(&json!({"type": "ECHO", "input": 1, "idempotency_key": "k1"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, body) = s
        .send(
            s.req(Method::POST, "/jobs", "acme")
                .header("idempotency-key", "k2")
                .json(&json!({"type": "ECHO", "idempotency_key": "k3"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["loc"], json!(["body", "idempotency_key"]));
}

/// How many jobs the tenant `acme` has.
async fn stored_jobs(s: &Server) -> usize {
    let (_, _, list) = s.send(s.req(Method::GET, "/jobs?limit=1000", "acme")).await;
    list["jobs"].as_array().unwrap().len()
}

/// `POST /jobs/batch`: all or none, in order, each job checked as a single submit.
#[tokio::test]
async fn a_batch_is_submitted_whole_or_not_at_all() {
    let s = serve().await;
    let batch = |jobs: Value| {
        s.req(Method::POST, "/jobs/batch", "acme")
            .json(&json!({ "jobs": jobs }))
    };

    let (status, _, body) = s
        .send(batch(json!([
            {"type": "ECHO", "input": {"n": 0}},
            {"type": "ECHO", "input": {"n": 1}, "priority": 5, "idempotency_key": "b-1"},
            {"type": "SLEEP", "input": 1, "queue": "default"},
        ])))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let jobs = body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(
        jobs.iter()
            .map(|j| j["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ECHO", "ECHO", "SLEEP"]
    );
    assert_eq!(
        (&jobs[1]["input"], &jobs[1]["priority"]),
        (&json!({"n": 1}), &json!(5))
    );
    assert!(jobs.iter().all(|j| j["status"] == "queued"));
    let stored = stored_jobs(&s).await;
    assert_eq!(stored, 3);

    // A bad job anywhere: 422 at its place, and none of the others is created.
    let (status, _, body) = s
        .send(batch(json!([
            {"type": "ECHO"},
            {"type": "ECHO", "priority": 5000},
        ])))
        .await;
    assert_envelope(&body, 422, "validation_error");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["errors"][0]["loc"],
        json!(["body", "jobs", "1", "priority"])
    );
    let (status, _, body) = s
        .send(batch(json!([{"type": "ECHO"}, {"type": "NOPE"}])))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_envelope(&body, 400, "unknown_job_type");
    let (_, _, body) = s
        .send(batch(
            json!([{"type": "ECHO"}, {"type": "ECHO", "idempotency_key": "b-1"}]),
        ))
        .await;
    assert_envelope(&body, 409, "already_exists");
    assert_eq!(
        stored_jobs(&s).await,
        stored,
        "nothing of a refused batch is stored"
    );

    // A replayed batch is the same jobs, and 200.
    let (status, _, again) = s
        .send(batch(
            json!([{"type": "ECHO", "input": {"n": 1}, "priority": 5, "idempotency_key": "b-1"}]),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["jobs"][0]["id"], jobs[1]["id"]);

    // 1 to 1,000 jobs, and nothing but `jobs`.
    for bad in [
        json!({"jobs": []}),
        json!({"jobs": vec![json!({"type": "ECHO"}); 1001]}),
        json!({"jobs": {}}),
        json!({"jobs": [], "extra": 1}),
        json!({"jobs": [1]}),
        json!({"jobs": [{"type": "ECHO"}, null]}),
    ] {
        let (status, _, body) = s
            .send(s.req(Method::POST, "/jobs/batch", "acme").json(&bad))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let (status, _, _) = s
        .send(
            s.req(Method::POST, "/jobs/batch", "reader")
                .json(&json!({"jobs": [{"type": "ECHO"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(stored_jobs(&s).await, stored);
}

#[tokio::test]
async fn bad_input_gets_the_envelope() {
    let s = serve().await;
    let (status, _, body) = s
        .send(
            s.req(Method::POST, "/jobs", "acme")
                .json(&json!({"priority": 5000, "max_attempts": "x", "run_at": "tomorrow"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_envelope(&body, 422, "validation_error");
    let locs: Vec<Value> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loc"].clone())
        .collect();
    for field in ["type", "priority", "max_attempts", "run_at"] {
        assert!(
            locs.contains(&json!(["body", field])),
            "{field} not named in {body}"
        );
    }
    let (status, _, body) = s
        .send(
            s.req(Method::POST, "/jobs", "acme")
                .json(&json!({"type": "NOPE"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_envelope(&body, 400, "unknown_job_type");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("ECHO, RENDER, SLEEP"),
        "{body}"
    );
    let (status, _, body) = s
        .send(
            s.req(Method::POST, "/jobs", "acme")
                .json(&json!({"type": "no spaces"})),
        )
        .await;
    assert_eq!(
        (status, &body["type"]),
        (StatusCode::BAD_REQUEST, &json!("unknown_job_type"))
    );

    let raw = |body: &'static str, ct: &'static str| {
        s.req(Method::POST, "/jobs", "acme")
            .header("content-type", ct)
            .body(body)
    };
    let (status, _, body) = s.send(raw("{not json", "application/json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_envelope(&body, 400, "invalid_request");
    let (status, _, body) = s
        .send(raw("type=ECHO", "application/x-www-form-urlencoded"))
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_envelope(&body, 415, "unsupported_media_type");
    let (status, _, body) = s.send(raw("[1]", "application/json")).await;
    assert_eq!(
        (status, &body["errors"][0]["loc"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!(["body"]))
    );
    let big = format!(
        "{{\"type\": \"ECHO\", \"input\": \"{}\"}}",
        "x".repeat(2 << 20)
    );
    let (status, _, body) = s
        .send(
            s.req(Method::POST, "/jobs", "acme")
                .header("content-type", "application/json")
                .body(big),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_envelope(&body, 413, "payload_too_large");

    let (status, _, body) = s.send(s.req(Method::GET, "/jobs/not-an-id", "acme")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_envelope(&body, 400, "invalid_id");
    let (status, _, body) = s
        .send(s.req(Method::GET, "/jobs?limit=0&status=done", "acme"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    let (status, _, body) = s
        .send(s.req(Method::GET, "/jobs?cursor=forged", "acme"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_envelope(&body, 400, "invalid_request");
    let (status, _, body) = s
        .send(s.req(
            Method::GET,
            "/jobs/01JD8X7Z3K4M5N6P7Q8R9S0T1V/events?wait=99",
            "acme",
        ))
        .await;
    assert_eq!(
        (status, &body["errors"][0]["loc"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!(["query", "wait"]))
    );
}

#[tokio::test]
async fn framework_rejections_get_the_envelope() {
    let s = serve().await;
    let (status, _, body) = s.send(s.req(Method::GET, "/nowhere", "acme")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, 404, "not_found");
    let (status, headers, body) = s.send(s.req(Method::DELETE, "/jobs", "acme")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_envelope(&body, 405, "method_not_allowed");
    assert!(headers["allow"].to_str().unwrap().contains("POST"));
    assert_eq!(headers["content-type"], "application/json");
}

#[tokio::test]
async fn credentials_and_scopes_are_checked() {
    let s = serve().await;
    let url = format!("{}/jobs", s.base);
    let (status, headers, body) = s.send(s.client.get(&url)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_envelope(&body, 401, "authentication_error");
    assert!(headers.get("www-authenticate").is_some());
    let (status, _, _) = s.send(s.client.get(&url).bearer_auth("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = s
        .send(s.client.get(&url).basic_auth("key", Some("wrong")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = s
        .send(s.client.get(&url).basic_auth("key", Some("secret")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = s.send(s.req(Method::GET, "/jobs", "reader")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = s
        .send(
            s.req(Method::POST, "/jobs", "reader")
                .json(&json!({"type": "ECHO"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_envelope(&body, 403, "permission_denied");
}

#[tokio::test]
async fn another_tenants_job_reads_like_a_missing_one() {
    let s = serve().await;
    let job = s.submit(json!({"type": "ECHO"})).await;
    let id = job["id"].as_str().unwrap();
    let missing = jobworks::JobId::new().to_string();
    for (method, path) in [
        (Method::GET, "/jobs/{}"),
        (Method::GET, "/jobs/{}/events"),
        (Method::POST, "/jobs/{}/cancel"),
    ] {
        let (s1, _, theirs) = s
            .send(s.req(method.clone(), &path.replace("{}", id), "globex"))
            .await;
        let (s2, _, none) = s
            .send(s.req(method, &path.replace("{}", &missing), "globex"))
            .await;
        assert_eq!((s1, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
        assert_envelope(&theirs, 404, "job_not_found");
        let theirs = theirs.to_string().replace(id, "ID");
        assert_eq!(theirs, none.to_string().replace(&missing, "ID"));
    }
    let (_, _, page) = s.send(s.req(Method::GET, "/jobs", "globex")).await;
    assert_eq!(page["jobs"], json!([]));
}

#[tokio::test]
async fn list_pages_are_stable() {
    let s = serve().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        ids.push(
            s.submit(json!({"type": "ECHO", "input": i, "run_at": later}))
                .await["id"]
                .clone(),
        );
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        let path = match &cursor {
            Some(c) => format!("/jobs?limit=2&cursor={c}"),
            None => "/jobs?limit=2".to_owned(),
        };
        let (status, _, page) = s.send(s.req(Method::GET, &path, "acme")).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].clone()),
        );
        // A job submitted while paging shows on no later page.
        s.submit(json!({"type": "ECHO", "run_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()})).await;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let (_, _, page) = s
        .send(s.req(
            Method::GET,
            "/jobs?status=queued&type=ECHO&limit=1000",
            "acme",
        ))
        .await;
    assert_eq!(pages, 3);
    assert_eq!(page["jobs"].as_array().unwrap().len(), 5 + pages);
    let (_, _, page) = s
        .send(s.req(Method::GET, "/jobs?status=completed", "acme"))
        .await;
    assert_eq!(page["jobs"], json!([]));
}

#[tokio::test]
async fn artifacts_download_through_signed_urls() {
    let s = serve().await;
    let job = s
        .submit(json!({"type": "RENDER", "input": "0123456789"}))
        .await;
    let done = s.wait_done(job["id"].as_str().unwrap()).await;
    let artifacts = done["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2);
    assert_eq!(artifacts[0]["role"], "intermediate");
    let last = &artifacts[1];
    assert_eq!(
        (&last["name"], &last["kind"], &last["size_bytes"]),
        (&json!("out/final.txt"), &json!("text"), &json!(10))
    );
    let url = last["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/artifacts/", s.base)));

    let r = s.client.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"final.txt\""
    );
    assert_eq!(r.text().await.unwrap(), "0123456789");
    let r = s
        .client
        .get(url)
        .header("range", "bytes=2-4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 2-4/10");
    assert_eq!(r.text().await.unwrap(), "234");
    let (status, headers, _) = s.send(s.client.get(url).header("range", "bytes=10-")).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers["content-range"], "bytes */10");

    // Tampering with any part of the token breaks the signature.
    let token = url.rsplit('/').next().unwrap();
    let (claims, sig) = token.split_once('.').unwrap();
    let mut forged_claims = claims.to_owned();
    forged_claims.replace_range(5..6, if &claims[5..6] == "A" { "B" } else { "A" });
    for bad in [
        format!("{forged_claims}.{sig}"),
        format!("{claims}.{}", &sig[1..]),
        "garbage".into(),
    ] {
        let (status, _, body) = s
            .send(s.client.get(format!("{}/artifacts/{bad}", s.base)))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{bad}");
        assert_envelope(&body, 403, "invalid_signature");
    }
    // A good signature past its expiry.
    let key = ArtifactKey::new(
        TenantId::new("acme").unwrap(),
        done["id"].as_str().unwrap().parse().unwrap(),
        ArtifactName::new("out/final.txt").unwrap(),
    );
    let expired = s.signer.sign(
        &key,
        "text/plain",
        chrono::Utc::now() - chrono::Duration::seconds(5),
    );
    let (status, _, body) = s.send(s.client.get(expired)).await;
    assert_eq!(status, StatusCode::GONE);
    assert_envelope(&body, 410, "url_expired");
    // Polls of an unchanged job carry the same URLs, so the ETag holds.
    let again = s
        .send(s.req(
            Method::GET,
            &format!("/jobs/{}", done["id"].as_str().unwrap()),
            "acme",
        ))
        .await
        .2;
    assert_eq!(again, done);
}

#[tokio::test]
async fn principals_are_rate_limited_when_asked() {
    let s = serve_with("/v1", |e| {
        let api = JobsApi::new(e, credentials()).rate_limit(NonZeroU32::new(2).unwrap());
        axum::Router::new().nest("/v1", api.router())
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(s.send(s.req(Method::GET, "/jobs", "acme")).await);
    }
    let (status, headers, body) = statuses.pop().unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_envelope(&body, 429, "rate_limited");
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Another principal has its own budget.
    let (status, _, _) = s.send(s.req(Method::GET, "/jobs", "globex")).await;
    assert_eq!(status, StatusCode::OK);
}

/// Tokens of an organisation, valid only under its own `/org/{org}` path.
#[derive(Debug)]
struct OrgAuth(StaticCredentials);

#[async_trait]
impl Authenticator for OrgAuth {
    async fn authenticate(&self, parts: &Parts, path: &PathParams) -> Result<Principal, ApiError> {
        let principal = self.0.authenticate(parts, path).await?;
        if path.get("org") != Some(principal.tenant.as_str()) {
            return Err(ApiError::permission_denied("not your organisation"));
        }
        Ok(principal)
    }
}

#[tokio::test]
async fn mounts_under_a_prefix_whose_parameters_the_authenticator_reads() {
    let s = serve_with("/org/{org}", |e| {
        axum::Router::new().nest(
            "/org/{org}",
            JobsApi::new(e, OrgAuth(credentials())).router(),
        )
    })
    .await;
    let (status, headers, job) = s
        .send(
            s.req(Method::POST, "/jobs", "acme")
                .json(&json!({"type": "ECHO"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        headers["location"],
        format!("/org/acme/jobs/{}", job["id"].as_str().unwrap()).as_str()
    );
    let other = s.base.replace("/org/acme", "/org/globex");
    let (status, _, body) = s
        .send(s.client.get(format!("{other}/jobs")).bearer_auth("acme"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_envelope(&body, 403, "permission_denied");

    let (status, _, doc) = s
        .send(s.client.get(format!("{}/openapi.json", s.base)))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "/org/acme");
    for path in [
        "/jobs",
        "/jobs/{id}",
        "/jobs/{id}/events",
        "/jobs/{id}/cancel",
        "/jobs/{id}/retry",
        "/jobs/{id}/requeue",
        "/jobs/bulk",
        "/queues",
        "/queues/{name}",
        "/queues/{name}/pause",
        "/queues/{name}/resume",
        "/artifacts/{token}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    // Every operation has an id of its own (generated clients name methods by them).
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "operation ids repeat: {ids:?}");
    assert_eq!(
        doc["paths"]["/jobs"]["post"]["responses"]["202"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/JobView"
    );
}

#[tokio::test]
async fn queues_are_named_at_submit_and_paused_by_operators() {
    let s = serve().await;
    let job = s
        .submit(json!({"type": "ECHO", "queue": "mail.v2", "concurrency_key": "customer-1"}))
        .await;
    assert_eq!(job["queue"], "mail.v2");
    assert_eq!(job["concurrency_key"], "customer-1");
    let plain = s
        .submit(json!({"type": "ECHO", "concurrency_key": null}))
        .await;
    assert_eq!(plain["queue"], "default");
    assert_eq!(plain["concurrency_key"], Value::Null);

    // The engine serves only `default`: the other job waits, and lists by its queue.
    s.wait_done(plain["id"].as_str().unwrap()).await;
    let (status, _, page) = s
        .send(s.req(Method::GET, "/jobs?queue=mail.v2", "acme"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["jobs"][0]["id"], job["id"]);
    let (status, _, body) = s.send(s.req(Method::GET, "/jobs?queue=Bad", "acme")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["loc"], json!(["query", "queue"]));

    for (bad, field) in [
        (json!({"type": "ECHO", "queue": "Upper"}), "queue"),
        (json!({"type": "ECHO", "queue": ""}), "queue"),
        (json!({"type": "ECHO", "queue": "q".repeat(65)}), "queue"),
        (json!({"type": "ECHO", "queue": 7}), "queue"),
        (
            json!({"type": "ECHO", "concurrency_key": "k".repeat(129)}),
            "concurrency_key",
        ),
        (
            json!({"type": "ECHO", "concurrency_key": ""}),
            "concurrency_key",
        ),
    ] {
        let (status, _, body) = s
            .send(s.req(Method::POST, "/jobs", "acme").json(&bad))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_envelope(&body, 422, "validation_error");
        assert_eq!(body["errors"][0]["loc"], json!(["body", field]), "{bad}");
    }

    // Queue routes need the operator scope.
    for who in ["acme", "reader"] {
        let (status, _, body) = s.send(s.req(Method::GET, "/queues", who)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}");
        assert_envelope(&body, 403, "permission_denied");
    }
    let (status, _, body) = s.send(s.req(Method::GET, "/queues", "operator")).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "mail.v2"]);
    let (status, _, q) = s
        .send(s.req(Method::GET, "/queues/mail.v2", "operator"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        q,
        json!({"name": "mail.v2", "paused": false, "max_running": null,
               "max_running_per_key": null, "rate": null,
               "counts": {"waiting": 0, "queued": 1, "running": 0, "failed": 0}})
    );
    let (status, _, q) = s
        .send(s.req(Method::GET, "/queues/never-used", "operator"))
        .await;
    assert_eq!(
        (status, &q["counts"]["queued"]),
        (StatusCode::OK, &json!(0))
    );
    let (status, _, body) = s
        .send(s.req(Method::GET, "/queues/Bad%20Name", "operator"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["loc"], json!(["path", "name"]));

    // Pause the default queue: a new job waits; resume: it runs at once.
    let (status, _, q) = s
        .send(s.req(Method::POST, "/queues/default/pause", "operator"))
        .await;
    assert_eq!((status, &q["paused"]), (StatusCode::OK, &json!(true)));
    let held = s.submit(json!({"type": "ECHO"})).await;
    let id = held["id"].as_str().unwrap();
    let (_, _, polled) = s
        .send(s.req(Method::GET, &format!("/jobs/{id}?wait=1"), "acme"))
        .await;
    assert_eq!(polled["status"], "queued", "a paused queue's job ran");
    let (status, _, q) = s
        .send(s.req(Method::POST, "/queues/default/resume", "operator"))
        .await;
    assert_eq!((status, &q["paused"]), (StatusCode::OK, &json!(false)));
    assert_eq!(s.wait_done(id).await["status"], "completed");

    // PATCH changes what it names and keeps the rest; a bad or unknown field is a 422.
    let patch = |body: Value| {
        s.req(Method::PATCH, "/queues/mail.v2", "operator")
            .json(&body)
    };
    let (status, _, q) = s
        .send(patch(json!({"max_running": 2, "paused": true})))
        .await;
    assert_eq!(status, StatusCode::OK, "{q}");
    assert_eq!((&q["max_running"], &q["paused"]), (&json!(2), &json!(true)));
    let (_, _, q) = s.send(patch(json!({"paused": false}))).await;
    assert_eq!(
        (&q["max_running"], &q["paused"]),
        (&json!(2), &json!(false))
    );
    let (_, _, q) = s.send(patch(json!({"max_running": null}))).await;
    assert_eq!(q["max_running"], Value::Null);
    let (status, _, q) = s
        .send(patch(json!({"rate": {"limit": 5, "period_ms": 1000}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{q}");
    assert_eq!(
        q["rate"],
        json!({"limit": 5, "period_ms": 1000, "burst": 5})
    );
    let (_, _, q) = s
        .send(patch(
            json!({"rate": {"limit": 5, "period_ms": 1000, "burst": 1}}),
        ))
        .await;
    assert_eq!(q["rate"]["burst"], 1);
    let (_, _, q) = s.send(patch(json!({"rate": null}))).await;
    assert_eq!(q["rate"], Value::Null);
    for (bad, field) in [
        (json!({"max_running": 0}), "max_running"),
        (json!({"max_running": 100_001}), "max_running"),
        (json!({"max_running": "2"}), "max_running"),
        (json!({"paused": "yes"}), "paused"),
        (json!({"max_running_per_key": 0}), "max_running_per_key"),
        (
            json!({"max_running_per_key": 100_001}),
            "max_running_per_key",
        ),
        (json!({"rate": 5}), "rate"),
    ] {
        let (status, _, body) = s.send(patch(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_envelope(&body, 422, "validation_error");
        assert_eq!(body["errors"][0]["loc"], json!(["body", field]), "{bad}");
    }
    for (bad, field) in [
        (json!({"rate": {"period_ms": 1000}}), "limit"),
        (json!({"rate": {"limit": 0, "period_ms": 1000}}), "limit"),
        (json!({"rate": {"limit": 1, "period_ms": 0}}), "period_ms"),
        (
            json!({"rate": {"limit": 1, "period_ms": 86_400_001}}),
            "period_ms",
        ),
        (
            json!({"rate": {"limit": 1, "period_ms": 10, "burst": 0}}),
            "burst",
        ),
        (
            json!({"rate": {"limit": 1, "period_ms": 10, "every": 3}}),
            "every",
        ),
    ] {
        let (status, _, body) = s.send(patch(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(
            body["errors"][0]["loc"],
            json!(["body", "rate", field]),
            "{bad}"
        );
    }
    let (status, _, _) = s
        .send(
            s.req(Method::PATCH, "/queues/mail.v2", "acme")
                .json(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn operators_retry_requeue_discard_and_act_in_bulk() {
    let s = serve().await;
    // A job that fails for good: SLEEP with an input that does not fit it.
    let bad = s
        .submit(json!({"type": "SLEEP", "input": "soon", "max_attempts": 1}))
        .await;
    let id = bad["id"].as_str().unwrap().to_owned();
    assert_eq!(s.wait_done(&id).await["status"], "failed");

    let post = |path: &str, who: &str| s.req(Method::POST, path, who);
    let (status, _, body) = s.send(post(&format!("/jobs/{id}/retry"), "acme")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_envelope(&body, 403, "permission_denied");
    let (status, _, body) = s.send(post(&format!("/jobs/{id}/retry"), "globex")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (status, _, job) = s
        .send(post(&format!("/jobs/{id}/retry"), "admin").json(&json!({"reason": "fixed"})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(
        (&job["status"], &job["attempts"]),
        (&json!("queued"), &json!(0))
    );
    assert_eq!(s.wait_done(&id).await["status"], "failed");
    let (_, _, page) = s
        .send(s.req(Method::GET, &format!("/jobs/{id}/events"), "acme"))
        .await;
    let op: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "operator")
        .collect();
    assert_eq!(op.len(), 1);
    assert_eq!(
        op[0]["payload"],
        json!({"action": "retry", "actor": "admin-7", "reason": "fixed"})
    );
    // Retry without a body; a body with an unknown field is refused.
    let (status, _, _) = s.send(post(&format!("/jobs/{id}/retry"), "admin")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    s.wait_done(&id).await;
    let (status, _, body) = s
        .send(post(&format!("/jobs/{id}/retry"), "admin").json(&json!({"why": 1})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["loc"], json!(["body", "why"]));

    // Requeue: only a queued job; 409 otherwise.
    let (status, _, body) = s.send(post(&format!("/jobs/{id}/requeue"), "admin")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_envelope(&body, 409, "conflict");
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let waiting = s.submit(json!({"type": "ECHO", "run_at": later})).await;
    let wid = waiting["id"].as_str().unwrap().to_owned();
    let (status, _, due) = s.send(post(&format!("/jobs/{wid}/requeue"), "admin")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{due}");
    assert_eq!(s.wait_done(&wid).await["status"], "completed");

    // Discard: 409 while not finished, 204 after, then 404 everywhere.
    let slow = s.submit(json!({"type": "SLEEP", "input": 60000})).await;
    let sid = slow["id"].as_str().unwrap().to_owned();
    let (status, _, body) = s
        .send(s.req(Method::DELETE, &format!("/jobs/{sid}"), "admin"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, _) = s
        .send(s.req(Method::DELETE, &format!("/jobs/{id}"), "globex"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = s
        .send(s.req(Method::DELETE, &format!("/jobs/{id}"), "admin"))
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, _, body) = s
        .send(s.req(Method::GET, &format!("/jobs/{id}"), "acme"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, 404, "job_not_found");
    let (status, _, _) = s
        .send(s.req(Method::DELETE, &format!("/jobs/{id}"), "admin"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bulk: a dry run counts, the cap holds, the action applies where it can.
    let bulk = |body: Value| s.req(Method::POST, "/jobs/bulk", "admin").json(&body);
    let (status, _, r) = s
        .send(bulk(
            json!({"action": "cancel", "filter": {"status": ["running", "queued"]},
                          "dry_run": true}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r, json!({"matched": 1, "applied": 0}));
    let (_, _, r) = s
        .send(bulk(
            json!({"action": "cancel", "filter": {"type": ["SLEEP"]}, "reason": "drain"}),
        ))
        .await;
    assert_eq!(r, json!({"matched": 1, "applied": 1}));
    assert_eq!(s.wait_done(&sid).await["status"], "cancelled");
    let (_, _, r) = s.send(bulk(json!({"action": "discard", "limit": 1}))).await;
    assert_eq!(r["matched"], 1);
    for (bad, loc) in [
        (json!({"action": "explode"}), json!(["body", "action"])),
        (json!({}), json!(["body", "action"])),
        (
            json!({"action": "retry", "limit": 0}),
            json!(["body", "limit"]),
        ),
        (
            json!({"action": "retry", "limit": 10_001}),
            json!(["body", "limit"]),
        ),
        (
            json!({"action": "retry", "filter": {"status": ["sleeping"]}}),
            json!(["body", "filter", "status"]),
        ),
        (
            json!({"action": "retry", "filter": {"since": "yesterday"}}),
            json!(["body", "filter", "since"]),
        ),
        (
            json!({"action": "retry", "filter": {"colour": "red"}}),
            json!(["body", "filter", "colour"]),
        ),
        (
            json!({"action": "retry", "filter": 7}),
            json!(["body", "filter"]),
        ),
    ] {
        let (status, _, body) = s.send(bulk(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["errors"][0]["loc"], loc, "{bad}");
    }
    let (status, _, _) = s
        .send(
            s.req(Method::POST, "/jobs/bulk", "acme")
                .json(&json!({"action": "retry"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

impl Server {
    /// Reads a workflow until every job ended.
    async fn workflow_done(&self, id: &str, token: &str) -> Value {
        for _ in 0..200 {
            let (status, _, flow) = self
                .send(self.req(Method::GET, &format!("/workflows/{id}"), token))
                .await;
            assert_eq!(status, StatusCode::OK, "{flow}");
            if flow["status"] != "running" {
                return flow;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("workflow {id} never finished");
    }

    async fn job(&self, id: &Value) -> Value {
        let path = format!("/jobs/{}", id.as_str().unwrap());
        self.send(self.req(Method::GET, &path, "acme")).await.2
    }
}

#[tokio::test]
async fn workflows_run_parents_first_and_read_back_as_the_contract_says() {
    let s = serve().await;
    let body = json!({
        "name": "diamond",
        "jobs": [
            {"key": "fetch", "type": "ECHO", "input": {"n": 1}},
            {"key": "left", "type": "ECHO", "depends_on": ["fetch"]},
            {"key": "right", "type": "ECHO", "depends_on": ["fetch"], "priority": 5},
            {"key": "join", "type": "ECHO", "depends_on": ["left", "right"]}
        ],
        "finalizer": {"type": "ECHO", "input": {}}
    });
    let (status, headers, flow) = s
        .send(s.req(Method::POST, "/workflows", "acme").json(&body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{flow}");
    let id = flow["id"].as_str().unwrap().to_owned();
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("/v1/workflows/{id}")
    );
    assert_eq!(flow["name"], "diamond");
    assert_eq!(flow["jobs"][3]["depends_on"], json!(["left", "right"]));
    assert_eq!(flow["finalizer"]["key"], "finalizer");
    assert!(flow["finalizer"].get("depends_on").is_none());
    let done = s.workflow_done(&id, "acme").await;
    assert_eq!(done["status"], "completed", "{done}");
    // Each job started after every parent completed, and says where it belongs.
    let mut jobs = Vec::new();
    for node in done["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&done["finalizer"]])
    {
        jobs.push(s.job(&node["id"]).await);
    }
    for job in &jobs {
        assert_eq!(job["workflow_id"], id.as_str());
        for parent in job["parents"].as_array().unwrap() {
            let parent = jobs.iter().find(|j| j["id"] == *parent).unwrap();
            assert!(
                parent["completed_at"].as_str().unwrap() <= job["started_at"].as_str().unwrap(),
                "{job} started before {parent} completed"
            );
        }
    }
    assert_eq!(jobs[3]["parents"].as_array().unwrap().len(), 2);
    assert_eq!(
        jobs[4]["parents"].as_array().unwrap().len(),
        4,
        "the finalizer's parents"
    );
    let (_, _, page) = s
        .send(s.req(Method::GET, &format!("/jobs?workflow_id={id}"), "acme"))
        .await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 5);

    // Tenancy and ids.
    let (status, _, body) = s
        .send(s.req(Method::GET, &format!("/workflows/{id}"), "globex"))
        .await;
    assert_eq!(status.as_u16(), body["code"]);
    assert_envelope(&body, 404, "workflow_not_found");
    let (status, _, body) = s
        .send(s.req(Method::POST, &format!("/workflows/{id}/cancel"), "globex"))
        .await;
    assert_eq!(status.as_u16(), body["code"]);
    assert_envelope(&body, 404, "workflow_not_found");
    let (status, _, body) = s.send(s.req(Method::GET, "/workflows/nope", "acme")).await;
    assert_eq!(status.as_u16(), body["code"]);
    assert_envelope(&body, 400, "invalid_id");
    let (status, _, body) = s
        .send(
            s.req(Method::POST, "/workflows", "reader")
                .json(&json!({"jobs": []})),
        )
        .await;
    assert_eq!(status.as_u16(), body["code"]);
    assert_envelope(&body, 403, "permission_denied");
}

#[tokio::test]
async fn a_failed_workflow_job_skips_its_dependents_and_cancel_reaches_every_job() {
    let s = serve().await;
    let body = json!({
        "jobs": [
            {"key": "a", "type": "THROW"},
            {"key": "b", "type": "ECHO", "depends_on": ["a"]},
            {"key": "c", "type": "ECHO", "depends_on": ["b"]},
            {"key": "d", "type": "ECHO", "depends_on": ["a"], "run_if_parents_fail": true}
        ],
        "finalizer": {"type": "ECHO"}
    });
    let (status, _, flow) = s
        .send(s.req(Method::POST, "/workflows", "acme").json(&body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{flow}");
    let done = s.workflow_done(flow["id"].as_str().unwrap(), "acme").await;
    assert_eq!(done["status"], "failed");
    let statuses: Vec<&str> = done["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "cancelled", "cancelled", "completed"]);
    assert_eq!(done["finalizer"]["status"], "completed");
    let c = s.job(&done["jobs"][2]["id"]).await;
    assert_eq!(c["latest_event"]["kind"], "cancelled");
    assert_eq!(c["latest_event"]["payload"]["parent_key"], "b");

    // A cancel: the running root is asked to stop, the rest are cancelled at once.
    let body = json!({
        "jobs": [
            {"key": "slow", "type": "SLEEP", "input": 10000},
            {"key": "next", "type": "ECHO", "depends_on": ["slow"]}
        ]
    });
    let (_, _, flow) = s
        .send(s.req(Method::POST, "/workflows", "acme").json(&body))
        .await;
    let id = flow["id"].as_str().unwrap().to_owned();
    let slow = flow["jobs"][0]["id"].clone();
    for _ in 0..100 {
        if s.job(&slow).await["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _, flow) = s
        .send(s.req(Method::POST, &format!("/workflows/{id}/cancel"), "acme"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{flow}");
    assert_eq!(flow["jobs"][1]["status"], "cancelled");
    let done = s.workflow_done(&id, "acme").await;
    assert_eq!(done["status"], "cancelled", "{done}");
}

#[tokio::test]
async fn bad_workflows_are_refused_with_the_place_of_the_fault() {
    let s = serve().await;
    let refused = |body: Value| {
        let s = &s;
        async move {
            let (status, _, body) = s
                .send(s.req(Method::POST, "/workflows", "acme").json(&body))
                .await;
            (status, body)
        }
    };
    let loc = |body: &Value| body["errors"][0]["loc"].clone();
    let cases = [
        (json!({}), json!(["body", "jobs"])),
        (json!({"jobs": []}), json!(["body", "jobs"])),
        (
            json!({"jobs": [{"key": "a", "type": "ECHO"}, {"key": "a", "type": "ECHO"}]}),
            json!(["body", "jobs", "1", "key"]),
        ),
        (
            json!({"jobs": [{"key": "a", "type": "ECHO", "depends_on": ["zz"]}]}),
            json!(["body", "jobs", "0", "depends_on", "0"]),
        ),
        (
            json!({"jobs": [
                {"key": "a", "type": "ECHO", "depends_on": ["b"]},
                {"key": "b", "type": "ECHO", "depends_on": ["a"]}
            ]}),
            json!(["body", "jobs", "1", "depends_on", "0"]),
        ),
        (
            json!({"jobs": [{"key": "a", "type": "ECHO", "priority": 5000}]}),
            json!(["body", "jobs", "0", "priority"]),
        ),
        (
            json!({"jobs": [{"type": "ECHO"}]}),
            json!(["body", "jobs", "0", "key"]),
        ),
        (
            json!({"jobs": [{"key": "a", "type": "ECHO"}], "finalizer": {"type": "ECHO", "max_attempts": 0}}),
            json!(["body", "finalizer", "max_attempts"]),
        ),
        (
            json!({"jobs": [{"key": "a", "type": "ECHO"}], "extra": 1}),
            json!(["body", "extra"]),
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = refused(body.clone()).await;
        assert_eq!(status.as_u16(), answer["code"]);
        assert_envelope(&answer, 422, "validation_error");
        assert_eq!(loc(&answer), expected, "{body} -> {answer}");
    }
    let (status, answer) = refused(json!({"jobs": [{"key": "a", "type": "NOPE"}]})).await;
    assert_eq!(status.as_u16(), answer["code"]);
    assert_envelope(&answer, 400, "unknown_job_type");
    let (_, _, page) = s.send(s.req(Method::GET, "/jobs", "acme")).await;
    assert_eq!(page["jobs"], json!([]), "nothing was created");
}

#[tokio::test]
async fn schedules_tick_every_second_and_follow_the_contract() {
    let s = serve().await;
    let body = json!({
        "name": "every second",
        "cron": "* * * * * *",
        "job": {"type": "ECHO", "input": {"n": 1}}
    });
    let (status, _, refused) = s
        .send(s.req(Method::POST, "/schedules", "acme").json(&body))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_envelope(&refused, 403, "permission_denied");
    let (status, headers, schedule) = s
        .send(s.req(Method::POST, "/schedules", "admin").json(&body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let id = schedule["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/v1/schedules/{id}").as_str());
    assert_eq!(schedule["timezone"], "UTC");
    assert_eq!(schedule["missed"], "skip");
    assert_eq!(schedule["catch_up_limit"], 3);
    assert_eq!(schedule["paused"], false);
    assert_eq!(schedule["last_run_at"], Value::Null);
    assert!(schedule["next_run_at"].as_str().unwrap().ends_with(".000Z"));
    assert_eq!(
        schedule["job"],
        json!({"type": "ECHO", "input": {"n": 1}, "queue": "default", "priority": 0})
    );

    // Bad fields are refused at their place.
    for (change, loc) in [
        (json!({"cron": "61 * * * *"}), json!(["body", "cron"])),
        (json!({"cron": "* * * *"}), json!(["body", "cron"])),
        (
            json!({"timezone": "Mars/Olympus"}),
            json!(["body", "timezone"]),
        ),
        (
            json!({"job": {"type": "NOPE"}}),
            json!(["body", "job", "type"]),
        ),
        (
            json!({"job": {"type": "ECHO", "priority": 5000}}),
            json!(["body", "job", "priority"]),
        ),
        (json!({"job": null}), json!(["body", "job"])),
        (json!({"missed": "sometimes"}), json!(["body", "missed"])),
        (
            json!({"catch_up_limit": 0}),
            json!(["body", "catch_up_limit"]),
        ),
        (json!({"colour": "red"}), json!(["body", "colour"])),
    ] {
        let mut bad = body.clone();
        for (k, v) in change.as_object().unwrap() {
            bad[k] = v.clone();
        }
        let (status, _, e) = s
            .send(s.req(Method::POST, "/schedules", "admin").json(&bad))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_envelope(&e, 422, "validation_error");
        assert_eq!(e["errors"][0]["loc"], loc, "{bad} → {e}");
    }

    // Reads: the tenant's list, and nobody else's.
    let (status, _, list) = s.send(s.req(Method::GET, "/schedules", "reader")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["schedules"].as_array().unwrap().len(), 1);
    assert_eq!(list["schedules"][0]["id"], id.as_str());
    let (_, _, theirs) = s.send(s.req(Method::GET, "/schedules", "globex")).await;
    assert_eq!(theirs["schedules"], json!([]));
    let path = format!("/schedules/{id}");
    let (status, _, e) = s.send(s.req(Method::GET, &path, "globex")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&e, 404, "schedule_not_found");
    let (status, _, e) = s.send(s.req(Method::GET, "/schedules/nope", "acme")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_envelope(&e, 400, "invalid_id");

    // It ticks once a second; each job names its tick, on the second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let jobs_path = format!("/jobs?schedule_id={id}");
    let (_, _, page) = s.send(s.req(Method::GET, &jobs_path, "acme")).await;
    let jobs = page["jobs"].as_array().unwrap().clone();
    assert!((2..=4).contains(&jobs.len()), "{page}");
    let mut ticks: Vec<&str> = jobs
        .iter()
        .map(|j| j["scheduled_for"].as_str().unwrap())
        .collect();
    ticks.sort_unstable();
    ticks.dedup();
    assert_eq!(ticks.len(), jobs.len(), "no tick twice");
    for job in &jobs {
        assert_eq!(job["schedule_id"], id.as_str());
        assert!(job["scheduled_for"].as_str().unwrap().ends_with(".000Z"));
        assert!(job["created_at"].as_str().unwrap() >= job["scheduled_for"].as_str().unwrap());
    }
    let (_, _, read) = s.send(s.req(Method::GET, &path, "acme")).await;
    assert_eq!(read["last_run_at"], *ticks.last().unwrap());

    // Paused, it makes no job for a later tick; resumed, it goes on.
    let pause = json!({"paused": true});
    let (status, _, e) = s
        .send(s.req(Method::PATCH, &path, "acme").json(&pause))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_envelope(&e, 403, "permission_denied");
    let (status, _, paused) = s
        .send(s.req(Method::PATCH, &path, "admin").json(&pause))
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next_run_at"], Value::Null);
    let paused_at = paused["updated_at"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, _, page) = s.send(s.req(Method::GET, &jobs_path, "acme")).await;
    // A look that read the schedule just before the pause may still make the tick of
    // that second.
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let paused_until = at(&paused["updated_at"]) + chrono::Duration::milliseconds(500);
    for job in page["jobs"].as_array().unwrap() {
        assert!(at(&job["scheduled_for"]) <= paused_until, "{job}");
    }
    let (status, _, e) = s
        .send(
            s.req(Method::PATCH, &path, "admin")
                .json(&json!({"cron": "bad"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_envelope(&e, 422, "validation_error");
    assert_eq!(e["errors"][0]["loc"], json!(["body", "cron"]));
    let change = json!({"paused": false, "cron": "0 3 * * *", "timezone": "Europe/Berlin", "missed": "catch_up", "catch_up_limit": 5});
    let (status, _, changed) = s
        .send(s.req(Method::PATCH, &path, "admin").json(&change))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["cron"], "0 3 * * *");
    assert_eq!(changed["timezone"], "Europe/Berlin");
    assert_eq!(changed["missed"], "catch_up");
    assert_eq!(changed["catch_up_limit"], 5);
    assert!(changed["next_run_at"].as_str().unwrap() > paused_at.as_str());

    // Deleted, it is gone; its jobs stay.
    let (status, _, e) = s.send(s.req(Method::DELETE, &path, "acme")).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "deleting takes the admin scope"
    );
    assert_envelope(&e, 403, "permission_denied");
    let (status, _, _) = s.send(s.req(Method::DELETE, &path, "admin")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, e) = s.send(s.req(Method::GET, &path, "acme")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&e, 404, "schedule_not_found");
    let (status, _, e) = s.send(s.req(Method::DELETE, &path, "admin")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&e, 404, "schedule_not_found");
    let (_, _, page) = s.send(s.req(Method::GET, &jobs_path, "acme")).await;
    assert!(!page["jobs"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn metrics_are_served_to_operators_in_the_prometheus_format() {
    let prometheus = jobworks::http::install_prometheus().unwrap();
    let again = jobworks::http::install_prometheus().unwrap();
    let s = serve_with("/v1", move |e| {
        let api = JobsApi::new(e, credentials()).metrics(prometheus);
        axum::Router::new().nest("/v1", api.router())
    })
    .await;
    let done = s.submit(json!({"type": "ECHO", "input": {}})).await;
    s.wait_done(done["id"].as_str().unwrap()).await;
    let failed = s
        .submit(json!({"type": "THROW", "input": {}, "max_attempts": 1}))
        .await;
    s.wait_done(failed["id"].as_str().unwrap()).await;

    let (status, _, e) = s.send(s.req(Method::GET, "/metrics", "acme")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_envelope(&e, 403, "permission_denied");
    let response = s
        .client
        .get(format!("{}/metrics", s.base))
        .bearer_auth("operator")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    let text = response.text().await.unwrap();
    let value = |series: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{series} missing from\n{text}"));
        line[series.len()..].trim().parse().unwrap()
    };
    assert!(value(r#"jobworks_jobs_submitted_total{queue="default",type="ECHO"}"#) >= 1.0);
    assert!(value(r#"jobworks_jobs_completed_total{queue="default",type="ECHO"}"#) >= 1.0);
    assert!(value(r#"jobworks_jobs_failed_total{queue="default",type="THROW"}"#) >= 1.0);
    assert!(value(r#"jobworks_submit_to_start_seconds_count{queue="default",type="ECHO"}"#) >= 1.0);
    assert!(value(r#"jobworks_run_duration_seconds_count{queue="default",type="THROW"}"#) >= 1.0);
    assert_eq!(
        again.render().is_empty(),
        text.is_empty(),
        "one recorder for the process"
    );
    let (_, _, doc) = s.send(s.req(Method::GET, "/openapi.json", "acme")).await;
    assert!(doc["paths"]["/metrics"]["get"].is_object());
}
