//! The engine's metrics, kept in atomics (and two small locked maps) and rendered as Prometheus text for
//! `/metrics`: refreshes by integration and outcome, lateness, due backlog, leases recovered, compare-and-set
//! conflicts (must stay 0) and the webhook backlog.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the lateness histogram buckets; `+Inf` follows.
const LATENESS_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Recent lateness samples kept for exact quantiles (tests and the summary lines).
const LATENESS_SAMPLES: usize = 100_000;

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
#[derive(Debug, Default)]
pub struct EngineMetrics {
    refreshes: Mutex<BTreeMap<(String, &'static str), u64>>,
    lateness_buckets: [AtomicU64; LATENESS_BUCKETS.len() + 1],
    lateness_sum_ms: AtomicU64,
    lateness_count: AtomicU64,
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

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl EngineMetrics {
    pub(crate) fn count_refresh(&self, integration: &str, outcome: &'static str) {
        let mut map = self.refreshes.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry((integration.to_owned(), outcome)).or_insert(0) += 1;
    }

    /// Completion of a refresh against the start of its window (`next_refresh_at`); early is 0.
    pub(crate) fn observe_lateness(&self, lateness: Duration) {
        let secs = lateness.as_secs_f64();
        let bucket = LATENESS_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(LATENESS_BUCKETS.len());
        self.lateness_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(lateness.as_millis()).unwrap_or(u64::MAX);
        self.lateness_sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.lateness_count.fetch_add(1, Ordering::Relaxed);
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

    /// Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP linkvault_refresh_total Refresh attempts by integration and outcome.");
        let _ = writeln!(out, "# TYPE linkvault_refresh_total counter");
        {
            let map = self.refreshes.lock().unwrap_or_else(PoisonError::into_inner);
            for ((integration, outcome), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "linkvault_refresh_total{{integration=\"{}\",outcome=\"{outcome}\"}} {n}",
                    escape_label(integration)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP linkvault_refresh_lateness_seconds Refresh completion after the start of its window."
        );
        let _ = writeln!(out, "# TYPE linkvault_refresh_lateness_seconds histogram");
        let mut cumulative = 0u64;
        for (i, bound) in LATENESS_BUCKETS.iter().enumerate() {
            cumulative += self.lateness_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "linkvault_refresh_lateness_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.lateness_buckets[LATENESS_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "linkvault_refresh_lateness_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.lateness_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "linkvault_refresh_lateness_seconds_sum {sum}");
        let _ =
            writeln!(out, "linkvault_refresh_lateness_seconds_count {}", self.lateness_count.load(Ordering::Relaxed));
        {
            let _ = writeln!(
                out,
                "# HELP linkvault_refresh_outcome_unknown_total Refresh grants sent without a complete answer, by action."
            );
            let _ = writeln!(out, "# TYPE linkvault_refresh_outcome_unknown_total counter");
            let map = self.outcome_unknown.lock().unwrap_or_else(PoisonError::into_inner);
            for (action, n) in map.iter() {
                let _ = writeln!(out, "linkvault_refresh_outcome_unknown_total{{action=\"{action}\"}} {n}");
            }
        }
        {
            let _ = writeln!(
                out,
                "# HELP linkvault_refresh_reauth_required_total Connections marked reauthRequired, by reason."
            );
            let _ = writeln!(out, "# TYPE linkvault_refresh_reauth_required_total counter");
            let map = self.reauth_reasons.lock().unwrap_or_else(PoisonError::into_inner);
            for (reason, n) in map.iter() {
                let _ =
                    writeln!(out, "linkvault_refresh_reauth_required_total{{reason=\"{}\"}} {n}", escape_label(reason));
            }
        }
        let _ = writeln!(
            out,
            "# HELP linkvault_refresh_write_back_max_seconds Slowest refresh write-back (sealing and commit) seen."
        );
        let _ = writeln!(out, "# TYPE linkvault_refresh_write_back_max_seconds gauge");
        let _ = writeln!(
            out,
            "linkvault_refresh_write_back_max_seconds {}",
            self.write_back_max_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        gauge(
            &mut out,
            "linkvault_refresh_due_backlog",
            "Active connections whose refresh time has come.",
            "gauge",
            self.due_backlog(),
        );
        let _ =
            writeln!(out, "# HELP linkvault_refresh_leases_recovered_total Expired refresh leases recovered, by kind.");
        let _ = writeln!(out, "# TYPE linkvault_refresh_leases_recovered_total counter");
        for kind in Recovery::ALL {
            let _ = writeln!(
                out,
                "linkvault_refresh_leases_recovered_total{{kind=\"{}\"}} {}",
                kind.label(),
                self.leases_recovered[kind.index()].load(Ordering::Relaxed)
            );
        }
        gauge(
            &mut out,
            "linkvault_refresh_cas_conflicts_total",
            "Refresh write-backs that lost the compare-and-set to another refresh (a bug: must stay 0).",
            "counter",
            self.cas_conflicts(),
        );
        gauge(
            &mut out,
            "linkvault_refresh_superseded_total",
            "Refresh results discarded because new credentials or a deletion landed meanwhile.",
            "counter",
            self.superseded(),
        );
        gauge(
            &mut out,
            "linkvault_refresh_grants_skipped_short_lease_total",
            "Grants not sent because the lease would not outlive the HTTP timeout.",
            "counter",
            self.grants_skipped_short_lease(),
        );
        gauge(
            &mut out,
            "linkvault_refresh_on_demand_total",
            "Refreshes started by a request using a tokenId.",
            "counter",
            self.on_demand_refreshes(),
        );
        gauge(
            &mut out,
            "linkvault_refresh_on_demand_coalesced_total",
            "Requests that waited for a refresh already in flight.",
            "counter",
            self.on_demand_coalesced(),
        );
        gauge(
            &mut out,
            "linkvault_webhook_backlog",
            "Webhook events in the outbox not yet delivered.",
            "gauge",
            self.webhook_backlog(),
        );
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_metric() {
        let m = EngineMetrics::default();
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
            "linkvault_refresh_total{integration=\"we\\\"ird\",outcome=\"transient\"} 1",
            "linkvault_refresh_lateness_seconds_bucket{le=\"0.05\"} 1",
            "linkvault_refresh_lateness_seconds_bucket{le=\"1\"} 2",
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
