//! [`LinkStore`] on PostgreSQL: link sessions, pending OAuth sign-ins and allowed origins (migration 0003).
//! Single use is a conditional `UPDATE`, so it holds across instances sharing the database.

use async_trait::async_trait;
use linkvault_domain::{ClientId, Scope, TokenId};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{PostgresStore, parse};
use crate::Result;
use crate::link::{LinkOAuthOutcome, LinkOAuthRecord, LinkSessionRecord, LinkStart, LinkStore};
use crate::time_conv::{from_millis, opt_from_millis, to_millis};

const SESSION_COLUMNS: &str = "id, code_digest, client_id, user_id, scope, integration_id, restrict_multiple_accounts,
    transfer_options, created_at, expires_at, used_at, session_expires_at, connected_integration";

fn session_from_row(r: &Row) -> Result<LinkSessionRecord> {
    Ok(LinkSessionRecord {
        id: r.try_get("id")?,
        code_digest: r.try_get("code_digest")?,
        client_id: ClientId::from_uuid(r.try_get("client_id")?),
        user_id: r.try_get("user_id")?,
        scope: parse::<Scope>("scope", r.try_get("scope")?)?,
        integration_id: r.try_get("integration_id")?,
        restrict_multiple_accounts: r.try_get("restrict_multiple_accounts")?,
        transfer_options: r.try_get("transfer_options")?,
        created_at: from_millis(r.try_get("created_at")?)?,
        expires_at: from_millis(r.try_get("expires_at")?)?,
        used_at: opt_from_millis(r.try_get("used_at")?)?,
        session_expires_at: opt_from_millis(r.try_get("session_expires_at")?)?,
        connected_integration: r.try_get("connected_integration")?,
    })
}

