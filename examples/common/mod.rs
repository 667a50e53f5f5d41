//! What the server examples share: flags, stores, demo credentials and demo job types.
#![allow(dead_code, unreachable_pub)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use jobworks::http::{Principal, Scope, StaticCredentials};
use jobworks::{
    ArtifactSpec, DocumentStore, Engine, EngineBuilder, JobContext, JobError, JobStore,
    MemoryStore, ObjectStoreArtifacts, RetryPolicy, TenantId, UrlSigner, from_fn,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The flags every server example takes.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: String,
    pub store: String,
    pub artifacts: Option<String>,
    pub public_url: Option<String>,
    pub rate_limit: Option<NonZeroU32>,
    /// Failed authentications a client address may make per minute (`None`: no limit).
    pub auth_failures: Option<NonZeroU32>,
    pub retry_base_ms: u64,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub tenant_quota: Option<u64>,
    pub queues: Vec<(String, usize)>,
}

const USAGE: &str = "flags: --addr HOST:PORT (127.0.0.1:8080)  --store memory|sqlite:PATH|postgres:URL \
(sqlite:jobworks-data/jobs.db; a bare postgres://… URL works too)  --artifacts DIR|s3://BUCKET \
(jobworks-data/artifacts; in memory with --store memory; a bucket needs --features s3 and \
reads AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP)  --public-url URL (http://ADDR)  \
--rate-limit N (per second per principal; off)  --auth-failures N (per minute per client \
address before 429; 20, 0 for no limit)  --retry-base-ms N (1000)  \
--trusted-proxy IP|CIDR (repeatable: proxies whose X-Forwarded-For names the client)  \
--tenant-quota N (unfinished jobs per tenant; none)  \
--queue NAME:SLOTS (repeatable: serve another queue beside default)";

impl Options {
    /// Reads the flags, or prints the usage and exits.
    pub fn from_args() -> Options {
        Self::from_args_in(std::env::args().skip(1))
    }

    /// Reads `args` as flags, or prints the usage and exits.
    pub fn from_args_in<S: Into<String>>(args: impl IntoIterator<Item = S>) -> Options {
        let mut o = Options {
            addr: "127.0.0.1:8080".into(),
            store: "sqlite:jobworks-data/jobs.db".into(),
            artifacts: None,
            public_url: None,
            rate_limit: None,
            auth_failures: NonZeroU32::new(jobworks::http::DEFAULT_AUTH_FAILURES),
            retry_base_ms: 1000,
            trusted_proxies: Vec::new(),
            tenant_quota: None,
            queues: Vec::new(),
        };
        let mut args = args.into_iter().map(Into::into);
        while let Some(flag) = args.next() {
            let Some(value) = args.next() else {
                usage(&flag)
            };
            match flag.as_str() {
                "--addr" => o.addr = value,
                "--store" => o.store = value,
                "--artifacts" => o.artifacts = Some(value),
                "--public-url" => o.public_url = Some(value.trim_end_matches('/').into()),
                "--rate-limit" => {
                    o.rate_limit = Some(value.parse().unwrap_or_else(|_| usage(&flag)))
                }
                "--auth-failures" => {
                    o.auth_failures =
                        NonZeroU32::new(value.parse().unwrap_or_else(|_| usage(&flag)))
                }
                "--retry-base-ms" => {
                    o.retry_base_ms = value.parse().unwrap_or_else(|_| usage(&flag))
                }
                "--trusted-proxy" => {
                    let net = value
                        .parse::<ipnet::IpNet>()
                        .or_else(|_| value.parse::<std::net::IpAddr>().map(Into::into))
                        .unwrap_or_else(|_| usage(&flag));
                    o.trusted_proxies.push(net);
                }
                "--tenant-quota" => {
                    o.tenant_quota = Some(value.parse().unwrap_or_else(|_| usage(&flag)))
                }
                "--queue" => {
                    let (name, slots) = value.split_once(':').unwrap_or_else(|| usage(&flag));
                    let slots = slots.parse().unwrap_or_else(|_| usage(&flag));
                    o.queues.push((name.to_owned(), slots));
                }
                _ => usage(&flag),
            }
        }
        o
    }

