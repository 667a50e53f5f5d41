//! Timeline events.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The job was submitted, or its parents let it run.
    Queued,
    /// A workflow's job was submitted to wait for its parents, or returned to waiting
    /// when the parent whose failure cancelled it was retried.
    Waiting,
    /// The last of its parents completed (or, for a job that runs anyway, ended): the job
    /// is queued.
    Unblocked,
    /// An attempt started (a worker claimed it).
    Started,
    /// The executor entered a named stage.
    Stage,
    /// The executor reported progress.
    Progress,
    /// The executor stored an artifact.
    Artifact,
    /// A custom event from the executor; the message names it.
    Custom,
    /// An attempt failed or its lease expired, and the job will run again.
    Retrying,
    /// Cancellation was asked for while the job ran.
    CancelRequested,
    /// A worker shutting down handed the job back without charging an attempt.
    Released,
    /// The executor asked to run the job again later, without charging the attempt.
    Snoozed,
    /// An operator acted on the job (retry, requeue, cancel); the payload names the
    /// action, the actor and the reason.
    Operator,
    /// The job completed. Terminal.
    Succeeded,
    /// The job failed. Terminal.
    Failed,
    /// The job was cancelled. Terminal.
    Cancelled,
}

impl EventKind {
    /// Every kind, for parsing and tests.
    pub const ALL: [EventKind; 16] = [
        EventKind::Queued,
        EventKind::Waiting,
        EventKind::Unblocked,
        EventKind::Started,
        EventKind::Stage,
        EventKind::Progress,
        EventKind::Artifact,
        EventKind::Custom,
        EventKind::Retrying,
        EventKind::CancelRequested,
        EventKind::Released,
        EventKind::Snoozed,
        EventKind::Operator,
        EventKind::Succeeded,
        EventKind::Failed,
        EventKind::Cancelled,
    ];

    /// The kind named `name` (its [`as_str`](Self::as_str) form).
    pub fn parse(name: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether this event ends a timeline.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EventKind::Succeeded | EventKind::Failed | EventKind::Cancelled
        )
    }

    /// The snake_case name used on the wire and in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Queued => "queued",
            EventKind::Waiting => "waiting",
            EventKind::Unblocked => "unblocked",
            EventKind::Started => "started",
            EventKind::Stage => "stage",
            EventKind::Progress => "progress",
            EventKind::Artifact => "artifact",
            EventKind::Custom => "custom",
            EventKind::Retrying => "retrying",
            EventKind::CancelRequested => "cancel_requested",
            EventKind::Released => "released",
            EventKind::Snoozed => "snoozed",
            EventKind::Operator => "operator",
            EventKind::Succeeded => "succeeded",
            EventKind::Failed => "failed",
            EventKind::Cancelled => "cancelled",
        }
    }
}

/// Who may see an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Shown to API clients.
    #[default]
    Public,
    /// Kept for operators; never crosses the HTTP boundary.
    Internal,
}

impl Visibility {
    /// The lowercase name used on the wire and in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Internal => "internal",
        }
    }

    /// The visibility named `name`.
    pub fn parse(name: &str) -> Option<Visibility> {
        [Visibility::Public, Visibility::Internal]
            .into_iter()
            .find(|v| v.as_str() == name)
    }
}

/// One entry of a job's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the timeline: 1, 2, 3, … with no gaps. The polling cursor.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// Who may see it.
    pub visibility: Visibility,
    /// A short human-readable message.
    pub message: Cow<'static, str>,
    /// Structured detail (cost, error detail, progress).
    pub payload: Option<Value>,
    /// Names of artifacts this event announces.
    pub artifacts: Vec<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// An event before the store numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// Who may see it.
    pub visibility: Visibility,
    /// A short human-readable message.
    pub message: Cow<'static, str>,
    /// Structured detail.
    pub payload: Option<Value>,
    /// Names of artifacts this event announces.
    pub artifacts: Vec<String>,
}

impl NewEvent {
    /// A public event with a message and nothing else.
    pub fn new(kind: EventKind, message: impl Into<Cow<'static, str>>) -> Self {
        NewEvent {
            kind,
            visibility: Visibility::Public,
            message: message.into(),
            payload: None,
            artifacts: Vec::new(),
        }
    }

    /// Adds a payload.
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Makes the event internal.
    pub fn internal(mut self) -> Self {
        self.visibility = Visibility::Internal;
        self
    }

    /// Numbers the event: what a store does when it appends it.
    pub fn into_event(self, seq: u64, at: DateTime<Utc>) -> Event {
        Event {
            seq,
            kind: self.kind,
            visibility: self.visibility,
            message: self.message,
            payload: self.payload,
            artifacts: self.artifacts,
            created_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for vis in [Visibility::Public, Visibility::Internal] {
            assert_eq!(Visibility::parse(vis.as_str()), Some(vis));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }
}
