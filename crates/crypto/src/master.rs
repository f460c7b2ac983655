//! The master key, held outside the database: it seals the keyring (as a [`crate::MasterKeyHolder`]) and, once,
//! derives the keyring of a database written before the keyring existed ([`crate::Keyring::derived_from`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

pub const MASTER_KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key is not valid base64; it must be the base64 encoding of exactly 32 random bytes")]
    NotBase64,
    #[error("the master key decodes to {0} bytes; it must be exactly 32 bytes (base64 of 32 random bytes)")]
    WrongLength(usize),
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// 32 secret bytes. Never printed: `Debug` shows only the fingerprint.
pub struct MasterKey {
    bytes: Zeroizing<[u8; MASTER_KEY_LEN]>,
}

impl MasterKey {
    pub fn generate() -> Result<Self, MasterKeyError> {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        SystemRandom::new().fill(bytes.as_mut()).map_err(|_| MasterKeyError::Rng)?;
        Ok(Self { bytes })
    }

    /// Parses the base64 text of `LINKVAULT_MASTER_KEY` or of a key file (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, MasterKeyError> {
        let decoded = Zeroizing::new(STANDARD.decode(text.trim().as_bytes()).map_err(|_| MasterKeyError::NotBase64)?);
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        if decoded.len() != MASTER_KEY_LEN {
            return Err(MasterKeyError::WrongLength(decoded.len()));
        }
        bytes.copy_from_slice(&decoded);
        Ok(Self { bytes })
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.bytes.as_ref()))
    }

    /// A sub-key for one purpose: HMAC-SHA256(master, label). Labels are fixed strings in this crate; beyond the
    /// fingerprint and the holder's own sealing key, only the derived keyring uses them.
    pub(crate) fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.bytes.as_ref());
        let tag = hmac::sign(&key, label.as_bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// A public identifier of the key, stored in the database so that starting with another key fails loudly.
    /// It is a keyed hash, so it reveals nothing about the key.
    pub fn fingerprint(&self) -> String {
        let digest = self.derive("linkvault/v1/master-key-fingerprint");
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("fingerprint", &self.fingerprint()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_fingerprint() -> Result<(), MasterKeyError> {
        let key = MasterKey::generate()?;
        let again = MasterKey::from_base64(&format!("  {}\n", key.to_base64().as_str()))?;
        assert_eq!(key.fingerprint(), again.fingerprint());
        assert_eq!(key.fingerprint().len(), 32);
        let other = MasterKey::generate()?;
        assert_ne!(key.fingerprint(), other.fingerprint());
        Ok(())
    }

    #[test]
    fn rejects_bad_text() {
        assert!(matches!(MasterKey::from_base64("not base64!"), Err(MasterKeyError::NotBase64)));
        assert!(matches!(MasterKey::from_base64("AAAA"), Err(MasterKeyError::WrongLength(3))));
    }

    #[test]
    fn debug_never_shows_the_key() -> Result<(), MasterKeyError> {
        let key = MasterKey::generate()?;
        let shown = format!("{key:?}");
        assert!(!shown.contains(key.to_base64().as_str()));
        assert!(shown.contains(&key.fingerprint()));
        Ok(())
    }
}
