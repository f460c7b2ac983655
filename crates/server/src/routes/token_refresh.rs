//! `POST /api/v1/token/refresh` (Mesh's `BrokerRefreshTokenRequest`) for clients in client-managed token
//! mode: a new linkvault access token for a refresh token, and with `createNewRefreshToken: true` a new
//! refresh token that spends the old one. A spent refresh token presented again revokes its whole family.
//! The integration's own tokens are not touched here: linkvault keeps them fresh behind the family.

use axum::extract::State;
use linkvault_crypto::ClientTokenKind;
use linkvault_domain::{TokenMode, TokenRefusal};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk, ApiStatus, ErrorType};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::handout::Handout;
use crate::routes::openapi::{ApiResult, B2BBrokerRefreshTokenResponse};

/// Mesh's `BrokerRefreshTokenRequest`; the WeBull/Vanguard extras (`accessToken`, `tradeToken`, `mfaCode`,
/// `metadata`) are accepted and ignored.
#[derive(Deserialize, ToSchema)]
#[schema(as = BrokerRefreshTokenRequest)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefreshRequest {
    /// A linkvault refresh token (lvr_…)
    #[schema(min_length = 1)]
    refresh_token: String,
    /// The connection's integration type
    #[serde(rename = "type")]
    integration_type: String,
    /// true: also issue a new refresh token; the presented one is spent, and presenting it again revokes every
    /// token of its family
    #[serde(default)]
    create_new_refresh_token: Option<bool>,
}

/// Mesh's answer for a refresh token it does not know (mesh-api.md §5), so apps written against Mesh
/// recognise it. Also the answer for another client's token, or one for another `type`.
fn unauthorized_token() -> ApiError {
    ApiError::new(ApiStatus::BadRequest, ErrorType::BadRequest, "Unauthorized token")
        .with_display("Could not refresh the authentication token. The provided data is not correct")
}

fn refused(why: TokenRefusal) -> ApiError {
    match why {
        TokenRefusal::Unknown => unauthorized_token(),
        TokenRefusal::Expired => ApiError::new(
            ApiStatus::PermissionDenied,
            ErrorType::TokenExpired,
            "the refresh token has expired; the end user must connect the account again",
        ),
        TokenRefusal::Revoked => ApiError::new(
            ApiStatus::PermissionDenied,
            ErrorType::TokenRevoked,
            "the refresh token's family has been revoked; the end user must connect the account again",
        ),
        TokenRefusal::RefreshTokenReused => ApiError::new(
            ApiStatus::PermissionDenied,
            ErrorType::RefreshTokenReused,
            "this refresh token was already exchanged for a new one; presenting it again looks like theft, so every \
             token of its family is now revoked and the end user must connect the account again",
        ),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/token/refresh",
    operation_id = "refreshToken",
    summary = "Refresh client-managed tokens (client-managed token mode)",
    description = "For clients in client-managed token mode: a new linkvault access token for a refresh token; with \
        createNewRefreshToken also a new refresh token, spending the presented one. A spent refresh token presented \
        again revokes the whole family (403 refreshTokenReused); afterwards every token of the family is 403 \
        tokenRevoked. A refresh token that is unknown, another client's or for another type answers Mesh's 400 \
        badRequest \"Unauthorized token\". Managed-mode clients get 400 badRequest: linkvault refreshes their \
        connections itself. Mesh's WeBull/Vanguard extras (accessToken, tradeToken, mfaCode, metadata) are accepted \
        and ignored. See docs/api.md.",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "Refreshed", body = B2BBrokerRefreshTokenResponse),
        (status = 400, description = "badRequest (unknown refresh token: message \"Unauthorized token\"; \
            managed-mode client), invalidField, missingField, integrationNotFound", body = ApiResult),
        (status = 403, description = "tokenExpired (refresh token past its end), tokenRevoked, refreshTokenReused",
            body = ApiResult),
    )
)]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    let integration = state.known_integration(&req.integration_type)?;
    if caller.token_mode != TokenMode::Client {
        return Err(ApiError::new(
            ApiStatus::BadRequest,
            ErrorType::BadRequest,
            "this client uses managed tokens: its tokenIds never expire and linkvault refreshes the integration's \
             tokens itself, so there is nothing to refresh. Client-managed tokens are enabled per client with \
             `linkvault client mode --client ID --token-mode client`",
        ));
    }
    let presented = req.refresh_token.trim();
    if presented.is_empty() {
        return Err(ApiError::invalid_field("refreshToken", "must not be empty"));
    }
    if ClientTokenKind::of(presented) == Some(ClientTokenKind::Access) {
        return Err(ApiError::invalid_field(
            "refreshToken",
            "is an access token (lva_…); send the refresh token (lvr_…) received with it",
        ));
    }
    let rotate = req.create_new_refresh_token.unwrap_or(false);
    let tokens = state
        .vault
        .refresh_client_tokens(caller.client_id, integration.as_str(), presented, rotate)
        .await?
        .map_err(refused)?;
    let record = state.vault.connection_for(caller.client_id, tokens.token_id).await?;
    let now = state.vault.clock().now();
    // Without rotation the presented refresh token stays valid; it is returned so that an app storing whatever
    // comes back keeps the right one.
    let refresh_token = tokens.refresh_token.as_ref().map_or(presented, |t| t.expose()).to_owned();
    let handout = Handout::Client(tokens);
    let account = json!({
        "accountId": record.account_id.clone().unwrap_or_default(),
        "accountName": record.account_name.clone().unwrap_or_default(),
        "meshAccountId": handout.mesh_account_id(),
    });
    let mut account_token = handout.account_token(account);
    account_token["refreshToken"] = json!(refresh_token);
    Ok(ApiOk(Some(json!({
        "status": "succeeded",
        "expiresInSeconds": handout.expires_in(now),
        "refreshTokenExpiresInSeconds": handout.refresh_expires_in(now),
        "brokerAccountTokens": [account_token],
    }))))
}
