//! [`SqliteStore`]: the embedded durable default — one database file in WAL mode.

mod jobs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};

use crate::job::{
    Artifact, ArtifactRole, Event, EventKind, Job, JobId, JobType, TenantId, Visibility,
};
use crate::sql::{corrupt, db_error, from_micros, parse_json, status};
use crate::store::Notifier;
use crate::{Error, Result};

const BACKEND: &str = "sqlite";

/// The schema migrations, in order, embedded in the crate.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../../migrations/sqlite/0001_init.sql"),
)];

/// When a commit is durable. See [`SqliteStoreBuilder::synchronous`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// WAL with `synchronous = NORMAL`: a committed job survives a crash of the process;
    /// on power loss or an OS crash the last transactions before the latest checkpoint may
    /// be lost (the file stays consistent). Fast: commits do not wait for the disk.
    #[default]
    Normal,
    /// WAL with `synchronous = FULL`: every commit waits for the disk, so it also survives
    /// power loss. Slower by the disk's flush time per commit.
    Full,
}

/// A job store in one SQLite file, for a single machine.
///
/// Writes go through one connection, in `BEGIN IMMEDIATE` transactions, so they never
/// wait on SQLite's busy handler within a process; reads use a small pool of their own.
/// Two stores (or processes) may open the same file: claims stay exclusive, and each
/// process's idle workers find the other's jobs by their fallback poll.
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
    writer: SqlitePool,
    readers: SqlitePool,
    notifier: Notifier,
    path: PathBuf,
}

/// Options for [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    path: PathBuf,
    synchronous: Synchronous,
    busy_timeout: Duration,
    readers: u32,
}

impl SqliteStoreBuilder {
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

    /// How many read connections to keep (4 by default).
    pub fn readers(mut self, n: u32) -> Self {
        self.readers = n.max(1);
        self
    }

    /// Opens (creating it if needed) the database and applies the embedded migrations.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the file cannot be opened; [`Error::Backend`] when a
    /// migration fails.
    pub async fn open(self) -> Result<SqliteStore> {
        let sync = match self.synchronous {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        };
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sync)
            .busy_timeout(self.busy_timeout)
            .foreign_keys(false);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(db)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(self.readers)
            .connect_with(options)
            .await
            .map_err(db)?;
        let store = SqliteStore {
            writer,
            readers,
            notifier: Notifier::default(),
            path: self.path,
        };
        store.migrate().await?;
        Ok(store)
    }
}

impl SqliteStore {
    /// Options for a store in the file at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            path: path.as_ref().to_owned(),
            synchronous: Synchronous::default(),
            busy_timeout: Duration::from_secs(5),
            readers: 4,
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

    /// Applies the embedded migrations that the file lacks. [`open`](Self::open) already
    /// does; calling it again is harmless.
    ///
    /// # Errors
    /// [`Error::Backend`] when a migration fails; it is rolled back.
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.writer.acquire().await.map_err(db)?;
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS jobworks_schema (
                version INTEGER PRIMARY KEY NOT NULL,
                name TEXT NOT NULL,
                applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let current = current_version(&mut tx).await?;
        for &(version, name, script) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            sqlx::raw_sql(script).execute(&mut *tx).await.map_err(db)?;
            sqlx::query("INSERT INTO jobworks_schema (version, name, applied_at) VALUES (?, ?, ?)")
                .bind(version)
                .bind(name)
                .bind(Utc::now().timestamp_micros())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    /// The schema version the file is at.
    ///
    /// # Errors
    /// Store errors.
    pub async fn schema_version(&self) -> Result<i64> {
        let mut conn = self.readers.acquire().await.map_err(db)?;
        current_version(&mut conn).await
    }

    /// Closes the connections; later calls fail.
    pub async fn close(&self) {
        self.writer.close().await;
        self.readers.close().await;
    }
}

async fn current_version(conn: &mut SqliteConnection) -> Result<i64> {
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM jobworks_schema")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    Ok(version.unwrap_or(0))
}

/// The columns of a job row, in the order [`decode_job`] reads them.
macro_rules! job_columns {
    () => {
        "id, tenant, job_type, input, status, result, error, attempts, max_attempts, priority, \
         run_at, created_at, started_at, completed_at, updated_at, idempotency_key, progress, \
         cancel_requested, revision, event_seq, lease_id, lease_expires_at"
    };
}
pub(crate) use job_columns;

/// A job row with the bookkeeping the [`Job`] does not show.
#[derive(Debug)]
struct JobRow {
    job: Job,
    event_seq: u64,
    lease: Option<(u128, DateTime<Utc>)>,
}

fn get<'r, T>(row: &'r SqliteRow, idx: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(idx).map_err(db)
}

