//! Resolving an `authToken` / `fromAuthToken` to a connection the caller may use for an operation, with
//! usable credentials — the one path every token-backed endpoint goes through, so isolation, scope and
//! re-authentication signals are decided identically everywhere.

use linkvault_crypto::ClientTokenKind;
use linkvault_domain::{AccessDenied, ClientId, Operation, Scope, TokenId, TokenRefusal, authorize_token_use};
use std::future::Future;
use std::pin::Pin;

use linkvault_integrations::Integration;
use linkvault_integrations::api::{AccountApi, ApiError as Upstream, Call, Credential};
use linkvault_refresh::RefreshError;
use linkvault_storage::ConnectionRecord;
use linkvault_vault::{Caller, IntegrationCredentials};

use crate::AppState;
use crate::api_result::{ApiError, ApiStatus, ErrorType};
use crate::routes::user_check::{check_owner, requested_user};

/// A connection resolved for one call.
pub(crate) struct Resolved<'a> {
    pub record: ConnectionRecord,
    pub integration: &'a Integration,
    pub credentials: IntegrationCredentials,
}

/// Why a resolved connection cannot be used right now.
pub(crate) enum Unusable {
    /// The end user must sign in again (through Link or `/authenticate`); the tokenId stays valid.
    ReauthRequired {
        token_id: TokenId,
        integration: String,
    },
    Error(ApiError),
}

/// The answer for endpoints that report a needed re-authentication as an error (all but holdings).
impl From<Unusable> for ApiError {
    fn from(e: Unusable) -> Self {
        match e {
            Unusable::ReauthRequired { token_id, integration } => reauthentication_required(token_id, &integration),
            Unusable::Error(e) => e,
        }
    }
}

impl From<ApiError> for Unusable {
    fn from(e: ApiError) -> Self {
        Unusable::Error(e)
    }
}

pub(crate) fn key_scope_insufficient() -> ApiError {
    ApiError::new(
        ApiStatus::PermissionDenied,
        ErrorType::KeyScopeInsufficient,
        "this endpoint needs a write-scoped API key; the key used is read-only",
    )
}

pub(crate) fn reauthentication_required(token_id: TokenId, integration: &str) -> ApiError {
    ApiError::new(
        ApiStatus::BadRequest,
        ErrorType::ReauthenticationRequired,
        "the end user must sign in to this integration again (open Link with this tokenId); the tokenId stays the same",
    )
    .with_data(serde_json::json!({"tokenId": token_id.to_string(), "brokerType": integration}))
}

/// The answer to a refused client-managed access token. Unknown (including another client's) is
/// `tokenNotFound`, byte-for-byte the answer for an unknown tokenId.
pub(crate) fn access_token_refused(why: TokenRefusal) -> ApiError {
    match why {
        TokenRefusal::Unknown => ApiError::token_not_found(),
        TokenRefusal::Expired => ApiError::new(
            ApiStatus::PermissionDenied,
            ErrorType::TokenExpired,
            "the access token has expired; get a new one from POST /api/v1/token/refresh",
        ),
        TokenRefusal::Revoked | TokenRefusal::RefreshTokenReused => ApiError::new(
            ApiStatus::PermissionDenied,
            ErrorType::TokenRevoked,
            "the access token has been revoked; the end user must connect the account again",
        ),
    }
}

/// The connection an `authToken` names: a tokenId, or (client-managed mode) a linkvault access token
/// (`lva_…`) that is the caller's, unexpired and not revoked. The scope and ownership checks follow in the
/// caller, identically for both.
pub(crate) async fn token_id_of(state: &AppState, caller: &Caller, auth_token: &str) -> Result<TokenId, ApiError> {
    let auth_token = auth_token.trim();
    if ClientTokenKind::of(auth_token) == Some(ClientTokenKind::Access) {
        return state.vault.resolve_access_token(caller.client_id, auth_token).await?.map_err(access_token_refused);
    }
    auth_token.parse::<TokenId>().map_err(|_| ApiError::token_not_found())
}

