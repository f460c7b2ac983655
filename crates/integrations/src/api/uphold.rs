//! Uphold REST API (v0) adapter: the user's cards as accounts, crypto cards as holdings priced from Uphold's
//! ticker, fiat cards as balances, card addresses as deposit addresses, and sends as Uphold's two-step
//! transactions (create = a quote that holds a rate for `params.ttl`, then commit), so a send commits exactly
//! the quote the end user saw, once.
//!
//! Documented endpoints used (Uphold API reference, <https://docs.uphold.com>, "Cards", "Transactions",
//! "Tickers", "Currencies", "Pagination", "Errors", "Rate Limits"):
//! - `GET /v0/me/cards` — the cards (`cards:read`); paginated with `Range: items=a-b` (at most 50 a page),
//!   answered with `Content-Range: items a-b/total`.
//! - `GET /v0/me/cards/:id/addresses` (`cards:read`), `POST /v0/me/cards/:id/addresses` `{network}`
//!   (`cards:write`) — a card's receive addresses per network (`tag` on tag networks).
//! - `GET /v0/ticker/USD` — rates against USD (`ask`, `bid`, `pair` such as `BTCUSD`), public.
//! - `GET /v0/assets` — supported assets (`code`, `name`, `status`, `type`), public and paginated.
//! - `POST /v0/me/cards/:card/transactions` `{denomination: {amount, currency}, destination, …}` — prepares a
//!   transaction (status `pending`, a quote good for `params.ttl` milliseconds); `?commit=true` creates and
//!   commits in one step.
//! - `POST /v0/me/cards/:card/transactions/:id/commit` — commits it (status `processing`); past the ttl, 404.
//!   A 401 with `OTP-Token: Required` asks for a one-time password in the `OTP-Token` header.
//! - `GET /v0/me/transactions` (paginated) and `GET /v0/me/transactions/:id` (`transactions:read`).
//!
//! Errors: 400 `{"code": "validation_failed", "errors": {field: …}}` (e.g. `sufficient_funds` under
//! `denomination.amount`), 401 `{"error": "invalid_token"}`, 403, 404, 409, 412/416 (a bad range), 429 with
//! `Retry-After` and `X-RateLimit-*`, 500/503. Uphold documents no separate answer for a revoked token (it is
//! an invalid token as well): every 401 is [`ApiError::Unauthorized`], and the refresh that follows tells a
//! revoked grant apart. Uphold documents no idempotency header and no withdrawal fee or minimum table: fees
//! are known from a quote only (`withdraw_fee` None), limits only from a refused transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderMap};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    Account, AccountApi, ApiError, AssetNetwork, Balance, Call, Credential, DepositAddress, Holding, QuoteRequest,
    Refusal, SendOutcome, SendRequest, Transfer, TransferQuote, TransferStatus,
};
use crate::http::{self, FetchError, RawResponse, sanitize};

/// Uphold's largest (and default) page.
const PAGE_SIZE: usize = 50;
/// Hard cap on pages followed in one listing (5,000 items).
const MAX_PAGES: usize = 100;
/// Ticker rates are reused for 30 seconds: holdings are read often, and a price that old is still a fair
/// valuation (sends are priced by Uphold's own quote, not by this cache).
const PRICE_TTL: Duration = Duration::from_secs(30);
/// The public asset list is reused for 10 minutes: it changes when Uphold lists or halts an asset.
const ASSET_TTL: Duration = Duration::from_secs(600);
/// How many recent transactions a send without a quote looks through for its own `reference` before it
/// creates one (Uphold has no idempotency header; the reference is the send's idempotency key).
const RECENT_FOR_REFERENCE: usize = PAGE_SIZE;

/// Canonical network names and Uphold's names for them (Uphold's card-address `network` / transaction
/// `network` values).
const NETWORKS: &[(&str, &str)] =
    &[("bitcoin", "bitcoin"), ("ethereum", "ethereum"), ("polygon", "polygon"), ("solana", "solana"), ("base", "base")];

/// Where an asset lives when Uphold's asset entry names no networks.
const NATIVE_NETWORKS: &[(&str, &str)] = &[
    ("BTC", "bitcoin"),
    ("ETH", "ethereum"),
    ("SOL", "solana"),
    ("USDC", "ethereum"),
    ("USDT", "ethereum"),
    ("PYUSD", "ethereum"),
    ("POL", "polygon"),
];

/// Card currencies that are money (ISO 4217), shown as balances rather than holdings.
const FIAT: &[&str] = &[
    "USD", "EUR", "GBP", "CAD", "AUD", "NZD", "CHF", "JPY", "CNY", "HKD", "SGD", "INR", "MXN", "BRL", "ARS", "AED",
    "DKK", "NOK", "SEK", "PLN", "CZK", "HUF", "ILS", "KES", "PHP", "ZAR", "TRY", "RON", "BGN",
];
/// Precious-metal cards: neither crypto holdings nor cash.
const METALS: &[&str] = &["XAU", "XAG", "XPT", "XPD"];

/// Asset types of `GET /v0/assets` that are sent over a blockchain.
const CRYPTO_TYPES: &[&str] = &["cryptocurrency", "stablecoin", "utility_token"];

type Cache<T> = Mutex<HashMap<String, (Instant, Arc<T>)>>;

