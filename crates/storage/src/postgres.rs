//! The PostgreSQL store, for several stateless linkvault instances sharing one database.
//!
//! Migrations are serialised across instances with a transaction-scoped advisory lock. Deleted rows stay
//! as dead tuples until vacuum: deletion removes the row and its wrapped data key at once, and
//! `docs/architecture.md` tells operators how to make vacuum and backups honour that.

use std::str::FromStr;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use linkvault_domain::{ClientId, ConnectionStatus, NaturalKey, Scope, TokenId, TokenMode};
use time::OffsetDateTime;
use tokio_postgres::{NoTls, Row};

/// Client-managed token families (`ClientTokenStore`).
mod client_tokens;
/// The Link tables (`LinkStore`), kept in a file of their own.
mod link;
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

pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_initial.sql"),
    include_str!("../migrations/postgres/0002_refresh.sql"),
    include_str!("../migrations/postgres/0003_link.sql"),
    include_str!("../migrations/postgres/0004_webhooks.sql"),
    include_str!("../migrations/postgres/0005_client_tokens.sql"),
    include_str!("../migrations/postgres/0006_transfers.sql"),
    include_str!("../migrations/postgres/0007_transfer_follow.sql"),
    include_str!("../migrations/postgres/0008_link_connected.sql"),
    include_str!("../migrations/postgres/0009_link_oauth_binding.sql"),
];
/// The database clock in Unix milliseconds. `clock_timestamp()`, not `now()`: the latter is frozen at the
/// start of the transaction, and leases must be measured against the time the statement actually runs.
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
/// Arbitrary constant naming linkvault's migration lock.
const MIGRATION_LOCK: i64 = 0x6c69_6e6b_7661_756c;
const POOL_SIZE: usize = 16;

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    schema: Option<String>,
}

impl std::fmt::Debug for PostgresStore {
    // The URL may carry a password, so it is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("schema", &self.schema).finish_non_exhaustive()
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}

fn u32_of(v: i32) -> Result<u32> {
    u32::try_from(v).map_err(|e| corrupt("negative key number", e))
}

fn u64_of(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|e| corrupt("negative counter", e))
}

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn parse<T: FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| corrupt(what, e))
}

const CONNECTION_COLUMNS: &str =
    "token_id, client_id, user_id, integration, scope, status, key_version, wrapped_data_key,
    data_key_generation, data_key_uses, credentials, account_id, account_name, access_expires_at, refresh_expires_at,
    last_refreshed_at, refresh_count, created_at, updated_at, version, next_refresh_at, lease_owner, lease_until,
    grant_in_flight, refresh_failures, last_error, reauth_warned_at";

/// [`CONNECTION_COLUMNS`] qualified with a table alias, for `UPDATE … FROM … RETURNING`.
fn qualified_columns(alias: &str) -> String {
    CONNECTION_COLUMNS.split(',').map(|c| format!("{alias}.{}", c.trim())).collect::<Vec<_>>().join(", ")
}

