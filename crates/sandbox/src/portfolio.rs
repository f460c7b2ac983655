//! Sandbox users and their per-exchange portfolios (accounts, holdings, balances, transfers), and the API
//! answers every sandbox exchange serves for a signed-in user. Portfolios are stateful: transfers deduct the
//! amount plus the network's withdrawal fee. Sends honour an idempotency key (`idem`, as Coinbase's send API
//! takes one): a repeated key returns the transfer it created instead of sending again.

use std::collections::HashMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::util::json_error;

/// Fixed sandbox prices (USD).
const PRICES: &[(&str, &str, f64)] = &[
    ("BTC", "Bitcoin", 65_000.0),
    ("ETH", "Ethereum", 3_500.0),
    ("SOL", "Solana", 150.0),
    ("USDC", "USD Coin", 1.0),
    ("USDT", "Tether", 1.0),
    ("PYUSD", "PayPal USD", 1.0),
];

/// The sandbox usernames (Mesh's sandbox naming); all use password `Pass123`.
pub fn is_known_user(username: &str) -> bool {
    initial_portfolio(username).is_some()
}

fn initial_portfolio(username: &str) -> Option<Portfolio> {
    let full = |factor: f64| Portfolio {
        cash: 10_000_000.0 * factor,
        holdings: vec![
            ("BTC".to_owned(), 12.5 * factor),
            ("ETH".to_owned(), 240.0 * factor),
            ("SOL".to_owned(), 5_000.0 * factor),
            ("USDC".to_owned(), 250_000.0 * factor),
        ],
        ..Portfolio::default()
    };
    let single = |symbol: &str, amount: f64| Portfolio {
        cash: 0.0,
        holdings: vec![(symbol.to_owned(), amount)],
        ..Portfolio::default()
    };
    Some(match username {
        "Mesh" => full(1.0),
        "Mesh2" => Portfolio::default(),
        "Mesh3" => Portfolio { cash: 10_000_000.0, ..Portfolio::default() },
        "Mesh4" => full(10.0),
        "MeshBTC" => single("BTC", 10.0),
        "MeshETH" => single("ETH", 100.0),
        "MeshSOL" => single("SOL", 1_000.0),
        "MeshUSDC" => single("USDC", 100_000.0),
        "MeshUSDT" => single("USDT", 100_000.0),
        "MeshPYUSD" => single("PYUSD", 100_000.0),
        _ => return None,
    })
}

/// Withdrawal fee per (symbol, network), in the symbol: what the sandbox supports sending where.
const NETWORK_FEES: &[(&str, &str, f64)] = &[
    ("ETH", "ethereum", 0.0005),
    ("ETH", "base", 0.00002),
    ("USDC", "ethereum", 2.0),
    ("USDC", "polygon", 0.1),
    ("USDC", "solana", 0.05),
    ("USDC", "base", 0.05),
    ("USDT", "ethereum", 2.0),
    ("USDT", "polygon", 0.1),
    ("PYUSD", "ethereum", 2.0),
    ("PYUSD", "solana", 0.05),
    ("SOL", "solana", 0.000_005),
];
const NETWORKS: &[&str] = &["ethereum", "polygon", "solana", "base"];

#[derive(Debug, Clone, Default)]
pub struct Portfolio {
    cash: f64,
    holdings: Vec<(String, f64)>,
    transfers: Vec<Value>,
    /// Transfers by the idempotency key they were sent with, and the request they answered.
    by_idem: HashMap<String, (TransferBody, Value)>,
}

