//! The tamper-evident audit log: every sensitive action appends a record (who, what, to which ids; never a
//! secret), chained by `mac_n = HMAC(audit key, mac_{n-1} ‖ seq ‖ canonical record)` (`AuditChain`), and the
//! walk that verifies the chain and names the first record that was modified, removed or put out of order.
//!
//! When a record is written: by default after the action succeeded, and a failed append is logged (without
//! secrets) and counted ([`Vault::audit_append_failures`]) but does not undo the action. With fail-closed
//! ([`Vault::with_audit_fail_closed`]) the record is appended *before* the action takes effect and the action
//! is refused ([`VaultError::AuditUnavailable`]) when it cannot be written. The exception is a refresh: its
//! grant has already been spent upstream when it is written back, so refusing the write-back would lose the
//! connection; it is recorded after the write-back in both modes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use linkvault_crypto::{AUDIT_GENESIS, AuditChain};
use linkvault_domain::{AuditAction, AuditActor, ClientId, TokenId};
use linkvault_storage::{AuditEntry, AuditRecord};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Vault, VaultError};

/// Records read per query by `verify` and `export` (memory stays bounded whatever the log's length).
pub const AUDIT_BATCH: u32 = 1000;
/// How far ahead of a record that fails `verify` looks for the record that belongs in its place.
const REORDER_WINDOW: usize = 64;
/// Longest `detail` kept (they are short facts, never free text from outside).
const MAX_DETAIL_CHARS: usize = 200;

/// The vault's audit state: the chain key, the mode, and the failure count.
pub(crate) struct Audit {
    chain: Arc<AuditChain>,
    fail_closed: bool,
    failures: AtomicU64,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("fail_closed", &self.fail_closed).finish_non_exhaustive()
    }
}

impl Audit {
    pub(crate) fn new(chain: AuditChain) -> Self {
        Self { chain: Arc::new(chain), fail_closed: false, failures: AtomicU64::new(0) }
    }
}

/// One record about to be written.
#[derive(Debug, Clone)]
pub struct AuditNote {
    actor: AuditActor,
    action: AuditAction,
    client_id: Option<ClientId>,
    token_id: Option<TokenId>,
    subject_id: Option<Uuid>,
    detail: Option<String>,
}

impl AuditNote {
    pub fn new(actor: AuditActor, action: AuditAction) -> Self {
        Self { actor, action, client_id: None, token_id: None, subject_id: None, detail: None }
    }
    pub fn client(mut self, id: ClientId) -> Self {
        self.client_id = Some(id);
        self
    }
    pub fn token(mut self, id: TokenId) -> Self {
        self.token_id = Some(id);
        self
    }
    pub fn subject(mut self, id: Uuid) -> Self {
        self.subject_id = Some(id);
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into().chars().filter(|c| !c.is_control()).take(MAX_DETAIL_CHARS).collect());
        self
    }
    pub fn action(&self) -> AuditAction {
        self.action
    }

    fn entry(&self, at: OffsetDateTime) -> AuditEntry {
        AuditEntry {
            at,
            actor: self.actor.to_text(),
            action: self.action.as_str().to_owned(),
            client_id: self.client_id.map(|id| id.to_string()),
            token_id: self.token_id.map(|id| id.to_string()),
            subject_id: self.subject_id.map(|id| id.hyphenated().to_string()),
            detail: self.detail.clone(),
        }
    }
}

/// The bytes of a record the chain MAC covers: a format byte, the time in Unix milliseconds, then each text
/// field as a presence byte, a big-endian `u32` length and its UTF-8 bytes. Unambiguous, so no two records
/// encode alike.
pub fn canonical(entry: &AuditEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.push(1);
    let millis = entry.at.unix_timestamp_nanos() / 1_000_000;
    out.extend_from_slice(&i64::try_from(millis).unwrap_or(i64::MAX).to_be_bytes());
    let mut text = |t: Option<&str>| match t {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&u32::try_from(t.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(t.as_bytes());
        }
    };
    text(Some(&entry.actor));
    text(Some(&entry.action));
    text(entry.client_id.as_deref());
    text(entry.token_id.as_deref());
    text(entry.subject_id.as_deref());
    text(entry.detail.as_deref());
    out
}

