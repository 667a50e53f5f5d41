//! The HTTP adapter (feature `http`): the wire contract (the repository's
//! `docs/http-api.md`) as an axum 0.8 [`Router`] over an [`Engine`].
//!
//! [`JobsApi`] builds the router; mount it under any prefix, beside your own routes and
//! layers. Requests are authenticated by an [`Authenticator`] (for example
//! [`StaticCredentials`]), which may read the prefix's path parameters. Every error, the
//! framework's own rejections included, answers with the canonical envelope ([`ApiError`]).
//!
//! ```
//! use jobworks::http::{JobsApi, Principal, StaticCredentials};
//! use jobworks::{Engine, TenantId};
//! # fn main() -> jobworks::Result<()> {
//! let engine = Engine::builder().build()?;
//! let auth = StaticCredentials::new().bearer("token", Principal::new(TenantId::new("acme")?, "ci"));
//! let app: axum::Router = axum::Router::new()
//!     .nest("/v1", JobsApi::new(engine, auth).router());
//! # let _ = app; Ok(()) }
//! ```
//!
//! To face the internet, serve it with [`Server`] rather than `axum::serve`: it closes
//! connections whose headers or bodies stall, caps open connections per client address and
//! in all, and knows the client address behind trusted proxies ([`ClientAddr`]), by which
//! [`Auth`] throttles guessed credentials.
//!
//! The pieces work on their own too, for a host that serves another shape of API from the
//! same engine: [`Principal`] is an extractor (given an [`Auth`] in the state), [`JobView`]
//! is the job as the contract writes it, and [`ApiError`] is the envelope.

mod auth;
mod body;
mod download;
mod error;
mod etag;
mod jobs;
mod limits;
mod metrics;
mod operator;
mod queues;
#[cfg(feature = "reports")]
mod reports;
mod schedules;
mod serve;
mod shape;
#[cfg(feature = "reports")]
mod templates;
mod trace;
mod view;
mod workflows;

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, OriginalUri, Request};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, ResponseBuilder, ServerBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Engine;

pub use auth::{
    AUTH_FAILURE_WINDOW, Auth, Authenticator, Credentials, DEFAULT_AUTH_FAILURES, PathParams,
    Principal, Scope, StaticCredentials,
};
#[cfg(feature = "dashboard")]
pub(crate) use auth::{client_addr, lookup};
pub use error::{ApiError, ErrorBody, FieldError};
pub use jobs::{MAX_BATCH_JOBS, MAX_WAIT_SECS};
#[cfg(feature = "dashboard")]
pub(crate) use limits::FailedAuth;
pub use metrics::{PrometheusHandle, install_prometheus};
pub use operator::BulkView;
pub use queues::{QueueCountsView, QueueListView, QueueView, RateView};
pub use schedules::{ScheduleJobView, ScheduleView};
pub use serve::{
    ClientAddr, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_READ_TIMEOUT,
    Server,
};
pub use shape::{FieldCase, IdForm, JobShape};
pub use view::{
    ArtifactView, EventView, EventsView, JobBatchView, JobListView, JobView, ProgressView,
    format_time,
};
pub use workflows::{WorkflowNodeView, WorkflowView};

/// Largest request body by default: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// The state every route of the adapter shares.
#[derive(Debug, Clone)]
pub(crate) struct ApiState {
    pub(crate) engine: Engine,
    pub(crate) auth: Auth,
    pub(crate) metrics: Option<PrometheusHandle>,
    #[cfg(feature = "reports")]
    pub(crate) reports: Option<crate::report::Reports>,
}

impl FromRef<ApiState> for Auth {
    fn from_ref(state: &ApiState) -> Auth {
        state.auth.clone()
    }
}

/// The path the router is mounted under: what the host's prefix took off the request.
pub(crate) fn mount_prefix(original: &Uri, inner: &Uri) -> String {
    original
        .path()
        .strip_suffix(inner.path())
        .unwrap_or_default()
        .to_owned()
}

/// `response` with a `Location` of `path` under the router's mount (`path` starts with
/// `/`).
pub(crate) fn located(
    mut response: axum::response::Response,
    original: &Uri,
    inner: &Uri,
    path: &str,
) -> axum::response::Response {
    let location = format!("{}{path}", mount_prefix(original, inner));
    if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, v);
    }
    response
}

