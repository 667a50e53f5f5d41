//! The canonical error envelope, and how crate errors map onto it.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Error;

/// One bad field of a `422`: where it is, what is wrong, and a machine-readable kind.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    /// The path to the field: `["body", "max_attempts"]`, `["query", "limit"]`.
    pub loc: Vec<String>,
    /// What is wrong, for people.
    pub msg: String,
    /// What is wrong, for programs: `missing`, `type_error`, `out_of_range`, `invalid`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    /// A field error at `loc` (`"body.max_attempts"` becomes `["body", "max_attempts"]`).
    pub fn new(loc: &str, kind: &str, msg: impl Into<String>) -> Self {
        FieldError {
            loc: loc.split('.').map(str::to_owned).collect(),
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP status code, repeated.
    pub code: u16,
    /// A stable word for the kind of error (`job_not_found`, `validation_error`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong, for people; never internals.
    pub detail: String,
    /// The bad fields, on `422` (possibly empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// The empty sections, on `422 empty_sections`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub empty_sections: Option<Value>,
}

/// An error answer in the canonical envelope, with the headers it needs.
///
/// Every route of the adapter fails with one; a host's own handlers can return it too.
///
/// ```
/// use jobworks::http::ApiError;
/// let e = ApiError::not_found("no such thing");
/// assert_eq!(e.status().as_u16(), 404);
/// ```
#[derive(Debug, Clone)]
pub struct ApiError(Box<Parts>);

/// Boxed, so that `Result<T, ApiError>` stays small.
#[derive(Debug, Clone)]
struct Parts {
    status: StatusCode,
    body: ErrorBody,
    headers: HeaderMap,
}

impl ApiError {
    /// An error with `status`, a stable `kind` word and a `detail` for people.
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        ApiError(Box::new(Parts {
            status,
            body: ErrorBody {
                code: status.as_u16(),
                kind: kind.to_owned(),
                detail: detail.into(),
                errors: (status == StatusCode::UNPROCESSABLE_ENTITY).then(Vec::new),
                empty_sections: None,
            },
            headers: HeaderMap::new(),
        }))
    }

    /// `400 invalid_request`.
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    /// `400 invalid_id`.
    pub fn invalid_id(id: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            format!("{id:?} is not a job id (a ULID or a UUID)"),
        )
    }

    /// `400 invalid_id`, saying why in `detail`.
    pub fn invalid_id_because(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_id", detail)
    }

    /// `401 authentication_error`.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or unknown credentials",
        )
        .with_header(header::WWW_AUTHENTICATE, "Bearer")
    }

    /// `403 permission_denied`.
    pub fn permission_denied(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", detail)
    }

    /// `404 not_found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// `422 validation_error` listing every bad field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "Request validation failed",
        );
        e.0.body.errors = Some(errors);
        e
    }

    /// `422 validation_error` for one field.
    pub fn field(loc: &str, kind: &str, msg: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(loc, kind, msg)])
    }

    /// `429 rate_limited`, to retry after `seconds`.
    pub fn rate_limited(seconds: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests",
        )
        .with_retry_after(seconds)
    }

    /// `500 internal_error`, saying nothing more.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        )
    }

    /// The error that a framework response of `status` stands for (unknown route, wrong
    /// method, …), used to put the envelope on responses the adapter did not make itself.
    pub fn from_status(status: StatusCode) -> Self {
        let (kind, detail) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ),
            StatusCode::RANGE_NOT_SATISFIABLE => ("range_not_satisfiable", "range not satisfiable"),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request body stalled"),
            StatusCode::UNPROCESSABLE_ENTITY => {
                return Self::validation(Vec::new());
            }
            s if s.is_server_error() => return Self::internal_with_status(s),
            _ => ("invalid_request", "invalid request"),
        };
        Self::new(status, kind, detail)
    }

    fn internal_with_status(status: StatusCode) -> Self {
        let mut e = Self::internal();
        e.0.status = status;
        e.0.body.code = status.as_u16();
        e
    }

    /// Adds a header to the response.
    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.0.headers.insert(name, value);
        }
        self
    }

    /// Adds `Retry-After: seconds`.
    pub fn with_retry_after(self, seconds: u64) -> Self {
        self.with_header(header::RETRY_AFTER, &seconds.max(1).to_string())
    }

    /// Attaches extra data under `empty_sections` (for `422 empty_sections`).
    pub fn with_empty_sections(mut self, sections: Value) -> Self {
        self.0.body.empty_sections = Some(sections);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The body.
    pub fn body(&self) -> &ErrorBody {
        &self.0.body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = &self.0.body;
        write!(f, "{} {}: {}", body.code, body.kind, body.detail)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Parts {
            status,
            body,
            headers,
        } = *self.0;
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().extend(headers);
        response
    }
}

