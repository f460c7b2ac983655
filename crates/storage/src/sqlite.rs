//! The embedded SQLite store: WAL, foreign keys, a busy timeout and `secure_delete`, so deleted secrets are
//! zeroed in the file; after a deletion the WAL is checkpointed and truncated so no old page survives there.
//!
//! Reads run inline on a small pool of connections (a point lookup costs a few µs, less than a hop to the
//! blocking pool) and reuse a read snapshot until this process writes (see `readers`); writes go through one
//! writer connection on the blocking pool, as SQLite has one writer.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use linkvault_domain::{ClientId, ConnectionStatus, NaturalKey, Scope, TokenId, TokenMode};
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

/// Client-managed token families (`ClientTokenStore`).
mod client_tokens;
/// The Link tables (`LinkStore`), kept in a file of their own.
mod link;
/// Pooled read connections and the read snapshots they reuse.
mod readers;
/// Managed-transfer previews and executions (`TransferStore`).
mod transfers;
/// Webhook endpoints and outbox delivery (`WebhookStore`).
mod webhooks;

use crate::time_conv::{from_millis, opt_from_millis, opt_to_millis, to_millis};
use crate::{
    ApiKeyRecord, AuthenticatedKey, ClaimedConnection, ClientRecord, ConnectionRecord, ConnectionSummary,
    CredentialsUpdate, InsertOutcome, KeyVersionRecord, LeaseRelease, OutboxEvent, ReauthMark, RefreshState, Result,
    RewrapCandidate, StorageError, Store, selector_as_uuid, short_error,
};

/// Ordered migrations; `PRAGMA user_version` records how many have been applied.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_initial.sql"),
    include_str!("../migrations/sqlite/0002_refresh.sql"),
    include_str!("../migrations/sqlite/0003_link.sql"),
    include_str!("../migrations/sqlite/0004_webhooks.sql"),
    include_str!("../migrations/sqlite/0005_client_tokens.sql"),
    include_str!("../migrations/sqlite/0006_transfers.sql"),
    include_str!("../migrations/sqlite/0007_transfer_follow.sql"),
    include_str!("../migrations/sqlite/0008_link_connected.sql"),
    include_str!("../migrations/sqlite/0009_link_oauth_binding.sql"),
];
#[derive(Debug)]
struct Inner {
    writer: Mutex<Connection>,
    readers: Arc<readers::ReaderPool>,
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA journal_size_limit = 0;
         PRAGMA mmap_size = 268435456;",
    )?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file. Migrations run in [`Store::migrate`].
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StorageError::Database(format!("cannot create {}: {e}", dir.display())))?;
        }
        let writer = open_connection(path)?;
        Ok(Self { inner: Arc::new(Inner { writer: Mutex::new(writer), readers: readers::ReaderPool::new(path) }) })
    }

    pub fn path(&self) -> &Path {
        self.inner.readers.path()
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.inner.readers.read(f)
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let out = f(&mut lock(&inner.writer));
            // Whatever `f` committed (even if it then failed) is visible to every read that starts after this.
            inner.readers.invalidate();
            out
        })
        .await
        .map_err(|e| StorageError::Database(format!("writer task failed: {e}")))?
    }

    /// Moves every WAL frame into the database file and truncates the WAL, so bytes that a deletion zeroed
    /// in the database are not still readable in an older frame. Ends this process's idle read snapshots
    /// first, and retries briefly while readers finish.
    fn checkpoint_truncate(readers: &readers::ReaderPool, conn: &Connection) -> Result<()> {
        for _ in 0..50 {
            readers.release_snapshots();
            let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            if busy == 0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(StorageError::Database(
            "WAL checkpoint stayed busy after deletion; it will complete on the next one".into(),
        ))
    }
}

fn uuid_col(row: &Row<'_>, idx: impl rusqlite::RowIndex) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(text_col(row, idx)?)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

/// A UUID's stored text form, written into `buf` (binding `to_string()` allocated and went through `fmt` on
/// every read).
fn uuid_text<'b>(id: &Uuid, buf: &'b mut [u8; 36]) -> &'b str {
    id.hyphenated().encode_lower(buf)
}

