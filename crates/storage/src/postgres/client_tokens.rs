//! [`ClientTokenStore`] on PostgreSQL (migration 0005), for several instances sharing the database.
//!
//! A refresh locks the family row it matches (`SELECT … FOR UPDATE`) before deciding. Two requests presenting
//! the same refresh token therefore queue on that row: after the first rotates it and commits, the second's
//! lookup no longer matches the current digest (PostgreSQL re-checks the locked row's new version) and finds
//! the token among the spent ones instead — reuse. The `UPDATE` is also a compare-and-set on the digest and
//! generation, so correctness does not rest on the lock alone.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use linkvault_domain::client_tokens::access_expiry;
use linkvault_domain::{ClientId, RefreshDecision, RefreshMatch, RevokedReason, TokenId, TokenRefusal, decide_refresh};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{PostgresStore, i64_of, u64_of};
use crate::client_tokens::{
    AccessTokenMatch, ClientTokenStore, FamilyRefresh, NewAccessToken, RefreshOutcome, TokenFamilyRecord,
};
use crate::time_conv::{from_millis, opt_from_millis, opt_to_millis, to_millis};
use crate::{Result, StorageError};

const FAMILY_COLUMNS: &str = "f.family_id, f.token_id, f.client_id, f.integration, f.refresh_digest,
    f.refresh_expires_at, f.generation, f.created_at, f.updated_at, f.revoked_at, f.revoked_reason";

/// Compare-and-set rounds before giving up; more than one only if the row changed between lock and update.
const MAX_ROUNDS: usize = 3;

fn family_from_row(r: &Row) -> Result<TokenFamilyRecord> {
    let reason: Option<String> = r.try_get("revoked_reason")?;
    Ok(TokenFamilyRecord {
        family_id: r.try_get("family_id")?,
        token_id: TokenId::from_uuid(r.try_get("token_id")?),
        client_id: ClientId::from_uuid(r.try_get("client_id")?),
        integration: r.try_get("integration")?,
        refresh_digest: r.try_get("refresh_digest")?,
        refresh_expires_at: opt_from_millis(r.try_get("refresh_expires_at")?)?,
        generation: u64_of(r.try_get("generation")?)?,
        created_at: from_millis(r.try_get("created_at")?)?,
        updated_at: from_millis(r.try_get("updated_at")?)?,
        revoked_at: opt_from_millis(r.try_get("revoked_at")?)?,
        revoked_reason: reason.as_deref().and_then(RevokedReason::parse),
    })
}

async fn family_by_id(tx: &Transaction<'_>, family_id: Uuid) -> Result<TokenFamilyRecord> {
    let stmt = tx
        .prepare_cached(&format!("SELECT {FAMILY_COLUMNS} FROM client_token_families f WHERE f.family_id = $1"))
        .await?;
    let row = tx.query_opt(&stmt, &[&family_id]).await?;
    row.as_ref()
        .map(family_from_row)
        .transpose()?
        .ok_or_else(|| StorageError::Database("token family vanished inside its transaction".into()))
}

/// What the presented refresh digest matches, for this client and integration only; the family row is locked.
async fn lookup_refresh(tx: &Transaction<'_>, r: &FamilyRefresh) -> Result<(RefreshMatch, Option<TokenFamilyRecord>)> {
    let owned = |f: &TokenFamilyRecord| f.client_id == r.client_id && f.integration == r.integration;
    let current = tx
        .prepare_cached(&format!(
            "SELECT {FAMILY_COLUMNS} FROM client_token_families f WHERE f.refresh_digest = $1 FOR UPDATE"
        ))
        .await?;
    let found = tx.query_opt(&current, &[&r.presented_digest]).await?.as_ref().map(family_from_row).transpose()?;
    if let Some(f) = found.filter(owned) {
        return Ok((RefreshMatch::Current { family: f.state(), refresh_expires_at: f.refresh_expires_at }, Some(f)));
    }
    let spent = tx
        .prepare_cached(&format!(
            "SELECT {FAMILY_COLUMNS} FROM client_spent_refresh_tokens s
             JOIN client_token_families f ON f.family_id = s.family_id WHERE s.digest = $1 FOR UPDATE OF f"
        ))
        .await?;
    let found = tx.query_opt(&spent, &[&r.presented_digest]).await?.as_ref().map(family_from_row).transpose()?;
    Ok(match found.filter(owned) {
        Some(f) => (RefreshMatch::Spent { family: f.state() }, Some(f)),
        None => (RefreshMatch::Unknown, None),
    })
}

