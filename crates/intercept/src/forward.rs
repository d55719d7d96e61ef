//! [`Forward`]: the handler that passes every request on to the real
//! upstream unchanged (but for hop-by-hop fields), recording nothing. A
//! caller observes the calls by wrapping it ([`layered`](crate::layered)).
//!
//! A CONNECT dials the upstream at once (so an unreachable one is a 502
//! before the tunnel opens). A TLS tunnel then reaches it over TLS with
//! the client's SNI name (else the CONNECT host) and the client's ALPN
//! list; the upstream's choice is the one the front selects for the
//! client, so h2 stays h2 end to end. One upstream connection serves the
//! whole tunnel. Requests outside tunnels (absolute form, plain http) go
//! through a pooled client.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, StatusCode, Version, header};
use http_body::Body;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::front::{answer, describe};
use crate::handler::{BoxBody, BoxError, Handler, Opening, Started, Target, authority};

/// Forwards each request to its target, unchanged but for hop-by-hop
/// fields, over one upstream connection per tunnel. `B` is the request
/// body the services take (`hyper::body::Incoming` unless a layer in
/// front of them wraps it).
pub struct Forward<B = hyper::body::Incoming> {
    tls: Arc<ClientConfig>,
    /// Client configurations by the ALPN list offered (clients offer one
    /// of very few lists): made once each, sharing session resumption.
    by_alpn: Mutex<Vec<ConfigForAlpn>>,
    plain: Arc<Client<HttpConnector, B>>,
    connect_timeout: Duration,
}

impl<B> std::fmt::Debug for Forward<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// An ALPN list offered and the client configuration that offers it.
type ConfigForAlpn = (Vec<Vec<u8>>, Arc<ClientConfig>);

/// The bounds a request body must meet to be forwarded.
pub trait ForwardBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static {}

impl<B> ForwardBody for B where B: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{}

impl<B: ForwardBody> Forward<B> {
    /// Trusting upstreams whose certificates chain to the system's roots,
    /// or only to the CA(s) in `ca` (`--egress-ca`).
    pub fn new(ca: Option<&Path>) -> Result<Forward<B>, reprise_net::TlsError> {
        let tls = reprise_net::tls::client_config(ca)?;
        Ok(Forward::with_tls(tls))
    }

    /// With this TLS client configuration for upstreams (its ALPN list is
    /// replaced by each client's).
    pub fn with_tls(tls: ClientConfig) -> Forward<B> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        Forward {
            tls: Arc::new(tls),
            by_alpn: Mutex::new(Vec::new()),
            plain: Arc::new(Client::builder(TokioExecutor::new()).build(connector)),
            connect_timeout: Duration::from_secs(10),
        }
    }

    fn tls_for(&self, alpn: &[Vec<u8>]) -> Arc<ClientConfig> {
        let mut known = self
            .by_alpn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, config)) = known.iter().find(|(list, _)| list.as_slice() == alpn) {
            return config.clone();
        }
        let mut config = (*self.tls).clone();
        config.alpn_protocols = alpn.to_vec();
        let config = Arc::new(config);
        if known.len() < 16 {
            known.push((alpn.to_vec(), config.clone()));
        }
        config
    }
}

/// The far end of a tunnel: the dialled upstream.
#[derive(Debug)]
pub struct Dialled {
    stream: TcpStream,
    host: String,
    port: u16,
}

impl<B: ForwardBody> Handler for Forward<B> {
    type Service = ForwardService<B>;
    type Tunnel = Dialled;

    fn plain(&self) -> ForwardService<B> {
        ForwardService {
            upstream: Upstream::Pooled(self.plain.clone()),
        }
    }

    async fn open(&self, host: &str, port: u16) -> io::Result<Dialled> {
        let dial = TcpStream::connect((host, port));
        let stream = tokio::time::timeout(self.connect_timeout, dial)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        let _ = stream.set_nodelay(true);
        Ok(Dialled {
            stream,
            host: host.to_string(),
            port,
        })
    }