/// Builds the jobs API over an engine.
///
/// Rate limiting is off by default; the body limit is [`DEFAULT_BODY_LIMIT`].
#[derive(Debug, Clone)]
pub struct JobsApi {
    engine: Engine,
    auth: Auth,
    body_limit: usize,
    metrics: Option<PrometheusHandle>,
    #[cfg(feature = "reports")]
    reports: Option<crate::report::Reports>,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "jobworks",
        description = "Submit jobs, poll them, watch their timelines, download their results."
    ),
    components(schemas(ErrorBody, FieldError))
)]
struct ApiDoc;

impl JobsApi {
    /// The API over `engine`, authenticating with `authenticator`.
    pub fn new(engine: Engine, authenticator: impl Authenticator) -> Self {
        JobsApi {
            engine,
            auth: Auth::new(authenticator),
            body_limit: DEFAULT_BODY_LIMIT,
            metrics: None,
            #[cfg(feature = "reports")]
            reports: None,
        }
    }

    /// Serves `GET /metrics` (scope `operator`) from `handle`, usually
    /// [`install_prometheus`]'s.
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Serves the report routes too (preflight, build, build status, stored templates).
    /// Register [`Reports::executor`](crate::report::Reports::executor) for
    /// [`REPORT_JOB_TYPE`](crate::report::REPORT_JOB_TYPE) on the engine.
    #[cfg(feature = "reports")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reports")))]
    pub fn reports(mut self, reports: crate::report::Reports) -> Self {
        self.reports = Some(reports);
        self
    }

    /// Allows each principal `per_second` requests a second (bursts of as many); more get
    /// `429 rate_limited` with `Retry-After`.
    pub fn rate_limit(mut self, per_second: NonZeroU32) -> Self {
        self.auth = self.auth.rate_limit(per_second);
        self
    }

    /// Blocks a client address for the rest of a `window` once it failed to authenticate
    /// `max` times in it (20 a minute by default); `None` turns the limit off. See [`Auth`].
    pub fn auth_failure_limit(mut self, limit: Option<(NonZeroU32, std::time::Duration)>) -> Self {
        self.auth = self.auth.auth_failure_limit(limit);
        self
    }

    /// The largest request body, in bytes; larger ones get `413 payload_too_large`.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    fn routes(&self) -> OpenApiRouter<ApiState> {
        let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(jobs::submit, jobs::list))
            .routes(routes!(jobs::submit_batch))
            .routes(routes!(jobs::get_job, operator::discard))
            .routes(routes!(operator::retry))
            .routes(routes!(operator::requeue))
            .routes(routes!(operator::bulk))
            .routes(routes!(jobs::events))
            .routes(routes!(jobs::cancel))
            .routes(routes!(queues::list))
            .routes(routes!(queues::get, queues::patch))
            .routes(routes!(queues::pause))
            .routes(routes!(queues::resume))
            .routes(routes!(workflows::submit))
            .routes(routes!(workflows::get))
            .routes(routes!(workflows::cancel))
            .routes(routes!(schedules::create, schedules::list))
            .routes(routes!(
                schedules::get,
                schedules::update,
                schedules::delete
            ))
            .routes(routes!(download::download));
        let router = if self.metrics.is_some() {
            router.routes(routes!(metrics::metrics))
        } else {
            router
        };
        #[cfg(feature = "reports")]
        if self.reports.is_some() {
            return router
                .routes(routes!(reports::preflight))
                .routes(routes!(reports::build))
                .routes(routes!(reports::build_status))
                .routes(routes!(templates::create, templates::list))
                .routes(routes!(
                    templates::get,
                    templates::update,
                    templates::delete
                ));
        }
        router
    }

    /// The OpenAPI 3.1 document of the router's routes.
    pub fn openapi(&self) -> OpenApi {
        document(self.routes().into_openapi(), self.engine.job_types())
    }

    /// The router: every route of the jobs contract, plus `GET /openapi.json`.
    pub fn router(self) -> Router {
        let (router, doc) = self.routes().split_for_parts();
        let doc = Arc::new(document(doc, self.engine.job_types()));
        let state = ApiState {
            engine: self.engine,
            auth: self.auth,
            metrics: self.metrics,
            #[cfg(feature = "reports")]
            reports: self.reports,
        };
        router
            .route(
                "/openapi.json",
                axum::routing::get(move |OriginalUri(original): OriginalUri, uri: Uri| {
                    let mut doc = (*doc).clone();
                    let prefix = mount_prefix(&original, &uri);
                    let url = if prefix.is_empty() {
                        "/".to_owned()
                    } else {
                        prefix
                    };
                    doc.servers = Some(vec![ServerBuilder::new().url(url).build()]);
                    async move { axum::Json(doc) }
                }),
            )
            .fallback(|| async { ApiError::from_status(StatusCode::NOT_FOUND) })
            .layer(DefaultBodyLimit::max(self.body_limit))
            // Answers a declared `Content-Length` over the limit before reading the body.
            .layer(RequestBodyLimitLayer::new(self.body_limit))
            .layer(middleware::from_fn(envelope))
            .layer(
                tower_http::trace::TraceLayer::new_for_http().make_span_with(trace::request_span),
            )
            .with_state(state)
    }
}

