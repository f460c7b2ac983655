//! Cryptography of linkvault: the key hierarchy (master key → keyring → key versions → per-connection data
//! keys → ciphertexts), API-key secrets with their keyed digests, and the audit log's chain.
//!
//! All primitives come from `ring` (AES-256-GCM, HMAC-SHA256, the OS RNG); this crate only arranges them.
//! Every ciphertext starts with a versioned header naming the key that sealed it, and the header plus the
//! owning row's identity are bound as associated data, so a ciphertext copied into another row fails to open.

pub mod api_key;
pub mod audit;
pub mod client_token;
pub mod envelope;
pub mod holder;
pub mod keyring;
pub mod link_secret;
pub mod master;

pub use api_key::{ApiKeyDigester, ApiKeySecret, SECRET_PREFIX_LEN};
pub use audit::{AUDIT_GENESIS, AuditChain};
pub use client_token::{ClientToken, ClientTokenDigester, ClientTokenKind};
pub use envelope::{CryptoError, DataKey, KeyVersion, RowBinding};
pub use holder::MasterKeyHolder;
pub use keyring::{KEYRING_CONTEXT, Keyring, KeyringOrigin};
pub use link_secret::{LinkSecret, link_digest};
pub use master::{MasterKey, MasterKeyError};