/// A TEXT column borrowed from the row (no allocation; for values that are parsed at once).
fn text_col<'r>(row: &'r Row<'_>, idx: impl rusqlite::RowIndex) -> rusqlite::Result<&'r str> {
    row.get_ref(idx)?
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn conv<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> rusqlite::Result<T> {
    r.map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.to_string().into()))
}

fn u32_col(row: &Row<'_>, idx: impl rusqlite::RowIndex) -> rusqlite::Result<u32> {
    conv(u32::try_from(row.get::<_, i64>(idx)?))
}

fn u64_col(row: &Row<'_>, idx: impl rusqlite::RowIndex) -> rusqlite::Result<u64> {
    conv(u64::try_from(row.get::<_, i64>(idx)?))
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const CONNECTION_COLUMNS: &str =
    "token_id, client_id, user_id, integration, scope, status, key_version, wrapped_data_key,
    data_key_generation, data_key_uses, credentials, account_id, account_name, access_expires_at, refresh_expires_at,
    last_refreshed_at, refresh_count, created_at, updated_at, version, next_refresh_at, lease_owner, lease_until,
    grant_in_flight, refresh_failures, last_error, reauth_warned_at";

/// Columns of a [`ConnectionSummary`], read by position in this order.
const SUMMARY_SELECT: &str =
    "SELECT token_id, client_id, user_id, integration, scope, status, account_id, account_name,
    access_expires_at, refresh_expires_at, last_refreshed_at, refresh_count, created_at, updated_at
    FROM connections WHERE token_id = ?1";

fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<ConnectionSummary> {
    Ok(ConnectionSummary {
        token_id: TokenId::from_uuid(uuid_col(row, 0)?),
        client_id: ClientId::from_uuid(uuid_col(row, 1)?),
        user_id: row.get(2)?,
        integration: row.get(3)?,
        scope: conv(text_col(row, 4)?.parse::<Scope>())?,
        status: conv(text_col(row, 5)?.parse::<ConnectionStatus>())?,
        account_id: row.get(6)?,
        account_name: row.get(7)?,
        access_expires_at: conv(opt_from_millis(row.get(8)?))?,
        refresh_expires_at: conv(opt_from_millis(row.get(9)?))?,
        last_refreshed_at: conv(opt_from_millis(row.get(10)?))?,
        refresh_count: u64_col(row, 11)?,
        created_at: conv(from_millis(row.get(12)?))?,
        updated_at: conv(from_millis(row.get(13)?))?,
    })
}

/// Built once: the hottest read (every token-backed request) should not format its SQL each time.
static SELECT_CONNECTION_BY_TOKEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE token_id = ?1"));

fn millis_of(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Reads a row selected with [`CONNECTION_COLUMNS`], by position (looking columns up by name costs a string
/// comparison per column per row on the hottest read path).
fn connection_from_row(row: &Row<'_>) -> rusqlite::Result<ConnectionRecord> {
    Ok(ConnectionRecord {
        token_id: TokenId::from_uuid(uuid_col(row, 0)?),
        client_id: ClientId::from_uuid(uuid_col(row, 1)?),
        user_id: row.get(2)?,
        integration: row.get(3)?,
        scope: conv(text_col(row, 4)?.parse::<Scope>())?,
        status: conv(text_col(row, 5)?.parse::<ConnectionStatus>())?,
        key_version: u32_col(row, 6)?,
        wrapped_data_key: row.get(7)?,
        data_key_generation: u32_col(row, 8)?,
        data_key_uses: u64_col(row, 9)?,
        credentials: row.get(10)?,
        account_id: row.get(11)?,
        account_name: row.get(12)?,
        access_expires_at: conv(opt_from_millis(row.get(13)?))?,
        refresh_expires_at: conv(opt_from_millis(row.get(14)?))?,
        last_refreshed_at: conv(opt_from_millis(row.get(15)?))?,
        refresh_count: u64_col(row, 16)?,
        created_at: conv(from_millis(row.get(17)?))?,
        updated_at: conv(from_millis(row.get(18)?))?,
        version: u64_col(row, 19)?,
        refresh: RefreshState {
            next_refresh_at: conv(opt_from_millis(row.get(20)?))?,
            lease_owner: row.get(21)?,
            lease_until: conv(opt_from_millis(row.get(22)?))?,
            grant_in_flight: row.get::<_, i64>(23)? != 0,
            refresh_failures: u32_col(row, 24)?,
            last_error: row.get(25)?,
            reauth_warned_at: conv(opt_from_millis(row.get(26)?))?,
        },
    })
}

fn insert_outbox_tx(tx: &Connection, event: &OutboxEvent) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO outbox (id, client_id, event_type, payload, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![
        event.id.to_string(),
        event.client_id.to_string(),
        event.event_type,
        event.payload,
        to_millis(event.created_at),
    ])?;
    Ok(())
}

/// The credentials write shared by `update_credentials` (any writer) and `complete_refresh` (the lease owner).
fn write_credentials_tx(tx: &Connection, u: &CredentialsUpdate, owner: Option<&str>) -> Result<bool> {
    let changed =
        tx.prepare_cached(
            "UPDATE connections SET status = ?1, credentials = ?2, data_key_uses = ?3,
                key_version = COALESCE(?4, key_version), wrapped_data_key = COALESCE(?5, wrapped_data_key),
                data_key_generation = COALESCE(?6, data_key_generation),
                account_id = ?7, account_name = ?8, access_expires_at = ?9, refresh_expires_at = ?10,
                last_refreshed_at = ?11, refresh_count = ?12, updated_at = ?13, version = version + 1,
                next_refresh_at = ?16, reauth_warned_at = ?17, lease_owner = NULL, lease_until = NULL,
                grant_in_flight = 0, refresh_failures = 0, last_error = NULL
             WHERE token_id = ?14 AND version = ?15 AND (?18 IS NULL OR lease_owner = ?18)",
        )?
        .execute(params![
            u.status.as_str(),
            u.credentials,
            i64_of(u.data_key_uses),
            u.rekey.as_ref().map(|k| k.key_version),
            u.rekey.as_ref().map(|k| k.wrapped_data_key.clone()),
            u.rekey.as_ref().map(|k| k.data_key_generation),
            u.account_id,
            u.account_name,
            opt_to_millis(u.access_expires_at),
            opt_to_millis(u.refresh_expires_at),
            opt_to_millis(u.last_refreshed_at),
            i64_of(u.refresh_count),
            to_millis(u.updated_at),
            u.token_id.to_string(),
            i64_of(u.expected_version),
            opt_to_millis(u.next_refresh_at),
            opt_to_millis(u.reauth_warned_at),
            owner,
        ])? == 1;
    if changed {
        if let Some(rekey) = &u.rekey {
            tx.prepare_cached("UPDATE key_versions SET wrap_count = wrap_count + 1 WHERE version = ?1")?
                .execute([rekey.key_version])?;
        }
        if let Some(event) = &u.event {
            insert_outbox_tx(tx, event)?;
        }
    }
    Ok(changed)
}

fn outbox_from_row(row: &Row<'_>) -> rusqlite::Result<OutboxEvent> {
    Ok(OutboxEvent {
        id: uuid_col(row, "id")?,
        client_id: ClientId::from_uuid(uuid_col(row, "client_id")?),
        event_type: row.get("event_type")?,
        payload: row.get("payload")?,
        created_at: conv(from_millis(row.get("created_at")?))?,
    })
}

fn api_key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key_id: uuid_col(row, "key_id")?,
        client_id: ClientId::from_uuid(uuid_col(row, "client_id")?),
        scope: conv(row.get::<_, String>("scope")?.parse::<Scope>())?,
        digest: row.get("digest")?,
        secret_prefix: row.get("secret_prefix")?,
        created_at: conv(from_millis(row.get("created_at")?))?,
        revoked_at: conv(opt_from_millis(row.get("revoked_at")?))?,
    })
}