/// What `verify` found wrong first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditTamper {
    /// The record at this position does not match its MAC: its content (or MAC) was edited.
    Modified,
    /// The record at this position is missing: deleted from the middle, or cut off the end (the head
    /// says there were more).
    Removed,
    /// The record that belongs at this position was found at position `found_at`: records were swapped
    /// or moved.
    OutOfOrder { found_at: u64 },
}

/// The outcome of [`Vault::verify_audit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditVerdict {
    /// Records verified (before the first problem, if any).
    pub verified: u64,
    /// The head's position as stored.
    pub head_seq: u64,
    /// The first problem: its position and kind.
    pub problem: Option<(u64, AuditTamper)>,
}

/// Where `audit export` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditSince {
    /// Records from this position on.
    Seq(u64),
    /// Records written at or after this time.
    Time(OffsetDateTime),
}

impl Vault {
    /// With `true`, sensitive actions are refused when their audit record cannot be written first.
    pub fn with_audit_fail_closed(mut self, fail_closed: bool) -> Self {
        self.audit.fail_closed = fail_closed;
        self
    }

    pub fn audit_fail_closed(&self) -> bool {
        self.audit.fail_closed
    }

    /// Audit records that could not be written (default mode: the action went ahead) since start.
    pub fn audit_append_failures(&self) -> u64 {
        self.audit.failures.load(Ordering::Relaxed)
    }

    /// Appends one record now, whatever the mode; its position.
    pub(crate) async fn append_audit(&self, note: &AuditNote) -> Result<u64, VaultError> {
        let entry = note.entry(self.clock.now());
        let record = canonical(&entry);
        let chain = Arc::clone(&self.audit.chain);
        let seal = Box::new(move |seq: u64, prev: &[u8]| {
            let prev = if seq == 1 { &AUDIT_GENESIS[..] } else { prev };
            let mac = chain.link(prev, seq, &record);
            (mac.to_vec(), chain.head_tag(seq, &mac).to_vec())
        });
        Ok(self.store.append_audit(&entry, seal).await?)
    }

