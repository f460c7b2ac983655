//! OAuth 2.0 adapter: authorization requests with PKCE (S256) and `state`, the code exchange, the refresh grant,
//! RFC 7009 revocation, and classification of token-endpoint failures per RFC 6749 §5.2.
//!
//! Rules this module owns: a refresh answer without a refresh token keeps the old one; `expires_at` is counted
//! from when the request was *sent* (on the injected clock, so it errs early); a missing `expires_in` takes
//! the catalog's default, never "no expiry". Tokens never appear in errors, logs or `Debug`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use linkvault_domain::{Clock, Scope};
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use url::Url;

use crate::catalog::{AuthScheme, ClientAuthMethod, Integration};
use crate::http::{self, FetchError, HttpLimits, RawResponse, sanitize};

/// The only PKCE method linkvault sends.
pub const PKCE_METHOD: &str = "S256";

/// Why an OAuth call failed, in the classes the refresh scheduler acts on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// `invalid_grant`: the code or refresh token is dead (expired, revoked, reused). Re-authentication needed.
    #[error("the integration rejected the grant (invalid_grant){}", describe(description))]
    InvalidGrant { description: Option<String> },
    /// `invalid_client` / `unauthorized_client`: the integration's client configuration is wrong — an operator
    /// problem, not the end user's.
    #[error("the integration rejected linkvault's client credentials ({error}){}", describe(description))]
    InvalidClient { error: String, description: Option<String> },
    /// Another RFC 6749 §5.2 error (`invalid_request`, `invalid_scope`, `unsupported_grant_type`, …).
    #[error("the integration refused the request ({error}, HTTP {status}){}", describe(description))]
    Rejected { error: String, status: u16, description: Option<String> },
    /// Worth retrying later: 5xx, 429, timeouts, connection failures. `retry_after` from the upstream if given.
    #[error("the integration is unavailable for now: {reason}")]
    Transient { retry_after: Option<Duration>, reason: String },
    /// The refresh request may have reached the integration (written, then a timeout or a broken connection
    /// before a complete answer): it may have rotated the refresh token. Never treated as "not sent":
    /// presenting the same refresh token again is reuse unless the integration's reuse grace covers it.
    #[error("no answer from the integration after the request was sent: {reason}")]
    OutcomeUnknown { reason: String },
    /// The answer broke the protocol: HTML instead of JSON, no access_token, an oversize body, …
    #[error("the integration's answer is unusable: {0}")]
    Protocol(String),
    /// The catalog entry cannot be used for this call (no token_url, no client_id, not an OAuth integration).
    #[error("integration configuration: {0}")]
    Config(String),
    /// Local failure (random generator, HTTP client construction).
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(description: &Option<String>) -> String {
    description.as_ref().map(|d| format!(": {d}")).unwrap_or_default()
}

impl OAuthError {
    /// The end user must sign in again (the grant is gone).
    pub fn needs_reauthentication(&self) -> bool {
        matches!(self, OAuthError::InvalidGrant { .. })
    }

    /// Back off (with jitter) and try again later. Includes [`OAuthError::OutcomeUnknown`], which callers that
    /// present a rotating refresh token must check first ([`OAuthError::outcome_unknown`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, OAuthError::Transient { .. } | OAuthError::OutcomeUnknown { .. })
    }

    /// The request was sent and no complete answer came: the integration may have acted on it.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, OAuthError::OutcomeUnknown { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OAuthError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// [`fetch_error`] for a call whose request may have been processed: "sent, no answer" is its own class.
fn tracked_fetch_error((e, delivery): (FetchError, http::Delivery), endpoint: &str) -> OAuthError {
    match (&e, delivery) {
        (FetchError::TimedOut | FetchError::Connection(_), http::Delivery::MaybeProcessed) => {
            OAuthError::OutcomeUnknown { reason: format!("{endpoint}: {}", e.describe()) }
        }
        _ => fetch_error(e, endpoint),
    }
}

fn fetch_error(e: FetchError, endpoint: &str) -> OAuthError {
    match e {
        FetchError::TooLarge { .. } => OAuthError::Protocol(format!("{endpoint}: {}", e.describe())),
        FetchError::TimedOut | FetchError::Connection(_) => {
            OAuthError::Transient { retry_after: None, reason: format!("{endpoint}: {}", e.describe()) }
        }
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], OAuthError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| OAuthError::Internal("the system random generator failed".to_owned()))?;
    Ok(bytes)
}