#[derive(Debug, Default)]
pub struct UpholdV0 {
    /// USD price per symbol, per base URL (public data), for [`PRICE_TTL`].
    prices: Cache<HashMap<String, f64>>,
    /// The public asset list, per base URL, for [`ASSET_TTL`].
    assets: Cache<Vec<AssetWire>>,
}

fn to_uphold_network(canonical: &str) -> Option<&'static str> {
    NETWORKS.iter().find(|(c, _)| *c == canonical).map(|(_, u)| *u)
}

/// The Uphold currency code and network of a quote or send, refusing what Uphold cannot send through
/// linkvault (an unknown network, a destination tag).
fn uphold_route(symbol: &str, network: &str, tag: Option<&str>) -> Result<(String, &'static str), ApiError> {
    let uphold_network = to_uphold_network(network).ok_or_else(|| ApiError::Refused {
        reason: Refusal::UnsupportedNetwork,
        message: format!("Uphold does not send over {network:?} through linkvault"),
    })?;
    if tag.is_some() {
        return Err(ApiError::NotSupported("Uphold sends with a destination tag are not supported".to_owned()));
    }
    Ok((symbol.to_ascii_uppercase(), uphold_network))
}

fn to_canonical_network(uphold: &str) -> Option<&'static str> {
    NETWORKS.iter().find(|(_, u)| *u == uphold).map(|(c, _)| *c)
}

fn is_fiat(currency: &str) -> bool {
    FIAT.contains(&currency)
}

fn is_crypto(currency: &str) -> bool {
    !is_fiat(currency) && !METALS.contains(&currency)
}

// ---------------------------------------------------------------------------------------------------------
// Wire types (only the fields used; amounts are decimal strings, parsed strictly by `decimal`).

