//! Reading accounts through their tokenIds, in Mesh's shapes, without the app ever handling the integration's
//! token: `POST /api/v1/holdings/get`, `/holdings/value`, `/balance/get` for one connection, and
//! `GET /api/v1/holdings/portfolio` and `/balance/portfolio` over all of an end user's connections.

use axum::extract::State;
use linkvault_domain::{IntegrationType, Operation, UserId};
use linkvault_integrations::api::{Balance, Holding};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::token_use::{AccountFailure, Resolved, call_account, upstream_error, use_connection};
use linkvault_vault::UseRefusal;

use crate::routes::openapi::{
    ApiResult, BalanceModel, FiatPortfolioModel, HoldingsModel, HoldingsValueModel, PortfolioModel,
};

/// Mesh's `BrokerBaseRequest` (+ `includeMarketValue` for holdings).
#[derive(Deserialize, ToSchema)]
#[schema(as = HoldingsRequest)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenRequest {
    /// The tokenId, or (client-managed token mode) a linkvault access token lva_…
    #[schema(min_length = 1)]
    pub(crate) auth_token: String,
    #[serde(rename = "type")]
    pub(crate) integration_type: String,
    /// Accepted for compatibility; market values are always included
    #[serde(default)]
    #[allow(dead_code)]
    include_market_value: Option<bool>,
    /// Extension: the end user the call is for; another user's tokenId is then tokenNotFound
    #[serde(default)]
    pub(crate) user_id: Option<String>,
}

/// Mesh's `?UserId=` of the portfolio endpoints (`userId` accepted too).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PortfolioQuery {
    /// The end user (also accepted as userId); missing: 400 missingField.
    #[serde(rename = "UserId", alias = "userId")]
    #[param(required = true, min_length = 1, max_length = 300)]
    user_id: Option<String>,
    /// Accepted for compatibility (seconds east of UTC); no figure here depends on the day boundary.
    #[serde(rename = "TimezoneOffset", alias = "timezoneOffset", default)]
    #[allow(dead_code)]
    timezone_offset: Option<i64>,
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

/// Mesh's `PositionWithMarketValue`.
fn position(h: &Holding) -> Value {
    json!({
        "name": h.name, "symbol": h.symbol, "amount": h.amount,
        "costBasis": h.cost_basis_usd, "lastPrice": h.price_usd, "marketValue": h.value_usd,
    })
}

async fn resolve_read<'a>(
    state: &'a AppState,
    caller: &linkvault_vault::Caller,
    req: &TokenRequest,
) -> Result<Resolved<'a>, UseRefusal> {
    use_connection(state, caller, &req.auth_token, &req.integration_type, req.user_id.as_deref(), Operation::Read).await
}

#[utoipa::path(
    post,
    path = "/api/v1/holdings/get",
    operation_id = "getHoldings",
    summary = "Holdings of a connected account (read)",
    description = "Resolves the tokenId (refreshing on demand) and asks the integration for the account's positions. A \
        connection the end user must sign in to again answers 200 with content.status notAuthorized.",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Answered", body = HoldingsModel),
        (status = 400, description = "missingField / invalidField naming the field, integrationNotFound", body = ApiResult),
        (status = 403, description = "tokenExpired, tokenRevoked (client-managed access tokens)", body = ApiResult),
        (status = 404, description = "tokenNotFound (unknown, another client's, or with userId another user's)", body = ApiResult),
        (status = 500, description = "integrationUnavailable", body = ApiResult),
    )
)]
pub(crate) async fn holdings(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    let mut resolved = match resolve_read(&state, &caller, &req).await {
        Ok(r) => r,
        // Holdings report a needed re-authentication inside the result, as Mesh's HoldingsModel does.
        Err(UseRefusal::ReauthRequired { integration, .. }) => {
            return Ok(not_authorized_holdings(&integration, "the end user must sign in again"));
        }
        Err(refusal) => return Err(refusal.into()),
    };
    let holdings = match call_account(&state, &mut resolved, &(), |api, call, ()| api.holdings(call)).await {
        Ok(h) => h,
        Err(AccountFailure::Reauth) => {
            return Ok(not_authorized_holdings(
                &resolved.record.integration,
                "the integration no longer accepts this connection; the end user must sign in again",
            ));
        }
        Err(e) => return Err(e.into_api_error(&resolved)),
    };
    Ok(ApiOk(Some(json!({
        "status": "succeeded",
        "type": resolved.record.integration,
        "accountId": resolved.record.account_id,
        "accountName": resolved.record.account_name,
        "institutionName": resolved.integration.name,
        "cryptocurrencyPositions": holdings.iter().map(position).collect::<Vec<_>>(),
        "equityPositions": [], "notSupportedEquityPositions": [], "notSupportedCryptocurrencyPositions": [],
        "nftPositions": [], "optionPositions": [],
    }))))
}

