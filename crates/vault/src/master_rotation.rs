//! `keys rotate-master`: the keyring is sealed under a new master key, so the old one can be destroyed.
//!
//! A keyring derived from the master key (a database written before the keyring) would still be derivable
//! from the old key, so first its wrapping and sealing keys are replaced by random ones: every key version is
//! re-wrapped and every webhook secret re-sealed, in batches, under the next keyring (the digest keys are
//! carried over: they open nothing, and changing them would void every API key and client token). A random
//! keyring is only re-sealed, unless re-keying is asked for ([`Vault::rotate_master_rekeying`]): then it is
//! replaced in the same way, so that no older copy of the database (a backup, a dump, WAL, dead tuples)
//! together with any key that still exists opens a key version retired before the rotation.
//!
//! Resumable: the target fingerprint, then the next keyring (sealed under the current key), are recorded
//! before any work; whether the next keyring opens a wrapped key version or sealed secret tells what is left,
//! so a run killed midway is finished by the next one. The switch (the keyring sealed under the new key, the new
//! fingerprint, the rotation state cleared) is one transaction guarded by the old fingerprint.

use linkvault_crypto::{Keyring, KeyringOrigin, MasterKeyHolder};
use linkvault_domain::{AuditAction, AuditActor};

use crate::audit::AuditNote;
use crate::master_keyring::{
    FINGERPRINT_META, KEYRING_META, NEXT_KEYRING_META, ROTATION_TARGET_META, encode, open_sealed,
};
use crate::{Vault, VaultError};

/// After each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterRotationProgress {
    /// `key versions` or `webhook secrets`.
    pub stage: &'static str,
    /// Moved to the next keyring by this run so far, in this stage.
    pub done: u64,
    /// Still under the old keyring, in this stage.
    pub remaining: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRotationReport {
    /// The fingerprint of the master key the keyring is now sealed under.
    pub fingerprint: String,
    /// True when an interrupted rotation was finished rather than a new one started.
    pub resumed: bool,
    /// True when a derived keyring's wrapping and sealing keys were replaced by random ones.
    pub rekeyed: bool,
    pub rewrapped_key_versions: u64,
    pub resealed_secrets: u64,
}

const STAGE_KEY_VERSIONS: &str = "key versions";
const STAGE_WEBHOOK_SECRETS: &str = "webhook secrets";

impl Vault {
    /// Seals the keyring under `new` (or finishes an interrupted rotation to it). The vault must have been
    /// opened with the current master key. Afterwards this vault's own holder opens nothing: running
    /// instances must be restarted with the new key.
    pub async fn rotate_master(
        &self,
        new: &dyn MasterKeyHolder,
        batch_size: u32,
        progress: impl FnMut(MasterRotationProgress),
    ) -> Result<MasterRotationReport, VaultError> {
        self.rotate_master_with(new, batch_size, false, progress).await
    }

    /// [`rotate_master`](Self::rotate_master) that also gives the keyring new random wrapping and sealing keys
    /// whatever its origin (every key version re-wrapped, every webhook secret re-sealed): after it, the
    /// wrapping key of older copies of the database exists only sealed under the old master key.
    pub async fn rotate_master_rekeying(
        &self,
        new: &dyn MasterKeyHolder,
        batch_size: u32,
        progress: impl FnMut(MasterRotationProgress),
    ) -> Result<MasterRotationReport, VaultError> {
        self.rotate_master_with(new, batch_size, true, progress).await
    }

    async fn rotate_master_with(
        &self,
        new: &dyn MasterKeyHolder,
        batch_size: u32,
        rekey: bool,
        mut progress: impl FnMut(MasterRotationProgress),
    ) -> Result<MasterRotationReport, VaultError> {
        let current = self.holder.fingerprint()?;
        let target = new.fingerprint()?;
        if target == current {
            return Err(VaultError::MasterRotation(format!(
                "the new master key is the current one (fingerprint {current}); give a newly generated key"
            )));
        }
        // The reverse of the check in `rotate_keys_as`: a key-version rotation in progress (a `keys rotate` or a
        // running instance's key schedule) creates a version under the current keyring.
        if let Some(version) = self.store.get_meta(crate::rotation::ROTATION_TARGET_META).await? {
            return Err(VaultError::MasterRotation(format!(
                "a key-version rotation (to version {version}) is in progress or was interrupted; let it finish, \
                 or finish it with `linkvault keys rotate`, then run this again"
            )));
        }
        // Recorded first: a run that dies from here on is finished by the next run with the same new key.
        let pending = self.store.insert_meta_if_absent(ROTATION_TARGET_META, &target).await?;
        if pending != target {
            return Err(VaultError::MasterRotation(format!(
                "a rotation to the master key with fingerprint {pending} is unfinished; run again with that key \
                 as the new key to finish it (the given new key has fingerprint {target})"
            )));
        }
        let note = AuditNote::new(AuditActor::Cli, AuditAction::MasterKeyRotated);
        self.audit_before(&note.clone().detail(format!("started to={target}"))).await?;
        let resumed = self.pending_master_rotation() == Some(target.as_str());
        let (next, rekeyed) = self.next_keyring(rekey).await?;
        let batch = batch_size.max(1);
        let (mut rewrapped, mut resealed) = (0, 0);
        if rekeyed {
            // Twice: a running instance may write a webhook secret under the old keyring meanwhile.
            for _ in 0..2 {
                rewrapped += self.move_key_versions(&next, batch, &mut progress).await?;
                resealed += self.move_webhook_secrets(&next, batch, &mut progress).await?;
            }
        }
        let sealed = next.seal(new)?;
        // Never switch to bytes the new key cannot open.
        Keyring::open(new, &sealed)?;
        let sealed = encode(&sealed);
        let switched = self
            .store
            .replace_meta_if(
                (FINGERPRINT_META, &current),
                &[(KEYRING_META, &sealed), (FINGERPRINT_META, &target)],
                &[ROTATION_TARGET_META, NEXT_KEYRING_META],
            )
            .await?;
        if !switched {
            return Err(VaultError::MasterRotation(format!(
                "the database's master key fingerprint is no longer {current}: another process changed it"
            )));
        }
        // The audit key is carried over by every rotation, so this record continues the same chain.
        self.audit_after(
            &note.detail(format!(
                "from={current} to={target} rekeyed={rekeyed} rewrapped={rewrapped} resealed={resealed}"
            )),
        )
        .await;
        Ok(MasterRotationReport {
            fingerprint: target,
            resumed,
            rekeyed,
            rewrapped_key_versions: rewrapped,
            resealed_secrets: resealed,
        })
    }

