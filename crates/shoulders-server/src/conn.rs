//! The accept loop: every connection bounded in number and in time.
//!
//! `axum::serve` accepts without limit and gives a client as long as it likes to send its
//! headers, so ~20 000 half-sent requests (slowloris) held every file descriptor and new
//! clients timed out. Here:
//!
//! - at most [`ConnLimits::max_connections`] connections are open at once: past it the loop
//!   stops accepting (new clients wait in the kernel's accept queue, and are served as soon as
//!   a slot frees; they are not refused);
//! - a client has [`ConnLimits::header_timeout_ms`] to send a request's complete headers,
//!   counted from when the server starts waiting for them: the connection's start, or, on a
//!   keep-alive connection, the end of the previous response (hyper's `header_read_timeout`).
//!   So a half-sent request, and a keep-alive connection left unused, hold their slot at most
//!   that long;
//! - a connection on which no byte moves either way for [`ConnLimits::idle_timeout_ms`] while
//!   no handler runs is closed: a client that stops reading a response (hyper has no write
//!   timeout) cannot hold a slot for ever. Handlers themselves are bounded by the request
//!   timeout (`--timeout-ms`).
//!
//! Shutdown: stop accepting, ask every connection to finish (an idle one closes at once, one
//! mid-request after its response), and wait until the last has ended.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

/// Default time a client has to send a request's headers (`--header-timeout-ms`).
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default time a connection may stay open with no byte moving and no handler running
/// (`--idle-timeout-ms`).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default most connections open at once (`--max-connections`). Below the usual file
/// descriptor limits, with room left for the store and the attribution indexes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Largest `--max-connections` (a semaphore's permits are counted in `u32`).
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;
/// How long the loop waits after an accept error that is not one connection's own (e.g. out
/// of file descriptors) before accepting again, so it does not spin.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

/// The per-connection bounds (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_timeout_ms: DEFAULT_HEADER_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serve `app` on `listener` within `limits` until `shutdown` resolves; then stop accepting,
/// let every open connection finish its request in flight, and return once all are closed.
/// Each request carries the peer's [`ConnectInfo<SocketAddr>`] (the rate limiter's key).
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = limits.max_connections.clamp(1, MAX_CONNECTIONS_LIMIT);
    let permits = Arc::new(Semaphore::new(slots));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // A free slot first, then a connection: past the limit nothing is accepted, so the
        // waiting clients stay in the kernel's queue and hold no descriptor of ours.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = Arc::clone(&permits).acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, addr) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    eprintln!("shoulders serve: accept failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            addr,
            app.clone(),
            limits,
            stop_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds its slot until it has ended: taking them all waits for the last.
    let all = u32::try_from(slots).expect("at most MAX_CONNECTIONS_LIMIT");
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// Errors that concern only the connection being accepted.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// One connection, until the client or the server closes it. `_slot` is released on return.
async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    app: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        tower::service_fn(move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(addr));
            let busy = Busy::new(Arc::clone(&activity));
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await;
                drop(busy);
                response
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms.max(1)));
    let conn = builder.serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    let idle = Duration::from_millis(limits.idle_timeout_ms.max(1));
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            // Finished, or failed (a header timeout, a reset): either way it is over.
            _ = conn.as_mut() => return,
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            // Dropping the connection closes the socket.
            _ = activity.idle_for(idle) => return,
        }
    }
}

/// When a connection last made progress, and how many of its requests a handler is running.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last byte moved or handler finished.
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has happened for `idle` and no handler runs.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + idle;
            let now = Instant::now();
            if now >= due {
                if self.busy.load(Ordering::Relaxed) == 0 {
                    return;
                }
                // A handler runs (it is bounded by the request timeout): look again later.
                tokio::time::sleep(idle).await;
            } else {
                tokio::time::sleep_until(due.into()).await;
            }
        }
    }
}

/// Marks a handler running for as long as it lives (dropped also when the request is
/// cancelled).
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, noting every read or write that moved bytes.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
