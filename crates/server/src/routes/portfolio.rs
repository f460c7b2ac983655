//! `POST /api/v1/holdings/get` and `POST /api/v1/balance/get`: read an account through its tokenId, in
//! Mesh's shapes, without the app ever handling the integration's token.

use axum::extract::State;
use linkvault_domain::Operation;
use linkvault_integrations::api::ApiError as Upstream;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::routes::token_use::{Unusable, reauthentication_required, resolve, upstream_error};

/// Mesh's `BrokerBaseRequest` (+ `includeMarketValue` for holdings).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenRequest {
    auth_token: String,
    #[serde(rename = "type")]
    integration_type: String,
    #[serde(default)]
    #[allow(dead_code)] // accepted for compatibility; market values are always included
    include_market_value: Option<bool>,
    /// Extension: the end user the call is for; another user's tokenId is then not found.
    #[serde(default)]
    user_id: Option<String>,
}

fn not_authorized_holdings(record_type: &str, message: &str) -> ApiOk<Value> {
    ApiOk(Some(json!({
        "status": "notAuthorized",
        "errorMessage": message,
        "displayMessage": "Please reconnect your account.",
        "type": record_type,
        "equityPositions": [], "cryptocurrencyPositions": [], "notSupportedEquityPositions": [],
        "notSupportedCryptocurrencyPositions": [], "nftPositions": [], "optionPositions": [],
    })))
}

pub(crate) async fn holdings(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    let user = req.user_id.as_deref();
    let resolved = match resolve(&state, &caller, &req.auth_token, &req.integration_type, user, Operation::Read).await {
        Ok(r) => r,
        // Holdings report a needed re-authentication inside the result, as Mesh's HoldingsModel does.
        Err(Unusable::ReauthRequired { integration, .. }) => {
            return Ok(not_authorized_holdings(&integration, "the end user must sign in again"));
        }
        Err(Unusable::Error(e)) => return Err(e),
    };
    let token = &resolved.credentials.access_token;
    let holdings = match state.exchange.legacy.holdings(resolved.integration, token).await {
        Ok(h) => h,
        Err(Upstream::Unauthorized) => {
            return Ok(not_authorized_holdings(
                &resolved.record.integration,
                "the integration no longer accepts this connection",
            ));
        }
        Err(e) => return Err(upstream_error(resolved.integration, &e)),
    };
    let positions: Vec<Value> = holdings
        .iter()
        .map(|h| {
            json!({
                "name": h.name, "symbol": h.symbol, "amount": h.amount,
                "lastPrice": h.price_usd, "marketValue": h.value_usd,
            })
        })
        .collect();
    Ok(ApiOk(Some(json!({
        "status": "succeeded",
        "type": resolved.record.integration,
        "accountId": resolved.record.account_id,
        "accountName": resolved.record.account_name,
        "institutionName": resolved.integration.name,
        "cryptocurrencyPositions": positions,
        "equityPositions": [], "notSupportedEquityPositions": [], "notSupportedCryptocurrencyPositions": [],
        "nftPositions": [], "optionPositions": [],
    }))))
}

pub(crate) async fn balance(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    let user = req.user_id.as_deref();
    let resolved = match resolve(&state, &caller, &req.auth_token, &req.integration_type, user, Operation::Read).await {
        Ok(r) => r,
        Err(Unusable::ReauthRequired { token_id, integration }) => {
            return Err(reauthentication_required(token_id, &integration));
        }
        Err(Unusable::Error(e)) => return Err(e),
    };
    let balances = match state.exchange.legacy.balances(resolved.integration, &resolved.credentials.access_token).await
    {
        Ok(b) => b,
        Err(Upstream::Unauthorized) => {
            return Err(reauthentication_required(resolved.record.token_id, &resolved.record.integration));
        }
        Err(e) => return Err(upstream_error(resolved.integration, &e)),
    };
    let total_cash: f64 = balances.iter().filter(|b| b.currency == "USD").map(|b| b.cash).sum();
    let total_power: f64 = balances.iter().filter(|b| b.currency == "USD").map(|b| b.buying_power).sum();
    let items: Vec<Value> = balances
        .iter()
        .map(|b| json!({"cash": b.cash, "buyingPower": b.buying_power, "cryptocurrencyBuyingPower": b.buying_power, "currencyCode": b.currency}))
        .collect();
    Ok(ApiOk(Some(json!({
        "balances": items,
        "totalCashUsdValue": total_cash,
        "totalBuyingPowerUsdValue": total_power,
    }))))
}
