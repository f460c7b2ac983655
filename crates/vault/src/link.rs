//! Link's bookkeeping: link tokens and the page sessions they start, OAuth sign-ins pending inside a
//! session (their begin nonce and browser binding), the integration a session connected, the origins allowed
//! to embed a client's pages, the purge of expired rows, and the sandbox demo client.
//!
//! The secrets (auth_code, session token, begin nonce, binding cookie) are drawn here and only their digests
//! reach the store, so the HTTP layer handles presented strings and fresh [`LinkSecret`]s, never digests or
//! rows to insert.

use linkvault_crypto::{LinkSecret, link_digest};
use linkvault_domain::{AuditAction, AuditActor, ClientId, LinkOrigin, Scope, TokenId, UserId};
use linkvault_storage::LinkStart;
pub use linkvault_storage::{LinkOAuthOutcome, LinkOAuthRecord, LinkSessionRecord};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::audit::AuditNote;
use crate::{Vault, VaultError};

/// Meta key under which `serve --sandbox` records the demo client's id.
const SANDBOX_DEMO_CLIENT_META: &str = "sandbox_demo_client_id";

/// What a Link session is opened for.
#[derive(Debug)]
pub struct LinkTokenSpec {
    pub client_id: ClientId,
    pub user_id: UserId,
    pub scope: Scope,
    pub integration_id: Option<Uuid>,
    pub restrict_multiple_accounts: bool,
    /// `transferOptions`, validated and serialised by the caller.
    pub transfer_options: Option<String>,
}

/// What exchanging an auth_code for a session found.
#[derive(Debug)]
pub enum LinkSessionStart {
    /// The link token was unused and unexpired: here is the session and its bearer token (shown once).
    Started { token: LinkSecret, session: Box<LinkSessionRecord>, expires_at: OffsetDateTime },
    /// Already used (by this or another instance).
    Used,
    /// Past its expiry, or no such auth_code.
    Expired,
}

/// Whether a sign-in may count as this session's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkClaim {
    /// The session's connection is (now) this integration, or the session allows several.
    Claimed,
    /// `restrictMultipleAccounts`, and the session already connected this other integration first.
    OtherConnected(String),
}

/// An OAuth sign-in to record for a session, as built from the integration's authorization request.
#[derive(Debug)]
pub struct LinkOAuthStart<'a> {
    pub session_id: Uuid,
    pub integration: &'a str,
    /// The `state` sent to the integration (only its digest is stored).
    pub oauth_state: &'a str,
    pub pkce_verifier: &'a str,
    pub authorize_url: &'a str,
}

/// A begin step that bound a sign-in to the browser taking it.
#[derive(Debug)]
pub struct LinkOAuthBound {
    /// Where the popup goes next.
    pub authorize_url: String,
    /// The binding cookie's value (only its digest is stored).
    pub binding: LinkSecret,
}

/// Whether the binding cookie a callback carries is the one its begin step set.
pub fn link_binding_matches(pending: &LinkOAuthRecord, presented: Option<&str>) -> bool {
    match (presented, pending.binding_digest.as_deref()) {
        (Some(cookie), Some(expected)) => link_digest(cookie) == expected,
        _ => false,
    }
}

impl Vault {
    /// Records a new link session for `spec`, usable until `ttl` from now; returns its auth_code.
    pub async fn open_link_session(&self, spec: LinkTokenSpec, ttl: Duration) -> Result<LinkSecret, VaultError> {
        let auth_code = LinkSecret::generate()?;
        let now = self.clock.now();
        let record = LinkSessionRecord {
            id: Uuid::new_v4(),
            code_digest: auth_code.digest(),
            client_id: spec.client_id,
            user_id: spec.user_id.as_str().to_owned(),
            scope: spec.scope,
            integration_id: spec.integration_id,
            restrict_multiple_accounts: spec.restrict_multiple_accounts,
            transfer_options: spec.transfer_options,
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
            session_expires_at: None,
            connected_integration: None,
        };
        self.store.insert_link_session(&record).await?;
        Ok(auth_code)
    }

