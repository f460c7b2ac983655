//! Sandbox admin API for tests: fault injection per exchange (latency, 5xx, 429 with Retry-After, forced
//! `invalid_grant`, for the next N matching requests), refresh-token presentation counts, per-endpoint counts of
//! account-API requests and of transfers actually made (so tests can prove a refused call never got here, and
//! a retried send moved funds once), and forced expiry of Binance sessions and OAuth access tokens.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Shared;
use crate::util::{json_error, oauth_error};

/// Which requests a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum FaultTarget {
    /// Token endpoint (OAuth) or sign-in endpoint (Binance).
    #[default]
    Token,
    /// The accounts/holdings/balances/transfers API.
    Api,
    /// Either.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultKind {
    /// Sleep `latencyMs`, then answer normally.
    Latency,
    /// Answer `status` (default 503) with a JSON error body.
    ServerError,
    /// Answer 429 with `Retry-After: retryAfterSecs` (default 1).
    TooManyRequests,
    /// Answer 400 `invalid_grant` (token endpoint; 401 on the API).
    InvalidGrant,
}

/// `POST /sandbox/admin/faults` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    /// `coinbase`, `uphold` or `binance`.
    pub integration: String,
    pub kind: FaultKind,
    #[serde(default)]
    pub target: FaultTarget,
    /// How many matching requests the fault hits (default 1).
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
}

fn one() -> u32 {
    1
}

const EXCHANGES: &[&str] = &["coinbase", "uphold", "binance"];

#[derive(Debug, Default)]
pub struct Faults {
    pending: Vec<(u64, FaultSpec)>,
    next_id: u64,
}

impl Faults {
    /// Takes one use of the first pending fault that matches.
    fn take(&mut self, exchange: &str, target: FaultTarget) -> Option<FaultSpec> {
        let position = self
            .pending
            .iter()
            .position(|(_, f)| f.integration == exchange && (f.target == target || f.target == FaultTarget::Any))?;
        let (_, fault) = &mut self.pending[position];
        let taken = fault.clone();
        fault.count = fault.count.saturating_sub(1);
        if fault.count == 0 {
            self.pending.remove(position);
        }
        Some(taken)
    }
}

/// Applies a pending fault for this request: `Some(response)` to answer with, `None` to proceed (after any
/// injected latency).
pub async fn apply_fault(sandbox: &Shared, exchange: &'static str, target: FaultTarget) -> Option<Response> {
    let fault = sandbox.lock().faults.take(exchange, target)?;
    tracing::debug!(exchange, ?fault.kind, "sandbox fault injected");
    match fault.kind {
        FaultKind::Latency => {
            tokio::time::sleep(Duration::from_millis(fault.latency_ms.unwrap_or(1000).min(600_000))).await;
            None
        }
        FaultKind::ServerError => Some(with_retry_after(
            json_error(fault.server_status(), "server_error", "fault injected by the sandbox admin"),
            fault.retry_after_secs,
        )),
        FaultKind::TooManyRequests => Some(with_retry_after(
            json_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "fault injected by the sandbox admin"),
            Some(fault.retry_after_secs.unwrap_or(1)),
        )),
        FaultKind::InvalidGrant => Some(match target {
            FaultTarget::Api => {
                json_error(StatusCode::UNAUTHORIZED, "invalid_token", "fault injected by the sandbox admin")
            }
            _ => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "forced by the sandbox admin"),
        }),
    }
}

/// Account-API requests that reached each exchange, by endpoint, and the transfers each one made.
#[derive(Debug, Default)]
pub struct RequestCounts {
    requests: HashMap<(&'static str, &'static str), u64>,
    transfers_created: HashMap<&'static str, u64>,
}

impl RequestCounts {
    /// Counts a request as it arrives, before faults, authentication or scope checks.
    pub fn request(&mut self, exchange: &'static str, endpoint: &'static str) {
        *self.requests.entry((exchange, endpoint)).or_default() += 1;
    }

    /// Counts a send that moved funds (not one answered from its idempotency key).
    pub fn transfer_created(&mut self, exchange: &'static str) {
        *self.transfers_created.entry(exchange).or_default() += 1;
    }
}

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/requests", get(request_report))
        .route("/faults", post(add_fault).get(list_faults).delete(clear_faults))
        .route("/refresh-tokens", get(refresh_token_report))
        .route("/refresh-tokens/reset", post(reset_presentations))
        .route("/binance/expire-sessions", post(expire_sessions))
        .route("/{exchange}/expire-access-tokens", post(expire_access_tokens))
}

async fn add_fault(
    State(sandbox): State<Shared>,
    body: Result<Json<FaultSpec>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(spec) = match body {
        Ok(spec) => spec,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.body_text()),
    };
    if !EXCHANGES.contains(&spec.integration.as_str()) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "integration must be coinbase, uphold or binance",
        );
    }
    if spec.count == 0 {
        return json_error(StatusCode::BAD_REQUEST, "invalid_request", "count must be at least 1");
    }
    let mut inner = sandbox.lock();
    inner.faults.next_id += 1;
    let id = inner.faults.next_id;
    inner.faults.pending.push((id, spec));
    (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
}

async fn list_faults(State(sandbox): State<Shared>) -> Json<Value> {
    let inner = sandbox.lock();
    let faults: Vec<Value> = inner
        .faults
        .pending
        .iter()
        .map(|(id, f)| {
            let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
            if let Some(map) = v.as_object_mut() {
                map.insert("id".to_owned(), json!(id));
            }
            v
        })
        .collect();
    Json(json!({"faults": faults}))
}

