//! Which HTTP version an upstream speaks (`--upstream-protocol`), asked
//! at start with `h2` and at the first call that needs the answer with
//! `auto`: over TLS, what ALPN settles on; in
//! cleartext, whether the upstream answers HTTP/2's connection preface
//! with a SETTINGS frame (prior knowledge, RFC 9113 §3.3). An HTTP/1.1
//! server reads the preface as a request line it does not know and
//! answers with an HTTP/1.1 error, or closes. The probe sends no request,
//! so the upstream's application never sees it.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a proxy talks to its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// gRPC, and calls that came in over HTTP/2 when the upstream speaks
    /// it (ALPN h2, or an h2c probe at the first such call), over HTTP/2; everything
    /// else over HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 for every call (gRPC calls fail: gRPC needs HTTP/2).
    H1,
    /// HTTP/2 for every call (prior knowledge for http, ALPN for https);
    /// an upstream that does not speak it is an error at start.
    H2,
}

/// The probe could not tell: the upstream could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No TCP connection.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No TLS session.
    #[error("TLS with {authority}: {source}")]
    Tls {
        /// `host:port`.
        authority: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Nothing within the time allowed.
    #[error("{authority} did not answer within {after:?}")]
    Timeout {
        /// `host:port`.
        authority: String,
        /// How long it was given.
        after: Duration,
    },
}

/// HTTP/2's client preface, an empty SETTINGS frame, and a GOAWAY that
/// ends the connection politely once the server has answered.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\
\x00\x00\x00\x04\x00\x00\x00\x00\x00";
const GOAWAY: &[u8] = b"\x00\x00\x08\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

/// Whether the server at `authority` (`host:port`) speaks HTTP/2: with
/// `tls` (its configuration and the name to check), whether ALPN agrees
/// on h2; without, whether it answers the h2c preface. `within` bounds
/// each step on its own: a connection or a TLS handshake that does not
/// finish in time is a [`ProbeError::Connect`] or [`ProbeError::Tls`]
/// (nothing was reached: the caller may ask again); only an upstream
/// that took the preface and did not answer it in time is a
/// [`ProbeError::Timeout`].
pub async fn speaks_h2(
    authority: &str,
    tls: Option<(&rustls::ClientConfig, ServerName<'static>)>,
    within: Duration,
) -> Result<bool, ProbeError> {
    let timed_out = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {within:?}"),
        )
    };
    let tcp = match tokio::time::timeout(within, TcpStream::connect(authority)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => {
            return Err(ProbeError::Connect {
                authority: authority.to_string(),
                source,
            });
        }
        Err(_) => {
            return Err(ProbeError::Connect {
                authority: authority.to_string(),
                source: timed_out(),
            });
        }
    };
    let _ = tcp.set_nodelay(true);
    if let Some((config, name)) = tls {
        let mut config = config.clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut session = match tokio::time::timeout(within, connector.connect(name, tcp)).await {
            Ok(Ok(session)) => session,
            Ok(Err(source)) => {
                return Err(ProbeError::Tls {
                    authority: authority.to_string(),
                    source,
                });
            }
            Err(_) => {
                return Err(ProbeError::Tls {
                    authority: authority.to_string(),
                    source: timed_out(),
                });
            }
        };
        let h2 = session.get_ref().1.alpn_protocol() == Some(b"h2");
        let _ = session.shutdown().await;
        return Ok(h2);
    }
    tokio::time::timeout(within, preface(tcp))
        .await
        .map_err(|_| ProbeError::Timeout {
            authority: authority.to_string(),
            after: within,
        })
}

/// Sends the h2c preface and reads the answer's first frame header.
async fn preface(mut tcp: TcpStream) -> bool {
    if tcp.write_all(PREFACE).await.is_err() {
        // Closed as the preface arrived: not an HTTP/2 server.
        return false;
    }
    // The server's preface is a SETTINGS frame: 9 bytes of frame header,
    // type 4, no ACK flag, stream 0.
    let mut header = [0u8; 9];
    let mut read = 0;
    while read < header.len() {
        match tcp.read(&mut header[read..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => read += n,
        }
    }
    let settings = header[3] == 4 && header[4] & 1 == 0 && header[5..9] == [0, 0, 0, 0];
    if settings {
        let _ = tcp.write_all(GOAWAY).await;
    }
    settings
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A server that answers anything with an HTTP/1.1 400, as an
    /// HTTP/1.1-only server does to the preface; and one that sends a
    /// SETTINGS frame.
    async fn server(answer: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(answer).await;
        });
        addr
    }

    #[tokio::test]
    async fn h2c_probe_tells_http1_from_http2() {
        let within = Duration::from_secs(5);
        let h1 = server(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
        assert!(!speaks_h2(&h1, None, within).await.unwrap());
        let h2 = server(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00").await;
        assert!(speaks_h2(&h2, None, within).await.unwrap());
        let gone = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        assert!(matches!(
            speaks_h2(&gone, None, within).await,
            Err(ProbeError::Connect { .. })
        ));
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (held, hold) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            // Holds the connection open, silent, until the test ends.
            let _ = hold.await;
        });
        let answer = speaks_h2(&addr, None, Duration::from_millis(200)).await;
        assert!(
            matches!(answer, Err(ProbeError::Timeout { .. })),
            "{answer:?}"
        );
        drop(held);
    }

    /// An upstream whose accept queue is full takes no new connection:
    /// the probe reached nobody, which is not a "no".
    #[tokio::test]
    async fn a_connection_that_does_not_finish_is_not_a_timeout_of_the_preface() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => queued.push(stream),
                Ok(Err(error)) => panic!("{error}"),
                Err(_) => break,
            }
            assert!(queued.len() < 64, "the accept queue never filled");
        }
        let answer = speaks_h2(&addr.to_string(), None, Duration::from_millis(200)).await;
        assert!(
            matches!(answer, Err(ProbeError::Connect { .. })),
            "{answer:?}"
        );
        drop(listener);
    }
}
