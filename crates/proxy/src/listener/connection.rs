//! Serving one connection under its clocks: `--header-timeout` from its
//! start (and, over HTTP/1.1, from each later head's first byte),
//! `--idle-timeout` between calls and while the client's socket stays
//! full, and a graceful close when told to stop.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use reprise_record::ConnectionMetrics;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::ConnectionLimits;
use super::activity::{Activity, Tracked, Watched};
use super::gate::Accepted;

/// How long a connection closed for idleness may take to say goodbye
/// (finish a response being written, HTTP/2's GOAWAY) before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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
    let (limits, metrics) = slot.measures();
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
                slot,
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
                slot,
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            watch.drive(connection, &mut stop).await;
        }
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
    /// For the client to read what it is sent (its socket is full).
    Send,
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
        // The client's socket was found full then, this much written.
        let mut blocked_since: Option<(Instant, u64)> = None;
        loop {
            let written = self.activity.written.load(Ordering::Acquire);
            if !self.activity.write_blocked.load(Ordering::Acquire)
                || blocked_since.is_some_and(|(_, then)| written > then)
            {
                blocked_since = None;
            }
            let clock = if let Some(cut) = closing {
                Some((cut, None))
            } else if self.activity.write_blocked.load(Ordering::Acquire) {
                // A client that stops reading (a large answer it never
                // reads) would keep its place forever: nothing written
                // for --idle-timeout closes it, like nginx's send_timeout.
                let (since, _) = *blocked_since.get_or_insert((Instant::now(), written));
                Some((since + self.limits.idle_timeout, Some(Waiting::Send)))
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
                    Some(Waiting::Send) => {
                        // Written meanwhile: it reads, slowly.
                        let now = self.activity.written.load(Ordering::Acquire);
                        if blocked_since.is_some_and(|(_, then)| now > then) {
                            continue;
                        }
                        self.metrics.closed_idle_timeout.inc();
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
