//! The vault's operations: clients and keys, storing and opening a connection's credentials, status and
//! permanent deletion.

use std::num::NonZeroU32;
use std::sync::Arc;

use linkvault_crypto::{
    ApiKeyDigester, ApiKeySecret, ClientTokenDigester, DataKey, KeyVersion, MasterKeyHolder, RowBinding,
    SECRET_PREFIX_LEN,
};
use linkvault_domain::{
    AuditAction, AuditActor, ClientId, Clock, ConnectionEvent, ConnectionStatus, IdentityDecision, LifecycleEvent,
    NaturalKey, Scope, TokenId, TokenMode, ValidationError, decide_identity,
};
use linkvault_domain::{IntegrationType, UserId};
use linkvault_storage::{
    ApiKeyRecord, ClientRecord, ConnectionRecord, ConnectionSummary, CredentialsUpdate, DynStore, InsertOutcome,
    RefreshState, Rekey,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::VaultError;
use crate::audit::AuditNote;
use crate::credentials::IntegrationCredentials;
use crate::deletion_ledger::{DeletionLedger, LedgerEntry};
use crate::events::connection_event;
use crate::master_keyring::{OpenedKeyring, VaultKeys};
use crate::version_cache::VersionCache;

/// The sealed field holding a connection's credentials (part of the associated data).
pub(crate) const CREDENTIALS_FIELD: &str = "credentials";
/// Replace a row's data key long before AES-GCM's 2^32 random-nonce bound for one key.
const DATA_KEY_MAX_USES: u64 = 1 << 30;
/// Compare-and-set retries when concurrent writers touch the same natural key; each loser backs off with
/// jitter so that a burst of writers for one key (e.g. a user double-clicking) drains instead of colliding.
const MAX_WRITE_ATTEMPTS: u32 = 32;
const MAX_CLIENT_NAME_CHARS: usize = 200;

/// An authenticated API caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub client_id: ClientId,
    pub scope: Scope,
    pub token_mode: TokenMode,
    pub key_id: Uuid,
    /// The client's own API rate limit (requests per minute); `None` = the server's default.
    pub api_rate_limit: Option<NonZeroU32>,
}

/// A client just created, with its secrets (shown once, never stored).
#[derive(Debug)]
pub struct CreatedClient {
    pub client_id: ClientId,
    pub keys: Vec<(Scope, ApiKeySecret)>,
}

/// Non-secret facts stored beside a connection's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionMeta {
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub access_expires_at: Option<OffsetDateTime>,
    pub refresh_expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredConnection {
    pub token_id: TokenId,
    /// False when the natural key already had a connection and its credentials were replaced.
    pub created: bool,
}

