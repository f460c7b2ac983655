//! The pool of read connections, and the read snapshots they keep open between reads.
//!
//! A point lookup on SQLite costs a few microseconds, and beginning and ending the read transaction around it
//! (two POSIX lock calls on the WAL index plus the statement commit) was about a sixth of that. So a pooled
//! connection keeps its read transaction open after a read and serves the next reads from the same snapshot,
//! as long as nothing could have changed underneath:
//! - every write of this process bumps [`ReaderPool::invalidate`]'s generation once it has committed, and a
//!   snapshot from an older generation is ended before the next read: a caller always sees its own writes and
//!   every write this process finished before the read began, exactly as without reuse;
//! - no read uses a snapshot older than [`SNAPSHOT_MAX_AGE`], so a write made by another process on the same
//!   file (a CLI command next to `serve`) is seen by every read that starts that long after it; a sweeper
//!   thread ends idle snapshots past that age, so none holds back a checkpoint for more than twice as long;
//! - before the truncating checkpoint that scrubs a deletion from the WAL, the writer ends every idle snapshot.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{lock, open_connection};
use crate::Result;

/// Longest a read snapshot is reused; also the sweeper's period.
pub(crate) const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(10);
/// Idle read connections kept; more are opened under concurrency and closed when returned.
const MAX_IDLE_READERS: usize = 8;

/// A read connection and the snapshot its open read transaction holds, if any.
#[derive(Debug)]
struct Reader {
    conn: Connection,
    snapshot: Option<Snapshot>,
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    /// The pool's write generation when the transaction began.
    generation: u64,
    began: Instant,
}

impl Reader {
    /// Ends the open read transaction, if any. False when SQLite refused, in which case the connection must be
    /// closed (closing rolls the transaction back) rather than reused.
    fn end_snapshot(&mut self) -> bool {
        self.snapshot = None;
        self.conn.is_autocommit() || self.conn.execute_batch("COMMIT").is_ok()
    }

    /// Makes sure the next statement reads a snapshot no older than `generation` and `max_age`.
    fn ready(&mut self, generation: u64, now: Instant, max_age: Duration) -> Result<()> {
        if let Some(s) = self.snapshot {
            if s.generation == generation && now.saturating_duration_since(s.began) < max_age {
                return Ok(());
            }
            if !self.end_snapshot() {
                return Err(crate::StorageError::Database("could not end a read transaction".into()));
            }
        }
        if self.conn.is_autocommit() {
            // DEFERRED: nothing is locked until the first statement, which takes the snapshot.
            self.conn.prepare_cached("BEGIN")?.execute([])?;
        }
        self.snapshot = Some(Snapshot { generation, began: now });
        Ok(())
    }
}

#[derive(Debug)]
pub(crate) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
    /// Bumped after every committed write of this process.
    generation: AtomicU64,
    max_age: Duration,
    /// False when the sweeper could not be started: reads then end their snapshot at once.
    reuse: AtomicBool,
}

impl ReaderPool {
    /// A pool for the database at `path`, with its sweeper thread (which ends when the pool is dropped).
    pub(crate) fn new(path: &Path) -> Arc<Self> {
        Self::with_max_age(path, SNAPSHOT_MAX_AGE)
    }

    fn with_max_age(path: &Path, max_age: Duration) -> Arc<Self> {
        let pool = Arc::new(Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            max_age,
            reuse: AtomicBool::new(true),
        });
        let weak = Arc::downgrade(&pool);
        let sweeper = std::thread::Builder::new().name("linkvault-sqlite-snapshots".into()).spawn(move || sweep(&weak));
        if let Err(e) = sweeper {
            tracing::warn!(error = %e, "cannot start the SQLite snapshot sweeper; read snapshots are not reused");
            pool.reuse.store(false, Ordering::Release);
        }
        pool
    }

    /// The database file the pool reads.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled connection, inside a read snapshot that reflects every write this process had
    /// committed when the call began.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let popped = lock(&self.idle).pop();
        let mut reader = match popped {
            Some(r) => r,
            None => Reader { conn: open_connection(&self.path)?, snapshot: None },
        };
        let generation = self.generation.load(Ordering::Acquire);
        let reuse = self.reuse.load(Ordering::Relaxed);
        if reuse {
            reader.ready(generation, Instant::now(), self.max_age)?;
        }
        let out = f(&mut reader.conn);
        let mut idle = lock(&self.idle);
        // Checked under the pool lock, so a writer that bumped the generation and then ended the idle
        // snapshots cannot miss this one.
        let current = self.generation.load(Ordering::Acquire);
        let keep = if !reuse || out.is_err() || current != generation { reader.end_snapshot() } else { true };
        if keep && idle.len() < MAX_IDLE_READERS {
            idle.push(reader);
        }
        out
    }

    /// Called after every committed write: later reads take a fresh snapshot.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Invalidates, then ends the snapshot of every idle connection (before a checkpoint that must not wait
    /// for them).
    pub(crate) fn release_snapshots(&self) {
        self.invalidate();
        self.end_idle_snapshots(|_| true);
    }

    fn end_idle_snapshots(&self, mut due: impl FnMut(&Snapshot) -> bool) {
        let mut idle = lock(&self.idle);
        idle.retain_mut(|r| match r.snapshot {
            Some(s) if due(&s) => r.end_snapshot(),
            _ => true,
        });
    }
}

