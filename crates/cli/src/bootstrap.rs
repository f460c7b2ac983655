//! Opening the database and the vault the same way for every command.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use linkvault_crypto::MasterKeyHolder;
use linkvault_domain::SystemClock;
use linkvault_hsm::{HsmConfig, Pkcs11Holder};
use linkvault_storage::DynStore;
use linkvault_vault::deletion_ledger::{DEFAULT_LEDGER_FILE, DeletionLedger};
use linkvault_vault::master_key::{self, MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, MasterKeySource};
use linkvault_vault::{Vault, WebhookPolicy};

use crate::GlobalOptions;

pub const DATABASE_FILE: &str = "linkvault.db";

/// The PKCS#11 key holder configured by the `LINKVAULT_MASTER_KEY_PKCS11_*` variables, connected (the token,
/// the PIN and the key's attributes checked), or `None` when none of them is set. A key given in memory as well
/// (`LINKVAULT_MASTER_KEY` or `_FILE`) is refused: which one seals the keyring must never be a guess.
pub async fn pkcs11_holder() -> anyhow::Result<Option<Pkcs11Holder>> {
    let Some(config) = HsmConfig::from_env()? else { return Ok(None) };
    if key_in_memory_configured() {
        anyhow::bail!(
            "both the PKCS#11 key holder (LINKVAULT_MASTER_KEY_PKCS11_*) and {MASTER_KEY_ENV} or \
             {MASTER_KEY_FILE_ENV} are set; set only one (moving a database from a key in memory into a token is \
             not supported yet)"
        );
    }
    // Loading the module and logging in are blocking calls into the vendor's library.
    let holder = tokio::task::spawn_blocking(move || Pkcs11Holder::connect(&config)).await??;
    Ok(Some(holder))
}

/// Whether a key in memory (`LINKVAULT_MASTER_KEY` or `_FILE`) is configured: with a PKCS#11 holder as well,
/// every command and `config check` refuse, as which key seals the keyring must never be a guess.
pub fn key_in_memory_configured() -> bool {
    std::env::var_os(MASTER_KEY_ENV).is_some() || std::env::var_os(MASTER_KEY_FILE_ENV).is_some()
}

/// The master key's holder: the PKCS#11 token when configured (nothing key-like is then read from or written
/// to disk), else the key from the environment, its file or the data dir (generated there on first start).
async fn configured_holder(global: &GlobalOptions, store: &DynStore) -> anyhow::Result<Arc<dyn MasterKeyHolder>> {
    if let Some(holder) = pkcs11_holder().await? {
        crate::logging::operator(
            crate::logging::Level::Notice,
            &format!(
                "the master key is the key {:?} in the PKCS#11 token {:?}",
                holder.key_label(),
                holder.token_label()
            ),
        );
        return Ok(Arc::new(holder));
    }
    let env_value = std::env::var(MASTER_KEY_ENV).ok();
    let env_file = std::env::var_os(MASTER_KEY_FILE_ENV).map(std::path::PathBuf::from);
    let (master, source) = master_key::load(env_value.as_deref(), env_file.as_deref(), &global.data_dir)?;
    if let MasterKeySource::Generated(path) = &source {
        crate::logging::operator(
            crate::logging::Level::Notice,
            &format!(
                "generated a new master key in {} (mode 0600). Back it up: without it the stored tokens cannot be \
                 decrypted. For production, set {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}, or keep the key in an \
                 HSM (LINKVAULT_MASTER_KEY_PKCS11_*) instead.",
                path.display()
            ),
        );
    }
    if linkvault_vault::master_keyring::adopt_legacy(store, &master).await? {
        crate::logging::operator(
            crate::logging::Level::Notice,
            "recorded the database's keyring, derived from the master key as earlier versions used it; \
             `linkvault keys rotate-master` replaces it by random keys sealed under a new master key",
        );
    }
    Ok(Arc::new(master))
}

/// The database URL in effect, and a description safe to print (no password).
pub fn database_url(global: &GlobalOptions) -> (String, String) {
    match global.database_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) if linkvault_storage::is_postgres_url(url) => (url.to_owned(), "PostgreSQL".to_owned()),
        Some(url) => (url.to_owned(), format!("SQLite at {url}")),
        None => {
            let path = global.data_dir.join(DATABASE_FILE);
            (path.display().to_string(), format!("SQLite at {}", path.display()))
        }
    }
}

/// The deletion ledger in effect: `--deletion-ledger`, or `deletions.ledger` in the data dir.
pub fn deletion_ledger_path(global: &GlobalOptions) -> PathBuf {
    global.deletion_ledger.clone().unwrap_or_else(|| global.data_dir.join(DEFAULT_LEDGER_FILE))
}

/// Opens and migrates the store.
pub async fn open_store(global: &GlobalOptions) -> anyhow::Result<(DynStore, String)> {
    crate::files::prepare_data_dir(&global.data_dir)?;
    let (url, description) = database_url(global);
    if let Some(path) = linkvault_storage::sqlite_path(&url) {
        crate::files::prepare_database_file(path)?;
    }
    let store =
        linkvault_storage::open(&url).await.with_context(|| format!("cannot open the database ({description})"))?;
    store.migrate().await.with_context(|| format!("cannot migrate the database ({description})"))?;
    Ok((store, description))
}

/// Opens the store, loads the master key and opens the vault (which checks the key's fingerprint and opens
/// the keyring; a database written before the keyring first gets the keyring derived from the key).
pub async fn open_vault(global: &GlobalOptions) -> anyhow::Result<(Arc<Vault>, String)> {
    open_vault_with(global, WebhookPolicy::default()).await
}

/// As [`open_vault`], with the operator's webhook egress policy.
pub async fn open_vault_with(global: &GlobalOptions, webhooks: WebhookPolicy) -> anyhow::Result<(Arc<Vault>, String)> {
    let (vault, _, description) = open_vault_and_store(global, webhooks).await?;
    Ok((vault, description))
}

/// As [`open_vault_with`], also returning the store the vault was opened on: `serve`'s start-up wiring hands
/// it to the refresh engine, whose claims and leases live below the vault's services.
pub async fn open_vault_and_store(
    global: &GlobalOptions,
    webhooks: WebhookPolicy,
) -> anyhow::Result<(Arc<Vault>, DynStore, String)> {
    let (store, description) = open_store(global).await?;
    let holder = configured_holder(global, &store).await?;
    // Opened (created if missing) before anything else, so a ledger that cannot be written stops start-up
    // rather than the first deletion.
    let ledger = DeletionLedger::open(&deletion_ledger_path(global))?;
    let vault = Vault::open(Arc::clone(&store), holder, Arc::new(SystemClock))
        .await?
        .with_webhook_policy(webhooks)
        .with_deletion_ledger(ledger)
        .with_audit_fail_closed(global.audit_fail_closed);
    if let Some(target) = vault.pending_master_rotation() {
        crate::logging::operator(
            crate::logging::Level::Warning,
            &format!(
                "a master-key rotation to the key with fingerprint {target} is unfinished; finish it with \
                 `linkvault keys rotate-master --new-key-file <that key>` (this key stays configured), then restart \
                 every instance with the new key"
            ),
        );
    }
    Ok((Arc::new(vault), store, description))
}
