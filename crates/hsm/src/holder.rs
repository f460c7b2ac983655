//! The master key inside a PKCS#11 token: an AES-256 secret key that is sensitive and non-extractable, used
//! through the token for sealing (CKM_AES_GCM) and for its fingerprint (CKM_AES_CMAC), so its bytes never
//! enter this process. One logged-in session is reused behind a mutex: linkvault seals and opens with the master
//! key a handful of times (the keyring at start, a rotation), so a pool would buy nothing.
//!
//! Sealed layout: `format(1) = 0x01 | IV(12) | ciphertext | tag(16)`. The IV is 96 random bits from the OS
//! generator, fresh for every seal. The associated data is `"linkvault/v1/pkcs11-keyring" | format | context`,
//! so the format byte and the caller's context are authenticated and the associated data is never empty
//! (SoftHSM2 mishandles an empty one).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use linkvault_crypto::{CryptoError, MasterKeyHolder};
use ring::rand::{SecureRandom as _, SystemRandom};
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use crate::config::HsmConfig;
use crate::error::{HsmError, code, session_lost};

const FORMAT_V1: u8 = 1;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TAG_BITS: u64 = 128;
const AAD_LABEL: &[u8] = b"linkvault/v1/pkcs11-keyring";
const FINGERPRINT_LABEL: &[u8] = b"linkvault/v1/pkcs11-master-key-fingerprint";
const AES_256_LEN: u64 = 32;
/// What linkvault seals with the master key is a keyring of a few keys; a bound keeps a caller's mistake from
/// becoming a large transfer to the token.
pub const MAX_PLAINTEXT: usize = 64 * 1024;

/// The master key in a PKCS#11 token. Built only by [`Pkcs11Holder::connect`] (or
/// [`Pkcs11Holder::generate_key`]), which checked the token, the PIN and the key's attributes.
pub struct Pkcs11Holder {
    // Declared before `module` so that the session closes before the module may be finalized.
    live: Mutex<Option<Live>>,
    module: Arc<Module>,
    slot: Slot,
    token_label: String,
    key_label: String,
    pin: SecretString,
}

/// A logged-in session and the key's handle in it.
struct Live {
    session: Session,
    key: ObjectHandle,
}

impl Pkcs11Holder {
    /// Loads the module, finds the token by label, logs in and finds the key by label, refusing a key that is
    /// not a sensitive, non-extractable AES-256 token key usable for encrypt, decrypt and sign.
    pub fn connect(config: &HsmConfig) -> Result<Self, HsmError> {
        let holder = Self::unconnected(config)?;
        let live = holder.establish()?;
        *holder.lock() = Some(live);
        Ok(holder)
    }

