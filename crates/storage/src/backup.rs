//! Backups of the SQLite database and their restore, at the file level (`linkvault backup` / `restore`).
//!
//! The snapshot is `VACUUM INTO`, not the online backup API: the backup API copies pages as they are, free
//! pages and the unused space of live pages included, so whatever a deletion left there travels into every
//! backup; `VACUUM INTO` writes a new, compact database from the live rows only, in one read transaction of
//! its own — a consistent snapshot while `serve` keeps writing, which it never blocks (WAL). Both the
//! snapshot and the restored file are written under a temporary name beside their target, synced, and only
//! then renamed into place, so a crash leaves either the old file or the complete new one, never half of one.
//!
//! PostgreSQL is backed up with `pg_dump` and restored with `pg_restore` (README "Backup and restore"); the
//! re-application of later deletions is the same for both backends ([`crate::Store::apply_deletions`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

/// What went wrong, in words an operator can act on. Never carries database content.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("there is no SQLite database at {}", .0.display())]
    NoDatabase(PathBuf),
    #[error("{} already exists; choose another --out or pass --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error(
        "the database {} is in use (a running `linkvault serve` or another process has it open); stop it, \
         then restore",
        .0.display()
    )]
    InUse(PathBuf),
    #[error("{} is not a usable linkvault backup: {reason}", path.display())]
    NotABackup { path: PathBuf, reason: String },
    #[error("{action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("SQLite on {}: {source}", path.display())]
    Sqlite { path: PathBuf, source: rusqlite::Error },
}

/// A file written: its size and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileReport {
    pub bytes: u64,
    pub elapsed: Duration,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io { action, path: path.to_owned(), source }
}

fn sqlite(path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sqlite { path: path.to_owned(), source }
}

/// Writes a consistent snapshot of the SQLite database `db` to `out` (which must not exist unless
/// `overwrite`). Safe while a server writes to `db`.
pub fn sqlite_snapshot(db: &Path, out: &Path, overwrite: bool) -> Result<FileReport, BackupError> {
    let started = Instant::now();
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db.to_owned()));
    }
    if !overwrite && out.exists() {
        return Err(BackupError::Exists(out.to_owned()));
    }
    let temp = TempFile::beside(out)?;
    let source = open_existing(db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    vacuum_into(&source, db, temp.path())?;
    drop(source);
    check_database(temp.path())?;
    sync_file(temp.path())?;
    temp.publish(out, overwrite)?;
    let bytes = std::fs::metadata(out).map_err(io("cannot read", out))?.len();
    Ok(FileReport { bytes, elapsed: started.elapsed() })
}

/// Replaces the SQLite database `db` with the backup `from`, refusing while another process has `db` open
/// and, unless `overwrite`, when `db` exists at all. The backup is checked first (integrity, linkvault's
/// tables); `db`'s old `-wal` and `-shm` files are removed so that no page of the old database is replayed
/// onto the restored one. Deletions made after the backup are *not* applied here: that is
/// [`crate::Store::apply_deletions`] with the deletion ledger, once the store is opened on the result.
pub fn sqlite_restore(from: &Path, db: &Path, overwrite: bool) -> Result<FileReport, BackupError> {
    let started = Instant::now();
    if !from.is_file() {
        return Err(BackupError::NotABackup { path: from.to_owned(), reason: "no such file".into() });
    }
    check_database(from)?;
    if db.exists() {
        if !overwrite {
            return Err(BackupError::Exists(db.to_owned()));
        }
        take_over(db)?;
    }
    let temp = TempFile::beside(db)?;
    let source = open_existing(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    vacuum_into(&source, from, temp.path())?;
    drop(source);
    sync_file(temp.path())?;
    temp.publish(db, true)?;
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("cannot remove", Path::new(&name))(e)),
            _ => {}
        }
    }
    sync_parent(db)?;
    let bytes = std::fs::metadata(db).map_err(io("cannot read", db))?.len();
    Ok(FileReport { bytes, elapsed: started.elapsed() })
}

fn open_existing(path: &Path, access: OpenFlags) -> Result<Connection, BackupError> {
    let conn = Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(sqlite(path))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite(path))?;
    Ok(conn)
}

fn vacuum_into(conn: &Connection, source: &Path, target: &Path) -> Result<(), BackupError> {
    let target_text = target.to_str().ok_or_else(|| BackupError::Io {
        action: "cannot write",
        path: target.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not UTF-8"),
    })?;
    conn.execute("VACUUM INTO ?1", [target_text]).map_err(sqlite(source))?;
    Ok(())
}

/// The file opens as a SQLite database, passes `quick_check` and has linkvault's connection tables.
fn check_database(path: &Path) -> Result<(), BackupError> {
    let not = |reason: String| BackupError::NotABackup { path: path.to_owned(), reason };
    let conn = open_existing(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| not(e.to_string()))?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| not(e.to_string()))?;
    if check != "ok" {
        return Err(not(format!("quick_check says {}", check.chars().take(200).collect::<String>())));
    }
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('meta', 'connections', 'retired_tokens')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| not(e.to_string()))?;
    if tables != 3 {
        return Err(not("it has no linkvault tables (meta, connections, retired_tokens)".into()));
    }
    Ok(())
}

