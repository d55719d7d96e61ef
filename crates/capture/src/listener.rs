//! Client connections under limits: the one accept loop of `reprise
//! record`, `mirror` and `mock` (and of the admin endpoint).
//!
//! - At most `--max-connections` are open: past it the listener stops
//!   accepting (new clients wait in the kernel's backlog) until one
//!   closes; each time is counted, and the first is logged.
//! - An accept that fails (out of file descriptors: `EMFILE`, `ENFILE`,
//!   `ENOBUFS`, `ENOMEM`) is counted and followed by a back-off that ends
//!   when a connection closes or after 10 ms doubling to 1 s, never a
//!   spin: the pending connection keeps the socket readable, so an accept
//!   loop that retried at once would burn a core.
//! - `--header-timeout` runs from the connection's start: a TLS
//!   handshake and the first request's head must both arrive within it,
//!   so a connection that never sends a byte is closed too.
//! - `--idle-timeout` runs whenever no call is in flight on a connection
//!   after its first: a kept-alive HTTP/1.1 connection, or an HTTP/2 one
//!   with no open stream, is closed (gracefully: HTTP/2 gets a GOAWAY)
//!   once it has been idle that long. Over HTTP/1.1 the next request's
//!   head has `--header-timeout` from its first byte.
//!
//! The default `--max-connections` is sized from `RLIMIT_NOFILE` (see
//! [`ConnectionLimits::default_max_connections`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use reprise_record::ConnectionMetrics;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

/// File descriptors kept back from `RLIMIT_NOFILE` before it is shared
/// out between connections: standard streams, the tape, the listening
/// sockets, each runtime's epoll and wakers, the admin endpoint's
/// connections ([`ADMIN_CONNECTIONS`]) and a margin.
pub const RESERVED_FDS: u64 = 64;

/// Connections the admin endpoint (`/metrics`, `/healthz`) serves at
/// once; its descriptors are within [`RESERVED_FDS`], so it answers
/// while the proxy is at `--max-connections`.
pub const ADMIN_CONNECTIONS: usize = 16;

/// `--max-connections` when `RLIMIT_NOFILE` cannot be read.
const FALLBACK_MAX_CONNECTIONS: usize = 4096;

/// The first back-off after a failed accept; it doubles up to
/// [`MAX_BACKOFF`], and ends early when a connection closes.
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// The longest back-off after failed accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How long a connection closed for idleness may take to say goodbye
/// (finish a response being written, HTTP/2's GOAWAY) before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How many connections and how long they may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; past it the listener stops accepting.
    pub max_connections: usize,
    /// From a connection's start to its first whole request head (a TLS
    /// handshake included).
    pub header_timeout: Duration,
    /// Between calls on a connection: no call in flight this long closes
    /// it.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: ConnectionLimits::default_max_connections(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ConnectionLimits {
    /// Half of what `RLIMIT_NOFILE` (the soft limit) leaves after
    /// [`RESERVED_FDS`]: each client connection may hold a connection to
    /// the upstream (the proxy's pool, the mock's `--fallthrough`), so a
    /// full house uses two descriptors a connection and still leaves the
    /// reserve for the tape and the admin endpoint. With `ulimit -n 1024`
    /// that is 480; with 256, 96. At least 1; 4096 if the limit cannot be
    /// read, and no more than that when it is unlimited.
    pub fn default_max_connections() -> usize {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        match limit {
            Some(limit) => usize::try_from(limit.saturating_sub(RESERVED_FDS) / 2)
                .unwrap_or(usize::MAX)
                .max(1),
            None => FALLBACK_MAX_CONNECTIONS,
        }
    }
}

/// Admits connections under [`ConnectionLimits`] and counts them; shared
/// by every serving thread of a listener (its limit is the listener's,
/// whatever the threads).
#[derive(Debug, Clone)]
pub struct ConnectionGate {
    inner: Arc<Gate>,
}