    /// `api` with the flags' request limits: the rate limit per principal and the limit
    /// of failed authentications per client address.
    pub fn limits(&self, mut api: jobworks::http::JobsApi) -> jobworks::http::JobsApi {
        if let Some(n) = self.rate_limit {
            api = api.rate_limit(n);
        }
        let window = jobworks::http::AUTH_FAILURE_WINDOW;
        api.auth_failure_limit(self.auth_failures.map(|n| (n, window)))
    }

    /// The public base URL of the server.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.addr))
    }

    /// The job store the flags name (which keeps documents, report templates, too).
    pub async fn job_store(&self) -> Arc<dyn JobStore> {
        self.stores().await.jobs
    }

    /// The store the flags name, as a job store and a document store.
    pub async fn stores(&self) -> Stores {
        let fail = |e: jobworks::Error| -> ! {
            eprintln!(
                "cannot open the store {}: {}",
                redacted(&self.store),
                causes(&e)
            );
            std::process::exit(1)
        };
        if self.store == "memory" {
            return Stores::of(Arc::new(MemoryStore::new()));
        }
        if let Some(path) = self.store.strip_prefix("sqlite:") {
            if let Some(dir) = std::path::Path::new(path).parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let store = jobworks::SqliteStore::open(path)
                .await
                .unwrap_or_else(|e| fail(e));
            return Stores::of(Arc::new(store));
        }
        if self.store.starts_with("postgres:") || self.store.starts_with("postgresql:") {
            #[cfg(feature = "postgres")]
            {
                let store = jobworks::PostgresStore::builder(postgres_url(&self.store))
                    .migrate_on_connect(true)
                    .connect()
                    .await
                    .unwrap_or_else(|e| fail(e));
                return Stores::of(Arc::new(store));
            }
            #[cfg(not(feature = "postgres"))]
            {
                eprintln!("--store postgres:… needs --features postgres");
                std::process::exit(2);
            }
        }
        usage("--store")
    }

    /// The artifact store: a folder on disk, or memory with `--store memory`, signing URLs
    /// under `{public url}{mount}`.
    pub fn artifacts(&self, mount: &str) -> ObjectStoreArtifacts {
        if let Some(bucket) = self
            .artifacts
            .as_deref()
            .and_then(|a| a.strip_prefix("s3://"))
        {
            return s3_artifacts(bucket);
        }
        let signer = UrlSigner::random(format!("{}{mount}", self.public_url()));
        let dir = match (&self.artifacts, self.store.as_str()) {
            (Some(dir), _) => dir.clone(),
            (None, "memory") => {
                return ObjectStoreArtifacts::new(
                    Arc::new(object_store::memory::InMemory::new()),
                    signer,
                );
            }
            (None, _) => "jobworks-data/artifacts".into(),
        };
        std::fs::create_dir_all(&dir).expect("create the artifacts folder");
        let fs =
            object_store::local::LocalFileSystem::new_with_prefix(&dir).expect("artifacts folder");
        ObjectStoreArtifacts::new(Arc::new(fs), signer)
    }

    /// Retries of the demo types: 5 attempts, backoff from `--retry-base-ms`.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy::default()
            .max_attempts(5)
            .base(Duration::from_millis(self.retry_base_ms))
    }
}

/// Artifacts in an S3 bucket, configured by the `AWS_*` variables; S3 presigns the URLs.
#[cfg(feature = "s3")]
fn s3_artifacts(bucket: &str) -> ObjectStoreArtifacts {
    ObjectStoreArtifacts::s3_from_env(bucket).unwrap_or_else(|e| {
        eprintln!("cannot use the bucket {bucket}: {e}");
        std::process::exit(1)
    })
}

#[cfg(not(feature = "s3"))]
fn s3_artifacts(_: &str) -> ObjectStoreArtifacts {
    eprintln!("--artifacts s3://… needs the s3 feature (--features s3)");
    std::process::exit(2)
}

/// One store, seen as the traits the examples need.
pub struct Stores {
    pub jobs: Arc<dyn JobStore>,
    /// Where report templates are kept.
    pub documents: Arc<dyn DocumentStore>,
}

