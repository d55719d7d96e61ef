//! [`Recording`]: one exchange being recorded while it is served or
//! forwarded. The call's path hands it the request head, the response
//! head and each body's capture as they pass; when both bodies are done
//! (ended, failed or dropped) the record goes to the recorder.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use http::{HeaderMap, StatusCode};
use reprise_model::{ErrorKind, Role, TransportError};

use crate::body::BodyCapture;
use crate::captured::Captured;
use crate::grpc::is_grpc;
use crate::head::{RequestHead, put, put_fields};
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
    /// `source.route`: the egress route (`--egress-route NAME=...`) the
    /// calls came through; empty elsewhere.
    pub route: String,
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
    /// For a downstream call: how it was tied to its parent, and its
    /// place among the parent's downstream calls.
    pub link: Option<reprise_model::Link>,
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
