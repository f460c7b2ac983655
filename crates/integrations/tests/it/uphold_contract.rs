//! Contract tests of the Uphold v0 adapter against a local server answering with examples written from
//! Uphold's API reference (card, transaction, ticker and asset objects; Range/Content-Range pagination;
//! `validation_failed` bodies; 401/403/404/429/5xx), asserting what the adapter sent and how it read the
//! answers: cards across pages, quote then commit, a second commit that does not send twice, an expired
//! quote, the one-time-password step, and every error class.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use linkvault_integrations::api::{
    ApiError, Credential, ExchangeApi, QuoteRequest, Refusal, SendOutcome, SendRequest, TransferStatus,
};
use linkvault_integrations::{Catalog, HttpLimits, Integration};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

use crate::common::*;

const TOKEN: &str = "41ee8b1fa14042e031fe304bb4793b54e6576d19b306dc205136172b80d59d20";
const BTC_CARD: &str = "024e51fc-5513-4d82-882c-9b22024280cc";
const EUR_CARD: &str = "bc9b3911-4bc1-4c6d-ac05-0ae87dcfc9b3";
const USD_CARD: &str = "48ce2ac5-c038-4426-b2f8-a2bdbcc93053";
const QUOTED: &str = "99191bf6-52d8-4f29-92e8-676b68c9a85b";
const EXPIRED: &str = "7c377eba-cb1e-45a2-8c13-9807b4139bec";
const OTP: &str = "2c326b15-7106-48be-a326-06f19e69746b";
const TO: &str = "n2eMqTT929pb1RDNuqEnxdaLau1rxy3efi";

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    range: Option<String>,
    otp: Option<String>,
    body: Value,
}

#[derive(Debug, Default)]
struct Server {
    seen: Vec<Seen>,
    /// How `/v0/me/cards` answers: "" (documented pages) or an error class.
    mode: &'static str,
    committed: bool,
}

type Shared = Arc<Mutex<Server>>;

fn card(id: &str, currency: &str, balance: &str, usd: &str, address: Value) -> Value {
    json!({
        "address": address, "available": balance, "balance": balance, "currency": currency, "id": id,
        "label": format!("{currency} card"), "lastTransactionAt": "2018-08-01T09:53:44.617Z",
        "normalized": [{"available": usd, "balance": usd, "currency": "USD"}],
        "settings": {"position": 1, "protected": false, "starred": true},
    })
}

/// A withdrawal of 0.01 BTC to an external address, as in the reference's transaction examples.
fn withdrawal(id: &str, status: &str, reference: Option<&str>) -> Value {
    json!({
        "application": null, "createdAt": "2026-12-01T10:00:00.000Z",
        "denomination": {"amount": "0.01", "currency": "BTC", "pair": "BTCBTC", "rate": "1.00"},
        "fees": [
            {"type": "network", "amount": "0.0002", "target": "origin", "currency": "BTC"},
            {"type": "withdrawal", "amount": "0.00", "target": "origin", "currency": "BTC", "percentage": "0.5"}
        ],
        "id": id, "message": null, "network": "bitcoin",
        "normalized": [{"amount": "9.18", "commission": "0.00", "currency": "USD", "fee": "0.18", "rate": "900.00000"}],
        "params": {"currency": "BTC", "margin": "0.00", "pair": "BTCBTC", "progress": "0", "rate": "1.00",
                   "ttl": 30000, "type": "external/out"},
        "status": status, "type": "withdrawal", "reference": reference,
        "origin": {"amount": "0.0102", "base": "0.01", "CardId": BTC_CARD, "commission": "0.00", "currency": "BTC",
                   "description": "Nuno Sousa", "fee": "0.0002", "rate": "1.00",
                   "sources": [{"id": "390ed0ab-c014-43f3-868a-8ea3ea56025e", "amount": "0.0102"}], "type": "card"},
        "destination": {"address": TO, "amount": "0.01", "base": "0.01", "commission": "0.00", "currency": "BTC",
                        "description": TO, "fee": "0.00", "rate": "1.00", "type": "external"},
    })
}

