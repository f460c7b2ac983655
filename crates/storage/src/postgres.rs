//! The PostgreSQL store, for several stateless linkvault instances sharing one database.
//!
//! Migrations are serialised across instances with a transaction-scoped advisory lock. Deleted rows stay
//! as dead tuples until vacuum: deletion removes the row and its wrapped data key at once, and
//! `docs/architecture.md` tells operators how to make vacuum and backups honour that.

mod readers;

use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use time::OffsetDateTime;
use tokio_postgres::{NoTls, Row};

use self::readers::{Reader, Readers};
use crate::sql::{Dialect, Driver, Fut, Mode, Session, SqlRow, Stmt, Value};
use crate::time_conv::to_millis;
use crate::{Result, StorageError, Store};

pub(crate) use crate::migrations::POSTGRES as MIGRATIONS;

/// Arbitrary constant naming linkvault's migration lock.
const MIGRATION_LOCK: i64 = 0x6c69_6e6b_7661_756c;
const POOL_SIZE: usize = 16;
/// Most shared connections for point lookups ([`Mode::Lookup`]). One per CPU the process may run on: each is
/// served by one PostgreSQL backend, so one alone would cap the lookups at one database core.
const MAX_SHARED_READERS: usize = 8;

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    readers: Arc<Readers>,
    schema: Option<String>,
}

impl std::fmt::Debug for PostgresStore {
    // The URL may carry a password, so it is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects a pool. With `schema`, every connection uses that schema (tests give each its own).
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StorageError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        if let Some(schema) = schema {
            config.options(format!("-c search_path={schema}"));
        }
        config.application_name("linkvault");
        config.connect_timeout(std::time::Duration::from_secs(10));
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let readers = Arc::new(Readers::new(config.clone(), cpus.min(MAX_SHARED_READERS)));
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StorageError::Database(format!("connection pool: {e}")))?;
        let store = Self { pool, readers, schema: schema.map(str::to_owned) };
        store.ping().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

/// A pooled PostgreSQL connection, a transaction on one, or a shared lookup connection, as a [`Session`].
/// Statements are prepared once per connection (the pool's statement cache, or the shared connection's):
/// after the first use each costs one round trip.
pub(crate) enum PgConn<'c> {
    Client(&'c deadpool_postgres::Object),
    Tx(&'c deadpool_postgres::Transaction<'c>),
    Shared(&'c Reader),
    /// A connection of its own, outside the pool (`inspect`): statements are prepared at each use.
    Plain(&'c tokio_postgres::Client),
}

/// The parameters PostgreSQL receives: [`Value::Clock`] is SQLite's, PostgreSQL reads its own clock.
fn pg_params(params: &[Value]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params.iter().filter(|v| !matches!(v, Value::Clock(_))).map(|v| v as _).collect()
}

impl PgConn<'_> {
    async fn rows(&self, stmt: &Stmt, params: &[Value]) -> Result<Vec<Row>> {
        let text = stmt.text(Dialect::Postgres);
        let params = pg_params(params);
        Ok(match self {
            PgConn::Client(c) => c.query(&c.prepare_cached(text).await?, &params).await?,
            PgConn::Tx(t) => t.query(&t.prepare_cached(text).await?, &params).await?,
            PgConn::Shared(r) => r.client().query(&r.statement(text).await?, &params).await?,
            PgConn::Plain(c) => c.query(text, &params).await?,
        })
    }
}

impl Session for PgConn<'_> {
    const DIALECT: Dialect = Dialect::Postgres;

    async fn execute(&mut self, stmt: &Stmt, params: &[Value]) -> Result<u64> {
        let text = stmt.text(Dialect::Postgres);
        let params = pg_params(params);
        Ok(match self {
            PgConn::Client(c) => c.execute(&c.prepare_cached(text).await?, &params).await?,
            PgConn::Tx(t) => t.execute(&t.prepare_cached(text).await?, &params).await?,
            PgConn::Shared(r) => r.client().execute(&r.statement(text).await?, &params).await?,
            PgConn::Plain(c) => c.execute(text, &params).await?,
        })
    }

    async fn query<T: Send>(
        &mut self,
        stmt: &Stmt,
        params: &[Value],
        mut f: impl FnMut(&dyn SqlRow) -> Result<T> + Send,
    ) -> Result<Vec<T>> {
        self.rows(stmt, params).await?.iter().map(|r| f(r)).collect()
    }
}

