//! Admitting connections: at most `--max-connections` open, and a
//! back-off after a failed accept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reprise_record::ConnectionMetrics;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::ConnectionLimits;

/// The first back-off after a failed accept; it doubles up to
/// [`MAX_BACKOFF`], and ends early when a connection closes.
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// The longest back-off after failed accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

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
    /// At the limit since it was last counted.
    holding_back: AtomicBool,
}

/// A connection accepted, holding its place under `--max-connections`
/// until it is dropped.
#[derive(Debug)]
pub struct Accepted {
    /// The client's socket.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    pub(super) slot: Slot,
}

/// A place under `--max-connections`; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    gate: Arc<Gate>,
}

impl Accepted {
    /// The socket, and the place it holds under `--max-connections` until
    /// the place is dropped: for a listener that serves the socket itself
    /// rather than through `serve_connection`.
    pub fn into_parts(self) -> (TcpStream, Slot) {
        (self.stream, self.slot)
    }
}

impl Slot {
    /// The limits it was taken under, and where its listener counts.
    pub(super) fn measures(&self) -> (ConnectionLimits, ConnectionMetrics) {
        (self.gate.limits, self.gate.metrics.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.metrics.open.dec();
        self.gate.holding_back.store(false, Ordering::Release);
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
                holding_back: AtomicBool::new(false),
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

    /// The next connection, once there is room for it: while
    /// `--max-connections` are open, the one accepted waits for a place
    /// and no other is accepted. Backs off after a failed accept.
    /// Dropping the future closes a connection waiting for a place.
    pub async fn accept(&self, listener: &TcpListener) -> Accepted {
        let gate = &self.inner;
        let mut backoff = MIN_BACKOFF;
        loop {
            // Accepted first, then given a place: a thread waiting for a
            // client holds no place, so that no serving thread's socket
            // (SO_REUSEPORT: the kernel picks one) waits for a place another
            // thread keeps while it waits for a client. A thread holds at
            // most one accepted connection while it waits for a place.
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    gate.metrics.accept_errors.inc();
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
                    continue;
                }
            };
            backoff = MIN_BACKOFF;
            let permit = match Arc::clone(&gate.slots).try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    // Counted once until a connection closes.
                    if !gate.holding_back.swap(true, Ordering::AcqRel) {
                        gate.metrics.limited.inc();
                    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;
    use tokio::time::Instant;

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
    fn running_out_of_descriptors_is_a_reason_to_back_off() {
        let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert!(is_resource_error(&emfile));
        let aborted =
            std::io::Error::from_raw_os_error(rustix::io::Errno::CONNABORTED.raw_os_error());
        assert!(!is_resource_error(&aborted));
    }
}
