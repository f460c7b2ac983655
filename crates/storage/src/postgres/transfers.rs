//! [`TransferStore`] on PostgreSQL. A claim is `INSERT … ON CONFLICT DO NOTHING`: the unique indexes decide
//! between instances, and a concurrent inserter of the same keys waits for the first transaction's outcome.

use async_trait::async_trait;
use linkvault_domain::{ClientId, TokenId};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::PostgresStore;
use crate::time_conv::{from_millis, to_millis};
use crate::transfers::{ExecutionClaim, ExecutionState, TransferExecutionRecord, TransferPreviewRecord, TransferStore};
use crate::{Result, StorageError};

const EXECUTION_COLUMNS: &str = "preview_id, client_id, token_id, client_transaction_id, idempotency_key, fingerprint,
    state, attempt, lease_until, result, transfer_id, created_at, updated_at";
/// A claim that conflicts with a row which is gone by the time it is read (released meanwhile) is retried.
const CLAIM_ATTEMPTS: u32 = 5;

fn preview_from_row(r: &Row) -> Result<TransferPreviewRecord> {
    Ok(TransferPreviewRecord {
        preview_id: r.try_get("preview_id")?,
        client_id: ClientId::from_uuid(r.try_get("client_id")?),
        token_id: TokenId::from_uuid(r.try_get("token_id")?),
        integration: r.try_get("integration")?,
        client_transaction_id: r.try_get("client_transaction_id")?,
        details: r.try_get("details")?,
        created_at: from_millis(r.try_get("created_at")?)?,
        expires_at: from_millis(r.try_get("expires_at")?)?,
    })
}

fn execution_from_row(r: &Row) -> Result<TransferExecutionRecord> {
    let state: String = r.try_get("state")?;
    let attempt: i32 = r.try_get("attempt")?;
    Ok(TransferExecutionRecord {
        preview_id: r.try_get("preview_id")?,
        client_id: ClientId::from_uuid(r.try_get("client_id")?),
        token_id: TokenId::from_uuid(r.try_get("token_id")?),
        client_transaction_id: r.try_get("client_transaction_id")?,
        idempotency_key: r.try_get("idempotency_key")?,
        fingerprint: r.try_get("fingerprint")?,
        state: ExecutionState::parse(&state)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown execution state {state:?}")))?,
        attempt: u32::try_from(attempt).map_err(|e| StorageError::Corrupt(format!("negative attempt: {e}")))?,
        lease_until: from_millis(r.try_get("lease_until")?)?,
        result: r.try_get("result")?,
        transfer_id: r.try_get("transfer_id")?,
        created_at: from_millis(r.try_get("created_at")?)?,
        updated_at: from_millis(r.try_get("updated_at")?)?,
    })
}

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

