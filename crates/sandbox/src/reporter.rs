//! The escape reporter: the listener every closed TCP connection is
//! redirected to. It reads where the connection was going
//! (`SO_ORIGINAL_DST`), records it, and closes the connection.
//!
//! Connections are accepted in the order they arrived, one listener at a
//! time, so a connection of reprise's own to the reporter's address (not
//! an escape: it is not recorded) comes back closed only once every
//! earlier attempt was recorded: [`flush`] reads the attempts to the end.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::escapes::EscapeLog;

/// The reporter's listeners: 127.0.0.1:PORT and, when the namespace has
/// IPv6, `[::1]:PORT` (nftables redirects to the loopback address of the
/// connection's family).
pub(crate) struct Reporter {
    listeners: Vec<std::net::TcpListener>,
    port: u16,
}

impl Reporter {
    /// Binds the listeners on a port not in `avoid` (the allowed ports,
    /// which the service or the mock will listen on). Runs on a thread
    /// inside the namespace.
    pub(crate) fn bind(avoid: &[u16]) -> std::io::Result<Reporter> {
        let mut taken = Vec::new();
        let (v4, port) = loop {
            let v4 = std::net::TcpListener::bind("127.0.0.1:0")?;
            let port = v4.local_addr()?.port();
            if !avoid.contains(&port) {
                break (v4, port);
            }
            taken.push(v4); // held so the next bind picks another port
        };
        drop(taken);
        let mut listeners = vec![v4];
        match std::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
            Ok(v6) => listeners.push(v6),
            // No IPv6 in the namespace: IPv6 connections fail at once.
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {}
            Err(e) => return Err(e),
        }
        for listener in &listeners {
            listener.set_nonblocking(true)?;
        }
        Ok(Reporter { listeners, port })
    }

    /// The port the ruleset redirects to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The addresses listened on.
    pub(crate) fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Accepts and reports until the runtime stops.
    pub(crate) async fn run(self, log: EscapeLog) -> std::io::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let listener = TcpListener::from_std(listener)?;
            let log = log.clone();
            tasks.spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => report(&stream, &log),
                        // Out of descriptors...: the queue waits, the
                        // reporter stays.
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

fn report(stream: &TcpStream, log: &EscapeLog) {
    let destination = match stream.local_addr() {
        Ok(SocketAddr::V4(_)) => rustix::net::sockopt::ip_original_dst(stream).map(SocketAddr::V4),
        Ok(SocketAddr::V6(_)) => {
            rustix::net::sockopt::ipv6_original_dst(stream).map(SocketAddr::V6)
        }
        Err(e) => Err(rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO)),
    };
    // A connection to the reporter's own address is reprise's (see
    // `flush`); the redirect leaves its destination as it was.
    let own = stream.local_addr().ok();
    if let Ok(destination) = destination
        && Some(destination) != own
    {
        log.tcp(destination);
    }
}

/// Returns once the reporter recorded every connection that reached it
/// before this call. Runs on a thread inside the namespace.
pub(crate) fn flush(addresses: &[SocketAddr]) {
    for address in addresses {
        // The reporter answers by closing: read to the end (bounded, so
        // a stopped reporter cannot hang reprise).
        if let Ok(mut stream) =
            std::net::TcpStream::connect_timeout(address, Duration::from_secs(2))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
        }
    }
}
