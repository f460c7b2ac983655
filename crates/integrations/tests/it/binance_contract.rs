//! Contract tests of the Binance Spot adapter against a local server answering with examples written from
//! Binance's documented requests and responses. The server recomputes the HMAC-SHA256 signature of every
//! signed request itself and checks the timestamp against its own (possibly skewed) clock, the way Binance
//! does, so the tests prove what went over the wire: key header, signed query, recvWindow, withdrawOrderId.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use linkvault_integrations::api::{
    AccountApi, ApiError, Call, Credential, ExchangeApi, QuoteRequest, Refusal, SendOutcome, SendRequest,
    TransferStatus,
};
use linkvault_integrations::{Catalog, HttpLimits, Integration};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::common::{TEST_TIMEOUT, TestServer, serve};

const KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
const ADDRESS: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

/// One scripted answer: status, Retry-After, body.
type Canned = (u16, Option<u64>, Value);

#[derive(Default)]
struct Mock {
    /// Server clock = our clock + this (ms).
    server_offset_ms: i64,
    /// Per path: answers given before the default behaviour.
    script: HashMap<String, VecDeque<Canned>>,
    /// Per path: how many requests arrived.
    hits: HashMap<String, u32>,
    /// Every signed request: (path, whether its signature verified, the query it carried).
    signed: Vec<(String, bool, String)>,
    /// Withdrawals made by `withdraw/apply`: (id, withdrawOrderId, coin, network, address, amount).
    withdrawals: Vec<(String, String, String, String, String, String)>,
    /// The next apply is made but answered with a 5xx (the answer is "lost").
    lose_next_apply_answer: bool,
    /// After a lost apply answer, the history does not show the withdrawal this many more times.
    history_lag: u32,
    can_withdraw: bool,
    /// Extra withdraw-history entries (for pagination).
    history_filler: usize,
}

type Shared = Arc<Mutex<Mock>>;

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn hex_hmac(secret: &str, payload: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::sign(&key, payload.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn binance_error(status: u16, code: i64, msg: &str) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(json!({"code": code, "msg": msg}))).into_response()
}

fn canned((status, retry_after, body): Canned) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        response.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

fn withdrawal_json(w: &(String, String, String, String, String, String), status: i64) -> Value {
    json!({
        "id": w.0, "amount": w.5, "transactionFee": "2", "coin": w.2, "status": status, "address": w.4,
        "txId": if status == 6 { "0xabc123" } else { "" }, "applyTime": "2026-11-30 12:00:00", "network": w.3,
        "transferType": 0, "withdrawOrderId": w.1, "info": "", "confirmNo": 3, "walletType": 0, "txKey": "",
    })
}

fn coin_config() -> Value {
    let network = |network: &str, coin: &str, fee: &str, min: &str, withdraw: bool| {
        json!({
            "network": network, "coin": coin, "withdrawIntegerMultiple": "0.000001", "isDefault": false,
            "depositEnable": true, "withdrawEnable": withdraw, "depositDesc": "", "withdrawDesc": "",
            "name": network, "resetAddressStatus": false, "addressRegex": "^(0x)[0-9A-Fa-f]{40}$", "memoRegex": "",
            "withdrawFee": fee, "withdrawMin": min, "withdrawMax": "9999999999", "minConfirm": 12,
            "unLockConfirm": 0, "sameAddress": false, "withdrawTag": false, "estimatedArrivalTime": 5, "busy": false,
        })
    };
    json!([
        {"coin": "USDC", "depositAllEnable": true, "withdrawAllEnable": true, "name": "USD Coin", "free": "100",
         "locked": "0", "freeze": "0", "withdrawing": "0", "ipoing": "0", "ipoable": "0", "storage": "0",
         "isLegalMoney": false, "trading": true, "networkList": [
            network("ETH", "USDC", "2", "5", true),
            network("MATIC", "USDC", "0.1", "1", true),
            network("BSC", "USDC", "0.3", "10", true),
            network("SOL", "USDC", "1", "2", false),
         ]},
        {"coin": "BTC", "depositAllEnable": true, "withdrawAllEnable": true, "name": "Bitcoin", "free": "1.5",
         "locked": "0.5", "freeze": "0", "withdrawing": "0", "ipoing": "0", "ipoable": "0", "storage": "0",
         "isLegalMoney": false, "trading": true, "networkList": [network("BTC", "BTC", "0.0002", "0.001", true)]},
        {"coin": "EUR", "depositAllEnable": true, "withdrawAllEnable": false, "name": "Euro", "free": "20",
         "locked": "0", "freeze": "0", "withdrawing": "0", "ipoing": "0", "ipoable": "0", "storage": "0",
         "isLegalMoney": true, "trading": true, "networkList": []},
    ])
}

