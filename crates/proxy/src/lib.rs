//! The recording proxy behind `reprise record`: a reverse proxy in front of
//! a service written in any language, recording every exchange it forwards.
//!
//! - One listener serves HTTP/1.1 and HTTP/2: cleartext (h2c, prior
//!   knowledge) or TLS with ALPN; requests go to the upstream (http or
//!   https) over HTTP/2 when they are gRPC or came in over HTTP/2 to an
//!   upstream that speaks it, over HTTP/1.1 otherwise, translated both
//!   ways ([`UpstreamProtocol`] says how to choose).
//! - `/metrics` and `/healthz` on an admin address, from [`Metrics`].
//! - Connections are admitted and timed by [`ConnectionGate`] and
//!   [`serve_connection`], which `reprise mock` uses too.
//! - The recording itself is `reprise-record`'s, shared with the tower
//!   layers.
//! - Bodies stream: each frame is forwarded as it arrives; a
//!   [`tap`](TapBody) copies it (up to the size cap) into the exchange's
//!   pooled record, with no lock.
//! - Recording is a bypass: the serving thread that finished a call
//!   applies `--match`, the rate cap and redaction, encodes the record and
//!   hands it to a bounded queue with `try_send`; when the queue is full
//!   the record is dropped from the recording, never from the forward
//!   path, and counted. One writer thread owns the sink.
//! - An upstream that cannot be reached gives the client a 502 (gRPC:
//!   UNAVAILABLE) saying why, and the exchange is recorded with its error.

mod config;
mod egress;
mod error;
mod forward;
mod protocol;

mod listener;
mod server;
mod upstream;
mod watched;

pub use config::{ProxyConfig, Upstream, UpstreamError, UpstreamProtocol};
pub use egress::{
    CALLER_KEY, DEFAULT_LINK_WINDOW, DbProtocol, EgressConfig, EgressDb, EgressDbError,
    EgressFuture, EgressRecordLayer, EgressRecorder, EgressRoute, EgressRouteError, EgressSource,
    ForwardError, InboundTrace, InboundTracing, valid_traceparent,
};
pub use error::ProxyError;
pub use protocol::UpstreamVersions;

pub use listener::{
    ADMIN_CONNECTIONS, Accepted, ConnectionGate, ConnectionLimits, RESERVED_FDS, TrackedBody,
    TrackedFuture, serve_connection,
};
pub use reprise_net::TlsError;
pub use reprise_record::ConnectionMetrics;
pub use reprise_record::{EgressStats, Metrics, RecorderStats, TapBody};
pub use server::{RunningProxy, default_serving_threads, start};
