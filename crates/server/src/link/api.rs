//! The Link page's JSON API: start a session from the auth_code, check return users' tokens, and sign in
//! to credentials integrations (with the MFA step). Every answer is an ApiResult.

use axum::extract::State;
use linkvault_domain::{ConnectionStatus, IntegrationType, NaturalKey, Operation, Scope, UserId};
use linkvault_integrations::Integration;
use linkvault_vault::link::LinkSessionRecord;
use linkvault_vault::{Authorized, Caller, LinkClaim, LinkSessionStart, UseRequest};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use linkvault_integrations::api::Credential;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk, ApiStatus, ErrorType};
use crate::extract::ApiJson;
use crate::handout::{Handout, hand_out, token_mode_of};
use crate::link::payload::{AccountInfo, access_token_payload, catalog, probe};
use crate::link::session::LinkSession;
use crate::link::span;
use crate::routes::authenticate::{SignInFields, SignInStep, credentials_integration, sign_in_and_store};
use crate::routes::destinations::TransferOptions;

/// At most this many return-user tokens are checked per call.
const MAX_RETURN_TOKENS: usize = 32;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartRequest {
    auth_code: String,
}

pub(crate) fn link_token_used() -> ApiError {
    ApiError::new(
        ApiStatus::BadRequest,
        ErrorType::LinkTokenUsed,
        "this link token was already used; link tokens are single use, ask the app for a new one",
    )
    .with_display("This link was already used. Close this window and start again.")
}

pub(crate) fn link_token_expired() -> ApiError {
    ApiError::new(
        ApiStatus::BadRequest,
        ErrorType::LinkTokenExpired,
        "this link token has expired or is not valid; link tokens must be opened within 10 minutes",
    )
    .with_display("This link has expired. Close this window and start again.")
}

/// `POST /link/api/session {authCode}` — uses the link token once and returns the session token.
pub(crate) async fn start_session(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    if req.auth_code.is_empty() || req.auth_code.len() > 128 {
        return Err(link_token_expired());
    }
    let now = state.vault.clock().now();
    let started = state
        .vault
        .start_link_session(&req.auth_code, span(state.link.session_ttl))
        .await
        .map_err(ApiError::from_vault_internal)?;
    let (session_token, record, until) = match started {
        LinkSessionStart::Started { token, session, expires_at } => (token, *session, expires_at),
        LinkSessionStart::Used => return Err(link_token_used()),
        LinkSessionStart::Expired => return Err(link_token_expired()),
    };
    let integration = record.integration_id.and_then(|id| state.catalog.by_id(id)).map(|i| i.integration_type.as_str());
    let client = state.vault.get_client(record.client_id).await?.map(|c| c.name);
    // A read-scoped session has no transfer flow: the page is not even told what the app would have sent.
    let transfer_options = match record.scope {
        Scope::Write => TransferOptions::stored(record.transfer_options.as_deref()),
        Scope::Read => None,
    };
    Ok(ApiOk(Some(json!({
        "sessionToken": session_token.expose(),
        "expiresInSeconds": (until - now).whole_seconds(),
        "integrationId": record.integration_id,
        "integrationType": integration,
        "restrictMultipleAccounts": record.restrict_multiple_accounts,
        "scope": record.scope.as_str(),
        "client": {"name": client},
        "userId": record.user_id,
        "transferOptions": transfer_options,
        "sandbox": state.link.sandbox,
        "integrations": catalog(&state),
    }))))
}

/// Refuses a sign-in (or a transfer) at `integration` that this session's link token rules out: another
/// integration than its fixed `integrationId`, or — with `restrictMultipleAccounts` — another one than the
/// session already connected. The page hides these paths; this holds whatever the page does.
pub(crate) fn check_integration_allowed(
    state: &AppState,
    session: &LinkSessionRecord,
    integration: &Integration,
) -> Result<(), ApiError> {
    check_fixed_integration(state, session, integration)?;
    if session.restrict_multiple_accounts
        && let Some(connected) = session.connected_integration.as_deref()
        && connected != integration.integration_type.as_str()
    {
        return Err(one_account_only(state, connected));
    }
    Ok(())
}

/// Refuses an integration other than the link token's fixed `integrationId` (sign-ins and transfers alike).
pub(crate) fn check_fixed_integration(
    state: &AppState,
    session: &LinkSessionRecord,
    integration: &Integration,
) -> Result<(), ApiError> {
    if let Some(fixed) = session.integration_id
        && fixed != integration.id
    {
        let name = state.catalog.by_id(fixed).map_or("another integration", |i| i.name.as_str());
        return Err(ApiError::new(
            ApiStatus::PermissionDenied,
            ErrorType::IntegrationNotAllowed,
            format!(
                "this Link session is for {name} only (the link token's integrationId); {} is not allowed",
                integration.name
            ),
        )
        .with_display(format!("This app asked to connect {name} only.")));
    }
    Ok(())
}

