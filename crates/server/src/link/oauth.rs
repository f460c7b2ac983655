//! OAuth sign-in from the Link page: `POST /link/api/oauth/start` builds the integration's authorize URL
//! (state and PKCE kept with the session), `GET /link/oauth/callback` exchanges the code and stores the tokens
//! under the session's identity, then renders a tiny page (external script, no inline JS) that tells the
//! Link page, which collects the result with `POST /link/api/oauth/result`.

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use linkvault_domain::IntegrationType;
use linkvault_integrations::oauth::authorization_request;
use linkvault_integrations::{AuthScheme, Integration};
use linkvault_storage::LinkOAuthRecord;
use linkvault_vault::{ConnectionMeta, IntegrationCredentials};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api_result::{ApiError, ApiOk, ApiStatus, ErrorType};
use crate::extract::ApiJson;
use crate::handout::{hand_out, token_mode_of};
use crate::link::api::{
    accounts_json, check_fixed_integration, check_integration_allowed, claim_connection, session_key,
};
use crate::link::payload::{AccountInfo, access_token_payload, fetch_accounts};
use crate::link::session::LinkSession;
use crate::link::{digest, span};
use crate::routes::tokens::known_integration;

#[derive(Deserialize)]
pub(crate) struct StartRequest {
    #[serde(rename = "type")]
    integration_type: String,
}

fn oauth_integration<'s>(state: &'s AppState, raw: &str) -> Result<(IntegrationType, &'s Integration), ApiError> {
    let integration_type = known_integration(state, raw)?;
    let Some(integration) = state.catalog.get(integration_type.as_str()) else {
        return Err(ApiError::integration_not_found(raw));
    };
    if integration.auth != AuthScheme::OAuth2 {
        return Err(ApiError::invalid_field(
            "type",
            format!("{} signs in with a username and password", integration.name),
        ));
    }
    if let Some(problem) = integration.missing_configuration() {
        return Err(ApiError::new(ApiStatus::BadRequest, ErrorType::IntegrationUnavailable, problem));
    }
    Ok((integration_type, integration))
}

/// `POST /link/api/oauth/start {type}` — the URL the page opens in a popup.
pub(crate) async fn start(
    State(state): State<AppState>,
    LinkSession(session): LinkSession,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    state.limits.check_sign_in(session.id)?;
    let (integration_type, integration) = oauth_integration(&state, &req.integration_type)?;
    check_integration_allowed(&state, &session, integration)?;
    let request = authorization_request(integration, &state.link.oauth_redirect_uri(), session.scope)
        .map_err(|e| ApiError::new(ApiStatus::BadRequest, ErrorType::IntegrationUnavailable, e.to_string()))?;
    let now = state.vault.clock().now();
    let record = LinkOAuthRecord {
        state_digest: digest(&request.state),
        session_id: session.id,
        integration: integration_type.as_str().to_owned(),
        pkce_verifier: request.pkce.verifier().expose_secret().to_owned(),
        created_at: now,
        expires_at: now + span(state.link.oauth_ttl),
    };
    state
        .vault
        .store()
        .insert_link_oauth(&record, crate::link::MAX_PENDING_OAUTH)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(ApiOk(Some(json!({ "authorizeUrl": request.url.as_str() }))))
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The page shown in the popup after the integration sends the user back. It carries no secret.
fn callback_page(ok: bool) -> Response {
    let (status, text) = if ok {
        ("ok", "Signed in. You can close this window and return to the app.")
    } else {
        ("failed", "The sign-in did not complete. Close this window and try again.")
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign-in</title><link rel=\"stylesheet\" href=\"/link/assets/link.css\">\
         <script src=\"/link/assets/callback.js\" defer></script></head>\
         <body data-status=\"{status}\"><main class=\"lv-callback\"><p role=\"status\">{text}</p></main></body></html>\n"
    );
    Html(body).into_response()
}

/// Exchanges the code and stores the connection; the error string is shown to the end user.
async fn complete(
    state: &AppState,
    pending: &LinkOAuthRecord,
    code: &str,
) -> Result<linkvault_domain::TokenId, String> {
    let session = match state.vault.store().get_link_session(pending.session_id).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err("the Link session has ended".to_owned()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the Link session for an OAuth callback");
            return Err("an internal error occurred".to_owned());
        }
    };
    let Some(integration) = state.catalog.get(&pending.integration) else {
        return Err("the integration is no longer available".to_owned());
    };
    let verifier = SecretString::from(pending.pkce_verifier.clone());
    let tokens =
        state.oauth.exchange_code(integration, code, &state.link.oauth_redirect_uri(), &verifier).await.map_err(
            |e| {
                tracing::warn!(error = %e, integration = %integration.integration_type, "OAuth code exchange failed");
                format!("{} did not accept the sign-in", integration.name)
            },
        )?;
    let credential = linkvault_integrations::api::Credential::Bearer(&tokens.access_token);
    let accounts = fetch_accounts(state, integration, credential).await.unwrap_or_default();
    let first = accounts.first();
    let meta = ConnectionMeta {
        account_id: first.map(|a| a.id.clone()),
        account_name: first.map(|a| a.name.clone()),
        access_expires_at: Some(tokens.expires_at),
        refresh_expires_at: tokens.refresh_token_expires_at,
    };
    // The session's rules hold at the callback too: a sign-in started before another one completed loses.
    let allowed = check_integration_allowed(state, &session, integration);
    let claimed = match allowed {
        Ok(()) => claim_connection(state, &session, integration).await,
        Err(e) => Err(e),
    };
    if let Err(e) = claimed {
        return Err(e.display_message.unwrap_or(e.message));
    }
    let key = session_key(&session, integration.integration_type.clone()).map_err(|_| "invalid session".to_owned())?;
    let credentials = IntegrationCredentials { access_token: tokens.access_token, refresh_token: tokens.refresh_token };
    let stored = state.vault.store_credentials(&key, &credentials, &meta).await.map_err(|e| {
        tracing::error!(error = %e, "cannot store an OAuth connection made in Link");
        "the connection could not be saved".to_owned()
    })?;
    state.metrics.connection_stored();
    Ok(stored.token_id)
}

