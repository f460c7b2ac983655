//! Using a connection: the one decision every token-backed request goes through — which connection an
//! `authToken` names, whether this caller may use it for this operation, and whether its credentials are fresh
//! enough to use — answered as [`Usable`] or as the one reason why not ([`UseRefusal`]), which the server maps
//! to its HTTP error in one place.
//!
//! The catalog is looked up once and the connection loaded and checked once (owner, user, integration, scope)
//! before anything reaches the integration. Freshness is the refresh engine's decision; the engine sits above
//! the vault, so it is reached through [`Freshener`], which it implements.

use std::future::Future;
use std::pin::Pin;

use linkvault_crypto::ClientTokenKind;
use linkvault_domain::{
    AccessDenied, ClientId, IntegrationType, Operation, TokenId, TokenMode, TokenRefusal, UserId, authorize_token_use,
};
use linkvault_integrations::{Catalog, Integration};
use linkvault_storage::ConnectionRecord;

use crate::{Caller, ConnectionView, IntegrationCredentials, Vault, VaultError};

/// What a request asks to do with a connection.
#[derive(Debug, Clone, Copy)]
pub struct UseRequest<'r> {
    /// A tokenId (managed clients) or a client-managed access token (`lva_…`).
    pub auth_token: &'r str,
    /// The request's `type`; `None` when the caller accepts whichever integration the connection is of (the Link
    /// page's return users).
    pub integration_type: Option<&'r str>,
    /// The request's `userId` extension, unparsed: another user's connection is then not found.
    pub user_id: Option<&'r str>,
    pub operation: Operation,
}

/// A connection the caller may use for the operation (checked, not yet made fresh).
#[derive(Debug)]
pub struct Authorized<'c> {
    pub record: ConnectionRecord,
    pub integration: &'c Integration,
    /// Whether the request named it by a client-managed access token (rather than a tokenId).
    pub by_access_token: bool,
}

/// A connection ready for an account call: checked, and its credentials fresh and open.
#[derive(Debug)]
pub struct Usable<'c> {
    pub record: ConnectionRecord,
    pub integration: &'c Integration,
    pub credentials: IntegrationCredentials,
    /// As in [`Authorized`]: the caller must then never be shown the tokenId.
    pub by_access_token: bool,
}

/// Why a connection cannot be used. Unknown, another client's, another user's, another integration's, deleted:
/// all [`UseRefusal::TokenNotFound`], indistinguishably.
#[derive(Debug)]
pub enum UseRefusal {
    /// The request's `userId` is malformed.
    InvalidUserId {
        field: &'static str,
        reason: String,
    },
    IntegrationNotFound(String),
    TokenNotFound,
    /// A client in client-managed token mode presented a tokenId: such clients name connections only by the access
    /// tokens they were handed (so a revoked family cannot be bypassed with the id behind it). Decided before any
    /// lookup, so it says nothing about whether the id exists.
    TokenIdFromClientMode,
    /// A client-managed access token that is not (or no longer) good.
    AccessToken(TokenRefusal),
    /// A read key asked for a write (or to remove a write-scoped connection).
    KeyScopeTooLow,
    /// A write key used a read-scoped connection for a write.
    TokenScopeMismatch,
    /// The end user must sign in again; the tokenId stays valid. `by_access_token`: the caller named the
    /// connection by a client-managed access token, so its answer must not show the tokenId.
    ReauthRequired {
        token_id: TokenId,
        integration: String,
        by_access_token: bool,
    },
    /// The connection's access could not be renewed just now.
    Unavailable {
        integration_name: String,
        reason: String,
    },
    Failed(String),
}

impl From<VaultError> for UseRefusal {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::NotFound => UseRefusal::TokenNotFound,
            other => UseRefusal::Failed(other.to_string()),
        }
    }
}

/// Why the engine could not hand out fresh credentials.
#[derive(Debug)]
pub enum Staleness {
    NotFound,
    ReauthRequired,
    Unavailable(String),
    Failed(String),
}

/// The future [`Freshener::fresh`] returns.
pub type FreshFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(ConnectionRecord, IntegrationCredentials), Staleness>> + Send + 'a>>;

/// Makes a loaded connection's credentials fresh enough to use (the refresh engine: refreshed first if expired
/// or inside the margin, coalescing with any refresh in flight; a connection needing re-auth is refused).
pub trait Freshener: Send + Sync {
    fn fresh(&self, client_id: ClientId, record: ConnectionRecord) -> FreshFuture<'_>;
}

/// The request's `userId`, if any, validated.
pub fn requested_user(raw: Option<&str>) -> Result<Option<UserId>, UseRefusal> {
    raw.map(UserId::parse).transpose().map_err(|e| UseRefusal::InvalidUserId { field: e.field, reason: e.reason })
}

/// Another user's connection is not found, the same answer as for an id that never existed.
fn check_owner(connection_user: &str, user: Option<&UserId>) -> Result<(), UseRefusal> {
    match user {
        Some(user) if user.as_str() != connection_user => Err(UseRefusal::TokenNotFound),
        _ => Ok(()),
    }
}

