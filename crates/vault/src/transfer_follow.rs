//! Transfers after they were sent: the calling client's list of managed transfers, and the status follower's
//! leased batches of transfers due for a check and the check results it records (with the announcement
//! event, written in the same transaction). The exactly-once execution of a transfer lives elsewhere.

use linkvault_domain::ClientId;
use linkvault_storage::{TransferCheck, TransferExecutionRecord, TransferFilter, TransferPage};
use time::Duration;

use crate::{Vault, VaultError};

impl Vault {
    /// The client's executed transfers matching `filter`, with the total count.
    pub async fn transfer_executions(
        &self,
        client_id: ClientId,
        filter: &TransferFilter,
    ) -> Result<TransferPage, VaultError> {
        Ok(self.store.list_transfer_executions(client_id, filter).await?)
    }

    /// Claims up to `limit` transfers due for a status check now, leased for `lease` so no other instance
    /// checks them meanwhile.
    pub async fn claim_transfer_checks(
        &self,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<TransferExecutionRecord>, VaultError> {
        let now = self.clock.now();
        Ok(self.store.claim_transfer_checks(now, now + lease, limit).await?)
    }

    /// Records a check's result; `false` when a later check (another instance's) already stands.
    pub async fn record_transfer_check(&self, check: &TransferCheck) -> Result<bool, VaultError> {
        Ok(self.store.record_transfer_check(check).await?)
    }
}
