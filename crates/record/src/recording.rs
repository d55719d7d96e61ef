//! One exchange being recorded while it is forwarded.
//!
//! The forward path only keeps references: the heads as hyper parsed them
//! (`HeaderMap` clones share their bytes), and each body's frames as
//! `Bytes` handles with their time offsets, up to the size cap, held by
//! the body's own tap with no lock. When both bodies have ended (or been
//! dropped) the pieces go to the recorder as a [`Captured`]; turning them
//! into an [`Exchange`] (header conversion, body assembly, gRPC message
//! framing) happens on the recorder's thread, off the forward path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use reprise_model::grpc::Deframer;
use reprise_model::{
    Direction, ErrorKind, Exchange, Flags, Header, Protocol, RecordSource, Role, StreamMessage,
    TransportError,
};
use reprise_net::grpc_status;

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
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The exchange id.
    pub id: Vec<u8>,
    /// For a downstream call, the inbound exchange being served.
    pub parent_id: Vec<u8>,
    /// The W3C trace id, when one was seen or assigned.
    pub trace_id: Vec<u8>,
    /// The client's address, when known.
    pub peer: Option<SocketAddr>,
}

/// One body as it passed: its frames up to the cap, by reference.
#[derive(Debug, Default)]
pub struct BodyCapture {
    /// Frames kept (the last one cut at the cap), with their time offsets.
    frames: Vec<(u64, Bytes)>,
    kept: usize,
    /// Every byte that passed.
    size: u64,
    truncated: bool,
    trailers: Option<HeaderMap>,
    /// The body broke (the error's text).
    error: Option<String>,
    /// The body was dropped before its end.
    cancelled: bool,
}

impl BodyCapture {
    /// A data frame passed at `offset_ns`; keeps a handle on at most
    /// `max - kept` of its bytes.
    pub fn data(&mut self, offset_ns: u64, data: &Bytes, max: usize) {
        self.size += data.len() as u64;
        let room = max.saturating_sub(self.kept);
        if data.len() > room {
            self.truncated = true;
        }
        let take = room.min(data.len());
        if take > 0 {
            self.frames.push((offset_ns, data.slice(..take)));
            self.kept += take;
        }
    }

    /// The body's trailers.
    pub fn trailers(&mut self, map: &HeaderMap) {
        self.trailers = Some(map.clone());
    }

    /// The frames joined.
    fn bytes(&self) -> Bytes {
        match self.frames.as_slice() {
            [] => Bytes::new(),
            [(_, only)] => only.clone(),
            frames => {
                let mut joined = BytesMut::with_capacity(self.kept);
                for (_, frame) in frames {
                    joined.extend_from_slice(frame);
                }
                joined.freeze()
            }
        }
    }
}

/// The request head as the client sent it, before any proxy rewriting.
#[derive(Debug)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The protocol version.
    pub version: Version,
    /// The fields.
    pub headers: HeaderMap,
}

/// Everything the forward path saw of one exchange.
#[derive(Debug)]
pub struct Captured {
    origin: Arc<Origin>,
    identity: Identity,
    recorded_at_ns: u64,
    duration_ns: u64,
    grpc: bool,
    request: RequestHead,
    response: Option<(StatusCode, HeaderMap)>,
    request_body: BodyCapture,
    response_body: BodyCapture,
    error: Option<TransportError>,
    upgraded: bool,
}

struct Partial {
    request: Option<RequestHead>,
    response: Option<(StatusCode, HeaderMap)>,
    request_body: Option<BodyCapture>,
    response_body: Option<BodyCapture>,
    error: Option<TransportError>,
    upgraded: bool,
}

/// An exchange in flight.
pub struct Recording {
    recorder: Recorder,
    origin: Arc<Origin>,
    identity: Identity,
    recorded_at_ns: u64,
    started: Instant,
    grpc: bool,
    partial: Mutex<Partial>,
    /// Bodies still open (request, response); the exchange is complete at 0.
    open: AtomicU8,
}

impl Recording {
    /// Starts recording the call `identity`, whose request head is
    /// `request`.
    pub fn new(
        recorder: Recorder,
        origin: Arc<Origin>,
        identity: Identity,
        request: RequestHead,
    ) -> Arc<Recording> {
        let grpc = is_grpc(&request.headers);
        Arc::new(Recording {
            recorder,
            origin,
            identity,
            recorded_at_ns: reprise_model::time::now_ns(),
            started: Instant::now(),
            grpc,
            partial: Mutex::new(Partial {
                request: Some(request),
                response: None,
                request_body: None,
                response_body: None,
                error: None,
                upgraded: false,
            }),
            open: AtomicU8::new(2),
        })
    }

    fn partial(&self) -> std::sync::MutexGuard<'_, Partial> {
        self.partial.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Nanoseconds since the request arrived.
    pub fn offset_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The size cap of each body's copy.
    pub fn max_body(&self) -> usize {
        self.origin.max_body
    }

    /// The response head arrived.
    pub fn response_head(&self, status: StatusCode, headers: &HeaderMap) {
        self.partial().response = Some((status, headers.clone()));
    }

    /// The connection was switched to another protocol (passed through).
    pub fn upgraded(&self) {
        self.partial().upgraded = true;
    }

    /// The call failed below HTTP.
    pub fn failed(&self, kind: ErrorKind, message: String) {
        let mut partial = self.partial();
        let after_response_head = partial.response.is_some();
        partial.error = Some(TransportError {
            kind: kind as i32,
            message,
            after_response_head,
        });
    }

