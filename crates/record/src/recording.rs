//! One exchange being recorded while it is served or forwarded.
//!
//! What the call's path keeps is copied into one [`Captured`] record per
//! exchange: the heads encoded into a byte buffer as they pass, each
//! body's bytes (up to the size cap) with the time offset of each frame.
//! The record is taken from a pool and, once the writer thread has built
//! the [`Exchange`] from it, cleared and given back: in a steady state the
//! call's path allocates nothing for the recording, and nothing it
//! allocated is freed by another thread. (Holding hyper's own buffers
//! instead, and letting the writer thread drop them, made the two threads
//! fight over the allocator's locks: with glibc's malloc, a fifth of a
//! serving thread's time.) When both bodies have ended (or been dropped)
//! the record goes to the recorder; turning it into an [`Exchange`]
//! (header conversion, body assembly, gRPC message framing) happens on the
//! recorder's thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use reprise_model::grpc::{Deframer, percent_decode};
use reprise_model::{
    Direction, ErrorKind, Exchange, Flags, GrpcStatus, Header, HeaderList, Protocol, RecordSource,
    Role, StreamMessage, TransportError,
};

use crate::recorder::Recorder;

/// Which body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// From the client to the upstream.
    Request,
    /// From the upstream to the client.
    Response,
}

/// What every exchange of one recorder shares: where it was recorded.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `source.service`.
    pub service: String,
    /// `source.instance` (host name, pod); may be empty.
    pub instance: String,
    /// `source.recorder`: `proxy`, `tower`.
    pub recorder: &'static str,
    /// Inbound calls (reaching the service) or downstream calls (leaving it).
    pub role: Role,
    /// `source.listener`: the listener or client the calls pass through.
    pub listener: String,
    /// `http` or `https`: for inbound calls, how clients reached the
    /// service; for downstream calls, the scheme when the request's target
    /// has none.
    pub scheme: &'static str,
    /// The authority recorded when neither the target nor a Host field
    /// names one (a tonic client's requests carry only a path).
    pub authority: String,
    /// `source.server_addr` (the proxy's upstream); empty: the authority.
    pub server_addr: String,
    /// Bytes of each body kept.
    pub max_body: usize,
}

/// One exchange's own identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity {
    /// The exchange id.
    pub id: [u8; 16],
    /// For a downstream call, the inbound exchange being served.
    pub parent_id: Option<[u8; 16]>,
    /// The W3C trace id, when one was seen or assigned.
    pub trace_id: Option<[u8; 16]>,
    /// The client's address, when known.
    pub peer: Option<SocketAddr>,
}

/// A body's bytes as they passed, up to the cap, with when each frame
/// passed. Small frames are copied into the record's own buffer (no
/// allocation, nothing for another thread to free); a large one is kept by
/// its `Bytes` handle, as copying it would cost more than the allocator
/// does and would hold a second copy of a big body in memory.
#[derive(Debug, Default)]
pub struct BodyCapture {
    /// The small frames' bytes.
    data: Vec<u8>,
    /// Each frame kept, with its time offset.
    frames: Vec<(u64, Piece)>,
    /// Bytes kept in all.
    kept: usize,
    /// Every byte that passed.
    size: u64,
    truncated: bool,
    /// The trailers, encoded like a head's fields.
    trailers: Vec<u8>,
    has_trailers: bool,
    /// The body broke (the error's text).
    error: Option<String>,
    /// The body was dropped before its end.
    cancelled: bool,
}

/// Buffers larger than this are not kept for the next exchange.
const KEEP_CAPACITY: usize = 8 << 10;

/// Frames of this size or more are kept by handle, not copied.
const SHARE_AT: usize = 4 << 10;

/// Where a kept frame's bytes are.
#[derive(Debug, Clone)]
enum Piece {
    /// In `data`, up to this end.
    Copied(usize),
    /// Its own handle.
    Shared(Bytes),
}

