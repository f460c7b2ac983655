//! Counters exposed at `/metrics` in the Prometheus text format, and the middleware that feeds them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

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
}

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

    /// Renders every counter; `connections` is the live row count read at scrape time.
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