/// The S256 code challenge of a verifier: base64url(SHA-256(verifier)), no padding (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()))
}

/// A fresh, unguessable `state` value (256 bits, base64url).
pub fn generate_state() -> Result<String, OAuthError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// A PKCE pair. The verifier stays secret until the code exchange; the challenge goes in the authorize URL.
pub struct Pkce {
    verifier: SecretString,
    challenge: String,
}

impl Pkce {
    /// 256 random bits as a 43-character verifier.
    pub fn generate() -> Result<Self, OAuthError> {
        let verifier = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
        let challenge = s256_challenge(&verifier);
        Ok(Self { verifier: SecretString::from(verifier), challenge })
    }

    /// Rebuilds the pair from a stored verifier, checking RFC 7636 §4.1's shape (43–128 unreserved chars).
    pub fn from_verifier(verifier: SecretString) -> Result<Self, OAuthError> {
        let v = verifier.expose_secret();
        let well_formed = (43..=128).contains(&v.len())
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !well_formed {
            return Err(OAuthError::Config("a PKCE verifier must be 43 to 128 unreserved characters".to_owned()));
        }
        let challenge = s256_challenge(v);
        Ok(Self { verifier, challenge })
    }

    pub fn verifier(&self) -> &SecretString {
        &self.verifier
    }

    pub fn challenge(&self) -> &str {
        &self.challenge
    }
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce").field("verifier", &"[redacted]").field("challenge", &self.challenge).finish()
    }
}

/// Everything needed to send the end user to the integration and to check the callback.
#[derive(Debug)]
pub struct AuthorizationRequest {
    /// Where the end user's browser goes.
    pub url: Url,
    /// Compare with the callback's `state` before exchanging the code.
    pub state: String,
    /// Keep the verifier (secretly) for [`OAuthClient::exchange_code`].
    pub pkce: Pkce,
}

fn require_oauth(integration: &Integration) -> Result<(), OAuthError> {
    if integration.auth != AuthScheme::OAuth2 {
        return Err(OAuthError::Config(format!(
            "integration {} signs in with {}, not OAuth 2.0",
            integration.integration_type,
            integration.auth.as_str()
        )));
    }
    Ok(())
}

fn client_id(integration: &Integration) -> Result<&str, OAuthError> {
    integration.client.client_id.as_deref().ok_or_else(|| {
        OAuthError::Config(format!(
            "integration {} has no client_id; set it in the catalog file",
            integration.integration_type
        ))
    })
}

/// Builds the authorization URL: `response_type=code`, client id, redirect URI, the scopes for `scope`,
/// `state`, the S256 challenge, then the catalog's extra `authorize_params`.
pub fn authorize_url(
    integration: &Integration,
    redirect_uri: &str,
    scope: Scope,
    state: &str,
    pkce: &Pkce,
) -> Result<Url, OAuthError> {
    require_oauth(integration)?;
    let mut url = integration.endpoints.authorize_url.clone().ok_or_else(|| {
        OAuthError::Config(format!("integration {} has no authorize_url", integration.integration_type))
    })?;
    let redirect = Url::parse(redirect_uri)
        .map_err(|_| OAuthError::Config("the redirect URI must be an absolute URL".to_owned()))?;
    let scopes = integration.scopes_for(scope).join(" ");
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id(integration)?)
            .append_pair("redirect_uri", redirect.as_str());
        if !scopes.is_empty() {
            query.append_pair("scope", &scopes);
        }
        query
            .append_pair("state", state)
            .append_pair("code_challenge", pkce.challenge())
            .append_pair("code_challenge_method", PKCE_METHOD);
        for (key, value) in &integration.authorize_params {
            query.append_pair(key, value);
        }
    }
    Ok(url)
}

/// A fresh `state` and PKCE pair, and the URL that carries them.
pub fn authorization_request(
    integration: &Integration,
    redirect_uri: &str,
    scope: Scope,
) -> Result<AuthorizationRequest, OAuthError> {
    let state = generate_state()?;
    let pkce = Pkce::generate()?;
    let url = authorize_url(integration, redirect_uri, scope, &state, &pkce)?;
    Ok(AuthorizationRequest { url, state, pkce })
}

