//! The Binance Spot REST API stand-in, in Binance's own wire format under `/sandbox/binance/…`: `/api/v3/time`,
//! `/api/v3/ticker/price`, `/api/v3/account`, `/sapi/v1/account/apiRestrictions` and the wallet's
//! `/sapi/v1/capital/…` paths (config, deposit address, withdraw apply and history, deposit history). It checks
//! what Binance checks: the `X-MBX-APIKEY` key, the HMAC-SHA256 `signature` of the query string (and body) with
//! the key's secret, and the `timestamp` against `recvWindow` on the sandbox's (skewable) clock, answering
//! Binance's `{"code", "msg"}` errors. Money moves in the shared ledger; `withdrawOrderId` is its idempotency key.
//!
//! API keys are issued by the admin API (`POST /sandbox/admin/binance/api-keys`); a live session token of the
//! Binance-like credentials sign-in also opens this API, as a key whose secret is the token itself.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ring::rand::SecureRandom as _;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::admin::{self, FaultKind, with_retry_after};
use crate::ledger::{self, LedgerTransfer, Refusal, SendArgs};
use crate::util::constant_time_eq;
use crate::{Shared, ledger::NETWORK_FEES};

const EXCHANGE: &str = "binance";
/// The documented default and maximum `recvWindow` (ms), and how far ahead a timestamp may be.
const DEFAULT_RECV_WINDOW: i64 = 5000;
const MAX_RECV_WINDOW: i64 = 60_000;
const AHEAD_ALLOWANCE: i64 = 1000;
/// Binance network names of the ledger's canonical networks.
const NETWORK_NAMES: &[(&str, &str, &str)] = &[
    ("ethereum", "ETH", "Ethereum (ERC20)"),
    ("polygon", "MATIC", "Polygon POS"),
    ("solana", "SOL", "Solana"),
    ("base", "BASE", "Base"),
    ("bitcoin", "BTC", "Bitcoin"),
];

struct ApiKey {
    secret: String,
    username: String,
    withdraw: bool,
    deleted: bool,
    created_at: OffsetDateTime,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("username", &self.username)
            .field("withdraw", &self.withdraw)
            .field("deleted", &self.deleted)
            .finish_non_exhaustive()
    }
}

/// Issued API keys and the admin clock skew.
#[derive(Debug, Default)]
pub struct SpotState {
    keys: HashMap<String, ApiKey>,
    clock_skew_ms: i64,
}

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v3/time", get(server_time))
        .route("/api/v3/ticker/price", get(ticker_price))
        .route("/api/v3/account", get(account))
        .route("/sapi/v1/account/apiRestrictions", get(api_restrictions))
        .route("/sapi/v1/capital/config/getall", get(config_getall))
        .route("/sapi/v1/capital/deposit/address", get(deposit_address))
        .route("/sapi/v1/capital/deposit/hisrec", get(deposit_history))
        .route("/sapi/v1/capital/withdraw/apply", post(withdraw_apply))
        .route("/sapi/v1/capital/withdraw/history", get(withdraw_history))
}

/// Admin routes, merged into `/sandbox/admin`.
pub fn admin_router() -> Router<Shared> {
    Router::new()
        .route("/binance/api-keys", post(issue_key))
        .route("/binance/api-keys/{api_key}", delete(delete_key))
        .route("/binance/clock-skew", post(set_clock_skew))
}

fn error(status: StatusCode, code: i64, msg: &str) -> Response {
    (status, Json(json!({"code": code, "msg": msg}))).into_response()
}

fn bad_key() -> Response {
    bad_key_fail().into_response()
}

/// A Binance error answer not rendered yet (small, so `Result`s carrying it stay small).
struct Fail(StatusCode, i64, String);

fn fail(status: StatusCode, code: i64, msg: &str) -> Fail {
    Fail(status, code, msg.to_owned())
}

