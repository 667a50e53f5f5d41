// Shared by the PostgreSQL test files: the server URL and a schema per test case.

/// The test server's URL, or `None` (with a note) when it is not configured.
pub(super) fn url() -> Option<String> {
    match std::env::var("JOBWORKS_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: set JOBWORKS_TEST_POSTGRES_URL to run the PostgreSQL tests");
            None
        }
    }
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
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let schema = format!("jwt_{}_{}_{n}", std::process::id(), rand::random::<u32>());
        let store = tweak(jobworks::PostgresStore::builder(url).schema(&schema))
            .connect()
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
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
