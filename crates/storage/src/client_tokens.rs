//! Storage of client-managed token families (migration 0005): for clients in `client` token mode, the
//! digests of the linkvault access and refresh tokens handed out for a connection, the refresh tokens spent
//! by rotation, and revocation.
//!
//! The decisions are `linkvault_domain::client_tokens`; the stores look up what a digest matches and apply the
//! decision in one transaction. A refresh is a compare-and-set on the family row (its current refresh digest
//! and generation), so two concurrent presentations of one refresh token cannot both rotate it: the loser
//! finds the token spent and revokes the family, on any number of instances sharing the database.
//!
//! On PostgreSQL a refresh also locks the family row it matches (`SELECT … FOR UPDATE`): two requests
//! presenting one refresh token queue on that row, and the second's lookup, re-checked against the row's new
//! version, finds the token among the spent ones (reuse). On SQLite the single writer serialises them. A lost
//! compare-and-set (the row changed between lookup and update) starts a new transaction, on both backends.

use std::fmt;

use async_trait::async_trait;
use linkvault_domain::client_tokens::access_expiry;
use linkvault_domain::{
    ClientId, FamilyState, RefreshDecision, RefreshMatch, RevokedReason, TokenId, TokenRefusal, decide_refresh,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::sql::{Columns, Driver, Mode, Session, record, run, sql, vals};
use crate::{Result, StorageError};

record! {
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

record! {
    /// What an access token's digest matched.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AccessTokenMatch {
        pub family: TokenFamilyRecord,
        pub expires_at: OffsetDateTime,
    }
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

/// Compare-and-set rounds before giving up; more than one only if the row changed between lookup and update.
const MAX_ROUNDS: usize = 3;

async fn insert_access(s: &mut impl Session, family_id: Uuid, a: &NewAccessToken, now: OffsetDateTime) -> Result<()> {
    let stmt =
        sql!("INSERT INTO client_access_tokens (digest, family_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)");
    s.execute(stmt, &vals![&a.digest, family_id, a.expires_at, now]).await.map(drop)
}

/// The family the presented digest is the current refresh token of (`FOR UPDATE` on PostgreSQL), or one it
/// was spent in; only for this client and integration.
async fn lookup_refresh(s: &mut impl Session, r: &FamilyRefresh) -> Result<(RefreshMatch, Option<TokenFamilyRecord>)> {
    let owned = |f: &TokenFamilyRecord| f.client_id == r.client_id && f.integration == r.integration;
    let digest = vals![&r.presented_digest];
    let current = sql!(TokenFamilyRecord:
        "SELECT {f.*} FROM client_token_families f WHERE f.refresh_digest = ?1{pg: FOR UPDATE}");
    if let Some(f) = s.opt::<TokenFamilyRecord>(current, &digest).await?.filter(owned) {
        return Ok((RefreshMatch::Current { family: f.state(), refresh_expires_at: f.refresh_expires_at }, Some(f)));
    }
    let spent = sql!(TokenFamilyRecord:
        "SELECT {f.*} FROM client_spent_refresh_tokens s JOIN client_token_families f ON f.family_id = s.family_id
         WHERE s.digest = ?1{pg: FOR UPDATE OF f}");
    Ok(match s.opt::<TokenFamilyRecord>(spent, &digest).await?.filter(owned) {
        Some(f) => (RefreshMatch::Spent { family: f.state() }, Some(f)),
        None => (RefreshMatch::Unknown, None),
    })
}

/// One round; `None` when the compare-and-set lost (the caller rolls back and starts a new transaction).
async fn apply_refresh(s: &mut impl Session, r: &FamilyRefresh) -> Result<Option<RefreshOutcome>> {
    let (found, family) = lookup_refresh(s, r).await?;
    let (rotate, f) = match (decide_refresh(found, r.now, r.rotate_to.is_some()), family) {
        (RefreshDecision::Refuse(why), _) => return Ok(Some(RefreshOutcome::Refused(why))),
        (_, None) => return Ok(Some(RefreshOutcome::Refused(TokenRefusal::Unknown))),
        (RefreshDecision::RevokeForReuse, Some(f)) => {
            let revoke = sql!(
                "UPDATE client_token_families
                               SET revoked_at = ?1, revoked_reason = 'refreshTokenReused', updated_at = ?1
                               WHERE family_id = ?2 AND revoked_at IS NULL"
            );
            s.execute(revoke, &vals![r.now, f.family_id]).await?;
            return Ok(Some(RefreshOutcome::Refused(TokenRefusal::RefreshTokenReused)));
        }
        (RefreshDecision::Issue { rotate }, Some(f)) => (rotate, f),
    };
    let (changed, refresh_end) = match &r.rotate_to {
        Some((new_digest, end)) if rotate => {
            let rotate = sql!("UPDATE client_token_families
                               SET refresh_digest = ?1, refresh_expires_at = ?2, generation = generation + 1, updated_at = ?3
                               WHERE family_id = ?4 AND refresh_digest = ?5 AND generation = ?6 AND revoked_at IS NULL");
            let params = vals![new_digest, *end, r.now, f.family_id, &r.presented_digest, f.generation];
            let changed = s.execute(rotate, &params).await? == 1;
            if changed {
                let spend =
                    sql!("INSERT INTO client_spent_refresh_tokens (digest, family_id, spent_at) VALUES (?1, ?2, ?3)");
                s.execute(spend, &vals![&r.presented_digest, f.family_id, r.now]).await?;
            }
            (changed, *end)
        }
        _ => {
            let touch = sql!(
                "UPDATE client_token_families SET updated_at = ?1
                              WHERE family_id = ?2 AND refresh_digest = ?3 AND revoked_at IS NULL"
            );
            (s.execute(touch, &vals![r.now, f.family_id, &r.presented_digest]).await? == 1, f.refresh_expires_at)
        }
    };
    if !changed {
        return Ok(None);
    }
    let purge = sql!("DELETE FROM client_access_tokens WHERE family_id = ?1 AND expires_at <= ?2");
    s.execute(purge, &vals![f.family_id, r.purge_expired_before]).await?;
    let access_expires_at = access_expiry(r.now, r.access_ttl, refresh_end);
    let access = NewAccessToken { digest: r.access_digest.clone(), expires_at: access_expires_at };
    insert_access(s, f.family_id, &access, r.now).await?;
    let family = sql!(TokenFamilyRecord: "SELECT {*} FROM client_token_families WHERE family_id = ?1");
    let family = s.one(family, &vals![f.family_id]).await?;
    Ok(Some(RefreshOutcome::Refreshed { family, access_expires_at }))
}

#[async_trait]
impl<D: Driver> ClientTokenStore for D {
    async fn issue_token_family(&self, family: &TokenFamilyRecord, access: &NewAccessToken) -> Result<()> {
        let (f, access) = (family.clone(), access.clone());
        run!(self, Transaction, |s| {
            let supersede = sql!(
                "UPDATE client_token_families SET revoked_at = ?1, revoked_reason = 'superseded',
                                      updated_at = ?1
                                  WHERE token_id = ?2 AND revoked_at IS NULL"
            );
            s.execute(supersede, &vals![f.created_at, f.token_id]).await?;
            let insert = sql!(TokenFamilyRecord: "INSERT INTO client_token_families ({*}) VALUES ({?*})");
            s.execute(insert, &f.values()).await?;
            insert_access(s, f.family_id, &access, f.created_at).await
        })
    }

    async fn refresh_token_family(&self, refresh: &FamilyRefresh) -> Result<RefreshOutcome> {
        for _ in 0..MAX_ROUNDS {
            let r = refresh.clone();
            let round =
                Driver::run(self, Mode::Transaction, move |s| Box::pin(async move { apply_refresh(s, &r).await }));
            if let Some(outcome) = round.await? {
                return Ok(outcome);
            }
        }
        Err(StorageError::Database("token family kept changing during its refresh".into()))
    }

    async fn find_access_token(&self, digest: &[u8]) -> Result<Option<AccessTokenMatch>> {
        let stmt = sql!(TokenFamilyRecord: "SELECT {f.*}, a.expires_at FROM client_access_tokens a
                         JOIN client_token_families f ON f.family_id = a.family_id WHERE a.digest = ?1");
        self.opt(Mode::Read, stmt, vals![digest]).await
    }

    async fn token_families(&self, token_id: TokenId) -> Result<Vec<TokenFamilyRecord>> {
        let stmt = sql!(TokenFamilyRecord: "SELECT {*} FROM client_token_families WHERE token_id = ?1
                         ORDER BY created_at, {sqlite:rowid}{pg:family_id}");
        self.all(Mode::Read, stmt, vals![token_id]).await
    }
}
