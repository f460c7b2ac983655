//! The built-in sandbox exchanges served by `linkvault serve --sandbox` under `/sandbox/…`: a Coinbase-like
//! OAuth 2.0 server (rotating single-use refresh tokens, reuse revokes the grant), an Uphold-like one
//! (non-rotating refresh tokens), a Binance-like username/password server with MFA and expiring sessions, each
//! with an accounts/holdings/balances/transfers API, plus an admin API for fault injection and refresh-token
//! presentation counts. All state is in memory and lost at restart.
//!
//! Logins: username `Mesh` (or `Mesh2`, `Mesh3`, `Mesh4`, `MeshBTC`, …), password `Pass123`, MFA `123456`.
//! The admin API has no authentication: the sandbox is a development and test mode.

mod admin;
mod binance;
mod binance_spot;
mod coinbase_v2;
mod ledger;
mod oauth_server;
mod uphold_v0;
mod util;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use linkvault_domain::{Clock, SystemClock};

pub use admin::{FaultKind, FaultSpec, FaultTarget};

/// Client id accepted by the sandbox OAuth servers (the catalog's `SANDBOX_CLIENT_ID` is the same string).
pub const DEFAULT_CLIENT_ID: &str = "linkvault-sandbox";
/// Client secret accepted by the sandbox OAuth servers (the catalog's `SANDBOX_CLIENT_SECRET`).
pub const DEFAULT_CLIENT_SECRET: &str = "linkvault-sandbox-secret";
/// The sandbox logins.
pub const PASSWORD: &str = "Pass123";
pub const MFA_CODE: &str = "123456";

pub const ENV_ACCESS_TTL: &str = "LINKVAULT_SANDBOX_ACCESS_TTL_SECS";
pub const ENV_REFRESH_TTL: &str = "LINKVAULT_SANDBOX_REFRESH_TTL_SECS";
pub const ENV_SESSION_TTL: &str = "LINKVAULT_SANDBOX_SESSION_TTL_SECS";

/// Lifetimes, client registration and the public URL of the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where the router is reachable from outside, e.g. `http://127.0.0.1:8080/sandbox` (no trailing slash).
    pub public_base_url: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub session_ttl: Duration,
    /// Authorization codes and MFA challenges live this long.
    pub code_ttl: Duration,
    pub client_id: String,
    pub client_secret: String,
    pub clock: Arc<dyn Clock>,
}

