//! Shared by the HTTP property tests (`fuzz_api_bodies.rs`, `fuzz_link.rs`): random JSON, sending one request
//! through the router, and the property every answer must have (a 200 or a 4xx ApiResult with a known
//! errorType and a message), with a tally of what was seen so a test can show its generator reached both.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::collections::BTreeSet;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

pub fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        "[a-zA-Z0-9-]{0,40}".prop_map(Value::String),
    ]
}

pub fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body over the 64 KiB limit.
pub fn oversized() -> impl Strategy<Value = Vec<u8>> {
    (65usize..70).prop_map(|kib| format!("{{\"x\":\"{}\"}}", "a".repeat(kib * 1024)).into_bytes())
}

/// What the answers of one test were: errorTypes, accepted and refused counts.
#[derive(Default)]
pub struct Seen(Mutex<(BTreeSet<String>, usize, usize)>);

impl Seen {
    pub fn into_inner(self) -> (BTreeSet<String>, usize, usize) {
        self.0.into_inner().unwrap()
    }
}

/// Sends `request` through `router` and checks the answer: 200 or 4xx, an ApiResult (JSON with a `status`),
/// a refusal's errorType one of `allowed` with a message. `body` is shown on failure.
pub fn check(
    runtime: &tokio::runtime::Runtime,
    router: &axum::Router,
    request: Request<Body>,
    body: &[u8],
    allowed: &[&str],
    seen: &Seen,
) -> Result<(), TestCaseError> {
    let route = format!("{} {}", request.method(), request.uri().path());
    let (code, text) = runtime.block_on(async {
        let response = router.clone().oneshot(request).await.unwrap();
        let code = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
        (code, String::from_utf8_lossy(&bytes).into_owned())
    });
    let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    prop_assert!(code == 200 || (400..500).contains(&code), "{} answered {} for {:?}: {}", route, code, shown, text);
    let parsed: Value = serde_json::from_str(&text)
        .map_err(|e| TestCaseError::fail(format!("{route}: not JSON ({e}) for {shown:?}: {text}")))?;
    prop_assert!(parsed["status"].is_string(), "{}: not an ApiResult: {}", route, text);
    let error_type = parsed["errorType"].as_str().unwrap_or("<none>").to_owned();
    let mut seen = seen.0.lock().unwrap();
    if code == 200 {
        prop_assert_eq!(error_type.as_str(), "", "{}", text);
        seen.1 += 1;
    } else {
        prop_assert!(allowed.contains(&error_type.as_str()), "{}: errorType {:?}: {}", route, error_type, text);
        prop_assert!(!parsed["message"].as_str().unwrap_or_default().is_empty(), "{}", text);
        seen.2 += 1;
    }
    seen.0.insert(error_type);
    Ok(())
}
