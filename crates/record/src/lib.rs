//! The recording core shared by reprise's recorders: the proxy behind
//! `reprise record` and the tower layers a Rust service adds.
//!
//! - A [`Recording`] is one exchange in flight. The call's path copies
//!   what it sees into a [`Captured`] record taken from a pool: the heads
//!   encoded into one buffer, each body's frames (with their time offsets)
//!   kept by a [`TapBody`] as the body streams, up to the size cap, with
//!   no lock per frame (small frames copied, large ones by handle). The writer thread gives the record back cleared,
//!   so in a steady state the call's path allocates nothing for the
//!   recording and no thread frees what another allocated.
//! - Recording is a bypass: when both bodies are done, what the call left
//!   goes into a bounded queue with `try_send` ([`Recorder`]); when the
//!   queue is full it is dropped from the recording, never from the call,
//!   and counted in [`Metrics`]. A writer thread applies the `--match`
//!   filter, the rate cap and redaction ([`Rules`], from the model
//!   crate), and owns the sink. It encodes each record's bytes straight
//!   from the record ([`Captured::encode`]: the bytes of the exchange
//!   [`Captured::to_exchange`] describes, without building it); the filter
//!   and the rate cap read the call's head in place ([`Captured::head`]).

mod metrics;
mod recorder;
mod recording;
mod tap;

pub use metrics::{Metrics, RecorderStats};
pub use recorder::{Recorder, RecorderThread, Rules};
pub use recording::{
    BodyCapture, Captured, HeadView, Identity, Origin, Recording, RequestHead, Side, is_grpc,
};
pub use tap::{Tap, TapBody};
