//! `keys rotate`: a new key version becomes current and every data key is re-wrapped under it.
//!
//! Resumable: the target version is recorded before any work, so a run killed midway is finished by the
//! next run instead of starting yet another version. Old versions are deleted only once no row uses them.

use std::time::Duration;

use linkvault_crypto::{KeyVersion, RowBinding};
use linkvault_storage::KeyVersionRecord;

use linkvault_domain::{AuditAction, AuditActor};

use crate::audit::AuditNote;
use crate::version_cache::CURRENT_VERSION_TTL;
use crate::{Vault, VaultError};

const ROTATION_TARGET_META: &str = "rotation_target_version";

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
        mut progress: impl FnMut(RotationProgress),
    ) -> Result<RotationReport, VaultError> {
        // Fail-closed records the rotation before it creates a version; the default records its outcome.
        let note = AuditNote::new(AuditActor::Cli, AuditAction::KeysRotated);
        self.audit_before(&note.clone().detail("started")).await?;
        let (target, resumed) = self.rotation_target().await?;
        self.versions.reload(&self.store, &self.keys).await?;
        let target_kv = self.versions.get(target, &self.store, &self.keys).await?;

        let mut rewrapped = self.rewrap_all(&target_kv, batch_size.max(1), &mut progress).await?;
        // Instances cache the current version for a few seconds; wait them out, then sweep once more for any
        // row they wrapped under an old version meanwhile.
        tokio::time::sleep(settle.max(CURRENT_VERSION_TTL + Duration::from_secs(1))).await;
        rewrapped += self.rewrap_all(&target_kv, batch_size.max(1), &mut progress).await?;

        let (mut retired, mut kept) = (Vec::new(), Vec::new());
        for record in self.store.key_versions().await? {
            if record.version == target {
                continue;
            }
            if self.store.delete_key_version_if_unused(record.version).await? {
                self.versions.forget(record.version);
                retired.push(record.version);
            } else {
                kept.push(record.version);
            }
        }
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
