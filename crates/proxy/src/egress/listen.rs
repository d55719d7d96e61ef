//! The egress listeners of `reprise record`.
//!
//! - Each `--egress-route` is served as the reverse proxy's listener is:
//!   bound once per serving thread (`SO_REUSEPORT`), each thread serving
//!   its share on its own single-threaded runtime with its own
//!   [`RouteForward`] (the proxy's HTTP/1.1 client, pooled on that
//!   thread), so that a call, its downstream connection and their tasks
//!   stay on one thread ([`bind_routes`], [`RouteServer`]).
//! - `--egress`, the forward proxy, is `reprise_intercept`'s front
//!   (absolute form, CONNECT tunnels carrying TLS, h2c or HTTP/1.1)
//!   handing each call to `reprise_intercept::Forward`, on the runtime
//!   that started the proxy ([`start_forward_proxy`]).
//!
//! Both record through [`EgressRecordLayer`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use reprise_intercept::{BoxBody, Forward, Front, FrontOptions, Layered, Target, layered};
use reprise_model::sample::Sampler;
use reprise_record::{ConnectionMetrics, LinkRegistry, Recorder, TapBody, is_grpc};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_layer::Layer;
use tower_service::Service;

use super::forward::{RouteBody, RouteForward, RouteFuture};
use super::{EgressRecordLayer, EgressRecorder, EgressRoute, EgressSource, ForwardError};
use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::listener::{ConnectionGate, serve_connection};

/// What a route answers with: the downstream's body, tapped, or its own.
type EgressBody = Either<TapBody<RouteBody>, Full<Bytes>>;

type Recorded = EgressRecorder<RouteForward>;

/// The routes' listeners, each bound once per serving thread, not yet
/// served.
pub(crate) struct BoundRoutes {
    /// Each route's name and address (the one bound, for port 0).
    pub(crate) addresses: Vec<(String, SocketAddr)>,
    routes: Vec<BoundRoute>,
}

struct BoundRoute {
    route: Arc<EgressRoute>,
    addr: SocketAddr,
    /// One for all the route's listeners: `--max-connections` counts the
    /// route's connections on every thread.
    gate: ConnectionGate,
    /// One per serving thread, taken by [`BoundRoutes::take`].
    listeners: Vec<std::net::TcpListener>,
}

/// Binds every `--egress-route` of `config` `threads` times
/// (`SO_REUSEPORT`, as the reverse proxy's listener). `listening`: the
/// addresses this process already listens on (the reverse proxy's, and
/// `--egress`), which a route may not share ([`refuse_shared`]); the ones
/// bound here are added to it.
pub(crate) fn bind_routes(
    config: &ProxyConfig,
    threads: usize,
    listening: &mut Vec<SocketAddr>,
) -> Result<BoundRoutes, ProxyError> {
    let mut bound = BoundRoutes {
        addresses: Vec::new(),
        routes: Vec::new(),
    };
    for route in &config.egress.routes {
        refuse_shared(listening, route.listen)?;
        let (mut listeners, addr) = crate::server::bind_shared(route.listen, threads)?;
        listening.push(addr);
        // Taken from the back, one per thread.
        listeners.reverse();
        let gate = ConnectionGate::new(
            &format!("the egress listener {} ({addr})", route.name),
            config.limits,
            ConnectionMetrics::default(),
        );
        bound.addresses.push((route.name.clone(), addr));
        bound.routes.push(BoundRoute {
            route: Arc::new(route.clone()),
            addr,
            gate,
            listeners,
        });
    }
    Ok(bound)
}

/// Refuses to bind `at` when this process already listens on an address
/// (in `listening`) that would take the same connections: `SO_REUSEPORT`
/// would let it, and split their connections between the two.
pub(crate) fn refuse_shared(listening: &[SocketAddr], at: SocketAddr) -> Result<(), ProxyError> {
    match listening.iter().find(|a| overlap(**a, at)) {
        Some(other) => Err(ProxyError::Bind {
            addr: at,
            source: std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{other} is already listened on by this process"),
            ),
        }),
        None => Ok(()),
    }
}

/// Whether listening on `a` and `b` (port 0: any free port) would take
/// the same connections.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

