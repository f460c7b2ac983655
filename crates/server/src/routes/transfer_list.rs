//! What linkvault itself knows about managed transfers, in Mesh's shapes: `GET /api/v1/transfers/managed/mesh`
//! (the transfers made through linkvault for the calling client — Mesh's `TransferModel` page, filtered and
//! paginated by Mesh's query parameters) and `GET /api/v1/transfers/managed/integrations` (which integrations
//! can send and receive, over which networks).
//!
//! Query parameter names are matched case-insensitively, as Mesh's ASP.NET API binds them; list parameters
//! (`IntegrationIds`, `Statuses`) may repeat or be comma-separated. Anything unknown, repeated where one value
//! is expected, or out of bounds is a 400 naming the parameter.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use linkvault_integrations::networks::{self, NETWORKS};
use linkvault_storage::{TransferExecutionRecord, TransferFilter, TransferOrder, TransferProgress};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use uuid::Uuid;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::routes::openapi::{ApiResult, MeshTransferQuery};
use crate::routes::transfer_info::MeshTransferStatus;
use crate::routes::wire::{AlwaysNull, EmptyList, FiatCurrency, always_null};
use crate::transfer_follower::fee_in_symbol;

const DEFAULT_COUNT: u32 = 10;
const MAX_COUNT: u32 = 100;
/// Mesh's `Offset` is an int32.
const MAX_OFFSET: u64 = i32::MAX as u64;
const MAX_LIST_ITEMS: usize = 100;
const MAX_STATUSES: usize = 5;
const MAX_TRANSACTION_ID_CHARS: usize = 128;
const MAX_USER_ID_CHARS: usize = 50;
const MAX_HASH_CHARS: usize = 256;

/// Mesh's parameter names, as documented (the answer to an unknown one lists them).
pub(crate) const PARAMETERS: &[&str] = &[
    "Count",
    "Offset",
    "Id",
    "ClientTransactionId",
    "UserId",
    "IntegrationIds",
    "Statuses",
    "FromTimestamp",
    "ToTimestamp",
    "MinAmountInFiat",
    "MaxAmountInFiat",
    "OrderBy",
    "Hash",
    "SubClientId",
    "DescendingOrder",
    "IsSandBox",
    "IncludeRefundInformation",
];
const LISTS: &[&str] = &["IntegrationIds", "Statuses"];

/// The query, each parameter under its documented name.
struct Params(HashMap<&'static str, Vec<String>>);

impl Params {
    fn parse(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut by_name: HashMap<&'static str, Vec<String>> = HashMap::new();
        for (key, value) in pairs {
            let Some(name) = PARAMETERS.iter().copied().find(|p| p.eq_ignore_ascii_case(key.trim())) else {
                let shown: String = key.chars().filter(|c| !c.is_control()).take(40).collect();
                return Err(ApiError::invalid_field(
                    &shown,
                    format!("is not a parameter of this endpoint; use {}", PARAMETERS.join(", ")),
                ));
            };
            let values = by_name.entry(name).or_default();
            if LISTS.contains(&name) {
                values.extend(value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned));
            } else if !values.is_empty() {
                return Err(ApiError::invalid_field(name, "is given more than once"));
            } else {
                values.push(value.trim().to_owned());
            }
        }
        Ok(Self(by_name))
    }

    fn one(&self, name: &'static str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.first()).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn list(&self, name: &'static str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    fn number<T: std::str::FromStr>(&self, name: &'static str, what: &str) -> Result<Option<T>, ApiError> {
        self.one(name)
            .map(|v| v.parse::<T>().map_err(|_| ApiError::invalid_field(name, format!("must be {what}"))))
            .transpose()
    }

    fn flag(&self, name: &'static str) -> Result<Option<bool>, ApiError> {
        self.one(name)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::invalid_field(name, "must be true or false")),
            })
            .transpose()
    }

    fn text(&self, name: &'static str, max_chars: usize) -> Result<Option<String>, ApiError> {
        match self.one(name) {
            Some(v) if v.chars().count() > max_chars => {
                Err(ApiError::invalid_field(name, format!("is longer than {max_chars} characters")))
            }
            Some(v) if v.chars().any(char::is_control) => {
                Err(ApiError::invalid_field(name, "must not contain control characters"))
            }
            other => Ok(other.map(str::to_owned)),
        }
    }

    fn uuid(&self, name: &'static str) -> Result<Option<Uuid>, ApiError> {
        self.one(name)
            .map(|v| Uuid::parse_str(v).map_err(|_| ApiError::invalid_field(name, "must be a UUID")))
            .transpose()
    }
}

