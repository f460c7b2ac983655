//! Storage of managed transfers (migration `0006_transfers.sql`): previews, which record what a client agreed
//! to and expire, and executions, the claim on a preview taken *before* the integration is called.
//!
//! An execution row is unique per preview, and per client on its `client_transaction_id` and on its
//! `idempotency_key`; claiming is one conditional insert, so a retried or concurrent execute — from this
//! instance or another sharing the database — finds the first claim instead of transferring again.
//!
//! Migration 0007 adds what was sent (user, integration, asset, amount, network, destination) and where it
//! stands at the provider (Mesh's status, the hash), for the client's transfer list, and the status follower's
//! bookkeeping: when the next check is due, how many were made (the fencing number of a check's write-back),
//! a lease so that instances sharing a database never check the same transfer at once, and the last status
//! announced by webhook (written in the same transaction as the event, so each change is announced once).

use async_trait::async_trait;
use linkvault_domain::{ClientId, TokenId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::connections::insert_outbox;
use crate::sql::{Driver, Mode, Session, SqlRow, Stmt, run, sql, vals};
use crate::{Result, StorageError};

/// A transfer preview: the validated details (JSON text, owned by the server) and who may execute it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferPreviewRecord {
    pub preview_id: Uuid,
    pub client_id: ClientId,
    /// The connection the transfer is sent from; only it may execute the preview.
    pub token_id: TokenId,
    pub integration: String,
    pub client_transaction_id: Option<String>,
    pub details: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionState {
    /// Claimed; the integration may or may not have been called yet.
    Pending,
    /// The integration made the transfer; `result` holds the answer retries get.
    Succeeded,
}

impl ExecutionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Pending => "pending",
            ExecutionState::Succeeded => "succeeded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(ExecutionState::Pending),
            "succeeded" => Some(ExecutionState::Succeeded),
            _ => None,
        }
    }
}

/// Mesh's status of a sent transfer (`TransferStatus`: pending, succeeded, failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferProgress {
    Pending,
    Succeeded,
    Failed,
}

impl TransferProgress {
    pub const ALL: [TransferProgress; 3] =
        [TransferProgress::Pending, TransferProgress::Succeeded, TransferProgress::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            TransferProgress::Pending => "pending",
            TransferProgress::Succeeded => "succeeded",
            TransferProgress::Failed => "failed",
        }
    }

    /// Case-insensitive (Mesh writes `Pending` in its webhooks and `pending` in its API).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
    }

    pub fn is_final(self) -> bool {
        self != TransferProgress::Pending
    }
}

/// The execution of a preview.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferExecutionRecord {
    pub preview_id: Uuid,
    pub client_id: ClientId,
    pub token_id: TokenId,
    pub client_transaction_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// Digest of the transfer's details, so a key reused for a different transfer is told apart from a retry.
    pub fingerprint: String,
    pub state: ExecutionState,
    /// Fencing number: bumped by each take-over; write-backs compare it.
    pub attempt: u32,
    /// While pending, the holder's claim lasts until then; after it, a retry may take the execution over.
    pub lease_until: OffsetDateTime,
    /// The answer to repeat (JSON text), once succeeded.
    pub result: Option<String>,
    pub transfer_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// What was sent (known at claim time; `None` only on rows older than migration 0007).
    pub sent: Option<SentTransfer>,
    /// Where it stands at the provider and the follower's bookkeeping (written by completion and checks;
    /// `TransferFollow::default()` in a new claim).
    pub follow: TransferFollow,
}

/// Where a sent transfer stands, and what the status follower did about it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TransferFollow {
    /// Mesh's status, once the integration made the transfer.
    pub status: Option<TransferProgress>,
    pub hash: Option<String>,
    /// The status the last webhook announced.
    pub announced_status: Option<TransferProgress>,
    /// When the follower checks it next; `None` when there is nothing to follow.
    pub next_check_at: Option<OffsetDateTime>,
    /// Checks made so far (the fencing number of [`TransferCheck`]).
    pub checks: u32,
    /// The follower stopped before the transfer was final (after its bounded time).
    pub gave_up_at: Option<OffsetDateTime>,
}

