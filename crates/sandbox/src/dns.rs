//! The DNS stub on 127.0.0.1:53 inside the namespace: the names the
//! recording used resolve to 127.0.0.1 (A; no AAAA, so clients use IPv4),
//! every other name is NXDOMAIN and reported.
//!
//! The message format is `hickory-proto`'s (the protocol crate of the
//! Hickory DNS project, the resolver reqwest and others use): parsing DNS
//! by hand is where stubs go wrong (compression pointers, EDNS).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType, rdata::A};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::escapes::EscapeLog;
use crate::firewall::DNS_PORT;

/// The names that resolve, normalised (lower case, no final dot).
#[derive(Debug, Clone)]
pub(crate) struct Names(Arc<HashSet<String>>);

impl Names {
    pub(crate) fn new(names: &[String]) -> Names {
        let mut set: HashSet<String> = names.iter().map(|n| normalise(n)).collect();
        set.insert("localhost".to_owned());
        Names(Arc::new(set))
    }

    fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The stub's sockets, bound inside the namespace.
pub(crate) struct DnsStub {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
}

impl DnsStub {
    /// Binds 127.0.0.1:53, UDP and TCP. Runs on a thread inside the
    /// namespace (where reprise may bind port 53).
    pub(crate) fn bind() -> std::io::Result<DnsStub> {
        let at = SocketAddr::from((Ipv4Addr::LOCALHOST, DNS_PORT));
        let udp = std::net::UdpSocket::bind(at)?;
        udp.set_nonblocking(true)?;
        let tcp = std::net::TcpListener::bind(at)?;
        tcp.set_nonblocking(true)?;
        Ok(DnsStub { udp, tcp })
    }

    /// Answers until the runtime stops.
    pub(crate) async fn run(self, names: Names, log: EscapeLog) -> std::io::Result<()> {
        let udp = UdpSocket::from_std(self.udp)?;
        let tcp = TcpListener::from_std(self.tcp)?;
        let tcp_names = names.clone();
        let tcp_log = log.clone();
        tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = tcp.accept().await {
                    let names = tcp_names.clone();
                    let log = tcp_log.clone();
                    tokio::spawn(async move { serve_tcp(stream, &names, &log).await });
                }
            }
        });
        let mut buffer = vec![0u8; 4096];
        loop {
            let Ok((len, peer)) = udp.recv_from(&mut buffer).await else {
                continue;
            };
            if let Some(answer) = answer(&buffer[..len], &names, &log) {
                // A lost answer is retried by the client, as over a network.
                let _ = udp.send_to(&answer, peer).await;
            }
        }
    }
}

/// DNS over TCP: each message prefixed by its length (RFC 1035 4.2.2).
async fn serve_tcp(mut stream: TcpStream, names: &Names, log: &EscapeLog) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut message = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut message).await.is_err() {
            return;
        }
        let Some(answer) = answer(&message, names, log) else {
            return;
        };
        let Ok(len) = u16::try_from(answer.len()) else {
            return;
        };
        if stream.write_u16(len).await.is_err() || stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// The answer to one question message; `None` for bytes that are not a DNS
/// query (nothing sensible to answer).
pub(crate) fn answer(query: &[u8], names: &Names, log: &EscapeLog) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    if query.message_type() != MessageType::Query {
        return None;
    }
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true);
    let mut code = ResponseCode::NoError;
    for question in query.queries() {
        reply.add_query(question.clone());
        let name = normalise(&question.name().to_ascii());
        let record_type = question.query_type();
        if !names.contains(&name) {
            log.dns(&name, &record_type.to_string());
            code = ResponseCode::NXDomain;
            continue;
        }
        if record_type == RecordType::A {
            reply.add_answer(Record::from_rdata(
                question.name().clone(),
                5,
                RData::A(A(Ipv4Addr::LOCALHOST)),
            ));
        }
        // Any other type of a known name: no data (NOERROR, no answer).
    }
    reply.set_response_code(code);
    reply.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn ask(name: &str, record_type: RecordType, names: &Names, log: &EscapeLog) -> Message {
        let mut query = Message::new();
        query
            .set_id(7)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
        let bytes = answer(&query.to_vec().unwrap(), names, log).unwrap();
        Message::from_vec(&bytes).unwrap()
    }

    #[test]
    fn recorded_names_resolve_to_loopback_and_others_are_reported() {
        let names = Names::new(&["Payments.Internal.".to_owned()]);
        let log = EscapeLog::default();

        let a = ask("payments.internal.", RecordType::A, &names, &log);
        assert_eq!(a.id(), 7);
        assert_eq!(a.response_code(), ResponseCode::NoError);
        let addresses: Vec<_> = a.answers().iter().map(|r| r.data().clone()).collect();
        assert_eq!(addresses, [RData::A(A(Ipv4Addr::LOCALHOST))]);

        let aaaa = ask("PAYMENTS.internal", RecordType::AAAA, &names, &log);
        assert_eq!(aaaa.response_code(), ResponseCode::NoError);
        assert!(aaaa.answers().is_empty());

        let other = ask("db.example.com.", RecordType::A, &names, &log);
        assert_eq!(other.response_code(), ResponseCode::NXDomain);
        let escapes = log.snapshot();
        assert_eq!(escapes.dns.len(), 1);
        assert_eq!(escapes.dns[0].name, "db.example.com");
        assert_eq!(escapes.dns[0].record_type, "A");
    }

    #[test]
    fn bytes_that_are_not_a_query_get_no_answer() {
        let log = EscapeLog::default();
        assert!(answer(b"\x00\x01garbage", &Names::new(&[]), &log).is_none());
        assert!(log.snapshot().is_empty());
    }
}
