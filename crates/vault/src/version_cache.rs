//! The unwrapped key versions, cached in memory. The current version is re-read from the database every
//! few seconds, so instances pick up a `keys rotate` run by another process without a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use linkvault_crypto::KeyVersion;
use linkvault_storage::{DynStore, KeyVersionRecord};
use time::OffsetDateTime;

use crate::VaultError;
use crate::master_keyring::VaultKeys;

/// How stale the cached "current version" may get. `keys rotate` waits longer than this before it retires
/// old versions, so no instance is still wrapping with one.
pub(crate) const CURRENT_VERSION_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct State {
    versions: BTreeMap<u32, Arc<KeyVersion>>,
    current: Option<u32>,
    loaded_at: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct VersionCache {
    state: RwLock<State>,
}

impl VersionCache {
    pub(crate) fn new() -> Self {
        Self { state: RwLock::new(State::default()) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Re-reads the key versions, unwrapping any not yet cached. Creates version 1 on a fresh database.
    pub(crate) async fn reload(&self, store: &DynStore, keyring: &VaultKeys) -> Result<(), VaultError> {
        let mut records = store.key_versions().await?;
        if records.is_empty() {
            let (_, wrapped) = keyring.new_key_version(1)?;
            let record = KeyVersionRecord {
                version: 1,
                wrapped_key: wrapped,
                is_current: true,
                wrap_count: 0,
                created_at: OffsetDateTime::now_utc(),
            };
            // Another instance may win this race; either way a version 1 exists afterwards.
            store.insert_key_version(&record, true).await?;
            records = store.key_versions().await?;
        }
        let cached: Vec<u32> = self.read().versions.keys().copied().collect();
        let mut fresh = Vec::new();
        for record in &records {
            if !cached.contains(&record.version) {
                fresh.push(Arc::new(keyring.open_key_version(record.version, &record.wrapped_key)?));
            }
        }
        let mut state = self.write();
        for kv in fresh {
            state.versions.insert(kv.version(), kv);
        }
        state.current = records.iter().find(|r| r.is_current).map(|r| r.version);
        state.loaded_at = Some(Instant::now());
        Ok(())
    }

    /// The version new data keys are wrapped with.
    pub(crate) async fn current(&self, store: &DynStore, keyring: &VaultKeys) -> Result<Arc<KeyVersion>, VaultError> {
        let fresh_enough = {
            let s = self.read();
            s.loaded_at.is_some_and(|at| at.elapsed() < CURRENT_VERSION_TTL)
        };
        if !fresh_enough {
            self.reload(store, keyring).await?;
        }
        let s = self.read();
        let current = s.current.ok_or(VaultError::Rotation("no current key version".into()))?;
        s.versions.get(&current).cloned().ok_or(VaultError::MissingKeyVersion(current))
    }

    /// A specific version, loading it from the database if this process has not seen it yet.
    pub(crate) async fn get(
        &self,
        version: u32,
        store: &DynStore,
        keyring: &VaultKeys,
    ) -> Result<Arc<KeyVersion>, VaultError> {
        if let Some(kv) = self.read().versions.get(&version) {
            return Ok(Arc::clone(kv));
        }
        self.reload(store, keyring).await?;
        self.read().versions.get(&version).cloned().ok_or(VaultError::MissingKeyVersion(version))
    }

    /// Drops a retired version from memory (its key is zeroed when the last user drops it).
    pub(crate) fn forget(&self, version: u32) {
        self.write().versions.remove(&version);
    }
}
