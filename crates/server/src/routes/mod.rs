//! Route table: which handler serves which path.

mod account;
pub(crate) mod authenticate;
pub(crate) mod destinations;
pub(crate) mod integrations;
pub(crate) mod openapi;
mod ops;
mod portfolio;
mod token_refresh;
pub(crate) mod token_use;
pub(crate) mod tokens;
pub(crate) mod transfer_configure;
pub(crate) mod transfer_info;
mod transfer_list;
pub(crate) mod transfers;
mod webhooks;
pub(crate) mod wire;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::AppState;
use crate::api_result::{ApiError, ApiStatus, ErrorType};

/// `/api/v1/...` routes (full paths: merged rather than nested, which saves a URI rewrite per request); all
/// require client authentication.
pub(crate) fn api_router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens/import", post(tokens::import))
        .route("/api/v1/tokens/{token_id}", get(tokens::status))
        .route("/api/v1/account", delete(account::remove))
        .route("/api/v1/integrations", get(integrations::list))
        .route("/api/v1/authenticationSchemes", get(integrations::schemes))
        .route("/api/v1/authenticate", post(authenticate::authenticate))
        .route("/api/v1/linktoken", post(crate::link::linktoken::create))
        .route("/api/v1/webhooks", post(webhooks::set).get(webhooks::get))
        .route("/api/v1/holdings/get", post(portfolio::holdings))
        .route("/api/v1/balance/get", post(portfolio::balance))
        .route("/api/v1/holdings/value", post(portfolio::value))
        .route("/api/v1/holdings/portfolio", get(portfolio::holdings_portfolio))
        .route("/api/v1/balance/portfolio", get(portfolio::balance_portfolio))
        .route("/api/v1/transfers/list", post(transfer_info::list))
        .route("/api/v1/transfers/managed/address/get", post(transfer_info::deposit_address))
        .route("/api/v1/transfers/managed/networks", get(transfer_info::networks))
        .route("/api/v1/transfers/managed/tokens", get(transfer_info::tokens))
        .route("/api/v1/transfers/managed/mesh", get(transfer_list::mesh))
        .route("/api/v1/transfers/managed/integrations", get(transfer_list::integrations))
        .route("/api/v1/token/refresh", post(token_refresh::refresh))
        .route("/api/v1/transfers/managed/configure", post(transfer_configure::configure))
        .route("/api/v1/transfers/managed/preview", post(transfers::preview))
        .route("/api/v1/transfers/managed/execute", post(transfers::execute))
}

pub(crate) fn ops_router() -> Router<AppState> {
    Router::new()
        .route("/livez", get(ops::livez))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
}

pub(crate) async fn api_not_found() -> ApiError {
    ApiError::new(ApiStatus::NotFound, ErrorType::EndpointNotFound, "no such endpoint; see /openapi.json")
}

pub(crate) async fn not_found() -> ApiError {
    api_not_found().await
}