    /// The client whose link token carries `auth_code`, whatever the token's state (for the page's headers).
    pub async fn link_client_of_code(&self, auth_code: &str) -> Result<Option<ClientId>, VaultError> {
        Ok(self.store.find_link_by_code(&link_digest(auth_code)).await?.map(|r| r.client_id))
    }

    /// Uses a link token once: a session usable for `ttl`, or why not.
    pub async fn start_link_session(&self, auth_code: &str, ttl: Duration) -> Result<LinkSessionStart, VaultError> {
        let token = LinkSecret::generate()?;
        let now = self.clock.now();
        let expires_at = now + ttl;
        let code = link_digest(auth_code);
        let note = |session: &LinkSessionRecord| {
            AuditNote::new(AuditActor::Link, AuditAction::LinkSignedIn).client(session.client_id).subject(session.id)
        };
        if self.audit_fail_closed() {
            // Recorded before the link token is spent: only a token that can still start a session is recorded.
            let pending = self.store.find_link_by_code(&code).await?;
            if let Some(session) = pending.filter(|s| s.used_at.is_none() && s.expires_at > now) {
                self.audit_before(&note(&session)).await?;
            }
        }
        let started = self.store.start_link_session(&code, &token.digest(), now, expires_at).await?;
        Ok(match started {
            LinkStart::Started(session) => {
                self.audit_after(&note(&session)).await;
                LinkSessionStart::Started { token, session, expires_at }
            }
            LinkStart::Used => LinkSessionStart::Used,
            LinkStart::Expired | LinkStart::Unknown => LinkSessionStart::Expired,
        })
    }

    /// The started, unexpired session whose bearer token this is.
    pub async fn link_session_by_token(&self, token: &str) -> Result<Option<LinkSessionRecord>, VaultError> {
        Ok(self.store.find_link_session(&link_digest(token), self.clock.now()).await?)
    }

    pub async fn link_session(&self, id: Uuid) -> Result<Option<LinkSessionRecord>, VaultError> {
        Ok(self.store.get_link_session(id).await?)
    }

    /// Records that `session` connected `integration`. With `restrictMultipleAccounts`, a sign-in that lost
    /// the race to another integration is refused (one conditional statement decides the race).
    pub async fn claim_link_connection(
        &self,
        session: &LinkSessionRecord,
        integration: &str,
    ) -> Result<LinkClaim, VaultError> {
        if self.store.claim_link_connection(session.id, integration).await? || !session.restrict_multiple_accounts {
            return Ok(LinkClaim::Claimed);
        }
        let current = self.store.get_link_session(session.id).await?;
        Ok(LinkClaim::OtherConnected(current.and_then(|s| s.connected_integration).unwrap_or_default()))
    }

    /// Records a pending OAuth sign-in valid for `ttl` (keeping at most `max_pending` per session); returns the
    /// one-time nonce of its begin URL.
    pub async fn start_link_oauth(
        &self,
        start: LinkOAuthStart<'_>,
        ttl: Duration,
        max_pending: u32,
    ) -> Result<LinkSecret, VaultError> {
        let nonce = LinkSecret::generate()?;
        let now = self.clock.now();
        let record = LinkOAuthRecord {
            state_digest: link_digest(start.oauth_state),
            session_id: start.session_id,
            integration: start.integration.to_owned(),
            pkce_verifier: start.pkce_verifier.to_owned(),
            created_at: now,
            expires_at: now + ttl,
            begin_digest: Some(nonce.digest()),
            authorize_url: Some(start.authorize_url.to_owned()),
            binding_digest: None,
        };
        self.store.insert_link_oauth(&record, max_pending).await?;
        Ok(nonce)
    }