impl BoundRoutes {
    /// One serving thread's share: a [`RouteServer`] per route, recording
    /// into `recorder` (the thread's handle) and linking by `links`;
    /// `tls`, what https downstreams are trusted by;
    /// `http1_connections`, how many HTTP/1.1 connections to each
    /// downstream the thread may hold open.
    pub(crate) fn take(
        &mut self,
        config: &ProxyConfig,
        recorder: &Recorder,
        links: &Arc<LinkRegistry>,
        tls: &rustls::ClientConfig,
        http1_connections: usize,
    ) -> Result<Vec<RouteServer>, ProxyError> {
        let mut servers = Vec::with_capacity(self.routes.len());
        for bound in &mut self.routes {
            let Some(listener) = bound.listeners.pop() else {
                continue;
            };
            let route = Arc::clone(&bound.route);
            let source = EgressSource {
                listener: route.listen.to_string(),
                route: route.name.clone(),
                service: config.service.clone(),
                max_body: config.max_body,
            };
            let layer = EgressRecordLayer::new(
                recorder.clone(),
                source,
                Arc::clone(links),
                sampler(config),
            );
            let forward = RouteForward::new(
                &route,
                tls,
                config.connect_timeout,
                config.response_timeout,
                http1_connections,
            )?;
            servers.push(RouteServer {
                listener,
                addr: bound.addr,
                gate: bound.gate.clone(),
                route,
                service: layer.layer(forward),
            });
        }
        Ok(servers)
    }
}

/// Calls with no parent are sampled on their own id at `--sample`'s rate.
fn sampler(config: &ProxyConfig) -> Sampler {
    Sampler::new(config.sampler.rate()).unwrap_or_else(|_| Sampler::all())
}

/// One route's listener on one serving thread.
pub(crate) struct RouteServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    gate: ConnectionGate,
    route: Arc<EgressRoute>,
    service: Recorded,
}

impl RouteServer {
    /// Serves the route's connections on the current (the serving
    /// thread's) runtime with `builder` until `stopped` turns true, then
    /// lets them finish for up to `drain`.
    pub(crate) async fn run(
        self,
        builder: Arc<auto::Builder<TokioExecutor>>,
        drain: std::time::Duration,
        mut stopped: watch::Receiver<bool>,
    ) -> Result<(), ProxyError> {
        let RouteServer {
            listener,
            addr,
            gate,
            route,
            service,
        } = self;
        let listener =
            TcpListener::from_std(listener).map_err(|source| ProxyError::Bind { addr, source })?;
        loop {
            tokio::select! {
                accepted = gate.accept(&listener) => {
                    let _ = accepted.stream.set_nodelay(true);
                    let (route, service) = (Arc::clone(&route), service.clone());
                    let handler = service_fn(move |request| {
                        handle(Arc::clone(&route), service.clone(), request)
                    });
                    tokio::spawn(serve_connection(
                        accepted,
                        None,
                        Arc::clone(&builder),
                        handler,
                        stopped.clone(),
                    ));
                }
                _ = stopped.changed() => break,
            }
        }
        drop(listener);
        let _ = tokio::time::timeout(drain, gate.all_closed()).await;
        Ok(())
    }
}

