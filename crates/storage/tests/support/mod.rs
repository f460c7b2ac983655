//! Setup shared by the store-level test files: a test body run on every backend with a fresh store, instants
//! at the precision both backends keep, and a client row to hang records on.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it; tests may panic on failure

use std::error::Error;
use std::path::PathBuf;

use linkvault_domain::{ClientId, TokenMode};
use linkvault_storage::testing::{Backend, fresh_store};
use linkvault_storage::{ClientRecord, DynStore};
use time::OffsetDateTime;

pub type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

/// Runs `body` on SQLite, and on PostgreSQL when `LINKVAULT_TEST_DATABASE_URL` is set, each time with a fresh
/// store and (on SQLite) the database file's path.
pub async fn with_store_file<F, Fut>(name: &str, body: F) -> TestResult
where
    F: Fn(DynStore, Option<PathBuf>) -> Fut,
    Fut: std::future::Future<Output = TestResult>,
{
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if !Backend::all().contains(&backend) {
            println!("postgres::{name}: skipped, LINKVAULT_TEST_DATABASE_URL is not set");
            continue;
        }
        let fresh = fresh_store(backend).await?;
        let file = (backend == Backend::Sqlite).then(|| fresh.dir.path().join("linkvault.db"));
        body(fresh.store.clone(), file).await?;
    }
    Ok(())
}

/// [`with_store_file`] for bodies that need only the store.
pub async fn with_store<F, Fut>(name: &str, body: F) -> TestResult
where
    F: Fn(DynStore) -> Fut,
    Fut: std::future::Future<Output = TestResult>,
{
    with_store_file(name, |store, _| body(store)).await
}

/// Now, in whole milliseconds: what both backends store.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(u32::from(t.millisecond()) * 1_000_000).unwrap()
}

/// A fresh managed-mode client.
pub async fn client(store: &DynStore) -> Result<ClientId, Box<dyn Error + Send + Sync>> {
    let id = ClientId::new_random();
    let record = ClientRecord {
        client_id: id,
        name: "c".into(),
        token_mode: TokenMode::Managed,
        created_at: now(),
        api_rate_limit: None,
    };
    store.insert_client(&record, &[]).await?;
    Ok(id)
}
