//! The sandbox's Uphold REST API (v0), in Uphold's own paths and JSON under `/sandbox/uphold/v0/…`, so the
//! Uphold adapter under test is the one that runs against api.uphold.com: cards (a USD card plus one card
//! per ledger position) with Range/Content-Range pagination, card addresses, the USD ticker, the asset list,
//! transactions created as quotes (pending for 30 s on the sandbox clock) and committed once through the
//! ledger, and the user's transactions. Errors use Uphold's bodies (`{"code": "validation_failed", "errors":
//! …}`, `{"error": "invalid_token"}`, `{"code": "not_found", …}`).
//!
//! Pages hold at most [`PAGE_MAX`] items (Uphold allows 50), so clients must follow `Content-Range`.
//! Any valid token reads; creating and committing transactions needs the flavor's write scope.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Shared;
use crate::admin::{self, FaultKind, FaultSpec, with_retry_after};
use crate::ledger::{self, Book, LedgerTransfer, Refusal, SendArgs};
use crate::oauth_server::{self, BearerRefusal};

const EXCHANGE: &str = "uphold";

/// Items per page at most (Uphold's own maximum is 50; small here so pagination is exercised).
pub const PAGE_MAX: usize = 2;

/// How long a created (uncommitted) transaction holds its quote, as Uphold's `params.ttl`.
pub const QUOTE_TTL_MS: i64 = 30_000;

/// Transactions created through this API, by id.
#[derive(Debug, Default)]
pub struct UpholdState {
    txns: HashMap<String, Txn>,
}

#[derive(Debug, Clone)]
struct Txn {
    username: String,
    card_id: String,
    args: SendArgs,
    fee: f64,
    created_at: OffsetDateTime,
    reference: Option<String>,
    committed: bool,
}

impl Txn {
    fn expires_at(&self) -> OffsetDateTime {
        self.created_at + time::Duration::milliseconds(QUOTE_TTL_MS)
    }
}

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/v0/me/cards", get(list_cards))
        .route("/v0/me/cards/{card}", get(get_card))
        .route("/v0/me/cards/{card}/addresses", get(list_addresses).post(create_address))
        .route("/v0/me/cards/{card}/transactions", post(create_transaction))
        .route("/v0/me/cards/{card}/transactions/{id}/commit", post(commit_transaction))
        .route("/v0/me/transactions", get(list_transactions))
        .route("/v0/me/transactions/{id}", get(get_transaction))
        .route("/v0/ticker/{currency}", get(ticker))
        .route("/v0/assets", get(assets))
}

// ---------------------------------------------------------------------------------------------------------
// Uphold's answers.

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