    /// Creates the master key in the token — AES-256, `CKA_TOKEN`, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`,
    /// `CKA_PRIVATE`, usable only to encrypt, decrypt and sign (the CMAC fingerprint) — and returns the connected
    /// holder. Refuses when any object in the token already has the label, so an existing key is never shadowed.
    pub fn generate_key(config: &HsmConfig) -> Result<Self, HsmError> {
        let holder = Self::unconnected(config)?;
        let offered =
            holder.module.ctx.get_mechanism_list(holder.slot).map_err(|e| HsmError::call("listing mechanisms", &e))?;
        if !offered.contains(&MechanismType::AES_KEY_GEN) {
            return Err(HsmError::MechanismMissing { token: holder.token_label.clone(), mechanism: "CKM_AES_KEY_GEN" });
        }
        {
            let session = holder.login()?;
            let existing = session
                .find_objects(&[Attribute::Label(holder.key_label.as_bytes().to_vec())])
                .map_err(|e| HsmError::call("searching the token", &e))?;
            if !existing.is_empty() {
                return Err(HsmError::KeyExists { token: holder.token_label.clone(), label: holder.key_label.clone() });
            }
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(AES_256_LEN.into()),
                Attribute::Label(holder.key_label.as_bytes().to_vec()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Modifiable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Sign(true),
                Attribute::Verify(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
            ];
            session
                .generate_key(&Mechanism::AesKeyGen, &template)
                .map_err(|e| HsmError::call("generating the key", &e))?;
        }
        let live = holder.establish()?;
        *holder.lock() = Some(live);
        Ok(holder)
    }

    pub fn token_label(&self) -> &str {
        &self.token_label
    }

    pub fn key_label(&self) -> &str {
        &self.key_label
    }

    /// The module loaded and the token found, nothing logged in yet.
    fn unconnected(config: &HsmConfig) -> Result<Self, HsmError> {
        let module = Module::open(config.module())?;
        let slot = find_token(&module, config.token_label())?;
        let offered = module.ctx.get_mechanism_list(slot).map_err(|e| HsmError::call("listing mechanisms", &e))?;
        for (mechanism, name) in [(MechanismType::AES_GCM, "CKM_AES_GCM"), (MechanismType::AES_CMAC, "CKM_AES_CMAC")] {
            if !offered.contains(&mechanism) {
                return Err(HsmError::MechanismMissing { token: config.token_label().to_owned(), mechanism: name });
            }
        }
        Ok(Self {
            live: Mutex::new(None),
            module,
            slot,
            token_label: config.token_label().to_owned(),
            key_label: config.key_label().to_owned(),
            pin: SecretString::from(config.pin().expose_secret()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Live>> {
        // A panic while the lock was held leaves a session whose state is unknown: start over.
        self.live.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = None;
            guard
        })
    }

    /// A read-write session logged in as the user. PKCS#11 login state belongs to the application per token:
    /// when another session of this process is logged in already, that login is reused.
    fn login(&self) -> Result<Session, HsmError> {
        let session =
            self.module.ctx.open_rw_session(self.slot).map_err(|e| HsmError::call("opening a session", &e))?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                Err(HsmError::WrongPin { token: self.token_label.clone() })
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::PinLocked { token: self.token_label.clone() }),
            Err(e) => Err(HsmError::call("logging in", &e)),
        }
    }

    /// Logs in and finds the key, checking every attribute the master key must have.
    fn establish(&self) -> Result<Live, HsmError> {
        let session = self.login()?;
        let label = self.key_label.as_bytes().to_vec();
        let found =
            session.find_objects(&[Attribute::Label(label)]).map_err(|e| HsmError::call("searching the token", &e))?;
        let key = match found.as_slice() {
            [] => return Err(HsmError::NoSuchKey { token: self.token_label.clone(), label: self.key_label.clone() }),
            [one] => *one,
            more => {
                return Err(HsmError::AmbiguousKey {
                    token: self.token_label.clone(),
                    label: self.key_label.clone(),
                    count: more.len(),
                });
            }
        };
        check_key(&session, key, &self.key_label)?;
        Ok(Live { session, key })
    }

    /// The token's AES-CMAC of the fingerprint label.
    fn fingerprint_mac(&self) -> Result<Vec<u8>, OpError> {
        self.with_key(|session, key| session.sign(&Mechanism::AesCMac, key, FINGERPRINT_LABEL))
    }

    /// Runs `op` on the live session; when the session or its login was lost, logs in again once and retries.
    fn with_key<T>(&self, op: impl Fn(&Session, ObjectHandle) -> Result<T, CkError>) -> Result<T, OpError> {
        let mut live = self.lock();
        if let Some(current) = live.as_ref() {
            match op(&current.session, current.key) {
                Err(e) if session_lost(&e) => *live = None,
                other => return other.map_err(OpError::Call),
            }
        }
        let fresh = self.establish().map_err(OpError::Reconnect)?;
        let result = op(&fresh.session, fresh.key).map_err(OpError::Call);
        *live = Some(fresh);
        result
    }
}

/// Why an operation on the key failed: the call itself, or logging in again after the session was lost.
enum OpError {
    Call(CkError),
    Reconnect(HsmError),
}

impl OpError {
    fn into_crypto(self, operation: &str) -> CryptoError {
        match self {
            Self::Call(e) => CryptoError::Holder(format!("PKCS#11 {operation} failed: {}", code(&e))),
            Self::Reconnect(e) => CryptoError::Holder(format!(
                "PKCS#11 {operation} failed: the session was lost, and logging in again failed: {e}"
            )),
        }
    }
}

fn aad(context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + context.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.push(FORMAT_V1);
    aad.extend_from_slice(context);
    aad
}

impl MasterKeyHolder for Pkcs11Holder {
    /// SHA-256 of the token's AES-CMAC of a fixed label, truncated to 128 bits (32 hex characters). CMAC is a
    /// pseudo-random function of the key, so its value on a public label reveals nothing about the key beyond
    /// "same key or not"; no seal uses CMAC, so the value cannot help forge or open a sealed blob; the hash on
    /// top only fixes the length and format.
    fn fingerprint(&self) -> Result<String, CryptoError> {
        let mac = self.fingerprint_mac().map_err(|e| e.into_crypto("fingerprint (C_Sign, CKM_AES_CMAC)"))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &mac);
        Ok(digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect())
    }

    fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(CryptoError::TooLong);
        }
        let mut iv = [0u8; IV_LEN];
        SystemRandom::new().fill(&mut iv).map_err(|_| CryptoError::Rng)?;
        let aad = aad(context);
        let sealed = self
            .with_key(|session, key| {
                let mut iv = iv;
                let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())?;
                session.encrypt(&Mechanism::AesGcm(params), key, plaintext)
            })
            .map_err(|e| e.into_crypto("seal (C_Encrypt, CKM_AES_GCM)"))?;
        if sealed.len() != plaintext.len() + TAG_LEN {
            return Err(CryptoError::Holder(format!(
                "PKCS#11 seal returned {} bytes for {} bytes of plaintext; expected the ciphertext and a 16-byte tag",
                sealed.len(),
                plaintext.len()
            )));
        }
        let mut out = Vec::with_capacity(1 + IV_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < 1 + IV_LEN + TAG_LEN || sealed[0] != FORMAT_V1 {
            return Err(CryptoError::Malformed);
        }
        if sealed.len() > 1 + IV_LEN + MAX_PLAINTEXT + TAG_LEN {
            return Err(CryptoError::TooLong);
        }
        let (iv, body) = sealed[1..].split_at(IV_LEN);
        let aad = aad(context);
        let opened = self.with_key(|session, key| {
            let mut iv: [u8; IV_LEN] = iv.try_into().map_err(|_| CkError::InvalidValue)?;
            let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())?;
            session.decrypt(&Mechanism::AesGcm(params), key, body)
        });
        match opened {
            Ok(plain) => Ok(Zeroizing::new(plain)),
            // A failed tag check: wrong key, wrong context or altered bytes. These are the codes PKCS#11
            // defines for invalid ciphertext.
            Err(OpError::Call(CkError::Pkcs11(RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange, _))) => {
                Err(CryptoError::OpenFailed)
            }
            // SoftHSM2 (2.6) answers a failed tag with CKR_GENERAL_ERROR, which a broken token may also say. A
            // token that still computes the fingerprint is working, so then it was the tag.
            Err(OpError::Call(CkError::Pkcs11(RvError::GeneralError | RvError::FunctionFailed, Function::Decrypt)))
                if self.fingerprint_mac().is_ok() =>
            {
                Err(CryptoError::OpenFailed)
            }
            Err(e) => Err(e.into_crypto("open (C_Decrypt, CKM_AES_GCM)")),
        }
    }
}

impl fmt::Debug for Pkcs11Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Holder")
            .field("module", &self.module.path)
            .field("slot", &self.slot.id())
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

/// The token whose label is `label`, among the slots that have a token.
fn find_token(module: &Module, label: &str) -> Result<Slot, HsmError> {
    let slots = module.ctx.get_slots_with_token().map_err(|e| HsmError::call("listing slots", &e))?;
    let mut present = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        let info = module.ctx.get_token_info(slot).map_err(|e| HsmError::call("reading token information", &e))?;
        if !info.token_initialized() {
            continue;
        }
        if info.label() == label {
            matching.push(slot);
        }
        present.push(info.label().to_owned());
    }
    match matching.as_slice() {
        [] => Err(HsmError::NoSuchToken { label: label.to_owned(), module: module.path.clone(), present }),
        [one] => Ok(*one),
        more => Err(HsmError::AmbiguousToken { label: label.to_owned(), count: more.len() }),
    }
}