    /// The begin step, once only and within `window` of the start: binds the sign-in to a fresh cookie.
    pub async fn bind_link_oauth(&self, nonce: &str, window: Duration) -> Result<Option<LinkOAuthBound>, VaultError> {
        let binding = LinkSecret::generate()?;
        let now = self.clock.now();
        let bound = self.store.bind_link_oauth(&link_digest(nonce), &binding.digest(), now - window, now).await?;
        Ok(bound.map(|authorize_url| LinkOAuthBound { authorize_url, binding }))
    }

    /// Claims the pending sign-in of `oauth_state` for its callback: once only, before it expires.
    pub async fn claim_link_oauth(&self, oauth_state: &str) -> Result<Option<LinkOAuthRecord>, VaultError> {
        Ok(self.store.claim_link_oauth(&link_digest(oauth_state), self.clock.now()).await?)
    }

    /// Records a claimed sign-in's result for the Link page to collect.
    pub async fn complete_link_oauth(
        &self,
        oauth_state: &str,
        token_id: Option<TokenId>,
        error: Option<&str>,
    ) -> Result<bool, VaultError> {
        Ok(self.store.complete_link_oauth(&link_digest(oauth_state), token_id, error, self.clock.now()).await?)
    }

    /// Takes the session's oldest completed sign-in result, once.
    pub async fn take_link_oauth_outcome(&self, session_id: Uuid) -> Result<Option<LinkOAuthOutcome>, VaultError> {
        Ok(self.store.take_link_oauth_outcome(session_id).await?)
    }

    /// Allows `origin` to embed the client's Link pages; `false` if it already could.
    pub async fn add_link_origin(&self, client_id: ClientId, origin: &LinkOrigin) -> Result<bool, VaultError> {
        self.existing_client(client_id).await?;
        let note = AuditNote::new(AuditActor::Cli, AuditAction::ClientLinkOriginAdded)
            .client(client_id)
            .detail(format!("origin={}", origin.as_str()));
        self.audit_before(&note).await?;
        let added = self.store.add_link_origin(client_id, origin.as_str(), self.clock.now()).await?;
        if added {
            self.audit_after(&note).await;
        }
        Ok(added)
    }

    /// `false` if `origin` was not allowed.
    pub async fn remove_link_origin(&self, client_id: ClientId, origin: &str) -> Result<bool, VaultError> {
        let note = AuditNote::new(AuditActor::Cli, AuditAction::ClientLinkOriginRemoved)
            .client(client_id)
            .detail(format!("origin={origin}"));
        self.audit_before(&note).await?;
        let removed = self.store.remove_link_origin(client_id, origin).await?;
        if removed {
            self.audit_after(&note).await;
        }
        Ok(removed)
    }

    /// The client's allowed origins, sorted; a stored value that is not a bare origin (written by hand) is
    /// left out, so it can never reach a CSP.
    pub async fn link_origins(&self, client_id: ClientId) -> Result<Vec<LinkOrigin>, VaultError> {
        let stored = self.store.link_origins(client_id).await?;
        Ok(stored.iter().filter(|o| LinkOrigin::is_valid(o)).filter_map(|o| LinkOrigin::parse(o).ok()).collect())
    }

    /// Deletes link sessions and OAuth sign-ins expired for longer than `after`; returns the sessions deleted.
    pub async fn purge_link_sessions(&self, after: Duration) -> Result<u64, VaultError> {
        Ok(self.store.purge_link_sessions(self.clock.now() - after).await?)
    }

    /// The sandbox demo client recorded by `serve --sandbox`, if any (an unreadable record counts as none).
    pub async fn sandbox_demo_client(&self) -> Result<Option<ClientId>, VaultError> {
        let raw = self.store.get_meta(SANDBOX_DEMO_CLIENT_META).await?;
        Ok(raw.and_then(|r| r.parse::<ClientId>().ok()))
    }

    pub async fn set_sandbox_demo_client(&self, client_id: ClientId) -> Result<(), VaultError> {
        Ok(self.store.set_meta(SANDBOX_DEMO_CLIENT_META, &client_id.to_string()).await?)
    }
}
