//! The former invented account protocol (`{api_base_url}/holdings`, …) that only the old sandbox spoke. Kept
//! only while the server moves to the provider adapters; to be deleted.

use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ApiError;
use crate::catalog::Integration;
use crate::http::{self, FetchError, HttpLimits, RawResponse, sanitize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holding {
    pub symbol: String,
    pub name: String,
    pub amount: f64,
    pub price_usd: f64,
    pub value_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub currency: String,
    pub cash: f64,
    pub buying_power: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferRequest {
    pub symbol: String,
    pub amount: f64,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Idempotency key (Coinbase's send API calls it `idem`): the exchange answers a repeated key with the
    /// transfer it already made instead of sending again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    pub id: String,
    pub symbol: String,
    pub amount: f64,
    pub address: String,
    pub network: Option<String>,
    pub status: String,
    pub created_at: String,
    /// Withdrawal fee taken, in the symbol.
    #[serde(default)]
    pub fee: Option<f64>,
    #[serde(default)]
    pub from_address: Option<String>,
    /// The on-chain transaction hash, once known.
    #[serde(default)]
    pub hash: Option<String>,
}

/// What to ask a quote for: a send of `amount` (in the symbol) or of `amount_usd` worth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuoteRequest {
    pub symbol: String,
    pub network: String,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_usd: Option<f64>,
}

/// The exchange's answer to a quote: the send is possible, at this fee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferQuote {
    pub symbol: String,
    pub network: String,
    pub address: String,
    /// The amount that would be sent, in the symbol.
    pub amount: f64,
    pub fee: f64,
    pub fee_currency: String,
    pub price_usd: f64,
    /// The balance of the symbol available to send.
    pub available: f64,
    #[serde(default)]
    pub from_address: Option<String>,
}

#[derive(Deserialize)]
struct Accounts {
    accounts: Vec<Account>,
}
#[derive(Deserialize)]
struct Holdings {
    holdings: Vec<Holding>,
}
#[derive(Deserialize)]
struct Balances {
    balances: Vec<Balance>,
}
#[derive(Deserialize)]
struct Transfers {
    transfers: Vec<Transfer>,
}
#[derive(Deserialize)]
struct TransferCreated {
    transfer: Transfer,
}
#[derive(Deserialize)]
struct Quoted {
    quote: TransferQuote,
}

/// Calls an integration's account API.
#[derive(Debug, Clone)]
pub struct LegacyApi {
    http: reqwest::Client,
    limits: HttpLimits,
}

impl LegacyApi {
    pub fn new(limits: HttpLimits) -> Result<Self, ApiError> {
        let http = http::build_client(&limits).map_err(ApiError::Config)?;
        Ok(Self { http, limits })
    }

    /// The HTTP limits every call runs within (a claim on a call must outlive `worst_case()`).
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    pub async fn accounts(&self, integration: &Integration, token: &SecretString) -> Result<Vec<Account>, ApiError> {
        Ok(self.get::<Accounts>(integration, token, "accounts").await?.accounts)
    }

    pub async fn holdings(&self, integration: &Integration, token: &SecretString) -> Result<Vec<Holding>, ApiError> {
        Ok(self.get::<Holdings>(integration, token, "holdings").await?.holdings)
    }

    pub async fn balances(&self, integration: &Integration, token: &SecretString) -> Result<Vec<Balance>, ApiError> {
        Ok(self.get::<Balances>(integration, token, "balances").await?.balances)
    }

    pub async fn transfers(&self, integration: &Integration, token: &SecretString) -> Result<Vec<Transfer>, ApiError> {
        Ok(self.get::<Transfers>(integration, token, "transfers").await?.transfers)
    }

    /// Checks a send (balance, network, fee) without making it; needs a write-scoped token.
    pub async fn quote_transfer(
        &self,
        integration: &Integration,
        token: &SecretString,
        quote: &QuoteRequest,
    ) -> Result<TransferQuote, ApiError> {
        let url = self.url(integration, "transfers/quote")?;
        let quoted: Quoted = self.call(self.http.post(url).json(quote), token).await?;
        Ok(quoted.quote)
    }

    /// Sends a transfer; needs a write-scoped token. With `transfer.idem` set, a repeated call (a retry after
    /// a timeout, or after a crash) answers with the transfer the first one made.
    pub async fn create_transfer(
        &self,
        integration: &Integration,
        token: &SecretString,
        transfer: &TransferRequest,
    ) -> Result<Transfer, ApiError> {
        let url = self.url(integration, "transfers")?;
        let request = self.http.post(url).json(transfer);
        let created: TransferCreated = self.call(request, token).await?;
        Ok(created.transfer)
    }

    fn url(&self, integration: &Integration, path: &str) -> Result<url::Url, ApiError> {
        let base = integration.endpoints.api_base_url.as_ref().ok_or_else(|| {
            ApiError::Config(format!("integration {} has no api_base_url", integration.integration_type))
        })?;
        let joined = format!("{}/{path}", base.as_str().trim_end_matches('/'));
        url::Url::parse(&joined).map_err(|e| ApiError::Config(format!("bad API URL: {e}")))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        integration: &Integration,
        token: &SecretString,
        path: &str,
    ) -> Result<T, ApiError> {
        let url = self.url(integration, path)?;
        self.call(self.http.get(url), token).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        token: &SecretString,
    ) -> Result<T, ApiError> {
        let request = request.header(ACCEPT, "application/json").bearer_auth(token.expose_secret());
        let response = http::send(&self.limits, request).await.map_err(|e| match e {
            FetchError::TooLarge { .. } => ApiError::Protocol(e.describe()),
            FetchError::TimedOut | FetchError::Connection(_) => {
                ApiError::Transient { retry_after: None, reason: e.describe() }
            }
        })?;
        if !response.status.is_success() {
            return Err(classify(&response));
        }
        serde_json::from_slice(&response.body).map_err(|e| {
            ApiError::Protocol(format!(
                "HTTP {} with a body that is not the expected JSON (content-type {}): {}",
                response.status.as_u16(),
                response.content_type(),
                sanitize(&e.to_string())
            ))
        })
    }
}

fn classify(response: &RawResponse) -> ApiError {
    let status = response.status;
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return ApiError::Transient {
            retry_after: response.retry_after(),
            reason: format!("HTTP {}", status.as_u16()),
        };
    }
    if status == StatusCode::UNAUTHORIZED {
        return ApiError::Unauthorized;
    }
    if status == StatusCode::FORBIDDEN {
        return ApiError::InsufficientScope;
    }
    let body = response.json_object().ok();
    let field = |key: &str| body.as_ref().and_then(|b| b.get(key)).and_then(Value::as_str).map(sanitize);
    ApiError::Rejected {
        status: status.as_u16(),
        error: field("error").unwrap_or_else(|| format!("HTTP {}", status.as_u16())),
        message: field("message"),
    }
}
