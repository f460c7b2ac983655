//! What surrounds a transfer, in Mesh's shapes: a connection's transfer history from its provider
//! (`POST /api/v1/transfers/list`), its deposit address (`POST /api/v1/transfers/managed/address/get`), and the
//! token-less reference lists of networks and tokens linkvault can move (`GET /api/v1/transfers/managed/networks`,
//! `/tokens`).

use axum::extract::State;
use linkvault_domain::Operation;
use linkvault_integrations::api::{Transfer, TransferStatus};
use linkvault_integrations::networks::{self, NETWORKS, Network};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::routes::openapi::ApiResult;
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

/// Mesh's `BrokerCryptocurrencyTransactionStatus`.
// The words of [`mesh_status`].
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) enum MeshTransferStatus {
    Pending,
    Succeeded,
    Failed,
}

impl From<TransferStatus> for MeshTransferStatus {
    fn from(status: TransferStatus) -> Self {
        match status {
            TransferStatus::Pending => Self::Pending,
            TransferStatus::Succeeded => Self::Succeeded,
            TransferStatus::Failed => Self::Failed,
        }
    }
}

impl From<linkvault_storage::TransferProgress> for MeshTransferStatus {
    fn from(progress: linkvault_storage::TransferProgress) -> Self {
        use linkvault_storage::TransferProgress as P;
        match progress {
            P::Pending => Self::Pending,
            P::Succeeded => Self::Succeeded,
            P::Failed => Self::Failed,
        }
    }
}

/// Mesh's `TransfersBrokerTransactionsListResponse`.
// Fields in JSON-name order (see `routes::wire`).
#[derive(Serialize, ToSchema)]
#[schema(as = TransfersListModel)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TransfersList {
    /// The next page's cursor; null on the last page.
    cursor: Option<String>,
    earliest_timestamp: i64,
    total: usize,
    transfers: Vec<Transaction>,
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) enum TransactionType {
    Deposit,
    Withdrawal,
}

/// Mesh's `B2BBrokerCryptocurrencyTransaction`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Transaction {
    amount: f64,
    chain: Option<String>,
    created_timestamp: i64,
    from_address: Option<String>,
    hash: Option<String>,
    id: String,
    status: MeshTransferStatus,
    status_details: String,
    symbol: String,
    target_address: String,
    transaction_amount: f64,
    transfer_fee: Option<f64>,
    #[serde(rename = "type")]
    transaction_type: TransactionType,
    updated_timestamp: i64,
}

impl From<&Transfer> for Transaction {
    fn from(t: &Transfer) -> Self {
        let chain = t.network.as_deref().and_then(networks::by_api_name).map(|n| n.name).or(t.network.as_deref());
        Self {
            amount: t.amount,
            chain: chain.map(str::to_owned),
            created_timestamp: millis(t.created_at),
            from_address: t.from_address.clone(),
            hash: t.hash.clone(),
            id: t.id.clone(),
            status: t.status.into(),
            status_details: t.status_details.clone(),
            symbol: t.symbol.clone(),
            target_address: t.address.clone(),
            transaction_amount: t.amount,
            transfer_fee: t.fee,
            transaction_type: if t.incoming { TransactionType::Deposit } else { TransactionType::Withdrawal },
            updated_timestamp: millis(t.created_at),
        }
    }
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
        (status = 200, description = "Answered", body = TransfersList),
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
) -> Result<ApiOk<TransfersList>, ApiError> {
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
    let page: Vec<Transaction> = matching.iter().skip(offset).take(count).map(|t| Transaction::from(*t)).collect();
    let next = offset + page.len();
    Ok(ApiOk(Some(TransfersList {
        cursor: (next < matching.len()).then(|| next.to_string()),
        earliest_timestamp: earliest,
        total: matching.len(),
        transfers: page,
    })))
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

/// Mesh's `ManagedBrokerCryptocurrencyDepositAddressResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = DepositAddressModel)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DepositAddressAnswer {
    address: String,
    /// Always null: the answer comes from the exchange's own API.
    broker_response_status: Option<String>,
    chain: String,
    /// Always null: failures are ApiResult errors.
    error_message: Option<String>,
    memo: Option<String>,
    /// Always null: the exchanges' APIs do not say.
    minimum_deposit_amount: Option<String>,
    network_id: Uuid,
    symbol: String,
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
        (status = 200, description = "Answered", body = DepositAddressAnswer),
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
) -> Result<ApiOk<DepositAddressAnswer>, ApiError> {
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
    Ok(ApiOk(Some(DepositAddressAnswer {
        address: address.address,
        broker_response_status: None,
        chain: network.name.to_owned(),
        error_message: None,
        memo: address.tag,
        minimum_deposit_amount: None,
        network_id: network.id,
        symbol: address.symbol,
    })))
}

/// The integration types whose account API can send (Mesh's `supportedBrokerTypes`).
fn sending_integrations(state: &AppState) -> Vec<String> {
    state
        .catalog
        .iter()
        .filter(|i| i.account_api.is_some() && i.features.transfers)
        .map(|i| i.integration_type.as_str().to_owned())
        .collect()
}

/// Mesh's `NetworkModelResponse`.
#[derive(Serialize, ToSchema)]
pub(crate) struct NetworksModel {
    networks: Vec<NetworkModel>,
}

/// Mesh's `NetworkModel`.
// Fields in JSON-name order (see `routes::wire`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NetworkModel {
    chain_id: &'static str,
    id: Uuid,
    /// Always null: linkvault has no logos of networks.
    logo_url: Option<String>,
    name: &'static str,
    native_symbol: &'static str,
    network_type: &'static str,
    supported_broker_types: Vec<String>,
    supported_tokens: &'static [&'static str],
    tokens: Vec<NetworkToken>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NetworkToken {
    /// Always null: linkvault has no logos of tokens.
    logo_url: Option<String>,
    symbol: &'static str,
}

