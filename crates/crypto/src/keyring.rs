//! The keyring: the keys everything else hangs from (the key-version wrapping key, the sealing key of webhook
//! secrets, the API-key and client-token digest keys, the audit chain's key), stored in the database sealed by the master key's
//! holder. The master key only seals and opens this keyring, so a new master key re-seals it and the old one
//! can be destroyed, while digests, key versions and sealed secrets stay as they are.
//!
//! Encoding (format 1): `format(1) | origin(1) | kek_wrapping(32) | webhook_sealing(32) | api_key_digest(32) |
//! client_token_digest(32) | audit_chain(32)`, sealed by [`MasterKeyHolder::seal`] under
//! [`KEYRING_CONTEXT`].
//!
//! A database written before the keyring existed gets a *derived* keyring: each key equals the derivation
//! `HMAC-SHA256(master, label)` that was used for that purpose, so every stored digest, wrapped key version and
//! sealed secret stays valid without a rewrite. The derived keyring writes exactly the bytes the old code did
//! (header kinds 1 and 4); a random keyring writes kinds 5 and 6, so a resumed `keys rotate-master` can tell
//! what it has re-wrapped from what is left. Opening accepts either kind: the key decides.
//!
//! Sealing keys are per purpose rather than derived from one root: a derived keyring must reproduce
//! `HMAC(master, "linkvault/v1/sealed/<purpose>")`, which no root other than the master key itself gives.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::api_key::ApiKeyDigester;
use crate::audit::AuditChain;
use crate::client_token::ClientTokenDigester;
use crate::envelope::{
    CryptoError, KEY_LEN, KIND_KEY_VERSION, KIND_KEY_VERSION_KEYRING, KIND_KEYRING_SEALED, KIND_MASTER_SEALED,
    KeyVersion, open_with_key, seal_with_key,
};
use crate::holder::MasterKeyHolder;
use crate::master::MasterKey;

/// The context the keyring is sealed under by the master key's holder.
pub const KEYRING_CONTEXT: &[u8] = b"linkvault/v1/keyring";

const FORMAT_V1: u8 = 1;
const ORIGIN_DERIVED: u8 = 1;
const ORIGIN_RANDOM: u8 = 2;
const KEYS: usize = 5;
const ENCODED_LEN: usize = 2 + KEYS * KEY_LEN;

/// The purpose label of webhook signing secrets (part of their associated data and of the derived key's label).
const WEBHOOK_PURPOSE: &str = "webhook-secret";

/// How a keyring's keys came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringOrigin {
    /// Derived from the master key, for a database written before the keyring (`keys rotate-master` replaces
    /// its wrapping and sealing keys by random ones).
    Derived,
    /// Drawn from the OS RNG.
    Random,
}

impl KeyringOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Derived => "derived",
            Self::Random => "random",
        }
    }
}

type Key = Zeroizing<[u8; KEY_LEN]>;

/// The keyring's keys, in memory only while the vault runs; zeroed on drop, never printed.
#[derive(Clone)]
pub struct Keyring {
    origin: KeyringOrigin,
    kek_wrapping: Key,
    webhook_sealing: Key,
    api_key_digest: Key,
    client_token_digest: Key,
    audit_chain: Key,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("origin", &self.origin).finish_non_exhaustive()
    }
}

fn random_key() -> Result<Key, CryptoError> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    SystemRandom::new().fill(bytes.as_mut()).map_err(|_| CryptoError::Rng)?;
    Ok(bytes)
}

