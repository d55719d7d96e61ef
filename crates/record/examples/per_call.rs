#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: a panic is a failure with a message
//! The callgrind driver for the recording hot path: records `CALLS` calls
//! of one case of the criterion bench (`benches/record.rs`, whose `Call`
//! this copies) and nothing else, so that the instructions per call are
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

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
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
    let call = Call::new();
    for _ in 0..calls {
        call.record(&local);
    }
    drop(local);
    thread.close(&recorder, Duration::from_secs(10)).unwrap();
    let stats = metrics.snapshot();
    assert_eq!(stats.dropped(), 0, "{case}: {stats:?}");
}
