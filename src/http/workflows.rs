//! The workflow routes: submit a graph of jobs, read it, cancel it.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::body::{Fields, JsonBody, RouteParam};
use super::jobs::{SubmitRequest, new_job_at};
use super::view::{StatusName, format_time};
use super::{ApiError, ApiState, Principal, Scope, located};
use crate::{
    MAX_WORKFLOW_JOBS, MAX_WORKFLOW_KEY_LEN, NewWorkflow, Workflow, WorkflowId, WorkflowJob,
    WorkflowNode,
};

/// One job of `POST /workflows` (documentation): the submit fields and its place.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct WorkflowJobRequest {
    /// Unique in the workflow.
    #[schema(min_length = 1, max_length = 64)]
    key: String,
    /// The keys of the jobs that must complete first.
    depends_on: Option<Vec<String>>,
    /// Runs once its parents are terminal even when one failed.
    run_if_parents_fail: Option<bool>,
    /// The job, as for `POST /jobs` (without an idempotency key).
    #[serde(flatten)]
    job: SubmitRequest,
}

/// The body of `POST /workflows` (documentation; the handler reads fields one by one).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct WorkflowRequest {
    /// A name for people.
    #[schema(max_length = 128)]
    name: Option<String>,
    /// 1 to 1,000 jobs.
    #[schema(min_items = 1, max_items = 1000)]
    jobs: Vec<WorkflowJobRequest>,
    /// Runs once every other job is terminal.
    finalizer: Option<SubmitRequest>,
}

/// One job of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkflowNodeView {
    /// Its key.
    pub key: String,
    /// Its job id.
    pub id: String,
    /// Its status.
    #[schema(value_type = StatusName)]
    pub status: String,
    /// The keys of its parents (absent on the finalizer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
}

/// A workflow (`GET /workflows/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkflowView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// `running`, `completed`, `failed` or `cancelled`, from its jobs.
    #[schema(pattern = "^(running|completed|failed|cancelled)$")]
    pub status: String,
    /// Its jobs, parents before children.
    pub jobs: Vec<WorkflowNodeView>,
    /// Its finalizer, if it has one.
    pub finalizer: Option<WorkflowNodeView>,
    /// When it was submitted.
    pub created_at: String,
    /// When one of its jobs last changed.
    pub updated_at: String,
}

impl WorkflowView {
    /// The view of `workflow`.
    pub fn of(workflow: &Workflow) -> WorkflowView {
        let node = |n: &WorkflowNode, deps: bool| WorkflowNodeView {
            key: n.key.clone(),
            id: n.id.to_string(),
            status: n.status.to_string(),
            depends_on: deps.then(|| n.depends_on.clone()),
        };
        WorkflowView {
            id: workflow.id.to_string(),
            name: workflow.name.clone(),
            status: workflow.status.as_str().to_owned(),
            jobs: workflow.jobs.iter().map(|n| node(n, true)).collect(),
            finalizer: workflow.finalizer.as_ref().map(|n| node(n, false)),
            created_at: format_time(workflow.created_at),
            updated_at: format_time(workflow.updated_at),
        }
    }
}

fn parse_workflow_id(raw: &str) -> Result<WorkflowId, ApiError> {
    raw.parse().map_err(|_| ApiError::invalid_id(raw))
}

