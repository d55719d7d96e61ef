//! [`UpstreamForward`]: sends a request in absolute form
//! (`http[s]://host:port/path`) to the host it names and gives back the
//! response, streaming both ways: gRPC and HTTP/2 calls over HTTP/2 (h2c
//! with prior knowledge, or TLS with ALPN h2), the rest over HTTP/1.1.
//! hyper-util's pooled clients do the work; this only picks one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use reprise_model::ErrorKind;
use reprise_net::hop;
use reprise_record::is_grpc;

use super::ForwardError;

/// Forwards requests in absolute form to the host they name.
pub struct UpstreamForward<B> {
    http1: Client<HttpsConnector<HttpConnector>, B>,
    http2: Client<HttpsConnector<HttpConnector>, B>,
    response_timeout: Duration,
}

impl<B> Clone for UpstreamForward<B> {
    fn clone(&self) -> Self {
        UpstreamForward {
            http1: self.http1.clone(),
            http2: self.http2.clone(),
            response_timeout: self.response_timeout,
        }
    }
}

impl<B> std::fmt::Debug for UpstreamForward<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamForward")
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl<B> UpstreamForward<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Clients trusting `tls` for https targets, giving up connecting
    /// after `connect_timeout` and waiting for a response head after
    /// `response_timeout`.
    pub fn new(
        tls: &rustls::ClientConfig,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> UpstreamForward<B> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let https1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector.clone());
        let https2 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http2()
            .wrap_connector(connector);
        let executor = hyper_util::rt::TokioExecutor::new();
        UpstreamForward {
            http1: Client::builder(executor.clone()).build(https1),
            http2: Client::builder(executor).http2_only(true).build(https2),
            response_timeout,
        }
    }
}

/// The future of an [`UpstreamForward`] call.
pub type ForwardFuture =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, ForwardError>> + Send>>;

impl<B> tower_service::Service<Request<B>> for UpstreamForward<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Incoming>;
    type Error = ForwardError;
    type Future = ForwardFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ForwardError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ForwardFuture {
        let (mut parts, body) = request.into_parts();
        let over_h2 = parts.version == Version::HTTP_2 || is_grpc(&parts.headers);
        hop::strip_hop_by_hop(&mut parts.headers, false);
        // The target names the host: hyper writes Host (HTTP/1.1) or
        // `:authority` (HTTP/2) from it.
        parts.headers.remove(header::HOST);
        let client = if over_h2 {
            parts.version = Version::HTTP_2;
            self.http2.clone()
        } else {
            if parts.version == Version::HTTP_2 {
                crate::protocol::join_cookies(&mut parts.headers);
            }
            parts.version = Version::HTTP_11;
            // Only gRPC needs `TE: trailers`, and it never goes this way.
            parts.headers.remove(header::TE);
            self.http1.clone()
        };
        let timeout = self.response_timeout;
        Box::pin(async move {
            if parts.uri.scheme().is_none() || parts.uri.authority().is_none() {
                return Err(ForwardError {
                    kind: ErrorKind::Protocol,
                    message: format!(
                        "the request target {} names no host (expected http://host:port/path)",
                        parts.uri
                    ),
                });
            }
            let sending = client.request(Request::from_parts(parts, body));
            match tokio::time::timeout(timeout, sending).await {
                Ok(Ok(response)) => Ok(response),
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
                Err(_) => Err(ForwardError {
                    kind: ErrorKind::Timeout,
                    message: format!("no response from the downstream within {timeout:?}"),
                }),
            }
        })
    }
}
