//! Property tests for Link's outside inputs: the link token (standard padded base64 of a URL on the public
//! origin, whose auth_code the page sends back once), and the page's JSON API (`/link/api/*`) with arbitrary
//! bodies, bearer headers and content types. Never a 5xx or a panic; every `/link/api` answer is an ApiResult
//! with an errorType from a known set; a link token round-trips the userId the app gave it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;
mod fuzz_support;

use axum::body::Body;
use axum::http::{HeaderValue, Request};
use base64::Engine as _;
use common::{Options, TestApp, auth_code, link_post, link_session, link_token_as, spawn_app_with};
use fuzz_support::{Seen, check, config, json_leaf, json_value, oversized};
use linkvault_storage::testing::Backend;
use proptest::prelude::*;
use serde_json::{Value, json};

/// The Link page API's routes (all POST).
const ROUTES: &[&str] = &[
    "/link/api/session",
    "/link/api/return-tokens",
    "/link/api/credentials",
    "/link/api/oauth/start",
    "/link/api/oauth/result",
    "/link/api/transfer/configure",
    "/link/api/transfer/preview",
    "/link/api/transfer/execute",
    "/link/api/transfer/status",
];

/// The errorTypes a Link API refusal may carry.
const LINK_ERRORS: &[&str] = &[
    "missingField",
    "invalidField",
    "invalidJson",
    "bodyTooLarge",
    "linkTokenExpired",
    "linkTokenUsed",
    "tokenNotFound",
    "integrationNotFound",
    "integrationUnavailable",
    "integrationNotAllowed",
    "reauthenticationRequired",
    "previewNotFound",
    "previewExpired",
    "featureNotSupported",
    "notFoundAtIntegration",
    "transferRefused",
    "keyScopeInsufficient",
    "tokenScopeMismatch",
    "tooManyRequests",
    "endpointNotFound",
];

/// What the fixture knows: a started write session with a connected sandbox account.
struct Fixture {
    bearer: String,
    token_id: String,
}

/// Objects shaped like the Link API's bodies: known field names with good, absent or random values, and the
/// fixture's real tokenId now and then so the deeper paths (transfers, return users) are reached.
fn link_body(token_id: String) -> impl Strategy<Value = Value> {
    let field = |good: BoxedStrategy<Value>| prop_oneof![3 => good.prop_map(Some), 1 => Just(None), 1 => json_value().prop_map(Some)];
    let ty = prop_oneof![
        Just(json!("binanceInternationalDirect")),
        Just(json!("coinbase")),
        Just(json!("uphold")),
        Just(json!("sandbox")),
        "[a-zA-Z]{0,20}".prop_map(Value::String),
    ]
    .boxed();
    let id = prop_oneof![
        3 => Just(json!(token_id)),
        1 => "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}".prop_map(Value::String),
        1 => "lva_[A-Za-z0-9_-]{43}".prop_map(Value::String),
    ]
    .boxed();
    let names = prop_oneof![Just(json!("Mesh")), "[a-zA-Z]{0,12}".prop_map(Value::String)].boxed();
    let secret = prop_oneof![Just(json!("Pass123")), Just(json!("123456")), ".{0,20}".prop_map(Value::String)].boxed();
    let symbol =
        prop_oneof![Just(json!("BTC")), Just(json!("ETH")), Just(json!("USDC")), "[A-Z]{0,6}".prop_map(Value::String)];
    let amount = prop_oneof![
        (0.0f64..5.0).prop_map(|f| json!(f)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f))
    ];
    (
        (field(ty), field(id.clone()), field(names), field(secret.clone())),
        (field(secret), field(symbol.boxed()), field(amount.boxed()), field(id)),
        field(".{0,60}".prop_map(Value::String).boxed()),
    )
        .prop_map(|((ty, token, user, password), (mfa, symbol, amount, other_id), code)| {
            let mut m = serde_json::Map::new();
            for (k, v) in [
                ("type", ty),
                ("tokenId", token.clone()),
                ("username", user),
                ("password", password),
                ("mfaCode", mfa),
                ("symbol", symbol),
                ("amount", amount),
                ("previewId", other_id.clone()),
                ("transferId", other_id),
                ("authCode", code.clone()),
                ("state", code),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            if let Some(t) = token {
                m.insert("tokens".to_owned(), json!([{"accessToken": t, "brokerType": "binanceInternationalDirect"}]));
            }
            Value::Object(m)
        })
}

fn body_bytes(token_id: String) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => link_body(token_id).prop_map(|v| v.to_string().into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => Just(Vec::new()),
        1 => oversized(),
    ]
}

/// The Authorization header: the real bearer, another bearer, garbage, or none.
fn authorization(bearer: String) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        3 => Just(Some(format!("Bearer {bearer}").into_bytes())),
        1 => Just(None),
        1 => "Bearer [A-Za-z0-9_-]{0,200}".prop_map(|s| Some(s.into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(Some),
        1 => Just(Some(format!("bearer  {bearer} ").into_bytes())),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        4 => Just(Some("application/json")),
        1 => Just(None),
        1 => Just(Some("text/plain")),
        1 => Just(Some("application/x-www-form-urlencoded")),
    ]
}

