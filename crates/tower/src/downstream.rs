//! The client side: [`CaptureLayer`] records each downstream call as a
//! child of the inbound call being served; [`MockLayer`] answers them from
//! a recording. Both make a [`Downstream`] service, which is also what
//! [`Reprise::downstream`](crate::Reprise::downstream) gives in every mode,
//! so a client's type does not depend on the mode.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use reprise_model::ErrorKind;
use reprise_model::sample::Sampler;
use reprise_record::{
    BodyCapture, Identity, Metrics, Origin, Recorder, Recording, RequestHead, Side, Tap, TapBody,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{DownstreamBody, Observe};
use crate::mock::MockStore;
use crate::scope::Scope;
use reprise_mock::MockService;
use reprise_model::trace::{trace_id_from, trace_id_of, traceparent};

/// The error type of [`Downstream`]: the wrapped client's error, or a
/// mocked call's [`RecordedFailure`](crate::RecordedFailure).
pub use reprise_mock::BoxError;

/// What the capturing services of one layer share.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub recorder: Recorder,
    pub origin: Arc<Origin>,
    pub sampler: Sampler,
    pub metrics: Arc<Metrics>,
}

#[derive(Debug)]
pub(crate) enum Mode {
    Off,
    Capture(Outbound),
    /// Answered by a [`MockService`] on `store`.
    Mock {
        store: Arc<MockStore>,
        /// The authority of requests whose target names none.
        authority: String,
    },
}

/// Records each downstream call the wrapped client makes as a child of the
/// inbound call being served (see [`Scope`]), adding a `traceparent` when
/// the call has none. [`Reprise::downstream`](crate::Reprise::downstream)
/// gives one in record mode (as a [`DownstreamLayer`]), and
/// [`Reprise::capture`](crate::Reprise::capture) as itself.
#[derive(Clone, Debug)]
pub struct CaptureLayer {
    mode: Arc<Mode>,
}

/// Answers each downstream call from a recording instead of calling out,
/// through a [`MockService`] (see `reprise_mock` for the matching
/// rules), in the [`Scope`] of the inbound call being served. Made by
/// [`Reprise::downstream`](crate::Reprise::downstream) in mock mode, or
/// directly with [`MockLayer::new`].
#[derive(Clone, Debug)]
pub struct MockLayer {
    mode: Arc<Mode>,
}

/// What [`Reprise::downstream`](crate::Reprise::downstream) gives: a
/// [`CaptureLayer`], a [`MockLayer`] or a pass-through, by configuration.
#[derive(Clone, Debug)]
pub struct DownstreamLayer {
    mode: Arc<Mode>,
}

impl CaptureLayer {
    pub(crate) fn from_outbound(outbound: Outbound) -> Self {
        CaptureLayer {
            mode: Arc::new(Mode::Capture(outbound)),
        }
    }
}

impl MockLayer {
    /// Answers from `store`; `authority` is used for requests whose target
    /// names none (a tonic client's requests carry only a path), and should
    /// be the one the recording was made with.
    pub fn new(store: Arc<MockStore>, authority: impl Into<String>) -> Self {
        MockLayer {
            mode: Arc::new(Mode::Mock {
                store,
                authority: authority.into(),
            }),
        }
    }
}

impl DownstreamLayer {
    pub(crate) fn new(mode: Mode) -> Self {
        DownstreamLayer {
            mode: Arc::new(mode),
        }
    }
}

impl From<CaptureLayer> for DownstreamLayer {
    fn from(layer: CaptureLayer) -> Self {
        DownstreamLayer { mode: layer.mode }
    }
}

impl From<MockLayer> for DownstreamLayer {
    fn from(layer: MockLayer) -> Self {
        DownstreamLayer { mode: layer.mode }
    }
}

macro_rules! downstream_layer {
    ($layer:ty) => {
        impl<S> Layer<S> for $layer {
            type Service = Downstream<S>;

            fn layer(&self, inner: S) -> Downstream<S> {
                Downstream {
                    inner,
                    mode: Arc::clone(&self.mode),
                }
            }
        }
    };
}

downstream_layer!(CaptureLayer);
downstream_layer!(MockLayer);
downstream_layer!(DownstreamLayer);

/// The client-side service: captures, mocks or passes through.
#[derive(Clone, Debug)]
pub struct Downstream<S> {
    inner: S,
    mode: Arc<Mode>,
}

type DownstreamFuture<RB> =
    Pin<Box<dyn Future<Output = Result<Response<DownstreamBody<RB>>, BoxError>> + Send>>;