#[derive(Debug)]
struct Gate {
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    /// A connection closed: an accept backing off may try again.
    freed: Notify,
    metrics: ConnectionMetrics,
    /// What the one-time log lines call this listener.
    name: String,
    said_full: AtomicBool,
    said_failing: AtomicBool,
}

/// A connection accepted, holding its place under `--max-connections`
/// until it is dropped.
#[derive(Debug)]
pub struct Accepted {
    /// The client's socket.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    slot: Slot,
}

/// A place under `--max-connections`; dropping it frees the place.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    gate: Arc<Gate>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.metrics.open.dec();
        self.gate.freed.notify_waiters();
    }
}

impl ConnectionGate {
    /// A gate for the listener `name` (said in log lines), counting into
    /// `metrics`. `max_connections` is taken between 1 and `u32::MAX`.
    pub fn new(
        name: &str,
        mut limits: ConnectionLimits,
        metrics: ConnectionMetrics,
    ) -> ConnectionGate {
        limits.max_connections = limits
            .max_connections
            .clamp(1, usize::try_from(u32::MAX).unwrap_or(usize::MAX));
        ConnectionGate {
            inner: Arc::new(Gate {
                limits,
                slots: Arc::new(Semaphore::new(limits.max_connections)),
                freed: Notify::new(),
                metrics,
                name: name.to_string(),
                said_full: AtomicBool::new(false),
                said_failing: AtomicBool::new(false),
            }),
        }
    }

    /// The limits it applies.
    pub fn limits(&self) -> ConnectionLimits {
        self.inner.limits
    }

    /// What it counted.
    pub fn metrics(&self) -> &ConnectionMetrics {
        &self.inner.metrics
    }

    /// Returns once every connection it admitted has closed (to be
    /// bounded by the caller's drain).
    pub async fn all_closed(&self) {
        let all = u32::try_from(self.inner.limits.max_connections).unwrap_or(u32::MAX);
        // Holding every place means nobody holds one; they go back at once.
        let _all = self.inner.slots.acquire_many(all).await;
    }

