//! [`LinkStore`] on SQLite: link sessions, pending OAuth sign-ins and allowed origins (migration 0003).

use async_trait::async_trait;
use linkvault_domain::{ClientId, Scope, TokenId};
use rusqlite::{OptionalExtension, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, conv, uuid_col};
use crate::link::{LinkOAuthOutcome, LinkOAuthRecord, LinkSessionRecord, LinkStart, LinkStore};
use crate::time_conv::{from_millis, opt_from_millis, to_millis};
use crate::{Result, StorageError};

const SESSION_COLUMNS: &str = "id, code_digest, client_id, user_id, scope, integration_id, restrict_multiple_accounts,
    transfer_options, created_at, expires_at, used_at, session_expires_at, connected_integration";

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<LinkSessionRecord> {
    let integration_id: Option<String> = row.get("integration_id")?;
    Ok(LinkSessionRecord {
        id: uuid_col(row, "id")?,
        code_digest: row.get("code_digest")?,
        client_id: ClientId::from_uuid(uuid_col(row, "client_id")?),
        user_id: row.get("user_id")?,
        scope: conv(row.get::<_, String>("scope")?.parse::<Scope>())?,
        integration_id: conv(integration_id.map(|s| Uuid::parse_str(&s)).transpose())?,
        restrict_multiple_accounts: row.get::<_, i64>("restrict_multiple_accounts")? != 0,
        transfer_options: row.get("transfer_options")?,
        created_at: conv(from_millis(row.get("created_at")?))?,
        expires_at: conv(from_millis(row.get("expires_at")?))?,
        used_at: conv(opt_from_millis(row.get("used_at")?))?,
        session_expires_at: conv(opt_from_millis(row.get("session_expires_at")?))?,
        connected_integration: row.get("connected_integration")?,
    })
}

