//! The refresh engine: the scheduler loop (claim due rows in batches, refresh within per-integration limits,
//! write back with a compare-and-set), on-demand refresh with single-flight per tokenId, and recovery of
//! leases whose worker died.
//!
//! Every path that may send a refresh grant goes through [`Worker::grant`]: it holds the row's lease, marks
//! the grant in flight only if the lease (on the database clock) outlives the HTTP worst case, and never sends
//! a second grant for the same claim. Whatever happens after the grant is sent, the row records it: a
//! write-back, a release with backoff, `reauthRequired` — or, if the process dies, an expired lease with
//! `grant_in_flight` set, which recovery handles.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use linkvault_domain::schedule::{self, CredentialTimes, Decision, Renewal, SchedulePolicy};
use linkvault_domain::{ClientId, Clock, ConnectionEvent, ConnectionStatus, TokenId};
use linkvault_integrations::{AuthScheme, Catalog, Integration, OAuthClient};
use linkvault_storage::{ClaimedConnection, ConnectionRecord, DynStore, LeaseRelease, ReauthMark, StorageError};
use linkvault_vault::{IntegrationCredentials, Refreshed, Vault, VaultError, connection_event};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::EngineConfig;
use crate::limiter::IntegrationLimiter;
use crate::metrics::{EngineMetrics, Recovery};

/// Extra time the lease must outlive the HTTP worst case by when the grant is sent: the write-back itself
/// must also land inside the lease.
const WRITE_BACK_ALLOWANCE: Duration = Duration::from_secs(2);
/// Expired leases handled per recovery pass.
const RECOVERY_BATCH: u32 = 100;
/// Scheduler passes between two idle sleeps are bounded too; a full batch loops at once, up to this many.
const MAX_BUSY_PASSES: u32 = 1_000;

/// Why an on-demand refresh could not give usable credentials.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// No such tokenId for this client (or deleted): the same answer as for an id that never existed.
    #[error("not found")]
    NotFound,
    /// The connection needs the end user to sign in again.
    #[error("the connection needs re-authentication")]
    ReauthRequired,
    /// The access token has expired and could not be refreshed now (upstream unavailable, or another instance
    /// held the connection for longer than the wait allows). Worth retrying later.
    #[error("the credentials could not be refreshed now: {0}")]
    Unavailable(String),
    /// The integration is not in the catalog, so its credentials cannot be renewed.
    #[error("integration {0} is not in the catalog")]
    UnknownIntegration(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// What started a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Scheduled,
    OnDemand,
    Recovery,
    /// The integration refused the access token on an account call as expired, although our clock says it
    /// is not: refresh now, whatever the schedule says.
    Refused,
}

/// What became of one claimed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// New credentials were written back.
    Refreshed,
    /// Nothing was due after all (e.g. first sight of new credentials); the row was rescheduled.
    NotDue,
    /// `connection.reauthRequiredSoon` was written and the row rescheduled.
    Warned,
    /// The connection became `reauthRequired` (and the app is told through the outbox).
    ReauthRequired,
    /// A transient or configuration failure; the row was released with backoff.
    BackedOff,
    /// The lease would not outlive the HTTP worst case: no grant was sent; the row is due again at once.
    Skipped,
    /// The write-back lost its compare-and-set to another refresh (a bug; counted, logged, not retried).
    Conflict,
    /// New credentials or a deletion landed while refreshing; the result was discarded.
    Superseded,
    /// A storage or vault failure; the lease will expire and recovery takes the row.
    Failed,
}

impl RefreshOutcome {
    fn metric_label(self) -> Option<&'static str> {
        match self {
            RefreshOutcome::Refreshed => Some("success"),
            RefreshOutcome::ReauthRequired => Some("reauth_required"),
            RefreshOutcome::BackedOff => Some("transient"),
            RefreshOutcome::Skipped => Some("skipped"),
            RefreshOutcome::Conflict => Some("conflict"),
            RefreshOutcome::Superseded => Some("superseded"),
            RefreshOutcome::Failed => Some("error"),
            RefreshOutcome::NotDue | RefreshOutcome::Warned => None,
        }
    }
}

/// The token lifecycle engine. Cheap to clone (shared state behind an `Arc`).
#[derive(Debug, Clone)]
pub struct RefreshEngine {
    inner: Arc<Worker>,
}

