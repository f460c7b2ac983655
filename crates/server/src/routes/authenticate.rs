//! `POST /api/v1/authenticate?userId=…`: signs an end user in to a credentials integration (username,
//! password, then the MFA step) and stores the session under the managed-token identity, so the same user
//! and integration always land on the same tokenId. An API-key integration (`binanceInternational`) takes the
//! key as `username` and the secret as `password`: the pair is checked with a signed call at the exchange
//! before anything is stored, then kept as access token (key) and refresh token (secret), with no expiry. A client in client-managed mode receives a new family of
//! linkvault access and refresh tokens for that connection instead of the tokenId.

use axum::extract::State;
use base64::Engine as _;
use linkvault_domain::{IntegrationType, NaturalKey, UserId};
use linkvault_integrations::api::{ApiError as ExchangeError, Credential};
use linkvault_integrations::credentials::{CredentialsError, SignIn, SignInOutcome};
use linkvault_integrations::{AuthScheme, Integration};
use linkvault_vault::{ConnectionMeta, IntegrationCredentials};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk, ApiStatus, ErrorType};
use crate::auth::Client;
use crate::extract::{ApiJson, ApiQuery};
use crate::handout::{Handout, hand_out};
use crate::routes::openapi::ApiResult;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthQuery {
    user_id: Option<String>,
}

/// Mesh's `B2BBrokerAuthRequest`, the fields a username/password integration uses.
#[derive(Deserialize, ToSchema)]
#[schema(as = B2BBrokerAuthRequest)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthRequest {
    #[serde(rename = "type")]
    integration_type: String,
    username: Option<String>,
    password: Option<String>,
    mfa_code: Option<String>,
    challenge_id: Option<String>,
    /// username, password and mfaCode are base64
    #[serde(default)]
    is_sensitive_fields_encrypted: bool,
}

/// Mesh's `B2BBrokerAuthResponse`, as far as linkvault fills it.
#[derive(Serialize, Default, ToSchema)]
#[schema(as = B2BBrokerAuthResponse)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthResponse {
    status: SignInStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mfa_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge_expires_in_seconds: Option<i64>,
    /// managed mode: the integration session's remaining life; client-managed mode: the access token's
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in_seconds: Option<i64>,
    /// client-managed mode: the refresh token's remaining life
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token_expires_in_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_tokens: Option<Vec<AccountToken>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requires_reauthentication: Option<bool>,
}

/// Where a sign-in step stands (`B2BBrokerAuthResponse.status`).
#[derive(Serialize, ToSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[schema(as = SignInOutcomeName)]
#[serde(rename_all = "camelCase")]
pub(crate) enum SignInStatus {
    #[default]
    Succeeded,
    MfaRequired,
    /// The end user's mistake (wrong username or password, a refusal by the integration).
    Failed,
    /// A wrong or expired MFA code.
    ChallengeFailed,
}

/// One `accountTokens` entry of the answer: the account and what the app holds for it, by the client's token mode.
// Fields in JSON-name order (see `routes::wire`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccountToken {
    /// managed mode: equals tokenId; client-managed mode: a linkvault access token (lva_…)
    access_token: String,
    account: AuthenticatedAccount,
    /// client-managed mode only: a linkvault refresh token (lvr_…) for POST /api/v1/token/refresh
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    refresh_token: Option<String>,
    /// managed mode only
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = Uuid, required = false)]
    token_id: Option<String>,
}

/// The account signed in to.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthenticatedAccount {
    account_id: String,
    account_name: String,
    /// false on the first sign-in of this user to this integration
    is_reconnected: bool,
    mesh_account_id: String,
}

pub(crate) fn decode(
    field: &'static str,
    value: Option<String>,
    encoded: bool,
) -> Result<Option<SecretString>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    if !encoded {
        return Ok(Some(SecretString::from(value)));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| ApiError::invalid_field(field, "is not base64 although isSensitiveFieldsEncrypted is true"))?;
    String::from_utf8(bytes)
        .map(|s| Some(SecretString::from(s)))
        .map_err(|_| ApiError::invalid_field(field, "does not decode to UTF-8 text"))
}

fn failed(status: SignInStatus, message: String) -> ApiOk<AuthResponse> {
    ApiOk(Some(AuthResponse { status, error_message: Some(message), ..AuthResponse::default() }))
}

