//! The listener proxy clients talk to: absolute-form and origin-form
//! requests on the connection itself, CONNECT tunnels opened through the
//! handler, their TLS terminated with a minted leaf, HTTP/1.1 or HTTP/2
//! served inside.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

use crate::handler::{Arrival, BoxBody, BoxError, Handler, Opening, Started, Target, authority};
use crate::leaf::Leaves;
use crate::sniff::{Carried, Prefixed, SniffError, sniff};

/// A handler's service, as the front calls it: a tower `Service` of
/// `Request<Incoming>` answering `Response<BoxBody>`. Implemented for
/// every such service.
pub trait FrontService:
    Service<
        Request<Incoming>,
        Response = Response<BoxBody>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> FrontService for S where
    S: Service<
            Request<Incoming>,
            Response = Response<BoxBody>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The front's timeouts, and where its warnings go.
#[derive(Clone)]
#[non_exhaustive]
pub struct FrontOptions {
    /// How long a tunnel may stay silent before its first bytes tell
    /// what it carries.
    pub sniff_timeout: Duration,
    /// How long the client's TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Answer `508 Loop Detected` to a request whose target is the
    /// front's own address (it would come back to the front). Turn it
    /// off for a listener whose handler sends every request to one fixed
    /// upstream whatever its `Host` (an `--egress-route`).
    pub refuse_self: bool,
    /// Pass a request in origin form whose `Host` names no usable
    /// authority (none, or bytes no authority has) to the handler with no
    /// [`Target`], instead of answering `400`: for a handler that also
    /// answers calls made to it directly (a mock), not one that must
    /// know where to send each call.
    pub direct_calls: bool,
    /// Where the front's warnings go (a tunnel it could not serve, a
    /// client that rejected the minted certificate), besides `tracing`:
    /// for a program that shows its user one line per failure.
    pub warn: Option<WarnSink>,
    /// Told of every tunnel opened and every failure the front counts
    /// (besides [`FrontCounters`]): for a program that counts them in
    /// metrics of its own.
    pub on_event: Option<EventSink>,
}

/// Takes one [`FrontEvent`].
pub type EventSink = Arc<dyn Fn(FrontEvent) + Send + Sync>;

/// What the front counts, as [`FrontOptions::on_event`] hears of it: a
/// tunnel opened, or a failure by class (the fields of [`FrontCounts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrontEvent {
    /// A CONNECT tunnel opened (answered 200).
    TunnelOpened,
    /// A CONNECT whose target could not be reached (answered 502).
    ConnectFailed,
    /// A tunnel that carried neither TLS nor HTTP, or nothing in time.
    NotTlsOrHttp,
    /// A client that broke off the TLS handshake rejecting the minted
    /// certificate.
    ClientRejectedCertificate,
    /// Another failed TLS handshake with a client.
    ClientTlsFailed,
    /// A tunnel whose far end the handler could not start.
    UpstreamFailed,
}

impl FrontEvent {
    /// The event's name in snake case, for a metric label: `opened`, or
    /// the failure's as the field of [`FrontCounts`] that counts it.
    pub fn label(self) -> &'static str {
        match self {
            FrontEvent::TunnelOpened => "opened",
            FrontEvent::ConnectFailed => "connect_failed",
            FrontEvent::NotTlsOrHttp => "not_tls_or_http",
            FrontEvent::ClientRejectedCertificate => "client_rejected_certificate",
            FrontEvent::ClientTlsFailed => "client_tls_failed",
            FrontEvent::UpstreamFailed => "upstream_failed",
        }
    }
}

/// Takes one warning line (no newline).
pub type WarnSink = Arc<dyn Fn(&str) + Send + Sync>;

impl Default for FrontOptions {
    fn default() -> Self {
        FrontOptions {
            sniff_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            refuse_self: true,
            direct_calls: false,
            warn: None,
            on_event: None,
        }
    }
}