#[derive(Debug, Deserialize)]
struct CardWire {
    id: String,
    #[serde(default)]
    label: Option<String>,
    currency: String,
    balance: String,
    available: String,
    #[serde(default)]
    normalized: Vec<NormalizedWire>,
    #[serde(default)]
    address: Option<HashMap<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct NormalizedWire {
    balance: String,
    currency: String,
}

#[derive(Debug, Deserialize)]
struct AddressWire {
    #[serde(rename = "type")]
    network: String,
    #[serde(default)]
    formats: Vec<AddressFormatWire>,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AddressFormatWire {
    value: String,
}

#[derive(Debug, Deserialize)]
struct CreatedAddressWire {
    id: String,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TickerWire {
    ask: String,
    bid: String,
    currency: String,
    pair: String,
}

#[derive(Debug, Clone, Deserialize)]
struct AssetWire {
    code: String,
    name: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    /// Networks the asset moves on, where Uphold lists them (names or objects with a `network`/`name`).
    #[serde(default)]
    networks: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TxnWire {
    id: String,
    status: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    created_at: String,
    /// Not in the documented transaction object; read when present, else `createdAt + params.ttl`.
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    fees: Vec<FeeWire>,
    #[serde(default)]
    origin: Option<NodeWire>,
    #[serde(default)]
    destination: Option<NodeWire>,
    #[serde(default)]
    params: Option<ParamsWire>,
}

#[derive(Debug, Deserialize)]
struct NodeWire {
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    fee: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ParamsWire {
    /// How long the quote holds, in milliseconds.
    #[serde(default)]
    ttl: Option<u64>,
    /// The on-chain hash, where Uphold includes one (not in the documented object).
    #[serde(default)]
    txid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FeeWire {
    amount: String,
    currency: String,
}

/// A card, parsed.
#[derive(Debug, Clone)]
struct Card {
    id: String,
    label: String,
    currency: String,
    balance: f64,
    available: f64,
    /// The card's balance in USD, when Uphold normalizes to USD for this user.
    balance_usd: Option<f64>,
    /// Per Uphold network name, the card's primary address there.
    addresses: Vec<(String, String)>,
}

// ---------------------------------------------------------------------------------------------------------
// Strict parsing.

/// A decimal string as Uphold writes amounts (`"146.38"`, `"-0.5"`): digits, an optional fraction, nothing
/// else (no exponent, no spaces, no JSON number).
fn decimal(text: &str, what: &str) -> Result<f64, ApiError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let valid = text.len() <= 64
        && !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    let value = if valid { text.parse::<f64>().ok().filter(|v| v.is_finite()) } else { None };
    value.ok_or_else(|| ApiError::Protocol(format!("{what} is not a decimal amount: {:?}", sanitize(text))))
}

fn optional_decimal(text: Option<&String>, what: &str) -> Result<Option<f64>, ApiError> {
    text.map(|t| decimal(t, what)).transpose()
}

fn timestamp(text: &str, what: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| ApiError::Protocol(format!("{what} is not an RFC 3339 time: {:?}", sanitize(text))))
}

/// An amount as Uphold takes it: a decimal string, at most 8 decimals, no trailing zeros.
fn amount_string(amount: f64) -> String {
    let fixed = format!("{amount:.8}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() }
}

fn parse_json<T: DeserializeOwned>(response: &RawResponse, what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        ApiError::Protocol(format!(
            "{what}: HTTP {} with a body that is not the documented JSON (content-type {}): {}",
            response.status.as_u16(),
            response.content_type(),
            sanitize(&e.to_string())
        ))
    })
}

fn parse_card(wire: CardWire) -> Result<Card, ApiError> {
    let what = |field: &str| format!("card {} {field}", sanitize(&wire.id));
    let balance = decimal(&wire.balance, &what("balance"))?;
    let available = decimal(&wire.available, &what("available"))?;
    let balance_usd = match wire.normalized.iter().find(|n| n.currency == "USD") {
        Some(n) => Some(decimal(&n.balance, &what("normalized balance"))?),
        None if wire.currency == "USD" => Some(balance),
        None => None,
    };
    let addresses = wire
        .address
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(network, value)| value.as_str().map(|a| (network, a.to_owned())))
        .collect();
    let currency = wire.currency.to_ascii_uppercase();
    Ok(Card {
        label: wire.label.unwrap_or_else(|| format!("{currency} card")),
        id: wire.id,
        currency,
        balance,
        available,
        balance_usd,
        addresses,
    })
}

/// `Content-Range: items a-b/total` (or `items */total` for an empty or unsatisfiable range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    span: Option<(usize, usize)>,
    total: Option<usize>,
}

fn content_range(headers: &HeaderMap) -> Result<Option<ContentRange>, ApiError> {
    let Some(value) = headers.get("content-range") else { return Ok(None) };
    let bad = || ApiError::Protocol("the Content-Range header is not `items a-b/total`".to_owned());
    let text = value.to_str().map_err(|_| bad())?.trim();
    let rest = text.strip_prefix("items ").ok_or_else(bad)?;
    let (span, total) = rest.split_once('/').ok_or_else(bad)?;
    let total = if total == "*" { None } else { Some(total.parse::<usize>().map_err(|_| bad())?) };
    let span = if span == "*" {
        None
    } else {
        let (first, last) = span.split_once('-').ok_or_else(bad)?;
        let first = first.parse::<usize>().map_err(|_| bad())?;
        // Some servers write an empty page as `0--1`.
        if last == "-1" {
            None
        } else {
            let last = last.parse::<usize>().map_err(|_| bad())?;
            if last < first {
                return Err(bad());
            }
            Some((first, last))
        }
    };
    Ok(Some(ContentRange { span, total }))
}

// ---------------------------------------------------------------------------------------------------------
// Error classification.

/// The leaf `(path, code, message)` triples of a `validation_failed` body, depth-bounded.
fn validation_leaves(errors: &Value, path: &str, depth: usize, out: &mut Vec<(String, String, String)>) {
    if depth > 8 || out.len() > 32 {
        return;
    }
    match errors {
        Value::Object(map) => {
            if let Some(nested) = map.get("errors") {
                validation_leaves(nested, path, depth + 1, out);
                return;
            }
            if let Some(code) = map.get("code").and_then(Value::as_str) {
                let message = map.get("message").and_then(Value::as_str).unwrap_or_default();
                out.push((path.to_owned(), code.to_owned(), message.to_owned()));
                return;
            }
            for (key, value) in map {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                validation_leaves(value, &child, depth + 1, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                validation_leaves(item, path, depth + 1, out);
            }
        }
        _ => {}
    }
}

fn refusal_for(path: &str, code: &str) -> Refusal {
    let path = path.to_ascii_lowercase();
    match code {
        "sufficient_funds" | "insufficient_funds" => Refusal::InsufficientFunds,
        "greater_than_or_equal_to" | "greater_than" | "minimum" if path.ends_with("amount") => Refusal::BelowMinimum,
        _ if path.starts_with("destination") => Refusal::InvalidAddress,
        _ if path.contains("network") => Refusal::UnsupportedNetwork,
        _ if path.ends_with("currency") => Refusal::UnsupportedAsset,
        other => Refusal::Other(sanitize(other)),
    }
}

/// When the rate limit resets, from `X-RateLimit-Reset` (UTC epoch seconds), as a delay.
fn rate_limit_reset(response: &RawResponse) -> Option<Duration> {
    let reset = response.headers.get("x-ratelimit-reset")?.to_str().ok()?.trim().parse::<u64>().ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)).min(http::MAX_RETRY_AFTER))
}

fn classify(response: &RawResponse) -> ApiError {
    let status = response.status.as_u16();
    let body = response.json_object().ok();
    let text = |key: &str| body.as_ref().and_then(|b| b.get(key)).and_then(Value::as_str).map(sanitize);
    let code = text("code").or_else(|| text("error"));
    let message = text("message").or_else(|| text("error_description"));
    match status {
        429 | 500..=599 => ApiError::Transient {
            retry_after: response.retry_after().or_else(|| rate_limit_reset(response)),
            reason: format!("Uphold answered HTTP {status}{}", code.map(|c| format!(" ({c})")).unwrap_or_default()),
        },
        401 => ApiError::Unauthorized,
        403 => ApiError::InsufficientScope,
        404 => ApiError::NotFound(message.or(code).unwrap_or_else(|| "Uphold has no such object".to_owned())),
        412 | 416 => ApiError::Protocol(format!("Uphold refused the pagination range (HTTP {status})")),
        400 if code.as_deref() == Some("validation_failed") => {
            let mut leaves = Vec::new();
            if let Some(errors) = body.as_ref().and_then(|b| b.get("errors")) {
                validation_leaves(errors, "", 0, &mut leaves);
            }
            // The most actionable refusal first: funds, then minimum, then the rest in the order given.
            let mut refusals: Vec<(Refusal, String)> = leaves
                .iter()
                .map(|(path, code, text)| {
                    let shown = if text.is_empty() { format!("{path}: {code}") } else { text.clone() };
                    (refusal_for(path, code), sanitize(&shown))
                })
                .collect();
            refusals.sort_by_key(|(r, _)| match r {
                Refusal::InsufficientFunds => 0,
                Refusal::BelowMinimum => 1,
                Refusal::Other(_) => 3,
                _ => 2,
            });
            match refusals.into_iter().next() {
                Some((reason, shown)) => ApiError::Refused { reason, message: format!("Uphold refused: {shown}") },
                None => ApiError::Refused {
                    reason: Refusal::Other("validation_failed".to_owned()),
                    message: format!("Uphold refused: {}", message.unwrap_or_else(|| "validation failed".to_owned())),
                },
            }
        }
        _ => ApiError::Rejected { status, error: code.unwrap_or_else(|| format!("http_{status}")), message },
    }
}

