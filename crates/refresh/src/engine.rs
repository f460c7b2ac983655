//! The refresh engine: the scheduler loop (claim due rows in batches, refresh within per-integration limits,
//! write back with a compare-and-set), on-demand refresh with single-flight per tokenId, and recovery of
//! leases whose worker died.
//!
//! Every path that may send a refresh grant goes through [`Worker::grant`]: it holds the row's lease, marks
//! the grant in flight only if the lease (on the database clock) outlives the HTTP worst case plus the
//! write-back allowance, and presents a refresh token again only when it is provably safe: the first request
//! was never sent, the integration does not rotate, or its reuse grace still covers the new presentation.
//! Whatever happens after the grant is sent, the row records it: a write-back, a release with backoff,
//! `reauthRequired` — or, if the process dies, an expired lease with `grant_in_flight` set, which recovery
//! handles.
//!
//! Grants belong to the engine, never to a request: every claim-to-write-back runs in a task the engine owns
//! ("a flight", registered per tokenId in this process), and requests only wait for its outcome, so a client
//! that hangs up cancels nothing but its own wait.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use linkvault_domain::schedule::{self, CredentialTimes, Decision, Renewal, SchedulePolicy};
use linkvault_domain::{ClientId, Clock, ConnectionEvent, ConnectionStatus, TokenId};
use linkvault_integrations::oauth::{OAuthError, TokenSet};
use linkvault_integrations::{AuthScheme, Catalog, Integration, OAuthClient};
use linkvault_storage::{ClaimedConnection, ConnectionRecord, DynStore, LeaseRelease, ReauthMark, StorageError};
use linkvault_vault::{IntegrationCredentials, Refreshed, Vault, VaultError, connection_event};
use secrecy::SecretString;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

/// Sends refresh grants: [`OAuthClient`] in production; the deterministic simulator injects its upstream.
#[async_trait::async_trait]
pub trait GrantSender: Send + Sync + std::fmt::Debug {
    /// The longest one grant can take; a lease must outlive it (plus the write-back) when a grant is sent.
    fn worst_case(&self) -> Duration;
    /// The refresh grant. [`OAuthError::OutcomeUnknown`] means "sent, no answer" and must be told apart
    /// from failures that prove nothing was sent.
    async fn refresh(&self, integration: &Integration, refresh_token: &SecretString) -> Result<TokenSet, OAuthError>;
}

#[async_trait::async_trait]
impl GrantSender for OAuthClient {
    fn worst_case(&self) -> Duration {
        self.limits().worst_case()
    }

    async fn refresh(&self, integration: &Integration, refresh_token: &SecretString) -> Result<TokenSet, OAuthError> {
        OAuthClient::refresh(self, integration, refresh_token).await
    }
}

use crate::config::EngineConfig;
use crate::limiter::IntegrationLimiter;
use crate::metrics::{EngineMetrics, Recovery};

/// Grants sent for one claim at most: the first, and retries inside the reuse grace after "no answer".
const MAX_GRANT_ATTEMPTS: u32 = 3;
/// The reason a connection gets when a grant of a rotating integration went unanswered past the grace.
pub const REASON_OUTCOME_UNKNOWN: &str = "refreshOutcomeUnknown";
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
    grants: Arc<dyn GrantSender>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    metrics: Arc<EngineMetrics>,
    limiters: Mutex<HashMap<String, Arc<IntegrationLimiter>>>,
    /// Refreshes in flight in this process, by tokenId: callers wait on the receiver for the flight's end.
    in_flight: Mutex<HashMap<TokenId, FlightWatch>>,
    /// Bounds the refreshes in progress (claims never exceed the free slots).
    slots: Arc<Semaphore>,
    /// Bounds the recoveries in progress, apart from the scheduler's slots.
    recovery_slots: Arc<Semaphore>,
    /// A recovery pass is running (the scheduler starts at most one at a time).
    recovering: std::sync::atomic::AtomicBool,
    /// Every task the engine owns (flights, recovery passes): they outlive the requests that started them.
    tasks: Mutex<JoinSet<()>>,
}

/// How a flight ended, for the callers waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlightEnd {
    /// The flight held the row and did this with it.
    Done(RefreshOutcome),
    /// The row was not ours to take (leased elsewhere, not active, gone).
    NotClaimed,
}

type FlightWatch = watch::Receiver<Option<FlightEnd>>;