#[derive(Debug)]
struct Worker {
    vault: Arc<Vault>,
    store: DynStore,
    catalog: Arc<Catalog>,
    oauth: OAuthClient,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    metrics: Arc<EngineMetrics>,
    limiters: Mutex<HashMap<String, Arc<IntegrationLimiter>>>,
    /// Refreshes in flight in this process, by tokenId: on-demand callers wait on the receiver.
    in_flight: Mutex<HashMap<TokenId, watch::Receiver<bool>>>,
    /// Bounds the refreshes in progress (claims never exceed the free slots).
    slots: Arc<Semaphore>,
}

/// Registration of a refresh in [`Worker::in_flight`]; dropping it wakes the waiters.
struct FlightGuard<'a> {
    worker: &'a Worker,
    token_id: TokenId,
    done: watch::Sender<bool>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.worker.in_flight.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.token_id);
        let _ = self.done.send(true);
    }
}

fn policy_of(integration: &Integration) -> SchedulePolicy {
    let t = &integration.timing;
    let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
    SchedulePolicy {
        margin: secs(t.refresh_margin_secs),
        min_refresh_interval: secs(t.min_refresh_interval_secs),
        rotates_refresh_tokens: t.rotates_refresh_tokens,
        refresh_token_lead: SchedulePolicy::lead_for_refresh_ttl(t.refresh_token_ttl_secs.map(secs)),
    }
}

fn times_of(record: &ConnectionRecord) -> CredentialTimes {
    CredentialTimes {
        obtained_at: record.last_refreshed_at.map_or(record.updated_at, |r| r.max(record.updated_at)),
        access_expires_at: record.access_expires_at,
        refresh_expires_at: record.refresh_expires_at,
        reauth_warned: record.refresh.reauth_warned_at.is_some(),
    }
}

fn seed_of(record: &ConnectionRecord, salt: u64) -> u64 {
    schedule::seed_from(record.token_id.as_uuid().as_bytes(), salt)
}

fn renewal_of(integration: &Integration, credentials: &IntegrationCredentials) -> Renewal {
    if integration.auth == AuthScheme::OAuth2 && credentials.refresh_token.is_some() {
        Renewal::RefreshGrant
    } else {
        Renewal::None
    }
}