fn fetch_error(e: FetchError) -> ApiError {
    match e {
        FetchError::TooLarge { .. } => ApiError::Protocol(e.describe()),
        FetchError::TimedOut | FetchError::Connection(_) => {
            ApiError::Transient { retry_after: None, reason: e.describe() }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Requests.

struct Request<'r> {
    method: Method,
    path: String,
    query: Vec<(&'r str, &'r str)>,
    range: Option<(usize, usize)>,
    body: Option<Value>,
    otp: Option<&'r str>,
    authenticated: bool,
}

impl<'r> Request<'r> {
    fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            range: None,
            body: None,
            otp: None,
            authenticated: true,
        }
    }

    fn post(path: impl Into<String>, body: Value) -> Self {
        Self { method: Method::POST, body: Some(body), ..Self::get(path) }
    }
}

/// Sends one request and reads the answer, whatever its status.
async fn raw(call: &Call<'_>, request: Request<'_>) -> Result<RawResponse, ApiError> {
    let url = call.url(&request.path)?;
    let mut builder = call.http.client.request(request.method, url).header(ACCEPT, "application/json");
    if request.authenticated {
        let Credential::Bearer(token) = call.credential else {
            return Err(ApiError::Config("Uphold takes an OAuth bearer token, not an API key".to_owned()));
        };
        builder = builder.bearer_auth(token.expose_secret());
    }
    if !request.query.is_empty() {
        builder = builder.query(&request.query);
    }
    if let Some((first, last)) = request.range {
        builder = builder.header("Range", format!("items={first}-{last}"));
    }
    if let Some(otp) = request.otp {
        builder = builder.header("OTP-Token", otp);
    }
    if let Some(body) = &request.body {
        builder = builder.json(body);
    }
    http::send(&call.http.limits, builder).await.map_err(fetch_error)
}

/// Sends one request; any non-2xx is classified.
async fn checked(call: &Call<'_>, request: Request<'_>) -> Result<RawResponse, ApiError> {
    let response = raw(call, request).await?;
    if response.status.is_success() { Ok(response) } else { Err(classify(&response)) }
}

/// Every item of a Range-paginated collection, following `Content-Range` to the total, at most
/// [`MAX_PAGES`] pages.
async fn paged<T: DeserializeOwned>(call: &Call<'_>, path: &str, authenticated: bool) -> Result<Vec<T>, ApiError> {
    let mut items = Vec::new();
    let mut start = 0;
    for _ in 0..MAX_PAGES {
        let mut request = Request::get(path);
        request.range = Some((start, start + PAGE_SIZE - 1));
        request.authenticated = authenticated;
        let response = checked(call, request).await?;
        let page: Vec<T> = parse_json(&response, path)?;
        let count = page.len();
        items.extend(page);
        let Some(range) = content_range(&response.headers)? else {
            // No Content-Range: the endpoint answered the whole collection.
            return Ok(items);
        };
        let Some((first, last)) = range.span else { return Ok(items) };
        if first != start {
            return Err(ApiError::Protocol(format!(
                "Uphold answered items from {first} to a request for items from {start} ({path})"
            )));
        }
        let next = last + 1;
        let done = match range.total {
            Some(total) => next >= total,
            None => count < PAGE_SIZE,
        };
        if done || count == 0 {
            return Ok(items);
        }
        start = next;
    }
    Err(ApiError::Protocol(format!("{path} has more than {MAX_PAGES} pages; stopped there")))
}

fn cached<T>(cache: &Cache<T>, key: &str, ttl: Duration) -> Option<Arc<T>> {
    let guard = cache.lock().unwrap_or_else(PoisonError::into_inner);
    guard.get(key).filter(|(at, _)| at.elapsed() < ttl).map(|(_, value)| value.clone())
}

fn store<T>(cache: &Cache<T>, key: &str, value: T) -> Arc<T> {
    let value = Arc::new(value);
    let mut guard = cache.lock().unwrap_or_else(PoisonError::into_inner);
    // Bounded: one entry per configured base URL; drop stale ones when it grows.
    if guard.len() > 64 {
        guard.clear();
    }
    guard.insert(key.to_owned(), (Instant::now(), value.clone()));
    value
}

/// `card_id/transaction_id`: a quote id names both, so a commit needs no lookup.
fn split_quote_id(quote_id: &str) -> Result<(&str, &str), ApiError> {
    let safe = |s: &str| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    match quote_id.split_once('/') {
        Some((card, txn)) if safe(card) && safe(txn) => Ok((card, txn)),
        _ => Err(ApiError::Config(format!("{:?} is not an Uphold quote id (card/transaction)", sanitize(quote_id)))),
    }
}

