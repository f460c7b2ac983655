//! Who holds the master key. Once the master key only seals and opens the keyring (issue 16), that is its
//! whole job, and this trait is that job: the key may sit in process memory (file, environment) or inside an
//! HSM reached through PKCS#11, where it never leaves the token.

use zeroize::Zeroizing;

use crate::envelope::{CryptoError, open_under_master, seal_under_master};
use crate::master::MasterKey;

/// The purpose label of what a [`MasterKey`] seals as a holder.
const PURPOSE: &str = "keyring";

/// A place that holds the master key and can seal and open small secrets with it.
pub trait MasterKeyHolder: Send + Sync + std::fmt::Debug {
    /// A public identifier of the key, recorded in the database so that starting with another key fails
    /// loudly. Reveals nothing about the key.
    fn fingerprint(&self) -> Result<String, CryptoError>;
    /// Seals `plaintext`, bound to `context`: opening with another context fails.
    fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// Opens what [`MasterKeyHolder::seal`] sealed with the same key and context.
    fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
}

impl MasterKeyHolder for MasterKey {
    fn fingerprint(&self) -> Result<String, CryptoError> {
        Ok(MasterKey::fingerprint(self))
    }

    fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_under_master(self, PURPOSE, context, plaintext)
    }

    fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        open_under_master(self, PURPOSE, context, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_key_seals_for_itself_and_its_context_only() -> Result<(), CryptoError> {
        let key = MasterKey::generate().map_err(|_| CryptoError::Rng)?;
        let holder: &dyn MasterKeyHolder = &key;
        let sealed = holder.seal(b"ctx", b"keyring bytes")?;
        assert_eq!(holder.open(b"ctx", &sealed)?.as_slice(), b"keyring bytes");
        assert_eq!(holder.open(b"other", &sealed), Err(CryptoError::OpenFailed));
        let other = MasterKey::generate().map_err(|_| CryptoError::Rng)?;
        assert_eq!((&other as &dyn MasterKeyHolder).open(b"ctx", &sealed), Err(CryptoError::OpenFailed));
        assert_eq!(holder.fingerprint()?, key.fingerprint());
        Ok(())
    }
}
