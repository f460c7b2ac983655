//! The rows the store keeps. Secret material appears only sealed (`credentials`, `wrapped_*`) or digested.

use linkvault_domain::{ClientId, ConnectionStatus, Scope, TokenId, TokenMode};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::sql::{corrupt, record};

/// `clients.api_rate_limit`: NULL or a positive count per minute (the schema's CHECK).
fn positive_limit(limit: Option<u32>) -> crate::Result<Option<u32>> {
    match limit {
        Some(0) => Err(corrupt("api_rate_limit", 0)),
        limit => Ok(limit),
    }
}

record! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ClientRecord {
        pub client_id: ClientId,
        pub name: String,
        pub token_mode: TokenMode,
        pub created_at: OffsetDateTime,
        /// The client's own API rate limit (requests per minute); `None` = the server's default.
        pub api_rate_limit: Option<u32> where positive_limit,
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
        /// The client's own API rate limit (requests per minute), if it has one.
        pub api_rate_limit: Option<u32> where positive_limit,
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

    /// What a status read shows of a connection: no key material, no credentials, no refresh bookkeeping.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ConnectionSummary {
        pub token_id: TokenId,
        pub client_id: ClientId,
        pub user_id: String,
        pub integration: String,
        pub scope: Scope,
        pub status: ConnectionStatus,
        pub account_id: Option<String>,
        pub account_name: Option<String>,
        pub access_expires_at: Option<OffsetDateTime>,
        pub refresh_expires_at: Option<OffsetDateTime>,
        pub last_refreshed_at: Option<OffsetDateTime>,
        pub refresh_count: u64,
        pub created_at: OffsetDateTime,
        pub updated_at: OffsetDateTime,
    }
}

impl From<&ConnectionRecord> for ConnectionSummary {
    fn from(r: &ConnectionRecord) -> Self {
        Self {
            token_id: r.token_id,
            client_id: r.client_id,
            user_id: r.user_id.clone(),
            integration: r.integration.clone(),
            scope: r.scope,
            status: r.status,
            account_id: r.account_id.clone(),
            account_name: r.account_name.clone(),
            access_expires_at: r.access_expires_at,
            refresh_expires_at: r.refresh_expires_at,
            last_refreshed_at: r.last_refreshed_at,
            refresh_count: r.refresh_count,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

record! {
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
        /// The row's place in the refresh schedule and its lease.
        pub refresh: RefreshState,
    }

    /// The refresh engine's columns of a connection: the connections table is the schedule (an indexed
    /// `next_refresh_at`), and the lease lives in the row. Holds no secret.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct RefreshState {
        /// When the scheduler should next look at the connection (active connections only).
        pub next_refresh_at: Option<OffsetDateTime>,
        /// The engine instance holding the refresh lease, if any.
        pub lease_owner: Option<String>,
        /// When the lease ends. PostgreSQL sets and compares it on the database clock; SQLite on the clock of
        /// the process passing `now` (one host owns an SQLite file).
        pub lease_until: Option<OffsetDateTime>,
        /// The engine instance whose lease wrote the current credentials (`None`: they came from outside the
        /// engine: an import, a re-authentication or a client-managed refresh). Which of several instances
        /// sharing a database refreshed a connection, for operators.
        pub last_refreshed_by: Option<String>,
        /// Set just before the refresh grant is sent and cleared by the write-back: a lease that expires with it
        /// set is the crash window (the upstream may have rotated the refresh token we still hold).
        pub grant_in_flight: bool,
        /// Consecutive transient failures, for backoff.
        pub refresh_failures: u32,
        /// Short description of the last failure (never a token or an upstream body).
        pub last_error: Option<String>,
        /// When `connection.reauthRequiredSoon` was sent for the current refresh token.
        pub reauth_warned_at: Option<OffsetDateTime>,
    }

    /// A webhook event written to the transactional outbox with the state change it announces. Delivery,
    /// signing and retries belong to the deliverer, which claims rows through the delivery columns.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct OutboxEvent {
        pub id: Uuid,
        pub client_id: ClientId,
        /// `connection.created`, `connection.reauthRequired`, …
        pub event_type: String,
        /// The JSON body (no secrets).
        pub payload: String,
        pub created_at: OffsetDateTime,
    }

    /// A row whose data key is wrapped by an old key version, as re-wrapping reads it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RewrapCandidate {
        pub token_id: TokenId,
        pub client_id: ClientId,
        pub key_version: u32,
        pub data_key_generation: u32,
        pub wrapped_data_key: Vec<u8>,
    }

    /// A connection the scheduler claimed.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ClaimedConnection {
        /// The row as it is after the claim (lease set, version bumped).
        pub record: ConnectionRecord,
        /// `next_refresh_at` before the claim: the start of the refresh window, for lateness.
        pub due_at: OffsetDateTime,
        /// The claim took over a lease that had expired without a grant in flight (a dead or stalled worker).
        pub took_over_expired_lease: bool,
    }
}

/// Ends a lease without new credentials: the next look at the connection, and the failure bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRelease {
    pub token_id: TokenId,
    /// The version the claim returned; the release is a compare-and-set on it and on the owner.
    pub expected_version: u64,
    pub owner: String,
    pub next_refresh_at: OffsetDateTime,
    pub refresh_failures: u32,
    pub last_error: Option<String>,
    pub reauth_warned_at: Option<OffsetDateTime>,
    /// Written in the same transaction (e.g. `connection.reauthRequiredSoon`).
    pub event: Option<OutboxEvent>,
}

/// Moves a connection to `reauthRequired` and announces it, atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReauthMark {
    pub token_id: TokenId,
    pub expected_version: u64,
    /// When set, the row must still be leased by this owner.
    pub owner: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: OffsetDateTime,
    pub event: OutboxEvent,
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
    /// The connection's next place in the refresh schedule. Writing credentials also ends any lease, clears
    /// the grant-in-flight flag and the failure count.
    pub next_refresh_at: Option<OffsetDateTime>,
    /// When `connection.reauthRequiredSoon` was sent for the refresh token being written (None: not yet).
    pub reauth_warned_at: Option<OffsetDateTime>,
    /// Written to the outbox in the same transaction, if the update succeeds.
    pub event: Option<OutboxEvent>,
}

/// A deletion to re-apply after a restore (from the deletion ledger): the connection's tokenId, its client and
/// when it was deleted. Holds no secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionRecord {
    pub token_id: TokenId,
    pub client_id: ClientId,
    pub deleted_at: OffsetDateTime,
}

/// What [`Store::apply_deletions`](crate::Store::apply_deletions) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedDeletions {
    /// Connections that were present and are now deleted.
    pub deleted: u64,
    /// Deletions whose connection was not there (already deleted, or never in this database).
    pub already_absent: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// Another connection already has this natural key (a concurrent insert won); re-read and update it.
    NaturalKeyTaken,
    /// The tokenId was deleted once and may never be issued again; draw another.
    TokenIdRetired,
}
