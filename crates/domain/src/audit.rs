//! The audit log's vocabulary: which sensitive actions are recorded and who may have done them. A closed
//! list, so every record names one of a known set and an exported log can be read without guessing.

use std::fmt;

/// One kind of sensitive action. The text forms are stable: they are in every record's chain MAC and in
/// `audit export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    ClientCreated,
    ClientTokenModeChanged,
    ClientRateLimitChanged,
    ClientLinkOriginAdded,
    ClientLinkOriginRemoved,
    ApiKeyAdded,
    ApiKeyRevoked,
    ConnectionCreated,
    ConnectionRefreshed,
    ConnectionReauthenticated,
    ConnectionDeleted,
    TransferCreated,
    TransferExecuted,
    KeysRotated,
    MasterKeyRotated,
    LinkSignedIn,
}

impl AuditAction {
    pub const ALL: &'static [AuditAction] = &[
        AuditAction::ClientCreated,
        AuditAction::ClientTokenModeChanged,
        AuditAction::ClientRateLimitChanged,
        AuditAction::ClientLinkOriginAdded,
        AuditAction::ClientLinkOriginRemoved,
        AuditAction::ApiKeyAdded,
        AuditAction::ApiKeyRevoked,
        AuditAction::ConnectionCreated,
        AuditAction::ConnectionRefreshed,
        AuditAction::ConnectionReauthenticated,
        AuditAction::ConnectionDeleted,
        AuditAction::TransferCreated,
        AuditAction::TransferExecuted,
        AuditAction::KeysRotated,
        AuditAction::MasterKeyRotated,
        AuditAction::LinkSignedIn,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::ClientCreated => "client.created",
            AuditAction::ClientTokenModeChanged => "client.token_mode_changed",
            AuditAction::ClientRateLimitChanged => "client.rate_limit_changed",
            AuditAction::ClientLinkOriginAdded => "client.link_origin_added",
            AuditAction::ClientLinkOriginRemoved => "client.link_origin_removed",
            AuditAction::ApiKeyAdded => "api_key.added",
            AuditAction::ApiKeyRevoked => "api_key.revoked",
            AuditAction::ConnectionCreated => "connection.created",
            AuditAction::ConnectionRefreshed => "connection.refreshed",
            AuditAction::ConnectionReauthenticated => "connection.reauthenticated",
            AuditAction::ConnectionDeleted => "connection.deleted",
            AuditAction::TransferCreated => "transfer.created",
            AuditAction::TransferExecuted => "transfer.executed",
            AuditAction::KeysRotated => "keys.rotated",
            AuditAction::MasterKeyRotated => "keys.master_rotated",
            AuditAction::LinkSignedIn => "link.signed_in",
        }
    }

    /// The action a text names, exactly as [`as_str`](Self::as_str) writes it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == text)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who did an action: an API client (by id), the operator's command line, the refresh engine, or an end user
/// on the Link pages. Stored as text: the client id, `cli`, `refresh-engine` or `link`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditActor {
    Client(crate::ClientId),
    Cli,
    RefreshEngine,
    Link,
    /// `serve`'s scheduled key-version rotation.
    KeySchedule,
}

impl AuditActor {
    pub fn to_text(self) -> String {
        match self {
            AuditActor::Client(id) => id.to_string(),
            AuditActor::Cli => "cli".to_owned(),
            AuditActor::RefreshEngine => "refresh-engine".to_owned(),
            AuditActor::Link => "link".to_owned(),
            AuditActor::KeySchedule => "key-schedule".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_and_texts_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(*action));
            assert!(seen.insert(action.as_str()), "{action} twice");
        }
        assert_eq!(AuditAction::parse("client.deleted"), None);
        assert_eq!(AuditActor::Cli.to_text(), "cli");
    }
}
