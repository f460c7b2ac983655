//! A read-only look at a database, for `linkvault config check`: can it be reached, which migrations it
//! has, the meta rows naming the master key (its fingerprint, the sealed keyring, a pending rotation) and the
//! sealed key versions. Unlike [`crate::open`] it never creates a
//! file or a directory, never migrates and never writes, so checking a configuration cannot change what it
//! checks; and it gives up on an unreachable PostgreSQL server after a bounded time.

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::time::Duration;

use crate::sql::{Dialect, Driver, Session, sql, vals};
use crate::{Result, StorageError};

/// What a database holds, as far as starting linkvault on it is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// The SQLite file does not exist yet (`serve` creates it and applies every migration).
    Missing,
    Present(DatabaseState),
}

/// An existing database.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseState {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Migrations applied to it.
    pub applied_migrations: usize,
    /// Migrations this build knows (applied at start when more than `applied_migrations`).
    pub known_migrations: usize,
    /// The `meta` rows asked for that exist (the master key's fingerprint, the sealed keyring, …).
    pub meta: BTreeMap<String, String>,
    /// The key versions, each wrapped by the keyring.
    pub key_versions: Vec<SealedKeyVersion>,
}

impl std::fmt::Debug for DatabaseState {
    // Sealed keys are ciphertext, but there is no reason to print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseState")
            .field("backend", &self.backend)
            .field("applied_migrations", &self.applied_migrations)
            .field("known_migrations", &self.known_migrations)
            .field("meta", &self.meta.keys().collect::<Vec<_>>())
            .field("key_versions", &self.key_versions.iter().map(|k| k.version).collect::<Vec<_>>())
            .finish()
    }
}

/// A key version as stored: its number, whether new data keys are wrapped with it, and its sealed bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKeyVersion {
    pub version: u32,
    pub is_current: bool,
    pub wrapped_key: Vec<u8>,
}

impl std::fmt::Debug for SealedKeyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedKeyVersion")
            .field("version", &self.version)
            .field("is_current", &self.is_current)
            .finish_non_exhaustive()
    }
}

/// Looks at the database a URL names without changing it, reading the `meta` rows `meta_keys` (the vault's
/// keys for the master key's fingerprint, keyring and rotation state). PostgreSQL: connecting and every query
/// together take at most `timeout`.
pub async fn inspect(database_url: &str, meta_keys: &[&str], timeout: Duration) -> Result<Inspection> {
    let keys: Vec<String> = meta_keys.iter().map(|k| (*k).to_owned()).collect();
    match crate::sqlite_path(database_url) {
        Some(path) => {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || inspect_sqlite(&path, &keys))
                .await
                .map_err(|e| StorageError::Database(format!("inspection task failed: {e}")))?
        }
        None => tokio::time::timeout(timeout, inspect_postgres(database_url, &keys, timeout))
            .await
            .map_err(|_| StorageError::Database(format!("no answer from PostgreSQL within {} s", timeout.as_secs())))?,
    }
}

fn inspect_sqlite(path: &std::path::Path, meta_keys: &[String]) -> Result<Inspection> {
    use rusqlite::{Connection, OpenFlags};
    if !path.exists() {
        return Ok(Inspection::Missing);
    }
    // A read-only connection still creates the `-wal` and `-shm` files of a WAL database and leaves them
    // behind. Without a `-wal` file no process has the database open and every committed page is in the main
    // file, so it is read as immutable (no locks, no side files); with one, they exist already.
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut conn = if std::path::Path::new(&wal).exists() {
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?
    } else {
        let uri = format!("file:{}?immutable=1", uri_path(&path.to_string_lossy()));
        Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?
    };
    let mut session = crate::sqlite::SqliteConn::new(&mut conn);
    let known = (<crate::SqliteStore as Driver>::BACKEND, crate::sqlite::MIGRATIONS.len());
    let state = crate::sqlite::run_now(Box::pin(state(&mut session, meta_keys, known)));
    state.map(Inspection::Present)
}

/// Percent-encodes what SQLite's URI parser would read as a delimiter or an escape.
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            _ => out.push(c),
        }
    }
    out
}

async fn inspect_postgres(url: &str, meta_keys: &[String], timeout: Duration) -> Result<Inspection> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| StorageError::Database(format!("invalid PostgreSQL URL: {e}")))?;
    config.application_name("linkvault config check");
    config.connect_timeout(timeout);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        // tokio-postgres keeps the reason (refused, unknown host, authentication) in the source.
        let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
        StorageError::Database(format!("{e}{cause}"))
    })?;
    let driver = tokio::spawn(connection);
    // A read-only transaction: PostgreSQL itself refuses any write made by mistake here.
    let state = match client.batch_execute("BEGIN TRANSACTION READ ONLY").await {
        Ok(()) => {
            let known = (<crate::PostgresStore as Driver>::BACKEND, crate::postgres::MIGRATIONS.len());
            state(&mut crate::postgres::PgConn::Plain(&client), meta_keys, known).await
        }
        Err(e) => Err(e.into()),
    };
    drop(client);
    let _ = driver.await;
    state.map(Inspection::Present)
}

async fn table_exists<S: Session>(s: &mut S, name: &str) -> Result<bool> {
    let stmt = sql!(
        "SELECT {sqlite:EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)}\
         {pg:to_regclass(CAST(?1 AS TEXT)) IS NOT NULL}"
    );
    s.one(stmt, &vals![name]).await
}

/// What both backends read, each statement written once (the table checks and the migration count are
/// where their catalogs differ). A table that is not there yet reads as empty.
/// `known` is the backend's name and how many migrations this build has for it.
async fn state<S: Session>(
    s: &mut S,
    meta_keys: &[String],
    (backend, known_migrations): (&'static str, usize),
) -> Result<DatabaseState> {
    let applied: i64 = match S::DIALECT {
        Dialect::Sqlite => s.one(sql!("PRAGMA user_version"), &[]).await?,
        Dialect::Postgres if table_exists(s, "schema_migrations").await? => {
            s.one(sql!("SELECT COUNT(*) FROM schema_migrations"), &[]).await?
        }
        Dialect::Postgres => 0,
    };
    let mut meta = BTreeMap::new();
    if table_exists(s, "meta").await? {
        for key in meta_keys {
            if let Some(value) = s.opt::<String>(sql!("SELECT value FROM meta WHERE key = ?1"), &vals![key]).await? {
                meta.insert(key.clone(), value);
            }
        }
    }
    let mut key_versions = Vec::new();
    if table_exists(s, "key_versions").await? {
        let stmt = sql!("SELECT version, is_current, wrapped_key FROM key_versions ORDER BY version");
        for (version, is_current, wrapped_key) in s.all::<(u32, bool, Vec<u8>)>(stmt, &[]).await? {
            key_versions.push(SealedKeyVersion { version, is_current, wrapped_key });
        }
    }
    let applied_migrations = usize::try_from(applied).unwrap_or(0);
    Ok(DatabaseState { backend, applied_migrations, known_migrations, meta, key_versions })
}
