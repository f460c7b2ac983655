//! Exchange account APIs: one interface ([`AccountApi`]) for what linkvault's token-backed endpoints need
//! (accounts, holdings with prices, fiat balances, deposit addresses, supported assets and networks, transfer
//! quote, send, status and history), and one adapter per provider speaking that provider's published API:
//! Coinbase App API v2 ([`coinbase`]), Uphold's REST API ([`uphold`]) and Binance Spot ([`binance`]). The
//! catalog names the adapter (`account_api`); the sandbox serves each provider's own wire format, so the code
//! under test is the code that runs against the real exchange.
//!
//! Everything here is in linkvault's canonical terms: symbols upper-case (`BTC`), networks by
//! [`Network::api_name`](crate::networks::Network) (`ethereum`, `solana`, …), amounts in the asset's units.
//! Adapters translate to and from their provider's names.

pub mod binance;
pub mod coinbase;
pub mod uphold;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::catalog::Integration;
use crate::http::{self, HttpLimits};

/// Which provider API an integration's account calls speak (the catalog's `account_api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountApiKind {
    /// Coinbase App API v2 (`/v2/accounts`, `/v2/accounts/:id/transactions`, …), OAuth bearer tokens.
    CoinbaseV2,
    /// Uphold REST API (`/v0/me/cards`, `/v0/me/cards/:id/transactions`, …), OAuth bearer tokens.
    UpholdV0,
    /// Binance Spot REST API (`/api/v3/…`, `/sapi/v1/…`), HMAC-SHA256-signed requests with an API key.
    BinanceSpot,
}

impl AccountApiKind {
    pub const ALL: [AccountApiKind; 3] =
        [AccountApiKind::CoinbaseV2, AccountApiKind::UpholdV0, AccountApiKind::BinanceSpot];

    /// The catalog file's name for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountApiKind::CoinbaseV2 => "coinbaseV2",
            AccountApiKind::UpholdV0 => "upholdV0",
            AccountApiKind::BinanceSpot => "binanceSpot",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// What the adapter authenticates a call with. Never shown by `Debug`.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// An OAuth access token (or a credentials session token), sent as `Authorization: Bearer`.
    Bearer(&'a SecretString),
    /// An API key and its secret (Binance): the key goes in a header, the secret signs each request.
    ApiKey { key: &'a SecretString, secret: &'a SecretString },
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Bearer(_) => f.write_str("Credential::Bearer([redacted])"),
            Credential::ApiKey { .. } => f.write_str("Credential::ApiKey([redacted])"),
        }
    }
}

impl<'a> Credential<'a> {
    /// How a stored connection's secrets authenticate its account calls. OAuth access tokens (Coinbase,
    /// Uphold) are Bearer tokens. A Binance Spot connection stores its API key as the access token and the API
    /// secret as the refresh token (the engine never refreshes it: it is not OAuth); a credentials session at a
    /// Binance-shaped integration (`binanceInternationalDirect`) is a session-bound key that also signs.
    pub fn of_stored(
        integration: &Integration,
        access_token: &'a SecretString,
        refresh_token: Option<&'a SecretString>,
    ) -> Credential<'a> {
        match integration.account_api {
            Some(AccountApiKind::BinanceSpot) => {
                Credential::ApiKey { key: access_token, secret: refresh_token.unwrap_or(access_token) }
            }
            _ => Credential::Bearer(access_token),
        }
    }
}

