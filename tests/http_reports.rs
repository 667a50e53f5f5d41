//! The reports routes over a real loopback socket, under a project prefix.

use async_trait::async_trait;
use axum::http::request::Parts;
use jobworks::http::{ApiError, Authenticator, JobsApi, PathParams, Principal, StaticCredentials};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobworks::report::{REPORT_JOB_TYPE, RenderBudget, ReportTemplate, Reports, StoredTemplate};
use jobworks::{DocumentStore, Engine, JobContext, JobError, MemoryStore, TenantId, from_fn};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod support {
    include!("support/http.rs");
}
#[allow(dead_code)]
#[path = "../examples/report_service/redteam.rs"]
mod redteam;
#[allow(dead_code)]
mod findings {
    include!("support/findings.rs");
}
use support::{Server, assert_envelope};

const PREFIX: &str = "/org/{org}/projects/{project}";

/// Each project of the token's organisation is a tenant.
#[derive(Debug)]
struct ProjectAuth(StaticCredentials);

#[async_trait]
impl Authenticator for ProjectAuth {
    async fn authenticate(&self, parts: &Parts, path: &PathParams) -> Result<Principal, ApiError> {
        let p = self.0.authenticate(parts, path).await?;
        if path.get("org") != Some(p.tenant.as_str()) {
            return Err(ApiError::permission_denied("another organisation"));
        }
        let project = path.get("project").unwrap_or("");
        let tenant = TenantId::from_parts([p.tenant.as_str(), project])
            .map_err(|_| ApiError::invalid_request("bad project"))?;
        Ok(Principal { tenant, ..p })
    }
}

async fn serve() -> Server {
    serve_with(RenderBudget::default()).await.0
}

/// The reports API rendering within `budget`, and its store (which keeps the templates).
async fn serve_with(budget: RenderBudget) -> (Server, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let kept = store.clone();
    let server = Server::start(PREFIX, move |artifacts| {
        let reports = Reports::new(
            redteam::RedTeamData::new(findings::sample_findings(30)),
            store.clone(),
        )
        .budget(budget);
        let engine = Engine::builder()
            .store(store)
            .artifacts(artifacts)
            .executor(REPORT_JOB_TYPE, reports.executor())
            .executor(
                "ECHO",
                from_fn(|_c: JobContext, v: Value| async move { Ok::<_, JobError>(v) }),
            )
            .build()
            .unwrap();
        engine.start().unwrap();
        let auth = StaticCredentials::new()
            .bearer("acme", Principal::new(TenantId::new("acme").unwrap(), "a"))
            .bearer(
                "reader",
                Principal::new(TenantId::new("acme").unwrap(), "r").read_only(),
            );
        let api = JobsApi::new(engine, ProjectAuth(auth)).reports(reports);
        axum::Router::new().nest(PREFIX, api.router())
    })
    .await;
    (server, kept)
}

fn preset() -> Value {
    json!({
        "title": "Red-team findings",
        "sections": ["summary", "findings", "metrics"],
        "branding": {"header": "ACME — confidential", "footer": "ACME", "title": "Q3"},
        "filter": {"severity": ["high", "critical"], "search": "model", "since": "2026-01-01T00:00:00Z", "until": null},
        "style": {"font": "Helvetica", "font_size": 10}
    })
}

impl Server {
    fn project(&self, project: &str) -> Server {
        let (root, _) = self.base.rsplit_once("/projects/").unwrap();
        Server {
            base: format!("{root}/projects/{project}"),
            client: self.client.clone(),
            signer: self.signer.clone(),
        }
    }
}

