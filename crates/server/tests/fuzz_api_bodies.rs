//! Property test: arbitrary request bodies (shaped like the Mesh requests, random JSON, raw bytes, empty,
//! oversized) on every `/api/v1` endpoint that reads a JSON body (`ApiJson`), with a real tokenId in play so
//! the token-backed paths are reached. Never a 5xx or a panic; every answer is an ApiResult; a refusal is a
//! 4xx whose errorType is one of the documented ones.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;
mod fuzz_support;

use axum::body::Body;
use axum::http::Request;
use common::{Options, connect_binance_direct, spawn_app_with};
use fuzz_support::{Seen, check, config, json_value, oversized};
use linkvault_storage::testing::Backend;
use proptest::prelude::*;
use serde_json::{Value, json};

/// `(method, path)` of every endpoint whose handler takes an `ApiJson` body.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/tokens/import"),
    ("DELETE", "/api/v1/account"),
    ("POST", "/api/v1/authenticate"),
    ("POST", "/api/v1/linktoken"),
    ("POST", "/api/v1/webhooks"),
    ("POST", "/api/v1/token/refresh"),
    ("POST", "/api/v1/transfers/managed/configure"),
    ("POST", "/api/v1/transfers/managed/preview"),
    ("POST", "/api/v1/transfers/managed/execute"),
    ("POST", "/api/v1/holdings/get"),
    ("POST", "/api/v1/balance/get"),
    ("POST", "/api/v1/holdings/value"),
    ("POST", "/api/v1/transfers/list"),
    ("POST", "/api/v1/transfers/managed/address/get"),
];

/// Every errorType the API documents for a refusal.
const API_ERRORS: &[&str] = &[
    "missingField",
    "invalidField",
    "invalidJson",
    "bodyTooLarge",
    "tokenNotFound",
    "tokenScopeMismatch",
    "keyScopeInsufficient",
    "reauthenticationRequired",
    "tokenExpired",
    "tokenRevoked",
    "refreshTokenReused",
    "badRequest",
    "integrationNotFound",
    "integrationUnavailable",
    "tooManyRequests",
    "previewNotFound",
    "previewExpired",
    "idempotencyKeyReused",
    "featureNotSupported",
    "notFoundAtIntegration",
    "transferRefused",
];

/// Objects with the request fields the API reads, each good, absent or of a random type.
fn api_body(token_id: String) -> impl Strategy<Value = Value> {
    let field = |good: BoxedStrategy<Value>| prop_oneof![3 => good.prop_map(Some), 1 => Just(None), 1 => json_value().prop_map(Some)];
    let token = prop_oneof![
        3 => Just(json!(token_id)),
        1 => "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}".prop_map(Value::String),
        1 => "lv[ar]_[A-Za-z0-9_-]{43}".prop_map(Value::String),
        1 => ".{0,50}".prop_map(Value::String),
    ]
    .boxed();
    let ty = prop_oneof![
        3 => Just(json!("binanceInternationalDirect")),
        1 => Just(json!("coinbase")),
        1 => "[a-zA-Z]{0,20}".prop_map(Value::String),
    ]
    .boxed();
    let text = prop_oneof![
        Just(json!("Mesh")),
        Just(json!("Pass123")),
        Just(json!("BTC")),
        Just(json!("ethereum")),
        "[ -~]{0,40}".prop_map(Value::String),
    ]
    .boxed();
    let number = prop_oneof![
        (0.0f64..10.0).prop_map(|f| json!(f)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
    ]
    .boxed();
    let url = prop_oneof![
        Just(json!("http://127.0.0.1:9/hooks")),
        Just(json!("https://169.254.169.254/latest")),
        "https?://[a-z0-9.:\\[\\]]{0,30}/[ -~]{0,20}".prop_map(Value::String),
    ]
    .boxed();
    (
        (field(token.clone()), field(ty.clone()), field(token), field(ty)),
        (field(text.clone()), field(text.clone()), field(text.clone()), field(number)),
        (field(text.clone()), field(text), field(url), field(json_value().boxed())),
    )
        .prop_map(|((auth, ty, from, from_ty), (user, pass, symbol, amount), (network, address, url, extra))| {
            let mut m = serde_json::Map::new();
            for (k, v) in [
                ("authToken", auth.clone()),
                ("type", ty.clone()),
                ("fromAuthToken", from.clone()),
                ("fromType", from_ty),
                ("userId", user.clone()),
                ("username", user),
                ("password", pass.clone()),
                ("accessToken", pass.clone()),
                ("refreshToken", auth),
                ("symbol", symbol.clone()),
                ("amount", amount.clone()),
                ("amountInFiat", amount),
                ("networkId", network.clone()),
                ("toAddress", address.clone()),
                ("address", address),
                ("url", url),
                ("previewId", from),
                ("mfaCode", pass),
                ("brokerType", ty),
                ("transferOptions", extra.clone()),
                ("createNewRefreshToken", extra),
                ("integrationId", network.or(symbol)),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            Value::Object(m)
        })
}

fn body_bytes(token_id: String) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => api_body(token_id).prop_map(|v| v.to_string().into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => Just(b"   ".to_vec()),
        1 => oversized(),
    ]
}

#[test]
fn every_json_body_endpoint_answers_an_api_result() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app =
        runtime.block_on(spawn_app_with(Backend::Sqlite, Options { sandbox: true, ..Options::default() })).unwrap();
    let token_id = runtime.block_on(connect_binance_direct(&app, &app.client, &app.client.write, "fuzz-user")).unwrap();
    let seen = Seen::default();
    let strategy = (prop::sample::select(ROUTES), body_bytes(token_id), any::<bool>());
    let mut runner = proptest::test_runner::TestRunner::new(config(500));
    let result = runner.run(&strategy, |((method, path), body, write)| {
        // Deletion is tried with the read key only: it meets the fixture's write-scoped connection as a refusal
        // (a read key cannot remove it) instead of deleting it for every later case.
        let secret = if write && method != "DELETE" { &app.client.write } else { &app.client.read };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("X-Client-Id", &app.client.id)
            .header("X-Client-Secret", secret)
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(&runtime, &app.router, request, &body, API_ERRORS, &seen)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (types, ok, refused) = seen.into_inner();
    eprintln!("{ok} answered 200, {refused} refused; errorTypes seen: {types:?}");
    assert!(ok > 0 && refused > 0, "{ok} accepted, {refused} refused");
    for expected in ["invalidJson", "missingField", "invalidField", "bodyTooLarge", "tokenNotFound"] {
        assert!(types.contains(expected), "never saw {expected}: {types:?}");
    }
}
