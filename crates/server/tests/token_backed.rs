//! Token-backed APIs through tokenIds: holdings and balances from the sandbox exchanges, isolation between
//! clients, and the re-authentication signal when a session has expired.

mod common;
#[path = "../../webhooks/tests/support/receiver.rs"]
mod receiver;

use std::sync::Arc;

use common::{ClientCreds, Options, TestApp, TestResult, spawn_app_with};
use linkvault_domain::{ClientId, ManualClock};
use linkvault_storage::testing::Backend;
use linkvault_webhooks::{DeliveryWorker, WebhookSecret, WorkerConfig};
use receiver::Receiver;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

async fn connect(
    app: &TestApp,
    creds: &ClientCreds,
    secret: &str,
    user: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let body =
        json!({"type": "binanceInternationalDirect", "username": "Mesh", "password": "Pass123", "mfaCode": "123456"});
    let answer = app
        .call(
            Method::POST,
            &format!("/api/v1/authenticate?userId={user}"),
            Some((&creds.id, secret)),
            Some(body.to_string()),
        )
        .await?;
    let token = answer.content()["accountTokens"][0]["tokenId"].as_str().unwrap_or_default().to_owned();
    assert!(!token.is_empty(), "{}", answer.raw);
    Ok(token)
}

async fn post(
    app: &TestApp,
    creds: (&str, &str),
    path: &str,
    body: Value,
) -> Result<common::Answer, Box<dyn std::error::Error>> {
    app.call(Method::POST, path, Some(creds), Some(body.to_string())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holdings_and_balance_by_token_id_for_every_key_and_token_scope() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
        let c = &app.client;
        let read_token = connect(&app, c, &c.read, "alice").await?;
        let write_token = connect(&app, c, &c.write, "alice").await?;
        let bob_token = connect(&app, c, &c.read, "bob").await?;
        let other = common::create_client(&app.vault, "other").await?;

        for key in [&c.read, &c.write] {
            for token in [&read_token, &write_token, &bob_token] {
                let body = json!({"authToken": token, "type": "binanceInternationalDirect"});
                let holdings = post(&app, (&c.id, key), "/api/v1/holdings/get", body.clone()).await?;
                assert_eq!(holdings.code, 200, "{}", holdings.raw);
                assert_eq!(holdings.content()["status"], "succeeded", "{}", holdings.raw);
                let positions = holdings.content()["cryptocurrencyPositions"].as_array().cloned().unwrap_or_default();
                assert!(!positions.is_empty(), "the sandbox user has crypto positions: {}", holdings.raw);
                assert!(positions.iter().all(|p| p["symbol"].is_string() && p["amount"].is_number()));
                let balance = post(&app, (&c.id, key), "/api/v1/balance/get", body).await?;
                assert_eq!(balance.code, 200, "{}", balance.raw);
                assert!(balance.content()["balances"].as_array().is_some_and(|b| !b.is_empty()), "{}", balance.raw);
                // No endpoint ever returns the integration's token.
                let record = app.vault.connection_for(c.id.parse()?, token.parse()?).await?;
                let session = app.vault.open_credentials(&record).await?;
                let raw = secrecy::ExposeSecret::expose_secret(&session.access_token).to_owned();
                assert!(!holdings.raw.contains(&raw) && !balance.raw.contains(&raw));
            }
        }
        // Another client, with either key: tokenNotFound, exactly as for an unknown id.
        for key in [&other.read, &other.write] {
            for token in [&read_token, &write_token] {
                let body = json!({"authToken": token, "type": "binanceInternationalDirect"});
                for path in ["/api/v1/holdings/get", "/api/v1/balance/get"] {
                    let answer = post(&app, (&other.id, key), path, body.clone()).await?;
                    assert_eq!((answer.code, answer.error_type()), (404, "tokenNotFound"), "{path}: {}", answer.raw);
                }
            }
        }
        // The wrong type for the tokenId, and garbage ids, are not found either.
        let wrong_type =
            post(&app, (&c.id, &c.read), "/api/v1/holdings/get", json!({"authToken": read_token, "type": "sandbox"}))
                .await?;
        assert_eq!(wrong_type.error_type(), "tokenNotFound");
        let garbage =
            post(&app, (&c.id, &c.read), "/api/v1/holdings/get", json!({"authToken": "raw-token", "type": "sandbox"}))
                .await?;
        assert_eq!(garbage.error_type(), "tokenNotFound");
    }
    Ok(())
}