fn id_bytes(id: JobId) -> Vec<u8> {
    id.to_u128().to_be_bytes().to_vec()
}

fn u128_from(bytes: &[u8]) -> Result<u128> {
    let arr: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupt(BACKEND, "an id is not 16 bytes"))?;
    Ok(u128::from_be_bytes(arr))
}

fn time(us: i64) -> Result<DateTime<Utc>> {
    from_micros(BACKEND, us)
}

fn opt_time(us: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    us.map(time).transpose()
}

fn decode_job(row: &SqliteRow) -> Result<JobRow> {
    let id = JobId::from_u128(u128_from(&get::<Vec<u8>>(row, 0)?)?);
    let result: Option<String> = get(row, 5)?;
    let progress: Option<String> = get(row, 16)?;
    let lease_id: Option<Vec<u8>> = get(row, 20)?;
    let lease_expires: Option<i64> = get(row, 21)?;
    let lease = match (lease_id, lease_expires) {
        (Some(lid), Some(exp)) => Some((u128_from(&lid)?, time(exp)?)),
        _ => None,
    };
    let job = Job {
        id,
        tenant: TenantId::new(get::<String>(row, 1)?)?,
        job_type: JobType::new(get::<String>(row, 2)?)?,
        input: parse_json(BACKEND, &get::<String>(row, 3)?)?,
        status: status(BACKEND, &get::<String>(row, 4)?)?,
        result: result.map(|r| parse_json(BACKEND, &r)).transpose()?,
        error: get(row, 6)?,
        attempts: get::<i64>(row, 7)? as u32,
        max_attempts: get::<i64>(row, 8)? as u32,
        priority: get::<i64>(row, 9)? as i32,
        run_at: time(get(row, 10)?)?,
        created_at: time(get(row, 11)?)?,
        started_at: opt_time(get(row, 12)?)?,
        completed_at: opt_time(get(row, 13)?)?,
        updated_at: time(get(row, 14)?)?,
        idempotency_key: get(row, 15)?,
        progress: progress.map(|p| parse_json(BACKEND, &p)).transpose()?,
        cancel_requested: get(row, 17)?,
        revision: get::<i64>(row, 18)? as u64,
        artifacts: Vec::new(),
        latest_event: None,
    };
    Ok(JobRow {
        job,
        event_seq: get::<i64>(row, 19)? as u64,
        lease,
    })
}

fn decode_event(row: &SqliteRow) -> Result<Event> {
    let kind: String = get(row, 1)?;
    let visibility: String = get(row, 2)?;
    let payload: Option<String> = get(row, 4)?;
    let artifacts: Option<String> = get(row, 5)?;
    Ok(Event {
        seq: get::<i64>(row, 0)? as u64,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| corrupt(BACKEND, format!("event kind {kind:?}")))?,
        visibility: Visibility::parse(&visibility)
            .ok_or_else(|| corrupt(BACKEND, format!("visibility {visibility:?}")))?,
        message: get::<String>(row, 3)?.into(),
        payload: payload.map(|p| parse_json(BACKEND, &p)).transpose()?,
        artifacts: artifacts
            .map(|a| parse_json(BACKEND, &a))
            .transpose()?
            .unwrap_or_default(),
        created_at: time(get(row, 6)?)?,
    })
}

fn decode_artifact(row: &SqliteRow) -> Result<Artifact> {
    let role: String = get(row, 2)?;
    Ok(Artifact {
        name: get(row, 0)?,
        kind: get(row, 1)?,
        role: ArtifactRole::parse(&role)
            .ok_or_else(|| corrupt(BACKEND, format!("role {role:?}")))?,
        content_type: get(row, 3)?,
        size_bytes: get::<i64>(row, 4)? as u64,
        checksum: get(row, 5)?,
        metadata: parse_json(BACKEND, &get::<String>(row, 6)?)?,
        created_at: time(get(row, 7)?)?,
    })
}

fn db(e: sqlx::Error) -> Error {
    db_error(BACKEND, e)
}
