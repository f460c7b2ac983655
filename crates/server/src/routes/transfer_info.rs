//! What surrounds a transfer, in Mesh's shapes: a connection's transfer history from its provider
//! (`POST /api/v1/transfers/list`), its deposit address (`POST /api/v1/transfers/managed/address/get`), and the
//! token-less reference lists of networks and tokens linkvault can move (`GET /api/v1/transfers/managed/networks`,
//! `/tokens`).

use axum::extract::State;
use linkvault_domain::Operation;
use linkvault_integrations::api::{Transfer, TransferStatus};
use linkvault_integrations::networks::{self, NETWORKS, Network};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::routes::openapi::{ApiResult, DepositAddressModel, NetworksModel, TokensModel, TransfersListModel};
use crate::routes::token_use::{call_account, use_connection};

/// Largest page of `transfers/list` (Mesh's `count`).
const MAX_COUNT: usize = 100;
const DEFAULT_COUNT: usize = 20;

/// Mesh's `TransfersBrokerTransactionsListRequest` (+ the extension `userId`).
#[derive(Deserialize, ToSchema)]
#[schema(as = TransfersListRequest)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListRequest {
    auth_token: String,
    #[serde(rename = "type")]
    integration_type: String,
    /// Items per page: absent or 0 is 20, more than 100 is 100.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    count: Option<i64>,
    /// The offset of the page, as returned in the previous page's `cursor`.
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    statuses: Option<Vec<String>>,
    /// Only transfers created at or after this time (Unix milliseconds).
    #[serde(default)]
    from: Option<i64>,
    /// Extension: the end user the call is for
    #[serde(default)]
    user_id: Option<String>,
}

/// Mesh's `ManagedBrokerCryptocurrencyDepositAddressRequest` (+ the extension `userId`).
#[derive(Deserialize, ToSchema)]
#[schema(as = DepositAddressRequest)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AddressRequest {
    auth_token: String,
    #[serde(rename = "type")]
    integration_type: String,
    /// A ticker symbol such as ETH or USDC; missing or empty: 400 missingField.
    #[serde(default)]
    #[schema(required = true)]
    symbol: Option<String>,
    /// The network; absent: the first network linkvault knows that carries the symbol.
    #[serde(default)]
    #[schema(format = Uuid)]
    network_id: Option<String>,
    /// Accepted for compatibility; no integration here asks for a code to show an address.
    #[serde(default)]
    #[allow(dead_code)]
    #[schema(value_type = Object)]
    address_type: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    mfa_code: Option<String>,
    /// Extension: the end user the call is for
    #[serde(default)]
    user_id: Option<String>,
}

/// Mesh's word for where a transfer stands (`BrokerCryptocurrencyTransactionStatus`, execute's `status`).
pub(crate) fn mesh_status(status: TransferStatus) -> &'static str {
    match status {
        TransferStatus::Pending => "pending",
        TransferStatus::Succeeded => "succeeded",
        TransferStatus::Failed => "failed",
    }
}

