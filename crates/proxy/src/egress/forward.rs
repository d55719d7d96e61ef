//! [`RouteForward`]: an `--egress-route`'s forwarder to its one downstream,
//! one per serving thread, as the reverse proxy's [`Forwarder`] is:
//! HTTP/1.1 calls through the proxy's own client ([`Http1Upstream`]: a
//! pool of kept connections on this thread, the head encoded once), gRPC
//! and HTTP/2 calls through hyper-util's pooled HTTP/2 client (h2c with
//! prior knowledge, or TLS with ALPN h2), streaming both ways.
//!
//! [`Forwarder`]: crate::forward::Forwarder

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, Version};
use http_body::Body as _;
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use reprise_model::ErrorKind;
use reprise_net::hop;
use reprise_record::{TapBody, is_grpc};

use super::{EgressRoute, ForwardError};
use crate::upstream::{Http1Upstream, SendError, UpstreamBody};

/// What a route's downstream answers with: over HTTP/1.1 read by the
/// proxy's own client, over HTTP/2 by hyper's.
pub type RouteBody = Either<UpstreamBody, Incoming>;

/// The body a route's calls are sent with: the client's, tapped.
type RequestBody = TapBody<Incoming>;

/// Forwards a route's calls (in absolute form, naming the route's
/// downstream, as the [`EgressRecordLayer`](super::EgressRecordLayer)
/// records them) to its downstream.
#[derive(Clone)]
pub struct RouteForward {
    http1: Arc<Http1Upstream>,
    http2: Client<HttpsConnector<HttpConnector>, RequestBody>,
    /// The Host field HTTP/1.1 calls carry: the downstream's host, and
    /// its port unless it is the scheme's (as hyper's client writes it).
    host: HeaderValue,
    response_timeout: Duration,
}

impl std::fmt::Debug for RouteForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteForward")
            .field("host", &self.host)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl RouteForward {
    /// A forwarder to `route`'s downstream, trusting `tls` when it is
    /// https, giving up connecting after `connect_timeout` and waiting
    /// for a response head after `response_timeout`, holding at most
    /// `http1_connections` HTTP/1.1 connections to it open.
    pub fn new(
        route: &EgressRoute,
        tls: &rustls::ClientConfig,
        connect_timeout: Duration,
        response_timeout: Duration,
        http1_connections: usize,
    ) -> Result<RouteForward, crate::ProxyError> {
        let target = &route.target;
        let http1 = Arc::new(Http1Upstream::new(
            target,
            tls,
            connect_timeout,
            response_timeout,
            http1_connections,
        )?);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let https2 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http2()
            .wrap_connector(connector);
        let http2 = Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(https2);
        let default_port = if target.is_tls() { 443 } else { 80 };
        let host = match target.authority.port_u16() {
            Some(port) if port != default_port => target.authority.as_str().to_string(),
            _ => target.authority.host().to_string(),
        };
        let host = HeaderValue::from_str(&host).map_err(|_| {
            crate::ProxyError::Internal(format!(
                "--egress-route {}: {host:?} cannot be a Host field",
                route.name
            ))
        })?;
        Ok(RouteForward {
            http1,
            http2,
            host,
            response_timeout,
        })
    }
}

/// The future of a [`RouteForward`] call.
pub type RouteFuture =
    Pin<Box<dyn Future<Output = Result<Response<RouteBody>, ForwardError>> + Send>>;

impl tower_service::Service<Request<RequestBody>> for RouteForward {
    type Response = Response<RouteBody>;
    type Error = ForwardError;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ForwardError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> RouteFuture {
        let (mut parts, body) = request.into_parts();
        let over_h2 = parts.version == Version::HTTP_2 || is_grpc(&parts.headers);
        hop::strip_hop_by_hop(&mut parts.headers, false);
        parts.headers.remove(header::HOST);
        let timeout = self.response_timeout;
        let timed_out = move || ForwardError {
            kind: ErrorKind::Timeout,
            message: format!("no response from the downstream within {timeout:?}"),
        };
        if over_h2 {
            // The target names the host: hyper writes `:authority` from it.
            parts.version = Version::HTTP_2;
            let sending = self.http2.request(Request::from_parts(parts, body));
            return Box::pin(async move {
                match tokio::time::timeout(timeout, sending).await {
                    Ok(Ok(response)) => Ok(response.map(Either::Right)),
                    Ok(Err(error)) => {
                        let kind = if error.is_connect() {
                            ErrorKind::Connect
                        } else {
                            crate::upstream::failure_kind(&error)
                        };
                        Err(ForwardError {
                            kind,
                            message: reprise_model::error::one_line(&error),
                        })
                    }
                    Err(_) => Err(timed_out()),
                }
            });
        }
        if parts.version == Version::HTTP_2 {
            crate::protocol::join_cookies(&mut parts.headers);
        }
        // Only gRPC needs `TE: trailers`, and it never goes this way.
        parts.headers.remove(header::TE);
        parts.headers.insert(header::HOST, self.host.clone());
        let (head, framing) = Http1Upstream::request_head(&parts, body.size_hint().exact());
        let http1 = Arc::clone(&self.http1);
        Box::pin(async move {
            let sending = http1.send(&parts.method, head, body, framing);
            match tokio::time::timeout(timeout, sending).await {
                Ok(Ok((head, body))) => {
                    let mut response = Response::new(Either::Left(body));
                    *response.status_mut() = head.status;
                    *response.headers_mut() = head.headers;
                    Ok(response)
                }
                Ok(Err(SendError::Upstream(failed) | SendError::RequestBody(failed))) => {
                    Err(failed.into())
                }
                Err(_) => Err(timed_out()),
            }
        })
    }
}