fn bad_key_fail() -> Fail {
    fail(StatusCode::UNAUTHORIZED, -2015, "Invalid API-key, IP, or permissions for action.")
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        error(self.0, self.1, &self.2)
    }
}

fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn amount(value: f64) -> String {
    format!("{value:.8}")
}

fn binance_network(canonical: &str) -> Option<(&'static str, &'static str)> {
    NETWORK_NAMES.iter().find(|(c, _, _)| *c == canonical).map(|(_, b, n)| (*b, *n))
}

fn canonical_network(binance: &str) -> Option<&'static str> {
    NETWORK_NAMES.iter().find(|(_, b, _)| b.eq_ignore_ascii_case(binance)).map(|(c, _, _)| *c)
}

/// Counts the request and renders an injected fault (5xx, 429 with Retry-After, a refused key) the way
/// Binance answers them.
async fn arrive(sandbox: &Shared, endpoint: &'static str) -> Option<Response> {
    let fault = admin::arrive(sandbox, EXCHANGE, endpoint).await?;
    Some(match fault.kind {
        FaultKind::ServerError => with_retry_after(
            error(fault.server_status(), -1001, "Internal error; unable to process your request. Please try again."),
            fault.retry_after_secs,
        ),
        FaultKind::TooManyRequests => with_retry_after(
            error(
                StatusCode::TOO_MANY_REQUESTS,
                -1003,
                "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.",
            ),
            Some(fault.retry_after_secs.unwrap_or(1)),
        ),
        FaultKind::InvalidGrant | FaultKind::Latency => bad_key(),
    })
}

/// Who a verified signed request comes from, and its parameters.
struct Signed {
    username: String,
    withdraw: bool,
    params: HashMap<String, String>,
}

impl Signed {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Checks the key, the signature and the timestamp, as the "SIGNED endpoint security" section describes.
fn verify(sandbox: &Shared, headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Result<Signed, Fail> {
    let now = sandbox.config.clock.now();
    let Some(key) = headers.get("x-mbx-apikey").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty()) else {
        return Err(fail(StatusCode::UNAUTHORIZED, -2014, "API-key format invalid."));
    };
    let inner = sandbox.lock();
    let (secret, username, withdraw) = match inner.binance_spot.keys.get(key) {
        Some(k) if k.deleted => return Err(bad_key_fail()),
        Some(k) => (k.secret.clone(), k.username.clone(), k.withdraw),
        None => match inner.binance.session_key(key, now) {
            Ok((username, write)) => (key.to_owned(), username, write),
            Err(()) if key.len() == 64 && key.bytes().all(|b| b.is_ascii_alphanumeric()) => return Err(bad_key_fail()),
            Err(()) if key.starts_with("bnst_") => return Err(bad_key_fail()),
            Err(()) => return Err(fail(StatusCode::UNAUTHORIZED, -2014, "API-key format invalid.")),
        },
    };
    let skew = inner.binance_spot.clock_skew_ms;
    drop(inner);

    let query = query.unwrap_or("");
    let body = std::str::from_utf8(body).unwrap_or("");
    // totalParams = the query string (without `signature`) concatenated with the body.
    let mut signature = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("signature=") {
            Some(sig) if signature.is_none() => signature = Some(sig.to_owned()),
            Some(_) => return Err(fail(StatusCode::BAD_REQUEST, -1101, "Duplicate values for a parameter detected.")),
            None => kept.push(pair),
        }
    }
    let body_signature = url::form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "signature");
    let signature = match (signature, body_signature) {
        (Some(sig), _) => sig,
        (None, Some((_, sig))) => sig.into_owned(),
        (None, None) => {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                -1102,
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
            ));
        }
    };
    let body_unsigned: Vec<&str> = body.split('&').filter(|p| !p.is_empty() && !p.starts_with("signature=")).collect();
    let payload = format!("{}{}", kept.join("&"), body_unsigned.join("&"));
    let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()), payload.as_bytes());
    let expected: String = mac.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    if !constant_time_eq(&expected, &signature.to_ascii_lowercase()) {
        return Err(fail(StatusCode::BAD_REQUEST, -1022, "Signature for this request is not valid."));
    }

    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(payload.as_bytes()) {
        params.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    let Some(timestamp) = params.get("timestamp").and_then(|t| t.parse::<i64>().ok()) else {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            -1102,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        ));
    };
    let recv_window = match params.get("recvWindow") {
        None => DEFAULT_RECV_WINDOW,
        Some(raw) => match raw.parse::<f64>() {
            Ok(w) if w > 0.0 && w <= MAX_RECV_WINDOW as f64 => w as i64,
            _ => return Err(fail(StatusCode::BAD_REQUEST, -1131, "recvWindow must be less than 60000")),
        },
    };
    let server = millis(now) + skew;
    if timestamp > server + AHEAD_ALLOWANCE {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        ));
    }
    if server - timestamp > recv_window {
        return Err(fail(StatusCode::BAD_REQUEST, -1021, "Timestamp for this request is outside of the recvWindow."));
    }
    Ok(Signed { username, withdraw, params })
}