/// A sandbox lifetime variable that is set but unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct SandboxConfigError {
    pub variable: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl SandboxConfig {
    /// Defaults: access tokens 1 hour, refresh tokens 30 days, Binance sessions 24 hours, codes 2 minutes.
    pub fn new(public_base_url: impl Into<String>) -> Self {
        Self {
            public_base_url: public_base_url.into().trim_end_matches('/').to_owned(),
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            session_ttl: Duration::from_secs(24 * 3600),
            code_ttl: Duration::from_secs(120),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Defaults overridden by `LINKVAULT_SANDBOX_ACCESS_TTL_SECS`, `LINKVAULT_SANDBOX_REFRESH_TTL_SECS` and
    /// `LINKVAULT_SANDBOX_SESSION_TTL_SECS` (whole seconds, at least 1).
    pub fn from_env(public_base_url: impl Into<String>) -> Result<Self, SandboxConfigError> {
        Self::from_lookup(public_base_url, |name| std::env::var(name).ok())
    }

    /// As [`SandboxConfig::from_env`], reading variables through `lookup` (for tests).
    pub fn from_lookup(
        public_base_url: impl Into<String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SandboxConfigError> {
        let mut config = Self::new(public_base_url);
        for (variable, slot) in [
            (ENV_ACCESS_TTL, &mut config.access_ttl),
            (ENV_REFRESH_TTL, &mut config.refresh_ttl),
            (ENV_SESSION_TTL, &mut config.session_ttl),
        ] {
            let Some(value) = lookup(variable) else { continue };
            let secs = value.trim().parse::<u64>().map_err(|_| SandboxConfigError {
                variable,
                value: value.clone(),
                reason: "must be a whole number of seconds",
            })?;
            if secs == 0 || secs > 10 * 365 * 24 * 3600 {
                return Err(SandboxConfigError { variable, value, reason: "must be between 1 second and 10 years" });
            }
            *slot = Duration::from_secs(secs);
        }
        Ok(config)
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// Shared in-memory state of all sandbox exchanges.
#[derive(Debug)]
pub(crate) struct Sandbox {
    pub config: SandboxConfig,
    pub inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub oauth: HashMap<&'static str, oauth_server::ExchangeState>,
    pub binance: binance::BinanceState,
    pub binance_spot: binance_spot::SpotState,
    pub ledger: ledger::Ledger,
    pub faults: admin::Faults,
    pub counts: admin::RequestCounts,
    pub uphold: uphold_v0::UpholdState,
}

impl Sandbox {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) type Shared = Arc<Sandbox>;

/// The sandbox router, to be nested at `/sandbox` of the main server (`Router::nest("/sandbox", router(cfg))`).
///
/// Routes (relative to `/sandbox`):
/// - `GET /` — index (JSON)
/// - `/coinbase/…` and `/uphold/…`: `GET|POST /oauth/authorize` (consent page with sign-in form),
///   `POST /oauth/token`, `POST /oauth/revoke`, `GET /.well-known/oauth-authorization-server`,
///   `GET /api/accounts|holdings|balances|transfers`, `POST /api/transfers` (write scope; an `idem` key makes
///   a repeated send return the first transfer), `POST /api/transfers/quote` (write scope: balance, network
///   and fee check without sending)
/// - `/coinbase/v2/…`: the Coinbase App API v2 in Coinbase's wire format (accounts, transactions with `idem` and
///   two-factor `402`, addresses, prices and exchange rates; see `coinbase_v2`)
/// - `/uphold/v0/…`: Uphold's REST API in its own paths and JSON (cards, card addresses, ticker, assets,
///   transactions created as quotes and committed once, the user's transactions)
/// - `/binance/…`: `POST /auth/sign-in`, `POST /auth/sign-out` (username/password sessions), and the Binance Spot
///   API in Binance's format (`/api/v3/…`, `/sapi/v1/…`, signed with an API key issued by
///   `POST /admin/binance/api-keys`, or with a live session token as key and secret)
/// - `/admin/…`: `POST|GET|DELETE /admin/faults`, `GET /admin/requests`, `GET /admin/refresh-tokens`,
///   `POST /admin/refresh-tokens/reset`, `POST /admin/binance/expire-sessions`,
///   `POST /admin/{exchange}/expire-access-tokens`, `POST|DELETE /admin/binance/api-keys[/{apiKey}]`,
///   `POST /admin/binance/clock-skew`
pub fn router(config: SandboxConfig) -> Router {
    let shared: Shared = Arc::new(Sandbox { config, inner: Mutex::new(Inner::default()) });
    Router::new()
        .route("/", get(index))
        .nest("/coinbase", oauth_server::router(oauth_server::COINBASE).merge(coinbase_v2::router()))
        .nest("/uphold", oauth_server::router(oauth_server::UPHOLD).merge(uphold_v0::router()))
        .nest("/binance", binance::router().merge(binance_spot::router()))
        .nest("/admin", admin::router().merge(binance_spot::admin_router()))
        .with_state(shared)
}

async fn index(axum::extract::State(sandbox): axum::extract::State<Shared>) -> axum::Json<serde_json::Value> {
    let base = &sandbox.config.public_base_url;
    axum::Json(serde_json::json!({
        "exchanges": [
            {"name": "coinbase", "auth": "oauth2", "rotatingRefreshTokens": true,
             "metadata": format!("{base}/coinbase/.well-known/oauth-authorization-server")},
            {"name": "uphold", "auth": "oauth2", "rotatingRefreshTokens": false,
             "metadata": format!("{base}/uphold/.well-known/oauth-authorization-server")},
            {"name": "binance", "auth": "credentials", "signIn": format!("{base}/binance/auth/sign-in")},
            {"name": "binanceSpot", "auth": "apiKey", "api": format!("{base}/binance/api/v3/account"),
             "issueApiKey": format!("{base}/admin/binance/api-keys")},
        ],
        "logins": {"username": "Mesh", "password": PASSWORD, "mfaCode": MFA_CODE},
        "lifetimes": {
            "accessTokenSecs": sandbox.config.access_ttl.as_secs(),
            "refreshTokenSecs": sandbox.config.refresh_ttl.as_secs(),
            "sessionSecs": sandbox.config.session_ttl.as_secs(),
        },
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    #[test]
    fn config_from_lookup() {
        let config = SandboxConfig::from_lookup("http://x/sandbox/", |name| match name {
            ENV_ACCESS_TTL => Some("5".to_owned()),
            ENV_SESSION_TTL => Some(" 7 ".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.public_base_url, "http://x/sandbox");
        assert_eq!(config.access_ttl, Duration::from_secs(5));
        assert_eq!(config.refresh_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(config.session_ttl, Duration::from_secs(7));
        let err = SandboxConfig::from_lookup("http://x", |name| (name == ENV_REFRESH_TTL).then(|| "soon".to_owned()))
            .unwrap_err();
        assert_eq!(err.to_string(), "LINKVAULT_SANDBOX_REFRESH_TTL_SECS=\"soon\": must be a whole number of seconds");
        assert!(SandboxConfig::from_lookup("http://x", |_| Some("0".to_owned())).is_err());
    }
}
