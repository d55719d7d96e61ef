//! `--out`: the calls a mock answered, written as a tape of downstream
//! exchanges (one per call, as it reached the mock and as it was
//! answered), for `reprise diff` to compare with the recorded ones.
//!
//! Each call's request and response bodies pass through a [`Tapped`]
//! body that keeps what went by (bodies cut at the mock's body cap, gRPC
//! messages one by one); when the response ends, or is dropped unfinished,
//! the exchange is redacted and handed to the writer thread.

use std::path::Path;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use reprise_model::grpc::Deframer;
use reprise_model::redact::Redactor;
use reprise_model::{
    Direction, ErrorKind, Exchange, Flags, GrpcStatus, Header, Link, Protocol, Replay, Sink,
    TransportError,
};
use reprise_tape::{TapeWriter, WriterOptions};

use crate::error::ServerError;
use crate::service::BoxError;

/// What the writer thread is handed.
enum Message {
    Call(Box<Exchange>),
    Close,
}

/// Where `--out` writes, opened when the server starts: a new tape
/// ([`OutStore::tape`]), or any store the caller opens (a Kafka topic).
#[derive(Clone)]
pub struct OutStore {
    name: String,
    open: Arc<dyn Fn() -> Result<Box<dyn Sink>, String> + Send + Sync>,
}

impl std::fmt::Debug for OutStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl OutStore {
    /// A store named `name` (in messages), opened by `open`.
    pub fn new(
        name: impl Into<String>,
        open: impl Fn() -> Result<Box<dyn Sink>, String> + Send + Sync + 'static,
    ) -> OutStore {
        OutStore {
            name: name.into(),
            open: Arc::new(open),
        }
    }

    /// A new tape at `path` (mode 0600; an existing file or a symbolic
    /// link there is an error).
    pub fn tape(path: &Path) -> OutStore {
        let at = path.to_path_buf();
        OutStore::new(path.display().to_string(), move || {
            TapeWriter::create(&at, WriterOptions::default())
                .map(|writer| Box::new(writer) as Box<dyn Sink>)
                .map_err(|e| e.to_string())
        })
    }

    /// What it is called in messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The `--out` tape and the thread that writes it.
pub(crate) struct OutTape {
    sender: mpsc::Sender<Message>,
    thread: JoinHandle<Result<u64, ServerError>>,
}

/// Where finished calls go.
#[derive(Clone)]
pub(crate) struct OutSender {
    sender: mpsc::Sender<Message>,
    redactor: Arc<Redactor>,
    max_body: usize,
}

impl OutSender {
    /// Writes an exchange built whole (a database call), redacted.
    pub(crate) fn send(&self, mut exchange: Exchange) {
        self.redactor.apply(&mut exchange);
        // A closed tape takes nothing more: the call came too late.
        let _ = self.sender.send(Message::Call(Box::new(exchange)));
    }
}

impl OutTape {
    /// Opens `store` and starts its writer.
    pub fn start(
        store: &OutStore,
        redactor: Redactor,
        max_body: usize,
    ) -> Result<(OutTape, OutSender), ServerError> {
        let mut writer = (store.open)().map_err(|reason| ServerError::Out {
            store: store.name.clone(),
            reason,
        })?;
        let (sender, receiver) = mpsc::channel();
        let name = store.name.clone();
        let thread = std::thread::Builder::new()
            .name("reprise-mock-out".into())
            .spawn(move || {
                let failed = |e: reprise_model::StoreError| ServerError::Out {
                    store: name.clone(),
                    reason: e.to_string(),
                };
                let mut written = 0;
                while let Ok(Message::Call(exchange)) = receiver.recv() {
                    writer.append(*exchange).map_err(failed)?;
                    written += 1;
                }
                writer.close().map_err(failed)?;
                Ok(written)
            })
            .map_err(|e| ServerError::Out {
                store: store.name.clone(),
                reason: format!("cannot start its writer: {e}"),
            })?;
        let out = OutSender {
            sender: sender.clone(),
            redactor: Arc::new(redactor),
            max_body,
        };
        Ok((OutTape { sender, thread }, out))
    }

