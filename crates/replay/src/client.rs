//! Connections to the target and sending one call on them.
//!
//! HTTP/1.1: a fixed set of keep-alive connections, each used by one call
//! at a time (the client is [`crate::h1`]'s). HTTP/2: a fixed set of
//! multiplexed connections that every worker shares, each driven by a
//! task of its own (calls are made by [`crate::h2`]). Connections open on
//! first use and again after the target closes them; they only ever go to
//! the target's address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use reprise_model::{ErrorKind, GrpcStatus, StreamMessage};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::call::{Call, Wire};
use crate::{h1, h2};
pub use reprise_net::stream::Stream;

/// What came back for one call.
#[derive(Debug)]
pub struct Answer {
    /// Response status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body's first bytes, up to the size cap (empty when not kept).
    pub body: Bytes,
    /// Full body size.
    pub body_size: u64,
    /// Response trailers.
    pub trailers: Option<HeaderMap>,
    /// gRPC status, from the trailers or a trailers-only head.
    pub grpc: Option<GrpcStatus>,
    /// gRPC response messages, offsets from the send (kept only when
    /// results are written).
    pub messages: Vec<StreamMessage>,
    /// Time from the send to the response head.
    pub head_after: Duration,
}

/// A call that failed below HTTP.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened, in one line.
    pub message: String,
    /// Whether the response head had arrived.
    pub after_head: bool,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            after_head: false,
        }
    }
}

/// Opens connections to the target.
#[derive(Debug)]
pub struct Connector {
    addrs: Vec<SocketAddr>,
    tls: Option<Tls>,
}

#[derive(Debug)]
struct Tls {
    h1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Connector {
    /// A connector to `addrs`; with `tls`, speaking TLS to `host`.
    pub fn new(
        addrs: Vec<SocketAddr>,
        tls: Option<(ClientConfig, String)>,
    ) -> Result<Self, crate::ReplayError> {
        let tls = match tls {
            None => None,
            Some((config, host)) => {
                let name =
                    ServerName::try_from(host.clone()).map_err(|_| crate::ReplayError::Target {
                        url: host,
                        reason: "not a valid TLS server name".to_string(),
                    })?;
                let mut h1 = config.clone();
                h1.alpn_protocols = vec![b"http/1.1".to_vec()];
                let mut h2 = config;
                h2.alpn_protocols = vec![b"h2".to_vec()];
                Some(Tls {
                    h1: Arc::new(h1),
                    h2: Arc::new(h2),
                    name,
                })
            }
        };
        Ok(Connector { addrs, tls })
    }

    async fn connect(&self, wire: Wire) -> Result<Stream, Failure> {
        let mut last = Failure::new(ErrorKind::Connect, "no address to connect to");
        for addr in &self.addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return self.secure(tcp, wire).await;
                }
                Err(e) => {
                    // Refused, unreachable: connect. A peer that accepted
                    // and reset at once: reset.
                    let kind = match e.kind() {
                        std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted => ErrorKind::Reset,
                        std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
                        _ => ErrorKind::Connect,
                    };
                    last = Failure::new(kind, format!("connect to {addr}: {e}"));
                }
            }
        }
        Err(last)
    }

    async fn secure(&self, tcp: TcpStream, wire: Wire) -> Result<Stream, Failure> {
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let config = match wire {
            Wire::Http1 => tls.h1.clone(),
            Wire::Http2 => tls.h2.clone(),
        };
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(tls.name.clone(), tcp)
            .await
            .map_err(|e| Failure::new(ErrorKind::Tls, format!("TLS handshake: {e}")))?;
        if wire == Wire::Http2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(Failure::new(
                ErrorKind::Tls,
                "the target does not offer HTTP/2 over TLS (ALPN h2)",
            ));
        }
        Ok(Stream::Tls(Box::new(stream)))
    }

    async fn open_h1(&self) -> Result<h1::Connection, Failure> {
        Ok(h1::Connection::new(self.connect(Wire::Http1).await?))
    }

    async fn open_h2(&self) -> Result<::h2::client::SendRequest<Bytes>, Failure> {
        h2::open(self.connect(Wire::Http2).await?).await
    }
}

