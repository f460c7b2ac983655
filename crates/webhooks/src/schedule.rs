//! When to try a delivery again: the Standard Webhooks schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
//! 10 h, 10 h), extended so that a receiver down for up to about three days still gets every event.

use std::time::Duration;

const SCHEDULE_SECS: [u64; 10] =
    [0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600, 14 * 3600, 24 * 3600];

/// Attempts before an event is given up on (and kept, marked failed, for the operator).
pub const MAX_ATTEMPTS: u32 = SCHEDULE_SECS.len() as u32;

/// Delay before attempt number `attempt` (0-based; attempt 0 is the first delivery), with ±10% jitter drawn
/// from `jitter` ∈ [0, 1) so that a receiver coming back is not hit by every retry at once.
/// `None` once attempts are exhausted.
pub fn next_attempt_delay(attempt: u32, jitter: f64) -> Option<Duration> {
    let base = *SCHEDULE_SECS.get(usize::try_from(attempt).ok()?)?;
    let factor = 0.9 + 0.2 * jitter.clamp(0.0, 1.0);
    Some(Duration::from_secs_f64(base as f64 * factor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_about_three_days_and_then_stops() {
        let total: f64 = (0..MAX_ATTEMPTS).filter_map(|a| next_attempt_delay(a, 0.5)).map(|d| d.as_secs_f64()).sum();
        let days = total / 86_400.0;
        assert!((2.5..3.5).contains(&days), "{days} days");
        assert_eq!(next_attempt_delay(0, 0.7), Some(Duration::ZERO));
        assert_eq!(next_attempt_delay(MAX_ATTEMPTS, 0.5), None);
    }

    #[test]
    fn jitter_is_bounded() {
        for attempt in 1..MAX_ATTEMPTS {
            let base = SCHEDULE_SECS[attempt as usize] as f64;
            let low = next_attempt_delay(attempt, 0.0).map(|d| d.as_secs_f64()).unwrap_or_default();
            let high = next_attempt_delay(attempt, 1.0).map(|d| d.as_secs_f64()).unwrap_or_default();
            assert!((low - base * 0.9).abs() < 1e-6 && (high - base * 1.1).abs() < 1e-6);
        }
    }
}
