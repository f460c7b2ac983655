//! Counters exposed at `/metrics` in the Prometheus text format, the middleware that feeds them, the cached
//! connection gauge and the optional bearer token that guards the endpoint.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use linkvault_domain::Clock;
use linkvault_storage::DynStore;
use time::OffsetDateTime;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Default)]
pub struct Metrics {
    responses: [AtomicU64; 5],
    auth_failures: AtomicU64,
    connections_stored: AtomicU64,
    connections_deleted: AtomicU64,
    transfers_executed: AtomicU64,
    transfer_checks: AtomicU64,
    transfer_status_changes: AtomicU64,
    transfers_given_up: AtomicU64,
    /// The last connection count and when it was read (see [`CONNECTIONS_GAUGE_TTL`]).
    connections_gauge: tokio::sync::Mutex<Option<(OffsetDateTime, u64)>>,
}

/// How long one count of the stored connections answers scrapes. The gauge is a count read from the database,
/// not an in-process tally, because with several instances on PostgreSQL each instance sees only its own
/// creates and deletes; caching bounds the cost to one `COUNT(*)` per instance per interval however often (or
/// however many at once) `/metrics` is scraped, at the price of a figure up to this old.
pub const CONNECTIONS_GAUGE_TTL: time::Duration = time::Duration::seconds(30);

impl Metrics {
    pub(crate) fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_stored(&self) {
        self.connections_stored.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_deleted(&self) {
        self.connections_deleted.fetch_add(1, Ordering::Relaxed);
    }

    /// A managed transfer was made at the integration (retries answered from the stored result not counted).
    pub(crate) fn transfer_executed(&self) {
        self.transfers_executed.fetch_add(1, Ordering::Relaxed);
    }

    /// The status follower asked a provider where a transfer stands (or recorded why it could not).
    pub(crate) fn transfer_checked(&self) {
        self.transfer_checks.fetch_add(1, Ordering::Relaxed);
    }

    /// A transfer's status changed and was announced by webhook.
    pub(crate) fn transfer_status_changed(&self) {
        self.transfer_status_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// The follower stopped following a transfer that was still not final.
    pub(crate) fn transfer_given_up(&self) {
        self.transfers_given_up.fetch_add(1, Ordering::Relaxed);
    }

    /// The stored connection count, counted again only when the cached one is older than
    /// [`CONNECTIONS_GAUGE_TTL`] (or from the future, after the clock was set back). Concurrent scrapes wait for
    /// one count instead of each running it. `None` when the database cannot count and nothing is cached.
    pub async fn connections(&self, store: &DynStore, clock: &dyn Clock) -> Option<u64> {
        let mut gauge = self.connections_gauge.lock().await;
        let now = clock.now();
        if let Some((at, count)) = *gauge {
            if at <= now && now - at < CONNECTIONS_GAUGE_TTL {
                return Some(count);
            }
        }
        match store.count_connections().await {
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

    /// Renders every counter; `connections` is the stored connection count (see [`Metrics::connections`]).
    pub fn render(&self, connections: Option<u64>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP linkvault_http_responses_total HTTP responses by status class.");
        let _ = writeln!(out, "# TYPE linkvault_http_responses_total counter");
        for (class, counter) in STATUS_CLASSES.iter().zip(&self.responses) {
            let _ = writeln!(
                out,
                "linkvault_http_responses_total{{class=\"{class}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let counters = [
            (
                "linkvault_auth_failures_total",
                "Requests refused for missing or wrong client credentials.",
                &self.auth_failures,
            ),
            (
                "linkvault_connections_stored_total",
                "Connections created or re-authenticated.",
                &self.connections_stored,
            ),
            ("linkvault_connections_deleted_total", "Connections permanently deleted.", &self.connections_deleted),
            (
                "linkvault_transfers_executed_total",
                "Managed transfers made at an integration.",
                &self.transfers_executed,
            ),
            (
                "linkvault_transfer_checks_total",
                "Status checks of sent transfers made by the follower.",
                &self.transfer_checks,
            ),
            (
                "linkvault_transfer_status_changes_total",
                "Transfer status changes announced by webhook.",
                &self.transfer_status_changes,
            ),
            (
                "linkvault_transfers_given_up_total",
                "Transfers the follower stopped following before they were final.",
                &self.transfers_given_up,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        if let Some(n) = connections {
            let _ = writeln!(
                out,
                "# HELP linkvault_connections Managed connections stored.\n# TYPE linkvault_connections gauge\nlinkvault_connections {n}"
            );
        }
        out
    }
}

/// Counts responses and logs each request by its route template (never the raw URI, which may carry ids).
pub(crate) async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let response = next.run(req).await;
    let code = response.status().as_u16();
    if let Some(counter) = state.metrics.responses.get(usize::from(code / 100).saturating_sub(1)) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(%method, route = route.as_deref().unwrap_or("-"), status = code, elapsed_us = started.elapsed().as_micros() as u64, "request");
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
