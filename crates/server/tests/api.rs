//! The HTTP API against the real server: lifecycle table, authentication, bad input, permanent deletion, and
//! the operational endpoints (the cached connection gauge, the `/metrics` token).

mod common;

use base64::Engine as _;
use common::{TestResult, spawn_app, token_id};
use linkvault_storage::on_every_backend;
use linkvault_storage::testing::Backend;
use reqwest::Method;
use serde_json::json;

on_every_backend!(lifecycle_table_over_http, |backend| async move {
    let app = spawn_app(backend).await?;
    let c = &app.client;
    let first = app.import(&c.read, json!({"userId": "alice", "type": "coinbase", "accessToken": "a1"})).await?;
    assert_eq!(first.code, 200, "{}", first.raw);
    assert_eq!(first.content()["created"], json!(true));
    let tid = token_id(&first);
    assert_eq!(uuid::Uuid::parse_str(&tid)?.get_version_num(), 4);

    // Same user and integration → same tokenId.
    let again = app
        .import(&c.read, json!({"userId": "alice", "type": "coinbase", "accessToken": "second-access-token-a2"}))
        .await?;
    assert_eq!(token_id(&again), tid);
    assert_eq!(again.content()["created"], json!(false));
    // Different user → new tokenId.
    let bob = app.import(&c.read, json!({"userId": "bob", "type": "coinbase", "accessToken": "b"})).await?;
    assert_ne!(token_id(&bob), tid);
    // Same user with the write key → a distinct, write-scoped tokenId.
    let write = app.import(&c.write, json!({"userId": "alice", "type": "coinbase", "accessToken": "w"})).await?;
    assert_ne!(token_id(&write), tid);
    assert_eq!(write.content()["scope"], json!("write"));

    // Status, without secrets.
    let status = app.status(&c.id, &c.read, &tid).await?;
    assert_eq!(status.code, 200);
    for field in [
        "tokenId",
        "userId",
        "brokerType",
        "scope",
        "status",
        "accessTokenExpiresAt",
        "refreshTokenExpiresAt",
        "lastRefreshedAt",
        "refreshCount",
    ] {
        assert!(status.content().get(field).is_some(), "missing {field}: {}", status.raw);
    }
    assert_eq!(status.content()["status"], json!("active"));
    assert!(!status.raw.contains("second-access-token-a2"), "a secret leaked into the status: {}", status.raw);
    // Missing expiresInSeconds took the catalog default, not "no expiry".
    assert!(status.content()["accessTokenExpiresAt"].is_string());

    // Another client → tokenNotFound, identical to a tokenId that never existed.
    let other = common::create_client(&app.vault, "other").await?;
    let foreign = app.status(&other.id, &other.read, &tid).await?;
    let never = app.status(&other.id, &other.read, &uuid::Uuid::new_v4().to_string()).await?;
    assert_eq!((foreign.code, foreign.error_type()), (404, "tokenNotFound"));
    assert_eq!(foreign.raw, never.raw);
    let foreign_delete = app.remove(&other.id, &other.write, &tid, "coinbase").await?;
    assert_eq!((foreign_delete.code, foreign_delete.error_type()), (404, "tokenNotFound"));

    // Deleted → tokenNotFound, and never reissued.
    let removed = app.remove(&c.id, &c.read, &tid, "coinbase").await?;
    assert_eq!(removed.code, 200, "{}", removed.raw);
    assert_eq!(removed.body["status"], json!("ok"));
    assert_eq!(app.status(&c.id, &c.read, &tid).await?.error_type(), "tokenNotFound");
    assert_eq!(app.remove(&c.id, &c.read, &tid, "coinbase").await?.error_type(), "tokenNotFound");
    let reconnect = app.import(&c.read, json!({"userId": "alice", "type": "coinbase", "accessToken": "a3"})).await?;
    assert_ne!(token_id(&reconnect), tid);
    Ok::<(), Box<dyn std::error::Error>>(())
});

