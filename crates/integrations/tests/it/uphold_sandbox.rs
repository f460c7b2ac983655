//! The Uphold v0 adapter against the sandbox's Uphold API (the real router, over loopback): cards across
//! Range pages, holdings priced from the ticker, balances, deposit addresses, assets, a quote committed
//! exactly once, an expired quote, status following to settlement, history, scope and fault classes.

use std::sync::Arc;

use linkvault_domain::{Clock, ManualClock, Scope};
use linkvault_integrations::api::{
    ApiError, Credential, ExchangeApi, QuoteRequest, Refusal, SendOutcome, SendRequest, TransferStatus,
};
use linkvault_integrations::oauth::{self, OAuthClient};
use linkvault_integrations::{HttpLimits, Integration, TokenSet};
use serde_json::json;
use time::OffsetDateTime;

use crate::common::*;

const TO: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

async fn connect(client: &OAuthClient, integration: &Integration, scope: Scope) -> TokenSet {
    let request = oauth::authorization_request(integration, REDIRECT_URI, scope).unwrap();
    let ConsentResult::Redirected(pairs) = sandbox_consent(&request.url, "Mesh", "Pass123", "allow").await else {
        panic!("consent did not redirect");
    };
    let code = query_value(&pairs, "code").expect("code");
    client.exchange_code(integration, &code, REDIRECT_URI, request.pkce.verifier()).await.unwrap()
}

fn quote_request(amount: f64) -> QuoteRequest {
    QuoteRequest {
        symbol: "USDC".into(),
        network: "base".into(),
        address: TO.into(),
        tag: None,
        amount: Some(amount),
        amount_usd: None,
    }
}

fn send_request(amount: f64, idem: &str, quote_id: Option<String>) -> SendRequest {
    SendRequest {
        symbol: "USDC".into(),
        network: "base".into(),
        address: TO.into(),
        tag: None,
        amount,
        idem: idem.into(),
        quote_id,
        mfa_code: None,
    }
}

async fn uphold_report(base_url: &str) -> serde_json::Value {
    admin_get(base_url, "requests").await["uphold"].clone()
}

