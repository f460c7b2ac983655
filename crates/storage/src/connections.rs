//! The [`Store`] methods proper (settings, key versions, clients and API keys, connections and their refresh
//! scheduling), written once for both backends on the SQL layer (`sql`).

use async_trait::async_trait;
use linkvault_domain::{ClientId, NaturalKey, TokenId, TokenMode};
use time::OffsetDateTime;

use crate::sql::Mode::{Lookup, Read, Write};
use crate::sql::{Columns, Dialect, Driver, Session, Value, run, sql, vals};
use crate::wraps::{count_wrap, next_slot};
use crate::{
    ApiKeyRecord, AppliedDeletions, AuditStore, AuthenticatedKey, ClaimedConnection, ClientRecord, ClientTokenStore,
    ConnectionRecord, ConnectionSummary, CredentialsUpdate, DeletionRecord, InsertOutcome, KeyVersionRecord,
    LeaseRelease, LinkStore, OutboxEvent, ReauthMark, Result, RewrapCandidate, StorageError, Store, TransferStore,
    WebhookStore, selector_as_uuid, short_error,
};

pub(crate) async fn insert_outbox(s: &mut impl Session, e: &OutboxEvent) -> Result<()> {
    s.execute(sql!(OutboxEvent: "INSERT INTO outbox ({*}, next_attempt_at) VALUES ({?*}, ?5)"), &e.values()).await?;
    Ok(())
}

async fn insert_api_key(s: &mut impl Session, k: &ApiKeyRecord) -> Result<()> {
    s.execute(sql!(ApiKeyRecord: "INSERT INTO api_keys ({*}) VALUES ({?*})"), &k.values()).await?;
    Ok(())
}

/// The credentials write shared by `update_credentials` (any writer) and `complete_refresh` (the lease owner).
async fn write_credentials(s: &mut impl Session, u: &CredentialsUpdate, owner: Option<&str>) -> Result<bool> {
    let rekey = u.rekey.as_ref();
    let stmt = sql!(
        "UPDATE connections SET status = ?1, credentials = ?2, data_key_uses = ?3,
                key_version = COALESCE(?4, key_version), wrapped_data_key = COALESCE(?5, wrapped_data_key),
                data_key_generation = COALESCE(?6, data_key_generation),
                account_id = ?7, account_name = ?8, access_expires_at = ?9, refresh_expires_at = ?10,
                last_refreshed_at = ?11, refresh_count = ?12, updated_at = ?13, version = version + 1,
                next_refresh_at = ?16, reauth_warned_at = ?17, last_refreshed_by = ?18, lease_owner = NULL,
                lease_until = NULL, grant_in_flight = FALSE, refresh_failures = 0, last_error = NULL
             WHERE token_id = ?14 AND version = ?15 AND (CAST(?18 AS TEXT) IS NULL OR lease_owner = ?18)"
    );
    let params = vals![
        u.status.as_str(),
        &u.credentials,
        u.data_key_uses,
        rekey.map(|k| k.key_version),
        rekey.map(|k| k.wrapped_data_key.clone()),
        rekey.map(|k| k.data_key_generation),
        &u.account_id,
        &u.account_name,
        u.access_expires_at,
        u.refresh_expires_at,
        u.last_refreshed_at,
        u.refresh_count,
        u.updated_at,
        u.token_id,
        u.expected_version,
        u.next_refresh_at,
        u.reauth_warned_at,
        owner,
    ];
    let changed = s.execute(stmt, &params).await? == 1;
    if changed {
        if let Some(rekey) = rekey {
            count_wrap(s, rekey.key_version).await?;
        }
        if let Some(event) = &u.event {
            insert_outbox(s, event).await?;
        }
    }
    Ok(changed)
}

