//! Who is asking: principals, authenticators, and per-principal rate limits.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use super::limits::{FailedAuth, KeyedRate};
use super::serve::ClientAddr;
use crate::TenantId;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Read jobs, events, reports and templates.
    Read,
    /// Submit and cancel jobs, build reports, change templates.
    Write,
    /// Operator actions on the principal's own tenant's jobs.
    Admin,
    /// Settings every tenant shares: queues (pause, resume, limits), with counts summed
    /// over all tenants.
    Operator,
}

impl Scope {
    /// Its name, as error messages give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::Operator => "operator",
        }
    }
}

/// The caller of a request: the tenant it acts for, who it is, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Every job it touches belongs to this tenant.
    pub tenant: TenantId,
    /// Who it is, for logs and rate limits.
    pub subject: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// A principal of `tenant` that may read and write (`read`, `write`).
    pub fn new(tenant: TenantId, subject: impl Into<String>) -> Self {
        Principal {
            tenant,
            subject: subject.into(),
            scopes: vec![Scope::Read, Scope::Write],
        }
    }

    /// The same principal, allowed only to read.
    pub fn read_only(mut self) -> Self {
        self.scopes = vec![Scope::Read];
        self
    }

    /// The same principal with `scope` as well.
    ///
    /// ```
    /// use jobworks::{TenantId, http::{Principal, Scope}};
    /// let admin = Principal::new(TenantId::new("acme")?, "ops").with_scope(Scope::Admin);
    /// assert!(admin.allows(Scope::Admin) && admin.allows(Scope::Write));
    /// # Ok::<(), jobworks::Error>(())
    /// ```
    pub fn with_scope(mut self, scope: Scope) -> Self {
        if !self.scopes.contains(&scope) {
            self.scopes.push(scope);
        }
        self
    }

    /// Whether it holds `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// `Ok` when it holds `scope`.
    ///
    /// # Errors
    /// `403 permission_denied` otherwise.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::permission_denied(format!(
                "this credential lacks the {} scope",
                scope.as_str()
            )))
        }
    }
}

/// The path parameters of a request, including those of the prefix the router is mounted
/// under (`/org/{org}/…`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams(Vec<(String, String)>);

impl PathParams {
    /// Parameters from name-value pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        PathParams(pairs)
    }

    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Turns a request into a [`Principal`].
///
/// Answer `401` ([`ApiError::unauthenticated`]) for missing or unknown credentials and `403`
/// ([`ApiError::permission_denied`]) for a known principal out of its bounds, such as a
/// token of one organisation on another's path.
#[async_trait]
pub trait Authenticator: Send + Sync + fmt::Debug + 'static {
    /// Authenticates a request from its head and path parameters.
    async fn authenticate(&self, parts: &Parts, path: &PathParams) -> Result<Principal, ApiError>;
}

/// Credentials as a client sends them in `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Bearer <token>`.
    Bearer(String),
    /// `Basic base64(key:secret)`.
    Basic {
        /// The key (user name).
        key: String,
        /// The secret (password).
        secret: String,
    },
}

impl Credentials {
    /// The credentials in `headers`, if one `Authorization` header is there and well
    /// formed (two are ambiguous, and none is taken).
    pub fn from_headers(headers: &HeaderMap) -> Option<Credentials> {
        let mut all = headers.get_all(header::AUTHORIZATION).iter();
        let (value, None) = (all.next()?.to_str().ok()?, all.next()) else {
            return None;
        };
        let (scheme, rest) = value.split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Some(Credentials::Bearer(rest.to_owned()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = String::from_utf8(B64.decode(rest).ok()?).ok()?;
            let (key, secret) = decoded.split_once(':')?;
            return Some(Credentials::Basic {
                key: key.to_owned(),
                secret: secret.to_owned(),
            });
        }
        None
    }

    /// A digest of the credentials: what [`StaticCredentials`] keeps and compares.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        match self {
            Credentials::Bearer(token) => {
                hash.update(b"bearer\0");
                hash.update(token.as_bytes());
            }
            Credentials::Basic { key, secret } => {
                hash.update(b"basic\0");
                hash.update(key.as_bytes());
                hash.update(b"\0");
                hash.update(secret.as_bytes());
            }
        }
        hash.finalize().into()
    }
}

