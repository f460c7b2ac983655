//! Coinbase App API v2 adapter ("Sign in with Coinbase" OAuth tokens): accounts, holdings and fiat balances,
//! deposit addresses, send with `idem` and two-step verification, transaction status and history, in
//! linkvault's canonical terms.
//!
//! Documented endpoints used (docs.cdp.coinbase.com, Coinbase App API v2):
//! - `GET /v2/accounts` (cursor pagination: `limit` ≤ 100, follow `pagination.next_uri` until empty)
//! - `GET /v2/prices/:currency_pair/spot` (USD spot price per asset; no authentication required)
//! - `GET|POST /v2/accounts/:account_id/addresses` (list / create receive addresses; each names its `network`)
//! - `POST /v2/accounts/:account_id/transactions` (`type: send`, `to`, `amount` string, `currency`, `network`,
//!   `idem`; OAuth sends answer `402 two_factor_required` until replayed with `CB-2FA-TOKEN`)
//! - `GET /v2/accounts/:account_id/transactions[/:transaction_id]` (status, `network.hash`, fees)
//!
//! Every call carries `Authorization: Bearer` and a fixed `CB-VERSION`. Errors are Coinbase's
//! `{"errors":[{"id","message"}]}` bodies, classified by `id` first and HTTP status second.
//!
//! Transfer ids we hand out are `<account_id>/<transaction_id>`: Coinbase addresses a transaction only under
//! its account, and carrying the account in the id saves a search over every account on each status poll.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

use super::{
    Account, AccountApi, ApiError, AssetNetwork, Balance, Call, Credential, DepositAddress, Holding, QuoteRequest,
    Refusal, SendOutcome, SendRequest, Transfer, TransferQuote, TransferStatus,
};
use crate::http::{self, FetchError, RawResponse, sanitize};
use crate::networks;

/// The API version we were written against (Coinbase asks for a fixed `YYYY-MM-DD` implementation date, never
/// today's date; this is the version of its versioning page's example).
pub const CB_VERSION: &str = "2022-01-06";
/// Largest page Coinbase serves (`limit` may be up to 100).
const PAGE_LIMIT: u32 = 100;
/// Pages followed for one list before we give up (100 × 100 items is far beyond any real user).
const MAX_PAGES: usize = 100;
/// Pages read over all accounts for one history.
const MAX_HISTORY_PAGES: usize = 300;
/// Pages of addresses read for one account.
const MAX_ADDRESS_PAGES: usize = 10;
/// Distinct assets priced for one holdings call (spot prices are one request each).
const MAX_PRICED_SYMBOLS: usize = 50;
/// Accounts whose addresses `assets` reads.
const MAX_ASSET_ACCOUNTS: usize = 50;
/// Spot prices are reused for 30 seconds per API origin and asset.
const PRICE_TTL: Duration = Duration::from_secs(30);
/// The networks an account's addresses show are reused for 10 minutes per origin and credential.
const ASSETS_TTL: Duration = Duration::from_secs(600);
/// Entries a cache holds before expired ones are swept.
const CACHE_SWEEP_AT: usize = 1024;

/// Canonical network name ↔ Coinbase's network name (Coinbase's `network` argument and response field).
const NETWORK_NAMES: &[(&str, &str)] =
    &[("ethereum", "ethereum"), ("polygon", "polygon"), ("solana", "solana"), ("base", "base"), ("bitcoin", "bitcoin")];

fn coinbase_network(canonical: &str) -> Option<&'static str> {
    NETWORK_NAMES.iter().find(|(c, _)| *c == canonical).map(|(_, cb)| *cb)
}

/// Coinbase's name in canonical terms; an unknown name is kept (lower-cased) so it still says something.
fn canonical_network(coinbase: &str) -> String {
    let lower = coinbase.to_ascii_lowercase();
    NETWORK_NAMES.iter().find(|(_, cb)| *cb == lower).map_or(lower, |(c, _)| (*c).to_owned())
}

/// Fiat currencies Coinbase accounts are held in, for accounts that state neither `type: fiat` nor a currency
/// `type`.
const FIAT: &[&str] = &["USD", "EUR", "GBP", "CAD", "AUD", "CHF", "JPY", "SGD"];

/// (API origin, symbol) → (fetched at, USD spot price or none for an unpriced asset).
type PriceCache = HashMap<(String, String), (Instant, Option<f64>)>;
/// (API origin, SHA-256 of the token) → (fetched at, assets).
type AssetsCache = HashMap<(String, Vec<u8>), (Instant, Vec<AssetNetwork>)>;

#[derive(Debug, Default)]
pub struct CoinbaseV2 {
    /// (API origin, symbol) → (fetched at, USD spot price or none for an unpriced asset); see [`PRICE_TTL`].
    prices: Mutex<PriceCache>,
    /// (API origin, SHA-256 of the token) → (fetched at, assets); see [`ASSETS_TTL`].
    assets: Mutex<AssetsCache>,
}

