//! Domain rules of linkvault: connection identity, scopes, isolation, the connection lifecycle, the
//! refresh schedule and the audit log's vocabulary.
//!
//! Nothing in this crate performs I/O. Storage, crypto and HTTP layers call into these rules so that the
//! behaviour the managed-tokens lifecycle table promises is decided in exactly one place.

pub mod access;
pub mod audit;
pub mod client_tokens;
pub mod clock;
pub mod identity;
pub mod lifecycle;
pub mod link_origin;
pub mod schedule;

pub use access::{AccessDenied, Operation, authorize_token_use};
pub use audit::{AuditAction, AuditActor};
pub use client_tokens::{
    AccessMatch, FamilyState, RefreshDecision, RefreshMatch, RevokedReason, TokenRefusal, decide_access, decide_refresh,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use identity::{
    ClientId, IdentityDecision, IntegrationType, NaturalKey, Scope, TokenId, TokenMode, UserId, ValidationError,
    decide_identity,
};
pub use lifecycle::{ConnectionEvent, ConnectionStatus, LifecycleEvent, TransitionError};
pub use link_origin::LinkOrigin;
