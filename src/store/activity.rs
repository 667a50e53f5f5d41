//! What the store says about the service's activity: which engines are alive (each
//! started engine beats every few seconds) and how many jobs finished each minute.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An engine that told the store it is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineBeat {
    /// A fresh id per started engine.
    pub id: String,
    /// The machine it runs on, as its host name says (or `unknown`).
    pub host: String,
    /// Its process.
    pub pid: u32,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last beat (the store's clock).
    pub seen_at: DateTime<Utc>,
}

/// How many jobs reached `completed` and `failed` in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCounts {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Jobs that completed in it.
    pub completed: u64,
    /// Jobs that failed for good in it.
    pub failed: u64,
}

/// How long an engine's beat counts as alive: three beats.
pub const ENGINE_ALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// How often a started engine beats.
pub const ENGINE_BEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// Beats older than this are deleted by the next beat.
pub const ENGINE_FORGET: std::time::Duration = std::time::Duration::from_secs(3600);

/// How far back [`ENGINE_FORGET`] reaches, as a span of the store's clock.
pub(crate) fn forget_before() -> chrono::Duration {
    chrono::Duration::seconds(ENGINE_FORGET.as_secs() as i64)
}

/// The minute `at` falls in.
pub(crate) fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    let secs = at.timestamp().div_euclid(60) * 60;
    DateTime::from_timestamp(secs, 0).unwrap_or(at)
}