fn timestamp(params: &Params, name: &'static str) -> Result<Option<OffsetDateTime>, ApiError> {
    let Some(secs) = params.number::<i64>(name, "a Unix timestamp in seconds")? else { return Ok(None) };
    OffsetDateTime::from_unix_timestamp(secs)
        .map(Some)
        .map_err(|_| ApiError::invalid_field(name, "is not a representable Unix timestamp in seconds"))
}

fn amount(params: &Params, name: &'static str) -> Result<Option<f64>, ApiError> {
    match params.number::<f64>(name, "a number")? {
        Some(v) if !v.is_finite() || v < 0.0 => Err(ApiError::invalid_field(name, "must be a non-negative number")),
        other => Ok(other),
    }
}

fn order(raw: Option<&str>) -> Result<TransferOrder, ApiError> {
    let Some(raw) = raw else { return Ok(TransferOrder::default()) };
    let known = [
        ("id", TransferOrder::Id),
        ("clientTransferId", TransferOrder::ClientTransactionId),
        ("userId", TransferOrder::UserId),
        ("fromType", TransferOrder::Integration),
        ("amountInFiat", TransferOrder::AmountInFiat),
        ("status", TransferOrder::Status),
        ("createdTimestamp", TransferOrder::Created),
        ("symbol", TransferOrder::Symbol),
        ("networkName", TransferOrder::Network),
    ];
    known.iter().find(|(name, _)| name.eq_ignore_ascii_case(raw)).map(|(_, o)| *o).ok_or_else(|| {
        let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
        ApiError::invalid_field("OrderBy", format!("must be one of {}", names.join(", ")))
    })
}

