//! `linkvault keys rotate`: a new key version becomes current and every data key is re-wrapped.
//! `linkvault keys rotate-master`: the keyring is sealed under a new master key (see `linkvault_vault`'s
//! `master_rotation`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use linkvault_vault::master_key::{self, NEW_MASTER_KEY_ENV};

use crate::GlobalOptions;
use crate::bootstrap::{open_store, open_vault};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new key version current and re-wrap every data key under it (resumes an interrupted run).
    Rotate(RotateArgs),
    /// Seal the keyring under a new master key, so the current one can be destroyed (resumes an interrupted
    /// run). The current key comes from the usual configuration; restart every instance with the new key after.
    RotateMaster(RotateMasterArgs),
}

#[derive(Debug, Args)]
pub struct RotateMasterArgs {
    /// A file holding the new master key (base64 of 32 random bytes); default: LINKVAULT_NEW_MASTER_KEY.
    #[arg(long, value_name = "PATH")]
    new_key_file: Option<PathBuf>,
    /// Key versions or webhook secrets moved per batch (progress is printed after each).
    #[arg(long, default_value_t = 100)]
    batch_size: u32,
    /// Milliseconds to wait after each batch (tests use it to stop a run midway).
    #[arg(long, default_value_t = 0, hide = true)]
    batch_pause_ms: u64,
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
    match cmd {
        KeysCommand::Rotate(args) => rotate(global, args).await,
        KeysCommand::RotateMaster(args) => rotate_master(global, args).await,
    }
}

async fn rotate_master(global: &GlobalOptions, args: RotateMasterArgs) -> anyhow::Result<()> {
    let env_value = std::env::var(NEW_MASTER_KEY_ENV).ok();
    let new = master_key::load_new(args.new_key_file.as_deref(), env_value.as_deref())?;
    // A run killed just after its switch left nothing to do; the current key no longer opens the database.
    let (store, _) = open_store(global).await?;
    if linkvault_vault::master_rotation_done(&store, &new).await? {
        println!(
            "master key rotation already finished: the keyring is sealed under the key with fingerprint {}; \
             restart every instance with the new key",
            new.fingerprint()
        );
        return Ok(());
    }
    drop(store);
    let (vault, _) = open_vault(global).await?;
    let pause = Duration::from_millis(args.batch_pause_ms);
    let report = vault
        .rotate_master(&new, args.batch_size, |p| {
            println!("rotating the master key: {}: {} moved, {} remaining", p.stage, p.done, p.remaining);
            if !pause.is_zero() {
                // Test-only pause (hidden flag); blocking this thread is harmless in a one-shot command.
                std::thread::sleep(pause);
            }
        })
        .await?;
    println!(
        "master key rotation {}: the keyring ({}) is sealed under the key with fingerprint {}; {} key versions \
         re-wrapped, {} webhook secrets re-sealed. The old master key opens nothing now: restart every running \
         instance with the new key, then destroy the old one",
        if report.resumed { "resumed and finished" } else { "finished" },
        if report.rekeyed { "given new random wrapping and sealing keys" } else { "unchanged" },
        report.fingerprint,
        report.rewrapped_key_versions,
        report.resealed_secrets
    );
    Ok(())
}

async fn rotate(global: &GlobalOptions, args: RotateArgs) -> anyhow::Result<()> {
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