    async fn start(
        &self,
        tunnel: Dialled,
        opening: Opening,
    ) -> Result<Started<ForwardService<B>>, BoxError> {
        let Dialled { stream, host, port } = tunnel;
        let mut redial = Redial {
            host,
            port,
            tls: None,
            connect_timeout: self.connect_timeout,
        };
        let (sender, h2, alpn) = match opening {
            Opening::Tls { server_name, alpn } => {
                let name = server_name.unwrap_or_else(|| redial.host.clone());
                let server_name = ServerName::try_from(name.clone())
                    .map_err(|e| format!("{name} is not a TLS server name: {e}"))?;
                let config = self.tls_for(&alpn);
                let (tls, chosen) = redial.handshake(stream, &server_name, config).await?;
                let h2 = chosen.as_deref() == Some(b"h2");
                let sender = Sender::handshake(tls, h2, &redial.place()).await?;
                // A new connection, if the upstream closes this one, asks
                // for the protocol agreed with the client.
                let again = match &chosen {
                    Some(protocol) => self.tls_for(std::slice::from_ref(protocol)),
                    None => self.tls_for(&alpn),
                };
                redial.tls = Some((server_name, again));
                (sender, h2, chosen)
            }
            Opening::H2c | Opening::Http1 => {
                let h2 = opening == Opening::H2c;
                let sender = Sender::handshake(stream, h2, &redial.place()).await?;
                (sender, h2, None)
            }
        };
        let upstream = TunnelUpstream {
            redial,
            h2,
            sender: tokio::sync::Mutex::new(Some(sender)),
        };
        Ok(Started {
            service: ForwardService {
                upstream: Upstream::Tunnel(Arc::new(upstream)),
            },
            alpn,
        })
    }
}

/// How a tunnel's upstream connection is made again when the upstream
/// closes it (an HTTP/1.0 server, an idle timeout, a GOAWAY).
struct Redial {
    host: String,
    port: u16,
    tls: Option<(ServerName<'static>, Arc<ClientConfig>)>,
    connect_timeout: Duration,
}

type UpstreamTls = tokio_rustls::client::TlsStream<TcpStream>;

impl Redial {
    fn place(&self) -> String {
        authority(&self.host, self.port)
    }

    async fn handshake(
        &self,
        stream: TcpStream,
        name: &ServerName<'static>,
        config: Arc<ClientConfig>,
    ) -> Result<(UpstreamTls, Option<Vec<u8>>), BoxError> {
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = connector
            .connect(name.clone(), stream)
            .await
            .map_err(|e| format!("TLS to the upstream {} failed: {e}", self.place()))?;
        let chosen = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        Ok((tls, chosen))
    }

    async fn connect<B: ForwardBody>(&self, h2: bool) -> Result<Sender<B>, BoxError> {
        let dial = TcpStream::connect((self.host.as_str(), self.port));
        let stream = tokio::time::timeout(self.connect_timeout, dial)
            .await
            .map_err(|_| format!("cannot reach {}: connect timed out", self.place()))?
            .map_err(|e| format!("cannot reach {}: {}", self.place(), describe(&e)))?;
        let _ = stream.set_nodelay(true);
        match &self.tls {
            Some((name, config)) => {
                let (tls, _) = self.handshake(stream, name, config.clone()).await?;
                Sender::handshake(tls, h2, &self.place()).await
            }
            None => Sender::handshake(stream, h2, &self.place()).await,
        }
    }
}

/// The service of a [`Forward`] connection or tunnel.
pub struct ForwardService<B> {
    upstream: Upstream<B>,
}

impl<B> Clone for ForwardService<B> {
    fn clone(&self) -> Self {
        ForwardService {
            upstream: self.upstream.clone(),
        }
    }
}

impl<B> std::fmt::Debug for ForwardService<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.upstream {
            Upstream::Pooled(_) => "pooled",
            Upstream::Tunnel(t) if t.h2 => "h2",
            Upstream::Tunnel(_) => "http/1.1",
        };
        f.debug_struct("ForwardService")
            .field("upstream", &kind)
            .finish()
    }
}

