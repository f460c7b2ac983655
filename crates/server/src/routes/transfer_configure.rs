//! `POST /api/v1/transfers/managed/configure`: which of a connected account's holdings can go to which
//! destination network, with balances, the exchange's fees and minimums (Mesh's `ConfigureTransferResponse`).
//! The core ([`configure_transfer`]) takes a resolved connection and validated destinations, so the Link page's
//! transfer flow (`link::transfer`) asks the same question of the same code.

use axum::extract::State;
use linkvault_integrations::api::{AssetNetwork, Holding};
use linkvault_integrations::networks::{NETWORKS, Network};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::routes::destinations::{Destination, destinations, optional_network, optional_symbol};
use crate::routes::openapi::{ApiResult, ConfigureTransferResponse, FiatCurrency, TransferDestination};
use crate::routes::token_use::{Resolved, call_account};
use crate::routes::transfers::{check_amount, require_write_key, resolve_write};

/// Tolerance on balance comparisons: float sums of amount and fee must not refuse an exact balance.
const EPSILON: f64 = 1e-12;

/// Mesh's ConfigureTransferRequest (+ the extension userId). Without toAddresses every network and token
/// linkvault moves is a destination.
#[derive(Deserialize, ToSchema)]
#[schema(as = ConfigureTransferRequest)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfigureRequest {
    /// The tokenId of a write-scoped connection
    #[schema(min_length = 1)]
    from_auth_token: String,
    from_type: String,
    /// Not supported: send toAddresses
    #[serde(default)]
    to_auth_token: Option<String>,
    /// Not supported
    #[serde(default)]
    to_type: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<TransferDestination>>, max_items = 50)]
    to_addresses: Option<Value>,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default)]
    #[schema(exclusive_minimum = 0)]
    amount: Option<f64>,
    #[serde(default)]
    #[schema(exclusive_minimum = 0)]
    amount_in_fiat: Option<f64>,
    #[serde(default)]
    #[schema(value_type = Option<FiatCurrency>)]
    fiat_currency: Option<String>,
    #[serde(default)]
    #[schema(format = Uuid)]
    network_id: Option<String>,
    #[serde(default)]
    is_inclusive_fee_enabled: Option<bool>,
    /// Extension: refuse a tokenId of another end user as tokenNotFound
    #[serde(default)]
    user_id: Option<String>,
}

/// What to check the account's holdings against.
pub(crate) struct ConfigureInput {
    /// Where the transfer may go; a destination without an address only asks whether the network is usable.
    pub destinations: Vec<Destination>,
    /// Only this symbol (others are listed as `symbolDoesNotMatch`).
    pub symbol: Option<String>,
    /// Only this network.
    pub network: Option<&'static Network>,
    /// The amount to send, in the symbol (a destination's own amount wins).
    pub amount: Option<f64>,
    pub amount_in_fiat: Option<f64>,
    /// Fees come out of the amount instead of on top of it.
    pub inclusive_fee: bool,
}

/// Every network and token linkvault moves, without addresses: the destinations when the request names none.
fn every_destination() -> Vec<Destination> {
    NETWORKS
        .iter()
        .flat_map(|n| {
            n.tokens.iter().map(|t| Destination {
                network_id: n.id,
                network_name: n.name.to_owned(),
                symbol: (*t).to_owned(),
                address: None,
                address_tag: None,
                amount: None,
            })
        })
        .collect()
}