// ---- wire types (only the fields we use; Coinbase adds fields over time) ----

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Debug, Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Debug, Deserialize)]
struct Pagination {
    #[serde(default)]
    next_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Money {
    amount: String,
    currency: String,
}

/// `currency` is a code string in older answers and an object in newer ones.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WireCurrency {
    Code(String),
    Object {
        code: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
struct WireAccount {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    primary: Option<bool>,
    currency: WireCurrency,
    balance: Money,
    #[serde(default)]
    native_balance: Option<Money>,
}

/// An account with its amounts parsed.
#[derive(Debug, Clone)]
struct CbAccount {
    id: String,
    name: String,
    code: String,
    currency_name: Option<String>,
    fiat: bool,
    wallet: bool,
    primary: bool,
    balance: f64,
    native_usd: Option<f64>,
}

impl CbAccount {
    fn parse(wire: WireAccount) -> Result<Self, ApiError> {
        let (code, currency_name, currency_kind) = match wire.currency {
            WireCurrency::Code(code) => (code, None, None),
            WireCurrency::Object { code, name, kind } => (code, name, kind),
        };
        let code = code.trim().to_ascii_uppercase();
        if code.is_empty() {
            return Err(ApiError::Protocol(format!("account {} has an empty currency code", sanitize(&wire.id))));
        }
        let balance = decimal(&wire.balance.amount, "balance.amount")?;
        if !wire.balance.currency.eq_ignore_ascii_case(&code) {
            return Err(ApiError::Protocol(format!(
                "account {} is in {} but its balance is in {}",
                sanitize(&wire.id),
                sanitize(&code),
                sanitize(&wire.balance.currency)
            )));
        }
        let native_usd = match wire.native_balance {
            Some(native) if native.currency.eq_ignore_ascii_case("USD") => {
                Some(decimal(&native.amount, "native_balance.amount")?)
            }
            _ => None,
        };
        let fiat = match (wire.kind.as_deref(), currency_kind.as_deref()) {
            (Some("fiat"), _) | (_, Some("fiat")) => true,
            (Some(_), _) | (_, Some(_)) => false,
            (None, None) => FIAT.contains(&code.as_str()),
        };
        Ok(Self {
            name: wire.name.unwrap_or_else(|| format!("{code} Wallet")),
            wallet: wire.kind.as_deref().is_none_or(|k| k == "wallet"),
            primary: wire.primary.unwrap_or(false),
            id: wire.id,
            code,
            currency_name,
            fiat,
            balance,
            native_usd,
        })
    }
}

#[derive(Debug, Deserialize)]
struct WireAddress {
    address: String,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    destination_tag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireSpot {
    amount: String,
}

#[derive(Debug, Deserialize)]
struct WireNetwork {
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    transaction_url: Option<String>,
    #[serde(default)]
    network_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    transaction_fee: Option<Money>,
    #[serde(default)]
    transaction_amount: Option<Money>,
}

#[derive(Debug, Deserialize)]
struct WireParty {
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireTransaction {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    status: String,
    amount: Money,
    created_at: String,
    #[serde(default)]
    network: Option<WireNetwork>,
    #[serde(default)]
    to: Option<WireParty>,
    #[serde(default)]
    from: Option<WireParty>,
}

// ---- parsing helpers ----

/// Coinbase amounts are decimal strings: an optional minus, digits, an optional fraction. Nothing else (no
/// exponent, no spaces, no `NaN`).
fn decimal(text: &str, field: &str) -> Result<f64, ApiError> {
    let bad = || ApiError::Protocol(format!("{field} is not a decimal amount: {:?}", sanitize(text)));
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if text.len() > 64 || whole.is_empty() || !digits(whole) || !digits(fraction) || unsigned.ends_with('.') {
        return Err(bad());
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(bad)
}

/// An amount as Coinbase takes it: a plain decimal string (Rust's `Display` for `f64` never uses an exponent).
fn amount_text(amount: f64) -> Result<String, ApiError> {
    if !amount.is_finite() || amount <= 0.0 {
        return Err(ApiError::Refused {
            reason: Refusal::Other("invalid_amount".to_owned()),
            message: "the amount must be a positive number".to_owned(),
        });
    }
    Ok(format!("{amount}"))
}

/// Ids we put into a path: Coinbase's are UUIDs; allow the characters ids are made of, nothing path-like.
fn path_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn symbol_ok(symbol: &str) -> bool {
    (1..=16).contains(&symbol.len()) && symbol.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn timestamp(text: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| ApiError::Protocol(format!("created_at is not an RFC 3339 time: {:?}", sanitize(text))))
}

/// `pagination.next_uri` must continue the same list on the same origin: a relative path starting with the
/// list's own path and a query. Anything else (absolute URL, `//host`, another path) is refused.
fn next_page(next_uri: Option<&str>, list_path: &str) -> Result<Option<String>, ApiError> {
    let Some(next) = next_uri.map(str::trim).filter(|n| !n.is_empty()) else { return Ok(None) };
    let continues = next.strip_prefix(list_path).is_some_and(|rest| rest.starts_with('?'));
    let clean =
        next.len() <= 2048 && !next.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\' || c == '#');
    if !continues || !clean {
        return Err(ApiError::Protocol(format!(
            "pagination.next_uri {:?} does not continue {list_path} on the same origin; refusing to follow it",
            sanitize(next)
        )));
    }
    Ok(Some(next.to_owned()))
}

fn transfer_status(status: &str) -> TransferStatus {
    match status {
        "completed" => TransferStatus::Succeeded,
        "failed" | "expired" | "canceled" | "cancelled" => TransferStatus::Failed,
        // pending, waiting_for_signature, waiting_for_clearing, and statuses Coinbase adds later: not final.
        _ => TransferStatus::Pending,
    }
}

/// The hash from `network.hash`, else the last path segment of `network.transaction_url` when it looks like one.
fn transaction_hash(network: &WireNetwork) -> Option<String> {
    if let Some(hash) = network.hash.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
        return Some(hash.to_owned());
    }
    let url = Url::parse(network.transaction_url.as_deref()?).ok()?;
    let last = url.path_segments()?.rev().find(|s| !s.is_empty())?;
    (last.len() >= 32 && last.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| last.to_owned())
}

fn to_transfer(account_id: &str, wire: WireTransaction) -> Result<Transfer, ApiError> {
    let signed = decimal(&wire.amount.amount, "amount.amount")?;
    let symbol = wire.amount.currency.to_ascii_uppercase();
    let network = wire.network.as_ref();
    let arrived = match network.and_then(|n| n.transaction_amount.as_ref()) {
        Some(m) => decimal(&m.amount, "network.transaction_amount.amount")?.abs(),
        None => signed.abs(),
    };
    let (fee, fee_currency) = match network.and_then(|n| n.transaction_fee.as_ref()) {
        Some(m) => (Some(decimal(&m.amount, "network.transaction_fee.amount")?), Some(m.currency.to_ascii_uppercase())),
        None => (None, None),
    };
    let incoming = signed > 0.0 || wire.kind == "receive";
    let party = |p: &Option<WireParty>| p.as_ref().and_then(|p| p.address.clone().or_else(|| p.email.clone()));
    let address = if incoming { party(&wire.from).or_else(|| party(&wire.to)) } else { party(&wire.to) };
    Ok(Transfer {
        id: format!("{account_id}/{}", wire.id),
        symbol,
        amount: arrived,
        address: address.unwrap_or_default(),
        network: network.and_then(|n| n.network_name.as_deref().or(n.name.as_deref())).map(canonical_network),
        status: transfer_status(&wire.status),
        status_details: sanitize(&wire.status),
        created_at: timestamp(&wire.created_at)?,
        fee,
        fee_currency,
        from_address: None,
        hash: network.and_then(transaction_hash),
        incoming,
    })
}

// ---- errors ----

#[derive(Debug, Default)]
struct WireError {
    id: String,
    message: Option<String>,
    field: Option<String>,
}

/// The first error of a Coinbase error body (`errors[0]`), or an OAuth-style `error` field.
fn wire_error(response: &RawResponse) -> Option<WireError> {
    let body = response.json_object().ok()?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(sanitize);
    if let Some(first) = body.get("errors").and_then(Value::as_array).and_then(|e| e.first()) {
        return Some(WireError {
            id: text(first, "id").unwrap_or_default(),
            message: text(first, "message"),
            field: text(first, "field"),
        });
    }
    let body = Value::Object(body);
    let id = text(&body, "error")?;
    Some(WireError { id, message: text(&body, "error_description").or_else(|| text(&body, "message")), field: None })
}

/// What a `validation_error` (or `param_required`) on a send means for the end user.
fn refusal_of(error: &WireError) -> Option<Refusal> {
    let message = error.message.as_deref().unwrap_or_default().to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| message.contains(w));
    let by_message = if has(&["don't have that much", "insufficient", "exceeds your balance", "not enough funds"]) {
        Some(Refusal::InsufficientFunds)
    } else if has(&["minimum", "too small"]) {
        Some(Refusal::BelowMinimum)
    } else if has(&["idem"]) {
        Some(Refusal::IdempotencyConflict)
    } else {
        None
    };
    by_message.or(match error.field.as_deref() {
        Some("to") => Some(Refusal::InvalidAddress),
        Some("network") if has(&["cannot be sent", "not supported for"]) => Some(Refusal::UnsupportedAsset),
        Some("network") => Some(Refusal::UnsupportedNetwork),
        Some("currency") => Some(Refusal::UnsupportedAsset),
        Some("idem") => Some(Refusal::IdempotencyConflict),
        _ if has(&["address"]) => Some(Refusal::InvalidAddress),
        _ if has(&["network"]) => Some(Refusal::UnsupportedNetwork),
        _ => None,
    })
}

fn classify(response: &RawResponse) -> ApiError {
    let status = response.status;
    let error = wire_error(response).unwrap_or_default();
    let message = error.message.clone();
    let rejected =
        |id: &str| ApiError::Rejected { status: status.as_u16(), error: id.to_owned(), message: message.clone() };
    if status == StatusCode::TOO_MANY_REQUESTS || error.id == "rate_limit_exceeded" || status.is_server_error() {
        let reason = if error.id.is_empty() { format!("HTTP {}", status.as_u16()) } else { error.id.clone() };
        return ApiError::Transient { retry_after: response.retry_after(), reason };
    }
    match error.id.as_str() {
        "expired_token" => return ApiError::Unauthorized,
        "revoked_token" | "invalid_token" => return ApiError::Revoked(error.id),
        "invalid_scope" => return ApiError::InsufficientScope,
        "not_found" => return ApiError::NotFound(message.unwrap_or_else(|| "not found".to_owned())),
        "validation_error" | "param_required" | "invalid_request" if status.is_client_error() => {
            if let Some(reason) = refusal_of(&error) {
                let message = message.unwrap_or_else(|| error.id.clone());
                return ApiError::Refused { reason, message };
            }
        }
        _ => {}
    }
    match status {
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
        StatusCode::FORBIDDEN => ApiError::InsufficientScope,
        StatusCode::NOT_FOUND => ApiError::NotFound(message.unwrap_or_else(|| "not found".to_owned())),
        _ if error.id.is_empty() => rejected(&format!("HTTP {}", status.as_u16())),
        _ => rejected(&error.id),
    }
}

fn parse<T: DeserializeOwned>(response: &RawResponse) -> Result<T, ApiError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        ApiError::Protocol(format!(
            "HTTP {} with a body that is not the expected Coinbase JSON (content-type {}): {}",
            response.status.as_u16(),
            response.content_type(),
            sanitize(&e.to_string())
        ))
    })
}

