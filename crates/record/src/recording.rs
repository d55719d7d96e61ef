//! One exchange being recorded while it is served or forwarded.
//!
//! What the call's path keeps is copied into one [`Captured`] record per
//! exchange: the heads encoded into a byte buffer as they pass, each
//! body's bytes (up to the size cap) with the time offset of each frame.
//! The record is taken from a pool and, once the writer thread has stored
//! it, cleared and given back: in a steady state the
//! call's path allocates nothing for the recording, and nothing it
//! allocated is freed by another thread. (Holding hyper's own buffers
//! instead, and letting the writer thread drop them, made the two threads
//! fight over the allocator's locks: with glibc's malloc, a fifth of a
//! serving thread's time.) When both bodies have ended (or been dropped)
//! the record goes to the recorder; turning it into a stored record (body
//! assembly, gRPC message framing, redaction, encoding) happens on the
//! recorder's thread.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use reprise_model::grpc::{Deframer, percent_decode};
use reprise_model::redact::{BodyHead, MARKER, Redactor};
use reprise_model::select::{CallHead, RequestHead as FilteredHead};
use reprise_model::writer::MessageWriter;
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

    fn trailer_fields(&self) -> Option<Fields<'_>> {
        self.has_trailers.then(|| Fields::at(&self.trailers, 0))
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

    /// Bytes the record holds: its heads, the bodies' kept bytes and the
    /// trailers (about what its encoding takes).
    pub fn kept_bytes(&self) -> usize {
        let body = |b: &BodyCapture| b.kept + b.trailers.len();
        self.heads.len() + body(&self.request_body) + body(&self.response_body)
    }

    /// When the exchange started, in nanoseconds since the epoch.
    pub fn recorded_at_ns(&self) -> u64 {
        self.recorded_at_ns
    }

    /// The exchange's id, parent and trace.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// Inbound or downstream.
    pub fn role(&self) -> Role {
        self.origin.as_deref().unwrap_or(&NO_ORIGIN).role
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

/// A block of fields as [`put_fields`] encoded them, read in place.
#[derive(Debug, Clone, Copy)]
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The block starting at `start` of `buf`.
    fn at(buf: &'a [u8], start: usize) -> Fields<'a> {
        Fields {
            buf: buf.get(start..).unwrap_or_default(),
        }
    }

    /// Each field's name and value, in order.
    fn iter(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let mut at = 0;
        let count = get_u32(self.buf, &mut at);
        let buf = self.buf;
        // Bounded by the bytes too: the buffer is this module's own
        // encoding, so the count always holds, but nothing loops on it.
        (0..count)
            .map_while(move |_| (at < buf.len()).then(|| (get(buf, &mut at), get(buf, &mut at))))
    }

    /// Where the block ends in the buffer it was read from.
    #[cfg(test)]
    fn len(self) -> usize {
        let mut at = 4;
        for (name, value) in self.iter() {
            at += 8 + name.len() + value.len();
        }
        at.min(self.buf.len())
    }

    fn to_headers(self) -> Vec<Header> {
        let mut out = Vec::with_capacity(self.iter().size_hint().1.unwrap_or(0).min(256));
        out.extend(
            self.iter()
                .map(|(name, value)| Header::new(text(name), value)),
        );
        out
    }
}

impl<'a> Fields<'a> {
    /// The first value of `name` (compared case-insensitively).
    fn get(self, name: &str) -> Option<&'a [u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }
}

impl HeaderList for Fields<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name)
    }
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
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(digits.format(octet));
    }
    out.push(':');
    out.push_str(digits.format(v4.port()));
    out
}

