//! The Coinbase App API v2 adapter against a local server answering with examples written from Coinbase's
//! documented requests and responses: what the adapter sends (paths, `limit`, `Authorization`, `CB-VERSION`,
//! `CB-2FA-TOKEN`, the send body) and how it reads every answer (three pages of accounts, spot prices, the 402
//! two-factor round trip, token errors, 429 with Retry-After, 5xx, malformed and oversize bodies, an off-origin
//! `next_uri`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use linkvault_integrations::api::coinbase::{CB_VERSION, CoinbaseV2};
use linkvault_integrations::api::{
    AccountApi, ApiError, Call, Credential, Http, QuoteRequest, Refusal, SendOutcome, SendRequest, TransferStatus,
};
use linkvault_integrations::{Catalog, HttpLimits};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

use crate::common::*;

const TOKEN: &str = "abd90df5f27a7b170cd775abf89d632b350b7c1c9d53e08b340cd9832ce52c2c";
const BTC_ACCOUNT: &str = "2bbf394c-193b-5b2a-9155-3b4732659ede";
const ETH_ACCOUNT: &str = "58542935-67b5-56e1-a3f9-42686e07fa40";
const USDC_ACCOUNT: &str = "8d5f1a7c-3e0f-5c7e-9a1d-0c2e4b6f8a10";
const USD_ACCOUNT: &str = "7c0d4ef5-7f5f-5b5a-8cf3-2d6c8a7b3e21";
const SOL_ACCOUNT: &str = "4a1e9b3d-2c6f-5d8e-b7a0-9f1c3e5d7b92";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Value,
}

type Responder = dyn Fn(&Seen) -> Response + Send + Sync;

struct Script {
    seen: Mutex<Vec<Seen>>,
    respond: Box<Responder>,
}

async fn handle(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let response = (script.respond)(&seen);
    script.seen.lock().unwrap().push(seen);
    response
}

struct Upstream {
    server: TestServer,
    script: Arc<Script>,
}

impl Upstream {
    async fn start(respond: impl Fn(&Seen) -> Response + Send + Sync + 'static) -> Self {
        let script = Arc::new(Script { seen: Mutex::new(Vec::new()), respond: Box::new(respond) });
        let router = axum::Router::new().fallback(handle).with_state(script.clone());
        Upstream { server: serve(router).await, script }
    }

    fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }
}

struct Client {
    http: Http,
    base: Url,
    token: SecretString,
    catalog: Catalog,
}

impl Client {
    fn new(upstream: &Upstream) -> Self {
        Self::with_limits(upstream, HttpLimits::default())
    }

    fn with_limits(upstream: &Upstream, limits: HttpLimits) -> Self {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Client {
            http: Http { client, limits },
            base: Url::parse(&upstream.server.origin).unwrap(),
            token: SecretString::from(TOKEN.to_owned()),
            catalog: Catalog::embedded(),
        }
    }

    fn call(&self) -> Call<'_> {
        Call {
            http: &self.http,
            integration: self.catalog.get("coinbase").unwrap(),
            base: &self.base,
            credential: Credential::Bearer(&self.token),
        }
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn coinbase_error(status: StatusCode, id: &str, message: &str) -> Response {
    json_response(status, json!({"errors": [{"id": id, "message": message}]}))
}

fn account(id: &str, code: &str, kind: &str, amount: &str, native: Option<&str>) -> Value {
    let mut account = json!({
        "id": id,
        "name": format!("{code} Wallet"),
        "primary": code == "BTC",
        "type": kind,
        "currency": {"code": code, "name": code, "type": if kind == "fiat" { "fiat" } else { "crypto" }},
        "balance": {"amount": amount, "currency": code},
        "created_at": "2024-01-31T20:49:02Z",
        "updated_at": "2024-01-31T20:49:02Z",
        "resource": "account",
        "resource_path": format!("/v2/accounts/{id}"),
    });
    if let Some(native) = native {
        account["native_balance"] = json!({"amount": native, "currency": "USD"});
    }
    account
}

fn page(data: Vec<Value>, next_uri: Option<&str>) -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "pagination": {"ending_before": null, "starting_after": null, "limit": 100, "order": "desc",
                           "previous_uri": null, "next_uri": next_uri},
            "data": data,
        }),
    )
}