fn token<'a>(call: &Call<'a>) -> Result<&'a SecretString, ApiError> {
    match call.credential {
        Credential::Bearer(token) => Ok(token),
        Credential::ApiKey { .. } => {
            Err(ApiError::Config("the Coinbase App API v2 adapter takes an OAuth access token, not an API key".into()))
        }
    }
}

// ---- calls ----

impl CoinbaseV2 {
    /// One request; the answer whatever its status (callers that special-case a status look first).
    async fn fetch(
        &self,
        call: Call<'_>,
        method: Method,
        path: &str,
        body: Option<&Value>,
        two_factor: Option<&str>,
    ) -> Result<RawResponse, ApiError> {
        let url = call.url(path)?;
        if url.origin() != call.base.origin() {
            return Err(ApiError::Protocol("a Coinbase path left the API origin; refusing to call it".to_owned()));
        }
        let mut request = call
            .http
            .client
            .request(method, url)
            .bearer_auth(token(&call)?.expose_secret())
            .header("CB-VERSION", CB_VERSION)
            .header(ACCEPT, "application/json");
        if let Some(code) = two_factor {
            let value = HeaderValue::from_str(code).map_err(|_| ApiError::Refused {
                reason: Refusal::InvalidMfaCode,
                message: "the two-step verification code has characters a code cannot have".to_owned(),
            })?;
            request = request.header("CB-2FA-TOKEN", value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        http::send(&call.http.limits, request).await.map_err(|e| match e {
            FetchError::TooLarge { .. } => ApiError::Protocol(e.describe()),
            FetchError::TimedOut | FetchError::Connection(_) => {
                ApiError::Transient { retry_after: None, reason: e.describe() }
            }
        })
    }

    async fn get<T: DeserializeOwned>(&self, call: Call<'_>, path: &str) -> Result<T, ApiError> {
        let response = self.fetch(call, Method::GET, path, None, None).await?;
        if !response.status.is_success() {
            return Err(classify(&response));
        }
        parse(&response)
    }

    /// Every item of a paginated list at `list_path`, following `next_uri` within `max_pages` (and `budget`, the
    /// pages left for a larger operation).
    async fn list<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        list_path: &str,
        max_pages: usize,
        budget: &mut usize,
    ) -> Result<Vec<T>, ApiError> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some(format!("{list_path}?limit={PAGE_LIMIT}"));
        let mut pages = 0;
        while let Some(path) = next.take() {
            if pages >= max_pages || *budget == 0 {
                return Err(ApiError::Protocol(format!(
                    "{list_path} has more than {pages} pages; stopped there (page limit)"
                )));
            }
            if !seen.insert(path.clone()) {
                return Err(ApiError::Protocol(format!("{list_path} pagination repeats a page; stopped")));
            }
            pages += 1;
            *budget -= 1;
            let page: Page<T> = self.get(call, &path).await?;
            items.extend(page.data);
            next = next_page(page.pagination.as_ref().and_then(|p| p.next_uri.as_deref()), list_path)?;
        }
        Ok(items)
    }

