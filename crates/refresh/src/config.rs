//! Tuning of the refresh engine. Defaults suit one instance with thousands of connections; tests shorten the
//! intervals.

use std::time::Duration;

/// How the engine schedules, limits and waits.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This instance's name in `lease_owner`. Must differ between instances (and between runs, so that a
    /// restarted instance does not mistake its predecessor's leases for its own).
    pub owner: String,
    /// Rows claimed per scheduler pass at most.
    pub batch_size: u32,
    /// Refreshes in progress at once across all integrations (claims never exceed the free slots, so claimed
    /// rows do not sit waiting while their leases run down).
    pub max_in_flight: usize,
    /// Refresh grants in progress at once per integration.
    pub per_integration_concurrency: usize,
    /// Refresh grants started per second per integration (GCRA rate limit), and the burst allowed.
    pub per_integration_rate_per_sec: f64,
    pub per_integration_burst: u32,
    /// Lease length. Raised to at least twice the HTTP worst case, so a claimed row can still send its grant
    /// after waiting for the rate limit.
    pub lease: Duration,
    /// Sleep between scheduler passes when nothing was due.
    pub idle_poll: Duration,
    /// How often expired leases are looked for.
    pub recovery_interval: Duration,
    /// How often the due backlog and the webhook backlog gauges are refreshed.
    pub gauge_interval: Duration,
    /// On demand, while another instance holds a connection's lease: re-read the row this often…
    pub on_demand_poll: Duration,
    /// …for at most this long in all (raised to at least the lease, so a dead holder's lease can expire).
    pub on_demand_timeout: Duration,
    /// Time the lease must still run after the HTTP worst case when a grant is sent, for the write-back
    /// (sealing, waiting for a pooled database connection, the commit). Compare with the measured
    /// `linkvault_refresh_write_back_max_seconds`; the lease is raised to twice worst case plus this.
    pub write_back_allowance: Duration,
    /// Expired leases recovered at once (recovery runs beside the scheduler loop, never inside it).
    pub recovery_concurrency: usize,
    /// A refresh token whose grant got no answer is presented again only if the new request reaches the
    /// integration at least this long before its reuse grace ends: covers request transit and clock skew
    /// between instances and the database.
    pub grace_margin: Duration,
}

impl EngineConfig {
    /// Defaults with a fresh random owner name.
    pub fn new() -> Self {
        Self {
            owner: format!("linkvault-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            batch_size: 100,
            max_in_flight: 64,
            per_integration_concurrency: 16,
            per_integration_rate_per_sec: 20.0,
            per_integration_burst: 40,
            lease: Duration::from_secs(45),
            idle_poll: Duration::from_millis(500),
            recovery_interval: Duration::from_secs(5),
            gauge_interval: Duration::from_secs(5),
            on_demand_poll: Duration::from_millis(25),
            on_demand_timeout: Duration::from_secs(50),
            write_back_allowance: Duration::from_secs(5),
            recovery_concurrency: 8,
            grace_margin: Duration::from_secs(5),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self::new()
    }
}