/// The connections of one replay.
#[derive(Debug)]
pub struct Lanes {
    connector: Connector,
    h1: Vec<Mutex<Option<h1::Connection>>>,
    h2: Vec<Mutex<Option<::h2::client::SendRequest<Bytes>>>>,
}

impl Lanes {
    /// `h1` HTTP/1.1 and `h2` HTTP/2 connection slots.
    pub fn new(connector: Connector, h1: usize, h2: usize) -> Self {
        Lanes {
            connector,
            h1: (0..h1.max(1)).map(|_| Mutex::new(None)).collect(),
            h2: (0..h2.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }
}

/// A worker's handle on the lanes: which slots it uses, and its own copy
/// of its HTTP/2 sender.
#[derive(Debug)]
pub struct Client {
    lanes: Arc<Lanes>,
    worker: usize,
    h2: Option<::h2::client::SendRequest<Bytes>>,
}

/// What a call keeps of the response.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    /// Body bytes kept (0: only counted).
    pub body: usize,
    /// Cut gRPC responses into messages, and time the response head:
    /// results are written.
    pub messages: bool,
}

impl Client {
    /// Worker `worker`'s client.
    pub fn new(lanes: Arc<Lanes>, worker: usize) -> Self {
        Client {
            lanes,
            worker,
            h2: None,
        }
    }

    /// Sends `call` (leaving at `sent`; gRPC messages paced by `speed`)
    /// and reads the whole response.
    pub async fn send(
        &mut self,
        call: &Arc<Call>,
        speed: Option<f64>,
        keep: Keep,
        sent: Instant,
    ) -> Result<Answer, Failure> {
        match call.wire {
            Wire::Http1 => self.send_h1(call, keep, sent).await,
            Wire::Http2 => {
                let mut sender = self.h2_sender().await?;
                let result = h2::call(&mut sender, call, speed, keep, sent).await;
                self.h2 = Some(sender);
                result
            }
        }
    }

    /// Sends on this worker's HTTP/1.1 slot. A kept connection the target
    /// has closed in the meantime is replaced before the request goes
    /// out; a request that left is never sent twice. The connection goes
    /// back to the slot only after a complete answer that allows it; a
    /// call that fails or is dropped (timeout, stop) closes it.
    async fn send_h1(&mut self, call: &Call, keep: Keep, sent: Instant) -> Result<Answer, Failure> {
        let slot = &self.lanes.h1[self.worker % self.lanes.h1.len()];
        // A worker usually has its slot to itself: no waiting to set up.
        let mut guard = match slot.try_lock() {
            Ok(guard) => guard,
            Err(_) => slot.lock().await,
        };
        let kept = guard
            .take()
            .and_then(|mut kept| (!kept.closed_while_idle()).then_some(kept));
        let mut connection = match kept {
            Some(kept) => kept,
            None => self.lanes.connector.open_h1().await?,
        };
        let (answer, reuse) = connection.call(call, keep, sent).await?;
        if reuse == h1::Reuse::Keep {
            *guard = Some(connection);
        }
        Ok(answer)
    }

    /// A sender ready for a new stream: this worker's own copy, or the
    /// slot's shared connection, opened (again) when it has gone.
    async fn h2_sender(&mut self) -> Result<::h2::client::SendRequest<Bytes>, Failure> {
        if let Some(own) = self.h2.take() {
            match own.ready().await {
                Ok(ready) => return Ok(ready),
                Err(e) if !h2::connection_gone(&e) => return Err(h2::classify(&e, false)),
                Err(_) => {}
            }
        }
        let slot = &self.lanes.h2[self.worker % self.lanes.h2.len()];
        let mut guard = slot.lock().await;
        if let Some(shared) = guard.take() {
            match shared.ready().await {
                Ok(ready) => {
                    *guard = Some(ready.clone());
                    return Ok(ready);
                }
                Err(e) if !h2::connection_gone(&e) => return Err(h2::classify(&e, false)),
                Err(_) => {}
            }
        }
        let fresh = self.lanes.connector.open_h2().await?;
        *guard = Some(fresh.clone());
        fresh.ready().await.map_err(|e| h2::classify(&e, false))
    }
}

/// Nanoseconds of a duration, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
