//! Vault errors: two honest classes — the caller's fault (validation, not found) and ours (storage, crypto).

use linkvault_crypto::CryptoError;
use linkvault_domain::ValidationError;
use linkvault_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "the master key does not match the one this database was written with \
         (database expects key fingerprint {expected}, the configured key has {configured}); \
         start with the original LINKVAULT_MASTER_KEY / LINKVAULT_MASTER_KEY_FILE, or point --data-dir / \
         --database-url at the database this key belongs to"
    )]
    WrongMasterKey { expected: String, configured: String },
    #[error(
        "the configured master key (fingerprint {target}) is the new key of an unfinished `linkvault keys \
         rotate-master`; the database is still sealed under the key with fingerprint {current}. Finish the \
         rotation: configure that current key (LINKVAULT_MASTER_KEY / LINKVAULT_MASTER_KEY_FILE) and run \
         `linkvault keys rotate-master --new-key-file <this key's file>` (or LINKVAULT_NEW_MASTER_KEY), then start \
         with the new key"
    )]
    MasterRotationUnfinished { current: String, target: String },
    #[error(
        "this database was written before the keyring existed and has none yet (master key fingerprint \
         {fingerprint}); start linkvault once with that master key in LINKVAULT_MASTER_KEY or \
         LINKVAULT_MASTER_KEY_FILE, which records a keyring derived from it"
    )]
    KeyringMissing { fingerprint: String },
    #[error("the keyring cannot be read: {0}")]
    KeyringUnreadable(String),
    #[error("master-key rotation: {0}")]
    MasterRotation(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("not found")]
    NotFound,
    #[error("client {0} does not exist")]
    UnknownClient(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Never carries secret material: `CryptoError` messages name keys by number only.
    #[error("cannot open stored secrets: {0}")]
    Crypto(#[from] CryptoError),
    #[error("key version {0} is not in the database")]
    MissingKeyVersion(u32),
    #[error("concurrent writers kept changing the connection; try again")]
    Contended,
    #[error("key rotation: {0}")]
    Rotation(String),
    /// The deletion ledger could not be written (the deletion was refused) or read (nothing was re-applied).
    #[error(transparent)]
    Ledger(#[from] crate::deletion_ledger::LedgerError),
    /// Fail-closed audit: the action was refused because its audit record could not be written.
    #[error(
        "the audit log cannot be written, so the action was refused (audit fail-closed is on); \
         check the database, then retry"
    )]
    AuditUnavailable,
}

impl VaultError {
    /// Whether the caller can fix this by changing the request (4xx) rather than it being our fault (5xx).
    pub fn is_client_error(&self) -> bool {
        matches!(self, VaultError::Invalid(_) | VaultError::NotFound | VaultError::UnknownClient(_))
    }
}