fn millis_of(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn u32_of_i32(v: i32) -> Result<u32> {
    u32::try_from(v).map_err(|e| corrupt("negative counter", e))
}

/// Takes the pool's transaction type (not `GenericClient`) for its statement cache.
async fn insert_outbox(c: &deadpool_postgres::Transaction<'_>, event: &OutboxEvent) -> Result<()> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO outbox (id, client_id, event_type, payload, created_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .await?;
    c.execute(
        &stmt,
        &[&event.id, event.client_id.as_uuid(), &event.event_type, &event.payload, &to_millis(event.created_at)],
    )
    .await?;
    Ok(())
}

fn outbox_from_row(r: &Row) -> Result<OutboxEvent> {
    Ok(OutboxEvent {
        id: r.try_get("id")?,
        client_id: ClientId::from_uuid(r.try_get("client_id")?),
        event_type: r.try_get("event_type")?,
        payload: r.try_get("payload")?,
        created_at: from_millis(r.try_get("created_at")?)?,
    })
}

fn connection_from_row(r: &Row) -> Result<ConnectionRecord> {
    Ok(ConnectionRecord {
        token_id: TokenId::from_uuid(r.try_get("token_id")?),
        client_id: ClientId::from_uuid(r.try_get("client_id")?),
        user_id: r.try_get("user_id")?,
        integration: r.try_get("integration")?,
        scope: parse::<Scope>("scope", r.try_get("scope")?)?,
        status: parse::<ConnectionStatus>("status", r.try_get("status")?)?,
        key_version: u32_of(r.try_get("key_version")?)?,
        wrapped_data_key: r.try_get("wrapped_data_key")?,
        data_key_generation: u32_of(r.try_get("data_key_generation")?)?,
        data_key_uses: u64_of(r.try_get("data_key_uses")?)?,
        credentials: r.try_get("credentials")?,
        account_id: r.try_get("account_id")?,
        account_name: r.try_get("account_name")?,
        access_expires_at: opt_from_millis(r.try_get("access_expires_at")?)?,
        refresh_expires_at: opt_from_millis(r.try_get("refresh_expires_at")?)?,
        last_refreshed_at: opt_from_millis(r.try_get("last_refreshed_at")?)?,
        refresh_count: u64_of(r.try_get("refresh_count")?)?,
        created_at: from_millis(r.try_get("created_at")?)?,
        updated_at: from_millis(r.try_get("updated_at")?)?,
        version: u64_of(r.try_get("version")?)?,
        refresh: RefreshState {
            next_refresh_at: opt_from_millis(r.try_get("next_refresh_at")?)?,
            lease_owner: r.try_get("lease_owner")?,
            lease_until: opt_from_millis(r.try_get("lease_until")?)?,
            grant_in_flight: r.try_get("grant_in_flight")?,
            refresh_failures: u32_of_i32(r.try_get("refresh_failures")?)?,
            last_error: r.try_get("last_error")?,
            reauth_warned_at: opt_from_millis(r.try_get("reauth_warned_at")?)?,
        },
    })
}

fn api_key_from_row(r: &Row) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key_id: r.try_get("key_id")?,
        client_id: ClientId::from_uuid(r.try_get("client_id")?),
        scope: parse::<Scope>("scope", r.try_get("scope")?)?,
        digest: r.try_get("digest")?,
        secret_prefix: r.try_get("secret_prefix")?,
        created_at: from_millis(r.try_get("created_at")?)?,
        revoked_at: opt_from_millis(r.try_get("revoked_at")?)?,
    })
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
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StorageError::Database(format!("connection pool: {e}")))?;
        let store = Self { pool, schema: schema.map(str::to_owned) };
        store.ping().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<()> {
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
    }

    async fn ping(&self) -> Result<()> {
        self.client().await?.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        let stmt = c.prepare_cached("SELECT value FROM meta WHERE key = $1").await?;
        Ok(c.query_opt(&stmt, &[&key]).await?.map(|r| r.try_get(0)).transpose()?)
    }

    async fn insert_meta_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let c = self.client().await?;
        c.execute("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", &[&key, &value])
            .await?;
        Ok(c.query_one("SELECT value FROM meta WHERE key = $1", &[&key]).await?.try_get(0)?)
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await?;
        Ok(())
    }

    async fn delete_meta(&self, key: &str) -> Result<()> {
        self.client().await?.execute("DELETE FROM meta WHERE key = $1", &[&key]).await?;
        Ok(())
    }

    async fn key_versions(&self) -> Result<Vec<KeyVersionRecord>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT version, wrapped_key, is_current, wrap_count, created_at FROM key_versions ORDER BY version",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyVersionRecord {
                    version: u32_of(r.try_get("version")?)?,
                    wrapped_key: r.try_get("wrapped_key")?,
                    is_current: r.try_get("is_current")?,
                    wrap_count: u64_of(r.try_get("wrap_count")?)?,
                    created_at: from_millis(r.try_get("created_at")?)?,
                })
            })
            .collect()
    }

    async fn insert_key_version(&self, record: &KeyVersionRecord, make_current: bool) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let version = i32_of(record.version);
        let inserted = tx
            .execute(
                "INSERT INTO key_versions (version, wrapped_key, is_current, wrap_count, created_at)
                 VALUES ($1, $2, FALSE, $3, $4) ON CONFLICT (version) DO NOTHING",
                &[&version, &record.wrapped_key, &i64_of(record.wrap_count), &to_millis(record.created_at)],
            )
            .await?
            == 1;
        if inserted && make_current {
            // Clear first, then set: the partial unique index allows one current version at a time.
            tx.execute("UPDATE key_versions SET is_current = FALSE WHERE is_current", &[]).await?;
            tx.execute("UPDATE key_versions SET is_current = TRUE WHERE version = $1", &[&version]).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn count_connections_by_key_version(&self) -> Result<Vec<(u32, u64)>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT v.version, (SELECT COUNT(*) FROM connections WHERE key_version = v.version) AS n
                 FROM key_versions v ORDER BY v.version",
                &[],
            )
            .await?;
        rows.iter().map(|r| Ok((u32_of(r.try_get(0)?)?, u64_of(r.try_get(1)?)?))).collect()
    }

    async fn delete_key_version_if_unused(&self, version: u32) -> Result<bool> {
        let v = i32_of(version);
        Ok(self
            .client()
            .await?
            .execute(
                "DELETE FROM key_versions WHERE version = $1 AND NOT is_current
                 AND NOT EXISTS (SELECT 1 FROM connections WHERE key_version = $1)",
                &[&v],
            )
            .await?
            == 1)
    }

    async fn connections_needing_rewrap(&self, current: u32, limit: u32) -> Result<Vec<RewrapCandidate>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT token_id, client_id, key_version, data_key_generation, wrapped_data_key
                 FROM connections WHERE key_version <> $1 LIMIT $2",
                &[&i32_of(current), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RewrapCandidate {
                    token_id: TokenId::from_uuid(r.try_get("token_id")?),
                    client_id: ClientId::from_uuid(r.try_get("client_id")?),
                    key_version: u32_of(r.try_get("key_version")?)?,
                    data_key_generation: u32_of(r.try_get("data_key_generation")?)?,
                    wrapped_data_key: r.try_get("wrapped_data_key")?,
                })
            })
            .collect()
    }

    async fn rewrap_data_key(&self, candidate: &RewrapCandidate, new_version: u32, wrapped: &[u8]) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let new_version = i32_of(new_version);
        let changed = tx
            .execute(
                "UPDATE connections SET key_version = $1, wrapped_data_key = $2
                 WHERE token_id = $3 AND key_version = $4 AND data_key_generation = $5",
                &[
                    &new_version,
                    &wrapped,
                    candidate.token_id.as_uuid(),
                    &i32_of(candidate.key_version),
                    &i32_of(candidate.data_key_generation),
                ],
            )
            .await?
            == 1;
        if changed {
            tx.execute("UPDATE key_versions SET wrap_count = wrap_count + 1 WHERE version = $1", &[&new_version])
                .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn insert_client(&self, client: &ClientRecord, keys: &[ApiKeyRecord]) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "INSERT INTO clients (client_id, name, token_mode, created_at) VALUES ($1, $2, $3, $4)",
            &[client.client_id.as_uuid(), &client.name, &client.token_mode.as_str(), &to_millis(client.created_at)],
        )
        .await?;
        for key in keys {
            insert_api_key(&*tx, key).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_client(&self, client_id: ClientId) -> Result<Option<ClientRecord>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT client_id, name, token_mode, created_at FROM clients WHERE client_id = $1",
                &[client_id.as_uuid()],
            )
            .await?;
        row.map(|r| {
            Ok(ClientRecord {
                client_id: ClientId::from_uuid(r.try_get("client_id")?),
                name: r.try_get("name")?,
                token_mode: parse::<TokenMode>("token_mode", r.try_get("token_mode")?)?,
                created_at: from_millis(r.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    async fn set_client_token_mode(&self, client_id: ClientId, mode: TokenMode) -> Result<bool> {
        Ok(self
            .client()
            .await?
            .execute("UPDATE clients SET token_mode = $1 WHERE client_id = $2", &[&mode.as_str(), client_id.as_uuid()])
            .await?
            == 1)
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let c = self.client().await?;
        insert_api_key(&**c, key).await
    }

    async fn list_api_keys(&self, client_id: ClientId) -> Result<Vec<ApiKeyRecord>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT key_id, client_id, scope, digest, secret_prefix, created_at, revoked_at
                 FROM api_keys WHERE client_id = $1 ORDER BY created_at, key_id",
                &[client_id.as_uuid()],
            )
            .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_keys(&self, client_id: ClientId, selector: &str, at: OffsetDateTime) -> Result<u64> {
        let by_id = selector_as_uuid(selector);
        Ok(self
            .client()
            .await?
            .execute(
                "UPDATE api_keys SET revoked_at = $1
                 WHERE client_id = $2 AND revoked_at IS NULL AND (key_id = $3 OR secret_prefix = $4)",
                &[&to_millis(at), client_id.as_uuid(), &by_id, &selector],
            )
            .await?)
    }

    async fn find_api_key(&self, digest: &[u8]) -> Result<Option<AuthenticatedKey>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT k.key_id, k.client_id, k.scope, k.digest, c.token_mode
                 FROM api_keys k JOIN clients c ON c.client_id = k.client_id
                 WHERE k.digest = $1 AND k.revoked_at IS NULL",
            )
            .await?;
        let row = c.query_opt(&stmt, &[&digest]).await?;
        row.map(|r| {
            Ok(AuthenticatedKey {
                key_id: r.try_get("key_id")?,
                client_id: ClientId::from_uuid(r.try_get("client_id")?),
                scope: parse::<Scope>("scope", r.try_get("scope")?)?,
                digest: r.try_get("digest")?,
                token_mode: parse::<TokenMode>("token_mode", r.try_get("token_mode")?)?,
            })
        })
        .transpose()
    }

    async fn find_connection_by_natural_key(&self, key: &NaturalKey) -> Result<Option<ConnectionRecord>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {CONNECTION_COLUMNS} FROM connections
                 WHERE client_id = $1 AND user_id = $2 AND integration = $3 AND scope = $4"
            ))
            .await?;
        let row = c
            .query_opt(
                &stmt,
                &[key.client_id.as_uuid(), &key.user_id.as_str(), &key.integration.as_str(), &key.scope.as_str()],
            )
            .await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn get_connection(&self, token_id: TokenId) -> Result<Option<ConnectionRecord>> {
        let c = self.client().await?;
        let stmt =
            c.prepare_cached(&format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE token_id = $1")).await?;
        let row = c.query_opt(&stmt, &[token_id.as_uuid()]).await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn get_connection_summary(&self, token_id: TokenId) -> Result<Option<ConnectionSummary>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT token_id, client_id, user_id, integration, scope, status, account_id, account_name,
                        access_expires_at, refresh_expires_at, last_refreshed_at, refresh_count, created_at, updated_at
                 FROM connections WHERE token_id = $1",
            )
            .await?;
        let Some(r) = c.query_opt(&stmt, &[token_id.as_uuid()]).await? else { return Ok(None) };
        Ok(Some(ConnectionSummary {
            token_id: TokenId::from_uuid(r.try_get("token_id")?),
            client_id: ClientId::from_uuid(r.try_get("client_id")?),
            user_id: r.try_get("user_id")?,
            integration: r.try_get("integration")?,
            scope: parse::<Scope>("scope", r.try_get("scope")?)?,
            status: parse::<ConnectionStatus>("status", r.try_get("status")?)?,
            account_id: r.try_get("account_id")?,
            account_name: r.try_get("account_name")?,
            access_expires_at: opt_from_millis(r.try_get("access_expires_at")?)?,
            refresh_expires_at: opt_from_millis(r.try_get("refresh_expires_at")?)?,
            last_refreshed_at: opt_from_millis(r.try_get("last_refreshed_at")?)?,
            refresh_count: u64_of(r.try_get("refresh_count")?)?,
            created_at: from_millis(r.try_get("created_at")?)?,
            updated_at: from_millis(r.try_get("updated_at")?)?,
        }))
    }

    async fn insert_connection(&self, r: &ConnectionRecord, event: Option<&OutboxEvent>) -> Result<InsertOutcome> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let retired: bool = tx
            .query_one("SELECT EXISTS (SELECT 1 FROM retired_tokens WHERE token_id = $1)", &[r.token_id.as_uuid()])
            .await?
            .try_get(0)?;
        if retired {
            return Ok(InsertOutcome::TokenIdRetired);
        }
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO connections ({CONNECTION_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
                         $21, $22, $23, $24, $25, $26, $27)
                 ON CONFLICT (client_id, user_id, integration, scope) DO NOTHING"
            ))
            .await?;
        let inserted = tx
            .execute(
                &stmt,
                &[
                    r.token_id.as_uuid(),
                    r.client_id.as_uuid(),
                    &r.user_id,
                    &r.integration,
                    &r.scope.as_str(),
                    &r.status.as_str(),
                    &i32_of(r.key_version),
                    &r.wrapped_data_key,
                    &i32_of(r.data_key_generation),
                    &i64_of(r.data_key_uses),
                    &r.credentials,
                    &r.account_id,
                    &r.account_name,
                    &opt_to_millis(r.access_expires_at),
                    &opt_to_millis(r.refresh_expires_at),
                    &opt_to_millis(r.last_refreshed_at),
                    &i64_of(r.refresh_count),
                    &to_millis(r.created_at),
                    &to_millis(r.updated_at),
                    &i64_of(r.version),
                    &opt_to_millis(r.refresh.next_refresh_at),
                    &r.refresh.lease_owner,
                    &opt_to_millis(r.refresh.lease_until),
                    &r.refresh.grant_in_flight,
                    &i32::try_from(r.refresh.refresh_failures).unwrap_or(i32::MAX),
                    &short_error(r.refresh.last_error.as_deref()),
                    &opt_to_millis(r.refresh.reauth_warned_at),
                ],
            )
            .await?
            == 1;
        if !inserted {
            return Ok(InsertOutcome::NaturalKeyTaken);
        }
        tx.execute("UPDATE key_versions SET wrap_count = wrap_count + 1 WHERE version = $1", &[&i32_of(r.key_version)])
            .await?;
        if let Some(event) = event {
            insert_outbox(&tx, event).await?;
        }
        tx.commit().await?;
        Ok(InsertOutcome::Inserted)
    }

    async fn update_credentials(&self, u: &CredentialsUpdate) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let changed = write_credentials(&tx, u, None).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn delete_connection(
        &self,
        client_id: ClientId,
        token_id: TokenId,
        event: Option<&OutboxEvent>,
    ) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let deleted = tx
            .execute(
                "DELETE FROM connections WHERE token_id = $1 AND client_id = $2",
                &[token_id.as_uuid(), client_id.as_uuid()],
            )
            .await?
            == 1;
        if deleted {
            tx.execute(
                "INSERT INTO retired_tokens (token_id, retired_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[token_id.as_uuid(), &to_millis(OffsetDateTime::now_utc())],
            )
            .await?;
            if let Some(event) = event {
                insert_outbox(&tx, event).await?;
            }
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn is_token_retired(&self, token_id: TokenId) -> Result<bool> {
        let c = self.client().await?;
        Ok(c.query_one("SELECT EXISTS (SELECT 1 FROM retired_tokens WHERE token_id = $1)", &[token_id.as_uuid()])
            .await?
            .try_get(0)?)
    }

    async fn count_connections(&self) -> Result<u64> {
        let c = self.client().await?;
        u64_of(c.query_one("SELECT COUNT(*) FROM connections", &[]).await?.try_get(0)?)
    }

    async fn claim_due_connections(
        &self,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedConnection>> {
        let c = self.client().await?;
        // SKIP LOCKED: concurrent claimers (other instances) each take different rows instead of queueing.
        let stmt = c
            .prepare_cached(&format!(
                "WITH due AS (
                     SELECT token_id, next_refresh_at AS due_at, lease_owner IS NOT NULL AS had_lease
                     FROM connections
                     WHERE status = 'active' AND next_refresh_at <= $1 AND NOT grant_in_flight
                       AND (lease_until IS NULL OR lease_until <= {DB_NOW_MS})
                     ORDER BY next_refresh_at LIMIT $2
                     FOR UPDATE SKIP LOCKED)
                 UPDATE connections c SET lease_owner = $3, lease_until = {DB_NOW_MS} + $4, version = c.version + 1
                 FROM due WHERE c.token_id = due.token_id
                 RETURNING {}, due.due_at, due.had_lease",
                qualified_columns("c")
            ))
            .await?;
        let rows = c.query(&stmt, &[&to_millis(now), &i64::from(limit), &owner, &millis_of(lease)]).await?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok(ClaimedConnection {
                    record: connection_from_row(r)?,
                    due_at: from_millis(r.try_get("due_at")?)?,
                    took_over_expired_lease: r.try_get("had_lease")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING does not keep the subquery's order.
        claimed.sort_by_key(|c| c.due_at);
        Ok(claimed)
    }

    async fn claim_connection(
        &self,
        token_id: TokenId,
        _now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ConnectionRecord>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "UPDATE connections SET lease_owner = $1, lease_until = {DB_NOW_MS} + $2, version = version + 1
                 WHERE token_id = $3 AND status = 'active' AND NOT grant_in_flight
                   AND (lease_until IS NULL OR lease_until <= {DB_NOW_MS})
                 RETURNING {CONNECTION_COLUMNS}"
            ))
            .await?;
        let row = c.query_opt(&stmt, &[&owner, &millis_of(lease), token_id.as_uuid()]).await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn mark_grant_in_flight(
        &self,
        token_id: TokenId,
        version: u64,
        owner: &str,
        _now: OffsetDateTime,
        min_remaining: std::time::Duration,
    ) -> Result<bool> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "UPDATE connections SET grant_in_flight = TRUE
                 WHERE token_id = $1 AND version = $2 AND lease_owner = $3 AND lease_until > {DB_NOW_MS} + $4"
            ))
            .await?;
        Ok(c.execute(&stmt, &[token_id.as_uuid(), &i64_of(version), &owner, &millis_of(min_remaining)]).await? == 1)
    }

    async fn complete_refresh(&self, update: &CredentialsUpdate, owner: &str) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let changed = write_credentials(&tx, update, Some(owner)).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn release_lease(&self, r: &LeaseRelease) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE connections SET lease_owner = NULL, lease_until = NULL, grant_in_flight = FALSE,
                    next_refresh_at = $1, refresh_failures = $2, last_error = $3, reauth_warned_at = $4
                 WHERE token_id = $5 AND version = $6 AND lease_owner = $7",
            )
            .await?;
        let changed = tx
            .execute(
                &stmt,
                &[
                    &to_millis(r.next_refresh_at),
                    &i32::try_from(r.refresh_failures).unwrap_or(i32::MAX),
                    &short_error(r.last_error.as_deref()),
                    &opt_to_millis(r.reauth_warned_at),
                    r.token_id.as_uuid(),
                    &i64_of(r.expected_version),
                    &r.owner,
                ],
            )
            .await?
            == 1;
        if changed && let Some(event) = &r.event {
            insert_outbox(&tx, event).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn mark_reauth_required(&self, m: &ReauthMark) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE connections SET status = 'reauthRequired', lease_owner = NULL, lease_until = NULL,
                    grant_in_flight = FALSE, next_refresh_at = NULL, last_error = $1, updated_at = $2,
                    version = version + 1
                 WHERE token_id = $3 AND version = $4 AND ($5::text IS NULL OR lease_owner = $5)",
            )
            .await?;
        let changed = tx
            .execute(
                &stmt,
                &[
                    &short_error(m.last_error.as_deref()),
                    &to_millis(m.updated_at),
                    m.token_id.as_uuid(),
                    &i64_of(m.expected_version),
                    &m.owner,
                ],
            )
            .await?
            == 1;
        if changed {
            insert_outbox(&tx, &m.event).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn expired_leases(&self, _now: OffsetDateTime, limit: u32) -> Result<Vec<ConnectionRecord>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {CONNECTION_COLUMNS} FROM connections
                 WHERE lease_until IS NOT NULL AND lease_until <= {DB_NOW_MS} ORDER BY lease_until LIMIT $1"
            ))
            .await?;
        let rows = c.query(&stmt, &[&i64::from(limit)]).await?;
        rows.iter().map(connection_from_row).collect()
    }

    async fn take_over_expired_lease(
        &self,
        token_id: TokenId,
        expected_version: u64,
        _now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ConnectionRecord>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "UPDATE connections SET lease_owner = $1, lease_until = {DB_NOW_MS} + $2, version = version + 1
                 WHERE token_id = $3 AND version = $4 AND lease_until IS NOT NULL AND lease_until <= {DB_NOW_MS}
                 RETURNING {CONNECTION_COLUMNS}"
            ))
            .await?;
        let row =
            c.query_opt(&stmt, &[&owner, &millis_of(lease), token_id.as_uuid(), &i64_of(expected_version)]).await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn count_due_connections(&self, now: OffsetDateTime) -> Result<u64> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached("SELECT COUNT(*) FROM connections WHERE status = 'active' AND next_refresh_at <= $1")
            .await?;
        u64_of(c.query_one(&stmt, &[&to_millis(now)]).await?.try_get(0)?)
    }

    async fn count_pending_outbox(&self) -> Result<u64> {
        let c = self.client().await?;
        u64_of(
            c.query_one("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL", &[])
                .await?
                .try_get(0)?,
        )
    }

    async fn pending_outbox_events(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, client_id, event_type, payload, created_at FROM outbox
                 WHERE delivered_at IS NULL AND given_up_at IS NULL ORDER BY created_at, seq LIMIT $1",
                &[&i64::from(limit)],
            )
            .await?;
        rows.iter().map(outbox_from_row).collect()
    }
}

