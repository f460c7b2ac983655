//! Webhooks to client apps, per the Standard Webhooks specification (standardwebhooks.com): secrets,
//! signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature` over `id.timestamp.body`), the
//! retry schedule (about three days), and one delivery attempt over HTTP. What to deliver and when comes from
//! the transactional outbox in storage. A client may choose Mesh's transfer webhooks instead ([`mesh`]).

pub mod delivery;
pub mod mesh;
pub mod schedule;
pub mod signing;
pub mod worker;

pub use delivery::{Attempt, Deliverer, DeliveryRequest, GuardedResolver, Lookup, SystemLookup};
pub use schedule::{MAX_ATTEMPTS, next_attempt_delay};
pub use signing::{SecretError, WebhookSecret, sign, verify};
pub use worker::{DEFAULT_RETENTION, DeliveryWorker, WorkerConfig, WorkerMetrics, run_passes};
