//! The embedded SQLite store: WAL, foreign keys, a busy timeout and `secure_delete`, so deleted secrets are
//! zeroed in the file; after a deletion the WAL is checkpointed and truncated so no old page survives there.
//!
//! Reads run inline on a small pool of connections (a point lookup costs a few µs, less than a hop to the
//! blocking pool) and reuse a read snapshot until this process writes (see `readers`); writes go through one
//! writer connection on the blocking pool, as SQLite has one writer.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use rusqlite::Connection;

/// Pooled read connections and the read snapshots they reuse.
mod readers;

use crate::sql::{Dialect, Driver, Fut, Mode, Session, SqlRow, Stmt, Value};
use crate::{Result, StorageError};

pub(crate) use crate::migrations::SQLITE as MIGRATIONS;

#[derive(Debug)]
struct Inner {
    writer: Mutex<Connection>,
    readers: Arc<readers::ReaderPool>,
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA journal_size_limit = 0;
         PRAGMA mmap_size = 268435456;",
    )?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file. Migrations run in `Store::migrate`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StorageError::Database(format!("cannot create {}: {e}", dir.display())))?;
        }
        let writer = open_connection(path)?;
        Ok(Self { inner: Arc::new(Inner { writer: Mutex::new(writer), readers: readers::ReaderPool::new(path) }) })
    }

    pub fn path(&self) -> &Path {
        self.inner.readers.path()
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let out = f(&mut lock(&inner.writer));
            // Whatever `f` committed (even if it then failed) is visible to every read that starts after this.
            inner.readers.invalidate();
            out
        })
        .await
        .map_err(|e| StorageError::Database(format!("writer task failed: {e}")))?
    }

    /// Moves every WAL frame into the database file and truncates the WAL, so bytes that a deletion zeroed
    /// in the database are not still readable in an older frame. Ends this process's idle read snapshots
    /// first, and retries briefly while readers finish.
    fn checkpoint_truncate(readers: &readers::ReaderPool, conn: &Connection) -> Result<()> {
        for _ in 0..50 {
            readers.release_snapshots();
            let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            if busy == 0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(StorageError::Database(
            "WAL checkpoint stayed busy after deletion; it will complete on the next one".into(),
        ))
    }
}

/// A SQLite connection as a [`Session`]. Statements run when called: the returned future is already complete.
pub(crate) struct SqliteConn<'c>(&'c mut Connection);

impl<'c> SqliteConn<'c> {
    pub(crate) fn new(conn: &'c mut Connection) -> Self {
        Self(conn)
    }

    fn run_query<T>(
        &mut self,
        stmt: &Stmt,
        params: &[Value],
        mut f: impl FnMut(&dyn SqlRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut prepared = self.0.prepare_cached(stmt.text(Dialect::Sqlite))?;
        let mut rows = prepared.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(f(row)?);
        }
        Ok(out)
    }
}

impl Session for SqliteConn<'_> {
    const DIALECT: Dialect = Dialect::Sqlite;

    fn execute(&mut self, stmt: &Stmt, params: &[Value]) -> impl Future<Output = Result<u64>> + Send {
        let done = self
            .0
            .prepare_cached(stmt.text(Dialect::Sqlite))
            .and_then(|mut prepared| prepared.execute(rusqlite::params_from_iter(params)));
        std::future::ready(done.map(|n| n as u64).map_err(StorageError::from))
    }

    fn query<T: Send>(
        &mut self,
        stmt: &Stmt,
        params: &[Value],
        f: impl FnMut(&dyn SqlRow) -> Result<T> + Send,
    ) -> impl Future<Output = Result<Vec<T>>> + Send {
        std::future::ready(self.run_query(stmt, params, f))
    }
}

/// Completes a future whose statements all run synchronously (every SQLite session future is ready at once).
pub(crate) fn run_now<T>(mut fut: Fut<'_, T>) -> Result<T> {
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(StorageError::Database("a SQLite statement was suspended".into())),
    }
}

/// Runs `f` between `BEGIN IMMEDIATE` and `COMMIT` (or `ROLLBACK`) on the writer connection.
fn transaction<T>(
    conn: &mut Connection,
    f: impl for<'c> FnOnce(&'c mut SqliteConn<'c>) -> Fut<'c, Option<T>>,
) -> Result<Option<T>> {
    if !conn.is_autocommit() {
        // A write that panicked left its transaction open; it never committed.
        conn.execute_batch("ROLLBACK")?;
    }
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let out = run_now(f(&mut SqliteConn(&mut *conn)));
    match out {
        Ok(Some(v)) => match conn.prepare_cached("COMMIT").and_then(|mut c| c.execute([])) {
            Ok(_) => Ok(Some(v)),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        },
        other => {
            let _ = conn.execute_batch("ROLLBACK");
            other
        }
    }
}

impl Driver for SqliteStore {
    type Conn<'c> = SqliteConn<'c>;
    const BACKEND: &'static str = "sqlite";

    fn run<T, F>(&self, mode: Mode, f: F) -> Fut<'_, Option<T>>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Self::Conn<'c>) -> Fut<'c, Option<T>> + Send + 'static,
    {
        match mode {
            // Inline: a point read costs less than the hop to the blocking pool.
            Mode::Read | Mode::Lookup => {
                Box::pin(std::future::ready(self.inner.readers.read(|c| run_now(f(&mut SqliteConn(c))))))
            }
            Mode::Write => Box::pin(self.write(move |c| run_now(f(&mut SqliteConn(c))))),
            Mode::Transaction => Box::pin(self.write(move |c| transaction(c, f))),
        }
    }

    fn migrate_schema(&self) -> Fut<'_, ()> {
        Box::pin(self.write(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let applied: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let applied = usize::try_from(applied).unwrap_or(0);
            if applied > MIGRATIONS.len() {
                return Err(StorageError::Migration(format!(
                    "the database is at schema version {applied}, newer than this linkvault knows ({}); upgrade linkvault",
                    MIGRATIONS.len()
                )));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
                tx.execute_batch(sql).map_err(|e| StorageError::Migration(format!("sqlite migration {}: {e}", i + 1)))?;
                tx.pragma_update(None, "user_version", i64::try_from(i + 1).unwrap_or(i64::MAX))?;
            }
            tx.commit()?;
            Ok(())
        }))
    }

    fn scrub_deleted(&self) -> Fut<'_, ()> {
        let readers = Arc::clone(&self.inner.readers);
        Box::pin(self.write(move |c| SqliteStore::checkpoint_truncate(&readers, c)))
    }
}