fn invalid_token(description: &str) -> Response {
    let mut response =
        (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token", "error_description": description})))
            .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// A 400 `validation_failed` with one error at `field` (`denomination.amount` nests as Uphold does).
fn validation(field: &str, code: &str, message: &str, args: Option<Value>) -> Response {
    let mut leaf = json!({"code": code, "message": message});
    if let (Some(args), Some(map)) = (args, leaf.as_object_mut()) {
        map.insert("args".to_owned(), args);
    }
    let errors = match field.split_once('.') {
        Some((outer, inner)) => {
            json!({outer: {"code": "validation_failed", "errors": {inner: [leaf]}}})
        }
        None => json!({field: [leaf]}),
    };
    (StatusCode::BAD_REQUEST, Json(json!({"code": "validation_failed", "errors": errors}))).into_response()
}

fn refusal(refusal: Refusal, symbol: &str, network: &str) -> Response {
    let message = refusal.describe();
    match refusal {
        Refusal::InsufficientFunds => validation("denomination.amount", "sufficient_funds", message, None),
        Refusal::BelowMinimum => {
            let min = ledger::network_terms(symbol, network).map(|(_, min)| min).unwrap_or_default();
            validation("denomination.amount", "greater_than_or_equal_to", message, Some(json!({"threshold": fmt(min)})))
        }
        Refusal::InvalidAmount => validation("denomination.amount", "invalid", message, None),
        Refusal::InvalidAddress => validation("destination", "invalid", message, None),
        Refusal::UnsupportedNetwork => validation("network", "invalid", message, None),
        Refusal::UnsupportedAsset => validation("denomination.currency", "invalid", message, None),
        Refusal::IdempotencyConflict => error(StatusCode::CONFLICT, "conflict", message),
    }
}

fn fault_response(fault: &FaultSpec, now: OffsetDateTime) -> Response {
    match fault.kind {
        FaultKind::TooManyRequests => {
            let secs = fault.retry_after_secs.unwrap_or(1);
            let mut response =
                error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "Rate limit exceeded (sandbox fault)");
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            headers.insert("x-ratelimit-limit", HeaderValue::from(300));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
            let reset = now.unix_timestamp().saturating_add(i64::try_from(secs).unwrap_or(0));
            headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
            response
        }
        FaultKind::InvalidGrant => invalid_token("The access token is invalid (sandbox fault)"),
        FaultKind::ServerError | FaultKind::Latency => {
            let status = fault.server_status();
            let response = if status == StatusCode::SERVICE_UNAVAILABLE {
                error(status, "service_unavailable", "Service unavailable (sandbox fault)")
            } else {
                error(status, "internal_server_error", "Something went wrong (sandbox fault)")
            };
            with_retry_after(response, fault.retry_after_secs)
        }
    }
}

/// Counts the request, applies an injected fault, then (for `/me` paths) authenticates: the sandbox
/// username, or the answer to give.
async fn begin(
    sandbox: &Shared,
    endpoint: &'static str,
    headers: &HeaderMap,
    auth: Auth,
) -> Result<(Option<String>, OffsetDateTime), Box<Response>> {
    let now = sandbox.config.clock.now();
    if let Some(fault) = admin::arrive(sandbox, EXCHANGE, endpoint).await {
        return Err(Box::new(fault_response(&fault, now)));
    }
    if auth == Auth::Public {
        return Ok((None, now));
    }
    let (username, scopes) = match oauth_server::bearer_user(sandbox, oauth_server::UPHOLD, headers, now) {
        Ok(found) => found,
        Err(BearerRefusal::Missing) => return Err(Box::new(invalid_token("An access token is required"))),
        Err(BearerRefusal::Invalid) => return Err(Box::new(invalid_token("The access token is invalid"))),
        Err(BearerRefusal::Expired) => return Err(Box::new(invalid_token("The access token expired"))),
        Err(BearerRefusal::Revoked) => return Err(Box::new(invalid_token("The access token was revoked"))),
    };
    if auth == Auth::Write && !scopes.iter().any(|s| oauth_server::UPHOLD.write_scopes.contains(&s.as_str())) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The access token does not have the scope required to create or commit transactions",
        )));
    }
    Ok((Some(username), now))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Public,
    Read,
    Write,
}

// ---------------------------------------------------------------------------------------------------------
// Rendering.

fn fmt(amount: f64) -> String {
    format!("{amount:.8}")
}

fn fmt_fiat(amount: f64) -> String {
    format!("{amount:.2}")
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// The card id for `currency` in `book`: stable, UUID-shaped, derived from the account.
fn card_id(book: &Book, currency: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{}/card/{currency}", book.account_id).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// The networks (Uphold names = canonical names here) the ledger sends `symbol` over.
fn networks_of(symbol: &str) -> Vec<&'static str> {
    ledger::NETWORK_FEES.iter().filter(|(s, _, _, _)| *s == symbol).map(|(_, n, _, _)| *n).collect()
}

/// `(currency, balance)` of each card: USD first, then the positions in the book's order.
fn card_list(book: &Book) -> Vec<(String, f64)> {
    let mut cards = vec![("USD".to_owned(), book.cash_usd)];
    cards.extend(book.holdings.iter().cloned());
    cards
}

fn card_json(book: &Book, position: usize, currency: &str, balance: f64) -> Value {
    let fiat = currency == "USD";
    let usd = if fiat { balance } else { balance * ledger::price(currency).map(|(_, p)| p).unwrap_or(0.0) };
    let addresses: serde_json::Map<String, Value> =
        networks_of(currency).into_iter().map(|n| (n.to_owned(), json!(book.deposit_address(n)))).collect();
    let shown = if fiat { fmt_fiat(balance) } else { fmt(balance) };
    json!({
        "address": addresses,
        "available": shown,
        "balance": shown,
        "currency": currency,
        "id": card_id(book, currency),
        "label": format!("{currency} card"),
        "lastTransactionAt": null,
        "normalized": [{"available": fmt_fiat(usd), "balance": fmt_fiat(usd), "currency": "USD"}],
        "settings": {"position": position + 1, "protected": false, "starred": false},
    })
}

struct Rendered<'a> {
    id: &'a str,
    card_id: &'a str,
    args: &'a SendArgs,
    fee: f64,
    created_at: OffsetDateTime,
    status: &'a str,
    reference: Option<&'a str>,
    hash: Option<&'a str>,
    expires_at: Option<OffsetDateTime>,
}

