//! Property test: random bodies (valid-ish and garbage) against the import endpoint never produce a 5xx
//! or a panic, and every answer is an ApiResult.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::spawn_app;
use linkvault_storage::testing::Backend;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::ServiceExt as _;

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        "[a-zA-Z]{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,10}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects shaped like an import request, with each field present, absent or of a random type.
fn import_like() -> impl Strategy<Value = Value> {
    let field = |good: BoxedStrategy<Value>| prop_oneof![3 => good.prop_map(Some), 1 => Just(None), 1 => json_value().prop_map(Some)];
    (
        field(prop_oneof![1 => ".{0,320}".prop_map(Value::String), 3 => "[a-z0-9_-]{1,40}".prop_map(Value::String)].boxed()),
        field(prop_oneof![2 => Just(json!("coinbase")), 1 => Just(json!("uphold")), 1 => "[a-zA-Z]{0,30}".prop_map(Value::String)].boxed()),
        field(prop_oneof![3 => "[A-Za-z0-9._-]{1,64}".prop_map(Value::String), 1 => ".{0,64}".prop_map(Value::String)].boxed()),
        field(prop_oneof![3 => (1u64..1_000_000).prop_map(|n| json!(n)), 1 => any::<u64>().prop_map(|n| json!(n))].boxed()),
        field(prop_oneof![3 => "[A-Za-z ]{0,40}".prop_map(Value::String), 1 => ".{0,400}".prop_map(Value::String)].boxed()),
    )
        .prop_map(|(user, ty, token, expires, account)| {
            let mut m = serde_json::Map::new();
            for (k, v) in [("userId", user), ("type", ty), ("accessToken", token), ("expiresInSeconds", expires), ("accountName", account)] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            Value::Object(m)
        })
}

fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => import_like().prop_map(|v| v.to_string().into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

#[test]
fn import_never_fails_on_our_side() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let app = runtime.block_on(spawn_app(Backend::Sqlite))?;
    let config = ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() };
    let (cases, stored) = (AtomicUsize::new(0), AtomicUsize::new(0));
    proptest!(config, |(body in body_bytes())| {
        cases.fetch_add(1, Ordering::Relaxed);
        let request = Request::post("/api/v1/tokens/import")
            .header("X-Client-Id", &app.client.id)
            .header("X-Client-Secret", &app.client.write)
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (code, text) = runtime.block_on(async {
            let response = app.router.clone().oneshot(request).await.map_err(|e| e.to_string())?;
            let code = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((code, String::from_utf8_lossy(&bytes).into_owned()))
        }).map_err(TestCaseError::fail)?;
        prop_assert!(code == 200 || (400..500).contains(&code), "HTTP {} for {:?}: {}", code, String::from_utf8_lossy(&body), text);
        let parsed: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
        prop_assert!(parsed["status"].is_string() && parsed["errorType"].is_string(), "not an ApiResult: {}", text);
        if code == 200 {
            stored.fetch_add(1, Ordering::Relaxed);
        } else {
            prop_assert!(!parsed["message"].as_str().unwrap_or_default().is_empty());
        }
    });
    // The generator must reach both the happy path and the error paths, or the property proves little.
    let (cases, stored) = (cases.into_inner(), stored.into_inner());
    eprintln!("{cases} random bodies, {stored} stored");
    assert!(cases >= 400, "only {cases} cases ran");
    assert!(stored > 0 && stored < cases, "{stored} of {cases} bodies were stored");
    Ok(())
}