impl std::fmt::Debug for FrontOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontOptions")
            .field("sniff_timeout", &self.sniff_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("refuse_self", &self.refuse_self)
            .field("direct_calls", &self.direct_calls)
            .field("warn", &self.warn.is_some())
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

/// What the front counted, by failure class (for `/metrics`).
#[derive(Debug, Default)]
pub struct FrontCounters {
    connections: AtomicU64,
    tunnels: AtomicU64,
    connect_failed: AtomicU64,
    not_tls_or_http: AtomicU64,
    client_rejected_certificate: AtomicU64,
    client_tls_failed: AtomicU64,
    upstream_failed: AtomicU64,
}

/// A snapshot of [`FrontCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrontCounts {
    /// Client connections accepted.
    pub connections: u64,
    /// CONNECT tunnels opened (answered 200).
    pub tunnels: u64,
    /// CONNECTs whose target could not be reached (answered 502).
    pub connect_failed: u64,
    /// Tunnels that carried neither TLS nor HTTP, or nothing in time.
    pub not_tls_or_http: u64,
    /// TLS handshakes the client broke off rejecting the minted
    /// certificate (it does not trust the reprise CA).
    pub client_rejected_certificate: u64,
    /// Other failed TLS handshakes with clients.
    pub client_tls_failed: u64,
    /// Tunnels whose far end the handler could not start (for
    /// [`Forward`](crate::Forward): TLS to the upstream failed).
    pub upstream_failed: u64,
}

impl FrontCounters {
    /// The counts now.
    pub fn snapshot(&self) -> FrontCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FrontCounts {
            connections: get(&self.connections),
            tunnels: get(&self.tunnels),
            connect_failed: get(&self.connect_failed),
            not_tls_or_http: get(&self.not_tls_or_http),
            client_rejected_certificate: get(&self.client_rejected_certificate),
            client_tls_failed: get(&self.client_tls_failed),
            upstream_failed: get(&self.upstream_failed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The front: serves proxy clients' connections with a [`Handler`].
/// Cheap to clone (one shared state).
pub struct Front<H> {
    inner: Arc<Inner<H>>,
}

impl<H> Clone for Front<H> {
    fn clone(&self) -> Self {
        Front {
            inner: self.inner.clone(),
        }
    }
}

impl<H> std::fmt::Debug for Front<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("counts", &self.inner.counters.snapshot())
            .finish_non_exhaustive()
    }
}

struct Inner<H> {
    handler: H,
    leaves: Option<Arc<Leaves>>,
    counters: Arc<FrontCounters>,
    options: FrontOptions,
    /// HTTP/1.1 or HTTP/2, told by the preface (proxy connections,
    /// tunnels in clear, TLS without ALPN).
    http: auto::Builder<TokioExecutor>,
    /// For TLS tunnels whose ALPN said which.
    http1_only: auto::Builder<TokioExecutor>,
    http2_only: auto::Builder<TokioExecutor>,
}

impl<H> Front<H>
where
    H: Handler,
    H::Service: FrontService,
{
    /// A front handing requests to `handler`, terminating TLS in tunnels
    /// with leaves from `leaves` (without them, a TLS tunnel is closed).
    pub fn new(handler: H, leaves: Option<Arc<Leaves>>) -> Front<H> {
        Front::with_options(handler, leaves, FrontOptions::default())
    }

    /// [`Front::new`] with other timeouts.
    pub fn with_options(
        handler: H,
        leaves: Option<Arc<Leaves>>,
        options: FrontOptions,
    ) -> Front<H> {
        let builder = || {
            let mut http = auto::Builder::new(TokioExecutor::new());
            // The timer bounds how long a client may take to send a
            // request head (HTTP/1.1) and runs HTTP/2's keep-alive.
            http.http1().timer(hyper_util::rt::TokioTimer::new());
            http.http2().timer(hyper_util::rt::TokioTimer::new());
            http
        };
        let http = builder();
        let http1_only = builder().http1_only();
        let http2_only = builder().http2_only();
        Front {
            inner: Arc::new(Inner {
                handler,
                leaves,
                counters: Arc::new(FrontCounters::default()),
                options,
                http,
                http1_only,
                http2_only,
            }),
        }
    }

    /// The counters, shared with the front.
    pub fn counters(&self) -> Arc<FrontCounters> {
        self.inner.counters.clone()
    }

    /// Counts `event`, and tells the options' `on_event` sink.
    fn count(&self, event: FrontEvent) {
        let counters = &self.inner.counters;
        bump(match event {
            FrontEvent::TunnelOpened => &counters.tunnels,
            FrontEvent::ConnectFailed => &counters.connect_failed,
            FrontEvent::NotTlsOrHttp => &counters.not_tls_or_http,
            FrontEvent::ClientRejectedCertificate => &counters.client_rejected_certificate,
            FrontEvent::ClientTlsFailed => &counters.client_tls_failed,
            FrontEvent::UpstreamFailed => &counters.upstream_failed,
        });
        if let Some(on_event) = &self.inner.options.on_event {
            on_event(event);
        }
    }

    /// Tells `tracing` and the options' `warn` sink.
    fn warn(&self, message: &str) {
        tracing::warn!("{message}");
        if let Some(warn) = &self.inner.options.warn {
            warn(message);
        }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.inner.handler
    }

    /// Accepts connections on `listener` and serves each on a task of
    /// its own, for as long as the future is polled (drop it to stop
    /// accepting).
    pub async fn serve(&self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let front = self.clone();
                    tokio::spawn(async move { front.serve_tcp(stream, peer).await });
                }
                Err(e) => {
                    // Out of descriptors, mostly: the connections in
                    // flight go on, and accepting resumes as they end.
                    self.warn(&format!("reprise egress: cannot accept a connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Serves one accepted TCP connection.
    pub async fn serve_tcp(&self, stream: TcpStream, peer: SocketAddr) {
        // Small requests and answers go out as written.
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .ok()
            .filter(|_| self.inner.options.refuse_self);
        if let Err(e) = self.serve_io(stream, local).await {
            tracing::debug!("reprise egress: connection from {peer}: {e}");
        }
    }

    /// Serves one client connection (any byte stream), until it closes.
    pub async fn serve_connection<I>(&self, io: I) -> Result<(), BoxError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_io(io, None).await
    }

    /// Serves one client connection that reached the front at `local`
    /// (requests for `local` itself are refused: they would loop).
    async fn serve_io<I>(&self, io: I, local: Option<SocketAddr>) -> Result<(), BoxError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let hyper_service = self.connection_service(local);
        self.inner
            .http
            .serve_connection_with_upgrades(TokioIo::new(io), hyper_service)
            .await
    }

    /// The hyper service of one client connection, for a caller that
    /// serves connections itself (under limits and timeouts of its own):
    /// serve it with upgrades allowed (`serve_connection_with_upgrades`),
    /// or CONNECT tunnels never open. With `local` (the address the
    /// connection reached), requests for that address are refused (they
    /// would loop); give `None` for a handler that never dials out.
    /// Counts a connection.
    pub fn connection_service(
        &self,
        local: Option<SocketAddr>,
    ) -> impl hyper::service::Service<
        Request<Incoming>,
        Response = Response<BoxBody>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static {
        bump(&self.inner.counters.connections);
        let service = self.inner.handler.plain();
        let front = self.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let front = front.clone();
            let service = service.clone();
            async move { Ok::<_, Infallible>(front.on_request(service, request, local).await) }
        })
    }