/// What one step of a credentials sign-in came to.
pub(crate) enum SignInStep {
    /// Answer the challenge with the MFA code.
    MfaRequired { mfa_type: String, challenge_id: String, expires_in_seconds: Option<i64> },
    /// The end user's mistake (`failed`) or a wrong/expired MFA code (`challengeFailed`); nothing stored.
    Refused { status: SignInStatus, message: String },
    /// Signed in; the session is stored under the natural key.
    Stored {
        stored: linkvault_vault::StoredConnection,
        /// None: the connection does not expire (an API key).
        expires_in_seconds: Option<i64>,
        account_id: Option<String>,
        account_name: Option<String>,
    },
}

/// The sign-in fields of one step, already decoded.
pub(crate) struct SignInFields<'a> {
    pub username: &'a SecretString,
    pub password: &'a SecretString,
    pub challenge_id: Option<&'a str>,
    pub mfa_code: Option<&'a SecretString>,
    /// An end user signing in on the Link pages (the audit log's actor), not the API client itself.
    pub from_link: bool,
}

/// The credentials integration named by `raw_type`, if it can sign users in here.
pub(crate) fn credentials_integration<'s>(
    state: &'s AppState,
    raw_type: &str,
) -> Result<(IntegrationType, &'s Integration), ApiError> {
    let integration_type = state.known_integration(raw_type)?;
    let Some(integration) = state.catalog.get(integration_type.as_str()) else {
        return Err(ApiError::integration_not_found(raw_type));
    };
    if !matches!(integration.auth, AuthScheme::Credentials | AuthScheme::ApiKey) {
        return Err(ApiError::invalid_field(
            "type",
            format!("{} signs users in with OAuth; connect it through Link (POST /api/v1/linktoken)", integration.name),
        ));
    }
    if let Some(problem) = integration.missing_configuration() {
        return Err(ApiError::new(ApiStatus::BadRequest, ErrorType::IntegrationUnavailable, problem));
    }
    Ok((integration_type, integration))
}

/// One step of the credentials sign-in, shared by `/authenticate` and the Link page: signs in (or answers
/// the MFA challenge) and, on success, stores the session under `key` (the managed-token identity).
/// Stores a signed-in connection, as the Link page's user or as the API client.
async fn store(
    state: &AppState,
    key: &NaturalKey,
    credentials: &IntegrationCredentials,
    meta: &ConnectionMeta,
    from_link: bool,
) -> Result<linkvault_vault::StoredConnection, linkvault_vault::VaultError> {
    if from_link {
        state.vault.store_credentials_from_link(key, credentials, meta).await
    } else {
        state.vault.store_credentials(key, credentials, meta).await
    }
}

pub(crate) async fn sign_in_and_store(
    state: &AppState,
    key: &NaturalKey,
    integration: &Integration,
    fields: SignInFields<'_>,
) -> Result<SignInStep, ApiError> {
    if integration.auth == AuthScheme::ApiKey {
        return verify_and_store_key(state, key, integration, fields).await;
    }
    let sign_in = SignIn {
        username: fields.username.expose_secret(),
        password: fields.password,
        scope: key.scope,
        challenge_id: fields.challenge_id,
        mfa_code: fields.mfa_code,
    };
    let session = match state.credentials.sign_in(integration, &sign_in).await {
        Ok(SignInOutcome::Succeeded(session)) => session,
        Ok(SignInOutcome::MfaRequired(challenge)) => {
            let now = state.vault.clock().now();
            return Ok(SignInStep::MfaRequired {
                mfa_type: challenge.mfa_type,
                challenge_id: challenge.challenge_id,
                expires_in_seconds: challenge.expires_at.map(|at| (at - now).whole_seconds().max(0)),
            });
        }
        // The end user's mistakes are answered inside the result, as Mesh does; nothing is stored.
        Err(e @ (CredentialsError::InvalidCredentials | CredentialsError::Rejected { .. })) => {
            return Ok(SignInStep::Refused { status: SignInStatus::Failed, message: e.to_string() });
        }
        Err(e @ (CredentialsError::InvalidMfaCode | CredentialsError::ChallengeExpired)) => {
            return Ok(SignInStep::Refused { status: SignInStatus::ChallengeFailed, message: e.to_string() });
        }
        Err(CredentialsError::Transient { reason, .. }) => {
            return Err(ApiError::new(
                ApiStatus::ServerFailure,
                ErrorType::IntegrationUnavailable,
                format!("{} is unavailable for now ({reason}); try again shortly", integration.name),
            ));
        }
        Err(e) => {
            return Err(ApiError::new(ApiStatus::ServerFailure, ErrorType::IntegrationUnavailable, e.to_string()));
        }
    };
    let meta = ConnectionMeta {
        account_id: session.account_id.clone(),
        account_name: session.account_name.clone(),
        access_expires_at: Some(session.expires_at),
        refresh_expires_at: None,
    };
    let credentials = IntegrationCredentials { access_token: session.token, refresh_token: None };
    let stored = store(state, key, &credentials, &meta, fields.from_link).await?;
    state.metrics.connection_stored();
    let expires_in_seconds = (session.expires_at - state.vault.clock().now()).whole_seconds().max(0);
    Ok(SignInStep::Stored {
        stored,
        expires_in_seconds: Some(expires_in_seconds),
        account_id: session.account_id,
        account_name: session.account_name,
    })
}

