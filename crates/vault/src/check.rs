//! Whether a master key fits a database, decided without opening the vault: [`Vault::open`](crate::Vault)
//! records the keyring and the fingerprint and creates the first key version on a fresh database, which
//! `linkvault config check` must not do. The database is read through [`linkvault_storage::inspect`]
//! (read-only); the keyring and each wrapped key version are opened in memory, as the vault would at start.

use std::time::Duration;

pub use linkvault_crypto::KeyringOrigin;
use linkvault_crypto::{Keyring, MasterKey};
use linkvault_storage::StorageError;
use linkvault_storage::inspect::{DatabaseState, Inspection};

use crate::master_keyring::{
    FINGERPRINT_META, KEYRING_META, META_KEYS, NEXT_KEYRING_META, ROTATION_TARGET_META, decode,
};

/// Reads the database a URL names without changing it (see [`linkvault_storage::inspect::inspect`]).
pub async fn inspect_database(database_url: &str, timeout: Duration) -> Result<Inspection, StorageError> {
    linkvault_storage::inspect::inspect(database_url, &META_KEYS, timeout).await
}

/// The fingerprint of the master key a database expects, if it has been opened by linkvault.
pub fn expected_fingerprint(state: &DatabaseState) -> Option<&str> {
    state.meta.get(FINGERPRINT_META).map(String::as_str)
}

/// The keyring a database has, as far as `serve` is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringState {
    /// None yet, on a database never opened: `serve` draws a random one.
    Fresh,
    /// None yet, on a database written before the keyring: `serve` records the one derived from the key.
    ToBeDerived,
    /// Stored, and opened by the key.
    Stored(KeyringOrigin),
}

/// A master key that opens everything the database holds under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFits {
    /// `false`: the database has never been opened by linkvault; `serve` records this key's fingerprint.
    pub fingerprint_recorded: bool,
    pub keyring: KeyringState,
    /// The fingerprint of the new key of an unfinished `keys rotate-master`.
    pub pending_rotation: Option<String>,
    /// The key versions it opened (all of them).
    pub versions: Vec<u32>,
    pub current: Option<u32>,
}

/// Why a master key does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyMismatch {
    #[error(
        "the master key does not match the one this database was written with (the database expects key \
         fingerprint {expected}, the configured key has {configured})"
    )]
    Fingerprint { expected: String, configured: String },
    #[error(
        "the master key (fingerprint {target}) is the new key of an unfinished `keys rotate-master`; the database \
         is still sealed under the key with fingerprint {current}"
    )]
    RotationUnfinished { current: String, target: String },
    #[error("the keyring stored in the database does not open with the master key ({reason})")]
    Keyring { reason: String },
    #[error("the master key does not open key version {version} ({reason})")]
    KeyVersion { version: u32, reason: String },
}

/// Checks the fingerprint recorded in the database, opens the keyring (or derives the one `serve` would
/// record) and opens every key version with it.
pub fn check_master_key(master: &MasterKey, state: &DatabaseState) -> Result<KeyFits, KeyMismatch> {
    let configured = master.fingerprint();
    let recorded = expected_fingerprint(state);
    let pending_rotation = state.meta.get(ROTATION_TARGET_META).cloned();
    if let Some(expected) = recorded.filter(|e| **e != configured) {
        if pending_rotation.as_deref() == Some(configured.as_str()) {
            return Err(KeyMismatch::RotationUnfinished { current: expected.to_owned(), target: configured });
        }
        return Err(KeyMismatch::Fingerprint { expected: expected.to_owned(), configured });
    }
    let (keyring, state_of_keyring) = match state.meta.get(KEYRING_META) {
        Some(text) => {
            let sealed = decode(text, "keyring").map_err(|e| KeyMismatch::Keyring { reason: e.to_string() })?;
            let keyring = Keyring::open(master, &sealed).map_err(|e| KeyMismatch::Keyring { reason: e.to_string() })?;
            let origin = keyring.origin();
            (keyring, KeyringState::Stored(origin))
        }
        None if recorded.is_some() => (Keyring::derived_from(master), KeyringState::ToBeDerived),
        None => (Keyring::generate().map_err(|e| KeyMismatch::Keyring { reason: e.to_string() })?, KeyringState::Fresh),
    };
    // An unfinished re-keying rotation has moved some key versions to the next keyring already.
    let next = match state.meta.get(NEXT_KEYRING_META) {
        Some(text) => {
            let sealed = decode(text, "next keyring").map_err(|e| KeyMismatch::Keyring { reason: e.to_string() })?;
            Some(Keyring::open(master, &sealed).map_err(|e| KeyMismatch::Keyring { reason: e.to_string() })?)
        }
        None => None,
    };
    for sealed in &state.key_versions {
        // The unwrapped key is zeroed when dropped; only success matters here.
        next.as_ref()
            .and_then(|next| next.open_key_version(sealed.version, &sealed.wrapped_key).ok())
            .map_or_else(|| keyring.open_key_version(sealed.version, &sealed.wrapped_key), Ok)
            .map_err(|e| KeyMismatch::KeyVersion { version: sealed.version, reason: e.to_string() })?;
    }
    Ok(KeyFits {
        fingerprint_recorded: recorded.is_some(),
        keyring: state_of_keyring,
        pending_rotation,
        versions: state.key_versions.iter().map(|k| k.version).collect(),
        current: state.key_versions.iter().find(|k| k.is_current).map(|k| k.version),
    })
}
