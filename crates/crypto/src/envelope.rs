//! Envelope encryption: key versions wrapped by the keyring's wrapping key, data keys wrapped by a key version,
//! payloads sealed by their connection's data key. AES-256-GCM throughout.
//!
//! Ciphertext layout (every layer): `format(1) | kind(1) | key_id(4, big-endian) | nonce(12) | ct+tag`.
//! `key_id` names the key that sealed it: the key version for a wrapped data key, the data-key generation
//! for a payload, the version being wrapped for a wrapped key version. The associated data is the header
//! followed by length-prefixed context (purpose, client, tokenId, field), so moving bytes between rows,
//! fields or layers, or editing the header, makes opening fail.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::master::MasterKey;

const FORMAT_V1: u8 = 1;
pub(crate) const KIND_KEY_VERSION: u8 = 1;
const KIND_DATA_KEY: u8 = 2;
const KIND_PAYLOAD: u8 = 3;
pub(crate) const KIND_MASTER_SEALED: u8 = 4;
/// A key version wrapped by a random keyring's wrapping key (kind 1 is the derived keyring's, byte for byte
/// what versions before the keyring wrote). The kind tells a resumed `keys rotate-master` which rows are left.
pub(crate) const KIND_KEY_VERSION_KEYRING: u8 = 5;
/// A small secret sealed by a random keyring's sealing key (kind 4 is the derived keyring's).
pub(crate) const KIND_KEYRING_SEALED: u8 = 6;
const HEADER_LEN: usize = 1 + 1 + 4;
pub(crate) const KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext is malformed or of an unknown format")]
    Malformed,
    #[error("ciphertext was sealed with key {found}, expected key {expected}")]
    WrongKey { expected: u32, found: u32 },
    #[error("ciphertext failed authentication: wrong key, wrong row, or tampered bytes")]
    OpenFailed,
    #[error("the operating system's random number generator failed")]
    Rng,
    #[error("plaintext too long to seal")]
    TooLong,
    /// The external key holder (an HSM through PKCS#11) failed; the text names the operation and the
    /// library's return code, never key material.
    #[error("the master key holder failed: {0}")]
    Holder(String),
}

/// The row a ciphertext belongs to.
#[derive(Debug, Clone, Copy)]
pub struct RowBinding<'a> {
    pub client_id: &'a Uuid,
    pub token_id: &'a Uuid,
}

fn header(kind: u8, key_id: u32) -> [u8; HEADER_LEN] {
    let id = key_id.to_be_bytes();
    [FORMAT_V1, kind, id[0], id[1], id[2], id[3]]
}

/// As [`parse_header`] for a ciphertext that may be of any of `kinds`; returns the kind and the key id.
fn parse_header_any(bytes: &[u8], kinds: &[u8]) -> Result<(u8, u32), CryptoError> {
    let kind = *bytes.get(1).ok_or(CryptoError::Malformed)?;
    if !kinds.contains(&kind) {
        return Err(CryptoError::Malformed);
    }
    parse_header(bytes, kind).map(|id| (kind, id))
}

fn parse_header(bytes: &[u8], kind: u8) -> Result<u32, CryptoError> {
    if bytes.len() < HEADER_LEN + NONCE_LEN + AES_256_GCM.tag_len() || bytes[0] != FORMAT_V1 || bytes[1] != kind {
        return Err(CryptoError::Malformed);
    }
    Ok(u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]))
}

/// Builds associated data: header then each part prefixed by its length, so parts cannot run together.
fn aad(header: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + parts.iter().map(|p| p.len() + 4).sum::<usize>());
    out.extend_from_slice(header);
    for part in parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, bytes).map(LessSafeKey::new).map_err(|_| CryptoError::Malformed)
}

fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    SystemRandom::new().fill(bytes.as_mut()).map_err(|_| CryptoError::Rng)?;
    Ok(bytes)
}

fn seal(
    key: &LessSafeKey,
    header: [u8; HEADER_LEN],
    aad_parts: &[&[u8]],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    // Random 96-bit nonces from the thread-local CSPRNG (seeded from the OS): a syscall per nonce would
    // cost more than the encryption. Uniqueness per key is kept by the per-key use counters upstream.
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let ad = aad(&header, aad_parts);
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&nonce_bytes);
    let mut in_out = Zeroizing::new(plaintext.to_vec());
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(ad), &mut *in_out)
        .map_err(|_| CryptoError::TooLong)?;
    out.extend_from_slice(&in_out);
    Ok(out)
}

