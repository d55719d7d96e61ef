#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is a failure with a message
//! JSON diff throughput against its floor: `serde_json` parsing the same
//! two documents without comparing them. The figure is MB/s of both
//! sides' bytes; docs/benchmarks.md reports diff / parse.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

// The `reprise` binary uses mimalloc; measure the library as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A catalogue of `n` items, about 250 bytes each; `changed` alters every
/// 50th price and adds a field to every 100th item.
fn catalogue(n: usize, changed: bool) -> Vec<u8> {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let mut item = json!({
                "id": i,
                "sku": format!("SKU-{i:06}"),
                "name": format!("Item number {i} with a longer descriptive name"),
                "price": {"cents": 1000 + i % 977, "currency": "EUR"},
                "tags": ["kitchen", "gift", format!("batch-{}", i % 13)],
                "stock": i % 7,
                "active": i % 3 != 0,
            });
            if changed && i % 50 == 0 {
                item["price"]["cents"] = json!(1);
            }
            if changed && i % 100 == 0 {
                item["promo"] = json!(true);
            }
            item
        })
        .collect();
    serde_json::to_vec(&json!({ "items": items, "total": n })).unwrap()
}

fn benches(c: &mut Criterion) {
    let a = catalogue(4_000, false);
    let b = catalogue(4_000, true);
    let bytes = (a.len() + b.len()) as u64;
    let mut group = c.benchmark_group("json");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("parse_both", |bench| {
        bench.iter(|| {
            let x: Value = serde_json::from_slice(black_box(&a)).unwrap();
            let y: Value = serde_json::from_slice(black_box(&b)).unwrap();
            black_box((x, y))
        });
    });
    group.bench_function("parse_and_diff", |bench| {
        bench.iter(|| {
            let x: Value = serde_json::from_slice(black_box(&a)).unwrap();
            let y: Value = serde_json::from_slice(black_box(&b)).unwrap();
            let differences = reprise_compare::diff(&x, &y, &[]);
            assert_eq!(differences.len(), 80 + 40);
            black_box(differences)
        });
    });
    group.finish();
}

criterion_group!(json_diff, benches);
criterion_main!(json_diff);