/// Finds the caller's connection for `auth_token` and `type` (and, when the request names one, `user_id`'s),
/// checks scope for `operation`, and opens its credentials. Nothing reaches the integration before every check
/// has passed; the connection is loaded once.
pub(crate) async fn resolve<'a>(
    state: &'a AppState,
    caller: &Caller,
    auth_token: &str,
    integration_type: &str,
    user_id: Option<&str>,
    operation: Operation,
) -> Result<Resolved<'a>, Unusable> {
    // A named user is checked first, as the userId extension's own refusal (before the type is looked at).
    let user = requested_user(user_id)?;
    let mut loaded = None;
    if let Some(user) = &user {
        let token_id = token_id_of(state, caller, auth_token).await?;
        let record = state.vault.connection_for(caller.client_id, token_id).await.map_err(ApiError::from)?;
        check_owner(&record.user_id, Some(user))?;
        loaded = Some((token_id, record));
    }
    let integration = crate::routes::tokens::known_integration(state, integration_type)?;
    let (token_id, record) = match loaded {
        Some(loaded) => loaded,
        None => {
            let token_id = token_id_of(state, caller, auth_token).await?;
            (token_id, state.vault.connection_for(caller.client_id, token_id).await.map_err(ApiError::from)?)
        }
    };
    if record.integration != integration.as_str() {
        return Err(ApiError::token_not_found().into());
    }
    open_connection(state, caller.client_id, caller.scope, token_id, record, operation).await
}

/// The second half of [`resolve`], for callers that found the connection themselves (the Link page, by its
/// session's client, user and scope): checks scope for `operation` and opens usable credentials.
pub(crate) async fn open_connection<'a>(
    state: &'a AppState,
    client_id: ClientId,
    scope: Scope,
    token_id: TokenId,
    record: ConnectionRecord,
    operation: Operation,
) -> Result<Resolved<'a>, Unusable> {
    let integration_type = record.integration.clone();
    match authorize_token_use(client_id, scope, record.client_id, record.scope, operation) {
        Ok(()) => {}
        Err(AccessDenied::NotFound) => return Err(ApiError::token_not_found().into()),
        Err(AccessDenied::KeyScopeTooLow) => return Err(key_scope_insufficient().into()),
        Err(AccessDenied::TokenScopeMismatch) => {
            return Err(ApiError::new(
                ApiStatus::PermissionDenied,
                ErrorType::TokenScopeMismatch,
                "this token was connected with a read-scoped key; connect the account with a write key for write calls",
            )
            .into());
        }
    }
    let Some(integration) = state.catalog.get(&integration_type) else {
        return Err(ApiError::integration_not_found(&integration_type).into());
    };
    // The engine decides usability: refreshed first if expired or inside the margin (coalescing with any
    // refresh in flight); a connection needing re-auth — including a credentials session past its expiry,
    // which it marks and announces — is refused.
    let reauth = Unusable::ReauthRequired { token_id, integration: record.integration.clone() };
    match state.engine.ensure_fresh_from(client_id, token_id, Some(record)).await {
        Ok((record, credentials)) => Ok(Resolved { record, integration, credentials }),
        Err(RefreshError::NotFound) => Err(ApiError::token_not_found().into()),
        Err(RefreshError::ReauthRequired) => Err(reauth),
        Err(RefreshError::Unavailable(reason)) => Err(ApiError::new(
            ApiStatus::ServerFailure,
            ErrorType::IntegrationUnavailable,
            format!(
                "{}: the connection's access could not be renewed just now ({reason}); retry shortly",
                integration.name
            ),
        )
        .into()),
        Err(other) => Err(ApiError::internal(&other).into()),
    }
}

/// The future an adapter call returns (what `async_trait` methods return).
pub(crate) type AccountFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, Upstream>> + Send + 'c>>;

