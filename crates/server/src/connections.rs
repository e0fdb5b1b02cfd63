//! Serving connections: the accept loop, with the limits that keep a flood of connections from
//! stopping the server, and graceful shutdown.
//!
//! - At most `server.max_connections` connections are served at once. At the limit nothing is
//!   accepted until one closes; newcomers wait in the kernel's listen queue, so a flood slows
//!   service down instead of exhausting the process's open files.
//! - A TLS handshake, and a request's headers, must come within `server.header_read_timeout`.
//! - A kept-alive connection with no request in progress is closed after `server.idle_timeout`.
//!
//! This is our own loop over hyper rather than `axum::serve`, which offers no timeout at all for
//! a connection that sends part of a request and then nothing. The timeouts are ours too, not
//! hyper's `header_read_timeout`: hyper (1.12) starts that clock whenever the connection is ready
//! for a request head — when it opens, and again as soon as a response is done — and stops it
//! when the head is parsed, so it would close every kept-alive connection after the header
//! timeout and leave no room for a longer idle one. Here, as in Go's `net/http`, the first
//! request's headers are timed from the connection's start, and a kept-alive connection waits
//! `idle_timeout` for its next request, whose header clock starts at its first byte.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wharf_core::network::{IpNetwork, client_behind_proxies};

use wharf_config::ServerConfig;

/// How long to wait after a failed accept before accepting again: such an error (out of open
/// files, say) lasts until something closes, and retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How often, at most, the server logs that it serves `max_connections` connections.
const AT_LIMIT_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Open files kept for what is not a connection: the database's connections, the listener,
/// the data folder's lock, the file watches, the runtime.
const RESERVED_FILES: u64 = 128;

/// Open files one connection may hold: its socket, and a blob file while it uploads or
/// downloads one.
const FILES_PER_CONNECTION: u64 = 2;

/// The limits on the connections served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a TLS handshake may take, and a request's headers (see the module doc).
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How many connections are served at once.
    pub max_connections: usize,
    /// The proxies (load balancers) whose forwarding headers say who a request's client is.
    pub trusted_proxies: Arc<[IpNetwork]>,
}

impl ConnectionLimits {
    /// The limits of `config`, with `max_connections` lowered (and a warning) to what
    /// `open_file_limit` (the soft limit, `None` for none) leaves room for.
    pub fn new(config: &ServerConfig, open_file_limit: Option<u64>) -> ConnectionLimits {
        let wanted = usize::try_from(config.max_connections).unwrap_or(usize::MAX);
        let room = open_file_limit.map(|limit| {
            let room = limit.saturating_sub(RESERVED_FILES) / FILES_PER_CONNECTION;
            usize::try_from(room).unwrap_or(usize::MAX).max(1)
        });
        let max_connections = match (room, open_file_limit) {
            (Some(room), Some(limit)) if room < wanted => {
                tracing::warn!(
                    "server.max_connections is {wanted}, but the open-file limit of {limit} \
                     leaves room for {room} connections: serving at most {room} at once; raise \
                     the limit (ulimit -n, systemd's LimitNOFILE) to serve more"
                );
                room
            }
            _ => wanted,
        };
        ConnectionLimits {
            header_read_timeout: config.header_read_timeout.0,
            idle_timeout: config.idle_timeout.0,
            max_connections,
            trusted_proxies: config.trusted_proxies.clone().into(),
        }
    }
}

/// The client of a request from `peer`: `peer` itself unless it is a trusted proxy.
fn client_of(
    peer: SocketAddr,
    trusted: &[IpNetwork],
    headers: &axum::http::HeaderMap,
) -> SocketAddr {
    if trusted.is_empty() {
        return peer;
    }
    let values = |name| -> Vec<&str> {
        headers
            .get_all(name)
            .into_iter()
            .filter_map(|value| value.to_str().ok())
            .collect()
    };
    let client = client_behind_proxies(
        peer.ip(),
        trusted,
        &values(axum::http::header::FORWARDED),
        &values(axum::http::header::HeaderName::from_static(
            "x-forwarded-for",
        )),
    );
    SocketAddr::new(client, peer.port())
}

/// Raises the soft limit on open files to the hard limit, as Go's runtime does at start (the
/// soft limit, often 1024, exists for old programs using `select`; every connection takes a
/// file) and logs it. Returns the soft limit in effect, `None` if there is none.
pub fn raise_open_file_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, "cannot raise the open-file limit to the hard limit");
        }
    }
    let current = getrlimit(Resource::Nofile).current;
    match current {
        Some(limit) => tracing::info!("open-file limit: {limit}"),
        None => tracing::info!("open-file limit: none"),
    }
    current
}