/// Five accounts over three pages (Coinbase may return fewer than `limit`), spot prices, one transaction.
fn three_pages(seen: &Seen) -> Response {
    match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/v2/accounts") if !seen.query.contains("starting_after") => page(
            vec![
                account(BTC_ACCOUNT, "BTC", "wallet", "1.50000000", None),
                // An older answer shape: `currency` as a code string, with a USD native balance.
                json!({"id": ETH_ACCOUNT, "name": "ETH Wallet", "primary": false, "type": "wallet", "currency": "ETH",
                       "balance": {"amount": "2.00000000", "currency": "ETH"},
                       "native_balance": {"amount": "7000.00", "currency": "USD"}}),
            ],
            Some(&format!("/v2/accounts?&limit=100&starting_after={ETH_ACCOUNT}")),
        ),
        ("GET", "/v2/accounts") if seen.query.ends_with(ETH_ACCOUNT) => page(
            vec![
                account(USDC_ACCOUNT, "USDC", "wallet", "0.00000000", Some("0.00")),
                account(USD_ACCOUNT, "USD", "fiat", "1250.50", Some("1250.50")),
            ],
            Some(&format!("/v2/accounts?&limit=100&starting_after={USD_ACCOUNT}")),
        ),
        ("GET", "/v2/accounts") if seen.query.ends_with(USD_ACCOUNT) => {
            page(vec![account(SOL_ACCOUNT, "SOL", "vault", "10", None)], None)
        }
        ("GET", "/v2/prices/BTC-USD/spot") => {
            json_response(StatusCode::OK, json!({"data": {"amount": "65000.00", "base": "BTC", "currency": "USD"}}))
        }
        ("GET", "/v2/prices/ETH-USD/spot") => {
            json_response(StatusCode::OK, json!({"data": {"amount": "3500.00", "base": "ETH", "currency": "USD"}}))
        }
        ("GET", "/v2/prices/SOL-USD/spot") => coinbase_error(StatusCode::NOT_FOUND, "not_found", "Invalid currency"),
        _ => coinbase_error(StatusCode::NOT_FOUND, "not_found", "Not found"),
    }
}

fn assert_documented_headers(seen: &Seen) {
    assert_eq!(seen.headers[header::AUTHORIZATION], format!("Bearer {TOKEN}").as_str(), "{}", seen.path);
    assert_eq!(seen.headers["cb-version"], CB_VERSION);
    assert_eq!(CB_VERSION.len(), 10, "CB-VERSION is a YYYY-MM-DD date");
}

