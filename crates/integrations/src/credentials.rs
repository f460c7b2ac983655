//! Credentials adapter: username/password sign-in with the MFA/challenge loop, for integrations whose
//! sessions expire and cannot be refreshed (the Binance-like sandbox, and any catalog entry speaking the same
//! JSON protocol). Passwords, MFA codes and session tokens never appear in errors, logs or `Debug`.
//!
//! Wire protocol (POST `sign_in_url`, JSON):
//! request `{"username","password","scope":"read"|"write","challengeId"?,"mfaCode"?}`;
//! answers `{"status":"mfaRequired","challengeId","mfaType","challengeExpiresInSeconds"?}`,
//! `{"status":"succeeded","sessionToken","expiresInSeconds"?,"accountId"?,"accountName"?}`, or an error
//! status with `{"error":"invalid_credentials"|"invalid_mfa_code"|"challenge_expired"|…,"message"?}`.
//! Sign-out: POST `revoke_url` with the session as a Bearer token.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use linkvault_domain::{Clock, Scope};
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::catalog::{AuthScheme, Integration};
use crate::http::{self, FetchError, HttpLimits, RawResponse, sanitize};

/// Why a sign-in failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Wrong username or password. Nothing should be stored.
    #[error("the username or password is wrong")]
    InvalidCredentials,
    /// Wrong MFA code; the challenge may still be answered again.
    #[error("the MFA code is wrong")]
    InvalidMfaCode,
    /// The challenge is unknown or expired: start again with username and password.
    #[error("the MFA challenge expired; sign in again")]
    ChallengeExpired,
    /// The session is expired or was ended (API calls with it); credentials sessions cannot be refreshed.
    #[error("the session expired; sign in again")]
    SessionExpired,
    /// The integration refused for another stated reason (locked account, bad request, …).
    #[error("the integration refused the sign-in ({error}, HTTP {status}){}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Rejected { status: u16, error: String, message: Option<String> },
    /// 5xx, 429, timeouts, connection failures.
    #[error("the integration is unavailable for now: {reason}")]
    Transient { retry_after: Option<Duration>, reason: String },
    /// An unusable answer (not JSON, no session token, oversize body, unknown status).
    #[error("the integration's answer is unusable: {0}")]
    Protocol(String),
    #[error("integration configuration: {0}")]
    Config(String),
}

impl CredentialsError {
    pub fn is_transient(&self) -> bool {
        matches!(self, CredentialsError::Transient { .. })
    }
}

/// One step of the sign-in loop. `mfa_code` with `challenge_id` answers a challenge; `mfa_code` without it
/// is sent along with the credentials (Mesh's "re-POST the same credentials plus mfaCode" style).
pub struct SignIn<'a> {
    pub username: &'a str,
    pub password: &'a SecretString,
    pub scope: Scope,
    pub challenge_id: Option<&'a str>,
    pub mfa_code: Option<&'a SecretString>,
}

impl fmt::Debug for SignIn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignIn")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("scope", &self.scope)
            .field("challenge_id", &self.challenge_id)
            .field("mfa_code", &self.mfa_code.map(|_| "[redacted]"))
            .finish()
    }
}

/// The integration wants a second factor before it opens a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaChallenge {
    pub challenge_id: String,
    /// Mesh `MfaType` (`totp`, `email`, `phone`, …) as the integration names it.
    pub mfa_type: String,
    pub expires_at: Option<OffsetDateTime>,
}

/// A signed-in session. It expires and cannot be refreshed: at expiry the end user signs in again.
pub struct Session {
    pub token: SecretString,
    /// Request sent-at + `expiresInSeconds` (or the catalog's `default_access_ttl_secs`).
    pub expires_at: OffsetDateTime,
    pub expires_in_defaulted: bool,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("expires_in_defaulted", &self.expires_in_defaulted)
            .field("account_id", &self.account_id)
            .field("account_name", &self.account_name)
            .finish()
    }
}

#[derive(Debug)]
pub enum SignInOutcome {
    MfaRequired(MfaChallenge),
    Succeeded(Session),
}

/// Talks the credentials protocol to an integration, within [`HttpLimits`].
#[derive(Debug, Clone)]
pub struct CredentialsClient {
    http: reqwest::Client,
    limits: HttpLimits,
    clock: Arc<dyn Clock>,
}

fn fetch_error(e: FetchError) -> CredentialsError {
    match e {
        FetchError::TooLarge { .. } => CredentialsError::Protocol(e.describe()),
        FetchError::TimedOut | FetchError::Connection(_) => {
            CredentialsError::Transient { retry_after: None, reason: e.describe() }
        }
    }
}

fn require_credentials(integration: &Integration) -> Result<(), CredentialsError> {
    if integration.auth != AuthScheme::Credentials {
        return Err(CredentialsError::Config(format!(
            "integration {} signs in with {}, not username and password",
            integration.integration_type,
            integration.auth.as_str()
        )));
    }
    Ok(())
}

