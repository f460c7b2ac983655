//! The transfer status follower: follows each sent managed transfer at its provider until it is final, records
//! each new status (and hash) on the transfer's execution row, and announces each change by webhook.
//!
//! It lives in the server crate because a check is a token-backed account call: it goes through the same
//! `resolve` / `call_account` path as the API (fresh credentials, one refresh on an expired token,
//! `reauthRequired` and its webhook on a revoked one), which is the server's. Checks back off (5 s, doubling,
//! capped at 10 min) and stop after three days, marking the transfer given up. Several instances may share a
//! database: a check is claimed under a lease and written back fenced on the row's check count, so two
//! instances never check one transfer at once and a late write-back of a stalled instance is refused. The new
//! status and its outbox event are written in one transaction, so each change is announced exactly once.

use std::sync::Arc;
use std::time::Duration;

use linkvault_domain::{Clock, Operation, Scope, TokenMode};
use linkvault_integrations::api::TransferStatus;
use linkvault_integrations::networks;
use linkvault_storage::{OutboxEvent, SentTransfer, TransferCheck, TransferExecutionRecord, TransferProgress};
use linkvault_vault::Caller;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use uuid::Uuid;

use crate::AppState;
use crate::routes::token_use::{AccountFailure, call_account, use_connection};
use linkvault_vault::UseRefusal;

/// The outbox event type of a transfer's status change (the only type Mesh-format endpoints receive).
pub const TRANSFER_STATUS_EVENT: &str = "transfer.statusChanged";

/// Mesh's status word for a provider's transfer status.
pub fn progress(status: TransferStatus) -> TransferProgress {
    match status {
        TransferStatus::Pending => TransferProgress::Pending,
        TransferStatus::Succeeded => TransferProgress::Succeeded,
        TransferStatus::Failed => TransferProgress::Failed,
    }
}

#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// Transfers claimed per pass.
    pub batch_size: u32,
    /// Pause between passes that found nothing due.
    pub idle_poll: Duration,
    /// Delay after the first check; doubles with each check.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// How long after it was made a transfer is followed; then it is marked given up.
    pub give_up_after: Duration,
}