fn validate(req: &ConfigureRequest) -> Result<ConfigureInput, ApiError> {
    if req.to_auth_token.is_some() || req.to_type.is_some() {
        return Err(ApiError::invalid_field(
            "toAuthToken",
            "transfers to another connected account are not supported; send toAddresses",
        ));
    }
    let network = optional_network("networkId", req.network_id.as_deref())?;
    let symbol = optional_symbol("symbol", req.symbol.as_deref(), network)?;
    if req.amount.is_some() && req.amount_in_fiat.is_some() {
        return Err(ApiError::invalid_field("amountInFiat", "send either amount or amountInFiat, not both"));
    }
    if let Some(currency) = req.fiat_currency.as_deref().map(str::trim).filter(|c| !c.is_empty())
        && !currency.eq_ignore_ascii_case("USD")
    {
        return Err(ApiError::invalid_field("fiatCurrency", "only USD is supported"));
    }
    let listed = destinations(req.to_addresses.as_ref(), "toAddresses", false)?;
    Ok(ConfigureInput {
        destinations: if req.to_addresses.is_none() { every_destination() } else { listed },
        symbol,
        network,
        amount: req.amount.map(|a| check_amount("amount", a)).transpose()?,
        amount_in_fiat: req.amount_in_fiat.map(|a| check_amount("amountInFiat", a)).transpose()?,
        inclusive_fee: req.is_inclusive_fee_enabled.unwrap_or(false),
    })
}

/// `POST /api/v1/transfers/managed/configure` (write).
#[utoipa::path(
    post,
    path = "/api/v1/transfers/managed/configure",
    operation_id = "configureTransfer",
    summary = "Which holdings of a connected account can go to which destination network (write key, write-scoped \
        tokenId)",
    description = "Lists the account's crypto positions with balances, each destination network the exchange sends \
        them over (fee, minimum) and, when not eligible, Mesh's ineligibilityReason. See docs/api.md.",
    request_body = ConfigureRequest,
    responses(
        (status = 200, description = "Configured", body = ConfigureTransferResponse),
        (status = 400, description = "missingField / invalidField naming the field (toAddresses[0].address, symbol, \
            …), integrationNotFound, reauthenticationRequired, featureNotSupported", body = ApiResult),
        (status = 403, description = "keyScopeInsufficient (read key) or tokenScopeMismatch (read-scoped tokenId); \
            tokenExpired, tokenRevoked (client-managed access tokens)", body = ApiResult),
        (status = 404, description = "tokenNotFound", body = ApiResult),
        (status = 500, description = "integrationUnavailable", body = ApiResult),
    )
)]
pub(crate) async fn configure(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<ConfigureRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    require_write_key(&caller)?;
    let input = validate(&req)?;
    let mut resolved =
        resolve_write(&state, &caller, &req.from_auth_token, &req.from_type, req.user_id.as_deref()).await?;
    Ok(ApiOk(Some(configure_transfer(&state, &mut resolved, &input).await?)))
}

/// USD per unit of a holding, from the provider's price or its value.
fn unit_price(h: &Holding) -> Option<f64> {
    h.price_usd.or_else(|| h.value_usd.filter(|_| h.amount > 0.0).map(|v| v / h.amount)).filter(|p| *p > 0.0)
}