impl<S, B, RB> Service<Request<B>> for Downstream<S>
where
    S: Service<Request<B::Observed>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Observe,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: std::fmt::Display,
{
    type Response = Response<DownstreamBody<RB>>;
    type Error = BoxError;
    type Future = DownstreamFuture<RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match *self.mode {
            // Mocked calls never reach the client.
            Mode::Mock { .. } => Poll::Ready(Ok(())),
            _ => self.inner.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match &*self.mode {
            Mode::Off => {
                let future = self.inner.call(request.map(B::untapped));
                Box::pin(async move {
                    let response = future.await.map_err(Into::into)?;
                    Ok(response.map(|b| DownstreamBody::live(TapBody::passthrough(b))))
                })
            }
            Mode::Capture(outbound) => capture(&mut self.inner, outbound, request),
            Mode::Mock { store, authority } => {
                let mut service = MockService::new(Arc::clone(store)).default_authority(authority);
                let mut request = request;
                if let Some(scope) = Scope::of(&request) {
                    request.extensions_mut().insert(scope.mock().clone());
                }
                let answer = service.call(request);
                Box::pin(async move { Ok(answer.await?.map(DownstreamBody::mocked)) })
            }
        }
    }
}

fn capture<S, B, RB>(
    inner: &mut S,
    outbound: &Outbound,
    mut request: Request<B>,
) -> DownstreamFuture<RB>
where
    S: Service<Request<B::Observed>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Observe,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: std::fmt::Display,
{
    let scope = Scope::of(&request);
    let id = reprise_model::id::new_id_bytes();
    let headers = request.headers_mut();
    let trace_id = match headers
        .get("traceparent")
        .and_then(|v| trace_id_of(v.as_bytes()))
    {
        Some(trace_id) => trace_id,
        None => {
            let trace_id = scope
                .as_ref()
                .map_or_else(|| trace_id_from(&id), Scope::trace_id);
            if let Ok(value) = HeaderValue::from_str(&traceparent(trace_id, &id)) {
                headers.insert("traceparent", value);
            }
            trace_id
        }
    };
    outbound.metrics.seen.inc();
    let keep = match &scope {
        Some(scope) => scope.recorded(),
        None => outbound.sampler.keep(&id),
    };
    if !keep {
        outbound.metrics.sampled_out.inc();
    }
    let recording = keep.then(|| {
        let head = RequestHead::of(&request);
        let identity = Identity {
            id,
            parent_id: scope.as_ref().map(Scope::id_bytes),
            trace_id: Some(trace_id),
            peer: None,
        };
        Recording::new(
            outbound.recorder.clone(),
            Arc::clone(&outbound.origin),
            identity,
            head,
        )
    });
    let metrics = Arc::clone(&outbound.metrics);
    let request = request.map(|body| match &recording {
        Some(recording) => B::tapped(TapBody::new(
            body,
            Some(Tap::new(Arc::clone(recording), Side::Request)),
            &metrics,
        )),
        None => body.untapped(),
    });
    let future = inner.call(request);
    Box::pin(async move {
        let started = std::time::Instant::now();
        match future.await {
            Ok(response) => {
                metrics
                    .upstream_latency
                    .observe(started.elapsed().as_secs_f64());
                let (parts, body) = response.into_parts();
                let body = match recording {
                    Some(recording) => {
                        recording.response_head(parts.status, &parts.headers);
                        TapBody::new(body, Some(Tap::new(recording, Side::Response)), &metrics)
                    }
                    None => TapBody::passthrough(body),
                };
                Ok(Response::from_parts(parts, DownstreamBody::live(body)))
            }
            Err(error) => {
                let error: BoxError = error.into();
                let kind = classify(error.as_ref());
                metrics.error(kind);
                if let Some(recording) = recording {
                    recording.failed(kind, reprise_model::error::one_line(error.as_ref()));
                    recording.body_done(Side::Response, BodyCapture::default());
                }
                Err(error)
            }
        }
    })
}

/// The kind of a client's failure, from the I/O error under it or its text.
fn classify(error: &(dyn std::error::Error + 'static)) -> ErrorKind {
    if let Some(kind) = reprise_model::error::io_failure(error) {
        return kind;
    }
    let text = reprise_model::error::one_line(error).to_ascii_lowercase();
    if text.contains("certificate") || text.contains("tls") {
        ErrorKind::Tls
    } else if text.contains("timed out") || text.contains("elapsed") {
        ErrorKind::Timeout
    } else if text.contains("connect") {
        ErrorKind::Connect
    } else {
        ErrorKind::Other
    }
}
