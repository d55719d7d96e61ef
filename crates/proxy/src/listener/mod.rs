//! Client connections under limits: the one accept loop of `reprise
//! record`, `mirror` and `mock` (and of the admin endpoint).
//!
//! - At most `--max-connections` are open (an upgraded one, a tunnel,
//!   until the tunnel closes): past it the listener stops accepting (new
//!   clients wait in the kernel's backlog; each serving thread holds the
//!   one it accepted last) until one closes; each time is counted, and
//!   the first is logged.
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
//!   head has `--header-timeout` from its first byte. It also bounds a
//!   client that stops reading: a connection whose socket stays full
//!   (nothing written) that long is closed, in a call or not.
//!
//! The default `--max-connections` is sized from `RLIMIT_NOFILE` (see
//! [`ConnectionLimits::default_max_connections`]).
//!
//! Its parts: [`ConnectionGate`] (`gate.rs`) admits connections;
//! [`serve_connection`] (`connection.rs`) serves one under its clocks;
//! `activity.rs` has the wrappers (service, body, I/O) that tell those
//! clocks what the connection is doing.

mod activity;
mod connection;
mod gate;

use std::time::Duration;

pub use activity::{TrackedBody, TrackedFuture};
pub use connection::serve_connection;
pub use gate::{Accepted, ConnectionGate};

/// File descriptors kept back from `RLIMIT_NOFILE` before it is shared
/// out between connections: standard streams, the tape, the listening
/// sockets, each runtime's epoll and wakers, the connection each serving
/// thread may hold while it waits for a place, the admin endpoint's
/// connections ([`ADMIN_CONNECTIONS`]) and a margin.
pub const RESERVED_FDS: u64 = 64;

/// File descriptors kept back for each serving thread on top of
/// [`RESERVED_FDS`]: its runtime's epoll and waker, the connection it
/// holds while it waits for a place, and its HTTP/2 connection to the
/// upstream.
pub const FDS_PER_THREAD: u64 = 4;

/// Connections the admin endpoint (`/metrics`, `/healthz`) serves at
/// once; its descriptors are within [`RESERVED_FDS`], so it answers
/// while the proxy is at `--max-connections`.
pub const ADMIN_CONNECTIONS: usize = 16;

/// `--max-connections` when `RLIMIT_NOFILE` cannot be read.
const FALLBACK_MAX_CONNECTIONS: usize = 4096;

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
            max_connections: ConnectionLimits::default_max_connections(1),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ConnectionLimits {
    /// Half of what `RLIMIT_NOFILE` (the soft limit) leaves after
    /// [`RESERVED_FDS`] and `FDS_PER_THREAD` (4) for each of `threads`
    /// serving threads: each client connection may hold a connection to
    /// the upstream (the proxy's HTTP/1.1 pools, bounded by this same
    /// number, the mock's `--fallthrough`), so a full house uses two
    /// descriptors a connection and still leaves the reserve for the
    /// tape and the admin endpoint. With one thread, under `ulimit -n
    /// 1024` that is 478; under 256, 94. At least 1; 4096 if the limit
    /// cannot be read, and no more than that when it is unlimited.
    pub fn default_max_connections(threads: usize) -> usize {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let reserved = RESERVED_FDS + FDS_PER_THREAD * threads.max(1) as u64;
        match limit {
            Some(limit) => usize::try_from(limit.saturating_sub(reserved) / 2)
                .unwrap_or(usize::MAX)
                .max(1),
            None => FALLBACK_MAX_CONNECTIONS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_leaves_the_reserve_and_two_descriptors_a_connection() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let max = ConnectionLimits::default_max_connections(3);
        match limit {
            Some(limit) => {
                assert!(max >= 1);
                let reserved = RESERVED_FDS + 3 * FDS_PER_THREAD;
                if limit > reserved {
                    assert_eq!(max as u64, (limit - reserved) / 2);
                }
            }
            None => assert_eq!(max, FALLBACK_MAX_CONNECTIONS),
        }
    }
}
