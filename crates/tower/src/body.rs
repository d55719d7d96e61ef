//! Bodies: how a request body is observed without changing the type the
//! wrapped service expects, and the response bodies the layers return.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use reprise_record::TapBody;
use tokio::time::{Instant, Sleep};

use crate::scope::Scope;

/// A request body type the layers can observe while handing the wrapped
/// service its own type: the server side ([`RecordLayer`](crate::RecordLayer))
/// and the client side with [`Rebox`](crate::Rebox).
///
/// A layer wraps the body in a [`TapBody`] (which passes each frame on and
/// copies it, up to the cap, into the exchange's record) and gives the wrapped service the type it expects:
/// tonic and axum services take their own boxed body type, so a tapped body
/// is boxed back into it; hyper's `Incoming` becomes `TapBody<Incoming>`
/// (a plain hyper service then takes `Request<TapBody<Incoming>>`); the
/// boxed bodies of `http-body-util` stay boxed.
pub trait Observe: Body<Data = Bytes> + Send + Sized + 'static {
    /// What the wrapped service receives.
    type Observed: Body<Data = Bytes> + Send + 'static;
    /// The tapped body, as the wrapped service's type.
    fn tapped(body: TapBody<Self>) -> Self::Observed;
    /// The body unobserved, as the wrapped service's type.
    fn untapped(self) -> Self::Observed;
}

