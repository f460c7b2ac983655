//! Operational endpoints: health, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::AppState;

const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

/// Alive: the process serves HTTP. Touches nothing else (for liveness probes, and the benchmarks' baseline).
pub(crate) async fn livez() -> &'static str {
    "ok"
}

/// Healthy when the database answers.
pub(crate) async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.vault.store().ping().await {
        Ok(()) => {
            (StatusCode::OK, Json(serde_json::json!({ "status": "ok", "database": state.vault.store().backend() })))
        }
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable", "database": state.vault.store().backend() })),
            )
        }
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let connections = state.vault.store().count_connections().await.ok();
    let mut body = state.metrics.render(connections);
    body.push_str(&state.engine.metrics().render());
    body.push_str(&state.webhooks.metrics().render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

pub(crate) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
