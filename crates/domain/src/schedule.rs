//! Refresh scheduling rules: when a connection's tokens are renewed, how a failed refresh backs off, when the
//! end of a refresh token is announced and when dead credentials flip to `reauthRequired`.
//!
//! Pure functions of explicit instants. Jitter is derived from a caller-supplied seed (the engine hashes the
//! tokenId and the refresh count) rather than a random generator, so every rule is tested with fixed times and
//! a row's schedule can be recomputed identically by any instance.

use time::{Duration, OffsetDateTime};

/// Every connection whose credentials can be renewed is renewed at least this often, so idle refresh tokens
/// that expire from disuse stay alive (engineering notes, "Refresh correctness").
pub const TOUCH_INTERVAL: Duration = Duration::hours(24);
/// Jitter spreads refreshes of tokens issued together; at most this share of the token's lifetime…
pub const JITTER_SHARE_PERCENT: i64 = 10;
/// …and never more than this, so a day-long token is not refreshed hours early.
pub const MAX_JITTER: Duration = Duration::minutes(5);
/// The end of a refresh token is acted on (renewal or warning) this long ahead at most…
pub const REFRESH_TOKEN_MAX_LEAD: Duration = Duration::days(7);
/// …or this share of its lifetime when that is shorter (a 4-day token is warned about one day ahead).
pub const REFRESH_TOKEN_LEAD_SHARE_PERCENT: i64 = 25;
/// The first retry after a transient failure waits about this long; each further failure doubles it…
pub const BACKOFF_BASE: Duration = Duration::seconds(1);
/// …up to this.
pub const BACKOFF_CAP: Duration = Duration::minutes(15);
/// A retry is never scheduled sooner than this after a failure (no hot loop on a failing upstream).
pub const MIN_RETRY_DELAY: Duration = Duration::milliseconds(250);
/// Refreshes of one connection are at least this far apart even when the integration declares no minimum,
/// so an upstream that returns an already-expiring token cannot drive a refresh loop.
pub const MIN_REFRESH_SPACING: Duration = Duration::milliseconds(500);

/// An integration's timing, as the schedule needs it (the catalog's `TimingPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulePolicy {
    /// Refresh this long before the access token expires (bounded by half the token's lifetime).
    pub margin: Duration,
    /// The upstream refuses refreshes closer together than this.
    pub min_refresh_interval: Duration,
    /// A refresh returns a new refresh token with a new lifetime, so a refresh token's end can be renewed.
    pub rotates_refresh_tokens: bool,
    /// How long before a refresh token's end it is renewed (rotating) or announced (otherwise); see
    /// [`refresh_token_lead`]. A constant of the integration, because the issue time of a refresh token that
    /// does not rotate is not known once access tokens have been refreshed with it.
    pub refresh_token_lead: Duration,
}

impl SchedulePolicy {
    /// The lead for an integration whose refresh tokens live `ttl` (7 days when unknown).
    pub fn lead_for_refresh_ttl(ttl: Option<Duration>) -> Duration {
        ttl.map_or(REFRESH_TOKEN_MAX_LEAD, refresh_token_lead)
    }
}

/// How a connection's credentials are renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// OAuth with a refresh token: the refresh grant.
    RefreshGrant,
    /// A credentials session, or OAuth without a refresh token: nothing can renew it; it dies at expiry.
    None,
}

/// The facts about one connection's credentials that the schedule depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialTimes {
    /// When the current credentials were obtained (stored or refreshed): origin of lifetimes and of the daily
    /// touch.
    pub obtained_at: OffsetDateTime,
    pub access_expires_at: Option<OffsetDateTime>,
    pub refresh_expires_at: Option<OffsetDateTime>,
    /// `connection.reauthRequiredSoon` was already sent for the current refresh token.
    pub reauth_warned: bool,
}

