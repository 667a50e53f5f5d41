//! Other wire shapes of a job, by configuration: a host whose API already has its own job
//! object (UUIDs, other status words, camelCase, a `{"data": …}` wrapper) serves it from
//! the engine without writing handlers.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{FromRef, Path, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value};

use super::etag::tagged_json;
use super::view::JobView;
use super::{ApiError, Auth, Principal, Scope};
use crate::{Engine, Job, JobId, JobStatus, JobType};

/// How field names are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FieldCase {
    /// `concurrency_key`, as the canonical job object.
    #[default]
    Snake,
    /// `concurrencyKey`.
    Camel,
}

/// How ids are written, and which forms a path accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IdForm {
    /// Written as ULIDs; a path takes a ULID or a UUID (either case).
    #[default]
    Ulid,
    /// Written as hyphenated lower-case UUIDs; a path takes only the hyphenated UUID form
    /// (either case), anything else is `400 invalid_id`.
    Uuid,
}

/// A job object's shape: which fields of the canonical object appear, under which names,
/// with which status words and id form, and inside which wrapper.
///
/// ```
/// use jobworks::JobStatus;
/// use jobworks::http::{FieldCase, IdForm, JobShape};
/// let shape = JobShape::new()
///     .case(FieldCase::Camel)
///     .ids(IdForm::Uuid)
///     .status(JobStatus::Queued, "PENDING")
///     .status(JobStatus::Running, "PROCESSING")
///     .fields(["id", "type", "status", "result", "error"]);
/// # drop(shape);
/// ```
#[derive(Debug, Clone)]
pub struct JobShape {
    case: FieldCase,
    ids: IdForm,
    fields: Option<Vec<String>>,
    renames: HashMap<String, String>,
    statuses: HashMap<JobStatus, String>,
    cancelled_error: Option<String>,
    wrapper: Option<String>,
}

impl Default for JobShape {
    fn default() -> Self {
        Self::new()
    }
}

/// Fields whose values are the executor's or the host's own data, never renamed inside.
const USER_DATA: [&str; 4] = ["input", "result", "metadata", "payload"];

/// The fields of the canonical job object that hold job ids.
const ID_FIELDS: [&str; 3] = ["id", "workflow_id", "schedule_id"];

impl JobShape {
    /// The canonical shape: every field, snake_case, ULIDs, the canonical status words.
    pub fn new() -> Self {
        JobShape {
            case: FieldCase::Snake,
            ids: IdForm::Ulid,
            fields: None,
            renames: HashMap::new(),
            statuses: HashMap::new(),
            cancelled_error: None,
            wrapper: None,
        }
    }

    /// Writes field names in `case`.
    pub fn case(mut self, case: FieldCase) -> Self {
        self.case = case;
        self
    }

    /// Writes and reads ids in `form`.
    pub fn ids(mut self, form: IdForm) -> Self {
        self.ids = form;
        self
    }

