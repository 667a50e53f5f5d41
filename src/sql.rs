//! Helpers shared by the SQL backends.

#[cfg(feature = "sqlite")]
use chrono::{DateTime, Utc};

use crate::{Error, JobStatus};

#[cfg(feature = "postgres")]
/// Maps a driver error: connection trouble is [`Error::Unavailable`], the rest
/// [`Error::Backend`].
pub(crate) fn db_error(backend: &'static str, e: sqlx::Error) -> Error {
    let unavailable = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // SQLite: busy, locked. PostgreSQL: connection exceptions, admin shutdown,
            // crash recovery, too many connections.
            matches!(code, "5" | "6" | "517" | "261" | "262")
                || code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
        }
        _ => false,
    };
    if unavailable {
        Error::Unavailable {
            backend,
            source: Box::new(e),
        }
    } else {
        Error::Backend {
            backend,
            source: Box::new(e),
        }
    }
}

/// A corrupt or unexpected value read from the database.
pub(crate) fn corrupt(backend: &'static str, what: impl Into<String>) -> Error {
    Error::Backend {
        backend,
        source: what.into().into(),
    }
}

/// SQLite keeps times as microseconds since the Unix epoch.
#[cfg(feature = "sqlite")]
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

#[cfg(feature = "sqlite")]
pub(crate) fn from_micros(backend: &'static str, us: i64) -> Result<DateTime<Utc>, Error> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| corrupt(backend, format!("time {us} out of range")))
}

pub(crate) fn status(backend: &'static str, s: &str) -> Result<JobStatus, Error> {
    s.parse()
        .map_err(|_| corrupt(backend, format!("unknown status {s:?}")))
}

pub(crate) fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("JSON values serialise")
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    backend: &'static str,
    s: &str,
) -> Result<T, Error> {
    serde_json::from_str(s).map_err(|e| corrupt(backend, format!("bad JSON in a column: {e}")))
}