/// Mesh's `TokenNetworksResponse`.
#[derive(Serialize, ToSchema)]
pub(crate) struct TokensModel {
    tokens: Vec<TokenModel>,
}

/// One token with the networks that carry it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenModel {
    integration_networks: Vec<IntegrationNetwork>,
    networks: Vec<TokenNetwork>,
    supported_integrations: Vec<String>,
    token: &'static str,
    /// Always null: linkvault has no logos of tokens.
    token_logo_url: Option<String>,
}

/// A network that carries the token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenNetwork {
    chain_id: &'static str,
    id: Uuid,
    /// Always null: linkvault has no logos of networks.
    logo_url: Option<String>,
    name: &'static str,
}

/// The token on one network at one integration.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IntegrationNetwork {
    broker_type: String,
    /// linkvault's canonical name of the network.
    inner_network_id: &'static str,
    /// Mesh's spelling.
    netwok_name: &'static str,
    network_id: Uuid,
    /// Always null: linkvault has no logos of networks.
    network_logo: Option<String>,
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
pub(crate) async fn networks(State(state): State<AppState>, Client(_caller): Client) -> ApiOk<NetworksModel> {
    ApiOk(Some(NetworksModel::of(&sending_integrations(&state))))
}

impl NetworksModel {
    /// Every network linkvault knows, each sendable by `brokers`.
    fn of(brokers: &[String]) -> Self {
        let networks = NETWORKS
            .iter()
            .map(|n| NetworkModel {
                chain_id: n.chain_id,
                id: n.id,
                logo_url: None,
                name: n.name,
                native_symbol: n.native_symbol,
                network_type: n.network_type,
                supported_broker_types: brokers.to_vec(),
                supported_tokens: n.tokens,
                tokens: n.tokens.iter().map(|&symbol| NetworkToken { logo_url: None, symbol }).collect(),
            })
            .collect();
        Self { networks }
    }
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
pub(crate) async fn tokens(State(state): State<AppState>, Client(_caller): Client) -> ApiOk<TokensModel> {
    ApiOk(Some(TokensModel::of(&sending_integrations(&state))))
}

impl TokensModel {
    /// Every token linkvault moves, with the networks carrying it, each sendable by `brokers`.
    fn of(brokers: &[String]) -> Self {
        let mut symbols: Vec<&'static str> = NETWORKS.iter().flat_map(|n| n.tokens.iter().copied()).collect();
        symbols.sort_unstable();
        symbols.dedup();
        let tokens = symbols
            .into_iter()
            .map(|symbol| {
                let carrying: Vec<&Network> = NETWORKS.iter().filter(|n| n.tokens.contains(&symbol)).collect();
                let integration_networks = carrying
                    .iter()
                    .flat_map(|n| {
                        brokers.iter().map(move |broker_type| IntegrationNetwork {
                            broker_type: broker_type.clone(),
                            inner_network_id: n.api_name,
                            netwok_name: n.name,
                            network_id: n.id,
                            network_logo: None,
                        })
                    })
                    .collect();
                TokenModel {
                    integration_networks,
                    networks: carrying
                        .iter()
                        .map(|n| TokenNetwork { chain_id: n.chain_id, id: n.id, logo_url: None, name: n.name })
                        .collect(),
                    supported_integrations: brokers.to_vec(),
                    token: symbol,
                    token_logo_url: None,
                }
            })
            .collect();
        Self { tokens }
    }
}

/// Representative answers, for the schema test in `routes::openapi`.
#[cfg(test)]
pub(crate) fn samples() -> Vec<(&'static str, String)> {
    use crate::routes::wire::sample;
    let brokers = vec!["coinbase".to_owned(), "binanceInternational".to_owned()];
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let transfer = |incoming: bool, status: TransferStatus, network: Option<&str>| Transfer {
        id: "t-1".to_owned(),
        symbol: "USDC".to_owned(),
        amount: 5.0,
        address: "0xabc".to_owned(),
        network: network.map(str::to_owned),
        status,
        status_details: String::new(),
        created_at: at,
        fee: incoming.then_some(0.5),
        fee_currency: None,
        from_address: None,
        hash: (!incoming).then(|| "0xhash".to_owned()),
        incoming,
    };
    let list = TransfersList {
        cursor: Some("1".to_owned()),
        earliest_timestamp: millis(at),
        total: 2,
        transfers: vec![
            Transaction::from(&transfer(true, TransferStatus::Succeeded, Some("ethereum"))),
            Transaction::from(&transfer(false, TransferStatus::Pending, None)),
        ],
    };
    let address = DepositAddressAnswer {
        address: "0xabc".to_owned(),
        broker_response_status: None,
        chain: "Ethereum".to_owned(),
        error_message: None,
        memo: Some("tag".to_owned()),
        minimum_deposit_amount: None,
        network_id: NETWORKS[0].id,
        symbol: "ETH".to_owned(),
    };
    vec![
        sample("TransfersListModel", &list),
        sample(
            "TransfersListModel",
            &TransfersList { cursor: None, earliest_timestamp: 0, total: 0, transfers: vec![] },
        ),
        sample("DepositAddressModel", &address),
        sample("NetworksModel", &NetworksModel::of(&brokers)),
        sample("TokensModel", &TokensModel::of(&brokers)),
        sample("TokensModel", &TokensModel::of(&[])),
    ]
}