fn clear_bounded<T>(v: &mut Vec<T>) {
    if v.capacity() * std::mem::size_of::<T>() > KEEP_CAPACITY {
        *v = Vec::new();
    } else {
        v.clear();
    }
}

impl BodyCapture {
    /// A data frame passed at `offset_ns`; keeps at most `max - kept` of
    /// its bytes.
    pub fn data(&mut self, offset_ns: u64, data: &Bytes, max: usize) {
        self.size += data.len() as u64;
        let room = max.saturating_sub(self.kept);
        if data.len() > room {
            self.truncated = true;
        }
        let take = room.min(data.len());
        if take == 0 {
            return;
        }
        self.kept += take;
        let piece = if take >= SHARE_AT {
            Piece::Shared(data.slice(..take))
        } else {
            self.data.extend_from_slice(&data[..take]);
            Piece::Copied(self.data.len())
        };
        self.frames.push((offset_ns, piece));
    }

    /// The body's trailers.
    pub fn trailers(&mut self, map: &HeaderMap) {
        self.trailers.clear();
        put_fields(&mut self.trailers, map);
        self.has_trailers = true;
    }

    /// Marks the body as broken.
    pub fn broke(&mut self, error: String) {
        self.error = Some(error);
    }

    /// Marks the body as dropped before its end.
    pub fn cancelled(&mut self) {
        self.cancelled = true;
    }

    fn recycle(&mut self) {
        clear_bounded(&mut self.data);
        clear_bounded(&mut self.frames);
        self.kept = 0;
        clear_bounded(&mut self.trailers);
        self.size = 0;
        self.truncated = false;
        self.has_trailers = false;
        self.error = None;
        self.cancelled = false;
    }

    fn model_trailers(&self) -> Vec<Header> {
        if self.has_trailers {
            fields(&self.trailers, &mut 0)
        } else {
            Vec::new()
        }
    }

    /// The frames kept, with their time offsets.
    fn frames(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut start = 0;
        self.frames.iter().map(move |(offset, piece)| {
            let frame = match piece {
                Piece::Copied(end) => {
                    let frame = self.data.get(start..*end).unwrap_or_default();
                    start = *end;
                    frame
                }
                Piece::Shared(bytes) => &bytes[..],
            };
            (*offset, frame)
        })
    }

    /// The body kept, in one piece (a lone large frame is not copied).
    fn bytes(&self) -> Bytes {
        match self.frames.as_slice() {
            [] => Bytes::new(),
            [(_, Piece::Shared(only))] => only.clone(),
            _ if self
                .frames
                .iter()
                .all(|(_, p)| matches!(p, Piece::Copied(_))) =>
            {
                Bytes::copy_from_slice(&self.data)
            }
            _ => {
                let mut joined = Vec::with_capacity(self.kept);
                for (_, frame) in self.frames() {
                    joined.extend_from_slice(frame);
                }
                Bytes::from(joined)
            }
        }
    }
}

/// The request head as the client sent it, before any proxy rewriting.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The request target.
    pub uri: &'a Uri,
    /// The protocol version.
    pub version: Version,
    /// The fields.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    pub fn of<B>(request: &'a http::Request<B>) -> Self {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
        }
    }
}

/// Everything one exchange left, copied; pooled from exchange to exchange.
#[derive(Debug, Default)]
pub struct Captured {
    origin: Option<Arc<Origin>>,
    identity: Identity,
    recorded_at_ns: u64,
    duration_ns: u64,
    grpc: bool,
    version: Option<Version>,
    /// The request head encoded (method, target, fields), then the
    /// response's fields from `response.1` on.
    heads: Vec<u8>,
    response: Option<(StatusCode, usize)>,
    request_body: BodyCapture,
    response_body: BodyCapture,
    error: Option<TransportError>,
    upgraded: bool,
}