    /// Keeps only these fields of the canonical object (named as there: `concurrency_key`,
    /// `created_at`, …). JSON objects have no order; these are written sorted by name.
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields = Some(fields.into_iter().map(Into::into).collect());
        self
    }

    /// Writes the canonical field `field` as `name` (instead of its name in the case).
    pub fn rename(mut self, field: impl Into<String>, name: impl Into<String>) -> Self {
        self.renames.insert(field.into(), name.into());
        self
    }

    /// Writes `status` as `word`; statuses without a word keep their canonical one.
    pub fn status(mut self, status: JobStatus, word: impl Into<String>) -> Self {
        self.statuses.insert(status, word.into());
        self
    }

    /// What `error` says for a cancelled job, for shapes whose status words do not tell a
    /// cancelled job from a failed one.
    pub fn cancelled_error(mut self, text: impl Into<String>) -> Self {
        self.cancelled_error = Some(text.into());
        self
    }

    /// Puts the object in a wrapper: `{"data": {…}}` for `wrap("data")`.
    pub fn wrap(mut self, key: impl Into<String>) -> Self {
        self.wrapper = Some(key.into());
        self
    }

    /// The job's id as this shape writes it.
    pub fn id(&self, id: JobId) -> String {
        match self.ids {
            IdForm::Ulid => id.to_string(),
            IdForm::Uuid => id.to_uuid_string(),
        }
    }

    /// An id from a path, in a form this shape accepts.
    ///
    /// # Errors
    /// `400 invalid_id` for any other text.
    pub fn parse_id(&self, raw: &str) -> Result<JobId, ApiError> {
        let accepted = match self.ids {
            IdForm::Ulid => true,
            IdForm::Uuid => raw.len() == 36,
        };
        raw.parse()
            .ok()
            .filter(|_| accepted)
            .ok_or_else(|| ApiError::invalid_id(raw))
    }

    /// The canonical job object `view` (of `job`) in this shape.
    pub fn render(&self, job: &Job, view: &JobView) -> Value {
        let Ok(Value::Object(mut canonical)) = serde_json::to_value(view) else {
            return Value::Null;
        };
        if let Some(word) = self.statuses.get(&job.status) {
            canonical.insert("status".into(), Value::String(word.clone()));
        }
        if job.status == JobStatus::Cancelled
            && let Some(text) = &self.cancelled_error
        {
            canonical.insert("error".into(), Value::String(text.clone()));
        }
        if self.ids == IdForm::Uuid {
            for field in ID_FIELDS {
                if let Some(Value::String(id)) = canonical.get_mut(field) {
                    *id = uuid_form(id);
                }
            }
            if let Some(Value::Array(parents)) = canonical.get_mut("parents") {
                for parent in parents.iter_mut() {
                    if let Value::String(id) = parent {
                        *id = uuid_form(id);
                    }
                }
            }
        }
        let names: Vec<String> = match &self.fields {
            Some(fields) => fields.clone(),
            None => canonical.keys().cloned().collect(),
        };
        let mut shaped = Map::new();
        for field in names {
            if let Some(mut value) = canonical.remove(&field) {
                if !USER_DATA.contains(&field.as_str()) {
                    self.recase(&mut value);
                }
                shaped.insert(self.name(&field), value);
            }
        }
        let object = Value::Object(shaped);
        match &self.wrapper {
            Some(key) => Value::Object(Map::from_iter([(key.clone(), object)])),
            None => object,
        }
    }

    /// The names inside a nested object (an artifact, the latest event, the progress) in
    /// the shape's case, leaving the executor's own data as it is.
    fn recase(&self, value: &mut Value) {
        if self.case == FieldCase::Snake {
            return;
        }
        match value {
            Value::Array(items) => items.iter_mut().for_each(|v| self.recase(v)),
            Value::Object(fields) => {
                let old = std::mem::take(fields);
                for (name, mut inner) in old {
                    if !USER_DATA.contains(&name.as_str()) {
                        self.recase(&mut inner);
                    }
                    fields.insert(camel(&name), inner);
                }
            }
            _ => {}
        }
    }

    fn name(&self, field: &str) -> String {
        if let Some(name) = self.renames.get(field) {
            return name.clone();
        }
        match self.case {
            FieldCase::Snake => field.to_owned(),
            FieldCase::Camel => camel(field),
        }
    }

    /// A router of one route, `GET path`, that answers a job of the principal's tenant in
    /// this shape (with an `ETag`, and `304` for `If-None-Match`). `path` names the id as
    /// `{id}` and may name the job's type as `{type}`: then an unknown type is `400
    /// unknown_job_type` and a job of another type `404`, as another tenant's job is.
    ///
    /// # Panics
    /// When `path` has no `{id}` segment.
    pub fn poll_route(&self, path: &str, engine: Engine, auth: Auth) -> Router {
        assert!(path.contains("{id}"), "{path} names no {{id}}");
        let state = ShapeState {
            shape: self.clone(),
            engine,
            auth,
        };
        Router::new().route(path, get(poll)).with_state(state)
    }
}

/// A ULID's text as the same value's hyphenated UUID.
fn uuid_form(ulid: &str) -> String {
    ulid.parse::<JobId>()
        .map(JobId::to_uuid_string)
        .unwrap_or_else(|_| ulid.to_owned())
}

fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Clone)]
struct ShapeState {
    shape: JobShape,
    engine: Engine,
    auth: Auth,
}

impl FromRef<ShapeState> for Auth {
    fn from_ref(state: &ShapeState) -> Auth {
        state.auth.clone()
    }
}