impl Default for FollowerConfig {
    fn default() -> Self {
        Self {
            batch_size: 50,
            idle_poll: Duration::from_secs(1),
            first_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(600),
            give_up_after: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

impl FollowerConfig {
    /// The wait after the `checks`-th check (0-based): `first_delay` doubled each time, capped.
    pub fn delay_after(&self, checks: u32) -> Duration {
        let factor = 2u32.saturating_pow(checks.min(30));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Why a check learned nothing.
enum Unknown {
    /// The connection is gone (deleted): the transfer can no longer be followed.
    Gone,
    /// For now (provider unavailable, re-authentication needed): try again later.
    Later(String),
}

#[derive(Debug, Clone)]
pub struct TransferFollower {
    state: AppState,
    clock: Arc<dyn Clock>,
    config: FollowerConfig,
}

fn span(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The fee a stored execute answer states, in the transferred symbol (0 when in another currency or absent).
pub(crate) fn fee_in_symbol(result: Option<&str>, symbol: &str) -> f64 {
    let Some(value) = result.and_then(|r| serde_json::from_str::<Value>(r).ok()) else { return 0.0 };
    let fee = &value["executeTransferResult"]["institutionTransferFee"];
    match fee["feeCurrency"].as_str() {
        Some(currency) if currency.eq_ignore_ascii_case(symbol) => fee["fee"].as_f64().unwrap_or_default(),
        _ => 0.0,
    }
}

impl TransferFollower {
    pub fn new(state: AppState, config: FollowerConfig) -> Self {
        let clock = Arc::clone(state.vault.clock());
        Self { state, clock, config }
    }

    /// How long a claimed batch is leased: every check of it at the upstream worst case, plus room.
    fn lease(&self) -> time::Duration {
        let worst = self.state.exchange.limits().worst_case();
        span(worst.saturating_mul(self.config.batch_size.max(1)) + Duration::from_secs(30))
    }

    /// Follows until `shutdown` turns true.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        linkvault_webhooks::run_passes("transfer follower", self.config.idle_poll, shutdown, || self.run_once()).await;
    }

    /// One pass: claims the transfers due and checks each once. Returns how many were checked.
    pub async fn run_once(&self) -> Result<usize, linkvault_vault::VaultError> {
        let due = self.state.vault.claim_transfer_checks(self.lease(), self.config.batch_size).await?;
        let n = due.len();
        for row in due {
            self.check(row).await;
        }
        Ok(n)
    }

    async fn check(&self, row: TransferExecutionRecord) {
        let current = row.follow.status.unwrap_or(TransferProgress::Pending);
        let Some(sent) = row.sent.clone() else {
            // A row from before migration 0007 never becomes due; nothing to say about one that did.
            self.write(&row, current, None, None, Some(self.clock.now()), None).await;
            return;
        };
        // A transfer the send already reported final only needs its announcement.
        let polled = if current.is_final() { Ok((current, None)) } else { self.poll(&row, &sent).await };
        self.state.metrics.transfer_checked();
        let now = self.clock.now();
        let (status, hash, gone) = match polled {
            Ok((status, hash)) => (status, hash, false),
            Err(Unknown::Gone) => (current, None, true),
            Err(Unknown::Later(reason)) => {
                tracing::info!(transfer = %row.preview_id, reason, "transfer status unknown for now; checking again later");
                (current, None, false)
            }
        };
        let given_up = !status.is_final() && (gone || now - row.created_at >= span(self.config.give_up_after));
        let next = (!status.is_final() && !given_up).then(|| now + span(self.config.delay_after(row.follow.checks)));
        let event = (row.follow.announced_status != Some(status))
            .then(|| self.event(&row, &sent, status, hash.as_deref().or(row.follow.hash.as_deref()), now));
        self.write(&row, status, hash, next, given_up.then_some(now), event).await;
    }

    async fn write(
        &self,
        row: &TransferExecutionRecord,
        status: TransferProgress,
        hash: Option<String>,
        next_check_at: Option<OffsetDateTime>,
        gave_up_at: Option<OffsetDateTime>,
        event: Option<OutboxEvent>,
    ) {
        let announced = event.is_some();
        let check = TransferCheck {
            preview_id: row.preview_id,
            checks: row.follow.checks,
            status,
            hash,
            next_check_at,
            gave_up_at,
            event,
            at: self.clock.now(),
        };
        match self.state.vault.record_transfer_check(&check).await {
            Ok(true) => {
                if announced {
                    self.state.metrics.transfer_status_changed();
                }
                if gave_up_at.is_some() {
                    self.state.metrics.transfer_given_up();
                    tracing::warn!(transfer = %row.preview_id, "stopped following a transfer that is not final");
                }
            }
            // Another instance recorded a check after this one's lease ran out; its answer stands.
            Ok(false) => tracing::info!(transfer = %row.preview_id, "transfer check superseded"),
            // The lease ends and the transfer is checked again: at-least-once checks, each change announced once.
            Err(e) => tracing::warn!(error = %e, transfer = %row.preview_id, "cannot record a transfer check"),
        }
    }

    /// Asks the provider, through the connection's credentials, where the transfer stands.
    async fn poll(
        &self,
        row: &TransferExecutionRecord,
        sent: &SentTransfer,
    ) -> Result<(TransferProgress, Option<String>), Unknown> {
        let Some(transfer_id) = row.transfer_id.as_deref() else { return Err(Unknown::Gone) };
        // The connection's own client, reading: the same checks as a client's read call with the tokenId.
        let caller = Caller {
            client_id: row.client_id,
            scope: Scope::Read,
            token_mode: TokenMode::Managed,
            key_id: Uuid::nil(),
            api_rate_limit: None,
        };
        let token = row.token_id.to_string();
        let used = use_connection(&self.state, &caller, &token, &sent.integration, None, Operation::Read).await;
        let mut resolved = match used {
            Ok(resolved) => resolved,
            Err(UseRefusal::ReauthRequired { .. }) => return Err(Unknown::Later("re-authentication required".into())),
            Err(UseRefusal::TokenNotFound) => return Err(Unknown::Gone),
            Err(refusal) => return Err(Unknown::Later(crate::api_result::ApiError::from(refusal).message)),
        };
        match call_account(&self.state, &mut resolved, transfer_id, |api, call, id| api.transfer(call, id)).await {
            Ok(transfer) => Ok((progress(transfer.status), transfer.hash)),
            Err(AccountFailure::Reauth) => Err(Unknown::Later("re-authentication required".into())),
            Err(AccountFailure::Upstream(e)) => Err(Unknown::Later(e.to_string())),
            Err(AccountFailure::Local(e)) => Err(Unknown::Later(e.message)),
        }
    }

    /// The webhook announcing `status` (Standard Webhooks JSON; the Mesh format is built from it at delivery).
    fn event(
        &self,
        row: &TransferExecutionRecord,
        sent: &SentTransfer,
        status: TransferProgress,
        hash: Option<&str>,
        at: OffsetDateTime,
    ) -> OutboxEvent {
        let integration_name = self.state.catalog.get(&sent.integration).map(|i| i.name.clone());
        transfer_status_event(row, sent, status, hash, at, integration_name)
    }
}

/// The `transfer.statusChanged` outbox event for one status of a sent transfer (`integration_name` from the
/// catalog). What `docs/api.md` documents; `tests/documented_webhooks.rs` holds the two together.
pub fn transfer_status_event(
    row: &TransferExecutionRecord,
    sent: &SentTransfer,
    status: TransferProgress,
    hash: Option<&str>,
    at: OffsetDateTime,
    integration_name: Option<String>,
) -> OutboxEvent {
    let id = Uuid::new_v4();
    let fee = fee_in_symbol(row.result.as_deref(), &sent.symbol);
    let payload = json!({
        "id": id,
        "type": TRANSFER_STATUS_EVENT,
        "occurredAt": at.format(&Rfc3339).unwrap_or_default(),
        "data": {
            "id": row.preview_id,
            "institutionTransactionId": row.transfer_id,
            "tokenId": row.token_id.to_string(),
            "userId": sent.user_id,
            "integration": sent.integration,
            "integrationName": integration_name,
            "transactionId": row.client_transaction_id,
            "status": status.as_str(),
            "hash": hash,
            "symbol": sent.symbol,
            "amount": sent.amount,
            "sourceAmount": sent.amount + fee,
            "amountInFiat": sent.amount_in_fiat,
            "networkId": sent.network_id,
            "networkName": networks::by_id(sent.network_id).map(|n| n.name),
            "toAddress": sent.to_address,
            "timestampMs": millis(row.created_at),
        },
    });
    OutboxEvent {
        id,
        client_id: row.client_id,
        event_type: TRANSFER_STATUS_EVENT.to_owned(),
        payload: payload.to_string(),
        created_at: at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_back_off_from_five_seconds_doubling_to_a_cap() {
        let config = FollowerConfig::default();
        let delays: Vec<u64> = (0..10).map(|n| config.delay_after(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(config.delay_after(u32::MAX), config.max_delay);
    }

    /// Finding 14.5b: `transfer.statusChanged` reaches a client-mode client without the tokenId (the worker
    /// delivers `payload_for`'s body), named by the connection's `meshAccountId` instead.
    #[test]
    fn a_client_mode_client_receives_transfer_events_without_the_token_id() {
        let now = OffsetDateTime::now_utc();
        let token_id = linkvault_domain::TokenId::new_random();
        let sent = SentTransfer {
            user_id: "alice".into(),
            integration: "coinbase".into(),
            symbol: "USDC".into(),
            amount: 5.0,
            amount_in_fiat: 5.0,
            network_id: Uuid::nil(),
            to_address: "0xabc".into(),
        };
        let row = TransferExecutionRecord {
            preview_id: Uuid::new_v4(),
            client_id: linkvault_domain::ClientId::new_random(),
            token_id,
            client_transaction_id: None,
            idempotency_key: None,
            fingerprint: String::new(),
            state: linkvault_storage::ExecutionState::Succeeded,
            attempt: 1,
            lease_until: now,
            result: None,
            transfer_id: Some("t-1".into()),
            created_at: now,
            updated_at: now,
            sent: Some(sent.clone()),
            follow: linkvault_storage::TransferFollow::default(),
        };
        let event = transfer_status_event(&row, &sent, TransferProgress::Pending, None, now, None);
        assert!(event.payload.contains(&token_id.to_string()), "stored with the tokenId, for managed clients");
        let body = linkvault_vault::events::payload_for(TokenMode::Client, &event.payload).unwrap_or_default();
        assert!(!body.contains(&token_id.to_string()), "{body}");
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(parsed["data"]["meshAccountId"], linkvault_vault::events::mesh_account_id(token_id).to_string());
        assert_eq!(parsed["data"]["id"], row.preview_id.to_string());
    }

    #[test]
    fn the_fee_counts_only_in_the_transferred_symbol() {
        let result = r#"{"executeTransferResult":{"institutionTransferFee":{"fee":0.5,"feeCurrency":"USDC"}}}"#;
        assert_eq!(fee_in_symbol(Some(result), "usdc"), 0.5);
        assert_eq!(fee_in_symbol(Some(result), "ETH"), 0.0);
        assert_eq!(fee_in_symbol(None, "ETH"), 0.0);
    }
}
