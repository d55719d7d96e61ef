//! The body of a mocked response: recorded frames released at their
//! recorded times, or, for a stream answered as it goes, as they are
//! decided.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// A recorded response body, frame by frame, each one released at its
/// recorded time (relative to the first).
pub struct MockBody {
    frames: VecDeque<(Option<Instant>, Frame<Bytes>)>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Frames still to come, for a stream answered as its requests arrive
    /// (see the `live` module); closed at the end.
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
