//! Integrations: the catalog of exchanges linkvault can connect to (data, not code) and, per auth scheme,
//! the adapters that talk to them.

pub mod catalog;

pub use catalog::{AuthScheme, Catalog, Integration, TimingPolicy};
