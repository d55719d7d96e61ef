//! The forward path: one request in, the same request to the upstream,
//! its response back, both bodies streamed through taps. Failures become a
//! 502 (gRPC: UNAVAILABLE) here, in one place.
//!
//! HTTP/1.x calls go to the upstream through the proxy's own client
//! ([`crate::upstream`]); HTTP/2 calls through hyper-util's pooled
//! client; CONNECT and upgrades on a hyper connection of their own, kept
//! for the tunnel.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use reprise_model::ErrorKind;

use crate::config::ProxyConfig;
use crate::egress::InboundTracing;
use crate::protocol;
use crate::upstream::{Http1Upstream, SendError, UpstreamBody};
use crate::watched::{BodyFailure, WatchedBody};
use reprise_net::hop;
use reprise_record::{
    BodyCapture, Identity, InboundLink, Metrics, Origin, Recorder, Recording, RequestHead, Side,
    Tap, TapBody, is_grpc,
};

/// The body the proxy answers with: the upstream's (HTTP/1.1 or
/// HTTP/2), tapped, or its own.
pub type ProxyBody = Either<TapBody<Either<UpstreamBody, Incoming>>, Full<Bytes>>;

type UpstreamClient = Client<ToUpstream, WatchedBody<TapBody<Incoming>>>;

/// Connects to the configured upstream whatever the request's target
/// names, so that the target (and with it HTTP/2's `:authority`) can keep
/// the client's authority under `--preserve-host`. TLS names the upstream.
#[derive(Clone)]
pub struct ToUpstream {
    inner: HttpsConnector<HttpConnector>,
    upstream: http::Uri,
}

impl tower_service::Service<http::Uri> for ToUpstream {
    type Response = <HttpsConnector<HttpConnector> as tower_service::Service<http::Uri>>::Response;
    type Error = <HttpsConnector<HttpConnector> as tower_service::Service<http::Uri>>::Error;
    type Future = <HttpsConnector<HttpConnector> as tower_service::Service<http::Uri>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _target: http::Uri) -> Self::Future {
        self.inner.call(self.upstream.clone())
    }
}

/// What every request handler shares.
pub struct Forwarder {
    pub config: ProxyConfig,
    pub recorder: Recorder,
    /// Where exchanges are recorded; `origin.scheme` is how clients
    /// reached the proxy.
    pub origin: Arc<Origin>,
    /// For calls that go to the upstream over HTTP/1.1 (ALPN http/1.1 to
    /// https upstreams): HTTP/1.x clients' and, with `auto`, HTTP/2
    /// clients' non-gRPC calls to an upstream that does not speak HTTP/2.
    http1: Arc<Http1Upstream>,
    /// For calls that go over HTTP/2 (prior knowledge, or ALPN h2): gRPC,
    /// and what `--upstream-protocol` sends there (see
    /// [`reprise_net::versions::over_h2`]).
    http2: UpstreamClient,
    /// Connections to the upstream outside the pools (CONNECT tunnels).
    connector: HttpsConnector<HttpConnector>,
    /// What is known of the upstream's HTTP versions.
    upstream: Arc<protocol::UpstreamVersions>,
    /// With egress recorded: the trace context calls are forwarded with,
    /// and where they are registered for linking.
    pub tracing: Option<InboundTracing>,
}

impl Forwarder {
    /// Clients for both protocols to the configured upstream; `tls` is
    /// what https upstreams are trusted by; `upstream`, which HTTP
    /// versions the upstream speaks; `http1_connections`, how many
    /// HTTP/1.1 connections to the upstream this serving thread may hold
    /// open (its share of `--max-connections`).
    pub fn new(
        config: ProxyConfig,
        recorder: Recorder,
        origin: Origin,
        tls: &rustls::ClientConfig,
        upstream: Arc<protocol::UpstreamVersions>,
        http1_connections: usize,
    ) -> Result<Forwarder, crate::ProxyError> {
        let http1 = Arc::new(Http1Upstream::new(
            &config.upstream,
            tls,
            config.connect_timeout,
            config.response_timeout,
            http1_connections,
        )?);
        let tls = tls.clone();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let tunnels = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector.clone());
        let https2 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(connector);
        let fixed = |inner| ToUpstream {
            inner,
            upstream: config.upstream.base.clone(),
        };
        let http2 = Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(fixed(https2));
        Ok(Forwarder {
            config,
            recorder,
            origin: Arc::new(origin),
            http1,
            http2,
            connector: tunnels,
            upstream,
            tracing: None,
        })
    }
}