#[tokio::test]
async fn accounts_follow_next_uri_across_three_pages() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let upstream = Upstream::start(three_pages).await;
        let client = Client::new(&upstream);
        let adapter = CoinbaseV2::default();

        let accounts = adapter.accounts(client.call()).await.unwrap();
        let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, [BTC_ACCOUNT, ETH_ACCOUNT, USDC_ACCOUNT, USD_ACCOUNT, SOL_ACCOUNT]);
        assert_eq!(accounts[1].currency.as_deref(), Some("ETH"));
        assert_eq!(accounts[1].value_usd, Some(7000.0));
        assert_eq!(accounts[3].cash_usd, Some(1250.5));
        assert_eq!(accounts[0].cash_usd, Some(0.0));

        let seen = upstream.seen();
        assert_eq!(seen.len(), 3, "three pages, three requests");
        assert_eq!(seen[0].query, "limit=100");
        assert_eq!(seen[1].query, format!("&limit=100&starting_after={ETH_ACCOUNT}"));
        assert_eq!(seen[2].query, format!("&limit=100&starting_after={USD_ACCOUNT}"));
        seen.iter().for_each(assert_documented_headers);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn holdings_are_priced_and_fiat_is_a_balance() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let upstream = Upstream::start(three_pages).await;
        let client = Client::new(&upstream);
        let adapter = CoinbaseV2::default();

        let holdings = adapter.holdings(client.call()).await.unwrap();
        let symbols: Vec<&str> = holdings.iter().map(|h| h.symbol.as_str()).collect();
        assert_eq!(symbols, ["BTC", "ETH", "SOL"], "zero USDC and the USD wallet are not holdings");
        let btc = &holdings[0];
        assert_eq!((btc.amount, btc.price_usd, btc.value_usd), (1.5, Some(65_000.0), Some(97_500.0)));
        assert_eq!(btc.cost_basis_usd, None);
        assert_eq!(holdings[1].value_usd, Some(7000.0), "native_balance in USD is the value");
        assert_eq!(holdings[1].price_usd, Some(3500.0));
        assert_eq!((holdings[2].price_usd, holdings[2].value_usd), (None, None), "an unpriced asset");

        // Prices are cached: a second call reads the accounts again but no spot price.
        adapter.holdings(client.call()).await.unwrap();
        let spot = upstream.seen().iter().filter(|s| s.path.starts_with("/v2/prices/")).count();
        assert_eq!(spot, 3);

        let balances = adapter.balances(client.call()).await.unwrap();
        assert_eq!(balances.len(), 1);
        assert_eq!((balances[0].currency.as_str(), balances[0].cash), ("USD", 1250.5));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_off_origin_next_uri_is_refused_before_it_is_followed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        for next in ["https://evil.example/v2/accounts?limit=100", "//evil.example/v2/accounts?x", "/v2/user?x=1"] {
            let next = next.to_owned();
            let upstream =
                Upstream::start(move |_| page(vec![account(BTC_ACCOUNT, "BTC", "wallet", "1", None)], Some(&next)))
                    .await;
            let client = Client::new(&upstream);
            let err = CoinbaseV2::default().accounts(client.call()).await.unwrap_err();
            assert!(matches!(&err, ApiError::Protocol(m) if m.contains("next_uri")), "{err:?}");
            assert_eq!(upstream.seen().len(), 1, "nothing followed");
        }
        // A next_uri that repeats a page is a cycle, not an endless list.
        let upstream = Upstream::start(|_| page(vec![], Some("/v2/accounts?limit=100&starting_after=x"))).await;
        let client = Client::new(&upstream);
        let err = CoinbaseV2::default().accounts(client.call()).await.unwrap_err();
        assert!(matches!(&err, ApiError::Protocol(m) if m.contains("repeats")), "{err:?}");
        assert_eq!(upstream.seen().len(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn token_and_scope_errors_are_classified() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cases: Vec<(StatusCode, &str, ApiError)> = vec![
            (StatusCode::UNAUTHORIZED, "expired_token", ApiError::Unauthorized),
            (StatusCode::UNAUTHORIZED, "revoked_token", ApiError::Revoked("revoked_token".into())),
            (StatusCode::UNAUTHORIZED, "invalid_token", ApiError::Revoked("invalid_token".into())),
            (StatusCode::UNAUTHORIZED, "authentication_error", ApiError::Unauthorized),
            (StatusCode::FORBIDDEN, "invalid_scope", ApiError::InsufficientScope),
            (StatusCode::NOT_FOUND, "not_found", ApiError::NotFound("the message".into())),
            (
                StatusCode::BAD_REQUEST,
                "personal_details_required",
                ApiError::Rejected {
                    status: 400,
                    error: "personal_details_required".into(),
                    message: Some("the message".into()),
                },
            ),
        ];
        for (status, id, expected) in cases {
            let id_owned = id.to_owned();
            let upstream = Upstream::start(move |_| coinbase_error(status, &id_owned, "the message")).await;
            let client = Client::new(&upstream);
            let err = CoinbaseV2::default().accounts(client.call()).await.unwrap_err();
            assert_eq!(err, expected, "{id}");
            assert!(!err.to_string().contains(TOKEN));
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rate_limits_server_errors_and_bad_bodies() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let upstream = Upstream::start(|_| {
            let mut r = coinbase_error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", "Too many requests");
            r.headers_mut().insert(header::RETRY_AFTER, "7".parse().unwrap());
            r
        })
        .await;
        let err = CoinbaseV2::default().accounts(Client::new(&upstream).call()).await.unwrap_err();
        assert_eq!(
            err,
            ApiError::Transient { retry_after: Some(Duration::from_secs(7)), reason: "rate_limit_exceeded".into() }
        );

        for status in [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::SERVICE_UNAVAILABLE] {
            let upstream = Upstream::start(move |_| (status, "<html>down</html>").into_response()).await;
            let err = CoinbaseV2::default().accounts(Client::new(&upstream).call()).await.unwrap_err();
            assert!(matches!(err, ApiError::Transient { retry_after: None, .. }), "{status}: {err:?}");
        }

        let upstream = Upstream::start(|_| (StatusCode::OK, "{\"data\": [ {\"id\": ").into_response()).await;
        let err = CoinbaseV2::default().accounts(Client::new(&upstream).call()).await.unwrap_err();
        assert!(matches!(err, ApiError::Protocol(_)), "{err:?}");

        // A balance that is not a decimal string is refused, not guessed.
        let upstream = Upstream::start(|_| page(vec![account(BTC_ACCOUNT, "BTC", "wallet", "1e3", None)], None)).await;
        let err = CoinbaseV2::default().accounts(Client::new(&upstream).call()).await.unwrap_err();
        assert!(matches!(&err, ApiError::Protocol(m) if m.contains("balance.amount")), "{err:?}");

        let upstream = Upstream::start(|_| (StatusCode::OK, "x".repeat(64 * 1024)).into_response()).await;
        let limits = HttpLimits { max_body_bytes: 16 * 1024, ..HttpLimits::default() };
        let err = CoinbaseV2::default().accounts(Client::with_limits(&upstream, limits).call()).await.unwrap_err();
        assert!(matches!(&err, ApiError::Protocol(m) if m.contains("limit")), "{err:?}");
    })
    .await
    .unwrap();
}

