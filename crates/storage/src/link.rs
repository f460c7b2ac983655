//! Storage of Link sessions (the hosted Link page): link tokens and the browser sessions they start, OAuth
//! sign-ins pending inside a session, and the origins allowed to embed a client's Link pages.
//!
//! Only digests of the auth_code, the session token and the OAuth `state` are stored. Single use of a link
//! token is a conditional `UPDATE … WHERE used_at IS NULL`, so it holds across instances sharing a database.

use std::fmt;

use async_trait::async_trait;
use linkvault_domain::{ClientId, Scope, TokenId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::sql::Mode::{Read, Write};
use crate::sql::{Columns, Driver, Session, Stmt, columns, record, run, sql, vals};
use crate::{Result, short_error};

record! {
    /// A link token and, once started, its browser session.
    #[derive(Clone, PartialEq, Eq)]
    pub struct LinkSessionRecord {
        pub id: Uuid,
        /// SHA-256 of the auth_code carried in the link token's URL.
        pub code_digest: Vec<u8>,
        pub client_id: ClientId,
        pub user_id: String,
        /// The scope of the API key that created the link token.
        pub scope: Scope,
        pub integration_id: Option<Uuid>,
        pub restrict_multiple_accounts: bool,
        /// `transferOptions` as sent, JSON text.
        pub transfer_options: Option<String>,
        pub created_at: OffsetDateTime,
        /// The link token must be started before this.
        pub expires_at: OffsetDateTime,
        pub used_at: Option<OffsetDateTime>,
        pub session_expires_at: Option<OffsetDateTime>,
        /// The integration type this session connected first (migration 0008); `None` until a sign-in succeeds.
        pub connected_integration: Option<String>,
    }
}

impl fmt::Debug for LinkSessionRecord {
    // Digests are not secrets, but they are noise in logs; the user id is the client's pseudonymous id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSessionRecord")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("integration_id", &self.integration_id)
            .field("restrict_multiple_accounts", &self.restrict_multiple_accounts)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .field("connected_integration", &self.connected_integration)
            .finish_non_exhaustive()
    }
}

/// What starting a session from an auth_code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStart {
    /// The link token was unused and unexpired; it is now used and bound to the session digest.
    Started(Box<LinkSessionRecord>),
    /// Already used (by this or another instance).
    Used,
    /// Past its expiry.
    Expired,
    /// No such auth_code.
    Unknown,
}

record! {
    /// An OAuth sign-in started from a Link session, waiting for the integration's callback.
    #[derive(Clone, PartialEq, Eq)]
    pub struct LinkOAuthRecord {
        /// SHA-256 of the `state` sent to the integration.
        pub state_digest: Vec<u8>,
        pub session_id: Uuid,
        pub integration: String,
        /// The PKCE verifier (needed for the code exchange; cleared when the callback claims the row).
        pub pkce_verifier: String,
        pub created_at: OffsetDateTime,
        pub expires_at: OffsetDateTime,
        /// SHA-256 of the one-time nonce of the `/link/oauth/begin` URL (migration 0009); cleared when used.
        pub begin_digest: Option<Vec<u8>>,
        /// The integration's authorize URL the begin step redirects to; cleared when the begin step runs.
        pub authorize_url: Option<String>,
        /// SHA-256 of the binding cookie the begin step set in the starting browser; `None` until then.
        pub binding_digest: Option<Vec<u8>>,
    }
}

impl fmt::Debug for LinkOAuthRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkOAuthRecord")
            .field("session_id", &self.session_id)
            .field("integration", &self.integration)
            .field("pkce_verifier", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("bound", &self.binding_digest.is_some())
            .finish_non_exhaustive()
    }
}

record! {
    /// The result of a completed OAuth sign-in, collected once by the Link page.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LinkOAuthOutcome {
        pub integration: String,
        pub token_id: Option<TokenId>,
        /// A short, user-presentable reason when the sign-in failed.
        pub error: Option<String>,
    }
}