/// What a transfer execution sends: the facts the client's transfer list and webhooks show.
#[derive(Debug, Clone, PartialEq)]
pub struct SentTransfer {
    /// The end user whose connection sends (the connection's `user_id`).
    pub user_id: String,
    /// The integration type of the connection (`coinbase`, …).
    pub integration: String,
    pub symbol: String,
    /// What the destination receives, in the symbol.
    pub amount: f64,
    pub amount_in_fiat: f64,
    /// Mesh's network id.
    pub network_id: Uuid,
    pub to_address: String,
}

/// The integration made the transfer: what `complete_transfer_execution` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedTransfer<'a> {
    /// The answer retries get (JSON text).
    pub result: &'a str,
    /// The integration's id of the transfer.
    pub transfer_id: &'a str,
    pub status: TransferProgress,
    pub hash: Option<&'a str>,
}

/// One status check's write-back (fenced on `checks`, the count the claim returned).
#[derive(Debug, Clone, PartialEq)]
pub struct TransferCheck {
    pub preview_id: Uuid,
    /// `checks` as claimed; the write-back is refused if another check was recorded meanwhile.
    pub checks: u32,
    pub status: TransferProgress,
    /// A hash the provider now reports (kept when `None`).
    pub hash: Option<String>,
    /// The next check, or `None` when the transfer is final or given up on.
    pub next_check_at: Option<OffsetDateTime>,
    pub gave_up_at: Option<OffsetDateTime>,
    /// The webhook announcing `status`, written in the same transaction (then `announced_status = status`).
    pub event: Option<crate::OutboxEvent>,
    pub at: OffsetDateTime,
}

/// Mesh's `TransferOrderByFields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransferOrder {
    Id,
    ClientTransactionId,
    UserId,
    Integration,
    AmountInFiat,
    Status,
    #[default]
    Created,
    Symbol,
    Network,
}

impl TransferOrder {
    /// The column (a fixed name: never from input).
    pub(crate) fn column(self) -> &'static str {
        match self {
            TransferOrder::Id => "preview_id",
            TransferOrder::ClientTransactionId => "client_transaction_id",
            TransferOrder::UserId => "user_id",
            TransferOrder::Integration => "integration",
            TransferOrder::AmountInFiat => "amount_in_fiat",
            TransferOrder::Status => "transfer_status",
            TransferOrder::Created => "created_at",
            TransferOrder::Symbol => "symbol",
            TransferOrder::Network => "network_id",
        }
    }
}

/// Which of a client's sent transfers to list. Empty lists and `None` match everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TransferFilter {
    pub id: Option<Uuid>,
    pub client_transaction_id: Option<String>,
    pub user_id: Option<String>,
    pub integrations: Vec<String>,
    pub statuses: Vec<TransferProgress>,
    /// Created at or after.
    pub from: Option<OffsetDateTime>,
    /// Created at or before.
    pub to: Option<OffsetDateTime>,
    pub hash: Option<String>,
    pub min_amount_in_fiat: Option<f64>,
    pub max_amount_in_fiat: Option<f64>,
    pub order: TransferOrder,
    pub descending: bool,
    pub offset: u64,
    pub count: u32,
}

/// A page of the list and how many transfers match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferPage {
    pub items: Vec<TransferExecutionRecord>,
    pub total: u64,
}

/// What claiming an execution found.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionClaim {
    /// The row was inserted: the caller holds attempt 1 and may call the integration.
    Claimed,
    /// A row already names this preview, transactionId or Idempotency-Key (the one for the preview first).
    Existing(Box<TransferExecutionRecord>),
}

#[async_trait]
pub trait TransferStore: Send + Sync {
    async fn insert_transfer_preview(&self, record: &TransferPreviewRecord) -> Result<()>;
    /// The client's preview; another client's is `None`.
    async fn get_transfer_preview(
        &self,
        client_id: ClientId,
        preview_id: Uuid,
    ) -> Result<Option<TransferPreviewRecord>>;
    /// Deletes previews that expired before `before`; returns how many. Executions are kept.
    async fn purge_transfer_previews(&self, before: OffsetDateTime) -> Result<u64>;