/// Registration of a flight in [`Worker::in_flight`]; dropping it (also when the task is aborted, as in a
/// crash) unregisters it and wakes the waiters.
struct FlightGuard {
    worker: Arc<Worker>,
    token_id: TokenId,
    done: watch::Sender<Option<FlightEnd>>,
    end: Option<FlightEnd>,
}

impl FlightGuard {
    /// Ends the flight with `end` (unregisters it and wakes the waiters).
    fn finish(mut self, end: FlightEnd) {
        self.end = Some(end);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.worker.in_flight.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.token_id);
        let _ = self.done.send(Some(self.end.unwrap_or(FlightEnd::Done(RefreshOutcome::Failed))));
    }
}

/// Waits for a flight's end until `deadline`; `None` if the deadline came first.
async fn wait_flight(done: &mut FlightWatch, deadline: tokio::time::Instant) -> Option<FlightEnd> {
    match tokio::time::timeout_at(deadline, done.wait_for(Option::is_some)).await {
        Ok(Ok(end)) => *end,
        Ok(Err(_)) => Some(FlightEnd::Done(RefreshOutcome::Failed)),
        Err(_) => None,
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

/// How a refresh grant's call to the provider ended, as the grant duration histogram labels it.
fn grant_outcome(result: &Result<TokenSet, OAuthError>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(OAuthError::InvalidGrant { .. }) => "invalid_grant",
        Err(OAuthError::InvalidClient { .. } | OAuthError::Rejected { .. }) => "rejected",
        Err(OAuthError::Transient { .. }) => "transient",
        Err(OAuthError::OutcomeUnknown { .. }) => "no_answer",
        Err(OAuthError::Protocol(_) | OAuthError::Config(_) | OAuthError::Internal(_)) => "error",
    }
}

fn std_duration(d: time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

impl RefreshEngine {
    /// An engine over `store`, the store the vault was opened on: start-up wiring hands it over, because the
    /// claims, leases and write-backs are the engine's own state machine below the vault's services. `oauth`
    /// sends the grants (its `HttpLimits` decide how long a lease must still run when a grant is sent);
    /// `clock` is the process clock every schedule is computed on.
    /// Credentials sessions need no client: they cannot be renewed and become `reauthRequired` at expiry.
    pub fn new(
        vault: Arc<Vault>,
        store: DynStore,
        catalog: Arc<Catalog>,
        oauth: OAuthClient,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Self {
        Self::with_grant_sender(vault, store, catalog, Arc::new(oauth), clock, config)
    }

    /// [`new`](Self::new) with any [`GrantSender`] (the deterministic simulator's upstream).
    pub fn with_grant_sender(
        vault: Arc<Vault>,
        store: DynStore,
        catalog: Arc<Catalog>,
        grants: Arc<dyn GrantSender>,
        clock: Arc<dyn Clock>,
        mut config: EngineConfig,
    ) -> Self {
        // The lease covers a grant that waited for the limits, then the HTTP worst case and the write-back.
        let worst = grants.worst_case() + config.write_back_allowance;
        config.lease = config.lease.max(worst * 2);
        config.on_demand_timeout = config.on_demand_timeout.max(config.lease + Duration::from_secs(1));
        config.max_in_flight = config.max_in_flight.max(1);
        config.recovery_concurrency = config.recovery_concurrency.max(1);
        Self {
            inner: Arc::new(Worker {
                vault,
                store,
                catalog,
                grants,
                clock,
                slots: Arc::new(Semaphore::new(config.max_in_flight)),
                recovery_slots: Arc::new(Semaphore::new(config.recovery_concurrency)),
                recovering: std::sync::atomic::AtomicBool::new(false),
                tasks: Mutex::new(JoinSet::new()),
                config,
                metrics: Arc::new(EngineMetrics::default()),
                limiters: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Aborts every task the engine owns, at whatever await point each is: what a process kill does to
    /// them. For the simulator and crash tests; the store then holds whatever was committed.
    pub fn abort_owned_tasks(&self) {
        self.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner).abort_all();
    }

    pub fn metrics(&self) -> Arc<EngineMetrics> {
        Arc::clone(&self.inner.metrics)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The scheduler loop, until `shutdown` becomes true (or its sender is dropped). On shutdown it stops
    /// claiming and waits for refreshes in progress (each bounded by the HTTP worst case and the write-back).
    /// Refreshes and recovery run in tasks the engine owns: dropping this future stops the claiming only.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let worker = &self.inner;
        let mut last_recovery: Option<tokio::time::Instant> = None;
        let mut last_gauges: Option<tokio::time::Instant> = None;
        tracing::info!(owner = %worker.config.owner, "refresh scheduler started");
        while !*shutdown.borrow() {
            if last_recovery.is_none_or(|t| t.elapsed() >= worker.config.recovery_interval) {
                last_recovery = Some(tokio::time::Instant::now());
                worker.start_recovery_pass();
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
                    let _ = worker.spawn_claimed(claimed, Some(permit));
                }
                if !full {
                    break;
                }
            }
            let all_busy = worker.slots.available_permits() == 0;
            let slot_freed = async {
                if all_busy {
                    // Wakes as soon as a refresh ends and gives its slot back.
                    let _ = worker.slots.acquire().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                biased;
                _ = tokio::time::sleep(worker.config.idle_poll) => {}
                _ = shutdown.changed() => {}
                _ = slot_freed => {}
            }
        }
        let drain = worker.grants.worst_case() + worker.config.write_back_allowance;
        let all = u32::try_from(worker.config.max_in_flight).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(drain, worker.slots.acquire_many(all)).await;
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
        let mut waits = Vec::with_capacity(batch.len());
        for claimed in batch {
            let token_id = claimed.record.token_id;
            waits.push((token_id, worker.spawn_claimed(claimed, None)));
        }
        let mut outcomes = Vec::new();
        let far = tokio::time::Instant::now() + worker.config.lease * 4;
        for (token_id, mut done) in waits {
            if let Some(FlightEnd::Done(outcome)) = wait_flight(&mut done, far).await {
                outcomes.push((token_id, outcome));
            }
        }
        self.update_gauges().await;
        Ok(outcomes)
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
    /// Each recovery is a flight of its own (so never beside this process's refresh of the same row), at most
    /// `recovery_concurrency` at once. Returns how many leases were recovered.
    pub async fn recover_expired_leases(&self) -> Result<u64, RefreshError> {
        self.inner.recovery_pass().await
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
            let (record, integration, credentials) = worker.open_usable(client_id, token_id, loaded.take()).await?;
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
            // In-process single flight: wait for a refresh already running here, or start one the engine owns.
            // Either way this request only waits: if it goes away, the flight goes on.
            let existing = worker.in_flight.lock().unwrap_or_else(PoisonError::into_inner).get(&token_id).cloned();
            if let Some(mut done) = existing {
                worker.metrics.count_coalesced();
                let _ = wait_flight(&mut done, deadline).await;
                attempted = true;
                continue;
            }
            let Some(mut done) = worker.spawn_flight(token_id, move |w| async move { w.on_demand(token_id).await })
            else {
                continue;
            };
            match wait_flight(&mut done, deadline).await {
                Some(FlightEnd::Done(outcome)) => attempted = !matches!(outcome, RefreshOutcome::Skipped),
                Some(FlightEnd::NotClaimed) => {
                    // Leased elsewhere (another instance, or a grant crashed): re-read until it is released.
                    let row = worker.store.get_connection(token_id).await?;
                    if let Some(row) = row
                        && row.refresh.grant_in_flight
                        && row.refresh.lease_until.is_some_and(|u| u <= worker.clock.now())
                    {
                        if let Some(mut done) =
                            worker.spawn_flight(token_id, move |w| async move { w.recover_one(row).await })
                        {
                            let _ = wait_flight(&mut done, deadline).await;
                        }
                        attempted = true;
                        continue;
                    }
                    tokio::time::sleep(worker.config.on_demand_poll).await;
                }
                None => break,
            }
        }
        Err(RefreshError::Unavailable("another worker held the connection for longer than the wait allows".to_owned()))
    }
}

/// The vault's `use_connection` asks the engine for freshness through this: one decision per request, on the
/// row the vault has just loaded and checked.
impl linkvault_vault::Freshener for RefreshEngine {
    fn fresh(&self, client_id: ClientId, record: ConnectionRecord) -> linkvault_vault::FreshFuture<'_> {
        Box::pin(async move {
            let token_id = record.token_id;
            self.ensure_fresh_from(client_id, token_id, Some(record)).await.map_err(|e| match e {
                RefreshError::NotFound => linkvault_vault::Staleness::NotFound,
                RefreshError::ReauthRequired => linkvault_vault::Staleness::ReauthRequired,
                RefreshError::Unavailable(reason) => linkvault_vault::Staleness::Unavailable(reason),
                other => linkvault_vault::Staleness::Failed(other.to_string()),
            })
        })
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
        let (record, integration, credentials) = worker.open_usable(client_id, token_id, None).await?;
        if credentials.access_token.expose_secret() != refused_access.expose_secret() {
            // Renewed since the caller read it: use the new one.
            return Ok((record, credentials));
        }
        let renewable = renewal_of(integration, &credentials) == Renewal::RefreshGrant;
        let flight = worker.spawn_flight(token_id, move |w| async move {
            let now = w.clock.now();
            let claimed = match w.store.claim_connection(token_id, now, &w.config.owner, w.config.lease).await {
                Ok(Some(claimed)) => claimed,
                Ok(None) => return FlightEnd::NotClaimed,
                Err(e) => {
                    tracing::warn!(error = %e, "refresh: claiming a refused connection failed");
                    return FlightEnd::NotClaimed;
                }
            };
            let outcome = if revoked || !renewable {
                let reason = if revoked { "credentialRevoked" } else { "credentialRefused" };
                match w.mark_reauth(&claimed, reason).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        tracing::warn!(error = %e, "refresh: marking a refused connection failed");
                        RefreshOutcome::Failed
                    }
                }
            } else {
                let due_at = claimed.refresh.next_refresh_at;
                w.process(claimed, due_at, Trigger::Refused).await
            };
            FlightEnd::Done(outcome)
        });
        // A refresh of this connection already running here, or a lease held elsewhere: its outcome is what
        // we want.
        let Some(mut done) = flight else { return self.ensure_fresh(client_id, token_id).await };
        let deadline = tokio::time::Instant::now() + worker.config.on_demand_timeout;
        let outcome = match wait_flight(&mut done, deadline).await {
            Some(FlightEnd::Done(outcome)) => outcome,
            Some(FlightEnd::NotClaimed) => return self.ensure_fresh(client_id, token_id).await,
            None => {
                return Err(RefreshError::Unavailable("the refresh did not complete within the wait".to_owned()));
            }
        };
        if outcome == RefreshOutcome::ReauthRequired {
            return Err(RefreshError::ReauthRequired);
        }
        let (record, _, credentials) = worker.open_usable(client_id, token_id, None).await?;
        if credentials.access_token.expose_secret() == refused_access.expose_secret() {
            return Err(RefreshError::Unavailable(
                record.refresh.last_error.clone().unwrap_or_else(|| "the refresh did not complete".to_owned()),
            ));
        }
        Ok((record, credentials))
    }
}

impl Worker {
    /// The client's connection as the on-demand paths use it, with its credentials opened: `loaded` when it is
    /// that row, else read again. Another client's row is as missing as no row; one that is not active needs
    /// the end user; its integration must be one the catalog knows.
    async fn open_usable(
        &self,
        client_id: ClientId,
        token_id: TokenId,
        loaded: Option<ConnectionRecord>,
    ) -> Result<(ConnectionRecord, &Integration, IntegrationCredentials), RefreshError> {
        let current = match loaded.filter(|r| r.token_id == token_id) {
            Some(r) => Some(r),
            None => self.store.get_connection(token_id).await?,
        };
        let record = match current {
            Some(r) if r.client_id == client_id => r,
            _ => return Err(RefreshError::NotFound),
        };
        if record.status != ConnectionStatus::Active {
            return Err(RefreshError::ReauthRequired);
        }
        let integration = self
            .catalog
            .get(&record.integration)
            .ok_or_else(|| RefreshError::UnknownIntegration(record.integration.clone()))?;
        let credentials = self.vault.open_credentials(&record).await?;
        Ok((record, integration, credentials))
    }

    /// Registers a flight of `token_id` in the single-flight map, unless one is already registered.
    fn try_register(self: &Arc<Self>, token_id: TokenId) -> Option<(FlightGuard, FlightWatch)> {
        let mut map = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        match map.entry(token_id) {
            Entry::Occupied(_) => None,
            Entry::Vacant(slot) => {
                let (done, receiver) = watch::channel(None);
                slot.insert(receiver.clone());
                Some((FlightGuard { worker: Arc::clone(self), token_id, done, end: None }, receiver))
            }
        }
    }

    /// Runs `work` in a task the engine owns (see [`RefreshEngine::abort_owned_tasks`]).
    fn spawn_owned(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(work);
    }

    /// Starts a flight of `token_id` running `work` in an owned task, unless one is already running here.
    fn spawn_flight<F, Fut>(self: &Arc<Self>, token_id: TokenId, work: F) -> Option<FlightWatch>
    where
        F: FnOnce(Arc<Worker>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = FlightEnd> + Send + 'static,
    {
        let (guard, done) = self.try_register(token_id)?;
        let worker = Arc::clone(self);
        self.spawn_owned(async move {
            let end = work(worker).await;
            guard.finish(end);
        });
        Some(done)
    }

    /// Processes a row the scheduler claimed in an owned task. Registered in the single-flight map when no
    /// other flight of the row is (one that is cannot hold the lease we hold: it waits or gives up).
    fn spawn_claimed(self: &Arc<Self>, claimed: ClaimedConnection, slot: Option<OwnedSemaphorePermit>) -> FlightWatch {
        let registered = self.try_register(claimed.record.token_id);
        let (tx, rx) = watch::channel(None);
        let worker = Arc::clone(self);
        self.spawn_owned(async move {
            let _slot = slot;
            let guard = registered.map(|(guard, _)| guard);
            if claimed.took_over_expired_lease {
                worker.metrics.count_recovery(Recovery::Idle);
            }
            let outcome = worker.process(claimed.record, Some(claimed.due_at), Trigger::Scheduled).await;
            if let Some(guard) = guard {
                guard.finish(FlightEnd::Done(outcome));
            }
            let _ = tx.send(Some(FlightEnd::Done(outcome)));
        });
        rx
    }

    /// An on-demand flight: claim the row whatever its schedule, then decide and act.
    async fn on_demand(self: Arc<Self>, token_id: TokenId) -> FlightEnd {
        let now = self.clock.now();
        match self.store.claim_connection(token_id, now, &self.config.owner, self.config.lease).await {
            Ok(Some(claimed)) => {
                let due_at = claimed.refresh.next_refresh_at;
                let outcome = self.process(claimed, due_at, Trigger::OnDemand).await;
                // Counted by what happened, not by the claim: a claim taken just after another instance
                // released a fresh row finds nothing due and sends nothing.
                if !matches!(outcome, RefreshOutcome::NotDue | RefreshOutcome::Skipped | RefreshOutcome::Warned) {
                    self.metrics.count_on_demand();
                }
                FlightEnd::Done(outcome)
            }
            Ok(None) => FlightEnd::NotClaimed,
            Err(e) => {
                tracing::warn!(error = %e, "refresh: on-demand claim failed");
                FlightEnd::Done(RefreshOutcome::Failed)
            }
        }
    }

    /// Starts a recovery pass in an owned task unless one is still running: the scheduler loop never waits
    /// for recovery (up to a batch of grants of up to the HTTP worst case each).
    fn start_recovery_pass(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.recovering.swap(true, Ordering::AcqRel) {
            return;
        }
        let worker = Arc::clone(self);
        self.spawn_owned(async move {
            struct Running(Arc<Worker>);
            impl Drop for Running {
                fn drop(&mut self) {
                    self.0.recovering.store(false, std::sync::atomic::Ordering::Release);
                }
            }
            let running = Running(worker);
            if let Err(e) = running.0.recovery_pass().await {
                tracing::warn!(error = %e, "refresh: lease recovery pass failed");
            }
        });
    }

    /// One recovery pass: every expired lease (up to a batch) as a flight of its own, `recovery_concurrency`
    /// at once, each bounded by the HTTP worst case and the write-back. Returns how many were taken.
    async fn recovery_pass(self: &Arc<Self>) -> Result<u64, RefreshError> {
        let expired = self.store.expired_leases(self.clock.now(), RECOVERY_BATCH).await?;
        let mut flights = Vec::with_capacity(expired.len());
        for row in expired {
            let Ok(permit) = Arc::clone(&self.recovery_slots).acquire_owned().await else { break };
            let token_id = row.token_id;
            // A flight of this row already running here (its lease just ran out): it handles the row.
            if let Some(done) = self.spawn_flight(token_id, move |w| async move {
                let _permit = permit;
                w.recover_one(row).await
            }) {
                flights.push(done);
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.lease * 2;
        let mut recovered = 0;
        for mut done in flights {
            if matches!(wait_flight(&mut done, deadline).await, Some(FlightEnd::Done(_))) {
                recovered += 1;
            }
        }
        Ok(recovered)
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
        self.process_presented(record, due_at, trigger, None).await
    }

    /// [`process`](Self::process) for a row whose stored refresh token may already have been presented
    /// without an answer, at `presented` at the earliest (recovery of the crash window).
    async fn process_presented(
        &self,
        record: ConnectionRecord,
        due_at: Option<OffsetDateTime>,
        trigger: Trigger,
        presented: Option<OffsetDateTime>,
    ) -> RefreshOutcome {
        let outcome = match self.process_inner(&record, due_at, trigger, presented).await {
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
        presented: Option<OffsetDateTime>,
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
                self.grant(record, integration, &policy, &refresh_token, due_at, presented).await
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
            self.metrics.count_reauth(reason);
            tracing::info!(integration = %record.integration, reason, "connection needs re-authentication");
            Ok(RefreshOutcome::ReauthRequired)
        } else {
            Ok(RefreshOutcome::Superseded)
        }
    }

    /// Sends the refresh grant for a claimed row and records the result. The only place a grant is sent.
    ///
    /// "Sent, no answer" ([`OAuthError::outcome_unknown`]) has one rule: an integration that does not rotate
    /// refresh tokens backs off and retries later; a rotating one presents the same refresh token again only
    /// while its reuse grace covers the new request (from the first presentation), else the connection
    /// becomes `reauthRequired` with [`REASON_OUTCOME_UNKNOWN`], its event and a counted metric. Once a
    /// presentation went unanswered, no later failure short of `invalid_grant` releases the row for a retry.
    async fn grant(
        &self,
        record: &ConnectionRecord,
        integration: &Integration,
        policy: &SchedulePolicy,
        refresh_token: &SecretString,
        due_at: Option<OffsetDateTime>,
        presented: Option<OffsetDateTime>,
    ) -> Result<RefreshOutcome, RefreshError> {
        let limiter = self.limiter(&record.integration);
        let Some(_permit) = limiter.acquire().await else {
            return Ok(RefreshOutcome::Skipped);
        };
        let min_remaining = self.grants.worst_case() + self.config.write_back_allowance;
        // When the stored refresh token was first presented without an answer (None: never, as far as we know).
        let mut unanswered_since = if policy.rotates_refresh_tokens { presented } else { None };
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let now = self.clock.now();
            if !self
                .store
                .mark_grant_in_flight(record.token_id, record.version, &self.config.owner, now, min_remaining)
                .await?
            {
                self.metrics.count_short_lease();
                if unanswered_since.is_some() {
                    // Retrying would need a lease we no longer have, and releasing would retry outside grace.
                    return self.outcome_unknown_past_grace(record).await;
                }
                // The lease ran down while waiting for the limits (or was lost): send nothing. Release it if it
                // is still ours so the row is due again right away.
                let (failures, last_error) = (record.refresh.refresh_failures, record.refresh.last_error.clone());
                self.release(record, now, failures, last_error, None).await?;
                return Ok(RefreshOutcome::Skipped);
            }
            let sent_at = self.clock.now();
            let call_started = tokio::time::Instant::now();
            let result = self.grants.refresh(integration, refresh_token).await;
            self.metrics.observe_grant(&record.integration, grant_outcome(&result), call_started.elapsed());
            let unanswered = match &result {
                Ok(_) => break result,
                Err(e) if e.needs_reauthentication() => break result,
                Err(e) if e.outcome_unknown() => true,
                // Proven not processed (never sent, 5xx, 429, …): harmless on its own, but after an unanswered
                // presentation it settles nothing.
                Err(_) => unanswered_since.is_some(),
            };
            if !unanswered || !policy.rotates_refresh_tokens {
                if result.as_ref().is_err_and(OAuthError::outcome_unknown) {
                    self.metrics.count_outcome_unknown("backed_off");
                }
                break result;
            }
            let first = *unanswered_since.get_or_insert(sent_at);
            let now = self.clock.now();
            if attempt < MAX_GRANT_ATTEMPTS && self.within_grace(integration, first, now) {
                self.metrics.count_outcome_unknown("retried_within_grace");
                tracing::warn!(integration = %record.integration, "refresh grant unanswered; presenting it again within the reuse grace");
                continue;
            }
            return self.outcome_unknown_past_grace(record).await;
        };
        let now = self.clock.now();
        match result {
            Ok(tokens) => {
                let write_started = tokio::time::Instant::now();
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
                let written = self.store.complete_refresh(&update, &self.config.owner).await?;
                self.metrics.observe_write_back(write_started.elapsed());
                if written {
                    // After the write in every mode: the grant is spent upstream, refusing would lose the row.
                    self.vault.audit_refreshed(record.client_id, record.token_id).await;
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

    /// A rotating integration's grant went unanswered and the reuse grace no longer covers presenting its
    /// refresh token again: the end user must sign in again, and the app is told.
    async fn outcome_unknown_past_grace(&self, record: &ConnectionRecord) -> Result<RefreshOutcome, RefreshError> {
        self.metrics.count_outcome_unknown("reauth_required");
        tracing::warn!(
            integration = %record.integration,
            "refresh grant unanswered past the reuse grace; the connection needs re-authentication"
        );
        self.mark_reauth(record, REASON_OUTCOME_UNKNOWN).await
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

    /// Recovers one expired lease (see [`RefreshEngine::recover_expired_leases`]); runs inside the row's flight.
    /// `NotClaimed` if another worker took it first.
    async fn recover_one(self: Arc<Self>, row: ConnectionRecord) -> FlightEnd {
        match self.recover_one_inner(&row).await {
            Ok(end) => end,
            Err(e) => {
                tracing::warn!(error = %e, integration = %row.integration, "refresh: lease recovery failed");
                FlightEnd::Done(RefreshOutcome::Failed)
            }
        }
    }

    async fn recover_one_inner(&self, row: &ConnectionRecord) -> Result<FlightEnd, RefreshError> {
        let now = self.clock.now();
        let Some(taken) = self
            .store
            .take_over_expired_lease(row.token_id, row.version, now, &self.config.owner, self.config.lease)
            .await?
        else {
            return Ok(FlightEnd::NotClaimed);
        };
        if !taken.refresh.grant_in_flight || taken.status != ConnectionStatus::Active {
            self.metrics.count_recovery(Recovery::Idle);
            let next = taken.refresh.next_refresh_at.unwrap_or(now);
            let (failures, last_error) = (taken.refresh.refresh_failures, taken.refresh.last_error.clone());
            self.release(&taken, next, failures, last_error, None).await?;
            return Ok(FlightEnd::Done(RefreshOutcome::NotDue));
        }
        // The crash window: the upstream may have rotated the refresh token we hold. The grant was sent at
        // most a lease length before the lease ended; retry only if the reuse grace still covers that.
        let sent_at_earliest = row.refresh.lease_until.map(|u| u - self.config.lease);
        let rotates = self.catalog.get(&taken.integration).is_none_or(|i| i.timing.rotates_refresh_tokens);
        let within_grace = match (self.catalog.get(&taken.integration), sent_at_earliest) {
            (Some(integration), Some(sent)) => self.within_grace(integration, sent, now),
            _ => false,
        };
        if within_grace || !rotates {
            self.metrics.count_recovery(Recovery::GrantRetried);
            tracing::warn!(integration = %taken.integration, "refresh interrupted mid-grant; retrying within the reuse grace");
            let due = row.refresh.next_refresh_at;
            let presented = if rotates { sent_at_earliest } else { None };
            let outcome = self.process_presented(taken, due, Trigger::Recovery, presented).await;
            Ok(FlightEnd::Done(outcome))
        } else {
            self.metrics.count_recovery(Recovery::GrantLost);
            tracing::warn!(
                integration = %taken.integration,
                "refresh interrupted mid-grant without a reuse grace; the connection needs re-authentication"
            );
            let outcome = self.mark_reauth(&taken, "refresh_interrupted").await?;
            Ok(FlightEnd::Done(self.count(&taken, outcome)))
        }
    }

    /// Whether a refresh token first presented at `first_sent` may be presented again now: the integration
    /// grants a reuse grace and the new request arrives inside it with `grace_margin` to spare.
    fn within_grace(&self, integration: &Integration, first_sent: OffsetDateTime, now: OffsetDateTime) -> bool {
        let Some(grace) = integration.timing.reuse_grace_secs.filter(|g| *g > 0).map(Duration::from_secs) else {
            return false;
        };
        let elapsed = std_duration(now - first_sent);
        // A negative elapsed time (skew) counts as none; the margin covers skew.
        elapsed + self.config.grace_margin < grace
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
