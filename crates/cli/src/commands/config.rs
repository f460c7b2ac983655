//! `linkvault config check`: everything `serve` would check at start — options, catalog, sandbox lifetimes,
//! master key, database and migrations — and what it would then run, without starting it and without
//! changing anything: no directory or key file created, no migration run, nothing written to the database.
//! It takes exactly `serve`'s options (the same clap struct), so it checks what `serve` would be given.
//!
//! Every problem is reported (not just the first), each saying what is wrong and how to fix it; any problem
//! makes the exit status non-zero.

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use linkvault_crypto::MasterKeyHolder as _;
use linkvault_storage::inspect::{DatabaseState, Inspection};
use linkvault_vault::check::{self, KeyMismatch, KeyringOrigin, KeyringState};
use linkvault_vault::master_key::{self, GENERATED_KEY_FILE, MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, MasterKeySource};

use crate::GlobalOptions;
use crate::bootstrap;
use crate::commands::serve::ServeArgs;
use crate::logging::{self, Level};

/// How long the check waits for a PostgreSQL server (connecting and reading together).
const DATABASE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check what `serve` would run with (same options), without starting it or changing anything.
    Check(ServeArgs),
}

/// What the check found: report lines for stdout, problems for stderr.
#[derive(Debug, Default)]
struct Report {
    lines: Vec<(&'static str, String)>,
    problems: Vec<String>,
}

impl Report {
    fn line(&mut self, topic: &'static str, text: impl Into<String>) {
        self.lines.push((topic, text.into()));
    }

    fn problem(&mut self, topic: &'static str, what: impl std::fmt::Display, fix: &str) {
        self.lines.push((topic, "PROBLEM (see below)".to_owned()));
        self.problems.push(format!("{topic}: {what}. Fix: {fix}"));
    }
}

pub async fn run(global: &GlobalOptions, command: ConfigCommand) -> anyhow::Result<()> {
    let ConfigCommand::Check(args) = command;
    let mut report = Report::default();
    check_data_dir(&global.data_dir, &mut report);
    check_catalog(&args, &mut report);
    let database = check_database(global, &mut report).await;
    check_master_key(global, database.as_ref(), &mut report);
    report.line("audit", audit_mode(global.audit_fail_closed));
    report.lines.extend(args.plan());

    let width = report.lines.iter().map(|(topic, _)| topic.len()).max().unwrap_or(0);
    for (topic, text) in &report.lines {
        println!("{topic:<width$}  {text}");
    }
    if report.problems.is_empty() {
        println!("ok: `linkvault serve` would start with this configuration");
        return Ok(());
    }
    for problem in &report.problems {
        logging::operator(Level::Error, problem);
    }
    anyhow::bail!("the configuration check found {} problem(s); serve would not start", report.problems.len())
}

fn audit_mode(fail_closed: bool) -> &'static str {
    if fail_closed {
        "fail-closed: a sensitive action is refused (HTTP 503, CLI error) when its audit record cannot be written \
         first (refreshes excepted)"
    } else {
        "records follow each sensitive action; one that cannot be written is logged and counted \
         (linkvault_audit_append_failures_total); --audit-fail-closed refuses the action instead"
    }
}

fn check_data_dir(dir: &Path, report: &mut Report) {
    match std::fs::metadata(dir) {
        Err(_) => {
            report.line("data dir", format!("{} does not exist yet; serve creates it (mode 0700)", dir.display()))
        }
        Ok(meta) if !meta.is_dir() => report.problem(
            "data dir",
            format!("{} is not a directory", dir.display()),
            "point --data-dir / LINKVAULT_DATA_DIR at a directory (or a path where one can be created)",
        ),
        Ok(meta) => {
            let mut text = dir.display().to_string();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    text.push_str(&format!(" (mode {mode:o}: serve restricts it to 0700)"));
                }
            }
            #[cfg(not(unix))]
            let _ = meta;
            report.line("data dir", text);
        }
    }
}

fn check_catalog(args: &ServeArgs, report: &mut Report) {
    let mut catalog = match args.load_catalog() {
        Ok(catalog) => catalog,
        Err(e) => {
            return report.problem(
                "catalog",
                format!("{e:#}"),
                "correct the named entry and field in the --catalog file (README, \"Integrations and the sandbox\")",
            );
        }
    };
    let source = match args.catalog_file() {
        Some(path) => format!("embedded entries with {} applied", path.display()),
        None => "embedded entries".to_owned(),
    };
    if args.sandbox() {
        let base = format!("{}/sandbox", args.planned_public_url());
        if let Err(e) = catalog.point_at_sandbox(&base) {
            report.problem("catalog", e, "correct the catalog entry named above");
        }
        if let Err(e) = linkvault_sandbox::SandboxConfig::from_env(base) {
            report.problem("sandbox", e, "set the variable to a whole number of seconds, or unset it");
        }
    }
    let entries: Vec<_> = catalog.iter().collect();
    report.line("catalog", format!("{} integrations ({source})", entries.len()));
    for integration in entries {
        let state = match integration.missing_configuration() {
            None => "ready".to_owned(),
            Some(why) => format!("not usable yet: {why}"),
        };
        report.line("", format!("{} ({}): {state}", integration.integration_type.as_str(), integration.auth.as_str()));
    }
}

