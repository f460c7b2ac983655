//! The sandbox's Coinbase App API v2, in Coinbase's own wire format under `/sandbox/coinbase/v2/…`: accounts
//! (one wallet per position plus a USD fiat wallet), transactions (send with `idem` and two-factor `402
//! two_factor_required` unless `CB-2FA-TOKEN` carries the sandbox code), addresses, spot prices and exchange
//! rates. Lists use Coinbase's `data`/`pagination` envelope with a deliberately small page size so clients must
//! follow `next_uri`; errors use Coinbase's `{"errors":[{"id","message"}]}` body. The money moves in the shared
//! [`ledger`](crate::ledger), so this module only translates.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::admin::{self, FaultKind, with_retry_after};
use crate::ledger::{self, Book, LedgerTransfer, Refusal, SendArgs};
use crate::oauth_server::{self, BearerRefusal};
use crate::util::constant_time_eq;
use crate::{MFA_CODE, Shared};

const EXCHANGE: &str = "coinbase";
/// Items per page whatever `limit` asks (Coinbase may return fewer than `limit`; clients must follow `next_uri`).
const PAGE_SIZE: usize = 2;
/// Coinbase's documented default `limit`.
const DEFAULT_LIMIT: usize = 25;
/// When the sandbox accounts were "opened" (a fixed timestamp keeps answers stable).
const OPENED_AT: &str = "2024-01-01T00:00:00Z";

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/v2/accounts", get(list_accounts))
        .route("/v2/accounts/{account_id}", get(show_account))
        .route("/v2/accounts/{account_id}/transactions", get(list_transactions).post(send_money))
        .route("/v2/accounts/{account_id}/transactions/{transaction_id}", get(show_transaction))
        .route("/v2/accounts/{account_id}/addresses", get(list_addresses).post(create_address))
        .route("/v2/exchange-rates", get(exchange_rates))
        .route("/v2/prices/{currency_pair}/spot", get(spot_price))
}

/// A Coinbase error answer.
fn error(status: StatusCode, id: &str, message: &str) -> Response {
    (status, Json(json!({"errors": [{"id": id, "message": message}]}))).into_response()
}

fn validation_error(field: &str, message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"errors": [{"id": "validation_error", "message": message, "field": field}]})))
        .into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "Not found")
}

/// Counts the request and renders an injected fault, if any.
async fn arrive(sandbox: &Shared, endpoint: &'static str) -> Option<Response> {
    let fault = admin::arrive(sandbox, EXCHANGE, endpoint).await?;
    Some(match fault.kind {
        FaultKind::ServerError => with_retry_after(
            error(fault.server_status(), "internal_server_error", "fault injected by the sandbox admin"),
            fault.retry_after_secs,
        ),
        FaultKind::TooManyRequests => with_retry_after(
            error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", "Too many requests"),
            Some(fault.retry_after_secs.unwrap_or(1)),
        ),
        FaultKind::InvalidGrant => error(StatusCode::UNAUTHORIZED, "invalid_token", "The access token is invalid"),
        // Latency is slept by admin::arrive and never handed back.
        FaultKind::Latency => return None,
    })
}

/// The token's user and whether it may send, or Coinbase's 401 answer.
fn authenticate(sandbox: &Shared, headers: &HeaderMap) -> Result<(String, bool), Box<Response>> {
    let now = sandbox.config.clock.now();
    match oauth_server::bearer_user(sandbox, oauth_server::COINBASE, headers, now) {
        Ok((username, scopes)) => {
            let can_send = scopes.iter().any(|s| oauth_server::COINBASE.write_scopes.contains(&s.as_str()));
            Ok((username, can_send))
        }
        Err(refusal) => {
            let (id, message) = match refusal {
                BearerRefusal::Missing => ("authentication_error", "An Authorization: Bearer token is required"),
                BearerRefusal::Invalid => ("invalid_token", "The access token is invalid"),
                BearerRefusal::Expired => ("expired_token", "The access token expired"),
                BearerRefusal::Revoked => ("revoked_token", "The access token was revoked"),
            };
            let mut response = error(StatusCode::UNAUTHORIZED, id, message);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            Err(Box::new(response))
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| OPENED_AT.to_owned())
}

/// A stable UUID-shaped id derived from `parts` (Coinbase ids are UUIDs).
fn derived_id(parts: &[&str]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, parts.join("/").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// Coinbase's network names for the sandbox's canonical ones (the same words).
fn network_name(canonical: &str) -> &str {
    canonical
}

fn canonical_network(coinbase: &str) -> Option<&'static str> {
    ledger::NETWORKS.iter().copied().find(|n| network_name(n) == coinbase)
}

fn networks_of(symbol: &str) -> Vec<&'static str> {
    ledger::NETWORK_FEES.iter().filter(|(s, _, _, _)| *s == symbol).map(|(_, n, _, _)| *n).collect()
}

