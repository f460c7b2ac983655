//! The outbox deliverer: claims due events under a lease (so instances share the work and never send the
//! same attempt twice at once), signs and posts each to its client's endpoint, and records the outcome —
//! delivered, retry on the schedule, or given up after about three days.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use linkvault_domain::{ClientId, Clock, TokenMode};
use linkvault_storage::{ClaimedDelivery, DeliveryOutcome, WebhookFormat};
use linkvault_vault::Vault;
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::delivery::{Attempt, DELIVERY_TIMEOUT, Deliverer, DeliveryRequest};
use crate::schedule::next_attempt_delay;
use crate::signing::WebhookSecret;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub batch_size: u32,
    /// Deliveries in flight at once (a slow receiver must not hold up everyone else's events).
    pub concurrency: usize,
    pub idle_poll: Duration,
    /// Multiplies the retry schedule; 1.0 in production, tiny in tests so "three days" fits in seconds.
    pub schedule_scale: f64,
    /// How long delivered and given-up events are kept in the outbox (they name users and tokenIds).
    pub retention: Duration,
    /// How often (on the vault's clock) a pass also purges what is past the retention.
    pub purge_every: Duration,
}

/// The default outbox retention: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch_size: 50,
            concurrency: 16,
            idle_poll: Duration::from_millis(500),
            schedule_scale: 1.0,
            retention: DEFAULT_RETENTION,
            purge_every: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Default)]
pub struct WorkerMetrics {
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub given_up: AtomicU64,
    /// Events a Mesh-format endpoint does not receive (everything but transfer events).
    pub not_in_format: AtomicU64,
    /// Finished events deleted after the retention.
    pub purged: AtomicU64,
}

impl WorkerMetrics {
    /// These metrics alone in the OpenMetrics text format (what `/metrics` shows of them).
    pub fn render(self: &Arc<Self>) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Arc::clone(self)));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode the webhook metrics");
        }
        out
    }
}

impl prometheus_client::collector::Collector for WorkerMetrics {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        let mut deliveries = encoder.encode_descriptor(
            "linkvault_webhook_deliveries",
            "Webhook delivery attempts by outcome.",
            None,
            MetricType::Counter,
        )?;
        for (outcome, counter) in [
            ("delivered", &self.delivered),
            ("failed", &self.failed_attempts),
            ("given_up", &self.given_up),
            ("not_in_format", &self.not_in_format),
        ] {
            ConstCounter::new(counter.load(Ordering::Relaxed))
                .encode(deliveries.encode_family(&[("outcome", outcome)])?)?;
        }
        let purged = ConstCounter::new(self.purged.load(Ordering::Relaxed));
        purged.encode(encoder.encode_descriptor(
            "linkvault_webhook_outbox_purged",
            "Delivered or given-up webhook events deleted after the retention.",
            None,
            MetricType::Counter,
        )?)
    }
}

#[derive(Debug, Clone)]
pub struct DeliveryWorker {
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    deliverer: Deliverer,
    config: WorkerConfig,
    metrics: Arc<WorkerMetrics>,
    /// When this worker last purged (vault clock); `None` until its first pass.
    last_purge: Arc<std::sync::Mutex<Option<time::OffsetDateTime>>>,
}

impl DeliveryWorker {
    pub fn new(vault: Arc<Vault>, config: WorkerConfig) -> Result<Self, String> {
        let clock = Arc::clone(vault.clock());
        let deliverer = Deliverer::new(Arc::clone(vault.webhook_policy()))?;
        Ok(Self { vault, clock, deliverer, config, metrics: Arc::default(), last_purge: Arc::default() })
    }