#[async_trait]
impl TransferStore for PostgresStore {
    async fn insert_transfer_preview(&self, r: &TransferPreviewRecord) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO transfer_previews (preview_id, client_id, token_id, integration, client_transaction_id,
                details, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &r.preview_id,
                r.client_id.as_uuid(),
                r.token_id.as_uuid(),
                &r.integration,
                &r.client_transaction_id,
                &r.details,
                &to_millis(r.created_at),
                &to_millis(r.expires_at),
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_transfer_preview(
        &self,
        client_id: ClientId,
        preview_id: Uuid,
    ) -> Result<Option<TransferPreviewRecord>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT preview_id, client_id, token_id, integration, client_transaction_id, details, created_at,
                    expires_at FROM transfer_previews WHERE preview_id = $1 AND client_id = $2",
                &[&preview_id, client_id.as_uuid()],
            )
            .await?;
        row.as_ref().map(preview_from_row).transpose()
    }

    async fn purge_transfer_previews(&self, before: OffsetDateTime) -> Result<u64> {
        let c = self.client().await?;
        Ok(c.execute("DELETE FROM transfer_previews WHERE expires_at < $1", &[&to_millis(before)]).await?)
    }

    async fn claim_transfer_execution(&self, r: &TransferExecutionRecord) -> Result<ExecutionClaim> {
        let c = self.client().await?;
        for _ in 0..CLAIM_ATTEMPTS {
            let stmt = c
                .prepare_cached(
                    "INSERT INTO transfer_executions (preview_id, client_id, token_id, client_transaction_id,
                        idempotency_key, fingerprint, state, attempt, lease_until, result, transfer_id, created_at,
                        updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING",
                )
                .await?;
            let inserted = c
                .execute(
                    &stmt,
                    &[
                        &r.preview_id,
                        r.client_id.as_uuid(),
                        r.token_id.as_uuid(),
                        &r.client_transaction_id,
                        &r.idempotency_key,
                        &r.fingerprint,
                        &r.state.as_str(),
                        &i32_of(r.attempt),
                        &to_millis(r.lease_until),
                        &r.result,
                        &r.transfer_id,
                        &to_millis(r.created_at),
                        &to_millis(r.updated_at),
                    ],
                )
                .await?;
            if inserted == 1 {
                return Ok(ExecutionClaim::Claimed);
            }
            let existing = self
                .find_transfer_execution(
                    r.client_id,
                    r.preview_id,
                    r.client_transaction_id.as_deref(),
                    r.idempotency_key.as_deref(),
                )
                .await?;
            if let Some(row) = existing {
                return Ok(ExecutionClaim::Existing(Box::new(row)));
            }
        }
        Err(StorageError::Database(
            "the execution claim kept conflicting with a row that disappeared (or another client's preview id)".into(),
        ))
    }

    async fn find_transfer_execution(
        &self,
        client_id: ClientId,
        preview_id: Uuid,
        client_transaction_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Option<TransferExecutionRecord>> {
        let c = self.client().await?;
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM transfer_executions
             WHERE client_id = $1 AND (preview_id = $2 OR client_transaction_id = $3 OR idempotency_key = $4)
             ORDER BY (preview_id = $2) DESC, (client_transaction_id IS NOT DISTINCT FROM $3) DESC LIMIT 1"
        );
        let stmt = c.prepare_cached(&sql).await?;
        let row =
            c.query_opt(&stmt, &[client_id.as_uuid(), &preview_id, &client_transaction_id, &idempotency_key]).await?;
        row.as_ref().map(execution_from_row).transpose()
    }

    async fn take_over_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE transfer_executions SET attempt = attempt + 1, lease_until = $3, updated_at = $4
                 WHERE preview_id = $1 AND attempt = $2 AND state = 'pending' AND lease_until <= $4",
                &[&preview_id, &i32_of(attempt), &to_millis(lease_until), &to_millis(now)],
            )
            .await?;
        Ok(n == 1)
    }

    async fn complete_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        result: &str,
        transfer_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE transfer_executions SET state = 'succeeded', result = $3, transfer_id = $4, updated_at = $5
                 WHERE preview_id = $1 AND attempt = $2 AND state = 'pending'",
                &[&preview_id, &i32_of(attempt), &result, &transfer_id, &to_millis(at)],
            )
            .await?;
        Ok(n == 1)
    }

    async fn release_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        forget: bool,
        at: OffsetDateTime,
    ) -> Result<bool> {
        let c = self.client().await?;
        let n = if forget {
            c.execute(
                "DELETE FROM transfer_executions WHERE preview_id = $1 AND attempt = $2 AND state = 'pending'",
                &[&preview_id, &i32_of(attempt)],
            )
            .await?
        } else {
            c.execute(
                "UPDATE transfer_executions SET lease_until = $3, updated_at = $3
                 WHERE preview_id = $1 AND attempt = $2 AND state = 'pending'",
                &[&preview_id, &i32_of(attempt), &to_millis(at)],
            )
            .await?
        };
        Ok(n == 1)
    }
}