/// The filter the query asks for; `None` when it can match nothing (an unknown integration id, a sub-client).
fn filter(state: &AppState, params: &Params) -> Result<Option<TransferFilter>, ApiError> {
    let count = match params.number::<i64>("Count", "a whole number")? {
        None => DEFAULT_COUNT,
        Some(n) if (1..=i64::from(MAX_COUNT)).contains(&n) => u32::try_from(n).unwrap_or(MAX_COUNT),
        Some(_) => return Err(ApiError::invalid_field("Count", format!("must be between 1 and {MAX_COUNT}"))),
    };
    let offset = match params.number::<i64>("Offset", "a whole number")? {
        None => 0,
        Some(n) if (0..=MAX_OFFSET as i64).contains(&n) => u64::try_from(n).unwrap_or_default(),
        Some(_) => return Err(ApiError::invalid_field("Offset", format!("must be between 0 and {MAX_OFFSET}"))),
    };
    let raw_integrations = params.list("IntegrationIds");
    if raw_integrations.len() > MAX_LIST_ITEMS {
        return Err(ApiError::invalid_field(
            "IntegrationIds",
            format!("may name at most {MAX_LIST_ITEMS} integrations"),
        ));
    }
    let mut integrations = Vec::new();
    let mut unknown_integration = false;
    for raw in raw_integrations {
        let id = Uuid::parse_str(raw).map_err(|_| ApiError::invalid_field("IntegrationIds", "must be UUIDs"))?;
        match state.catalog.iter().find(|i| i.id == id) {
            Some(i) => integrations.push(i.integration_type.as_str().to_owned()),
            None => unknown_integration = true,
        }
    }
    let raw_statuses = params.list("Statuses");
    if raw_statuses.len() > MAX_STATUSES {
        return Err(ApiError::invalid_field("Statuses", format!("may name at most {MAX_STATUSES} statuses")));
    }
    let statuses = raw_statuses
        .iter()
        .map(|s| {
            TransferProgress::parse(s)
                .ok_or_else(|| ApiError::invalid_field("Statuses", "must be pending, succeeded or failed"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (from, to) = (timestamp(params, "FromTimestamp")?, timestamp(params, "ToTimestamp")?);
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::invalid_field("ToTimestamp", "must not be before FromTimestamp"));
    }
    let (min, max) = (amount(params, "MinAmountInFiat")?, amount(params, "MaxAmountInFiat")?);
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(ApiError::invalid_field("MaxAmountInFiat", "must not be below MinAmountInFiat"));
    }
    let filter = TransferFilter {
        id: params.uuid("Id")?,
        client_transaction_id: params.text("ClientTransactionId", MAX_TRANSACTION_ID_CHARS)?,
        user_id: params.text("UserId", MAX_USER_ID_CHARS)?,
        integrations,
        statuses,
        from,
        to,
        hash: params.text("Hash", MAX_HASH_CHARS)?,
        min_amount_in_fiat: min,
        max_amount_in_fiat: max,
        order: order(params.one("OrderBy"))?,
        descending: params.flag("DescendingOrder")?.unwrap_or(false),
        offset,
        count,
    };
    // Accepted as Mesh's clients send them; linkvault has no sub-clients, sandbox flag or refunds.
    let sub_client = params.uuid("SubClientId")?;
    params.flag("IsSandBox")?;
    params.flag("IncludeRefundInformation")?;
    // Only unknown ids asked for (none known): nothing can match, rather than everything.
    let nothing = (unknown_integration && filter.integrations.is_empty()) || sub_client.is_some();
    Ok((!nothing).then_some(filter))
}

fn seconds(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// Mesh's TransferModel for a transfer made through linkvault.
// Fields in JSON-name order (see `routes::wire`).
#[derive(Serialize, ToSchema)]
#[schema(as = ManagedTransferModel)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedTransfer {
    /// What the destination receives, in symbol.
    amount: f64,
    amount_in_fiat: f64,
    amount_in_fiat_currency_code: FiatCurrency,
    amount_to_receive: f64,
    amount_to_receive_in_fiat: f64,
    #[schema(format = Uuid)]
    client_id: String,
    client_transaction_id: Option<String>,
    /// Unix seconds.
    created_timestamp: i64,
    destination_address: Option<String>,
    destination_amount: f64,
    destination_amount_in_fiat: f64,
    /// Unix seconds.
    executed_timestamp: i64,
    from: Option<TransferSource>,
    /// Always empty: linkvault funds no transfer.
    #[schema(schema_with = no_funding_methods)]
    funding_methods: EmptyList,
    #[schema(schema_with = always_null)]
    gas_fee: AlwaysNull,
    /// Known once the follower saw the transfer succeed.
    hash: Option<String>,
    /// linkvault's id of the transfer: the previewId it was executed from (Mesh's TransferId in webhooks).
    id: Uuid,
    /// The integration's id of the transfer (execute's executeTransferResult.transferId).
    institution_transaction_id: Option<String>,
    #[schema(schema_with = always_false)]
    is_bridging_transfer: bool,
    #[schema(schema_with = always_false)]
    is_smart_funding_transfer: bool,
    network_id: Option<Uuid>,
    #[schema(schema_with = always_null)]
    network_logo_url: AlwaysNull,
    network_name: Option<&'static str>,
    #[schema(schema_with = always_null)]
    processing_fee: AlwaysNull,
    requested_transfer_amount: f64,
    /// What left the account (amount plus a fee taken in the symbol).
    source_amount: f64,
    /// As the transfer status follower last saw it; null until the execute's answer was recorded.
    status: Option<MeshTransferStatus>,
    symbol: Option<String>,
    #[schema(schema_with = always_null)]
    token_address: AlwaysNull,
    total_fees_amount_in_fiat: f64,
    total_transaction_amount_in_fiat: f64,
    unit_price: f64,
    user_id: Option<String>,
    withdrawal_fee: Option<WithdrawalFee>,
}

/// The exchange's fee, as the execute recorded it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WithdrawalFee {
    fee: Option<f64>,
    fee_currency: Option<String>,
    fee_in_fiat: f64,
    fee_in_transfer_currency: f64,
}

