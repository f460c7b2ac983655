//! The engine's metrics, kept in atomics, `prometheus-client` histograms and a few small locked maps, and
//! encoded by `prometheus-client` for `/metrics` (as a [`Collector`]): refreshes by integration and outcome,
//! the provider token call's duration, lateness, due backlog, leases recovered, compare-and-set conflicts
//! (must stay 0) and the webhook backlog.

use std::collections::{BTreeMap, VecDeque};
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the lateness histogram buckets; `+Inf` follows.
const LATENESS_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Upper bounds (seconds) of the grant duration buckets: a provider's token endpoint answers in tens to
/// hundreds of milliseconds; the top buckets catch the HTTP timeout.
const GRANT_BUCKETS: [f64; 12] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];
/// Recent lateness samples kept for exact quantiles (tests and the summary lines).
const LATENESS_SAMPLES: usize = 100_000;

/// The labels of one grant duration series: the integration (a catalog type, so bounded) and how it ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    integration: String,
    outcome: &'static str,
}

/// A label value that came from data rather than a fixed set (an integration type, a reason), reduced to
/// characters that need no escaping: `prometheus-client` writes label values as given, and a quote or a
/// newline would break the exposition.
fn label_value(raw: &str) -> String {
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') { c } else { '_' }).collect()
}

fn grant_histogram() -> Histogram {
    Histogram::new(GRANT_BUCKETS)
}

fn lateness_histogram() -> Histogram {
    Histogram::new(LATENESS_BUCKETS)
}

/// Why a lease was recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// Expired without a grant in flight: the row was simply claimable again.
    Idle,
    /// Expired with a grant in flight, and the integration's reuse grace allowed retrying the old token.
    GrantRetried,
    /// Expired with a grant in flight and no grace: the connection became `reauthRequired`.
    GrantLost,
}

impl Recovery {
    const ALL: [Recovery; 3] = [Recovery::Idle, Recovery::GrantRetried, Recovery::GrantLost];

    fn label(self) -> &'static str {
        match self {
            Recovery::Idle => "idle",
            Recovery::GrantRetried => "grant_retried",
            Recovery::GrantLost => "grant_lost",
        }
    }

    fn index(self) -> usize {
        match self {
            Recovery::Idle => 0,
            Recovery::GrantRetried => 1,
            Recovery::GrantLost => 2,
        }
    }
}

/// Counters and gauges of one engine. Cheap to update from many tasks.
#[derive(Debug)]
pub struct EngineMetrics {
    refreshes: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Duration of each refresh grant's call to the provider's token endpoint, by integration and outcome.
    grants: Family<GrantLabels, Histogram, fn() -> Histogram>,
    lateness: Histogram,
    lateness_samples: Mutex<VecDeque<u64>>,
    due_backlog: AtomicU64,
    webhook_backlog: AtomicU64,
    leases_recovered: [AtomicU64; 3],
    cas_conflicts: AtomicU64,
    superseded: AtomicU64,
    grants_skipped_short_lease: AtomicU64,
    on_demand_refreshes: AtomicU64,
    on_demand_coalesced: AtomicU64,
    /// Grants sent without a complete answer, by what the engine did about it.
    outcome_unknown: Mutex<BTreeMap<&'static str, u64>>,
    /// Connections this engine marked `reauthRequired`, by reason.
    reauth_reasons: Mutex<BTreeMap<String, u64>>,
    /// The slowest write-back seen (vault sealing + store commit), for sizing the write-back allowance.
    write_back_max_ms: AtomicU64,
    write_back_count: AtomicU64,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self {
            refreshes: Mutex::default(),
            grants: Family::new_with_constructor(grant_histogram),
            lateness: lateness_histogram(),
            lateness_samples: Mutex::default(),
            due_backlog: AtomicU64::default(),
            webhook_backlog: AtomicU64::default(),
            leases_recovered: Default::default(),
            cas_conflicts: AtomicU64::default(),
            superseded: AtomicU64::default(),
            grants_skipped_short_lease: AtomicU64::default(),
            on_demand_refreshes: AtomicU64::default(),
            on_demand_coalesced: AtomicU64::default(),
            outcome_unknown: Mutex::default(),
            reauth_reasons: Mutex::default(),
            write_back_max_ms: AtomicU64::default(),
            write_back_count: AtomicU64::default(),
        }
    }
}

