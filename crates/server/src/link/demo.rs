//! The sandbox demo at `/demo`: a page that plays the app. Its backend route creates link tokens for the
//! sandbox demo client (created by `serve --sandbox`, recorded by the vault) directly through
//! [`issue_link_token`], without a client secret. Served only in sandbox mode. Besides connecting an account
//! (read scope), it plays a deposit: "Deposit 5 USDC from Coinbase" asks for a write-scoped link token fixed to
//! Coinbase with `transferOptions` sending 5 USDC on Ethereum to the demo app's (made-up) address.

use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use linkvault_domain::{Scope, UserId};
use linkvault_vault::LinkTokenSpec;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api_result::{ApiError, ApiOk, ApiStatus, ErrorType};
use crate::extract::ApiJson;
use crate::link::assets::DEMO_HTML;
use crate::link::linktoken::issue_link_token;
use crate::routes::destinations::transfer_options;

fn not_sandbox() -> ApiError {
    ApiError::new(ApiStatus::NotFound, ErrorType::EndpointNotFound, "the demo is served only with --sandbox")
}

/// `GET /demo`.
pub(crate) async fn page(State(state): State<AppState>) -> Response {
    if !state.link.sandbox {
        return not_sandbox().into_response();
    }
    let mut response = DEMO_HTML.into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// Where the demo app takes its deposits: a fixed, well-formed Ethereum address nobody holds keys for (the
/// sandbox moves no real funds).
pub const DEMO_DEPOSIT_ADDRESS: &str = "0x1111111111111111111111111111111111111111";
/// The demo deposit: 5 USDC on Ethereum (Mesh's network id) from Coinbase.
const DEMO_DEPOSIT_SYMBOL: &str = "USDC";
const DEMO_DEPOSIT_AMOUNT: f64 = 5.0;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DemoRequest {
    user_id: String,
    integration_id: Option<uuid::Uuid>,
    #[serde(default)]
    restrict_multiple_accounts: bool,
    /// The deposit button: write scope, Coinbase, and the demo's transferOptions.
    #[serde(default)]
    deposit: bool,
}

/// The demo deposit's options, validated and stored as `POST /api/v1/linktoken` stores an app's.
fn demo_transfer_options(transaction_id: &str) -> Result<String, ApiError> {
    let parsed = transfer_options("transferOptions", &deposit_options(transaction_id))?;
    serde_json::to_string(&parsed).map_err(|e| ApiError::internal(&e))
}

/// Mesh's `transferOptions` for the demo deposit.
fn deposit_options(transaction_id: &str) -> Value {
    let ethereum = linkvault_integrations::networks::by_api_name("ethereum");
    json!({
        "toAddresses": [{
            "networkId": ethereum.map(|n| n.id.to_string()),
            "symbol": DEMO_DEPOSIT_SYMBOL,
            "address": DEMO_DEPOSIT_ADDRESS,
            "amount": DEMO_DEPOSIT_AMOUNT,
        }],
        "transactionId": transaction_id,
        "transferType": "deposit",
        "isInclusiveFeeEnabled": false,
    })
}

/// `POST /demo/api/linktoken {userId, deposit?}` — what an app's backend does with `POST /api/v1/linktoken`.
pub(crate) async fn link_token(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DemoRequest>,
) -> Result<ApiOk<Value>, ApiError> {
    if !state.link.sandbox {
        return Err(not_sandbox());
    }
    let client_id = state
        .vault
        .sandbox_demo_client()
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::internal(&"the sandbox demo client is missing; restart with --sandbox"))?;
    let user_id = UserId::parse(&req.user_id).map_err(|e| ApiError::invalid_field(e.field, e.reason))?;
    let spec = if req.deposit {
        let coinbase = state.catalog.get("coinbase").ok_or_else(|| {
            ApiError::new(
                ApiStatus::NotFound,
                ErrorType::EndpointNotFound,
                "this installation has no coinbase integration",
            )
        })?;
        let transaction_id = format!("demo-{}", uuid::Uuid::new_v4());
        LinkTokenSpec {
            client_id,
            user_id,
            scope: Scope::Write,
            integration_id: Some(coinbase.id),
            restrict_multiple_accounts: true,
            transfer_options: Some(demo_transfer_options(&transaction_id)?),
        }
    } else {
        LinkTokenSpec {
            client_id,
            user_id,
            scope: Scope::Read,
            integration_id: req.integration_id.filter(|id| state.catalog.by_id(*id).is_some()),
            restrict_multiple_accounts: req.restrict_multiple_accounts,
            transfer_options: None,
        }
    };
    let link_token = issue_link_token(&state, spec).await?;
    Ok(ApiOk(Some(json!({ "linkToken": link_token }))))
}
