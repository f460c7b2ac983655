//! Exactly-once transfer executions: the bookkeeping behind `transfers/managed/execute` (and Link's transfer
//! flow), answered as a small "what to do next" ([`ExecutionStep`]) so a handler only maps it.
//!
//! An execute claims its preview in the database *before* the integration is called (one conditional insert,
//! unique per preview and per client on transactionId and `Idempotency-Key`). A retry, on any instance, finds
//! the claim: the stored result is replayed, a live claim is `InProgress`, an abandoned one (its lease ended) is
//! taken over under the same idempotency key, and a key reused for a different transfer (another fingerprint)
//! is a `Conflict`. Only the caller holding the [`ExecutionTicket`] writes the outcome back or releases it.

use linkvault_domain::{AuditAction, AuditActor, ClientId, TokenId};
use linkvault_storage::{
    CompletedTransfer, ExecutionClaim, ExecutionState, SentTransfer, TransferExecutionRecord, TransferFollow,
    TransferPreviewRecord,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::audit::AuditNote;
use crate::{Vault, VaultError};

/// The record of an execution: the transfer (preview) id, the connection, and the attempt.
fn execution_note(ticket: &ExecutionTicket) -> AuditNote {
    AuditNote::new(AuditActor::Client(ticket.client_id), AuditAction::TransferExecuted)
        .client(ticket.client_id)
        .token(ticket.token_id)
        .subject(ticket.execution_id)
        .detail(format!("attempt={}", ticket.attempt))
}

/// The right to call the integration for one execution, at one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionTicket {
    /// The execution's id (its preview's).
    pub execution_id: Uuid,
    pub attempt: u32,
    /// Whose transfer, from which connection (for its audit record).
    pub client_id: ClientId,
    pub token_id: TokenId,
}

/// What an execute should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionStep {
    /// Call the integration (first attempt, or a take-over of an abandoned claim), then complete or release.
    Proceed(ExecutionTicket),
    /// The transfer was made already: answer with its stored result (JSON text).
    Replay(String),
    /// Another request holds the claim and its lease is live.
    InProgress,
    /// The transactionId (`by_transaction_id`) or `Idempotency-Key` already named a different transfer.
    Conflict { by_transaction_id: bool, preview_id: Uuid },
    /// The preview expired before any execute of it started.
    Expired,
}

/// One execute of a stored preview.
#[derive(Debug)]
pub struct ExecutionRequest<'a> {
    pub preview: &'a TransferPreviewRecord,
    pub idempotency_key: Option<String>,
    /// Identifies the transfer itself (source, destination, asset, amount): a key reused for another one conflicts.
    pub fingerprint: String,
    /// What is sent, for the client's transfer list and the status follower's webhooks.
    pub sent: SentTransfer,
    /// How long the claim holds before a retry may take it over.
    pub lease: Duration,
}

impl Vault {
    /// Stores a preview the client may execute until it expires, and purges previews that ended before
    /// `purge_before` (best effort: a failed purge is retried with the next preview).
    pub async fn save_transfer_preview(
        &self,
        record: &TransferPreviewRecord,
        purge_before: OffsetDateTime,
    ) -> Result<(), VaultError> {
        let note = AuditNote::new(AuditActor::Client(record.client_id), AuditAction::TransferCreated)
            .client(record.client_id)
            .token(record.token_id)
            .subject(record.preview_id)
            .detail(format!("integration={}", record.integration));
        self.audit_before(&note).await?;
        self.store.insert_transfer_preview(record).await?;
        self.audit_after(&note).await;
        if let Err(e) = self.store.purge_transfer_previews(purge_before).await {
            tracing::warn!(error = %e, "cannot purge old transfer previews");
        }
        Ok(())
    }

    /// The client's preview `preview_id` of this connection; another client's, another connection's or an
    /// unknown one is `None`.
    pub async fn transfer_preview(
        &self,
        client_id: ClientId,
        preview_id: Uuid,
        token_id: TokenId,
        integration: &str,
    ) -> Result<Option<TransferPreviewRecord>, VaultError> {
        Ok(self
            .store
            .get_transfer_preview(client_id, preview_id)
            .await?
            .filter(|p| p.token_id == token_id && p.integration == integration))
    }

