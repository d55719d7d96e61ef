//! What a connection is doing, told by wrappers around its service
//! (calls in flight, from head to the end of the answer's body) and its
//! I/O (bytes read).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::gate::Slot;

/// What one connection's calls are doing.
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Calls whose answer is not over.
    pub(super) in_flight: AtomicUsize,
    /// A call has come (its head was read).
    pub(super) called: AtomicBool,
    /// Bytes read from the client (after TLS).
    pub(super) read: AtomicU64,
    /// The client spoke HTTP/2 (its first bytes were the preface): bytes
    /// between its calls are control frames (PING, WINDOW_UPDATE), not
    /// the start of a request head.
    pub(super) h2: AtomicBool,
    /// Bytes written to the client (before TLS).
    pub(super) written: AtomicU64,
    /// The last write found the client's socket full: the client is not
    /// reading what it is sent.
    pub(super) write_blocked: AtomicBool,
    /// A call started or ended, bytes came while none was in flight, or
    /// a write found the client's socket full.
    pub(super) changed: Notify,
}

impl Activity {
    fn on_write(&self, written: &Poll<std::io::Result<usize>>) {
        match written {
            Poll::Pending => {
                if !self.write_blocked.swap(true, Ordering::AcqRel) {
                    self.changed.notify_one();
                }
            }
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.written.fetch_add(*n as u64, Ordering::AcqRel);
                self.write_blocked.store(false, Ordering::Release);
            }
            Poll::Ready(_) => {}
        }
    }

    fn on_read(&self, bytes: &[u8]) {
        let before = self.read.fetch_add(bytes.len() as u64, Ordering::AcqRel);
        if before == 0 && bytes.starts_with(b"PRI ") {
            self.h2.store(true, Ordering::Release);
        }
        if self.in_flight.load(Ordering::Acquire) == 0 {
            self.changed.notify_one();
        }
    }
}

pin_project_lite::pin_project! {
    /// A client's connection, telling its [`Activity`] what it reads, and
    /// holding its place under `--max-connections` for as long as it is
    /// open: also past an upgrade, as a tunnel's (WebSocket, CONNECT).
    #[derive(Debug)]
    pub(super) struct Watched<T> {
        #[pin]
        pub(super) inner: T,
        pub(super) activity: Arc<Activity>,
        pub(super) slot: Slot,
    }
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        std::task::ready!(this.inner.poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            this.activity.on_read(read);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let written = this.inner.poll_write(cx, buf);
        this.activity.on_write(&written);
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let written = this.inner.poll_write_vectored(cx, bufs);
        this.activity.on_write(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// One call in flight on a connection, from its head to the end of its
/// answer.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Busy {
        activity.called.store(true, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.changed.notify_one();
        Busy(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// A service whose calls are tracked on their connection's [`Activity`].
#[derive(Debug, Clone)]
pub(super) struct Tracked<S> {
    pub(super) inner: S,
    pub(super) activity: Arc<Activity>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let busy = Busy::new(&self.activity);
        TrackedFuture {
            inner: self.inner.call(request),
            busy: Some(busy),
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's answer on its way: the call stays in flight.
    #[derive(Debug)]
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        busy: Option<Busy>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answered = std::task::ready!(this.inner.poll(cx));
        let busy = this.busy.take();
        Poll::Ready(answered.map(|response| response.map(|inner| TrackedBody { inner, busy })))
    }
}

pin_project_lite::pin_project! {
    /// An answer's body: the call is in flight until it ends or is dropped.
    #[derive(Debug)]
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        busy: Option<Busy>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            this.busy.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