/// Makes sure no other connection has `db` open: an exclusive lock cannot be had while any other connection
/// (WAL mode keeps a shared lock for as long as one is open, idle or not) uses the file. The old WAL is
/// checkpointed and truncated before the lock is let go.
fn take_over(db: &Path) -> Result<(), BackupError> {
    let conn = open_existing(db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::ZERO).map_err(sqlite(db))?;
    let in_use = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            BackupError::InUse(db.to_owned())
        }
        _ => BackupError::Sqlite { path: db.to_owned(), source: e },
    };
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; SELECT COUNT(*) FROM sqlite_master; COMMIT;")
        .map_err(in_use)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(in_use)?;
    Ok(())
}

fn sync_file(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(io("cannot sync", path))
}

/// Makes a rename or a new file in `path`'s directory durable.
fn sync_parent(path: &Path) -> Result<(), BackupError> {
    let dir = parent_of(path);
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("cannot sync the directory", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// An empty owner-only file beside the target (same directory, so the final rename is atomic), removed
/// unless published.
struct TempFile {
    path: PathBuf,
    published: bool,
}

impl TempFile {
    fn beside(target: &Path) -> Result<Self, BackupError> {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let path = parent_of(target).join(format!(".{name}.partial-{}", uuid::Uuid::new_v4().simple()));
        let mut options = std::fs::OpenOptions::new();
        // VACUUM INTO accepts an existing empty file and keeps its mode: the copy holds what the database does.
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        options.open(&path).map_err(io("cannot create", &path))?;
        Ok(Self { path, published: false })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the file to `target`: a rename when replacing is allowed, otherwise a hard link, which fails
    /// if `target` appeared meanwhile instead of replacing it.
    fn publish(mut self, target: &Path, replace: bool) -> Result<(), BackupError> {
        if replace {
            std::fs::rename(&self.path, target).map_err(io("cannot rename into", target))?;
        } else {
            std::fs::hard_link(&self.path, target).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => BackupError::Exists(target.to_owned()),
                _ => io("cannot create", target)(e),
            })?;
            std::fs::remove_file(&self.path).map_err(io("cannot remove", &self.path))?;
        }
        self.published = true;
        sync_parent(target)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn database(path: &Path, rows: i64) -> TestResult {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
             CREATE TABLE connections (token_id TEXT PRIMARY KEY, n INTEGER);
             CREATE TABLE retired_tokens (token_id TEXT PRIMARY KEY);",
        )?;
        for n in 0..rows {
            conn.execute("INSERT INTO connections VALUES (?1, ?2)", rusqlite::params![format!("t{n}"), n])?;
        }
        Ok(())
    }

    fn rows(path: &Path) -> Result<i64, Box<dyn std::error::Error>> {
        Ok(Connection::open(path)?.query_row("SELECT COUNT(*) FROM connections", [], |r| r.get(0))?)
    }

    #[test]
    fn snapshot_refuses_to_overwrite_unless_forced_and_leaves_no_temp_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (db, out) = (dir.path().join("lv.db"), dir.path().join("backup.db"));
        database(&db, 3)?;
        let report = sqlite_snapshot(&db, &out, false)?;
        assert_eq!(report.bytes, std::fs::metadata(&out)?.len());
        assert_eq!(rows(&out)?, 3);
        assert!(matches!(sqlite_snapshot(&db, &out, false), Err(BackupError::Exists(_))));
        Connection::open(&db)?.execute("INSERT INTO connections VALUES ('t9', 9)", [])?;
        sqlite_snapshot(&db, &out, true)?;
        assert_eq!(rows(&out)?, 4);
        let names: Vec<String> = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".partial-")), "{names:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&out)?.permissions().mode() & 0o777, 0o600);
        }
        assert!(matches!(sqlite_snapshot(&dir.path().join("none.db"), &out, true), Err(BackupError::NoDatabase(_))));
        Ok(())
    }

    #[test]
    fn restore_refuses_a_database_in_use_and_a_file_that_is_not_a_backup() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (db, out) = (dir.path().join("lv.db"), dir.path().join("backup.db"));
        database(&db, 2)?;
        sqlite_snapshot(&db, &out, false)?;
        let held = Connection::open(&db)?;
        held.query_row("SELECT COUNT(*) FROM connections", [], |r| r.get::<_, i64>(0))?;
        assert!(matches!(sqlite_restore(&out, &db, true), Err(BackupError::InUse(_))));
        drop(held);
        assert!(matches!(sqlite_restore(&out, &db, false), Err(BackupError::Exists(_))));
        Connection::open(&db)?.execute("INSERT INTO connections VALUES ('late', 7)", [])?;
        sqlite_restore(&out, &db, true)?;
        assert_eq!(rows(&db)?, 2, "the backup's rows, not the later ones");
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not a database at all, just some bytes that are long enough to look at")?;
        assert!(matches!(sqlite_restore(&junk, &db, true), Err(BackupError::NotABackup { .. })));
        Ok(())
    }
}