/// Why an exchange refused a transfer, in terms the end user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Refusal {
    InsufficientFunds,
    /// Below the exchange's minimum for that asset and network.
    BelowMinimum,
    UnsupportedAsset,
    UnsupportedNetwork,
    InvalidAddress,
    /// The quote (preview) is no longer valid: preview again.
    QuoteExpired,
    /// The exchange requires the destination to be on the account's address book / whitelist.
    AddressNotWhitelisted,
    /// The second factor sent was wrong.
    InvalidMfaCode,
    /// The idempotency key was used for a different request.
    IdempotencyConflict,
    /// Anything else the exchange states (its own code).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The exchange did not accept the credential as it is (expired access token): refresh it and retry once.
    #[error("the integration did not accept the token (expired)")]
    Unauthorized,
    /// The credential is revoked, deleted or invalid (revoked OAuth grant, deleted or wrong API key): the end
    /// user must sign in again.
    #[error("the integration no longer accepts this connection's credential ({0})")]
    Revoked(String),
    /// The credential lacks the permission (a read-only token or key asked to send).
    #[error("the connection's scope does not allow this call")]
    InsufficientScope,
    /// The exchange refused a transfer or address request for a reason the end user can act on.
    #[error("{message}")]
    Refused { reason: Refusal, message: String },
    /// The exchange does not have what was asked for (an unknown transfer id, no address for that asset).
    #[error("not found at the integration: {0}")]
    NotFound(String),
    /// Any other refusal with the provider's own error code.
    #[error("the integration refused the call ({error}, HTTP {status}){}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Rejected { status: u16, error: String, message: Option<String> },
    /// 5xx, 429/418, timeouts, connection failures: retry later (after `retry_after` when the exchange said).
    #[error("the integration is unavailable for now: {reason}")]
    Transient { retry_after: Option<Duration>, reason: String },
    #[error("the integration's answer is unusable: {0}")]
    Protocol(String),
    #[error("integration configuration: {0}")]
    Config(String),
    /// The integration has no account API (no `account_api` in the catalog), or this adapter lacks the call.
    #[error("{0}")]
    NotSupported(String),
}

/// One account (Coinbase account, Uphold card, the Binance spot wallet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    pub name: String,
    /// The account's currency, where an account holds one (Coinbase, Uphold).
    #[serde(default)]
    pub currency: Option<String>,
    /// The account's fiat value in USD, when the provider says or prices allow.
    #[serde(default)]
    pub value_usd: Option<f64>,
    /// Fiat cash in USD held in this account (fiat wallets), 0 for crypto accounts.
    #[serde(default)]
    pub cash_usd: Option<f64>,
}

/// A crypto position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holding {
    pub symbol: String,
    pub name: String,
    pub amount: f64,
    /// USD price per unit, when the provider publishes one.
    pub price_usd: Option<f64>,
    /// USD value of the position (the provider's native balance, or amount × price).
    pub value_usd: Option<f64>,
    /// What the position cost, in USD, when the provider tracks it.
    #[serde(default)]
    pub cost_basis_usd: Option<f64>,
}

/// A fiat balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    /// ISO 4217 code (`USD`, `EUR`, …).
    pub currency: String,
    pub cash: f64,
    pub buying_power: f64,
}

/// Where the account receives an asset on a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositAddress {
    pub symbol: String,
    /// Canonical network name (`ethereum`, …).
    pub network: String,
    pub address: String,
    /// Memo / destination tag, on networks that use one.
    #[serde(default)]
    pub tag: Option<String>,
}

/// One asset on one network, as the exchange supports it for withdrawals and deposits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetNetwork {
    pub symbol: String,
    pub name: String,
    /// Canonical network name (`ethereum`, …).
    pub network: String,
    /// Withdrawal fee in the asset, when known before the send.
    pub withdraw_fee: Option<f64>,
    /// Smallest withdrawal, in the asset.
    pub withdraw_min: Option<f64>,
    pub withdraw_enabled: bool,
    pub deposit_enabled: bool,
}

/// What to quote: a send of `amount` (in the symbol) or of `amount_usd` worth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuoteRequest {
    pub symbol: String,
    /// Canonical network name.
    pub network: String,
    pub address: String,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub amount: Option<f64>,
    #[serde(default)]
    pub amount_usd: Option<f64>,
}