fn open(key: &LessSafeKey, sealed: &[u8], aad_parts: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (head, rest) = sealed.split_at(HEADER_LEN);
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Malformed)?;
    let ad = aad(head, aad_parts);
    let mut buf = Zeroizing::new(ct.to_vec());
    let plain_len =
        key.open_in_place(nonce, Aad::from(ad), buf.as_mut_slice()).map_err(|_| CryptoError::OpenFailed)?.len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// One version of the key-encryption key. Versions live in the database, wrapped by the keyring's wrapping
/// key ([`crate::Keyring`]); `keys rotate` adds a version and re-wraps every data key under it.
pub struct KeyVersion {
    version: u32,
    raw: Zeroizing<[u8; KEY_LEN]>,
    key: LessSafeKey,
}

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVersion").field("version", &self.version).finish_non_exhaustive()
    }
}

impl KeyVersion {
    /// A fresh random key version, returned with its wrapped form (of `kind`) for storage.
    pub(crate) fn generate(wrapping: &[u8; KEY_LEN], kind: u8, version: u32) -> Result<(Self, Vec<u8>), CryptoError> {
        let raw = random_key()?;
        let this = Self { version, key: aead_key(raw.as_ref())?, raw };
        let wrapped = this.wrap_under(wrapping, kind)?;
        Ok((this, wrapped))
    }

    pub(crate) fn wrap_under(&self, wrapping: &[u8; KEY_LEN], kind: u8) -> Result<Vec<u8>, CryptoError> {
        seal(&aead_key(wrapping)?, header(kind, self.version), &[b"key-version"], self.raw.as_ref())
    }

    /// Opens a stored key version of either wrapped kind: the key decides, the kind only marks which
    /// keyring wrote it. Fails if `wrapping` is not the key that wrapped it.
    pub(crate) fn unwrap(wrapping: &[u8; KEY_LEN], version: u32, wrapped: &[u8]) -> Result<Self, CryptoError> {
        let (_, found) = parse_header_any(wrapped, &[KIND_KEY_VERSION, KIND_KEY_VERSION_KEYRING])?;
        if found != version {
            return Err(CryptoError::WrongKey { expected: version, found });
        }
        let raw_vec = open(&aead_key(wrapping)?, wrapped, &[b"key-version"])?;
        if raw_vec.len() != KEY_LEN {
            return Err(CryptoError::Malformed);
        }
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        raw.copy_from_slice(&raw_vec);
        Ok(Self { version, key: aead_key(raw.as_ref())?, raw })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// A new random data key for a row, with its wrapped form.
    pub fn new_data_key(&self, row: RowBinding<'_>, generation: u32) -> Result<(DataKey, Vec<u8>), CryptoError> {
        let dk = DataKey::from_raw(random_key()?, generation)?;
        let wrapped = self.wrap_data_key(row, &dk)?;
        Ok((dk, wrapped))
    }

    pub fn wrap_data_key(&self, row: RowBinding<'_>, dk: &DataKey) -> Result<Vec<u8>, CryptoError> {
        let generation = dk.generation.to_be_bytes();
        seal(
            &self.key,
            header(KIND_DATA_KEY, self.version),
            &[b"data-key", row.client_id.as_bytes(), row.token_id.as_bytes(), &generation],
            dk.raw.as_ref(),
        )
    }

    /// The key version a wrapped data key names in its header, without opening it.
    pub fn version_of_wrapped(wrapped: &[u8]) -> Result<u32, CryptoError> {
        parse_header(wrapped, KIND_DATA_KEY)
    }

    pub fn unwrap_data_key(
        &self,
        row: RowBinding<'_>,
        generation: u32,
        wrapped: &[u8],
    ) -> Result<DataKey, CryptoError> {
        let found = parse_header(wrapped, KIND_DATA_KEY)?;
        if found != self.version {
            return Err(CryptoError::WrongKey { expected: self.version, found });
        }
        let gen_bytes = generation.to_be_bytes();
        let raw_vec =
            open(&self.key, wrapped, &[b"data-key", row.client_id.as_bytes(), row.token_id.as_bytes(), &gen_bytes])?;
        if raw_vec.len() != KEY_LEN {
            return Err(CryptoError::Malformed);
        }
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        raw.copy_from_slice(&raw_vec);
        DataKey::from_raw(raw, generation)
    }
}

/// One connection's data key. Its plaintext exists only in memory, zeroed on drop.
pub struct DataKey {
    generation: u32,
    raw: Zeroizing<[u8; KEY_LEN]>,
    key: LessSafeKey,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey").field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl DataKey {
    fn from_raw(raw: Zeroizing<[u8; KEY_LEN]>, generation: u32) -> Result<Self, CryptoError> {
        Ok(Self { generation, key: aead_key(raw.as_ref())?, raw })
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn seal(&self, row: RowBinding<'_>, field: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal(
            &self.key,
            header(KIND_PAYLOAD, self.generation),
            &[b"payload", row.client_id.as_bytes(), row.token_id.as_bytes(), field.as_bytes()],
            plaintext,
        )
    }

