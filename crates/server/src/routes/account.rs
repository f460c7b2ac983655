//! `DELETE /api/v1/account`: removing a connection is permanent — row and data key destroyed at once, the
//! tokenId retired forever.

use axum::Extension;
use axum::extract::State;
use linkvault_domain::TokenId;
use linkvault_vault::Caller;
use serde::Deserialize;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::extract::ApiJson;
use crate::routes::tokens::known_integration;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RemoveRequest {
    auth_token: String,
    #[serde(rename = "type")]
    integration_type: String,
}

pub(crate) async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<RemoveRequest>,
) -> Result<ApiOk<()>, ApiError> {
    let integration = known_integration(&state, &req.integration_type)?;
    if req.auth_token.trim().is_empty() {
        return Err(ApiError::invalid_field("authToken", "must not be empty; send the tokenId to remove"));
    }
    let token_id = req.auth_token.trim().parse::<TokenId>().map_err(|_| ApiError::token_not_found())?;
    let record = state.vault.connection_for(caller.client_id, token_id).await?;
    if record.integration != integration.as_str() {
        // The tokenId exists but not for this integration: as unknown as any other.
        return Err(ApiError::token_not_found());
    }
    state.vault.delete(caller.client_id, token_id).await?;
    state.metrics.connection_deleted();
    Ok(ApiOk(None))
}
