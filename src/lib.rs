//! # jobworks
//!
//! An embeddable job engine for Rust services: submit a job, answer `202` with its id, let
//! clients poll it and watch its timeline, and hand out its result as a short-lived signed
//! URL. A host links the crate, registers an [`Executor`] per job type and starts the
//! [`Engine`]'s workers.
//!
//! ```
//! use std::time::Duration;
//! use jobworks::{ArtifactSpec, Engine, JobContext, JobError, JobType, NewJob, TenantId, from_fn};
//!
//! #[derive(serde::Deserialize)]
//! struct Greet { name: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> jobworks::Result<()> {
//! let engine = Engine::builder()
//!     .executor("GREET", from_fn(|ctx: JobContext, input: Greet| async move {
//!         ctx.stage("writing").await?;
//!         let text = format!("hello, {}", input.name);
//!         ctx.put_artifact(ArtifactSpec::new("greeting.txt", "text/plain"), text).await?;
//!         Ok::<_, JobError>(serde_json::json!({ "greeted": input.name }))
//!     }))
//!     .build()?;
//! engine.start()?;
//!
//! let tenant = TenantId::new("acme")?;
//! let job = NewJob::new(JobType::new("GREET")?, serde_json::json!({ "name": "Ada" }));
//! let id = engine.submit(&tenant, job).await?.job.id;
//! let done = engine.wait_until_terminal(&tenant, id, Duration::from_secs(5)).await?;
//! assert_eq!(done.result, Some(serde_json::json!({ "greeted": "Ada" })));
//! let url = engine.signed_url(&tenant, id, "greeting.txt", None).await?;
//! println!("download until {}: {}", url.expires_at, url.url);
//! engine.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## The pieces
//!
//! - [`Engine`] submits, reads, lists, cancels and waits for jobs, and runs workers:
//!   batch claims, leases with heartbeats, per-type timeouts, retries with backoff
//!   ([`RetryPolicy`]), panics turned into failed attempts, graceful shutdown and a reaper.
//!   Every job waits in a queue ([`QueueName`], `default` unless it names one); an engine
//!   serves the queues its builder names, each with its own slots
//!   ([`EngineBuilder::queue`]), and obeys each queue's stored settings
//!   ([`Engine::pause_queue`], [`Engine::configure_queue`]: `max_running`,
//!   `max_running_per_key`, a rate limit). Claims take a queue's tenants in turn, and
//!   [`EngineBuilder::tenant_quota`] caps each tenant's unfinished jobs.
//! - [`Engine::submit_workflow`] submits a [`NewWorkflow`]: jobs with dependencies, which
//!   wait until their parents completed (unblocked in the same step), are skipped when a
//!   parent fails, and may end with a finalizer; [`JobContext::parent_result`] reads a
//!   parent's result by key, and [`Engine::workflow`] reads the graph back.
//! - [`Engine::create_schedule`] stores a [`NewSchedule`]: a cron expression in a time zone
//!   whose ticks every started engine turns into jobs, each tick exactly once whatever the
//!   number of engines; [`Engine::update_schedule`] pauses, resumes and changes it.
//! - [`Executor`] runs one job type with a [`JobContext`]: typed input, stages, progress,
//!   custom events, artifacts, and a cancellation signal. [`from_fn`] makes one from an
//!   async function.
//! - [`JobStore`] keeps jobs, timelines and leases: storage primitives only (insert, load,
//!   a guarded commit, a claim, reads). The state machine runs once above every store in
//!   [`JobStoreExt`], through the [`rules`]: every transition and its timeline event are one
//!   guarded commit, and every write about a running job is fenced by its [`Lease`].
//!   `docs/writing-a-store.md` and `examples/custom_store.rs` show a store of your own.
//! - [`ArtifactStore`] keeps artifact bytes; [`ObjectStoreArtifacts`] works over any
//!   `object_store` backend and signs download URLs (presigned, or HMAC tokens verified by
//!   [`UrlSigner`]).
#![cfg_attr(
    feature = "http",
    doc = "- [`http::JobsApi`] serves it all over HTTP: submit, poll with ETags and long polls, timelines, cancel, lists, signed downloads, an OpenAPI document (feature `http`); [`http::Server`] serves it with timeouts for slow clients and caps on connections."
)]
#![cfg_attr(
    feature = "reports",
    doc = "- [`report::Reports`] builds PDF reports as jobs from templates over the host's data (feature `reports`)."
)]
//!
//! ## Backends
//!
//! - [`MemoryStore`]: in process, the reference semantics; always available.
#![cfg_attr(
    feature = "sqlite",
    doc = "- [`SqliteStore`]: one file in WAL mode, the embedded default for a single machine (feature `sqlite`, on by default)."
)]
#![cfg_attr(
    not(feature = "sqlite"),
    doc = "- `SqliteStore`: one file in WAL mode, the embedded default for a single machine (feature `sqlite`, on by default)."
)]
#![cfg_attr(
    feature = "postgres",
    doc = "- [`PostgresStore`]: many workers on many machines share one database; `SKIP LOCKED` claims, `LISTEN/NOTIFY` wake-ups (feature `postgres`)."
)]
#![cfg_attr(
    not(feature = "postgres"),
    doc = "- `PostgresStore`: many workers on many machines share one database; `SKIP LOCKED` claims, `LISTEN/NOTIFY` wake-ups (feature `postgres`)."
)]
//!
//! Every backend passes the same conformance suite, `jobworks::testing` (feature
//! `testing`), which third-party stores can run too.
//!
//! ## Durability
//!
//! A job the store reported submitted or completed survives a crash of the process on the
//! SQLite and PostgreSQL backends. On power loss, SQLite in its default
//! `Synchronous::Normal` mode may lose the transactions since its last
//! checkpoint (the file stays consistent; `Synchronous::Full` waits for the disk on every
//! commit); PostgreSQL keeps what it committed per its own `synchronous_commit` setting,
//! except that claims commit without waiting for the disk (a claim lost that way only
//! means the job runs again).
//!
//! ## Features
//!
//! Every backend and adapter is behind a feature; items that need one say so on docs.rs.
//!
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod artifact;
mod clock;
#[cfg(feature = "dashboard")]
#[cfg_attr(docsrs, doc(cfg(feature = "dashboard")))]
pub mod dashboard;
mod engine;
mod error;
mod executor;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod job;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "reports")]
#[cfg_attr(docsrs, doc(cfg(feature = "reports")))]
pub mod report;
mod retry;
mod schedule;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
mod workflow;

pub use artifact::*;
pub use clock::Clock;
pub use engine::{
    Across, BulkAction, BulkReport, Engine, EngineBuilder, ExecutorOptions, JobFilter, MAX_BULK,
    Submitted, Tenants, observe,
};
pub use error::{BoxError, Error, Result};
pub use executor::{
    ArtifactSpec, Executor, FnExecutor, JobContext, JobError, JobErrorKind, ParentOutcome, from_fn,
};
pub use job::*;
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PostgresStore, PostgresStoreBuilder};
pub use retry::RetryPolicy;
pub use schedule::{
    DEFAULT_SCHEDULE_GRACE, MAX_CATCH_UP, MAX_CRON_LEN, MAX_SCHEDULE_NAME_LEN,
    MAX_SCHEDULES_PER_TENANT, Missed, NewSchedule, Schedule, ScheduleJob, SchedulePatch,
};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{SqliteStore, SqliteStoreBuilder, Synchronous};
pub use store::*;
pub use workflow::{
    FINALIZER_KEY, MAX_WORKFLOW_JOBS, MAX_WORKFLOW_KEY_LEN, NewWorkflow, Workflow, WorkflowJob,
    WorkflowNode, WorkflowStatus,
};

#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
