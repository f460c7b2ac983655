//! The deletion ledger: an append-only file, outside the database and so outside every backup of it, with
//! one line per permanently deleted connection (`{"v":1,"tokenId":…,"clientId":…,"deletedAt":…}`, JSON
//! lines, no secret). [`Vault::delete`](crate::Vault::delete) writes and fsyncs the line *before* the
//! database deletion commits and refuses the deletion when it cannot, so no acknowledged deletion is missing
//! from the ledger; `linkvault restore` re-applies every line ([`reapply`]), so a backup taken before a
//! deletion never brings the connection back.
//!
//! Several processes may append to one file: each append holds an exclusive `flock` on it, so lines never
//! interleave and a torn tail (a crash in the middle of a write, never acknowledged) is repaired before the
//! next line goes after it. Reading treats the file as hostile input: lines are bounded, a bad line is an
//! error naming the file and the line number, and only an unterminated last line — what a crash leaves — is
//! tolerated.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use linkvault_domain::{ClientId, TokenId};
use linkvault_storage::{DeletionRecord, DynStore};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::VaultError;

/// The ledger's file name in the data dir when no path is configured.
pub const DEFAULT_LEDGER_FILE: &str = "deletions.ledger";
/// The environment variable (and `--deletion-ledger` option) naming the ledger file.
pub const DELETION_LEDGER_ENV: &str = "LINKVAULT_DELETION_LEDGER";
/// The longest line a ledger may hold; an entry is about 140 bytes.
pub const MAX_LINE_BYTES: usize = 1024;
/// Deletions re-applied per database transaction.
const APPLY_BATCH: usize = 500;

/// One deleted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    pub token_id: TokenId,
    pub client_id: ClientId,
    pub deleted_at: OffsetDateTime,
}

/// A ledger line as written and read (format version 1).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Line {
    v: u8,
    token_id: TokenId,
    client_id: ClientId,
    #[serde(with = "time::serde::rfc3339")]
    deleted_at: OffsetDateTime,
}

const FORMAT_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "cannot record the deletion in the deletion ledger {}: {source}; nothing was deleted. Make the file (and \
         its directory) writable by linkvault, or point --deletion-ledger / {DELETION_LEDGER_ENV} at a writable \
         path",
        path.display()
    )]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot open the deletion ledger {} for appending: {source}. Make it (and its directory) writable by \
         linkvault, or point --deletion-ledger / {DELETION_LEDGER_ENV} at a writable path",
        path.display()
    )]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot read the deletion ledger {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "the deletion ledger {} is damaged at line {line}: {reason}. Nothing was applied; repair or remove that \
         line (every other line is one deleted connection) and run the command again",
        path.display()
    )]
    Corrupt { path: PathBuf, line: u64, reason: String },
}

/// The ledger file a vault appends to.
#[derive(Debug)]
pub struct DeletionLedger {
    path: PathBuf,
}