/// The exchange's answer to a quote: the send is possible, at this fee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferQuote {
    pub symbol: String,
    pub network: String,
    pub address: String,
    /// The amount that would arrive, in the symbol.
    pub amount: f64,
    pub fee: f64,
    pub fee_currency: String,
    pub price_usd: f64,
    /// The balance of the symbol available to send.
    pub available: f64,
    #[serde(default)]
    pub from_address: Option<String>,
    /// The exchange's own id of this quote, when the exchange makes quotes (Uphold); execute commits it.
    #[serde(default)]
    pub quote_id: Option<String>,
    /// When the exchange's quote stops being valid, if it says.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A send, exactly once: `idem` is the same on every attempt of one execute.
#[derive(Clone)]
pub struct SendRequest {
    pub symbol: String,
    pub network: String,
    pub address: String,
    pub tag: Option<String>,
    pub amount: f64,
    /// Idempotency key (Coinbase `idem`, Binance `withdrawOrderId`): a repeat answers the first send.
    pub idem: String,
    /// The quote this send commits ([`TransferQuote::quote_id`]), for exchanges that make quotes.
    pub quote_id: Option<String>,
    /// A second factor the end user entered after [`SendOutcome::MfaRequired`].
    pub mfa_code: Option<SecretString>,
}

impl fmt::Debug for SendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendRequest")
            .field("symbol", &self.symbol)
            .field("network", &self.network)
            .field("address", &self.address)
            .field("tag", &self.tag)
            .field("amount", &self.amount)
            .field("idem", &self.idem)
            .field("quote_id", &self.quote_id)
            .field("mfa_code", &self.mfa_code.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Where a transfer stands at the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TransferStatus {
    /// Accepted, not final yet (no hash, or not enough confirmations).
    Pending,
    Succeeded,
    Failed,
}

impl TransferStatus {
    pub const fn is_final(self) -> bool {
        !matches!(self, TransferStatus::Pending)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    /// The exchange's id of the transfer.
    pub id: String,
    pub symbol: String,
    pub amount: f64,
    pub address: String,
    pub network: Option<String>,
    pub status: TransferStatus,
    /// The exchange's own status word, for `statusDetails`.
    pub status_details: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Withdrawal fee taken, in `fee_currency` (the symbol when absent).
    #[serde(default)]
    pub fee: Option<f64>,
    #[serde(default)]
    pub fee_currency: Option<String>,
    #[serde(default)]
    pub from_address: Option<String>,
    /// The on-chain transaction hash, once known.
    #[serde(default)]
    pub hash: Option<String>,
    /// Incoming (deposit) rather than outgoing, in history.
    #[serde(default)]
    pub incoming: bool,
}

/// The outcome of a send.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one value per send, moved once: boxing would buy nothing measurable
pub enum SendOutcome {
    Sent(Transfer),
    /// The exchange asks for a second factor (Coinbase `402 two_factor_required`): send again with `mfa_code`.
    /// `mfa_type` is Mesh's `MfaType` word (`totp`, `phone`, `email`, …).
    MfaRequired {
        mfa_type: String,
    },
}

/// Everything one adapter call needs.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub http: &'a Http,
    pub integration: &'a Integration,
    /// `integration.endpoints.api_base_url`, the provider's origin (`https://api.coinbase.com`).
    pub base: &'a Url,
    pub credential: Credential<'a>,
}

impl Call<'_> {
    /// `base` joined with an absolute provider path (`/v2/accounts`): the base's own path, if any, is kept as
    /// a prefix (the sandbox serves a provider under `/sandbox/coinbase`).
    pub fn url(&self, path: &str) -> Result<Url, ApiError> {
        let joined = format!("{}/{}", self.base.as_str().trim_end_matches('/'), path.trim_start_matches('/'));
        Url::parse(&joined).map_err(|e| ApiError::Config(format!("bad API URL {joined:?}: {e}")))
    }
}

/// The HTTP client and limits every adapter call runs within.
#[derive(Debug, Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub limits: HttpLimits,
}