impl Stores {
    fn of<S: JobStore + DocumentStore>(store: Arc<S>) -> Stores {
        Stores {
            jobs: store.clone(),
            documents: store,
        }
    }
}

/// The URL of a `--store` value: `postgres:postgres://…` (the flag's documented form) or
/// a bare `postgres://…` URL.
fn postgres_url(store: &str) -> &str {
    store
        .split_once(':')
        .map(|(_, rest)| rest)
        .filter(|rest| rest.starts_with("postgres://") || rest.starts_with("postgresql://"))
        .unwrap_or(store)
}

/// `store` with the password of a URL in it replaced by `***`.
pub fn redacted(store: &str) -> String {
    let Some((scheme, rest)) = store.split_once("://") else {
        return store.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => store.to_owned(),
        },
        None => store.to_owned(),
    }
}

/// An error and every error under it: "postgres is unavailable: connecting to …: …"
/// (a cause that its error's message already ends with is not said twice).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

fn usage(flag: &str) -> ! {
    eprintln!("bad or incomplete flag {flag:?}\n{USAGE}");
    std::process::exit(2)
}

/// The demo credentials: `(how to send it, tenant, principal)`.
pub fn demo_credentials() -> StaticCredentials {
    let acme = TenantId::new("acme").unwrap();
    let globex = TenantId::new("globex").unwrap();
    StaticCredentials::new()
        .bearer("demo-acme", Principal::new(acme.clone(), "demo-acme"))
        .bearer("demo-globex", Principal::new(globex.clone(), "demo-globex"))
        .bearer(
            "demo-acme-readonly",
            Principal::new(acme.clone(), "demo-acme-readonly").read_only(),
        )
        .bearer(
            "demo-acme-admin",
            Principal::new(acme.clone(), "demo-acme-admin").with_scope(Scope::Admin),
        )
        .bearer(
            "demo-globex-admin",
            Principal::new(globex, "demo-globex-admin").with_scope(Scope::Admin),
        )
        .bearer(
            "demo-operator",
            Principal::new(acme.clone(), "demo-operator")
                .with_scope(Scope::Admin)
                .with_scope(Scope::Operator),
        )
        .basic("acme-key", "acme-secret", Principal::new(acme, "acme-key"))
}

/// The dashboard of the demo: `acme-key:acme-secret` sees tenant `acme` and may cancel,
/// `ops:ops-secret` sees every tenant and may take every action.
#[cfg(feature = "dashboard")]
pub fn demo_dashboard(engine: jobworks::Engine) -> axum::Router {
    use jobworks::Tenants;
    use jobworks::dashboard::{Action, BasicLogins, Dashboard, Viewer};
    let acme = TenantId::new("acme").unwrap();
    let logins = BasicLogins::new()
        .login(
            "acme-key",
            "acme-secret",
            Viewer::new("acme-key", Tenants::only([acme])).may(Action::Cancel),
        )
        .login(
            "ops",
            "ops-secret",
            Viewer::new("ops", Tenants::All).may_do_everything(),
        );
    Dashboard::new(engine, logins).router()
}

/// Prints the demo credentials.
pub fn print_credentials() {
    println!("credentials:");
    println!("  Authorization: Bearer demo-acme            tenant acme, read and write");
    println!("  Authorization: Bearer demo-globex          tenant globex, read and write");
    println!("  Authorization: Bearer demo-acme-readonly   tenant acme, read only");
    println!("  Authorization: Bearer demo-acme-admin      tenant acme, read, write and admin");
    println!("  Authorization: Bearer demo-globex-admin    tenant globex, read, write and admin");
    println!("  Authorization: Bearer demo-operator        tenant acme, every scope (queues too)");
    println!("  Basic acme-key:acme-secret (curl -u)       tenant acme, read and write");
}