fn std_duration(d: time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

impl RefreshEngine {
    /// An engine over the vault's store. `oauth` sends the grants (its `HttpLimits` decide how long a lease
    /// must still run when a grant is sent); `clock` is the process clock every schedule is computed on.
    /// Credentials sessions need no client: they cannot be renewed and become `reauthRequired` at expiry.
    pub fn new(
        vault: Arc<Vault>,
        catalog: Arc<Catalog>,
        oauth: OAuthClient,
        clock: Arc<dyn Clock>,
        mut config: EngineConfig,
    ) -> Self {
        let worst = oauth.limits().worst_case() + WRITE_BACK_ALLOWANCE;
        config.lease = config.lease.max(worst * 2);
        config.on_demand_timeout = config.on_demand_timeout.max(config.lease + Duration::from_secs(1));
        config.max_in_flight = config.max_in_flight.max(1);
        let store = Arc::clone(vault.store());
        Self {
            inner: Arc::new(Worker {
                vault,
                store,
                catalog,
                oauth,
                clock,
                slots: Arc::new(Semaphore::new(config.max_in_flight)),
                config,
                metrics: Arc::new(EngineMetrics::default()),
                limiters: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn metrics(&self) -> Arc<EngineMetrics> {
        Arc::clone(&self.inner.metrics)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The scheduler loop, until `shutdown` becomes true (or its sender is dropped). On shutdown it stops
    /// claiming and waits for refreshes in progress (each bounded by the HTTP timeout).
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let worker = &self.inner;
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut last_recovery: Option<tokio::time::Instant> = None;
        let mut last_gauges: Option<tokio::time::Instant> = None;
        tracing::info!(owner = %worker.config.owner, "refresh scheduler started");
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            if last_recovery.is_none_or(|t| t.elapsed() >= worker.config.recovery_interval) {
                last_recovery = Some(tokio::time::Instant::now());
                if let Err(e) = self.recover_expired_leases().await {
                    tracing::warn!(error = %e, "refresh: lease recovery pass failed");
                }
            }
            if last_gauges.is_none_or(|t| t.elapsed() >= worker.config.gauge_interval) {
                last_gauges = Some(tokio::time::Instant::now());
                self.update_gauges().await;
            }
            let mut busy_passes = 0;
            while busy_passes < MAX_BUSY_PASSES && !*shutdown.borrow() {
                busy_passes += 1;
                let free = worker.slots.available_permits().min(worker.config.batch_size as usize);
                if free == 0 {
                    break;
                }
                let now = worker.clock.now();
                let batch = match worker
                    .store
                    .claim_due_connections(now, &worker.config.owner, worker.config.lease, free as u32)
                    .await
                {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::warn!(error = %e, "refresh: claiming due connections failed");
                        break;
                    }
                };
                let full = batch.len() == free;
                for claimed in batch {
                    let Ok(permit) = Arc::clone(&worker.slots).try_acquire_owned() else {
                        // Cannot happen (claims never exceed the free slots and only this loop takes them);
                        // the lease expires and the row is reclaimed if it ever does.
                        tracing::error!("refresh: no free slot for a claimed connection");
                        continue;
                    };
                    let engine = self.clone();
                    tasks.spawn(async move { engine.process_claimed(claimed, permit).await });
                }
                if !full {
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(worker.config.idle_poll) => {}
                _ = shutdown.changed() => {}
                Some(_) = tasks.join_next(), if worker.slots.available_permits() == 0 => {}
            }
        }
        let drain = worker.oauth.limits().worst_case() + WRITE_BACK_ALLOWANCE;
        let _ = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
        tracing::info!(owner = %worker.config.owner, "refresh scheduler stopped");
    }

    /// One scheduler pass without the loop: recovery, then one claimed batch, processed to completion.
    /// Returns the outcomes. For deterministic tests with a manual clock, and for a one-shot sweep.
    pub async fn run_once(&self) -> Result<Vec<(TokenId, RefreshOutcome)>, RefreshError> {
        let worker = &self.inner;
        self.recover_expired_leases().await?;
        let now = worker.clock.now();
        let batch = worker
            .store
            .claim_due_connections(now, &worker.config.owner, worker.config.lease, worker.config.batch_size)
            .await?;
        let mut tasks = JoinSet::new();
        for claimed in batch {
            let engine = self.clone();
            tasks.spawn(async move {
                let token_id = claimed.record.token_id;
                (token_id, engine.inner.process(claimed.record, Some(claimed.due_at), Trigger::Scheduled).await)
            });
        }
        let mut outcomes = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok(outcome) = done {
                outcomes.push(outcome);
            }
        }
        self.update_gauges().await;
        Ok(outcomes)
    }

    async fn process_claimed(&self, claimed: ClaimedConnection, _slot: OwnedSemaphorePermit) {
        if claimed.took_over_expired_lease {
            self.inner.metrics.count_recovery(Recovery::Idle);
        }
        let worker = &self.inner;
        // Registered so that on-demand callers in this process wait for this refresh instead of polling.
        let _guard = worker.try_register(claimed.record.token_id);
        worker.process(claimed.record, Some(claimed.due_at), Trigger::Scheduled).await;
    }

    async fn update_gauges(&self) {
        let worker = &self.inner;
        if let Ok(n) = worker.store.count_due_connections(worker.clock.now()).await {
            worker.metrics.set_due_backlog(n);
        }
        if let Ok(n) = worker.store.count_pending_outbox().await {
            worker.metrics.set_webhook_backlog(n);
        }
    }

    /// Handles leases that expired: without a grant in flight the row is released to the schedule; with one
    /// (the crash window) the grant is retried at once with the stored refresh token if the integration's
    /// reuse grace still covers it, else the connection becomes `reauthRequired` and the app is told.
    /// Returns how many leases were recovered.
    pub async fn recover_expired_leases(&self) -> Result<u64, RefreshError> {
        let worker = &self.inner;
        let expired = worker.store.expired_leases(worker.clock.now(), RECOVERY_BATCH).await?;
        let mut recovered = 0;
        for row in expired {
            if worker.recover_one(&row).await? {
                recovered += 1;
            }
        }
        Ok(recovered)
    }

    /// Credentials for a request using `token_id`, refreshed first if the access token has expired or is
    /// inside the margin. Coalesces with a refresh in flight for the same connection: in this process through
    /// a single-flight map whose waiters are woken when the refresh lands; across instances through the row
    /// lease (the row is re-read until the holder releases it, within a bounded wait).
    pub async fn ensure_fresh(
        &self,
        client_id: ClientId,
        token_id: TokenId,
    ) -> Result<(ConnectionRecord, IntegrationCredentials), RefreshError> {
        self.ensure_fresh_from(client_id, token_id, None).await
    }

    /// [`ensure_fresh`](Self::ensure_fresh) for a caller that has just loaded the row (e.g. to check scope
    /// before anything reaches the integration): the first round uses it instead of reading it again.
    pub async fn ensure_fresh_from(
        &self,
        client_id: ClientId,
        token_id: TokenId,
        mut loaded: Option<ConnectionRecord>,
    ) -> Result<(ConnectionRecord, IntegrationCredentials), RefreshError> {
        let worker = &self.inner;
        let deadline = tokio::time::Instant::now() + worker.config.on_demand_timeout;
        let max_rounds = (worker.config.on_demand_timeout.as_millis()
            / worker.config.on_demand_poll.as_millis().max(1))
        .saturating_add(16);
        let mut attempted = false;
        for _ in 0..max_rounds {
            let current = match loaded.take().filter(|r| r.token_id == token_id) {
                Some(r) => Some(r),
                None => worker.store.get_connection(token_id).await?,
            };
            let record = match current {
                Some(r) if r.client_id == client_id => r,
                _ => return Err(RefreshError::NotFound),
            };
            if record.status != ConnectionStatus::Active {
                return Err(RefreshError::ReauthRequired);
            }
            let integration = worker
                .catalog
                .get(&record.integration)
                .ok_or_else(|| RefreshError::UnknownIntegration(record.integration.clone()))?;
            let credentials = worker.vault.open_credentials(&record).await?;
            let now = worker.clock.now();
            let policy = policy_of(integration);
            let times = times_of(&record);
            let expired = record.access_expires_at.is_some_and(|e| e <= now);
            if !schedule::needs_refresh_on_demand(now, &policy, &times) {
                return Ok((record, credentials));
            }
            if renewal_of(integration, &credentials) == Renewal::None && !expired {
                // Nothing can renew it; it is still valid, so use it (it flips at expiry).
                return Ok((record, credentials));
            }
            if attempted {
                // A refresh (ours or one we waited for) already ran and did not produce fresh credentials.
                return if expired {
                    Err(RefreshError::Unavailable(
                        record.refresh.last_error.clone().unwrap_or_else(|| "refresh did not complete".to_owned()),
                    ))
                } else {
                    Ok((record, credentials))
                };
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            // In-process single flight: wait for a refresh already running here.
            let waiting = worker.in_flight.lock().unwrap_or_else(PoisonError::into_inner).get(&token_id).cloned();
            if let Some(mut done) = waiting {
                worker.metrics.count_coalesced();
                let _ = tokio::time::timeout_at(deadline, done.wait_for(|d| *d)).await;
                attempted = true;
                continue;
            }
            let Some(guard) = worker.try_register(token_id) else { continue };
            let claimed =
                worker.store.claim_connection(token_id, now, &worker.config.owner, worker.config.lease).await?;
            match claimed {
                Some(claimed) => {
                    worker.metrics.count_on_demand();
                    let due_at = claimed.refresh.next_refresh_at;
                    let outcome = worker.process(claimed, due_at, Trigger::OnDemand).await;
                    drop(guard);
                    attempted = !matches!(outcome, RefreshOutcome::Skipped);
                }
                None => {
                    drop(guard);
                    // Leased elsewhere (another instance, or a grant crashed): re-read until it is released.
                    let row = worker.store.get_connection(token_id).await?;
                    if let Some(row) = row
                        && row.refresh.grant_in_flight
                        && row.refresh.lease_until.is_some_and(|u| u <= worker.clock.now())
                    {
                        worker.recover_one(&row).await?;
                        attempted = true;
                        continue;
                    }
                    tokio::time::sleep(worker.config.on_demand_poll).await;
                }
            }
        }
        Err(RefreshError::Unavailable("another worker held the connection for longer than the wait allows".to_owned()))
    }
}

impl RefreshEngine {
    /// The integration refused `refused_access` on an account call. `revoked`: it said the credential is
    /// revoked or invalid (a deleted API key, a revoked grant) — the connection becomes `reauthRequired` with its
    /// webhook. Otherwise it said "expired": a renewable connection is refreshed now (once; a connection already
    /// renewed since `refused_access` was read is not refreshed again) and the fresh credentials returned; one
    /// that cannot be renewed needs the end user.
    pub async fn credential_refused(
        &self,
        client_id: ClientId,
        token_id: TokenId,
        refused_access: &secrecy::SecretString,
        revoked: bool,
    ) -> Result<(ConnectionRecord, IntegrationCredentials), RefreshError> {
        use secrecy::ExposeSecret as _;
        let worker = &self.inner;
        let record = match worker.store.get_connection(token_id).await? {
            Some(r) if r.client_id == client_id => r,
            _ => return Err(RefreshError::NotFound),
        };
        if record.status != ConnectionStatus::Active {
            return Err(RefreshError::ReauthRequired);
        }
        let integration = worker
            .catalog
            .get(&record.integration)
            .ok_or_else(|| RefreshError::UnknownIntegration(record.integration.clone()))?;
        let credentials = worker.vault.open_credentials(&record).await?;
        if credentials.access_token.expose_secret() != refused_access.expose_secret() {
            // Renewed since the caller read it: use the new one.
            return Ok((record, credentials));
        }
        let renewable = renewal_of(integration, &credentials) == Renewal::RefreshGrant;
        let Some(guard) = worker.try_register(token_id) else {
            // A refresh of this connection is already running here: its outcome is what we want.
            return self.ensure_fresh(client_id, token_id).await;
        };
        let now = worker.clock.now();
        let Some(claimed) =
            worker.store.claim_connection(token_id, now, &worker.config.owner, worker.config.lease).await?
        else {
            drop(guard);
            return self.ensure_fresh(client_id, token_id).await;
        };
        let outcome = if revoked || !renewable {
            let reason = if revoked { "credentialRevoked" } else { "credentialRefused" };
            worker.mark_reauth(&claimed, reason).await?
        } else {
            let due_at = claimed.refresh.next_refresh_at;
            worker.process(claimed, due_at, Trigger::Refused).await
        };
        drop(guard);
        if outcome == RefreshOutcome::ReauthRequired {
            return Err(RefreshError::ReauthRequired);
        }
        let record = match worker.store.get_connection(token_id).await? {
            Some(r) if r.client_id == client_id => r,
            _ => return Err(RefreshError::NotFound),
        };
        if record.status != ConnectionStatus::Active {
            return Err(RefreshError::ReauthRequired);
        }
        let credentials = worker.vault.open_credentials(&record).await?;
        if credentials.access_token.expose_secret() == refused_access.expose_secret() {
            return Err(RefreshError::Unavailable(
                record.refresh.last_error.clone().unwrap_or_else(|| "the refresh did not complete".to_owned()),
            ));
        }
        Ok((record, credentials))
    }
}

impl Worker {
    /// Registers a refresh of `token_id` in the single-flight map, unless one is already registered.
    fn try_register(&self, token_id: TokenId) -> Option<FlightGuard<'_>> {
        let mut map = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        match map.entry(token_id) {
            Entry::Occupied(_) => None,
            Entry::Vacant(slot) => {
                let (done, receiver) = watch::channel(false);
                slot.insert(receiver);
                Some(FlightGuard { worker: self, token_id, done })
            }
        }
    }

    fn limiter(&self, integration: &str) -> Arc<IntegrationLimiter> {
        let mut map = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(integration.to_owned()).or_insert_with(|| {
            Arc::new(IntegrationLimiter::new(
                self.config.per_integration_concurrency,
                self.config.per_integration_rate_per_sec,
                self.config.per_integration_burst,
            ))
        }))
    }

    fn count(&self, record: &ConnectionRecord, outcome: RefreshOutcome) -> RefreshOutcome {
        if let Some(label) = outcome.metric_label() {
            self.metrics.count_refresh(&record.integration, label);
        }
        outcome
    }

    /// Decides and acts on a claimed row (the lease is ours, `record.version` is the claim's version).
    async fn process(
        &self,
        record: ConnectionRecord,
        due_at: Option<OffsetDateTime>,
        trigger: Trigger,
    ) -> RefreshOutcome {
        let outcome = match self.process_inner(&record, due_at, trigger).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // The lease stays until it expires; recovery then releases or recovers the row.
                tracing::warn!(error = %e, integration = %record.integration, "refresh failed locally");
                RefreshOutcome::Failed
            }
        };
        self.count(&record, outcome)
    }

    async fn process_inner(
        &self,
        record: &ConnectionRecord,
        due_at: Option<OffsetDateTime>,
        trigger: Trigger,
    ) -> Result<RefreshOutcome, RefreshError> {
        let now = self.clock.now();
        let Some(integration) = self.catalog.get(&record.integration) else {
            let failures = record.refresh.refresh_failures.saturating_add(1);
            let next = schedule::backoff_until(now, failures, seed_of(record, u64::from(failures)), None, None);
            self.release(record, next, failures, Some("integration is not in the catalog".to_owned()), None).await?;
            return Ok(RefreshOutcome::BackedOff);
        };
        let credentials = self.vault.open_credentials(record).await?;
        let policy = policy_of(integration);
        let times = times_of(record);
        let renewal = renewal_of(integration, &credentials);
        let seed = seed_of(record, record.refresh_count);
        let mut decision = schedule::decide(now, renewal, &policy, &times, seed);
        if trigger != Trigger::Scheduled
            && matches!(decision, Decision::Wait { .. })
            && renewal == Renewal::RefreshGrant
            && (matches!(trigger, Trigger::Recovery | Trigger::Refused)
                || schedule::needs_refresh_on_demand(now, &policy, &times))
        {
            decision = Decision::Refresh;
        }
        match decision {
            Decision::Wait { at } => {
                let (failures, last_error) = (record.refresh.refresh_failures, record.refresh.last_error.clone());
                self.release(record, at, failures, last_error, None).await?;
                Ok(RefreshOutcome::NotDue)
            }
            Decision::WarnReauthSoon { next } => {
                let event = connection_event(record, ConnectionEvent::ReauthRequiredSoon, now, None);
                let released = self
                    .store
                    .release_lease(&LeaseRelease {
                        token_id: record.token_id,
                        expected_version: record.version,
                        owner: self.config.owner.clone(),
                        next_refresh_at: next,
                        refresh_failures: record.refresh.refresh_failures,
                        last_error: record.refresh.last_error.clone(),
                        reauth_warned_at: Some(now),
                        event: Some(event),
                    })
                    .await?;
                Ok(if released { RefreshOutcome::Warned } else { RefreshOutcome::Superseded })
            }
            Decision::ReauthRequired { reason } => self.mark_reauth(record, reason.as_str()).await,
            Decision::Refresh => {
                let Some(refresh_token) = credentials.refresh_token.clone() else {
                    // `renewal_of` only yields RefreshGrant with a refresh token; keep the row scheduled.
                    self.release(record, now, record.refresh.refresh_failures, None, None).await?;
                    return Ok(RefreshOutcome::NotDue);
                };
                self.grant(record, integration, &policy, &refresh_token, due_at).await
            }
        }
    }

    async fn release(
        &self,
        record: &ConnectionRecord,
        next: OffsetDateTime,
        failures: u32,
        last_error: Option<String>,
        event: Option<linkvault_storage::OutboxEvent>,
    ) -> Result<bool, RefreshError> {
        Ok(self
            .store
            .release_lease(&LeaseRelease {
                token_id: record.token_id,
                expected_version: record.version,
                owner: self.config.owner.clone(),
                next_refresh_at: next,
                refresh_failures: failures,
                last_error,
                reauth_warned_at: record.refresh.reauth_warned_at,
                event,
            })
            .await?)
    }

    async fn mark_reauth(&self, record: &ConnectionRecord, reason: &str) -> Result<RefreshOutcome, RefreshError> {
        let now = self.clock.now();
        let marked = self
            .store
            .mark_reauth_required(&ReauthMark {
                token_id: record.token_id,
                expected_version: record.version,
                owner: Some(self.config.owner.clone()),
                last_error: Some(reason.to_owned()),
                updated_at: now,
                event: connection_event(record, ConnectionEvent::ReauthRequired, now, Some(reason)),
            })
            .await?;
        if marked {
            tracing::info!(integration = %record.integration, reason, "connection needs re-authentication");
            Ok(RefreshOutcome::ReauthRequired)
        } else {
            Ok(RefreshOutcome::Superseded)
        }
    }

    /// Sends the refresh grant for a claimed row and records the result. The only place a grant is sent.
    async fn grant(
        &self,
        record: &ConnectionRecord,
        integration: &Integration,
        policy: &SchedulePolicy,
        refresh_token: &secrecy::SecretString,
        due_at: Option<OffsetDateTime>,
    ) -> Result<RefreshOutcome, RefreshError> {
        let limiter = self.limiter(&record.integration);
        let Some(_permit) = limiter.acquire().await else {
            return Ok(RefreshOutcome::Skipped);
        };
        let now = self.clock.now();
        let min_remaining = self.oauth.limits().worst_case() + WRITE_BACK_ALLOWANCE;
        if !self
            .store
            .mark_grant_in_flight(record.token_id, record.version, &self.config.owner, now, min_remaining)
            .await?
        {
            // The lease ran down while waiting for the limits (or was lost): send nothing. Release it if it is
            // still ours so the row is due again right away.
            self.metrics.count_short_lease();
            let (failures, last_error) = (record.refresh.refresh_failures, record.refresh.last_error.clone());
            self.release(record, now, failures, last_error, None).await?;
            return Ok(RefreshOutcome::Skipped);
        }
        let result = self.oauth.refresh(integration, refresh_token).await;
        let now = self.clock.now();
        match result {
            Ok(tokens) => {
                let credentials = IntegrationCredentials {
                    access_token: tokens.access_token.clone(),
                    refresh_token: tokens.refresh_token.clone(),
                };
                let refresh_expires_at = if tokens.refresh_token_rotated {
                    tokens.refresh_token_expires_at
                } else {
                    tokens.refresh_token_expires_at.or(record.refresh_expires_at)
                };
                let reauth_warned_at =
                    if tokens.refresh_token_rotated { None } else { record.refresh.reauth_warned_at };
                let times = CredentialTimes {
                    obtained_at: tokens.requested_at,
                    access_expires_at: Some(tokens.expires_at),
                    refresh_expires_at,
                    reauth_warned: reauth_warned_at.is_some(),
                };
                let next = schedule::next_refresh_at(policy, &times, seed_of(record, record.refresh_count + 1));
                let update = self
                    .vault
                    .refreshed_update(
                        record,
                        &Refreshed {
                            credentials: &credentials,
                            access_expires_at: Some(tokens.expires_at),
                            refresh_expires_at,
                            next_refresh_at: next,
                            reauth_warned_at,
                        },
                    )
                    .await?;
                if self.store.complete_refresh(&update, &self.config.owner).await? {
                    if let Some(due) = due_at {
                        self.metrics.observe_lateness(std_duration(now - due));
                    }
                    return Ok(RefreshOutcome::Refreshed);
                }
                Ok(self.lost_write_back(record).await)
            }
            Err(e) if e.needs_reauthentication() => {
                // Re-read first: if new credentials landed meanwhile, the rejected token is simply stale.
                match self.store.get_connection(record.token_id).await? {
                    Some(row)
                        if row.version == record.version
                            && row.refresh.lease_owner.as_deref() == Some(self.config.owner.as_str()) =>
                    {
                        self.mark_reauth(record, "invalid_grant").await
                    }
                    _ => {
                        self.metrics.count_superseded();
                        Ok(RefreshOutcome::Superseded)
                    }
                }
            }
            Err(e) => {
                let failures = record.refresh.refresh_failures.saturating_add(1);
                let retry_after = e.retry_after().and_then(|d| time::Duration::try_from(d).ok());
                let next = schedule::backoff_until(
                    now,
                    failures,
                    seed_of(record, u64::from(failures) ^ record.refresh_count),
                    retry_after,
                    record.access_expires_at,
                );
                if !e.is_transient() {
                    // invalid_client, a protocol violation, configuration: an operator problem with the
                    // integration, not this user's. Back off the same way; the error is on the row and in logs.
                    tracing::warn!(integration = %record.integration, error = %e, "refresh grant refused");
                }
                self.release(record, next, failures, Some(e.to_string()), None).await?;
                Ok(if e.is_transient() { RefreshOutcome::BackedOff } else { RefreshOutcome::Failed })
            }
        }
    }

    /// A write-back that lost its compare-and-set. If another refresh landed (the refresh count moved) two
    /// workers refreshed one connection: a bug, alarmed on. If new credentials or a deletion landed, the
    /// result is just stale. Either way the grant is never sent again for this claim.
    async fn lost_write_back(&self, record: &ConnectionRecord) -> RefreshOutcome {
        let current = self.store.get_connection(record.token_id).await.ok().flatten();
        match current {
            Some(row) if row.refresh_count > record.refresh_count => {
                self.metrics.count_cas_conflict();
                tracing::error!(
                    token_id = %record.token_id,
                    integration = %record.integration,
                    claimed_version = record.version,
                    current_version = row.version,
                    "refresh write-back lost its compare-and-set to another refresh; not retrying the grant"
                );
                RefreshOutcome::Conflict
            }
            _ => {
                self.metrics.count_superseded();
                tracing::info!(integration = %record.integration, "refresh result superseded by newer credentials");
                RefreshOutcome::Superseded
            }
        }
    }

    /// Recovers one expired lease (see [`RefreshEngine::recover_expired_leases`]). `true` if this call took it.
    async fn recover_one(&self, row: &ConnectionRecord) -> Result<bool, RefreshError> {
        let now = self.clock.now();
        let Some(taken) = self
            .store
            .take_over_expired_lease(row.token_id, row.version, now, &self.config.owner, self.config.lease)
            .await?
        else {
            return Ok(false);
        };
        let _guard = self.try_register(taken.token_id);
        if !taken.refresh.grant_in_flight || taken.status != ConnectionStatus::Active {
            self.metrics.count_recovery(Recovery::Idle);
            let next = taken.refresh.next_refresh_at.unwrap_or(now);
            let (failures, last_error) = (taken.refresh.refresh_failures, taken.refresh.last_error.clone());
            self.release(&taken, next, failures, last_error, None).await?;
            return Ok(true);
        }
        // The crash window: the upstream may have rotated the refresh token we hold. The grant was sent at
        // most a lease length before the lease ended; retry only if the reuse grace still covers that.
        let grace = self
            .catalog
            .get(&taken.integration)
            .and_then(|i| i.timing.reuse_grace_secs)
            .map(Duration::from_secs)
            .unwrap_or(Duration::ZERO);
        let sent_at_earliest = row.refresh.lease_until.map(|u| u - self.config.lease);
        let within_grace = !grace.is_zero() && sent_at_earliest.is_some_and(|sent| now - sent < grace);
        if within_grace {
            self.metrics.count_recovery(Recovery::GrantRetried);
            tracing::warn!(integration = %taken.integration, "refresh interrupted mid-grant; retrying within the reuse grace");
            self.process(taken, row.refresh.next_refresh_at, Trigger::Recovery).await;
        } else {
            self.metrics.count_recovery(Recovery::GrantLost);
            tracing::warn!(
                integration = %taken.integration,
                "refresh interrupted mid-grant without a reuse grace; the connection needs re-authentication"
            );
            let outcome = self.mark_reauth(&taken, "refresh_interrupted").await?;
            self.count(&taken, outcome);
        }
        Ok(true)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    /// An API-key connection (key as access token, secret as refresh token, no expiry) is never refreshed,
    /// neither by the scheduler nor on demand, and never becomes reauthRequired by time alone.
    #[test]
    fn api_keys_are_never_renewed_nor_expired() {
        let catalog = Catalog::embedded();
        let integration = catalog.get("binanceInternational").unwrap();
        let credentials = IntegrationCredentials {
            access_token: secrecy::SecretString::from("key".to_owned()),
            refresh_token: Some(secrecy::SecretString::from("secret".to_owned())),
        };
        assert_eq!(renewal_of(integration, &credentials), Renewal::None);
        let obtained_at = OffsetDateTime::UNIX_EPOCH;
        let times =
            CredentialTimes { obtained_at, access_expires_at: None, refresh_expires_at: None, reauth_warned: false };
        let policy = policy_of(integration);
        let much_later = obtained_at + time::Duration::days(3650);
        assert!(matches!(schedule::decide(much_later, Renewal::None, &policy, &times, 0), Decision::Wait { .. }));
        assert!(!schedule::needs_refresh_on_demand(much_later, &policy, &times));
    }
}
