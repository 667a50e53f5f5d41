//! [`PostgresStore`]: many worker processes on many machines share one database.
//!
//! Claims take due rows with `FOR UPDATE SKIP LOCKED`; every transition is one transaction
//! that locks the job's row, so concurrent workers never step on each other. Changes are
//! announced with `NOTIFY` on the schema's channel (a submit's in its transaction, claims'
//! and finishes' after they commit, many in one), and a `LISTEN`ing task in every process
//! wakes its idle workers and long-polling readers. The store vacuums its busiest tables
//! itself when their dead rows pile up. Behind a pooler in transaction mode each
//! operation is one transaction that carries its own settings (`db.rs`).

mod announce;
mod batch;
mod claim;
mod db;
mod documents;
mod insert;
mod jobs;
mod queues;
mod rows;
mod vacuum;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::sql::db_error;
use crate::store::Notifier;
use crate::{Error, JobId, Result};

const BACKEND: &str = "postgres";

/// The schema migrations, in order, embedded in the crate.
const MIGRATIONS: &[crate::sql::Migration] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "templates",
        include_str!("../../migrations/postgres/0002_templates.sql"),
    ),
    (
        3,
        "artifact attempts",
        include_str!("../../migrations/postgres/0003_artifact_attempts.sql"),
    ),
    (
        4,
        "documents",
        include_str!("../../migrations/postgres/0004_documents.sql"),
    ),
    (
        5,
        "queues",
        include_str!("../../migrations/postgres/0005_queues.sql"),
    ),
    (
        6,
        "fairness",
        include_str!("../../migrations/postgres/0006_fairness.sql"),
    ),
    (
        7,
        "workflows",
        include_str!("../../migrations/postgres/0007_workflows.sql"),
    ),
    (
        8,
        "schedules",
        include_str!("../../migrations/postgres/0008_schedules.sql"),
    ),
    (
        9,
        "activity",
        include_str!("../../migrations/postgres/0009_activity.sql"),
    ),
    (
        10,
        "trace",
        include_str!("../../migrations/postgres/0010_trace.sql"),
    ),
    (
        11,
        "scale",
        include_str!("../../migrations/postgres/0011_scale.sql"),
    ),
];

fn db(e: sqlx::Error) -> Error {
    db_error(BACKEND, e)
}

/// What the store was doing when a failure happened, as the failure's source: the
/// messages of a failed connect or migration then say where and what.
#[derive(Debug, thiserror::Error)]
#[error("{doing}")]
struct Context {
    doing: String,
    #[source]
    source: crate::BoxError,
}

/// `e`, classified as [`db`] does, with `doing` said in its chain of sources.
fn in_context(doing: String, e: Error) -> Error {
    let wrap = |source| Box::new(Context { doing, source });
    match e {
        Error::Unavailable { backend, source } => Error::Unavailable {
            backend,
            source: wrap(source),
        },
        Error::Backend { backend, source } => Error::Backend {
            backend,
            source: wrap(source),
        },
        other => other,
    }
}

