//! [`JobError`]: why an attempt failed, and whether to try again.

use std::fmt;
use std::time::Duration;

/// Why an attempt failed, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    kind: JobErrorKind,
    message: String,
}

/// What a [`JobError`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobErrorKind {
    /// Retry after the policy's backoff, if attempts are left.
    Retry,
    /// Retry after this delay, if attempts are left.
    RetryAfter(Duration),
    /// Fail the job now.
    Fail,
    /// The executor stopped because cancellation was requested.
    Cancelled,
    /// Not now: queue the job again after this delay without charging the attempt.
    Snooze(Duration),
}

impl JobError {
    /// A transient failure: retry by the policy.
    pub fn retry(message: impl fmt::Display) -> Self {
        Self::new(JobErrorKind::Retry, message)
    }

    /// A transient failure: retry no sooner than `delay` from now.
    pub fn retry_after(message: impl fmt::Display, delay: Duration) -> Self {
        Self::new(JobErrorKind::RetryAfter(delay), message)
    }

    /// A permanent failure: do not retry.
    pub fn fail(message: impl fmt::Display) -> Self {
        Self::new(JobErrorKind::Fail, message)
    }

    /// Not now: the job goes back to its queue and runs again no sooner than `delay`
    /// from now, and the attempt is not charged (a provider that throttles, a resource
    /// not ready yet). The timeline's `snoozed` event gives the delay.
    ///
    /// ```
    /// use std::time::Duration;
    /// use jobworks::{JobError, JobErrorKind};
    /// let e = JobError::snooze(Duration::from_secs(30));
    /// assert_eq!(e.kind(), JobErrorKind::Snooze(Duration::from_secs(30)));
    /// assert!(!e.is_retryable());
    /// ```
    pub fn snooze(delay: Duration) -> Self {
        Self::new(JobErrorKind::Snooze(delay), "snoozed")
    }

    /// [`snooze`](Self::snooze), saying why on the timeline.
    pub fn snooze_because(reason: impl fmt::Display, delay: Duration) -> Self {
        Self::new(JobErrorKind::Snooze(delay), reason)
    }

    /// The executor honoured a cancellation request.
    pub fn cancelled() -> Self {
        Self::new(JobErrorKind::Cancelled, "cancelled")
    }

    fn new(kind: JobErrorKind, message: impl fmt::Display) -> Self {
        JobError {
            kind,
            message: message.to_string(),
        }
    }

    /// What the error asks for.
    pub fn kind(&self) -> JobErrorKind {
        self.kind
    }

    /// The message recorded on the job.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether another attempt may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, JobErrorKind::Retry | JobErrorKind::RetryAfter(_))
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

/// Engine errors inside an executor (`?` on [`JobContext::put_artifact`](super::JobContext::put_artifact), say) fail the
/// attempt. They are retried when another attempt may succeed (a lost lease, an
/// unreachable or failing store, a shutdown) and fail the job for good when it cannot (an
/// invalid artifact name, an unknown job type, an unsupported operation, a conflict).
impl From<crate::Error> for JobError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        match e {
            E::Invalid { .. }
            | E::UnknownJobType { .. }
            | E::Unsupported { .. }
            | E::AlreadyExists { .. }
            | E::NotFound { .. }
            | E::ArtifactNotFound { .. }
            | E::InvalidTransition { .. }
            | E::Conflict { .. } => JobError::fail(e),
            _ => JobError::retry(e),
        }
    }
}

/// A serde message without Rust type names, which mean nothing to whoever submitted the
/// job: `expected struct Sleep` becomes `expected an object`.
pub(super) fn without_type_names(message: &str) -> String {
    const PHRASES: [(&str, &str); 5] = [
        ("tuple struct ", "a list"),
        ("newtype struct ", "a value"),
        ("unit struct ", "null"),
        ("struct ", "an object"),
        ("enum ", "one of its values"),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("expected ") {
        let after = at + "expected ".len();
        out.push_str(&rest[..after]);
        rest = &rest[after..];
        if let Some((phrase, plain)) = PHRASES.iter().find(|(p, _)| rest.starts_with(p)) {
            let name = &rest[phrase.len()..];
            let is_name = |c: char| c.is_alphanumeric() || "_:<>".contains(c);
            let end = name.find(|c| !is_name(c)).unwrap_or(name.len());
            out.push_str(plain);
            rest = &name[end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_name_no_rust_types() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Sleep {
            ms: u64,
        }
        let e = serde_json::from_value::<Sleep>(serde_json::json!("soon")).unwrap_err();
        assert_eq!(
            without_type_names(&e.to_string()),
            "invalid type: string \"soon\", expected an object"
        );
        let e = serde_json::from_value::<Sleep>(serde_json::json!({"ms": "soon"})).unwrap_err();
        assert_eq!(
            without_type_names(&e.to_string()),
            "invalid type: string \"soon\", expected u64"
        );
        assert_eq!(
            without_type_names("expected enum Mode or expected tuple struct a::B<C>, sadly"),
            "expected one of its values or expected a list, sadly"
        );
    }

    #[test]
    fn engine_errors_retry_only_when_retrying_can_help() {
        let id = crate::JobId::new();
        let permanent = [
            crate::Error::invalid("artifact name", "must not contain .."),
            crate::Error::NotFound { id },
            crate::Error::Unsupported {
                operation: "streams",
                backend: "test",
            },
        ];
        for e in permanent {
            assert!(!JobError::from(e).is_retryable());
        }
        let transient = [
            crate::Error::LeaseLost { id },
            crate::Error::ShuttingDown,
            crate::Error::Unavailable {
                backend: "test",
                source: "down".into(),
            },
        ];
        for e in transient {
            assert!(JobError::from(e).is_retryable());
        }
    }
}
