//! Storage of client-managed token families (migration 0005): for clients in `client` token mode, the
//! digests of the linkvault access and refresh tokens handed out for a connection, the refresh tokens spent
//! by rotation, and revocation.
//!
//! The decisions are `linkvault_domain::client_tokens`; the stores look up what a digest matches and apply the
//! decision in one transaction. A refresh is a compare-and-set on the family row (its current refresh digest
//! and generation), so two concurrent presentations of one refresh token cannot both rotate it: the loser
//! finds the token spent and revokes the family, on any number of instances sharing the database.

use std::fmt;

use async_trait::async_trait;
use linkvault_domain::{ClientId, FamilyState, RevokedReason, TokenId, TokenRefusal};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

/// One token family: a hand-out of one connection to its client.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenFamilyRecord {
    pub family_id: Uuid,
    pub token_id: TokenId,
    pub client_id: ClientId,
    /// The connection's integration type (a refresh must name it, as Mesh's `type`).
    pub integration: String,
    /// HMAC-SHA256 of the current refresh token.
    pub refresh_digest: Vec<u8>,
    pub refresh_expires_at: Option<OffsetDateTime>,
    /// Rotations so far.
    pub generation: u64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<RevokedReason>,
}

impl TokenFamilyRecord {
    pub fn state(&self) -> FamilyState {
        match (self.revoked_at, self.revoked_reason) {
            (None, _) => FamilyState::Active,
            (Some(_), reason) => FamilyState::Revoked(reason.unwrap_or(RevokedReason::Superseded)),
        }
    }
}

impl fmt::Debug for TokenFamilyRecord {
    // Digests are not secrets, but they are noise in logs and have no business there.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFamilyRecord")
            .field("family_id", &self.family_id)
            .field("token_id", &self.token_id)
            .field("client_id", &self.client_id)
            .field("integration", &self.integration)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("generation", &self.generation)
            .field("revoked_at", &self.revoked_at)
            .field("revoked_reason", &self.revoked_reason)
            .finish_non_exhaustive()
    }
}

/// A new access token's digest and end.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAccessToken {
    pub digest: Vec<u8>,
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for NewAccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccessToken").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// A refresh request as the store applies it.
#[derive(Clone)]
pub struct FamilyRefresh {
    pub client_id: ClientId,
    pub integration: String,
    /// Digest of the refresh token presented.
    pub presented_digest: Vec<u8>,
    pub now: OffsetDateTime,
    /// Digest of the new access token; its end is computed by the store (the policy's lifetime, capped by the
    /// refresh token's end).
    pub access_digest: Vec<u8>,
    pub access_ttl: time::Duration,
    /// With `createNewRefreshToken`: the new refresh token's digest and end.
    pub rotate_to: Option<(Vec<u8>, Option<OffsetDateTime>)>,
    /// The family's access tokens that expired before this are deleted on the way (bounding the table; later
    /// ones are kept so that they answer `tokenExpired` rather than look unknown).
    pub purge_expired_before: OffsetDateTime,
}

impl fmt::Debug for FamilyRefresh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FamilyRefresh")
            .field("client_id", &self.client_id)
            .field("integration", &self.integration)
            .field("now", &self.now)
            .field("rotate", &self.rotate_to.is_some())
            .finish_non_exhaustive()
    }
}

/// What a refresh came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A new access token (and, when rotating, refresh token) is stored; `family` is the row afterwards.
    Refreshed { family: TokenFamilyRecord, access_expires_at: OffsetDateTime },
    /// Refused; for `RefreshTokenReused` the family has just been revoked.
    Refused(TokenRefusal),
}

/// What an access token's digest matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenMatch {
    pub family: TokenFamilyRecord,
    pub expires_at: OffsetDateTime,
}

/// Everything client-managed tokens persist. Implemented by both backends; every method is atomic on its own.
#[async_trait]
pub trait ClientTokenStore: Send + Sync {
    /// Stores a new family with its first access token, revoking (`superseded`) every other active family of
    /// the same connection in the same transaction.
    async fn issue_token_family(&self, family: &TokenFamilyRecord, access: &NewAccessToken) -> Result<()>;

    /// Applies a refresh atomically: looks up the presented refresh token (current or spent), decides with
    /// `linkvault_domain::decide_refresh`, and either stores the new token(s) with a compare-and-set on the
    /// family row, revokes the family on reuse, or changes nothing. Access tokens of the family that expired
    /// before `purge_expired_before` are deleted on the way.
    async fn refresh_token_family(&self, refresh: &FamilyRefresh) -> Result<RefreshOutcome>;

    /// The family an access token belongs to, with the token's end (whatever the family's state).
    async fn find_access_token(&self, digest: &[u8]) -> Result<Option<AccessTokenMatch>>;

    /// Every family of a connection (revoked ones included), oldest first.
    async fn token_families(&self, token_id: TokenId) -> Result<Vec<TokenFamilyRecord>>;
}
