//! `serve`'s key schedule: the current key version is replaced once it is older than the configured period,
//! and every retired version is deleted as soon as no row uses it, so a deleted connection's data key is
//! wrapped under a key that no longer exists in the live database within one period. (Older copies of the
//! database still hold it; `keys rotate-master --shred-deleted` closes those, see docs/architecture.md.)
//!
//! Several instances may run the schedule over one database without coordinating: the first to see an old
//! version inserts the next one (it becomes current atomically), so the others see a young version and wait;
//! re-wrapping is compare-and-swap per row, so two instances resuming an interrupted rotation only share work.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use linkvault_domain::AuditActor;
use tokio::sync::watch;

use crate::master_keyring::{FINGERPRINT_META, ROTATION_TARGET_META as MASTER_ROTATION_TARGET_META};
use crate::rotation::ROTATION_TARGET_META;
use crate::{RotationReport, Vault, VaultError};

/// Rows re-wrapped per batch by a scheduled rotation.
const BATCH: u32 = 500;
/// How long a scheduled rotation waits for other instances to re-read the current version (as `keys rotate`).
const SETTLE: Duration = Duration::from_secs(10);
/// An unfinished rotation whose target version is this old was abandoned by an instance that died: resume it.
const ABANDONED_AFTER: time::Duration = time::Duration::minutes(10);

/// What one look at the schedule did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScheduleStep {
    /// The current version is younger than the period; `retired` lists older versions deleted now that no
    /// row uses them.
    Waited { retired: Vec<u32> },
    /// A rotation ran (or an abandoned one was finished).
    Rotated(RotationReport),
    /// Not this instance's turn: the database is in a state only an operator or a restart resolves.
    Skipped(String),
}

/// The schedule, for one vault. `every` is the longest a key version stays current.
#[derive(Debug, Clone)]
pub struct KeySchedule {
    vault: Arc<Vault>,
    every: Duration,
    /// This instance's master-key fingerprint, asked of the holder once: with an HSM it is a call to the token.
    fingerprint: Arc<OnceLock<String>>,
}

impl KeySchedule {
    pub fn new(vault: Arc<Vault>, every: Duration) -> Self {
        Self { vault, every, fingerprint: Arc::default() }
    }

    /// The instance's fingerprint, computed off the async workers the first time (a token call may block).
    async fn fingerprint(&self) -> Result<String, VaultError> {
        if let Some(known) = self.fingerprint.get() {
            return Ok(known.clone());
        }
        let vault = Arc::clone(&self.vault);
        let computed = tokio::task::spawn_blocking(move || vault.master_key_fingerprint())
            .await
            .map_err(|e| VaultError::Rotation(format!("the fingerprint task failed: {e}")))??;
        Ok(self.fingerprint.get_or_init(|| computed).clone())
    }

    /// How often [`KeySchedule::run`] looks: a tenth of the period, between 1 s and 1 min.
    pub fn check_interval(&self) -> Duration {
        (self.every / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Looks every [`KeySchedule::check_interval`] until `stopped` turns true; failures are logged and
    /// retried at the next look (a rotation resumes where it stopped).
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.check_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
            // A rotation runs to its end: cutting it short only leaves work for the next look.
            match self.step().await {
                Ok(KeyScheduleStep::Rotated(report)) => tracing::info!(
                    version = report.target_version,
                    rewrapped = report.rewrapped,
                    retired = ?report.retired_versions,
                    kept = ?report.kept_versions,
                    "scheduled key-version rotation finished"
                ),
                Ok(KeyScheduleStep::Waited { retired }) if !retired.is_empty() => {
                    tracing::info!(?retired, "retired key versions no row uses any more");
                }
                Ok(KeyScheduleStep::Waited { .. }) => {}
                Ok(KeyScheduleStep::Skipped(why)) => tracing::warn!(%why, "scheduled key rotation skipped"),
                Err(error) => tracing::warn!(%error, "scheduled key rotation failed; retried at the next look"),
            }
        }
    }

    /// One look: rotate if the current version has outlived the period, else retire what is unused.
    pub async fn step(&self) -> Result<KeyScheduleStep, VaultError> {
        let vault = &self.vault;
        let store = &vault.store;
        let fingerprint = self.fingerprint().await?;
        if store.get_meta(FINGERPRINT_META).await?.as_deref() != Some(fingerprint.as_str()) {
            return Ok(KeyScheduleStep::Skipped(format!(
                "the database's keyring is no longer sealed under this instance's master key (fingerprint \
                 {fingerprint}): restart it with the new key"
            )));
        }
        if let Some(pending) = store.get_meta(MASTER_ROTATION_TARGET_META).await? {
            return Ok(KeyScheduleStep::Skipped(format!(
                "a master-key rotation to the key with fingerprint {pending} is unfinished"
            )));
        }
        let versions = store.key_versions().await?;
        let Some(current) = versions.iter().find(|v| v.is_current) else {
            return Err(VaultError::Rotation("the database has no current key version".to_owned()));
        };
        let age = vault.clock().now() - current.created_at;
        let every = time::Duration::try_from(self.every).unwrap_or(time::Duration::MAX);
        let unfinished = store.get_meta(ROTATION_TARGET_META).await?.is_some();
        if age >= every || (unfinished && age >= ABANDONED_AFTER) {
            let report = vault.rotate_keys_as(AuditActor::KeySchedule, BATCH, SETTLE, |_| {}).await?;
            return Ok(KeyScheduleStep::Rotated(report));
        }
        // Retiring waits out the settle period (instances cache the current version) and leaves a rotation
        // in progress elsewhere to retire what it replaced.
        let settled = age >= time::Duration::try_from(SETTLE).unwrap_or(time::Duration::MAX);
        if unfinished || !settled || versions.len() == 1 {
            return Ok(KeyScheduleStep::Waited { retired: Vec::new() });
        }
        Ok(KeyScheduleStep::Waited { retired: vault.finish_retiring(current.version).await? })
    }
}