fn sent_transaction(status: &str) -> Value {
    json!({"data": {
        "id": "3c04e35e-8e5a-5ff1-9155-00675db4ac02",
        "type": "send",
        "status": status,
        "amount": {"amount": "-1.50050000", "currency": "ETH"},
        "native_amount": {"amount": "-5251.75", "currency": "USD"},
        "description": null,
        "created_at": "2026-12-01T10:00:00Z",
        "updated_at": "2026-12-01T10:00:00Z",
        "resource": "transaction",
        "resource_path": format!("/v2/accounts/{ETH_ACCOUNT}/transactions/3c04e35e-8e5a-5ff1-9155-00675db4ac02"),
        "idem": "idem-1",
        "network": {"status": "pending", "network_name": "ethereum",
                    "transaction_fee": {"amount": "0.00050000", "currency": "ETH"},
                    "transaction_amount": {"amount": "1.50000000", "currency": "ETH"}},
        "to": {"resource": "address", "address": "0x52908400098527886E0F7030069857D2E4169EE7", "currency": "ETH"},
    }})
}

/// Accounts on one page; the send answers 402 until `CB-2FA-TOKEN: 654321`, a wrong code 402 again.
fn two_factor(seen: &Seen) -> Response {
    match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/v2/accounts") => page(vec![account(ETH_ACCOUNT, "ETH", "wallet", "10.0", None)], None),
        ("POST", path) if path == format!("/v2/accounts/{ETH_ACCOUNT}/transactions") => {
            match seen.headers.get("cb-2fa-token").map(|v| v.to_str().unwrap()) {
                None => coinbase_error(
                    StatusCode::PAYMENT_REQUIRED,
                    "two_factor_required",
                    "Two-step verification code required",
                ),
                Some("654321") => json_response(StatusCode::CREATED, sent_transaction("pending")),
                Some(_) => coinbase_error(
                    StatusCode::PAYMENT_REQUIRED,
                    "two_factor_required",
                    "That code was invalid. Please try again.",
                ),
            }
        }
        ("GET", path) if path.ends_with("/transactions/3c04e35e-8e5a-5ff1-9155-00675db4ac02") => {
            let mut done = sent_transaction("completed");
            done["data"]["network"]["hash"] = json!(format!("0x{}", "ab".repeat(32)));
            json_response(StatusCode::OK, done)
        }
        _ => coinbase_error(StatusCode::NOT_FOUND, "not_found", "Not found"),
    }
}

fn send_request(code: Option<&str>) -> SendRequest {
    SendRequest {
        symbol: "ETH".into(),
        network: "ethereum".into(),
        address: "0x52908400098527886E0F7030069857D2E4169EE7".into(),
        tag: None,
        amount: 1.5,
        idem: "idem-1".into(),
        quote_id: None,
        mfa_code: code.map(|c| SecretString::from(c.to_owned())),
    }
}