macro_rules! signed_or_answer {
    ($sandbox:expr, $endpoint:literal, $headers:expr, $query:expr, $body:expr) => {{
        if let Some(response) = arrive(&$sandbox, $endpoint).await {
            return response;
        }
        match verify(&$sandbox, &$headers, $query.as_deref(), $body) {
            Ok(signed) => signed,
            Err(fail) => return fail.into_response(),
        }
    }};
}

fn no_user() -> Response {
    error(StatusCode::BAD_REQUEST, -4004, "Please login or register.")
}

async fn server_time(State(sandbox): State<Shared>) -> Response {
    if let Some(response) = arrive(&sandbox, "GET /api/v3/time").await {
        return response;
    }
    let skew = sandbox.lock().binance_spot.clock_skew_ms;
    Json(json!({"serverTime": millis(sandbox.config.clock.now()) + skew})).into_response()
}

#[derive(Deserialize)]
struct TickerQuery {
    symbol: Option<String>,
}

async fn ticker_price(State(sandbox): State<Shared>, query: axum::extract::Query<TickerQuery>) -> Response {
    if let Some(response) = arrive(&sandbox, "GET /api/v3/ticker/price").await {
        return response;
    }
    let tickers: Vec<Value> = ledger::PRICES
        .iter()
        .filter(|(symbol, _, _)| *symbol != "USDT")
        .map(|(symbol, _, price)| json!({"symbol": format!("{symbol}USDT"), "price": amount(*price)}))
        .collect();
    match &query.symbol {
        None => Json(Value::Array(tickers)).into_response(),
        Some(symbol) => match tickers.into_iter().find(|t| t["symbol"] == symbol.as_str()) {
            Some(ticker) => Json(ticker).into_response(),
            None => error(StatusCode::BAD_REQUEST, -1121, "Invalid symbol."),
        },
    }
}

fn uid_of(username: &str) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, username.as_bytes());
    let mut four = [0u8; 4];
    four.copy_from_slice(digest.as_ref().get(..4).unwrap_or(&[0; 4]));
    100_000_000 + u64::from(u32::from_be_bytes(four) % 900_000_000)
}

async fn account(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let signed = signed_or_answer!(sandbox, "GET /api/v3/account", headers, query, &body);
    let omit_zero = signed.param("omitZeroBalances") == Some("true");
    let now = sandbox.config.clock.now();
    let mut inner = sandbox.lock();
    let Some(book) = inner.ledger.book(EXCHANGE, &signed.username, now) else { return no_user() };
    let mut balances: Vec<Value> = book
        .holdings
        .iter()
        .map(|(asset, held)| (asset.as_str(), *held))
        .chain(std::iter::once(("USD", book.cash_usd)))
        .filter(|(_, held)| !omit_zero || *held > 0.0)
        .map(|(asset, held)| json!({"asset": asset, "free": amount(held), "locked": amount(0.0)}))
        .collect();
    if balances.is_empty() && !omit_zero {
        balances.push(json!({"asset": "BTC", "free": amount(0.0), "locked": amount(0.0)}));
    }
    Json(json!({
        "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
        "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000", "seller": "0.00000000"},
        "canTrade": true, "canWithdraw": true, "canDeposit": true, "brokered": false,
        "requireSelfTradePrevention": false, "preventSor": false,
        "updateTime": millis(now), "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"],
        "uid": uid_of(&signed.username),
    }))
    .into_response()
}

