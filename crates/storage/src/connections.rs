//! The [`Store`] methods proper (settings, key versions, clients and API keys, connections and their refresh
//! scheduling), written once for both backends on the SQL layer (`sql`).

use async_trait::async_trait;
use linkvault_domain::{ClientId, ConnectionStatus, NaturalKey, Scope, TokenId, TokenMode};
use time::OffsetDateTime;

use crate::sql::{Dialect, Driver, Mode, Session, SqlRow, Value, corrupt, parse, run, sql, vals};
use crate::wraps::{count_wrap, next_slot};
use crate::{
    ApiKeyRecord, AuthenticatedKey, ClaimedConnection, ClientRecord, ClientTokenStore, ConnectionRecord,
    ConnectionSummary, CredentialsUpdate, InsertOutcome, KeyVersionRecord, LeaseRelease, LinkStore, OutboxEvent,
    ReauthMark, RefreshState, Result, RewrapCandidate, Store, TransferStore, WebhookStore, selector_as_uuid,
    short_error,
};

/// Reads a row selected with `{connection}` (`sql::CONNECTION_COLUMNS`), by position.
pub(crate) fn connection_from_row(r: &dyn SqlRow) -> Result<ConnectionRecord> {
    Ok(ConnectionRecord {
        token_id: r.token_id(0)?,
        client_id: r.client_id(1)?,
        user_id: r.string(2)?,
        integration: r.string(3)?,
        scope: parse::<Scope>("scope", r.text(4)?)?,
        status: parse::<ConnectionStatus>("status", r.text(5)?)?,
        key_version: r.u32(6)?,
        wrapped_data_key: r.bytes(7)?,
        data_key_generation: r.u32(8)?,
        data_key_uses: r.u64(9)?,
        credentials: r.bytes(10)?,
        account_id: r.string_opt(11)?,
        account_name: r.string_opt(12)?,
        access_expires_at: r.time_opt(13)?,
        refresh_expires_at: r.time_opt(14)?,
        last_refreshed_at: r.time_opt(15)?,
        refresh_count: r.u64(16)?,
        created_at: r.time(17)?,
        updated_at: r.time(18)?,
        version: r.u64(19)?,
        refresh: RefreshState {
            next_refresh_at: r.time_opt(20)?,
            lease_owner: r.string_opt(21)?,
            lease_until: r.time_opt(22)?,
            grant_in_flight: r.flag(23)?,
            refresh_failures: r.u32(24)?,
            last_error: r.string_opt(25)?,
            reauth_warned_at: r.time_opt(26)?,
        },
    })
}

fn summary_from_row(r: &dyn SqlRow) -> Result<ConnectionSummary> {
    Ok(ConnectionSummary {
        token_id: r.token_id(0)?,
        client_id: r.client_id(1)?,
        user_id: r.string(2)?,
        integration: r.string(3)?,
        scope: parse::<Scope>("scope", r.text(4)?)?,
        status: parse::<ConnectionStatus>("status", r.text(5)?)?,
        account_id: r.string_opt(6)?,
        account_name: r.string_opt(7)?,
        access_expires_at: r.time_opt(8)?,
        refresh_expires_at: r.time_opt(9)?,
        last_refreshed_at: r.time_opt(10)?,
        refresh_count: r.u64(11)?,
        created_at: r.time(12)?,
        updated_at: r.time(13)?,
    })
}

fn api_key_from_row(r: &dyn SqlRow) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key_id: r.uuid(0)?,
        client_id: r.client_id(1)?,
        scope: parse::<Scope>("scope", r.text(2)?)?,
        digest: r.bytes(3)?,
        secret_prefix: r.string(4)?,
        created_at: r.time(5)?,
        revoked_at: r.time_opt(6)?,
    })
}

pub(crate) fn outbox_from_row(r: &dyn SqlRow) -> Result<OutboxEvent> {
    Ok(OutboxEvent {
        id: r.uuid(0)?,
        client_id: r.client_id(1)?,
        event_type: r.string(2)?,
        payload: r.string(3)?,
        created_at: r.time(4)?,
    })
}

pub(crate) async fn insert_outbox(s: &mut impl Session, e: &OutboxEvent) -> Result<()> {
    s.execute(
        sql!(
            "INSERT INTO outbox (id, client_id, event_type, payload, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)"
        ),
        &vals![e.id, e.client_id, &e.event_type, &e.payload, e.created_at],
    )
    .await?;
    Ok(())
}