    /// Inserts `record` (state pending, its attempt and lease) unless a row of the same client already has its
    /// preview, transactionId or Idempotency-Key; then that row is returned instead.
    async fn claim_transfer_execution(&self, record: &TransferExecutionRecord) -> Result<ExecutionClaim>;
    /// The client's execution with this preview, else with this transactionId, else with this key.
    async fn find_transfer_execution(
        &self,
        client_id: ClientId,
        preview_id: Uuid,
        client_transaction_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Option<TransferExecutionRecord>>;
    /// Takes over a pending execution whose lease ended before `now` and that is still at `attempt`: bumps the
    /// attempt and leases it until `lease_until`. False if another caller got there first or it completed.
    async fn take_over_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<bool>;
    /// Records the integration's transfer, if the execution is still pending at `attempt`, and makes it due
    /// for the follower at once (which announces its first status).
    async fn complete_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        completed: &CompletedTransfer<'_>,
        at: OffsetDateTime,
    ) -> Result<bool>;
    /// Gives a pending claim at `attempt` up: `forget` deletes it (the integration certainly made no
    /// transfer), otherwise its lease ends at `at`, so the next retry takes it over at once.
    async fn release_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        forget: bool,
        at: OffsetDateTime,
    ) -> Result<bool>;

    /// The client's sent transfers (executions the integration made) matching `filter`: one page, and the
    /// count of all that match. Another client's never appear.
    async fn list_transfer_executions(&self, client_id: ClientId, filter: &TransferFilter) -> Result<TransferPage>;
    /// Claims up to `limit` transfers due for a status check (`next_check_at <= now`, lease free or expired),
    /// soonest first, leasing them until `lease_until` so that no other instance checks them meanwhile.
    async fn claim_transfer_checks(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TransferExecutionRecord>>;
    /// Records a check (counting it, ending the lease) and writes its event, in one transaction; `false` if the
    /// row is not at `check.checks` any more (another instance recorded a check after a lease ran out).
    async fn record_transfer_check(&self, check: &TransferCheck) -> Result<bool>;
}

/// A claim that conflicts with a row which is gone by the time it is read (released meanwhile) is retried.
const CLAIM_ATTEMPTS: u32 = 5;

/// Read by `execution_from_row`, in this order.
macro_rules! execution_columns {
    () => {
        "preview_id, client_id, token_id, client_transaction_id, idempotency_key, fingerprint, state, attempt,
         lease_until, result, transfer_id, created_at, updated_at, user_id, integration, symbol, amount,
         amount_in_fiat, network_id, to_address, transfer_status, hash, announced_status, next_check_at, checks,
         follow_gave_up_at"
    };
}

fn progress_col(r: &dyn SqlRow, i: usize) -> Result<Option<TransferProgress>> {
    r.text_opt(i)?
        .map(|t| {
            TransferProgress::parse(t).ok_or_else(|| StorageError::Corrupt(format!("unknown transfer status {t:?}")))
        })
        .transpose()
}

fn execution_from_row(r: &dyn SqlRow) -> Result<TransferExecutionRecord> {
    let sent = match r.string_opt(13)? {
        None => None,
        Some(user_id) => Some(SentTransfer {
            user_id,
            integration: r.string_opt(14)?.unwrap_or_default(),
            symbol: r.string_opt(15)?.unwrap_or_default(),
            amount: r.float_opt(16)?.unwrap_or_default(),
            amount_in_fiat: r.float_opt(17)?.unwrap_or_default(),
            network_id: r.uuid_opt(18)?.unwrap_or_default(),
            to_address: r.string_opt(19)?.unwrap_or_default(),
        }),
    };
    let state = r.text(6)?;
    Ok(TransferExecutionRecord {
        preview_id: r.uuid(0)?,
        client_id: r.client_id(1)?,
        token_id: r.token_id(2)?,
        client_transaction_id: r.string_opt(3)?,
        idempotency_key: r.string_opt(4)?,
        fingerprint: r.string(5)?,
        state: ExecutionState::parse(state)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown execution state {state:?}")))?,
        attempt: r.u32(7)?,
        lease_until: r.time(8)?,
        result: r.string_opt(9)?,
        transfer_id: r.string_opt(10)?,
        created_at: r.time(11)?,
        updated_at: r.time(12)?,
        sent,
        follow: TransferFollow {
            status: progress_col(r, 20)?,
            hash: r.string_opt(21)?,
            announced_status: progress_col(r, 22)?,
            next_check_at: r.time_opt(23)?,
            checks: r.u32(24)?,
            gave_up_at: r.time_opt(25)?,
        },
    })
}