/// One Coinbase account of a book: a crypto wallet per position, then the USD fiat wallet.
struct WalletView {
    id: String,
    currency: String,
    fiat: bool,
    amount: f64,
}

fn wallets(book: &Book) -> Vec<WalletView> {
    let mut out: Vec<WalletView> = book
        .holdings
        .iter()
        .map(|(symbol, amount)| WalletView {
            id: derived_id(&[&book.account_id, symbol]),
            currency: symbol.clone(),
            fiat: false,
            amount: *amount,
        })
        .collect();
    out.push(WalletView {
        id: derived_id(&[&book.account_id, "USD"]),
        currency: "USD".to_owned(),
        fiat: true,
        amount: book.cash_usd,
    });
    out
}

fn wallet<'a>(views: &'a [WalletView], account_id: &str) -> Option<&'a WalletView> {
    views.iter().find(|w| w.id == account_id)
}

fn account_json(view: &WalletView, primary: bool) -> Value {
    let (name, kind, exponent, decimals, usd) = if view.fiat {
        ("US Dollar".to_owned(), "fiat", 2, 2, view.amount)
    } else {
        let (name, price) = ledger::price(&view.currency).unwrap_or(("Unknown", 0.0));
        (name.to_owned(), "crypto", 8, 8, view.amount * price)
    };
    json!({
        "id": view.id,
        "name": format!("{} Wallet", view.currency),
        "primary": primary,
        "type": if view.fiat { "fiat" } else { "wallet" },
        "currency": {"code": view.currency, "name": name, "type": kind, "exponent": exponent},
        "balance": {"amount": format!("{:.*}", decimals, view.amount), "currency": view.currency},
        "native_balance": {"amount": format!("{usd:.2}"), "currency": "USD"},
        "created_at": OPENED_AT,
        "updated_at": OPENED_AT,
        "resource": "account",
        "resource_path": format!("/v2/accounts/{}", view.id),
    })
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    limit: Option<usize>,
    starting_after: Option<String>,
}

/// One page of `items` (each with its id) in Coinbase's envelope; `path` is the list's documented path.
fn page(items: Vec<(String, Value)>, query: &PageQuery, path: &str) -> Response {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > 100 {
        return validation_error("limit", "limit must be between 1 and 100");
    }
    let start = match &query.starting_after {
        None => 0,
        Some(after) => match items.iter().position(|(id, _)| id == after) {
            Some(i) => i + 1,
            None => return error(StatusCode::BAD_REQUEST, "invalid_request", "starting_after is not in this list"),
        },
    };
    let size = limit.min(PAGE_SIZE);
    let end = (start + size).min(items.len());
    let chunk: Vec<Value> = items[start..end].iter().map(|(_, v)| v.clone()).collect();
    let next_uri = (end < items.len())
        .then(|| items.get(end.wrapping_sub(1)).map(|(id, _)| format!("{path}?limit={limit}&starting_after={id}")))
        .flatten();
    Json(json!({
        "pagination": {
            "ending_before": null,
            "starting_after": query.starting_after,
            "limit": limit,
            "order": "desc",
            "previous_uri": null,
            "next_uri": next_uri,
        },
        "data": chunk,
    }))
    .into_response()
}

/// Runs `f` on the token user's book, or answers why not.
fn with_book<T>(sandbox: &Shared, username: &str, f: impl FnOnce(&mut Book) -> T) -> Result<T, Box<Response>> {
    let now = sandbox.config.clock.now();
    let mut inner = sandbox.lock();
    let book = inner.ledger.book(EXCHANGE, username, now).ok_or_else(|| Box::new(not_found()))?;
    Ok(f(book))
}

async fn list_accounts(State(sandbox): State<Shared>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    if let Some(r) = arrive(&sandbox, "GET /v2/accounts").await {
        return r;
    }
    let (username, _) = match authenticate(&sandbox, &headers) {
        Ok(user) => user,
        Err(r) => return *r,
    };
    match with_book(&sandbox, &username, |book| {
        wallets(book).iter().enumerate().map(|(i, w)| (w.id.clone(), account_json(w, i == 0))).collect::<Vec<_>>()
    }) {
        Ok(items) => page(items, &q, "/v2/accounts"),
        Err(r) => *r,
    }
}

