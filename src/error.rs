//! The crate's error type.

use std::borrow::Cow;

use crate::job::{JobId, JobStatus};

/// A boxed error, used as the source of backend failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to the engine or a store.
///
/// Each variant is something a caller can act on. Job *failures* are not errors of this
/// type: an executor reports them with [`JobError`](crate::JobError).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job does not exist, or belongs to another tenant (the two are indistinguishable).
    #[error("job {id} not found")]
    NotFound {
        /// The id that was asked for.
        id: JobId,
    },
    /// An idempotency key was reused with a different job type or input.
    #[error("idempotency key already used by job {id} with a different type or input")]
    AlreadyExists {
        /// The job that holds the key.
        id: JobId,
    },
    /// The job is not in a state that allows the requested change.
    #[error("job {id} cannot go from {from} to {to}")]
    InvalidTransition {
        /// The job.
        id: JobId,
        /// Its current status.
        from: JobStatus,
        /// The status that was requested.
        to: JobStatus,
    },
    /// A submit would leave a tenant with more unfinished jobs than its quota allows;
    /// nothing was created.
    #[error("tenant {tenant} is at its quota of {limit} unfinished jobs{}", in_queue(.queue))]
    QuotaExceeded {
        /// The tenant.
        tenant: crate::TenantId,
        /// Its quota of unfinished (queued or running) jobs.
        limit: u64,
        /// The queue the quota counts in (`None`: all queues).
        queue: Option<crate::QueueName>,
    },
    /// The job cannot be changed that way now (discarding a job that has not finished).
    #[error("job {id}: {reason}")]
    Conflict {
        /// The job.
        id: JobId,
        /// Why, for the caller.
        reason: Cow<'static, str>,
    },
    /// A worker wrote about a job whose lease it no longer holds.
    #[error("lease on job {id} was lost")]
    LeaseLost {
        /// The job.
        id: JobId,
    },
    /// No executor is registered for the job type.
    #[error("unknown job type {job_type:?}")]
    UnknownJobType {
        /// The type that was submitted.
        job_type: String,
        /// The registered types, sorted.
        known: Vec<String>,
    },
    /// A caller-supplied value is invalid.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field, as the caller named it (`max_attempts`, `tenant`, `artifact name`).
        field: &'static str,
        /// What is wrong with it.
        message: Cow<'static, str>,
    },
    /// A value deep in a request is invalid: `path` leads to it from the request's top
    /// (`["jobs", "2", "depends_on", "0"]` for a workflow's third job's first parent).
    #[error("invalid {}: {message}", path.join("."))]
    InvalidAt {
        /// The way to the field, one name or index per step.
        path: Vec<String>,
        /// What is wrong with it.
        message: Cow<'static, str>,
    },
    /// A workflow does not exist (or belongs to another tenant).
    #[error("workflow {id} not found")]
    WorkflowNotFound {
        /// The workflow.
        id: crate::WorkflowId,
    },
    /// A schedule does not exist (or belongs to another tenant).
    #[error("schedule {id} not found")]
    ScheduleNotFound {
        /// The schedule.
        id: crate::ScheduleId,
    },
    /// An artifact does not exist.
    #[error("artifact {name:?} of job {id} not found")]
    ArtifactNotFound {
        /// The job.
        id: JobId,
        /// The artifact's name.
        name: String,
    },
    /// The operation is not supported by this backend.
    #[error("{operation} is not supported by {backend}")]
    Unsupported {
        /// What was attempted.
        operation: &'static str,
        /// The backend that refused it.
        backend: &'static str,
    },
    /// The engine is shutting down and takes no more work of this kind.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The backend cannot be reached right now; the call may succeed if retried.
    #[error("{backend} is unavailable")]
    Unavailable {
        /// The backend.
        backend: &'static str,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// Any other backend failure.
    #[error("{backend} failed")]
    Backend {
        /// The backend.
        backend: &'static str,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }

    /// [`Error::InvalidAt`] of `path` (each step written with `to_string`).
    pub(crate) fn at(path: &[&dyn ToString], message: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidAt {
            path: path.iter().map(|p| p.to_string()).collect(),
            message: message.into(),
        }
    }

    /// This error located under `prefix`: an [`Error::Invalid`] becomes an
    /// [`Error::InvalidAt`] of `prefix` and its field, an `InvalidAt` gets `prefix` in
    /// front; other errors are left alone.
    pub(crate) fn within(self, prefix: &[&dyn ToString]) -> Self {
        let prefix = prefix.iter().map(|p| p.to_string());
        match self {
            Error::Invalid { field, message } => Error::InvalidAt {
                path: prefix.chain([field.to_string()]).collect(),
                message,
            },
            Error::InvalidAt { path, message } => Error::InvalidAt {
                path: prefix.chain(path).collect(),
                message,
            },
            other => other,
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}

fn in_queue(queue: &Option<crate::QueueName>) -> String {
    queue
        .as_ref()
        .map_or_else(String::new, |q| format!(" in queue {q}"))
}

/// The segments of the path where deserialising failed: field names, and indexes as
/// numbers (`["filter", "severity", "0"]`).
#[cfg(feature = "reports")]
pub(crate) fn serde_path(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => Some(key.clone()),
            Segment::Unknown => None,
        })
        .collect()
}