/// `GET /link/oauth/callback?code&state` (or `?error&state`).
pub(crate) async fn callback(State(state): State<AppState>, Query(query): Query<CallbackQuery>) -> Response {
    let Some(oauth_state) = query.state.filter(|s| !s.is_empty() && s.len() <= 256) else {
        return callback_page(false);
    };
    let now = state.vault.clock().now();
    let state_digest = digest(&oauth_state);
    let pending = match state.vault.store().claim_link_oauth(&state_digest, now).await {
        Ok(Some(p)) => p,
        Ok(None) => return callback_page(false),
        Err(e) => {
            tracing::error!(error = %e, "cannot claim a pending OAuth sign-in");
            return callback_page(false);
        }
    };
    let outcome = match (query.code.filter(|c| !c.is_empty() && c.len() <= 2048), query.error) {
        (_, Some(_)) => Err("access was not granted".to_owned()),
        (None, None) => Err("the integration sent no authorization code".to_owned()),
        (Some(code), None) => complete(&state, &pending, &code).await,
    };
    let (token_id, error) = match &outcome {
        Ok(t) => (Some(*t), None),
        Err(e) => (None, Some(e.as_str())),
    };
    if let Err(e) = state.vault.store().complete_link_oauth(&state_digest, token_id, error, now).await {
        tracing::error!(error = %e, "cannot record an OAuth sign-in's result");
        return callback_page(false);
    }
    callback_page(outcome.is_ok())
}

/// `POST /link/api/oauth/result` — the session's completed OAuth sign-in, once: `pending` until the callback
/// has run, then `succeeded` with the `AccessTokenPayload`, or `failed` with a reason.
pub(crate) async fn result(
    State(state): State<AppState>,
    LinkSession(session): LinkSession,
) -> Result<ApiOk<Value>, ApiError> {
    let outcome = state.vault.store().take_link_oauth_outcome(session.id).await.map_err(|e| ApiError::internal(&e))?;
    let Some(outcome) = outcome else { return Ok(ApiOk(Some(json!({"status": "pending"})))) };
    let Some(token_id) = outcome.token_id else {
        return Ok(ApiOk(Some(json!({
            "status": "failed", "brokerType": outcome.integration,
            "errorMessage": outcome.error.unwrap_or_else(|| "the sign-in failed".to_owned()),
        }))));
    };
    let record = state.vault.connection_for(session.client_id, token_id).await?;
    let Some(integration) = state.catalog.get(&record.integration) else {
        return Err(ApiError::integration_not_found(&record.integration));
    };
    check_fixed_integration(&state, &session, integration)?;
    let accounts: Vec<AccountInfo> = match (&record.account_id, &record.account_name) {
        (None, None) => Vec::new(),
        (id, name) => vec![AccountInfo::named(
            id.clone().unwrap_or_default(),
            name.clone().unwrap_or_else(|| integration.name.clone()),
        )],
    };
    let now = state.vault.clock().now();
    let reconnected = record.created_at < record.updated_at;
    // Client-managed mode: the completed sign-in hands out a new token family (collected once: the outcome row
    // was taken above).
    let handout = hand_out(&state, token_mode_of(&state, session.client_id).await?, &record).await?;
    let payload = access_token_payload(integration, &handout, &accounts, now, reconnected);
    Ok(ApiOk(Some(json!({
        "status": "succeeded",
        "tokenId": token_id.to_string(),
        "brokerType": integration.integration_type.as_str(),
        "accounts": accounts_json(&accounts),
        "payload": payload,
    }))))
}
