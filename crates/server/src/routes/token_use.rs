//! Token-backed calls over HTTP: the vault decides whether an `authToken` / `fromAuthToken` names a connection
//! the caller may use for an operation (`Vault::use_connection`, the one path every token-backed endpoint goes
//! through, so isolation, scope and re-authentication signals are decided identically everywhere); this module
//! maps its refusal to the HTTP answer in one place and runs account calls through a usable connection.

use linkvault_domain::{Operation, TokenId, TokenRefusal};
use std::future::Future;
use std::pin::Pin;

use linkvault_integrations::Integration;
use linkvault_integrations::api::{AccountApi, ApiError as Upstream, Call, Credential};
use linkvault_refresh::RefreshError;
use linkvault_vault::events::mesh_account_id;
use linkvault_vault::{Caller, Usable, UseRefusal, UseRequest};

use crate::AppState;
use crate::api_result::{ApiError, ApiStatus, ErrorType};

/// A connection resolved for one call (the vault's answer).
pub(crate) type Resolved<'a> = Usable<'a>;

/// The one place a refused use of a connection becomes an HTTP answer (holdings alone report a needed
/// re-authentication inside its result instead, by matching [`UseRefusal::ReauthRequired`] first).
impl From<UseRefusal> for ApiError {
    fn from(refusal: UseRefusal) -> Self {
        match refusal {
            UseRefusal::InvalidUserId { field, reason } => ApiError::invalid_field(field, reason),
            UseRefusal::IntegrationNotFound(raw) => ApiError::integration_not_found(&raw),
            UseRefusal::TokenNotFound => ApiError::token_not_found(),
            // Byte-for-byte the unknown-id answer, for every tokenId a client-mode caller sends, existing or not: a
            // client-mode client knows no tokenIds, so to it they name nothing (and no answer tells ids apart).
            UseRefusal::TokenIdFromClientMode => ApiError::token_not_found(),
            UseRefusal::AccessToken(why) => access_token_refused(why),
            UseRefusal::KeyScopeTooLow => key_scope_insufficient(),
            UseRefusal::TokenScopeMismatch => ApiError::new(
                ApiStatus::PermissionDenied,
                ErrorType::TokenScopeMismatch,
                "this token was connected with a read-scoped key; connect the account with a write key for write calls",
            ),
            UseRefusal::ReauthRequired { token_id, integration, by_access_token } => {
                reauthentication_required(token_id, &integration, by_access_token)
            }
            UseRefusal::Unavailable { integration_name, reason } => ApiError::new(
                ApiStatus::ServerFailure,
                ErrorType::IntegrationUnavailable,
                format!(
                    "{integration_name}: the connection's access could not be renewed just now ({reason}); retry shortly"
                ),
            ),
            UseRefusal::Failed(cause) => ApiError::internal(&cause),
        }
    }
}

pub(crate) fn key_scope_insufficient() -> ApiError {
    ApiError::new(
        ApiStatus::PermissionDenied,
        ErrorType::KeyScopeInsufficient,
        "this endpoint needs a write-scoped API key; the key used is read-only",
    )
}

/// `hide_token_id`: the caller named the connection by a client-managed access token; it is told the
/// connection's `meshAccountId` (what Link gave it) instead of the tokenId, which such clients never see.
pub(crate) fn reauthentication_required(token_id: TokenId, integration: &str, hide_token_id: bool) -> ApiError {
    if hide_token_id {
        return ApiError::new(
            ApiStatus::BadRequest,
            ErrorType::ReauthenticationRequired,
            "the end user must sign in to this integration again (open Link for this user); the connection stays the \
             same and Link hands out new tokens",
        )
        .with_data(serde_json::json!({
            "meshAccountId": mesh_account_id(token_id).to_string(),
            "brokerType": integration,
        }));
    }
    ApiError::new(
        ApiStatus::BadRequest,
        ErrorType::ReauthenticationRequired,
        "the end user must sign in to this integration again (open Link with this tokenId); the tokenId stays the same",
    )
    .with_data(serde_json::json!({"tokenId": token_id.to_string(), "brokerType": integration}))
}

/// [`reauthentication_required`] for a connection in use.
pub(crate) fn reauthentication_required_for(resolved: &Resolved<'_>) -> ApiError {
    reauthentication_required(resolved.record.token_id, &resolved.record.integration, resolved.by_access_token)
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

/// The caller's connection for `auth_token` and `type` (and, when the request names one, `user_id`'s), checked
/// for `operation`, with usable credentials: the vault's one decision, over this server's catalog and engine.
pub(crate) async fn use_connection<'a>(
    state: &'a AppState,
    caller: &Caller,
    auth_token: &str,
    integration_type: &str,
    user_id: Option<&str>,
    operation: Operation,
) -> Result<Resolved<'a>, UseRefusal> {
    let request = UseRequest { auth_token, integration_type: Some(integration_type), user_id, operation };
    state.vault.use_connection(&state.catalog, &state.engine, caller, request).await
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
            AccountFailure::Reauth => reauthentication_required_for(resolved),
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
    use linkvault_vault::{ConnectionMeta, IntegrationCredentials, Vault};
    use secrecy::SecretString;

    use super::*;

    async fn write_call(state: &AppState, caller: &Caller, token: &str) -> Result<(), (ApiStatus, ErrorType)> {
        match use_connection(state, caller, token, "coinbase", None, Operation::Write).await {
            Ok(_) => Ok(()),
            Err(refusal) => {
                let e = ApiError::from(refusal);
                Err((e.status, e.error_type))
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_scoped_family_cannot_write_and_a_write_scoped_one_can() -> Result<(), Box<dyn std::error::Error>> {
        let fresh = fresh_store(Backend::Sqlite).await?;
        let vault = Arc::new(
            Vault::open(Arc::clone(&fresh.store), Arc::new(MasterKey::generate()?), Arc::new(SystemClock)).await?,
        );
        let state = AppState::new(Arc::clone(&vault), Arc::clone(&fresh.store), Arc::new(Catalog::embedded()))?;
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
        let caller = |scope| Caller {
            client_id: client,
            scope,
            token_mode: TokenMode::Client,
            key_id: uuid::Uuid::nil(),
            api_rate_limit: None,
        };
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