fn insert_api_key_tx(tx: &Connection, key: &ApiKeyRecord) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO api_keys (key_id, client_id, scope, digest, secret_prefix, created_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        key.key_id.to_string(),
        key.client_id.to_string(),
        key.scope.as_str(),
        key.digest,
        key.secret_prefix,
        to_millis(key.created_at),
        opt_to_millis(key.revoked_at),
    ])?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        self.write(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let applied: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let applied = usize::try_from(applied).unwrap_or(0);
            if applied > MIGRATIONS.len() {
                return Err(StorageError::Migration(format!(
                    "the database is at schema version {applied}, newer than this linkvault knows ({}); upgrade linkvault",
                    MIGRATIONS.len()
                )));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
                tx.execute_batch(sql).map_err(|e| StorageError::Migration(format!("sqlite migration {}: {e}", i + 1)))?;
                tx.pragma_update(None, "user_version", i64::try_from(i + 1).unwrap_or(i64::MAX))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).map(|_| ())?))
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?.query_row([key], |r| r.get(0)).optional()?)
        })
    }

    async fn insert_meta_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |c| {
            c.execute("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING", [&key, &value])?;
            Ok(c.query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0))?)
        })
        .await
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [&key, &value],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_meta(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM meta WHERE key = ?1", [&key])?;
            Ok(())
        })
        .await
    }

    async fn key_versions(&self) -> Result<Vec<KeyVersionRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT version, wrapped_key, is_current, wrap_count, created_at FROM key_versions ORDER BY version",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(KeyVersionRecord {
                    version: u32_col(r, "version")?,
                    wrapped_key: r.get("wrapped_key")?,
                    is_current: r.get::<_, i64>("is_current")? != 0,
                    wrap_count: u64_col(r, "wrap_count")?,
                    created_at: conv(from_millis(r.get("created_at")?))?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn insert_key_version(&self, record: &KeyVersionRecord, make_current: bool) -> Result<bool> {
        let record = record.clone();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let inserted = tx.execute(
                "INSERT INTO key_versions (version, wrapped_key, is_current, wrap_count, created_at)
                 VALUES (?1, ?2, 0, ?3, ?4) ON CONFLICT (version) DO NOTHING",
                params![record.version, record.wrapped_key, i64_of(record.wrap_count), to_millis(record.created_at)],
            )? == 1;
            if inserted && make_current {
                // Clear first, then set: SQLite checks the partial unique index row by row, so flipping both
                // flags in one statement fails whenever the new version sorts before the current one.
                tx.execute("UPDATE key_versions SET is_current = 0 WHERE is_current = 1", [])?;
                tx.execute("UPDATE key_versions SET is_current = 1 WHERE version = ?1", [record.version])?;
            }
            tx.commit()?;
            Ok(inserted)
        })
        .await
    }

    async fn count_connections_by_key_version(&self) -> Result<Vec<(u32, u64)>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT v.version AS version, (SELECT COUNT(*) FROM connections WHERE key_version = v.version) AS n
                 FROM key_versions v ORDER BY v.version",
            )?;
            let rows = stmt.query_map([], |r| Ok((u32_col(r, "version")?, u64_col(r, "n")?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn delete_key_version_if_unused(&self, version: u32) -> Result<bool> {
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM key_versions WHERE version = ?1 AND is_current = 0
                 AND NOT EXISTS (SELECT 1 FROM connections WHERE key_version = ?1)",
                [version],
            )? == 1)
        })
        .await
    }

    async fn connections_needing_rewrap(&self, current: u32, limit: u32) -> Result<Vec<RewrapCandidate>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT token_id, client_id, key_version, data_key_generation, wrapped_data_key
                 FROM connections WHERE key_version <> ?1 LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![current, limit], |r| {
                Ok(RewrapCandidate {
                    token_id: TokenId::from_uuid(uuid_col(r, "token_id")?),
                    client_id: ClientId::from_uuid(uuid_col(r, "client_id")?),
                    key_version: u32_col(r, "key_version")?,
                    data_key_generation: u32_col(r, "data_key_generation")?,
                    wrapped_data_key: r.get("wrapped_data_key")?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn rewrap_data_key(&self, candidate: &RewrapCandidate, new_version: u32, wrapped: &[u8]) -> Result<bool> {
        let (candidate, wrapped) = (candidate.clone(), wrapped.to_vec());
        self.write(move |c| {
            let tx = c.transaction()?;
            let changed =
                tx.prepare_cached(
                    "UPDATE connections SET key_version = ?1, wrapped_data_key = ?2
                     WHERE token_id = ?3 AND key_version = ?4 AND data_key_generation = ?5",
                )?
                .execute(params![
                    new_version,
                    wrapped,
                    candidate.token_id.to_string(),
                    candidate.key_version,
                    candidate.data_key_generation
                ])? == 1;
            if changed {
                tx.prepare_cached("UPDATE key_versions SET wrap_count = wrap_count + 1 WHERE version = ?1")?
                    .execute([new_version])?;
            }
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn insert_client(&self, client: &ClientRecord, keys: &[ApiKeyRecord]) -> Result<()> {
        let (client, keys) = (client.clone(), keys.to_vec());
        self.write(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO clients (client_id, name, token_mode, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    client.client_id.to_string(),
                    client.name,
                    client.token_mode.as_str(),
                    to_millis(client.created_at)
                ],
            )?;
            for key in &keys {
                insert_api_key_tx(&tx, key)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_client(&self, client_id: ClientId) -> Result<Option<ClientRecord>> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT client_id, name, token_mode, created_at FROM clients WHERE client_id = ?1")?
                .query_row([client_id.to_string()], |r| {
                    Ok(ClientRecord {
                        client_id: ClientId::from_uuid(uuid_col(r, "client_id")?),
                        name: r.get("name")?,
                        token_mode: conv(r.get::<_, String>("token_mode")?.parse::<TokenMode>())?,
                        created_at: conv(from_millis(r.get("created_at")?))?,
                    })
                })
                .optional()?)
        })
    }

    async fn set_client_token_mode(&self, client_id: ClientId, mode: TokenMode) -> Result<bool> {
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE clients SET token_mode = ?1 WHERE client_id = ?2",
                params![mode.as_str(), client_id.to_string()],
            )? == 1)
        })
        .await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let key = key.clone();
        self.write(move |c| insert_api_key_tx(c, &key)).await
    }

    async fn list_api_keys(&self, client_id: ClientId) -> Result<Vec<ApiKeyRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT key_id, client_id, scope, digest, secret_prefix, created_at, revoked_at
                 FROM api_keys WHERE client_id = ?1 ORDER BY created_at, key_id",
            )?;
            let rows = stmt.query_map([client_id.to_string()], api_key_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn revoke_api_keys(&self, client_id: ClientId, selector: &str, at: OffsetDateTime) -> Result<u64> {
        let by_id = selector_as_uuid(selector).map(|u| u.to_string()).unwrap_or_default();
        let selector = selector.to_owned();
        self.write(move |c| {
            let n = c.execute(
                "UPDATE api_keys SET revoked_at = ?1
                 WHERE client_id = ?2 AND revoked_at IS NULL AND (key_id = ?3 OR secret_prefix = ?4)",
                params![to_millis(at), client_id.to_string(), by_id, selector],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn find_api_key(&self, digest: &[u8]) -> Result<Option<AuthenticatedKey>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT k.key_id, k.client_id, k.scope, k.digest, c.token_mode
                 FROM api_keys k JOIN clients c ON c.client_id = k.client_id
                 WHERE k.digest = ?1 AND k.revoked_at IS NULL",
            )?
            .query_row([digest], |r| {
                // By position, in the SELECT's order (this runs on every authenticated request).
                Ok(AuthenticatedKey {
                    key_id: uuid_col(r, 0)?,
                    client_id: ClientId::from_uuid(uuid_col(r, 1)?),
                    scope: conv(text_col(r, 2)?.parse::<Scope>())?,
                    digest: r.get(3)?,
                    token_mode: conv(text_col(r, 4)?.parse::<TokenMode>())?,
                })
            })
            .optional()?)
        })
    }

    async fn find_connection_by_natural_key(&self, key: &NaturalKey) -> Result<Option<ConnectionRecord>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {CONNECTION_COLUMNS} FROM connections
                 WHERE client_id = ?1 AND user_id = ?2 AND integration = ?3 AND scope = ?4"
            ))?
            .query_row(
                params![key.client_id.to_string(), key.user_id.as_str(), key.integration.as_str(), key.scope.as_str()],
                connection_from_row,
            )
            .optional()?)
        })
    }

    async fn get_connection(&self, token_id: TokenId) -> Result<Option<ConnectionRecord>> {
        self.read(|c| {
            Ok(c.prepare_cached(&SELECT_CONNECTION_BY_TOKEN)?
                .query_row([uuid_text(token_id.as_uuid(), &mut [0; 36])], connection_from_row)
                .optional()?)
        })
    }

    async fn get_connection_summary(&self, token_id: TokenId) -> Result<Option<ConnectionSummary>> {
        self.read(|c| {
            let mut buf = [0; 36];
            let id = uuid_text(token_id.as_uuid(), &mut buf);
            Ok(c.prepare_cached(SUMMARY_SELECT)?.query_row([id], summary_from_row).optional()?)
        })
    }

    async fn insert_connection(&self, record: &ConnectionRecord, event: Option<&OutboxEvent>) -> Result<InsertOutcome> {
        let r = record.clone();
        let event = event.cloned();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let retired: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM retired_tokens WHERE token_id = ?1)")?
                .query_row([r.token_id.to_string()], |row| row.get(0))?;
            if retired {
                return Ok(InsertOutcome::TokenIdRetired);
            }
            let inserted =
                tx.prepare_cached(&format!(
                    "INSERT INTO connections ({CONNECTION_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
                             ?21, ?22, ?23, ?24, ?25, ?26, ?27)
                     ON CONFLICT (client_id, user_id, integration, scope) DO NOTHING"
                ))?
                .execute(params![
                    r.token_id.to_string(),
                    r.client_id.to_string(),
                    r.user_id,
                    r.integration,
                    r.scope.as_str(),
                    r.status.as_str(),
                    r.key_version,
                    r.wrapped_data_key,
                    r.data_key_generation,
                    i64_of(r.data_key_uses),
                    r.credentials,
                    r.account_id,
                    r.account_name,
                    opt_to_millis(r.access_expires_at),
                    opt_to_millis(r.refresh_expires_at),
                    opt_to_millis(r.last_refreshed_at),
                    i64_of(r.refresh_count),
                    to_millis(r.created_at),
                    to_millis(r.updated_at),
                    i64_of(r.version),
                    opt_to_millis(r.refresh.next_refresh_at),
                    r.refresh.lease_owner,
                    opt_to_millis(r.refresh.lease_until),
                    i64::from(r.refresh.grant_in_flight),
                    r.refresh.refresh_failures,
                    short_error(r.refresh.last_error.as_deref()),
                    opt_to_millis(r.refresh.reauth_warned_at),
                ])? == 1;
            if !inserted {
                return Ok(InsertOutcome::NaturalKeyTaken);
            }
            tx.prepare_cached("UPDATE key_versions SET wrap_count = wrap_count + 1 WHERE version = ?1")?
                .execute([r.key_version])?;
            if let Some(event) = &event {
                insert_outbox_tx(&tx, event)?;
            }
            tx.commit()?;
            Ok(InsertOutcome::Inserted)
        })
        .await
    }

    async fn update_credentials(&self, u: &CredentialsUpdate) -> Result<bool> {
        let u = u.clone();
        self.write(move |c| {
            let tx = c.transaction()?;
            let changed = write_credentials_tx(&tx, &u, None)?;
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn delete_connection(
        &self,
        client_id: ClientId,
        token_id: TokenId,
        event: Option<&OutboxEvent>,
    ) -> Result<bool> {
        let event = event.cloned();
        let readers = Arc::clone(&self.inner.readers);
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let deleted = tx.execute(
                "DELETE FROM connections WHERE token_id = ?1 AND client_id = ?2",
                [token_id.to_string(), client_id.to_string()],
            )? == 1;
            if deleted {
                tx.execute(
                    "INSERT INTO retired_tokens (token_id, retired_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![token_id.to_string(), to_millis(OffsetDateTime::now_utc())],
                )?;
                if let Some(event) = &event {
                    insert_outbox_tx(&tx, event)?;
                }
            }
            tx.commit()?;
            if deleted && let Err(e) = SqliteStore::checkpoint_truncate(&readers, c) {
                // The deletion is committed; only the scrub of older WAL frames is late. It completes at the next
                // checkpoint, so report success rather than invite a retry that would find nothing.
                tracing::warn!(error = %e, "deleted connection: WAL checkpoint deferred");
            }
            Ok(deleted)
        })
        .await
    }

    async fn is_token_retired(&self, token_id: TokenId) -> Result<bool> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT EXISTS (SELECT 1 FROM retired_tokens WHERE token_id = ?1)")?
                .query_row([token_id.to_string()], |r| r.get(0))?)
        })
    }

    async fn count_connections(&self) -> Result<u64> {
        self.read(|c| {
            Ok(u64::try_from(c.query_row("SELECT COUNT(*) FROM connections", [], |r| r.get::<_, i64>(0))?).unwrap_or(0))
        })
    }

    async fn claim_due_connections(
        &self,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedConnection>> {
        let (owner, now_ms, until_ms) =
            (owner.to_owned(), to_millis(now), to_millis(now).saturating_add(millis_of(lease)));
        self.write(move |c| {
            // One writer: selecting and updating inside an IMMEDIATE transaction is the whole claim.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let due: Vec<(String, i64, bool)> = tx
                .prepare_cached(
                    "SELECT token_id, next_refresh_at, lease_owner IS NOT NULL FROM connections
                     WHERE status = 'active' AND next_refresh_at <= ?1 AND grant_in_flight = 0
                       AND (lease_until IS NULL OR lease_until <= ?1)
                     ORDER BY next_refresh_at LIMIT ?2",
                )?
                .query_map(params![now_ms, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut claimed = Vec::with_capacity(due.len());
            for (token_id, due_ms, had_lease) in due {
                let record = tx
                    .prepare_cached(&format!(
                        "UPDATE connections SET lease_owner = ?1, lease_until = ?2, version = version + 1
                         WHERE token_id = ?3 RETURNING {CONNECTION_COLUMNS}"
                    ))?
                    .query_row(params![owner, until_ms, token_id], connection_from_row)?;
                claimed.push(ClaimedConnection {
                    record,
                    due_at: from_millis(due_ms)?,
                    took_over_expired_lease: had_lease,
                });
            }
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn claim_connection(
        &self,
        token_id: TokenId,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ConnectionRecord>> {
        let (owner, now_ms, until_ms) =
            (owner.to_owned(), to_millis(now), to_millis(now).saturating_add(millis_of(lease)));
        self.write(move |c| {
            Ok(c.prepare_cached(&format!(
                "UPDATE connections SET lease_owner = ?1, lease_until = ?2, version = version + 1
                 WHERE token_id = ?3 AND status = 'active' AND grant_in_flight = 0
                   AND (lease_until IS NULL OR lease_until <= ?4)
                 RETURNING {CONNECTION_COLUMNS}"
            ))?
            .query_row(params![owner, until_ms, token_id.to_string(), now_ms], connection_from_row)
            .optional()?)
        })
        .await
    }

    async fn mark_grant_in_flight(
        &self,
        token_id: TokenId,
        version: u64,
        owner: &str,
        now: OffsetDateTime,
        min_remaining: std::time::Duration,
    ) -> Result<bool> {
        let (owner, threshold) = (owner.to_owned(), to_millis(now).saturating_add(millis_of(min_remaining)));
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE connections SET grant_in_flight = 1
                 WHERE token_id = ?1 AND version = ?2 AND lease_owner = ?3 AND lease_until > ?4",
            )?
            .execute(params![token_id.to_string(), i64_of(version), owner, threshold])?
                == 1)
        })
        .await
    }

    async fn complete_refresh(&self, update: &CredentialsUpdate, owner: &str) -> Result<bool> {
        let (u, owner) = (update.clone(), owner.to_owned());
        self.write(move |c| {
            let tx = c.transaction()?;
            let changed = write_credentials_tx(&tx, &u, Some(&owner))?;
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn release_lease(&self, release: &LeaseRelease) -> Result<bool> {
        let r = release.clone();
        self.write(move |c| {
            let tx = c.transaction()?;
            let changed =
                tx.prepare_cached(
                    "UPDATE connections SET lease_owner = NULL, lease_until = NULL, grant_in_flight = 0,
                        next_refresh_at = ?1, refresh_failures = ?2, last_error = ?3, reauth_warned_at = ?4
                     WHERE token_id = ?5 AND version = ?6 AND lease_owner = ?7",
                )?
                .execute(params![
                    to_millis(r.next_refresh_at),
                    r.refresh_failures,
                    short_error(r.last_error.as_deref()),
                    opt_to_millis(r.reauth_warned_at),
                    r.token_id.to_string(),
                    i64_of(r.expected_version),
                    r.owner,
                ])? == 1;
            if changed && let Some(event) = &r.event {
                insert_outbox_tx(&tx, event)?;
            }
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn mark_reauth_required(&self, mark: &ReauthMark) -> Result<bool> {
        let m = mark.clone();
        self.write(move |c| {
            let tx = c.transaction()?;
            let changed =
                tx.prepare_cached(
                    "UPDATE connections SET status = 'reauthRequired', lease_owner = NULL, lease_until = NULL,
                        grant_in_flight = 0, next_refresh_at = NULL, last_error = ?1, updated_at = ?2,
                        version = version + 1
                     WHERE token_id = ?3 AND version = ?4 AND (?5 IS NULL OR lease_owner = ?5)",
                )?
                .execute(params![
                    short_error(m.last_error.as_deref()),
                    to_millis(m.updated_at),
                    m.token_id.to_string(),
                    i64_of(m.expected_version),
                    m.owner,
                ])? == 1;
            if changed {
                insert_outbox_tx(&tx, &m.event)?;
            }
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn expired_leases(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<ConnectionRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {CONNECTION_COLUMNS} FROM connections
                 WHERE lease_until IS NOT NULL AND lease_until <= ?1 ORDER BY lease_until LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![to_millis(now), limit], connection_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn take_over_expired_lease(
        &self,
        token_id: TokenId,
        expected_version: u64,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ConnectionRecord>> {
        let (owner, now_ms, until_ms) =
            (owner.to_owned(), to_millis(now), to_millis(now).saturating_add(millis_of(lease)));
        self.write(move |c| {
            Ok(c.prepare_cached(&format!(
                "UPDATE connections SET lease_owner = ?1, lease_until = ?2, version = version + 1
                 WHERE token_id = ?3 AND version = ?4 AND lease_until IS NOT NULL AND lease_until <= ?5
                 RETURNING {CONNECTION_COLUMNS}"
            ))?
            .query_row(
                params![owner, until_ms, token_id.to_string(), i64_of(expected_version), now_ms],
                connection_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn count_due_connections(&self, now: OffsetDateTime) -> Result<u64> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM connections WHERE status = 'active' AND next_refresh_at <= ?1")?
                .query_row([to_millis(now)], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    async fn count_pending_outbox(&self) -> Result<u64> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL")?
                .query_row([], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    async fn pending_outbox_events(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, client_id, event_type, payload, created_at FROM outbox
                 WHERE delivered_at IS NULL AND given_up_at IS NULL ORDER BY created_at, rowid LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], outbox_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

#[cfg(test)]
mod column_order_tests {
    /// `connection_from_row` reads by position: this is the order it assumes.
    #[test]
    fn connection_columns_are_in_the_order_connection_from_row_reads() {
        let columns: Vec<&str> = super::CONNECTION_COLUMNS.split(',').map(str::trim).collect();
        assert_eq!(
            columns,
            [
                "token_id",
                "client_id",
                "user_id",
                "integration",
                "scope",
                "status",
                "key_version",
                "wrapped_data_key",
                "data_key_generation",
                "data_key_uses",
                "credentials",
                "account_id",
                "account_name",
                "access_expires_at",
                "refresh_expires_at",
                "last_refreshed_at",
                "refresh_count",
                "created_at",
                "updated_at",
                "version",
                "next_refresh_at",
                "lease_owner",
                "lease_until",
                "grant_in_flight",
                "refresh_failures",
                "last_error",
                "reauth_warned_at"
            ]
        );
    }
}