fn txn_json(t: &Rendered<'_>) -> Value {
    let symbol = t.args.symbol.as_str();
    let price = ledger::price(symbol).map(|(_, p)| p).unwrap_or(0.0);
    let pair = format!("{symbol}{symbol}");
    let mut params = json!({
        "currency": symbol, "margin": "0.00", "pair": pair, "progress": if t.hash.is_some() { "1" } else { "0" },
        "rate": "1.00", "ttl": QUOTE_TTL_MS, "type": "external/out",
    });
    if let (Some(hash), Some(map)) = (t.hash, params.as_object_mut()) {
        map.insert("txid".to_owned(), json!(hash));
    }
    let mut body = json!({
        "application": null,
        "createdAt": rfc3339(t.created_at),
        "denomination": {"amount": fmt(t.args.amount), "currency": symbol, "pair": pair, "rate": "1.00"},
        "destination": {
            "address": t.args.address, "amount": fmt(t.args.amount), "base": fmt(t.args.amount),
            "commission": "0.00", "currency": symbol, "description": t.args.address, "fee": "0.00",
            "rate": "1.00", "type": "external",
        },
        "fees": [{"amount": fmt(t.fee), "currency": symbol, "percentage": "0.00", "target": "origin", "type": "network"}],
        "id": t.id,
        "message": null,
        "network": t.args.network,
        "normalized": [{
            "amount": fmt_fiat(t.args.amount * price), "commission": "0.00", "currency": "USD",
            "fee": fmt_fiat(t.fee * price), "rate": format!("{price:.5}"), "target": "origin",
        }],
        "origin": {
            "CardId": t.card_id, "amount": fmt(t.args.amount + t.fee), "base": fmt(t.args.amount),
            "commission": "0.00", "currency": symbol, "fee": fmt(t.fee), "rate": "1.00", "sources": [],
            "type": "card",
        },
        "params": params,
        "priority": "normal",
        "reference": t.reference,
        "status": t.status,
        "type": "withdrawal",
    });
    if let (Some(at), Some(map)) = (t.expires_at, body.as_object_mut()) {
        map.insert("expiresAt".to_owned(), json!(rfc3339(at)));
    }
    body
}

fn committed_json(txn: Option<&Txn>, book: &Book, transfer: &LedgerTransfer, now: OffsetDateTime) -> Value {
    let id = transfer.idem.as_deref().unwrap_or(&transfer.id);
    let card = txn.map(|t| t.card_id.clone()).unwrap_or_else(|| card_id(book, &transfer.symbol));
    let args = SendArgs {
        symbol: transfer.symbol.clone(),
        network: transfer.network.clone(),
        address: transfer.address.clone(),
        tag: transfer.tag.clone(),
        amount: transfer.amount,
    };
    let settled = transfer.settled(now) && transfer.hash.is_some();
    txn_json(&Rendered {
        id,
        card_id: &card,
        args: &args,
        fee: transfer.fee,
        created_at: transfer.created_at,
        status: if settled { "completed" } else { "processing" },
        reference: txn.and_then(|t| t.reference.as_deref()),
        hash: transfer.hash.as_deref(),
        expires_at: None,
    })
}

/// `Range: items=a-b` → the slice of `total` items to answer, or the error to give.
fn page(headers: &HeaderMap, total: usize) -> Result<Option<(usize, usize)>, Box<Response>> {
    let (first, last) = match headers.get(header::RANGE) {
        None => (0, PAGE_MAX - 1),
        Some(value) => {
            let parsed = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().strip_prefix("items="))
                .and_then(|v| v.split_once('-'))
                .and_then(|(a, b)| Some((a.trim().parse::<usize>().ok()?, b.trim().parse::<usize>().ok()?)))
                .filter(|(a, b)| a <= b);
            parsed.ok_or_else(|| {
                Box::new(error(StatusCode::PRECONDITION_FAILED, "precondition_failed", "Malformed Range header"))
            })?
        }
    };
    if total == 0 {
        return Ok(None);
    }
    if first >= total {
        return Err(Box::new(error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "requested_range_not_satisfiable",
            "Range not satisfiable",
        )));
    }
    let last = last.min(first + PAGE_MAX - 1).min(total - 1);
    Ok(Some((first, last)))
}

