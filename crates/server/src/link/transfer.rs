//! The Link page's transfer flow: `POST /link/api/transfer/{configure,preview,execute,status}` under the
//! session bearer. Each call runs the same core as `/api/v1/transfers/managed/*` (`routes::transfer_configure`,
//! `routes::transfers`), on a connection found the way return-user tokens are (this session's client, user and
//! scope, else an indistinguishable `tokenNotFound`), against the destinations the app put in the link token:
//! the page picks an asset, a network and (unless the app fixed it) an amount, never an address. The rules are
//! the server's, not the page's: a read-scoped session has no transfer flow, and a fixed `integrationId` holds.

use axum::extract::State;
use linkvault_domain::{Operation, Scope};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api_result::{ApiError, ApiOk, ApiStatus, ErrorType};
use crate::extract::ApiJson;
use crate::link::api::{check_fixed_integration, own_connection};
use crate::link::session::LinkSession;
use crate::routes::destinations::{Destination, TransferOptions, optional_network, optional_symbol};
use crate::routes::token_use::{Resolved, call_account};
use crate::routes::transfer_configure::{ConfigureInput, ConfigureTransferResponse, configure_transfer};
use crate::routes::transfer_info::mesh_status;
use crate::routes::transfers::{
    ExecuteAnswer, PreviewTransferResponse, ValidPreview, check_amount, check_text, execute_preview, make_preview,
    mfa_code_of, preview_id_of, refused,
};
use linkvault_storage::LinkSessionRecord;

/// Exchange transfer ids are short; anything longer is not one.
const MAX_TRANSFER_ID_CHARS: usize = 128;
const MAX_TOKEN_CHARS: usize = 512;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfigureBody {
    token_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreviewBody {
    token_id: String,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default)]
    network_id: Option<String>,
    #[serde(default)]
    amount: Option<f64>,
    #[serde(default)]
    amount_in_fiat: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecuteBody {
    token_id: String,
    preview_id: String,
    #[serde(default)]
    mfa_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusBody {
    token_id: String,
    transfer_id: String,
}

/// A read-scoped session cannot move funds, whatever the page asks.
fn require_write_session(session: &LinkSessionRecord) -> Result<(), ApiError> {
    match session.scope {
        Scope::Write => Ok(()),
        Scope::Read => Err(ApiError::new(
            ApiStatus::PermissionDenied,
            ErrorType::KeyScopeInsufficient,
            "this Link session was opened with a read-scoped key: it has no transfer flow; create the link token with a write key",
        )
        .with_display("This app can view your account but not move funds.")),
    }
}

/// The session's transfer options (write-scoped sessions only).
fn session_options(session: &LinkSessionRecord) -> Result<TransferOptions, ApiError> {
    require_write_session(session)?;
    TransferOptions::stored(session.transfer_options.as_deref()).ok_or_else(|| {
        ApiError::invalid_field(
            "transferOptions",
            "the link token has no transferOptions; create it with transferOptions.toAddresses to transfer in Link",
        )
        .with_display("This app did not set up a transfer.")
    })
}

/// The connection `token` names, if this session may transfer from it.
async fn session_connection<'s>(
    state: &'s AppState,
    session: &LinkSessionRecord,
    token: &str,
) -> Result<Resolved<'s>, ApiError> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(ApiError::token_not_found());
    }
    let (authorized, _) =
        own_connection(state, session, token, "", Operation::Write).await.ok_or_else(ApiError::token_not_found)?;
    // A return user's other accounts may transfer (restrictMultipleAccounts limits sign-ins), but a fixed
    // integrationId holds.
    check_fixed_integration(state, session, authorized.integration)?;
    Ok(state.vault.make_usable(&state.engine, authorized).await?)
}

/// What the end user sees for a refusal: the `displayMessage` the contract promises on every error here.
fn for_user(e: ApiError) -> ApiError {
    if e.display_message.is_some() {
        return e;
    }
    let reason = e.error_data.as_ref().and_then(|d| d["reason"].as_str()).unwrap_or_default().to_owned();
    let display = match (reason.as_str(), e.error_type) {
        ("insufficientBalance", _) => "Your balance is not enough for this amount and its fee. Try a smaller amount.",
        ("belowMinimum", _) => "This amount is below the minimum the exchange sends. Try a larger amount.",
        ("unsupportedNetwork", _) => "This asset cannot be sent over this network from this account.",
        ("unsupportedAddress", _) => "The exchange cannot send to this destination address.",
        ("unsupportedAsset", _) => "This asset cannot be sent from this account.",
        (_, ErrorType::PreviewExpired) => "This preview has expired. Review the transfer again.",
        (_, ErrorType::PreviewNotFound) => "This preview is no longer available. Review the transfer again.",
        (_, ErrorType::ReauthenticationRequired) => "Please sign in to your account again.",
        (_, ErrorType::TokenNotFound) => "This account is not available in this session.",
        (_, ErrorType::IntegrationUnavailable) => "The exchange is not answering right now. Try again shortly.",
        (_, ErrorType::InvalidField | ErrorType::MissingField) => "Check the transfer details and try again.",
        _ => "The transfer could not be completed. Try again.",
    };
    e.with_display(display)
}

/// The ApiResult of one transfer call, every error worded for the user.
fn answer<T: serde::Serialize>(result: Result<T, ApiError>) -> Result<ApiOk<T>, ApiError> {
    result.map(|content| ApiOk(Some(content))).map_err(for_user)
}

