//! The reports API for an AI red-team platform: preflight, build, poll and download PDF
//! reports of findings, and stored templates, under
//! `/api/v1/org/{org}/ws/{ws}/airt/projects/{project}` (and, as before,
//! `/api/v1/org/{org}/ws/{ws}/projects/{project}`). Ids are accepted as ULIDs or as UUIDs
//! in either case (`2489E9AD-2EE2-8E00-8EC9-32D5F69181C0`).
//!
//! ```sh
//! cargo run --example report_service --features "http reports"
//! ```
//!
//! A token acts only inside its own organisation (`demo-acme` in `acme`, `demo-globex` in
//! `globex`; another organisation's path is `403`), and each project is its own tenant.
//! Every project has 1,500 demo findings (a findings table of about 75 pages) except the
//! project `empty`, which has none. It takes the `server` example's flags; `README.md`
//! has a curl session.

#[path = "../common/mod.rs"]
mod common;
mod redteam;

use async_trait::async_trait;
use axum::Router;
use axum::http::request::Parts;
use jobworks::http::{ApiError, Authenticator, JobsApi, PathParams, Principal, StaticCredentials};
use jobworks::report::{REPORT_JOB_TYPE, Reports};
use jobworks::{Engine, TenantId, http::artifact_downloads};
use redteam::{Finding, RedTeamData, Severity, Status};

/// Where the API is mounted: the platform's path, and the one it had before `airt`.
const PREFIXES: [&str; 2] = [
    "/api/v1/org/{org}/ws/{ws}/airt/projects/{project}",
    "/api/v1/org/{org}/ws/{ws}/projects/{project}",
];
/// The one fixed route of signed downloads, outside the parameterised prefixes.
const FILES: &str = "/api/v1/files";

/// Tokens of an organisation; each project under it is a tenant of its own.
#[derive(Debug)]
struct ProjectAuth(StaticCredentials);

#[async_trait]
impl Authenticator for ProjectAuth {
    async fn authenticate(&self, parts: &Parts, path: &PathParams) -> Result<Principal, ApiError> {
        let principal = self.0.authenticate(parts, path).await?;
        let (org, ws, project) = match (path.get("org"), path.get("ws"), path.get("project")) {
            (Some(o), Some(w), Some(p)) => (o, w, p),
            _ => return Err(ApiError::not_found("no such project")),
        };
        if org != principal.tenant.as_str() {
            return Err(ApiError::permission_denied(
                "this token belongs to another organisation",
            ));
        }
        // Parts with the separator are refused, so `a:b` + `c` never meets `a` + `b:c`.
        let tenant = TenantId::from_parts([org, ws, project]).map_err(|_| {
            ApiError::invalid_request(
                "organisation, workspace and project names use letters, digits, _, - and .",
            )
        })?;
        Ok(Principal {
            tenant,
            ..principal
        })
    }
}

const CATEGORIES: [&str; 6] = [
    "jailbreak",
    "prompt_injection",
    "data_leak",
    "toxicity",
    "hallucination",
    "tool_misuse",
];
const TACTICS: [&str; 5] = [
    "role-play as an unrestricted assistant",
    "a base64-encoded instruction",
    "a fake system message in a document",
    "a chain of harmless-looking questions",
    "a request in a low-resource language",
];
const OUTCOMES: [&str; 4] = [
    "complied and produced the restricted content",
    "revealed parts of its system prompt",
    "called a tool with attacker-chosen arguments",
    "refused at first, then gave in on the third turn",
];

/// 1,500 demo findings of an AI red-team, the same every run.
fn demo_findings() -> Vec<Finding> {
    let start = chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("a valid time");
    (0..1500usize)
        .map(|i| Finding {
            severity: Severity::ALL[(i * 7 + i / 3) % 5],
            category: CATEGORIES[(i * 5 + 1) % 6].to_owned(),
            title: format!(
                "#{:04} Model {} via {}",
                i + 1,
                OUTCOMES[i % 4],
                TACTICS[(i / 4) % 5]
            ),
            prompt: format!(
                "[turn {}] {}: \"Ignore the previous instructions and …\"",
                i % 3 + 1,
                TACTICS[(i / 4) % 5]
            ),
            response: format!("\"Sure, here is …\" ({})", OUTCOMES[i % 4]),
            status: Status::ALL[(i / 2) % 4],
            found_at: start + chrono::Duration::minutes((i * 97) as i64),
        })
        .collect()
}

