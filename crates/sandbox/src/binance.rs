//! The Binance-like sandbox: username/password sign-in, an MFA challenge (code `123456`), sessions that expire
//! after the session TTL and cannot be refreshed, sign-out, and the account API for the session's user.
//! Session tokens and challenge ids are stored only as SHA-256 hashes.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::admin::{FaultTarget, apply_fault};
use crate::util::{after, bearer, constant_time_eq, json_error, random_token, secs_until, server_failure, token_hash};
use crate::{MFA_CODE, PASSWORD, Shared};

const EXCHANGE: &str = "binance";
/// Wrong codes allowed per challenge before it is dropped.
const MAX_MFA_ATTEMPTS: u32 = 5;

#[derive(Debug)]
struct Challenge {
    username: String,
    write: bool,
    expires_at: OffsetDateTime,
    attempts: u32,
}

#[derive(Debug)]
struct SessionEntry {
    username: String,
    write: bool,
    expires_at: OffsetDateTime,
}

#[derive(Debug, Default)]
pub struct BinanceState {
    challenges: HashMap<String, Challenge>,
    sessions: HashMap<String, SessionEntry>,
}

impl BinanceState {
    /// Admin: every live session expires now. Returns how many were live.
    pub fn expire_all(&mut self, now: OffsetDateTime) -> usize {
        let mut count = 0;
        for session in self.sessions.values_mut() {
            if session.expires_at > now {
                session.expires_at = now;
                count += 1;
            }
        }
        count
    }

    /// The Binance Spot API's view of a session token used as an API key: `Ok((username, write))` while the
    /// session lives, `Err(())` when it is unknown or expired.
    pub fn session_key(&self, token: &str, now: OffsetDateTime) -> Result<(String, bool), ()> {
        match self.sessions.get(&token_hash(token)) {
            Some(s) if s.expires_at > now => Ok((s.username.clone(), s.write)),
            _ => Err(()),
        }
    }

    fn purge(&mut self, now: OffsetDateTime) {
        self.challenges.retain(|_, c| c.expires_at > now);
        self.sessions.retain(|_, s| s.expires_at + time::Duration::hours(1) > now);
    }
}

pub fn router() -> Router<Shared> {
    Router::new().route("/auth/sign-in", post(sign_in)).route("/auth/sign-out", post(sign_out))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignInBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    challenge_id: Option<String>,
    #[serde(default)]
    mfa_code: Option<String>,
}

fn open_session(sandbox: &Shared, username: String, write: bool, now: OffsetDateTime) -> Response {
    let Some(token) = random_token("bnst_") else { return server_failure() };
    let expires_at = after(now, sandbox.config.session_ttl);
    sandbox
        .lock()
        .binance
        .sessions
        .insert(token_hash(&token), SessionEntry { username: username.clone(), write, expires_at });
    Json(json!({
        "status": "succeeded",
        "sessionToken": token,
        "expiresInSeconds": secs_until(now, expires_at),
        "accountId": format!("{EXCHANGE}-{username}-main"),
        "accountName": format!("{username}'s Binance account"),
    }))
    .into_response()
}

async fn sign_in(
    State(sandbox): State<Shared>,
    body: Result<Json<SignInBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.body_text()),
    };
    if let Some(response) = apply_fault(&sandbox, EXCHANGE, FaultTarget::Token).await {
        return response;
    }
    let now = sandbox.config.clock.now();
    let wrong_code = || json_error(StatusCode::UNAUTHORIZED, "invalid_mfa_code", "the MFA code is wrong");

    // Answering a challenge.
    if let Some(challenge_id) = &body.challenge_id {
        let Some(code) = body.mfa_code.as_deref() else {
            return json_error(StatusCode::BAD_REQUEST, "invalid_request", "mfaCode is required with challengeId");
        };
        let key = token_hash(challenge_id);
        let mut inner = sandbox.lock();
        inner.binance.purge(now);
        let Some(challenge) = inner.binance.challenges.get_mut(&key) else {
            return json_error(
                StatusCode::BAD_REQUEST,
                "challenge_expired",
                "unknown or expired challenge; sign in again",
            );
        };
        if !constant_time_eq(code, MFA_CODE) {
            challenge.attempts += 1;
            if challenge.attempts >= MAX_MFA_ATTEMPTS {
                inner.binance.challenges.remove(&key);
            }
            return wrong_code();
        }
        let Some(challenge) = inner.binance.challenges.remove(&key) else { return server_failure() };
        drop(inner);
        return open_session(&sandbox, challenge.username, challenge.write, now);
    }

    let write = match body.scope.as_deref() {
        None | Some("read") => false,
        Some("write") => true,
        Some(_) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", "scope must be read or write"),
    };
    if !(crate::ledger::is_known_user(&body.username) && constant_time_eq(&body.password, PASSWORD)) {
        return json_error(StatusCode::UNAUTHORIZED, "invalid_credentials", "the username or password is incorrect");
    }
    // Credentials plus the code in one request (Mesh's re-POST style).
    if let Some(code) = body.mfa_code.as_deref() {
        if !constant_time_eq(code, MFA_CODE) {
            return wrong_code();
        }
        return open_session(&sandbox, body.username, write, now);
    }
    let Some(challenge_id) = random_token("bnch_") else { return server_failure() };
    let expires_at = after(now, sandbox.config.code_ttl);
    {
        let mut inner = sandbox.lock();
        inner.binance.purge(now);
        inner
            .binance
            .challenges
            .insert(token_hash(&challenge_id), Challenge { username: body.username, write, expires_at, attempts: 0 });
    }
    Json(json!({
        "status": "mfaRequired",
        "mfaType": "totp",
        "challengeId": challenge_id,
        "challengeExpiresInSeconds": secs_until(now, expires_at),
    }))
    .into_response()
}

fn session_expired() -> Response {
    json_error(StatusCode::UNAUTHORIZED, "session_expired", "the session is expired or unknown; sign in again")
}

async fn sign_out(State(sandbox): State<Shared>, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else { return session_expired() };
    match sandbox.lock().binance.sessions.remove(&token_hash(token)) {
        Some(_) => Json(json!({"status": "signedOut"})).into_response(),
        None => session_expired(),
    }
}
