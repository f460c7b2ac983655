//! Fresh databases for tests: a temporary SQLite file, or a PostgreSQL schema of its own per test when
//! `LINKVAULT_TEST_DATABASE_URL` is set. Used by this crate's conformance suite and by the other crates.

use std::sync::Arc;

use crate::{DynStore, PostgresStore, Result, SqliteStore, StorageError};

pub const TEST_DATABASE_URL_VAR: &str = "LINKVAULT_TEST_DATABASE_URL";

/// The PostgreSQL URL for tests, if the environment provides one.
pub fn postgres_test_url() -> Option<String> {
    std::env::var(TEST_DATABASE_URL_VAR).ok().filter(|u| !u.trim().is_empty())
}

/// A PostgreSQL schema created for one test, with the `options` to select it in a database URL.
#[derive(Debug, Clone)]
pub struct TestSchema {
    pub base_url: String,
    pub schema: String,
}

impl TestSchema {
    /// Creates an empty schema with a unique name.
    pub async fn create(base_url: &str) -> Result<Self> {
        let schema = format!("lv_test_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(base_url, tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await?;
        drop(client);
        let _ = driver.await;
        Ok(Self { base_url: base_url.to_owned(), schema })
    }

    /// A URL that selects this schema for every connection (for spawning `linkvault` processes).
    pub fn url(&self) -> String {
        let sep = if self.base_url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.base_url, self.schema)
    }

    pub async fn store(&self) -> Result<PostgresStore> {
        PostgresStore::connect(&self.base_url, Some(&self.schema)).await
    }

    /// Drops the schema and everything in it (used when a test's store is dropped).
    pub fn drop_blocking(&self) {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            if let Ok((client, conn)) = tokio_postgres::connect(&self.base_url, tokio_postgres::NoTls).await {
                let driver = tokio::spawn(conn);
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema)).await;
                drop(client);
                let _ = driver.await;
            }
        });
    }
}

/// Which backends to run a test against: SQLite always, PostgreSQL when configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn all() -> Vec<Backend> {
        let mut v = vec![Backend::Sqlite];
        if postgres_test_url().is_some() {
            v.push(Backend::Postgres);
        }
        v
    }
}

/// A migrated, empty store for one test. Keep the `TempDir` alive for as long as the store is used.
#[derive(Debug)]
pub struct FreshStore {
    pub store: DynStore,
    pub dir: tempfile_dir::Dir,
    /// A database URL equivalent to `store`, for spawning processes against the same database.
    pub url: String,
    schema: Option<TestSchema>,
}

impl Drop for FreshStore {
    /// Drops the test's PostgreSQL schema, so test runs do not accumulate schemas. Runs on a thread of its own
    /// because `Drop` cannot await; a failure only leaves a schema behind.
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            let _ = std::thread::spawn(move || schema.drop_blocking()).join();
        }
    }
}

pub async fn fresh_store(backend: Backend) -> Result<FreshStore> {
    let dir = tempfile_dir::Dir::new()?;
    let (store, url, schema): (DynStore, String, Option<TestSchema>) = match backend {
        Backend::Sqlite => {
            let path = dir.path().join("linkvault.db");
            (Arc::new(SqliteStore::open(&path)?), path.display().to_string(), None)
        }
        Backend::Postgres => {
            let base = postgres_test_url()
                .ok_or_else(|| StorageError::Database(format!("{TEST_DATABASE_URL_VAR} is not set")))?;
            let schema = TestSchema::create(&base).await?;
            (Arc::new(schema.store().await?), schema.url(), Some(schema))
        }
    };
    store.migrate().await?;
    Ok(FreshStore { store, dir, url, schema })
}

/// What a per-backend test body receives: the backend itself, or a fresh migrated store on it.
pub trait BackendInput: Sized {
    fn for_backend(backend: Backend) -> impl std::future::Future<Output = Result<Self>>;
}

impl BackendInput for Backend {
    fn for_backend(backend: Backend) -> impl std::future::Future<Output = Result<Self>> {
        std::future::ready(Ok(backend))
    }
}

impl BackendInput for FreshStore {
    fn for_backend(backend: Backend) -> impl std::future::Future<Output = Result<Self>> {
        fresh_store(backend)
    }
}

/// Runs `body` once per configured backend (see [`on_every_backend!`](crate::on_every_backend)), printing
/// which ran so CI output shows the PostgreSQL suite; with `timeout`, each run must finish within it.
pub async fn run_on_every_backend<I, F, Fut, E>(
    name: &str,
    timeout: Option<std::time::Duration>,
    body: F,
) -> std::result::Result<(), E>
where
    I: BackendInput,
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), E>>,
    E: From<StorageError> + From<tokio::time::error::Elapsed>,
{
    for backend in Backend::all() {
        eprintln!("{name} on {backend:?}");
        let input = I::for_backend(backend).await?;
        match timeout {
            Some(limit) => tokio::time::timeout(limit, body(input)).await??,
            None => body(input).await?,
        }
    }
    Ok(())
}

/// One test per name that runs its body on every configured backend: SQLite always, PostgreSQL when
/// `LINKVAULT_TEST_DATABASE_URL` is set. The body is a closure taking a [`Backend`] or a
/// [`FreshStore`](testing::FreshStore) and returning the calling file's `TestResult`:
///
/// `on_every_backend!(name, |backend| async move { … })`, or `on_every_backend!(name, timeout = 60, …)`.
#[macro_export]
macro_rules! on_every_backend {
    ($name:ident, timeout = $secs:expr, $body:expr $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> TestResult {
            let timeout = Some(std::time::Duration::from_secs($secs));
            $crate::testing::run_on_every_backend(stringify!($name), timeout, $body).await
        }
    };
    ($name:ident, $body:expr $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> TestResult {
            $crate::testing::run_on_every_backend(stringify!($name), None, $body).await
        }
    };
}

/// A tiny self-deleting temporary directory, so that this module needs no dev-only dependency.
pub mod tempfile_dir {
    use std::path::{Path, PathBuf};

    use crate::StorageError;

    #[derive(Debug)]
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Result<Self, StorageError> {
            let path = std::env::temp_dir().join(format!("linkvault-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&path)
                .map_err(|e| StorageError::Database(format!("cannot create {}: {e}", path.display())))?;
            Ok(Self(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
