//! The shared PostgreSQL connections that point lookups run on, pipelined.
//!
//! A resolve is one indexed read. Through the pool it paid a checkout, and each of up to 16 connections had its
//! own socket and connection task, so concurrent reads meant as many wake-ups, writes and reads on both sides.
//! Here every lookup goes to one of a few long-lived clients shared by all requests: `tokio-postgres` writes
//! whatever requests are queued on a client in one go and PostgreSQL answers them in order, so under load many
//! lookups share each system call. Only short indexed reads come here ([`crate::sql::Mode::Lookup`]): a slow
//! statement would hold up every read queued behind it on the same socket, so scans and writes stay on the
//! pool. Each client prepares a statement once, on first use. A client whose connection has ended (a
//! PostgreSQL restart, a network cut) is replaced by a new connection on the next lookup through its slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::Result;

/// A shared connection and the statements prepared on it.
pub(crate) struct Reader {
    client: Client,
    statements: RwLock<HashMap<String, Statement>>,
}

impl Reader {
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// `text` prepared on this connection; the first use of a text costs a round trip, later ones none.
    pub(super) async fn statement(&self, text: &str) -> Result<Statement> {
        if let Some(s) = self.statements.read().unwrap_or_else(PoisonError::into_inner).get(text) {
            return Ok(s.clone());
        }
        let prepared = self.client.prepare(text).await?;
        self.statements.write().unwrap_or_else(PoisonError::into_inner).insert(text.to_owned(), prepared.clone());
        Ok(prepared)
    }
}

/// One place a [`Reader`] lives; `connecting` lets one lookup reconnect while the others wait for it.
#[derive(Default)]
struct Slot {
    reader: Mutex<Option<Arc<Reader>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    fn open(&self) -> Option<Arc<Reader>> {
        self.reader.lock().unwrap_or_else(PoisonError::into_inner).as_ref().filter(|r| !r.client.is_closed()).cloned()
    }
}

pub(super) struct Readers {
    /// The pool's own configuration (it may hold a password: never printed).
    config: Config,
    slots: Box<[Slot]>,
    next: AtomicUsize,
}

impl Readers {
    pub(super) fn new(config: Config, count: usize) -> Self {
        Self { config, slots: (0..count.max(1)).map(|_| Slot::default()).collect(), next: AtomicUsize::new(0) }
    }

    /// How many shared connections there are (one per CPU the process may use, at most 8).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The next shared connection, round robin, connected first if it is not (or no longer) open.
    pub(super) async fn get(&self) -> Result<Arc<Reader>> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(reader) = slot.open() {
            return Ok(reader);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(reader) = slot.open() {
            return Ok(reader);
        }
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "shared PostgreSQL read connection ended");
            }
        });
        let reader = Arc::new(Reader { client, statements: RwLock::default() });
        *slot.reader.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&reader));
        Ok(reader)
    }
}
