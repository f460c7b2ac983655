//! Per-integration limits on refresh grants: a concurrency cap (semaphore) and a rate limit (governor's GCRA),
//! so that one large batch cannot hammer an exchange or trip its own rate limiting for every user at once.
//! The rate limiter runs on tokio's clock, so the paused-clock simulator and tests see the same spacing.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Tokio's clock as governor sees it: the time since the limiter was made (paused with tokio in tests).
#[derive(Debug, Clone)]
struct TokioClock(Instant);

impl GovernorClock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.0)
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// The limits of one integration.
pub(crate) struct IntegrationLimiter {
    permits: Arc<Semaphore>,
    rate: Direct,
}

impl std::fmt::Debug for IntegrationLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegrationLimiter").field("permits", &self.permits).finish_non_exhaustive()
    }
}

/// Longest a single wait for a rate token can be (guards against a rate configured as ~0).
const MAX_TOKEN_WAIT: Duration = Duration::from_secs(60);

impl IntegrationLimiter {
    /// `rate_per_sec` grants a second after a burst of `burst`; a rate that is not a positive number is 1/s.
    pub(crate) fn new(concurrency: usize, rate_per_sec: f64, burst: u32) -> Self {
        let rate_per_sec = if rate_per_sec.is_finite() && rate_per_sec > 0.0 { rate_per_sec } else { 1.0 };
        // One grant per `period`; a rate above a billion per second is one per nanosecond.
        let period = Duration::from_secs_f64(1.0 / rate_per_sec).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst);
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            rate: RateLimiter::direct_with_clock(quota, TokioClock(Instant::now())),
        }
    }

    /// Takes one rate token now, or says how long until one is available.
    fn try_take(&self) -> Result<(), Duration> {
        self.rate.check().map_err(|not_until| not_until.wait_time_from(self.rate.clock().now()).min(MAX_TOKEN_WAIT))
    }

    /// Waits for a concurrency slot, then for a rate token. The slot is held until the permit is dropped.
    pub(crate) async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok()?;
        // Each failed attempt sleeps exactly until a token should be there; a few rounds at most under
        // contention, bounded all the same.
        for _ in 0..10_000 {
            match self.try_take() {
                Ok(()) => return Some(permit),
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limit_spaces_grants_after_the_burst() {
        let limiter = IntegrationLimiter::new(100, 10.0, 3);
        let start = Instant::now();
        let mut permits = Vec::new();
        for _ in 0..8 {
            permits.push(limiter.acquire().await.unwrap());
        }
        // 3 at once from the burst, then 5 more at 10/s: 0.5 s on the paused clock.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(499) && elapsed <= Duration::from_millis(510), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_cap_holds_until_a_permit_is_dropped() {
        let limiter = Arc::new(IntegrationLimiter::new(2, 1000.0, 1000));
        let a = limiter.acquire().await.unwrap();
        let _b = limiter.acquire().await.unwrap();
        let waiter = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.acquire().await.is_some() })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "a third grant waits for a slot");
        drop(a);
        assert!(waiter.await.unwrap());
    }
}
