//! A fault-injecting TCP proxy for the CLI tests: sits between `linkvault serve` and an upstream (the sandbox's
//! token endpoint) and, switched at run time, passes answers through, holds them, drops them after the
//! upstream has processed the request, or cuts the connection before the request reaches the upstream.
//!
//! It works on TCP, not HTTP: an exchange is "the client's bytes, then the upstream's". The first client bytes
//! while no answer is pending start a request (where `Cut` acts); the first upstream bytes after that start its
//! answer (where `Hold` and `Drop` act). That is exact for an HTTP/1.1 client that does not pipeline (reqwest,
//! keep-alive or not), which is all these tests need. Everything is bounded: connections, buffers, the hold,
//! the upstream connect and idle time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

/// Connections open at once; more are refused (closed at accept) rather than queued.
const MAX_CONNECTIONS: usize = 128;
/// Bytes read at a time in each direction: the only buffering the proxy does.
const BUFFER_BYTES: usize = 16 * 1024;
/// The longest hold accepted; longer requests are clamped so that a test cannot wedge itself.
const MAX_HOLD: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection with no traffic either way for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the proxy does to the next exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways untouched.
    Pass,
    /// Forward the request at once; delay the start of the upstream's answer by this long.
    Hold(Duration),
    /// Forward the request (the upstream processes it), then close the client side without answering: the
    /// provider acted and its answer was lost.
    Drop,
    /// Close the client connection when a request starts, before anything reaches the upstream.
    Cut,
}

/// What the proxy has seen and done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub connections: u64,
    pub refused: u64,
    pub requests: u64,
    pub passed: u64,
    pub held: u64,
    pub dropped: u64,
    pub cut: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    refused: AtomicU64,
    requests: AtomicU64,
    passed: AtomicU64,
    held: AtomicU64,
    dropped: AtomicU64,
    cut: AtomicU64,
}

struct Setting {
    mode: Mode,
    /// Exchanges the mode still applies to; `None` is "until changed". At zero it reverts to `Pass`.
    remaining: Option<u64>,
}

struct Shared {
    upstream: SocketAddr,
    setting: Mutex<Setting>,
    counters: Counters,
}

impl Shared {
    /// The action for one exchange at the point where `applies` modes act, consuming one use of a counted
    /// mode. Other modes mean "pass" at this point and consume nothing.
    fn take(&self, applies: impl Fn(Mode) -> bool) -> Mode {
        let mut setting = self.setting.lock().unwrap_or_else(PoisonError::into_inner);
        if !applies(setting.mode) {
            return Mode::Pass;
        }
        let mode = setting.mode;
        if let Some(left) = setting.remaining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                *setting = Setting { mode: Mode::Pass, remaining: None };
            }
        }
        mode
    }
}

/// A running proxy; dropping it stops it and closes every connection it holds.
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`, passing everything through.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            setting: Mutex::new(Setting { mode: Mode::Pass, remaining: None }),
            counters: Counters::default(),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Proxy { addr, shared, task })
    }

    /// `http://<addr>`, to put in front of the upstream's path.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `mode` to every exchange from now on.
    pub fn set(&self, mode: Mode) {
        *self.shared.setting.lock().unwrap_or_else(PoisonError::into_inner) = Setting { mode, remaining: None };
    }

    /// Applies `mode` to the next `n` exchanges it acts on, then passes through again.
    pub fn set_for(&self, mode: Mode, n: u64) {
        let setting =
            if n == 0 { Setting { mode: Mode::Pass, remaining: None } } else { Setting { mode, remaining: Some(n) } };
        *self.shared.setting.lock().unwrap_or_else(PoisonError::into_inner) = setting;
    }

    pub fn mode(&self) -> Mode {
        self.shared.setting.lock().unwrap_or_else(PoisonError::into_inner).mode
    }

    pub fn counts(&self) -> Counts {
        let c = &self.shared.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            connections: n(&c.connections),
            refused: n(&c.refused),
            requests: n(&c.requests),
            passed: n(&c.passed),
            held: n(&c.held),
            dropped: n(&c.dropped),
            cut: n(&c.cut),
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Owned here so that stopping the proxy (aborting this task) aborts every connection with it.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                    continue; // dropping `client` closes it
                };
                shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let _ = relay(client, &shared).await;
                    drop(slot);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One client connection, relayed until either side closes, a fault ends it, or it idles out.
async fn relay(mut client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut upstream: Option<TcpStream> = None;
    let mut from_client = vec![0u8; BUFFER_BYTES];
    let mut from_upstream = vec![0u8; BUFFER_BYTES];
    // A request has been forwarded and its answer has not started yet.
    let mut awaiting_answer = false;
    let counters = &shared.counters;
    loop {
        let event = tokio::time::timeout(IDLE_TIMEOUT, async {
            match upstream.as_mut() {
                Some(up) => tokio::select! {
                    n = client.read(&mut from_client) => (true, n),
                    n = up.read(&mut from_upstream) => (false, n),
                },
                None => (true, client.read(&mut from_client).await),
            }
        })
        .await;
        let Ok((is_client, read)) = event else { return Ok(()) };
        let n = read?;
        if n == 0 {
            // Either side closed: close both (dropping the streams at return).
            return Ok(());
        }
        if is_client {
            if !awaiting_answer {
                counters.requests.fetch_add(1, Ordering::Relaxed);
                if shared.take(|m| m == Mode::Cut) == Mode::Cut {
                    counters.cut.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                awaiting_answer = true;
            }
            if upstream.is_none() {
                let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.upstream)).await;
                let Ok(Ok(stream)) = connected else { return Ok(()) };
                upstream = Some(stream);
            }
            if let Some(up) = upstream.as_mut() {
                up.write_all(&from_client[..n]).await?;
            }
        } else {
            if awaiting_answer {
                awaiting_answer = false;
                match shared.take(|m| matches!(m, Mode::Hold(_) | Mode::Drop)) {
                    Mode::Drop => {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    Mode::Hold(delay) => {
                        counters.held.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(delay.min(MAX_HOLD)).await;
                    }
                    Mode::Pass | Mode::Cut => {
                        counters.passed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            client.write_all(&from_upstream[..n]).await?;
        }
    }
}
