//! The real Binance Spot adapter against the sandbox's Binance Spot API (signatures and recvWindow checked
//! by the sandbox): API keys issued by the sandbox admin, holdings, balances, prices, assets, deposit address,
//! quote, a withdrawal made exactly once per withdrawOrderId, status and history, a skewed server clock
//! recovered from, a deleted key refused, and a credentials session token used as a key until it expires.

use std::sync::Arc;
use std::time::Duration;

use linkvault_domain::{ManualClock, Scope};
use linkvault_integrations::api::{
    ApiError, Credential, ExchangeApi, QuoteRequest, Refusal, SendOutcome, SendRequest, TransferStatus,
};
use linkvault_integrations::{CredentialsClient, HttpLimits, SignIn, SignInOutcome};
use secrecy::SecretString;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::common::*;

const DESTINATION: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

async fn issue_key(base_url: &str, permissions: &[&str]) -> (SecretString, SecretString) {
    let issued =
        admin_post(base_url, "binance/api-keys", json!({"username": "Mesh", "permissions": permissions})).await;
    let key = issued["apiKey"].as_str().unwrap().to_owned();
    let secret = issued["secretKey"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 64);
    (SecretString::from(key), SecretString::from(secret))
}

fn requests(report: &Value, endpoint: &str) -> u64 {
    report["binance"]["requests"][endpoint].as_u64().unwrap_or(0)
}

fn send_request(idem: &str) -> SendRequest {
    SendRequest {
        symbol: "USDC".into(),
        network: "base".into(),
        address: DESTINATION.into(),
        tag: None,
        amount: 5.0,
        idem: idem.into(),
        quote_id: None,
        mfa_code: None,
    }
}