/// A WebSocket-style upgrade (HTTP/1.1 `Upgrade` with `Connection:
/// upgrade`): passed through as a tunnel once the upstream agrees.
fn is_upgrade(request: &Request<Incoming>) -> bool {
    request.version() == Version::HTTP_11
        && request.headers().contains_key(header::UPGRADE)
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Handles one request.
/// `peer_ip` is `peer`'s address as `X-Forwarded-For` gives it, made once
/// per connection.
pub async fn forward(
    forwarder: Arc<Forwarder>,
    peer: SocketAddr,
    peer_ip: HeaderValue,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let metrics = forwarder.recorder.metrics();
    metrics.seen.inc();
    let config = &forwarder.config;
    let id = reprise_model::id::new_id_bytes();
    let version = request.version();
    let grpc = is_grpc(request.headers());
    let sampled = config.sampler.keep(&id);
    if !sampled {
        metrics.sampled_out.inc();
    }

    if request.method() == http::Method::CONNECT && version != Version::HTTP_11 {
        // HTTP/2's CONNECT (RFC 9113 §8.5, and the extended form) is not
        // passed through yet; refusing is safe, guessing is not.
        let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
            b"reprise: CONNECT is passed through over HTTP/1.1 only\n",
        ))));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return Ok(response);
    }
    let mut request = request;
    // CONNECT (HTTP/1.1) is sent to the upstream itself, never to the host
    // it names: the upstream decides, and a 2xx opens a tunnel to it.
    let connect = request.method() == http::Method::CONNECT && version == Version::HTTP_11;
    let upgrade = (connect || is_upgrade(&request)).then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    // With egress recorded, the call's trace id links the service's own
    // calls to it while it is in flight: until its response body is done
    // with (or, for the proxy's own answers, until this function
    // returns), then for the window.
    let trace = forwarder
        .tracing
        .as_ref()
        .map(|tracing| (tracing, tracing.trace(&parts.headers, &id)));
    let mut in_flight = trace.as_ref().and_then(|(tracing, trace)| {
        InboundLink::start(&tracing.links, trace.trace_id, id, sampled)
    });
    let trace_id = trace.as_ref().map(|(_, trace)| trace.trace_id);
    // What the client sent, before any proxy rewriting, is what is
    // recorded: the head is copied into the exchange's record as it is.
    let recording = sampled.then(|| {
        let head = RequestHead {
            method: &parts.method,
            uri: &parts.uri,
            version,
            headers: &parts.headers,
        };
        Recording::new(
            forwarder.recorder.clone(),
            Arc::clone(&forwarder.origin),
            Identity {
                id,
                peer: Some(peer),
                trace_id,
                ..Identity::default()
            },
            head,
        )
    });
    if let Some((_, trace)) = trace {
        trace.apply(&mut parts.headers);
    }

    let body = TapBody::new(
        body,
        recording
            .as_ref()
            .map(|r| Tap::new(Arc::clone(r), Side::Request)),
        metrics,
    );
    hop::strip_hop_by_hop(&mut parts.headers, upgrade.is_some() && !connect);
    if upgrade.is_some() && !connect {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if config.forwarded_headers {
        hop::add_forwarded(
            &mut parts.headers,
            version,
            peer_ip,
            forwarder.origin.scheme,
        );
    }
    // Which protocol the call takes upstream: the recording keeps the
    // one the client spoke, whatever this says.
    let needs_h2 = protocol::needs_h2(&parts.headers);
    let over_h2 = upgrade.is_none() && forwarder.upstream.over_h2(needs_h2, version).await;
    if needs_h2 && !over_h2 && upgrade.is_none() {
        return Ok(fail(
            metrics,
            &recording,
            grpc,
            ErrorKind::Protocol,
            "gRPC needs HTTP/2, and the upstream protocol is h1 (--upstream-protocol)".into(),
            StatusCode::BAD_GATEWAY,
        ));
    }
    // Host (HTTP/1.1) or `:authority` (HTTP/2): the upstream's, or the
    // client's under --preserve-host, whichever version either side
    // speaks.
    let authority = if connect {
        None
    } else {
        let client = config
            .preserve_host
            .then(|| protocol::client_authority(&parts))
            .flatten();
        parts.headers.remove(header::HOST);
        client.or_else(|| HeaderValue::from_str(config.upstream.authority.as_str()).ok())
    };
    if !over_h2 && let Some(host) = &authority {
        parts.headers.insert(header::HOST, host.clone());
    }
    if !over_h2 && version == Version::HTTP_2 {
        protocol::join_cookies(&mut parts.headers);
    }
    if !over_h2 {
        // HTTP/1.1 allows `TE` only with `Connection: te` (RFC 9110
        // §10.1.4), and only gRPC needs `TE: trailers`, which never goes
        // this way: dropped rather than sent without its Connection.
        parts.headers.remove(header::TE);
    }

    let sent = std::time::Instant::now();
    let response = if !over_h2 && upgrade.is_none() {
        // HTTP/1.1 upstream: the proxy's own client.
        let (head, framing) = Http1Upstream::request_head(&parts, body.size_hint().exact());
        let sending = async {
            let (head, body) = forwarder
                .http1
                .send(&parts.method, head, body, framing)
                .await?;
            let mut response = Response::new(Either::Left(body));
            *response.status_mut() = head.status;
            *response.headers_mut() = head.headers;
            Ok(response)
        };
        tokio::time::timeout(config.response_timeout, sending).await
    } else {
        let Some(uri) = hyper_target(config, &parts, connect, over_h2, authority.as_ref()) else {
            return Ok(fail(
                metrics,
                &recording,
                grpc,
                ErrorKind::Protocol,
                "the request target cannot be forwarded".into(),
                StatusCode::BAD_REQUEST,
            ));
        };
        parts.uri = uri;
        parts.version = if over_h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let broke = BodyFailure::default();
        let upstream = Request::from_parts(parts, WatchedBody::new(body, Arc::clone(&broke)));
        let sending = async {
            let response = if upgrade.is_some() {
                send_alone(&forwarder.connector, &config.upstream, upstream).await
            } else {
                send_pooled(&forwarder.http2, upstream).await
            };
            // hyper reports a request body that failed as its own error.
            response
                .map(|r| r.map(Either::Right))
                .map_err(|failed| match broke.get() {
                    Some(why) => SendError::RequestBody(why.clone()),
                    None => SendError::Upstream(failed),
                })
        };
        tokio::time::timeout(config.response_timeout, sending).await
    };
    match response {
        Ok(Ok(mut response)) => {
            metrics
                .upstream_latency
                .observe(sent.elapsed().as_secs_f64());
            let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS
                || (connect && response.status().is_success());
            if let Some(client_side) = upgrade
                && switched
            {
                return Ok(tunnel(client_side, &mut response, &recording));
            }
            let (mut parts, body) = response.into_parts();
            if let Some(recording) = &recording {
                recording.response_head(parts.status, &parts.headers);
            }
            hop::strip_hop_by_hop(&mut parts.headers, false);
            let body = TapBody::new(
                body,
                recording
                    .as_ref()
                    .map(|r| Tap::new(Arc::clone(r), Side::Response)),
                metrics,
            )
            .holding(in_flight.take());
            Ok(Response::from_parts(parts, Either::Left(body)))
        }
        Ok(Err(SendError::Upstream((kind, message)))) => Ok(fail(
            metrics,
            &recording,
            grpc,
            kind,
            message,
            StatusCode::BAD_GATEWAY,
        )),
        Ok(Err(SendError::RequestBody((kind, why)))) => {
            Ok(refuse(metrics, &recording, grpc, kind, &why))
        }
        Err(_) => {
            let message = format!(
                "no response from the upstream within {:?}",
                config.response_timeout
            );
            Ok(fail(
                metrics,
                &recording,
                grpc,
                ErrorKind::Timeout,
                message,
                StatusCode::GATEWAY_TIMEOUT,
            ))
        }
    }
}

