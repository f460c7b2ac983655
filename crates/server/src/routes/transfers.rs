//! `POST /api/v1/transfers/managed/preview` and `POST /api/v1/transfers/managed/execute`: sending crypto from
//! a connected account by its tokenId, in Mesh's shapes, exactly once.
//!
//! A preview validates the request, asks the integration for a quote (balance, network, fee) and stores what
//! the client agreed to for `previewExpiresIn` seconds. An execute claims the preview in the database *before*
//! calling the integration (one conditional insert, unique per preview and per client on transactionId and
//! `Idempotency-Key`), so a retried or concurrent execute — on any instance — finds the claim and answers with
//! its stored result (or `inProgress`). The integration is called with an idempotency key derived from the
//! previewId, so even a crash between its answer and our write-back cannot send twice: the retry that takes
//! the abandoned claim over gets the first transfer back. That bookkeeping is the vault's
//! (`Vault::begin_transfer_execution` answers what to do next); this module maps its answer to Mesh's shapes and
//! makes the integration call.
//!
//! The work itself ([`make_preview`], [`execute_preview`]) takes the client id and a resolved connection, so
//! the Link page's transfer flow (`link::transfer`) runs the very same code; the handlers here only parse
//! Mesh's request shapes and resolve the tokenId.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use linkvault_domain::{ClientId, Operation, Scope};
use linkvault_integrations::api::{
    ApiError as Upstream, QuoteRequest, Refusal, SendOutcome, SendRequest, Transfer, TransferQuote,
};
use linkvault_integrations::networks::{self, Network};
use linkvault_storage::{CompletedTransfer, SentTransfer, TransferPreviewRecord};
use linkvault_vault::{Caller, ExecutionRequest, ExecutionStep, ExecutionTicket};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::api_result::{ApiError, ApiOk, ApiStatus, ErrorType};
use crate::auth::Client;
use crate::extract::ApiJson;
use crate::routes::openapi::ApiResult;
use crate::routes::token_use::{
    AccountFailure, Resolved, call_account, key_scope_insufficient, reauthentication_required_for, upstream_error,
    use_connection,
};
use crate::routes::transfer_info::MeshTransferStatus;
use crate::routes::wire::{FiatCurrency, Succeeded};

/// How long a preview can be executed (Mesh's `previewExpiresIn`, 300 s in its examples).
pub const PREVIEW_EXPIRES_IN: Duration = Duration::from_secs(300);
/// Expired previews are kept this long for a clear `previewExpired` answer, then purged.
const PURGE_AFTER: time::Duration = time::Duration::days(1);
/// Mesh's limit on `transactionId`.
pub(crate) const MAX_TRANSACTION_ID_CHARS: usize = 128;
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
pub(crate) const MAX_ADDRESS_CHARS: usize = 128;
pub(crate) const MAX_SYMBOL_CHARS: usize = 20;
/// Largest amount accepted, in the symbol or in fiat: anything bigger is a unit mistake.
pub(crate) const MAX_AMOUNT: f64 = 1e15;
/// Time for recording the integration's answer after the call itself.
const WRITE_BACK_ALLOWANCE: Duration = Duration::from_secs(5);
/// Namespace of the idempotency keys sent to integrations (UUIDv5 of the previewId under it).
const IDEM_NAMESPACE: Uuid = Uuid::from_u128(0x6c76_7472_616e_7366_6572_6964_656d_0001);
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The idempotency key an execute of `preview_id` sends to the integration: the same for every attempt, on
/// every instance, so the integration recognises a repeat.
pub fn upstream_idempotency_key(preview_id: Uuid) -> String {
    Uuid::new_v5(&IDEM_NAMESPACE, preview_id.as_bytes()).to_string()
}

/// How long an execute holds its claim before a retry may take it over: one integration call at its worst plus
/// the write-back, so a live holder is never overtaken.
fn claim_lease(state: &AppState) -> time::Duration {
    span(state.exchange.limits().worst_case() + WRITE_BACK_ALLOWANCE)
}

