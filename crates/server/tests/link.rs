//! The Link API: link tokens (shape, single use, expiry), the session bearer, return-user isolation, and the
//! security headers of Link pages. The browser flows are in tests/browser/.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{Options, TestApp, TestResult, auth_code, create_client, link_token_as, spawn_app_with, token_id};
use linkvault_server::LinkConfig;
use linkvault_storage::testing::Backend;
use serde_json::{Value, json};

async fn link_token(app: &TestApp, secret: &str, body: Value) -> Result<String, Box<dyn std::error::Error>> {
    link_token_as(app, &app.client.id, secret, body).await
}

async fn post(app: &TestApp, path: &str, bearer: Option<&str>, body: Value) -> common::Answer {
    common::link_post(app, path, bearer, body).await
}

async fn start(app: &TestApp, link_token: &str) -> common::Answer {
    common::link_start(app, link_token).await
}

async fn session(app: &TestApp, link_token: &str) -> String {
    common::link_session(app, link_token).await
}

#[tokio::test]
async fn link_tokens_are_base64_urls_and_single_use() -> TestResult {
    for backend in Backend::all() {
        let app = spawn_app_with(backend, Options::default()).await?;
        let token = link_token(&app, &app.client.read, json!({"userId": "alice"})).await?;
        // Standard, padded base64 (the React Native SDK rejects anything else) of a URL on the public origin.
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')));
        assert_eq!(token.len() % 4, 0);
        let url = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&token)?)?;
        assert!(url.starts_with(&format!("{}/link/broker-connect?auth_code=", app.base)), "{url}");
        assert!(auth_code(&token).len() >= 22, "at least 128 bits");

        let first = start(&app, &token).await;
        assert_eq!(first.code, 200, "{}", first.raw);
        assert_eq!(first.content()["restrictMultipleAccounts"], json!(true), "Mesh's default");
        let again = start(&app, &token).await;
        assert_eq!((again.code, again.error_type()), (400, "linkTokenUsed"));
        let unknown = post(&app, "/link/api/session", None, json!({"authCode": "x".repeat(43)})).await;
        assert_eq!((unknown.code, unknown.error_type()), (400, "linkTokenExpired"));

        let missing = app
            .call(
                reqwest::Method::POST,
                "/api/v1/linktoken",
                Some((&app.client.id, &app.client.read)),
                Some("{}".into()),
            )
            .await?;
        assert_eq!((missing.code, missing.error_type()), (400, "missingField"));
        let bad_id = app
            .call(
                reqwest::Method::POST,
                "/api/v1/linktoken",
                Some((&app.client.id, &app.client.read)),
                Some(json!({"userId": "a", "integrationId": "00000000-0000-4000-8000-000000000000"}).to_string()),
            )
            .await?;
        assert_eq!((bad_id.code, bad_id.error_type()), (400, "invalidField"));
        let unauthenticated = app.call(reqwest::Method::POST, "/api/v1/linktoken", None, Some("{}".into())).await?;
        assert_eq!((unauthenticated.code, unauthenticated.raw.as_str()), (401, ""));
    }
    Ok(())
}

#[tokio::test]
async fn link_tokens_expire() -> TestResult {
    let link = LinkConfig { link_token_ttl: Duration::from_secs(1), ..LinkConfig::default() };
    let app = spawn_app_with(Backend::Sqlite, Options { link: Some(link), ..Options::default() }).await?;
    let token = link_token(&app, &app.client.read, json!({"userId": "alice", "brokerType": "coinbase"})).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let late = start(&app, &token).await;
    assert_eq!((late.code, late.error_type()), (400, "linkTokenExpired"));
    Ok(())
}

#[tokio::test]
async fn the_session_carries_the_link_token_settings() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, Options { sandbox: true, ..Options::default() }).await?;
    let list =
        app.call(reqwest::Method::GET, "/api/v1/integrations", Some((&app.client.id, &app.client.read)), None).await?;
    let binance =
        list.content()["items"].as_array().unwrap().iter().find(|i| i["type"] == "binanceInternationalDirect").unwrap()
            ["id"]
            .clone();
    let token = link_token(
        &app,
        &app.client.read,
        json!({"userId": "alice", "integrationId": binance, "restrictMultipleAccounts": false, "transferOptions": {"transferType": "deposit"}}),
    )
    .await?;
    let answer = start(&app, &token).await;
    assert_eq!(answer.content()["integrationType"], json!("binanceInternationalDirect"));
    assert_eq!(answer.content()["restrictMultipleAccounts"], json!(false));
    assert!(answer.content()["integrations"].as_array().unwrap().len() >= 3);
    Ok(())
}

