//! A read-only look at a database, for `linkvault config check`: can it be reached, which migrations it
//! has, the meta rows naming the master key (its fingerprint, the sealed keyring, a pending rotation) and the
//! sealed key versions. Unlike [`crate::open`] it never creates a
//! file or a directory, never migrates and never writes, so checking a configuration cannot change what it
//! checks; and it gives up on an unreachable PostgreSQL server after a bounded time.

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::time::Duration;

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
    use rusqlite::{Connection, OpenFlags, OptionalExtension as _};
    if !path.exists() {
        return Ok(Inspection::Missing);
    }
    // A read-only connection still creates the `-wal` and `-shm` files of a WAL database and leaves them
    // behind. Without a `-wal` file no process has the database open and every committed page is in the main
    // file, so it is read as immutable (no locks, no side files); with one, they exist already.
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let conn = if std::path::Path::new(&wal).exists() {
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?
    } else {
        let uri = format!("file:{}?immutable=1", uri_path(&path.to_string_lossy()));
        Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?
    };
    let applied: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let table_exists = |name: &str| -> Result<bool> {
        Ok(conn
            .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some())
    };
    let mut meta = BTreeMap::new();
    if table_exists("meta")? {
        for key in meta_keys {
            let value: Option<String> =
                conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?;
            if let Some(value) = value {
                meta.insert(key.clone(), value);
            }
        }
    }
    let mut key_versions = Vec::new();
    if table_exists("key_versions")? {
        let mut stmt = conn.prepare("SELECT version, is_current, wrapped_key FROM key_versions ORDER BY version")?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? != 0, r.get::<_, Vec<u8>>(2)?)))?;
        for row in rows {
            let (version, is_current, wrapped_key) = row?;
            key_versions.push(sealed(version, is_current, wrapped_key)?);
        }
    }
    Ok(Inspection::Present(DatabaseState {
        backend: "sqlite",
        applied_migrations: usize::try_from(applied).unwrap_or(0),
        known_migrations: crate::sqlite::MIGRATIONS.len(),
        meta,
        key_versions,
    }))
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
    let state = postgres_state(&client, meta_keys).await;
    drop(client);
    let _ = driver.await;
    state.map(Inspection::Present)
}

async fn postgres_state(client: &tokio_postgres::Client, meta_keys: &[String]) -> Result<DatabaseState> {
    // A read-only transaction: PostgreSQL itself refuses any write made by mistake here.
    client.batch_execute("BEGIN TRANSACTION READ ONLY").await?;
    let exists = |name: &'static str| async move {
        let row = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).await?;
        Ok::<bool, StorageError>(row.try_get(0)?)
    };
    let applied: i64 = if exists("schema_migrations").await? {
        client.query_one("SELECT COUNT(*) FROM schema_migrations", &[]).await?.try_get(0)?
    } else {
        0
    };
    let mut meta = BTreeMap::new();
    if exists("meta").await? {
        for key in meta_keys {
            if let Some(row) = client.query_opt("SELECT value FROM meta WHERE key = $1", &[key]).await? {
                meta.insert(key.clone(), row.try_get(0)?);
            }
        }
    }
    let mut key_versions = Vec::new();
    if exists("key_versions").await? {
        for row in
            client.query("SELECT version, is_current, wrapped_key FROM key_versions ORDER BY version", &[]).await?
        {
            key_versions.push(sealed(i64::from(row.try_get::<_, i32>(0)?), row.try_get(1)?, row.try_get(2)?)?);
        }
    }
    client.batch_execute("ROLLBACK").await?;
    Ok(DatabaseState {
        backend: "postgres",
        applied_migrations: usize::try_from(applied).unwrap_or(0),
        known_migrations: crate::postgres::MIGRATIONS.len(),
        meta,
        key_versions,
    })
}

fn sealed(version: i64, is_current: bool, wrapped_key: Vec<u8>) -> Result<SealedKeyVersion> {
    let version = u32::try_from(version).map_err(|e| StorageError::Corrupt(format!("key version {version}: {e}")))?;
    Ok(SealedKeyVersion { version, is_current, wrapped_key })
}