fn span(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// Mesh's PreviewTransferRequest. Exactly one of amount and amountInFiat.
#[derive(Deserialize, ToSchema)]
#[schema(as = PreviewTransferRequest)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreviewRequest {
    /// The tokenId of a write-scoped connection
    #[schema(min_length = 1)]
    from_auth_token: String,
    from_type: String,
    /// Not supported: send toAddress
    #[serde(default)]
    to_auth_token: Option<String>,
    /// Not supported
    #[serde(default)]
    to_type: Option<String>,
    /// Mesh's network id: Ethereum e3c7fdd8-b1fc-4e51-85ae-bb276e075611, Polygon
    /// 7436e9d0-ba42-4d2b-b4c0-8e4e606b2c12, Solana 0291810a-5947-424d-9a59-e88bb33e999d, Base
    /// aa883b03-120d-477c-a588-37c2afd3ca71
    #[serde(default)]
    #[schema(required = true, format = Uuid)]
    network_id: Option<String>,
    #[serde(default)]
    #[schema(required = true, max_length = 20)]
    symbol: Option<String>,
    #[serde(default)]
    #[schema(required = true, max_length = 128)]
    to_address: Option<String>,
    #[serde(default)]
    #[schema(max_length = 128)]
    address_tag: Option<String>,
    #[serde(default)]
    #[schema(exclusive_minimum = 0)]
    amount: Option<f64>,
    #[serde(default)]
    #[schema(exclusive_minimum = 0)]
    amount_in_fiat: Option<f64>,
    /// USD only
    #[serde(default)]
    #[schema(value_type = Option<FiatCurrency>)]
    fiat_currency: Option<String>,
    /// The client's id for the transfer: at most one transfer per client is executed under it
    #[serde(default)]
    #[schema(max_length = 128)]
    transaction_id: Option<String>,
    /// true is not supported
    #[serde(default)]
    is_bridging: Option<bool>,
    /// The fee comes out of the amount
    #[serde(default)]
    is_inclusive_fee_enabled: Option<bool>,
    /// Extension: the end user the call is for
    #[serde(default)]
    user_id: Option<String>,
}

/// Mesh's `ExecuteTransferRequest` (+ the extension `userId`).
#[derive(Deserialize, ToSchema)]
#[schema(as = ExecuteTransferRequest)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecuteRequest {
    /// The tokenId the preview was made with
    #[schema(min_length = 1)]
    from_auth_token: String,
    from_type: String,
    #[schema(format = Uuid)]
    preview_id: String,
    /// the second factor after an mfaRequired answer (Coinbase 2FA)
    #[serde(default)]
    mfa_code: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    try_another_mfa: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    challenge_id: Option<String>,
    /// Extension: the end user the call is for
    #[serde(default)]
    user_id: Option<String>,
}

/// What the client agreed to, as stored with the preview (JSON) and used by the execute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreviewDetails {
    network_id: Uuid,
    network_name: String,
    /// The network's name at the integration's API.
    network: String,
    symbol: String,
    to_address: String,
    address_tag: Option<String>,
    /// What the destination receives, in the symbol (sent to the integration as the amount).
    amount: f64,
    amount_in_fiat: f64,
    fee: f64,
    fee_currency: String,
    fee_in_fiat: f64,
    unit_price: f64,
    /// What leaves the account, fees included.
    total_amount: f64,
    total_amount_in_fiat: f64,
    from_address: Option<String>,
    inclusive_fee: bool,
    /// The exchange's own quote, committed by the execute (Uphold); absent where the exchange makes none.
    #[serde(default)]
    quote_id: Option<String>,
}

impl PreviewDetails {
    /// Identifies the transfer itself (source, destination, asset, amount), not the preview.
    fn fingerprint(&self, token_id: &str, integration: &str) -> String {
        let canonical = json!([
            token_id,
            integration,
            self.network,
            self.symbol,
            self.to_address,
            self.address_tag,
            self.amount.to_bits().to_string()
        ]);
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.to_string().as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Mesh's `TransferFee`: a fee, its currency and its USD value.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TransferFee {
    fee: f64,
    fee_currency: String,
    fee_in_fiat: f64,
}

/// Mesh's `PreviewTransferResponse`.
// Fields in JSON-name order (see `routes::wire`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreviewTransferResponse {
    preview_result: PreviewResult,
    status: Succeeded,
}

/// Mesh's `PreviewTransferResult`: what the client agrees to by executing the preview.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreviewResult {
    address_tag: Option<String>,
    /// What the destination receives
    amount: f64,
    amount_in_fiat: f64,
    client_transaction_id: Option<String>,
    /// Always null: the exchange's fee covers the network's.
    estimated_network_gas_fee: Option<TransferFee>,
    fiat_currency: FiatCurrency,
    from_address: Option<String>,
    institution_transfer_fee: TransferFee,
    is_inclusive_fee_enabled: bool,
    network_id: Uuid,
    network_name: String,
    /// Seconds (300)
    preview_expires_in: i64,
    preview_id: Uuid,
    symbol: String,
    to_address: String,
    /// What leaves the account, fees included
    total_estimated_amount: f64,
    total_estimated_amount_in_fiat: f64,
    unit_price: f64,
}