async fn api_restrictions(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let signed = signed_or_answer!(sandbox, "GET /sapi/v1/account/apiRestrictions", headers, query, &body);
    let created = {
        let inner = sandbox.lock();
        headers
            .get("x-mbx-apikey")
            .and_then(|v| v.to_str().ok())
            .and_then(|k| inner.binance_spot.keys.get(k))
            .map_or(0, |k| millis(k.created_at))
    };
    Json(json!({
        "ipRestrict": false, "createTime": created, "enableReading": true,
        "enableWithdrawals": signed.withdraw, "enableInternalTransfer": false, "enableMargin": false,
        "enableFutures": false, "permitsUniversalTransfer": false, "enableVanillaOptions": false,
        "enableFixApiTrade": false, "enableFixReadOnly": false, "enableSpotAndMarginTrading": false,
        "enablePortfolioMarginTrading": false,
    }))
    .into_response()
}

fn address_regex(canonical: &str) -> &'static str {
    match canonical {
        "solana" => "^[1-9A-HJ-NP-Za-km-z]{32,44}$",
        "bitcoin" => "^(bc1|[13])[a-zA-HJ-NP-Z0-9]{25,62}$",
        _ => "^(0x)[0-9A-Fa-f]{40}$",
    }
}

fn address_valid(canonical: &str, address: &str) -> bool {
    match canonical {
        "ethereum" | "polygon" | "base" => {
            address.len() == 42 && address.starts_with("0x") && address[2..].bytes().all(|b| b.is_ascii_hexdigit())
        }
        "solana" => {
            (32..=44).contains(&address.len())
                && address.bytes().all(|b| b.is_ascii_alphanumeric() && !matches!(b, b'0' | b'O' | b'I' | b'l'))
        }
        _ => !address.trim().is_empty() && address.len() <= 128,
    }
}

async fn config_getall(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let signed = signed_or_answer!(sandbox, "GET /sapi/v1/capital/config/getall", headers, query, &body);
    let now = sandbox.config.clock.now();
    let mut inner = sandbox.lock();
    let Some(book) = inner.ledger.book(EXCHANGE, &signed.username, now) else { return no_user() };
    let coins: Vec<Value> = ledger::PRICES
        .iter()
        .map(|(symbol, name, _)| {
            let networks: Vec<Value> = NETWORK_FEES
                .iter()
                .filter(|(s, _, _, _)| s == symbol)
                .enumerate()
                .filter_map(|(i, (_, canonical, fee, min))| {
                    let (network, network_name) = binance_network(canonical)?;
                    Some(json!({
                        "network": network, "coin": symbol, "withdrawIntegerMultiple": "0.00000001",
                        "isDefault": i == 0, "depositEnable": true, "withdrawEnable": true,
                        "depositDesc": "", "withdrawDesc": "", "specialTips": "", "name": network_name,
                        "resetAddressStatus": false, "addressRegex": address_regex(canonical), "memoRegex": "",
                        "withdrawFee": amount(*fee), "withdrawMin": amount(*min), "withdrawMax": "9999999999.00000000",
                        "minConfirm": 12, "unLockConfirm": 0, "sameAddress": false, "withdrawTag": false,
                        "estimatedArrivalTime": 5, "busy": false,
                    }))
                })
                .collect();
            json!({
                "coin": symbol, "depositAllEnable": true, "withdrawAllEnable": true, "name": name,
                "free": amount(book.held(symbol)), "locked": amount(0.0), "freeze": amount(0.0),
                "withdrawing": amount(0.0), "ipoing": amount(0.0), "ipoable": amount(0.0), "storage": amount(0.0),
                "isLegalMoney": false, "trading": true, "networkList": networks,
            })
        })
        .collect();
    Json(Value::Array(coins)).into_response()
}