    async fn on_request(
        &self,
        service: H::Service,
        mut request: Request<Incoming>,
        local: Option<SocketAddr>,
    ) -> Response<BoxBody> {
        if request.method() == Method::CONNECT {
            return self.on_connect(request, local).await;
        }
        let Some(target) = plain_target(&request) else {
            if self.inner.options.direct_calls {
                return call(service, request).await;
            }
            return answer(
                StatusCode::BAD_REQUEST,
                "reprise egress: a request needs an absolute URI (http://host/path) or a Host field".to_string(),
            );
        };
        if is_self(target.host(), target.port(), local) {
            return loops(&target.authority());
        }
        request.extensions_mut().insert(target);
        call(service, request).await
    }

    async fn on_connect(
        &self,
        request: Request<Incoming>,
        local: Option<SocketAddr>,
    ) -> Response<BoxBody> {
        let Some((host, port)) = request.uri().authority().map(host_port) else {
            return answer(
                StatusCode::BAD_REQUEST,
                format!(
                    "reprise egress: CONNECT needs host:port, not {}",
                    request.uri()
                ),
            );
        };
        let port = port.unwrap_or(443);
        if is_self(&host, port, local) {
            return loops(&authority(&host, port));
        }
        let tunnel = match self.inner.handler.open(&host, port).await {
            Ok(tunnel) => tunnel,
            Err(e) => {
                self.count(FrontEvent::ConnectFailed);
                let message = format!(
                    "reprise egress: cannot reach {}: {}",
                    authority(&host, port),
                    describe(&e)
                );
                self.warn(&message);
                return answer(StatusCode::BAD_GATEWAY, message);
            }
        };
        self.count(FrontEvent::TunnelOpened);
        let front = self.clone();
        tokio::spawn(async move {
            match hyper::upgrade::on(request).await {
                Ok(upgraded) => {
                    front
                        .tunnel(TokioIo::new(upgraded), tunnel, host, port)
                        .await
                }
                Err(e) => tracing::debug!(
                    "reprise egress: tunnel to {}: the client left: {e}",
                    authority(&host, port)
                ),
            }
        });
        Response::new(empty())
    }

