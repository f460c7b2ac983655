//! Binance Spot REST API adapter: the spot wallet's balances, prices, coin/network configuration, deposit
//! addresses and withdrawals, over HMAC-SHA256-signed requests with an API key and secret.
//!
//! Documented endpoints used (developers.binance.com, Spot REST API and Wallet "capital" API):
//! - `GET /api/v3/time` (public): the server's clock, to resynchronise after `-1021`.
//! - `GET /api/v3/ticker/price` (public, every symbol at once): prices, quoted in USDT.
//! - `GET /api/v3/account` (USER_DATA, `omitZeroBalances=true`): balances `free` + `locked`, `uid`.
//! - `GET /sapi/v1/account/apiRestrictions` (USER_DATA): whether the key may withdraw.
//! - `GET /sapi/v1/capital/config/getall` (USER_DATA): per coin `networkList` with fees, minimums, switches.
//! - `GET /sapi/v1/capital/deposit/address` (USER_DATA): deposit address (and tag) per coin and network.
//! - `POST /sapi/v1/capital/withdraw/apply` (USER_DATA): a withdrawal, with our `withdrawOrderId`.
//! - `GET /sapi/v1/capital/withdraw/history` (USER_DATA): withdrawals, by `withdrawOrderId` or `idList`.
//! - `GET /sapi/v1/capital/deposit/hisrec` (USER_DATA): deposits, for the incoming side of history.
//!
//! Signing (the "SIGNED endpoint security" section): every private request carries `X-MBX-APIKEY`, and its
//! query string ends with `timestamp` (ms), `recvWindow` and `signature` = hex HMAC-SHA256 of the query string
//! before it, keyed with the API secret. POST parameters travel in the query string too (documented as
//! allowed), so the signed text is exactly what is sent and there is no body to concatenate.
//!
//! Errors are `{"code": -1021, "msg": "…"}`. `-1021` (timestamp outside recvWindow) resyncs the clock from
//! `/api/v3/time` and retries once. `-2014`/`-2015`/`-2008`/`-1022` mean the key or secret is not (any longer)
//! valid: [`ApiError::Revoked`]. 429/418 carry `Retry-After`; Binance bans IPs that keep sending after a 429,
//! so the adapter remembers "backing off until T" per base URL and fails fast, without sending, until then.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use ring::hmac;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;

use super::{
    Account, AccountApi, ApiError, AssetNetwork, Balance, Call, Credential, DepositAddress, Holding, QuoteRequest,
    Refusal, SendOutcome, SendRequest, Transfer, TransferQuote, TransferStatus,
};
use crate::http::{self, FetchError, RawResponse, sanitize};
use crate::networks::NETWORKS;

/// Prices are cached this long per base URL: they move, but a portfolio read must not cost a ticker call.
const PRICE_TTL: Duration = Duration::from_secs(30);
/// The coin/network configuration (fees, minimums, switches) is cached this long per (base URL, key).
const CONFIG_TTL: Duration = Duration::from_secs(600);
/// The window Binance accepts a signed request in (the documented default).
const RECV_WINDOW_MS: u64 = 5000;
/// Back-off when a 429 says no `Retry-After`; a 418 (IP ban) lasts at least 2 minutes as documented.
const DEFAULT_429_BACKOFF: Duration = Duration::from_secs(60);
const DEFAULT_418_BACKOFF: Duration = Duration::from_secs(120);
/// Withdraw and deposit history pages: the documented maximum `limit`, and a hard page cap.
const PAGE_LIMIT: usize = 1000;
const MAX_PAGES: usize = 100;
/// Prices are quoted against this asset (Binance has no USD spot market); it is worth 1 by construction.
const QUOTE_ASSET: &str = "USDT";
/// Assets that are fiat money: reported as balances, not holdings.
const FIAT: &[&str] = &[
    "USD", "EUR", "GBP", "AUD", "BRL", "TRY", "JPY", "CAD", "CHF", "PLN", "RON", "CZK", "MXN", "ARS", "COP", "ZAR",
    "UAH", "NGN", "KZT", "IDR", "INR", "RUB", "SEK", "NOK", "DKK", "HUF", "NZD", "AED", "SAR", "VND", "PHP",
];

/// Binance network names and the canonical names they map to (`networks::NETWORKS` plus bitcoin).
/// Binance renamed Polygon's network from `MATIC` to `POL`; both are accepted.
const NETWORK_NAMES: &[(&str, &str)] = &[
    ("ETH", "ethereum"),
    ("MATIC", "polygon"),
    ("POL", "polygon"),
    ("POLYGON", "polygon"),
    ("SOL", "solana"),
    ("BASE", "base"),
    ("BTC", "bitcoin"),
];

fn canonical_network(binance: &str) -> Option<&'static str> {
    NETWORK_NAMES.iter().find(|(b, _)| b.eq_ignore_ascii_case(binance)).map(|(_, c)| *c)
}

