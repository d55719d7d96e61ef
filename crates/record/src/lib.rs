//! The recording core shared by reprise's recorders: the proxy behind
//! `reprise record` and the tower layers a Rust service adds. Each part,
//! in the order a call's data flows through it:
//!
//! - **Call** ([`recording`](Recording)): a [`Recording`] is one exchange
//!   in flight. The call's path hands it the request head
//!   ([`RequestHead`]), the response head and each body as it streams.
//! - **Capture** ([`Captured`], [`BodyCapture`], [`TapBody`]): what the
//!   call's path sees is copied into one record taken from a pool:
//!   the heads in a private encoding in one buffer, each body's frames
//!   (with their time offsets) kept by a [`TapBody`] up to the size cap,
//!   with no lock per frame (small frames copied, large ones by handle).
//!   In a steady state the call's path allocates nothing for the
//!   recording and no thread frees what another allocated.
//! - **Judge and encode** ([`Rules`], [`HeadView`], [`Captured::encode`]):
//!   the `--match` filter and the rate cap read the call's head in place
//!   ([`Captured::head`]); a kept call is encoded straight from the
//!   record, redacted on the way, into the bytes of the exchange
//!   [`Captured::to_exchange`] describes, without building it. gRPC
//!   status and messages are read out of the captured bodies.
//! - **Queue** ([`Recorder`]): recording is a bypass, a bounded queue fed
//!   with `try_send`; when it is full, records are dropped from the
//!   recording, never the call, and counted in [`Metrics`]. On a serving
//!   thread's own handle ([`Recorder::local`], the proxy's), the thread
//!   that served the call judges, encodes and packs it with the sink's
//!   packer, and only full packs cross the queue (a call over
//!   [`LOCAL_RECORD_MAX`] bytes crosses whole). On the shared handle (the
//!   tower layers) the record itself crosses.
//! - **Writer** ([`RecorderThread`]): one thread owns the sink. It
//!   judges and encodes the records that crossed whole, holds a
//!   downstream call until its inbound call's verdict (stored with a kept
//!   call, dropped with a refused one), stores packs as they are, and
//!   counts what became of each exchange.
//! - **Sink**: the sink (a tape) writes, and says what it wrote or lost;
//!   [`Metrics`] follows it and says when recording degrades and resumes.

mod body;
mod captured;
mod encode;
mod grpc;
mod head;
mod held;
mod links;
mod local;
mod metrics;
mod pool;
mod recorder;
mod recording;
mod rules;
mod tap;
#[cfg(test)]
mod testing;
mod writer;

pub use body::BodyCapture;
pub use captured::Captured;
pub use grpc::is_grpc;
pub use head::{HeadView, RequestHead};
pub use links::{DEFAULT_LINK_WINDOW, InFlight, InboundLink, LINKS_MAX, LinkAnswer, LinkRegistry};
pub use local::{LOCAL_RECORD_MAX, Packing};
pub use metrics::{
    ConnectionMetrics, EgressMetrics, EgressStats, HealthEvent, Metrics, RecorderStats,
};
pub use recorder::{Recorder, RecorderError, RecorderThread};
pub use recording::{Identity, Origin, Recording, Side};
pub use rules::Rules;
pub use tap::{Tap, TapBody};