/// The target for hyper's clients: HTTP/2's (absolute; its authority,
/// `authority` or the upstream's, becomes `:authority`), an upgrade's
/// (origin-form, on a connection of its own) or CONNECT's
/// (authority-form, as it came). `None`: it cannot be built.
fn hyper_target(
    config: &ProxyConfig,
    parts: &http::request::Parts,
    connect: bool,
    over_h2: bool,
    authority: Option<&HeaderValue>,
) -> Option<http::Uri> {
    if connect {
        return Some(parts.uri.clone());
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    if !over_h2 {
        return http::Uri::builder().path_and_query(path).build().ok();
    }
    // The connection always goes to the upstream (`ToUpstream`); the
    // target's authority is what HTTP/2 sends as `:authority`.
    let authority = authority
        .and_then(|a| http::uri::Authority::try_from(a.as_bytes()).ok())
        .unwrap_or_else(|| config.upstream.authority.clone());
    http::Uri::builder()
        .scheme(config.upstream.scheme.clone())
        .authority(authority)
        .path_and_query(path)
        .build()
        .ok()
}

/// Through hyper-util's pool (HTTP/2).
async fn send_pooled(
    client: &UpstreamClient,
    request: Request<WatchedBody<TapBody<Incoming>>>,
) -> Result<Response<Incoming>, (ErrorKind, String)> {
    client.request(request).await.map_err(|error| {
        let kind = if error.is_connect() {
            ErrorKind::Connect
        } else {
            crate::upstream::failure_kind(&error)
        };
        (kind, reprise_model::error::one_line(&error))
    })
}

/// On a connection of its own to the upstream (HTTP/1.1), kept for the
/// tunnel that may follow (CONNECT, upgrades).
async fn send_alone(
    connector: &HttpsConnector<HttpConnector>,
    upstream: &crate::config::Upstream,
    request: Request<WatchedBody<TapBody<Incoming>>>,
) -> Result<Response<Incoming>, (ErrorKind, String)> {
    use tower_service::Service;
    let target = upstream.base.clone();
    let mut connector = connector.clone();
    std::future::poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(|e| {
            (
                ErrorKind::Connect,
                reprise_model::error::one_line(e.as_ref()),
            )
        })?;
    let io = connector.call(target).await.map_err(|e| {
        (
            ErrorKind::Connect,
            reprise_model::error::one_line(e.as_ref()),
        )
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| (ErrorKind::Protocol, reprise_model::error::one_line(&e)))?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| (ErrorKind::Protocol, reprise_model::error::one_line(&e)))
}

/// The upstream agreed to switch protocols (a 101, or a 2xx to CONNECT):
/// answer the client the same and, once both sides have switched, copy bytes both ways until
/// either closes. The exchange is recorded as upgraded, without frames.
fn tunnel<B>(
    client_side: hyper::upgrade::OnUpgrade,
    response: &mut Response<B>,
    recording: &Option<Arc<Recording>>,
) -> Response<ProxyBody> {
    let upstream_side = hyper::upgrade::on(&mut *response);
    if let Some(recording) = recording {
        recording.response_head(response.status(), response.headers());
        recording.upgraded();
        recording.body_done(Side::Response, BodyCapture::default());
    }
    tokio::spawn(async move {
        if let (Ok(client), Ok(upstream)) = (client_side.await, upstream_side.await) {
            let mut client = hyper_util::rt::TokioIo::new(client);
            let mut upstream = hyper_util::rt::TokioIo::new(upstream);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    });
    let mut answer = Response::new(Either::Right(Full::new(Bytes::new())));
    *answer.status_mut() = response.status();
    *answer.headers_mut() = response.headers().clone();
    answer
}

/// The proxy's own answer to a request whose body the client broke (a
/// chunk that is not valid: `Protocol`; a body cut off: `Reset`): a 400
/// saying why (gRPC: INTERNAL, as gRPC maps a 400), recorded with the
/// error.
fn refuse(
    metrics: &Metrics,
    recording: &Option<Arc<Recording>>,
    grpc: bool,
    kind: ErrorKind,
    why: &str,
) -> Response<ProxyBody> {
    let message = if kind == ErrorKind::Protocol {
        format!("the request body is not valid: {why}")
    } else {
        format!("the request body broke off: {why}")
    };
    let mut response = fail(
        metrics,
        recording,
        grpc,
        kind,
        message.clone(),
        StatusCode::BAD_REQUEST,
    );
    let text = format!("reprise: {message}");
    if grpc {
        reprise_net::grpc_error_fields(response.headers_mut(), 13, &text);
    } else {
        *response.body_mut() = Either::Right(Full::new(Bytes::from(text + "\n")));
    }
    response.headers_mut().insert(
        reprise_model::protocol::PROXY_ERROR_HEADER,
        HeaderValue::from_static("request"),
    );
    response
}

/// The proxy's own answer when the upstream could not give one: a 502
/// (or 504) with the reason, or for gRPC a trailers-only UNAVAILABLE.
fn fail(
    metrics: &Metrics,
    recording: &Option<Arc<Recording>>,
    grpc: bool,
    kind: ErrorKind,
    message: String,
    status: StatusCode,
) -> Response<ProxyBody> {
    metrics.error(kind);
    let text = format!("reprise: upstream failed: {message}");
    if let Some(recording) = recording {
        recording.failed(kind, message);
        // No response body will flow: that side is done.
        recording.body_done(Side::Response, BodyCapture::default());
    }
    let mut response = if grpc {
        let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
        // UNAVAILABLE.
        reprise_net::grpc_error_fields(response.headers_mut(), 14, &text);
        response
    } else {
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(text + "\n"))));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    response.headers_mut().insert(
        reprise_model::protocol::PROXY_ERROR_HEADER,
        HeaderValue::from_static("upstream"),
    );
    response
}