impl Keyring {
    /// A keyring of random keys, for a fresh database.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self {
            origin: KeyringOrigin::Random,
            kek_wrapping: random_key()?,
            webhook_sealing: random_key()?,
            api_key_digest: random_key()?,
            client_token_digest: random_key()?,
            audit_chain: random_key()?,
        })
    }

    /// The keyring a database written before the keyring existed was in effect using: each key is the
    /// derivation of `master` for its purpose, with the labels those versions used.
    pub fn derived_from(master: &MasterKey) -> Self {
        Self {
            origin: KeyringOrigin::Derived,
            kek_wrapping: master.derive("linkvault/v1/key-version-wrapping"),
            webhook_sealing: master.derive(&format!("linkvault/v1/sealed/{WEBHOOK_PURPOSE}")),
            api_key_digest: master.derive("linkvault/v1/api-key-digest"),
            client_token_digest: master.derive("linkvault/v1/client-token-digest"),
            audit_chain: master.derive("linkvault/v1/audit-chain"),
        }
    }

    /// This keyring with new random wrapping and sealing keys: the digest keys and the audit key are carried
    /// over (they open nothing, and cannot change without every API-key and client-token secret, or without
    /// breaking the audit chain already written).
    pub fn rekeyed(&self) -> Result<Self, CryptoError> {
        Ok(Self {
            origin: KeyringOrigin::Random,
            kek_wrapping: random_key()?,
            webhook_sealing: random_key()?,
            api_key_digest: self.api_key_digest.clone(),
            client_token_digest: self.client_token_digest.clone(),
            audit_chain: self.audit_chain.clone(),
        })
    }

    pub fn origin(&self) -> KeyringOrigin {
        self.origin
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(ENCODED_LEN));
        out.push(FORMAT_V1);
        out.push(match self.origin {
            KeyringOrigin::Derived => ORIGIN_DERIVED,
            KeyringOrigin::Random => ORIGIN_RANDOM,
        });
        for key in [
            &self.kek_wrapping,
            &self.webhook_sealing,
            &self.api_key_digest,
            &self.client_token_digest,
            &self.audit_chain,
        ] {
            out.extend_from_slice(key.as_ref());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != ENCODED_LEN || bytes[0] != FORMAT_V1 {
            return Err(CryptoError::Malformed);
        }
        let origin = match bytes[1] {
            ORIGIN_DERIVED => KeyringOrigin::Derived,
            ORIGIN_RANDOM => KeyringOrigin::Random,
            _ => return Err(CryptoError::Malformed),
        };
        let key = |i: usize| -> Key {
            let mut k = Zeroizing::new([0u8; KEY_LEN]);
            k.copy_from_slice(&bytes[2 + i * KEY_LEN..2 + (i + 1) * KEY_LEN]);
            k
        };
        Ok(Self {
            origin,
            kek_wrapping: key(0),
            webhook_sealing: key(1),
            api_key_digest: key(2),
            client_token_digest: key(3),
            audit_chain: key(4),
        })
    }

    /// The keyring sealed by `holder`, for storage.
    pub fn seal(&self, holder: &dyn MasterKeyHolder) -> Result<Vec<u8>, CryptoError> {
        holder.seal(KEYRING_CONTEXT, &self.encode())
    }

    /// Opens a stored keyring. Fails if `holder` does not hold the key that sealed it, or the bytes were changed.
    pub fn open(holder: &dyn MasterKeyHolder, sealed: &[u8]) -> Result<Self, CryptoError> {
        Self::decode(&holder.open(KEYRING_CONTEXT, sealed)?)
    }

    pub fn api_key_digester(&self) -> ApiKeyDigester {
        ApiKeyDigester::new(&self.api_key_digest)
    }

    pub fn client_token_digester(&self) -> ClientTokenDigester {
        ClientTokenDigester::new(&self.client_token_digest)
    }

    /// The audit log's chain, keyed by this keyring's audit key.
    pub fn audit_chain(&self) -> AuditChain {
        AuditChain::from_key(self.audit_chain.as_ref())
    }

    fn key_version_kind(&self) -> u8 {
        match self.origin {
            KeyringOrigin::Derived => KIND_KEY_VERSION,
            KeyringOrigin::Random => KIND_KEY_VERSION_KEYRING,
        }
    }

    fn sealed_kind(&self) -> u8 {
        match self.origin {
            KeyringOrigin::Derived => KIND_MASTER_SEALED,
            KeyringOrigin::Random => KIND_KEYRING_SEALED,
        }
    }

    /// A fresh random key version, with its form wrapped by this keyring for storage.
    pub fn new_key_version(&self, version: u32) -> Result<(KeyVersion, Vec<u8>), CryptoError> {
        KeyVersion::generate(&self.kek_wrapping, self.key_version_kind(), version)
    }

    /// Opens a stored key version. Fails unless this keyring's wrapping key wrapped it.
    pub fn open_key_version(&self, version: u32, wrapped: &[u8]) -> Result<KeyVersion, CryptoError> {
        KeyVersion::unwrap(&self.kek_wrapping, version, wrapped)
    }

    /// `version` wrapped by this keyring (to move it here from another keyring).
    pub fn wrap_key_version(&self, version: &KeyVersion) -> Result<Vec<u8>, CryptoError> {
        version.wrap_under(&self.kek_wrapping, self.key_version_kind())
    }

    /// Seals a webhook signing secret, bound to `context` (the client id).
    pub fn seal_webhook_secret(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_with_key(&self.webhook_sealing, self.sealed_kind(), WEBHOOK_PURPOSE, context, plaintext)
    }

    /// Opens what [`Keyring::seal_webhook_secret`] sealed for the same context, with this keyring's key.
    pub fn open_webhook_secret(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        open_with_key(&self.webhook_sealing, WEBHOOK_PURPOSE, context, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{open_under_master, seal_under_master};
    use crate::master::MasterKeyError;

    fn master() -> Result<MasterKey, CryptoError> {
        MasterKey::generate().map_err(|_: MasterKeyError| CryptoError::Rng)
    }

    #[test]
    fn sealed_keyring_round_trips_and_keeps_every_key() -> Result<(), CryptoError> {
        let holder = master()?;
        let keyring = Keyring::generate()?;
        let sealed = keyring.seal(&holder)?;
        let opened = Keyring::open(&holder, &sealed)?;
        assert_eq!(opened.origin(), KeyringOrigin::Random);
        assert_eq!(opened.encode().as_slice(), keyring.encode().as_slice());
        // What one seals the other opens.
        let (kv, wrapped) = keyring.new_key_version(3)?;
        assert_eq!(opened.open_key_version(3, &wrapped)?.version(), kv.version());
        let secret = keyring.seal_webhook_secret(b"client", b"whsec_1")?;
        assert_eq!(opened.open_webhook_secret(b"client", &secret)?.as_slice(), b"whsec_1");
        assert_eq!(opened.api_key_digester().digest("k"), keyring.api_key_digester().digest("k"));
        assert_eq!(opened.client_token_digester().digest("t"), keyring.client_token_digester().digest("t"));
        Ok(())
    }

    #[test]
    fn another_holder_or_context_cannot_open_it() -> Result<(), CryptoError> {
        let (holder, other) = (master()?, master()?);
        let sealed = Keyring::generate()?.seal(&holder)?;
        assert_eq!(Keyring::open(&other, &sealed).err(), Some(CryptoError::OpenFailed));
        let under_other_context = holder.seal(b"another context", &Keyring::generate()?.encode())?;
        assert_eq!(Keyring::open(&holder, &under_other_context).err(), Some(CryptoError::OpenFailed));
        Ok(())
    }

    #[test]
    fn any_changed_byte_is_refused() -> Result<(), CryptoError> {
        let holder = master()?;
        let sealed = Keyring::generate()?.seal(&holder)?;
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(Keyring::open(&holder, &tampered).is_err(), "byte {i}");
        }
        assert!(Keyring::open(&holder, &sealed[..sealed.len() - 1]).is_err());
        Ok(())
    }

    #[test]
    fn an_unknown_format_or_origin_is_refused_even_when_sealed_properly() -> Result<(), CryptoError> {
        let holder = master()?;
        let encoded = Keyring::generate()?.encode();
        for (at, value) in [(0usize, 2u8), (1, 0), (1, 3)] {
            let mut changed = encoded.to_vec();
            changed[at] = value;
            let sealed = holder.seal(KEYRING_CONTEXT, &changed)?;
            assert_eq!(Keyring::open(&holder, &sealed).err(), Some(CryptoError::Malformed));
        }
        let short = holder.seal(KEYRING_CONTEXT, &encoded[..ENCODED_LEN - 1])?;
        assert_eq!(Keyring::open(&holder, &short).err(), Some(CryptoError::Malformed));
        Ok(())
    }

    #[test]
    fn a_derived_keyring_opens_what_the_master_key_sealed_before_the_keyring() -> Result<(), CryptoError> {
        let master = master()?;
        let derived = Keyring::derived_from(&master);
        assert_eq!(derived.origin(), KeyringOrigin::Derived);
        // Webhook secrets were sealed by `seal_under_master(master, "webhook-secret", client id, secret)`.
        let old = seal_under_master(&master, WEBHOOK_PURPOSE, b"client", b"whsec_old")?;
        assert_eq!(derived.open_webhook_secret(b"client", &old)?.as_slice(), b"whsec_old");
        let new = derived.seal_webhook_secret(b"client", b"whsec_new")?;
        assert_eq!(open_under_master(&master, WEBHOOK_PURPOSE, b"client", &new)?.as_slice(), b"whsec_new");
        // Key versions were wrapped under HMAC(master, "linkvault/v1/key-version-wrapping") with kind 1.
        let (_, wrapped) =
            KeyVersion::generate(&master.derive("linkvault/v1/key-version-wrapping"), KIND_KEY_VERSION, 1)?;
        assert_eq!(derived.open_key_version(1, &wrapped)?.version(), 1);
        // The digest keys are the old derivations, so stored digests still match.
        assert_eq!(
            derived.api_key_digester().digest("lvk_x"),
            ApiKeyDigester::new(&master.derive("linkvault/v1/api-key-digest")).digest("lvk_x")
        );
        assert_eq!(
            derived.client_token_digester().digest("lva_x"),
            ClientTokenDigester::new(&master.derive("linkvault/v1/client-token-digest")).digest("lva_x")
        );
        Ok(())
    }

    #[test]
    fn rekeying_keeps_the_digests_and_shuts_out_the_old_wrapping_and_sealing_keys() -> Result<(), CryptoError> {
        let derived = Keyring::derived_from(&master()?);
        let (kv, old_wrapped) = derived.new_key_version(1)?;
        let old_secret = derived.seal_webhook_secret(b"c", b"s")?;
        let next = derived.rekeyed()?;
        assert_eq!(next.origin(), KeyringOrigin::Random);
        let new_wrapped = next.wrap_key_version(&kv)?;
        let new_secret = next.seal_webhook_secret(b"c", &derived.open_webhook_secret(b"c", &old_secret)?)?;
        assert_eq!(next.open_key_version(1, &new_wrapped)?.version(), 1);
        assert_eq!(next.open_webhook_secret(b"c", &new_secret)?.as_slice(), b"s");
        // The old keys open neither new form: the header differs, and so does the key.
        assert_eq!(derived.open_key_version(1, &new_wrapped).err(), Some(CryptoError::OpenFailed));
        assert_eq!(derived.open_webhook_secret(b"c", &new_secret).err(), Some(CryptoError::OpenFailed));
        assert_eq!(next.open_key_version(1, &old_wrapped).err(), Some(CryptoError::OpenFailed));
        assert_eq!(next.api_key_digester().digest("k"), derived.api_key_digester().digest("k"));
        assert_eq!(next.client_token_digester().digest("t"), derived.client_token_digester().digest("t"));
        Ok(())
    }

    #[test]
    fn rekeying_a_random_keyring_shuts_out_its_old_keys_too() -> Result<(), CryptoError> {
        let random = Keyring::generate()?;
        let (kv, old_wrapped) = random.new_key_version(3)?;
        let old_secret = random.seal_webhook_secret(b"c", b"s")?;
        let next = random.rekeyed()?;
        assert_eq!(next.open_key_version(3, &old_wrapped).err(), Some(CryptoError::OpenFailed));
        assert_eq!(next.open_webhook_secret(b"c", &old_secret).err(), Some(CryptoError::OpenFailed));
        let new_wrapped = next.wrap_key_version(&kv)?;
        assert_eq!(random.open_key_version(3, &new_wrapped).err(), Some(CryptoError::OpenFailed));
        assert_eq!(next.open_key_version(3, &new_wrapped)?.version(), 3);
        assert_eq!(next.api_key_digester().digest("k"), random.api_key_digester().digest("k"));
        Ok(())
    }

    #[test]
    fn debug_shows_only_the_origin() -> Result<(), CryptoError> {
        let keyring = Keyring::generate()?;
        assert_eq!(format!("{keyring:?}"), "Keyring { origin: Random, .. }");
        Ok(())
    }
}
