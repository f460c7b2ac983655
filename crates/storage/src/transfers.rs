//! Storage of managed transfers (migration `0006_transfers.sql`): previews, which record what a client agreed
//! to and expire, and executions, the claim on a preview taken *before* the integration is called.
//!
//! An execution row is unique per preview, and per client on its `client_transaction_id` and on its
//! `idempotency_key`; claiming is one conditional insert, so a retried or concurrent execute — from this
//! instance or another sharing the database — finds the first claim instead of transferring again.

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

/// The execution of a preview.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// What claiming an execution found.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Records the integration's transfer, if the execution is still pending at `attempt`.
    async fn complete_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        result: &str,
        transfer_id: &str,
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
}