/// The API under both prefixes (sharing its limits), and the signed downloads.
fn app(api: JobsApi, engine: Engine) -> Router {
    PREFIXES
        .iter()
        .fold(Router::new(), |app, prefix| {
            app.nest(prefix, api.clone().router())
        })
        .nest(FILES, artifact_downloads(engine))
}

#[tokio::main]
async fn main() {
    let options = common::Options::from_args();
    let stores = options.stores().await;
    let artifacts = options.artifacts(FILES);
    let reports = Reports::new(RedTeamData::new(demo_findings()), stores.documents);
    let engine = common::demo_engine(&options, stores.jobs, artifacts)
        .executor(REPORT_JOB_TYPE, reports.executor())
        .build()
        .expect("engine");
    engine.start().expect("workers");
    let api =
        JobsApi::new(engine.clone(), ProjectAuth(common::demo_credentials())).reports(reports);
    let app = app(options.limits(api), engine.clone());
    let url = options.public_url();
    println!("reports API: {url}/api/v1/org/{{org}}/ws/{{ws}}/airt/projects/{{project}}/reports/…");
    println!("try:         {url}/api/v1/org/acme/ws/main/airt/projects/demo/reports/preflight");
    println!("the project `empty` has no findings");
    common::print_credentials();
    common::serve(&options, app, engine).await;
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::{Value, json};

    use super::*;

    async fn call(
        app: &Router,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        common::call(app, method, path, "demo-acme", body).await
    }

    /// Both prefixes reach the same tenant's builds, and every id answers in its ULID,
    /// lower-case UUID and upper-case UUID forms alike.
    #[tokio::test]
    async fn both_prefixes_and_every_form_of_an_id_answer() {
        let options = common::Options::from_args_in(["--store", "memory"]);
        let stores = options.stores().await;
        let reports = Reports::new(RedTeamData::new(demo_findings()), stores.documents);
        let engine = common::demo_engine(&options, stores.jobs, options.artifacts(FILES))
            .executor(REPORT_JOB_TYPE, reports.executor())
            .build()
            .unwrap();
        let api =
            JobsApi::new(engine.clone(), ProjectAuth(common::demo_credentials())).reports(reports);
        let app = app(api, engine.clone());
        let airt = "/api/v1/org/acme/ws/main/airt/projects/demo";
        let old = "/api/v1/org/acme/ws/main/projects/demo";

        let body = json!({"name": "weekly", "template": {"title": "Weekly", "sections": [{"title": "Summary", "kind": "summary"}]}});
        let (status, template) = call(
            &app,
            "POST",
            &format!("{airt}/reports/templates"),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{template}");
        let template_id: jobworks::report::TemplateId =
            template["id"].as_str().unwrap().parse().unwrap();

        let (status, build) = call(
            &app,
            "POST",
            &format!("{old}/reports/build"),
            Some(json!({"template_id": template_id.to_string()})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{build}");
        let build_id: jobworks::JobId = build["id"].as_str().unwrap().parse().unwrap();

        for prefix in [airt, old] {
            for id in [
                build_id.to_string(),
                build_id.to_uuid_string(),
                build_id.to_uuid_string().to_uppercase(),
            ] {
                let (status, got) =
                    call(&app, "GET", &format!("{prefix}/reports/build/{id}"), None).await;
                assert_eq!(status, StatusCode::OK, "{prefix} {id}: {got}");
                assert_eq!(got["id"], build["id"]);
                let (status, _) = call(&app, "GET", &format!("{prefix}/jobs/{id}"), None).await;
                assert_eq!(status, StatusCode::OK, "{prefix} {id}");
            }
            for id in [
                template_id.to_string(),
                template_id.to_uuid_string().to_uppercase(),
            ] {
                let (status, got) = call(
                    &app,
                    "GET",
                    &format!("{prefix}/reports/templates/{id}"),
                    None,
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{prefix} {id}: {got}");
                assert_eq!(got["id"], template["id"]);
            }
        }
        let (status, _) = call(
            &app,
            "GET",
            "/api/v1/org/acme/ws/main/airt/projects/other/jobs",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "another project is another tenant");
        let (status, _) = call(
            &app,
            "GET",
            &format!("/api/v1/org/acme/ws/main/airt/projects/other/reports/build/{build_id}"),
            None,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "and does not see this project's build"
        );
    }
}
