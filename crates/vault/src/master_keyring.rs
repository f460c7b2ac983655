//! Where the keyring lives and how the vault finds it at start: `meta` rows holding the master key's
//! fingerprint, the keyring sealed by the master key's holder (base64), and the state of an unfinished
//! `keys rotate-master`. Start-up decides here which key the database expects, and says so when it is
//! given another.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use linkvault_crypto::{CryptoError, KeyVersion, Keyring, KeyringOrigin, MasterKey, MasterKeyHolder};
use linkvault_storage::DynStore;
use zeroize::Zeroizing;

use crate::VaultError;

/// The fingerprint of the master key the keyring is sealed under.
pub const FINGERPRINT_META: &str = "master_key_fingerprint";
/// The keyring, sealed by the master key's holder, in base64.
pub const KEYRING_META: &str = "keyring";
/// The fingerprint of the key an unfinished `keys rotate-master` moves to (recorded before any work).
pub const ROTATION_TARGET_META: &str = "master_rotation_target";
/// The keyring an unfinished `keys rotate-master` moves the key versions and sealed secrets to, sealed under
/// the current master key until the switch.
pub const NEXT_KEYRING_META: &str = "master_rotation_next_keyring";

/// Every `meta` row about the master key, for `config check`.
pub const META_KEYS: [&str; 4] = [FINGERPRINT_META, KEYRING_META, ROTATION_TARGET_META, NEXT_KEYRING_META];

/// The keyring opened at start, and what start found pending.
#[derive(Debug)]
pub(crate) struct OpenedKeyring {
    pub(crate) keys: VaultKeys,
    pub(crate) pending_rotation: Option<String>,
}

/// The vault's keyring, and during an unfinished `keys rotate-master` that re-keys it also the next one:
/// what the rotation already moved opens with the next keyring, the rest with the current one. Which is which
/// is found by trying the next one first (an authenticated unwrap that fails costs one AES-GCM pass; a header
/// cannot tell two random keyrings apart). New things are written with the current keyring; the rotation
/// moves them too.
#[derive(Debug)]
pub(crate) struct VaultKeys {
    pub(crate) keyring: Keyring,
    pub(crate) next: Option<Keyring>,
}

impl VaultKeys {
    pub(crate) fn origin(&self) -> KeyringOrigin {
        self.keyring.origin()
    }

    pub(crate) fn new_key_version(&self, version: u32) -> Result<(KeyVersion, Vec<u8>), CryptoError> {
        self.keyring.new_key_version(version)
    }

    pub(crate) fn open_key_version(&self, version: u32, wrapped: &[u8]) -> Result<KeyVersion, CryptoError> {
        match &self.next {
            Some(next) => {
                next.open_key_version(version, wrapped).or_else(|_| self.keyring.open_key_version(version, wrapped))
            }
            None => self.keyring.open_key_version(version, wrapped),
        }
    }

    pub(crate) fn seal_webhook_secret(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.keyring.seal_webhook_secret(context, plaintext)
    }

    pub(crate) fn open_webhook_secret(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match &self.next {
            Some(next) => {
                next.open_webhook_secret(context, sealed).or_else(|_| self.keyring.open_webhook_secret(context, sealed))
            }
            None => self.keyring.open_webhook_secret(context, sealed),
        }
    }
}

pub(crate) fn encode(sealed: &[u8]) -> String {
    STANDARD.encode(sealed)
}

pub(crate) fn decode(text: &str, what: &str) -> Result<Vec<u8>, VaultError> {
    STANDARD.decode(text.trim()).map_err(|_| VaultError::KeyringUnreadable(format!("{what} is not base64")))
}

/// Opens a sealed keyring from its `meta` text with `holder`.
pub(crate) fn open_sealed(holder: &dyn MasterKeyHolder, text: &str, what: &str) -> Result<Keyring, VaultError> {
    let sealed = decode(text, what)?;
    Keyring::open(holder, &sealed).map_err(|e| match e {
        CryptoError::Holder(_) | CryptoError::Rng => VaultError::Crypto(e),
        _ => VaultError::KeyringUnreadable(format!(
            "the {what} does not open with the configured master key although its fingerprint matches: the meta \
             table was altered or restored from another database ({e})"
        )),
    })
}

/// Finds the keyring for `holder`: checks the fingerprint the database expects (naming a rotation in progress
/// when `holder` is its target), opens the stored keyring, or on a fresh database draws a random one and
/// records it and the fingerprint. Several instances may start on a fresh database at once: the first
/// keyring written wins and every instance uses it.
pub(crate) async fn open(store: &DynStore, holder: &dyn MasterKeyHolder) -> Result<OpenedKeyring, VaultError> {
    let configured = holder.fingerprint()?;
    let recorded = store.get_meta(FINGERPRINT_META).await?;
    let pending_rotation = store.get_meta(ROTATION_TARGET_META).await?;
    if let Some(expected) = recorded.as_ref().filter(|e| **e != configured) {
        if pending_rotation.as_deref() == Some(configured.as_str()) {
            return Err(VaultError::MasterRotationUnfinished { current: expected.clone(), target: configured });
        }
        return Err(VaultError::WrongMasterKey { expected: expected.clone(), configured });
    }
    let stored = match store.get_meta(KEYRING_META).await? {
        Some(text) => text,
        None if recorded.is_some() => return Err(VaultError::KeyringMissing { fingerprint: configured }),
        None => {
            // Keyring first, then the fingerprint: a start that dies in between leaves a keyring that opens
            // with this key only, and the next start records the fingerprint.
            let sealed = Keyring::generate()?.seal(holder)?;
            store.insert_meta_if_absent(KEYRING_META, &encode(&sealed)).await?
        }
    };
    let keyring = open_sealed(holder, &stored, "keyring")?;
    let expected = store.insert_meta_if_absent(FINGERPRINT_META, &configured).await?;
    if expected != configured {
        return Err(VaultError::WrongMasterKey { expected, configured });
    }
    let next = match store.get_meta(NEXT_KEYRING_META).await? {
        Some(text) => Some(open_sealed(holder, &text, "next keyring of the unfinished rotation")?),
        None => None,
    };
    Ok(OpenedKeyring { keys: VaultKeys { keyring, next }, pending_rotation })
}

/// Gives a database written before the keyring existed its keyring: the one derived from `master`, whose
/// keys are exactly what those versions derived for each purpose, so nothing stored needs rewriting. Does
/// nothing on a fresh database (the vault draws a random keyring) or one that has a keyring. Returns whether
/// it recorded one. The master key must be in memory for this (a file or the environment): the derivation is
/// what the old versions did, and no holder can do it for a key it keeps to itself.
pub async fn adopt_legacy(store: &DynStore, master: &MasterKey) -> Result<bool, VaultError> {
    let Some(expected) = store.get_meta(FINGERPRINT_META).await? else { return Ok(false) };
    if store.get_meta(KEYRING_META).await?.is_some() {
        return Ok(false);
    }
    let configured = master.fingerprint();
    if expected != configured {
        return Err(VaultError::WrongMasterKey { expected, configured });
    }
    let sealed = Keyring::derived_from(master).seal(master)?;
    let stored = store.insert_meta_if_absent(KEYRING_META, &encode(&sealed)).await?;
    Ok(stored == encode(&sealed))
}
