//! [`JobContext`]: what a running attempt sees and writes, every write under its lease.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::error::{JobError, without_type_names};
use crate::Result;
use crate::artifact::{ArtifactKey, ArtifactName, ArtifactStore, ByteStream, StoredObject};
use crate::job::{
    Artifact, ArtifactRole, Event, EventKind, Job, JobId, JobStatus, JobType, NewEvent, Progress,
    TenantId,
};
use crate::store::{Append, Held, JobStore};

/// What an artifact is, for [`JobContext::put_artifact`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ArtifactSpec {
    /// Safe relative name, unique within the job.
    pub name: String,
    /// What it is (`report_pdf`); `file` by default.
    pub kind: String,
    /// Final by default.
    pub role: ArtifactRole,
    /// Its MIME type.
    pub content_type: String,
    /// Free metadata; `{}` by default.
    pub metadata: Value,
}

impl ArtifactSpec {
    /// A final artifact named `name` of type `content_type`.
    pub fn new(name: impl Into<String>, content_type: impl Into<String>) -> Self {
        ArtifactSpec {
            name: name.into(),
            kind: "file".to_owned(),
            role: ArtifactRole::Final,
            content_type: content_type.into(),
            metadata: Value::Object(Default::default()),
        }
    }
    /// Sets the kind.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }
    /// Marks it intermediate.
    pub fn intermediate(mut self) -> Self {
        self.role = ArtifactRole::Intermediate;
        self
    }
    /// Sets the metadata.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// One parent of a workflow's job and how it ended, from [`JobContext::parents`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ParentOutcome {
    /// Its key in the workflow.
    pub key: String,
    /// Its id.
    pub id: JobId,
    /// Its status: terminal, unless an operator retried it meanwhile.
    pub status: JobStatus,
    /// Its result, when it completed.
    pub result: Option<Value>,
    /// Its error, when it failed.
    pub error: Option<String>,
}

