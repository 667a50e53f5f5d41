//! The reports routes over a real loopback socket, under a project prefix.

use async_trait::async_trait;
use axum::http::request::Parts;
use jobworks::http::{ApiError, Authenticator, JobsApi, PathParams, Principal, StaticCredentials};
use jobworks::report::{Filter, Finding, REPORT_JOB_TYPE, ReportData, Reports, Section};
use jobworks::{Engine, JobContext, JobError, MemoryStore, TenantId, from_fn};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod support {
    include!("support/http.rs");
}
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

/// 30 findings in every project but `empty`.
#[derive(Debug)]
struct Data;

#[async_trait]
impl ReportData for Data {
    async fn findings(
        &self,
        t: &TenantId,
        _: &Section,
        f: &Filter,
    ) -> jobworks::Result<Vec<Finding>> {
        if t.as_str().ends_with(":empty") {
            return Ok(Vec::new());
        }
        Ok(findings::sample_findings(30)
            .into_iter()
            .filter(|x| f.matches(x))
            .collect())
    }
}

async fn serve() -> Server {
    Server::start(PREFIX, |artifacts| {
        let store = std::sync::Arc::new(MemoryStore::new());
        let reports = Reports::new(Data, store.clone());
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
    .await
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
