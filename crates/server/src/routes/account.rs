//! `DELETE /api/v1/account`: removing a connection is permanent — row and data key destroyed at once, the
//! tokenId retired forever — and the grant is revoked at the integration, so the tokens die there too. A
//! client-managed access token names its connection as well; the connection's token families go with it. A
//! read-scoped key may remove only read-scoped connections (`Operation::Remove`).

use axum::extract::State;
use linkvault_domain::Operation;
use linkvault_integrations::AuthScheme;
use linkvault_integrations::oauth::TokenTypeHint;
use linkvault_vault::{IntegrationCredentials, UseRefusal, UseRequest};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk, ApiStatus, ErrorType};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::routes::openapi::ApiResult;

/// Mesh's `BrokerBaseRequest`.
#[derive(Deserialize, ToSchema)]
#[schema(as = BrokerBaseRequest)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RemoveRequest {
    /// The tokenId, or (client-managed token mode) a linkvault access token lva_…
    #[schema(min_length = 1)]
    auth_token: String,
    #[serde(rename = "type")]
    integration_type: String,
    /// Extension: the end user the call is for; another user's tokenId is then tokenNotFound
    #[serde(default)]
    user_id: Option<String>,
}

/// A read key removing a connection made with a write key: refused, as the scope error of every endpoint.
fn read_key_cannot_remove() -> ApiError {
    ApiError::new(
        ApiStatus::PermissionDenied,
        ErrorType::KeyScopeInsufficient,
        "this connection was made with a write-scoped API key; a read-scoped key may remove only connections made \
         with a read key — remove it with a write key",
    )
}

#[utoipa::path(
    delete,
    path = "/api/v1/account",
    operation_id = "removeAccount",
    summary = "Remove a connection permanently",
    description = "With a tokenId in authToken: the connection's row and data key are destroyed at once and the \
        tokenId is never issued again. A client-managed access token (lva_…) names its connection too (expired: \
        403 tokenExpired, revoked: 403 tokenRevoked); the connection's token families are deleted with it.",
    request_body = RemoveRequest,
    responses(
        (status = 200, description = "Removed"),
        (status = 400, description = "missingField / invalidField naming the field, integrationNotFound", body = ApiResult),
        (status = 403, description = "keyScopeInsufficient (a read key and a write-scoped connection), tokenExpired, \
            tokenRevoked (client-managed access tokens)", body = ApiResult),
        (status = 404, description = "tokenNotFound: unknown, deleted, another client's or (with userId) another \
            user's", body = ApiResult),
        (status = 503, description = "deletionLedgerUnavailable: the deletion could not be recorded in the \
            deletion ledger, so nothing was deleted; retry later", body = ApiResult),
    )
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<RemoveRequest>,
) -> Result<ApiOk<()>, ApiError> {
    let request = UseRequest {
        auth_token: &req.auth_token,
        integration_type: Some(&req.integration_type),
        user_id: req.user_id.as_deref(),
        operation: Operation::Remove,
    };
    let record = match state.vault.authorize_use(&state.catalog, &caller, request).await {
        Ok(authorized) => authorized.record,
        Err(UseRefusal::KeyScopeTooLow) => return Err(read_key_cannot_remove()),
        // Said once the type is known to be good, as before.
        Err(UseRefusal::TokenNotFound | UseRefusal::TokenIdFromClientMode) if req.auth_token.trim().is_empty() => {
            return Err(ApiError::invalid_field(
                "authToken",
                "must not be empty; send the tokenId (or client-managed access token) to remove",
            ));
        }
        Err(refusal) => return Err(refusal.into()),
    };
    let token_id = record.token_id;
    // Opened before the row goes, so the integration can be told; a row that cannot be opened is deleted anyway.
    let credentials = match state.vault.open_credentials(&record).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "deleting a connection whose credentials cannot be opened");
            None
        }
    };
    state.vault.delete(caller.client_id, token_id).await?;
    state.metrics.connection_deleted();
    if let Some(credentials) = credentials {
        // Best effort and off the request path: deletion here is already complete and final.
        tokio::spawn(revoke_upstream(state.clone(), record.integration.clone(), credentials));
    }
    Ok(ApiOk(None))
}

/// Revokes the grant (RFC 7009) or ends the session at the integration.
async fn revoke_upstream(state: AppState, integration_type: String, credentials: IntegrationCredentials) {
    let Some(integration) = state.catalog.get(&integration_type) else { return };
    let outcome = match integration.auth {
        AuthScheme::OAuth2 => {
            // Revoking the refresh token ends the whole grant at RFC 7009 servers; the access token too, for
            // servers that only revoke what they are given.
            let mut result = Ok(());
            if let Some(refresh) = &credentials.refresh_token {
                result = state.oauth.revoke(integration, refresh, TokenTypeHint::RefreshToken).await.map(|_| ());
            }
            let access = state.oauth.revoke(integration, &credentials.access_token, TokenTypeHint::AccessToken).await;
            result.and(access.map(|_| ())).map_err(|e| e.to_string())
        }
        // An API key can only be deleted by its owner at the exchange: forgetting it here is all there is.
        AuthScheme::ApiKey => Ok(()),
        AuthScheme::Credentials => state
            .credentials
            .sign_out(integration, &credentials.access_token)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = outcome {
        tracing::warn!(integration = %integration_type, error = %e, "could not revoke a deleted connection at the integration");
    }
}
