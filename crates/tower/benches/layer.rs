#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is a failure with a message
//! The per-call cost of `RecordLayer` in an axum service: one call to a
//! router with one route answering a 1 KiB JSON body (the one
//! examples/hello.rs serves to wrk in bench/tower.sh), response body read
//! to the end, on a current-thread tokio runtime, in three cases:
//!
//! - `no_layer`: the router alone, the reference;
//! - `off`: `router.layer(Reprise::off().inbound())`, the layer switched
//!   off (`REPRISE_MODE=off`): what a service that ships the wiring pays
//!   when it is not recording;
//! - `record`: `router.layer(reprise.inbound())` recording every call into
//!   a sink that counts and drops exchanges, so the disk is not measured.
//!
//! The layer's cost per call is the difference from `no_layer`. That is
//! the time on the serving thread, which is what a call's latency sees;
//! the recorder thread's work (building, redacting and storing each
//! exchange) is off that path, and is printed after the bench as CPU time
//! per stored exchange, with the recorder's counts. In `record` every call
//! timed is recorded: the clock stops while the recorder catches up (see
//! [`calls`]), and a drop is reported.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, header};
use http_body_util::BodyExt;
use reprise_model::{Exchange, Sink, StoreError};
use reprise_tower::{Metrics, Reprise};
use tower::ServiceExt;

/// The recorder's queue: the layer's default.
const QUEUE: usize = 8192;

/// The 1 KiB JSON document examples/hello.rs answers: exactly 1024 bytes.
fn hello_json() -> Bytes {
    reprise_testkit::hello_json("hello from the reprise tower benchmark")
}

fn hello_router(body: Bytes) -> Router {
    Router::new().route(
        "/",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    )
}

/// Counts exchanges and drops them.
struct Discard(Arc<AtomicU64>);

impl Sink for Discard {
    fn append(&mut self, exchange: Exchange) -> Result<(), StoreError> {
        black_box(exchange);
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn append_encoded(&mut self, record: &[u8], _recorded_at_ns: u64) -> Result<(), StoreError> {
        // The recorder hands records over encoded: taking them as bytes,
        // as a tape does, keeps a decode out of what is measured.
        black_box(record);
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// `iters` calls one after the other, as a keep-alive connection makes
/// them; the request carries a Host header only, as wrk's do.
///
/// With `queue` (recording), the clock stops while the recorder thread
/// catches up whenever its queue is half full: a serving loop with nothing
/// else to do outruns the recorder, and a call whose exchange is dropped
/// (queue full) costs less than one recorded. So every call timed is a
/// recorded one.
async fn calls(router: &Router, iters: u64, queue: Option<&Metrics>) -> Duration {
    let mut timed = Duration::ZERO;
    let mut start = Instant::now();
    for i in 0..iters {
        let request = Request::get("/")
            .header(header::HOST, "127.0.0.1")
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 1024);
        black_box(body);
        if let Some(metrics) = queue
            && i % 256 == 255
            && metrics.queue_depth.get() > QUEUE as i64 / 2
        {
            timed += start.elapsed();
            while metrics.queue_depth.get() > QUEUE as i64 / 16 {
                std::thread::sleep(Duration::from_millis(1));
            }
            start = Instant::now();
        }
    }
    timed + start.elapsed()
}

/// Nanoseconds of CPU (user and system) the recorder thread of this
/// process has used, from Linux's /proc, if it can be found. Counted in
/// clock ticks of 10 ms (USER_HZ = 100): read it over seconds.
fn recorder_cpu_ns() -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        // Linux cuts a thread's name to 15 bytes: "reprise-recorde".
        if comm.trim().starts_with("reprise-record") {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // Fields after the name: state is field 3, utime 14, stime 15.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks: u64 =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            return Some(ticks * 10_000_000);
        }
    }
    None
}

fn per_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = hello_json();
    let mut group = c.benchmark_group("layer");
    group.throughput(Throughput::Elements(1));

    let bare = hello_router(body.clone());
    group.bench_function("no_layer", |b| {
        b.iter_custom(|iters| runtime.block_on(calls(&bare, iters, None)))
    });

    let off = Reprise::off();
    let switched_off = hello_router(body.clone()).layer(off.inbound());
    group.bench_function("off", |b| {
        b.iter_custom(|iters| runtime.block_on(calls(&switched_off, iters, None)))
    });

    let stored = Arc::new(AtomicU64::new(0));
    let reprise = Reprise::builder()
        .queue(QUEUE)
        .record_to(Box::new(Discard(Arc::clone(&stored))))
        .expect("the recorder starts");
    let metrics = Arc::clone(reprise.metrics());
    let recording = hello_router(body).layer(reprise.inbound());
    // The thread names itself once it runs: give it a moment.
    let cpu_before = (0..100).find_map(|_| {
        recorder_cpu_ns().or_else(|| {
            std::thread::sleep(Duration::from_millis(1));
            None
        })
    });
    group.bench_function("record", |b| {
        b.iter_custom(|iters| runtime.block_on(calls(&recording, iters, Some(&metrics))))
    });
    group.finish();
    let cpu = recorder_cpu_ns()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));

    drop(recording);
    let stats = reprise.shutdown_blocking(Duration::from_secs(30)).unwrap();
    let stored = stored.load(Ordering::Relaxed);
    if stats.seen == 0 {
        return; // `record` was filtered out
    }
    eprintln!(
        "record: {} calls seen, {} exchanges stored, {} dropped (queue full {})",
        stats.seen,
        stored,
        stats.dropped(),
        stats.dropped_queue_full
    );
    if let Some(ns) = cpu.filter(|_| stored > 0) {
        eprintln!(
            "record: recorder thread CPU {:.2} µs per stored exchange (off the serving thread; 10 ms ticks)",
            ns as f64 / stored as f64 / 1000.0
        );
    }
    if stats.dropped() > 0 {
        eprintln!("record: WARNING: exchanges were dropped; the record figure is too low");
    }
    assert_eq!(stats.recorded, stored);
    assert!(stored > 0, "the recording case stored nothing: {stats:?}");
}

criterion_group!(layer, per_call);
criterion_main!(layer);
