//! API-key secrets: `lvk_` + 32 random base62 characters (≈190 bits) + a 6-character CRC32 checksum, so
//! scanners can recognise a leaked key offline. Only a keyed digest (HMAC-SHA256) is ever stored.

use std::fmt;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::envelope::CryptoError;

pub const API_KEY_PREFIX: &str = "lvk_";
const BODY_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// How many leading characters of a secret are stored in clear to name the key (`lvk_` + 8 characters):
/// enough to tell keys apart in `client key revoke`, far too few to guess the rest.
pub const SECRET_PREFIX_LEN: usize = API_KEY_PREFIX.len() + 8;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The checksum characters of `prefix_and_body`: its CRC32 in base62, fixed width. An array, not a `String`:
/// `well_formed` runs on every API request and compares it in place.
fn checksum(prefix_and_body: &str) -> [u8; CHECKSUM_LEN] {
    let mut value = u64::from(crc32fast::hash(prefix_and_body.as_bytes()));
    let mut chars = [b'0'; CHECKSUM_LEN];
    for slot in chars.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    chars
}

/// A freshly generated secret, shown once to the operator and then forgotten.
pub struct ApiKeySecret(SecretString);

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…)", self.prefix())
    }
}

impl ApiKeySecret {
    pub fn generate() -> Result<Self, CryptoError> {
        let rng = SystemRandom::new();
        let mut body = String::with_capacity(BODY_LEN);
        while body.len() < BODY_LEN {
            let mut buf = [0u8; 48];
            rng.fill(&mut buf).map_err(|_| CryptoError::Rng)?;
            // Rejection sampling keeps every character uniform: 248 = 4 × 62.
            for b in buf.into_iter().filter(|b| *b < 248) {
                if body.len() == BODY_LEN {
                    break;
                }
                body.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
        let head = format!("{API_KEY_PREFIX}{body}");
        let mut full = head.clone();
        full.extend(checksum(&head).map(char::from));
        Ok(Self(SecretString::from(full)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The non-secret leading characters that name this key.
    pub fn prefix(&self) -> &str {
        self.0.expose_secret().get(..SECRET_PREFIX_LEN).unwrap_or("")
    }

    /// Whether a presented string has the shape and checksum of one of our keys. A cheap filter before any
    /// database lookup; it proves nothing about validity.
    pub fn well_formed(candidate: &str) -> bool {
        let expected_len = API_KEY_PREFIX.len() + BODY_LEN + CHECKSUM_LEN;
        if candidate.len() != expected_len || !candidate.starts_with(API_KEY_PREFIX) || !candidate.is_ascii() {
            return false;
        }
        let (head, sum) = candidate.split_at(expected_len - CHECKSUM_LEN);
        head[API_KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric()) && checksum(head) == sum.as_bytes()
    }
}

/// Computes the stored digest of a secret: HMAC-SHA256 under the keyring's API-key digest key, so a
/// stolen database alone does not even allow testing guesses.
pub struct ApiKeyDigester {
    key: hmac::Key,
}

impl fmt::Debug for ApiKeyDigester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyDigester")
    }
}

impl ApiKeyDigester {
    /// A digester under one of the keyring's digest keys ([`crate::Keyring::api_key_digester`]).
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    pub fn digest(&self, secret: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.key, secret.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Constant-time comparison of a stored digest with the digest of a presented secret.
    pub fn matches(stored: &[u8], presented: &[u8; 32]) -> bool {
        stored.ct_eq(presented.as_slice()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() -> Result<(), CryptoError> {
        let a = ApiKeySecret::generate()?;
        let b = ApiKeySecret::generate()?;
        assert!(ApiKeySecret::well_formed(a.expose()));
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 42);
        assert!(a.expose().starts_with("lvk_"));
        assert_eq!(a.prefix().len(), SECRET_PREFIX_LEN);
        assert!(!format!("{a:?}").contains(a.expose()));
        Ok(())
    }

    #[test]
    fn checksum_catches_typos() -> Result<(), CryptoError> {
        let a = ApiKeySecret::generate()?;
        let mut typo = a.expose().to_owned().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        assert!(!ApiKeySecret::well_formed(&String::from_utf8_lossy(&typo)));
        assert!(!ApiKeySecret::well_formed("lvk_short"));
        assert!(!ApiKeySecret::well_formed(""));
        Ok(())
    }

    #[test]
    fn digest_is_keyed_and_compared_exactly() -> Result<(), CryptoError> {
        let m1 = crate::Keyring::generate()?;
        let m2 = crate::Keyring::generate()?;
        let secret = ApiKeySecret::generate()?;
        let d1 = m1.api_key_digester().digest(secret.expose());
        let d2 = m2.api_key_digester().digest(secret.expose());
        assert_ne!(d1, d2);
        assert!(ApiKeyDigester::matches(&d1, &d1));
        assert!(!ApiKeyDigester::matches(&d2, &d1));
        assert!(!ApiKeyDigester::matches(&d1[..31], &d1));
        Ok(())
    }
}