async fn insert_api_key(s: &mut impl Session, k: &ApiKeyRecord) -> Result<()> {
    s.execute(
        sql!(
            "INSERT INTO api_keys (key_id, client_id, scope, digest, secret_prefix, created_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ),
        &vals![k.key_id, k.client_id, k.scope.as_str(), &k.digest, &k.secret_prefix, k.created_at, k.revoked_at],
    )
    .await?;
    Ok(())
}

/// The credentials write shared by `update_credentials` (any writer) and `complete_refresh` (the lease owner).
async fn write_credentials(s: &mut impl Session, u: &CredentialsUpdate, owner: Option<&str>) -> Result<bool> {
    let rekey = u.rekey.as_ref();
    let changed = s
        .execute(
            sql!(
                "UPDATE connections SET status = ?1, credentials = ?2, data_key_uses = ?3,
                    key_version = COALESCE(?4, key_version), wrapped_data_key = COALESCE(?5, wrapped_data_key),
                    data_key_generation = COALESCE(?6, data_key_generation),
                    account_id = ?7, account_name = ?8, access_expires_at = ?9, refresh_expires_at = ?10,
                    last_refreshed_at = ?11, refresh_count = ?12, updated_at = ?13, version = version + 1,
                    next_refresh_at = ?16, reauth_warned_at = ?17, lease_owner = NULL, lease_until = NULL,
                    grant_in_flight = FALSE, refresh_failures = 0, last_error = NULL
                 WHERE token_id = ?14 AND version = ?15 AND (CAST(?18 AS TEXT) IS NULL OR lease_owner = ?18)"
            ),
            &vals![
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
            ],
        )
        .await?
        == 1;
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
    let claim = |r: &dyn SqlRow| {
        Ok(ClaimedConnection {
            record: connection_from_row(r)?,
            due_at: r.time(27)?,
            took_over_expired_lease: r.flag(28)?,
        })
    };
    let mut claimed = match S::DIALECT {
        Dialect::Postgres => {
            s.query(
                sql!(
                    "WITH due AS (
                         SELECT token_id, next_refresh_at AS due_at, lease_owner IS NOT NULL AS had_lease
                         FROM connections
                         WHERE status = 'active' AND next_refresh_at <= ?1 AND NOT grant_in_flight
                           AND (lease_until IS NULL OR lease_until <= {now})
                         ORDER BY next_refresh_at LIMIT ?2
                         FOR UPDATE SKIP LOCKED)
                     UPDATE connections c SET lease_owner = ?3, lease_until = {now} + ?4, version = c.version + 1
                     FROM due WHERE c.token_id = due.token_id
                     RETURNING {c.connection}, due.due_at, due.had_lease"
                ),
                &vals![now, limit, owner, lease, clock],
                claim,
            )
            .await?
        }
        Dialect::Sqlite => {
            let due = s
                .query(
                    sql!(
                        "SELECT token_id, lease_owner IS NOT NULL FROM connections
                         WHERE status = 'active' AND next_refresh_at <= ?1 AND NOT grant_in_flight
                           AND (lease_until IS NULL OR lease_until <= {now})
                         ORDER BY next_refresh_at LIMIT ?2"
                    ),
                    &vals![now, limit, clock.clone()],
                    |r| Ok((r.token_id(0)?, r.flag(1)?)),
                )
                .await?;
            let mut claimed = Vec::with_capacity(due.len());
            for (token_id, had_lease) in due {
                let record = s
                    .query_one(
                        sql!(
                            "UPDATE connections SET lease_owner = ?1, lease_until = {now} + ?2, version = version + 1
                             WHERE token_id = ?3 RETURNING {connection}"
                        ),
                        &vals![owner, lease, token_id, clock.clone()],
                        connection_from_row,
                    )
                    .await?;
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
    connection: [Value; 27],
    event: Option<OutboxEvent>,
) -> Result<InsertOutcome> {
    let mut params = connection.to_vec();
    let event = event.as_ref();
    params.extend(vals![
        event.map(|e| e.id),
        event.map(|e| e.client_id),
        event.map(|e| e.event_type.as_str()),
        event.map(|e| e.payload.as_str()),
        event.map(|e| e.created_at),
        next_slot(),
    ]);
    let (retired, inserted) = d
        .one(
            Mode::Write,
            sql!(
                "WITH retired AS (SELECT EXISTS (SELECT 1 FROM retired_tokens WHERE token_id = ?1) AS yes),
                 inserted AS (
                     INSERT INTO connections ({connection})
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                            ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27
                     WHERE NOT (SELECT yes FROM retired)
                     ON CONFLICT (client_id, user_id, integration, scope) DO NOTHING
                     RETURNING key_version),
                 wrapped AS (
                     INSERT INTO key_version_wraps (version, slot, wraps) SELECT key_version, ?33, 1 FROM inserted
                     ON CONFLICT (version, slot) DO UPDATE SET wraps = key_version_wraps.wraps + 1),
                 announced AS (
                     INSERT INTO outbox (id, client_id, event_type, payload, created_at, next_attempt_at)
                     SELECT ?28, ?29, ?30, ?31, ?32, ?32 FROM inserted WHERE CAST(?28 AS UUID) IS NOT NULL)
                 SELECT (SELECT yes FROM retired), EXISTS (SELECT 1 FROM inserted)"
            ),
            params,
            |r| Ok((r.flag(0)?, r.flag(1)?)),
        )
        .await?;
    Ok(if retired {
        InsertOutcome::TokenIdRetired
    } else if inserted {
        InsertOutcome::Inserted
    } else {
        InsertOutcome::NaturalKeyTaken
    })
}

#[async_trait]
impl<D: Driver + LinkStore + WebhookStore + ClientTokenStore + TransferStore> Store for D {
    fn backend(&self) -> &'static str {
        D::BACKEND
    }

    async fn migrate(&self) -> Result<()> {
        self.migrate_schema().await
    }

    async fn ping(&self) -> Result<()> {
        self.count(Mode::Read, sql!("SELECT 1"), []).await.map(drop)
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.opt(Mode::Read, sql!("SELECT value FROM meta WHERE key = ?1"), vals![key], |r| r.string(0)).await
    }

    async fn insert_meta_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        run!(self, Transaction, |s| {
            s.execute(
                sql!("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING"),
                &vals![&key, value],
            )
            .await?;
            s.query_one(sql!("SELECT value FROM meta WHERE key = ?1"), &vals![key], |r| r.string(0)).await
        })
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let params = vals![key, value];
        self.exec(
            Mode::Write,
            sql!(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            params,
        )
        .await
        .map(drop)
    }

    async fn delete_meta(&self, key: &str) -> Result<()> {
        let params = vals![key];
        self.exec(Mode::Write, sql!("DELETE FROM meta WHERE key = ?1"), params).await.map(drop)
    }

    async fn key_versions(&self) -> Result<Vec<KeyVersionRecord>> {
        self.all(
            Mode::Read,
            sql!(
                "SELECT v.version, v.wrapped_key, v.is_current,
                        v.wrap_count + CAST(COALESCE((SELECT SUM(w.wraps) FROM key_version_wraps w
                                                      WHERE w.version = v.version), 0) AS BIGINT),
                        v.created_at
                 FROM key_versions v ORDER BY v.version"
            ),
            [],
            |r| {
                Ok(KeyVersionRecord {
                    version: r.u32(0)?,
                    wrapped_key: r.bytes(1)?,
                    is_current: r.flag(2)?,
                    wrap_count: r.u64(3)?,
                    created_at: r.time(4)?,
                })
            },
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
        self.all(
            Mode::Read,
            sql!(
                "SELECT v.version, (SELECT COUNT(*) FROM connections WHERE key_version = v.version)
                     FROM key_versions v ORDER BY v.version"
            ),
            [],
            |r| Ok((r.u32(0)?, r.u64(1)?)),
        )
        .await
    }

    async fn delete_key_version_if_unused(&self, version: u32) -> Result<bool> {
        self.exec(
            Mode::Write,
            sql!(
                "DELETE FROM key_versions WHERE version = ?1 AND NOT is_current
                     AND NOT EXISTS (SELECT 1 FROM connections WHERE key_version = ?1)"
            ),
            vals![version],
        )
        .await
        .map(|n| n == 1)
    }

    async fn connections_needing_rewrap(&self, current: u32, limit: u32) -> Result<Vec<RewrapCandidate>> {
        self.all(
            Mode::Read,
            sql!(
                "SELECT token_id, client_id, key_version, data_key_generation, wrapped_data_key
                     FROM connections WHERE key_version <> ?1 LIMIT ?2"
            ),
            vals![current, limit],
            |r| {
                Ok(RewrapCandidate {
                    token_id: r.token_id(0)?,
                    client_id: r.client_id(1)?,
                    key_version: r.u32(2)?,
                    data_key_generation: r.u32(3)?,
                    wrapped_data_key: r.bytes(4)?,
                })
            },
        )
        .await
    }

    async fn rewrap_data_key(&self, c: &RewrapCandidate, new_version: u32, wrapped: &[u8]) -> Result<bool> {
        let params = vals![new_version, wrapped, c.token_id, c.key_version, c.data_key_generation];
        run!(self, Transaction, |s| {
            let changed = s
                .execute(
                    sql!(
                        "UPDATE connections SET key_version = ?1, wrapped_data_key = ?2
                         WHERE token_id = ?3 AND key_version = ?4 AND data_key_generation = ?5"
                    ),
                    &params,
                )
                .await?
                == 1;
            if changed {
                count_wrap(s, new_version).await?;
            }
            Ok(changed)
        })
    }

    async fn insert_client(&self, client: &ClientRecord, keys: &[ApiKeyRecord]) -> Result<()> {
        let params =
            vals![client.client_id, &client.name, client.token_mode.as_str(), client.created_at, client.api_rate_limit];
        let keys = keys.to_vec();
        run!(self, Transaction, |s| {
            s.execute(
                sql!(
                    "INSERT INTO clients (client_id, name, token_mode, created_at, api_rate_limit)
                         VALUES (?1, ?2, ?3, ?4, ?5)"
                ),
                &params,
            )
            .await?;
            for key in &keys {
                insert_api_key(s, key).await?;
            }
            Ok(())
        })
    }

    async fn get_client(&self, client_id: ClientId) -> Result<Option<ClientRecord>> {
        self.opt(
            Mode::Read,
            sql!("SELECT client_id, name, token_mode, created_at, api_rate_limit FROM clients WHERE client_id = ?1"),
            vals![client_id],
            |r| {
                Ok(ClientRecord {
                    client_id: r.client_id(0)?,
                    name: r.string(1)?,
                    token_mode: parse::<TokenMode>("token_mode", r.text(2)?)?,
                    created_at: r.time(3)?,
                    api_rate_limit: rate_limit(r.int_opt(4)?)?,
                })
            },
        )
        .await
    }

    async fn set_client_token_mode(&self, client_id: ClientId, mode: TokenMode) -> Result<bool> {
        self.exec(
            Mode::Write,
            sql!("UPDATE clients SET token_mode = ?1 WHERE client_id = ?2"),
            vals![mode.as_str(), client_id],
        )
        .await
        .map(|n| n == 1)
    }

    async fn set_client_api_rate_limit(&self, client_id: ClientId, per_minute: Option<u32>) -> Result<bool> {
        self.exec(
            Mode::Write,
            sql!("UPDATE clients SET api_rate_limit = ?1 WHERE client_id = ?2"),
            vals![per_minute, client_id],
        )
        .await
        .map(|n| n == 1)
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let key = key.clone();
        run!(self, Write, |s| insert_api_key(s, &key).await)
    }

    async fn list_api_keys(&self, client_id: ClientId) -> Result<Vec<ApiKeyRecord>> {
        self.all(
            Mode::Read,
            sql!(
                "SELECT key_id, client_id, scope, digest, secret_prefix, created_at, revoked_at
                     FROM api_keys WHERE client_id = ?1 ORDER BY created_at, key_id"
            ),
            vals![client_id],
            api_key_from_row,
        )
        .await
    }

    async fn revoke_api_keys(&self, client_id: ClientId, selector: &str, at: OffsetDateTime) -> Result<u64> {
        let params = vals![at, client_id, selector_as_uuid(selector), selector];
        self.exec(
            Mode::Write,
            sql!(
                "UPDATE api_keys SET revoked_at = ?1
                     WHERE client_id = ?2 AND revoked_at IS NULL AND (key_id = ?3 OR secret_prefix = ?4)"
            ),
            params,
        )
        .await
    }

    async fn find_api_key(&self, digest: &[u8]) -> Result<Option<AuthenticatedKey>> {
        let params = vals![digest];
        self.opt(
            Mode::Lookup,
            sql!(
                "SELECT k.key_id, k.client_id, k.scope, k.digest, c.token_mode, c.api_rate_limit
                     FROM api_keys k JOIN clients c ON c.client_id = k.client_id
                     WHERE k.digest = ?1 AND k.revoked_at IS NULL"
            ),
            params,
            |r| {
                Ok(AuthenticatedKey {
                    key_id: r.uuid(0)?,
                    client_id: r.client_id(1)?,
                    scope: parse::<Scope>("scope", r.text(2)?)?,
                    digest: r.bytes(3)?,
                    token_mode: parse::<TokenMode>("token_mode", r.text(4)?)?,
                    api_rate_limit: rate_limit(r.int_opt(5)?)?,
                })
            },
        )
        .await
    }

    async fn find_connection_by_natural_key(&self, key: &NaturalKey) -> Result<Option<ConnectionRecord>> {
        let params = vals![key.client_id, key.user_id.as_str(), key.integration.as_str(), key.scope.as_str()];
        self.opt(
            Mode::Lookup,
            sql!(
                "SELECT {connection} FROM connections
                     WHERE client_id = ?1 AND user_id = ?2 AND integration = ?3 AND scope = ?4"
            ),
            params,
            connection_from_row,
        )
        .await
    }

    async fn get_connection(&self, token_id: TokenId) -> Result<Option<ConnectionRecord>> {
        self.opt(
            Mode::Lookup,
            sql!("SELECT {connection} FROM connections WHERE token_id = ?1"),
            vals![token_id],
            connection_from_row,
        )
        .await
    }

    async fn get_connection_summary(&self, token_id: TokenId) -> Result<Option<ConnectionSummary>> {
        self.opt(Mode::Lookup, sql!(
                    "SELECT token_id, client_id, user_id, integration, scope, status, account_id, account_name,
                            access_expires_at, refresh_expires_at, last_refreshed_at, refresh_count, created_at, updated_at
                     FROM connections WHERE token_id = ?1"
                ), vals![token_id], summary_from_row).await
    }

    async fn insert_connection(&self, r: &ConnectionRecord, event: Option<&OutboxEvent>) -> Result<InsertOutcome> {
        let (token_id, key_version, event) = (r.token_id, r.key_version, event.cloned());
        let params = vals![
            r.token_id,
            r.client_id,
            &r.user_id,
            &r.integration,
            r.scope.as_str(),
            r.status.as_str(),
            r.key_version,
            &r.wrapped_data_key,
            r.data_key_generation,
            r.data_key_uses,
            &r.credentials,
            &r.account_id,
            &r.account_name,
            r.access_expires_at,
            r.refresh_expires_at,
            r.last_refreshed_at,
            r.refresh_count,
            r.created_at,
            r.updated_at,
            r.version,
            r.refresh.next_refresh_at,
            &r.refresh.lease_owner,
            r.refresh.lease_until,
            r.refresh.grant_in_flight,
            r.refresh.refresh_failures,
            short_error(r.refresh.last_error.as_deref()),
            r.refresh.reauth_warned_at,
        ];
        if <D::Conn<'static> as Session>::DIALECT == Dialect::Postgres {
            return insert_connection_in_one_statement(self, params, event).await;
        }
        run!(self, Transaction, |s| {
            let retired = s
                .query_one(
                    sql!("SELECT EXISTS (SELECT 1 FROM retired_tokens WHERE token_id = ?1)"),
                    &vals![token_id],
                    |r| r.flag(0),
                )
                .await?;
            if retired {
                return Ok(InsertOutcome::TokenIdRetired);
            }
            let inserted = s
                .execute(
                    sql!(
                        "INSERT INTO connections ({connection})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                                 ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)
                         ON CONFLICT (client_id, user_id, integration, scope) DO NOTHING"
                    ),
                    &params,
                )
                .await?
                == 1;
            if !inserted {
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
            let deleted = s
                .execute(
                    sql!("DELETE FROM connections WHERE token_id = ?1 AND client_id = ?2"),
                    &vals![token_id, client_id],
                )
                .await?
                == 1;
            if deleted {
                s.execute(
                    sql!("INSERT INTO retired_tokens (token_id, retired_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING"),
                    &vals![token_id, OffsetDateTime::now_utc()],
                )
                .await?;
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

    async fn is_token_retired(&self, token_id: TokenId) -> Result<bool> {
        self.one(
            Mode::Read,
            sql!("SELECT EXISTS (SELECT 1 FROM retired_tokens WHERE token_id = ?1)"),
            vals![token_id],
            |r| r.flag(0),
        )
        .await
    }

    async fn count_connections(&self) -> Result<u64> {
        self.count(Mode::Read, sql!("SELECT COUNT(*) FROM connections"), []).await
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
        let params = vals![owner, millis_of(lease), token_id, Value::clock(now)];
        self.opt(
            Mode::Write,
            sql!(
                "UPDATE connections SET lease_owner = ?1, lease_until = {now} + ?2, version = version + 1
                     WHERE token_id = ?3 AND status = 'active' AND NOT grant_in_flight
                       AND (lease_until IS NULL OR lease_until <= {now})
                     RETURNING {connection}"
            ),
            params,
            connection_from_row,
        )
        .await
    }

    async fn mark_grant_in_flight(
        &self,
        token_id: TokenId,
        version: u64,
        owner: &str,
        now: OffsetDateTime,
        min_remaining: std::time::Duration,
    ) -> Result<bool> {
        let params = vals![token_id, version, owner, millis_of(min_remaining), Value::clock(now)];
        self.exec(
            Mode::Write,
            sql!(
                "UPDATE connections SET grant_in_flight = TRUE
                     WHERE token_id = ?1 AND version = ?2 AND lease_owner = ?3 AND lease_until > {now} + ?4"
            ),
            params,
        )
        .await
        .map(|n| n == 1)
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
            let changed = s
                .execute(
                    sql!(
                        "UPDATE connections SET lease_owner = NULL, lease_until = NULL, grant_in_flight = FALSE,
                            next_refresh_at = ?1, refresh_failures = ?2, last_error = ?3, reauth_warned_at = ?4
                         WHERE token_id = ?5 AND version = ?6 AND lease_owner = ?7"
                    ),
                    &params,
                )
                .await?
                == 1;
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
            let changed = s
                .execute(
                    sql!(
                        "UPDATE connections SET status = 'reauthRequired', lease_owner = NULL, lease_until = NULL,
                            grant_in_flight = FALSE, next_refresh_at = NULL, last_error = ?1, updated_at = ?2,
                            version = version + 1
                         WHERE token_id = ?3 AND version = ?4 AND (CAST(?5 AS TEXT) IS NULL OR lease_owner = ?5)"
                    ),
                    &params,
                )
                .await?
                == 1;
            if changed {
                insert_outbox(s, &event).await?;
            }
            Ok(changed)
        })
    }

    async fn expired_leases(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<ConnectionRecord>> {
        self.all(
            Mode::Read,
            sql!(
                "SELECT {connection} FROM connections
                     WHERE lease_until IS NOT NULL AND lease_until <= {now} ORDER BY lease_until LIMIT ?1"
            ),
            vals![limit, Value::clock(now)],
            connection_from_row,
        )
        .await
    }

    async fn take_over_expired_lease(
        &self,
        token_id: TokenId,
        expected_version: u64,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ConnectionRecord>> {
        let params = vals![owner, millis_of(lease), token_id, expected_version, Value::clock(now)];
        self.opt(
            Mode::Write,
            sql!(
                "UPDATE connections SET lease_owner = ?1, lease_until = {now} + ?2, version = version + 1
                     WHERE token_id = ?3 AND version = ?4 AND lease_until IS NOT NULL AND lease_until <= {now}
                     RETURNING {connection}"
            ),
            params,
            connection_from_row,
        )
        .await
    }

    async fn count_due_connections(&self, now: OffsetDateTime) -> Result<u64> {
        self.count(
            Mode::Read,
            sql!("SELECT COUNT(*) FROM connections WHERE status = 'active' AND next_refresh_at <= ?1"),
            vals![now],
        )
        .await
    }

    async fn count_pending_outbox(&self) -> Result<u64> {
        self.count(
            Mode::Read,
            sql!("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL"),
            [],
        )
        .await
    }

    async fn pending_outbox_events(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        self.all(
            Mode::Read,
            sql!(
                "SELECT id, client_id, event_type, payload, created_at FROM outbox
                     WHERE delivered_at IS NULL AND given_up_at IS NULL ORDER BY created_at, {sqlite:rowid}{pg:seq}
                     LIMIT ?1"
            ),
            vals![limit],
            outbox_from_row,
        )
        .await
    }
}

/// `clients.api_rate_limit`: NULL or a positive count per minute (the schema's CHECK).
fn rate_limit(raw: Option<i64>) -> Result<Option<u32>> {
    raw.map(|n| u32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| corrupt("api_rate_limit", n))).transpose()
}
