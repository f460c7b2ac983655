//! The rows the store keeps. Secret material appears only sealed (`credentials`, `wrapped_*`) or digested.

use linkvault_domain::{ClientId, ConnectionStatus, Scope, TokenId, TokenMode};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub client_id: ClientId,
    pub name: String,
    pub token_mode: TokenMode,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: Uuid,
    pub client_id: ClientId,
    pub scope: Scope,
    /// HMAC-SHA256 of the secret; the secret itself is never stored.
    pub digest: Vec<u8>,
    /// The first characters of the secret, to name the key to the operator.
    pub secret_prefix: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// What authenticating a request yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedKey {
    pub key_id: Uuid,
    pub client_id: ClientId,
    pub scope: Scope,
    pub digest: Vec<u8>,
    pub token_mode: TokenMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionRecord {
    pub version: u32,
    /// The key version sealed under the master key.
    pub wrapped_key: Vec<u8>,
    pub is_current: bool,
    /// How many data keys this version has wrapped (AES-GCM random nonces allow 2^32 per key).
    pub wrap_count: u64,
    pub created_at: OffsetDateTime,
}

/// One managed connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub token_id: TokenId,
    pub client_id: ClientId,
    pub user_id: String,
    pub integration: String,
    pub scope: Scope,
    pub status: ConnectionStatus,
    /// Key version that wraps this row's data key.
    pub key_version: u32,
    pub wrapped_data_key: Vec<u8>,
    pub data_key_generation: u32,
    /// Encryptions made with this row's data key, so it can be replaced long before nonce limits.
    pub data_key_uses: u64,
    /// The integration credentials, sealed with the data key.
    pub credentials: Vec<u8>,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub access_expires_at: Option<OffsetDateTime>,
    pub refresh_expires_at: Option<OffsetDateTime>,
    pub last_refreshed_at: Option<OffsetDateTime>,
    pub refresh_count: u64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Fencing version: every credentials write is a compare-and-set on it.
    pub version: u64,
}

/// A new data key for a row (replacing the old one wholesale).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekey {
    pub key_version: u32,
    pub wrapped_data_key: Vec<u8>,
    pub data_key_generation: u32,
}

/// New credentials (and their metadata) for an existing connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsUpdate {
    pub token_id: TokenId,
    pub expected_version: u64,
    pub status: ConnectionStatus,
    pub credentials: Vec<u8>,
    pub data_key_uses: u64,
    pub rekey: Option<Rekey>,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub access_expires_at: Option<OffsetDateTime>,
    pub refresh_expires_at: Option<OffsetDateTime>,
    pub last_refreshed_at: Option<OffsetDateTime>,
    pub refresh_count: u64,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// Another connection already has this natural key (a concurrent insert won); re-read and update it.
    NaturalKeyTaken,
    /// The tokenId was deleted once and may never be issued again; draw another.
    TokenIdRetired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapCandidate {
    pub token_id: TokenId,
    pub client_id: ClientId,
    pub key_version: u32,
    pub data_key_generation: u32,
    pub wrapped_data_key: Vec<u8>,
}