fn query_map(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

async fn handle(State(mock): State<Shared>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let mut m = mock.lock().unwrap();
    *m.hits.entry(path.clone()).or_default() += 1;
    if let Some(answer) = m.script.get_mut(&path).and_then(VecDeque::pop_front) {
        return canned(answer);
    }
    let public = matches!(path.as_str(), "/api/v3/time" | "/api/v3/ticker/price");
    if public {
        assert!(headers.get("x-mbx-apikey").is_none(), "a public call carries no key");
        return match path.as_str() {
            "/api/v3/time" => axum::Json(json!({"serverTime": now_ms() + m.server_offset_ms})).into_response(),
            _ => axum::Json(json!([
                {"symbol": "BTCUSDT", "price": "65000.00000000"},
                {"symbol": "ETHUSDT", "price": "3500.00000000"},
                {"symbol": "USDCUSDT", "price": "0.99990000"},
                {"symbol": "ETHBTC", "price": "0.05384000"},
            ]))
            .into_response(),
        };
    }
    // SIGNED: check the key, recompute the signature, check the timestamp, as Binance documents.
    if headers.get("x-mbx-apikey").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return binance_error(401, -2015, "Invalid API-key, IP, or permissions for action.");
    }
    let Some((payload, signature)) = query.rsplit_once("&signature=") else {
        return binance_error(400, -1102, "Mandatory parameter 'signature' was not sent.");
    };
    let ok = hex_hmac(SECRET, payload) == signature;
    m.signed.push((path.clone(), ok, payload.to_owned()));
    if !ok {
        return binance_error(400, -1022, "Signature for this request is not valid.");
    }
    let params = query_map(payload);
    let timestamp: i64 = params["timestamp"].parse().unwrap();
    let window: i64 = params.get("recvWindow").map_or(5000, |w| w.parse().unwrap());
    let server = now_ms() + m.server_offset_ms;
    if timestamp > server + 1000 || server - timestamp > window {
        return binance_error(400, -1021, "Timestamp for this request is outside of the recvWindow.");
    }
    match (method.as_str(), path.as_str()) {
        ("GET", "/api/v3/account") => {
            assert_eq!(params.get("omitZeroBalances").map(String::as_str), Some("true"));
            axum::Json(json!({
                "makerCommission": 15, "takerCommission": 15, "buyerCommission": 0, "sellerCommission": 0,
                "canTrade": true, "canWithdraw": true, "canDeposit": true, "brokered": false,
                "updateTime": 123456789, "accountType": "SPOT",
                "balances": [
                    {"asset": "BTC", "free": "1.50000000", "locked": "0.50000000"},
                    {"asset": "USDC", "free": "100.00000000", "locked": "0.00000000"},
                    {"asset": "USDT", "free": "50.00000000", "locked": "0.00000000"},
                    {"asset": "EUR", "free": "20.00000000", "locked": "5.00000000"},
                ],
                "permissions": ["SPOT"], "uid": 354937868,
            }))
            .into_response()
        }
        ("GET", "/sapi/v1/account/apiRestrictions") => axum::Json(json!({
            "ipRestrict": true, "createTime": 1698645219000_i64, "enableReading": true,
            "enableWithdrawals": m.can_withdraw, "enableInternalTransfer": false, "enableMargin": false,
            "enableFutures": false, "permitsUniversalTransfer": false, "enableVanillaOptions": false,
            "enableSpotAndMarginTrading": false,
        }))
        .into_response(),
        ("GET", "/sapi/v1/capital/config/getall") => axum::Json(coin_config()).into_response(),
        ("GET", "/sapi/v1/capital/deposit/address") => {
            assert_eq!((params["coin"].as_str(), params["network"].as_str()), ("USDC", "MATIC"));
            axum::Json(json!({"address": ADDRESS, "coin": "USDC", "tag": "", "url": "https://polygonscan.com/"}))
                .into_response()
        }
        ("GET", "/sapi/v1/capital/deposit/hisrec") => axum::Json(json!([{
            "id": "769800519366885376", "amount": "0.001", "coin": "BTC", "network": "BTC", "status": 1,
            "address": "1HPn8Rx2y6nNSfagQBKy27GB99Vbzg89wv", "addressTag": "", "txId": "b3c6219639c8ae3f9cf",
            "insertTime": 1796083200000_i64, "transferType": 0, "confirmTimes": "1/1", "unlockConfirm": 0,
            "walletType": 0,
        }]))
        .into_response(),
        ("POST", "/sapi/v1/capital/withdraw/apply") => {
            if !m.can_withdraw {
                return binance_error(401, -2015, "Invalid API-key, IP, or permissions for action.");
            }
            let id = format!("7213fea8e94b4a5593d507237e5a55{:02}", m.withdrawals.len());
            m.withdrawals.push((
                id.clone(),
                params.get("withdrawOrderId").cloned().unwrap_or_default(),
                params["coin"].clone(),
                params["network"].clone(),
                params["address"].clone(),
                params["amount"].clone(),
            ));
            if m.lose_next_apply_answer {
                m.lose_next_apply_answer = false;
                return binance_error(503, -1000, "Unknown error, please check your request or try again later.");
            }
            axum::Json(json!({"id": id})).into_response()
        }
        ("GET", "/sapi/v1/capital/withdraw/history") => {
            let offset: usize = params.get("offset").map_or(0, |o| o.parse().unwrap());
            let limit: usize = params.get("limit").map_or(1000, |l| l.parse().unwrap());
            let made = params.get("withdrawOrderId").is_some_and(|o| m.withdrawals.iter().any(|w| w.1 == *o));
            if m.history_lag > 0 && made {
                m.history_lag -= 1;
                return axum::Json(json!([])).into_response();
            }
            let mut all: Vec<Value> = m
                .withdrawals
                .iter()
                .rev()
                .filter(|w| params.get("withdrawOrderId").is_none_or(|o| *o == w.1))
                .filter(|w| params.get("idList").is_none_or(|ids| ids.split(',').any(|id| id == w.0)))
                .map(|w| withdrawal_json(w, 6))
                .collect();
            if !params.contains_key("withdrawOrderId") && !params.contains_key("idList") {
                for i in 0..m.history_filler {
                    let w =
                        (format!("filler{i}"), String::new(), "USDC".into(), "ETH".into(), ADDRESS.into(), "10".into());
                    all.push(withdrawal_json(&w, 4));
                }
            }
            axum::Json(Value::Array(all.into_iter().skip(offset).take(limit).collect())).into_response()
        }
        _ => binance_error(404, -1, "not in this test server"),
    }
}