    async fn all_accounts(&self, call: Call<'_>) -> Result<Vec<CbAccount>, ApiError> {
        let mut budget = MAX_PAGES;
        let wire: Vec<WireAccount> = self.list(call, "/v2/accounts", MAX_PAGES, &mut budget).await?;
        wire.into_iter().map(CbAccount::parse).collect()
    }

    /// The account that holds `symbol`: a wallet before a vault, the primary one, then the largest balance.
    async fn account_for(&self, call: Call<'_>, symbol: &str) -> Result<CbAccount, ApiError> {
        let symbol = symbol.to_ascii_uppercase();
        let mut candidates: Vec<CbAccount> =
            self.all_accounts(call).await?.into_iter().filter(|a| !a.fiat && a.code == symbol).collect();
        candidates.sort_by(|a, b| {
            b.wallet.cmp(&a.wallet).then(b.primary.cmp(&a.primary)).then(b.balance.total_cmp(&a.balance))
        });
        let account = candidates.into_iter().next().ok_or_else(|| {
            ApiError::NotFound(format!("the Coinbase connection has no {} account", sanitize(&symbol)))
        })?;
        if !path_id(&account.id) {
            return Err(ApiError::Protocol(format!("Coinbase account id {:?} is not usable", sanitize(&account.id))));
        }
        Ok(account)
    }

