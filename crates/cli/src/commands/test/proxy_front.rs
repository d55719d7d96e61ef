//! The mock behind the egress proxy's front (`reprise_intercept::Front`):
//! what a service that reaches its dependencies through `HTTP_PROXY`,
//! `HTTPS_PROXY` or `grpc_proxy` finds at the recorded `--egress`
//! address. Plain requests in absolute form, and CONNECT tunnels (TLS
//! terminated with a certificate from the local CA, h2c, HTTP/1.1), are
//! answered by the mock; no tunnel is ever dialled onwards.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use reprise_intercept::{Arrival, BoxBody, BoxError, Handler, Opening, Started, Target};
use reprise_mock::server::MockHttp;

/// The front's handler: every connection's and tunnel's calls go to the
/// mock.
pub(crate) struct MockHandler {
    mock: MockHttp,
}

impl MockHandler {
    /// Calls through the front answered by `mock` (the service of the
    /// recorded forward proxy's listener).
    pub(crate) fn new(mock: MockHttp) -> MockHandler {
        MockHandler { mock }
    }
}

impl Handler for MockHandler {
    type Service = FrontMock;
    type Tunnel = ();

    fn plain(&self) -> FrontMock {
        FrontMock(self.mock.clone())
    }

    async fn open(&self, _host: &str, _port: u16) -> std::io::Result<()> {
        // The far end is the mock itself: nothing is dialled.
        Ok(())
    }

    async fn start(&self, (): (), opening: Opening) -> Result<Started<FrontMock>, BoxError> {
        let alpn = match opening {
            Opening::Tls { alpn, .. } => [&b"h2"[..], b"http/1.1"]
                .into_iter()
                .find(|p| alpn.iter().any(|offered| offered == p))
                .map(<[u8]>::to_vec),
            Opening::H2c | Opening::Http1 => None,
        };
        Ok(Started {
            service: FrontMock(self.mock.clone()),
            alpn,
        })
    }
}

/// The mock as the front calls it.
#[derive(Clone)]
pub(crate) struct FrontMock(MockHttp);

impl tower_service::Service<Request<Incoming>> for FrontMock {
    type Response = Response<BoxBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let mock = self.0.clone();
        Box::pin(async move {
            let request = addressed(request);
            Ok(mock.answer(request).await.map(BodyExt::boxed_unsync))
        })
    }
}

/// A call that came through a tunnel, addressed to the tunnel's target
/// (`https://payments.example:443/charge`): the CONNECT named the host
/// and port the service meant, as the recorder stores them.
fn addressed<B>(mut request: Request<B>) -> Request<B> {
    let Some(target) = request.extensions().get::<Target>().cloned() else {
        return request;
    };
    if target.arrival() == Arrival::Plain {
        return request;
    }
    let Ok(authority) = target.authority().parse::<Authority>() else {
        return request;
    };
    let scheme = match target.arrival() {
        Arrival::TunnelTls => Scheme::HTTPS,
        _ => Scheme::HTTP,
    };
    let mut parts = request.uri().clone().into_parts();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}
