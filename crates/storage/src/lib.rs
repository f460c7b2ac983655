//! Storage of linkvault: one [`Store`] interface with an embedded SQLite implementation (the default) and a
//! PostgreSQL one for several instances sharing a database. Both keep their own migrations and pass the
//! same conformance suite (`tests` in this crate).
//!
//! The store holds only ciphertexts, wrapped keys and digests; it never sees a secret in clear.

mod error;
mod postgres;
mod records;
mod sqlite;
pub mod testing;
mod time_conv;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use linkvault_domain::{ClientId, NaturalKey, TokenId};
use uuid::Uuid;

pub use error::StorageError;
pub use postgres::PostgresStore;
pub use records::*;
pub use sqlite::SqliteStore;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything linkvault persists. Implementations must make every method atomic on its own.
#[async_trait]
pub trait Store: Send + Sync + Debug {
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

    // --- key versions (the key-encryption keys, wrapped by the master key) ------------------------
    async fn key_versions(&self) -> Result<Vec<KeyVersionRecord>>;
    /// Adds a version; with `make_current` it becomes the only current one, atomically.
    /// Returns `false` if the version number already exists (another process created it first).
    async fn insert_key_version(&self, record: &KeyVersionRecord, make_current: bool) -> Result<bool>;
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
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    async fn list_api_keys(&self, client_id: ClientId) -> Result<Vec<ApiKeyRecord>>;
    /// Revokes the client's live keys whose id or secret prefix equals `selector`; returns how many.
    async fn revoke_api_keys(&self, client_id: ClientId, selector: &str, at: time::OffsetDateTime) -> Result<u64>;
    /// A live (unrevoked) key by its digest, with what the request needs to know about its client.
    async fn find_api_key(&self, digest: &[u8]) -> Result<Option<AuthenticatedKey>>;

    // --- connections -----------------------------------------------------------------------------
    async fn find_connection_by_natural_key(&self, key: &NaturalKey) -> Result<Option<ConnectionRecord>>;
    async fn get_connection(&self, token_id: TokenId) -> Result<Option<ConnectionRecord>>;
    /// Inserts a new connection (and counts one wrap for its key version) unless its natural key is taken
    /// or its tokenId was ever retired.
    async fn insert_connection(&self, record: &ConnectionRecord) -> Result<InsertOutcome>;
    /// Compare-and-set on the fencing version: writes only if the row still has `update.expected_version`.
    async fn update_credentials(&self, update: &CredentialsUpdate) -> Result<bool>;
    /// Permanently deletes the client's connection and tombstones its tokenId, then makes sure the deleted
    /// bytes are not left in the database files (SQLite: `secure_delete` plus a WAL checkpoint).
    async fn delete_connection(&self, client_id: ClientId, token_id: TokenId) -> Result<bool>;
    async fn is_token_retired(&self, token_id: TokenId) -> Result<bool>;
    async fn count_connections(&self) -> Result<u64>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store named by a database URL: `postgres://…` / `postgresql://…` for PostgreSQL, anything
/// else (`sqlite://PATH`, `sqlite:PATH` or a plain path) for SQLite.
pub async fn open(database_url: &str) -> Result<DynStore> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(database_url, None).await?))
    } else {
        let path = database_url
            .strip_prefix("sqlite://")
            .or_else(|| database_url.strip_prefix("sqlite:"))
            .unwrap_or(database_url);
        Ok(Arc::new(SqliteStore::open(std::path::Path::new(path))?))
    }
}

/// Whether a URL names PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Key ids are UUIDs; a selector that parses as one matches by id, anything else by secret prefix.
pub(crate) fn selector_as_uuid(selector: &str) -> Option<Uuid> {
    Uuid::parse_str(selector).ok()
}
