//! Route table: which handler serves which path.

mod account;
pub(crate) mod authenticate;
mod integrations;
mod ops;
mod portfolio;
mod token_refresh;
pub(crate) mod token_use;
pub(crate) mod tokens;
pub(crate) mod transfers;
mod user_check;
mod webhooks;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::AppState;
use crate::api_result::{ApiError, ApiStatus, ErrorType};

/// `/api/v1/...` routes; all require client authentication.
pub(crate) fn api_router() -> Router<AppState> {
    Router::new()
        .route("/tokens/import", post(tokens::import))
        .route("/tokens/{token_id}", get(tokens::status))
        .route("/account", delete(account::remove))
        .route("/integrations", get(integrations::list))
        .route("/authenticationSchemes", get(integrations::schemes))
        .route("/authenticate", post(authenticate::authenticate))
        .route("/linktoken", post(crate::link::linktoken::create))
        .route("/webhooks", post(webhooks::set).get(webhooks::get))
        .route("/holdings/get", post(portfolio::holdings))
        .route("/balance/get", post(portfolio::balance))
        .route("/token/refresh", post(token_refresh::refresh))
        .route("/transfers/managed/preview", post(transfers::preview))
        .route("/transfers/managed/execute", post(transfers::execute))
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