async fn check_database(global: &GlobalOptions, report: &mut Report) -> Option<Inspection> {
    let (url, description) = bootstrap::database_url(global);
    let description = safe_description(&url, &description);
    let inspection = match check::inspect_database(&url, DATABASE_TIMEOUT).await {
        Ok(inspection) => inspection,
        Err(e) => {
            report.problem(
                "database",
                format!("cannot read {description}: {e}"),
                "check --database-url / LINKVAULT_DATABASE_URL (host, port, user, database), that the server is \
                 running and accepts connections from this host",
            );
            return None;
        }
    };
    match &inspection {
        Inspection::Missing => report.line(
            "database",
            format!("{description} does not exist yet; serve creates it and applies every migration"),
        ),
        Inspection::Present(state) if state.applied_migrations > state.known_migrations => report.problem(
            "database",
            format!(
                "{description} is at schema version {}, newer than this linkvault knows ({})",
                state.applied_migrations, state.known_migrations
            ),
            "run the linkvault version that migrated it (or a newer one); never start an older binary on it",
        ),
        Inspection::Present(state) if state.applied_migrations < state.known_migrations => report.line(
            "database",
            format!(
                "{description}: {} of {} migrations applied; {} pending, which serve applies at start \
                 (or run `linkvault migrate` first)",
                state.applied_migrations,
                state.known_migrations,
                state.known_migrations - state.applied_migrations
            ),
        ),
        Inspection::Present(state) => report.line(
            "database",
            format!("{description}: reachable, schema up to date ({} migrations)", state.known_migrations),
        ),
    }
    Some(inspection)
}

/// The database named without a password (the description `bootstrap` gives PostgreSQL is only its name).
fn safe_description(url: &str, description: &str) -> String {
    if !linkvault_storage::is_postgres_url(url) {
        return description.to_owned();
    }
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!(
            "PostgreSQL at {}:{}{}",
            parsed.host_str().unwrap_or("localhost"),
            parsed.port().unwrap_or(5432),
            parsed.path()
        ),
        Err(_) => description.to_owned(),
    }
}

/// The master key in a PKCS#11 token: connected as `serve` would (module, token, PIN, the key's attributes),
/// and its fingerprint compared with the database's.
fn check_pkcs11_key(config: &linkvault_hsm::HsmConfig, state: Option<&DatabaseState>, report: &mut Report) {
    if crate::bootstrap::key_in_memory_configured() {
        return report.problem(
            "master key",
            "both the PKCS#11 key holder and LINKVAULT_MASTER_KEY or LINKVAULT_MASTER_KEY_FILE are set",
            "set only one of them",
        );
    }
    let origin = format!("key {:?} in the PKCS#11 token {:?}", config.key_label(), config.token_label());
    let fingerprint = linkvault_hsm::Pkcs11Holder::connect(config)
        .map_err(|e| e.to_string())
        .and_then(|holder| holder.fingerprint().map_err(|e| e.to_string()));
    let fingerprint = match fingerprint {
        Ok(fingerprint) => fingerprint,
        Err(e) => {
            return report.problem(
                "master key",
                format!("the {origin} cannot be used: {e}"),
                "check the module path, the token label, the PIN and the key (docs/architecture.md, \
                 \"External key holder\")",
            );
        }
    };
    match state.and_then(check::expected_fingerprint) {
        Some(expected) if expected != fingerprint => report.problem(
            "master key",
            format!("the {origin} has fingerprint {fingerprint}, but the database was written under {expected}"),
            "configure the key the database was written under",
        ),
        Some(_) => report.line("master key", format!("fingerprint {fingerprint} ({origin}): matches the database")),
        None => report.line("master key", format!("fingerprint {fingerprint} ({origin}): recorded at first start")),
    }
}