/// A job store in a PostgreSQL schema.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> jobworks::Result<()> {
/// let store = jobworks::PostgresStore::builder("postgres://postgres@127.0.0.1/app")
///     .schema("jobs")
///     .connect()
///     .await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PostgresStore {
    db: db::Db,
    inner: Arc<Shared>,
    /// Group commit of guarded writes, on the pool that waits for the disk.
    commits: tokio::sync::mpsc::Sender<batch::Request>,
    /// Group commit of attempts' outcomes without waiting for the disk, when asked for.
    outcomes: Option<tokio::sync::mpsc::Sender<batch::Request>>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    notifier: Notifier,
    /// How statements are built for the store's connections.
    sql: db::Sql,
    schema: String,
    channel: String,
    clock: crate::Clock,
    /// This store's mark on its notifications, `~` and a random number.
    tag: String,
    /// What claims and finishes changed, for the next notification ([`announce`]).
    changes: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Shared {
    /// Tells this process's watchers about a committed change at once, and the other
    /// processes with the next notification. `payload` is in the listener's format.
    fn announce(&self, payload: &str) {
        if payload.is_empty() {
            return;
        }
        dispatch(&self.notifier, payload);
        self.tell_others(payload.to_owned());
    }

    /// The half of [`announce`](Self::announce) for the other processes, for a caller
    /// that told this process's watchers itself.
    fn tell_others(&self, payload: String) {
        let _ = self.changes.send(payload);
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Options for [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresStoreBuilder {
    url: String,
    schema: String,
    max_connections: u32,
    acquire_timeout: Duration,
    migrate: bool,
    durable_finishes: bool,
    vacuum_threshold: Option<u64>,
    transaction_pooler: bool,
    listen_url: Option<String>,
    poll_interval: Duration,
    clock: crate::Clock,
}

impl PostgresStoreBuilder {
    /// The clock the store reads the time from (the system's by default). The store keeps
    /// it corrected to the database server's clock, read on connect and every minute, so
    /// that engines on machines whose clocks disagree agree on lease expiries and due
    /// times; a test's [`Clock::advance`](crate::Clock::advance) moves it from there.
    pub fn clock(mut self, clock: crate::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The schema that holds the tables (`jobworks` by default): lowercase letters, digits
    /// and `_`, starting with a letter or `_`, at most 48 characters.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The pool's size (10 by default); the store opens one connection more, which
    /// `LISTEN`s (at the [`listen_url`](Self::listen_url) when given; none when it
    /// polls). With [`durable_finishes(false)`](Self::durable_finishes) it opens one more
    /// again, for those finishes.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long a call waits for a free connection before failing with
    /// [`Error::Unavailable`] (5 s by default).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether recording an outcome waits for PostgreSQL to flush it to disk (`true` by
    /// default).
    ///
    /// With `false`, the writes that end attempts (finishes, reaps) are committed with
    /// `synchronous_commit = off` on a connection of their own: drains get faster (see `BENCHMARKS.md`) and a crash of the engine's
    /// process still loses nothing, but a crash of the *database server* may forget the
    /// last outcomes it acknowledged (by default at most `wal_writer_delay × 3`, 600 ms).
    /// Those jobs go back to `running` with their old lease, which the reaper expires, so
    /// they run again: at-least-once holds, a result reported completed may not.
    /// Submits, cancels and every other write keep waiting for the disk.
    pub fn durable_finishes(mut self, yes: bool) -> Self {
        self.durable_finishes = yes;
        self
    }

    /// When the store vacuums its job and event tables itself: once a table's dead rows
    /// pass this many plus a fifth of its live rows (20,000 by default), checked every
    /// second on a connection of the pool; `None` leaves them to autovacuum.
    ///
    /// Each job leaves three dead row versions behind, and a queue whose dead rows are not
    /// cleared slows down by half within minutes, while autovacuum is off on some servers
    /// and looks only once a minute where it is on. A table another session is vacuuming
    /// is skipped. The store's role must own the tables (it does when it migrated them).
    pub fn vacuum_threshold(mut self, dead_rows: Option<u64>) -> Self {
        self.vacuum_threshold = dead_rows;
        self
    }

    /// Whether the URL is a pooler in transaction mode, such as PgBouncer with
    /// `pool_mode = transaction` (`false` by default: a server, or a pooler in session
    /// mode).
    ///
    /// Behind such a pooler consecutive transactions of one client may run on different
    /// server connections, so the store keeps nothing on a connection: it runs every
    /// operation, reads too, as one transaction that sets the schema and the planner
    /// settings for itself, prepares no named statement, and sends no `options` or
    /// `extra_float_digits` startup parameter (PgBouncer before 1.20 refuses the first,
    /// and the second needs `ignore_startup_parameters`). This costs two round trips
    /// per operation (`BEGIN` and `COMMIT`) and a parse of each statement.
    ///
    /// `LISTEN` cannot work through it: give the server's own address to
    /// [`listen_url`](Self::listen_url), or the store looks for changes every
    /// [`poll_interval`](Self::poll_interval).
    pub fn transaction_pooler(mut self, yes: bool) -> Self {
        self.transaction_pooler = yes;
        self
    }

    /// Where the store `LISTEN`s for the other engines' changes: a URL of the same
    /// database that reaches the server directly (or through a pooler in session mode).
    /// The store opens one connection there and none in its pool for listening. Without
    /// it the store listens on a connection of its pool, or, behind a
    /// [`transaction_pooler`](Self::transaction_pooler), polls.
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.listen_url = Some(url.into());
        self
    }

    /// How often a store that cannot `LISTEN` (behind a
    /// [`transaction_pooler`](Self::transaction_pooler) without a
    /// [`listen_url`](Self::listen_url)) looks for changes (500 ms by default, at least
    /// 10 ms): its idle workers look for due jobs and every waiting long poll re-reads its
    /// job that often, so other engines' submits and changes arrive that much later.
    /// This process's own changes still wake its workers and watchers at once.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_millis(10));
        self
    }

    /// Applies the migrations on connect (off by default: call
    /// [`PostgresStore::migrate`]).
    pub fn migrate_on_connect(mut self, yes: bool) -> Self {
        self.migrate = yes;
        self
    }

    /// Connects, starts listening for changes, and migrates if asked to.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad URL or schema name; [`Error::Unavailable`] when the
    /// server cannot be reached.
    pub async fn connect(self) -> Result<PostgresStore> {
        validate_schema(&self.schema)?;
        let options = parse_url(&self.url)?;
        let options = options.application_name(&format!("jobworks:{}", self.schema));
        // Every query of the store is an index lookup or an ordered index scan with a
        // LIMIT. A bitmap scan would read every queued row's index entry (dead ones too)
        // and sort them on each claim, which the planner picks while statistics are stale.
        let settings = [
            ("search_path", self.schema.as_str()),
            ("enable_bitmapscan", "off"),
        ];
        let relaxed_settings = [settings[0], settings[1], ("synchronous_commit", "off")];
        let options = if self.transaction_pooler {
            // Settings per transaction (`db::Db::pooled`); no statement is kept, and no
            // startup parameter that PgBouncer before 1.20 refuses.
            options.statement_cache_capacity(0).extra_float_digits(None)
        } else {
            options.options(settings)
        };
        // No ping before every use: a dead connection fails its query with
        // `Error::Unavailable`, which every caller already retries or reports.
        let pool_options = PgPoolOptions::new()
            .acquire_timeout(self.acquire_timeout)
            .test_before_acquire(false);
        // One direct connection first: a pool reports any failed connect as a timeout,
        // where this one says why (refused, unknown host, authentication, no database).
        let target = describe(&options);
        let probe = sqlx::ConnectOptions::connect(&options).await.map_err(|e| {
            // PgBouncer in transaction mode refuses the `options` parameter.
            let refused = e.to_string().contains("unsupported startup parameter");
            let e = in_context(target.clone(), db(e));
            if refused && !self.transaction_pooler {
                let hint = "a pooler refused the store's session settings; behind a pooler \
                            in transaction mode, build the store with transaction_pooler(true)";
                in_context(hint.into(), e)
            } else {
                e
            }
        })?;
        let _ = sqlx::Connection::close(probe).await;
        let listen = match (&self.listen_url, self.transaction_pooler) {
            (Some(url), _) => Listen::Url(Box::new(parse_url(url)?)),
            (None, false) => Listen::Pool,
            (None, true) => Listen::Poll,
        };
        let extra = u32::from(matches!(listen, Listen::Pool));
        let pool = pool_options
            .clone()
            .max_connections(self.max_connections + extra)
            .connect_with(options.clone())
            .await
            .map_err(|e| in_context(target, db(e)))?;
        let make = |pool, settings: &[(&str, &str)]| {
            if self.transaction_pooler {
                db::Db::pooled(pool, settings)
            } else {
                db::Db::direct(pool)
            }
        };
        let relaxed = if self.durable_finishes {
            None
        } else {
            // One batch is in flight at a time.
            let options = if self.transaction_pooler {
                options
            } else {
                options.options([("synchronous_commit", "off")])
            };
            let relaxed = pool_options
                .max_connections(1)
                .connect_with(options)
                .await
                .map_err(db)?;
            Some(make(relaxed, &relaxed_settings))
        };
        let store_db = make(pool, &settings);
        correct_clock(&store_db, &self.clock)
            .await
            .map_err(|e| in_context("reading the server's clock".into(), e))?;
        let (changes, changed) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            notifier: Notifier::default(),
            sql: store_db.sql(),
            channel: format!("jobworks_{}", self.schema),
            schema: self.schema,
            clock: self.clock,
            tag: format!("~{:016x}", rand::random::<u64>()),
            changes,
        });
        let mut tasks = Vec::with_capacity(6);
        let listener = match listen {
            Listen::Pool => Some(
                PgListener::connect_with(store_db.pool())
                    .await
                    .map_err(db)?,
            ),
            Listen::Url(options) => {
                let target = describe(&options);
                let direct = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(self.acquire_timeout)
                    .connect_with(*options)
                    .await
                    .map_err(|e| in_context(format!("listening: {target}"), db(e)))?;
                Some(PgListener::connect_with(&direct).await.map_err(db)?)
            }
            Listen::Poll => {
                tasks.push(tokio::spawn(poll(self.poll_interval, shared.clone())));
                None
            }
        };
        if let Some(mut listener) = listener {
            listener.listen(&shared.channel).await.map_err(db)?;
            tasks.push(tokio::spawn(listen_to(listener, shared.clone())));
        }
        let (commits, requests) = tokio::sync::mpsc::channel(1024);
        tasks.extend([
            tokio::spawn(batch::run(store_db.clone(), shared.clone(), requests)),
            tokio::spawn(follow_server_clock(store_db.clone(), shared.clone())),
            tokio::spawn(announce::run(
                store_db.clone(),
                shared.channel.clone(),
                shared.tag.clone(),
                changed,
            )),
        ]);
        if let Some(threshold) = self.vacuum_threshold {
            tasks.push(tokio::spawn(vacuum::run(
                store_db.clone(),
                shared.schema.clone(),
                threshold,
            )));
        }
        let outcomes = relaxed.map(|relaxed| {
            let (outcomes, requests) = tokio::sync::mpsc::channel(1024);
            tasks.push(tokio::spawn(batch::run(relaxed, shared.clone(), requests)));
            outcomes
        });
        let store = PostgresStore {
            tasks,
            commits,
            outcomes,
            db: store_db,
            inner: shared,
        };
        if self.migrate {
            store
                .migrate()
                .await
                .map_err(|e| in_context(format!("migrating schema {:?}", store.inner.schema), e))?;
        }
        Ok(store)
    }
}