fn segment(id: &str) -> Result<&str, ApiError> {
    if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(id)
    } else {
        Err(ApiError::NotFound(format!("{:?} is not an Uphold id", sanitize(id))))
    }
}

fn to_transfer(wire: &TxnWire) -> Result<Transfer, ApiError> {
    let what = |field: &str| format!("transaction {} {field}", sanitize(&wire.id));
    let destination = wire.destination.as_ref();
    let origin = wire.origin.as_ref();
    let symbol = destination
        .and_then(|d| d.currency.clone())
        .or_else(|| origin.and_then(|o| o.currency.clone()))
        .ok_or_else(|| ApiError::Protocol(what("has no currency")))?
        .to_ascii_uppercase();
    let amount = match destination.and_then(|d| d.amount.as_ref()) {
        Some(a) => decimal(a, &what("destination amount"))?,
        None => return Err(ApiError::Protocol(what("has no destination amount"))),
    };
    let status = match wire.status.as_str() {
        "completed" => TransferStatus::Succeeded,
        "failed" | "cancelled" => TransferStatus::Failed,
        _ => TransferStatus::Pending,
    };
    let mut fee = 0.0;
    let mut any_fee = false;
    for f in wire.fees.iter().filter(|f| f.currency.eq_ignore_ascii_case(&symbol)) {
        fee += decimal(&f.amount, &what("fee"))?;
        any_fee = true;
    }
    let fee = if any_fee { Some(fee) } else { optional_decimal(origin.and_then(|o| o.fee.as_ref()), &what("fee"))? };
    let network = wire
        .network
        .as_deref()
        .filter(|n| *n != "uphold")
        .map(|n| to_canonical_network(n).map(str::to_owned).unwrap_or_else(|| sanitize(n)));
    let incoming =
        wire.kind.as_deref() == Some("deposit") || origin.and_then(|o| o.kind.as_deref()) == Some("external");
    Ok(Transfer {
        id: wire.id.clone(),
        symbol: symbol.clone(),
        amount,
        address: destination.and_then(|d| d.address.clone().or_else(|| d.description.clone())).unwrap_or_default(),
        network,
        status,
        status_details: sanitize(&wire.status),
        created_at: timestamp(&wire.created_at, &what("createdAt"))?,
        fee,
        fee_currency: Some(symbol),
        from_address: None,
        hash: wire.params.as_ref().and_then(|p| p.txid.clone()).filter(|h| !h.is_empty()),
        incoming,
    })
}

fn quote_expiry(wire: &TxnWire) -> Result<Option<OffsetDateTime>, ApiError> {
    if let Some(at) = &wire.expires_at {
        return timestamp(at, "quote expiresAt").map(Some);
    }
    let Some(ttl) = wire.params.as_ref().and_then(|p| p.ttl) else { return Ok(None) };
    let created = timestamp(&wire.created_at, "quote createdAt")?;
    Ok(Some(created + time::Duration::milliseconds(i64::try_from(ttl).unwrap_or(i64::MAX / 2).min(86_400_000))))
}

impl UpholdV0 {
    async fn cards(&self, call: &Call<'_>) -> Result<Vec<Card>, ApiError> {
        let wires: Vec<CardWire> = paged(call, "/v0/me/cards", true).await?;
        wires.into_iter().map(parse_card).collect()
    }

    /// USD price per symbol (mid of bid and ask of `SYMBOLUSD`), cached for [`PRICE_TTL`].
    async fn prices(&self, call: &Call<'_>) -> Result<Arc<HashMap<String, f64>>, ApiError> {
        let key = call.base.as_str();
        if let Some(prices) = cached(&self.prices, key, PRICE_TTL) {
            return Ok(prices);
        }
        let mut request = Request::get("/v0/ticker/USD");
        request.authenticated = false;
        let response = checked(call, request).await?;
        let tickers: Vec<TickerWire> = parse_json(&response, "ticker")?;
        let mut prices = HashMap::new();
        for ticker in tickers {
            let Some(symbol) = ticker.pair.strip_suffix("USD") else { continue };
            if ticker.currency != "USD" || symbol.is_empty() || symbol == "USD" {
                continue;
            }
            let ask = decimal(&ticker.ask, &format!("ticker {} ask", sanitize(&ticker.pair)))?;
            let bid = decimal(&ticker.bid, &format!("ticker {} bid", sanitize(&ticker.pair)))?;
            prices.insert(symbol.to_owned(), (ask + bid) / 2.0);
        }
        Ok(store(&self.prices, key, prices))
    }

    /// The public asset list (full, unfiltered), cached for [`ASSET_TTL`].
    async fn asset_list(&self, call: &Call<'_>) -> Result<Arc<Vec<AssetWire>>, ApiError> {
        let key = call.base.as_str();
        if let Some(assets) = cached(&self.assets, key, ASSET_TTL) {
            return Ok(assets);
        }
        let assets: Vec<AssetWire> = paged(call, "/v0/assets", false).await?;
        Ok(store(&self.assets, key, assets))
    }

    /// The card to send `symbol` from: the one of that currency with the most available.
    async fn source_card(&self, call: &Call<'_>, symbol: &str) -> Result<Card, ApiError> {
        let cards = self.cards(call).await?;
        cards
            .into_iter()
            .filter(|c| c.currency == symbol)
            .max_by(|a, b| a.available.total_cmp(&b.available))
            .ok_or_else(|| ApiError::Refused {
                reason: Refusal::InsufficientFunds,
                message: format!("the Uphold account has no {symbol} card to send from"),
            })
    }

