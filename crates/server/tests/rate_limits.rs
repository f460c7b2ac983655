//! Rate limits (issue 14, finding 4): per API client on `/api/v1`, per Link session (calls and sign-in
//! attempts), per client address on `/link/*` and session starts; the cap on pending OAuth sign-ins per Link
//! session; and the purge timer. Time moves on an injected clock, never by sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::{Options, TestApp, TestResult, auth_code, create_client, link_token_as, spawn_app_with};
use linkvault_domain::{Clock as _, ManualClock};
use linkvault_server::{LinkPurger, RateLimitConfig};
use linkvault_storage::testing::Backend;
use serde_json::{Value, json};

/// Status, `Retry-After` and body of one request.
struct Reply {
    code: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let res = req.send().await.unwrap();
    let code = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = serde_json::from_str(&res.text().await.unwrap()).unwrap_or(Value::Null);
    Reply { code, retry_after, body }
}

fn assert_limited(reply: &Reply, retry_after: &str, what: &str) {
    assert_eq!(reply.code, 429, "{what}: {}", reply.body);
    assert_eq!(reply.retry_after.as_deref(), Some(retry_after), "{what}: Retry-After in seconds");
    assert_eq!(reply.body["status"], "tooManyRequest", "{what}: Mesh's envelope");
    assert_eq!(reply.body["errorType"], "tooManyRequests", "{what}");
    assert!(reply.body["message"].as_str().unwrap().contains("retry after"), "{what}: {}", reply.body);
}

async fn integrations(app: &TestApp, id: &str, secret: &str) -> Reply {
    let url = format!("{}/api/v1/integrations", app.base);
    send(app.http.get(url).header("X-Client-Id", id).header("X-Client-Secret", secret)).await
}