    /// Writes what was handed so far, closes the tape; gives how many
    /// calls it holds. Calls finishing later are not written.
    pub fn close(self) -> Result<u64, ServerError> {
        let _ = self.sender.send(Message::Close);
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => Err(ServerError::OutThread),
        }
    }
}

/// One call as the mock saw it, filled in as its bodies go by.
pub(crate) struct Capture {
    inner: Mutex<Call>,
    out: OutSender,
}

struct Call {
    exchange: Exchange,
    start: Instant,
    request_body: Vec<u8>,
    request_size: u64,
    request_messages: Option<Deframer>,
    response_body: Vec<u8>,
    response_size: u64,
    response_messages: Option<Deframer>,
    sent: bool,
}

/// What a call's exchange starts with: the request as it reached the
/// mock and how it was placed.
pub(crate) struct CallHead {
    pub exchange: Exchange,
    pub grpc: bool,
}

impl Capture {
    /// A call whose request head is `head`.
    pub fn new(head: CallHead, out: &OutSender) -> Arc<Capture> {
        let keep = out.max_body;
        Arc::new(Capture {
            inner: Mutex::new(Call {
                exchange: head.exchange,
                start: Instant::now(),
                request_body: Vec::new(),
                request_size: 0,
                request_messages: head.grpc.then(|| Deframer::new(Direction::Request, keep)),
                response_body: Vec::new(),
                response_size: 0,
                response_messages: head.grpc.then(|| Deframer::new(Direction::Response, keep)),
                sent: false,
            }),
            out: out.clone(),
        })
    }

    fn call(&self) -> std::sync::MutexGuard<'_, Call> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The response head as served, which recorded call answered it (if
    /// any) and whether it was a miss.
    pub fn answered(&self, status: u16, headers: &HeaderMap, recorded: Option<&[u8]>, miss: bool) {
        let mut call = self.call();
        let response = reprise_model::Response {
            status: u32::from(status),
            headers: fields(headers),
            ..Default::default()
        };
        call.exchange.response = Some(response);
        if let Some(id) = recorded {
            call.exchange.replay = Some(Replay {
                recorded_id: id.to_vec(),
                ..Default::default()
            });
        }
        if miss {
            call.exchange
                .flags
                .get_or_insert_with(Flags::default)
                .mock_miss = true;
        }
    }

    fn data(&self, direction: Direction, data: &[u8]) {
        let keep = self.out.max_body;
        let mut call = self.call();
        let offset = elapsed_ns(call.start);
        let call = &mut *call;
        let (body, size, messages) = match direction {
            Direction::Request => (
                &mut call.request_body,
                &mut call.request_size,
                &mut call.request_messages,
            ),
            _ => (
                &mut call.response_body,
                &mut call.response_size,
                &mut call.response_messages,
            ),
        };
        *size += data.len() as u64;
        match messages {
            Some(deframer) => deframer.push(offset, data),
            None => {
                let room = keep.saturating_sub(body.len()).min(data.len());
                body.extend_from_slice(&data[..room]);
            }
        }
    }

    fn trailers(&self, direction: Direction, trailers: &HeaderMap) {
        let mut call = self.call();
        let fields = fields(trailers);
        match direction {
            Direction::Request => {
                if let Some(request) = call.exchange.request.as_mut() {
                    request.trailers = fields;
                }
            }
            _ => {
                if let Some(response) = call.exchange.response.as_mut() {
                    response.trailers = fields;
                }
            }
        }
    }

    /// The response ended (`error`: how it broke off): the call is
    /// written. Only the first end counts.
    fn finish(&self, error: Option<String>) {
        let mut call = self.call();
        if call.sent {
            return;
        }
        call.sent = true;
        let end = elapsed_ns(call.start);
        let keep = self.out.max_body;
        let mut exchange = std::mem::take(&mut call.exchange);
        exchange.duration_ns = end;
        let mut messages = Vec::new();
        let request_messages = call.request_messages.take();
        let response_messages = call.response_messages.take();
        if let Some(request) = exchange.request.as_mut() {
            request.body_size = call.request_size;
            request.body_truncated = call.request_size > keep as u64;
            request.body = Bytes::from(std::mem::take(&mut call.request_body));
            if let Some(deframer) = request_messages {
                let (found, truncated) = deframer.finish(end);
                request.body_truncated |= truncated;
                messages.extend(found);
            }
        }
        if let Some(response) = exchange.response.as_mut() {
            response.body_size = call.response_size;
            response.body_truncated = call.response_size > keep as u64;
            response.body = Bytes::from(std::mem::take(&mut call.response_body));
            if let Some(deframer) = response_messages {
                let (found, truncated) = deframer.finish(end);
                response.body_truncated |= truncated;
                messages.extend(found);
            }
            response.grpc = grpc_status(response);
        }
        messages.sort_by_key(|m| m.offset_ns);
        exchange.messages = messages;
        if let Some(message) = error {
            exchange.error = Some(TransportError {
                kind: ErrorKind::Cancelled as i32,
                message,
                after_response_head: true,
            });
        }
        self.out.redactor.apply(&mut exchange);
        drop(call);
        // A closed tape takes nothing more: the call came too late.
        let _ = self.out.sender.send(Message::Call(Box::new(exchange)));
    }
}

