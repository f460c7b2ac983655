//! Reading accounts through their tokenIds, in Mesh's shapes, without the app ever handling the integration's
//! token: `POST /api/v1/holdings/get`, `/holdings/value`, `/balance/get` for one connection, and
//! `GET /api/v1/holdings/portfolio` and `/balance/portfolio` over all of an end user's connections.

use axum::extract::State;
use linkvault_domain::{IntegrationType, Operation, UserId};
use linkvault_integrations::api::{Balance, Holding};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::openapi::ApiResult;
use crate::routes::token_use::{AccountFailure, Resolved, call_account, upstream_error, use_connection};
use crate::routes::wire::{EmptyList, empty_list};
use linkvault_vault::UseRefusal;

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

/// Mesh's `HoldingsModel`; a connection the end user must sign in to again is answered inside it (`notAuthorized`,
/// without the account fields).
// Fields in JSON-name order (see `routes::wire`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HoldingsModel {
    /// Absent with notAuthorized.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    account_id: Option<Option<String>>,
    /// Absent with notAuthorized.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    account_name: Option<Option<String>>,
    cryptocurrency_positions: Vec<HoldingsPosition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    display_message: Option<&'static str>,
    #[schema(schema_with = empty_list)]
    equity_positions: EmptyList,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    error_message: Option<String>,
    /// Absent with notAuthorized.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    institution_name: Option<String>,
    #[schema(schema_with = empty_list)]
    nft_positions: EmptyList,
    #[schema(schema_with = empty_list)]
    not_supported_cryptocurrency_positions: EmptyList,
    #[schema(schema_with = empty_list)]
    not_supported_equity_positions: EmptyList,
    #[schema(schema_with = empty_list)]
    option_positions: EmptyList,
    status: HoldingsStatus,
    #[serde(rename = "type")]
    integration_type: String,
}

/// notAuthorized: the end user must sign in again (Link re-authenticates onto the same tokenId)
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) enum HoldingsStatus {
    Succeeded,
    NotAuthorized,
}

/// Mesh's `PositionWithMarketValue`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HoldingsPosition {
    amount: f64,
    cost_basis: Option<f64>,
    last_price: Option<f64>,
    market_value: Option<f64>,
    name: String,
    symbol: String,
}

impl From<&Holding> for HoldingsPosition {
    fn from(h: &Holding) -> Self {
        Self {
            amount: h.amount,
            cost_basis: h.cost_basis_usd,
            last_price: h.price_usd,
            market_value: h.value_usd,
            name: h.name.clone(),
            symbol: h.symbol.clone(),
        }
    }
}

impl HoldingsModel {
    fn not_authorized(record_type: &str, message: &str) -> Self {
        Self {
            account_id: None,
            account_name: None,
            cryptocurrency_positions: Vec::new(),
            display_message: Some("Please reconnect your account."),
            equity_positions: EmptyList,
            error_message: Some(message.to_owned()),
            institution_name: None,
            nft_positions: EmptyList,
            not_supported_cryptocurrency_positions: EmptyList,
            not_supported_equity_positions: EmptyList,
            option_positions: EmptyList,
            status: HoldingsStatus::NotAuthorized,
            integration_type: record_type.to_owned(),
        }
    }
}

/// Mesh's `BalanceModel`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BalanceModel {
    balances: Vec<BalanceEntry>,
    total_buying_power_usd_value: f64,
    total_cash_usd_value: f64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BalanceEntry {
    buying_power: f64,
    cash: f64,
    cryptocurrency_buying_power: f64,
    currency_code: String,
}

/// Mesh's `BrokerPortfolioValueModel`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HoldingsValueModel {
    cryptocurrencies_performance: f64,
    cryptocurrencies_value: f64,
    equities_performance: f64,
    equities_value: f64,
    fiat_value: f64,
    nfts_value: f64,
    total_performance: f64,
    total_value: f64,
}

/// Mesh's B2BPortfolioModel, over every connection of the user
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PortfolioModel {
    actual_portfolio_performance: Option<f64>,
    cryptocurrencies_value: f64,
    cryptocurrency_positions: Vec<PortfolioPosition>,
    equities_value: f64,
    #[schema(schema_with = empty_list)]
    equity_positions: EmptyList,
    #[schema(schema_with = empty_list)]
    nft_positions: EmptyList,
    nfts_value: f64,
    portfolio_cost_basis: Option<f64>,
}

