//! What the front hands requests to: a [`Handler`] makes one service per
//! client connection (requests outside any tunnel) and one per CONNECT
//! tunnel, and each request carries its [`Target`] in its extensions.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::Scheme;

/// A boxed error, as hyper and tower use them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the front sends: any body, boxed once.
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// How a request reached the front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// On the proxy connection itself: absolute form (`GET
    /// http://host/path`) or origin form with a `Host` (a client given the
    /// front as its base URL).
    Plain,
    /// Inside a CONNECT tunnel, in clear (HTTP/1.1 or h2c).
    Tunnel,
    /// Inside a CONNECT tunnel, over TLS the front terminated.
    TunnelTls,
}

/// Where a request is going, as the front learnt it: in each request's
/// extensions (`request.extensions().get::<Target>()`). Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target(Arc<TargetParts>);

#[derive(Debug, PartialEq, Eq)]
struct TargetParts {
    scheme: Scheme,
    host: String,
    port: u16,
    arrival: Arrival,
    alpn: Option<Vec<u8>>,
}

impl Target {
    /// A target (the front makes these; public for handlers' tests).
    pub fn new(
        scheme: Scheme,
        host: impl Into<String>,
        port: u16,
        arrival: Arrival,
        alpn: Option<Vec<u8>>,
    ) -> Target {
        Target(Arc::new(TargetParts {
            scheme,
            host: host.into(),
            port,
            arrival,
            alpn,
        }))
    }

    /// `https` inside a TLS tunnel, else `http` (or what an absolute-form
    /// request named).
    pub fn scheme(&self) -> &Scheme {
        &self.0.scheme
    }

    /// The host: the CONNECT target's, the absolute URI's, or the `Host`
    /// field's (IPv6 literals without brackets).
    pub fn host(&self) -> &str {
        &self.0.host
    }

    /// The port (the scheme's default when none was given).
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// How the request reached the front.
    pub fn arrival(&self) -> Arrival {
        self.0.arrival
    }

    /// The ALPN protocol the front agreed with the client (TLS tunnels).
    pub fn alpn(&self) -> Option<&[u8]> {
        self.0.alpn.as_deref()
    }

    /// `host:port`, IPv6 literals in brackets.
    pub fn authority(&self) -> String {
        authority(&self.0.host, self.0.port)
    }

    /// `uri` in absolute form, as a recorder or a mock names the call:
    /// inside a tunnel, the tunnel's scheme (`https` over TLS) and the
    /// CONNECT target's `host:port`, whatever the request's `Host` or
    /// `:authority` say; outside, `uri` as it came when absolute, else
    /// with this target's scheme and authority (origin form with a
    /// `Host`). The path and query are `uri`'s (`/` when it has none).
    pub fn absolute_uri(&self, uri: &http::Uri) -> http::Uri {
        if self.0.arrival == Arrival::Plain && uri.authority().is_some() {
            return uri.clone();
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        http::Uri::builder()
            .scheme(self.0.scheme.clone())
            .authority(self.authority())
            .path_and_query(path)
            .build()
            // The host came from a parsed authority; keep `uri` if not.
            .unwrap_or_else(|_| uri.clone())
    }
}

/// `host:port`, an IPv6 literal in brackets.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What a CONNECT tunnel turned out to carry, told to [`Handler::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// A TLS ClientHello: the handler chooses the ALPN protocol (one of
    /// `alpn`, or none) before the front answers it.
    Tls {
        /// The SNI name the client sent, if any.
        server_name: Option<String>,
        /// The ALPN protocols the client offered, in its order.
        alpn: Vec<Vec<u8>>,
    },
    /// The HTTP/2 connection preface in clear (h2c, gRPC without TLS).
    H2c,
    /// HTTP/1.1 in clear.
    Http1,
}

/// What [`Handler::start`] gives back: the tunnel's service and, for a
/// TLS tunnel, the ALPN protocol the front is to select.
#[derive(Debug)]
pub struct Started<S> {
    /// Serves every request of the tunnel.
    pub service: S,
    /// The protocol to select (ignored for tunnels in clear). It must be
    /// one the client offered, or none.
    pub alpn: Option<Vec<u8>>,
}

/// Serves what the front receives. The front calls [`plain`] once per
/// client connection, and for each CONNECT first [`open`] (before
/// answering it: an error becomes `502 Bad Gateway` naming the target),
/// then, once the tunnel's first bytes told what it carries, [`start`].
///
/// The services take `http::Request<B>` for the request body `B` the
/// front gives them (`hyper::body::Incoming`, or whatever a layer in
/// front of them makes of it: see [`Layered`]) and answer
/// `http::Response<BoxBody>`; an error from a service becomes a 502.
///
/// [`plain`]: Handler::plain
/// [`open`]: Handler::open
/// [`start`]: Handler::start
pub trait Handler: Send + Sync + 'static {
    /// The service for a connection or a tunnel.
    type Service: Clone + Send + 'static;
    /// The far end of a tunnel, between [`open`](Handler::open) and
    /// [`start`](Handler::start) (a dialled TCP connection, or nothing).
    type Tunnel: Send + 'static;

    /// The service for the requests of one client connection outside any
    /// tunnel ([`Arrival::Plain`]).
    fn plain(&self) -> Self::Service;

    /// Opens the far end of a tunnel to `host:port` (IPv6 without
    /// brackets). An error is answered `502` with its text.
    fn open(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = std::io::Result<Self::Tunnel>> + Send;

    /// Starts the service of a tunnel that carries `opening`. An error
    /// is answered `502` to every request of the tunnel.
    fn start(
        &self,
        tunnel: Self::Tunnel,
        opening: Opening,
    ) -> impl Future<Output = Result<Started<Self::Service>, BoxError>> + Send;
}

/// A handler whose services are wrapped by a tower layer: how a caller
/// observes (records) each request and response as it passes. Made by
/// [`layered`].
#[derive(Debug, Clone)]
pub struct Layered<H, L> {
    inner: H,
    layer: L,
}

/// `handler`, with every service it makes wrapped by `layer`.
pub fn layered<H, L>(handler: H, layer: L) -> Layered<H, L> {
    Layered {
        inner: handler,
        layer,
    }
}

impl<H, L> Handler for Layered<H, L>
where
    H: Handler,
    L: tower_layer::Layer<H::Service> + Send + Sync + 'static,
    L::Service: Clone + Send + 'static,
{
    type Service = L::Service;
    type Tunnel = H::Tunnel;

    fn plain(&self) -> Self::Service {
        self.layer.layer(self.inner.plain())
    }

    fn open(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = std::io::Result<Self::Tunnel>> + Send {
        self.inner.open(host, port)
    }

    async fn start(
        &self,
        tunnel: Self::Tunnel,
        opening: Opening,
    ) -> Result<Started<Self::Service>, BoxError> {
        let started = self.inner.start(tunnel, opening).await?;
        Ok(Started {
            service: self.layer.layer(started.service),
            alpn: started.alpn,
        })
    }
}
