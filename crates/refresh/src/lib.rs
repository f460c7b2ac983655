//! The token lifecycle engine of linkvault: a scheduler that refreshes connections before their access tokens
//! expire, on-demand refresh for requests that arrive first, recovery of leases left by dead workers, and the
//! metrics that show it is keeping up.
//!
//! Correctness rests on the row (engineering notes, "Refresh correctness"): each connection carries its own
//! lease (owner + `lease_until`, on the database clock for PostgreSQL) and a fencing version. The grant is sent
//! only while the lease outlives the HTTP worst case, and the write-back is a compare-and-set on version and
//! owner. A lost compare-and-set is counted and logged as an error, never answered by sending the grant again,
//! because with rotating refresh tokens a second presentation looks like theft and ends the user's grant.

mod config;
mod engine;
mod limiter;
mod metrics;

pub use config::EngineConfig;
pub use engine::{GrantSender, REASON_OUTCOME_UNKNOWN, RefreshEngine, RefreshError, RefreshOutcome, Trigger};
pub use metrics::EngineMetrics;