/// What an executor gets: the job, its input, and fenced ways to report.
///
/// Every report is written under the attempt's lease: once the lease is lost they fail
/// with [`Error::LeaseLost`](crate::Error::LeaseLost). Cloning is cheap.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    job: Job,
    held: Held,
    store: Arc<dyn JobStore>,
    artifacts: Arc<dyn ArtifactStore>,
    cancel: CancellationToken,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.inner.job.id)
            .field("type", &self.inner.job.job_type)
            .field("attempt", &self.inner.job.attempts)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    pub(crate) fn new(
        job: Job,
        held: Held,
        store: Arc<dyn JobStore>,
        artifacts: Arc<dyn ArtifactStore>,
        cancel: CancellationToken,
    ) -> Self {
        JobContext {
            inner: Arc::new(ContextInner {
                job,
                held,
                store,
                artifacts,
                cancel,
            }),
        }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.inner.job.id
    }

    /// The owning tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.inner.job.tenant
    }

    /// The job's type.
    pub fn job_type(&self) -> &JobType {
        &self.inner.job.job_type
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.job.attempts
    }

    /// How many attempts the job may have.
    pub fn max_attempts(&self) -> u32 {
        self.inner.job.max_attempts
    }

    /// The job as it was claimed.
    pub fn job(&self) -> &Job {
        &self.inner.job
    }

    /// The trace context the job was submitted under, if any: what to send on as
    /// `traceparent` when the executor calls another service.
    pub fn trace(&self) -> Option<&crate::TraceContext> {
        self.inner.job.trace.as_ref()
    }

    /// The raw JSON input.
    pub fn raw_input(&self) -> &Value {
        &self.inner.job.input
    }

    /// The input as `I`.
    ///
    /// # Errors
    /// A permanent [`JobError`] naming what did not fit: retrying cannot fix the input.
    pub fn input<I: DeserializeOwned>(&self) -> Result<I, JobError> {
        I::deserialize(&self.inner.job.input).map_err(|e| {
            JobError::fail(format!(
                "the input does not fit job type {}: {}",
                self.inner.job.job_type,
                without_type_names(&e.to_string())
            ))
        })
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes when cancellation is requested: `select!` on it beside the work.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.inner.cancel.cancelled()
    }

    /// The job's parents in its workflow with their outcomes, in the order of its
    /// `depends_on` (a finalizer's parents are every other job of the workflow); empty
    /// outside workflows. Parents purged meanwhile are left out.
    ///
    /// # Errors
    /// A store error.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn parents(&self) -> Result<Vec<ParentOutcome>> {
        let job = &self.inner.job;
        if job.parents.is_empty() {
            return Ok(Vec::new());
        }
        let mut found: std::collections::HashMap<JobId, Job> = self
            .inner
            .store
            .load(Some(&job.tenant), &job.parents)
            .await?
            .into_iter()
            .map(|s| (s.job.id, *s.job))
            .collect();
        Ok(job
            .parents
            .iter()
            .filter_map(|id| found.remove(id))
            .map(|p| ParentOutcome {
                key: p.workflow.map(|l| l.key).unwrap_or_default(),
                id: p.id,
                status: p.status,
                result: p.result,
                error: p.error,
            })
            .collect())
    }

    /// The result of the parent with `key`, as `T`: what a step reads of the steps before
    /// it.
    ///
    /// # Errors
    /// A permanent [`JobError`] when the job has no completed parent with that key or its
    /// result does not fit `T`; a store error as [`JobError`]'s conversion says.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn parent_result<T: DeserializeOwned>(&self, key: &str) -> Result<T, JobError> {
        let parent = self
            .parents()
            .await?
            .into_iter()
            .find(|p| p.key == key)
            .ok_or_else(|| JobError::fail(format!("the job has no parent with the key {key:?}")))?;
        let result = match (parent.status, parent.result) {
            (JobStatus::Completed, Some(result)) => result,
            (status, _) => {
                return Err(JobError::fail(format!(
                    "parent {key:?} is {status}, not completed"
                )));
            }
        };
        T::deserialize(result).map_err(|e| {
            JobError::fail(format!(
                "the result of parent {key:?} does not fit: {}",
                without_type_names(&e.to_string())
            ))
        })
    }

    /// The attempt's own copy of the job's record, for its writes.
    pub(crate) fn held(&self) -> &Held {
        &self.inner.held
    }

    /// The store the attempt writes to.
    pub(crate) fn store(&self) -> &dyn JobStore {
        &*self.inner.store
    }

    /// Appends an event to the timeline.
    ///
    /// # Errors
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) when this attempt lost the job, or
    /// a store error.
    ///
    /// # Cancel safety
    /// The event is written or not; dropping the future leaves no half-written event.
    pub async fn append(&self, append: Append) -> Result<Event> {
        self.inner.held.append(&*self.inner.store, append).await
    }

    /// Records that the job entered a stage (`resolving data`, `rendering`).
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub async fn stage(&self, name: impl Into<Cow<'static, str>>) -> Result<Event> {
        self.append(Append::event(NewEvent::new(EventKind::Stage, name)))
            .await
    }

    /// Reports progress: `fraction` from 0.0 to 1.0 (clamped) and a message.
    ///
    /// # Errors
    /// [`Error::Invalid`](crate::Error::Invalid) for a NaN fraction; else as
    /// [`append`](Self::append).
    pub async fn progress(&self, fraction: f64, message: impl Into<String>) -> Result<Event> {
        if fraction.is_nan() {
            return Err(crate::Error::invalid(
                "progress",
                "fraction is not a number",
            ));
        }
        let progress = Progress {
            fraction: fraction.clamp(0.0, 1.0),
            message: message.into(),
        };
        let event = NewEvent::new(EventKind::Progress, progress.message.clone())
            .with_payload(serde_json::json!({ "fraction": progress.fraction }));
        self.append(Append::event(event).with_progress(progress))
            .await
    }

    /// Appends a custom event named `name` with a JSON payload.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub async fn event(&self, name: impl Into<Cow<'static, str>>, payload: Value) -> Result<Event> {
        self.append(Append::event(
            NewEvent::new(EventKind::Custom, name).with_payload(payload),
        ))
        .await
    }

    /// Stores an artifact's bytes and records it on the job.
    ///
    /// # Errors
    /// [`Error::Invalid`](crate::Error::Invalid) for an unsafe name, a storage error, or
    /// as [`append`](Self::append).
    pub async fn put_artifact(
        &self,
        spec: ArtifactSpec,
        data: impl Into<Bytes>,
    ) -> Result<Artifact> {
        let key = self.key(&spec.name)?;
        let stored = self.inner.artifacts.put(&key, data.into()).await?;
        self.record_artifact(spec, &key, stored).await
    }

    /// Stores an artifact from a stream (in parts when large) and records it.
    ///
    /// # Errors
    /// As [`put_artifact`](Self::put_artifact).
    pub async fn put_artifact_stream(
        &self,
        spec: ArtifactSpec,
        data: ByteStream,
    ) -> Result<Artifact> {
        let key = self.key(&spec.name)?;
        let stored = self.inner.artifacts.put_stream(&key, data).await?;
        self.record_artifact(spec, &key, stored).await
    }

    /// Where this attempt keeps an artifact's bytes: in its own folder, so that no other
    /// attempt (a stalled one that lost its lease, say) can ever replace them.
    fn key(&self, name: &str) -> Result<ArtifactKey> {
        let key = ArtifactKey::new(self.tenant().clone(), self.id(), ArtifactName::new(name)?);
        Ok(key.of_attempt(self.attempt()))
    }

    /// Records bytes stored under `key` on the job, under the lease. When the record is
    /// refused (the lease is lost), the bytes are garbage unless an earlier record of this
    /// attempt names them: they are deleted (and if that fails, they go with the job when
    /// it is purged).
    async fn record_artifact(
        &self,
        spec: ArtifactSpec,
        key: &ArtifactKey,
        stored: StoredObject,
    ) -> Result<Artifact> {
        let refused = match self.try_record(spec, key.attempt, stored).await {
            Err(e) => e,
            recorded => return recorded,
        };
        let named = match self.inner.store.get(self.tenant(), self.id()).await {
            Ok(job) => job
                .artifacts
                .iter()
                .any(|a| a.attempt == key.attempt && a.name == key.name.as_str()),
            Err(_) => true,
        };
        if !named && let Err(e) = self.inner.artifacts.delete(key).await {
            tracing::warn!(error = %e, "could not delete unrecorded artifact bytes");
        }
        Err(refused)
    }

    async fn try_record(
        &self,
        spec: ArtifactSpec,
        attempt: u32,
        stored: StoredObject,
    ) -> Result<Artifact> {
        let artifact = Artifact {
            name: spec.name,
            kind: spec.kind,
            role: spec.role,
            content_type: spec.content_type,
            size_bytes: stored.size,
            checksum: stored.checksum,
            metadata: spec.metadata,
            created_at: crate::job::now(),
            attempt,
        };
        let mut event = NewEvent::new(EventKind::Artifact, format!("stored {}", artifact.name));
        event.artifacts.push(artifact.name.clone());
        self.append(Append::event(event).with_artifact(artifact.clone()))
            .await?;
        Ok(artifact)
    }
}