/// USD cash in a set of fiat balances (other currencies are listed but not converted).
fn usd_cash(balances: &[Balance]) -> (f64, f64) {
    let usd = balances.iter().filter(|b| b.currency.eq_ignore_ascii_case("USD"));
    usd.fold((0.0, 0.0), |(cash, power), b| (cash + b.cash, power + b.buying_power))
}

#[utoipa::path(
    post,
    path = "/api/v1/balance/get",
    operation_id = "getBalance",
    summary = "Balances of a connected account (read)",
    description = "Resolves the tokenId (refreshing on demand) and asks the integration for the account's cash balances.",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Answered", body = BalanceModel),
        (status = 400, description = "missingField / invalidField naming the field, integrationNotFound, \
            reauthenticationRequired (the end user must sign in again)", body = ApiResult),
        (status = 403, description = "tokenExpired, tokenRevoked (client-managed access tokens)", body = ApiResult),
        (status = 404, description = "tokenNotFound (unknown, another client's, or with userId another user's)", body = ApiResult),
        (status = 500, description = "integrationUnavailable", body = ApiResult),
    )
)]
pub(crate) async fn balance(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    let mut resolved = resolve_read(&state, &caller, &req).await?;
    let balances = call_account(&state, &mut resolved, &(), |api, call, ()| api.balances(call))
        .await
        .map_err(|e| e.into_api_error(&resolved))?;
    let (total_cash, total_power) = usd_cash(&balances);
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

/// Performance in percent of cost basis, when the cost is known.
fn performance(value: f64, cost_basis: Option<f64>) -> f64 {
    match cost_basis {
        Some(cost) if cost > 0.0 => (value - cost) / cost * 100.0,
        _ => 0.0,
    }
}

/// The USD value of the positions and what they cost (None when any position's cost is unknown).
fn crypto_totals(holdings: &[Holding]) -> (f64, Option<f64>) {
    let value = holdings.iter().filter_map(|h| h.value_usd).sum();
    let cost = holdings.iter().map(|h| h.cost_basis_usd).sum::<Option<f64>>();
    (value, cost)
}

/// `POST /api/v1/holdings/value`: Mesh's `BrokerPortfolioValueModel` for one connection.
#[utoipa::path(
    post,
    path = "/api/v1/holdings/value",
    operation_id = "getHoldingsValue",
    summary = "Value of a connected account (read)",
    description = "Mesh's BrokerPortfolioValueModel: the USD value of the positions and the fiat cash, from the provider.",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Answered", body = HoldingsValueModel),
        (status = 400, description = "missingField / invalidField naming the field, integrationNotFound, \
            reauthenticationRequired, featureNotSupported (the integration holds tokens only)", body = ApiResult),
        (status = 403, description = "tokenExpired, tokenRevoked (client-managed access tokens)", body = ApiResult),
        (status = 404, description = "tokenNotFound (unknown, another client's, or with userId another user's); \
            notFoundAtIntegration", body = ApiResult),
        (status = 500, description = "integrationUnavailable", body = ApiResult),
    )
)]
pub(crate) async fn value(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    let mut resolved = resolve_read(&state, &caller, &req).await?;
    let holdings = call_account(&state, &mut resolved, &(), |api, call, ()| api.holdings(call))
        .await
        .map_err(|e| e.into_api_error(&resolved))?;
    let balances = call_account(&state, &mut resolved, &(), |api, call, ()| api.balances(call))
        .await
        .map_err(|e| e.into_api_error(&resolved))?;
    let (crypto, cost) = crypto_totals(&holdings);
    let (fiat, _) = usd_cash(&balances);
    Ok(ApiOk(Some(json!({
        "totalValue": crypto + fiat,
        "totalPerformance": performance(crypto, cost),
        "equitiesValue": 0.0,
        "equitiesPerformance": 0.0,
        "cryptocurrenciesValue": crypto,
        "cryptocurrenciesPerformance": performance(crypto, cost),
        "nftsValue": 0.0,
        "fiatValue": fiat,
    }))))
}