async fn show_account(State(sandbox): State<Shared>, headers: HeaderMap, Path(account_id): Path<String>) -> Response {
    if let Some(r) = arrive(&sandbox, "GET /v2/accounts/:account_id").await {
        return r;
    }
    let (username, _) = match authenticate(&sandbox, &headers) {
        Ok(user) => user,
        Err(r) => return *r,
    };
    let found = with_book(&sandbox, &username, |book| {
        let views = wallets(book);
        let position = views.iter().position(|w| w.id == account_id || w.currency == account_id)?;
        Some(account_json(&views[position], position == 0))
    });
    match found {
        Ok(Some(account)) => Json(json!({"data": account})).into_response(),
        Ok(None) => not_found(),
        Err(r) => *r,
    }
}

fn transaction_json(account_id: &str, t: &LedgerTransfer, now: OffsetDateTime) -> Value {
    let settled = t.hash.is_some();
    let price = ledger::price(&t.symbol).map_or(0.0, |(_, p)| p);
    let debit = t.amount + t.fee;
    let mut network = json!({
        "status": if settled { "confirmed" } else { "pending" },
        "network_name": network_name(&t.network),
        "transaction_fee": {"amount": format!("{:.8}", t.fee), "currency": t.symbol},
        "transaction_amount": {"amount": format!("{:.8}", t.amount), "currency": t.symbol},
    });
    if let (Some(hash), Some(map)) = (&t.hash, network.as_object_mut()) {
        map.insert("hash".to_owned(), json!(hash));
        map.insert("transaction_url".to_owned(), json!(format!("https://explorer.invalid/{}/tx/{hash}", t.network)));
    }
    let mut to = json!({"resource": "address", "address": t.address, "currency": t.symbol});
    if let (Some(tag), Some(map)) = (&t.tag, to.as_object_mut()) {
        map.insert("destination_tag".to_owned(), json!(tag));
    }
    let sign = if t.incoming { "" } else { "-" };
    json!({
        "id": t.id,
        "type": if t.incoming { "receive" } else { "send" },
        "status": if settled { "completed" } else { "pending" },
        "amount": {"amount": format!("{sign}{debit:.8}"), "currency": t.symbol},
        "native_amount": {"amount": format!("{sign}{:.2}", debit * price), "currency": "USD"},
        "description": null,
        "created_at": rfc3339(t.created_at),
        "updated_at": rfc3339(if settled { now } else { t.created_at }),
        "resource": "transaction",
        "resource_path": format!("/v2/accounts/{account_id}/transactions/{}", t.id),
        "idem": t.idem,
        "network": network,
        "to": to,
    })
}