#[derive(Default)]
struct State {
    /// Per base URL: Binance server time minus our clock, in ms (learned from `/api/v3/time`).
    clock_offset_ms: HashMap<String, i64>,
    /// Per base URL: no request is sent before this instant (after a 429 or 418).
    backoff_until: HashMap<String, Instant>,
    /// Per base URL: symbol (`BTCUSDT`) → price, and when it was fetched.
    prices: HashMap<String, (Instant, HashMap<String, f64>)>,
    /// Per (base URL, SHA-256 of the API key): the coin configuration, and when it was fetched.
    configs: HashMap<(String, String), (Instant, Vec<CoinConfig>)>,
}

/// The Binance Spot adapter. Created once per process; holds the caches and back-off state above.
#[derive(Default)]
pub struct BinanceSpot {
    state: Mutex<State>,
}

impl fmt::Debug for BinanceSpot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BinanceSpot")
    }
}

// ---------------------------------------------------------------------------------------------------------
// Wire types (only the fields used).

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountInfo {
    #[serde(default)]
    balances: Vec<AssetBalance>,
    #[serde(default)]
    uid: Option<u64>,
    #[serde(default)]
    account_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AssetBalance {
    asset: String,
    #[serde(deserialize_with = "decimal")]
    free: f64,
    #[serde(deserialize_with = "decimal")]
    locked: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CoinConfig {
    coin: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    network_list: Vec<NetworkConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkConfig {
    network: String,
    #[serde(default, deserialize_with = "optional_decimal")]
    withdraw_fee: Option<f64>,
    #[serde(default, deserialize_with = "optional_decimal")]
    withdraw_min: Option<f64>,
    #[serde(default)]
    withdraw_enable: bool,
    #[serde(default)]
    deposit_enable: bool,
}

#[derive(Debug, Deserialize)]
struct TickerPrice {
    symbol: String,
    #[serde(deserialize_with = "decimal")]
    price: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiRestrictions {
    #[serde(default)]
    enable_withdrawals: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDepositAddress {
    address: String,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WithdrawApplied {
    id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireWithdrawal {
    id: String,
    #[serde(deserialize_with = "decimal")]
    amount: f64,
    #[serde(default, deserialize_with = "optional_decimal")]
    transaction_fee: Option<f64>,
    coin: String,
    status: i64,
    address: String,
    #[serde(default)]
    tx_id: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    #[serde(default)]
    apply_time: Option<String>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    withdraw_order_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDeposit {
    #[serde(default)]
    id: Option<Value>,
    #[serde(deserialize_with = "decimal")]
    amount: f64,
    coin: String,
    #[serde(default)]
    network: Option<String>,
    status: i64,
    #[serde(default)]
    address: String,
    #[serde(default)]
    tx_id: Option<String>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    insert_time: Option<i64>,
}

/// Binance sends decimals as strings (`"0.00150000"`); numbers are accepted too.
fn decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    optional_decimal(d)?.ok_or_else(|| serde::de::Error::custom("a decimal is required"))
}

fn optional_decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().filter(|v| v.is_finite())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("not a decimal")),
        Some(_) => Err(serde::de::Error::custom("not a decimal")),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Requests.

/// Public, or signed with the API key and secret.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Security {
    Public,
    Signed,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

fn sign(secret: &str, payload: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::sign(&key, payload.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn key_digest(key: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, key.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn encode(params: &[(&str, String)]) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        form.append_pair(k, v);
    }
    form.finish()
}

/// What one HTTP exchange gave: the parsed body, or why not.
enum Answer {
    Ok(Vec<u8>),
    /// `-1021`: our timestamp is outside the server's window.
    ClockSkew,
    Err(ApiError),
}

fn binance_code(response: &RawResponse) -> (Option<i64>, Option<String>) {
    let body = response.json_object().ok();
    let code = body.as_ref().and_then(|b| b.get("code")).and_then(Value::as_i64);
    let msg = body.as_ref().and_then(|b| b.get("msg")).and_then(Value::as_str).map(sanitize);
    (code, msg)
}

fn refusal(reason: Refusal, message: impl Into<String>) -> ApiError {
    ApiError::Refused { reason, message: message.into() }
}

/// Maps a Binance error answer to the canonical error.
fn classify(response: &RawResponse) -> ApiError {
    let status = response.status.as_u16();
    let (code, msg) = binance_code(response);
    let said = |fallback: &str| msg.clone().unwrap_or_else(|| fallback.to_owned());
    match code {
        Some(-2014 | -2015 | -2008) => {
            return ApiError::Revoked(format!("Binance refused the API key ({}): {}", code.unwrap_or(0), said("")));
        }
        Some(-1022) => {
            return ApiError::Revoked("Binance says the signature is not valid: the API secret is wrong".to_owned());
        }
        Some(-1002) => return ApiError::InsufficientScope,
        Some(-1000 | -1001 | -1003 | -1004 | -1006 | -1007 | -1008 | -1016) => {
            return ApiError::Transient {
                retry_after: response.retry_after(),
                reason: format!("Binance {}: {}", code.unwrap_or(0), said("busy")),
            };
        }
        Some(-4026..=-4024) => return refusal(Refusal::InsufficientFunds, said("insufficient balance")),
        Some(-4022 | -4028) => return refusal(Refusal::BelowMinimum, said("below the minimum withdrawal")),
        Some(-4007 | -4008 | -4033 | -4034 | -4106) => {
            return refusal(Refusal::InvalidAddress, said("the address is not valid"));
        }
        Some(-4035) => return refusal(Refusal::AddressNotWhitelisted, said("the address is not on the whitelist")),
        Some(-4018) => return refusal(Refusal::UnsupportedAsset, said("Binance does not have this asset")),
        Some(-4019) => return refusal(Refusal::UnsupportedNetwork, said("not open on that network")),
        Some(-1121) => return ApiError::NotFound(said("invalid symbol")),
        _ => {}
    }
    if response.status.is_server_error() {
        return ApiError::Transient { retry_after: response.retry_after(), reason: format!("HTTP {status}") };
    }
    if response.status == StatusCode::UNAUTHORIZED {
        return ApiError::Revoked(format!("HTTP 401: {}", said("unauthorized")));
    }
    ApiError::Rejected {
        status,
        error: code.map(|c| c.to_string()).unwrap_or_else(|| format!("HTTP {status}")),
        message: msg,
    }
}

fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Protocol(format!("{what}: not the documented JSON: {}", sanitize(&e.to_string()))))
}

impl BinanceSpot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn base_key(call: &Call<'_>) -> String {
        call.base.as_str().trim_end_matches('/').to_owned()
    }

    fn credential<'c>(call: &Call<'c>) -> Result<(&'c str, &'c str), ApiError> {
        match call.credential {
            Credential::ApiKey { key, secret } => Ok((key.expose_secret(), secret.expose_secret())),
            Credential::Bearer(_) => {
                Err(ApiError::Config("Binance Spot calls need an API key and secret, not a bearer token".to_owned()))
            }
        }
    }

    /// Fails fast while a 429/418 back-off for this base URL runs.
    fn check_backoff(&self, base: &str) -> Result<(), ApiError> {
        let mut state = self.lock();
        if let Some(until) = state.backoff_until.get(base).copied() {
            let now = Instant::now();
            if until > now {
                return Err(ApiError::Transient {
                    retry_after: Some(until - now),
                    reason: "Binance asked us to back off (429/418); no request is sent until then".to_owned(),
                });
            }
            state.backoff_until.remove(base);
        }
        Ok(())
    }

    fn back_off(&self, base: &str, status: StatusCode, retry_after: Option<Duration>) -> Duration {
        let default = if status.as_u16() == 418 { DEFAULT_418_BACKOFF } else { DEFAULT_429_BACKOFF };
        let wait = retry_after.filter(|d| !d.is_zero()).unwrap_or(default).min(http::MAX_RETRY_AFTER);
        let until = Instant::now() + wait;
        let mut state = self.lock();
        let slot = state.backoff_until.entry(base.to_owned()).or_insert(until);
        if *slot < until {
            *slot = until;
        }
        wait
    }

    /// One HTTP exchange (no retry).
    async fn exchange(
        &self,
        call: &Call<'_>,
        method: &Method,
        path: &str,
        params: &[(&str, String)],
        security: Security,
    ) -> Answer {
        let base = Self::base_key(call);
        if let Err(e) = self.check_backoff(&base) {
            return Answer::Err(e);
        }
        let mut url = match call.url(path) {
            Ok(url) => url,
            Err(e) => return Answer::Err(e),
        };
        let mut request;
        match security {
            Security::Public => {
                if !params.is_empty() {
                    url.set_query(Some(&encode(params)));
                }
                request = call.http.client.request(method.clone(), url);
            }
            Security::Signed => {
                let (key, secret) = match Self::credential(call) {
                    Ok(c) => c,
                    Err(e) => return Answer::Err(e),
                };
                let offset = self.lock().clock_offset_ms.get(&base).copied().unwrap_or(0);
                let mut all: Vec<(&str, String)> = params.to_vec();
                all.push(("timestamp", (now_ms() + offset).to_string()));
                all.push(("recvWindow", RECV_WINDOW_MS.to_string()));
                let query = encode(&all);
                let signature = sign(secret, &query);
                url.set_query(Some(&format!("{query}&signature={signature}")));
                request = call.http.client.request(method.clone(), url).header("X-MBX-APIKEY", key);
            }
        }
        request = request.header(reqwest::header::ACCEPT, "application/json");
        let response = match http::send(&call.http.limits, request).await {
            Ok(r) => r,
            Err(e @ FetchError::TooLarge { .. }) => return Answer::Err(ApiError::Protocol(e.describe())),
            Err(e) => return Answer::Err(ApiError::Transient { retry_after: None, reason: e.describe() }),
        };
        if response.status.is_success() {
            return Answer::Ok(response.body);
        }
        let status = response.status.as_u16();
        if status == 429 || status == 418 {
            let wait = self.back_off(&base, response.status, response.retry_after());
            return Answer::Err(ApiError::Transient {
                retry_after: Some(wait),
                reason: if status == 418 {
                    "Binance banned this IP for a while (HTTP 418)".to_owned()
                } else {
                    "Binance rate limit reached (HTTP 429)".to_owned()
                },
            });
        }
        if binance_code(&response).0 == Some(-1021) {
            return Answer::ClockSkew;
        }
        Answer::Err(classify(&response))
    }

    /// Learns the server's clock offset for this base URL.
    async fn resync(&self, call: &Call<'_>) -> Result<(), ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ServerTime {
            server_time: i64,
        }
        let before = now_ms();
        let body = match self.exchange(call, &Method::GET, "/api/v3/time", &[], Security::Public).await {
            Answer::Ok(body) => body,
            Answer::ClockSkew => return Err(ApiError::Protocol("/api/v3/time answered -1021".to_owned())),
            Answer::Err(e) => return Err(e),
        };
        let after = now_ms();
        let time: ServerTime = parse(&body, "/api/v3/time")?;
        let offset = time.server_time - (before + (after - before) / 2);
        tracing::debug!(offset_ms = offset, "Binance clock offset learned");
        self.lock().clock_offset_ms.insert(Self::base_key(call), offset);
        Ok(())
    }

    /// A request, with one retry after a `-1021` clock resync (safe for every call: Binance checks the
    /// timestamp before doing anything, so a `-1021` request had no effect).
    async fn request<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        security: Security,
    ) -> Result<T, ApiError> {
        for attempt in 0..2 {
            match self.exchange(call, &method, path, params, security).await {
                Answer::Ok(body) => return parse(&body, path),
                Answer::ClockSkew if attempt == 0 => self.resync(call).await?,
                Answer::ClockSkew => break,
                Answer::Err(e) => return Err(e),
            }
        }
        Err(ApiError::Rejected {
            status: 400,
            error: "-1021".to_owned(),
            message: Some("the request timestamp is outside Binance's recvWindow even after a clock resync".to_owned()),
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<T, ApiError> {
        self.request(call, Method::GET, path, params, Security::Signed).await
    }

    async fn account_info(&self, call: &Call<'_>) -> Result<AccountInfo, ApiError> {
        self.get(call, "/api/v3/account", &[("omitZeroBalances", "true".to_owned())]).await
    }

    /// Every ticker price (one request, weight 4), cached [`PRICE_TTL`].
    async fn prices(&self, call: &Call<'_>) -> Result<HashMap<String, f64>, ApiError> {
        let base = Self::base_key(call);
        if let Some((at, prices)) = self.lock().prices.get(&base)
            && at.elapsed() < PRICE_TTL
        {
            return Ok(prices.clone());
        }
        let tickers: Vec<TickerPrice> =
            self.request(call, Method::GET, "/api/v3/ticker/price", &[], Security::Public).await?;
        let prices: HashMap<String, f64> = tickers.into_iter().map(|t| (t.symbol, t.price)).collect();
        self.lock().prices.insert(base, (Instant::now(), prices.clone()));
        Ok(prices)
    }

    /// The coin configuration, cached [`CONFIG_TTL`] per base URL and key.
    async fn config(&self, call: &Call<'_>) -> Result<Vec<CoinConfig>, ApiError> {
        let (key, _) = Self::credential(call)?;
        let cache_key = (Self::base_key(call), key_digest(key));
        if let Some((at, config)) = self.lock().configs.get(&cache_key)
            && at.elapsed() < CONFIG_TTL
        {
            return Ok(config.clone());
        }
        let config: Vec<CoinConfig> = self.get(call, "/sapi/v1/capital/config/getall", &[]).await?;
        self.lock().configs.insert(cache_key, (Instant::now(), config.clone()));
        Ok(config)
    }

    /// The Binance network entry of `symbol` for a canonical network name.
    async fn network_of(
        &self,
        call: &Call<'_>,
        symbol: &str,
        network: &str,
    ) -> Result<(String, NetworkConfig), ApiError> {
        let config = self.config(call).await?;
        let coin = config.iter().find(|c| c.coin.eq_ignore_ascii_case(symbol)).ok_or_else(|| {
            refusal(Refusal::UnsupportedAsset, format!("Binance does not support withdrawals or deposits of {symbol}"))
        })?;
        let entry =
            coin.network_list.iter().find(|n| canonical_network(&n.network) == Some(network)).cloned().ok_or_else(
                || refusal(Refusal::UnsupportedAsset, format!("Binance does not move {symbol} on {network}")),
            )?;
        let name = if coin.name.is_empty() { coin.coin.clone() } else { coin.name.clone() };
        Ok((name, entry))
    }

    fn usd_price(prices: &HashMap<String, f64>, symbol: &str) -> Option<f64> {
        if symbol == QUOTE_ASSET {
            return Some(1.0);
        }
        prices.get(&format!("{symbol}{QUOTE_ASSET}")).copied()
    }

    async fn can_withdraw(&self, call: &Call<'_>) -> Result<bool, ApiError> {
        let restrictions: ApiRestrictions = self.get(call, "/sapi/v1/account/apiRestrictions", &[]).await?;
        Ok(restrictions.enable_withdrawals)
    }

    async fn withdrawals(&self, call: &Call<'_>, filter: &[(&str, String)]) -> Result<Vec<WireWithdrawal>, ApiError> {
        let mut all = Vec::new();
        for page in 0..MAX_PAGES {
            let mut params: Vec<(&str, String)> = filter.to_vec();
            params.push(("offset", (page * PAGE_LIMIT).to_string()));
            params.push(("limit", PAGE_LIMIT.to_string()));
            let batch: Vec<WireWithdrawal> = self.get(call, "/sapi/v1/capital/withdraw/history", &params).await?;
            let full = batch.len() >= PAGE_LIMIT;
            all.extend(batch);
            if !full {
                return Ok(all);
            }
        }
        Err(ApiError::Protocol(format!("withdraw history longer than {MAX_PAGES} pages")))
    }

    async fn deposits(&self, call: &Call<'_>) -> Result<Vec<WireDeposit>, ApiError> {
        let mut all = Vec::new();
        for page in 0..MAX_PAGES {
            let params = [("offset", (page * PAGE_LIMIT).to_string()), ("limit", PAGE_LIMIT.to_string())];
            let batch: Vec<WireDeposit> = self.get(call, "/sapi/v1/capital/deposit/hisrec", &params).await?;
            let full = batch.len() >= PAGE_LIMIT;
            all.extend(batch);
            if !full {
                return Ok(all);
            }
        }
        Err(ApiError::Protocol(format!("deposit history longer than {MAX_PAGES} pages")))
    }

    async fn by_order_id(&self, call: &Call<'_>, idem: &str) -> Result<Option<WireWithdrawal>, ApiError> {
        let found = self.withdrawals(call, &[("withdrawOrderId", idem.to_owned())]).await?;
        Ok(found.into_iter().find(|w| w.withdraw_order_id.as_deref() == Some(idem)))
    }

    fn account_of(&self, call: &Call<'_>, info: &AccountInfo) -> Result<Account, ApiError> {
        let id = match info.uid {
            Some(uid) => uid.to_string(),
            // No uid in the answer: a stable id derived from the key (never the key itself).
            None => format!("spot-{}", key_digest(Self::credential(call)?.0).get(..16).unwrap_or_default()),
        };
        let kind = info.account_type.as_deref().unwrap_or("SPOT");
        Ok(Account {
            id,
            name: format!("Binance {} wallet", kind.to_ascii_lowercase()),
            currency: None,
            value_usd: None,
            cash_usd: None,
        })
    }
}

fn withdrawal_status(code: i64) -> (TransferStatus, &'static str) {
    // Documented withdraw statuses: 0 Email Sent, 1 Cancelled, 2 Awaiting Approval, 3 Rejected,
    // 4 Processing, 5 Failure, 6 Completed.
    match code {
        6 => (TransferStatus::Succeeded, "completed"),
        1 => (TransferStatus::Failed, "cancelled"),
        3 => (TransferStatus::Failed, "rejected"),
        5 => (TransferStatus::Failed, "failure"),
        0 => (TransferStatus::Pending, "emailSent"),
        2 => (TransferStatus::Pending, "awaitingApproval"),
        4 => (TransferStatus::Pending, "processing"),
        _ => (TransferStatus::Pending, "unknown"),
    }
}

fn deposit_status(code: i64) -> (TransferStatus, &'static str) {
    // Documented deposit statuses: 0 pending, 6 credited but cannot withdraw, 7 wrong deposit,
    // 8 waiting user confirm, 1 success.
    match code {
        1 => (TransferStatus::Succeeded, "success"),
        6 => (TransferStatus::Succeeded, "credited"),
        7 => (TransferStatus::Failed, "wrongDeposit"),
        8 => (TransferStatus::Pending, "waitingUserConfirm"),
        _ => (TransferStatus::Pending, "pending"),
    }
}

fn parse_apply_time(raw: Option<&str>) -> Result<OffsetDateTime, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else { return Ok(OffsetDateTime::UNIX_EPOCH) };
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(raw.trim(), &format)
        .map(time::PrimitiveDateTime::assume_utc)
        .map_err(|_| ApiError::Protocol(format!("withdraw applyTime {:?} is not a date", sanitize(raw))))
}

fn from_withdrawal(w: WireWithdrawal) -> Result<Transfer, ApiError> {
    let (status, word) = withdrawal_status(w.status);
    Ok(Transfer {
        created_at: parse_apply_time(w.apply_time.as_deref())?,
        id: w.id,
        symbol: w.coin.to_ascii_uppercase(),
        amount: w.amount,
        address: w.address,
        network: w.network.as_deref().and_then(canonical_network).map(str::to_owned),
        status,
        status_details: word.to_owned(),
        fee: w.transaction_fee,
        fee_currency: Some(w.coin),
        from_address: None,
        hash: w.tx_id.filter(|h| !h.is_empty()),
        incoming: false,
    })
}

fn from_deposit(d: WireDeposit) -> Transfer {
    let (status, word) = deposit_status(d.status);
    let id = match d.id {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => d.tx_id.clone().unwrap_or_default(),
    };
    let created_at = d
        .insert_time
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Transfer {
        id,
        symbol: d.coin.to_ascii_uppercase(),
        amount: d.amount,
        address: d.address,
        network: d.network.as_deref().and_then(canonical_network).map(str::to_owned),
        status,
        status_details: word.to_owned(),
        created_at,
        fee: None,
        fee_currency: None,
        from_address: None,
        hash: d.tx_id.filter(|h| !h.is_empty()),
        incoming: true,
    }
}

/// Whether a withdrawal found under our `withdrawOrderId` is the send asked for now.
fn same_send(found: &WireWithdrawal, request: &SendRequest) -> bool {
    found.coin.eq_ignore_ascii_case(&request.symbol)
        && found.address == request.address
        && (found.amount - request.amount).abs() <= 1e-9 * request.amount.abs().max(1.0)
}

fn address_ok(network: &str, address: &str) -> bool {
    match NETWORKS.iter().find(|n| n.api_name == network) {
        Some(n) => n.address.accepts(address),
        None => !address.trim().is_empty() && address.len() <= 128 && !address.chars().any(char::is_whitespace),
    }
}

#[async_trait]
impl AccountApi for BinanceSpot {
    async fn accounts(&self, call: Call<'_>) -> Result<Vec<Account>, ApiError> {
        let info = self.account_info(&call).await?;
        let mut account = self.account_of(&call, &info)?;
        let prices = self.prices(&call).await?;
        let mut value = 0.0;
        let mut cash = 0.0;
        for b in &info.balances {
            let amount = b.free + b.locked;
            if b.asset == "USD" {
                cash += amount;
                value += amount;
            } else if let Some(price) = Self::usd_price(&prices, &b.asset) {
                value += amount * price;
            }
        }
        account.value_usd = Some(value);
        account.cash_usd = Some(cash);
        Ok(vec![account])
    }

    async fn holdings(&self, call: Call<'_>) -> Result<Vec<Holding>, ApiError> {
        let info = self.account_info(&call).await?;
        let prices = self.prices(&call).await?;
        // Names are a nicety: a configuration failure must not fail the portfolio.
        let names: HashMap<String, String> = match self.config(&call).await {
            Ok(config) => config.into_iter().map(|c| (c.coin, c.name)).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "Binance coin names unavailable");
                HashMap::new()
            }
        };
        Ok(info
            .balances
            .into_iter()
            .filter(|b| !FIAT.contains(&b.asset.as_str()))
            .map(|b| {
                let amount = b.free + b.locked;
                let price_usd = Self::usd_price(&prices, &b.asset);
                let name = names.get(&b.asset).filter(|n| !n.is_empty()).cloned().unwrap_or_else(|| b.asset.clone());
                Holding {
                    symbol: b.asset.to_ascii_uppercase(),
                    name,
                    amount,
                    price_usd,
                    value_usd: price_usd.map(|p| p * amount),
                    cost_basis_usd: None,
                }
            })
            .filter(|h| h.amount > 0.0)
            .collect())
    }

    async fn balances(&self, call: Call<'_>) -> Result<Vec<Balance>, ApiError> {
        let info = self.account_info(&call).await?;
        Ok(info
            .balances
            .into_iter()
            .filter(|b| FIAT.contains(&b.asset.as_str()))
            .map(|b| Balance { currency: b.asset, cash: b.free + b.locked, buying_power: b.free })
            .collect())
    }

    async fn deposit_address(&self, call: Call<'_>, symbol: &str, network: &str) -> Result<DepositAddress, ApiError> {
        let symbol = symbol.to_ascii_uppercase();
        let (_, entry) = self.network_of(&call, &symbol, network).await?;
        if !entry.deposit_enable {
            return Err(refusal(
                Refusal::UnsupportedNetwork,
                format!("Binance has deposits of {symbol} on {network} switched off"),
            ));
        }
        let params = [("coin", symbol.clone()), ("network", entry.network.clone())];
        let wire: WireDepositAddress = self.get(&call, "/sapi/v1/capital/deposit/address", &params).await?;
        if wire.address.is_empty() {
            return Err(ApiError::NotFound(format!("no {symbol} deposit address on {network}")));
        }
        Ok(DepositAddress {
            symbol,
            network: network.to_owned(),
            address: wire.address,
            tag: wire.tag.filter(|t| !t.is_empty()),
        })
    }

    async fn assets(&self, call: Call<'_>) -> Result<Vec<AssetNetwork>, ApiError> {
        let config = self.config(&call).await?;
        let mut out = Vec::new();
        for coin in config {
            for n in &coin.network_list {
                let Some(network) = canonical_network(&n.network) else { continue };
                out.push(AssetNetwork {
                    symbol: coin.coin.to_ascii_uppercase(),
                    name: if coin.name.is_empty() { coin.coin.clone() } else { coin.name.clone() },
                    network: network.to_owned(),
                    withdraw_fee: n.withdraw_fee,
                    withdraw_min: n.withdraw_min,
                    withdraw_enabled: n.withdraw_enable,
                    deposit_enabled: n.deposit_enable,
                });
            }
        }
        Ok(out)
    }

    /// Binance has no quote endpoint: the quote is put together from the key's withdraw permission, the spot
    /// balance, the coin configuration (fee, minimum, switch) and the ticker price. The fee is the one
    /// Binance publishes for the network, charged on top of the amount.
    async fn quote(&self, call: Call<'_>, request: &QuoteRequest) -> Result<TransferQuote, ApiError> {
        let symbol = request.symbol.to_ascii_uppercase();
        if !self.can_withdraw(&call).await? {
            return Err(ApiError::InsufficientScope);
        }
        let (_, entry) = self.network_of(&call, &symbol, &request.network).await?;
        if !entry.withdraw_enable {
            return Err(refusal(
                Refusal::UnsupportedNetwork,
                format!("Binance has withdrawals of {symbol} on {} switched off", request.network),
            ));
        }
        if !address_ok(&request.network, &request.address) {
            return Err(refusal(Refusal::InvalidAddress, format!("not a {} address", request.network)));
        }
        let prices = self.prices(&call).await?;
        let price_usd = Self::usd_price(&prices, &symbol)
            .ok_or_else(|| ApiError::NotFound(format!("Binance has no {symbol}{QUOTE_ASSET} price")))?;
        let amount = match (request.amount, request.amount_usd) {
            (Some(amount), _) => amount,
            (None, Some(usd)) if price_usd > 0.0 => usd / price_usd,
            _ => {
                return Err(ApiError::Rejected {
                    status: 400,
                    error: "invalidAmount".to_owned(),
                    message: Some("give amount or amountUsd".to_owned()),
                });
            }
        };
        if !(amount.is_finite() && amount > 0.0) {
            return Err(ApiError::Rejected {
                status: 400,
                error: "invalidAmount".to_owned(),
                message: Some("the amount must be a positive number".to_owned()),
            });
        }
        let fee = entry.withdraw_fee.unwrap_or(0.0);
        if let Some(min) = entry.withdraw_min
            && amount + 1e-12 < min
        {
            return Err(refusal(Refusal::BelowMinimum, format!("Binance's minimum {symbol} withdrawal is {min}")));
        }
        let info = self.account_info(&call).await?;
        let available = info.balances.iter().filter(|b| b.asset.eq_ignore_ascii_case(&symbol)).map(|b| b.free).sum();
        if available + 1e-12 < amount + fee {
            return Err(refusal(
                Refusal::InsufficientFunds,
                format!("{amount} {symbol} plus the {fee} fee is more than the {available} available"),
            ));
        }
        Ok(TransferQuote {
            symbol: symbol.clone(),
            network: request.network.clone(),
            address: request.address.clone(),
            amount,
            fee,
            fee_currency: symbol,
            price_usd,
            available,
            from_address: None,
            quote_id: None,
            expires_at: None,
        })
    }

    /// Exactly once per `idem`, sent as `withdrawOrderId`. Binance documents `withdrawOrderId` as a client id
    /// the withdraw history can be searched by, not as a key it refuses to reuse, so the guarantee is ours:
    /// the history is searched for it BEFORE applying (a retry after a lost answer or a crash finds the first
    /// withdrawal and returns it), and again after an ambiguous answer (timeout, connection loss, 5xx), where
    /// a found withdrawal is the answer and none found is reported as transient, so the caller's retry goes
    /// through the lookup first again and never applies blindly.
    async fn send(&self, call: Call<'_>, request: &SendRequest) -> Result<SendOutcome, ApiError> {
        let symbol = request.symbol.to_ascii_uppercase();
        let existing = |found: WireWithdrawal| -> Result<SendOutcome, ApiError> {
            if !same_send(&found, request) {
                return Err(refusal(
                    Refusal::IdempotencyConflict,
                    "this withdrawOrderId was already used for a different withdrawal",
                ));
            }
            Ok(SendOutcome::Sent(from_withdrawal(found)?))
        };
        if let Some(found) = self.by_order_id(&call, &request.idem).await? {
            return existing(found);
        }
        let (_, entry) = self.network_of(&call, &symbol, &request.network).await?;
        let mut params = vec![
            ("coin", symbol.clone()),
            ("network", entry.network.clone()),
            ("address", request.address.clone()),
            ("amount", format!("{}", request.amount)),
            ("withdrawOrderId", request.idem.clone()),
        ];
        if let Some(tag) = request.tag.as_ref().filter(|t| !t.is_empty()) {
            params.push(("addressTag", tag.clone()));
        }
        let applied: Result<WithdrawApplied, ApiError> =
            self.request(&call, Method::POST, "/sapi/v1/capital/withdraw/apply", &params, Security::Signed).await;
        let id = match applied {
            Ok(applied) => applied.id,
            Err(ApiError::Transient { retry_after, reason }) => {
                // Ambiguous unless it was our own back-off or a 429/418 (those never reached processing);
                // looking it up is right either way.
                return match self.by_order_id(&call, &request.idem).await {
                    Ok(Some(found)) => existing(found),
                    _ => Err(ApiError::Transient {
                        retry_after,
                        reason: format!("withdrawal outcome not known yet ({reason}); retrying is safe"),
                    }),
                };
            }
            Err(ApiError::Revoked(_) | ApiError::InsufficientScope) => {
                // -2015 also answers a valid key that lacks the withdraw permission.
                return Err(match self.can_withdraw(&call).await {
                    Ok(false) => ApiError::InsufficientScope,
                    Ok(true) => ApiError::Rejected {
                        status: 401,
                        error: "-2015".to_owned(),
                        message: Some("Binance refused the withdrawal for this key (IP whitelist?)".to_owned()),
                    },
                    Err(e) => e,
                });
            }
            Err(e) => return Err(e),
        };
        match self.withdrawals(&call, &[("idList", id.clone())]).await {
            Ok(found) if !found.is_empty() => {
                if let Some(w) = found.into_iter().find(|w| w.id == id) {
                    return Ok(SendOutcome::Sent(from_withdrawal(w)?));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "Binance withdrawal made; reading it back failed"),
        }
        Ok(SendOutcome::Sent(Transfer {
            id,
            symbol: symbol.clone(),
            amount: request.amount,
            address: request.address.clone(),
            network: Some(request.network.clone()),
            status: TransferStatus::Pending,
            status_details: "processing".to_owned(),
            created_at: OffsetDateTime::now_utc(),
            fee: entry.withdraw_fee,
            fee_currency: Some(symbol),
            from_address: None,
            hash: None,
            incoming: false,
        }))
    }

    async fn transfer(&self, call: Call<'_>, id: &str) -> Result<Transfer, ApiError> {
        if let Some(w) = self.withdrawals(&call, &[("idList", id.to_owned())]).await?.into_iter().find(|w| w.id == id) {
            return from_withdrawal(w);
        }
        self.deposits(&call)
            .await?
            .into_iter()
            .map(from_deposit)
            .find(|t| t.id == id)
            .ok_or_else(|| ApiError::NotFound(format!("no Binance withdrawal or deposit {}", sanitize(id))))
    }

    async fn history(&self, call: Call<'_>) -> Result<Vec<Transfer>, ApiError> {
        let mut all = Vec::new();
        for w in self.withdrawals(&call, &[]).await? {
            all.push(from_withdrawal(w)?);
        }
        all.extend(self.deposits(&call).await?.into_iter().map(from_deposit));
        all.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        Ok(all)
    }

    /// A signed `GET /api/v3/account`: proves the key and the secret (sign-in checks this before storing).
    async fn verify(&self, call: Call<'_>) -> Result<Account, ApiError> {
        let info = self.account_info(&call).await?;
        self.account_of(&call, &info)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_example() {
        // The HMAC example from Binance's SIGNED endpoint documentation.
        let secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        assert_eq!(sign(secret, query), "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71");
    }

    #[test]
    fn networks_and_statuses() {
        assert_eq!(canonical_network("ETH"), Some("ethereum"));
        assert_eq!(canonical_network("MATIC"), Some("polygon"));
        assert_eq!(canonical_network("POL"), Some("polygon"));
        assert_eq!(canonical_network("BSC"), None);
        assert_eq!(withdrawal_status(6).0, TransferStatus::Succeeded);
        assert_eq!(withdrawal_status(3).0, TransferStatus::Failed);
        assert_eq!(withdrawal_status(4).0, TransferStatus::Pending);
        assert_eq!(
            parse_apply_time(Some("2019-10-12 11:12:02")).unwrap(),
            time::macros::datetime!(2019-10-12 11:12:02 UTC)
        );
        assert!(parse_apply_time(Some("yesterday")).is_err());
    }
}