fn millis(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Mesh's `B2BBrokerCryptocurrencyTransaction`.
fn transaction(t: &Transfer) -> Value {
    let chain = t.network.as_deref().and_then(networks::by_api_name).map(|n| n.name).or(t.network.as_deref());
    json!({
        "id": t.id,
        "status": mesh_status(t.status),
        "statusDetails": t.status_details,
        "type": if t.incoming { "deposit" } else { "withdrawal" },
        "fromAddress": t.from_address,
        "targetAddress": t.address,
        "symbol": t.symbol,
        "chain": chain,
        "hash": t.hash,
        "amount": t.amount,
        "transactionAmount": t.amount,
        "createdTimestamp": millis(t.created_at),
        "updatedTimestamp": millis(t.created_at),
        "transferFee": t.fee,
    })
}

/// `POST /api/v1/transfers/list`: the connection's transfers at the provider, newest first, paginated.
#[utoipa::path(
    post,
    path = "/api/v1/transfers/list",
    operation_id = "listTransfers",
    summary = "Transfer history of a connected account (read)",
    description = "Deposits and withdrawals from the provider, newest first; cursor is the offset of the next page.",
    request_body = ListRequest,
    responses(
        (status = 200, description = "Answered", body = TransfersListModel),
        (status = 400, description = "missingField / invalidField naming the field, integrationNotFound, \
            reauthenticationRequired, featureNotSupported (the integration holds tokens only)", body = ApiResult),
        (status = 403, description = "tokenExpired, tokenRevoked (client-managed access tokens)", body = ApiResult),
        (status = 404, description = "tokenNotFound (unknown, another client's, or with userId another user's); \
            notFoundAtIntegration", body = ApiResult),
        (status = 500, description = "integrationUnavailable", body = ApiResult),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<ListRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    let count = match req.count {
        None | Some(0) => DEFAULT_COUNT,
        Some(n) if n < 0 => return Err(ApiError::invalid_field("count", "must not be negative")),
        Some(n) => usize::try_from(n).unwrap_or(MAX_COUNT).min(MAX_COUNT),
    };
    let offset = match req.cursor.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(c) => c.parse::<usize>().map_err(|_| {
            ApiError::invalid_field(
                "cursor",
                "is not a cursor this endpoint returned (send the previous page's cursor)",
            )
        })?,
    };
    let statuses: Option<Vec<String>> =
        req.statuses.as_ref().map(|list| list.iter().map(|s| s.trim().to_ascii_lowercase()).collect());
    let user = req.user_id.as_deref();
    let mut resolved =
        use_connection(&state, &caller, &req.auth_token, &req.integration_type, user, Operation::Read).await?;
    let mut history = call_account(&state, &mut resolved, &(), |api, call, ()| api.history(call))
        .await
        .map_err(|e| e.into_api_error(&resolved))?;
    history.sort_by_key(|t| std::cmp::Reverse(t.created_at));
    let earliest = history.iter().map(|t| millis(t.created_at)).min().unwrap_or(0);
    let matching: Vec<&Transfer> = history
        .iter()
        .filter(|t| req.from.is_none_or(|from| millis(t.created_at) >= from))
        .filter(|t| statuses.as_ref().is_none_or(|s| s.iter().any(|s| s.eq_ignore_ascii_case(mesh_status(t.status)))))
        .collect();
    let page: Vec<Value> = matching.iter().skip(offset).take(count).map(|t| transaction(t)).collect();
    let next = offset + page.len();
    Ok(ApiOk(Some(json!({
        "transfers": page,
        "total": matching.len(),
        "cursor": (next < matching.len()).then(|| next.to_string()),
        "earliestTimestamp": earliest,
    }))))
}

fn network_of(raw: Option<&str>, symbol: &str) -> Result<&'static Network, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        Some(raw) => {
            let id = Uuid::parse_str(raw).map_err(|_| ApiError::invalid_field("networkId", "must be a UUID"))?;
            networks::by_id(id).ok_or_else(|| {
                ApiError::invalid_field(
                    "networkId",
                    "is not a network linkvault knows (see GET /api/v1/transfers/managed/networks)",
                )
            })
        }
        None => NETWORKS
            .iter()
            .find(|n| n.tokens.contains(&symbol))
            .ok_or_else(|| ApiError::invalid_field("symbol", "no network linkvault knows carries it; send networkId")),
    }
}

/// `POST /api/v1/transfers/managed/address/get`: where the connected account receives `symbol` on a network.
#[utoipa::path(
    post,
    path = "/api/v1/transfers/managed/address/get",
    operation_id = "depositAddress",
    summary = "Deposit address of a connected account (read)",
    description = "Where the account receives symbol on networkId (the first network carrying the symbol when absent).",
    request_body = AddressRequest,
    responses(
        (status = 200, description = "Answered", body = DepositAddressModel),
        (status = 400, description = "missingField / invalidField naming the field, integrationNotFound, \
            reauthenticationRequired, featureNotSupported (the integration holds tokens only)", body = ApiResult),
        (status = 403, description = "tokenExpired, tokenRevoked (client-managed access tokens)", body = ApiResult),
        (status = 404, description = "tokenNotFound (unknown, another client's, or with userId another user's); \
            notFoundAtIntegration", body = ApiResult),
        (status = 500, description = "integrationUnavailable", body = ApiResult),
    )
)]
pub(crate) async fn deposit_address(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<AddressRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    let symbol = match req.symbol.as_deref().map(str::trim) {
        None | Some("") => return Err(ApiError::missing_field("symbol")),
        Some(s) if s.len() <= 20 && s.bytes().all(|b| b.is_ascii_alphanumeric()) => s.to_ascii_uppercase(),
        Some(_) => return Err(ApiError::invalid_field("symbol", "must be a ticker symbol such as ETH or USDC")),
    };
    let network = network_of(req.network_id.as_deref(), &symbol)?;
    let user = req.user_id.as_deref();
    let mut resolved =
        use_connection(&state, &caller, &req.auth_token, &req.integration_type, user, Operation::Read).await?;
    let wanted = (symbol.as_str(), network.api_name);
    let address = call_account(&state, &mut resolved, &wanted, |api, call, (symbol, network)| {
        api.deposit_address(call, symbol, network)
    })
    .await
    .map_err(|e| e.into_api_error(&resolved))?;
    Ok(ApiOk(Some(json!({
        "symbol": address.symbol,
        "address": address.address,
        "chain": network.name,
        "memo": address.tag,
        "minimumDepositAmount": null,
        "networkId": network.id,
        "brokerResponseStatus": null,
        "errorMessage": null,
    }))))
}