/// The refusal of a second account in a `restrictMultipleAccounts` session.
pub(crate) fn one_account_only(state: &AppState, connected: &str) -> ApiError {
    let name = state.catalog.get(connected).map_or(connected, |i| i.name.as_str());
    ApiError::new(
        ApiStatus::PermissionDenied,
        ErrorType::IntegrationNotAllowed,
        format!(
            "this Link session already connected {name}; the link token's restrictMultipleAccounts allows one account per session"
        ),
    )
    .with_display(format!("This app allows one account per session, and {name} is already connected."))
}

/// Records the integration a sign-in in this session just connected. With `restrictMultipleAccounts`, a
/// sign-in that lost the race to another integration is refused (its connection stays stored, unused here).
pub(crate) async fn claim_connection(
    state: &AppState,
    session: &LinkSessionRecord,
    integration: &Integration,
) -> Result<(), ApiError> {
    let ty = integration.integration_type.as_str();
    match state.vault.claim_link_connection(session, ty).await.map_err(|e| ApiError::internal(&e))? {
        LinkClaim::Claimed => Ok(()),
        LinkClaim::OtherConnected(connected) => Err(one_account_only(state, &connected)),
    }
}

/// One of the SDK's `IntegrationAccessToken`s (only the fields that matter; the rest are obsolete).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReturnToken {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    broker_type: String,
}

#[derive(Deserialize)]
pub(crate) struct ReturnTokensRequest {
    tokens: Vec<ReturnToken>,
}

/// The connection a return user's token names — a tokenId (managed clients only), or in client-managed mode a
/// live access token — if it belongs to this session's client, user and scope (and, when `broker_type` is not
/// empty, that integration) and the session may use it for `operation`, with what to hand back for it. Anything
/// else (unknown, expired, revoked, deleted, another user's or client's) is `None`, indistinguishably. The
/// checks are the vault's `authorize_use`, with the session standing in for the API caller.
pub(crate) async fn own_connection<'s>(
    state: &'s AppState,
    session: &LinkSessionRecord,
    presented: &str,
    broker_type: &str,
    operation: Operation,
) -> Option<(Authorized<'s>, Handout)> {
    let presented = presented.trim();
    let caller = Caller {
        client_id: session.client_id,
        scope: session.scope,
        token_mode: token_mode_of(state, session.client_id).await.ok()?,
        key_id: Uuid::nil(),
        api_rate_limit: None,
    };
    let request = UseRequest {
        auth_token: presented,
        integration_type: (!broker_type.is_empty()).then_some(broker_type),
        user_id: Some(session.user_id.as_str()),
        operation,
    };
    let authorized = state.vault.authorize_use(&state.catalog, &caller, request).await.ok()?;
    if authorized.record.scope != session.scope {
        return None;
    }
    let token_id = authorized.record.token_id;
    // A return user is handed back what it presented: its tokens stay as they are.
    let handout = if authorized.by_access_token {
        Handout::Returning { token_id, access_token: presented.to_owned() }
    } else {
        Handout::Managed { token_id, expires_at: authorized.record.access_expires_at }
    };
    Some((authorized, handout))
}

/// `POST /link/api/return-tokens {tokens: IntegrationAccessToken[]}` — the tokens the SDK passed in
/// `frontAccessTokens` that this session may use, with their state. Others are left out without a trace.
pub(crate) async fn return_tokens(
    State(state): State<AppState>,
    LinkSession(session): LinkSession,
    ApiJson(req): ApiJson<ReturnTokensRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    let now = state.vault.clock().now();
    let mut seen = std::collections::BTreeSet::new();
    let mut connections = Vec::new();
    for token in req.tokens.iter().take(MAX_RETURN_TOKENS) {
        let Some((Authorized { record, integration, .. }, handout)) =
            own_connection(&state, &session, &token.access_token, &token.broker_type, Operation::Read).await
        else {
            continue;
        };
        // With a fixed integrationId, tokens of other integrations are ignored like foreign ones.
        if session.integration_id.is_some_and(|fixed| fixed != integration.id) {
            continue;
        }
        if !seen.insert(record.token_id) {
            continue;
        }
        let probe = probe(&state, &record, integration).await;
        let active = probe.status == ConnectionStatus::Active;
        let payload = active.then(|| access_token_payload(integration, &handout, &probe.accounts, now, true));
        connections.push(named(
            &handout,
            json!({
                "brokerType": integration.integration_type.as_str(),
                "status": probe.status.as_str(),
                "accounts": accounts_json(&probe.accounts),
                "payload": payload,
            }),
        ));
    }
    Ok(ApiOk(Some(json!({ "connections": connections }))))
}