fn millis_of(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Claims due rows. PostgreSQL does it in one statement that skips rows other instances have locked; SQLite,
/// with one writer, selects and updates inside the writer's transaction (its `RETURNING` cannot see the
/// `FROM` table that tells whether a lease was taken over).
async fn claim_due<S: Session>(
    s: &mut S,
    now: OffsetDateTime,
    owner: &str,
    lease: i64,
    limit: u32,
) -> Result<Vec<ClaimedConnection>> {
    let clock = Value::clock(now);
    let mut claimed = match S::DIALECT {
        Dialect::Postgres => {
            let claim = sql!(ConnectionRecord:
                "WITH due AS (
                     SELECT token_id, next_refresh_at AS due_at, lease_owner IS NOT NULL AS had_lease
                     FROM connections
                     WHERE status = 'active' AND next_refresh_at <= ?1 AND NOT grant_in_flight
                       AND (lease_until IS NULL OR lease_until <= {now})
                     ORDER BY next_refresh_at LIMIT ?2
                     FOR UPDATE SKIP LOCKED)
                 UPDATE connections c SET lease_owner = ?3, lease_until = {now} + ?4, version = c.version + 1
                 FROM due WHERE c.token_id = due.token_id
                 RETURNING {c.*}, due.due_at, due.had_lease");
            s.all(claim, &vals![now, limit, owner, lease, clock]).await?
        }
        Dialect::Sqlite => {
            let due = sql!(
                "SELECT token_id, lease_owner IS NOT NULL FROM connections
                 WHERE status = 'active' AND next_refresh_at <= ?1 AND NOT grant_in_flight
                   AND (lease_until IS NULL OR lease_until <= {now})
                 ORDER BY next_refresh_at LIMIT ?2"
            );
            let claim = sql!(ConnectionRecord:
                "UPDATE connections SET lease_owner = ?1, lease_until = {now} + ?2, version = version + 1
                 WHERE token_id = ?3 RETURNING {*}");
            let mut claimed = Vec::new();
            for (token_id, had_lease) in s.all::<(TokenId, bool)>(due, &vals![now, limit, clock.clone()]).await? {
                let record: ConnectionRecord = s.one(claim, &vals![owner, lease, token_id, clock.clone()]).await?;
                let due_at = record.refresh.next_refresh_at.unwrap_or(now);
                claimed.push(ClaimedConnection { record, due_at, took_over_expired_lease: had_lease });
            }
            claimed
        }
    };
    // RETURNING does not keep the subquery's order.
    claimed.sort_by_key(|c| c.due_at);
    Ok(claimed)
}

/// `insert_connection` on PostgreSQL: the retired-id check, the insert, the wrap count and the event as one
/// statement (data-modifying CTEs), so one round trip and PostgreSQL's implicit transaction instead of six
/// round trips from `BEGIN` to `COMMIT`. SQLite runs the same steps in a transaction on its writer, where a
/// round trip is a function call.
async fn insert_connection_in_one_statement<D: Driver>(
    d: &D,
    connection: Vec<Value>,
    event: Option<OutboxEvent>,
) -> Result<InsertOutcome> {
    let mut params = connection;
    let event = event.as_ref();
    params.extend(vals![
        event.map(|e| e.id),
        event.map(|e| e.client_id),
        event.map(|e| e.event_type.as_str()),
        event.map(|e| e.payload.as_str()),
        event.map(|e| e.created_at),
        next_slot(),
    ]);
    // `{?+K}`: the K-th parameter after the record's columns, so a new column renumbers nothing here.
    let stmt = sql!(ConnectionRecord:
            "WITH retired AS (SELECT EXISTS (SELECT 1 FROM retired_tokens WHERE token_id = ?1) AS yes),
             inserted AS (
                 INSERT INTO connections ({*}) SELECT {?*}
                 WHERE NOT (SELECT yes FROM retired)
                 ON CONFLICT (client_id, user_id, integration, scope) DO NOTHING
                 RETURNING key_version),
             wrapped AS (
                 INSERT INTO key_version_wraps (version, slot, wraps) SELECT key_version, {?+6}, 1 FROM inserted
                 ON CONFLICT (version, slot) DO UPDATE SET wraps = key_version_wraps.wraps + 1),
             announced AS (
                 INSERT INTO outbox (id, client_id, event_type, payload, created_at, next_attempt_at)
                 SELECT {?+1}, {?+2}, {?+3}, {?+4}, {?+5}, {?+5} FROM inserted
                 WHERE CAST({?+1} AS UUID) IS NOT NULL)
             SELECT (SELECT yes FROM retired), EXISTS (SELECT 1 FROM inserted)"
    );
    let (retired, inserted): (bool, bool) = run!(d, Write, |s| s.one(stmt, &params).await)?;
    Ok(if retired {
        InsertOutcome::TokenIdRetired
    } else if inserted {
        InsertOutcome::Inserted
    } else {
        InsertOutcome::NaturalKeyTaken
    })
}

#[async_trait]
impl<D: Driver + LinkStore + WebhookStore + ClientTokenStore + TransferStore + AuditStore> Store for D {
    fn backend(&self) -> &'static str {
        D::BACKEND
    }

    async fn migrate(&self) -> Result<()> {
        self.migrate_schema().await
    }

    async fn ping(&self) -> Result<()> {
        self.one::<i64>(sql!("SELECT 1"), []).await.map(drop)
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        self.opt(Read, sql!("SELECT value FROM meta WHERE key = ?1"), vals![key]).await
    }

    async fn insert_meta_if_absent(&self, key: &str, value: &str) -> Result<String> {
        // The no-op update makes the statement return the value already stored.
        let stmt = sql!(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = meta.value
                         RETURNING value"
        );
        self.opt(Write, stmt, vals![key, value]).await?.ok_or_else(|| StorageError::Database("no meta row".into()))
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let stmt = sql!(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        );
        self.exec(stmt, vals![key, value]).await.map(drop)
    }

    async fn delete_meta(&self, key: &str) -> Result<()> {
        self.exec(sql!("DELETE FROM meta WHERE key = ?1"), vals![key]).await.map(drop)
    }

    async fn replace_meta_if(&self, guard: (&str, &str), set: &[(&str, &str)], delete: &[&str]) -> Result<bool> {
        let guard = vals![guard.0, guard.1];
        let set: Vec<_> = set.iter().map(|(k, v)| vals![*k, *v]).collect();
        let delete: Vec<_> = delete.iter().map(|k| vals![*k]).collect();
        run!(self, Transaction, |s| {
            // The guard row is locked by the no-op update (PostgreSQL) for the rest of the transaction.
            let held = s.execute(sql!("UPDATE meta SET value = value WHERE key = ?1 AND value = ?2"), &guard).await?;
            if held != 1 {
                return Ok(false);
            }
            for pair in &set {
                let stmt = sql!(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                );
                s.execute(stmt, pair).await?;
            }
            for key in &delete {
                s.execute(sql!("DELETE FROM meta WHERE key = ?1"), key).await?;
            }
            Ok(true)
        })
    }

    async fn rewrap_key_version(&self, version: u32, old: &[u8], new: &[u8]) -> Result<bool> {
        let stmt = sql!("UPDATE key_versions SET wrapped_key = ?3 WHERE version = ?1 AND wrapped_key = ?2");
        self.changed(stmt, vals![version, old, new]).await
    }

    async fn key_versions(&self) -> Result<Vec<KeyVersionRecord>> {
        // The count is the row's own plus its slots' (the wrap counter is split across slot rows so that concurrent
        // inserts do not queue on one row: `wraps.rs`); decoded by position as a `KeyVersionRecord`.
        self.all(
            Read,
            sql!(
                "SELECT v.version, v.wrapped_key, v.is_current,
                        v.wrap_count + CAST(COALESCE((SELECT SUM(w.wraps) FROM key_version_wraps w
                                                      WHERE w.version = v.version), 0) AS BIGINT),
                        v.created_at
                 FROM key_versions v ORDER BY v.version"
            ),
            [],
        )
        .await
    }

    async fn insert_key_version(&self, k: &KeyVersionRecord, make_current: bool) -> Result<bool> {
        let params = vals![k.version, &k.wrapped_key, k.wrap_count, k.created_at];
        run!(self, Transaction, |s| {
            let inserted = s
                .execute(
                    sql!(
                        "INSERT INTO key_versions (version, wrapped_key, is_current, wrap_count, created_at)
                         VALUES (?1, ?2, FALSE, ?3, ?4) ON CONFLICT (version) DO NOTHING"
                    ),
                    &params,
                )
                .await?
                == 1;
            if inserted && make_current {
                // Clear first, then set: SQLite checks the partial unique index row by row, so flipping both
                // flags in one statement fails whenever the new version sorts before the current one.
                s.execute(sql!("UPDATE key_versions SET is_current = FALSE WHERE is_current"), &[]).await?;
                s.execute(sql!("UPDATE key_versions SET is_current = TRUE WHERE version = ?1"), &params[..1]).await?;
            }
            Ok(inserted)
        })
    }

    async fn count_connections_by_key_version(&self) -> Result<Vec<(u32, u64)>> {
        let stmt = sql!(
            "SELECT v.version, (SELECT COUNT(*) FROM connections WHERE key_version = v.version)
                         FROM key_versions v ORDER BY v.version"
        );
        self.all(Read, stmt, []).await
    }

    async fn delete_key_version_if_unused(&self, version: u32) -> Result<bool> {
        let stmt = sql!(
            "DELETE FROM key_versions WHERE version = ?1 AND NOT is_current
                         AND NOT EXISTS (SELECT 1 FROM connections WHERE key_version = ?1)"
        );
        self.changed(stmt, vals![version]).await
    }

    async fn connections_needing_rewrap(&self, current: u32, limit: u32) -> Result<Vec<RewrapCandidate>> {
        let stmt = sql!(RewrapCandidate: "SELECT {*} FROM connections WHERE key_version <> ?1 LIMIT ?2");
        self.all(Read, stmt, vals![current, limit]).await
    }

    async fn rewrap_data_key(&self, c: &RewrapCandidate, new_version: u32, wrapped: &[u8]) -> Result<bool> {
        let params = vals![new_version, wrapped, c.token_id, c.key_version, c.data_key_generation];
        run!(self, Transaction, |s| {
            let stmt = sql!(
                "UPDATE connections SET key_version = ?1, wrapped_data_key = ?2
                             WHERE token_id = ?3 AND key_version = ?4 AND data_key_generation = ?5"
            );
            let changed = s.execute(stmt, &params).await? == 1;
            if changed {
                count_wrap(s, new_version).await?;
            }
            Ok(changed)
        })
    }

    async fn insert_client(&self, client: &ClientRecord, keys: &[ApiKeyRecord]) -> Result<()> {
        let (params, keys) = (client.values(), keys.to_vec());
        run!(self, Transaction, |s| {
            s.execute(sql!(ClientRecord: "INSERT INTO clients ({*}) VALUES ({?*})"), &params).await?;
            for key in &keys {
                insert_api_key(s, key).await?;
            }
            Ok(())
        })
    }

    async fn get_client(&self, client_id: ClientId) -> Result<Option<ClientRecord>> {
        self.opt(Read, sql!(ClientRecord: "SELECT {*} FROM clients WHERE client_id = ?1"), vals![client_id]).await
    }

    async fn set_client_token_mode(&self, client_id: ClientId, mode: TokenMode) -> Result<bool> {
        let stmt = sql!("UPDATE clients SET token_mode = ?1 WHERE client_id = ?2");
        self.changed(stmt, vals![mode.as_str(), client_id]).await
    }

    async fn set_client_api_rate_limit(&self, client_id: ClientId, per_minute: Option<u32>) -> Result<bool> {
        let stmt = sql!("UPDATE clients SET api_rate_limit = ?1 WHERE client_id = ?2");
        self.changed(stmt, vals![per_minute, client_id]).await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let key = key.clone();
        run!(self, Write, |s| insert_api_key(s, &key).await)
    }

    async fn list_api_keys(&self, client_id: ClientId) -> Result<Vec<ApiKeyRecord>> {
        let stmt = sql!(ApiKeyRecord: "SELECT {*} FROM api_keys WHERE client_id = ?1 ORDER BY created_at, key_id");
        self.all(Read, stmt, vals![client_id]).await
    }

    async fn revoke_api_keys(&self, client_id: ClientId, selector: &str, at: OffsetDateTime) -> Result<u64> {
        let stmt = sql!(
            "UPDATE api_keys SET revoked_at = ?1
                         WHERE client_id = ?2 AND revoked_at IS NULL AND (key_id = ?3 OR secret_prefix = ?4)"
        );
        self.exec(stmt, vals![at, client_id, selector_as_uuid(selector), selector]).await
    }

    async fn find_api_key(&self, digest: &[u8]) -> Result<Option<AuthenticatedKey>> {
        let stmt = sql!(
            "SELECT k.key_id, k.client_id, k.scope, k.digest, c.token_mode, c.api_rate_limit
                         FROM api_keys k JOIN clients c ON c.client_id = k.client_id
                         WHERE k.digest = ?1 AND k.revoked_at IS NULL"
        );
        self.opt(Lookup, stmt, vals![digest]).await
    }

    async fn find_connection_by_natural_key(&self, key: &NaturalKey) -> Result<Option<ConnectionRecord>> {
        let stmt = sql!(ConnectionRecord: "SELECT {*} FROM connections
                         WHERE client_id = ?1 AND user_id = ?2 AND integration = ?3 AND scope = ?4");
        let params = vals![key.client_id, key.user_id.as_str(), key.integration.as_str(), key.scope.as_str()];
        self.opt(Lookup, stmt, params).await
    }

    async fn get_connection(&self, token_id: TokenId) -> Result<Option<ConnectionRecord>> {
        let stmt = sql!(ConnectionRecord: "SELECT {*} FROM connections WHERE token_id = ?1");
        self.opt(Lookup, stmt, vals![token_id]).await
    }

    async fn get_connection_summary(&self, token_id: TokenId) -> Result<Option<ConnectionSummary>> {
        let stmt = sql!(ConnectionSummary: "SELECT {*} FROM connections WHERE token_id = ?1");
        self.opt(Lookup, stmt, vals![token_id]).await
    }

    async fn insert_connection(&self, r: &ConnectionRecord, event: Option<&OutboxEvent>) -> Result<InsertOutcome> {
        let (token_id, key_version, event) = (r.token_id, r.key_version, event.cloned());
        let mut record = r.clone();
        record.refresh.last_error = short_error(record.refresh.last_error.as_deref());
        let params = record.values();
        if <D::Conn<'static> as Session>::DIALECT == Dialect::Postgres {
            return insert_connection_in_one_statement(self, params, event).await;
        }
        run!(self, Transaction, |s| {
            let retired = sql!("SELECT EXISTS (SELECT 1 FROM retired_tokens WHERE token_id = ?1)");
            if s.one::<bool>(retired, &vals![token_id]).await? {
                return Ok(InsertOutcome::TokenIdRetired);
            }
            let insert = sql!(ConnectionRecord: "INSERT INTO connections ({*}) VALUES ({?*})
                               ON CONFLICT (client_id, user_id, integration, scope) DO NOTHING");
            if s.execute(insert, &params).await? != 1 {
                return Ok(InsertOutcome::NaturalKeyTaken);
            }
            count_wrap(s, key_version).await?;
            if let Some(event) = &event {
                insert_outbox(s, event).await?;
            }
            Ok(InsertOutcome::Inserted)
        })
    }

    async fn update_credentials(&self, u: &CredentialsUpdate) -> Result<bool> {
        let u = u.clone();
        run!(self, Transaction, |s| write_credentials(s, &u, None).await)
    }

    async fn delete_connection(
        &self,
        client_id: ClientId,
        token_id: TokenId,
        event: Option<&OutboxEvent>,
    ) -> Result<bool> {
        let event = event.cloned();
        let deleted = run!(self, Transaction, |s| {
            let delete = sql!("DELETE FROM connections WHERE token_id = ?1 AND client_id = ?2");
            let deleted = s.execute(delete, &vals![token_id, client_id]).await? == 1;
            if deleted {
                let retire =
                    sql!("INSERT INTO retired_tokens (token_id, retired_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING");
                s.execute(retire, &vals![token_id, OffsetDateTime::now_utc()]).await?;
                if let Some(event) = &event {
                    insert_outbox(s, event).await?;
                }
            }
            Ok(deleted)
        })?;
        if deleted && let Err(e) = self.scrub_deleted().await {
            // The deletion is committed; only the scrub of older WAL frames is late. It completes at the next
            // checkpoint, so report success rather than invite a retry that would find nothing.
            tracing::warn!(error = %e, "deleted connection: WAL checkpoint deferred");
        }
        Ok(deleted)
    }

    async fn apply_deletions(&self, deletions: &[DeletionRecord]) -> Result<AppliedDeletions> {
        let batch = deletions.to_vec();
        let applied = run!(self, Transaction, |s| {
            let mut applied = AppliedDeletions::default();
            for d in &batch {
                let delete = sql!("DELETE FROM connections WHERE token_id = ?1 AND client_id = ?2");
                if s.execute(delete, &vals![d.token_id, d.client_id]).await? == 1 {
                    applied.deleted += 1;
                } else {
                    applied.already_absent += 1;
                }
                let retire =
                    sql!("INSERT INTO retired_tokens (token_id, retired_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING");
                s.execute(retire, &vals![d.token_id, d.deleted_at]).await?;
            }
            Ok(applied)
        })?;
        if applied.deleted > 0
            && let Err(e) = self.scrub_deleted().await
        {
            tracing::warn!(error = %e, "re-applied deletions: WAL checkpoint deferred");
        }
        Ok(applied)
    }

    async fn is_token_retired(&self, token_id: TokenId) -> Result<bool> {
        self.one(sql!("SELECT EXISTS (SELECT 1 FROM retired_tokens WHERE token_id = ?1)"), vals![token_id]).await
    }

    async fn count_connections(&self) -> Result<u64> {
        self.one(sql!("SELECT COUNT(*) FROM connections"), []).await
    }

    async fn claim_due_connections(
        &self,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedConnection>> {
        let (owner, lease) = (owner.to_owned(), millis_of(lease));
        run!(self, Transaction, |s| claim_due(s, now, &owner, lease, limit).await)
    }

    async fn claim_connection(
        &self,
        token_id: TokenId,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ConnectionRecord>> {
        let stmt = sql!(ConnectionRecord:
            "UPDATE connections SET lease_owner = ?1, lease_until = {now} + ?2, version = version + 1
             WHERE token_id = ?3 AND status = 'active' AND NOT grant_in_flight
               AND (lease_until IS NULL OR lease_until <= {now})
             RETURNING {*}");
        self.opt(Write, stmt, vals![owner, millis_of(lease), token_id, Value::clock(now)]).await
    }

    async fn mark_grant_in_flight(
        &self,
        token_id: TokenId,
        version: u64,
        owner: &str,
        now: OffsetDateTime,
        min_remaining: std::time::Duration,
    ) -> Result<bool> {
        let stmt = sql!(
            "UPDATE connections SET grant_in_flight = TRUE
                         WHERE token_id = ?1 AND version = ?2 AND lease_owner = ?3 AND lease_until > {now} + ?4"
        );
        self.changed(stmt, vals![token_id, version, owner, millis_of(min_remaining), Value::clock(now)]).await
    }

    async fn complete_refresh(&self, update: &CredentialsUpdate, owner: &str) -> Result<bool> {
        let (u, owner) = (update.clone(), owner.to_owned());
        run!(self, Transaction, |s| write_credentials(s, &u, Some(&owner)).await)
    }

    async fn release_lease(&self, r: &LeaseRelease) -> Result<bool> {
        let params = vals![
            r.next_refresh_at,
            r.refresh_failures,
            short_error(r.last_error.as_deref()),
            r.reauth_warned_at,
            r.token_id,
            r.expected_version,
            &r.owner,
        ];
        let event = r.event.clone();
        run!(self, Transaction, |s| {
            let stmt = sql!(
                "UPDATE connections SET lease_owner = NULL, lease_until = NULL, grant_in_flight = FALSE,
                                 next_refresh_at = ?1, refresh_failures = ?2, last_error = ?3, reauth_warned_at = ?4
                             WHERE token_id = ?5 AND version = ?6 AND lease_owner = ?7"
            );
            let changed = s.execute(stmt, &params).await? == 1;
            if changed && let Some(event) = &event {
                insert_outbox(s, event).await?;
            }
            Ok(changed)
        })
    }

    async fn mark_reauth_required(&self, m: &ReauthMark) -> Result<bool> {
        let params =
            vals![short_error(m.last_error.as_deref()), m.updated_at, m.token_id, m.expected_version, &m.owner];
        let event = m.event.clone();
        run!(self, Transaction, |s| {
            let stmt = sql!(
                "UPDATE connections SET status = 'reauthRequired', lease_owner = NULL, lease_until = NULL,
                                 grant_in_flight = FALSE, next_refresh_at = NULL, last_error = ?1, updated_at = ?2,
                                 version = version + 1
                             WHERE token_id = ?3 AND version = ?4 AND (CAST(?5 AS TEXT) IS NULL OR lease_owner = ?5)"
            );
            let changed = s.execute(stmt, &params).await? == 1;
            if changed {
                insert_outbox(s, &event).await?;
            }
            Ok(changed)
        })
    }

    async fn expired_leases(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<ConnectionRecord>> {
        let stmt = sql!(ConnectionRecord: "SELECT {*} FROM connections
                         WHERE lease_until IS NOT NULL AND lease_until <= {now} ORDER BY lease_until LIMIT ?1");
        self.all(Read, stmt, vals![limit, Value::clock(now)]).await
    }

    async fn take_over_expired_lease(
        &self,
        token_id: TokenId,
        expected_version: u64,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ConnectionRecord>> {
        let stmt = sql!(ConnectionRecord:
            "UPDATE connections SET lease_owner = ?1, lease_until = {now} + ?2, version = version + 1
             WHERE token_id = ?3 AND version = ?4 AND lease_until IS NOT NULL AND lease_until <= {now}
             RETURNING {*}");
        self.opt(Write, stmt, vals![owner, millis_of(lease), token_id, expected_version, Value::clock(now)]).await
    }

    async fn count_due_connections(&self, now: OffsetDateTime) -> Result<u64> {
        self.one(sql!("SELECT COUNT(*) FROM connections WHERE status = 'active' AND next_refresh_at <= ?1"), vals![now])
            .await
    }

    async fn count_pending_outbox(&self) -> Result<u64> {
        self.one(sql!("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL"), []).await
    }

    async fn pending_outbox_events(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        let stmt = sql!(OutboxEvent: "SELECT {*} FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL
                                      ORDER BY created_at, {sqlite:rowid}{pg:seq} LIMIT ?1");
        self.all(Read, stmt, vals![limit]).await
    }
}
