//! `POST /api/v1/linktoken`: a short-lived (10 minutes), single-use link token, the standard padded base64 of
//! `<public-url>/link/broker-connect?auth_code=<256-bit random>`. The session records the client, `userId`,
//! the calling key's scope, `integrationId`, `restrictMultipleAccounts` and `transferOptions` (validated and
//! stored parsed: see `routes::destinations`).

use axum::extract::State;
use base64::Engine as _;
use linkvault_domain::UserId;
use linkvault_vault::LinkTokenSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::link::span;
use crate::routes::destinations::transfer_options;
use crate::routes::openapi::ApiResult;

/// Mesh's `GetLinkTokenRequest`, the fields linkvault uses (others are accepted and ignored).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinkTokenRequest {
    /// Missing: 400 missingField.
    #[schema(required = true, min_length = 1, max_length = 300)]
    user_id: Option<String>,
    /// Deprecated in Mesh's API: go straight to this integration.
    #[schema(deprecated)]
    broker_type: Option<String>,
    /// Mesh: defaults to true.
    #[schema(default = true)]
    restrict_multiple_accounts: Option<bool>,
    /// Mesh's LinkTokenTransferOptions, validated: toAddresses[{networkId, symbol, address, addressTag?, amount?}]
    /// (≤50; known network, a symbol it carries, an address of its shape), amountInFiat, transactionId (≤128),
    /// transferType, isInclusiveFeeEnabled, clientFee (0–1). A bad value is 400 naming its path
    /// (transferOptions.toAddresses[0].address).
    #[schema(value_type = Option<Object>)]
    transfer_options: Option<Value>,
    #[schema(format = Uuid)]
    integration_id: Option<String>,
}

/// content.linkToken: the standard, padded base64 of `<public-url>/link/broker-connect?auth_code=…`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinkTokenResponse {
    link_token: String,
    /// Always null (linkvault has no payment links).
    payment_link: Option<String>,
}

/// Opens a new link session and returns its link token.
pub(crate) async fn issue_link_token(state: &AppState, spec: LinkTokenSpec) -> Result<String, ApiError> {
    let auth_code = state.vault.open_link_session(spec, span(state.link.link_token_ttl)).await?;
    let url = format!("{}/link/broker-connect?auth_code={}", state.link.public_url, auth_code.expose());
    Ok(base64::engine::general_purpose::STANDARD.encode(url))
}

#[utoipa::path(
    post,
    path = "/api/v1/linktoken",
    operation_id = "createLinkToken",
    summary = "Get a short-lived, single-use link token for the hosted Link page",
    description = "content.linkToken is the standard, padded base64 of <public-url>/link/broker-connect?auth_code=…; \
        open it within 10 minutes, once. The session's scope is the calling key's scope. See docs/api.md#link.",
    request_body = LinkTokenRequest,
    responses(
        (status = 200, description = "The link token", body = LinkTokenResponse),
        (status = 400, description = "missingField / invalidField (errorData.field names the path, e.g. \
            transferOptions.toAddresses[0].address) / integrationNotFound", body = ApiResult),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<LinkTokenRequest>,
) -> Result<ApiOk<LinkTokenResponse>, ApiError> {
    let raw_user = req.user_id.ok_or_else(|| ApiError::missing_field("userId"))?;
    let user_id = UserId::parse(&raw_user).map_err(|e| ApiError::invalid_field(e.field, e.reason))?;
    let integration_id = match (req.integration_id.as_deref(), req.broker_type.as_deref()) {
        (Some(raw), _) => {
            let id =
                Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid_field("integrationId", "is not a UUID"))?;
            if state.catalog.by_id(id).is_none() {
                return Err(ApiError::invalid_field(
                    "integrationId",
                    "names no integration; GET /api/v1/integrations lists the ids",
                ));
            }
            Some(id)
        }
        (None, Some(broker_type)) => match state.catalog.get(broker_type) {
            Some(integration) => Some(integration.id),
            None => {
                return Err(
                    ApiError::integration_not_found(broker_type).with_data(serde_json::json!({"field": "brokerType"}))
                );
            }
        },
        (None, None) => None,
    };
    // Validated here, once: the session stores (and the page sees) only the parsed options, so the transfer
    // flow never meets an unknown network, a symbol the network does not carry or a malformed address.
    let transfer_options = match req.transfer_options {
        None | Some(Value::Null) => None,
        Some(v) => {
            let parsed = transfer_options("transferOptions", &v)?;
            Some(serde_json::to_string(&parsed).map_err(|e| ApiError::internal(&e))?)
        }
    };
    let spec = LinkTokenSpec {
        client_id: caller.client_id,
        user_id,
        scope: caller.scope,
        integration_id,
        // Mesh: "Defaults to true".
        restrict_multiple_accounts: req.restrict_multiple_accounts.unwrap_or(true),
        transfer_options,
    };
    let link_token = issue_link_token(&state, spec).await?;
    Ok(ApiOk(Some(LinkTokenResponse { link_token, payment_link: None })))
}
