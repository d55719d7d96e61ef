//! [`RecordLayer`]: the server side. Records each inbound call and makes
//! its [`Scope`] current while it is served.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use reprise_model::sample::Sampler;
use reprise_record::{
    BodyCapture, Identity, Metrics, Origin, Recorder, Recording, RequestHead, Side, Tap, TapBody,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{Observe, RecordBody};
use crate::mock::MockStore;
use crate::scope::Scope;
use reprise_model::trace::{trace_id_from, trace_id_of};

pub use reprise_model::protocol::{
    MISSES_HEADER, MISSING_CALLS_HEADER, NEW_CALLS_HEADER, REPLAY_HEADER, UNUSED_HEADER,
};

/// What every [`Record`] service of one layer shares.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// `None`: calls are not recorded.
    pub recorder: Option<Recorder>,
    /// Whether calls get a [`Scope`] (record and mock mode); switched off,
    /// calls pass through untouched.
    pub scoped: bool,
    pub origin: Arc<Origin>,
    pub sampler: Sampler,
    pub metrics: Arc<Metrics>,
    /// Mock mode: the recording, to tell recorded downstream calls a
    /// replayed call never made.
    pub mocks: Option<Arc<MockStore>>,
}

/// Records each inbound call (HTTP/1.1, HTTP/2, gRPC of every streaming
/// kind, with trailers and gRPC status) through the bounded bypass queue,
/// and serves it with its [`Scope`] current, so downstream calls made
/// meanwhile are linked to it.
///
/// Made by [`Reprise::inbound`](crate::Reprise::inbound). In mock mode it
/// records nothing and only scopes each call by its `x-reprise-replay`
/// header; switched off it passes calls through untouched.
#[derive(Clone, Debug)]
pub struct RecordLayer {
    shared: Arc<Inbound>,
}

impl RecordLayer {
    pub(crate) fn new(shared: Arc<Inbound>) -> Self {
        RecordLayer { shared }
    }
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`RecordLayer`] makes.
#[derive(Clone, Debug)]
pub struct Record<S> {
    inner: S,
    shared: Arc<Inbound>,
}

/// The client's address, where the server noted it.
fn peer<B>(request: &Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    #[cfg(feature = "tonic")]
    if let Some(info) = extensions.get::<tonic::transport::server::TcpConnectInfo>()
        && let Some(addr) = info.remote_addr()
    {
        return Some(addr);
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    extensions.get::<SocketAddr>().copied()
}

impl<S, B, RB> Service<Request<B>> for Record<S>
where
    S: Service<Request<B::Observed>, Response = Response<RB>>,
    S::Error: std::fmt::Display,
    B: Observe,
    B::Error: std::fmt::Display,
    RB: Body<Data = bytes::Bytes>,
{
    type Response = Response<RecordBody<RB>>;
    type Error = S::Error;
    type Future = RecordFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let shared = &self.shared;
        if !shared.scoped {
            let future = self.inner.call(request.map(B::untapped));
            return RecordFuture {
                inner: Scoping::Plain { future },
                pending: Pending(None),
                scope: None,
                metrics: Arc::clone(&shared.metrics),
                mocks: None,
            };
        }
        shared.metrics.seen.inc();
        let id = reprise_model::id::new_id_bytes();
        let headers = request.headers();
        let replay_of = headers
            .get(REPLAY_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| reprise_model::id::parse_hex(v.trim()));
        let trace_id = headers
            .get("traceparent")
            .and_then(|v| trace_id_of(v.as_bytes()))
            .unwrap_or_else(|| trace_id_from(&id));
        let recording = match &shared.recorder {
            Some(recorder) if shared.sampler.keep(&id) => {
                let head = RequestHead::of(&request);
                let identity = Identity {
                    id,
                    parent_id: None,
                    trace_id: Some(trace_id),
                    peer: peer(&request),
                    link: None,
                };
                Some(Recording::new(
                    recorder.clone(),
                    Arc::clone(&shared.origin),
                    identity,
                    head,
                ))
            }
            Some(_) => {
                shared.metrics.sampled_out.inc();
                None
            }
            None => None,
        };
        let scope = Scope::new(id, trace_id, recording.is_some(), replay_of);
        request.extensions_mut().insert(scope.clone());
        let (parts, body) = request.into_parts();
        let body = match &recording {
            Some(recording) => B::tapped(TapBody::new(
                body,
                Some(Tap::new(Arc::clone(recording), Side::Request)),
                &shared.metrics,
            )),
            None => body.untapped(),
        };
        let request = Request::from_parts(parts, body);
        let inner = &mut self.inner;
        let future = scope.enter(|| inner.call(request));
        RecordFuture {
            inner: Scoping::Scoped {
                future: scope.clone().run(future),
            },
            pending: Pending(recording),
            scope: Some(scope),
            metrics: Arc::clone(&shared.metrics),
            mocks: shared.mocks.clone(),
        }
    }
}