/// Serves `app` on the connections `listener` accepts (over TLS with `tls`), within `limits`,
/// until `stop` resolves; then closes the port, lets each connection finish the request it is
/// serving (kept-alive connections close after it), and returns once the last has closed.
/// Dropping the future closes every connection at once.
pub async fn serve_connections(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) {
    let closing = CancellationToken::new();
    let _close_when_dropped = closing.clone().drop_guard();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let shared = Arc::new(Shared {
        app: TowerToHyperService::new(app),
        http: http1_builder(),
        tls,
        limits,
        finishing: closing.child_token(),
        closing,
    });
    let connections = TaskTracker::new();
    let mut warned_at_limit: Option<Instant> = None;
    let mut stop = pin!(stop);
    loop {
        if slots.available_permits() == 0
            && warned_at_limit.is_none_or(|at| at.elapsed() >= AT_LIMIT_WARNING_EVERY)
        {
            warned_at_limit = Some(Instant::now());
            tracing::warn!(
                max_connections = shared.limits.max_connections,
                "serving server.max_connections connections: new ones wait until one closes"
            );
        }
        let (slot, stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        connections.spawn(shared.clone().serve(stream, peer, slot));
    }
    // Closed now, the port refuses newcomers instead of leaving them unanswered in its queue.
    drop(listener);
    shared.finishing.cancel();
    connections.close();
    connections.wait().await;
}

/// HTTP/1.1 with keep-alive, as `axum::serve` served it (HTTP/2 is not offered, in the clear
/// or by TLS's ALPN). hyper's own header timeout stays off: this module times headers itself.
fn http1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.header_read_timeout(None);
    builder
}

