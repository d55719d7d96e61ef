//! The client side: [`CaptureLayer`] records each downstream call as a
//! child of the inbound call being served; [`MockLayer`] answers them from
//! a recording. Both make a [`Downstream`] service, which is also what
//! [`Reprise::downstream`](crate::Reprise::downstream) gives in every mode,
//! so a client's type does not depend on the mode.

use std::future::Future;
use std::marker::PhantomData;
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
///
/// `K` says what the wrapped client receives: [`Wrap`] (the default)
/// hands it `Request<TapBody<B>>` for a request body of any type `B`, as
/// tower-http's layers do; [`Rebox`] (from [`rebox`](DownstreamLayer::rebox))
/// hands it the body type it was given, for clients that take one type
/// only, such as tonic's `Channel`.
#[derive(Debug)]
pub struct DownstreamLayer<K = Wrap> {
    mode: Arc<Mode>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for DownstreamLayer<K> {
    fn clone(&self) -> Self {
        DownstreamLayer {
            mode: Arc::clone(&self.mode),
            kind: PhantomData,
        }
    }
}

/// How a client-side layer hands a request body of type `B` to the
/// client it wraps, tapped or not.
pub trait Tapping<B> {
    /// What the wrapped client receives.
    type Body;
    /// The tapped body, as the wrapped client's type.
    fn tapped(body: TapBody<B>) -> Self::Body;
    /// The body unobserved, as the wrapped client's type.
    fn untapped(body: B) -> Self::Body;
}

/// The client receives `TapBody<B>` whatever `B` is: a hyper-util client
/// built for `TapBody<Full<Bytes>>` takes `Full<Bytes>` requests through
/// the layer, one built for `TapBody<MyBody>` takes `MyBody`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wrap;

/// The client receives the body type it was given: the tapped body is
/// boxed back into it (tonic's and axum's bodies, `http-body-util`'s boxed
/// bodies; see [`Observe`]). For a tonic `Channel`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rebox;

impl<B: Body> Tapping<B> for Wrap {
    type Body = TapBody<B>;
    fn tapped(body: TapBody<B>) -> TapBody<B> {
        body
    }
    fn untapped(body: B) -> TapBody<B> {
        TapBody::passthrough(body)
    }
}

impl<B: Observe> Tapping<B> for Rebox {
    type Body = B::Observed;
    fn tapped(body: TapBody<B>) -> B::Observed {
        B::tapped(body)
    }
    fn untapped(body: B) -> B::Observed {
        body.untapped()
    }
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
            kind: PhantomData,
        }
    }

    /// The same layer, handing the wrapped client the request body type
    /// it was given (boxed back after the tap) instead of `TapBody<B>`:
    /// for clients that take one body type only, such as tonic's
    /// `Channel`.
    pub fn rebox(self) -> DownstreamLayer<Rebox> {
        DownstreamLayer {
            mode: self.mode,
            kind: PhantomData,
        }
    }
}

impl From<CaptureLayer> for DownstreamLayer {
    fn from(layer: CaptureLayer) -> Self {
        DownstreamLayer {
            mode: layer.mode,
            kind: PhantomData,
        }
    }
}

impl From<MockLayer> for DownstreamLayer {
    fn from(layer: MockLayer) -> Self {
        DownstreamLayer {
            mode: layer.mode,
            kind: PhantomData,
        }
    }
}

macro_rules! downstream_layer {
    ($layer:ty, $kind:ty) => {
        impl<S> Layer<S> for $layer {
            type Service = Downstream<S, $kind>;

            fn layer(&self, inner: S) -> Downstream<S, $kind> {
                Downstream {
                    inner,
                    mode: Arc::clone(&self.mode),
                    kind: PhantomData,
                }
            }
        }
    };
}

downstream_layer!(CaptureLayer, Wrap);
downstream_layer!(MockLayer, Wrap);
downstream_layer!(DownstreamLayer<Wrap>, Wrap);
downstream_layer!(DownstreamLayer<Rebox>, Rebox);

/// The client-side service: captures, mocks or passes through. `K` says
/// what the wrapped client receives (see [`DownstreamLayer`]).
#[derive(Debug)]
pub struct Downstream<S, K = Wrap> {
    inner: S,
    mode: Arc<Mode>,
    kind: PhantomData<fn() -> K>,
}

impl<S: Clone, K> Clone for Downstream<S, K> {
    fn clone(&self) -> Self {
        Downstream {
            inner: self.inner.clone(),
            mode: Arc::clone(&self.mode),
            kind: PhantomData,
        }
    }
}

type DownstreamFuture<RB> =
    Pin<Box<dyn Future<Output = Result<Response<DownstreamBody<RB>>, BoxError>> + Send>>;

