//! Record and mock inside a Rust service: tower layers for tonic, axum and
//! hyper.
//!
//! - [`RecordLayer`] (server side) records each inbound call into a tape
//!   through a bounded queue that never blocks or fails the call, with the
//!   same sampling, `--match` filter and redaction as `reprise record`,
//!   and makes the call's [`Scope`] current while it is served.
//! - [`CaptureLayer`] (client side) records each downstream call as a child
//!   of the inbound call being served, and adds a `traceparent`.
//! - [`MockLayer`] (client side, replay mode) answers downstream calls from
//!   a recording, scoped by the `x-reprise-replay` header `reprise replay`
//!   puts on each inbound call.
//!
//! One build does all three: [`Reprise::from_env`] reads `REPRISE_MODE`
//! (`off`, `record`, `mock`) and `REPRISE_TAPE` (see [`Config`]), and the
//! same wiring records in one deployment and mocks in another. In code,
//! [`Reprise::builder`] sets the same settings by method:
//!
//! ```no_run
//! use reprise_tower::{Mode, Reprise};
//!
//! # fn run() -> Result<(), reprise_tower::Error> {
//! let reprise = Reprise::builder()
//!     .mode(Mode::Record)
//!     .tape("calls.tape")
//!     .service("shop")
//!     .sample(0.1)
//!     .redact_json("$.card.number")
//!     .build()?;
//! # let _ = reprise;
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! use std::time::Duration;
//! use reprise_tower::Reprise;
//!
//! # async fn run(router: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
//! let reprise = Reprise::from_env()?;
//! // Inbound: every call to the router.
//! let app = router.layer(reprise.inbound());
//! // Downstream: a hyper-util client whose calls are captured or mocked.
//! // Built for the layer's `TapBody<B>`, it takes `B` requests through it.
//! let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
//!     .build_http::<reprise_tower::TapBody<http_body_util::Full<bytes::Bytes>>>();
//! let client = tower::ServiceBuilder::new()
//!     .layer(reprise.downstream("inventory:8080"))
//!     .service(client);
//! # let _ = client;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! // Let the writer store what is queued and close the tape.
//! reprise.shutdown(Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```
//!
//! With tonic: `Server::builder().layer(reprise.inbound())` on the server,
//! and `ServiceBuilder::new().layer(reprise.downstream("inventory:50051")
//! .rebox()).service(channel)` under a generated client (a `Channel`
//! takes tonic's body type only: [`DownstreamLayer::rebox`] hands it that
//! type back after the tap).
//!
//! Features: `hyper` and `rustls` by default; turn on `axum` or `tonic`
//! for the framework the service is written with.
//!
//! Two complete services are wired this way in the repository's
//! `examples/`: `json-shop` (axum, calling its inventory with a hyper-util
//! client) and `grpc-shop` (tonic, calling its inventory through a
//! `Channel`, with a streaming call). `docs/tower.md` has the whole
//! reference: every variable, what is recorded, how mocks match.
//!
//! Downstream calls made from a task started with `tokio::spawn` are not
//! linked to their inbound call (task-locals do not cross `spawn`): start
//! such tasks with [`spawn`], or run their future in [`Scope::run`].
//!
//! A replayed bidirectional gRPC stream is answered once its request
//! stream has ended: mocks key a stream by its whole request sequence.

mod body;
mod config;
mod downstream;
mod error;
mod mock;
mod record;
mod scope;

pub use body::{DownstreamBody, Observe, RecordBody};
pub use config::{Builder, Config, Mode, ParseModeError, Reprise};
pub use downstream::{
    BoxError, CaptureLayer, Downstream, DownstreamLayer, MockLayer, Rebox, Tapping, Wrap,
};
pub use error::{Error, Setting};
pub use mock::{
    Exhausted, MissReason, MockMiss, MockOptions, MockReport, MockServed, MockStore, Nearest,
    RecordedFailure,
};
pub use record::{
    MISSES_HEADER, MISSING_CALLS_HEADER, NEW_CALLS_HEADER, REPLAY_HEADER, Record, RecordFuture,
    RecordLayer, UNUSED_HEADER,
};
pub use reprise_mock::MockBody;
pub use reprise_record::{Metrics, RecorderStats, TapBody};
pub use scope::{Scope, spawn};