/// The integration the transfer left from.
#[derive(Serialize, ToSchema, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TransferSource {
    id: Uuid,
    logo_url: Option<String>,
    name: String,
    #[serde(rename = "type")]
    integration_type: String,
}

/// `fundingMethods`' schema, by hand: [`EmptyList`] has no item type to derive from; Mesh's are strings.
fn no_funding_methods() -> RefOr<Schema> {
    let list = ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)))
        .max_items(Some(0))
        .description(Some("Always empty: linkvault funds no transfer."));
    RefOr::T(Schema::Array(list.build()))
}

/// The schema of a flag linkvault always answers `false` (a `bool` derives no `enum`).
fn always_false() -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new().schema_type(SchemaType::Type(Type::Boolean)).enum_values(Some([false])).build(),
    ))
}

/// One page of `GET /api/v1/transfers/managed/mesh`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedTransferPage {
    has_more_pages: bool,
    items: Vec<ManagedTransfer>,
    /// All transfers matching the filters.
    total: u64,
}

/// Mesh's `TransferModel` for one execution.
fn transfer_model(state: &AppState, row: &TransferExecutionRecord) -> ManagedTransfer {
    let result: Value = row.result.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
    let executed = &result["executeTransferResult"];
    let sent = row.sent.as_ref();
    let symbol = sent.map(|s| s.symbol.as_str()).unwrap_or_default();
    let amount = sent.map(|s| s.amount).or_else(|| executed["amount"].as_f64()).unwrap_or_default();
    let amount_in_fiat =
        sent.map(|s| s.amount_in_fiat).or_else(|| executed["amountInFiat"].as_f64()).unwrap_or_default();
    let unit_price = if amount > 0.0 { amount_in_fiat / amount } else { 0.0 };
    let fee = &executed["institutionTransferFee"];
    let fee_in_fiat = fee["feeInFiat"].as_f64().unwrap_or_default();
    let fee_in_symbol = fee_in_symbol(row.result.as_deref(), symbol);
    let network = sent.and_then(|s| networks::by_id(s.network_id));
    let integration = sent.and_then(|s| state.catalog.get(&s.integration));
    ManagedTransfer {
        amount,
        amount_in_fiat,
        amount_in_fiat_currency_code: FiatCurrency::Usd,
        amount_to_receive: amount,
        amount_to_receive_in_fiat: amount_in_fiat,
        client_id: row.client_id.to_string(),
        client_transaction_id: row.client_transaction_id.clone(),
        created_timestamp: seconds(row.created_at),
        destination_address: sent.map(|s| s.to_address.clone()),
        destination_amount: amount,
        destination_amount_in_fiat: amount_in_fiat,
        executed_timestamp: seconds(row.created_at),
        from: integration.map(|i| TransferSource {
            id: i.id,
            logo_url: i.logo.url.clone(),
            name: i.name.clone(),
            integration_type: i.integration_type.as_str().to_owned(),
        }),
        funding_methods: EmptyList,
        gas_fee: AlwaysNull,
        hash: row.follow.hash.clone(),
        id: row.preview_id,
        institution_transaction_id: row.transfer_id.clone(),
        is_bridging_transfer: false,
        is_smart_funding_transfer: false,
        network_id: sent.map(|s| s.network_id),
        network_logo_url: AlwaysNull,
        network_name: network.map(|n| n.name),
        processing_fee: AlwaysNull,
        requested_transfer_amount: amount,
        source_amount: amount + fee_in_symbol,
        status: row.follow.status.map(MeshTransferStatus::from),
        symbol: sent.map(|s| s.symbol.clone()),
        token_address: AlwaysNull,
        total_fees_amount_in_fiat: fee_in_fiat,
        total_transaction_amount_in_fiat: amount_in_fiat + fee_in_fiat,
        unit_price,
        user_id: sent.map(|s| s.user_id.clone()),
        withdrawal_fee: fee.is_object().then(|| WithdrawalFee {
            fee: fee["fee"].as_f64(),
            fee_currency: fee["feeCurrency"].as_str().map(str::to_owned),
            fee_in_fiat,
            fee_in_transfer_currency: fee_in_symbol,
        }),
    }
}

