//! Private local state: the data dir is created 0700 and the files linkvault keeps in it (SQLite database and
//! its -wal/-shm, generated master key, sandbox client file, deletion ledger) 0600. They hold userIds, account names and secrets,
//! so the mode is set when each is created, never chmod-ed after a window where others could read it; a data
//! dir or file found too open (from an older version, or made by hand) is tightened with a warning.

use std::path::Path;

use anyhow::Context as _;

/// Files in the data dir whose mode is checked on every start (the database's are handled by path).
const KEPT_FILES: [&str; 3] = [
    linkvault_vault::master_key::GENERATED_KEY_FILE,
    "sandbox-client.json",
    linkvault_vault::deletion_ledger::DEFAULT_LEDGER_FILE,
];

/// Creates the data dir owner-only, or tightens an existing one (and the files linkvault keeps in it).
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    let cannot = || format!("cannot create the data dir {}", dir.display());
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(dir).with_context(cannot)?;
    }
    tighten(dir, 0o700)?;
    for name in KEPT_FILES {
        let path = dir.join(name);
        if path.exists() {
            tighten(&path, 0o600)?;
        }
    }
    Ok(())
}

/// Makes sure the SQLite database file exists with mode 0600 before SQLite opens it: SQLite would create it
/// 0644 (less the umask), and gives the -wal and -shm files the database file's mode.
pub fn prepare_database_file(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        prepare_data_dir(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    // create_new: an existing database is never truncated; an empty new file is a new SQLite database.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create the database file {}", path.display())),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        if file.exists() {
            tighten(file, 0o600)?;
        }
    }
    Ok(())
}

/// Removes group and other permissions from `path` if it has any, saying so.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let current = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bits = current.permissions().mode() & 0o777;
    if bits & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).with_context(|| {
        format!("{} is readable by others (mode {bits:o}) and cannot be restricted", path.display())
    })?;
    crate::logging::operator(
        crate::logging::Level::Warning,
        &format!("{} was readable by other users (mode {bits:o}); restricted it to mode {mode:o}", path.display()),
    );
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}
