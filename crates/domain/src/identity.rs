//! Who a connection belongs to: the natural key (client, end user, integration, scope) and its tokenId.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest end-user id accepted, as in Mesh's `GetLinkTokenRequest.userId` (1..300).
pub const MAX_USER_ID_CHARS: usize = 300;
/// Longest integration type name accepted (`binanceInternationalDirect` is 26).
pub const MAX_INTEGRATION_TYPE_CHARS: usize = 64;

/// A rule broken by a value coming from outside; the message says what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// An API client (an app that integrates linkvault).
    ClientId
);
uuid_id!(
    /// The persistent handle of one managed connection (UUIDv4, never reissued).
    TokenId
);

/// Permission scope of an API key, and therefore of every connection made with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            other => Err(ValidationError::new("scope", format!("unknown scope {other:?}; use \"read\" or \"write\""))),
        }
    }
}

/// How a client receives connections: managed tokenIds, or opaque tokens it refreshes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenMode {
    Managed,
    Client,
}

impl TokenMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenMode::Managed => "managed",
            TokenMode::Client => "client",
        }
    }
}

impl FromStr for TokenMode {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "managed" => Ok(TokenMode::Managed),
            "client" => Ok(TokenMode::Client),
            other => Err(ValidationError::new(
                "tokenMode",
                format!("unknown token mode {other:?}; use \"managed\" or \"client\""),
            )),
        }
    }
}

/// The app's identifier of its end user. Opaque to us, but bounded and printable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err(ValidationError::new("userId", "must not be empty"));
        }
        if chars > MAX_USER_ID_CHARS {
            return Err(ValidationError::new(
                "userId",
                format!("is {chars} characters long; the limit is {MAX_USER_ID_CHARS}"),
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(ValidationError::new("userId", "must not contain control characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A BrokerType-style integration name (`coinbase`, `binanceInternationalDirect`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IntegrationType(String);

impl IntegrationType {
    /// Checks the shape only; whether the catalog knows it is the integrations layer's question.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let well_formed = !raw.is_empty()
            && raw.len() <= MAX_INTEGRATION_TYPE_CHARS
            && raw.starts_with(|c: char| c.is_ascii_alphabetic())
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                "type",
                format!(
                    "{raw:?} is not an integration type; use a name from GET /api/v1/integrations, such as \"coinbase\""
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IntegrationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of a connection. One natural key maps to exactly one live tokenId.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NaturalKey {
    pub client_id: ClientId,
    pub user_id: UserId,
    pub integration: IntegrationType,
    pub scope: Scope,
}

/// What storing credentials under a natural key must do with the tokenId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityDecision {
    /// The key already has a connection: replace its credentials, keep its tokenId.
    Reuse(TokenId),
    /// No connection yet: issue this fresh tokenId.
    Issue(TokenId),
}

/// The lifecycle table's identity rule: same (client, user, integration, scope) → same tokenId; anything
/// else → a new one. `is_retired` answers whether a candidate id was ever deleted, so that a deleted tokenId
/// is never issued again even in the (astronomically unlikely) case of a UUIDv4 collision.
pub fn decide_identity(
    existing: Option<TokenId>,
    mut new_id: impl FnMut() -> TokenId,
    mut is_retired: impl FnMut(TokenId) -> bool,
) -> IdentityDecision {
    if let Some(id) = existing {
        return IdentityDecision::Reuse(id);
    }
    // A bounded loop: each round draws 122 random bits, so a second round already never happens in practice.
    let mut candidate = new_id();
    for _ in 0..8 {
        if !is_retired(candidate) {
            break;
        }
        candidate = new_id();
    }
    IdentityDecision::Issue(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_bounds() {
        assert!(UserId::parse("u").is_ok());
        assert!(UserId::parse(&"x".repeat(300)).is_ok());
        let err = UserId::parse(&"x".repeat(301)).err();
        assert_eq!(err.map(|e| e.field), Some("userId"));
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("a\nb").is_err());
        // Characters, not bytes: 300 multi-byte characters are fine.
        assert!(UserId::parse(&"é".repeat(300)).is_ok());
    }

    #[test]
    fn integration_type_shape() {
        assert!(IntegrationType::parse("binanceInternationalDirect").is_ok());
        assert!(IntegrationType::parse("").is_err());
        assert!(IntegrationType::parse("1coin").is_err());
        assert!(IntegrationType::parse("coin base").is_err());
        assert!(IntegrationType::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn existing_connection_keeps_its_token_id() {
        let existing = TokenId::new_random();
        let decision = decide_identity(Some(existing), TokenId::new_random, |_| false);
        assert_eq!(decision, IdentityDecision::Reuse(existing));
    }

    #[test]
    fn retired_ids_are_never_issued() {
        let retired = TokenId::new_random();
        let fresh = TokenId::new_random();
        let mut draws = vec![fresh, retired];
        let decision = decide_identity(None, || draws.pop().unwrap_or(fresh), |id| id == retired);
        assert_eq!(decision, IdentityDecision::Issue(fresh));
    }

    #[test]
    fn scope_and_mode_parse() {
        assert_eq!("read".parse::<Scope>().ok(), Some(Scope::Read));
        assert_eq!("write".parse::<Scope>().ok(), Some(Scope::Write));
        assert!("admin".parse::<Scope>().is_err());
        assert_eq!("client".parse::<TokenMode>().ok(), Some(TokenMode::Client));
        assert!("x".parse::<TokenMode>().is_err());
    }
}
