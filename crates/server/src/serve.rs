//! Serving the router over TCP with the limits an exposed listener needs: a header-read timeout (which also
//! closes idle keep-alive connections), a cap on open connections that evicts the oldest idle one instead of
//! refusing newcomers (so idle or half-open connections cannot starve real requests), a cap on requests in
//! flight that sheds load with 503 + `Retry-After`, a per-request timeout, and graceful shutdown. `serve`
//! and the integration tests share this code, so the tests run under the same limits as production.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt as _;

use crate::api_result::{ApiError, ApiStatus, ErrorType};

/// The listener's limits. The defaults suit one instance on a host with the common 1,024 file descriptor
/// soft limit (connections stay well below it, leaving room for the database and outbound calls).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A client must send a complete request head within this time, or the connection is closed; the same
    /// clock runs while a keep-alive connection waits for its next request.
    pub header_read_timeout: Duration,
    /// A request (reading its body included) that has not been answered within this time gets 503.
    pub request_timeout: Duration,
    /// Open connections at most; beyond it the oldest connection without a request in progress is closed.
    pub max_connections: usize,
    /// Requests handled at once at most; more are answered 503 with `Retry-After` (probes excepted).
    pub max_in_flight: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_in_flight: 256,
        }
    }
}

/// Seconds a shed client is told to wait.
const RETRY_AFTER_SECS: u64 = 1;

/// Paths that are never shed: probes must tell "alive but busy" from "dead".
const PROBES: [&str; 2] = ["/livez", "/healthz"];

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then lets requests in progress
/// finish (idle connections are closed at once) and returns when every connection is gone.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let app = with_request_limits(app, limits);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let http = Arc::new(http);
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: back off briefly instead
                    // of spinning; the connections already open keep being served.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some((id, conn)) = registry.admit(limits.max_connections) else {
            tracing::warn!("every connection has a request in progress; refusing a new connection");
            drop(stream);
            continue;
        };
        // One connection's router, counting its requests in progress (an evicted connection must have none)
        // and telling handlers the peer address (`ConnectInfo<SocketAddr>`).
        let service = {
            let app = app.clone();
            let conn = Arc::clone(&conn);
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                let busy = InFlight::start(Arc::clone(&conn));
                req.extensions_mut().insert(ConnectInfo(remote));
                async move {
                    let response = app.oneshot(req.map(axum::body::Body::new)).await;
                    drop(busy);
                    response
                }
            })
        };
        let http = Arc::clone(&http);
        let registry = Arc::clone(&registry);
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let graceful = tokio::select! {
                _ = connection.as_mut() => false,
                _ = stop.wait_for(|stop| *stop) => true,
                () = conn.evict.notified() => conn.in_flight.load(Ordering::Acquire) > 0,
            };
            if graceful {
                // Finish the request in progress, then close.
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
            registry.remove(id);
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// The request timeout and load shedding, outermost so a shed request costs almost nothing.
fn with_request_limits(app: Router, limits: ServerLimits) -> Router {
    let slots = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    let timeout = limits.request_timeout;
    app.layer(middleware::from_fn(move |req: Request, next: Next| {
        let slots = Arc::clone(&slots);
        async move {
            let _slot = if PROBES.contains(&req.uri().path()) {
                None
            } else {
                match slots.try_acquire_owned() {
                    Ok(slot) => Some(slot),
                    Err(_) => {
                        return unavailable(
                            ErrorType::ServerBusy,
                            "the server is handling as many requests as it is allowed to; retry after the \
                             Retry-After delay",
                        );
                    }
                }
            };
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(response) => response,
                Err(_) => unavailable(
                    ErrorType::RequestTimeout,
                    "the request was not answered in time; retry after the Retry-After delay",
                ),
            }
        }
    }))
}

fn unavailable(error_type: ErrorType, message: &str) -> Response {
    let mut response = ApiError::new(ApiStatus::ServerFailure, error_type, message).into_response();
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// Marks a request in progress on its connection for as long as it lives.
struct InFlight(Arc<Connection>);

impl InFlight {
    fn start(conn: Arc<Connection>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Connection {
    in_flight: AtomicUsize,
    evict: Notify,
}

/// The open connections in the order they were accepted.
#[derive(Default)]
struct Registry {
    inner: Mutex<(u64, BTreeMap<u64, Arc<Connection>>)>,
}

impl Registry {
    /// Registers a new connection, first evicting the oldest idle one when `max` are open; `None` when all
    /// of them have a request in progress.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Connection>)> {
        let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (next, open) = &mut *guard;
        if open.len() >= max.max(1) {
            let idle = open.iter().find(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0).map(|(id, _)| *id)?;
            if let Some(evicted) = open.remove(&idle) {
                evicted.evict.notify_one();
            }
        }
        let id = *next;
        *next += 1;
        let conn = Arc::new(Connection::default());
        open.insert(id, Arc::clone(&conn));
        Some((id, conn))
    }

    fn remove(&self, id: u64) {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.remove(&id);
    }
}