#[tokio::test]
async fn binance_spot_flow_against_the_sandbox() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let sandbox = spawn_sandbox(|c| c.with_clock(clock.clone())).await;
        let binance = sandbox.catalog.get("binanceInternational").unwrap();
        let api = ExchangeApi::new(HttpLimits::default()).unwrap();
        let (key, secret) = issue_key(&sandbox.base_url, &["read", "withdraw"]).await;
        let (spot, call) = api.adapter(binance, Credential::ApiKey { key: &key, secret: &secret }).unwrap();

        let account = spot.verify(call).await.unwrap();
        assert!(account.id.parse::<u64>().is_ok(), "the uid: {}", account.id);
        let holdings = spot.holdings(call).await.unwrap();
        let btc = holdings.iter().find(|h| h.symbol == "BTC").unwrap();
        assert_eq!((btc.amount, btc.price_usd, btc.name.as_str()), (12.5, Some(65_000.0), "Bitcoin"));
        assert!(holdings.iter().all(|h| h.symbol != "USD"));
        let balances = spot.balances(call).await.unwrap();
        assert_eq!(balances.iter().find(|b| b.currency == "USD").map(|b| b.cash), Some(10_000_000.0));
        let accounts = spot.accounts(call).await.unwrap();
        assert_eq!(accounts.len(), 1);
        assert!(accounts[0].value_usd.unwrap() > 10_000_000.0);

        let assets = spot.assets(call).await.unwrap();
        let usdc_base = assets.iter().find(|a| a.symbol == "USDC" && a.network == "base").unwrap();
        assert_eq!((usdc_base.withdraw_fee, usdc_base.withdraw_min), (Some(0.05), Some(1.0)));
        assert!(assets.iter().any(|a| a.symbol == "USDC" && a.network == "polygon"));
        let address = spot.deposit_address(call, "USDC", "base").await.unwrap();
        assert!(address.address.starts_with("0x") && address.address.len() == 42);

        let quote = spot
            .quote(
                call,
                &QuoteRequest {
                    symbol: "USDC".into(),
                    network: "base".into(),
                    address: DESTINATION.into(),
                    tag: None,
                    amount: Some(5.0),
                    amount_usd: None,
                },
            )
            .await
            .unwrap();
        assert_eq!((quote.amount, quote.fee, quote.available), (5.0, 0.05, 250_000.0));

        // Withdraw once; the same withdrawOrderId again answers the first withdrawal, moving nothing.
        let SendOutcome::Sent(sent) = spot.send(call, &send_request("order-1")).await.unwrap() else { panic!() };
        assert_eq!(sent.status, TransferStatus::Pending);
        let SendOutcome::Sent(again) = spot.send(call, &send_request("order-1")).await.unwrap() else { panic!() };
        assert_eq!(again.id, sent.id);
        let report = admin_get(&sandbox.base_url, "requests").await;
        assert_eq!(report["binance"]["transfersCreated"], 1);
        assert_eq!(requests(&report, "POST /sapi/v1/capital/withdraw/apply"), 1);
        let after = spot.holdings(call).await.unwrap();
        assert!((after.iter().find(|h| h.symbol == "USDC").unwrap().amount - (250_000.0 - 5.05)).abs() < 1e-6);
        // Below the minimum: refused by the sandbox with Binance's code, mapped to the refusal.
        let mut small = send_request("order-small");
        small.amount = 0.5;
        let err = spot.send(call, &small).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::BelowMinimum, .. }), "{err:?}");

        // Settles after SETTLE_AFTER: status and history follow.
        clock.advance(time::Duration::seconds(3));
        let settled = spot.transfer(call, &sent.id).await.unwrap();
        assert_eq!(settled.status, TransferStatus::Succeeded);
        assert!(settled.hash.is_some());
        let history = spot.history(call).await.unwrap();
        assert_eq!(history.iter().filter(|t| t.id == sent.id).count(), 1);

        // The sandbox's Binance clock jumps 10 s ahead: the adapter resyncs and the caller never notices.
        admin_post(&sandbox.base_url, "binance/clock-skew", json!({"ms": 10_000})).await;
        let before = requests(&admin_get(&sandbox.base_url, "requests").await, "GET /api/v3/time");
        spot.verify(call).await.unwrap();
        assert!(requests(&admin_get(&sandbox.base_url, "requests").await, "GET /api/v3/time") > before);

        // 429 from the weight limit: transient, and the adapter sends nothing more until Retry-After.
        admin_post(
            &sandbox.base_url,
            "faults",
            json!({"integration": "binance", "kind": "tooManyRequests", "target": "api", "retryAfterSecs": 30}),
        )
        .await;
        let err = spot.verify(call).await.unwrap_err();
        assert!(matches!(err, ApiError::Transient { retry_after: Some(w), .. } if w == Duration::from_secs(30)));
        let counted = admin_get(&sandbox.base_url, "requests").await["binance"]["totalRequests"].clone();
        assert!(matches!(spot.holdings(call).await.unwrap_err(), ApiError::Transient { .. }));
        assert_eq!(admin_get(&sandbox.base_url, "requests").await["binance"]["totalRequests"], counted);

        // A deleted key is refused as Binance does: Revoked.
        let (other_key, other_secret) = issue_key(&sandbox.base_url, &["read"]).await;
        let api = ExchangeApi::new(HttpLimits::default()).unwrap();
        let (spot, call) = api.adapter(binance, Credential::ApiKey { key: &other_key, secret: &other_secret }).unwrap();
        spot.verify(call).await.unwrap();
        // Read-only: quote and send are refused for scope, nothing moves.
        let err = spot.send(call, &send_request("order-ro")).await.unwrap_err();
        assert_eq!(err, ApiError::InsufficientScope);
        let wrong = SecretString::from("wrong".to_owned());
        let (bad, bad_call) = api.adapter(binance, Credential::ApiKey { key: &other_key, secret: &wrong }).unwrap();
        assert!(matches!(bad.verify(bad_call).await.unwrap_err(), ApiError::Revoked(_)));
        use secrecy::ExposeSecret as _;
        let response = reqwest::Client::new()
            .delete(format!("{}/admin/binance/api-keys/{}", sandbox.base_url, other_key.expose_secret()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(matches!(spot.verify(call).await.unwrap_err(), ApiError::Revoked(_)));
        assert_eq!(admin_get(&sandbox.base_url, "requests").await["binance"]["transfersCreated"], 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_direct_session_token_opens_the_spot_api_until_it_expires() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let sandbox = spawn_sandbox(|c| c.with_clock(clock.clone())).await;
        let direct = sandbox.catalog.get("binanceInternationalDirect").unwrap();
        let client = CredentialsClient::new(clock.clone()).unwrap();
        let password = SecretString::from("Pass123".to_owned());
        let code = SecretString::from("123456".to_owned());
        let sign_in = SignIn {
            username: "Mesh",
            password: &password,
            scope: Scope::Write,
            challenge_id: None,
            mfa_code: Some(&code),
        };
        let SignInOutcome::Succeeded(session) = client.sign_in(direct, &sign_in).await.unwrap() else { panic!() };
        let api = ExchangeApi::new(HttpLimits::default()).unwrap();
        // What the lead's Credential::of_stored makes of a stored direct session.
        let credential = Credential::of_stored(direct, &session.token, None);
        let (spot, call) = api.adapter(direct, credential).unwrap();
        assert!(spot.holdings(call).await.unwrap().iter().any(|h| h.symbol == "BTC"));
        let SendOutcome::Sent(sent) = spot.send(call, &send_request("session-1")).await.unwrap() else { panic!() };
        assert_eq!(spot.transfer(call, &sent.id).await.unwrap().id, sent.id);

        admin_post(&sandbox.base_url, "binance/expire-sessions", json!({})).await;
        assert!(matches!(spot.verify(call).await.unwrap_err(), ApiError::Revoked(_)));
    })
    .await
    .unwrap();
}
