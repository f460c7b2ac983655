//! Webhook endpoints per client, and the delivery side of the outbox: claiming due events under a lease and
//! recording each attempt (migration 0004). The events themselves are written by the connection writes.

use async_trait::async_trait;
use linkvault_domain::ClientId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{OutboxEvent, Result};

/// How a client's webhooks are shaped and signed (migration 0007).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookFormat {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`); every event.
    #[default]
    Standard,
    /// Mesh's transfer webhooks (PascalCase body, `X-Mesh-Signature-256`); transfer events only.
    Mesh,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Standard => "standard",
            WebhookFormat::Mesh => "mesh",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "standard" => Some(WebhookFormat::Standard),
            "mesh" => Some(WebhookFormat::Mesh),
            _ => None,
        }
    }
}

/// A client's webhook endpoint. The secret is sealed; only the vault opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpointRecord {
    pub client_id: ClientId,
    pub url: String,
    pub secret_sealed: Vec<u8>,
    pub format: WebhookFormat,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// An outbox event claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub event: OutboxEvent,
    /// Attempts already made before this one.
    pub attempts: u32,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered {
        at: OffsetDateTime,
    },
    /// Failed; try again at `next_attempt_at`.
    Retry {
        next_attempt_at: OffsetDateTime,
        error: String,
    },
    /// Failed for the last time (or there is nowhere to deliver): kept for the operator, never retried.
    GiveUp {
        at: OffsetDateTime,
        error: String,
    },
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Sets (or replaces) the client's endpoint.
    async fn set_webhook_endpoint(&self, record: &WebhookEndpointRecord) -> Result<()>;
    async fn get_webhook_endpoint(&self, client_id: ClientId) -> Result<Option<WebhookEndpointRecord>>;
    /// Claims up to `limit` undelivered events that are due, oldest first, leasing them until `lease_until`
    /// so that instances never deliver the same attempt twice at once.
    async fn claim_outbox_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>>;
    /// Records an attempt (counting it) and releases the lease.
    async fn finish_outbox_attempt(&self, id: Uuid, outcome: &DeliveryOutcome) -> Result<()>;
    /// Deletes the events delivered or given up before `finished_before` (retention); pending ones stay.
    /// Returns how many were deleted.
    async fn purge_finished_outbox(&self, finished_before: OffsetDateTime) -> Result<u64>;
}

/// The retention purge, the same text on both backends (`$1`: the cutoff, Unix milliseconds). Served by the
/// `outbox_pending` index's complement: finished rows are the ones that index leaves out.
pub(crate) const PURGE_FINISHED_OUTBOX: &str = "DELETE FROM outbox
     WHERE (delivered_at IS NOT NULL AND delivered_at < $1) OR (given_up_at IS NOT NULL AND given_up_at < $1)";
