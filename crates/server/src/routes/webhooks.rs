//! `POST /api/v1/webhooks` sets the calling client's webhook endpoint (and its format: `standard`, the default,
//! or `mesh` for Mesh's transfer webhooks) and answers a new signing secret (shown once); `GET /api/v1/webhooks`
//! shows the endpoint and format (never the secret). Setting needs a write key.

use axum::extract::State;
use linkvault_domain::Scope;
use linkvault_storage::WebhookFormat;
use linkvault_webhooks::WebhookSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::routes::openapi::ApiResult;
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
    #[schema(value_type = Option<FormatName>, default = "standard")]
    format: Option<String>,
}

/// The format webhooks are sent in.
// The storage's `WebhookFormat`, whose words these are.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[schema(as = WebhookFormatName)]
#[serde(rename_all = "camelCase")]
pub(crate) enum FormatName {
    Standard,
    Mesh,
}

impl From<WebhookFormat> for FormatName {
    fn from(format: WebhookFormat) -> Self {
        match format {
            WebhookFormat::Standard => Self::Standard,
            WebhookFormat::Mesh => Self::Mesh,
        }
    }
}

/// The answer to setting the endpoint.
// Fields in JSON-name order (see `routes::wire`).
#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookSet {
    format: FormatName,
    /// whsec_… (Standard Webhooks; for the mesh format the whole text is the HMAC key)
    secret: String,
    url: String,
}

/// The endpoint without its secret; both null when none is set.
#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookEndpoint {
    format: Option<FormatName>,
    url: Option<String>,
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
) -> Result<ApiOk<WebhookSet>, ApiError> {
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
    Ok(ApiOk(Some(WebhookSet {
        format: format.into(),
        secret: secret.expose().to_owned(),
        url: req.url.trim().to_owned(),
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    operation_id = "getWebhook",
    summary = "The calling client's webhook endpoint (never the secret)",
    responses((status = 200, description = "Endpoint", body = WebhookEndpoint))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Client(caller): Client,
) -> Result<ApiOk<WebhookEndpoint>, ApiError> {
    let target = state.vault.webhook_target(caller.client_id).await?;
    Ok(ApiOk(Some(WebhookEndpoint { format: target.as_ref().map(|t| t.format.into()), url: target.map(|t| t.url) })))
}

/// Representative answers, for the schema test in `routes::openapi`.
#[cfg(test)]
pub(crate) fn samples() -> Vec<(&'static str, String)> {
    use crate::routes::wire::sample;
    let set =
        WebhookSet { format: FormatName::Mesh, secret: "whsec_x".to_owned(), url: "https://a.example/h".to_owned() };
    vec![
        sample("WebhookSet", &set),
        sample("WebhookEndpoint", &WebhookEndpoint { format: None, url: None }),
        sample(
            "WebhookEndpoint",
            &WebhookEndpoint { format: Some(FormatName::Standard), url: Some("https://a.example/h".to_owned()) },
        ),
    ]
}