/// A body type the service takes boxed: the tapped body is boxed back.
macro_rules! reboxed {
    ($(#[$meta:meta])* $body:ty) => {
        $(#[$meta])*
        impl Observe for $body {
            type Observed = $body;
            fn tapped(body: TapBody<Self>) -> Self::Observed {
                <$body>::new(body)
            }
            fn untapped(self) -> Self::Observed {
                self
            }
        }
    };
}

/// A body type that cannot be rebuilt: the service takes `TapBody<B>`.
macro_rules! wrapped {
    ($(#[$meta:meta])* $body:ty) => {
        $(#[$meta])*
        impl Observe for $body {
            type Observed = TapBody<$body>;
            fn tapped(body: TapBody<Self>) -> Self::Observed {
                body
            }
            fn untapped(self) -> Self::Observed {
                TapBody::passthrough(self)
            }
        }
    };
}

reboxed!(
    #[cfg(feature = "tonic")]
    tonic::body::Body
);
reboxed!(
    #[cfg(feature = "axum")]
    axum::body::Body
);
wrapped!(
    #[cfg(feature = "hyper")]
    hyper::body::Incoming
);
wrapped!(
    /// A hyper-util client built for `TapBody<Full<Bytes>>` bodies takes
    /// requests with `Full<Bytes>` bodies through the client-side layer.
    http_body_util::Full<Bytes>
);

impl<E> Observe for http_body_util::combinators::UnsyncBoxBody<Bytes, E>
where
    E: std::fmt::Display + Send + 'static,
{
    type Observed = Self;
    fn tapped(body: TapBody<Self>) -> Self::Observed {
        http_body_util::combinators::UnsyncBoxBody::new(body)
    }
    fn untapped(self) -> Self::Observed {
        self
    }
}

impl<E> Observe for http_body_util::combinators::BoxBody<Bytes, E>
where
    E: std::fmt::Display + Send + Sync + 'static,
{
    type Observed = Self;
    fn tapped(body: TapBody<Self>) -> Self::Observed {
        http_body_util::combinators::BoxBody::new(body)
    }
    fn untapped(self) -> Self::Observed {
        self
    }
}

pin_project! {
    /// The response body of [`RecordLayer`](crate::RecordLayer): the
    /// service's own, tapped, polled with the inbound call's scope current
    /// (a response stream that calls downstream while it is being sent
    /// links those calls to the right parent).
    pub struct RecordBody<B> {
        #[pin]
        inner: TapBody<B>,
        scope: Option<Scope>,
    }
}

impl<B> RecordBody<B> {
    pub(crate) fn new(inner: TapBody<B>, scope: Option<Scope>) -> Self {
        RecordBody { inner, scope }
    }
}

impl<B> Body for RecordBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        match this.scope {
            Some(scope) => scope.enter(|| this.inner.poll_frame(cx)),
            None => this.inner.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The response body of the client-side layers: the downstream
    /// service's own (tapped when recorded), or a recorded one served by
    /// the mock.
    pub struct DownstreamBody<B> {
        #[pin]
        inner: Source<B>,
    }
}

pin_project! {
    #[project = SourceProj]
    enum Source<B> {
        Live { #[pin] body: TapBody<B> },
        Mocked { body: MockBody },
    }
}

impl<B> DownstreamBody<B> {
    pub(crate) fn live(body: TapBody<B>) -> Self {
        DownstreamBody {
            inner: Source::Live { body },
        }
    }

    pub(crate) fn mocked(body: MockBody) -> Self {
        DownstreamBody {
            inner: Source::Mocked { body },
        }
    }

    /// Whether the body comes from the recording.
    pub fn is_mocked(&self) -> bool {
        matches!(self.inner, Source::Mocked { .. })
    }
}

impl<B> Body for DownstreamBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            SourceProj::Live { body } => body.poll_frame(cx),
            SourceProj::Mocked { body } => body.poll(cx).map(|frame| frame.map(Ok)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Source::Live { body } => body.is_end_stream(),
            Source::Mocked { body } => body.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Source::Live { body } => body.size_hint(),
            Source::Mocked { body } => body.size_hint(),
        }
    }
}

/// A recorded response body, frame by frame, each one released at its
/// recorded time (relative to the first).
pub struct MockBody {
    frames: VecDeque<(Option<Instant>, Frame<Bytes>)>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Frames still to come, for a stream answered as its requests arrive
    /// (see `crate::live`); closed at the end.
    live: Option<tokio::sync::mpsc::Receiver<(Option<Instant>, Frame<Bytes>)>>,
}

impl MockBody {
    /// Data frames at their times, then the trailers (if any) at `end`.
    pub(crate) fn new(
        data: Vec<(Option<Instant>, Bytes)>,
        trailers: Option<(Option<Instant>, HeaderMap)>,
    ) -> MockBody {
        let mut frames: VecDeque<(Option<Instant>, Frame<Bytes>)> = data
            .into_iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|(at, d)| (at, Frame::data(d)))
            .collect();
        if let Some((at, map)) = trailers {
            frames.push_back((at, Frame::trailers(map)));
        }
        MockBody {
            frames,
            sleep: None,
            live: None,
        }
    }

    /// A body whose frames come from `frames` as they are decided.
    pub(crate) fn live(
        frames: tokio::sync::mpsc::Receiver<(Option<Instant>, Frame<Bytes>)>,
    ) -> MockBody {
        MockBody {
            frames: VecDeque::new(),
            sleep: None,
            live: Some(frames),
        }
    }

    /// Whether every frame has been handed out.
    pub(crate) fn is_done(&self) -> bool {
        self.frames.is_empty() && self.live.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.live.is_some() {
            return SizeHint::default();
        }
        let size: u64 = self
            .frames
            .iter()
            .filter_map(|(_, f)| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        if self.frames.iter().any(|(_, f)| f.is_trailers()) {
            let mut hint = SizeHint::new();
            hint.set_lower(size);
            hint
        } else {
            SizeHint::with_exact(size)
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame<Bytes>>> {
        if self.frames.is_empty()
            && let Some(live) = self.live.as_mut()
        {
            match live.poll_recv(cx) {
                Poll::Ready(Some(next)) => self.frames.push_back(next),
                Poll::Ready(None) => self.live = None,
                Poll::Pending => return Poll::Pending,
            }
        }
        let Some((due, _)) = self.frames.front() else {
            return Poll::Ready(None);
        };
        if let Some(due) = *due
            && due > Instant::now()
        {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            sleep.as_mut().reset(due);
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(self.frames.pop_front().map(|(_, frame)| frame))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.get_mut().poll(cx).map(|frame| frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        MockBody::size_hint(self)
    }
}
