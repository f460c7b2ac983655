//! [`WebhookStore`] on PostgreSQL (claims with `FOR UPDATE SKIP LOCKED`, so instances share the work).

use async_trait::async_trait;
use linkvault_domain::ClientId;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{PostgresStore, outbox_from_row};
use crate::time_conv::{from_millis, to_millis};
use crate::webhooks::{
    ClaimedDelivery, DeliveryOutcome, PURGE_FINISHED_OUTBOX, WebhookEndpointRecord, WebhookFormat, WebhookStore,
};
use crate::{Result, StorageError};

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn set_webhook_endpoint(&self, r: &WebhookEndpointRecord) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO webhook_endpoints (client_id, url, secret_sealed, created_at, updated_at, format)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (client_id) DO UPDATE SET url = excluded.url, secret_sealed = excluded.secret_sealed,
                updated_at = excluded.updated_at, format = excluded.format",
            &[
                r.client_id.as_uuid(),
                &r.url,
                &r.secret_sealed,
                &to_millis(r.created_at),
                &to_millis(r.updated_at),
                &r.format.as_str(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_webhook_endpoint(&self, client_id: ClientId) -> Result<Option<WebhookEndpointRecord>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT client_id, url, secret_sealed, created_at, updated_at, format FROM webhook_endpoints
                 WHERE client_id = $1",
                &[client_id.as_uuid()],
            )
            .await?;
        row.map(|r| {
            Ok(WebhookEndpointRecord {
                client_id: ClientId::from_uuid(r.try_get("client_id")?),
                url: r.try_get("url")?,
                secret_sealed: r.try_get("secret_sealed")?,
                created_at: from_millis(r.try_get("created_at")?)?,
                updated_at: from_millis(r.try_get("updated_at")?)?,
                format: {
                    let text: String = r.try_get("format")?;
                    WebhookFormat::parse(&text)
                        .ok_or_else(|| StorageError::Corrupt(format!("unknown webhook format {text:?}")))?
                },
            })
        })
        .transpose()
    }

    async fn claim_outbox_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "UPDATE outbox SET lease_until = $2 WHERE id IN (
                    SELECT id FROM outbox
                    WHERE delivered_at IS NULL AND given_up_at IS NULL
                      AND (next_attempt_at IS NULL OR next_attempt_at <= $1)
                      AND (lease_until IS NULL OR lease_until < $1)
                    ORDER BY created_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, client_id, event_type, payload, created_at, attempts, seq",
                &[&to_millis(now), &to_millis(lease_until), &i64::from(limit)],
            )
            .await?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                let attempts: i32 = r.try_get("attempts")?;
                Ok((
                    r.try_get::<_, i64>("seq")?,
                    ClaimedDelivery {
                        event: outbox_from_row(r)?,
                        attempts: u32::try_from(attempts).map_err(|e| StorageError::Corrupt(e.to_string()))?,
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING does not keep the subquery's order.
        claimed.sort_by_key(|(seq, d)| (d.event.created_at, *seq));
        Ok(claimed.into_iter().map(|(_, d)| d).collect())
    }

    async fn finish_outbox_attempt(&self, id: Uuid, outcome: &DeliveryOutcome) -> Result<()> {
        let (delivered, next, given_up, error) = match outcome {
            DeliveryOutcome::Delivered { at } => (Some(to_millis(*at)), None, None, None),
            DeliveryOutcome::Retry { next_attempt_at, error } => {
                (None, Some(to_millis(*next_attempt_at)), None, Some(error.clone()))
            }
            DeliveryOutcome::GiveUp { at, error } => (None, None, Some(to_millis(*at)), Some(error.clone())),
        };
        self.client()
            .await?
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, delivered_at = $1, next_attempt_at = $2, given_up_at = $3,
                    last_error = $4, lease_until = NULL WHERE id = $5",
                &[&delivered, &next, &given_up, &error, &id],
            )
            .await?;
        Ok(())
    }

    async fn purge_finished_outbox(&self, finished_before: OffsetDateTime) -> Result<u64> {
        let cutoff = to_millis(finished_before);
        Ok(self.client().await?.execute(PURGE_FINISHED_OUTBOX, &[&cutoff]).await?)
    }
}
