//! The client's request body on its way to hyper's clients (HTTP/2
//! upstreams, tunnels), watched: when it fails (a chunk that is not
//! valid, a client that left), hyper only resets the upstream stream and
//! reports its own error, so the body keeps why, for the forward path to
//! answer the client's fault as the client's (a 400), not the upstream's.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::upstream::Failed;

/// Why a watched body failed, once it has.
pub type BodyFailure = Arc<OnceLock<Failed>>;

/// A request body that keeps its failure in a [`BodyFailure`].
pub struct WatchedBody<B> {
    inner: B,
    failure: BodyFailure,
}

impl<B> WatchedBody<B> {
    /// Watches `inner`; its failure goes to `failure`.
    pub fn new(inner: B, failure: BodyFailure) -> Self {
        WatchedBody { inner, failure }
    }
}

impl<B> Body for WatchedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(error))) = &polled {
            let kind = crate::upstream::failure_kind(error);
            let _ = this
                .failure
                .set((kind, reprise_model::error::one_line(error)));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