/// `POST /link/api/transfer/configure {tokenId}` — the account's holdings against the session's destinations.
pub(crate) async fn configure(
    State(state): State<AppState>,
    LinkSession(session): LinkSession,
    ApiJson(req): ApiJson<ConfigureBody>,
) -> Result<ApiOk<ConfigureTransferResponse>, ApiError> {
    let run = async {
        let options = session_options(&session)?;
        let mut resolved = session_connection(&state, &session, &req.token_id).await?;
        let input = ConfigureInput {
            destinations: options.to_addresses,
            symbol: None,
            network: None,
            amount: None,
            amount_in_fiat: options.amount_in_fiat,
            inclusive_fee: options.is_inclusive_fee_enabled,
        };
        configure_transfer(&state, &mut resolved, &input).await
    };
    answer(run.await)
}

/// The session destination the page picked (`symbol` + `networkId`; either may be left out when only one
/// destination fits).
fn pick<'o>(options: &'o TransferOptions, req: &PreviewBody) -> Result<&'o Destination, ApiError> {
    let network = optional_network("networkId", req.network_id.as_deref())?;
    let symbol = optional_symbol("symbol", req.symbol.as_deref(), None)?;
    let same_symbol: Vec<&Destination> =
        options.to_addresses.iter().filter(|d| symbol.as_ref().is_none_or(|s| *s == d.symbol)).collect();
    if same_symbol.is_empty() {
        return Err(refused("symbol", Some("unsupportedAsset"), "is not one of the assets this app accepts"));
    }
    let fitting: Vec<&Destination> =
        same_symbol.into_iter().filter(|d| network.is_none_or(|n| n.id == d.network_id)).collect();
    match fitting.as_slice() {
        [] => {
            Err(refused("networkId", Some("unsupportedNetwork"), "this app accepts the asset on other networks only"))
        }
        [one] => Ok(one),
        _ if symbol.is_none() => Err(ApiError::missing_field("symbol")),
        _ => Err(ApiError::missing_field("networkId")),
    }
}

/// `POST /link/api/transfer/preview {tokenId, symbol, networkId, amount? | amountInFiat?}`.
pub(crate) async fn preview(
    State(state): State<AppState>,
    LinkSession(session): LinkSession,
    ApiJson(req): ApiJson<PreviewBody>,
) -> Result<ApiOk<PreviewTransferResponse>, ApiError> {
    let run = async {
        let options = session_options(&session)?;
        let destination = pick(&options, &req)?;
        let (Some(network), Some(address)) = (destination.network(), destination.address.clone()) else {
            return Err(ApiError::internal(&"a stored Link destination lacks its network or address"));
        };
        // An amount the app fixed (per destination, or in fiat for the whole transfer) is not the page's to change.
        let amount = match (destination.amount, options.amount_in_fiat, req.amount, req.amount_in_fiat) {
            (Some(fixed), _, _, _) => Ok(fixed),
            (None, Some(fiat), _, _) => Err(fiat),
            (None, None, Some(_), Some(_)) => {
                return Err(ApiError::invalid_field("amountInFiat", "send either amount or amountInFiat, not both"));
            }
            (None, None, Some(a), None) => Ok(check_amount("amount", a)?),
            (None, None, None, Some(f)) => Err(check_amount("amountInFiat", f)?),
            (None, None, None, None) => return Err(ApiError::missing_field("amount")),
        };
        let mut resolved = session_connection(&state, &session, &req.token_id).await?;
        let valid = ValidPreview {
            network,
            symbol: destination.symbol.clone(),
            to_address: address,
            address_tag: destination.address_tag.clone(),
            amount,
            transaction_id: options.transaction_id.clone(),
            inclusive_fee: options.is_inclusive_fee_enabled,
        };
        make_preview(&state, session.client_id, &mut resolved, valid).await
    };
    answer(run.await)
}

/// `POST /link/api/transfer/execute {tokenId, previewId, mfaCode?}` — exactly one send per preview.
pub(crate) async fn execute(
    State(state): State<AppState>,
    LinkSession(session): LinkSession,
    ApiJson(req): ApiJson<ExecuteBody>,
) -> Result<ApiOk<ExecuteAnswer>, ApiError> {
    let run = async {
        session_options(&session)?;
        let preview_id = preview_id_of(&req.preview_id)?;
        let mfa_code = mfa_code_of(req.mfa_code.as_deref())?;
        let mut resolved = session_connection(&state, &session, &req.token_id).await?;
        execute_preview(&state, session.client_id, &mut resolved, preview_id, None, mfa_code).await
    };
    answer(run.await)
}

/// `POST /link/api/transfer/status {tokenId, transferId}` — where the transfer stands at the exchange, for the
/// page's pending screen.
pub(crate) async fn status(
    State(state): State<AppState>,
    LinkSession(session): LinkSession,
    ApiJson(req): ApiJson<StatusBody>,
) -> Result<ApiOk<Value>, ApiError> {
    let run = async {
        require_write_session(&session)?;
        let transfer_id = req.transfer_id.trim();
        if transfer_id.is_empty() {
            return Err(ApiError::missing_field("transferId"));
        }
        check_text("transferId", transfer_id, MAX_TRANSFER_ID_CHARS)?;
        let mut resolved = session_connection(&state, &session, &req.token_id).await?;
        let transfer = call_account(&state, &mut resolved, transfer_id, |api, call, id| api.transfer(call, id))
            .await
            .map_err(|e| e.into_api_error(&resolved))?;
        Ok(json!({
            "transferId": transfer.id,
            "status": mesh_status(transfer.status),
            "hash": transfer.hash,
        }))
    };
    answer(run.await)
}