/// The credentials write shared by `update_credentials` (any writer) and `complete_refresh` (the lease owner).
async fn write_credentials(
    c: &deadpool_postgres::Transaction<'_>,
    u: &CredentialsUpdate,
    owner: Option<&str>,
) -> Result<bool> {
    let stmt = c
        .prepare_cached(
            "UPDATE connections SET status = $1, credentials = $2, data_key_uses = $3,
                key_version = COALESCE($4, key_version), wrapped_data_key = COALESCE($5, wrapped_data_key),
                data_key_generation = COALESCE($6, data_key_generation),
                account_id = $7, account_name = $8, access_expires_at = $9, refresh_expires_at = $10,
                last_refreshed_at = $11, refresh_count = $12, updated_at = $13, version = version + 1,
                next_refresh_at = $16, reauth_warned_at = $17, lease_owner = NULL, lease_until = NULL,
                grant_in_flight = FALSE, refresh_failures = 0, last_error = NULL
             WHERE token_id = $14 AND version = $15 AND ($18::text IS NULL OR lease_owner = $18)",
        )
        .await?;
    let rekey_version = u.rekey.as_ref().map(|k| i32_of(k.key_version));
    let rekey_wrapped = u.rekey.as_ref().map(|k| k.wrapped_data_key.clone());
    let rekey_generation = u.rekey.as_ref().map(|k| i32_of(k.data_key_generation));
    let changed = c
        .execute(
            &stmt,
            &[
                &u.status.as_str(),
                &u.credentials,
                &i64_of(u.data_key_uses),
                &rekey_version,
                &rekey_wrapped,
                &rekey_generation,
                &u.account_id,
                &u.account_name,
                &opt_to_millis(u.access_expires_at),
                &opt_to_millis(u.refresh_expires_at),
                &opt_to_millis(u.last_refreshed_at),
                &i64_of(u.refresh_count),
                &to_millis(u.updated_at),
                u.token_id.as_uuid(),
                &i64_of(u.expected_version),
                &opt_to_millis(u.next_refresh_at),
                &opt_to_millis(u.reauth_warned_at),
                &owner,
            ],
        )
        .await?
        == 1;
    if changed {
        if let Some(v) = rekey_version {
            c.execute("UPDATE key_versions SET wrap_count = wrap_count + 1 WHERE version = $1", &[&v]).await?;
        }
        if let Some(event) = &u.event {
            insert_outbox(c, event).await?;
        }
    }
    Ok(changed)
}

async fn insert_api_key<C: tokio_postgres::GenericClient + Sync>(c: &C, key: &ApiKeyRecord) -> Result<()> {
    c.execute(
        "INSERT INTO api_keys (key_id, client_id, scope, digest, secret_prefix, created_at, revoked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &key.key_id,
            key.client_id.as_uuid(),
            &key.scope.as_str(),
            &key.digest,
            &key.secret_prefix,
            &to_millis(key.created_at),
            &opt_to_millis(key.revoked_at),
        ],
    )
    .await?;
    Ok(())
}
