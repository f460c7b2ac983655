//! The metrics at `/metrics`, kept in `prometheus-client` counters and histograms and encoded by it in the
//! OpenMetrics text format together with the refresh engine's and the webhook deliverer's collectors; the
//! middleware that feeds them (responses by status class, latency per route template), the cached connection
//! gauge and the optional bearer token that guards the endpoint.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use linkvault_vault::Vault;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

use crate::AppState;

/// The content type of the OpenMetrics text `prometheus-client` writes (Prometheus reads it natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Upper bounds (seconds) of the request latency buckets: resolves answer in well under a millisecond on
/// SQLite, calls to an integration take up to its timeout.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// The route label of a request no route matched (any path: it must not become a label of its own).
const UNMATCHED: &str = "unmatched";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

/// One latency series: the method (one of the standard ones, else `other`) and the matched route template,
/// never the raw path — so the number of series is bounded by the router, not by callers.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

/// The route label of a matched template: `/api/v1/tokens/{token_id}` becomes `/api/v1/tokens/:token_id`.
/// Braces inside a label value are valid exposition text, but common line-oriented readers of it (the
/// `prometheus-parse` crate among them) end the label set at the first `}`.
fn route_label(template: &str) -> String {
    template.chars().filter(|c| *c != '}').map(|c| if c == '{' { ':' } else { c }).collect()
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Latency histograms by matched route template, then method label (see `Metrics::route_histograms`).
type RouteHistograms = HashMap<Box<str>, Vec<(&'static str, Histogram)>>;

#[derive(Debug)]
pub struct Metrics {
    responses: Family<ClassLabels, Counter>,
    /// The counters of `responses` by class, taken once (a family lookup hashes the label set each time).
    class_counters: [Counter; STATUS_CLASSES.len()],
    request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// The histograms of `request_duration` by matched template (`""` for none) and method label, filled on
    /// first use: finding one costs a hash of the template as the router reports it, where building the
    /// label set cost two `String`s and a hash of both labels on every request. Bounded by the router's routes.
    route_histograms: RwLock<RouteHistograms>,
    auth_failures: Counter,
    connections_stored: Counter,
    connections_deleted: Counter,
    transfers_executed: Counter,
    transfer_checks: Counter,
    transfer_status_changes: Counter,
    transfers_given_up: Counter,
    /// The last connection count and when it was read (see [`CONNECTIONS_GAUGE_TTL`]).
    connections_gauge: tokio::sync::Mutex<Option<(OffsetDateTime, u64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let responses: Family<ClassLabels, Counter> = Family::default();
        // Every class is shown from the start (at 0), as dashboards expect a series to exist before it moves.
        let class_counters =
            STATUS_CLASSES.map(|class| Counter::clone(&responses.get_or_create(&ClassLabels { class })));
        Self {
            responses,
            class_counters,
            request_duration: Family::new_with_constructor(latency_histogram),
            route_histograms: RwLock::default(),
            auth_failures: Counter::default(),
            connections_stored: Counter::default(),
            connections_deleted: Counter::default(),
            transfers_executed: Counter::default(),
            transfer_checks: Counter::default(),
            transfer_status_changes: Counter::default(),
            transfers_given_up: Counter::default(),
            connections_gauge: tokio::sync::Mutex::default(),
        }
    }
}

/// How long one count of the stored connections answers scrapes. The gauge is a count read from the database,
/// not an in-process tally, because with several instances on PostgreSQL each instance sees only its own
/// creates and deletes; caching bounds the cost to one `COUNT(*)` per instance per interval however often (or
/// however many at once) `/metrics` is scraped, at the price of a figure up to this old.
pub const CONNECTIONS_GAUGE_TTL: time::Duration = time::Duration::seconds(30);

impl Metrics {
    /// Records one request's latency under its method and matched route template (`None`: unmatched).
    fn observe_latency(&self, method: &'static str, template: Option<&str>, seconds: f64) {
        let key = template.unwrap_or("");
        {
            let cache = self.route_histograms.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, histogram)) = cache.get(key).and_then(|per| per.iter().find(|(m, _)| *m == method)) {
                histogram.observe(seconds);
                return;
            }
        }
        let labels = RouteLabels { method, route: template.map_or_else(|| UNMATCHED.to_owned(), route_label) };
        let histogram = Histogram::clone(&self.request_duration.get_or_create(&labels));
        histogram.observe(seconds);
        let mut cache = self.route_histograms.write().unwrap_or_else(PoisonError::into_inner);
        let per = cache.entry(key.into()).or_default();
        if !per.iter().any(|(m, _)| *m == method) {
            per.push((method, histogram));
        }
    }

    pub(crate) fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    pub(crate) fn connection_stored(&self) {
        self.connections_stored.inc();
    }

    pub(crate) fn connection_deleted(&self) {
        self.connections_deleted.inc();
    }

    /// A managed transfer was made at the integration (retries answered from the stored result not counted).
    pub(crate) fn transfer_executed(&self) {
        self.transfers_executed.inc();
    }

    /// The status follower asked a provider where a transfer stands (or recorded why it could not).
    pub(crate) fn transfer_checked(&self) {
        self.transfer_checks.inc();
    }

    /// A transfer's status changed and was announced by webhook.
    pub(crate) fn transfer_status_changed(&self) {
        self.transfer_status_changes.inc();
    }

    /// The follower stopped following a transfer that was still not final.
    pub(crate) fn transfer_given_up(&self) {
        self.transfers_given_up.inc();
    }

    /// The stored connection count, counted again only when the cached one is older than
    /// [`CONNECTIONS_GAUGE_TTL`] (or from the future, after the clock was set back). Concurrent scrapes wait for
    /// one count instead of each running it. `None` when the database cannot count and nothing is cached.
    pub async fn connections(&self, vault: &Vault) -> Option<u64> {
        let mut gauge = self.connections_gauge.lock().await;
        let now = vault.clock().now();
        if let Some((at, count)) = *gauge {
            if at <= now && now - at < CONNECTIONS_GAUGE_TTL {
                return Some(count);
            }
        }
        match vault.count_connections().await {
            Ok(count) => {
                *gauge = Some((now, count));
                Some(count)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot count the stored connections");
                gauge.map(|(_, count)| count)
            }
        }
    }

    /// Encodes every metric, then those of `collectors` (the refresh engine's, the deliverer's), as one
    /// OpenMetrics exposition; `connections` is the stored connection count (see [`Metrics::connections`]),
    /// `audit_failures` the vault's count of audit records it could not write.
    pub fn render(&self, connections: Option<u64>, audit_failures: u64, collectors: Vec<Box<dyn Collector>>) -> String {
        // A registry per scrape: registering clones (shared atomics) is cheap, and the engine and the deliverer
        // may be replaced after start-up (`AppState::with_webhooks`), so nothing is registered for good.
        let mut registry = Registry::default();
        registry.register("linkvault_http_responses", "HTTP responses by status class", self.responses.clone());
        registry.register(
            "linkvault_http_request_duration_seconds",
            "Time to answer a request, by method and matched route template",
            self.request_duration.clone(),
        );
        for (name, help, counter) in [
            (
                "linkvault_auth_failures",
                "Requests refused for missing or wrong client credentials",
                &self.auth_failures,
            ),
            ("linkvault_connections_stored", "Connections created or re-authenticated", &self.connections_stored),
            ("linkvault_connections_deleted", "Connections permanently deleted", &self.connections_deleted),
            ("linkvault_transfers_executed", "Managed transfers made at an integration", &self.transfers_executed),
            (
                "linkvault_transfer_checks",
                "Status checks of sent transfers made by the follower",
                &self.transfer_checks,
            ),
            (
                "linkvault_transfer_status_changes",
                "Transfer status changes announced by webhook",
                &self.transfer_status_changes,
            ),
            (
                "linkvault_transfers_given_up",
                "Transfers the follower stopped following before they were final",
                &self.transfers_given_up,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "linkvault_audit_append_failures",
            "Audit records that could not be written (the action went ahead; see the error log)",
            ConstCounter::new(audit_failures),
        );
        if let Some(n) = connections {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            registry.register("linkvault_connections", "Managed connections stored", ConstGauge::new(n));
        }
        for collector in collectors {
            registry.register_collector(collector);
        }
        let mut out = String::new();
        // Writing to a String cannot fail; an error would mean a malformed descriptor (a bug), logged.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Counts responses, times each request by its route template and logs it (never the raw URI, which may
/// carry ids).
pub(crate) async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // `MatchedPath` is a shared string: cloning it does not allocate.
    let template = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    let elapsed = started.elapsed();
    let code = response.status().as_u16();
    if let Some(counter) = state.metrics.class_counters.get(usize::from(code / 100).saturating_sub(1)) {
        counter.inc();
    }
    let template = template.as_ref().map(MatchedPath::as_str);
    state.metrics.observe_latency(method_label(&method), template, elapsed.as_secs_f64());
    // The route label is only built when debug logging is on (the macro evaluates its fields only then).
    tracing::debug!(%method, route = template.map(route_label).as_deref().unwrap_or("-"), status = code, elapsed_us = elapsed.as_micros() as u64, "request");
    response
}

/// The bearer token `/metrics` requires when the operator sets one. Only its SHA-256 digest is kept, so the
/// token itself cannot end up in a log or a Debug print; presented tokens are digested and compared in constant
/// time (equal-length digests, so neither the content nor the length of the token leaks through timing).
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

/// Shortest metrics token accepted: long enough that guessing it over the network is hopeless.
pub const MIN_METRICS_TOKEN_CHARS: usize = 16;
const MAX_METRICS_TOKEN_CHARS: usize = 512;

impl MetricsToken {
    /// Accepts 16 to 512 visible ASCII characters (what fits in an `Authorization` header unchanged).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let len = raw.chars().count();
        if !(MIN_METRICS_TOKEN_CHARS..=MAX_METRICS_TOKEN_CHARS).contains(&len) {
            return Err(format!(
                "the metrics token must be {MIN_METRICS_TOKEN_CHARS} to {MAX_METRICS_TOKEN_CHARS} characters long \
                 (it has {len}); generate one with e.g. `openssl rand -hex 32`"
            ));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the metrics token may hold only visible ASCII characters (no spaces); generate one with \
                        e.g. `openssl rand -hex 32`"
                .to_owned());
        }
        Ok(Self(digest(raw.as_bytes())))
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn admits(&self, authorization: Option<&axum::http::HeaderValue>) -> bool {
        use subtle::ConstantTimeEq as _;
        let Some(presented) =
            authorization.map(axum::http::HeaderValue::as_bytes).and_then(|v| v.strip_prefix(b"Bearer ".as_slice()))
        else {
            return false;
        };
        bool::from(digest(presented).ct_eq(&self.0))
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_token_admits_only_its_own_bearer_header() {
        let token = MetricsToken::parse("0123456789abcdef0123").map_err(|e| e.to_string());
        let Ok(token) = token else { panic!("{token:?}") };
        let header = |v: &'static str| axum::http::HeaderValue::from_static(v);
        assert!(token.admits(Some(&header("Bearer 0123456789abcdef0123"))));
        assert!(!token.admits(Some(&header("Bearer 0123456789abcdef012"))));
        assert!(!token.admits(Some(&header("Basic 0123456789abcdef0123"))));
        assert!(!token.admits(Some(&header("0123456789abcdef0123"))));
        assert!(!token.admits(None));
        assert_eq!(format!("{token:?}"), "MetricsToken(..)");
    }

    #[test]
    fn metrics_token_must_be_long_and_visible_ascii() {
        assert!(MetricsToken::parse("short").is_err());
        assert!(MetricsToken::parse("has a space in it, sadly").is_err());
        assert!(MetricsToken::parse(&"x".repeat(513)).is_err());
        assert!(MetricsToken::parse(&"x".repeat(16)).is_ok());
    }
}