/// Where the store hears other engines' changes.
enum Listen {
    /// `LISTEN` on a connection of the store's pool.
    Pool,
    /// `LISTEN` on a connection of its own to this server.
    Url(Box<PgConnectOptions>),
    /// No `LISTEN` (behind a transaction-mode pooler): look again every poll interval.
    Poll,
}

fn parse_url(url: &str) -> Result<PgConnectOptions> {
    url.parse()
        .map_err(|_| Error::invalid("postgres url", "not a PostgreSQL connection URL"))
}

/// Host, port, database and user of `options` (never the password), for errors.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "connecting to {}:{} (database {:?}, user {:?})",
        options.get_host(),
        options.get_port(),
        options
            .get_database()
            .unwrap_or_else(|| options.get_username()),
        options.get_username()
    )
}

fn validate_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "schema",
            "use 1 to 48 lowercase letters, digits and _, starting with a letter or _",
        ))
    }
}

/// How often the store re-reads the server's clock.
const CLOCK_CHECK_EVERY: Duration = Duration::from_secs(60);

/// Corrects `clock` to the database server's: reads `clock_timestamp()` and takes this
/// process's clock at the middle of the round trip for the same instant.
async fn correct_clock(store: &db::Db, clock: &crate::Clock) -> Result<()> {
    let mut conn = store.conn().await?;
    let before = crate::job::now();
    let server: DateTime<Utc> = store
        .sql()
        .query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let after = crate::job::now();
    conn.done().await?;
    clock.correct_to(server, before + (after - before) / 2);
    Ok(())
}