fn portfolio_user(query: &PortfolioQuery) -> Result<UserId, ApiError> {
    let raw = query.user_id.as_deref().ok_or_else(|| ApiError::missing_field("UserId"))?;
    UserId::parse(raw).map_err(|e| ApiError::invalid_field("UserId", e.reason))
}

/// Every usable connection of the user, each with fresh credentials. A connection that needs the end user or
/// whose integration is unavailable right now is left out (the portfolio is the sum of what can be read).
async fn user_connections<'a>(
    state: &'a AppState,
    caller: &linkvault_vault::Caller,
    user: &UserId,
) -> Result<Vec<Resolved<'a>>, ApiError> {
    // Collected first: an iterator of closures held across the await would make the future not `Send`.
    let integrations: Vec<&IntegrationType> =
        state.catalog.iter().filter(|i| i.account_api.is_some()).map(|i| &i.integration_type).collect();
    let records = state.vault.connections_of_user(caller.client_id, user, integrations).await?;
    let mut usable = Vec::with_capacity(records.len());
    for record in records {
        let Some(integration) = state.catalog.get(&record.integration) else { continue };
        let token_id = record.token_id;
        let found = linkvault_vault::Authorized { record, integration, by_access_token: false };
        match state.vault.make_usable(&state.engine, found).await {
            Ok(resolved) => usable.push(resolved),
            Err(refusal) => {
                tracing::debug!(?refusal, %token_id, "portfolio leaves out a connection that is not usable now")
            }
        }
    }
    Ok(usable)
}

/// Adds `from` into `into`, one position per symbol.
fn merge_positions(into: &mut Vec<Holding>, from: Vec<Holding>) {
    for h in from {
        match into.iter_mut().find(|p| p.symbol == h.symbol) {
            Some(p) => {
                p.amount += h.amount;
                p.value_usd = Some(p.value_usd.unwrap_or(0.0) + h.value_usd.unwrap_or(0.0));
                p.cost_basis_usd = p.cost_basis_usd.zip(h.cost_basis_usd).map(|(a, b)| a + b);
                p.price_usd = p.price_usd.or(h.price_usd);
            }
            None => into.push(h),
        }
    }
}

