//! OAuth sign-in from the Link page: `POST /link/api/oauth/start` builds the integration's authorize URL
//! (state and PKCE kept with the session) but hands the page only a one-time linkvault URL; the popup opens
//! that (`GET /link/oauth/begin`), which binds the sign-in to this browser with a short-lived HttpOnly cookie
//! and redirects to the integration. `GET /link/oauth/callback` finishes the sign-in only for the browser
//! holding that cookie — so an authorize URL approved in another browser (a phished victim's) cannot land a
//! grant in someone else's session — exchanges the code, stores the tokens under the session's identity, and
//! renders a tiny page (external script, no inline JS) that tells the Link page, which collects the result
//! with `POST /link/api/oauth/result`.

use axum::extract::{Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use cookie::{Cookie, SameSite};
use linkvault_crypto::link_digest;
use linkvault_domain::IntegrationType;
use linkvault_integrations::oauth::authorization_request;
use linkvault_integrations::{AuthScheme, Integration};
use linkvault_vault::link::LinkOAuthRecord;
use linkvault_vault::{ConnectionMeta, IntegrationCredentials, LinkOAuthBound, LinkOAuthStart, link_binding_matches};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api_result::{ApiError, ApiOk, ApiStatus, ErrorType};
use crate::extract::ApiJson;
use crate::handout::{hand_out, token_mode_of};
use crate::link::api::{check_fixed_integration, check_integration_allowed, claim_connection, session_key, succeeded};
use crate::link::payload::{AccountInfo, access_token_payload, fetch_accounts};
use crate::link::session::LinkSession;
use crate::link::span;

/// The begin URL must be opened within this time of `oauth/start` (the page opens it at once).
const BEGIN_WINDOW: time::Duration = time::Duration::minutes(2);

/// The binding cookie's name for `state`: one per sign-in, so two sign-ins in one browser do not clash.
fn binding_cookie_name(oauth_state: &str) -> String {
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&link_digest(oauth_state)[..9]);
    format!("lv_oauth_{tag}")
}

/// Where the binding cookie is sent: only the begin and callback endpoints (under the public URL's path).
fn binding_cookie_path(state: &AppState) -> String {
    let prefix = &state.link.public_url[state.link.public_origin().len()..];
    format!("{prefix}/link/oauth")
}

#[derive(Deserialize)]
pub(crate) struct StartRequest {
    #[serde(rename = "type")]
    integration_type: String,
}

fn oauth_integration<'s>(state: &'s AppState, raw: &str) -> Result<(IntegrationType, &'s Integration), ApiError> {
    let integration_type = state.known_integration(raw)?;
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
    let start = LinkOAuthStart {
        session_id: session.id,
        integration: integration_type.as_str(),
        oauth_state: &request.state,
        pkce_verifier: request.pkce.verifier().expose_secret(),
        authorize_url: request.url.as_str(),
    };
    let nonce = state
        .vault
        .start_link_oauth(start, span(state.link.oauth_ttl), crate::link::MAX_PENDING_OAUTH)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    // Not the authorize URL: the sign-in only completes through the begin step, in the browser that takes it.
    let popup_url = format!("{}/link/oauth/begin?nonce={}", state.link.public_url, nonce.expose());
    Ok(ApiOk(Some(json!({ "popupUrl": popup_url }))))
}

#[derive(Deserialize)]
pub(crate) struct BeginQuery {
    nonce: Option<String>,
}

/// Why a begin or callback request is refused, in words for the end user.
const NOT_THIS_BROWSER: &str = "This sign-in was started in another browser or window, or its link was already \
                                used. Close this window and start again from the app.";

/// `GET /link/oauth/begin?nonce` — the popup's first stop: once only, shortly after `oauth/start`, and only
/// when navigated to from the Link page itself (`Sec-Fetch-Site: same-origin`; a link pasted or clicked
/// elsewhere is `none`/`cross-site`). Sets the binding cookie and redirects (303) to the integration.
pub(crate) async fn begin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<BeginQuery>,
) -> Response {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin") {
        return refusal_page(StatusCode::FORBIDDEN, NOT_THIS_BROWSER, None);
    }
    let Some(nonce) = query.nonce.filter(|n| !n.is_empty() && n.len() <= 128) else {
        return refusal_page(StatusCode::BAD_REQUEST, NOT_THIS_BROWSER, None);
    };
    let (authorize_url, binding) = match state.vault.bind_link_oauth(&nonce, BEGIN_WINDOW).await {
        Ok(Some(LinkOAuthBound { authorize_url, binding })) => (authorize_url, binding),
        Ok(None) => return refusal_page(StatusCode::BAD_REQUEST, NOT_THIS_BROWSER, None),
        Err(e) => {
            tracing::error!(error = %e, "cannot bind an OAuth sign-in to its browser");
            return refusal_page(StatusCode::INTERNAL_SERVER_ERROR, "An internal error occurred. Try again.", None);
        }
    };
    let Some(oauth_state) = url::Url::parse(&authorize_url)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()))
    else {
        tracing::error!("a stored authorize URL has no state");
        return refusal_page(StatusCode::INTERNAL_SERVER_ERROR, "An internal error occurred. Try again.", None);
    };
    let max_age = time::Duration::seconds(i64::try_from(state.link.oauth_ttl.as_secs()).unwrap_or(600));
    let cookie = Cookie::build((binding_cookie_name(&oauth_state), binding.expose().to_owned()))
        .path(binding_cookie_path(&state))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.link.public_url.starts_with("https://"))
        .max_age(max_age)
        .build();
    let (Ok(location), Ok(set_cookie)) =
        (HeaderValue::from_str(&authorize_url), HeaderValue::from_str(&cookie.to_string()))
    else {
        return refusal_page(StatusCode::INTERNAL_SERVER_ERROR, "An internal error occurred. Try again.", None);
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(LOCATION, location);
    response.headers_mut().insert(SET_COOKIE, set_cookie);
    response
}