/// A router that serves only `GET /artifacts/{token}`, the signed downloads of `engine`'s
/// artifact store: for a host that mounts [`JobsApi`] under prefixes with parameters
/// (`/org/{org}/…`) and wants every signed URL under one fixed base instead.
pub fn artifact_downloads(engine: Engine) -> Router {
    let state = ApiState {
        engine,
        auth: Auth::new(StaticCredentials::new()),
        metrics: None,
        #[cfg(feature = "reports")]
        reports: None,
    };
    Router::new()
        .route("/artifacts/{token}", axum::routing::get(download::download))
        .fallback(|| async { ApiError::from_status(StatusCode::NOT_FOUND) })
        .layer(middleware::from_fn(envelope))
        .with_state(state)
}

/// Puts the canonical envelope on error responses that the framework made (unknown route,
/// wrong method, rejected body), keeping their status and headers such as `Allow`.
async fn envelope(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let fresh = ApiError::from_status(status).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.extend(fresh_parts.headers);
    Response::from_parts(parts, body)
}

/// A job or template id: a ULID, or the same 128 bits as a UUID.
const JOB_ID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// Completes the generated document: the registered job types, the job id's pattern,
/// security schemes, and the error answers every route can give.
fn document(mut doc: OpenApi, types: &[crate::JobType]) -> OpenApi {
    use utoipa::openapi::schema::Schema;
    let components = doc.components.get_or_insert_with(Default::default);
    if let Some(RefOr::T(Schema::Object(submit))) = components.schemas.get_mut("SubmitRequest")
        && let Some(RefOr::T(Schema::Object(job_type))) = submit.properties.get_mut("type")
    {
        job_type.enum_values = Some(types.iter().map(|t| t.as_str().into()).collect());
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            for p in op.parameters.iter_mut().flatten() {
                if let RefOr::T(p) = p
                    && p.name == "id"
                    && let Some(RefOr::T(Schema::Object(o))) = &mut p.schema
                {
                    o.pattern = Some(JOB_ID_PATTERN.to_owned());
                }
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    components.add_security_scheme(
        "basic",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
    );
    let common = [
        (
            "400",
            "Malformed request (`invalid_request`, `invalid_id`, `unknown_job_type`)",
        ),
        (
            "401",
            "Missing or unknown credentials (`authentication_error`)",
        ),
        (
            "403",
            "Not allowed for this credential (`permission_denied`)",
        ),
        ("404", "Not found"),
        ("405", "Method not allowed (`method_not_allowed`)"),
        ("413", "Body too large (`payload_too_large`)"),
        ("408", "The request body stalled (`request_timeout`)"),
        ("415", "Body is not JSON (`unsupported_media_type`)"),
        ("422", "Invalid fields (`validation_error`)"),
        ("429", "Rate limited (`rate_limited`), with `Retry-After`"),
        ("500", "Internal error (`internal_error`)"),
        (
            "503",
            "Backend unavailable (`unavailable`), with `Retry-After`",
        ),
    ];
    let error = RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody"));
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = path.starts_with("/artifacts/");
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            for (code, description) in common {
                let response = ResponseBuilder::new().description(description).content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(error.clone()))
                        .build(),
                );
                op.responses
                    .responses
                    .entry(code.to_owned())
                    .or_insert_with(|| response.build().into());
            }
            if !public {
                op.security = Some(vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::new("basic", Vec::<String>::new()),
                ]);
            }
        }
    }
    doc
}