fn check_master_key(global: &GlobalOptions, database: Option<&Inspection>, report: &mut Report) {
    let state: Option<&DatabaseState> = match database {
        Some(Inspection::Present(state)) => Some(state),
        _ => None,
    };
    match linkvault_hsm::HsmConfig::from_env() {
        Err(e) => {
            return report.problem(
                "master key",
                e,
                "set all of LINKVAULT_MASTER_KEY_PKCS11_MODULE, _TOKEN, _KEY and _PIN (or _PIN_FILE), or none of them",
            );
        }
        Ok(Some(config)) => return check_pkcs11_key(&config, state, report),
        Ok(None) => {}
    }
    let env_value = std::env::var(MASTER_KEY_ENV).ok();
    let env_file = std::env::var_os(MASTER_KEY_FILE_ENV).map(std::path::PathBuf::from);
    let found = match master_key::find(env_value.as_deref(), env_file.as_deref(), &global.data_dir) {
        Ok(found) => found,
        Err(e) => {
            return report.problem(
                "master key",
                e,
                "set LINKVAULT_MASTER_KEY to the base64 of exactly 32 random bytes (`head -c 32 /dev/urandom | \
                 base64` for a new one), or LINKVAULT_MASTER_KEY_FILE to a readable file holding it",
            );
        }
    };
    let Some((key, source)) = found else {
        let generated = global.data_dir.join(GENERATED_KEY_FILE);
        match state.and_then(check::expected_fingerprint) {
            Some(expected) => report.problem(
                "master key",
                format!("none is configured, but the database was written under the key with fingerprint {expected}"),
                "set LINKVAULT_MASTER_KEY or LINKVAULT_MASTER_KEY_FILE to that key (serve would generate a new one \
                 and refuse to open the database)",
            ),
            None => report.line(
                "master key",
                format!("none configured; serve generates one into {} on first start", generated.display()),
            ),
        }
        return;
    };
    let origin = match &source {
        MasterKeySource::Environment => MASTER_KEY_ENV.to_owned(),
        MasterKeySource::File(path) | MasterKeySource::DataDir(path) | MasterKeySource::Generated(path) => {
            path.display().to_string()
        }
    };
    let Some(state) = state else {
        // No database to check it against (missing, or unreadable: reported above).
        report.line("master key", format!("fingerprint {} (from {origin})", key.fingerprint()));
        return;
    };
    match check::check_master_key(&key, state) {
        Ok(fits) => {
            let versions = if fits.versions.is_empty() {
                "no key versions yet (serve creates version 1)".to_owned()
            } else {
                let list: Vec<String> = fits.versions.iter().map(u32::to_string).collect();
                let current = fits.current.map(|c| format!(", current {c}")).unwrap_or_default();
                format!("opens key versions {}{current}", list.join(", "))
            };
            let recorded = if fits.fingerprint_recorded { "matches the database" } else { "recorded at first start" };
            report.line(
                "master key",
                format!("fingerprint {} (from {origin}): {recorded}; {versions}", key.fingerprint()),
            );
            let keyring = match fits.keyring {
                KeyringState::Fresh => "none yet; serve draws random keys and seals them under the master key".to_owned(),
                KeyringState::ToBeDerived => "none yet (database from before the keyring); serve records the keyring \
                                              derived from the master key, `keys rotate-master` replaces it"
                    .to_owned(),
                KeyringState::Stored(KeyringOrigin::Derived) => "derived from the master key (database from before the \
                                                                 keyring); `keys rotate-master` replaces it by random keys"
                    .to_owned(),
                KeyringState::Stored(KeyringOrigin::Random) => "random keys, sealed under the master key".to_owned(),
            };
            report.line("keyring", keyring);
            if let Some(target) = fits.pending_rotation {
                report.line(
                    "keyring",
                    format!(
                        "a master-key rotation to the key with fingerprint {target} is unfinished; finish it with \
                         `linkvault keys rotate-master --new-key-file <the new key>` while this key is still \
                         configured, then restart every instance with the new key"
                    ),
                );
            }
        }
        Err(e @ KeyMismatch::RotationUnfinished { .. }) => report.problem(
            "master key",
            e,
            "finish the rotation: configure the current key (LINKVAULT_MASTER_KEY / LINKVAULT_MASTER_KEY_FILE) and \
             run `linkvault keys rotate-master --new-key-file <this key>`, then start with this key",
        ),
        Err(e @ KeyMismatch::Keyring { .. }) => report.problem(
            "master key",
            e,
            "the fingerprint matches but the keyring does not open: the meta table was altered or restored from \
             another database; restore it from the backup that belongs to this key",
        ),
        Err(e @ KeyMismatch::Fingerprint { .. }) => report.problem(
            "master key",
            e,
            "start with the original LINKVAULT_MASTER_KEY / LINKVAULT_MASTER_KEY_FILE, or point --data-dir / \
             --database-url at the database this key belongs to",
        ),
        Err(e @ KeyMismatch::KeyVersion { .. }) => report.problem(
            "master key",
            e,
            "the key's fingerprint matches but a key version does not open: the key_versions table was altered or \
             restored from another database; restore it from the backup that belongs to this key",
        ),
    }
}