/// One holding against the destinations: Mesh's `holdings[]` entry, and its value in USD when eligible.
fn holding_entry(h: &Holding, assets: &[AssetNetwork], input: &ConfigureInput) -> (Value, Option<f64>, Option<f64>) {
    let price = unit_price(h);
    let in_fiat = h.value_usd.or_else(|| price.map(|p| p * h.amount));
    let entry = |eligible: bool, reason: Option<&str>, networks: Vec<Value>| {
        json!({
            "symbol": h.symbol,
            "name": h.name,
            "availableBalance": h.amount,
            "availableBalanceInFiat": in_fiat,
            "unitPrice": price,
            "eligibleForTransfer": eligible,
            "ineligibilityReason": reason,
            "eligibleForTransferWithFunding": false,
            "networks": networks,
        })
    };
    if input.symbol.as_ref().is_some_and(|s| *s != h.symbol) {
        return (entry(false, Some("symbolDoesNotMatch"), Vec::new()), None, None);
    }
    let targets: Vec<&Destination> = input
        .destinations
        .iter()
        .filter(|d| d.symbol == h.symbol && input.network.is_none_or(|n| n.id == d.network_id))
        .collect();
    if targets.is_empty() {
        return (entry(false, Some("notSupportedForTransferByTarget"), Vec::new()), None, None);
    }
    let sends: Vec<&AssetNetwork> = assets.iter().filter(|a| a.symbol == h.symbol && a.withdraw_enabled).collect();
    if sends.is_empty() {
        return (entry(false, Some("notSupportedForTransferBySource"), Vec::new()), None, None);
    }
    let mut networks = Vec::new();
    let mut minimum_in_fiat: Option<f64> = None;
    let mut any_eligible = false;
    let mut no_price = false;
    for d in targets {
        let Some(network) = d.network() else { continue };
        let Some(asset) = sends.iter().find(|a| a.network == network.api_name) else { continue };
        let wanted = match (d.amount.or(input.amount), input.amount_in_fiat, price) {
            (Some(a), _, _) => Some(a),
            (None, Some(fiat), Some(p)) => Some(fiat / p),
            (None, Some(_), None) => {
                no_price = true;
                continue;
            }
            (None, None, _) => None,
        };
        let fee = asset.withdraw_fee.unwrap_or(0.0);
        // Without an amount the question is whether anything can be sent at all: more than the fee.
        let needed = match wanted {
            Some(a) if input.inclusive_fee => a,
            Some(a) => a + fee,
            None => fee,
        };
        let eligible = h.amount + EPSILON >= needed && h.amount > fee;
        any_eligible |= eligible;
        if eligible && let (Some(min), Some(p)) = (asset.withdraw_min, price) {
            minimum_in_fiat = Some(minimum_in_fiat.map_or(min * p, |m| m.min(min * p)));
        }
        networks.push(json!({
            "id": network.id,
            "name": network.name,
            "toAddress": d.address,
            "addressTag": d.address_tag,
            "minimumAmount": asset.withdraw_min,
            "fee": asset.withdraw_fee,
            "feeCurrency": asset.withdraw_fee.map(|_| h.symbol.clone()),
            "amount": wanted,
            "eligibleForTransfer": eligible,
            "ineligibilityReason": if eligible { None } else { Some("amountNotSufficient") },
        }));
    }
    if any_eligible {
        return (entry(true, None, networks), in_fiat, minimum_in_fiat);
    }
    let reason = if networks.is_empty() {
        if no_price { "noPrice" } else { "noEligibleNetworks" }
    } else {
        "amountNotSufficient"
    };
    (entry(false, Some(reason), networks), None, None)
}

/// Mesh's `ConfigureTransferResponse` for `resolved`'s account: every crypto position it holds, eligible or
/// not (with the reason), eligible ones first.
pub(crate) async fn configure_transfer(
    state: &AppState,
    resolved: &mut Resolved<'_>,
    input: &ConfigureInput,
) -> Result<Value, ApiError> {
    let holdings = call_account(state, resolved, &(), |api, call, ()| api.holdings(call))
        .await
        .map_err(|e| e.into_api_error(resolved))?;
    let assets = call_account(state, resolved, &(), |api, call, ()| api.assets(call))
        .await
        .map_err(|e| e.into_api_error(resolved))?;
    let mut rows: Vec<(Value, Option<f64>, Option<f64>)> =
        holdings.iter().filter(|h| h.amount > 0.0).map(|h| holding_entry(h, &assets, input)).collect();
    rows.sort_by(|a, b| {
        let eligible = |v: &Value| v["eligibleForTransfer"].as_bool().unwrap_or(false);
        let value = |v: &Value| v["availableBalanceInFiat"].as_f64().unwrap_or(0.0);
        eligible(&b.0).cmp(&eligible(&a.0)).then(value(&b.0).total_cmp(&value(&a.0)))
    });
    let maximum = rows.iter().filter_map(|r| r.1).reduce(f64::max);
    let minimum = rows.iter().filter_map(|r| r.2).reduce(f64::min);
    Ok(json!({
        "status": "succeeded",
        "holdings": rows.into_iter().map(|r| r.0).collect::<Vec<_>>(),
        "amountInFiat": input.amount_in_fiat,
        "fiatCurrency": "USD",
        "minimumTransferAmountInFiat": minimum,
        "maximumTransferAmountInFiat": maximum,
        "supportedFiatCurrencies": ["USD"],
        "transferBalanceFundingAvailability": null,
    }))
}