/// The coin's canonical network for a Binance network name, or its default network when none is given.
fn resolve_network(coin: &str, network: Option<&str>) -> Result<&'static str, Fail> {
    if ledger::price(coin).is_none() {
        return Err(fail(StatusCode::BAD_REQUEST, -4018, "We don't have this asset."));
    }
    let canonical = match network {
        Some(name) => canonical_network(name),
        None => NETWORK_FEES.iter().find(|(s, _, _, _)| *s == coin).map(|(_, n, _, _)| *n),
    };
    match canonical {
        Some(c) if ledger::network_terms(coin, c).is_ok() => Ok(c),
        _ => Err(fail(StatusCode::BAD_REQUEST, -4019, "Current asset is not open for withdrawal.")),
    }
}

async fn deposit_address(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let signed = signed_or_answer!(sandbox, "GET /sapi/v1/capital/deposit/address", headers, query, &body);
    let Some(coin) = signed.param("coin").map(str::to_ascii_uppercase) else {
        return error(
            StatusCode::BAD_REQUEST,
            -1102,
            "Mandatory parameter 'coin' was not sent, was empty/null, or malformed.",
        );
    };
    let canonical = match resolve_network(&coin, signed.param("network")) {
        Ok(c) => c,
        Err(fail) => return fail.into_response(),
    };
    let now = sandbox.config.clock.now();
    let mut inner = sandbox.lock();
    let Some(book) = inner.ledger.book(EXCHANGE, &signed.username, now) else { return no_user() };
    Json(json!({"address": book.deposit_address(canonical), "coin": coin, "tag": "", "url": ""})).into_response()
}

fn refusal_answer(refusal: Refusal, min: Option<f64>) -> Response {
    let bad = StatusCode::BAD_REQUEST;
    match refusal {
        Refusal::UnsupportedAsset => error(bad, -4018, "We don't have this asset."),
        Refusal::UnsupportedNetwork => error(bad, -4019, "Current asset is not open for withdrawal."),
        Refusal::InvalidAmount => {
            error(bad, -1102, "Mandatory parameter 'amount' was not sent, was empty/null, or malformed.")
        }
        Refusal::InvalidAddress => error(bad, -4007, "Address validation is not passed."),
        Refusal::BelowMinimum => error(
            bad,
            -4022,
            &format!("Not less than the minimum pick-up quantity {}.", min.map(amount).unwrap_or_default()),
        ),
        Refusal::InsufficientFunds => error(bad, -4026, "You have insufficient balance."),
        Refusal::IdempotencyConflict => error(bad, -4001, "Invalid operation: withdrawOrderId already used."),
    }
}

async fn withdraw_apply(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let signed = signed_or_answer!(sandbox, "POST /sapi/v1/capital/withdraw/apply", headers, query, &body);
    if !signed.withdraw {
        return bad_key();
    }
    let (Some(coin), Some(address), Some(raw_amount)) =
        (signed.param("coin").map(str::to_ascii_uppercase), signed.param("address"), signed.param("amount"))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            -1102,
            "Mandatory parameter 'coin', 'address' or 'amount' was not sent, was empty/null, or malformed.",
        );
    };
    let Ok(value) = raw_amount.parse::<f64>() else { return refusal_answer(Refusal::InvalidAmount, None) };
    let canonical = match resolve_network(&coin, signed.param("network")) {
        Ok(c) => c,
        Err(fail) => return fail.into_response(),
    };
    if !address_valid(canonical, address) {
        return refusal_answer(Refusal::InvalidAddress, None);
    }
    let args = SendArgs {
        symbol: coin.clone(),
        network: canonical.to_owned(),
        address: address.to_owned(),
        tag: signed.param("addressTag").map(str::to_owned),
        amount: value,
    };
    let min = ledger::network_terms(&coin, canonical).ok().map(|(_, min)| min);
    let now = sandbox.config.clock.now();
    let mut inner = sandbox.lock();
    let inner = &mut *inner;
    let Some(book) = inner.ledger.book(EXCHANGE, &signed.username, now) else { return no_user() };
    match book.send(args, signed.param("withdrawOrderId"), now) {
        Ok((transfer, moved)) => {
            if moved {
                inner.counts.transfer_created(EXCHANGE);
            }
            Json(json!({"id": transfer.id})).into_response()
        }
        Err(refusal) => refusal_answer(refusal, min),
    }
}

