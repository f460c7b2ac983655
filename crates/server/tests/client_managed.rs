//! Client-managed token mode over HTTP: `/api/v1/authenticate` and Link hand a client-mode client linkvault
//! access (`lva_`) and refresh (`lvr_`) tokens; holdings, balance and deletion accept the access token;
//! `POST /api/v1/token/refresh` issues access tokens, rotates refresh tokens with `createNewRefreshToken`,
//! and revokes the family when a spent refresh token comes back (also under concurrency); an expired
//! access token is `tokenExpired` (tested with a clock moved by hand, no sleeping); isolation between
//! clients holds. Runs on SQLite, and PostgreSQL when `LINKVAULT_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Answer, ClientCreds, Options, TestApp, TestResult, create_client_in_mode, spawn_app_with};
use linkvault_domain::{Clock, ManualClock, TokenMode};
use linkvault_storage::testing::Backend;
use linkvault_vault::ClientTokenPolicy;
use reqwest::Method;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

const BINANCE: &str = "binanceInternationalDirect";

type Error = Box<dyn std::error::Error>;

struct Setup {
    app: TestApp,
    clock: Arc<ManualClock>,
    cm: ClientCreds,
}

async fn setup(backend: Backend, policy: ClientTokenPolicy) -> Result<Setup, Error> {
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let options = Options {
        sandbox: true,
        clock: Some(Arc::clone(&clock) as Arc<dyn Clock>),
        client_token_policy: Some(policy),
        ..Options::default()
    };
    let app = spawn_app_with(backend, options).await?;
    let cm = create_client_in_mode(&app.vault, "client-managed app", TokenMode::Client).await?;
    Ok(Setup { app, clock, cm })
}

async fn post(app: &TestApp, creds: (&str, &str), path: &str, body: Value) -> Result<Answer, Error> {
    app.call(Method::POST, path, Some(creds), Some(body.to_string())).await
}

/// Signs `user` in to the Binance-like sandbox through `/api/v1/authenticate` (MFA in one step).
async fn authenticate(app: &TestApp, creds: (&str, &str), user: &str) -> Result<Answer, Error> {
    let body = json!({"type": BINANCE, "username": "Mesh", "password": "Pass123", "mfaCode": "123456"});
    let answer = post(app, creds, &format!("/api/v1/authenticate?userId={user}"), body).await?;
    assert_eq!(answer.code, 200, "{}", answer.raw);
    assert_eq!(answer.content()["status"], "succeeded", "{}", answer.raw);
    Ok(answer)
}

