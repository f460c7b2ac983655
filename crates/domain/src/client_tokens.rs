//! Client-managed token families: the rules that decide what a presented linkvault access or refresh token
//! may do. A family is issued per connection hand-out (sign-in or Link) to a client in `client` token mode;
//! it is `active` until revoked (refresh-token reuse, or a newer sign-in of the same connection). Within an
//! active family the refresh token may be rotated: the old one becomes *spent*, and presenting a spent
//! refresh token again is treated as theft (RFC 9700 §4.14.2) and revokes the whole family.
//!
//! No I/O: the stores look up what a digest matches, inside their transaction, and call these functions to
//! decide, so both backends apply the same rules.

use time::OffsetDateTime;

/// Why a family stopped working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedReason {
    /// A spent refresh token was presented again.
    RefreshTokenReused,
    /// The same connection was handed out again (a new sign-in); the older family is retired.
    Superseded,
}

impl RevokedReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            RevokedReason::RefreshTokenReused => "refreshTokenReused",
            RevokedReason::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "refreshTokenReused" => Some(RevokedReason::RefreshTokenReused),
            "superseded" => Some(RevokedReason::Superseded),
            _ => None,
        }
    }
}

/// The family's state as far as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyState {
    Active,
    Revoked(RevokedReason),
}

/// What a presented refresh token's digest matched, looked up by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshMatch {
    /// Nothing, or a family of another client or another integration `type`: indistinguishable.
    Unknown,
    /// The family's current refresh token.
    Current { family: FamilyState, refresh_expires_at: Option<OffsetDateTime> },
    /// A refresh token the family has already rotated away from.
    Spent { family: FamilyState },
}

/// What to do with a refresh request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Issue a new access token; with `rotate`, also a new refresh token, spending the presented one.
    Issue { rotate: bool },
    /// Reuse of a spent refresh token: revoke the family (all its tokens) and refuse.
    RevokeForReuse,
    /// Refuse without changing anything.
    Refuse(TokenRefusal),
}

/// Why a presented client token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// Not a token of this client (or no token at all).
    #[error("unknown token")]
    Unknown,
    /// Past its expiry.
    #[error("the token has expired")]
    Expired,
    /// Its family was revoked.
    #[error("the token has been revoked")]
    Revoked,
    /// A spent refresh token was presented again; the family is now revoked.
    #[error("a spent refresh token was presented again; every token of its family is revoked")]
    RefreshTokenReused,
}

/// Decides a refresh request. A revoked family refuses everything as `Revoked`, whichever of its refresh
/// tokens is presented; reuse is only detected (and acted on) while the family is still active.
pub fn decide_refresh(found: RefreshMatch, now: OffsetDateTime, rotate: bool) -> RefreshDecision {
    match found {
        RefreshMatch::Unknown => RefreshDecision::Refuse(TokenRefusal::Unknown),
        RefreshMatch::Current { family: FamilyState::Revoked(_), .. }
        | RefreshMatch::Spent { family: FamilyState::Revoked(_) } => RefreshDecision::Refuse(TokenRefusal::Revoked),
        RefreshMatch::Spent { family: FamilyState::Active } => RefreshDecision::RevokeForReuse,
        RefreshMatch::Current { family: FamilyState::Active, refresh_expires_at } => {
            if refresh_expires_at.is_some_and(|at| at <= now) {
                RefreshDecision::Refuse(TokenRefusal::Expired)
            } else {
                RefreshDecision::Issue { rotate }
            }
        }
    }
}

/// What a presented access token's digest matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMatch {
    Unknown,
    Found { family: FamilyState, expires_at: OffsetDateTime },
}

/// Decides whether an access token may be used now. Revocation wins over expiry, so an app learns that
/// refreshing would not help.
pub fn decide_access(found: AccessMatch, now: OffsetDateTime) -> Result<(), TokenRefusal> {
    match found {
        AccessMatch::Unknown => Err(TokenRefusal::Unknown),
        AccessMatch::Found { family: FamilyState::Revoked(_), .. } => Err(TokenRefusal::Revoked),
        AccessMatch::Found { expires_at, .. } if expires_at <= now => Err(TokenRefusal::Expired),
        AccessMatch::Found { .. } => Ok(()),
    }
}

