//! The escape reporter: the listener every closed TCP connection is
//! redirected to. It reads where the connection was going
//! (`SO_ORIGINAL_DST`), records it, and closes the connection.

use std::net::{Ipv6Addr, SocketAddr};

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

    /// Accepts and reports until the runtime stops.
    pub(crate) async fn run(self, log: EscapeLog) -> std::io::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let listener = TcpListener::from_std(listener)?;
            let log = log.clone();
            tasks.spawn(async move {
                loop {
                    // A failed accept (the service hit its descriptor
                    // limit...) costs one report, not the reporter.
                    if let Ok((stream, _)) = listener.accept().await {
                        report(&stream, &log);
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
    // A connection made to the reporter's own address was not redirected
    // and has no original destination: it is still an attempt, at that
    // address.
    let destination = destination.or_else(|_| stream.local_addr());
    if let Ok(destination) = destination {
        log.tcp(destination);
    }
}