async fn find_execution(
    s: &mut impl Session,
    client_id: ClientId,
    preview_id: Uuid,
    client_transaction_id: Option<String>,
    idempotency_key: Option<String>,
) -> Result<Option<TransferExecutionRecord>> {
    s.query_opt(
        sql!(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM transfer_executions
             WHERE client_id = ?1 AND (preview_id = ?2 OR client_transaction_id = ?3 OR idempotency_key = ?4)
             ORDER BY (preview_id = ?2) DESC, (client_transaction_id IS NOT DISTINCT FROM ?3) DESC LIMIT 1"
        )),
        &vals![client_id, preview_id, client_transaction_id, idempotency_key],
        execution_from_row,
    )
    .await
}

#[async_trait]
impl<D: Driver> TransferStore for D {
    async fn insert_transfer_preview(&self, r: &TransferPreviewRecord) -> Result<()> {
        let params = vals![
            r.preview_id,
            r.client_id,
            r.token_id,
            &r.integration,
            &r.client_transaction_id,
            &r.details,
            r.created_at,
            r.expires_at,
        ];
        self.exec(
            Mode::Write,
            sql!(
                "INSERT INTO transfer_previews (preview_id, client_id, token_id, integration, client_transaction_id,
                        details, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params,
        )
        .await
        .map(drop)
    }

    async fn get_transfer_preview(
        &self,
        client_id: ClientId,
        preview_id: Uuid,
    ) -> Result<Option<TransferPreviewRecord>> {
        self.opt(
            Mode::Read,
            sql!(
                "SELECT preview_id, client_id, token_id, integration, client_transaction_id, details, created_at,
                        expires_at FROM transfer_previews WHERE preview_id = ?1 AND client_id = ?2"
            ),
            vals![preview_id, client_id],
            |r| {
                Ok(TransferPreviewRecord {
                    preview_id: r.uuid(0)?,
                    client_id: r.client_id(1)?,
                    token_id: r.token_id(2)?,
                    integration: r.string(3)?,
                    client_transaction_id: r.string_opt(4)?,
                    details: r.string(5)?,
                    created_at: r.time(6)?,
                    expires_at: r.time(7)?,
                })
            },
        )
        .await
    }

    async fn purge_transfer_previews(&self, before: OffsetDateTime) -> Result<u64> {
        self.exec(Mode::Write, sql!("DELETE FROM transfer_previews WHERE expires_at < ?1"), vals![before]).await
    }

    async fn claim_transfer_execution(&self, r: &TransferExecutionRecord) -> Result<ExecutionClaim> {
        let sent = r.sent.as_ref();
        let params = vals![
            r.preview_id,
            r.client_id,
            r.token_id,
            &r.client_transaction_id,
            &r.idempotency_key,
            &r.fingerprint,
            r.state.as_str(),
            r.attempt,
            r.lease_until,
            &r.result,
            &r.transfer_id,
            r.created_at,
            r.updated_at,
            sent.map(|t| t.user_id.as_str()),
            sent.map(|t| t.integration.as_str()),
            sent.map(|t| t.symbol.as_str()),
            sent.map(|t| t.amount),
            sent.map(|t| t.amount_in_fiat),
            sent.map(|t| t.network_id),
            sent.map(|t| t.to_address.as_str()),
        ];
        for _ in 0..CLAIM_ATTEMPTS {
            let (params, r) = (params.clone(), r.clone());
            let claim = Driver::run(self, Mode::Transaction, move |s| {
                Box::pin(async move {
                    // Without a conflict target, DO NOTHING covers the primary key and both unique indexes; a
                    // concurrent inserter of the same keys waits for this transaction's outcome.
                    let inserted = s
                        .execute(
                            sql!(
                                "INSERT INTO transfer_executions (preview_id, client_id, token_id,
                                    client_transaction_id, idempotency_key, fingerprint, state, attempt, lease_until,
                                    result, transfer_id, created_at, updated_at, user_id, integration, symbol, amount,
                                    amount_in_fiat, network_id, to_address)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                                    ?18, ?19, ?20)
                                 ON CONFLICT DO NOTHING"
                            ),
                            &params,
                        )
                        .await?;
                    if inserted == 1 {
                        return Ok(Some(ExecutionClaim::Claimed));
                    }
                    let existing =
                        find_execution(s, r.client_id, r.preview_id, r.client_transaction_id, r.idempotency_key)
                            .await?;
                    Ok(existing.map(|row| ExecutionClaim::Existing(Box::new(row))))
                })
            });
            if let Some(claim) = claim.await? {
                return Ok(claim);
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
        let (txid, key) = (client_transaction_id.map(str::to_owned), idempotency_key.map(str::to_owned));
        run!(self, Read, |s| find_execution(s, client_id, preview_id, txid, key).await)
    }

    async fn take_over_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<bool> {
        self.exec(
            Mode::Write,
            sql!(
                "UPDATE transfer_executions SET attempt = attempt + 1, lease_until = ?3, updated_at = ?4
                     WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending' AND lease_until <= ?4"
            ),
            vals![preview_id, attempt, lease_until, now],
        )
        .await
        .map(|n| n == 1)
    }

    async fn complete_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        completed: &CompletedTransfer<'_>,
        at: OffsetDateTime,
    ) -> Result<bool> {
        let params = vals![
            preview_id,
            attempt,
            completed.result,
            completed.transfer_id,
            at,
            completed.status.as_str(),
            completed.hash
        ];
        self.exec(
            Mode::Write,
            sql!(
                "UPDATE transfer_executions SET state = 'succeeded', result = ?3, transfer_id = ?4, updated_at = ?5,
                        transfer_status = ?6, hash = ?7, next_check_at = ?5
                     WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending'"
            ),
            params,
        )
        .await
        .map(|n| n == 1)
    }