/// Tokens from a code exchange or refresh.
pub struct TokenSet {
    pub access_token: SecretString,
    /// The refresh token to store: the new one, or the one just presented when the answer carried none.
    pub refresh_token: Option<SecretString>,
    /// The answer carried a refresh token different from the one presented (rotation happened).
    pub refresh_token_rotated: bool,
    /// When the access token expires: request sent-at + `expires_in` (or the catalog default).
    pub expires_at: OffsetDateTime,
    /// `expires_in` was absent and the catalog's `default_access_ttl_secs` was used.
    pub expires_in_defaulted: bool,
    /// From `refresh_token_expires_in`, else the catalog's `refresh_token_ttl_secs` for a new refresh token;
    /// None when unknown (a kept refresh token keeps the expiry the caller already has).
    pub refresh_token_expires_at: Option<OffsetDateTime>,
    /// Granted scope, if the answer says (RFC 6749 §5.1: absent means as requested).
    pub scope: Option<String>,
    pub token_type: Option<String>,
    /// When the request was sent (the origin of the expiry times).
    pub requested_at: OffsetDateTime,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("refresh_token_rotated", &self.refresh_token_rotated)
            .field("expires_at", &self.expires_at)
            .field("expires_in_defaulted", &self.expires_in_defaulted)
            .field("refresh_token_expires_at", &self.refresh_token_expires_at)
            .field("scope", &self.scope)
            .field("token_type", &self.token_type)
            .field("requested_at", &self.requested_at)
            .finish()
    }
}

/// RFC 7009 `token_type_hint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTypeHint {
    AccessToken,
    RefreshToken,
}

impl TokenTypeHint {
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenTypeHint::AccessToken => "access_token",
            TokenTypeHint::RefreshToken => "refresh_token",
        }
    }
}

/// What a revocation call achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The revocation endpoint answered 200 (RFC 7009 also answers 200 for an already-invalid token).
    Revoked,
    /// The integration has no revocation endpoint in the catalog; nothing was sent.
    NotSupported,
}

/// Talks OAuth 2.0 to integrations' token and revocation endpoints, within [`HttpLimits`].
#[derive(Debug, Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    limits: HttpLimits,
    clock: Arc<dyn Clock>,
}

impl OAuthClient {
    pub fn new(clock: Arc<dyn Clock>) -> Result<Self, OAuthError> {
        Self::with_limits(clock, HttpLimits::default())
    }

    pub fn with_limits(clock: Arc<dyn Clock>, limits: HttpLimits) -> Result<Self, OAuthError> {
        let http = http::build_client(&limits).map_err(OAuthError::Internal)?;
        Ok(Self { http, limits, clock })
    }

    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    /// Exchanges an authorization code (RFC 6749 §4.1.3) with the PKCE verifier.
    pub async fn exchange_code(
        &self,
        integration: &Integration,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &SecretString,
    ) -> Result<TokenSet, OAuthError> {
        let form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", pkce_verifier.expose_secret()),
        ];
        self.token_request(integration, form, None).await
    }

    /// The refresh grant (RFC 6749 §6). No `scope` is sent, so the grant keeps its scope.
    pub async fn refresh(
        &self,
        integration: &Integration,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, OAuthError> {
        let form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose_secret())];
        self.token_request(integration, form, Some(refresh_token)).await
    }

    /// RFC 7009 revocation of an access or refresh token (revoking a refresh token usually ends the grant).
    pub async fn revoke(
        &self,
        integration: &Integration,
        token: &SecretString,
        hint: TokenTypeHint,
    ) -> Result<Revocation, OAuthError> {
        require_oauth(integration)?;
        let Some(revoke_url) = integration.endpoints.revoke_url.clone() else {
            return Ok(Revocation::NotSupported);
        };
        let form = vec![("token", token.expose_secret()), ("token_type_hint", hint.as_str())];
        let request = self.authenticated_post(integration, revoke_url, form)?;
        let response = http::send(&self.limits, request).await.map_err(|e| fetch_error(e, "revocation endpoint"))?;
        tracing::debug!(integration = %integration.integration_type, status = response.status.as_u16(), "revocation answered");
        if response.status == StatusCode::OK {
            return Ok(Revocation::Revoked);
        }
        Err(classify_error_response(&response, "revocation endpoint"))
    }

    fn authenticated_post<'a>(
        &self,
        integration: &'a Integration,
        url: Url,
        mut form: Vec<(&'a str, &'a str)>,
    ) -> Result<reqwest::RequestBuilder, OAuthError> {
        let client_id = client_id(integration)?;
        let secret = integration.client.client_secret.as_ref();
        let mut request = self.http.post(url).header(ACCEPT, "application/json");
        match integration.client.auth_method {
            ClientAuthMethod::ClientSecretBasic => {
                let secret = secret.ok_or_else(|| missing_secret(integration))?;
                // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
                let user: String = url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
                let pass: String = url::form_urlencoded::byte_serialize(secret.expose().as_bytes()).collect();
                request = request.basic_auth(user, Some(pass));
            }
            ClientAuthMethod::ClientSecretPost => {
                let secret = secret.ok_or_else(|| missing_secret(integration))?;
                form.push(("client_id", client_id));
                form.push(("client_secret", secret.expose()));
            }
            ClientAuthMethod::None => form.push(("client_id", client_id)),
        }
        Ok(request.form(&form))
    }

    async fn token_request(
        &self,
        integration: &Integration,
        form: Vec<(&str, &str)>,
        presented_refresh: Option<&SecretString>,
    ) -> Result<TokenSet, OAuthError> {
        require_oauth(integration)?;
        let token_url = integration.endpoints.token_url.clone().ok_or_else(|| {
            OAuthError::Config(format!("integration {} has no token_url", integration.integration_type))
        })?;
        let grant_type = form.first().map(|(_, v)| *v).unwrap_or_default().to_owned();
        let request = self.authenticated_post(integration, token_url, form)?;
        let sent_at = self.clock.now();
        let response =
            http::send_tracked(&self.limits, request).await.map_err(|e| tracked_fetch_error(e, "token endpoint"))?;
        tracing::debug!(
            integration = %integration.integration_type,
            grant_type = %grant_type,
            status = response.status.as_u16(),
            "token endpoint answered"
        );
        if !response.status.is_success() {
            return Err(classify_error_response(&response, "token endpoint"));
        }
        parse_token_response(&response, integration, sent_at, presented_refresh)
    }
}

