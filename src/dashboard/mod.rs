//! The dashboard (feature `dashboard`): a web page for the people who run the service,
//! as an axum [`Router`] to nest anywhere.
//!
//! Server-rendered HTML (with [`maud`]), its style sheet and one small script embedded in
//! the crate: no CDN, no build step. Pages, relative to where it is nested:
//!
//! | path | what it shows |
//! | --- | --- |
//! | `/` (and the mount itself) | the last hour's finished and failed jobs as sparklines, open jobs by status and queue, the engines (a warning when none runs), recent failures |
//! | `/queues` | each queue's depth, running jobs and limits; pause and resume |
//! | `/jobs` | jobs filtered by tenant, queue, type, status and time, paged by cursor; bulk actions on a selection or on the filter, confirmed first and capped |
//! | `/jobs/{id}` | one job: its timeline (live until it finishes), attempts, error, progress, input and result (through [`Dashboard::redact`]), artifacts with fresh signed links, and its actions |
//! | `/failed` | the failed jobs (the dead-letter view), each with Retry |
//! | `/schedules` | schedules with their last and next runs |
//! | `/workflows/{id}` | a workflow's graph, each job with its status |
//!
//! Who may see what is the host's [`DashboardAccess`]: it turns a request into a
//! [`Viewer`] with the tenants it sees (one, several or all) and the [`Action`]s it may
//! take; a job of another tenant is `404`, exactly as in the JSON API. Every action is a
//! `POST` of a form carrying a CSRF token of the page; one without a valid token changes
//! nothing and answers `403`. [`Dashboard::read_only`] turns every action off.
//!
//! The job page follows its job live by long-polling the store's change feed (the same
//! wait as the JSON API's `GET /jobs/{id}/events?wait=`), not by polling the database.
//!
//! ```
//! use jobworks::dashboard::{BasicLogins, Dashboard, Viewer};
//! use jobworks::{Engine, Tenants};
//! # fn main() -> jobworks::Result<()> {
//! let engine = Engine::builder().build()?;
//! let logins = BasicLogins::new()
//!     .login("ops", "ops-secret", Viewer::new("ops", Tenants::All).may_do_everything());
//! // `nest_service` serves the overview at `/dashboard` and at `/dashboard/` alike.
//! let app: axum::Router = axum::Router::new()
//!     .nest_service("/dashboard", Dashboard::new(engine, logins).router());
//! # drop(app); Ok(()) }
//! ```

mod access;
mod activity;
mod pages;
mod view;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::{Engine, Error, Job};

pub use access::{Action, BasicLogins, DashboardAccess, Viewer};

/// The largest form a dashboard `POST` may send: 64 KiB.
pub const MAX_FORM_BYTES: usize = 64 << 10;

/// How long an artifact link on a job page is valid: 15 minutes.
pub const ARTIFACT_LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// Which part of a job a [`Dashboard::redact`] hook is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The job's input.
    Input,
    /// The job's result.
    Result,
}

type Redactor = dyn Fn(&Job, Part, &Value) -> Value + Send + Sync;

/// Builds the dashboard over an engine.
#[derive(Clone)]
pub struct Dashboard {
    engine: Engine,
    access: Arc<dyn DashboardAccess>,
    read_only: bool,
    csrf_key: [u8; 32],
    redactor: Option<Arc<Redactor>>,
    failures: Option<(u32, Duration)>,
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("read_only", &self.read_only)
            .field("redacts", &self.redactor.is_some())
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// The dashboard over `engine`, its users resolved by `access`.
    ///
    /// CSRF tokens are signed with a key drawn at random here; behind a load balancer
    /// over several processes, give them one key with [`csrf_key`](Self::csrf_key).
    pub fn new(engine: Engine, access: impl DashboardAccess) -> Self {
        Dashboard {
            engine,
            access: Arc::new(access),
            read_only: false,
            csrf_key: rand::random(),
            redactor: None,
            failures: Some((
                crate::http::DEFAULT_AUTH_FAILURES,
                crate::http::AUTH_FAILURE_WINDOW,
            )),
        }
    }

    /// Blocks a client address for the rest of a `window` once `max` of its requests
    /// brought credentials the access refused (as the JSON API does: 20 a minute by
    /// default); `None` turns the limit off. The address is the one
    /// [`Server`](crate::http::Server) finds (behind trusted proxies too).
    pub fn login_failure_limit(mut self, limit: Option<(std::num::NonZeroU32, Duration)>) -> Self {
        self.failures = limit.map(|(max, window)| (max.get(), window));
        self
    }

    /// With `true`, no page offers an action and every `POST` answers `403`, whatever
    /// the viewers may do.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Signs CSRF tokens with `key` (keep it secret; the same in every process that
    /// serves the dashboard).
    pub fn csrf_key(mut self, key: [u8; 32]) -> Self {
        self.csrf_key = key;
        self
    }

    /// Passes a job's input and result through `redact` before a page shows them (to
    /// hide secrets or personal data); what it returns is shown instead.
    pub fn redact(
        mut self,
        redact: impl Fn(&Job, Part, &Value) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.redactor = Some(Arc::new(redact));
        self
    }