    async fn release_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        forget: bool,
        at: OffsetDateTime,
    ) -> Result<bool> {
        run!(self, Write, |s| if forget {
            s.execute(
                sql!("DELETE FROM transfer_executions WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending'"),
                &vals![preview_id, attempt],
            )
            .await
        } else {
            s.execute(
                sql!(
                    "UPDATE transfer_executions SET lease_until = ?3, updated_at = ?3
                     WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending'"
                ),
                &vals![preview_id, attempt, at],
            )
            .await
        })
        .map(|n| n == 1)
    }

    async fn list_transfer_executions(&self, client_id: ClientId, f: &TransferFilter) -> Result<TransferPage> {
        // Lists are bound as JSON arrays and unpacked by the database: one statement whatever their length. A
        // `CAST` gives PostgreSQL the parameter's type where it is only tested for NULL (SQLite only tests it).
        let json = |items: Vec<&str>| (!items.is_empty()).then(|| serde_json::json!(items).to_string());
        let mut params = vals![
            client_id,
            f.id,
            &f.client_transaction_id,
            &f.user_id,
            json(f.integrations.iter().map(String::as_str).collect()),
            json(f.statuses.iter().map(|s| s.as_str()).collect()),
            f.from,
            f.to,
            &f.hash,
            f.min_amount_in_fiat,
            f.max_amount_in_fiat,
        ]
        .to_vec();
        const FILTER: &str = "FROM transfer_executions WHERE client_id = ?1 AND state = 'succeeded'
               AND transfer_id IS NOT NULL
               AND (CAST(?2 AS UUID) IS NULL OR preview_id = ?2) AND (CAST(?3 AS TEXT) IS NULL OR client_transaction_id = ?3)
               AND (CAST(?4 AS TEXT) IS NULL OR user_id = ?4)
               AND (CAST(?5 AS TEXT) IS NULL OR integration IN
                   (SELECT value FROM {sqlite:json_each(?5)}{pg:jsonb_array_elements_text(CAST(?5 AS TEXT)::jsonb)}))
               AND (CAST(?6 AS TEXT) IS NULL OR transfer_status IN
                   (SELECT value FROM {sqlite:json_each(?6)}{pg:jsonb_array_elements_text(CAST(?6 AS TEXT)::jsonb)}))
               AND (CAST(?7 AS BIGINT) IS NULL OR created_at >= ?7) AND (CAST(?8 AS BIGINT) IS NULL OR created_at <= ?8)
               AND (CAST(?9 AS TEXT) IS NULL OR hash = ?9)
               AND (CAST(?10 AS DOUBLE PRECISION) IS NULL OR amount_in_fiat >= ?10)
               AND (CAST(?11 AS DOUBLE PRECISION) IS NULL OR amount_in_fiat <= ?11)";
        let direction = if f.descending { "DESC" } else { "ASC" };
        let page = Stmt::owned(format!(
            "SELECT {} {FILTER} ORDER BY {} {direction}, created_at {direction}, preview_id {direction}
             LIMIT ?12 OFFSET ?13",
            execution_columns!(),
            f.order.column()
        ));
        let base = params.clone();
        params.extend(vals![f.count, f.offset]);
        run!(self, Read, |s| {
            let total = s.count(&Stmt::owned(format!("SELECT COUNT(*) {FILTER}")), &base).await?;
            let items = s.query(&page, &params, execution_from_row).await?;
            Ok(TransferPage { items, total })
        })
    }

    async fn claim_transfer_checks(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TransferExecutionRecord>> {
        let mut claimed = self
            .all(
                Mode::Write, // SKIP LOCKED: instances claiming at once take different rows instead of waiting on each other.
                sql!(concat!(
                    "UPDATE transfer_executions SET follow_lease_until = ?2 WHERE preview_id IN (
                        SELECT preview_id FROM transfer_executions
                        WHERE next_check_at IS NOT NULL AND next_check_at <= ?1
                          AND (follow_lease_until IS NULL OR follow_lease_until < ?1)
                        ORDER BY next_check_at LIMIT ?3{pg: FOR UPDATE SKIP LOCKED})
                     RETURNING ",
                    execution_columns!()
                )),
                vals![now, lease_until, limit],
                execution_from_row,
            )
            .await?;
        // RETURNING does not keep the subquery's order.
        claimed.sort_by_key(|r| r.follow.next_check_at);
        Ok(claimed)
    }

    async fn record_transfer_check(&self, check: &TransferCheck) -> Result<bool> {
        let params = vals![
            check.preview_id,
            check.checks,
            check.status.as_str(),
            &check.hash,
            check.next_check_at,
            check.gave_up_at,
            check.event.as_ref().map(|_| check.status.as_str()),
            check.at,
        ];
        let event = check.event.clone();
        run!(self, Transaction, |s| {
            let n = s
                .execute(
                    sql!(
                        "UPDATE transfer_executions SET checks = checks + 1, transfer_status = ?3,
                            hash = COALESCE(?4, hash), next_check_at = ?5, follow_gave_up_at = ?6,
                            announced_status = COALESCE(?7, announced_status), follow_lease_until = NULL,
                            updated_at = ?8
                         WHERE preview_id = ?1 AND checks = ?2"
                    ),
                    &params,
                )
                .await?;
            if n == 1
                && let Some(event) = &event
            {
                insert_outbox(s, event).await?;
            }
            Ok(n == 1)
        })
    }
}
