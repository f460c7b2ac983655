//! The sandbox exchanges end to end over HTTP through the sign-in and account-API adapters: Coinbase-like code
//! flow with PKCE, rotation and reuse revoking the grant; Uphold-like non-rotating refresh; Binance-like sign-in
//! with wrong password, MFA and session expiry; faults classified correctly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use linkvault_domain::{Clock, ManualClock, Scope};
use linkvault_integrations::api::{ApiError, Credential, ExchangeApi, SendRequest};
use linkvault_integrations::oauth::{self, OAuthClient, OAuthError, Revocation, TokenTypeHint};
use linkvault_integrations::{
    CredentialsClient, CredentialsError, HttpLimits, Integration, SignIn, SignInOutcome, TokenSet,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;

use crate::common::*;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

async fn read_holdings(
    api: &ExchangeApi,
    integration: &Integration,
    token: &SecretString,
) -> Result<Vec<linkvault_integrations::api::Holding>, ApiError> {
    let (adapter, call) = api.adapter(integration, Credential::Bearer(token))?;
    adapter.holdings(call).await
}

async fn read_balances(
    api: &ExchangeApi,
    integration: &Integration,
    token: &SecretString,
) -> Result<Vec<linkvault_integrations::api::Balance>, ApiError> {
    let (adapter, call) = api.adapter(integration, Credential::Bearer(token))?;
    adapter.balances(call).await
}

async fn read_accounts(
    api: &ExchangeApi,
    integration: &Integration,
    token: &SecretString,
) -> Result<Vec<linkvault_integrations::api::Account>, ApiError> {
    let (adapter, call) = api.adapter(integration, Credential::Bearer(token))?;
    adapter.accounts(call).await
}

/// Authorize through the consent page and exchange the code: the whole OAuth connect flow.
async fn connect(client: &OAuthClient, integration: &Integration, scope: Scope) -> TokenSet {
    let request = oauth::authorization_request(integration, REDIRECT_URI, scope).unwrap();
    let ConsentResult::Redirected(pairs) = sandbox_consent(&request.url, "Mesh", "Pass123", "allow").await else {
        panic!("consent did not redirect");
    };
    assert_eq!(query_value(&pairs, "state").as_deref(), Some(request.state.as_str()), "state echoed");
    let code = query_value(&pairs, "code").expect("code");
    client.exchange_code(integration, &code, REDIRECT_URI, request.pkce.verifier()).await.unwrap()
}

#[tokio::test]
async fn coinbase_code_flow_rotation_and_reuse_revokes_the_grant() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let sandbox = spawn_sandbox(|c| c.with_clock(clock.clone())).await;
        let coinbase = sandbox.catalog.get("coinbase").unwrap();
        let client = OAuthClient::new(clock.clone()).unwrap();
        let api = ExchangeApi::new(HttpLimits::default()).unwrap();

        let t1 = connect(&client, coinbase, Scope::Write).await;
        // expires_at = sent-at (our clock) + expires_in (sandbox default 3600 s).
        assert_eq!(t1.expires_at, clock.now() + time::Duration::seconds(3600));
        assert!(!t1.expires_in_defaulted);
        assert!(t1.scope.as_deref().unwrap_or_default().contains("wallet:transactions:send"));
        let rt1 = t1.refresh_token.clone().expect("a refresh token");
        assert!(!format!("{t1:?}").contains(t1.access_token.expose_secret()), "Debug redacts");

        let holdings = read_holdings(&api, coinbase, &t1.access_token).await.unwrap();
        assert!(holdings.iter().any(|h| h.symbol == "BTC" && h.amount > 0.0), "{holdings:?}");
        let balances = read_balances(&api, coinbase, &t1.access_token).await.unwrap();
        assert_eq!(balances[0].currency, "USD");

        // Rotation: a new refresh token each time; the old one is spent.
        clock.advance(time::Duration::seconds(60));
        let t2 = client.refresh(coinbase, &rt1).await.unwrap();
        assert!(t2.refresh_token_rotated);
        let rt2 = t2.refresh_token.clone().unwrap();
        assert_ne!(rt2.expose_secret(), rt1.expose_secret());
        assert_eq!(t2.expires_at, clock.now() + time::Duration::seconds(3600));
        read_accounts(&api, coinbase, &t2.access_token).await.unwrap();

        // Reuse of the spent token: invalid_grant, and the whole grant is gone.
        let reuse = client.refresh(coinbase, &rt1).await.unwrap_err();
        assert!(matches!(reuse, OAuthError::InvalidGrant { .. }), "{reuse:?}");
        assert!(reuse.needs_reauthentication());
        let after = client.refresh(coinbase, &rt2).await.unwrap_err();
        assert!(matches!(after, OAuthError::InvalidGrant { .. }), "{after:?}");
        let revoked = read_holdings(&api, coinbase, &t2.access_token).await.unwrap_err();
        assert!(matches!(revoked, ApiError::Revoked(_)), "{revoked:?}");

        let report = admin_get(&sandbox.base_url, "refresh-tokens?integration=coinbase").await;
        assert_eq!(report["coinbase"]["maxPresentations"], 2, "{report}");
        assert_eq!(report["coinbase"]["presentedMoreThanOnce"], 1, "{report}");
        assert_eq!(report["coinbase"]["tokensPresented"], 2, "{report}");
        assert!(!report.to_string().contains(rt1.expose_secret()), "the report holds no tokens");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn coinbase_code_exchange_rejections() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sandbox = spawn_sandbox(|c| c).await;
        let coinbase = sandbox.catalog.get("coinbase").unwrap();
        let client = OAuthClient::new(system_clock()).unwrap();

        // Wrong password: the page again with an error, no redirect, no code.
        let request = oauth::authorization_request(coinbase, REDIRECT_URI, Scope::Read).unwrap();
        match sandbox_consent(&request.url, "Mesh", "wrong", "allow").await {
            ConsentResult::Page(status, html) => {
                assert_eq!(status, 401);
                assert!(html.contains("Wrong username or password"));
            }
            ConsentResult::Redirected(pairs) => panic!("redirected: {pairs:?}"),
        }
        // Deny: access_denied back to the client with the state.
        let ConsentResult::Redirected(pairs) = sandbox_consent(&request.url, "Mesh", "Pass123", "deny").await else {
            panic!("deny must redirect")
        };
        assert_eq!(query_value(&pairs, "error").as_deref(), Some("access_denied"));
        assert_eq!(query_value(&pairs, "state").as_deref(), Some(request.state.as_str()));

        // Wrong PKCE verifier.
        let ConsentResult::Redirected(pairs) = sandbox_consent(&request.url, "Mesh", "Pass123", "allow").await else {
            panic!()
        };
        let code = query_value(&pairs, "code").unwrap();
        let other = oauth::Pkce::generate().unwrap();
        let err = client.exchange_code(coinbase, &code, REDIRECT_URI, other.verifier()).await.unwrap_err();
        assert!(matches!(err, OAuthError::InvalidGrant { .. }), "{err:?}");

        // A code works once; the second use is invalid_grant and revokes what the first issued.
        let ConsentResult::Redirected(pairs) = sandbox_consent(&request.url, "Mesh", "Pass123", "allow").await else {
            panic!()
        };
        let code = query_value(&pairs, "code").unwrap();
        let tokens = client.exchange_code(coinbase, &code, REDIRECT_URI, request.pkce.verifier()).await.unwrap();
        let err = client.exchange_code(coinbase, &code, REDIRECT_URI, request.pkce.verifier()).await.unwrap_err();
        assert!(matches!(err, OAuthError::InvalidGrant { .. }), "{err:?}");
        let err = client.refresh(coinbase, tokens.refresh_token.as_ref().unwrap()).await.unwrap_err();
        assert!(matches!(err, OAuthError::InvalidGrant { .. }), "{err:?}");

        // Wrong client secret: invalid_client (an operator problem).
        let mut misconfigured = coinbase.clone();
        misconfigured.client.client_secret = Some(linkvault_integrations::ClientSecret::new("nope"));
        let err = client.refresh(&misconfigured, &secret("whatever")).await.unwrap_err();
        assert!(matches!(err, OAuthError::InvalidClient { .. }), "{err:?}");

        // PKCE is mandatory at the sandbox: an authorize URL without a challenge is refused by redirect.
        let mut url = coinbase.endpoints.authorize_url.clone().unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", linkvault_integrations::SANDBOX_CLIENT_ID)
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("state", "s1");
        let response = browser().get(url).send().await.unwrap();
        assert_eq!(response.status(), 303);
        let location = response.headers()["location"].to_str().unwrap();
        assert!(location.contains("error=invalid_request") && location.contains("state=s1"), "{location}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn read_scope_cannot_transfer() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sandbox = spawn_sandbox(|c| c).await;
        let coinbase = sandbox.catalog.get("coinbase").unwrap();
        let client = OAuthClient::new(system_clock()).unwrap();
        let api = ExchangeApi::new(HttpLimits::default()).unwrap();
        let tokens = connect(&client, coinbase, Scope::Read).await;
        read_holdings(&api, coinbase, &tokens.access_token).await.unwrap();
        // The sandbox's RFC 8414 metadata agrees with where the catalog points.
        let metadata: serde_json::Value =
            reqwest::get(format!("{}/coinbase/.well-known/oauth-authorization-server", sandbox.base_url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(metadata["token_endpoint"].as_str(), coinbase.endpoints.token_url.as_ref().map(|u| u.as_str()));
        assert_eq!(metadata["code_challenge_methods_supported"], json!(["S256"]));
        let transfer = SendRequest {
            symbol: "USDC".into(),
            network: "base".into(),
            address: "0x52908400098527886E0F7030069857D2E4169EE7".into(),
            tag: None,
            amount: 5.0,
            idem: "read-scope-send".into(),
            quote_id: None,
            mfa_code: Some(secret("123456")),
        };
        let (adapter, call) = api.adapter(coinbase, Credential::Bearer(&tokens.access_token)).unwrap();
        let err = adapter.send(call, &transfer).await.unwrap_err();
        assert_eq!(err, ApiError::InsufficientScope);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn uphold_refresh_tokens_do_not_rotate_and_revocation_ends_the_grant() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sandbox = spawn_sandbox(|c| c).await;
        let uphold = sandbox.catalog.get("uphold").unwrap();
        let client = OAuthClient::new(system_clock()).unwrap();
        let api = ExchangeApi::new(HttpLimits::default()).unwrap();
        let t1 = connect(&client, uphold, Scope::Read).await;
        let rt = t1.refresh_token.clone().unwrap();
        for _ in 0..3 {
            let t = client.refresh(uphold, &rt).await.unwrap();
            // The answer carries no refresh token: the old one is kept.
            assert!(!t.refresh_token_rotated);
            assert_eq!(
                t.refresh_token.as_ref().map(|s| s.expose_secret().to_owned()).as_deref(),
                Some(rt.expose_secret())
            );
            read_balances(&api, uphold, &t.access_token).await.unwrap();
        }
        let report = admin_get(&sandbox.base_url, "refresh-tokens?integration=uphold").await;
        assert_eq!(report["uphold"]["maxPresentations"], 3, "{report}");

        assert_eq!(client.revoke(uphold, &rt, TokenTypeHint::RefreshToken).await.unwrap(), Revocation::Revoked);
        let err = client.refresh(uphold, &rt).await.unwrap_err();
        assert!(matches!(err, OAuthError::InvalidGrant { .. }), "{err:?}");
        let refused = read_holdings(&api, uphold, &t1.access_token).await.unwrap_err();
        assert!(matches!(refused, ApiError::Unauthorized | ApiError::Revoked(_)), "{refused:?}");
        // RFC 7009: revoking an unknown token is still 200.
        assert_eq!(
            client.revoke(uphold, &secret("unknown"), TokenTypeHint::AccessToken).await.unwrap(),
            Revocation::Revoked
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn faults_are_classified() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sandbox = spawn_sandbox(|c| c).await;
        let coinbase = sandbox.catalog.get("coinbase").unwrap();
        let limits = HttpLimits { total_timeout: Duration::from_millis(800), ..HttpLimits::default() };
        let client = OAuthClient::with_limits(system_clock(), limits).unwrap();
        let tokens = connect(&client, coinbase, Scope::Read).await;
        let rt = tokens.refresh_token.unwrap();
        let base = &sandbox.base_url;

        admin_post(base, "faults", json!({"integration": "coinbase", "kind": "serverError", "status": 502})).await;
        let err = client.refresh(coinbase, &rt).await.unwrap_err();
        assert!(
            matches!(&err, OAuthError::Transient { retry_after: None, reason } if reason.contains("502")),
            "{err:?}"
        );

        admin_post(base, "faults", json!({"integration": "coinbase", "kind": "tooManyRequests", "retryAfterSecs": 7}))
            .await;
        let err = client.refresh(coinbase, &rt).await.unwrap_err();
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

        admin_post(base, "faults", json!({"integration": "coinbase", "kind": "invalidGrant"})).await;
        let err = client.refresh(coinbase, &rt).await.unwrap_err();
        assert!(matches!(err, OAuthError::InvalidGrant { .. }), "{err:?}");

        // Faults hit before the token is used: it still works, and every presentation was counted.
        let fresh = client.refresh(coinbase, &rt).await.unwrap();
        assert!(fresh.refresh_token_rotated);
        let report = admin_get(base, "refresh-tokens?integration=coinbase").await;
        assert_eq!(report["coinbase"]["maxPresentations"], 4, "{report}");

        // API faults.
        let api = ExchangeApi::new(limits).unwrap();
        admin_post(
            base,
            "faults",
            json!({"integration": "coinbase", "kind": "serverError", "target": "api", "count": 2}),
        )
        .await;
        for _ in 0..2 {
            let failed = read_holdings(&api, coinbase, &fresh.access_token).await;
            assert!(matches!(failed, Err(ApiError::Transient { .. })), "{failed:?}");
        }
        read_holdings(&api, coinbase, &fresh.access_token).await.unwrap();
        assert_eq!(admin_get(base, "faults").await["faults"], json!([]));

        // A slow upstream: the refresh gives up at the total timeout, as a transient error. (Last on purpose:
        // the sandbox finishes the delayed request after we left, which spends the token.)
        let next_rt = fresh.refresh_token.clone().unwrap();
        admin_post(base, "faults", json!({"integration": "coinbase", "kind": "latency", "latencyMs": 5000})).await;
        let started = Instant::now();
        let err = client.refresh(coinbase, &next_rt).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "bounded by the timeout: {:?}", started.elapsed());

        // A bad fault spec is refused clearly.
        let response = reqwest::Client::new()
            .post(format!("{base}/admin/faults"))
            .json(&json!({"integration": "kraken", "kind": "latency"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
    })
    .await
    .unwrap();
}

/// A Binance-shaped account call with a credentials session.
enum Call {
    Holdings,
    /// A 5 USDC send to Base under this idempotency key.
    Send(&'static str),
}

async fn binance_call(
    api: &ExchangeApi,
    integration: &Integration,
    session: &SecretString,
    what: Call,
) -> Result<usize, ApiError> {
    let (adapter, call) = api.adapter(integration, Credential::of_stored(integration, session, None))?;
    match what {
        Call::Holdings => Ok(adapter.holdings(call).await?.len()),
        Call::Send(idem) => {
            let request = SendRequest {
                symbol: "USDC".into(),
                network: "base".into(),
                address: "0x52908400098527886E0F7030069857D2E4169EE7".into(),
                tag: None,
                amount: 5.0,
                idem: idem.into(),
                quote_id: None,
                mfa_code: None,
            };
            adapter.send(call, &request).await.map(|_| 1)
        }
    }
}

fn sign_in<'a>(username: &'a str, password: &'a SecretString, scope: Scope) -> SignIn<'a> {
    SignIn { username, password, scope, challenge_id: None, mfa_code: None }
}

#[tokio::test]
async fn binance_sign_in_mfa_and_session_expiry() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let server_clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let sandbox = spawn_sandbox(|mut c| {
            c.session_ttl = Duration::from_secs(600);
            c.with_clock(server_clock.clone())
        })
        .await;
        let client_clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let client = CredentialsClient::new(client_clock.clone()).unwrap();
        let api = ExchangeApi::new(HttpLimits::default()).unwrap();
        let binance = sandbox.catalog.get("binanceInternationalDirect").unwrap();
        let good = secret("Pass123");

        // Wrong password: a clear error, no challenge, no session.
        let err = client.sign_in(binance, &sign_in("Mesh", &secret("Pass124"), Scope::Read)).await.unwrap_err();
        assert_eq!(err, CredentialsError::InvalidCredentials);
        assert_eq!(err.to_string(), "the username or password is wrong");
        let err = client.sign_in(binance, &sign_in("Nobody", &good, Scope::Read)).await.unwrap_err();
        assert_eq!(err, CredentialsError::InvalidCredentials);

        // Credentials → MFA challenge → wrong code → right code → session.
        let SignInOutcome::MfaRequired(challenge) =
            client.sign_in(binance, &sign_in("Mesh", &good, Scope::Read)).await.unwrap()
        else {
            panic!("MFA expected")
        };
        assert_eq!(challenge.mfa_type, "totp");
        let mut step = sign_in("Mesh", &good, Scope::Read);
        step.challenge_id = Some(&challenge.challenge_id);
        let wrong = secret("000000");
        step.mfa_code = Some(&wrong);
        assert_eq!(client.sign_in(binance, &step).await.unwrap_err(), CredentialsError::InvalidMfaCode);
        let right = secret("123456");
        step.mfa_code = Some(&right);
        let SignInOutcome::Succeeded(session) = client.sign_in(binance, &step).await.unwrap() else { panic!() };
        assert_eq!(session.expires_at, client_clock.now() + time::Duration::seconds(600));
        assert!(!format!("{session:?}").contains(session.token.expose_secret()));
        assert_eq!(session.account_name.as_deref(), Some("Mesh's Binance account"));
        // The challenge is single-use.
        assert_eq!(client.sign_in(binance, &step).await.unwrap_err(), CredentialsError::ChallengeExpired);

        // The session opens the Binance-shaped account API (a session-bound key that also signs).
        let holdings = binance_call(&api, binance, &session.token, Call::Holdings).await.unwrap();
        assert!(holdings > 0);
        assert_eq!(
            binance_call(&api, binance, &session.token, Call::Send("read-session")).await.unwrap_err(),
            ApiError::InsufficientScope
        );

        // Session expiry by TTL (the sandbox's clock moves past it): the API refuses, and there is no refresh.
        server_clock.advance(time::Duration::seconds(601));
        let refused = binance_call(&api, binance, &session.token, Call::Holdings).await.unwrap_err();
        assert!(matches!(refused, ApiError::Unauthorized | ApiError::Revoked(_)), "{refused:?}");

        // Mesh-style single request with the code, write scope; then forced expiry by the admin.
        let mut step = sign_in("Mesh", &good, Scope::Write);
        step.mfa_code = Some(&right);
        let SignInOutcome::Succeeded(session) = client.sign_in(binance, &step).await.unwrap() else { panic!() };
        binance_call(&api, binance, &session.token, Call::Send("write-session")).await.unwrap();
        let expired = admin_post(&sandbox.base_url, "binance/expire-sessions", json!({})).await;
        assert_eq!(expired["expired"], 1);
        let refused = binance_call(&api, binance, &session.token, Call::Holdings).await.unwrap_err();
        assert!(matches!(refused, ApiError::Unauthorized | ApiError::Revoked(_)), "{refused:?}");

        // Sign-out of a live session.
        let SignInOutcome::Succeeded(session) = client.sign_in(binance, &step).await.unwrap() else { panic!() };
        assert!(client.sign_out(binance, &session.token).await.unwrap());
        let refused = binance_call(&api, binance, &session.token, Call::Holdings).await.unwrap_err();
        assert!(matches!(refused, ApiError::Unauthorized | ApiError::Revoked(_)), "{refused:?}");

        // Faults on sign-in are transient.
        admin_post(&sandbox.base_url, "faults", json!({"integration": "binance", "kind": "serverError"})).await;
        assert!(client.sign_in(binance, &step).await.unwrap_err().is_transient());

        // The OAuth adapter refuses a credentials integration (and vice versa).
        let oauth_client = OAuthClient::new(system_clock()).unwrap();
        assert!(matches!(oauth_client.refresh(binance, &good).await, Err(OAuthError::Config(_))));
        let coinbase = sandbox.catalog.get("coinbase").unwrap();
        assert!(matches!(client.sign_in(coinbase, &step).await, Err(CredentialsError::Config(_))));
    })
    .await
    .unwrap();
}