#[tokio::test]
async fn preflight_build_poll_and_download() {
    let s = serve().await.project("demo");
    let body = json!({"preset": preset(), "format": "pdf"});
    let (status, _, pre) = s
        .send(
            s.req(Method::POST, "/reports/preflight", "acme")
                .json(&body),
        )
        .await;
    assert_eq!(
        (status, pre),
        (StatusCode::OK, json!({"empty_sections": []}))
    );
    let (status, headers, build) = s
        .send(s.req(Method::POST, "/reports/build", "acme").json(&body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{build}");
    let id = build["id"].as_str().unwrap().to_owned();
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/reports/build/{id}"))
    );
    assert_eq!(
        (
            &build["status"],
            &build["presigned_url"],
            &build["file_size_bytes"]
        ),
        (&json!("queued"), &Value::Null, &json!(0))
    );

    let mut done = Value::Null;
    for _ in 0..100 {
        let (_, _, b) = s
            .send(s.req(Method::GET, &format!("/reports/build/{id}"), "acme"))
            .await;
        if b["status"] == "completed" {
            done = b;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let url = done["presigned_url"]
        .as_str()
        .expect("completed with a URL");
    assert!(done["url_expires_at"].is_string() && done["completed_at"].is_string());
    let r = s.client.get(url).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    assert_eq!(done["file_size_bytes"], bytes.len());

    let (_, _, events) = s
        .send(s.req(Method::GET, &format!("/jobs/{id}/events"), "acme"))
        .await;
    let messages: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    for stage in ["resolving data", "rendering", "storing"] {
        assert!(messages.contains(&stage), "{messages:?}");
    }
    // Another project of the same organisation cannot see the build.
    let other = s.project("other");
    let (status, _, body) = other
        .send(other.req(Method::GET, &format!("/reports/build/{id}"), "acme"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, 404, "job_not_found");

    // A job that is not a report build is not a build.
    let (_, _, job) = s
        .send(
            s.req(Method::POST, "/jobs", "acme")
                .json(&json!({"type": "ECHO"})),
        )
        .await;
    let (status, _, _) = s
        .send(s.req(
            Method::GET,
            &format!("/reports/build/{}", job["id"].as_str().unwrap()),
            "acme",
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let csv = json!({"preset": preset(), "format": "csv"});
    let (status, _, _) = s
        .send(s.req(Method::POST, "/reports/build", "acme").json(&csv))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn empty_sections_are_listed_and_refused() {
    let s = serve().await.project("empty");
    let body = json!({"preset": preset()});
    let (status, _, pre) = s
        .send(
            s.req(Method::POST, "/reports/preflight", "acme")
                .json(&body),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let expected = json!([
        {"key": "summary", "title": "Summary"},
        {"key": "findings", "title": "Findings"},
        {"key": "metrics", "title": "Metrics"}
    ]);
    assert_eq!(pre["empty_sections"], expected);
    let (status, _, refused) = s
        .send(s.req(Method::POST, "/reports/build", "acme").json(&body))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_envelope(&refused, 422, "empty_sections");
    assert_eq!(refused["empty_sections"], expected);
    let (status, _, _) = s
        .send(s.req(Method::POST, "/reports/build", "reader").json(&body))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_requests_name_their_fields() {
    let s = serve().await.project("demo");
    let cases = [
        (json!({}), vec!["body.preset", "body.template_id"]),
        (
            json!({"preset": preset(), "template_id": "01JD8X7Z3K4M5N6P7Q8R9S0T1V"}),
            vec!["body.preset", "body.template_id"],
        ),
        (
            json!({"preset": {"title": "x", "sections": ["summary"], "style": {"font": "Comic Sans"}}}),
            vec!["body.preset.style.font"],
        ),
        (
            json!({"preset": {"title": "", "sections": ["charts"], "style": {"font_size": 99}}}),
            vec![
                "body.preset.title",
                "body.preset.sections.0",
                "body.preset.style.font_size",
            ],
        ),
        (
            json!({"preset": {"title": "x", "sections": [], "filter": {"severity": ["urgent"]}}}),
            vec!["body.preset.filter.severity.0"],
        ),
        (
            json!({"preset": {"title": "x", "sections": [], "filter": {"since": "yesterday"}}}),
            vec!["body.preset.filter.since"],
        ),
        (
            json!({"preset": preset(), "format": "docx"}),
            vec!["body.format"],
        ),
        (json!({"template_id": "nope"}), vec!["body.template_id"]),
    ];
    for (body, locs) in cases {
        let (status, _, e) = s
            .send(
                s.req(Method::POST, "/reports/preflight", "acme")
                    .json(&body),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {e}");
        assert_envelope(&e, 422, "validation_error");
        let got: Vec<String> = e["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                x["loc"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .collect();
        assert_eq!(got, locs, "{body}");
    }
    let (status, _, e) = s
        .send(
            s.req(Method::POST, "/reports/preflight", "acme")
                .json(&json!({"template_id": "01JD8X7Z3K4M5N6P7Q8R9S0T1V"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&e, 404, "template_not_found");
}

#[tokio::test]
async fn templates_are_stored_per_project() {
    let s = serve().await.project("demo");
    let (status, headers, created) = s
        .send(
            s.req(Method::POST, "/reports/templates", "acme")
                .json(&json!({"name": "weekly", "preset": preset()})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/reports/templates/{id}"))
    );
    assert_eq!(
        created["template"]["sections"][1],
        json!({"key": "findings", "title": "Findings", "kind": "findings", "columns": []})
    );

    let full = json!({"name": "custom", "template": {
        "title": "Custom", "style": {"font": "Courier", "font_size": 9},
        "sections": [{"key": null, "title": "Everything", "kind": "findings", "columns": ["title", "severity"]}]
    }});
    let (status, _, custom) = s
        .send(
            s.req(Method::POST, "/reports/templates", "acme")
                .json(&full),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{custom}");
    let (_, _, list) = s
        .send(s.req(Method::GET, "/reports/templates", "acme"))
        .await;
    assert_eq!(list["templates"].as_array().unwrap().len(), 2);
    assert_eq!(list["templates"][0]["name"], "custom");

    let (status, _, got) = s
        .send(s.req(Method::GET, &format!("/reports/templates/{id}"), "acme"))
        .await;
    assert_eq!((status, &got), (StatusCode::OK, &created));
    let (status, _, updated) = s
        .send(
            s.req(Method::PUT, &format!("/reports/templates/{id}"), "acme")
                .json(&json!({"name": "weekly v2", "preset": preset()})),
        )
        .await;
    assert_eq!(
        (status, &updated["name"]),
        (StatusCode::OK, &json!("weekly v2"))
    );

    // Build from the stored template; preflight of the custom one has a key-less section.
    let (status, _, build) = s
        .send(
            s.req(Method::POST, "/reports/build", "acme")
                .json(&json!({"template_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{build}");

    // Another project: the template does not exist there.
    let other = s.project("other");
    for method in [Method::GET, Method::DELETE] {
        let (status, _, e) = other
            .send(other.req(method, &format!("/reports/templates/{id}"), "acme"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_envelope(&e, 404, "template_not_found");
    }
    let (status, _, _) = other
        .send(
            other
                .req(Method::POST, "/reports/build", "acme")
                .json(&json!({"template_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let empty = s.project("empty");
    let custom_id = custom["id"].as_str().unwrap();
    let (status, _, _) = empty
        .send(
            empty
                .req(Method::POST, "/reports/preflight", "acme")
                .json(&json!({"template_id": custom_id})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "templates are per project");

    let (status, _, _) = s
        .send(s.req(Method::DELETE, &format!("/reports/templates/{id}"), "acme"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = s
        .send(s.req(Method::GET, &format!("/reports/templates/{id}"), "acme"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, e) = s
        .send(
            s.req(Method::POST, "/reports/templates", "acme")
                .json(&json!({"preset": preset(), "template": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
}

#[tokio::test]
async fn a_build_submitted_by_hand_is_still_checked() {
    let s = serve().await.project("demo");
    let input = json!({
        "format": "pdf",
        "template": {"title": "x", "style": {"font": "Helvetica", "font_size": 1000}, "sections": []}
    });
    let body = json!({"type": REPORT_JOB_TYPE, "input": input});
    let (status, _, job) = s
        .send(s.req(Method::POST, "/jobs", "acme").json(&body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap();
    let (_, _, done) = s
        .send(s.req(Method::GET, &format!("/jobs/{id}?wait=10"), "acme"))
        .await;
    let done = if done["status"] == "failed" {
        done
    } else {
        s.send(s.req(Method::GET, &format!("/jobs/{id}?wait=10"), "acme"))
            .await
            .2
    };
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["attempts"], 1, "an invalid template is not retried");
    assert!(
        done["error"].as_str().unwrap().contains("style.font_size"),
        "{done}"
    );
}

/// The template that took 34 s and 3.26 GiB to render: one findings table of 300 columns.
fn hostile_template() -> Value {
    json!({
        "title": "Everything",
        "sections": [{"key": null, "title": "All", "kind": "findings", "columns": vec!["title"; 300]}]
    })
}

#[tokio::test]
async fn a_hostile_template_is_refused_at_once() {
    let s = serve().await.project("demo");
    let started = Instant::now();
    let (status, _, e) = s
        .send(
            s.req(Method::POST, "/reports/templates", "acme")
                .json(&json!({"name": "hostile", "template": hostile_template()})),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_envelope(&e, 422, "validation_error");
    assert_eq!(
        e["errors"][0]["loc"],
        json!(["body", "template", "sections", "0", "columns"])
    );
    // Too many sections, and too much text in all.
    let sections: Vec<Value> = (0..33)
        .map(|i| json!({"title": format!("S{i}"), "kind": "summary"}))
        .collect();
    let many = json!({"title": "t", "sections": sections});
    let long: Vec<Value> = (0..32)
        .map(|i| json!({"title": format!("S{i}"), "kind": "summary", "text": "x".repeat(4000)}))
        .collect();
    let big = json!({"title": "t", "sections": long});
    for (template, loc) in [
        (many, json!(["body", "template", "sections"])),
        (big, json!(["body", "template"])),
    ] {
        let (status, _, e) = s
            .send(
                s.req(Method::POST, "/reports/templates", "acme")
                    .json(&json!({"name": "n", "template": template})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e["errors"][0]["loc"], loc, "{e}");
    }
}

#[tokio::test]
async fn a_template_stored_before_the_limits_is_refused_at_build() {
    let (s, store) = serve_with(RenderBudget::default()).await;
    let s = s.project("demo");
    let template: ReportTemplate = serde_json::from_value(hostile_template()).unwrap();
    let tenant = TenantId::from_parts(["acme", "demo"]).unwrap();
    let stored = store
        .create_document(StoredTemplate::new(tenant, "old", template).into_document())
        .await
        .unwrap();
    let started = Instant::now();
    let body = json!({"template_id": stored.id.to_string()});
    let (status, _, e) = s
        .send(s.req(Method::POST, "/reports/build", "acme").json(&body))
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(
        e["errors"][0]["loc"],
        json!(["body", "template_id", "sections", "0", "columns"])
    );
    let (_, _, jobs) = s.send(s.req(Method::GET, "/jobs", "acme")).await;
    assert_eq!(jobs["jobs"], json!([]), "no build was queued");
}

#[tokio::test]
async fn a_build_over_its_budget_fails_for_good_saying_which_limit() {
    let budget = RenderBudget {
        max_pages: 1,
        ..RenderBudget::default()
    };
    let s = serve_with(budget).await.0.project("demo");
    let (status, _, build) = s
        .send(
            s.req(Method::POST, "/reports/build", "acme")
                .json(&json!({"preset": preset()})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{build}");
    let id = build["id"].as_str().unwrap();
    let mut job = Value::Null;
    for _ in 0..20 {
        job = s
            .send(s.req(Method::GET, &format!("/jobs/{id}?wait=5"), "acme"))
            .await
            .2;
        if job["status"] == "failed" {
            break;
        }
    }
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(
        (&job["attempts"], &job["max_attempts"]),
        (&json!(1), &json!(2))
    );
    let (_, _, build) = s
        .send(s.req(Method::GET, &format!("/reports/build/{id}"), "acme"))
        .await;
    assert_eq!(
        build["error_message"],
        "the report would pass the limit of 1 pages"
    );
}

#[tokio::test]
async fn templates_list_in_pages() {
    let s = serve().await.project("demo");
    let mut made = Vec::new();
    for i in 0..25 {
        let (status, _, t) = s
            .send(
                s.req(Method::POST, "/reports/templates", "acme")
                    .json(&json!({"name": format!("t{i}"), "preset": preset()})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        made.push(t["id"].as_str().unwrap().to_owned());
    }
    made.reverse();
    let mut seen = Vec::new();
    let mut path = "/reports/templates?limit=10".to_owned();
    loop {
        let (status, _, page) = s.send(s.req(Method::GET, &path, "acme")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let ids = page["templates"].as_array().unwrap();
        assert!(ids.len() <= 10);
        seen.extend(ids.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/reports/templates?limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, made);
    let (_, _, first) = s
        .send(s.req(Method::GET, "/reports/templates", "acme"))
        .await;
    assert_eq!(
        first["templates"].as_array().unwrap().len(),
        20,
        "20 by default"
    );
    for bad in ["nonsense", "ancxOjAxSkQ4WDdaM0s0TTVONlA3UThSOVMwVDFW"] {
        let (status, _, e) = s
            .send(s.req(
                Method::GET,
                &format!("/reports/templates?cursor={bad}"),
                "acme",
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_envelope(&e, 400, "invalid_request");
    }
    let (status, _, _) = s
        .send(s.req(Method::GET, "/reports/templates?limit=101", "acme"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
