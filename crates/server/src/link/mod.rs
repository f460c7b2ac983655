//! Link: the hosted page that Mesh's web SDK (or linkvault's own `linkvault-link.js`) opens from a link token,
//! its JSON API under `/link/api/…` (sign-in, return users, the transfer flow), the OAuth callback, the embedded static assets, and the sandbox demo.
//!
//! A link token is `base64(<public-url>/link/broker-connect?auth_code=…)`. The page exchanges the auth_code
//! once for a session token that lives only in the page's memory and travels as `Authorization: Bearer`.
//! The vault's Link bookkeeping (`linkvault_vault::link`) draws both and keeps only their digests; these
//! handlers map requests and answers.

mod api;
mod assets;
mod demo;
mod headers;
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

use crate::AppState;

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
}