#[tokio::test]
async fn link_api_needs_the_session_bearer_not_client_credentials() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, Options::default()).await?;
    let no_bearer = post(&app, "/link/api/return-tokens", None, json!({"tokens": []})).await;
    assert_eq!((no_bearer.code, no_bearer.error_type()), (403, "linkTokenExpired"));
    let creds = app
        .http
        .post(format!("{}/link/api/return-tokens", app.base))
        .header("X-Client-Id", &app.client.id)
        .header("X-Client-Secret", &app.client.read)
        .json(&json!({"tokens": []}))
        .send()
        .await?;
    assert_eq!(creds.status().as_u16(), 403);
    let wrong = post(&app, "/link/api/return-tokens", Some("not-a-session"), json!({"tokens": []})).await;
    assert_eq!(wrong.code, 403);
    Ok(())
}

async fn returned(app: &TestApp, bearer: &str, token_ids: &[&str]) -> Vec<Value> {
    let tokens: Vec<Value> = token_ids
        .iter()
        .map(|t| json!({"accessToken": t, "brokerType": "coinbase", "brokerName": "", "accountId": "", "accountName": ""}))
        .collect();
    let answer = post(app, "/link/api/return-tokens", Some(bearer), json!({"tokens": tokens})).await;
    assert_eq!(answer.code, 200, "{}", answer.raw);
    answer.content()["connections"].as_array().unwrap().clone()
}

#[tokio::test]
async fn return_user_tokens_are_checked_against_client_user_and_scope() -> TestResult {
    for backend in Backend::all() {
        let app = spawn_app_with(backend, Options::default()).await?;
        let imported = app
            .import(
                &app.client.read,
                json!({"userId": "alice", "type": "coinbase", "accessToken": "at-1", "expiresInSeconds": 3600}),
            )
            .await?;
        let alice_token = token_id(&imported);
        let other = app
            .import(
                &app.client.read,
                json!({"userId": "alice", "type": "uphold", "accessToken": "at-2", "expiresInSeconds": 3600}),
            )
            .await?;
        let deleted = token_id(&other);
        assert_eq!(app.remove(&app.client.id, &app.client.read, &deleted, "uphold").await?.code, 200);

        let alice = session(&app, &link_token(&app, &app.client.read, json!({"userId": "alice"})).await?).await;
        let found = returned(&app, &alice, &[&alice_token]).await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["tokenId"], json!(alice_token));
        assert_eq!(found[0]["status"], json!("active"));
        assert_eq!(found[0]["payload"]["accountTokens"][0]["tokenId"], json!(alice_token));
        assert_eq!(found[0]["payload"]["accountTokens"][0]["accessToken"], json!(alice_token));

        // Another user, another scope, another client, unknown and deleted ids: all ignored the same way.
        let bob = session(&app, &link_token(&app, &app.client.read, json!({"userId": "bob"})).await?).await;
        assert!(returned(&app, &bob, &[&alice_token]).await.is_empty());
        let alice_write = session(&app, &link_token(&app, &app.client.write, json!({"userId": "alice"})).await?).await;
        assert!(returned(&app, &alice_write, &[&alice_token]).await.is_empty());
        let other_client = create_client(&app.vault, "other").await?;
        let foreign = link_token_as(&app, &other_client.id, &other_client.read, json!({"userId": "alice"})).await?;
        let foreign = session(&app, &foreign).await;
        assert!(returned(&app, &foreign, &[&alice_token]).await.is_empty());
        let unknown = "00000000-0000-4000-8000-000000000000";
        assert!(returned(&app, &alice, &[unknown, &deleted, "garbage"]).await.is_empty());
        let wrong_type = post(
            &app,
            "/link/api/return-tokens",
            Some(&alice),
            json!({"tokens": [{"accessToken": alice_token, "brokerType": "uphold"}]}),
        )
        .await;
        assert!(wrong_type.content()["connections"].as_array().unwrap().is_empty());
    }
    Ok(())
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn link_pages_send_security_headers_with_the_clients_origins() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, Options::default()).await?;
    let token = link_token(&app, &app.client.read, json!({"userId": "alice"})).await?;
    let page_url = format!("{}/link/broker-connect?auth_code={}", app.base, auth_code(&token));

    let res = app.http.get(&page_url).send().await?;
    let csp = header(&res, "content-security-policy").to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.ends_with("frame-ancestors 'none'"), "no allowed origin yet, no sandbox: {csp}");
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    assert_eq!(header(&res, "referrer-policy"), "no-referrer");
    assert_eq!(header(&res, "cache-control"), "no-store");

    let client_id: linkvault_domain::ClientId = app.client.id.parse()?;
    app.fresh.store.add_link_origin(client_id, "https://app.example", time::OffsetDateTime::now_utc()).await?;
    let res = app.http.get(&page_url).send().await?;
    assert!(header(&res, "content-security-policy").ends_with("frame-ancestors https://app.example"));
    // Looking the page up does not use the link token.
    assert_eq!(start(&app, &token).await.code, 200);

    for path in ["/link/assets/link.js", "/link/assets/link.css", "/link/sdk/linkvault-link.js", "/link/oauth/callback"]
    {
        let res = app.http.get(format!("{}{path}", app.base)).send().await?;
        assert_eq!(res.status().as_u16(), 200, "{path}");
        assert_eq!(header(&res, "x-content-type-options"), "nosniff", "{path}");
        assert!(header(&res, "content-security-policy").contains("script-src 'self'"), "{path}");
    }
    let demo = app.http.get(format!("{}/demo", app.base)).send().await?;
    assert_eq!(demo.status().as_u16(), 404, "the demo is sandbox-only");
    Ok(())
}

