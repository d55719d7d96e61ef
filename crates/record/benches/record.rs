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

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use reprise_model::pack::{Packed, PackedError, Packer, PlainPacker};
use reprise_model::redact::Redactor;
use reprise_model::select::ExchangeFilter;
use reprise_model::{Exchange, Role, Sink, StoreError};
use reprise_record::{Identity, Metrics, Origin, Recorder, Recording, RequestHead, Rules, Side};
use reprise_tape::{TapePacker, WriterOptions};

/// A 1 KiB JSON body, as bench/proxy.sh's /hello.json.
fn hello_json() -> Bytes {
    reprise_testkit::hello_json("hello from the reprise proxy benchmark")
}

/// What the packers make.
#[derive(Clone, Copy)]
enum Packing {
    /// Nothing kept.
    Nothing,
    Plain,
    Zstd,
}

/// A packer that keeps nothing: the encoding's cost alone.
struct Nothing;

impl Packer for Nothing {
    fn add(&mut self, record: &[u8], _: u64) -> Result<Option<Packed>, StoreError> {
        black_box(record);
        Ok(None)
    }
    fn flush(&mut self) -> Option<Packed> {
        None
    }
    fn due(&self, _: Instant) -> bool {
        false
    }
    fn another(&self) -> Box<dyn Packer> {
        Box::new(Nothing)
    }
}

/// A sink that drops every pack its packer makes.
struct Discard(Packing);

impl Sink for Discard {
    fn append(&mut self, _: Exchange) -> Result<(), StoreError> {
        Ok(())
    }
    fn packer(&self) -> Box<dyn Packer> {
        match self.0 {
            Packing::Nothing => Box::new(Nothing),
            Packing::Plain => Box::new(PlainPacker::new(256 << 10, Duration::from_secs(60))),
            Packing::Zstd => Box::new(TapePacker::new(&WriterOptions {
                block_age: Duration::from_secs(60),
                ..WriterOptions::default()
            })),
        }
    }
    fn append_packed(&mut self, packed: Packed) -> Result<(), PackedError> {
        black_box(packed);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One call's heads, as wrk sends and nginx answers /hello.json.
struct Call {
    origin: Arc<Origin>,
    uri: Uri,
    request: HeaderMap,
    response: HeaderMap,
    body: Bytes,
}

impl Call {
    fn new() -> Call {
        let mut request = HeaderMap::new();
        request.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        let mut response = HeaderMap::new();
        for (name, value) in [
            ("server", "nginx/1.22.1"),
            ("date", "Sun, 29 Nov 2026 07:00:00 GMT"),
            ("content-type", "application/json"),
            ("content-length", "1024"),
            ("last-modified", "Sun, 29 Nov 2026 06:00:00 GMT"),
            ("connection", "keep-alive"),
            ("etag", "\"6929a0a0-400\""),
            ("accept-ranges", "bytes"),
        ] {
            response.insert(name, HeaderValue::from_static(value));
        }
        Call {
            origin: Arc::new(Origin {
                service: "shop".into(),
                instance: String::new(),
                recorder: "proxy",
                role: Role::Inbound,
                listener: "127.0.0.1:8080".into(),
                scheme: "http",
                authority: String::new(),
                server_addr: "127.0.0.1:8081".into(),
                max_body: 1 << 20,
            }),
            uri: Uri::from_static("/hello.json"),
            request,
            response,
            body: hello_json(),
        }
    }

    /// The call through `recorder`, as the proxy's forward path records it.
    fn record(&self, recorder: &Recorder) {
        let identity = Identity {
            id: reprise_model::id::new_id_bytes(),
            peer: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 40000))),
            ..Identity::default()
        };
        let recording = Recording::new(
            recorder.clone(),
            Arc::clone(&self.origin),
            identity,
            RequestHead {
                method: &Method::GET,
                uri: &self.uri,
                version: Version::HTTP_11,
                headers: &self.request,
            },
        );
        let request = recording.lend_body(Side::Request);
        recording.body_done(Side::Request, request);
        recording.response_head(StatusCode::OK, &self.response);
        let mut response = recording.lend_body(Side::Response);
        response.data(recording.offset_ns(), &self.body, recording.max_body());
        recording.body_done(Side::Response, response);
    }
}

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
        let filter = if refuse {
            ExchangeFilter::new().add_match("path=/nowhere").unwrap()
        } else {
            ExchangeFilter::new()
        };
        let rules = Rules {
            filter,
            max_rate: None,
            redactor: Redactor::default(),
            sample_rate: 1.0,
        };
        let metrics = Arc::new(Metrics::new());
        let (recorder, thread) = Recorder::start(
            Box::new(Discard(packing)),
            rules,
            1 << 20,
            Arc::clone(&metrics),
        )
        .unwrap();
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