/// One provider's account API.
#[async_trait]
pub trait AccountApi: Send + Sync + fmt::Debug {
    /// The accounts (wallets, cards) the credential can see, every page of them.
    async fn accounts(&self, call: Call<'_>) -> Result<Vec<Account>, ApiError>;
    /// Crypto positions with USD prices where the provider has them.
    async fn holdings(&self, call: Call<'_>) -> Result<Vec<Holding>, ApiError>;
    /// Fiat balances.
    async fn balances(&self, call: Call<'_>) -> Result<Vec<Balance>, ApiError>;
    /// The account's address for receiving `symbol` on `network`.
    async fn deposit_address(&self, call: Call<'_>, symbol: &str, network: &str) -> Result<DepositAddress, ApiError>;
    /// The assets and networks the exchange sends over, with fees and minimums.
    async fn assets(&self, call: Call<'_>) -> Result<Vec<AssetNetwork>, ApiError>;
    /// Checks a send (balance, network, address, fee) without making it; needs a write credential.
    async fn quote(&self, call: Call<'_>, request: &QuoteRequest) -> Result<TransferQuote, ApiError>;
    /// Sends, exactly once per `request.idem`: a repeat (a retry after a timeout or a crash) answers with the
    /// transfer the first attempt made.
    async fn send(&self, call: Call<'_>, request: &SendRequest) -> Result<SendOutcome, ApiError>;
    /// One transfer's current state.
    async fn transfer(&self, call: Call<'_>, id: &str) -> Result<Transfer, ApiError>;
    /// Transfers in and out, newest first, every page.
    async fn history(&self, call: Call<'_>) -> Result<Vec<Transfer>, ApiError>;
    /// Checks that the credential works (sign-in of an API key): the account it opens.
    async fn verify(&self, call: Call<'_>) -> Result<Account, ApiError> {
        self.accounts(call).await?.into_iter().next().ok_or_else(|| ApiError::Protocol("no account".to_owned()))
    }
}

/// Calls an integration's account API through the adapter its catalog entry names.
#[derive(Debug, Clone)]
pub struct ExchangeApi {
    http: Http,
    coinbase: Arc<coinbase::CoinbaseV2>,
    uphold: Arc<uphold::UpholdV0>,
    binance: Arc<binance::BinanceSpot>,
}

impl ExchangeApi {
    pub fn new(limits: HttpLimits) -> Result<Self, ApiError> {
        let client = http::build_client(&limits).map_err(ApiError::Config)?;
        Ok(Self {
            http: Http { client, limits },
            coinbase: Arc::new(coinbase::CoinbaseV2::default()),
            uphold: Arc::new(uphold::UpholdV0::default()),
            binance: Arc::new(binance::BinanceSpot::default()),
        })
    }

    /// The HTTP limits every call runs within (a claim on a call must outlive `worst_case()`).
    pub fn limits(&self) -> &HttpLimits {
        &self.http.limits
    }

    /// The adapter for `integration` and the call context for `credential`.
    pub fn adapter<'a>(
        &'a self,
        integration: &'a Integration,
        credential: Credential<'a>,
    ) -> Result<(&'a dyn AccountApi, Call<'a>), ApiError> {
        let kind = integration.account_api.ok_or_else(|| {
            ApiError::NotSupported(format!(
                "{} holds tokens only: its catalog entry names no account_api, so token-backed calls are not available",
                integration.name
            ))
        })?;
        let base = integration.endpoints.api_base_url.as_ref().ok_or_else(|| {
            ApiError::Config(format!("integration {} has no api_base_url", integration.integration_type))
        })?;
        let adapter: &dyn AccountApi = match kind {
            AccountApiKind::CoinbaseV2 => self.coinbase.as_ref(),
            AccountApiKind::UpholdV0 => self.uphold.as_ref(),
            AccountApiKind::BinanceSpot => self.binance.as_ref(),
        };
        Ok((adapter, Call { http: &self.http, integration, base, credential }))
    }
}