/// The API-key sign-in: `username` is the key, `password` the secret. The pair is verified with a signed call
/// (the adapter's `verify`) BEFORE anything is stored; a pair the exchange refuses is a 400 naming the field,
/// and nothing is kept. Neither value is logged or returned.
async fn verify_and_store_key(
    state: &AppState,
    key: &NaturalKey,
    integration: &Integration,
    fields: SignInFields<'_>,
) -> Result<SignInStep, ApiError> {
    let (api_key, secret) = (fields.username, fields.password);
    if api_key.expose_secret().trim().is_empty() || api_key.expose_secret().chars().any(char::is_control) {
        return Err(ApiError::invalid_field("username", "must be the API key"));
    }
    let unavailable =
        |message: String| ApiError::new(ApiStatus::ServerFailure, ErrorType::IntegrationUnavailable, message);
    let (adapter, call) = state
        .exchange
        .adapter(integration, Credential::ApiKey { key: api_key, secret })
        .map_err(|e| ApiError::new(ApiStatus::BadRequest, ErrorType::IntegrationUnavailable, e.to_string()))?;
    let account = match adapter.verify(call).await {
        Ok(account) => account,
        Err(ExchangeError::Revoked(_) | ExchangeError::Unauthorized) => {
            return Err(ApiError::invalid_field(
                "password",
                format!(
                    "{} refused this API key and secret: check both, and that the key is not deleted",
                    integration.name
                ),
            ));
        }
        Err(ExchangeError::InsufficientScope) => {
            return Err(ApiError::invalid_field(
                "username",
                format!("this {} API key cannot read the account: enable reading for it", integration.name),
            ));
        }
        Err(ExchangeError::Transient { reason, .. }) => {
            return Err(unavailable(format!(
                "{} is unavailable for now ({reason}); try again shortly",
                integration.name
            )));
        }
        Err(e) => return Err(unavailable(format!("{} could not check the API key: {e}", integration.name))),
    };
    let meta = ConnectionMeta {
        account_id: Some(account.id.clone()),
        account_name: Some(account.name.clone()),
        // API keys do not expire: the refresh engine never renews nor expires this connection.
        access_expires_at: None,
        refresh_expires_at: None,
    };
    let credentials = IntegrationCredentials {
        access_token: SecretString::from(api_key.expose_secret().to_owned()),
        refresh_token: Some(SecretString::from(secret.expose_secret().to_owned())),
    };
    let stored = store(state, key, &credentials, &meta, fields.from_link).await?;
    state.metrics.connection_stored();
    Ok(SignInStep::Stored {
        stored,
        expires_in_seconds: None,
        account_id: Some(account.id),
        account_name: Some(account.name),
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/authenticate",
    operation_id = "authenticate",
    summary = "Sign a user in to a username/password integration (MFA loop) and store the session under a managed \
        tokenId",
    params(("userId" = String, Query, min_length = 1, max_length = 300)),
    request_body = AuthRequest,
    responses(
        (status = 200, description = "Outcome (status inside content)", body = AuthResponse),
        (status = 400, description = "missingField / invalidField naming the field (type: an OAuth integration), \
            integrationNotFound, integrationUnavailable (the integration is not configured, or refused the API key \
            check)", body = ApiResult),
        (status = 500, description = "integrationUnavailable", body = ApiResult),
    )
)]
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    Client(caller): Client,
    query: ApiQuery<AuthQuery>,
    ApiJson(req): ApiJson<AuthRequest>,
) -> Result<ApiOk<AuthResponse>, ApiError> {
    let raw_user = query.0.user_id.ok_or_else(|| ApiError::missing_field("userId"))?;
    let user_id = UserId::parse(&raw_user).map_err(|e| ApiError::invalid_field(e.field, e.reason))?;
    let (integration_type, integration) = credentials_integration(&state, &req.integration_type)?;
    let encoded = req.is_sensitive_fields_encrypted;
    let username = decode("username", req.username, encoded)?.ok_or_else(|| ApiError::missing_field("username"))?;
    let password = decode("password", req.password, encoded)?.ok_or_else(|| ApiError::missing_field("password"))?;
    let mfa_code = decode("mfaCode", req.mfa_code, encoded)?;

    let key = NaturalKey { client_id: caller.client_id, user_id, integration: integration_type, scope: caller.scope };
    let fields = SignInFields {
        username: &username,
        password: &password,
        challenge_id: req.challenge_id.as_deref(),
        mfa_code: mfa_code.as_ref(),
        from_link: false,
    };
    let (stored, expires_in, account_id, account_name) =
        match sign_in_and_store(&state, &key, integration, fields).await? {
            SignInStep::MfaRequired { mfa_type, challenge_id, expires_in_seconds } => {
                return Ok(ApiOk(Some(AuthResponse {
                    status: SignInStatus::MfaRequired,
                    mfa_type: Some(mfa_type),
                    challenge_id: Some(challenge_id),
                    challenge_expires_in_seconds: expires_in_seconds,
                    ..AuthResponse::default()
                })));
            }
            SignInStep::Refused { status, message } => return Ok(failed(status, message)),
            SignInStep::Stored { stored, expires_in_seconds, account_id, account_name } => {
                (stored, expires_in_seconds, account_id, account_name)
            }
        };
    // Managed tokens: the app receives the tokenId, never the integration's session (accessToken = tokenId).
    // Client-managed tokens: a new family of linkvault access and refresh tokens instead.
    let record = state.vault.connection_for(caller.client_id, stored.token_id).await?;
    let handout = hand_out(&state, caller.token_mode, &record).await?;
    let now = state.vault.clock().now();
    let account = AuthenticatedAccount {
        account_id: account_id.unwrap_or_default(),
        account_name: account_name.unwrap_or_default(),
        is_reconnected: !stored.created,
        mesh_account_id: handout.mesh_account_id(),
    };
    let tokens = handout.tokens();
    let account_token = AccountToken {
        access_token: tokens.access_token,
        account,
        refresh_token: tokens.refresh_token,
        token_id: tokens.token_id,
    };
    // Managed: the session's remaining life, as before. Client-managed: the access token's.
    let expires_in = match handout {
        Handout::Client(_) => handout.expires_in(now).or(expires_in),
        _ => expires_in,
    };
    Ok(ApiOk(Some(AuthResponse {
        status: SignInStatus::Succeeded,
        expires_in_seconds: expires_in,
        refresh_token_expires_in_seconds: handout.refresh_expires_in(now),
        account_tokens: Some(vec![account_token]),
        requires_reauthentication: Some(false),
        ..AuthResponse::default()
    })))
}

/// Representative answers (an account token of each token mode), for the schema test in `routes::openapi`.
#[cfg(test)]
pub(crate) fn samples() -> Vec<(&'static str, String)> {
    use crate::routes::wire::sample;
    let account = || AuthenticatedAccount {
        account_id: "a-1".to_owned(),
        account_name: "Main".to_owned(),
        is_reconnected: false,
        mesh_account_id: uuid::Uuid::nil().to_string(),
    };
    let id = uuid::Uuid::nil().to_string();
    let managed =
        AccountToken { access_token: id.clone(), account: account(), refresh_token: None, token_id: Some(id) };
    let client = AccountToken {
        access_token: "lva_x".to_owned(),
        account: account(),
        refresh_token: Some("lvr_x".to_owned()),
        token_id: None,
    };
    vec![sample("AccountToken", &managed), sample("AccountToken", &client)]
}