/// The integration types whose account API can send (Mesh's `supportedBrokerTypes`).
fn sending_integrations(state: &AppState) -> Vec<&str> {
    state
        .catalog
        .iter()
        .filter(|i| i.account_api.is_some() && i.features.transfers)
        .map(|i| i.integration_type.as_str())
        .collect()
}

fn network_base(n: &Network) -> Value {
    json!({"id": n.id, "name": n.name, "chainId": n.chain_id, "logoUrl": null})
}

/// `GET /api/v1/transfers/managed/networks`: Mesh's `NetworkModelResponse`.
#[utoipa::path(
    get,
    path = "/api/v1/transfers/managed/networks",
    operation_id = "transferNetworks",
    summary = "Networks linkvault can move assets on",
    description = "Reference data (no token); supportedBrokerTypes are the integrations whose account API can send.",
    responses(
        (status = 200, description = "Answered", body = NetworksModel),
    )
)]
pub(crate) async fn networks(State(state): State<AppState>, Client(_caller): Client) -> ApiOk<Value> {
    let brokers = sending_integrations(&state);
    let list: Vec<Value> = NETWORKS
        .iter()
        .map(|n| {
            let mut v = network_base(n);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("supportedTokens".to_owned(), json!(n.tokens));
                obj.insert("nativeSymbol".to_owned(), json!(n.native_symbol));
                obj.insert("networkType".to_owned(), json!(n.network_type));
                let tokens: Vec<Value> = n.tokens.iter().map(|t| json!({"symbol": t, "logoUrl": null})).collect();
                obj.insert("tokens".to_owned(), json!(tokens));
                obj.insert("supportedBrokerTypes".to_owned(), json!(brokers));
            }
            v
        })
        .collect();
    ApiOk(Some(json!({ "networks": list })))
}

/// `GET /api/v1/transfers/managed/tokens`: Mesh's `TokenNetworksResponse`, one entry per token.
#[utoipa::path(
    get,
    path = "/api/v1/transfers/managed/tokens",
    operation_id = "transferTokens",
    summary = "Tokens linkvault can move, with their networks",
    description = "Reference data (no token); supportedBrokerTypes are the integrations whose account API can send.",
    responses(
        (status = 200, description = "Answered", body = TokensModel),
    )
)]
pub(crate) async fn tokens(State(state): State<AppState>, Client(_caller): Client) -> ApiOk<Value> {
    let brokers = sending_integrations(&state);
    let mut symbols: Vec<&str> = NETWORKS.iter().flat_map(|n| n.tokens.iter().copied()).collect();
    symbols.sort_unstable();
    symbols.dedup();
    let list: Vec<Value> = symbols
        .iter()
        .map(|symbol| {
            let carrying: Vec<&Network> = NETWORKS.iter().filter(|n| n.tokens.contains(symbol)).collect();
            let integration_networks: Vec<Value> = carrying
                .iter()
                .flat_map(|n| {
                    brokers.iter().map(move |b| {
                        json!({"networkId": n.id, "netwokName": n.name, "innerNetworkId": n.api_name,
                               "networkLogo": null, "brokerType": b})
                    })
                })
                .collect();
            json!({
                "token": symbol,
                "networks": carrying.iter().map(|n| network_base(n)).collect::<Vec<_>>(),
                "supportedIntegrations": brokers,
                "integrationNetworks": integration_networks,
                "tokenLogoUrl": null,
            })
        })
        .collect();
    ApiOk(Some(json!({ "tokens": list })))
}