    async fn tunnel<I>(&self, mut io: I, tunnel: H::Tunnel, host: String, port: u16)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (carried, first) = match sniff(&mut io, self.inner.options.sniff_timeout).await {
            Ok(found) => found,
            Err(SniffError::Closed) => return,
            Err(e) => {
                self.count(FrontEvent::NotTlsOrHttp);
                self.warn(&format!(
                    "reprise egress: tunnel to {} {e}",
                    authority(&host, port)
                ));
                return;
            }
        };
        let io = Prefixed::new(first, io);
        match carried {
            Carried::Tls => self.tls_tunnel(io, tunnel, host, port).await,
            Carried::H2c | Carried::Http1 => {
                let opening = if carried == Carried::H2c {
                    Opening::H2c
                } else {
                    Opening::Http1
                };
                let target = Target::new(Scheme::HTTP, host, port, Arrival::Tunnel, None);
                let started = self.inner.handler.start(tunnel, opening).await;
                self.serve_tunnel(io, started, target).await;
            }
        }
    }

    async fn tls_tunnel<I>(&self, io: I, tunnel: H::Tunnel, host: String, port: u16)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let place = authority(&host, port);
        let Some(leaves) = self.inner.leaves.clone() else {
            self.count(FrontEvent::ClientTlsFailed);
            self.warn(&format!(
                "reprise egress: tunnel to {place} carries TLS, and there is no CA to terminate it: run `reprise ca init` (or give --ca-dir)"
            ));
            return;
        };
        let timeout = self.inner.options.handshake_timeout;
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let start = match tokio::time::timeout(timeout, acceptor).await {
            Ok(Ok(start)) => start,
            Ok(Err(e)) => {
                self.count(FrontEvent::ClientTlsFailed);
                self.warn(&format!(
                    "reprise egress: tunnel to {place}: not a usable TLS ClientHello: {e}"
                ));
                return;
            }
            Err(_) => {
                self.count(FrontEvent::ClientTlsFailed);
                self.warn(&format!(
                    "reprise egress: tunnel to {place}: no TLS ClientHello within {timeout:?}"
                ));
                return;
            }
        };
        let hello = start.client_hello();
        let server_name = hello.server_name().map(str::to_owned);
        let offered: Vec<Vec<u8>> = hello
            .alpn()
            .map(|list| list.map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        let started = self
            .inner
            .handler
            .start(
                tunnel,
                Opening::Tls {
                    server_name: server_name.clone(),
                    alpn: offered.clone(),
                },
            )
            .await;
        // The leaf names what the client asked for by SNI, else the
        // CONNECT host.
        let leaf_host = server_name.as_deref().unwrap_or(&host);
        let alpn = match &started {
            Ok(started) => started.alpn.clone().filter(|a| offered.contains(a)),
            // The failure is told to each request: over h2 if offered.
            Err(_) => offered
                .iter()
                .find(|a| a.as_slice() == b"h2" || a.as_slice() == b"http/1.1")
                .cloned(),
        };
        let config = match leaves.server_config(leaf_host, alpn.as_deref()) {
            Ok(config) => config,
            Err(e) => {
                self.count(FrontEvent::ClientTlsFailed);
                self.warn(&format!("reprise egress: tunnel to {place}: {e}"));
                return;
            }
        };
        let tls = match tokio::time::timeout(timeout, start.into_stream(config)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                if rejected_certificate(&e) {
                    self.count(FrontEvent::ClientRejectedCertificate);
                    self.warn(&format!(
                        "reprise egress: the client rejected reprise's certificate for {leaf_host} ({e}): \
                         make it trust the reprise CA (`reprise ca env` prints the variables)"
                    ));
                } else if e.kind() == io::ErrorKind::UnexpectedEof {
                    // Node.js (OpenSSL) hangs up on a certificate it does
                    // not trust without sending an alert: say the likely
                    // reason rather than "eof".
                    self.count(FrontEvent::ClientTlsFailed);
                    self.warn(&format!(
                        "reprise egress: tunnel to {place}: the client hung up in the TLS handshake, \
                         after reprise's certificate for {leaf_host}: it probably does not trust the \
                         reprise CA (Node.js hangs up without saying why; `reprise ca env` prints the \
                         variables that make a client trust it)"
                    ));
                } else {
                    self.count(FrontEvent::ClientTlsFailed);
                    self.warn(&format!(
                        "reprise egress: tunnel to {place}: TLS handshake failed: {e}"
                    ));
                }
                return;
            }
            Err(_) => {
                self.count(FrontEvent::ClientTlsFailed);
                self.warn(&format!(
                    "reprise egress: tunnel to {place}: the TLS handshake took over {timeout:?}"
                ));
                return;
            }
        };
        let target = Target::new(Scheme::HTTPS, host, port, Arrival::TunnelTls, alpn);
        self.serve_tunnel(tls, started, target).await;
    }

    async fn serve_tunnel<I>(
        &self,
        io: I,
        started: Result<Started<H::Service>, BoxError>,
        target: Target,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = match started {
            Ok(started) => Ok(started.service),
            Err(e) => {
                self.count(FrontEvent::UpstreamFailed);
                let message = format!("reprise egress: {}: {e}", target.authority());
                self.warn(&message);
                Err(message)
            }
        };
        let http = match target.alpn() {
            Some(b"h2") => &self.inner.http2_only,
            Some(b"http/1.1") => &self.inner.http1_only,
            _ => &self.inner.http,
        };
        let hyper_service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let service = service.clone();
            request.extensions_mut().insert(target.clone());
            async move {
                Ok::<_, Infallible>(match service {
                    Ok(service) => call(service, request).await,
                    Err(message) => answer(StatusCode::BAD_GATEWAY, message),
                })
            }
        });
        if let Err(e) = http.serve_connection(TokioIo::new(io), hyper_service).await {
            tracing::debug!("reprise egress: tunnel: {e}");
        }
    }
}

