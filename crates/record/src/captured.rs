//! [`Captured`]: everything one exchange left, copied as it passed, in a
//! record taken from a pool and cleared for the next exchange.

use std::sync::Arc;

use http::{StatusCode, Version};
use reprise_model::{Role, TransportError};

use crate::body::{BodyCapture, clear_bounded};
use crate::recording::{Identity, Origin, Side};

/// Everything one exchange left, copied; pooled from exchange to exchange.
#[derive(Debug, Default)]
pub struct Captured {
    pub(crate) origin: Option<Arc<Origin>>,
    pub(crate) identity: Identity,
    pub(crate) recorded_at_ns: u64,
    pub(crate) duration_ns: u64,
    pub(crate) grpc: bool,
    pub(crate) version: Option<Version>,
    /// The request head encoded (method, target, fields), then the
    /// response's fields from `response.1` on.
    pub(crate) heads: Vec<u8>,
    pub(crate) response: Option<(StatusCode, usize)>,
    pub(crate) request_body: BodyCapture,
    pub(crate) response_body: BodyCapture,
    pub(crate) error: Option<TransportError>,
    pub(crate) upgraded: bool,
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

    pub(crate) fn body_mut(&mut self, side: Side) -> &mut BodyCapture {
        match side {
            Side::Request => &mut self.request_body,
            Side::Response => &mut self.response_body,
        }
    }
}

/// The origin of a record that has none (never the case for one made by
/// [`Recording::new`]).
pub(crate) static NO_ORIGIN: Origin = Origin {
    service: String::new(),
    instance: String::new(),
    recorder: "",
    role: Role::Inbound,
    listener: String::new(),
    route: String::new(),
    scheme: "http",
    authority: String::new(),
    server_addr: String::new(),
    max_body: 0,
};
