//! One module per subcommand.

pub mod audit;
pub mod backup;
pub mod client;
pub mod config;
pub mod healthcheck;
pub mod keys;
pub mod serve;
pub mod webhook_egress;

use crate::GlobalOptions;
use crate::bootstrap;

/// `linkvault migrate`.
pub async fn migrate(global: &GlobalOptions) -> anyhow::Result<()> {
    let (_, description) = bootstrap::open_store(global).await?;
    println!("migrations applied ({description})");
    Ok(())
}