    pub fn metrics(&self) -> Arc<WorkerMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Delivers until `shutdown` turns true.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        run_passes("webhook delivery", self.config.idle_poll, shutdown, || self.run_once()).await;
    }

    /// One pass: claims due events and attempts each once. Returns how many were attempted.
    pub async fn run_once(&self) -> Result<usize, linkvault_vault::VaultError> {
        let now = self.clock.now();
        self.purge_if_due(now).await;
        // The lease outlives the batch's worst case (every event of one subject in a row, each to its timeout),
        // and no attempt starts unless it ends inside the lease: two workers never hold the same event.
        let started = tokio::time::Instant::now();
        let worst = batch_worst_case(self.config.batch_size);
        let lease = time::Duration::try_from(worst + BATCH_LEASE_MARGIN).unwrap_or(time::Duration::HOUR);
        let last_start = started + worst.saturating_sub(DELIVERY_TIMEOUT + ATTEMPT_ALLOWANCE);
        let mut claimed = self.vault.claim_webhook_deliveries(now, now + lease, self.config.batch_size).await?;
        let attempted = claimed.len();
        // One connection's events go out one after another in the order they happened (a receiver that is up
        // sees `created` before `reauthRequired` before `recovered`); different connections go out in parallel.
        claimed.sort_by_key(|d| d.event.created_at);
        let mut groups: Vec<(ClientId, Vec<ClaimedDelivery>)> = Vec::new();
        let mut group_of: HashMap<(ClientId, String), usize> = HashMap::new();
        for delivery in claimed {
            let subject = (delivery.event.client_id, subject_of(&delivery.event.payload));
            let index = *group_of.entry(subject).or_insert_with(|| {
                groups.push((delivery.event.client_id, Vec::new()));
                groups.len() - 1
            });
            if let Some((_, group)) = groups.get_mut(index) {
                group.push(delivery);
            }
        }
        let mut endpoints: HashMap<ClientId, Option<Endpoint>> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (client, group) in groups {
            let endpoint = match endpoints.get(&client) {
                Some(cached) => cached.clone(),
                None => {
                    let fetched = match self.vault.webhook_target(client).await? {
                        Some(target) => WebhookSecret::parse(target.secret.expose_secret()).ok().map(|secret| {
                            Endpoint { url: target.url, secret, format: target.format, token_mode: target.token_mode }
                        }),
                        None => None,
                    };
                    endpoints.insert(client, fetched.clone());
                    fetched
                }
            };
            while tasks.len() >= self.config.concurrency.max(1) {
                let _ = tasks.join_next().await;
            }
            let worker = self.clone();
            tasks.spawn(async move {
                for delivery in group {
                    if tokio::time::Instant::now() > last_start {
                        // Its lease expires before the event is claimed again: delayed, never doubled.
                        break;
                    }
                    worker.attempt(delivery, endpoint.clone()).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(attempted)
    }

    /// Deletes the events finished (delivered or given up) more than the retention ago, at most once per
    /// `purge_every`. Every instance may purge; the statement is idempotent. A failure is logged and retried on
    /// the next pass.
    async fn purge_if_due(&self, now: time::OffsetDateTime) {
        let every = time::Duration::try_from(self.config.purge_every).unwrap_or(time::Duration::HOUR);
        let due = match self.last_purge.lock() {
            Ok(mut last) if last.is_none_or(|at| now - at >= every) => {
                *last = Some(now);
                true
            }
            _ => false,
        };
        if !due {
            return;
        }
        let retention = time::Duration::try_from(self.config.retention).unwrap_or(time::Duration::days(30));
        match self.vault.purge_finished_webhooks(now - retention).await {
            Ok(purged) => {
                self.metrics.purged.fetch_add(purged, Ordering::Relaxed);
                if purged > 0 {
                    tracing::info!(purged, "deleted webhook events past their retention");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not purge the webhook outbox");
                if let Ok(mut last) = self.last_purge.lock() {
                    *last = None;
                }
            }
        }
    }

    async fn attempt(&self, delivery: ClaimedDelivery, endpoint: Option<Endpoint>) {
        let event = &delivery.event;
        let mesh_body = match &endpoint {
            Some(e) if e.format == WebhookFormat::Mesh => {
                // A new `Id` per attempt, the outbox event's id as the stable `EventId`.
                crate::mesh::body(&event.payload, event.id, uuid::Uuid::new_v4(), self.clock.now().unix_timestamp())
            }
            _ => None,
        };
        let outcome = match endpoint {
            // Nowhere to deliver: kept (with the reason) for the operator instead of retried forever.
            None => {
                DeliveryOutcome::GiveUp { at: self.clock.now(), error: "the client has no webhook endpoint".into() }
            }
            Some(e)
                if e.format == WebhookFormat::Mesh
                    && (mesh_body.is_none() || !crate::mesh::carries(&event.event_type)) =>
            {
                self.metrics.not_in_format.fetch_add(1, Ordering::Relaxed);
                let error = format!(
                    "not delivered: the endpoint takes Mesh-format webhooks, which carry transfer events only ({})",
                    event.event_type
                );
                if let Err(e) = self
                    .vault
                    .finish_webhook_attempt(event.id, &DeliveryOutcome::GiveUp { at: self.clock.now(), error })
                    .await
                {
                    tracing::warn!(error = %e, event = %event.id, "could not record a webhook attempt");
                }
                return;
            }
            Some(e) => {
                let attempt = match mesh_body {
                    Some(body) => self.deliverer.deliver_mesh(&e.secret, &e.url, body).await,
                    None => {
                        let msg_id = format!("msg_{}", event.id.simple());
                        // A client-mode client sees its connections by their Link handle, never by tokenId.
                        let rewritten = linkvault_vault::events::payload_for(e.token_mode, &event.payload);
                        let request = DeliveryRequest {
                            url: &e.url,
                            msg_id: &msg_id,
                            timestamp: self.clock.now().unix_timestamp(),
                            body: rewritten.as_deref().unwrap_or(&event.payload).as_bytes(),
                        };
                        self.deliverer.deliver(&e.secret, &request).await
                    }
                };
                match attempt {
                    Attempt::Delivered { .. } => DeliveryOutcome::Delivered { at: self.clock.now() },
                    Attempt::Failed { reason } => {
                        match next_attempt_delay(delivery.attempts.saturating_add(1), rand::random::<f64>()) {
                            Some(delay) => {
                                let scaled = delay.mul_f64(self.config.schedule_scale.max(0.0));
                                let next =
                                    self.clock.now() + time::Duration::try_from(scaled).unwrap_or(time::Duration::HOUR);
                                DeliveryOutcome::Retry { next_attempt_at: next, error: reason }
                            }
                            None => DeliveryOutcome::GiveUp { at: self.clock.now(), error: reason },
                        }
                    }
                }
            }
        };
        match &outcome {
            DeliveryOutcome::Delivered { .. } => self.metrics.delivered.fetch_add(1, Ordering::Relaxed),
            DeliveryOutcome::Retry { .. } => self.metrics.failed_attempts.fetch_add(1, Ordering::Relaxed),
            DeliveryOutcome::GiveUp { .. } => self.metrics.given_up.fetch_add(1, Ordering::Relaxed),
        };
        if let Err(e) = self.vault.finish_webhook_attempt(event.id, &outcome).await {
            // The lease expires and the event is attempted again: at-least-once, never lost.
            tracing::warn!(error = %e, event = %event.id, "could not record a webhook attempt");
        }
    }
}

/// Runs `pass` until `shutdown` turns true, pausing `idle_poll` (or until shutdown) after a pass that handled
/// nothing or failed. The loop of the background workers that claim rows from the database (the outbox
/// deliverer here, the server's transfer follower).
pub async fn run_passes<F, Fut, E>(what: &str, idle_poll: Duration, mut shutdown: watch::Receiver<bool>, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, E>>,
    E: std::fmt::Display,
{
    while !*shutdown.borrow() {
        let handled = match pass().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "{what} pass failed");
                0
            }
        };
        if handled == 0 {
            tokio::select! {
                _ = tokio::time::sleep(idle_poll) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// A client's endpoint, with its secret parsed and its format.
#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    secret: WebhookSecret,
    format: WebhookFormat,
    token_mode: TokenMode,
}

/// Time one attempt may take beyond the receiver timeout (signing, recording the outcome).
const ATTEMPT_ALLOWANCE: Duration = Duration::from_secs(2);
/// Room a batch lease keeps over the batch's worst case (a slow store, clock drift between instances).
const BATCH_LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The longest a claimed batch can take: all its events for one subject, delivered one after another.
fn batch_worst_case(batch_size: u32) -> Duration {
    (DELIVERY_TIMEOUT + ATTEMPT_ALLOWANCE) * batch_size.max(1)
}

/// The connection an event is about (its `data.tokenId`), or the event itself when it names none.
fn subject_of(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("data")?.get("tokenId")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| payload.to_owned())
}