    /// A body is done (ended, failed or dropped), with what passed.
    pub fn body_done(&self, side: Side, body: BodyCapture) {
        {
            let mut partial = self.partial();
            match side {
                Side::Request => partial.request_body = Some(body),
                Side::Response => partial.response_body = Some(body),
            }
        }
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    /// Both bodies are done: hand everything to the recorder.
    fn finish(&self) {
        let duration_ns = self.offset_ns();
        let mut partial = self.partial();
        // Taken once: `open` reaches 0 once.
        let Some(request) = partial.request.take() else {
            return;
        };
        let captured = Captured {
            origin: Arc::clone(&self.origin),
            identity: self.identity.clone(),
            recorded_at_ns: self.recorded_at_ns,
            duration_ns,
            grpc: self.grpc,
            request,
            response: partial.response.take(),
            request_body: partial.request_body.take().unwrap_or_default(),
            response_body: partial.response_body.take().unwrap_or_default(),
            error: partial.error.take(),
            upgraded: partial.upgraded,
        };
        drop(partial);
        self.recorder.submit(captured);
    }
}

impl BodyCapture {
    /// Marks the body as broken.
    pub fn broke(&mut self, error: String) {
        self.error = Some(error);
    }

    /// Marks the body as dropped before its end.
    pub fn cancelled(&mut self) {
        self.cancelled = true;
    }
}

/// A gRPC call, by its content type.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn model_headers(map: &HeaderMap) -> Vec<Header> {
    map.iter()
        .map(|(name, value)| Header::new(name.as_str(), value.as_bytes()))
        .collect()
}

fn protocol(version: Version, grpc: bool) -> Protocol {
    match version {
        Version::HTTP_2 if grpc => Protocol::Grpc,
        Version::HTTP_2 => Protocol::Http2,
        Version::HTTP_10 => Protocol::Http10,
        _ => Protocol::Http11,
    }
}

/// Cuts a gRPC body's kept frames into messages (see [`Deframer`]).
fn grpc_messages(
    body: &BodyCapture,
    direction: Direction,
    end_ns: u64,
) -> (Vec<StreamMessage>, bool) {
    // The frames are already cut at the size cap: keep all they hold.
    let mut deframer = Deframer::new(direction, usize::MAX);
    for (offset_ns, frame) in &body.frames {
        deframer.push(*offset_ns, frame);
    }
    deframer.finish(end_ns)
}

impl Captured {
    /// The exchange, built on the recorder's thread.
    pub fn into_exchange(self) -> Exchange {
        let Captured {
            origin,
            identity,
            recorded_at_ns,
            duration_ns,
            grpc,
            request,
            response,
            request_body,
            response_body,
            error,
            upgraded,
        } = self;
        let authority = request
            .uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| {
                request
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| origin.authority.clone());
        let scheme = match (origin.role, request.uri.scheme_str()) {
            (Role::Downstream, Some(scheme)) => scheme.to_string(),
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
        } = identity;
        let mut exchange = Exchange {
            id,
            parent_id,
            trace_id,
            recorded_at_ns,
            duration_ns,
            protocol: protocol(request.version, grpc) as i32,
            role: origin.role as i32,
            source: Some(RecordSource {
                service: origin.service.clone(),
                instance: origin.instance.clone(),
                recorder: origin.recorder.into(),
                listener: origin.listener.clone(),
                client_addr: peer.map(|p| p.to_string()).unwrap_or_default(),
                server_addr,
                ..Default::default()
            }),
            error,
            ..Default::default()
        };
        let mut model_request = reprise_model::Request {
            method: request.method.to_string(),
            scheme,
            authority,
            path: request
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            headers: model_headers(&request.headers),
            body_size: request_body.size,
            body_truncated: request_body.truncated,
            trailers: request_body
                .trailers
                .as_ref()
                .map(model_headers)
                .unwrap_or_default(),
            ..Default::default()
        };
        let mut model_response = response.map(|(status, headers)| reprise_model::Response {
            status: u32::from(status.as_u16()),
            reason: status.canonical_reason().unwrap_or("").to_string(),
            // A trailers-only gRPC response carries its status in the head.
            grpc: grpc_status(&headers),
            headers: model_headers(&headers),
            body_size: response_body.size,
            body_truncated: response_body.truncated,
            trailers: response_body
                .trailers
                .as_ref()
                .map(model_headers)
                .unwrap_or_default(),
            ..Default::default()
        });
        if let Some(response) = model_response.as_mut()
            && let Some(status) = response_body.trailers.as_ref().and_then(grpc_status)
        {
            response.grpc = Some(status);
        }
        if grpc {
            let (mut messages, cut) = grpc_messages(&request_body, Direction::Request, duration_ns);
            model_request.body_truncated |= cut;
            let (responses, cut) = grpc_messages(&response_body, Direction::Response, duration_ns);
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
        for (side, body) in [("request", &request_body), ("response", &response_body)] {
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
        if (cancelled && exchange.error.is_none()) || upgraded {
            let flags = exchange.flags.get_or_insert_with(Flags::default);
            flags.cancelled = cancelled && exchange.error.is_none();
            flags.upgraded = upgraded;
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
    fn bodies_are_kept_up_to_the_cap_by_reference() {
        let b = body(&[b"hello ", b"world"], 8);
        assert_eq!(
            (&b.bytes()[..], b.size, b.truncated),
            (&b"hello wo"[..], 11, true)
        );
    }
}
