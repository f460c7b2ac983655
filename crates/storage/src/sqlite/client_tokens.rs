//! [`ClientTokenStore`] on SQLite (migration 0005). Every write runs in an `IMMEDIATE` transaction on the
//! single writer, so a lookup and the change it decides are never interleaved with another writer's; the
//! compare-and-set in the `UPDATE` states the same condition the PostgreSQL store relies on.

use async_trait::async_trait;
use linkvault_domain::client_tokens::access_expiry;
use linkvault_domain::{ClientId, RefreshDecision, RefreshMatch, RevokedReason, TokenId, TokenRefusal, decide_refresh};
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::{SqliteStore, conv, i64_of, u64_col, uuid_col};
use crate::client_tokens::{
    AccessTokenMatch, ClientTokenStore, FamilyRefresh, NewAccessToken, RefreshOutcome, TokenFamilyRecord,
};
use crate::time_conv::{from_millis, opt_from_millis, opt_to_millis, to_millis};
use crate::{Result, StorageError};

const FAMILY_COLUMNS: &str = "f.family_id, f.token_id, f.client_id, f.integration, f.refresh_digest,
    f.refresh_expires_at, f.generation, f.created_at, f.updated_at, f.revoked_at, f.revoked_reason";

fn family_from_row(row: &Row<'_>) -> rusqlite::Result<TokenFamilyRecord> {
    let reason: Option<String> = row.get("revoked_reason")?;
    Ok(TokenFamilyRecord {
        family_id: uuid_col(row, "family_id")?,
        token_id: TokenId::from_uuid(uuid_col(row, "token_id")?),
        client_id: ClientId::from_uuid(uuid_col(row, "client_id")?),
        integration: row.get("integration")?,
        refresh_digest: row.get("refresh_digest")?,
        refresh_expires_at: conv(opt_from_millis(row.get("refresh_expires_at")?))?,
        generation: u64_col(row, "generation")?,
        created_at: conv(from_millis(row.get("created_at")?))?,
        updated_at: conv(from_millis(row.get("updated_at")?))?,
        revoked_at: conv(opt_from_millis(row.get("revoked_at")?))?,
        revoked_reason: reason.as_deref().and_then(RevokedReason::parse),
    })
}

fn family_by_id(tx: &Connection, family_id: &str) -> Result<TokenFamilyRecord> {
    tx.prepare_cached(&format!("SELECT {FAMILY_COLUMNS} FROM client_token_families f WHERE f.family_id = ?1"))?
        .query_row([family_id], family_from_row)
        .optional()?
        .ok_or_else(|| StorageError::Database("token family vanished inside its transaction".into()))
}

/// What the presented refresh digest matches, for this client and integration only.
fn lookup_refresh(tx: &Connection, r: &FamilyRefresh) -> Result<(RefreshMatch, Option<TokenFamilyRecord>)> {
    let owned = |f: &TokenFamilyRecord| f.client_id == r.client_id && f.integration == r.integration;
    let current = tx
        .prepare_cached(&format!("SELECT {FAMILY_COLUMNS} FROM client_token_families f WHERE f.refresh_digest = ?1"))?
        .query_row([&r.presented_digest], family_from_row)
        .optional()?;
    if let Some(f) = current.filter(owned) {
        return Ok((RefreshMatch::Current { family: f.state(), refresh_expires_at: f.refresh_expires_at }, Some(f)));
    }
    let spent = tx
        .prepare_cached(&format!(
            "SELECT {FAMILY_COLUMNS} FROM client_spent_refresh_tokens s
             JOIN client_token_families f ON f.family_id = s.family_id WHERE s.digest = ?1"
        ))?
        .query_row([&r.presented_digest], family_from_row)
        .optional()?;
    Ok(match spent.filter(owned) {
        Some(f) => (RefreshMatch::Spent { family: f.state() }, Some(f)),
        None => (RefreshMatch::Unknown, None),
    })
}

fn insert_access(tx: &Connection, family_id: &str, access: &NewAccessToken, now: OffsetDateTime) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO client_access_tokens (digest, family_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![access.digest, family_id, to_millis(access.expires_at), to_millis(now)])?;
    Ok(())
}