/// What to do with a connection whose scheduled time has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the refresh grant now.
    Refresh,
    /// Nothing is due yet; look again at `at`.
    Wait { at: OffsetDateTime },
    /// Tell the app that the refresh token ends soon and cannot be renewed, then look again at `next`.
    WarnReauthSoon { next: OffsetDateTime },
    /// The credentials are dead: the connection becomes `reauthRequired`.
    ReauthRequired { reason: ReauthReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReauthReason {
    /// A credentials session (or an access token without a refresh token) reached its expiry.
    SessionExpired,
    /// The refresh token's known lifetime is over.
    RefreshTokenExpired,
}

impl ReauthReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReauthReason::SessionExpired => "session_expired",
            ReauthReason::RefreshTokenExpired => "refresh_token_expired",
        }
    }
}

fn percent(d: Duration, pct: i64) -> Duration {
    Duration::milliseconds((d.whole_milliseconds() * i128::from(pct) / 100).try_into().unwrap_or(i64::MAX))
}

/// The margin actually applied: the integration's, but never more than half the token's lifetime, so that a
/// short-lived token (seconds, in the sandbox) is not refreshed the moment it arrives.
pub fn effective_margin(margin: Duration, lifetime: Duration) -> Duration {
    margin.min(lifetime / 2).max(Duration::ZERO)
}

/// Jitter for a token of `lifetime`: in `[0, min(10% of lifetime, 5 min)]`, chosen by `seed`.
pub fn jitter(lifetime: Duration, seed: u64) -> Duration {
    let bound = percent(lifetime, JITTER_SHARE_PERCENT).min(MAX_JITTER);
    let bound_ms = u64::try_from(bound.whole_milliseconds()).unwrap_or(0);
    if bound_ms == 0 {
        return Duration::ZERO;
    }
    Duration::milliseconds(i64::try_from(seed % (bound_ms + 1)).unwrap_or(0))
}

/// How long before a refresh token's end it is renewed or announced: 7 days or a quarter of its lifetime.
pub fn refresh_token_lead(lifetime: Duration) -> Duration {
    percent(lifetime, REFRESH_TOKEN_LEAD_SHARE_PERCENT).min(REFRESH_TOKEN_MAX_LEAD).max(Duration::ZERO)
}

/// The refresh token's end can be pushed back by refreshing: the integration rotates refresh tokens and the
/// current one was not itself issued inside its lead window (an upstream that rotates without extending
/// would otherwise be refreshed in a loop; it is warned about instead).
fn renewable(policy: &SchedulePolicy, times: &CredentialTimes, refresh_expires_at: OffsetDateTime) -> bool {
    policy.rotates_refresh_tokens && refresh_expires_at - policy.refresh_token_lead > times.obtained_at
}

/// When a renewable connection is next refreshed:
/// `min(access expiry − margin − jitter, obtained + 24 h, refresh-token end − lead)`, never sooner than the
/// integration's minimum interval after the last refresh. A non-rotating refresh token's end adds the time
/// to warn about it (or, once warned, the end itself, when the connection flips to `reauthRequired`).
pub fn next_refresh_at(policy: &SchedulePolicy, times: &CredentialTimes, seed: u64) -> OffsetDateTime {
    let mut at = times.obtained_at + TOUCH_INTERVAL;
    if let Some(expires) = times.access_expires_at {
        let lifetime = (expires - times.obtained_at).max(Duration::ZERO);
        at = at.min(expires - effective_margin(policy.margin, lifetime) - jitter(lifetime, seed));
    }
    if let Some(refresh_end) = times.refresh_expires_at {
        at = at.min(if renewable(policy, times, refresh_end) || !times.reauth_warned {
            refresh_end - policy.refresh_token_lead
        } else {
            refresh_end
        });
    }
    let floor = times.obtained_at + policy.min_refresh_interval.max(MIN_REFRESH_SPACING);
    // The end of a refresh token is not postponed by the floor: it must be acted on before it passes.
    match times.refresh_expires_at {
        Some(end) if end <= floor => at,
        _ => at.max(floor),
    }
}

/// The next time a connection that cannot be renewed needs attention: its expiry, when it flips to
/// `reauthRequired`. Without a known expiry it is looked at again after the touch interval.
pub fn unrenewable_check_at(times: &CredentialTimes) -> OffsetDateTime {
    times.access_expires_at.unwrap_or(times.obtained_at + TOUCH_INTERVAL)
}

