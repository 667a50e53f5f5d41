//! [`SqliteStore`]: the embedded durable default — one database file in WAL mode.
//!
//! All writes go through one connection on a dedicated thread, which commits whatever
//! writes are waiting in one transaction (group commit), each in its own savepoint so one
//! failing write never undoes another. Reads use a small pool of connections on tokio's
//! blocking threads. SQLite runs in the process: a statement costs microseconds, so each
//! store call is one hop to a thread, not one per statement.

mod activity;
mod documents;
mod jobs;
mod queues;
mod rows;
mod schedules;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::sql::corrupt;
use crate::store::Notifier;
use crate::{Error, Result};

const BACKEND: &str = "sqlite";

/// The schema migrations, in order, embedded in the crate.
const MIGRATIONS: &[crate::sql::Migration] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "templates",
        include_str!("../../migrations/sqlite/0002_templates.sql"),
    ),
    (
        3,
        "artifact attempts",
        include_str!("../../migrations/sqlite/0003_artifact_attempts.sql"),
    ),
    (
        4,
        "documents",
        include_str!("../../migrations/sqlite/0004_documents.sql"),
    ),
    (
        5,
        "queues",
        include_str!("../../migrations/sqlite/0005_queues.sql"),
    ),
    (
        6,
        "fairness",
        include_str!("../../migrations/sqlite/0006_fairness.sql"),
    ),
    (
        7,
        "workflows",
        include_str!("../../migrations/sqlite/0007_workflows.sql"),
    ),
    (
        8,
        "schedules",
        include_str!("../../migrations/sqlite/0008_schedules.sql"),
    ),
    (
        9,
        "activity",
        include_str!("../../migrations/sqlite/0009_activity.sql"),
    ),
    (
        10,
        "trace",
        include_str!("../../migrations/sqlite/0010_trace.sql"),
    ),
    (
        11,
        "scale",
        include_str!("../../migrations/sqlite/0011_scale.sql"),
    ),
];

/// When a commit is durable. See [`SqliteStoreBuilder::synchronous`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// WAL with `synchronous = NORMAL`: a committed job survives a crash of the process
    /// (the WAL is in the operating system's hands before a commit returns); on power loss
    /// or an OS crash the transactions since the last checkpoint may be lost, though the
    /// file stays consistent. Commits do not wait for the disk.
    #[default]
    Normal,
    /// WAL with `synchronous = FULL`: every commit waits for the disk, so it survives power
    /// loss too. Slower by the disk's flush time per group commit.
    Full,
}

/// A job store in one SQLite file, for a single machine.
///
/// Two stores (or processes) may open the same file: claims stay exclusive (writes take
/// the file's write lock), and each process's idle workers find the other's jobs by their
/// fallback poll.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> jobworks::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = jobworks::SqliteStore::open(dir.path().join("jobs.db")).await?;
/// let engine = jobworks::Engine::builder().store(store).build()?;
/// # drop(engine); Ok(()) }
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    writer: writer::Writer,
    readers: Arc<Readers>,
    notifier: Notifier,
    path: PathBuf,
    clock: crate::Clock,
}

/// Options for [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    path: PathBuf,
    synchronous: Synchronous,
    busy_timeout: Duration,
    clock: crate::Clock,
}

impl SqliteStoreBuilder {
    /// The clock the store reads the time from (the system's by default).
    pub fn clock(mut self, clock: crate::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How durable a commit is; [`Synchronous::Normal`] by default.
    pub fn synchronous(mut self, mode: Synchronous) -> Self {
        self.synchronous = mode;
        self
    }

    /// How long a write waits for another process holding the file's write lock (5 s by
    /// default).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Opens (creating it if needed) the database and applies the embedded migrations.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the file cannot be opened; [`Error::Backend`] when a
    /// migration fails (it is rolled back).
    pub async fn open(self) -> Result<SqliteStore> {
        let options = self.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            let mut conn = options.connect()?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| corrupt(BACKEND, e.to_string()))??;
        Ok(SqliteStore {
            writer: writer::Writer::spawn(conn)?,
            readers: Arc::new(Readers {
                options: self.clone(),
                idle: Mutex::new(Vec::new()),
            }),
            notifier: Notifier::default(),
            clock: self.clock.clone(),
            path: self.path,
        })
    }

    fn connect(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(db)?;
        conn.busy_timeout(self.busy_timeout).map_err(db)?;
        let sync = match self.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", sync).map_err(db)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }
}

impl SqliteStore {
    /// Options for a store in the file at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            path: path.as_ref().to_owned(),
            synchronous: Synchronous::default(),
            busy_timeout: Duration::from_secs(5),
            clock: crate::Clock::default(),
        }
    }

    /// Opens the store in the file at `path` with the default options.
    ///
    /// # Errors
    /// As [`SqliteStoreBuilder::open`].
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        Self::builder(path).open().await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version the file is at.
    ///
    /// # Errors
    /// Store errors.
    pub async fn schema_version(&self) -> Result<i64> {
        self.read(current_version).await
    }

    /// Runs `f` on a read connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let out = f(&conn);
            readers.give_back(conn);
            out
        })
        .await
        .map_err(|e| corrupt(BACKEND, e.to_string()))?
    }
}

/// Idle read connections.
#[derive(Debug)]
struct Readers {
    options: SqliteStoreBuilder,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn take(&self) -> Result<Connection> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => self.options.connect(),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < 8 {
            idle.push(conn);
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS jobworks_schema (
            version INTEGER PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            applied_at INTEGER NOT NULL,
            checksum TEXT)",
    )
    .map_err(db)?;
    let has_checksums: bool = tx
        .query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('jobworks_schema') WHERE name = 'checksum'",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    if !has_checksums {
        // Kept by an older jobworks, before checksums.
        tx.execute_batch("ALTER TABLE jobworks_schema ADD COLUMN checksum TEXT")
            .map_err(db)?;
    }
    let applied = {
        let mut rows = tx
            .prepare("SELECT version, checksum FROM jobworks_schema ORDER BY version")
            .map_err(db)?;
        rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<(i64, Option<String>)>>>()
            .map_err(db)?
    };
    for (version, checksum) in crate::sql::check_applied(BACKEND, MIGRATIONS, &applied)? {
        tx.execute(
            "UPDATE jobworks_schema SET checksum = ?2 WHERE version = ?1",
            rusqlite::params![version, checksum],
        )
        .map_err(db)?;
    }
    let current = applied.last().map_or(0, |a| a.0);
    for &(version, name, script) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute_batch(script).map_err(db)?;
        tx.execute(
            "INSERT INTO jobworks_schema (version, name, applied_at, checksum)
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                version,
                name,
                crate::job::now().timestamp_micros(),
                crate::sql::migration_checksum(script)
            ],
        )
        .map_err(db)?;
    }
    tx.commit().map_err(db)
}

fn current_version(conn: &Connection) -> Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM jobworks_schema",
        [],
        |r| r.get(0),
    )
    .map_err(db)
}

/// Maps a SQLite error: a busy or locked database is [`Error::Unavailable`].
fn db(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked};
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | CannotOpen) => Error::Unavailable {
            backend: BACKEND,
            source: Box::new(e),
        },
        _ => Error::Backend {
            backend: BACKEND,
            source: Box::new(e),
        },
    }
}