/// Mesh's `ExecuteTransferResponse`.
// Fields in JSON-name order (see `routes::wire`), as the execution's stored result, which a retry answers
// again, has them.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecuteTransferResponse {
    error_message: Option<String>,
    /// With succeeded only.
    execute_transfer_result: Option<ExecuteTransferResult>,
    /// With mfaRequired: the second factor the exchange asks for (execute again with mfaCode)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    mfa_type: Option<String>,
    status: ExecuteStatus,
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ExecuteStatus {
    Succeeded,
    InProgress,
    MfaRequired,
    MfaFailed,
    Failed,
}

/// Mesh's `ExecuteTransferResult`: the transfer the exchange made.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecuteTransferResult {
    amount: f64,
    amount_in_fiat: f64,
    from_address: Option<String>,
    hash: Option<String>,
    institution_transfer_fee: TransferFee,
    /// Always null: the exchange's fee covers the network's.
    network_gas_fee: Option<TransferFee>,
    network_id: Uuid,
    network_name: String,
    status: MeshTransferStatus,
    status_details: String,
    symbol: String,
    to_address: String,
    total_amount_in_fiat: f64,
    transfer_id: String,
}

/// What an execute answers: a new [`ExecuteTransferResponse`], or, for a retry of an execution already made,
/// the stored JSON of the one first answered (written by this type, and answered as stored).
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum ExecuteAnswer {
    New(Box<ExecuteTransferResponse>),
    Replay(Value),
}

impl ExecuteTransferResponse {
    /// An execute that made no transfer.
    fn without_result(status: ExecuteStatus, message: String) -> Self {
        Self { error_message: Some(message), execute_transfer_result: None, mfa_type: None, status }
    }
}

/// Refuses a read key before anything else: the endpoint is write-only whatever the tokenId.
pub(crate) fn require_write_key(caller: &Caller) -> Result<(), ApiError> {
    if caller.scope == Scope::Write { Ok(()) } else { Err(key_scope_insufficient()) }
}

pub(crate) async fn resolve_write<'a>(
    state: &'a AppState,
    caller: &Caller,
    auth_token: &str,
    integration_type: &str,
    user_id: Option<&str>,
) -> Result<Resolved<'a>, ApiError> {
    Ok(use_connection(state, caller, auth_token, integration_type, user_id, Operation::Write).await?)
}

fn required<'a>(field: &str, value: &'a Option<String>) -> Result<&'a str, ApiError> {
    match value.as_deref().map(str::trim) {
        None => Err(ApiError::missing_field(field)),
        Some("") => Err(ApiError::invalid_field(field, "must not be empty")),
        Some(v) => Ok(v),
    }
}

pub(crate) fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    if value.chars().count() > max_chars {
        return Err(ApiError::invalid_field(field, format!("is longer than {max_chars} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(field, "must not contain control characters"));
    }
    Ok(())
}

pub(crate) fn check_amount(field: &str, value: f64) -> Result<f64, ApiError> {
    if !value.is_finite() || value <= 0.0 {
        return Err(ApiError::invalid_field(field, "must be a positive number"));
    }
    if value > MAX_AMOUNT {
        return Err(ApiError::invalid_field(field, format!("must be at most {MAX_AMOUNT}")));
    }
    Ok(value)
}

/// A validated preview request, before the integration is asked.
pub(crate) struct ValidPreview {
    pub network: &'static Network,
    pub symbol: String,
    pub to_address: String,
    pub address_tag: Option<String>,
    /// `Ok(amount in the symbol)` or `Err(amount in USD)`.
    pub amount: Result<f64, f64>,
    pub transaction_id: Option<String>,
    pub inclusive_fee: bool,
}

fn validate_preview(req: &PreviewRequest) -> Result<ValidPreview, ApiError> {
    if req.to_auth_token.is_some() || req.to_type.is_some() {
        return Err(ApiError::invalid_field(
            "toAuthToken",
            "transfers to another connected account are not supported; send toAddress",
        ));
    }
    if req.is_bridging == Some(true) {
        return Err(ApiError::invalid_field("isBridging", "bridging transfers are not supported"));
    }
    let raw_network = required("networkId", &req.network_id)?;
    let network_id =
        Uuid::parse_str(raw_network).map_err(|_| ApiError::invalid_field("networkId", "must be a UUID"))?;
    let network = networks::by_id(network_id).ok_or_else(|| {
        ApiError::invalid_field(
            "networkId",
            "is not a network linkvault can send over (Ethereum, Polygon, Solana, Base)",
        )
    })?;
    let symbol = required("symbol", &req.symbol)?;
    if symbol.len() > MAX_SYMBOL_CHARS || !symbol.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::invalid_field("symbol", "must be a ticker symbol such as ETH or USDC"));
    }
    let to_address = required("toAddress", &req.to_address)?;
    check_text("toAddress", to_address, MAX_ADDRESS_CHARS)?;
    if !network.address.accepts(to_address) {
        return Err(ApiError::invalid_field(
            "toAddress",
            format!("is not a {} address ({})", network.name, network.address.describe()),
        ));
    }
    let address_tag = match req.address_tag.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(tag) => {
            check_text("addressTag", tag, MAX_ADDRESS_CHARS)?;
            Some(tag.to_owned())
        }
    };
    let amount = match (req.amount, req.amount_in_fiat) {
        (None, None) => return Err(ApiError::missing_field("amount")),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field("amountInFiat", "send either amount or amountInFiat, not both"));
        }
        (Some(a), None) => Ok(check_amount("amount", a)?),
        (None, Some(f)) => Err(check_amount("amountInFiat", f)?),
    };
    if let Some(currency) = req.fiat_currency.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        if !currency.eq_ignore_ascii_case("USD") {
            return Err(ApiError::invalid_field("fiatCurrency", "only USD is supported"));
        }
    }
    let transaction_id = match req.transaction_id.as_deref() {
        None | Some("") => None,
        Some(id) => {
            check_text("transactionId", id, MAX_TRANSACTION_ID_CHARS)?;
            Some(id.to_owned())
        }
    };
    Ok(ValidPreview {
        network,
        symbol: symbol.to_ascii_uppercase(),
        to_address: to_address.to_owned(),
        address_tag,
        amount,
        transaction_id,
        inclusive_fee: req.is_inclusive_fee_enabled.unwrap_or(false),
    })
}