/// What the scheduler does with a connection at `now`.
pub fn decide(
    now: OffsetDateTime,
    renewal: Renewal,
    policy: &SchedulePolicy,
    times: &CredentialTimes,
    seed: u64,
) -> Decision {
    if renewal == Renewal::None {
        return match times.access_expires_at {
            Some(expires) if expires <= now => Decision::ReauthRequired { reason: ReauthReason::SessionExpired },
            _ => Decision::Wait { at: unrenewable_check_at(times) },
        };
    }
    if let Some(refresh_end) = times.refresh_expires_at {
        if refresh_end <= now {
            return Decision::ReauthRequired { reason: ReauthReason::RefreshTokenExpired };
        }
        if !renewable(policy, times, refresh_end)
            && !times.reauth_warned
            && now >= refresh_end - policy.refresh_token_lead
        {
            let warned = CredentialTimes { reauth_warned: true, ..*times };
            return Decision::WarnReauthSoon { next: next_refresh_at(policy, &warned, seed) };
        }
    }
    let at = next_refresh_at(policy, times, seed);
    if now >= at { Decision::Refresh } else { Decision::Wait { at } }
}

/// Whether a request using the connection must refresh it first: the access token has expired or is inside
/// the margin (no jitter: jitter only spreads the scheduler's work). The integration's minimum interval
/// still applies unless the token has actually expired.
pub fn needs_refresh_on_demand(now: OffsetDateTime, policy: &SchedulePolicy, times: &CredentialTimes) -> bool {
    let Some(expires) = times.access_expires_at else { return false };
    if expires <= now {
        return true;
    }
    let lifetime = (expires - times.obtained_at).max(Duration::ZERO);
    now >= expires - effective_margin(policy.margin, lifetime)
        && now >= times.obtained_at + policy.min_refresh_interval.max(MIN_REFRESH_SPACING)
}

/// When to retry after the `failures`-th consecutive transient failure: exponential from 1 s with equal
/// jitter (half fixed, half chosen by `seed`), capped at 15 min. While the access token is still valid the
/// retry lands at most halfway to its expiry, so a retry is never scheduled after expiry while time remains.
/// An upstream `Retry-After` is honoured even past that point: the upstream will not serve us sooner.
pub fn backoff_until(
    now: OffsetDateTime,
    failures: u32,
    seed: u64,
    retry_after: Option<Duration>,
    access_expires_at: Option<OffsetDateTime>,
) -> OffsetDateTime {
    let exponent = failures.saturating_sub(1).min(20);
    let full = (BACKOFF_BASE * 2_i32.saturating_pow(exponent)).min(BACKOFF_CAP);
    let half: Duration = full / 2_i32;
    let half_ms = u64::try_from(half.whole_milliseconds()).unwrap_or(0);
    let random_part = Duration::milliseconds(i64::try_from(seed % (half_ms + 1)).unwrap_or(0));
    let mut delay = (half + random_part).max(MIN_RETRY_DELAY);
    if let Some(expires) = access_expires_at
        && expires > now
    {
        delay = delay.min(((expires - now) / 2_i32).max(Duration::ZERO));
    }
    if let Some(upstream) = retry_after {
        delay = delay.max(upstream);
    }
    now + delay
}

