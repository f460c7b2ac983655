//! The master key held in an HSM or any PKCS#11 token (tested against SoftHSM2): [`Pkcs11Holder`] implements
//! [`linkvault_crypto::MasterKeyHolder`] with an AES-256 key that never leaves the token, and [`HsmConfig`]
//! says which module, token, key and PIN to use (`LINKVAULT_MASTER_KEY_PKCS11_*`).
//!
//! The PKCS#11 calls go through the `cryptoki` crate; this crate adds only the choice of mechanisms, the
//! sealed layout and the checks that the key really is held safely.

pub mod config;
pub mod error;
pub mod holder;

pub use config::{ConfigError, HsmConfig};
pub use error::HsmError;
pub use holder::Pkcs11Holder;
