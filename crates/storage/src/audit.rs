//! Storage of the tamper-evident audit log (migration 0013): the append-only `audit_log` table and its chain
//! head (`audit_head`, one row).
//!
//! The store computes nothing cryptographic: an append hands it a `seal` that turns the position and the
//! previous MAC into this record's MAC and the new head's tag (the vault's `AuditChain`). What the store owns
//! is the order. One transaction reads the head row locked (`FOR UPDATE` on PostgreSQL, so instances sharing a
//! database queue on it; SQLite's single writer already serialises), inserts the record at `seq + 1` and
//! moves the head, so every task and instance appends to one gapless chain.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::Result;
use crate::StorageError;
use crate::sql::Mode::Read;
use crate::sql::{Columns, Driver, Session, record, run, sql, vals};

record! {
    /// One audit record's content: what was done, by whom, to what. Never a secret, a token or key material.
    /// Subject ids and the action are kept as text, so that a record edited in the database still reads
    /// (and is then reported as modified) instead of failing to decode.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AuditEntry {
        pub at: OffsetDateTime,
        /// A client id, `cli`, `refresh-engine`, `link` or `key-schedule`.
        pub actor: String,
        /// One of the domain's `AuditAction` texts.
        pub action: String,
        pub client_id: Option<String>,
        pub token_id: Option<String>,
        /// The other thing acted on: an API key id, a transfer (preview) id, a link session id.
        pub subject_id: Option<String>,
        /// Non-secret facts of the action (a new mode, a key version), short text.
        pub detail: Option<String>,
    }

    /// An audit record as stored: its position in the chain, its content and its chain MAC.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AuditRecord {
        pub seq: u64,
        pub entry: AuditEntry,
        pub mac: Vec<u8>,
    }

    /// The chain's head: the last position and MAC, and the tag that binds them (`None` before the first
    /// record).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AuditHead {
        pub seq: u64,
        pub mac: Vec<u8>,
        pub tag: Option<Vec<u8>>,
    }
}

/// Given the new record's position and the previous MAC (empty before the first record), the record's MAC and
/// the new head's tag.
pub type AuditSeal = Box<dyn FnOnce(u64, &[u8]) -> (Vec<u8>, Vec<u8>) + Send>;

/// The audit log's part of the [`Store`](crate::Store).
#[async_trait]
pub trait AuditStore {
    /// Appends `entry` after the head, in one transaction serialised with every other append (the head row's
    /// lock); returns its position.
    async fn append_audit(&self, entry: &AuditEntry, seal: AuditSeal) -> Result<u64>;
    async fn audit_head(&self) -> Result<AuditHead>;
    /// Up to `limit` records after position `after`, in order, those before `since` left out.
    async fn audit_records(&self, after: u64, since: Option<OffsetDateTime>, limit: u32) -> Result<Vec<AuditRecord>>;
}

#[async_trait]
impl<D: Driver> AuditStore for D {
    async fn append_audit(&self, entry: &AuditEntry, seal: AuditSeal) -> Result<u64> {
        let mut params = entry.values();
        run!(self, Transaction, |s| {
            let head = sql!("SELECT seq, mac FROM audit_head WHERE id = 1{pg: FOR UPDATE}");
            let (last, prev): (u64, Vec<u8>) = s.one(head, &[]).await?;
            let seq = last + 1;
            let (mac, tag) = seal(seq, &prev);
            params.extend(vals![seq, mac.clone()]);
            s.execute(sql!(AuditEntry: "INSERT INTO audit_log ({*}, seq, mac) VALUES ({?*}, {?+1}, {?+2})"), &params)
                .await?;
            let moved = s
                .execute(
                    sql!("UPDATE audit_head SET seq = ?1, mac = ?2, tag = ?3 WHERE id = 1 AND seq = ?4"),
                    &vals![seq, mac, tag, last],
                )
                .await?;
            if moved != 1 {
                return Err(StorageError::Database("the audit head moved during an append".into()));
            }
            Ok(seq)
        })
    }

    async fn audit_head(&self) -> Result<AuditHead> {
        self.one(sql!(AuditHead: "SELECT {*} FROM audit_head WHERE id = 1"), []).await
    }

    async fn audit_records(&self, after: u64, since: Option<OffsetDateTime>, limit: u32) -> Result<Vec<AuditRecord>> {
        let stmt = sql!(AuditRecord: "SELECT {*} FROM audit_log WHERE seq > ?1 AND (CAST(?2 AS BIGINT) IS NULL OR at >= ?2)
                                      ORDER BY seq LIMIT ?3");
        self.all(Read, stmt, vals![after, since, limit]).await
    }
}
