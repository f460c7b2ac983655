//! Link's short-lived bearer secrets: the auth_code inside a link token, the Link page's session token, the
//! one-time nonce of an OAuth begin URL and the binding cookie. Each is 256 bits from the OS RNG in unpadded
//! base64url (43 characters); the database keeps only its SHA-256 digest.
//!
//! The digest is unkeyed, unlike API keys' and client tokens': these secrets are uniformly random and live
//! for minutes, so a guess cannot be tested offline faster than it can be drawn, and rows written by earlier
//! versions stay findable.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::envelope::CryptoError;

/// A freshly drawn Link secret, handed out once (in a URL, an answer or a cookie) and then forgotten.
pub struct LinkSecret(SecretString);

impl fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSecret([redacted])")
    }
}

impl LinkSecret {
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(bytes.as_mut()).map_err(|_| CryptoError::Rng)?;
        Ok(Self(SecretString::from(URL_SAFE_NO_PAD.encode(bytes.as_ref()))))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// What the database stores for this secret.
    pub fn digest(&self) -> Vec<u8> {
        link_digest(self.expose())
    }
}

/// SHA-256 of a presented Link secret (or of an OAuth `state`): the only form the database keeps.
pub fn link_digest(presented: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, presented.as_bytes()).as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_distinct_and_digested() -> Result<(), CryptoError> {
        let (a, b) = (LinkSecret::generate()?, LinkSecret::generate()?);
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.digest(), link_digest(a.expose()));
        assert_eq!(a.digest().len(), 32);
        assert_eq!(format!("{a:?}"), "LinkSecret([redacted])");
        Ok(())
    }
}