/// One symbol's position summed over the user's connections.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PortfolioPosition {
    amount: f64,
    company_name: String,
    cost_basis: Option<f64>,
    /// Always null: no daily figures are kept.
    daily_return_percentage: Option<f64>,
    last_price: Option<f64>,
    market_value: Option<f64>,
    name: String,
    portfolio_percentage: f64,
    return_percentage: Option<f64>,
    symbol: String,
    /// Always null: no daily figures are kept.
    total_daily_return: Option<f64>,
    total_return: Option<f64>,
}

/// Mesh's B2BFiatPortfolioModel
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FiatPortfolioModel {
    fiat_balances: Vec<FiatBalance>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FiatBalance {
    buying_power: f64,
    cash: f64,
    symbol: String,
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
) -> Result<ApiOk<HoldingsModel>, ApiError> {
    let mut resolved = match resolve_read(&state, &caller, &req).await {
        Ok(r) => r,
        // Holdings report a needed re-authentication inside the result, as Mesh's HoldingsModel does.
        Err(UseRefusal::ReauthRequired { integration, .. }) => {
            return Ok(ApiOk(Some(HoldingsModel::not_authorized(&integration, "the end user must sign in again"))));
        }
        Err(refusal) => return Err(refusal.into()),
    };
    let holdings = match call_account(&state, &mut resolved, &(), |api, call, ()| api.holdings(call)).await {
        Ok(h) => h,
        Err(AccountFailure::Reauth) => {
            return Ok(ApiOk(Some(HoldingsModel::not_authorized(
                &resolved.record.integration,
                "the integration no longer accepts this connection; the end user must sign in again",
            ))));
        }
        Err(e) => return Err(e.into_api_error(&resolved)),
    };
    Ok(ApiOk(Some(HoldingsModel {
        account_id: Some(resolved.record.account_id.clone()),
        account_name: Some(resolved.record.account_name.clone()),
        cryptocurrency_positions: holdings.iter().map(HoldingsPosition::from).collect(),
        display_message: None,
        equity_positions: EmptyList,
        error_message: None,
        institution_name: Some(resolved.integration.name.clone()),
        nft_positions: EmptyList,
        not_supported_cryptocurrency_positions: EmptyList,
        not_supported_equity_positions: EmptyList,
        option_positions: EmptyList,
        status: HoldingsStatus::Succeeded,
        integration_type: resolved.record.integration.clone(),
    })))
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
) -> Result<ApiOk<BalanceModel>, ApiError> {
    let mut resolved = resolve_read(&state, &caller, &req).await?;
    let balances = call_account(&state, &mut resolved, &(), |api, call, ()| api.balances(call))
        .await
        .map_err(|e| e.into_api_error(&resolved))?;
    let (total_cash, total_power) = usd_cash(&balances);
    let balances = balances
        .iter()
        .map(|b| BalanceEntry {
            buying_power: b.buying_power,
            cash: b.cash,
            cryptocurrency_buying_power: b.buying_power,
            currency_code: b.currency.clone(),
        })
        .collect();
    Ok(ApiOk(Some(BalanceModel {
        balances,
        total_buying_power_usd_value: total_power,
        total_cash_usd_value: total_cash,
    })))
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
) -> Result<ApiOk<HoldingsValueModel>, ApiError> {
    let mut resolved = resolve_read(&state, &caller, &req).await?;
    let holdings = call_account(&state, &mut resolved, &(), |api, call, ()| api.holdings(call))
        .await
        .map_err(|e| e.into_api_error(&resolved))?;
    let balances = call_account(&state, &mut resolved, &(), |api, call, ()| api.balances(call))
        .await
        .map_err(|e| e.into_api_error(&resolved))?;
    let (crypto, cost) = crypto_totals(&holdings);
    let (fiat, _) = usd_cash(&balances);
    Ok(ApiOk(Some(HoldingsValueModel {
        cryptocurrencies_performance: performance(crypto, cost),
        cryptocurrencies_value: crypto,
        equities_performance: 0.0,
        equities_value: 0.0,
        fiat_value: fiat,
        nfts_value: 0.0,
        total_performance: performance(crypto, cost),
        total_value: crypto + fiat,
    })))
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
) -> Result<ApiOk<PortfolioModel>, ApiError> {
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
    let with_return = positions
        .iter()
        .map(|h| {
            let value = h.value_usd.unwrap_or(0.0);
            PortfolioPosition {
                amount: h.amount,
                company_name: h.name.clone(),
                cost_basis: h.cost_basis_usd,
                daily_return_percentage: None,
                last_price: h.price_usd,
                market_value: h.value_usd,
                name: h.name.clone(),
                portfolio_percentage: if crypto > 0.0 { value / crypto * 100.0 } else { 0.0 },
                return_percentage: h.cost_basis_usd.filter(|c| *c > 0.0).map(|c| (value - c) / c * 100.0),
                symbol: h.symbol.clone(),
                total_daily_return: None,
                total_return: h.cost_basis_usd.map(|c| value - c),
            }
        })
        .collect();
    Ok(ApiOk(Some(PortfolioModel {
        actual_portfolio_performance: cost.map(|c| performance(crypto, Some(c))),
        cryptocurrencies_value: crypto,
        cryptocurrency_positions: with_return,
        equities_value: 0.0,
        equity_positions: EmptyList,
        nft_positions: EmptyList,
        nfts_value: 0.0,
        portfolio_cost_basis: cost,
    })))
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
) -> Result<ApiOk<FiatPortfolioModel>, ApiError> {
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
    let fiat_balances = totals
        .into_iter()
        .map(|b| FiatBalance { buying_power: b.buying_power, cash: b.cash, symbol: b.currency })
        .collect();
    Ok(ApiOk(Some(FiatPortfolioModel { fiat_balances })))
}

/// Representative answers, for the schema test in `routes::openapi`.
#[cfg(test)]
pub(crate) fn samples() -> Vec<(&'static str, String)> {
    use crate::routes::wire::sample;
    let holding = |cost: Option<f64>| Holding {
        symbol: "ETH".to_owned(),
        name: "Ethereum".to_owned(),
        amount: 2.0,
        price_usd: Some(3000.0),
        value_usd: Some(6000.0),
        cost_basis_usd: cost,
    };
    let succeeded = HoldingsModel {
        account_id: Some(None),
        account_name: Some(Some("Main".to_owned())),
        cryptocurrency_positions: vec![
            HoldingsPosition::from(&holding(Some(1.0))),
            HoldingsPosition::from(&holding(None)),
        ],
        display_message: None,
        equity_positions: EmptyList,
        error_message: None,
        institution_name: Some("Coinbase".to_owned()),
        nft_positions: EmptyList,
        not_supported_cryptocurrency_positions: EmptyList,
        not_supported_equity_positions: EmptyList,
        option_positions: EmptyList,
        status: HoldingsStatus::Succeeded,
        integration_type: "coinbase".to_owned(),
    };
    let balance = BalanceModel {
        balances: vec![BalanceEntry {
            buying_power: 1.0,
            cash: 1.0,
            cryptocurrency_buying_power: 1.0,
            currency_code: "USD".to_owned(),
        }],
        total_buying_power_usd_value: 1.0,
        total_cash_usd_value: 1.0,
    };
    let value = HoldingsValueModel {
        cryptocurrencies_performance: 0.0,
        cryptocurrencies_value: 1.0,
        equities_performance: 0.0,
        equities_value: 0.0,
        fiat_value: 1.0,
        nfts_value: 0.0,
        total_performance: 0.0,
        total_value: 2.0,
    };
    let position = PortfolioPosition {
        amount: 2.0,
        company_name: "Ethereum".to_owned(),
        cost_basis: None,
        daily_return_percentage: None,
        last_price: Some(3000.0),
        market_value: Some(6000.0),
        name: "Ethereum".to_owned(),
        portfolio_percentage: 100.0,
        return_percentage: Some(1.5),
        symbol: "ETH".to_owned(),
        total_daily_return: None,
        total_return: Some(1.0),
    };
    let portfolio = PortfolioModel {
        actual_portfolio_performance: None,
        cryptocurrencies_value: 6000.0,
        cryptocurrency_positions: vec![position],
        equities_value: 0.0,
        equity_positions: EmptyList,
        nft_positions: EmptyList,
        nfts_value: 0.0,
        portfolio_cost_basis: Some(10.0),
    };
    let fiat = FiatPortfolioModel {
        fiat_balances: vec![FiatBalance { buying_power: 1.0, cash: 1.0, symbol: "USD".to_owned() }],
    };
    vec![
        sample("HoldingsModel", &succeeded),
        sample("HoldingsModel", &HoldingsModel::not_authorized("coinbase", "sign in again")),
        sample("BalanceModel", &balance),
        sample("HoldingsValueModel", &value),
        sample("PortfolioModel", &portfolio),
        sample("FiatPortfolioModel", &fiat),
    ]
}
