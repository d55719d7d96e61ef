//! The replay engine behind `reprise replay`: sends recorded calls to an
//! explicit target and measures what comes back.
//!
//! - The reader (`feed.rs`) reads the recording on a thread of its own, builds
//!   each [`Call`] once (hop-by-hop fields out, rewrites in, the
//!   `x-reprise-replay`, `traceparent` and `tracestate` (the run)
//!   correlation headers on), puts
//!   calls back in recorded start order and gives each its due time from
//!   the [`ReplaySchedule`]: the recorded gaps divided by a speed, a fixed
//!   rate, or at once.
//! - Workers on a tokio runtime, as many as the concurrency: each takes
//!   the next call, waits for its due time and sends it over HTTP/1.1
//!   keep-alive connections or multiplexed HTTP/2 connections (TLS with
//!   ALPN when the target is https). The schedule is open-loop: a call's
//!   due time never depends on earlier answers, and latency is measured
//!   from the due time as well as from the send, so a target that falls
//!   behind shows as latency, not as a quietly lower rate.
//! - Results go, as exchanges linked to the recorded ones, to a writer
//!   thread that owns the results sink.
//! - The engine produces counters and a [`Report`]; printing them is the
//!   caller's business.

mod call;
mod client;
mod config;
mod engine;
mod error;
mod feed;
mod h1;
mod h2;
mod report;
mod results;
mod schedule;
mod stats;

pub use call::{Call, CallBuilder, REPLAY_HEADER, Skip, Wire, traceparent};
pub use config::{
    CallWatcher, CallWatcherHandle, ProtocolChoice, ReplayConfig, Rewrites, Settled, SettledHandle,
    Target, TrustChoice,
};
pub use engine::{Replay, StopHandle, plan};
pub use error::ReplayError;
pub use feed::Opener;
pub use report::{EndpointReport, Latency, Percentiles, Progress, RecordingReport, Report, micros};
pub use schedule::{Pacing, ReplaySchedule};