/// The request field a refusal is about.
fn refusal_field(reason: &Refusal, fiat: bool) -> &'static str {
    match reason {
        Refusal::InsufficientFunds | Refusal::BelowMinimum if fiat => "amountInFiat",
        Refusal::InsufficientFunds | Refusal::BelowMinimum => "amount",
        Refusal::UnsupportedAsset => "symbol",
        Refusal::UnsupportedNetwork => "networkId",
        Refusal::InvalidAddress | Refusal::AddressNotWhitelisted => "toAddress",
        Refusal::QuoteExpired | Refusal::IdempotencyConflict => "previewId",
        Refusal::InvalidMfaCode => "mfaCode",
        Refusal::Other(_) => "amount",
    }
}

/// The refusal in the words of Link's transfer contract (`errorData.reason`), when it is one the end user can
/// act on.
pub(crate) fn refusal_reason(reason: &Refusal) -> Option<&'static str> {
    match reason {
        Refusal::InsufficientFunds => Some("insufficientBalance"),
        Refusal::BelowMinimum => Some("belowMinimum"),
        Refusal::UnsupportedNetwork => Some("unsupportedNetwork"),
        Refusal::InvalidAddress | Refusal::AddressNotWhitelisted => Some("unsupportedAddress"),
        Refusal::UnsupportedAsset => Some("unsupportedAsset"),
        Refusal::QuoteExpired | Refusal::IdempotencyConflict | Refusal::InvalidMfaCode | Refusal::Other(_) => None,
    }
}

/// A refused preview: `invalidField` on the field to fix, with the reason in `errorData` (extension).
pub(crate) fn refused(field: &str, reason: Option<&str>, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_field(field, message).with_data(json!({"field": field, "reason": reason}))
}

/// Maps the integration's refusal of a quote onto the field the client should fix.
fn quote_refused(failure: AccountFailure, fiat: bool, resolved: &Resolved<'_>) -> ApiError {
    match failure {
        AccountFailure::Upstream(Upstream::Refused { reason, message }) => refused(
            refusal_field(&reason, fiat),
            refusal_reason(&reason),
            format!("{} refused the transfer: {message}", resolved.integration.name),
        ),
        other => other.into_api_error(resolved),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/transfers/managed/preview",
    operation_id = "previewTransfer",
    summary = "Preview a transfer from a connected account (write key, write-scoped tokenId)",
    description = "Validates the request, checks balance, network and fee at the integration, and stores the preview \
        for previewExpiresIn (300) seconds.",
    request_body = PreviewRequest,
    responses(
        (status = 200, description = "Previewed", body = PreviewTransferResponse),
        (status = 400, description = "missingField / invalidField naming the field (also for the integration's \
            balance, network or symbol refusal: errorData.reason is insufficientBalance | belowMinimum | \
            unsupportedNetwork | unsupportedAddress | unsupportedAsset), integrationNotFound, \
            reauthenticationRequired", body = ApiResult),
        (status = 403, description = "keyScopeInsufficient (read key) or tokenScopeMismatch (read-scoped tokenId); \
            tokenExpired, tokenRevoked (client-managed access tokens)", body = ApiResult),
        (status = 404, description = "tokenNotFound", body = ApiResult),
        (status = 500, description = "integrationUnavailable", body = ApiResult),
    )
)]
pub(crate) async fn preview(
    State(state): State<AppState>,
    Client(caller): Client,
    ApiJson(req): ApiJson<PreviewRequest>,
) -> Result<ApiOk<PreviewTransferResponse>, ApiError> {
    require_write_key(&caller)?;
    let valid = validate_preview(&req)?;
    let mut resolved =
        resolve_write(&state, &caller, &req.from_auth_token, &req.from_type, req.user_id.as_deref()).await?;
    Ok(ApiOk(Some(make_preview(&state, caller.client_id, &mut resolved, valid).await?)))
}

