//! The vault: application services over the domain rules, the key hierarchy and the store. Everything that
//! reads or writes a connection's secrets goes through [`Vault`], so encryption, row binding, identity and
//! isolation are applied the same way on every path (HTTP API, CLI, refresh engine).

pub mod audit;
pub mod check;
mod client_tokens;
mod connection_use;
mod credentials;
pub mod deletion_ledger;
mod error;
pub mod events;
mod key_cache;
pub mod key_schedule;
pub mod link;
pub mod master_key;
pub mod master_keyring;
mod master_rotation;
mod ops;
pub mod refresh;
mod rotation;
mod service;
mod transfer_follow;
mod transfers;
mod version_cache;
pub mod webhook_policy;
mod webhooks;

pub use audit::{AuditNote, AuditSince, AuditTamper, AuditVerdict};
pub use client_tokens::{ClientTokenPolicy, ClientTokenRefusal, ClientTokens};
pub use connection_use::{
    Authorized, FreshFuture, Freshener, Staleness, Usable, UseRefusal, UseRequest, known_integration, requested_user,
};
pub use credentials::IntegrationCredentials;
pub use error::VaultError;
pub use events::connection_event;
pub use key_cache::KEY_CACHE_TTL;
pub use key_schedule::{KeySchedule, KeyScheduleStep};
pub use link::{LinkClaim, LinkOAuthBound, LinkOAuthStart, LinkSessionStart, LinkTokenSpec, link_binding_matches};
pub use master_rotation::{MasterRotationProgress, MasterRotationReport, master_rotation_done};
pub use refresh::Refreshed;
pub use rotation::{RotationProgress, RotationReport};
pub use service::{Caller, ConnectionMeta, ConnectionView, CreatedClient, StoredConnection, Vault};
pub use transfers::{ExecutionRequest, ExecutionStep, ExecutionTicket};
pub use webhook_policy::WebhookPolicy;
pub use webhooks::WebhookTarget;
