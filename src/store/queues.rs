//! Queue settings: stored per queue, shared by every tenant and obeyed by every engine on
//! the store.

use crate::job::QueueName;

/// A queue's stored settings. A queue without stored settings has the defaults: not
/// paused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueSettings {
    /// Not claimed from while set: submits are accepted and running jobs finish.
    pub paused: bool,
}

/// A change to a queue's settings: what is left `None` keeps its value.
///
/// ```
/// use jobworks::{QueuePatch, QueueSettings};
/// let mut settings = QueueSettings::default();
/// QueuePatch::default().paused(true).apply(&mut settings);
/// assert!(settings.paused);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuePatch {
    /// Pauses (`true`) or resumes (`false`) the queue.
    pub paused: Option<bool>,
}

impl QueuePatch {
    /// Pauses or resumes the queue.
    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = Some(paused);
        self
    }

    /// Applies the change to `settings`.
    pub fn apply(&self, settings: &mut QueueSettings) {
        if let Some(paused) = self.paused {
            settings.paused = paused;
        }
    }

    /// Whether the change may let more jobs be claimed (idle engines are then woken).
    pub fn may_free_work(&self) -> bool {
        self.paused == Some(false)
    }
}

/// A queue and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// Its name.
    pub name: QueueName,
    /// Its stored settings.
    pub settings: QueueSettings,
}

/// A queue as operators see it: its settings and how many jobs it holds, across tenants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Its name.
    pub name: QueueName,
    /// Its stored settings (the defaults when none are stored).
    pub settings: QueueSettings,
    /// Its jobs by status, summed over every tenant.
    pub counts: super::QueueStats,
}
