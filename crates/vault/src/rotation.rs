//! `keys rotate`: a new key version becomes current and every data key is re-wrapped under it.
//!
//! Resumable: the target version is recorded before any work, so a run killed midway is finished by the
//! next run instead of starting yet another version. Old versions are deleted only once no row uses them.

use std::time::Duration;

use linkvault_crypto::{KeyVersion, RowBinding};
use linkvault_storage::KeyVersionRecord;

use linkvault_domain::{AuditAction, AuditActor};

use crate::audit::AuditNote;
use crate::master_keyring::ROTATION_TARGET_META as MASTER_ROTATION_TARGET_META;
use crate::version_cache::CURRENT_VERSION_TTL;
use crate::{Vault, VaultError};

pub(crate) const ROTATION_TARGET_META: &str = "rotation_target_version";
/// Rows re-wrapped per batch when the key schedule finishes retiring a version.
const BATCH: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationProgress {
    pub target_version: u32,
    pub rewrapped: u64,
    pub remaining: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub target_version: u32,
    /// True when an interrupted rotation was finished rather than a new one started.
    pub resumed: bool,
    pub rewrapped: u64,
    pub retired_versions: Vec<u32>,
    /// Older versions that a row still used when the rotation ended (written by an instance that had not yet
    /// re-read the current version): the next run retires them.
    pub kept_versions: Vec<u32>,
}

impl Vault {
    /// Rotates to a new key version (or resumes an interrupted rotation). `settle` is how long to wait
    /// before retiring old versions, so that other running instances have re-read the current version;
    /// it must exceed their cache lifetime, so it is never shorter than that.
    pub async fn rotate_keys(
        &self,
        batch_size: u32,
        settle: Duration,
        progress: impl FnMut(RotationProgress),
    ) -> Result<RotationReport, VaultError> {
        self.rotate_keys_as(AuditActor::Cli, batch_size, settle, progress).await
    }

    /// [`Vault::rotate_keys`] on behalf of `actor` (the CLI, or `serve`'s key schedule).
    pub(crate) async fn rotate_keys_as(
        &self,
        actor: AuditActor,
        batch_size: u32,
        settle: Duration,
        mut progress: impl FnMut(RotationProgress),
    ) -> Result<RotationReport, VaultError> {
        // A new version wrapped under this instance's keyring while `keys rotate-master` moves the key
        // versions to another keyring could be left behind unreadable, so the two never overlap.
        if let Some(pending) = self.store.get_meta(MASTER_ROTATION_TARGET_META).await? {
            return Err(VaultError::Rotation(format!(
                "a master-key rotation (to the key with fingerprint {pending}) is unfinished; finish it with \
                 `linkvault keys rotate-master` first"
            )));
        }
        // Fail-closed records the rotation before it creates a version; the default records its outcome.
        let note = AuditNote::new(actor, AuditAction::KeysRotated);
        self.audit_before(&note.clone().detail("started")).await?;
        let (target, resumed) = self.rotation_target().await?;
        self.versions.reload(&self.store, &self.keys).await?;
        let target_kv = self.versions.get(target, &self.store, &self.keys).await?;

        let mut rewrapped = self.rewrap_all(&target_kv, batch_size.max(1), &mut progress).await?;
        // Instances cache the current version for a few seconds; wait them out, then sweep once more for any
        // row they wrapped under an old version meanwhile.
        tokio::time::sleep(settle.max(CURRENT_VERSION_TTL + Duration::from_secs(1))).await;
        rewrapped += self.rewrap_all(&target_kv, batch_size.max(1), &mut progress).await?;

        let (retired, kept) = self.retire_unused(target).await?;
        self.store.delete_meta(ROTATION_TARGET_META).await?;
        let retired_list = retired.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        self.audit_after(&note.detail(format!("version={target} rewrapped={rewrapped} retired={retired_list}"))).await;
        Ok(RotationReport {
            target_version: target,
            resumed,
            rewrapped,
            retired_versions: retired,
            kept_versions: kept,
        })
    }

    /// Deletes every version but `current` that no row uses: `(retired, kept)`. Only once every instance
    /// has re-read the current version (a settle period after it became current), or a row written under a
    /// deleted version would be lost.
    async fn retire_unused(&self, current: u32) -> Result<(Vec<u32>, Vec<u32>), VaultError> {
        let (mut retired, mut kept) = (Vec::new(), Vec::new());
        for record in self.store.key_versions().await? {
            if record.version == current {
                continue;
            }
            if self.store.delete_key_version_if_unused(record.version).await? {
                self.versions.forget(record.version);
                retired.push(record.version);
            } else {
                kept.push(record.version);
            }
        }
        Ok((retired, kept))
    }