on_every_backend!(authentication_failures_are_empty_401s, |backend| async move {
    let app = spawn_app(backend).await?;
    let c = &app.client;
    let body = Some(json!({"userId": "u", "type": "coinbase", "accessToken": "x"}).to_string());
    // The real secret with its last character changed (to one it does not already have).
    let last = if c.write.ends_with('x') { 'y' } else { 'x' };
    let forged = format!("{}{last}", &c.write[..c.write.len() - 1]);
    let cases: Vec<Option<(&str, &str)>> = vec![
        None,
        Some((c.id.as_str(), "")),
        Some(("", c.write.as_str())),
        Some((c.id.as_str(), forged.as_str())),
        Some(("00000000-0000-0000-0000-000000000000", c.write.as_str())),
        Some(("not-a-uuid", c.write.as_str())),
    ];
    for creds in cases {
        let answer = app.call(Method::POST, "/api/v1/tokens/import", creds, body.clone()).await?;
        assert_eq!(answer.code, 401, "{creds:?}");
        assert!(answer.raw.is_empty(), "401 must have an empty body: {:?}", answer.raw);
    }
    // A revoked key stops working at once.
    let client_id = c.id.parse()?;
    assert_eq!(app.vault.revoke_api_key(client_id, &c.write[..12]).await?, 1);
    let answer = app
        .call(Method::GET, "/api/v1/tokens/00000000-0000-0000-0000-000000000000", Some((&c.id, &c.write)), None)
        .await?;
    assert_eq!(answer.code, 401);
    Ok::<(), Box<dyn std::error::Error>>(())
});

on_every_backend!(every_documented_api_operation_requires_client_credentials, |backend| async move {
    // Authentication is an argument of each handler, so this walks every `/api/v1` operation the OpenAPI
    // document lists: without credentials, or with a forged secret, each is an empty 401, decided before the
    // (malformed) body or the path is looked at.
    let app = spawn_app(backend).await?;
    let c = &app.client;
    let forged = format!("{}{}", &c.write[..c.write.len() - 1], if c.write.ends_with('x') { 'y' } else { 'x' });
    let spec: serde_json::Value = serde_json::from_str(include_str!("../../../docs/openapi.json"))?;
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().ok_or("openapi.json has no paths")? {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        let concrete = path.replace("{tokenId}", "not-a-token-id");
        for method in item.as_object().ok_or("a path item is not an object")?.keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes())?;
            for creds in [None, Some((c.id.as_str(), forged.as_str()))] {
                let answer = app.call(method.clone(), &concrete, creds, Some("{".into())).await?;
                assert_eq!((answer.code, answer.raw.as_str()), (401, ""), "{method} {path} with {creds:?}");
            }
            operations += 1;
        }
    }
    assert!(operations >= 14, "only {operations} /api/v1 operations in openapi.json");
    Ok::<(), Box<dyn std::error::Error>>(())
});