#[async_trait]
impl LinkStore for SqliteStore {
    async fn insert_link_session(&self, r: &LinkSessionRecord) -> Result<()> {
        let r = r.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO link_sessions (id, code_digest, client_id, user_id, scope, integration_id,
                 restrict_multiple_accounts, transfer_options, created_at, expires_at, used_at, session_expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL)",
            )?
            .execute(params![
                r.id.to_string(),
                r.code_digest,
                r.client_id.to_string(),
                r.user_id,
                r.scope.as_str(),
                r.integration_id.map(|u| u.to_string()),
                i64::from(r.restrict_multiple_accounts),
                r.transfer_options,
                to_millis(r.created_at),
                to_millis(r.expires_at),
            ])?;
            Ok(())
        })
        .await
    }

    async fn find_link_by_code(&self, code_digest: &[u8]) -> Result<Option<LinkSessionRecord>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM link_sessions WHERE code_digest = ?1"))?
                .query_row(params![code_digest], session_from_row)
                .optional()?)
        })
    }

    async fn start_link_session(
        &self,
        code_digest: &[u8],
        session_digest: &[u8],
        now: OffsetDateTime,
        session_expires_at: OffsetDateTime,
    ) -> Result<LinkStart> {
        let (code, session) = (code_digest.to_vec(), session_digest.to_vec());
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let changed = tx
                .prepare_cached(
                    "UPDATE link_sessions SET used_at = ?2, session_digest = ?3, session_expires_at = ?4
                     WHERE code_digest = ?1 AND used_at IS NULL AND expires_at > ?2",
                )?
                .execute(params![code, to_millis(now), session, to_millis(session_expires_at)])?;
            let row = tx
                .prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM link_sessions WHERE code_digest = ?1"))?
                .query_row(params![code], session_from_row)
                .optional()?;
            tx.commit()?;
            Ok(match row {
                None => LinkStart::Unknown,
                Some(r) if changed == 1 => LinkStart::Started(Box::new(r)),
                Some(r) if r.used_at.is_some() => LinkStart::Used,
                Some(_) => LinkStart::Expired,
            })
        })
        .await
    }

    async fn find_link_session(&self, session_digest: &[u8], now: OffsetDateTime) -> Result<Option<LinkSessionRecord>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM link_sessions WHERE session_digest = ?1 AND session_expires_at > ?2"
                ))?
                .query_row(params![session_digest, to_millis(now)], session_from_row)
                .optional()?)
        })
    }

    async fn get_link_session(&self, id: Uuid) -> Result<Option<LinkSessionRecord>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM link_sessions WHERE id = ?1"))?
                .query_row(params![id.to_string()], session_from_row)
                .optional()?)
        })
    }

    async fn claim_link_connection(&self, id: Uuid, integration: &str) -> Result<bool> {
        let (id, integration) = (id.to_string(), integration.to_owned());
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE link_sessions SET connected_integration = ?2
                     WHERE id = ?1 AND (connected_integration IS NULL OR connected_integration = ?2)",
                )?
                .execute(params![id, integration])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn insert_link_oauth(&self, r: &LinkOAuthRecord, max_pending: u32) -> Result<u64> {
        let r = r.clone();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let dropped = tx
                .prepare_cached(
                    "DELETE FROM link_oauth WHERE session_id = ?1 AND claimed_at IS NULL AND expires_at > ?2
                       AND state_digest NOT IN (SELECT state_digest FROM link_oauth
                           WHERE session_id = ?1 AND claimed_at IS NULL AND expires_at > ?2
                           ORDER BY created_at DESC, state_digest DESC LIMIT ?3)",
                )?
                .execute(params![r.session_id.to_string(), to_millis(r.created_at), max_pending.saturating_sub(1)])?;
            tx.prepare_cached(
                "INSERT INTO link_oauth (state_digest, session_id, integration, pkce_verifier, created_at, expires_at,
                                         begin_digest, authorize_url, binding_digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                r.state_digest,
                r.session_id.to_string(),
                r.integration,
                r.pkce_verifier,
                to_millis(r.created_at),
                to_millis(r.expires_at),
                r.begin_digest,
                r.authorize_url,
                r.binding_digest,
            ])?;
            tx.commit()?;
            Ok(u64::try_from(dropped).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn count_pending_link_oauth(&self, session_id: Uuid, now: OffsetDateTime) -> Result<u64> {
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM link_oauth WHERE session_id = ?1 AND claimed_at IS NULL AND expires_at > ?2",
                )?
                .query_row(params![session_id.to_string(), to_millis(now)], |row| row.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    async fn bind_link_oauth(
        &self,
        begin_digest: &[u8],
        binding_digest: &[u8],
        started_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<String>> {
        let (begin, binding) = (begin_digest.to_vec(), binding_digest.to_vec());
        self.write(move |conn| {
            // One writer connection and one transaction: the read and the conditional update are atomic.
            let tx = conn.transaction()?;
            let url = tx
                .prepare_cached(
                    "SELECT authorize_url FROM link_oauth
                     WHERE begin_digest = ?1 AND binding_digest IS NULL AND claimed_at IS NULL
                       AND authorize_url IS NOT NULL AND created_at > ?2 AND expires_at > ?3",
                )?
                .query_row(params![begin, to_millis(started_after), to_millis(now)], |row| row.get::<_, String>(0))
                .optional()?;
            let Some(url) = url else { return Ok(None) };
            let n = tx
                .prepare_cached(
                    "UPDATE link_oauth SET begin_digest = NULL, authorize_url = NULL, binding_digest = ?2
                     WHERE begin_digest = ?1 AND binding_digest IS NULL",
                )?
                .execute(params![begin, binding])?;
            tx.commit()?;
            Ok((n == 1).then_some(url))
        })
        .await
    }

    async fn claim_link_oauth(&self, state_digest: &[u8], now: OffsetDateTime) -> Result<Option<LinkOAuthRecord>> {
        let state = state_digest.to_vec();
        self.write(move |conn| {
            // One writer connection and one transaction: the read and the conditional update are atomic.
            let tx = conn.transaction()?;
            let row = tx
                .prepare_cached(
                    "SELECT session_id, integration, pkce_verifier, created_at, expires_at, begin_digest,
                            authorize_url, binding_digest FROM link_oauth
                     WHERE state_digest = ?1 AND claimed_at IS NULL AND pkce_verifier IS NOT NULL AND expires_at > ?2",
                )?
                .query_row(params![state, to_millis(now)], |row| {
                    Ok((
                        uuid_col(row, "session_id")?,
                        row.get::<_, String>("integration")?,
                        row.get::<_, String>("pkce_verifier")?,
                        row.get::<_, i64>("created_at")?,
                        row.get::<_, i64>("expires_at")?,
                        row.get::<_, Option<Vec<u8>>>("begin_digest")?,
                        row.get::<_, Option<String>>("authorize_url")?,
                        row.get::<_, Option<Vec<u8>>>("binding_digest")?,
                    ))
                })
                .optional()?;
            let Some((
                session_id,
                integration,
                pkce_verifier,
                created,
                expires,
                begin_digest,
                authorize_url,
                binding_digest,
            )) = row
            else {
                return Ok(None);
            };
            let n = tx
                .prepare_cached(
                    "UPDATE link_oauth SET claimed_at = ?2, pkce_verifier = NULL
                     WHERE state_digest = ?1 AND claimed_at IS NULL",
                )?
                .execute(params![state, to_millis(now)])?;
            tx.commit()?;
            if n != 1 {
                return Ok(None);
            }
            Ok(Some(LinkOAuthRecord {
                state_digest: state,
                session_id,
                integration,
                pkce_verifier,
                created_at: from_millis(created)?,
                expires_at: from_millis(expires)?,
                begin_digest,
                authorize_url,
                binding_digest,
            }))
        })
        .await
    }

    async fn complete_link_oauth(
        &self,
        state_digest: &[u8],
        token_id: Option<TokenId>,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let (state, error) = (state_digest.to_vec(), crate::short_error(error));
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE link_oauth SET completed_at = ?2, token_id = ?3, error = ?4
                     WHERE state_digest = ?1 AND claimed_at IS NOT NULL AND completed_at IS NULL",
                )?
                .execute(params![state, to_millis(now), token_id.map(|t| t.to_string()), error])?;
            Ok(n == 1)
        })
        .await
    }

    async fn take_link_oauth_outcome(&self, session_id: Uuid) -> Result<Option<LinkOAuthOutcome>> {
        self.write(move |conn| {
            let row = conn
                .prepare_cached(
                    "DELETE FROM link_oauth WHERE state_digest = (
                         SELECT state_digest FROM link_oauth WHERE session_id = ?1 AND completed_at IS NOT NULL
                         ORDER BY completed_at LIMIT 1)
                     RETURNING integration, token_id, error",
                )?
                .query_row(params![session_id.to_string()], |row| {
                    Ok((
                        row.get::<_, String>("integration")?,
                        row.get::<_, Option<String>>("token_id")?,
                        row.get::<_, Option<String>>("error")?,
                    ))
                })
                .optional()?;
            let Some((integration, token_id, error)) = row else { return Ok(None) };
            let token_id = token_id
                .map(|t| t.parse::<TokenId>().map_err(|e| StorageError::Corrupt(format!("link_oauth.token_id: {e}"))))
                .transpose()?;
            Ok(Some(LinkOAuthOutcome { integration, token_id, error }))
        })
        .await
    }

    async fn add_link_origin(&self, client_id: ClientId, origin: &str, now: OffsetDateTime) -> Result<bool> {
        let origin = origin.to_owned();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO link_origins (client_id, origin, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (client_id, origin) DO NOTHING",
                )?
                .execute(params![client_id.to_string(), origin, to_millis(now)])?;
            Ok(n == 1)
        })
        .await
    }

    async fn remove_link_origin(&self, client_id: ClientId, origin: &str) -> Result<bool> {
        let origin = origin.to_owned();
        self.write(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM link_origins WHERE client_id = ?1 AND origin = ?2")?
                .execute(params![client_id.to_string(), origin])?;
            Ok(n == 1)
        })
        .await
    }

    async fn link_origins(&self, client_id: ClientId) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT origin FROM link_origins WHERE client_id = ?1 ORDER BY origin")?;
            let rows = stmt.query_map(params![client_id.to_string()], |row| row.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn purge_link_sessions(&self, before: OffsetDateTime) -> Result<u64> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM link_sessions WHERE expires_at < ?1
                     AND (session_expires_at IS NULL OR session_expires_at < ?1)",
                )?
                .execute(params![to_millis(before)])?;
            tx.prepare_cached("DELETE FROM link_oauth WHERE expires_at < ?1")?.execute(params![to_millis(before)])?;
            tx.commit()?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
    }
}
