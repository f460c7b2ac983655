//! What operations endpoints ask of the vault: whether its database answers, which backend it is, and the
//! stored connection count behind the `linkvault_connections` gauge.

use crate::{Vault, VaultError};

impl Vault {
    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), VaultError> {
        Ok(self.store.ping().await?)
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Every stored connection, counted in the database (correct across instances sharing it).
    pub async fn count_connections(&self) -> Result<u64, VaultError> {
        Ok(self.store.count_connections().await?)
    }
}