/// The forward proxy, `--egress`, running: its address and its task,
/// done once it has drained.
pub(crate) struct ForwardProxy {
    pub(crate) addr: SocketAddr,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

/// Binds `--egress` and starts serving it on the current runtime,
/// recording into `recorder` (its shared handle) and linking by `links`;
/// it stops, and drains, when `stopped` turns true.
pub(crate) async fn start_forward_proxy(
    config: &ProxyConfig,
    at: SocketAddr,
    recorder: &Recorder,
    links: &Arc<LinkRegistry>,
    tls: &rustls::ClientConfig,
    stopped: &watch::Receiver<bool>,
) -> Result<ForwardProxy, ProxyError> {
    let egress = &config.egress;
    let (listener, addr) = crate::server::bind(at).await?;
    let source = EgressSource {
        listener: at.to_string(),
        route: String::new(),
        service: config.service.clone(),
        max_body: config.max_body,
    };
    let layer =
        EgressRecordLayer::new(recorder.clone(), source, Arc::clone(links), sampler(config));
    let mut options = FrontOptions::default();
    options.warn = egress.warn.clone();
    // Tunnels that fail never become a call to record: they are counted
    // in /metrics instead.
    let metrics = Arc::clone(recorder.metrics());
    options.on_event = Some(Arc::new(move |event: reprise_intercept::FrontEvent| {
        metrics.egress.tunnel(event.label());
    }));
    let front = Front::with_options(
        layered(Forward::with_tls(tls.clone()), Absolute { record: layer }),
        egress.leaves.clone(),
        options,
    );
    let gate = ConnectionGate::new(
        &format!("the egress listener --egress ({addr})"),
        config.limits,
        ConnectionMetrics::default(),
    );
    let task = tokio::spawn(serve_proxy(
        listener,
        gate,
        front,
        Arc::new(crate::server::builder(config)),
        config.drain_timeout,
        stopped.clone(),
    ));
    Ok(ForwardProxy { addr, task })
}

async fn serve_proxy(
    listener: TcpListener,
    gate: ConnectionGate,
    front: Front<Layered<Forward<TapBody<Incoming>>, Absolute>>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    drain: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = gate.accept(&listener) => {
                let _ = accepted.stream.set_nodelay(true);
                // A call for the proxy's own address would loop.
                let local = accepted.stream.local_addr().ok();
                tokio::spawn(serve_connection(
                    accepted,
                    None,
                    Arc::clone(&builder),
                    front.connection_service(local),
                    stopped.clone(),
                ));
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, gate.all_closed()).await;
}

/// The forward proxy's calls, recorded: each named in absolute form by
/// its target ([`Target::absolute_uri`]: `https://host:port/path` inside
/// a TLS tunnel) before the [`EgressRecordLayer`] sees it.
#[derive(Clone)]
struct Absolute {
    record: EgressRecordLayer,
}

impl<S> Layer<S> for Absolute {
    type Service = AbsoluteService<S>;

    fn layer(&self, inner: S) -> AbsoluteService<S> {
        AbsoluteService {
            inner: self.record.layer(inner),
        }
    }
}

/// See [`Absolute`].
#[derive(Clone)]
struct AbsoluteService<S> {
    inner: EgressRecorder<S>,
}

type ProxyFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response<BoxBody>, ForwardError>> + Send>,
>;

impl<S> Service<Request<Incoming>> for AbsoluteService<S>
where
    S: Service<Request<TapBody<Incoming>>, Response = Response<BoxBody>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = ForwardError;
    type Future = ProxyFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ForwardError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> ProxyFuture {
        if let Some(target) = request.extensions().get::<Target>() {
            *request.uri_mut() = target.absolute_uri(request.uri());
        }
        let sending = self.inner.call(request);
        Box::pin(async move {
            let response = sending.await?;
            Ok(response.map(|body| body.boxed_unsync()))
        })
    }
}

/// One call to a route.
async fn handle(
    route: Arc<EgressRoute>,
    mut service: Recorded,
    request: Request<Incoming>,
) -> Result<Response<EgressBody>, Infallible> {
    let grpc = is_grpc(request.headers());
    let request = match target(&route, request) {
        Ok(request) => request,
        Err((status, text)) => return Ok(own(status, text)),
    };
    let sending: super::EgressFuture<RouteFuture> = service.call(request);
    match sending.await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(error) => Ok(failed(&error, grpc)),
    }
}

/// The request with the route's downstream as its target, in absolute
/// form (the URL's path before the call's), or the route's own answer.
fn target(
    route: &EgressRoute,
    request: Request<Incoming>,
) -> Result<Request<Incoming>, (StatusCode, String)> {
    let (mut parts, body) = request.into_parts();
    let path = match (route.prefix.as_str(), parts.uri.path_and_query()) {
        // The call's own, not parsed again.
        ("", Some(path)) => path.clone(),
        (prefix, path) => {
            let path = path.map_or("/", |p| p.as_str());
            match http::uri::PathAndQuery::try_from(format!("{prefix}{path}")) {
                Ok(path) => path,
                Err(e) => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        format!("reprise: the request target cannot be forwarded: {e}\n"),
                    ));
                }
            }
        }
    };
    let uri = http::Uri::builder()
        .scheme(route.target.scheme.clone())
        .authority(route.target.authority.clone())
        .path_and_query(path)
        .build();
    match uri {
        Ok(uri) => parts.uri = uri,
        Err(e) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("reprise: the request target cannot be forwarded: {e}\n"),
            ));
        }
    }
    Ok(Request::from_parts(parts, body))
}

