//! The egress listeners of `reprise record`: one per `--egress-route`,
//! forwarding every call to its URL through [`UpstreamForward`], and
//! `--egress`, a forward proxy: `reprise_intercept`'s front (absolute
//! form, CONNECT tunnels carrying TLS, h2c or HTTP/1.1) handing each call
//! to `reprise_intercept::Forward`. Both record through
//! [`EgressRecordLayer`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use reprise_intercept::{BoxBody, Forward, Front, FrontOptions, Layered, Target, layered};
use reprise_model::sample::Sampler;
use reprise_record::{ConnectionMetrics, LinkRegistry, Recorder, TapBody, is_grpc};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_layer::Layer;
use tower_service::Service;

use super::{EgressRecordLayer, EgressRecorder, EgressRoute, EgressSource, ForwardError};
use super::{UpstreamForward, forward::ForwardFuture};
use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::listener::{ConnectionGate, serve_connection};

/// What an egress listener answers with: the downstream's body, tapped,
/// or its own.
type EgressBody = Either<TapBody<Incoming>, Full<Bytes>>;

type Recorded = EgressRecorder<UpstreamForward<TapBody<Incoming>>>;

/// The egress listeners, running.
pub(crate) struct EgressListeners {
    /// Each listener's name (`--egress` or the route's) and address.
    pub(crate) addresses: Vec<(String, SocketAddr)>,
    /// Each listener's task, done once it has drained.
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Which listener: a route, or the forward proxy.
#[derive(Clone)]
enum Kind {
    Route(Arc<EgressRoute>),
    Forward,
}

/// Binds every egress listener of `config` and starts serving them on the
/// current runtime, recording into `recorder` (its shared handle) and
/// linking by `links`; they stop, and drain, when `stopped` turns true.
pub(crate) async fn start_listeners(
    config: &ProxyConfig,
    recorder: &Recorder,
    links: &Arc<LinkRegistry>,
    tls: &rustls::ClientConfig,
    stopped: &watch::Receiver<bool>,
) -> Result<EgressListeners, ProxyError> {
    let egress = &config.egress;
    let mut bound = Vec::new();
    for route in &egress.routes {
        let (listener, addr) = crate::server::bind(route.listen).await?;
        bound.push((listener, addr, Kind::Route(Arc::new(route.clone()))));
    }
    if let Some(forward) = egress.forward {
        let (listener, addr) = crate::server::bind(forward).await?;
        bound.push((listener, addr, Kind::Forward));
    }
    let forward = UpstreamForward::new(tls, config.connect_timeout, config.response_timeout);
    let mut listeners = EgressListeners {
        addresses: Vec::new(),
        tasks: Vec::new(),
    };
    for (listener, addr, kind) in bound {
        let (name, route) = match &kind {
            Kind::Route(route) => (route.name.clone(), route.name.clone()),
            Kind::Forward => ("--egress".to_string(), String::new()),
        };
        let source = EgressSource {
            listener: match &kind {
                Kind::Route(route) => route.listen.to_string(),
                Kind::Forward => egress
                    .forward
                    .map_or_else(|| addr.to_string(), |a| a.to_string()),
            },
            route,
            service: config.service.clone(),
            max_body: config.max_body,
        };
        let sampler = Sampler::new(config.sampler.rate()).unwrap_or_else(|_| Sampler::all());
        let layer = EgressRecordLayer::new(recorder.clone(), source, Arc::clone(links), sampler);
        let serving = match kind {
            Kind::Route(_) => Serving::Route(kind, Box::new(layer.layer(forward.clone()))),
            Kind::Forward => {
                let mut options = FrontOptions::default();
                options.warn = egress.warn.clone();
                // Tunnels that fail never become a call to record: they
                // are counted in /metrics instead.
                let metrics = Arc::clone(recorder.metrics());
                options.on_event = Some(Arc::new(move |event: reprise_intercept::FrontEvent| {
                    metrics.egress.tunnel(event.label());
                }));
                Serving::Proxy(Front::with_options(
                    layered(Forward::with_tls(tls.clone()), Absolute { record: layer }),
                    egress.leaves.clone(),
                    options,
                ))
            }
        };
        let gate = ConnectionGate::new(
            &format!("the egress listener {name} ({addr})"),
            config.limits,
            ConnectionMetrics::default(),
        );
        listeners.addresses.push((name, addr));
        listeners.tasks.push(tokio::spawn(serve(
            listener,
            gate,
            serving,
            Arc::new(crate::server::builder(config)),
            config.drain_timeout,
            stopped.clone(),
        )));
    }
    Ok(listeners)
}

/// How one listener serves its connections.
enum Serving {
    /// A route: every call to its URL.
    Route(Kind, Box<Recorded>),
    /// The forward proxy: the front, its calls recorded.
    Proxy(Front<Layered<Forward<TapBody<Incoming>>, Absolute>>),
}

async fn serve(
    listener: TcpListener,
    gate: ConnectionGate,
    serving: Serving,
    builder: Arc<hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>>,
    drain: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = gate.accept(&listener) => {
                let _ = accepted.stream.set_nodelay(true);
                let builder = Arc::clone(&builder);
                match &serving {
                    Serving::Route(kind, service) => {
                        let (kind, service) = (kind.clone(), (**service).clone());
                        let handler = service_fn(move |request| {
                            handle(kind.clone(), service.clone(), request)
                        });
                        tokio::spawn(serve_connection(
                            accepted,
                            None,
                            builder,
                            handler,
                            stopped.clone(),
                        ));
                    }
                    Serving::Proxy(front) => {
                        // A call for the proxy's own address would loop.
                        let local = accepted.stream.local_addr().ok();
                        tokio::spawn(serve_connection(
                            accepted,
                            None,
                            builder,
                            front.connection_service(local),
                            stopped.clone(),
                        ));
                    }
                }
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

/// One call to an egress listener.
async fn handle(
    kind: Kind,
    mut service: Recorded,
    request: Request<Incoming>,
) -> Result<Response<EgressBody>, Infallible> {
    let grpc = is_grpc(request.headers());
    let request = match target(&kind, request) {
        Ok(request) => request,
        Err((status, text)) => return Ok(own(status, text)),
    };
    let sending: EgressFuture = service.call(request);
    match sending.await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(error) => Ok(failed(&error, grpc)),
    }
}

type EgressFuture = super::EgressFuture<ForwardFuture>;

/// The request with its real target in absolute form, or the listener's
/// own answer.
fn target(
    kind: &Kind,
    request: Request<Incoming>,
) -> Result<Request<Incoming>, (StatusCode, String)> {
    let (mut parts, body) = request.into_parts();
    match kind {
        Kind::Route(route) => {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let uri = http::Uri::builder()
                .scheme(route.target.scheme.clone())
                .authority(route.target.authority.clone())
                .path_and_query(format!("{}{path}", route.prefix))
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
        }
        // The forward proxy is served by the front, never here.
        Kind::Forward => {}
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