fn uphold_error(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn paged(items: Vec<Value>, range: Option<&str>, page: usize) -> Response {
    let first: usize = range
        .and_then(|r| r.strip_prefix("items="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, _)| a.parse().ok())
        .unwrap_or(0);
    let total = items.len();
    let last = (first + page - 1).min(total - 1);
    let slice: Vec<Value> = items[first..=last].to_vec();
    ([("content-range", format!("items {first}-{last}/{total}"))], axum::Json(Value::Array(slice))).into_response()
}

async fn handle(State(server): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        authorization: header("authorization"),
        range: header("range"),
        otp: header("otp-token"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let mut state = server.lock().unwrap();
    state.seen.push(seen.clone());
    if seen.path.starts_with("/v0/me") && seen.authorization.as_deref() != Some(format!("Bearer {TOKEN}").as_str()) {
        return uphold_error(StatusCode::UNAUTHORIZED, json!({"error": "invalid_token"}));
    }
    let path = seen.path.as_str();
    match (seen.method.as_str(), path) {
        ("GET", "/v0/me/cards") => match state.mode {
            "401" => uphold_error(StatusCode::UNAUTHORIZED, json!({"error": "invalid_token"})),
            "403" => uphold_error(StatusCode::FORBIDDEN, json!({"code": "forbidden", "message": "Access forbidden"})),
            "429" => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "85"), ("x-ratelimit-limit", "300"), ("x-ratelimit-remaining", "0")],
                axum::Json(json!({"code": "too_many_requests"})),
            )
                .into_response(),
            "503" => uphold_error(StatusCode::SERVICE_UNAVAILABLE, json!({"code": "service_unavailable"})),
            "malformed" => ([("content-type", "text/html")], "<html>maintenance</html>").into_response(),
            "oversize" => axum::Json(json!([{"label": "x".repeat(10_000)}])).into_response(),
            "bad-decimal" => axum::Json(json!([card(BTC_CARD, "BTC", "5e3", "4500.00", json!({}))])).into_response(),
            "wrong-page" => (
                [("content-range", "items 0-1/9")],
                axum::Json(json!([card(BTC_CARD, "BTC", "5.00", "4500.00", json!({}))])),
            )
                .into_response(),
            _ => paged(
                vec![
                    card(BTC_CARD, "BTC", "5.00", "4500.00", json!({"bitcoin": "mkZuBgFa4gAjJ2UckDA3Pms68rVBavAneF"})),
                    card(EUR_CARD, "EUR", "146.38", "170.96", json!({"bitcoin": "ms22VBPSahNTxHZNkYo2d4Rmw1Tgfx6ojr"})),
                    card(USD_CARD, "USD", "6.56", "6.56", json!({})),
                ],
                seen.range.as_deref(),
                2,
            ),
        },
        ("GET", "/v0/ticker/USD") => axum::Json(json!([
            {"ask": "440.99", "bid": "440", "currency": "USD", "pair": "BTCUSD"},
            {"ask": "1.1317", "bid": "1.1316", "currency": "USD", "pair": "EURUSD"},
            {"ask": "6.244", "bid": "6.2425", "currency": "CNY", "pair": "USDCNY"},
            {"ask": "1", "bid": "1", "currency": "USD", "pair": "USDUSD"}
        ]))
        .into_response(),
        ("GET", "/v0/assets") => paged(
            vec![
                json!({"code": "BTC", "formatting": {"decimal": ".", "format": "__symbol__ __value__ __code__",
                       "grouping": ",", "precision": 8}, "name": "Bitcoin", "status": "open", "symbol": "₿",
                       "type": "cryptocurrency"}),
                json!({"code": "USD", "formatting": {"decimal": ".", "format": "__symbol__ __value__ __code__",
                       "grouping": ",", "precision": 2}, "name": "US Dollar", "status": "open", "symbol": "$",
                       "type": "fiat"}),
                json!({"code": "ETH", "name": "Ethereum", "status": "halted", "type": "cryptocurrency"}),
            ],
            seen.range.as_deref(),
            50,
        ),
        ("GET", p) if p == format!("/v0/me/cards/{BTC_CARD}/addresses") => axum::Json(json!([
            {"formats": [{"format": "pubkeyhash", "value": "mkZuBgFa4gAjJ2UckDA3Pms68rVBavAneF"}], "type": "bitcoin"}
        ]))
        .into_response(),
        ("POST", p) if p == format!("/v0/me/cards/{BTC_CARD}/transactions") => {
            if seen.query == "commit=true" {
                let reference = seen.body["reference"].as_str().map(str::to_owned);
                axum::Json(withdrawal("5d4e1b4e-0000-4000-8000-000000000001", "processing", reference.as_deref()))
                    .into_response()
            } else if seen.body["denomination"]["amount"] == "1000" {
                uphold_error(
                    StatusCode::BAD_REQUEST,
                    json!({"code": "validation_failed", "errors": {"denomination": {"code": "validation_failed",
                        "errors": {"amount": [{"code": "sufficient_funds",
                        "message": "Not enough funds for the specified amount"}]}}}}),
                )
            } else if seen.body["destination"] == "nowhere" {
                uphold_error(
                    StatusCode::BAD_REQUEST,
                    json!({"code": "validation_failed", "errors": {"destination": [{"code": "invalid",
                        "message": "This value is not a valid address"}]}}),
                )
            } else {
                axum::Json(withdrawal(QUOTED, "pending", None)).into_response()
            }
        }
        ("POST", p) if p == format!("/v0/me/cards/{BTC_CARD}/transactions/{QUOTED}/commit") => {
            if state.committed {
                // Undocumented: how Uphold answers a second commit; any refusal must lead to a lookup.
                uphold_error(StatusCode::CONFLICT, json!({"code": "conflict", "message": "Transaction is not pending"}))
            } else {
                state.committed = true;
                axum::Json(withdrawal(QUOTED, "processing", None)).into_response()
            }
        }
        ("POST", p) if p == format!("/v0/me/cards/{BTC_CARD}/transactions/{EXPIRED}/commit") => {
            uphold_error(StatusCode::NOT_FOUND, json!({"code": "not_found", "message": "Transaction not found"}))
        }
        ("POST", p) if p == format!("/v0/me/cards/{BTC_CARD}/transactions/{OTP}/commit") => match seen.otp.as_deref() {
            None => {
                (StatusCode::UNAUTHORIZED, [("otp-token", "Required")], axum::Json(json!({"code": "otp_required"})))
                    .into_response()
            }
            Some("123456") => axum::Json(withdrawal(OTP, "processing", None)).into_response(),
            Some(_) => {
                (StatusCode::UNAUTHORIZED, [("otp-token", "Required")], axum::Json(json!({"code": "otp_invalid"})))
                    .into_response()
            }
        },
        ("GET", p) if p == format!("/v0/me/transactions/{QUOTED}") => {
            let status = if state.committed { "completed" } else { "pending" };
            let mut txn = withdrawal(QUOTED, status, None);
            txn["params"]["txid"] = json!("d1f2c3b4a5968778695a4b3c2d1e0f00d1f2c3b4a5968778695a4b3c2d1e0f00");
            axum::Json(txn).into_response()
        }
        ("GET", "/v0/me/transactions") => paged(
            vec![
                withdrawal(QUOTED, "completed", None),
                withdrawal("5d4e1b4e-0000-4000-8000-000000000002", "failed", Some("other")),
                withdrawal("5d4e1b4e-0000-4000-8000-000000000003", "cancelled", None),
            ],
            seen.range.as_deref(),
            2,
        ),
        _ => uphold_error(StatusCode::NOT_FOUND, json!({"code": "not_found", "message": "Not found"})),
    }
}