fn paged_answer(headers: &HeaderMap, items: Vec<Value>) -> Response {
    let total = items.len();
    match page(headers, total) {
        Err(response) => *response,
        Ok(None) => {
            let mut response = Json(json!([])).into_response();
            response.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_static("items */0"));
            response
        }
        Ok(Some((first, last))) => {
            let slice: Vec<Value> = items.into_iter().skip(first).take(last - first + 1).collect();
            let mut response = Json(Value::Array(slice)).into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("items {first}-{last}/{total}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
    }
}

fn no_card() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "Card not found")
}

fn no_txn() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "Transaction not found")
}

// ---------------------------------------------------------------------------------------------------------
// Handlers.

macro_rules! book_or_401 {
    ($inner:expr, $user:expr, $now:expr) => {
        match $inner.ledger.book(EXCHANGE, $user, $now) {
            Some(book) => book,
            None => return invalid_token("no such sandbox user"),
        }
    };
}

async fn list_cards(State(sandbox): State<Shared>, headers: HeaderMap) -> Response {
    let (user, now) = match begin(&sandbox, "GET /v0/me/cards", &headers, Auth::Read).await {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    let mut guard = sandbox.lock();
    let inner = &mut *guard;
    let book = book_or_401!(inner, user.as_deref().unwrap_or_default(), now);
    let cards = card_list(book).iter().enumerate().map(|(i, (c, b))| card_json(book, i, c, *b)).collect();
    paged_answer(&headers, cards)
}

async fn get_card(State(sandbox): State<Shared>, headers: HeaderMap, Path(card): Path<String>) -> Response {
    let (user, now) = match begin(&sandbox, "GET /v0/me/cards/:id", &headers, Auth::Read).await {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    let mut guard = sandbox.lock();
    let inner = &mut *guard;
    let book = book_or_401!(inner, user.as_deref().unwrap_or_default(), now);
    let cards = card_list(book);
    match cards.iter().enumerate().find(|(_, (c, _))| card_id(book, c) == card) {
        Some((i, (c, b))) => Json(card_json(book, i, c, *b)).into_response(),
        None => no_card(),
    }
}

/// The currency of `card` in `book`, if the user has it.
fn card_currency(book: &Book, card: &str) -> Option<String> {
    card_list(book).into_iter().map(|(c, _)| c).find(|c| card_id(book, c) == card)
}

async fn list_addresses(State(sandbox): State<Shared>, headers: HeaderMap, Path(card): Path<String>) -> Response {
    let (user, now) = match begin(&sandbox, "GET /v0/me/cards/:id/addresses", &headers, Auth::Read).await {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    let mut guard = sandbox.lock();
    let inner = &mut *guard;
    let book = book_or_401!(inner, user.as_deref().unwrap_or_default(), now);
    let Some(currency) = card_currency(book, &card) else { return no_card() };
    let addresses: Vec<Value> = networks_of(&currency)
        .into_iter()
        .map(|n| json!({"formats": [{"format": "pubkeyhash", "value": book.deposit_address(n)}], "type": n}))
        .collect();
    Json(Value::Array(addresses)).into_response()
}

async fn create_address(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    Path(card): Path<String>,
    body: Bytes,
) -> Response {
    // Uphold requires `cards:write` here; the sandbox's Uphold flavor has no such scope, so any token may.
    let (user, now) = match begin(&sandbox, "POST /v0/me/cards/:id/addresses", &headers, Auth::Read).await {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    let network = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("network").and_then(Value::as_str).map(str::to_owned));
    let Some(network) = network else {
        return validation("network", "required", "This value is required", None);
    };
    let mut guard = sandbox.lock();
    let inner = &mut *guard;
    let book = book_or_401!(inner, user.as_deref().unwrap_or_default(), now);
    let Some(currency) = card_currency(book, &card) else { return no_card() };
    if !networks_of(&currency).contains(&network.as_str()) {
        return validation("network", "invalid", "The card's currency is not available on that network", None);
    }
    Json(json!({"id": book.deposit_address(&network), "network": network})).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct CommitQuery {
    #[serde(default)]
    commit: Option<String>,
}

/// A decimal given as Uphold takes it: a string (or, as older examples show, a JSON number).
fn amount_of(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
    .filter(|a| a.is_finite())
}

async fn create_transaction(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    Path(card): Path<String>,
    Query(query): Query<CommitQuery>,
    body: Bytes,
) -> Response {
    let (user, now) = match begin(&sandbox, "POST /v0/me/cards/:card/transactions", &headers, Auth::Write).await {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    let username = user.unwrap_or_default();
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "validation_failed", "The request body is not JSON");
    };
    let commit = query.commit.as_deref() == Some("true");
    let mut guard = sandbox.lock();
    let inner = &mut *guard;
    let book = book_or_401!(inner, &username, now);
    let Some(symbol) = card_currency(book, &card) else { return no_card() };
    if symbol == "USD" {
        return validation(
            "destination",
            "invalid",
            "The sandbox sends to crypto addresses from crypto cards only",
            None,
        );
    }
    let denomination = body.get("denomination");
    let Some(requested) = amount_of(denomination.and_then(|d| d.get("amount"))) else {
        return validation("denomination.amount", "required", "This value is required", None);
    };
    let currency = denomination.and_then(|d| d.get("currency")).and_then(Value::as_str).unwrap_or(&symbol);
    let amount = if currency == symbol {
        requested
    } else if currency == "USD" {
        requested / ledger::price(&symbol).map(|(_, p)| p).unwrap_or(f64::INFINITY)
    } else {
        return validation("denomination.currency", "invalid", "Unsupported denomination currency", None);
    };
    let Some(address) = body.get("destination").and_then(Value::as_str).map(str::to_owned) else {
        return validation("destination", "required", "This value is required", None);
    };
    let network = match body.get("network").and_then(Value::as_str) {
        Some(n) => n.to_owned(),
        None => match networks_of(&symbol).as_slice() {
            [only] => (*only).to_owned(),
            _ => return validation("network", "required", "The currency moves on several networks: name one", None),
        },
    };
    let quote = match book.quote(&symbol, &network, &address, amount) {
        Ok(quote) => quote,
        Err(r) => return refusal(r, &symbol, &network),
    };
    let args = SendArgs { symbol: symbol.clone(), network: network.clone(), address, tag: None, amount };
    let id = uuid::Uuid::new_v4().to_string();
    let reference = body.get("reference").and_then(Value::as_str).map(|r| r.chars().take(128).collect::<String>());
    let txn = Txn {
        username,
        card_id: card.clone(),
        args: args.clone(),
        fee: quote.fee,
        created_at: now,
        reference,
        committed: commit,
    };
    if commit {
        let (transfer, moved) = match book.send(args, Some(&id), now) {
            Ok(sent) => sent,
            Err(r) => return refusal(r, &symbol, &network),
        };
        let rendered = committed_json(Some(&txn), book, &transfer, now);
        if moved {
            inner.counts.transfer_created(EXCHANGE);
        }
        inner.uphold.txns.insert(id, txn);
        return Json(rendered).into_response();
    }
    let rendered = txn_json(&Rendered {
        id: &id,
        card_id: &card,
        args: &txn.args,
        fee: txn.fee,
        created_at: now,
        status: "pending",
        reference: txn.reference.as_deref(),
        hash: None,
        expires_at: Some(txn.expires_at()),
    });
    // Quotes nobody committed are forgotten a minute after they expire, so the map stays bounded by use.
    inner.uphold.txns.retain(|_, t| t.committed || now < t.expires_at() + time::Duration::minutes(1));
    inner.uphold.txns.insert(id, txn);
    Json(rendered).into_response()
}

async fn commit_transaction(
    State(sandbox): State<Shared>,
    headers: HeaderMap,
    Path((card, id)): Path<(String, String)>,
) -> Response {
    let endpoint = "POST /v0/me/cards/:card/transactions/:id/commit";
    let (user, now) = match begin(&sandbox, endpoint, &headers, Auth::Write).await {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    let username = user.unwrap_or_default();
    let mut guard = sandbox.lock();
    let inner = &mut *guard;
    let Some(txn) = inner.uphold.txns.get(&id).filter(|t| t.username == username && t.card_id == card).cloned() else {
        return no_txn();
    };
    if !txn.committed && now >= txn.expires_at() {
        // Uphold: committing past `params.ttl` is a 404.
        return no_txn();
    }
    let book = book_or_401!(inner, &username, now);
    // The transaction id is the ledger's idempotency key: a second commit cannot debit twice.
    let (transfer, moved) = match book.send(txn.args.clone(), Some(&id), now) {
        Ok(sent) => sent,
        Err(r) => return refusal(r, &txn.args.symbol, &txn.args.network),
    };
    if !moved {
        return error(StatusCode::CONFLICT, "conflict", "The transaction is not pending: it was already committed");
    }
    let rendered = committed_json(Some(&txn), book, &transfer, now);
    inner.counts.transfer_created(EXCHANGE);
    if let Some(stored) = inner.uphold.txns.get_mut(&id) {
        stored.committed = true;
    }
    Json(rendered).into_response()
}

async fn get_transaction(State(sandbox): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (user, now) = match begin(&sandbox, "GET /v0/me/transactions/:id", &headers, Auth::Read).await {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    let username = user.unwrap_or_default();
    let mut guard = sandbox.lock();
    let inner = &mut *guard;
    let Some(txn) = inner.uphold.txns.get(&id).filter(|t| t.username == username).cloned() else {
        return no_txn();
    };
    let book = book_or_401!(inner, &username, now);
    if let Some(transfer) = book.transfers.iter().find(|t| t.idem.as_deref() == Some(id.as_str())) {
        return Json(committed_json(Some(&txn), book, transfer, now)).into_response();
    }
    if now >= txn.expires_at() {
        return no_txn();
    }
    Json(txn_json(&Rendered {
        id: &id,
        card_id: &txn.card_id,
        args: &txn.args,
        fee: txn.fee,
        created_at: txn.created_at,
        status: "pending",
        reference: txn.reference.as_deref(),
        hash: None,
        expires_at: Some(txn.expires_at()),
    }))
    .into_response()
}

async fn list_transactions(State(sandbox): State<Shared>, headers: HeaderMap) -> Response {
    let (user, now) = match begin(&sandbox, "GET /v0/me/transactions", &headers, Auth::Read).await {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    let username = user.unwrap_or_default();
    let mut guard = sandbox.lock();
    let inner = &mut *guard;
    let Some(book) = inner.ledger.book(EXCHANGE, &username, now) else { return invalid_token("no such sandbox user") };
    let txns = &inner.uphold.txns;
    // Committed transactions, newest first.
    let items: Vec<Value> = book
        .transfers
        .iter()
        .rev()
        .map(|t| committed_json(t.idem.as_ref().and_then(|i| txns.get(i)), book, t, now))
        .collect();
    paged_answer(&headers, items)
}

async fn ticker(State(sandbox): State<Shared>, headers: HeaderMap, Path(currency): Path<String>) -> Response {
    if let Err(response) = begin(&sandbox, "GET /v0/ticker/:currency", &headers, Auth::Public).await {
        return *response;
    }
    let pair = |symbol: &str, price: f64| json!({"ask": format!("{price:.4}"), "bid": format!("{price:.4}"), "currency": "USD", "pair": format!("{symbol}USD")});
    if currency == "USD" {
        let mut all: Vec<Value> = ledger::PRICES.iter().map(|(s, _, p)| pair(s, *p)).collect();
        all.push(pair("USD", 1.0));
        return Json(Value::Array(all)).into_response();
    }
    match currency.strip_suffix("USD").and_then(ledger::price) {
        Some((_, price)) => Json(pair(currency.trim_end_matches("USD"), price)).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "Currency or pair not found"),
    }
}

async fn assets(State(sandbox): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(response) = begin(&sandbox, "GET /v0/assets", &headers, Auth::Public).await {
        return *response;
    }
    let format = |precision: u32| json!({"decimal": ".", "format": "__value__ __code__", "grouping": ",", "precision": precision});
    let mut items = vec![json!({
        "code": "USD", "formatting": format(2), "name": "US Dollar", "status": "open", "symbol": "$", "type": "fiat",
    })];
    for (symbol, name, price) in ledger::PRICES {
        let kind = if (*price - 1.0).abs() < f64::EPSILON { "stablecoin" } else { "cryptocurrency" };
        items.push(json!({
            "code": symbol, "formatting": format(8), "name": name, "status": "open", "type": kind,
            // The sandbox lists each asset's networks (its ledger knows them).
            "networks": networks_of(symbol),
        }));
    }
    paged_answer(&headers, items)
}
