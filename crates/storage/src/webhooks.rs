//! Webhook endpoints per client, and the delivery side of the outbox: claiming due events under a lease and
//! recording each attempt (migration 0004). The events themselves are written by the connection writes.

use async_trait::async_trait;
use linkvault_domain::ClientId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::sql::{Columns, Driver, Mode, record, sql, text_enum, vals};
use crate::{OutboxEvent, Result};

text_enum! {
    /// How a client's webhooks are shaped and signed (migration 0007).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum WebhookFormat {
        /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`); every event.
        #[default]
        Standard = "standard",
        /// Mesh's transfer webhooks (PascalCase body, `X-Mesh-Signature-256`); transfer events only.
        Mesh = "mesh",
    }
}

record! {
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
    /// Up to `limit` endpoints in client-id order, after `after` (a cursor, for walking them all in batches).
    async fn webhook_endpoints_after(&self, after: Option<ClientId>, limit: u32) -> Result<Vec<WebhookEndpointRecord>>;
    /// Replaces the client's sealed secret if it is still `old` (`keys rotate-master` re-sealing it under a new
    /// keyring); the secret itself does not change.
    async fn reseal_webhook_secret(&self, client_id: ClientId, old: &[u8], new: &[u8]) -> Result<bool>;
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

#[async_trait]
impl<D: Driver> WebhookStore for D {
    async fn set_webhook_endpoint(&self, r: &WebhookEndpointRecord) -> Result<()> {
        let stmt = sql!(WebhookEndpointRecord: "INSERT INTO webhook_endpoints ({*}) VALUES ({?*})
             ON CONFLICT (client_id) DO UPDATE SET url = excluded.url, secret_sealed = excluded.secret_sealed,
                 updated_at = excluded.updated_at, format = excluded.format");
        self.exec(stmt, r.values()).await.map(drop)
    }

    async fn get_webhook_endpoint(&self, client_id: ClientId) -> Result<Option<WebhookEndpointRecord>> {
        let stmt = sql!(WebhookEndpointRecord: "SELECT {*} FROM webhook_endpoints WHERE client_id = ?1");
        self.opt(Mode::Read, stmt, vals![client_id]).await
    }

    async fn webhook_endpoints_after(&self, after: Option<ClientId>, limit: u32) -> Result<Vec<WebhookEndpointRecord>> {
        match after {
            Some(after) => {
                let stmt = sql!(WebhookEndpointRecord:
                    "SELECT {*} FROM webhook_endpoints WHERE client_id > ?1 ORDER BY client_id LIMIT ?2");
                self.all(Mode::Read, stmt, vals![after, limit]).await
            }
            None => {
                let stmt = sql!(WebhookEndpointRecord: "SELECT {*} FROM webhook_endpoints ORDER BY client_id LIMIT ?1");
                self.all(Mode::Read, stmt, vals![limit]).await
            }
        }
    }

    async fn reseal_webhook_secret(&self, client_id: ClientId, old: &[u8], new: &[u8]) -> Result<bool> {
        let stmt = sql!("UPDATE webhook_endpoints SET secret_sealed = ?3 WHERE client_id = ?1 AND secret_sealed = ?2");
        self.changed(stmt, vals![client_id, old, new]).await
    }

    async fn claim_outbox_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>> {
        // SKIP LOCKED: instances sharing a PostgreSQL database each take different events.
        let stmt = sql!(ClaimedDelivery:
            "UPDATE outbox SET lease_until = ?2 WHERE id IN (
                 SELECT id FROM outbox
                 WHERE delivered_at IS NULL AND given_up_at IS NULL
                   AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)
                   AND (lease_until IS NULL OR lease_until < ?1)
                 ORDER BY created_at, {sqlite:rowid}{pg:seq} LIMIT ?3{pg: FOR UPDATE SKIP LOCKED})
             RETURNING {*}, {sqlite:rowid}{pg:seq}");
        let mut claimed: Vec<(ClaimedDelivery, i64)> =
            self.all(Mode::Write, stmt, vals![now, lease_until, limit]).await?;
        // RETURNING does not keep the subquery's order.
        claimed.sort_by_key(|(d, seq)| (d.event.created_at, *seq));
        Ok(claimed.into_iter().map(|(d, _)| d).collect())
    }

    async fn finish_outbox_attempt(&self, id: Uuid, outcome: &DeliveryOutcome) -> Result<()> {
        let params = match outcome {
            DeliveryOutcome::Delivered { at } => vals![Some(*at), None::<i64>, None::<i64>, None::<String>, id],
            DeliveryOutcome::Retry { next_attempt_at, error } => {
                vals![None::<i64>, Some(*next_attempt_at), None::<i64>, error, id]
            }
            DeliveryOutcome::GiveUp { at, error } => vals![None::<i64>, None::<i64>, Some(*at), error, id],
        };
        let stmt = sql!(
            "UPDATE outbox SET attempts = attempts + 1, delivered_at = ?1, next_attempt_at = ?2,
                             given_up_at = ?3, last_error = ?4, lease_until = NULL WHERE id = ?5"
        );
        self.exec(stmt, params).await.map(drop)
    }

    async fn purge_finished_outbox(&self, finished_before: OffsetDateTime) -> Result<u64> {
        // Served by the `outbox_pending` index's complement: finished rows are the ones that index leaves out.
        let stmt = sql!(
            "DELETE FROM outbox WHERE (delivered_at IS NOT NULL AND delivered_at < ?1)
                             OR (given_up_at IS NOT NULL AND given_up_at < ?1)"
        );
        self.exec(stmt, vals![finished_before]).await
    }
}
