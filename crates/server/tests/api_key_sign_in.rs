//! API-key sign-in (`binanceInternational`) over HTTP against the sandbox's Binance Spot API: a wrong secret
//! is refused with a 400 before anything is stored; the right pair is verified at the exchange, stored as a
//! connection that never expires, and answered with a tokenId (never the key or secret).

mod common;

use common::{Options, TestResult, spawn_app_with};
use linkvault_storage::testing::Backend;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

async fn authenticate(
    app: &common::TestApp,
    user: &str,
    body: Value,
) -> Result<common::Answer, Box<dyn std::error::Error>> {
    app.call(
        Method::POST,
        &format!("/api/v1/authenticate?userId={user}"),
        Some((&app.client.id, &app.client.read)),
        Some(body.to_string()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_sign_in_verifies_before_storing() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
        let issued: Value = app
            .http
            .post(format!("{}/sandbox/admin/binance/api-keys", app.base))
            .json(&json!({"username": "Mesh", "permissions": ["read"]}))
            .send()
            .await?
            .json()
            .await?;
        let key = issued["apiKey"].as_str().unwrap_or_default().to_owned();
        let secret = issued["secretKey"].as_str().unwrap_or_default().to_owned();
        assert_eq!(key.len(), 64, "{issued}");

        // A wrong secret: refused with a clear 4xx, nothing stored, neither value echoed.
        let wrong = authenticate(
            &app,
            "alice",
            json!({"type": "binanceInternational", "username": key, "password": "not-the-secret"}),
        )
        .await?;
        assert_eq!(wrong.code, 400, "{}", wrong.raw);
        assert_eq!(wrong.error_type(), "invalidField", "{}", wrong.raw);
        assert!(wrong.raw.contains("API key and secret"), "{}", wrong.raw);
        assert!(!wrong.raw.contains(&key) && !wrong.raw.contains("not-the-secret"), "{}", wrong.raw);
        assert_eq!(app.fresh.store.count_connections().await?, 0);

        // The right pair: verified, stored (key as access token, secret as refresh token), no expiry.
        let good = json!({"type": "binanceInternational", "username": key, "password": secret});
        let done = authenticate(&app, "alice", good.clone()).await?;
        assert_eq!(done.code, 200, "{}", done.raw);
        assert_eq!(done.content()["status"], "succeeded", "{}", done.raw);
        let token = &done.content()["accountTokens"][0];
        let token_id = token["tokenId"].as_str().unwrap_or_default().to_owned();
        assert!(!token_id.is_empty(), "{}", done.raw);
        assert!(token["account"]["accountId"].as_str().is_some_and(|id| id.parse::<u64>().is_ok()), "{}", done.raw);
        assert!(done.content().get("expiresInSeconds").is_none(), "an API key does not expire: {}", done.raw);
        assert!(!done.raw.contains(&key) && !done.raw.contains(&secret), "the key pair is never returned");
        let record = app.vault.connection_for(app.client.id.parse()?, token_id.parse()?).await?;
        assert_eq!(record.access_expires_at, None);
        let stored = app.vault.open_credentials(&record).await?;
        assert_eq!(stored.access_token.expose_secret(), key);
        assert_eq!(stored.refresh_token.as_ref().map(|s| s.expose_secret().to_owned()), Some(secret.clone()));

        // Again: the same tokenId.
        let again = authenticate(&app, "alice", good).await?;
        assert_eq!(again.content()["accountTokens"][0]["tokenId"].as_str(), Some(token_id.as_str()), "{}", again.raw);
        assert_eq!(app.fresh.store.count_connections().await?, 1);

        // The scheme as /api/v1/authenticationSchemes describes it.
        let schemes = app
            .call(Method::GET, "/api/v1/authenticationSchemes", Some((&app.client.id, &app.client.read)), None)
            .await?;
        let binance = schemes
            .content()
            .as_array()
            .and_then(|s| s.iter().find(|s| s["brokerType"] == "binanceInternational"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(binance["authenticationSchemeType"], "apiKey", "{}", schemes.raw);
        assert_eq!(binance["initialAuthenticationModel"]["fields"][1]["name"], "API secret");
    }
    Ok(())
}