#[async_trait]
impl LinkStore for PostgresStore {
    async fn insert_link_session(&self, r: &LinkSessionRecord) -> Result<()> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "INSERT INTO link_sessions (id, code_digest, client_id, user_id, scope, integration_id,
                 restrict_multiple_accounts, transfer_options, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .await?;
        c.execute(
            &stmt,
            &[
                &r.id,
                &r.code_digest,
                r.client_id.as_uuid(),
                &r.user_id,
                &r.scope.as_str(),
                &r.integration_id,
                &r.restrict_multiple_accounts,
                &r.transfer_options,
                &to_millis(r.created_at),
                &to_millis(r.expires_at),
            ],
        )
        .await?;
        Ok(())
    }

    async fn find_link_by_code(&self, code_digest: &[u8]) -> Result<Option<LinkSessionRecord>> {
        let c = self.client().await?;
        let stmt =
            c.prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM link_sessions WHERE code_digest = $1")).await?;
        c.query_opt(&stmt, &[&code_digest]).await?.as_ref().map(session_from_row).transpose()
    }

    async fn start_link_session(
        &self,
        code_digest: &[u8],
        session_digest: &[u8],
        now: OffsetDateTime,
        session_expires_at: OffsetDateTime,
    ) -> Result<LinkStart> {
        let c = self.client().await?;
        let update = c
            .prepare_cached(&format!(
                "UPDATE link_sessions SET used_at = $2, session_digest = $3, session_expires_at = $4
                 WHERE code_digest = $1 AND used_at IS NULL AND expires_at > $2
                 RETURNING {SESSION_COLUMNS}"
            ))
            .await?;
        let started = c
            .query_opt(&update, &[&code_digest, &to_millis(now), &session_digest, &to_millis(session_expires_at)])
            .await?;
        if let Some(row) = started {
            return Ok(LinkStart::Started(Box::new(session_from_row(&row)?)));
        }
        let select =
            c.prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM link_sessions WHERE code_digest = $1")).await?;
        Ok(match c.query_opt(&select, &[&code_digest]).await?.as_ref().map(session_from_row).transpose()? {
            None => LinkStart::Unknown,
            Some(r) if r.used_at.is_some() => LinkStart::Used,
            Some(_) => LinkStart::Expired,
        })
    }

    async fn find_link_session(&self, session_digest: &[u8], now: OffsetDateTime) -> Result<Option<LinkSessionRecord>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM link_sessions WHERE session_digest = $1 AND session_expires_at > $2"
            ))
            .await?;
        c.query_opt(&stmt, &[&session_digest, &to_millis(now)]).await?.as_ref().map(session_from_row).transpose()
    }

    async fn get_link_session(&self, id: Uuid) -> Result<Option<LinkSessionRecord>> {
        let c = self.client().await?;
        let stmt = c.prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM link_sessions WHERE id = $1")).await?;
        c.query_opt(&stmt, &[&id]).await?.as_ref().map(session_from_row).transpose()
    }

    async fn claim_link_connection(&self, id: Uuid, integration: &str) -> Result<bool> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE link_sessions SET connected_integration = $2
                 WHERE id = $1 AND (connected_integration IS NULL OR connected_integration = $2)",
            )
            .await?;
        Ok(c.execute(&stmt, &[&id, &integration]).await? == 1)
    }

    async fn insert_link_oauth(&self, r: &LinkOAuthRecord, max_pending: u32) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Starts of one session queue on its row; each statement below then sees the rows committed before.
        tx.query_opt("SELECT id FROM link_sessions WHERE id = $1 FOR UPDATE", &[&r.session_id]).await?;
        let dropped = tx
            .execute(
                "DELETE FROM link_oauth WHERE session_id = $1 AND claimed_at IS NULL AND expires_at > $2
                   AND state_digest NOT IN (SELECT state_digest FROM link_oauth
                       WHERE session_id = $1 AND claimed_at IS NULL AND expires_at > $2
                       ORDER BY created_at DESC, state_digest DESC LIMIT $3)",
                &[&r.session_id, &to_millis(r.created_at), &i64::from(max_pending.saturating_sub(1))],
            )
            .await?;
        tx.execute(
            "INSERT INTO link_oauth (state_digest, session_id, integration, pkce_verifier, created_at, expires_at,
                                     begin_digest, authorize_url, binding_digest)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &r.state_digest,
                &r.session_id,
                &r.integration,
                &r.pkce_verifier,
                &to_millis(r.created_at),
                &to_millis(r.expires_at),
                &r.begin_digest,
                &r.authorize_url,
                &r.binding_digest,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(dropped)
    }

    async fn count_pending_link_oauth(&self, session_id: Uuid, now: OffsetDateTime) -> Result<u64> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT COUNT(*) FROM link_oauth WHERE session_id = $1 AND claimed_at IS NULL AND expires_at > $2",
            )
            .await?;
        let n: i64 = c.query_one(&stmt, &[&session_id, &to_millis(now)]).await?.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn bind_link_oauth(
        &self,
        begin_digest: &[u8],
        binding_digest: &[u8],
        started_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<String>> {
        let c = self.client().await?;
        // As in the claim: the sub-select reads the URL as it was, while the stored copy is cleared.
        let stmt = c
            .prepare_cached(
                "UPDATE link_oauth o SET begin_digest = NULL, authorize_url = NULL, binding_digest = $2
                 FROM (SELECT state_digest, authorize_url FROM link_oauth WHERE begin_digest = $1 FOR UPDATE) old
                 WHERE o.state_digest = old.state_digest AND o.binding_digest IS NULL AND o.claimed_at IS NULL
                   AND o.authorize_url IS NOT NULL AND o.created_at > $3 AND o.expires_at > $4
                 RETURNING old.authorize_url",
            )
            .await?;
        let row =
            c.query_opt(&stmt, &[&begin_digest, &binding_digest, &to_millis(started_after), &to_millis(now)]).await?;
        Ok(row.map(|r| r.try_get::<_, String>("authorize_url")).transpose()?)
    }

    async fn claim_link_oauth(&self, state_digest: &[u8], now: OffsetDateTime) -> Result<Option<LinkOAuthRecord>> {
        let c = self.client().await?;
        // The sub-select reads the row as it was before this statement's update, so the verifier is returned
        // while the stored copy is cleared, in one statement.
        let stmt = c
            .prepare_cached(
                "UPDATE link_oauth o SET claimed_at = $2, pkce_verifier = NULL
                 FROM (SELECT state_digest, pkce_verifier FROM link_oauth WHERE state_digest = $1 FOR UPDATE) old
                 WHERE o.state_digest = old.state_digest AND o.claimed_at IS NULL
                   AND o.pkce_verifier IS NOT NULL AND o.expires_at > $2
                 RETURNING o.state_digest, o.session_id, o.integration, old.pkce_verifier, o.created_at, o.expires_at,
                           o.begin_digest, o.authorize_url, o.binding_digest",
            )
            .await?;
        let Some(row) = c.query_opt(&stmt, &[&state_digest, &to_millis(now)]).await? else { return Ok(None) };
        Ok(Some(LinkOAuthRecord {
            state_digest: row.try_get("state_digest")?,
            session_id: row.try_get("session_id")?,
            integration: row.try_get("integration")?,
            pkce_verifier: row.try_get("pkce_verifier")?,
            created_at: from_millis(row.try_get("created_at")?)?,
            expires_at: from_millis(row.try_get("expires_at")?)?,
            begin_digest: row.try_get("begin_digest")?,
            authorize_url: row.try_get("authorize_url")?,
            binding_digest: row.try_get("binding_digest")?,
        }))
    }

    async fn complete_link_oauth(
        &self,
        state_digest: &[u8],
        token_id: Option<TokenId>,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE link_oauth SET completed_at = $2, token_id = $3, error = $4
                 WHERE state_digest = $1 AND claimed_at IS NOT NULL AND completed_at IS NULL",
            )
            .await?;
        let token: Option<Uuid> = token_id.map(|t| *t.as_uuid());
        let error = crate::short_error(error);
        Ok(c.execute(&stmt, &[&state_digest, &to_millis(now), &token, &error]).await? == 1)
    }

    async fn take_link_oauth_outcome(&self, session_id: Uuid) -> Result<Option<LinkOAuthOutcome>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "DELETE FROM link_oauth WHERE state_digest = (
                     SELECT state_digest FROM link_oauth WHERE session_id = $1 AND completed_at IS NOT NULL
                     ORDER BY completed_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING integration, token_id, error",
            )
            .await?;
        let Some(row) = c.query_opt(&stmt, &[&session_id]).await? else { return Ok(None) };
        let token: Option<Uuid> = row.try_get("token_id")?;
        Ok(Some(LinkOAuthOutcome {
            integration: row.try_get("integration")?,
            token_id: token.map(TokenId::from_uuid),
            error: row.try_get("error")?,
        }))
    }

    async fn add_link_origin(&self, client_id: ClientId, origin: &str, now: OffsetDateTime) -> Result<bool> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "INSERT INTO link_origins (client_id, origin, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (client_id, origin) DO NOTHING",
            )
            .await?;
        Ok(c.execute(&stmt, &[client_id.as_uuid(), &origin, &to_millis(now)]).await? == 1)
    }

    async fn remove_link_origin(&self, client_id: ClientId, origin: &str) -> Result<bool> {
        let c = self.client().await?;
        let stmt = c.prepare_cached("DELETE FROM link_origins WHERE client_id = $1 AND origin = $2").await?;
        Ok(c.execute(&stmt, &[client_id.as_uuid(), &origin]).await? == 1)
    }

    async fn link_origins(&self, client_id: ClientId) -> Result<Vec<String>> {
        let c = self.client().await?;
        let stmt = c.prepare_cached("SELECT origin FROM link_origins WHERE client_id = $1 ORDER BY origin").await?;
        c.query(&stmt, &[client_id.as_uuid()]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn purge_link_sessions(&self, before: OffsetDateTime) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let n = tx
            .execute(
                "DELETE FROM link_sessions WHERE expires_at < $1
                 AND (session_expires_at IS NULL OR session_expires_at < $1)",
                &[&to_millis(before)],
            )
            .await?;
        tx.execute("DELETE FROM link_oauth WHERE expires_at < $1", &[&to_millis(before)]).await?;
        tx.commit().await?;
        Ok(n)
    }
}