async fn fixture(app: &TestApp) -> Fixture {
    let token = link_token_as(app, &app.client.id, &app.client.write, json!({"userId": "fuzz-user"})).await.unwrap();
    let bearer = link_session(app, &token).await;
    let sign_in = json!({"type": "binanceInternationalDirect", "username": "Mesh", "password": "Pass123"});
    let first = link_post(app, "/link/api/credentials", Some(&bearer), sign_in.clone()).await;
    let mut with_mfa = sign_in;
    with_mfa["challengeId"] = first.content()["challengeId"].clone();
    with_mfa["mfaCode"] = json!("123456");
    let done = link_post(app, "/link/api/credentials", Some(&bearer), with_mfa).await;
    assert_eq!(done.content()["status"], json!("succeeded"), "{}", done.raw);
    let token_id = done.content()["tokenId"].as_str().unwrap().to_owned();
    Fixture { bearer, token_id }
}

/// Arbitrary bodies, headers and content types on every Link API route, with and without a live session.
#[test]
fn link_api_answers_every_input_with_an_api_result() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app =
        runtime.block_on(spawn_app_with(Backend::Sqlite, Options { sandbox: true, ..Options::default() })).unwrap();
    let fx = runtime.block_on(fixture(&app));
    let seen = Seen::default();
    let strategy = (
        prop::sample::select(ROUTES),
        body_bytes(fx.token_id.clone()),
        authorization(fx.bearer.clone()),
        content_type(),
    );
    let mut runner = proptest::test_runner::TestRunner::new(config(400));
    let result = runner.run(&strategy, |(route, body, auth, content)| {
        let mut request = Request::post(route);
        if let Some(value) = auth.as_deref().and_then(|a| HeaderValue::from_bytes(a).ok()) {
            request = request.header("authorization", value);
        }
        if let Some(content) = content {
            request = request.header("content-type", content);
        }
        let request = request.body(Body::from(body.clone())).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(&runtime, &app.router, request, &body, LINK_ERRORS, &seen)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (types, ok, refused) = seen.into_inner();
    eprintln!("{ok} answered 200, {refused} refused; errorTypes seen: {types:?}");
    // The generator reaches accepted calls and several refusal classes, or the property proves little.
    assert!(ok > 0 && refused > 0, "{ok} accepted, {refused} refused");
    for expected in ["linkTokenExpired", "invalidJson", "missingField", "bodyTooLarge"] {
        assert!(types.contains(expected), "never saw {expected}: {types:?}");
    }
}

/// Link tokens: the userId given to `POST /api/v1/linktoken` comes back from the session its token opens;
/// the token is standard padded base64 of a URL on the public origin; its auth_code works once; any other
/// auth_code (a near miss, garbage, too long, not a string) is refused with a 4xx and a Link errorType.
#[test]
fn link_tokens_round_trip_and_other_auth_codes_are_refused() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = runtime.block_on(spawn_app_with(Backend::Sqlite, Options::default())).unwrap();
    let user = "[^\\p{Cc}]{1,60}";
    let other_code =
        prop_oneof!["[A-Za-z0-9_-]{43}".prop_map(Value::String), ".{0,200}".prop_map(Value::String), json_leaf(),];
    let mut runner = proptest::test_runner::TestRunner::new(config(80));
    let result = runner.run(&(user, other_code, 0usize..43), |(user_id, other, flip)| {
        runtime.block_on(async {
            let token =
                link_token_as(&app, &app.client.id, &app.client.read, json!({"userId": user_id})).await.unwrap();
            prop_assert!(
                token.len() % 4 == 0 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
            );
            let url = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&token).unwrap()).unwrap();
            let prefix = format!("{}/link/broker-connect?auth_code=", app.base);
            prop_assert!(url.starts_with(&prefix), "{}", url);
            let code = auth_code(&token);
            prop_assert_eq!(code.len(), 43);
            // A near miss of the real code (one character changed) opens nothing.
            let near: String = code
                .chars()
                .enumerate()
                .map(|(i, c)| if i == flip { if c == 'A' { 'B' } else { 'A' } } else { c })
                .collect();
            for attempt in [json!({"authCode": near}), json!({"authCode": other})] {
                let answer = link_post(&app, "/link/api/session", None, attempt.clone()).await;
                prop_assert!((400..500).contains(&answer.code), "{}: {} {}", attempt, answer.code, answer.raw);
                let kind = answer.error_type();
                prop_assert!(
                    ["linkTokenExpired", "invalidField", "invalidJson"].contains(&kind),
                    "{}: {}",
                    attempt,
                    answer.raw
                );
            }
            let started = link_post(&app, "/link/api/session", None, json!({"authCode": code})).await;
            prop_assert_eq!(started.code, 200, "{}", started.raw);
            prop_assert_eq!(started.content()["userId"].as_str(), Some(user_id.as_str()));
            prop_assert_eq!(started.content()["scope"].as_str(), Some("read"));
            let again = link_post(&app, "/link/api/session", None, json!({"authCode": code})).await;
            prop_assert_eq!((again.code, again.error_type()), (400, "linkTokenUsed"));
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
