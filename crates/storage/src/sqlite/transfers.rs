//! [`TransferStore`] on SQLite (migration 0006). Claims run on the single writer connection, so the insert and
//! the look-up of a conflicting row are one step.

use async_trait::async_trait;
use linkvault_domain::{ClientId, TokenId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, conv, u32_col, uuid_col};
use crate::Result;
use crate::time_conv::{from_millis, to_millis};
use crate::transfers::{ExecutionClaim, ExecutionState, TransferExecutionRecord, TransferPreviewRecord, TransferStore};

const EXECUTION_COLUMNS: &str = "preview_id, client_id, token_id, client_transaction_id, idempotency_key, fingerprint,
    state, attempt, lease_until, result, transfer_id, created_at, updated_at";

fn preview_from_row(r: &Row<'_>) -> rusqlite::Result<TransferPreviewRecord> {
    Ok(TransferPreviewRecord {
        preview_id: uuid_col(r, "preview_id")?,
        client_id: ClientId::from_uuid(uuid_col(r, "client_id")?),
        token_id: TokenId::from_uuid(uuid_col(r, "token_id")?),
        integration: r.get("integration")?,
        client_transaction_id: r.get("client_transaction_id")?,
        details: r.get("details")?,
        created_at: conv(from_millis(r.get("created_at")?))?,
        expires_at: conv(from_millis(r.get("expires_at")?))?,
    })
}

fn execution_from_row(r: &Row<'_>) -> rusqlite::Result<TransferExecutionRecord> {
    let state: String = r.get("state")?;
    Ok(TransferExecutionRecord {
        preview_id: uuid_col(r, "preview_id")?,
        client_id: ClientId::from_uuid(uuid_col(r, "client_id")?),
        token_id: TokenId::from_uuid(uuid_col(r, "token_id")?),
        client_transaction_id: r.get("client_transaction_id")?,
        idempotency_key: r.get("idempotency_key")?,
        fingerprint: r.get("fingerprint")?,
        state: conv(ExecutionState::parse(&state).ok_or("unknown execution state"))?,
        attempt: u32_col(r, "attempt")?,
        lease_until: conv(from_millis(r.get("lease_until")?))?,
        result: r.get("result")?,
        transfer_id: r.get("transfer_id")?,
        created_at: conv(from_millis(r.get("created_at")?))?,
        updated_at: conv(from_millis(r.get("updated_at")?))?,
    })
}

fn find_execution(
    c: &Connection,
    client_id: ClientId,
    preview_id: Uuid,
    transaction_id: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<Option<TransferExecutionRecord>> {
    // The preview's own row wins over one found through a key.
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM transfer_executions
         WHERE client_id = ?1 AND (preview_id = ?2 OR client_transaction_id = ?3 OR idempotency_key = ?4)
         ORDER BY preview_id = ?2 DESC, client_transaction_id IS ?3 DESC LIMIT 1"
    );
    Ok(c.prepare_cached(&sql)?
        .query_row(
            params![client_id.to_string(), preview_id.to_string(), transaction_id, idempotency_key],
            execution_from_row,
        )
        .optional()?)
}

#[async_trait]
impl TransferStore for SqliteStore {
    async fn insert_transfer_preview(&self, r: &TransferPreviewRecord) -> Result<()> {
        let r = r.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO transfer_previews (preview_id, client_id, token_id, integration, client_transaction_id,
                    details, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                r.preview_id.to_string(),
                r.client_id.to_string(),
                r.token_id.to_string(),
                r.integration,
                r.client_transaction_id,
                r.details,
                to_millis(r.created_at),
                to_millis(r.expires_at),
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_transfer_preview(
        &self,
        client_id: ClientId,
        preview_id: Uuid,
    ) -> Result<Option<TransferPreviewRecord>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT preview_id, client_id, token_id, integration, client_transaction_id, details, created_at,
                    expires_at FROM transfer_previews WHERE preview_id = ?1 AND client_id = ?2",
            )?
            .query_row(params![preview_id.to_string(), client_id.to_string()], preview_from_row)
            .optional()?)
        })
    }

    async fn purge_transfer_previews(&self, before: OffsetDateTime) -> Result<u64> {
        self.write(move |c| {
            let n = c
                .prepare_cached("DELETE FROM transfer_previews WHERE expires_at < ?1")?
                .execute([to_millis(before)])?;
            Ok(n as u64)
        })
        .await
    }

    async fn claim_transfer_execution(&self, r: &TransferExecutionRecord) -> Result<ExecutionClaim> {
        let r = r.clone();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Without a conflict target, DO NOTHING covers the primary key and both unique indexes.
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO transfer_executions (preview_id, client_id, token_id, client_transaction_id,
                        idempotency_key, fingerprint, state, attempt, lease_until, result, transfer_id, created_at,
                        updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    r.preview_id.to_string(),
                    r.client_id.to_string(),
                    r.token_id.to_string(),
                    r.client_transaction_id,
                    r.idempotency_key,
                    r.fingerprint,
                    r.state.as_str(),
                    r.attempt,
                    to_millis(r.lease_until),
                    r.result,
                    r.transfer_id,
                    to_millis(r.created_at),
                    to_millis(r.updated_at),
                ])?;
            let claim = if inserted == 1 {
                ExecutionClaim::Claimed
            } else {
                let existing = find_execution(
                    &tx,
                    r.client_id,
                    r.preview_id,
                    r.client_transaction_id.as_deref(),
                    r.idempotency_key.as_deref(),
                )?;
                match existing {
                    Some(row) => ExecutionClaim::Existing(Box::new(row)),
                    // A preview id taken by another client's row (ids are random UUIDs, so only by forgery).
                    None => {
                        return Err(crate::StorageError::Database("the preview id belongs to another client".into()));
                    }
                }
            };
            tx.commit()?;
            Ok(claim)
        })
        .await
    }

    async fn find_transfer_execution(
        &self,
        client_id: ClientId,
        preview_id: Uuid,
        client_transaction_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Option<TransferExecutionRecord>> {
        self.read(|c| find_execution(c, client_id, preview_id, client_transaction_id, idempotency_key))
    }

    async fn take_over_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<bool> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE transfer_executions SET attempt = attempt + 1, lease_until = ?3, updated_at = ?4
                     WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending' AND lease_until <= ?4",
                )?
                .execute(params![preview_id.to_string(), attempt, to_millis(lease_until), to_millis(now)])?;
            Ok(n == 1)
        })
        .await
    }

    async fn complete_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        result: &str,
        transfer_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool> {
        let (result, transfer_id) = (result.to_owned(), transfer_id.to_owned());
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE transfer_executions SET state = 'succeeded', result = ?3, transfer_id = ?4, updated_at = ?5
                     WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending'",
                )?
                .execute(params![preview_id.to_string(), attempt, result, transfer_id, to_millis(at)])?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        forget: bool,
        at: OffsetDateTime,
    ) -> Result<bool> {
        self.write(move |c| {
            let n = if forget {
                c.prepare_cached(
                    "DELETE FROM transfer_executions WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending'",
                )?
                .execute(params![preview_id.to_string(), attempt])?
            } else {
                c.prepare_cached(
                    "UPDATE transfer_executions SET lease_until = ?3, updated_at = ?3
                     WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending'",
                )?
                .execute(params![preview_id.to_string(), attempt, to_millis(at)])?
            };
            Ok(n == 1)
        })
        .await
    }
}