/// The binding cookie for `oauth_state` that this request carries, if any.
fn binding_cookie(headers: &HeaderMap, oauth_state: &str) -> Option<String> {
    let name = binding_cookie_name(oauth_state);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Removes the binding cookie (the sign-in is over, whatever its outcome).
fn clear_binding_cookie(state: &AppState, response: &mut Response, oauth_state: &str) {
    let cookie =
        Cookie::build((binding_cookie_name(oauth_state), "")).path(binding_cookie_path(state)).removal().build();
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The page shown in the popup after the integration sends the user back. It carries no secret.
fn callback_page(ok: bool) -> Response {
    if ok {
        refusal_page(StatusCode::OK, "Signed in. You can close this window and return to the app.", Some("ok"))
    } else {
        refusal_page(StatusCode::OK, "The sign-in did not complete. Close this window and try again.", None)
    }
}

/// The popup's page: `text` (one of ours, no markup) with `status` for callback.js (`failed` unless `ok`).
fn refusal_page(code: StatusCode, text: &str, status: Option<&str>) -> Response {
    let status = status.unwrap_or("failed");
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign-in</title><link rel=\"stylesheet\" href=\"/link/assets/link.css\">\
         <script src=\"/link/assets/callback.js\" defer></script></head>\
         <body data-status=\"{status}\"><main class=\"lv-callback\"><p role=\"status\">{text}</p></main></body></html>\n"
    );
    (code, Html(body)).into_response()
}

/// Exchanges the code and stores the connection; the error string is shown to the end user.
async fn complete(
    state: &AppState,
    pending: &LinkOAuthRecord,
    code: &str,
) -> Result<linkvault_domain::TokenId, String> {
    let session = match state.vault.link_session(pending.session_id).await {
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
    let stored = state.vault.store_credentials_from_link(&key, &credentials, &meta).await.map_err(|e| {
        tracing::error!(error = %e, "cannot store an OAuth connection made in Link");
        "the connection could not be saved".to_owned()
    })?;
    state.metrics.connection_stored();
    Ok(stored.token_id)
}

/// `GET /link/oauth/callback?code&state` (or `?error&state`).
pub(crate) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let Some(oauth_state) = query.state.filter(|s| !s.is_empty() && s.len() <= 256) else {
        return callback_page(false);
    };
    let mut response = finish(&state, &headers, &oauth_state, query.code, query.error).await;
    clear_binding_cookie(&state, &mut response, &oauth_state);
    response
}

/// The callback's work for one `state`: claimed once; finished only with the begin step's cookie.
async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    oauth_state: &str,
    code: Option<String>,
    error: Option<String>,
) -> Response {
    let pending = match state.vault.claim_link_oauth(oauth_state).await {
        Ok(Some(p)) => p,
        Ok(None) => return callback_page(false),
        Err(e) => {
            tracing::error!(error = %e, "cannot claim a pending OAuth sign-in");
            return callback_page(false);
        }
    };
    // The claim spent the state whatever follows: a foreign browser's attempt also ends the sign-in, and
    // the Link page that started it is told.
    if !link_binding_matches(&pending, binding_cookie(headers, oauth_state).as_deref()) {
        let refused = "the sign-in was approved in another browser than the one that started it";
        if let Err(e) = state.vault.complete_link_oauth(oauth_state, None, Some(refused)).await {
            tracing::error!(error = %e, "cannot record an OAuth sign-in's result");
        }
        tracing::warn!(integration = %pending.integration, "OAuth callback without the starting browser's cookie refused");
        return refusal_page(StatusCode::FORBIDDEN, NOT_THIS_BROWSER, None);
    }
    let outcome = match (code.filter(|c| !c.is_empty() && c.len() <= 2048), error) {
        (_, Some(_)) => Err("access was not granted".to_owned()),
        (None, None) => Err("the integration sent no authorization code".to_owned()),
        (Some(code), None) => complete(state, &pending, &code).await,
    };
    let (token_id, error) = match &outcome {
        Ok(t) => (Some(*t), None),
        Err(e) => (None, Some(e.as_str())),
    };
    if let Err(e) = state.vault.complete_link_oauth(oauth_state, token_id, error).await {
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
    let outcome = state.vault.take_link_oauth_outcome(session.id).await.map_err(|e| ApiError::internal(&e))?;
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
    Ok(ApiOk(Some(succeeded(integration, &handout, &accounts, payload))))
}
