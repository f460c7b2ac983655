//! The simulated store's delegation: every `Store` method the refresh engine does not use goes to a real
//! SQLite store (set-up only: clients, key versions); the ones it uses are the in-memory `sim_*` methods.
//! Generated from the trait definitions in crates/storage; regenerate when they change.

use linkvault_domain::*;
use linkvault_storage::*;
use time::OffsetDateTime;
use uuid::Uuid;

use super::store::SimStore;

#[async_trait::async_trait]
impl LinkStore for SimStore {
    async fn insert_link_session(&self, record: &LinkSessionRecord) -> Result<()> {
        self.inner.insert_link_session(record).await
    }
    async fn find_link_by_code(&self, code_digest: &[u8]) -> Result<Option<LinkSessionRecord>> {
        self.inner.find_link_by_code(code_digest).await
    }
    async fn start_link_session(
        &self,
        code_digest: &[u8],
        session_digest: &[u8],
        now: OffsetDateTime,
        session_expires_at: OffsetDateTime,
    ) -> Result<LinkStart> {
        self.inner.start_link_session(code_digest, session_digest, now, session_expires_at).await
    }
    async fn find_link_session(&self, session_digest: &[u8], now: OffsetDateTime) -> Result<Option<LinkSessionRecord>> {
        self.inner.find_link_session(session_digest, now).await
    }
    async fn get_link_session(&self, id: Uuid) -> Result<Option<LinkSessionRecord>> {
        self.inner.get_link_session(id).await
    }
    async fn claim_link_connection(&self, id: Uuid, integration: &str) -> Result<bool> {
        self.inner.claim_link_connection(id, integration).await
    }
    async fn insert_link_oauth(&self, record: &LinkOAuthRecord, max_pending: u32) -> Result<u64> {
        self.inner.insert_link_oauth(record, max_pending).await
    }
    async fn count_pending_link_oauth(&self, session_id: Uuid, now: OffsetDateTime) -> Result<u64> {
        self.inner.count_pending_link_oauth(session_id, now).await
    }
    async fn bind_link_oauth(
        &self,
        begin_digest: &[u8],
        binding_digest: &[u8],
        started_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<String>> {
        self.inner.bind_link_oauth(begin_digest, binding_digest, started_after, now).await
    }
    async fn claim_link_oauth(&self, state_digest: &[u8], now: OffsetDateTime) -> Result<Option<LinkOAuthRecord>> {
        self.inner.claim_link_oauth(state_digest, now).await
    }
    async fn complete_link_oauth(
        &self,
        state_digest: &[u8],
        token_id: Option<TokenId>,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool> {
        self.inner.complete_link_oauth(state_digest, token_id, error, now).await
    }
    async fn take_link_oauth_outcome(&self, session_id: Uuid) -> Result<Option<LinkOAuthOutcome>> {
        self.inner.take_link_oauth_outcome(session_id).await
    }
    async fn add_link_origin(&self, client_id: ClientId, origin: &str, now: OffsetDateTime) -> Result<bool> {
        self.inner.add_link_origin(client_id, origin, now).await
    }
    async fn remove_link_origin(&self, client_id: ClientId, origin: &str) -> Result<bool> {
        self.inner.remove_link_origin(client_id, origin).await
    }
    async fn link_origins(&self, client_id: ClientId) -> Result<Vec<String>> {
        self.inner.link_origins(client_id).await
    }
    async fn purge_link_sessions(&self, before: OffsetDateTime) -> Result<u64> {
        self.inner.purge_link_sessions(before).await
    }
}

#[async_trait::async_trait]
impl WebhookStore for SimStore {
    async fn set_webhook_endpoint(&self, record: &WebhookEndpointRecord) -> Result<()> {
        self.inner.set_webhook_endpoint(record).await
    }
    async fn get_webhook_endpoint(&self, client_id: ClientId) -> Result<Option<WebhookEndpointRecord>> {
        self.inner.get_webhook_endpoint(client_id).await
    }
    async fn webhook_endpoints_after(&self, after: Option<ClientId>, limit: u32) -> Result<Vec<WebhookEndpointRecord>> {
        self.inner.webhook_endpoints_after(after, limit).await
    }
    async fn reseal_webhook_secret(&self, client_id: ClientId, old: &[u8], new: &[u8]) -> Result<bool> {
        self.inner.reseal_webhook_secret(client_id, old, new).await
    }
    async fn claim_outbox_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>> {
        self.inner.claim_outbox_deliveries(now, lease_until, limit).await
    }
    async fn finish_outbox_attempt(&self, id: Uuid, outcome: &DeliveryOutcome) -> Result<()> {
        self.inner.finish_outbox_attempt(id, outcome).await
    }
    async fn purge_finished_outbox(&self, finished_before: OffsetDateTime) -> Result<u64> {
        self.inner.purge_finished_outbox(finished_before).await
    }
}

/// The audit log in memory, head only: the engine appends a record per refresh, which a SQLite file would
/// make the simulation's hot path (the records themselves are not what it checks).
#[async_trait::async_trait]
impl AuditStore for SimStore {
    async fn append_audit(&self, _entry: &AuditEntry, seal: AuditSeal) -> Result<u64> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seq = state.audit_head.0 + 1;
        let (mac, _tag) = seal(seq, &state.audit_head.1);
        state.audit_head = (seq, mac);
        Ok(seq)
    }
    async fn audit_head(&self) -> Result<AuditHead> {
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(AuditHead { seq: state.audit_head.0, mac: state.audit_head.1.clone(), tag: None })
    }
    async fn audit_records(
        &self,
        _after: u64,
        _since: Option<OffsetDateTime>,
        _limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        Ok(Vec::new())
    }
}

#[async_trait::async_trait]
impl ClientTokenStore for SimStore {
    async fn issue_token_family(&self, family: &TokenFamilyRecord, access: &NewAccessToken) -> Result<()> {
        self.inner.issue_token_family(family, access).await
    }
    async fn refresh_token_family(&self, refresh: &FamilyRefresh) -> Result<RefreshOutcome> {
        self.inner.refresh_token_family(refresh).await
    }
    async fn find_access_token(&self, digest: &[u8]) -> Result<Option<AccessTokenMatch>> {
        self.inner.find_access_token(digest).await
    }
    async fn token_families(&self, token_id: TokenId) -> Result<Vec<TokenFamilyRecord>> {
        self.inner.token_families(token_id).await
    }
}

#[async_trait::async_trait]
impl TransferStore for SimStore {
    async fn insert_transfer_preview(&self, record: &TransferPreviewRecord) -> Result<()> {
        self.inner.insert_transfer_preview(record).await
    }
    async fn get_transfer_preview(
        &self,
        client_id: ClientId,
        preview_id: Uuid,
    ) -> Result<Option<TransferPreviewRecord>> {
        self.inner.get_transfer_preview(client_id, preview_id).await
    }
    async fn purge_transfer_previews(&self, before: OffsetDateTime) -> Result<u64> {
        self.inner.purge_transfer_previews(before).await
    }
    async fn claim_transfer_execution(&self, record: &TransferExecutionRecord) -> Result<ExecutionClaim> {
        self.inner.claim_transfer_execution(record).await
    }
    async fn find_transfer_execution(
        &self,
        client_id: ClientId,
        preview_id: Uuid,
        client_transaction_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Option<TransferExecutionRecord>> {
        self.inner.find_transfer_execution(client_id, preview_id, client_transaction_id, idempotency_key).await
    }
    async fn take_over_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<bool> {
        self.inner.take_over_transfer_execution(preview_id, attempt, now, lease_until).await
    }
    async fn complete_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        completed: &CompletedTransfer<'_>,
        at: OffsetDateTime,
    ) -> Result<bool> {
        self.inner.complete_transfer_execution(preview_id, attempt, completed, at).await
    }
    async fn release_transfer_execution(
        &self,
        preview_id: Uuid,
        attempt: u32,
        forget: bool,
        at: OffsetDateTime,
    ) -> Result<bool> {
        self.inner.release_transfer_execution(preview_id, attempt, forget, at).await
    }
    async fn list_transfer_executions(&self, client_id: ClientId, filter: &TransferFilter) -> Result<TransferPage> {
        self.inner.list_transfer_executions(client_id, filter).await
    }
    async fn claim_transfer_checks(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TransferExecutionRecord>> {
        self.inner.claim_transfer_checks(now, lease_until, limit).await
    }
    async fn record_transfer_check(&self, check: &TransferCheck) -> Result<bool> {
        self.inner.record_transfer_check(check).await
    }
}

#[async_trait::async_trait]
impl Store for SimStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn migrate(&self) -> Result<()> {
        self.inner.migrate().await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        self.inner.get_meta(key).await
    }
    async fn insert_meta_if_absent(&self, key: &str, value: &str) -> Result<String> {
        self.inner.insert_meta_if_absent(key, value).await
    }
    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.inner.set_meta(key, value).await
    }
    async fn delete_meta(&self, key: &str) -> Result<()> {
        self.inner.delete_meta(key).await
    }
    async fn replace_meta_if(&self, guard: (&str, &str), set: &[(&str, &str)], delete: &[&str]) -> Result<bool> {
        self.inner.replace_meta_if(guard, set, delete).await
    }
    async fn rewrap_key_version(&self, version: u32, old: &[u8], new: &[u8]) -> Result<bool> {
        self.inner.rewrap_key_version(version, old, new).await
    }
    async fn key_versions(&self) -> Result<Vec<KeyVersionRecord>> {
        self.sim_key_versions().await
    }
    async fn insert_key_version(&self, record: &KeyVersionRecord, make_current: bool) -> Result<bool> {
        self.inner.insert_key_version(record, make_current).await
    }
    async fn count_connections_by_key_version(&self) -> Result<Vec<(u32, u64)>> {
        self.inner.count_connections_by_key_version().await
    }
    async fn delete_key_version_if_unused(&self, version: u32) -> Result<bool> {
        self.inner.delete_key_version_if_unused(version).await
    }
    async fn connections_needing_rewrap(&self, current: u32, limit: u32) -> Result<Vec<RewrapCandidate>> {
        self.inner.connections_needing_rewrap(current, limit).await
    }
    async fn rewrap_data_key(&self, candidate: &RewrapCandidate, new_version: u32, wrapped: &[u8]) -> Result<bool> {
        self.inner.rewrap_data_key(candidate, new_version, wrapped).await
    }
    async fn insert_client(&self, client: &ClientRecord, keys: &[ApiKeyRecord]) -> Result<()> {
        self.inner.insert_client(client, keys).await
    }
    async fn get_client(&self, client_id: ClientId) -> Result<Option<ClientRecord>> {
        self.inner.get_client(client_id).await
    }
    async fn set_client_token_mode(&self, client_id: ClientId, mode: linkvault_domain::TokenMode) -> Result<bool> {
        self.inner.set_client_token_mode(client_id, mode).await
    }
    async fn set_client_api_rate_limit(&self, client_id: ClientId, per_minute: Option<u32>) -> Result<bool> {
        self.inner.set_client_api_rate_limit(client_id, per_minute).await
    }
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        self.inner.insert_api_key(key).await
    }
    async fn list_api_keys(&self, client_id: ClientId) -> Result<Vec<ApiKeyRecord>> {
        self.inner.list_api_keys(client_id).await
    }
    async fn revoke_api_keys(&self, client_id: ClientId, selector: &str, at: time::OffsetDateTime) -> Result<u64> {
        self.inner.revoke_api_keys(client_id, selector, at).await
    }
    async fn find_api_key(&self, digest: &[u8]) -> Result<Option<AuthenticatedKey>> {
        self.inner.find_api_key(digest).await
    }
    async fn find_connection_by_natural_key(&self, key: &NaturalKey) -> Result<Option<ConnectionRecord>> {
        self.sim_find_connection_by_natural_key(key).await
    }
    async fn get_connection(&self, token_id: TokenId) -> Result<Option<ConnectionRecord>> {
        self.sim_get_connection(token_id).await
    }
    async fn get_connection_summary(&self, token_id: TokenId) -> Result<Option<ConnectionSummary>> {
        self.sim_get_connection_summary(token_id).await
    }
    async fn insert_connection(&self, record: &ConnectionRecord, event: Option<&OutboxEvent>) -> Result<InsertOutcome> {
        self.sim_insert_connection(record, event).await
    }
    async fn update_credentials(&self, update: &CredentialsUpdate) -> Result<bool> {
        self.sim_update_credentials(update).await
    }
    async fn delete_connection(
        &self,
        client_id: ClientId,
        token_id: TokenId,
        event: Option<&OutboxEvent>,
    ) -> Result<bool> {
        self.inner.delete_connection(client_id, token_id, event).await
    }
    async fn apply_deletions(
        &self,
        deletions: &[linkvault_storage::DeletionRecord],
    ) -> Result<linkvault_storage::AppliedDeletions> {
        self.inner.apply_deletions(deletions).await
    }
    async fn is_token_retired(&self, token_id: TokenId) -> Result<bool> {
        self.sim_is_token_retired(token_id).await
    }
    async fn count_connections(&self) -> Result<u64> {
        self.inner.count_connections().await
    }
    async fn claim_due_connections(
        &self,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedConnection>> {
        self.sim_claim_due_connections(now, owner, lease, limit).await
    }
    async fn claim_connection(
        &self,
        token_id: TokenId,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ConnectionRecord>> {
        self.sim_claim_connection(token_id, now, owner, lease).await
    }
    async fn mark_grant_in_flight(
        &self,
        token_id: TokenId,
        version: u64,
        owner: &str,
        now: OffsetDateTime,
        min_remaining: std::time::Duration,
    ) -> Result<bool> {
        self.sim_mark_grant_in_flight(token_id, version, owner, now, min_remaining).await
    }
    async fn complete_refresh(&self, update: &CredentialsUpdate, owner: &str) -> Result<bool> {
        self.sim_complete_refresh(update, owner).await
    }
    async fn release_lease(&self, release: &LeaseRelease) -> Result<bool> {
        self.sim_release_lease(release).await
    }
    async fn mark_reauth_required(&self, mark: &ReauthMark) -> Result<bool> {
        self.sim_mark_reauth_required(mark).await
    }
    async fn expired_leases(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<ConnectionRecord>> {
        self.sim_expired_leases(now, limit).await
    }
    async fn take_over_expired_lease(
        &self,
        token_id: TokenId,
        expected_version: u64,
        now: OffsetDateTime,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ConnectionRecord>> {
        self.sim_take_over_expired_lease(token_id, expected_version, now, owner, lease).await
    }
    async fn count_due_connections(&self, now: OffsetDateTime) -> Result<u64> {
        self.sim_count_due_connections(now).await
    }
    async fn count_pending_outbox(&self) -> Result<u64> {
        self.sim_count_pending_outbox().await
    }
    async fn pending_outbox_events(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        self.sim_pending_outbox_events(limit).await
    }
}
