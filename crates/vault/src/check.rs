//! Whether a master key fits a database, decided without opening the vault: [`Vault::open`](crate::Vault)
//! records the fingerprint and creates the first key version on a fresh database, which `linkvault config
//! check` must not do. The database is read through [`linkvault_storage::inspect`] (read-only) and each
//! sealed key version is opened in memory, as the vault's keyring would at start.

use std::time::Duration;

use linkvault_crypto::{KeyVersion, MasterKey};
use linkvault_storage::StorageError;
use linkvault_storage::inspect::{DatabaseState, Inspection};

use crate::service::FINGERPRINT_META;

/// Reads the database a URL names without changing it (see [`linkvault_storage::inspect::inspect`]).
pub async fn inspect_database(database_url: &str, timeout: Duration) -> Result<Inspection, StorageError> {
    linkvault_storage::inspect::inspect(database_url, FINGERPRINT_META, timeout).await
}

/// A master key that opens everything the database holds under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFits {
    /// `false`: the database has never been opened by linkvault; `serve` records this key's fingerprint.
    pub fingerprint_recorded: bool,
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
    #[error("the master key does not open key version {version} ({reason})")]
    KeyVersion { version: u32, reason: String },
}

/// Checks the fingerprint recorded in the database, then opens every key version with `master`.
pub fn check_master_key(master: &MasterKey, state: &DatabaseState) -> Result<KeyFits, KeyMismatch> {
    let configured = master.fingerprint();
    if let Some(expected) = state.master_key_fingerprint.as_ref().filter(|e| **e != configured) {
        return Err(KeyMismatch::Fingerprint { expected: expected.clone(), configured });
    }
    for sealed in &state.key_versions {
        // The unwrapped key is zeroed when dropped; only success matters here.
        KeyVersion::unwrap(master, sealed.version, &sealed.wrapped_key)
            .map_err(|e| KeyMismatch::KeyVersion { version: sealed.version, reason: e.to_string() })?;
    }
    Ok(KeyFits {
        fingerprint_recorded: state.master_key_fingerprint.is_some(),
        versions: state.key_versions.iter().map(|k| k.version).collect(),
        current: state.key_versions.iter().find(|k| k.is_current).map(|k| k.version),
    })
}