/// The master key's required attributes. `CKA_VALUE` is never requested: a sensitive key would refuse it, and
/// its length is `CKA_VALUE_LEN`.
fn check_key(session: &Session, key: ObjectHandle, label: &str) -> Result<(), HsmError> {
    let wanted = [
        AttributeType::Class,
        AttributeType::KeyType,
        AttributeType::ValueLen,
        AttributeType::Token,
        AttributeType::Sensitive,
        AttributeType::Extractable,
        AttributeType::NeverExtractable,
        AttributeType::Encrypt,
        AttributeType::Decrypt,
        AttributeType::Sign,
    ];
    let attributes = session.get_attributes(key, &wanted).map_err(|e| HsmError::call("reading key attributes", &e))?;
    let mut class = None;
    let mut key_type = None;
    let mut value_len = None;
    // Absent flags count as false: a token that cannot say the key is safe has not said it.
    let (mut token, mut sensitive, mut extractable, mut never_extractable) = (false, false, true, false);
    let (mut encrypt, mut decrypt, mut sign) = (false, false, false);
    for attribute in attributes {
        match attribute {
            Attribute::Class(c) => class = Some(c),
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::ValueLen(len) => value_len = Some(u64::from(len)),
            Attribute::Token(v) => token = v,
            Attribute::Sensitive(v) => sensitive = v,
            Attribute::Extractable(v) => extractable = v,
            Attribute::NeverExtractable(v) => never_extractable = v,
            Attribute::Encrypt(v) => encrypt = v,
            Attribute::Decrypt(v) => decrypt = v,
            Attribute::Sign(v) => sign = v,
            _ => {}
        }
    }
    let label = label.to_owned();
    if class != Some(ObjectClass::SECRET_KEY) {
        let found = class.map_or_else(|| "no object class".to_owned(), |c| format!("object class {c}"));
        return Err(HsmError::NotAes256 { label, found });
    }
    if key_type != Some(KeyType::AES) || value_len != Some(AES_256_LEN) {
        let found = format!(
            "key type {}, {} bytes",
            key_type.map_or_else(|| "unknown".to_owned(), |t| t.to_string()),
            value_len.map_or_else(|| "unknown".to_owned(), |l| l.to_string())
        );
        return Err(HsmError::NotAes256 { label, found });
    }
    if extractable || !never_extractable {
        return Err(HsmError::Extractable { label });
    }
    if !sensitive {
        return Err(HsmError::NotSensitive { label });
    }
    if !token {
        return Err(HsmError::NotOnToken { label });
    }
    for (allowed, usage) in
        [(encrypt, "encryption (CKA_ENCRYPT)"), (decrypt, "decryption (CKA_DECRYPT)"), (sign, "signing (CKA_SIGN)")]
    {
        if !allowed {
            return Err(HsmError::Usage { label, usage });
        }
    }
    Ok(())
}

/// A loaded and initialised PKCS#11 module, shared by every holder of this process that names the same file:
/// `C_Initialize` and `C_Finalize` are per process, so two holders on one module (rotation from one key to
/// another in the same token) must share one initialisation, and the last one to go finalises it.
struct Module {
    path: PathBuf,
    ctx: Pkcs11,
}

static MODULES: Mutex<Vec<(PathBuf, Weak<Module>)>> = Mutex::new(Vec::new());

fn modules() -> MutexGuard<'static, Vec<(PathBuf, Weak<Module>)>> {
    MODULES.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Module {
    fn open(path: &Path) -> Result<Arc<Self>, HsmError> {
        if !path.is_file() {
            return Err(HsmError::ModuleMissing { path: path.to_owned() });
        }
        let path = path.canonicalize().map_err(|_| HsmError::ModuleMissing { path: path.to_owned() })?;
        let mut registry = modules();
        if let Some(live) = registry.iter().find(|(p, _)| *p == path).and_then(|(_, weak)| weak.upgrade()) {
            return Ok(live);
        }
        let load_error = |e: CkError| HsmError::ModuleLoad { path: path.clone(), reason: code(&e) };
        let ctx = Pkcs11::new(&path).map_err(load_error)?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            // Already initialised: a module of this process being dropped right now (its finalisation sees the
            // replacement below and skips itself), or another library in the process.
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, Function::Initialize)) => {}
            Err(e) => return Err(load_error(e)),
        }
        let module = Arc::new(Self { path: path.clone(), ctx });
        registry.retain(|(p, _)| *p != path);
        registry.push((path, Arc::downgrade(&module)));
        Ok(module)
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        let mut registry = modules();
        let replaced = registry.iter().any(|(p, weak)| *p == self.path && weak.strong_count() > 0);
        if !replaced {
            registry.retain(|(p, _)| *p != self.path);
            // Nothing to report to: the process is letting go of the token either way.
            let _ = self.ctx.clone().finalize();
        }
    }
}
