//! Client-managed tokens: linkvault's own opaque access (`lva_`) and refresh (`lvr_`) tokens, each a prefix
//! plus 256 random bits from the OS RNG in unpadded base64url (43 characters). The prefix makes a leaked token
//! recognisable. Only a keyed digest (HMAC-SHA256 under a keyring key, as for API keys, but with a
//! key of its own) is stored, so a stolen database neither reveals tokens nor lets anyone test guesses.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::envelope::CryptoError;

const RANDOM_BYTES: usize = 32;
/// 32 bytes in unpadded base64url.
const BODY_LEN: usize = 43;

/// Which of the two tokens a string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTokenKind {
    Access,
    Refresh,
}

impl ClientTokenKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            ClientTokenKind::Access => "lva_",
            ClientTokenKind::Refresh => "lvr_",
        }
    }

    /// The kind a presented string claims by its prefix (its shape is checked by [`ClientToken::well_formed`]).
    pub fn of(candidate: &str) -> Option<Self> {
        [ClientTokenKind::Access, ClientTokenKind::Refresh].into_iter().find(|k| candidate.starts_with(k.prefix()))
    }
}

/// A freshly generated token, handed to the client once and then forgotten.
pub struct ClientToken(SecretString);

impl fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientToken({}[redacted])", self.0.expose_secret().get(..4).unwrap_or(""))
    }
}

impl ClientToken {
    pub fn generate(kind: ClientTokenKind) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; RANDOM_BYTES]);
        SystemRandom::new().fill(bytes.as_mut()).map_err(|_| CryptoError::Rng)?;
        let body = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()));
        Ok(Self(SecretString::from(format!("{}{}", kind.prefix(), body.as_str()))))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether a presented string has the shape of a token of `kind`: a cheap filter before any lookup.
    pub fn well_formed(candidate: &str, kind: ClientTokenKind) -> bool {
        candidate.len() == kind.prefix().len() + BODY_LEN
            && candidate.starts_with(kind.prefix())
            && candidate[kind.prefix().len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

/// Computes the stored digest of a client token.
pub struct ClientTokenDigester {
    key: hmac::Key,
}

impl fmt::Debug for ClientTokenDigester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTokenDigester")
    }
}

impl ClientTokenDigester {
    /// A digester under one of the keyring's digest keys ([`crate::Keyring::client_token_digester`]).
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    /// The digest is the lookup key (unique index), so no comparison of secrets happens in our code: equality
    /// is decided by the index on a keyed hash, which reveals nothing usable about the token through timing.
    pub fn digest(&self, token: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.key, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_well_formed_and_distinct() -> Result<(), CryptoError> {
        for kind in [ClientTokenKind::Access, ClientTokenKind::Refresh] {
            let a = ClientToken::generate(kind)?;
            let b = ClientToken::generate(kind)?;
            assert_ne!(a.expose(), b.expose());
            assert!(a.expose().starts_with(kind.prefix()));
            assert_eq!(a.expose().len(), 47);
            assert!(ClientToken::well_formed(a.expose(), kind));
            assert_eq!(ClientTokenKind::of(a.expose()), Some(kind));
            assert!(!format!("{a:?}").contains(&a.expose()[4..]));
        }
        let access = ClientToken::generate(ClientTokenKind::Access)?;
        assert!(!ClientToken::well_formed(access.expose(), ClientTokenKind::Refresh));
        assert!(!ClientToken::well_formed("lva_short", ClientTokenKind::Access));
        assert!(!ClientToken::well_formed(&format!("{}=", &access.expose()[..46]), ClientTokenKind::Access));
        assert_eq!(ClientTokenKind::of("9b2e…"), None);
        Ok(())
    }

    #[test]
    fn digest_is_keyed_and_separate_from_api_keys() -> Result<(), CryptoError> {
        let m1 = crate::Keyring::generate()?;
        let m2 = crate::Keyring::generate()?;
        let token = ClientToken::generate(ClientTokenKind::Refresh)?;
        let d1 = m1.client_token_digester().digest(token.expose());
        assert_eq!(d1, m1.client_token_digester().digest(token.expose()));
        assert_ne!(d1, m2.client_token_digester().digest(token.expose()));
        assert_ne!(d1, m1.api_key_digester().digest(token.expose()));
        Ok(())
    }
}