/// Everything the Link feature persists. Implemented by both backends; every method is atomic on its own.
#[async_trait]
pub trait LinkStore: Send + Sync {
    async fn insert_link_session(&self, record: &LinkSessionRecord) -> Result<()>;
    /// The link token by its auth_code digest, whatever its state (for choosing the page's headers).
    async fn find_link_by_code(&self, code_digest: &[u8]) -> Result<Option<LinkSessionRecord>>;
    /// Marks the link token used and binds the session digest, if it is unused and `now < expires_at`.
    async fn start_link_session(
        &self,
        code_digest: &[u8],
        session_digest: &[u8],
        now: OffsetDateTime,
        session_expires_at: OffsetDateTime,
    ) -> Result<LinkStart>;
    /// A started session by the digest of its bearer token, unless it has expired.
    async fn find_link_session(&self, session_digest: &[u8], now: OffsetDateTime) -> Result<Option<LinkSessionRecord>>;

    /// A link session by id (the OAuth callback finds its session through the pending sign-in).
    async fn get_link_session(&self, id: Uuid) -> Result<Option<LinkSessionRecord>>;

    /// Records that the session connected `integration`, unless it already connected another one: `true`
    /// when the session's connected integration is now `integration` (set now or before), `false` when it
    /// is a different one. One conditional statement, so concurrent sign-ins cannot both win.
    async fn claim_link_connection(&self, id: Uuid, integration: &str) -> Result<bool>;

