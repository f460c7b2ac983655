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
use crate::sql::Mode::{Read, Write};
use crate::sql::{Columns, Driver, Mode, Session, SqlRow, Stmt, Value, columns, record, run, sql, text_enum, vals};
use crate::{Result, StorageError};

record! {
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
}

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ExecutionState {
        /// Claimed; the integration may or may not have been called yet.
        Pending = "pending",
        /// The integration made the transfer; `result` holds the answer retries get.
        Succeeded = "succeeded",
    }
}

text_enum! {
    /// Mesh's status of a sent transfer (`TransferStatus`: pending, succeeded, failed); parsed regardless of
    /// case (Mesh writes `Pending` in its webhooks and `pending` in its API).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum TransferProgress {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

impl TransferProgress {
    pub fn is_final(self) -> bool {
        self != TransferProgress::Pending
    }
}

record! {
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
        pub status: Option<TransferProgress> as transfer_status,
        pub hash: Option<String>,
        /// The status the last webhook announced.
        pub announced_status: Option<TransferProgress>,
        /// When the follower checks it next; `None` when there is nothing to follow.
        pub next_check_at: Option<OffsetDateTime>,
        /// Checks made so far (the fencing number of [`TransferCheck`]).
        pub checks: u32,
        /// The follower stopped before the transfer was final (after its bounded time).
        pub gave_up_at: Option<OffsetDateTime> as follow_gave_up_at,
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

impl Columns for Option<SentTransfer> {
    fn names(field: &'static str, out: &mut Vec<&'static str>) {
        SentTransfer::names(field, out);
    }
    /// Rows older than migration 0007 have none of these columns (`user_id` is NULL): `None`.
    fn read(r: &dyn SqlRow, at: &mut usize) -> Result<Self> {
        let Some(user_id) = Option::<String>::read(r, at)? else {
            *at += columns::<SentTransfer>().len() - 1;
            return Ok(None);
        };
        Ok(Some(SentTransfer {
            user_id,
            integration: Option::read(r, at)?.unwrap_or_default(),
            symbol: Option::read(r, at)?.unwrap_or_default(),
            amount: Option::read(r, at)?.unwrap_or_default(),
            amount_in_fiat: Option::read(r, at)?.unwrap_or_default(),
            network_id: Option::read(r, at)?.unwrap_or_default(),
            to_address: Option::read(r, at)?.unwrap_or_default(),
        }))
    }
    fn put_all(&self, out: &mut Vec<Value>) {
        match self {
            Some(sent) => sent.put_all(out),
            None => out.extend(columns::<SentTransfer>().iter().map(|_| Value::Null)),
        }
    }
}

async fn find_execution(
    s: &mut impl Session,
    client_id: ClientId,
    preview_id: Uuid,
    client_transaction_id: Option<String>,
    idempotency_key: Option<String>,
) -> Result<Option<TransferExecutionRecord>> {
    let stmt = sql!(TransferExecutionRecord: "SELECT {*} FROM transfer_executions
         WHERE client_id = ?1 AND (preview_id = ?2 OR client_transaction_id = ?3 OR idempotency_key = ?4)
         ORDER BY (preview_id = ?2) DESC, (client_transaction_id IS NOT DISTINCT FROM ?3) DESC LIMIT 1");
    s.opt(stmt, &vals![client_id, preview_id, client_transaction_id, idempotency_key]).await
}

#[async_trait]
impl<D: Driver> TransferStore for D {
    async fn insert_transfer_preview(&self, r: &TransferPreviewRecord) -> Result<()> {
        let stmt = sql!(TransferPreviewRecord: "INSERT INTO transfer_previews ({*}) VALUES ({?*})");
        self.exec(stmt, r.values()).await.map(drop)
    }

    async fn get_transfer_preview(
        &self,
        client_id: ClientId,
        preview_id: Uuid,
    ) -> Result<Option<TransferPreviewRecord>> {
        let stmt =
            sql!(TransferPreviewRecord: "SELECT {*} FROM transfer_previews WHERE preview_id = ?1 AND client_id = ?2");
        self.opt(Read, stmt, vals![preview_id, client_id]).await
    }

    async fn purge_transfer_previews(&self, before: OffsetDateTime) -> Result<u64> {
        self.exec(sql!("DELETE FROM transfer_previews WHERE expires_at < ?1"), vals![before]).await
    }

    async fn claim_transfer_execution(&self, r: &TransferExecutionRecord) -> Result<ExecutionClaim> {
        let params = r.values();
        for _ in 0..CLAIM_ATTEMPTS {
            let (params, r) = (params.clone(), r.clone());
            let claim = Driver::run(self, Mode::Transaction, move |s| {
                Box::pin(async move {
                    // Without a conflict target, DO NOTHING covers the primary key and both unique indexes; a
                    // concurrent inserter of the same keys waits for this transaction's outcome.
                    let insert = sql!(TransferExecutionRecord:
                        "INSERT INTO transfer_executions ({*}) VALUES ({?*}) ON CONFLICT DO NOTHING");
                    if s.execute(insert, &params).await? == 1 {
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
        let stmt = sql!(
            "UPDATE transfer_executions SET attempt = attempt + 1, lease_until = ?3, updated_at = ?4
                         WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending' AND lease_until <= ?4"
        );
        self.changed(stmt, vals![preview_id, attempt, lease_until, now]).await
    }

    async fn complete_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        completed: &CompletedTransfer<'_>,
        at: OffsetDateTime,
    ) -> Result<bool> {
        let stmt = sql!(
            "UPDATE transfer_executions SET state = 'succeeded', result = ?3, transfer_id = ?4,
                             updated_at = ?5, transfer_status = ?6, hash = ?7, next_check_at = ?5
                         WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending'"
        );
        let c = completed;
        self.changed(stmt, vals![preview_id, attempt, c.result, c.transfer_id, at, c.status.as_str(), c.hash]).await
    }

    async fn release_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        forget: bool,
        at: OffsetDateTime,
    ) -> Result<bool> {
        if forget {
            let stmt =
                sql!("DELETE FROM transfer_executions WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending'");
            return self.changed(stmt, vals![preview_id, attempt]).await;
        }
        let stmt = sql!(
            "UPDATE transfer_executions SET lease_until = ?3, updated_at = ?3
                         WHERE preview_id = ?1 AND attempt = ?2 AND state = 'pending'"
        );
        self.changed(stmt, vals![preview_id, attempt, at]).await
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
        let page = Stmt::owned(
            format!(
                "SELECT {{*}} {FILTER} ORDER BY {} {direction}, created_at {direction}, preview_id {direction}
                 LIMIT ?12 OFFSET ?13",
                f.order.column()
            ),
            Some(columns::<TransferExecutionRecord>),
        );
        let base = params.clone();
        params.extend(vals![f.count, f.offset]);
        run!(self, Read, |s| {
            let total = s.one(&Stmt::owned(format!("SELECT COUNT(*) {FILTER}"), None), &base).await?;
            let items = s.all(&page, &params).await?;
            Ok(TransferPage { items, total })
        })
    }

    async fn claim_transfer_checks(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TransferExecutionRecord>> {
        // SKIP LOCKED: instances claiming at once take different rows instead of waiting on each other.
        let stmt = sql!(TransferExecutionRecord:
            "UPDATE transfer_executions SET follow_lease_until = ?2 WHERE preview_id IN (
                 SELECT preview_id FROM transfer_executions
                 WHERE next_check_at IS NOT NULL AND next_check_at <= ?1
                   AND (follow_lease_until IS NULL OR follow_lease_until < ?1)
                 ORDER BY next_check_at LIMIT ?3{pg: FOR UPDATE SKIP LOCKED})
             RETURNING {*}");
        let mut claimed: Vec<TransferExecutionRecord> = self.all(Write, stmt, vals![now, lease_until, limit]).await?;
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
            let stmt = sql!(
                "UPDATE transfer_executions SET checks = checks + 1, transfer_status = ?3,
                                 hash = COALESCE(?4, hash), next_check_at = ?5, follow_gave_up_at = ?6,
                                 announced_status = COALESCE(?7, announced_status), follow_lease_until = NULL,
                                 updated_at = ?8
                             WHERE preview_id = ?1 AND checks = ?2"
            );
            let changed = s.execute(stmt, &params).await? == 1;
            if changed && let Some(event) = &event {
                insert_outbox(s, event).await?;
            }
            Ok(changed)
        })
    }
}
