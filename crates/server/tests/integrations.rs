//! Issue 3 over HTTP: the catalog endpoints, `/authenticate` against the Binance-like sandbox (MFA loop,
//! wrong password, wrong code, same tokenId twice), and revocation at the integration on delete.

mod common;

use common::{Options, TestResult, spawn_app_with};
use linkvault_storage::testing::Backend;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

async fn authenticate(
    app: &common::TestApp,
    secret: &str,
    user: &str,
    body: Value,
) -> Result<common::Answer, Box<dyn std::error::Error>> {
    app.call(
        Method::POST,
        &format!("/api/v1/authenticate?userId={user}"),
        Some((&app.client.id, secret)),
        Some(body.to_string()),
    )
    .await
}

fn sandbox() -> Options {
    Options { sandbox: true, ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_with_mfa_stores_one_connection_per_user() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let app = spawn_app_with(backend, sandbox()).await?;
        let c = &app.client;

        // Wrong password: a clear failure, nothing stored.
        let wrong = authenticate(
            &app,
            &c.read,
            "alice",
            json!({"type": "binanceInternationalDirect", "username": "Mesh", "password": "nope"}),
        )
        .await?;
        assert_eq!(wrong.code, 200, "{}", wrong.raw);
        assert_eq!(wrong.content()["status"], "failed");
        assert!(
            wrong.content()["errorMessage"].as_str().is_some_and(|m| m.contains("username or password")),
            "{}",
            wrong.raw
        );
        assert_eq!(app.fresh.store.count_connections().await?, 0);

        // Right password: MFA required.
        let creds = json!({"type": "binanceInternationalDirect", "username": "Mesh", "password": "Pass123"});
        let first = authenticate(&app, &c.read, "alice", creds.clone()).await?;
        assert_eq!(first.content()["status"], "mfaRequired", "{}", first.raw);
        let challenge = first.content()["challengeId"].as_str().unwrap_or_default().to_owned();
        assert!(!challenge.is_empty());

        // Wrong code: a clear failure, nothing stored.
        let mut bad = creds.clone();
        bad["mfaCode"] = json!("000000");
        bad["challengeId"] = json!(challenge);
        let failed = authenticate(&app, &c.read, "alice", bad).await?;
        assert_eq!(failed.content()["status"], "challengeFailed", "{}", failed.raw);
        assert!(failed.content()["errorMessage"].as_str().is_some_and(|m| m.contains("MFA code")), "{}", failed.raw);
        assert_eq!(app.fresh.store.count_connections().await?, 0);

        // Right code: succeeded, the tokenId comes back as accessToken and tokenId, never the session.
        let mut good = creds.clone();
        good["mfaCode"] = json!("123456");
        let done = authenticate(&app, &c.read, "alice", good.clone()).await?;
        assert_eq!(done.content()["status"], "succeeded", "{}", done.raw);
        let token = &done.content()["accountTokens"][0];
        let token_id = token["tokenId"].as_str().unwrap_or_default().to_owned();
        assert_eq!(token["accessToken"].as_str(), Some(token_id.as_str()));
        assert!(done.content()["expiresInSeconds"].as_i64().is_some_and(|s| s > 0));
        let record = app.vault.connection_for(c.id.parse()?, token_id.parse()?).await?;
        let session = app.vault.open_credentials(&record).await?;
        assert!(!done.raw.contains(session.access_token.expose_secret()), "the raw session must never be returned");

        // Again for the same user and integration: the same tokenId.
        let again = authenticate(&app, &c.read, "alice", good.clone()).await?;
        assert_eq!(again.content()["accountTokens"][0]["tokenId"].as_str(), Some(token_id.as_str()), "{}", again.raw);
        assert_eq!(again.content()["accountTokens"][0]["account"]["isReconnected"], json!(true));
        // Another user, or the write key: other tokenIds.
        let bob = authenticate(&app, &c.read, "bob", good.clone()).await?;
        assert_ne!(bob.content()["accountTokens"][0]["tokenId"].as_str(), Some(token_id.as_str()));
        let write = authenticate(&app, &c.write, "alice", good).await?;
        assert_ne!(write.content()["accountTokens"][0]["tokenId"].as_str(), Some(token_id.as_str()));
        assert_eq!(app.fresh.store.count_connections().await?, 3);

        let status = app.status(&c.id, &c.read, &token_id).await?;
        assert_eq!(status.content()["status"], "active");
        assert_eq!(status.content()["brokerType"], "binanceInternationalDirect");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_rejects_bad_requests_clearly() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, sandbox()).await?;
    let c = &app.client;
    let no_user = app
        .call(
            Method::POST,
            "/api/v1/authenticate",
            Some((&c.id, &c.read)),
            Some(json!({"type": "sandbox"}).to_string()),
        )
        .await?;
    assert_eq!((no_user.code, no_user.error_type()), (400, "missingField"));
    let oauth = authenticate(&app, &c.read, "u", json!({"type": "coinbase", "username": "a", "password": "b"})).await?;
    assert_eq!((oauth.code, oauth.error_type()), (400, "invalidField"), "{}", oauth.raw);
    assert!(oauth.body["message"].as_str().unwrap_or_default().contains("Link"));
    let unknown = authenticate(&app, &c.read, "u", json!({"type": "nope", "username": "a", "password": "b"})).await?;
    assert_eq!(unknown.error_type(), "integrationNotFound");
    let no_password = authenticate(&app, &c.read, "u", json!({"type": "sandbox", "username": "Mesh"})).await?;
    assert_eq!(
        (no_password.error_type(), no_password.body["errorData"]["field"].as_str()),
        ("missingField", Some("password"))
    );
    // Base64-encoded sensitive fields are understood.
    let encoded = authenticate(&app, &c.read, "u", json!({"type": "sandbox", "username": "TWVzaA==", "password": "UGFzczEyMw==", "mfaCode": "MTIzNDU2", "isSensitiveFieldsEncrypted": true})).await?;
    assert_eq!(encoded.content()["status"], "succeeded", "{}", encoded.raw);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_credentials_integration_says_so() -> TestResult {
    // Without --sandbox the Binance entry has no sign-in endpoint.
    let app = spawn_app_with(Backend::Sqlite, Options::default()).await?;
    let c = &app.client;
    let answer = authenticate(
        &app,
        &c.read,
        "u",
        json!({"type": "binanceInternationalDirect", "username": "a", "password": "b"}),
    )
    .await?;
    assert_eq!((answer.code, answer.error_type()), (400, "integrationUnavailable"), "{}", answer.raw);
    assert!(answer.body["message"].as_str().unwrap_or_default().contains("sign_in_url"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_endpoints_list_embedded_and_file_integrations() -> TestResult {
    let toml = r#"
[[integration]]
type = "exampleOAuth"
name = "Example Exchange"
auth = "oauth2"
authorize_url = "https://auth.example.test/authorize"
token_url = "https://auth.example.test/token"
api_base_url = "https://api.example.test"
client_id = "linkvault"
client_secret = "s3cret"
scopes_read = ["read"]
scopes_write = ["write"]
"#;
    let app =
        spawn_app_with(Backend::Sqlite, Options { catalog_toml: Some(toml.into()), ..Options::default() }).await?;
    let c = &app.client;
    let list = app.call(Method::GET, "/api/v1/integrations", Some((&c.id, &c.read)), None).await?;
    assert_eq!(list.code, 200);
    let items = list.content()["items"].as_array().cloned().unwrap_or_default();
    let types: Vec<&str> = items.iter().filter_map(|i| i["type"].as_str()).collect();
    for ty in ["coinbase", "uphold", "binanceInternationalDirect", "sandbox", "exampleOAuth"] {
        assert!(types.contains(&ty), "{ty} missing from {types:?}");
    }
    let example = items.iter().find(|i| i["type"] == "exampleOAuth").cloned().unwrap_or_default();
    assert_eq!(example["name"], "Example Exchange");
    assert!(uuid::Uuid::parse_str(example["id"].as_str().unwrap_or_default()).is_ok());
    assert_eq!(example["isConfigured"], json!(true));
    assert!(!list.raw.contains("s3cret"), "client secrets must never be listed");
    // The added integration is usable: tokens can be imported for it.
    let imported = app.import(&c.write, json!({"userId": "u", "type": "exampleOAuth", "accessToken": "x"})).await?;
    assert_eq!(imported.code, 200, "{}", imported.raw);

    let schemes = app.call(Method::GET, "/api/v1/authenticationSchemes", Some((&c.id, &c.read)), None).await?;
    let schemes = schemes.content().as_array().cloned().unwrap_or_default();
    let binance = schemes.iter().find(|s| s["brokerType"] == "binanceInternationalDirect").cloned().unwrap_or_default();
    assert_eq!(binance["authenticationSchemeType"], "usernamePassword");
    assert_eq!(binance["initialAuthenticationModel"]["fields"][0]["name"], "Username");
    let coinbase = schemes.iter().find(|s| s["brokerType"] == "coinbase").cloned().unwrap_or_default();
    assert_eq!(coinbase["authenticationSchemeType"], "oAuth");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_the_session_at_the_integration() -> TestResult {
    let app = spawn_app_with(Backend::Sqlite, sandbox()).await?;
    let c = &app.client;
    let done = authenticate(
        &app,
        &c.read,
        "alice",
        json!({"type": "sandbox", "username": "Mesh", "password": "Pass123", "mfaCode": "123456"}),
    )
    .await?;
    let token_id = done.content()["accountTokens"][0]["tokenId"].as_str().unwrap_or_default().to_owned();
    let record = app.vault.connection_for(c.id.parse()?, token_id.parse()?).await?;
    let session = app.vault.open_credentials(&record).await?.access_token;
    // The session opens the exchange's account API (Binance-shaped: the session signs as key and secret).
    let mut catalog = linkvault_integrations::Catalog::embedded();
    catalog.point_at_sandbox(&format!("{}/sandbox", app.base))?;
    let integration = catalog.get("sandbox").ok_or("no sandbox integration")?;
    let api = linkvault_integrations::api::ExchangeApi::new(linkvault_integrations::HttpLimits::default())?;
    let accounts = || async {
        let credential = linkvault_integrations::api::Credential::of_stored(integration, &session, None);
        let (adapter, call) = api.adapter(integration, credential)?;
        adapter.accounts(call).await
    };
    assert!(accounts().await.is_ok(), "the session works before deletion");

    assert_eq!(app.remove(&c.id, &c.read, &token_id, "sandbox").await?.code, 200);
    // Revocation runs off the request path; wait for it, bounded.
    let mut ended = false;
    for _ in 0..50 {
        if accounts().await.is_err() {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ended, "the session should be ended at the integration");
    Ok(())
}