async fn link_call(app: &TestApp, path: &str, bearer: Option<&str>, forwarded: Option<&str>, body: Value) -> Reply {
    let mut req = app.http.post(format!("{}{path}", app.base)).json(&body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(f) = forwarded {
        req = req.header("x-forwarded-for", f);
    }
    send(req).await
}

async fn open_session(app: &TestApp) -> String {
    let token = link_token_as(app, &app.client.id, &app.client.write, json!({"userId": "alice"})).await.unwrap();
    let started = link_call(app, "/link/api/session", None, None, json!({"authCode": auth_code(&token)})).await;
    assert_eq!(started.code, 200, "{}", started.body);
    started.body["content"]["sessionToken"].as_str().unwrap().to_owned()
}

fn sha256(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref().to_vec()
}

fn per_minute(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

async fn app_with(backend: Backend, limits: RateLimitConfig) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let options =
        Options { sandbox: true, clock: Some(clock.clone()), rate_limits: Some(limits), ..Options::default() };
    (spawn_app_with(backend, options).await.unwrap(), clock)
}

#[tokio::test]
async fn each_api_client_has_its_own_limit_and_recovers_after_the_window() -> TestResult {
    for backend in Backend::all() {
        let limits = RateLimitConfig { api_per_client: per_minute(3), ..RateLimitConfig::unlimited() };
        let (app, clock) = app_with(backend, limits).await;
        let other = create_client(&app.vault, "other app").await?;
        let me = (app.client.id.clone(), app.client.read.clone());
        for i in 0..3 {
            assert_eq!(integrations(&app, &me.0, &me.1).await.code, 200, "{backend:?} call {i} is within the limit");
        }
        // Three per minute: one comes back every 20 s.
        assert_limited(&integrations(&app, &me.0, &me.1).await, "20", "the fourth call");
        assert_limited(&integrations(&app, &me.0, &app.client.write).await, "20", "the client's other key");
        assert_eq!(integrations(&app, &other.id, &other.read).await.code, 200, "another client is not affected");
        let anonymous = send(app.http.get(format!("{}/api/v1/integrations", app.base))).await;
        assert_eq!(anonymous.code, 401, "authentication comes first");

        clock.advance(time::Duration::seconds(20));
        assert_eq!(integrations(&app, &me.0, &me.1).await.code, 200, "recovered after the window");
        assert_eq!(integrations(&app, &me.0, &me.1).await.code, 429, "one call's worth came back, not more");
    }
    Ok(())
}

/// A client's own figure (`linkvault client limits`) replaces the server's for that client only, takes effect
/// at once on this instance (the vault drops its key cache), is kept per client, and `--default` restores the
/// server's figure.
#[tokio::test]
async fn a_client_with_its_own_limit_is_counted_against_it() -> TestResult {
    for backend in Backend::all() {
        let limits = RateLimitConfig { api_per_client: per_minute(5), ..RateLimitConfig::unlimited() };
        let (app, clock) = app_with(backend, limits).await;
        let (tight, generous) =
            (create_client(&app.vault, "tight").await?, create_client(&app.vault, "generous").await?);
        let other = create_client(&app.vault, "also tight").await?;
        app.vault.set_api_rate_limit(tight.id.parse()?, per_minute(2)).await?;
        app.vault.set_api_rate_limit(other.id.parse()?, per_minute(2)).await?;
        app.vault.set_api_rate_limit(generous.id.parse()?, per_minute(10)).await?;

        for _ in 0..2 {
            assert_eq!(integrations(&app, &tight.id, &tight.read).await.code, 200);
        }
        assert_limited(&integrations(&app, &tight.id, &tight.write).await, "30", "its own 2 per minute");
        // Another client with the same figure has its own allowance (one limiter per figure, keyed by client).
        assert_eq!(integrations(&app, &other.id, &other.read).await.code, 200);
        for _ in 0..10 {
            assert_eq!(integrations(&app, &generous.id, &generous.read).await.code, 200, "above the server's 5");
        }
        assert_limited(&integrations(&app, &generous.id, &generous.read).await, "6", "its own 10 per minute");
        // The server's default client allowance is untouched by the others.
        for _ in 0..5 {
            assert_eq!(integrations(&app, &app.client.id, &app.client.read).await.code, 200);
        }
        assert_limited(&integrations(&app, &app.client.id, &app.client.read).await, "12", "the server's 5");

        // Back to the server's figure: a fresh 5 per minute for `tight` once its own window has passed.
        app.vault.set_api_rate_limit(tight.id.parse()?, None).await?;
        clock.advance(time::Duration::seconds(60));
        for _ in 0..5 {
            assert_eq!(integrations(&app, &tight.id, &tight.read).await.code, 200);
        }
        assert_limited(&integrations(&app, &tight.id, &tight.read).await, "12", "the server's 5 again");
    }
    Ok(())
}

#[tokio::test]
async fn sign_in_attempts_and_calls_are_limited_per_link_session() -> TestResult {
    for backend in Backend::all() {
        let limits = RateLimitConfig {
            sign_ins_per_session: per_minute(2),
            link_per_session: per_minute(6),
            ..RateLimitConfig::unlimited()
        };
        let (app, clock) = app_with(backend, limits).await;
        let bearer = open_session(&app).await;
        let wrong = json!({"type": "binanceInternationalDirect", "username": "Mesh", "password": "wrong"});
        let first = link_call(&app, "/link/api/credentials", Some(&bearer), None, wrong.clone()).await;
        assert_ne!(first.code, 429, "{backend:?}: {}", first.body);
        let oauth = link_call(&app, "/link/api/oauth/start", Some(&bearer), None, json!({"type": "coinbase"})).await;
        assert_eq!(oauth.code, 200, "{}", oauth.body);
        // Two sign-ins per minute, whether by password or OAuth: the next one waits 30 s.
        let guess = link_call(&app, "/link/api/credentials", Some(&bearer), None, wrong.clone()).await;
        assert_limited(&guess, "30", "a third password attempt");
        let oauth = link_call(&app, "/link/api/oauth/start", Some(&bearer), None, json!({"type": "coinbase"})).await;
        assert_limited(&oauth, "30", "a third sign-in by OAuth");

        let fresh = open_session(&app).await;
        let elsewhere = link_call(&app, "/link/api/credentials", Some(&fresh), None, wrong.clone()).await;
        assert_ne!(elsewhere.code, 429, "another session has its own budget");

        clock.advance(time::Duration::seconds(30));
        let later = link_call(&app, "/link/api/credentials", Some(&bearer), None, wrong.clone()).await;
        assert_ne!(later.code, 429, "recovered after the window: {}", later.body);

        // All calls of a session: six per minute, one back every 10 s.
        let third = open_session(&app).await;
        for i in 0..6 {
            let call = link_call(&app, "/link/api/oauth/result", Some(&third), None, json!({})).await;
            assert_ne!(call.code, 429, "call {i}: {}", call.body);
        }
        let limited = link_call(&app, "/link/api/oauth/result", Some(&third), None, json!({})).await;
        assert_limited(&limited, "10", "a seventh call in the session within the minute");
        clock.advance(time::Duration::seconds(10));
        let again = link_call(&app, "/link/api/oauth/result", Some(&third), None, json!({})).await;
        assert_ne!(again.code, 429, "recovered: {}", again.body);
    }
    Ok(())
}

#[tokio::test]
async fn session_starts_and_link_requests_are_limited_per_address() -> TestResult {
    for backend in Backend::all() {
        let limits = RateLimitConfig {
            link_sessions_per_address: per_minute(2),
            link_per_address: per_minute(4),
            ..RateLimitConfig::unlimited()
        };
        let (app, clock) = app_with(backend, limits).await;
        let start = |forwarded: Option<&'static str>| {
            link_call(&app, "/link/api/session", None, forwarded, json!({"authCode": "x".repeat(43)}))
        };
        assert_eq!(start(None).await.code, 400, "{backend:?}: an unknown auth_code, counted");
        assert_eq!(start(None).await.code, 400);
        assert_limited(&start(None).await, "30", "a third session start from the loopback address");
        // X-Forwarded-For is not trusted by default: a client cannot pick its own address.
        assert_limited(&start(Some("203.0.113.7")).await, "30", "a forged X-Forwarded-For");

        // The address's whole Link budget (4 per minute) is spent by the four starts above.
        let asset = send(app.http.get(format!("{}/link/assets/link.js", app.base))).await;
        assert_limited(&asset, "15", "any /link request from the address");

        clock.advance(time::Duration::seconds(30));
        assert_eq!(start(None).await.code, 400, "recovered after the window");
    }
    Ok(())
}