/// Quotes a validated transfer at the integration and stores the preview for `client_id`: the `content` of
/// `transfers/managed/preview`.
pub(crate) async fn make_preview(
    state: &AppState,
    client_id: ClientId,
    resolved: &mut Resolved<'_>,
    valid: ValidPreview,
) -> Result<PreviewTransferResponse, ApiError> {
    let quote_request = QuoteRequest {
        symbol: valid.symbol.clone(),
        network: valid.network.api_name.to_owned(),
        address: valid.to_address.clone(),
        tag: valid.address_tag.clone(),
        amount: valid.amount.ok(),
        amount_usd: valid.amount.err(),
    };
    let quote: TransferQuote =
        call_account(state, resolved, &quote_request, |api, call, request| api.quote(call, request))
            .await
            .map_err(|e| quote_refused(e, valid.amount.is_err(), resolved))?;

    // Inclusive fees come out of the amount: the destination receives the amount less the fee.
    let (amount, total_amount) = if valid.inclusive_fee {
        (quote.amount - quote.fee, quote.amount)
    } else {
        (quote.amount, quote.amount + quote.fee)
    };
    if amount <= 0.0 {
        return Err(refused("amount", Some("belowMinimum"), "is not more than the fee, so nothing would arrive"));
    }
    let details = PreviewDetails {
        network_id: valid.network.id,
        network_name: valid.network.name.to_owned(),
        network: valid.network.api_name.to_owned(),
        symbol: quote.symbol.clone(),
        to_address: valid.to_address,
        address_tag: valid.address_tag,
        amount,
        amount_in_fiat: amount * quote.price_usd,
        fee: quote.fee,
        fee_currency: quote.fee_currency.clone(),
        fee_in_fiat: quote.fee * quote.price_usd,
        unit_price: quote.price_usd,
        total_amount,
        total_amount_in_fiat: total_amount * quote.price_usd,
        from_address: quote.from_address.clone(),
        inclusive_fee: valid.inclusive_fee,
        quote_id: quote.quote_id.clone(),
    };
    let now = state.vault.clock().now();
    // An exchange quote that ends sooner than ours bounds the preview: executing it later would fail.
    let expires_in = quote
        .expires_at
        .map(|at| (at - now).clamp(time::Duration::ZERO, span(PREVIEW_EXPIRES_IN)))
        .unwrap_or(span(PREVIEW_EXPIRES_IN));
    let record = TransferPreviewRecord {
        preview_id: Uuid::new_v4(),
        client_id,
        token_id: resolved.record.token_id,
        integration: resolved.record.integration.clone(),
        client_transaction_id: valid.transaction_id.clone(),
        details: serde_json::to_string(&details).map_err(|e| ApiError::internal(&e))?,
        created_at: now,
        expires_at: now + expires_in,
    };
    state.vault.save_transfer_preview(&record, now - PURGE_AFTER).await.map_err(ApiError::from_vault_internal)?;
    Ok(PreviewTransferResponse {
        preview_result: PreviewResult {
            address_tag: details.address_tag,
            amount: details.amount,
            amount_in_fiat: details.amount_in_fiat,
            client_transaction_id: record.client_transaction_id,
            estimated_network_gas_fee: None,
            fiat_currency: FiatCurrency::Usd,
            from_address: details.from_address,
            institution_transfer_fee: TransferFee {
                fee: details.fee,
                fee_currency: details.fee_currency,
                fee_in_fiat: details.fee_in_fiat,
            },
            is_inclusive_fee_enabled: details.inclusive_fee,
            network_id: details.network_id,
            network_name: details.network_name,
            preview_expires_in: expires_in.whole_seconds(),
            preview_id: record.preview_id,
            symbol: details.symbol,
            to_address: details.to_address,
            total_estimated_amount: details.total_amount,
            total_estimated_amount_in_fiat: details.total_amount_in_fiat,
            unit_price: details.unit_price,
        },
        status: Succeeded::Succeeded,
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_CHARS && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid_field(
                "Idempotency-Key",
                format!("must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters without spaces"),
            )
        })?;
    Ok(Some(key.to_owned()))
}