/// Takes a slot, then accepts a connection into it. The slot comes first: at the limit, nothing
/// is accepted, and newcomers wait in the listen queue.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (OwnedSemaphorePermit, TcpStream, SocketAddr) {
    let Ok(slot) = slots.clone().acquire_owned().await else {
        // The semaphore is never closed.
        return std::future::pending().await;
    };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return (slot, stream, peer),
            // The client gave up before it was accepted: nothing to wait for.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) => {}
            Err(error) => {
                tracing::error!(%error, "cannot accept a connection; trying again in a second");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// What every connection's task needs.
struct Shared {
    app: TowerToHyperService<Router>,
    http: http1::Builder,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    /// Cancelled to finish: requests in progress complete, then connections close.
    finishing: CancellationToken,
    /// Cancelled to close every connection now (a child, `finishing`, is cancelled with it).
    closing: CancellationToken,
}

impl Shared {
    /// Serves one connection, holding its slot until it closes.
    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        _slot: OwnedSemaphorePermit,
    ) {
        let Some(acceptor) = &self.tls else {
            return self.serve_http(stream, peer).await;
        };
        // A handshake that never ends must not keep its slot; one under way at shutdown has no
        // request to finish.
        let handshake = tokio::select! {
            () = self.finishing.cancelled() => return,
            handshake = tokio::time::timeout(
                self.limits.header_read_timeout,
                acceptor.accept(stream),
            ) => handshake,
        };
        match handshake {
            Ok(Ok(stream)) => self.serve_http(stream, peer).await,
            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    /// Serves HTTP on a connection, closing it when its clock runs out.
    async fn serve_http<S>(&self, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let clock = Arc::new(ConnectionClock::new(&self.limits));
        let io = TokioIo::new(Watched {
            inner: stream,
            clock: clock.clone(),
        });
        let service = hyper::service::service_fn({
            let (app, clock) = (self.app.clone(), clock.clone());
            let trusted = self.limits.trusted_proxies.clone();
            move |mut request: hyper::Request<Incoming>| {
                // What `into_make_service_with_connect_info` gave handlers: the client's
                // address — behind a trusted proxy, the one it says it forwards for, so that
                // the drain's pushes and the failed-login limits tell clients apart.
                let client = client_of(peer, &trusted, request.headers());
                request.extensions_mut().insert(ConnectInfo(client));
                let in_progress = clock.request_started();
                let response = app.call(request);
                async move {
                    let response = response.await?;
                    Ok::<_, Infallible>(response.map(|body| ResponseBody {
                        body,
                        _in_progress: in_progress,
                    }))
                }
            }
        });
        let mut connection = pin!(self.http.serve_connection(io, service));
        let mut finishing = false;
        loop {
            let deadline = clock.deadline();
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                () = self.finishing.cancelled(), if !finishing => {
                    finishing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = self.closing.cancelled() => return,
                () = clock.changed.notified() => {}
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() =>
                {
                    if let Some(reason) = clock.expired() {
                        tracing::debug!(%peer, "closing the connection: {reason}");
                        return;
                    }
                }
            }
        }
    }
}

/// A connection's timeouts: by when its next request's headers must have come, or nothing while
/// a request is in progress.
struct ConnectionClock {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    phase: Mutex<Phase>,
    /// Whether the connection waits for a request of which no byte has come yet. The reader
    /// checks it on every read (one atomic load) and takes the lock only for that first byte;
    /// the lock orders the phases, this flag only saves taking it.
    awaiting_first_byte: AtomicBool,
    /// Notified when the deadline changes, for the connection's task to follow it.
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in progress: the next one's headers must be complete by `deadline`.
    Waiting {
        deadline: Instant,
        reason: &'static str,
    },
    /// Requests in progress, from their headers to their response's last frame (hyper serves
    /// one at a time; the count only makes an overlap of two harmless).
    Busy { requests: usize },
}

const HEADERS_LATE: &str = "the request's headers did not come within server.header_read_timeout";
const IDLE: &str = "no request came within server.idle_timeout";

impl ConnectionClock {
    fn new(limits: &ConnectionLimits) -> ConnectionClock {
        ConnectionClock {
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            // A new connection is not idle: its first request is timed from now, byte or not.
            phase: Mutex::new(Phase::Waiting {
                deadline: Instant::now() + limits.header_read_timeout,
                reason: HEADERS_LATE,
            }),
            awaiting_first_byte: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The phase is a plain value, whole whenever the lock is released: a panic elsewhere
        // while it was held leaves nothing half-changed.
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn deadline(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Waiting { deadline, .. } => Some(deadline),
            Phase::Busy { .. } => None,
        }
    }

    /// Why the connection must close, if its deadline has passed.
    fn expired(&self) -> Option<&'static str> {
        match *self.phase() {
            Phase::Waiting { deadline, reason } if deadline <= Instant::now() => Some(reason),
            _ => None,
        }
    }

    /// Bytes came: if they begin a request on an idle connection, its headers are timed from now.
    fn bytes_read(&self) {
        if !self.awaiting_first_byte.load(Ordering::Relaxed)
            || !self.awaiting_first_byte.swap(false, Ordering::Relaxed)
        {
            return;
        }
        let mut phase = self.phase();
        if let Phase::Waiting { .. } = *phase {
            *phase = Phase::Waiting {
                deadline: Instant::now() + self.header_read_timeout,
                reason: HEADERS_LATE,
            };
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// A request's headers came: no timeout applies until its response is done.
    fn request_started(self: &Arc<Self>) -> RequestInProgress {
        let mut phase = self.phase();
        self.awaiting_first_byte.store(false, Ordering::Relaxed);
        *phase = match *phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            Phase::Waiting { .. } => Phase::Busy { requests: 1 },
        };
        // No notification: the task finds the connection busy when its old deadline passes.
        RequestInProgress(self.clone())
    }

    /// A response is done (or abandoned): with no other request in progress, the connection is
    /// idle from now.
    ///
    /// Bytes of the next request that hyper read before now sit in its buffer and are parsed at
    /// once; if they are only part of the headers, the rest is timed from its first byte. hyper
    /// may still be flushing the last bytes of the response it buffered: far quicker than any
    /// sensible `idle_timeout`.
    fn request_ended(&self) {
        let mut phase = self.phase();
        if let Phase::Busy { requests } = *phase {
            *phase = if requests > 1 {
                Phase::Busy {
                    requests: requests - 1,
                }
            } else {
                self.awaiting_first_byte.store(true, Ordering::Relaxed);
                Phase::Waiting {
                    deadline: Instant::now() + self.idle_timeout,
                    reason: IDLE,
                }
            };
        }
        drop(phase);
        self.changed.notify_one();
    }
}

/// A request in progress, until dropped: with its response's body, which hyper drops after
/// sending the last frame (or when the connection ends).
struct RequestInProgress(Arc<ConnectionClock>);

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response's body, which keeps its request in progress until it is done.
struct ResponseBody {
    body: axum::body::Body,
    _in_progress: RequestInProgress,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's stream, telling its clock when bytes come.
struct Watched<S> {
    inner: S,
    clock: Arc<ConnectionClock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.bytes_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits_with(max_connections: u32, open_file_limit: Option<u64>) -> usize {
        let config = ServerConfig {
            max_connections,
            ..ServerConfig::default()
        };
        ConnectionLimits::new(&config, open_file_limit).max_connections
    }

    #[test]
    fn max_connections_fits_the_open_file_limit() {
        assert_eq!(limits_with(8192, None), 8192);
        assert_eq!(limits_with(8192, Some(1 << 20)), 8192);
        assert_eq!(limits_with(8192, Some(1024)), (1024 - 128) / 2);
        assert_eq!(limits_with(100, Some(1024)), 100);
        assert_eq!(limits_with(100, Some(10)), 1, "never none at all");
    }
}
