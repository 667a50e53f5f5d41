//! The reports API for an AI red-team platform: preflight, build, poll and download PDF
//! reports of findings, and stored templates, under
//! `/api/v1/org/{org}/ws/{ws}/projects/{project}`.
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

mod common;

use async_trait::async_trait;
use axum::http::request::Parts;
use jobworks::http::{ApiError, Authenticator, JobsApi, PathParams, Principal, StaticCredentials};
use jobworks::report::{
    Filter, Finding, FindingStatus, REPORT_JOB_TYPE, ReportData, Reports, Section, Severity,
};
use jobworks::{TenantId, http::artifact_downloads};

const PREFIX: &str = "/api/v1/org/{org}/ws/{ws}/projects/{project}";

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

/// Demo findings of an AI red-team: the same 1,500 in every project but `empty`.
#[derive(Debug)]
struct DemoFindings(Vec<Finding>);

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

impl DemoFindings {
    fn new() -> Self {
        let start = chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("a valid time");
        let rows = (0..1500usize)
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
                status: FindingStatus::ALL[(i / 2) % 4],
                found_at: start + chrono::Duration::minutes((i * 97) as i64),
            })
            .collect();
        DemoFindings(rows)
    }
}

#[async_trait]
impl ReportData for DemoFindings {
    async fn findings(
        &self,
        tenant: &TenantId,
        _: &Section,
        filter: &Filter,
    ) -> jobworks::Result<Vec<Finding>> {
        if tenant.as_str().ends_with(":empty") {
            return Ok(Vec::new());
        }
        Ok(self
            .0
            .iter()
            .filter(|f| filter.matches(f))
            .cloned()
            .collect())
    }
}

#[tokio::main]
async fn main() {
    let options = common::Options::from_args();
    let stores = options.stores().await;
    // Signed URLs point at one fixed route, outside the parameterised prefix.
    let artifacts = options.artifacts("/api/v1/files");
    let reports = Reports::new(DemoFindings::new(), stores.documents);
    let engine = common::demo_engine(&options, stores.jobs, artifacts)
        .executor(REPORT_JOB_TYPE, reports.executor())
        .build()
        .expect("engine");
    engine.start().expect("workers");
    let api =
        JobsApi::new(engine.clone(), ProjectAuth(common::demo_credentials())).reports(reports);
    let api = options.limits(api);
    let app = axum::Router::new()
        .nest(PREFIX, api.router())
        .nest("/api/v1/files", artifact_downloads(engine.clone()));
    let url = options.public_url();
    println!("reports API: {url}/api/v1/org/{{org}}/ws/{{ws}}/projects/{{project}}/reports/…");
    println!("try:         {url}/api/v1/org/acme/ws/main/projects/demo/reports/preflight");
    println!("the project `empty` has no findings");
    common::print_credentials();
    common::serve(&options, app, engine).await;
}
