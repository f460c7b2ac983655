//! The real Coinbase App API v2 adapter against the real sandbox router (Coinbase's wire format under
//! `/sandbox/coinbase/v2`): accounts across pages, priced holdings, balances, deposit addresses, assets, a
//! quote, the two-factor send exactly once per `idem`, status following the sandbox clock, history, scopes
//! and injected faults.

use std::sync::Arc;

use linkvault_domain::{ManualClock, Scope};
use linkvault_integrations::api::{
    ApiError, Credential, ExchangeApi, QuoteRequest, Refusal, SendOutcome, SendRequest, TransferStatus,
};
use linkvault_integrations::oauth::{self, OAuthClient};
use linkvault_integrations::{HttpLimits, Integration};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;

use crate::common::*;

const DESTINATION: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

async fn token(client: &OAuthClient, integration: &Integration, scope: Scope, username: &str) -> SecretString {
    let request = oauth::authorization_request(integration, REDIRECT_URI, scope).unwrap();
    let ConsentResult::Redirected(pairs) = sandbox_consent(&request.url, username, "Pass123", "allow").await else {
        panic!("consent did not redirect");
    };
    let code = query_value(&pairs, "code").expect("code");
    client.exchange_code(integration, &code, REDIRECT_URI, request.pkce.verifier()).await.unwrap().access_token
}

fn send_request(amount: f64, idem: &str, code: Option<&str>) -> SendRequest {
    SendRequest {
        symbol: "USDC".into(),
        network: "base".into(),
        address: DESTINATION.into(),
        tag: None,
        amount,
        idem: idem.into(),
        quote_id: None,
        mfa_code: code.map(|c| SecretString::from(c.to_owned())),
    }
}

async fn coinbase_report(base_url: &str) -> serde_json::Value {
    admin_get(base_url, "requests").await["coinbase"].clone()
}