/// `GET /api/v1/transfers/managed/mesh`: the calling client's transfers made through linkvault.
#[utoipa::path(
    get,
    path = "/api/v1/transfers/managed/mesh",
    operation_id = "meshTransfers",
    summary = "Transfers made through linkvault for the calling client, in Mesh's shape",
    description = "Mesh's GET /api/v1/transfers/managed/mesh: the calling client's executed managed transfers (from \
        the API and from Link), with their status at the provider as the transfer status follower last saw it. \
        Parameter names are case-insensitive; an unknown, repeated or out-of-range parameter is a 400 invalidField \
        naming it. Another client's transfers never appear.",
    params(MeshTransferQuery),
    responses(
        (status = 200, description = "A page", body = ManagedTransferPage),
        (status = 400, description = "invalidField: the message starts with the parameter's name", body = ApiResult),
    )
)]
pub(crate) async fn mesh(
    State(state): State<AppState>,
    Client(caller): Client,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<ApiOk<ManagedTransferPage>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
    let params = Params::parse(pairs)?;
    let Some(filter) = filter(&state, &params)? else {
        return Ok(ApiOk(Some(ManagedTransferPage { has_more_pages: false, items: Vec::new(), total: 0 })));
    };
    let page = state.vault.transfer_executions(caller.client_id, &filter).await.map_err(|e| ApiError::internal(&e))?;
    let items: Vec<ManagedTransfer> = page.items.iter().map(|row| transfer_model(&state, row)).collect();
    let shown = filter.offset.saturating_add(items.len() as u64);
    Ok(ApiOk(Some(ManagedTransferPage { has_more_pages: shown < page.total, items, total: page.total })))
}

/// `GET /api/v1/transfers/managed/integrations`: each integration with whether it can send and receive
/// managed transfers, and over which networks. Only integrations with an account API move funds.
#[utoipa::path(
    get,
    path = "/api/v1/transfers/managed/integrations",
    operation_id = "managedTransferIntegrations",
    summary = "Which integrations can send and receive managed transfers, over which networks",
    description = "Reference data (no token). Only integrations with an account API in the catalog move funds; the \
        others are listed with both flags false and no networks.",
    responses((status = 200, description = "Answered", body = ManagedIntegrationsModel))
)]
pub(crate) async fn integrations(
    State(state): State<AppState>,
    Client(_caller): Client,
) -> ApiOk<ManagedIntegrationsModel> {
    ApiOk(Some(ManagedIntegrationsModel { integrations: state.catalog.iter().map(managed_integration).collect() }))
}

fn managed_integration(i: &linkvault_integrations::Integration) -> ManagedIntegration {
    let has_api = i.account_api.is_some();
    let networks = if has_api {
        NETWORKS
            .iter()
            .map(|n| ManagedNetwork { chain_id: n.chain_id, id: n.id, name: n.name, supported_tokens: n.tokens })
            .collect()
    } else {
        Vec::new()
    };
    ManagedIntegration {
        id: i.id,
        name: i.name.clone(),
        networks,
        // Deposits reach the account at its deposit address, which every account API gives.
        supports_incoming_transfers: has_api,
        supports_outgoing_transfers: has_api && i.features.transfers,
        integration_type: i.integration_type.as_str().to_owned(),
    }
}