/// Calls a handler's service; an error becomes a 502 saying why.
async fn call<S: FrontService>(mut service: S, request: Request<Incoming>) -> Response<BoxBody> {
    if let Err(e) = std::future::poll_fn(|cx| service.poll_ready(cx)).await {
        return answer(
            StatusCode::BAD_GATEWAY,
            format!("reprise egress: {}", e.into()),
        );
    }
    match service.call(request).await {
        Ok(response) => response,
        Err(e) => answer(
            StatusCode::BAD_GATEWAY,
            format!("reprise egress: {}", e.into()),
        ),
    }
}

/// The target of a request outside any tunnel: its absolute URI's, or
/// its `Host` field's.
fn plain_target(request: &Request<Incoming>) -> Option<Target> {
    let uri = request.uri();
    if let Some(authority) = uri.authority() {
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        let (host, port) = host_port(authority);
        let port = port.unwrap_or(if scheme == Scheme::HTTPS { 443 } else { 80 });
        return Some(Target::new(scheme, host, port, Arrival::Plain, None));
    }
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    let authority: Authority = host.parse().ok()?;
    let (host, port) = host_port(&authority);
    Some(Target::new(
        Scheme::HTTP,
        host,
        port.unwrap_or(80),
        Arrival::Plain,
        None,
    ))
}

/// Whether `host:port` is the front's own address `local`.
fn is_self(host: &str, port: u16, local: Option<SocketAddr>) -> bool {
    let Some(local) = local else {
        return false;
    };
    if port != local.port() {
        return false;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip == local.ip() || (ip.is_loopback() && local.ip().is_loopback()),
        Err(_) => host.eq_ignore_ascii_case("localhost") && local.ip().is_loopback(),
    }
}

/// The answer to a request for the front itself.
fn loops(place: &str) -> Response<BoxBody> {
    answer(
        StatusCode::LOOP_DETECTED,
        format!(
            "reprise egress: {place} is this proxy: a request for it would come back here (give the client the proxy as HTTP_PROXY/HTTPS_PROXY, with the real URL)"
        ),
    )
}

/// An authority's host (IPv6 without brackets) and port.
fn host_port(authority: &Authority) -> (String, Option<u16>) {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (host.to_string(), authority.port_u16())
}

/// An OS error in a few words ("connection refused").
pub(crate) fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(_) if e.kind() != io::ErrorKind::Other => e.kind().to_string(),
        _ => e.to_string(),
    }
}

/// Did the client end the handshake because it does not trust the leaf?
fn rejected_certificate(e: &io::Error) -> bool {
    use rustls::AlertDescription as A;
    let Some(rustls::Error::AlertReceived(alert)) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return false;
    };
    matches!(
        alert,
        A::UnknownCA
            | A::BadCertificate
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::AccessDenied
    )
}

fn empty() -> BoxBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A response of reprise's own, saying `message`.
pub(crate) fn answer(status: StatusCode, message: String) -> Response<BoxBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(message + "\n"))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
