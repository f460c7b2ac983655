//! `POST /api/v1/webhooks` sets the calling client's webhook endpoint and answers a new signing secret
//! (shown once); `GET /api/v1/webhooks` shows the endpoint (never the secret). Setting needs a write key.

use axum::extract::State;
use linkvault_domain::Scope;
use linkvault_webhooks::WebhookSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::routes::token_use::key_scope_insufficient;

#[derive(Deserialize)]
pub(crate) struct SetWebhook {
    url: String,
}

pub(crate) async fn set(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<SetWebhook>,
) -> Result<ApiOk<Value>, ApiError> {
    if caller.scope != Scope::Write {
        return Err(key_scope_insufficient());
    }
    let secret = WebhookSecret::generate().map_err(|e| ApiError::internal(&e))?;
    state.vault.set_webhook_endpoint(caller.client_id, &req.url, secret.expose()).await?;
    Ok(ApiOk(Some(json!({"url": req.url.trim(), "secret": secret.expose()}))))
}

pub(crate) async fn get(State(state): State<AppState>, Client(caller): Client) -> Result<ApiOk<Value>, ApiError> {
    let url = state.vault.webhook_endpoint(caller.client_id).await?.map(|(url, _)| url);
    Ok(ApiOk(Some(json!({"url": url}))))
}
