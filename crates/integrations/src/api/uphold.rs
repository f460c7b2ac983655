//! Uphold REST API adapter. (Placeholder while the adapter is written: every call answers NotSupported.)

use async_trait::async_trait;

use super::{
    Account, AccountApi, ApiError, AssetNetwork, Balance, Call, DepositAddress, Holding, QuoteRequest, SendOutcome,
    SendRequest, Transfer, TransferQuote,
};

#[derive(Debug, Default)]
pub struct UpholdV0 {}

fn pending() -> ApiError {
    ApiError::NotSupported("Uphold REST API: adapter not written yet".to_owned())
}

#[async_trait]
impl AccountApi for UpholdV0 {
    async fn accounts(&self, _call: Call<'_>) -> Result<Vec<Account>, ApiError> {
        Err(pending())
    }
    async fn holdings(&self, _call: Call<'_>) -> Result<Vec<Holding>, ApiError> {
        Err(pending())
    }
    async fn balances(&self, _call: Call<'_>) -> Result<Vec<Balance>, ApiError> {
        Err(pending())
    }
    async fn deposit_address(
        &self,
        _call: Call<'_>,
        _symbol: &str,
        _network: &str,
    ) -> Result<DepositAddress, ApiError> {
        Err(pending())
    }
    async fn assets(&self, _call: Call<'_>) -> Result<Vec<AssetNetwork>, ApiError> {
        Err(pending())
    }
    async fn quote(&self, _call: Call<'_>, _request: &QuoteRequest) -> Result<TransferQuote, ApiError> {
        Err(pending())
    }
    async fn send(&self, _call: Call<'_>, _request: &SendRequest) -> Result<SendOutcome, ApiError> {
        Err(pending())
    }
    async fn transfer(&self, _call: Call<'_>, _id: &str) -> Result<Transfer, ApiError> {
        Err(pending())
    }
    async fn history(&self, _call: Call<'_>) -> Result<Vec<Transfer>, ApiError> {
        Err(pending())
    }
}