struct Harness {
    mock: Shared,
    _server: TestServer,
    api: ExchangeApi,
    integration: Integration,
    key: SecretString,
    secret: SecretString,
}

impl Harness {
    async fn new() -> Self {
        Self::with_limits(HttpLimits::default()).await
    }

    async fn with_limits(limits: HttpLimits) -> Self {
        let mock: Shared = Arc::new(Mutex::new(Mock { can_withdraw: true, ..Mock::default() }));
        let server = serve(axum::Router::new().fallback(handle).with_state(mock.clone())).await;
        let mut integration = Catalog::embedded().get("binanceInternational").unwrap().clone();
        integration.endpoints.api_base_url = Some(server.origin.parse().unwrap());
        Self {
            mock,
            _server: server,
            api: ExchangeApi::new(limits).unwrap(),
            integration,
            key: SecretString::from(KEY.to_owned()),
            secret: SecretString::from(SECRET.to_owned()),
        }
    }

    fn call(&self) -> (&dyn AccountApi, Call<'_>) {
        self.api.adapter(&self.integration, Credential::ApiKey { key: &self.key, secret: &self.secret }).unwrap()
    }

    fn hits(&self, path: &str) -> u32 {
        self.mock.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }

    fn script(&self, path: &str, answer: Canned) {
        self.mock.lock().unwrap().script.entry(path.to_owned()).or_default().push_back(answer);
    }