    /// The keyring this rotation moves to, and whether it has new keys: the rekeyed keyring an interrupted run
    /// recorded, or a new one (recorded, sealed under the current key, before use) for a derived keyring or
    /// when `rekey` asks for it; otherwise this one.
    async fn next_keyring(&self, rekey: bool) -> Result<(Keyring, bool), VaultError> {
        let holder = self.holder.as_ref();
        let stored = match self.store.get_meta(NEXT_KEYRING_META).await? {
            Some(text) => text,
            None if rekey || self.keys.origin() == KeyringOrigin::Derived => {
                let sealed = encode(&self.keys.keyring.rekeyed()?.seal(holder)?);
                self.store.insert_meta_if_absent(NEXT_KEYRING_META, &sealed).await?
            }
            None => return Ok((self.keys.keyring.clone(), false)),
        };
        let next = open_sealed(holder, &stored, "next keyring of the unfinished rotation")?;
        if next.origin() != KeyringOrigin::Random {
            return Err(VaultError::KeyringUnreadable("the recorded next keyring is not a random one".into()));
        }
        Ok((next, true))
    }

    async fn move_key_versions(
        &self,
        next: &Keyring,
        batch: u32,
        progress: &mut impl FnMut(MasterRotationProgress),
    ) -> Result<u64, VaultError> {
        let left: Vec<_> = self
            .store
            .key_versions()
            .await?
            .into_iter()
            .filter(|r| next.open_key_version(r.version, &r.wrapped_key).is_err())
            .collect();
        let mut remaining = left.len() as u64;
        let mut done = 0;
        progress(MasterRotationProgress { stage: STAGE_KEY_VERSIONS, done, remaining });
        for chunk in left.chunks(batch as usize) {
            for record in chunk {
                let version = self.keys.open_key_version(record.version, &record.wrapped_key)?;
                let wrapped = next.wrap_key_version(&version)?;
                // A row changed meanwhile (deleted by `keys rotate`) is simply not there to move.
                if self.store.rewrap_key_version(record.version, &record.wrapped_key, &wrapped).await? {
                    done += 1;
                }
            }
            remaining -= chunk.len() as u64;
            progress(MasterRotationProgress { stage: STAGE_KEY_VERSIONS, done, remaining });
        }
        Ok(done)
    }

    async fn move_webhook_secrets(
        &self,
        next: &Keyring,
        batch: u32,
        progress: &mut impl FnMut(MasterRotationProgress),
    ) -> Result<u64, VaultError> {
        let mut remaining = 0u64;
        let mut after = None;
        loop {
            let page = self.store.webhook_endpoints_after(after, batch).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.client_id);
            remaining += page.iter().filter(|e| !opens(next, e)).count() as u64;
        }
        let mut done = 0;
        progress(MasterRotationProgress { stage: STAGE_WEBHOOK_SECRETS, done, remaining });
        let mut after = None;
        loop {
            let page = self.store.webhook_endpoints_after(after, batch).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.client_id);
            let mut moved_in_page = 0u64;
            for endpoint in page.iter().filter(|e| !opens(next, e)) {
                let context = endpoint.client_id.as_uuid().as_bytes();
                let secret = self.keys.open_webhook_secret(context, &endpoint.secret_sealed)?;
                let sealed = next.seal_webhook_secret(context, &secret)?;
                // Replaced meanwhile (a new endpoint set): the second sweep picks it up.
                if self.store.reseal_webhook_secret(endpoint.client_id, &endpoint.secret_sealed, &sealed).await? {
                    done += 1;
                }
                moved_in_page += 1;
            }
            if moved_in_page > 0 {
                remaining = remaining.saturating_sub(moved_in_page);
                progress(MasterRotationProgress { stage: STAGE_WEBHOOK_SECRETS, done, remaining });
            }
        }
        Ok(done)
    }
}

/// Whether `keyring` opens the endpoint's sealed secret (it has been moved there).
fn opens(keyring: &Keyring, endpoint: &linkvault_storage::WebhookEndpointRecord) -> bool {
    keyring.open_webhook_secret(endpoint.client_id.as_uuid().as_bytes(), &endpoint.secret_sealed).is_ok()
}

/// Whether the database is already sealed under `new` (a rotation to it finished, perhaps by a run killed
/// just after the switch): then there is nothing to do but restart instances with the new key.
pub async fn master_rotation_done(
    store: &linkvault_storage::DynStore,
    new: &dyn MasterKeyHolder,
) -> Result<bool, VaultError> {
    let target = new.fingerprint()?;
    let recorded = store.get_meta(FINGERPRINT_META).await?;
    let pending = store.get_meta(ROTATION_TARGET_META).await?;
    Ok(recorded.as_deref() == Some(target.as_str()) && pending.is_none())
}