/// Ends idle snapshots older than the pool's maximum age until the pool is gone.
fn sweep(pool: &Weak<ReaderPool>) {
    let Some(period) = pool.upgrade().map(|p| p.max_age) else { return };
    loop {
        std::thread::sleep(period);
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        pool.end_idle_snapshots(|s| now.saturating_duration_since(s.began) >= pool.max_age);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    /// Long enough that neither the age check nor the sweeper ends a snapshot during a test.
    const FOREVER: Duration = Duration::from_secs(600);

    fn pool_with_table(max_age: Duration) -> (tempfile::TempDir, Arc<ReaderPool>, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open_connection(&path).unwrap();
        // A checkpoint held back by a reader reports it instead of waiting.
        writer.busy_timeout(Duration::ZERO).unwrap();
        writer.execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1);").unwrap();
        (dir, ReaderPool::with_max_age(&path, max_age), writer)
    }

    fn value(pool: &ReaderPool) -> i64 {
        pool.read(|c| Ok(c.query_row("SELECT v FROM t", [], |r| r.get(0))?)).unwrap()
    }

    #[test]
    fn a_write_of_this_process_is_seen_by_the_next_read() {
        let (_dir, pool, writer) = pool_with_table(FOREVER);
        assert_eq!(value(&pool), 1);
        writer.execute("UPDATE t SET v = 2", []).unwrap();
        pool.invalidate();
        assert_eq!(value(&pool), 2);
    }

    #[test]
    fn a_snapshot_is_reused_while_the_process_wrote_nothing() {
        let (_dir, pool, writer) = pool_with_table(FOREVER);
        assert_eq!(value(&pool), 1);
        // A write the pool was not told about (another process): the open snapshot still answers.
        writer.execute("UPDATE t SET v = 3", []).unwrap();
        assert_eq!(value(&pool), 1, "the snapshot taken by the first read is reused");
        pool.invalidate();
        assert_eq!(value(&pool), 3);
    }

    #[test]
    fn another_process_write_is_seen_once_the_snapshot_is_old() {
        let (_dir, pool, writer) = pool_with_table(SNAPSHOT_MAX_AGE);
        assert_eq!(value(&pool), 1);
        writer.execute("UPDATE t SET v = 3", []).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while value(&pool) != 3 {
            assert!(Instant::now() < deadline, "the out-of-process write was never seen");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn idle_snapshots_are_swept_so_a_truncating_checkpoint_succeeds() {
        let (_dir, pool, writer) = pool_with_table(Duration::from_millis(200));
        assert_eq!(value(&pool), 1);
        writer.execute("UPDATE t SET v = 4", []).unwrap();
        let truncate = || writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(truncate(), 1, "the idle snapshot holds the checkpoint back");
        let deadline = Instant::now() + Duration::from_secs(5);
        while truncate() != 0 {
            assert!(Instant::now() < deadline, "the sweeper never ended the idle snapshot");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn release_ends_idle_snapshots_at_once() {
        let (_dir, pool, writer) = pool_with_table(FOREVER);
        assert_eq!(value(&pool), 1);
        writer.execute("UPDATE t SET v = 5", []).unwrap();
        pool.release_snapshots();
        assert_eq!(writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
        assert_eq!(value(&pool), 5);
    }

    #[test]
    fn a_failed_read_does_not_leave_its_snapshot_open() {
        let (_dir, pool, writer) = pool_with_table(FOREVER);
        let err = pool.read(|c| Ok(c.query_row("SELECT nope FROM t", [], |r| r.get::<_, i64>(0))?));
        assert!(err.is_err());
        writer.execute("UPDATE t SET v = 6", []).unwrap();
        assert_eq!(writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    }
}
