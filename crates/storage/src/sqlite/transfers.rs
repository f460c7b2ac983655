//! [`TransferStore`] on SQLite (migrations 0006, 0007). Claims run on the single writer connection, so the
//! insert and the look-up of a conflicting row are one step; so do the follower's claims and write-backs.

use async_trait::async_trait;
use linkvault_domain::{ClientId, TokenId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, conv, insert_outbox_tx, u32_col, uuid_col};
use crate::Result;
use crate::time_conv::{from_millis, opt_from_millis, opt_to_millis, to_millis};
use crate::transfers::{
    CompletedTransfer, ExecutionClaim, ExecutionState, SentTransfer, TransferCheck, TransferExecutionRecord,
    TransferFilter, TransferFollow, TransferPage, TransferPreviewRecord, TransferProgress, TransferStore,
};

const EXECUTION_COLUMNS: &str = "preview_id, client_id, token_id, client_transaction_id, idempotency_key, fingerprint,
    state, attempt, lease_until, result, transfer_id, created_at, updated_at, user_id, integration, symbol, amount,
    amount_in_fiat, network_id, to_address, transfer_status, hash, announced_status, next_check_at, checks,
    follow_gave_up_at";

fn progress_col(r: &Row<'_>, name: &str) -> rusqlite::Result<Option<TransferProgress>> {
    let text: Option<String> = r.get(name)?;
    text.map(|t| conv(TransferProgress::parse(&t).ok_or("unknown transfer status"))).transpose()
}