/// `answer` with the connection named as the app may see it (`handle`, and `tokenId` for managed clients only).
pub(crate) fn named(handout: &Handout, mut answer: Value) -> Value {
    if let Some(fields) = answer.as_object_mut() {
        fields.extend(handout.naming());
    }
    answer
}

/// A finished sign-in (credentials or OAuth): the connection as the app may see it, its accounts and payload.
pub(crate) fn succeeded(
    integration: &Integration,
    handout: &Handout,
    accounts: &[AccountInfo],
    payload: Value,
) -> Value {
    named(
        handout,
        json!({
            "status": "succeeded",
            "brokerType": integration.integration_type.as_str(),
            "accounts": accounts_json(accounts),
            "payload": payload,
        }),
    )
}

pub(crate) fn accounts_json(accounts: &[AccountInfo]) -> Vec<Value> {
    accounts.iter().map(|a| json!({"accountId": a.id, "accountName": a.name})).collect()
}

/// The natural key of a connection made in this session: re-authentication lands on the same tokenId.
pub(crate) fn session_key(session: &LinkSessionRecord, integration: IntegrationType) -> Result<NaturalKey, ApiError> {
    let user_id = UserId::parse(&session.user_id).map_err(|e| ApiError::internal(&e.reason))?;
    Ok(NaturalKey { client_id: session.client_id, user_id, integration, scope: session.scope })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CredentialsRequest {
    #[serde(rename = "type")]
    integration_type: String,
    username: String,
    password: String,
    mfa_code: Option<String>,
    challenge_id: Option<String>,
}

/// `POST /link/api/credentials` — one step of a username/password sign-in; on success the session is
/// stored under this Link session's identity and the answer carries the `AccessTokenPayload`.
pub(crate) async fn credentials(
    State(state): State<AppState>,
    LinkSession(session): LinkSession,
    ApiJson(req): ApiJson<CredentialsRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    state.limits.check_sign_in(session.id)?;
    let (integration_type, integration) = credentials_integration(&state, &req.integration_type)?;
    check_integration_allowed(&state, &session, integration)?;
    if req.username.trim().is_empty() {
        return Err(ApiError::missing_field("username"));
    }
    if req.password.is_empty() {
        return Err(ApiError::missing_field("password"));
    }
    let key = session_key(&session, integration_type)?;
    let (username, password) = (SecretString::from(req.username), SecretString::from(req.password));
    let mfa_code = req.mfa_code.filter(|c| !c.trim().is_empty()).map(SecretString::from);
    let fields = SignInFields {
        username: &username,
        password: &password,
        challenge_id: req.challenge_id.as_deref(),
        mfa_code: mfa_code.as_ref(),
        from_link: true,
    };
    let answer = match sign_in_and_store(&state, &key, integration, fields).await? {
        SignInStep::MfaRequired { mfa_type, challenge_id, expires_in_seconds } => json!({
            "status": "mfaRequired", "mfaType": mfa_type, "challengeId": challenge_id,
            "challengeExpiresInSeconds": expires_in_seconds,
        }),
        SignInStep::Refused { status, message } => json!({"status": status, "errorMessage": message}),
        SignInStep::Stored { stored, account_id, account_name, .. } => {
            claim_connection(&state, &session, integration).await?;
            let now = state.vault.clock().now();
            let record = state.vault.connection_for(session.client_id, stored.token_id).await?;
            let mut accounts = match state.vault.open_credentials(&record).await {
                Ok(c) => {
                    let credential = Credential::of_stored(integration, &c.access_token, c.refresh_token.as_ref());
                    crate::link::payload::fetch_accounts(&state, integration, credential).await.unwrap_or_default()
                }
                Err(_) => Vec::new(),
            };
            if accounts.is_empty() && (account_id.is_some() || account_name.is_some()) {
                accounts.push(AccountInfo::named(
                    account_id.unwrap_or_default(),
                    account_name.unwrap_or_else(|| integration.name.clone()),
                ));
            }
            // Client-managed mode: a new token family for the connection (retiring any earlier one).
            let handout = hand_out(&state, token_mode_of(&state, session.client_id).await?, &record).await?;
            let payload = access_token_payload(integration, &handout, &accounts, now, !stored.created);
            succeeded(integration, &handout, &accounts, payload)
        }
    };
    Ok(ApiOk(Some(answer)))
}
