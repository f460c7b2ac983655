//! `linkvault backup` and `linkvault restore`: the SQLite snapshot and restore are file operations below any
//! open store (`linkvault_storage::backup`, start-up wiring as for `config check`); the re-application of the
//! deletion ledger is the vault's (`linkvault_vault::deletion_ledger`). This module maps options and errors.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use linkvault_storage::backup::{FileReport, sqlite_restore, sqlite_snapshot};
use linkvault_vault::deletion_ledger::{LedgerSet, reapply};

use crate::GlobalOptions;
use crate::bootstrap::{self, deletion_ledger_path};

/// What to do on PostgreSQL instead, printed by `backup` (README "Backup and restore" has the same).
const POSTGRES_BACKUP: &str = "linkvault does not dump PostgreSQL itself; back it up with pg_dump, e.g.\n\n    \
     pg_dump --format=custom --file=linkvault.dump \"$LINKVAULT_DATABASE_URL\"\n\n(add --schema=NAME if \
     linkvault's tables live in a schema of their own). Keep every instance's deletion ledger apart from the \
     dump. To restore: pg_restore --clean --if-exists --no-owner --dbname=\"$LINKVAULT_DATABASE_URL\" \
     linkvault.dump, then `linkvault restore --ledger …` with every instance's ledger. See README \"Backup and \
     restore\".";

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The snapshot file to write (SQLite). An existing file is refused unless --force.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the file at --out if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// SQLite: the backup (from `linkvault backup`) that replaces the database. PostgreSQL: leave it out —
    /// restore the dump with pg_restore first, then run this to re-apply the ledger.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Replace an existing SQLite database (it must not be in use).
    #[arg(long)]
    force: bool,
    /// A deletion ledger to re-apply; repeat it for the ledgers of several instances. Default: this
    /// instance's (--deletion-ledger, or deletions.ledger in the data dir).
    #[arg(long = "ledger", value_name = "PATH")]
    ledgers: Vec<PathBuf>,
}

fn describe(report: FileReport) -> String {
    format!("{} bytes in {:.2} s", report.bytes, report.elapsed.as_secs_f64())
}

/// Runs SQLite file work off the async runtime; a panicked task is an error like any other.
async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> anyhow::Result<T>
where
    T: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    Ok(tokio::task::spawn_blocking(work).await.context("the backup/restore task failed")??)
}

/// `linkvault backup`.
pub async fn backup(global: &GlobalOptions, args: BackupArgs) -> anyhow::Result<()> {
    let (url, description) = bootstrap::database_url(global);
    let Some(db) = linkvault_storage::sqlite_path(&url).map(std::path::Path::to_owned) else {
        anyhow::bail!("{POSTGRES_BACKUP}");
    };
    let out = args.out.context("--out PATH is required: the file to write the snapshot to")?;
    let target = out.clone();
    let report = blocking(move || sqlite_snapshot(&db, &target, args.force))
        .await
        .with_context(|| format!("cannot back up the database ({description})"))?;
    println!("backup of {description} written to {} ({})", out.display(), describe(report));
    println!(
        "keep it apart from the master key and from the deletion ledger {} (a restore re-applies the ledger)",
        deletion_ledger_path(global).display()
    );
    Ok(())
}

/// `linkvault restore`.
pub async fn restore(global: &GlobalOptions, args: RestoreArgs) -> anyhow::Result<()> {
    let ledgers = if args.ledgers.is_empty() { vec![deletion_ledger_path(global)] } else { args.ledgers };
    for path in &ledgers {
        // A missing ledger is not "no deletions": serve creates it on start, so it was lost or is misnamed.
        anyhow::ensure!(
            path.is_file(),
            "no deletion ledger at {}: without it, deleted connections would come back. Point --ledger at every \
             instance's ledger; if linkvault never ran with a ledger, create an empty file there",
            path.display()
        );
    }
    // Every ledger is read and checked before the database is touched.
    let set = LedgerSet::read(&ledgers)?;
    let (url, description) = bootstrap::database_url(global);
    match (linkvault_storage::sqlite_path(&url).map(std::path::Path::to_owned), args.from) {
        (Some(db), Some(from)) => {
            crate::files::prepare_data_dir(&global.data_dir)?;
            let source = from.clone();
            let report = blocking(move || sqlite_restore(&source, &db, args.force))
                .await
                .with_context(|| format!("cannot restore {description}"))?;
            println!("restored {description} from {} ({})", from.display(), describe(report));
        }
        (None, Some(_)) => anyhow::bail!(
            "--from restores SQLite backups; on PostgreSQL restore the dump with pg_restore (README \"Backup and \
             restore\"), then run `linkvault restore` without --from to re-apply the deletion ledger"
        ),
        (_, None) => {}
    }
    let (store, _) = bootstrap::open_store(global).await?;
    let report = reapply(&store, &set).await?;
    for torn in &set.torn {
        println!("{}: ignored a torn last line (a write cut short by a crash, never acknowledged)", torn.display());
    }
    println!(
        "re-applied {} deletion(s); {} were already absent ({} distinct tokenIds from {} ledger line(s) in {} \
         ledger(s))",
        report.reapplied,
        report.already_absent,
        set.distinct(),
        set.entries,
        ledgers.len()
    );
    Ok(())
}