impl Captured {
    /// Cleared for the next exchange, keeping its buffers.
    pub(crate) fn recycle(&mut self) {
        self.origin = None;
        self.identity = Identity::default();
        self.recorded_at_ns = 0;
        self.duration_ns = 0;
        self.grpc = false;
        self.version = None;
        clear_bounded(&mut self.heads);
        self.response = None;
        self.request_body.recycle();
        self.response_body.recycle();
        self.error = None;
        self.upgraded = false;
    }

    fn body_mut(&mut self, side: Side) -> &mut BodyCapture {
        match side {
            Side::Request => &mut self.request_body,
            Side::Response => &mut self.response_body,
        }
    }
}

fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    // A field is far below 4 GiB: hyper and h2 cap heads well before.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&bytes[..len as usize]);
}

fn put_fields(buf: &mut Vec<u8>, map: &HeaderMap) {
    let count = u32::try_from(map.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&count.to_le_bytes());
    for (name, value) in map.iter().take(count as usize) {
        put(buf, name.as_str().as_bytes());
        put(buf, value.as_bytes());
    }
}

/// The next length-prefixed piece at `*at` (empty past the end: the
/// buffer is this module's own encoding, so that is never reached).
fn get<'a>(buf: &'a [u8], at: &mut usize) -> &'a [u8] {
    let Some(len) = buf
        .get(*at..*at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_le_bytes(b) as usize)
    else {
        return &[];
    };
    let start = *at + 4;
    let piece = buf.get(start..start + len).unwrap_or_default();
    *at = start + piece.len();
    piece
}

fn fields(buf: &[u8], at: &mut usize) -> Vec<Header> {
    let count = get_u32(buf, at) as usize;
    let mut out = Vec::with_capacity(count.min(256));
    for _ in 0..count {
        let name = text(get(buf, at));
        let value = get(buf, at);
        out.push(Header::new(name, value));
    }
    out
}

fn get_u32(buf: &[u8], at: &mut usize) -> u32 {
    let value = buf
        .get(*at..*at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes);
    *at += 4;
    value
}

/// `ip:port` as `SocketAddr`'s `Display` writes it, for IPv4 without the
/// formatting machinery: this runs for every exchange recorded, and
/// `to_string` cost more than a tenth of turning one into a record.
fn addr_text(addr: std::net::SocketAddr) -> String {
    let std::net::SocketAddr::V4(v4) = addr else {
        return addr.to_string();
    };
    let mut out = String::with_capacity(21);
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(&mut out, u32::from(octet));
    }
    out.push(':');
    push_decimal(&mut out, u32::from(v4.port()));
    out
}

