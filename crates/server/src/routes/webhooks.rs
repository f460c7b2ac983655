//! `POST /api/v1/webhooks` sets the calling client's webhook endpoint (and its format: `standard`, the default,
//! or `mesh` for Mesh's transfer webhooks) and answers a new signing secret (shown once); `GET /api/v1/webhooks`
//! shows the endpoint and format (never the secret). Setting needs a write key.

use axum::extract::State;
use linkvault_domain::Scope;
use linkvault_storage::WebhookFormat;
use linkvault_webhooks::WebhookSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::routes::openapi::{ApiResult, WebhookEndpoint, WebhookFormatName, WebhookSet};
use crate::routes::token_use::key_scope_insufficient;

#[derive(Deserialize, ToSchema)]
#[schema(as = WebhookRequest)]
pub(crate) struct SetWebhook {
    #[schema(format = Uri)]
    url: String,
    /// standard: Standard Webhooks, every event. mesh: Mesh's transfer webhooks (PascalCase body,
    /// X-Mesh-Signature-256 = base64 HMAC-SHA256 of the raw body keyed with the secret's UTF-8 text); transfer
    /// events only.
    #[serde(default)]
    #[schema(value_type = Option<WebhookFormatName>, default = "standard")]
    format: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    operation_id = "setWebhook",
    summary = "Set the calling client's webhook endpoint and format (write key); answers a new signing secret, shown \
        once",
    request_body = SetWebhook,
    responses(
        (status = 200, description = "Set", body = WebhookSet),
        (status = 400, description = "invalidField: not an absolute http(s) URL, a destination the webhook policy \
            refuses, or format is not standard|mesh; missingField", body = ApiResult),
        (status = 403, description = "keyScopeInsufficient: a read key", body = ApiResult),
    )
)]
pub(crate) async fn set(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<SetWebhook>,
) -> Result<ApiOk<Value>, ApiError> {
    if caller.scope != Scope::Write {
        return Err(key_scope_insufficient());
    }
    let format = match req.format.as_deref() {
        None => WebhookFormat::Standard,
        Some(raw) => WebhookFormat::parse(raw).ok_or_else(|| {
            ApiError::invalid_field(
                "format",
                "must be standard (Standard Webhooks, every event) or mesh (Mesh's transfer webhooks only)",
            )
        })?,
    };
    let secret = WebhookSecret::generate().map_err(|e| ApiError::internal(&e))?;
    state.vault.set_webhook_endpoint_with_format(caller.client_id, &req.url, secret.expose(), format).await?;
    Ok(ApiOk(Some(json!({"url": req.url.trim(), "format": format.as_str(), "secret": secret.expose()}))))
}

#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    operation_id = "getWebhook",
    summary = "The calling client's webhook endpoint (never the secret)",
    responses((status = 200, description = "Endpoint", body = WebhookEndpoint))
)]
pub(crate) async fn get(State(state): State<AppState>, Client(caller): Client) -> Result<ApiOk<Value>, ApiError> {
    let target = state.vault.webhook_target(caller.client_id).await?;
    Ok(ApiOk(Some(json!({
        "url": target.as_ref().map(|t| t.url.clone()),
        "format": target.map(|t| t.format.as_str()),
    }))))
}