    /// Claims, finds or takes over the execution of `request.preview`, and says what to do next.
    pub async fn begin_transfer_execution(&self, request: ExecutionRequest<'_>) -> Result<ExecutionStep, VaultError> {
        let step = self.claim_transfer_execution(request).await?;
        if let ExecutionStep::Proceed(ticket) = &step {
            // Fail-closed: the record goes in before anything is sent; without it the claim is given back.
            if let Err(e) = self.audit_before(&execution_note(ticket)).await {
                self.release_transfer_execution(*ticket, true).await;
                return Err(e);
            }
        }
        Ok(step)
    }

    async fn claim_transfer_execution(&self, request: ExecutionRequest<'_>) -> Result<ExecutionStep, VaultError> {
        let preview = request.preview;
        let ticket = |execution_id, attempt| ExecutionTicket {
            execution_id,
            attempt,
            client_id: preview.client_id,
            token_id: preview.token_id,
        };
        let now = self.clock.now();
        let claimed = if preview.expires_at <= now {
            // Too late to start, but a retry of an execute that started in time still gets its answer.
            let existing = self
                .store
                .find_transfer_execution(
                    preview.client_id,
                    preview.preview_id,
                    preview.client_transaction_id.as_deref(),
                    request.idempotency_key.as_deref(),
                )
                .await?;
            match existing {
                Some(row) => ExecutionClaim::Existing(Box::new(row)),
                None => return Ok(ExecutionStep::Expired),
            }
        } else {
            let record = TransferExecutionRecord {
                preview_id: preview.preview_id,
                client_id: preview.client_id,
                token_id: preview.token_id,
                client_transaction_id: preview.client_transaction_id.clone(),
                idempotency_key: request.idempotency_key.clone(),
                fingerprint: request.fingerprint.clone(),
                state: ExecutionState::Pending,
                attempt: 1,
                lease_until: now + request.lease,
                result: None,
                transfer_id: None,
                created_at: now,
                updated_at: now,
                sent: Some(request.sent),
                follow: TransferFollow::default(),
            };
            self.store.claim_transfer_execution(&record).await?
        };
        let row = match claimed {
            ExecutionClaim::Claimed => {
                return Ok(ExecutionStep::Proceed(ticket(preview.preview_id, 1)));
            }
            ExecutionClaim::Existing(row) => row,
        };
        if row.preview_id != preview.preview_id && row.fingerprint != request.fingerprint {
            // The key names another transfer: repeating that one's answer would mislead, sending would break
            // the key's promise.
            let by_transaction_id =
                row.client_transaction_id.is_some() && row.client_transaction_id == preview.client_transaction_id;
            return Ok(ExecutionStep::Conflict { by_transaction_id, preview_id: row.preview_id });
        }
        Ok(match row.state {
            ExecutionState::Succeeded => ExecutionStep::Replay(row.result.unwrap_or_default()),
            ExecutionState::Pending if row.lease_until > now => ExecutionStep::InProgress,
            ExecutionState::Pending => {
                // The holder gave up or died: take over, sending again under the same idempotency key.
                let taken = self
                    .store
                    .take_over_transfer_execution(row.preview_id, row.attempt, now, now + request.lease)
                    .await?;
                if taken {
                    ExecutionStep::Proceed(ticket(row.preview_id, row.attempt + 1))
                } else {
                    ExecutionStep::InProgress
                }
            }
        })
    }

    /// Records the integration's transfer for a ticket. False when the lease ran out and a retry took over (it
    /// sends under the same key and records the same transfer).
    pub async fn complete_transfer_execution(
        &self,
        ticket: ExecutionTicket,
        completed: &CompletedTransfer<'_>,
    ) -> Result<bool, VaultError> {
        let now = self.clock.now();
        let done = self.store.complete_transfer_execution(ticket.execution_id, ticket.attempt, completed, now).await?;
        if done {
            self.audit_after(&execution_note(&ticket)).await;
        }
        Ok(done)
    }

    /// Gives a ticket's claim up after the integration made no transfer (or may have made one, then `forget` is
    /// false and the next retry takes the claim over at once). Only a first attempt's definite refusal proves
    /// nothing was sent, so only then may the claim be forgotten. Best effort: an unreleased claim frees itself
    /// when its lease ends.
    pub async fn release_transfer_execution(&self, ticket: ExecutionTicket, nothing_sent: bool) {
        let forget = nothing_sent && ticket.attempt == 1;
        let now = self.clock.now();
        if let Err(e) = self.store.release_transfer_execution(ticket.execution_id, ticket.attempt, forget, now).await {
            tracing::warn!(error = %e, "cannot release a transfer execution claim; it frees itself when its lease ends");
        }
    }
}