#[derive(Deserialize)]
struct Sleep {
    ms: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Flaky {
    fail_times: u32,
    permanent: bool,
}

/// An engine builder with the demo job types: ECHO, SLEEP, FLAKY and RENDER.
pub fn demo_engine(
    options: &Options,
    store: Arc<dyn JobStore>,
    artifacts: ObjectStoreArtifacts,
) -> EngineBuilder {
    let mut builder = Engine::builder()
        .store(store)
        .artifacts(artifacts)
        .retry_policy(options.retry());
    for (name, slots) in &options.queues {
        builder = builder.queue(name, *slots);
    }
    if let Some(n) = options.tenant_quota {
        builder = builder.tenant_quota(jobworks::Quota::unfinished(n));
    }
    builder
        .executor(
            "ECHO",
            from_fn(|_ctx: JobContext, input: Value| async move { Ok::<_, JobError>(input) }),
        )
        .executor("SLEEP", from_fn(sleep))
        .executor("FLAKY", from_fn(flaky))
        .executor("RENDER", from_fn(render))
}

/// Sleeps `ms` in ten steps, reporting progress and stopping when cancelled.
async fn sleep(ctx: JobContext, input: Sleep) -> Result<Value, JobError> {
    let step = Duration::from_millis(input.ms / 10);
    for i in 1..=10u32 {
        tokio::select! {
            _ = ctx.cancelled() => return Err(JobError::cancelled()),
            _ = tokio::time::sleep(step) => {}
        }
        ctx.progress(f64::from(i) / 10.0, format!("{}0 %", i))
            .await?;
    }
    Ok(json!({ "slept_ms": input.ms }))
}

/// Fails its first `fail_times` attempts (retryably), or at once for good with `permanent`.
async fn flaky(ctx: JobContext, input: Flaky) -> Result<Value, JobError> {
    if input.permanent {
        return Err(JobError::fail("asked to fail permanently"));
    }
    if ctx.attempt() <= input.fail_times {
        return Err(JobError::retry(format!(
            "attempt {} fails on purpose",
            ctx.attempt()
        )));
    }
    Ok(json!({ "succeeded_on_attempt": ctx.attempt() }))
}

/// Two stages; an intermediate draft and a final text artifact.
async fn render(ctx: JobContext, input: Value) -> Result<Value, JobError> {
    ctx.stage("drafting").await?;
    let draft = format!("draft of {input}\n");
    ctx.put_artifact(
        ArtifactSpec::new("draft.txt", "text/plain")
            .kind("draft")
            .intermediate(),
        draft,
    )
    .await?;
    ctx.stage("rendering").await?;
    let text = format!("rendered {input}\n");
    ctx.put_artifact(
        ArtifactSpec::new("output.txt", "text/plain").kind("render"),
        text.clone(),
    )
    .await?;
    Ok(json!({ "bytes": text.len() }))
}

/// Serves `app` on the flags' address with the serving limits of the contract (timeouts
/// for slow clients, connection caps, trusted proxies) until Ctrl-C, then shuts the
/// engine down.
pub async fn serve(options: &Options, app: axum::Router, engine: Engine) {
    let listener = tokio::net::TcpListener::bind(&options.addr)
        .await
        .unwrap_or_else(|e| {
            eprintln!("cannot listen on {}: {e}", options.addr);
            std::process::exit(1)
        });
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    jobworks::http::Server::new()
        .trusted_proxies(options.trusted_proxies.iter().copied())
        .serve_with_shutdown(listener, app, shutdown)
        .await
        .expect("server");
    engine.shutdown().await;
}

/// Sends a request to `app` in process as the bearer `token`, with `body` as JSON, and
/// answers the status and the JSON body (`null` when empty): for the examples' tests.
#[cfg(test)]
pub async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (axum::http::StatusCode, Value) {
    use axum::body::Body;
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_of_a_postgres_store_name_the_url() {
        let url = "postgres://app:pw@db:5432/jobs";
        assert_eq!(postgres_url(url), url);
        assert_eq!(postgres_url(&format!("postgres:{url}")), url);
        assert_eq!(
            postgres_url("postgresql:postgresql://h/d"),
            "postgresql://h/d"
        );
    }

    #[test]
    fn passwords_are_never_printed() {
        assert_eq!(
            redacted("postgres:postgres://app:s3cret@db:5432/jobs"),
            "postgres:postgres://app:***@db:5432/jobs"
        );
        assert_eq!(redacted("postgres://app@db/jobs"), "postgres://app@db/jobs");
        assert_eq!(redacted("sqlite:data/jobs.db"), "sqlite:data/jobs.db");
    }
}