/// The gRPC status of a response: from its trailers, or its head when it
/// is trailers-only.
fn grpc_status(response: &reprise_model::Response) -> Option<GrpcStatus> {
    let find = |name: &str| {
        response
            .trailers
            .iter()
            .chain(&response.headers)
            .find(|h| h.name == name)
            .map(|h| h.value.clone())
    };
    let code = find("grpc-status")?;
    let code = std::str::from_utf8(&code).ok()?.trim().parse().ok()?;
    let message = find("grpc-message")
        .map(|m| reprise_model::grpc::percent_decode(&m))
        .unwrap_or_default();
    Some(GrpcStatus {
        code,
        message,
        ..Default::default()
    })
}

/// Header fields as an exchange keeps them.
pub(crate) fn fields(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .map(|(name, value)| Header::new(name.as_str(), value.as_bytes()))
        .collect()
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The protocol a call to the mock used.
pub(crate) fn protocol_of(version: http::Version, grpc: bool) -> Protocol {
    match version {
        _ if grpc => Protocol::Grpc,
        http::Version::HTTP_2 => Protocol::Http2,
        http::Version::HTTP_10 => Protocol::Http10,
        _ => Protocol::Http11,
    }
}

/// The link of the `order`th call (0-based) of a scope, or of a call
/// made in none.
pub(crate) fn link(scoped: bool, order: u32) -> Link {
    let kind = if scoped {
        reprise_model::LinkKind::Trace
    } else {
        reprise_model::LinkKind::Unlinked
    };
    Link {
        kind: kind as i32,
        order,
    }
}

/// A body passed on as it is, whose frames the mock server keeps for
/// `--out` (when it writes one). On the response side, its end (or its
/// drop before the end) finishes the call.
pub struct Tapped<B: Body> {
    inner: Pin<Box<B>>,
    tap: Option<(Arc<Capture>, Direction)>,
}

impl<B: Body> Tapped<B> {
    /// `inner`, kept by nothing.
    pub fn plain(inner: B) -> Tapped<B> {
        Tapped {
            inner: Box::pin(inner),
            tap: None,
        }
    }

    pub(crate) fn kept(inner: B, capture: Arc<Capture>, direction: Direction) -> Tapped<B> {
        Tapped {
            inner: Box::pin(inner),
            tap: Some((capture, direction)),
        }
    }

    fn end(&mut self, error: Option<String>) {
        if let Some((capture, Direction::Response)) = self.tap.take() {
            capture.finish(error);
        }
    }
}

impl<B: Body> std::fmt::Debug for Tapped<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tapped")
            .field("tapped", &self.tap.is_some())
            .finish()
    }
}

impl<B: Body> Drop for Tapped<B> {
    fn drop(&mut self) {
        // A body with nothing to send may never be polled.
        let error = (!self.inner.is_end_stream())
            .then(|| "the caller went away before the answer ended".to_string());
        self.end(error);
    }
}

impl<B> Body for Tapped<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some((capture, direction)) = &this.tap {
                    if let Some(data) = frame.data_ref() {
                        capture.data(*direction, data);
                    } else if let Some(trailers) = frame.trailers_ref() {
                        capture.trailers(*direction, trailers);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => this.end(Some("the body broke off".into())),
            Poll::Ready(None) => this.end(None),
            Poll::Pending => {}
        }
        polled.map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