fn apply_refresh(tx: &Connection, r: &FamilyRefresh) -> Result<RefreshOutcome> {
    let (found, family) = lookup_refresh(tx, r)?;
    let now_ms = to_millis(r.now);
    match (decide_refresh(found, r.now, r.rotate_to.is_some()), family) {
        (RefreshDecision::Issue { rotate }, Some(f)) => {
            let family_id = f.family_id.to_string();
            let refresh_end = match &r.rotate_to {
                Some((_, end)) if rotate => *end,
                _ => f.refresh_expires_at,
            };
            let changed = match &r.rotate_to {
                Some((new_digest, end)) if rotate => {
                    let changed =
                        tx.prepare_cached(
                            "UPDATE client_token_families
                             SET refresh_digest = ?1, refresh_expires_at = ?2, generation = generation + 1,
                                 updated_at = ?3
                             WHERE family_id = ?4 AND refresh_digest = ?5 AND generation = ?6 AND revoked_at IS NULL",
                        )?
                        .execute(params![
                            new_digest,
                            opt_to_millis(*end),
                            now_ms,
                            family_id,
                            r.presented_digest,
                            i64_of(f.generation),
                        ])? == 1;
                    if changed {
                        tx.prepare_cached(
                            "INSERT INTO client_spent_refresh_tokens (digest, family_id, spent_at) VALUES (?1, ?2, ?3)",
                        )?
                        .execute(params![r.presented_digest, family_id, now_ms])?;
                    }
                    changed
                }
                _ => {
                    tx.prepare_cached(
                        "UPDATE client_token_families SET updated_at = ?1
                         WHERE family_id = ?2 AND refresh_digest = ?3 AND revoked_at IS NULL",
                    )?
                    .execute(params![now_ms, family_id, r.presented_digest])?
                        == 1
                }
            };
            if !changed {
                // Impossible under the single writer; stated so that the rule does not depend on it.
                return Err(StorageError::Database("token family changed during its refresh".into()));
            }
            tx.prepare_cached("DELETE FROM client_access_tokens WHERE family_id = ?1 AND expires_at <= ?2")?
                .execute(params![family_id, to_millis(r.purge_expired_before)])?;
            let access_expires_at = access_expiry(r.now, r.access_ttl, refresh_end);
            let access = NewAccessToken { digest: r.access_digest.clone(), expires_at: access_expires_at };
            insert_access(tx, &family_id, &access, r.now)?;
            Ok(RefreshOutcome::Refreshed { family: family_by_id(tx, &family_id)?, access_expires_at })
        }
        (RefreshDecision::RevokeForReuse, Some(f)) => {
            tx.prepare_cached(
                "UPDATE client_token_families SET revoked_at = ?1, revoked_reason = 'refreshTokenReused', updated_at = ?1
                 WHERE family_id = ?2 AND revoked_at IS NULL",
            )?
            .execute(params![now_ms, f.family_id.to_string()])?;
            Ok(RefreshOutcome::Refused(TokenRefusal::RefreshTokenReused))
        }
        (RefreshDecision::Refuse(why), _) => Ok(RefreshOutcome::Refused(why)),
        (_, None) => Ok(RefreshOutcome::Refused(TokenRefusal::Unknown)),
    }
}

#[async_trait]
impl ClientTokenStore for SqliteStore {
    async fn issue_token_family(&self, family: &TokenFamilyRecord, access: &NewAccessToken) -> Result<()> {
        let (f, access) = (family.clone(), access.clone());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now_ms = to_millis(f.created_at);
            tx.prepare_cached(
                "UPDATE client_token_families SET revoked_at = ?1, revoked_reason = 'superseded', updated_at = ?1
                 WHERE token_id = ?2 AND revoked_at IS NULL",
            )?
            .execute(params![now_ms, f.token_id.to_string()])?;
            tx.prepare_cached(
                "INSERT INTO client_token_families (family_id, token_id, client_id, integration, refresh_digest,
                     refresh_expires_at, generation, created_at, updated_at, revoked_at, revoked_reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL)",
            )?
            .execute(params![
                f.family_id.to_string(),
                f.token_id.to_string(),
                f.client_id.to_string(),
                f.integration,
                f.refresh_digest,
                opt_to_millis(f.refresh_expires_at),
                i64_of(f.generation),
                now_ms,
                to_millis(f.updated_at),
            ])?;
            insert_access(&tx, &f.family_id.to_string(), &access, f.created_at)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn refresh_token_family(&self, refresh: &FamilyRefresh) -> Result<RefreshOutcome> {
        let r = refresh.clone();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let outcome = apply_refresh(&tx, &r)?;
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn find_access_token(&self, digest: &[u8]) -> Result<Option<AccessTokenMatch>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {FAMILY_COLUMNS}, a.expires_at AS access_expires_at FROM client_access_tokens a
                 JOIN client_token_families f ON f.family_id = a.family_id WHERE a.digest = ?1"
            ))?
            .query_row([digest], |row| {
                Ok(AccessTokenMatch {
                    family: family_from_row(row)?,
                    expires_at: conv(from_millis(row.get("access_expires_at")?))?,
                })
            })
            .optional()?)
        })
    }

    async fn token_families(&self, token_id: TokenId) -> Result<Vec<TokenFamilyRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {FAMILY_COLUMNS} FROM client_token_families f WHERE f.token_id = ?1
                 ORDER BY f.created_at, f.rowid"
            ))?;
            let rows = stmt.query_map([token_id.to_string()], family_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}
