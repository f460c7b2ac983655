//! [`TransferStore`] on PostgreSQL. A claim is `INSERT … ON CONFLICT DO NOTHING`: the unique indexes decide
//! between instances, and a concurrent inserter of the same keys waits for the first transaction's outcome.

use async_trait::async_trait;
use linkvault_domain::{ClientId, TokenId};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{PostgresStore, insert_outbox};
use crate::time_conv::{from_millis, opt_from_millis, opt_to_millis, to_millis};
use crate::transfers::{
    CompletedTransfer, ExecutionClaim, ExecutionState, SentTransfer, TransferCheck, TransferExecutionRecord,
    TransferFilter, TransferFollow, TransferPage, TransferPreviewRecord, TransferProgress, TransferStore,
};
use crate::{Result, StorageError};

const EXECUTION_COLUMNS: &str = "preview_id, client_id, token_id, client_transaction_id, idempotency_key, fingerprint,
    state, attempt, lease_until, result, transfer_id, created_at, updated_at, user_id, integration, symbol, amount,
    amount_in_fiat, network_id, to_address, transfer_status, hash, announced_status, next_check_at, checks,
    follow_gave_up_at";

fn progress_col(r: &Row, name: &str) -> Result<Option<TransferProgress>> {
    let text: Option<String> = r.try_get(name)?;
    text.map(|t| {
        TransferProgress::parse(&t).ok_or_else(|| StorageError::Corrupt(format!("unknown transfer status {t:?}")))
    })
    .transpose()
}

