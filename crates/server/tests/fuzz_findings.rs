//! Regression tests for what the OpenAPI fuzzer (`scripts/fuzz.sh`) found: query strings that did not fit
//! were answered by axum's plain-text 400 outside the ApiResult envelope, and `docs/openapi.json` left out
//! answers the server gives (the `apiKey` authentication scheme, 400 on `GET /api/v1/tokens/{tokenId}`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use common::{Options, TestResult, spawn_app, spawn_app_with};
use linkvault_storage::testing::Backend;
use serde_json::{Value, json};

const OPENAPI: &str = include_str!("../../../docs/openapi.json");

#[tokio::test]
async fn query_strings_that_do_not_fit_are_api_results_naming_the_parameter() -> TestResult {
    let app = spawn_app(Backend::Sqlite).await?;
    let creds = Some((app.client.id.as_str(), app.client.read.as_str()));
    for (path, field) in [
        ("/api/v1/holdings/portfolio?UserId=alice&TimezoneOffset=null", "TimezoneOffset"),
        ("/api/v1/balance/portfolio?UserId=&TimezoneOffset=1.5", "TimezoneOffset"),
        ("/api/v1/balance/portfolio?UserId=a&UserId=b", "UserId"),
    ] {
        let answer = app.call(reqwest::Method::GET, path, creds, None).await?;
        assert_eq!((answer.code, answer.error_type()), (400, "invalidField"), "{path}: {}", answer.raw);
        assert_eq!(answer.body["errorData"]["field"], json!(field), "{path}: {}", answer.raw);
        assert_eq!(answer.body["status"], json!("badRequest"));
    }
    let body = json!({"type": "binanceInternationalDirect", "username": "Mesh", "password": "Pass123"}).to_string();
    let write = Some((app.client.id.as_str(), app.client.write.as_str()));
    let answer = app.call(reqwest::Method::POST, "/api/v1/authenticate?userId=a&userId=b", write, Some(body)).await?;
    assert_eq!((answer.code, answer.error_type()), (400, "invalidField"), "{}", answer.raw);
    assert_eq!(answer.body["errorData"]["field"], json!("userId"));
    // What fits still works: the unknown parameter is ignored, the offset accepted.
    let answer = app
        .call(reqwest::Method::GET, "/api/v1/balance/portfolio?UserId=alice&TimezoneOffset=-3600&x=1", creds, None)
        .await?;
    assert_eq!(answer.code, 200, "{}", answer.raw);
    Ok(())
}

/// The strings at `pointer` in the served document, following each `$ref` met on the way (the answers' types
/// are components that refer to one another).
fn documented_schemes(pointer: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let mut at = &doc;
    for step in pointer.trim_start_matches('/').split('/') {
        while let Some(reference) = at.get("$ref").and_then(Value::as_str) {
            at = doc.pointer(reference.trim_start_matches('#')).unwrap();
        }
        at = at.get(step).unwrap_or_else(|| panic!("{pointer}: no {step}"));
    }
    while let Some(reference) = at.get("$ref").and_then(Value::as_str) {
        at = doc.pointer(reference.trim_start_matches('#')).unwrap();
    }
    at.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn every_authentication_scheme_the_server_lists_is_documented() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, Options { sandbox: true, ..Options::default() }).await?;
    let creds = Some((app.client.id.as_str(), app.client.read.as_str()));
    let listed = documented_schemes(
        "/components/schemas/IntegrationList/properties/items/items/properties/authenticationSchemeType/enum",
    );
    let integrations = app.call(reqwest::Method::GET, "/api/v1/integrations", creds, None).await?;
    let items = integrations.content()["items"].as_array().unwrap();
    let used: Vec<&str> = items.iter().filter_map(|i| i["authenticationSchemeType"].as_str()).collect();
    assert!(used.contains(&"apiKey"), "{used:?}");
    for scheme in &used {
        assert!(listed.iter().any(|l| l == scheme), "{scheme} is not in the documented enum {listed:?}");
    }
    let documented =
        documented_schemes("/components/schemas/AuthenticationScheme/properties/authenticationSchemeType/enum");
    let schemes = app.call(reqwest::Method::GET, "/api/v1/authenticationSchemes", creds, None).await?;
    for entry in schemes.content().as_array().unwrap() {
        let scheme = entry["authenticationSchemeType"].as_str().unwrap();
        assert!(documented.iter().any(|d| d == scheme), "{scheme} is not in {documented:?}");
    }
    Ok(())
}

#[tokio::test]
async fn token_status_with_an_empty_user_id_is_a_documented_400() -> TestResult {
    let app = spawn_app(Backend::Sqlite).await?;
    let creds = Some((app.client.id.as_str(), app.client.read.as_str()));
    let path = "/api/v1/tokens/9410bf03-cb24-11d1-93db-197958747280?userId=";
    let answer = app.call(reqwest::Method::GET, path, creds, None).await?;
    assert_eq!((answer.code, answer.error_type()), (400, "invalidField"), "{}", answer.raw);
    let doc: Value = serde_json::from_str(OPENAPI)?;
    let documented = doc.pointer("/paths/~1api~1v1~1tokens~1{tokenId}/get/responses/400");
    assert!(documented.is_some(), "GET /api/v1/tokens/{{tokenId}} does not document its 400");
    Ok(())
}
