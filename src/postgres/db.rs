//! How the store reaches the server: straight to PostgreSQL, or through a pooler in
//! transaction mode (PgBouncer's `pool_mode = transaction`).
//!
//! A transaction-mode pooler hands the server's connection to another client whenever
//! one is idle outside a transaction. Three things then break that work on a direct
//! connection, and the pooled mode does each differently:
//! - settings of the session (`search_path`, planner settings, sent as the `options`
//!   startup parameter, which PgBouncer before 1.20 refuses): each transaction sets them
//!   for itself, `BEGIN` and `set_config(…, true)` in one simple query;
//! - a statement with parameters, which sqlx sends as Parse/Describe/Sync and then
//!   Bind/Execute/Sync, so between the two the pooler may switch servers: every operation
//!   of the store is a transaction, even a single read;
//! - named prepared statements, which live on one server connection (PgBouncer keeps none
//!   before 1.21): statements are unnamed ([`Sql`]).
//!
//! `LISTEN` needs a session too; the store's builder takes a direct URL for it, or polls.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{PgConnection, PgPool, Postgres, SqlSafeStr, Transaction};

use super::{BACKEND, db};
use crate::{Error, Result};

/// A transaction of the store.
pub(super) type Tx = Transaction<'static, Postgres>;

/// A pool and the way its connections are used.
#[derive(Debug, Clone)]
pub(super) struct Db {
    pool: PgPool,
    /// Behind a transaction-mode pooler: the simple query that opens each transaction
    /// with the store's settings.
    pooled: Option<Arc<str>>,
}

impl Db {
    /// Connections straight to the server, whose settings came with the connection.
    pub(super) fn direct(pool: PgPool) -> Self {
        Db { pool, pooled: None }
    }

    /// Connections through a transaction-mode pooler: every transaction begins by setting
    /// `settings` for itself. Names and values must be SQL-safe (the caller's constants
    /// and a validated schema name); they are quoted as literals here.
    pub(super) fn pooled(pool: PgPool, settings: &[(&str, &str)]) -> Self {
        let sets: Vec<String> = settings
            .iter()
            .map(|(name, value)| format!("set_config('{name}', '{value}', true)"))
            .collect();
        let begin = format!("BEGIN; SELECT {}", sets.join(", "));
        Db {
            pool,
            pooled: Some(begin.into()),
        }
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How statements are built for these connections.
    pub(super) fn sql(&self) -> Sql {
        Sql {
            named: self.pooled.is_none(),
        }
    }

    /// A connection for one operation: the pool's own when direct (each statement commits
    /// by itself), a transaction opened with the store's settings when pooled. End it with
    /// [`Conn::done`].
    pub(super) async fn conn(&self) -> Result<Conn> {
        match self.pooled {
            None => Ok(Conn::Direct(self.pool.acquire().await.map_err(db)?)),
            Some(_) => Ok(Conn::Pooled(self.begin().await?)),
        }
    }

    /// Starts a transaction (with the store's settings when pooled), cancel safely.
    ///
    /// sqlx's `begin` is not cancel safe: dropped while `BEGIN` is in flight, it hands the
    /// connection back to the pool inside a transaction nobody will end, and every later
    /// statement on that connection (claims, submits) would stay uncommitted. So `BEGIN`
    /// runs in a task of its own and always finishes; a transaction that nobody waits for
    /// any more is dropped, which rolls it back.
    pub(super) async fn begin(&self) -> Result<Tx> {
        let pool = self.pool.clone();
        let pooled = self.pooled.clone();
        tokio::spawn(async move {
            match pooled {
                None => pool.begin().await,
                Some(begin) => pool.begin_with(sqlx::AssertSqlSafe(begin)).await,
            }
        })
        .await
        .map_err(|e| Error::Backend {
            backend: BACKEND,
            source: e.into(),
        })?
        .map_err(db)
    }
}

/// A connection for one operation ([`Db::conn`]).
#[derive(Debug)]
pub(super) enum Conn {
    Direct(PoolConnection<Postgres>),
    Pooled(Tx),
}

impl Conn {
    /// Ends the operation: commits its transaction when pooled (its statements committed
    /// one by one when direct). Dropping a `Conn` instead rolls a pooled one back.
    pub(super) async fn done(self) -> Result<()> {
        match self {
            Conn::Direct(_) => Ok(()),
            Conn::Pooled(tx) => tx.commit().await.map_err(db),
        }
    }
}

impl Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Conn::Direct(c) => c,
            Conn::Pooled(tx) => tx,
        }
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Conn::Direct(c) => c,
            Conn::Pooled(tx) => tx,
        }
    }
}

/// Builds the store's statements: prepared once per connection and kept (named) when
/// direct, unnamed when pooled, where a named statement would stay on a server connection
/// the pooler then gives to another client.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sql {
    named: bool,
}

impl Sql {
    /// [`sqlx::query`].
    pub(super) fn query<'q>(self, sql: impl SqlSafeStr) -> Query<'q, Postgres, PgArguments> {
        sqlx::query(sql).persistent(self.named)
    }

    /// [`sqlx::query_as`].
    pub(super) fn query_as<'q, O>(
        self,
        sql: impl SqlSafeStr,
    ) -> QueryAs<'q, Postgres, O, PgArguments>
    where
        O: for<'r> sqlx::FromRow<'r, PgRow>,
    {
        sqlx::query_as(sql).persistent(self.named)
    }

    /// [`sqlx::query_scalar`].
    pub(super) fn query_scalar<'q, O>(
        self,
        sql: impl SqlSafeStr,
    ) -> QueryScalar<'q, Postgres, O, PgArguments>
    where
        (O,): for<'r> sqlx::FromRow<'r, PgRow>,
    {
        sqlx::query_scalar(sql).persistent(self.named)
    }
}
