//! The `linkvault` command line: global options, the subcommands, and process-level concerns (logging,
//! exit codes, signals). All real work is delegated to the library crates.

mod bootstrap;
mod commands;
mod files;
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "linkvault",
    version,
    about = "Keeps end-user connections to exchanges alive: encrypted, refreshed, isolated"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(subcommand)]
    command: Command,
}

/// Options every command understands, each also read from the environment.
#[derive(Debug, Clone, Args)]
pub struct GlobalOptions {
    /// Where the embedded database, the generated master key and other local state live.
    #[arg(long, global = true, env = "LINKVAULT_DATA_DIR", default_value = "./linkvault-data")]
    pub data_dir: PathBuf,
    /// Database to use: defaults to the SQLite file in the data dir; `postgres://…` selects PostgreSQL.
    #[arg(long, global = true, env = "LINKVAULT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The deletion ledger: an append-only file recording every permanently deleted connection (tokenId,
    /// client, time; no secret), written before each deletion commits and re-applied by `restore`. Keep it
    /// outside the database and its backups. Default: `deletions.ledger` in the data dir.
    #[arg(long, global = true, env = "LINKVAULT_DELETION_LEDGER")]
    pub deletion_ledger: Option<PathBuf>,
    /// Shape of the logs on stderr: `text` (coloured only on a terminal) or `json` (one object per line, for
    /// log shippers).
    #[arg(long, global = true, env = "LINKVAULT_LOG_FORMAT", value_enum, default_value_t = logging::LogFormat::Text)]
    pub log_format: logging::LogFormat,
    /// Refuse a sensitive action (client and key changes, connections, transfers, key rotation, Link sign-ins)
    /// when its audit record cannot be written first, instead of logging the failure and going ahead.
    #[arg(long, global = true, env = "LINKVAULT_AUDIT_FAIL_CLOSED")]
    pub audit_fail_closed: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve(commands::serve::ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API clients and their keys.
    #[command(subcommand)]
    Client(commands::client::ClientCommand),
    /// Manage encryption keys.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// Verify or export the tamper-evident audit log.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Check the configuration `serve` would run with, without starting it or changing anything.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Write a consistent snapshot of the SQLite database (on PostgreSQL: prints the pg_dump command to use).
    Backup(commands::backup::BackupArgs),
    /// Restore a SQLite backup, then re-apply every deletion in the deletion ledger(s) so that no deleted
    /// connection comes back (PostgreSQL: after pg_restore, re-applies the ledger(s)).
    Restore(commands::backup::RestoreArgs),
    /// Exit 0 when a running server answers healthy.
    Healthcheck(commands::healthcheck::HealthcheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            logging::operator(logging::Level::Error, &format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => commands::serve::run(&cli.global, args).await,
            Command::Migrate => commands::migrate(&cli.global).await,
            Command::Client(cmd) => commands::client::run(&cli.global, cmd).await,
            Command::Keys(cmd) => commands::keys::run(&cli.global, cmd).await,
            Command::Audit(cmd) => commands::audit::run(&cli.global, cmd).await,
            Command::Config(cmd) => commands::config::run(&cli.global, cmd).await,
            Command::Backup(args) => commands::backup::backup(&cli.global, args).await,
            Command::Restore(args) => commands::backup::restore(&cli.global, args).await,
            Command::Healthcheck(args) => commands::healthcheck::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::operator(logging::Level::Error, &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
