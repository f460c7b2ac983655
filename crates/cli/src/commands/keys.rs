//! `linkvault keys rotate`: a new master-key version becomes current and every data key is re-wrapped.

use std::time::Duration;

use clap::{Args, Subcommand};

use crate::GlobalOptions;
use crate::bootstrap::open_vault;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new key version current and re-wrap every data key under it (resumes an interrupted run).
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Rows re-wrapped per batch (progress is printed after each).
    #[arg(long, default_value_t = 500)]
    batch_size: u32,
    /// Seconds to wait before retiring old versions, so running servers pick up the new one first.
    #[arg(long, default_value_t = 10)]
    settle_secs: u64,
}

pub async fn run(global: &GlobalOptions, cmd: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Rotate(args) = cmd;
    let (vault, _) = open_vault(global).await?;
    let report = vault
        .rotate_keys(args.batch_size, Duration::from_secs(args.settle_secs), |p| {
            println!(
                "rotating to key version {}: {} re-wrapped, {} remaining",
                p.target_version, p.rewrapped, p.remaining
            );
        })
        .await?;
    let retired = if report.retired_versions.is_empty() {
        "none".to_owned()
    } else {
        report.retired_versions.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    };
    println!(
        "key rotation {}: version {} is current, {} data keys re-wrapped, retired versions: {retired}",
        if report.resumed { "resumed and finished" } else { "finished" },
        report.target_version,
        report.rewrapped
    );
    Ok(())
}