/// The `Retry-After` of `429 quota_exceeded`: jobs end at their own pace, so a hint.
const QUOTA_RETRY_AFTER_SECS: u64 = 5;

/// One status code per kind of crate error; internals go to the log, never to the client.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::NotFound { id } => Self::new(
                StatusCode::NOT_FOUND,
                "job_not_found",
                format!("job {id} not found"),
            ),
            Error::ArtifactNotFound { name, .. } => {
                Self::not_found(format!("artifact {name:?} not found"))
            }
            Error::AlreadyExists { .. } => {
                Self::new(StatusCode::CONFLICT, "already_exists", e.to_string())
            }
            Error::InvalidTransition { from, .. } => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("the job is already {from}"),
            ),
            Error::Conflict { reason, .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", reason.to_string())
            }
            Error::QuotaExceeded { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                e.to_string(),
            )
            .with_retry_after(QUOTA_RETRY_AFTER_SECS),
            Error::UnknownJobType { job_type, known } => Self::new(
                StatusCode::BAD_REQUEST,
                "unknown_job_type",
                format!(
                    "unknown job type {job_type:?}; known types: {}",
                    known.join(", ")
                ),
            ),
            Error::Invalid { field, message } => {
                Self::field(&format!("body.{field}"), "invalid", message.to_string())
            }
            Error::InvalidAt { path, message } => Self::validation(vec![FieldError {
                loc: std::iter::once("body".to_owned())
                    .chain(path.iter().cloned())
                    .collect(),
                msg: message.to_string(),
                kind: "invalid".to_owned(),
            }]),
            Error::WorkflowNotFound { .. } => Self::new(
                StatusCode::NOT_FOUND,
                "workflow_not_found",
                "workflow not found",
            ),
            Error::ScheduleNotFound { .. } => Self::new(
                StatusCode::NOT_FOUND,
                "schedule_not_found",
                "schedule not found",
            ),
            Error::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "shutting down",
            )
            .with_retry_after(5),
            Error::Unavailable { .. } => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "backend unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the job store is unavailable; retry later",
                )
                .with_retry_after(1)
            }
            _ => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), "internal error");
                Self::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobId;

    #[test]
    fn internals_never_reach_the_body() {
        let e = ApiError::from(Error::Backend {
            backend: "postgres",
            source: "relation jobworks_jobs does not exist at /srv/x.sql".into(),
        });
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.body().detail, "internal error");
    }

    #[test]
    fn missing_jobs_name_only_the_id() {
        let id = JobId::new();
        let e = ApiError::from(Error::NotFound { id });
        assert_eq!(e.body().kind, "job_not_found");
        assert_eq!(e.body().detail, format!("job {id} not found"));
    }

    #[test]
    fn validation_errors_always_list_fields() {
        let e = ApiError::from_status(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.body().errors, Some(Vec::new()));
        let e = ApiError::from(Error::invalid("priority", "out of range"));
        assert_eq!(
            e.body().errors.as_ref().unwrap()[0].loc,
            ["body", "priority"]
        );
    }
}