    /// The router: nest it under any path, with `nest_service` so that the overview
    /// answers both at the path and with a trailing `/` (axum's `nest` routes only the
    /// first).
    pub fn router(self) -> Router {
        let state = Arc::new(State {
            engine: self.engine,
            access: self.access,
            read_only: self.read_only,
            csrf_key: self.csrf_key,
            redactor: self.redactor,
            failures: self
                .failures
                .map(|(max, window)| crate::http::FailedAuth::new(max, window)),
            activity: activity::Activity::default(),
        });
        Router::new()
            .route("/", get(pages::overview))
            .route("/queues", get(pages::queues))
            .route("/queues/{name}/{verb}", post(pages::queue_action))
            .route("/jobs", get(pages::jobs))
            .route("/jobs/bulk", post(pages::bulk))
            .route("/jobs/{id}", get(pages::job))
            .route("/jobs/{id}/live", get(pages::live))
            .route("/jobs/{id}/{action}", post(pages::job_action))
            .route("/failed", get(pages::failed))
            .route("/schedules", get(pages::schedules))
            .route("/workflows/{id}", get(pages::workflow))
            .route("/assets/dashboard.css", get(pages::style))
            .route("/assets/dashboard.js", get(pages::script))
            .fallback(pages::not_found)
            .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                ),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("DENY"),
            ))
            .with_state(state)
    }
}

/// What every page shares.
struct State {
    engine: Engine,
    access: Arc<dyn DashboardAccess>,
    read_only: bool,
    csrf_key: [u8; 32],
    redactor: Option<Arc<Redactor>>,
    failures: Option<crate::http::FailedAuth>,
    activity: activity::Activity,
}

type Shared = Arc<State>;

impl State {
    /// The CSRF token of `viewer`'s forms: a MAC of its name under the dashboard's key.
    fn csrf_token(&self, viewer: &Viewer) -> String {
        URL_SAFE_NO_PAD.encode(self.csrf_mac(viewer))
    }

    fn csrf_mac(&self, viewer: &Viewer) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.csrf_key).expect("HMAC takes keys of any size");
        mac.update(b"jobworks dashboard csrf\0");
        mac.update(viewer.name.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `token` is `viewer`'s, compared in constant time.
    fn csrf_holds(&self, viewer: &Viewer, token: Option<&str>) -> bool {
        let Some(given) = token.and_then(|t| URL_SAFE_NO_PAD.decode(t).ok()) else {
            return false;
        };
        bool::from(given.as_slice().ct_eq(&self.csrf_mac(viewer)))
    }

    /// Whether `viewer` may take `action` here now.
    fn may(&self, viewer: &Viewer, action: Action) -> bool {
        !self.read_only && viewer.allows(action)
    }

    fn redacted(&self, job: &Job, part: Part, value: &Value) -> Value {
        match &self.redactor {
            Some(redact) => redact(job, part, value),
            None => value.clone(),
        }
    }
}

/// The user of a request with where the dashboard is mounted, or the access's challenge.
struct Visit {
    viewer: Viewer,
    /// The path the dashboard is nested under (`/dashboard`), for links.
    base: String,
}

impl FromRequestParts<Shared> for Visit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let failures = state.failures.as_ref().zip(crate::http::client_addr(parts));
        if let Some(wait) = failures.and_then(|(f, addr)| f.blocked(addr)) {
            let seconds = wait.as_secs_f64().ceil() as u64;
            let message = format!("Too many failed logins from here: try again in {seconds} s.");
            let mut answer = PageError::new(StatusCode::TOO_MANY_REQUESTS, message).into_response();
            if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                answer.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Err(answer);
        }
        let Some(viewer) = state.access.viewer(parts).await else {
            if let Some((f, addr)) = failures
                && parts.headers.contains_key(header::AUTHORIZATION)
            {
                f.failed(addr);
            }
            return Err(state.access.challenge());
        };
        let original = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.path().to_owned(), |o| o.path().to_owned());
        Ok(Visit {
            viewer,
            base: mount(&original, parts.uri.path()),
        })
    }
}

/// The mount of a router that saw `inner` of the request for `original`.
fn mount(original: &str, inner: &str) -> String {
    let base = original
        .strip_suffix(inner)
        .or_else(|| (inner == "/").then_some(original))
        .unwrap_or_default();
    base.trim_end_matches('/').to_owned()
}

/// A page that could not be shown: its status and a sentence.
#[derive(Debug)]
struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
        }
    }

    fn forbidden(message: impl Into<String>) -> Self {
        PageError::new(StatusCode::FORBIDDEN, message)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        PageError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<Error> for PageError {
    /// The JSON API's answer to the error (its status, and a detail that never carries
    /// internals; what it logs), as a page.
    fn from(e: Error) -> Self {
        let api = crate::http::ApiError::from(e);
        PageError::new(api.status(), api.body().detail.clone())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        (self.status, view::bare(&title, &self.message)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_is_what_nesting_took_off() {
        assert_eq!(mount("/dashboard", "/"), "/dashboard");
        assert_eq!(mount("/dashboard/", "/"), "/dashboard");
        assert_eq!(mount("/dashboard/jobs/x", "/jobs/x"), "/dashboard");
        assert_eq!(mount("/jobs", "/jobs"), "");
        assert_eq!(mount("/", "/"), "");
    }
}