    async fn get_transaction(&self, call: &Call<'_>, id: &str) -> Result<TxnWire, ApiError> {
        let response = checked(call, Request::get(format!("/v0/me/transactions/{}", segment(id)?))).await?;
        parse_json(&response, "transaction")
    }

    /// A send without a quote: the one made earlier with this reference, if it is among the recent ones.
    async fn by_reference(&self, call: &Call<'_>, reference: &str) -> Result<Option<TxnWire>, ApiError> {
        let mut request = Request::get("/v0/me/transactions");
        request.range = Some((0, RECENT_FOR_REFERENCE - 1));
        let response = checked(call, request).await?;
        let recent: Vec<TxnWire> = parse_json(&response, "transactions")?;
        Ok(recent.into_iter().find(|t| t.reference.as_deref() == Some(reference)))
    }

    async fn commit(&self, call: &Call<'_>, request: &SendRequest, quote_id: &str) -> Result<SendOutcome, ApiError> {
        let (card, txn) = split_quote_id(quote_id)?;
        let mut commit = Request::post(format!("/v0/me/cards/{card}/transactions/{txn}/commit"), json!({}));
        commit.otp = request.mfa_code.as_ref().map(|c| c.expose_secret());
        let response = raw(call, commit).await?;
        if response.status.is_success() {
            let wire: TxnWire = parse_json(&response, "committed transaction")?;
            return Ok(SendOutcome::Sent(to_transfer(&wire)?));
        }
        let status = response.status.as_u16();
        if status == 401 && otp_required(&response) {
            return otp_outcome(request);
        }
        if matches!(status, 401 | 403 | 429 | 500..=599) {
            return Err(classify(&response));
        }
        // The commit was refused: if the transaction is no longer pending, an earlier attempt committed it
        // (a retry after a timeout or a crash), and that is this send's outcome.
        match self.get_transaction(call, txn).await {
            Ok(wire) if wire.status != "pending" => Ok(SendOutcome::Sent(to_transfer(&wire)?)),
            Ok(_) | Err(ApiError::NotFound(_)) if status == 404 => Err(ApiError::Refused {
                reason: Refusal::QuoteExpired,
                message: "the Uphold quote expired before it was committed: quote again".to_owned(),
            }),
            Ok(_) | Err(ApiError::NotFound(_)) => Err(classify(&response)),
            Err(other) => Err(other),
        }
    }
}

/// Uphold's one-time-password step: a 401 with `OTP-Token: Required`.
fn otp_required(response: &RawResponse) -> bool {
    response.headers.get("otp-token").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("required"))
}

/// A send asked for a one-time password: ask the end user, or say the one given was wrong.
fn otp_outcome(request: &SendRequest) -> Result<SendOutcome, ApiError> {
    if request.mfa_code.is_some() {
        return Err(ApiError::Refused {
            reason: Refusal::InvalidMfaCode,
            message: "Uphold did not accept the one-time password".to_owned(),
        });
    }
    Ok(SendOutcome::MfaRequired { mfa_type: "totp".to_owned() })
}

fn asset_networks(asset: &AssetWire) -> Vec<&'static str> {
    let listed: Vec<&'static str> = asset
        .networks
        .iter()
        .flatten()
        .filter_map(|n| match n {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o.get("network").or_else(|| o.get("name")).and_then(Value::as_str),
            _ => None,
        })
        .filter_map(to_canonical_network)
        .collect();
    if asset.networks.is_some() {
        return listed;
    }
    NATIVE_NETWORKS.iter().filter(|(code, _)| *code == asset.code).map(|(_, n)| *n).collect()
}

#[async_trait]
impl AccountApi for UpholdV0 {
    async fn accounts(&self, call: Call<'_>) -> Result<Vec<Account>, ApiError> {
        let cards = self.cards(&call).await?;
        Ok(cards
            .into_iter()
            .map(|card| Account {
                cash_usd: Some(if card.currency == "USD" { card.balance } else { 0.0 }),
                value_usd: card.balance_usd,
                id: card.id,
                name: card.label,
                currency: Some(card.currency),
            })
            .collect())
    }

    async fn holdings(&self, call: Call<'_>) -> Result<Vec<Holding>, ApiError> {
        let cards = self.cards(&call).await?;
        let mut positions: Vec<(String, f64, Option<f64>)> = Vec::new();
        for card in cards.iter().filter(|c| is_crypto(&c.currency) && c.balance != 0.0) {
            match positions.iter_mut().find(|(s, _, _)| *s == card.currency) {
                Some((_, amount, usd)) => {
                    *amount += card.balance;
                    *usd = usd.zip(card.balance_usd).map(|(a, b)| a + b);
                }
                None => positions.push((card.currency.clone(), card.balance, card.balance_usd)),
            }
        }
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let prices = self.prices(&call).await?;
        // Names are a nicety: a failing asset list leaves the symbol as the name.
        let names = self.asset_list(&call).await.ok();
        Ok(positions
            .into_iter()
            .map(|(symbol, amount, usd)| {
                let price_usd = prices.get(&symbol).copied();
                let name = names
                    .as_ref()
                    .and_then(|list| list.iter().find(|a| a.code == symbol).map(|a| a.name.clone()))
                    .unwrap_or_else(|| symbol.clone());
                Holding {
                    value_usd: usd.or_else(|| price_usd.map(|p| p * amount)),
                    symbol,
                    name,
                    amount,
                    price_usd,
                    cost_basis_usd: None,
                }
            })
            .collect())
    }

