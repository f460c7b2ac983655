//! What can go wrong between linkvault and a token, each case worded so that an operator knows what to fix.
//! No message carries key material or the PIN: PKCS#11 return codes, labels and paths only.

use std::path::PathBuf;

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error(
        "the PKCS#11 module {} does not exist or is not a file (LINKVAULT_MASTER_KEY_PKCS11_MODULE); install \
         the vendor's library (Debian: apt-get install softhsm2 gives /usr/lib/softhsm/libsofthsm2.so)",
        path.display()
    )]
    ModuleMissing { path: PathBuf },
    #[error("cannot load {} as a PKCS#11 module: {reason}", path.display())]
    ModuleLoad { path: PathBuf, reason: String },
    #[error(
        "no token labelled {label:?} in {} (LINKVAULT_MASTER_KEY_PKCS11_TOKEN); tokens present: {}",
        module.display(),
        if present.is_empty() { "none".to_owned() } else { present.iter().map(|l| format!("{l:?}")).collect::<Vec<_>>().join(", ") }
    )]
    NoSuchToken { label: String, module: PathBuf, present: Vec<String> },
    #[error("{count} tokens are labelled {label:?}; relabel all but one so that the key holder is unambiguous")]
    AmbiguousToken { label: String, count: usize },
    #[error(
        "the PIN was refused by token {token:?} (CKR_PIN_INCORRECT); check LINKVAULT_MASTER_KEY_PKCS11_PIN or \
         _PIN_FILE — it is the user PIN, not the security officer's"
    )]
    WrongPin { token: String },
    #[error(
        "the user PIN of token {token:?} is locked after too many failed logins; the security officer must reset it"
    )]
    PinLocked { token: String },
    #[error(
        "token {token:?} has no secret key labelled {label:?} (LINKVAULT_MASTER_KEY_PKCS11_KEY); create it with \
         `Pkcs11Holder::generate_key` or the token's tools (docs/architecture.md, External key holder)"
    )]
    NoSuchKey { token: String, label: String },
    #[error("{count} objects in token {token:?} are labelled {label:?}; the master key's label must be unique")]
    AmbiguousKey { token: String, label: String, count: usize },
    #[error("generate_key refused: token {token:?} already has an object labelled {label:?}; choose a new label")]
    KeyExists { token: String, label: String },
    #[error(
        "the object labelled {label:?} is not an AES-256 secret key ({found}); the master key must be CKK_AES with CKA_VALUE_LEN 32"
    )]
    NotAes256 { label: String, found: String },
    #[error(
        "the key labelled {label:?} is extractable (CKA_EXTRACTABLE true, or CKA_NEVER_EXTRACTABLE false): \
         its bytes could be exported from the token, which defeats holding it there. Create a new key with \
         CKA_EXTRACTABLE false and rotate the master key to it"
    )]
    Extractable { label: String },
    #[error(
        "the key labelled {label:?} is not sensitive (CKA_SENSITIVE false): the token would reveal its value. \
         Create a new key with CKA_SENSITIVE true and rotate the master key to it"
    )]
    NotSensitive { label: String },
    #[error("the key labelled {label:?} is a session object (CKA_TOKEN false) and would vanish with the session")]
    NotOnToken { label: String },
    #[error(
        "the key labelled {label:?} may not be used for {usage}; linkvault needs CKA_ENCRYPT, CKA_DECRYPT \
         (sealing the keyring) and CKA_SIGN (the AES-CMAC fingerprint)"
    )]
    Usage { label: String, usage: &'static str },
    #[error("token {token:?} does not offer {mechanism}, which the key holder needs")]
    MechanismMissing { token: String, mechanism: &'static str },
    #[error("PKCS#11 {operation} failed: {code}")]
    Pkcs11 { operation: &'static str, code: String },
}

impl HsmError {
    /// A failed library call, by operation and return code (`CKR_…` name in cryptoki's spelling).
    pub(crate) fn call(operation: &'static str, error: &CkError) -> Self {
        Self::Pkcs11 { operation, code: code(error) }
    }
}

pub(crate) fn code(error: &CkError) -> String {
    match error {
        CkError::Pkcs11(rv, function) => format!("{rv:?} from {}", function_name(*function)),
        other => other.to_string(),
    }
}

fn function_name(function: Function) -> String {
    format!("C_{function:?}")
}

/// The return codes after which the session (or its login) is gone and a fresh one may succeed: the token was
/// re-inserted, the HSM restarted, or something in the process logged the application out.
pub(crate) fn session_lost(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _
        )
    )
}