async fn list_transactions(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    Path(account_id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Some(r) = arrive(&sandbox, "GET /v2/accounts/:account_id/transactions").await {
        return r;
    }
    let (username, _) = match authenticate(&sandbox, &headers) {
        Ok(user) => user,
        Err(r) => return *r,
    };
    let now = sandbox.config.clock.now();
    let items = with_book(&sandbox, &username, |book| {
        let views = wallets(book);
        let view = wallet(&views, &account_id)?;
        Some(
            book.transfers
                .iter()
                .rev()
                .filter(|t| t.symbol == view.currency)
                .map(|t| (t.id.clone(), transaction_json(&account_id, t, now)))
                .collect::<Vec<_>>(),
        )
    });
    match items {
        Ok(Some(items)) => page(items, &q, &format!("/v2/accounts/{account_id}/transactions")),
        Ok(None) => not_found(),
        Err(r) => *r,
    }
}

async fn show_transaction(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    Path((account_id, transaction_id)): Path<(String, String)>,
) -> Response {
    if let Some(r) = arrive(&sandbox, "GET /v2/accounts/:account_id/transactions/:transaction_id").await {
        return r;
    }
    let (username, _) = match authenticate(&sandbox, &headers) {
        Ok(user) => user,
        Err(r) => return *r,
    };
    let now = sandbox.config.clock.now();
    let found = with_book(&sandbox, &username, |book| {
        let views = wallets(book);
        let view = wallet(&views, &account_id)?;
        let t = book.transfer(&transaction_id).filter(|t| t.symbol == view.currency)?;
        Some(transaction_json(&account_id, t, now))
    });
    match found {
        Ok(Some(t)) => Json(json!({"data": t})).into_response(),
        Ok(None) => not_found(),
        Err(r) => *r,
    }
}

fn refusal_answer(refusal: Refusal, symbol: &str, network: &str) -> Response {
    match refusal {
        Refusal::InsufficientFunds => {
            validation_error("amount", "You don't have that much: the amount plus the network fee exceeds your balance")
        }
        Refusal::BelowMinimum => validation_error("amount", "Amount is below the minimum send for this network"),
        Refusal::InvalidAmount => validation_error("amount", "Amount must be a positive number"),
        Refusal::InvalidAddress => validation_error("to", "Please enter a valid address"),
        Refusal::UnsupportedNetwork => validation_error("network", &format!("Network {network} is not supported")),
        Refusal::UnsupportedAsset => {
            validation_error("network", &format!("{symbol} cannot be sent on network {network}"))
        }
        Refusal::IdempotencyConflict => {
            validation_error("idem", "This idem was already used for a different transaction")
        }
    }
}

/// Parses a Coinbase decimal amount string strictly (digits with one optional point, no sign or exponent).
fn decimal(text: &str) -> Option<f64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || (text.contains('.') && fraction.is_empty()) {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

async fn send_money(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    Path(account_id): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(r) = arrive(&sandbox, "POST /v2/accounts/:account_id/transactions").await {
        return r;
    }
    let (username, can_send) = match authenticate(&sandbox, &headers) {
        Ok(user) => user,
        Err(r) => return *r,
    };
    if !can_send {
        return error(StatusCode::FORBIDDEN, "invalid_scope", "Invalid scope: wallet:transactions:send is required");
    }
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "The body must be a JSON object");
    };
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    match text("type").as_deref() {
        Some("send") => {}
        None => return error(StatusCode::BAD_REQUEST, "param_required", "type is required"),
        Some(_) => return validation_error("type", "The sandbox supports only type send"),
    }
    let Some(to) = text("to") else { return error(StatusCode::BAD_REQUEST, "param_required", "to is required") };
    let Some(amount) = text("amount") else {
        return error(StatusCode::BAD_REQUEST, "param_required", "amount is required");
    };
    let Some(amount) = decimal(&amount) else { return refusal_answer(Refusal::InvalidAmount, "", "") };
    let Some(currency) = text("currency") else {
        return error(StatusCode::BAD_REQUEST, "param_required", "currency is required");
    };
    let idem = text("idem");
    let tag = text("destination_tag");
    // Two-step verification for every send (the real threshold is per user; the sandbox always asks).
    match headers.get("CB-2FA-TOKEN").and_then(|v| v.to_str().ok()) {
        None => {
            return error(
                StatusCode::PAYMENT_REQUIRED,
                "two_factor_required",
                "Two-step verification code required: repeat the request with the CB-2FA-TOKEN header",
            );
        }
        Some(code) if !constant_time_eq(code, MFA_CODE) => {
            return error(
                StatusCode::PAYMENT_REQUIRED,
                "two_factor_required",
                "That code was invalid. Please try again.",
            );
        }
        Some(_) => {}
    }
    let now = sandbox.config.clock.now();
    let mut inner = sandbox.lock();
    let inner = &mut *inner;
    let Some(book) = inner.ledger.book(EXCHANGE, &username, now) else { return not_found() };
    let views = wallets(book);
    let Some(view) = wallet(&views, &account_id) else { return not_found() };
    if view.fiat {
        return validation_error("currency", "Sends are made from crypto wallets");
    }
    if currency != view.currency {
        return validation_error("currency", "currency must be the account's currency");
    }
    let requested = text("network");
    let network = match requested.as_deref() {
        Some(name) => match canonical_network(name) {
            Some(n) => n,
            None => return refusal_answer(Refusal::UnsupportedNetwork, &currency, name),
        },
        None => match networks_of(&currency).first() {
            Some(n) => n,
            None => return refusal_answer(Refusal::UnsupportedAsset, &currency, "default"),
        },
    };
    let args = SendArgs { symbol: currency.clone(), network: network.to_owned(), address: to, tag, amount };
    match book.send(args, idem.as_deref(), now) {
        Ok((transfer, moved)) => {
            let data = transaction_json(&account_id, &transfer, now);
            if moved {
                inner.counts.transfer_created(EXCHANGE);
            }
            (StatusCode::CREATED, Json(json!({"data": data}))).into_response()
        }
        Err(refusal) => refusal_answer(refusal, &currency, network),
    }
}