    async fn balances(&self, call: Call<'_>) -> Result<Vec<Balance>, ApiError> {
        let cards = self.cards(&call).await?;
        let mut balances: Vec<Balance> = Vec::new();
        for card in cards.iter().filter(|c| is_fiat(&c.currency)) {
            match balances.iter_mut().find(|b| b.currency == card.currency) {
                Some(b) => {
                    b.cash += card.balance;
                    b.buying_power += card.available;
                }
                None => balances.push(Balance {
                    currency: card.currency.clone(),
                    cash: card.balance,
                    buying_power: card.available,
                }),
            }
        }
        Ok(balances)
    }

    async fn deposit_address(&self, call: Call<'_>, symbol: &str, network: &str) -> Result<DepositAddress, ApiError> {
        let symbol = symbol.to_ascii_uppercase();
        let uphold_network = to_uphold_network(network).ok_or_else(|| ApiError::Refused {
            reason: Refusal::UnsupportedNetwork,
            message: format!("Uphold does not receive over {network:?} through linkvault"),
        })?;
        let cards = self.cards(&call).await?;
        let card = cards
            .iter()
            .find(|c| c.currency == symbol)
            .ok_or_else(|| ApiError::NotFound(format!("the Uphold account has no {symbol} card")))?;
        let answer = |address: String, tag: Option<String>| DepositAddress {
            symbol: symbol.clone(),
            network: network.to_owned(),
            address,
            tag,
        };
        let path = format!("/v0/me/cards/{}/addresses", segment(&card.id)?);
        let response = checked(&call, Request::get(path.clone())).await?;
        let listed: Vec<AddressWire> = parse_json(&response, "card addresses")?;
        if let Some(found) = listed.into_iter().find(|a| a.network == uphold_network)
            && let Some(format) = found.formats.into_iter().next()
        {
            return Ok(answer(format.value, found.tag));
        }
        // None yet on that network: Uphold creates one on request (`cards:write`).
        let response = checked(&call, Request::post(path, json!({"network": uphold_network}))).await?;
        let created: CreatedAddressWire = parse_json(&response, "created card address")?;
        Ok(answer(created.id, created.tag))
    }

    async fn assets(&self, call: Call<'_>) -> Result<Vec<AssetNetwork>, ApiError> {
        let list = self.asset_list(&call).await?;
        let mut out = Vec::new();
        for asset in list.iter().filter(|a| a.kind.as_deref().is_some_and(|k| CRYPTO_TYPES.contains(&k))) {
            let open = asset.status.as_deref() == Some("open");
            for network in asset_networks(asset) {
                out.push(AssetNetwork {
                    symbol: asset.code.to_ascii_uppercase(),
                    name: asset.name.clone(),
                    network: network.to_owned(),
                    // Uphold prices fees per transaction (a quote shows them) and publishes no minimums.
                    withdraw_fee: None,
                    withdraw_min: None,
                    withdraw_enabled: open,
                    deposit_enabled: open,
                });
            }
        }
        Ok(out)
    }

    async fn quote(&self, call: Call<'_>, request: &QuoteRequest) -> Result<TransferQuote, ApiError> {
        let (symbol, uphold_network) = uphold_route(&request.symbol, &request.network, request.tag.as_deref())?;
        let denomination = match (request.amount, request.amount_usd) {
            (Some(amount), _) => json!({"amount": amount_string(amount), "currency": symbol}),
            (None, Some(usd)) => json!({"amount": format!("{usd:.2}"), "currency": "USD"}),
            (None, None) => return Err(ApiError::Config("a quote needs an amount or an amount in USD".to_owned())),
        };
        let card = self.source_card(&call, &symbol).await?;
        let body = json!({"denomination": denomination, "destination": request.address, "network": uphold_network});
        let path = format!("/v0/me/cards/{}/transactions", segment(&card.id)?);
        let response = checked(&call, Request::post(path, body)).await?;
        let wire: TxnWire = parse_json(&response, "quoted transaction")?;
        if wire.status != "pending" {
            return Err(ApiError::Protocol(format!(
                "Uphold created the quote with status {:?} instead of pending",
                sanitize(&wire.status)
            )));
        }
        let transfer = to_transfer(&wire)?;
        let prices = self.prices(&call).await?;
        Ok(TransferQuote {
            symbol: symbol.clone(),
            network: request.network.clone(),
            address: request.address.clone(),
            amount: transfer.amount,
            fee: transfer.fee.unwrap_or(0.0),
            fee_currency: symbol.clone(),
            price_usd: prices.get(&symbol).copied().unwrap_or(0.0),
            available: card.available,
            from_address: card.addresses.iter().find(|(n, _)| n == uphold_network).map(|(_, a)| a.clone()),
            quote_id: Some(format!("{}/{}", card.id, wire.id)),
            expires_at: quote_expiry(&wire)?,
        })
    }