    pub fn open(&self, row: RowBinding<'_>, field: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let found = parse_header(sealed, KIND_PAYLOAD)?;
        if found != self.generation {
            return Err(CryptoError::WrongKey { expected: self.generation, found });
        }
        open(&self.key, sealed, &[b"payload", row.client_id.as_bytes(), row.token_id.as_bytes(), field.as_bytes()])
    }
}

/// Seals a small secret under a key derived from the master key for `purpose`, bound to `context`. Only the
/// in-memory master key's [`crate::MasterKeyHolder`] uses it (to seal the keyring), and the derived keyring
/// writes the same bytes (`seal_with_key` under kind 4) for what earlier versions sealed this way.
pub(crate) fn seal_under_master(
    master: &MasterKey,
    purpose: &str,
    context: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = master.derive(&format!("linkvault/v1/sealed/{purpose}"));
    seal_with_key(&key, KIND_MASTER_SEALED, purpose, context, plaintext)
}

/// Opens what [`seal_under_master`] sealed for the same purpose and context.
pub(crate) fn open_under_master(
    master: &MasterKey,
    purpose: &str,
    context: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    parse_header(sealed, KIND_MASTER_SEALED)?;
    let key = master.derive(&format!("linkvault/v1/sealed/{purpose}"));
    open_with_key(&key, purpose, context, sealed)
}

/// Seals a small secret that linkvault itself must use later (e.g. a webhook signing secret) under `key`,
/// bound to `purpose` and `context` (e.g. the client id). Not for connection credentials, which use the
/// per-row data keys.
pub(crate) fn seal_with_key(
    key: &[u8; KEY_LEN],
    kind: u8,
    purpose: &str,
    context: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    seal(&aead_key(key)?, header(kind, 0), &[purpose.as_bytes(), context], plaintext)
}

/// Opens what [`seal_with_key`] sealed, of either sealed kind (the key decides).
pub(crate) fn open_with_key(
    key: &[u8; KEY_LEN],
    purpose: &str,
    context: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    parse_header_any(sealed, &[KIND_MASTER_SEALED, KIND_KEYRING_SEALED])?;
    open(&aead_key(key)?, sealed, &[purpose.as_bytes(), context])
}

/// Raw single-layer AES-256-GCM open, exposed only so benchmarks can compare the envelope against it.
#[doc(hidden)]
pub fn bench_raw_aes_gcm() -> Result<impl Fn() -> bool, CryptoError> {
    let key = aead_key(random_key()?.as_ref())?;
    let sealed = seal(&key, header(KIND_PAYLOAD, 1), &[b"bench"], &[7u8; 200])?;
    Ok(move || open(&key, &sealed, &[b"bench"]).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids() -> (Uuid, Uuid) {
        (Uuid::new_v4(), Uuid::new_v4())
    }

    #[test]
    fn full_hierarchy_round_trip() -> Result<(), CryptoError> {
        let master = random_key()?;
        let (kv, wrapped_kv) = KeyVersion::generate(&master, KIND_KEY_VERSION, 1)?;
        let reopened = KeyVersion::unwrap(&master, 1, &wrapped_kv)?;
        assert_eq!(reopened.version(), kv.version());
        let kv = reopened;
        let (c, t) = ids();
        let row = RowBinding { client_id: &c, token_id: &t };
        let (dk, wrapped_dk) = kv.new_data_key(row, 1)?;
        let sealed = dk.seal(row, "credentials", b"secret-token-value")?;
        let dk2 = kv.unwrap_data_key(row, 1, &wrapped_dk)?;
        assert_eq!(dk2.open(row, "credentials", &sealed)?.as_slice(), b"secret-token-value");
        assert!(!sealed.windows(5).any(|w| w == b"secre"));
        Ok(())
    }

    #[test]
    fn moved_ciphertext_or_wrapped_key_fails() -> Result<(), CryptoError> {
        let master = random_key()?;
        let (kv, _) = KeyVersion::generate(&master, KIND_KEY_VERSION, 1)?;
        let (c, t1) = ids();
        let t2 = Uuid::new_v4();
        let row1 = RowBinding { client_id: &c, token_id: &t1 };
        let row2 = RowBinding { client_id: &c, token_id: &t2 };
        let (dk1, wrapped1) = kv.new_data_key(row1, 1)?;
        let sealed1 = dk1.seal(row1, "credentials", b"one")?;
        // Wrapped key moved to another row.
        assert_eq!(kv.unwrap_data_key(row2, 1, &wrapped1).err(), Some(CryptoError::OpenFailed));
        // Ciphertext opened as another row, or another field.
        assert_eq!(dk1.open(row2, "credentials", &sealed1).err(), Some(CryptoError::OpenFailed));
        assert_eq!(dk1.open(row1, "other", &sealed1).err(), Some(CryptoError::OpenFailed));
        // Another client with the same tokenId.
        let c2 = Uuid::new_v4();
        let row3 = RowBinding { client_id: &c2, token_id: &t1 };
        assert_eq!(kv.unwrap_data_key(row3, 1, &wrapped1).err(), Some(CryptoError::OpenFailed));
        Ok(())
    }

    #[test]
    fn wrong_master_or_version_fails() -> Result<(), CryptoError> {
        let master = random_key()?;
        let other = random_key()?;
        let (_, wrapped) = KeyVersion::generate(&master, KIND_KEY_VERSION, 3)?;
        assert_eq!(KeyVersion::unwrap(&other, 3, &wrapped).err(), Some(CryptoError::OpenFailed));
        assert_eq!(
            KeyVersion::unwrap(&master, 4, &wrapped).err(),
            Some(CryptoError::WrongKey { expected: 4, found: 3 })
        );
        Ok(())
    }

    #[test]
    fn rewrap_under_new_version() -> Result<(), CryptoError> {
        let master = random_key()?;
        let (v1, _) = KeyVersion::generate(&master, KIND_KEY_VERSION, 1)?;
        let (v2, _) = KeyVersion::generate(&master, KIND_KEY_VERSION, 2)?;
        let (c, t) = ids();
        let row = RowBinding { client_id: &c, token_id: &t };
        let (dk, w1) = v1.new_data_key(row, 1)?;
        let sealed = dk.seal(row, "credentials", b"x")?;
        let w2 = v2.wrap_data_key(row, &v1.unwrap_data_key(row, 1, &w1)?)?;
        assert_eq!(KeyVersion::version_of_wrapped(&w2)?, 2);
        assert!(v1.unwrap_data_key(row, 1, &w2).is_err());
        assert_eq!(v2.unwrap_data_key(row, 1, &w2)?.open(row, "credentials", &sealed)?.as_slice(), b"x");
        Ok(())
    }

    #[test]
    fn master_sealed_secrets_are_bound_to_purpose_and_context() -> Result<(), CryptoError> {
        let master = MasterKey::generate().map_err(|_| CryptoError::Rng)?;
        let sealed = seal_under_master(&master, "webhook", b"client-a", b"whsec_x")?;
        assert_eq!(open_under_master(&master, "webhook", b"client-a", &sealed)?.as_slice(), b"whsec_x");
        assert!(open_under_master(&master, "webhook", b"client-b", &sealed).is_err());
        assert!(open_under_master(&master, "other", b"client-a", &sealed).is_err());
        let other = MasterKey::generate().map_err(|_| CryptoError::Rng)?;
        assert!(open_under_master(&other, "webhook", b"client-a", &sealed).is_err());
        Ok(())
    }

    proptest! {
        #[test]
        fn any_payload_round_trips_and_any_bit_flip_fails(payload in proptest::collection::vec(any::<u8>(), 0..512), flip in any::<usize>()) {
            let master = random_key().map_err(|_| TestCaseError::fail("rng"))?;
            let (kv, _) = KeyVersion::generate(&master, KIND_KEY_VERSION, 1).map_err(|_| TestCaseError::fail("gen"))?;
            let (c, t) = ids();
            let row = RowBinding { client_id: &c, token_id: &t };
            let (dk, _) = kv.new_data_key(row, 7).map_err(|_| TestCaseError::fail("dk"))?;
            let mut sealed = dk.seal(row, "f", &payload).map_err(|_| TestCaseError::fail("seal"))?;
            let opened = dk.open(row, "f", &sealed).map_err(|_| TestCaseError::fail("open"))?;
            prop_assert_eq!(opened.as_slice(), payload.as_slice());
            let i = flip % sealed.len();
            sealed[i] ^= 0x01;
            prop_assert!(dk.open(row, "f", &sealed).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let master = random_key().map_err(|_| TestCaseError::fail("rng"))?;
            let (kv, _) = KeyVersion::generate(&master, KIND_KEY_VERSION, 1).map_err(|_| TestCaseError::fail("gen"))?;
            let (c, t) = ids();
            let row = RowBinding { client_id: &c, token_id: &t };
            prop_assert!(kv.unwrap_data_key(row, 1, &bytes).is_err());
            prop_assert!(KeyVersion::unwrap(&master, 1, &bytes).is_err());
        }
    }
}