/// Why an account call gave no answer.
#[derive(Debug)]
pub(crate) enum AccountFailure {
    /// The integration no longer accepts the connection: it is now `reauthRequired` (its webhook sent) and the
    /// end user must sign in again; the tokenId stays.
    Reauth,
    /// Any other refusal or failure of the integration.
    Upstream(Upstream),
    /// Ours (storage, or the connection could not be renewed).
    Local(ApiError),
}

impl AccountFailure {
    /// The answer for endpoints without a result-level status.
    pub(crate) fn into_api_error(self, resolved: &Resolved<'_>) -> ApiError {
        match self {
            AccountFailure::Reauth => reauthentication_required(resolved.record.token_id, &resolved.record.integration),
            AccountFailure::Upstream(e) => upstream_error(resolved.integration, &e),
            AccountFailure::Local(e) => e,
        }
    }
}

/// Runs one account-API call for a resolved connection, through the adapter its catalog entry names. An
/// access token the integration calls expired is refreshed once (the engine's single flight) and the call
/// retried; a credential it calls revoked or invalid — or an expired one that refresh did not cure — makes
/// the connection `reauthRequired`, with its webhook, so the next call does not reach the integration.
/// `data` is whatever the call needs besides the credential (a quote request, a transfer id, `()`).
pub(crate) async fn call_account<X, T>(
    state: &AppState,
    resolved: &mut Resolved<'_>,
    data: &X,
    op: impl for<'c> Fn(&'c dyn AccountApi, Call<'c>, &'c X) -> AccountFuture<'c, T>,
) -> Result<T, AccountFailure>
where
    X: Sync + ?Sized,
{
    let mut renewed = false;
    loop {
        let credentials = &resolved.credentials;
        let credential =
            Credential::of_stored(resolved.integration, &credentials.access_token, credentials.refresh_token.as_ref());
        let (api, call) = state.exchange.adapter(resolved.integration, credential).map_err(AccountFailure::Upstream)?;
        let revoked = match op(api, call, data).await {
            Ok(answer) => return Ok(answer),
            Err(Upstream::Unauthorized) => renewed,
            Err(Upstream::Revoked(reason)) => {
                tracing::info!(integration = %resolved.record.integration, reason, "integration revoked a credential");
                true
            }
            Err(other) => return Err(AccountFailure::Upstream(other)),
        };
        let refused = resolved.credentials.access_token.clone();
        let (client_id, token_id) = (resolved.record.client_id, resolved.record.token_id);
        match state.engine.credential_refused(client_id, token_id, &refused, revoked).await {
            Ok((record, credentials)) if !revoked => {
                resolved.record = record;
                resolved.credentials = credentials;
                renewed = true;
            }
            Ok(_) | Err(RefreshError::ReauthRequired) => return Err(AccountFailure::Reauth),
            Err(RefreshError::NotFound) => return Err(AccountFailure::Local(ApiError::token_not_found())),
            Err(RefreshError::Unavailable(reason)) => {
                return Err(AccountFailure::Local(ApiError::new(
                    ApiStatus::ServerFailure,
                    ErrorType::IntegrationUnavailable,
                    format!(
                        "{}: the connection's access could not be renewed just now ({reason}); retry shortly",
                        resolved.integration.name
                    ),
                )));
            }
            Err(other) => return Err(AccountFailure::Local(ApiError::internal(&other))),
        }
    }
}

/// Maps an integration API failure onto our answer.
pub(crate) fn upstream_error(integration: &Integration, e: &Upstream) -> ApiError {
    match e {
        Upstream::Transient { .. } => ApiError::new(
            ApiStatus::ServerFailure,
            ErrorType::IntegrationUnavailable,
            format!("{} is unavailable for now ({e}); try again shortly", integration.name),
        ),
        Upstream::InsufficientScope => ApiError::new(
            ApiStatus::PermissionDenied,
            ErrorType::TokenScopeMismatch,
            format!("{} refused the call for lack of scope", integration.name),
        ),
        Upstream::NotSupported(reason) => {
            ApiError::new(ApiStatus::BadRequest, ErrorType::FeatureNotSupported, reason.clone())
        }
        Upstream::NotFound(what) => ApiError::new(
            ApiStatus::NotFound,
            ErrorType::NotFoundAtIntegration,
            format!("{}: {what}", integration.name),
        ),
        Upstream::Refused { message, .. } => ApiError::new(
            ApiStatus::BadRequest,
            ErrorType::TransferRefused,
            format!("{} refused: {message}", integration.name),
        ),
        Upstream::Unauthorized | Upstream::Revoked(_) => ApiError::new(
            ApiStatus::BadRequest,
            ErrorType::ReauthenticationRequired,
            format!("{} no longer accepts this connection; the end user must sign in again", integration.name),
        ),
        other => ApiError::new(
            ApiStatus::ServerFailure,
            ErrorType::IntegrationUnavailable,
            format!("{} answered unexpectedly: {other}", integration.name),
        ),
    }
}