/// A stable 64-bit seed from bytes (FNV-1a) mixed with `salt`: the engine seeds jitter with a tokenId and
/// its refresh count, so each generation of each connection lands somewhere else in the jitter window.
pub fn seed_from(bytes: &[u8], salt: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter().chain(salt.to_le_bytes().iter()) {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // A final avalanche so that the low bits (used by `%`) depend on every input byte.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-06-01 12:00:00 UTC);

    fn policy(margin_secs: i64, rotates: bool) -> SchedulePolicy {
        SchedulePolicy {
            margin: Duration::seconds(margin_secs),
            min_refresh_interval: Duration::ZERO,
            rotates_refresh_tokens: rotates,
            refresh_token_lead: REFRESH_TOKEN_MAX_LEAD,
        }
    }

    fn times(access_secs: Option<i64>, refresh_secs: Option<i64>) -> CredentialTimes {
        CredentialTimes {
            obtained_at: T0,
            access_expires_at: access_secs.map(|s| T0 + Duration::seconds(s)),
            refresh_expires_at: refresh_secs.map(|s| T0 + Duration::seconds(s)),
            reauth_warned: false,
        }
    }

    #[test]
    fn margin_is_bounded_by_half_the_lifetime() {
        assert_eq!(effective_margin(Duration::seconds(300), Duration::hours(1)), Duration::seconds(300));
        assert_eq!(effective_margin(Duration::seconds(300), Duration::seconds(4)), Duration::seconds(2));
        assert_eq!(effective_margin(Duration::seconds(300), Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_five_minutes() {
        for seed in [0_u64, 1, 7, 399, 400, 401, u64::MAX, 123_456_789] {
            assert!(jitter(Duration::seconds(4), seed) <= Duration::milliseconds(400));
            assert!(jitter(Duration::hours(1), seed) <= Duration::minutes(5));
            assert!(jitter(Duration::hours(1), seed) >= Duration::ZERO);
        }
        // The bound itself is reachable and the seed decides: seed % (bound + 1).
        assert_eq!(jitter(Duration::seconds(4), 400), Duration::milliseconds(400));
        assert_eq!(jitter(Duration::seconds(4), 401), Duration::ZERO);
        assert_eq!(jitter(Duration::hours(1), 300_000), Duration::milliseconds(300_000));
        assert_eq!(jitter(Duration::ZERO, 99), Duration::ZERO);
    }

    #[test]
    fn next_refresh_is_expiry_minus_margin_minus_jitter() {
        // 1 h token, 300 s margin, seed 0 → no jitter: refresh at expiry − 300 s.
        let at = next_refresh_at(&policy(300, true), &times(Some(3600), None), 0);
        assert_eq!(at, T0 + Duration::seconds(3300));
        // seed 1000 → 1 s of jitter earlier.
        let at = next_refresh_at(&policy(300, true), &times(Some(3600), None), 1000);
        assert_eq!(at, T0 + Duration::seconds(3299));
        // 4 s sandbox token, 300 s margin → margin 2 s, jitter ≤ 0.4 s.
        let at = next_refresh_at(&policy(300, true), &times(Some(4), None), 400);
        assert_eq!(at, T0 + Duration::milliseconds(1600));
    }

    #[test]
    fn every_connection_is_touched_daily() {
        // A 30-day access token is still refreshed 24 h after it was obtained.
        let at = next_refresh_at(&policy(300, false), &times(Some(30 * 86_400), None), 0);
        assert_eq!(at, T0 + TOUCH_INTERVAL);
        // No expiry at all: touched daily too.
        assert_eq!(next_refresh_at(&policy(300, false), &times(None, None), 5), T0 + TOUCH_INTERVAL);
    }

    #[test]
    fn minimum_interval_is_respected() {
        let mut p = policy(300, true);
        p.min_refresh_interval = Duration::seconds(10);
        // A 4 s token would be due at 2 s, but the upstream refuses refreshes closer than 10 s.
        assert_eq!(next_refresh_at(&p, &times(Some(4), None), 0), T0 + Duration::seconds(10));
        // Without a declared minimum, refreshes are still at least MIN_REFRESH_SPACING apart.
        assert_eq!(next_refresh_at(&policy(300, true), &times(Some(0), None), 0), T0 + MIN_REFRESH_SPACING);
    }

    #[test]
    fn rotating_refresh_token_is_renewed_ahead_of_its_end() {
        // Refresh token lives 8 days; lead = min(7 d, 2 d) = 2 d; access token lives 60 days (touch wins).
        let mut p = policy(300, true);
        p.refresh_token_lead = SchedulePolicy::lead_for_refresh_ttl(Some(Duration::days(8)));
        assert_eq!(p.refresh_token_lead, Duration::days(2));
        let t = times(Some(60 * 86_400), Some(8 * 86_400));
        assert_eq!(next_refresh_at(&p, &t, 0), T0 + TOUCH_INTERVAL);
        // After several daily touches the renewal point comes before the next touch: refresh then.
        let now = T0 + Duration::days(6);
        let touched = CredentialTimes { obtained_at: T0 + Duration::days(5) + Duration::hours(1), ..t };
        assert_eq!(next_refresh_at(&p, &touched, 0), T0 + Duration::days(6));
        assert_eq!(decide(now, Renewal::RefreshGrant, &p, &touched, 0), Decision::Refresh);
        // 40-day refresh token: lead capped at 7 days; unknown lifetime: 7 days.
        assert_eq!(refresh_token_lead(Duration::days(40)), Duration::days(7));
        assert_eq!(SchedulePolicy::lead_for_refresh_ttl(None), Duration::days(7));
    }

    #[test]
    fn non_rotating_refresh_token_end_is_warned_then_flips_to_reauth() {
        let mut p = policy(300, false);
        p.refresh_token_lead = SchedulePolicy::lead_for_refresh_ttl(Some(Duration::days(4)));
        // Refresh token lives 4 days → lead 1 day. Access token 1 h, refreshed hourly.
        let mut t = times(Some(3600), Some(4 * 86_400));
        t.obtained_at = T0 + Duration::days(3) - Duration::minutes(30);
        t.access_expires_at = Some(t.obtained_at + Duration::hours(1));
        let warn_at = T0 + Duration::days(3);
        assert_eq!(next_refresh_at(&p, &t, 0), warn_at);
        match decide(warn_at, Renewal::RefreshGrant, &p, &t, 0) {
            Decision::WarnReauthSoon { next } => {
                // After the warning the normal access-token schedule continues.
                assert_eq!(next, t.obtained_at + Duration::minutes(55));
            }
            other => panic!("expected a warning, got {other:?}"),
        }
        // Once warned, the end itself is scheduled, and at the end the connection needs re-auth.
        let warned = CredentialTimes {
            reauth_warned: true,
            obtained_at: T0 + Duration::days(3) + Duration::hours(1),
            access_expires_at: Some(T0 + Duration::days(10)),
            ..t
        };
        assert_eq!(next_refresh_at(&p, &warned, 0), T0 + Duration::days(4));
        assert_eq!(
            decide(T0 + Duration::days(4), Renewal::RefreshGrant, &p, &warned, 0),
            Decision::ReauthRequired { reason: ReauthReason::RefreshTokenExpired }
        );
    }

    #[test]
    fn rotating_without_extension_is_warned_not_looped() {
        // Lead 15 min; the current refresh token was obtained 10 min before its end: refreshing cannot
        // push the end back, so the app is warned instead of the token being refreshed in a loop.
        let mut p = policy(300, true);
        p.refresh_token_lead = Duration::minutes(15);
        let mut t = times(Some(3600), Some(3600));
        t.obtained_at = T0 + Duration::minutes(50);
        let now = T0 + Duration::minutes(50) + Duration::seconds(10);
        assert!(matches!(decide(now, Renewal::RefreshGrant, &p, &t, 0), Decision::WarnReauthSoon { .. }));
        // Obtained well before the lead window: renewable, so it is refreshed at end − lead.
        t.obtained_at = T0;
        assert_eq!(next_refresh_at(&p, &t, 0), T0 + Duration::minutes(45));
    }

    #[test]
    fn sessions_become_reauth_required_at_expiry() {
        let p = policy(0, false);
        let t = times(Some(86_400), None);
        assert_eq!(
            decide(T0 + Duration::hours(23), Renewal::None, &p, &t, 0),
            Decision::Wait { at: T0 + Duration::seconds(86_400) }
        );
        assert_eq!(
            decide(T0 + Duration::seconds(86_400), Renewal::None, &p, &t, 0),
            Decision::ReauthRequired { reason: ReauthReason::SessionExpired }
        );
        assert_eq!(decide(T0, Renewal::None, &p, &times(None, None), 0), Decision::Wait { at: T0 + TOUCH_INTERVAL });
    }

    #[test]
    fn decide_waits_until_due_then_refreshes() {
        let p = policy(300, true);
        let t = times(Some(3600), Some(30 * 86_400));
        assert_eq!(
            decide(T0 + Duration::seconds(100), Renewal::RefreshGrant, &p, &t, 0),
            Decision::Wait { at: T0 + Duration::seconds(3300) }
        );
        assert_eq!(decide(T0 + Duration::seconds(3300), Renewal::RefreshGrant, &p, &t, 0), Decision::Refresh);
        assert_eq!(
            decide(T0 + Duration::days(31), Renewal::RefreshGrant, &p, &t, 0),
            Decision::ReauthRequired { reason: ReauthReason::RefreshTokenExpired }
        );
    }

    #[test]
    fn on_demand_refresh_inside_margin_or_expired() {
        let p = policy(300, true);
        let t = times(Some(3600), None);
        assert!(!needs_refresh_on_demand(T0 + Duration::seconds(3299), &p, &t));
        assert!(needs_refresh_on_demand(T0 + Duration::seconds(3300), &p, &t));
        assert!(needs_refresh_on_demand(T0 + Duration::seconds(4000), &p, &t));
        assert!(!needs_refresh_on_demand(T0, &p, &times(None, None)));
        let mut slow = p;
        slow.min_refresh_interval = Duration::hours(2);
        // Inside the margin but the upstream refuses early refreshes: use the still-valid token.
        assert!(!needs_refresh_on_demand(T0 + Duration::seconds(3300), &slow, &t));
        // Expired: refresh regardless.
        assert!(needs_refresh_on_demand(T0 + Duration::seconds(3600), &slow, &t));
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_caps() {
        // Equal jitter: failure n waits between half and all of min(2^(n-1) s, 15 min).
        for (failures, full_ms) in [(1_u32, 1000_i64), (2, 2000), (3, 4000), (11, 900_000), (40, 900_000)] {
            for seed in [0_u64, 1, 499, 1_000_000_007, u64::MAX] {
                let at = backoff_until(T0, failures, seed, None, None);
                let waited = at - T0;
                assert!(waited >= Duration::milliseconds(full_ms / 2), "{failures} {seed} {waited}");
                assert!(waited <= Duration::milliseconds(full_ms), "{failures} {seed} {waited}");
            }
        }
        assert_eq!(backoff_until(T0, 1, 0, None, None), T0 + Duration::milliseconds(500));
        assert_eq!(backoff_until(T0, 1, 500, None, None), T0 + Duration::milliseconds(1000));
    }

    #[test]
    fn backoff_never_lands_after_expiry_while_time_remains() {
        let expires = T0 + Duration::seconds(60);
        // 8th failure would wait 64–128 s; the token expires in 60 s: retry at most halfway, at 30 s.
        assert_eq!(backoff_until(T0, 8, 0, None, Some(expires)), T0 + Duration::seconds(30));
        // Small delays are unaffected.
        assert_eq!(backoff_until(T0, 1, 0, None, Some(expires)), T0 + Duration::milliseconds(500));
        // Already expired: plain backoff.
        assert_eq!(backoff_until(T0, 8, 0, None, Some(T0 - Duration::seconds(1))), T0 + Duration::seconds(64));
        // The upstream's Retry-After wins over both.
        assert_eq!(backoff_until(T0, 1, 0, Some(Duration::seconds(90)), Some(expires)), T0 + Duration::seconds(90));
    }

    #[test]
    fn seeds_are_stable_and_spread() {
        assert_eq!(seed_from(b"token", 1), seed_from(b"token", 1));
        assert_ne!(seed_from(b"token", 1), seed_from(b"token", 2));
        assert_ne!(seed_from(b"token-a", 1), seed_from(b"token-b", 1));
        // Low bits vary across consecutive salts (they pick the jitter).
        let distinct: std::collections::BTreeSet<u64> = (0..64).map(|s| seed_from(b"t", s) % 401).collect();
        assert!(distinct.len() > 40, "{}", distinct.len());
    }
}