fn missing_secret(integration: &Integration) -> OAuthError {
    OAuthError::Config(format!(
        "integration {} has no client secret; set client_secret or client_secret_env in the catalog file",
        integration.integration_type
    ))
}

fn error_from_body(body: &Map<String, Value>, status: StatusCode, retry_after: Option<Duration>) -> Option<OAuthError> {
    let error = body.get("error")?.as_str()?;
    let description = body.get("error_description").and_then(Value::as_str).map(sanitize);
    let error = sanitize(error);
    Some(match error.as_str() {
        "invalid_grant" => OAuthError::InvalidGrant { description },
        "invalid_client" | "unauthorized_client" => OAuthError::InvalidClient { error, description },
        // Authorization-endpoint codes that some servers also use at the token endpoint.
        "temporarily_unavailable" | "server_error" | "slow_down" => OAuthError::Transient {
            retry_after,
            reason: format!("HTTP {} {error}{}", status.as_u16(), describe(&description)),
        },
        _ => OAuthError::Rejected { error, status: status.as_u16(), description },
    })
}

/// RFC 6749 §5.2 classification of a non-success answer.
fn classify_error_response(response: &RawResponse, endpoint: &str) -> OAuthError {
    let status = response.status;
    let retry_after = response.retry_after();
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return OAuthError::Transient { retry_after, reason: format!("{endpoint} answered HTTP {}", status.as_u16()) };
    }
    match response.json_object() {
        Ok(body) => {
            if let Some(error) = error_from_body(&body, status, retry_after) {
                return error;
            }
            if status == StatusCode::UNAUTHORIZED {
                return OAuthError::InvalidClient { error: "HTTP 401".to_owned(), description: None };
            }
            OAuthError::Protocol(format!("{endpoint} answered HTTP {} without an OAuth error code", status.as_u16()))
        }
        Err(what) => {
            if status == StatusCode::UNAUTHORIZED {
                return OAuthError::InvalidClient { error: "HTTP 401".to_owned(), description: None };
            }
            OAuthError::Protocol(format!("{endpoint} answered {what}"))
        }
    }
}

/// A JSON number of seconds, or a numeric string (some providers quote it).
fn seconds(body: &Map<String, Value>, key: &str) -> Result<Option<u64>, OAuthError> {
    let bad = || OAuthError::Protocol(format!("token response field {key} is not a non-negative number of seconds"));
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f.is_finite() && f >= 0.0 => Ok(Some(f.floor() as u64)),
            _ => Err(bad()),
        },
        Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn add_secs(at: OffsetDateTime, secs: u64) -> OffsetDateTime {
    // Clamp absurd lifetimes (ten years) rather than overflow.
    let secs = secs.min(10 * 365 * 24 * 3600);
    at + time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2))
}

