//! One exchange being recorded while it is forwarded: its request and
//! response heads, the copies of both bodies (up to the size cap) and, for
//! gRPC, each message with its direction and time offset. When both bodies
//! have ended (or been dropped) the exchange is handed to the recorder.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use reprise_model::{
    Direction, ErrorKind, Exchange, Flags, GrpcStatus, Header, StreamMessage, TransportError,
};

use crate::recorder::Recorder;

/// Most gRPC messages kept per side of one exchange.
const MAX_MESSAGES: usize = 10_000;

/// Which body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// From the client to the upstream.
    Request,
    /// From the upstream to the client.
    Response,
}

/// Copies of one body.
#[derive(Default)]
struct BodyCopy {
    bytes: Vec<u8>,
    size: u64,
    truncated: bool,
    trailers: Vec<Header>,
    /// gRPC: the message being reassembled.
    framer: Framer,
    messages: Vec<StreamMessage>,
    kept: usize,
}

/// Reassembles gRPC messages (1-byte flag, 4-byte length, payload) from a
/// body's data frames, however the frames cut them.
#[derive(Default)]
struct Framer {
    prefix: Vec<u8>,
    in_message: bool,
    compressed: bool,
    len: usize,
    remaining: usize,
    current: Vec<u8>,
}

impl BodyCopy {
    /// A gRPC body that ended inside a message (a length prefix promising
    /// more than came): what arrived is kept as one truncated message.
    fn end_of_body(&mut self, direction: Direction, offset_ns: u64) {
        let framer = std::mem::take(&mut self.framer);
        if !framer.in_message && framer.prefix.is_empty() {
            return;
        }
        self.truncated = true;
        if self.messages.len() < MAX_MESSAGES {
            let data = if framer.in_message {
                framer.current
            } else {
                framer.prefix
            };
            self.messages.push(StreamMessage {
                direction: direction as i32,
                offset_ns,
                data: data.into(),
                compressed: framer.compressed,
                size: framer.len as u64,
                truncated: true,
            });
        }
    }
}

struct Partial {
    exchange: Exchange,
    request: BodyCopy,
    response: BodyCopy,
    cancelled: bool,
}

/// An exchange in flight.
pub struct Recording {
    recorder: Recorder,
    started: Instant,
    max_body: usize,
    grpc: bool,
    partial: Mutex<Partial>,
    /// Bodies still open (request, response); the exchange is complete at 0.
    open: AtomicU8,
}

fn headers(map: &http::HeaderMap) -> Vec<Header> {
    map.iter()
        .map(|(name, value)| Header::new(name.as_str(), value.as_bytes()))
        .collect()
}

impl Recording {
    /// Starts recording `exchange` (its request head filled in).
    pub fn new(
        recorder: Recorder,
        exchange: Exchange,
        max_body: usize,
        grpc: bool,
    ) -> Arc<Recording> {
        Arc::new(Recording {
            recorder,
            started: Instant::now(),
            max_body,
            grpc,
            partial: Mutex::new(Partial {
                exchange,
                request: BodyCopy::default(),
                response: BodyCopy::default(),
                cancelled: false,
            }),
            open: AtomicU8::new(2),
        })
    }

