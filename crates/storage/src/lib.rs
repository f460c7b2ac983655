//! Storage of linkvault: one [`Store`] interface with an embedded SQLite implementation (the default) and a
//! PostgreSQL one for several instances sharing a database. Both keep their own migrations and pass the
//! same conformance suite (`tests` in this crate).
//!
//! The store holds only ciphertexts, wrapped keys and digests; it never sees a secret in clear.

mod audit;
pub mod backup;
mod client_tokens;
mod connections;
mod error;
pub mod inspect;
mod link;
/// Each backend's ordered migrations, listed by `build.rs` from the `migrations` folder (SQLite records how many
/// ran in `PRAGMA user_version`, PostgreSQL in a table).
mod migrations {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}
mod postgres;
mod records;
mod sql;
mod sqlite;
pub mod testing;
mod time_conv;
mod transfers;
mod webhooks;
mod wraps;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use linkvault_domain::{ClientId, NaturalKey, TokenId};
use time::OffsetDateTime;
use uuid::Uuid;

pub use audit::{AuditEntry, AuditHead, AuditRecord, AuditSeal, AuditStore};
pub use client_tokens::{
    AccessTokenMatch, ClientTokenStore, FamilyRefresh, NewAccessToken, RefreshOutcome, TokenFamilyRecord,
};
pub use error::StorageError;
pub use link::{LinkOAuthOutcome, LinkOAuthRecord, LinkSessionRecord, LinkStart, LinkStore};
pub use postgres::PostgresStore;
pub use records::*;
pub use sqlite::SqliteStore;
pub use transfers::{
    CompletedTransfer, ExecutionClaim, ExecutionState, SentTransfer, TransferCheck, TransferExecutionRecord,
    TransferFilter, TransferFollow, TransferOrder, TransferPage, TransferPreviewRecord, TransferProgress,
    TransferStore,
};
pub use webhooks::{ClaimedDelivery, DeliveryOutcome, WebhookEndpointRecord, WebhookFormat, WebhookStore};

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything linkvault persists. Implementations must make every method atomic on its own.
#[async_trait]
pub trait Store:
    LinkStore + WebhookStore + ClientTokenStore + TransferStore + AuditStore + Send + Sync + Debug
{
    /// A short name of the backend, for logs and metrics (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Applies pending migrations. Safe to call from several instances at once.
    async fn migrate(&self) -> Result<()>;

    /// Cheap liveness probe of the database.
    async fn ping(&self) -> Result<()>;

    // --- settings -------------------------------------------------------------------------------
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` unless the key already has one; returns what is stored afterwards.
    async fn insert_meta_if_absent(&self, key: &str, value: &str) -> Result<String>;
    async fn set_meta(&self, key: &str, value: &str) -> Result<()>;
    async fn delete_meta(&self, key: &str) -> Result<()>;
    /// If `guard.0` still holds the value `guard.1`, sets every `set` pair and deletes every `delete` key, all in
    /// one transaction; returns whether it did (`keys rotate-master` switches the keyring and the fingerprint so).
    async fn replace_meta_if(&self, guard: (&str, &str), set: &[(&str, &str)], delete: &[&str]) -> Result<bool>;

    // --- key versions (the key-encryption keys, wrapped by the master key) ------------------------
    async fn key_versions(&self) -> Result<Vec<KeyVersionRecord>>;
    /// Adds a version; with `make_current` it becomes the only current one, atomically.
    /// Returns `false` if the version number already exists (another process created it first).
    async fn insert_key_version(&self, record: &KeyVersionRecord, make_current: bool) -> Result<bool>;
    /// Replaces a key version's wrapped form if it is still `old` (`keys rotate-master` moving it to a new
    /// keyring); the key itself does not change.
    async fn rewrap_key_version(&self, version: u32, old: &[u8], new: &[u8]) -> Result<bool>;
    /// Rows per key version, for rotation progress and for deciding when an old version can go.
    async fn count_connections_by_key_version(&self) -> Result<Vec<(u32, u64)>>;
    /// Deletes a non-current key version if, and only if, no connection uses it.
    async fn delete_key_version_if_unused(&self, version: u32) -> Result<bool>;
    /// Up to `limit` connections whose data key is wrapped by a version other than `current`.
    async fn connections_needing_rewrap(&self, current: u32, limit: u32) -> Result<Vec<RewrapCandidate>>;
    /// Replaces a wrapped data key if the row still has the version and generation it was read with.
    /// The fencing `version` is not bumped: the data key itself does not change.
    async fn rewrap_data_key(&self, candidate: &RewrapCandidate, new_version: u32, wrapped: &[u8]) -> Result<bool>;

    // --- clients and API keys ----------------------------------------------------------------------
    async fn insert_client(&self, client: &ClientRecord, keys: &[ApiKeyRecord]) -> Result<()>;
    async fn get_client(&self, client_id: ClientId) -> Result<Option<ClientRecord>>;
    async fn set_client_token_mode(&self, client_id: ClientId, mode: linkvault_domain::TokenMode) -> Result<bool>;
    /// Sets (or with `None` clears) the client's own API rate limit; false for an unknown client.
    async fn set_client_api_rate_limit(&self, client_id: ClientId, per_minute: Option<u32>) -> Result<bool>;
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    async fn list_api_keys(&self, client_id: ClientId) -> Result<Vec<ApiKeyRecord>>;
    /// Revokes the client's live keys whose id or secret prefix equals `selector`; returns how many.
    async fn revoke_api_keys(&self, client_id: ClientId, selector: &str, at: time::OffsetDateTime) -> Result<u64>;
    /// A live (unrevoked) key by its digest, with what the request needs to know about its client.
    async fn find_api_key(&self, digest: &[u8]) -> Result<Option<AuthenticatedKey>>;

    // --- connections -----------------------------------------------------------------------------
    async fn find_connection_by_natural_key(&self, key: &NaturalKey) -> Result<Option<ConnectionRecord>>;
    async fn get_connection(&self, token_id: TokenId) -> Result<Option<ConnectionRecord>>;
    /// The connection's status fields only (the hottest read: `GET /api/v1/tokens/{id}`).
    async fn get_connection_summary(&self, token_id: TokenId) -> Result<Option<ConnectionSummary>>;
    /// Inserts a new connection (and counts one wrap for its key version) unless its natural key is taken
    /// or its tokenId was ever retired. `event` is written to the outbox in the same transaction, only if the
    /// row is inserted.
    async fn insert_connection(&self, record: &ConnectionRecord, event: Option<&OutboxEvent>) -> Result<InsertOutcome>;
    /// Compare-and-set on the fencing version: writes only if the row still has `update.expected_version`.
    /// New credentials supersede any refresh in progress: the lease, the grant-in-flight flag and the failure
    /// count are cleared, `next_refresh_at` and `update.event` are written in the same transaction.
    async fn update_credentials(&self, update: &CredentialsUpdate) -> Result<bool>;
    /// Permanently deletes the client's connection and tombstones its tokenId, then makes sure the deleted
    /// bytes are not left in the database files (SQLite: `secure_delete` plus a WAL checkpoint). `event` is
    /// written to the outbox in the same transaction, only if a row was deleted.
    async fn delete_connection(
        &self,
        client_id: ClientId,
        token_id: TokenId,
        event: Option<&OutboxEvent>,
    ) -> Result<bool>;
    /// Re-applies deletions recorded outside the database (the deletion ledger, after a restore from a backup
    /// taken before them), in one transaction: each connection named by tokenId *and* client is deleted —
    /// ciphertext and wrapped data key with the row — and its tokenId retired so it is never issued again.
    /// Idempotent: a connection already gone only has its tokenId retired (if it was not) and counts as absent.
    /// No outbox event is written: the deletion was announced when it was made. On SQLite the files are then
    /// scrubbed as after [`Store::delete_connection`].
    async fn apply_deletions(&self, deletions: &[DeletionRecord]) -> Result<AppliedDeletions>;
    async fn is_token_retired(&self, token_id: TokenId) -> Result<bool>;
    async fn count_connections(&self) -> Result<u64>;

    // --- refresh scheduling ----------------------------------------------------------------------
    //
    // Lease times: PostgreSQL sets and compares `lease_until` on the database clock (`clock_timestamp()`),
    // so instances whose clocks disagree still agree on who holds a lease; SQLite, whose file belongs to
    // one host, uses the `now` passed in (the process clock). `next_refresh_at` is always compared with the
    // caller's `now`, because the schedule is computed on the process clock.

    /// Claims up to `limit` due connections (`status = 'active'`, `next_refresh_at <= now`, lease free or
    /// expired without a grant in flight), oldest due first, skipping rows another transaction has locked.
    /// Each claim sets the lease (`owner`, now + `lease`) and bumps the fencing version.
    async fn claim_due_connections(
        &self,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedConnection>>;
    /// Claims one active connection whatever its schedule (on-demand refresh), if its lease is free or expired
    /// without a grant in flight. `None`: missing, not active, or leased (re-read the row to see which).
    async fn claim_connection(
        &self,
        token_id: TokenId,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ConnectionRecord>>;
    /// Sets `grant_in_flight` if the row is still at `version`, leased by `owner`, and the lease outlives
    /// `min_remaining` (the HTTP worst case). `false`: do not send the grant.
    async fn mark_grant_in_flight(
        &self,
        token_id: TokenId,
        version: u64,
        owner: &str,
        now: OffsetDateTime,
        min_remaining: std::time::Duration,
    ) -> Result<bool>;
    /// The refresh write-back: [`Store::update_credentials`] with a compare-and-set on the version *and* the
    /// lease owner. `false` is a lost compare-and-set: never a reason to send the grant again.
    async fn complete_refresh(&self, update: &CredentialsUpdate, owner: &str) -> Result<bool>;
    /// Ends a lease without new credentials (backoff, nothing due yet, a warning sent), clearing
    /// `grant_in_flight`. Compare-and-set on version and owner.
    async fn release_lease(&self, release: &LeaseRelease) -> Result<bool>;
    /// Sets `status = 'reauthRequired'`, ends any lease, and writes the event, in one transaction.
    /// Compare-and-set on the version (and the owner, when given).
    async fn mark_reauth_required(&self, mark: &ReauthMark) -> Result<bool>;
    /// Connections whose lease has expired (a dead or stalled worker), oldest first.
    async fn expired_leases(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<ConnectionRecord>>;
    /// Takes over an expired lease (compare-and-set on the version), keeping `grant_in_flight` as it is so
    /// that a second crash is still recognised. Bumps the version.
    async fn take_over_expired_lease(
        &self,
        token_id: TokenId,
        expected_version: u64,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ConnectionRecord>>;
    /// Active connections due at `now` (the scheduler's backlog).
    async fn count_due_connections(&self, now: OffsetDateTime) -> Result<u64>;
    /// Outbox events not yet delivered (the webhook backlog).
    async fn count_pending_outbox(&self) -> Result<u64>;
    /// Up to `limit` undelivered outbox events, oldest first (in insertion order within one millisecond).
    async fn pending_outbox_events(&self, limit: u32) -> Result<Vec<OutboxEvent>>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store named by a database URL: `postgres://…` / `postgresql://…` for PostgreSQL, anything
/// else (`sqlite://PATH`, `sqlite:PATH` or a plain path) for SQLite.
pub async fn open(database_url: &str) -> Result<DynStore> {
    match sqlite_path(database_url) {
        None => Ok(Arc::new(PostgresStore::connect(database_url, None).await?)),
        Some(path) => Ok(Arc::new(SqliteStore::open(path)?)),
    }
}

/// The SQLite file a database URL names, or `None` for PostgreSQL.
pub fn sqlite_path(database_url: &str) -> Option<&std::path::Path> {
    if is_postgres_url(database_url) {
        return None;
    }
    let path =
        database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:")).unwrap_or(database_url);
    Some(std::path::Path::new(path))
}

/// Whether a URL names PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `last_error` texts are kept short: they are for operators, and never carry an upstream body.
pub const MAX_LAST_ERROR_CHARS: usize = 300;

pub(crate) fn short_error(text: Option<&str>) -> Option<String> {
    text.map(|t| t.chars().filter(|c| !c.is_control()).take(MAX_LAST_ERROR_CHARS).collect())
}

/// Key ids are UUIDs; a selector that parses as one matches by id, anything else by secret prefix.
pub(crate) fn selector_as_uuid(selector: &str) -> Option<Uuid> {
    Uuid::parse_str(selector).ok()
}