impl Vault {
    /// The connection `auth_token` names for `caller`: a tokenId (managed clients only), or a client-managed access
    /// token that is the caller's, unexpired and not revoked, and whether it was the latter.
    async fn token_id_named(&self, caller: &Caller, auth_token: &str) -> Result<(TokenId, bool), UseRefusal> {
        let auth_token = auth_token.trim();
        if ClientTokenKind::of(auth_token) == Some(ClientTokenKind::Access) {
            let token_id =
                self.resolve_access_token(caller.client_id, auth_token).await?.map_err(UseRefusal::AccessToken)?;
            return Ok((token_id, true));
        }
        if caller.token_mode == TokenMode::Client {
            return Err(UseRefusal::TokenIdFromClientMode);
        }
        Ok((auth_token.parse::<TokenId>().map_err(|_| UseRefusal::TokenNotFound)?, false))
    }

    /// Checks everything about using `request.auth_token` that does not need the integration: the named user
    /// (first, as the `userId` extension's own refusal), the `type` against the catalog, the connection (loaded
    /// once) against the caller, the user and the type, and scope for the operation.
    pub async fn authorize_use<'c>(
        &self,
        catalog: &'c Catalog,
        caller: &Caller,
        request: UseRequest<'_>,
    ) -> Result<Authorized<'c>, UseRefusal> {
        let user = requested_user(request.user_id)?;
        let mut loaded = None;
        if user.is_some() {
            // A named user's connection is checked before the type is looked at.
            let (token_id, by_access_token) = self.token_id_named(caller, request.auth_token).await?;
            let record = self.connection_for(caller.client_id, token_id).await?;
            check_owner(&record.user_id, user.as_ref())?;
            loaded = Some((record, by_access_token));
        }
        let wanted = match request.integration_type {
            Some(raw) => Some(known_integration(catalog, raw)?),
            None => None,
        };
        let (record, by_access_token) = match loaded {
            Some(loaded) => loaded,
            None => {
                let (token_id, by_access_token) = self.token_id_named(caller, request.auth_token).await?;
                (self.connection_for(caller.client_id, token_id).await?, by_access_token)
            }
        };
        let integration = match wanted {
            // The tokenId exists but not for this integration: as unknown as any other.
            Some(wanted) if wanted.integration_type.as_str() != record.integration => {
                return Err(UseRefusal::TokenNotFound);
            }
            Some(wanted) => wanted,
            None => catalog
                .get(&record.integration)
                .ok_or_else(|| UseRefusal::IntegrationNotFound(record.integration.clone()))?,
        };
        match authorize_token_use(caller.client_id, caller.scope, record.client_id, record.scope, request.operation) {
            Ok(()) => {}
            Err(AccessDenied::NotFound) => return Err(UseRefusal::TokenNotFound),
            Err(AccessDenied::KeyScopeTooLow) => return Err(UseRefusal::KeyScopeTooLow),
            Err(AccessDenied::TokenScopeMismatch) => return Err(UseRefusal::TokenScopeMismatch),
        }
        Ok(Authorized { record, integration, by_access_token })
    }

    /// Makes an authorized connection usable: the engine's freshness decision, once.
    pub async fn make_usable<'c>(
        &self,
        freshener: &dyn Freshener,
        authorized: Authorized<'c>,
    ) -> Result<Usable<'c>, UseRefusal> {
        let Authorized { record, integration, by_access_token } = authorized;
        let (token_id, client_id) = (record.token_id, record.client_id);
        match freshener.fresh(client_id, record).await {
            Ok((record, credentials)) => Ok(Usable { record, integration, credentials, by_access_token }),
            Err(Staleness::NotFound) => Err(UseRefusal::TokenNotFound),
            Err(Staleness::ReauthRequired) => Err(UseRefusal::ReauthRequired {
                token_id,
                integration: integration.integration_type.as_str().to_owned(),
                by_access_token,
            }),
            Err(Staleness::Unavailable(reason)) => {
                Err(UseRefusal::Unavailable { integration_name: integration.name.clone(), reason })
            }
            Err(Staleness::Failed(e)) => Err(UseRefusal::Failed(e)),
        }
    }

    /// [`authorize_use`](Self::authorize_use) then [`make_usable`](Self::make_usable): what a token-backed
    /// endpoint may do with `request.auth_token`, or why not.
    pub async fn use_connection<'c>(
        &self,
        catalog: &'c Catalog,
        freshener: &dyn Freshener,
        caller: &Caller,
        request: UseRequest<'_>,
    ) -> Result<Usable<'c>, UseRefusal> {
        let authorized = self.authorize_use(catalog, caller, request).await?;
        self.make_usable(freshener, authorized).await
    }

    /// A connection's status for its owner, refused as not found for another user when `user_id` names one.
    /// To a client-mode caller a tokenId names nothing (finding 14.5b), so it is refused like an unknown one.
    pub async fn status_for(
        &self,
        caller: &Caller,
        token_id: TokenId,
        user_id: Option<&str>,
    ) -> Result<ConnectionView, UseRefusal> {
        let user = requested_user(user_id)?;
        if caller.token_mode == TokenMode::Client {
            return Err(UseRefusal::TokenIdFromClientMode);
        }
        let view = self.status(caller.client_id, token_id).await?;
        check_owner(&view.user_id, user.as_ref())?;
        Ok(view)
    }
}

/// `raw` as a catalog integration, or `IntegrationNotFound`.
pub fn known_integration<'c>(catalog: &'c Catalog, raw: &str) -> Result<&'c Integration, UseRefusal> {
    IntegrationType::parse(raw)
        .ok()
        .and_then(|parsed| catalog.get(parsed.as_str()))
        .ok_or_else(|| UseRefusal::IntegrationNotFound(raw.to_owned()))
}