fn sent_from_row(r: &Row) -> Result<Option<SentTransfer>> {
    let Some(user_id) = r.try_get::<_, Option<String>>("user_id")? else { return Ok(None) };
    Ok(Some(SentTransfer {
        user_id,
        integration: r.try_get::<_, Option<String>>("integration")?.unwrap_or_default(),
        symbol: r.try_get::<_, Option<String>>("symbol")?.unwrap_or_default(),
        amount: r.try_get::<_, Option<f64>>("amount")?.unwrap_or_default(),
        amount_in_fiat: r.try_get::<_, Option<f64>>("amount_in_fiat")?.unwrap_or_default(),
        network_id: r.try_get::<_, Option<Uuid>>("network_id")?.unwrap_or_default(),
        to_address: r.try_get::<_, Option<String>>("to_address")?.unwrap_or_default(),
    }))
}
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
        sent: sent_from_row(r)?,
        follow: TransferFollow {
            status: progress_col(r, "transfer_status")?,
            hash: r.try_get("hash")?,
            announced_status: progress_col(r, "announced_status")?,
            next_check_at: opt_from_millis(r.try_get("next_check_at")?)?,
            checks: u32::try_from(r.try_get::<_, i32>("checks")?)
                .map_err(|e| StorageError::Corrupt(format!("negative check count: {e}")))?,
            gave_up_at: opt_from_millis(r.try_get("follow_gave_up_at")?)?,
        },
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
                        updated_at, user_id, integration, symbol, amount, amount_in_fiat, network_id, to_address)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            let sent = r.sent.as_ref();
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
                        &sent.map(|t| t.user_id.as_str()),
                        &sent.map(|t| t.integration.as_str()),
                        &sent.map(|t| t.symbol.as_str()),
                        &sent.map(|t| t.amount),
                        &sent.map(|t| t.amount_in_fiat),
                        &sent.map(|t| t.network_id),
                        &sent.map(|t| t.to_address.as_str()),
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
        completed: &CompletedTransfer<'_>,
        at: OffsetDateTime,
    ) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE transfer_executions SET state = 'succeeded', result = $3, transfer_id = $4, updated_at = $5,
                    transfer_status = $6, hash = $7, next_check_at = $5
                 WHERE preview_id = $1 AND attempt = $2 AND state = 'pending'",
                &[
                    &preview_id,
                    &i32_of(attempt),
                    &completed.result,
                    &completed.transfer_id,
                    &to_millis(at),
                    &completed.status.as_str(),
                    &completed.hash,
                ],
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

    async fn list_transfer_executions(&self, client_id: ClientId, f: &TransferFilter) -> Result<TransferPage> {
        let c = self.client().await?;
        let integrations: Option<Vec<&str>> =
            (!f.integrations.is_empty()).then(|| f.integrations.iter().map(String::as_str).collect());
        let statuses: Option<Vec<&str>> =
            (!f.statuses.is_empty()).then(|| f.statuses.iter().map(|s| s.as_str()).collect());
        let filter = "FROM transfer_executions WHERE client_id = $1 AND state = 'succeeded' AND transfer_id IS NOT NULL
               AND ($2::uuid IS NULL OR preview_id = $2) AND ($3::text IS NULL OR client_transaction_id = $3)
               AND ($4::text IS NULL OR user_id = $4)
               AND ($5::text[] IS NULL OR integration = ANY($5))
               AND ($6::text[] IS NULL OR transfer_status = ANY($6))
               AND ($7::bigint IS NULL OR created_at >= $7) AND ($8::bigint IS NULL OR created_at <= $8)
               AND ($9::text IS NULL OR hash = $9)
               AND ($10::float8 IS NULL OR amount_in_fiat >= $10) AND ($11::float8 IS NULL OR amount_in_fiat <= $11)";
        let direction = if f.descending { "DESC" } else { "ASC" };
        let page_sql = format!(
            "SELECT {EXECUTION_COLUMNS} {filter} ORDER BY {} {direction}, created_at {direction}, preview_id {direction}
             LIMIT $12 OFFSET $13",
            f.order.column()
        );
        let count_sql = format!("SELECT COUNT(*) {filter}");
        let (from, to) = (f.from.map(to_millis), f.to.map(to_millis));
        let base: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
            client_id.as_uuid(),
            &f.id,
            &f.client_transaction_id,
            &f.user_id,
            &integrations,
            &statuses,
            &from,
            &to,
            &f.hash,
            &f.min_amount_in_fiat,
            &f.max_amount_in_fiat,
        ];
        let total: i64 = c.query_one(&c.prepare_cached(&count_sql).await?, &base).await?.try_get(0)?;
        let (limit, offset) = (i64::from(f.count), i64::try_from(f.offset).unwrap_or(i64::MAX));
        let mut with_page = base.to_vec();
        with_page.push(&limit);
        with_page.push(&offset);
        let rows = c.query(&c.prepare_cached(&page_sql).await?, &with_page).await?;
        let items = rows.iter().map(execution_from_row).collect::<Result<Vec<_>>>()?;
        Ok(TransferPage { items, total: u64::try_from(total).unwrap_or_default() })
    }

    async fn claim_transfer_checks(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TransferExecutionRecord>> {
        let c = self.client().await?;
        // SKIP LOCKED: instances claiming at once take different rows instead of waiting on each other.
        let sql = format!(
            "UPDATE transfer_executions SET follow_lease_until = $2 WHERE preview_id IN (
                SELECT preview_id FROM transfer_executions
                WHERE next_check_at IS NOT NULL AND next_check_at <= $1
                  AND (follow_lease_until IS NULL OR follow_lease_until < $1)
                ORDER BY next_check_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING {EXECUTION_COLUMNS}"
        );
        let rows = c.query(&sql, &[&to_millis(now), &to_millis(lease_until), &i64::from(limit)]).await?;
        let mut claimed = rows.iter().map(execution_from_row).collect::<Result<Vec<_>>>()?;
        claimed.sort_by_key(|r| r.follow.next_check_at);
        Ok(claimed)
    }

    async fn record_transfer_check(&self, check: &TransferCheck) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let announced = check.event.as_ref().map(|_| check.status.as_str());
        let n = tx
            .execute(
                "UPDATE transfer_executions SET checks = checks + 1, transfer_status = $3,
                    hash = COALESCE($4, hash), next_check_at = $5, follow_gave_up_at = $6,
                    announced_status = COALESCE($7, announced_status), follow_lease_until = NULL, updated_at = $8
                 WHERE preview_id = $1 AND checks = $2",
                &[
                    &check.preview_id,
                    &i32_of(check.checks),
                    &check.status.as_str(),
                    &check.hash,
                    &opt_to_millis(check.next_check_at),
                    &opt_to_millis(check.gave_up_at),
                    &announced,
                    &to_millis(check.at),
                ],
            )
            .await?;
        if n == 1
            && let Some(event) = &check.event
        {
            insert_outbox(&tx, event).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }
}
