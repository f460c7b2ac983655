//! Operational endpoints: health, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;

use crate::AppState;
use serde::Serialize;
use utoipa::ToSchema;

/// Alive: the process serves HTTP. Touches nothing else (for liveness probes, and the benchmarks' baseline).
#[utoipa::path(
    get,
    path = "/livez",
    operation_id = "livez",
    summary = "Liveness: the process answers (no database, no authentication)",
    responses((status = 200, description = "ok", content_type = "text/plain; charset=utf-8", body = String, example = "ok"))
)]
pub(crate) async fn livez() -> &'static str {
    "ok"
}

/// `/healthz`'s answer.
// Fields in JSON-name order (see `routes::wire`).
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    database: Database,
    status: HealthStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
enum HealthStatus {
    Ok,
    Unavailable,
}

/// The storage backend in use.
// By the name the store gives it (`Store::backend`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
enum Database {
    Sqlite,
    Postgres,
}

impl Database {
    /// The store has these two backends; `Store::backend` names them so.
    fn of(backend: &str) -> Self {
        match backend {
            "postgres" => Self::Postgres,
            _ => Self::Sqlite,
        }
    }
}

/// Healthy when the database answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    summary = "Healthy when the database answers",
    responses(
        (status = 200, description = "ok", body = Health),
        (status = 503, description = "database unavailable", body = Health),
    )
)]
pub(crate) async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let database = Database::of(state.vault.backend());
    match state.vault.ping().await {
        Ok(()) => (StatusCode::OK, Json(Health { database, status: HealthStatus::Ok })),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { database, status: HealthStatus::Unavailable }))
        }
    }
}

/// The metrics in the OpenMetrics text format; with a metrics token configured, only for `Authorization: Bearer <token>` (else 401
/// with an empty body, like `/api/v1` without credentials).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    summary = "Metrics in the OpenMetrics text format (prometheus-client)",
    responses(
        (status = 200, description = "metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body = String),
        (status = 401, description = "a metrics token is configured (serve --metrics-token) and the request did not \
            bear it; empty body"),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        if !token.admits(headers.get(header::AUTHORIZATION)) {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")]).into_response();
        }
    }
    let connections = state.metrics.connections(&state.vault).await;
    let collectors: Vec<Box<dyn Collector>> =
        vec![Box::new(state.engine.metrics()), Box::new(state.webhooks.metrics())];
    let body = state.metrics.render(connections, state.vault.audit_append_failures(), collectors);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

/// This document, generated from the handlers (`routes::openapi`) and served as the same bytes every time.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi::document_bytes())
}

/// Representative answers, for the schema test in `routes::openapi`.
#[cfg(test)]
pub(crate) fn samples() -> Vec<(&'static str, String)> {
    use crate::routes::wire::sample;
    vec![
        sample("Health", &Health { database: Database::of("sqlite"), status: HealthStatus::Ok }),
        sample("Health", &Health { database: Database::of("postgres"), status: HealthStatus::Unavailable }),
    ]
}
