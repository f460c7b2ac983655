//! The Link purge timer: deletes link sessions and OAuth sign-ins well past their expiry, and forgets the
//! rate-limit state of idle keys. `serve` runs it beside the server and stops it with the server; the cut-off
//! is taken from the vault's clock, so tests drive it with an injected one.

use std::time::Duration;

use linkvault_vault::VaultError;
use tokio::sync::watch;

use crate::AppState;

/// Rows this long past their expiry are deleted (kept a while so a late page still gets "expired", not
/// "unknown").
pub const PURGE_AFTER: time::Duration = time::Duration::days(1);

/// Runs [`LinkPurger::purge_once`] every `interval`.
#[derive(Debug, Clone)]
pub struct LinkPurger {
    state: AppState,
    interval: Duration,
}

impl LinkPurger {
    pub fn new(state: AppState, interval: Duration) -> Self {
        Self { state, interval: interval.max(Duration::from_millis(10)) }
    }

    /// One pass: returns the number of link sessions deleted.
    pub async fn purge_once(&self) -> Result<u64, VaultError> {
        self.state.limits.forget_idle();
        self.state.vault.purge_link_sessions(PURGE_AFTER).await
    }

    /// Purges every `interval` until `stop` turns true (or its sender is dropped).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            }
            match self.purge_once().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(sessions = n, "purged expired link sessions"),
                Err(e) => tracing::warn!(error = %e, "cannot purge expired link sessions; retrying next interval"),
            }
        }
    }
}