#[tokio::test]
async fn mesh_reads_accounts_holdings_balances_addresses_and_assets() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sandbox = spawn_sandbox(|c| c).await;
        let coinbase = sandbox.catalog.get("coinbase").unwrap();
        let at = token(&OAuthClient::new(system_clock()).unwrap(), coinbase, Scope::Read, "Mesh").await;
        let api = ExchangeApi::new(HttpLimits::default()).unwrap();
        let (adapter, call) = api.adapter(coinbase, Credential::Bearer(&at)).unwrap();

        let accounts = adapter.accounts(call).await.unwrap();
        let currencies: Vec<&str> = accounts.iter().filter_map(|a| a.currency.as_deref()).collect();
        assert_eq!(currencies, ["BTC", "ETH", "SOL", "USDC", "USD"], "one wallet per holding plus USD");
        let report = coinbase_report(&sandbox.base_url).await;
        assert_eq!(report["requests"]["GET /v2/accounts"], 3, "five accounts at two per page: {report}");

        let holdings = adapter.holdings(call).await.unwrap();
        let btc = holdings.iter().find(|h| h.symbol == "BTC").unwrap();
        assert_eq!((btc.amount, btc.price_usd, btc.value_usd), (12.5, Some(65_000.0), Some(812_500.0)));
        assert_eq!(btc.name, "Bitcoin");
        assert_eq!(holdings.len(), 4);
        assert!(holdings.iter().all(|h| h.price_usd.is_some() && h.cost_basis_usd.is_none()));

        let balances = adapter.balances(call).await.unwrap();
        assert_eq!(balances.len(), 1);
        assert_eq!((balances[0].currency.as_str(), balances[0].cash), ("USD", 10_000_000.0));

        // USDC is on four networks: its addresses span two pages; base is on the second.
        let address = adapter.deposit_address(call, "USDC", "base").await.unwrap();
        assert_eq!((address.symbol.as_str(), address.network.as_str()), ("USDC", "base"));
        assert!(address.address.starts_with("0x") && address.address.len() == 42, "{address:?}");
        let sol = adapter.deposit_address(call, "SOL", "solana").await.unwrap();
        assert_eq!(sol.address.len(), 44);
        let err = adapter.deposit_address(call, "BTC", "solana").await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::UnsupportedNetwork, .. }), "{err:?}");
        let err = adapter.deposit_address(call, "PYUSD", "ethereum").await.unwrap_err();
        assert!(matches!(err, ApiError::NotFound(_)), "Mesh holds no PYUSD account: {err:?}");
        let report = coinbase_report(&sandbox.base_url).await;
        assert_eq!(report["requests"]["POST /v2/accounts/:account_id/addresses"], 1, "{report}");

        let assets = adapter.assets(call).await.unwrap();
        let usdc: Vec<&str> = assets.iter().filter(|a| a.symbol == "USDC").map(|a| a.network.as_str()).collect();
        assert_eq!(usdc, ["ethereum", "polygon", "solana", "base"]);
        assert!(assets.iter().all(|a| a.withdraw_fee.is_none()), "Coinbase v2 states no fee before the send");

        // Read-only token: no send; the refused request never reaches the books.
        let err = adapter.send(call, &send_request(5.0, "ro-1", Some(linkvault_sandbox::MFA_CODE))).await.unwrap_err();
        assert_eq!(err, ApiError::InsufficientScope);
        assert_eq!(coinbase_report(&sandbox.base_url).await["transfersCreated"], 0);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn send_with_two_factor_once_per_idem_then_status_and_history() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let sandbox = spawn_sandbox(|c| c.with_clock(clock.clone())).await;
        let coinbase = sandbox.catalog.get("coinbase").unwrap();
        let at = token(&OAuthClient::new(clock.clone()).unwrap(), coinbase, Scope::Write, "Mesh").await;
        let api = ExchangeApi::new(HttpLimits::default()).unwrap();
        let (adapter, call) = api.adapter(coinbase, Credential::Bearer(&at)).unwrap();

        let quote = adapter
            .quote(
                call,
                &QuoteRequest {
                    symbol: "USDC".into(),
                    network: "base".into(),
                    address: DESTINATION.into(),
                    tag: None,
                    amount: Some(25.0),
                    amount_usd: None,
                },
            )
            .await
            .unwrap();
        assert_eq!((quote.amount, quote.price_usd, quote.available), (25.0, 1.0, 250_000.0));

        let first = adapter.send(call, &send_request(25.0, "idem-1", None)).await.unwrap();
        assert_eq!(first, SendOutcome::MfaRequired { mfa_type: "totp".into() });
        let wrong = adapter.send(call, &send_request(25.0, "idem-1", Some("000000"))).await.unwrap_err();
        assert!(matches!(wrong, ApiError::Refused { reason: Refusal::InvalidMfaCode, .. }), "{wrong:?}");
        assert_eq!(coinbase_report(&sandbox.base_url).await["transfersCreated"], 0, "no code, no send");

        let SendOutcome::Sent(sent) =
            adapter.send(call, &send_request(25.0, "idem-1", Some(linkvault_sandbox::MFA_CODE))).await.unwrap()
        else {
            panic!("sent with the code")
        };
        assert_eq!((sent.symbol.as_str(), sent.amount, sent.fee), ("USDC", 25.0, Some(0.05)));
        assert_eq!(sent.network.as_deref(), Some("base"));
        assert_eq!(sent.address, DESTINATION);
        assert_eq!(sent.status, TransferStatus::Pending);
        assert!(sent.hash.is_none());

        // The same idem again (a retry after a lost answer): the first transfer, no second debit.
        let SendOutcome::Sent(again) =
            adapter.send(call, &send_request(25.0, "idem-1", Some(linkvault_sandbox::MFA_CODE))).await.unwrap()
        else {
            panic!("repeat answered")
        };
        assert_eq!(again.id, sent.id);
        let report = coinbase_report(&sandbox.base_url).await;
        assert_eq!(report["transfersCreated"], 1, "{report}");
        assert_eq!(report["requests"]["POST /v2/accounts/:account_id/transactions"], 4, "{report}");
        let usdc = adapter.holdings(call).await.unwrap().into_iter().find(|h| h.symbol == "USDC").unwrap();
        assert!((usdc.amount - (250_000.0 - 25.05)).abs() < 1e-6, "{usdc:?}");

        // The same idem for a different send is a conflict.
        let err =
            adapter.send(call, &send_request(30.0, "idem-1", Some(linkvault_sandbox::MFA_CODE))).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::IdempotencyConflict, .. }), "{err:?}");
        let err =
            adapter.send(call, &send_request(1e9, "idem-2", Some(linkvault_sandbox::MFA_CODE))).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::InsufficientFunds, .. }), "{err:?}");
        let err =
            adapter.send(call, &send_request(0.5, "idem-3", Some(linkvault_sandbox::MFA_CODE))).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::BelowMinimum, .. }), "{err:?}");

        let pending = adapter.transfer(call, &sent.id).await.unwrap();
        assert_eq!((pending.status, pending.status_details.as_str()), (TransferStatus::Pending, "pending"));
        clock.advance(time::Duration::seconds(3));
        let settled = adapter.transfer(call, &sent.id).await.unwrap();
        assert_eq!((settled.status, settled.status_details.as_str()), (TransferStatus::Succeeded, "completed"));
        assert!(settled.hash.as_deref().is_some_and(|h| h.starts_with("0x")), "{settled:?}");

        // A second send; history is newest first across accounts.
        clock.advance(time::Duration::seconds(1));
        let eth = SendRequest {
            symbol: "ETH".into(),
            network: "ethereum".into(),
            amount: 1.0,
            idem: "idem-eth".into(),
            ..send_request(1.0, "", Some(linkvault_sandbox::MFA_CODE))
        };
        let SendOutcome::Sent(eth_sent) = adapter.send(call, &eth).await.unwrap() else { panic!("eth sent") };
        let history = adapter.history(call).await.unwrap();
        let ids: Vec<&str> = history.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, [eth_sent.id.as_str(), sent.id.as_str()]);
        assert!(history.iter().all(|t| !t.incoming));
        assert_eq!(coinbase_report(&sandbox.base_url).await["transfersCreated"], 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn sandbox_faults_and_token_states_in_coinbase_format() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sandbox = spawn_sandbox(|c| c).await;
        let coinbase = sandbox.catalog.get("coinbase").unwrap();
        let at = token(&OAuthClient::new(system_clock()).unwrap(), coinbase, Scope::Read, "Mesh").await;
        let api = ExchangeApi::new(HttpLimits::default()).unwrap();
        let (adapter, call) = api.adapter(coinbase, Credential::Bearer(&at)).unwrap();

        admin_post(
            &sandbox.base_url,
            "faults",
            json!({"integration": "coinbase", "kind": "tooManyRequests", "target": "api", "retryAfterSecs": 9}),
        )
        .await;
        let err = adapter.accounts(call).await.unwrap_err();
        assert_eq!(
            err,
            ApiError::Transient {
                retry_after: Some(std::time::Duration::from_secs(9)),
                reason: "rate_limit_exceeded".into()
            }
        );
        admin_post(
            &sandbox.base_url,
            "faults",
            json!({"integration": "coinbase", "kind": "serverError", "target": "api", "status": 502}),
        )
        .await;
        assert!(matches!(adapter.holdings(call).await.unwrap_err(), ApiError::Transient { .. }));
        admin_post(
            &sandbox.base_url,
            "faults",
            json!({"integration": "coinbase", "kind": "invalidGrant", "target": "api"}),
        )
        .await;
        assert_eq!(adapter.accounts(call).await.unwrap_err(), ApiError::Revoked("invalid_token".into()));

        admin_post(&sandbox.base_url, "coinbase/expire-access-tokens", json!({})).await;
        assert_eq!(adapter.accounts(call).await.unwrap_err(), ApiError::Unauthorized, "expired: refresh and retry");

        let unknown = SecretString::from("cb-not-a-token".to_owned());
        let (adapter, call) = api.adapter(coinbase, Credential::Bearer(&unknown)).unwrap();
        assert_eq!(adapter.accounts(call).await.unwrap_err(), ApiError::Revoked("invalid_token".into()));
    })
    .await
    .unwrap();
}
