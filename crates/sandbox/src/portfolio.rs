//! Sandbox users and their per-exchange portfolios (accounts, holdings, balances, transfers), and the API
//! answers every sandbox exchange serves for a signed-in user. Portfolios are stateful: transfers deduct.

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
        transfers: Vec::new(),
    };
    let single = |symbol: &str, amount: f64| Portfolio {
        cash: 0.0,
        holdings: vec![(symbol.to_owned(), amount)],
        transfers: Vec::new(),
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

#[derive(Debug, Clone, Default)]
pub struct Portfolio {
    cash: f64,
    holdings: Vec<(String, f64)>,
    transfers: Vec<Value>,
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
    CreateTransfer(Value),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TransferBody {
    symbol: String,
    amount: f64,
    address: String,
    #[serde(default)]
    network: Option<String>,
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
        ApiCall::CreateTransfer(body) => {
            if !can_write {
                return json_error(StatusCode::FORBIDDEN, "insufficient_scope", "transfers need the write scope");
            }
            let body: TransferBody = match serde_json::from_value(body) {
                Ok(b) => b,
                Err(e) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
            };
            if !(body.amount.is_finite() && body.amount > 0.0) {
                return json_error(StatusCode::BAD_REQUEST, "invalid_request", "amount must be a positive number");
            }
            if body.address.trim().is_empty() {
                return json_error(StatusCode::BAD_REQUEST, "invalid_request", "address is required");
            }
            let Some(held) = portfolio.holdings.iter_mut().find(|(s, _)| *s == body.symbol) else {
                return json_error(StatusCode::BAD_REQUEST, "insufficient_funds", "no holding of that symbol");
            };
            if held.1 + 1e-12 < body.amount {
                return json_error(StatusCode::BAD_REQUEST, "insufficient_funds", "amount exceeds the holding");
            }
            held.1 -= body.amount;
            let transfer = json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "symbol": body.symbol,
                "amount": body.amount,
                "address": body.address,
                "network": body.network,
                "status": "succeeded",
                "createdAt": now.format(&Rfc3339).unwrap_or_default(),
            });
            portfolio.transfers.push(transfer.clone());
            (StatusCode::CREATED, Json(json!({"transfer": transfer}))).into_response()
        }
    }
}
