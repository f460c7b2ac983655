//! The HTTP face of linkvault: Mesh-compatible `/api/v1` endpoints, the ApiResult envelope, client
//! authentication, and the operational endpoints (`/healthz`, `/metrics`, `/openapi.json`).

pub mod api_result;
mod auth;
mod extract;
mod handout;
pub mod limits;
pub mod link;
mod metrics;
mod routes;
pub mod serve;
mod timefmt;
pub mod transfer_follower;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use linkvault_integrations::api::ExchangeApi;
use linkvault_integrations::credentials::CredentialsClient;
use linkvault_integrations::oauth::OAuthClient;
use linkvault_integrations::{Catalog, HttpLimits};
use linkvault_refresh::{EngineConfig, RefreshEngine};
use linkvault_storage::DynStore;
use linkvault_vault::Vault;
use linkvault_webhooks::{DeliveryWorker, WorkerConfig};

pub use api_result::{ApiError, ApiStatus, ErrorType};
pub use limits::{RateLimitConfig, RateLimits};
pub use link::{LinkConfig, LinkPurger};
pub use metrics::{CONNECTIONS_GAUGE_TTL, Metrics, MetricsToken};
pub use routes::transfers::{PREVIEW_EXPIRES_IN, upstream_idempotency_key};
pub use serve::{ServerLimits, serve};
pub use transfer_follower::{FollowerConfig, TransferFollower};

/// Largest request body accepted on any endpoint.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared state of every handler: one allocation behind an `Arc`, so the per-request clones the extractors and
/// middleware make are a reference-count increment (cloning every field cost several percent of a request).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug, Clone)]
pub struct Services {
    pub vault: Arc<Vault>,
    pub catalog: Arc<Catalog>,
    pub metrics: Arc<Metrics>,
    /// Talks OAuth 2.0 to integrations (revocation on delete; refresh lives in the engine).
    pub oauth: OAuthClient,
    /// Signs end users in to credentials integrations (`/authenticate`).
    pub credentials: CredentialsClient,
    /// Calls integrations' account APIs (holdings, balances, transfers) with a connection's token.
    pub exchange: ExchangeApi,
    /// The hosted Link page: public URL, sandbox mode, lifetimes.
    pub link: Arc<LinkConfig>,
    /// The token lifecycle engine: refreshes on demand for requests; `serve` also runs its scheduler.
    pub engine: RefreshEngine,
    /// Delivers outbox events to clients' webhook endpoints; `serve` runs it.
    pub webhooks: DeliveryWorker,
    /// Request rate limits (none unless set with [`AppState::with_rate_limits`]; `serve` sets its defaults).
    pub limits: Arc<RateLimits>,
    /// When set, `/metrics` answers only requests bearing this token.
    pub metrics_token: Option<MetricsToken>,
}

/// The HTTP clients could not be built (TLS roots unavailable).
#[derive(Debug, thiserror::Error)]
#[error("cannot create the integration HTTP clients: {0}")]
pub struct StateError(String);

impl AppState {
    /// `raw` as an integration of the catalog (`integrationNotFound` otherwise): the request's `type` where no
    /// connection is used (sign-ins, imports, refreshes); token-backed calls check it inside `use_connection`.
    pub(crate) fn known_integration(
        &self,
        raw: &str,
    ) -> Result<linkvault_domain::IntegrationType, api_result::ApiError> {
        Ok(linkvault_vault::known_integration(&self.catalog, raw)?.integration_type.clone())
    }

    /// The services over `vault`. `store` is the store the vault was opened on, handed to the refresh engine
    /// only (start-up wiring): the server itself reads and writes through the vault.
    pub fn new(vault: Arc<Vault>, store: DynStore, catalog: Arc<Catalog>) -> Result<Self, StateError> {
        Self::with_tuning(vault, store, catalog, HttpLimits::default(), EngineConfig::new())
    }

    /// As [`AppState::new`], with the bounds of every upstream HTTP call (`limits`) and the refresh engine's
    /// tuning set by the operator.
    pub fn with_tuning(
        vault: Arc<Vault>,
        store: DynStore,
        catalog: Arc<Catalog>,
        limits: HttpLimits,
        engine: EngineConfig,
    ) -> Result<Self, StateError> {
        let clock = Arc::clone(vault.clock());
        let oauth = OAuthClient::with_limits(Arc::clone(&clock), limits).map_err(|e| StateError(e.to_string()))?;
        let credentials = CredentialsClient::with_limits(clock, limits).map_err(|e| StateError(e.to_string()))?;
        let exchange = ExchangeApi::new(limits).map_err(|e| StateError(e.to_string()))?;
        let engine = RefreshEngine::new(
            Arc::clone(&vault),
            store,
            Arc::clone(&catalog),
            oauth.clone(),
            Arc::clone(vault.clock()),
            engine,
        );
        let webhooks = DeliveryWorker::new(Arc::clone(&vault), WorkerConfig::default()).map_err(StateError)?;
        let limits = Arc::new(RateLimits::new(RateLimitConfig::unlimited(), Arc::clone(vault.clock())));
        Ok(Self(Arc::new(Services {
            vault,
            catalog,
            metrics: Arc::new(Metrics::default()),
            oauth,
            credentials,
            exchange,
            link: Arc::default(),
            engine,
            webhooks,
            limits,
            metrics_token: None,
        })))
    }

    /// Sets the request rate limits (on the vault's clock).
    pub fn with_rate_limits(mut self, config: RateLimitConfig) -> Self {
        let limits = Arc::new(RateLimits::new(config, Arc::clone(self.vault.clock())));
        Arc::make_mut(&mut self.0).limits = limits;
        self
    }

    /// Requires `Authorization: Bearer <token>` on `/metrics`.
    pub fn with_metrics_token(mut self, token: Option<MetricsToken>) -> Self {
        Arc::make_mut(&mut self.0).metrics_token = token;
        self
    }

    /// Sets the webhook deliverer's tuning (retention of finished events and the rest); `serve` sets it.
    pub fn with_webhooks(mut self, config: WorkerConfig) -> Result<Self, StateError> {
        let webhooks = DeliveryWorker::new(Arc::clone(&self.vault), config).map_err(StateError)?;
        Arc::make_mut(&mut self.0).webhooks = webhooks;
        Ok(self)
    }

    /// Sets where Link is served from and whether sandbox mode is on (the default is `LinkConfig::default()`).
    pub fn with_link(mut self, link: LinkConfig) -> Self {
        Arc::make_mut(&mut self.0).link = Arc::new(link);
        self
    }
}

/// The complete router. `extra` is merged in before the common layers (e.g. the sandbox exchanges).
pub fn app(state: AppState, extra: Option<Router>) -> Router {
    // Every `/api/v1` handler authenticates the client through its `auth::Client` argument. Unknown endpoints
    // answer without authentication, as before any key is checked.
    let api = routes::api_router().route("/api/v1/{*rest}", axum::routing::any(routes::api_not_found));
    let link = link::router().layer(middleware::from_fn_with_state(state.clone(), limits::link_by_address));
    let mut router = Router::new().merge(api).merge(routes::ops_router()).merge(link).with_state(state.clone());
    if let Some(extra) = extra {
        router = router.merge(extra);
    }
    router
        .fallback(routes::not_found)
        .layer(middleware::from_fn_with_state(state, metrics::observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(api_result::panic_response))
}