    fn partial(&self) -> std::sync::MutexGuard<'_, Partial> {
        self.partial.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn offset_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The response head arrived.
    pub fn response_head(&self, status: http::StatusCode, map: &http::HeaderMap) {
        let mut partial = self.partial();
        let response = partial
            .exchange
            .response
            .get_or_insert_with(Default::default);
        response.status = u32::from(status.as_u16());
        response.reason = status.canonical_reason().unwrap_or("").to_string();
        response.headers = headers(map);
        // A trailers-only gRPC response carries its status in the head.
        if let Some(code) = map
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            let message = grpc_message(map);
            response.grpc = Some(GrpcStatus {
                code,
                message,
                ..Default::default()
            });
        }
    }

    /// The connection was switched to another protocol (passed through).
    pub fn upgraded(&self) {
        self.partial()
            .exchange
            .flags
            .get_or_insert_with(Flags::default)
            .upgraded = true;
    }

    /// The call failed below HTTP.
    pub fn failed(&self, kind: ErrorKind, message: String) {
        let mut partial = self.partial();
        let after_head = partial.exchange.response.is_some();
        partial.exchange.error = Some(TransportError {
            kind: kind as i32,
            message,
            after_response_head: after_head,
        });
    }

    /// Bytes of a body passed through.
    pub fn data(&self, side: Side, data: &Bytes) {
        let offset = self.offset_ns();
        let max = self.max_body;
        let grpc = self.grpc;
        let mut partial = self.partial();
        let copy = match side {
            Side::Request => &mut partial.request,
            Side::Response => &mut partial.response,
        };
        copy.size += data.len() as u64;
        if grpc {
            split_messages(copy, data, side, offset, max);
            return;
        }
        let room = max.saturating_sub(copy.bytes.len());
        copy.bytes.extend_from_slice(&data[..room.min(data.len())]);
        if data.len() > room {
            copy.truncated = true;
        }
    }

    /// Trailers of a body.
    pub fn trailers(&self, side: Side, map: &http::HeaderMap) {
        let mut partial = self.partial();
        if side == Side::Response
            && let Some(code) = map
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        {
            let message = grpc_message(map);
            let response = partial
                .exchange
                .response
                .get_or_insert_with(Default::default);
            response.grpc = Some(GrpcStatus {
                code,
                message,
                ..Default::default()
            });
        }
        let copy = match side {
            Side::Request => &mut partial.request,
            Side::Response => &mut partial.response,
        };
        copy.trailers = headers(map);
    }

    /// A body ended: `cancelled` when it was dropped before its end.
    pub fn body_done(&self, side: Side, cancelled: bool, error: Option<String>) {
        {
            let mut partial = self.partial();
            partial.cancelled |= cancelled;
            if let Some(message) = error {
                self.recorder.metrics().error(ErrorKind::Reset);
                let after_head = partial.exchange.response.is_some() || side == Side::Response;
                if partial.exchange.error.is_none() {
                    partial.exchange.error = Some(TransportError {
                        kind: ErrorKind::Reset as i32,
                        message: format!(
                            "{} body: {message}",
                            if side == Side::Request {
                                "request"
                            } else {
                                "response"
                            }
                        ),
                        after_response_head: after_head,
                    });
                }
            }
        }
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    /// Both bodies are done: assemble the exchange and hand it over.
    fn finish(&self) {
        let duration = self.offset_ns();
        let mut partial = self.partial();
        let cancelled = partial.cancelled;
        let mut exchange = std::mem::take(&mut partial.exchange);
        let mut request = std::mem::take(&mut partial.request);
        let mut response = std::mem::take(&mut partial.response);
        drop(partial);
        exchange.duration_ns = duration;
        request.end_of_body(Direction::Request, duration);
        response.end_of_body(Direction::Response, duration);
        exchange.messages = request
            .messages
            .iter()
            .chain(&response.messages)
            .cloned()
            .collect();
        exchange.messages.sort_by_key(|m| m.offset_ns);
        if let Some(r) = exchange.request.as_mut() {
            r.body_size = request.size;
            r.body_truncated = request.truncated;
            r.body = request.bytes.into();
            r.trailers = request.trailers;
        }
        if let Some(r) = exchange.response.as_mut() {
            r.body_size = response.size;
            r.body_truncated = response.truncated;
            r.body = response.bytes.into();
            r.trailers = response.trailers;
        }
        // A body dropped unfinished because the upstream failed is told by
        // the error; `cancelled` is for calls abandoned by their client.
        if cancelled && exchange.error.is_none() {
            exchange.flags.get_or_insert_with(Flags::default).cancelled = true;
        }
        self.recorder.submit(exchange);
    }
}

/// `grpc-message`, percent-decoded as gRPC encodes it.
fn grpc_message(map: &http::HeaderMap) -> String {
    let Some(raw) = map.get("grpc-message") else {
        return String::new();
    };
    let raw = raw.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits make one byte: hi * 16 + lo < 256.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Feeds body bytes to the gRPC framer, recording each message completed.
fn split_messages(copy: &mut BodyCopy, mut data: &[u8], side: Side, offset_ns: u64, max: usize) {
    let direction = if side == Side::Request {
        Direction::Request
    } else {
        Direction::Response
    };
    while !data.is_empty() {
        let framer = &mut copy.framer;
        if !framer.in_message {
            let take = (5 - framer.prefix.len()).min(data.len());
            framer.prefix.extend_from_slice(&data[..take]);
            data = &data[take..];
            if framer.prefix.len() < 5 {
                continue;
            }
            let p = &framer.prefix;
            framer.compressed = p[0] == 1;
            framer.len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
            framer.remaining = framer.len;
            framer.prefix.clear();
            framer.current.clear();
            framer.in_message = true;
        } else {
            let take = framer.remaining.min(data.len());
            let room = max.saturating_sub(copy.kept + framer.current.len());
            framer.current.extend_from_slice(&data[..take.min(room)]);
            framer.remaining -= take;
            data = &data[take..];
        }
        if framer.in_message && framer.remaining == 0 {
            framer.in_message = false;
            let payload = std::mem::take(&mut framer.current);
            let truncated = payload.len() < framer.len;
            let (size, compressed) = (framer.len as u64, framer.compressed);
            copy.kept += payload.len();
            copy.truncated |= truncated;
            if copy.messages.len() < MAX_MESSAGES {
                copy.messages.push(StreamMessage {
                    direction: direction as i32,
                    offset_ns,
                    data: payload.into(),
                    compressed,
                    size,
                    truncated,
                });
            } else {
                copy.truncated = true;
            }
        }
    }
}
