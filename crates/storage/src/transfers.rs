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

use crate::Result;

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
