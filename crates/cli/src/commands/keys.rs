//! `linkvault keys rotate`: a new key version becomes current and every data key is re-wrapped.
//! `linkvault keys rotate-master`: the keyring is sealed under a new master key (see `linkvault_vault`'s
//! `master_rotation`). With `--shred-deleted` it first retires every key version (`keys rotate`) and gives the
//! keyring new wrapping keys, so that once the old master key is destroyed no key anywhere opens a connection
//! deleted before the run, in any older copy of the database (backups, dumps, WAL, replicas, dead tuples).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use linkvault_crypto::MasterKeyHolder;
use linkvault_hsm::{HsmConfig, Pkcs11Holder};
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
    #[arg(long, value_name = "PATH", conflicts_with = "new_pkcs11_key")]
    new_key_file: Option<PathBuf>,
    /// The label of the new master key in the PKCS#11 token that holds the current one (the module, token and
    /// PIN come from the LINKVAULT_MASTER_KEY_PKCS11_* variables, as for every command).
    #[arg(long, value_name = "LABEL")]
    new_pkcs11_key: Option<String>,
    /// Key versions or webhook secrets moved per batch (progress is printed after each).
    #[arg(long, default_value_t = 100)]
    batch_size: u32,
    /// Milliseconds to wait after each batch (tests use it to stop a run midway).
    #[arg(long, default_value_t = 0, hide = true)]
    batch_pause_ms: u64,
    /// Also make every deleted connection unreadable in older copies of the database: retire every key version
    /// (as `keys rotate` does) and give the keyring new wrapping and sealing keys, then seal it under the new
    /// master key. Destroy the old master key afterwards; that is the moment the deletion deadline is met.
    #[arg(long)]
    shred_deleted: bool,
    /// With --shred-deleted: seconds to wait before retiring old key versions, so running servers pick up the
    /// new one first.
    #[arg(long, default_value_t = 10, requires = "shred_deleted")]
    settle_secs: u64,
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
    let new = new_holder(&args).await?;
    let new = new.as_ref();
    // A run killed just after its switch left nothing to do; the current key no longer opens the database.
    let (store, _) = open_store(global).await?;
    if linkvault_vault::master_rotation_done(&store, new).await? {
        println!(
            "master key rotation already finished: the keyring is sealed under the key with fingerprint {}; \
             restart every instance with the new key",
            new.fingerprint()?
        );
        return Ok(());
    }
    drop(store);
    let (vault, _) = open_vault(global).await?;
    let new_fingerprint = new.fingerprint()?;
    // A resumed shredding run already retired the key versions: the master rotation is recorded only after.
    if args.shred_deleted && vault.pending_master_rotation() != Some(new_fingerprint.as_str()) {
        let report = rotate_versions(&vault, 500, args.settle_secs).await?;
        if !report.kept_versions.is_empty() {
            anyhow::bail!(
                "key version(s) {} are still used by rows written while the rotation ran, so deleted connections                  could still be opened through them; run this command again",
                join(&report.kept_versions)
            );
        }
        println!(
            "key versions: version {} is current, retired versions: {}",
            report.target_version,
            join(&report.retired_versions)
        );
    }
    let pause = Duration::from_millis(args.batch_pause_ms);
    let progress = |p: linkvault_vault::MasterRotationProgress| {
        println!("rotating the master key: {}: {} moved, {} remaining", p.stage, p.done, p.remaining);
        if !pause.is_zero() {
            // Test-only pause (hidden flag); blocking this thread is harmless in a one-shot command.
            std::thread::sleep(pause);
        }
    };
    let report = if args.shred_deleted {
        vault.rotate_master_rekeying(new, args.batch_size, progress).await?
    } else {
        vault.rotate_master(new, args.batch_size, progress).await?
    };
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
    if args.shred_deleted {
        println!(
            "deleted connections: once the old master key is destroyed (every copy of it), no backup, dump, WAL \
             segment or replica taken before this run can open a connection deleted before it"
        );
    }
    Ok(())
}

/// The new master key: another key in the configured PKCS#11 token, or a key in memory from a file or
/// LINKVAULT_NEW_MASTER_KEY.
async fn new_holder(args: &RotateMasterArgs) -> anyhow::Result<Box<dyn MasterKeyHolder>> {
    if let Some(label) = &args.new_pkcs11_key {
        let Some(config) = HsmConfig::from_env()? else {
            anyhow::bail!(
                "--new-pkcs11-key names a key in the PKCS#11 token, but no token is configured: set the \
                 LINKVAULT_MASTER_KEY_PKCS11_* variables (module, token, PIN) of the token that holds both keys"
            );
        };
        let config = config.with_key_label(label)?;
        let holder = tokio::task::spawn_blocking(move || Pkcs11Holder::connect(&config)).await??;
        return Ok(Box::new(holder));
    }
    let env_value = std::env::var(NEW_MASTER_KEY_ENV).ok();
    Ok(Box::new(master_key::load_new(args.new_key_file.as_deref(), env_value.as_deref())?))
}

fn join(versions: &[u32]) -> String {
    versions.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// `keys rotate`'s work, with its progress lines.
async fn rotate_versions(
    vault: &linkvault_vault::Vault,
    batch_size: u32,
    settle_secs: u64,
) -> anyhow::Result<linkvault_vault::RotationReport> {
    Ok(vault
        .rotate_keys(batch_size, Duration::from_secs(settle_secs), |p| {
            println!(
                "rotating to key version {}: {} re-wrapped, {} remaining",
                p.target_version, p.rewrapped, p.remaining
            );
        })
        .await?)
}

async fn rotate(global: &GlobalOptions, args: RotateArgs) -> anyhow::Result<()> {
    let (vault, _) = open_vault(global).await?;
    let report = rotate_versions(&vault, args.batch_size, args.settle_secs).await?;
    let retired = if report.retired_versions.is_empty() { "none".to_owned() } else { join(&report.retired_versions) };
    println!(
        "key rotation {}: version {} is current, {} data keys re-wrapped, retired versions: {retired}",
        if report.resumed { "resumed and finished" } else { "finished" },
        report.target_version,
        report.rewrapped
    );
    Ok(())
}