#[tokio::test]
async fn send_asks_for_two_factor_then_replays_with_cb_2fa_token() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let upstream = Upstream::start(two_factor).await;
        let client = Client::new(&upstream);
        let adapter = CoinbaseV2::default();

        let first = adapter.send(client.call(), &send_request(None)).await.unwrap();
        assert_eq!(first, SendOutcome::MfaRequired { mfa_type: "totp".into() });

        let wrong = adapter.send(client.call(), &send_request(Some("000000"))).await.unwrap_err();
        assert!(matches!(wrong, ApiError::Refused { reason: Refusal::InvalidMfaCode, .. }), "{wrong:?}");

        let SendOutcome::Sent(sent) = adapter.send(client.call(), &send_request(Some("654321"))).await.unwrap() else {
            panic!("sent with the code");
        };
        assert_eq!(sent.id, format!("{ETH_ACCOUNT}/3c04e35e-8e5a-5ff1-9155-00675db4ac02"));
        assert_eq!((sent.symbol.as_str(), sent.amount, sent.fee), ("ETH", 1.5, Some(0.0005)));
        assert_eq!(sent.status, TransferStatus::Pending);
        assert_eq!(sent.network.as_deref(), Some("ethereum"));
        assert!(!sent.incoming);

        let posts: Vec<Seen> = upstream.seen().into_iter().filter(|s| s.method == Method::POST).collect();
        assert_eq!(posts.len(), 3);
        for post in &posts {
            assert_documented_headers(post);
            assert_eq!(
                post.body,
                json!({"type": "send", "to": "0x52908400098527886E0F7030069857D2E4169EE7", "amount": "1.5",
                       "currency": "ETH", "network": "ethereum", "idem": "idem-1"}),
                "the replay repeats exactly the same parameters"
            );
        }
        assert!(posts[0].headers.get("cb-2fa-token").is_none());
        assert_eq!(posts[2].headers["cb-2fa-token"], "654321");

        let status = adapter.transfer(client.call(), &sent.id).await.unwrap();
        assert_eq!(status.status, TransferStatus::Succeeded);
        assert_eq!(status.hash, Some(format!("0x{}", "ab".repeat(32))));
        assert_eq!(status.status_details, "completed");

        let before = upstream.seen().len();
        for bad in ["no-slash", "a/b/c", "../x/y", "a/"] {
            let err = adapter.transfer(client.call(), bad).await.unwrap_err();
            assert!(matches!(err, ApiError::NotFound(_)), "{bad}: {err:?}");
        }
        assert_eq!(upstream.seen().len(), before, "malformed ids are not sent");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn send_validation_errors_are_refusals_and_quote_checks_the_balance() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let upstream = Upstream::start(|seen| match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", "/v2/accounts") => page(vec![account(ETH_ACCOUNT, "ETH", "wallet", "10.0", None)], None),
            ("GET", "/v2/prices/ETH-USD/spot") => {
                json_response(StatusCode::OK, json!({"data": {"amount": "3500.00", "currency": "USD"}}))
            }
            _ => json_response(
                StatusCode::BAD_REQUEST,
                json!({"errors": [{"id": "validation_error", "message": "You don't have that much.", "field": "amount"}]}),
            ),
        })
        .await;
        let client = Client::new(&upstream);
        let adapter = CoinbaseV2::default();
        let err = adapter.send(client.call(), &send_request(Some("654321"))).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::InsufficientFunds, .. }), "{err:?}");

        let mut quote = QuoteRequest {
            symbol: "ETH".into(),
            network: "ethereum".into(),
            address: "0x52908400098527886E0F7030069857D2E4169EE7".into(),
            tag: None,
            amount: None,
            amount_usd: Some(7000.0),
        };
        let quoted = adapter.quote(client.call(), &quote).await.unwrap();
        assert_eq!((quoted.amount, quoted.price_usd, quoted.available), (2.0, 3500.0, 10.0));
        quote.amount = Some(11.0);
        let err = adapter.quote(client.call(), &quote).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::InsufficientFunds, .. }), "{err:?}");
        quote.address = "not-an-address".into();
        let err = adapter.quote(client.call(), &quote).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::InvalidAddress, .. }), "{err:?}");
        quote.network = "tron".into();
        let err = adapter.quote(client.call(), &quote).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::UnsupportedNetwork, .. }), "{err:?}");
        assert!(upstream.seen().iter().all(|s| s.method == Method::GET || s.path.ends_with("/transactions")));
    })
    .await
    .unwrap();
}
