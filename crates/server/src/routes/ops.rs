//! Operational endpoints: health, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;

use crate::AppState;

const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

/// Alive: the process serves HTTP. Touches nothing else (for liveness probes, and the benchmarks' baseline).
pub(crate) async fn livez() -> &'static str {
    "ok"
}

/// Healthy when the database answers.
pub(crate) async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.vault.ping().await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "status": "ok", "database": state.vault.backend() }))),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable", "database": state.vault.backend() })),
            )
        }
    }
}

/// The metrics in the OpenMetrics text format; with a metrics token configured, only for `Authorization: Bearer <token>` (else 401
/// with an empty body, like `/api/v1` without credentials).
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        if !token.admits(headers.get(header::AUTHORIZATION)) {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")]).into_response();
        }
    }
    let connections = state.metrics.connections(&state.vault).await;
    let collectors: Vec<Box<dyn Collector>> =
        vec![Box::new(state.engine.metrics()), Box::new(state.webhooks.metrics())];
    let body = state.metrics.render(connections, collectors);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

pub(crate) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
