//! [`WebhookStore`] on SQLite.

use async_trait::async_trait;
use linkvault_domain::ClientId;
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, conv, outbox_from_row, uuid_col};
use crate::Result;
use crate::time_conv::{from_millis, to_millis};
use crate::webhooks::{
    ClaimedDelivery, DeliveryOutcome, PURGE_FINISHED_OUTBOX, WebhookEndpointRecord, WebhookFormat, WebhookStore,
};

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn set_webhook_endpoint(&self, r: &WebhookEndpointRecord) -> Result<()> {
        let r = r.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO webhook_endpoints (client_id, url, secret_sealed, created_at, updated_at, format)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (client_id) DO UPDATE SET url = excluded.url, secret_sealed = excluded.secret_sealed,
                    updated_at = excluded.updated_at, format = excluded.format",
            )?
            .execute(params![
                r.client_id.to_string(),
                r.url,
                r.secret_sealed,
                to_millis(r.created_at),
                to_millis(r.updated_at),
                r.format.as_str(),
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_webhook_endpoint(&self, client_id: ClientId) -> Result<Option<WebhookEndpointRecord>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT client_id, url, secret_sealed, created_at, updated_at, format FROM webhook_endpoints
                 WHERE client_id = ?1",
            )?
            .query_row([client_id.to_string()], |r| {
                Ok(WebhookEndpointRecord {
                    client_id: ClientId::from_uuid(uuid_col(r, "client_id")?),
                    url: r.get("url")?,
                    secret_sealed: r.get("secret_sealed")?,
                    created_at: conv(from_millis(r.get("created_at")?))?,
                    updated_at: conv(from_millis(r.get("updated_at")?))?,
                    format: conv(WebhookFormat::parse(&r.get::<_, String>("format")?).ok_or("unknown webhook format"))?,
                })
            })
            .optional()?)
        })
    }

    async fn claim_outbox_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>> {
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now_ms = to_millis(now);
            let claimed = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, client_id, event_type, payload, created_at, attempts FROM outbox
                     WHERE delivered_at IS NULL AND given_up_at IS NULL
                       AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)
                       AND (lease_until IS NULL OR lease_until < ?1)
                     ORDER BY created_at, rowid LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![now_ms, limit], |r| {
                    Ok(ClaimedDelivery {
                        event: outbox_from_row(r)?,
                        attempts: conv(u32::try_from(r.get::<_, i64>("attempts")?))?,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            for d in &claimed {
                tx.prepare_cached("UPDATE outbox SET lease_until = ?1 WHERE id = ?2")?
                    .execute(params![to_millis(lease_until), d.event.id.to_string()])?;
            }
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn finish_outbox_attempt(&self, id: Uuid, outcome: &DeliveryOutcome) -> Result<()> {
        let outcome = outcome.clone();
        self.write(move |c| {
            let (delivered, next, given_up, error) = match &outcome {
                DeliveryOutcome::Delivered { at } => (Some(to_millis(*at)), None, None, None),
                DeliveryOutcome::Retry { next_attempt_at, error } => {
                    (None, Some(to_millis(*next_attempt_at)), None, Some(error.clone()))
                }
                DeliveryOutcome::GiveUp { at, error } => (None, None, Some(to_millis(*at)), Some(error.clone())),
            };
            c.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, delivered_at = ?1, next_attempt_at = ?2, given_up_at = ?3,
                    last_error = ?4, lease_until = NULL WHERE id = ?5",
            )?
            .execute(params![delivered, next, given_up, error, id.to_string()])?;
            Ok(())
        })
        .await
    }

    async fn purge_finished_outbox(&self, finished_before: OffsetDateTime) -> Result<u64> {
        let cutoff = to_millis(finished_before);
        self.write(move |c| Ok(c.prepare_cached(PURGE_FINISHED_OUTBOX)?.execute(params![cutoff])? as u64)).await
    }
}