impl EngineMetrics {
    /// One refresh grant's call to the provider took `took` and ended with `outcome` (`success`,
    /// `invalid_grant`, `rejected`, `transient`, `no_answer`, `error`).
    pub(crate) fn observe_grant(&self, integration: &str, outcome: &'static str, took: Duration) {
        let labels = GrantLabels { integration: label_value(integration), outcome };
        self.grants.get_or_create(&labels).observe(took.as_secs_f64());
    }

    pub(crate) fn count_refresh(&self, integration: &str, outcome: &'static str) {
        let mut map = self.refreshes.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry((integration.to_owned(), outcome)).or_insert(0) += 1;
    }

    /// Completion of a refresh against the start of its window (`next_refresh_at`); early is 0.
    pub(crate) fn observe_lateness(&self, lateness: Duration) {
        self.lateness.observe(lateness.as_secs_f64());
        let ms = u64::try_from(lateness.as_millis()).unwrap_or(u64::MAX);
        let mut samples = self.lateness_samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() == LATENESS_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(ms);
    }

    pub(crate) fn set_due_backlog(&self, n: u64) {
        self.due_backlog.store(n, Ordering::Relaxed);
    }

    pub(crate) fn set_webhook_backlog(&self, n: u64) {
        self.webhook_backlog.store(n, Ordering::Relaxed);
    }