    async fn send(&self, call: Call<'_>, request: &SendRequest) -> Result<SendOutcome, ApiError> {
        if let Some(quote_id) = &request.quote_id {
            return self.commit(&call, request, quote_id).await;
        }
        // No quote: create and commit in one step, with the idempotency key as the transaction's reference,
        // after checking that an earlier attempt did not already make it.
        if let Some(earlier) = self.by_reference(&call, &request.idem).await? {
            return Ok(SendOutcome::Sent(to_transfer(&earlier)?));
        }
        let (symbol, uphold_network) = uphold_route(&request.symbol, &request.network, request.tag.as_deref())?;
        let card = self.source_card(&call, &symbol).await?;
        let body = json!({
            "denomination": {"amount": amount_string(request.amount), "currency": symbol},
            "destination": request.address,
            "network": uphold_network,
            "reference": request.idem,
        });
        let mut create = Request::post(format!("/v0/me/cards/{}/transactions", segment(&card.id)?), body);
        create.query = vec![("commit", "true")];
        create.otp = request.mfa_code.as_ref().map(|c| c.expose_secret());
        let response = raw(&call, create).await?;
        if !response.status.is_success() {
            if response.status.as_u16() == 401 && otp_required(&response) {
                return otp_outcome(request);
            }
            return Err(classify(&response));
        }
        let wire: TxnWire = parse_json(&response, "committed transaction")?;
        Ok(SendOutcome::Sent(to_transfer(&wire)?))
    }

    async fn transfer(&self, call: Call<'_>, id: &str) -> Result<Transfer, ApiError> {
        // A quote id (card/transaction) names the transaction too.
        let id = id.rsplit('/').next().unwrap_or(id);
        let wire = self.get_transaction(&call, id).await?;
        to_transfer(&wire)
    }

    async fn history(&self, call: Call<'_>) -> Result<Vec<Transfer>, ApiError> {
        let wires: Vec<TxnWire> = paged(&call, "/v0/me/transactions", true).await?;
        wires.iter().map(to_transfer).collect()
    }

    async fn verify(&self, call: Call<'_>) -> Result<Account, ApiError> {
        let mut request = Request::get("/v0/me/cards");
        request.range = Some((0, 0));
        let response = checked(&call, request).await?;
        let cards: Vec<CardWire> = parse_json(&response, "/v0/me/cards")?;
        let card = cards.into_iter().next().map(parse_card).transpose()?;
        let card = card.ok_or_else(|| ApiError::Protocol("the Uphold account has no cards".to_owned()))?;
        Ok(Account {
            cash_usd: Some(if card.currency == "USD" { card.balance } else { 0.0 }),
            value_usd: card.balance_usd,
            id: card.id,
            name: card.label,
            currency: Some(card.currency),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    #[test]
    fn decimals_are_strict() {
        assert_eq!(decimal("146.38", "x").unwrap(), 146.38);
        assert_eq!(decimal("-0.5", "x").unwrap(), -0.5);
        assert_eq!(decimal("5", "x").unwrap(), 5.0);
        for bad in ["", "1e5", " 1", "1.", ".5", "0x10", "NaN", "inf", "1,5", "--1"] {
            assert!(decimal(bad, "x").is_err(), "{bad:?}");
        }
        assert_eq!(amount_string(5.0), "5");
        assert_eq!(amount_string(0.000_012_346), "0.00001235");
        assert_eq!(amount_string(1.5), "1.5");
    }

    #[test]
    fn content_ranges() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_range(&headers).unwrap(), None);
        headers.insert("content-range", "items 0-49/123".parse().unwrap());
        assert_eq!(content_range(&headers).unwrap(), Some(ContentRange { span: Some((0, 49)), total: Some(123) }));
        headers.insert("content-range", "items */0".parse().unwrap());
        assert_eq!(content_range(&headers).unwrap(), Some(ContentRange { span: None, total: Some(0) }));
        headers.insert("content-range", "items 0--1/0".parse().unwrap());
        assert_eq!(content_range(&headers).unwrap(), Some(ContentRange { span: None, total: Some(0) }));
        for bad in ["bytes 0-1/2", "items 5-1/9", "items a-b/c", "items 0-1"] {
            headers.insert("content-range", bad.parse().unwrap());
            assert!(content_range(&headers).is_err(), "{bad}");
        }
    }

    #[test]
    fn quote_ids() {
        assert_eq!(split_quote_id("abc-1/def-2").unwrap(), ("abc-1", "def-2"));
        for bad in ["abc", "/x", "x/", "a/b/c", "a?/b", "../x/y"] {
            assert!(split_quote_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_refusals() {
        let body = json!({"code": "validation_failed", "errors": {"denomination": {"code": "validation_failed",
            "errors": {"amount": [{"code": "sufficient_funds", "message": "Not enough funds for the specified amount"}]}}}});
        let mut leaves = Vec::new();
        validation_leaves(&body["errors"], "", 0, &mut leaves);
        assert_eq!(
            leaves,
            vec![(
                "denomination.amount".to_owned(),
                "sufficient_funds".to_owned(),
                "Not enough funds for the specified amount".to_owned()
            )]
        );
        assert_eq!(refusal_for("denomination.amount", "greater_than_or_equal_to"), Refusal::BelowMinimum);
        assert_eq!(refusal_for("destination", "invalid"), Refusal::InvalidAddress);
        assert_eq!(refusal_for("network", "invalid"), Refusal::UnsupportedNetwork);
        assert_eq!(
            refusal_for("denomination.amount", "less_than_or_equal_to"),
            Refusal::Other("less_than_or_equal_to".into())
        );
    }
}