fn preview_not_found() -> ApiError {
    ApiError::new(
        ApiStatus::NotFound,
        ErrorType::PreviewNotFound,
        "previewId: no preview with this id exists for this client and tokenId; preview the transfer first",
    )
    .with_data(json!({"field": "previewId"}))
}

fn in_progress() -> ExecuteTransferResponse {
    ExecuteTransferResponse::without_result(
        ExecuteStatus::InProgress,
        "this transfer is being executed by another request; execute again shortly for its result".to_owned(),
    )
}

/// The second factor of an execute, if one was sent.
pub(crate) fn mfa_code_of(raw: Option<&str>) -> Result<Option<SecretString>, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(code) if code.len() <= 32 && code.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Ok(Some(SecretString::from(code.to_owned())))
        }
        Some(_) => Err(ApiError::invalid_field("mfaCode", "must be up to 32 letters and digits")),
    }
}

pub(crate) fn preview_id_of(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid_field("previewId", "must be a UUID"))
}

#[utoipa::path(
    post,
    path = "/api/v1/transfers/managed/execute",
    operation_id = "executeTransfer",
    summary = "Execute a previewed transfer, exactly once",
    description = "Idempotent: a retry with the same previewId, the preview's transactionId or the same \
        Idempotency-Key header answers with the stored result (inProgress while another request holds it) and never \
        transfers twice, across instances.",
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "The client's key for this execute (per client)")),
    request_body = ExecuteRequest,
    responses(
        (status = 200, description = "succeeded (with the transfer), inProgress, mfaRequired, or failed (the \
            integration refused; nothing was sent)", body = ExecuteTransferResponse),
        (status = 400, description = "missingField / invalidField, previewExpired, reauthenticationRequired",
            body = ApiResult),
        (status = 403, description = "keyScopeInsufficient (read key) or tokenScopeMismatch (read-scoped tokenId); \
            tokenExpired, tokenRevoked (client-managed access tokens)", body = ApiResult),
        (status = 404, description = "tokenNotFound, previewNotFound (unknown, another client's, or made with another \
            tokenId)", body = ApiResult),
        (status = 409, description = "idempotencyKeyReused: the transactionId or Idempotency-Key names a different \
            transfer", body = ApiResult),
        (status = 500, description = "integrationUnavailable: the outcome is unknown; execute again with the same \
            previewId", body = ApiResult),
    )
)]
pub(crate) async fn execute(
    State(state): State<AppState>,
    Client(caller): Client,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ExecuteRequest>,
) -> Result<ApiOk<ExecuteAnswer>, ApiError> {
    require_write_key(&caller)?;
    let preview_id = preview_id_of(&req.preview_id)?;
    let idempotency_key = idempotency_key(&headers)?;
    let mfa_code = mfa_code_of(req.mfa_code.as_deref())?;
    let mut resolved =
        resolve_write(&state, &caller, &req.from_auth_token, &req.from_type, req.user_id.as_deref()).await?;
    let answer =
        execute_preview(&state, caller.client_id, &mut resolved, preview_id, idempotency_key, mfa_code).await?;
    Ok(ApiOk(Some(answer)))
}

