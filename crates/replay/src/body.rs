//! The request body of a replayed call: the recorded bytes in one frame,
//! or a gRPC call's messages each at its recorded offset, then the
//! recorded trailers.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::call::Call;

/// A replayed request body.
#[derive(Debug)]
pub enum ReplayBody {
    /// Bytes in one frame and nothing else (most calls): no handle on the
    /// call is kept.
    Plain(Option<Bytes>),
    /// Messages at their offsets, or trailers.
    Parts(Parts),
}

/// A body sent in parts: gRPC messages at their offsets, then trailers.
#[derive(Debug)]
pub struct Parts {
    call: Arc<Call>,
    /// Next part to send: 0 is the body (or the first message).
    next: usize,
    trailers_sent: bool,
    /// When the call started (taken when the first message is due), and
    /// how recorded offsets scale (`None`: messages go out back to back).
    start: Option<Instant>,
    speed: Option<f64>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ReplayBody {
    /// The body of `call`; message offsets count from its first poll.
    pub fn new(call: &Arc<Call>, speed: Option<f64>) -> Self {
        if call.messages.is_empty() && call.trailers.is_none() {
            return ReplayBody::Plain((!call.body.is_empty()).then(|| call.body.clone()));
        }
        ReplayBody::Parts(Parts {
            call: Arc::clone(call),
            next: 0,
            trailers_sent: false,
            start: None,
            speed,
            sleep: None,
        })
    }
}

impl Parts {
    fn parts(&self) -> usize {
        if self.call.messages.is_empty() {
            usize::from(!self.call.body.is_empty())
        } else {
            self.call.messages.len()
        }
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = match &mut *self {
            ReplayBody::Plain(bytes) => {
                return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b))));
            }
            ReplayBody::Parts(parts) => parts,
        };
        if this.next < this.parts() {
            if this.call.messages.is_empty() {
                this.next += 1;
                return Poll::Ready(Some(Ok(Frame::data(this.call.body.clone()))));
            }
            let (offset_ns, message) = &this.call.messages[this.next];
            let start = *this.start.get_or_insert_with(Instant::now);
            if let Some(speed) = this.speed {
                let due = start + Duration::from_nanos((*offset_ns as f64 / speed) as u64);
                if due > Instant::now() {
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
            this.sleep = None;
            this.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(message.clone()))));
        }
        if !this.trailers_sent {
            this.trailers_sent = true;
            if let Some(trailers) = &this.call.trailers {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplayBody::Plain(bytes) => bytes.is_none(),
            ReplayBody::Parts(p) => {
                p.next >= p.parts() && (p.trailers_sent || p.call.trailers.is_none())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplayBody::Plain(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ReplayBody::Parts(_) => SizeHint::default(),
        }
    }
}
