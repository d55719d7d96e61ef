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
use reprise_model::Exchange;
use reprise_model::synthetic::realistic;
use reprise_tape::{TapeReader, TapeWriter, WriterOptions};

// The `reprise` binary uses mimalloc; measure the library as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXCHANGES: usize = 20_000;

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
