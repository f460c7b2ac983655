//! Client-managed tokens: issuing a token family for a connection, refreshing it (with optional rotation of
//! the refresh token and reuse detection), and resolving an access token to its connection.
//!
//! The tokens are linkvault's own (`lva_…`, `lvr_…`); behind them the connection's integration tokens stay
//! sealed in its row and are refreshed by the engine exactly as for managed clients. Only digests are stored.

use linkvault_crypto::{ClientToken, ClientTokenKind};
use linkvault_domain::{AccessMatch, ClientId, TokenId, TokenRefusal, decide_access};
use linkvault_storage::{ConnectionRecord, FamilyRefresh, NewAccessToken, RefreshOutcome, TokenFamilyRecord};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::{Vault, VaultError};

/// How long an expired access token is remembered, so that it answers `tokenExpired` (after that it is
/// deleted on the family's next refresh and looks unknown). Bounds the rows per family to about a day's
/// refreshes.
const EXPIRED_ACCESS_RETENTION: Duration = Duration::days(1);

/// Lifetimes of client-managed tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTokenPolicy {
    /// How long an access token works (default 1 hour). Independent of the integration's own token, which
    /// linkvault refreshes behind it.
    pub access_ttl: Duration,
    /// How long a refresh token works (default 30 days; `None`: until revoked). A rotation starts a new period,
    /// so an app that rotates before the end keeps its connection indefinitely, as Mesh's guide describes.
    pub refresh_ttl: Option<Duration>,
}

impl Default for ClientTokenPolicy {
    fn default() -> Self {
        Self { access_ttl: Duration::hours(1), refresh_ttl: Some(Duration::days(30)) }
    }
}

/// Tokens just issued or refreshed. The secrets are shown to the client once; `Debug` redacts them.
#[derive(Debug)]
pub struct ClientTokens {
    pub family_id: Uuid,
    pub token_id: TokenId,
    pub access_token: ClientToken,
    pub access_expires_at: OffsetDateTime,
    /// A new refresh token: at issue, and on a refresh with rotation; `None` when the presented one stays valid.
    pub refresh_token: Option<ClientToken>,
    pub refresh_expires_at: Option<OffsetDateTime>,
}

/// Why a client token was refused, for the HTTP layer to answer.
pub type ClientTokenRefusal = TokenRefusal;

impl Vault {
    pub fn client_token_policy(&self) -> ClientTokenPolicy {
        self.client_token_policy
    }

    /// Sets the lifetimes of client-managed tokens (the default is [`ClientTokenPolicy::default`]).
    pub fn with_client_token_policy(mut self, policy: ClientTokenPolicy) -> Self {
        self.client_token_policy = policy;
        self
    }

    fn client_digest(&self, token: &str) -> Vec<u8> {
        self.client_token_digester.digest(token).to_vec()
    }

    /// Issues a new token family for a connection handed to a client-mode client, retiring (`superseded`) any
    /// earlier family of the same connection: a new sign-in replaces the tokens the app held.
    pub async fn issue_client_tokens(&self, record: &ConnectionRecord) -> Result<ClientTokens, VaultError> {
        let now = self.clock.now();
        let policy = self.client_token_policy;
        let access = ClientToken::generate(ClientTokenKind::Access)?;
        let refresh = ClientToken::generate(ClientTokenKind::Refresh)?;
        let refresh_expires_at = policy.refresh_ttl.map(|ttl| now + ttl);
        let access_expires_at =
            linkvault_domain::client_tokens::access_expiry(now, policy.access_ttl, refresh_expires_at);
        let family = TokenFamilyRecord {
            family_id: Uuid::new_v4(),
            token_id: record.token_id,
            client_id: record.client_id,
            integration: record.integration.clone(),
            refresh_digest: self.client_digest(refresh.expose()),
            refresh_expires_at,
            generation: 0,
            created_at: now,
            updated_at: now,
            revoked_at: None,
            revoked_reason: None,
        };
        let new_access = NewAccessToken { digest: self.client_digest(access.expose()), expires_at: access_expires_at };
        self.store.issue_token_family(&family, &new_access).await?;
        Ok(ClientTokens {
            family_id: family.family_id,
            token_id: record.token_id,
            access_token: access,
            access_expires_at,
            refresh_token: Some(refresh),
            refresh_expires_at,
        })
    }

    /// `POST /api/v1/token/refresh`: a new access token for a current refresh token of `client_id`'s family for
    /// `integration`; with `rotate`, a new refresh token too, spending the presented one. A spent refresh token
    /// revokes its family (`RefreshTokenReused`). Atomic across instances (see `ClientTokenStore`).
    pub async fn refresh_client_tokens(
        &self,
        client_id: ClientId,
        integration: &str,
        presented_refresh: &str,
        rotate: bool,
    ) -> Result<Result<ClientTokens, ClientTokenRefusal>, VaultError> {
        let presented = presented_refresh.trim();
        if !ClientToken::well_formed(presented, ClientTokenKind::Refresh) {
            return Ok(Err(TokenRefusal::Unknown));
        }
        let now = self.clock.now();
        let policy = self.client_token_policy;
        let access = ClientToken::generate(ClientTokenKind::Access)?;
        let new_refresh = if rotate { Some(ClientToken::generate(ClientTokenKind::Refresh)?) } else { None };
        let request = FamilyRefresh {
            client_id,
            integration: integration.to_owned(),
            presented_digest: self.client_digest(presented),
            now,
            access_digest: self.client_digest(access.expose()),
            access_ttl: policy.access_ttl,
            rotate_to: new_refresh
                .as_ref()
                .map(|t| (self.client_digest(t.expose()), policy.refresh_ttl.map(|ttl| now + ttl))),
            purge_expired_before: now - EXPIRED_ACCESS_RETENTION,
        };
        Ok(match self.store.refresh_token_family(&request).await? {
            RefreshOutcome::Refreshed { family, access_expires_at } => Ok(ClientTokens {
                family_id: family.family_id,
                token_id: family.token_id,
                access_token: access,
                access_expires_at,
                refresh_token: new_refresh,
                refresh_expires_at: family.refresh_expires_at,
            }),
            RefreshOutcome::Refused(why) => Err(why),
        })
    }

    /// The connection an access token stands for, if it is `client_id`'s, unexpired and its family not revoked.
    /// Another client's token is `Unknown`, exactly like one that never existed.
    pub async fn resolve_access_token(
        &self,
        client_id: ClientId,
        presented: &str,
    ) -> Result<Result<TokenId, ClientTokenRefusal>, VaultError> {
        let presented = presented.trim();
        if !ClientToken::well_formed(presented, ClientTokenKind::Access) {
            return Ok(Err(TokenRefusal::Unknown));
        }
        let found = self.store.find_access_token(&self.client_digest(presented)).await?;
        let (matched, token_id) = match found {
            Some(m) if m.family.client_id == client_id => {
                (AccessMatch::Found { family: m.family.state(), expires_at: m.expires_at }, Some(m.family.token_id))
            }
            _ => (AccessMatch::Unknown, None),
        };
        Ok(match (decide_access(matched, self.clock.now()), token_id) {
            (Ok(()), Some(token_id)) => Ok(token_id),
            (Ok(()), None) => Err(TokenRefusal::Unknown),
            (Err(why), _) => Err(why),
        })
    }

    /// Every token family of a connection (for inspection and tests; no secret is in a family record).
    pub async fn client_token_families(&self, token_id: TokenId) -> Result<Vec<TokenFamilyRecord>, VaultError> {
        Ok(self.store.token_families(token_id).await?)
    }
}
