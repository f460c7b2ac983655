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
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::routes::openapi::{ApiResult, ManagedIntegrationsModel, ManagedTransferPage, MeshTransferQuery};
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

/// Mesh's `TransferModel` for one execution.
fn transfer_model(state: &AppState, row: &TransferExecutionRecord) -> Value {
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
    json!({
        "id": row.preview_id,
        "clientTransactionId": row.client_transaction_id,
        "institutionTransactionId": row.transfer_id,
        "status": row.follow.status.map(|s| s.as_str()),
        "amountInFiat": amount_in_fiat,
        "amountToReceiveInFiat": amount_in_fiat,
        "amountInFiatCurrencyCode": "USD",
        "amount": amount,
        "amountToReceive": amount,
        "requestedTransferAmount": amount,
        "sourceAmount": amount + fee_in_symbol,
        "destinationAmount": amount,
        "destinationAmountInFiat": amount_in_fiat,
        "symbol": sent.map(|s| s.symbol.clone()),
        "tokenAddress": null,
        "networkId": sent.map(|s| s.network_id),
        "networkName": network.map(|n| n.name),
        "networkLogoUrl": null,
        "createdTimestamp": seconds(row.created_at),
        "executedTimestamp": seconds(row.created_at),
        "hash": row.follow.hash,
        "clientId": row.client_id.to_string(),
        "userId": sent.map(|s| s.user_id.clone()),
        "destinationAddress": sent.map(|s| s.to_address.clone()),
        "gasFee": null,
        "withdrawalFee": fee.is_object().then(|| json!({
            "fee": fee["fee"], "feeCurrency": fee["feeCurrency"], "feeInFiat": fee_in_fiat,
            "feeInTransferCurrency": fee_in_symbol,
        })),
        "processingFee": null,
        "totalFeesAmountInFiat": fee_in_fiat,
        "totalTransactionAmountInFiat": amount_in_fiat + fee_in_fiat,
        "unitPrice": unit_price,
        "isSmartFundingTransfer": false,
        "isBridgingTransfer": false,
        "fundingMethods": [],
        "from": integration.map(|i| json!({
            "id": i.id, "type": i.integration_type.as_str(), "name": i.name, "logoUrl": i.logo.url,
        })),
    })
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
) -> Result<ApiOk<Value>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
    let params = Params::parse(pairs)?;
    let Some(filter) = filter(&state, &params)? else {
        return Ok(ApiOk(Some(json!({"items": [], "total": 0, "hasMorePages": false}))));
    };
    let page = state.vault.transfer_executions(caller.client_id, &filter).await.map_err(|e| ApiError::internal(&e))?;
    let items: Vec<Value> = page.items.iter().map(|row| transfer_model(&state, row)).collect();
    let shown = filter.offset.saturating_add(items.len() as u64);
    Ok(ApiOk(Some(json!({"items": items, "total": page.total, "hasMorePages": shown < page.total}))))
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
pub(crate) async fn integrations(State(state): State<AppState>, Client(_caller): Client) -> ApiOk<Value> {
    let list: Vec<Value> = state
        .catalog
        .iter()
        .map(|i| {
            let has_api = i.account_api.is_some();
            let outgoing = has_api && i.features.transfers;
            let networks: Vec<Value> = if has_api {
                NETWORKS
                    .iter()
                    .map(|n| json!({"id": n.id, "name": n.name, "chainId": n.chain_id, "supportedTokens": n.tokens}))
                    .collect()
            } else {
                Vec::new()
            };
            json!({
                "id": i.id,
                "type": i.integration_type.as_str(),
                "name": i.name,
                "networks": networks,
                "supportsOutgoingTransfers": outgoing,
                // Deposits reach the account at its deposit address, which every account API gives.
                "supportsIncomingTransfers": has_api,
            })
        })
        .collect();
    ApiOk(Some(json!({ "integrations": list })))
}
