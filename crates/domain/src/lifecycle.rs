//! The connection lifecycle: active ⇄ reauthRequired, and deletion from any state.
//!
//! Deletion is not a stored state: a deleted connection's row and data key are destroyed and only a
//! tombstone of its tokenId remains, so the state machine ends there.

use std::fmt;
use std::str::FromStr;

use crate::identity::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionStatus {
    /// Credentials are usable (or refreshable) now.
    Active,
    /// The integration refused our credentials; the end user must sign in again through Link or
    /// `/authenticate`, which lands on the same tokenId.
    ReauthRequired,
}

impl ConnectionStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::ReauthRequired => "reauthRequired",
        }
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectionStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(ConnectionStatus::Active),
            "reauthRequired" => Ok(ConnectionStatus::ReauthRequired),
            other => Err(ValidationError::new("status", format!("unknown connection status {other:?}"))),
        }
    }
}

/// Things that happen to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// The end user signed in (Link, `/authenticate`) or the app imported tokens.
    CredentialsStored,
    /// A refresh grant succeeded.
    Refreshed,
    /// The integration answered `invalid_grant`, a session expired, or a grant was lost in a crash.
    CredentialsRejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {event:?} event is not possible while the connection is {from}")]
pub struct TransitionError {
    pub from: ConnectionStatus,
    pub event: LifecycleEvent,
}

impl ConnectionStatus {
    /// The next state. Storing credentials is always allowed (it is how re-authentication lands on the
    /// same tokenId); a refresh can only succeed on an active connection, because a connection needing
    /// re-auth has no usable refresh token.
    pub fn apply(self, event: LifecycleEvent) -> Result<ConnectionStatus, TransitionError> {
        use ConnectionStatus::*;
        use LifecycleEvent::*;
        match (self, event) {
            (_, CredentialsStored) => Ok(Active),
            (Active, Refreshed) => Ok(Active),
            (_, CredentialsRejected) => Ok(ReauthRequired),
            (ReauthRequired, Refreshed) => Err(TransitionError { from: self, event }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionStatus::*;
    use LifecycleEvent::*;

    #[test]
    fn transitions() {
        assert_eq!(Active.apply(Refreshed), Ok(Active));
        assert_eq!(Active.apply(CredentialsRejected), Ok(ReauthRequired));
        assert_eq!(ReauthRequired.apply(CredentialsStored), Ok(Active));
        assert_eq!(ReauthRequired.apply(CredentialsRejected), Ok(ReauthRequired));
        assert!(ReauthRequired.apply(Refreshed).is_err());
        assert_eq!(Active.apply(CredentialsStored), Ok(Active));
    }

    #[test]
    fn status_round_trips() {
        for s in [Active, ReauthRequired] {
            assert_eq!(s.as_str().parse::<ConnectionStatus>().ok(), Some(s));
        }
        assert!("deleted".parse::<ConnectionStatus>().is_err());
    }
}