/// Executes `client_id`'s preview of `resolved`'s connection exactly once: the `content` of
/// `transfers/managed/execute`.
pub(crate) async fn execute_preview(
    state: &AppState,
    client_id: ClientId,
    resolved: &mut Resolved<'_>,
    preview_id: Uuid,
    idempotency_key: Option<String>,
    mfa_code: Option<SecretString>,
) -> Result<ExecuteAnswer, ApiError> {
    let preview = state
        .vault
        .transfer_preview(client_id, preview_id, resolved.record.token_id, &resolved.record.integration)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(preview_not_found)?;
    let details: PreviewDetails = serde_json::from_str(&preview.details).map_err(|e| ApiError::internal(&e))?;
    let fingerprint = details.fingerprint(&preview.token_id.to_string(), &preview.integration);
    let request = ExecutionRequest {
        preview: &preview,
        idempotency_key,
        fingerprint,
        // What is sent, for the client's transfer list and the status follower's webhooks.
        sent: SentTransfer {
            user_id: resolved.record.user_id.clone(),
            integration: preview.integration.clone(),
            symbol: details.symbol.clone(),
            amount: details.amount,
            amount_in_fiat: details.amount_in_fiat,
            network_id: details.network_id,
            to_address: details.to_address.clone(),
        },
        lease: claim_lease(state),
    };
    let ticket = match state.vault.begin_transfer_execution(request).await.map_err(ApiError::from_vault_internal)? {
        ExecutionStep::Proceed(ticket) => ticket,
        ExecutionStep::Replay(result) => {
            return serde_json::from_str(&result).map(ExecuteAnswer::Replay).map_err(|e| ApiError::internal(&e));
        }
        ExecutionStep::InProgress => return Ok(ExecuteAnswer::New(Box::new(in_progress()))),
        ExecutionStep::Conflict { by_transaction_id, preview_id: other } => {
            let field = if by_transaction_id { "transactionId" } else { "Idempotency-Key" };
            return Err(ApiError::new(
                ApiStatus::Conflict,
                ErrorType::IdempotencyKeyReused,
                format!("{field}: already used for a different transfer (previewId {other})"),
            )
            .with_data(json!({"field": field, "previewId": other})));
        }
        ExecutionStep::Expired => {
            return Err(ApiError::new(
                ApiStatus::BadRequest,
                ErrorType::PreviewExpired,
                format!(
                    "previewId: the preview expired ({} s after it was made); preview the transfer again",
                    PREVIEW_EXPIRES_IN.as_secs()
                ),
            )
            .with_data(json!({"field": "previewId"})));
        }
    };
    send(state, resolved, &details, ticket, mfa_code).await.map(|answer| ExecuteAnswer::New(Box::new(answer)))
}

fn transfer_result(details: &PreviewDetails, transfer: &Transfer) -> ExecuteTransferResponse {
    let fee = transfer.fee.unwrap_or(details.fee);
    ExecuteTransferResponse {
        error_message: None,
        execute_transfer_result: Some(ExecuteTransferResult {
            amount: transfer.amount,
            amount_in_fiat: transfer.amount * details.unit_price,
            from_address: transfer.from_address.clone().or_else(|| details.from_address.clone()),
            hash: transfer.hash.clone(),
            institution_transfer_fee: TransferFee {
                fee,
                fee_currency: details.fee_currency.clone(),
                fee_in_fiat: fee * details.unit_price,
            },
            network_gas_fee: None,
            network_id: details.network_id,
            network_name: details.network_name.clone(),
            status: transfer.status.into(),
            status_details: transfer.status_details.clone(),
            symbol: transfer.symbol.clone(),
            to_address: transfer.address.clone(),
            total_amount_in_fiat: (transfer.amount + fee) * details.unit_price,
            transfer_id: transfer.id.clone(),
        }),
        mfa_type: None,
        status: ExecuteStatus::Succeeded,
    }
}