fn text(bytes: &[u8]) -> Cow<'_, str> {
    // Valid UTF-8 (names and methods always are) is borrowed as it is;
    // `from_utf8` checks it faster than `from_utf8_lossy` does.
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
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
        let mut captured = recorder.take();
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
fn grpc_status(fields: &impl HeaderList) -> Option<GrpcStatus> {
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

/// What a record says, read once. Both ways of storing it start from
/// here: as an [`Exchange`] ([`Captured::to_exchange`]), or encoded
/// straight into a record's bytes ([`Captured::encode`]), so the two
/// cannot disagree on what an exchange holds.
struct Parts<'a> {
    origin: &'a Origin,
    method: Cow<'a, str>,
    scheme: Cow<'a, str>,
    authority: Cow<'a, str>,
    path: Cow<'a, str>,
    server_addr: Cow<'a, str>,
    request_fields: Fields<'a>,
    response: Option<(StatusCode, Fields<'a>)>,
    request_trailers: Option<Fields<'a>>,
    response_trailers: Option<Fields<'a>>,
    /// A gRPC call's status, from the response's trailers (a
    /// trailers-only response carries it in the head).
    grpc_status: Option<GrpcStatus>,
    /// For a gRPC call (when asked for), both bodies' messages in time
    /// order, and whether the last message of the request, then of the
    /// response, was cut.
    messages: Option<(Vec<StreamMessage>, bool, bool)>,
    error: Option<TransportError>,
    /// The call's own flags, when it has any: (cancelled, upgraded).
    flags: Option<(bool, bool)>,
}

/// The origin of a record that has none (never the case for one made by
/// [`Recording::new`]).
static NO_ORIGIN: Origin = Origin {
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

/// Where each body's redaction notes go, in the order
/// [`Redactor::apply`] lists them: request head, trailers and body, then
/// the response's.
const NOTE_PLACES: [&str; 8] = [
    "request.authority",
    "request.query",
    "request.header",
    "request.trailer",
    "request.body",
    "response.header",
    "response.trailer",
    "response.body",
];

impl Captured {
    /// The record's parts; a gRPC call's messages only `with_messages`
    /// (cutting them out of the bodies is the costly part).
    fn parts(&self, with_messages: bool) -> Parts<'_> {
        let origin = self.origin.as_deref().unwrap_or(&NO_ORIGIN);
        let heads = &self.heads[..];
        let mut at = 0;
        let method = text(get(heads, &mut at));
        let target_scheme = get(heads, &mut at);
        let target_authority = get(heads, &mut at);
        let path = text(get(heads, &mut at));
        let request_fields = Fields::at(heads, at);
        let authority = if !target_authority.is_empty() {
            text(target_authority)
        } else if let Some(host) = request_fields
            .get("host")
            .and_then(|host| std::str::from_utf8(host).ok())
        {
            Cow::Borrowed(host)
        } else {
            Cow::Borrowed(origin.authority.as_str())
        };
        let scheme = match (origin.role, target_scheme) {
            (Role::Downstream, scheme) if !scheme.is_empty() => text(scheme),
            _ => Cow::Borrowed(origin.scheme),
        };
        let server_addr = if origin.server_addr.is_empty() {
            authority.clone()
        } else {
            Cow::Borrowed(origin.server_addr.as_str())
        };
        let response = self
            .response
            .map(|(status, start)| (status, Fields::at(heads, start)));
        let (request_body, response_body) = (&self.request_body, &self.response_body);
        let response_trailers = response_body.trailer_fields();
        let grpc_status = response.filter(|_| self.grpc).and_then(|(_, headers)| {
            response_trailers
                .and_then(|trailers| grpc_status(&trailers))
                .or_else(|| grpc_status(&headers))
        });
        let messages = if with_messages { self.messages() } else { None };
        // A broken body: the first break is the exchange's error, unless
        // the call had already failed.
        let mut error = self.error.clone();
        for (side, body) in [("request", request_body), ("response", response_body)] {
            if let (None, Some(message)) = (&error, &body.error) {
                error = Some(TransportError {
                    kind: ErrorKind::Reset as i32,
                    message: format!("{side} body: {message}"),
                    after_response_head: response.is_some(),
                });
            }
        }
        // A body dropped unfinished because the call failed is told by the
        // error; `cancelled` is for calls abandoned by their client.
        let cancelled = (request_body.cancelled || response_body.cancelled) && error.is_none();
        Parts {
            origin,
            method,
            scheme,
            authority,
            path,
            server_addr,
            request_fields,
            response,
            request_trailers: request_body.trailer_fields(),
            response_trailers,
            grpc_status,
            messages,
            error,
            flags: (cancelled || self.upgraded).then_some((cancelled, self.upgraded)),
        }
    }

    /// The exchange this record describes, before redaction. The
    /// recorder stores [`Captured::encode`]'s bytes instead, which tests
    /// hold equal to this exchange's encoding; it is here for them and
    /// for callers that want the record as an [`Exchange`].
    pub fn to_exchange(&self) -> Exchange {
        let parts = self.parts(true);
        let origin = parts.origin;
        let Identity {
            id,
            parent_id,
            trace_id,
            peer,
        } = self.identity;
        let (request_body, response_body) = (&self.request_body, &self.response_body);
        let (request_cut, response_cut) = parts
            .messages
            .as_ref()
            .map_or((false, false), |(_, request, response)| {
                (*request, *response)
            });
        let mut request = reprise_model::Request {
            method: parts.method.into_owned(),
            scheme: parts.scheme.into_owned(),
            authority: parts.authority.into_owned(),
            path: parts.path.into_owned(),
            headers: parts.request_fields.to_headers(),
            body_size: request_body.size,
            body_truncated: request_body.truncated || request_cut,
            trailers: parts
                .request_trailers
                .map(Fields::to_headers)
                .unwrap_or_default(),
            ..Default::default()
        };
        let mut response = parts
            .response
            .map(|(status, headers)| reprise_model::Response {
                status: u32::from(status.as_u16()),
                reason: status.canonical_reason().unwrap_or("").to_string(),
                grpc: parts.grpc_status,
                headers: headers.to_headers(),
                body_size: response_body.size,
                body_truncated: response_body.truncated || response_cut,
                trailers: parts
                    .response_trailers
                    .map(Fields::to_headers)
                    .unwrap_or_default(),
                ..Default::default()
            });
        let messages = match parts.messages {
            Some((messages, _, _)) => messages,
            None => {
                request.body = request_body.bytes();
                if let Some(response) = response.as_mut() {
                    response.body = response_body.bytes();
                }
                Vec::new()
            }
        };
        Exchange {
            id: id.to_vec(),
            parent_id: parent_id.map(|p| p.to_vec()).unwrap_or_default(),
            trace_id: trace_id.map(|t| t.to_vec()).unwrap_or_default(),
            recorded_at_ns: self.recorded_at_ns,
            duration_ns: self.duration_ns,
            source: Some(RecordSource {
                service: origin.service.clone(),
                instance: origin.instance.clone(),
                recorder: origin.recorder.into(),
                listener: origin.listener.clone(),
                client_addr: peer.map(addr_text).unwrap_or_default(),
                server_addr: parts.server_addr.into_owned(),
                ..Default::default()
            }),
            protocol: protocol(self.version, self.grpc) as i32,
            role: origin.role as i32,
            request: Some(request),
            response,
            messages,
            error: parts.error,
            flags: parts.flags.map(|(cancelled, upgraded)| Flags {
                cancelled,
                upgraded,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// For a gRPC call, both bodies' messages in time order, and whether
    /// the last message of the request, then of the response, was cut.
    fn messages(&self) -> Option<(Vec<StreamMessage>, bool, bool)> {
        self.grpc.then(|| {
            let end = self.duration_ns;
            let (mut messages, request_cut) =
                grpc_messages(&self.request_body, Direction::Request, end);
            let (responses, response_cut) =
                grpc_messages(&self.response_body, Direction::Response, end);
            messages.extend(responses);
            messages.sort_by_key(|m| m.offset_ns);
            (messages, request_cut, response_cut)
        })
    }

    /// The call's head as the `--match` rules and the rate cap read it,
    /// without building its exchange (nor cutting a gRPC call's messages
    /// out of its bodies).
    pub fn head(&self) -> HeadView<'_> {
        HeadView {
            captured: self,
            parts: self.parts(false),
        }
    }

    /// Appends the record of this exchange, redacted by `redactor` and
    /// noting `sample_rate` when below 1, to `out`: the bytes
    /// `reprise_model::encode` writes for [`Captured::to_exchange`]'s
    /// exchange after `prepare`, without building the exchange.
    pub fn encode(&self, redactor: &Redactor, sample_rate: f64, out: &mut Vec<u8>) {
        self.encode_parts(self.parts(true), redactor, sample_rate, out);
    }

    fn encode_parts(
        &self,
        parts: Parts<'_>,
        redactor: &Redactor,
        sample_rate: f64,
        out: &mut Vec<u8>,
    ) {
        let origin = parts.origin;
        let identity = &self.identity;
        let (request_body, response_body) = (&self.request_body, &self.response_body);
        let mut notes: [Vec<String>; 8] = Default::default();
        let [
            request_authority,
            request_query,
            request_head,
            request_trailer,
            request_body_notes,
            response_head,
            response_trailer,
            response_body_notes,
        ] = &mut notes;
        let (request_cut, response_cut) = parts
            .messages
            .as_ref()
            .map_or((false, false), |(_, request, response)| {
                (*request, *response)
            });
        let bodies = parts.messages.is_none();
        let mut w = MessageWriter::new(out);
        w.bytes(1, &identity.id);
        w.bytes(2, identity.parent_id.as_ref().map_or(&[][..], |p| &p[..]));
        w.bytes(3, identity.trace_id.as_ref().map_or(&[][..], |t| &t[..]));
        w.uint(4, self.recorded_at_ns);
        w.uint(5, self.duration_ns);
        w.message(6, |s| {
            s.string(1, &origin.service);
            s.string(2, &origin.instance);
            s.string(3, &origin.listener);
            s.string(4, origin.recorder);
            if let Some(peer) = identity.peer {
                s.string(5, &addr_text(peer));
            }
            s.string(6, &parts.server_addr);
        });
        w.uint(7, protocol(self.version, self.grpc) as u64);
        w.uint(8, origin.role as u64);
        w.large_message(9, |r| {
            r.string(1, &parts.method);
            r.string(2, &parts.scheme);
            match redactor.redact_authority(&parts.authority) {
                Some(host) => {
                    request_authority.push("userinfo".to_string());
                    r.string(3, host);
                }
                None => r.string(3, &parts.authority),
            }
            match redactor.redact_target(&parts.path) {
                Some((path, names)) => {
                    request_query.extend(names.iter().map(|n| n.to_string()));
                    r.string(4, &path);
                }
                None => r.string(4, &parts.path),
            }
            write_fields(r, 5, parts.request_fields, redactor, request_head);
            let (decoded, capped) = if bodies {
                write_body(
                    r,
                    6,
                    request_body,
                    parts.request_fields,
                    redactor,
                    origin.max_body,
                    request_body_notes,
                )
            } else {
                (false, false)
            };
            if let Some(trailers) = parts.request_trailers {
                write_fields(r, 7, trailers, redactor, request_trailer);
            }
            r.uint(8, request_body.size);
            r.bool(9, request_body.truncated || request_cut || capped);
            r.bool(10, decoded);
        });
        if let Some((status, headers)) = parts.response {
            w.large_message(10, |r| {
                r.uint(1, u64::from(status.as_u16()));
                r.string(2, status.canonical_reason().unwrap_or(""));
                write_fields(r, 3, headers, redactor, response_head);
                let (decoded, capped) = if bodies {
                    write_body(
                        r,
                        4,
                        response_body,
                        headers,
                        redactor,
                        origin.max_body,
                        response_body_notes,
                    )
                } else {
                    (false, false)
                };
                if let Some(trailers) = parts.response_trailers {
                    write_fields(r, 5, trailers, redactor, response_trailer);
                }
                r.uint(6, response_body.size);
                r.bool(7, response_body.truncated || response_cut || capped);
                r.bool(8, decoded);
                if let Some(grpc) = &parts.grpc_status {
                    r.prost(9, grpc);
                }
            });
        }
        for message in parts.messages.iter().flat_map(|(messages, _, _)| messages) {
            w.prost(11, message);
        }
        if let Some(error) = &parts.error {
            w.prost(12, error);
        }
        let mut redactions: Vec<String> = Vec::new();
        for (place, notes) in NOTE_PLACES.iter().zip(notes) {
            for note in notes {
                let note = format!("{place}:{note}");
                if !redactions.contains(&note) {
                    redactions.push(note);
                }
            }
        }
        let (cancelled, upgraded) = parts.flags.unwrap_or_default();
        if parts.flags.is_some() || !redactions.is_empty() || sample_rate < 1.0 {
            w.message(13, |f| {
                f.bool(1, !redactions.is_empty());
                for note in &redactions {
                    f.each_string(2, note);
                }
                f.bool(3, upgraded);
                f.bool(4, cancelled);
                if sample_rate < 1.0 {
                    f.double(5, sample_rate);
                }
            });
        }
    }
}

/// A recorded call's head, as filters read it ([`CallHead`]).
pub struct HeadView<'a> {
    captured: &'a Captured,
    parts: Parts<'a>,
}

impl HeadView<'_> {
    /// [`Captured::encode`], from the parts already read for the head.
    pub fn encode(self, redactor: &Redactor, sample_rate: f64, out: &mut Vec<u8>) {
        let mut parts = self.parts;
        parts.messages = self.captured.messages();
        self.captured
            .encode_parts(parts, redactor, sample_rate, out);
    }
}

impl CallHead for HeadView<'_> {
    fn recorded_at_ns(&self) -> u64 {
        self.captured.recorded_at_ns
    }

    fn status(&self) -> u32 {
        self.parts
            .response
            .map_or(0, |(status, _)| u32::from(status.as_u16()))
    }

    fn protocol_label(&self) -> &'static str {
        reprise_model::protocol_label(protocol(self.captured.version, self.captured.grpc))
    }

    fn request_head(&self) -> Option<FilteredHead<'_>> {
        Some(FilteredHead {
            method: &self.parts.method,
            path: &self.parts.path,
            authority: &self.parts.authority,
            headers: &self.parts.request_fields,
        })
    }
}