/// The workflow a body asks for, the first bad field named with its place.
fn new_workflow(body: &Value, known: &[crate::JobType]) -> Result<NewWorkflow, ApiError> {
    let mut f = Fields::of(body, "body")?;
    f.refuse_others(&["name", "jobs", "finalizer"]);
    let name = f.string("name", 128);
    let jobs = f.required_list("jobs", MAX_WORKFLOW_JOBS);
    let finalizer = f.value("finalizer");
    f.finish()?;
    let mut flow = NewWorkflow::new();
    flow.name = name;
    for (i, body) in jobs.into_iter().flatten().enumerate() {
        let prefix = format!("body.jobs.{i}");
        let mut g = Fields::of(body, &prefix)?;
        let key = g.required_string("key", MAX_WORKFLOW_KEY_LEN);
        let depends_on = match g.value("depends_on") {
            None => Some(Vec::new()),
            Some(Value::Array(keys)) => {
                let keys: Option<Vec<String>> =
                    keys.iter().map(|k| k.as_str().map(str::to_owned)).collect();
                if keys.is_none() {
                    g.error("depends_on", "type_error", "must be an array of keys");
                }
                keys
            }
            Some(_) => {
                g.error("depends_on", "type_error", "must be an array of keys");
                None
            }
        };
        let run_anyway = g.boolean("run_if_parents_fail").unwrap_or(false);
        if g.value("idempotency_key").is_some() {
            let msg = "a workflow's jobs take no idempotency key";
            g.error("idempotency_key", "invalid", msg);
        }
        g.finish()?;
        let job = new_job_at(body, &prefix, None, known)?;
        let (Some(key), Some(depends_on)) = (key, depends_on) else {
            return Err(ApiError::internal());
        };
        let mut step = WorkflowJob::new(key, job).depends_on(depends_on);
        step.run_if_parents_fail = run_anyway;
        flow = flow.job(step);
    }
    if let Some(body) = finalizer {
        flow = flow.finalizer(new_job_at(body, "body.finalizer", None, known)?);
    }
    Ok(flow)
}

/// Submit a workflow: jobs with dependencies, all or none.
#[utoipa::path(post, path = "/workflows", tag = "workflows", operation_id = "submit_workflow",
    request_body = WorkflowRequest,
    params(
        super::trace::TraceHeaders,
    ),
    responses(
        (status = 202, description = "Accepted: roots are queued, the others wait", body = WorkflowView,
            headers(("Location" = String, description = "Where to read the workflow"))),
        (status = 400, description = "An unknown job type (`unknown_job_type`)", body = super::ErrorBody),
        (status = 422, description = "A bad field, a cycle, an unknown or duplicate key (`validation_error`, `loc` at it)", body = super::ErrorBody),
        (status = 429, description = "The tenant is at its quota of unfinished jobs (`quota_exceeded`)", body = super::ErrorBody),
    ))]
pub(crate) async fn submit(
    State(state): State<ApiState>,
    principal: Principal,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let mut flow = new_workflow(&body, state.engine.job_types())?;
    if let Some(cx) = super::trace::submitter(&headers) {
        flow = flow.trace(&cx);
    }
    let workflow = state
        .engine
        .submit_workflow(&principal.tenant, flow)
        .await?;
    let response = (
        StatusCode::ACCEPTED,
        axum::Json(WorkflowView::of(&workflow)),
    )
        .into_response();
    let path = format!("/workflows/{}", workflow.id);
    Ok(located(response, &original, &uri, &path))
}

/// Read a workflow: its status and graph.
#[utoipa::path(get, path = "/workflows/{id}", tag = "workflows", operation_id = "get_workflow",
    params(("id" = String, Path, description = "The workflow's id: a ULID, or the same value as a UUID")),
    responses(
        (status = 200, description = "The workflow", body = WorkflowView),
        (status = 404, description = "No such workflow for this tenant (`workflow_not_found`)", body = super::ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let id = parse_workflow_id(&id)?;
    let workflow = state.engine.workflow(&principal.tenant, id).await?;
    Ok(axum::Json(WorkflowView::of(&workflow)).into_response())
}

/// Cancel every job of a workflow not yet terminal.
#[utoipa::path(post, path = "/workflows/{id}/cancel", tag = "workflows", operation_id = "cancel_workflow",
    params(("id" = String, Path, description = "The workflow's id")),
    responses(
        (status = 202, description = "Cancelled (running jobs are asked to stop)", body = WorkflowView),
        (status = 404, description = "No such workflow for this tenant (`workflow_not_found`)", body = super::ErrorBody),
    ))]
pub(crate) async fn cancel(
    State(state): State<ApiState>,
    principal: Principal,
    RouteParam(id): RouteParam,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let id = parse_workflow_id(&id)?;
    let workflow = state.engine.cancel_workflow(&principal.tenant, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(WorkflowView::of(&workflow)),
    )
        .into_response())
}