/// A fixed table of bearer tokens and Basic key:secret pairs, each naming a principal.
///
/// Only SHA-256 digests of the credentials are kept, and a request's digest is compared with
/// every entry in constant time, so neither a secret's content nor its position leaks
/// through timing.
///
/// ```
/// use jobworks::TenantId;
/// use jobworks::http::{Principal, StaticCredentials};
/// let acme = TenantId::new("acme")?;
/// let credentials = StaticCredentials::new()
///     .bearer("s3cret-token", Principal::new(acme.clone(), "ci"))
///     .basic("acme-key", "acme-secret", Principal::new(acme, "acme-key").read_only());
/// let app: axum::Router = jobworks::http::JobsApi::new(jobworks::Engine::builder().build()?, credentials).router();
/// # drop(app);
/// # Ok::<(), jobworks::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct StaticCredentials {
    entries: Vec<([u8; 32], Principal)>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl StaticCredentials {
    /// An empty table: every request is `401`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `Authorization: Bearer <token>` as `principal`.
    pub fn bearer(mut self, token: &str, principal: Principal) -> Self {
        let digest = Credentials::Bearer(token.to_owned()).digest();
        self.entries.push((digest, principal));
        self
    }

    /// Accepts `Authorization: Basic base64(key:secret)` as `principal`.
    pub fn basic(mut self, key: &str, secret: &str, principal: Principal) -> Self {
        let credentials = Credentials::Basic {
            key: key.to_owned(),
            secret: secret.to_owned(),
        };
        self.entries.push((credentials.digest(), principal));
        self
    }

    /// The principal for `credentials`, looked at in constant time per entry.
    pub fn lookup(&self, credentials: &Credentials) -> Option<&Principal> {
        lookup(&self.entries, credentials)
    }
}

/// The value kept for `credentials` among digests, each compared in constant time.
pub(crate) fn lookup<'a, T>(
    entries: &'a [([u8; 32], T)],
    credentials: &Credentials,
) -> Option<&'a T> {
    let digest = credentials.digest();
    let mut found = None;
    for (known, value) in entries {
        if bool::from(known.ct_eq(&digest)) {
            found = Some(value);
        }
    }
    found
}

#[async_trait]
impl Authenticator for StaticCredentials {
    async fn authenticate(&self, parts: &Parts, _: &PathParams) -> Result<Principal, ApiError> {
        Credentials::from_headers(&parts.headers)
            .and_then(|c| self.lookup(&c).cloned())
            .ok_or_else(ApiError::unauthenticated)
    }
}

/// How many failed authentications a client address may make per window by default.
pub const DEFAULT_AUTH_FAILURES: u32 = 20;
/// The window of [`DEFAULT_AUTH_FAILURES`].
pub const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// How requests are authenticated and limited: what the [`Principal`] extractor needs from
/// the state of the router it is used in (through [`FromRef`]).
///
/// Once a client address failed to authenticate [`DEFAULT_AUTH_FAILURES`] times within
/// [`AUTH_FAILURE_WINDOW`] (requests that carried an `Authorization` header which the
/// authenticator refused with `401`), its further requests get `429 rate_limited` with
/// `Retry-After` until the window ends, without their credentials being checked. The client address is the [`ClientAddr`] that
/// [`Server`](super::Server) puts on each request, or else axum's
/// [`ConnectInfo`](axum::extract::ConnectInfo); a request with neither is not counted.
#[derive(Clone)]
pub struct Auth {
    authenticator: Arc<dyn Authenticator>,
    limiter: Option<Arc<KeyedRate>>,
    failures: Option<Arc<FailedAuth>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("authenticator", &self.authenticator)
            .field("rate_limited", &self.limiter.is_some())
            .field("failures_limited", &self.failures.is_some())
            .finish()
    }
}

