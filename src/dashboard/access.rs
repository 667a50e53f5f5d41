//! Who is looking: the host's resolver turns a request into a [`Viewer`] (the tenants it
//! sees and the actions it may take), and [`BasicLogins`] is a ready one for HTTP Basic.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::engine::{BulkAction, Tenants};
use crate::http::Credentials;

/// What a dashboard user may do besides reading. Each is a button on the pages; one the
/// viewer may not take is not shown, and its `POST` answers `403`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Queue a failed or cancelled job again ([`Engine::retry`](crate::Engine::retry)),
    /// one or in bulk.
    Retry,
    /// Cancel a job that has not finished, one or in bulk.
    Cancel,
    /// Make a queued job that waits for its time due now.
    Requeue,
    /// Delete a finished job with its timeline and bytes, one or in bulk.
    Discard,
    /// Pause and resume queues. Queues are shared by every tenant: grant it to those who
    /// operate the whole service.
    Queues,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 5] = [
        Action::Retry,
        Action::Cancel,
        Action::Requeue,
        Action::Discard,
        Action::Queues,
    ];

    /// Its name as a button says it (`Retry`, `Cancel`, …).
    pub fn label(self) -> &'static str {
        match self {
            Action::Retry => "Retry",
            Action::Cancel => "Cancel",
            Action::Requeue => "Requeue",
            Action::Discard => "Discard",
            Action::Queues => "Pause or resume queues",
        }
    }

    /// The action of that name in paths and forms.
    pub(super) fn named(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The bulk action it is, if it is one.
    pub(super) fn bulk(self) -> Option<BulkAction> {
        match self {
            Action::Retry => Some(BulkAction::Retry),
            Action::Cancel => Some(BulkAction::Cancel),
            Action::Discard => Some(BulkAction::Discard),
            Action::Requeue | Action::Queues => None,
        }
    }

    /// Its name in paths and forms (`retry`, `cancel`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Cancel => "cancel",
            Action::Requeue => "requeue",
            Action::Discard => "discard",
            Action::Queues => "queues",
        }
    }
}

/// A dashboard user: a name (the `actor` of the operator events it leaves), the tenants
/// it sees and the actions it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// Who it is.
    pub name: String,
    /// The tenants whose jobs, queue counts and schedules it sees.
    pub tenants: Tenants,
    /// What it may do besides reading.
    pub actions: BTreeSet<Action>,
}

impl Viewer {
    /// `name`, seeing `tenants`, read only until given actions.
    pub fn new(name: impl Into<String>, tenants: Tenants) -> Self {
        Viewer {
            name: name.into(),
            tenants,
            actions: BTreeSet::new(),
        }
    }

    /// May also take `action`.
    pub fn may(mut self, action: Action) -> Self {
        self.actions.insert(action);
        self
    }

    /// May take every action.
    pub fn may_do_everything(mut self) -> Self {
        self.actions.extend(Action::ALL);
        self
    }

    /// Whether it may take `action`.
    pub fn allows(&self, action: Action) -> bool {
        self.actions.contains(&action)
    }
}

/// Turns a request into a dashboard user, or refuses it.
///
/// Implement it over the host's own sessions or single sign-on; [`BasicLogins`] is the
/// simplest one. It sees the request's head only (method, path, headers).
#[async_trait]
pub trait DashboardAccess: Send + Sync + 'static {
    /// The user making `request`, or `None` to refuse it with [`challenge`](Self::challenge).
    async fn viewer(&self, request: &Parts) -> Option<Viewer>;

    /// The answer to a request without a user: by default `401` with a
    /// `WWW-Authenticate: Basic realm="jobworks"` challenge, so that a browser asks for a
    /// login. A host with a login page of its own may redirect there instead.
    fn challenge(&self) -> Response {
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"jobworks\""),
            )],
            "A login is needed to see the dashboard.",
        )
            .into_response()
    }
}

/// A fixed table of HTTP Basic logins (`user:password`), each naming a [`Viewer`].
///
/// Only SHA-256 digests of the logins are kept, compared with every entry in constant
/// time.
///
/// ```
/// use jobworks::{TenantId, Tenants};
/// use jobworks::dashboard::{Action, BasicLogins, Viewer};
/// let logins = BasicLogins::new()
///     .login("acme-key", "acme-secret", Viewer::new("acme-key", Tenants::only([TenantId::new("acme")?])).may(Action::Cancel))
///     .login("ops", "ops-secret", Viewer::new("ops", Tenants::All).may_do_everything());
/// # drop(logins);
/// # Ok::<(), jobworks::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct BasicLogins {
    entries: Vec<([u8; 32], Viewer)>,
}

impl fmt::Debug for BasicLogins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicLogins")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl BasicLogins {
    /// No logins: every request is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `user:password` as `viewer`.
    pub fn login(mut self, user: &str, password: &str, viewer: Viewer) -> Self {
        let credentials = Credentials::Basic {
            key: user.to_owned(),
            secret: password.to_owned(),
        };
        self.entries.push((credentials.digest(), viewer));
        self
    }
}

#[async_trait]
impl DashboardAccess for BasicLogins {
    async fn viewer(&self, request: &Parts) -> Option<Viewer> {
        let credentials = Credentials::from_headers(&request.headers)?;
        if !matches!(credentials, Credentials::Basic { .. }) {
            return None;
        }
        crate::http::lookup(&self.entries, &credentials).cloned()
    }
}
