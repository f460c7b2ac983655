//! `POST /api/v1/transfers/managed/configure`: which of a connected account's holdings can go to which
//! destination network, with balances, the exchange's fees and minimums (Mesh's `ConfigureTransferResponse`).
//! The core ([`configure_transfer`]) takes a resolved connection and validated destinations, so the Link page's
//! transfer flow (`link::transfer`) asks the same question of the same code.

use axum::extract::State;
use linkvault_integrations::api::{AssetNetwork, Holding};
use linkvault_integrations::networks::{NETWORKS, Network};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::routes::destinations::{Destination, destinations, optional_network, optional_symbol};
use crate::routes::openapi::{ApiResult, TransferDestination};
use crate::routes::token_use::{Resolved, call_account};
use crate::routes::transfers::{check_amount, require_write_key, resolve_write};
use crate::routes::wire::{AlwaysNull, FiatCurrency, Succeeded, always_null};

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

/// Mesh's ConfigureTransferResponse: every crypto position held, eligible ones first.
// Fields in JSON-name order (see `routes::wire`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfigureTransferResponse {
    amount_in_fiat: Option<f64>,
    fiat_currency: FiatCurrency,
    holdings: Vec<TransferHolding>,
    maximum_transfer_amount_in_fiat: Option<f64>,
    minimum_transfer_amount_in_fiat: Option<f64>,
    status: Succeeded,
    supported_fiat_currencies: Vec<FiatCurrency>,
    #[schema(schema_with = always_null)]
    transfer_balance_funding_availability: AlwaysNull,
}

/// One crypto position against the destinations.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TransferHolding {
    available_balance: f64,
    available_balance_in_fiat: Option<f64>,
    eligible_for_transfer: bool,
    eligible_for_transfer_with_funding: bool,
    ineligibility_reason: Option<HoldingIneligibility>,
    name: String,
    networks: Vec<TransferNetwork>,
    symbol: String,
    /// Extension: USD per unit
    unit_price: Option<f64>,
}

/// Why a position cannot be sent (Mesh's words).
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) enum HoldingIneligibility {
    SymbolDoesNotMatch,
    NotSupportedForTransferByTarget,
    NotSupportedForTransferBySource,
    NoEligibleNetworks,
    AmountNotSufficient,
    NoPrice,
}

/// One destination network of a position.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TransferNetwork {
    address_tag: Option<String>,
    amount: Option<f64>,
    eligible_for_transfer: bool,
    fee: Option<f64>,
    fee_currency: Option<String>,
    id: Uuid,
    ineligibility_reason: Option<NetworkIneligibility>,
    minimum_amount: Option<f64>,
    name: &'static str,
    to_address: Option<String>,
}