/// `GET /api/v1/holdings/portfolio?UserId=…`: Mesh's `B2BPortfolioModel` over every connection of the user.
#[utoipa::path(
    get,
    path = "/api/v1/holdings/portfolio",
    operation_id = "holdingsPortfolio",
    summary = "Holdings over every connection of a user (read)",
    description = "Mesh's B2BPortfolioModel, positions summed per symbol over the user's connections; a connection that cannot \
        be read now is left out.",
    params(PortfolioQuery),
    responses(
        (status = 200, description = "Answered", body = PortfolioModel),
        (status = 400, description = "missingField / invalidField (UserId, TimezoneOffset)", body = ApiResult),
    )
)]
pub(crate) async fn holdings_portfolio(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiQuery(query): ApiQuery<PortfolioQuery>,
) -> Result<ApiOk<Value>, ApiError> {
    let user = portfolio_user(&query)?;
    let mut positions: Vec<Holding> = Vec::new();
    for mut resolved in user_connections(&state, &caller, &user).await? {
        match call_account(&state, &mut resolved, &(), |api, call, ()| api.holdings(call)).await {
            Ok(holdings) => merge_positions(&mut positions, holdings),
            Err(AccountFailure::Upstream(e)) => {
                let error = upstream_error(resolved.integration, &e);
                tracing::debug!(message = %error.message, "portfolio leaves out a connection the integration refused");
            }
            Err(_) => {}
        }
    }
    let (crypto, cost) = crypto_totals(&positions);
    let with_return: Vec<Value> = positions
        .iter()
        .map(|h| {
            let value = h.value_usd.unwrap_or(0.0);
            let total_return = h.cost_basis_usd.map(|c| value - c);
            let mut p = position(h);
            if let Some(obj) = p.as_object_mut() {
                obj.insert(
                    "portfolioPercentage".to_owned(),
                    json!(if crypto > 0.0 { value / crypto * 100.0 } else { 0.0 }),
                );
                obj.insert("totalReturn".to_owned(), json!(total_return));
                obj.insert(
                    "returnPercentage".to_owned(),
                    json!(h.cost_basis_usd.filter(|c| *c > 0.0).map(|c| (value - c) / c * 100.0)),
                );
                obj.insert("companyName".to_owned(), json!(h.name));
                obj.insert("totalDailyReturn".to_owned(), Value::Null);
                obj.insert("dailyReturnPercentage".to_owned(), Value::Null);
            }
            p
        })
        .collect();
    Ok(ApiOk(Some(json!({
        "portfolioCostBasis": cost,
        "actualPortfolioPerformance": cost.map(|c| performance(crypto, Some(c))),
        "equitiesValue": 0.0,
        "cryptocurrenciesValue": crypto,
        "nftsValue": 0.0,
        "equityPositions": [],
        "cryptocurrencyPositions": with_return,
        "nftPositions": [],
    }))))
}

/// `GET /api/v1/balance/portfolio?UserId=…`: Mesh's `B2BFiatPortfolioModel`, fiat balances summed per
/// currency over every connection of the user.
#[utoipa::path(
    get,
    path = "/api/v1/balance/portfolio",
    operation_id = "balancePortfolio",
    summary = "Fiat balances over every connection of a user (read)",
    description = "Mesh's B2BFiatPortfolioModel, summed per currency.",
    params(PortfolioQuery),
    responses(
        (status = 200, description = "Answered", body = FiatPortfolioModel),
        (status = 400, description = "missingField / invalidField (UserId, TimezoneOffset)", body = ApiResult),
    )
)]
pub(crate) async fn balance_portfolio(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiQuery(query): ApiQuery<PortfolioQuery>,
) -> Result<ApiOk<Value>, ApiError> {
    let user = portfolio_user(&query)?;
    let mut totals: Vec<Balance> = Vec::new();
    for mut resolved in user_connections(&state, &caller, &user).await? {
        let Ok(balances) = call_account(&state, &mut resolved, &(), |api, call, ()| api.balances(call)).await else {
            continue;
        };
        for b in balances {
            match totals.iter_mut().find(|t| t.currency.eq_ignore_ascii_case(&b.currency)) {
                Some(t) => {
                    t.cash += b.cash;
                    t.buying_power += b.buying_power;
                }
                None => totals.push(b),
            }
        }
    }
    let fiat: Vec<Value> =
        totals.iter().map(|b| json!({"symbol": b.currency, "cash": b.cash, "buyingPower": b.buying_power})).collect();
    Ok(ApiOk(Some(json!({ "fiatBalances": fiat }))))
}
