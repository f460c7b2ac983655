//! A client's webhook endpoint: the URL, and the signing secret sealed under the keyring's sealing key (the
//! secret must be usable to sign, so unlike API keys it cannot be stored as a digest).

use std::sync::Arc;

use linkvault_domain::{ClientId, TokenMode, ValidationError};
use linkvault_storage::{WebhookEndpointRecord, WebhookFormat};
use secrecy::SecretString;

use crate::{Vault, VaultError, WebhookPolicy};

/// Where and how a client's webhooks go.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: SecretString,
    pub format: WebhookFormat,
    /// The client's token mode: a client-mode client's bodies never carry a tokenId (`events::payload_for`).
    pub token_mode: TokenMode,
}

impl Vault {
    /// Sets where webhook endpoints may point (the default refuses non-public addresses and plain http).
    pub fn with_webhook_policy(mut self, policy: WebhookPolicy) -> Self {
        self.webhook_policy = Arc::new(policy);
        self
    }

    pub fn webhook_policy(&self) -> &Arc<WebhookPolicy> {
        &self.webhook_policy
    }

    /// Sets the client's webhook endpoint and signing secret (replacing any previous one), Standard Webhooks.
    pub async fn set_webhook_endpoint(&self, client_id: ClientId, url: &str, secret: &str) -> Result<(), VaultError> {
        self.set_webhook_endpoint_with_format(client_id, url, secret, WebhookFormat::Standard).await
    }

    /// Sets the client's webhook endpoint, signing secret and format (replacing any previous one).
    pub async fn set_webhook_endpoint_with_format(
        &self,
        client_id: ClientId,
        url: &str,
        secret: &str,
        format: WebhookFormat,
    ) -> Result<(), VaultError> {
        // The literal host is checked here; a name is checked again, resolved, by the deliverer on every attempt.
        let url = url.trim();
        self.webhook_policy.check_url(url).map_err(|refusal| ValidationError::new("url", refusal.to_string()))?;
        if self.store.get_client(client_id).await?.is_none() {
            return Err(VaultError::UnknownClient(client_id.to_string()));
        }
        let sealed = self.keys.seal_webhook_secret(client_id.as_uuid().as_bytes(), secret.as_bytes())?;
        let now = self.clock().now();
        let record = WebhookEndpointRecord {
            client_id,
            url: url.to_owned(),
            secret_sealed: sealed,
            format,
            created_at: now,
            updated_at: now,
        };
        self.store.set_webhook_endpoint(&record).await?;
        Ok(())
    }

    /// The client's endpoint URL and opened secret, if one is set.
    pub async fn webhook_endpoint(&self, client_id: ClientId) -> Result<Option<(String, SecretString)>, VaultError> {
        Ok(self.webhook_target(client_id).await?.map(|t| (t.url, t.secret)))
    }

    /// The client's endpoint URL, opened secret and format, if one is set.
    pub async fn webhook_target(&self, client_id: ClientId) -> Result<Option<WebhookTarget>, VaultError> {
        let Some(record) = self.store.get_webhook_endpoint(client_id).await? else { return Ok(None) };
        let plain = self.keys.open_webhook_secret(client_id.as_uuid().as_bytes(), &record.secret_sealed)?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| VaultError::Crypto(linkvault_crypto::CryptoError::Malformed))?;
        let token_mode = self.store.get_client(client_id).await?.map_or(TokenMode::Managed, |c| c.token_mode);
        Ok(Some(WebhookTarget { url: record.url, secret: SecretString::from(text), format: record.format, token_mode }))
    }
}

/// The outbox's delivery bookkeeping, for the webhook deliverer: which events are due, how an attempt ended,
/// and the retention purge. The vault writes the events with the changes they announce; the deliverer only
/// moves them through delivery, so it needs no store of its own.
impl Vault {
    /// Claims up to `limit` events due at `now` for delivery until `lease_until` (oldest first per connection).
    pub async fn claim_webhook_deliveries(
        &self,
        now: time::OffsetDateTime,
        lease_until: time::OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<linkvault_storage::ClaimedDelivery>, VaultError> {
        Ok(self.store.claim_outbox_deliveries(now, lease_until, limit).await?)
    }

    /// Records how one delivery attempt of event `id` ended.
    pub async fn finish_webhook_attempt(
        &self,
        id: uuid::Uuid,
        outcome: &linkvault_storage::DeliveryOutcome,
    ) -> Result<(), VaultError> {
        Ok(self.store.finish_outbox_attempt(id, outcome).await?)
    }

    /// Deletes events delivered or given up before `finished_before`; returns how many.
    pub async fn purge_finished_webhooks(&self, finished_before: time::OffsetDateTime) -> Result<u64, VaultError> {
        Ok(self.store.purge_finished_outbox(finished_before).await?)
    }
}