#[derive(Debug, Default)]
pub struct Portfolios {
    by_user: HashMap<(&'static str, String), Portfolio>,
}

impl Portfolios {
    fn get(&mut self, exchange: &'static str, username: &str) -> Option<&mut Portfolio> {
        let key = (exchange, username.to_owned());
        if !self.by_user.contains_key(&key) {
            self.by_user.insert(key.clone(), initial_portfolio(username)?);
        }
        self.by_user.get_mut(&key)
    }
}

fn price(symbol: &str) -> Option<(&'static str, f64)> {
    PRICES.iter().find(|(s, _, _)| *s == symbol).map(|(_, name, p)| (*name, *p))
}

/// Which API call a signed-in user makes.
#[derive(Debug)]
pub enum ApiCall {
    Accounts,
    Holdings,
    Balances,
    Transfers,
    /// Checks a send (balance, network, fee) without making it.
    QuoteTransfer(Value),
    CreateTransfer(Value),
}

impl ApiCall {
    /// The name the admin request counters use.
    pub fn name(&self) -> &'static str {
        match self {
            ApiCall::Accounts => "accounts",
            ApiCall::Holdings => "holdings",
            ApiCall::Balances => "balances",
            ApiCall::Transfers => "transfers.list",
            ApiCall::QuoteTransfer(_) => "transfers.quote",
            ApiCall::CreateTransfer(_) => "transfers.create",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TransferBody {
    symbol: String,
    amount: f64,
    address: String,
    /// Without a network the send is an internal book transfer, without fee.
    #[serde(default)]
    network: Option<String>,
    /// The client's idempotency key for this send.
    #[serde(default)]
    idem: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QuoteBody {
    symbol: String,
    network: String,
    address: String,
    /// Exactly one of `amount` (in the symbol) and `amountUsd`.
    #[serde(default)]
    amount: Option<f64>,
    #[serde(default)]
    amount_usd: Option<f64>,
}

/// The fee for sending `symbol` over `network`, or the error code and message refusing it.
fn network_fee(symbol: &str, network: &str) -> Result<f64, (&'static str, &'static str)> {
    if !NETWORKS.contains(&network) {
        return Err(("unsupported_network", "the exchange does not send over that network"));
    }
    NETWORK_FEES
        .iter()
        .find(|(s, n, _)| *s == symbol && *n == network)
        .map(|(_, _, fee)| *fee)
        .ok_or(("unsupported_symbol", "the exchange does not send that symbol over that network"))
}

fn positive(amount: f64) -> bool {
    amount.is_finite() && amount > 0.0
}

/// Answers an API call for `username` at `exchange`. `can_write` is the token's write scope.
pub fn answer(
    portfolios: &mut Portfolios,
    exchange: &'static str,
    username: &str,
    can_write: bool,
    now: OffsetDateTime,
    call: ApiCall,
) -> Response {
    let Some(portfolio) = portfolios.get(exchange, username) else {
        return json_error(StatusCode::NOT_FOUND, "unknown_user", "no such sandbox user");
    };
    let account_id = format!("{exchange}-{username}-main");
    match call {
        ApiCall::Accounts => Json(json!({
            "accounts": [{"id": account_id, "name": format!("{username}'s {exchange} account")}]
        }))
        .into_response(),
        ApiCall::Holdings => {
            let holdings: Vec<Value> = portfolio
                .holdings
                .iter()
                .filter(|(_, amount)| *amount > 0.0)
                .filter_map(|(symbol, amount)| {
                    let (name, p) = price(symbol)?;
                    Some(json!({"symbol": symbol, "name": name, "amount": amount, "priceUsd": p, "valueUsd": amount * p}))
                })
                .collect();
            Json(json!({"accountId": account_id, "holdings": holdings})).into_response()
        }
        ApiCall::Balances => Json(json!({
            "accountId": account_id,
            "balances": [{"currency": "USD", "cash": portfolio.cash, "buyingPower": portfolio.cash}]
        }))
        .into_response(),
        ApiCall::Transfers => Json(json!({"transfers": portfolio.transfers})).into_response(),
        ApiCall::QuoteTransfer(body) => {
            if !can_write {
                return json_error(StatusCode::FORBIDDEN, "insufficient_scope", "transfers need the write scope");
            }
            let body: QuoteBody = match serde_json::from_value(body) {
                Ok(b) => b,
                Err(e) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
            };
            let Some((_, price_usd)) = price(&body.symbol) else {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_symbol",
                    "the exchange does not list that symbol",
                );
            };
            let fee = match network_fee(&body.symbol, &body.network) {
                Ok(fee) => fee,
                Err((code, message)) => return json_error(StatusCode::BAD_REQUEST, code, message),
            };
            let amount = match (body.amount, body.amount_usd) {
                (Some(a), None) if positive(a) => a,
                (None, Some(usd)) if positive(usd) => usd / price_usd,
                _ => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "send one positive amount: amount or amountUsd",
                    );
                }
            };
            if body.address.trim().is_empty() {
                return json_error(StatusCode::BAD_REQUEST, "invalid_address", "address is required");
            }
            let available = portfolio.holdings.iter().find(|(s, _)| *s == body.symbol).map(|(_, a)| *a).unwrap_or(0.0);
            if available + 1e-12 < amount + fee {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "insufficient_funds",
                    "the amount plus the network fee exceeds the available balance",
                );
            }
            Json(json!({"quote": {
                "symbol": body.symbol, "network": body.network, "address": body.address,
                "amount": amount, "fee": fee, "feeCurrency": body.symbol, "priceUsd": price_usd,
                "available": available, "fromAddress": deposit_address(&account_id, &body.network),
            }}))
            .into_response()
        }
        ApiCall::CreateTransfer(body) => {
            if !can_write {
                return json_error(StatusCode::FORBIDDEN, "insufficient_scope", "transfers need the write scope");
            }
            let body: TransferBody = match serde_json::from_value(body) {
                Ok(b) => b,
                Err(e) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
            };
            // A key seen before answers with what it created, whatever the balance is now: the send happened once.
            if let Some(idem) = body.idem.as_deref() {
                if idem.is_empty() || idem.len() > 100 {
                    return json_error(StatusCode::BAD_REQUEST, "invalid_request", "idem must be 1-100 characters");
                }
                if let Some((first, transfer)) = portfolio.by_idem.get(idem) {
                    if *first != body {
                        return json_error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "idempotency_key_reused",
                            "this idem was used for another transfer",
                        );
                    }
                    return (StatusCode::OK, Json(json!({"transfer": transfer}))).into_response();
                }
            }
            if !positive(body.amount) {
                return json_error(StatusCode::BAD_REQUEST, "invalid_request", "amount must be a positive number");
            }
            if body.address.trim().is_empty() {
                return json_error(StatusCode::BAD_REQUEST, "invalid_request", "address is required");
            }
            let fee = match body.network.as_deref().map(|n| network_fee(&body.symbol, n)).transpose() {
                Ok(fee) => fee.unwrap_or(0.0),
                Err((code, message)) => return json_error(StatusCode::BAD_REQUEST, code, message),
            };
            let Some(held) = portfolio.holdings.iter_mut().find(|(s, _)| *s == body.symbol) else {
                return json_error(StatusCode::BAD_REQUEST, "insufficient_funds", "no holding of that symbol");
            };
            if held.1 + 1e-12 < body.amount + fee {
                return json_error(StatusCode::BAD_REQUEST, "insufficient_funds", "amount and fee exceed the holding");
            }
            held.1 -= body.amount + fee;
            let id = uuid::Uuid::new_v4();
            let transfer = json!({
                "id": id.to_string(),
                "symbol": body.symbol,
                "amount": body.amount,
                "fee": fee,
                "address": body.address,
                "network": body.network,
                "fromAddress": body.network.as_deref().map(|n| deposit_address(&account_id, n)),
                "hash": format!("0x{}", id.simple()),
                "status": "succeeded",
                "createdAt": now.format(&Rfc3339).unwrap_or_default(),
            });
            portfolio.transfers.push(transfer.clone());
            if let Some(idem) = body.idem.clone() {
                portfolio.by_idem.insert(idem, (body, transfer.clone()));
            }
            (StatusCode::CREATED, Json(json!({"transfer": transfer}))).into_response()
        }
    }
}

/// The account's (made-up, stable) address on a network.
fn deposit_address(account_id: &str, network: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{account_id}/{network}").as_bytes());
    let hex: String = digest.as_ref().iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("0x{hex}")
}