async fn insert_access(
    tx: &Transaction<'_>,
    family_id: Uuid,
    access: &NewAccessToken,
    now: OffsetDateTime,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO client_access_tokens (digest, family_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .await?;
    tx.execute(&stmt, &[&access.digest, &family_id, &to_millis(access.expires_at), &to_millis(now)]).await?;
    Ok(())
}

/// One round; `None` when the compare-and-set lost (the caller starts a new transaction).
async fn apply_refresh(tx: &Transaction<'_>, r: &FamilyRefresh) -> Result<Option<RefreshOutcome>> {
    let (found, family) = lookup_refresh(tx, r).await?;
    let now_ms = to_millis(r.now);
    let (decision, f) = match (decide_refresh(found, r.now, r.rotate_to.is_some()), family) {
        (RefreshDecision::Refuse(why), _) => return Ok(Some(RefreshOutcome::Refused(why))),
        (_, None) => return Ok(Some(RefreshOutcome::Refused(TokenRefusal::Unknown))),
        (decision, Some(f)) => (decision, f),
    };
    match decision {
        RefreshDecision::RevokeForReuse => {
            let stmt = tx
                .prepare_cached(
                    "UPDATE client_token_families
                     SET revoked_at = $1, revoked_reason = 'refreshTokenReused', updated_at = $1
                     WHERE family_id = $2 AND revoked_at IS NULL",
                )
                .await?;
            tx.execute(&stmt, &[&now_ms, &f.family_id]).await?;
            Ok(Some(RefreshOutcome::Refused(TokenRefusal::RefreshTokenReused)))
        }
        RefreshDecision::Issue { rotate } => {
            let (changed, refresh_end) = match &r.rotate_to {
                Some((new_digest, end)) if rotate => {
                    let stmt = tx
                        .prepare_cached(
                            "UPDATE client_token_families
                             SET refresh_digest = $1, refresh_expires_at = $2, generation = generation + 1,
                                 updated_at = $3
                             WHERE family_id = $4 AND refresh_digest = $5 AND generation = $6 AND revoked_at IS NULL",
                        )
                        .await?;
                    let changed = tx
                        .execute(
                            &stmt,
                            &[
                                new_digest,
                                &opt_to_millis(*end),
                                &now_ms,
                                &f.family_id,
                                &r.presented_digest,
                                &i64_of(f.generation),
                            ],
                        )
                        .await?
                        == 1;
                    if changed {
                        let spend = tx
                            .prepare_cached(
                                "INSERT INTO client_spent_refresh_tokens (digest, family_id, spent_at)
                                 VALUES ($1, $2, $3)",
                            )
                            .await?;
                        tx.execute(&spend, &[&r.presented_digest, &f.family_id, &now_ms]).await?;
                    }
                    (changed, *end)
                }
                _ => {
                    let stmt = tx
                        .prepare_cached(
                            "UPDATE client_token_families SET updated_at = $1
                             WHERE family_id = $2 AND refresh_digest = $3 AND revoked_at IS NULL",
                        )
                        .await?;
                    (tx.execute(&stmt, &[&now_ms, &f.family_id, &r.presented_digest]).await? == 1, f.refresh_expires_at)
                }
            };
            if !changed {
                return Ok(None);
            }
            let purge =
                tx.prepare_cached("DELETE FROM client_access_tokens WHERE family_id = $1 AND expires_at <= $2").await?;
            tx.execute(&purge, &[&f.family_id, &to_millis(r.purge_expired_before)]).await?;
            let access_expires_at = access_expiry(r.now, r.access_ttl, refresh_end);
            let access = NewAccessToken { digest: r.access_digest.clone(), expires_at: access_expires_at };
            insert_access(tx, f.family_id, &access, r.now).await?;
            Ok(Some(RefreshOutcome::Refreshed { family: family_by_id(tx, f.family_id).await?, access_expires_at }))
        }
        RefreshDecision::Refuse(why) => Ok(Some(RefreshOutcome::Refused(why))),
    }
}

#[async_trait]
impl ClientTokenStore for PostgresStore {
    async fn issue_token_family(&self, f: &TokenFamilyRecord, access: &NewAccessToken) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let now_ms = to_millis(f.created_at);
        let revoke = tx
            .prepare_cached(
                "UPDATE client_token_families SET revoked_at = $1, revoked_reason = 'superseded', updated_at = $1
                 WHERE token_id = $2 AND revoked_at IS NULL",
            )
            .await?;
        tx.execute(&revoke, &[&now_ms, f.token_id.as_uuid()]).await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO client_token_families (family_id, token_id, client_id, integration, refresh_digest,
                     refresh_expires_at, generation, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .await?;
        tx.execute(
            &insert,
            &[
                &f.family_id,
                f.token_id.as_uuid(),
                f.client_id.as_uuid(),
                &f.integration,
                &f.refresh_digest,
                &opt_to_millis(f.refresh_expires_at),
                &i64_of(f.generation),
                &now_ms,
                &to_millis(f.updated_at),
            ],
        )
        .await?;
        insert_access(&tx, f.family_id, access, f.created_at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn refresh_token_family(&self, refresh: &FamilyRefresh) -> Result<RefreshOutcome> {
        let mut c = self.client().await?;
        for _ in 0..MAX_ROUNDS {
            let tx = c.transaction().await?;
            if let Some(outcome) = apply_refresh(&tx, refresh).await? {
                tx.commit().await?;
                return Ok(outcome);
            }
            tx.rollback().await?;
        }
        Err(StorageError::Database("token family kept changing during its refresh".into()))
    }

    async fn find_access_token(&self, digest: &[u8]) -> Result<Option<AccessTokenMatch>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {FAMILY_COLUMNS}, a.expires_at AS access_expires_at FROM client_access_tokens a
                 JOIN client_token_families f ON f.family_id = a.family_id WHERE a.digest = $1"
            ))
            .await?;
        let Some(row) = c.query_opt(&stmt, &[&digest]).await? else { return Ok(None) };
        Ok(Some(AccessTokenMatch {
            family: family_from_row(&row)?,
            expires_at: from_millis(row.try_get("access_expires_at")?)?,
        }))
    }

    async fn token_families(&self, token_id: TokenId) -> Result<Vec<TokenFamilyRecord>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {FAMILY_COLUMNS} FROM client_token_families f WHERE f.token_id = $1
                 ORDER BY f.created_at, f.family_id"
            ))
            .await?;
        c.query(&stmt, &[token_id.as_uuid()]).await?.iter().map(family_from_row).collect()
    }
}