fn sent_from_row(r: &Row<'_>) -> rusqlite::Result<Option<SentTransfer>> {
    let Some(user_id) = r.get::<_, Option<String>>("user_id")? else { return Ok(None) };
    let network: Option<String> = r.get("network_id")?;
    Ok(Some(SentTransfer {
        user_id,
        integration: r.get::<_, Option<String>>("integration")?.unwrap_or_default(),
        symbol: r.get::<_, Option<String>>("symbol")?.unwrap_or_default(),
        amount: r.get::<_, Option<f64>>("amount")?.unwrap_or_default(),
        amount_in_fiat: r.get::<_, Option<f64>>("amount_in_fiat")?.unwrap_or_default(),
        network_id: conv(Uuid::parse_str(network.as_deref().unwrap_or_default()))?,
        to_address: r.get::<_, Option<String>>("to_address")?.unwrap_or_default(),
    }))
}

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
        sent: sent_from_row(r)?,
        follow: TransferFollow {
            status: progress_col(r, "transfer_status")?,
            hash: r.get("hash")?,
            announced_status: progress_col(r, "announced_status")?,
            next_check_at: conv(opt_from_millis(r.get("next_check_at")?))?,
            checks: u32_col(r, "checks")?,
            gave_up_at: conv(opt_from_millis(r.get("follow_gave_up_at")?))?,
        },
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
                        updated_at, user_id, integration, symbol, amount, amount_in_fiat, network_id, to_address)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
                     ON CONFLICT DO NOTHING",
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
                    r.sent.as_ref().map(|t| t.user_id.clone()),
                    r.sent.as_ref().map(|t| t.integration.clone()),
                    r.sent.as_ref().map(|t| t.symbol.clone()),
                    r.sent.as_ref().map(|t| t.amount),
                    r.sent.as_ref().map(|t| t.amount_in_fiat),
                    r.sent.as_ref().map(|t| t.network_id.to_string()),
                    r.sent.as_ref().map(|t| t.to_address.clone()),
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
        completed: &CompletedTransfer<'_>,
        at: OffsetDateTime,
    ) -> Result<bool> {
        let (result, transfer_id) = (completed.result.to_owned(), completed.transfer_id.to_owned());
        let (status, hash) = (completed.status.as_str(), completed.hash.map(str::to_owned));
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE transfer_executions SET state = 'succeeded', result = ?3, transfer_id = ?4, updated_at = ?5,
                        transfer_status = ?6, hash = ?7, next_check_at = ?5
                     WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending'",
                )?
                .execute(params![preview_id.to_string(), attempt, result, transfer_id, to_millis(at), status, hash])?;
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

    async fn list_transfer_executions(&self, client_id: ClientId, f: &TransferFilter) -> Result<TransferPage> {
        // Lists are bound as JSON arrays and read with json_each: one statement whatever their length.
        let integrations = (!f.integrations.is_empty()).then(|| serde_json::json!(f.integrations).to_string());
        let statuses = (!f.statuses.is_empty())
            .then(|| serde_json::json!(f.statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>()).to_string());
        let filter = "FROM transfer_executions WHERE client_id = ?1 AND state = 'succeeded' AND transfer_id IS NOT NULL
               AND (?2 IS NULL OR preview_id = ?2) AND (?3 IS NULL OR client_transaction_id = ?3)
               AND (?4 IS NULL OR user_id = ?4)
               AND (?5 IS NULL OR integration IN (SELECT value FROM json_each(?5)))
               AND (?6 IS NULL OR transfer_status IN (SELECT value FROM json_each(?6)))
               AND (?7 IS NULL OR created_at >= ?7) AND (?8 IS NULL OR created_at <= ?8)
               AND (?9 IS NULL OR hash = ?9)
               AND (?10 IS NULL OR amount_in_fiat >= ?10) AND (?11 IS NULL OR amount_in_fiat <= ?11)";
        let direction = if f.descending { "DESC" } else { "ASC" };
        let page_sql = format!(
            "SELECT {EXECUTION_COLUMNS} {filter} ORDER BY {} {direction}, created_at {direction}, preview_id {direction}
             LIMIT ?12 OFFSET ?13",
            f.order.column()
        );
        let count_sql = format!("SELECT COUNT(*) {filter}");
        let offset = i64::try_from(f.offset).unwrap_or(i64::MAX);
        self.read(|c| {
            let base = params![
                client_id.to_string(),
                f.id.map(|id| id.to_string()),
                f.client_transaction_id,
                f.user_id,
                integrations,
                statuses,
                f.from.map(to_millis),
                f.to.map(to_millis),
                f.hash,
                f.min_amount_in_fiat,
                f.max_amount_in_fiat,
            ];
            let total: i64 = c.prepare_cached(&count_sql)?.query_row(base, |r| r.get(0))?;
            let mut with_page: Vec<&dyn rusqlite::ToSql> = base.to_vec();
            with_page.push(&f.count);
            with_page.push(&offset);
            let items = c
                .prepare_cached(&page_sql)?
                .query_map(with_page.as_slice(), execution_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(TransferPage { items, total: u64::try_from(total).unwrap_or_default() })
        })
    }

    async fn claim_transfer_checks(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TransferExecutionRecord>> {
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let sql = format!(
                "SELECT {EXECUTION_COLUMNS} FROM transfer_executions
                 WHERE next_check_at IS NOT NULL AND next_check_at <= ?1
                   AND (follow_lease_until IS NULL OR follow_lease_until < ?1)
                 ORDER BY next_check_at LIMIT ?2"
            );
            let claimed = tx
                .prepare_cached(&sql)?
                .query_map(params![to_millis(now), limit], execution_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for row in &claimed {
                tx.prepare_cached("UPDATE transfer_executions SET follow_lease_until = ?1 WHERE preview_id = ?2")?
                    .execute(params![to_millis(lease_until), row.preview_id.to_string()])?;
            }
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn record_transfer_check(&self, check: &TransferCheck) -> Result<bool> {
        let check = check.clone();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let announced = check.event.as_ref().map(|_| check.status.as_str());
            let n = tx
                .prepare_cached(
                    "UPDATE transfer_executions SET checks = checks + 1, transfer_status = ?3,
                        hash = COALESCE(?4, hash), next_check_at = ?5, follow_gave_up_at = ?6,
                        announced_status = COALESCE(?7, announced_status), follow_lease_until = NULL, updated_at = ?8
                     WHERE preview_id = ?1 AND checks = ?2",
                )?
                .execute(params![
                    check.preview_id.to_string(),
                    check.checks,
                    check.status.as_str(),
                    check.hash,
                    opt_to_millis(check.next_check_at),
                    opt_to_millis(check.gave_up_at),
                    announced,
                    to_millis(check.at),
                ])?;
            if n == 1
                && let Some(event) = &check.event
            {
                insert_outbox_tx(&tx, event)?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
        .await
    }
}