/// Keeps the store's clock on the server's: every machine's engines then agree on lease
/// expiries and due times, whatever their own clocks say.
async fn follow_server_clock(store: db::Db, shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(CLOCK_CHECK_EVERY).await;
        if let Err(e) = correct_clock(&store, &shared.clock).await {
            warn!(error = %e, "could not read the database's clock; keeping the last correction");
        }
    }
}

/// Forwards notifications to the notifier. After a lost connection (when notifications
/// may have been missed) it wakes everyone, so that they look again.
async fn listen_to(mut listener: PgListener, shared: Arc<Shared>) {
    loop {
        match listener.try_recv().await {
            // This store's own announcements were dispatched when they were made.
            Ok(Some(n)) if is_from(n.payload(), &shared.tag) => {}
            Ok(Some(n)) => dispatch(&shared.notifier, n.payload()),
            Ok(None) => {
                shared.notifier.work_available();
                shared.notifier.all_changed();
            }
            Err(e) => {
                warn!(error = %e, "postgres listener failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                shared.notifier.work_available();
                shared.notifier.all_changed();
            }
        }
    }
}

/// Instead of listening: every `every`, wakes idle workers and every watcher to look
/// again, as if everything changed.
async fn poll(every: Duration, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.notifier.work_available();
        shared.notifier.slot_freed();
        shared.notifier.all_changed();
    }
}

