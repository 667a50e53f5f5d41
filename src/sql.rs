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

/// An embedded schema migration: its version, name and script.
pub(crate) type Migration = (i64, &'static str, &'static str);

/// The SHA-256 of a migration's script (line endings as `\n`), in hex: what
/// `jobworks_schema.checksum` keeps of each applied migration.
pub(crate) fn migration_checksum(script: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(script.replace("\r\n", "\n").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the migrations a database has applied (each version with its checksum, or none
/// when an older jobworks applied it) against `embedded`. Migrations are forward-only: an
/// applied one that this build changed, or one this build does not have (the database is
/// newer), is refused. Answers the checksums to record for those applied without one.
pub(crate) fn check_applied(
    backend: &'static str,
    embedded: &[Migration],
    applied: &[(i64, Option<String>)],
) -> crate::Result<Vec<(i64, String)>> {
    let refuse = |message: String| Error::Backend {
        backend,
        source: message.into(),
    };
    let mut missing = Vec::new();
    for (version, recorded) in applied {
        let Some(&(_, name, script)) = embedded.iter().find(|m| m.0 == *version) else {
            let latest = embedded.last().map_or(0, |m| m.0);
            return Err(refuse(format!(
                "the database is at schema version {version}, newer than this build's \
                 {latest}: run a jobworks that knows it"
            )));
        };
        let sum = migration_checksum(script);
        match recorded {
            None => missing.push((*version, sum)),
            Some(recorded) if *recorded == sum => {}
            Some(recorded) => {
                return Err(refuse(format!(
                    "migration {version} ({name}) was changed after it was applied \
                     (checksum {recorded} in the database, {sum} in this build); \
                     migrations are forward-only: add a new one instead"
                )));
            }
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    const EMBEDDED: &[Migration] = &[
        (1, "init", "CREATE TABLE a (x int);\n"),
        (2, "b", "SELECT 1;"),
    ];

    #[test]
    fn applied_migrations_must_match_this_build() {
        let sum = |i: usize| Some(migration_checksum(EMBEDDED[i].2));
        assert_eq!(
            check_applied("t", EMBEDDED, &[(1, sum(0)), (2, sum(1))]).unwrap(),
            []
        );
        // Line endings do not count.
        assert_eq!(
            migration_checksum("CREATE TABLE a (x int);\r\n"),
            sum(0).unwrap()
        );
        // Applied before checksums were kept: recorded now.
        let missing = check_applied("t", EMBEDDED, &[(1, None), (2, sum(1))]).unwrap();
        assert_eq!(missing, [(1, sum(0).unwrap())]);
        let changed = check_applied("t", EMBEDDED, &[(1, sum(1))]).unwrap_err();
        assert!(format!("{changed:?}").contains("migration 1 (init) was changed"));
        let newer = check_applied("t", EMBEDDED, &[(3, None)]).unwrap_err();
        assert!(format!("{newer:?}").contains("schema version 3, newer than this build's 2"));
    }
}
