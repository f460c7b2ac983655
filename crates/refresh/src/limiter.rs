//! Per-integration limits on refresh grants: a concurrency cap (semaphore) and a rate limit (token bucket),
//! so that one large batch cannot hammer an exchange or trip its own rate limiting for every user at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The limits of one integration.
#[derive(Debug)]
pub(crate) struct IntegrationLimiter {
    permits: Arc<Semaphore>,
    bucket: Mutex<Bucket>,
    rate_per_sec: f64,
    burst: f64,
}

/// Longest a single wait for a bucket token can be (guards against a rate configured as ~0).
const MAX_TOKEN_WAIT: Duration = Duration::from_secs(60);

impl IntegrationLimiter {
    pub(crate) fn new(concurrency: usize, rate_per_sec: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            bucket: Mutex::new(Bucket { tokens: burst, last: Instant::now() }),
            rate_per_sec: if rate_per_sec.is_finite() && rate_per_sec > 0.0 { rate_per_sec } else { 1.0 },
            burst,
        }
    }

    /// Takes one bucket token now, or says how long until one is available.
    fn try_take(&self) -> Result<(), Duration> {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate_per_sec).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.rate_per_sec;
            Err(Duration::from_secs_f64(wait).min(MAX_TOKEN_WAIT))
        }
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