impl DeletionLedger {
    /// The ledger at `path`, created (owner-only) if missing, so a path that cannot be written stops start-up
    /// instead of the first deletion.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let open_error = |source| LedgerError::Open { path: path.to_owned(), source };
        if open_for_append(path).map_err(open_error)?.1 {
            sync_parent(path).map_err(open_error)?;
        }
        Ok(Self { path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` and waits until it is on disk (fsync). Only then may the deletion commit.
    pub async fn record(&self, entry: &LedgerEntry) -> Result<(), LedgerError> {
        let mut line = serde_json::to_vec(&Line {
            v: FORMAT_VERSION,
            token_id: entry.token_id,
            client_id: entry.client_id,
            deleted_at: entry.deleted_at,
        })
        .map_err(|e| LedgerError::Write { path: self.path.clone(), source: std::io::Error::other(e) })?;
        line.push(b'\n');
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || append(&path, &line).map_err(|source| LedgerError::Write { path, source }))
            .await
            .map_err(|e| LedgerError::Write { path: self.path.clone(), source: std::io::Error::other(e) })?
    }
}

/// Opens (creating owner-only) the file for appending; whether it was created.
fn open_for_append(path: &Path) -> std::io::Result<(std::fs::File, bool)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(file) => Ok((file, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((options.create(true).open(path)?, true)),
        Err(e) => Err(e),
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn append(path: &Path, line: &[u8]) -> std::io::Result<()> {
    let (mut file, created) = open_for_append(path)?;
    // Released when the file is closed at the end of this function.
    #[cfg(unix)]
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    repair_torn_tail(&mut file)?;
    file.write_all(line)?;
    file.sync_data()?;
    if created {
        sync_parent(path)?;
    }
    Ok(())
}

/// A file that does not end in a newline ends in a write a crash cut short (under the lock no other writer
/// is midway). Its deletion was never acknowledged — the fsync had not returned — but a tail that is a whole
/// entry is kept (terminated), erring towards deletion; any other tail is cut off, so the next line is not
/// glued to it. A tail longer than any line is not a torn write: the append is refused.
fn repair_torn_tail(file: &mut std::fs::File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let window = len.min(MAX_LINE_BYTES as u64 + 1);
    file.seek(std::io::SeekFrom::Start(len - window))?;
    let mut tail = Vec::with_capacity(window as usize);
    std::io::Read::take(&*file, window).read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(());
    }
    let line_start = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None if window == len => 0,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the file ends in more than {MAX_LINE_BYTES} bytes without a line break; it is not a ledger"),
            ));
        }
    };
    if parse_line(&tail[line_start..]).is_ok() {
        file.write_all(b"\n")?;
    } else {
        file.set_len(len - (tail.len() - line_start) as u64)?;
    }
    Ok(())
}

fn parse_line(bytes: &[u8]) -> Result<LedgerEntry, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    let line: Line = serde_json::from_str(text).map_err(|e| {
        let mut reason = e.to_string();
        reason.truncate(reason.char_indices().nth(200).map_or(reason.len(), |(i, _)| i));
        format!("not a ledger entry ({reason})")
    })?;
    if line.v != FORMAT_VERSION {
        return Err(format!("format version {} is not one this linkvault reads (1)", line.v));
    }
    Ok(LedgerEntry { token_id: line.token_id, client_id: line.client_id, deleted_at: line.deleted_at })
}

/// What one ledger file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerContents {
    pub entries: Vec<LedgerEntry>,
    /// The last line was cut short by a crash and ignored.
    pub torn_last_line: bool,
}

/// Reads a ledger file, every line bounded and checked.
pub fn read(path: &Path) -> Result<LedgerContents, LedgerError> {
    let file = std::fs::File::open(path).map_err(|source| LedgerError::Read { path: path.to_owned(), source })?;
    let mut reader = std::io::BufReader::new(file);
    let mut contents = LedgerContents { entries: Vec::new(), torn_last_line: false };
    let mut buf = Vec::with_capacity(MAX_LINE_BYTES + 1);
    let corrupt = |line, reason: String| LedgerError::Corrupt { path: path.to_owned(), line, reason };
    for number in 1u64.. {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| LedgerError::Read { path: path.to_owned(), source })?;
        if n == 0 {
            break;
        }
        let terminated = buf.last() == Some(&b'\n');
        let body = if terminated { &buf[..buf.len() - 1] } else { &buf[..] };
        if body.len() > MAX_LINE_BYTES || (!terminated && n > MAX_LINE_BYTES) {
            return Err(corrupt(number, format!("the line is longer than {MAX_LINE_BYTES} bytes")));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(body) {
            Ok(entry) => contents.entries.push(entry),
            // Unterminated means end of file here (the read stopped below the limit): a crash's torn write.
            Err(_) if !terminated => contents.torn_last_line = true,
            Err(reason) => return Err(corrupt(number, reason)),
        }
    }
    Ok(contents)
}

/// Every deletion named by a set of ledgers (one per instance, or one shared), read and checked in full
/// before anything is applied, so a damaged ledger changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSet {
    /// One per tokenId (the earliest time when several ledgers name it).
    deletions: Vec<DeletionRecord>,
    /// Lines read from all ledgers.
    pub entries: u64,
    /// Ledgers whose torn last line was ignored.
    pub torn: Vec<PathBuf>,
}

impl LedgerSet {
    pub fn read(paths: &[PathBuf]) -> Result<Self, LedgerError> {
        let mut by_token: BTreeMap<TokenId, DeletionRecord> = BTreeMap::new();
        let (mut entries, mut torn) = (0, Vec::new());
        for path in paths {
            let contents = read(path)?;
            entries += contents.entries.len() as u64;
            if contents.torn_last_line {
                torn.push(path.clone());
            }
            for e in contents.entries {
                let record = DeletionRecord { token_id: e.token_id, client_id: e.client_id, deleted_at: e.deleted_at };
                by_token
                    .entry(e.token_id)
                    .and_modify(|d| d.deleted_at = d.deleted_at.min(e.deleted_at))
                    .or_insert(record);
            }
        }
        Ok(Self { deletions: by_token.into_values().collect(), entries, torn })
    }

    /// Distinct tokenIds deleted.
    pub fn distinct(&self) -> usize {
        self.deletions.len()
    }
}

/// What [`reapply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReapplyReport {
    /// Connections the (restored) database still had, now deleted.
    pub reapplied: u64,
    /// Deletions the database already reflected.
    pub already_absent: u64,
}

/// Re-applies every deletion of `ledgers` to `store` (after a restore): each connection deleted, its tokenId
/// retired so it is never issued again. Idempotent: a second run re-applies nothing and finds every deletion
/// absent.
pub async fn reapply(store: &DynStore, ledgers: &LedgerSet) -> Result<ReapplyReport, VaultError> {
    let mut report = ReapplyReport::default();
    for batch in ledgers.deletions.chunks(APPLY_BATCH) {
        let applied = store.apply_deletions(batch).await?;
        report.reapplied += applied.deleted;
        report.already_absent += applied.already_absent;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn entry(n: i64) -> LedgerEntry {
        LedgerEntry {
            token_id: TokenId::new_random(),
            client_id: ClientId::new_random(),
            deleted_at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_700_000_000 + n),
        }
    }

    #[tokio::test]
    async fn appended_entries_read_back_in_order_and_hold_no_more_than_ids_and_time() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ledger = DeletionLedger::open(&dir.path().join("deletions.ledger"))?;
        let entries: Vec<LedgerEntry> = (0..3).map(entry).collect();
        for e in &entries {
            ledger.record(e).await?;
        }
        let contents = read(ledger.path())?;
        assert_eq!(contents, LedgerContents { entries: entries.clone(), torn_last_line: false });
        let text = std::fs::read_to_string(ledger.path())?;
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or_default())?;
        let mut keys: Vec<&str> = first.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(keys, ["clientId", "deletedAt", "tokenId", "v"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(ledger.path())?.permissions().mode() & 0o777, 0o600);
        }
        Ok(())
    }

    #[test]
    fn a_corrupt_line_is_named_by_its_number() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("deletions.ledger");
        let good = serde_json::to_string(&Line {
            v: 1,
            token_id: TokenId::new_random(),
            client_id: ClientId::new_random(),
            deleted_at: OffsetDateTime::UNIX_EPOCH,
        })?;
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        for (bad, reason) in [
            ("{\"v\":1,\"tokenId\":\"nope\"}", "not a ledger entry"),
            (
                "{\"v\":2,\"tokenId\":\"00000000-0000-4000-8000-000000000000\",\"clientId\":\"00000000-0000-4000-8000-000000000000\",\"deletedAt\":\"2026-01-01T00:00:00Z\"}",
                "format version 2",
            ),
            (long.as_str(), "longer than 1024 bytes"),
        ] {
            std::fs::write(&path, format!("{good}\n\n{good}\n{bad}\n{good}\n"))?;
            let err = read(&path).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("at line 4") && err.contains(reason), "{err}");
        }
        std::fs::write(&path, [good.as_bytes(), b"\n\xff\xfe\n"].concat())?;
        let err = read(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("at line 2") && err.contains("UTF-8"), "{err}");
        Ok(())
    }

    #[tokio::test]
    async fn a_torn_last_line_is_tolerated_and_repaired_by_the_next_append() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ledger = DeletionLedger::open(&dir.path().join("deletions.ledger"))?;
        let (a, b, c) = (entry(1), entry(2), entry(3));
        ledger.record(&a).await?;
        ledger.record(&b).await?;
        // A crash in the middle of writing the third line.
        let full = std::fs::read(ledger.path())?;
        let second_start = full[..full.len() - 1].iter().rposition(|x| *x == b'\n').map_or(0, |i| i + 1);
        let torn = &full[second_start..second_start + 30];
        std::fs::write(ledger.path(), [&full[..], torn].concat())?;
        let contents = read(ledger.path())?;
        assert_eq!(contents, LedgerContents { entries: vec![a, b], torn_last_line: true });
        // The next append cuts the fragment off instead of gluing its line to it.
        ledger.record(&c).await?;
        assert_eq!(read(ledger.path())?, LedgerContents { entries: vec![a, b, c], torn_last_line: false });
        // A whole entry that only lost its line break is kept.
        let mut unterminated = std::fs::read(ledger.path())?;
        unterminated.pop();
        std::fs::write(ledger.path(), &unterminated)?;
        assert_eq!(read(ledger.path())?.entries, vec![a, b, c]);
        let d = entry(4);
        ledger.record(&d).await?;
        assert_eq!(read(ledger.path())?.entries, vec![a, b, c, d]);
        Ok(())
    }

    #[tokio::test]
    async fn an_unwritable_ledger_is_an_error_naming_the_path() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("deletions.ledger");
        let ledger = DeletionLedger::open(&path)?;
        // A directory where the file was: unwritable for every user, root included.
        std::fs::remove_file(&path)?;
        std::fs::create_dir(&path)?;
        let err = ledger.record(&entry(1)).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("cannot record the deletion") && err.contains(&path.display().to_string()), "{err}");
        assert!(DeletionLedger::open(&dir.path().join("missing/dir/ledger")).is_err());
        Ok(())
    }

    #[tokio::test]
    async fn concurrent_appends_never_interleave() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("deletions.ledger");
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..4 {
            let ledger = DeletionLedger::open(&path)?;
            tasks.spawn(async move {
                for n in 0..25 {
                    ledger.record(&entry(worker * 100 + n)).await?;
                }
                Ok::<_, LedgerError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        assert_eq!(read(&path)?.entries.len(), 100);
        Ok(())
    }
}