/// Why a network cannot carry the position.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) enum NetworkIneligibility {
    AmountNotSufficient,
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
) -> Result<ApiOk<ConfigureTransferResponse>, ApiError> {
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
fn holding_entry(
    h: &Holding,
    assets: &[AssetNetwork],
    input: &ConfigureInput,
) -> (TransferHolding, Option<f64>, Option<f64>) {
    let price = unit_price(h);
    let in_fiat = h.value_usd.or_else(|| price.map(|p| p * h.amount));
    let entry =
        |eligible: bool, reason: Option<HoldingIneligibility>, networks: Vec<TransferNetwork>| TransferHolding {
            available_balance: h.amount,
            available_balance_in_fiat: in_fiat,
            eligible_for_transfer: eligible,
            eligible_for_transfer_with_funding: false,
            ineligibility_reason: reason,
            name: h.name.clone(),
            networks,
            symbol: h.symbol.clone(),
            unit_price: price,
        };
    if input.symbol.as_ref().is_some_and(|s| *s != h.symbol) {
        return (entry(false, Some(HoldingIneligibility::SymbolDoesNotMatch), Vec::new()), None, None);
    }
    let targets: Vec<&Destination> = input
        .destinations
        .iter()
        .filter(|d| d.symbol == h.symbol && input.network.is_none_or(|n| n.id == d.network_id))
        .collect();
    if targets.is_empty() {
        return (entry(false, Some(HoldingIneligibility::NotSupportedForTransferByTarget), Vec::new()), None, None);
    }
    let sends: Vec<&AssetNetwork> = assets.iter().filter(|a| a.symbol == h.symbol && a.withdraw_enabled).collect();
    if sends.is_empty() {
        return (entry(false, Some(HoldingIneligibility::NotSupportedForTransferBySource), Vec::new()), None, None);
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
        networks.push(TransferNetwork {
            address_tag: d.address_tag.clone(),
            amount: wanted,
            eligible_for_transfer: eligible,
            fee: asset.withdraw_fee,
            fee_currency: asset.withdraw_fee.map(|_| h.symbol.clone()),
            id: network.id,
            ineligibility_reason: if eligible { None } else { Some(NetworkIneligibility::AmountNotSufficient) },
            minimum_amount: asset.withdraw_min,
            name: network.name,
            to_address: d.address.clone(),
        });
    }
    if any_eligible {
        return (entry(true, None, networks), in_fiat, minimum_in_fiat);
    }
    let reason = if networks.is_empty() {
        if no_price { HoldingIneligibility::NoPrice } else { HoldingIneligibility::NoEligibleNetworks }
    } else {
        HoldingIneligibility::AmountNotSufficient
    };
    (entry(false, Some(reason), networks), None, None)
}

/// Mesh's `ConfigureTransferResponse` for `resolved`'s account: every crypto position it holds, eligible or
/// not (with the reason), eligible ones first.
pub(crate) async fn configure_transfer(
    state: &AppState,
    resolved: &mut Resolved<'_>,
    input: &ConfigureInput,
) -> Result<ConfigureTransferResponse, ApiError> {
    let holdings = call_account(state, resolved, &(), |api, call, ()| api.holdings(call))
        .await
        .map_err(|e| e.into_api_error(resolved))?;
    let assets = call_account(state, resolved, &(), |api, call, ()| api.assets(call))
        .await
        .map_err(|e| e.into_api_error(resolved))?;
    let mut rows: Vec<(TransferHolding, Option<f64>, Option<f64>)> =
        holdings.iter().filter(|h| h.amount > 0.0).map(|h| holding_entry(h, &assets, input)).collect();
    rows.sort_by(|a, b| {
        let value = |h: &TransferHolding| h.available_balance_in_fiat.unwrap_or(0.0);
        b.0.eligible_for_transfer.cmp(&a.0.eligible_for_transfer).then(value(&b.0).total_cmp(&value(&a.0)))
    });
    let maximum = rows.iter().filter_map(|r| r.1).reduce(f64::max);
    let minimum = rows.iter().filter_map(|r| r.2).reduce(f64::min);
    Ok(ConfigureTransferResponse {
        amount_in_fiat: input.amount_in_fiat,
        fiat_currency: FiatCurrency::Usd,
        holdings: rows.into_iter().map(|r| r.0).collect(),
        maximum_transfer_amount_in_fiat: maximum,
        minimum_transfer_amount_in_fiat: minimum,
        status: Succeeded::Succeeded,
        supported_fiat_currencies: vec![FiatCurrency::Usd],
        transfer_balance_funding_availability: AlwaysNull,
    })
}

/// Representative answers, for the schema test in `routes::openapi`.
#[cfg(test)]
pub(crate) fn samples() -> Vec<(&'static str, String)> {
    use crate::routes::wire::sample;
    let network = |eligible: bool| TransferNetwork {
        address_tag: None,
        amount: eligible.then_some(1.0),
        eligible_for_transfer: eligible,
        fee: Some(0.1),
        fee_currency: Some("ETH".to_owned()),
        id: NETWORKS[0].id,
        ineligibility_reason: (!eligible).then_some(NetworkIneligibility::AmountNotSufficient),
        minimum_amount: None,
        name: NETWORKS[0].name,
        to_address: eligible.then(|| "0xabc".to_owned()),
    };
    let holding = |reason: Option<HoldingIneligibility>| TransferHolding {
        available_balance: 2.0,
        available_balance_in_fiat: reason.is_none().then_some(6000.0),
        eligible_for_transfer: reason.is_none(),
        eligible_for_transfer_with_funding: false,
        ineligibility_reason: reason,
        name: "Ethereum".to_owned(),
        networks: vec![network(reason.is_none()), network(false)],
        symbol: "ETH".to_owned(),
        unit_price: Some(3000.0),
    };
    let answer = ConfigureTransferResponse {
        amount_in_fiat: None,
        fiat_currency: FiatCurrency::Usd,
        holdings: vec![holding(None), holding(Some(HoldingIneligibility::NoPrice))],
        maximum_transfer_amount_in_fiat: Some(6000.0),
        minimum_transfer_amount_in_fiat: None,
        status: Succeeded::Succeeded,
        supported_fiat_currencies: vec![FiatCurrency::Usd],
        transfer_balance_funding_availability: AlwaysNull,
    };
    vec![sample("ConfigureTransferResponse", &answer)]
}