async fn clear_faults(State(sandbox): State<Shared>) -> Json<Value> {
    let mut inner = sandbox.lock();
    let cleared = inner.faults.pending.len();
    inner.faults.pending.clear();
    Json(json!({"cleared": cleared}))
}

#[derive(Debug, Deserialize)]
struct ReportQuery {
    integration: Option<String>,
}

/// `{"coinbase": {"tokensPresented", "totalPresentations", "maxPresentations", "presentedMoreThanOnce",
/// "refreshedAfterAccessExpiry", "tokens": [{"sha256Prefix", "presentations"}]}, "uphold": {…}}` (tokens listed most-presented first, ≤100).
async fn refresh_token_report(State(sandbox): State<Shared>, Query(query): Query<ReportQuery>) -> Response {
    let inner = sandbox.lock();
    let mut report = serde_json::Map::new();
    for exchange in ["coinbase", "uphold"] {
        if query.integration.as_deref().is_some_and(|i| i != exchange) {
            continue;
        }
        let empty = HashMap::new();
        let counts = inner.oauth.get(exchange).map(|s| &s.presentations).unwrap_or(&empty);
        let late = inner.oauth.get(exchange).map_or(0, |s| s.refreshed_after_expiry);
        let mut tokens: Vec<(&String, &u32)> = counts.iter().collect();
        tokens.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        report.insert(
            exchange.to_owned(),
            json!({
                "tokensPresented": counts.len(),
                "totalPresentations": counts.values().map(|c| u64::from(*c)).sum::<u64>(),
                "maxPresentations": counts.values().copied().max().unwrap_or(0),
                "presentedMoreThanOnce": counts.values().filter(|c| **c > 1).count(),
                "refreshedAfterAccessExpiry": late,
                "tokens": tokens.iter().take(100).map(|(hash, count)| json!({
                    "sha256Prefix": hash.get(..12).unwrap_or(hash.as_str()),
                    "presentations": count,
                })).collect::<Vec<_>>(),
            }),
        );
    }
    if report.is_empty() {
        return json_error(StatusCode::NOT_FOUND, "not_found", "integration must be coinbase or uphold");
    }
    Json(Value::Object(report)).into_response()
}

async fn reset_presentations(State(sandbox): State<Shared>) -> Json<Value> {
    let mut inner = sandbox.lock();
    for state in inner.oauth.values_mut() {
        state.presentations.clear();
        state.refreshed_after_expiry = 0;
    }
    Json(json!({"reset": true}))
}

async fn expire_sessions(State(sandbox): State<Shared>) -> Json<Value> {
    let now = sandbox.config.clock.now();
    let expired = sandbox.lock().binance.expire_all(now);
    Json(json!({"expired": expired}))
}

async fn expire_access_tokens(State(sandbox): State<Shared>, Path(exchange): Path<String>) -> Response {
    let now = sandbox.config.clock.now();
    let mut inner = sandbox.lock();
    match exchange.as_str() {
        "coinbase" | "uphold" => {
            let expired = inner.oauth.get_mut(exchange.as_str()).map(|s| s.expire_access_tokens(now)).unwrap_or(0);
            Json(json!({"expired": expired})).into_response()
        }
        "binance" => Json(json!({"expired": inner.binance.expire_all(now)})).into_response(),
        _ => json_error(StatusCode::NOT_FOUND, "not_found", "exchange must be coinbase, uphold or binance"),
    }
}

/// `{"coinbase": {"requests": {"holdings": 2, "transfers.create": 1, …}, "totalRequests": 3,
/// "transfersCreated": 1}, "uphold": {…}, "binance": {…}}`.
async fn request_report(State(sandbox): State<Shared>) -> Json<Value> {
    let inner = sandbox.lock();
    let mut report = serde_json::Map::new();
    for exchange in EXCHANGES {
        let mut requests = serde_json::Map::new();
        let mut total = 0;
        for ((ex, endpoint), count) in &inner.counts.requests {
            if ex == exchange {
                requests.insert((*endpoint).to_owned(), json!(count));
                total += count;
            }
        }
        report.insert(
            (*exchange).to_owned(),
            json!({
                "requests": requests,
                "totalRequests": total,
                "transfersCreated": inner.counts.transfers_created.get(exchange).copied().unwrap_or(0),
            }),
        );
    }
    Json(Value::Object(report))
}

impl FaultSpec {
    /// The 5xx a `serverError` fault answers: its `status` when that is a 5xx, else 503.
    pub fn server_status(&self) -> StatusCode {
        self.status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(StatusCode::is_server_error)
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
    }
}

/// `response` with `Retry-After: secs`, when given.
pub fn with_retry_after(mut response: Response, secs: Option<u64>) -> Response {
    if let Some(secs) = secs {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Counts an account-API request to `endpoint` (the provider's documented method and path template) as it
/// arrives, and takes a pending fault for `exchange`, for modules that answer in their provider's own error
/// format: an injected latency is slept here (and `None` returned, as for no fault); any other fault is handed
/// back to be rendered by the caller.
pub async fn arrive(sandbox: &Shared, exchange: &'static str, endpoint: &'static str) -> Option<FaultSpec> {
    sandbox.lock().counts.request(exchange, endpoint);
    take_api_fault(sandbox, exchange).await
}

async fn take_api_fault(sandbox: &Shared, exchange: &'static str) -> Option<FaultSpec> {
    let fault = sandbox.lock().faults.take(exchange, FaultTarget::Api)?;
    tracing::debug!(exchange, ?fault.kind, "sandbox fault injected");
    if fault.kind == FaultKind::Latency {
        tokio::time::sleep(Duration::from_millis(fault.latency_ms.unwrap_or(1000).min(600_000))).await;
        return None;
    }
    Some(fault)
}