#[tokio::test]
async fn a_trusted_proxy_names_the_address_in_x_forwarded_for() -> TestResult {
    let limits = RateLimitConfig {
        link_sessions_per_address: per_minute(1),
        trust_forwarded_for: true,
        ..RateLimitConfig::unlimited()
    };
    let (app, _clock) = app_with(Backend::Sqlite, limits).await;
    let start = |forwarded: &'static str| {
        link_call(&app, "/link/api/session", None, Some(forwarded), json!({"authCode": "x".repeat(43)}))
    };
    assert_eq!(start("203.0.113.7").await.code, 400);
    assert_limited(&start("198.51.100.1, 203.0.113.7").await, "60", "the last entry is the proxy's");
    assert_eq!(start("203.0.113.7, 198.51.100.1").await.code, 400, "another client behind the same proxy");
    Ok(())
}

#[tokio::test]
async fn concurrent_oauth_starts_leave_at_most_five_pending() -> TestResult {
    for backend in Backend::all() {
        let (app, clock) = app_with(backend, RateLimitConfig::unlimited()).await;
        let bearer = open_session(&app).await;
        let mut starts = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (http, url, bearer) = (app.http.clone(), format!("{}/link/api/oauth/start", app.base), bearer.clone());
            starts.spawn(
                async move { send(http.post(url).bearer_auth(bearer).json(&json!({"type": "coinbase"}))).await },
            );
        }
        while let Some(reply) = starts.join_next().await {
            let reply = reply?;
            assert_eq!(reply.code, 200, "{backend:?}: a new start replaces the oldest: {}", reply.body);
        }
        let session = app.fresh.store.find_link_session(&sha256(&bearer), clock.now()).await?.unwrap();
        let pending = app.fresh.store.count_pending_link_oauth(session.id, clock.now()).await?;
        assert_eq!(pending, u64::from(linkvault_server::link::MAX_PENDING_OAUTH), "{backend:?}");
    }
    Ok(())
}

#[tokio::test]
async fn the_purge_timer_removes_expired_link_rows() -> TestResult {
    for backend in Backend::all() {
        let (app, clock) = app_with(backend, RateLimitConfig::unlimited()).await;
        let token = link_token_as(&app, &app.client.id, &app.client.write, json!({"userId": "alice"})).await?;
        let code_digest = sha256(&auth_code(&token));
        let bearer = open_session(&app).await;
        let oauth = link_call(&app, "/link/api/oauth/start", Some(&bearer), None, json!({"type": "coinbase"})).await;
        assert_eq!(oauth.code, 200);
        let store = &app.fresh.store;
        assert!(store.find_link_by_code(&code_digest).await?.is_some());
        let session = store.find_link_session(&sha256(&bearer), clock.now()).await?.unwrap();
        assert_eq!(store.count_pending_link_oauth(session.id, clock.now()).await?, 1);

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let purger = tokio::spawn(LinkPurger::new(app.state.clone(), Duration::from_millis(20)).run(stopped));
        // Two days on, past every expiry and the one-day grace: the next tick deletes the rows.
        clock.advance(time::Duration::days(2));
        let mut gone = false;
        for _ in 0..400 {
            if store.find_link_by_code(&code_digest).await?.is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(gone, "{backend:?}: the timer purged the expired link token");
        assert!(store.get_link_session(session.id).await?.is_none(), "the started session and its sign-in too");
        let other_rows = store.find_link_by_code(&code_digest).await?;
        assert!(other_rows.is_none());
        stop.send(true)?;
        tokio::time::timeout(Duration::from_secs(10), purger).await??;
    }
    Ok(())
}