/// `GET /api/v1/transfers/managed/integrations`' answer.
// Fields in JSON-name order (see `routes::wire`).
#[derive(Serialize, ToSchema)]
pub(crate) struct ManagedIntegrationsModel {
    integrations: Vec<ManagedIntegration>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedIntegration {
    id: Uuid,
    name: String,
    networks: Vec<ManagedNetwork>,
    /// The integration has an account API (deposit addresses).
    supports_incoming_transfers: bool,
    /// The integration has an account API that sends.
    supports_outgoing_transfers: bool,
    #[serde(rename = "type")]
    integration_type: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedNetwork {
    chain_id: &'static str,
    id: Uuid,
    name: &'static str,
    supported_tokens: &'static [&'static str],
}

/// Representative answers, for the schema test in `routes::openapi`.
#[cfg(test)]
pub(crate) fn samples() -> Vec<(&'static str, String)> {
    use crate::routes::wire::sample;
    let catalog = linkvault_integrations::Catalog::embedded();
    let integration = catalog.iter().next().map(|i| TransferSource {
        id: i.id,
        logo_url: i.logo.url.clone(),
        name: i.name.clone(),
        integration_type: i.integration_type.as_str().to_owned(),
    });
    let transfer = |known: bool| ManagedTransfer {
        amount: 5.0,
        amount_in_fiat: 5.0,
        amount_in_fiat_currency_code: FiatCurrency::Usd,
        amount_to_receive: 5.0,
        amount_to_receive_in_fiat: 5.0,
        client_id: Uuid::nil().to_string(),
        client_transaction_id: known.then(|| "tx-1".to_owned()),
        created_timestamp: 1_700_000_000,
        destination_address: known.then(|| "0xabc".to_owned()),
        destination_amount: 5.0,
        destination_amount_in_fiat: 5.0,
        executed_timestamp: 1_700_000_000,
        from: if known { integration.clone() } else { None },
        funding_methods: EmptyList,
        gas_fee: AlwaysNull,
        hash: known.then(|| "0xhash".to_owned()),
        id: Uuid::nil(),
        institution_transaction_id: known.then(|| "t-1".to_owned()),
        is_bridging_transfer: false,
        is_smart_funding_transfer: false,
        network_id: known.then(|| NETWORKS[0].id),
        network_logo_url: AlwaysNull,
        network_name: known.then(|| NETWORKS[0].name),
        processing_fee: AlwaysNull,
        requested_transfer_amount: 5.0,
        source_amount: 5.5,
        status: known.then_some(MeshTransferStatus::Succeeded),
        symbol: known.then(|| "USDC".to_owned()),
        token_address: AlwaysNull,
        total_fees_amount_in_fiat: 0.5,
        total_transaction_amount_in_fiat: 5.5,
        unit_price: 1.0,
        user_id: known.then(|| "alice".to_owned()),
        withdrawal_fee: known.then(|| WithdrawalFee {
            fee: Some(0.5),
            fee_currency: Some("USDC".to_owned()),
            fee_in_fiat: 0.5,
            fee_in_transfer_currency: 0.5,
        }),
    };
    let page = ManagedTransferPage { has_more_pages: true, items: vec![transfer(true), transfer(false)], total: 3 };
    vec![
        sample("ManagedTransferPage", &page),
        sample("ManagedTransferPage", &ManagedTransferPage { has_more_pages: false, items: Vec::new(), total: 0 }),
        sample(
            "ManagedIntegrationsModel",
            &ManagedIntegrationsModel { integrations: catalog.iter().map(managed_integration).collect() },
        ),
    ]
}