enum Upstream<B> {
    /// Plain http to any host (requests outside tunnels).
    Pooled(Arc<Client<HttpConnector, B>>),
    /// The tunnel's one upstream connection.
    Tunnel(Arc<TunnelUpstream<B>>),
}

impl<B> Clone for Upstream<B> {
    fn clone(&self) -> Self {
        match self {
            Upstream::Pooled(c) => Upstream::Pooled(c.clone()),
            Upstream::Tunnel(t) => Upstream::Tunnel(t.clone()),
        }
    }
}

/// A tunnel's upstream connection, made again when the upstream closed
/// it. HTTP/1.1 carries one request at a time (the lock is held until
/// the answer's head is in, as the client's own HTTP/1.1 connection
/// sends them one by one); HTTP/2 requests share the connection.
struct TunnelUpstream<B> {
    redial: Redial,
    h2: bool,
    sender: tokio::sync::Mutex<Option<Sender<B>>>,
}

enum Sender<B> {
    H1(hyper::client::conn::http1::SendRequest<B>),
    H2(hyper::client::conn::http2::SendRequest<B>),
}

impl<B: ForwardBody> Sender<B> {
    async fn handshake<T>(io: T, h2: bool, place: &str) -> Result<Sender<B>, BoxError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| format!("HTTP/2 with the upstream {place} failed: {e}"))?;
            tokio::spawn(conn);
            Ok(Sender::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("HTTP/1.1 with the upstream {place} failed: {e}"))?;
            tokio::spawn(conn);
            Ok(Sender::H1(send))
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Sender::H1(s) => std::future::poll_fn(|cx| s.poll_ready(cx)).await,
            Sender::H2(s) => std::future::poll_fn(|cx| s.poll_ready(cx)).await,
        }
    }
}

impl<B: ForwardBody> TunnelUpstream<B> {
    /// Sends `request` on the tunnel's connection, made again first when
    /// the upstream has closed it.
    async fn send(
        &self,
        mut request: Request<B>,
        target: Option<&Target>,
    ) -> Result<Response<hyper::body::Incoming>, BoxError> {
        if self.h2 {
            to_absolute_https(&mut request, target);
        } else {
            to_origin_form(&mut request);
            reprise_net::versions::join_cookies(request.headers_mut());
        }
        let mut slot = self.sender.lock().await;
        let mut fresh = false;
        loop {
            let sender = match slot.as_mut() {
                Some(sender) if !sender.is_closed() => sender,
                _ => {
                    *slot = None;
                    fresh = true;
                    slot.insert(self.redial.connect(self.h2).await?)
                }
            };
            match sender.ready().await {
                Ok(()) => break,
                // Closed between the check and now: once more, on a new
                // connection (the request is not sent yet).
                Err(_) if !fresh => *slot = None,
                Err(e) => return Err(e.into()),
            }
        }
        match slot.as_mut() {
            Some(Sender::H2(send)) => {
                let mut send = send.clone();
                drop(slot);
                Ok(send.send_request(request).await?)
            }
            Some(Sender::H1(send)) => Ok(send.send_request(request).await?),
            None => Err("no upstream connection".into()),
        }
    }
}

/// The response future of a [`ForwardService`].
pub type ForwardFuture =
    Pin<Box<dyn Future<Output = Result<Response<BoxBody>, std::convert::Infallible>> + Send>>;

impl<B: ForwardBody> tower_service::Service<Request<B>> for ForwardService<B> {
    type Response = Response<BoxBody>;
    type Error = std::convert::Infallible;
    type Future = ForwardFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ForwardFuture {
        let upstream = self.upstream.clone();
        Box::pin(async move { Ok(forward(upstream, request).await) })
    }
}

