//! An integration's credentials in clear, as they exist only in memory between open and use.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::VaultError;
use linkvault_crypto::CryptoError;

/// Access and refresh token of one connection. `Debug` never shows them.
#[derive(Clone)]
pub struct IntegrationCredentials {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
}

impl fmt::Debug for IntegrationCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntegrationCredentials")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

#[derive(Serialize)]
struct Borrowed<'a> {
    a: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    r: Option<&'a str>,
}

#[derive(Deserialize)]
struct Owned {
    a: String,
    r: Option<String>,
}

impl IntegrationCredentials {
    pub fn new(access_token: impl Into<String>, refresh_token: Option<String>) -> Self {
        Self {
            access_token: SecretString::from(access_token.into()),
            refresh_token: refresh_token.map(SecretString::from),
        }
    }

    /// The plaintext that gets sealed. Zeroed when dropped.
    pub(crate) fn to_plaintext(&self) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let borrowed = Borrowed {
            a: self.access_token.expose_secret(),
            r: self.refresh_token.as_ref().map(|r| r.expose_secret()),
        };
        serde_json::to_vec(&borrowed).map(Zeroizing::new).map_err(|_| VaultError::Crypto(CryptoError::Malformed))
    }

    pub(crate) fn from_plaintext(bytes: &[u8]) -> Result<Self, VaultError> {
        let owned: Owned = serde_json::from_slice(bytes).map_err(|_| VaultError::Crypto(CryptoError::Malformed))?;
        Ok(Self { access_token: SecretString::from(owned.a), refresh_token: owned.r.map(SecretString::from) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_redacted_debug() -> Result<(), VaultError> {
        let c = IntegrationCredentials::new("acc-123", Some("ref-456".into()));
        let plain = c.to_plaintext()?;
        let back = IntegrationCredentials::from_plaintext(&plain)?;
        assert_eq!(back.access_token.expose_secret(), "acc-123");
        assert_eq!(back.refresh_token.as_ref().map(|r| r.expose_secret().to_owned()), Some("ref-456".into()));
        let shown = format!("{c:?}");
        assert!(!shown.contains("acc-123") && !shown.contains("ref-456"));
        Ok(())
    }
}