/// The acceptance row "re-auth keeps the tokenId", over HTTP on both backends: a Binance-like session expires
/// (on the injected clock) → the next use reports re-authentication, the connection shows `reauthRequired`
/// and the app's webhook endpoint receives `connection.reauthRequired`; `/authenticate` again for that user →
/// the same tokenId, `active`, and `connection.recovered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_is_announced_and_reauthentication_keeps_the_token_id() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let options = Options {
            sandbox: true,
            session_ttl: Some(std::time::Duration::from_secs(600)),
            clock: Some(clock.clone()),
            ..Options::default()
        };
        let app = spawn_app_with(backend, options).await?;
        let c = &app.client;
        let secret = WebhookSecret::generate()?;
        let secret_text = secret.expose().to_owned();
        let hooks = Receiver::start(secret).await?;
        let client_id: ClientId = c.id.parse()?;
        app.vault.set_webhook_endpoint(client_id, &hooks.url, &secret_text).await?;
        let deliverer = DeliveryWorker::new(Arc::clone(&app.vault), WorkerConfig::default())?;

        let token = connect(&app, c, &c.read, "alice").await?;
        let body = json!({"authToken": token, "type": "binanceInternationalDirect"});
        let holdings = post(&app, (&c.id, &c.read), "/api/v1/holdings/get", body.clone()).await?;
        assert_eq!(holdings.content()["status"], "succeeded", "{}", holdings.raw);

        // The session's lifetime passes.
        clock.advance(time::Duration::seconds(601));
        let balance = post(&app, (&c.id, &c.read), "/api/v1/balance/get", body.clone()).await?;
        assert_eq!((balance.code, balance.error_type()), (400, "reauthenticationRequired"), "{}", balance.raw);
        assert_eq!(balance.body["errorData"]["tokenId"].as_str(), Some(token.as_str()));
        let holdings = post(&app, (&c.id, &c.read), "/api/v1/holdings/get", body.clone()).await?;
        assert_eq!(holdings.content()["status"], "notAuthorized", "{}", holdings.raw);
        let status = app.status(&c.id, &c.read, &token).await?;
        assert_eq!(status.content()["status"], "reauthRequired", "{}", status.raw);
        deliverer.run_once().await?;
        assert_eq!(hooks.types_for(&token), ["connection.created", "connection.reauthRequired"]);

        // The user signs in again: the same tokenId, active, and the app is told.
        assert_eq!(connect(&app, c, &c.read, "alice").await?, token, "re-authentication keeps the tokenId");
        let status = app.status(&c.id, &c.read, &token).await?;
        assert_eq!(status.content()["status"], "active", "{}", status.raw);
        let holdings = post(&app, (&c.id, &c.read), "/api/v1/holdings/get", body).await?;
        assert_eq!(holdings.content()["status"], "succeeded", "{}", holdings.raw);
        deliverer.run_once().await?;
        assert_eq!(
            hooks.types_for(&token),
            ["connection.created", "connection.reauthRequired", "connection.recovered"]
        );
        assert_eq!(hooks.bad_signatures(), 0);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_reports_reauthentication() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, Options { sandbox: true, ..Options::default() }).await?;
    let c = &app.client;
    let token = connect(&app, c, &c.read, "alice").await?;
    // The exchange ends every session (as when it expires); the next calls say the user must sign in again.
    let expired = app.http.post(format!("{}/sandbox/admin/binance/expire-sessions", app.base)).send().await?;
    assert!(expired.status().is_success());
    let body = json!({"authToken": token, "type": "binanceInternationalDirect"});
    let holdings = post(&app, (&c.id, &c.read), "/api/v1/holdings/get", body.clone()).await?;
    assert_eq!(holdings.code, 200);
    assert_eq!(holdings.content()["status"], "notAuthorized", "{}", holdings.raw);
    let balance = post(&app, (&c.id, &c.read), "/api/v1/balance/get", body).await?;
    assert_eq!((balance.code, balance.error_type()), (400, "reauthenticationRequired"), "{}", balance.raw);
    assert_eq!(balance.body["errorData"]["tokenId"].as_str(), Some(token.as_str()));
    Ok(())
}