/// A listener's own answer.
fn own(status: StatusCode, text: String) -> Response<EgressBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(text))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The downstream could not answer: a 502 (504 for a timeout) saying why,
/// or for gRPC a trailers-only UNAVAILABLE.
fn failed(error: &ForwardError, grpc: bool) -> Response<EgressBody> {
    let text = format!("reprise: downstream failed: {}", error.message);
    let mut response = if grpc {
        let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
        reprise_net::grpc_error_fields(response.headers_mut(), 14, &text);
        response
    } else {
        let status = if error.kind == reprise_model::ErrorKind::Timeout {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        own(status, text + "\n")
    };
    response.headers_mut().insert(
        reprise_model::protocol::PROXY_ERROR_HEADER,
        HeaderValue::from_static("upstream"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn config_with(routes: &[&str]) -> ProxyConfig {
        let mut config = ProxyConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            crate::config::Upstream::parse("http://127.0.0.1:1").unwrap(),
        );
        config.egress.routes = routes
            .iter()
            .map(|spec| EgressRoute::parse(spec).unwrap())
            .collect();
        config
    }

    #[tokio::test]
    async fn a_route_is_bound_once_per_thread_and_never_on_an_address_taken() {
        let config = config_with(&["pay=127.0.0.1:0=http://127.0.0.1:9"]);
        let bound = bind_routes(&config, 3, &mut Vec::new()).unwrap();
        let addr = bound.addresses[0].1;
        assert_ne!(addr.port(), 0);
        assert_eq!(bound.routes[0].listeners.len(), 3);
        for listener in &bound.routes[0].listeners {
            assert_eq!(listener.local_addr().unwrap(), addr);
        }
        // The listener's address (or --egress's), or one that overlaps
        // it, would split its connections.
        for spec in [
            format!("pay=127.0.0.1:{}=http://127.0.0.1:9", addr.port()),
            format!("pay=0.0.0.0:{}=http://127.0.0.1:9", addr.port()),
        ] {
            let config = config_with(&[&spec]);
            match bind_routes(&config, 1, &mut vec![addr]) {
                Err(ProxyError::Bind { source, .. }) => {
                    assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{source}");
                }
                other => panic!("{spec}: {:?}", other.map(|b| b.addresses)),
            }
        }
        assert!(!overlap(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from(([127, 0, 0, 1], 0))
        ));
        assert!(!overlap(
            SocketAddr::from(([127, 0, 0, 1], 80)),
            SocketAddr::from(([127, 0, 0, 2], 80))
        ));
    }

    /// A downstream answering every HTTP/1.1 request on a kept connection
    /// with `hi`.
    async fn downstream() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut read = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        while let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                            read.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn calls_to_a_route_served_by_several_threads_are_all_answered_and_recorded() {
        let downstream = downstream().await;
        let mut config = config_with(&[&format!("pay=127.0.0.1:0=http://{downstream}/v1")]);
        config.threads = Some(2);
        let sink = reprise_model::MemorySink::new();
        let proxy = crate::start(config, Box::new(sink.clone())).await.unwrap();
        let route = proxy.egress_addresses()[0].1;
        // Connections of their own, which the kernel spreads over both
        // threads' sockets; two calls on each.
        let mut calls = Vec::new();
        for i in 0..8 {
            calls.push(tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(route).await.unwrap();
                let mut answers = String::new();
                for j in 0..2 {
                    let request = format!("GET /c{i}-{j} HTTP/1.1\r\nhost: x\r\n\r\n");
                    stream.write_all(request.as_bytes()).await.unwrap();
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.ends_with(b"hi") {
                        let n = stream.read(&mut buf).await.unwrap();
                        assert_ne!(n, 0, "closed after {got:?}");
                        got.extend_from_slice(&buf[..n]);
                    }
                    answers.push_str(&String::from_utf8_lossy(&got));
                }
                answers
            }));
        }
        for call in calls {
            let answers = tokio::time::timeout(Duration::from_secs(10), call)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 2, "{answers}");
        }
        proxy.shutdown().await.unwrap();
        let mut paths: Vec<String> = sink
            .exchanges()
            .into_iter()
            .map(|e| {
                let request = e.request.unwrap_or_default();
                assert_eq!(request.authority, downstream.to_string());
                assert_eq!(e.source.unwrap_or_default().route, "pay");
                request.path
            })
            .collect();
        paths.sort();
        let mut want: Vec<String> = (0..8)
            .flat_map(|i| (0..2).map(move |j| format!("/v1/c{i}-{j}")))
            .collect();
        want.sort();
        assert_eq!(paths, want);
    }
}