    /// The next connection, once there is room for it. Waits while
    /// `--max-connections` are open; backs off after a failed accept.
    /// Cancel-safe: dropping the future loses no connection.
    pub async fn accept(&self, listener: &TcpListener) -> Accepted {
        let gate = &self.inner;
        let mut backoff = MIN_BACKOFF;
        loop {
            let permit = match Arc::clone(&gate.slots).try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    gate.metrics.limited.inc();
                    if !gate.said_full.swap(true, Ordering::Relaxed) {
                        eprintln!(
                            "reprise: {}: {} connections open (--max-connections): new ones wait until one closes (counted in reprise_connections_limited_total; said once)",
                            gate.name, gate.limits.max_connections
                        );
                    }
                    match Arc::clone(&gate.slots).acquire_owned().await {
                        Ok(permit) => permit,
                        // The semaphore is never closed.
                        Err(_) => continue,
                    }
                }
            };
            match listener.accept().await {
                Ok((stream, peer)) => {
                    gate.metrics.accepted.inc();
                    gate.metrics.open.inc();
                    return Accepted {
                        stream,
                        peer,
                        slot: Slot {
                            _permit: permit,
                            gate: Arc::clone(gate),
                        },
                    };
                }
                Err(error) => {
                    gate.metrics.accept_errors.inc();
                    drop(permit);
                    if !is_resource_error(&error) {
                        // That one connection failed (reset before it was
                        // accepted and the like): the next may not.
                        continue;
                    }
                    if !gate.said_failing.swap(true, Ordering::Relaxed) {
                        eprintln!(
                            "reprise: {}: cannot accept connections: {error}; backing off until one closes (counted in reprise_accept_errors_total; said once)",
                            gate.name
                        );
                    }
                    let freed = gate.freed.notified();
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = freed => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Out of descriptors or memory: retrying at once would fail again.
fn is_resource_error(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
            || code == rustix::io::Errno::NFILE.raw_os_error()
            || code == rustix::io::Errno::NOBUFS.raw_os_error()
            || code == rustix::io::Errno::NOMEM.raw_os_error()
    )
}

/// Serves `accepted` with `builder` (upgrades allowed), over TLS if
/// `tls` is given, under the gate's timeouts, until the connection ends;
/// `stop` turning true closes it gracefully (calls in flight finish).
pub async fn serve_connection<S, B>(
    accepted: Accepted,
    tls: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: S,
    mut stop: watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Accepted { stream, slot, .. } = accepted;
    let limits = slot.gate.limits;
    let metrics = slot.gate.metrics.clone();
    let header_deadline = Instant::now() + limits.header_timeout;
    let activity = Arc::new(Activity::default());
    let service = Tracked {
        inner: service,
        activity: Arc::clone(&activity),
    };
    let watch = Watch {
        activity,
        limits,
        header_deadline,
        metrics: &metrics,
    };
    match tls {
        None => {
            let stream = Watched {
                inner: stream,
                activity: Arc::clone(&watch.activity),
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            watch.drive(connection, &mut stop).await;
        }
        Some(acceptor) => {
            let handshake = tokio::time::timeout_at(header_deadline, acceptor.accept(stream)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(_)) => return,
                Err(_) => {
                    metrics.closed_header_timeout.inc();
                    return;
                }
            };
            if *stop.borrow_and_update() {
                return;
            }
            let tls = Watched {
                inner: tls,
                activity: Arc::clone(&watch.activity),
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            watch.drive(connection, &mut stop).await;
        }
    }
    drop(slot);
}

/// What one connection's calls are doing.
#[derive(Debug, Default)]
struct Activity {
    /// Calls whose answer is not over.
    in_flight: AtomicUsize,
    /// A call has come (its head was read).
    called: AtomicBool,
    /// Bytes read from the client (after TLS).
    read: AtomicU64,
    /// The client spoke HTTP/2 (its first bytes were the preface): bytes
    /// between its calls are control frames (PING, WINDOW_UPDATE), not
    /// the start of a request head.
    h2: AtomicBool,
    /// A call started or ended, or bytes came while none was in flight.
    changed: Notify,
}

impl Activity {
    fn on_read(&self, bytes: &[u8]) {
        let before = self.read.fetch_add(bytes.len() as u64, Ordering::AcqRel);
        if before == 0 && bytes.starts_with(b"PRI ") {
            self.h2.store(true, Ordering::Release);
        }
        if self.in_flight.load(Ordering::Acquire) == 0 {
            self.changed.notify_one();
        }
    }
}

pin_project_lite::pin_project! {
    /// A client's connection, telling its [`Activity`] what it reads.
    #[derive(Debug)]
    struct Watched<T> {
        #[pin]
        inner: T,
        activity: Arc<Activity>,
    }
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        std::task::ready!(this.inner.poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            this.activity.on_read(read);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// One call in flight on a connection, from its head to the end of its
/// answer.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Busy {
        activity.called.store(true, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.changed.notify_one();
        Busy(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// Why a connection's clock runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// For a request head: the first (from the connection's start), or
    /// a later one over HTTP/1.1 (from its first byte).
    Head,
    /// For its next call.
    Idle,
}

/// Watches a connection's clocks while it is served.
struct Watch<'a> {
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    header_deadline: Instant,
    metrics: &'a ConnectionMetrics,
}

impl Watch<'_> {
    async fn drive<C: GracefulConnection>(self, connection: C, stop: &mut watch::Receiver<bool>) {
        let mut connection = std::pin::pin!(connection);
        // Idle since then, having read this many bytes.
        let mut idle_since: Option<(Instant, u64)> = None;
        // The next request's head began then (HTTP/1.1).
        let mut head_since: Option<Instant> = None;
        // Closed for idleness: it has until then to finish.
        let mut closing: Option<Instant> = None;
        // Told to stop: the server's drain bounds what is left.
        let mut stopped = false;
        loop {
            let clock = if let Some(cut) = closing {
                Some((cut, None))
            } else if stopped || self.activity.in_flight.load(Ordering::Acquire) > 0 {
                (idle_since, head_since) = (None, None);
                None
            } else if !self.activity.called.load(Ordering::Relaxed) {
                Some((self.header_deadline, Some(Waiting::Head)))
            } else {
                let read = self.activity.read.load(Ordering::Acquire);
                let (since, read_then) = *idle_since.get_or_insert((Instant::now(), read));
                if read > read_then && !self.activity.h2.load(Ordering::Acquire) {
                    // A head has begun: it has the header timeout, as the
                    // first had.
                    let began = *head_since.get_or_insert_with(Instant::now);
                    Some((began + self.limits.header_timeout, Some(Waiting::Head)))
                } else {
                    Some((since + self.limits.idle_timeout, Some(Waiting::Idle)))
                }
            };
            tokio::select! {
                _ = connection.as_mut() => return,
                () = self.activity.changed.notified() => {}
                () = sleep_until(clock.map(|(at, _)| at)) => match clock.and_then(|(_, why)| why) {
                    // Nothing worth a goodbye came: cut it.
                    Some(Waiting::Head) => {
                        self.metrics.closed_header_timeout.inc();
                        return;
                    }
                    Some(Waiting::Idle) => {
                        self.metrics.closed_idle_timeout.inc();
                        connection.as_mut().graceful_shutdown();
                        closing = Some(Instant::now() + CLOSE_GRACE);
                    }
                    // Its grace is over.
                    None => return,
                },
                changed = stop.changed(), if !stopped => {
                    if changed.is_err() || *stop.borrow() {
                        stopped = true;
                        if closing.is_none() {
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A service whose calls are tracked on their connection's [`Activity`].
#[derive(Debug, Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let busy = Busy::new(&self.activity);
        TrackedFuture {
            inner: self.inner.call(request),
            busy: Some(busy),
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's answer on its way: the call stays in flight.
    #[derive(Debug)]
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        busy: Option<Busy>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answered = std::task::ready!(this.inner.poll(cx));
        let busy = this.busy.take();
        Poll::Ready(answered.map(|response| response.map(|inner| TrackedBody { inner, busy })))
    }
}

pin_project_lite::pin_project! {
    /// An answer's body: the call is in flight until it ends or is dropped.
    #[derive(Debug)]
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        busy: Option<Busy>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            this.busy.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_limit_accept_waits_until_a_connection_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            max_connections: 1,
            ..ConnectionLimits::default()
        };
        let gate = ConnectionGate::new("test", limits, ConnectionMetrics::default());
        let _clients = (
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        );
        let first = gate.accept(&listener).await;
        let listener = Arc::new(listener);
        let second = tokio::spawn({
            let (gate, listener) = (gate.clone(), Arc::clone(&listener));
            async move { gate.accept(&listener).await }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while gate.metrics().limited.get() == 0 {
            assert!(Instant::now() < deadline, "the limit is never counted");
            tokio::task::yield_now().await;
        }
        assert!(!second.is_finished());
        assert_eq!(gate.metrics().open.get(), 1);
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(gate.metrics().accepted.get(), 2);
        assert_eq!(gate.metrics().open.get(), 1);
        drop(second);
        tokio::time::timeout(Duration::from_secs(10), gate.all_closed())
            .await
            .unwrap();
        assert_eq!(gate.metrics().open.get(), 0);
    }

    #[test]
    fn the_default_limit_leaves_the_reserve_and_two_descriptors_a_connection() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let max = ConnectionLimits::default_max_connections();
        match limit {
            Some(limit) => {
                assert!(max >= 1);
                if limit > RESERVED_FDS {
                    assert_eq!(max as u64, (limit - RESERVED_FDS) / 2);
                }
            }
            None => assert_eq!(max, FALLBACK_MAX_CONNECTIONS),
        }
    }

    #[test]
    fn running_out_of_descriptors_is_a_reason_to_back_off() {
        let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert!(is_resource_error(&emfile));
        let aborted =
            std::io::Error::from_raw_os_error(rustix::io::Errno::CONNABORTED.raw_os_error());
        assert!(!is_resource_error(&aborted));
    }
}
