//! What the service tried that the sandbox closed: TCP connections to
//! addresses other than the allowed ports, DNS names the recording never
//! used, UDP packets.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// At most this many attempts of each kind are kept (a service retrying in
/// a loop must not grow reprise's memory); the counts go on.
const KEPT: usize = 1000;

/// A TCP connection the service tried to open to a closed destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TcpEscape {
    /// Where it was going (before the redirect).
    pub destination: SocketAddr,
    /// How many connections went there.
    pub attempts: u64,
}

impl fmt::Display for TcpEscape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the service tried to reach {} directly",
            self.destination
        )?;
        if self.attempts > 1 {
            write!(f, " ({} times)", self.attempts)?;
        }
        Ok(())
    }
}

/// A DNS question for a name the recording never used.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct DnsEscape {
    /// The name asked for, lower case, without the final dot.
    pub name: String,
    /// The record type (`A`, `AAAA`, `MX`...).
    pub record_type: String,
    /// How many times it was asked.
    pub attempts: u64,
}

impl fmt::Display for DnsEscape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the service looked up {} ({}), a name the recording never used",
            self.name, self.record_type
        )?;
        if self.attempts > 1 {
            write!(f, " ({} times)", self.attempts)?;
        }
        Ok(())
    }
}

/// Every attempt the sandbox closed, as read at one moment.
/// Serialises (serde) as `{"tcp": [{"destination": "10.1.2.3:5432",
/// "attempts": 1}], "dns": [...], "udp_dropped": 0}` for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Escapes {
    /// TCP connections, by destination, in the order first seen.
    pub tcp: Vec<TcpEscape>,
    /// DNS questions, by name and type, in the order first seen.
    pub dns: Vec<DnsEscape>,
    /// UDP packets dropped (other than DNS to the stub).
    pub udp_dropped: u64,
}

impl Escapes {
    /// Whether the service stayed inside.
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.dns.is_empty() && self.udp_dropped == 0
    }

    /// One line per attempt, for a report.
    pub fn messages(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.tcp.iter().map(ToString::to_string).collect();
        lines.extend(self.dns.iter().map(ToString::to_string));
        if self.udp_dropped > 0 {
            lines.push(format!(
                "the service sent {} UDP packet(s), dropped",
                self.udp_dropped
            ));
        }
        lines
    }
}

/// The attempts seen so far, shared by the reporter, the DNS stub and the
/// sandbox.
#[derive(Debug, Clone, Default)]
pub(crate) struct EscapeLog {
    inner: Arc<Mutex<Escapes>>,
}

impl EscapeLog {
    pub(crate) fn tcp(&self, destination: SocketAddr) {
        let mut escapes = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(seen) = escapes
            .tcp
            .iter_mut()
            .find(|e| e.destination == destination)
        {
            seen.attempts += 1;
        } else if escapes.tcp.len() < KEPT {
            escapes.tcp.push(TcpEscape {
                destination,
                attempts: 1,
            });
        }
    }

    pub(crate) fn dns(&self, name: &str, record_type: &str) {
        let mut escapes = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(seen) = escapes
            .dns
            .iter_mut()
            .find(|e| e.name == name && e.record_type == record_type)
        {
            seen.attempts += 1;
        } else if escapes.dns.len() < KEPT {
            escapes.dns.push(DnsEscape {
                name: name.to_owned(),
                record_type: record_type.to_owned(),
                attempts: 1,
            });
        }
    }

    pub(crate) fn snapshot(&self) -> Escapes {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_by_destination_and_read_as_sentences() {
        let log = EscapeLog::default();
        let db: SocketAddr = "10.1.2.3:5432".parse().unwrap();
        log.tcp(db);
        log.tcp(db);
        log.dns("api.example.com", "A");
        let mut escapes = log.snapshot();
        escapes.udp_dropped = 2;
        assert_eq!(
            escapes.messages(),
            [
                "the service tried to reach 10.1.2.3:5432 directly (2 times)",
                "the service looked up api.example.com (A), a name the recording never used",
                "the service sent 2 UDP packet(s), dropped",
            ]
        );
        assert!(!escapes.is_empty());
        assert_eq!(
            serde_json::to_string(&escapes).unwrap(),
            r#"{"tcp":[{"destination":"10.1.2.3:5432","attempts":2}],"dns":[{"name":"api.example.com","record_type":"A","attempts":1}],"udp_dropped":2}"#
        );
        assert!(Escapes::default().is_empty());
    }
}
