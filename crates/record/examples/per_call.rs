#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: a panic is a failure with a message
//! The callgrind driver for the recording hot path: records `CALLS` calls
//! of one case of the criterion bench (`benches/record.rs`; the call and
//! the sinks are theirs, `benches/common`) and nothing else, so that the instructions per call are
//! the difference between two runs divided by the difference in calls.
//! Usage (release build, all threads counted):
//!
//! ```text
//! cargo build --release -p reprise-record --example per_call
//! for n in 5000 15000; do valgrind --tool=callgrind --callgrind-out-file=cg.$n \
//!     target/release/examples/per_call encoded $n; done
//! # (Ir of cg.15000 - Ir of cg.5000) / 10000, for each case:
//! # refused, encoded, packed_plain, packed_zstd
//! ```

use std::time::Duration;

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Call, Packing};

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "encoded".into());
    let calls: u64 = args
        .next()
        .map_or(10_000, |n| n.parse().expect("a number of calls"));
    let (packing, refuse) = match case.as_str() {
        "refused" => (Packing::Nothing, true),
        "encoded" => (Packing::Nothing, false),
        "packed_plain" => (Packing::Plain, false),
        "packed_zstd" => (Packing::Zstd, false),
        other => panic!("{other}: expected refused, encoded, packed_plain or packed_zstd"),
    };
    let (recorder, thread, metrics) = common::start(packing, refuse);
    let local = recorder.local();
    let call = Call::new();
    for _ in 0..calls {
        call.record(&local);
    }
    drop(local);
    thread.close(&recorder, Duration::from_secs(10)).unwrap();
    let stats = metrics.snapshot();
    assert_eq!(stats.dropped(), 0, "{case}: {stats:?}");
}