async fn forward<B: ForwardBody>(
    upstream: Upstream<B>,
    mut request: Request<B>,
) -> Response<BoxBody> {
    let target = request.extensions().get::<Target>().cloned();
    let grpc = reprise_net::versions::needs_h2(request.headers());
    // Only an error needs it (kept as a cheap clone, formatted then).
    let uri_authority = request.uri().authority().cloned();
    reprise_net::hop::strip_hop_by_hop(request.headers_mut(), false);
    let sent = match upstream {
        Upstream::Pooled(client) => {
            if let Err(message) = absolute_http(&mut request, target.as_ref()) {
                return failure(grpc, StatusCode::BAD_GATEWAY, message);
            }
            client.request(request).await.map_err(BoxError::from)
        }
        Upstream::Tunnel(tunnel) => tunnel.send(request, target.as_ref()).await,
    };
    match sent {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            reprise_net::hop::strip_hop_by_hop(&mut parts.headers, false);
            Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
        }
        Err(e) => {
            let place = target
                .as_ref()
                .map(Target::authority)
                .or_else(|| uri_authority.map(|a| a.to_string()))
                .unwrap_or_default();
            failure(
                grpc,
                StatusCode::BAD_GATEWAY,
                format!("reprise egress: upstream {place}: {}", error_chain(&*e)),
            )
        }
    }
}

/// A 502 (for gRPC: status UNAVAILABLE) saying `message`.
fn failure(grpc: bool, status: StatusCode, message: String) -> Response<BoxBody> {
    let mut response = answer(status, message.clone());
    if grpc {
        *response.status_mut() = StatusCode::OK;
        reprise_net::grpc_error_fields(response.headers_mut(), 14, &message);
        *response.body_mut() = http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync();
    }
    response
}

/// An error and its causes, joined.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = match cause.downcast_ref::<io::Error>() {
            Some(io) => describe(io),
            None => cause.to_string(),
        };
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// A request outside a tunnel goes by plain http to its absolute URI
/// (built from the target when it came in origin form).
fn absolute_http<B>(request: &mut Request<B>, target: Option<&Target>) -> Result<(), String> {
    let uri = request.uri();
    if uri.scheme() == Some(&Scheme::HTTPS) {
        return Err(format!(
            "reprise egress: {uri}: an https URI in absolute form cannot be forwarded: send it through CONNECT"
        ));
    }
    if uri.authority().is_some() {
        return Ok(());
    }
    let Some(target) = target else {
        return Err("reprise egress: a request with no target".to_string());
    };
    let authority = Authority::try_from(target.authority())
        .map_err(|e| format!("reprise egress: {}: {e}", target.authority()))?;
    set_uri(request, Scheme::HTTP, authority);
    Ok(())
}

/// HTTP/1.1 to the upstream: origin form, and a `Host` (from the URI
/// when the request came over HTTP/2).
fn to_origin_form<B>(request: &mut Request<B>) {
    if let Some(authority) = request.uri().authority().cloned()
        && !request.headers().contains_key(header::HOST)
        && let Ok(value) = header::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(header::HOST, value);
    }
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
    *request.version_mut() = Version::HTTP_11;
}

/// HTTP/2 to the upstream: the authority in the URI (from `Host` when the
/// request came over HTTP/1.1, else the target's).
fn to_absolute_https<B>(request: &mut Request<B>, target: Option<&Target>) {
    let authority = request
        .uri()
        .authority()
        .cloned()
        .or_else(|| {
            let host = request.headers_mut().remove(header::HOST)?;
            Authority::try_from(host.as_bytes()).ok()
        })
        .or_else(|| target.and_then(|t| Authority::try_from(t.authority()).ok()));
    request.headers_mut().remove(header::HOST);
    if let Some(authority) = authority {
        set_uri(request, Scheme::HTTPS, authority);
    }
    *request.version_mut() = Version::HTTP_2;
}

fn set_uri<B>(request: &mut Request<B>, scheme: Scheme, authority: Authority) {
    let mut parts = request.uri().clone().into_parts();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}
