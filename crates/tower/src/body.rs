//! Bodies: how a request body is observed without changing the type the
//! wrapped service expects, and the response bodies the layers return.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use reprise_mock::MockBody;
use reprise_record::TapBody;

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
            SourceProj::Mocked { body } => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Source::Live { body } => body.is_end_stream(),
            Source::Mocked { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Source::Live { body } => body.size_hint(),
            Source::Mocked { body } => body.size_hint(),
        }
    }
}