/// The response side of a recording not yet reported: a call abandoned
/// before its response head (its future dropped) is reported cancelled.
struct Pending(Option<Arc<Recording>>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(recording) = self.0.take() {
            let mut body = BodyCapture::default();
            body.cancelled();
            recording.body_done(Side::Response, body);
        }
    }
}

pin_project! {
    #[project = ScopingProj]
    enum Scoping<F> {
        Scoped { #[pin] future: tokio::task::futures::TaskLocalFuture<Scope, F> },
        Plain { #[pin] future: F },
    }
}

impl<F: Future> Future for Scoping<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            ScopingProj::Scoped { future } => future.poll(cx),
            ScopingProj::Plain { future } => future.poll(cx),
        }
    }
}

pin_project! {
    /// The future of a [`Record`] call.
    pub struct RecordFuture<F> {
        #[pin]
        inner: Scoping<F>,
        pending: Pending,
        scope: Option<Scope>,
        metrics: Arc<Metrics>,
        mocks: Option<Arc<MockStore>>,
    }
}

impl<F, RB, E> Future for RecordFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: std::fmt::Display,
    RB: Body<Data = bytes::Bytes>,
{
    type Output = Result<Response<RecordBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.inner.poll(cx) {
            Poll::Ready(result) => result,
            Poll::Pending => return Poll::Pending,
        };
        let recording = this.pending.0.take();
        match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                if let Some(scope) = this.scope.as_ref() {
                    let misses = scope.mock_misses();
                    if misses > 0 {
                        parts
                            .headers
                            .insert(MISSES_HEADER, http::HeaderValue::from(misses));
                        name_calls(&mut parts.headers, NEW_CALLS_HEADER, scope.mock_missed());
                    }
                    if let Some(mocks) = this.mocks.as_ref() {
                        let unused = mocks.unused_in(scope.mock());
                        if unused > 0 {
                            parts
                                .headers
                                .insert(UNUSED_HEADER, http::HeaderValue::from(unused));
                            let named = mocks.unused_calls_in(scope.mock(), crate::scope::NAMED);
                            name_calls(&mut parts.headers, MISSING_CALLS_HEADER, named);
                        }
                    }
                }
                let body = match recording {
                    Some(recording) => {
                        recording.response_head(parts.status, &parts.headers);
                        TapBody::new(
                            body,
                            Some(Tap::new(recording, Side::Response)),
                            this.metrics,
                        )
                    }
                    None => TapBody::passthrough(body),
                };
                let body = RecordBody::new(body, this.scope.take());
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
            Err(error) => {
                if let Some(recording) = recording {
                    recording.failed(reprise_model::ErrorKind::Other, error.to_string());
                    recording.body_done(Side::Response, BodyCapture::default());
                }
                this.metrics.error(reprise_model::ErrorKind::Other);
                Poll::Ready(Err(error))
            }
        }
    }
}

/// One `name` field per call (calls whose text is not a valid field value
/// are only counted).
fn name_calls(headers: &mut http::HeaderMap, name: &'static str, calls: Vec<String>) {
    for call in calls {
        if let Ok(value) = http::HeaderValue::from_str(&call) {
            headers.append(name, value);
        }
    }
}
