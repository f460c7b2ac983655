//! Link: the hosted page that Mesh's web SDK (or linkvault's own `linkvault-link.js`) opens from a link token,
//! its JSON API under `/link/api/…` (sign-in, return users, the transfer flow), the OAuth callback, the embedded static assets, and the sandbox demo.
//!
//! A link token is `base64(<public-url>/link/broker-connect?auth_code=…)`. The page exchanges the auth_code
//! once for a session token that lives only in the page's memory and travels as `Authorization: Bearer`.
//! The database keeps SHA-256 digests of both, never the values.

mod api;
mod assets;
mod demo;

pub use demo::SANDBOX_DEMO_CLIENT_META;
mod headers;

pub use headers::valid_origin;
pub(crate) mod linktoken;
mod oauth;
mod payload;
mod purge;
mod session;
mod transfer;

use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use base64::Engine as _;
use ring::rand::SecureRandom as _;

use crate::AppState;
use crate::api_result::ApiError;

pub use purge::{LinkPurger, PURGE_AFTER};

/// At most this many unexpired OAuth sign-ins wait for their callback in one Link session; starting another
/// drops the oldest (its callback then finds no sign-in), so a page can always start afresh.
pub const MAX_PENDING_OAUTH: u32 = 5;

/// Where Link is served and how long its tokens live.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The origin (and optional path prefix) link tokens point at, without a trailing slash.
    pub public_url: String,
    /// Sandbox mode: `localhost`/`127.0.0.1` origins may embed Link, and the demo at `/demo` is served.
    pub sandbox: bool,
    /// A link token must be opened within this time (Mesh: 10 minutes).
    pub link_token_ttl: Duration,
    /// How long a started Link session stays usable.
    pub session_ttl: Duration,
    /// How long an OAuth sign-in may take between start and callback.
    pub oauth_ttl: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self::new("http://127.0.0.1:8080", false)
    }
}

impl LinkConfig {
    pub fn new(public_url: impl Into<String>, sandbox: bool) -> Self {
        Self {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            sandbox,
            link_token_ttl: Duration::from_secs(10 * 60),
            session_ttl: Duration::from_secs(30 * 60),
            oauth_ttl: Duration::from_secs(10 * 60),
        }
    }

    /// The origin part of the public URL (`scheme://host[:port]`).
    pub fn public_origin(&self) -> &str {
        let after_scheme = self.public_url.find("://").map_or(0, |i| i + 3);
        match self.public_url[after_scheme..].find('/') {
            Some(i) => &self.public_url[..after_scheme + i],
            None => &self.public_url,
        }
    }

    pub(crate) fn oauth_redirect_uri(&self) -> String {
        format!("{}/link/oauth/callback", self.public_url)
    }
}

/// Link's routes: the page, its assets and API, the OAuth callback, and (sandbox only) the demo.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/link/broker-connect", get(assets::link_page))
        .route("/link/assets/{file}", get(assets::asset))
        .route("/link/sdk/linkvault-link.js", get(assets::client_sdk))
        .route("/link/api/session", post(api::start_session))
        .route("/link/api/return-tokens", post(api::return_tokens))
        .route("/link/api/credentials", post(api::credentials))
        .route("/link/api/oauth/start", post(oauth::start))
        .route("/link/api/oauth/result", post(oauth::result))
        .route("/link/oauth/begin", get(oauth::begin))
        .route("/link/oauth/callback", get(oauth::callback))
        .route("/link/api/transfer/configure", post(transfer::configure))
        .route("/link/api/transfer/preview", post(transfer::preview))
        .route("/link/api/transfer/execute", post(transfer::execute))
        .route("/link/api/transfer/status", post(transfer::status))
        .route("/demo", get(demo::page))
        .route("/demo/api/linktoken", post(demo::link_token))
        .layer(middleware::from_fn(headers::security_headers))
}

/// SHA-256 of a token: what the database stores instead of auth_codes, session tokens and OAuth states.
pub(crate) fn digest(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref().to_vec()
}

/// 256 random bits, base64url without padding (43 characters).
pub(crate) fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| ApiError::internal(&"the system RNG failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A `std::time::Duration` as a `time::Duration` (saturating).
pub(crate) fn span(d: Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_origin_drops_the_path() {
        assert_eq!(LinkConfig::new("https://a.example/prefix/", false).public_origin(), "https://a.example");
        assert_eq!(LinkConfig::new("http://127.0.0.1:9", true).public_origin(), "http://127.0.0.1:9");
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (random_token().ok(), random_token().ok());
        assert_eq!(a.as_ref().map(String::len), Some(43));
        assert_ne!(a, b);
        assert_eq!(digest("x").len(), 32);
    }
}