#[tokio::test]
async fn uphold_reads_cards_holdings_balances_addresses_and_assets() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let sandbox = spawn_sandbox(|c| c.with_clock(clock.clone())).await;
        let uphold = sandbox.catalog.get("uphold").unwrap();
        let client = OAuthClient::new(clock.clone()).unwrap();
        let tokens = connect(&client, uphold, Scope::Read).await;
        let exchange = ExchangeApi::new(HttpLimits::default()).unwrap();
        let (api, call) = exchange.adapter(uphold, Credential::Bearer(&tokens.access_token)).unwrap();

        // Five cards (USD, BTC, ETH, SOL, USDC) over three Range pages of two.
        let accounts = api.accounts(call).await.unwrap();
        let currencies: Vec<_> = accounts.iter().map(|a| a.currency.clone().unwrap()).collect();
        assert_eq!(currencies, ["USD", "BTC", "ETH", "SOL", "USDC"]);
        assert_eq!(accounts[0].cash_usd, Some(10_000_000.0));
        assert_eq!(accounts[1].value_usd, Some(812_500.0));
        assert_eq!(accounts[1].name, "BTC card");
        assert_eq!(uphold_report(&sandbox.base_url).await["requests"]["GET /v0/me/cards"], 3);

        let holdings = api.holdings(call).await.unwrap();
        assert_eq!(holdings.len(), 4, "{holdings:?}");
        let btc = holdings.iter().find(|h| h.symbol == "BTC").unwrap();
        assert_eq!((btc.amount, btc.price_usd, btc.value_usd), (12.5, Some(65_000.0), Some(812_500.0)));
        assert_eq!(btc.name, "Bitcoin");
        assert_eq!(btc.cost_basis_usd, None);
        assert!(holdings.iter().all(|h| h.symbol != "USD"));

        let balances = api.balances(call).await.unwrap();
        assert_eq!(balances.len(), 1);
        assert_eq!((balances[0].currency.as_str(), balances[0].cash), ("USD", 10_000_000.0));

        // Prices and the asset list are cached: a second holdings read asks only for the cards.
        api.holdings(call).await.unwrap();
        let report = uphold_report(&sandbox.base_url).await;
        assert_eq!(report["requests"]["GET /v0/ticker/:currency"], 1, "{report}");
        assert_eq!(report["requests"]["GET /v0/assets"], 4, "assets: 7 items over 4 pages, once: {report}");

        let base = api.deposit_address(call, "USDC", "base").await.unwrap();
        assert!(base.address.starts_with("0x") && base.address.len() == 42, "{base:?}");
        assert_eq!(api.deposit_address(call, "USDC", "base").await.unwrap(), base, "stable");
        let solana = api.deposit_address(call, "SOL", "solana").await.unwrap();
        assert_eq!(solana.address.len(), 44);
        assert!(matches!(api.deposit_address(call, "DOGE", "ethereum").await, Err(ApiError::NotFound(_))));
        assert!(matches!(
            api.deposit_address(call, "USDC", "tron").await,
            Err(ApiError::Refused { reason: Refusal::UnsupportedNetwork, .. })
        ));

        let assets = api.assets(call).await.unwrap();
        let usdc_base = assets.iter().find(|a| a.symbol == "USDC" && a.network == "base").unwrap();
        assert!(usdc_base.withdraw_enabled && usdc_base.withdraw_fee.is_none());
        assert_eq!(usdc_base.name, "USD Coin");
        assert!(assets.iter().all(|a| a.symbol != "USD"));

        // A read-only token cannot quote: Uphold's 403, and no quote was stored.
        let err = api.quote(call, &quote_request(10.0)).await.unwrap_err();
        assert_eq!(err, ApiError::InsufficientScope);
        assert_eq!(uphold_report(&sandbox.base_url).await["transfersCreated"], 0);

        // Faults in Uphold's format.
        admin_post(
            &sandbox.base_url,
            "faults",
            json!({"integration": "uphold", "kind": "tooManyRequests", "target": "api", "retryAfterSecs": 7}),
        )
        .await;
        match api.accounts(call).await.unwrap_err() {
            ApiError::Transient { retry_after, .. } => assert_eq!(retry_after, Some(std::time::Duration::from_secs(7))),
            other => panic!("{other:?}"),
        }
        admin_post(
            &sandbox.base_url,
            "faults",
            json!({"integration": "uphold", "kind": "serverError", "target": "api"}),
        )
        .await;
        assert!(matches!(api.balances(call).await, Err(ApiError::Transient { .. })));
        admin_post(
            &sandbox.base_url,
            "faults",
            json!({"integration": "uphold", "kind": "invalidGrant", "target": "api"}),
        )
        .await;
        assert_eq!(api.balances(call).await.unwrap_err(), ApiError::Unauthorized);
        // An expired access token is Uphold's 401 too.
        admin_post(&sandbox.base_url, "uphold/expire-access-tokens", json!({})).await;
        assert_eq!(api.accounts(call).await.unwrap_err(), ApiError::Unauthorized);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn uphold_quote_commit_once_expiry_status_and_history() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let sandbox = spawn_sandbox(|c| c.with_clock(clock.clone())).await;
        let uphold = sandbox.catalog.get("uphold").unwrap();
        let client = OAuthClient::new(clock.clone()).unwrap();
        let tokens = connect(&client, uphold, Scope::Write).await;
        let exchange = ExchangeApi::new(HttpLimits::default()).unwrap();
        let (api, call) = exchange.adapter(uphold, Credential::Bearer(&tokens.access_token)).unwrap();

        // Quote: a pending transaction that holds for 30 s on the sandbox clock.
        let quote = api.quote(call, &quote_request(10.0)).await.unwrap();
        assert_eq!((quote.amount, quote.fee, quote.fee_currency.as_str()), (10.0, 0.05, "USDC"));
        assert_eq!((quote.available, quote.price_usd), (250_000.0, 1.0));
        let expires = quote.expires_at.unwrap();
        assert!((expires - (clock.now() + time::Duration::seconds(30))).abs() < time::Duration::seconds(1));
        assert!(quote.from_address.as_deref().is_some_and(|a| a.starts_with("0x")));
        let quote_id = quote.quote_id.clone().unwrap();
        assert_eq!(uphold_report(&sandbox.base_url).await["transfersCreated"], 0, "a quote moves nothing");

        // Commit: one transfer.
        let SendOutcome::Sent(sent) =
            api.send(call, &send_request(10.0, "idem-1", Some(quote_id.clone()))).await.unwrap()
        else {
            panic!("no MFA in the sandbox")
        };
        assert_eq!(sent.status, TransferStatus::Pending);
        assert_eq!(sent.status_details, "processing");
        assert_eq!((sent.symbol.as_str(), sent.amount, sent.fee), ("USDC", 10.0, Some(0.05)));
        assert_eq!((sent.address.as_str(), sent.network.as_deref()), (TO, Some("base")));
        assert_eq!(uphold_report(&sandbox.base_url).await["transfersCreated"], 1);

        // The same send again (a retry): Uphold refuses the second commit, the adapter answers the first.
        let SendOutcome::Sent(again) = api.send(call, &send_request(10.0, "idem-1", Some(quote_id))).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(again.id, sent.id);
        let report = uphold_report(&sandbox.base_url).await;
        assert_eq!(report["transfersCreated"], 1, "{report}");
        assert_eq!(report["requests"]["POST /v0/me/cards/:card/transactions/:id/commit"], 2, "{report}");
        let usdc = api.holdings(call).await.unwrap().into_iter().find(|h| h.symbol == "USDC").unwrap();
        assert!((usdc.amount - (250_000.0 - 10.05)).abs() < 1e-6, "debited once: {usdc:?}");

        // Status: pending until the ledger settles it, then completed with the hash.
        assert_eq!(api.transfer(call, &sent.id).await.unwrap().status, TransferStatus::Pending);
        clock.advance(time::Duration::seconds(3));
        let settled = api.transfer(call, &sent.id).await.unwrap();
        assert_eq!((settled.status, settled.status_details.as_str()), (TransferStatus::Succeeded, "completed"));
        assert!(settled.hash.as_deref().is_some_and(|h| h.starts_with("0x")), "{settled:?}");
        assert!(matches!(api.transfer(call, "00000000-0000-4000-8000-000000000000").await, Err(ApiError::NotFound(_))));

        // An expired quote: refused as such, nothing sent.
        let stale = api.quote(call, &quote_request(20.0)).await.unwrap();
        clock.advance(time::Duration::seconds(31));
        let err = api.send(call, &send_request(20.0, "idem-2", stale.quote_id)).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::QuoteExpired, .. }), "{err:?}");
        assert_eq!(uphold_report(&sandbox.base_url).await["transfersCreated"], 1);

        // Refusals in Uphold's validation format.
        let err = api.quote(call, &quote_request(1e9)).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::InsufficientFunds, .. }), "{err:?}");
        let err = api.quote(call, &quote_request(0.5)).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::BelowMinimum, .. }), "{err:?}");
        let mut bad_address = quote_request(10.0);
        bad_address.address = " ".into();
        let err = api.quote(call, &bad_address).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::InvalidAddress, .. }), "{err:?}");

        // Without a quote: create-and-commit with the idempotency key as reference; a repeat finds it.
        let SendOutcome::Sent(direct) = api.send(call, &send_request(7.0, "idem-3", None)).await.unwrap() else {
            panic!()
        };
        let SendOutcome::Sent(repeat) = api.send(call, &send_request(7.0, "idem-3", None)).await.unwrap() else {
            panic!()
        };
        assert_eq!(repeat.id, direct.id);
        assert_eq!(uphold_report(&sandbox.base_url).await["transfersCreated"], 2);

        // History: both committed transfers, newest first, across Range pages.
        let history = api.history(call).await.unwrap();
        let ids: Vec<_> = history.iter().map(|t| t.id.clone()).collect();
        assert_eq!(ids, [direct.id.clone(), sent.id.clone()]);
        assert!(history.iter().all(|t| !t.incoming));
    })
    .await
    .unwrap();
}