/// Redacts `exchange` by `redactor` and notes `sample_rate` when below 1:
/// what [`Captured::encode`] does to the record, done to its exchange.
#[cfg(test)]
fn prepare(exchange: &mut Exchange, redactor: &Redactor, sample_rate: f64) {
    redactor.apply(exchange);
    if sample_rate < 1.0 {
        exchange
            .flags
            .get_or_insert_with(Flags::default)
            .sample_rate = Some(sample_rate);
    }
}

/// Writes a block of fields as `field`'s `Header` messages, redacting as
/// [`Redactor::apply`] does; each rule that replaced a value goes to `notes`.
fn write_fields(
    w: &mut MessageWriter<'_>,
    field: u32,
    fields: Fields<'_>,
    redactor: &Redactor,
    notes: &mut Vec<String>,
) {
    for (name, value) in fields.iter() {
        // Written as they are: a name comes from an `http::HeaderName`, so
        // it is always visible ASCII, which `to_headers` keeps as it is too.
        match redactor.redact_field(name, value) {
            Some((value, rule)) => {
                notes.push(rule.to_string());
                w.pair(field, name, &value);
            }
            None => w.pair(field, name, value),
        }
    }
}

/// Writes a body's kept bytes as `field`, after the body rules (which see
/// the head's fields as redacted); what they redacted goes to `notes`.
/// A compressed body is inflated to at most `max_body` bytes. Whether the
/// body written is the original without its Content-Encoding, and whether
/// it was cut at `max_body` once decoded.
fn write_body(
    w: &mut MessageWriter<'_>,
    field: u32,
    body: &BodyCapture,
    head: Fields<'_>,
    redactor: &Redactor,
    max_body: usize,
    notes: &mut Vec<String>,
) -> (bool, bool) {
    let seen = |name: &str| match redactor.header_rule(name.as_bytes()) {
        Some(_) => head.header(name).map(|_| MARKER),
        None => head.header_str(name),
    };
    let content_type = seen("content-type");
    if body.kept > 0 && redactor.may_redact_body(content_type) {
        // Only the bodies the rules may change are copied whole.
        let whole = body.bytes();
        let head = BodyHead {
            content_type,
            content_encoding: seen("content-encoding"),
            truncated: body.truncated,
            decoded: false,
            limit: Some(max_body),
        };
        if let Some(done) = redactor.redact_body(&whole, head) {
            notes.extend(done.notes);
            w.bytes(field, &done.body);
            return (done.decoded, done.truncated);
        }
        w.bytes(field, &whole);
        return (false, false);
    }
    w.bytes_in_pieces(field, body.kept, body.frames().map(|(_, frame)| frame));
    (false, false)
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
        let block = Fields::at(&buf, 0);
        let mut at = block.len();
        assert_eq!(
            block.to_headers(),
            [
                Header::new("x-a", "1"),
                Header::new("x-a", "2"),
                Header::new("x-bin", b"\xff\xfe")
            ]
        );
        assert_eq!(get(&buf, &mut at), b"tail");
        // Past the end: empty, never a panic.
        assert_eq!(get(&buf, &mut at), b"");
        assert_eq!(Fields::at(&buf, at).iter().count(), 0);
        assert_eq!(Fields::at(&buf, buf.len() + 9).iter().count(), 0);
    }

    // --- The record encoded directly is the exchange's encoding -----------

    fn map(fields: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            let name = http::HeaderName::from_bytes(name.as_bytes());
            let value = http::HeaderValue::from_bytes(value);
            if let (Ok(name), Ok(value)) = (name, value) {
                map.append(name, value);
            }
        }
        map
    }

    fn origin(role: Role) -> Arc<Origin> {
        Arc::new(Origin {
            service: "shop".into(),
            instance: "pod-1".into(),
            recorder: "proxy",
            role,
            listener: "127.0.0.1:8080".into(),
            scheme: "http",
            authority: "fallback.example".into(),
            server_addr: String::new(),
            max_body: 1 << 20,
        })
    }

    /// A record as `Recording` fills one: the request head, then the rest.
    fn record(
        origin: Option<Arc<Origin>>,
        method: &str,
        uri: &str,
        version: Version,
        headers: &[(&str, &[u8])],
    ) -> Captured {
        let mut c = Captured {
            origin,
            version: Some(version),
            recorded_at_ns: 1_700_000_000_123_456_789,
            duration_ns: 5_000,
            ..Default::default()
        };
        c.identity.id = [7; 16];
        let uri: Uri = uri.parse().unwrap_or_default();
        let headers = map(headers);
        c.grpc = is_grpc(&headers);
        put(&mut c.heads, method.as_bytes());
        put(
            &mut c.heads,
            uri.scheme_str().unwrap_or_default().as_bytes(),
        );
        put(
            &mut c.heads,
            uri.authority().map_or("", |a| a.as_str()).as_bytes(),
        );
        put(
            &mut c.heads,
            uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes(),
        );
        put_fields(&mut c.heads, &headers);
        c
    }

    fn respond(c: &mut Captured, status: u16, headers: &[(&str, &[u8])]) {
        let start = c.heads.len();
        put_fields(&mut c.heads, &map(headers));
        c.response = Some((StatusCode::from_u16(status).unwrap_or_default(), start));
    }

    fn frames(body: &mut BodyCapture, frames: &[&[u8]], max: usize) {
        for (i, frame) in frames.iter().enumerate() {
            body.data(100 + i as u64 * 10, &Bytes::copy_from_slice(frame), max);
        }
    }

    /// Both ways of storing `c` give the same bytes, and the `--match`
    /// rules judge its head as they would judge its exchange.
    fn assert_same(c: &Captured, redactor: &Redactor, rate: f64) -> Exchange {
        let mut from_head = Vec::new();
        c.head().encode(redactor, rate, &mut from_head);
        let head = c.head();
        for term in [
            "",
            "method=POST",
            "path=/api/*",
            "status=2xx",
            "status=101",
            "header=content-type",
            "header=host:shop.*",
            "authority=inventory.*",
            "protocol=grpc",
        ] {
            let filter = reprise_model::select::ExchangeFilter::new();
            let filter = if term.is_empty() {
                filter
            } else {
                match filter.add_match(term) {
                    Ok(filter) => filter,
                    Err(error) => panic!("{term}: {error}"),
                }
            };
            assert_eq!(
                filter.matches(&head),
                filter.matches(&c.to_exchange()),
                "{term}"
            );
        }
        let mut direct = Vec::new();
        c.encode(redactor, rate, &mut direct);
        let mut exchange = c.to_exchange();
        prepare(&mut exchange, redactor, rate);
        let decoded = reprise_model::decode(&direct);
        assert_eq!(decoded.ok().as_ref(), Some(&exchange));
        assert_eq!(direct, reprise_model::codec::encode_to_vec(&exchange));
        assert_eq!(from_head, direct, "encoded from the head's parts");
        exchange
    }

    #[test]
    fn a_plain_call_encodes_as_its_exchange() {
        let mut c = record(
            Some(origin(Role::Inbound)),
            "POST",
            "/api/orders?x=1",
            Version::HTTP_11,
            &[
                ("host", b"shop.example:8080"),
                ("authorization", b"Bearer secret"),
                ("cookie", b"a=1"),
                ("content-type", b"application/json"),
                ("x-bin", b"\xff\x01"),
            ],
        );
        c.identity.peer = "10.1.2.3:45678".parse().ok();
        let big = vec![b'z'; SHARE_AT + 10];
        frames(&mut c.request_body, &[b"{\"a\":", b"1}"], 1 << 20);
        respond(
            &mut c,
            201,
            &[("set-cookie", b"s=2"), ("content-type", b"text/plain")],
        );
        frames(&mut c.response_body, &[b"ok ", &big, b"!"], 1 << 20);
        let redactor = Redactor::default();
        let exchange = assert_same(&c, &redactor, 1.0);
        let flags = exchange.flags.unwrap_or_default();
        assert_eq!(
            flags.redactions,
            [
                "request.header:authorization",
                "request.header:cookie",
                "response.header:set-cookie"
            ]
        );
        assert_eq!(
            exchange.request.map(|r| r.authority),
            Some("shop.example:8080".into())
        );
        assert_same(&c, &Redactor::none(), 0.25);
        assert_same(&c, &Redactor::none(), 0.0);
        assert_same(&c, &Redactor::none().header("X-BIN"), 1.0);
    }

    #[test]
    fn json_rules_encode_as_they_apply() {
        let json = |content_type: &'static [u8]| {
            let mut c = record(
                Some(origin(Role::Inbound)),
                "POST",
                "/pay",
                Version::HTTP_11,
                &[
                    ("content-type", content_type),
                    ("authorization", b"[redacted]"),
                ],
            );
            frames(
                &mut c.request_body,
                &[b"{\"card\":{\"number\":", b"\"4111\"},\"password\":\"p\"}"],
                1 << 20,
            );
            respond(&mut c, 200, &[]);
            // Cut at the cap: not readable, so not stored.
            frames(&mut c.response_body, &[b"{\"password\":\"abcdef\"}"], 8);
            c
        };
        let rules = Redactor::default()
            .json_path("$.card.number")
            .and_then(|r| r.json_path("$..password"))
            .unwrap_or_default();
        let exchange = assert_same(&json(b"application/json"), &rules, 1.0);
        assert_eq!(
            exchange.flags.unwrap_or_default().redactions,
            [
                "request.body:$.card.number",
                "request.body:$..password",
                "response.body:unparsed"
            ]
        );
        // The content type redacted: the rules see the marker, and leave
        // the body alone.
        assert_same(
            &json(b"application/json"),
            &rules.clone().header("content-type"),
            1.0,
        );
        assert_same(&json(b"text/plain"), &rules, 0.5);
        // Nothing the paths select: untouched; only the cut body is noted.
        let quiet = Redactor::none().json_path("$.nothing").unwrap_or_default();
        let exchange = assert_same(&json(b"application/json"), &quiet, 1.0);
        assert_eq!(
            exchange.flags.unwrap_or_default().redactions,
            ["response.body:unparsed"]
        );
    }

    #[test]
    fn query_form_and_compressed_bodies_encode_as_they_apply() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"token\":\"t0ps3cret\",\"n\":1}")
            .unwrap_or_default();
        let gz = gz.finish().unwrap_or_default();
        let mut c = record(
            Some(origin(Role::Inbound)),
            "POST",
            "/cb?state=1&access_token=abc",
            Version::HTTP_11,
            &[
                ("content-type", b"application/x-www-form-urlencoded"),
                ("x-api-key", b"k"),
            ],
        );
        frames(
            &mut c.request_body,
            &[b"user=ann&pass", b"word=hunter2"],
            1 << 20,
        );
        respond(
            &mut c,
            200,
            &[
                ("content-type", b"text/plain"),
                ("content-encoding", b"gzip"),
            ],
        );
        frames(&mut c.response_body, &[&gz], 1 << 20);
        let rules = Redactor::default().json_path("$.token").unwrap_or_default();
        let exchange = assert_same(&c, &rules, 1.0);
        assert_eq!(
            exchange.flags.unwrap_or_default().redactions,
            [
                "request.query:access_token",
                "request.header:x-api-key",
                "request.body:form:password",
                "response.body:$.token"
            ]
        );
        let request = exchange.request.unwrap_or_default();
        assert_eq!(request.path, "/cb?state=1&access_token=%5Bredacted%5D");
        let response = exchange.response.unwrap_or_default();
        assert!(response.body_decoded && !request.body_decoded);
        assert_eq!(&response.body[..], b"{\"token\":\"[redacted]\",\"n\":1}");
        // Without the JSON rule the response is stored as it came.
        let exchange = assert_same(&c, &Redactor::default(), 1.0);
        assert_eq!(&exchange.response.unwrap_or_default().body[..], &gz[..]);
        assert_same(&c, &Redactor::none(), 1.0);
    }

    #[test]
    fn a_grpc_call_encodes_as_its_exchange() {
        let mut c = record(
            Some(origin(Role::Downstream)),
            "POST",
            "https://inventory.internal:443/shop.Stock/Watch",
            Version::HTTP_2,
            &[("content-type", b"application/grpc"), ("te", b"trailers")],
        );
        c.identity.parent_id = Some([1; 16]);
        c.identity.trace_id = Some([2; 16]);
        c.identity.peer = "[::1]:9000".parse().ok();
        frames(
            &mut c.request_body,
            &[&[0, 0, 0], &[0, 2, b'h', b'i']],
            1 << 20,
        );
        let mut trailers = HeaderMap::new();
        trailers.insert("authorization", http::HeaderValue::from_static("x"));
        c.request_body.trailers(&trailers);
        respond(&mut c, 200, &[("content-type", b"application/grpc")]);
        // The second message is cut by the cap.
        frames(
            &mut c.response_body,
            &[&[0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 9, 1, 2]],
            9,
        );
        c.response_body.trailers(&map(&[
            ("grpc-status", b"5"),
            ("grpc-message", b"not%20found"),
        ]));
        let exchange = assert_same(&c, &Redactor::default(), 1.0);
        assert_eq!(exchange.messages.len(), 3);
        assert_eq!(
            exchange.response.and_then(|r| r.grpc).map(|g| g.code),
            Some(5)
        );
        // Trailers-only: the status is in the head.
        let mut c = record(
            None,
            "POST",
            "/shop.Stock/Get",
            Version::HTTP_2,
            &[("content-type", b"application/grpc+proto")],
        );
        respond(
            &mut c,
            200,
            &[("grpc-status", b"14"), ("grpc-message", b"down")],
        );
        assert_same(&c, &Redactor::default(), 1.0);
    }

    #[test]
    fn repeated_notes_large_bodies_and_grpc_web_encode_as_their_exchanges() {
        // The same rule twice (noted once), with a sampling note and JSON
        // rules on a body past 16 KiB held partly by handle.
        let mut c = record(
            Some(origin(Role::Inbound)),
            "PUT",
            "/big",
            Version::HTTP_11,
            &[
                ("cookie", b"a=1"),
                ("cookie", b"b=2"),
                ("content-type", b"application/json"),
            ],
        );
        let filler = vec![b' '; 20 << 10];
        frames(
            &mut c.request_body,
            &[b"{\"password\":\"p\",", &filler, b"\"n\":1}"],
            1 << 20,
        );
        respond(&mut c, 200, &[("set-cookie", b"x"), ("set-cookie", b"y")]);
        let rules = Redactor::default()
            .json_path("$..password")
            .unwrap_or_default();
        let exchange = assert_same(&c, &rules, 0.125);
        assert_eq!(
            exchange.flags.unwrap_or_default().redactions,
            [
                "request.header:cookie",
                "request.body:$..password",
                "response.header:set-cookie"
            ]
        );
        assert_same(&c, &Redactor::default(), 0.5);
        // gRPC-web over HTTP/1.1: a gRPC call, its messages framed alike.
        let mut c = record(
            Some(origin(Role::Inbound)),
            "POST",
            "/shop.Stock/Get",
            Version::HTTP_11,
            &[("content-type", b"application/grpc-web+proto")],
        );
        frames(&mut c.request_body, &[&[0, 0, 0, 0, 1, 7]], 1 << 20);
        respond(
            &mut c,
            200,
            &[("content-type", b"application/grpc-web+proto")],
        );
        frames(&mut c.response_body, &[&[0, 0, 0, 0, 0]], 1 << 20);
        let exchange = assert_same(&c, &Redactor::default(), 1.0);
        assert_eq!(exchange.messages.len(), 2);
    }

    #[test]
    fn failed_and_odd_calls_encode_as_their_exchanges() {
        // No response: the connection failed; the client gave up.
        let mut c = record(
            Some(origin(Role::Inbound)),
            "GET",
            "/",
            Version::HTTP_10,
            &[("host", b"\xffbad")],
        );
        c.error = Some(TransportError {
            kind: ErrorKind::Connect as i32,
            message: "connection refused".into(),
            after_response_head: false,
        });
        c.request_body.cancelled();
        assert_same(&c, &Redactor::default(), 1.0);
        // Cancelled with no error: flagged.
        c.error = None;
        assert_same(&c, &Redactor::default(), 1.0);
        // Upgraded, and a body that broke after the head.
        let mut c = record(
            Some(origin(Role::Inbound)),
            "GET",
            "/ws",
            Version::HTTP_11,
            &[("upgrade", b"websocket")],
        );
        respond(&mut c, 101, &[("upgrade", b"websocket")]);
        c.upgraded = true;
        c.response_body.broke("reset by peer".into());
        c.response_body.cancelled();
        assert_same(&c, &Redactor::default(), 1.0);
        // A status with no reason, empty heads, empty bodies, no origin.
        let mut c = record(None, "GET", "/", Version::HTTP_11, &[]);
        respond(&mut c, 599, &[]);
        assert_same(&c, &Redactor::none(), 1.0);
        assert_same(&Captured::default(), &Redactor::default(), 1.0);
    }
}