fn classify_error(response: &RawResponse) -> CredentialsError {
    let status = response.status;
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return CredentialsError::Transient {
            retry_after: response.retry_after(),
            reason: format!("sign-in endpoint answered HTTP {}", status.as_u16()),
        };
    }
    let body = match response.json_object() {
        Ok(body) => body,
        Err(what) => return CredentialsError::Protocol(format!("sign-in endpoint answered {what}")),
    };
    let error = body.get("error").and_then(Value::as_str).map(sanitize);
    let message = body.get("message").and_then(Value::as_str).map(sanitize);
    match error.as_deref() {
        Some("invalid_credentials") => CredentialsError::InvalidCredentials,
        Some("invalid_mfa_code") => CredentialsError::InvalidMfaCode,
        Some("challenge_expired") => CredentialsError::ChallengeExpired,
        Some("session_expired") => CredentialsError::SessionExpired,
        Some(other) => CredentialsError::Rejected { status: status.as_u16(), error: other.to_owned(), message },
        None if status == StatusCode::UNAUTHORIZED => CredentialsError::InvalidCredentials,
        None => CredentialsError::Protocol(format!(
            "sign-in endpoint answered HTTP {} without an error code",
            status.as_u16()
        )),
    }
}

fn string_field(body: &Map<String, Value>, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn seconds(body: &Map<String, Value>, key: &str) -> Result<Option<u64>, CredentialsError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .map(Some)
            .ok_or_else(|| CredentialsError::Protocol(format!("{key} is not a non-negative number of seconds"))),
    }
}

fn add_secs(at: OffsetDateTime, secs: u64) -> OffsetDateTime {
    at + time::Duration::seconds(i64::try_from(secs.min(10 * 365 * 24 * 3600)).unwrap_or(0))
}

impl CredentialsClient {
    pub fn new(clock: Arc<dyn Clock>) -> Result<Self, CredentialsError> {
        Self::with_limits(clock, HttpLimits::default())
    }

    pub fn with_limits(clock: Arc<dyn Clock>, limits: HttpLimits) -> Result<Self, CredentialsError> {
        let http = http::build_client(&limits).map_err(CredentialsError::Config)?;
        Ok(Self { http, limits, clock })
    }

    /// One step of the loop: answers `MfaRequired` (ask the user, call again with `challenge_id` and
    /// `mfa_code`) or `Succeeded` with a session.
    pub async fn sign_in(
        &self,
        integration: &Integration,
        step: &SignIn<'_>,
    ) -> Result<SignInOutcome, CredentialsError> {
        require_credentials(integration)?;
        let url = integration.endpoints.sign_in_url.clone().ok_or_else(|| {
            CredentialsError::Config(format!("integration {} has no sign_in_url", integration.integration_type))
        })?;
        let mut body = json!({
            "username": step.username,
            "password": step.password.expose_secret(),
            "scope": step.scope.as_str(),
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(challenge_id) = step.challenge_id {
                map.insert("challengeId".to_owned(), Value::from(challenge_id));
            }
            if let Some(code) = step.mfa_code {
                map.insert("mfaCode".to_owned(), Value::from(code.expose_secret()));
            }
        }
        let request = self.http.post(url).header(ACCEPT, "application/json").json(&body);
        let sent_at = self.clock.now();
        let response = http::send(&self.limits, request).await.map_err(fetch_error)?;
        tracing::debug!(
            integration = %integration.integration_type,
            status = response.status.as_u16(),
            "sign-in endpoint answered"
        );
        if !response.status.is_success() {
            return Err(classify_error(&response));
        }
        let body = response
            .json_object()
            .map_err(|what| CredentialsError::Protocol(format!("sign-in endpoint answered {what}")))?;
        match body.get("status").and_then(Value::as_str) {
            Some("mfaRequired") => {
                let challenge_id = string_field(&body, "challengeId")
                    .ok_or_else(|| CredentialsError::Protocol("mfaRequired without a challengeId".to_owned()))?;
                let mfa_type = string_field(&body, "mfaType").unwrap_or_else(|| "totp".to_owned());
                let expires_at = seconds(&body, "challengeExpiresInSeconds")?.map(|s| add_secs(sent_at, s));
                Ok(SignInOutcome::MfaRequired(MfaChallenge { challenge_id, mfa_type, expires_at }))
            }
            Some("succeeded") => {
                let token = string_field(&body, "sessionToken")
                    .ok_or_else(|| CredentialsError::Protocol("sign-in succeeded without a sessionToken".to_owned()))?;
                let expires_in = seconds(&body, "expiresInSeconds")?;
                Ok(SignInOutcome::Succeeded(Session {
                    token: SecretString::from(token),
                    expires_at: add_secs(sent_at, expires_in.unwrap_or(integration.timing.default_access_ttl_secs)),
                    expires_in_defaulted: expires_in.is_none(),
                    account_id: string_field(&body, "accountId"),
                    account_name: string_field(&body, "accountName"),
                }))
            }
            Some("failed") => Err(classify_error(&response)),
            Some(other) => Err(CredentialsError::Protocol(format!("unknown sign-in status {:?}", sanitize(other)))),
            None => Err(CredentialsError::Protocol("sign-in answer has no status".to_owned())),
        }
    }

    /// Ends a session upstream. `Ok(false)` when the integration has no sign-out endpoint.
    pub async fn sign_out(&self, integration: &Integration, session: &SecretString) -> Result<bool, CredentialsError> {
        require_credentials(integration)?;
        let Some(url) = integration.endpoints.revoke_url.clone() else { return Ok(false) };
        let request = self.http.post(url).header(ACCEPT, "application/json").bearer_auth(session.expose_secret());
        let response = http::send(&self.limits, request).await.map_err(fetch_error)?;
        if response.status.is_success() {
            return Ok(true);
        }
        match classify_error(&response) {
            // Ending an already-ended session is done.
            CredentialsError::SessionExpired => Ok(true),
            other => Err(other),
        }
    }
}