on_every_backend!(bad_input_gets_a_4xx_that_names_the_problem, |backend| async move {
    let app = spawn_app(backend).await?;
    let c = &app.client;
    let creds = Some((c.id.as_str(), c.write.as_str()));
    let long_user = "u".repeat(301);
    let huge = format!(r#"{{"userId":"u","type":"coinbase","accessToken":"{}"}}"#, "x".repeat(70 * 1024));
    let cases: Vec<(Method, &str, String, &str, &str)> = vec![
        (Method::POST, "/api/v1/tokens/import", "{".into(), "invalidJson", ""),
        (Method::POST, "/api/v1/tokens/import", "".into(), "invalidJson", ""),
        (Method::POST, "/api/v1/tokens/import", "[]".into(), "invalidJson", ""),
        (
            Method::POST,
            "/api/v1/tokens/import",
            r#"{"type":"coinbase","accessToken":"x"}"#.into(),
            "missingField",
            "userId",
        ),
        (Method::POST, "/api/v1/tokens/import", r#"{"userId":"u","accessToken":"x"}"#.into(), "missingField", "type"),
        (
            Method::POST,
            "/api/v1/tokens/import",
            r#"{"userId":"u","type":"coinbase"}"#.into(),
            "missingField",
            "accessToken",
        ),
        (
            Method::POST,
            "/api/v1/tokens/import",
            r#"{"userId":7,"type":"coinbase","accessToken":"x"}"#.into(),
            "invalidField",
            "userId",
        ),
        (
            Method::POST,
            "/api/v1/tokens/import",
            r#"{"userId":"u","type":"coinbase","accessToken":"x","expiresInSeconds":"soon"}"#.into(),
            "invalidField",
            "expiresInSeconds",
        ),
        (
            Method::POST,
            "/api/v1/tokens/import",
            r#"{"userId":"u","type":"coinbase","accessToken":"x","expiresInSeconds":-5}"#.into(),
            "invalidField",
            "expiresInSeconds",
        ),
        (
            Method::POST,
            "/api/v1/tokens/import",
            r#"{"userId":"u","type":"coinbase","accessToken":"x","expiresInSeconds":0}"#.into(),
            "invalidField",
            "expiresInSeconds",
        ),
        (
            Method::POST,
            "/api/v1/tokens/import",
            format!(r#"{{"userId":"{long_user}","type":"coinbase","accessToken":"x"}}"#),
            "invalidField",
            "userId",
        ),
        (
            Method::POST,
            "/api/v1/tokens/import",
            r#"{"userId":"","type":"coinbase","accessToken":"x"}"#.into(),
            "invalidField",
            "userId",
        ),
        (
            Method::POST,
            "/api/v1/tokens/import",
            r#"{"userId":"u","type":"notAnExchange","accessToken":"x"}"#.into(),
            "integrationNotFound",
            "type",
        ),
        (
            Method::POST,
            "/api/v1/tokens/import",
            r#"{"userId":"u","type":"coinbase","accessToken":""}"#.into(),
            "invalidField",
            "accessToken",
        ),
        (Method::POST, "/api/v1/tokens/import", huge, "bodyTooLarge", ""),
        (Method::DELETE, "/api/v1/account", "{".into(), "invalidJson", ""),
        (Method::DELETE, "/api/v1/account", r#"{"type":"coinbase"}"#.into(), "missingField", "authToken"),
        (Method::DELETE, "/api/v1/account", r#"{"authToken":"x"}"#.into(), "missingField", "type"),
        (Method::DELETE, "/api/v1/account", r#"{"authToken":"x","type":"nope"}"#.into(), "integrationNotFound", "type"),
        (
            Method::DELETE,
            "/api/v1/account",
            r#"{"authToken":"not-a-token","type":"coinbase"}"#.into(),
            "tokenNotFound",
            "",
        ),
        (
            Method::DELETE,
            "/api/v1/account",
            r#"{"authToken":"","type":"coinbase"}"#.into(),
            "invalidField",
            "authToken",
        ),
    ];
    for (method, path, body, error_type, field) in cases {
        let answer = app.call(method.clone(), path, creds, Some(body.clone())).await?;
        let shown = body.chars().take(80).collect::<String>();
        assert!((400..500).contains(&answer.code), "{method} {path} {shown}: {} {}", answer.code, answer.raw);
        assert_eq!(answer.error_type(), error_type, "{method} {path} {shown}: {}", answer.raw);
        assert!(answer.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", answer.raw);
        if !field.is_empty() {
            assert_eq!(answer.body["errorData"]["field"], json!(field), "{}", answer.raw);
            assert!(answer.body["message"].as_str().unwrap_or_default().contains(field), "{}", answer.raw);
        }
    }
    // Malformed tokenIds in the path, and unknown endpoints.
    let answer = app.call(Method::GET, "/api/v1/tokens/%00%ff", creds, None).await?;
    assert_eq!((answer.code, answer.error_type()), (404, "tokenNotFound"));
    let answer = app.call(Method::GET, "/api/v1/nope", creds, None).await?;
    assert_eq!((answer.code, answer.error_type()), (404, "endpointNotFound"));
    Ok::<(), Box<dyn std::error::Error>>(())
});

/// Every byte the data dir holds: database, WAL, shared memory, anything else.
fn data_dir_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap_or_default()))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_never_hold_plaintext_and_forget_deleted_ciphertext() -> TestResult {
    let app = spawn_app(Backend::Sqlite).await?;
    let c = &app.client;
    let secret = format!("DISTINCTIVE-ACCESS-{}", uuid::Uuid::new_v4().simple());
    let refresh = format!("DISTINCTIVE-REFRESH-{}", uuid::Uuid::new_v4().simple());
    let answer = app
        .import(
            &c.write,
            json!({"userId": "alice", "type": "coinbase", "accessToken": secret, "refreshToken": refresh}),
        )
        .await?;
    assert_eq!(answer.code, 200);
    let tid = token_id(&answer);
    // A second connection, so deletion has neighbours to leave intact.
    app.import(&c.write, json!({"userId": "bob", "type": "coinbase", "accessToken": "bob-token"})).await?;

    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let needles: Vec<Vec<u8>> = [&secret, &refresh]
        .iter()
        .flat_map(|s| [s.as_bytes().to_vec(), b64.encode(s).into_bytes(), b64url.encode(s).into_bytes()])
        .collect();
    let files = data_dir_bytes(app.fresh.dir.path());
    assert!(
        files.iter().any(|(n, _)| n.ends_with("-wal")),
        "expected a WAL file: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, bytes) in &files {
        for needle in &needles {
            assert!(!contains(bytes, needle), "{name} contains a secret in clear or base64");
        }
    }

    // The stored ciphertext and wrapped key are present before deletion...
    let record = app.vault.connection_for(c.id.parse()?, tid.parse()?).await?;
    let sealed = [record.credentials.clone(), record.wrapped_data_key.clone()];
    let all: Vec<u8> = data_dir_bytes(app.fresh.dir.path()).into_iter().flat_map(|(_, b)| b).collect();
    assert!(sealed.iter().all(|s| contains(&all, s)), "ciphertext should be on disk before deletion");
    // ...and gone from every file right after.
    assert_eq!(app.remove(&c.id, &c.write, &tid, "coinbase").await?.code, 200);
    for (name, bytes) in data_dir_bytes(app.fresh.dir.path()) {
        for s in &sealed {
            assert!(!contains(&bytes, s), "{name} still holds the deleted connection's sealed bytes");
        }
    }
    Ok(())
}

on_every_backend!(webhook_endpoint_is_set_with_a_write_key, |backend| async move {
    let app = spawn_app(backend).await?;
    let c = &app.client;
    let body = Some(json!({"url": "https://app.example.com/hooks"}).to_string());
    let read = app.call(Method::POST, "/api/v1/webhooks", Some((&c.id, &c.read)), body.clone()).await?;
    assert_eq!((read.code, read.error_type()), (403, "keyScopeInsufficient"), "{}", read.raw);
    let set = app.call(Method::POST, "/api/v1/webhooks", Some((&c.id, &c.write)), body).await?;
    assert_eq!(set.code, 200, "{}", set.raw);
    let secret = set.content()["secret"].as_str().unwrap_or_default().to_owned();
    assert!(secret.starts_with("whsec_"));
    let shown = app.call(Method::GET, "/api/v1/webhooks", Some((&c.id, &c.read)), None).await?;
    assert_eq!(shown.content()["url"], "https://app.example.com/hooks");
    assert!(!shown.raw.contains(&secret), "the secret is shown only once");
    let bad = app
        .call(Method::POST, "/api/v1/webhooks", Some((&c.id, &c.write)), Some(json!({"url": "nope"}).to_string()))
        .await?;
    assert_eq!((bad.code, bad.error_type()), (400, "invalidField"), "{}", bad.raw);
    Ok::<(), Box<dyn std::error::Error>>(())
});

/// The `linkvault_connections` gauge of a scrape, `None` when absent.
fn gauge(metrics: &str) -> Option<u64> {
    metrics.lines().find_map(|l| l.strip_prefix("linkvault_connections ")).and_then(|v| v.trim().parse().ok())
}

on_every_backend!(connection_gauge_is_counted_once_per_interval_not_per_scrape, |backend| async move {
    let clock = std::sync::Arc::new(linkvault_domain::ManualClock::new(time::OffsetDateTime::now_utc()));
    let app =
        common::spawn_app_with(backend, common::Options { clock: Some(clock.clone()), ..common::Options::default() })
            .await?;
    let scrape = || async { app.http.get(format!("{}/metrics", app.base)).send().await?.text().await };
    assert_eq!(gauge(&scrape().await?), Some(0));
    let imported =
        app.import(&app.client.read, json!({"userId": "u1", "type": "coinbase", "accessToken": "a"})).await?;
    assert_eq!(imported.code, 200, "{}", imported.raw);
    assert_eq!(app.fresh.store.count_connections().await?, 1);
    // Scrapes within the interval answer the figure counted first: the database is not counted again.
    for _ in 0..5 {
        assert_eq!(gauge(&scrape().await?), Some(0), "a scrape counted the connections again");
    }
    clock.advance(linkvault_server::CONNECTIONS_GAUGE_TTL);
    assert_eq!(gauge(&scrape().await?), Some(1), "the interval is over: counted again");
    Ok::<_, Box<dyn std::error::Error>>(())
});

on_every_backend!(metrics_token_is_required_when_configured, |backend| async move {
    let secret = "metrics-token-0123456789";
    let token = linkvault_server::MetricsToken::parse(secret).map_err(|e| e.to_string())?;
    let app =
        common::spawn_app_with(backend, common::Options { metrics_token: Some(token), ..common::Options::default() })
            .await?;
    let url = format!("{}/metrics", app.base);
    let none = app.http.get(&url).send().await?;
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    assert_eq!(none.text().await?, "", "nothing about the metrics without the token");
    for wrong in [format!("Bearer {secret}x"), "Bearer metrics-token-0123456788".to_owned(), format!("Basic {secret}")]
    {
        let answer = app.http.get(&url).header("authorization", wrong.as_str()).send().await?;
        assert_eq!(answer.status(), 401, "{wrong}");
    }
    let right = app.http.get(&url).bearer_auth(secret).send().await?;
    assert_eq!(right.status(), 200);
    assert!(right.text().await?.contains("linkvault_http_responses_total"));
    // The other operational endpoints stay open (probes carry no token).
    assert_eq!(app.http.get(format!("{}/healthz", app.base)).send().await?.status(), 200);
    Ok::<_, Box<dyn std::error::Error>>(())
});

#[tokio::test]
async fn metrics_stay_open_without_a_token() -> TestResult {
    let app = common::spawn_app_with(Backend::Sqlite, common::Options::default()).await?;
    let answer = app.http.get(format!("{}/metrics", app.base)).send().await?;
    assert_eq!(answer.status(), 200);
    Ok(())
}

// SSRF: a webhook URL whose host is a loopback, private, link-local (metadata) or other non-public address is
// a 400 naming `url` and saying why; plain http needs the operator's allowance (`--webhook-allow-http`).
on_every_backend!(webhook_urls_to_non_public_addresses_are_refused, |backend| async move {
    let app = spawn_app(backend).await?;
    let c = &app.client;
    for (url, why) in [
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://127.0.0.1/hooks", "loopback"),
        ("https://[::1]:5432/", "loopback"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://192.168.1.20/hooks", "private"),
        ("https://[fd00::1]/hooks", "private"),
        ("https://100.64.0.1/hooks", "carrier-grade NAT"),
        ("https://0.0.0.0/hooks", "unspecified"),
        ("https://localhost:8443/hooks", "loopback"),
        ("http://app.example.com/hooks", "must use https"),
    ] {
        let body = Some(json!({"url": url}).to_string());
        let refused = app.call(Method::POST, "/api/v1/webhooks", Some((&c.id, &c.write)), body).await?;
        assert_eq!((refused.code, refused.error_type()), (400, "invalidField"), "{url}: {}", refused.raw);
        assert!(refused.raw.contains("url") && refused.raw.contains(why), "{url}: {}", refused.raw);
    }
    let shown = app.call(Method::GET, "/api/v1/webhooks", Some((&c.id, &c.read)), None).await?;
    assert!(!shown.raw.contains("169.254"), "nothing refused was stored: {}", shown.raw);
    Ok::<(), Box<dyn std::error::Error>>(())
});