/// A connection as its owner may see it: everything but secrets and key material. The vault's own type (not
/// the store's row), so what the API shows is decided here and a new storage column is not shown by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionView {
    pub token_id: TokenId,
    pub user_id: String,
    pub integration: String,
    pub scope: Scope,
    pub status: ConnectionStatus,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub access_expires_at: Option<OffsetDateTime>,
    pub refresh_expires_at: Option<OffsetDateTime>,
    pub last_refreshed_at: Option<OffsetDateTime>,
    pub refresh_count: u64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl From<ConnectionSummary> for ConnectionView {
    fn from(s: ConnectionSummary) -> Self {
        Self {
            token_id: s.token_id,
            user_id: s.user_id,
            integration: s.integration,
            scope: s.scope,
            status: s.status,
            account_id: s.account_id,
            account_name: s.account_name,
            access_expires_at: s.access_expires_at,
            refresh_expires_at: s.refresh_expires_at,
            last_refreshed_at: s.last_refreshed_at,
            refresh_count: s.refresh_count,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug)]
pub struct Vault {
    pub(crate) store: DynStore,
    /// Holds the master key; after start it only re-seals the keyring (`keys rotate-master`).
    pub(crate) holder: Arc<dyn MasterKeyHolder>,
    /// The keyring opened at start: the key-version wrapping key, the sealing key, the digest keys.
    pub(crate) keys: Arc<VaultKeys>,
    /// The target fingerprint of an unfinished `keys rotate-master`, as found at start.
    pending_master_rotation: Option<String>,
    /// The unwrapped key versions.
    pub(crate) versions: VersionCache,
    digester: ApiKeyDigester,
    /// Recently authenticated keys (one second), so most requests authenticate without a database read.
    key_cache: crate::key_cache::KeyCache,
    /// Digests client-managed tokens (its own derived key, apart from API keys').
    pub(crate) client_token_digester: ClientTokenDigester,
    pub(crate) client_token_policy: crate::ClientTokenPolicy,
    /// Where webhook endpoints may point (checked on registration and by the deliverer).
    pub(crate) webhook_policy: Arc<crate::WebhookPolicy>,
    /// Where deletions are recorded before they commit (`None`: embedders and tests that keep no ledger).
    deletion_ledger: Option<Arc<DeletionLedger>>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The audit log's chain key and mode.
    pub(crate) audit: crate::audit::Audit,
}

/// The record of a new API key: its id and scope (the secret's prefix too is left out: the id names it).
fn key_note(key: &ApiKeyRecord) -> AuditNote {
    AuditNote::new(AuditActor::Cli, AuditAction::ApiKeyAdded)
        .client(key.client_id)
        .subject(key.key_id)
        .detail(format!("scope={}", key.scope.as_str()))
}

fn binding(record_client: &ClientId, record_token: &TokenId) -> (Uuid, Uuid) {
    (*record_client.as_uuid(), *record_token.as_uuid())
}

impl Vault {
    /// Opens the vault over a migrated store: checks the master key's fingerprint, opens the keyring with it
    /// (on a fresh database: draws a random keyring and records both) and loads the key versions. A database
    /// written before the keyring must first be given one by [`crate::master_keyring::adopt_legacy`].
    pub async fn open(
        store: DynStore,
        holder: Arc<dyn MasterKeyHolder>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, VaultError> {
        let OpenedKeyring { keys, pending_rotation } = crate::master_keyring::open(&store, holder.as_ref()).await?;
        let vault = Self {
            store,
            digester: keys.keyring.api_key_digester(),
            key_cache: crate::key_cache::KeyCache::default(),
            client_token_digester: keys.keyring.client_token_digester(),
            audit: crate::audit::Audit::new(keys.keyring.audit_chain()),
            client_token_policy: crate::ClientTokenPolicy::default(),
            webhook_policy: Arc::default(),
            deletion_ledger: None,
            holder,
            keys: Arc::new(keys),
            pending_master_rotation: pending_rotation,
            versions: VersionCache::new(),
            clock,
        };
        vault.versions.reload(&vault.store, &vault.keys).await?;
        Ok(vault)
    }

    /// Records every permanent deletion in `ledger` before it commits (and refuses a deletion it cannot
    /// record), so that `linkvault restore` can re-apply it to a backup taken before it.
    pub fn with_deletion_ledger(mut self, ledger: DeletionLedger) -> Self {
        self.deletion_ledger = Some(Arc::new(ledger));
        self
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn master_key_fingerprint(&self) -> Result<String, VaultError> {
        Ok(self.holder.fingerprint()?)
    }

    /// Whether the keyring's keys were derived from the master key (a database written before the keyring,
    /// not yet through `keys rotate-master`) or drawn at random.
    pub fn keyring_origin(&self) -> linkvault_crypto::KeyringOrigin {
        self.keys.origin()
    }

    /// The fingerprint of the key an unfinished `keys rotate-master` moves to, as found at start.
    pub fn pending_master_rotation(&self) -> Option<&str> {
        self.pending_master_rotation.as_deref()
    }

    // --- clients and keys --------------------------------------------------------------------------

    fn new_key_record(&self, client_id: ClientId, scope: Scope) -> Result<(ApiKeyRecord, ApiKeySecret), VaultError> {
        let secret = ApiKeySecret::generate()?;
        let record = ApiKeyRecord {
            key_id: Uuid::new_v4(),
            client_id,
            scope,
            digest: self.digester.digest(secret.expose()).to_vec(),
            secret_prefix: secret.prefix().to_owned(),
            created_at: self.clock.now(),
            revoked_at: None,
        };
        Ok((record, secret))
    }

    /// Creates a client with one read and one write key.
    pub async fn create_client(&self, name: &str, token_mode: TokenMode) -> Result<CreatedClient, VaultError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_CLIENT_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                format!("must be 1 to {MAX_CLIENT_NAME_CHARS} printable characters"),
            )
            .into());
        }
        let client_id = ClientId::new_random();
        let (read_rec, read_secret) = self.new_key_record(client_id, Scope::Read)?;
        let (write_rec, write_secret) = self.new_key_record(client_id, Scope::Write)?;
        let client = ClientRecord {
            client_id,
            name: name.to_owned(),
            token_mode,
            created_at: self.clock.now(),
            api_rate_limit: None,
        };
        let notes = [
            AuditNote::new(AuditActor::Cli, AuditAction::ClientCreated)
                .client(client_id)
                .detail(format!("token_mode={}", token_mode.as_str())),
            key_note(&read_rec),
            key_note(&write_rec),
        ];
        for note in &notes {
            self.audit_before(note).await?;
        }
        self.store.insert_client(&client, &[read_rec, write_rec]).await?;
        for note in &notes {
            self.audit_after(note).await;
        }
        Ok(CreatedClient { client_id, keys: vec![(Scope::Read, read_secret), (Scope::Write, write_secret)] })
    }

    pub async fn get_client(&self, client_id: ClientId) -> Result<Option<ClientRecord>, VaultError> {
        Ok(self.store.get_client(client_id).await?)
    }

    pub async fn set_token_mode(&self, client_id: ClientId, mode: TokenMode) -> Result<(), VaultError> {
        let note = AuditNote::new(AuditActor::Cli, AuditAction::ClientTokenModeChanged)
            .client(client_id)
            .detail(format!("token_mode={}", mode.as_str()));
        self.existing_client(client_id).await?;
        self.audit_before(&note).await?;
        if self.store.set_client_token_mode(client_id, mode).await? {
            self.key_cache.clear();
            self.audit_after(&note).await;
            Ok(())
        } else {
            Err(VaultError::UnknownClient(client_id.to_string()))
        }
    }

    /// Gives the client its own API rate limit (requests per minute), or with `None` the server's default
    /// again. Reaches every instance within the API-key cache's lifetime ([`crate::KEY_CACHE_TTL`]).
    pub async fn set_api_rate_limit(
        &self,
        client_id: ClientId,
        per_minute: Option<NonZeroU32>,
    ) -> Result<(), VaultError> {
        let limit = per_minute.map_or_else(|| "default".to_owned(), |n| n.to_string());
        let note = AuditNote::new(AuditActor::Cli, AuditAction::ClientRateLimitChanged)
            .client(client_id)
            .detail(format!("per_minute={limit}"));
        self.existing_client(client_id).await?;
        self.audit_before(&note).await?;
        if self.store.set_client_api_rate_limit(client_id, per_minute.map(NonZeroU32::get)).await? {
            self.key_cache.clear();
            self.audit_after(&note).await;
            Ok(())
        } else {
            Err(VaultError::UnknownClient(client_id.to_string()))
        }
    }

    pub async fn add_api_key(&self, client_id: ClientId, scope: Scope) -> Result<ApiKeySecret, VaultError> {
        self.existing_client(client_id).await?;
        let (record, secret) = self.new_key_record(client_id, scope)?;
        let note = key_note(&record);
        self.audit_before(&note).await?;
        self.store.insert_api_key(&record).await?;
        self.audit_after(&note).await;
        Ok(secret)
    }

    /// Revokes the client's key(s) named by key id or by secret prefix; returns how many were revoked.
    /// A full secret is accepted too and cut to its prefix, so an operator can paste what they have.
    pub async fn revoke_api_key(&self, client_id: ClientId, selector: &str) -> Result<u64, VaultError> {
        if self.store.get_client(client_id).await?.is_none() {
            return Err(VaultError::UnknownClient(client_id.to_string()));
        }
        let selector = selector.trim();
        let selector = if ApiKeySecret::well_formed(selector) { &selector[..SECRET_PREFIX_LEN] } else { selector };
        if selector.len() < SECRET_PREFIX_LEN && Uuid::parse_str(selector).is_err() {
            return Err(ValidationError::new(
                "secret-prefix",
                format!("give the key id or the first {SECRET_PREFIX_LEN} characters of the secret (lvk_ and 8 more)"),
            )
            .into());
        }
        // The selector is a key id or a secret prefix (never more): both name the key without revealing it.
        let note = AuditNote::new(AuditActor::Cli, AuditAction::ApiKeyRevoked)
            .client(client_id)
            .detail(format!("selector={selector}"));
        self.audit_before(&note).await?;
        let revoked = self.store.revoke_api_keys(client_id, selector, self.clock.now()).await?;
        self.key_cache.clear();
        if revoked > 0 {
            self.audit_after(&note.detail(format!("selector={selector} revoked={revoked}"))).await;
        }
        Ok(revoked)
    }

    /// `UnknownClient` unless the client exists (checked before an action is recorded).
    pub(crate) async fn existing_client(&self, client_id: ClientId) -> Result<ClientRecord, VaultError> {
        self.store.get_client(client_id).await?.ok_or_else(|| VaultError::UnknownClient(client_id.to_string()))
    }

    pub async fn list_api_keys(&self, client_id: ClientId) -> Result<Vec<ApiKeyRecord>, VaultError> {
        Ok(self.store.list_api_keys(client_id).await?)
    }

    /// Authenticates `X-Client-Id` / `X-Client-Secret`. `None` for anything wrong, without saying what.
    pub async fn authenticate(&self, client_id: &str, secret: &str) -> Result<Option<Caller>, VaultError> {
        let Ok(client_id) = client_id.trim().parse::<ClientId>() else {
            return Ok(None);
        };
        if !ApiKeySecret::well_formed(secret) {
            return Ok(None);
        }
        let digest = self.digester.digest(secret);
        let now = std::time::Instant::now();
        let generation = match self.key_cache.get(&digest, now) {
            Ok(caller) => return Ok((caller.client_id == client_id).then_some(caller)),
            Err(generation) => generation,
        };
        let Some(key) = self.store.find_api_key(&digest).await? else {
            return Ok(None);
        };
        if key.client_id != client_id || !ApiKeyDigester::matches(&key.digest, &digest) {
            return Ok(None);
        }
        let caller = Caller {
            client_id: key.client_id,
            scope: key.scope,
            token_mode: key.token_mode,
            key_id: key.key_id,
            api_rate_limit: key.api_rate_limit.and_then(NonZeroU32::new),
        };
        self.key_cache.put(digest, caller, now, generation);
        Ok(Some(caller))
    }

    // --- connections -----------------------------------------------------------------------------

    pub(crate) async fn data_key_of(&self, record: &ConnectionRecord) -> Result<DataKey, VaultError> {
        let kv = self.versions.get(record.key_version, &self.store, &self.keys).await?;
        let (c, t) = binding(&record.client_id, &record.token_id);
        Ok(kv.unwrap_data_key(
            RowBinding { client_id: &c, token_id: &t },
            record.data_key_generation,
            &record.wrapped_data_key,
        )?)
    }

    /// Decrypts a connection's credentials.
    pub async fn open_credentials(&self, record: &ConnectionRecord) -> Result<IntegrationCredentials, VaultError> {
        let dk = self.data_key_of(record).await?;
        let (c, t) = binding(&record.client_id, &record.token_id);
        let plain = dk.open(RowBinding { client_id: &c, token_id: &t }, CREDENTIALS_FIELD, &record.credentials)?;
        IntegrationCredentials::from_plaintext(&plain)
    }

    /// Stores credentials under the lifecycle table's identity rule: the natural key's existing tokenId is
    /// kept (its credentials replaced, its state back to active), otherwise a fresh tokenId is issued.
    ///
    /// The outbox receives `connection.created` for a new tokenId and `connection.recovered` when a
    /// `reauthRequired` connection is re-authenticated, in the same transaction as the write. The connection is
    /// scheduled for the refresh engine at once; the engine computes its real schedule from the integration's
    /// timing (the vault does not know it) and sends no grant unless one is due.
    pub async fn store_credentials(
        &self,
        key: &NaturalKey,
        credentials: &IntegrationCredentials,
        meta: &ConnectionMeta,
    ) -> Result<StoredConnection, VaultError> {
        self.store_credentials_issuing(key, credentials, meta, TokenId::new_random).await
    }

    /// [`store_credentials`](Self::store_credentials) done by an end user on the Link pages (the audit log's
    /// actor); the API's callers are the natural key's client.
    pub async fn store_credentials_from_link(
        &self,
        key: &NaturalKey,
        credentials: &IntegrationCredentials,
        meta: &ConnectionMeta,
    ) -> Result<StoredConnection, VaultError> {
        self.store_credentials_as(AuditActor::Link, key, credentials, meta, &TokenId::new_random).await
    }

    /// [`store_credentials`](Self::store_credentials) with the tokenId a *new* connection gets chosen by
    /// `issue` (an existing natural key keeps its tokenId). For deterministic simulation, where the tokenId
    /// seeds the schedule's jitter and must not come from the random generator.
    pub async fn store_credentials_issuing(
        &self,
        key: &NaturalKey,
        credentials: &IntegrationCredentials,
        meta: &ConnectionMeta,
        issue: impl Fn() -> TokenId + Sync,
    ) -> Result<StoredConnection, VaultError> {
        self.store_credentials_as(AuditActor::Client(key.client_id), key, credentials, meta, &issue).await
    }

    async fn store_credentials_as(
        &self,
        actor: AuditActor,
        key: &NaturalKey,
        credentials: &IntegrationCredentials,
        meta: &ConnectionMeta,
        issue: &(dyn Fn() -> TokenId + Sync),
    ) -> Result<StoredConnection, VaultError> {
        let plaintext = credentials.to_plaintext()?;
        // Fail-closed writes a record before each kind of write it attempts (once per kind: a retry after a
        // lost race does not record it again).
        let mut recorded: Vec<(AuditAction, TokenId)> = Vec::new();
        let note = |action, token_id| {
            AuditNote::new(actor, action).client(key.client_id).token(token_id).detail(format!(
                "integration={} scope={}",
                key.integration.as_str(),
                key.scope.as_str()
            ))
        };
        for attempt in 0..MAX_WRITE_ATTEMPTS {
            if attempt > 0 {
                let ceiling_ms = 1u64 << attempt.min(6);
                tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(0..=ceiling_ms))).await;
            }
            let existing = self.store.find_connection_by_natural_key(key).await?;
            match decide_identity(existing.as_ref().map(|r| r.token_id), issue, |_| false) {
                IdentityDecision::Reuse(token_id) => {
                    let Some(existing) = existing else { continue };
                    let note = note(AuditAction::ConnectionReauthenticated, token_id);
                    if !recorded.contains(&(note.action(), token_id)) {
                        self.audit_before(&note).await?;
                        recorded.push((note.action(), token_id));
                    }
                    if self.replace_credentials(&existing, &plaintext, meta, LifecycleEvent::CredentialsStored).await? {
                        self.audit_after(&note).await;
                        return Ok(StoredConnection { token_id, created: false });
                    }
                }
                IdentityDecision::Issue(token_id) => {
                    let record = self.new_connection_record(key, token_id, &plaintext, meta).await?;
                    let event = connection_event(&record, ConnectionEvent::Created, record.created_at, None);
                    let note = note(AuditAction::ConnectionCreated, token_id);
                    if !recorded.contains(&(note.action(), token_id)) {
                        self.audit_before(&note).await?;
                        recorded.push((note.action(), token_id));
                    }
                    match self.store.insert_connection(&record, Some(&event)).await? {
                        InsertOutcome::Inserted => {
                            self.audit_after(&note).await;
                            return Ok(StoredConnection { token_id, created: true });
                        }
                        // A concurrent writer took the natural key, or the id was retired: go round again.
                        InsertOutcome::NaturalKeyTaken | InsertOutcome::TokenIdRetired => {}
                    }
                }
            }
        }
        Err(VaultError::Contended)
    }

    async fn new_connection_record(
        &self,
        key: &NaturalKey,
        token_id: TokenId,
        plaintext: &[u8],
        meta: &ConnectionMeta,
    ) -> Result<ConnectionRecord, VaultError> {
        let kv: Arc<KeyVersion> = self.versions.current(&self.store, &self.keys).await?;
        let (c, t) = binding(&key.client_id, &token_id);
        let row = RowBinding { client_id: &c, token_id: &t };
        let (dk, wrapped) = kv.new_data_key(row, 1)?;
        let sealed = dk.seal(row, CREDENTIALS_FIELD, plaintext)?;
        let now = self.clock.now();
        Ok(ConnectionRecord {
            token_id,
            client_id: key.client_id,
            user_id: key.user_id.as_str().to_owned(),
            integration: key.integration.as_str().to_owned(),
            scope: key.scope,
            status: ConnectionStatus::Active,
            key_version: kv.version(),
            wrapped_data_key: wrapped,
            data_key_generation: dk.generation(),
            data_key_uses: 1,
            credentials: sealed,
            account_id: meta.account_id.clone(),
            account_name: meta.account_name.clone(),
            access_expires_at: meta.access_expires_at,
            refresh_expires_at: meta.refresh_expires_at,
            last_refreshed_at: None,
            refresh_count: 0,
            created_at: now,
            updated_at: now,
            version: 1,
            refresh: RefreshState { next_refresh_at: Some(now), ..RefreshState::default() },
        })
    }

    /// Seals new credentials into an existing row with a compare-and-set on its fencing version.
    /// Returns `false` if the row changed since it was read.
    async fn replace_credentials(
        &self,
        existing: &ConnectionRecord,
        plaintext: &[u8],
        meta: &ConnectionMeta,
        event: LifecycleEvent,
    ) -> Result<bool, VaultError> {
        let mut update = self.credentials_update(existing, plaintext, meta, event).await?;
        update.next_refresh_at = Some(update.updated_at);
        update.event = ConnectionEvent::for_transition(existing.status, update.status)
            .map(|kind| connection_event(existing, kind, update.updated_at, None));
        Ok(self.store.update_credentials(&update).await?)
    }

    /// The compare-and-set update that seals `plaintext` into `existing`, keeping the row's data key (so a
    /// refresh costs no wrap) unless it is worn out. Schedule and event are left for the caller to set.
    pub(crate) async fn credentials_update(
        &self,
        existing: &ConnectionRecord,
        plaintext: &[u8],
        meta: &ConnectionMeta,
        event: LifecycleEvent,
    ) -> Result<CredentialsUpdate, VaultError> {
        let (c, t) = binding(&existing.client_id, &existing.token_id);
        let row = RowBinding { client_id: &c, token_id: &t };
        let current_dk = self.data_key_of(existing).await?;
        let (dk, rekey, uses) = if existing.data_key_uses >= DATA_KEY_MAX_USES {
            let kv = self.versions.current(&self.store, &self.keys).await?;
            let generation = existing.data_key_generation.saturating_add(1);
            let (dk, wrapped) = kv.new_data_key(row, generation)?;
            let rekey = Rekey { key_version: kv.version(), wrapped_data_key: wrapped, data_key_generation: generation };
            (dk, Some(rekey), 1)
        } else {
            (current_dk, None, existing.data_key_uses + 1)
        };
        let sealed = dk.seal(row, CREDENTIALS_FIELD, plaintext)?;
        let status = existing.status.apply(event).map_err(|e| VaultError::Rotation(e.to_string()))?;
        let refreshed = event == LifecycleEvent::Refreshed;
        let now = self.clock.now();
        Ok(CredentialsUpdate {
            token_id: existing.token_id,
            expected_version: existing.version,
            status,
            credentials: sealed,
            data_key_uses: uses,
            rekey,
            account_id: meta.account_id.clone().or_else(|| existing.account_id.clone()),
            account_name: meta.account_name.clone().or_else(|| existing.account_name.clone()),
            access_expires_at: meta.access_expires_at,
            refresh_expires_at: meta.refresh_expires_at,
            last_refreshed_at: if refreshed { Some(now) } else { existing.last_refreshed_at },
            refresh_count: existing.refresh_count + u64::from(refreshed),
            updated_at: now,
            next_refresh_at: None,
            reauth_warned_at: None,
            event: None,
        })
    }

    /// The connection behind a tokenId, if it belongs to `client_id`. Another client's connection is
    /// `NotFound`, exactly like one that never existed.
    pub async fn connection_for(&self, client_id: ClientId, token_id: TokenId) -> Result<ConnectionRecord, VaultError> {
        match self.store.get_connection(token_id).await? {
            Some(record) if record.client_id == client_id => Ok(record),
            _ => Err(VaultError::NotFound),
        }
    }

    /// The client's connections of `user_id`, at most one per integration named (the read-scoped one when both
    /// scopes are connected: they reach the same account), in the order the integrations are given.
    pub async fn connections_of_user<'i>(
        &self,
        client_id: ClientId,
        user_id: &UserId,
        integrations: impl IntoIterator<Item = &'i IntegrationType>,
    ) -> Result<Vec<ConnectionRecord>, VaultError> {
        let mut found = Vec::new();
        for integration in integrations {
            for scope in [Scope::Read, Scope::Write] {
                let key = NaturalKey { client_id, user_id: user_id.clone(), integration: integration.clone(), scope };
                if let Some(record) = self.store.find_connection_by_natural_key(&key).await? {
                    found.push(record);
                    break;
                }
            }
        }
        Ok(found)
    }

    pub async fn status(&self, client_id: ClientId, token_id: TokenId) -> Result<ConnectionView, VaultError> {
        // The narrow read: no credentials or key material are loaded to answer a status.
        match self.store.get_connection_summary(token_id).await? {
            Some(summary) if summary.client_id == client_id => Ok(summary.into()),
            _ => Err(VaultError::NotFound),
        }
    }

    /// Permanently deletes a connection: row and wrapped data key gone at once, tokenId retired forever, and
    /// `connection.deleted` in the outbox in the same transaction. With a deletion ledger, the deletion is on
    /// disk there first; if it cannot be written, nothing is deleted ([`VaultError::Ledger`]).
    ///
    /// A ledger line whose database deletion then fails stays in the ledger and is applied at the next
    /// restore: the client asked for the deletion, and the ledger errs towards deleting.
    pub async fn delete(&self, client_id: ClientId, token_id: TokenId) -> Result<(), VaultError> {
        let record = self.connection_for(client_id, token_id).await?;
        if let Some(ledger) = &self.deletion_ledger {
            ledger.record(&LedgerEntry { token_id, client_id, deleted_at: self.clock.now() }).await?;
        }
        let event = connection_event(&record, ConnectionEvent::Deleted, self.clock.now(), None);
        let note = AuditNote::new(AuditActor::Client(client_id), AuditAction::ConnectionDeleted)
            .client(client_id)
            .token(token_id)
            .detail(format!("integration={} scope={}", record.integration, record.scope.as_str()));
        self.audit_before(&note).await?;
        if self.store.delete_connection(client_id, token_id, Some(&event)).await? {
            self.audit_after(&note).await;
            Ok(())
        } else {
            Err(VaultError::NotFound)
        }
    }
}
