//! The recording core shared by reprise's recorders: the proxy behind
//! `reprise record` and the tower layers a Rust service adds.
//!
//! - A [`Recording`] is one exchange in flight. The call's path copies
//!   what it sees into a [`Captured`] record taken from a pool: the heads
//!   encoded into one buffer, each body's frames (with their time offsets)
//!   kept by a [`TapBody`] as the body streams, up to the size cap, with
//!   no lock per frame (small frames copied, large ones by handle). The
//!   record is cleared and reused by the thread that encoded it (or given
//!   back to the pool by the writer thread), so in a steady state the
//!   call's path allocates nothing for the recording and no thread frees
//!   what another allocated.
//! - Recording is a bypass: a bounded queue, fed with `try_send`, between
//!   the calls and a writer thread that owns the sink ([`Recorder`]); when
//!   the queue is full, records are dropped from the recording, never the
//!   call, and counted in [`Metrics`]. The `--match` filter, the rate cap
//!   and redaction ([`Rules`], from the model crate) apply to each record,
//!   which is encoded straight from the pooled record
//!   ([`Captured::encode`]: the bytes of the exchange
//!   [`Captured::to_exchange`] describes, without building it); the filter
//!   and the rate cap read the call's head in place ([`Captured::head`]).
//! - Where that happens: on a thread's own handle ([`Recorder::local`], the
//!   proxy's serving threads), the thread that served the call judges,
//!   encodes and packs it with the sink's packer (a tape's compresses
//!   whole blocks), and only full packs cross the queue; a call over
//!   [`LOCAL_RECORD_MAX`] bytes crosses whole. On the shared handle (the
//!   tower layers, whose downstream calls wait for their inbound call's
//!   verdict) the record itself crosses, and the writer thread does it.

mod metrics;
mod recorder;
mod recording;
mod tap;

pub use metrics::{ConnectionMetrics, HealthEvent, Metrics, RecorderStats};
pub use recorder::{LOCAL_RECORD_MAX, Recorder, RecorderThread, Rules};
pub use recording::{
    BodyCapture, Captured, HeadView, Identity, Origin, Recording, RequestHead, Side, is_grpc,
};
pub use tap::{Tap, TapBody};