    pub(crate) fn count_recovery(&self, kind: Recovery) {
        self.leases_recovered[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_cas_conflict(&self) {
        self.cas_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_superseded(&self) {
        self.superseded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_short_lease(&self) {
        self.grants_skipped_short_lease.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_on_demand(&self) {
        self.on_demand_refreshes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_coalesced(&self) {
        self.on_demand_coalesced.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_outcome_unknown(&self, action: &'static str) {
        let mut map = self.outcome_unknown.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(action).or_insert(0) += 1;
    }

    pub(crate) fn count_reauth(&self, reason: &str) {
        let mut map = self.reauth_reasons.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(reason.to_owned()).or_insert(0) += 1;
    }

    pub(crate) fn observe_write_back(&self, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.write_back_max_ms.fetch_max(ms, Ordering::Relaxed);
        self.write_back_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Grants sent that got no complete answer, by what followed: `retried_within_grace` (the same refresh
    /// token presented again inside the integration's reuse grace), `reauth_required` (past the grace:
    /// `refreshOutcomeUnknown`), `backed_off` (an integration that does not rotate refresh tokens).
    pub fn outcome_unknown(&self, action: &str) -> u64 {
        let map = self.outcome_unknown.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(action).copied().unwrap_or(0)
    }

    /// Connections this engine marked `reauthRequired` with `reason` (`invalid_grant`, `refreshOutcomeUnknown`,
    /// `refresh_interrupted`, `credentialRevoked`, …).
    pub fn reauth_required(&self, reason: &str) -> u64 {
        let map = self.reauth_reasons.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(reason).copied().unwrap_or(0)
    }

    /// All `reauthRequired` marks of this engine, whatever the reason.
    pub fn reauth_required_total(&self) -> u64 {
        let map = self.reauth_reasons.lock().unwrap_or_else(PoisonError::into_inner);
        map.values().sum()
    }

    /// The slowest refresh write-back measured so far (sealing plus commit).
    pub fn write_back_max(&self) -> Duration {
        Duration::from_millis(self.write_back_max_ms.load(Ordering::Relaxed))
    }

    /// Refreshes of `integration` with `outcome` (`success`, `reauth_required`, `transient`, `error`,
    /// `conflict`, `superseded`, `skipped`).
    pub fn refreshes(&self, integration: &str, outcome: &str) -> u64 {
        let map = self.refreshes.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter().filter(|((i, o), _)| i == integration && *o == outcome).map(|(_, n)| *n).sum()
    }

    /// Refreshes with `outcome` across integrations.
    pub fn refreshes_total(&self, outcome: &str) -> u64 {
        let map = self.refreshes.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter().filter(|((_, o), _)| *o == outcome).map(|(_, n)| *n).sum()
    }

    pub fn cas_conflicts(&self) -> u64 {
        self.cas_conflicts.load(Ordering::Relaxed)
    }

    pub fn superseded(&self) -> u64 {
        self.superseded.load(Ordering::Relaxed)
    }

    pub fn grants_skipped_short_lease(&self) -> u64 {
        self.grants_skipped_short_lease.load(Ordering::Relaxed)
    }

    /// Leases recovered, by kind: (idle, grant retried under the reuse grace, grant lost → reauthRequired).
    pub fn leases_recovered(&self) -> (u64, u64, u64) {
        let get = |k: Recovery| self.leases_recovered[k.index()].load(Ordering::Relaxed);
        (get(Recovery::Idle), get(Recovery::GrantRetried), get(Recovery::GrantLost))
    }

    pub fn on_demand_refreshes(&self) -> u64 {
        self.on_demand_refreshes.load(Ordering::Relaxed)
    }

    /// On-demand callers that waited for a refresh already in flight in this process instead of starting one.
    pub fn on_demand_coalesced(&self) -> u64 {
        self.on_demand_coalesced.load(Ordering::Relaxed)
    }

    pub fn due_backlog(&self) -> u64 {
        self.due_backlog.load(Ordering::Relaxed)
    }

    pub fn webhook_backlog(&self) -> u64 {
        self.webhook_backlog.load(Ordering::Relaxed)
    }

    /// The `q`-quantile (0..=1) of the recent lateness samples, exact over the samples kept.
    pub fn lateness_quantile(&self, q: f64) -> Option<Duration> {
        let samples = self.lateness_samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<u64> = samples.iter().copied().collect();
        sorted.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64).round()) as usize;
        sorted.get(rank).map(|ms| Duration::from_millis(*ms))
    }

    /// These metrics alone in the OpenMetrics text format (what `/metrics` shows of them).
    pub fn render(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Arc::clone(self)));
        let mut out = String::new();
        // Writing to a String cannot fail; an encoding error would only mean a malformed descriptor.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode the refresh metrics");
        }
        out
    }
}

/// A counter or gauge without labels.
fn encode_one(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A counter family with one series per label set.
fn encode_counters<'l, L: EncodeLabelSet + 'l>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, n) in series {
        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl EngineMetrics {
    fn encode_into(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let refreshes: Vec<_> = {
            let map = self.refreshes.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter()
                .map(|((i, o), n)| ([("integration", label_value(i)), ("outcome", (*o).to_owned())], *n))
                .collect()
        };
        encode_counters(e, "linkvault_refresh", "Refresh attempts by integration and outcome.", refreshes)?;
        self.grants.encode(e.encode_descriptor(
            "linkvault_refresh_grant_seconds",
            "Duration of refresh grants sent to a provider's token endpoint, by integration and outcome.",
            None,
            MetricType::Histogram,
        )?)?;
        self.lateness.encode(e.encode_descriptor(
            "linkvault_refresh_lateness_seconds",
            "Refresh completion after the start of its window.",
            None,
            MetricType::Histogram,
        )?)?;
        let unknown: Vec<_> = {
            let map = self.outcome_unknown.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter().map(|(a, n)| ([("action", *a)], *n)).collect()
        };
        encode_counters(
            e,
            "linkvault_refresh_outcome_unknown",
            "Refresh grants sent without a complete answer, by action.",
            unknown,
        )?;
        let reauth: Vec<_> = {
            let map = self.reauth_reasons.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter().map(|(r, n)| ([("reason", label_value(r))], *n)).collect()
        };
        encode_counters(
            e,
            "linkvault_refresh_reauth_required",
            "Connections marked reauthRequired, by reason.",
            reauth,
        )?;
        encode_one(
            e,
            "linkvault_refresh_write_back_max_seconds",
            "Slowest refresh write-back (sealing and commit) seen.",
            &ConstGauge::new(self.write_back_max_ms.load(Ordering::Relaxed) as f64 / 1000.0),
        )?;
        encode_one(
            e,
            "linkvault_refresh_due_backlog",
            "Active connections whose refresh time has come.",
            &ConstGauge::new(saturating_i64(self.due_backlog())),
        )?;
        let recovered =
            Recovery::ALL.map(|k| ([("kind", k.label())], self.leases_recovered[k.index()].load(Ordering::Relaxed)));
        encode_counters(
            e,
            "linkvault_refresh_leases_recovered",
            "Expired refresh leases recovered, by kind.",
            recovered,
        )?;
        for (name, help, value) in [
            (
                "linkvault_refresh_cas_conflicts",
                "Refresh write-backs that lost the compare-and-set to another refresh (a bug: must stay 0).",
                self.cas_conflicts(),
            ),
            (
                "linkvault_refresh_superseded",
                "Refresh results discarded because new credentials or a deletion landed meanwhile.",
                self.superseded(),
            ),
            (
                "linkvault_refresh_grants_skipped_short_lease",
                "Grants not sent because the lease would not outlive the HTTP timeout.",
                self.grants_skipped_short_lease(),
            ),
            (
                "linkvault_refresh_on_demand",
                "Refreshes started by a request using a tokenId.",
                self.on_demand_refreshes(),
            ),
            (
                "linkvault_refresh_on_demand_coalesced",
                "Requests that waited for a refresh already in flight.",
                self.on_demand_coalesced(),
            ),
        ] {
            encode_one(e, name, help, &ConstCounter::new(value))?;
        }
        encode_one(
            e,
            "linkvault_webhook_backlog",
            "Webhook events in the outbox not yet delivered.",
            &ConstGauge::new(saturating_i64(self.webhook_backlog())),
        )
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for EngineMetrics {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.encode_into(encoder)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_metric() {
        let m = Arc::new(EngineMetrics::default());
        m.count_refresh("coinbase", "success");
        m.count_refresh("coinbase", "success");
        m.count_refresh("we\"ird", "transient");
        m.observe_lateness(Duration::from_millis(30));
        m.observe_lateness(Duration::from_millis(700));
        m.observe_lateness(Duration::from_secs(400));
        m.set_due_backlog(7);
        m.set_webhook_backlog(3);
        m.count_recovery(Recovery::GrantLost);
        let text = m.render();
        for line in [
            "linkvault_refresh_total{integration=\"coinbase\",outcome=\"success\"} 2",
            "linkvault_refresh_total{integration=\"we_ird\",outcome=\"transient\"} 1",
            "linkvault_refresh_lateness_seconds_bucket{le=\"0.05\"} 1",
            "linkvault_refresh_lateness_seconds_bucket{le=\"1.0\"} 2",
            "linkvault_refresh_lateness_seconds_bucket{le=\"+Inf\"} 3",
            "linkvault_refresh_lateness_seconds_count 3",
            "linkvault_refresh_due_backlog 7",
            "linkvault_refresh_leases_recovered_total{kind=\"grant_lost\"} 1",
            "linkvault_refresh_leases_recovered_total{kind=\"idle\"} 0",
            "linkvault_refresh_cas_conflicts_total 0",
            "linkvault_webhook_backlog 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert_eq!(m.lateness_quantile(0.5), Some(Duration::from_millis(700)));
        assert_eq!(m.lateness_quantile(0.0), Some(Duration::from_millis(30)));
        assert_eq!(m.refreshes("coinbase", "success"), 2);
    }
}
