//! The secret-handling half of the refresh engine: opening a claimed row's credentials, sealing refreshed
//! credentials into the compare-and-set write-back (under the row's own data key, as every credentials write
//! does). The events the lifecycle writes to the outbox are built in `events`.
//!
//! The engine (crate `linkvault-refresh`) decides *when* and *whether*; this module only turns tokens into
//! ciphertext bound to their row, so that clear tokens stay inside the vault crate and the engine's stack.

use linkvault_domain::LifecycleEvent;
use linkvault_storage::{ConnectionRecord, CredentialsUpdate};
use time::OffsetDateTime;

use crate::VaultError;
use crate::credentials::IntegrationCredentials;
use crate::service::{ConnectionMeta, Vault};

/// The outcome of a successful refresh grant, as the write-back needs it.
#[derive(Debug)]
pub struct Refreshed<'a> {
    /// The new access token and the refresh token to keep (the new one, or the old one when none came back).
    pub credentials: &'a IntegrationCredentials,
    pub access_expires_at: Option<OffsetDateTime>,
    /// The refresh token's end; the caller keeps the old value when a non-rotated refresh token was kept.
    pub refresh_expires_at: Option<OffsetDateTime>,
    /// The connection's next place in the schedule, computed from the new expiry.
    pub next_refresh_at: OffsetDateTime,
    /// Kept when the refresh token (and so its warned-about end) did not change; None for a new one.
    pub reauth_warned_at: Option<OffsetDateTime>,
}

impl Vault {
    /// The compare-and-set write-back of a refresh on a claimed row: sealed under the row's data key, status
    /// through the lifecycle rule (`Refreshed`, which only an active connection accepts), `expected_version`
    /// the version the claim returned. The caller passes it to `Store::complete_refresh` with its lease owner.
    pub async fn refreshed_update(
        &self,
        claimed: &ConnectionRecord,
        refreshed: &Refreshed<'_>,
    ) -> Result<CredentialsUpdate, VaultError> {
        let plaintext = refreshed.credentials.to_plaintext()?;
        let meta = ConnectionMeta {
            account_id: None,
            account_name: None,
            access_expires_at: refreshed.access_expires_at,
            refresh_expires_at: refreshed.refresh_expires_at,
        };
        let mut update = self.credentials_update(claimed, &plaintext, &meta, LifecycleEvent::Refreshed).await?;
        update.next_refresh_at = Some(refreshed.next_refresh_at);
        update.reauth_warned_at = refreshed.reauth_warned_at;
        Ok(update)
    }
}