struct Fixture {
    server: Shared,
    _http: TestServer,
    integration: Integration,
}

async fn fixture() -> Fixture {
    let server: Shared = Arc::default();
    let router = axum::Router::new().fallback(handle).with_state(server.clone());
    let http = serve(router).await;
    let mut integration = Catalog::embedded().get("uphold").unwrap().clone();
    integration.endpoints.api_base_url = Some(Url::parse(&http.origin).unwrap());
    Fixture { server, _http: http, integration }
}

impl Fixture {
    fn seen(&self) -> Vec<Seen> {
        self.server.lock().unwrap().seen.clone()
    }
    fn clear(&self) {
        self.server.lock().unwrap().seen.clear();
    }
    fn mode(&self, mode: &'static str) {
        self.server.lock().unwrap().mode = mode;
    }
}

fn quote_btc(amount: &str) -> QuoteRequest {
    QuoteRequest {
        symbol: "BTC".into(),
        network: "bitcoin".into(),
        address: if amount == "bad" { "nowhere".into() } else { TO.into() },
        tag: None,
        amount: Some(if amount == "bad" { 0.01 } else { amount.parse().unwrap() }),
        amount_usd: None,
    }
}

fn send_btc(quote_id: Option<String>, idem: &str) -> SendRequest {
    SendRequest {
        symbol: "BTC".into(),
        network: "bitcoin".into(),
        address: TO.into(),
        tag: None,
        amount: 0.01,
        idem: idem.into(),
        quote_id,
        mfa_code: None,
    }
}