async fn poll(
    State(state): State<ShapeState>,
    principal: Principal,
    Path(params): Path<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let wanted = match params.get("type") {
        None => None,
        Some(raw) => {
            let known = state.engine.job_types();
            match JobType::new(raw).ok().filter(|t| known.contains(t)) {
                Some(t) => Some(t),
                None => {
                    return Err(crate::Error::UnknownJobType {
                        job_type: raw.clone(),
                        known: known.iter().map(ToString::to_string).collect(),
                    }
                    .into());
                }
            }
        }
    };
    let raw = params.get("id").map_or("", String::as_str);
    let id = state.shape.parse_id(raw)?;
    let job = state.engine.get(&principal.tenant, id).await?;
    if wanted.is_some_and(|t| t != job.job_type) {
        return Err(crate::Error::NotFound { id }.into());
    }
    let view = JobView::build(&state.engine, &job).await?;
    let body = state.shape.render(&job, &view);
    tagged_json(axum::http::StatusCode::OK, &body, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cancelled job with parents and an artifact, in a camelCase shape with UUIDs: every
    /// name is camelCase down into the artifacts, ids are UUIDs, the executor's data is
    /// left as it is, and the cancelled job says so in `error`.
    #[tokio::test]
    async fn renders_names_ids_words_and_the_wrapper() {
        use serde_json::json;
        let engine = Engine::builder().build().unwrap();
        let new = crate::NewJob::new(JobType::new("ECHO").unwrap(), json!({"snake_key": 1}));
        let mut job = Job::new_queued(crate::TenantId::new("acme").unwrap(), new, 3);
        job.status = JobStatus::Cancelled;
        job.parents = vec![JobId::new()];
        job.artifacts.push(crate::Artifact {
            name: "out.txt".into(),
            kind: "text".into(),
            role: crate::ArtifactRole::Final,
            content_type: "text/plain".into(),
            size_bytes: 3,
            checksum: "sha256:00".into(),
            metadata: json!({"snake_key": true}),
            created_at: job.created_at,
            attempt: 1,
        });
        let view = JobView::build(&engine, &job).await.unwrap();
        let shape = JobShape::new()
            .case(FieldCase::Camel)
            .ids(IdForm::Uuid)
            .status(JobStatus::Cancelled, "FAILED")
            .cancelled_error("cancelled")
            .wrap("job");
        let body = shape.render(&job, &view);
        let inner = &body["job"];
        assert_eq!(inner["id"], json!(job.id.to_uuid_string()));
        assert_eq!(inner["parents"], json!([job.parents[0].to_uuid_string()]));
        assert_eq!(
            (&inner["status"], &inner["error"]),
            (&json!("FAILED"), &json!("cancelled"))
        );
        assert_eq!(inner["input"], json!({"snake_key": 1}));
        let artifact = &inner["artifacts"][0];
        assert!(
            artifact["urlExpiresAt"].is_string() && artifact["sizeBytes"] == 3,
            "{artifact}"
        );
        assert_eq!(artifact["metadata"], json!({"snake_key": true}));
        assert!(inner["maxAttempts"].is_number() && inner.get("max_attempts").is_none());

        // The canonical shape is the canonical object.
        let canonical = JobShape::new().render(&job, &view);
        assert_eq!(canonical, serde_json::to_value(&view).unwrap());
    }

    #[test]
    fn camel_case_of_every_field() {
        assert_eq!(camel("concurrency_key"), "concurrencyKey");
        assert_eq!(camel("url_expires_at"), "urlExpiresAt");
        assert_eq!(camel("id"), "id");
    }

    #[test]
    fn ids_in_the_uuid_form_only() {
        let shape = JobShape::new().ids(IdForm::Uuid);
        let id = JobId::new();
        assert_eq!(shape.id(id), id.to_uuid_string());
        assert_eq!(shape.parse_id(&id.to_uuid_string()).unwrap(), id);
        assert_eq!(
            shape.parse_id(&id.to_uuid_string().to_uppercase()).unwrap(),
            id
        );
        assert!(shape.parse_id(&id.to_string()).is_err());
        assert!(
            shape
                .parse_id(&id.to_uuid_string().replace('-', ""))
                .is_err()
        );
        assert_eq!(JobShape::new().parse_id(&id.to_string()).unwrap(), id);
        assert_eq!(uuid_form("not an id"), "not an id");
    }
}