/// The lifetime of a new access token: the policy's, but never past the refresh token's end (a family whose
/// refresh token has expired is over, and its access tokens with it).
pub fn access_expiry(
    now: OffsetDateTime,
    access_ttl: time::Duration,
    refresh_expires_at: Option<OffsetDateTime>,
) -> OffsetDateTime {
    let wanted = now + access_ttl;
    match refresh_expires_at {
        Some(end) if end < wanted => end.max(now),
        _ => wanted,
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
    }

    const REUSED: FamilyState = FamilyState::Revoked(RevokedReason::RefreshTokenReused);
    const SUPERSEDED: FamilyState = FamilyState::Revoked(RevokedReason::Superseded);

    #[test]
    fn current_refresh_token_issues_with_or_without_rotation() {
        for rotate in [false, true] {
            let found = RefreshMatch::Current { family: FamilyState::Active, refresh_expires_at: None };
            assert_eq!(decide_refresh(found, t0(), rotate), RefreshDecision::Issue { rotate });
            let later = RefreshMatch::Current {
                family: FamilyState::Active,
                refresh_expires_at: Some(t0() + Duration::seconds(1)),
            };
            assert_eq!(decide_refresh(later, t0(), rotate), RefreshDecision::Issue { rotate });
        }
    }

    #[test]
    fn expired_refresh_token_is_refused_without_revoking() {
        for end in [t0(), t0() - Duration::seconds(1)] {
            let found = RefreshMatch::Current { family: FamilyState::Active, refresh_expires_at: Some(end) };
            assert_eq!(decide_refresh(found, t0(), true), RefreshDecision::Refuse(TokenRefusal::Expired));
        }
    }

    #[test]
    fn spent_refresh_token_revokes_an_active_family_once() {
        let found = RefreshMatch::Spent { family: FamilyState::Active };
        for rotate in [false, true] {
            assert_eq!(decide_refresh(found, t0(), rotate), RefreshDecision::RevokeForReuse);
        }
        // Afterwards every refresh token of the family, spent or current, is simply revoked.
        for family in [REUSED, SUPERSEDED] {
            assert_eq!(
                decide_refresh(RefreshMatch::Spent { family }, t0(), true),
                RefreshDecision::Refuse(TokenRefusal::Revoked)
            );
            assert_eq!(
                decide_refresh(RefreshMatch::Current { family, refresh_expires_at: None }, t0(), false),
                RefreshDecision::Refuse(TokenRefusal::Revoked)
            );
        }
    }

    #[test]
    fn unknown_refresh_token_changes_nothing() {
        assert_eq!(decide_refresh(RefreshMatch::Unknown, t0(), true), RefreshDecision::Refuse(TokenRefusal::Unknown));
    }

    #[test]
    fn access_tokens_expire_and_revocation_wins() {
        let live = AccessMatch::Found { family: FamilyState::Active, expires_at: t0() + Duration::seconds(1) };
        assert_eq!(decide_access(live, t0()), Ok(()));
        let at_end = AccessMatch::Found { family: FamilyState::Active, expires_at: t0() };
        assert_eq!(decide_access(at_end, t0()), Err(TokenRefusal::Expired));
        for family in [REUSED, SUPERSEDED] {
            let expired = AccessMatch::Found { family, expires_at: t0() - Duration::hours(1) };
            assert_eq!(decide_access(expired, t0()), Err(TokenRefusal::Revoked));
            let live = AccessMatch::Found { family, expires_at: t0() + Duration::hours(1) };
            assert_eq!(decide_access(live, t0()), Err(TokenRefusal::Revoked));
        }
        assert_eq!(decide_access(AccessMatch::Unknown, t0()), Err(TokenRefusal::Unknown));
    }

    #[test]
    fn access_expiry_is_capped_by_the_refresh_token() {
        let hour = Duration::hours(1);
        assert_eq!(access_expiry(t0(), hour, None), t0() + hour);
        assert_eq!(access_expiry(t0(), hour, Some(t0() + Duration::days(1))), t0() + hour);
        assert_eq!(access_expiry(t0(), hour, Some(t0() + Duration::minutes(5))), t0() + Duration::minutes(5));
        assert_eq!(access_expiry(t0(), hour, Some(t0() - Duration::minutes(5))), t0());
    }

    #[test]
    fn revoked_reasons_round_trip() {
        for r in [RevokedReason::RefreshTokenReused, RevokedReason::Superseded] {
            assert_eq!(RevokedReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(RevokedReason::parse("x"), None);
    }
}
