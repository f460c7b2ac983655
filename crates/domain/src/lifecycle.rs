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

/// The webhook events a connection's lifecycle produces. They are written to the transactional outbox in
/// the same transaction as the state change they announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionEvent {
    /// A new tokenId was issued.
    Created,
    /// The connection moved to `reauthRequired`.
    ReauthRequired,
    /// The connection still works but its refresh token ends soon and cannot be renewed.
    ReauthRequiredSoon,
    /// A `reauthRequired` connection was re-authenticated onto the same tokenId.
    Recovered,
    /// The connection was permanently deleted.
    Deleted,
}

impl ConnectionEvent {
    pub const ALL: [ConnectionEvent; 5] = [
        ConnectionEvent::Created,
        ConnectionEvent::ReauthRequired,
        ConnectionEvent::ReauthRequiredSoon,
        ConnectionEvent::Recovered,
        ConnectionEvent::Deleted,
    ];

    /// The event type on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionEvent::Created => "connection.created",
            ConnectionEvent::ReauthRequired => "connection.reauthRequired",
            ConnectionEvent::ReauthRequiredSoon => "connection.reauthRequiredSoon",
            ConnectionEvent::Recovered => "connection.recovered",
            ConnectionEvent::Deleted => "connection.deleted",
        }
    }

    /// The event a transition of an existing connection announces, if any: entering `reauthRequired`, or
    /// leaving it. Staying in a state announces nothing (a refresh is not news to the app).
    pub fn for_transition(from: ConnectionStatus, to: ConnectionStatus) -> Option<ConnectionEvent> {
        match (from, to) {
            (ConnectionStatus::Active, ConnectionStatus::ReauthRequired) => Some(ConnectionEvent::ReauthRequired),
            (ConnectionStatus::ReauthRequired, ConnectionStatus::Active) => Some(ConnectionEvent::Recovered),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    fn every_transition_and_the_event_it_announces() {
        let events = [CredentialsStored, Refreshed, CredentialsRejected];
        let expected = [
            // (from, event) → (to, webhook event)
            (Active, CredentialsStored, Some((Active, None))),
            (Active, Refreshed, Some((Active, None))),
            (Active, CredentialsRejected, Some((ReauthRequired, Some(ConnectionEvent::ReauthRequired)))),
            (ReauthRequired, CredentialsStored, Some((Active, Some(ConnectionEvent::Recovered)))),
            (ReauthRequired, Refreshed, None),
            (ReauthRequired, CredentialsRejected, Some((ReauthRequired, None))),
        ];
        assert_eq!(expected.len(), 2 * events.len());
        for (from, event, outcome) in expected {
            match (from.apply(event), outcome) {
                (Ok(to), Some((want, webhook))) => {
                    assert_eq!(to, want, "{from} + {event:?}");
                    assert_eq!(ConnectionEvent::for_transition(from, to), webhook, "{from} + {event:?}");
                }
                (Err(e), None) => assert_eq!(e, TransitionError { from, event }),
                (got, want) => panic!("{from} + {event:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn event_names_are_the_wire_names() {
        let names: Vec<&str> = ConnectionEvent::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            names,
            [
                "connection.created",
                "connection.reauthRequired",
                "connection.reauthRequiredSoon",
                "connection.recovered",
                "connection.deleted"
            ]
        );
    }

    #[test]
    fn status_round_trips() {
        for s in [Active, ReauthRequired] {
            assert_eq!(s.as_str().parse::<ConnectionStatus>().ok(), Some(s));
        }
        assert!("deleted".parse::<ConnectionStatus>().is_err());
    }
}