    /// Records a pending OAuth sign-in and keeps at most `max_pending` unexpired, unclaimed ones for its
    /// session: the oldest beyond that are deleted in the same transaction, which holds the session's row
    /// lock (PostgreSQL) or the single writer (SQLite), so concurrent starts cannot exceed the cap. Returns
    /// how many older sign-ins were dropped.
    async fn insert_link_oauth(&self, record: &LinkOAuthRecord, max_pending: u32) -> Result<u64>;
    /// How many OAuth sign-ins of the session are pending (unclaimed and unexpired at `now`).
    async fn count_pending_link_oauth(&self, session_id: Uuid, now: OffsetDateTime) -> Result<u64>;
    /// The begin step of a pending OAuth sign-in, once only: the row whose `begin_digest` this is, started
    /// after `started_after`, unexpired, not yet bound or claimed, gets `binding_digest`; its begin nonce and
    /// authorize URL are cleared in the same step and the authorize URL is returned.
    async fn bind_link_oauth(
        &self,
        begin_digest: &[u8],
        binding_digest: &[u8],
        started_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<String>>;
    /// Claims a pending OAuth sign-in for its callback: once only, before it expires. Returns the row with
    /// its verifier; the stored verifier is cleared in the same statement.
    async fn claim_link_oauth(&self, state_digest: &[u8], now: OffsetDateTime) -> Result<Option<LinkOAuthRecord>>;
    /// Records the callback's result on a claimed row.
    async fn complete_link_oauth(
        &self,
        state_digest: &[u8],
        token_id: Option<TokenId>,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool>;
    /// Takes (deletes and returns) the oldest completed OAuth result of a session.
    async fn take_link_oauth_outcome(&self, session_id: Uuid) -> Result<Option<LinkOAuthOutcome>>;

    /// Allows `origin` (`scheme://host[:port]`) to embed the client's Link pages. `false` if already allowed.
    async fn add_link_origin(&self, client_id: ClientId, origin: &str, now: OffsetDateTime) -> Result<bool>;
    async fn remove_link_origin(&self, client_id: ClientId, origin: &str) -> Result<bool>;
    /// The client's allowed origins, sorted.
    async fn link_origins(&self, client_id: ClientId) -> Result<Vec<String>>;

    /// Deletes link sessions (and their OAuth rows) that expired before `before`, and OAuth rows of live
    /// sessions that expired before `before`. Returns the number of sessions deleted.
    async fn purge_link_sessions(&self, before: OffsetDateTime) -> Result<u64>;
}

static BY_CODE: Stmt =
    Stmt::new("SELECT {*} FROM link_sessions WHERE code_digest = ?1", Some(columns::<LinkSessionRecord>));

#[async_trait]
impl<D: Driver> LinkStore for D {
    async fn insert_link_session(&self, r: &LinkSessionRecord) -> Result<()> {
        self.exec(sql!(LinkSessionRecord: "INSERT INTO link_sessions ({*}) VALUES ({?*})"), r.values()).await.map(drop)
    }

    async fn find_link_by_code(&self, code_digest: &[u8]) -> Result<Option<LinkSessionRecord>> {
        self.opt(Read, &BY_CODE, vals![code_digest]).await
    }

    async fn start_link_session(
        &self,
        code_digest: &[u8],
        session_digest: &[u8],
        now: OffsetDateTime,
        session_expires_at: OffsetDateTime,
    ) -> Result<LinkStart> {
        let params = vals![code_digest, now, session_digest, session_expires_at];
        run!(self, Write, |s| {
            let start = sql!(LinkSessionRecord:
                "UPDATE link_sessions SET used_at = ?2, session_digest = ?3, session_expires_at = ?4
                 WHERE code_digest = ?1 AND used_at IS NULL AND expires_at > ?2 RETURNING {*}");
            if let Some(started) = s.opt(start, &params).await? {
                return Ok(LinkStart::Started(Box::new(started)));
            }
            Ok(match s.opt::<LinkSessionRecord>(&BY_CODE, &params[..1]).await? {
                None => LinkStart::Unknown,
                Some(r) if r.used_at.is_some() => LinkStart::Used,
                Some(_) => LinkStart::Expired,
            })
        })
    }

    async fn find_link_session(&self, session_digest: &[u8], now: OffsetDateTime) -> Result<Option<LinkSessionRecord>> {
        let stmt = sql!(LinkSessionRecord:
            "SELECT {*} FROM link_sessions WHERE session_digest = ?1 AND session_expires_at > ?2");
        self.opt(Read, stmt, vals![session_digest, now]).await
    }

    async fn get_link_session(&self, id: Uuid) -> Result<Option<LinkSessionRecord>> {
        self.opt(Read, sql!(LinkSessionRecord: "SELECT {*} FROM link_sessions WHERE id = ?1"), vals![id]).await
    }

    async fn claim_link_connection(&self, id: Uuid, integration: &str) -> Result<bool> {
        let stmt = sql!(
            "UPDATE link_sessions SET connected_integration = ?2
                         WHERE id = ?1 AND (connected_integration IS NULL OR connected_integration = ?2)"
        );
        self.changed(stmt, vals![id, integration]).await
    }

    async fn insert_link_oauth(&self, r: &LinkOAuthRecord, max_pending: u32) -> Result<u64> {
        let params = r.values();
        let trim = vals![r.session_id, r.created_at, max_pending.saturating_sub(1)];
        run!(self, Transaction, |s| {
            // PostgreSQL: starts of one session queue on its row; each statement below then sees the rows
            // committed before. SQLite: the single writer does the same.
            s.opt::<Uuid>(sql!("SELECT id FROM link_sessions WHERE id = ?1{pg: FOR UPDATE}"), &trim[..1]).await?;
            let drop_oldest = sql!(
                "DELETE FROM link_oauth WHERE session_id = ?1 AND claimed_at IS NULL AND expires_at > ?2
                                      AND state_digest NOT IN (SELECT state_digest FROM link_oauth
                                          WHERE session_id = ?1 AND claimed_at IS NULL AND expires_at > ?2
                                          ORDER BY created_at DESC, state_digest DESC LIMIT ?3)"
            );
            let dropped = s.execute(drop_oldest, &trim).await?;
            s.execute(sql!(LinkOAuthRecord: "INSERT INTO link_oauth ({*}) VALUES ({?*})"), &params).await?;
            Ok(dropped)
        })
    }

    async fn count_pending_link_oauth(&self, session_id: Uuid, now: OffsetDateTime) -> Result<u64> {
        let stmt =
            sql!("SELECT COUNT(*) FROM link_oauth WHERE session_id = ?1 AND claimed_at IS NULL AND expires_at > ?2");
        self.one(stmt, vals![session_id, now]).await
    }

    async fn bind_link_oauth(
        &self,
        begin_digest: &[u8],
        binding_digest: &[u8],
        started_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<String>> {
        let (find, bind) = (vals![begin_digest, started_after, now], vals![begin_digest, binding_digest]);
        run!(self, Transaction, |s| {
            // The row is locked (PostgreSQL) or the writer is single (SQLite): the read and the conditional
            // update below are one step.
            let pending = sql!("SELECT authorize_url FROM link_oauth
                                WHERE begin_digest = ?1 AND binding_digest IS NULL AND claimed_at IS NULL
                                  AND authorize_url IS NOT NULL AND created_at > ?2 AND expires_at > ?3{pg: FOR UPDATE}");
            let Some(url) = s.opt::<String>(pending, &find).await? else { return Ok(None) };
            let stmt = sql!(
                "UPDATE link_oauth SET begin_digest = NULL, authorize_url = NULL, binding_digest = ?2
                             WHERE begin_digest = ?1 AND binding_digest IS NULL"
            );
            Ok((s.execute(stmt, &bind).await? == 1).then_some(url))
        })
    }

    async fn claim_link_oauth(&self, state_digest: &[u8], now: OffsetDateTime) -> Result<Option<LinkOAuthRecord>> {
        let params = vals![state_digest, now];
        run!(self, Transaction, |s| {
            // As in the bind: the verifier is read and the stored copy cleared in one step.
            let pending = sql!(LinkOAuthRecord:
                "SELECT {*} FROM link_oauth WHERE state_digest = ?1 AND claimed_at IS NULL AND pkce_verifier IS NOT NULL
                   AND expires_at > ?2{pg: FOR UPDATE}");
            let Some(found) = s.opt::<LinkOAuthRecord>(pending, &params).await? else { return Ok(None) };
            let stmt = sql!(
                "UPDATE link_oauth SET claimed_at = ?2, pkce_verifier = NULL
                             WHERE state_digest = ?1 AND claimed_at IS NULL"
            );
            Ok((s.execute(stmt, &params).await? == 1).then_some(found))
        })
    }

    async fn complete_link_oauth(
        &self,
        state_digest: &[u8],
        token_id: Option<TokenId>,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let stmt = sql!(
            "UPDATE link_oauth SET completed_at = ?2, token_id = ?3, error = ?4
                         WHERE state_digest = ?1 AND claimed_at IS NOT NULL AND completed_at IS NULL"
        );
        self.changed(stmt, vals![state_digest, now, token_id, short_error(error)]).await
    }

    async fn take_link_oauth_outcome(&self, session_id: Uuid) -> Result<Option<LinkOAuthOutcome>> {
        let stmt = sql!(LinkOAuthOutcome:
            "DELETE FROM link_oauth WHERE state_digest = (
                 SELECT state_digest FROM link_oauth WHERE session_id = ?1 AND completed_at IS NOT NULL
                 ORDER BY completed_at LIMIT 1{pg: FOR UPDATE SKIP LOCKED})
             RETURNING {*}");
        self.opt(Write, stmt, vals![session_id]).await
    }

    async fn add_link_origin(&self, client_id: ClientId, origin: &str, now: OffsetDateTime) -> Result<bool> {
        let stmt = sql!(
            "INSERT INTO link_origins (client_id, origin, created_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (client_id, origin) DO NOTHING"
        );
        self.changed(stmt, vals![client_id, origin, now]).await
    }

    async fn remove_link_origin(&self, client_id: ClientId, origin: &str) -> Result<bool> {
        self.changed(sql!("DELETE FROM link_origins WHERE client_id = ?1 AND origin = ?2"), vals![client_id, origin])
            .await
    }

    async fn link_origins(&self, client_id: ClientId) -> Result<Vec<String>> {
        let stmt = sql!("SELECT origin FROM link_origins WHERE client_id = ?1 ORDER BY origin");
        self.all(Read, stmt, vals![client_id]).await
    }

    async fn purge_link_sessions(&self, before: OffsetDateTime) -> Result<u64> {
        run!(self, Transaction, |s| {
            let stmt = sql!(
                "DELETE FROM link_sessions WHERE expires_at < ?1
                             AND (session_expires_at IS NULL OR session_expires_at < ?1)"
            );
            let n = s.execute(stmt, &vals![before]).await?;
            s.execute(sql!("DELETE FROM link_oauth WHERE expires_at < ?1"), &vals![before]).await?;
            Ok(n)
        })
    }
}