/// Whether `payload` carries `tag` as its first part.
fn is_from(payload: &str, tag: &str) -> bool {
    payload.split(',').next() == Some(tag)
}

/// Payloads: `w` (work available) and `s` (a slot of a limited queue freed), then
/// `,`-separated job ids that changed, or `*` when too many changed to list (a payload
/// holds at most 8000 bytes). A part that is none of these (a sender's `~` tag) is
/// ignored.
fn dispatch(notifier: &Notifier, payload: &str) {
    for part in payload.split(',') {
        if part == "w" {
            notifier.work_available();
        } else if part == "s" {
            notifier.slot_freed();
        } else if part == "*" {
            notifier.all_changed();
        } else if let Ok(id) = part.parse::<JobId>() {
            notifier.job_changed(id);
        }
    }
}

impl PostgresStore {
    /// Options for a store at `url` (`postgres://user@host:port/db`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            schema: "jobworks".to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            migrate: false,
            durable_finishes: true,
            vacuum_threshold: Some(20_000),
            transaction_pooler: false,
            listen_url: None,
            poll_interval: Duration::from_millis(500),
            clock: crate::Clock::default(),
        }
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The connection pool. Behind a
    /// [`transaction_pooler`](PostgresStoreBuilder::transaction_pooler) its connections
    /// have none of the store's settings: schema-qualify names, and run statements with
    /// parameters in a transaction.
    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// Creates the schema if needed and applies the embedded migrations it lacks, in one
    /// transaction; concurrent callers wait for each other. Each applied migration's
    /// checksum is kept (and recorded for those an older jobworks applied without one).
    ///
    /// # Errors
    /// [`Error::Backend`] when a migration fails (it is rolled back), when an applied
    /// migration differs from this build's (migrations are forward-only), or when the
    /// database is at a version this build does not know.
    pub async fn migrate(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        // The schema name was validated: lowercase letters, digits and underscores only.
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.inner.schema);
        sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        self.inner
            .sql
            .query("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS jobworks_schema (
                version bigint PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                checksum text);
             ALTER TABLE jobworks_schema ADD COLUMN IF NOT EXISTS checksum text",
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let applied: Vec<(i64, Option<String>)> = self
            .inner
            .sql
            .query_as("SELECT version, checksum FROM jobworks_schema ORDER BY version")
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        for (version, checksum) in crate::sql::check_applied(BACKEND, MIGRATIONS, &applied)? {
            self.inner
                .sql
                .query("UPDATE jobworks_schema SET checksum = $2 WHERE version = $1")
                .bind(version)
                .bind(checksum)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let current = applied.last().map_or(0, |a| a.0);
        for &(version, name, script) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            sqlx::raw_sql(script).execute(&mut *tx).await.map_err(db)?;
            self.inner
                .sql
                .query("INSERT INTO jobworks_schema (version, name, checksum) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(name)
                .bind(crate::sql::migration_checksum(script))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    /// The schema version the database is at (0 before [`migrate`](Self::migrate)).
    ///
    /// # Errors
    /// Store errors.
    pub async fn schema_version(&self) -> Result<i64> {
        let mut conn = self.db.conn().await?;
        let sql = self.inner.sql;
        let exists: bool = sql
            .query_scalar("SELECT to_regclass('jobworks_schema') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        let version = if exists {
            sql.query_scalar("SELECT COALESCE(MAX(version), 0) FROM jobworks_schema")
                .fetch_one(&mut *conn)
                .await
                .map_err(db)?
        } else {
            0
        };
        conn.done().await?;
        Ok(version)
    }

    /// Drops the store's schema and everything in it. For tests.
    ///
    /// # Errors
    /// Store errors.
    pub async fn drop_schema(&self) -> Result<()> {
        let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.inner.schema);
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(self.db.pool())
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            text = format!("{text}: {c}");
            cause = c.source();
        }
        text
    }

    #[tokio::test]
    async fn a_failed_connect_says_where_and_why_without_the_password() {
        // Nothing listens on port 1 of loopback.
        let e = PostgresStore::builder("postgres://app:s3cret@127.0.0.1:1/jobs")
            .acquire_timeout(Duration::from_millis(500))
            .connect()
            .await
            .unwrap_err();
        let text = causes(&e);
        assert!(text.contains("connecting to 127.0.0.1:1"), "{text}");
        assert!(text.contains("\"jobs\""), "{text}");
        assert!(text.contains("refused"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