#[cfg(test)]
mod tests {
    //! The scope rules through a client-managed access token: the same answers as through the tokenId. (No
    //! write endpoint takes a token yet, so `resolve` is called directly with `Operation::Write`.)
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use linkvault_crypto::MasterKey;
    use linkvault_domain::{IntegrationType, NaturalKey, Scope, SystemClock, TokenMode, UserId};
    use linkvault_integrations::Catalog;
    use linkvault_storage::testing::{Backend, fresh_store};
    use linkvault_vault::{ConnectionMeta, Vault};
    use secrecy::SecretString;

    use super::*;

    async fn write_call(state: &AppState, caller: &Caller, token: &str) -> Result<(), (ApiStatus, ErrorType)> {
        match resolve(state, caller, token, "coinbase", None, Operation::Write).await {
            Ok(_) => Ok(()),
            Err(Unusable::Error(e)) => Err((e.status, e.error_type)),
            Err(Unusable::ReauthRequired { .. }) => Err((ApiStatus::BadRequest, ErrorType::ReauthenticationRequired)),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_scoped_family_cannot_write_and_a_write_scoped_one_can() -> Result<(), Box<dyn std::error::Error>> {
        let fresh = fresh_store(Backend::Sqlite).await?;
        let vault =
            Arc::new(Vault::open(Arc::clone(&fresh.store), MasterKey::generate()?, Arc::new(SystemClock)).await?);
        let state = AppState::new(Arc::clone(&vault), Arc::new(Catalog::embedded()))?;
        let client = vault.create_client("cm", TokenMode::Client).await?.client_id;
        let mut tokens = Vec::new();
        for scope in [Scope::Read, Scope::Write] {
            let key = NaturalKey {
                client_id: client,
                user_id: UserId::parse("alice")?,
                integration: IntegrationType::parse("coinbase")?,
                scope,
            };
            let credentials = IntegrationCredentials {
                access_token: SecretString::from("upstream-access"),
                refresh_token: Some(SecretString::from("upstream-refresh")),
            };
            // Far from expiry, so the engine hands the credentials out without calling the integration.
            let meta = ConnectionMeta {
                access_expires_at: Some(vault.clock().now() + time::Duration::days(1)),
                ..ConnectionMeta::default()
            };
            let stored = vault.store_credentials(&key, &credentials, &meta).await?;
            let record = vault.connection_for(client, stored.token_id).await?;
            tokens.push(vault.issue_client_tokens(&record).await?.access_token.expose().to_owned());
        }
        let caller =
            |scope| Caller { client_id: client, scope, token_mode: TokenMode::Client, key_id: uuid::Uuid::nil() };
        let (read_family, write_family) = (&tokens[0], &tokens[1]);
        assert_eq!(
            write_call(&state, &caller(Scope::Write), read_family).await,
            Err((ApiStatus::PermissionDenied, ErrorType::TokenScopeMismatch))
        );
        assert_eq!(
            write_call(&state, &caller(Scope::Read), write_family).await,
            Err((ApiStatus::PermissionDenied, ErrorType::KeyScopeInsufficient))
        );
        assert_eq!(write_call(&state, &caller(Scope::Write), write_family).await, Ok(()));
        Ok(())
    }
}