    /// Fail-closed: writes the record before the action, and refuses the action when it cannot. Otherwise
    /// does nothing (the record follows with [`audit_after`](Self::audit_after)).
    pub(crate) async fn audit_before(&self, note: &AuditNote) -> Result<(), VaultError> {
        if !self.audit.fail_closed {
            return Ok(());
        }
        match self.append_audit(note).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(action = %note.action, error = %e, "audit record not written; action refused (fail-closed)");
                Err(VaultError::AuditUnavailable)
            }
        }
    }

    /// Default mode: writes the record after the action succeeded; a failure is logged and counted, never
    /// returned. Fail-closed: nothing (the record was written by [`audit_before`](Self::audit_before)).
    pub(crate) async fn audit_after(&self, note: &AuditNote) {
        if !self.audit.fail_closed {
            self.audit_always_after(note).await;
        }
    }

    /// Writes the record after an action that cannot be refused (a refresh write-back), in either mode.
    pub(crate) async fn audit_always_after(&self, note: &AuditNote) {
        if let Err(e) = self.append_audit(note).await {
            self.audit.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(action = %note.action, error = %e, "audit record not written");
        }
    }

    /// Walks the whole log in batches, recomputing the chain, and checks the head: how many records verify
    /// and the first that does not.
    pub async fn verify_audit(&self) -> Result<AuditVerdict, VaultError> {
        let head = self.store.audit_head().await?;
        let chain = &self.audit.chain;
        let mut window: VecDeque<AuditRecord> = VecDeque::new();
        let mut last_read = 0u64;
        let mut exhausted = false;
        let mut next = 1u64;
        let mut prev: Vec<u8> = AUDIT_GENESIS.to_vec();
        let verdict = |verified: u64, problem| AuditVerdict { verified, head_seq: head.seq, problem };
        loop {
            if !exhausted && window.len() <= REORDER_WINDOW {
                let batch = self.store.audit_records(last_read, None, AUDIT_BATCH).await?;
                exhausted = batch.len() < AUDIT_BATCH as usize;
                last_read = batch.last().map_or(last_read, |r| r.seq);
                window.extend(batch);
            }
            let Some(record) = window.pop_front() else { break };
            if record.seq != next {
                return Ok(verdict(next - 1, Some((next, AuditTamper::Removed))));
            }
            let links =
                |entry: &AuditEntry, mac: &[u8]| AuditChain::matches(mac, &chain.link(&prev, next, &canonical(entry)));
            if !links(&record.entry, &record.mac) {
                // The record that belongs here, moved whole or with its content only, verifies in this place.
                let found = window
                    .iter()
                    .take(REORDER_WINDOW)
                    .find(|r| links(&r.entry, &r.mac) || links(&r.entry, &record.mac));
                let tamper = match found {
                    Some(r) => AuditTamper::OutOfOrder { found_at: r.seq },
                    None => AuditTamper::Modified,
                };
                return Ok(verdict(next - 1, Some((next, tamper))));
            }
            prev = record.mac;
            next += 1;
        }
        let count = next - 1;
        if head.seq > count {
            return Ok(verdict(count, Some((count + 1, AuditTamper::Removed))));
        }
        if head.seq < count {
            // A record past the head: written around the chain.
            return Ok(verdict(head.seq, Some((head.seq + 1, AuditTamper::Modified))));
        }
        if count > 0 {
            let tag_ok = head.tag.as_deref().is_some_and(|t| AuditChain::matches(t, &chain.head_tag(count, &prev)));
            if !tag_ok || head.mac != prev {
                // The head was rewritten to an earlier record: what followed it was cut off.
                return Ok(verdict(count, Some((count + 1, AuditTamper::Removed))));
            }
        }
        Ok(verdict(count, None))
    }

    /// Hands every record from `since` on to `emit`, in order, a batch at a time.
    pub async fn export_audit<E: From<VaultError>>(
        &self,
        since: Option<AuditSince>,
        mut emit: impl FnMut(&AuditRecord) -> Result<(), E>,
    ) -> Result<u64, E> {
        let (mut after, at) = match since {
            None => (0, None),
            Some(AuditSince::Seq(seq)) => (seq.saturating_sub(1), None),
            Some(AuditSince::Time(t)) => (0, Some(t)),
        };
        let mut emitted = 0u64;
        loop {
            let batch = self.store.audit_records(after, at, AUDIT_BATCH).await.map_err(VaultError::from)?;
            for record in &batch {
                emit(record)?;
                emitted += 1;
            }
            match batch.last() {
                Some(last) if batch.len() == AUDIT_BATCH as usize => after = last.seq,
                _ => return Ok(emitted),
            }
        }
    }

    // --- actions recorded by callers outside the vault's own services ---------------------------------

    /// Records that the refresh engine wrote refreshed credentials back (after the write, in either mode:
    /// the grant was already spent).
    pub async fn audit_refreshed(&self, client_id: ClientId, token_id: TokenId) {
        let note = AuditNote::new(AuditActor::RefreshEngine, AuditAction::ConnectionRefreshed)
            .client(client_id)
            .token(token_id);
        self.audit_always_after(&note).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str, client: Option<&str>) -> AuditEntry {
        AuditEntry {
            at: OffsetDateTime::UNIX_EPOCH,
            actor: actor.to_owned(),
            action: "client.created".to_owned(),
            client_id: client.map(str::to_owned),
            token_id: None,
            subject_id: None,
            detail: None,
        }
    }

    #[test]
    fn canonical_encoding_tells_fields_apart() {
        // The same characters split differently between fields, or a missing field against an empty one.
        assert_ne!(canonical(&entry("ab", Some("c"))), canonical(&entry("a", Some("bc"))));
        assert_ne!(canonical(&entry("a", None)), canonical(&entry("a", Some(""))));
        assert_eq!(canonical(&entry("a", None)), canonical(&entry("a", None)));
    }
}
