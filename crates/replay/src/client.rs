//! Connections to the target and sending one call on them.
//!
//! HTTP/1.1: a fixed set of keep-alive connections, each used by one call
//! at a time (the client is [`crate::h1`]'s). HTTP/2: a fixed set of
//! multiplexed connections that every worker shares, each driven by a
//! hyper connection task. Connections open on first use and again after the
//! target closes them; they only ever go to the target's address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reprise_model::grpc::Deframer;
use reprise_model::{Direction, ErrorKind, GrpcStatus, StreamMessage};
use reprise_net::grpc_status;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::body::ReplayBody;
use crate::call::{Call, Wire};
use crate::h1;

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
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
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

/// A transport to the target, plain or TLS.
type Io = TokioIo<Stream>;

/// TCP, or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// Cleartext.
    Plain(TcpStream),
    /// TLS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
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

    async fn open_h2(&self) -> Result<http2::SendRequest<ReplayBody>, Failure> {
        let io: Io = TokioIo::new(self.connect(Wire::Http2).await?);
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(8 << 20)
            .handshake(io)
            .await
            .map_err(|e| classify(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// The connections of one replay.
#[derive(Debug)]
pub struct Lanes {
    connector: Connector,
    h1: Vec<Mutex<Option<h1::Connection>>>,
    h2: Vec<Mutex<Option<http2::SendRequest<ReplayBody>>>>,
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
    h2: Option<http2::SendRequest<ReplayBody>>,
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
                let mut request = Request::new(ReplayBody::new(call, speed));
                *request.method_mut() = call.method.clone();
                *request.uri_mut() = call.uri.clone();
                *request.headers_mut() = call.headers.clone();
                *request.version_mut() = http::Version::HTTP_2;
                let response = self.send_h2(request).await?;
                read_response(response, call.grpc, keep, sent).await
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
        let mut guard = slot.lock().await;
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

    async fn send_h2(
        &mut self,
        request: Request<ReplayBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, Failure> {
        let mut sender = match self.h2.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                let slot = &self.lanes.h2[self.worker % self.lanes.h2.len()];
                let mut guard = slot.lock().await;
                let shared = match guard.take() {
                    Some(s) if !s.is_closed() => s,
                    _ => self.lanes.connector.open_h2().await?,
                };
                *guard = Some(shared.clone());
                shared
            }
        };
        sender.ready().await.map_err(|e| classify(&e))?;
        let result = sender.send_request(request).await;
        self.h2 = Some(sender);
        result.map_err(|e| classify(&e))
    }
}

/// Reads the whole HTTP/2 response whose head has just arrived.
async fn read_response(
    response: http::Response<hyper::body::Incoming>,
    grpc: bool,
    keep: Keep,
    sent: Instant,
) -> Result<Answer, Failure> {
    // Only the results tape shows it: no clock read otherwise.
    let head_after = if keep.messages {
        sent.elapsed()
    } else {
        Duration::ZERO
    };
    let (parts, mut body) = response.into_parts();
    let mut kept = BytesMut::new();
    let mut body_size = 0u64;
    let mut trailers = None;
    let mut deframer =
        (grpc && keep.messages).then(|| Deframer::new(Direction::Response, keep.body));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure {
            after_head: true,
            ..classify(&e)
        })?;
        match frame.into_data() {
            Ok(data) => {
                body_size += data.len() as u64;
                if let Some(deframer) = deframer.as_mut() {
                    deframer.push(nanos(sent.elapsed()), &data);
                } else if kept.len() < keep.body {
                    let room = (keep.body - kept.len()).min(data.len());
                    kept.extend_from_slice(&data[..room]);
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    let grpc_status = trailers
        .as_ref()
        .and_then(grpc_status)
        .or_else(|| grpc_status(&parts.headers));
    let messages = deframer.map_or_else(Vec::new, |d| d.finish(nanos(sent.elapsed())).0);
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: kept.freeze(),
        body_size,
        trailers,
        grpc: grpc_status,
        messages,
        head_after,
    })
}

/// Nanoseconds of a duration, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Sorts a hyper error into the kinds the report counts.
fn classify(error: &hyper::Error) -> Failure {
    let message = reprise_model::error::one_line(error);
    let io = reprise_model::error::io_failure(error);
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_parse() || error.is_parse_status() {
        ErrorKind::Protocol
    } else if io == Some(ErrorKind::Reset)
        || error.is_incomplete_message()
        || error.is_closed()
        || error.is_canceled()
    {
        ErrorKind::Reset
    } else if message.contains("protocol")
        || message.contains("frame")
        || message.contains("GOAWAY")
    {
        ErrorKind::Protocol
    } else {
        ErrorKind::Other
    };
    Failure::new(kind, message)
}