/// The access and refresh token of an authenticate / refresh answer's first account.
fn tokens(answer: &Answer, list: &str) -> (String, String) {
    let entry = &answer.content()[list][0];
    (
        entry["accessToken"].as_str().unwrap_or_default().to_owned(),
        entry["refreshToken"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn refresh(
    app: &TestApp,
    creds: (&str, &str),
    refresh_token: &str,
    rotate: Option<bool>,
) -> Result<Answer, Error> {
    let mut body = json!({"refreshToken": refresh_token, "type": BINANCE});
    if let Some(rotate) = rotate {
        body["createNewRefreshToken"] = json!(rotate);
    }
    post(app, creds, "/api/v1/token/refresh", body).await
}

async fn holdings(app: &TestApp, creds: (&str, &str), access: &str) -> Result<Answer, Error> {
    post(app, creds, "/api/v1/holdings/get", json!({"authToken": access, "type": BINANCE})).await
}

fn assert_refused(answer: &Answer, code: u16, error_type: &str) {
    assert_eq!((answer.code, answer.error_type()), (code, error_type), "{}", answer.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_refresh_rotation_and_reuse_detection() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let Setup { app, cm, .. } = setup(backend, ClientTokenPolicy::default()).await?;
        let read = (cm.id.as_str(), cm.read.as_str());

        // The sign-in hands out linkvault's tokens and lifetimes, never a tokenId or the integration's session.
        let auth = authenticate(&app, read, "alice").await?;
        let (a1, r1) = tokens(&auth, "accountTokens");
        assert!(a1.starts_with("lva_") && r1.starts_with("lvr_"), "{}", auth.raw);
        assert!(auth.content()["accountTokens"][0].get("tokenId").is_none(), "{}", auth.raw);
        assert_eq!(auth.content()["expiresInSeconds"], json!(3600));
        assert_eq!(auth.content()["refreshTokenExpiresInSeconds"], json!(30 * 86_400));
        let token_id = app.vault.resolve_access_token(cm.id.parse()?, &a1).await?.map_err(|e| e.to_string())?;
        let record = app.vault.connection_for(cm.id.parse()?, token_id).await?;
        let session = app.vault.open_credentials(&record).await?;
        let raw_session = secrecy::ExposeSecret::expose_secret(&session.access_token).to_owned();
        assert!(!auth.raw.contains(&raw_session) && !auth.raw.contains(&token_id.to_string()));
        assert_ne!(auth.content()["accountTokens"][0]["account"]["meshAccountId"], json!(token_id.to_string()));

        // The access token works where a tokenId does.
        let h = holdings(&app, read, &a1).await?;
        assert_eq!((h.code, h.content()["status"].as_str()), (200, Some("succeeded")), "{}", h.raw);
        let b = post(&app, read, "/api/v1/balance/get", json!({"authToken": a1, "type": BINANCE})).await?;
        assert_eq!(b.code, 200, "{}", b.raw);
        assert!(!h.raw.contains(&raw_session) && !b.raw.contains(&raw_session));

        // Refresh without rotation: a new access token; the refresh token stays (and is echoed); the earlier
        // access token keeps working until it expires.
        let plain = refresh(&app, read, &r1, None).await?;
        assert_eq!(plain.code, 200, "{}", plain.raw);
        assert_eq!(plain.content()["status"], "succeeded");
        assert_eq!(plain.content()["expiresInSeconds"], json!(3600));
        let (a2, same_r) = tokens(&plain, "brokerAccountTokens");
        assert!(a2.starts_with("lva_") && a2 != a1);
        assert_eq!(same_r, r1);
        for access in [&a1, &a2] {
            assert_eq!(holdings(&app, read, access).await?.content()["status"], "succeeded");
        }
        let explicit_false = refresh(&app, read, &r1, Some(false)).await?;
        assert_eq!(tokens(&explicit_false, "brokerAccountTokens").1, r1);

        // createNewRefreshToken: a new refresh token; the presented one is spent.
        let rotated = refresh(&app, read, &r1, Some(true)).await?;
        assert_eq!(rotated.code, 200, "{}", rotated.raw);
        let (a3, r2) = tokens(&rotated, "brokerAccountTokens");
        assert!(r2.starts_with("lvr_") && r2 != r1 && a3 != a2);
        assert_eq!(rotated.content()["refreshTokenExpiresInSeconds"], json!(30 * 86_400));
        let again = refresh(&app, read, &r2, None).await?;
        assert_eq!(again.code, 200, "the new refresh token works: {}", again.raw);

        // The spent refresh token again: reuse. The whole family is revoked, whichever token comes next.
        let reuse = refresh(&app, read, &r1, None).await?;
        assert_refused(&reuse, 403, "refreshTokenReused");
        assert_eq!(reuse.body["status"], "permissionDenied");
        for access in [&a1, &a2, &a3] {
            assert_refused(&holdings(&app, read, access).await?, 403, "tokenRevoked");
        }
        for r in [&r2, &r1] {
            assert_refused(&refresh(&app, read, r, Some(true)).await?, 403, "tokenRevoked");
        }
        // The connection itself is untouched: signing in again hands out a working family.
        let back = authenticate(&app, read, "alice").await?;
        assert_eq!(back.content()["accountTokens"][0]["account"]["isReconnected"], json!(true));
        let (a4, _) = tokens(&back, "accountTokens");
        assert_eq!(holdings(&app, read, &a4).await?.content()["status"], "succeeded");
    }
    Ok(())
}

/// A client-mode app on `backend` with alice signed in: the setup and her access and refresh token.
async fn alice_signed_in(backend: Backend) -> Result<(Setup, String, String), Error> {
    eprintln!("on {backend:?}");
    let setup = setup(backend, ClientTokenPolicy::default()).await?;
    let auth = authenticate(&setup.app, (setup.cm.id.as_str(), setup.cm.read.as_str()), "alice").await?;
    let (access, refresh_token) = tokens(&auth, "accountTokens");
    Ok((setup, access, refresh_token))
}

/// Finding 14.5b, the reproduction: a refresh-token reuse revokes the family, and the raw tokenId behind
/// it must not keep the account readable. A client-mode caller's tokenId is refused on every token-backed
/// endpoint (before and after the revocation), with the same answer whether the id exists or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_mode_caller_cannot_use_the_raw_token_id() -> TestResult {
    for backend in Backend::all() {
        let (Setup { app, cm, .. }, a1, r1) = alice_signed_in(backend).await?;
        let read = (cm.id.as_str(), cm.read.as_str());
        let token_id = app.vault.resolve_access_token(cm.id.parse()?, &a1).await?.map_err(|e| e.to_string())?;
        let raw = token_id.to_string();
        let balance =
            |token: String| post(&app, read, "/api/v1/balance/get", json!({"authToken": token, "type": BINANCE}));

        assert_eq!(balance(a1.clone()).await?.code, 200, "the handed-out access token works");
        let refused = balance(raw.clone()).await?;
        assert_refused(&refused, 404, "tokenNotFound");
        let unknown = balance(linkvault_domain::TokenId::new_random().to_string()).await?;
        assert_eq!(unknown.raw, refused.raw, "an existing tokenId is refused exactly like an unknown one");

        // The reuse: the family is revoked.
        assert_eq!(refresh(&app, read, &r1, Some(true)).await?.code, 200);
        assert_refused(&refresh(&app, read, &r1, None).await?, 403, "refreshTokenReused");
        assert_refused(&balance(a1.clone()).await?, 403, "tokenRevoked");

        // The raw tokenId does not answer 200 anywhere: reads, transfers' source, deletion.
        let after = balance(raw.clone()).await?;
        assert_ne!(after.code, 200, "{}", after.raw);
        assert_refused(&after, 404, "tokenNotFound");
        assert_refused(&holdings(&app, read, &raw).await?, 404, "tokenNotFound");
        let write = (cm.id.as_str(), cm.write.as_str());
        let execute = json!({"fromAuthToken": raw, "fromType": BINANCE, "previewId": uuid::Uuid::new_v4()});
        assert_refused(&post(&app, write, "/api/v1/transfers/managed/execute", execute).await?, 404, "tokenNotFound");
        assert_refused(&app.remove(&cm.id, &cm.read, &raw, BINANCE).await?, 404, "tokenNotFound");
        assert!(app.vault.connection_for(cm.id.parse()?, token_id).await.is_ok(), "the refused delete removed nothing");
    }
    Ok(())
}

/// Finding 14.5b for the other two ways a client-mode client meets a connection: `POST /tokens/import` hands out a
/// token family (no tokenId in the answer), and `GET /tokens/{tokenId}` names nothing to it (404 like an
/// unknown id), while the imported connection is usable through the family's access token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mode_import_hands_out_a_family_and_status_by_token_id_is_refused() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let Setup { app, cm, .. } = setup(backend, ClientTokenPolicy::default()).await?;
        let body = json!({"userId": "bob", "type": "coinbase", "accessToken": "at-1", "refreshToken": "rt-1"});
        let imported = app.import_as(&cm.id, &cm.write, body).await?;
        assert_eq!(imported.code, 200, "{}", imported.raw);
        let content = imported.content();
        assert!(content.get("tokenId").is_none(), "no tokenId for a client-mode client: {}", imported.raw);
        let access = content["accessToken"].as_str().unwrap_or_default().to_owned();
        assert!(access.starts_with("lva_"), "{}", imported.raw);
        assert!(content["refreshToken"].as_str().is_some_and(|r| r.starts_with("lvr_")), "{}", imported.raw);
        assert_eq!(content["expiresInSeconds"], 3600, "{}", imported.raw);
        assert_eq!((content["userId"].as_str(), content["created"].as_bool()), (Some("bob"), Some(true)));

        // The family names the connection; its tokenId names nothing to this client, exactly like an unknown id.
        let token_id = app.vault.resolve_access_token(cm.id.parse()?, &access).await?.map_err(|e| e.to_string())?;
        assert_eq!(content["meshAccountId"], linkvault_vault::events::mesh_account_id(token_id).to_string());
        let read = Some((cm.id.as_str(), cm.read.as_str()));
        let refused = app.call(Method::GET, &format!("/api/v1/tokens/{token_id}"), read, None).await?;
        assert_refused(&refused, 404, "tokenNotFound");
        let other = linkvault_domain::TokenId::new_random();
        let unknown = app.call(Method::GET, &format!("/api/v1/tokens/{other}"), read, None).await?;
        assert_eq!(refused.raw, unknown.raw);
        let removed = app.remove(&cm.id, &cm.write, &access, "coinbase").await?;
        assert_eq!(removed.code, 200, "the access token is the connection's name: {}", removed.raw);
        assert!(app.vault.connection_for(cm.id.parse()?, token_id).await.is_err(), "deleted");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_and_refresh_tokens() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let policy = ClientTokenPolicy { access_ttl: Duration::minutes(10), refresh_ttl: Some(Duration::hours(2)) };
        let Setup { app, clock, cm } = setup(backend, policy).await?;
        let read = (cm.id.as_str(), cm.read.as_str());
        let auth = authenticate(&app, read, "alice").await?;
        assert_eq!(auth.content()["expiresInSeconds"], json!(600));
        assert_eq!(auth.content()["refreshTokenExpiresInSeconds"], json!(7200));
        let (a1, r1) = tokens(&auth, "accountTokens");

        clock.advance(Duration::minutes(10));
        assert_refused(&holdings(&app, read, &a1).await?, 403, "tokenExpired");
        let b = post(&app, read, "/api/v1/balance/get", json!({"authToken": a1, "type": BINANCE})).await?;
        assert_refused(&b, 403, "tokenExpired");
        assert_eq!(b.body["status"], "permissionDenied");

        // The refresh token outlives it: a new access token works (the integration session is still valid).
        let fresh = refresh(&app, read, &r1, None).await?;
        assert_eq!(fresh.code, 200, "{}", fresh.raw);
        let (a2, _) = tokens(&fresh, "brokerAccountTokens");
        assert_eq!(holdings(&app, read, &a2).await?.content()["status"], "succeeded");

        // Access tokens never outlive the refresh token.
        clock.advance(Duration::minutes(105));
        let capped = refresh(&app, read, &r1, None).await?;
        assert_eq!(capped.content()["expiresInSeconds"], json!(300), "{}", capped.raw);
        assert_eq!(capped.content()["refreshTokenExpiresInSeconds"], json!(300));

        // Past the refresh token's end: tokenExpired, and the app must connect the user again.
        clock.advance(Duration::minutes(5));
        assert_refused(&refresh(&app, read, &r1, Some(true)).await?, 403, "tokenExpired");
        assert_refused(&holdings(&app, read, &a2).await?, 403, "tokenExpired");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_presentations_of_one_refresh_token_exactly_one_succeeds() -> TestResult {
    const RACERS: usize = 8;
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let Setup { app, cm, .. } = setup(backend, ClientTokenPolicy::default()).await?;
        let app = Arc::new(app);
        let auth = authenticate(&app, (&cm.id, &cm.read), "alice").await?;
        let (_, r1) = tokens(&auth, "accountTokens");
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..RACERS {
            let (app, barrier, r1, id, key) =
                (Arc::clone(&app), Arc::clone(&barrier), r1.clone(), cm.id.clone(), cm.read.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let a = refresh(&app, (&id, &key), &r1, Some(true)).await.map_err(|e| e.to_string())?;
                Ok::<_, String>((a.code, a.error_type().to_owned(), tokens(&a, "brokerAccountTokens").0))
            });
        }
        let mut answers = Vec::new();
        while let Some(done) = tasks.join_next().await {
            answers.push(done??);
        }
        let winners: Vec<_> = answers.iter().filter(|(code, ..)| *code == 200).collect();
        assert_eq!(winners.len(), 1, "exactly one rotation succeeds: {answers:?}");
        let losers: Vec<_> = answers.iter().filter(|(code, ..)| *code != 200).collect();
        assert!(losers.iter().all(|(code, t, _)| *code == 403 && (t == "refreshTokenReused" || t == "tokenRevoked")));
        assert!(losers.iter().any(|(_, t, _)| t == "refreshTokenReused"), "{answers:?}");
        // Reuse revoked the family, the winner's new tokens included (RFC 9700 §4.14.2).
        assert_refused(&holdings(&app, (&cm.id, &cm.read), &winners[0].2).await?, 403, "tokenRevoked");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_wrong_inputs_and_managed_clients() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let Setup { app, cm, .. } = setup(backend, ClientTokenPolicy::default()).await?;
        let read = (cm.id.as_str(), cm.read.as_str());
        let other = create_client_in_mode(&app.vault, "other", TokenMode::Client).await?;
        let other_read = (other.id.as_str(), other.read.as_str());
        let auth = authenticate(&app, read, "alice").await?;
        let (a1, r1) = tokens(&auth, "accountTokens");

        // Another client: the access token is not found, exactly like an unknown tokenId; the refresh token is
        // unknown, and presenting it neither spends nor revokes anything.
        assert_refused(&holdings(&app, other_read, &a1).await?, 404, "tokenNotFound");
        let garbage_id = holdings(&app, other_read, "00000000-0000-4000-8000-000000000000").await?;
        assert_eq!(holdings(&app, other_read, &a1).await?.raw, garbage_id.raw);
        let foreign = refresh(&app, other_read, &r1, Some(true)).await?;
        assert_refused(&foreign, 400, "badRequest");
        assert_eq!(foreign.body["message"], "Unauthorized token");
        assert_eq!(
            foreign.body["displayMessage"],
            "Could not refresh the authentication token. The provided data is not correct"
        );
        let removed = app
            .call(
                Method::DELETE,
                "/api/v1/account",
                Some(other_read),
                Some(json!({"authToken": a1, "type": BINANCE}).to_string()),
            )
            .await?;
        assert_refused(&removed, 404, "tokenNotFound");

        // A known but different type is as unknown as a foreign token; an unknown type says so.
        let wrong_type =
            post(&app, read, "/api/v1/token/refresh", json!({"refreshToken": r1, "type": "coinbase"})).await?;
        assert_refused(&wrong_type, 400, "badRequest");
        let no_type = post(&app, read, "/api/v1/token/refresh", json!({"refreshToken": r1, "type": "nope"})).await?;
        assert_refused(&no_type, 400, "integrationNotFound");
        let missing = post(&app, read, "/api/v1/token/refresh", json!({"type": BINANCE})).await?;
        assert_refused(&missing, 400, "missingField");
        assert_refused(&refresh(&app, read, &a1, None).await?, 400, "invalidField");
        assert_refused(&refresh(&app, read, "lvr_not-a-token", None).await?, 400, "badRequest");
        // None of that touched the family.
        assert_eq!(refresh(&app, read, &r1, Some(true)).await?.code, 200);

        // A managed client keeps tokenIds, and has nothing to refresh.
        let managed = (app.client.id.as_str(), app.client.read.as_str());
        let m = authenticate(&app, managed, "alice").await?;
        let entry = &m.content()["accountTokens"][0];
        assert_eq!(entry["accessToken"], entry["tokenId"]);
        assert!(entry.get("refreshToken").is_none() && m.content().get("refreshTokenExpiresInSeconds").is_none());
        let refused = refresh(&app, managed, &r1, None).await?;
        assert_refused(&refused, 400, "badRequest");
        assert!(refused.body["message"].as_str().unwrap_or_default().contains("managed tokens"), "{}", refused.raw);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_supersedes_and_deletion_removes_families() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let Setup { app, cm, .. } = setup(backend, ClientTokenPolicy::default()).await?;
        let read = (cm.id.as_str(), cm.read.as_str());
        let (a1, r1) = tokens(&authenticate(&app, read, "alice").await?, "accountTokens");
        let token_id = app.vault.resolve_access_token(cm.id.parse()?, &a1).await?.map_err(|e| e.to_string())?;

        // Signing in again (same user, integration and scope) lands on the same connection with a new family;
        // the app's earlier tokens are retired.
        let (a2, r2) = tokens(&authenticate(&app, read, "alice").await?, "accountTokens");
        assert_eq!(app.vault.resolve_access_token(cm.id.parse()?, &a2).await?.ok(), Some(token_id));
        assert_refused(&holdings(&app, read, &a1).await?, 403, "tokenRevoked");
        assert_refused(&refresh(&app, read, &r1, None).await?, 403, "tokenRevoked");
        assert_eq!(app.vault.client_token_families(token_id).await?.len(), 2);

        // Deleting with the access token removes the connection and every family with it.
        let removed = app
            .call(
                Method::DELETE,
                "/api/v1/account",
                Some(read),
                Some(json!({"authToken": a2, "type": BINANCE}).to_string()),
            )
            .await?;
        assert_eq!(removed.code, 200, "{}", removed.raw);
        assert!(app.vault.client_token_families(token_id).await?.is_empty());
        assert_refused(&holdings(&app, read, &a2).await?, 404, "tokenNotFound");
        assert_refused(&refresh(&app, read, &r2, None).await?, 400, "badRequest");
        assert_refused(&holdings(&app, read, &token_id.to_string()).await?, 404, "tokenNotFound");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_hands_client_tokens_to_the_app_and_accepts_them_from_return_users() -> TestResult {
    let Setup { app, cm, .. } = setup(Backend::Sqlite, ClientTokenPolicy::default()).await?;
    let read = (cm.id.as_str(), cm.read.as_str());
    let link = post(&app, read, "/api/v1/linktoken", json!({"userId": "alice"})).await?;
    let url = String::from_utf8(base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        link.content()["linkToken"].as_str().unwrap_or_default(),
    )?)?;
    let code = url.split("auth_code=").nth(1).unwrap_or_default().to_owned();
    let page = |path: &str, bearer: Option<&str>, body: Value| {
        let mut req = app.http.post(format!("{}{path}", app.base)).json(&body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b.to_owned());
        }
        async move {
            let res = req.send().await?;
            let code = res.status().as_u16();
            let raw = res.text().await?;
            Ok::<_, Error>(Answer { code, body: serde_json::from_str(&raw).unwrap_or(Value::Null), raw })
        }
    };
    let started = page("/link/api/session", None, json!({"authCode": code})).await?;
    let bearer = started.content()["sessionToken"].as_str().unwrap_or_default().to_owned();
    let signed_in = page(
        "/link/api/credentials",
        Some(&bearer),
        json!({"type": BINANCE, "username": "Mesh", "password": "Pass123", "mfaCode": "123456"}),
    )
    .await?;
    assert_eq!(signed_in.content()["status"], "succeeded", "{}", signed_in.raw);
    let payload = &signed_in.content()["payload"];
    let entry = &payload["accountTokens"][0];
    let (access, refresh_token) =
        (entry["accessToken"].as_str().unwrap_or_default(), entry["refreshToken"].as_str().unwrap_or_default());
    assert!(access.starts_with("lva_") && refresh_token.starts_with("lvr_"), "{}", signed_in.raw);
    assert!(entry.get("tokenId").is_none());
    // Finding 14.5b: no tokenId anywhere in a client-mode client's Link answers; the page names the connection
    // by the handed-out access token.
    let token_id = app.vault.resolve_access_token(cm.id.parse()?, access).await?.map_err(|e| e.to_string())?;
    assert!(!signed_in.raw.contains(&token_id.to_string()), "{}", signed_in.raw);
    assert!(signed_in.content().get("tokenId").is_none(), "{}", signed_in.raw);
    assert_eq!(signed_in.content()["handle"], json!(access));
    assert_eq!(
        (payload["expiresInSeconds"].as_i64(), payload["refreshTokenExpiresInSeconds"].as_i64()),
        (Some(3600), Some(30 * 86_400))
    );
    assert_eq!(holdings(&app, read, access).await?.content()["status"], "succeeded");
    assert_eq!(refresh(&app, read, refresh_token, Some(true)).await?.code, 200);

    // A return user presents its access token in frontAccessTokens: recognised, echoed, not re-issued.
    let tokens = json!({"tokens": [{"accessToken": access, "brokerType": BINANCE}, {"accessToken": "lva_unknown", "brokerType": BINANCE}]});
    let returned = page("/link/api/return-tokens", Some(&bearer), tokens).await?;
    let connections = returned.content()["connections"].as_array().cloned().unwrap_or_default();
    assert_eq!(connections.len(), 1, "{}", returned.raw);
    assert_eq!(connections[0]["payload"]["accountTokens"][0]["accessToken"], json!(access));
    assert!(connections[0]["payload"]["accountTokens"][0].get("refreshToken").is_none());
    assert!(!returned.raw.contains(&token_id.to_string()), "{}", returned.raw);
    assert_eq!(connections[0]["handle"], json!(access));
    // A raw tokenId is not a return user's token in client mode.
    let by_id = json!({"tokens": [{"accessToken": token_id.to_string(), "brokerType": BINANCE}]});
    let returned = page("/link/api/return-tokens", Some(&bearer), by_id).await?;
    assert_eq!(returned.content()["connections"], json!([]), "{}", returned.raw);
    Ok(())
}
