//! The call the recording bench (`benches/record.rs`) and its callgrind
//! driver (`examples/per_call.rs`) record, and the sinks they record it
//! into: shared, so that both measure the same thing.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use reprise_model::pack::{Packed, PackedError, Packer, PlainPacker};
use reprise_model::{Exchange, Role, Sink, StoreError};
use reprise_record::{Identity, Origin, Recorder, Recording, RequestHead, Side};
use reprise_tape::{TapePacker, WriterOptions};

/// A 1 KiB JSON body, as bench/proxy.sh's /hello.json.
pub fn hello_json() -> Bytes {
    reprise_testkit::hello_json("hello from the reprise proxy benchmark")
}

/// What the packers make.
#[derive(Clone, Copy)]
pub enum Packing {
    /// Nothing kept.
    Nothing,
    Plain,
    Zstd,
}

/// A packer that keeps nothing: the encoding's cost alone.
pub struct Nothing;

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
pub struct Discard(pub Packing);

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
pub struct Call {
    origin: Arc<Origin>,
    uri: Uri,
    request: HeaderMap,
    response: HeaderMap,
    body: Bytes,
}

impl Call {
    pub fn new() -> Call {
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
                route: String::new(),
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
    pub fn record(&self, recorder: &Recorder) {
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

/// A recorder for one case: every call judged by rules that keep it, or
/// (`refuse`) by a `--match` that refuses it; packs made as `packing`
/// says and dropped by the writer thread.
pub fn start(
    packing: Packing,
    refuse: bool,
) -> (
    Recorder,
    reprise_record::RecorderThread,
    Arc<reprise_record::Metrics>,
) {
    let filter = if refuse {
        reprise_model::select::ExchangeFilter::new()
            .add_match("path=/nowhere")
            .unwrap()
    } else {
        reprise_model::select::ExchangeFilter::new()
    };
    let rules = reprise_record::Rules {
        filter,
        max_rate: None,
        redactor: reprise_model::redact::Redactor::default(),
        sample_rate: 1.0,
    };
    let metrics = Arc::new(reprise_record::Metrics::new());
    let (recorder, thread) = Recorder::start(
        Box::new(Discard(packing)),
        rules,
        1 << 20,
        Arc::clone(&metrics),
    )
    .unwrap();
    (recorder, thread, metrics)
}