fn parse_token_response(
    response: &RawResponse,
    integration: &Integration,
    sent_at: OffsetDateTime,
    presented_refresh: Option<&SecretString>,
) -> Result<TokenSet, OAuthError> {
    let body =
        response.json_object().map_err(|what| OAuthError::Protocol(format!("token endpoint answered {what}")))?;
    if let Some(error) = error_from_body(&body, response.status, response.retry_after()) {
        return Err(error);
    }
    let access_token = match body.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() => SecretString::from(t.clone()),
        Some(_) => {
            return Err(OAuthError::Protocol("token response access_token is not a non-empty string".to_owned()));
        }
        None => return Err(OAuthError::Protocol("token response has no access_token".to_owned())),
    };
    let token_type = match body.get("token_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => Some(t.clone()),
        Some(Value::String(t)) => {
            return Err(OAuthError::Protocol(format!("token_type {:?} is not supported (Bearer only)", sanitize(t))));
        }
        Some(_) => return Err(OAuthError::Protocol("token response token_type is not a string".to_owned())),
    };
    let expires_in = seconds(&body, "expires_in")?;
    let expires_in_defaulted = expires_in.is_none();
    let expires_at = add_secs(sent_at, expires_in.unwrap_or(integration.timing.default_access_ttl_secs));

    let new_refresh = match body.get("refresh_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if !t.is_empty() => Some(SecretString::from(t.clone())),
        Some(_) => {
            return Err(OAuthError::Protocol("token response refresh_token is not a non-empty string".to_owned()));
        }
    };
    let refresh_token_expires_in = seconds(&body, "refresh_token_expires_in")?;
    let (refresh_token, refresh_token_rotated, refresh_token_expires_at) = match new_refresh {
        Some(new) => {
            let rotated = presented_refresh.is_some_and(|old| old.expose_secret() != new.expose_secret());
            let is_new = presented_refresh.is_none() || rotated;
            let ttl =
                refresh_token_expires_in.or(if is_new { integration.timing.refresh_token_ttl_secs } else { None });
            (Some(new), rotated, ttl.map(|s| add_secs(sent_at, s)))
        }
        None => {
            let ttl = refresh_token_expires_in.map(|s| add_secs(sent_at, s));
            (presented_refresh.cloned(), false, ttl)
        }
    };
    let scope = body.get("scope").and_then(Value::as_str).map(str::to_owned);
    Ok(TokenSet {
        access_token,
        refresh_token,
        refresh_token_rotated,
        expires_at,
        expires_in_defaulted,
        refresh_token_expires_at,
        scope,
        token_type,
        requested_at: sent_at,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let pkce = Pkce::generate().unwrap();
        assert_eq!(pkce.verifier().expose_secret().len(), 43);
        assert_eq!(pkce.challenge(), s256_challenge(pkce.verifier().expose_secret()));
        assert!(!format!("{pkce:?}").contains(pkce.verifier().expose_secret()));
        assert!(Pkce::from_verifier(SecretString::from("short".to_owned())).is_err());
        assert_ne!(generate_state().unwrap(), generate_state().unwrap());
    }

    #[test]
    fn authorize_url_carries_everything() {
        let mut catalog = Catalog::embedded();
        catalog.point_at_sandbox("http://127.0.0.1:1/sandbox").unwrap();
        let cb = catalog.get("coinbase").unwrap();
        let request = authorization_request(cb, "http://127.0.0.1:2/cb", Scope::Write).unwrap();
        let pairs: std::collections::HashMap<_, _> = request.url.query_pairs().into_owned().collect();
        assert_eq!(pairs["response_type"], "code");
        assert_eq!(pairs["client_id"], crate::catalog::SANDBOX_CLIENT_ID);
        assert_eq!(pairs["state"], request.state);
        assert_eq!(pairs["code_challenge"], request.pkce.challenge());
        assert_eq!(pairs["code_challenge_method"], "S256");
        assert!(pairs["scope"].contains("wallet:transactions:send"));
        let binance = catalog.get("sandbox").unwrap();
        assert!(matches!(authorization_request(binance, "http://x/cb", Scope::Read), Err(OAuthError::Config(_))));
    }
}