impl<S, K, B, RB> Service<Request<B>> for Downstream<S, K>
where
    K: Tapping<B>,
    S: Service<Request<K::Body>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
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
                let future = self.inner.call(request.map(K::untapped));
                Box::pin(async move {
                    let response = future.await.map_err(Into::into)?;
                    Ok(response.map(|b| DownstreamBody::live(TapBody::passthrough(b))))
                })
            }
            Mode::Capture(outbound) => capture::<S, K, B, RB>(&mut self.inner, outbound, request),
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

fn capture<S, K, B, RB>(
    inner: &mut S,
    outbound: &Outbound,
    mut request: Request<B>,
) -> DownstreamFuture<RB>
where
    K: Tapping<B>,
    S: Service<Request<K::Body>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
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
            link: scope.as_ref().map(Scope::next_link),
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
        Some(recording) => K::tapped(TapBody::new(
            body,
            Some(Tap::new(Arc::clone(recording), Side::Request)),
            &metrics,
        )),
        None => K::untapped(body),
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

/// The kind of a client's failure, told by the typed errors in its cause
/// chain (including errors an `std::io::Error` wraps): a connect failure
/// hyper-util reports, a TLS failure from rustls, tokio's timeout, an
/// I/O error's kind. Only a chain that has none of them is judged by its
/// text.
pub(crate) fn classify(error: &(dyn std::error::Error + 'static)) -> ErrorKind {
    let mut io_kind = None;
    for cause in causes(error) {
        if let Some(kind) = typed_kind(cause) {
            return kind;
        }
        if io_kind.is_none() && cause.is::<std::io::Error>() {
            io_kind = reprise_model::error::io_failure(cause);
        }
    }
    if let Some(kind) = io_kind {
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

/// `error` and its causes, looking inside the I/O errors that wrap one
/// (an `std::io::Error`'s `source` skips the error it wraps).
fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| {
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        }
    })
}

/// The kind one error tells by its type alone.
fn typed_kind(error: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    if error.is::<tokio::time::error::Elapsed>() {
        return Some(ErrorKind::Timeout);
    }
    #[cfg(feature = "rustls")]
    if error.is::<rustls::Error>() {
        return Some(ErrorKind::Tls);
    }
    #[cfg(feature = "hyper")]
    {
        if let Some(client) = error.downcast_ref::<hyper_util::client::legacy::Error>()
            && client.is_connect()
        {
            // The cause under it says more (refused, TLS, timed out), if
            // it is one of ours; else it failed connecting.
            let under = std::error::Error::source(client).and_then(|source| {
                causes(source).find_map(|cause| {
                    typed_kind(cause).or_else(|| {
                        cause
                            .is::<std::io::Error>()
                            .then(|| reprise_model::error::io_failure(cause))
                            .flatten()
                            .filter(|kind| *kind != ErrorKind::Other)
                    })
                })
            });
            return Some(under.unwrap_or(ErrorKind::Connect));
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && hyper.is_timeout()
        {
            return Some(ErrorKind::Timeout);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("calling out failed")]
    struct Wrapped(#[source] Box<dyn std::error::Error + Send + Sync>);

    fn wrapped(error: impl std::error::Error + Send + Sync + 'static) -> Wrapped {
        Wrapped(Box::new(error))
    }

    #[tokio::test]
    async fn failures_are_told_by_type_not_text() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&wrapped(refused)), ErrorKind::Connect);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&wrapped(reset)), ErrorKind::Reset);
        let elapsed = tokio::time::timeout(std::time::Duration::ZERO, std::future::pending::<()>())
            .await
            .err();
        if let Some(elapsed) = elapsed {
            assert_eq!(classify(&wrapped(elapsed)), ErrorKind::Timeout);
        }
        // An error whose text says "connect" but whose type says otherwise
        // is judged by its type.
        let misleading = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset while connecting to a tls server",
        );
        assert_eq!(classify(&wrapped(misleading)), ErrorKind::Reset);
        // Text is the last resort, for errors that offer nothing else.
        let text = std::io::Error::other("x");
        assert_eq!(classify(&wrapped(text)), ErrorKind::Other);
        #[derive(Debug, thiserror::Error)]
        #[error("certificate not valid for name")]
        struct Opaque;
        assert_eq!(classify(&Opaque), ErrorKind::Tls);
    }

    #[cfg(feature = "rustls")]
    #[test]
    fn a_rustls_error_inside_an_io_error_is_tls() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        assert_eq!(classify(&wrapped(tls)), ErrorKind::Tls);
    }

    #[cfg(feature = "hyper")]
    #[tokio::test]
    async fn a_refused_hyper_util_connection_is_connect() -> Result<(), Box<dyn std::error::Error>>
    {
        // A port nothing listens on: bound, then closed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        drop(listener);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<Bytes>>();
        let error = client
            .get(format!("http://{addr}/").parse()?)
            .await
            .err()
            .ok_or("a closed port answered")?;
        assert!(error.is_connect(), "{error:?}");
        assert_eq!(classify(&error), ErrorKind::Connect);
        Ok(())
    }
}