fn apply_time(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    at.format(&format).unwrap_or_default()
}

fn withdrawal_json(t: &LedgerTransfer) -> Value {
    let network = binance_network(&t.network).map_or("", |(b, _)| b);
    let mut value = json!({
        "id": t.id, "amount": amount(t.amount), "transactionFee": amount(t.fee), "coin": t.symbol,
        // 6 Completed once settled, 4 Processing before.
        "status": if t.hash.is_some() { 6 } else { 4 },
        "address": t.address, "txId": t.hash.clone().unwrap_or_default(), "applyTime": apply_time(t.created_at),
        "network": network, "transferType": 0, "info": "", "confirmNo": if t.hash.is_some() { 12 } else { 0 },
        "walletType": 0, "txKey": "",
    });
    if let Some(map) = value.as_object_mut() {
        if let Some(tag) = &t.tag {
            map.insert("addressTag".to_owned(), json!(tag));
        }
        if let Some(idem) = &t.idem {
            map.insert("withdrawOrderId".to_owned(), json!(idem));
        }
        if t.hash.is_some() {
            map.insert("completeTime".to_owned(), json!(apply_time(t.created_at + ledger::SETTLE_AFTER)));
        }
    }
    value
}

/// `offset` and `limit` (default and maximum 1000) as documented.
fn page<T>(items: Vec<T>, signed: &Signed) -> Vec<T> {
    let offset = signed.param("offset").and_then(|o| o.parse::<usize>().ok()).unwrap_or(0);
    let limit = signed.param("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(1000).clamp(1, 1000);
    items.into_iter().skip(offset).take(limit).collect()
}

async fn withdraw_history(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let signed = signed_or_answer!(sandbox, "GET /sapi/v1/capital/withdraw/history", headers, query, &body);
    let now = sandbox.config.clock.now();
    let mut inner = sandbox.lock();
    let Some(book) = inner.ledger.book(EXCHANGE, &signed.username, now) else { return no_user() };
    let coin = signed.param("coin").map(str::to_ascii_uppercase);
    let order_id = signed.param("withdrawOrderId");
    let ids: Option<Vec<&str>> = signed.param("idList").map(|l| l.split(',').map(str::trim).collect());
    let status = signed.param("status").and_then(|s| s.parse::<i64>().ok());
    let found: Vec<Value> = book
        .transfers
        .iter()
        .rev()
        .filter(|t| !t.incoming)
        .filter(|t| coin.as_deref().is_none_or(|c| t.symbol == c))
        .filter(|t| order_id.is_none_or(|o| t.idem.as_deref() == Some(o)))
        .filter(|t| ids.as_ref().is_none_or(|ids| ids.contains(&t.id.as_str())))
        .map(withdrawal_json)
        .filter(|w| status.is_none_or(|s| w["status"] == s))
        .collect();
    Json(Value::Array(page(found, &signed))).into_response()
}

async fn deposit_history(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let signed = signed_or_answer!(sandbox, "GET /sapi/v1/capital/deposit/hisrec", headers, query, &body);
    let now = sandbox.config.clock.now();
    let mut inner = sandbox.lock();
    let Some(book) = inner.ledger.book(EXCHANGE, &signed.username, now) else { return no_user() };
    let coin = signed.param("coin").map(str::to_ascii_uppercase);
    let found: Vec<Value> = book
        .transfers
        .iter()
        .rev()
        .filter(|t| t.incoming)
        .filter(|t| coin.as_deref().is_none_or(|c| t.symbol == c))
        .map(|t| {
            json!({
                "id": t.id, "amount": amount(t.amount), "coin": t.symbol,
                "network": binance_network(&t.network).map_or("", |(b, _)| b),
                "status": if t.hash.is_some() { 1 } else { 0 }, "address": t.address,
                "addressTag": t.tag.clone().unwrap_or_default(), "txId": t.hash.clone().unwrap_or_default(),
                "insertTime": millis(t.created_at), "transferType": 0, "confirmTimes": "12/12",
                "unlockConfirm": 0, "walletType": 0,
            })
        })
        .collect();
    Json(Value::Array(page(found, &signed))).into_response()
}

// -------------------------------------------------------------------------------------------------------
// Admin.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueKey {
    username: String,
    #[serde(default)]
    permissions: Vec<String>,
}

fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn admin_error(status: StatusCode, message: &str) -> Response {
    crate::util::json_error(status, "invalid_request", message)
}

/// `POST /sandbox/admin/binance/api-keys {"username", "permissions": ["read", "withdraw"]}` →
/// `{"apiKey", "secretKey", …}`.
async fn issue_key(
    State(sandbox): State<Shared>,
    body: Result<Json<IssueKey>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if !ledger::is_known_user(&body.username) {
        return admin_error(StatusCode::BAD_REQUEST, "username must be a sandbox user (Mesh, Mesh2, …)");
    }
    let mut withdraw = false;
    for permission in &body.permissions {
        match permission.as_str() {
            "read" => {}
            "withdraw" => withdraw = true,
            _ => return admin_error(StatusCode::BAD_REQUEST, "permissions are \"read\" and \"withdraw\""),
        }
    }
    let (Some(api_key), Some(secret)) = (random_hex(), random_hex()) else {
        return crate::util::server_failure();
    };
    let created_at = sandbox.config.clock.now();
    sandbox.lock().binance_spot.keys.insert(
        api_key.clone(),
        ApiKey { secret: secret.clone(), username: body.username.clone(), withdraw, deleted: false, created_at },
    );
    let permissions: Vec<&str> = if withdraw { vec!["read", "withdraw"] } else { vec!["read"] };
    (
        StatusCode::CREATED,
        Json(json!({"apiKey": api_key, "secretKey": secret, "username": body.username, "permissions": permissions})),
    )
        .into_response()
}

/// `DELETE /sandbox/admin/binance/api-keys/{apiKey}`: the key answers `-2015` from then on.
async fn delete_key(State(sandbox): State<Shared>, Path(api_key): Path<String>) -> Response {
    match sandbox.lock().binance_spot.keys.get_mut(&api_key) {
        Some(key) if !key.deleted => {
            key.deleted = true;
            Json(json!({"deleted": true})).into_response()
        }
        _ => crate::util::json_error(StatusCode::NOT_FOUND, "not_found", "no such live API key"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockSkew {
    ms: i64,
}

/// `POST /sandbox/admin/binance/clock-skew {"ms": 10000}`: the Binance server clock runs this far ahead
/// (negative: behind) of the sandbox clock, for `/api/v3/time` and the recvWindow check.
async fn set_clock_skew(
    State(sandbox): State<Shared>,
    body: Result<Json<ClockSkew>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if body.ms.abs() > 24 * 3600 * 1000 {
        return admin_error(StatusCode::BAD_REQUEST, "ms must be within a day");
    }
    sandbox.lock().binance_spot.clock_skew_ms = body.ms;
    Json(json!({"ms": body.ms})).into_response()
}