#[tokio::test]
async fn uphold_cards_across_range_pages_holdings_and_balances() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let f = fixture().await;
        let token = SecretString::from(TOKEN.to_owned());
        let exchange = ExchangeApi::new(HttpLimits::default()).unwrap();
        let (api, call) = exchange.adapter(&f.integration, Credential::Bearer(&token)).unwrap();

        let accounts = api.accounts(call).await.unwrap();
        let ids: Vec<_> = accounts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, [BTC_CARD, EUR_CARD, USD_CARD]);
        assert_eq!(accounts[0].value_usd, Some(4500.0));
        assert_eq!(accounts[2].cash_usd, Some(6.56));
        let seen = f.seen();
        let ranges: Vec<_> = seen.iter().map(|s| s.range.clone().unwrap_or_default()).collect();
        assert_eq!(ranges, ["items=0-49", "items=2-51"], "follows Content-Range from where the page ended");
        assert!(seen.iter().all(|s| s.authorization.as_deref() == Some(format!("Bearer {TOKEN}").as_str())));

        let holdings = api.holdings(call).await.unwrap();
        assert_eq!(holdings.len(), 1, "EUR and USD cards are balances: {holdings:?}");
        assert_eq!(holdings[0].symbol, "BTC");
        assert_eq!(holdings[0].name, "Bitcoin");
        assert_eq!(holdings[0].amount, 5.0);
        assert_eq!(holdings[0].price_usd, Some((440.99 + 440.0) / 2.0));
        assert_eq!(holdings[0].value_usd, Some(4500.0), "Uphold's own USD normalization");
        let balances = api.balances(call).await.unwrap();
        let pairs: Vec<_> = balances.iter().map(|b| (b.currency.as_str(), b.cash, b.buying_power)).collect();
        assert_eq!(pairs, [("EUR", 146.38, 146.38), ("USD", 6.56, 6.56)]);
        // The ticker and assets are public: sent without the token.
        let public: Vec<_> = f.seen().into_iter().filter(|s| !s.path.starts_with("/v0/me")).collect();
        assert!(!public.is_empty() && public.iter().all(|s| s.authorization.is_none()), "{public:?}");

        let address = api.deposit_address(call, "BTC", "bitcoin").await.unwrap();
        assert_eq!(address.address, "mkZuBgFa4gAjJ2UckDA3Pms68rVBavAneF");
        let assets = api.assets(call).await.unwrap();
        let summary: Vec<_> =
            assets.iter().map(|a| (a.symbol.as_str(), a.network.as_str(), a.withdraw_enabled)).collect();
        assert_eq!(summary, [("BTC", "bitcoin", true), ("ETH", "ethereum", false)]);
        assert!(assets.iter().all(|a| a.withdraw_fee.is_none() && a.withdraw_min.is_none()));

        // A page that does not start where asked is a protocol error, not a silent gap.
        f.mode("wrong-page");
        let err = api.accounts(call).await.unwrap_err();
        assert!(matches!(err, ApiError::Protocol(_)), "{err:?}");
        // Amounts are decimal strings, parsed strictly.
        f.mode("bad-decimal");
        assert!(matches!(api.accounts(call).await.unwrap_err(), ApiError::Protocol(m) if m.contains("decimal")));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn uphold_quote_then_commit_once_expired_and_otp() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let f = fixture().await;
        let token = SecretString::from(TOKEN.to_owned());
        let exchange = ExchangeApi::new(HttpLimits::default()).unwrap();
        let (api, call) = exchange.adapter(&f.integration, Credential::Bearer(&token)).unwrap();

        let quote = api.quote(call, &quote_btc("0.01")).await.unwrap();
        let created = f.seen().into_iter().find(|s| s.method == "POST").unwrap();
        assert_eq!(created.path, format!("/v0/me/cards/{BTC_CARD}/transactions"));
        assert_eq!(created.query, "", "a quote is not committed");
        assert_eq!(
            created.body,
            json!({"denomination": {"amount": "0.01", "currency": "BTC"}, "destination": TO, "network": "bitcoin"})
        );
        assert_eq!(quote.quote_id.as_deref(), Some(format!("{BTC_CARD}/{QUOTED}").as_str()));
        assert_eq!((quote.amount, quote.fee, quote.available), (0.01, 0.0002, 5.0));
        let expected = time::macros::datetime!(2026-12-01 10:00:30 UTC);
        assert_eq!(quote.expires_at, Some(expected), "createdAt + params.ttl");
        assert_eq!(quote.from_address.as_deref(), Some("mkZuBgFa4gAjJ2UckDA3Pms68rVBavAneF"));

        // Commit, then commit again (a retry): the second is refused, the adapter looks the transaction up.
        f.clear();
        let SendOutcome::Sent(first) = api.send(call, &send_btc(quote.quote_id.clone(), "k1")).await.unwrap() else {
            panic!()
        };
        assert_eq!((first.id.as_str(), first.status), (QUOTED, TransferStatus::Pending));
        assert_eq!((first.amount, first.fee, first.network.as_deref()), (0.01, Some(0.0002), Some("bitcoin")));
        let SendOutcome::Sent(again) = api.send(call, &send_btc(quote.quote_id.clone(), "k1")).await.unwrap() else {
            panic!()
        };
        assert_eq!(again.id, QUOTED);
        assert_eq!(again.status, TransferStatus::Succeeded);
        assert!(again.hash.is_some());
        let calls: Vec<_> = f.seen().iter().map(|s| format!("{} {}", s.method, s.path)).collect();
        assert_eq!(
            calls,
            [
                format!("POST /v0/me/cards/{BTC_CARD}/transactions/{QUOTED}/commit"),
                format!("POST /v0/me/cards/{BTC_CARD}/transactions/{QUOTED}/commit"),
                format!("GET /v0/me/transactions/{QUOTED}"),
            ],
            "one create, no second transaction"
        );

        // Past params.ttl Uphold answers the commit with 404 and the transaction is gone: quote again.
        let err = api.send(call, &send_btc(Some(format!("{BTC_CARD}/{EXPIRED}")), "k2")).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::QuoteExpired, .. }), "{err:?}");

        // A user with OTP on commits: 401 + OTP-Token: Required → MFA, then the code in OTP-Token.
        let otp_quote = Some(format!("{BTC_CARD}/{OTP}"));
        assert_eq!(
            api.send(call, &send_btc(otp_quote.clone(), "k3")).await.unwrap(),
            SendOutcome::MfaRequired { mfa_type: "totp".into() }
        );
        let mut with_code = send_btc(otp_quote.clone(), "k3");
        with_code.mfa_code = Some(SecretString::from("000000".to_owned()));
        let err = api.send(call, &with_code).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::InvalidMfaCode, .. }), "{err:?}");
        with_code.mfa_code = Some(SecretString::from("123456".to_owned()));
        assert!(matches!(api.send(call, &with_code).await.unwrap(), SendOutcome::Sent(t) if t.id == OTP));
        assert_eq!(f.seen().last().unwrap().otp.as_deref(), Some("123456"));

        // Without a quote: the recent transactions are searched for the key, then create-and-commit with it.
        f.clear();
        let SendOutcome::Sent(direct) = api.send(call, &send_btc(None, "idem-42")).await.unwrap() else { panic!() };
        assert_eq!(direct.status, TransferStatus::Pending);
        let seen = f.seen();
        assert_eq!(seen[0].path, "/v0/me/transactions");
        let create = seen.iter().find(|s| s.method == "POST").unwrap();
        assert_eq!(create.query, "commit=true");
        assert_eq!(create.body["reference"], "idem-42");
        // A key already among the recent transactions answers that one, creating nothing.
        f.clear();
        let SendOutcome::Sent(found) = api.send(call, &send_btc(None, "other")).await.unwrap() else { panic!() };
        assert_eq!(found.status, TransferStatus::Failed);
        assert!(f.seen().iter().all(|s| s.method == "GET"));

        // Validation refusals.
        let err = api.quote(call, &quote_btc("1000")).await.unwrap_err();
        assert!(matches!(&err, ApiError::Refused { reason: Refusal::InsufficientFunds, message } if message.contains("Not enough funds")), "{err:?}");
        let err = api.quote(call, &quote_btc("bad")).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::InvalidAddress, .. }), "{err:?}");

        // Status and history.
        let status = api.transfer(call, QUOTED).await.unwrap();
        assert_eq!(status.status, TransferStatus::Succeeded);
        assert_eq!(status.status_details, "completed");
        let history = api.history(call).await.unwrap();
        let statuses: Vec<_> = history.iter().map(|t| t.status).collect();
        assert_eq!(statuses, [TransferStatus::Succeeded, TransferStatus::Failed, TransferStatus::Failed]);
        assert!(matches!(api.transfer(call, "no such id!").await, Err(ApiError::NotFound(_))), "ids are path-safe");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn uphold_error_classes() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let f = fixture().await;
        let token = SecretString::from(TOKEN.to_owned());
        let limits = HttpLimits { max_body_bytes: 4096, ..HttpLimits::default() };
        let exchange = ExchangeApi::new(limits).unwrap();
        let (api, call) = exchange.adapter(&f.integration, Credential::Bearer(&token)).unwrap();

        f.mode("401");
        assert_eq!(api.accounts(call).await.unwrap_err(), ApiError::Unauthorized);
        f.mode("403");
        assert_eq!(api.accounts(call).await.unwrap_err(), ApiError::InsufficientScope);
        f.mode("429");
        match api.accounts(call).await.unwrap_err() {
            ApiError::Transient { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(85))),
            other => panic!("{other:?}"),
        }
        f.mode("503");
        assert!(matches!(api.accounts(call).await.unwrap_err(), ApiError::Transient { retry_after: None, .. }));
        f.mode("malformed");
        let err = api.accounts(call).await.unwrap_err();
        assert!(matches!(&err, ApiError::Protocol(m) if !m.contains("maintenance")), "no body quoted: {err:?}");
        f.mode("oversize");
        assert!(matches!(api.accounts(call).await.unwrap_err(), ApiError::Protocol(m) if m.contains("limit")));

        // A wrong token: Uphold's 401 invalid_token.
        let wrong = SecretString::from("wrong".to_owned());
        let (api, call) = exchange.adapter(&f.integration, Credential::Bearer(&wrong)).unwrap();
        f.mode("");
        assert_eq!(api.balances(call).await.unwrap_err(), ApiError::Unauthorized);
        // Unknown transaction: 404.
        let (api, call) = exchange.adapter(&f.integration, Credential::Bearer(&token)).unwrap();
        assert!(matches!(api.transfer(call, "00000000-0000-4000-8000-000000000000").await, Err(ApiError::NotFound(_))));
        // An API key is not an Uphold credential.
        let (api, call) = exchange.adapter(&f.integration, Credential::ApiKey { key: &token, secret: &token }).unwrap();
        assert!(matches!(api.accounts(call).await, Err(ApiError::Config(_))));
    })
    .await
    .unwrap();
}
