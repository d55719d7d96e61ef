#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a message
//! Writer and reader throughput on realistic exchanges (about 20 headers,
//! 1 KiB JSON bodies each way).
//!
//! Besides the criterion results, this writes the exact uncompressed record
//! stream it measures to `target/bench-tape/records.raw`, so that
//! `bench/tape.sh` can time `zstd -1` and `zstd -d` on the same bytes in the
//! same run and report our throughput as a ratio of theirs.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reprise_model::{Exchange, Header, Protocol, Request, Response};
use reprise_tape::{TapeReader, TapeWriter, WriterOptions};

// The `reprise` binary uses mimalloc; measure the library as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXCHANGES: usize = 20_000;

fn json_body(seed: usize, len: usize) -> Vec<u8> {
    let mut body = String::from("{\"items\":[");
    let mut i = 0;
    while body.len() < len - 40 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"id\":{},\"sku\":\"SKU-{:06}\",\"price\":{}.{:02},\"qty\":{}}}",
            seed * 31 + i,
            (seed * 7919 + i * 104_729) % 1_000_000,
            (seed + i) % 500,
            (seed * 13 + i) % 100,
            (seed + i * 3) % 9 + 1
        ));
        i += 1;
    }
    body.push_str("],\"next\":null}");
    body.into_bytes()
}

fn realistic(i: usize) -> Exchange {
    let mut headers = vec![
        Header::new("host", "shop.internal:8080"),
        Header::new(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
        ),
        Header::new("accept", "application/json, text/plain, */*"),
        Header::new("accept-encoding", "gzip, deflate, br"),
        Header::new("accept-language", "en-US,en;q=0.9"),
        Header::new("content-type", "application/json"),
        Header::new(
            "x-request-id",
            format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
        ),
        Header::new(
            "traceparent",
            format!(
                "00-{:032x}-{:016x}-01",
                i as u128 * 7_654_321,
                i * 1_234_567
            ),
        ),
        Header::new("authorization", "[redacted]"),
        Header::new("x-tenant", format!("tenant-{}", i % 17)),
    ];
    for n in 0..10 {
        headers.push(Header::new(
            format!("x-custom-{n}"),
            format!("value-{}-{}", n, i % 97),
        ));
    }
    let response_headers = vec![
        Header::new("content-type", "application/json; charset=utf-8"),
        Header::new("date", "Tue, 24 Nov 2026 23:33:24 GMT"),
        Header::new("server", "nginx/1.22.1"),
        Header::new("cache-control", "no-store"),
        Header::new(
            "x-request-id",
            format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
        ),
    ];
    let request_body = json_body(i, 1024);
    let response_body = json_body(i + 1, 1024);
    Exchange {
        id: reprise_model::id::new_id(),
        recorded_at_ns: 1_790_000_000_000_000_000 + i as u64 * 1_000_000,
        duration_ns: 1_000_000 + (i as u64 % 50) * 37_000,
        protocol: Protocol::Http11 as i32,
        request: Some(Request {
            method: if i.is_multiple_of(3) { "POST" } else { "GET" }.into(),
            scheme: "http".into(),
            authority: "shop.internal:8080".into(),
            path: format!("/api/orders/{}?expand=items&page={}", i % 1000, i % 7),
            headers,
            body_size: request_body.len() as u64,
            body: request_body.into(),
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            headers: response_headers,
            body_size: response_body.len() as u64,
            body: response_body.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-tape");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn benches(c: &mut Criterion) {
    let exchanges: Vec<Exchange> = (0..EXCHANGES).map(realistic).collect();
    let mut raw = Vec::new();
    for exchange in &exchanges {
        prost::encoding::encode_varint(reprise_model::encoded_len(exchange) as u64, &mut raw);
        reprise_model::encode(exchange, &mut raw);
    }
    let dir = out_dir();
    let _ = std::fs::write(dir.join("records.raw"), &raw);
    let _ = std::fs::write(dir.join("records.count"), EXCHANGES.to_string());

    let mut group = c.benchmark_group("tape");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(raw.len() as u64));
    let write_path = dir.join("write.tape");
    group.bench_function("write", |b| {
        b.iter(|| {
            let _ = std::fs::remove_file(&write_path);
            let mut writer =
                TapeWriter::create(&write_path, WriterOptions::default()).expect("create");
            for exchange in &exchanges {
                writer.write(exchange).expect("write");
            }
            black_box(writer.finish().expect("finish"));
        })
    });

    let read_path = dir.join("read.tape");
    let _ = std::fs::remove_file(&read_path);
    let mut writer = TapeWriter::create(&read_path, WriterOptions::default()).expect("create");
    for exchange in &exchanges {
        writer.write(exchange).expect("write");
    }
    writer.finish().expect("finish");
    group.bench_function("scan", |b| {
        b.iter(|| {
            let reader = TapeReader::open(&read_path).expect("open");
            let mut n = 0usize;
            for exchange in reader {
                n += black_box(exchange.expect("intact"))
                    .request
                    .map_or(0, |r| r.body.len());
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(tape, benches);
criterion_main!(tape);
