//! [`JobStatus`] and the one table of legal transitions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
///
/// ```text
///  waiting ──last parent completed──▶ queued        (workflows only)
///  waiting ──a parent failed / cancel──▶ cancelled
///  queued ──claim──▶ running ──ok──────────▶ completed
///    ▲                 │ ├──permanent error / attempts exhausted──▶ failed
///    │                 │ └──cancel honoured──▶ cancelled
///    └──retry / snooze / lease expired (attempts left)┘
///  queued ──cancel──▶ cancelled
///  failed, cancelled ──operator retry──▶ queued   (a fresh attempt budget)
///  cancelled ──its failed parent retried──▶ waiting   (workflows only)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// A workflow's job whose parents have not all completed. It becomes `queued` when
    /// the last one completes (in the same step), and `cancelled` when one fails or is
    /// cancelled, unless it runs whatever its parents do. Never claimed.
    Waiting,
    /// Waiting to be claimed. Jobs enter it when submitted, when an attempt fails with
    /// attempts left (with a later not-before time), when their lease expires with attempts
    /// left, and when a worker shutting down hands them back. They leave it when a worker
    /// claims them or when they are cancelled.
    Queued,
    /// Claimed by a worker that holds its lease. It leaves when the worker records an
    /// outcome, or when the lease expires and the reaper requeues or fails it.
    Running,
    /// The executor succeeded and its result is recorded. Terminal.
    Completed,
    /// The executor failed permanently or the attempts ran out. Terminal: only an
    /// operator's retry queues it again.
    Failed,
    /// Cancelled while queued, or while running once the executor honoured it. Terminal:
    /// only an operator's retry queues it again.
    Cancelled,
}

impl JobStatus {
    /// Every status, for tests and tables.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Waiting,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// Whether the status never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// The lowercase name used on the wire and in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Waiting => "waiting",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether `from → to` is a legal move. This is the only table of legal moves.
    pub fn can_transition(from: JobStatus, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (from, to),
            (Waiting, Queued)
                | (Waiting, Cancelled)
                | (Queued, Running)
                | (Queued, Cancelled)
                | (Running, Queued)
                | (Running, Completed)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Failed, Queued)
                | (Cancelled, Queued)
                | (Cancelled, Waiting)
        )
    }

    /// Checks the move `self → to`.
    ///
    /// # Errors
    /// [`InvalidTransition`] when the table does not allow it.
    pub fn transition(self, to: JobStatus) -> Result<JobStatus, InvalidTransition> {
        if Self::can_transition(self, to) {
            Ok(to)
        } else {
            Err(InvalidTransition { from: self, to })
        }
    }
}

/// A move the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a job cannot go from {from} to {to}")]
pub struct InvalidTransition {
    /// The current status.
    pub from: JobStatus,
    /// The requested status.
    pub to: JobStatus,
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of the six status names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct ParseStatusError(pub String);

impl FromStr for JobStatus {
    type Err = ParseStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseStatusError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::{self, *};

    #[test]
    fn transition_table_is_exactly_the_design() {
        let legal = [
            (Waiting, Queued),
            (Waiting, Cancelled),
            (Queued, Running),
            (Queued, Cancelled),
            (Running, Queued),
            (Running, Completed),
            (Running, Failed),
            (Running, Cancelled),
            (Failed, Queued),
            (Cancelled, Queued),
            (Cancelled, Waiting),
        ];
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(
                    JobStatus::can_transition(from, to),
                    expected,
                    "{from} -> {to}"
                );
                assert_eq!(from.transition(to).is_ok(), expected);
            }
        }
    }

    #[test]
    fn terminal_states_leave_only_by_an_operators_retry() {
        // A failed job goes back to the queue; a cancelled one too, or back to waiting
        // when the parent whose failure cancelled it is retried.
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            let ways: Vec<JobStatus> = JobStatus::ALL
                .into_iter()
                .filter(|&to| JobStatus::can_transition(from, to))
                .collect();
            let expected: &[JobStatus] = match from {
                Completed => &[],
                Failed => &[Queued],
                _ => &[Waiting, Queued],
            };
            assert_eq!(ways, expected, "{from}");
        }
    }

    #[test]
    fn names_round_trip() {
        for st in JobStatus::ALL {
            assert_eq!(st.as_str().parse::<JobStatus>().unwrap(), st);
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
        assert!("done".parse::<JobStatus>().is_err());
    }
}