#[tokio::test]
async fn sandbox_mode_lets_loopback_origins_embed_link() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, Options { sandbox: true, ..Options::default() }).await?;
    let token = link_token(&app, &app.client.read, json!({"userId": "alice"})).await?;
    let res = app.http.get(format!("{}/link/broker-connect?auth_code={}", app.base, auth_code(&token))).send().await?;
    let csp = header(&res, "content-security-policy");
    assert!(csp.contains("frame-ancestors 'self' http://localhost:* http://127.0.0.1:*"), "{csp}");
    Ok(())
}

#[tokio::test]
async fn credentials_sign_in_in_link_reuses_the_tokenid() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, Options { sandbox: true, ..Options::default() }).await?;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let bearer = session(&app, &link_token(&app, &app.client.read, json!({"userId": "alice"})).await?).await;
        let body = json!({"type": "binanceInternationalDirect", "username": "Mesh", "password": "Pass123"});
        let first = post(&app, "/link/api/credentials", Some(&bearer), body.clone()).await;
        assert_eq!(first.content()["status"], json!("mfaRequired"), "{}", first.raw);
        let mut with_mfa = body;
        with_mfa["challengeId"] = first.content()["challengeId"].clone();
        with_mfa["mfaCode"] = json!("123456");
        let done = post(&app, "/link/api/credentials", Some(&bearer), with_mfa).await;
        assert_eq!(done.content()["status"], json!("succeeded"), "{}", done.raw);
        let id = done.content()["tokenId"].as_str().unwrap().to_owned();
        assert_eq!(done.content()["payload"]["accountTokens"][0]["accessToken"], json!(id));
        // Mesh's account.fund and account.cash come from the exchange: the sandbox user holds $10M in cash and
        // $2,652,500 in crypto (BTC, ETH, SOL, USDC at the sandbox's prices).
        let account = &done.content()["payload"]["accountTokens"][0]["account"];
        assert!((account["cash"].as_f64().unwrap_or_default() - 10_000_000.0).abs() < 1e-6, "{account}");
        assert!((account["fund"].as_f64().unwrap_or_default() - 12_652_500.0).abs() < 1e-6, "{account}");
        ids.push(id);
    }
    assert_eq!(ids[0], ids[1], "the same user and integration keep their tokenId");
    let wrong = session(&app, &link_token(&app, &app.client.read, json!({"userId": "alice"})).await?).await;
    let refused = post(
        &app,
        "/link/api/credentials",
        Some(&wrong),
        json!({"type": "binanceInternationalDirect", "username": "Mesh", "password": "nope"}),
    )
    .await;
    assert_eq!(refused.content()["status"], json!("failed"));
    Ok(())
}