impl Driver for PostgresStore {
    type Conn<'c> = PgConn<'c>;
    const BACKEND: &'static str = "postgres";

    fn run<T, F>(&self, mode: Mode, f: F) -> Fut<'_, Option<T>>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Self::Conn<'c>) -> Fut<'c, Option<T>> + Send + 'static,
    {
        Box::pin(async move {
            if mode == Mode::Lookup {
                let reader = self.readers.get().await?;
                return f(&mut PgConn::Shared(&reader)).await;
            }
            let mut client = self.client().await?;
            if mode != Mode::Transaction {
                return f(&mut PgConn::Client(&client)).await;
            }
            let tx = client.transaction().await?;
            let out = f(&mut PgConn::Tx(&tx)).await?;
            match out {
                Some(v) => {
                    tx.commit().await?;
                    Ok(Some(v))
                }
                None => {
                    tx.rollback().await?;
                    Ok(None)
                }
            }
        })
    }

    fn migrate_schema(&self) -> Fut<'_, ()> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
            let applied: i64 = tx.query_one("SELECT COUNT(*) FROM schema_migrations", &[]).await?.try_get(0)?;
            let applied = usize::try_from(applied).unwrap_or(0);
            if applied > MIGRATIONS.len() {
                return Err(StorageError::Migration(format!(
                    "the database is at schema version {applied}, newer than this linkvault knows ({}); upgrade linkvault",
                    MIGRATIONS.len()
                )));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
                tx.batch_execute(sql)
                    .await
                    .map_err(|e| StorageError::Migration(format!("postgres migration {}: {e}", i + 1)))?;
                let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[&version, &to_millis(OffsetDateTime::now_utc())],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn scrub_deleted(&self) -> Fut<'_, ()> {
        // Dead tuples go at vacuum: `docs/architecture.md` tells operators how to make it and backups honour that.
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use linkvault_domain::TokenId;

    use super::readers::Reader;
    use crate::Store;
    use crate::testing::{TestSchema, postgres_test_url};

    type TestResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

    async fn backend_pid(reader: &Reader) -> std::result::Result<i32, Box<dyn std::error::Error + Send + Sync>> {
        Ok(reader.client().query_one("SELECT pg_backend_pid()", &[]).await?.try_get(0)?)
    }

    /// The shared lookup connection is replaced once its backend goes away, and lookups work on the new one.
    #[tokio::test]
    async fn a_lost_shared_connection_is_replaced() -> TestResult {
        let Some(url) = postgres_test_url() else { return Ok(()) };
        let schema = TestSchema::create(&url).await?;
        let store = schema.store().await?;
        store.migrate().await?;
        let outcome = async {
            assert_eq!(store.get_connection_summary(TokenId::new_random()).await?, None);
            // One shared connection (of one per CPU, taken round robin) and the backend serving it.
            let stale = store.readers.get().await?;
            let old = backend_pid(&stale).await?;
            let terminated: bool =
                store.client().await?.query_one("SELECT pg_terminate_backend($1)", &[&old]).await?.try_get(0)?;
            assert!(terminated);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !stale.client().is_closed() {
                assert!(Instant::now() < deadline, "the terminated connection was never seen to close");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            drop(stale);
            // Once round every slot: lookups work, and none of them is served by the terminated backend.
            for _ in 0..store.readers.len() {
                assert_eq!(store.get_connection_summary(TokenId::new_random()).await?, None);
            }
            for _ in 0..store.readers.len() {
                let reader = store.readers.get().await?;
                assert_ne!(backend_pid(&reader).await?, old, "a new backend serves the lookups");
            }
            TestResult::Ok(())
        }
        .await;
        drop(store);
        let _ = std::thread::spawn(move || schema.drop_blocking()).join();
        outcome
    }
}
