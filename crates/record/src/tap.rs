//! A body wrapper that passes every frame on unchanged and copies it (up to
//! the size cap) into the exchange's pooled record. The tap owns its
//! body's capture, so the call's path takes no lock per frame; it never
//! waits on the recorder.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use reprise_model::ErrorKind;

use crate::body::BodyCapture;
use crate::links::InboundLink;
use crate::metrics::Metrics;
use crate::recording::{Recording, Side};

pin_project! {
    /// `inner`, observed. When it ends, fails or is dropped early, the
    /// recording gets what passed and how it ended.
    pub struct TapBody<B> {
        #[pin]
        inner: B,
        tap: Option<Tap>,
        // Counts a broken body, recorded or not.
        metrics: Option<Arc<Metrics>>,
        // An inbound exchange kept registered for egress linking until
        // its response body is done with (boxed: a body that holds none,
        // the case without egress, grows by a pointer only).
        held: Option<Box<InboundLink>>,
    }
}

/// The recording side of a [`TapBody`]; a drop before the end reports the
/// body as cancelled.
pub struct Tap {
    recording: Arc<Recording>,
    side: Side,
    capture: BodyCapture,
    /// Set once the body's end (or failure) has been reported.
    finished: bool,
}

impl Tap {
    /// Observes `side` of `recording`.
    pub fn new(recording: Arc<Recording>, side: Side) -> Tap {
        Tap {
            capture: recording.lend_body(side),
            recording,
            side,
            finished: false,
        }
    }

    fn frame(&mut self, frame: &Frame<Bytes>) {
        if let Some(data) = frame.data_ref() {
            let offset = self.recording.offset_ns();
            self.capture.data(offset, data, self.recording.max_body());
        } else if let Some(trailers) = frame.trailers_ref() {
            self.capture.trailers(trailers);
        }
    }

    fn finish(mut self, error: Option<String>) {
        if let Some(error) = error {
            self.capture.broke(error);
        }
        self.report();
    }

    fn report(&mut self) {
        self.finished = true;
        self.recording
            .body_done(self.side, std::mem::take(&mut self.capture));
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if !self.finished {
            self.capture.cancelled();
            self.report();
        }
    }
}

impl<B: Body> TapBody<B> {
    /// Wraps `inner`; with no tap the body passes through unrecorded (a
    /// break is still counted in `metrics`). A body already at its end (no
    /// body at all) is reported done at once.
    pub fn new(inner: B, tap: Option<Tap>, metrics: &Arc<Metrics>) -> Self {
        let tap = match tap {
            Some(tap) if inner.is_end_stream() => {
                tap.finish(None);
                None
            }
            other => other,
        };
        TapBody {
            inner,
            tap,
            metrics: Some(Arc::clone(metrics)),
            held: None,
        }
    }

    /// Keeps `link` (the inbound exchange this body answers) registered
    /// until the body is dropped: its downstream calls are linked to it
    /// while its response streams, not only until its head.
    pub fn holding(mut self, link: Option<InboundLink>) -> Self {
        self.held = link.map(Box::new);
        self
    }

    /// `inner` unobserved and uncounted: what a recorder that is switched
    /// off passes on.
    pub fn passthrough(inner: B) -> Self {
        TapBody {
            inner,
            tap: None,
            metrics: None,
            held: None,
        }
    }
}

impl<B> Body for TapBody<B>
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
        let mut inner = this.inner;
        let polled = inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(tap) = this.tap.as_mut() {
                    tap.frame(frame);
                }
                // Whoever reads this body may stop once it says it is at
                // its end, or once it has the trailers (always the last
                // frame), without polling for the final `None`.
                if (frame.is_trailers() || inner.is_end_stream())
                    && let Some(tap) = this.tap.take()
                {
                    tap.finish(None);
                }
            }
            Poll::Ready(Some(Err(error))) => {
                if let Some(metrics) = this.metrics {
                    metrics.error(ErrorKind::Reset);
                }
                if let Some(tap) = this.tap.take() {
                    tap.finish(Some(error.to_string()));
                }
            }
            Poll::Ready(None) => {
                if let Some(tap) = this.tap.take() {
                    tap.finish(None);
                }
            }
            Poll::Pending => {}
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
