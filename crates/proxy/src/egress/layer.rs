//! [`EgressRecordLayer`]: records every call a forwarding service makes
//! for the service being recorded, as a downstream exchange linked to the
//! inbound exchange it served (by its `traceparent`'s trace id, through
//! the [`LinkRegistry`]). Generic over the inner service that reaches the
//! real target: the route listeners' [`RouteForward`](super::forward::RouteForward),
//! and the forward proxy's `reprise_intercept::Forward`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use reprise_model::sample::Sampler;
use reprise_model::trace::trace_id_of;
use reprise_model::{ErrorKind, Role};
use reprise_record::{
    BodyCapture, Identity, LinkRegistry, Metrics, Origin, Recorder, Recording, RequestHead, Side,
    Tap, TapBody,
};

/// Why the inner service could not forward a call: recorded as the
/// exchange's transport error, and answered by the listener (a 502, or
/// gRPC UNAVAILABLE).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ForwardError {
    /// What failed (connect, timeout, protocol...).
    pub kind: ErrorKind,
    /// Said to the client and recorded.
    pub message: String,
}

/// A forwarder that never fails (its failures are answers: `reprise_intercept::Forward`).
impl From<std::convert::Infallible> for ForwardError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl From<(ErrorKind, String)> for ForwardError {
    fn from((kind, message): (ErrorKind, String)) -> Self {
        ForwardError { kind, message }
    }
}

/// Where the calls a [`EgressRecordLayer`] records came through.
#[derive(Debug, Clone)]
pub struct EgressSource {
    /// `source.listener`: the address the service sends these calls to.
    pub listener: String,
    /// `source.route`: the `--egress-route` name; empty for the forward
    /// proxy.
    pub route: String,
    /// `source.service`.
    pub service: String,
    /// Bytes of each body kept (`--max-body`).
    pub max_body: usize,
}

/// Wraps a forwarding service in an [`EgressRecorder`].
#[derive(Debug, Clone)]
pub struct EgressRecordLayer {
    recorder: Recorder,
    origin: Arc<Origin>,
    links: Arc<LinkRegistry>,
    sampler: Sampler,
}

impl EgressRecordLayer {
    /// Records into `recorder` (its shared handle: a call waits on the
    /// writer thread for its inbound call's `--match` verdict), linking
    /// by `links`; calls with no parent are sampled by `sampler` on their
    /// own id (a linked call follows its parent).
    pub fn new(
        recorder: Recorder,
        source: EgressSource,
        links: Arc<LinkRegistry>,
        sampler: Sampler,
    ) -> EgressRecordLayer {
        let origin = Origin {
            service: source.service,
            instance: String::new(),
            recorder: "proxy",
            role: Role::Downstream,
            listener: source.listener,
            route: source.route,
            scheme: "http",
            authority: String::new(),
            server_addr: String::new(),
            max_body: source.max_body,
        };
        EgressRecordLayer {
            recorder,
            origin: Arc::new(origin),
            links,
            sampler,
        }
    }
}

impl<S> tower_layer::Layer<S> for EgressRecordLayer {
    type Service = EgressRecorder<S>;

    fn layer(&self, inner: S) -> EgressRecorder<S> {
        EgressRecorder {
            inner,
            layer: self.clone(),
        }
    }
}

/// Records each call `inner` forwards (see [`EgressRecordLayer`]). Its
/// requests must name their real target in absolute form
/// (`http://host:port/path`): that is what the record's scheme and
/// authority say.
#[derive(Debug, Clone)]
pub struct EgressRecorder<S> {
    inner: S,
    layer: EgressRecordLayer,
}

impl<S> EgressRecorder<S> {
    /// How a call is linked, whether it is recorded, and its recording.
    fn start<B>(&self, request: &Request<B>) -> Option<Arc<Recording>> {
        let layer = &self.layer;
        let metrics = layer.recorder.metrics();
        metrics.seen.inc();
        let id = reprise_model::id::new_id_bytes();
        let trace = request
            .headers()
            .get("traceparent")
            .and_then(|v| trace_id_of(v.as_bytes()));
        let (parent_id, link) = layer.links.link_by_trace(trace, metrics)?;
        let keep = parent_id.is_some() || layer.sampler.keep(&id);
        if !keep {
            metrics.sampled_out.inc();
            return None;
        }
        let identity = Identity {
            id,
            parent_id,
            trace_id: trace,
            peer: None,
            link: Some(link),
        };
        let head = RequestHead {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
        };
        Some(Recording::new(
            layer.recorder.clone(),
            Arc::clone(&layer.origin),
            identity,
            head,
        ))
    }
}

impl<S, B, RB> tower_service::Service<Request<B>> for EgressRecorder<S>
where
    S: tower_service::Service<Request<TapBody<B>>, Response = Response<RB>>,
    S::Error: Into<ForwardError>,
    B: http_body::Body,
    RB: http_body::Body,
{
    type Response = Response<TapBody<RB>>;
    type Error = ForwardError;
    type Future = EgressFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ForwardError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let recording = self.start(&request);
        let metrics = Arc::clone(self.layer.recorder.metrics());
        let request = request.map(|body| {
            let tap = recording
                .as_ref()
                .map(|r| Tap::new(Arc::clone(r), Side::Request));
            TapBody::new(body, tap, &metrics)
        });
        EgressFuture {
            inner: self.inner.call(request),
            recording,
            metrics,
        }
    }
}

pin_project! {
    /// An [`EgressRecorder`]'s call: the inner call's, with its response
    /// head recorded and its body tapped, or its failure recorded.
    pub struct EgressFuture<F> {
        #[pin]
        inner: F,
        recording: Option<Arc<Recording>>,
        metrics: Arc<Metrics>,
    }
}

impl<F, RB, E> Future for EgressFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<ForwardError>,
    RB: http_body::Body,
{
    type Output = Result<Response<TapBody<RB>>, ForwardError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result,
        };
        let recording = this.recording.take();
        match result {
            Ok(response) => {
                if let Some(recording) = &recording {
                    recording.response_head(response.status(), response.headers());
                }
                let tap = recording.map(|r| Tap::new(r, Side::Response));
                let metrics = &*this.metrics;
                Poll::Ready(Ok(response.map(|body| TapBody::new(body, tap, metrics))))
            }
            Err(error) => {
                let error: ForwardError = error.into();
                this.metrics.error(error.kind);
                if let Some(recording) = recording {
                    recording.failed(error.kind, error.message.clone());
                    recording.body_done(Side::Response, BodyCapture::default());
                }
                Poll::Ready(Err(error))
            }
        }
    }
}
