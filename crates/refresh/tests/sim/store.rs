//! The simulated store: the connection rows, their leases and the outbox in memory, with the same
//! compare-and-set rules as the SQLite store (leases on the caller's clock), a seeded latency before and
//! after every operation (so a crash can land on either side of a commit) and now and then a slow write.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use linkvault_domain::{ConnectionStatus, NaturalKey, TokenId};
use linkvault_storage::*;
use time::OffsetDateTime;

use super::rng::SimRng;

#[derive(Debug, Default)]
pub struct State {
    pub rows: BTreeMap<TokenId, ConnectionRecord>,
    pub outbox: Vec<OutboxEvent>,
    /// Connections whose row a slow write touched (an injected fault that may cost a lease).
    pub slow_writes: Vec<TokenId>,
    /// `reauthRequired` marks that committed but whose caller has not heard back: still on their way back
    /// (the answer's latency), or never, because the caller crashed. The row and its event are durable; the
    /// in-memory counter of the process counts the mark only once it hears (and a crashed one never does, as in
    /// production).
    pub unheard_marks: u64,
    /// The audit chain's head (position, last MAC): kept in memory, as the engine appends one record per refresh.
    pub audit_head: (u64, Vec<u8>),
}

#[derive(Debug)]
pub struct SimStore {
    pub inner: SqliteStore,
    pub state: Mutex<State>,
    pub rng: Arc<Mutex<SimRng>>,
    pub keys: Mutex<Option<Vec<KeyVersionRecord>>>,
    /// Per-mille of writes that are slow (up to `slow_write`).
    pub slow_per_mille: u64,
    pub slow_write: Duration,
}

/// Leases `r` to `owner` until `now + lease`, bumping the fencing version (every claim and take-over does).
fn take_lease(r: &mut ConnectionRecord, owner: &str, now: OffsetDateTime, lease: Duration) -> ConnectionRecord {
    r.refresh.lease_owner = Some(owner.to_owned());
    r.refresh.lease_until = Some(now + ms(lease));
    r.version += 1;
    r.clone()
}