impl Auth {
    /// Authentication by `authenticator`, without rate limits, and with the default limit
    /// of failed authentications per client address.
    pub fn new(authenticator: impl Authenticator) -> Self {
        Auth {
            authenticator: Arc::new(authenticator),
            limiter: None,
            failures: Some(Arc::new(FailedAuth::new(
                DEFAULT_AUTH_FAILURES,
                AUTH_FAILURE_WINDOW,
            ))),
        }
    }

    /// Allows each principal (tenant and subject) `per_second` requests a second, with
    /// bursts of as many; more get `429 rate_limited` with `Retry-After`.
    pub fn rate_limit(mut self, per_second: NonZeroU32) -> Self {
        self.limiter = Some(Arc::new(KeyedRate::per_second(per_second)));
        self
    }

    /// Blocks a client address for the rest of a `window` once it failed to authenticate
    /// `max` times in it; `None` turns the limit off.
    pub fn auth_failure_limit(mut self, limit: Option<(NonZeroU32, Duration)>) -> Self {
        self.failures = limit.map(|(max, window)| Arc::new(FailedAuth::new(max.get(), window)));
        self
    }

    /// Authenticates and rate-limits a request.
    ///
    /// # Errors
    /// What the authenticator answers; `401` for a request with two `Authorization`
    /// headers; `429` over the rate limit, or from an address that failed too often.
    pub async fn principal(&self, parts: &Parts, path: &PathParams) -> Result<Principal, ApiError> {
        let client = client_addr(parts);
        let failures = self.failures.as_deref().zip(client);
        if let Some(wait) = failures.and_then(|(f, addr)| f.blocked(addr)) {
            return Err(ApiError::rate_limited(wait.as_secs_f64().ceil() as u64));
        }
        let presented = parts.headers.get_all(header::AUTHORIZATION).iter().count();
        let authenticated = if presented > 1 {
            Err(ApiError::unauthenticated())
        } else {
            self.authenticator.authenticate(parts, path).await
        };
        let principal = match authenticated {
            Ok(principal) => principal,
            Err(e) => {
                if let Some((f, addr)) = failures
                    && presented > 0
                    && e.status() == StatusCode::UNAUTHORIZED
                {
                    f.failed(addr);
                }
                return Err(e);
            }
        };
        if let Some(limiter) = &self.limiter {
            let key = format!("{}\0{}", principal.tenant, principal.subject);
            if let Err(wait) = limiter.check(&key) {
                return Err(ApiError::rate_limited(wait.as_secs_f64().ceil() as u64));
            }
        }
        Ok(principal)
    }
}

/// The client address of a request, as [`Auth`] counts it.
pub(crate) fn client_addr(parts: &Parts) -> Option<IpAddr> {
    let served = parts.extensions.get::<ClientAddr>().map(|c| c.0);
    served.or_else(|| {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    })
}

/// Authenticates the request with the [`Auth`] of the router's state.
impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync,
    Auth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let path = match RawPathParams::from_request_parts(parts, state).await {
            Ok(raw) => raw
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            Err(RawPathParamsRejection::MissingPathParams(_)) => Vec::new(),
            Err(e) => return Err(super::body::undecodable(e)),
        };
        Auth::from_ref(state)
            .principal(parts, &PathParams::new(path))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn credentials_are_parsed_from_both_schemes() {
        assert_eq!(
            Credentials::from_headers(&headers("Bearer abc")),
            Some(Credentials::Bearer("abc".into()))
        );
        let basic = format!("Basic {}", B64.encode("k:s:t"));
        assert_eq!(
            Credentials::from_headers(&headers(&basic)),
            Some(Credentials::Basic {
                key: "k".into(),
                secret: "s:t".into()
            })
        );
        assert_eq!(Credentials::from_headers(&headers("Basic !!")), None);
        assert_eq!(Credentials::from_headers(&headers("Bearer ")), None);
    }

    #[test]
    fn a_token_is_not_a_key() {
        let t = TenantId::new("t").unwrap();
        let table = StaticCredentials::new().bearer("a:b", Principal::new(t, "x"));
        assert!(table.lookup(&Credentials::Bearer("a:b".into())).is_some());
        let basic = Credentials::Basic {
            key: "a".into(),
            secret: "b".into(),
        };
        assert!(table.lookup(&basic).is_none());
    }
}