    /// Every signed request the server saw verified, and carried timestamp and recvWindow.
    fn assert_all_signed(&self) {
        let m = self.mock.lock().unwrap();
        assert!(!m.signed.is_empty());
        for (path, ok, payload) in &m.signed {
            assert!(ok, "bad signature on {path}");
            let params = query_map(payload);
            assert!(params.contains_key("timestamp") && params["recvWindow"] == "5000", "{path}: {payload}");
        }
    }
}

fn send_request(idem: &str, amount: f64) -> SendRequest {
    SendRequest {
        symbol: "USDC".into(),
        network: "polygon".into(),
        address: ADDRESS.into(),
        tag: None,
        amount,
        idem: idem.into(),
        quote_id: None,
        mfa_code: None,
    }
}

#[tokio::test]
async fn portfolio_prices_and_config_are_read_from_signed_calls() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let h = Harness::new().await;
        let (api, call) = h.call();
        let account = api.verify(call).await.unwrap();
        assert_eq!(account.id, "354937868");

        let holdings = api.holdings(call).await.unwrap();
        let btc = holdings.iter().find(|x| x.symbol == "BTC").unwrap();
        assert_eq!((btc.amount, btc.price_usd, btc.name.as_str()), (2.0, Some(65_000.0), "Bitcoin"));
        assert_eq!(btc.value_usd, Some(130_000.0));
        assert_eq!(holdings.iter().find(|x| x.symbol == "USDT").unwrap().price_usd, Some(1.0));
        assert_eq!(holdings.iter().find(|x| x.symbol == "USDC").unwrap().price_usd, Some(0.9999));
        assert!(holdings.iter().all(|x| x.symbol != "EUR"), "fiat is a balance, not a holding");
        let balances = api.balances(call).await.unwrap();
        assert_eq!(balances.len(), 1);
        assert_eq!((balances[0].currency.as_str(), balances[0].cash, balances[0].buying_power), ("EUR", 25.0, 20.0));

        // Prices (30 s) and the capital configuration (10 min) are cached.
        api.holdings(call).await.unwrap();
        assert_eq!(h.hits("/api/v3/ticker/price"), 1);
        assert_eq!(h.hits("/sapi/v1/capital/config/getall"), 1);

        let assets = api.assets(call).await.unwrap();
        let usdc_eth = assets.iter().find(|a| a.symbol == "USDC" && a.network == "ethereum").unwrap();
        assert_eq!((usdc_eth.withdraw_fee, usdc_eth.withdraw_min), (Some(2.0), Some(5.0)));
        assert!(assets.iter().any(|a| a.symbol == "USDC" && a.network == "polygon"), "MATIC is polygon");
        assert!(!assets.iter().find(|a| a.symbol == "USDC" && a.network == "solana").unwrap().withdraw_enabled);
        assert!(assets.iter().all(|a| a.network != "bsc" && a.network != "BSC"), "unknown networks left out");
        assert_eq!(h.hits("/sapi/v1/capital/config/getall"), 1);

        let address = api.deposit_address(call, "usdc", "polygon").await.unwrap();
        assert_eq!((address.address.as_str(), address.tag), (ADDRESS, None));
        h.assert_all_signed();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn clock_skew_is_corrected_with_exactly_one_retry() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let h = Harness::new().await;
        h.mock.lock().unwrap().server_offset_ms = 60_000;
        let (api, call) = h.call();
        api.verify(call).await.unwrap();
        assert_eq!(h.hits("/api/v3/account"), 2, "the -1021 answer, then the retried request");
        assert_eq!(h.hits("/api/v3/time"), 1);
        // The offset is remembered: the next call is right the first time.
        api.verify(call).await.unwrap();
        assert_eq!((h.hits("/api/v3/account"), h.hits("/api/v3/time")), (3, 1));
        h.assert_all_signed();

        // A server that keeps answering -1021 gets one retry, not a loop.
        let skew =
            (400, None, json!({"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}));
        h.script("/api/v3/account", skew.clone());
        h.script("/api/v3/account", skew);
        let err = api.verify(call).await.unwrap_err();
        assert!(matches!(&err, ApiError::Rejected { error, .. } if error == "-1021"), "{err:?}");
        assert_eq!((h.hits("/api/v3/account"), h.hits("/api/v3/time")), (5, 2));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn refused_keys_and_secrets_are_revoked() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let h = Harness::new().await;
        let (api, call) = h.call();
        h.script(
            "/api/v3/account",
            (401, None, json!({"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})),
        );
        assert!(matches!(api.verify(call).await.unwrap_err(), ApiError::Revoked(_)));
        h.script("/api/v3/account", (401, None, json!({"code": -2014, "msg": "API-key format invalid."})));
        assert!(matches!(api.holdings(call).await.unwrap_err(), ApiError::Revoked(_)));

        // A wrong secret: Binance answers -1022, which is the credential's fault too.
        let wrong = SecretString::from("not-the-secret".to_owned());
        let (api, call) = h.api.adapter(&h.integration, Credential::ApiKey { key: &h.key, secret: &wrong }).unwrap();
        let err = api.verify(call).await.unwrap_err();
        assert!(matches!(&err, ApiError::Revoked(m) if m.contains("secret")), "{err:?}");
        assert!(!err.to_string().contains("not-the-secret") && !err.to_string().contains(KEY));
        let m = h.mock.lock().unwrap();
        assert!(m.signed.last().is_some_and(|(_, ok, _)| !ok), "the server saw a bad signature");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rate_limits_back_off_without_sending() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let h = Harness::new().await;
        let (api, call) = h.call();
        h.script("/api/v3/account", (429, Some(30), json!({"code": -1003, "msg": "Too much request weight used."})));
        let err = api.verify(call).await.unwrap_err();
        let ApiError::Transient { retry_after: Some(wait), .. } = err else { panic!("{err:?}") };
        assert_eq!(wait, Duration::from_secs(30));
        assert_eq!(h.hits("/api/v3/account"), 1);
        // Backing off: nothing reaches the server (any path of that base URL) until the time has passed.
        for _ in 0..3 {
            let err = api.holdings(call).await.unwrap_err();
            assert!(matches!(err, ApiError::Transient { retry_after: Some(w), .. } if w <= Duration::from_secs(30)));
        }
        assert_eq!(h.hits("/api/v3/account"), 1);
        assert_eq!(h.hits("/api/v3/ticker/price"), 0);

        // 418 (IP banned): the same, for as long as Binance says.
        let h = Harness::new().await;
        let (api, call) = h.call();
        h.script(
            "/api/v3/ticker/price",
            (418, Some(120), json!({"code": -1003, "msg": "Way too much request weight used; IP banned."})),
        );
        let err = api.holdings(call).await.unwrap_err();
        assert!(
            matches!(err, ApiError::Transient { retry_after: Some(w), .. } if w == Duration::from_secs(120)),
            "{err:?}"
        );
        let hits = (h.hits("/api/v3/account"), h.hits("/api/v3/ticker/price"));
        assert!(matches!(api.verify(call).await.unwrap_err(), ApiError::Transient { .. }));
        assert_eq!((h.hits("/api/v3/account"), h.hits("/api/v3/ticker/price")), hits);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn server_errors_malformed_and_oversize_answers() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let h = Harness::with_limits(HttpLimits { max_body_bytes: 2048, ..HttpLimits::default() }).await;
        let (api, call) = h.call();
        h.script(
            "/api/v3/account",
            (502, None, json!({"code": -1001, "msg": "Internal error; unable to process your request."})),
        );
        assert!(matches!(api.verify(call).await.unwrap_err(), ApiError::Transient { .. }));
        h.script("/api/v3/account", (200, None, json!({"balances": "not a list"})));
        assert!(matches!(api.verify(call).await.unwrap_err(), ApiError::Protocol(_)));
        // The capital configuration is bigger than 2 KiB here: refused while read, not parsed.
        assert!(matches!(api.assets(call).await.unwrap_err(), ApiError::Protocol(m) if m.contains("limit")));
        h.script(
            "/sapi/v1/capital/withdraw/history",
            (400, None, json!({"code": -1130, "msg": "Invalid data sent for a parameter."})),
        );
        let err = api.transfer(call, "x").await.unwrap_err();
        assert!(matches!(&err, ApiError::Rejected { status: 400, error, .. } if error == "-1130"), "{err:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn withdraw_once_by_withdraw_order_id_even_after_a_lost_answer() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let h = Harness::new().await;
        let (api, call) = h.call();
        // The apply is made, but its answer is lost (5xx: "execution status unknown"); the lookup after it
        // finds the withdrawal by withdrawOrderId and returns it.
        h.mock.lock().unwrap().lose_next_apply_answer = true;
        let SendOutcome::Sent(first) = api.send(call, &send_request("idem-1", 10.0)).await.unwrap() else { panic!() };
        assert_eq!(
            (first.symbol.as_str(), first.network.as_deref(), first.status),
            ("USDC", Some("polygon"), TransferStatus::Succeeded)
        );
        assert_eq!(first.hash.as_deref(), Some("0xabc123"));
        // A retry of the same send: found before applying, never applied again.
        let SendOutcome::Sent(again) = api.send(call, &send_request("idem-1", 10.0)).await.unwrap() else { panic!() };
        assert_eq!(again.id, first.id);
        assert_eq!(h.hits("/sapi/v1/capital/withdraw/apply"), 1);
        {
            let m = h.mock.lock().unwrap();
            assert_eq!(m.withdrawals.len(), 1);
            let w = &m.withdrawals[0];
            assert_eq!(
                (w.1.as_str(), w.2.as_str(), w.3.as_str(), w.4.as_str(), w.5.as_str()),
                ("idem-1", "USDC", "MATIC", ADDRESS, "10")
            );
        }
        // The same id for another send is a conflict, not a second withdrawal.
        let err = api.send(call, &send_request("idem-1", 11.0)).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::IdempotencyConflict, .. }), "{err:?}");

        // A lost answer the history does not show yet: transient, and the retry still applies nothing new.
        {
            let mut m = h.mock.lock().unwrap();
            m.lose_next_apply_answer = true;
            m.history_lag = 1;
        }
        let err = api.send(call, &send_request("idem-2", 20.0)).await.unwrap_err();
        assert!(matches!(&err, ApiError::Transient { reason, .. } if reason.contains("retrying is safe")), "{err:?}");
        let SendOutcome::Sent(second) = api.send(call, &send_request("idem-2", 20.0)).await.unwrap() else { panic!() };
        assert_eq!(h.hits("/sapi/v1/capital/withdraw/apply"), 2);
        assert_eq!(api.transfer(call, &second.id).await.unwrap().amount, 20.0);
        h.assert_all_signed();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn withdraw_refusals_and_permissions() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let h = Harness::new().await;
        let (api, call) = h.call();
        h.script(
            "/sapi/v1/capital/withdraw/apply",
            (400, None, json!({"code": -4026, "msg": "You have insufficient balance."})),
        );
        let err = api.send(call, &send_request("i-funds", 10.0)).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::InsufficientFunds, .. }), "{err:?}");
        h.script(
            "/sapi/v1/capital/withdraw/apply",
            (400, None, json!({"code": -4035, "msg": "This address is not on the whitelist."})),
        );
        let err = api.send(call, &send_request("i-white", 10.0)).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::AddressNotWhitelisted, .. }), "{err:?}");
        let mut on_bsc = send_request("i-net", 10.0);
        on_bsc.network = "base".into();
        let err = api.send(call, &on_bsc).await.unwrap_err();
        // The asset is not sent over that network: the symbol is what the client changes (as the ledger says).
        assert!(matches!(err, ApiError::Refused { reason: Refusal::UnsupportedAsset, .. }), "{err:?}");

        // Quotes: from balance, configuration and price (Binance has no quote endpoint).
        let quote = |amount: Option<f64>, amount_usd: Option<f64>, network: &str| QuoteRequest {
            symbol: "USDC".into(),
            network: network.into(),
            address: ADDRESS.into(),
            tag: None,
            amount,
            amount_usd,
        };
        let q = api.quote(call, &quote(None, Some(49.995), "polygon")).await.unwrap();
        assert!(
            (q.amount - 50.0).abs() < 1e-9 && q.fee == 0.1 && q.available == 100.0 && q.price_usd == 0.9999,
            "{q:?}"
        );
        let err = api.quote(call, &quote(Some(0.5), None, "polygon")).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::BelowMinimum, .. }), "{err:?}");
        let err = api.quote(call, &quote(Some(99.95), None, "polygon")).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::InsufficientFunds, .. }), "{err:?}");
        let err = api.quote(call, &quote(Some(10.0), None, "solana")).await.unwrap_err();
        assert!(matches!(err, ApiError::Refused { reason: Refusal::UnsupportedNetwork, .. }), "{err:?}");
        let mut bad = quote(Some(10.0), None, "ethereum");
        bad.address = "0x1234".into();
        assert!(matches!(
            api.quote(call, &bad).await.unwrap_err(),
            ApiError::Refused { reason: Refusal::InvalidAddress, .. }
        ));

        // A key without the withdraw permission: quote and send say so (InsufficientScope), nothing is made.
        h.mock.lock().unwrap().can_withdraw = false;
        assert_eq!(
            api.quote(call, &quote(Some(10.0), None, "polygon")).await.unwrap_err(),
            ApiError::InsufficientScope
        );
        assert_eq!(api.send(call, &send_request("i-scope", 10.0)).await.unwrap_err(), ApiError::InsufficientScope);
        assert!(h.mock.lock().unwrap().withdrawals.is_empty());
        h.assert_all_signed();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn history_pages_through_withdrawals_and_adds_deposits() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let h = Harness::new().await;
        h.mock.lock().unwrap().history_filler = 1002;
        let (api, call) = h.call();
        let history = api.history(call).await.unwrap();
        assert_eq!(history.len(), 1003, "two pages of withdrawals and the deposit");
        assert_eq!(h.hits("/sapi/v1/capital/withdraw/history"), 2);
        let deposit = history.iter().find(|t| t.incoming).unwrap();
        assert_eq!(
            (deposit.symbol.as_str(), deposit.network.as_deref(), deposit.status),
            ("BTC", Some("bitcoin"), TransferStatus::Succeeded)
        );
        assert_eq!(history[0].id, deposit.id, "newest first");
        assert!(
            history
                .iter()
                .filter(|t| !t.incoming)
                .all(|t| t.status == TransferStatus::Pending && t.status_details == "processing")
        );
        assert_eq!(api.transfer(call, "769800519366885376").await.unwrap().amount, 0.001);
        assert!(matches!(api.transfer(call, "nope").await.unwrap_err(), ApiError::NotFound(_)));
    })
    .await
    .unwrap();
}
