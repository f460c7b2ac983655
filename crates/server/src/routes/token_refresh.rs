//! `POST /api/v1/token/refresh` (Mesh's `BrokerRefreshTokenRequest`) for clients in client-managed token
//! mode: a new linkvault access token for a refresh token, and with `createNewRefreshToken: true` a new
//! refresh token that spends the old one. A spent refresh token presented again revokes its whole family.
//! The integration's own tokens are not touched here: linkvault keeps them fresh behind the family.

use axum::extract::State;
use linkvault_crypto::ClientTokenKind;
use linkvault_domain::{TokenMode, TokenRefusal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk, ApiStatus, ErrorType};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::handout::{Handout, seconds_until};
use crate::routes::openapi::ApiResult;
use crate::routes::wire::Succeeded;

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

/// Mesh's `B2BBrokerRefreshTokenResponse`.
// Fields in JSON-name order (see `routes::wire`).
#[derive(Serialize, ToSchema)]
#[schema(as = B2BBrokerRefreshTokenResponse)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefreshResponse {
    broker_account_tokens: Vec<RefreshedAccountToken>,
    /// The new access token's lifetime
    expires_in_seconds: i64,
    /// The refresh token's remaining life (null: no end)
    #[schema(required = true)]
    refresh_token_expires_in_seconds: Option<i64>,
    status: Succeeded,
}

/// The refreshed connection's entry: a client-managed family's tokens (no tokenId: this client never sees one).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefreshedAccountToken {
    /// The new access token (lva_…)
    access_token: String,
    account: RefreshedAccount,
    /// The new refresh token with createNewRefreshToken, else the presented one (still valid)
    refresh_token: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefreshedAccount {
    account_id: String,
    account_name: String,
    mesh_account_id: String,
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
        (status = 200, description = "Refreshed", body = RefreshResponse),
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
) -> Result<ApiOk<RefreshResponse>, ApiError> {
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
    let expires_in_seconds = seconds_until(tokens.access_expires_at, now);
    let handout = Handout::Client(tokens);
    let account = RefreshedAccount {
        account_id: record.account_id.clone().unwrap_or_default(),
        account_name: record.account_name.clone().unwrap_or_default(),
        mesh_account_id: handout.mesh_account_id(),
    };
    let access_token = handout.tokens().access_token;
    Ok(ApiOk(Some(RefreshResponse {
        broker_account_tokens: vec![RefreshedAccountToken { access_token, account, refresh_token }],
        expires_in_seconds,
        refresh_token_expires_in_seconds: handout.refresh_expires_in(now),
        status: Succeeded::Succeeded,
    })))
}

/// A representative answer, for the schema test in `routes::openapi`.
#[cfg(test)]
pub(crate) fn samples() -> Vec<(&'static str, String)> {
    use crate::routes::wire::sample;
    let account = RefreshedAccount {
        account_id: "a-1".to_owned(),
        account_name: "Main".to_owned(),
        mesh_account_id: "m-1".to_owned(),
    };
    let answer = RefreshResponse {
        broker_account_tokens: vec![RefreshedAccountToken {
            access_token: "lva_x".to_owned(),
            account,
            refresh_token: "lvr_x".to_owned(),
        }],
        expires_in_seconds: 3600,
        refresh_token_expires_in_seconds: None,
        status: Succeeded::Succeeded,
    };
    vec![sample("B2BBrokerRefreshTokenResponse", &answer)]
}