    /// Re-wraps rows still under an older version (written by an instance that had not yet re-read the
    /// current one when a rotation ended) and retires what is then unused; `current` has been current
    /// longer than the settle period. Returns the retired versions.
    pub(crate) async fn finish_retiring(&self, current: u32) -> Result<Vec<u32>, VaultError> {
        self.versions.reload(&self.store, &self.keys).await?;
        let target = self.versions.get(current, &self.store, &self.keys).await?;
        self.rewrap_all(&target, BATCH, &mut |_| {}).await?;
        Ok(self.retire_unused(current).await?.0)
    }

    /// The version this rotation moves to: an interrupted run's target, or a new version.
    async fn rotation_target(&self) -> Result<(u32, bool), VaultError> {
        let versions = self.store.key_versions().await?;
        let pending = self.store.get_meta(ROTATION_TARGET_META).await?;
        let (target, resumed) = match pending.as_deref().map(str::parse::<u32>) {
            Some(Ok(v)) => (v, true),
            Some(Err(_)) => {
                return Err(VaultError::Rotation(format!("{ROTATION_TARGET_META} is not a version number")));
            }
            None => {
                let next = versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
                // Recorded first: if we die right after, the next run creates this same version.
                self.store.set_meta(ROTATION_TARGET_META, &next.to_string()).await?;
                (next, false)
            }
        };
        match versions.iter().find(|v| v.version == target) {
            Some(record) if record.is_current => {}
            Some(record) => {
                // Exists but not current (died between insert and promotion cannot happen — insert promotes
                // atomically — but an operator may have edited rows): promote by re-inserting is impossible,
                // so refuse clearly.
                return Err(VaultError::Rotation(format!(
                    "key version {} exists but is not current; the database was changed by hand",
                    record.version
                )));
            }
            None => {
                let (_, wrapped) = self.keys.new_key_version(target)?;
                let record = KeyVersionRecord {
                    version: target,
                    wrapped_key: wrapped,
                    is_current: true,
                    wrap_count: 0,
                    created_at: self.clock().now(),
                };
                if !self.store.insert_key_version(&record, true).await? {
                    return Err(VaultError::Rotation(format!(
                        "key version {target} was created concurrently; run again"
                    )));
                }
            }
        }
        Ok((target, resumed))
    }

    async fn rewrap_all(
        &self,
        target: &KeyVersion,
        batch_size: u32,
        progress: &mut impl FnMut(RotationProgress),
    ) -> Result<u64, VaultError> {
        let target_version = target.version();
        let remaining_at = |counts: &[(u32, u64)]| -> u64 {
            counts.iter().filter(|(v, _)| *v != target_version).map(|(_, n)| n).sum()
        };
        let mut remaining = remaining_at(&self.store.count_connections_by_key_version().await?);
        let mut rewrapped = 0u64;
        progress(RotationProgress { target_version, rewrapped, remaining });
        loop {
            let batch = self.store.connections_needing_rewrap(target_version, batch_size).await?;
            if batch.is_empty() {
                return Ok(rewrapped);
            }
            let mut done_in_batch = 0u64;
            for candidate in &batch {
                let old = self.versions.get(candidate.key_version, &self.store, &self.keys).await?;
                let (c, t) = (*candidate.client_id.as_uuid(), *candidate.token_id.as_uuid());
                let row = RowBinding { client_id: &c, token_id: &t };
                let dk = old.unwrap_data_key(row, candidate.data_key_generation, &candidate.wrapped_data_key)?;
                let wrapped = target.wrap_data_key(row, &dk)?;
                if self.store.rewrap_data_key(candidate, target_version, &wrapped).await? {
                    done_in_batch += 1;
                }
            }
            if done_in_batch == 0 {
                // Every row in the batch changed under us; re-reading will see their new state. Yield so a
                // busy writer can finish instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            rewrapped += done_in_batch;
            remaining = remaining_at(&self.store.count_connections_by_key_version().await?);
            progress(RotationProgress { target_version, rewrapped, remaining });
        }
    }
}