fn address_json(book: &Book, account_id: &str, network: &str) -> (String, Value) {
    let id = derived_id(&[account_id, network]);
    let value = json!({
        "id": id,
        "address": book.deposit_address(network),
        "name": null,
        "network": network_name(network),
        "created_at": OPENED_AT,
        "updated_at": OPENED_AT,
        "resource": "address",
        "resource_path": format!("/v2/accounts/{account_id}/addresses/{id}"),
    });
    (id, value)
}

async fn list_addresses(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    Path(account_id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Some(r) = arrive(&sandbox, "GET /v2/accounts/:account_id/addresses").await {
        return r;
    }
    let (username, _) = match authenticate(&sandbox, &headers) {
        Ok(user) => user,
        Err(r) => return *r,
    };
    let items = with_book(&sandbox, &username, |book| {
        let views = wallets(book);
        let view = wallet(&views, &account_id)?;
        let networks = if view.fiat { Vec::new() } else { networks_of(&view.currency) };
        Some(networks.iter().map(|n| address_json(book, &account_id, n)).collect::<Vec<_>>())
    });
    match items {
        Ok(Some(items)) => page(items, &q, &format!("/v2/accounts/{account_id}/addresses")),
        Ok(None) => not_found(),
        Err(r) => *r,
    }
}

async fn create_address(State(sandbox): State<Shared>, headers: HeaderMap, Path(account_id): Path<String>) -> Response {
    if let Some(r) = arrive(&sandbox, "POST /v2/accounts/:account_id/addresses").await {
        return r;
    }
    let (username, _) = match authenticate(&sandbox, &headers) {
        Ok(user) => user,
        Err(r) => return *r,
    };
    let created = with_book(&sandbox, &username, |book| {
        let views = wallets(book);
        let view = wallet(&views, &account_id)?;
        if view.fiat {
            return Some(Err(validation_error("account", "Addresses can be created for wallet accounts only")));
        }
        // Coinbase's create takes no network: the address is on the asset's default network.
        let network = networks_of(&view.currency).first().copied()?;
        Some(Ok(address_json(book, &account_id, network).1))
    });
    match created {
        Ok(Some(Ok(address))) => (StatusCode::CREATED, Json(json!({"data": address}))).into_response(),
        Ok(Some(Err(r))) => r,
        Err(r) => *r,
        Ok(None) => not_found(),
    }
}

#[derive(Debug, Deserialize)]
struct RatesQuery {
    currency: Option<String>,
}

/// `GET /v2/exchange-rates?currency=X`: how much of each currency one X buys (no authentication, as documented).
async fn exchange_rates(State(sandbox): State<Shared>, Query(q): Query<RatesQuery>) -> Response {
    if let Some(r) = arrive(&sandbox, "GET /v2/exchange-rates").await {
        return r;
    }
    let base = q.currency.unwrap_or_else(|| "USD".to_owned()).to_ascii_uppercase();
    let usd_per_base = if base == "USD" {
        1.0
    } else {
        match ledger::price(&base) {
            Some((_, p)) => p,
            None => return validation_error("currency", "Invalid currency"),
        }
    };
    let mut rates = serde_json::Map::new();
    rates.insert("USD".to_owned(), json!(format!("{usd_per_base}")));
    for (symbol, _, price) in ledger::PRICES {
        rates.insert((*symbol).to_owned(), json!(format!("{}", usd_per_base / price)));
    }
    Json(json!({"data": {"currency": base, "rates": rates}})).into_response()
}

/// `GET /v2/prices/BTC-USD/spot` (no authentication, as documented).
async fn spot_price(State(sandbox): State<Shared>, Path(pair): Path<String>) -> Response {
    if let Some(r) = arrive(&sandbox, "GET /v2/prices/:currency_pair/spot").await {
        return r;
    }
    let Some((base, quote)) = pair.split_once('-') else { return not_found() };
    match (ledger::price(base), quote) {
        (Some((_, price)), "USD") => {
            Json(json!({"data": {"amount": format!("{price:.2}"), "base": base, "currency": "USD"}})).into_response()
        }
        _ => not_found(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    #[test]
    fn decimals_are_strict() {
        assert_eq!(decimal("1.50"), Some(1.5));
        assert_eq!(decimal("7"), Some(7.0));
        for bad in ["", "-1", "1e3", "1.", ".5", " 1", "1,5", "NaN", "inf"] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn derived_ids_are_stable_uuids() {
        let id = derived_id(&["coinbase-Mesh", "BTC"]);
        assert_eq!(id, derived_id(&["coinbase-Mesh", "BTC"]));
        assert_ne!(id, derived_id(&["coinbase-Mesh", "ETH"]));
        assert!(uuid::Uuid::parse_str(&id).is_ok());
    }
}
