#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is a failure with a message
//! What recording one call costs the proxy's serving thread, which is
//! where `reprise record` now does it (`Recorder::local`): a GET answered
//! with nginx's head and the 1 KiB JSON body of bench/proxy.sh, captured
//! as the forward path captures it (`Recording`: the heads copied, the
//! body's frame kept by the tap), then, when both bodies are done, judged,
//! encoded and packed on the same thread. Cases, each a step more of the
//! path:
//!
//! - `refused`: `--match` refuses the call: the capture and the rules'
//!   look at its head, nothing encoded (the floor);
//! - `encoded`: the record encoded, then dropped by a packer that keeps
//!   nothing;
//! - `packed_plain`: encoded into plain packs (no compression), as a store
//!   with no packer of its own takes them;
//! - `packed_zstd`: encoded into a tape's 256 KiB blocks, compressed with
//!   zstd level 1 on this thread when full (amortised over the block's
//!   calls), as `reprise record` does.
//!
//! Each pack goes to the writer thread, which drops it. The differences
//! between cases are the costs of each step; bench/proxy-cpu.sh measures
//! the whole proxy's CPU per call under load, kernel included.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

use common::{Call, Packing};

fn bench(c: &mut Criterion) {
    let call = Call::new();
    let mut group = c.benchmark_group("record_one_call");
    group.throughput(Throughput::Elements(1));
    for (name, packing, refuse) in [
        ("refused", Packing::Nothing, true),
        ("encoded", Packing::Nothing, false),
        ("packed_plain", Packing::Plain, false),
        ("packed_zstd", Packing::Zstd, false),
    ] {
        let (recorder, thread, metrics) = common::start(packing, refuse);
        let local = recorder.local();
        let mut calls = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                calls += 1;
                call.record(&local);
            });
        });
        drop(local);
        thread.close(&recorder, Duration::from_secs(10)).unwrap();
        if calls == 0 {
            // Filtered out (`cargo bench -- NAME`).
            continue;
        }
        let stats = metrics.snapshot();
        // None lost: a drop would make the figure a floor, not a cost.
        assert_eq!(stats.dropped(), 0, "{name}: {stats:?}");
        match (refuse, packing) {
            (true, _) => assert!(stats.unmatched > 0, "{name}: {stats:?}"),
            (false, Packing::Nothing) => assert_eq!(stats.recorded, 0),
            (false, _) => assert!(stats.recorded > 0, "{name}: {stats:?}"),
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