fn push_decimal(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

fn text(bytes: &[u8]) -> String {
    // Valid UTF-8 (names and methods always are) takes the quick check.
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// An exchange in flight.
pub struct Recording {
    recorder: Recorder,
    started: Instant,
    max_body: usize,
    partial: Mutex<Option<Box<Captured>>>,
    /// Bodies still open (request, response); the exchange is complete at 0.
    open: AtomicU8,
}

impl Recording {
    /// Starts recording the call `identity`, whose request head is
    /// `request` (copied now).
    pub fn new(
        recorder: Recorder,
        origin: Arc<Origin>,
        identity: Identity,
        request: RequestHead<'_>,
    ) -> Arc<Recording> {
        let mut captured = recorder.pool().take();
        captured.grpc = is_grpc(request.headers);
        captured.identity = identity;
        // Both clocks read together: the end of an exchange is its start
        // on the wall clock plus its duration on the monotonic one, so a
        // gap between the two reads (copying the head, a preemption) would
        // move every end it computes. A child call could then seem to end
        // after its parent.
        let started = Instant::now();
        captured.recorded_at_ns = reprise_model::time::now_ns();
        captured.version = Some(request.version);
        let heads = &mut captured.heads;
        put(heads, request.method.as_str().as_bytes());
        put(
            heads,
            request.uri.scheme_str().unwrap_or_default().as_bytes(),
        );
        put(
            heads,
            request
                .uri
                .authority()
                .map_or("", |a| a.as_str())
                .as_bytes(),
        );
        put(
            heads,
            request
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .as_bytes(),
        );
        put_fields(heads, request.headers);
        let max_body = origin.max_body;
        captured.origin = Some(origin);
        Arc::new(Recording {
            recorder,
            started,
            max_body,
            partial: Mutex::new(Some(captured)),
            open: AtomicU8::new(2),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Captured) -> R) -> Option<R> {
        let mut partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
        partial.as_deref_mut().map(f)
    }

    /// Nanoseconds since the request arrived.
    pub fn offset_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The size cap of each body's copy.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// The response head arrived (copied now).
    pub fn response_head(&self, status: StatusCode, headers: &HeaderMap) {
        self.with(|c| {
            let start = c.heads.len();
            put_fields(&mut c.heads, headers);
            c.response = Some((status, start));
        });
    }

    /// The connection was switched to another protocol (passed through).
    pub fn upgraded(&self) {
        self.with(|c| c.upgraded = true);
    }

    /// The call failed below HTTP.
    pub fn failed(&self, kind: ErrorKind, message: String) {
        self.with(|c| {
            c.error = Some(TransportError {
                kind: kind as i32,
                message,
                after_response_head: c.response.is_some(),
            });
        });
    }

    /// The capture `side`'s tap fills (its buffers, from the pool).
    pub fn lend_body(&self, side: Side) -> BodyCapture {
        self.with(|c| std::mem::take(c.body_mut(side)))
            .unwrap_or_default()
    }

    /// A body is done (ended, failed or dropped), with what passed.
    pub fn body_done(&self, side: Side, body: BodyCapture) {
        self.with(|c| *c.body_mut(side) = body);
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    /// Both bodies are done: hand everything to the recorder.
    fn finish(&self) {
        let duration_ns = self.offset_ns();
        // Taken once: `open` reaches 0 once.
        let taken = self
            .partial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut captured) = taken {
            captured.duration_ns = duration_ns;
            self.recorder.submit(captured);
        }
    }
}

/// A gRPC call, by its content type.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn protocol(version: Option<Version>, grpc: bool) -> Protocol {
    match version {
        Some(Version::HTTP_2) if grpc => Protocol::Grpc,
        Some(Version::HTTP_2) => Protocol::Http2,
        Some(Version::HTTP_10) => Protocol::Http10,
        _ => Protocol::Http11,
    }
}

/// The gRPC status a block of fields carries.
fn grpc_status(fields: &[Header]) -> Option<GrpcStatus> {
    let code = fields.header_str("grpc-status")?.trim().parse().ok()?;
    let message = fields
        .header("grpc-message")
        .map_or_else(String::new, percent_decode);
    Some(GrpcStatus {
        code,
        message,
        ..Default::default()
    })
}

/// Cuts a gRPC body's kept frames into messages (see [`Deframer`]).
fn grpc_messages(
    body: &BodyCapture,
    direction: Direction,
    end_ns: u64,
) -> (Vec<StreamMessage>, bool) {
    // The frames are already cut at the size cap: keep all they hold.
    let mut deframer = Deframer::new(direction, usize::MAX);
    for (offset_ns, frame) in body.frames() {
        deframer.push(offset_ns, frame);
    }
    deframer.finish(end_ns)
}

impl Captured {
    /// The exchange, built on the recorder's thread; the record is left
    /// as it was, to be recycled.
    pub fn to_exchange(&self) -> Exchange {
        let fallback;
        let origin: &Origin = match &self.origin {
            Some(origin) => origin,
            None => {
                fallback = Origin {
                    service: String::new(),
                    instance: String::new(),
                    recorder: "",
                    role: Role::Inbound,
                    listener: String::new(),
                    scheme: "http",
                    authority: String::new(),
                    server_addr: String::new(),
                    max_body: 0,
                };
                &fallback
            }
        };
        let heads = &self.heads[..];
        let mut at = 0;
        let method = text(get(heads, &mut at));
        let target_scheme = get(heads, &mut at);
        let target_authority = get(heads, &mut at);
        let path = text(get(heads, &mut at));
        let request_headers = fields(heads, &mut at);
        let authority = if !target_authority.is_empty() {
            text(target_authority)
        } else if let Some(host) = request_headers.header_str("host") {
            host.to_string()
        } else {
            origin.authority.clone()
        };
        let scheme = match (origin.role, target_scheme) {
            (Role::Downstream, scheme) if !scheme.is_empty() => text(scheme),
            _ => origin.scheme.to_string(),
        };
        let server_addr = if origin.server_addr.is_empty() {
            authority.clone()
        } else {
            origin.server_addr.clone()
        };
        let Identity {
            id,
            parent_id,
            trace_id,
            peer,
        } = self.identity;
        let mut exchange = Exchange {
            id: id.to_vec(),
            parent_id: parent_id.map(|p| p.to_vec()).unwrap_or_default(),
            trace_id: trace_id.map(|t| t.to_vec()).unwrap_or_default(),
            recorded_at_ns: self.recorded_at_ns,
            duration_ns: self.duration_ns,
            protocol: protocol(self.version, self.grpc) as i32,
            role: origin.role as i32,
            source: Some(RecordSource {
                service: origin.service.clone(),
                instance: origin.instance.clone(),
                recorder: origin.recorder.into(),
                listener: origin.listener.clone(),
                client_addr: peer.map(addr_text).unwrap_or_default(),
                server_addr,
                ..Default::default()
            }),
            error: self.error.clone(),
            ..Default::default()
        };
        let (request_body, response_body) = (&self.request_body, &self.response_body);
        let mut model_request = reprise_model::Request {
            method,
            scheme,
            authority,
            path,
            headers: request_headers,
            body_size: request_body.size,
            body_truncated: request_body.truncated,
            trailers: request_body.model_trailers(),
            ..Default::default()
        };
        let mut model_response = self.response.map(|(status, start)| {
            let headers = fields(heads, &mut { start });
            let trailers = response_body.model_trailers();
            // A trailers-only gRPC response carries its status in the head.
            let grpc = grpc_status(&trailers).or_else(|| grpc_status(&headers));
            reprise_model::Response {
                status: u32::from(status.as_u16()),
                reason: status.canonical_reason().unwrap_or("").to_string(),
                grpc,
                headers,
                body_size: response_body.size,
                body_truncated: response_body.truncated,
                trailers,
                ..Default::default()
            }
        });
        if self.grpc {
            let end = self.duration_ns;
            let (mut messages, cut) = grpc_messages(request_body, Direction::Request, end);
            model_request.body_truncated |= cut;
            let (responses, cut) = grpc_messages(response_body, Direction::Response, end);
            if let Some(response) = model_response.as_mut() {
                response.body_truncated |= cut;
            }
            messages.extend(responses);
            messages.sort_by_key(|m| m.offset_ns);
            exchange.messages = messages;
        } else {
            model_request.body = request_body.bytes();
            if let Some(response) = model_response.as_mut() {
                response.body = response_body.bytes();
            }
        }
        exchange.request = Some(model_request);
        exchange.response = model_response;
        // A broken body: the first break is the exchange's error, unless
        // the call had already failed.
        for (side, body) in [("request", request_body), ("response", response_body)] {
            if let (None, Some(message)) = (&exchange.error, &body.error) {
                exchange.error = Some(TransportError {
                    kind: ErrorKind::Reset as i32,
                    message: format!("{side} body: {message}"),
                    after_response_head: exchange.response.is_some(),
                });
            }
        }
        // A body dropped unfinished because the call failed is told by the
        // error; `cancelled` is for calls abandoned by their client.
        let cancelled = request_body.cancelled || response_body.cancelled;
        if (cancelled && exchange.error.is_none()) || self.upgraded {
            let flags = exchange.flags.get_or_insert_with(Flags::default);
            flags.cancelled = cancelled && exchange.error.is_none();
            flags.upgraded = self.upgraded;
        }
        exchange
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frames: &[&[u8]], max: usize) -> BodyCapture {
        let mut body = BodyCapture::default();
        for (i, frame) in frames.iter().enumerate() {
            body.data(i as u64 * 10, &Bytes::copy_from_slice(frame), max);
        }
        body
    }

    #[test]
    fn addresses_read_as_display_writes_them() {
        for addr in [
            "127.0.0.1:8080",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.40:443",
            "[::1]:9000",
            "[fe80::1%2]:1",
        ] {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            assert_eq!(addr_text(addr), addr.to_string());
        }
    }

    #[test]
    fn grpc_messages_across_frames() {
        // Two messages, cut across three frames at awkward places.
        let b = body(
            &[&[0, 0, 0], &[0, 2, b'h', b'i', 1, 0], &[0, 0, 1, b'!']],
            1 << 20,
        );
        let (messages, truncated) = grpc_messages(&b, Direction::Response, 99);
        assert!(!truncated);
        let got: Vec<(u64, &[u8], bool)> = messages
            .iter()
            .map(|m| (m.offset_ns, &m.data[..], m.compressed))
            .collect();
        assert_eq!(got, [(10, &b"hi"[..], false), (20, &b"!"[..], true)]);
    }

    #[test]
    fn grpc_message_past_the_end_is_kept_truncated() {
        let b = body(&[&[0, 0, 0, 3, 232, b'a', b'b', b'c']], 1 << 20);
        let (messages, truncated) = grpc_messages(&b, Direction::Request, 99);
        assert!(truncated);
        assert_eq!(
            (
                &messages[0].data[..],
                messages[0].size,
                messages[0].truncated,
                messages[0].offset_ns
            ),
            (&b"abc"[..], 1000, true, 99)
        );
    }

    #[test]
    fn bodies_are_kept_up_to_the_cap() {
        let b = body(&[b"hello ", b"world"], 8);
        assert_eq!(
            (&b.bytes()[..], b.size, b.truncated),
            (&b"hello wo"[..], 11, true)
        );
        let frames: Vec<(u64, &[u8])> = b.frames().collect();
        assert_eq!(frames, [(0, &b"hello "[..]), (10, &b"wo"[..])]);
        // Large frames are kept by handle, in order with copied ones.
        let big = vec![7u8; SHARE_AT];
        let mixed = body(&[b"ab", &big, b"cd", &big], 2 * SHARE_AT + 2);
        let frames: Vec<usize> = mixed.frames().map(|(_, f)| f.len()).collect();
        assert_eq!(frames, [2, SHARE_AT, 2, SHARE_AT - 2]);
        let bytes = mixed.bytes();
        assert_eq!(
            (bytes.len(), &bytes[..3], mixed.truncated),
            (2 * SHARE_AT + 2, &[b'a', b'b', 7][..], true)
        );
        assert_eq!(&bytes[SHARE_AT + 2..SHARE_AT + 4], b"cd");
    }

    #[test]
    fn heads_round_trip_through_their_encoding() {
        let mut map = HeaderMap::new();
        map.append(
            "x-a",
            "1".parse().unwrap_or(http::HeaderValue::from_static("?")),
        );
        map.append("x-a", http::HeaderValue::from_static("2"));
        map.append(
            "x-bin",
            http::HeaderValue::from_bytes(b"\xff\xfe")
                .unwrap_or(http::HeaderValue::from_static("?")),
        );
        let mut buf = Vec::new();
        put_fields(&mut buf, &map);
        put(&mut buf, b"tail");
        let mut at = 0;
        let got = fields(&buf, &mut at);
        assert_eq!(
            got,
            [
                Header::new("x-a", "1"),
                Header::new("x-a", "2"),
                Header::new("x-bin", b"\xff\xfe")
            ]
        );
        assert_eq!(get(&buf, &mut at), b"tail");
        // Past the end: empty, never a panic.
        assert_eq!(get(&buf, &mut at), b"");
        assert!(fields(&buf, &mut at).is_empty());
    }
}