fn ms(d: Duration) -> time::Duration {
    time::Duration::milliseconds(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl SimStore {
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn latency(&self, write: bool, token: Option<TokenId>) {
        let d = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            if write && rng.below(1000) < self.slow_per_mille {
                if let Some(t) = token {
                    self.state().slow_writes.push(t);
                }
                Duration::from_millis(rng.below(self.slow_write.as_millis() as u64 + 1))
            } else {
                Duration::from_micros(rng.below(3000))
            }
        };
        tokio::time::sleep(d).await;
    }

    pub async fn freeze_keys(&self) -> Result<()> {
        let keys = self.inner.key_versions().await?;
        *self.keys.lock().unwrap_or_else(PoisonError::into_inner) = Some(keys);
        Ok(())
    }

    pub async fn sim_key_versions(&self) -> Result<Vec<KeyVersionRecord>> {
        let frozen = self.keys.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match frozen {
            Some(keys) => Ok(keys),
            None => self.inner.key_versions().await,
        }
    }

    pub async fn sim_find_connection_by_natural_key(&self, key: &NaturalKey) -> Result<Option<ConnectionRecord>> {
        let st = self.state();
        Ok(st
            .rows
            .values()
            .find(|r| {
                r.client_id == key.client_id
                    && r.user_id == key.user_id.as_str()
                    && r.integration == key.integration.as_str()
                    && r.scope == key.scope
            })
            .cloned())
    }

    pub async fn sim_get_connection(&self, token_id: TokenId) -> Result<Option<ConnectionRecord>> {
        self.latency(false, None).await;
        Ok(self.state().rows.get(&token_id).cloned())
    }

    pub async fn sim_get_connection_summary(&self, token_id: TokenId) -> Result<Option<ConnectionSummary>> {
        Ok(self.state().rows.get(&token_id).map(ConnectionSummary::from))
    }

    pub async fn sim_insert_connection(
        &self,
        record: &ConnectionRecord,
        event: Option<&OutboxEvent>,
    ) -> Result<InsertOutcome> {
        let mut st = self.state();
        st.rows.insert(record.token_id, record.clone());
        if let Some(e) = event {
            st.outbox.push(e.clone());
        }
        Ok(InsertOutcome::Inserted)
    }

    pub async fn sim_is_token_retired(&self, _token_id: TokenId) -> Result<bool> {
        Ok(false)
    }

    fn write_credentials(&self, u: &CredentialsUpdate, owner: Option<&str>) -> bool {
        let mut st = self.state();
        let Some(r) = st.rows.get_mut(&u.token_id) else { return false };
        if r.version != u.expected_version || owner.is_some_and(|o| r.refresh.lease_owner.as_deref() != Some(o)) {
            return false;
        }
        r.status = u.status;
        r.credentials = u.credentials.clone();
        r.data_key_uses = u.data_key_uses;
        if let Some(k) = &u.rekey {
            r.key_version = k.key_version;
            r.wrapped_data_key = k.wrapped_data_key.clone();
            r.data_key_generation = k.data_key_generation;
        }
        r.account_id = u.account_id.clone();
        r.account_name = u.account_name.clone();
        r.access_expires_at = u.access_expires_at;
        r.refresh_expires_at = u.refresh_expires_at;
        r.last_refreshed_at = u.last_refreshed_at;
        r.refresh_count = u.refresh_count;
        r.updated_at = u.updated_at;
        r.version += 1;
        r.refresh.next_refresh_at = u.next_refresh_at;
        r.refresh.reauth_warned_at = u.reauth_warned_at;
        r.refresh.last_refreshed_by = owner.map(str::to_owned);
        r.refresh.lease_owner = None;
        r.refresh.lease_until = None;
        r.refresh.grant_in_flight = false;
        r.refresh.refresh_failures = 0;
        r.refresh.last_error = None;
        if let Some(e) = &u.event {
            st.outbox.push(e.clone());
        }
        true
    }

    pub async fn sim_update_credentials(&self, u: &CredentialsUpdate) -> Result<bool> {
        self.latency(true, Some(u.token_id)).await;
        let done = self.write_credentials(u, None);
        self.latency(false, None).await;
        Ok(done)
    }

    pub async fn sim_complete_refresh(&self, u: &CredentialsUpdate, owner: &str) -> Result<bool> {
        self.latency(true, Some(u.token_id)).await;
        let done = self.write_credentials(u, Some(owner));
        self.latency(false, None).await;
        Ok(done)
    }

    pub async fn sim_claim_due_connections(
        &self,
        now: OffsetDateTime,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedConnection>> {
        self.latency(true, None).await;
        let claimed = {
            let mut st = self.state();
            let mut due: Vec<(OffsetDateTime, TokenId)> = st
                .rows
                .values()
                .filter(|r| {
                    r.status == ConnectionStatus::Active
                        && r.refresh.next_refresh_at.is_some_and(|n| n <= now)
                        && !r.refresh.grant_in_flight
                        && r.refresh.lease_until.is_none_or(|u| u <= now)
                })
                .filter_map(|r| r.refresh.next_refresh_at.map(|n| (n, r.token_id)))
                .collect();
            due.sort();
            due.truncate(limit as usize);
            let mut claimed = Vec::with_capacity(due.len());
            for (due_at, token_id) in due {
                if let Some(r) = st.rows.get_mut(&token_id) {
                    let had_lease = r.refresh.lease_owner.is_some();
                    let record = take_lease(r, owner, now, lease);
                    claimed.push(ClaimedConnection { record, due_at, took_over_expired_lease: had_lease });
                }
            }
            claimed
        };
        self.latency(false, None).await;
        Ok(claimed)
    }

    pub async fn sim_claim_connection(
        &self,
        token_id: TokenId,
        now: OffsetDateTime,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<ConnectionRecord>> {
        self.latency(true, None).await;
        let claimed = {
            let mut st = self.state();
            match st.rows.get_mut(&token_id) {
                Some(r)
                    if r.status == ConnectionStatus::Active
                        && !r.refresh.grant_in_flight
                        && r.refresh.lease_until.is_none_or(|u| u <= now) =>
                {
                    Some(take_lease(r, owner, now, lease))
                }
                _ => None,
            }
        };
        self.latency(false, None).await;
        Ok(claimed)
    }

    pub async fn sim_mark_grant_in_flight(
        &self,
        token_id: TokenId,
        version: u64,
        owner: &str,
        now: OffsetDateTime,
        min_remaining: Duration,
    ) -> Result<bool> {
        self.latency(true, Some(token_id)).await;
        let done = {
            let mut st = self.state();
            match st.rows.get_mut(&token_id) {
                Some(r)
                    if r.version == version
                        && r.refresh.lease_owner.as_deref() == Some(owner)
                        && r.refresh.lease_until.is_some_and(|u| u > now + ms(min_remaining)) =>
                {
                    r.refresh.grant_in_flight = true;
                    true
                }
                _ => false,
            }
        };
        self.latency(false, None).await;
        Ok(done)
    }

    pub async fn sim_release_lease(&self, rel: &LeaseRelease) -> Result<bool> {
        self.latency(true, Some(rel.token_id)).await;
        let done = {
            let mut st = self.state();
            let changed = match st.rows.get_mut(&rel.token_id) {
                Some(r)
                    if r.version == rel.expected_version && r.refresh.lease_owner.as_deref() == Some(&rel.owner) =>
                {
                    r.refresh.lease_owner = None;
                    r.refresh.lease_until = None;
                    r.refresh.grant_in_flight = false;
                    r.refresh.next_refresh_at = Some(rel.next_refresh_at);
                    r.refresh.refresh_failures = rel.refresh_failures;
                    r.refresh.last_error = rel.last_error.clone();
                    r.refresh.reauth_warned_at = rel.reauth_warned_at;
                    true
                }
                _ => false,
            };
            if changed && let Some(e) = &rel.event {
                st.outbox.push(e.clone());
            }
            changed
        };
        self.latency(false, None).await;
        Ok(done)
    }

    pub async fn sim_mark_reauth_required(&self, m: &ReauthMark) -> Result<bool> {
        self.latency(true, Some(m.token_id)).await;
        let done = {
            let mut st = self.state();
            let changed = match st.rows.get_mut(&m.token_id) {
                Some(r)
                    if r.version == m.expected_version
                        && m.owner.as_deref().is_none_or(|o| r.refresh.lease_owner.as_deref() == Some(o)) =>
                {
                    r.status = ConnectionStatus::ReauthRequired;
                    r.refresh.lease_owner = None;
                    r.refresh.lease_until = None;
                    r.refresh.grant_in_flight = false;
                    r.refresh.next_refresh_at = None;
                    r.refresh.last_error = m.last_error.clone();
                    r.updated_at = m.updated_at;
                    r.version += 1;
                    true
                }
                _ => false,
            };
            if changed {
                st.outbox.push(m.event.clone());
            }
            changed
        };
        if done {
            self.state().unheard_marks += 1;
        }
        self.latency(false, None).await;
        if done {
            self.state().unheard_marks -= 1;
        }
        Ok(done)
    }

    pub async fn sim_expired_leases(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<ConnectionRecord>> {
        self.latency(false, None).await;
        let st = self.state();
        let mut rows: Vec<&ConnectionRecord> =
            st.rows.values().filter(|r| r.refresh.lease_until.is_some_and(|u| u <= now)).collect();
        rows.sort_by_key(|r| (r.refresh.lease_until, r.token_id));
        Ok(rows.into_iter().take(limit as usize).cloned().collect())
    }

    pub async fn sim_take_over_expired_lease(
        &self,
        token_id: TokenId,
        expected_version: u64,
        now: OffsetDateTime,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<ConnectionRecord>> {
        self.latency(true, None).await;
        let taken = {
            let mut st = self.state();
            match st.rows.get_mut(&token_id) {
                Some(r) if r.version == expected_version && r.refresh.lease_until.is_some_and(|u| u <= now) => {
                    Some(take_lease(r, owner, now, lease))
                }
                _ => None,
            }
        };
        self.latency(false, None).await;
        Ok(taken)
    }

    pub async fn sim_count_due_connections(&self, now: OffsetDateTime) -> Result<u64> {
        let st = self.state();
        Ok(st
            .rows
            .values()
            .filter(|r| r.status == ConnectionStatus::Active && r.refresh.next_refresh_at.is_some_and(|n| n <= now))
            .count() as u64)
    }

    pub async fn sim_count_pending_outbox(&self) -> Result<u64> {
        Ok(self.state().outbox.len() as u64)
    }

    pub async fn sim_pending_outbox_events(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        Ok(self.state().outbox.iter().take(limit as usize).cloned().collect())
    }
}
