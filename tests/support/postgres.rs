// Shared by the PostgreSQL test files: the server URL and a schema per test case.

/// The test server's URL. The tests that call this are ignored unless
/// `JOBWORKS_TEST_POSTGRES_URL` was set when they were built (see `build.rs`), so a run
/// without a server shows them as ignored, never as passed.
pub(super) fn url() -> String {
    std::env::var("JOBWORKS_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("JOBWORKS_TEST_POSTGRES_URL names the PostgreSQL server of these tests")
}

/// Hands out fresh, migrated schemas and drops them afterwards.
#[derive(Default)]
pub(super) struct Schemas {
    made: std::sync::Mutex<Vec<String>>,
}

impl Schemas {
    pub(super) async fn fresh(&self, url: &str) -> jobworks::PostgresStore {
        self.fresh_with(url, |b| b).await
    }

    pub(super) async fn fresh_with(
        &self,
        url: &str,
        tweak: impl FnOnce(jobworks::PostgresStoreBuilder) -> jobworks::PostgresStoreBuilder,
    ) -> jobworks::PostgresStore {
        let store = self.unmigrated_with(url, tweak).await;
        store.migrate().await.expect("migrate");
        store
    }

    /// A store on a fresh, empty schema (created, but without a table).
    #[allow(dead_code)]
    pub(super) async fn unmigrated(&self, url: &str) -> jobworks::PostgresStore {
        self.unmigrated_with(url, |b| b).await
    }

    async fn unmigrated_with(
        &self,
        url: &str,
        tweak: impl FnOnce(jobworks::PostgresStoreBuilder) -> jobworks::PostgresStoreBuilder,
    ) -> jobworks::PostgresStore {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let schema = format!("jwt_{}_{}_{n}", std::process::id(), rand::random::<u32>());
        let store = tweak(jobworks::PostgresStore::builder(url).schema(&schema))
            .connect()
            .await
            .expect("connect");
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(store.pool())
            .await
            .expect("create the schema");
        self.made.lock().unwrap().push(schema);
        store
    }

    /// Drops every schema handed out, through a store of its own.
    pub(super) async fn drop_all(&self, url: &str) {
        let schemas = std::mem::take(&mut *self.made.lock().unwrap());
        for schema in schemas {
            let store = jobworks::PostgresStore::builder(url)
                .schema(&schema)
                .connect()
                .await
                .expect("connect");
            store.drop_schema().await.expect("drop schema");
        }
    }
}