    /// USD spot price of `symbol`, cached for [`PRICE_TTL`]; `None` when Coinbase does not price it.
    async fn price(&self, call: Call<'_>, symbol: &str) -> Result<Option<f64>, ApiError> {
        if symbol == "USD" {
            return Ok(Some(1.0));
        }
        if !symbol_ok(symbol) {
            return Ok(None);
        }
        let key = (call.base.as_str().to_owned(), symbol.to_owned());
        if let Some((at, price)) = self.prices.lock().unwrap_or_else(PoisonError::into_inner).get(&key)
            && at.elapsed() < PRICE_TTL
        {
            return Ok(*price);
        }
        let price = match self.get::<Envelope<WireSpot>>(call, &format!("/v2/prices/{symbol}-USD/spot")).await {
            Ok(spot) => Some(decimal(&spot.data.amount, "spot amount")?).filter(|p| *p > 0.0),
            Err(ApiError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let mut cache = self.prices.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_SWEEP_AT {
            cache.retain(|_, (at, _)| at.elapsed() < PRICE_TTL);
        }
        cache.insert(key, (Instant::now(), price));
        Ok(price)
    }

    async fn addresses(&self, call: Call<'_>, account_id: &str) -> Result<Vec<WireAddress>, ApiError> {
        let mut budget = MAX_ADDRESS_PAGES;
        self.list(call, &format!("/v2/accounts/{account_id}/addresses"), MAX_ADDRESS_PAGES, &mut budget).await
    }
}

fn credential_key(call: &Call<'_>) -> Result<(String, Vec<u8>), ApiError> {
    let digest = ring::digest::digest(&ring::digest::SHA256, token(call)?.expose_secret().as_bytes());
    Ok((call.base.as_str().to_owned(), digest.as_ref().to_vec()))
}

#[async_trait]
impl AccountApi for CoinbaseV2 {
    async fn accounts(&self, call: Call<'_>) -> Result<Vec<Account>, ApiError> {
        Ok(self
            .all_accounts(call)
            .await?
            .into_iter()
            .map(|a| {
                let usd_cash = a.fiat && a.code == "USD";
                Account {
                    value_usd: if usd_cash { Some(a.balance) } else { a.native_usd },
                    cash_usd: if usd_cash {
                        Some(a.balance)
                    } else if a.fiat {
                        a.native_usd
                    } else {
                        Some(0.0)
                    },
                    currency: Some(a.code),
                    id: a.id,
                    name: a.name,
                }
            })
            .collect())
    }

    async fn holdings(&self, call: Call<'_>) -> Result<Vec<Holding>, ApiError> {
        // One position per asset: a wallet and a vault in the same currency add up.
        let mut positions: Vec<(CbAccount, Option<f64>)> = Vec::new();
        for account in self.all_accounts(call).await?.into_iter().filter(|a| !a.fiat && a.balance > 0.0) {
            match positions.iter_mut().find(|(p, _)| p.code == account.code) {
                Some((position, native)) => {
                    position.balance += account.balance;
                    *native = native.zip(account.native_usd).map(|(a, b)| a + b);
                }
                None => {
                    let native = account.native_usd;
                    positions.push((account, native));
                }
            }
        }
        let mut holdings = Vec::with_capacity(positions.len());
        for (index, (position, native_usd)) in positions.into_iter().enumerate() {
            let price = if index < MAX_PRICED_SYMBOLS { self.price(call, &position.code).await? } else { None };
            holdings.push(Holding {
                name: position.currency_name.clone().unwrap_or_else(|| position.code.clone()),
                amount: position.balance,
                price_usd: price,
                value_usd: native_usd.or(price.map(|p| p * position.balance)),
                // Coinbase v2 accounts do not report what a position cost.
                cost_basis_usd: None,
                symbol: position.code,
            });
        }
        Ok(holdings)
    }

    async fn balances(&self, call: Call<'_>) -> Result<Vec<Balance>, ApiError> {
        let mut balances: Vec<Balance> = Vec::new();
        for account in self.all_accounts(call).await?.into_iter().filter(|a| a.fiat) {
            match balances.iter_mut().find(|b| b.currency == account.code) {
                Some(b) => {
                    b.cash += account.balance;
                    b.buying_power += account.balance;
                }
                None => balances.push(Balance {
                    currency: account.code,
                    cash: account.balance,
                    buying_power: account.balance,
                }),
            }
        }
        Ok(balances)
    }

    async fn deposit_address(&self, call: Call<'_>, symbol: &str, network: &str) -> Result<DepositAddress, ApiError> {
        let wanted = coinbase_network(network).ok_or_else(|| ApiError::Refused {
            reason: Refusal::UnsupportedNetwork,
            message: format!("linkvault does not know Coinbase's name for network {:?}", sanitize(network)),
        })?;
        let account = self.account_for(call, symbol).await?;
        let answer = |address: WireAddress| DepositAddress {
            symbol: account.code.clone(),
            network: network.to_owned(),
            address: address.address,
            tag: address.destination_tag.filter(|t| !t.is_empty()),
        };
        let on_network = |a: &WireAddress| {
            !a.address.is_empty() && a.network.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(wanted))
        };
        if let Some(found) = self.addresses(call, &account.id).await?.into_iter().find(on_network) {
            return Ok(answer(found));
        }
        // Coinbase's create takes no network: the new address is on the asset's default network.
        let path = format!("/v2/accounts/{}/addresses", account.id);
        let response = self.fetch(call, Method::POST, &path, Some(&json!({})), None).await?;
        if !response.status.is_success() {
            return Err(classify(&response));
        }
        let created: Envelope<WireAddress> = parse(&response)?;
        if on_network(&created.data) {
            return Ok(answer(created.data));
        }
        Err(ApiError::Refused {
            reason: Refusal::UnsupportedNetwork,
            message: format!(
                "Coinbase has no {} address on {network} for this account (it made one on {})",
                account.code,
                sanitize(created.data.network.as_deref().unwrap_or("an unnamed network"))
            ),
        })
    }

    /// Coinbase App v2 publishes neither the networks an asset is sent over nor withdrawal fees or minimums
    /// (there is no fee-estimate endpoint: the fee is taken at send time and reported in the transaction's
    /// `network.transaction_fee`). What it does show is the network of each receive address, so an asset is
    /// listed on each network the account has an address on, with fee and minimum unknown (`None`).
    async fn assets(&self, call: Call<'_>) -> Result<Vec<AssetNetwork>, ApiError> {
        let key = credential_key(&call)?;
        if let Some((at, assets)) = self.assets.lock().unwrap_or_else(PoisonError::into_inner).get(&key)
            && at.elapsed() < ASSETS_TTL
        {
            return Ok(assets.clone());
        }
        let mut seen_symbols = HashSet::new();
        let crypto: Vec<CbAccount> = self
            .all_accounts(call)
            .await?
            .into_iter()
            .filter(|a| !a.fiat && a.wallet && path_id(&a.id) && seen_symbols.insert(a.code.clone()))
            .take(MAX_ASSET_ACCOUNTS)
            .collect();
        let mut assets = Vec::new();
        for account in crypto {
            let mut networks = HashSet::new();
            for address in self.addresses(call, &account.id).await? {
                let Some(network) = address.network.as_deref() else { continue };
                let canonical = canonical_network(network);
                if coinbase_network(&canonical).is_some() && networks.insert(canonical.clone()) {
                    assets.push(AssetNetwork {
                        symbol: account.code.clone(),
                        name: account.currency_name.clone().unwrap_or_else(|| account.code.clone()),
                        network: canonical,
                        withdraw_fee: None,
                        withdraw_min: None,
                        withdraw_enabled: true,
                        deposit_enabled: true,
                    });
                }
            }
        }
        let mut cache = self.assets.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_SWEEP_AT {
            cache.retain(|_, (at, _)| at.elapsed() < ASSETS_TTL);
        }
        cache.insert(key, (Instant::now(), assets.clone()));
        Ok(assets)
    }

    /// Coinbase App v2 has no quote or send-preview endpoint, so this is our own check from what it reports.
    /// Checked: linkvault can name the network to Coinbase; the address has the network's shape (for the
    /// networks in [`networks::NETWORKS`]); the amount is positive; the account holding the symbol exists and
    /// its balance covers the amount; Coinbase prices the asset in USD (spot). Not checked, because v2 does not
    /// say before the send: the network fee (reported as 0 here; Coinbase takes it from the balance and states
    /// it in the transaction's `network.transaction_fee`), minimums, whether Coinbase sends this asset on this
    /// network, travel-rule requirements, and the two-step verification the send will ask for. The send itself
    /// can still be refused for any of these.
    async fn quote(&self, call: Call<'_>, request: &QuoteRequest) -> Result<TransferQuote, ApiError> {
        if coinbase_network(&request.network).is_none() {
            return Err(ApiError::Refused {
                reason: Refusal::UnsupportedNetwork,
                message: format!(
                    "linkvault does not know Coinbase's name for network {:?}",
                    sanitize(&request.network)
                ),
            });
        }
        if let Some(known) = networks::NETWORKS.iter().find(|n| n.api_name == request.network)
            && !known.address.accepts(&request.address)
        {
            return Err(ApiError::Refused {
                reason: Refusal::InvalidAddress,
                message: format!("a {} address is {}", known.name, known.address.describe()),
            });
        }
        let account = self.account_for(call, &request.symbol).await?;
        let price_usd = self.price(call, &account.code).await?.ok_or_else(|| ApiError::Refused {
            reason: Refusal::UnsupportedAsset,
            message: format!("Coinbase publishes no USD price for {}", account.code),
        })?;
        let amount = match (request.amount, request.amount_usd) {
            (Some(amount), _) => amount,
            (None, Some(usd)) => usd / price_usd,
            (None, None) => {
                return Err(ApiError::Refused {
                    reason: Refusal::Other("invalid_amount".to_owned()),
                    message: "give an amount or an amountUsd".to_owned(),
                });
            }
        };
        amount_text(amount)?;
        if amount > account.balance {
            return Err(ApiError::Refused {
                reason: Refusal::InsufficientFunds,
                message: format!("the {} account holds {} {}", account.code, account.balance, account.code),
            });
        }
        Ok(TransferQuote {
            symbol: account.code.clone(),
            network: request.network.clone(),
            address: request.address.clone(),
            amount,
            fee: 0.0,
            fee_currency: account.code.clone(),
            price_usd,
            available: account.balance,
            from_address: None,
            quote_id: None,
            expires_at: None,
        })
    }

    async fn send(&self, call: Call<'_>, request: &SendRequest) -> Result<SendOutcome, ApiError> {
        let network = coinbase_network(&request.network).ok_or_else(|| ApiError::Refused {
            reason: Refusal::UnsupportedNetwork,
            message: format!("linkvault does not know Coinbase's name for network {:?}", sanitize(&request.network)),
        })?;
        let amount = amount_text(request.amount)?;
        let account = self.account_for(call, &request.symbol).await?;
        let mut body = json!({
            "type": "send",
            "to": request.address,
            "amount": amount,
            "currency": account.code,
            "network": network,
            "idem": request.idem,
        });
        if let (Some(tag), Some(map)) = (&request.tag, body.as_object_mut()) {
            map.insert("destination_tag".to_owned(), json!(tag));
        }
        let code = request.mfa_code.as_ref().map(|c| c.expose_secret().trim().to_owned());
        let path = format!("/v2/accounts/{}/transactions", account.id);
        let response = self.fetch(call, Method::POST, &path, Some(&body), code.as_deref()).await?;
        if !response.status.is_success() {
            let wire = wire_error(&response).unwrap_or_default();
            // Documented as 402 (the error table says 400): recognise it by its id.
            if wire.id == "two_factor_required" && response.status.is_client_error() {
                return match code {
                    None => Ok(SendOutcome::MfaRequired { mfa_type: "totp".to_owned() }),
                    Some(_) => Err(ApiError::Refused {
                        reason: Refusal::InvalidMfaCode,
                        message: wire
                            .message
                            .unwrap_or_else(|| "the two-step verification code was not accepted".into()),
                    }),
                };
            }
            return Err(classify(&response));
        }
        let created: Envelope<WireTransaction> = parse(&response)?;
        Ok(SendOutcome::Sent(to_transfer(&account.id, created.data)?))
    }

    async fn transfer(&self, call: Call<'_>, id: &str) -> Result<Transfer, ApiError> {
        let (account_id, transaction_id) =
            id.split_once('/').filter(|(a, t)| path_id(a) && path_id(t)).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "{:?} is not a Coinbase transfer id (<account>/<transaction>)",
                    sanitize(id)
                ))
            })?;
        let path = format!("/v2/accounts/{account_id}/transactions/{transaction_id}");
        let wire: Envelope<WireTransaction> = self.get(call, &path).await?;
        to_transfer(account_id, wire.data)
    }

    /// Sends and receives of every crypto account (buys, sells, trades and fiat movements are not transfers),
    /// newest first.
    async fn history(&self, call: Call<'_>) -> Result<Vec<Transfer>, ApiError> {
        let mut budget = MAX_HISTORY_PAGES;
        let mut transfers = Vec::new();
        for account in self.all_accounts(call).await?.into_iter().filter(|a| !a.fiat && path_id(&a.id)) {
            let path = format!("/v2/accounts/{}/transactions", account.id);
            let wire: Vec<WireTransaction> = self.list(call, &path, MAX_PAGES, &mut budget).await?;
            for transaction in wire.into_iter().filter(|t| t.kind == "send" || t.kind == "receive") {
                transfers.push(to_transfer(&account.id, transaction)?);
            }
        }
        transfers.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        Ok(transfers)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    #[test]
    fn decimals_are_strict() {
        assert_eq!(decimal("39.59000000", "x").unwrap(), 39.59);
        assert_eq!(decimal("-0.1", "x").unwrap(), -0.1);
        assert_eq!(decimal("7", "x").unwrap(), 7.0);
        for bad in ["", "-", "1e3", "1.", ".5", " 1", "+1", "1,5", "NaN", "inf", "0x10", "--1"] {
            assert!(decimal(bad, "x").is_err(), "{bad:?}");
        }
        assert_eq!(amount_text(0.0000001).unwrap(), "0.0000001");
        assert_eq!(amount_text(1.5).unwrap(), "1.5");
        assert!(amount_text(f64::NAN).is_err() && amount_text(-1.0).is_err());
    }

    #[test]
    fn next_uri_must_continue_the_same_list() {
        let ok = next_page(Some("/v2/accounts?&limit=25&starting_after=5d5a"), "/v2/accounts").unwrap();
        assert_eq!(ok.as_deref(), Some("/v2/accounts?&limit=25&starting_after=5d5a"));
        assert_eq!(next_page(None, "/v2/accounts").unwrap(), None);
        assert_eq!(next_page(Some(""), "/v2/accounts").unwrap(), None);
        for bad in [
            "https://evil.example/v2/accounts?x=1",
            "//evil.example/v2/accounts?x=1",
            "/v2/accountsX?x=1",
            "/v2/users?x=1",
            "/v2/accounts/../users?x=1",
            "/v2/accounts?x=1#frag",
            "/v2/accounts?x=\\evil",
        ] {
            assert!(next_page(Some(bad), "/v2/accounts").is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_and_hashes() {
        assert_eq!(transfer_status("completed"), TransferStatus::Succeeded);
        for failed in ["failed", "expired", "canceled"] {
            assert_eq!(transfer_status(failed), TransferStatus::Failed);
        }
        for pending in ["pending", "waiting_for_clearing", "waiting_for_signature", "something_new"] {
            assert_eq!(transfer_status(pending), TransferStatus::Pending);
        }
        let network = WireNetwork {
            hash: None,
            transaction_url: Some(format!("https://etherscan.io/tx/0x{}", "ab".repeat(32))),
            network_name: None,
            name: None,
            transaction_fee: None,
            transaction_amount: None,
        };
        assert_eq!(transaction_hash(&network), Some(format!("0x{}", "ab".repeat(32))));
    }

    #[test]
    fn validation_errors_become_refusals() {
        let e = |field: Option<&str>, message: &str| WireError {
            id: "validation_error".into(),
            message: Some(message.into()),
            field: field.map(Into::into),
        };
        assert_eq!(refusal_of(&e(Some("amount"), "You don't have that much.")), Some(Refusal::InsufficientFunds));
        assert_eq!(
            refusal_of(&e(Some("to"), "Please enter a valid email or bitcoin address")),
            Some(Refusal::InvalidAddress)
        );
        assert_eq!(refusal_of(&e(None, "Amount is below the minimum")), Some(Refusal::BelowMinimum));
        assert_eq!(refusal_of(&e(Some("network"), "Network tron is not supported")), Some(Refusal::UnsupportedNetwork));
        assert_eq!(refusal_of(&e(None, "Something else")), None);
    }
}