/// Calls the integration for a claimed execution and records the outcome.
async fn send(
    state: &AppState,
    resolved: &mut Resolved<'_>,
    details: &PreviewDetails,
    ticket: ExecutionTicket,
    mfa_code: Option<SecretString>,
) -> Result<ExecuteTransferResponse, ApiError> {
    let request = SendRequest {
        symbol: details.symbol.clone(),
        network: details.network.clone(),
        address: details.to_address.clone(),
        tag: details.address_tag.clone(),
        amount: details.amount,
        idem: upstream_idempotency_key(ticket.execution_id),
        quote_id: details.quote_id.clone(),
        mfa_code,
    };
    let outcome = call_account(state, resolved, &request, |api, call, request| api.send(call, request)).await;
    // `true`: the integration certainly sent nothing (the vault forgets a first attempt's claim then; after a
    // take-over an earlier attempt may have reached the integration, so the claim is kept for the next retry).
    let release = |nothing_sent: bool| state.vault.release_transfer_execution(ticket, nothing_sent);
    let name = &resolved.integration.name;
    match outcome {
        Ok(SendOutcome::Sent(transfer)) => {
            let result = transfer_result(details, &transfer);
            let stored = serde_json::to_string(&result).map_err(|e| ApiError::internal(&e))?;
            let completed = CompletedTransfer {
                result: &stored,
                transfer_id: &transfer.id,
                status: crate::transfer_follower::progress(transfer.status),
                hash: transfer.hash.as_deref(),
            };
            let completed = state
                .vault
                .complete_transfer_execution(ticket, &completed)
                .await
                .map_err(|e| ApiError::internal(&e))?;
            if !completed {
                // Our lease ran out and a retry took over; it sends under the same key and records the same transfer.
                tracing::warn!(attempt = ticket.attempt, "transfer execution was taken over before its write-back");
            }
            state.metrics.transfer_executed();
            Ok(result)
        }
        Ok(SendOutcome::MfaRequired { mfa_type }) => {
            // The exchange refused before sending: the next execute, with the code, claims afresh.
            release(true).await;
            Ok(ExecuteTransferResponse {
                mfa_type: Some(mfa_type),
                ..ExecuteTransferResponse::without_result(
                    ExecuteStatus::MfaRequired,
                    format!("{name} asks for a second factor: execute again with mfaCode"),
                )
            })
        }
        Err(AccountFailure::Reauth) => {
            release(true).await;
            Err(reauthentication_required_for(resolved))
        }
        Err(AccountFailure::Upstream(Upstream::Refused { reason: Refusal::InvalidMfaCode, message })) => {
            release(true).await;
            Ok(ExecuteTransferResponse::without_result(
                ExecuteStatus::MfaFailed,
                format!("{name} refused the second factor: {message}"),
            ))
        }
        Err(AccountFailure::Upstream(Upstream::Refused { message, .. })) => {
            release(true).await;
            Ok(ExecuteTransferResponse::without_result(
                ExecuteStatus::Failed,
                format!("{name} refused the transfer: {message}"),
            ))
        }
        Err(AccountFailure::Upstream(
            e @ (Upstream::InsufficientScope | Upstream::NotSupported(_) | Upstream::Config(_)),
        )) => {
            release(true).await;
            Err(upstream_error(resolved.integration, &e))
        }
        Err(AccountFailure::Local(e)) => {
            // Only reached after the exchange refused the credential: nothing was sent.
            release(true).await;
            Err(e)
        }
        Err(AccountFailure::Upstream(e)) => {
            // Timeout, 5xx, unreadable answer: the transfer may or may not have been made.
            release(false).await;
            Err(ApiError::new(
                ApiStatus::ServerFailure,
                ErrorType::IntegrationUnavailable,
                format!(
                    "{name}: the outcome of the transfer is unknown ({e}); execute again with the same previewId — it will not transfer twice"
                ),
            )
            .with_data(json!({"previewId": ticket.execution_id})))
        }
    }
}

/// Representative answers, for the schema test in `routes::openapi`.
#[cfg(test)]
pub(crate) fn samples() -> Vec<(&'static str, String)> {
    use crate::routes::wire::sample;
    let fee = || TransferFee { fee: 0.5, fee_currency: "USDC".to_owned(), fee_in_fiat: 0.5 };
    let preview = PreviewTransferResponse {
        preview_result: PreviewResult {
            address_tag: None,
            amount: 5.0,
            amount_in_fiat: 5.0,
            client_transaction_id: Some("tx-1".to_owned()),
            estimated_network_gas_fee: None,
            fiat_currency: FiatCurrency::Usd,
            from_address: None,
            institution_transfer_fee: fee(),
            is_inclusive_fee_enabled: false,
            network_id: Uuid::nil(),
            network_name: "Ethereum".to_owned(),
            preview_expires_in: 300,
            preview_id: Uuid::nil(),
            symbol: "USDC".to_owned(),
            to_address: "0xabc".to_owned(),
            total_estimated_amount: 5.5,
            total_estimated_amount_in_fiat: 5.5,
            unit_price: 1.0,
        },
        status: Succeeded::Succeeded,
    };
    let succeeded = ExecuteTransferResponse {
        error_message: None,
        execute_transfer_result: Some(ExecuteTransferResult {
            amount: 5.0,
            amount_in_fiat: 5.0,
            from_address: Some("0xdef".to_owned()),
            hash: None,
            institution_transfer_fee: fee(),
            network_gas_fee: None,
            network_id: Uuid::nil(),
            network_name: "Ethereum".to_owned(),
            status: MeshTransferStatus::Pending,
            status_details: "pending".to_owned(),
            symbol: "USDC".to_owned(),
            to_address: "0xabc".to_owned(),
            total_amount_in_fiat: 5.5,
            transfer_id: "t-1".to_owned(),
        }),
        mfa_type: None,
        status: ExecuteStatus::Succeeded,
    };
    let mfa = ExecuteTransferResponse {
        mfa_type: Some("totp".to_owned()),
        ..ExecuteTransferResponse::without_result(ExecuteStatus::MfaRequired, "a second factor".to_owned())
    };
    vec![
        sample("PreviewTransferResponse", &preview),
        sample("ExecuteTransferResponse", &succeeded),
        sample("ExecuteTransferResponse", &in_progress()),
        sample("ExecuteTransferResponse", &mfa),
        sample(
            "ExecuteTransferResponse",
            &ExecuteTransferResponse::without_result(ExecuteStatus::Failed, "no".to_owned()),
        ),
    ]
}
